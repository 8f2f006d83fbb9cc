//! One recording, step by step, from the command line to the finished trace.
//!
//! Owns the order of the steps and what each takes from the options ([`run`] reads as the list):
//! 1. checks: something to trace, the privileges, the PID exists ([`check_can_trace`]);
//! 2. output: the trace's temporary file, before anything runs (`output`);
//! 3. allocator: which allocators' functions are probed, in which modules
//!    ([`Allocator::choose`], `allocators`);
//! 4. target: the command launched and held before its exec, or the running PID (`target`);
//! 5. probes: the object loaded, unwind tables ready, the probes attached ([`attach`]);
//! 6. metadata: the trace's header and writer ([`trace_meta`]);
//! 7. the session: the target released, the trace published at `-o`, the loop run until the
//!    end (`session`), the exit status chosen ([`exit_code`]).
//!
//! Must not: hold the recording loop (`session`), the probes' placement (`probes`) or the
//! policy on what `-o` may replace (`output`); it only calls them in order.

use std::path::{Path, PathBuf};

use memtrail_ebpf_abi as abi;
use memtrail_format::{ProcessOrigin, TraceMeta, TraceWriter, WriterOptions};

use crate::allocators::{self, AllocatorPlan};
use crate::cli::{RecordArgs, UnwindMode};
use crate::elf_file;
use crate::error::Error;
use crate::host;
use crate::kernel_btf;
use crate::modules;
use crate::output;
use crate::probes::{
    ExecutableMatch, LoadSettings, Placement, ProbeError, Probes, ProcessProbes, error_chain,
};
use crate::session::{self, Recording, SessionOptions, StopReason, Summary};
use crate::signals;
use crate::target::{Target, command_line_of};
use crate::unwind_loader::{self, UnwindLoader};
use memtrail_format::text as escape;

