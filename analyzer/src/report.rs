//! Report models: what each command shows, computed from an [`Analysis`], independent of how it
//! is printed.
//!
//! Owns selection and ranking (which stacks are leak candidates, in what order; which stacks a
//! lifetimes query covers) and the scaling of sampled traces. Must not print or serialize: the
//! renderers in `render/` turn these into tables, JSON, CSV and SVG.

use std::collections::BTreeMap;

use memtrail_format::{AllocApi, FreeApi};

use crate::aggregate::{
    IntMap, LIFETIME_CLASS_BOUNDS_NS, LogHistogram, RowLabels, SIZE_CLASSES, StackRow,
};
use crate::analysis::Analysis;
use crate::error::{Error, Result};
use crate::replay::{ProcessOutput, ReplayOutput};
use crate::symbols::{Frame, frame_label};
use crate::verdict::{Classification, Verdict, classify};

/// A stack with unfreed bytes, its verdict and frames.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub rank: usize,
    pub verdict: Verdict,
    pub reason: String,
    /// Recorded numbers, unscaled.
    pub row: StackRow,
    /// `row`'s numbers scaled for sampling (equal to `row` for unsampled traces).
    pub scaled: StackRow,
    pub frames: Vec<Frame>,
    pub stack_truncated: bool,
}

/// The leaks report.
#[derive(Debug, Clone)]
pub struct LeakReport {
    pub candidates: Vec<Candidate>,
    /// Candidates before `--top`.
    pub candidates_total: usize,
    pub total_unfreed_bytes: u64,
    pub total_unfreed_allocations: u64,
    pub leak_bytes: u64,
}

/// Scales every count and byte total of `row` by the analysis's sampling weight.
pub fn scaled_row(a: &Analysis, row: &StackRow) -> StackRow {
    let mut s = row.clone();
    if a.meta.sample_bytes == 0 {
        return s;
    }
    for v in [
        &mut s.allocations,
        &mut s.allocated_bytes,
        &mut s.frees,
        &mut s.freed_bytes,
        &mut s.live_allocations,
        &mut s.live_bytes,
        &mut s.unfreed_allocations,
        &mut s.unfreed_bytes,
        &mut s.peak_bytes,
    ] {
        *v = a.scaled(row, *v);
    }
    let k = a.scale(row);
    for v in &mut s.unfreed_over_time {
        *v = (*v as f64 * k).round() as i64;
    }
    s
}

/// The verdict of a stack's curve in `r`: the whole trace's replay, or one process's.
pub fn classify_row_in(r: &ReplayOutput, row: &StackRow) -> Classification {
    classify(&row.unfreed_over_time, &r.axis, r.active_end_ns)
}

/// Longest command quoted in a reason that names a process.
const REASON_COMMAND_BYTES: usize = 80;

/// The whole trace's verdicts of a trace of several processes, by stack id: each stack is
/// judged in each process where it holds unfreed bytes, on that process's own axis, and keeps
/// its strongest verdict (a stack leaking in one worker is a leak of the trace), the
/// process with more unfreed bytes on a tie; the reason names the process. Empty for a
/// single-process trace, whose total is its process.
pub fn process_verdicts(a: &Analysis) -> IntMap<u32, Classification> {
    let mut best: IntMap<u32, (Classification, u64, &ProcessOutput)> = IntMap::default();
    for p in &a.replay.processes {
        let Some(replay) = &p.replay else { continue };
        for r in &replay.rows {
            if r.unfreed_bytes == 0 && r.unfreed_allocations == 0 {
                continue;
            }
            let c = classify_row_in(replay, r);
            let stronger = match best.get(&r.stack_id) {
                None => true,
                Some((b, bytes, _)) => {
                    (c.verdict.strength(), r.unfreed_bytes) > (b.verdict.strength(), *bytes)
                }
            };
            if stronger {
                best.insert(r.stack_id, (c, r.unfreed_bytes, p));
            }
        }
    }
    best.into_iter()
        .map(|(id, (c, _, p))| {
            let mut command = p.facts.command();
            if command.len() > REASON_COMMAND_BYTES {
                let mut end = REASON_COMMAND_BYTES;
                while !command.is_char_boundary(end) {
                    end -= 1;
                }
                command.truncate(end);
                command.push_str("...");
            }
            let reason = format!("in process {} ({command}): {}", p.facts.pid, c.reason);
            (
                id,
                Classification {
                    verdict: c.verdict,
                    reason,
                },
            )
        })
        .collect()
}

/// The verdict of a stack of the whole trace: its strongest process's in `by_process` (see
/// [`process_verdicts`]), else its own curve's.
fn classify_total(
    a: &Analysis,
    by_process: &IntMap<u32, Classification>,
    row: &StackRow,
) -> Classification {
    by_process
        .get(&row.stack_id)
        .cloned()
        .unwrap_or_else(|| classify_row_in(&a.replay, row))
}

