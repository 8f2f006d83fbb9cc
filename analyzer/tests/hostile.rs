//! Hostile traces (issue 13): small files that declare millions of live blocks, stacks of
//! 65,536 frames, megabyte names or sums past 2^64. Each must end in the memory budget's
//! one-line error (with a small limit, so the tests stay cheap) or in a report that saturated
//! and says so; never in an abort, a panic or an overflow (tests build with overflow checks).

mod support;

use std::path::Path;

use memtrail::budget::MemoryLimit;
use memtrail::cli::Metric;
use memtrail::diff::{self, DiffOptions, Normalize};
use memtrail::render;
use memtrail::report::{self, Selection};
use memtrail::{Analysis, Error, ReplayOptions, analyze_bytes, analyze_from};
use memtrail_format::MAX_LIST;
use support::hostile;

const MIB: u64 = 1 << 20;

fn options(limit: u64) -> ReplayOptions {
    ReplayOptions {
        memory_limit: MemoryLimit::from_flag(limit),
        ..ReplayOptions::default()
    }
}

fn analyze(bytes: &[u8], limit: u64) -> Result<Analysis, Error> {
    analyze_bytes(Path::new("hostile.trace"), bytes, options(limit))
}

/// The budget error's message, checked for the shape every budget error has.
fn budget_error(result: Result<Analysis, Error>) -> String {
    let e = match result {
        Err(e @ Error::MemoryLimit { .. }) => e,
        Err(e) => panic!("not a budget error: {e}"),
        Ok(_) => panic!("the analysis fit the limit"),
    };
    let text = e.to_string();
    assert!(!text.contains('\n'), "{text}");
    assert!(
        text.starts_with("hostile.trace: the trace declares more than the memory limit allows: "),
        "{text}"
    );
    assert!(
        text.ends_with("(--memory-limit); pass --memory-limit to raise it"),
        "{text}"
    );
    text
}

#[test]
fn declared_live_blocks_stop_at_the_limit() {
    let trace = hostile::live_blocks(300_000);
    assert!(trace.len() < 64 << 10, "{} bytes", trace.len());
    let text = budget_error(analyze(&trace, 4 * MIB));
    // The table would double past the limit: it says how many blocks it held then.
    assert!(text.contains(" live blocks"), "{text}");
    assert!(text.contains("the limit is 4.00 MiB"), "{text}");
    // The same on several decoding threads (stopped between chunks).
    let threaded = analyze_from(Path::new("hostile.trace"), &trace[..], options(4 * MIB), 3);
    assert_eq!(budget_error(threaded), text);
    // With room, every block is there.
    let a = analyze(&trace, 64 * MIB).unwrap();
    assert_eq!(a.replay.live_allocations, 300_000);
    assert_eq!(a.replay.rows[0].unfreed_allocations, 300_000);
}

#[test]
fn many_stacks_stop_at_the_limit() {
    let text = budget_error(analyze(&hostile::many_stacks(20_000), 8 * MIB));
    assert!(text.contains(" stacks"), "{text}");
    let a = analyze(&hostile::many_stacks(20_000), 512 * MIB).unwrap();
    assert_eq!(a.replay.rows.len(), 20_000);
}

#[test]
fn deep_stacks_keep_1024_frames() {
    let trace = hostile::deep_stacks(2, MAX_LIST);
    let a = analyze(&trace, 256 * MIB).unwrap();
    let rep = report::leaks(&a, None);
    assert_eq!(rep.candidates.len(), 2);
    for c in &rep.candidates {
        assert_eq!(c.frames.len(), 1025);
        assert_eq!(
            c.frames.last().unwrap().function,
            "[64512 outer frames not shown]"
        );
        assert_eq!(c.frames[0].function, "deep+0x0");
    }
    let folded = render::flamegraph::folded(&a, Metric::Unfreed);
    assert_eq!(folded.len(), 1);
    assert!(folded[0].starts_with("[64512 outer frames not shown];deep+0xf0;"));
}

#[test]
fn deep_stacks_times_many_stacks_stop_at_the_limit() {
    // 300 stacks of 2,048 frames: 1,024 kept of each.
    let text = budget_error(analyze(&hostile::deep_stacks(300, 2048), 8 * MIB));
    assert!(text.contains(" stack frames"), "{text}");
}