/// Records as the options say. Returns the exit status: the launched command's own (0 in
/// attach mode), or 128 + N when signal N stopped the recording.
pub fn run(args: &RecordArgs) -> Result<i32, Error> {
    // First: a Ctrl-C during setup must still end in a complete trace (the loop then stops
    // at once), and never kill the recorder while a launched child waits to be released.
    signals::install_stop_handlers();
    let Some(output_path) = args.output.as_deref() else {
        return Err(Error::NoOutput);
    };
    // 1. Checks.
    check_can_trace(args)?;
    // 2. Output: the trace's temporary file, before anything else happens: this proves the directory is
    // writable and settles what is at the output path (see `output`). Dropped on any error
    // below, it is removed and the path keeps what it had.
    let executable = args.exe.as_deref().map(Executable::find).transpose()?;
    let program = match (&executable, args.pids.first()) {
        (Some(executable), _) => Some(executable.path.clone()),
        (None, Some(pid)) => Some(PathBuf::from(format!("/proc/{pid}/exe"))),
        (None, None) => resolve_command(&args.command[0]),
    };
    let output_file = output::open_output(output_path, args.force, program.as_deref())?;
    // 3. Allocator, chosen before the target runs anything.
    let first_running = match &executable {
        Some(executable) => executable.running.first().copied(),
        None => args.pids.first().copied(),
    };
    let allocator = Allocator::choose(args, first_running, args.exe.as_deref())?;
    let host_names = host::host_names();
    let start = StartTime {
        wall_ns: host::wall_clock_ns(),
        monotonic_ns: session::monotonic_now_ns(),
    };

    // 4. Targets, and 5. probes on them.
    let mut targets = match &executable {
        // Processes of the executable that ended meanwhile are simply not there.
        Some(executable) => executable
            .running
            .iter()
            .filter_map(|&pid| Target::existing(pid).ok())
            .collect(),
        None if args.pids.is_empty() => vec![Target::launch_held(&args.command)?],
        None => args
            .pids
            .iter()
            .map(|&pid| Target::existing(pid))
            .collect::<Result<Vec<_>, _>>()?,
    };
    let stacks = StackCapture::choose(args, targets.first(), executable.as_ref());
    let mut attached = attach(args, &targets, executable.as_ref(), &allocator, &stacks)?;
    for target in targets.iter_mut() {
        if !target.is_child() && target.has_exited() {
            return Err(Error::ExitedWhileAttaching(target.pid));
        }
    }

    // 6. Metadata and writer.
    let meta = trace_meta(
        args,
        targets.first(),
        executable.as_ref(),
        &allocator,
        &stacks,
        &attached,
        (host_names, start),
    );
    let writer_options = WriterOptions {
        level: args.compression_level,
        ..WriterOptions::default()
    };
    let writer =
        TraceWriter::with_options(output_file, &meta, writer_options).map_err(|source| {
            Error::Write {
                path: output_path.to_path_buf(),
                source,
            }
        })?;

    // 7. The session.
    let options = SessionOptions {
        allocator_path: allocator.name.clone(),
        process_probes: attached.process_probes.clone(),
        allocator_plan: allocator.plan.clone(),
        stack_depth: usize::from(args.stack_depth),
        page_size: u64::from(meta.page_size),
        symbolize: !args.no_symbols,
        duration: args.duration,
        // With --exe, processes may start at any time: only the duration or a signal ends it.
        wait_for_new_processes: executable.is_some(),
        status_line: !args.quiet && session::stderr_is_terminal(),
    };
    let launched = targets.first().is_some_and(Target::is_child);
    if let Some(loader) = attached.unwinder.as_mut()
        && !launched
    {
        for target in &targets {
            loader.refresh_from_proc(target.pid); // libraries loaded while attaching
        }
    }
    let origin = match (&executable, launched) {
        (Some(_), _) => ProcessOrigin::Found,
        (None, true) => ProcessOrigin::Launched,
        (None, false) => ProcessOrigin::Attached,
    };
    let first: Vec<(u32, ProcessOrigin)> = targets.iter().map(|t| (t.pid, origin)).collect();
    let mut recording = Recording::new(
        writer,
        start.monotonic_ns,
        &first,
        &options,
        attached.unwinder.take(),
    );
    let command_lines: Vec<Vec<String>> = targets
        .iter()
        .map(|t| {
            if t.is_child() {
                args.command.clone()
            } else {
                command_line_of(t.pid)
            }
        })
        .collect();
    recording
        .write_first_processes(&command_lines)
        .map_err(|source| Error::Write {
            path: output_path.to_path_buf(),
            source,
        })?;
    if launched {
        targets[0].release(&args.command[0])?;
    }
    // The target runs (exec succeeded, or the probes are on the running process): the trace
    // takes its final name now, and is readable there from here on, even if the recorder is
    // killed.
    recording.publish().map_err(|source| Error::Publish {
        path: output_path.to_path_buf(),
        source,
    })?;
    if !args.quiet {
        let pids: Vec<String> = targets.iter().map(|t| t.pid.to_string()).collect();
        let what = match &executable {
            Some(executable) => format!(
                "every process of {} ({} running: {})",
                escape::terminal(&executable.path.display().to_string()),
                pids.len(),
                if pids.is_empty() {
                    "none yet".to_owned()
                } else {
                    pids.join(", ")
                }
            ),
            None => format!("process {}", pids.join(", ")),
        };
        eprintln!(
            "memtrail-record: tracing {}{} ({} probes in {}, free probe at +{}); writing {}",
            what,
            match attached.following {
                Following::Children => " and the processes it starts",
                Following::No => "",
                Following::Unavailable => " (not the processes it starts: see the warning above)",
            },
            attached.placement.probes,
            escape::terminal(&allocator.plan.summary().replace(';', ", ")),
            attached.placement.free_offset(),
            escape::terminal(&output_path.display().to_string())
        );
    }
    let mut probes = attached.probes;
    let summary =
        session::run(recording, &mut probes, &mut targets, &options).map_err(|error| {
            Error::Session {
                path: output_path.to_path_buf(),
                error,
            }
        })?;
    if !args.quiet {
        eprintln!("{}", summary.line(output_path));
        if let Some(unwind) = summary.unwind {
            eprintln!("{}", unwind.line());
        }
    }
    probes.detach_in_background();
    Ok(exit_code(&summary, targets.first()))
}

/// Step 1: something to trace, the privileges to trace it, and the PID exists.
fn check_can_trace(args: &RecordArgs) -> Result<(), Error> {
    if args.pids.is_empty() && args.command.is_empty() && args.exe.is_none() {
        return Err(Error::NothingToTrace);
    }
    let missing = host::missing_capabilities();
    if !missing.is_empty() {
        return Err(Error::MissingCapabilities(missing));
    }
    for &pid in &args.pids {
        Target::existing(pid)?;
    }
    Ok(())
}

