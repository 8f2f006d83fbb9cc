//! JSON output. The field names here are a public contract (scripts and CI jobs read them):
//! add fields freely, never rename or remove one.
//!
//! The contract, every key of every command, is docs/json.md; analyzer/tests/json_contract.rs
//! checks each documented key against the output. Times are nanoseconds since the
//! start of the trace; sizes are bytes. Strings hold the trace's raw text: DEL, C1 controls
//! and bidi overrides are `\uXXXX` escapes, which parse back to the same characters.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::aggregate::{LIFETIME_CLASS_LABELS, TimeAxis, size_class_label};
use crate::analysis::Analysis;
use crate::diff;
use crate::replay::RssSample;
use crate::report::{self, LeakReport, Lifetimes, calls, lifetime_class_bounds};
use crate::symbols::Frame;

#[derive(Serialize)]
struct Exit {
    time_ns: u64,
    code: Option<i32>,
    signal: Option<i32>,
}

#[derive(Serialize)]
struct EndTotals {
    time_ns: u64,
    allocations: u64,
    frees: u64,
    reallocs: u64,
    lost: u64,
}

#[derive(Serialize)]
struct Info<'a> {
    trace: String,
    format_version: String,
    tool_version: &'a str,
    host_name: &'a str,
    kernel_release: &'a str,
    pid: u32,
    command_line: &'a [String],
    start_wall_ns: u64,
    page_size: u32,
    sample_bytes: u64,
    duration_ns: u64,
    active_start_ns: u64,
    active_end_ns: u64,
    events: u64,
    calls: BTreeMap<&'static str, u64>,
    unmatched_frees: u64,
    unmatched_munmaps: u64,
    failed_allocations: u64,
    failed_reallocs: u64,
    reused_live_addresses: u64,
    lost_events: u64,
    lost_by_reason: &'a BTreeMap<&'static str, u64>,
    /// A sum of sizes or counts from the trace stopped at 2^64 - 1 (see the warning).
    saturated: bool,
    truncated: bool,
    truncation: Option<String>,
    peak_heap_bytes: u64,
    peak_heap_time_ns: u64,
    live_bytes_at_end: u64,
    live_allocations_at_end: u64,
    rss_samples: usize,
    peak_rss_bytes: Option<u64>,
    stacks: usize,
    modules: usize,
    symbols: usize,
    exit: Option<Exit>,
    end: Option<EndTotals>,
    extra: BTreeMap<&'a str, &'a str>,
    processes: Vec<ProcessJson<'a>>,
    unfollowed: Vec<UnfollowedJson<'a>>,
    /// The recorder could not follow the processes the traced ones started (see the warning).
    follow_unavailable: bool,
    /// Events of processes not replayed (left out by `--pid`, or past the process limit).
    events_not_replayed: u64,
}

/// Pretty JSON, with the characters serde_json leaves raw (DEL, C1 controls, bidi overrides)
/// escaped as `\uXXXX`: strings parse to the trace's raw text.
fn pretty<T: Serialize>(v: &T) -> String {
    // Serializing plain structs of strings and numbers cannot fail.
    let s = serde_json::to_string_pretty(v).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"));
    let mut s = crate::escape::json_document(s);
    s.push('\n');
    s
}

