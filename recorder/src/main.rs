//! `memtrail-record`: traces every allocation and free of a process into a memtrail trace.
//!
//! This file owns the command line, the order of the setup steps (checks, output file,
//! target, probes, release, publishing the trace) and turning failures into one-line messages
//! and exit codes (0 or the launched command's own status; 126/127 when it cannot be run or
//! found, as `env` and `timeout` do; 128+N when a signal N stopped the recording; 1 for the
//! recorder's own errors).
//! The work itself lives in the modules:
//! - `target`: launching a command held before exec, or checking a running PID;
//! - `output`: which existing file at `-o` may be replaced (the trace goes into a temporary
//!   file that is renamed over it once the target has started);
//! - `probes`: loading the embedded eBPF object and attaching it (with `free_probe` and
//!   `elf_file` for where);
//! - `session`: the recording loop and every record written;
//! - `modules`, `symbols`, `rss`: address-to-module mapping, symbol resolution, RSS sampling;
//! - `unwind_tables`, `unwind_loader`: CFI unwind tables for the in-kernel unwinder;
//! - `suspects`: the `suspects` subcommand (which process grows?), apart from all the above.

mod anon_mappings;
mod elf_file;
mod escape;
mod free_probe;
mod modules;
mod output;
mod probes;
mod rss;
mod session;
mod suspects;
mod symbols;
mod target;
mod unwind_loader;
mod unwind_tables;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use clap::{Parser, ValueEnum};
use memtrail_format::{TraceMeta, TraceWriter, WriterOptions};

use crate::probes::{LoadSettings, Probes, error_chain};
use crate::session::{Recording, STOP_REQUESTED, SessionOptions};
use crate::target::{Target, TargetError};

/// Record every allocation and free of a process (eBPF uprobes on the allocator) into a
/// memtrail trace file, for `memtrail` to analyze here or elsewhere.
#[derive(Debug, Parser)]
#[command(
    name = "memtrail-record",
    version,
    after_help = "Examples:\n  memtrail-record -p 1234 -o app.trace --duration 60\n  memtrail-record -o run.trace -- ./myprogram --its-args\n\nWhich process is growing? `memtrail-record suspects --help` (no root needed)."
)]
struct Cli {
    /// Attach to this running process (all its threads), with no restart.
    #[arg(short = 'p', long = "pid", conflicts_with = "command")]
    pid: Option<u32>,

    /// Trace file to write: a new file with mode 0600, put in place once the target runs.
    /// An existing memtrail trace there is replaced; any other file or a symbolic link only
    /// with --force.
    #[arg(short = 'o', long = "output")]
    output: PathBuf,

    /// Replace whatever file or symbolic link is at the output path (by rename: never
    /// following the link or writing into the file). Never a directory, FIFO or device, nor
    /// the program being traced.
    #[arg(long)]
    force: bool,

    /// Stop after this long: seconds (60, 2.5) or with a unit (500ms, 10s, 5m, 1h).
    #[arg(long, value_name = "DURATION", value_parser = suspects::parse_duration)]
    duration: Option<Duration>,

    /// Keep at most this many frames of each stack (1..=127; the CFI unwinder walks at most
    /// 64).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u16).range(1..=127))]
    stack_depth: u16,

    /// How user stacks are unwound: `dwarf` walks them in the eBPF program with tables
    /// derived from each module's CFI (.eh_frame/.debug_frame; frame pointers in modules
    /// without), complete for code built without frame pointers; `fp` uses the kernel's
    /// frame-pointer walk; `auto` is `dwarf` unless the target has no CFI at all.
    #[arg(long, value_enum, default_value_t = UnwindMode::Auto)]
    unwind: UnwindMode,

    /// Do not record allocations smaller than this many bytes (reallocs are always recorded).
    #[arg(long, default_value_t = 0, value_name = "BYTES")]
    min_size: u64,

    /// Probe the allocator in this library or executable instead of libc (jemalloc,
    /// tcmalloc, mimalloc, a static binary), by symbol name.
    #[arg(long = "lib", value_name = "PATH")]
    lib: Option<PathBuf>,

