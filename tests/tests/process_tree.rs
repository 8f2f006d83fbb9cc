//! End-to-end tests of recording whole process trees (issue 15): forked workers, an exec, a
//! shell script's child, attaching to several processes or to a parent before it forks, and
//! recording every process of an executable. The samples (samples/README.md, "Process trees")
//! print how many blocks they leaked and in which pid; each test records one with real probes,
//! runs `memtrail leaks --json` and checks that the report puts exactly that leak in exactly
//! that process, and nothing `leak` anywhere else.
//!
//! Needs root (or CAP_BPF + CAP_PERFMON + CAP_SYS_ADMIN) and gcc. Without BPF each test prints
//! why and passes, unless MEMTRAIL_REQUIRE_BPF is set (as `.ci/run` does).
//! Binaries: `$MEMTRAIL_RECORD` / `$MEMTRAIL_BIN`, else built into this test's target directory.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, Command, Output, Stdio};
use std::time::Duration;

use memtrail_tests::{
    Scratch, analyzer, bpf_available, compile_sample, record_ok, recorder, repo_root, run_ok,
    wait_at_most,
};
use serde_json::Value;

/// How long a sample runs (seconds, its last argument): long enough for verdicts that read a
/// trend and for the analyzer's default `--min-age` (500 ms), short enough for a test.
const RUN_SECONDS: &str = "1.5";
/// One recording at a time in this file: the kernel serializes uprobe registrations
/// host-wide, and a recorder's probes retire one by one (about 100 ms each) after it exits,
/// so recordings run side by side hold each other's new processes at their fork for seconds,
/// which turns a steady leak into a burst the verdicts cannot read.
static ONE_RECORDING_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Takes [`ONE_RECORDING_AT_A_TIME`] (a test that failed while holding it does not poison
/// the others).
fn one_recording_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    ONE_RECORDING_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A recorder or sample that has not finished by then is stuck.
const STUCK: Duration = Duration::from_secs(60);

/// prefork_server.c's constants (its header explains them).
const PREFORK_REQUESTS: u64 = 2000;
const PREFORK_WORKERS: u64 = 4;
const RARE_WORKER: u64 = 2;
const RARE_EVERY: u64 = 50;
const RARE_BYTES: u64 = 4096;
/// exec_after_alloc.c's blocks kept before the exec.
const KEPT_BLOCKS: u64 = 64;
const KEPT_BYTES: u64 = 2048;
/// steady_leaker.c's and fork_when_told.c's leaked block sizes.
const SESSION_BYTES: u64 = 1000;
const CHILD_BYTES: u64 = 2000;

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

fn text(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

/// `memtrail leaks TRACE --json EXTRA...`, parsed.
fn leaks_json(trace: &Path, extra: &[&str]) -> Value {
    let output = run_ok(
        Command::new(analyzer())
            .arg("leaks")
            .arg(trace)
            .arg("--json")
            .args(extra),
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

fn array<'a>(value: &'a Value, key: &str) -> &'a Vec<Value> {
    value[key]
        .as_array()
        .unwrap_or_else(|| panic!("no array {key:?} in {value}"))
}

fn number(value: &Value, key: &str) -> u64 {
    value[key]
        .as_u64()
        .unwrap_or_else(|| panic!("no number {key:?} in {value}"))
}

/// The report's processes by pid. An exec keeps the pid: if a report lists the images of one
/// process as separate entries, they are all kept, in the report's order.
fn processes_by_pid(report: &Value) -> BTreeMap<u64, Vec<&Value>> {
    let mut by_pid: BTreeMap<u64, Vec<&Value>> = BTreeMap::new();
    for process in array(report, "processes") {
        by_pid
            .entry(number(process, "pid"))
            .or_default()
            .push(process);
    }
    by_pid
}

/// The one process entry of `pid` (a pid that did not exec has one).
fn only_entry<'a>(by_pid: &BTreeMap<u64, Vec<&'a Value>>, pid: u64) -> &'a Value {
    match by_pid.get(&pid).map(Vec::as_slice) {
        Some([process]) => process,
        other => panic!("pid {pid}: expected one process entry, got {other:?}"),
    }
}

