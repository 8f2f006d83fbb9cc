//! Helpers shared by the end-to-end tests: where the binaries are, whether BPF can be used
//! here, scratch directories, compiling samples, recording them, and running a command that
//! must succeed. The tests themselves live in tests/tests/; the synthetic and hostile traces
//! they share come from `memtrail_format::testing` (a dev-dependency feature, so that it is
//! never built into a release binary).

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_owned()
}

/// True when the tests can load BPF programs and attach uprobes here. When they cannot, it
/// prints why and returns false, unless `MEMTRAIL_REQUIRE_BPF` is set (as `.ci/run` does):
/// then it panics, so CI never passes by skipping.
pub fn bpf_available() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let cap_eff = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .unwrap_or(0);
    let has = |bit: u32| cap_eff & (1 << bit) != 0;
    // CAP_SYS_ADMIN (21), or CAP_PERFMON (38) with CAP_BPF (39).
    let usable = has(21) || (has(38) && has(39));
    let uprobes = Path::new("/sys/bus/event_source/devices/uprobe/type").exists();
    if usable && uprobes {
        return true;
    }
    let why = if usable {
        "the kernel has no uprobe PMU"
    } else {
        "not root (needs CAP_BPF, CAP_PERFMON or CAP_SYS_ADMIN)"
    };
    if std::env::var_os("MEMTRAIL_REQUIRE_BPF").is_some() {
        panic!("MEMTRAIL_REQUIRE_BPF is set but BPF is unavailable: {why}");
    }
    eprintln!("skipping: BPF unavailable ({why}); set MEMTRAIL_REQUIRE_BPF to make this fail");
    false
}

/// A binary of the workspace: `$env_var` if set, else `name` in this test's target directory.
///
/// The first call in a test process runs `cargo build --workspace --all-targets` there, so a
/// binary is never stale. That is the feature set `cargo test --workspace` has just built
/// with, so after it the call is a no-op; building one package alone would resolve features
/// differently and rebuild polars.
pub fn workspace_binary(env_var: &str, name: &str) -> PathBuf {
    if let Some(path) = std::env::var_os(env_var) {
        return PathBuf::from(path);
    }
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    let profile_dir = BUILT.get_or_init(|| {
        // target/<profile>/deps/<test>-HASH -> target/<profile>
        let exe = std::env::current_exe().expect("test executable path");
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("test binary lives in target/<profile>/deps")
            .to_owned();
        let mut build = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
        build
            .args(["build", "-q", "--workspace", "--all-targets"])
            .current_dir(repo_root());
        if profile_dir.file_name().is_some_and(|n| n == "release") {
            build.arg("--release");
        }
        if let Some(target) = profile_dir.parent() {
            build.env("CARGO_TARGET_DIR", target);
        }
        let status = build.status().expect("run cargo build");
        assert!(
            status.success(),
            "cargo build --workspace --all-targets failed"
        );
        profile_dir
    });
    let bin = profile_dir.join(name);
    assert!(bin.exists(), "no {name} binary at {}", bin.display());
    bin
}

/// A scratch directory under the system temp dir, removed when dropped.
pub struct Scratch(PathBuf);

