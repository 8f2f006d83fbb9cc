//! Text for humans: the default output of `info`, `leaks`, `lifetimes`, `timeline` and `diff`.
//!
//! Every text from a trace (command line, host, paths, function, file and module names) is
//! printed through [`shown`], and each report passes [`terminal_report`] last, so no control
//! character or bidi override from a trace reaches the terminal raw.

use std::fmt::Write as _;

use crate::analysis::Analysis;
use crate::diff::{self, Normalize};
use crate::escape::{shown, terminal_report};
use crate::processes::{ExitStatus, ProcessFacts, unfollowed_sentence};
use crate::report::{LeakReport, Lifetimes, ProcessReport, calls, pids_by_stack, processes};
use memtrail_format::units::{format_bytes, format_duration};

/// Formats a wall-clock time (ns since the epoch) as UTC `YYYY-MM-DD HH:MM:SS`.
pub fn format_wall(ns: u64) -> String {
    let secs = ns / 1_000_000_000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

pub fn info(a: &Analysis) -> String {
    let mut o = String::new();
    let m = &a.meta;
    let s = &a.replay.stats;
    let r = &a.replay;
    let _ = writeln!(
        o,
        "trace        {} (format {}.{}, recorder {})",
        shown(a.path.display()),
        a.header.major,
        a.header.minor,
        shown(if m.tool_version.is_empty() {
            "?"
        } else {
            &m.tool_version
        })
    );
    let _ = writeln!(o, "command      {}", shown(a.command()));
    let _ = writeln!(
        o,
        "process      pid {} on {} (kernel {}), page size {}",
        m.pid,
        shown(&m.host_name),
        shown(&m.kernel_release),
        m.page_size
    );
    if m.start_wall_ns > 0 {
        let _ = writeln!(o, "started      {}", format_wall(m.start_wall_ns));
    }
    let _ = writeln!(
        o,
        "duration     {} (process active from {} to {})",
        format_duration(r.duration_ns),
        format_duration(r.active_start_ns),
        format_duration(r.active_end_ns)
    );
    if m.sample_bytes > 0 {
        let _ = writeln!(
            o,
            "sampling     one allocation per {} bytes: reports scale counts up",
            m.sample_bytes
        );
    } else {
        let _ = writeln!(o, "sampling     none: every call recorded");
    }
    let _ = writeln!(o, "events       {}", s.events);
    let calls = calls(a);
    let width = calls.keys().map(|k| k.len()).max().unwrap_or(0);
    for (name, n) in &calls {
        if *n > 0 {
            let _ = writeln!(o, "  {name:<width$}  {n}");
        }
    }
    let _ = writeln!(
        o,
        "unmatched    {} frees, {} munmaps (of blocks from before the recording, or lost)",
        s.unmatched_frees, s.unmatched_munmaps
    );
    if s.failed_allocations + s.failed_reallocs + s.replaced_live > 0 {
        let _ = writeln!(
            o,
            "anomalies    {} failed allocations, {} failed reallocs, {} reused live addresses",
            s.failed_allocations, s.failed_reallocs, s.replaced_live
        );
    }
    let _ = writeln!(
        o,
        "lost events  {}{}",
        s.lost_events,
        if s.lost_by_reason.is_empty() {
            String::new()
        } else {
            format!(
                " ({})",
                s.lost_by_reason
                    .iter()
                    .map(|(k, v)| format!("{v} {k}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        }
    );
    let _ = writeln!(
        o,
        "heap         peak {} at {}; {} live at the end in {} blocks",
        format_bytes(r.peak_bytes),
        format_duration(r.peak_time_ns),
        format_bytes(r.live_bytes),
        r.live_allocations
    );
    if let Some(peak) = s.rss.iter().map(|x| x.rss_bytes).max() {
        let _ = writeln!(
            o,
            "rss          {} samples, peak {}",
            s.rss.len(),
            format_bytes(peak)
        );
    }
    let _ = writeln!(
        o,
        "symbols      {} stacks, {} modules, {} symbols",
        a.symbols.stack_count(),
        a.symbols.module_count(),
        a.symbols.symbol_count()
    );
    if let Some((t, code, signal)) = s.exit {
        let _ = writeln!(
            o,
            "exit         {} at {}",
            exit_how(code, signal),
            format_duration(t)
        );
    }
    if a.replay.processes.len() > 1 {
        let _ = writeln!(o, "processes    {}", a.replay.processes.len());
        for p in processes(a) {
            let r = p.replay;
            let _ = writeln!(
                o,
                "  {}\n    {}; {} events; {} live at its end in {} blocks{}",
                process_title(&p.process.facts),
                exit_text(&p.process.facts),
                p.process.events,
                format_bytes(r.live_bytes),
                r.live_allocations,
                exec_text(&p),
            );
        }
    }
    if !a.replay.options.pids.is_empty() {
        let _ = writeln!(
            o,
            "selected     --pid {}: {} events of other processes not replayed",
            a.replay
                .options
                .pids
                .pids()
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(" --pid "),
            s.events_not_replayed
        );
    }
    if a.follow_unavailable() {
        let _ = writeln!(
            o,
            "followed     no: {}",
            crate::analysis::FOLLOW_UNAVAILABLE
        );
    }
    let unfollowed = &a.replay.unfollowed;
    if !unfollowed.is_empty() {
        let _ = writeln!(o, "not traced   {} processes of the tree", unfollowed.len());
        for u in unfollowed {
            let _ = writeln!(
                o,
                "  at {}: {}",
                format_duration(u.time_ns),
                shown(unfollowed_sentence(u))
            );
        }
    }
    match &a.truncation {
        Some(t) => {
            let _ = writeln!(o, "complete     no: {}", shown(t));
        }
        None => {
            let _ = writeln!(o, "complete     yes");
        }
    }
    terminal_report(o)
}

/// How a process ended, from its exit code or signal.
fn exit_how(code: Option<i32>, signal: Option<i32>) -> String {
    match (code, signal) {
        (_, Some(sig)) => format!("killed by signal {sig}"),
        (Some(c), None) => format!("exited with status {c}"),
        (None, None) => "exited".into(),
    }
}

/// `exited with status 0 at 1.2s`, or that it was still running at the end.
fn exit_text(p: &ProcessFacts) -> String {
    match p.exit {
        Some(ExitStatus {
            time_ns,
            code,
            signal,
        }) => format!("{} at {}", exit_how(code, signal), format_duration(time_ns)),
        None => "still running at the end of the recording".into(),
    }
}

/// `pid 1201 (forked by 1200): ./server --worker`.
fn process_title(p: &ProcessFacts) -> String {
    let parent = match (p.origin, p.parent_pid) {
        (memtrail_format::ProcessOrigin::Forked, parent) if parent != 0 => {
            format!("forked by {parent}")
        }
        (origin, 0) => origin.name().to_owned(),
        (origin, parent) => format!("{}, child of {parent}", origin.name()),
    };
    let execs = match p.execs {
        0 => String::new(),
        1 => ", after an exec".to_owned(),
        n => format!(", after {n} execs"),
    };
    format!("pid {} ({parent}{execs}): {}", p.pid, shown(p.command()))
}

/// `; 12 KiB in 30 blocks released by exec`, when its exec released any.
fn exec_text(p: &ProcessReport) -> String {
    if p.process.released_by_exec_blocks == 0 && p.process.released_by_exec_bytes == 0 {
        return String::new();
    }
    format!(
        "; {} in {} blocks released by exec (not leaks)",
        format_bytes(p.process.released_by_exec_bytes),
        p.process.released_by_exec_blocks
    )
}

/// The per-process part of `leaks` (several processes only): each process and its own
/// candidates, one line each (the frames are in the total above, by stack id).
fn leaks_by_process(a: &Analysis, o: &mut String) {
    let all = processes(a);
    let _ = writeln!(o);
    let _ = writeln!(o, "{} processes:", all.len());
    for p in &all {
        let rep = &p.leaks;
        let leaks = rep
            .candidates
            .iter()
            .filter(|c| c.verdict == crate::verdict::Verdict::Leak)
            .count();
        let _ = writeln!(o);
        let _ = writeln!(o, "{}", process_title(&p.process.facts));
        let _ = writeln!(
            o,
            "     {}; {} events; {} unfreed in {} blocks; {} candidates, {} judged leaks{}",
            exit_text(&p.process.facts),
            p.process.events,
            format_bytes(rep.total_unfreed_bytes),
            rep.total_unfreed_allocations,
            rep.candidates_total,
            leaks,
            exec_text(p),
        );
        for c in &rep.candidates {
            let _ = writeln!(
                o,
                "     #{:<3} {:<20} {} in {} blocks  (stack {}){}",
                c.rank,
                c.verdict.name(),
                format_bytes(c.scaled.unfreed_bytes),
                c.scaled.unfreed_allocations,
                c.row.stack_id,
                c.frames
                    .first()
                    .map(|f| format!("  at {}{}", shown(&f.function), shown(f.place())))
                    .unwrap_or_default()
            );
        }
    }
}

pub fn leaks(a: &Analysis, rep: &LeakReport, max_frames: usize) -> String {
    let mut o = String::new();
    let r = &a.replay;
    let several = r.processes.len() > 1;
    let pids = if several {
        pids_by_stack(a)
    } else {
        Default::default()
    };
    let _ = writeln!(
        o,
        "{} leak candidates in {} ({}): {} unfreed in {} blocks older than {}{}; {} in stacks judged leaks",
        rep.candidates_total,
        shown(a.command()),
        format_duration(r.duration_ns),
        format_bytes(rep.total_unfreed_bytes),
        rep.total_unfreed_allocations,
        format_duration(r.options.min_age_ns),
        r.options
            .at_ns
            .map(|t| format!(" at {}", format_duration(t)))
            .unwrap_or_default(),
        format_bytes(rep.leak_bytes),
    );
    if a.meta.sample_bytes > 0 {
        let _ = writeln!(
            o,
            "(sampled trace, one per {} bytes: numbers are estimates)",
            a.meta.sample_bytes
        );
    }
    if rep.candidates_total > rep.candidates.len() {
        let _ = writeln!(o, "showing the first {} (--top)", rep.candidates.len());
    }
    for c in &rep.candidates {
        let s = &c.scaled;
        let _ = writeln!(o);
        let _ = writeln!(
            o,
            "#{:<3} {:<20} {} in {} blocks  (stack {})",
            c.rank,
            c.verdict.name(),
            format_bytes(s.unfreed_bytes),
            s.unfreed_allocations,
            c.row.stack_id
        );
        let _ = writeln!(o, "     why: {}", shown(&c.reason));
        if let Some(pids) = pids.get(&c.row.stack_id) {
            let _ = writeln!(
                o,
                "     in processes {}",
                pids.iter()
                    .map(u32::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        let lifetimes = match (c.row.lifetime_p50_ns, c.row.lifetime_p99_ns) {
            (Some(p50), Some(p99)) => format!(
                "freed ones lived p50 {}, p99 {}",
                format_duration(p50),
                format_duration(p99)
            ),
            _ => "none freed".into(),
        };
        let _ = writeln!(
            o,
            "     {} allocations ({}) from {} to {}, {} frees, peak {}; {}",
            s.allocations,
            format_bytes(s.allocated_bytes),
            format_duration(c.row.first_alloc_ns),
            format_duration(c.row.last_alloc_ns),
            s.frees,
            format_bytes(s.peak_bytes),
            lifetimes
        );
        for (i, f) in c.frames.iter().take(max_frames).enumerate() {
            let _ = writeln!(
                o,
                "     {} {}{}{}{}",
                if i == 0 { "at" } else { "  " },
                shown(&f.function),
                shown(f.place()),
                shown(f.module_tag()),
                if f.inlined { " (inlined)" } else { "" }
            );
        }
        if c.frames.len() > max_frames {
            let _ = writeln!(o, "        ... {} more frames", c.frames.len() - max_frames);
        } else if c.stack_truncated {
            let _ = writeln!(o, "        ... (the recorder stopped unwinding here)");
        }
    }
    if several {
        leaks_by_process(a, &mut o);
    }
    terminal_report(o)
}

fn bar(n: u64, max: u64, width: usize) -> String {
    if max == 0 || n == 0 {
        return String::new();
    }
    let len = ((n as f64 / max as f64) * width as f64).ceil() as usize;
    "#".repeat(len.clamp(1, width))
}

pub fn lifetimes(a: &Analysis, l: &Lifetimes, what: &str) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "lifetimes of {}: {} allocations, {} freed, {} never freed (in {})",
        shown(what),
        l.allocations,
        l.freed,
        l.never_freed,
        format_duration(a.replay.duration_ns)
    );
    if let (Some(p50), Some(p90), Some(p99), Some(max)) = (
        l.histogram.quantile(0.5),
        l.histogram.quantile(0.9),
        l.histogram.quantile(0.99),
        l.histogram.max(),
    ) {
        let _ = writeln!(
            o,
            "freed blocks lived p50 {}, p90 {}, p99 {}, max {}",
            format_duration(p50),
            format_duration(p90),
            format_duration(p99),
            format_duration(max)
        );
    }
    let _ = writeln!(o);
    let (left, right) = l.labeled_rows();
    let lmax = left.iter().map(|x| x.1).max().unwrap_or(0);
    let rmax = right.iter().map(|x| x.1).max().unwrap_or(0);
    let _ = writeln!(
        o,
        "{:<12} {:>10} {:<24}   {:<18} {:>10}",
        "lifetime", "blocks", "", "size", "blocks"
    );
    for i in 0..left.len().max(right.len()) {
        let l = left
            .get(i)
            .map(|(label, n)| format!("{label:<12} {n:>10} {:<24}", bar(*n, lmax, 24)))
            .unwrap_or_else(|| " ".repeat(48));
        let r = right
            .get(i)
            .map(|(label, n)| format!("{label:<18} {n:>10} {}", bar(*n, rmax, 24)))
            .unwrap_or_default();
        let _ = writeln!(o, "{l}   {r}");
    }
    terminal_report(o)
}

pub fn timeline(a: &Analysis) -> String {
    let mut o = String::new();
    let r = &a.replay;
    let _ = writeln!(
        o,
        "live heap over {} ({} buckets of {}): peak {} at {}, {} at the end",
        format_duration(r.duration_ns),
        r.heap_axis.buckets,
        format_duration(r.heap_axis.bucket_ns),
        format_bytes(r.peak_bytes),
        format_duration(r.peak_time_ns),
        format_bytes(r.live_bytes)
    );
    let rss = &r.stats.rss;
    match rss.iter().max_by_key(|s| s.rss_bytes) {
        Some(p) => {
            let _ = writeln!(
                o,
                "rss: {} samples, peak {} at {}, last {}",
                rss.len(),
                format_bytes(p.rss_bytes),
                format_duration(p.time_ns),
                format_bytes(rss.last().map_or(0, |s| s.rss_bytes))
            );
        }
        None => {
            let _ = writeln!(o, "rss: no samples in the trace");
        }
    }
    // Ten evenly spaced points of the heap curve.
    let n = r.heap_curve.len();
    if n > 0 {
        let _ = writeln!(o, "{:>12}  {:>12}  {:>12}", "time", "heap", "rss");
        for k in 0..10.min(n) {
            let i = if n <= 10 { k } else { (k * (n - 1)) / 9 };
            let t = (i as u64).saturating_mul(r.heap_axis.bucket_ns);
            let rss_at = rss
                .iter()
                .take_while(|s| s.time_ns <= t.saturating_add(r.heap_axis.bucket_ns))
                .last()
                .map_or_else(|| "-".to_owned(), |s| format_bytes(s.rss_bytes));
            let _ = writeln!(
                o,
                "{:>12}  {:>12}  {:>12}",
                format_duration(t),
                format_bytes(r.heap_curve[i].max(0) as u64),
                rss_at
            );
        }
    }
    terminal_report(o)
}

/// A compared quantity for humans: bytes, or bytes per second.
pub(crate) fn amount(v: f64, normalize: Normalize) -> String {
    let s = format_bytes(v.abs().round() as u64);
    let s = if v < 0.0 { format!("-{s}") } else { s };
    match normalize {
        Normalize::None => s,
        Normalize::Duration => format!("{s}/s"),
    }
}

pub(crate) fn signed_amount(v: f64, normalize: Normalize) -> String {
    if v > 0.0 {
        format!("+{}", amount(v, normalize))
    } else {
        amount(v, normalize)
    }
}

pub(crate) fn pct(p: Option<f64>, growth: f64) -> String {
    match p {
        Some(p) if p.abs() < 10.0 => format!("{p:+.1}%"),
        Some(p) => format!("{p:+.0}%"),
        // Growth from nothing.
        None if growth > 0.0 => "+inf%".into(),
        None => "-".into(),
    }
}

pub(crate) fn rate(side: Option<&diff::Side>) -> String {
    match side.and_then(diff::Side::allocations_per_second) {
        Some(r) if r >= 100.0 => format!("{r:.0}/s"),
        Some(r) => format!("{r:.1}/s"),
        None => "-".into(),
    }
}

pub(crate) fn p50(side: Option<&diff::Side>) -> String {
    side.and_then(|s| s.row.lifetime_p50_ns)
        .map_or_else(|| "-".into(), format_duration)
}

/// One line naming a stack and its growth, for the gate's message.
pub fn crossed_line(d: &diff::Diff, s: &diff::StackDiff) -> String {
    format!(
        "#{} {} {} ({}, {} -> {}): {}",
        s.rank,
        s.status.name(),
        signed_amount(s.growth, d.normalize),
        pct(s.growth_pct, s.growth),
        amount(s.base_value(d.normalize), d.normalize),
        amount(s.new_value(d.normalize), d.normalize),
        shown(&s.key)
    )
}

/// The gate's verdict as printed after the table (and on stderr when it fails).
pub fn gate(d: &diff::Diff) -> Option<String> {
    let g = d.gate.as_ref()?;
    let limits = g
        .thresholds
        .iter()
        .map(|t| t.describe(d.normalize))
        .collect::<Vec<_>>()
        .join(" and ");
    let mut o = String::new();
    if g.passed() {
        let _ = writeln!(
            o,
            "growth gate passed: no stack's unfreed bytes grew past {limits}"
        );
    } else {
        let _ = writeln!(
            o,
            "growth gate failed: {} stack{} grew past {limits}:",
            g.crossed.len(),
            if g.crossed.len() == 1 { "" } else { "s" }
        );
        for s in d.crossed() {
            let _ = writeln!(o, "  {}", crossed_line(d, s));
        }
    }
    Some(terminal_report(o))
}

/// `memtrail diff` for humans: a summary, then one block per stack that changed (at most
/// `top`), largest growth first, with its frames.
/// The per-process part of `diff` (when a trace has several processes): each pair matched by
/// command, its unfreed change and its changed stacks, one line each.
fn diff_processes(d: &diff::Diff, o: &mut String, max_frames: usize) {
    let n = d.normalize;
    let _ = writeln!(o, "\nprocesses, matched by command (not by PID):");
    for p in &d.processes {
        let pid = |s: Option<&diff::ProcessSide>| s.map_or("-".to_owned(), |s| s.pid.to_string());
        let unfreed: f64 = p.stacks.iter().map(|s| s.base_value(n)).sum();
        let _ = writeln!(
            o,
            "\n{} (pid {} -> {}): {} {} -> {} ({})",
            shown(p.label()),
            pid(p.base.as_ref()),
            pid(p.new.as_ref()),
            p.status.name(),
            amount(unfreed, n),
            amount(unfreed + p.growth, n),
            signed_amount(p.growth, n),
        );
        for s in p.stacks.iter().filter(|s| s.growth != 0.0) {
            let _ = writeln!(
                o,
                "     #{:<3} {:<9} {:>13}  at {}",
                s.rank,
                s.status.name(),
                signed_amount(s.growth, n),
                s.frames
                    .iter()
                    .take(max_frames.min(2))
                    .map(|f| format!("{}{}", shown(&f.function), shown(f.module_tag())))
                    .collect::<Vec<_>>()
                    .join(" <- ")
            );
        }
    }
}

pub fn diff(d: &diff::Diff, top: usize, max_frames: usize) -> String {
    let mut o = String::new();
    let n = d.normalize;
    let (tb, tn) = d.totals();
    let _ = writeln!(
        o,
        "BASE {} ({}, {})\nNEW  {} ({}, {})",
        shown(&d.base.command),
        format_duration(d.base.duration_ns),
        shown(d.base.path.display()),
        shown(&d.new.command),
        format_duration(d.new.duration_ns),
        shown(d.new.path.display()),
    );
    let _ = writeln!(
        o,
        "unfreed{} (blocks older than {}): {} -> {} ({})",
        if n == Normalize::Duration {
            " per second of activity"
        } else {
            ""
        },
        format_duration(d.min_age_ns),
        amount(tb, n),
        amount(tn, n),
        signed_amount(tn - tb, n)
    );
    let c = &d.counts;
    let _ = writeln!(
        o,
        "{} stacks: {} new, {} grown, {} shrunk, {} gone, {} unchanged",
        d.stacks.len(),
        c.new,
        c.grown,
        c.shrunk,
        c.gone,
        c.unchanged
    );
    for (name, t) in [("BASE", &d.base), ("NEW", &d.new)] {
        if t.lost_events > 0 {
            let _ = writeln!(
                o,
                "warning: {name} lost {} events: its counts are lower bounds",
                t.lost_events
            );
        }
        if t.truncated {
            let _ = writeln!(o, "warning: {name} is cut short: analyzed up to the cut");
        }
    }
    let changed: Vec<&diff::StackDiff> = d.changed().collect();
    if changed.is_empty() {
        let _ = writeln!(o, "\nno stack's unfreed bytes changed");
    } else {
        let _ = writeln!(
            o,
            "\n{:<4} {:<9} {:>12} {:>12} {:>13} {:>6}  {:>9} {:>9}  {:>9} {:>9}",
            "#", "status", "BASE", "NEW", "change", "%", "allocs", "allocs", "p50 life", "p50 life"
        );
        let _ = writeln!(
            o,
            "{:<4} {:<9} {:>12} {:>12} {:>13} {:>6}  {:>9} {:>9}  {:>9} {:>9}",
            "", "", "unfreed", "unfreed", "", "", "BASE", "NEW", "BASE", "NEW"
        );
    }
    for s in changed.iter().take(top) {
        let _ = writeln!(
            o,
            "{:<4} {:<9} {:>12} {:>12} {:>13} {:>6}  {:>9} {:>9}  {:>9} {:>9}{}",
            s.rank,
            s.status.name(),
            amount(s.base_value(n), n),
            amount(s.new_value(n), n),
            signed_amount(s.growth, n),
            pct(s.growth_pct, s.growth),
            rate(s.base.as_ref()),
            rate(s.new.as_ref()),
            p50(s.base.as_ref()),
            p50(s.new.as_ref()),
            if s.crossed { "  <- crossed" } else { "" }
        );
        for (i, f) in s.frames.iter().take(max_frames).enumerate() {
            let _ = writeln!(
                o,
                "     {} {}{}",
                if i == 0 { "at" } else { "  " },
                shown(&f.function),
                shown(f.module_tag())
            );
        }
        if s.frames.len() > max_frames {
            let _ = writeln!(o, "        ... {} more frames", s.frames.len() - max_frames);
        }
    }
    if changed.len() > top {
        let _ = writeln!(
            o,
            "\n... {} more changed stacks (--top, or --json / --format csv for all)",
            changed.len() - top
        );
    }
    if d.processes.len() > 1 {
        diff_processes(d, &mut o, max_frames);
    }
    // The verdict only: the crossed stacks are marked above, and listed in full on stderr
    // (by the binary, from `gate`), where a CI log shows them whatever the format.
    if let Some(g) = gate(d).and_then(|g| g.lines().next().map(str::to_owned)) {
        let _ = writeln!(o, "\n{}", g.trim_end_matches(':'));
    }
    terminal_report(o)
}

#[cfg(test)]
mod tests {
    #[test]
    fn wall_clock() {
        assert_eq!(super::format_wall(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(
            super::format_wall(1_764_108_000_000_000_000),
            "2025-11-25 22:00:00 UTC"
        );
    }
}
