//! Time axes of verdicts: each process is judged on a span of its own (from when it started to
//! be traced, or its latest exec, to its exit), not on the recording's; the whole trace's
//! verdict of a stack is its strongest in a process. Also the warning of a trace whose
//! recorder could not follow children, and the `pids` column of `leaks --format csv`. Traces
//! are built with `TraceBuilder`; no root, no recorder.

mod support;

use std::path::Path;

use memtrail_format::testing::{StackLayout, TraceBuilder};
use memtrail_format::{ProcessOrigin, TraceMeta};
use memtrail_tests::Scratch;
use serde_json::Value;
use support::ok;

const MS: u64 = 1_000_000;
const SERVER: &[&str] = &["/opt/app/server"];
const WORKER: &[&str] = &["/opt/app/server", "--worker"];

fn meta(pid: u32, argv: &[&str], follow: &str) -> TraceMeta {
    TraceMeta {
        tool_version: "0.2.0".into(),
        host_name: "testhost".into(),
        kernel_release: "6.1.0".into(),
        pid,
        command_line: argv.iter().map(|s| s.to_string()).collect(),
        page_size: 4096,
        extra: vec![
            ("mode".into(), "launch".into()),
            ("follow".into(), follow.into()),
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
        .named_stack(4, &["fill_cache", "main"]);
    t
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

/// The candidate whose innermost frame is `function`.
fn candidate<'a>(candidates: &'a Value, function: &str) -> &'a Value {
    candidates
        .as_array()
        .expect("candidates")
        .iter()
        .find(|c| c["frames"][0]["function"] == function)
        .unwrap_or_else(|| panic!("no candidate {function} in {candidates}"))
}

/// A 10 s recording of a server (PID 100) that churns all along; the worker it forks (101)
/// lives from 7.0 s to 8.5 s and leaks 256 bytes every 10 ms from `handle_rare`.
fn short_worker(path: &Path, follow: &str) {
    let mut t = builder(&meta(100, SERVER, follow));
    t.process(0, 100, 1, ProcessOrigin::Launched, SERVER)
        .thread(100, 100)
        .on_thread(100);
    for i in 0..8u64 {
        t.alloc(MS + i, 0x1000_0000 + i * 0x100, 1024, 1);
    }
    let mut worker_started = false;
    for step in 0..1000u64 {
        let now = (step + 1) * 10 * MS;
        if now >= 7_000 * MS && !worker_started {
            worker_started = true;
            t.process(now - 1000, 101, 100, ProcessOrigin::Forked, WORKER)
                .thread(101, 101);
        }
        if (7_000 * MS..8_500 * MS).contains(&now) {
            t.on_thread(101)
                .alloc(now + 100, 0x2000_0000, 64, 2)
                .free(now + 200, 0x2000_0000)
                .alloc(now + 300, 0x3000_0000 + step * 0x200, 256, 3);
        }
        if now == 8_500 * MS {
            t.process_exit(now, 101, Some(0), None);
        }
        t.on_thread(100)
            .alloc(now + 500, 0x4000_0000, 64, 2)
            .free(now + 600, 0x4000_0000);
    }
    t.process_exit(10_010 * MS, 100, Some(0), None)
        .exit(10_010 * MS, Some(0), None)
        .end(10_020 * MS);
    t.write(path);
}

#[test]
fn a_worker_living_briefly_in_a_long_recording_is_judged_on_its_own_span() {
    let scratch = Scratch::new("axes", "short-worker");
    let path = scratch.path("server.trace");
    short_worker(&path, "children");
    let file = path.to_str().unwrap();
    let v = json(&["leaks", file, "--json"]);

    let worker = process(&v, 101);
    let axis = &worker["time_axis"];
    // Its axis starts at its first event (7.0 s), not at the recorder's start, and spans its
    // 1.5 s with as many buckets as a 1.5 s recording.
    let start = axis["start_ns"].as_u64().unwrap();
    assert_eq!(start, 7_000 * MS + 100, "{axis}");
    let buckets = axis["buckets"].as_u64().unwrap();
    assert!(buckets > 32, "{axis}");
    assert!(
        axis["bucket_ns"].as_u64().unwrap() * buckets >= 1_500 * MS,
        "{axis}"
    );
    let leak = candidate(&worker["candidates"], "handle_rare");
    assert_eq!(leak["verdict"], "leak", "{leak}");
    // Older than `--min-age` (500 ms) at its exit: the blocks of its first second.
    assert_eq!(leak["unfreed_allocations"], 100);
    assert_eq!(
        leak["unfreed_over_time"].as_array().map(Vec::len),
        Some(buckets as usize)
    );

    // The whole trace's verdict is the worker's, its reason naming the worker.
    let total = candidate(&v["candidates"], "handle_rare");
    assert_eq!(total["verdict"], "leak", "{total}");
    let reason = total["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("in process 101 (/opt/app/server --worker): still growing"),
        "{reason}"
    );
    assert_eq!(total["pids"], serde_json::json!([101]));
    assert_eq!(v["candidates"][0]["frames"][0]["function"], "handle_rare");
    // The parent's configuration stays what it is in the parent.
    let config = candidate(&v["candidates"], "load_config");
    assert_eq!(config["verdict"], "unfreed-at-exit");
    assert!(
        config["reason"]
            .as_str()
            .unwrap()
            .starts_with("in process 100 (/opt/app/server): "),
        "{config}"
    );
    assert_eq!(v["follow_unavailable"], false);

    // The table says it the same way.
    let (text, _) = ok(&["leaks", file]);
    assert!(
        text.contains("why: in process 101 (/opt/app/server --worker): still growing"),
        "{text}"
    );

    // The CSV of the candidates names the processes holding each stack.
    let (csv, _) = ok(&["leaks", file, "--format", "csv"]);
    let mut lines = csv.lines();
    let header = csv_cells(lines.next().unwrap());
    let pids = header
        .iter()
        .position(|h| h == "pids")
        .expect("pids column");
    let verdict = header.iter().position(|h| h == "verdict").unwrap();
    let rows: Vec<Vec<String>> = lines.map(csv_cells).collect();
    assert_eq!(
        (rows[0][verdict].as_str(), rows[0][pids].as_str()),
        ("leak", "101"),
        "{csv}"
    );
    let config = rows
        .iter()
        .find(|r| r[verdict] == "unfreed-at-exit")
        .unwrap();
    assert_eq!(config[pids], "100", "{csv}");
}

/// The cells of one CSV line (quoted cells may hold commas; no line breaks in these).
fn csv_cells(line: &str) -> Vec<String> {
    let (mut cells, mut cell, mut quoted) = (Vec::new(), String::new(), false);
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                cell.push('"');
                chars.next();
            }
            ('"', _) => quoted = !quoted,
            (',', false) => cells.push(std::mem::take(&mut cell)),
            _ => cell.push(c),
        }
    }
    cells.push(cell);
    cells
}

