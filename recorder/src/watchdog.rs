//! The watchdog: a tiny process that resumes every traced process the recorder left stopped
//! if the recorder dies (SIGKILL, the OOM killer, a crash).
//!
//! The eBPF programs stop a traced process with SIGSTOP (a new process until its probes are
//! attached, an exec, an exit until its mappings are read) and list it in `STOPPED_PROCESSES`;
//! the recorder resumes it with SIGCONT. A recorder killed in between would leave it stopped
//! for ever. The watchdog, forked at the start of the session, holds a descriptor of that map
//! and the read end of a pipe whose only write end is the recorder's: when the pipe reads end
//! of file, or the recorder's `/proc/PID/stat` shows it exiting (a killed recorder can spend
//! minutes in the kernel detaching its probes before its descriptors are all closed), the
//! recorder is gone (or done), and the watchdog sends SIGCONT to every process still listed,
//! then exits.
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
        // SAFETY: getpid cannot fail.
        let recorder = unsafe { libc::getpid() };
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
                // Until every write end is closed or the recorder is exiting.
                loop {
                    let mut poll_fd = libc::pollfd {
                        fd: read_end,
                        events: libc::POLLIN,
                        revents: 0,
                    };
                    let ready = libc::poll(&mut poll_fd, 1, 100);
                    if ready > 0 || (ready < 0 && *libc::__errno_location() != libc::EINTR) {
                        break; // end of file (nothing is ever written), or a broken pipe
                    }
                    if is_exiting(recorder) {
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

/// Whether process `pid` is exiting (PF_EXITING in the flags of `/proc/PID/stat`) or gone.
/// System calls only: the file is read into a buffer on the stack.
fn is_exiting(pid: libc::pid_t) -> bool {
    const PF_EXITING: u64 = 0x4;
    // "/proc/PID/stat\0", built on the stack.
    let mut path = [0u8; 32];
    let mut at = 0;
    let mut push = |bytes: &[u8]| {
        for &b in bytes {
            path[at] = b;
            at += 1;
        }
    };
    push(b"/proc/");
    let mut digits = [0u8; 10];
    let (mut n, mut len) = (pid.unsigned_abs(), 0);
    while len == 0 || (n > 0 && len < digits.len()) {
        digits[digits.len() - 1 - len] = b'0' + (n % 10) as u8;
        n /= 10;
        len += 1;
    }
    push(&digits[digits.len() - len..]);
    push(b"/stat\0");
    let mut buffer = [0u8; 1024];
    // SAFETY: a NUL-terminated path on our stack; the buffer is ours.
    let read = unsafe {
        let fd = libc::open(path.as_ptr().cast(), libc::O_RDONLY | libc::O_CLOEXEC);
        if fd < 0 {
            return true; // gone
        }
        let read = libc::read(fd, buffer.as_mut_ptr().cast(), buffer.len());
        libc::close(fd);
        read
    };
    if read <= 0 {
        return true;
    }
    let stat = &buffer[..read as usize];
    // Fields after the command's closing parenthesis: state ppid pgrp session tty tpgid flags.
    let Some(close) = stat.iter().rposition(|&b| b == b')') else {
        return false;
    };
    let mut field = 0;
    let mut flags: u64 = 0;
    let mut in_field = false;
    for &b in &stat[close + 1..] {
        if b == b' ' {
            in_field = false;
            continue;
        }
        if !in_field {
            in_field = true;
            field += 1;
        }
        if field == 7 {
            if !b.is_ascii_digit() {
                return false;
            }
            flags = flags.wrapping_mul(10).wrapping_add(u64::from(b - b'0'));
        } else if field > 7 {
            break;
        }
    }
    flags & PF_EXITING != 0
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_running_process_is_not_exiting_and_a_missing_one_is_gone() {
        // SAFETY: getpid cannot fail.
        assert!(!is_exiting(unsafe { libc::getpid() }));
        assert!(is_exiting(i32::MAX)); // above pid_max: no such process
    }
}
