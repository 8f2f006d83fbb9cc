//! The watchdog: a tiny process that resumes every traced process the recorder left stopped
//! if the recorder dies (SIGKILL, the OOM killer, a crash).
//!
//! The eBPF programs stop a traced process with SIGSTOP (a new process until its probes are
//! attached, an exec, an exit until its mappings are read) and list it in `STOPPED_PROCESSES`;
//! the recorder resumes it with SIGCONT. A recorder killed in between would leave it stopped
//! for ever. The watchdog, forked at the start of the session, holds a descriptor of that map
//! and the read end of a pipe whose only write end is the recorder's: when the pipe reads end
//! of file, the recorder is gone (or done), and the watchdog sends SIGCONT to every process
//! still listed, then exits.
//!
//! The watchdog keeps only that map and the pipe open: holding the recorder's probes would
//! keep them attached, and stopping processes, after the recorder's death. On waking it first
//! disables every stop (key 0 in the map, which the programs check before stopping), then
//! resumes what is listed, a few times over (a program may have been stopping a process at
//! that very moment).
//!
//! Owns: the watchdog process. Must not: allocate or call anything but system calls after the
//! fork (the recorder may have threads), or signal a process not listed in the map.

use std::os::fd::RawFd;

/// The recorder's side: dropping it (or the recorder dying) ends the watchdog.
pub struct Watchdog {
    write_end: RawFd,
}

impl Watchdog {
    /// Forks the watchdog for the map `stopped_map_fd` (`u32 tgid` keys). None if it cannot
    /// be started (the recording goes on; the recorder still resumes what it stops).
    pub fn start(stopped_map_fd: RawFd) -> Option<Watchdog> {
        let mut fds = [0; 2];
        // SAFETY: fds is a valid array of two ints.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
            return None;
        }
        let [read_end, write_end] = fds;
        // SAFETY: the child below makes only system calls, on memory it owns (its stack).
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            // SAFETY: closing the descriptors just created.
            unsafe {
                libc::close(read_end);
                libc::close(write_end);
            }
            return None;
        }
        if pid == 0 {
            // SAFETY: system calls only (see the module doc).
            unsafe {
                close_all_but(read_end, stopped_map_fd);
                // Out of the terminal's process group: a Ctrl-C for the recorder is not ours.
                libc::setsid();
                let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
                if null >= 0 {
                    libc::dup2(null, 0);
                    libc::dup2(null, 1);
                    libc::dup2(null, 2);
                }
                let mut byte = 0u8;
                // Blocks until every write end is closed: the recorder exited or was killed.
                while libc::read(read_end, (&raw mut byte).cast(), 1) != 0 {
                    if *libc::__errno_location() != libc::EINTR {
                        break;
                    }
                }
                disable_stops(stopped_map_fd);
                for _ in 0..5 {
                    resume_listed(stopped_map_fd);
                    libc::usleep(100_000);
                }
                libc::_exit(0);
            }
        }
        // SAFETY: the recorder's copy of the read end is not needed.
        unsafe { libc::close(read_end) };
        Some(Watchdog { write_end })
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        // SAFETY: our descriptor; closing it lets the watchdog finish.
        unsafe { libc::close(self.write_end) };
    }
}

/// Closes every descriptor from 3 up but `a` and `b` (both above 2: the recorder opened them
/// after its standard streams). System calls only.
fn close_all_but(a: RawFd, b: RawFd) {
    let (low, high) = (a.min(b) as libc::c_uint, a.max(b) as libc::c_uint);
    let close_range = |first: libc::c_uint, last: libc::c_uint| {
        // SAFETY: closes descriptors of this (forked, single-threaded) process only.
        unsafe { libc::syscall(libc::SYS_close_range, first, last, 0) };
    };
    if low > 3 {
        close_range(3, low - 1);
    }
    if high > low + 1 {
        close_range(low + 1, high - 1);
    }
    close_range(high + 1, libc::c_uint::MAX);
}

/// The map-element member of `union bpf_attr` (lookup, update, next key).
#[repr(C)]
struct ElementAttr {
    map_fd: u32,
    _pad: u32,
    key: u64,
    value_or_next_key: u64,
    flags: u64,
}

/// `bpf(command, attr)`; true on success. System call only.
fn bpf_element(command: libc::c_long, attr: &ElementAttr) -> bool {
    // SAFETY: attr is a valid bpf_attr prefix whose pointers the caller keeps alive.
    unsafe {
        libc::syscall(
            libc::SYS_bpf,
            command,
            attr as *const ElementAttr,
            std::mem::size_of::<ElementAttr>() as u32,
        ) == 0
    }
}

/// Lists tgid 0, which the programs read as "stop nothing any more" (see the module doc).
fn disable_stops(map_fd: RawFd) {
    const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
    let key: u32 = 0;
    let value: u32 = 0;
    bpf_element(
        BPF_MAP_UPDATE_ELEM,
        &ElementAttr {
            map_fd: map_fd as u32,
            _pad: 0,
            key: (&raw const key) as u64,
            value_or_next_key: (&raw const value) as u64,
            flags: 0,
        },
    );
}

/// Sends SIGCONT to every process whose tgid is a key of the hash map `map_fd`.
/// System calls only (it runs in the forked watchdog).
fn resume_listed(map_fd: RawFd) {
    const BPF_MAP_GET_NEXT_KEY: libc::c_long = 4;
    let mut key: u32 = 0;
    let mut first = true;
    // A map holds at most a few thousand entries: bound the walk anyway.
    for _ in 0..1_000_000 {
        let mut next: u32 = 0;
        let attr = ElementAttr {
            map_fd: map_fd as u32,
            _pad: 0,
            // A null key asks for the first one.
            key: if first { 0 } else { (&raw const key) as u64 },
            value_or_next_key: (&raw mut next) as u64,
            flags: 0,
        };
        if !bpf_element(BPF_MAP_GET_NEXT_KEY, &attr) {
            return; // ENOENT: the last key was passed
        }
        if next != 0 {
            // SAFETY: a signal to a process listed as stopped by the recorder's programs.
            unsafe { libc::kill(next as i32, libc::SIGCONT) };
        }
        key = next;
        first = false;
    }
}
