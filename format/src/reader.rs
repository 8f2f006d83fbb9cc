//! The streaming reader: a trace in, records out, in constant memory (one frame at a time).

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

use crate::error::{FormatError, Truncation};
use crate::frame::{
    FORMAT_MAJOR, FORMAT_MINOR, FileHeader, FrameReader, RawFrame, inflate_frame, read_file_header,
};
use crate::record::Record;
use crate::wire::{DecoderTables, FrameDecoder};

/// Decodes every record of one frame, calling `sink` for each in order, and returns how many
/// there were. Frames are independent: callers that want parallelism read frames with
/// [`FrameReader`] and decode them on several threads with this function. On corruption the
/// records before the bad one have already been given to `sink`. Prefer [`decode_frame_of`],
/// which can tell a newer file's records from corruption.
pub fn decode_frame(
    frame: &RawFrame,
    scratch: &mut Vec<u8>,
    sink: impl FnMut(Record),
) -> Result<u64, FormatError> {
    decode_frame_of(&FileHeader::current(), frame, scratch, sink)
}

/// [`decode_frame`] for a frame of the file whose header is `header`: a record kind this
/// reader does not know, in a file of a newer minor version, is reported as needing a newer
/// memtrail (naming the version the header says) rather than as corruption.
pub fn decode_frame_of(
    header: &FileHeader,
    frame: &RawFrame,
    scratch: &mut Vec<u8>,
    mut sink: impl FnMut(Record),
) -> Result<u64, FormatError> {
    inflate_frame(frame, scratch)?;
    let mut spare = SPARE_TABLES.take();
    let mut decoder = match FrameDecoder::new(scratch, &mut spare) {
        Ok(decoder) => decoder,
        Err(e) => {
            SPARE_TABLES.set(spare);
            return Err(corrupt(header, frame.offset, e));
        }
    };
    let outcome = decoder.decode(scratch, usize::MAX, &mut sink);
    SPARE_TABLES.set(Some(decoder.into_tables()));
    let n = outcome.map_err(|e| corrupt(header, frame.offset, e))?;
    Ok(n as u64)
}

thread_local! {
    /// The decoder tables of the last frame this thread decoded with [`decode_frame`], reused
    /// by the next one: a cache of memory, not of content (a decoder resets them).
    static SPARE_TABLES: std::cell::Cell<Option<DecoderTables>> =
        const { std::cell::Cell::new(None) };
}

/// A record error inside the frame at `frame_offset`, as a format error naming that offset.
#[cold]
fn corrupt(header: &FileHeader, frame_offset: u64, e: crate::wire::RecordError) -> FormatError {
    if e.unknown_tag && header.major == FORMAT_MAJOR && header.minor > FORMAT_MINOR {
        let [a, b, c] = header.reader_version;
        return FormatError::NewerRecords {
            offset: frame_offset,
            major: header.major,
            minor: header.minor,
            reads: FORMAT_MINOR,
            needs: format!("{a}.{b}.{c}"),
        };
    }
    FormatError::corrupt(
        frame_offset,
        format!(
            "in the frame starting there, payload byte {}: {}",
            e.pos, e.what
        ),
    )
}

/// Records the reader decodes at a time: decoding in batches keeps the decoder's state in
/// registers, and this many records (12 KiB) stay in the L1 cache until they are returned.
const BATCH: usize = 256;

/// What a returned record leaves in the batch (owns nothing).
const PLACEHOLDER: Record = Record::End {
    time: 0,
    totals: crate::record::EndTotals {
        allocations: 0,
        frees: 0,
        reallocs: 0,
        lost: 0,
    },
};

/// Reads a trace record by record.
///
/// ```no_run
/// let mut reader = memtrail_format::TraceReader::open("app.trace")?;
/// for record in &mut reader {
///     let record = record?;
///     // ...
/// }
/// if let Some(cut) = reader.truncation() {
///     eprintln!("warning: {cut}");
/// }
/// # Ok::<(), memtrail_format::FormatError>(())
/// ```
pub struct TraceReader<R> {
    header: FileHeader,
    frames: FrameReader<R>,
    /// The current frame, decompressed, and the decoder walking it.
    payload: Vec<u8>,
    decoder: Option<FrameDecoder>,
    /// The tables of the last decoder, kept for the next frame's.
    spare_tables: Option<DecoderTables>,
    /// Records decoded but not yet returned, in order: `ready[next_ready..filled]`. The
    /// others are placeholders, so that the decoder writes each record into its slot.
    ready: Vec<Record>,
    filled: usize,
    next_ready: usize,
    /// The corruption that stopped the current frame, returned after `ready` is empty.
    pending_error: Option<FormatError>,
    frame_offset: u64,
    records_read: u64,
    events_read: u64,
    saw_end: bool,
    failed: bool,
    truncation: Option<Truncation>,
}

impl TraceReader<BufReader<File>> {
    /// Opens a trace file (a regular file: a FIFO or a device is refused, see
    /// [`crate::open_input`]).
    pub fn open(path: impl AsRef<Path>) -> Result<TraceReader<BufReader<File>>, FormatError> {
        let file = crate::output::open_input(path)?;
        TraceReader::new(BufReader::with_capacity(256 << 10, file))
    }
}