fn functions(candidate: &Value) -> Vec<&str> {
    array(candidate, "frames")
        .iter()
        .map(|f| f["function"].as_str().unwrap_or(""))
        .collect()
}

/// The candidates of `holder` (a report or one of its processes) whose stack goes through
/// `function`.
fn candidates_through<'a>(holder: &'a Value, function: &str) -> Vec<&'a Value> {
    array(holder, "candidates")
        .iter()
        .filter(|c| functions(c).contains(&function))
        .collect()
}

/// Checks that `process` has exactly one candidate through `function`, a `leak` with exactly
/// `blocks` blocks of `block_bytes` live at the end.
fn assert_leak(process: &Value, function: &str, blocks: u64, block_bytes: u64) {
    let found = candidates_through(process, function);
    let [candidate] = found.as_slice() else {
        panic!(
            "pid {}: expected one candidate through {function}, got {}: {process}",
            process["pid"],
            found.len()
        );
    };
    assert_eq!(candidate["verdict"], "leak", "{candidate}");
    assert_eq!(number(candidate, "live_allocations"), blocks, "{candidate}");
    assert_eq!(
        number(candidate, "live_bytes"),
        blocks * block_bytes,
        "{candidate}"
    );
}

/// Checks that no candidate of `process` is a `leak`.
fn assert_no_leak(process: &Value) {
    for candidate in array(process, "candidates") {
        assert_ne!(
            candidate["verdict"],
            "leak",
            "pid {}: {:?} {candidate}",
            process["pid"],
            functions(candidate)
        );
    }
}

/// Checks what every report of a complete recording says: no lost event, no process the
/// recorder could not follow, every process exited with status 0 (an image replaced by an
/// exec, if listed apart, has no exit of its own).
fn assert_complete(trace: &Path, report: &Value) {
    if report["lost_events"] != 0 {
        let info = run_ok(
            Command::new(analyzer())
                .arg("info")
                .arg(trace)
                .arg("--json"),
        );
        let info: Value = serde_json::from_slice(&info.stdout).expect("info --json");
        panic!(
            "{} events lost: {}; {report}",
            report["lost_events"], info["lost_by_reason"]
        );
    }
    assert!(array(report, "unfollowed").is_empty(), "{report}");
    for (pid, entries) in processes_by_pid(report) {
        let exits: Vec<&Value> = entries
            .iter()
            .map(|p| &p["exit"])
            .filter(|e| !e.is_null())
            .collect();
        assert_eq!(exits.len(), 1, "pid {pid}: one exit: {entries:?}");
        assert_eq!(exits[0]["code"], 0, "pid {pid}: {entries:?}");
    }
}

/// The pids of the top-level candidates through `function`.
fn pids_through(report: &Value, function: &str) -> BTreeSet<u64> {
    candidates_through(report, function)
        .iter()
        .flat_map(|c| array(c, "pids").iter().filter_map(Value::as_u64))
        .collect()
}

/// The numbers of the first line of `output` that starts with `prefix`, in order: of
/// "worker 2 pid 123: 540 requests, 40 leaked blocks", [2, 123, 540, 40].
fn numbers_of_line(output: &str, prefix: &str) -> Vec<u64> {
    let line = output
        .lines()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no line {prefix:?} in {output:?}"));
    line.split(|c: char| !c.is_ascii_digit())
        .filter(|word| !word.is_empty())
        .map(|word| word.parse().expect("a number"))
        .collect()
}

