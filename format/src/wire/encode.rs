//! The writer's side of the codec: `FrameEncoder` turns records into one frame's payload,
//! predicting addresses from the recent window and the thread slots' lists and sizes from the
//! stack's previous size. It must write exactly what `decode` reads back: any change here is
//! a change of SPEC.md.

use super::predict::{RecentList, Role, ThreadSlot};
use super::varint::{push_varint, zigzag};
use super::*;
use crate::record::*;

/// Slots of the writer's table that finds recent addresses (a writer-side choice only).
const ADDRESS_SLOTS: usize = 8192;

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
            Record::Process(_) => TAG_PROCESS,
            Record::Exec { .. } => TAG_EXEC,
            Record::ProcessExit { .. } => TAG_PROCESS_EXIT,
            Record::Thread { .. } => TAG_THREAD,
            Record::Unfollowed { .. } => TAG_UNFOLLOWED,
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
            Record::Process(p) => {
                let b = &mut self.columns[body];
                put!(b, &p.pid);
                put!(b, &p.parent_pid);
                b.push(p.origin as u8);
                put!(b, &p.command_line);
            }
            Record::Exec {
                pid, command_line, ..
            } => {
                let b = &mut self.columns[body];
                put!(b, pid);
                put!(b, command_line);
            }
            Record::ProcessExit {
                pid, code, signal, ..
            } => {
                let b = &mut self.columns[body];
                put!(b, pid);
                put!(b, code);
                put!(b, signal);
            }
            Record::Thread { thread, pid } => {
                let b = &mut self.columns[body];
                put!(b, thread);
                put!(b, pid);
            }
            Record::Unfollowed {
                pid,
                parent_pid,
                reason,
                ..
            } => {
                let b = &mut self.columns[body];
                put!(b, pid);
                put!(b, parent_pid);
                put!(b, reason.as_str());
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
