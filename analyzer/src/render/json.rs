//! JSON output. The field names here are a public contract (scripts and CI jobs read them):
//! add fields freely, never rename or remove one.
//!
//! Contract: `info` has `calls` (C function name -> count), `lost_events`, `duration_ns`,
//! `truncated`; `leaks` has `candidates`, each with `unfreed_bytes`, `unfreed_allocations`,
//! `verdict`, and `frames` (each `function`, `file`, `line`, `module`, `address`), innermost
//! frame first. Times are nanoseconds since the start of the trace; sizes are bytes.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::aggregate::{LIFETIME_CLASS_LABELS, TimeAxis, size_class_label};
use crate::analysis::Analysis;
use crate::replay::RssSample;
use crate::report::{LeakReport, Lifetimes, calls, lifetime_class_bounds};
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
}

fn pretty<T: Serialize>(v: &T) -> String {
    // Serializing plain structs of strings and numbers cannot fail.
    let mut s =
        serde_json::to_string_pretty(v).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"));
    s.push('\n');
    s
}

pub fn info(a: &Analysis) -> String {
    let m = &a.meta;
    let s = &a.replay.stats;
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
    truncated: bool,
    truncation: Option<String>,
    unmatched_frees: u64,
    total_unfreed_bytes: u64,
    total_unfreed_allocations: u64,
    leak_bytes: u64,
    candidates_total: usize,
    time_axis: TimeAxis,
    candidates: Vec<Candidate<'a>>,
}

pub fn leaks(a: &Analysis, rep: &LeakReport) -> String {
    let r = &a.replay;
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
            .map(|c| {
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
                }
            })
            .collect(),
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
