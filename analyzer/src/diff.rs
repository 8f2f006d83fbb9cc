//! Comparing two traces stack by stack: what grew, what shrank, what is new, what is gone.
//!
//! Owns the matching of stacks across traces, the per-stack comparison, the ranking and the
//! growth gate. Must not print: `render/` turns a [`Diff`] into a table, JSON, CSV or a
//! differential flame graph.
//!
//! Stacks are matched by their symbolized frames, `function` and module basename for each frame
//! innermost first, never by address: ASLR moves every address between two runs of the same
//! binary, and a rebuild moves code inside it. A frame without a symbol is matched by module and
//! offset (`libc.so.6+0x891f5`), which is stable across runs of the same build; a frame outside
//! any known module keeps its raw address and only matches itself. Several stacks of one trace
//! with the same key (two call sites in one function, say) are merged into one.
//!
//! Besides the whole traces, processes are compared pairwise (format 1.1): matched by command
//! (`argv[0]`'s file name and the arguments), never by PID, which differs from run to run; the
//! processes sharing a command are paired in order of appearance. Two single-process traces
//! pair their processes whatever their commands. The growth gate judges the whole traces.

use std::collections::BTreeMap;

use crate::aggregate::{IntMap, StackRow};
use crate::analysis::Analysis;
use crate::error::{Error, Result};
use crate::replay::{ProcessOutput, ReplayOutput};
use crate::report::{classify_row_in, process_verdicts, scaled_row};
use crate::symbols::Frame;
use crate::verdict::{Classification, Verdict};

/// How the two traces' numbers are put side by side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Normalize {
    /// Totals: bytes and counts as recorded.
    #[default]
    None,
    /// Per second of the process's activity in each trace, so traces of different lengths
    /// compare fairly.
    Duration,
}

/// One `--fail-on-growth` limit: a stack crosses it when its unfreed bytes grew by more.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Threshold {
    /// Growth in bytes (bytes per second with `--normalize duration`).
    Bytes(u64),
    /// Growth relative to BASE, in percent. A stack with nothing unfreed in BASE that has
    /// unfreed bytes in NEW grew by an infinite percentage.
    Percent(f64),
}

impl Threshold {
    /// Parses `BYTES` (`65536`, `64K`, `1.5M`, `2G`: binary units) or `PCT%` (`10%`, `2.5%`).
    pub fn parse(text: &str) -> std::result::Result<Threshold, String> {
        let t = text.trim();
        if let Some(pct) = t.strip_suffix('%') {
            let p: f64 = pct
                .trim()
                .parse()
                .map_err(|_| format!("growth threshold {text:?}: {pct:?} is not a percentage"))?;
            if !p.is_finite() || p < 0.0 {
                return Err(format!(
                    "growth threshold {text:?}: the percentage must be 0 or more"
                ));
            }
            return Ok(Threshold::Percent(p));
        }
        memtrail_format::units::parse_bytes(t)
            .map(Threshold::Bytes)
            .map_err(|e| format!("growth threshold {text:?}: {e}; or give a percentage like 10%"))
    }

    /// How it reads in messages: `+64.0 KiB`, `+64.0 KiB/s`, `+10%`.
    pub fn describe(&self, normalize: Normalize) -> String {
        match self {
            Threshold::Bytes(b) => format!(
                "+{}{}",
                memtrail_format::units::format_bytes(*b),
                if normalize == Normalize::Duration {
                    "/s"
                } else {
                    ""
                }
            ),
            Threshold::Percent(p) => format!("+{p}%"),
        }
    }
}

/// Options of a comparison.
#[derive(Debug, Clone, Default)]
pub struct DiffOptions {
    pub normalize: Normalize,
    /// The growth gate: a stack crosses it when it passes every threshold. Empty: no gate.
    pub thresholds: Vec<Threshold>,
}