/// Leak candidates: stacks with unfreed bytes (older than `--min-age`), leaks first, then by
/// unfreed bytes, largest first; ties by stack id.
/// For a trace of several processes, a stack's verdict is its strongest in a process (see
/// [`process_verdicts`]).
pub fn leaks(a: &Analysis, top: Option<usize>) -> LeakReport {
    let by_process = process_verdicts(a);
    leaks_with(a, &a.replay, top, |r| classify_total(a, &by_process, r))
}

/// [`leaks`] of one process's replay (`ProcessOutput::replay`), on its own axis.
pub fn leaks_in(a: &Analysis, replay: &ReplayOutput, top: Option<usize>) -> LeakReport {
    leaks_with(a, replay, top, |r| classify_row_in(replay, r))
}

fn leaks_with(
    a: &Analysis,
    replay: &ReplayOutput,
    top: Option<usize>,
    classify: impl Fn(&StackRow) -> Classification,
) -> LeakReport {
    let mut candidates: Vec<Candidate> = replay
        .rows
        .iter()
        .filter(|r| r.unfreed_allocations > 0 || r.unfreed_bytes > 0)
        .map(|r| {
            let c = classify(r);
            Candidate {
                rank: 0,
                verdict: c.verdict,
                reason: c.reason,
                row: r.clone(),
                scaled: scaled_row(a, r),
                frames: a.symbols.resolve(r.stack_id),
                stack_truncated: a.symbols.is_truncated(r.stack_id),
            }
        })
        .collect();
    candidates.sort_by(|x, y| {
        (x.verdict != Verdict::Leak)
            .cmp(&(y.verdict != Verdict::Leak))
            .then(y.scaled.unfreed_bytes.cmp(&x.scaled.unfreed_bytes))
            .then(x.row.stack_id.cmp(&y.row.stack_id))
    });
    // Sums of sizes from the trace saturate (the analysis warns when they do).
    let sum = |it: &mut dyn Iterator<Item = u64>| it.fold(0u64, u64::saturating_add);
    let total_unfreed_bytes = sum(&mut candidates.iter().map(|c| c.scaled.unfreed_bytes));
    let total_unfreed_allocations =
        sum(&mut candidates.iter().map(|c| c.scaled.unfreed_allocations));
    let leak_bytes = sum(&mut candidates
        .iter()
        .filter(|c| c.verdict == Verdict::Leak)
        .map(|c| c.scaled.unfreed_bytes));
    let candidates_total = candidates.len();
    if let Some(n) = top {
        candidates.truncate(n);
    }
    for (i, c) in candidates.iter_mut().enumerate() {
        c.rank = i + 1;
    }
    LeakReport {
        candidates,
        candidates_total,
        total_unfreed_bytes,
        total_unfreed_allocations,
        leak_bytes,
    }
}

/// One process of the trace, as `leaks`, `info` and `report` show it.
#[derive(Debug, Clone)]
pub struct ProcessReport<'a> {
    pub process: &'a ProcessOutput,
    /// Its own replay (the total's when it is the only process).
    pub replay: &'a ReplayOutput,
    /// Blocks it allocated and freed (realloc counts on both sides).
    pub allocations: u64,
    pub frees: u64,
    /// Its candidates, on its own time axis, all of them.
    pub leaks: LeakReport,
}

/// Every process replayed, in order of appearance, with its own candidates.
pub fn processes(a: &Analysis) -> Vec<ProcessReport<'_>> {
    a.replay
        .processes
        .iter()
        .map(|p| {
            let replay = p.replay.as_ref().unwrap_or(&a.replay);
            let sum =
                |f: fn(&StackRow) -> u64| replay.rows.iter().map(f).fold(0, u64::saturating_add);
            ProcessReport {
                process: p,
                replay,
                allocations: sum(|r| r.allocations),
                frees: sum(|r| r.frees),
                leaks: leaks_in(a, replay, None),
            }
        })
        .collect()
}

/// For each stack id, the PIDs of the processes where it holds unfreed bytes (or blocks), in
/// order of appearance.
pub fn pids_by_stack(a: &Analysis) -> BTreeMap<u32, Vec<u32>> {
    let mut m: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
    for p in &a.replay.processes {
        let replay = p.replay.as_ref().unwrap_or(&a.replay);
        for r in &replay.rows {
            if r.unfreed_bytes > 0 || r.unfreed_allocations > 0 {
                m.entry(r.stack_id).or_default().push(p.facts.pid);
            }
        }
    }
    m
}

/// Text labels for every stack row of the whole trace (verdict only for stacks with unfreed
/// bytes, as [`leaks`] gives it).
pub fn row_labels(a: &Analysis, rows: &[StackRow]) -> Vec<RowLabels> {
    let by_process = process_verdicts(a);
    rows.iter()
        .map(|r| {
            let frames = a.symbols.resolve(r.stack_id);
            let (verdict, reason) = if r.unfreed_bytes > 0 || r.unfreed_allocations > 0 {
                let c = classify_total(a, &by_process, r);
                (c.verdict.name().to_owned(), c.reason)
            } else {
                (String::new(), String::new())
            };
            RowLabels {
                verdict,
                reason,
                top_function: frames
                    .first()
                    .map(|f| f.function.clone())
                    .unwrap_or_default(),
                frames: frames
                    .iter()
                    .map(frame_label)
                    .collect::<Vec<_>>()
                    .join(" <- "),
            }
        })
        .collect()
}

