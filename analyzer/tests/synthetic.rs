//! Exact tests of the replay, aggregates, histograms and verdicts on traces written with the
//! format crate's `TraceBuilder`.

use std::path::Path;

use memtrail::aggregate::LogHistogram;
use memtrail::cli::Metric;
use memtrail::render::flamegraph::folded;
use memtrail::report::{self, Selection};
use memtrail::{Analysis, Replay, ReplayOptions, Verdict, analyze_bytes};
use memtrail_format::testing::{StackLayout, TraceBuilder};
use memtrail_format::{AllocApi, FreeApi, LostReason, Record, TraceMeta};

const MS: u64 = 1_000_000;

/// A trace of `./app --leak` with one module, `/usr/bin/app`, whose named stacks' frames sit
/// at 0x55_0000_0000 + offset.
fn trace() -> TraceBuilder {
    trace_with(TraceMeta {
        tool_version: "0.1.0".into(),
        command_line: vec!["./app".into(), "--leak".into()],
        host_name: "host".into(),
        pid: 42,
        page_size: 4096,
        ..TraceMeta::default()
    })
}

fn trace_with(meta: TraceMeta) -> TraceBuilder {
    let mut t = TraceBuilder::new(&meta);
    t.module(1, "/usr/bin/app", &[1, 2, 3]).layout(StackLayout {
        load: 0x55_0000_0000,
        ..StackLayout::default()
    });
    t
}

/// The trace's bytes, ended at `end` (or at its last event, if later).
fn finish_at(mut t: TraceBuilder, end: u64) -> Vec<u8> {
    t.end(end);
    t.bytes()
}

fn run(bytes: &[u8], options: ReplayOptions) -> Analysis {
    analyze_bytes(Path::new("synthetic.trace"), bytes, options).unwrap()
}

fn row(a: &Analysis, stack: u32) -> &memtrail::aggregate::StackRow {
    a.replay.rows.iter().find(|r| r.stack_id == stack).unwrap()
}

#[test]
fn allocs_frees_reallocs_and_unmatched_frees() {
    let mut t = trace();
    t.named_stack(1, &["make", "main"])
        .named_stack(2, &["other", "main"])
        .named_stack(3, &["grow", "main"]);
    t.alloc(1000, 0xa0, 100, 1)
        .alloc(2000, 0xb0, 200, 1)
        .alloc(3000, 0xc0, 50, 2)
        .free(4000, 0xd0) // never allocated: unmatched
        .free(5000, 0xa0)
        .realloc(6000, 0xb0, 0xe0, 300, 3) // moves B to E, with stack 3
        .free(6500, 0); // free(NULL): nothing
    let a = run(&finish_at(t, 10_000), ReplayOptions::default());

    let s = &a.replay.stats;
    assert_eq!(s.unmatched_frees, 1);
    assert_eq!(s.events, 7);
    let calls = report::calls(&a);
    assert_eq!(calls["malloc"], 3);
    assert_eq!(calls["free"], 3);
    assert_eq!(calls["realloc"], 1);
    assert_eq!(calls["munmap"], 0);
    assert_eq!(a.replay.duration_ns, 10_000);

    let r1 = row(&a, 1);
    assert_eq!((r1.allocations, r1.allocated_bytes), (2, 300));
    assert_eq!((r1.frees, r1.freed_bytes), (2, 300));
    assert_eq!((r1.live_allocations, r1.live_bytes), (0, 0));
    assert_eq!((r1.unfreed_allocations, r1.unfreed_bytes), (0, 0));
    assert_eq!(r1.peak_bytes, 300);
    assert_eq!((r1.first_alloc_ns, r1.last_alloc_ns), (1000, 2000));
    // Both lived exactly 4000 ns.
    assert_eq!(r1.lifetime_p50_ns, Some(4000));
    assert_eq!(r1.lifetime_p99_ns, Some(4000));
    assert_eq!(r1.lifetime_max_ns, Some(4000));
    assert_eq!(r1.lifetime_classes[1], 2); // 1-10 us

    let r2 = row(&a, 2);
    assert_eq!((r2.unfreed_allocations, r2.unfreed_bytes), (1, 50));
    assert_eq!(r2.lifetime_p50_ns, None);
    let r3 = row(&a, 3);
    assert_eq!((r3.allocations, r3.allocated_bytes), (1, 300));
    assert_eq!((r3.unfreed_allocations, r3.unfreed_bytes), (1, 300));
    assert_eq!(r3.peak_bytes, 300);

    assert_eq!(a.replay.peak_bytes, 350);
    assert_eq!(a.replay.live_bytes, 350);
    assert_eq!(a.replay.live_allocations, 2);
    assert!(a.truncation.is_none());

    let rep = report::leaks(&a, None);
    assert_eq!(rep.candidates.len(), 2);
    assert_eq!(rep.candidates[0].row.stack_id, 3);
    assert_eq!(rep.candidates[0].frames[0].function, "grow");
    assert_eq!(rep.candidates[0].frames[1].function, "main");
    assert_eq!(rep.candidates[0].frames[0].module.as_deref(), Some("app"));
    assert_eq!(rep.candidates[0].frames[0].line, Some(10));
    assert_eq!(rep.total_unfreed_bytes, 350);
}

