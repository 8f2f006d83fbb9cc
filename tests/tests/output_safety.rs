//! The files both programs write and read cannot be turned against them: `memtrail-record`
//! runs as root, often with `-o` in a directory other users can write to.
//!
//! Recorder (real probes, so root: without BPF each test prints why and passes, unless
//! MEMTRAIL_REQUIRE_BPF is set): a symbolic link, dangling or not, at `-o` is never followed;
//! a file another user planted there is never reused (its inode keeps its content, the trace
//! is a new 0600 root-owned file); a hard link is never written through; the traced program
//! is never the output; a launch that fails (127 not found, 126 cannot run) keeps the
//! previous trace byte for byte; SIGTERM ends with 143 and a complete trace; recording again
//! to the same name replaces the trace. The analyzer's side (synthetic traces, no root
//! needed) is in `analyzer/tests/output_safety.rs`.
//!
//! Every victim file is in the test's scratch directory: on a build without these checks,
//! the tests fail by writing there, never elsewhere.

use std::ffi::OsStr;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use memtrail_format::{Record, TraceReader};
use memtrail_tests::{
    Scratch, bpf_available, callocs_in, compile_sample, fails_with, record, record_command,
    record_ok, repo_root, stderr_of, wait_at_most,
};

const NOBODY: u32 = 65534;

/// The records of a trace that must be complete (it ends with its End record).
fn complete_trace(path: &Path) -> Vec<Record> {
    let records: Vec<Record> = TraceReader::open(path)
        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()))
        .map(|r| r.unwrap_or_else(|e| panic!("read {}: {e}", path.display())))
        .collect();
    assert!(
        records.iter().any(|r| matches!(r, Record::End { .. })),
        "{} has no End record",
        path.display()
    );
    records
}

/// The file names in `dir`, sorted (to see that no temporary file was left behind).
fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("list the scratch directory")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn scratch_dir(scratch: &Scratch) -> PathBuf {
    scratch.path("")
}

fn is_symlink(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink())
}

/// A new file with mode 0600 owned by root: the trace the recorder made, not a reused one.
fn assert_new_private_file(path: &Path, old_inode: u64) {
    let meta = std::fs::symlink_metadata(path).expect("the trace exists");
    assert!(
        meta.file_type().is_file(),
        "{} is not a file",
        path.display()
    );
    assert_eq!(meta.mode() & 0o7777, 0o600, "mode of {}", path.display());
    assert_eq!(meta.uid(), 0, "owner of {}", path.display());
    assert_ne!(
        meta.ino(),
        old_inode,
        "{} reused the old inode",
        path.display()
    );
}

#[test]
fn a_symlink_at_the_output_is_never_followed() {
    if !bpf_available() {
        return;
    }
    let scratch = Scratch::new("output-safety", "symlink");
    let victim = scratch.path("victim.conf");
    std::fs::write(&victim, b"root's precious file\n").unwrap();
    let link = scratch.path("out.trace");
    std::os::unix::fs::symlink(&victim, &link).unwrap();

    let e = fails_with(&record(&link, &[], &["/bin/true"]), 1);
    assert!(e.contains("symbolic link") && e.contains("--force"), "{e}");
    assert_eq!(std::fs::read(&victim).unwrap(), b"root's precious file\n");
    assert!(is_symlink(&link));

    // --force replaces the link itself, by rename: the file it pointed to is untouched.
    record_ok(&link, &["--force"], &["/bin/true"]);
    assert_eq!(std::fs::read(&victim).unwrap(), b"root's precious file\n");
    assert_new_private_file(&link, std::fs::metadata(&victim).unwrap().ino());
    complete_trace(&link);
    assert_eq!(
        names_in(&scratch_dir(&scratch)),
        ["out.trace", "victim.conf"]
    );
}

#[test]
fn a_dangling_symlink_at_the_output_creates_nothing() {
    if !bpf_available() {
        return;
    }
    let scratch = Scratch::new("output-safety", "dangling");
    let chosen = scratch.path("chosen-by-the-attacker");
    let link = scratch.path("out.trace");
    std::os::unix::fs::symlink(&chosen, &link).unwrap();

    let e = fails_with(&record(&link, &[], &["/bin/true"]), 1);
    assert!(e.contains("symbolic link"), "{e}");
    assert!(!chosen.exists(), "root created the file the link points to");

    record_ok(&link, &["--force"], &["/bin/true"]);
    assert!(!chosen.exists(), "root created the file the link points to");
    assert!(!is_symlink(&link));
    complete_trace(&link);
}

