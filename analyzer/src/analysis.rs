//! One analysis: a trace file read once, front to back, into a replay and a symbol table.
//!
//! Owns the reading loop (records to the symbol table or the replay), the metadata, the
//! truncation warning and the sampling scale. Must not format output or decide verdicts.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use memtrail_format::{FileHeader, Record, TraceMeta, Truncation};

use crate::aggregate::StackRow;
use crate::error::{Error, Result};
use crate::progress::CountingReader;
use crate::replay::{Replay, ReplayOptions, ReplayOutput};
use crate::source::{RecordSink, default_threads, read_records};
use crate::symbols::SymbolTable;

/// Everything known about a trace after one pass.
#[derive(Debug, Clone)]
pub struct Analysis {
    pub path: PathBuf,
    pub header: FileHeader,
    /// The metadata record; defaults when the trace has none.
    pub meta: TraceMeta,
    pub has_meta: bool,
    pub symbols: SymbolTable,
    pub replay: ReplayOutput,
    /// Set when the file was cut short; everything before the cut was analyzed.
    pub truncation: Option<Truncation>,
    pub records: u64,
    pub skipped_unknown_frames: u64,
}

/// Reads `path` and replays it, decoding frames on [`default_threads`] threads.
pub fn analyze(path: &Path, options: ReplayOptions) -> Result<Analysis> {
    analyze_counting(path, options, Arc::default())
}

/// [`analyze`], adding the bytes read so far to `bytes_read` (for a progress bar).
pub fn analyze_counting(
    path: &Path,
    options: ReplayOptions,
    bytes_read: Arc<AtomicU64>,
) -> Result<Analysis> {
    // A regular file only: a FIFO or a device is refused without blocking.
    let file = memtrail_format::open_input(path).map_err(|e| Error::trace(path, e))?;
    // No buffer: the frame reader asks for whole headers and payloads (two reads a frame), so
    // a buffer would only add a copy of the file.
    let input = CountingReader::new(file, bytes_read);
    analyze_from(path, input, options, default_threads())
}

/// Replays a trace held in memory; `path` names it in messages.
pub fn analyze_bytes(path: &Path, bytes: &[u8], options: ReplayOptions) -> Result<Analysis> {
    analyze_from(path, bytes, options, 1)
}

/// Replays a trace from any reader with `threads` decoding threads (1: all on this thread).
pub fn analyze_from<R: std::io::Read + Send>(
    path: &Path,
    input: R,
    options: ReplayOptions,
    threads: usize,
) -> Result<Analysis> {
    let mut sink = Sink {
        symbols: SymbolTable::default(),
        replay: Replay::new(options),
        meta: None,
    };
    let summary = read_records(input, threads, &mut sink).map_err(|e| Error::trace(path, e))?;
    let Sink {
        symbols,
        replay,
        meta,
    } = sink;
    Ok(Analysis {
        path: path.to_owned(),
        header: summary.header,
        has_meta: meta.is_some(),
        meta: meta.unwrap_or_default(),
        symbols,
        replay: replay.finish(),
        truncation: summary.truncation,
        records: summary.records,
        skipped_unknown_frames: summary.skipped_unknown_frames,
    })
}

/// Events to the replay, other timed records too, the rest to the symbol table.
struct Sink {
    symbols: SymbolTable,
    replay: Replay,
    meta: Option<TraceMeta>,
}

impl RecordSink for &mut Sink {
    #[inline(always)]
    fn event(&mut self, record: &Record) {
        self.replay.event(record);
    }

    fn other(&mut self, record: Record) {
        if record.time().is_some() {
            self.replay.record(&record);
            return;
        }
        match self.symbols.take(record) {
            Some(Record::Meta(m)) if self.meta.is_none() => self.meta = Some(*m),
            _ => {}
        }
    }
}

impl Analysis {
    /// Warnings every report shows on stderr: truncation, lost events, skipped frames.
    pub fn warnings(&self) -> Vec<String> {
        let mut w = Vec::new();
        let name = self.path.display();
        if let Some(t) = &self.truncation {
            w.push(format!("{name}: {t}"));
        }
        let s = &self.replay.stats;
        if s.lost_events > 0 {
            let reasons: Vec<String> = s
                .lost_by_reason
                .iter()
                .map(|(r, n)| format!("{n} {r}"))
                .collect();
            w.push(format!(
                "{name}: the recorder lost {} events ({}); counts are lower bounds and some frees may be missing",
                s.lost_events,
                reasons.join(", ")
            ));
        }
        if self.skipped_unknown_frames > 0 {
            w.push(format!(
                "{name}: skipped {} frames of a newer format version",
                self.skipped_unknown_frames
            ));
        }
        w
    }

    /// The factor that turns a stack's recorded numbers into estimates for the whole process:
    /// 1 for unsampled traces; for traces sampled one per `N` bytes, `1 / (1 - exp(-s / N))`
    /// for the stack's mean allocation size `s` (the probability a block of that size is
    /// sampled).
    pub fn scale(&self, row: &StackRow) -> f64 {
        let n = self.meta.sample_bytes;
        if n == 0 || row.allocations == 0 {
            return 1.0;
        }
        let mean = row.allocated_bytes as f64 / row.allocations as f64;
        let p = 1.0 - (-mean / n as f64).exp();
        if p <= 0.0 { 1.0 } else { 1.0 / p }
    }

    /// `value` scaled for `row` (see [`Analysis::scale`]).
    pub fn scaled(&self, row: &StackRow, value: u64) -> u64 {
        if self.meta.sample_bytes == 0 {
            value
        } else {
            (value as f64 * self.scale(row)).round() as u64
        }
    }

    /// The traced command line, or the file name when the trace does not say.
    pub fn command(&self) -> String {
        if self.meta.command_line.is_empty() {
            self.path
                .file_name()
                .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
        } else {
            self.meta.command_line.join(" ")
        }
    }
}
