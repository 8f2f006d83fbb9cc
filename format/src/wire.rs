//! The record codec: how the records of one frame become an uncompressed payload, and back.
//!
//! A payload is column-oriented: every record contributes a tag byte to the `tags` column and
//! its hot fields to the `times`, `threads`, `addresses`, `literals`, `sizes` and `stacks`
//! columns; the rare records (metadata, strings, modules, stacks, symbols, lost counts, RSS,
//! exit, end) put their other fields in the `bodies` column. Keeping like with like is what
//! lets DEFLATE find the repetition of a program's loops: a row layout interleaves the noisy
//! time deltas with everything else and hides it.
//!
//! Numbers are bincode 2 varints (`config::standard()`: little-endian, one byte below 251,
//! zigzag for signed). Times, threads and literal addresses are deltas against the previous
//! record of the same frame, an address seen among the frame's last `ADDRESS_WINDOW`
//! addresses is written as how far back it was, and a size equal to the previous size of the
//! same stack as 0. Every frame starts from zero, so frames decode independently.
//! SPEC.md, "Frame payload", is the byte-level description of this file.

use bincode::config::{self, Config};
use bincode::de::read::Reader;
use bincode::de::{Decode, DecoderImpl};
use bincode::error::DecodeError;

use crate::record::*;

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
/// Slots of the writer's table that finds recent addresses (a writer-side choice only).
const ADDRESS_SLOTS: usize = 16384;
/// Per-thread predictions live in this many slots, chosen by `thread % THREAD_SLOTS`.
pub const THREAD_SLOTS: usize = 64;
/// Length of each thread slot's list of blocks it allocated and of blocks it freed.
pub const THREAD_LIST: usize = 64;

/// Which side of a block's life an address is on: it decides which list predicts it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    /// An address being allocated: likely one this thread freed recently (allocators reuse
    /// the most recently freed block of a size, per thread).
    Allocated = 0,
    /// An address being freed: likely one this thread allocated recently, newest first.
    Freed = 1,
}

/// A most-recent-first list of at most `THREAD_LIST` addresses, kept in a ring so that
/// putting an address first costs O(1) and removing entry `i` costs O(i) (entries near the
/// front are the common case).
#[derive(Clone)]
struct RecentList {
    /// Ring position of entry 0.
    head: usize,
    len: usize,
    items: [u64; THREAD_LIST],
}

impl Default for RecentList {
    fn default() -> Self {
        RecentList {
            head: 0,
            len: 0,
            items: [0; THREAD_LIST],
        }
    }
}

impl RecentList {
    #[inline(always)]
    fn at(&self, i: usize) -> usize {
        (self.head + i) % THREAD_LIST
    }

    fn find(&self, address: u64) -> Option<usize> {
        (0..self.len).find(|&i| self.items[self.at(i)] == address)
    }

    /// Removes and returns entry `i` (the newest is 0).
    #[inline(always)]
    fn take(&mut self, i: usize) -> Option<u64> {
        if i >= self.len {
            return None;
        }
        if i == 0 {
            let a = self.items[self.head];
            self.head = self.at(1);
            self.len -= 1;
            return Some(a);
        }
        let a = self.items[self.at(i)];
        // Close the gap by moving the i newer entries one step toward the old end.
        for j in (0..i).rev() {
            self.items[self.at(j + 1)] = self.items[self.at(j)];
        }
        self.head = self.at(1);
        self.len -= 1;
        Some(a)
    }

    /// Puts `address` first; when full, the oldest entry is overwritten.
    #[inline(always)]
    fn push_front(&mut self, address: u64) {
        self.head = self.at(THREAD_LIST - 1);
        self.items[self.head] = address;
        self.len = (self.len + 1).min(THREAD_LIST);
    }
}

/// What encoder and decoder remember per thread slot, identically.
#[derive(Clone, Default)]
struct ThreadSlot {
    prev_stack: u32,
    /// The last literal address of each role: new blocks come from a bump pointer, while
    /// literal frees are of old blocks, so the two walk different parts of the heap.
    prev_literal: [u64; 2],
    /// Addresses this slot allocated (and has not been seen freeing), newest first.
    allocated: RecentList,
    /// Addresses this slot freed (and has not been seen allocating again), newest first.
    freed: RecentList,
}

impl ThreadSlot {
    #[inline(always)]
    fn list(&mut self, role: Role) -> &mut RecentList {
        match role {
            Role::Allocated => &mut self.freed,
            Role::Freed => &mut self.allocated,
        }
    }

