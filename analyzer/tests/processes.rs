//! Traces of several processes (format 1.1): per-process reports, exec, fork, `--pid`, the
//! processes the recorder could not follow, and a 1.0 trace read as one process. Traces are
//! built with `TraceBuilder`; no root, no recorder.

mod support;

use std::path::{Path, PathBuf};

use memtrail_format::testing::{StackLayout, TraceBuilder};
use memtrail_format::{ProcessOrigin, TraceMeta};
use memtrail_tests::Scratch;
use serde_json::Value;
use support::{memtrail, ok};

const MS: u64 = 1_000_000;

fn meta(pid: u32, argv: &[&str]) -> TraceMeta {
    TraceMeta {
        tool_version: "0.2.0".into(),
        host_name: "testhost".into(),
        kernel_release: "6.1.0".into(),
        pid,
        command_line: argv.iter().map(|s| s.to_string()).collect(),
        page_size: 4096,
        extra: vec![
            ("mode".into(), "launch".into()),
            ("follow".into(), "children".into()),
        ],
        ..TraceMeta::default()
    }
}

fn builder(meta: &TraceMeta) -> TraceBuilder {
    let mut t = TraceBuilder::new(meta);
    t.module(1, "/opt/app/server", &[0xab; 20])
        .layout(StackLayout {
            module: 1,
            load: 0x5555_0000_0000,
            file: "/src/server.c".into(),
            first_line: 20,
        });
    t.named_stack(1, &["load_config", "main"])
        .named_stack(2, &["parse_request", "worker_loop", "main"])
        .named_stack(3, &["handle_rare", "worker_loop", "main"])
        .named_stack(4, &["accept_loop", "main"]);
    t
}

const SERVER: &[&str] = &["/opt/app/server", "--workers", "4"];

/// A prefork server: parent `parent` (thread = its PID) loads its configuration (16 blocks
/// never freed), forks the four `workers`; each serves 1,000 requests (a block allocated and
/// freed each), frees one block it inherited from the parent (a free of a block it never
/// allocated), and the worker at `leaky` also leaks 512 bytes on every 10th request from
/// `handle_rare`. Workers exit at 9 s, the parent at 10 s.
fn prefork(path: &Path, parent: u32, workers: [u32; 4], leaky: usize) -> Vec<u8> {
    let mut t = builder(&meta(parent, SERVER));
    t.process(0, parent, 1, ProcessOrigin::Launched, SERVER)
        .thread(parent, parent)
        .on_thread(parent);
    for i in 0..16u64 {
        t.alloc(MS + i * 1000, 0x1000_0000 + i * 0x100, 1024, 1);
    }
    for (w, &pid) in workers.iter().enumerate() {
        t.process(
            2 * MS + w as u64,
            pid,
            parent,
            ProcessOrigin::Forked,
            SERVER,
        )
        .thread(pid, pid);
    }
    for step in 0..1000u64 {
        let now = 10 * MS + step * 8 * MS;
        for (w, &pid) in workers.iter().enumerate() {
            let now = now + w as u64 * 1000;
            // Every worker's heap reuses the same addresses: only the process tells them apart.
            t.on_thread(pid)
                .alloc(now, 0x2000_0000, 200, 2)
                .free(now + 500, 0x2000_0000);
            if w == leaky && step % 10 == 0 {
                t.alloc(now + 600, 0x3000_0000 + step * 0x400, 512, 3);
            }
            if step == 5 {
                // Inherited from the parent: not this worker's block.
                t.free(now + 700, 0x1000_0000);
            }
        }
        t.on_thread(parent)
            .alloc(now + 5000, 0x4000_0000, 64, 4)
            .free(now + 5100, 0x4000_0000);
    }
    for (w, &pid) in workers.iter().enumerate() {
        t.process_exit(9_000 * MS + w as u64, pid, Some(0), None);
    }
    t.process_exit(10_000 * MS, parent, Some(0), None)
        .exit(10_000 * MS, Some(0), None)
        .end(10_010 * MS);
    t.write(path)
}

fn json(args: &[&str]) -> Value {
    let (stdout, _) = ok(args);
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{args:?}: {e}\n{stdout}"))
}

fn process(v: &Value, pid: u32) -> &Value {
    v["processes"]
        .as_array()
        .expect("processes")
        .iter()
        .find(|p| p["pid"] == pid)
        .unwrap_or_else(|| panic!("no process {pid} in {}", v["processes"]))
}

