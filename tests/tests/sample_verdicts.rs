//! Verdicts on the real-world leak shapes of samples/: each sample is built (gcc, g++, cargo),
//! recorded with `memtrail-record` (real probes), and analyzed with `memtrail leaks --json`.
//! A leaking sample's first candidate must be a `leak` with the leaking function among its
//! frames; a correct variant (and the bounded cache) must have no `leak` candidate at all.
//!
//! The case table has a build dimension: verdicts are checked for the builds in
//! [`VERDICT_BUILDS`], with frame pointers and without (whose stacks the recorder unwinds with
//! the modules' CFI).
//!
//! Needs root (or CAP_BPF + CAP_PERFMON + CAP_SYS_ADMIN), gcc, g++ and cargo. Without BPF each
//! test prints why and passes, unless MEMTRAIL_REQUIRE_BPF is set (as `.ci/run` does).
//! Binaries: `$MEMTRAIL_RECORD` / `$MEMTRAIL_BIN`, else built into this test's target directory.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use memtrail_tests::{Scratch, analyzer, bpf_available, recorder, repo_root, run_ok};
use serde_json::Value;

/// How a sample is compiled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Build {
    /// `-fno-omit-frame-pointer` (C, C++), `-C force-frame-pointers=yes` (Rust).
    FramePointers,
    /// `-fomit-frame-pointer` (C, C++), the default flags (Rust).
    NoFramePointers,
}

/// The builds whose verdicts are checked: both, since the recorder unwinds builds without
/// frame pointers with their CFI (`--unwind auto`).
const VERDICT_BUILDS: &[Build] = &[Build::FramePointers, Build::NoFramePointers];

impl Build {
    fn name(self) -> &'static str {
        match self {
            Build::FramePointers => "fp",
            Build::NoFramePointers => "nofp",
        }
    }

    fn c_flag(self) -> &'static str {
        match self {
            Build::FramePointers => "-fno-omit-frame-pointer",
            Build::NoFramePointers => "-fomit-frame-pointer",
        }
    }
}

/// What a sample is made from.
#[derive(Debug, Clone, Copy)]
enum Program {
    /// samples/<file>, C.
    C(&'static str),
    /// samples/<file>, C++.
    Cxx(&'static str),
    /// samples/library_handles.c linked against libwidget.so from samples/widget_library.c.
    WidgetLibrary,
    /// A binary of the cargo package samples/rust-leaks.
    Rust(&'static str),
}

/// What a correct report says.
#[derive(Debug, Clone, Copy)]
enum Expect {
    /// The first candidate is a `leak` whose frames hold all of `first`; each function of
    /// `others` is in the frames of some other `leak` candidate.
    Leak {
        first: &'static [&'static str],
        others: &'static [&'static str],
    },
    /// No candidate is a `leak`. `live` names a function whose stack must still be reported
    /// (with another verdict), for samples that end with memory in use by design.
    NoLeak { live: Option<&'static str> },
}

#[derive(Debug)]
struct Case {
    name: &'static str,
    program: Program,
    args: &'static [&'static str],
    expect: Expect,
    /// Lower bounds on `memtrail info --json` call counts: (any of these APIs, at least).
    min_calls: &'static [(&'static [&'static str], u64)],
}

const fn leak(first: &'static [&'static str]) -> Expect {
    Expect::Leak { first, others: &[] }
}

const NO_LEAK: Expect = Expect::NoLeak { live: None };

/// Every sample of samples/, and what a correct report says about it (each sample's header
/// explains why). Run times are 2-2.5 s.
const CASES: &[Case] = &[
    Case {
        name: "fibonacci",
        program: Program::C("fibonacci.c"),
        args: &["2"],
        expect: leak(&["fibonacci", "child"]),
        min_calls: &[(&["calloc"], 200)],
    },
    Case {
        name: "fibonacci_fixed",
        program: Program::C("fibonacci_fixed.c"),
        args: &["2"],
        expect: NO_LEAK,
        min_calls: &[(&["calloc"], 200)],
    },
    Case {
        // libstdc++'s operator new keeps no frame pointer: new_buffer, its caller, is skipped
        // by the frame-pointer walk; handle_request, the function with the bug, is not.
        name: "error_path",
        program: Program::Cxx("error_path.cpp"),
        args: &["2"],
        expect: leak(&["handle_request(int)", "serve(bool, double)"]),
        min_calls: &[(&["malloc"], 200)],
    },
    Case {
        name: "error_path_raii",
        program: Program::Cxx("error_path.cpp"),
        args: &["--raii", "2"],
        expect: NO_LEAK,
        min_calls: &[(&["malloc"], 200)],
    },
    Case {
        name: "producer_consumer",
        program: Program::C("producer_consumer.c"),
        args: &["2"],
        expect: NO_LEAK,
        min_calls: &[(&["malloc"], 400)],
    },
    Case {
        name: "producer_consumer_drop",
        program: Program::C("producer_consumer.c"),
        args: &["--drop", "2"],
        expect: leak(&["new_message", "producer"]),
        min_calls: &[(&["malloc"], 400)],
    },
    Case {
        name: "library_handles",
        program: Program::WidgetLibrary,
        args: &["2"],
        expect: Expect::Leak {
            first: &["widget_open", "render_page"],
            others: &["widget_open"],
        },
        min_calls: &[(&["calloc"], 100)],
    },
    Case {
        name: "library_handles_close",
        program: Program::WidgetLibrary,
        args: &["--close", "2"],
        expect: NO_LEAK,
        min_calls: &[(&["calloc"], 100)],
    },
    Case {
        name: "bounded_cache",
        program: Program::C("bounded_cache.c"),
        args: &["2.5"],
        expect: Expect::NoLeak {
            live: Some("cache_insert"),
        },
        min_calls: &[(&["calloc"], 300)],
    },
    Case {
        name: "realloc_buffer",
        program: Program::C("realloc_buffer.c"),
        args: &["2"],
        expect: leak(&["append_text", "build_response"]),
        min_calls: &[(&["realloc"], 500)],
    },
    Case {
        // glibc's aligned_alloc is memalign: the recorder may report either name.
        name: "aligned_blocks",
        program: Program::C("aligned_blocks.c"),
        args: &["2"],
        expect: Expect::Leak {
            first: &["new_io_page", "submit_batch"],
            others: &["new_descriptor"],
        },
        min_calls: &[
            (&["posix_memalign"], 100),
            (&["aligned_alloc", "memalign"], 100),
        ],
    },
    Case {
        name: "shared_mappings",
        program: Program::C("shared_mappings.c"),
        args: &["2"],
        expect: leak(&["map_segment", "run_job"]),
        min_calls: &[(&["mmap"], 50)],
    },
    Case {
        // Two call sites of new_session (client and server): two stacks of buffers leak.
        name: "rust_rc_cycle",
        program: Program::Rust("rc_cycle"),
        args: &["2"],
        expect: Expect::Leak {
            first: &["new_session", "connect_pair"],
            others: &["new_session"],
        },
        min_calls: &[(&["malloc"], 400)],
    },
    Case {
        name: "rust_mem_forget",
        program: Program::Rust("mem_forget"),
        args: &["2"],
        expect: leak(&["submit_frame"]),
        min_calls: &[(&["calloc", "malloc"], 200)],
    },
];

fn case(name: &str) -> &'static Case {
    CASES
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no case {name}"))
}

