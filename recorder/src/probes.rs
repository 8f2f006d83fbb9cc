//! Loading memtrail's eBPF object and attaching its programs to the allocator functions.
//!
//! Owns: the embedded object, load-time globals and map sizes, attaching an allocator plan
//! (`allocators` says which symbol gets which program at which file offset) and the stops,
//! and detaching. Must not: read events or write the trace.

use std::num::NonZeroU32;
use std::path::{Path, PathBuf};

use aya::programs::{
    UProbe, uprobe::UProbeAttachLocation, uprobe::UProbeLink, uprobe::UProbeLinkId,
    uprobe::UProbeScope,
};
use aya::{Ebpf, EbpfLoader};
use memtrail_ebpf_abi as abi;

use crate::allocators::AllocatorPlan;
use crate::elf_file::{ElfError, ElfFile};
use crate::entry_probe::ProbePoint;
use crate::kernel_btf::{ExecFileOffsets, TaskOffsets};

/// The object built by `recorder-ebpf/build.sh` (committed; see recorder-ebpf/check.sh).
static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!("../../recorder-ebpf/memtrail.bpf.o");

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error(transparent)]
    Elf(#[from] ElfError),
    #[error("no allocator found to probe (no module defines malloc or a known allocator API)")]
    NoAllocator,
    #[error("{library} has no `{symbol}` function to probe")]
    MissingSymbol { library: PathBuf, symbol: String },
    #[error(
        "cannot load the eBPF program: permission denied (run as root, or grant CAP_BPF and CAP_PERFMON): {0}"
    )]
    PermissionDenied(String),
    #[error("cannot load the eBPF program: {0}")]
    Load(String),
    #[error("cannot attach to {symbol} in {library}: {message}")]
    Attach {
        symbol: String,
        library: PathBuf,
        message: String,
    },
}

impl ProbeError {
    /// A module named with `--lib` that cannot be read.
    pub fn from_discovery(error: crate::allocators::DiscoveryError) -> ProbeError {
        match error {
            crate::allocators::DiscoveryError::Elf(elf) => ProbeError::Elf(elf),
            other => ProbeError::Load(other.to_string()),
        }
    }
}

/// Settings fixed when the object is loaded.
#[derive(Debug, Clone)]
pub struct LoadSettings {
    /// Only this process is traced (in the kernel, on top of the attach scope); 0 when
    /// several are (each probe is scoped to one process anyway).
    pub target_tgid: u32,
    /// The first traced process (slot 0 of the unwinder's mapping lists).
    pub first_tgid: u32,
    /// Offsets in the kernel's `task_struct`, for following process trees (None: the
    /// process-tracking programs are not loaded).
    pub task_offsets: Option<TaskOffsets>,
    /// `--exe`: the executable whose processes are traced from their exec.
    pub executable: Option<ExecutableMatch>,
    pub min_size: u64,
    pub ring_buffer_bytes: u32,
    /// Stop the target with SIGSTOP when it calls libc's `exit` (see `attach_exit_stop`).
    pub stop_at_exit: bool,
    /// 0: every allocation; N: on average one per N bytes allocated (see the eBPF program).
    pub sample_bytes: u64,
    /// Which stacks the return program captures: `abi::CAPTURE_STACKS` (the default),
    /// `abi::CAPTURE_NONE`, or `abi::CAPTURE_READ_ONLY` (the benchmark's lower bound).
    pub capture_stacks: u32,
    /// Attach programs that do nothing on the same attach points (measures the probes' cost).
    pub probes_only: bool,
    /// Unwind stacks in the program from loaded CFI tables instead of the kernel's
    /// frame-pointer walk.
    pub unwind_tables: bool,
    /// Capacity of the unwind rows table (all modules' rows together).
    pub unwind_rows: u32,
    /// Entries of the per-thread slot array (a power of two; threads whose id collides with a
    /// busy entry use the hash map instead).
    pub thread_slots: u32,
}

/// What was attached where, for the trace's metadata and the user.
#[derive(Debug, Clone, Default)]
pub struct Placement {
    /// `family:path` of each module probed, `;`-separated (see `AllocatorPlan::summary`).
    pub allocators: String,
    /// The probe on the `free` the process calls (the main allocator's).
    pub free: Option<ProbePoint>,
    /// "symbol=reported-as" for functions sharing an address with an earlier one.
    pub aliases: Vec<String>,
    /// C library allocation names no module defines (e.g. a jemalloc without pvalloc).
    pub missing: Vec<String>,
    /// Probes on instructions the kernel single-steps: "symbol+offset (instruction)".
    pub single_stepping: Vec<String>,
    /// Those of them on functions called often (the start line names these).
    pub single_stepping_hot: Vec<String>,
    pub probes: usize,
}