    /// Moves `address` to the front of the list of the other side of its life.
    #[inline(always)]
    fn remember(&mut self, role: Role, address: u64) {
        match role {
            Role::Allocated => self.allocated.push_front(address),
            Role::Freed => self.freed.push_front(address),
        }
    }
}

pub(crate) const TAG_META: u8 = 0;
pub(crate) const TAG_STRING: u8 = 1;
pub(crate) const TAG_MODULE: u8 = 2;
pub(crate) const TAG_STACK: u8 = 3;
pub(crate) const TAG_SYMBOL: u8 = 4;
pub(crate) const TAG_LOST: u8 = 5;
pub(crate) const TAG_RSS: u8 = 6;
pub(crate) const TAG_EXIT: u8 = 7;
pub(crate) const TAG_END: u8 = 8;
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

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// Builds one frame's payload from records.
pub(crate) struct FrameEncoder {
    columns: [Vec<u8>; COLUMNS],
    records: u64,
    time_unit: u64,
    prev_time: u64,
    prev_thread: u32,
    /// Sequence number of the next address occurrence.
    address_seq: u64,
    /// Direct-mapped: hash(address) -> (address, sequence number of its last occurrence).
    recent: Vec<(u64, u64)>,
    /// Direct-mapped: stack % SIZE_SLOTS -> (stack + 1, its last size); 0 = empty.
    sizes: Vec<(u64, u64)>,
    threads: Vec<ThreadSlot>,
    current_slot: usize,
}

macro_rules! put {
    ($buf:expr, $v:expr) => {
        bincode::encode_into_std_write($v, $buf, config())
            .map(|_| ())
            .map_err(|e| std::io::Error::other(e.to_string()))?
    };
}

fn address_slot(address: u64) -> usize {
    (address.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 50) as usize % ADDRESS_SLOTS
}

impl FrameEncoder {
    pub(crate) fn new(time_unit: u64) -> FrameEncoder {
        FrameEncoder {
            columns: Default::default(),
            records: 0,
            time_unit: time_unit.max(1),
            prev_time: 0,
            prev_thread: 0,
            address_seq: 0,
            recent: vec![(0, u64::MAX); ADDRESS_SLOTS],
            sizes: vec![(0, 0); SIZE_SLOTS],
            threads: vec![ThreadSlot::default(); THREAD_SLOTS],
            current_slot: 0,
        }
    }

    /// Bytes the payload would have if finished now (within a few bytes of preamble).
    pub(crate) fn len(&self) -> usize {
        self.columns.iter().map(Vec::len).sum::<usize>() + 64
    }

    fn time(&mut self, time: u64) -> std::io::Result<()> {
        let units = time / self.time_unit;
        let d = units.wrapping_sub(self.prev_time) as i64;
        self.prev_time = units;
        put!(&mut self.columns[TIMES], &zigzag(d));
        Ok(())
    }

    /// Writes the thread delta if the thread changed; returns the tag flag to set.
    fn thread(&mut self, thread: u32) -> std::io::Result<u8> {
        if thread == self.prev_thread {
            return Ok(0);
        }
        self.current_slot = thread as usize % THREAD_SLOTS;
        let d = thread.wrapping_sub(self.prev_thread) as i32;
        self.prev_thread = thread;
        put!(&mut self.columns[THREADS], &zigzag(i64::from(d)));
        Ok(FLAG_NEW_THREAD)
    }

    fn address(&mut self, address: u64, role: Role) -> std::io::Result<()> {
        let seq = self.address_seq;
        let slot = address_slot(address);
        let (seen, at) = self.recent[slot];
        let back = seq.wrapping_sub(at);
        let t = &mut self.threads[self.current_slot];
        let list = t.list(role);
        if let Some(i) = list.find(address) {
            list.take(i);
            put!(&mut self.columns[ADDRESSES], &(2 * i as u64 + 1));
        } else if seen == address && at != u64::MAX && back >= 1 && back <= ADDRESS_WINDOW as u64 {
            put!(&mut self.columns[ADDRESSES], &(2 * back));
        } else {
            put!(&mut self.columns[ADDRESSES], &0u64);
            let prev = &mut t.prev_literal[role as usize];
            let d = address.wrapping_sub(*prev) as i64;
            *prev = address;
            put!(&mut self.columns[LITERALS], &zigzag(d));
        }
        let t = &mut self.threads[self.current_slot];
        t.remember(role, address);
        self.recent[slot] = (address, seq);
        self.address_seq += 1;
        Ok(())
    }

