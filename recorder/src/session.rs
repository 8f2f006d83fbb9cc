//! One recording: from the attached probes to the finished trace file.
//!
//! Owns: the polling loop (ring buffer every ~10 ms, RSS, loss counters and the processes'
//! liveness every 100 ms), turning kernel events into trace records (allocations, and the
//! processes of the traced tree: new, exec'ed, ended), resuming the processes the eBPF
//! programs stopped (once a new one's probes are attached, once an exec'ed one's mappings are
//! read), translating kernel stack ids (and the hashes of stacks unwound with CFI tables)
//! into deduplicated trace stacks with their modules and symbols, and the closing records
//! (lost, exit, end). Must not: decide where probes go (see `probes`: the session only asks
//! for a new process's set), or how the target is started (see `target`).

use std::collections::{HashMap, HashSet};
use std::io::IsTerminal;
use std::os::fd::{AsFd, AsRawFd};
use std::path::Path;
use std::time::{Duration, Instant};

use aya::maps::{HashMap as BpfHashMap, IterableMap, MapData, PerCpuArray, RingBuf, StackTraceMap};
use memtrail_ebpf_abi as abi;
use memtrail_format::units::{format_bytes, format_duration};
use memtrail_format::{
    AllocApi, EndTotals, FormatError, FreeApi, IntMap, LostReason, Module, NO_MODULE, NO_STRING,
    OutputFile, ProcessInfo, ProcessOrigin, Record, Stack, StackFrame, Symbol, SymbolFrame,
    TraceWriter, Unwinder,
};

use crate::allocators::{self, AllocatorPlan};
use crate::anon_mappings::AnonMappings;
use crate::elf_file::build_id_of;
use crate::modules::{ModuleTable, read_exec_mappings};
use crate::probes::{Probes, ProcessProbes, error_chain};
use crate::processes::{ProcessTable, decode_exit_code, has_ended, share_address_space};
use crate::rss::sample_rss;
use crate::signals;
use crate::symbols::SymbolResolver;
use crate::target::{ExitStatus, Target, command_line_of};
use crate::unwind_loader::{UnwindLoader, UnwindStats};
use crate::watchdog::Watchdog;

const POLL_INTERVAL: Duration = Duration::from_millis(10);
const TICK_INTERVAL: Duration = Duration::from_millis(100);
/// Right after a launched command is released, maps are re-read on every poll for this long,
/// so short-lived programs have their modules known before they exit.
const EARLY_PHASE: Duration = Duration::from_millis(300);
/// A new process that has not stopped (at its fork or exec) this long after the recorder
/// learnt of it never will: its probes are attached without the stop.
const LATE_ATTACH_AFTER: Duration = Duration::from_millis(500);
/// CPU time a new process must have used, without stopping, to be taken for one running
/// untraced (a process stopped at its fork has run for microseconds).
const RAN_UNTRACED_CPU_NS: u64 = 20_000_000;

/// The CPU time process `pid` has used, from `/proc/PID/schedstat` (0 when unknown).
fn cpu_time_ns(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/schedstat"))
        .ok()
        .and_then(|text| text.split_ascii_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("cannot write the trace: {0}")]
    Write(#[from] FormatError),
    #[error("eBPF map {0} is missing or has the wrong type")]
    Map(&'static str),
}

pub struct SessionOptions {
    pub allocator_path: String,
    /// What a process that starts being traced gets attached (new processes of followed
    /// ones; vfork children at their exec) besides its allocators' probes.
    pub process_probes: ProcessProbes,
    /// The allocators probed in the first process (see `Recording::plan_at_stop` for the
    /// others).
    pub allocator_plan: AllocatorPlan,
    pub stack_depth: usize,
    pub page_size: u64,
    pub symbolize: bool,
    pub duration: Option<Duration>,
    pub status_line: bool,
    /// Go on when no traced process runs (`--exe`: more may start).
    pub wait_for_new_processes: bool,
}

/// Why recording stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    TargetExited,
    Signal,
    Duration,
}

/// What the recording did, for the summary line.
#[derive(Debug, Clone, Copy)]
pub struct Summary {
    pub totals: EndTotals,
    pub bytes_written: u64,
    pub elapsed: Duration,
    pub stop: StopReason,
    pub exit: Option<ExitStatus>,
    /// Set when stacks were unwound with CFI tables.
    pub unwind: Option<UnwindStats>,
    /// Processes traced, the first ones included.
    pub processes: usize,
    /// Processes of the tree that could not be traced.
    pub unfollowed: u64,
}

/// A trace being recorded: the writer plus everything interned so far.
pub struct Recording {
    writer: TraceWriter<OutputFile>,
    start_monotonic_ns: u64,
    stack_depth: usize,
    modules: ModuleTable,
    processes: ProcessTable,
    /// The processes traced from the start, in the order given (the first is `meta.pid`).
    first_processes: Vec<(u32, ProcessOrigin)>,
    /// The launched command has not exec'ed yet (that exec is no Exec record).
    launch_exec_pending: bool,
    /// (address space, event stack kind, kernel stack id or table-unwound stack hash) -> trace
    /// stack id.
    kernel_stacks: IntMap<(u32, u8, u64), u32>,
    /// Stacks taken out of `DWARF_STACKS` (the kernel deletes none itself and stores each
    /// hash once): their return addresses and flags, for another process (or the same one
    /// after an exec) that unwinds to the same addresses.
    table_stacks: IntMap<u64, (Vec<u64>, u32)>,
    /// Unwinder and frames -> trace stack id (stacks equal after truncation share one id).
    stacks_by_frames: HashMap<(Unwinder, Vec<(u32, u64)>), u32>,
    /// Loads unwind tables and hands out table-unwound stacks (`--unwind dwarf|auto`).
    unwinder: Option<UnwindLoader>,
    unknown_stack: Option<u32>,
    next_stack_id: u32,
    resolver: Option<SymbolResolver>,
    /// Resumed processes that got no unwinder slot (all taken): their stacks stop early.
    unwind_slots_full: u64,
    /// A stop was announced (`EVENT_PROCESS_STOPPED`) and `STOPPED_PROCESSES` not looked at
    /// since.
    stops_pending: bool,
    /// The allocators probed in each process (a forked child gets its parent's).
    plans: HashMap<u32, AllocatorPlan>,
    /// Predicted for each executable exec'ed so far.
    plans_by_executable: HashMap<std::path::PathBuf, AllocatorPlan>,
    /// The first process's, for processes nothing better is known of.
    default_plan: AllocatorPlan,
    symbolized: HashSet<(u32, u64)>,
    totals: EndTotals,
    lost_seen: [u64; abi::LOST_COUNTER_COUNT as usize],
    /// Per process.
    anon_mappings: HashMap<u32, AnonMappings>,
    page_size: u64,
    unfollowed: u64,
    /// munmaps of regions never recorded as mapped (glibc releasing its own large blocks).
    pub unrecorded_munmaps: u64,
    /// Path of the probed allocator library: mmaps it makes itself (malloc arenas, thread
    /// stacks) back blocks reported otherwise, or are its own bookkeeping, and are skipped.
    allocator_path: String,
    /// Trace stack id -> module of its first frame (the function that called the allocator).
    caller_module: IntMap<u32, u32>,
    pub allocator_internal_mmaps: u64,
}

/// Nanoseconds of CLOCK_MONOTONIC, the clock `bpf_ktime_get_ns` reads.
pub fn monotonic_now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid timespec out-pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64) * 1_000_000_000 + ts.tv_nsec as u64
}