pub fn info(a: &Analysis) -> String {
    let m = &a.meta;
    let s = &a.replay.stats;
    let reports = report::processes(a);
    pretty(&Info {
        trace: a.path.display().to_string(),
        format_version: format!("{}.{}", a.header.major, a.header.minor),
        tool_version: &m.tool_version,
        host_name: &m.host_name,
        kernel_release: &m.kernel_release,
        pid: m.pid,
        command_line: &m.command_line,
        start_wall_ns: m.start_wall_ns,
        page_size: m.page_size,
        sample_bytes: m.sample_bytes,
        duration_ns: a.replay.duration_ns,
        active_start_ns: a.replay.active_start_ns,
        active_end_ns: a.replay.active_end_ns,
        events: s.events,
        calls: calls(a),
        unmatched_frees: s.unmatched_frees,
        unmatched_munmaps: s.unmatched_munmaps,
        failed_allocations: s.failed_allocations,
        failed_reallocs: s.failed_reallocs,
        reused_live_addresses: s.replaced_live,
        lost_events: s.lost_events,
        lost_by_reason: &s.lost_by_reason,
        saturated: s.saturated,
        truncated: a.truncation.is_some(),
        truncation: a.truncation.as_ref().map(|t| t.to_string()),
        peak_heap_bytes: a.replay.peak_bytes,
        peak_heap_time_ns: a.replay.peak_time_ns,
        live_bytes_at_end: a.replay.live_bytes,
        live_allocations_at_end: a.replay.live_allocations,
        rss_samples: s.rss.len(),
        peak_rss_bytes: s.rss.iter().map(|r| r.rss_bytes).max(),
        stacks: a.symbols.stack_count(),
        modules: a.symbols.module_count(),
        symbols: a.symbols.symbol_count(),
        exit: s.exit.map(|(time_ns, code, signal)| Exit {
            time_ns,
            code,
            signal,
        }),
        end: s.end.map(|(time_ns, t)| EndTotals {
            time_ns,
            allocations: t.allocations,
            frees: t.frees,
            reallocs: t.reallocs,
            lost: t.lost,
        }),
        extra: m
            .extra
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect(),
        processes: processes_json(&reports),
        unfollowed: unfollowed_json(a),
        follow_unavailable: a.follow_unavailable(),
        events_not_replayed: s.events_not_replayed,
    })
}

#[derive(Serialize)]
struct Candidate<'a> {
    rank: usize,
    stack_id: u32,
    verdict: &'static str,
    reason: &'a str,
    unfreed_bytes: u64,
    unfreed_allocations: u64,
    live_bytes: u64,
    live_allocations: u64,
    allocations: u64,
    allocated_bytes: u64,
    frees: u64,
    freed_bytes: u64,
    peak_bytes: u64,
    first_alloc_ns: u64,
    last_alloc_ns: u64,
    lifetime_p50_ns: Option<u64>,
    lifetime_p90_ns: Option<u64>,
    lifetime_p99_ns: Option<u64>,
    lifetime_max_ns: Option<u64>,
    /// Live bytes at the end of each bucket of `time_axis`.
    unfreed_over_time: &'a [i64],
    stack_truncated: bool,
    frames: &'a [Frame],
    /// Processes where this stack holds unfreed bytes.
    pids: Vec<u32>,
}

fn candidate<'a>(c: &'a report::Candidate, pids: Vec<u32>) -> Candidate<'a> {
    let s = &c.scaled;
    Candidate {
        rank: c.rank,
        stack_id: c.row.stack_id,
        verdict: c.verdict.name(),
        reason: &c.reason,
        unfreed_bytes: s.unfreed_bytes,
        unfreed_allocations: s.unfreed_allocations,
        live_bytes: s.live_bytes,
        live_allocations: s.live_allocations,
        allocations: s.allocations,
        allocated_bytes: s.allocated_bytes,
        frees: s.frees,
        freed_bytes: s.freed_bytes,
        peak_bytes: s.peak_bytes,
        first_alloc_ns: s.first_alloc_ns,
        last_alloc_ns: s.last_alloc_ns,
        lifetime_p50_ns: s.lifetime_p50_ns,
        lifetime_p90_ns: s.lifetime_p90_ns,
        lifetime_p99_ns: s.lifetime_p99_ns,
        lifetime_max_ns: s.lifetime_max_ns,
        unfreed_over_time: &s.unfreed_over_time,
        stack_truncated: c.stack_truncated,
        frames: &c.frames,
        pids,
    }
}

#[derive(Serialize)]
struct ProcessExit {
    time_ns: u64,
    code: Option<i32>,
    signal: Option<i32>,
}