    /// Writes stack and size; returns the tag flag to set.
    fn size_and_stack(&mut self, size: u64, stack: u32) -> std::io::Result<u8> {
        let slot = &mut self.sizes[stack as usize % SIZE_SLOTS];
        let flag = if slot.0 == u64::from(stack) + 1 && slot.1 == size {
            FLAG_SAME_SIZE
        } else {
            put!(&mut self.columns[SIZES], &size);
            0
        };
        *slot = (u64::from(stack) + 1, size);
        let t = &mut self.threads[self.current_slot];
        let d = stack.wrapping_sub(t.prev_stack) as i32;
        t.prev_stack = stack;
        put!(&mut self.columns[STACKS], &zigzag(i64::from(d)));
        Ok(flag)
    }

    pub(crate) fn encode(&mut self, record: &Record) -> std::io::Result<()> {
        self.records += 1;
        let tag = match record {
            Record::Alloc { api, .. } => TAG_ALLOC + *api as u8,
            Record::Free { api, .. } => TAG_FREE + *api as u8,
            Record::Realloc { api, .. } => TAG_REALLOC + *api as u8,
            Record::Meta(_) => TAG_META,
            Record::String { .. } => TAG_STRING,
            Record::Module(_) => TAG_MODULE,
            Record::Stack(_) => TAG_STACK,
            Record::Symbol(_) => TAG_SYMBOL,
            Record::Lost { .. } => TAG_LOST,
            Record::Rss { .. } => TAG_RSS,
            Record::Exit { .. } => TAG_EXIT,
            Record::End { .. } => TAG_END,
        };
        let tag_at = self.columns[TAGS].len();
        self.columns[TAGS].push(tag);
        if let Some(time) = record.time() {
            self.time(time)?;
        }
        let body = BODIES;
        let mut flags = 0;
        match record {
            Record::Alloc {
                thread,
                address,
                size,
                stack,
                ..
            } => {
                flags |= self.thread(*thread)?;
                self.address(*address, Role::Allocated)?;
                flags |= self.size_and_stack(*size, *stack)?;
            }
            Record::Free {
                thread,
                address,
                size,
                api,
                ..
            } => {
                flags |= self.thread(*thread)?;
                self.address(*address, Role::Freed)?;
                if *api == FreeApi::Munmap {
                    put!(&mut self.columns[SIZES], size);
                }
            }
            Record::Realloc {
                thread,
                old_address,
                new_address,
                size,
                stack,
                ..
            } => {
                flags |= self.thread(*thread)?;
                self.address(*old_address, Role::Freed)?;
                self.address(*new_address, Role::Allocated)?;
                flags |= self.size_and_stack(*size, *stack)?;
            }
            Record::Meta(m) => {
                let b = &mut self.columns[body];
                put!(b, m.tool_version.as_str());
                put!(b, m.host_name.as_str());
                put!(b, m.kernel_release.as_str());
                put!(b, &m.pid);
                put!(b, &m.command_line);
                put!(b, &m.start_wall_ns);
                put!(b, &m.start_monotonic_ns);
                put!(b, &m.page_size);
                put!(b, &m.sample_bytes);
                put!(b, &m.time_resolution_ns);
                put!(b, &m.extra);
            }
            Record::String { id, value } => {
                let b = &mut self.columns[body];
                put!(b, id);
                put!(b, value.as_str());
            }
            Record::Module(m) => {
                let b = &mut self.columns[body];
                put!(b, &m.id);
                put!(b, m.path.as_str());
                put!(b, &m.build_id);
                put!(b, &(m.ranges.len() as u64));
                for r in &m.ranges {
                    put!(b, &r.start);
                    put!(b, &r.end);
                    put!(b, &r.file_offset);
                }
            }
            Record::Stack(s) => {
                let b = &mut self.columns[body];
                put!(b, &s.id);
                b.push(s.unwinder as u8);
                b.push(u8::from(s.truncated));
                put!(b, &(s.frames.len() as u64));
                for f in &s.frames {
                    put!(b, &f.module);
                    put!(b, &f.offset);
                    put!(b, &f.address);
                }
            }
            Record::Symbol(s) => {
                let b = &mut self.columns[body];
                put!(b, &s.module);
                put!(b, &s.offset);
                put!(b, &(s.frames.len() as u64));
                for f in &s.frames {
                    put!(b, &f.function);
                    put!(b, &f.file);
                    put!(b, &f.line);
                }
            }
            Record::Lost { count, reason, .. } => {
                let b = &mut self.columns[body];
                put!(b, count);
                b.push(*reason as u8);
            }
            Record::Rss {
                rss_bytes,
                anon_bytes,
                ..
            } => {
                let b = &mut self.columns[body];
                put!(b, rss_bytes);
                put!(b, anon_bytes);
            }
            Record::Exit { code, signal, .. } => {
                let b = &mut self.columns[body];
                put!(b, code);
                put!(b, signal);
            }
            Record::End { totals, .. } => {
                let b = &mut self.columns[body];
                put!(b, &totals.allocations);
                put!(b, &totals.frees);
                put!(b, &totals.reallocs);
                put!(b, &totals.lost);
            }
        }
        self.columns[TAGS][tag_at] |= flags;
        Ok(())
    }