#[test]
fn realloc_edge_cases() {
    let mut t = trace();
    t.named_stack(1, &["f"]);
    t.realloc(1000, 0, 0x10, 64, 1) // realloc(NULL, 64) = malloc
        .realloc(2000, 0x10, 0, 128, 1) // failed: 0x10 stays live
        .realloc(3000, 0, 0, 32, 1) // realloc(NULL) that failed
        .realloc(4000, 0x10, 0x10, 96, 1) // in place
        .realloc(5000, 0x99, 0x20, 16, 1) // old block unknown: unmatched, new one live
        .realloc(6000, 0x10, 0, 0, 1); // realloc(p, 0) = free
    let a = run(&finish_at(t, 10_000), ReplayOptions::default());
    let s = &a.replay.stats;
    assert_eq!(s.failed_reallocs, 1);
    assert_eq!(s.failed_allocations, 1);
    assert_eq!(s.unmatched_frees, 1);
    let r = row(&a, 1);
    assert_eq!((r.allocations, r.allocated_bytes), (3, 64 + 96 + 16));
    assert_eq!((r.frees, r.freed_bytes), (2, 64 + 96));
    assert_eq!((r.unfreed_allocations, r.unfreed_bytes), (1, 16));
    assert_eq!(r.peak_bytes, 96 + 16);
    // 64 B lived 3000 ns (moved in place at 4000), 96 B lived 2000 ns.
    assert_eq!(r.lifetime_max_ns, Some(3000));
    assert_eq!(report::calls(&a)["realloc"], 6);
}

#[test]
fn address_reuse_is_a_new_allocation() {
    let mut t = trace();
    t.named_stack(1, &["first"]).named_stack(2, &["second"]);
    t.alloc(1000, 0x10, 8, 1)
        .free(2000, 0x10)
        .alloc(3000, 0x10, 16, 2) // reuse after free
        .alloc(4000, 0x10, 32, 2); // reuse while live: its free was missed
    let a = run(&finish_at(t, 5000), ReplayOptions::default());
    let (r1, r2) = (row(&a, 1), row(&a, 2));
    assert_eq!((r1.frees, r1.live_bytes), (1, 0));
    assert_eq!(
        (r2.allocations, r2.frees, r2.live_allocations, r2.live_bytes),
        (2, 1, 1, 32)
    );
    assert_eq!(a.replay.stats.replaced_live, 1);
    assert_eq!(a.replay.stats.unmatched_frees, 0);
}

