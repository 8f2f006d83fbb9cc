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
const ADDRESS_SLOTS: usize = 8192;
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

/// Entries a `RecentList` has room for: the list twice over.
const LIST_ROOM: usize = 2 * THREAD_LIST;

/// A most-recent-first list of at most `THREAD_LIST` addresses. The entries sit in order in
/// `items[start..end]`, the newest last, in room for twice the list: putting an address first
/// is a store, removing entry `i` moves the `i` newer entries (entries near the front are the
/// common case), and the live entries are moved back to the start of `items` once every
/// `THREAD_LIST` insertions, when `end` reaches the end of the room. Eight entries of slack
/// after the room let removals move whole blocks of eight.
#[derive(Clone)]
struct RecentList {
    start: usize,
    end: usize,
    items: [u64; LIST_ROOM + 8],
}

impl Default for RecentList {
    fn default() -> Self {
        RecentList {
            start: 0,
            end: 0,
            items: [0; LIST_ROOM + 8],
        }
    }
}

impl RecentList {
    /// The position of `address` in the list (0 is the newest). Compares eight entries at a
    /// time without an early exit, which the compiler turns into vector code: the encoder asks
    /// this of every address, and most are not in the list.
    fn find(&self, address: u64) -> Option<usize> {
        let live = &self.items[self.start..self.end];
        let mut chunks = live.rchunks_exact(8);
        let mut newer = 0;
        for chunk in &mut chunks {
            if let Ok(chunk) = <&[u64; 8]>::try_from(chunk) {
                // A fixed eight compares and no branch: the compiler makes vector code of it.
                let hits = chunk.iter().enumerate().fold(0u32, |hits, (k, &item)| {
                    hits | (u32::from(item == address) << k)
                });
                if hits != 0 {
                    // The newest match in this chunk is its highest set bit.
                    return Some(newer + 7 - (31 - hits.leading_zeros() as usize));
                }
            }
            newer += 8;
        }
        // The oldest entries, fewer than eight.
        let rest = chunks.remainder();
        rest.iter()
            .rev()
            .position(|&item| item == address)
            .map(|i| newer + i)
    }

    /// Removes and returns entry `i` (the newest is 0).
    #[inline(always)]
    fn take(&mut self, i: usize) -> Option<u64> {
        if i >= self.end - self.start {
            return None;
        }
        let at = self.end - 1 - i;
        let address = self.items[at];
        // Close the gap, eight entries at a time: fixed-size moves, inline, cost less than a
        // call to memmove for these few entries. What the last block carries past `end` lands
        // in the slack after the room. Entry 1 is common enough to have its own case.
        if i == 1 {
            self.items[at] = self.items[at + 1];
        } else {
            let mut k = at;
            while k + 1 < self.end {
                let Some(block) = self
                    .items
                    .get(k + 1..k + 9)
                    .and_then(|b| <[u64; 8]>::try_from(b).ok())
                else {
                    break;
                };
                if let Some(dst) = self.items.get_mut(k..k + 8) {
                    dst.copy_from_slice(&block);
                }
                k += 8;
            }
        }
        self.end -= 1;
        Some(address)
    }

    /// Puts `address` first; when full, the oldest entry is dropped.
    #[inline(always)]
    fn push_front(&mut self, address: u64) {
        if self.end == LIST_ROOM {
            self.compact();
        }
        self.items[self.end] = address;
        self.end += 1;
        if self.end - self.start > THREAD_LIST {
            self.start += 1;
        }
    }

    /// Empties the list.
    fn clear(&mut self) {
        self.start = 0;
        self.end = 0;
    }

