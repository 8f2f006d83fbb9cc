//! `memtrail diff` and `memtrail compare` as a CI job runs them: on real recordings of the
//! Fibonacci leak and its fix (stacks matched across builds and across ASLR layouts, the gate's
//! exit status), and on synthetic traces (batch output, bad input).
//!
//! The recorded tests need root (BPF) and gcc; without BPF they print why and pass, unless
//! MEMTRAIL_REQUIRE_BPF is set (as `.ci/run` does): then they fail.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use memtrail_format::{
    AllocApi, EndTotals, FreeApi, Module, Record, Stack, StackFrame, Symbol, SymbolFrame,
    TraceMeta, TraceWriter, Unwinder,
};
use memtrail_tests::{
    Scratch, bpf_available, compile_sample, record_command, repo_root, workspace_binary,
};
use serde_json::Value;

fn memtrail(args: &[&str]) -> Output {
    Command::new(workspace_binary("MEMTRAIL_BIN", "memtrail"))
        .args(args)
        .output()
        .expect("run memtrail")
}

/// Runs memtrail, expects `status`; returns stdout and stderr.
fn expect(status: i32, args: &[&str]) -> (String, String) {
    let out = memtrail(args);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        out.status.code(),
        Some(status),
        "memtrail {args:?}: stderr {stderr}\nstdout {stdout}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    (stdout, stderr)
}

fn json(status: i32, args: &[&str]) -> Value {
    let (stdout, _) = expect(status, args);
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{args:?}: {e}\n{stdout}"))
}

fn s(p: &Path) -> &str {
    p.to_str().expect("UTF-8 scratch path")
}

/// The stack whose innermost frame is `function`.
fn stack<'a>(diff: &'a Value, function: &str) -> &'a Value {
    diff["stacks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|st| st["frames"][0]["function"] == function)
        .unwrap_or_else(|| panic!("no stack in {function}: {diff:#}"))
}

/// Builds a sample as `app` in its own directory: a rebuild of the same program, as CI sees it
/// (module names match, the code moved).
fn build_app(scratch: &Scratch, sample: &str, dir: &str) -> PathBuf {
    let exe = scratch.path(dir).join("app");
    compile_sample(&repo_root().join("samples").join(sample), &exe);
    exe
}

#[test]
fn fibonacci_leak_against_its_fix() {
    if !bpf_available() {
        return;
    }
    let scratch = Scratch::new("diff-cli", "fibonacci");
    let leaking = build_app(&scratch, "fibonacci.c", "leaking");
    let fixed = build_app(&scratch, "fibonacci_fixed.c", "fixed");
    let (leak_trace, fixed_trace) = (scratch.path("leak.trace"), scratch.path("fixed.trace"));
    record_command(&leak_trace, &[s(&leaking), "2"]);
    record_command(&fixed_trace, &[s(&fixed), "2"]);

    // The fix against the leak: the Fibonacci stack shrank to nothing; the gate passes.
    let v = json(
        0,
        &[
            "diff",
            s(&leak_trace),
            s(&fixed_trace),
            "--json",
            "--fail-on-growth",
            "64K",
        ],
    );
    let fib = stack(&v, "fibonacci");
    assert_eq!(fib["frames"][1]["function"], "child", "{fib:#}");
    assert!(
        fib["status"] == "shrunk" || fib["status"] == "gone",
        "{fib:#}"
    );
    let base_unfreed = fib["base"]["unfreed_bytes"].as_u64().unwrap();
    // 200 callocs of 8 KiB a second for 2 s, less those younger than 500 ms.
    assert!(base_unfreed >= 200 * 8192, "{fib:#}");
    assert_eq!(fib["new"]["unfreed_bytes"], 0, "{fib:#}");
    assert_eq!(fib["base"]["verdict"], "leak", "{fib:#}");
    assert!(fib["growth"].as_f64().unwrap() <= -(base_unfreed as f64));
    assert_eq!(v["gate"]["passed"], true, "{v:#}");
    // Both allocate about 200 times a second; the fixed build's blocks live microseconds.
    for side in ["base", "new"] {
        let rate = fib[side]["allocations_per_second"].as_f64().unwrap();
        assert!((100.0..=220.0).contains(&rate), "{side}: {rate}");
    }
    assert!(fib["new"]["lifetime_p50_ns"].as_u64().unwrap() < 100_000_000);

    // Reversed, the leak is what grew: the gate exits 1 and names the stack on stderr, while
    // stdout keeps the table.
    let (table, stderr) = expect(
        1,
        &[
            "diff",
            s(&fixed_trace),
            s(&leak_trace),
            "--fail-on-growth",
            "64K",
            "--fail-on-growth",
            "50%",
        ],
    );
    assert!(
        stderr.starts_with("memtrail: growth gate failed: 1 stack grew past +64.0 KiB and +50%"),
        "{stderr}"
    );
    assert!(
        stderr.contains("#1 grown") && stderr.contains("fibonacci [app] <- child [app]"),
        "{stderr}"
    );
    assert!(table.contains("<- crossed"), "{table}");
    assert!(
        table.lines().any(|l| l.trim() == "at fibonacci [app]"),
        "{table}"
    );

    // The same with JSON: the gate is in it, stdout is only JSON.
    let v = json(
        1,
        &[
            "diff",
            s(&fixed_trace),
            s(&leak_trace),
            "--json",
            "--fail-on-growth",
            "64K",
        ],
    );
    assert_eq!(v["stacks"][0]["frames"][0]["function"], "fibonacci");
    assert_eq!(v["stacks"][0]["crossed"], true);
    assert_eq!(v["gate"]["passed"], false);
    assert_eq!(v["gate"]["crossed"], serde_json::json!([1]));

    // A threshold above the leak lets it through.
    expect(
        0,
        &[
            "diff",
            s(&fixed_trace),
            s(&leak_trace),
            "--fail-on-growth",
            "100M",
        ],
    );

    // The differential flame graph names the leak and is well-formed.
    let svg = scratch.path("diff.svg");
    expect(
        0,
        &[
            "diff",
            s(&fixed_trace),
            s(&leak_trace),
            "--flamegraph",
            s(&svg),
        ],
    );
    let text = std::fs::read_to_string(&svg).unwrap();
    let options = roxmltree::ParsingOptions {
        allow_dtd: true,
        ..roxmltree::ParsingOptions::default()
    };
    roxmltree::Document::parse_with_options(&text, options).expect("well-formed SVG");
    assert!(text.contains("fibonacci") && text.contains("child") && text.contains("memtrail diff"));
}

