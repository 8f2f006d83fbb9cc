//! Errors of reading and writing traces. Every corruption names the byte offset where it was found.

use std::io;

/// A failure to read or write a trace.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    #[error("{0}")]
    Io(#[from] io::Error),

    #[error(
        "not a memtrail trace: the file does not start with the memtrail magic (is it the file memtrail-record wrote?)"
    )]
    NotATrace,

    #[error(
        "not a memtrail trace: the file is only {len} bytes, shorter than the {header} byte header"
    )]
    TooShort { len: u64, header: u64 },

    #[error(
        "trace format {major}.{minor} is newer than this memtrail reads (format {reads}.x): open it with memtrail {needs} or newer"
    )]
    NewerVersion {
        major: u16,
        minor: u16,
        reads: u16,
        needs: String,
    },

    #[error(
        "trace format {major}.{minor} holds records this memtrail does not know (it reads format {major}.{reads}; the first is in the frame at byte offset {offset}): open it with memtrail {needs} or newer"
    )]
    NewerRecords {
        offset: u64,
        major: u16,
        minor: u16,
        reads: u16,
        needs: String,
    },

    #[error("corrupt trace at byte offset {offset}: {what}")]
    Corrupt { offset: u64, what: String },

    #[error("cannot write a record of {size} bytes: a frame holds at most {limit} bytes")]
    RecordTooLarge { size: usize, limit: usize },

    #[error("not a trace file: it is {0}, and memtrail reads traces from regular files only")]
    NotARegularFile(crate::output::FileKind),

    #[error(
        "cannot write: the trace writer failed earlier ({0}); the file holds what was written before"
    )]
    Poisoned(String),
}

impl FormatError {
    pub(crate) fn corrupt(offset: u64, what: impl Into<String>) -> FormatError {
        FormatError::Corrupt {
            offset,
            what: what.into(),
        }
    }
}

/// A file that ends before its last frame is complete (a recorder killed, a full disk), or
/// without the end record. Not an error: everything before it was read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Truncation {
    /// Byte offset of the first byte that could not be used (the incomplete frame's start).
    pub offset: u64,
    /// How the file ends.
    pub reason: String,
    /// Records read before the cut.
    pub records_read: u64,
    /// Allocation events (alloc, free, realloc) read before the cut.
    pub events_read: u64,
}

impl std::fmt::Display for Truncation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "trace is truncated at byte offset {} ({}); analyzed the {} events before it",
            self.offset, self.reason, self.events_read
        )
    }
}
