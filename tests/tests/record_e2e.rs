//! End-to-end tests of `memtrail-record` on the real kernel: C samples from samples/ are
//! built with gcc, recorded with real uprobes, and the traces read back with memtrail-format.
//!
//! Needs root (or CAP_BPF + CAP_PERFMON + CAP_SYS_ADMIN). Without it each test prints why
//! and passes, unless MEMTRAIL_REQUIRE_BPF is set (as `.ci/run` does): then it fails.
//! The recorder binary is `$MEMTRAIL_RECORD`, else `memtrail-record` of this test's target
//! directory, brought up to date first (see `memtrail_tests::workspace_binary`).

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use memtrail_format::{AllocApi, FreeApi, NO_STRING, Record, TraceMeta, TraceReader};
use memtrail_tests::{
    Scratch, bpf_available, callocs_in, compile, compile_sample, record, record_command, record_ok,
    recorder, repo_root,
};

/// Builds samples/<source> with frame pointers and debug info; returns the executable.
fn build_sample(scratch: &Scratch, source: &str) -> PathBuf {
    let stem = Path::new(source)
        .file_stem()
        .and_then(|s| s.to_str())
        .expect("name");
    let output = scratch.path(stem);
    compile_sample(&repo_root().join("samples").join(source), &output);
    output
}

fn read_trace(path: &Path) -> Vec<Record> {
    TraceReader::open(path)
        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()))
        .map(|r| r.unwrap_or_else(|e| panic!("read {}: {e}", path.display())))
        .collect()
}

/// Everything the assertions need from one trace.
#[derive(Default)]
struct TraceFacts {
    meta: Option<TraceMeta>,
    alloc_calls: HashMap<AllocApi, u64>,
    realloc_calls: HashMap<AllocApi, u64>,
    free_calls: HashMap<FreeApi, u64>,
    lost: u64,
    has_end: bool,
    exit_code: Option<Option<i32>>,
    /// address -> (size, api, stack, thread) of blocks still allocated at the end.
    live: HashMap<u64, (u64, AllocApi, u32, u32)>,
    /// Frees whose address was not live (allocated before tracing, or a recorder bug).
    unmatched_frees: u64,
    /// Frees made by another thread than the allocating one.
    cross_thread_frees: u64,
    strings: HashMap<u32, String>,
    /// (module, offset) -> function names, innermost first.
    symbols: HashMap<(u32, u64), Vec<String>>,
    /// stack id -> frames (module, offset).
    stacks: HashMap<u32, Vec<(u32, u64)>>,
    rss_samples: u64,
}

impl TraceFacts {
    fn from_records(records: &[Record]) -> TraceFacts {
        let mut facts = TraceFacts::default();
        for record in records {
            match record {
                Record::Meta(meta) => facts.meta = Some((**meta).clone()),
                Record::String { id, value } => {
                    facts.strings.insert(*id, value.clone());
                }
                Record::Symbol(symbol) => {
                    let names = symbol
                        .frames
                        .iter()
                        .map(|f| facts.strings.get(&f.function).cloned().unwrap_or_default())
                        .collect();
                    facts.symbols.insert((symbol.module, symbol.offset), names);
                }
                Record::Stack(stack) => {
                    let frames = stack.frames.iter().map(|f| (f.module, f.offset)).collect();
                    facts.stacks.insert(stack.id, frames);
                }
                Record::Alloc {
                    thread,
                    address,
                    size,
                    stack,
                    api,
                    ..
                } => {
                    *facts.alloc_calls.entry(*api).or_default() += 1;
                    facts.live.insert(*address, (*size, *api, *stack, *thread));
                }
                Record::Realloc {
                    thread,
                    old_address,
                    new_address,
                    size,
                    stack,
                    api,
                    ..
                } => {
                    *facts.realloc_calls.entry(*api).or_default() += 1;
                    let failed = *new_address == 0 && *size > 0;
                    if *old_address != 0 && !failed && facts.live.remove(old_address).is_none() {
                        facts.unmatched_frees += 1;
                    }
                    if *new_address != 0 {
                        facts
                            .live
                            .insert(*new_address, (*size, *api, *stack, *thread));
                    }
                }
                Record::Free {
                    thread,
                    address,
                    api,
                    ..
                } => {
                    *facts.free_calls.entry(*api).or_default() += 1;
                    match facts.live.remove(address) {
                        Some((_, _, _, alloc_thread)) => {
                            if alloc_thread != *thread {
                                facts.cross_thread_frees += 1;
                            }
                        }
                        None => facts.unmatched_frees += 1,
                    }
                }
                Record::Lost { count, .. } => facts.lost += count,
                Record::Rss { .. } => facts.rss_samples += 1,
                Record::Exit { code, .. } => facts.exit_code = Some(*code),
                Record::End { totals, .. } => {
                    facts.has_end = true;
                    assert_eq!(
                        totals.lost, facts.lost,
                        "End totals disagree with Lost records"
                    );
                }
                _ => {}
            }
        }
        facts
    }