fn top_functions(candidates: &Value) -> Vec<(String, String)> {
    candidates
        .as_array()
        .expect("candidates")
        .iter()
        .map(|c| {
            (
                c["frames"][0]["function"].as_str().unwrap_or("").to_owned(),
                c["verdict"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect()
}

fn scratch_trace(scratch: &Scratch, name: &str) -> PathBuf {
    scratch.path(name)
}

#[test]
fn a_prefork_servers_leak_is_in_its_worker_and_nowhere_else() {
    let scratch = Scratch::new("processes", "prefork");
    let path = scratch_trace(&scratch, "prefork.trace");
    prefork(&path, 1000, [1001, 1002, 1003, 1004], 2);
    let file = path.to_str().unwrap();
    let v = json(&["leaks", file, "--json"]);
    let processes = v["processes"].as_array().expect("processes");
    assert_eq!(processes.len(), 5);
    let pids: Vec<u64> = processes
        .iter()
        .map(|p| p["pid"].as_u64().unwrap())
        .collect();
    assert_eq!(pids, [1000, 1001, 1002, 1003, 1004]);

    let leaky = process(&v, 1003);
    assert_eq!(leaky["parent_pid"], 1000);
    assert_eq!(leaky["origin"], "forked");
    assert_eq!(leaky["command_line"][0], "/opt/app/server");
    assert_eq!(leaky["exit"]["code"], 0);
    assert_eq!(leaky["unfreed_blocks"], 100);
    assert_eq!(leaky["unfreed_bytes"], 100 * 512);
    assert_eq!(
        top_functions(&leaky["candidates"]),
        [("handle_rare".to_owned(), "leak".to_owned())]
    );
    for pid in [1001, 1002, 1004] {
        let p = process(&v, pid);
        assert_eq!(p["unfreed_bytes"], 0, "worker {pid}");
        assert_eq!(p["candidates"].as_array().map(Vec::len), Some(0), "{pid}");
        assert_eq!(p["allocations"], 1000);
        assert_eq!(p["frees"], 1000);
    }
    // The parent keeps its configuration: the workers' frees of it were not its frees.
    let parent = process(&v, 1000);
    assert_eq!(parent["origin"], "launched");
    assert_eq!(parent["unfreed_blocks"], 16);
    assert!(
        !top_functions(&parent["candidates"])
            .iter()
            .any(|(_, verdict)| verdict == "leak")
    );

    // The total: the leak, and the configuration, with the processes holding them.
    let total = &v["candidates"];
    let leak = total
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["frames"][0]["function"] == "handle_rare")
        .expect("the leak in the total");
    assert_eq!(leak["verdict"], "leak");
    assert_eq!(leak["pids"], serde_json::json!([1003]));
    assert_eq!(v["total_unfreed_allocations"], 116);
    let config = total
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["frames"][0]["function"] == "load_config")
        .expect("the configuration");
    assert_eq!(config["pids"], serde_json::json!([1000]));
    assert_eq!(v["unfollowed"], serde_json::json!([]));

    let info = json(&["info", file, "--json"]);
    assert_eq!(info["processes"].as_array().map(Vec::len), Some(5));
    // Each worker freed one block it did not allocate.
    assert_eq!(info["unmatched_frees"], 4);

    let html = scratch.path("report.html");
    ok(&["report", file, "-o", html.to_str().unwrap()]);
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.contains("<section id=\"processes\">"));
    assert!(
        page.contains("in process 1003</div>"),
        "the candidate's process"
    );

    let (text, _) = ok(&["leaks", file]);
    assert!(text.contains("5 processes:"), "{text}");
    assert!(
        text.contains("pid 1003 (forked by 1000): /opt/app/server --workers 4"),
        "{text}"
    );
    assert!(text.contains("in processes 1003"), "{text}");
}

/// `sh -c ...` (PID 2000) allocates from `before_exec` 10 blocks of 100 bytes, replaces its
/// image with the leaking program, which leaks from `handle_rare` for 5 s; a child it forked
/// before (2001) execs with nothing live.
fn exec_trace(path: &Path) {
    let shell = ["/bin/sh", "-c", "exec ./server"];
    let mut t = builder(&meta(2000, &shell));
    t.process(0, 2000, 1, ProcessOrigin::Launched, &shell)
        .on_thread(2000);
    for i in 0..10u64 {
        t.alloc(MS + i, 0x1000_0000 + i * 0x100, 100, 1);
    }
    t.process(2 * MS, 2001, 2000, ProcessOrigin::Forked, &shell)
        .thread(2001, 2001)
        .exec(3 * MS, 2001, &["/bin/true"])
        .process_exit(4 * MS, 2001, Some(0), None)
        .exec(5 * MS, 2000, SERVER);
    // The new image reuses the addresses: new blocks, nothing to do with the old ones.
    for step in 0..500u64 {
        let now = 10 * MS + step * 10 * MS;
        t.alloc(now, 0x1000_0000 + step * 0x100, 512, 3);
    }
    // A free of a pre-exec block the new image cannot have: (a lost event) unmatched.
    t.free(5_020 * MS, 0x2000_0000)
        .process_exit(5_030 * MS, 2000, Some(0), None)
        .exit(5_030 * MS, Some(0), None)
        .end(5_040 * MS);
    t.write(path);
}

#[test]
fn blocks_live_at_an_exec_are_released_not_reported() {
    let scratch = Scratch::new("processes", "exec");
    let path = scratch.path("exec.trace");
    exec_trace(&path);
    let file = path.to_str().unwrap();
    let v = json(&["leaks", file, "--json", "--min-age", "0"]);
    let functions = top_functions(&v["candidates"]);
    assert_eq!(
        functions,
        [("handle_rare".to_owned(), "leak".to_owned())],
        "the pre-exec blocks are not candidates"
    );
    // The 10 pre-exec blocks the new image overwrote at the same addresses are gone, not
    // replaced: no missed free is counted.
    assert_eq!(v["candidates"][0]["unfreed_allocations"], 500);
    let shell = process(&v, 2000);
    assert_eq!(shell["released_by_exec_blocks"], 10);
    assert_eq!(shell["released_by_exec_bytes"], 1000);
    assert_eq!(
        shell["command_line"][0], "/opt/app/server",
        "the command after the exec"
    );
    assert_eq!(process(&v, 2001)["released_by_exec_blocks"], 0);
    let info = json(&["info", file, "--json"]);
    assert_eq!(info["reused_live_addresses"], 0);
    assert_eq!(info["processes"][0]["execs"], 1);
    let (text, _) = ok(&["info", file]);
    assert!(
        text.contains("1000 B in 10 blocks released by exec"),
        "{text}"
    );
}

#[test]
fn an_exec_in_a_single_process_trace_releases_its_blocks_too() {
    // No Process records at all (as a 1.0 trace, plus the exec): one process, the Meta's.
    let scratch = Scratch::new("processes", "exec-single");
    let path = scratch.path("exec.trace");
    let mut t = builder(&meta(3000, &["/bin/sh", "-c", "exec ./server"]));
    for i in 0..10u64 {
        t.alloc(MS + i, 0x1000_0000 + i * 0x100, 100, 1);
    }
    t.exec(5 * MS, 3000, SERVER);
    for step in 0..300u64 {
        t.alloc(10 * MS + step * 10 * MS, 0x5000_0000 + step * 0x100, 512, 3);
    }
    t.exit(3_100 * MS, Some(0), None).end(3_100 * MS);
    t.write(&path);
    let v = json(&["leaks", path.to_str().unwrap(), "--json"]);
    assert_eq!(
        top_functions(&v["candidates"]),
        [("handle_rare".to_owned(), "leak".to_owned())]
    );
    assert_eq!(v["processes"].as_array().map(Vec::len), Some(1));
    assert_eq!(v["processes"][0]["released_by_exec_blocks"], 10);
}

/// The 1.0 trace of format/tests/fixtures (written by the 1.0 writer): one process, Meta's.
#[test]
fn a_v1_0_trace_is_one_process() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("../format/tests/fixtures/v1.0.trace");
    let file = fixture.to_str().unwrap();
    let info = json(&["info", file, "--json"]);
    assert_eq!(info["format_version"], "1.0");
    let processes = info["processes"].as_array().expect("processes");
    assert_eq!(processes.len(), 1);
    assert_eq!(processes[0]["pid"], 4242);
    assert_eq!(processes[0]["parent_pid"], 0);
    assert_eq!(processes[0]["origin"], "launched", "mode launch");
    assert_eq!(
        processes[0]["command_line"],
        serde_json::json!(["./app", "--flag"])
    );
    assert_eq!(processes[0]["exit"]["code"], 0);
    assert_eq!(processes[0]["events"], info["events"]);
    assert_eq!(info["unfollowed"], serde_json::json!([]));
    let leaks = json(&["leaks", file, "--json", "--min-age", "0"]);
    let candidates = leaks["candidates"].as_array().expect("candidates");
    assert!(!candidates.is_empty());
    for c in candidates {
        assert_eq!(c["pids"], serde_json::json!([4242]));
    }
    assert_eq!(
        leaks["processes"][0]["candidates"].as_array().map(Vec::len),
        Some(candidates.len())
    );
    // The text of a single-process trace has no per-process part.
    let (text, _) = ok(&["leaks", file, "--min-age", "0"]);
    assert!(!text.contains("processes"), "{text}");
}