fn stdout_of(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Reads the recorder's stderr until it says it is tracing (its probes are attached); returns
/// what it said.
fn wait_until_tracing(stderr: &mut BufReader<ChildStderr>) -> String {
    let mut said = String::new();
    loop {
        let mut line = String::new();
        let read = stderr
            .read_line(&mut line)
            .expect("read the recorder's stderr");
        said.push_str(&line);
        if read == 0 {
            panic!("the recorder ended before tracing: {said}");
        }
        if line.contains("tracing") {
            return said;
        }
    }
}

/// Waits for the recorder to finish and checks that it succeeded.
fn finish_recorder(mut recorder: Child, mut stderr: BufReader<ChildStderr>, said: &str) {
    let status = wait_at_most(&mut recorder, STUCK);
    let mut rest = String::new();
    let _ = stderr.read_to_string(&mut rest);
    assert!(status.success(), "memtrail-record failed: {said}{rest}");
}

/// Stops the recorder with SIGINT and checks that it ended as a stopped recording does (130).
fn stop_recorder(mut recorder: Child, mut stderr: BufReader<ChildStderr>, said: &str) {
    let signalled = Command::new("kill")
        .args(["-INT", &recorder.id().to_string()])
        .status()
        .expect("kill -INT");
    assert!(signalled.success());
    let status = wait_at_most(&mut recorder, STUCK);
    let mut rest = String::new();
    let _ = stderr.read_to_string(&mut rest);
    assert_eq!(status.code(), Some(130), "memtrail-record: {said}{rest}");
}

/// Starts `program ARGS` with piped stdin and stdout and reads its `ready PID` line.
fn start_waiting(
    program: &Path,
    args: &[&str],
) -> (Child, BufReader<std::process::ChildStdout>, u64) {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("start {}: {e}", program.display()));
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    stdout.read_line(&mut line).expect("ready line");
    let pid = line
        .strip_prefix("ready ")
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or_else(|| panic!("{} said {line:?}", program.display()));
    (child, stdout, pid)
}

/// Lets a sample started by [`start_waiting`] go.
fn release(child: &mut Child) {
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(b"go\n").expect("release the sample");
}

/// Reads the rest of a released sample's output and waits for its success.
fn finish(mut child: Child, mut stdout: BufReader<std::process::ChildStdout>) -> String {
    let mut output = String::new();
    stdout.read_to_string(&mut output).expect("sample output");
    let status = wait_at_most(&mut child, STUCK);
    assert!(status.success(), "sample failed ({status}): {output}");
    output
}

/// Starts `memtrail-record ARGS -o TRACE` (attach modes) with piped stderr and waits until it
/// is tracing.
fn start_recorder(args: &[&str], trace: &Path) -> (Child, BufReader<ChildStderr>, String) {
    let mut recorder = Command::new(recorder())
        .args(args)
        .arg("-o")
        .arg(trace)
        .stderr(Stdio::piped())
        .spawn()
        .expect("start memtrail-record");
    let mut stderr = BufReader::new(recorder.stderr.take().expect("stderr"));
    let said = wait_until_tracing(&mut stderr);
    (recorder, stderr, said)
}

/// prefork_server.c's requests: (allocations, leaked blocks) of each worker.
fn prefork_worker_allocations() -> [(u64, u64); PREFORK_WORKERS as usize] {
    let mut workers = [(0, 0); PREFORK_WORKERS as usize];
    for i in 0..PREFORK_REQUESTS {
        if i % RARE_EVERY == RARE_EVERY - 1 {
            // handle_rare_request: one malloc, never freed.
            workers[RARE_WORKER as usize].0 += 1;
            workers[RARE_WORKER as usize].1 += 1;
        } else if i % 5 == 4 {
            // handle_stats: one calloc, freed.
            workers[(i % PREFORK_WORKERS) as usize].0 += 1;
        } else {
            // handle_lookup: a scratch buffer and a cached result, both freed by the end.
            workers[(i % PREFORK_WORKERS) as usize].0 += 2;
        }
    }
    workers
}