    fn allocs(&self, api: AllocApi) -> u64 {
        self.alloc_calls.get(&api).copied().unwrap_or(0)
    }

    fn reallocs(&self, api: AllocApi) -> u64 {
        self.realloc_calls.get(&api).copied().unwrap_or(0)
    }

    fn frees(&self, api: FreeApi) -> u64 {
        self.free_calls.get(&api).copied().unwrap_or(0)
    }

    /// Function names along a stack, innermost first (inlined frames included).
    fn stack_functions(&self, stack: u32) -> Vec<String> {
        self.stacks
            .get(&stack)
            .map(|frames| {
                frames
                    .iter()
                    .flat_map(|frame| self.symbols.get(frame).cloned().unwrap_or_default())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Live blocks grouped by (api, size).
    fn live_by_api_and_size(&self) -> HashMap<(AllocApi, u64), u64> {
        let mut groups = HashMap::new();
        for &(size, api, _, _) in self.live.values() {
            *groups.entry((api, size)).or_default() += 1;
        }
        groups
    }
}

/// The exact counts samples/alloc_counts.c makes (see its header).
fn assert_alloc_counts_sample(facts: &TraceFacts) {
    assert_eq!(facts.lost, 0, "events lost");
    assert!(facts.has_end, "no End record");
    assert_eq!(facts.allocs(AllocApi::Malloc), 1057, "malloc");
    assert_eq!(facts.allocs(AllocApi::Calloc), 503, "calloc");
    assert_eq!(facts.reallocs(AllocApi::Realloc), 450, "realloc");
    assert_eq!(facts.reallocs(AllocApi::Reallocarray), 100, "reallocarray");
    assert_eq!(facts.allocs(AllocApi::PosixMemalign), 150, "posix_memalign");
    // glibc's aligned_alloc is memalign under another name: one probe, one name.
    assert_eq!(
        facts.allocs(AllocApi::Memalign) + facts.allocs(AllocApi::AlignedAlloc),
        230,
        "memalign + aligned_alloc"
    );
    assert_eq!(facts.allocs(AllocApi::Valloc), 90, "valloc");
    assert_eq!(facts.allocs(AllocApi::Pvalloc), 80, "pvalloc");
    assert_eq!(facts.allocs(AllocApi::Mmap), 62, "anonymous mmap");
    assert_eq!(
        facts.frees(FreeApi::Free),
        2350,
        "free (free(NULL) not counted)"
    );
    assert_eq!(facts.frees(FreeApi::Munmap), 60, "munmap");
    assert_eq!(
        facts.unmatched_frees, 0,
        "frees of blocks never seen allocated"
    );
    let expected_live: HashMap<(AllocApi, u64), u64> = [
        ((AllocApi::Malloc, 77), 7),
        ((AllocApi::Calloc, 99), 3),
        ((AllocApi::Mmap, 8192), 2),
    ]
    .into_iter()
    .collect();
    assert_eq!(
        facts.live_by_api_and_size(),
        expected_live,
        "blocks left allocated"
    );
    for (&address, &(_, api, _, _)) in &facts.live {
        if api != AllocApi::Mmap {
            assert_eq!(
                address % 16,
                0,
                "malloc'd address {address:#x} is not 16-aligned"
            );
        }
    }
}

#[test]
fn launch_mode_counts_every_api_exactly() {
    if !bpf_available() {
        return;
    }
    let scratch = Scratch::new("record", "counts");
    let sample = build_sample(&scratch, "alloc_counts.c");
    let trace = scratch.path("counts.trace");
    record_ok(&trace, &[], &[sample.to_str().expect("utf-8 path")]);
    let mode = std::fs::metadata(&trace)
        .expect("trace")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "trace file mode");
    let facts = TraceFacts::from_records(&read_trace(&trace));
    assert_alloc_counts_sample(&facts);
    assert_eq!(facts.exit_code, Some(Some(0)));
    let meta = facts.meta.as_ref().expect("meta");
    let offset = meta
        .extra
        .iter()
        .find(|(k, _)| k == "free_probe_offset")
        .map(|(_, v)| v.clone())
        .expect("free_probe_offset in meta");
    offset.parse::<u64>().expect("offset is a number");
    assert!(facts.rss_samples >= 1, "no RSS sample");
}

#[test]
fn attach_mode_counts_every_api_exactly() {
    if !bpf_available() {
        return;
    }
    let scratch = Scratch::new("record", "attach");
    let sample = build_sample(&scratch, "alloc_counts.c");
    let trace = scratch.path("attach.trace");
    let mut target = Command::new(&sample)
        .arg("--wait")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start sample");
    let mut target_out = BufReader::new(target.stdout.take().expect("stdout"));
    let mut line = String::new();
    target_out.read_line(&mut line).expect("ready line");
    assert!(line.starts_with("ready"), "sample said {line:?}");

    let mut recorder = Command::new(recorder())
        .arg("-p")
        .arg(target.id().to_string())
        .arg("-o")
        .arg(&trace)
        .stderr(Stdio::piped())
        .spawn()
        .expect("start memtrail-record");
    // The recorder says "tracing process ..." once its probes are attached.
    let mut recorder_err = BufReader::new(recorder.stderr.take().expect("stderr"));
    let mut said = String::new();
    recorder_err.read_line(&mut said).expect("recorder line");
    assert!(said.contains("tracing process"), "recorder said {said:?}");

    let mut stdin = target.stdin.take().expect("stdin");
    stdin.write_all(b"go\n").expect("release sample");
    line.clear();
    target_out.read_line(&mut line).expect("done line");
    assert_eq!(line.trim(), "done");
    stdin.write_all(b"exit\n").expect("let sample exit");
    drop(stdin);
    assert!(target.wait().expect("sample exit").success());

    let status = wait_with_timeout(&mut recorder, Duration::from_secs(30));
    let mut rest = String::new();
    let _ = std::io::Read::read_to_string(&mut recorder_err, &mut rest);
    assert!(status.success(), "memtrail-record -p failed: {said}{rest}");
    let facts = TraceFacts::from_records(&read_trace(&trace));
    assert_alloc_counts_sample(&facts);
}

fn wait_with_timeout(child: &mut Child, timeout: Duration) -> std::process::ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status;
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            panic!("process {} did not finish within {timeout:?}", child.id());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn frees_on_another_thread_match_their_allocations() {
    if !bpf_available() {
        return;
    }
    let scratch = Scratch::new("record", "threads");
    let sample = build_sample(&scratch, "threads_free_elsewhere.c");
    let trace = scratch.path("threads.trace");
    record_ok(&trace, &[], &[sample.to_str().expect("utf-8 path")]);
    let facts = TraceFacts::from_records(&read_trace(&trace));
    assert_eq!(facts.lost, 0);
    let produced: u64 = facts
        .stacks
        .keys()
        .filter(|&&stack| {
            facts
                .stack_functions(stack)
                .iter()
                .any(|f| f == "produce_block")
        })
        .count() as u64;
    assert!(produced >= 1, "no stack through produce_block");
    let live_200 = facts
        .live
        .values()
        .filter(|(size, api, _, _)| *size == 200 && *api == AllocApi::Malloc)
        .count();
    assert_eq!(live_200, 0, "200-byte blocks left allocated");
    assert!(
        facts.allocs(AllocApi::Malloc) >= 8000,
        "mallocs: {}",
        facts.allocs(AllocApi::Malloc)
    );
    assert!(
        facts.cross_thread_frees >= 8000,
        "cross-thread frees: {}",
        facts.cross_thread_frees
    );
}

/// With one or two per-thread slots in the kernel, threads must take a slot over
/// (compare-and-swap when idle) or fall back to the hash map while another thread's call holds
/// it: eight threads allocating and freeing at once still give the exact counts of the default.
#[test]
fn threads_sharing_one_kernel_slot_are_counted_exactly() {
    if !bpf_available() {
        return;
    }
    let scratch = Scratch::new("record", "thread-slots");
    let sample = build_sample(&scratch, "threads_free_elsewhere.c");
    // The default size first: its frees of blocks allocated before the probes saw them (the
    // dynamic loader's) are the reference for the others.
    let mut reference_unmatched = None;
    for slots in ["65536", "1", "2"] {
        let trace = scratch.path(&format!("slots-{slots}.trace"));
        record_ok(
            &trace,
            &["--thread-slots", slots],
            &[sample.to_str().expect("utf-8 path")],
        );
        let records = read_trace(&trace);
        let facts = TraceFacts::from_records(&records);
        assert_eq!(facts.lost, 0, "--thread-slots {slots}");
        let mallocs_200 = records
            .iter()
            .filter(|r| {
                matches!(
                    r,
                    Record::Alloc {
                        size: 200,
                        api: AllocApi::Malloc,
                        ..
                    }
                )
            })
            .count();
        assert_eq!(mallocs_200, 8000, "--thread-slots {slots}");
        let live_200 = facts
            .live
            .values()
            .filter(|(size, api, _, _)| *size == 200 && *api == AllocApi::Malloc)
            .count();
        assert_eq!(
            live_200, 0,
            "--thread-slots {slots}: 200-byte blocks left allocated"
        );
        let unmatched = *reference_unmatched.get_or_insert(facts.unmatched_frees);
        assert_eq!(facts.unmatched_frees, unmatched, "--thread-slots {slots}");
        assert!(facts.cross_thread_frees >= 8000, "--thread-slots {slots}");
    }
}

#[test]
fn fibonacci_leak_is_named_even_with_the_binary_deleted() {
    if !bpf_available() {
        return;
    }
    let scratch = Scratch::new("record", "fibonacci");
    let sample = build_sample(&scratch, "fibonacci.c");
    let trace = scratch.path("fibonacci.trace");
    record_ok(&trace, &[], &[sample.to_str().expect("utf-8 path"), "1.5"]);
    // Symbols were resolved while recording: the trace alone names them.
    std::fs::remove_file(&sample).expect("delete the binary");
    let facts = TraceFacts::from_records(&read_trace(&trace));
    assert_eq!(facts.lost, 0);
    let leaked: Vec<_> = facts
        .live
        .values()
        .filter(|(size, api, _, _)| *size == 8192 && *api == AllocApi::Calloc)
        .collect();
    assert!(leaked.len() >= 100, "leaked callocs: {}", leaked.len());
    for &&(_, _, stack, _) in &leaked {
        let functions = facts.stack_functions(stack);
        assert_eq!(
            functions.first().map(String::as_str),
            Some("fibonacci"),
            "leak stack {functions:?}"
        );
        assert!(functions.iter().any(|f| f == "child"), "{functions:?}");
    }
    // File and line of the calloc call are there too.
    assert!(
        facts
            .strings
            .values()
            .any(|s| s.ends_with("samples/fibonacci.c")),
        "no source file name"
    );
    assert!(facts.symbols.values().all(|names| !names.is_empty()));
    let _ = NO_STRING;
}

#[test]
fn fixed_fibonacci_leaves_nothing_allocated_from_fibonacci() {
    if !bpf_available() {
        return;
    }
    let scratch = Scratch::new("record", "fibonacci-fixed");
    let sample = build_sample(&scratch, "fibonacci_fixed.c");
    let trace = scratch.path("fixed.trace");
    record_ok(&trace, &[], &[sample.to_str().expect("utf-8 path"), "1"]);
    let facts = TraceFacts::from_records(&read_trace(&trace));
    assert_eq!(facts.lost, 0);
    assert!(facts.allocs(AllocApi::Calloc) >= 100);
    let leaked = facts
        .live
        .values()
        .filter(|(size, api, _, _)| *size == 8192 && *api == AllocApi::Calloc)
        .count();
    assert_eq!(leaked, 0);
}

#[test]
fn cxx_new_and_delete_are_seen_as_malloc_and_free() {
    if !bpf_available() {
        return;
    }
    let scratch = Scratch::new("record", "cxx");
    let sample = build_sample(&scratch, "cxx_new_delete.cpp");
    let trace = scratch.path("cxx.trace");
    record_ok(&trace, &[], &[sample.to_str().expect("utf-8 path")]);
    let facts = TraceFacts::from_records(&read_trace(&trace));
    assert_eq!(facts.lost, 0);
    let widgets: Vec<_> = facts
        .live
        .values()
        .filter(|(size, api, _, _)| *size == 64 && *api == AllocApi::Malloc)
        .collect();
    assert_eq!(widgets.len(), 5, "leaked widgets");
    for &&(_, _, stack, _) in &widgets {
        // libstdc++ is built without frame pointers: the unwinder goes from operator new
        // straight to make_widget's caller (make_widget's own frame is skipped).
        let functions = facts.stack_functions(stack);
        assert!(
            functions
                .first()
                .is_some_and(|f| f.starts_with("operator new")),
            "{functions:?}"
        );
        assert!(functions.iter().any(|f| f == "main"), "{functions:?}");
    }
    assert!(facts.frees(FreeApi::Free) >= 300);
}

#[test]
fn exit_status_passes_through_and_launch_errors_are_one_line() {
    if !bpf_available() {
        return;
    }
    let scratch = Scratch::new("record", "exit");
    let trace = scratch.path("exit.trace");
    let output = record(&trace, &[], &["/bin/sh", "-c", "exit 7"]);
    assert_eq!(output.status.code(), Some(7));
    let facts = TraceFacts::from_records(&read_trace(&trace));
    assert_eq!(facts.exit_code, Some(Some(7)));
    assert!(facts.has_end);

    let output = record(&trace, &[], &["/nonexistent/program"]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("/nonexistent/program"), "{stderr}");
}

#[test]
fn bad_pid_and_unwritable_output_fail_with_one_line() {
    if !bpf_available() {
        return;
    }
    let output = Command::new(recorder())
        .args(["-p", "999999999", "-o", "/tmp/memtrail-never.trace"])
        .output()
        .expect("run");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("no such process"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");

    let output = record(Path::new("/nonexistent-dir/x.trace"), &[], &["/bin/true"]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("cannot create"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
}

#[test]
fn sigint_mid_run_leaves_a_complete_trace() {
    if !bpf_available() {
        return;
    }
    let scratch = Scratch::new("record", "sigint");
    let sample = build_sample(&scratch, "fibonacci.c");
    let trace = scratch.path("sigint.trace");
    let mut recorder = record_command(&trace, &[], &[sample.as_os_str(), OsStr::new("30")])
        .spawn()
        .expect("start recorder");
    // Attaching takes a moment, more so on a loaded machine: interrupt only once the flushed
    // part of the trace (the writer flushes every second) holds enough allocations.
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline && callocs_in(&trace) < 50 {
        std::thread::sleep(Duration::from_millis(200));
    }
    let status = Command::new("kill")
        .args(["-INT", &recorder.id().to_string()])
        .status()
        .expect("kill -INT");
    assert!(status.success());
    let _ = wait_with_timeout(&mut recorder, Duration::from_secs(30));
    let records = read_trace(&trace);
    let facts = TraceFacts::from_records(&records);
    // The sample keeps running after the recorder stops: end it.
    if let Some(meta) = &facts.meta {
        let _ = Command::new("kill")
            .args(["-KILL", &meta.pid.to_string()])
            .status();
    }
    assert!(facts.has_end, "no End record after SIGINT");
    assert!(
        facts.allocs(AllocApi::Calloc) >= 50,
        "callocs recorded before SIGINT"
    );
    let seen: HashSet<_> = facts.stacks.keys().collect();
    assert!(!seen.is_empty());
}

#[test]
fn a_full_ring_buffer_is_counted_as_lost_not_silently_dropped() {
    if !bpf_available() {
        return;
    }
    let scratch = Scratch::new("record", "lost");
    let sample = build_sample(&scratch, "alloc_counts.c");
    let trace = scratch.path("lost.trace");
    // 4 KiB holds about 70 events; the reader polls every 10 ms: most events cannot fit.
    record_ok(
        &trace,
        &["--ring-buffer-size", "4K"],
        &[sample.to_str().expect("utf-8 path")],
    );
    let facts = TraceFacts::from_records(&read_trace(&trace));
    assert!(facts.has_end);
    assert!(facts.lost > 0, "a 4 KiB ring buffer lost nothing?");
    let recorded: u64 = facts.alloc_calls.values().sum::<u64>()
        + facts.realloc_calls.values().sum::<u64>()
        + facts.free_calls.values().sum::<u64>();
    // Every call the sample makes (5132) is either in the trace or counted as lost; only
    // munmaps whose mmap was lost are dropped by the recorder without a count (at most 60).
    // The kernel sends every munmap, including the 5 of the sample's file mappings that the
    // recorder discards when they arrive: when the buffer is full those are counted as lost.
    assert!(
        recorded + facts.lost <= 5132 + 5 && recorded + facts.lost >= 5132 - 60,
        "recorded {recorded} + lost {} vs 5132 calls",
        facts.lost
    );
}

#[test]
fn min_size_skips_small_allocations_but_keeps_reallocs() {
    if !bpf_available() {
        return;
    }
    let scratch = Scratch::new("record", "min-size");
    let sample = build_sample(&scratch, "alloc_counts.c");
    let trace = scratch.path("min-size.trace");
    record_ok(
        &trace,
        &["--min-size", "90"],
        &[sample.to_str().expect("utf-8 path")],
    );
    let facts = TraceFacts::from_records(&read_trace(&trace));
    assert_eq!(facts.lost, 0);
    assert_eq!(
        facts.allocs(AllocApi::Malloc),
        0,
        "every malloc is under 90 bytes"
    );
    assert_eq!(
        facts.allocs(AllocApi::Calloc),
        503,
        "calloc sizes are 99 and 100"
    );
    assert_eq!(
        facts.reallocs(AllocApi::Realloc),
        450,
        "reallocs are always recorded"
    );
    assert_eq!(facts.allocs(AllocApi::Mmap), 62);
}

#[test]
fn a_library_loaded_after_recording_started_is_symbolized() {
    if !bpf_available() {
        return;
    }
    let scratch = Scratch::new("record", "dlopen");
    let plugin = scratch.path("libplugin.so");
    let samples = repo_root().join("samples");
    compile(
        "gcc",
        &["-O1", "-g", "-fno-omit-frame-pointer", "-shared", "-fPIC"],
        &plugin,
        &[&samples.join("dlopen_plugin.c")],
        &[],
    );
    let main = scratch.path("dlopen_main");
    compile(
        "gcc",
        &["-O1", "-g", "-fno-omit-frame-pointer"],
        &main,
        &[&samples.join("dlopen_main.c")],
        &["-ldl"],
    );
    let trace = scratch.path("dlopen.trace");
    record_ok(
        &trace,
        &[],
        &[
            main.to_str().expect("utf-8 path"),
            plugin.to_str().expect("utf-8 path"),
        ],
    );
    let facts = TraceFacts::from_records(&read_trace(&trace));
    assert_eq!(facts.lost, 0);
    let leaked: Vec<_> = facts
        .live
        .values()
        .filter(|(size, api, _, _)| *size == 123 && *api == AllocApi::Malloc)
        .collect();
    assert_eq!(leaked.len(), 10, "plugin leaks");
    for &&(_, _, stack, _) in &leaked {
        let functions = facts.stack_functions(stack);
        assert_eq!(
            functions.first().map(String::as_str),
            Some("plugin_leak"),
            "{functions:?}"
        );
    }
}

#[test]
fn lib_probes_an_allocator_compiled_into_the_executable() {
    if !bpf_available() {
        return;
    }
    let scratch = Scratch::new("record", "own-allocator");
    let sample = build_sample(&scratch, "own_allocator.c");
    let sample_path = sample.to_str().expect("utf-8 path");
    let trace = scratch.path("own.trace");
    record_ok(&trace, &["--lib", sample_path], &[sample_path]);
    let facts = TraceFacts::from_records(&read_trace(&trace));
    assert_eq!(facts.lost, 0);
    assert!(facts.allocs(AllocApi::Malloc) >= 104);
    assert_eq!(facts.frees(FreeApi::Free), 100);
    assert_eq!(facts.unmatched_frees, 0);
    let leaked_4000 = facts
        .live
        .values()
        .filter(|(size, _, _, _)| *size == 4000)
        .count();
    assert_eq!(leaked_4000, 4);
    let meta = facts.meta.as_ref().expect("meta");
    let library = meta
        .extra
        .iter()
        .find(|(k, _)| k == "allocator_library")
        .map(|(_, v)| v.as_str());
    assert!(
        library.is_some_and(|l| l.ends_with("own_allocator")),
        "{library:?}"
    );
}

/// A small tmpfs mounted for one test, unmounted when dropped.
struct SmallFilesystem(PathBuf);

impl SmallFilesystem {
    fn mount(dir: PathBuf, size: &str) -> Option<SmallFilesystem> {
        std::fs::create_dir_all(&dir).ok()?;
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&dir)
            .status()
            .ok()?;
        status.success().then_some(SmallFilesystem(dir))
    }
}

impl Drop for SmallFilesystem {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_stops_tracing_with_one_line_and_a_readable_trace() {
    if !bpf_available() {
        return;
    }
    let scratch = Scratch::new("record", "disk-full");
    let sample = build_sample(&scratch, "malloc_free_loop.c");
    let Some(small) = SmallFilesystem::mount(scratch.path("small"), "64k") else {
        if std::env::var_os("MEMTRAIL_REQUIRE_BPF").is_some() {
            panic!("cannot mount a tmpfs for the disk-full test");
        }
        eprintln!("skipping: cannot mount a tmpfs");
        return;
    };
    let trace = small.0.join("full.trace");
    let output = record(
        &trace,
        &[],
        &[sample.to_str().expect("utf-8 path"), "2000000"],
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("No space left on device"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    // Everything before the cut reads back.
    let reader = TraceReader::open(&trace).expect("open the cut trace");
    let mut allocs = 0;
    for record in reader {
        match record {
            Ok(Record::Alloc { .. }) => allocs += 1,
            Ok(_) => {}
            Err(e) => panic!("a full disk left a corrupt trace: {e}"),
        }
    }
    assert!(allocs > 1000, "only {allocs} allocations survived");
}

#[test]
fn sampling_every_byte_keeps_the_exact_counts() {
    if !bpf_available() {
        return;
    }
    // With --sample-bytes 1 every countdown is at most 23 bytes (an exponential variate with
    // mean 1 from 32 random bits is at most 22.2), and every block alloc_counts.c allocates
    // is larger: every allocation is sampled, so the sampled bookkeeping in the kernel (the
    // table of sampled blocks, reallocs and frees looked up in it) must reproduce the exact
    // counts of an unsampled recording.
    let scratch = Scratch::new("record", "sample-every-byte");
    let sample = build_sample(&scratch, "alloc_counts.c");
    let trace = scratch.path("sampled.trace");
    record_ok(
        &trace,
        &["--sample-bytes", "1"],
        &[sample.to_str().expect("utf-8 path")],
    );
    let facts = TraceFacts::from_records(&read_trace(&trace));
    assert_eq!(facts.meta.as_ref().map(|m| m.sample_bytes), Some(1));
    assert_alloc_counts_sample(&facts);
}

#[test]
fn sample_bytes_records_one_allocation_per_n_bytes_and_only_their_frees() {
    if !bpf_available() {
        return;
    }
    const N: u64 = 256 << 10;
    let scratch = Scratch::new("record", "sample-bytes");
    let sample = build_sample(&scratch, "sample_bytes.c");
    let trace = scratch.path("sampled.trace");
    let sample_path = sample.to_str().expect("utf-8 path");
    record_ok(&trace, &["--sample-bytes", "256K"], &[sample_path]);
    // The program is deterministic: its totals, from a run of its own.
    let run = Command::new(&sample).output().expect("run sample_bytes");
    let printed = String::from_utf8_lossy(&run.stdout).into_owned();
    let field = |name: &str| -> f64 {
        printed
            .split_whitespace()
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in {printed:?}"))
    };
    let (allocated_bytes, calls, kept) = (field("allocated_bytes"), field("calls"), field("kept"));

    let records = read_trace(&trace);
    let facts = TraceFacts::from_records(&records);
    assert_eq!(facts.meta.as_ref().map(|m| m.sample_bytes), Some(N));
    assert_eq!(facts.lost, 0, "events lost");
    assert!(facts.has_end, "no End record");
    // A sampled allocation is an Alloc, or a Realloc of an unsampled block (old address 0);
    // a Realloc of a sampled block carries the sample on.
    let fresh_reallocs = records
        .iter()
        .filter(|r| matches!(r, Record::Realloc { old_address: 0, .. }))
        .count() as f64;
    let sampled = facts.allocs(AllocApi::Malloc) as f64 + fresh_reallocs;
    // Each block of s bytes is sampled with probability 1 - exp(-s/N) (s <= 8 KiB << N here,
    // so about s/N, 1% less at most): a Poisson count with mean about allocated_bytes / N.
    let expected = allocated_bytes / N as f64;
    let tolerance = 5.0 * expected.sqrt() + 0.02 * expected;
    assert!(
        (sampled - expected).abs() <= tolerance,
        "{sampled} sampled allocations, expected {expected:.0} +- {tolerance:.0} \
         ({allocated_bytes} bytes in {calls} calls, one per {N} bytes)"
    );
    assert!(sampled < calls / 50.0, "{sampled} of {calls} calls sampled");
    // Every free recorded is of a sampled block, and every sampled block the program freed had
    // its free recorded: only the never-freed 4999-byte blocks are left.
    assert_eq!(
        facts.unmatched_frees, 0,
        "frees of blocks never recorded allocated"
    );
    // Only the worker threads' blocks are the program's: the main thread's own allocations
    // (the stdout buffer printf mallocs, each new thread's DTV) are never freed, and a sampler
    // may pick any of them.
    let main_thread = facts.meta.as_ref().map(|m| m.pid);
    let worker_live: Vec<u64> = facts
        .live
        .values()
        .filter(|&&(.., thread)| Some(thread) != main_thread)
        .map(|&(size, ..)| size)
        .collect();
    assert!(!worker_live.is_empty(), "no kept block was sampled");
    let other: Vec<u64> = worker_live
        .iter()
        .copied()
        .filter(|&size| size != 4999)
        .collect();
    assert!(
        other.is_empty(),
        "blocks left live that were freed: {other:?}"
    );
    let live = worker_live.len() as f64;
    let expected_live = kept * 4999.0 / N as f64;
    assert!(
        (live - expected_live).abs() <= 5.0 * expected_live.sqrt() + 0.02 * expected_live,
        "{live} sampled kept blocks, expected about {expected_live:.0}"
    );
}

#[test]
fn probes_only_attaches_programs_that_record_nothing() {
    if !bpf_available() {
        return;
    }
    let scratch = Scratch::new("record", "probes-only");
    let sample = build_sample(&scratch, "alloc_counts.c");
    let trace = scratch.path("empty.trace");
    record_ok(
        &trace,
        &["--probes-only"],
        &[sample.to_str().expect("utf-8 path")],
    );
    let facts = TraceFacts::from_records(&read_trace(&trace));
    assert!(facts.has_end, "no End record");
    assert_eq!(facts.lost, 0);
    assert!(facts.alloc_calls.is_empty() && facts.realloc_calls.is_empty());
    assert!(facts.free_calls.is_empty());
    assert_eq!(facts.exit_code, Some(Some(0)));
}

/// The benchmark's stackless modes (`--no-stacks`, and `--stack-read-only`, which also copies
/// each allocation's user stack) record the same events as a normal recording, exactly, and
/// no stack: what they measure is the cost of the same events.
#[test]
fn stackless_bench_modes_record_every_event_and_no_stack() {
    if !bpf_available() {
        return;
    }
    let scratch = Scratch::new("record", "stackless");
    let sample = build_sample(&scratch, "alloc_counts.c");
    for mode in ["--no-stacks", "--stack-read-only"] {
        let trace = scratch.path(&format!("{}.trace", mode.trim_start_matches('-')));
        record_ok(&trace, &[mode], &[sample.to_str().expect("utf-8 path")]);
        let facts = TraceFacts::from_records(&read_trace(&trace));
        assert_alloc_counts_sample(&facts);
        // Every event refers to the one stack without frames (the unknown stack).
        assert!(
            facts.stacks.len() == 1 && facts.stacks.values().all(Vec::is_empty),
            "{mode}: stacks were recorded: {:?}",
            facts.stacks
        );
    }
}
