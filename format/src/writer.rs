//! The streaming writer: records in, complete checksummed frames out.
//!
//! Records are encoded into an in-memory frame; when it holds `frame_bytes` bytes it is
//! compressed and written with one `write_all`, so a file cut at any point ends on a frame
//! boundary or inside the last frame, and every earlier frame stays readable.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use flate2::Compression;

use crate::error::FormatError;
use crate::frame::{FRAME_RECORDS_DEFLATE, FileHeader, FrameHeader};
use crate::output::OutputFile;
use crate::record::{Record, TraceMeta};
use crate::wire::{FrameEncoder, MAX_RAW_PAYLOAD};

/// Settings of a [`TraceWriter`].
#[derive(Debug, Clone, Copy)]
pub struct WriterOptions {
    /// A frame is closed once its uncompressed records reach this size.
    pub frame_bytes: usize,
    /// DEFLATE level, 0 (store) to 9 (smallest).
    pub level: u32,
    /// A frame is also closed when it has been open this long, so a recorder that is killed
    /// (or a host that crashes) loses at most this much of a slow trickle of events.
    pub flush_interval: Option<Duration>,
}

impl Default for WriterOptions {
    fn default() -> Self {
        // Measured by benches/trace_size.rs: level 6 is within 2% of level 9's size at
        // about twice its speed.
        WriterOptions {
            frame_bytes: 256 << 10,
            level: 6,
            flush_interval: Some(Duration::from_secs(1)),
        }
    }
}

/// Writes a trace to any `Write`: the file header, then frames of records.
pub struct TraceWriter<W: Write> {
    inner: Option<W>,
    options: WriterOptions,
    encoder: FrameEncoder,
    raw: Vec<u8>,
    compressed: Vec<u8>,
    /// The DEFLATE state, reset between frames rather than made anew: a new one allocates
    /// (and the kernel zeroes) a few hundred KiB per frame.
    deflate: flate2::Compress,
    /// Frame header and compressed payload, handed to the output in one write.
    frame: Vec<u8>,
    strings: HashMap<String, u32>,
    bytes_written: u64,
    records_in_frame: u64,
    frame_opened: Instant,
    /// Set after a failed write: the stream may end in a partial frame, so nothing more may
    /// be appended after it.
    failed: Option<String>,
}

impl<W: Write> TraceWriter<W> {
    /// Starts a trace: writes the file header and queues the metadata record.
    pub fn new(inner: W, meta: &TraceMeta) -> Result<TraceWriter<W>, FormatError> {
        TraceWriter::with_options(inner, meta, WriterOptions::default())
    }

    pub fn with_options(
        mut inner: W,
        meta: &TraceMeta,
        options: WriterOptions,
    ) -> Result<TraceWriter<W>, FormatError> {
        let header = FileHeader::current().to_bytes();
        inner.write_all(&header)?;
        let mut writer = TraceWriter {
            inner: Some(inner),
            options: WriterOptions {
                frame_bytes: options.frame_bytes.clamp(1, MAX_RAW_PAYLOAD / 2),
                level: options.level.min(9),
                flush_interval: options.flush_interval,
            },
            encoder: FrameEncoder::new(u64::from(meta.time_resolution_ns.max(1))),
            raw: Vec::with_capacity(options.frame_bytes + 4096),
            compressed: Vec::new(),
            deflate: flate2::Compress::new(Compression::new(options.level.min(9)), false),
            frame: Vec::new(),
            strings: HashMap::new(),
            bytes_written: header.len() as u64,
            records_in_frame: 0,
            frame_opened: Instant::now(),
            failed: None,
        };
        writer.write(&Record::Meta(Box::new(meta.clone())))?;
        Ok(writer)
    }

    /// Appends a record. It reaches the output when its frame fills up, or on `flush`.
    pub fn write(&mut self, record: &Record) -> Result<(), FormatError> {
        if let Some(why) = &self.failed {
            return Err(FormatError::Poisoned(why.clone()));
        }
        // A record too large for any frame would poison the frame it is in: refuse it first.
        let size = match record {
            Record::Meta(m) => m
                .command_line
                .iter()
                .chain(m.extra.iter().flat_map(|(k, v)| [k, v]))
                .map(String::len)
                .sum(),
            Record::String { value, .. } => value.len(),
            Record::Module(m) => m.path.len() + m.ranges.len() * 30,
            Record::Stack(s) => s.frames.len() * 30,
            Record::Symbol(s) => s.frames.len() * 15,
            Record::Process(p) => p.command_line.iter().map(String::len).sum(),
            Record::Exec { command_line, .. } => command_line.iter().map(String::len).sum(),
            Record::Unfollowed { reason, .. } => reason.len(),
            _ => 0,
        };
        if size > MAX_RAW_PAYLOAD / 4 {
            return Err(FormatError::RecordTooLarge {
                size,
                limit: MAX_RAW_PAYLOAD / 4,
            });
        }
        self.encoder.encode(record)?;
        self.records_in_frame += 1;
        if self.encoder.len() >= self.options.frame_bytes {
            self.write_frame()?;
        } else if self.records_in_frame == 1 {
            self.frame_opened = Instant::now();
        } else if self.records_in_frame.is_multiple_of(256)
            && let Some(interval) = self.options.flush_interval
            && self.frame_opened.elapsed() >= interval
        {
            self.write_frame()?;
            if let Some(inner) = self.inner.as_mut() {
                inner.flush().map_err(|e| self.fail(e))?;
            }
        }
        Ok(())
    }