    /// Writes the payload (preamble, then the columns) into `out` and starts a new frame.
    pub(crate) fn finish_into(&mut self, out: &mut Vec<u8>) -> std::io::Result<()> {
        out.clear();
        put!(out, &self.time_unit);
        put!(out, &self.records);
        for c in &self.columns {
            put!(out, &(c.len() as u64));
        }
        for c in &mut self.columns {
            out.extend_from_slice(c);
            c.clear();
        }
        let time_unit = self.time_unit;
        let columns = std::mem::take(&mut self.columns);
        let recent = std::mem::take(&mut self.recent);
        let sizes = std::mem::take(&mut self.sizes);
        let threads = std::mem::take(&mut self.threads);
        *self = FrameEncoder {
            columns,
            recent,
            sizes,
            threads,
            ..FrameEncoder::new_empty(time_unit)
        };
        self.recent.fill((0, u64::MAX));
        self.sizes.fill((0, 0));
        self.threads.fill(ThreadSlot::default());
        Ok(())
    }

    fn new_empty(time_unit: u64) -> FrameEncoder {
        FrameEncoder {
            columns: Default::default(),
            records: 0,
            time_unit,
            prev_time: 0,
            prev_thread: 0,
            address_seq: 0,
            recent: Vec::new(),
            sizes: Vec::new(),
            threads: Vec::new(),
            current_slot: 0,
        }
    }
}

/// A bincode reader over one column of a payload; `pos` is relative to the whole payload so
/// errors can name it.
#[derive(Clone, Copy)]
struct Column<'a> {
    bytes: &'a [u8],
    pos: usize,
    end: usize,
}

impl Reader for Column<'_> {
    #[inline(always)]
    fn read(&mut self, out: &mut [u8]) -> Result<(), DecodeError> {
        let end = self.pos + out.len();
        if end > self.end {
            return Err(DecodeError::UnexpectedEnd {
                additional: end - self.end,
            });
        }
        out.copy_from_slice(&self.bytes[self.pos..end]);
        self.pos = end;
        Ok(())
    }

    #[inline(always)]
    fn peek_read(&mut self, n: usize) -> Option<&[u8]> {
        if self.pos + n <= self.end {
            Some(&self.bytes[self.pos..self.pos + n])
        } else {
            None
        }
    }

    #[inline(always)]
    fn consume(&mut self, n: usize) {
        self.pos = (self.pos + n).min(self.end);
    }
}

/// Why a record could not be decoded, with its position inside the payload.
#[derive(Debug)]
pub(crate) struct RecordError {
    pub(crate) pos: usize,
    pub(crate) what: String,
}

type Dec<'a> = DecoderImpl<Column<'a>, DecodeConfig, ()>;