#[test]
fn prefork_server_leak_is_found_in_the_leaking_worker_only() {
    if !bpf_available() {
        return;
    }
    let _serial = one_recording_at_a_time();
    let scratch = Scratch::new("process-tree", "prefork");
    let server = build_sample(&scratch, "prefork_server.c");
    let trace = scratch.path("prefork.trace");
    let requests = PREFORK_REQUESTS.to_string();
    let output = record_ok(&trace, &[], &[text(&server), &requests, RUN_SECONDS]);
    let said = stdout_of(&output);

    let report = leaks_json(&trace, &[]);
    assert_complete(&trace, &report);
    let by_pid = processes_by_pid(&report);
    assert_eq!(by_pid.len(), 5, "a parent and 4 workers: {report}");

    let expected = prefork_worker_allocations();
    let mut worker_pids = BTreeMap::new();
    for worker in 0..PREFORK_WORKERS {
        let numbers = numbers_of_line(&said, &format!("worker {worker} pid"));
        let (pid, leaked) = (numbers[1], numbers[3]);
        assert_eq!(leaked, expected[worker as usize].1, "{said}");
        worker_pids.insert(worker, pid);
    }
    let parents: Vec<u64> = by_pid
        .keys()
        .copied()
        .filter(|pid| !worker_pids.values().any(|w| w == pid))
        .collect();
    let [parent_pid] = parents.as_slice() else {
        panic!("the workers {worker_pids:?} are not 4 of the 5 processes: {report}");
    };
    let parent = only_entry(&by_pid, *parent_pid);
    assert_eq!(parent["origin"], "launched", "{parent}");
    let command = array(parent, "command_line");
    assert!(
        command
            .first()
            .and_then(Value::as_str)
            .is_some_and(|c| c.ends_with("prefork_server")),
        "{parent}"
    );
    // One malloc'd message per request, each freed.
    assert_eq!(number(parent, "allocations"), PREFORK_REQUESTS, "{parent}");
    assert_eq!(number(parent, "frees"), PREFORK_REQUESTS, "{parent}");
    assert_no_leak(parent);
    assert!(candidates_through(parent, "handle_rare_request").is_empty());

    for (&worker, &pid) in &worker_pids {
        let process = only_entry(&by_pid, pid);
        let (allocations, leaked) = expected[worker as usize];
        assert_eq!(process["origin"], "forked", "{process}");
        assert_eq!(number(process, "parent_pid"), *parent_pid, "{process}");
        assert_eq!(number(process, "allocations"), allocations, "{process}");
        assert_eq!(number(process, "frees"), allocations - leaked, "{process}");
        if worker == RARE_WORKER {
            assert_leak(process, "handle_rare_request", leaked, RARE_BYTES);
            // The blocks younger than --min-age at the end are live but not counted unfreed.
            let unfreed = number(process, "unfreed_blocks");
            assert!(unfreed > 0 && unfreed <= leaked, "{process}");
            let functions = functions(candidates_through(process, "handle_rare_request")[0]);
            assert!(functions.contains(&"serve_requests"), "{functions:?}");
        } else {
            assert_no_leak(process);
            assert!(
                candidates_through(process, "handle_rare_request").is_empty(),
                "{process}"
            );
        }
    }
    let rare_pid = worker_pids[&RARE_WORKER];
    assert_eq!(
        pids_through(&report, "handle_rare_request"),
        BTreeSet::from([rare_pid]),
        "{report}"
    );

    // --pid narrows the report to one process.
    let only_rare = leaks_json(&trace, &["--pid", &rare_pid.to_string()]);
    let top = candidates_through(&only_rare, "handle_rare_request");
    assert_eq!(top.len(), 1, "{only_rare}");
    assert_eq!(top[0]["verdict"], "leak", "{only_rare}");
    let only_parent = leaks_json(&trace, &["--pid", &parent_pid.to_string()]);
    assert!(
        candidates_through(&only_parent, "handle_rare_request").is_empty(),
        "{only_parent}"
    );
}

#[test]
fn prefork_server_without_follow_records_the_parent_only() {
    if !bpf_available() {
        return;
    }
    let _serial = one_recording_at_a_time();
    let scratch = Scratch::new("process-tree", "prefork-no-follow");
    let server = build_sample(&scratch, "prefork_server.c");
    let trace = scratch.path("prefork.trace");
    let requests = PREFORK_REQUESTS.to_string();
    record_ok(
        &trace,
        &["--no-follow"],
        &[text(&server), &requests, RUN_SECONDS],
    );
    let report = leaks_json(&trace, &[]);
    assert_eq!(report["lost_events"], 0, "{report}");
    let by_pid = processes_by_pid(&report);
    assert_eq!(by_pid.len(), 1, "the parent only: {report}");
    let (&pid, _) = by_pid.first_key_value().expect("one process");
    let parent = only_entry(&by_pid, pid);
    assert_eq!(number(parent, "allocations"), PREFORK_REQUESTS, "{parent}");
    assert!(
        candidates_through(&report, "handle_rare_request").is_empty(),
        "{report}"
    );
    assert!(
        candidates_through(parent, "handle_rare_request").is_empty(),
        "{parent}"
    );
}