/// The allocators whose functions are probed, and in which modules (`allocators`).
struct Allocator {
    plan: AllocatorPlan,
    /// The module of the `malloc` the process calls, as the process names it (for the
    /// session, which skips the mmaps this module makes for itself).
    name: String,
}

impl Allocator {
    /// Step 3: `--lib`, else what the target's modules define: for a running process (the
    /// first of the targets, `first_running`) its mapped modules; for a command (or `--exe`'s
    /// executable, `executable`, when none runs yet) the libraries it links (falling back to
    /// the recorder's own libc for what is not an ELF executable, such as a script).
    fn choose(
        args: &RecordArgs,
        first_running: Option<u32>,
        executable: Option<&Path>,
    ) -> Result<Allocator, Error> {
        let plan = if let Some(lib) = &args.lib {
            let path = std::fs::canonicalize(lib).map_err(|source| Error::Library {
                path: lib.clone(),
                source,
            })?;
            allocators::plan_for_library(&path).map_err(ProbeError::from_discovery)?
        } else if let Some(pid) = first_running {
            let plan = allocators::plan_for_process(pid)
                .map_err(|source| Error::Discovery { pid, source })?;
            if plan.modules.is_empty() {
                return Err(Error::NoAllocatorIn(pid));
            }
            plan
        } else {
            let predicted = executable
                .map(Path::to_path_buf)
                .or_else(|| args.command.first().and_then(|c| resolve_command(c)))
                .and_then(|executable| allocators::plan_for_command(&executable).ok())
                .filter(|plan| !plan.modules.is_empty());
            match predicted {
                Some(plan) => plan,
                None => {
                    let (libc, _) = find_libc(None).ok_or(Error::NoAllocatorForCommand)?;
                    allocators::plan_for_library(&libc).map_err(ProbeError::from_discovery)?
                }
            }
        };
        let name = plan
            .main_module()
            .map(|m| m.module.path.clone())
            .unwrap_or_default();
        Ok(Allocator { plan, name })
    }
}

/// How stacks are captured, from the options and the target.
struct StackCapture {
    /// `abi::CAPTURE_STACKS`, `CAPTURE_NONE` or `CAPTURE_READ_ONLY` (benchmark flags).
    capture: u32,
    /// Unwind in the eBPF program with CFI tables (else the kernel's frame-pointer walk).
    unwind_tables: bool,
    /// The launched executable (none in attach mode, or when it is not found).
    executable: Option<PathBuf>,
}

impl StackCapture {
    fn choose(args: &RecordArgs, first: Option<&Target>, exe: Option<&Executable>) -> StackCapture {
        let capture = if args.stack_read_only {
            abi::CAPTURE_READ_ONLY
        } else if args.no_stacks {
            abi::CAPTURE_NONE
        } else {
            abi::CAPTURE_STACKS
        };
        let executable = match (exe, first) {
            (Some(exe), _) => Some(exe.path.clone()),
            (None, Some(target)) if target.is_child() => resolve_command(&args.command[0]),
            _ => None,
        };
        let attached = first.filter(|t| !t.is_child()).map(|t| t.pid);
        let unwind_tables = capture == abi::CAPTURE_STACKS
            && !args.probes_only
            && use_unwind_tables(args.unwind, attached, executable.as_deref());
        StackCapture {
            capture,
            unwind_tables,
            executable,
        }
    }

    /// The `unwind` metadata value.
    fn unwinder_name(&self) -> &'static str {
        if self.capture != abi::CAPTURE_STACKS {
            "none"
        } else if self.unwind_tables {
            "dwarf"
        } else {
            "fp"
        }
    }
}

/// Whether the processes the targets start are traced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Following {
    Children,
    /// `--no-follow`, or attached without `--follow`.
    No,
    /// Asked for, but the kernel side could not be set up (the warning said why).
    Unavailable,
}

/// The loaded object with its probes on the targets.
struct Attached {
    probes: Probes,
    unwinder: Option<UnwindLoader>,
    placement: Placement,
    /// What each process traced later gets attached.
    process_probes: ProcessProbes,
    following: Following,
}

