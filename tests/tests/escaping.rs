//! A real recording of a program whose file name, arguments and output path hold escape
//! sequences: what the recorder prints and what the analyzer reports of its trace show them
//! escaped. The analyzer's escaping of every output, on a crafted trace, is checked by
//! `analyzer/tests/escaping.rs` (no root needed).

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::process::Command;

use memtrail_format::testing::escapes::assert_no_raw_controls;
use memtrail_tests::{
    Scratch, analyzer, bpf_available, compile_sample, recorder, repo_root, run_ok,
};
use serde_json::Value;

fn memtrail(args: &[&OsStr]) -> String {
    let out = run_ok(Command::new(analyzer()).args(args));
    let stdout = String::from_utf8(out.stdout).expect("stdout is UTF-8");
    let stderr = String::from_utf8(out.stderr).expect("stderr is UTF-8");
    assert_no_raw_controls(&format!("stdout of {args:?}"), &stdout);
    assert_no_raw_controls(&format!("stderr of {args:?}"), &stderr);
    stdout
}

fn os(s: &str) -> &OsStr {
    OsStr::new(s)
}

/// A real recording of a program whose file name, arguments and output path hold escape
/// sequences: the recorder's lines on stderr show them escaped, and the analyzer's report of
/// the trace does too (the command line comes from the recorder, untouched in the trace).
#[test]
fn a_recording_of_a_hostile_program_prints_escapes() {
    if !bpf_available() {
        return;
    }
    let scratch = Scratch::new("escaping", "record");
    let program = scratch
        .path("")
        .join(OsStr::from_bytes("fib\x1b]0;x\x07\u{202e}".as_bytes()));
    compile_sample(&repo_root().join("samples/fibonacci.c"), &program);
    let trace = scratch
        .path("")
        .join(OsStr::from_bytes("o\x1b[2J\u{202e}.trace".as_bytes()));
    let out = run_ok(
        Command::new(recorder())
            .arg("-o")
            .arg(&trace)
            .arg("--")
            .arg(&program)
            .args(["0.5", "\x1b[2J\u{9b}31m"]),
    );
    let stderr = String::from_utf8(out.stderr).expect("UTF-8 stderr");
    assert_no_raw_controls("memtrail-record's stderr", &stderr);
    assert!(
        stderr.contains(r"writing ") && stderr.contains(r"o\x1b[2J\u{202e}.trace in "),
        "{stderr}"
    );

    let info = memtrail(&[os("info"), trace.as_os_str()]);
    assert!(
        info.contains(r"fib\x1b]0;x\x07\u{202e} 0.5 \x1b[2J\u{9b}31m"),
        "{info}"
    );
    let info: Value =
        serde_json::from_str(&memtrail(&[os("info"), trace.as_os_str(), os("--json")]))
            .expect("info --json is JSON");
    assert_eq!(info["command_line"][2], "\x1b[2J\u{9b}31m", "{info}");
}
