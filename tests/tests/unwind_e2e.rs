//! End-to-end tests of unwinding without frame pointers (`--unwind dwarf|auto`): samples built
//! with -O2 and no frame pointers (C, C++ with exceptions, Rust release, a dlopen'ed library)
//! are recorded with real probes, and each known allocation's stack must equal, return address
//! for return address up to the outermost frame, the backtrace gdb prints at the same malloc
//! call.
//!
//! Return addresses are compared as (module file name, file offset), which does not depend on
//! where each run placed the modules. gdb's frames come from its Python API, skipping inlined
//! frames (they share their caller's return address; the trace keeps one frame per return
//! address), placed in modules with `info proc mappings`.
//!
//! Needs root (or CAP_BPF + CAP_PERFMON), gcc, g++, gdb with Python and cargo; see
//! record_e2e.rs for MEMTRAIL_REQUIRE_BPF.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use memtrail_format::{Record, Stack, Unwinder};
use memtrail_tests::{
    Scratch, analyzer, assert_ok, bpf_available, record_ok, recorder, repo_root, run_ok,
    wait_for_no_recorder,
};

fn compile(scratch: &Scratch, compiler: &str, source: &str, flags: &[&str]) -> PathBuf {
    let source_path = repo_root().join("samples").join(source);
    let stem = Path::new(source)
        .file_stem()
        .and_then(|s| s.to_str())
        .expect("name");
    let output = scratch.path(stem);
    memtrail_tests::compile(compiler, flags, &output, &[&source_path], &[]);
    output
}

