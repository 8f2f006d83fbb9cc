//! One analysis: a trace file read once, front to back, into a replay and a symbol table.
//!
//! Owns the reading loop (records to the symbol table or the replay), the metadata, the
//! truncation and saturation warnings and the sampling scale, and the memory budget's checks
//! outside the replay: names (strings, modules, stacks, symbols) as they arrive, and the frames
//! the reports will resolve. Must not format output or decide verdicts.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use memtrail_format::{FileHeader, Record, TraceMeta, Truncation};

use crate::aggregate::StackRow;
use crate::budget::{Kind, cost};
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
        mut replay,
        meta,
    } = sink;
    let over = |e: &crate::budget::Exceeded| Error::MemoryLimit {
        path: path.to_owned(),
        exceeded: e.clone(),
    };
    if let Some(e) = replay.check_budget() {
        return Err(over(e));
    }
    if let Some(message) = replay.processes().unmatched_filter() {
        return Err(Error::Invalid(format!("{}: {message}", path.display())));
    }
    if let Some(e) = replay.charge_finish() {
        return Err(over(e));
    }
    charge_report_frames(&symbols, &mut replay);
    if let Some(e) = replay.budget().exceeded() {
        return Err(over(e));
    }
    let mut analysis = Analysis {
        path: path.to_owned(),
        header: summary.header,
        has_meta: meta.is_some(),
        meta: meta.unwrap_or_default(),
        symbols,
        replay: replay.finish(),
        truncation: summary.truncation,
        records: summary.records,
        skipped_unknown_frames: summary.skipped_unknown_frames,
    };
    analysis.replay.stats.saturated |= analysis.scaled_totals_saturate();
    Ok(analysis)
}

/// Charges the frames the reports resolve for every stack the replay saw (a `Frame` each, and
/// its names twice: in the frame and in the text built from it).
fn charge_report_frames(symbols: &SymbolTable, replay: &mut Replay) {
    let (mut frames, mut bytes) = (0u64, 0u64);
    for (&id, _) in replay.aggregates().stacks.iter() {
        let (f, b) = symbols.resolved_size(id);
        frames = frames.saturating_add(f);
        bytes = bytes
            .saturating_add(f.saturating_mul(cost::REPORT_FRAME))
            .saturating_add(b.saturating_mul(2));
    }
    replay
        .budget_mut()
        .set(Kind::ReportFrames, frames, bytes, 0);
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
        if record.time().is_some() || matches!(record, Record::Thread { .. }) {
            self.replay.record(&record);
            return;
        }
        if let Record::Meta(m) = &record
            && self.meta.is_none()
        {
            self.replay.meta(m);
        }
        if !charge_names(self.replay.budget_mut(), &record) {
            return;
        }
        match self.symbols.take(record) {
            Some(Record::Meta(m)) if self.meta.is_none() => self.meta = Some(*m),
            _ => {}
        }
    }

    fn stopped(&mut self) -> bool {
        self.replay.check_budget().is_some()
    }
}

/// Charges what the symbol table keeps of a name record (see `SymbolTable::take`); false when
/// refused. A record that replaces an earlier one (same id) is charged again: the budget
/// counts what the trace declares.
fn charge_names(budget: &mut crate::budget::Budget, record: &Record) -> bool {
    use crate::symbols::{MAX_INLINED_FRAMES, MAX_REPORT_FRAMES};
    let strings = |n: usize| (n as u64, n as u64 + cost::NAME_RECORD);
    let (kind, (count, bytes)) = match record {
        Record::String { value, .. } => (Kind::StringBytes, strings(value.len())),
        Record::Module(m) => (Kind::StringBytes, strings(m.path.len())),
        Record::Meta(m) => {
            let text = m
                .command_line
                .iter()
                .chain(m.extra.iter().flat_map(|(k, v)| [k, v]));
            (Kind::StringBytes, strings(text.map(String::len).sum()))
        }
        Record::Stack(s) => {
            let n = s.frames.len().min(MAX_REPORT_FRAMES) as u64;
            (
                Kind::StackFrames,
                (n, n * cost::STACK_FRAME + cost::NAME_RECORD),
            )
        }
        Record::Symbol(s) => {
            let n = s.frames.len().min(MAX_INLINED_FRAMES) as u64;
            (
                Kind::SymbolFrames,
                (n, n * cost::SYMBOL_FRAME + cost::NAME_RECORD),
            )
        }
        _ => return true,
    };
    budget.exceeded().is_none() && budget.add(kind, count, bytes)
}

