//! `memtrail diff` and `memtrail compare` on synthetic traces as a CI job runs them: batch
//! output of `compare` (CSV, JSON, Parquet, the gate over several traces) and bad input. The
//! same commands on real recordings of the Fibonacci leak and its fix are in
//! `tests/tests/diff_cli.rs` (they need root).

mod support;

use std::path::Path;

use memtrail_format::testing::TraceBuilder;
use memtrail_format::{EndTotals, StackFrame, TraceMeta};
use memtrail_tests::Scratch;
use memtrail_tests::expect_status;
use serde_json::Value;
use support::memtrail;

/// Runs memtrail, expects `status`; returns stdout and stderr.
fn expect(status: i32, args: &[&str]) -> (String, String) {
    expect_status(&format!("memtrail {args:?}"), &memtrail(args), status)
}

fn s(p: &Path) -> &str {
    p.to_str().expect("UTF-8 scratch path")
}

/// A synthetic trace: `leaked` blocks of 1 KiB from `leaky <- main`, never freed, and 100
/// temporaries from `temp <- main`, over 10 s. `offset` moves the code, as a rebuild would.
fn synthetic(path: &Path, leaked: u64, offset: u64) {
    const MS: u64 = 1_000_000;
    let meta = TraceMeta {
        tool_version: "0.1.0".into(),
        command_line: vec!["./server".into()],
        page_size: 4096,
        ..TraceMeta::default()
    };
    let mut t = TraceBuilder::new(&meta);
    t.module(1, "/srv/server", &[1; 20]);
    t.string("server.cc");
    for (id, names) in [(1u32, ["leaky", "main"]), (2, ["temp", "main"])] {
        let mut frames = Vec::new();
        for (i, name) in names.iter().enumerate() {
            let off = offset + u64::from(id) * 0x100 + i as u64 * 0x10;
            frames.push(StackFrame {
                module: 1,
                offset: off,
                address: 0x5555_0000_0000 + off,
            });
            t.symbol(1, off, name, "server.cc", 1);
        }
        t.stack(id, frames);
    }
    let mut address = 0x10_0000;
    for i in 0..leaked {
        address += 0x1000;
        t.alloc((i + 1) * 10 * MS, address, 1024, 1);
    }
    for i in 0..100 {
        address += 0x1000;
        let time = (i + 1) * 50 * MS;
        t.alloc(time, address, 64, 2).free(time + MS, address);
    }
    t.end_with(10_000 * MS, EndTotals::default());
    t.write(path);
}

#[test]
fn compare_writes_one_row_per_trace_and_stack() {
    let scratch = Scratch::new("diff-cli", "compare");
    let base = scratch.path("base.trace");
    synthetic(&base, 10, 0);
    let nightly = scratch.path("nightly");
    std::fs::create_dir_all(&nightly).unwrap();
    synthetic(&nightly.join("build-1.trace"), 10, 0x40);
    synthetic(&nightly.join("build-2.trace"), 500, 0x80);
    std::fs::write(nightly.join("notes.txt"), "not a trace").unwrap();

    // A directory: its *.trace files by name; CSV on stdout.
    let (csv, _) = expect(0, &["compare", "--baseline", s(&base), s(&nightly)]);
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 1 + 2 * 2, "{csv}");
    assert!(
        lines[0].starts_with("baseline,trace,rank,status,growth,"),
        "{csv}"
    );
    assert!(lines[1].contains("build-1.trace,1,unchanged,0.0,"), "{csv}");
    assert!(
        lines[3].contains("build-2.trace,1,grown,501760.0,"),
        "{csv}"
    );

    // JSON to a file, and the gate over every trace.
    let out = scratch.path("leaks.json");
    let (stdout, stderr) = expect(
        1,
        &[
            "compare",
            "--baseline",
            s(&base),
            s(&nightly.join("build-1.trace")),
            s(&nightly.join("build-2.trace")),
            "--format",
            "json",
            "-o",
            s(&out),
            "--fail-on-growth",
            "100K",
        ],
    );
    assert!(
        stdout.starts_with("wrote 4 rows (2 traces against "),
        "{stdout}"
    );
    assert!(
        stderr.contains("build-2.trace: growth gate failed"),
        "{stderr}"
    );
    assert!(!stderr.contains("build-1.trace"), "{stderr}");
    let rows: Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 4);
    let grown = rows
        .iter()
        .find(|r| r["crossed"] == true)
        .expect("a crossed row");
    assert_eq!(grown["top_function"], "leaky");
    assert_eq!(grown["base_unfreed_bytes"], 10 * 1024);
    assert_eq!(grown["new_unfreed_bytes"], 500 * 1024);

    // Parquet needs a file.
    let pq = scratch.path("leaks.parquet");
    expect(
        0,
        &[
            "compare",
            "--baseline",
            s(&base),
            s(&nightly),
            "--format",
            "parquet",
            "-o",
            s(&pq),
        ],
    );
    let bytes = std::fs::read(&pq).unwrap();
    assert!(bytes.starts_with(b"PAR1") && bytes.ends_with(b"PAR1"));
    let (_, e) = expect(
        2,
        &[
            "compare",
            "--baseline",
            s(&base),
            s(&nightly),
            "--format",
            "parquet",
        ],
    );
    assert!(e.contains("-o OUT.parquet"), "{e}");
}

