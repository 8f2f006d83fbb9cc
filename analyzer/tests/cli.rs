//! The `memtrail` binary on synthetic traces: JSON shapes (a public contract), well-formed SVGs
//! naming the expected functions, exports, and clear errors on bad input.

mod support;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use memtrail_format::testing::{StackLayout, TraceBuilder};
use memtrail_format::{AllocApi, EndTotals, LostReason, TraceMeta};
use serde_json::Value;
use support::{hostile, memtrail, ok};

const MS: u64 = 1_000_000;

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("memtrail-analyze-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn json(args: &[&str]) -> Value {
    let (stdout, _) = ok(args);
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{args:?}: {e}\n{stdout}"))
}

/// A 10 s recording of four stacks: a steady leak under `fibonacci <- child <- start_thread`,
/// a bounded cache, tables allocated at start-up and never freed, and short-lived temporaries.
fn write_trace(path: &Path) -> Vec<u8> {
    let meta = TraceMeta {
        tool_version: "0.1.0".into(),
        host_name: "testhost".into(),
        kernel_release: "6.1.0".into(),
        pid: 4242,
        command_line: vec!["./fib".into(), "10".into()],
        page_size: 4096,
        ..TraceMeta::default()
    };
    let mut t = TraceBuilder::new(&meta);
    t.module(1, "/opt/app/fib", &[0xab; 20])
        .layout(StackLayout {
            module: 1,
            load: 0x5555_0000_0000,
            file: "/src/fib.c".into(),
            first_line: 20,
        });
    t.named_stack(1, &["fibonacci", "child", "start_thread"])
        .named_stack(2, &["cache_insert", "lookup", "main"])
        .named_stack(3, &["init_tables", "main"])
        .named_stack(4, &["tmp_buffer", "main"]);
    for i in 0..10u64 {
        t.alloc_api(i * MS, 0x3000_0000 + i * 0x1000, 4096, 3, AllocApi::Calloc);
    }
    let mut cache = std::collections::VecDeque::new();
    for step in 0..1000u64 {
        let now = 10 * MS + step * 10 * MS;
        t.alloc_api(now, 0x1000_0000 + step * 0x2000, 8192, 1, AllocApi::Calloc);
        let addr = 0x2000_0000 + step * 0x100;
        t.alloc(now + 1000, addr, 256, 2);
        cache.push_back(addr);
        if cache.len() > 400 {
            let old = cache.pop_front().unwrap();
            t.free(now + 2000, old);
        }
        t.alloc(now + 3000, 0x4000_0000, 64, 4)
            .free(now + 4000, 0x4000_0000);
        if step % 100 == 0 {
            t.rss(now, (8 << 20) + step * 9000, step * 8192);
        }
    }
    t.free(10_005 * MS, 0x7777_0000) // allocated before the recording
        .lost(10_006 * MS, 3, LostReason::RingBufferFull)
        .exit(10_010 * MS, Some(0), None)
        .end_with(
            10_020 * MS,
            EndTotals {
                allocations: 3010,
                frees: 1601,
                reallocs: 0,
                lost: 3,
            },
        );
    t.write(path)
}

fn trace() -> &'static (PathBuf, Vec<u8>) {
    static TRACE: OnceLock<(PathBuf, Vec<u8>)> = OnceLock::new();
    TRACE.get_or_init(|| {
        let path = scratch("fib.trace");
        let bytes = write_trace(&path);
        (path, bytes)
    })
}

fn trace_path() -> &'static str {
    trace().0.to_str().unwrap()
}

#[test]
fn info_json_has_the_contract_fields() {
    let v = json(&["info", trace_path(), "--json"]);
    let calls = v["calls"].as_object().unwrap();
    for name in [
        "malloc",
        "calloc",
        "realloc",
        "reallocarray",
        "posix_memalign",
        "aligned_alloc",
        "memalign",
        "valloc",
        "pvalloc",
        "mmap",
        "free",
        "munmap",
    ] {
        assert!(calls.contains_key(name), "calls lacks {name}: {v}");
    }
    assert_eq!(calls["calloc"], 1010);
    assert_eq!(calls["malloc"], 2000);
    assert_eq!(calls["free"], 1601);
    assert_eq!(v["lost_events"], 3);
    assert_eq!(v["duration_ns"], 10_020 * MS);
    assert_eq!(v["truncated"], false);
    assert_eq!(v["unmatched_frees"], 1);
    assert_eq!(v["pid"], 4242);
    let (text, stderr) = ok(&["info", trace_path()]);
    assert!(
        text.contains("./fib 10") && text.contains("calloc"),
        "{text}"
    );
    assert!(stderr.contains("lost 3 events"), "{stderr}");
}

