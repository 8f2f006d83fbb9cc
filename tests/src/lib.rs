//! Helpers shared by the end-to-end tests: where the binaries are, whether BPF can be used
//! here, and scratch directories. The tests themselves live in tests/tests/.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

pub mod hostile;

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_owned()
}

/// True when the tests can load BPF programs and attach uprobes here. When they cannot, it
/// prints why and returns false, unless `MEMTRAIL_REQUIRE_BPF` is set (as `.ci/run` does):
/// then it panics, so CI never passes by skipping.
pub fn bpf_available() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let cap_eff = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .unwrap_or(0);
    let has = |bit: u32| cap_eff & (1 << bit) != 0;
    // CAP_SYS_ADMIN (21), or CAP_PERFMON (38) with CAP_BPF (39).
    let usable = has(21) || (has(38) && has(39));
    let uprobes = Path::new("/sys/bus/event_source/devices/uprobe/type").exists();
    if usable && uprobes {
        return true;
    }
    let why = if usable {
        "the kernel has no uprobe PMU"
    } else {
        "not root (needs CAP_BPF, CAP_PERFMON or CAP_SYS_ADMIN)"
    };
    if std::env::var_os("MEMTRAIL_REQUIRE_BPF").is_some() {
        panic!("MEMTRAIL_REQUIRE_BPF is set but BPF is unavailable: {why}");
    }
    eprintln!("skipping: BPF unavailable ({why}); set MEMTRAIL_REQUIRE_BPF to make this fail");
    false
}

/// A binary of the workspace: `$env_var` if set, else `name` in this test's target directory.
///
/// The first call in a test process runs `cargo build --workspace --all-targets` there, so a
/// binary is never stale. That is the feature set `cargo test --workspace` has just built
/// with, so after it the call is a no-op; building one package alone would resolve features
/// differently and rebuild polars.
pub fn workspace_binary(env_var: &str, name: &str) -> PathBuf {
    if let Some(path) = std::env::var_os(env_var) {
        return PathBuf::from(path);
    }
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    let profile_dir = BUILT.get_or_init(|| {
        // target/<profile>/deps/<test>-HASH -> target/<profile>
        let exe = std::env::current_exe().expect("test executable path");
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("test binary lives in target/<profile>/deps")
            .to_owned();
        let mut build = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
        build
            .args(["build", "-q", "--workspace", "--all-targets"])
            .current_dir(repo_root());
        if profile_dir.file_name().is_some_and(|n| n == "release") {
            build.arg("--release");
        }
        if let Some(target) = profile_dir.parent() {
            build.env("CARGO_TARGET_DIR", target);
        }
        let status = build.status().expect("run cargo build");
        assert!(
            status.success(),
            "cargo build --workspace --all-targets failed"
        );
        profile_dir
    });
    let bin = profile_dir.join(name);
    assert!(bin.exists(), "no {name} binary at {}", bin.display());
    bin
}

/// A scratch directory under the system temp dir, removed when dropped.
pub struct Scratch(PathBuf);

impl Scratch {
    /// `suite` names the test file, `name` the test: parallel tests never share a directory.
    pub fn new(suite: &str, name: &str) -> Scratch {
        let dir =
            std::env::temp_dir().join(format!("memtrail-{suite}-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create scratch dir");
        Scratch(dir)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Compiles a C sample with frame pointers and debug info into `output`, as the samples'
/// headers say to build them.
pub fn compile_sample(source: &Path, output: &Path) {
    if let Some(dir) = output.parent() {
        std::fs::create_dir_all(dir).expect("create the output directory");
    }
    let status = Command::new("gcc")
        .args(["-O1", "-g", "-fno-omit-frame-pointer", "-pthread", "-o"])
        .arg(output)
        .arg(source)
        .status()
        .unwrap_or_else(|e| panic!("cannot run gcc: {e}"));
    assert!(status.success(), "gcc failed on {}", source.display());
}

/// Records `command` into `trace` with `memtrail-record -q`.
pub fn record_command(trace: &Path, command: &[&str]) {
    let out = Command::new(workspace_binary("MEMTRAIL_RECORD", "memtrail-record"))
        .arg("-q")
        .arg("-o")
        .arg(trace)
        .arg("--")
        .args(command)
        .output()
        .expect("run memtrail-record");
    assert!(
        out.status.success(),
        "memtrail-record failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
