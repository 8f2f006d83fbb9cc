//! The record codec: how one `Record` becomes bytes inside a frame payload, and back.
//!
//! Integers go through bincode 2 (`config::standard()`: little-endian, bincode varints,
//! zigzag for signed). Times, threads and addresses are written as signed deltas against the
//! previous record of the same frame; each frame starts from zero, so frames decode
//! independently. See SPEC.md, "Records", for the byte layout this file implements.

use bincode::config::{self, Config};
use bincode::de::read::Reader;
use bincode::de::{Decode, Decoder, DecoderImpl};
use bincode::error::DecodeError;

use crate::record::*;

/// The largest uncompressed frame payload a reader accepts (and a writer produces).
pub const MAX_RAW_PAYLOAD: usize = 16 << 20;
/// Longest string a reader accepts.
pub const MAX_STRING: usize = 1 << 20;
/// Most elements of any list (stack frames, mapping ranges, symbol frames, argv).
pub const MAX_LIST: usize = 1 << 16;

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

fn config() -> impl Config {
    config::standard()
}

/// The decoder config: bincode refuses to pre-allocate more than `MAX_RAW_PAYLOAD` bytes for
/// any one container, whatever length the bytes claim.
type DecodeConfig =
    config::Configuration<config::LittleEndian, config::Varint, config::Limit<MAX_RAW_PAYLOAD>>;

/// Delta state shared by the encoder and the decoder of one frame.
#[derive(Debug, Default, Clone)]
pub(crate) struct DeltaState {
    time: u64,
    thread: u32,
    address: u64,
}

impl DeltaState {
    fn time_delta(&mut self, time: u64) -> i64 {
        let d = time.wrapping_sub(self.time) as i64;
        self.time = time;
        d
    }
    fn thread_delta(&mut self, thread: u32) -> i32 {
        let d = thread.wrapping_sub(self.thread) as i32;
        self.thread = thread;
        d
    }
    fn address_delta(&mut self, address: u64) -> i64 {
        let d = address.wrapping_sub(self.address) as i64;
        self.address = address;
        d
    }
    fn apply_time(&mut self, d: i64) -> u64 {
        self.time = self.time.wrapping_add(d as u64);
        self.time
    }
    fn apply_thread(&mut self, d: i32) -> u32 {
        self.thread = self.thread.wrapping_add(d as u32);
        self.thread
    }
    fn apply_address(&mut self, d: i64) -> u64 {
        self.address = self.address.wrapping_add(d as u64);
        self.address
    }
}

/// Appends records to an uncompressed frame payload.
#[derive(Debug, Default)]
pub(crate) struct RecordEncoder {
    state: DeltaState,
}

macro_rules! put {
    ($buf:expr, $v:expr) => {
        bincode::encode_into_std_write($v, $buf, config())
            .map(|_| ())
            .map_err(|e| std::io::Error::other(e.to_string()))?
    };
}

impl RecordEncoder {
    pub(crate) fn reset(&mut self) {
        self.state = DeltaState::default();
    }

