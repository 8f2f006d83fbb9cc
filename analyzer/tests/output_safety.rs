//! The analyzer's files cannot be turned against it (synthetic traces, no root needed): an
//! output is never one of the inputs, a symbolic link at `-o` is replaced and not followed,
//! and a FIFO or a directory as input is refused at once. The recorder's side, with real
//! probes, is in `tests/tests/output_safety.rs`.
//!
//! Every victim file is in the test's scratch directory: on a build without these checks,
//! the tests fail by writing there, never elsewhere.

mod support;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use memtrail_format::testing::TraceBuilder;
use memtrail_format::{EndTotals, TraceMeta};
use memtrail_tests::Scratch;
use memtrail_tests::{fails_with, stderr_of, wait_at_most};
use support::memtrail_bin;

fn memtrail(args: &[&str]) -> Output {
    Command::new(memtrail_bin())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run memtrail")
}

fn is_symlink(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink())
}

/// A small complete trace: one leaked block on one stack.
fn write_small_trace(path: &Path) -> Vec<u8> {
    let meta = TraceMeta {
        tool_version: "0.1.0".into(),
        pid: 7,
        command_line: vec!["./app".into()],
        page_size: 4096,
        ..TraceMeta::default()
    };
    let mut t = TraceBuilder::new(&meta);
    t.stack(1, vec![]).alloc(1_000, 0x1000, 64, 1).end_with(
        2_000_000_000,
        EndTotals {
            allocations: 1,
            ..EndTotals::default()
        },
    );
    t.write(path)
}

#[test]
fn the_analyzer_never_writes_over_its_input() {
    let scratch = Scratch::new("output-safety", "analyzer-input");
    let trace = scratch.path("t.trace");
    let bytes = write_small_trace(&trace);
    let t = trace.to_str().unwrap();

    let e = fails_with(&memtrail(&["report", t, "-o", t]), 2);
    assert!(e.contains("input"), "{e}");
    assert_eq!(std::fs::read(&trace).unwrap(), bytes);

    // Another name of the same file, and the other commands that write files.
    let alias = scratch.path("alias.html");
    std::fs::hard_link(&trace, &alias).unwrap();
    let a = alias.to_str().unwrap();
    for args in [
        vec!["report", t, "-o", a],
        vec!["flamegraph", t, "-o", t],
        vec!["export", t, "--format", "csv", "-o", t],
        vec!["timeline", t, "--svg", t],
        vec!["diff", t, t, "--flamegraph", t],
        vec!["compare", "--baseline", t, t, "-o", t],
    ] {
        let e = fails_with(&memtrail(&args), 2);
        assert!(e.contains("input"), "{args:?}: {e}");
        assert_eq!(std::fs::read(&trace).unwrap(), bytes, "{args:?}");
    }
}

#[test]
fn an_output_symlink_is_replaced_not_followed() {
    let scratch = Scratch::new("output-safety", "analyzer-symlink");
    let trace = scratch.path("t.trace");
    write_small_trace(&trace);
    let victim = scratch.path("victim.txt");
    std::fs::write(&victim, b"precious\n").unwrap();
    let t = trace.to_str().unwrap();
    for (name, args) in [
        ("out.svg", vec!["flamegraph", t, "-o"]),
        ("out.html", vec!["report", t, "-o"]),
        ("out.csv", vec!["export", t, "--format", "csv", "-o"]),
    ] {
        let link = scratch.path(name);
        std::os::unix::fs::symlink(&victim, &link).unwrap();
        let mut args = args.clone();
        args.push(link.to_str().unwrap());
        let out = memtrail(&args);
        assert!(out.status.success(), "{args:?}: {}", stderr_of(&out));
        assert_eq!(std::fs::read(&victim).unwrap(), b"precious\n", "{args:?}");
        assert!(!is_symlink(&link), "{args:?}: the link is still there");
        assert!(std::fs::metadata(&link).unwrap().len() > 0);
    }
    // A dangling link creates nothing where it points.
    let chosen = scratch.path("chosen");
    let dangling = scratch.path("dangling.svg");
    std::os::unix::fs::symlink(&chosen, &dangling).unwrap();
    let out = memtrail(&["flamegraph", t, "-o", dangling.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert!(!chosen.exists());
    assert!(!is_symlink(&dangling));
}

#[test]
fn a_fifo_input_is_refused_at_once() {
    let scratch = Scratch::new("output-safety", "analyzer-fifo");
    let fifo = scratch.path("t.trace");
    let made = Command::new("mkfifo").arg(&fifo).status().expect("mkfifo");
    assert!(made.success());
    for command in ["info", "leaks"] {
        let mut child = Command::new(memtrail_bin())
            .arg(command)
            .arg(&fifo)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run memtrail");
        // A guard, not a timing assertion: a FIFO with no writer would block a plain open
        // forever.
        wait_at_most(&mut child, Duration::from_secs(60));
        let out = child.wait_with_output().expect("output");
        let e = fails_with(&out, 2);
        assert!(e.contains("FIFO") && e.contains("regular file"), "{e}");
    }
}

#[test]
fn a_directory_input_is_refused() {
    let scratch = Scratch::new("output-safety", "analyzer-dir");
    let dir = scratch.path("traces.trace");
    std::fs::create_dir(&dir).unwrap();
    let d = dir.to_str().unwrap();
    for args in [
        vec!["info", d],
        vec!["report", d, "-o", "/nonexistent/x.html"],
    ] {
        let e = fails_with(&memtrail(&args), 2);
        assert!(
            e.contains("a directory") && e.contains("regular file"),
            "{args:?}: {e}"
        );
    }
}