/// Where a stack stands in NEW against BASE.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Allocated in NEW only.
    New,
    /// More unfreed in NEW.
    Grown,
    /// As much unfreed in both.
    Unchanged,
    /// Less unfreed in NEW.
    Shrunk,
    /// Allocated in BASE only.
    Gone,
}

impl Status {
    pub fn name(self) -> &'static str {
        match self {
            Status::New => "new",
            Status::Grown => "grown",
            Status::Unchanged => "unchanged",
            Status::Shrunk => "shrunk",
            Status::Gone => "gone",
        }
    }
}

/// One stack (all stacks of a trace with its key, merged) in one trace.
#[derive(Debug, Clone)]
pub struct Side {
    /// The trace's stack ids merged here.
    pub stack_ids: Vec<u32>,
    /// Their rows summed, scaled for sampling.
    pub row: StackRow,
    /// Seconds of activity of the trace (the rates' denominator).
    pub active_seconds: f64,
    /// The verdict on the merged curve, when anything is unfreed.
    pub verdict: Option<Verdict>,
    pub reason: String,
}

impl Side {
    /// `value` per second of activity; `None` for a trace with no measurable duration.
    pub fn per_second(&self, value: u64) -> Option<f64> {
        (self.active_seconds > 0.0).then(|| value as f64 / self.active_seconds)
    }

    pub fn allocations_per_second(&self) -> Option<f64> {
        self.per_second(self.row.allocations)
    }

    pub fn allocated_bytes_per_second(&self) -> Option<f64> {
        self.per_second(self.row.allocated_bytes)
    }

    pub fn unfreed_bytes_per_second(&self) -> Option<f64> {
        self.per_second(self.row.unfreed_bytes)
    }
}

/// One matched stack.
#[derive(Debug, Clone)]
pub struct StackDiff {
    /// 1-based, by growth, largest first.
    pub rank: usize,
    pub status: Status,
    /// The matching key shown to people: `function [module]` per frame, innermost first,
    /// joined with ` <- `.
    pub key: String,
    /// Frames as NEW resolves them (BASE for a gone stack), innermost first.
    pub frames: Vec<Frame>,
    pub base: Option<Side>,
    pub new: Option<Side>,
    /// The compared quantity in NEW minus BASE: unfreed bytes, or unfreed bytes per second
    /// with [`Normalize::Duration`].
    pub growth: f64,
    /// `growth` relative to BASE in percent; `None` when BASE had nothing unfreed.
    pub growth_pct: Option<f64>,
    /// True when the growth passed every threshold of the gate.
    pub crossed: bool,
}

impl StackDiff {
    /// The compared quantity in BASE.
    pub fn base_value(&self, normalize: Normalize) -> f64 {
        compared(self.base.as_ref(), normalize)
    }

    /// The compared quantity in NEW.
    pub fn new_value(&self, normalize: Normalize) -> f64 {
        compared(self.new.as_ref(), normalize)
    }

    /// The innermost function, for one-line mentions.
    pub fn top_function(&self) -> &str {
        self.frames.first().map_or("", |f| f.function.as_str())
    }
}

/// What a comparison says about one trace as a whole.
#[derive(Debug, Clone)]
pub struct TraceSummary {
    pub path: std::path::PathBuf,
    pub command: String,
    pub duration_ns: u64,
    /// The span the rates divide by: the process's activity, else the trace's duration.
    pub active_ns: u64,
    pub lost_events: u64,
    pub truncated: bool,
    pub sample_bytes: u64,
    pub unfreed_bytes: u64,
    pub unfreed_allocations: u64,
    /// Distinct stack keys that allocated or released anything.
    pub stacks: usize,
}

/// The gate's outcome.
#[derive(Debug, Clone)]
pub struct GateResult {
    pub thresholds: Vec<Threshold>,
    /// Ranks of the stacks that crossed, in rank order.
    pub crossed: Vec<usize>,
}