/// One process: its facts, its totals and its own candidates (on its own time axis).
#[derive(Serialize)]
struct ProcessJson<'a> {
    pid: u32,
    parent_pid: u32,
    origin: &'static str,
    command_line: &'a [String],
    exit: Option<ProcessExit>,
    execs: u32,
    events: u64,
    active_start_ns: u64,
    active_end_ns: u64,
    allocations: u64,
    frees: u64,
    unfreed_bytes: u64,
    unfreed_blocks: u64,
    released_by_exec_bytes: u64,
    released_by_exec_blocks: u64,
    time_axis: TimeAxis,
    candidates: Vec<Candidate<'a>>,
}

#[derive(Serialize)]
struct UnfollowedJson<'a> {
    pid: u32,
    parent_pid: u32,
    reason: &'a str,
    time_ns: u64,
}

fn processes_json<'a>(reports: &'a [report::ProcessReport<'a>]) -> Vec<ProcessJson<'a>> {
    reports
        .iter()
        .map(|p| {
            let f = &p.process.facts;
            ProcessJson {
                pid: f.pid,
                parent_pid: f.parent_pid,
                origin: f.origin.name(),
                command_line: &f.command_line,
                exit: f.exit.map(|e| ProcessExit {
                    time_ns: e.time_ns,
                    code: e.code,
                    signal: e.signal,
                }),
                execs: f.execs,
                events: p.process.events,
                active_start_ns: p.replay.active_start_ns,
                active_end_ns: p.replay.active_end_ns,
                allocations: p.allocations,
                frees: p.frees,
                unfreed_bytes: p.leaks.total_unfreed_bytes,
                unfreed_blocks: p.leaks.total_unfreed_allocations,
                released_by_exec_bytes: p.process.released_by_exec_bytes,
                released_by_exec_blocks: p.process.released_by_exec_blocks,
                time_axis: p.replay.axis,
                candidates: p
                    .leaks
                    .candidates
                    .iter()
                    .map(|c| candidate(c, vec![f.pid]))
                    .collect(),
            }
        })
        .collect()
}

fn unfollowed_json(a: &Analysis) -> Vec<UnfollowedJson<'_>> {
    a.replay
        .unfollowed
        .iter()
        .map(|u| UnfollowedJson {
            pid: u.pid,
            parent_pid: u.parent_pid,
            reason: &u.reason,
            time_ns: u.time_ns,
        })
        .collect()
}

#[derive(Serialize)]
struct Leaks<'a> {
    trace: String,
    command: String,
    duration_ns: u64,
    active_start_ns: u64,
    active_end_ns: u64,
    min_age_ns: u64,
    at_ns: Option<u64>,
    sample_bytes: u64,
    lost_events: u64,
    saturated: bool,
    truncated: bool,
    truncation: Option<String>,
    unmatched_frees: u64,
    total_unfreed_bytes: u64,
    total_unfreed_allocations: u64,
    leak_bytes: u64,
    candidates_total: usize,
    time_axis: TimeAxis,
    candidates: Vec<Candidate<'a>>,
    processes: Vec<ProcessJson<'a>>,
    unfollowed: Vec<UnfollowedJson<'a>>,
    /// The recorder could not follow the processes the traced ones started (see the warning).
    follow_unavailable: bool,
}

pub fn leaks(a: &Analysis, rep: &LeakReport) -> String {
    let r = &a.replay;
    let reports = report::processes(a);
    let pids = report::pids_by_stack(a);
    pretty(&Leaks {
        trace: a.path.display().to_string(),
        command: a.command(),
        duration_ns: r.duration_ns,
        active_start_ns: r.active_start_ns,
        active_end_ns: r.active_end_ns,
        min_age_ns: r.options.min_age_ns,
        at_ns: r.options.at_ns,
        sample_bytes: a.meta.sample_bytes,
        lost_events: r.stats.lost_events,
        saturated: r.stats.saturated,
        truncated: a.truncation.is_some(),
        truncation: a.truncation.as_ref().map(|t| t.to_string()),
        unmatched_frees: r.stats.unmatched_frees,
        total_unfreed_bytes: rep.total_unfreed_bytes,
        total_unfreed_allocations: rep.total_unfreed_allocations,
        leak_bytes: rep.leak_bytes,
        candidates_total: rep.candidates_total,
        time_axis: r.axis,
        candidates: rep
            .candidates
            .iter()
            .map(|c| candidate(c, pids.get(&c.row.stack_id).cloned().unwrap_or_default()))
            .collect(),
        processes: processes_json(&reports),
        unfollowed: unfollowed_json(a),
        follow_unavailable: a.follow_unavailable(),
    })
}