#[test]
fn blocks_kept_before_an_exec_are_released_and_the_new_images_leak_is_found() {
    if !bpf_available() {
        return;
    }
    let _serial = one_recording_at_a_time();
    let scratch = Scratch::new("process-tree", "exec");
    let exec_after_alloc = build_sample(&scratch, "exec_after_alloc.c");
    let leaker = build_sample(&scratch, "steady_leaker.c");
    let trace = scratch.path("exec.trace");
    let output = record_ok(
        &trace,
        &[],
        &[text(&exec_after_alloc), text(&leaker), RUN_SECONDS],
    );
    let said = stdout_of(&output);
    let before = numbers_of_line(&said, "exec_after_alloc pid");
    let after = numbers_of_line(&said, "steady_leaker pid");
    let (pid, leaked) = (after[0], after[1]);
    assert_eq!(before[0], pid, "an exec keeps the pid: {said}");

    let report = leaks_json(&trace, &[]);
    assert_complete(&trace, &report);
    let by_pid = processes_by_pid(&report);
    assert_eq!(
        by_pid.keys().copied().collect::<Vec<_>>(),
        [pid],
        "{report}"
    );
    let images = &by_pid[&pid];
    let released: (u64, u64) = images.iter().fold((0, 0), |(blocks, bytes), p| {
        (
            blocks + number(p, "released_by_exec_blocks"),
            bytes + number(p, "released_by_exec_bytes"),
        )
    });
    assert_eq!(
        released,
        (KEPT_BLOCKS, KEPT_BLOCKS * KEPT_BYTES),
        "{report}"
    );
    for image in images {
        assert!(
            candidates_through(image, "keep_before_exec").is_empty(),
            "{image}"
        );
    }
    assert!(
        candidates_through(&report, "keep_before_exec").is_empty(),
        "{report}"
    );
    let leaking: Vec<&&Value> = images
        .iter()
        .filter(|p| !candidates_through(p, "remember_session").is_empty())
        .collect();
    let [image] = leaking.as_slice() else {
        panic!("expected one image of pid {pid} with remember_session: {report}");
    };
    assert_leak(image, "remember_session", leaked, SESSION_BYTES);
    assert!(
        candidates_through(image, "parse_header").is_empty(),
        "{image}"
    );
}

#[test]
fn a_shell_scripts_child_leak_is_found_in_the_child() {
    if !bpf_available() {
        return;
    }
    let _serial = one_recording_at_a_time();
    let scratch = Scratch::new("process-tree", "shell");
    let leaker = build_sample(&scratch, "steady_leaker.c");
    let script = repo_root().join("samples/run_leaker.sh");
    let trace = scratch.path("shell.trace");
    let output = record_ok(&trace, &[], &[text(&script), text(&leaker), RUN_SECONDS]);
    let said = stdout_of(&output);
    let numbers = numbers_of_line(&said, "steady_leaker pid");
    let (child_pid, leaked) = (numbers[0], numbers[1]);

    let report = leaks_json(&trace, &[]);
    assert_complete(&trace, &report);
    let by_pid = processes_by_pid(&report);
    assert_eq!(by_pid.len(), 2, "the shell and its child: {report}");
    let shell_pid = *by_pid
        .keys()
        .find(|&&pid| pid != child_pid)
        .expect("the shell's pid");
    let shell = only_entry(&by_pid, shell_pid);
    assert_eq!(shell["origin"], "launched", "{shell}");
    // dash allocates what it keeps once, at the start: `unfreed-at-exit`, not a leak.
    assert_no_leak(shell);
    assert!(
        candidates_through(shell, "remember_session").is_empty(),
        "{shell}"
    );
    let child_images = &by_pid[&child_pid];
    for image in child_images {
        assert_eq!(number(image, "parent_pid"), shell_pid, "{image}");
    }
    let leaking: Vec<&&Value> = child_images
        .iter()
        .filter(|p| !candidates_through(p, "remember_session").is_empty())
        .collect();
    let [child] = leaking.as_slice() else {
        panic!("expected the child {child_pid} to leak through remember_session: {report}");
    };
    assert_leak(child, "remember_session", leaked, SESSION_BYTES);
    assert_eq!(
        pids_through(&report, "remember_session"),
        BTreeSet::from([child_pid]),
        "{report}"
    );
}

