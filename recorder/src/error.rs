//! What can stop the recorder, as values: one variant per failure, each displayed as one line
//! that names the problem and what to do (the causes follow through `source()`).
//!
//! Owns the messages and which exit status each failure maps to (see [`Error::exit_code`]).
//! Must not print or exit: the binary does.

use std::path::PathBuf;

use memtrail_format::FormatError;

use crate::output::OutputError;
use crate::probes::{ProbeError, error_chain};
use crate::session::SessionError;
use crate::suspects::SuspectsError;
use crate::target::TargetError;
use crate::unwind_loader::UnwindLoadError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("nothing to trace: give -p PID, or a command after `--`")]
    NothingToTrace,
    /// Only when the command line was built without clap (which requires `-o`).
    #[error("no trace file: give -o PATH")]
    NoOutput,
    #[error(
        "permission denied: tracing needs root, or the capabilities CAP_BPF and CAP_PERFMON (missing: {})",
        .0.join(", ")
    )]
    MissingCapabilities(Vec<&'static str>),
    #[error(transparent)]
    Target(#[from] TargetError),
    #[error(transparent)]
    Output(#[from] OutputError),
    #[error("--lib {}", path.display())]
    Library {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "no allocator found in process {0} (no module defines malloc or a known allocator API; a stripped static binary? name the allocator with --lib PATH)"
    )]
    NoAllocatorIn(u32),
    #[error(
        "no allocator found for the command (no module it links defines malloc, and the recorder's own libc is not found); name it with --lib PATH"
    )]
    NoAllocatorForCommand,
    #[error("cannot read the allocators of process {pid}")]
    Discovery {
        pid: u32,
        source: crate::allocators::DiscoveryError,
    },
    #[error(transparent)]
    Probe(#[from] ProbeError),
    #[error(transparent)]
    Unwind(#[from] UnwindLoadError),
    #[error("process {0} exited while the probes were being attached")]
    ExitedWhileAttaching(u32),
    #[error("cannot write {}", path.display())]
    Write { path: PathBuf, source: FormatError },
    #[error("cannot put the trace at {}", path.display())]
    Publish { path: PathBuf, source: FormatError },
    /// The recording loop failed; the message already holds its causes.
    #[error(
        "{}; tracing stopped, {} keeps what was written before",
        error_chain(error),
        path.display()
    )]
    Session { path: PathBuf, error: SessionError },
    #[error(transparent)]
    Suspects(#[from] SuspectsError),
}

impl Error {
    /// The exit status for this failure: 127 or 126 when the launched command was not found
    /// or cannot be run (as `env` and `timeout` do); 2 for `suspects` options that cannot make
    /// a run (like clap's usage errors); 1 for the recorder's own errors.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Target(error) => error.exec_exit_code().unwrap_or(1),
            Error::Suspects(_) => 2,
            _ => 1,
        }
    }

    /// The name the message starts with: the subcommand's for `suspects`.
    pub fn program(&self) -> &'static str {
        match self {
            Error::Suspects(_) => "memtrail-record suspects",
            _ => "memtrail-record",
        }
    }

    /// The error and its causes on one line, each cause once (unescaped: see `failure`).
    pub fn one_line(&self) -> String {
        let mut text = String::new();
        let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(self);
        while let Some(error) = cause {
            let message = error.to_string();
            if !text.contains(&message) {
                if !text.is_empty() {
                    text.push_str(": ");
                }
                text.push_str(&message);
            }
            cause = error.source();
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_command_that_cannot_run_exits_as_env_does() {
        let exec = |errno| {
            Error::Target(TargetError::Exec {
                command: "./app".to_owned(),
                source: std::io::Error::from_raw_os_error(errno),
            })
        };
        assert_eq!(exec(libc::ENOENT).exit_code(), 127);
        assert_eq!(exec(libc::EACCES).exit_code(), 126);
        assert_eq!(Error::Target(TargetError::NoSuchProcess(7)).exit_code(), 1);
        assert_eq!(Error::NothingToTrace.exit_code(), 1);
    }

    #[test]
    fn suspects_usage_errors_name_the_subcommand_and_exit_2() {
        let error = Error::from(SuspectsError::ZeroInterval);
        assert_eq!(error.exit_code(), 2);
        assert_eq!(error.program(), "memtrail-record suspects");
        assert_eq!(error.one_line(), "--interval must be greater than zero");
    }

    #[test]
    fn one_line_holds_each_cause_once() {
        let error = Error::Library {
            path: PathBuf::from("/nowhere/libjemalloc.so"),
            source: std::io::Error::from_raw_os_error(libc::ENOENT),
        };
        assert_eq!(
            error.one_line(),
            "--lib /nowhere/libjemalloc.so: No such file or directory (os error 2)"
        );
        // A message that already holds its cause does not repeat it.
        let error = Error::Target(TargetError::Exec {
            command: "./app".to_owned(),
            source: std::io::Error::from_raw_os_error(libc::ENOENT),
        });
        assert_eq!(
            error.one_line(),
            "cannot run ./app: No such file or directory (os error 2)"
        );
        assert_eq!(
            Error::MissingCapabilities(vec!["CAP_BPF", "CAP_PERFMON"]).one_line(),
            "permission denied: tracing needs root, or the capabilities CAP_BPF and CAP_PERFMON (missing: CAP_BPF, CAP_PERFMON)"
        );
    }
}