impl<R: Read> TraceReader<R> {
    /// Reads and checks the file header.
    pub fn new(mut inner: R) -> Result<TraceReader<R>, FormatError> {
        let header = read_file_header(&mut inner)?;
        Ok(TraceReader {
            header,
            frames: FrameReader::new(inner),
            payload: Vec::new(),
            decoder: None,
            spare_tables: None,
            ready: vec![PLACEHOLDER; BATCH],
            filled: 0,
            next_ready: 0,
            pending_error: None,
            frame_offset: 0,
            records_read: 0,
            events_read: 0,
            saw_end: false,
            failed: false,
            truncation: None,
        })
    }

    pub fn header(&self) -> FileHeader {
        self.header
    }

    /// Set once the iteration is over if the file was cut inside a frame, or ended without its
    /// end record. Everything before the cut was returned.
    pub fn truncation(&self) -> Option<&Truncation> {
        self.truncation.as_ref()
    }

    pub fn records_read(&self) -> u64 {
        self.records_read
    }

    pub fn events_read(&self) -> u64 {
        self.events_read
    }

    /// Frames of kinds newer than this reader, skipped.
    pub fn skipped_unknown_frames(&self) -> u64 {
        self.frames.skipped_unknown_frames()
    }

    /// Bytes consumed so far (for progress bars).
    pub fn bytes_read(&self) -> u64 {
        self.frames.offset()
    }

    /// Drops the current frame's decoder, keeping its tables for the next.
    fn finish_frame(&mut self) {
        if let Some(decoder) = self.decoder.take() {
            self.spare_tables = Some(decoder.into_tables());
        }
    }

    /// Makes more records ready: decodes the next batch, or moves to the next frame.
    /// `Ok(false)` once the iteration is over; an error is returned once, after the records
    /// before it.
    #[inline(never)]
    fn refill(&mut self) -> Result<bool, FormatError> {
        loop {
            if self.next_ready < self.filled {
                return Ok(true);
            }
            if let Some(e) = self.pending_error.take() {
                self.failed = true;
                return Err(e);
            }
            if self.failed {
                return Ok(false);
            }
            if let Some(decoder) = self.decoder.as_mut() {
                self.next_ready = 0;
                let slots = &mut self.ready[..];
                let mut filled = 0;
                // Every slot holds a placeholder here (all records were handed out), so the
                // old value needs no drop.
                let outcome = decoder.decode(&self.payload, slots.len(), &mut |r| {
                    if let Some(slot) = slots.get_mut(filled) {
                        std::mem::forget(std::mem::replace(slot, r));
                        filled += 1;
                    }
                });
                self.filled = filled;
                match outcome {
                    Ok(0) => self.finish_frame(),
                    Ok(_) => {}
                    Err(e) => {
                        self.finish_frame();
                        self.pending_error = Some(corrupt(&self.header, self.frame_offset, e));
                    }
                }
                continue;
            }
            match self.frames.next() {
                Some(Ok(frame)) => {
                    self.finish_frame();
                    inflate_frame(&frame, &mut self.payload).inspect_err(|_| self.failed = true)?;
                    self.frame_offset = frame.offset;
                    let decoder = FrameDecoder::new(&self.payload, &mut self.spare_tables)
                        .map_err(|e| {
                            self.failed = true;
                            corrupt(&self.header, frame.offset, e)
                        })?;
                    self.decoder = Some(decoder);
                }
                Some(Err(e)) => {
                    self.failed = true;
                    return Err(e);
                }
                None => {
                    self.failed = true;
                    self.truncation = self.frames.truncation().cloned().or_else(|| {
                        (!self.saw_end).then(|| Truncation {
                            offset: self.frames.offset(),
                            reason:
                                "the trace has no end record: the recorder stopped before finishing"
                                    .into(),
                            records_read: 0,
                            events_read: 0,
                        })
                    });
                    if let Some(t) = self.truncation.as_mut() {
                        t.records_read = self.records_read;
                        t.events_read = self.events_read;
                    }
                    return Ok(false);
                }
            }
        }
    }
}

impl<R: Read> Iterator for TraceReader<R> {
    type Item = Result<Record, FormatError>;

    /// The record is counted where it lies and moved from its slot straight into the
    /// returned value: a copy through a local first was read back at other offsets than it
    /// was written at, which the CPU cannot forward from its store buffer (a stall per
    /// record: a fifth of the reader's samples in `perf record` fell on that load).
    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.next_ready < self.filled
                && let Some(slot) = self.ready.get_mut(self.next_ready)
            {
                self.next_ready += 1;
                self.records_read += 1;
                if slot.is_event() {
                    self.events_read += 1;
                } else if matches!(slot, Record::End { .. }) {
                    self.saw_end = true;
                }
                return Some(Ok(std::mem::replace(slot, PLACEHOLDER)));
            }
            match self.refill() {
                Ok(true) => {}
                Ok(false) => return None,
                Err(e) => return Some(Err(e)),
            }
        }
    }
}