impl Placement {
    /// The free probe's offset into `free` (0: at its entry, or no free probe).
    pub fn free_offset(&self) -> u64 {
        self.free.as_ref().map(|f| f.offset).unwrap_or(0)
    }
}

/// The loaded object with its attached programs.
pub struct Probes {
    pub ebpf: Ebpf,
    links: Vec<(&'static str, UProbeLinkId)>,
    probes_only: bool,
    /// Whether the process-tracking programs are attached.
    tracking: bool,
}

/// What identifies `--exe`'s executable in the kernel, and the flags its processes get.
#[derive(Debug, Clone, Copy)]
pub struct ExecutableMatch {
    pub inode: u64,
    /// The kernel's encoding: major << 20 | minor.
    pub device: u32,
    pub follow: bool,
    pub offsets: ExecFileOffsets,
}

/// Everything attached to each traced process besides its allocators' probes (whose plan
/// `allocators` makes for each process image): the stops that let the recorder read its
/// mappings in time, and the options that apply to every process.
#[derive(Debug, Clone)]
pub struct ProcessProbes {
    /// `--lib`: this library's functions instead of what discovery finds.
    pub lib: Option<PathBuf>,
    pub free_offset_override: Option<u64>,
    /// libc, whose `exit` stops the process until its mappings are read (launch mode).
    pub exit_stop: Option<PathBuf>,
    /// The dynamic loader, whose debugger hook stops the process once it mapped libraries
    /// (launch mode, with unwind tables).
    pub loader_stop: Option<PathBuf>,
}

/// A failed load of the object or of one program: `PermissionDenied` when the kernel refused
/// it for lack of privilege, else `Load`. aya keeps the system call's `io::Error` in the error
/// chain (`MapError::CreateError`, `ProgramError::LoadError` and `SyscallError` hold it as
/// their source), so the errno decides: EPERM (no CAP_BPF, CAP_PERFMON or locked-memory
/// allowance) or EACCES, both `ErrorKind::PermissionDenied`.
fn load_error(error: impl std::error::Error + 'static) -> ProbeError {
    if io_errors(&error).any(|io| io.kind() == std::io::ErrorKind::PermissionDenied) {
        ProbeError::PermissionDenied(error.to_string())
    } else {
        ProbeError::Load(error.to_string())
    }
}

impl Probes {
    /// Loads the object (nothing attached yet).
    pub fn load(settings: &LoadSettings) -> Result<Probes, ProbeError> {
        let sampling = settings.sample_bytes != 0;
        let offsets = settings.task_offsets.unwrap_or(TaskOffsets {
            pid: 0,
            tgid: 0,
            exit_code: 0,
        });
        // No executable: inode 0 turns the match off.
        let exe = settings.executable.unwrap_or(ExecutableMatch {
            inode: 0,
            device: 0,
            follow: false,
            offsets: ExecFileOffsets {
                binprm_file: 0,
                file_inode: 0,
                inode_ino: 0,
                inode_sb: 0,
                sb_dev: 0,
            },
        });
        let ebpf = EbpfLoader::new()
            .override_global(abi::GLOBAL_TARGET_TGID, &settings.target_tgid, true)
            .override_global(abi::GLOBAL_FIRST_TGID, &settings.first_tgid, true)
            .override_global(abi::GLOBAL_TASK_PID_OFFSET, &offsets.pid, true)
            .override_global(abi::GLOBAL_TASK_TGID_OFFSET, &offsets.tgid, true)
            .override_global(abi::GLOBAL_TASK_EXIT_CODE_OFFSET, &offsets.exit_code, true)
            .override_global(abi::GLOBAL_EXE_INODE, &exe.inode, true)
            .override_global(abi::GLOBAL_EXE_DEVICE, &exe.device, true)
            .override_global(
                abi::GLOBAL_EXE_FLAGS,
                &if exe.follow { abi::TRACED_FOLLOW } else { 0 },
                true,
            )
            .override_global(
                abi::GLOBAL_BINPRM_FILE_OFFSET,
                &exe.offsets.binprm_file,
                true,
            )
            .override_global(abi::GLOBAL_FILE_INODE_OFFSET, &exe.offsets.file_inode, true)
            .override_global(abi::GLOBAL_INODE_INO_OFFSET, &exe.offsets.inode_ino, true)
            .override_global(abi::GLOBAL_INODE_SB_OFFSET, &exe.offsets.inode_sb, true)
            .override_global(abi::GLOBAL_SB_DEV_OFFSET, &exe.offsets.sb_dev, true)
            .override_global(abi::GLOBAL_SAMPLE_BYTES, &settings.sample_bytes, true)
            .override_global(abi::GLOBAL_CAPTURE_STACKS, &settings.capture_stacks, true)
            .override_global(abi::GLOBAL_MIN_SIZE, &settings.min_size, true)
            .override_global(
                abi::GLOBAL_STOP_AT_EXIT,
                &u32::from(settings.stop_at_exit),
                true,
            )
            .override_global(
                abi::GLOBAL_UNWIND_TABLES,
                &u32::from(settings.unwind_tables),
                true,
            )
            .override_global(
                abi::GLOBAL_THREAD_SLOTS_MASK,
                &(settings.thread_slots.max(1) - 1),
                true,
            )
            .map_max_entries(abi::THREAD_SLOTS_MAP, settings.thread_slots.max(1))
            .map_max_entries(abi::EVENTS_MAP, settings.ring_buffer_bytes)
            // Only one unwinder's tables cost kernel memory.
            .map_max_entries(
                abi::UNWIND_ROWS_MAP,
                if settings.unwind_tables {
                    settings.unwind_rows
                } else {
                    1
                },
            )
            .map_max_entries(
                abi::DWARF_STACKS_MAP,
                if settings.unwind_tables {
                    abi::STACKS_CAPACITY
                } else {
                    1
                },
            )
            .map_max_entries(
                abi::STACKS_MAP,
                if settings.unwind_tables {
                    1
                } else {
                    abi::STACKS_CAPACITY
                },
            )
            // The sampling tables cost kernel memory only when sampling.
            .map_max_entries(
                abi::SAMPLED_BLOCKS_MAP,
                if sampling {
                    abi::SAMPLED_BLOCKS_CAPACITY
                } else {
                    1
                },
            )
            .map_max_entries(
                abi::SAMPLE_COUNTDOWN_MAP,
                if sampling {
                    abi::SAMPLE_COUNTDOWN_CAPACITY
                } else {
                    1
                },
            )
            .load(EBPF_OBJECT)
            .map_err(load_error)?;
        Ok(Probes {
            ebpf,
            links: Vec::new(),
            probes_only: settings.probes_only,
            tracking: false,
        })
    }