/// Runs `program args`, expecting success without a panic; returns its stdout.
fn run_tool(program: &Path, args: &[&str]) -> String {
    let output = run_ok(Command::new(program).args(args));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn compile(compiler: &str, build: Build, output: &Path, inputs: &[&Path], extra: &[&str]) {
    memtrail_tests::compile(
        compiler,
        &["-O1", "-g", build.c_flag(), "-pthread"],
        output,
        inputs,
        extra,
    );
}

/// The Rust samples' release build for `build`, made once per test process, in a directory
/// of this test's target directory that persists between runs (cargo rebuilds only changes).
fn rust_samples(build: Build) -> &'static Path {
    static BUILT: [OnceLock<PathBuf>; 2] = [OnceLock::new(), OnceLock::new()];
    let slot = match build {
        Build::FramePointers => &BUILT[0],
        Build::NoFramePointers => &BUILT[1],
    };
    slot.get_or_init(|| {
        let target =
            Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("rust-leaks-{}", build.name()));
        let mut cargo = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
        cargo
            .args(["build", "-q", "--release", "--locked", "--offline"])
            .arg("--manifest-path")
            .arg(repo_root().join("samples/rust-leaks/Cargo.toml"))
            .env("CARGO_TARGET_DIR", &target)
            .env_remove("CARGO_ENCODED_RUSTFLAGS");
        match build {
            Build::FramePointers => cargo.env("RUSTFLAGS", "-C force-frame-pointers=yes"),
            Build::NoFramePointers => cargo.env_remove("RUSTFLAGS"),
        };
        run_ok(&mut cargo);
        target.join("release")
    })
}

/// Builds the case's program for `build` in `scratch`; returns the executable.
fn build_program(scratch: &Scratch, program: Program, build: Build) -> PathBuf {
    let samples = repo_root().join("samples");
    match program {
        Program::C(source) | Program::Cxx(source) => {
            let compiler = if matches!(program, Program::Cxx(_)) {
                "g++"
            } else {
                "gcc"
            };
            let stem = Path::new(source).file_stem().and_then(|s| s.to_str());
            let output = scratch.path(stem.expect("source name"));
            compile(compiler, build, &output, &[&samples.join(source)], &[]);
            output
        }
        Program::WidgetLibrary => {
            let library = scratch.path("libwidget.so");
            compile(
                "gcc",
                build,
                &library,
                &[&samples.join("widget_library.c")],
                &["-shared", "-fPIC"],
            );
            let output = scratch.path("library_handles");
            let directory = format!("-L{}", scratch.path("").display());
            compile(
                "gcc",
                build,
                &output,
                &[&samples.join("library_handles.c")],
                &[&directory, "-lwidget", "-Wl,-rpath,$ORIGIN"],
            );
            output
        }
        Program::Rust(binary) => rust_samples(build).join(binary),
    }
}