    #[cold]
    fn compact(&mut self) {
        self.items.copy_within(self.start..self.end, 0);
        self.end -= self.start;
        self.start = 0;
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
    /// Back to the default state without rewriting the lists' storage (2 KiB a slot): only
    /// the entries between a list's start and end are ever read.
    fn reset(&mut self) {
        self.prev_stack = 0;
        self.prev_literal = [0; 2];
        self.allocated.clear();
        self.freed.clear();
    }

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
    /// Direct-mapped: hash(address) -> low 32 bits of the sequence number of the last address
    /// with that hash. 32 KiB, and `window` 32 KiB, where pairs of (address, sequence number)
    /// took 256 KiB: this lookup is made for every address, and in a recorder the ring buffer
    /// streams through the caches between two of them.
    recent: Vec<u32>,
    /// The last `ADDRESS_WINDOW` addresses, at `sequence number % ADDRESS_WINDOW` (the
    /// decoder's window): what proves a `recent` candidate is the address.
    window: Vec<u64>,
    /// Direct-mapped: stack % SIZE_SLOTS -> (stack + 1, its last size); 0 = empty.
    sizes: Vec<(u64, u64)>,
    threads: Vec<ThreadSlot>,
    /// Per thread slot, a membership filter of each of its two lists (see `ListFilter`).
    filters: Vec<[ListFilter; 2]>,
    /// Bit `s` set: thread slot `s` has entries in its lists (its filters need a reset).
    used_slots: u64,
    current_slot: usize,
}

/// Buckets of a `ListFilter`: with a full list of `THREAD_LIST` addresses about 6% of the
/// addresses not in it still need the scan.
const FILTER_BUCKETS: usize = 1024;

/// How many entries of one `RecentList` fall in each bucket of a hash of the address (a
/// counting Bloom filter with one hash). A zero count proves the address is not in the list,
/// so the encoder skips the scan of up to `THREAD_LIST` entries, which most addresses being
/// allocated (and many being freed) would otherwise pay in full: they are in no list. Counts
/// are exact (the encoder mirrors every insertion, removal and eviction), so the encoder
/// finds the same entries as without the filter and writes the same bytes. At most
/// `THREAD_LIST` entries: a count fits a `u8`. Encoder only: a decoder is told the position.
#[derive(Clone)]
struct ListFilter([u8; FILTER_BUCKETS]);

impl Default for ListFilter {
    fn default() -> Self {
        ListFilter([0; FILTER_BUCKETS])
    }
}

#[inline(always)]
fn filter_bucket(address: u64) -> usize {
    (address.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 54) as usize % FILTER_BUCKETS
}

// `FrameEncoder::used_slots` has one bit per thread slot.
const _: () = assert!(THREAD_SLOTS <= 64);

/// Which `ListFilter` of a slot mirrors which list.
const ALLOCATED_LIST: usize = 0;
const FREED_LIST: usize = 1;

/// The address `push_front` is about to evict from `list` (its oldest, when it is full).
#[inline(always)]
fn evicted_by_push(list: &RecentList) -> Option<u64> {
    (list.end - list.start == THREAD_LIST).then(|| list.items[list.start])
}

macro_rules! put {
    ($buf:expr, $v:expr) => {
        bincode::encode_into_std_write($v, $buf, config())
            .map(|_| ())
            .map_err(|e| std::io::Error::other(e.to_string()))?
    };
}

/// Appends `v` as a bincode varint (`config::standard()`), byte for byte what `put!` writes,
/// without going through `std::io::Write`: the hot columns take one per event field.
#[inline(always)]
fn push_varint(column: &mut Vec<u8>, v: u64) {
    if v < 251 {
        column.push(v as u8);
    } else if v <= u64::from(u16::MAX) {
        column.push(251);
        column.extend_from_slice(&(v as u16).to_le_bytes());
    } else if v <= u64::from(u32::MAX) {
        column.push(252);
        column.extend_from_slice(&(v as u32).to_le_bytes());
    } else {
        column.push(253);
        column.extend_from_slice(&v.to_le_bytes());
    }
}

fn address_slot(address: u64) -> usize {
    (address.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - ADDRESS_SLOTS.trailing_zeros())) as usize
        % ADDRESS_SLOTS
}