    /// Kernel-to-recorder ring buffer size: a power of two, with optional K/M/G suffix.
    #[arg(long, default_value = "16M", value_parser = parse_ring_size)]
    ring_buffer_size: u32,

    /// Do not resolve symbols while recording (the analyzer can resolve them later from the
    /// binaries, found by build-id).
    #[arg(long)]
    no_symbols: bool,

    /// Record on average one allocation per this many bytes allocated (per thread, a byte
    /// countdown drawn from an exponential distribution with this mean, as jemalloc samples),
    /// and only the frees and reallocs of the sampled blocks. Reports scale the numbers back.
    #[arg(long, value_name = "BYTES", value_parser = parse_sample_bytes)]
    sample_bytes: Option<u64>,

    /// Keep event times to this many nanoseconds (1 = exact). The default, 1000 (1 us), makes
    /// traces about 40% smaller than exact nanoseconds: the low bits of a nanosecond clock
    /// are noise that does not compress, and sub-microsecond lifetimes do not matter to a
    /// leak hunt. Every event keeps its own timestamp either way.
    #[arg(
        long,
        default_value_t = 1000,
        value_name = "NS",
        value_parser = clap::value_parser!(u32).range(1..=1_000_000_000)
    )]
    time_resolution_ns: u32,

    /// DEFLATE level of the trace's frames, 1 (fastest) to 9 (smallest). The default, 3,
    /// writes about 2% more bytes than 6 for about two thirds of the compression CPU time,
    /// which the recorder takes from the machine it traces.
    #[arg(
        long,
        default_value_t = 3,
        value_name = "LEVEL",
        value_parser = clap::value_parser!(u32).range(1..=9)
    )]
    compression_level: u32,

    /// Attach programs that do nothing, on the same attach points: measures the cost of the
    /// probes alone (the floor of a uprobe-based tracer). The trace holds no events.
    #[arg(long, hide = true)]
    probes_only: bool,

    /// Capture no stacks (every event gets the unknown stack): measures stack capture's cost.
    #[arg(long, hide = true)]
    no_stacks: bool,

    /// Capture no stacks, but copy the top 256 bytes of the user stack at every allocation:
    /// the one read a remembered stack still costs (a lower bound, for the benchmark).
    #[arg(long, hide = true, conflicts_with = "no_stacks")]
    stack_read_only: bool,

    /// Entries of the kernel's per-thread slot array (a power of two): threads whose ids
    /// collide modulo it while one of them is inside an allocator call fall back to a hash
    /// map. A small value exercises that path (tests).
    #[arg(long, value_name = "N", hide = true, default_value_t = memtrail_ebpf_abi::THREAD_SLOTS_CAPACITY,
          value_parser = parse_thread_slots)]
    thread_slots: u32,

    /// Put the free probe at this offset into `free` instead of the decoded one (0: the
    /// function entry). For measuring and working around unusual allocators.
    #[arg(long, value_name = "BYTES", hide = true)]
    free_probe_offset: Option<u64>,

    /// No status line and no summary.
    #[arg(short, long)]
    quiet: bool,

    /// The command to launch and trace from its first allocation (after `--`).
    #[arg(last = true, value_name = "COMMAND")]
    command: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum UnwindMode {
    Fp,
    Dwarf,
    Auto,
}

/// The file `execvp` will run for `command` (searching PATH when it has no slash).
fn resolve_command(command: &str) -> Option<PathBuf> {
    if command.contains('/') {
        return Some(PathBuf::from(command));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(command))
        .find(|candidate| {
            std::fs::metadata(candidate).is_ok_and(|m| {
                use std::os::unix::fs::PermissionsExt;
                m.is_file() && m.permissions().mode() & 0o111 != 0
            })
        })
}