/// Builds and records the case; returns the trace's path (inside `scratch`).
fn record(scratch: &Scratch, case: &Case, build: Build) -> PathBuf {
    let program = build_program(scratch, case.program, build);
    let trace = scratch.path(&format!("{}-{}.trace", case.name, build.name()));
    let mut args = vec!["-q", "-o", trace.to_str().expect("utf-8 path"), "--"];
    args.push(program.to_str().expect("utf-8 path"));
    args.extend_from_slice(case.args);
    run_tool(&recorder(), &args);
    trace
}

fn memtrail_json(args: &[&str]) -> Value {
    let text = run_tool(&analyzer(), args);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

fn functions(candidate: &Value) -> Vec<&str> {
    candidate["frames"]
        .as_array()
        .expect("frames")
        .iter()
        .map(|f| f["function"].as_str().unwrap_or(""))
        .collect()
}

fn assert_min_calls(case: &Case, info: &Value) {
    for &(apis, at_least) in case.min_calls {
        let calls: u64 = apis
            .iter()
            .map(|api| info["calls"][*api].as_u64().unwrap_or(0))
            .sum();
        assert!(
            calls >= at_least,
            "{}: {calls} calls of {apis:?}, expected at least {at_least}: {}",
            case.name,
            info["calls"]
        );
    }
}

/// Records the case in every build of `VERDICT_BUILDS` and checks what the report says.
fn check(name: &str) {
    if !bpf_available() {
        return;
    }
    let case = case(name);
    for &build in VERDICT_BUILDS {
        let scratch = Scratch::new("sample-verdicts", &format!("{name}-{}", build.name()));
        let trace = record(&scratch, case, build);
        let trace = trace.to_str().expect("utf-8 path");
        let info = memtrail_json(&["info", trace, "--json"]);
        assert_eq!(info["lost_events"], 0, "{name} ({build:?}): {info}");
        assert_eq!(info["truncated"], false, "{name} ({build:?}): {info}");
        assert_eq!(info["exit"]["code"], 0, "{name} ({build:?}): {info}");
        assert_min_calls(case, &info);
        let report = memtrail_json(&["leaks", trace, "--json"]);
        let candidates = report["candidates"].as_array().expect("candidates");
        let context = format!("{name} ({build:?})");
        match case.expect {
            Expect::Leak { first, others } => {
                let top = candidates
                    .first()
                    .unwrap_or_else(|| panic!("{context}: no candidate: {report}"));
                let names = functions(top);
                assert_eq!(top["verdict"], "leak", "{context}: {top}");
                for function in first {
                    assert!(
                        names.contains(function),
                        "{context}: {function} not in the first candidate's frames {names:?}"
                    );
                }
                for function in others {
                    let found = candidates[1..]
                        .iter()
                        .any(|c| c["verdict"] == "leak" && functions(c).contains(function));
                    assert!(
                        found,
                        "{context}: no other leak through {function}: {report}"
                    );
                }
            }
            Expect::NoLeak { live } => {
                for candidate in candidates {
                    assert_ne!(
                        candidate["verdict"],
                        "leak",
                        "{context}: {:?} {candidate}",
                        functions(candidate)
                    );
                }
                if let Some(function) = live {
                    assert!(
                        candidates.iter().any(|c| functions(c).contains(&function)),
                        "{context}: {function} is live at the end but not reported: {report}"
                    );
                }
            }
        }
    }
}

#[test]
fn fibonacci() {
    check("fibonacci");
}

#[test]
fn fibonacci_fixed() {
    check("fibonacci_fixed");
}

#[test]
fn error_path() {
    check("error_path");
}

#[test]
fn error_path_raii() {
    check("error_path_raii");
}

#[test]
fn producer_consumer() {
    check("producer_consumer");
}

#[test]
fn producer_consumer_drop() {
    check("producer_consumer_drop");
}

#[test]
fn library_handles() {
    check("library_handles");
}

#[test]
fn library_handles_close() {
    check("library_handles_close");
}

#[test]
fn bounded_cache() {
    check("bounded_cache");
}

#[test]
fn realloc_buffer() {
    check("realloc_buffer");
}

#[test]
fn aligned_blocks() {
    check("aligned_blocks");
}

#[test]
fn shared_mappings() {
    check("shared_mappings");
}

#[test]
fn rust_rc_cycle() {
    check("rust_rc_cycle");
}

#[test]
fn rust_mem_forget() {
    check("rust_mem_forget");
}

/// Every case has its own test above (a case without one would never be checked).
#[test]
fn every_case_has_a_test() {
    let source = include_str!("sample_verdicts.rs");
    for case in CASES {
        assert!(
            source.contains(&format!("check(\"{}\");", case.name)),
            "no test calls check(\"{}\")",
            case.name
        );
    }
}