/// How far back `address` was among the frame's last `ADDRESS_WINDOW` addresses, if the
/// `recent` table still knows (`seq`: the address's own sequence number). Only the window is
/// trusted: a slot may be stale (from an earlier frame, or its 32 bits wrapped), but an equal
/// address `back` places back within this frame is a valid reference whatever put it there.
#[inline(always)]
fn recent_reference(
    recent: &[u32],
    window: &[u64],
    address: u64,
    slot: usize,
    seq: u64,
) -> Option<u64> {
    let back = u64::from((seq as u32).wrapping_sub(recent[slot]));
    ((1..=(ADDRESS_WINDOW as u64).min(seq)).contains(&back)
        && window[(seq - back) as usize % ADDRESS_WINDOW] == address)
        .then_some(back)
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
            recent: vec![0; ADDRESS_SLOTS],
            window: vec![0; ADDRESS_WINDOW],
            sizes: vec![(0, 0); SIZE_SLOTS],
            threads: vec![ThreadSlot::default(); THREAD_SLOTS],
            filters: vec![Default::default(); THREAD_SLOTS],
            used_slots: 0,
            current_slot: 0,
        }
    }

    /// Bytes the payload would have if finished now (within a few bytes of preamble).
    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.columns.iter().map(Vec::len).sum::<usize>() + 64
    }

    fn time(&mut self, time: u64) -> std::io::Result<()> {
        let units = time / self.time_unit;
        let d = units.wrapping_sub(self.prev_time) as i64;
        self.prev_time = units;
        push_varint(&mut self.columns[TIMES], zigzag(d));
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
        push_varint(&mut self.columns[THREADS], zigzag(i64::from(d)));
        Ok(FLAG_NEW_THREAD)
    }

    fn address(&mut self, address: u64, role: Role) -> std::io::Result<()> {
        let seq = self.address_seq;
        let slot = address_slot(address);
        let bucket = filter_bucket(address);
        // The list an address is looked up in is the other side's (see `ThreadSlot::list`).
        let (searched, pushed) = match role {
            Role::Allocated => (FREED_LIST, ALLOCATED_LIST),
            Role::Freed => (ALLOCATED_LIST, FREED_LIST),
        };
        self.used_slots |= 1 << self.current_slot;
        let filters = &mut self.filters[self.current_slot];
        let t = &mut self.threads[self.current_slot];
        let list = t.list(role);
        let found = if filters[searched].0[bucket] == 0 {
            debug_assert_eq!(list.find(address), None, "list filter out of step");
            None
        } else {
            list.find(address)
        };
        if let Some(i) = found {
            list.take(i);
            filters[searched].0[bucket] -= 1;
            push_varint(&mut self.columns[ADDRESSES], 2 * i as u64 + 1);
        } else if let Some(back) = recent_reference(&self.recent, &self.window, address, slot, seq)
        {
            push_varint(&mut self.columns[ADDRESSES], 2 * back);
        } else {
            push_varint(&mut self.columns[ADDRESSES], 0u64);
            let prev = &mut t.prev_literal[role as usize];
            let d = address.wrapping_sub(*prev) as i64;
            *prev = address;
            push_varint(&mut self.columns[LITERALS], zigzag(d));
        }
        let t = &mut self.threads[self.current_slot];
        let filters = &mut self.filters[self.current_slot];
        let destination = match role {
            Role::Allocated => &t.allocated,
            Role::Freed => &t.freed,
        };
        if let Some(evicted) = evicted_by_push(destination) {
            filters[pushed].0[filter_bucket(evicted)] -= 1;
        }
        filters[pushed].0[bucket] += 1;
        t.remember(role, address);
        self.recent[slot] = seq as u32;
        self.window[seq as usize % ADDRESS_WINDOW] = address;
        self.address_seq += 1;
        Ok(())
    }

    /// Writes stack and size; returns the tag flag to set.
    fn size_and_stack(&mut self, size: u64, stack: u32) -> std::io::Result<u8> {
        let slot = &mut self.sizes[stack as usize % SIZE_SLOTS];
        let flag = if slot.0 == u64::from(stack) + 1 && slot.1 == size {
            FLAG_SAME_SIZE
        } else {
            push_varint(&mut self.columns[SIZES], size);
            0
        };
        *slot = (u64::from(stack) + 1, size);
        let t = &mut self.threads[self.current_slot];
        let d = stack.wrapping_sub(t.prev_stack) as i32;
        t.prev_stack = stack;
        push_varint(&mut self.columns[STACKS], zigzag(i64::from(d)));
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
                    push_varint(&mut self.columns[SIZES], *size);
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
        let window = std::mem::take(&mut self.window);
        let sizes = std::mem::take(&mut self.sizes);
        let threads = std::mem::take(&mut self.threads);
        let filters = std::mem::take(&mut self.filters);
        let used_slots = self.used_slots;
        *self = FrameEncoder {
            columns,
            recent,
            window,
            sizes,
            threads,
            filters,
            ..FrameEncoder::new_empty(time_unit)
        };
        // `recent` and `window` need no reset: a reference is only made to an equal address
        // of this frame's window.
        self.sizes.fill((0, 0));
        for t in self.threads.iter_mut() {
            t.reset();
        }
        // Only the slots used in the frame: 2 KiB of filters each.
        for (s, filters) in self.filters.iter_mut().enumerate() {
            if used_slots & (1 << s) != 0 {
                *filters = Default::default();
            }
        }
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
            window: Vec::new(),
            sizes: Vec::new(),
            threads: Vec::new(),
            filters: Vec::new(),
            used_slots: 0,
            current_slot: 0,
        }
    }
}