fn lost_reason(counter: usize) -> LostReason {
    match counter as u32 {
        abi::LOST_RING_BUFFER_FULL => LostReason::RingBufferFull,
        abi::LOST_STACK_UNAVAILABLE => LostReason::StackUnavailable,
        abi::LOST_MISSING_ENTRY | abi::LOST_PENDING_TABLE_FULL => LostReason::MissingEntry,
        _ => LostReason::Other,
    }
}

impl Recording {
    /// Renames the trace over its final name (it was written into a temporary file until
    /// the target started): from now on it is readable there, as far as it is flushed.
    pub fn publish(&mut self) -> Result<(), FormatError> {
        self.writer.publish()
    }

    /// A recording of the processes `first` (their probes attached; the first of them is
    /// the trace's `meta.pid`).
    pub fn new(
        writer: TraceWriter<OutputFile>,
        start_monotonic_ns: u64,
        first: &[(u32, ProcessOrigin)],
        options: &SessionOptions,
        unwinder: Option<UnwindLoader>,
    ) -> Recording {
        let mut processes = ProcessTable::new(first.first().map_or(0, |f| f.0));
        for &(pid, _) in first {
            processes.add(pid, 0);
            if let Some(process) = processes.get_mut(pid) {
                process.probed = true;
            }
        }
        Recording {
            unwinder,
            writer,
            start_monotonic_ns,
            stack_depth: options.stack_depth,
            modules: ModuleTable::new(),
            processes,
            first_processes: first.to_vec(),
            launch_exec_pending: first
                .first()
                .is_some_and(|f| f.1 == ProcessOrigin::Launched),
            kernel_stacks: IntMap::default(),
            table_stacks: IntMap::default(),
            stacks_by_frames: HashMap::new(),
            unknown_stack: None,
            next_stack_id: 0,
            resolver: options.symbolize.then(SymbolResolver::new),
            unwind_slots_full: 0,
            stops_pending: false,
            plans: first
                .iter()
                .map(|&(pid, _)| (pid, options.allocator_plan.clone()))
                .collect(),
            plans_by_executable: HashMap::new(),
            default_plan: options.allocator_plan.clone(),
            symbolized: HashSet::new(),
            totals: EndTotals::default(),
            lost_seen: [0; abi::LOST_COUNTER_COUNT as usize],
            anon_mappings: HashMap::new(),
            page_size: options.page_size,
            unfollowed: 0,
            unrecorded_munmaps: 0,
            allocator_path: options.allocator_path.clone(),
            caller_module: IntMap::default(),
            allocator_internal_mmaps: 0,
        }
    }

    fn now(&self) -> u64 {
        monotonic_now_ns().saturating_sub(self.start_monotonic_ns)
    }

    fn first_pid(&self) -> u32 {
        self.first_processes.first().map_or(0, |f| f.0)
    }

    /// Writes the Process record of each first process (before any of their events), with
    /// `command_lines` in the order the processes were given to [`Recording::new`].
    pub fn write_first_processes(
        &mut self,
        command_lines: &[Vec<String>],
    ) -> Result<(), FormatError> {
        for (index, (pid, origin)) in self.first_processes.clone().into_iter().enumerate() {
            let command_line = command_lines.get(index).cloned().unwrap_or_default();
            self.writer.write(&Record::Process(Box::new(ProcessInfo {
                pid,
                parent_pid: 0,
                time: 0,
                origin,
                command_line,
            })))?;
        }
        Ok(())
    }