#[test]
fn a_file_planted_by_another_user_is_never_reused() {
    if !bpf_available() {
        return;
    }
    let scratch = Scratch::new("output-safety", "planted");
    // Another user's world-writable file, waiting for root to write the trace into it.
    let planted = scratch.path("out.trace");
    std::fs::write(&planted, b"planted by nobody\n").unwrap();
    std::os::unix::fs::chown(&planted, Some(NOBODY), Some(NOBODY)).unwrap();
    std::fs::set_permissions(&planted, std::fs::Permissions::from_mode(0o666)).unwrap();
    // What the planter keeps open to read the trace later.
    let mut planter_handle = std::fs::File::open(&planted).unwrap();
    let old_inode = planter_handle.metadata().unwrap().ino();

    let e = fails_with(&record(&planted, &[], &["/bin/true"]), 1);
    assert!(
        e.contains("not a memtrail trace") && e.contains("--force"),
        "{e}"
    );
    assert_eq!(std::fs::read(&planted).unwrap(), b"planted by nobody\n");

    record_ok(&planted, &["--force"], &["/bin/true"]);
    assert_new_private_file(&planted, old_inode);
    complete_trace(&planted);
    // The old inode is unchanged: the planter reads its own bytes, not the trace.
    let mut seen = Vec::new();
    std::io::Read::read_to_end(&mut planter_handle, &mut seen).unwrap();
    assert_eq!(seen, b"planted by nobody\n");
    let old = planter_handle.metadata().unwrap();
    assert_eq!((old.uid(), old.mode() & 0o777), (NOBODY, 0o666));

    // Planted with a trace's first bytes it is replaced without --force, still as a new file.
    let fake_trace = scratch.path("fake.trace");
    let mut bytes = b"\x89MTRACE\n".to_vec();
    bytes.extend_from_slice(&[0; 12]);
    std::fs::write(&fake_trace, &bytes).unwrap();
    std::os::unix::fs::chown(&fake_trace, Some(NOBODY), Some(NOBODY)).unwrap();
    std::fs::set_permissions(&fake_trace, std::fs::Permissions::from_mode(0o666)).unwrap();
    let fake_handle = std::fs::File::open(&fake_trace).unwrap();
    record_ok(&fake_trace, &[], &["/bin/true"]);
    assert_new_private_file(&fake_trace, fake_handle.metadata().unwrap().ino());
    assert_eq!(fake_handle.metadata().unwrap().len(), 20, "written through");
}

#[test]
fn a_hard_link_at_the_output_is_not_written_through() {
    if !bpf_available() {
        return;
    }
    let scratch = Scratch::new("output-safety", "hardlink");
    let linked = scratch.path("someone-elses.trace");
    record_ok(&linked, &[], &["/bin/true"]);
    let before = std::fs::read(&linked).unwrap();
    let output = scratch.path("out.trace");
    std::fs::hard_link(&linked, &output).unwrap();

    record_ok(&output, &[], &["/bin/sh", "-c", "exit 0"]);
    assert_eq!(std::fs::read(&linked).unwrap(), before, "written through");
    assert_new_private_file(&output, std::fs::metadata(&linked).unwrap().ino());
    complete_trace(&output);
}

#[test]
fn the_output_is_never_the_launched_program() {
    if !bpf_available() {
        return;
    }
    let scratch = Scratch::new("output-safety", "program");
    let program = scratch.path("prog");
    std::fs::copy("/bin/true", &program).unwrap();
    let original = std::fs::read(&program).unwrap();
    let program_arg = program.to_str().expect("utf-8 path");

    for extra in [&[][..], &["--force"][..]] {
        let e = fails_with(&record(&program, extra, &[program_arg]), 1);
        assert!(e.contains("program being traced"), "{e}");
        assert_eq!(std::fs::read(&program).unwrap(), original);
    }
    // Another name of the same file is the same program.
    let alias = scratch.path("alias");
    std::fs::hard_link(&program, &alias).unwrap();
    let e = fails_with(&record(&alias, &["--force"], &[program_arg]), 1);
    assert!(e.contains("program being traced"), "{e}");
    assert_eq!(std::fs::read(&program).unwrap(), original);
    assert_ne!(
        std::fs::metadata(&program).unwrap().mode() & 0o111,
        0,
        "still executable"
    );
    assert_eq!(names_in(&scratch_dir(&scratch)), ["alias", "prog"]);
}