    fn uprobe(&mut self, name: &'static str) -> Result<&mut UProbe, ProbeError> {
        let program = self
            .ebpf
            .program_mut(name)
            .ok_or_else(|| ProbeError::Load(format!("program {name} missing from the object")))?;
        let uprobe: &mut UProbe = program
            .try_into()
            .map_err(|e| ProbeError::Load(format!("program {name}: {e}")))?;
        if uprobe.fd().is_err() {
            uprobe.load().map_err(load_error)?;
        }
        Ok(uprobe)
    }

    fn attach_at(
        &mut self,
        program: &'static str,
        symbol: &str,
        file_offset: u64,
        library: &Path,
        pid: u32,
    ) -> Result<(), ProbeError> {
        let program = match program {
            abi::program::EXIT_ENTRY | abi::program::FORK_RETURN => program,
            abi::program::ALLOC_RETURN if self.probes_only => abi::program::EMPTY_RETURN,
            _ if self.probes_only => abi::program::EMPTY_ENTRY,
            _ => program,
        };
        let scope = match NonZeroU32::new(pid) {
            Some(pid) => UProbeScope::OneProcess(pid),
            None => UProbeScope::AllProcesses,
        };
        let uprobe = self.uprobe(program)?;
        let mut attempts = 0;
        let link = loop {
            attempts += 1;
            match uprobe.attach(
                UProbeAttachLocation::AbsoluteOffset(file_offset),
                library,
                scope,
            ) {
                Ok(link) => break link,
                // perf_event_open has been seen, rarely and only on a loaded machine, to
                // answer ESRCH for a target that is alive (held before exec): try again
                // while the process still exists.
                Err(e) if attempts < 4 && is_no_such_process(&e) && process_exists(pid) => {
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                Err(e) => {
                    return Err(ProbeError::Attach {
                        symbol: symbol.to_owned(),
                        library: library.to_owned(),
                        message: error_chain(&e),
                    });
                }
            }
        };
        self.links.push((program, link));
        Ok(())
    }

    /// Attaches the probes of `plan` (see `allocators`), scoped to `pid`. Return probes go
    /// first, so an entry is never seen without its return. `free_offset_override` replaces
    /// the decoded offset into the main allocator's `free`.
    pub fn attach_allocator(
        &mut self,
        plan: &AllocatorPlan,
        pid: u32,
        free_offset_override: Option<u64>,
    ) -> Result<Placement, ProbeError> {
        let main = plan.main_module().ok_or(ProbeError::NoAllocator)?;
        let links_before = self.links.len();
        let mut placement = Placement {
            allocators: plan.summary(),
            single_stepping: plan.single_stepping(false),
            single_stepping_hot: plan.single_stepping(true),
            missing: plan.missing_libc_names(),
            ..Placement::default()
        };
        for module in &plan.modules {
            let file = &module.module.file;
            let is_main = std::ptr::eq(module, main);
            let (returning, entry_only): (Vec<_>, Vec<_>) =
                module.probes.iter().partition(|p| p.layout.returns_block);
            for probe in &returning {
                let offset = probe.function_offset;
                self.attach_at(abi::program::ALLOC_RETURN, &probe.symbol, offset, file, pid)?;
            }
            for probe in returning {
                let offset = probe.probe_offset();
                self.attach_at(probe.layout.program, &probe.symbol, offset, file, pid)?;
            }
            for probe in entry_only {
                let mut point = probe.point.clone();
                let is_free = is_main && probe.symbol == "free";
                if is_free && let Some(offset) = free_offset_override {
                    point.offset = offset;
                    point.reason = "set with --free-probe-offset";
                }
                let offset = probe.function_offset + point.offset;
                self.attach_at(probe.layout.program, &probe.symbol, offset, file, pid)?;
                if is_free {
                    placement.free = Some(point);
                }
            }
            placement.aliases.extend(module.aliases.iter().cloned());
        }
        placement.probes = self.links.len() - links_before;
        Ok(placement)
    }

    /// Attaches everything a traced process gets to process `pid`: the probes of `plan` and
    /// the stops of `probes` (see [`ProcessProbes`]). A missing loader hook only costs the
    /// first stacks' completeness: it is not an error.
    pub fn attach_process(
        &mut self,
        probes: &ProcessProbes,
        plan: &AllocatorPlan,
        pid: u32,
    ) -> Result<Placement, ProbeError> {
        let placement = self.attach_allocator(plan, pid, probes.free_offset_override)?;
        if let Some(libc) = &probes.exit_stop {
            self.attach_exit_stop(libc, pid)?;
        }
        if let Some(loader) = &probes.loader_stop {
            let _ = self.attach_loader_stop(loader, pid);
        }
        Ok(placement)
    }

    /// Attaches the programs that follow process trees: the `sched_process_fork`,
    /// `sched_process_exec` and `sched_process_exit` raw tracepoints, and, when `libc` is
    /// given, the return probe on its `_Fork` (`fork` in a glibc older than 2.34), in every
    /// process, where a new followed process stops. They act only on processes in
    /// `TRACED_PROCESSES`. Without the fork probe, new processes are traced from their exec.
    pub fn attach_process_tracking(&mut self, libc: Option<&Path>) -> Result<(), ProbeError> {
        for (name, tracepoint) in [
            (abi::program::PROCESS_FORK, "sched_process_fork"),
            (abi::program::PROCESS_EXEC, "sched_process_exec"),
            (abi::program::PROCESS_EXIT, "sched_process_exit"),
        ] {
            let program = self
                .ebpf
                .program_mut(name)
                .ok_or_else(|| ProbeError::Load(format!("program {name} missing")))?;
            let raw: &mut aya::programs::RawTracePoint = program
                .try_into()
                .map_err(|e| ProbeError::Load(format!("program {name}: {e}")))?;
            raw.load().map_err(load_error)?;
            raw.attach(tracepoint).map_err(|e| ProbeError::Attach {
                symbol: tracepoint.to_owned(),
                library: PathBuf::from("the kernel"),
                message: error_chain(&e),
            })?;
        }
        self.tracking = true;
        if let Some(libc) = libc {
            let elf = ElfFile::read(libc)?;
            let (symbol, fork) = ["_Fork", "fork"]
                .into_iter()
                .find_map(|name| elf.function(name).map(|f| (name, f)))
                .ok_or_else(|| ProbeError::MissingSymbol {
                    library: libc.to_owned(),
                    symbol: "_Fork".to_owned(),
                })?;
            // Every process: the new one is not traced yet when it returns from `_Fork`.
            self.attach_at(abi::program::FORK_RETURN, symbol, fork.file_offset, libc, 0)?;
        }
        Ok(())
    }

    /// Detaches the process-tracking programs (no process is stopped by them afterwards).
    pub fn detach_process_tracking(&mut self) {
        if !self.tracking {
            return;
        }
        self.tracking = false;
        drop(self.take_links(Some(abi::program::FORK_RETURN)));
        for name in [
            abi::program::PROCESS_FORK,
            abi::program::PROCESS_EXEC,
            abi::program::PROCESS_EXIT,
        ] {
            if let Some(aya::programs::Program::RawTracePoint(program)) =
                self.ebpf.program_mut(name)
            {
                // Unloading closes the program's links: the hooks are gone when it returns.
                let _ = program.unload();
            }
        }
    }

    /// Probes libc's `exit` so that a launched target stops there (SIGSTOP) until the recorder
    /// has read its mappings: a short-lived program would otherwise be gone, maps and all,
    /// before its last stacks are resolved. Only for targets the recorder resumes itself.
    pub fn attach_exit_stop(&mut self, libc: &Path, pid: u32) -> Result<(), ProbeError> {
        let elf = ElfFile::read(libc)?;
        let exit = elf
            .function("exit")
            .ok_or_else(|| ProbeError::MissingSymbol {
                library: libc.to_owned(),
                symbol: "exit".to_owned(),
            })?;
        self.attach_at(
            abi::program::EXIT_ENTRY,
            "exit",
            exit.file_offset,
            libc,
            pid,
        )
    }

    /// Probes the entry point of a launched executable with the same stopping program as
    /// `attach_exit_stop`: the target stops once the dynamic loader has mapped its libraries,
    /// before it runs any of its own code, so the recorder loads their unwind tables first.
    pub fn attach_entry_stop(&mut self, executable: &Path, pid: u32) -> Result<(), ProbeError> {
        let elf = ElfFile::read(executable)?;
        let entry = elf
            .entry_point_offset()
            .ok_or_else(|| ProbeError::MissingSymbol {
                library: executable.to_owned(),
                symbol: "entry point".to_owned(),
            })?;
        self.attach_at(
            abi::program::EXIT_ENTRY,
            "entry point",
            entry,
            executable,
            pid,
        )
    }

    /// Probes the dynamic loader's debugger hook `_dl_debug_state` in `loader` (ld.so), which
    /// it calls once the libraries of the program, and later of each `dlopen`, are mapped
    /// and before their constructors run, with the same stopping program as
    /// `attach_exit_stop`: the recorder loads the new libraries' unwind tables before any of
    /// their code allocates.
    pub fn attach_loader_stop(&mut self, loader: &Path, pid: u32) -> Result<(), ProbeError> {
        let hook = ElfFile::read(loader)?
            .function("_dl_debug_state")
            .ok_or_else(|| ProbeError::MissingSymbol {
                library: loader.to_owned(),
                symbol: "_dl_debug_state".to_owned(),
            })?;
        self.attach_at(
            abi::program::EXIT_ENTRY,
            "_dl_debug_state",
            hook.file_offset,
            loader,
            pid,
        )
    }

    fn take_links(&mut self, only: Option<&str>) -> Vec<UProbeLink> {
        let mut taken = Vec::new();
        let mut kept = Vec::new();
        for (program, link_id) in std::mem::take(&mut self.links) {
            if only.is_some_and(|name| name != program) {
                kept.push((program, link_id));
                continue;
            }
            if let Some(Ok(uprobe)) = self.ebpf.program_mut(program).map(<&mut UProbe>::try_from)
                && let Ok(link) = uprobe.take_link(link_id)
            {
                taken.push(link);
            }
        }
        self.links = kept;
        taken
    }

    /// Detaches the exit probe only: after it, no target can stop itself at exit any more.
    pub fn detach_exit_stop(&mut self) {
        drop(self.take_links(Some(abi::program::EXIT_ENTRY)));
    }

    /// Detaches every probe (events already in the ring buffer stay there). The kernel waits
    /// for each probe to retire (about 100 ms apiece here, one after the other).
    pub fn detach_all(&mut self) {
        drop(self.take_links(None));
    }

    /// Detaches every probe from a forked helper process, so the recorder can exit at once:
    /// the helper holds the last references and pays the kernel's wait. The recorder drops its
    /// own references first and only then lets the helper start (by closing a pipe): a link
    /// the helper closed first would make the recorder's close the last one, and the
    /// recorder's exit would wait for it (seconds in all, varying from run to run). Falls back
    /// to detaching here.
    pub fn detach_in_background(mut self) {
        let mut go = [0; 2];
        if unsafe { libc::pipe2(go.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
            self.detach_all();
            return;
        }
        // SAFETY: the recorder runs no other thread now; the helper only closes descriptors,
        // frees memory and exits.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            unsafe {
                libc::close(go[1]);
                let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
                if null >= 0 {
                    // Nobody waiting for the recorder's output waits for the helper.
                    libc::dup2(null, 0);
                    libc::dup2(null, 1);
                    libc::dup2(null, 2);
                }
                libc::setsid();
                // End of file: the recorder has dropped its references (or died).
                let mut byte = 0u8;
                while libc::read(go[0], (&raw mut byte).cast(), 1) < 0
                    && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted
                {
                }
            }
            self.detach_all();
            unsafe { libc::_exit(0) };
        }
        unsafe { libc::close(go[0]) };
        if pid < 0 {
            unsafe { libc::close(go[1]) };
            self.detach_all();
            return;
        }
        // The helper holds every link too: dropping ours only closes descriptors.
        drop(self.take_links(None));
        unsafe { libc::close(go[1]) };
        std::mem::forget(self);
    }
}

impl Drop for Probes {
    fn drop(&mut self) {
        self.detach_all();
    }
}

/// An error with its sources, on one line.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// The `io::Error`s in an error's chain of causes, outermost first.
fn io_errors<'e>(
    error: &'e (dyn std::error::Error + 'static),
) -> impl Iterator<Item = &'e std::io::Error> {
    std::iter::successors(Some(error), |e| e.source())
        .filter_map(|e| e.downcast_ref::<std::io::Error>())
}