fn dec(column: Column<'_>) -> Dec<'_> {
    DecoderImpl::new(
        column,
        config::standard().with_limit::<MAX_RAW_PAYLOAD>(),
        (),
    )
}

#[inline(always)]
fn get<T: Decode<()>>(d: &mut Dec<'_>) -> Result<T, DecodeError> {
    T::decode(d)
}

fn get_string(d: &mut Dec<'_>) -> Result<String, DecodeError> {
    let n = get_len_limit(d, MAX_STRING, "string longer than the 1 MiB limit")?;
    let mut bytes = vec![0u8; n];
    bincode::de::Decoder::reader(d).read(&mut bytes)?;
    String::from_utf8(bytes).map_err(|_| DecodeError::Other("string is not valid UTF-8"))
}

fn get_len_limit(d: &mut Dec<'_>, limit: usize, what: &'static str) -> Result<usize, DecodeError> {
    let n: u64 = get(d)?;
    if n > limit as u64 {
        return Err(DecodeError::Other(what));
    }
    Ok(n as usize)
}

fn get_len(d: &mut Dec<'_>) -> Result<usize, DecodeError> {
    get_len_limit(d, MAX_LIST, "list longer than the 65536 element limit")
}

/// A list: its length (checked against `MAX_LIST`), then `item` that many times. The capacity
/// reserved up front is small whatever the length claims; the vector grows as items decode.
fn get_list<T>(
    d: &mut Dec<'_>,
    mut item: impl FnMut(&mut Dec<'_>) -> Result<T, DecodeError>,
) -> Result<Vec<T>, DecodeError> {
    let n = get_len(d)?;
    let mut v = Vec::with_capacity(n.min(64));
    for _ in 0..n {
        v.push(item(d)?);
    }
    Ok(v)
}

fn get_u8(d: &mut Dec<'_>) -> Result<u8, DecodeError> {
    let mut b = [0u8; 1];
    bincode::de::Decoder::reader(d).read(&mut b)?;
    Ok(b[0])
}

/// Where a column starts and ends inside the payload.
#[derive(Clone, Copy, Default)]
struct Span {
    pos: usize,
    end: usize,
}

/// Reads the records of one uncompressed payload, in order. It holds positions, not the
/// payload, so a reader can keep it beside the buffer it decodes; every call passes the same
/// payload it was created with.
pub(crate) struct FrameDecoder {
    columns: [Span; COLUMNS],
    remaining: u64,
    time_unit: u64,
    prev_time: u64,
    prev_thread: u32,
    address_seq: u64,
    window: Box<[u64; ADDRESS_WINDOW]>,
    sizes: Box<[(u64, u64); SIZE_SLOTS]>,
    threads: Box<[ThreadSlot; THREAD_SLOTS]>,
    current_slot: usize,
}

/// Decodes one bincode varint (`config::standard()`) of column `span`: the hot path of every
/// event field, written out so it inlines. Byte `b < 251` is the value; 251, 252 and 253 are
/// followed by a little-endian u16, u32 and u64.
#[inline(always)]
fn take_varint(payload: &[u8], span: &mut Span) -> Result<u64, &'static str> {
    const SHORT: &str = "its column ends too early";
    let bytes = payload.get(span.pos..span.end).ok_or(SHORT)?;
    let (v, used) = match bytes.first() {
        Some(&b) if b < 251 => (u64::from(b), 1),
        Some(251) => match bytes.get(1..3) {
            Some(x) => (u64::from(u16::from_le_bytes([x[0], x[1]])), 3),
            None => return Err(SHORT),
        },
        Some(252) => match bytes.get(1..5) {
            Some(x) => (u64::from(u32::from_le_bytes([x[0], x[1], x[2], x[3]])), 5),
            None => return Err(SHORT),
        },
        Some(253) => match bytes.get(1..9) {
            Some(x) => {
                let mut b8 = [0u8; 8];
                b8.copy_from_slice(x);
                (u64::from_le_bytes(b8), 9)
            }
            None => return Err(SHORT),
        },
        // 254 (u128) and 255 never encode a value that fits the hot columns' u64.
        Some(_) => return Err("varint does not fit 64 bits"),
        None => return Err(SHORT),
    };
    span.pos += used;
    Ok(v)
}

/// A bincode error as a fixed message: the hot path must not build or drop strings.
fn describe(e: DecodeError) -> &'static str {
    match e {
        DecodeError::UnexpectedEnd { .. } => "its column ends too early",
        DecodeError::LimitExceeded => "a length exceeds the decoder's limit",
        DecodeError::Other(what) => what,
        DecodeError::Utf8 { .. } => "a string is not valid UTF-8",
        DecodeError::InvalidBooleanValue(_) => "an option flag is not 0 or 1",
        DecodeError::UnexpectedVariant { .. } => "an option flag is not 0 or 1",
        _ => "a value is malformed",
    }
}