#[cfg(test)]
impl FrameEncoder {
    /// True when every slot's `ListFilter`s hold exactly the bucket counts of its lists.
    fn filters_match_lists(&self) -> bool {
        self.threads.iter().zip(&self.filters).all(|(t, filters)| {
            [(&t.allocated, ALLOCATED_LIST), (&t.freed, FREED_LIST)]
                .iter()
                .all(|(list, which)| {
                    let mut counts = [0u8; FILTER_BUCKETS];
                    for &address in &list.items[list.start..list.end] {
                        counts[filter_bucket(address)] += 1;
                    }
                    counts == filters[*which].0
                })
        })
    }
}

#[cfg(test)]
mod encoder_tests {
    use super::*;
    use crate::{TraceReader, TraceWriter, WriterOptions};

    /// Allocations, frees and reallocs of a small pool of addresses on a few threads (so lists
    /// fill, evict, hold duplicates and get hit at every depth), across many frames.
    fn address_churn(events: usize) -> Vec<Record> {
        let mut rng = 0x2545_F491_4F6C_DD1Du64;
        let mut next = move || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        (0..events)
            .map(|i| {
                let thread = 100 + (next() % 5) as u32 * 63; // some share a slot
                let address = 0x7f00_0000_0000 + (next() % 300) * 16;
                let time = i as u64 * 1000;
                match next() % 7 {
                    0..=2 => Record::Alloc {
                        time,
                        thread,
                        address,
                        size: 16,
                        stack: (next() % 9) as u32,
                        api: AllocApi::Malloc,
                    },
                    3..=5 => Record::Free {
                        time,
                        thread,
                        address,
                        size: 0,
                        api: FreeApi::Free,
                    },
                    _ => Record::Realloc {
                        time,
                        thread,
                        old_address: address,
                        new_address: 0x7f00_0000_0000 + (next() % 300) * 16,
                        size: 32,
                        stack: 1,
                        api: AllocApi::Realloc,
                    },
                }
            })
            .collect()
    }

    #[test]
    fn list_filters_follow_the_lists_exactly() {
        let mut encoder = FrameEncoder::new(1000);
        let mut payload = Vec::new();
        for (i, record) in address_churn(60_000).iter().enumerate() {
            encoder.encode(record).expect("encode");
            if i % 997 == 0 {
                assert!(encoder.filters_match_lists(), "after record {i}");
            }
            if i % 20_000 == 19_999 {
                encoder.finish_into(&mut payload).expect("finish");
                assert!(
                    encoder.filters_match_lists(),
                    "after the frame ending at {i}"
                );
                assert!(
                    encoder
                        .filters
                        .iter()
                        .flatten()
                        .all(|f| f.0 == [0; FILTER_BUCKETS])
                );
            }
        }
    }

    #[test]
    fn address_churn_round_trips() {
        let records = address_churn(200_000);
        let meta = TraceMeta {
            time_resolution_ns: 1000,
            ..TraceMeta::default()
        };
        let options = WriterOptions {
            frame_bytes: 64 << 10,
            ..WriterOptions::default()
        };
        let mut writer = TraceWriter::with_options(Vec::new(), &meta, options).expect("writer");
        for record in &records {
            writer.write(record).expect("write");
        }
        let bytes = writer.finish().expect("finish");
        let read: Vec<Record> = TraceReader::new(std::io::Cursor::new(bytes))
            .expect("reader")
            .collect::<Result<_, _>>()
            .expect("read");
        assert_eq!(read.len(), records.len() + 1);
        assert!(
            read[1..] == records[..],
            "records differ after the round trip"
        );
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
    tables: DecoderTables,
    current_slot: usize,
}

/// The predictions a frame's decoder builds as it goes (about 230 KiB). Allocating and zeroing
/// them for every frame cost 7 instructions per event, so they are kept and reset instead:
/// only the size table and each thread slot's positions need clearing, as the decoder reads
/// no window or list entry that the current frame has not written.
pub(crate) struct DecoderTables {
    window: Box<[u64; ADDRESS_WINDOW]>,
    sizes: Box<[(u64, u64); SIZE_SLOTS]>,
    threads: Box<[ThreadSlot; THREAD_SLOTS]>,
}

impl DecoderTables {
    pub(crate) fn new() -> DecoderTables {
        DecoderTables {
            window: Box::new([0; ADDRESS_WINDOW]),
            sizes: Box::new([(0, 0); SIZE_SLOTS]),
            threads: Box::new(std::array::from_fn(|_| ThreadSlot::default())),
        }
    }