#[test]
fn two_runs_of_one_build_match_every_stack() {
    if !bpf_available() {
        return;
    }
    let scratch = Scratch::new("diff-cli", "aslr");
    let app = build_app(&scratch, "fibonacci.c", "build");
    let (one, two) = (scratch.path("one.trace"), scratch.path("two.trace"));
    record_command(&one, &[s(&app), "1"]);
    record_command(&two, &[s(&app), "1"]);

    let v = json(0, &["diff", s(&one), s(&two), "--json", "--min-age", "0"]);
    assert_eq!(v["summary"]["new"], 0, "{v:#}");
    assert_eq!(v["summary"]["gone"], 0, "{v:#}");
    let stacks = v["stacks"].as_array().unwrap();
    assert!(stacks.len() >= 2, "{v:#}");
    for st in stacks {
        assert!(!st["base"].is_null() && !st["new"].is_null(), "{st:#}");
    }
    let fib = stack(&v, "fibonacci");
    assert_eq!(fib["new"]["verdict"], "leak");

    // The addresses did differ: the match was by name, not address (when the kernel
    // randomizes; it does by default).
    let aslr = std::fs::read_to_string("/proc/sys/kernel/randomize_va_space")
        .map(|s| s.trim() != "0")
        .unwrap_or(false);
    if aslr {
        let address = |trace: &Path| {
            let (out, _) = expect(0, &["leaks", s(trace), "--json", "--min-age", "0"]);
            let leaks: Value = serde_json::from_str(&out).unwrap();
            leaks["candidates"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["frames"][0]["function"] == "fibonacci")
                .map(|c| c["frames"][0]["address"].as_u64().unwrap())
                .expect("a fibonacci candidate")
        };
        assert_ne!(address(&one), address(&two), "same load address twice");
    } else {
        eprintln!("ASLR is off here: the two runs share their addresses");
    }
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
    let mut w = TraceWriter::new(Vec::new(), &meta).unwrap();
    w.write(&Record::Module(Box::new(Module {
        id: 1,
        path: "/srv/server".into(),
        build_id: vec![1; 20],
        ranges: vec![],
    })))
    .unwrap();
    let file = w.intern("server.cc").unwrap();
    for (id, names) in [(1u32, ["leaky", "main"]), (2, ["temp", "main"])] {
        let mut frames = Vec::new();
        for (i, name) in names.iter().enumerate() {
            let off = offset + u64::from(id) * 0x100 + i as u64 * 0x10;
            frames.push(StackFrame {
                module: 1,
                offset: off,
                address: 0x5555_0000_0000 + off,
            });
            let function = w.intern(name).unwrap();
            w.write(&Record::Symbol(Symbol {
                module: 1,
                offset: off,
                frames: vec![SymbolFrame {
                    function,
                    file,
                    line: 1,
                }],
            }))
            .unwrap();
        }
        w.write(&Record::Stack(Stack {
            id,
            unwinder: Unwinder::FramePointer,
            truncated: false,
            frames,
        }))
        .unwrap();
    }
    let mut address = 0x10_0000;
    for i in 0..leaked {
        address += 0x1000;
        w.write(&Record::Alloc {
            time: (i + 1) * 10 * MS,
            thread: 1,
            address,
            size: 1024,
            stack: 1,
            api: AllocApi::Malloc,
        })
        .unwrap();
    }
    for i in 0..100 {
        address += 0x1000;
        let time = (i + 1) * 50 * MS;
        for (time, rec) in [(time, true), (time + MS, false)] {
            let r = if rec {
                Record::Alloc {
                    time,
                    thread: 1,
                    address,
                    size: 64,
                    stack: 2,
                    api: AllocApi::Malloc,
                }
            } else {
                Record::Free {
                    time,
                    thread: 1,
                    address,
                    size: 0,
                    api: FreeApi::Free,
                }
            };
            w.write(&r).unwrap();
        }
    }
    w.write(&Record::End {
        time: 10_000 * MS,
        totals: EndTotals::default(),
    })
    .unwrap();
    std::fs::write(path, w.finish().unwrap()).unwrap();
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