    /// Re-reads process `pid`'s maps (once, for both tables: a big process's maps file takes
    /// a while to read and parse) and writes a Module record for each new module; gives the
    /// unwinder the tables of new modules.
    fn refresh_modules(&mut self, pid: u32) -> Result<(), SessionError> {
        let Ok(mappings) = read_exec_mappings(pid) else {
            return Ok(()); // the process is gone: keep what is known
        };
        if let Some(unwinder) = self.unwinder.as_mut() {
            unwinder.refresh(pid, &mappings);
        }
        let new_ids = self.modules.apply(pid, &mappings);
        for id in new_ids {
            let Some(module) = self.modules.module(id) else {
                continue;
            };
            let build_id = if module.path.starts_with('/') {
                let from_process = build_id_of(&module.file_for_reading);
                if from_process.is_empty() {
                    build_id_of(Path::new(&module.path))
                } else {
                    from_process
                }
            } else {
                Vec::new()
            };
            let record = Record::Module(Box::new(Module {
                id,
                path: module.path.clone(),
                build_id,
                ranges: module.ranges.clone(),
            }));
            self.writer.write(&record)?;
        }
        Ok(())
    }

    fn unknown_stack_id(&mut self) -> Result<u32, SessionError> {
        if let Some(id) = self.unknown_stack {
            return Ok(id);
        }
        let id = self.next_stack_id;
        self.next_stack_id += 1;
        self.writer.write(&Record::Stack(Stack {
            id,
            unwinder: Unwinder::FramePointer,
            truncated: true,
            frames: Vec::new(),
        }))?;
        self.unknown_stack = Some(id);
        Ok(id)
    }

    /// The trace stack id of an event's stack in process `pid`, writing the stack (and its
    /// modules and symbols) the first time it is seen.
    fn trace_stack(
        &mut self,
        pid: u32,
        kind: u8,
        kernel_key: u64,
        stacks: &StackTraceMap<MapData>,
    ) -> Result<u32, SessionError> {
        // A process without probes of its own is seen only through its parent's: it is a
        // vfork child running in the parent's address space (until its exec).
        // One table lookup per event in the common case.
        let (pid, space) = match self.processes.get(pid) {
            Some(process) if !process.probed && process.parent != 0 => {
                (process.parent, self.processes.space_of(process.parent))
            }
            Some(process) => (pid, process.space),
            None => (pid, 0),
        };
        if let Some(&id) = self.kernel_stacks.get(&(space, kind, kernel_key)) {
            return Ok(id);
        }
        let (addresses, unwinder, mut truncated) = match kind {
            abi::STACK_FRAME_POINTER => {
                let Ok(kernel_id) = u32::try_from(kernel_key) else {
                    return self.unknown_stack_id();
                };
                let Ok(trace) = stacks.get(&kernel_id, 0) else {
                    return self.unknown_stack_id();
                };
                let addresses: Vec<u64> = trace.frames().iter().map(|f| f.ip).collect();
                let truncated =
                    addresses.len() > self.stack_depth || addresses.len() >= abi::MAX_STACK_DEPTH;
                (addresses, Unwinder::FramePointer, truncated)
            }
            abi::STACK_TABLES => {
                if !self.table_stacks.contains_key(&kernel_key) {
                    let Some(stack) = self
                        .unwinder
                        .as_mut()
                        .and_then(|unwinder| unwinder.take_stack(kernel_key))
                    else {
                        return self.unknown_stack_id();
                    };
                    let depth = (stack.depth as usize).min(abi::UNWIND_MAX_FRAMES);
                    self.table_stacks
                        .insert(kernel_key, (stack.frames[..depth].to_vec(), stack.flags));
                }
                let Some((addresses, flags)) = self.table_stacks.get(&kernel_key) else {
                    return self.unknown_stack_id();
                };
                let truncated =
                    flags & abi::DWARF_STACK_TRUNCATED != 0 || addresses.len() > self.stack_depth;
                (addresses.clone(), Unwinder::Dwarf, truncated)
            }
            _ => return self.unknown_stack_id(),
        };
        let mut frames = Vec::new();
        let mut refreshed = false;
        for &address in addresses.iter().take(self.stack_depth) {
            let mut resolved = self.modules.resolve(pid, address);
            if resolved.is_none() && !refreshed {
                // Maybe a library loaded since (dlopen): look again, once per stack.
                self.refresh_modules(pid)?;
                refreshed = true;
                resolved = self.modules.resolve(pid, address);
            }
            match resolved {
                Some((module, offset)) => frames.push(StackFrame {
                    module,
                    offset,
                    address,
                }),
                None => {
                    // Not code: frame pointers ended (a binary built without them gives one
                    // real frame, then junk). Keep the reliable prefix.
                    truncated = true;
                    break;
                }
            }
        }
        let key = (
            unwinder,
            frames
                .iter()
                .map(|f| (f.module, f.offset))
                .collect::<Vec<_>>(),
        );
        if let Some(&id) = self.stacks_by_frames.get(&key) {
            self.kernel_stacks.insert((space, kind, kernel_key), id);
            return Ok(id);
        }
        let id = self.next_stack_id;
        self.next_stack_id += 1;
        if let Some(first) = frames.first() {
            self.caller_module.insert(id, first.module);
        }
        self.symbolize(&frames)?;
        self.writer.write(&Record::Stack(Stack {
            id,
            unwinder,
            truncated,
            frames,
        }))?;
        self.stacks_by_frames.insert(key, id);
        self.kernel_stacks.insert((space, kind, kernel_key), id);
        Ok(id)
    }