    /// Returns the id of `s`, writing a `Record::String` the first time it is seen.
    pub fn intern(&mut self, s: &str) -> Result<u32, FormatError> {
        if let Some(&id) = self.strings.get(s) {
            return Ok(id);
        }
        let id = self.strings.len() as u32;
        self.write(&Record::String {
            id,
            value: s.to_owned(),
        })?;
        self.strings.insert(s.to_owned(), id);
        Ok(id)
    }

    /// Closes the current frame (if it holds anything) and flushes the output, so everything
    /// written so far is readable even if the process dies now.
    pub fn flush(&mut self) -> Result<(), FormatError> {
        if self.records_in_frame > 0 {
            self.write_frame()?;
        }
        if let Some(inner) = self.inner.as_mut() {
            inner.flush().map_err(|e| self.fail(e))?;
        }
        Ok(())
    }

    /// Flushes if the open frame is older than `flush_interval`. A recorder calls this from
    /// its poll loop, so a quiet process's few events still reach the disk within the interval.
    pub fn flush_if_due(&mut self) -> Result<bool, FormatError> {
        match self.options.flush_interval {
            Some(interval)
                if self.records_in_frame > 0 && self.frame_opened.elapsed() >= interval =>
            {
                self.flush()?;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// Bytes handed to the output so far (the file size, once flushed).
    pub fn bytes_written(&self) -> u64 {
        self.bytes_written
    }

    /// Bytes of records waiting in the current frame.
    pub fn pending_bytes(&self) -> usize {
        self.encoder.len()
    }

    /// Flushes the last frame and returns the output.
    pub fn finish(mut self) -> Result<W, FormatError> {
        self.flush()?;
        self.inner
            .take()
            .ok_or_else(|| FormatError::Poisoned("writer already finished".into()))
    }

    fn fail(&mut self, e: std::io::Error) -> FormatError {
        self.failed = Some(e.to_string());
        FormatError::Io(e)
    }

    fn write_frame(&mut self) -> Result<(), FormatError> {
        self.encoder.finish_into(&mut self.raw)?;
        self.compressed.clear();
        let c = &mut self.deflate;
        c.reset();
        self.compressed.reserve(self.raw.len() / 2 + 1024);
        loop {
            let status = c
                .compress_vec(
                    &self.raw[c.total_in() as usize..],
                    &mut self.compressed,
                    flate2::FlushCompress::Finish,
                )
                .map_err(|e| std::io::Error::other(e.to_string()))?;
            if status == flate2::Status::StreamEnd {
                break;
            }
            self.compressed
                .reserve(self.compressed.capacity().max(4096));
        }
        let header = FrameHeader {
            kind: FRAME_RECORDS_DEFLATE,
            flags: 0,
            stored_len: self.compressed.len() as u32,
            raw_len: self.raw.len() as u32,
            payload_crc: crc32fast::hash(&self.compressed),
        };
        let inner = self
            .inner
            .as_mut()
            .ok_or_else(|| FormatError::Poisoned("writer already finished".into()))?;
        // Header and payload in one buffer and one write_all: fewer partial frames on a crash.
        let frame = &mut self.frame;
        frame.clear();
        frame.extend_from_slice(&header.to_bytes());
        frame.extend_from_slice(&self.compressed);
        if let Err(e) = inner.write_all(frame) {
            return Err(self.fail(e));
        }
        self.bytes_written += self.frame.len() as u64;
        self.raw.clear();
        self.records_in_frame = 0;
        Ok(())
    }
}

impl TraceWriter<OutputFile> {
    /// Starts a trace at `path`: written into a new temporary file (mode 0600) beside it,
    /// which [`TraceWriter::publish`] or [`TraceWriter::finish_sync`] renames over `path`.
    /// Whatever is at `path` is not followed, written through or looked at; dropped before
    /// it is published, the writer removes its temporary file.
    pub fn create(
        path: impl AsRef<Path>,
        meta: &TraceMeta,
    ) -> Result<TraceWriter<OutputFile>, FormatError> {
        TraceWriter::create_with_options(path, meta, WriterOptions::default())
    }

    pub fn create_with_options(
        path: impl AsRef<Path>,
        meta: &TraceMeta,
        options: WriterOptions,
    ) -> Result<TraceWriter<OutputFile>, FormatError> {
        TraceWriter::with_options(OutputFile::create(path)?, meta, options)
    }

    /// Puts the trace at its final name now, with everything written so far (a trace being
    /// recorded: from here on it is readable there, as far as it has been flushed). Later
    /// records go on into the same file.
    pub fn publish(&mut self) -> Result<(), FormatError> {
        self.flush()?;
        let inner = self
            .inner
            .as_mut()
            .ok_or_else(|| FormatError::Poisoned("writer already finished".into()))?;
        inner.publish()?;
        Ok(())
    }

    /// Flushes the last frame, fsyncs the file and publishes it if that was not done yet,
    /// so the complete trace is at its final name and survives a host crash.
    pub fn finish_sync(self) -> Result<(), FormatError> {
        let file = self.finish()?;
        file.commit()?;
        Ok(())
    }
}