/// Step 5: loads the object, prepares the unwind tables, attaches the allocator's probes
/// (and, for a launched command, the stops at exit and after the loader) to every target,
/// and the programs that follow the processes they start.
fn attach(
    args: &RecordArgs,
    targets: &[Target],
    exe: Option<&Executable>,
    allocator: &Allocator,
    stacks: &StackCapture,
) -> Result<Attached, Error> {
    let launched = targets.first().is_some_and(Target::is_child);
    let first_pid = targets.first().map_or(0, |t| t.pid);
    let follow = if launched {
        !args.no_follow
    } else {
        args.follow
    };
    // The kernel's task_struct layout, for the programs that see processes start, exec and
    // end (also without --follow: an exec's old blocks are not leaks).
    let task_offsets = match kernel_btf::TaskOffsets::of_running_kernel() {
        Ok(offsets) => Some(offsets),
        Err(error) => {
            if exe.is_some() {
                return Err(Error::Probe(ProbeError::Load(error.to_string())));
            }
            if follow {
                eprintln!(
                    "memtrail-record: warning: {}; the processes the target starts will not be traced",
                    escape::terminal(&error.to_string())
                );
            }
            None
        }
    };
    let executable = match exe {
        Some(exe) => Some(ExecutableMatch {
            inode: exe.inode,
            device: exe.device,
            follow,
            offsets: kernel_btf::ExecFileOffsets::of_running_kernel()
                .map_err(|e| Error::Probe(ProbeError::Load(e.to_string())))?,
        }),
        None => None,
    };
    let settings = LoadSettings {
        // One process and no others to come: the kernel-side check stays (and costs a compare).
        target_tgid: if targets.len() == 1 && !follow && exe.is_none() {
            first_pid
        } else {
            0
        },
        first_tgid: first_pid,
        task_offsets,
        executable,
        min_size: args.min_size,
        ring_buffer_bytes: args.ring_buffer_size,
        // The stopping programs (exit, loader hook) act only for processes the recorder
        // launched or finds exec'ing; attached ones are never stopped.
        stop_at_exit: launched || exe.is_some(),
        sample_bytes: args.sample_bytes.unwrap_or(0),
        capture_stacks: stacks.capture,
        probes_only: args.probes_only,
        unwind_tables: stacks.unwind_tables,
        unwind_rows: abi::UNWIND_ROWS_CAPACITY,
        thread_slots: args.thread_slots,
    };
    let mut probes = Probes::load(&settings)?;
    let unwinder = if stacks.unwind_tables {
        let mut loader = UnwindLoader::new(&mut probes.ebpf, first_pid, settings.unwind_rows)?;
        if !launched {
            // Tables before probes: the first events already unwind completely.
            for target in targets {
                loader.refresh_from_proc(target.pid);
            }
        }
        Some(loader)
    } else {
        None
    };
    let mut process_probes = ProcessProbes {
        lib: args.lib.clone(),
        free_offset_override: args.free_probe_offset,
        exit_stop: None,
        loader_stop: None,
    };
    let mut placement = Placement {
        allocators: allocator.plan.summary(),
        ..Placement::default()
    };
    for target in targets {
        // Several attached processes may use different allocators: each its own plan.
        let own_plan = if targets.len() > 1 && args.lib.is_none() {
            allocators::plan_for_process(target.pid).ok()
        } else {
            None
        };
        let plan = own_plan.as_ref().unwrap_or(&allocator.plan);
        placement = probes.attach_allocator(plan, target.pid, args.free_probe_offset)?;
    }
    if !args.quiet && !placement.single_stepping_hot.is_empty() {
        // bench/README: a trap that single-steps costs about 15x an emulated one.
        eprintln!(
            "memtrail-record: note: these probes sit on instructions the kernel single-steps (each call costs about 10 us more than at an emulated instruction; see docs/recording.md): {}",
            escape::terminal(&placement.single_stepping_hot.join(", "))
        );
    }
    if launched && let Some((libc, _)) = find_libc(None) {
        probes.attach_exit_stop(&libc, first_pid)?;
        process_probes.exit_stop = Some(libc);
        if stacks.unwind_tables
            && let Some(executable) = &stacks.executable
        {
            // ld.so calls its debugger hook once the program's libraries are mapped, before
            // any of their code runs, and again for each dlopen: one probe covers both. A
            // static executable has no ld.so: it stops at its entry point instead (and a
            // library it dlopens is picked up within 100 ms).
            let loader = dynamic_loader(executable);
            let loader_probed = loader
                .as_ref()
                .is_some_and(|l| probes.attach_loader_stop(l, first_pid).is_ok());
            if !loader_probed && let Err(error) = probes.attach_entry_stop(executable, first_pid) {
                eprintln!(
                    "memtrail-record: warning: {}; stacks of the first allocations may be incomplete",
                    escape::terminal(&error_chain(&error))
                );
            }
            process_probes.loader_stop = loader;
        }
    }
    if exe.is_some() && stacks.unwind_tables {
        // A process found at its exec stops again once the loader has mapped its libraries.
        process_probes.loader_stop = stacks.executable.as_deref().and_then(dynamic_loader);
    }
    // The libc whose `_Fork` new processes return from (the launched command's is the
    // recorder's own, as for the exit stop).
    let libc = if launched || first_pid == 0 {
        find_libc(None)
    } else {
        find_libc(Some(first_pid))
    }
    .map(|(path, _)| path);
    let following = match task_offsets {
        Some(_) => match probes.attach_process_tracking(libc.as_deref().filter(|_| follow)) {
            Ok(()) => {
                let flags = if follow { abi::TRACED_FOLLOW } else { 0 };
                mark_traced(&mut probes, targets, flags)?;
                if follow {
                    Following::Children
                } else {
                    Following::No
                }
            }
            Err(error) if exe.is_some() => return Err(Error::Probe(error)),
            Err(error) => {
                if follow {
                    eprintln!(
                        "memtrail-record: warning: cannot follow new processes: {}; only {} traced",
                        escape::terminal(&error_chain(&error)),
                        if targets.len() == 1 {
                            "the first process is"
                        } else {
                            "the given processes are"
                        }
                    );
                    Following::Unavailable
                } else {
                    Following::No
                }
            }
        },
        None if follow => Following::Unavailable,
        None => Following::No,
    };
    Ok(Attached {
        probes,
        unwinder,
        placement,
        process_probes,
        following,
    })
}