impl GateResult {
    pub fn passed(&self) -> bool {
        self.crossed.is_empty()
    }
}

/// Counts of stacks per status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct StatusCounts {
    pub new: usize,
    pub grown: usize,
    pub unchanged: usize,
    pub shrunk: usize,
    pub gone: usize,
}

/// A comparison of NEW against BASE.
#[derive(Debug, Clone)]
pub struct Diff {
    pub base: TraceSummary,
    pub new: TraceSummary,
    pub normalize: Normalize,
    pub min_age_ns: u64,
    /// Every stack of either trace, ranked.
    pub stacks: Vec<StackDiff>,
    pub counts: StatusCounts,
    /// `None` when no threshold was given.
    pub gate: Option<GateResult>,
    /// The processes of both traces, paired by command (see the module docs), in order of
    /// appearance in NEW, then BASE's unpaired ones.
    pub processes: Vec<ProcessDiff>,
}

/// One process in one trace of a comparison.
#[derive(Debug, Clone)]
pub struct ProcessSide {
    pub pid: u32,
    pub parent_pid: u32,
    pub command_line: Vec<String>,
    pub events: u64,
    pub unfreed_bytes: u64,
    pub unfreed_allocations: u64,
}

/// A pair of processes (or one with no counterpart) and their stacks compared.
#[derive(Debug, Clone)]
pub struct ProcessDiff {
    /// What they were matched by: `argv[0]`'s file name and the arguments.
    pub command: String,
    /// 1 for the first process with this command in its trace, 2 for the second...
    pub occurrence: usize,
    pub base: Option<ProcessSide>,
    pub new: Option<ProcessSide>,
    /// `New` (NEW only), `Gone` (BASE only), else by its unfreed bytes' change.
    pub status: Status,
    /// Compared quantity (as for stacks) of NEW minus BASE, over the process's stacks.
    pub growth: f64,
    /// Its stacks, compared as the whole traces' are (not gated).
    pub stacks: Vec<StackDiff>,
    pub counts: StatusCounts,
}

impl ProcessDiff {
    /// `server --workers 4 #2`: the label reports and the CSV's `process` column use.
    pub fn label(&self) -> String {
        format!("{} #{}", self.command, self.occurrence)
    }
}

impl Diff {
    /// The stacks that crossed the gate, in rank order.
    pub fn crossed(&self) -> impl Iterator<Item = &StackDiff> {
        self.stacks.iter().filter(|s| s.crossed)
    }

    /// The stacks whose unfreed bytes changed (new and gone ones with something unfreed
    /// included), in rank order.
    pub fn changed(&self) -> impl Iterator<Item = &StackDiff> {
        self.stacks.iter().filter(|s| s.growth != 0.0)
    }

    /// Total compared quantity (unfreed bytes, or per second) of BASE and NEW.
    pub fn totals(&self) -> (f64, f64) {
        let n = self.normalize;
        (
            self.stacks.iter().map(|s| s.base_value(n)).sum(),
            self.stacks.iter().map(|s| s.new_value(n)).sum(),
        )
    }
}

/// The key of one frame: what survives ASLR and rebuilds.
pub fn frame_key(f: &Frame) -> String {
    // The function of an unsymbolized frame is already `module+0xoffset` (or the raw address
    // when no module is known), see `symbols::SymbolTable::resolve`.
    match &f.module {
        Some(m) => format!("{} [{m}]", f.function),
        None => f.function.clone(),
    }
}

/// The key of a stack: its frames' keys, innermost first.
pub fn stack_key(frames: &[Frame]) -> String {
    frames
        .iter()
        .map(frame_key)
        .collect::<Vec<_>>()
        .join(" <- ")
}

fn active_ns(a: &Analysis) -> u64 {
    active_ns_of(&a.replay)
}

fn active_ns_of(r: &ReplayOutput) -> u64 {
    let active = r.active_end_ns.saturating_sub(r.active_start_ns);
    if active > 0 { active } else { r.duration_ns }
}