#[test]
fn leaks_json_ranks_the_leak_first_with_frames() {
    let v = json(&["leaks", trace_path(), "--json"]);
    let c = v["candidates"].as_array().unwrap();
    let verdicts: Vec<&str> = c.iter().map(|c| c["verdict"].as_str().unwrap()).collect();
    assert_eq!(verdicts, ["leak", "growing-then-stable", "unfreed-at-exit"]);
    let first = &c[0];
    // One allocation every 10 ms up to 10 s, the process exits at 10.01 s: with the default
    // --min-age of 500 ms, those after 9.51 s are too young.
    assert_eq!(first["unfreed_allocations"], 951);
    assert_eq!(first["unfreed_bytes"], 951 * 8192);
    assert!(first["reason"].as_str().unwrap().contains("growing"));
    let frames = first["frames"].as_array().unwrap();
    let names: Vec<&str> = frames
        .iter()
        .map(|f| f["function"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["fibonacci", "child", "start_thread"]);
    for f in frames {
        for key in ["function", "file", "line", "module", "address"] {
            assert!(f.get(key).is_some(), "frame lacks {key}: {f}");
        }
    }
    assert_eq!(frames[0]["file"], "/src/fib.c");
    assert_eq!(frames[0]["line"], 20);
    assert_eq!(frames[0]["module"], "fib");
    assert_eq!(frames[0]["address"], 0x5555_0000_1000u64);

    let top = json(&["leaks", trace_path(), "--format", "json", "--top", "1"]);
    assert_eq!(top["candidates"].as_array().unwrap().len(), 1);
    assert_eq!(top["candidates_total"], 3);

    // --min-age 0 counts the young blocks too; --at rewinds.
    let all = json(&["leaks", trace_path(), "--json", "--min-age", "0"]);
    assert_eq!(all["candidates"][0]["unfreed_allocations"], 1000);
    let early = json(&[
        "leaks",
        trace_path(),
        "--json",
        "--at",
        "2s",
        "--min-age",
        "0",
    ]);
    assert_eq!(early["duration_ns"], 2000 * MS);
    assert_eq!(early["candidates"][0]["unfreed_allocations"], 200);
}

#[test]
fn leaks_table_and_csv() {
    let (table, _) = ok(&["leaks", trace_path()]);
    assert!(table.contains("#1   leak"), "{table}");
    assert!(table.contains("why: still growing"), "{table}");
    assert!(
        table.contains("at fibonacci /src/fib.c:20 [fib]"),
        "{table}"
    );
    let (csv, _) = ok(&["leaks", trace_path(), "--format", "csv"]);
    let mut lines = csv.lines();
    let header = lines.next().unwrap();
    assert!(
        header.starts_with("rank,stack_id,verdict,unfreed_bytes"),
        "{header}"
    );
    assert_eq!(lines.count(), 3);
}

fn parse_svg(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    // inferno's SVG has a DOCTYPE; allow it (it declares no entities).
    let options = roxmltree::ParsingOptions {
        allow_dtd: true,
        ..roxmltree::ParsingOptions::default()
    };
    roxmltree::Document::parse_with_options(&text, options)
        .unwrap_or_else(|e| panic!("{} is not well-formed XML: {e}", path.display()));
    text
}

#[test]
fn flamegraph_is_well_formed_deterministic_and_named() {
    let out = scratch("unfreed.svg");
    let out_s = out.to_str().unwrap();
    ok(&["flamegraph", trace_path(), "-o", out_s]);
    let svg = parse_svg(&out);
    for name in ["fibonacci", "child", "cache_insert", "init_tables"] {
        assert!(svg.contains(name), "flame graph lacks {name}");
    }
    assert!(
        !svg.contains("tmp_buffer"),
        "freed temporaries are not unfreed bytes"
    );
    assert!(svg.contains("./fib 10"), "title names the command");
    let again = scratch("unfreed-again.svg");
    ok(&["flamegraph", trace_path(), "-o", again.to_str().unwrap()]);
    assert_eq!(
        svg,
        std::fs::read_to_string(&again).unwrap(),
        "not deterministic"
    );

    for (metric, inverted) in [("allocations", true), ("peak", true), ("allocated", false)] {
        let out = scratch(&format!("{metric}.svg"));
        let mut args = vec![
            "flamegraph",
            trace_path(),
            "-o",
            out.to_str().unwrap(),
            "--metric",
            metric,
        ];
        if inverted {
            args.push("--inverted");
        }
        ok(&args);
        let svg = parse_svg(&out);
        assert!(svg.contains("fibonacci"), "{metric}: no fibonacci");
        if metric == "allocations" {
            // A third of the calls: wide enough to be drawn.
            assert!(svg.contains("tmp_buffer"), "{metric} shows temporaries");
        }
    }
    let folded = scratch("folded.txt");
    ok(&[
        "flamegraph",
        trace_path(),
        "-o",
        folded.to_str().unwrap(),
        "--folded",
    ]);
    let text = std::fs::read_to_string(&folded).unwrap();
    assert!(
        text.contains("start_thread;child;fibonacci 8192000"),
        "{text}"
    );
}

#[test]
fn lifetimes_text_json_csv_and_svg() {
    let v = json(&["lifetimes", trace_path(), "--json"]);
    assert_eq!(v["allocations"], 3010);
    assert_eq!(v["never_freed"], 1410);
    let buckets = v["lifetimes"].as_array().unwrap();
    assert_eq!(buckets.len(), 12);
    // Temporaries live 1 us; evicted cache entries 4 s.
    assert_eq!(buckets[1]["label"], "1-10 us");
    assert_eq!(buckets[1]["count"], 1000);
    assert_eq!(buckets[7]["count"], 600);
    assert!(v["sizes"].as_array().unwrap().len() >= 14);

    let f = json(&[
        "lifetimes",
        trace_path(),
        "--json",
        "--function",
        "tmp_buffer",
    ]);
    assert_eq!(f["allocations"], 1000);
    assert_eq!(f["never_freed"], 0);
    let s = json(&["lifetimes", trace_path(), "--json", "--stack", "1"]);
    assert_eq!(s["never_freed"], 1000);

    let svg = scratch("lifetimes.svg");
    let (text, _) = ok(&["lifetimes", trace_path(), "--svg", svg.to_str().unwrap()]);
    assert!(text.contains("never freed"), "{text}");
    let svg = parse_svg(&svg);
    assert!(svg.contains("never freed") && svg.contains("size of blocks"));
    let (csv, _) = ok(&["lifetimes", trace_path(), "--format", "csv"]);
    assert!(csv.starts_with("kind,label,low,high,count"), "{csv}");
}

#[test]
fn timeline_svg_and_json() {
    let svg = scratch("timeline.svg");
    let (text, _) = ok(&["timeline", trace_path(), "--svg", svg.to_str().unwrap()]);
    assert!(text.contains("rss: 10 samples"), "{text}");
    let svg = parse_svg(&svg);
    assert!(svg.contains("polyline") && svg.contains("RSS"));
    let v = json(&["timeline", trace_path(), "--json"]);
    assert_eq!(v["rss"].as_array().unwrap().len(), 10);
    assert!(!v["heap_bytes"].as_array().unwrap().is_empty());
}

#[test]
fn exports() {
    let csv = scratch("stacks.csv");
    ok(&[
        "export",
        trace_path(),
        "--format",
        "csv",
        "--what",
        "stacks",
        "-o",
        csv.to_str().unwrap(),
    ]);
    let text = std::fs::read_to_string(&csv).unwrap();
    assert!(text.starts_with("stack_id,verdict,unfreed_bytes"), "{text}");
    assert_eq!(text.lines().count(), 5);

    let js = scratch("allocations.json");
    ok(&[
        "export",
        trace_path(),
        "--format",
        "json",
        "--what",
        "allocations",
        "-o",
        js.to_str().unwrap(),
    ]);
    let v: Value = serde_json::from_str(&std::fs::read_to_string(&js).unwrap()).unwrap();
    let rows = v.as_array().unwrap();
    assert_eq!(rows.len(), 3010);
    let freed = rows.iter().filter(|r| !r["free_ns"].is_null()).count();
    assert_eq!(freed, 1600);
    assert!(rows[0].get("lifetime_ns").is_some() && rows[0].get("api").is_some());

    let pq = scratch("stacks.parquet");
    ok(&[
        "export",
        trace_path(),
        "--format",
        "parquet",
        "-o",
        pq.to_str().unwrap(),
    ]);
    let bytes = std::fs::read(&pq).unwrap();
    assert!(bytes.starts_with(b"PAR1") && bytes.ends_with(b"PAR1"));
}

fn fails(args: &[&str]) -> String {
    let out = memtrail(args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "memtrail {args:?} should fail");
    assert!(!stderr.contains("panicked"), "{stderr}");
    stderr
}

fn fails_on_one_line(args: &[&str]) -> String {
    let stderr = fails(args);
    assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr}");
    assert!(stderr.starts_with("memtrail: error: "), "{stderr}");
    stderr
}

