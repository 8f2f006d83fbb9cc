//! The traced process: launching a command held before `exec`, or checking a running PID, and
//! noticing when it ends.
//!
//! Owns: fork/exec of the launched command, the hold-and-release handshake, and the target's
//! exit status. Must not: attach probes or touch the trace.
//!
//! Launch protocol: the child is forked with two close-on-exec pipes. It blocks reading the
//! "go" pipe until the recorder has attached its probes (scoped to the child's PID), then
//! `execvp`s. If exec fails, the child writes its errno into the "exec error" pipe; a pipe that
//! closes empty means exec succeeded. That errno is what tells "not found" (127) from "cannot
//! be run" (126) in the recorder's exit status.

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error("no such process: {0}")]
    NoSuchProcess(u32),
    #[error("the command is empty")]
    EmptyCommand,
    #[error("argument contains a NUL byte: {0:?}")]
    NulInArgument(String),
    #[error("cannot start {command}: {source}")]
    Spawn {
        command: String,
        source: std::io::Error,
    },
    /// `execvp` failed in the child: the command was not found, or cannot be run.
    #[error("cannot run {command}: {source}")]
    Exec {
        command: String,
        source: std::io::Error,
    },
}

impl TargetError {
    /// The exit status `env` and `timeout` give for the same failure: 127 when the command
    /// was not found, 126 when it was found but cannot be run (permission denied, not
    /// executable, a directory, a bad interpreter); `None` for failures before the exec.
    pub fn exec_exit_code(&self) -> Option<i32> {
        match self {
            TargetError::Exec { source, .. } => Some(match source.raw_os_error() {
                Some(libc::ENOENT) => 127,
                _ => 126,
            }),
            _ => None,
        }
    }
}

/// How the target ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    Code(i32),
    Signal(i32),
}

impl ExitStatus {
    /// The recorder's own exit code that passes this status through (shell convention).
    pub fn as_exit_code(self) -> i32 {
        match self {
            ExitStatus::Code(code) => code,
            ExitStatus::Signal(signal) => 128 + signal,
        }
    }
}

/// A process being traced.
pub struct Target {
    pub pid: u32,
    /// Set for a launched child that is still waiting for `release`.
    hold: Option<OwnedFd>,
    exec_error: Option<OwnedFd>,
    /// True when the recorder forked it (and so can reap it and learn its exit status).
    is_child: bool,
    exit: Option<ExitStatus>,
}

fn pipe_cloexec() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: fds is a valid array of two ints.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: pipe2 returned two fresh descriptors that nothing else owns.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

impl Target {
    /// A running process, traced with all its threads.
    pub fn existing(pid: u32) -> Result<Target, TargetError> {
        if pid == 0 || !std::path::Path::new(&format!("/proc/{pid}/maps")).exists() {
            return Err(TargetError::NoSuchProcess(pid));
        }
        Ok(Target {
            pid,
            hold: None,
            exec_error: None,
            is_child: false,
            exit: None,
        })
    }

