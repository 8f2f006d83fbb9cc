//! The reader's side of the codec: `FrameDecoder` reads the records of one payload back, in
//! order, trusting nothing in it (every length is capped, every column bounded). This is the
//! hot path of every analysis: event fields are decoded in batches with their state in
//! locals (`Hot`), the rare records through bincode.

use bincode::de::read::Reader;
use bincode::de::{Decode, DecoderImpl};
use bincode::error::DecodeError;

use super::predict::{Role, ThreadSlot};
use super::varint::{take_varint, unzigzag};
use super::*;
use crate::record::*;

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
    /// The record's tag is one this decoder does not know: in a file of a newer minor
    /// version, a record kind added after this reader, not corruption.
    pub(crate) unknown_tag: bool,
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
        } else if base == TAG_FREE + FreeApi::Munmap as u8 {
            KIND_MUNMAP
        } else if base >= TAG_FREE && base < TAG_FREE + FreeApi::ALL.len() as u8 {
            KIND_FREE
        } else if new_thread {
            KIND_INVALID
        } else if (base >= TAG_LOST && base <= TAG_PROCESS_EXIT) || base == TAG_UNFOLLOWED {
            KIND_TIMED
        } else if base <= TAG_SYMBOL || base == TAG_THREAD {
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
/// Lost, RSS, exit, end, process, exec, process exit, unfollowed: a time, then a body.
const KIND_TIMED: u8 = 5;
/// Metadata, string, module, stack, symbol, thread: a body only.
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

/// The message of a tag this decoder does not know (`error` recognizes it).
const UNKNOWN_TAG: &str = "unknown record tag";

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
            unknown_tag: false,
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
                let api = FreeApi::ALL[usize::from(tag & 0x0f)];
                sink(Record::Free {
                    time,
                    thread,
                    address,
                    size: 0,
                    api,
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
            _ => return Err((TAGS, UNKNOWN_TAG)),
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
            unknown_tag: what == UNKNOWN_TAG,
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
            TAG_END => Record::End {
                time,
                totals: EndTotals {
                    allocations: get(d)?,
                    frees: get(d)?,
                    reallocs: get(d)?,
                    lost: get(d)?,
                },
            },
            TAG_PROCESS => Record::Process(Box::new(ProcessInfo {
                pid: get(d)?,
                parent_pid: get(d)?,
                time,
                origin: ProcessOrigin::from_u8(get_u8(d)?),
                command_line: get_list(d, get_string)?,
            })),
            TAG_EXEC => Record::Exec {
                time,
                pid: get(d)?,
                command_line: get_list(d, get_string)?,
            },
            TAG_PROCESS_EXIT => Record::ProcessExit {
                time,
                pid: get(d)?,
                code: get(d)?,
                signal: get(d)?,
            },
            TAG_UNFOLLOWED => Record::Unfollowed {
                time,
                pid: get(d)?,
                parent_pid: get(d)?,
                reason: get_string(d)?,
            },
            // `TAG_KINDS` sends no other tag here.
            _ => return Err(DecodeError::Other("unknown record tag")),
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
            TAG_THREAD => Record::Thread {
                thread: get(d)?,
                pid: get(d)?,
            },
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