#[test]
fn pid_selects_the_events_of_a_process() {
    let scratch = Scratch::new("processes", "pid");
    let path = scratch.path("prefork.trace");
    prefork(&path, 1000, [1001, 1002, 1003, 1004], 1);
    let file = path.to_str().unwrap();
    let v = json(&["leaks", file, "--json", "--pid", "1002"]);
    assert_eq!(v["processes"].as_array().map(Vec::len), Some(1));
    assert_eq!(v["processes"][0]["pid"], 1002);
    assert_eq!(
        top_functions(&v["candidates"]),
        [("handle_rare".to_owned(), "leak".to_owned())],
        "only the worker's: not the parent's configuration"
    );
    // The total's time axis is the worker's: it ended at 9 s.
    assert_eq!(v["active_end_ns"], 9_000 * MS + 1);
    let info = json(&["info", file, "--json", "--pid", "1002"]);
    assert_eq!(info["events"], 2101);
    assert_eq!(info["events_not_replayed"], 10120 - 2101);
    assert_eq!(info["unmatched_frees"], 1);
    // Two processes, both flags.
    let v = json(&["leaks", file, "--json", "--pid", "1000", "--pid", "1004"]);
    let pids: Vec<u64> = v["processes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["pid"].as_u64().unwrap())
        .collect();
    assert_eq!(pids, [1000, 1004]);
    assert_eq!(
        top_functions(&v["candidates"]),
        [("load_config".to_owned(), "unfreed-at-exit".to_owned())]
    );
    // Every command takes it.
    for command in [
        vec!["lifetimes", file],
        vec!["timeline", file],
        vec!["flamegraph", file, "-o"],
    ] {
        let mut args = command.clone();
        let svg = scratch.path("x.svg");
        if args.last() == Some(&"-o") {
            args.push(svg.to_str().unwrap());
        }
        args.extend(["--pid", "1002"]);
        ok(&args);
    }
    // A PID that is not in the trace is an error naming the ones that are.
    let out = memtrail(&["leaks", file, "--pid", "999"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--pid 999: no such process") && stderr.contains("1000, 1001"),
        "{stderr}"
    );
}

#[test]
fn diff_matches_processes_by_command_not_pid() {
    let scratch = Scratch::new("processes", "diff");
    let (base, new) = (scratch.path("base.trace"), scratch.path("new.trace"));
    // BASE leaks in its third worker, NEW (other PIDs) in its first.
    prefork(&base, 1000, [1001, 1002, 1003, 1004], 2);
    prefork(&new, 5000, [5007, 5003, 5011, 5002], 0);
    let (base, new) = (base.to_str().unwrap(), new.to_str().unwrap());
    let v = json(&["diff", base, new, "--json"]);
    // The whole traces: the same leak in both, unchanged.
    let whole = &v["stacks"].as_array().unwrap();
    let leak = whole
        .iter()
        .find(|s| s["frames"][0]["function"] == "handle_rare")
        .expect("the leak");
    assert_eq!(leak["status"], "unchanged");
    let processes = v["processes"].as_array().expect("processes");
    assert_eq!(processes.len(), 5);
    let pairs: Vec<(u64, u64, &str)> = processes
        .iter()
        .map(|p| {
            (
                p["base"]["pid"].as_u64().unwrap(),
                p["new"]["pid"].as_u64().unwrap(),
                p["status"].as_str().unwrap(),
            )
        })
        .collect();
    // Parent first, then the workers in order of appearance, whatever their PIDs.
    assert_eq!(
        pairs,
        [
            (1000, 5000, "unchanged"),
            (1001, 5007, "grown"),
            (1002, 5003, "unchanged"),
            (1003, 5011, "shrunk"),
            (1004, 5002, "unchanged"),
        ]
    );
    assert_eq!(processes[1]["command"], "server --workers 4");
    assert_eq!(processes[1]["occurrence"], 2);
    assert_eq!(processes[1]["growth"], 100.0 * 512.0);
    assert_eq!(processes[1]["stacks"][0]["status"], "new");
    assert_eq!(
        processes[1]["stacks"][0]["frames"][0]["function"],
        "handle_rare"
    );

    let (text, _) = ok(&["diff", base, new]);
    assert!(
        text.contains("server --workers 4 #4 (pid 1003 -> 5011): shrunk 50.0 KiB -> 0 B"),
        "{text}"
    );
    // The CSV: the whole traces' rows (no process), then each pair's.
    let (csv, _) = ok(&["diff", base, new, "--format", "csv"]);
    let header = csv.lines().next().unwrap();
    assert!(header.ends_with(",process"), "{header}");
    assert!(
        csv.lines().any(|l| l.ends_with(",server --workers 4 #2")),
        "{csv}"
    );
    let whole_rows = csv.lines().skip(1).filter(|l| l.ends_with(',')).count();
    assert_eq!(whole_rows, whole.len());
    // The comparison's HTML pairs them too.
    let html = scratch.path("compared.html");
    ok(&["report", base, new, "-o", html.to_str().unwrap()]);
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.contains("<section id=\"processes\">"));
    assert!(page.contains("server --workers 4 #4</span></td><td class=\"num\">1003</td><td class=\"num\">5011</td>"), "{page}");
}

#[test]
fn single_process_traces_pair_whatever_their_commands() {
    let scratch = Scratch::new("processes", "diff-single");
    let (base, new) = (scratch.path("base.trace"), scratch.path("new.trace"));
    for (path, argv) in [(&base, ["./app-1.0"]), (&new, ["./app-1.1"])] {
        let mut t = builder(&meta(7, &argv));
        t.alloc(MS, 0x1000, 64, 1).end(2_000 * MS);
        t.write(path);
    }
    let v = json(&[
        "diff",
        base.to_str().unwrap(),
        new.to_str().unwrap(),
        "--json",
    ]);
    let processes = v["processes"].as_array().expect("processes");
    assert_eq!(processes.len(), 1);
    assert_eq!(processes[0]["status"], "unchanged");
    let (csv, _) = ok(&[
        "diff",
        base.to_str().unwrap(),
        new.to_str().unwrap(),
        "--format",
        "csv",
    ]);
    assert_eq!(
        csv.lines().count(),
        2,
        "no per-process rows for one process: {csv}"
    );
}

#[test]
fn an_unfollowed_process_is_shown_by_every_report() {
    let scratch = Scratch::new("processes", "unfollowed");
    let path = scratch.path("unfollowed.trace");
    let mut t = builder(&meta(1000, SERVER));
    t.process(0, 1000, 1, ProcessOrigin::Launched, SERVER)
        .on_thread(1000)
        .alloc(MS, 0x1000, 64, 1)
        .unfollowed(
            2 * MS,
            1234,
            1000,
            "the process table is full (max-processes 1)",
        )
        .unfollowed(3 * MS, 1235, 0, "")
        .exit(2_000 * MS, Some(0), None)
        .end(2_000 * MS);
    t.write(&path);
    let file = path.to_str().unwrap();
    let sentence =
        "process 1234 (child of 1000) was not traced: the process table is full (max-processes 1)";
    for args in [
        vec!["leaks", file],
        vec!["info", file],
        vec!["lifetimes", file],
        vec!["timeline", file],
    ] {
        let (_, stderr) = ok(&args);
        assert!(stderr.contains(sentence), "{args:?}: {stderr}");
        assert!(
            stderr.contains("process 1235 was not traced: the recorder did not say why"),
            "{stderr}"
        );
    }
    let (text, _) = ok(&["info", file]);
    assert!(
        text.contains("not traced   2 processes of the tree"),
        "{text}"
    );
    assert!(text.contains(sentence), "{text}");
    for command in ["leaks", "info"] {
        let v = json(&[command, file, "--json"]);
        assert_eq!(
            v["unfollowed"][0],
            serde_json::json!({
                "pid": 1234,
                "parent_pid": 1000,
                "reason": "the process table is full (max-processes 1)",
                "time_ns": 2 * MS,
            }),
            "{command}"
        );
    }
    let html = scratch.path("report.html");
    ok(&["report", file, "-o", html.to_str().unwrap()]);
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.contains(sentence), "the report's warnings");
    // A comparison warns about both traces.
    let (_, stderr) = ok(&["diff", file, file]);
    assert!(stderr.matches(sentence).count() >= 2, "{stderr}");
}