    pub(crate) fn encode(&mut self, record: &Record, buf: &mut Vec<u8>) -> std::io::Result<()> {
        match record {
            Record::Alloc {
                time,
                thread,
                address,
                size,
                stack,
                api,
            } => {
                buf.push(TAG_ALLOC + *api as u8);
                put!(buf, &self.state.time_delta(*time));
                put!(buf, &self.state.thread_delta(*thread));
                put!(buf, &self.state.address_delta(*address));
                put!(buf, size);
                put!(buf, stack);
            }
            Record::Free {
                time,
                thread,
                address,
                api,
            } => {
                buf.push(TAG_FREE + *api as u8);
                put!(buf, &self.state.time_delta(*time));
                put!(buf, &self.state.thread_delta(*thread));
                put!(buf, &self.state.address_delta(*address));
            }
            Record::Realloc {
                time,
                thread,
                old_address,
                new_address,
                size,
                stack,
                api,
            } => {
                buf.push(TAG_REALLOC + *api as u8);
                put!(buf, &self.state.time_delta(*time));
                put!(buf, &self.state.thread_delta(*thread));
                // The old block is written relative to the previous address, the new one
                // relative to the old one (a realloc that grows in place gives 0).
                put!(buf, &self.state.address_delta(*old_address));
                put!(buf, &self.state.address_delta(*new_address));
                put!(buf, size);
                put!(buf, stack);
            }
            Record::Meta(m) => {
                buf.push(TAG_META);
                put!(buf, m.tool_version.as_str());
                put!(buf, m.host_name.as_str());
                put!(buf, m.kernel_release.as_str());
                put!(buf, &m.pid);
                put!(buf, &m.command_line);
                put!(buf, &m.start_wall_ns);
                put!(buf, &m.start_monotonic_ns);
                put!(buf, &m.page_size);
                put!(buf, &m.sample_bytes);
                put!(buf, &m.extra);
            }
            Record::String { id, value } => {
                buf.push(TAG_STRING);
                put!(buf, id);
                put!(buf, value.as_str());
            }
            Record::Module(m) => {
                buf.push(TAG_MODULE);
                put!(buf, &m.id);
                put!(buf, m.path.as_str());
                put!(buf, &m.build_id);
                put!(buf, &(m.ranges.len() as u64));
                for r in &m.ranges {
                    put!(buf, &r.start);
                    put!(buf, &r.end);
                    put!(buf, &r.file_offset);
                }
            }
            Record::Stack(s) => {
                buf.push(TAG_STACK);
                put!(buf, &s.id);
                buf.push(s.unwinder as u8);
                buf.push(u8::from(s.truncated));
                put!(buf, &(s.frames.len() as u64));
                for f in &s.frames {
                    put!(buf, &f.module);
                    put!(buf, &f.offset);
                    put!(buf, &f.address);
                }
            }
            Record::Symbol(s) => {
                buf.push(TAG_SYMBOL);
                put!(buf, &s.module);
                put!(buf, &s.offset);
                put!(buf, &(s.frames.len() as u64));
                for f in &s.frames {
                    put!(buf, &f.function);
                    put!(buf, &f.file);
                    put!(buf, &f.line);
                }
            }
            Record::Lost {
                time,
                count,
                reason,
            } => {
                buf.push(TAG_LOST);
                put!(buf, &self.state.time_delta(*time));
                put!(buf, count);
                buf.push(*reason as u8);
            }
            Record::Rss {
                time,
                rss_bytes,
                anon_bytes,
            } => {
                buf.push(TAG_RSS);
                put!(buf, &self.state.time_delta(*time));
                put!(buf, rss_bytes);
                put!(buf, anon_bytes);
            }
            Record::Exit { time, code, signal } => {
                buf.push(TAG_EXIT);
                put!(buf, &self.state.time_delta(*time));
                put!(buf, code);
                put!(buf, signal);
            }
            Record::End { time, totals } => {
                buf.push(TAG_END);
                put!(buf, &self.state.time_delta(*time));
                put!(buf, &totals.allocations);
                put!(buf, &totals.frees);
                put!(buf, &totals.reallocs);
                put!(buf, &totals.lost);
            }
        }
        Ok(())
    }
}

/// A bincode reader over a byte slice that knows its position, so errors can name it.
pub(crate) struct CountingSlice<'a> {
    slice: &'a [u8],
    pub(crate) pos: usize,
}

impl Reader for CountingSlice<'_> {
    #[inline(always)]
    fn read(&mut self, bytes: &mut [u8]) -> Result<(), DecodeError> {
        let end = self.pos + bytes.len();
        match self.slice.get(self.pos..end) {
            Some(src) => {
                bytes.copy_from_slice(src);
                self.pos = end;
                Ok(())
            }
            None => Err(DecodeError::UnexpectedEnd {
                additional: end - self.slice.len(),
            }),
        }
    }

    #[inline]
    fn peek_read(&mut self, n: usize) -> Option<&[u8]> {
        self.slice.get(self.pos..self.pos + n)
    }

    #[inline]
    fn consume(&mut self, n: usize) {
        self.pos = (self.pos + n).min(self.slice.len());
    }
}

