//! Facts about the machine the recorder runs on, for the checks before recording and the
//! trace's metadata: the capabilities the recorder holds, the host name and kernel release,
//! the page size and the wall clock.
//!
//! Must not: look at the target process (that is `target`) or decide anything.

use std::time::{SystemTime, UNIX_EPOCH};

/// Capabilities needed to load and attach: root, or CAP_BPF + CAP_PERFMON (CAP_SYS_ADMIN
/// covers both). Returns the missing ones by name.
pub fn missing_capabilities() -> Vec<&'static str> {
    const CAP_SYS_ADMIN: u32 = 21;
    const CAP_PERFMON: u32 = 38;
    const CAP_BPF: u32 = 39;
    let effective = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .unwrap_or(0);
    let has = |cap: u32| effective & (1u64 << cap) != 0;
    if has(CAP_SYS_ADMIN) {
        return Vec::new();
    }
    let mut missing = Vec::new();
    if !has(CAP_BPF) {
        missing.push("CAP_BPF");
    }
    if !has(CAP_PERFMON) {
        missing.push("CAP_PERFMON");
    }
    missing
}

/// The host's name and kernel release (`uname -n`, `uname -r`); empty when uname fails.
pub struct HostNames {
    pub host_name: String,
    pub kernel_release: String,
}

pub fn host_names() -> HostNames {
    // SAFETY: utsname is plain data filled by uname.
    let mut uts: libc::utsname = unsafe { std::mem::zeroed() };
    if unsafe { libc::uname(&mut uts) } != 0 {
        return HostNames {
            host_name: String::new(),
            kernel_release: String::new(),
        };
    }
    let field = |chars: &[libc::c_char]| {
        let bytes: Vec<u8> = chars
            .iter()
            .take_while(|&&c| c != 0)
            .map(|&c| c as u8)
            .collect();
        String::from_utf8_lossy(&bytes).into_owned()
    };
    HostNames {
        host_name: field(&uts.nodename),
        kernel_release: field(&uts.release),
    }
}

/// The page size in bytes (4096 if the system does not say).
pub fn page_size() -> u32 {
    // SAFETY: sysconf has no preconditions.
    u32::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096)
}

/// Nanoseconds since the Unix epoch (0 for a clock set before it).
pub fn wall_clock_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}