#[derive(Serialize)]
struct LifetimeBucket {
    label: &'static str,
    low_ns: u64,
    /// Exclusive; null for the last bucket.
    high_ns: Option<u64>,
    count: u64,
}

#[derive(Serialize)]
struct SizeBucket {
    label: String,
    /// Inclusive bounds in bytes.
    low_bytes: u64,
    high_bytes: u64,
    count: u64,
}

#[derive(Serialize)]
struct LifetimesJson<'a> {
    trace: String,
    lost_events: u64,
    truncated: bool,
    selection: &'a str,
    stacks: &'a [u32],
    allocations: u64,
    freed: u64,
    never_freed: u64,
    lifetime_p50_ns: Option<u64>,
    lifetime_p90_ns: Option<u64>,
    lifetime_p99_ns: Option<u64>,
    lifetime_max_ns: Option<u64>,
    lifetimes: Vec<LifetimeBucket>,
    sizes: Vec<SizeBucket>,
}

/// Inclusive byte bounds of size class `i`.
pub fn size_class_bounds(i: usize) -> (u64, u64) {
    match i {
        0 => (0, 1),
        i if i >= 64 => (1 << 63, u64::MAX),
        i => ((1u64 << (i - 1)) + 1, 1u64 << i),
    }
}

pub fn lifetimes(a: &Analysis, l: &Lifetimes, selection: &str) -> String {
    pretty(&LifetimesJson {
        trace: a.path.display().to_string(),
        lost_events: a.replay.stats.lost_events,
        truncated: a.truncation.is_some(),
        selection,
        stacks: &l.stacks,
        allocations: l.allocations,
        freed: l.freed,
        never_freed: l.never_freed,
        lifetime_p50_ns: l.histogram.quantile(0.5),
        lifetime_p90_ns: l.histogram.quantile(0.9),
        lifetime_p99_ns: l.histogram.quantile(0.99),
        lifetime_max_ns: l.histogram.max(),
        lifetimes: LIFETIME_CLASS_LABELS
            .iter()
            .enumerate()
            .map(|(i, label)| {
                let (low_ns, high_ns) = lifetime_class_bounds(i);
                LifetimeBucket {
                    label,
                    low_ns,
                    high_ns,
                    count: l.classes[i],
                }
            })
            .collect(),
        sizes: l
            .sizes
            .iter()
            .enumerate()
            .map(|(i, &count)| {
                let (low_bytes, high_bytes) = size_class_bounds(i);
                SizeBucket {
                    label: size_class_label(i),
                    low_bytes,
                    high_bytes,
                    count,
                }
            })
            .collect(),
    })
}

#[derive(Serialize)]
struct Timeline<'a> {
    trace: String,
    lost_events: u64,
    truncated: bool,
    duration_ns: u64,
    time_axis: TimeAxis,
    /// Highest live heap bytes (malloc family and mmap) in each bucket.
    heap_bytes: &'a [i64],
    peak_heap_bytes: u64,
    peak_heap_time_ns: u64,
    rss: &'a [RssSample],
}

pub fn timeline(a: &Analysis) -> String {
    let r = &a.replay;
    pretty(&Timeline {
        trace: a.path.display().to_string(),
        lost_events: r.stats.lost_events,
        truncated: a.truncation.is_some(),
        duration_ns: r.duration_ns,
        time_axis: r.heap_axis,
        heap_bytes: &r.heap_curve,
        peak_heap_bytes: r.peak_bytes,
        peak_heap_time_ns: r.peak_time_ns,
        rss: &r.stats.rss,
    })
}