/// The one line a failure prints, checked to be exactly one line with exit status 2.
fn fails_with_one_line(args: &[&str]) -> String {
    let (_, stderr) = expect(2, args);
    assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr}");
    stderr
}

#[test]
fn bad_input_exits_2_with_one_line() {
    let scratch = Scratch::new("diff-cli", "bad-input");
    let good = scratch.path("good.trace");
    synthetic(&good, 3, 0);

    let missing = scratch.path("missing.trace");
    let e = fails_with_one_line(&["diff", s(&good), s(&missing)]);
    assert!(
        e.starts_with("memtrail: error: ") && e.contains("missing.trace"),
        "{e}"
    );

    let junk = scratch.path("junk.trace");
    std::fs::write(&junk, b"GIF89a this is a picture, not a trace").unwrap();
    let e = fails_with_one_line(&["diff", s(&junk), s(&good)]);
    assert!(
        e.contains("junk.trace") && e.contains("not a memtrail trace"),
        "{e}"
    );

    let mut corrupt = std::fs::read(&good).unwrap();
    corrupt[20 + 20 + 30] ^= 0xff; // inside the first frame's payload
    let bad = scratch.path("corrupt.trace");
    std::fs::write(&bad, &corrupt).unwrap();
    let e = fails_with_one_line(&["diff", s(&good), s(&bad), "--fail-on-growth", "1"]);
    assert!(e.contains("corrupt.trace") && e.contains("corrupt"), "{e}");

    let e = fails_with_one_line(&["compare", "--baseline", s(&good), s(&bad)]);
    assert!(e.contains("corrupt.trace"), "{e}");
    let empty_dir = scratch.path("empty");
    std::fs::create_dir_all(&empty_dir).unwrap();
    let e = fails_with_one_line(&["compare", "--baseline", s(&good), s(&empty_dir)]);
    assert!(e.contains("no *.trace file"), "{e}");

    // Usage errors are clap's (several lines, with a hint) but exit 2 as well.
    let (_, e) = expect(2, &["diff", s(&good), s(&good), "--fail-on-growth", "lots"]);
    assert!(e.contains("growth threshold \"lots\""), "{e}");
    let (_, e) = expect(2, &["diff", s(&good)]);
    assert!(e.contains("<NEW>"), "{e}");

    // The same trace against itself: nothing changed, exit 0 even with a zero threshold.
    let (table, _) = expect(0, &["diff", s(&good), s(&good), "--fail-on-growth", "0"]);
    assert!(
        table.contains("no stack's unfreed bytes changed"),
        "{table}"
    );
    assert!(table.contains("growth gate passed"), "{table}");
}