/// Lists the targets in `TRACED_PROCESSES` (with `flags`), so their execs and exits are
/// reported and, with `TRACED_FOLLOW`, the processes they start are traced.
fn mark_traced(probes: &mut Probes, targets: &[Target], flags: u32) -> Result<(), Error> {
    let map = probes
        .ebpf
        .map_mut(abi::TRACED_PROCESSES_MAP)
        .ok_or_else(|| Error::Probe(ProbeError::Load("map TRACED_PROCESSES missing".to_owned())))?;
    let mut traced = aya::maps::HashMap::<_, u32, u32>::try_from(map)
        .map_err(|e| Error::Probe(ProbeError::Load(e.to_string())))?;
    for target in targets {
        traced
            .insert(target.pid, flags, 0)
            .map_err(|e| Error::Probe(ProbeError::Load(e.to_string())))?;
    }
    Ok(())
}

/// When the recording started, on both clocks a trace keeps.
#[derive(Debug, Clone, Copy)]
struct StartTime {
    wall_ns: u64,
    /// CLOCK_MONOTONIC, the clock of the events' times.
    monotonic_ns: u64,
}

/// Step 6: the trace's header.
fn trace_meta(
    args: &RecordArgs,
    target: Option<&Target>,
    exe: Option<&Executable>,
    allocator: &Allocator,
    stacks: &StackCapture,
    attached: &Attached,
    (host_names, start): (host::HostNames, StartTime),
) -> TraceMeta {
    let placement = &attached.placement;
    let mut extra = vec![
        (
            "free_probe_offset".to_owned(),
            placement.free_offset().to_string(),
        ),
        (
            "free_probe_placement".to_owned(),
            placement
                .free
                .as_ref()
                .map(|f| f.reason)
                .unwrap_or("")
                .to_owned(),
        ),
        ("allocator_library".to_owned(), allocator.name.clone()),
        ("allocators".to_owned(), placement.allocators.clone()),
        (
            "mode".to_owned(),
            match (exe, target) {
                (Some(_), _) => "exe",
                (None, Some(target)) if target.is_child() => "launch",
                _ => "attach",
            }
            .to_owned(),
        ),
        ("stack_depth".to_owned(), args.stack_depth.to_string()),
        ("unwind".to_owned(), stacks.unwinder_name().to_owned()),
        ("min_size".to_owned(), args.min_size.to_string()),
        (
            "ring_buffer_bytes".to_owned(),
            args.ring_buffer_size.to_string(),
        ),
        ("probes".to_owned(), placement.probes.to_string()),
        (
            "follow".to_owned(),
            match attached.following {
                Following::Children => "children",
                Following::No => "none",
                Following::Unavailable => "unavailable",
            }
            .to_owned(),
        ),
    ];
    if args.probes_only {
        extra.push(("probes_only".to_owned(), "true".to_owned()));
    }
    if args.no_stacks {
        extra.push(("stacks".to_owned(), "none".to_owned()));
    }
    if args.stack_read_only {
        extra.push(("stacks".to_owned(), "none (stack read only)".to_owned()));
    }
    if !placement.aliases.is_empty() {
        extra.push(("probe_aliases".to_owned(), placement.aliases.join(",")));
    }
    if !placement.missing.is_empty() {
        extra.push(("probes_missing".to_owned(), placement.missing.join(",")));
    }
    if !placement.single_stepping.is_empty() {
        extra.push((
            "probes_single_stepping".to_owned(),
            placement.single_stepping.join(","),
        ));
    }
    if let Some(exe) = exe {
        extra.push(("executable".to_owned(), exe.path.display().to_string()));
    }
    let command_line = match (exe, target) {
        (_, Some(target)) if target.is_child() => args.command.clone(),
        (_, Some(target)) => command_line_of(target.pid),
        (Some(exe), None) => vec![exe.path.display().to_string()],
        (None, None) => Vec::new(),
    };
    TraceMeta {
        tool_version: env!("CARGO_PKG_VERSION").to_owned(),
        host_name: host_names.host_name,
        kernel_release: host_names.kernel_release,
        // 0 with --exe when none was running at the start.
        pid: target.map_or(0, |t| t.pid),
        command_line,
        start_wall_ns: start.wall_ns,
        start_monotonic_ns: start.monotonic_ns,
        page_size: host::page_size(),
        sample_bytes: args.sample_bytes.unwrap_or(0),
        time_resolution_ns: args.time_resolution_ns,
        extra,
    }
}

