//! `memtrail diff` as a CI job runs it, on real recordings of the Fibonacci leak and its fix:
//! stacks matched across builds and across ASLR layouts, the gate's exit status. `compare` and
//! bad input, on synthetic traces, are in `analyzer/tests/diff_cli.rs`.
//!
//! These tests need root (BPF) and gcc; without BPF they print why and pass, unless
//! MEMTRAIL_REQUIRE_BPF is set (as `.ci/run` does): then they fail.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use memtrail_tests::{
    Scratch, analyzer, bpf_available, compile_sample, expect_status, record_ok, repo_root,
};
use serde_json::Value;

fn memtrail(args: &[&str]) -> Output {
    Command::new(analyzer())
        .args(args)
        .output()
        .expect("run memtrail")
}

/// Runs memtrail, expects `status`; returns stdout and stderr.
fn expect(status: i32, args: &[&str]) -> (String, String) {
    expect_status(&format!("memtrail {args:?}"), &memtrail(args), status)
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
    record_ok(&leak_trace, &[], &[s(&leaking), "2"]);
    record_ok(&fixed_trace, &[], &[s(&fixed), "2"]);

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
    record_ok(&one, &[], &[s(&app), "1"]);
    record_ok(&two, &[], &[s(&app), "1"]);

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