/// Whether to unwind with CFI tables: `auto` does unless the ELF files of the target (its
/// executable, or what it maps) were read and none has CFI. A launched script is not ELF:
/// what it will run is not known yet, so the tables are used.
fn use_unwind_tables(mode: UnwindMode, pid: Option<u32>, executable: Option<&Path>) -> bool {
    match mode {
        UnwindMode::Fp => false,
        UnwindMode::Dwarf => true,
        UnwindMode::Auto => {
            let mut files: Vec<PathBuf> = executable.map(Path::to_path_buf).into_iter().collect();
            if let Some(pid) = pid
                && let Ok(mappings) = modules::read_exec_mappings(pid)
            {
                let mut paths: Vec<String> = mappings
                    .into_iter()
                    .map(|m| m.path)
                    .filter(|p| p.starts_with('/'))
                    .collect();
                paths.dedup();
                files.extend(paths.into_iter().map(PathBuf::from));
            }
            let verdicts: Vec<bool> = files
                .iter()
                .filter_map(|file| unwind_loader::has_cfi(file))
                .collect();
            verdicts.is_empty() || verdicts.contains(&true)
        }
    }
}

fn parse_sample_bytes(text: &str) -> Result<u64, String> {
    let bytes = parse_size(text)?;
    if !(1..=memtrail_ebpf_abi::MAX_SAMPLE_BYTES).contains(&bytes) {
        return Err(format!(
            "`{text}`: the sampling interval must be between 1 byte and 1T"
        ));
    }
    Ok(bytes)
}

/// A byte count with an optional K/M/G/T suffix (powers of 1024).
fn parse_size(text: &str) -> Result<u64, String> {
    let (digits, multiplier) = match text.char_indices().last() {
        Some((i, 'k' | 'K')) => (&text[..i], 1u64 << 10),
        Some((i, 'm' | 'M')) => (&text[..i], 1 << 20),
        Some((i, 'g' | 'G')) => (&text[..i], 1 << 30),
        Some((i, 't' | 'T')) => (&text[..i], 1 << 40),
        _ => (text, 1),
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(multiplier))
        .ok_or_else(|| format!("`{text}` is not a size"))
}

fn parse_ring_size(text: &str) -> Result<u32, String> {
    let bytes = parse_size(text)?;
    if !bytes.is_power_of_two() || !(4096..=(1 << 30)).contains(&bytes) {
        return Err(format!(
            "`{text}`: the ring buffer size must be a power of two between 4K and 1G"
        ));
    }
    Ok(bytes as u32)
}

fn parse_thread_slots(text: &str) -> Result<u32, String> {
    match text.parse::<u32>() {
        Ok(n) if n.is_power_of_two() && n <= 1 << 20 => Ok(n),
        _ => Err(format!(
            "`{text}`: the number of thread slots must be a power of two up to 1048576"
        )),
    }
}

fn main() {
    if std::env::args_os().nth(1).is_some_and(|a| a == "suspects") {
        std::process::exit(suspects::main(std::env::args_os()));
    }
    let cli = Cli::parse();
    match run(&cli) {
        Ok(code) => std::process::exit(code),
        Err(error) => {
            // Errors name paths and command lines: escaped (see escape.rs).
            eprintln!("memtrail-record: {}", escape::terminal(&one_line(&error)));
            let code = error
                .downcast_ref::<TargetError>()
                .and_then(TargetError::exec_exit_code)
                .unwrap_or(1);
            std::process::exit(code);
        }
    }
}

fn one_line(error: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in error.chain() {
        let cause = cause.to_string();
        if text.contains(&cause) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&cause);
    }
    text
}

/// Capabilities needed to load and attach: root, or CAP_BPF + CAP_PERFMON (CAP_SYS_ADMIN
/// covers both). Returns the missing ones by name.
fn missing_capabilities() -> Vec<&'static str> {
    const CAP_SYS_ADMIN: u32 = 21;
    const CAP_PERFMON: u32 = 38;
    const CAP_BPF: u32 = 39;
    let effective = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .unwrap_or(0);
    let has = |cap: u32| effective & (1u64 << cap) != 0;
    if has(CAP_SYS_ADMIN) {
        return Vec::new();
    }
    let mut missing = Vec::new();
    if !has(CAP_BPF) {
        missing.push("CAP_BPF");
    }
    if !has(CAP_PERFMON) {
        missing.push("CAP_PERFMON");
    }
    missing
}