impl FrameDecoder {
    /// Parses the preamble and checks that the columns exactly fill the payload.
    pub(crate) fn new(payload: &[u8]) -> Result<FrameDecoder, RecordError> {
        let mut pre = dec(Column {
            bytes: payload,
            pos: 0,
            end: payload.len(),
        });
        let bad = |pos: usize, what: &str| RecordError {
            pos,
            what: what.to_string(),
        };
        let header = (|| -> Result<(u64, u64, [u64; COLUMNS]), DecodeError> {
            let unit: u64 = get(&mut pre)?;
            let records: u64 = get(&mut pre)?;
            let mut lens = [0u64; COLUMNS];
            for l in &mut lens {
                *l = get(&mut pre)?;
            }
            Ok((unit, records, lens))
        })()
        .map_err(|e| bad(0, &format!("bad frame preamble: {e}")))?;
        let (time_unit, records, lens) = header;
        if time_unit == 0 {
            return Err(bad(0, "frame time unit is 0"));
        }
        let mut pos = bincode::de::Decoder::reader(&mut pre).pos;
        let total: u128 = lens.iter().map(|&l| u128::from(l)).sum();
        if total != (payload.len() - pos) as u128 {
            return Err(bad(
                0,
                &format!(
                    "frame columns add up to {total} bytes but {} follow the preamble",
                    payload.len() - pos
                ),
            ));
        }
        if lens[TAGS] != records {
            return Err(bad(0, "frame record count differs from its number of tags"));
        }
        let columns = lens.map(|l| {
            let c = Span {
                pos,
                end: pos + l as usize,
            };
            pos += l as usize;
            c
        });
        Ok(FrameDecoder {
            columns,
            remaining: records,
            time_unit,
            prev_time: 0,
            prev_thread: 0,
            address_seq: 0,
            window: Box::new([0; ADDRESS_WINDOW]),
            sizes: Box::new([(0, 0); SIZE_SLOTS]),
            threads: Box::new(std::array::from_fn(|_| ThreadSlot::default())),
            current_slot: 0,
        })
    }

    /// The next record, `None` after the last one. Inlined into its callers: returning a
    /// record through memory costs a store-forwarding stall per record.
    #[inline(always)]
    pub(crate) fn next_record(&mut self, p: &[u8]) -> Option<Result<Record, RecordError>> {
        if self.remaining == 0 {
            return None;
        }
        self.remaining -= 1;
        let tag_pos = self.columns[TAGS].pos;
        Some(self.decode_one(p).map_err(|(column, e)| RecordError {
            pos: self.columns[column].pos,
            what: format!("record with tag at payload byte {tag_pos}: {e}"),
        }))
    }

    #[inline(always)]
    fn time(&mut self, p: &[u8]) -> Result<u64, (usize, &'static str)> {
        let d = take_varint(p, &mut self.columns[TIMES]).map_err(|e| (TIMES, e))?;
        self.prev_time = self.prev_time.wrapping_add(unzigzag(d) as u64);
        Ok(self.prev_time.wrapping_mul(self.time_unit))
    }

    #[inline(always)]
    fn thread(&mut self, p: &[u8], tag: u8) -> Result<u32, (usize, &'static str)> {
        if tag & FLAG_NEW_THREAD == 0 {
            return Ok(self.prev_thread);
        }
        let d = take_varint(p, &mut self.columns[THREADS]).map_err(|e| (THREADS, e))?;
        self.prev_thread = self.prev_thread.wrapping_add(unzigzag(d) as u32);
        self.current_slot = self.prev_thread as usize % THREAD_SLOTS;
        Ok(self.prev_thread)
    }

    #[inline(always)]
    fn address(&mut self, p: &[u8], role: Role) -> Result<u64, (usize, &'static str)> {
        let code = take_varint(p, &mut self.columns[ADDRESSES]).map_err(|e| (ADDRESSES, e))?;
        let t = &mut self.threads[self.current_slot];
        let address = if code == 0 {
            let d = take_varint(p, &mut self.columns[LITERALS]).map_err(|e| (LITERALS, e))?;
            let prev = &mut t.prev_literal[role as usize];
            *prev = prev.wrapping_add(unzigzag(d) as u64);
            *prev
        } else if code % 2 == 1 {
            let i = usize::try_from(code / 2).unwrap_or(usize::MAX);
            t.list(role).take(i).ok_or((
                ADDRESSES,
                "address reference past the end of its thread's list",
            ))?
        } else {
            let back = code / 2;
            if back > ADDRESS_WINDOW as u64 || back > self.address_seq {
                return Err((
                    ADDRESSES,
                    "address reference points before the frame's window",
                ));
            }
            self.window[(self.address_seq - back) as usize % ADDRESS_WINDOW]
        };
        t.remember(role, address);
        self.window[self.address_seq as usize % ADDRESS_WINDOW] = address;
        self.address_seq += 1;
        Ok(address)
    }