    /// Writes Symbol records for the frames not resolved before.
    fn symbolize(&mut self, frames: &[StackFrame]) -> Result<(), SessionError> {
        let Some(resolver) = self.resolver.as_ref() else {
            return Ok(());
        };
        let mut by_module: HashMap<u32, Vec<u64>> = HashMap::new();
        for frame in frames {
            if frame.module != NO_MODULE && self.symbolized.insert((frame.module, frame.offset)) {
                by_module
                    .entry(frame.module)
                    .or_default()
                    .push(frame.offset);
            }
        }
        let mut symbols = Vec::new();
        for (module_id, offsets) in by_module {
            let Some(module) = self.modules.module(module_id) else {
                continue;
            };
            if !module.path.starts_with('/') {
                continue; // the vdso: no file to read
            }
            let file = if module.file_for_reading.exists() {
                module.file_for_reading.clone()
            } else {
                module.path.clone().into()
            };
            for (offset, source_frames) in offsets.iter().zip(resolver.resolve(&file, &offsets)) {
                if !source_frames.is_empty() {
                    symbols.push((module_id, *offset, source_frames));
                }
            }
        }
        for (module, offset, source_frames) in symbols {
            let mut frames = Vec::with_capacity(source_frames.len());
            for source in source_frames {
                let function = self.writer.intern(&source.function)?;
                let file = match &source.file {
                    Some(file) => self.writer.intern(file)?,
                    None => NO_STRING,
                };
                frames.push(SymbolFrame {
                    function,
                    file,
                    line: source.line,
                });
            }
            self.writer.write(&Record::Symbol(Symbol {
                module,
                offset,
                frames,
            }))?;
        }
        Ok(())
    }

    /// True when the stack's first frame (the caller of mmap) is in the allocator library.
    fn called_by_allocator(&self, stack: u32) -> bool {
        self.caller_module
            .get(&stack)
            .and_then(|&module| self.modules.module(module))
            .is_some_and(|module| module.path == self.allocator_path)
    }