#[test]
fn attaching_with_follow_before_a_fork_finds_the_childs_leak() {
    if !bpf_available() {
        return;
    }
    let _serial = one_recording_at_a_time();
    let scratch = Scratch::new("process-tree", "attach-follow");
    let program = build_sample(&scratch, "fork_when_told.c");
    let trace = scratch.path("follow.trace");
    let (mut parent, parent_out, parent_pid) = start_waiting(&program, &[RUN_SECONDS]);
    let (recorder, recorder_err, said) =
        start_recorder(&["-p", &parent_pid.to_string(), "--follow"], &trace);
    release(&mut parent);
    let output = finish(parent, parent_out);
    finish_recorder(recorder, recorder_err, &said);
    let numbers = numbers_of_line(&output, "fork_when_told child pid");
    let (child_pid, its_parent, leaked) = (numbers[0], numbers[1], numbers[2]);
    assert_eq!(its_parent, parent_pid, "{output}");

    let report = leaks_json(&trace, &[]);
    assert_complete(&trace, &report);
    let by_pid = processes_by_pid(&report);
    assert_eq!(
        by_pid.keys().copied().collect::<BTreeSet<_>>(),
        BTreeSet::from([parent_pid, child_pid]),
        "{report}"
    );
    let parent = only_entry(&by_pid, parent_pid);
    assert_eq!(parent["origin"], "attached", "{parent}");
    assert_no_leak(parent);
    let child = only_entry(&by_pid, child_pid);
    assert_eq!(child["origin"], "forked", "{child}");
    assert_eq!(number(child, "parent_pid"), parent_pid, "{child}");
    assert_leak(child, "child_leak", leaked, CHILD_BYTES);
    assert!(
        candidates_through(child, "child_scratch").is_empty(),
        "{child}"
    );
}

#[test]
fn attaching_to_two_processes_records_both() {
    if !bpf_available() {
        return;
    }
    let _serial = one_recording_at_a_time();
    let scratch = Scratch::new("process-tree", "attach-two");
    let leaker = build_sample(&scratch, "steady_leaker.c");
    let trace = scratch.path("two.trace");
    let (mut first, first_out, first_pid) = start_waiting(&leaker, &["--wait", RUN_SECONDS]);
    let (mut second, second_out, second_pid) = start_waiting(&leaker, &["--wait", RUN_SECONDS]);
    let (recorder, recorder_err, said) = start_recorder(
        &["-p", &first_pid.to_string(), "-p", &second_pid.to_string()],
        &trace,
    );
    release(&mut first);
    release(&mut second);
    let first_said = finish(first, first_out);
    let second_said = finish(second, second_out);
    finish_recorder(recorder, recorder_err, &said);

    let report = leaks_json(&trace, &[]);
    assert_complete(&trace, &report);
    let by_pid = processes_by_pid(&report);
    assert_eq!(
        by_pid.keys().copied().collect::<BTreeSet<_>>(),
        BTreeSet::from([first_pid, second_pid]),
        "{report}"
    );
    for (pid, said) in [(first_pid, &first_said), (second_pid, &second_said)] {
        let numbers = numbers_of_line(said, "steady_leaker pid");
        assert_eq!(numbers[0], pid, "{said}");
        let process = only_entry(&by_pid, pid);
        assert_eq!(process["origin"], "attached", "{process}");
        assert_leak(process, "remember_session", numbers[1], SESSION_BYTES);
    }
    assert_eq!(
        pids_through(&report, "remember_session"),
        BTreeSet::from([first_pid, second_pid]),
        "{report}"
    );
}