#[test]
fn bad_inputs_fail_with_one_clear_line() {
    let junk = scratch("junk.bin");
    std::fs::write(&junk, b"GIF89a this is a picture, not a trace, honestly").unwrap();
    let e = fails_on_one_line(&["leaks", junk.to_str().unwrap()]);
    assert!(e.contains("not a memtrail trace"), "{e}");

    let empty = scratch("empty.trace");
    std::fs::write(&empty, b"").unwrap();
    let e = fails_on_one_line(&["info", empty.to_str().unwrap()]);
    assert!(e.contains("not a memtrail trace"), "{e}");

    let e = fails_on_one_line(&["info", scratch("does-not-exist.trace").to_str().unwrap()]);
    assert!(e.contains("does-not-exist.trace"), "{e}");

    let bytes = &trace().1;
    let mut newer = bytes.clone();
    newer[8..10].copy_from_slice(&9u16.to_le_bytes());
    let p = scratch("newer.trace");
    std::fs::write(&p, &newer).unwrap();
    let e = fails_on_one_line(&["leaks", p.to_str().unwrap()]);
    assert!(e.contains("newer"), "{e}");

    let mut corrupt = bytes.clone();
    let mid = 20 + 20 + 100; // inside the first frame's payload
    corrupt[mid] ^= 0xff;
    let p = scratch("corrupt.trace");
    std::fs::write(&p, &corrupt).unwrap();
    let e = fails_on_one_line(&["leaks", p.to_str().unwrap()]);
    assert!(e.contains("corrupt"), "{e}");

    // A usage error (clap's own message, with a hint) is not a crash either.
    let e = fails(&["leaks", trace_path(), "--min-age", "12 parsecs"]);
    assert!(e.contains("is not a duration"), "{e}");
}