/// Every stack of `a` by key: frames, stack ids, rows (scaled).
struct Grouped {
    frames: Vec<Frame>,
    ids: Vec<u32>,
    rows: Vec<StackRow>,
    /// The strongest verdict its stacks have in a process, for the whole trace of several
    /// processes (see `report::process_verdicts`).
    verdict: Option<Classification>,
}

/// `replay`'s stacks by key. `verdicts`: the whole trace's verdicts from its processes, when
/// `replay` is the whole trace's (empty for a process's own replay).
fn group(
    a: &Analysis,
    replay: &ReplayOutput,
    verdicts: &IntMap<u32, Classification>,
) -> BTreeMap<String, Grouped> {
    let mut out: BTreeMap<String, Grouped> = BTreeMap::new();
    for row in &replay.rows {
        let frames = a.symbols.resolve(row.stack_id);
        let key = stack_key(&frames);
        let g = out.entry(key).or_insert_with(|| Grouped {
            frames,
            ids: Vec::new(),
            rows: Vec::new(),
            verdict: None,
        });
        g.ids.push(row.stack_id);
        g.rows.push(scaled_row(a, row));
        if let Some(c) = verdicts.get(&row.stack_id)
            && g.verdict
                .as_ref()
                .is_none_or(|v| c.verdict.strength() > v.verdict.strength())
        {
            g.verdict = Some(c.clone());
        }
    }
    out
}

/// Sums rows of one trace (same time axis): counts and bytes added, histograms and curves
/// merged, percentiles read again from the merged histogram.
pub fn merge_rows(rows: &[StackRow]) -> Option<StackRow> {
    let (first, rest) = rows.split_first()?;
    let mut m = first.clone();
    // Byte counts come from the trace: saturate, as the replay does, rather than overflow.
    for r in rest {
        for (a, b) in [
            (&mut m.allocations, r.allocations),
            (&mut m.allocated_bytes, r.allocated_bytes),
            (&mut m.frees, r.frees),
            (&mut m.freed_bytes, r.freed_bytes),
            (&mut m.live_allocations, r.live_allocations),
            (&mut m.live_bytes, r.live_bytes),
            (&mut m.unfreed_allocations, r.unfreed_allocations),
            (&mut m.unfreed_bytes, r.unfreed_bytes),
            // Peaks of different stacks need not coincide: the sum is an upper bound.
            (&mut m.peak_bytes, r.peak_bytes),
        ] {
            *a = a.saturating_add(b);
        }
        m.last_alloc_ns = m.last_alloc_ns.max(r.last_alloc_ns);
        m.lifetimes.merge(&r.lifetimes);
        for (a, b) in m.lifetime_classes.iter_mut().zip(r.lifetime_classes) {
            *a = a.saturating_add(b);
        }
        if m.sizes.len() < r.sizes.len() {
            m.sizes.resize(r.sizes.len(), 0);
        }
        for (a, b) in m.sizes.iter_mut().zip(&r.sizes) {
            *a = a.saturating_add(*b);
        }
        if m.unfreed_over_time.len() < r.unfreed_over_time.len() {
            m.unfreed_over_time.resize(r.unfreed_over_time.len(), 0);
        }
        for (a, b) in m.unfreed_over_time.iter_mut().zip(&r.unfreed_over_time) {
            *a = a.saturating_add(*b);
        }
    }
    m.first_alloc_ns = rows
        .iter()
        .filter(|r| r.allocations > 0)
        .map(|r| r.first_alloc_ns)
        .min()
        .unwrap_or(0);
    m.stack_id = rows.iter().map(|r| r.stack_id).min().unwrap_or(m.stack_id);
    m.lifetime_p50_ns = m.lifetimes.quantile(0.50);
    m.lifetime_p90_ns = m.lifetimes.quantile(0.90);
    m.lifetime_p99_ns = m.lifetimes.quantile(0.99);
    m.lifetime_max_ns = m.lifetimes.max();
    Some(m)
}