    /// Back to the state a frame starts from, as far as a decoder can tell.
    fn reset(&mut self) {
        self.sizes.fill((0, 0));
        for t in self.threads.iter_mut() {
            t.reset();
        }
    }
}

impl Default for DecoderTables {
    fn default() -> Self {
        DecoderTables::new()
    }
}

/// Decodes one bincode varint (`config::standard()`) at `*pos` of a column and advances past
/// it: the hot path of every event field, written out so it inlines. Byte `b < 251` is the
/// value; 251, 252 and 253 are followed by a little-endian u16, u32 and u64.
#[inline(always)]
fn take_varint(column: &[u8], pos: &mut usize) -> Result<u64, &'static str> {
    if let Some(&b) = column.get(*pos) {
        if b < 251 {
            *pos += 1;
            return Ok(u64::from(b));
        }
        if b == 251
            && let Some(&[b0, b1]) = column.get(*pos + 1..*pos + 3)
        {
            *pos += 3;
            return Ok(u64::from(u16::from_le_bytes([b0, b1])));
        }
    }
    take_long_varint(column, pos)
}

/// The rarer varints: 32 and 64 bits, and the errors.
#[inline(never)]
fn take_long_varint(column: &[u8], pos: &mut usize) -> Result<u64, &'static str> {
    const SHORT: &str = "its column ends too early";
    let rest = column.get(*pos..).unwrap_or(&[]);
    let (v, used) = match *rest {
        [252, ref x @ ..] => match x.first_chunk::<4>() {
            Some(&b) => (u64::from(u32::from_le_bytes(b)), 5),
            None => return Err(SHORT),
        },
        [253, ref x @ ..] => match x.first_chunk::<8>() {
            Some(&b) => (u64::from_le_bytes(b), 9),
            None => return Err(SHORT),
        },
        // A 251 without its two bytes; 254 (u128) and 255 never encode a value that fits the
        // hot columns' u64.
        [251, ..] => return Err(SHORT),
        [_, ..] => return Err("varint does not fit 64 bits"),
        [] => return Err(SHORT),
    };
    *pos += used;
    Ok(v)
}

/// What each of the 256 tag bytes is, so the decoder dispatches with one load. A tag with a
/// flag its record kind does not take, or an api number not listed, is `KIND_INVALID`.
const TAG_KINDS: [u8; 256] = {
    let mut kinds = [KIND_INVALID; 256];
    let mut tag = 0;
    while tag < 256 {
        let t = tag as u8;
        let base = t & !(FLAG_NEW_THREAD | FLAG_SAME_SIZE);
        let new_thread = t & FLAG_NEW_THREAD != 0;
        let same_size = t & FLAG_SAME_SIZE != 0;
        let apis = AllocApi::ALL.len() as u8;
        kinds[tag] = if base >= TAG_ALLOC && base < TAG_ALLOC + apis {
            KIND_ALLOC
        } else if base >= TAG_REALLOC && base < TAG_REALLOC + apis {
            KIND_REALLOC
        } else if same_size {
            KIND_INVALID
        } else if base == TAG_FREE + FreeApi::Free as u8 {
            KIND_FREE
        } else if base == TAG_FREE + FreeApi::Munmap as u8 {
            KIND_MUNMAP
        } else if new_thread {
            KIND_INVALID
        } else if base >= TAG_LOST && base <= TAG_END {
            KIND_TIMED
        } else if base <= TAG_SYMBOL {
            KIND_BODY
        } else {
            KIND_INVALID
        };
        tag += 1;
    }
    kinds
};
/// `AllocApi` by the low four bits of an alloc or realloc tag; `TAG_KINDS` has already refused
/// the numbers past the list, so their entries here are never used.
const ALLOC_APIS: [AllocApi; 16] = {
    let mut apis = [AllocApi::Malloc; 16];
    let mut i = 0;
    while i < AllocApi::ALL.len() {
        apis[i] = AllocApi::ALL[i];
        i += 1;
    }
    apis
};
const KIND_INVALID: u8 = 0;
const KIND_ALLOC: u8 = 1;
const KIND_FREE: u8 = 2;
const KIND_MUNMAP: u8 = 3;
const KIND_REALLOC: u8 = 4;
/// Lost, RSS, exit, end: a time, then a body.
const KIND_TIMED: u8 = 5;
/// Metadata, string, module, stack, symbol: a body only.
const KIND_BODY: u8 = 6;