/// Step 7's end: stopped by a signal (Ctrl-C, SIGTERM from `timeout` or a service manager),
/// the shell convention, 128 + the signal's number, whatever the target did meanwhile; else
/// a launched command's own status; 0 in attach mode.
fn exit_code(summary: &Summary, target: Option<&Target>) -> i32 {
    match summary.exit {
        _ if summary.stop == StopReason::Signal => 128 + signals::stop_signal().unwrap_or(0),
        Some(status) if target.is_some_and(Target::is_child) => status.as_exit_code(),
        _ => 0,
    }
}

/// `--exe`'s executable: its identity in the kernel and the processes running it now.
struct Executable {
    path: PathBuf,
    inode: u64,
    /// The kernel's `dev_t` encoding (major << 20 | minor).
    device: u32,
    running: Vec<u32>,
}

impl Executable {
    fn find(path: &Path) -> Result<Executable, Error> {
        use std::os::unix::fs::MetadataExt;
        let path = std::fs::canonicalize(path).map_err(|source| Error::Library {
            path: path.to_owned(),
            source,
        })?;
        let metadata = std::fs::metadata(&path).map_err(|source| Error::Library {
            path: path.clone(),
            source,
        })?;
        let (inode, device) = (metadata.ino(), metadata.dev());
        let own = std::process::id();
        let mut running: Vec<u32> = std::fs::read_dir("/proc")
            .map(|entries| {
                entries
                    .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
                    .filter(|&pid| pid != own)
                    .filter(|pid| {
                        // The file the process runs (even if deleted or in another namespace).
                        std::fs::metadata(format!("/proc/{pid}/exe"))
                            .is_ok_and(|m| m.ino() == inode && m.dev() == device)
                    })
                    .collect()
            })
            .unwrap_or_default();
        running.sort_unstable();
        let (major, minor) = (libc::major(device), libc::minor(device));
        Ok(Executable {
            path,
            inode,
            device: (major << 20) | minor,
            running,
        })
    }
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