impl Scratch {
    /// `suite` names the test file, `name` the test: parallel tests never share a directory.
    pub fn new(suite: &str, name: &str) -> Scratch {
        let dir =
            std::env::temp_dir().join(format!("memtrail-{suite}-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create scratch dir");
        Scratch(dir)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The recorder under test (`$MEMTRAIL_RECORD`, else built here: see [`workspace_binary`]).
pub fn recorder() -> PathBuf {
    workspace_binary("MEMTRAIL_RECORD", "memtrail-record")
}

/// The analyzer under test (`$MEMTRAIL_BIN`, else built here: see [`workspace_binary`]).
pub fn analyzer() -> PathBuf {
    workspace_binary("MEMTRAIL_BIN", "memtrail")
}

/// Runs `command` to its end and asserts that it succeeded, showing its stderr if not;
/// returns its output.
pub fn run_ok(command: &mut Command) -> Output {
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    assert_ok(&format!("{command:?}"), &out);
    out
}

/// Asserts that `what`, a finished run (e.g. a spawned child's), succeeded, showing its
/// stderr if not.
pub fn assert_ok(what: &str, out: &Output) {
    assert!(
        out.status.success(),
        "{what} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A finished run's stderr, as text.
pub fn stderr_of(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The error of a run that must fail with `code`, checked to be one line and no panic.
pub fn fails_with(output: &Output, code: i32) -> String {
    let stderr = stderr_of(output);
    assert_eq!(output.status.code(), Some(code), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    stderr
}

/// Checks that `what`, a finished run, exited with `status` and did not panic; returns its
/// stdout and stderr.
pub fn expect_status(what: &str, output: &Output, status: i32) -> (String, String) {
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = stderr_of(output);
    assert_eq!(
        output.status.code(),
        Some(status),
        "{what}: stderr {stderr}\nstdout {stdout}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    (stdout, stderr)
}

/// Runs `compiler FLAGS -o OUTPUT INPUTS... AFTER...` (`after`: libraries and linker flags,
/// which must follow the inputs), creating the output's directory first.
pub fn compile(compiler: &str, flags: &[&str], output: &Path, inputs: &[&Path], after: &[&str]) {
    if let Some(dir) = output.parent() {
        std::fs::create_dir_all(dir).expect("create the output directory");
    }
    run_ok(
        Command::new(compiler)
            .args(flags)
            .arg("-o")
            .arg(output)
            .args(inputs)
            .args(after),
    );
}

/// Compiles a C or C++ sample (g++ for `.cpp`) with frame pointers and debug info into
/// `output`, as the samples' headers say to build them.
pub fn compile_sample(source: &Path, output: &Path) {
    let compiler = if source.extension().is_some_and(|e| e == "cpp") {
        "g++"
    } else {
        "gcc"
    };
    compile(
        compiler,
        &["-O1", "-g", "-fno-omit-frame-pointer", "-pthread"],
        output,
        &[source],
        &[],
    );
}

/// `memtrail-record -q -o TRACE EXTRA... -- COMMAND...`, to run or spawn.
pub fn record_command<S: AsRef<OsStr>>(
    trace: &Path,
    extra_args: &[&str],
    command: &[S],
) -> Command {
    let mut recorder = Command::new(recorder());
    recorder
        .arg("-q")
        .arg("-o")
        .arg(trace)
        .args(extra_args)
        .arg("--")
        .args(command);
    recorder
}

/// Records `command` into `trace` (see [`record_command`]), whatever the outcome.
pub fn record<S: AsRef<OsStr>>(trace: &Path, extra_args: &[&str], command: &[S]) -> Output {
    record_command(trace, extra_args, command)
        .output()
        .expect("run memtrail-record")
}

/// Records `command` into `trace` (see [`record_command`]) and asserts that it succeeded.
pub fn record_ok<S: AsRef<OsStr>>(trace: &Path, extra_args: &[&str], command: &[S]) -> Output {
    run_ok(&mut record_command(trace, extra_args, command))
}

/// The calloc events readable in the trace at `path` now (0 before it exists): how a test
/// waits for a recording to have flushed its first events.
pub fn callocs_in(path: &Path) -> usize {
    use memtrail_format::{AllocApi, Record, TraceReader};
    let Ok(reader) = TraceReader::open(path) else {
        return 0;
    };
    reader
        .map_while(Result::ok)
        .filter(|r| {
            matches!(
                r,
                Record::Alloc {
                    api: AllocApi::Calloc,
                    ..
                }
            )
        })
        .count()
}

/// Waits for `child` to exit, killing it (and failing the test) after `limit`.
pub fn wait_at_most(
    child: &mut std::process::Child,
    limit: std::time::Duration,
) -> std::process::ExitStatus {
    let start = std::time::Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("process {} still running after {limit:?}", child.id());
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Waits (up to `limit`) until no `memtrail-record` process is left on the host: a recorder
/// and the helper that retires its probes after it exits (about 100 ms a probe, ~22 per
/// followed process). Debuggers need it: while a uprobe exists at an address, the kernel
/// takes a debugger's breakpoint trap there for the uprobe's and removes the breakpoint (in a
/// process the uprobe does not trace), so gdb would stop nowhere. Returns whether it waited
/// them out.
pub fn wait_for_no_recorder(limit: Duration) -> bool {
    let started = Instant::now();
    loop {
        let any = std::fs::read_dir("/proc").is_ok_and(|entries| {
            entries.filter_map(Result::ok).any(|entry| {
                std::fs::read_to_string(entry.path().join("comm"))
                    .is_ok_and(|comm| comm.trim_end() == "memtrail-record")
            })
        });
        if !any {
            return true;
        }
        if started.elapsed() >= limit {
            return false;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}
