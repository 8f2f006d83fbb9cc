//! Helpers shared by the analyzer's test files: the `memtrail` binary cargo built for them
//! and the crafted hostile traces (`hostile`). Synthetic traces are written with
//! `memtrail_format::testing::TraceBuilder`; scratch directories and run-and-check helpers
//! come from `memtrail_tests`, shared with the end-to-end tests.
//!
//! These tests need no root: tests that record with real probes live in `tests/tests/`.

#![allow(dead_code)] // each test file uses its share

pub mod hostile;

use std::ffi::OsStr;
use std::fmt::Debug;
use std::path::PathBuf;
use std::process::{Command, Output};

/// The analyzer binary: `$MEMTRAIL_BIN` if set (a private copy, on a machine where other
/// builds share the target directory), else the one cargo built for this test.
pub fn memtrail_bin() -> PathBuf {
    std::env::var_os("MEMTRAIL_BIN").map_or_else(
        || PathBuf::from(env!("CARGO_BIN_EXE_memtrail")),
        PathBuf::from,
    )
}

/// Runs `memtrail args`.
pub fn memtrail<S: AsRef<OsStr>>(args: &[S]) -> Output {
    Command::new(memtrail_bin())
        .args(args)
        .output()
        .expect("run memtrail")
}

/// Runs `memtrail args` and expects success (showing stderr and stdout if not) without a
/// panic; returns stdout and stderr.
pub fn ok<S: AsRef<OsStr> + Debug>(args: &[S]) -> (String, String) {
    let out = memtrail(args);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "memtrail {args:?} failed: {stderr}\n{stdout}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    (stdout, stderr)
}