/// The libc mapped by process `pid`, as a path the recorder can open (through
/// `/proc/PID/root` for a process in another mount namespace) and as the process names it.
fn find_libc(pid: Option<u32>) -> Option<(PathBuf, String)> {
    let maps_path = match pid {
        Some(pid) => format!("/proc/{pid}/maps"),
        None => "/proc/self/maps".to_owned(),
    };
    let maps = std::fs::read_to_string(maps_path).ok()?;
    let path = maps.lines().find_map(|line| {
        let path = line.split_ascii_whitespace().nth(5)?;
        let name = Path::new(path).file_name()?.to_str()?;
        (name == "libc.so.6" || (name.starts_with("libc-") && name.ends_with(".so")))
            .then(|| path.to_owned())
    })?;
    let openable = match pid {
        Some(pid) => PathBuf::from(format!("/proc/{pid}/root{path}")),
        None => PathBuf::from(&path),
    };
    Some((openable, path))
}

/// The dynamic loader a launched command will run under: the executable's PT_INTERP, or,
/// for what is not a dynamic ELF executable (a script), the recorder's own ld.so.
fn dynamic_loader(executable: &Path) -> Option<PathBuf> {
    if let Some(interpreter) = elf_file::ElfFile::read(executable)
        .ok()
        .and_then(|elf| elf.interpreter())
    {
        return Some(interpreter);
    }
    if elf_file::ElfFile::read(executable).is_ok() {
        return None; // a static executable: no loader
    }
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    maps.lines().find_map(|line| {
        let path = line.split_ascii_whitespace().nth(5)?;
        let name = Path::new(path).file_name()?.to_str()?;
        name.starts_with("ld-linux").then(|| PathBuf::from(path))
    })
}

fn host_facts() -> (String, String) {
    // SAFETY: utsname is plain data filled by uname.
    let mut uts: libc::utsname = unsafe { std::mem::zeroed() };
    if unsafe { libc::uname(&mut uts) } != 0 {
        return (String::new(), String::new());
    }
    let field = |chars: &[libc::c_char]| {
        let bytes: Vec<u8> = chars
            .iter()
            .take_while(|&&c| c != 0)
            .map(|&c| c as u8)
            .collect();
        String::from_utf8_lossy(&bytes).into_owned()
    };
    (field(&uts.nodename), field(&uts.release))
}