#[test]
fn a_truncated_trace_is_analyzed_with_a_warning() {
    let bytes = &trace().1;
    let p = scratch("cut.trace");
    std::fs::write(&p, &bytes[..bytes.len() - 7]).unwrap();
    let out = memtrail(&["leaks", p.to_str().unwrap(), "--json"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("warning") && stderr.contains("truncated"),
        "{stderr}"
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["truncated"], true);
}

#[test]
fn an_empty_trace_gives_empty_reports_not_errors() {
    let path = scratch("empty-events.trace");
    let mut t = TraceBuilder::new(&TraceMeta::default());
    t.end(0);
    t.write(&path);
    let p = path.to_str().unwrap();
    let v = json(&["info", p, "--json"]);
    assert_eq!(v["events"], 0);
    let v = json(&["leaks", p, "--json"]);
    assert_eq!(v["candidates"].as_array().unwrap().len(), 0);
    ok(&["leaks", p]);
    ok(&["leaks", p, "--format", "csv"]);
    let svg = scratch("empty.svg");
    ok(&["flamegraph", p, "-o", svg.to_str().unwrap()]);
    parse_svg(&svg);
    let v = json(&["lifetimes", p, "--json"]);
    assert_eq!(v["allocations"], 0);
    let svg = scratch("empty-lifetimes.svg");
    ok(&["lifetimes", p, "--svg", svg.to_str().unwrap()]);
    parse_svg(&svg);
    let svg = scratch("empty-timeline.svg");
    ok(&["timeline", p, "--svg", svg.to_str().unwrap()]);
    parse_svg(&svg);
    for (format, what) in [
        ("csv", "stacks"),
        ("json", "allocations"),
        ("parquet", "stacks"),
        ("parquet", "allocations"),
    ] {
        let out = scratch(&format!("empty-{what}.{format}"));
        ok(&[
            "export",
            p,
            "--format",
            format,
            "--what",
            what,
            "-o",
            out.to_str().unwrap(),
        ]);
    }
}

/// Runs `args`, expecting exit status 2 and one line on stderr; returns the line.
fn exits_2_on_one_line(args: &[&str]) -> String {
    let out = memtrail(args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "memtrail {args:?}: {stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr}");
    assert!(stderr.starts_with("memtrail: error: "), "{stderr}");
    stderr
}

#[test]
fn a_trace_declaring_more_than_the_memory_limit_exits_2() {
    let big = scratch("hostile-live-blocks.trace");
    std::fs::write(&big, hostile::live_blocks(300_000)).unwrap();
    let big = big.to_str().unwrap();
    let stderr = exits_2_on_one_line(&["leaks", big, "--memory-limit", "4M"]);
    assert!(
        stderr.contains(&format!(
            "{big}: the trace declares more than the memory limit allows: "
        )),
        "{stderr}"
    );
    assert!(stderr.contains(" live blocks"), "{stderr}");
    assert!(
        stderr.contains("the limit is 4.00 MiB (--memory-limit); pass --memory-limit to raise it"),
        "{stderr}"
    );
    // Every command that reads traces takes the flag (K/M/G as the other size flags).
    let svg = scratch("hostile.svg");
    let out = scratch("hostile.out");
    let (svg, out) = (svg.to_str().unwrap(), out.to_str().unwrap());
    for args in [
        vec!["info", big, "--memory-limit", "4096K"],
        vec!["flamegraph", big, "-o", svg, "--memory-limit", "4M"],
        vec!["lifetimes", big, "--memory-limit", "4MiB"],
        vec!["timeline", big, "--memory-limit", "4M"],
        vec![
            "export",
            big,
            "--format",
            "csv",
            "-o",
            out,
            "--memory-limit",
            "4M",
        ],
        vec!["diff", big, big, "--memory-limit", "4M"],
        vec!["compare", "--baseline", big, big, "--memory-limit", "4M"],
        vec!["report", big, "-o", out, "--memory-limit", "0.004G"],
    ] {
        let stderr = exits_2_on_one_line(&args);
        assert!(stderr.contains(" live blocks"), "{args:?}: {stderr}");
    }
    // With room the same trace is analyzed.
    let (stdout, _) = ok(&[
        "leaks",
        big,
        "--memory-limit",
        "64M",
        "--json",
        "--min-age",
        "0",
    ]);
    let v: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["total_unfreed_allocations"], 300_000);
    // A bad size is a usage error.
    exits_2_on_one_line_or_usage(&["leaks", big, "--memory-limit", "lots"]);
}

fn exits_2_on_one_line_or_usage(args: &[&str]) {
    let out = memtrail(args);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--memory-limit"), "{stderr}");
}

#[test]
fn sums_past_2_to_the_64_warn_and_saturate() {
    let path = scratch("hostile-huge.trace");
    std::fs::write(&path, hostile::huge_values()).unwrap();
    let path = path.to_str().unwrap();
    let (stdout, stderr) = ok(&["leaks", path, "--json"]);
    assert!(
        stderr.contains("add up past 2^64 - 1 (a crafted or corrupt trace?)"),
        "{stderr}"
    );
    let v: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["saturated"], true);
    assert_eq!(v["total_unfreed_bytes"], u64::MAX);
    let svg = scratch("hostile-huge.svg");
    ok(&["flamegraph", path, "-o", svg.to_str().unwrap()]);
    ok(&["info", path]);
}