#[test]
fn megabyte_names_in_deep_stacks_are_charged_to_the_reports() {
    // Four 1 MiB strings fit 16 MiB; four stacks that resolve to 1,024 frames each naming
    // them (2 MiB a frame) do not.
    let text = budget_error(analyze(&hostile::big_names(4, 4, 1024), 16 * MIB));
    assert!(
        text.contains(" frames to resolve for the reports"),
        "{text}"
    );
    // Without stacks there is nothing to resolve.
    let a = analyze(&hostile::big_names(4, 0, 0), 16 * MIB).unwrap();
    assert!(a.replay.rows.is_empty());
    // More strings than the limit holds.
    let text = budget_error(analyze(&hostile::big_names(20, 0, 0), 16 * MIB));
    assert!(text.contains(" bytes of strings"), "{text}");
}

#[test]
fn capacity_claims_stay_small() {
    let a = analyze(&hostile::capacity_claims(), 64 * MIB).unwrap();
    let mut ids: Vec<u32> = a.replay.rows.iter().map(|r| r.stack_id).collect();
    ids.sort_unstable();
    assert_eq!(ids, [(1 << 22) - 1, 1 << 22, u32::MAX - 1, u32::MAX]);
    let rep = report::leaks(&a, None);
    assert!(rep.candidates.iter().all(|c| c.frames.len() == 1));
    render::json::info(&a);
}

/// Every report of `a`, as the commands build them.
fn render_everything(a: &Analysis) {
    let rep = report::leaks(a, None);
    render::table::leaks(a, &rep, 8);
    render::json::leaks(a, &rep);
    render::export::candidates(a, &rep).unwrap();
    render::table::info(a);
    for metric in [
        Metric::Unfreed,
        Metric::Allocated,
        Metric::Allocations,
        Metric::Peak,
    ] {
        let lines = render::flamegraph::folded(a, metric);
        render::flamegraph::svg(a, metric, false, &lines, std::io::sink()).unwrap();
    }
    let l = report::lifetimes(a, &Selection::default()).unwrap();
    render::table::lifetimes(a, &l, "all");
    render::json::lifetimes(a, &l, "all");
    render::svg::lifetimes(a, &l, "all");
    render::export::lifetimes(&l).unwrap();
    render::table::timeline(a);
    render::json::timeline(a);
    render::svg::timeline(a);
    render::export::stacks(a).unwrap();
    render::html::single(a, &rep, &l).unwrap();
    for normalize in [Normalize::None, Normalize::Duration] {
        let options = DiffOptions {
            normalize,
            thresholds: vec![diff::Threshold::Bytes(1)],
        };
        let d = diff::diff(a, a, &options).unwrap();
        render::table::diff(&d, 20, 6);
        render::json::diff(&d);
        render::export::diff(&[&d]).unwrap();
        let lines = render::flamegraph::diff_folded(&d);
        render::flamegraph::diff_svg(&d, &lines, std::io::sink()).unwrap();
        render::html::compared(a, a, &d, &l, &l, 10).unwrap();
    }
}

#[test]
fn sums_past_2_to_the_64_saturate_and_warn() {
    let trace = hostile::huge_values();
    let a = analyze(&trace, 64 * MIB).unwrap();
    let s = &a.replay.stats;
    assert!(s.saturated);
    assert_eq!(s.lost_events, u64::MAX);
    assert_eq!(s.lost_by_reason["ring-buffer-full"], u64::MAX);
    let warnings = a.warnings();
    assert!(
        warnings.iter().any(|w| w
            .starts_with("hostile.trace: some sizes or counts in the trace add up past 2^64 - 1")),
        "{warnings:?}"
    );
    let rep = report::leaks(&a, None);
    assert_eq!(rep.total_unfreed_bytes, u64::MAX);
    let info: serde_json::Value = serde_json::from_str(&render::json::info(&a)).unwrap();
    assert_eq!(info["saturated"], true);
    render_everything(&a);

    // With allocation rows, and with --at at the end of time.
    let mut exported = ReplayOptions {
        collect_allocations: true,
        ..options(64 * MIB)
    };
    let a = analyze_bytes(Path::new("hostile.trace"), &trace, exported).unwrap();
    render::export::allocations(a.replay.allocations.as_deref().unwrap()).unwrap();
    exported.at_ns = Some(u64::MAX - 1);
    analyze_bytes(Path::new("hostile.trace"), &trace, exported).unwrap();
}