/// The warning for a trace whose recorder could not follow the traced processes' children.
pub const FOLLOW_UNAVAILABLE: &str =
    "the processes it started were not traced (the recorder could not follow them)";

impl Analysis {
    /// True when the recorder was asked to follow the processes the traced ones start and
    /// could not (its metadata's `follow` is `unavailable`): their leaks are in no report.
    pub fn follow_unavailable(&self) -> bool {
        self.meta
            .extra
            .iter()
            .any(|(k, v)| k == "follow" && v == "unavailable")
    }

    /// True when a total the reports add up across stacks (scaled for sampling) would pass
    /// 2^64 - 1: the reports' sums saturate there.
    fn scaled_totals_saturate(&self) -> bool {
        let mut sums = [0u64; 4];
        let mut saturated = false;
        for row in &self.replay.rows {
            let k = self.scale(row);
            for (sum, v) in sums.iter_mut().zip([
                row.unfreed_bytes,
                row.unfreed_allocations,
                row.allocated_bytes,
                row.allocations,
            ]) {
                // A scaled value past u64::MAX saturates in the float-to-integer conversion.
                let scaled = v as f64 * k;
                let (s, wrapped) = sum.overflowing_add(self.scaled(row, v));
                *sum = s;
                saturated |= wrapped || scaled >= u64::MAX as f64;
            }
        }
        saturated
    }

    /// Warnings every report shows on stderr: truncation, lost events, skipped frames,
    /// saturated totals.
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
        // Never silently blind: the whole tree when the recorder could not follow it, and
        // every process of the tree that was not traced, beside the lost events (`info`
        // lists them all).
        if self.follow_unavailable() {
            w.push(format!("{name}: {FOLLOW_UNAVAILABLE}"));
        }
        const SHOWN_UNFOLLOWED: usize = 20;
        let r = &self.replay;
        for u in r.unfollowed.iter().take(SHOWN_UNFOLLOWED) {
            w.push(format!(
                "{name}: {}",
                crate::processes::unfollowed_sentence(u)
            ));
        }
        let more = (r.unfollowed.len().saturating_sub(SHOWN_UNFOLLOWED) as u64)
            .saturating_add(r.process_limits.unfollowed_over_limit);
        if more > 0 {
            w.push(format!(
                "{name}: {more} more processes of the tree were not traced (`memtrail info` lists up to {})",
                crate::processes::MAX_UNFOLLOWED
            ));
        }
        let limits = &r.process_limits;
        if limits.processes_over_limit > 0 {
            w.push(format!(
                "{name}: the trace has more than {} processes: {} later ones were not replayed (their events are in no report; `--pid` selects any process)",
                crate::processes::MAX_PROCESSES,
                limits.processes_over_limit
            ));
        }
        if limits.threads_over_limit > 0 {
            w.push(format!(
                "{name}: {} thread records past the limit of {} were ignored: those threads' events count for the traced command's process",
                limits.threads_over_limit,
                crate::processes::MAX_THREAD_BINDINGS
            ));
        }
        if limits.records_of_unknown_pids > 0 {
            w.push(format!(
                "{name}: {} exec or exit records name a process the trace never introduced (ignored; a corrupt trace?)",
                limits.records_of_unknown_pids
            ));
        }
        if s.saturated {
            w.push(format!(
                "{name}: some sizes or counts in the trace add up past 2^64 - 1 (a crafted or corrupt trace?); totals stop there and are lower bounds"
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