/// A program that allocates for 600 ms from `start`: 8 configuration blocks at once, a cache
/// filled over its first 300 ms, and a steady leak, freeing requests all along.
fn late_program(path: &Path, start: u64) {
    let mut t = builder(&meta(300, SERVER, "children"));
    for i in 0..8u64 {
        t.alloc(start + i, 0x1000_0000 + i * 0x100, 1024, 1);
    }
    for step in 0..600u64 {
        let now = start + MS + step * MS;
        t.alloc(now, 0x2000_0000, 64, 2)
            .free(now + 100, 0x2000_0000)
            .alloc(now + 200, 0x3000_0000 + step * 0x100, 128, 3);
        if step < 300 {
            t.alloc(now + 300, 0x5000_0000 + step * 0x100, 512, 4);
        }
    }
    t.exit(start + 610 * MS, Some(0), None)
        .end(start + 620 * MS);
    t.write(path);
}

#[test]
fn a_program_starting_late_in_the_recording_is_judged_as_one_starting_at_once() {
    // The recorder took 5 s to set up before the program's first instruction (a debug build
    // on a loaded machine): the verdicts are those of the same run recorded at once.
    let scratch = Scratch::new("axes", "late-start");
    let (at_once, late) = (scratch.path("at-once.trace"), scratch.path("late.trace"));
    late_program(&at_once, 0);
    late_program(&late, 5_000 * MS);
    let a = json(&["leaks", at_once.to_str().unwrap(), "--json"]);
    let b = json(&["leaks", late.to_str().unwrap(), "--json"]);
    let verdicts = |v: &Value| -> Vec<(String, String, Value)> {
        v["candidates"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                (
                    c["frames"][0]["function"].as_str().unwrap().to_owned(),
                    c["verdict"].as_str().unwrap().to_owned(),
                    c["unfreed_over_time"].clone(),
                )
            })
            .collect()
    };
    assert_eq!(verdicts(&a), verdicts(&b));
    let names: Vec<(String, String)> = verdicts(&b).into_iter().map(|(f, v, _)| (f, v)).collect();
    assert_eq!(
        names,
        [
            ("handle_rare".to_owned(), "leak".to_owned()),
            ("fill_cache".to_owned(), "growing-then-stable".to_owned()),
            ("load_config".to_owned(), "unfreed-at-exit".to_owned()),
        ]
    );
    assert_eq!(a["time_axis"]["bucket_ns"], b["time_axis"]["bucket_ns"]);
    assert_eq!(a["time_axis"]["buckets"], b["time_axis"]["buckets"]);
    assert_eq!(a["time_axis"]["start_ns"], 0);
    assert_eq!(b["time_axis"]["start_ns"], 5_000 * MS);
    // Times in the reasons are on the trace's clock: the late one's are 5 s later.
    let leak = b["candidates"][0]["reason"].as_str().unwrap();
    assert!(leak.contains("5.") && leak.contains(" s .. 5."), "{leak}");
    assert_eq!(
        process(&b, 300)["time_axis"],
        b["time_axis"],
        "the single process's axis is the total's"
    );
}

