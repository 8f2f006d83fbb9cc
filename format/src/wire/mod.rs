//! The record codec: how the records of one frame become an uncompressed payload, and back.
//!
//! A payload is column-oriented: every record contributes a tag byte to the `tags` column and
//! its hot fields to the `times`, `threads`, `addresses`, `literals`, `sizes` and `stacks`
//! columns; the rare records (metadata, strings, modules, stacks, symbols, lost counts, RSS,
//! exit, end, processes) put their other fields in the `bodies` column. Keeping like with like is what
//! lets DEFLATE find the repetition of a program's loops: a row layout interleaves the noisy
//! time deltas with everything else and hides it.
//!
//! Numbers are bincode 2 varints (`config::standard()`: little-endian, one byte below 251,
//! zigzag for signed). Times, threads and literal addresses are deltas against the previous
//! record of the same frame, an address seen among the frame's last `ADDRESS_WINDOW`
//! addresses is written as how far back it was, and a size equal to the previous size of the
//! same stack as 0. Every frame starts from zero, so frames decode independently.
//! SPEC.md, "Frame payload", is the byte-level description of this module.
//!
//! The code is split along the codec's seams: `encode` builds payloads (the writer's side),
//! `decode` reads them back (the reader's side, the hot path of every analysis), `predict`
//! holds the per-thread address lists both sides keep identically, and `varint` the number
//! encoding both share. This file holds the limits and the layout (tags, flags, columns)
//! that encoder and decoder must agree on.

use bincode::config::{self, Config};

mod decode;
mod encode;
mod predict;
mod varint;

pub(crate) use decode::{DecoderTables, FrameDecoder, RecordError};
pub(crate) use encode::FrameEncoder;

/// The largest uncompressed frame payload a reader accepts (and a writer produces).
pub const MAX_RAW_PAYLOAD: usize = 16 << 20;
/// Longest string a reader accepts.
pub const MAX_STRING: usize = 1 << 20;
/// Most elements of any list (stack frames, mapping ranges, symbol frames, argv).
pub const MAX_LIST: usize = 1 << 16;
/// How many recent addresses a reference may point back to.
pub const ADDRESS_WINDOW: usize = 4096;
/// Slots of the per-frame table that predicts an allocation's size from its stack.
pub const SIZE_SLOTS: usize = 4096;
/// Per-thread predictions live in this many slots, chosen by `thread % THREAD_SLOTS`.
pub const THREAD_SLOTS: usize = 64;
/// Length of each thread slot's list of blocks it allocated and of blocks it freed.
pub const THREAD_LIST: usize = 64;

pub(crate) const TAG_META: u8 = 0;
pub(crate) const TAG_STRING: u8 = 1;
pub(crate) const TAG_MODULE: u8 = 2;
pub(crate) const TAG_STACK: u8 = 3;
pub(crate) const TAG_SYMBOL: u8 = 4;
pub(crate) const TAG_LOST: u8 = 5;
pub(crate) const TAG_RSS: u8 = 6;
pub(crate) const TAG_EXIT: u8 = 7;
pub(crate) const TAG_END: u8 = 8;
// Format 1.1: processes.
pub(crate) const TAG_PROCESS: u8 = 9;
pub(crate) const TAG_EXEC: u8 = 10;
pub(crate) const TAG_PROCESS_EXIT: u8 = 11;
pub(crate) const TAG_THREAD: u8 = 12;
pub(crate) const TAG_UNFOLLOWED: u8 = 13;
/// `TAG_ALLOC + api`: one tag per allocation function, so the common records carry no api byte.
pub(crate) const TAG_ALLOC: u8 = 16;
pub(crate) const TAG_FREE: u8 = 32;
pub(crate) const TAG_REALLOC: u8 = 48;
/// Flag on event tags: the thread differs from the previous event's; a delta follows.
pub(crate) const FLAG_NEW_THREAD: u8 = 0x80;
/// Flag on alloc and realloc tags: the size is the stack's previous size; none is stored.
pub(crate) const FLAG_SAME_SIZE: u8 = 0x40;

const COLUMNS: usize = 8;
const TAGS: usize = 0;
const TIMES: usize = 1;
const THREADS: usize = 2;
const ADDRESSES: usize = 3;
const LITERALS: usize = 4;
const SIZES: usize = 5;
const STACKS: usize = 6;
const BODIES: usize = 7;

fn config() -> impl Config {
    config::standard()
}

/// The decoder config: bincode refuses to pre-allocate more than `MAX_RAW_PAYLOAD` bytes for
/// any one container, whatever length the bytes claim.
type DecodeConfig =
    config::Configuration<config::LittleEndian, config::Varint, config::Limit<MAX_RAW_PAYLOAD>>;