#[derive(Serialize)]
struct DiffTrace<'a> {
    trace: String,
    command: &'a str,
    duration_ns: u64,
    active_ns: u64,
    lost_events: u64,
    truncated: bool,
    sample_bytes: u64,
    unfreed_bytes: u64,
    unfreed_allocations: u64,
    stacks: usize,
}

impl<'a> DiffTrace<'a> {
    fn new(t: &'a diff::TraceSummary) -> DiffTrace<'a> {
        DiffTrace {
            trace: t.path.display().to_string(),
            command: &t.command,
            duration_ns: t.duration_ns,
            active_ns: t.active_ns,
            lost_events: t.lost_events,
            truncated: t.truncated,
            sample_bytes: t.sample_bytes,
            unfreed_bytes: t.unfreed_bytes,
            unfreed_allocations: t.unfreed_allocations,
            stacks: t.stacks,
        }
    }
}

#[derive(Serialize)]
struct DiffSide<'a> {
    stack_ids: &'a [u32],
    verdict: Option<&'static str>,
    unfreed_bytes: u64,
    unfreed_allocations: u64,
    allocated_bytes: u64,
    allocations: u64,
    frees: u64,
    allocations_per_second: Option<f64>,
    allocated_bytes_per_second: Option<f64>,
    unfreed_bytes_per_second: Option<f64>,
    lifetime_p50_ns: Option<u64>,
}

impl<'a> DiffSide<'a> {
    fn new(s: &'a diff::Side) -> DiffSide<'a> {
        DiffSide {
            stack_ids: &s.stack_ids,
            verdict: s.verdict.map(|v| v.name()),
            unfreed_bytes: s.row.unfreed_bytes,
            unfreed_allocations: s.row.unfreed_allocations,
            allocated_bytes: s.row.allocated_bytes,
            allocations: s.row.allocations,
            frees: s.row.frees,
            allocations_per_second: s.allocations_per_second(),
            allocated_bytes_per_second: s.allocated_bytes_per_second(),
            unfreed_bytes_per_second: s.unfreed_bytes_per_second(),
            lifetime_p50_ns: s.row.lifetime_p50_ns,
        }
    }
}

/// NEW minus BASE; a side a stack is missing from counts as zero.
#[derive(Serialize)]
struct DiffDelta {
    unfreed_bytes: i128,
    unfreed_allocations: i128,
    allocated_bytes: i128,
    allocations: i128,
    allocations_per_second: f64,
    /// Null unless both sides freed something.
    lifetime_p50_ns: Option<i128>,
}

#[derive(Serialize)]
struct DiffFrame<'a> {
    function: &'a str,
    module: Option<&'a str>,
    file: Option<&'a str>,
    line: Option<u32>,
}

#[derive(Serialize)]
struct DiffStack<'a> {
    rank: usize,
    status: &'static str,
    key: &'a str,
    growth: f64,
    growth_pct: Option<f64>,
    crossed: bool,
    base: Option<DiffSide<'a>>,
    new: Option<DiffSide<'a>>,
    delta: DiffDelta,
    frames: Vec<DiffFrame<'a>>,
}

#[derive(Serialize)]
struct DiffGate {
    thresholds: Vec<diff::Threshold>,
    passed: bool,
    crossed: Vec<usize>,
}

#[derive(Serialize)]
struct DiffJson<'a> {
    base: DiffTrace<'a>,
    new: DiffTrace<'a>,
    normalize: diff::Normalize,
    compared: &'static str,
    min_age_ns: u64,
    summary: diff::StatusCounts,
    gate: Option<DiffGate>,
    stacks: Vec<DiffStack<'a>>,
    processes: Vec<DiffProcess<'a>>,
}

/// One process in one trace of a comparison.
#[derive(Serialize)]
struct DiffProcessSide<'a> {
    pid: u32,
    parent_pid: u32,
    command_line: &'a [String],
    events: u64,
    unfreed_bytes: u64,
    unfreed_allocations: u64,
}

