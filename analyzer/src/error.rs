//! The library's errors: one enum, each variant a complete one-line message for the user.
//!
//! Owns the wording of failures. Must not print anything or decide exit codes: `main.rs` does.

use std::io;
use std::path::PathBuf;

use memtrail_format::FormatError;

/// A failure of an analysis or of writing its output.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The trace could not be opened or read (not a trace, corrupt, newer version, I/O).
    #[error("{}: {source}", path.display())]
    Trace {
        path: PathBuf,
        #[source]
        source: FormatError,
    },

    /// The trace declares more than the memory limit allows (see [`crate::budget`]).
    #[error("{}: {exceeded}", path.display())]
    MemoryLimit {
        path: PathBuf,
        exceeded: crate::budget::Exceeded,
    },

    /// An output file could not be written.
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// Writing to standard output failed (other than a closed pipe, which is not an error).
    #[error("cannot write to standard output: {0}")]
    Stdout(#[source] io::Error),

    /// Building or exporting a table failed inside polars.
    #[error("table export failed: {0}")]
    Table(#[from] polars::error::PolarsError),

    /// The inputs make the request impossible (an unknown stack id, a function not found...).
    #[error("{0}")]
    Invalid(String),

    /// An output path names one of the command's own input traces.
    #[error(
        "{} is the input trace {}: memtrail never writes over its input; name another output file",
        output.display(),
        input.display()
    )]
    OutputIsInput { output: PathBuf, input: PathBuf },

    /// Something that a written file must not replace is at an output path.
    #[error(
        "cannot write {}: it is {what}; memtrail replaces only files and symbolic links to files (never following a link): name a file",
        path.display()
    )]
    OutputNotAFile { path: PathBuf, what: String },
}

impl Error {
    pub(crate) fn trace(path: impl Into<PathBuf>, source: FormatError) -> Error {
        Error::Trace {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn write(path: impl Into<PathBuf>, source: io::Error) -> Error {
        Error::Write {
            path: path.into(),
            source,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