#[test]
fn partial_munmap_splits_mappings() {
    let mut r = Replay::new(ReplayOptions::default());
    r.alloc(1000, 0x10000, 0x4000, 5, AllocApi::Mmap);
    // Punch a hole in the middle: two pieces left, still one mapping.
    r.munmap(2000, 0x11000, Some(0x1000));
    let pieces: Vec<_> = r.live().mappings().collect();
    assert_eq!(pieces, vec![(0x10000, 0x1000, 5), (0x12000, 0x2000, 5)]);
    let agg = &r.aggregates().stacks[&5];
    assert_eq!(
        (
            agg.frees,
            agg.freed_bytes,
            agg.live_bytes,
            agg.live_allocations
        ),
        (0, 0x1000, 0x3000, 1)
    );
    // The front piece goes: not yet a free.
    r.munmap(3000, 0x10000, Some(0x1000));
    assert_eq!(r.aggregates().stacks[&5].frees, 0);
    // One range over the rest (and beyond it): now the mapping is freed, once.
    r.munmap(4000, 0x12000, Some(0x10000));
    let agg = &r.aggregates().stacks[&5];
    assert_eq!(
        (
            agg.frees,
            agg.freed_bytes,
            agg.live_bytes,
            agg.live_allocations
        ),
        (1, 0x4000, 0, 0)
    );
    assert_eq!(agg.lifetimes.max(), Some(3000));
    // A munmap of nothing mapped.
    r.munmap(5000, 0x90000, Some(0x1000));
    assert_eq!(r.stats().unmatched_munmaps, 1);

    // Trimming both ends of one mapping, then a range spanning two mappings.
    r.alloc(6000, 0x40000, 0x3000, 6, AllocApi::Mmap);
    r.alloc(6000, 0x43000, 0x1000, 7, AllocApi::Mmap);
    r.munmap(7000, 0x40000, Some(0x1000));
    r.munmap(7000, 0x42000, Some(0x2000)); // tail of the first, all of the second
    let pieces: Vec<_> = r.live().mappings().collect();
    assert_eq!(pieces, vec![(0x41000, 0x1000, 6)]);
    assert_eq!(r.aggregates().stacks[&7].frees, 1);
    assert_eq!(r.aggregates().stacks[&6].frees, 0);
    let out = r.finish();
    let r6 = out.rows.iter().find(|r| r.stack_id == 6).unwrap();
    assert_eq!((r6.unfreed_allocations, r6.unfreed_bytes), (1, 0x1000));
}

#[test]
fn munmap_lengths_from_the_trace_split_mappings() {
    let mut t = trace();
    t.named_stack(1, &["map_it"]);
    t.alloc_api(1000, 0x20000, 0x4000, 1, AllocApi::Mmap)
        .record(Record::Free {
            time: 2000,
            thread: 1,
            address: 0x21000,
            size: 0x1000,
            api: FreeApi::Munmap,
        });
    let a = run(&finish_at(t, 4000), ReplayOptions::default());
    let r = row(&a, 1);
    assert_eq!((r.allocations, r.frees, r.freed_bytes), (1, 0, 0x1000));
    assert_eq!((r.unfreed_allocations, r.unfreed_bytes), (1, 0x3000));
}

#[test]
fn munmap_from_the_trace_unmaps_to_the_end_of_the_mapping() {
    // A munmap without a length (size 0) inside a mapping cuts it from there to its end.
    let mut t = trace();
    t.named_stack(1, &["map_it"]);
    t.alloc_api(1000, 0x20000, 0x2000, 1, AllocApi::Mmap)
        .alloc_api(1000, 0x30000, 0x1000, 1, AllocApi::Mmap)
        .record(Record::Free {
            time: 2000,
            thread: 1,
            address: 0x21000,
            size: 0,
            api: FreeApi::Munmap,
        })
        .record(Record::Free {
            time: 3000,
            thread: 1,
            address: 0x30000,
            size: 0,
            api: FreeApi::Munmap,
        });
    let a = run(&finish_at(t, 4000), ReplayOptions::default());
    let r = row(&a, 1);
    assert_eq!((r.allocations, r.frees, r.freed_bytes), (2, 1, 0x2000));
    assert_eq!((r.unfreed_allocations, r.unfreed_bytes), (1, 0x1000));
    assert_eq!(report::calls(&a)["mmap"], 2);
    assert_eq!(report::calls(&a)["munmap"], 2);
}