#[test]
fn ordinary_traces_do_not_saturate() {
    let a = analyze(&hostile::many_stacks(100), 64 * MIB).unwrap();
    assert!(!a.replay.stats.saturated);
    assert!(a.warnings().iter().all(|w| !w.contains("2^64")));
    render_everything(&a);
}

#[test]
fn allocation_rows_are_charged() {
    let trace = hostile::live_blocks(50_000);
    let collect = |limit| ReplayOptions {
        collect_allocations: true,
        ..options(limit)
    };
    // 50,000 blocks fit 8 MiB, their 136-byte export rows do not.
    analyze(&trace, 8 * MIB).unwrap();
    let e = analyze_bytes(Path::new("hostile.trace"), &trace, collect(8 * MIB));
    assert!(budget_error(e).contains(" allocation rows"));
    let a = analyze_bytes(Path::new("hostile.trace"), &trace, collect(64 * MIB)).unwrap();
    assert_eq!(a.replay.allocations.unwrap().len(), 50_000);
}

/// 100,000 processes, long command lines and reasons, and process records naming PIDs the
/// trace never introduced: the caps hold (4,096 processes replayed, 1,024 unfollowed kept),
/// the warnings say what was left out, and nothing panics.
#[test]
fn a_hundred_thousand_processes_stay_within_the_caps() {
    use memtrail::processes::{MAX_PROCESSES, MAX_UNFOLLOWED};
    let trace = hostile::many_processes(100_000);
    assert!(trace.len() < 4 << 20, "{} bytes", trace.len());
    let a = analyze(&trace, 512 * MIB).expect("fits 512 MiB");
    let r = &a.replay;
    // The trace's own process had no event and no process record: not listed.
    assert_eq!(r.processes.len(), MAX_PROCESSES - 1);
    assert_eq!(r.unfollowed.len(), MAX_UNFOLLOWED);
    assert_eq!(
        r.process_limits.unfollowed_over_limit,
        100_000 - MAX_UNFOLLOWED as u64
    );
    assert!(r.process_limits.processes_over_limit >= 100_000 - MAX_PROCESSES as u64);
    // An exec and an exit of PIDs never introduced.
    assert_eq!(r.process_limits.records_of_unknown_pids, 2);
    for p in &r.processes {
        let bytes: usize = p.facts.command_line.iter().map(String::len).sum();
        assert!(
            bytes <= 4096 + 64,
            "a command line kept whole: {bytes} bytes"
        );
    }
    assert!(r.unfollowed.iter().all(|u| u.reason.len() <= 1024 + 3));
    // The thread bound to an unknown PID made that PID a process of unknown origin.
    let unknown = r
        .processes
        .iter()
        .find(|p| p.facts.pid == 999_999_999)
        .expect("the PID a thread was bound to");
    assert_eq!(unknown.facts.origin.name(), "other");
    assert_eq!(unknown.events, 1);
    // PID 5 introduced twice while running: one process, which exec'd its blocks away
    // (the one at `1 << 48` was its key 0 and not kept).
    let five: Vec<_> = r.processes.iter().filter(|p| p.facts.pid == 5).collect();
    assert_eq!(five.len(), 1);
    assert_eq!(five[0].facts.execs, 1);
    let warnings = a.warnings().join("\n");
    for expected in [
        "more than 4096 processes",
        "more processes of the tree were not traced",
        "2 exec or exit records name a process the trace never introduced",
    ] {
        assert!(warnings.contains(expected), "{expected}: {warnings}");
    }
    // Every report over it.
    let leaks = report::leaks(&a, None);
    render::json::leaks(&a, &leaks);
    render::table::leaks(&a, &leaks, 8);
    render::json::info(&a);
    render::table::info(&a);
    // A small limit: the budget's error, not an abort.
    budget_error(analyze(&trace, 16 * MIB));
}