/// Reads records one at a time from an uncompressed frame payload.
pub(crate) struct RecordDecoder<'a> {
    decoder: DecoderImpl<CountingSlice<'a>, DecodeConfig, ()>,
    state: DeltaState,
    len: usize,
}

/// Why a record could not be decoded, with its position inside the payload.
#[derive(Debug)]
pub(crate) struct RecordError {
    pub(crate) pos: usize,
    pub(crate) what: String,
}

fn get<T: Decode<()>, D: Decoder<Context = ()>>(d: &mut D) -> Result<T, DecodeError> {
    T::decode(d)
}

fn get_string<D: Decoder<Context = ()>>(d: &mut D) -> Result<String, DecodeError> {
    let s: String = get(d)?;
    if s.len() > MAX_STRING {
        return Err(DecodeError::Other("string longer than the 1 MiB limit"));
    }
    Ok(s)
}

fn get_len<D: Decoder<Context = ()>>(d: &mut D) -> Result<usize, DecodeError> {
    let n: u64 = get(d)?;
    if n > MAX_LIST as u64 {
        return Err(DecodeError::Other(
            "list longer than the 65536 element limit",
        ));
    }
    Ok(n as usize)
}

fn get_u8<D: Decoder<Context = ()>>(d: &mut D) -> Result<u8, DecodeError> {
    let mut b = [0u8; 1];
    d.reader().read(&mut b)?;
    Ok(b[0])
}

impl<'a> RecordDecoder<'a> {
    pub(crate) fn new(payload: &'a [u8]) -> RecordDecoder<'a> {
        RecordDecoder::resume(payload, 0, None)
    }

    /// Continues decoding a payload at `pos` with the delta state left by earlier records.
    pub(crate) fn resume(
        payload: &'a [u8],
        pos: usize,
        state: Option<DeltaState>,
    ) -> RecordDecoder<'a> {
        RecordDecoder {
            decoder: DecoderImpl::new(
                CountingSlice {
                    slice: payload,
                    pos,
                },
                config::standard().with_limit::<MAX_RAW_PAYLOAD>(),
                (),
            ),
            state: state.unwrap_or_default(),
            len: payload.len(),
        }
    }

    pub(crate) fn into_state(self) -> DeltaState {
        self.state
    }

    pub(crate) fn position(&mut self) -> usize {
        self.decoder.reader().pos
    }

    /// The next record, `None` at the end of the payload.
    pub(crate) fn next_record(&mut self) -> Option<Result<Record, RecordError>> {
        let pos = self.position();
        if pos >= self.len {
            return None;
        }
        Some(self.decode_one().map_err(|e| RecordError {
            pos,
            what: match e {
                DecodeError::UnexpectedEnd { .. } => "record cut short inside its frame".into(),
                DecodeError::LimitExceeded => "a length exceeds the decoder's limit".into(),
                other => other.to_string(),
            },
        }))
    }