    /// A size written as `size + 1` (never predicted): the length of a munmap.
    fn explicit_size(&mut self, p: &[u8]) -> Result<u64, (usize, &'static str)> {
        take_varint(p, &mut self.columns[SIZES]).map_err(|e| (SIZES, e))
    }

    #[inline(always)]
    fn size_and_stack(&mut self, p: &[u8], tag: u8) -> Result<(u64, u32), (usize, &'static str)> {
        let explicit = if tag & FLAG_SAME_SIZE == 0 {
            Some(take_varint(p, &mut self.columns[SIZES]).map_err(|e| (SIZES, e))?)
        } else {
            None
        };
        let d = take_varint(p, &mut self.columns[STACKS]).map_err(|e| (STACKS, e))?;
        let t = &mut self.threads[self.current_slot];
        let stack = t.prev_stack.wrapping_add(unzigzag(d) as u32);
        t.prev_stack = stack;
        let slot = &mut self.sizes[stack as usize % SIZE_SLOTS];
        let size = match explicit {
            Some(size) => size,
            None if slot.0 == u64::from(stack) + 1 => slot.1,
            None => return Err((SIZES, "size refers to a stack not seen in this frame")),
        };
        *slot = (u64::from(stack) + 1, size);
        Ok((size, stack))
    }

    #[inline(always)]
    fn decode_one(&mut self, p: &[u8]) -> Result<Record, (usize, &'static str)> {
        let tags = &mut self.columns[TAGS];
        let tag = *p[..tags.end]
            .get(tags.pos)
            .ok_or((TAGS, "the tag column ends too early"))?;
        tags.pos += 1;
        let unknown = || (TAGS, "unknown record tag");
        let flags = tag & (FLAG_NEW_THREAD | FLAG_SAME_SIZE);
        let base = tag & !(FLAG_NEW_THREAD | FLAG_SAME_SIZE);
        let sized = (TAG_ALLOC..TAG_ALLOC + 16).contains(&base)
            || (TAG_REALLOC..TAG_REALLOC + 16).contains(&base);
        let event = sized || (TAG_FREE..TAG_FREE + 16).contains(&base);
        if (flags & FLAG_NEW_THREAD != 0 && !event) || (flags & FLAG_SAME_SIZE != 0 && !sized) {
            return Err(unknown());
        }
        let record = match base {
            t if (TAG_ALLOC..TAG_ALLOC + 16).contains(&t) => {
                let api = AllocApi::from_u8(t - TAG_ALLOC).ok_or_else(unknown)?;
                let time = self.time(p)?;
                let thread = self.thread(p, tag)?;
                let address = self.address(p, Role::Allocated)?;
                let (size, stack) = self.size_and_stack(p, tag)?;
                Record::Alloc {
                    time,
                    thread,
                    address,
                    size,
                    stack,
                    api,
                }
            }
            t if (TAG_FREE..TAG_FREE + 16).contains(&t) => {
                let api = FreeApi::from_u8(t - TAG_FREE).ok_or_else(unknown)?;
                let time = self.time(p)?;
                let thread = self.thread(p, tag)?;
                let address = self.address(p, Role::Freed)?;
                let size = match api {
                    FreeApi::Free => 0,
                    FreeApi::Munmap => self.explicit_size(p)?,
                };
                Record::Free {
                    time,
                    thread,
                    address,
                    size,
                    api,
                }
            }
            t if (TAG_REALLOC..TAG_REALLOC + 16).contains(&t) => {
                let api = AllocApi::from_u8(t - TAG_REALLOC).ok_or_else(unknown)?;
                let time = self.time(p)?;
                let thread = self.thread(p, tag)?;
                let old_address = self.address(p, Role::Freed)?;
                let new_address = self.address(p, Role::Allocated)?;
                let (size, stack) = self.size_and_stack(p, tag)?;
                Record::Realloc {
                    time,
                    thread,
                    old_address,
                    new_address,
                    size,
                    stack,
                    api,
                }
            }
            TAG_LOST | TAG_RSS | TAG_EXIT | TAG_END => {
                let time = self.time(p)?;
                self.timed_body(p, tag, time)
                    .map_err(|e| (BODIES, describe(e)))?
            }
            TAG_META | TAG_STRING | TAG_MODULE | TAG_STACK | TAG_SYMBOL => {
                self.body(p, tag).map_err(|e| (BODIES, describe(e)))?
            }
            _ => return Err(unknown()),
        };
        Ok(record)
    }