/// The frames gdb sees when malloc is entered with `size` (frame 0, malloc itself, left out):
/// (file name of the module, file offset of the return address, function name).
fn gdb_backtrace(scratch: &Scratch, command: &[&str], size: u64) -> Vec<(String, u64, String)> {
    // No recording (nor its probes' retirement) may overlap a gdb run: see
    // `wait_for_no_recorder`. Held for the whole gdb run.
    let _gdb = GDB_ALONE
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    assert!(
        wait_for_no_recorder(Duration::from_secs(300)),
        "an earlier memtrail-record is still retiring its probes after 5 minutes"
    );
    let script = scratch.path("frames.py");
    std::fs::write(
        &script,
        "import gdb, os\n\
         maps = []\n\
         for line in gdb.execute('info proc mappings', to_string=True).splitlines():\n\
         \x20   f = line.split()\n\
         \x20   if len(f) >= 6 and f[0].startswith('0x'):\n\
         \x20       maps.append((int(f[0], 16), int(f[1], 16), int(f[3], 16), f[-1]))\n\
         f = gdb.newest_frame()\n\
         while f is not None:\n\
         \x20   if f.type() != gdb.INLINE_FRAME:\n\
         \x20       pc = f.pc()\n\
         \x20       m = [m for m in maps if m[0] <= pc < m[1]]\n\
         \x20       where = '%s 0x%x' % (os.path.basename(m[0][3]), pc - m[0][0] + m[0][2]) if m else '? 0x0'\n\
         \x20       print('FRAME %s %s' % (where, f.name()))\n\
         \x20   f = f.older()\n",
    )
    .expect("write gdb script");
    let output = Command::new("gdb")
        .args(["-batch", "-nx"])
        .args(["-ex", "set debuginfod enabled off"])
        .args(["-ex", "set breakpoint pending on"])
        .args(["-ex", "set backtrace past-main on"])
        .args(["-ex", &format!("break malloc if $rdi == {size}")])
        .args(["-ex", "run"])
        .args(["-ex", &format!("source {}", script.display())])
        .args(["-ex", "kill"])
        .arg("--args")
        .args(command)
        .output()
        .expect("run gdb");
    let text = String::from_utf8_lossy(&output.stdout);
    let frames: Vec<(String, u64, String)> = text
        .lines()
        .filter_map(|line| line.strip_prefix("FRAME "))
        .filter_map(|rest| {
            let mut fields = rest.splitn(3, ' ');
            let module = fields.next()?.to_owned();
            let offset = u64::from_str_radix(fields.next()?.strip_prefix("0x")?, 16).ok()?;
            Some((module, offset, fields.next().unwrap_or("").to_owned()))
        })
        .collect();
    assert!(
        frames
            .first()
            .is_some_and(|(_, _, name)| name.contains("malloc")),
        "gdb did not stop in malloc for size {size}:\n{text}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    frames[1..].to_vec()
}

/// The recording of one sample, with stacks and symbols indexed.
struct Recorded {
    records: Vec<Record>,
    stacks: HashMap<u32, Stack>,
    /// (module, offset) -> function names, innermost inlined first.
    symbols: HashMap<(u32, u64), Vec<String>>,
    /// Module id -> file name.
    modules: HashMap<u32, String>,
}

/// gdb runs take it for writing, recordings for reading: they never overlap.
static GDB_ALONE: std::sync::RwLock<()> = std::sync::RwLock::new(());

fn record(scratch: &Scratch, unwind: &str, command: &[&str]) -> Recorded {
    let _recording = GDB_ALONE
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let trace = scratch.path(&format!("{unwind}.trace"));
    record_ok(&trace, &["--unwind", unwind], command);
    let records: Vec<Record> = memtrail_format::TraceReader::open(&trace)
        .expect("open trace")
        .map(|r| r.expect("read record"))
        .collect();
    let lost: u64 = records
        .iter()
        .map(|r| match r {
            Record::Lost { count, .. } => *count,
            _ => 0,
        })
        .sum();
    assert_eq!(lost, 0, "events lost");
    index(records)
}

/// Indexes a trace's stacks, symbols and modules. (Attaching may count as lost a call that
/// was in progress when the probes went in: checked by the launch-mode tests only.)
fn index(records: Vec<Record>) -> Recorded {
    let mut strings = HashMap::new();
    let mut stacks = HashMap::new();
    let mut symbols = HashMap::new();
    let mut modules = HashMap::new();
    for record in &records {
        match record {
            Record::Module(module) => {
                let name = Path::new(&module.path)
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                modules.insert(module.id, name);
            }
            Record::String { id, value } => {
                strings.insert(*id, value.clone());
            }
            Record::Stack(stack) => {
                stacks.insert(stack.id, stack.clone());
            }
            Record::Symbol(symbol) => {
                let names = symbol
                    .frames
                    .iter()
                    .map(|f| strings.get(&f.function).cloned().unwrap_or_default())
                    .collect();
                symbols.insert((symbol.module, symbol.offset), names);
            }
            _ => {}
        }
    }
    Recorded {
        records,
        stacks,
        symbols,
        modules,
    }
}

impl Recorded {
    /// The stack of the allocations of `size` bytes (all made from one call site).
    fn stack_of_size(&self, size: u64) -> &Stack {
        let mut ids: Vec<u32> = self
            .records
            .iter()
            .filter_map(|r| match r {
                Record::Alloc { size: s, stack, .. } if *s == size => Some(*stack),
                _ => None,
            })
            .collect();
        ids.dedup();
        assert_eq!(
            ids.len(),
            1,
            "stacks of the {size}-byte allocations: {ids:?}"
        );
        &self.stacks[&ids[0]]
    }

    /// The outermost function name of each frame ("?" when unresolved).
    fn names(&self, stack: &Stack) -> Vec<String> {
        stack
            .frames
            .iter()
            .map(|f| {
                self.symbols
                    .get(&(f.module, f.offset))
                    .and_then(|names| names.last().cloned())
                    .unwrap_or_else(|| "?".to_owned())
            })
            .collect()
    }
}

/// Records `command` with `--unwind dwarf` and checks, for each size, that the allocation's
/// stack is exactly gdb's backtrace; returns the recording for further checks.
fn assert_stacks_match_gdb(scratch: &Scratch, command: &[&str], sizes: &[u64]) -> Recorded {
    let expected: Vec<Vec<(String, u64, String)>> = sizes
        .iter()
        .map(|&size| gdb_backtrace(scratch, command, size))
        .collect();
    let recorded = record(scratch, "dwarf", command);
    for (size, gdb) in sizes.iter().zip(expected) {
        let stack = recorded.stack_of_size(*size);
        let ours: Vec<(String, u64)> = stack
            .frames
            .iter()
            .map(|f| {
                let module = recorded.modules.get(&f.module).cloned();
                (module.unwrap_or_else(|| "?".to_owned()), f.offset)
            })
            .collect();
        let theirs: Vec<(String, u64)> = gdb
            .iter()
            .map(|(module, offset, _)| (module.clone(), *offset))
            .collect();
        assert_eq!(
            ours,
            theirs,
            "size {size}: recorded {:?}, gdb {:?}",
            recorded.names(stack),
            gdb.iter().map(|(_, _, n)| n.as_str()).collect::<Vec<_>>()
        );
        assert_eq!(stack.unwinder, Unwinder::Dwarf, "size {size}");
        assert!(!stack.truncated, "size {size}: stack marked truncated");
    }
    recorded
}

#[test]
fn c_without_frame_pointers_gives_gdbs_stacks() {
    if !bpf_available() {
        return;
    }
    let scratch = Scratch::new("unwind_e2e", "c");
    let binary = compile(
        &scratch,
        "gcc",
        "unwind_c.c",
        &["-O2", "-g", "-fomit-frame-pointer", "-pthread"],
    );
    let command = [binary.to_str().expect("utf-8 path")];
    let recorded = assert_stacks_match_gdb(&scratch, &command, &[12345, 23456]);
    let names = recorded.names(recorded.stack_of_size(12345));
    assert_eq!(
        names[..4],
        ["level_three", "level_two", "level_one", "main"],
        "{names:?}"
    );
    let names = recorded.names(recorded.stack_of_size(23456));
    assert_eq!(
        names[..4],
        ["level_three", "level_two", "level_one", "worker"],
        "{names:?}"
    );

    // The kernel's frame-pointer walk on the same binary: level_three, then level_one (found
    // through level_two's rbp, the only frame keeping one), then nothing.
    let fp = record(&scratch, "fp", &command);
    let stack = fp.stack_of_size(12345);
    assert_eq!(stack.unwinder, Unwinder::FramePointer);
    assert!(stack.frames.len() < 4, "{:?}", fp.names(stack));
}

#[test]
fn code_without_cfi_is_walked_with_frame_pointers() {
    if !bpf_available() {
        return;
    }
    // Frame pointers but no unwind tables for the sample's own functions (only the C runtime
    // objects bring FDEs): the CFI unwinder must follow rbp there and CFI in libc.
    let scratch = Scratch::new("unwind_e2e", "no_cfi");
    let binary = compile(
        &scratch,
        "gcc",
        "unwind_c.c",
        &[
            "-O2",
            "-fno-omit-frame-pointer",
            "-fno-asynchronous-unwind-tables",
            "-fno-unwind-tables",
            "-pthread",
        ],
    );
    let recorded = record(&scratch, "dwarf", &[binary.to_str().expect("utf-8 path")]);
    let stack = recorded.stack_of_size(12345);
    let names = recorded.names(stack);
    assert_eq!(stack.unwinder, Unwinder::Dwarf);
    assert!(!stack.truncated, "{names:?}");
    assert_eq!(
        names[..4],
        ["level_three", "level_two", "level_one", "main"],
        "{names:?}"
    );
    assert_eq!(
        names.last().map(String::as_str),
        Some("_start"),
        "{names:?}"
    );
    let names = recorded.names(recorded.stack_of_size(23456));
    assert_eq!(
        names[..4],
        ["level_three", "level_two", "level_one", "worker"],
        "{names:?}"
    );
}

#[test]
fn cxx_with_exceptions_without_frame_pointers_gives_gdbs_stacks() {
    if !bpf_available() {
        return;
    }
    let scratch = Scratch::new("unwind_e2e", "cxx");
    let binary = compile(
        &scratch,
        "g++",
        "unwind_cxx.cpp",
        &["-O2", "-g", "-fomit-frame-pointer"],
    );
    let command = [binary.to_str().expect("utf-8 path")];
    let recorded = assert_stacks_match_gdb(&scratch, &command, &[34567, 45678]);
    let names = recorded.names(recorded.stack_of_size(34567));
    assert!(names[0].starts_with("operator new"), "{names:?}");
    assert_eq!(
        names[1..5],
        ["Inventory::grow", "Inventory::add", "fill", "main"].map(|n| names
            .iter()
            .find(|m| m.starts_with(n))
            .cloned()
            .unwrap_or_else(|| format!("{n} missing"))),
        "{names:?}"
    );
    let names = recorded.names(recorded.stack_of_size(45678));
    assert!(names[1].starts_with("recover"), "{names:?}");
    assert!(names[2] == "main", "{names:?}");
}

#[test]
fn rust_release_build_gives_gdbs_stacks() {
    if !bpf_available() {
        return;
    }
    let scratch = Scratch::new("unwind_e2e", "rust");
    let target_dir = scratch.path("target");
    run_ok(
        Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args(["build", "--release", "--quiet", "--manifest-path"])
            .arg(repo_root().join("samples/unwind_rust/Cargo.toml"))
            .env("CARGO_TARGET_DIR", &target_dir)
            .env_remove("RUSTFLAGS"),
    );
    let binary = target_dir.join("release/unwind_rust");
    let command = [binary.to_str().expect("utf-8 path")];
    let recorded = assert_stacks_match_gdb(&scratch, &command, &[56789, 67890]);
    // With line tables only, names are DWARF's (no module path).
    let names = recorded.names(recorded.stack_of_size(56789));
    assert_eq!(
        names[..4],
        ["reserve", "register", "build", "main"],
        "{names:?}"
    );
    let names = recorded.names(recorded.stack_of_size(67890));
    assert_eq!(names[0], "spawned", "{names:?}");
}

#[test]
fn library_loaded_with_dlopen_is_unwound_from_its_first_allocation() {
    if !bpf_available() {
        return;
    }
    // The existing dlopen samples, built here without frame pointers: the plugin is mapped
    // 400 ms into the run and allocates 10 x 123 bytes as soon as it is loaded.
    let scratch = Scratch::new("unwind_e2e", "dlopen");
    let plugin = compile(
        &scratch,
        "gcc",
        "dlopen_plugin.c",
        &["-O2", "-g", "-fomit-frame-pointer", "-shared", "-fPIC"],
    );
    let plugin_so = scratch.path("libplugin.so");
    std::fs::rename(&plugin, &plugin_so).expect("rename plugin");
    let binary = compile(
        &scratch,
        "gcc",
        "dlopen_main.c",
        &["-O2", "-g", "-fomit-frame-pointer", "-ldl"],
    );
    let command = [
        binary.to_str().expect("utf-8 path"),
        plugin_so.to_str().expect("utf-8 path"),
    ];
    let recorded = assert_stacks_match_gdb(&scratch, &command, &[123]);
    let names = recorded.names(recorded.stack_of_size(123));
    assert_eq!(names[..2], ["plugin_leak", "main"], "{names:?}");
}

#[test]
fn attaching_to_a_running_process_unwinds_with_its_tables() {
    if !bpf_available() {
        return;
    }
    let scratch = Scratch::new("unwind_e2e", "attach");
    let binary = compile(&scratch, "gcc", "fibonacci.c", &["-O2"]);
    // Runs until killed: attaching 20 probes can take seconds on a loaded machine.
    let mut child = Command::new(&binary)
        .arg("0")
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("start fibonacci");
    std::thread::sleep(std::time::Duration::from_millis(300));
    let trace = scratch.path("attach.trace");
    let output = Command::new(recorder())
        .args(["-q", "--duration", "1", "-p", &child.id().to_string(), "-o"])
        .arg(&trace)
        .output()
        .expect("run memtrail-record");
    let _ = child.kill();
    let _ = child.wait();
    assert_ok("memtrail-record -p", &output);
    let records: Vec<Record> = memtrail_format::TraceReader::open(&trace)
        .expect("open trace")
        .map(|r| r.expect("read record"))
        .collect();
    let recorded = index(records);
    let stack = recorded.stack_of_size(8192);
    assert_eq!(stack.unwinder, Unwinder::Dwarf);
    assert!(!stack.truncated, "{:?}", recorded.names(stack));
    let names = recorded.names(stack);
    // fibonacci <- child <- start_thread <- clone3 (libc's names may be unknown here).
    assert_eq!(names[..2], ["fibonacci", "child"], "{names:?}");
    assert_eq!(names.len(), 4, "{names:?}");
}

#[test]
fn fibonacci_built_with_plain_o2_is_found_with_its_caller() {
    if !bpf_available() {
        return;
    }
    let scratch = Scratch::new("unwind_e2e", "fibonacci");
    let binary = compile(&scratch, "gcc", "fibonacci.c", &["-O2"]);
    let trace = scratch.path("fibonacci.trace");
    record_ok(&trace, &[], &[binary.as_os_str(), OsStr::new("1.5")]);
    let output = run_ok(
        Command::new(analyzer())
            .args(["leaks", "--json"])
            .arg(&trace),
    );
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON report");
    let first = &report["candidates"][0];
    let names: Vec<&str> = first["frames"]
        .as_array()
        .expect("frames")
        .iter()
        .filter_map(|f| f["function"].as_str())
        .collect();
    assert_eq!(names[..2], ["fibonacci", "child"], "{first}");
}

#[test]
fn callers_reaching_malloc_with_the_same_registers_get_their_own_stacks() {
    if !bpf_available() {
        return;
    }
    // The in-kernel unwinder remembers walks by their starting registers and checks the stack
    // words they read; here two paths start from the same registers thousands of times each,
    // alternately, and differ only one frame up.
    let rounds = 2000;
    for (name, flags) in [
        ("fp", ["-O2", "-g", "-fno-omit-frame-pointer"]),
        ("no_fp", ["-O2", "-g", "-fomit-frame-pointer"]),
    ] {
        let scratch = Scratch::new("unwind_e2e", &format!("same_depth_{name}"));
        let binary = compile(&scratch, "gcc", "same_depth_callers.c", &flags);
        let rounds_arg = rounds.to_string();
        let command = [binary.to_str().expect("utf-8 path"), rounds_arg.as_str()];
        let recorded = record(&scratch, "dwarf", &command);
        for (size, caller) in [(1111, "via_left"), (2222, "via_right")] {
            let count = recorded
                .records
                .iter()
                .filter(|r| matches!(r, Record::Alloc { size: s, .. } if *s == size))
                .count();
            assert_eq!(count, rounds, "{name}: allocations of {size} bytes");
            // One stack for all of them (stack_of_size checks), and the right one.
            let names = recorded.names(recorded.stack_of_size(size));
            assert_eq!(
                names[..3],
                ["allocate", caller, "main"],
                "{name}, {size} bytes: {names:?}"
            );
        }
    }
}

#[test]
fn every_allocation_of_the_benchmark_workload_gets_its_call_paths_stack() {
    if !bpf_available() {
        return;
    }
    // bench/workload.c allocates once per iteration i through path (i % 10), each path its
    // own function called from its own caller, all at the same depth: thousands of walks
    // from ten starting points, most of them recognized by the unwinder's memo. Every
    // allocation, in order, must carry its own path's frames. Paths 5-9 are tail-called by
    // their callers (`return pathN(n)`), which leave no frame.
    const CALLERS: [&str; 5] = [
        "request_parse",
        "request_headers",
        "response_build",
        "log_format",
        "json_encode",
    ];
    let pairs = 20_000;
    for (name, frame_pointers, depth) in [
        ("fp", "-fno-omit-frame-pointer", 0),
        ("no_fp_deep", "-fomit-frame-pointer", 12),
    ] {
        let scratch = Scratch::new("unwind_e2e", &format!("workload_{name}"));
        let binary = scratch.path("workload");
        memtrail_tests::compile(
            "gcc",
            &["-O2", "-g", frame_pointers],
            &binary,
            &[&repo_root().join("bench").join("workload.c")],
            &[],
        );
        let arguments = [pairs.to_string(), depth.to_string()];
        let command = [
            binary.to_str().expect("utf-8 path"),
            arguments[0].as_str(),
            arguments[1].as_str(),
        ];
        let recorded = record(&scratch, "dwarf", &command);
        let stacks: Vec<u32> = recorded
            .records
            .iter()
            .filter_map(|r| match r {
                Record::Alloc { stack, .. } => Some(*stack),
                _ => None,
            })
            .collect();
        // Then the C library allocates stdout's buffer for the final printf.
        assert!(
            stacks.len() >= pairs,
            "{name}: {} allocations",
            stacks.len()
        );
        let mut checked = HashMap::new();
        for (i, stack) in stacks[..pairs].iter().enumerate() {
            let path = i % 10;
            // A stack id is checked once per path; a second id for a path, or an id shared
            // by two paths, is a wrong stack.
            if let Some(previous) = checked.insert(*stack, path) {
                assert_eq!(
                    previous, path,
                    "{name}: allocation {i} has path {previous}'s stack"
                );
                continue;
            }
            let names = recorded.names(&recorded.stacks[stack]);
            // gcc may suffix static functions it specializes ("path3.isra.0").
            let mut expected = vec![format!("path{path}")];
            expected.extend(CALLERS.get(path).map(|caller| caller.to_string()));
            expected.push("run_pairs".to_owned());
            // run_deeper(depth) down to run_deeper(0), which calls run_pairs.
            let deeper = if depth > 0 { depth + 1 } else { 0 };
            expected.extend(std::iter::repeat_n("run_deeper".to_owned(), deeper));
            expected.push("main".to_owned());
            let base_names: Vec<&str> = names
                .iter()
                .map(|n| n.split('.').next().unwrap_or_default())
                .collect();
            let matches =
                base_names.len() > expected.len() && base_names[..expected.len()] == expected[..];
            assert!(matches, "{name}: allocation {i} (path {path}): {names:?}");
        }
        assert_eq!(checked.len(), 10, "{name}: one stack per path");
    }
}