#[test]
fn an_exec_starts_a_new_axis_for_the_new_image() {
    // A shell (PID 400) churns for 3 s, then replaces itself with a program that leaks for
    // 600 ms; a sibling (401) runs all along. The program is judged from the exec on.
    let scratch = Scratch::new("axes", "exec");
    let path = scratch.path("exec.trace");
    let shell = ["/bin/sh", "-c", "exec ./server"];
    let mut t = builder(&meta(400, &shell, "children"));
    t.process(0, 400, 1, ProcessOrigin::Launched, &shell)
        .thread(400, 400)
        .process(MS, 401, 400, ProcessOrigin::Forked, &shell)
        .thread(401, 401);
    for step in 0..3_600u64 {
        let now = 2 * MS + step * MS;
        if step == 3_000 {
            t.exec(now, 400, SERVER);
        }
        let leaking = step >= 3_000;
        t.on_thread(400).alloc(now, 0x2000_0000, 64, 2);
        t.free(now + 100, 0x2000_0000);
        if leaking {
            t.alloc(now + 200, 0x3000_0000 + step * 0x100, 128, 3);
        }
        t.on_thread(401)
            .alloc(now + 300, 0x2000_0000, 64, 2)
            .free(now + 400, 0x2000_0000);
    }
    t.process_exit(3_610 * MS, 400, Some(0), None)
        .process_exit(3_620 * MS, 401, Some(0), None)
        .exit(3_620 * MS, Some(0), None)
        .end(3_630 * MS);
    t.write(&path);
    let v = json(&["leaks", path.to_str().unwrap(), "--json"]);
    let program = process(&v, 400);
    assert_eq!(program["time_axis"]["start_ns"], 3_002 * MS, "{program}");
    assert!(program["time_axis"]["buckets"].as_u64().unwrap() > 32);
    assert_eq!(
        candidate(&program["candidates"], "handle_rare")["verdict"],
        "leak"
    );
    // The other process's axis starts at its own first event.
    assert_eq!(process(&v, 401)["time_axis"]["start_ns"], 2 * MS + 300);
    assert_eq!(
        candidate(&v["candidates"], "handle_rare")["verdict"],
        "leak"
    );
}

#[test]
fn an_exec_in_a_single_process_trace_restarts_the_total_axis() {
    // No Process records: one process, whose total is its own; the exec at 2 s restarts it.
    let scratch = Scratch::new("axes", "exec-single");
    let path = scratch.path("exec.trace");
    let mut t = builder(&meta(500, &["/bin/sh", "-c", "exec ./server"], "none"));
    for step in 0..2_000u64 {
        t.alloc(MS + step * MS, 0x2000_0000, 64, 2)
            .free(MS + step * MS + 100, 0x2000_0000);
    }
    t.exec(2_001 * MS, 500, SERVER);
    for step in 0..800u64 {
        t.alloc(2_002 * MS + step * MS, 0x3000_0000 + step * 0x100, 128, 3);
    }
    t.exit(2_810 * MS, Some(0), None).end(2_810 * MS);
    t.write(&path);
    let v = json(&["leaks", path.to_str().unwrap(), "--json"]);
    assert_eq!(v["time_axis"]["start_ns"], 2_001 * MS);
    assert_eq!(
        v["active_start_ns"], MS,
        "the first event is still the first event"
    );
    assert_eq!(
        candidate(&v["candidates"], "handle_rare")["verdict"],
        "leak"
    );
}

#[test]
fn a_recorder_that_could_not_follow_children_says_so_in_every_report() {
    let scratch = Scratch::new("axes", "follow-unavailable");
    let path = scratch.path("server.trace");
    short_worker(&path, "unavailable");
    let file = path.to_str().unwrap();
    let warning = "the processes it started were not traced (the recorder could not follow them)";
    for args in [
        vec!["leaks", file],
        vec!["leaks", file, "--json"],
        vec!["info", file],
        vec!["timeline", file],
        vec!["lifetimes", file],
    ] {
        let (_, stderr) = ok(&args);
        assert!(stderr.contains(warning), "{args:?}: {stderr}");
    }
    let (text, _) = ok(&["info", file]);
    assert!(
        text.contains(&format!("followed     no: {warning}")),
        "{text}"
    );
    assert_eq!(json(&["info", file, "--json"])["follow_unavailable"], true);
    assert_eq!(json(&["leaks", file, "--json"])["follow_unavailable"], true);
    let html = scratch.path("report.html");
    ok(&["report", file, "-o", html.to_str().unwrap()]);
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.contains(warning), "the report's warnings");

    // A recorder that followed them, or was told not to, warns of nothing.
    let followed = scratch.path("followed.trace");
    short_worker(&followed, "children");
    let (_, stderr) = ok(&["leaks", followed.to_str().unwrap()]);
    assert!(!stderr.contains(warning), "{stderr}");
}