#[test]
fn a_launch_that_fails_keeps_the_previous_trace() {
    if !bpf_available() {
        return;
    }
    let scratch = Scratch::new("output-safety", "launch-fails");
    let keep = scratch.path("keep.trace");
    record_ok(&keep, &[], &["/bin/true"]);
    let before = std::fs::read(&keep).unwrap();
    let not_executable = scratch.path("script.sh");
    std::fs::write(&not_executable, b"#!/bin/sh\nexit 0\n").unwrap();
    std::fs::set_permissions(&not_executable, std::fs::Permissions::from_mode(0o644)).unwrap();

    // As env and timeout: 127 when the command is not found, 126 when it cannot be run.
    let cases: [(&str, i32); 3] = [
        ("/nonexistent/program", 127),
        ("memtrail-no-such-command-on-path", 127),
        (not_executable.to_str().expect("utf-8 path"), 126),
    ];
    for (command, code) in cases {
        let e = fails_with(&record(&keep, &[], &[command]), code);
        assert!(e.contains(command), "{e}");
        assert_eq!(
            std::fs::read(&keep).unwrap(),
            before,
            "{command} changed the previous trace"
        );
    }
    assert_eq!(
        names_in(&scratch_dir(&scratch)),
        ["keep.trace", "script.sh"]
    );
}

#[test]
fn sigterm_ends_the_recording_with_143_and_a_complete_trace() {
    if !bpf_available() {
        return;
    }
    let scratch = Scratch::new("output-safety", "sigterm");
    let sample = scratch.path("fibonacci");
    compile_sample(&repo_root().join("samples/fibonacci.c"), &sample);
    let trace = scratch.path("sigterm.trace");
    let mut recorder = record_command(&trace, &[], &[sample.as_os_str(), OsStr::new("30")])
        .spawn()
        .expect("start memtrail-record");
    // The trace is at its final name as soon as the program runs, flushed every second.
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline && callocs_in(&trace) < 20 {
        std::thread::sleep(Duration::from_millis(200));
    }
    let killed = Command::new("kill")
        .args(["-TERM", &recorder.id().to_string()])
        .status()
        .expect("kill -TERM");
    assert!(killed.success());
    let status = wait_at_most(&mut recorder, Duration::from_secs(60));
    let records = complete_trace(&trace);
    // The sample was not signalled and runs on: end it.
    if let Some(Record::Meta(meta)) = records.iter().find(|r| matches!(r, Record::Meta(_))) {
        let _ = Command::new("kill")
            .args(["-KILL", &meta.pid.to_string()])
            .status();
    }
    assert_eq!(status.code(), Some(143), "128 + SIGTERM");
    assert!(callocs_in(&trace) >= 20);
}

#[test]
fn recording_again_to_the_same_name_replaces_the_trace() {
    if !bpf_available() {
        return;
    }
    let scratch = Scratch::new("output-safety", "again");
    let trace = scratch.path("app.trace");
    record_ok(&trace, &[], &["/bin/true"]);
    let first_inode = std::fs::metadata(&trace).unwrap().ino();
    let output = record(&trace, &[], &["/bin/sh", "-c", "exit 5"]);
    assert_eq!(output.status.code(), Some(5), "{}", stderr_of(&output));
    assert_new_private_file(&trace, first_inode);
    let records = complete_trace(&trace);
    assert!(
        records
            .iter()
            .any(|r| matches!(r, Record::Exit { code: Some(5), .. })),
        "the trace is the second recording's"
    );
    assert_eq!(names_in(&scratch_dir(&scratch)), ["app.trace"]);
}