/// Whether an error, or one of its causes, is the system's ESRCH ("No such process").
fn is_no_such_process(error: &(dyn std::error::Error + 'static)) -> bool {
    io_errors(error).any(|io| io.raw_os_error() == Some(libc::ESRCH))
}

/// Whether `pid` names a live process (0, "every process", always does).
fn process_exists(pid: u32) -> bool {
    // SAFETY: signal 0 only checks that the process exists and may be signalled.
    pid == 0 || unsafe { libc::kill(pid as i32, 0) } == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use aya::EbpfError;
    use aya::maps::MapError;
    use aya::programs::ProgramError;
    use aya::sys::SyscallError;

    fn map_creation_failed(errno: i32) -> EbpfError {
        EbpfError::MapError(MapError::CreateError {
            name: "EVENTS".to_owned(),
            io_error: std::io::Error::from_raw_os_error(errno),
        })
    }

    #[test]
    fn load_errors_are_classified_by_errno() {
        assert!(matches!(
            load_error(map_creation_failed(libc::EPERM)),
            ProbeError::PermissionDenied(_)
        ));
        assert!(matches!(
            load_error(map_creation_failed(libc::EINVAL)),
            ProbeError::Load(_)
        ));
        // A program's load: SyscallError is transparent, its io::Error is the next cause.
        let syscall = |errno| {
            ProgramError::SyscallError(SyscallError {
                call: "bpf_prog_load",
                io_error: std::io::Error::from_raw_os_error(errno),
            })
        };
        assert!(matches!(
            load_error(syscall(libc::EPERM)),
            ProbeError::PermissionDenied(_)
        ));
        assert!(matches!(
            load_error(EbpfError::ProgramError(syscall(libc::EACCES))),
            ProbeError::PermissionDenied(_)
        ));
        assert!(matches!(
            load_error(syscall(libc::E2BIG)),
            ProbeError::Load(_)
        ));
        // The message is aya's, as before.
        let ProbeError::Load(message) = load_error(map_creation_failed(libc::EINVAL)) else {
            panic!("not a load error");
        };
        assert_eq!(message, "map error: failed to create map `EVENTS`");
    }

    #[test]
    fn no_such_process_is_found_among_the_causes() {
        let esrch = ProgramError::SyscallError(SyscallError {
            call: "perf_event_open",
            io_error: std::io::Error::from_raw_os_error(libc::ESRCH),
        });
        assert!(is_no_such_process(&esrch));
        let eperm = ProgramError::SyscallError(SyscallError {
            call: "perf_event_open",
            io_error: std::io::Error::from_raw_os_error(libc::EPERM),
        });
        assert!(!is_no_such_process(&eperm));
    }
}