#[test]
fn exe_records_a_process_started_after_the_recording_began() {
    if !bpf_available() {
        return;
    }
    let _serial = one_recording_at_a_time();
    let scratch = Scratch::new("process-tree", "exe");
    // A copy of its own: parallel tests never start a process of this executable.
    let leaker = build_sample(&scratch, "steady_leaker.c");
    let trace = scratch.path("exe.trace");
    // No duration: attaching to the new process waits for the kernel, which serializes probe
    // registrations host-wide (seconds when other recordings are detaching): the recording is
    // stopped with SIGINT once the process has exited.
    let (recorder, recorder_err, said) = start_recorder(&["--exe", text(&leaker)], &trace);
    let output = run_ok(Command::new(&leaker).arg(RUN_SECONDS));
    stop_recorder(recorder, recorder_err, &said);
    let numbers = numbers_of_line(&stdout_of(&output), "steady_leaker pid");
    let (pid, leaked) = (numbers[0], numbers[1]);

    let report = leaks_json(&trace, &[]);
    assert_complete(&trace, &report);
    let by_pid = processes_by_pid(&report);
    assert_eq!(
        by_pid.keys().copied().collect::<Vec<_>>(),
        [pid],
        "{report}"
    );
    let process = only_entry(&by_pid, pid);
    assert_eq!(process["origin"], "found", "{process}");
    assert_leak(process, "remember_session", leaked, SESSION_BYTES);
}

/// The state letter of process `pid` (`R`, `S`, `T`, ...), None once it is gone.
fn process_state(pid: u64) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?
        .1
        .split_ascii_whitespace()
        .next()?
        .chars()
        .next()
}

/// The processes whose parent is `parent`.
fn children_of(parent: u64) -> Vec<u64> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u64>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|stat| {
                    let rest = stat.rsplit_once(')')?.1.to_owned();
                    rest.split_ascii_whitespace().nth(1)?.parse::<u64>().ok()
                })
                == Some(parent)
        })
        .collect()
}

#[test]
fn a_killed_recorder_leaves_no_traced_process_stopped() {
    if !bpf_available() {
        return;
    }
    let _serial = one_recording_at_a_time();
    let scratch = Scratch::new("process-tree", "killed");
    let sample = build_sample(&scratch, "fork_loop.c");
    let trace = scratch.path("killed.trace");
    let mut recorder = Command::new(recorder())
        .arg("-o")
        .arg(&trace)
        .arg("--")
        .arg(&sample)
        .arg("60")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start memtrail-record");
    let mut stdout = BufReader::new(recorder.stdout.take().expect("stdout"));
    let mut line = String::new();
    stdout.read_line(&mut line).expect("ready line");
    let sample_pid: u64 = line
        .strip_prefix("ready ")
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or_else(|| panic!("fork_loop said {line:?}"));
    // Children are being forked, each held at its fork while its probes attach. Not for long:
    // each followed child's probes cost the dying recorder about 2 s of retiring (waited for
    // at the end, so the next recording attaches in a quiet kernel).
    std::thread::sleep(Duration::from_millis(1500));
    recorder.kill().expect("kill -9 the recorder");
    // Not waited for yet: a killed recorder stays in the kernel for a long while retiring its
    // probes (about 100 ms each, ~22 per followed process). The watchdog sees it exiting
    // within 100 ms and resumes what it held; give a loaded machine time.
    let mut stopped = Vec::new();
    for _ in 0..50 {
        std::thread::sleep(Duration::from_millis(200));
        stopped = std::iter::once(sample_pid)
            .chain(children_of(sample_pid))
            .filter(|&pid| process_state(pid) == Some('T'))
            .collect();
        if stopped.is_empty() {
            break;
        }
    }
    let running = process_state(sample_pid);
    let _ = Command::new("kill").arg(sample_pid.to_string()).status();
    let _ = recorder.wait();
    assert!(
        stopped.is_empty(),
        "left stopped after the recorder died: {stopped:?}"
    );
    assert!(
        running.is_some_and(|state| state != 'T' && state != 'Z'),
        "the traced program did not keep running: {running:?}"
    );
    // What was recorded before the kill stays readable.
    let info = Command::new(analyzer())
        .arg("info")
        .arg(&trace)
        .output()
        .expect("memtrail info");
    let text = String::from_utf8_lossy(&info.stdout);
    assert!(
        text.contains("fork_loop"),
        "{text}{}",
        String::from_utf8_lossy(&info.stderr)
    );
}