fn side(replay: &ReplayOutput, g: Grouped) -> Option<(Vec<Frame>, Side)> {
    let row = merge_rows(&g.rows)?;
    let (verdict, reason) = if row.unfreed_bytes > 0 || row.unfreed_allocations > 0 {
        let c = g.verdict.unwrap_or_else(|| classify_row_in(replay, &row));
        (Some(c.verdict), c.reason)
    } else {
        (None, String::new())
    };
    Some((
        g.frames,
        Side {
            stack_ids: g.ids,
            row,
            active_seconds: active_ns_of(replay) as f64 / 1e9,
            verdict,
            reason,
        },
    ))
}

fn compared(side: Option<&Side>, normalize: Normalize) -> f64 {
    match (side, normalize) {
        (None, _) => 0.0,
        (Some(s), Normalize::None) => s.row.unfreed_bytes as f64,
        (Some(s), Normalize::Duration) => s.unfreed_bytes_per_second().unwrap_or(0.0),
    }
}

/// Whether a growth passes every threshold (and there is at least one, and it is a growth).
pub fn crosses(thresholds: &[Threshold], growth: f64, growth_pct: Option<f64>) -> bool {
    !thresholds.is_empty()
        && growth > 0.0
        && thresholds.iter().all(|t| match *t {
            Threshold::Bytes(b) => growth > b as f64,
            Threshold::Percent(p) => growth_pct.is_none_or(|g| g > p),
        })
}

fn summary(a: &Analysis, stacks: usize) -> TraceSummary {
    let (unfreed_bytes, unfreed_allocations) =
        a.replay.rows.iter().fold((0u64, 0u64), |(b, n), r| {
            let s = scaled_row(a, r);
            (
                b.saturating_add(s.unfreed_bytes),
                n.saturating_add(s.unfreed_allocations),
            )
        });
    TraceSummary {
        path: a.path.clone(),
        command: a.command(),
        duration_ns: a.replay.duration_ns,
        active_ns: active_ns(a),
        lost_events: a.replay.stats.lost_events,
        truncated: a.truncation.is_some(),
        sample_bytes: a.meta.sample_bytes,
        unfreed_bytes,
        unfreed_allocations,
        stacks,
    }
}

/// Compares NEW against BASE. Both analyses should use the same `--min-age`.
///
/// Fails only when `--normalize duration` is asked of a trace with no measurable duration.
/// Every stack of two replays matched by key and compared, ranked by growth; `thresholds`
/// marks the ones crossing the gate. Returns them and the counts per status.
fn compare_stacks(
    base: (&ReplayOutput, BTreeMap<String, Grouped>),
    new: (&ReplayOutput, BTreeMap<String, Grouped>),
    n: Normalize,
    thresholds: &[Threshold],
) -> (Vec<StackDiff>, StatusCounts) {
    let (base_replay, mut base_groups) = base;
    let (new_replay, new_groups) = new;
    let mut stacks = Vec::with_capacity(base_groups.len().max(new_groups.len()));
    for (key, g) in new_groups {
        let b = base_groups.remove(&key).and_then(|g| side(base_replay, g));
        let Some((frames, new_side)) = side(new_replay, g) else {
            continue;
        };
        stacks.push(build(key, frames, b.map(|(_, s)| s), Some(new_side), n));
    }
    for (key, g) in base_groups {
        if let Some((frames, s)) = side(base_replay, g) {
            stacks.push(build(key, frames, Some(s), None, n));
        }
    }
    stacks.sort_by(|x, y| {
        y.growth
            .total_cmp(&x.growth)
            .then(x.status.cmp(&y.status))
            .then_with(|| x.key.cmp(&y.key))
    });
    let mut counts = StatusCounts::default();
    for (i, s) in stacks.iter_mut().enumerate() {
        s.rank = i + 1;
        s.crossed = crosses(thresholds, s.growth, s.growth_pct);
        match s.status {
            Status::New => counts.new += 1,
            Status::Grown => counts.grown += 1,
            Status::Unchanged => counts.unchanged += 1,
            Status::Shrunk => counts.shrunk += 1,
            Status::Gone => counts.gone += 1,
        }
    }
    (stacks, counts)
}