/// One hot column while a batch decodes: its bytes (fixed) and how far it has been read.
#[derive(Clone, Copy)]
struct HotColumn<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl HotColumn<'_> {
    #[inline(always)]
    fn varint(&mut self, column: usize) -> Result<u64, HotError> {
        take_varint(self.bytes, &mut self.pos).map_err(|e| (column, e))
    }
}

/// The state the event fields of a frame are decoded with, held in locals while a batch of
/// records is decoded (the compiler keeps them in registers, which it cannot do for fields
/// of `FrameDecoder` written through pointers), and written back after the batch. Only the
/// positions of the columns change, so only they need registers.
struct Hot<'a> {
    times: HotColumn<'a>,
    threads: HotColumn<'a>,
    addresses: HotColumn<'a>,
    literals: HotColumn<'a>,
    sizes: HotColumn<'a>,
    stacks: HotColumn<'a>,
    time_unit: u64,
    prev_time: u64,
    prev_thread: u32,
    current_slot: usize,
    address_seq: u64,
}

/// A decoding failure inside a batch: the column it happened in, and why.
type HotError = (usize, &'static str);

impl Hot<'_> {
    #[inline(always)]
    fn time(&mut self) -> Result<u64, HotError> {
        let d = self.times.varint(TIMES)?;
        self.prev_time = self.prev_time.wrapping_add(unzigzag(d) as u64);
        Ok(self.prev_time.wrapping_mul(self.time_unit))
    }

    #[inline(always)]
    fn thread(&mut self, tag: u8) -> Result<u32, HotError> {
        if tag & FLAG_NEW_THREAD != 0 {
            let d = self.threads.varint(THREADS)?;
            self.prev_thread = self.prev_thread.wrapping_add(unzigzag(d) as u32);
            self.current_slot = self.prev_thread as usize % THREAD_SLOTS;
        }
        Ok(self.prev_thread)
    }

    #[inline(always)]
    fn address(
        &mut self,
        role: Role,
        slots: &mut [ThreadSlot; THREAD_SLOTS],
        window: &mut [u64; ADDRESS_WINDOW],
    ) -> Result<u64, HotError> {
        let code = self.addresses.varint(ADDRESSES)?;
        let t = &mut slots[self.current_slot];
        let address = if code % 2 == 1 {
            let i = usize::try_from(code / 2).unwrap_or(usize::MAX);
            t.list(role).take(i).ok_or((
                ADDRESSES,
                "address reference past the end of its thread's list",
            ))?
        } else if code == 0 {
            let d = self.literals.varint(LITERALS)?;
            let prev = &mut t.prev_literal[role as usize];
            *prev = prev.wrapping_add(unzigzag(d) as u64);
            *prev
        } else {
            let back = code / 2;
            if back > ADDRESS_WINDOW as u64 || back > self.address_seq {
                return Err((
                    ADDRESSES,
                    "address reference points before the frame's window",
                ));
            }
            window[(self.address_seq - back) as usize % ADDRESS_WINDOW]
        };
        t.remember(role, address);
        window[self.address_seq as usize % ADDRESS_WINDOW] = address;
        self.address_seq += 1;
        Ok(address)
    }

    #[inline(always)]
    fn size_and_stack(
        &mut self,
        tag: u8,
        slots: &mut [ThreadSlot; THREAD_SLOTS],
        sizes: &mut [(u64, u64); SIZE_SLOTS],
    ) -> Result<(u64, u32), HotError> {
        let explicit = if tag & FLAG_SAME_SIZE == 0 {
            Some(self.sizes.varint(SIZES)?)
        } else {
            None
        };
        let d = self.stacks.varint(STACKS)?;
        let t = &mut slots[self.current_slot];
        let stack = t.prev_stack.wrapping_add(unzigzag(d) as u32);
        t.prev_stack = stack;
        let slot = &mut sizes[stack as usize % SIZE_SLOTS];
        let size = match explicit {
            Some(size) => size,
            None if slot.0 == u64::from(stack) + 1 => slot.1,
            None => return Err((SIZES, "size refers to a stack not seen in this frame")),
        };
        *slot = (u64::from(stack) + 1, size);
        Ok((size, stack))
    }
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
    /// Parses the preamble and checks that the columns exactly fill the payload. It takes the
    /// tables from `spare` (or makes them) only if the preamble is good;
    /// [`FrameDecoder::into_tables`] gives them back for the next frame.
    pub(crate) fn new(
        payload: &[u8],
        spare: &mut Option<DecoderTables>,
    ) -> Result<FrameDecoder, RecordError> {
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
            tables: match spare.take() {
                Some(mut tables) => {
                    tables.reset();
                    tables
                }
                None => DecoderTables::new(),
            },
            current_slot: 0,
        })
    }

    /// The tables, for the next frame's decoder.
    pub(crate) fn into_tables(self) -> DecoderTables {
        self.tables
    }

    /// Decodes up to `max` more records of the frame, handing each to `sink` in order, and
    /// returns how many it decoded (0 once the frame is done). On corruption, the records
    /// before the bad one have been handed over. Inlined into its callers, so that each
    /// record goes straight from registers to wherever the sink puts it.
    #[inline(always)]
    pub(crate) fn decode(
        &mut self,
        p: &[u8],
        max: usize,
        sink: &mut impl FnMut(Record),
    ) -> Result<usize, RecordError> {
        let n = usize::try_from(self.remaining)
            .unwrap_or(usize::MAX)
            .min(max);
        let columns = self.columns;
        let column = |c: usize| HotColumn {
            bytes: p.get(columns[c].pos..columns[c].end).unwrap_or(&[]),
            pos: 0,
        };
        let mut tags = column(TAGS);
        let mut hot = Hot {
            times: column(TIMES),
            threads: column(THREADS),
            addresses: column(ADDRESSES),
            literals: column(LITERALS),
            sizes: column(SIZES),
            stacks: column(STACKS),
            time_unit: self.time_unit,
            prev_time: self.prev_time,
            prev_thread: self.prev_thread,
            current_slot: self.current_slot,
            address_seq: self.address_seq,
        };
        let mut done = 0;
        let outcome: Result<(), HotError> = 'records: loop {
            // `?` for the batch: leave the loop with the error and the state as it stands.
            macro_rules! attempt {
                ($e:expr) => {
                    match $e {
                        Ok(v) => v,
                        Err(e) => break 'records Err(e),
                    }
                };
            }
            if done == n {
                break Ok(());
            }
            let Some(&tag) = tags.bytes.get(tags.pos) else {
                break Err((TAGS, "the tag column ends too early"));
            };
            tags.pos += 1;
            let api = usize::from(tag & 0x0f);
            // `sink` is called in each arm, where the compiler knows which variant it gets:
            // an event owns no heap memory, so nothing is left to drop after the call.
            // Allocations and frees here, as two conditional branches; every other kind goes
            // out of line (`rare_record`), since with all kinds in one place the compiler
            // made a jump table of them, and its indirect jump mispredicted between
            // allocations and frees (a tenth of the record decoder's samples in `perf`).
            let kind = TAG_KINDS[usize::from(tag)];
            if kind == KIND_ALLOC {
                let time = attempt!(hot.time());
                let thread = attempt!(hot.thread(tag));
                let address = attempt!(hot.address(
                    Role::Allocated,
                    &mut self.tables.threads,
                    &mut self.tables.window
                ));
                let (size, stack) = attempt!(hot.size_and_stack(
                    tag,
                    &mut self.tables.threads,
                    &mut self.tables.sizes
                ));
                sink(Record::Alloc {
                    time,
                    thread,
                    address,
                    size,
                    stack,
                    api: ALLOC_APIS[api],
                });
            } else if kind == KIND_FREE {
                let time = attempt!(hot.time());
                let thread = attempt!(hot.thread(tag));
                let address = attempt!(hot.address(
                    Role::Freed,
                    &mut self.tables.threads,
                    &mut self.tables.window
                ));
                sink(Record::Free {
                    time,
                    thread,
                    address,
                    size: 0,
                    api: FreeApi::Free,
                });
            } else {
                attempt!(self.rare_record(&mut hot, p, tag, kind, sink));
            }
            done += 1;
        };
        // Write the state back, so the next batch continues where this one stopped.
        self.columns[TAGS].pos += tags.pos;
        self.columns[TIMES].pos += hot.times.pos;
        self.columns[THREADS].pos += hot.threads.pos;
        self.columns[ADDRESSES].pos += hot.addresses.pos;
        self.columns[LITERALS].pos += hot.literals.pos;
        self.columns[SIZES].pos += hot.sizes.pos;
        self.columns[STACKS].pos += hot.stacks.pos;
        self.prev_time = hot.prev_time;
        self.prev_thread = hot.prev_thread;
        self.current_slot = hot.current_slot;
        self.address_seq = hot.address_seq;
        self.remaining -= done as u64;
        match outcome {
            Ok(()) => Ok(done),
            Err((column, what)) => Err(self.error(column, what)),
        }
    }

    /// Records other than allocations and plain frees: munmap, realloc and the records with
    /// bodies. Out of line, so that the hot loop is left with two conditional branches on
    /// the record kind; a match over all kinds there became a jump table, whose indirect
    /// jump between allocations and frees mispredicted often.
    #[inline(never)]
    fn rare_record(
        &mut self,
        hot: &mut Hot<'_>,
        p: &[u8],
        tag: u8,
        kind: u8,
        sink: &mut impl FnMut(Record),
    ) -> Result<(), HotError> {
        let api = usize::from(tag & 0x0f);
        match kind {
            KIND_MUNMAP => {
                let time = hot.time()?;
                let thread = hot.thread(tag)?;
                let address = hot.address(
                    Role::Freed,
                    &mut self.tables.threads,
                    &mut self.tables.window,
                )?;
                // The length of the unmapped range, never predicted.
                let size = hot.sizes.varint(SIZES)?;
                sink(Record::Free {
                    time,
                    thread,
                    address,
                    size,
                    api: FreeApi::Munmap,
                });
            }
            KIND_REALLOC => {
                let time = hot.time()?;
                let thread = hot.thread(tag)?;
                let old_address = hot.address(
                    Role::Freed,
                    &mut self.tables.threads,
                    &mut self.tables.window,
                )?;
                let new_address = hot.address(
                    Role::Allocated,
                    &mut self.tables.threads,
                    &mut self.tables.window,
                )?;
                let (size, stack) =
                    hot.size_and_stack(tag, &mut self.tables.threads, &mut self.tables.sizes)?;
                sink(Record::Realloc {
                    time,
                    thread,
                    old_address,
                    new_address,
                    size,
                    stack,
                    api: ALLOC_APIS[api],
                });
            }
            KIND_TIMED => {
                let time = hot.time()?;
                let record = self.timed_body(p, tag, time);
                sink(record.map_err(|e| (BODIES, describe(e)))?);
            }
            KIND_BODY => sink(self.body(p, tag).map_err(|e| (BODIES, describe(e)))?),
            _ => return Err((TAGS, "unknown record tag")),
        }
        Ok(())
    }

    /// The error for a record that failed in `column`; its tag is the last one taken.
    #[cold]
    fn error(&mut self, column: usize, what: &str) -> RecordError {
        // No further records: the frame is corrupt from here on.
        self.remaining = 0;
        let tag_pos = self.columns[TAGS].pos.saturating_sub(1);
        RecordError {
            pos: self.columns[column].pos,
            what: format!("record with tag at payload byte {tag_pos}: {what}"),
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// `RecentList` against the plainest model of its contract: a most-recent-first vector of
    /// at most `THREAD_LIST` addresses.
    #[test]
    fn recent_list_behaves_as_a_most_recent_first_list() {
        let mut list = RecentList::default();
        let mut model: Vec<u64> = Vec::new();
        let mut rng = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        for step in 0..200_000 {
            // Few distinct addresses, so that lookups hit at every depth and miss too.
            let address = next() % 97;
            match next() % 3 {
                0 => {
                    list.push_front(address);
                    model.insert(0, address);
                    model.truncate(THREAD_LIST);
                }
                1 => {
                    let expected = model.iter().position(|&a| a == address);
                    assert_eq!(list.find(address), expected, "find at step {step}");
                }
                _ => {
                    let i = (next() % (THREAD_LIST as u64 + 4)) as usize;
                    let expected = (i < model.len()).then(|| model.remove(i));
                    assert_eq!(list.take(i), expected, "take({i}) at step {step}");
                }
            }
        }
    }
}