    /// Converts one ring-buffer event into its record.
    fn record_event(
        &mut self,
        bytes: &[u8],
        stacks: &StackTraceMap<MapData>,
    ) -> Result<(), SessionError> {
        if bytes.len() < abi::EVENT_SIZE {
            return Ok(());
        }
        // SAFETY: at least EVENT_SIZE bytes; Event is plain old data; unaligned read.
        let event: abi::Event = unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast()) };
        let time = event.time_ns.saturating_sub(self.start_monotonic_ns);
        let pid = event.tgid;
        if event.kind >= abi::EVENT_PROCESS_START {
            return self.record_process_event(&event, time);
        }
        if self.processes.bind_thread(event.tid, pid) {
            self.writer.write(&Record::Thread {
                thread: event.tid,
                pid,
            })?;
        }
        let record = match event.kind {
            abi::EVENT_ALLOC | abi::EVENT_REALLOC => {
                let Some(api) = AllocApi::from_u8(event.api) else {
                    return Ok(());
                };
                let stack = self.trace_stack(pid, event.stack_kind, event.stack_key, stacks)?;
                if api == AllocApi::Mmap && self.called_by_allocator(stack) {
                    self.allocator_internal_mmaps += 1;
                    return Ok(());
                }
                if event.kind == abi::EVENT_ALLOC {
                    if api == AllocApi::Mmap {
                        self.anon_mappings.entry(pid).or_default().mapped(
                            event.address,
                            event.size,
                            self.page_size,
                        );
                    }
                    self.totals.allocations += 1;
                    Record::Alloc {
                        time,
                        thread: event.tid,
                        address: event.address,
                        size: event.size,
                        stack,
                        api,
                    }
                } else {
                    self.totals.reallocs += 1;
                    Record::Realloc {
                        time,
                        thread: event.tid,
                        old_address: event.old_address,
                        new_address: event.address,
                        size: event.size,
                        stack,
                        api,
                    }
                }
            }
            abi::EVENT_FREE => {
                let Some(api) = FreeApi::from_u8(event.api) else {
                    return Ok(());
                };
                if api == FreeApi::Munmap
                    && !self
                        .anon_mappings
                        .get_mut(&pid)
                        .is_some_and(|mappings| mappings.unmap(event.address, event.size))
                {
                    self.unrecorded_munmaps += 1;
                    return Ok(());
                }
                self.totals.frees += 1;
                Record::Free {
                    time,
                    thread: event.tid,
                    address: event.address,
                    size: if api == FreeApi::Munmap {
                        event.size
                    } else {
                        0
                    },
                    api,
                }
            }
            _ => return Ok(()),
        };
        // Alloc, Realloc and Free own no heap memory: skipping the drop skips a call, per
        // event, to `Record`'s drop glue (which has to look at the variant first).
        let record = std::mem::ManuallyDrop::new(record);
        self.writer.write(&record)?;
        Ok(())
    }

    /// A process event: a new process of a followed one, an exec, an exit.
    fn record_process_event(&mut self, event: &abi::Event, time: u64) -> Result<(), SessionError> {
        let pid = event.tgid;
        match event.kind {
            abi::EVENT_PROCESS_START => {
                let parent = event.old_address as u32;
                let origin = if event.api == abi::PROCESS_FOUND {
                    ProcessOrigin::Found
                } else {
                    ProcessOrigin::Forked
                };
                if event.api == abi::PROCESS_TABLE_FULL {
                    self.write_unfollowed(
                        time,
                        pid,
                        parent,
                        format!(
                            "more than {} processes were traced at once",
                            abi::TRACED_PROCESSES_CAPACITY
                        ),
                    )?;
                    return Ok(());
                }
                self.processes.add(pid, parent);
                self.writer.write(&Record::Process(Box::new(ProcessInfo {
                    pid,
                    parent_pid: parent,
                    time,
                    origin,
                    command_line: command_line_of(pid),
                })))?;
            }
            abi::EVENT_PROCESS_EXEC => {
                let launch =
                    std::mem::take(&mut self.launch_exec_pending) && pid == self.first_pid();
                self.modules.forget(pid);
                self.anon_mappings.remove(&pid);
                if let Some(unwinder) = self.unwinder.as_mut() {
                    unwinder.forget(pid, false);
                }
                self.processes.exec(pid);
                // The launched command's own exec is its start, which its Process record says.
                if !launch {
                    self.writer.write(&Record::Exec {
                        time,
                        pid,
                        command_line: command_line_of(pid),
                    })?;
                }
            }
            abi::EVENT_PROCESS_EXIT => {
                let (code, signal) = decode_exit_code(event.size as u32);
                self.process_ended(time, pid, code, signal)?;
            }
            abi::EVENT_PROCESS_STOPPED => self.stops_pending = true,
            _ => {}
        }
        Ok(())
    }

    /// Process `pid` ended (once): its ProcessExit record, and its unwinder slot freed.
    fn process_ended(
        &mut self,
        time: u64,
        pid: u32,
        code: Option<i32>,
        signal: Option<i32>,
    ) -> Result<(), SessionError> {
        if !self.processes.exited(pid) {
            return Ok(());
        }
        if let Some(unwinder) = self.unwinder.as_mut() {
            unwinder.forget(pid, true);
        }
        self.anon_mappings.remove(&pid);
        self.writer.write(&Record::ProcessExit {
            time,
            pid,
            code,
            signal,
        })?;
        Ok(())
    }

    /// A process of the tree that is not traced, said in the trace and on stderr.
    fn write_unfollowed(
        &mut self,
        time: u64,
        pid: u32,
        parent: u32,
        reason: String,
    ) -> Result<(), SessionError> {
        self.unfollowed += 1;
        eprintln!(
            "memtrail-record: warning: process {pid} (started by {parent}) is not traced: {}",
            memtrail_format::text::terminal(&reason)
        );
        self.writer.write(&Record::Unfollowed {
            time,
            pid,
            parent_pid: parent,
            reason,
        })?;
        Ok(())
    }

    /// Resumes every process the programs stopped: a new process gets its probes first (a
    /// vfork child only once it has exec'ed: until then it runs in its parent's address
    /// space, whose probes see it), and each gets its mappings read. `attach` is false at the
    /// end of the recording (nothing is attached any more).
    fn resume_stopped(
        &mut self,
        maps: &mut KernelMaps<'_>,
        probes: &mut Probes,
        process_probes: &ProcessProbes,
        attach: bool,
    ) -> Result<(), SessionError> {
        if !std::mem::take(&mut self.stops_pending) && attach {
            return Ok(()); // no stop announced since the last look
        }
        // Walking the map's buckets costs a system call per bucket group: only on announcement.
        let stopped: Vec<(u32, u32)> = maps.stopped.iter().filter_map(Result::ok).collect();
        if stopped.is_empty() {
            return Ok(());
        }
        // The events before each stop (the new process or exec records) first.
        drain(self, maps.ring, maps.stacks)?;
        for (pid, reason) in stopped {
            let new_image = reason == abi::STOP_START || reason == abi::STOP_EXEC;
            let unprobed = self
                .processes
                .get(pid)
                .is_some_and(|p| !p.probed && !p.exited);
            if attach && new_image && unprobed {
                let parent = self.processes.get(pid).map_or(0, |p| p.parent);
                let vforked = reason == abi::STOP_START && share_address_space(pid, parent);
                if !vforked {
                    let plan = self.plan_at_stop(pid, parent, reason, process_probes);
                    let attached = probes.attach_process(process_probes, &plan, pid);
                    self.plans.insert(pid, plan);
                    match attached {
                        Ok(_) => {
                            if let Some(process) = self.processes.get_mut(pid) {
                                process.probed = true;
                            }
                        }
                        Err(error) => {
                            let time = self.now();
                            let _ = maps.traced.remove(&pid);
                            self.processes.exited(pid);
                            self.write_unfollowed(time, pid, parent, error_chain(&error))?;
                        }
                    }
                }
            }
            self.refresh_modules(pid)?;
            if self.unwinder.as_ref().is_some_and(|u| !u.has_slot(pid))
                && !self.processes.get(pid).is_some_and(|p| p.exited)
            {
                self.unwind_slots_full += 1;
            }
            let _ = maps.stopped.remove(&pid);
            // SAFETY: a signal to a process our programs stopped and listed.
            unsafe { libc::kill(pid as i32, libc::SIGCONT) };
        }
        Ok(())
    }

    /// The allocators to probe in process `pid`, stopped for `reason`: with `--lib`, that
    /// library's; after a fork, its parent's (same image); after an exec (or found at its
    /// exec with `--exe`), what its new executable links, predicted before the libraries are
    /// mapped (one prediction per executable); the first process's when nothing is known.
    fn plan_at_stop(
        &mut self,
        pid: u32,
        parent: u32,
        reason: u32,
        process_probes: &ProcessProbes,
    ) -> AllocatorPlan {
        if process_probes.lib.is_some() {
            return self.default_plan.clone();
        }
        if reason == abi::STOP_START {
            return self
                .plans
                .get(&parent)
                .unwrap_or(&self.default_plan)
                .clone();
        }
        let Ok(executable) = std::fs::read_link(format!("/proc/{pid}/exe")) else {
            return self.default_plan.clone();
        };
        if let Some(plan) = self.plans_by_executable.get(&executable) {
            return plan.clone();
        }
        let plan = allocators::plan_for_command(&executable)
            .ok()
            .filter(|plan| !plan.modules.is_empty())
            .unwrap_or_else(|| self.default_plan.clone());
        self.plans_by_executable.insert(executable, plan.clone());
        plan
    }

    /// Processes of the tree that run untraced: forked, but never stopped where the programs
    /// stop new processes (the return of the probed libc's `_Fork`, or an exec): a raw clone
    /// system call, another libc. Their probes are attached now, late, and the trace says
    /// that their first allocations are missing. (A vfork child that has not exec'ed yet runs
    /// in its parent's address space, whose probes see it: it is left alone.)
    fn attach_late(
        &mut self,
        probes: &mut Probes,
        process_probes: &ProcessProbes,
        stopped: &BpfHashMap<MapData, u32, u32>,
    ) -> Result<(), SessionError> {
        for (pid, parent) in self.processes.unprobed_older_than(LATE_ATTACH_AFTER) {
            // Stopped and waiting its turn (attaching is slow when the kernel's probe lock is
            // busy), not yet scheduled at all on a loaded machine, gone, or sharing its
            // parent's probes: not running untraced.
            if stopped.get(&pid, 0).is_ok()
                || cpu_time_ns(pid) < RAN_UNTRACED_CPU_NS
                || has_ended(pid)
                || share_address_space(pid, parent)
            {
                continue;
            }
            let time = self.now();
            let plan = match &process_probes.lib {
                Some(_) => self.default_plan.clone(),
                None => allocators::plan_for_process(pid)
                    .ok()
                    .filter(|plan| !plan.modules.is_empty())
                    .unwrap_or_else(|| self.default_plan.clone()),
            };
            let attached = probes.attach_process(process_probes, &plan, pid);
            self.plans.insert(pid, plan);
            let reason = match attached {
                Ok(_) => {
                    if let Some(process) = self.processes.get_mut(pid) {
                        process.probed = true;
                    }
                    self.refresh_modules(pid)?;
                    format!(
                        "traced only from {}: it did not stop at its fork (a clone system call, or another libc than the probed one), so its first allocations are missing",
                        format_duration(time)
                    )
                }
                Err(error) => {
                    self.processes.exited(pid);
                    error_chain(&error)
                }
            };
            self.write_unfollowed(time, pid, parent, reason)?;
        }
        Ok(())
    }

    /// Forgets the returns seen without their entry so far. Attaching to a running process
    /// installs the return probes before the entry probes (see `Probes::attach_allocator`), so
    /// a call in flight meanwhile returns without an entry: it began before the recording did,
    /// like every block allocated before it, and is not an event the trace lost.
    fn forget_calls_in_flight_at_attach(&mut self, lost: &PerCpuArray<MapData, u64>) {
        let counter = abi::LOST_MISSING_ENTRY as usize;
        if let Ok(values) = lost.get(&(counter as u32), 0) {
            self.lost_seen[counter] = values.iter().sum();
        }
    }

    /// Writes a Lost record for each counter that grew since the last call.
    fn record_losses(&mut self, lost: &PerCpuArray<MapData, u64>) -> Result<(), SessionError> {
        let time = self.now();
        for counter in 0..abi::LOST_COUNTER_COUNT as usize {
            let Ok(values) = lost.get(&(counter as u32), 0) else {
                continue;
            };
            let total: u64 = values.iter().sum();
            let new = total.saturating_sub(self.lost_seen[counter]);
            if new > 0 {
                self.lost_seen[counter] = total;
                self.totals.lost += new;
                self.writer.write(&Record::Lost {
                    time,
                    count: new,
                    reason: lost_reason(counter),
                })?;
            }
        }
        Ok(())
    }

    /// The resident memory of every running traced process, summed (one Rss record).
    fn record_rss(&mut self) -> Result<(), SessionError> {
        let samples: Vec<_> = self.processes.running().filter_map(sample_rss).collect();
        if samples.is_empty() {
            return Ok(());
        }
        let time = self.now();
        self.writer.write(&Record::Rss {
            time,
            rss_bytes: samples.iter().map(|s| s.rss_bytes).sum(),
            anon_bytes: samples.iter().map(|s| s.anon_bytes).sum(),
        })?;
        Ok(())
    }

    /// Marks the processes that ended without their exit event (it was lost, or the process
    /// tracking is off) and writes their ProcessExit (status unknown, unless `status` knows
    /// it: the launched command's, from waitpid). True while some process still runs.
    fn check_processes(&mut self, status: Option<(u32, ExitStatus)>) -> Result<bool, SessionError> {
        let ended: Vec<u32> = self
            .processes
            .running()
            .filter(|&pid| has_ended(pid))
            .collect();
        for pid in ended {
            let (code, signal) = match status {
                Some((known, ExitStatus::Code(code))) if known == pid => (Some(code), None),
                Some((known, ExitStatus::Signal(signal))) if known == pid => (None, Some(signal)),
                _ => (None, None),
            };
            let time = self.now();
            self.process_ended(time, pid, code, signal)?;
        }
        Ok(self.processes.running().next().is_some())
    }

    /// Events written so far.
    fn events(&self) -> u64 {
        self.totals.allocations + self.totals.frees + self.totals.reallocs
    }
}