    fn timed_body(&mut self, p: &[u8], tag: u8, time: u64) -> Result<Record, DecodeError> {
        let span = &mut self.columns[BODIES];
        let mut dd = dec(Column {
            bytes: p,
            pos: span.pos,
            end: span.end,
        });
        let d = &mut dd;
        let r = Self::timed_body_in(d, tag, time);
        span.pos = bincode::de::Decoder::reader(d).pos;
        r
    }

    fn timed_body_in(d: &mut Dec<'_>, tag: u8, time: u64) -> Result<Record, DecodeError> {
        Ok(match tag {
            TAG_LOST => Record::Lost {
                time,
                count: get(d)?,
                reason: LostReason::from_u8(get_u8(d)?),
            },
            TAG_RSS => Record::Rss {
                time,
                rss_bytes: get(d)?,
                anon_bytes: get(d)?,
            },
            TAG_EXIT => Record::Exit {
                time,
                code: get(d)?,
                signal: get(d)?,
            },
            _ => Record::End {
                time,
                totals: EndTotals {
                    allocations: get(d)?,
                    frees: get(d)?,
                    reallocs: get(d)?,
                    lost: get(d)?,
                },
            },
        })
    }

    fn body(&mut self, p: &[u8], tag: u8) -> Result<Record, DecodeError> {
        let span = &mut self.columns[BODIES];
        let mut dd = dec(Column {
            bytes: p,
            pos: span.pos,
            end: span.end,
        });
        let d = &mut dd;
        let r = Self::body_in(d, tag);
        span.pos = bincode::de::Decoder::reader(d).pos;
        r
    }

    fn body_in(d: &mut Dec<'_>, tag: u8) -> Result<Record, DecodeError> {
        Ok(match tag {
            TAG_META => Record::Meta(Box::new(TraceMeta {
                tool_version: get_string(d)?,
                host_name: get_string(d)?,
                kernel_release: get_string(d)?,
                pid: get(d)?,
                command_line: get_list(d, get_string)?,
                start_wall_ns: get(d)?,
                start_monotonic_ns: get(d)?,
                page_size: get(d)?,
                sample_bytes: get(d)?,
                time_resolution_ns: get(d)?,
                extra: get_list(d, |d| Ok((get_string(d)?, get_string(d)?)))?,
            })),
            TAG_STRING => Record::String {
                id: get(d)?,
                value: get_string(d)?,
            },
            TAG_MODULE => {
                let id = get(d)?;
                let path = get_string(d)?;
                let n = get_len_limit(d, 256, "build-id longer than 256 bytes")?;
                let mut build_id = vec![0u8; n];
                bincode::de::Decoder::reader(d).read(&mut build_id)?;
                let ranges = get_list(d, |d| {
                    Ok(MappingRange {
                        start: get(d)?,
                        end: get(d)?,
                        file_offset: get(d)?,
                    })
                })?;
                Record::Module(Box::new(Module {
                    id,
                    path,
                    build_id,
                    ranges,
                }))
            }
            TAG_STACK => {
                let id = get(d)?;
                let unwinder = Unwinder::from_u8(get_u8(d)?);
                let truncated = match get_u8(d)? {
                    0 => false,
                    1 => true,
                    _ => return Err(DecodeError::Other("stack truncated flag is not 0 or 1")),
                };
                let frames = get_list(d, |d| {
                    Ok(StackFrame {
                        module: get(d)?,
                        offset: get(d)?,
                        address: get(d)?,
                    })
                })?;
                Record::Stack(Stack {
                    id,
                    unwinder,
                    truncated,
                    frames,
                })
            }
            _ => {
                let module = get(d)?;
                let offset = get(d)?;
                let frames = get_list(d, |d| {
                    Ok(SymbolFrame {
                        function: get(d)?,
                        file: get(d)?,
                        line: get(d)?,
                    })
                })?;
                Record::Symbol(Symbol {
                    module,
                    offset,
                    frames,
                })
            }
        })
    }
}