    /// Forks `command`, held before `exec` until [`Target::release`].
    pub fn launch_held(command: &[String]) -> Result<Target, TargetError> {
        let program = command.first().ok_or(TargetError::EmptyCommand)?;
        let argv = command
            .iter()
            .map(|a| CString::new(a.as_bytes()).map_err(|_| TargetError::NulInArgument(a.clone())))
            .collect::<Result<Vec<_>, _>>()?;
        let mut argv_ptrs: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
        argv_ptrs.push(std::ptr::null());
        let spawn_error = |source| TargetError::Spawn {
            command: program.clone(),
            source,
        };
        let (go_read, go_write) = pipe_cloexec().map_err(spawn_error)?;
        let (err_read, err_write) = pipe_cloexec().map_err(spawn_error)?;

        // SAFETY: the recorder has not started any thread yet; the child only calls
        // async-signal-safe functions (read, write, execvp, _exit) on memory prepared above.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return Err(spawn_error(std::io::Error::last_os_error()));
        }
        if pid == 0 {
            unsafe {
                // The child's copies of the recorder's ends: with them open, the recorder
                // dying would not close the pipes and the child would wait forever.
                libc::close(go_write.as_raw_fd());
                libc::close(err_read.as_raw_fd());
                let mut byte = 0u8;
                let n = libc::read(go_read.as_raw_fd(), (&raw mut byte).cast(), 1);
                if n != 1 {
                    // The recorder gave up (it died or could not attach): never run untraced.
                    libc::_exit(127);
                }
                libc::execvp(argv_ptrs[0], argv_ptrs.as_ptr());
                let errno = *libc::__errno_location();
                libc::write(err_write.as_raw_fd(), (&raw const errno).cast(), 4);
                libc::_exit(127);
            }
        }
        drop(go_read);
        drop(err_write);
        Ok(Target {
            pid: pid as u32,
            hold: Some(go_write),
            exec_error: Some(err_read),
            is_child: true,
            exit: None,
        })
    }

    /// Lets a held child exec. Returns the exec error if the command could not be run.
    pub fn release(&mut self, command: &str) -> Result<(), TargetError> {
        let Some(hold) = self.hold.take() else {
            return Ok(());
        };
        let byte = 1u8;
        // SAFETY: writing one byte from a valid buffer to an fd we own.
        unsafe { libc::write(hold.as_raw_fd(), (&raw const byte).cast(), 1) };
        drop(hold);
        if let Some(err_read) = self.exec_error.take() {
            let mut errno = 0i32;
            // SAFETY: reading at most 4 bytes into a valid i32.
            let n = unsafe { libc::read(err_read.as_raw_fd(), (&raw mut errno).cast(), 4) };
            if n == 4 {
                self.reap_blocking();
                return Err(TargetError::Exec {
                    command: command.to_owned(),
                    source: std::io::Error::from_raw_os_error(errno),
                });
            }
        }
        Ok(())
    }

    /// Ends a held child without letting it run (attaching failed).
    pub fn abandon(&mut self) {
        if self.hold.take().is_some() {
            // Closing the pipe makes the child _exit(127) before exec.
            self.reap_blocking();
        }
    }

    fn reap_blocking(&mut self) {
        if self.is_child {
            let mut status = 0;
            // SAFETY: waiting for our own child.
            if unsafe { libc::waitpid(self.pid as i32, &mut status, 0) } == self.pid as i32 {
                self.exit = Some(decode_wait_status(status));
            }
        }
    }

    /// True once the target has ended (reaping it when it is our child).
    pub fn has_exited(&mut self) -> bool {
        if self.exit.is_some() {
            return true;
        }
        if self.is_child {
            let mut status = 0;
            // SAFETY: non-blocking wait for our own child.
            let r = unsafe { libc::waitpid(self.pid as i32, &mut status, libc::WNOHANG) };
            if r == self.pid as i32 {
                self.exit = Some(decode_wait_status(status));
                return true;
            }
            return r < 0;
        }
        // Not our child: gone, or a zombie its parent has not reaped yet.
        match std::fs::read_to_string(format!("/proc/{}/stat", self.pid)) {
            Ok(stat) => stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_ascii_whitespace().next())
                .is_some_and(|state| state == "Z" || state == "X"),
            Err(_) => true,
        }
    }

    /// The exit status, when the target was our child and has been reaped.
    pub fn exit_status(&self) -> Option<ExitStatus> {
        self.exit
    }

    pub fn is_child(&self) -> bool {
        self.is_child
    }
}

/// The command line of a running process, one string per argument (empty when it cannot be
/// read: a kernel thread, or a process that is gone).
pub fn command_line_of(pid: u32) -> Vec<String> {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|bytes| {
            bytes
                .split(|&b| b == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn decode_wait_status(status: i32) -> ExitStatus {
    if libc::WIFSIGNALED(status) {
        ExitStatus::Signal(libc::WTERMSIG(status))
    } else {
        ExitStatus::Code(libc::WEXITSTATUS(status))
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        self.abandon();
    }
}