fn command_line_of(pid: u32) -> Vec<String> {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|bytes| {
            bytes
                .split(|&b| b == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// The signal that stopped the recording (0: none), for the exit status 128 + N.
static STOP_SIGNAL: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_stop_signal(signal: libc::c_int) {
    STOP_SIGNAL.store(signal, Ordering::Relaxed);
    STOP_REQUESTED.store(true, Ordering::Relaxed);
}

fn install_stop_handlers() {
    for signal in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_stop_signal as *const () as usize;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(signal, &action, std::ptr::null_mut());
        }
    }
}

fn run(cli: &Cli) -> anyhow::Result<i32> {
    // First: a Ctrl-C during setup must still end in a complete trace (the loop then stops
    // at once), and never kill the recorder while a launched child waits to be released.
    install_stop_handlers();
    if cli.pid.is_none() && cli.command.is_empty() {
        bail!("nothing to trace: give -p PID, or a command after `--`");
    }
    let missing = missing_capabilities();
    if !missing.is_empty() {
        bail!(
            "permission denied: tracing needs root, or the capabilities {} (missing: {})",
            "CAP_BPF and CAP_PERFMON",
            missing.join(", ")
        );
    }
    if let Some(pid) = cli.pid {
        Target::existing(pid)?;
    }
    // The trace's temporary file, before anything else happens: this proves the directory is
    // writable and settles what is at the output path (see `output`). Dropped on any error
    // below, it is removed and the path keeps what it had.
    let program = match cli.pid {
        Some(pid) => Some(PathBuf::from(format!("/proc/{pid}/exe"))),
        None => resolve_command(&cli.command[0]),
    };
    let output_file = output::open_output(&cli.output, cli.force, program.as_deref())?;
    // Allocator library: chosen before the target runs anything.
    let (library, library_name) = match &cli.lib {
        Some(lib) => {
            let absolute = std::fs::canonicalize(lib)
                .with_context(|| format!("--lib {}", lib.display()))?;
            let name = absolute.display().to_string();
            (absolute, name)
        }
        None => find_libc(cli.pid).with_context(|| match cli.pid {
            Some(pid) => format!(
                "libc not found in process {pid} (statically linked? use --lib PATH to name the allocator)"
            ),
            None => "libc not found in the recorder's own mappings".to_owned(),
        })?,
    };
    let (host_name, kernel_release) = host_facts();
    let start_wall_ns = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let start_monotonic_ns = session::monotonic_now_ns();

    let mut target = match cli.pid {
        Some(pid) => Target::existing(pid)?,
        None => Target::launch_held(&cli.command)?,
    };
    let command_line = if target.is_child() {
        cli.command.clone()
    } else {
        command_line_of(target.pid)
    };

    let executable = if target.is_child() {
        resolve_command(&cli.command[0])
    } else {
        None
    };
    let capture_stacks = if cli.stack_read_only {
        memtrail_ebpf_abi::CAPTURE_READ_ONLY
    } else if cli.no_stacks {
        memtrail_ebpf_abi::CAPTURE_NONE
    } else {
        memtrail_ebpf_abi::CAPTURE_STACKS
    };
    let stackless = capture_stacks != memtrail_ebpf_abi::CAPTURE_STACKS;
    let unwind_tables = !stackless
        && !cli.probes_only
        && use_unwind_tables(cli.unwind, cli.pid, executable.as_deref());
    let probe_settings = LoadSettings {
        target_tgid: target.pid,
        min_size: cli.min_size,
        ring_buffer_bytes: cli.ring_buffer_size,
        stop_at_exit: target.is_child(),
        sample_bytes: cli.sample_bytes.unwrap_or(0),
        capture_stacks,
        probes_only: cli.probes_only,
        unwind_tables,
        unwind_rows: memtrail_ebpf_abi::UNWIND_ROWS_CAPACITY,
        thread_slots: cli.thread_slots,
    };
    let mut probes = Probes::load(&probe_settings)?;
    let mut unwinder = if unwind_tables {
        let mut loader = unwind_loader::UnwindLoader::new(
            &mut probes.ebpf,
            target.pid,
            probe_settings.unwind_rows,
        )?;
        if !target.is_child() {
            // Tables before probes: the first events already unwind completely.
            loader.refresh_from_proc();
        }
        Some(loader)
    } else {
        None
    };
    let placement = probes.attach_allocator(&library, target.pid, cli.free_probe_offset)?;
    if target.is_child()
        && let Some((libc, _)) = find_libc(None)
    {
        probes.attach_exit_stop(&libc, target.pid)?;
        if unwind_tables && let Some(executable) = &executable {
            // ld.so calls its debugger hook once the program's libraries are mapped, before
            // any of their code runs, and again for each dlopen: one probe covers both. A
            // static executable has no ld.so: it stops at its entry point instead (and a
            // library it dlopens is picked up within 100 ms).
            let loader = dynamic_loader(executable);
            let loader_probed =
                loader.is_some_and(|l| probes.attach_loader_stop(&l, target.pid).is_ok());
            if !loader_probed && let Err(error) = probes.attach_entry_stop(executable, target.pid) {
                eprintln!(
                    "memtrail-record: warning: {}; stacks of the first allocations may be incomplete",
                    escape::terminal(&error_chain(&error))
                );
            }
        }
    }
    if !target.is_child() && target.has_exited() {
        bail!(
            "process {} exited while the probes were being attached",
            target.pid
        );
    }

    let free_offset = placement.free.map(|f| f.offset).unwrap_or(0);
    let mut extra = vec![
        ("free_probe_offset".to_owned(), free_offset.to_string()),
        (
            "free_probe_placement".to_owned(),
            placement.free.map(|f| f.reason).unwrap_or("").to_owned(),
        ),
        ("allocator_library".to_owned(), library_name.clone()),
        (
            "mode".to_owned(),
            if target.is_child() {
                "launch"
            } else {
                "attach"
            }
            .to_owned(),
        ),
        ("stack_depth".to_owned(), cli.stack_depth.to_string()),
        (
            "unwind".to_owned(),
            if stackless {
                "none"
            } else if unwind_tables {
                "dwarf"
            } else {
                "fp"
            }
            .to_owned(),
        ),
        ("min_size".to_owned(), cli.min_size.to_string()),
        (
            "ring_buffer_bytes".to_owned(),
            cli.ring_buffer_size.to_string(),
        ),
        ("probes".to_owned(), placement.probes.to_string()),
    ];
    if cli.probes_only {
        extra.push(("probes_only".to_owned(), "true".to_owned()));
    }
    if cli.no_stacks {
        extra.push(("stacks".to_owned(), "none".to_owned()));
    }
    if cli.stack_read_only {
        extra.push(("stacks".to_owned(), "none (stack read only)".to_owned()));
    }
    if !placement.aliases.is_empty() {
        extra.push(("probe_aliases".to_owned(), placement.aliases.join(",")));
    }
    if !placement.missing.is_empty() {
        extra.push(("probes_missing".to_owned(), placement.missing.join(",")));
    }
    let meta = TraceMeta {
        tool_version: env!("CARGO_PKG_VERSION").to_owned(),
        host_name,
        kernel_release,
        pid: target.pid,
        command_line,
        start_wall_ns,
        start_monotonic_ns,
        // SAFETY: sysconf has no preconditions.
        page_size: u32::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096),
        sample_bytes: cli.sample_bytes.unwrap_or(0),
        time_resolution_ns: cli.time_resolution_ns,
        extra,
    };
    let writer_options = WriterOptions {
        level: cli.compression_level,
        ..WriterOptions::default()
    };
    let writer = TraceWriter::with_options(output_file, &meta, writer_options)
        .with_context(|| format!("cannot write {}", cli.output.display()))?;

    let options = SessionOptions {
        allocator_path: library_name.clone(),
        stack_depth: usize::from(cli.stack_depth),
        page_size: u64::from(meta.page_size),
        symbolize: !cli.no_symbols,
        duration: cli.duration,
        status_line: !cli.quiet && session::stderr_is_terminal(),
    };
    if let Some(loader) = unwinder.as_mut()
        && !target.is_child()
    {
        loader.refresh_from_proc(); // libraries loaded while the probes were being attached
    }
    let mut recording = Recording::new(writer, start_monotonic_ns, target.pid, &options, unwinder);
    if target.is_child() {
        target.release(&cli.command[0])?;
    }
    // The target runs (exec succeeded, or the probes are on the running process): the trace
    // takes its final name now, and is readable there from here on, even if the recorder is
    // killed.
    recording
        .publish()
        .with_context(|| format!("cannot put the trace at {}", cli.output.display()))?;
    if !cli.quiet {
        eprintln!(
            "memtrail-record: tracing process {} ({} probes in {}, free probe at +{}); writing {}",
            target.pid,
            placement.probes,
            escape::terminal(&library_name),
            free_offset,
            escape::terminal(&cli.output.display().to_string())
        );
    }
    let summary = session::run(recording, &mut probes, &mut target, &options).map_err(|e| {
        anyhow::anyhow!(
            "{}; tracing stopped, {} keeps what was written before",
            error_chain(&e),
            cli.output.display()
        )
    })?;
    if !cli.quiet {
        eprintln!("{}", summary.line(&cli.output));
        if let Some(unwind) = summary.unwind {
            eprintln!("{}", unwind.line());
        }
    }
    probes.detach_in_background();
    Ok(match summary.exit {
        // Stopped by a signal (Ctrl-C, SIGTERM from `timeout` or a service manager): the shell
        // convention, 128 + the signal's number, whatever the target did meanwhile.
        _ if summary.stop == session::StopReason::Signal => {
            128 + STOP_SIGNAL.load(Ordering::Relaxed).max(0)
        }
        Some(status) if target.is_child() => status.as_exit_code(),
        _ => 0,
    })
}