/// Drains every event waiting in the ring buffer.
fn drain(
    recording: &mut Recording,
    ring: &mut RingBuf<MapData>,
    stacks: &StackTraceMap<MapData>,
) -> Result<(), SessionError> {
    while let Some(item) = ring.next() {
        recording.record_event(&item, stacks)?;
    }
    Ok(())
}

fn wait_readable(fd: i32, timeout: Duration) {
    let mut poll_fd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    unsafe { libc::poll(&mut poll_fd, 1, timeout.as_millis() as i32) };
}

impl Summary {
    pub fn line(&self, path: &Path) -> String {
        let t = &self.totals;
        let processes = match (self.processes, self.unfollowed) {
            (0 | 1, 0) => String::new(),
            (n, 0) => format!(" from {n} processes"),
            (n, u) => format!(" from {n} processes ({u} more not traced)"),
        };
        format!(
            "memtrail-record: {} events{processes} ({} allocs, {} frees, {} reallocs), {} lost, {} written to {} in {} ({})",
            t.allocations + t.frees + t.reallocs,
            t.allocations,
            t.frees,
            t.reallocs,
            t.lost,
            format_bytes(self.bytes_written),
            memtrail_format::text::terminal(&path.display().to_string()),
            format_duration(u64::try_from(self.elapsed.as_nanos()).unwrap_or(u64::MAX)),
            match self.stop {
                StopReason::TargetExited => "target exited",
                StopReason::Signal => "stopped by signal",
                StopReason::Duration => "duration reached",
            }
        )
    }
}

