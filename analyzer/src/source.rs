//! Reading a trace's records in file order, decoding frames on worker threads.
//!
//! Owns the threads and the ordering: one thread reads raw frames, `W` workers inflate and
//! decode them (frames are independent), and the caller's thread receives each frame's records
//! in file order. At most a few frames are in flight, so memory stays constant whatever the
//! trace's size. Must not interpret records.

use std::io::Read;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

use memtrail_format::frame::read_file_header;
use memtrail_format::{
    FileHeader, FormatError, FrameReader, RawFrame, Record, Truncation, decode_frame,
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

type Batch = Result<Vec<Record>, FormatError>;

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

/// Reads every record of the trace in `input`, in order, into `sink`. With `threads <= 1`
/// everything happens on the calling thread.
pub fn read_records<R: Read + Send>(
    mut input: R,
    threads: usize,
    mut sink: impl FnMut(Record),
) -> Result<ReadSummary, FormatError> {
    let header = read_file_header(&mut input)?;
    let mut records = 0u64;
    let mut events = 0u64;
    let mut saw_end = false;
    let mut take = |r: Record| {
        records += 1;
        events += u64::from(r.is_event());
        saw_end |= matches!(r, Record::End { .. });
        sink(r);
    };
    let frames = FrameReader::new(input);
    let frames = if threads <= 1 {
        let mut frames = frames;
        let mut scratch = Vec::new();
        for frame in &mut frames {
            decode_frame(&frame?, &mut scratch, &mut take)?;
        }
        frames
    } else {
        parallel(frames, threads, &mut take)?
    };
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

fn parallel<R: Read + Send>(
    mut frames: FrameReader<R>,
    workers: usize,
    take: &mut impl FnMut(Record),
) -> Result<FrameReader<R>, FormatError> {
    std::thread::scope(|scope| {
        let mut jobs: Vec<SyncSender<Result<RawFrame, FormatError>>> = Vec::new();
        let mut results: Vec<Receiver<Batch>> = Vec::new();
        for _ in 0..workers {
            let (job_tx, job_rx) = sync_channel::<Result<RawFrame, FormatError>>(2);
            let (res_tx, res_rx) = sync_channel::<Batch>(1);
            jobs.push(job_tx);
            results.push(res_rx);
            scope.spawn(move || {
                let mut scratch = Vec::new();
                for job in job_rx {
                    let batch = job.and_then(|frame| {
                        let mut batch = Vec::with_capacity(frame.header.raw_len as usize / 4);
                        decode_frame(&frame, &mut scratch, |r| batch.push(r)).map(|_| batch)
                    });
                    if res_tx.send(batch).is_err() {
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
        for i in 0.. {
            match results[i % workers].recv() {
                Ok(Ok(batch)) => batch.into_iter().for_each(&mut *take),
                Ok(Err(e)) => {
                    outcome = Err(e);
                    break;
                }
                Err(_) => break,
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