/// A process of `a` as a comparison shows it, with its replay.
fn process_side<'a>(a: &'a Analysis, p: &'a ProcessOutput) -> (ProcessSide, &'a ReplayOutput) {
    let replay = p.replay.as_ref().unwrap_or(&a.replay);
    let (unfreed_bytes, unfreed_allocations) =
        replay.rows.iter().fold((0u64, 0u64), |(b, n), r| {
            let s = scaled_row(a, r);
            (
                b.saturating_add(s.unfreed_bytes),
                n.saturating_add(s.unfreed_allocations),
            )
        });
    (
        ProcessSide {
            pid: p.facts.pid,
            parent_pid: p.facts.parent_pid,
            command_line: p.facts.command_line.clone(),
            events: p.events,
            unfreed_bytes,
            unfreed_allocations,
        },
        replay,
    )
}

/// The processes of both traces paired by command, in order of appearance (see the module
/// docs), each pair's stacks compared.
fn compare_processes(base: &Analysis, new: &Analysis, n: Normalize) -> Vec<ProcessDiff> {
    let keyed = |a: &Analysis| -> Vec<(String, usize)> {
        let mut seen: BTreeMap<String, usize> = BTreeMap::new();
        a.replay
            .processes
            .iter()
            .map(|p| {
                let key = p.facts.match_key();
                let k = seen.entry(key.clone()).or_default();
                *k += 1;
                (key, *k)
            })
            .collect()
    };
    let (base_keys, mut new_keys) = (keyed(base), keyed(new));
    let single = base.replay.processes.len() == 1 && new.replay.processes.len() == 1;
    if single {
        // One process each: the same program, whatever its command line.
        new_keys[0] = base_keys[0].clone();
    }
    let mut paired_base = vec![false; base_keys.len()];
    let mut pairs: Vec<(Option<usize>, Option<usize>)> = Vec::new();
    for (j, key) in new_keys.iter().enumerate() {
        let i = base_keys.iter().position(|k| k == key);
        if let Some(i) = i {
            paired_base[i] = true;
        }
        pairs.push((i, Some(j)));
    }
    pairs.extend(
        paired_base
            .iter()
            .enumerate()
            .filter(|(_, paired)| !**paired)
            .map(|(i, _)| (Some(i), None)),
    );
    pairs
        .into_iter()
        .map(|(i, j)| {
            let b = i.map(|i| process_side(base, &base.replay.processes[i]));
            let nw = j.map(|j| process_side(new, &new.replay.processes[j]));
            let (command, occurrence) = match (i, j) {
                (_, Some(j)) => new_keys[j].clone(),
                (Some(i), None) => base_keys[i].clone(),
                (None, None) => (String::new(), 0),
            };
            let groups = |side: &Option<(ProcessSide, &ReplayOutput)>, a: &Analysis| {
                side.as_ref()
                    .map(|(_, r)| group(a, r, &IntMap::default()))
                    .unwrap_or_default()
            };
            let empty = ReplayOutput::empty();
            let (stacks, counts) = compare_stacks(
                (b.as_ref().map_or(&empty, |(_, r)| r), groups(&b, base)),
                (nw.as_ref().map_or(&empty, |(_, r)| r), groups(&nw, new)),
                n,
                &[],
            );
            let growth: f64 = stacks
                .iter()
                .map(|s| s.new_value(n) - s.base_value(n))
                .sum();
            let status = match (&b, &nw) {
                (None, _) => Status::New,
                (_, None) => Status::Gone,
                _ if growth > 0.0 => Status::Grown,
                _ if growth < 0.0 => Status::Shrunk,
                _ => Status::Unchanged,
            };
            ProcessDiff {
                command,
                occurrence,
                base: b.map(|(s, _)| s),
                new: nw.map(|(s, _)| s),
                status,
                growth,
                stacks,
                counts,
            }
        })
        .collect()
}