/// A pair of processes matched by command, and their stacks compared.
#[derive(Serialize)]
struct DiffProcess<'a> {
    command: &'a str,
    occurrence: usize,
    status: &'static str,
    growth: f64,
    base: Option<DiffProcessSide<'a>>,
    new: Option<DiffProcessSide<'a>>,
    summary: diff::StatusCounts,
    stacks: Vec<DiffStack<'a>>,
}

fn diff_process_side(s: &diff::ProcessSide) -> DiffProcessSide<'_> {
    DiffProcessSide {
        pid: s.pid,
        parent_pid: s.parent_pid,
        command_line: &s.command_line,
        events: s.events,
        unfreed_bytes: s.unfreed_bytes,
        unfreed_allocations: s.unfreed_allocations,
    }
}

fn diff_stack(s: &diff::StackDiff) -> DiffStack<'_> {
    DiffStack {
        rank: s.rank,
        status: s.status.name(),
        key: &s.key,
        growth: s.growth,
        growth_pct: s.growth_pct,
        crossed: s.crossed,
        base: s.base.as_ref().map(DiffSide::new),
        new: s.new.as_ref().map(DiffSide::new),
        delta: delta(s),
        frames: s
            .frames
            .iter()
            .map(|f| DiffFrame {
                function: &f.function,
                module: f.module.as_deref(),
                file: f.file.as_deref(),
                line: f.line,
            })
            .collect(),
    }
}

fn delta(s: &diff::StackDiff) -> DiffDelta {
    let get = |side: &Option<diff::Side>, f: fn(&diff::Side) -> u64| -> i128 {
        side.as_ref().map_or(0, |s| i128::from(f(s)))
    };
    let d = |f: fn(&diff::Side) -> u64| get(&s.new, f) - get(&s.base, f);
    let rate = |side: &Option<diff::Side>| {
        side.as_ref()
            .and_then(diff::Side::allocations_per_second)
            .unwrap_or(0.0)
    };
    DiffDelta {
        unfreed_bytes: d(|s| s.row.unfreed_bytes),
        unfreed_allocations: d(|s| s.row.unfreed_allocations),
        allocated_bytes: d(|s| s.row.allocated_bytes),
        allocations: d(|s| s.row.allocations),
        allocations_per_second: rate(&s.new) - rate(&s.base),
        lifetime_p50_ns: match (
            s.base.as_ref().and_then(|b| b.row.lifetime_p50_ns),
            s.new.as_ref().and_then(|n| n.row.lifetime_p50_ns),
        ) {
            (Some(b), Some(n)) => Some(i128::from(n) - i128::from(b)),
            _ => None,
        },
    }
}

/// The JSON of `memtrail diff` (contract in docs/json.md: fields are only ever added).
pub fn diff(d: &diff::Diff) -> String {
    pretty(&DiffJson {
        base: DiffTrace::new(&d.base),
        new: DiffTrace::new(&d.new),
        normalize: d.normalize,
        compared: match d.normalize {
            diff::Normalize::None => "unfreed_bytes",
            diff::Normalize::Duration => "unfreed_bytes_per_second",
        },
        min_age_ns: d.min_age_ns,
        summary: d.counts,
        gate: d.gate.as_ref().map(|g| DiffGate {
            thresholds: g.thresholds.clone(),
            passed: g.passed(),
            crossed: g.crossed.clone(),
        }),
        stacks: d.stacks.iter().map(diff_stack).collect(),
        processes: d
            .processes
            .iter()
            .map(|p| DiffProcess {
                command: &p.command,
                occurrence: p.occurrence,
                status: p.status.name(),
                growth: p.growth,
                base: p.base.as_ref().map(diff_process_side),
                new: p.new.as_ref().map(diff_process_side),
                summary: p.counts,
                stacks: p.stacks.iter().map(diff_stack).collect(),
            })
            .collect(),
    })
}