#[test]
fn min_age_and_at() {
    let mut t = trace();
    t.named_stack(1, &["f"]);
    t.alloc(0, 0x10, 10, 1)
        .alloc(5 * MS, 0x20, 20, 1)
        .alloc(9_900_000, 0x30, 30, 1)
        .free(9 * MS, 0x20);
    let bytes = finish_at(t, 10 * MS);
    let a = run(
        &bytes,
        ReplayOptions {
            min_age_ns: MS,
            ..Default::default()
        },
    );
    let r = row(&a, 1);
    assert_eq!((r.live_allocations, r.live_bytes), (2, 40));
    assert_eq!((r.unfreed_allocations, r.unfreed_bytes), (1, 10));
    // At 6 ms: 0x30 was not allocated yet and 0x20 not freed.
    let a = run(
        &bytes,
        ReplayOptions {
            at_ns: Some(6 * MS),
            ..Default::default()
        },
    );
    assert_eq!(a.replay.duration_ns, 6 * MS);
    let r = row(&a, 1);
    assert_eq!(
        (r.unfreed_allocations, r.unfreed_bytes, r.frees),
        (2, 30, 0)
    );
    assert_eq!(a.replay.stats.events_after_at, 2);
}

#[test]
fn lifetime_and_size_histograms() {
    let mut t = trace();
    t.named_stack(1, &["f"]);
    t.alloc(0, 0x10, 1, 1)
        .free(500, 0x10) // 500 ns
        .alloc(1000, 0x20, 24, 1)
        .free(6000, 0x20) // 5 us
        .alloc(10_000, 0x30, 1024, 1)
        .free(50 * MS + 10_000, 0x30) // 50 ms
        .alloc(60 * MS, 0x40, 1025, 1); // never freed
    let a = run(&finish_at(t, 100 * MS), ReplayOptions::default());
    let l = report::lifetimes(&a, &Selection::default()).unwrap();
    assert_eq!(l.classes, [1, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
    assert_eq!((l.allocations, l.freed, l.never_freed), (4, 3, 1));
    // Sizes 1, 24, 1024, 1025: classes 0, 5 (17-32), 10 (513-1024), 11.
    let mut sizes = vec![0u64; 12];
    sizes[0] = 1;
    sizes[5] = 1;
    sizes[10] = 1;
    sizes[11] = 1;
    assert_eq!(l.sizes, sizes);
    assert_eq!(l.histogram.max(), Some(50 * MS));
    assert_eq!(
        l.histogram.quantile(0.5),
        Some(LogHistogram::bounds(LogHistogram::index(5000)).1)
    );
    let by_function = report::lifetimes(
        &a,
        &Selection {
            function: Some("f".into()),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(by_function.classes, l.classes);
    assert!(
        report::lifetimes(
            &a,
            &Selection {
                function: Some("nope".into()),
                ..Default::default()
            }
        )
        .is_err()
    );
    assert!(
        report::lifetimes(
            &a,
            &Selection {
                stack: Some(9),
                ..Default::default()
            }
        )
        .is_err()
    );
}

/// A 10 s recording: a leak (steady), a cache (grows for 4 s, then churns at its cap), an early
/// allocation never freed, and temporaries.
fn three_kinds() -> Vec<u8> {
    let mut t = trace();
    t.named_stack(1, &["fibonacci", "child", "start_thread"])
        .named_stack(2, &["cache_insert", "lookup", "main"])
        .named_stack(3, &["init_tables", "main"])
        .named_stack(4, &["tmp_buffer", "main"]);
    for i in 0..10u64 {
        t.alloc(i * MS, 0x3000_0000 + i * 0x1000, 4096, 3);
    }
    let mut cache = std::collections::VecDeque::new();
    for step in 0..1000u64 {
        let now = 10 * MS + step * 10 * MS;
        t.alloc(now, 0x1000_0000 + step * 0x2000, 8192, 1);
        let addr = 0x2000_0000 + step * 0x100;
        t.alloc(now + 1000, addr, 256, 2);
        cache.push_back(addr);
        if cache.len() > 400 {
            let old = cache.pop_front().unwrap();
            t.free(now + 2000, old);
        }
        t.alloc(now + 3000, 0x4000_0000, 64, 4)
            .free(now + 4000, 0x4000_0000);
    }
    finish_at(t, 10_020 * MS)
}

#[test]
fn verdicts_from_curves() {
    let a = run(
        &three_kinds(),
        ReplayOptions {
            min_age_ns: 500 * MS,
            ..Default::default()
        },
    );
    let rep = report::leaks(&a, None);
    let v: Vec<(u32, Verdict)> = rep
        .candidates
        .iter()
        .map(|c| (c.row.stack_id, c.verdict))
        .collect();
    assert_eq!(
        v,
        vec![
            (1, Verdict::Leak),
            (2, Verdict::GrowingThenStable),
            (3, Verdict::UnfreedAtExit)
        ]
    );
    let leak = &rep.candidates[0];
    assert_eq!(leak.frames[0].function, "fibonacci");
    assert_eq!(leak.frames[1].function, "child");
    // Allocated every 10 ms from 10 ms to 10 000 ms, the end at 10 020 ms: those after
    // 9 520 ms are younger than --min-age, 952 are older.
    assert_eq!(leak.row.unfreed_allocations, 952);
    assert_eq!(leak.row.unfreed_bytes, 952 * 8192);
    assert_eq!(leak.row.live_allocations, 1000);
    assert_eq!(rep.candidates[1].row.live_allocations, 400);
    assert_eq!(rep.candidates[2].row.unfreed_bytes, 40960);
    assert!(rep.candidates.iter().all(|c| !c.reason.is_empty()));
    // The curve of the leak rises bucket after bucket.
    let curve = &leak.row.unfreed_over_time;
    assert!(curve.windows(2).all(|w| w[1] >= w[0]));
    assert_eq!(*curve.last().unwrap(), 1000 * 8192);
    // --top keeps the ranking and the totals.
    let top = report::leaks(&a, Some(1));
    assert_eq!(top.candidates.len(), 1);
    assert_eq!(top.candidates_total, 3);
}

#[test]
fn folded_stacks_are_sorted_outermost_first() {
    let a = run(&three_kinds(), ReplayOptions::default());
    let lines = folded(&a, Metric::Unfreed);
    assert_eq!(
        lines,
        vec![
            "main;init_tables 40960".to_owned(),
            "main;lookup;cache_insert 102400".to_owned(),
            "start_thread;child;fibonacci 8192000".to_owned(),
        ]
    );
    let allocations = folded(&a, Metric::Allocations);
    assert!(allocations.contains(&"main;tmp_buffer 1000".to_owned()));
}

#[test]
fn sampled_traces_are_scaled() {
    let mut t = trace_with(TraceMeta {
        sample_bytes: 1024,
        ..TraceMeta::default()
    });
    t.named_stack(1, &["f"]);
    t.alloc(0, 0x10, 1024, 1).alloc(1, 0x20, 1024, 1);
    let a = run(&finish_at(t, 10), ReplayOptions::default());
    let r = row(&a, 1);
    let k = 1.0 / (1.0 - (-1.0f64).exp());
    assert!((a.scale(r) - k).abs() < 1e-9);
    let rep = report::leaks(&a, None);
    assert_eq!(
        rep.candidates[0].scaled.unfreed_bytes,
        (2048.0 * k).round() as u64
    );
    assert_eq!(rep.candidates[0].row.unfreed_bytes, 2048);
}

#[test]
fn lost_events_and_missing_end_are_reported() {
    let mut t = trace();
    t.named_stack(1, &["f"]);
    t.alloc(0, 0x10, 8, 1)
        .record(Record::Lost {
            time: 5,
            count: 7,
            reason: LostReason::RingBufferFull,
        })
        .record(Record::Rss {
            time: 6,
            rss_bytes: 1 << 20,
            anon_bytes: 1 << 19,
        });
    let a = run(&t.bytes(), ReplayOptions::default());
    assert_eq!(a.replay.stats.lost_events, 7);
    assert_eq!(a.replay.stats.rss.len(), 1);
    assert!(a.truncation.is_some());
    let w = a.warnings();
    assert!(w.iter().any(|w| w.contains("truncated")), "{w:?}");
    assert!(w.iter().any(|w| w.contains("lost 7 events")), "{w:?}");
}

#[test]
fn a_cut_file_is_analyzed_up_to_the_cut() {
    let mut t = trace();
    t.named_stack(1, &["f"]);
    for i in 0..200_000u64 {
        t.alloc(i, 0x1000 + i * 16, 16, 1);
    }
    let bytes = finish_at(t, 200_000);
    let cut = &bytes[..bytes.len() * 2 / 3];
    let a = run(cut, ReplayOptions::default());
    let t = a.truncation.as_ref().unwrap();
    let r = row(&a, 1);
    assert!(r.allocations > 0 && r.allocations < 200_000);
    assert_eq!(r.allocations, t.events_read);
}

#[test]
fn garbage_is_not_a_trace() {
    let e = analyze_bytes(
        Path::new("junk.bin"),
        b"hello, this is not a trace at all",
        ReplayOptions::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(e.starts_with("junk.bin: not a memtrail trace"), "{e}");
}

#[test]
fn parallel_decoding_matches_sequential() {
    let mut t = trace();
    t.named_stack(1, &["f"]).named_stack(2, &["g"]);
    for i in 0..300_000u64 {
        t.alloc(i * 10, 0x1000 + i * 16, 16 + i % 7, (i % 2) as u32 + 1);
        if i % 3 == 0 {
            t.free(i * 10 + 5, 0x1000 + i * 16);
        }
    }
    let bytes = finish_at(t, 3_000_000);
    let one =
        memtrail::analyze_from(Path::new("a"), &bytes[..], ReplayOptions::default(), 1).unwrap();
    for threads in [2, 3, 4] {
        let many = memtrail::analyze_from(
            Path::new("a"),
            &bytes[..],
            ReplayOptions::default(),
            threads,
        )
        .unwrap();
        assert_eq!(many.replay.rows, one.replay.rows, "{threads} threads");
        assert_eq!(many.records, one.records);
        assert!(many.truncation.is_none());
    }
    // Cut and corrupted files behave the same way on several threads.
    let cut = &bytes[..bytes.len() / 2];
    let a1 = memtrail::analyze_from(Path::new("a"), cut, ReplayOptions::default(), 1).unwrap();
    let a3 = memtrail::analyze_from(Path::new("a"), cut, ReplayOptions::default(), 3).unwrap();
    assert_eq!(a1.truncation, a3.truncation);
    assert!(a3.truncation.is_some());
    assert_eq!(a1.replay.rows, a3.replay.rows);
    let mut bad = bytes.clone();
    let i = bad.len() / 2;
    bad[i] ^= 0x55;
    let e1 = memtrail::analyze_from(Path::new("a"), &bad[..], ReplayOptions::default(), 1)
        .unwrap_err()
        .to_string();
    let e3 = memtrail::analyze_from(Path::new("a"), &bad[..], ReplayOptions::default(), 3)
        .unwrap_err()
        .to_string();
    assert_eq!(e1, e3);
    assert!(e1.contains("corrupt"), "{e1}");
}

#[test]
fn verdicts_and_min_age_use_the_span_the_process_was_active() {
    // The recorder starts 2 s before the first allocation and stops 10 s after the exit.
    let mut t = trace();
    t.named_stack(1, &["fibonacci", "child"]);
    for i in 0..400u64 {
        t.alloc(2000 * MS + i * 10 * MS, 0x1000 + i * 0x2000, 8192, 1);
    }
    t.record(Record::Exit {
        time: 6000 * MS,
        code: Some(0),
        signal: None,
    });
    let a = run(
        &finish_at(t, 16_000 * MS),
        ReplayOptions {
            min_age_ns: 500 * MS,
            ..Default::default()
        },
    );
    assert_eq!(a.replay.duration_ns, 16_000 * MS);
    assert_eq!(a.replay.active_start_ns, 2000 * MS);
    assert_eq!(a.replay.active_end_ns, 6000 * MS);
    let rep = report::leaks(&a, None);
    let c = &rep.candidates[0];
    assert_eq!(c.verdict, Verdict::Leak, "{}", c.reason);
    // Allocated up to 5.99 s, exit at 6 s: those after 5.5 s are younger than --min-age.
    assert_eq!(c.row.unfreed_allocations, 351);
}