/// Call counts by C function name, every name present.
pub fn calls(a: &Analysis) -> BTreeMap<&'static str, u64> {
    let s = &a.replay.stats;
    let mut m = BTreeMap::new();
    for api in AllocApi::ALL {
        m.insert(api.name(), s.alloc_calls[api as usize]);
    }
    for api in FreeApi::ALL {
        m.insert(api.name(), s.free_calls[api as usize]);
    }
    m
}

/// Which stacks a lifetimes query covers.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    pub stack: Option<u32>,
    pub function: Option<String>,
}

/// The lifetimes report.
#[derive(Debug, Clone)]
pub struct Lifetimes {
    pub stacks: Vec<u32>,
    pub allocations: u64,
    pub freed: u64,
    pub never_freed: u64,
    /// Freed blocks per lifetime class (see `aggregate::LIFETIME_CLASS_LABELS`).
    pub classes: [u64; 12],
    /// Allocations per size class (see `aggregate::size_class_label`).
    pub sizes: Vec<u64>,
    pub histogram: LogHistogram,
}

/// A histogram as (label, count) rows, in bar order.
pub type LabeledRows = Vec<(String, u64)>;

impl Lifetimes {
    /// The two labeled histograms the renderers draw side by side: lifetime classes plus
    /// "never freed", and size classes.
    pub fn labeled_rows(&self) -> (LabeledRows, LabeledRows) {
        let mut lifetimes: LabeledRows = crate::aggregate::LIFETIME_CLASS_LABELS
            .iter()
            .zip(self.classes)
            .map(|(label, n)| ((*label).to_owned(), n))
            .collect();
        lifetimes.push(("never freed".into(), self.never_freed));
        let sizes = self
            .sizes
            .iter()
            .enumerate()
            .map(|(i, &n)| (crate::aggregate::size_class_label(i), n))
            .collect();
        (lifetimes, sizes)
    }
}

pub fn lifetimes(a: &Analysis, sel: &Selection) -> Result<Lifetimes> {
    let rows: Vec<&StackRow> = match (&sel.stack, &sel.function) {
        (Some(id), _) => {
            let r = a
                .replay
                .rows
                .iter()
                .find(|r| r.stack_id == *id)
                .ok_or_else(|| {
                    Error::Invalid(format!("stack {id} allocated nothing in this trace"))
                })?;
            vec![r]
        }
        (None, Some(name)) => {
            let matches = |exact: bool| -> Vec<&StackRow> {
                a.replay
                    .rows
                    .iter()
                    .filter(|r| {
                        a.symbols.resolve(r.stack_id).iter().any(|f| {
                            if exact {
                                f.function == *name
                            } else {
                                f.function.contains(name.as_str())
                            }
                        })
                    })
                    .collect()
            };
            let mut rows = matches(true);
            if rows.is_empty() {
                rows = matches(false);
            }
            if rows.is_empty() {
                return Err(Error::Invalid(format!(
                    "no allocating stack has a frame in a function named {name:?}"
                )));
            }
            rows
        }
        (None, None) => a.replay.rows.iter().collect(),
    };
    let mut out = Lifetimes {
        stacks: rows.iter().map(|r| r.stack_id).collect(),
        allocations: 0,
        freed: 0,
        never_freed: 0,
        classes: [0; 12],
        sizes: vec![0; SIZE_CLASSES],
        histogram: LogHistogram::default(),
    };
    for r in rows {
        out.allocations = out.allocations.saturating_add(r.allocations);
        out.freed = out.freed.saturating_add(r.frees);
        out.never_freed = out.never_freed.saturating_add(r.live_allocations);
        for (o, c) in out.classes.iter_mut().zip(r.lifetime_classes) {
            *o = o.saturating_add(c);
        }
        for (o, c) in out.sizes.iter_mut().zip(&r.sizes) {
            *o = o.saturating_add(*c);
        }
        out.histogram.merge(&r.lifetimes);
    }
    let used = out.sizes.iter().rposition(|&c| c > 0).map_or(0, |i| i + 1);
    out.sizes.truncate(used);
    Ok(out)
}

/// Bounds of lifetime class `i` in ns: `(low, high)`, `high == None` for the last.
pub fn lifetime_class_bounds(i: usize) -> (u64, Option<u64>) {
    let low = if i == 0 {
        0
    } else {
        LIFETIME_CLASS_BOUNDS_NS[i - 1]
    };
    (low, LIFETIME_CLASS_BOUNDS_NS.get(i).copied())
}