    fn decode_one(&mut self) -> Result<Record, DecodeError> {
        let d = &mut self.decoder;
        let tag = get_u8(d)?;
        let st = &mut self.state;
        let record = match tag {
            t if (TAG_ALLOC..TAG_ALLOC + 16).contains(&t) => {
                let api = AllocApi::from_u8(t - TAG_ALLOC)
                    .ok_or(DecodeError::Other("unknown record tag"))?;
                Record::Alloc {
                    time: st.apply_time(get(d)?),
                    thread: st.apply_thread(get(d)?),
                    address: st.apply_address(get(d)?),
                    size: get(d)?,
                    stack: get(d)?,
                    api,
                }
            }
            t if (TAG_FREE..TAG_FREE + 16).contains(&t) => {
                let api = FreeApi::from_u8(t - TAG_FREE)
                    .ok_or(DecodeError::Other("unknown record tag"))?;
                Record::Free {
                    time: st.apply_time(get(d)?),
                    thread: st.apply_thread(get(d)?),
                    address: st.apply_address(get(d)?),
                    api,
                }
            }
            t if (TAG_REALLOC..TAG_REALLOC + 16).contains(&t) => {
                let api = AllocApi::from_u8(t - TAG_REALLOC)
                    .ok_or(DecodeError::Other("unknown record tag"))?;
                Record::Realloc {
                    time: st.apply_time(get(d)?),
                    thread: st.apply_thread(get(d)?),
                    old_address: st.apply_address(get(d)?),
                    new_address: st.apply_address(get(d)?),
                    size: get(d)?,
                    stack: get(d)?,
                    api,
                }
            }
            TAG_META => Record::Meta(Box::new(TraceMeta {
                tool_version: get_string(d)?,
                host_name: get_string(d)?,
                kernel_release: get_string(d)?,
                pid: get(d)?,
                command_line: {
                    let n = get_len(d)?;
                    let mut v = Vec::with_capacity(n.min(64));
                    for _ in 0..n {
                        v.push(get_string(d)?);
                    }
                    v
                },
                start_wall_ns: get(d)?,
                start_monotonic_ns: get(d)?,
                page_size: get(d)?,
                sample_bytes: get(d)?,
                extra: {
                    let n = get_len(d)?;
                    let mut v = Vec::with_capacity(n.min(64));
                    for _ in 0..n {
                        v.push((get_string(d)?, get_string(d)?));
                    }
                    v
                },
            })),
            TAG_STRING => Record::String {
                id: get(d)?,
                value: get_string(d)?,
            },
            TAG_MODULE => {
                let id = get(d)?;
                let path = get_string(d)?;
                let build_id: Vec<u8> = get(d)?;
                if build_id.len() > 256 {
                    return Err(DecodeError::Other("build-id longer than 256 bytes"));
                }
                let n = get_len(d)?;
                let mut ranges = Vec::with_capacity(n.min(64));
                for _ in 0..n {
                    ranges.push(MappingRange {
                        start: get(d)?,
                        end: get(d)?,
                        file_offset: get(d)?,
                    });
                }
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
                let n = get_len(d)?;
                let mut frames = Vec::with_capacity(n.min(256));
                for _ in 0..n {
                    frames.push(StackFrame {
                        module: get(d)?,
                        offset: get(d)?,
                        address: get(d)?,
                    });
                }
                Record::Stack(Stack {
                    id,
                    unwinder,
                    truncated,
                    frames,
                })
            }
            TAG_SYMBOL => {
                let module = get(d)?;
                let offset = get(d)?;
                let n = get_len(d)?;
                let mut frames = Vec::with_capacity(n.min(64));
                for _ in 0..n {
                    frames.push(SymbolFrame {
                        function: get(d)?,
                        file: get(d)?,
                        line: get(d)?,
                    });
                }
                Record::Symbol(Symbol {
                    module,
                    offset,
                    frames,
                })
            }
            TAG_LOST => Record::Lost {
                time: st.apply_time(get(d)?),
                count: get(d)?,
                reason: LostReason::from_u8(get_u8(d)?),
            },
            TAG_RSS => Record::Rss {
                time: st.apply_time(get(d)?),
                rss_bytes: get(d)?,
                anon_bytes: get(d)?,
            },
            TAG_EXIT => Record::Exit {
                time: st.apply_time(get(d)?),
                code: get(d)?,
                signal: get(d)?,
            },
            TAG_END => Record::End {
                time: st.apply_time(get(d)?),
                totals: EndTotals {
                    allocations: get(d)?,
                    frees: get(d)?,
                    reallocs: get(d)?,
                    lost: get(d)?,
                },
            },
            _ => return Err(DecodeError::Other("unknown record tag")),
        };
        Ok(record)
    }
}
