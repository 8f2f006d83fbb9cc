//! The memtrail trace format: what `memtrail-record` writes and `memtrail` reads.
//!
//! This crate owns the bytes of a trace file and nothing else: the records (`record`), how
//! each is encoded (`wire`), the checksummed frames that carry them (`frame`), and the
//! streaming [`TraceWriter`] and [`TraceReader`]; [`IntMap`], the map both programs key by
//! the ids and addresses records carry; and [`OutputFile`] and [`open_input`], how both
//! programs create the files they write (temporary file, mode 0600, rename) and open the ones
//! they read (regular files only). It must not know about eBPF, symbolization
//! or analysis, and it must never panic or allocate without a cap on bytes it reads:
//! every length from a file is checked against the limits in `wire` and `frame`.
//!
//! The byte-level specification is `format/SPEC.md`.

mod error;
pub mod frame;
mod int_map;
mod output;
mod reader;
mod record;
#[cfg(feature = "test-support")]
pub mod testing;
pub mod text;
pub mod units;
mod wire;
mod writer;

pub use error::{FormatError, Truncation};
pub use frame::{FileHeader, FrameReader, RawFrame};
pub use int_map::{IntHasher, IntMap};
pub use output::{Existing, FileKind, OutputFile, open_input};
pub use reader::{TraceReader, decode_frame, decode_frame_of};
pub use record::*;
pub use wire::{MAX_LIST, MAX_RAW_PAYLOAD, MAX_STRING};
pub use writer::{TraceWriter, WriterOptions};
