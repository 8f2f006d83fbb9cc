//! `memtrail-record suspects` on real processes: the classic leak (samples/fibonacci.c) and its
//! fixed version run side by side while every process on the machine is sampled; only the
//! leaking one may be listed. Reads /proc only: needs neither BPF nor root.
//! The recorder binary is `$MEMTRAIL_RECORD`, else built into this test's target directory.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use memtrail_tests::{Scratch, assert_ok, compile_sample, recorder, repo_root, run_ok};
use serde_json::Value;

fn build(scratch: &Scratch, source: &str, name: &str) -> PathBuf {
    let output = scratch.path(name);
    compile_sample(&repo_root().join("samples").join(source), &output);
    output
}

/// A sample process, killed and reaped when dropped (also when an assertion fails). Samples
/// are started only once the recorder is built, so that they are alive while it samples.
struct Running(Child);

impl Running {
    fn start(program: &Path, seconds: &str) -> Running {
        recorder();
        let child = Command::new(program)
            .arg(seconds)
            .stdout(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", program.display()));
        Running(child)
    }

    fn pid(&self) -> u64 {
        u64::from(self.0.id())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn suspects_command(args: &[&str]) -> Command {
    let mut command = Command::new(recorder());
    command.arg("suspects").args(args);
    command
}

/// Runs `memtrail-record suspects args`, whatever the outcome.
fn suspects(args: &[&str]) -> Output {
    suspects_command(args)
        .output()
        .expect("run memtrail-record suspects")
}

/// Runs `memtrail-record suspects args`, expecting success.
fn suspects_ok(args: &[&str]) -> Output {
    run_ok(&mut suspects_command(args))
}

fn suspects_json(output: &Output) -> Value {
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_ok("memtrail-record suspects", output);
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

fn listed_pids(report: &Value) -> Vec<u64> {
    report["suspects"]
        .as_array()
        .expect("suspects array")
        .iter()
        .map(|s| s["pid"].as_u64().expect("pid"))
        .collect()
}

#[test]
fn only_the_leaking_process_of_two_is_listed() {
    let scratch = Scratch::new("suspects", "side-by-side");
    let leaking = build(&scratch, "fibonacci.c", "fibonacci");
    let steady = build(&scratch, "fibonacci_fixed.c", "fibonacci_fixed");
    let leaker = Running::start(&leaking, "30");
    let fixed = Running::start(&steady, "30");

    // Every process on the machine, as a user would run it.
    let report = suspects_json(&suspects(&[
        "--interval",
        "250ms",
        "--duration",
        "4s",
        "--json",
    ]));
    let pids = listed_pids(&report);
    assert!(pids.contains(&leaker.pid()), "leaker not listed: {report}");
    assert!(
        !pids.contains(&fixed.pid()),
        "fixed version listed: {report}"
    );
    assert!(
        report["processes_watched"].as_u64().unwrap() >= 2,
        "{report}"
    );
    assert_eq!(report["samples"], 17, "{report}");

    let entry = report["suspects"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["pid"].as_u64() == Some(leaker.pid()))
        .unwrap();
    // 200 calloc'd and written 8 KiB buffers a second: about 1.6 MB/s of anonymous memory.
    let rate = entry["rate_bytes_per_s"].as_f64().unwrap();
    assert!(
        (800_000.0..3_200_000.0).contains(&rate),
        "rate {rate}: {entry}"
    );
    assert_eq!(entry["name"], "fibonacci", "{entry}");
    assert!(
        entry["command"].as_str().unwrap().ends_with("fibonacci 30"),
        "{entry}"
    );
    assert_eq!(
        entry["record_command"],
        format!("memtrail-record -p {0} -o {0}.trace", leaker.pid()),
        "{entry}"
    );
    assert!(entry["growth_bytes"].as_i64().unwrap() > 2 << 20, "{entry}");
}

#[test]
fn filters_by_pid_and_name_and_prints_a_table() {
    let scratch = Scratch::new("suspects", "filters");
    // A name of its own: the other tests run fibonacci at the same time.
    let leaking = build(&scratch, "fibonacci.c", "leak_filtered");
    let leaker = Running::start(&leaking, "30");
    let pid = leaker.pid().to_string();

    let by_pid = suspects_json(&suspects(&[
        "-p",
        &pid,
        "--interval",
        "0.2",
        "--duration",
        "1s",
        "--json",
    ]));
    assert_eq!(by_pid["processes_watched"], 1, "{by_pid}");
    assert_eq!(listed_pids(&by_pid), [leaker.pid()], "{by_pid}");

    // A name nothing has: nothing watched, nothing listed.
    let none = suspects_json(&suspects(&[
        "--name",
        "no-such-process-name",
        "--interval",
        "100ms",
        "--duration",
        "300ms",
        "--json",
    ]));
    assert_eq!(none["processes_watched"], 0, "{none}");
    assert_eq!(listed_pids(&none), Vec::<u64>::new());

    let table = suspects_ok(&[
        "--name",
        "leak_filtered",
        "--interval",
        "200ms",
        "--duration",
        "1s",
    ]);
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(text.contains("1 process grew steadily"), "{text}");
    assert!(
        text.contains(&format!("record:  memtrail-record -p {pid} -o {pid}.trace")),
        "{text}"
    );
}

#[test]
fn works_without_root() {
    // Only meaningful when we are root and can drop to an unprivileged user.
    let is_root = std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"));
    if !is_root || Command::new("setpriv").arg("--version").output().is_err() {
        eprintln!("skipping: needs root and setpriv to drop privileges");
        return;
    }
    let scratch = Scratch::new("suspects", "unprivileged");
    let leaking = build(&scratch, "fibonacci.c", "fibonacci");
    let leaker = Running::start(&leaking, "30");
    let output = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
        ])
        .arg(recorder())
        .args([
            "suspects",
            "--interval",
            "200ms",
            "--duration",
            "1.2s",
            "--json",
        ])
        .output()
        .expect("run setpriv");
    let report = suspects_json(&output);
    assert!(
        listed_pids(&report).contains(&leaker.pid()),
        "root's leaking process not listed for an unprivileged user: {report}"
    );
}

#[test]
fn bad_options_are_one_line() {
    for (args, expected) in [
        (
            &["--interval", "0s"][..],
            "--interval must be greater than zero",
        ),
        (
            &["--interval", "1s", "--duration", "2s"][..],
            "--duration must cover at least 3 intervals",
        ),
        (&["--interval", "soon"][..], "is not a duration"),
        (
            &["--interval", "1ms", "--duration", "1h"][..],
            "more than 86400 samples",
        ),
    ] {
        let output = suspects(args);
        assert!(!output.status.success(), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

/// True once process `pid` catches SIGINT (its handler is installed).
fn catches_sigint(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("SigCgt:"))
        .and_then(|mask| u64::from_str_radix(mask.trim(), 16).ok())
        .is_some_and(|mask| mask & (1 << (2 - 1)) != 0)
}

#[test]
fn ctrl_c_reports_on_the_samples_so_far() {
    let scratch = Scratch::new("suspects", "interrupted");
    let leaking = build(&scratch, "fibonacci.c", "leak_interrupt");
    let leaker = Running::start(&leaking, "30");
    let child = Command::new(recorder())
        .args([
            "suspects",
            "--interval",
            "100ms",
            "--duration",
            "1h",
            "--json",
        ])
        .args(["-p", &leaker.pid().to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start suspects");
    while !catches_sigint(child.id()) {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // Some samples first: the report must have enough of them to judge.
    std::thread::sleep(std::time::Duration::from_millis(800));
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success());
    let report = suspects_json(&child.wait_with_output().expect("wait for suspects"));
    assert!(report["samples"].as_u64().unwrap() >= 4, "{report}");
    assert!(report["duration_s"].as_f64().unwrap() < 3600.0, "{report}");
    assert_eq!(listed_pids(&report), [leaker.pid()], "{report}");
}

/// Any user names their processes, and root's `suspects` prints the names: escape sequences,
/// C1 controls, DEL and bidi overrides in a process's name (its executable's file name) and
/// command line are shown as visible escapes in the table, and as `\u` escapes in the JSON,
/// whose values stay the raw text. A name that is not UTF-8 does not hide its process.
#[test]
fn hostile_names_and_command_lines_are_escaped() {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;

    use memtrail_format::testing::escapes::assert_no_raw_controls;

    let scratch = Scratch::new("suspects", "hostile");
    let leaking = build(&scratch, "fibonacci.c", "fibonacci");
    // 11 bytes: the whole name fits in the kernel's 15-byte comm.
    let name = "f\x1b[2J\x07\u{9b}\u{202e}";
    let named = scratch.path(name);
    std::fs::copy(&leaking, &named).unwrap();
    // The 8-bit CSI byte alone: not UTF-8.
    let not_utf8 = scratch.path("").join(OsStr::from_bytes(b"g\x9b[2J"));
    std::fs::copy(&leaking, &not_utf8).unwrap();
    recorder();
    let args = ["30", "\x1b]0;pwned\x07", "\u{202e}gpj.exe", "\x7f\u{9b}31m"];
    let start = |program: &Path| {
        Running(
            Command::new(program)
                .args(args)
                .stdout(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("start {}: {e}", program.display())),
        )
    };
    let (hostile, odd) = (start(&named), start(&not_utf8));
    let pids = [hostile.pid().to_string(), odd.pid().to_string()];
    let options = [
        "-p",
        &pids[0],
        "-p",
        &pids[1],
        "--interval",
        "200ms",
        "--duration",
        "1.2s",
    ];

    let table = suspects_ok(&options);
    let text = String::from_utf8(table.stdout).expect("UTF-8 table");
    assert_no_raw_controls("the suspects table", &text);
    for visible in [
        r"f\x1b[2J\x07\u{9b}\u{202e}",
        r" 30 \x1b]0;pwned\x07 \u{202e}gpj.exe \x7f\u{9b}31m",
        "g\u{fffd}[2J",
    ] {
        assert!(text.contains(visible), "no {visible} in:\n{text}");
    }

    let mut with_json = options.to_vec();
    with_json.push("--json");
    let output = suspects(&with_json);
    assert_no_raw_controls(
        "the suspects JSON",
        &String::from_utf8_lossy(&output.stdout),
    );
    let report = suspects_json(&output);
    let entry = |pid: u64| {
        report["suspects"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["pid"].as_u64() == Some(pid))
            .unwrap_or_else(|| panic!("{pid} not listed: {report}"))
            .clone()
    };
    let listed = entry(hostile.pid());
    assert_eq!(listed["name"], name, "{listed}");
    assert!(
        listed["command"]
            .as_str()
            .unwrap()
            .ends_with(&format!("{name} {}", args.join(" "))),
        "{listed}"
    );
    assert_eq!(entry(odd.pid())["name"], "g\u{fffd}[2J");
}