/// Records until every traced process has exited, a signal arrives or the duration is up,
/// then closes the trace with the lost, exit and end records. `targets` are the processes
/// traced from the start (the launched command, or the attached PIDs), the first one the
/// trace's `meta.pid`. On a write error the probes are detached and the error returned; what
/// was written before stays readable.
pub fn run(
    mut recording: Recording,
    probes: &mut Probes,
    targets: &mut [Target],
    options: &SessionOptions,
) -> Result<Summary, SessionError> {
    let started = Instant::now();
    let mut ring = probes
        .ebpf
        .take_map(abi::EVENTS_MAP)
        .and_then(|m| RingBuf::try_from(m).ok())
        .ok_or(SessionError::Map(abi::EVENTS_MAP))?;
    let stacks = probes
        .ebpf
        .take_map(abi::STACKS_MAP)
        .and_then(|m| StackTraceMap::try_from(m).ok())
        .ok_or(SessionError::Map(abi::STACKS_MAP))?;
    let lost = probes
        .ebpf
        .take_map(abi::LOST_COUNTERS_MAP)
        .and_then(|m| PerCpuArray::<MapData, u64>::try_from(m).ok())
        .ok_or(SessionError::Map(abi::LOST_COUNTERS_MAP))?;
    let mut stopped = probes
        .ebpf
        .take_map(abi::STOPPED_PROCESSES_MAP)
        .and_then(|m| BpfHashMap::<MapData, u32, u32>::try_from(m).ok())
        .ok_or(SessionError::Map(abi::STOPPED_PROCESSES_MAP))?;
    let mut traced = probes
        .ebpf
        .take_map(abi::TRACED_PROCESSES_MAP)
        .and_then(|m| BpfHashMap::<MapData, u32, u32>::try_from(m).ok())
        .ok_or(SessionError::Map(abi::TRACED_PROCESSES_MAP))?;
    // From here on, a recorder that dies leaves no traced process stopped.
    let watchdog = Watchdog::start(IterableMap::map(&stopped).fd().as_fd().as_raw_fd());

    recording.forget_calls_in_flight_at_attach(&lost);

    let mut maps = KernelMaps {
        ring: &mut ring,
        stacks: &stacks,
        lost: &lost,
        stopped: &mut stopped,
        traced: &mut traced,
    };
    let result = record_loop(&mut recording, &mut maps, probes, targets, options, started);
    let mut exit_time = recording.now();
    // No process stops itself after this: the tracking programs and the stopping probes go
    // (the other probes stay until the recorder exits, see `Probes::detach_in_background`:
    // detaching takes seconds, and events after the final drain are simply not recorded).
    probes.detach_process_tracking();
    probes.detach_exit_stop();
    // A process that stopped itself just before may still be: never leave one stopped.
    recording.resume_stopped(&mut maps, probes, &options.process_probes, false)?;
    drop(watchdog);
    let stop = result?;
    // Events submitted before detaching are still in the ring.
    drain(&mut recording, maps.ring, maps.stacks)?;
    recording.record_losses(maps.lost)?;
    // Stopped by a signal: a launched target usually got it too (Ctrl-C goes to the whole
    // process group) and has ended by now.
    let exited = match targets.first_mut() {
        Some(first) => stop == StopReason::TargetExited || (first.is_child() && first.has_exited()),
        None => false,
    };
    if stop != StopReason::TargetExited && exited {
        exit_time = recording.now();
    }
    if exited && let Some(first) = targets.first() {
        let status = first.exit_status();
        let (code, signal) = match status {
            Some(ExitStatus::Code(code)) => (Some(code), None),
            Some(ExitStatus::Signal(signal)) => (None, Some(signal)),
            None => (None, None),
        };
        recording.check_processes(status.map(|s| (first.pid, s)))?;
        recording.writer.write(&Record::Exit {
            time: exit_time,
            code,
            signal,
        })?;
    }
    let time = recording.now();
    let totals = recording.totals;
    recording.writer.write(&Record::End { time, totals })?;
    recording.writer.flush()?;
    let bytes_written = recording.writer.bytes_written();
    recording.writer.finish_sync()?;
    if options.status_line {
        eprintln!();
    }
    if recording.unwind_slots_full > 0 {
        eprintln!(
            "memtrail-record: warning: {} processes were traced while {} others held every unwinder slot: their stacks stop at the allocator's caller",
            recording.unwind_slots_full,
            abi::UNWIND_PROCESS_SLOTS
        );
    }
    Ok(Summary {
        totals,
        bytes_written,
        elapsed: started.elapsed(),
        stop,
        exit: targets.first().and_then(Target::exit_status),
        unwind: recording.unwinder.as_ref().map(|u| u.stats),
        processes: recording.processes.count(),
        unfollowed: recording.unfollowed,
    })
}