pub fn diff(base: &Analysis, new: &Analysis, options: &DiffOptions) -> Result<Diff> {
    if options.normalize == Normalize::Duration {
        for a in [base, new] {
            if active_ns(a) == 0 {
                return Err(Error::Invalid(format!(
                    "{}: the trace has no duration to normalize by; compare totals (without --normalize)",
                    a.path.display()
                )));
            }
        }
    }
    let base_groups = group(base, &base.replay, &process_verdicts(base));
    let new_groups = group(new, &new.replay, &process_verdicts(new));
    let base_summary = summary(base, base_groups.len());
    let new_summary = summary(new, new_groups.len());
    let (stacks, counts) = compare_stacks(
        (&base.replay, base_groups),
        (&new.replay, new_groups),
        options.normalize,
        &options.thresholds,
    );
    let gate = (!options.thresholds.is_empty()).then(|| GateResult {
        thresholds: options.thresholds.clone(),
        crossed: stacks
            .iter()
            .filter(|s| s.crossed)
            .map(|s| s.rank)
            .collect(),
    });
    Ok(Diff {
        base: base_summary,
        new: new_summary,
        normalize: options.normalize,
        min_age_ns: new.replay.options.min_age_ns,
        stacks,
        counts,
        gate,
        processes: compare_processes(base, new, options.normalize),
    })
}

fn build(
    key: String,
    frames: Vec<Frame>,
    base: Option<Side>,
    new: Option<Side>,
    n: Normalize,
) -> StackDiff {
    let (b, v) = (compared(base.as_ref(), n), compared(new.as_ref(), n));
    let growth = v - b;
    let status = match (&base, &new) {
        (None, _) => Status::New,
        (_, None) => Status::Gone,
        _ if growth > 0.0 => Status::Grown,
        _ if growth < 0.0 => Status::Shrunk,
        _ => Status::Unchanged,
    };
    StackDiff {
        rank: 0,
        status,
        key,
        frames,
        base,
        new,
        growth,
        growth_pct: (b > 0.0).then(|| growth / b * 100.0),
        crossed: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_parse() {
        assert_eq!(Threshold::parse("65536"), Ok(Threshold::Bytes(65536)));
        assert_eq!(Threshold::parse("64K"), Ok(Threshold::Bytes(65536)));
        assert_eq!(Threshold::parse("1.5M"), Ok(Threshold::Bytes(1_572_864)));
        assert_eq!(Threshold::parse("10%"), Ok(Threshold::Percent(10.0)));
        assert_eq!(Threshold::parse("2.5 %"), Ok(Threshold::Percent(2.5)));
        assert!(Threshold::parse("-3%").is_err());
        assert!(Threshold::parse("ten").is_err());
        assert!(Threshold::parse("5 parsecs").is_err());
    }

    #[test]
    fn gate_needs_every_threshold() {
        let both = [Threshold::Bytes(1000), Threshold::Percent(50.0)];
        assert!(crosses(&both, 2000.0, Some(100.0)));
        assert!(!crosses(&both, 2000.0, Some(10.0)));
        assert!(!crosses(&both, 500.0, Some(100.0)));
        // From nothing: an infinite percentage.
        assert!(crosses(&both, 2000.0, None));
        assert!(!crosses(&both, -2000.0, None));
        assert!(!crosses(&[], 1e9, None));
        // Strictly past the line.
        assert!(!crosses(&[Threshold::Bytes(1000)], 1000.0, None));
    }
}
