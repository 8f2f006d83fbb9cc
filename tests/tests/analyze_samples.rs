//! The analyzer on real traces: C programs recorded with `memtrail-record` on this kernel, then
//! analyzed with the `memtrail` binary.
//!
//! Needs root (or CAP_BPF + CAP_PERFMON + CAP_SYS_ADMIN) and gcc. Without BPF each test prints
//! why and passes, unless MEMTRAIL_REQUIRE_BPF is set (as `.ci/run` does): then it fails.
//! Binaries: `$MEMTRAIL_RECORD` / `$MEMTRAIL_BIN`, else built into this test's target directory.

use std::path::{Path, PathBuf};
use std::process::Command;

use memtrail_tests::{
    Scratch, analyzer, bpf_available, compile_sample, record_ok, repo_root, run_ok,
};
use serde_json::Value;

/// Compiles C source with frame pointers and debug info; returns the executable.
fn compile(scratch: &Scratch, source: &Path, name: &str) -> PathBuf {
    let output = scratch.path(name);
    compile_sample(source, &output);
    output
}

fn analyze(args: &[&str]) -> String {
    let out = run_ok(Command::new(analyzer()).args(args));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn leaks_json(trace: &Path, extra: &[&str]) -> Value {
    let mut args = vec!["leaks", trace.to_str().unwrap(), "--json"];
    args.extend_from_slice(extra);
    let text = analyze(&args);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

fn functions(candidate: &Value) -> Vec<String> {
    candidate["frames"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["function"].as_str().unwrap_or("").to_owned())
        .collect()
}

#[test]
fn fibonacci_is_the_first_candidate_and_a_leak() {
    if !bpf_available() {
        return;
    }
    let scratch = Scratch::new("analyze-samples", "fibonacci");
    let sample = compile(
        &scratch,
        &repo_root().join("samples/fibonacci.c"),
        "fibonacci",
    );
    let trace = scratch.path("fibonacci.trace");
    record_ok(&trace, &[], &[sample.to_str().unwrap(), "2"]);
    let v = leaks_json(&trace, &[]);
    let first = &v["candidates"][0];
    let names = functions(first);
    assert_eq!(first["verdict"], "leak", "{first}");
    assert_eq!(names[0], "fibonacci", "{names:?}");
    assert_eq!(names[1], "child", "{names:?}");
    // 200 callocs of 8 KiB a second for 2 s, less those younger than 500 ms.
    let n = first["unfreed_allocations"].as_u64().unwrap();
    assert!((200..=400).contains(&n), "{n} unfreed");
    assert_eq!(first["unfreed_bytes"].as_u64().unwrap(), n * 8192);
    assert!(
        first["frames"][0]["file"]
            .as_str()
            .unwrap()
            .ends_with("fibonacci.c")
    );

    // The flame graph of the real trace names the leak too.
    let svg = scratch.path("fib.svg");
    analyze(&[
        "flamegraph",
        trace.to_str().unwrap(),
        "-o",
        svg.to_str().unwrap(),
    ]);
    let text = std::fs::read_to_string(&svg).unwrap();
    let options = roxmltree::ParsingOptions {
        allow_dtd: true,
        ..roxmltree::ParsingOptions::default()
    };
    roxmltree::Document::parse_with_options(&text, options).expect("well-formed SVG");
    assert!(text.contains("fibonacci") && text.contains("child"));
}

#[test]
fn fixed_fibonacci_has_no_candidate_in_fibonacci() {
    if !bpf_available() {
        return;
    }
    let scratch = Scratch::new("analyze-samples", "fibonacci-fixed");
    let sample = compile(
        &scratch,
        &repo_root().join("samples/fibonacci_fixed.c"),
        "fibonacci_fixed",
    );
    let trace = scratch.path("fixed.trace");
    record_ok(&trace, &[], &[sample.to_str().unwrap(), "1.5"]);
    let v = leaks_json(&trace, &["--min-age", "0"]);
    for c in v["candidates"].as_array().unwrap() {
        let names = functions(c);
        assert!(!names.iter().any(|f| f == "fibonacci"), "{names:?}");
    }
}

/// A bounded cache: a thread inserts an 8 KiB entry every 5 ms into 150 slots, evicting (and
/// freeing) the oldest once full, for 2.5 s. It grows for ~0.75 s, then stays flat.
const CACHE_C: &str = r#"
#include <pthread.h>
#include <stdlib.h>
#include <time.h>

#define SLOTS 150
static void *slots[SLOTS];
static volatile long sum;

__attribute__((noinline)) void *cache_insert(int i) {
    char *entry = calloc(1, 8192);
    if (entry) entry[0] = (char)i;
    return entry;
}

__attribute__((noinline)) void *worker(void *arg) {
    (void)arg;
    struct timespec pause = {0, 5000000L};
    for (int i = 0; i < 500; i++) {
        int slot = i % SLOTS;
        free(slots[slot]);
        slots[slot] = cache_insert(i);
        sum += i;
        nanosleep(&pause, NULL);
    }
    return NULL;
}

int main(void) {
    pthread_t t;
    if (pthread_create(&t, NULL, worker, NULL) != 0) return 1;
    pthread_join(t, NULL);
    return 0;
}
"#;

#[test]
fn a_bounded_cache_is_not_called_a_leak() {
    if !bpf_available() {
        return;
    }
    let scratch = Scratch::new("analyze-samples", "cache");
    let source = scratch.path("cache.c");
    std::fs::write(&source, CACHE_C).unwrap();
    let sample = compile(&scratch, &source, "cache");
    let trace = scratch.path("cache.trace");
    record_ok(&trace, &[], &[sample.to_str().unwrap()]);
    // Every entry left in the cache at exit counts, however young.
    let v = leaks_json(&trace, &["--min-age", "0"]);
    let cache = v["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| functions(c).first().is_some_and(|f| f == "cache_insert"))
        .unwrap_or_else(|| panic!("no cache_insert candidate: {v}"));
    assert_ne!(cache["verdict"], "leak", "{cache}");
    assert_eq!(cache["unfreed_allocations"], 150, "{cache}");
}