/// The maps the loop reads, taken out of the loaded object.
struct KernelMaps<'a> {
    ring: &'a mut RingBuf<MapData>,
    stacks: &'a StackTraceMap<MapData>,
    lost: &'a PerCpuArray<MapData, u64>,
    stopped: &'a mut BpfHashMap<MapData, u32, u32>,
    traced: &'a mut BpfHashMap<MapData, u32, u32>,
}

fn record_loop(
    recording: &mut Recording,
    maps: &mut KernelMaps<'_>,
    probes: &mut Probes,
    targets: &mut [Target],
    options: &SessionOptions,
    started: Instant,
) -> Result<StopReason, SessionError> {
    let ring_fd = maps.ring.as_raw_fd();
    let first_pid = targets.first().map_or(0, |t| t.pid);
    let early_phase = targets.first().is_some_and(Target::is_child);
    let mut next_tick = Instant::now();
    let mut next_status = Instant::now() + Duration::from_secs(1);
    let mut last_status_events = 0u64;
    for target in targets.iter() {
        recording.refresh_modules(target.pid)?;
    }
    recording.record_rss()?;
    loop {
        if early_phase && started.elapsed() < EARLY_PHASE {
            wait_readable(ring_fd, Duration::from_millis(1));
            recording.refresh_modules(first_pid)?;
        } else {
            wait_readable(ring_fd, POLL_INTERVAL);
        }
        drain(recording, maps.ring, maps.stacks)?;
        recording.resume_stopped(maps, probes, &options.process_probes, true)?;
        let now = Instant::now();
        if now >= next_tick {
            next_tick = now + TICK_INTERVAL;
            // Reaps the launched command (its status goes into its ProcessExit).
            let status = targets
                .iter_mut()
                .filter(|t| t.is_child())
                .find_map(|t| t.has_exited().then(|| t.exit_status().map(|s| (t.pid, s))))
                .flatten();
            let running = recording.check_processes(status)?;
            // A stop whose announcement was lost (a full ring buffer) waits one tick at most.
            recording.stops_pending = true;
            recording.attach_late(probes, &options.process_probes, maps.stopped)?;
            if running {
                for pid in recording.processes.running().collect::<Vec<_>>() {
                    recording.refresh_modules(pid)?;
                }
                recording.record_rss()?;
            }
            recording.record_losses(maps.lost)?;
            if !running && !options.wait_for_new_processes {
                return Ok(StopReason::TargetExited);
            }
            // The writer's flush interval (WriterOptions, 1 s) is the one policy: records
            // reach the file at least that often, so a recorder killed outright (SIGKILL, OOM)
            // still leaves a trace readable up to then, even when events trickle.
            recording.writer.flush_if_due()?;
        }
        if signals::stop_requested() {
            return Ok(StopReason::Signal);
        }
        if options.duration.is_some_and(|d| started.elapsed() >= d) {
            return Ok(StopReason::Duration);
        }
        if options.status_line && now >= next_status {
            next_status = now + Duration::from_secs(1);
            let events = recording.events();
            eprint!(
                "\r\x1b[2K[memtrail-record] {:.0}s  {} events/s  {} written  {} lost",
                started.elapsed().as_secs_f64(),
                events - last_status_events,
                format_bytes(
                    recording.writer.bytes_written() + recording.writer.pending_bytes() as u64
                ),
                recording.totals.lost
            );
            last_status_events = events;
        }
    }
}

/// True when stderr is a terminal (for the live status line).
pub fn stderr_is_terminal() -> bool {
    std::io::stderr().is_terminal()
}
