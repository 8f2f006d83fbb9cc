//! Reading a trace's records in file order, decoding frames on worker threads.
//!
//! Owns the threads and the ordering: one thread reads raw frames, `W` workers inflate and
//! decode them (frames are independent), and the caller's thread receives each frame's records
//! in file order. At most a few frames are in flight, so memory stays constant whatever the
//! trace's size. Must not interpret records.

use std::io::Read;
use std::sync::mpsc::{Receiver, Sender, SyncSender, channel, sync_channel};

use memtrail_format::frame::read_file_header;
use memtrail_format::{
    FileHeader, FormatError, FrameReader, RawFrame, Record, Truncation, decode_frame_of,
};

/// What the reading saw besides the records.
#[derive(Debug, Clone)]
pub struct ReadSummary {
    pub header: FileHeader,
    pub truncation: Option<Truncation>,
    pub records: u64,
    pub events: u64,
    pub skipped_unknown_frames: u64,
}

/// How many decoding threads to use: `MEMTRAIL_THREADS` if set (1: decode on the replaying
/// thread), else one per core, at most 4.
pub fn default_threads() -> usize {
    if let Some(n) = std::env::var("MEMTRAIL_THREADS")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
    {
        return n.clamp(1, 64);
    }
    std::thread::available_parallelism().map_or(1, |n| n.get().min(4))
}

/// Where [`read_records`] delivers records. Events (alloc, free, realloc: nearly all records)
/// come by reference, so that a record is never copied again after it was decoded; every
/// other record comes by value.
/// [`RecordSink::stopped`] is asked once per frame (one thread) or per chunk of records
/// (several): true ends the reading early, as if the trace ended there.
pub trait RecordSink {
    fn event(&mut self, record: &Record);
    fn other(&mut self, record: Record);
    fn stopped(&mut self) -> bool {
        false
    }
}

/// Any `FnMut(Record)` is a sink (events are cloned: they own no heap memory).
impl<F: FnMut(Record)> RecordSink for F {
    fn event(&mut self, record: &Record) {
        self(record.clone())
    }
    fn other(&mut self, record: Record) {
        self(record)
    }
}

/// Counts what goes by on its way to the sink.
struct Counting<S> {
    sink: S,
    records: u64,
    events: u64,
    saw_end: bool,
}

impl<S: RecordSink> Counting<S> {
    #[inline(always)]
    fn take(&mut self, r: Record) {
        self.records += 1;
        if r.is_event() {
            self.events += 1;
            self.sink.event(&r);
            // Event records own no heap memory: nothing to drop.
            std::mem::forget(r);
        } else {
            self.saw_end |= matches!(r, Record::End { .. });
            self.sink.other(r);
        }
    }

    /// Takes every record of `chunk`, leaving it empty, events by reference in place.
    #[inline]
    fn take_chunk(&mut self, chunk: &mut Vec<Record>) {
        for r in chunk.iter_mut() {
            self.records += 1;
            if r.is_event() {
                self.events += 1;
                self.sink.event(r);
            } else {
                self.saw_end |= matches!(r, Record::End { .. });
                let owned = std::mem::replace(r, PLACEHOLDER);
                self.sink.other(owned);
            }
        }
        // SAFETY: every record left in the chunk is an event or a placeholder, none of which
        // owns memory, so forgetting them (instead of running their drop glue one by one)
        // leaks nothing; length 0 is always valid.
        unsafe { chunk.set_len(0) };
    }
}

/// What a record taken out of a chunk leaves behind (owns nothing; dropped unseen).
const PLACEHOLDER: Record = Record::Lost {
    time: 0,
    count: 0,
    reason: memtrail_format::LostReason::Other,
};

/// Reads every record of the trace in `input`, in order, into `sink`. With `threads <= 1`
/// everything happens on the calling thread.
pub fn read_records<R: Read + Send>(
    mut input: R,
    threads: usize,
    sink: impl RecordSink,
) -> Result<ReadSummary, FormatError> {
    let header = read_file_header(&mut input)?;
    let mut take = Counting {
        sink,
        records: 0,
        events: 0,
        saw_end: false,
    };
    let frames = FrameReader::new(input);
    let frames = if threads <= 1 {
        let mut frames = frames;
        let mut scratch = Vec::new();
        for frame in &mut frames {
            decode_frame_of(&header, &frame?, &mut scratch, |r| take.take(r))?;
            if take.sink.stopped() {
                break;
            }
        }
        frames
    } else {
        parallel(&header, frames, threads, &mut take)?
    };
    let Counting {
        records,
        events,
        saw_end,
        ..
    } = take;
    let truncation = frames.truncation().cloned().or_else(|| {
        (!saw_end).then(|| Truncation {
            offset: frames.offset(),
            reason: "the trace has no end record: the recorder stopped before finishing".into(),
            records_read: 0,
            events_read: 0,
        })
    });
    Ok(ReadSummary {
        header,
        truncation: truncation.map(|t| Truncation {
            records_read: records,
            events_read: events,
            ..t
        }),
        records,
        events,
        skipped_unknown_frames: frames.skipped_unknown_frames(),
    })
}

/// Records per message from a decoding worker: small enough that a message stays in the
/// cache between the worker writing it and the replay reading it, large enough that channel
/// costs vanish.
const CHUNK: usize = 4096;
/// Messages a worker may have queued ahead of the replay.
const CHUNKS_AHEAD: usize = 8;

/// What a decoding worker sends for each frame: chunks of its records in order, then `Done`.
enum Msg {
    Records(Vec<Record>),
    Done(Result<(), FormatError>),
}

fn parallel<R: Read + Send, S: RecordSink>(
    header: &FileHeader,
    mut frames: FrameReader<R>,
    workers: usize,
    take: &mut Counting<S>,
) -> Result<FrameReader<R>, FormatError> {
    std::thread::scope(|scope| {
        let mut jobs: Vec<SyncSender<Result<RawFrame, FormatError>>> = Vec::new();
        let mut results: Vec<Receiver<Msg>> = Vec::new();
        // Emptied chunks go back to the worker that filled them: no allocation per chunk.
        let mut recycle: Vec<Sender<Vec<Record>>> = Vec::new();
        for _ in 0..workers {
            let (job_tx, job_rx) = sync_channel::<Result<RawFrame, FormatError>>(2);
            let (res_tx, res_rx) = sync_channel::<Msg>(CHUNKS_AHEAD);
            let (back_tx, back_rx) = channel::<Vec<Record>>();
            jobs.push(job_tx);
            results.push(res_rx);
            recycle.push(back_tx);
            scope.spawn(move || {
                let mut scratch = Vec::new();
                let fresh = || {
                    back_rx
                        .try_recv()
                        .unwrap_or_else(|_| Vec::with_capacity(CHUNK))
                };
                let mut open = true;
                for job in job_rx {
                    let done = job.and_then(|frame| {
                        let mut chunk = fresh();
                        decode_frame_of(header, &frame, &mut scratch, |r| {
                            chunk.push(r);
                            if chunk.len() == CHUNK && open {
                                let full = std::mem::replace(&mut chunk, fresh());
                                open = res_tx.send(Msg::Records(full)).is_ok();
                            }
                        })?;
                        if !chunk.is_empty() && open {
                            open = res_tx.send(Msg::Records(chunk)).is_ok();
                        }
                        Ok(())
                    });
                    if !open || res_tx.send(Msg::Done(done)).is_err() {
                        return;
                    }
                }
            });
        }
        let reader = scope.spawn(move || {
            for (i, frame) in (&mut frames).enumerate() {
                let failed = frame.is_err();
                if jobs[i % workers].send(frame).is_err() || failed {
                    break;
                }
            }
            drop(jobs);
            frames
        });
        let mut outcome = Ok(());
        'frames: for i in 0.. {
            loop {
                match results[i % workers].recv() {
                    Ok(Msg::Records(mut chunk)) => {
                        take.take_chunk(&mut chunk);
                        let _ = recycle[i % workers].send(chunk);
                        if take.sink.stopped() {
                            break 'frames;
                        }
                    }
                    Ok(Msg::Done(Ok(()))) => break,
                    Ok(Msg::Done(Err(e))) => {
                        outcome = Err(e);
                        break 'frames;
                    }
                    Err(_) => break 'frames,
                }
            }
        }
        // Unblock the workers and the reader if we stopped early.
        drop(results);
        let frames = reader.join().map_err(|_| {
            FormatError::Io(std::io::Error::other("the frame reader thread panicked"))
        })?;
        outcome.map(|()| frames)
    })
}
