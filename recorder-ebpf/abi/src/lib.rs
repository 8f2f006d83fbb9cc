//! The contract between memtrail's eBPF program (`recorder-ebpf/program`) and the user-space
//! recorder (`recorder/`).
//!
//! This crate owns every byte layout and name that crosses the kernel/user boundary: the event
//! written into the ring buffer, the per-thread pending-call record, map and global names,
//! lost-counter indices and API numbers. It holds only `#[repr(C)]` `Copy` types and constants,
//! builds for `bpfel-unknown-none` (no_std, no dependencies) and must not grow logic: any change
//! here changes the committed object (`recorder-ebpf/memtrail.bpf.o`), which must be rebuilt with
//! `recorder-ebpf/build.sh`.
//!
//! API numbers deliberately equal the discriminants of `memtrail_format::AllocApi` and
//! `memtrail_format::FreeApi`, so the recorder converts them with `from_u8`.
#![no_std]

/// Allocation API numbers carried in [`Event::api`] for [`EVENT_ALLOC`] and [`EVENT_REALLOC`].
pub mod alloc_api {
    pub const MALLOC: u8 = 0;
    pub const CALLOC: u8 = 1;
    pub const REALLOC: u8 = 2;
    pub const REALLOCARRAY: u8 = 3;
    pub const POSIX_MEMALIGN: u8 = 4;
    pub const ALIGNED_ALLOC: u8 = 5;
    pub const MEMALIGN: u8 = 6;
    pub const VALLOC: u8 = 7;
    pub const PVALLOC: u8 = 8;
    pub const MMAP: u8 = 9;
    /// jemalloc's `mallocx(size, flags)`.
    pub const MALLOCX: u8 = 10;
    /// jemalloc's `rallocx(ptr, size, flags)`: a resize that may move the block.
    pub const RALLOCX: u8 = 11;
    /// jemalloc's `xallocx(ptr, size, extra, flags)`: a resize in place; the block's new size
    /// is what it returns.
    pub const XALLOCX: u8 = 12;
    /// C++ `operator new` defined by an allocator (jemalloc, tcmalloc, mimalloc's `mi_new`).
    pub const OPERATOR_NEW: u8 = 13;
    /// Only in [`super::PendingCall::api`]: a call that is entered and returns like the others
    /// but is not reported (an mmap of a file).
    pub const NOT_REPORTED: u8 = 0xff;
}

/// Release API numbers carried in [`Event::api`] for [`EVENT_FREE`].
pub mod free_api {
    pub const FREE: u8 = 0;
    pub const MUNMAP: u8 = 1;
    /// jemalloc's sized `sdallocx(ptr, size, flags)`.
    pub const SDALLOCX: u8 = 2;
    /// jemalloc's `dallocx(ptr, flags)`.
    pub const DALLOCX: u8 = 3;
    /// C++ `operator delete` defined by an allocator.
    pub const OPERATOR_DELETE: u8 = 4;
}

/// [`Event::kind`]: a block was allocated (`address`, `size`, `stack_id`).
pub const EVENT_ALLOC: u8 = 1;
/// [`Event::kind`]: a block was released (`address`; `size` is the munmap length, else 0).
pub const EVENT_FREE: u8 = 2;
/// [`Event::kind`]: `old_address` was resized into `address` (realloc, reallocarray).
pub const EVENT_REALLOC: u8 = 3;
/// [`Event::kind`]: process `tgid` was forked by a followed process, `old_address` (fork,
/// vfork, clone without `CLONE_THREAD`). `api` is [`PROCESS_FOLLOWED`] (it will stop with
/// SIGSTOP, listed in [`STOPPED_PROCESSES_MAP`], at the return of `_Fork` or at its exec,
/// until user space has attached its probes) or [`PROCESS_TABLE_FULL`] (not traced:
/// [`TRACED_PROCESSES_MAP`] is full).
pub const EVENT_PROCESS_START: u8 = 4;
/// [`Event::kind`]: traced process `tgid` replaced its image (execve); it is stopped with
/// SIGSTOP (in [`STOPPED_PROCESSES_MAP`]) before it runs the new image.
pub const EVENT_PROCESS_EXEC: u8 = 5;
/// [`Event::kind`]: traced process `tgid` ended (its thread group leader exited); `size` is
/// the kernel's exit code (a wait status: code << 8, or the signal).
pub const EVENT_PROCESS_EXIT: u8 = 6;

/// [`Event::kind`]: process `tgid` was stopped with SIGSTOP and listed in
/// [`STOPPED_PROCESSES_MAP`]; `api` is the `STOP_*` reason. Tells user space to look at the
/// map (it is not scanned otherwise: walking an empty hash map's buckets on every poll cost
/// more than the events themselves).
pub const EVENT_PROCESS_STOPPED: u8 = 7;

/// [`Event::api`] of [`EVENT_PROCESS_START`]: the new process is traced.
pub const PROCESS_FOLLOWED: u8 = 0;
/// [`Event::api`] of [`EVENT_PROCESS_START`]: the new process could not be traced because
/// [`TRACED_PROCESSES_MAP`] is full.
pub const PROCESS_TABLE_FULL: u8 = 1;
/// [`Event::api`] of [`EVENT_PROCESS_START`]: process `tgid` exec'ed the executable of
/// [`GLOBAL_EXE_INODE`] (`--exe`) and is traced from there (no parent: `old_address` 0); it is
/// stopped (reason [`STOP_EXEC`]) before the new image runs. No [`EVENT_PROCESS_EXEC`] follows.
pub const PROCESS_FOUND: u8 = 2;

/// One allocator call, as the eBPF program writes it into the ring buffer [`EVENTS_MAP`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Event {
    /// `bpf_ktime_get_ns()` (CLOCK_MONOTONIC) when the call returned (entry for frees).
    pub time_ns: u64,
    /// The block returned (alloc, realloc) or released (free).
    pub address: u64,
    /// For [`EVENT_REALLOC`]: the block passed in (0 when realloc behaved as malloc).
    pub old_address: u64,
    /// Requested size in bytes (nmemb * size for calloc and reallocarray, saturating).
    pub size: u64,
    /// Where the stack is, by [`Event::stack_kind`]: the id in [`STACKS_MAP`]
    /// ([`STACK_FRAME_POINTER`]) or the key in [`DWARF_STACKS_MAP`] ([`STACK_TABLES`]).
    /// Frees carry no stack.
    pub stack_key: u64,
    /// Kernel thread id (the low half of `bpf_get_current_pid_tgid`).
    pub tid: u32,
    /// Kernel process id (thread group id, the high half of `bpf_get_current_pid_tgid`).
    pub tgid: u32,
    /// [`EVENT_ALLOC`], [`EVENT_FREE`], [`EVENT_REALLOC`] or a process event
    /// ([`EVENT_PROCESS_START`], [`EVENT_PROCESS_EXEC`], [`EVENT_PROCESS_EXIT`]).
    pub kind: u8,
    /// One of [`alloc_api`] or [`free_api`], depending on `kind`.
    pub api: u8,
    /// [`STACK_NONE`], [`STACK_FRAME_POINTER`] or [`STACK_TABLES`].
    pub stack_kind: u8,
    pub padding: u8,
    pub padding_wide: u32,
}

/// [`Event::stack_kind`]: no stack (frees, `--no-stacks`, or capture failed: the loss is then
/// counted under [`LOST_STACK_UNAVAILABLE`]).
pub const STACK_NONE: u8 = 0;
/// [`Event::stack_kind`]: `stack_key` is a `bpf_get_stackid` id in [`STACKS_MAP`] (the
/// kernel's frame-pointer walk).
pub const STACK_FRAME_POINTER: u8 = 1;
/// [`Event::stack_kind`]: `stack_key` is the hash of the frames unwound by the program from
/// the unwind tables ([`UNWIND_ROWS_MAP`]), the key of [`DWARF_STACKS_MAP`].
pub const STACK_TABLES: u8 = 2;

/// Size of [`Event`] in the ring buffer (checked at compile time on both sides).
pub const EVENT_SIZE: usize = 56;
const _: () = assert!(core::mem::size_of::<Event>() == EVENT_SIZE);

/// What the entry probe of an allocation function remembers until its return probe fires:
/// one slot per thread, in [`THREAD_SLOTS_MAP`] at index `tid % THREAD_SLOTS_CAPACITY` when
/// the thread owns that entry, else in [`PENDING_CALLS_MAP`] keyed by `pid_tgid`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PendingCall {
    /// Stack pointer at function entry. Tells a call nested inside another probed call (for
    /// example glibc's realloc(NULL, n) calling malloc) from the outer one: nested calls run
    /// on a lower stack pointer and are not reported.
    pub entry_sp: u64,
    pub size: u64,
    /// realloc/reallocarray: the block passed in.
    pub old_address: u64,
    /// posix_memalign: where the result pointer is stored (`void **memptr`).
    pub result_slot: u64,
    /// The thread owning the slot (kernel thread id), with [`OWNER_BUSY`] set while its call
    /// is pending. Entries of [`THREAD_SLOTS_MAP`] change owner only from idle, by
    /// compare-and-swap (64-bit: the BPF instruction set's generic CPU has no 32-bit one).
    pub owner: u64,
    /// One of [`alloc_api`].
    pub api: u8,
    /// Probed functions entered by a tail call from this one at the same stack pointer (glibc's
    /// realloc(NULL, n) jumps to malloc): each shares this call's return, whose first
    /// `tail_calls` return-probe hits are skipped.
    pub tail_calls: u8,
    pub padding: u16,
    pub padding_wide: u32,
}

/// [`PendingCall::owner`]: the owner's call is pending (its entry seen, its return not yet).
pub const OWNER_BUSY: u64 = 1 << 32;

const _: () = assert!(core::mem::size_of::<PendingCall>() == 48);

/// Ring buffer of [`Event`]s.
pub const EVENTS_MAP: &str = "EVENTS";
/// `BPF_MAP_TYPE_STACK_TRACE` of user stacks, captured in the return probes.
pub const STACKS_MAP: &str = "STACKS";
/// Array of [`PendingCall`]s indexed by thread id & [`GLOBAL_THREAD_SLOTS_MASK`], each owned
/// by the thread in its `owner` word; an idle entry may be taken by another thread of the same
/// index.
pub const THREAD_SLOTS_MAP: &str = "THREAD_SLOTS";
/// Default entries of [`THREAD_SLOTS_MAP`] (a power of two; 2.5 MiB of kernel memory).
pub const THREAD_SLOTS_CAPACITY: u32 = 1 << 16;
/// Global (`u32`): entries of [`THREAD_SLOTS_MAP`] minus one (its size is a power of two).
pub const GLOBAL_THREAD_SLOTS_MASK: &str = "THREAD_SLOTS_MASK";
/// LRU hash map `u64 pid_tgid -> PendingCall`: the slots of threads whose entry of
/// [`THREAD_SLOTS_MAP`] another thread held busy; rewritten in place.
pub const PENDING_CALLS_MAP: &str = "PENDING_CALLS";
/// Per-CPU array of `u64` loss counters, indexed by the `LOST_*` constants.
pub const LOST_COUNTERS_MAP: &str = "LOST_COUNTERS";
/// Hash map `u32 tgid -> u32 reason` (`STOP_*`): the processes the program stopped with
/// SIGSTOP and user space has not resumed yet. An entry is written before the signal is sent;
/// user space reads the process's maps (and attaches probes to a new process), deletes the
/// entry and sends SIGCONT. The recorder's watchdog resumes whatever is left here if the
/// recorder dies.
pub const STOPPED_PROCESSES_MAP: &str = "STOPPED_PROCESSES";
/// [`STOPPED_PROCESSES_MAP`] reason: a stopping uprobe (`exit`, the loader's debugger hook,
/// an entry point).
pub const STOP_PROBE: u32 = 1;
/// [`STOPPED_PROCESSES_MAP`] reason: a new process of a followed one.
pub const STOP_START: u32 = 2;
/// [`STOPPED_PROCESSES_MAP`] reason: an exec.
pub const STOP_EXEC: u32 = 3;
/// Capacity of [`STOPPED_PROCESSES_MAP`].
pub const STOPPED_PROCESSES_CAPACITY: u32 = 4096;
/// Hash map `u32 tgid -> u32 flags`: the traced processes whose execs and exits are reported
/// and, with [`TRACED_FOLLOW`], whose new processes are followed. User space inserts the
/// processes it traces from the start; the program inserts followed children and removes
/// processes that end.
pub const TRACED_PROCESSES_MAP: &str = "TRACED_PROCESSES";
/// [`TRACED_PROCESSES_MAP`] flag: processes this one starts are traced too (and inherit it).
pub const TRACED_FOLLOW: u32 = 1;
/// Default capacity of [`TRACED_PROCESSES_MAP`] (processes traced at once).
pub const TRACED_PROCESSES_CAPACITY: u32 = 1024;
/// Hash map `u32 tgid -> u32 slot`: which slot of the unwinder's per-process mapping lists
/// ([`UNWIND_MAPPINGS_MAP`], [`UNWIND_STATE_MAP`]) describes the process. The process in
/// global [`GLOBAL_FIRST_TGID`] uses slot 0 without a lookup.
pub const UNWIND_SLOTS_MAP: &str = "UNWIND_SLOTS";
/// Default number of per-process slots of the unwinder: processes unwound with the tables at
/// once. Stacks of processes beyond it stop at the allocator's caller (marked truncated);
/// the recorder says so.
pub const UNWIND_PROCESS_SLOTS: u32 = 64;
/// Global (`u32`): the process that uses unwinder slot 0 (the first traced process).
pub const GLOBAL_FIRST_TGID: &str = "FIRST_TGID";
/// Globals (`u32`): byte offsets in `struct task_struct` of `pid`, `tgid` and `exit_code`,
/// read by user space from the kernel's BTF (0: not set, the process-tracking programs do
/// nothing).
pub const GLOBAL_TASK_PID_OFFSET: &str = "TASK_PID_OFFSET";
pub const GLOBAL_TASK_TGID_OFFSET: &str = "TASK_TGID_OFFSET";
pub const GLOBAL_TASK_EXIT_CODE_OFFSET: &str = "TASK_EXIT_CODE_OFFSET";
/// Globals for `--exe`: the executable's inode number (`u64`, 0: off) and device (`u32`, the
/// kernel's `dev_t` encoding, major << 20 | minor), the flags a process exec'ing it is traced
/// with (`u32`, [`TRACED_FOLLOW`] or 0), and the offsets of `linux_binprm.file`,
/// `file.f_inode`, `inode.i_ino`, `inode.i_sb` and `super_block.s_dev` (`u32` each, from the
/// kernel's BTF).
pub const GLOBAL_EXE_INODE: &str = "EXE_INODE";
pub const GLOBAL_EXE_DEVICE: &str = "EXE_DEVICE";
pub const GLOBAL_EXE_FLAGS: &str = "EXE_FLAGS";
pub const GLOBAL_BINPRM_FILE_OFFSET: &str = "BINPRM_FILE_OFFSET";
pub const GLOBAL_FILE_INODE_OFFSET: &str = "FILE_INODE_OFFSET";
pub const GLOBAL_INODE_INO_OFFSET: &str = "INODE_INO_OFFSET";
pub const GLOBAL_INODE_SB_OFFSET: &str = "INODE_SB_OFFSET";
pub const GLOBAL_SB_DEV_OFFSET: &str = "SB_DEV_OFFSET";
/// Hash map `u32 tgid -> u32 parent tgid`: traced processes forked and not stopped yet
/// (they stop at the return of `_Fork` or at their exec).
pub const PENDING_PROCESSES_MAP: &str = "PENDING_PROCESSES";

/// Loss counter: an event could not be reserved in the ring buffer (it was full).
pub const LOST_RING_BUFFER_FULL: u32 = 0;
/// Loss counter: no stack could be stored (`bpf_get_stackid` failed: stack table bucket taken
/// or unreadable stack; or [`DWARF_STACKS_MAP`] full). The event itself was still delivered,
/// with [`STACK_NONE`].
pub const LOST_STACK_UNAVAILABLE: u32 = 1;
/// Loss counter: a return probe fired with no matching entry (typically a call already in
/// progress when the probes were attached).
pub const LOST_MISSING_ENTRY: u32 = 2;
/// Loss counter: the entry state could not be stored ([`PENDING_CALLS_MAP`] full).
pub const LOST_PENDING_TABLE_FULL: u32 = 3;
/// Loss counter: a sampled allocation was not reported because its address could not be
/// remembered ([`SAMPLED_BLOCKS_MAP`] full); reporting it would make its free go unseen.
pub const LOST_SAMPLE_TABLE_FULL: u32 = 4;
/// Number of loss counters.
pub const LOST_COUNTER_COUNT: u32 = 5;

/// Hash map `u64 address -> u64 size` of the sampled blocks still live (only used when
/// [`GLOBAL_SAMPLE_BYTES`] is set): frees of other addresses are not reported.
pub const SAMPLED_BLOCKS_MAP: &str = "SAMPLED_BLOCKS";
/// LRU hash map `u64 pid_tgid -> i64`: bytes each thread may still allocate before its next
/// sampled allocation (only used when [`GLOBAL_SAMPLE_BYTES`] is set).
pub const SAMPLE_COUNTDOWN_MAP: &str = "SAMPLE_COUNTDOWN";
/// Default capacity of [`SAMPLED_BLOCKS_MAP`] when sampling (sampled blocks live at once).
pub const SAMPLED_BLOCKS_CAPACITY: u32 = 1 << 18;
/// Capacity of [`SAMPLE_COUNTDOWN_MAP`] when sampling (threads; the least recently
/// allocating thread's countdown is redrawn when more allocate).
pub const SAMPLE_COUNTDOWN_CAPACITY: u32 = 16384;
/// Largest `--sample-bytes` (keeps the countdown arithmetic within 64 bits).
pub const MAX_SAMPLE_BYTES: u64 = 1 << 40;

/// Default capacity of [`PENDING_CALLS_MAP`] (threads inside an allocator call at once).
pub const PENDING_CALLS_CAPACITY: u32 = 16384;
/// Default capacity of [`STACKS_MAP`] (distinct stacks); the recorder may override it.
pub const STACKS_CAPACITY: u32 = 16384;
/// Frames the kernel stores per stack (`PERF_MAX_STACK_DEPTH`); the recorder truncates to
/// `--stack-depth`.
pub const MAX_STACK_DEPTH: usize = 127;
/// Default ring buffer size in bytes (a power of two, a multiple of the page size).
pub const DEFAULT_RING_BUFFER_BYTES: u32 = 16 << 20;

/// Global (`u32`): only this thread group (process) is traced; 0 traces every process the
/// probes are scoped to.
pub const GLOBAL_TARGET_TGID: &str = "TARGET_TGID";
/// Global (`u64`): allocations smaller than this many bytes are not reported
/// (reallocs always are, so blocks are never lost track of).
pub const GLOBAL_MIN_SIZE: &str = "MIN_SIZE";
/// Global (`u64`): wake the reader only once this many bytes are waiting in the ring buffer;
/// below it events are submitted with `BPF_RB_NO_WAKEUP` and the reader polls.
pub const GLOBAL_WAKEUP_THRESHOLD: &str = "WAKEUP_THRESHOLD";

/// Global (`u64`): 0 reports every allocation; N > 0 reports on average one allocation per N
/// bytes allocated (per thread, an exponentially distributed byte countdown with mean N, as
/// jemalloc samples), and only the frees and reallocs of sampled blocks.
pub const GLOBAL_SAMPLE_BYTES: &str = "SAMPLE_BYTES";
/// Global (`u32`): [`CAPTURE_STACKS`] (the default) captures a stack with every allocation;
/// [`CAPTURE_NONE`] and [`CAPTURE_READ_ONLY`] capture none (every event carries
/// [`STACK_NONE`] and no loss is counted for it), for measuring what stack capture costs.
pub const GLOBAL_CAPTURE_STACKS: &str = "CAPTURE_STACKS";
/// [`GLOBAL_CAPTURE_STACKS`]: no stacks.
pub const CAPTURE_NONE: u32 = 0;
/// [`GLOBAL_CAPTURE_STACKS`]: a stack with every allocation.
pub const CAPTURE_STACKS: u32 = 1;
/// [`GLOBAL_CAPTURE_STACKS`], for the benchmark: no stacks, but every allocation copies
/// [`STACK_READ_ONLY_BYTES`] of its user stack, the one read a recognized walk still makes
/// to verify it (the lower bound of any stack that is checked against the memory it came from).
pub const CAPTURE_READ_ONLY: u32 = 2;
/// Bytes [`CAPTURE_READ_ONLY`] copies (a typical recognized walk checks a few hundred).
pub const STACK_READ_ONLY_BYTES: u64 = 256;

/// Global (`u32`): when 1, `exit_entry` stops the traced process with SIGSTOP as it enters
/// `exit()`, so the recorder can read its mappings before they are gone (launch mode, where
/// the recorder is the parent and resumes it).
pub const GLOBAL_STOP_AT_EXIT: &str = "STOP_AT_EXIT";

/// `MAP_ANONYMOUS` on Linux x86-64 and aarch64: only anonymous mmaps are traced.
pub const MAP_ANONYMOUS: u64 = 0x20;

/// Global (`u32`): 1 unwinds user stacks in the program from the tables user space loads
/// ([`UNWIND_ROWS_MAP`], [`UNWIND_MAPPINGS_MAP`]); 0 uses the kernel's frame-pointer walk
/// (`bpf_get_stackid`).
pub const GLOBAL_UNWIND_TABLES: &str = "UNWIND_TABLES";

/// Most frames the table unwinder walks per stack; deeper stacks are marked truncated.
pub const UNWIND_MAX_FRAMES: usize = 64;
/// Executable mappings of one process known to the unwinder: each slot of
/// [`UNWIND_MAPPINGS_MAP`] holds this many (sorted by start; the first `count` of the slot's
/// [`UNWIND_STATE_MAP`] entry are valid).
pub const UNWIND_MAPPINGS_CAPACITY: u32 = 512;
/// Default capacity of [`UNWIND_ROWS_MAP`] (rows of every module's table together).
pub const UNWIND_ROWS_CAPACITY: u32 = 1 << 21;
/// Binary-search steps over the rows of one module: modules with more rows than
/// 2^`UNWIND_ROW_SEARCH_STEPS` are not given a table.
pub const UNWIND_ROW_SEARCH_STEPS: u32 = 21;
/// Binary-search steps over the mappings (2^9 = [`UNWIND_MAPPINGS_CAPACITY`]).
pub const UNWIND_MAPPING_SEARCH_STEPS: u32 = 9;

/// Array of [`UnwindRow`]: every loaded module's rows, each module's sorted by `pc`.
pub const UNWIND_ROWS_MAP: &str = "UNWIND_ROWS";
/// Array of [`UnwindMapping`]: slot `s` (one process) is entries
/// `s * UNWIND_MAPPINGS_CAPACITY ..`, sorted by `start`.
pub const UNWIND_MAPPINGS_MAP: &str = "UNWIND_MAPPINGS";
/// Array of `u32` pairs, one per slot (`2 * s`, `2 * s + 1`): how many entries of the slot
/// in [`UNWIND_MAPPINGS_MAP`] are valid, and a generation user space sets after every change
/// of the slot's mapping list, unique across slots (the program caches the row of each return
/// address it unwinds and each walk, valid for one generation, hence one process).
pub const UNWIND_STATE_MAP: &str = "UNWIND_STATE";
/// Hash map `u64 stack hash -> DwarfStack` of stacks unwound with the tables. User space
/// deletes each entry once it has read it (and remembers the hash).
pub const DWARF_STACKS_MAP: &str = "DWARF_STACKS";
/// Per-CPU array of one [`DwarfStack`]: where a stack is built before it is stored.
pub const UNWIND_SCRATCH_MAP: &str = "UNWIND_SCRATCH";

/// [`UnwindRow::cfa_kind`]: the caller's frame is unknown here; stop, stack truncated.
pub const CFA_UNKNOWN: u8 = 0;
/// CFA = rsp + `cfa_offset`.
pub const CFA_RSP: u8 = 1;
/// CFA = rbp + `cfa_offset`.
pub const CFA_RBP: u8 = 2;
/// The PLT expression: CFA = rsp + `cfa_offset`, plus 8 when (rip & 15) >= `rbp_offset`
/// (a PLT entry pushes once after that many bytes).
pub const CFA_PLT: u8 = 3;
/// The outermost frame (return address undefined, as in `_start`): the stack is complete.
pub const CFA_END: u8 = 4;
/// No CFI covers this address (a module without CFI, or code no FDE covers): the
/// frame-pointer rule (CFA = rbp + 16, rbp saved at CFA - 16).
pub const CFA_FRAME_POINTER: u8 = 5;

/// [`UnwindRow::rbp_kind`]: rbp is the same in the caller.
pub const RBP_SAME: u8 = 0;
/// The caller's rbp is saved at CFA + `rbp_offset`.
pub const RBP_AT_CFA: u8 = 1;
/// The caller's rbp cannot be recovered (a later rbp-based CFA stops the walk).
pub const RBP_UNKNOWN: u8 = 2;

/// One row of an unwind table: from `pc` (a module address, as in its ELF file) up to the
/// next row's `pc`, how to find the caller's frame. The return address is always at CFA - 8
/// (x86-64); rows whose CFI says otherwise are [`CFA_UNKNOWN`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UnwindRow {
    pub pc: u32,
    pub cfa_offset: i32,
    pub rbp_offset: i16,
    pub cfa_kind: u8,
    pub rbp_kind: u8,
}

const _: () = assert!(core::mem::size_of::<UnwindRow>() == 12);

/// One executable mapping of the target as the unwinder sees it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UnwindMapping {
    /// Address range `start..end` in the process.
    pub start: u64,
    pub end: u64,
    /// Process address minus module address (what its table's `pc`s are relative to).
    pub bias: u64,
    /// The module's rows are `rows_start..rows_start + rows_len` of [`UNWIND_ROWS_MAP`];
    /// `rows_len == 0`: no table, frame pointers are followed.
    pub rows_start: u32,
    pub rows_len: u32,
}

/// A stack unwound with the tables, as stored in [`DWARF_STACKS_MAP`].
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DwarfStack {
    /// Valid entries of `frames`.
    pub depth: u32,
    /// [`DWARF_STACK_TRUNCATED`] and [`DWARF_STACK_USED_FRAME_POINTERS`].
    pub flags: u32,
    /// Return addresses, innermost (the allocator's caller) first.
    pub frames: [u64; UNWIND_MAX_FRAMES],
}

/// [`DwarfStack::flags`]: the walk stopped before the outermost frame (depth limit, no table
/// or unreadable memory).
pub const DWARF_STACK_TRUNCATED: u32 = 1;
/// [`DwarfStack::flags`]: some frame was unwound with the frame-pointer rule.
pub const DWARF_STACK_USED_FRAME_POINTERS: u32 = 2;

/// Names of the eBPF programs in the object.
pub mod program {
    pub const MALLOC_ENTRY: &str = "malloc_entry";
    pub const CALLOC_ENTRY: &str = "calloc_entry";
    pub const REALLOC_ENTRY: &str = "realloc_entry";
    pub const REALLOCARRAY_ENTRY: &str = "reallocarray_entry";
    pub const POSIX_MEMALIGN_ENTRY: &str = "posix_memalign_entry";
    pub const ALIGNED_ALLOC_ENTRY: &str = "aligned_alloc_entry";
    pub const MEMALIGN_ENTRY: &str = "memalign_entry";
    pub const VALLOC_ENTRY: &str = "valloc_entry";
    pub const PVALLOC_ENTRY: &str = "pvalloc_entry";
    pub const MMAP_ENTRY: &str = "mmap_entry";
    pub const MALLOCX_ENTRY: &str = "mallocx_entry";
    pub const RALLOCX_ENTRY: &str = "rallocx_entry";
    pub const XALLOCX_ENTRY: &str = "xallocx_entry";
    pub const OPERATOR_NEW_ENTRY: &str = "operator_new_entry";
    /// One return probe shared by every allocation function: the pending call says which.
    pub const ALLOC_RETURN: &str = "alloc_return";
    pub const FREE_ENTRY: &str = "free_entry";
    pub const MUNMAP_ENTRY: &str = "munmap_entry";
    pub const SDALLOCX_ENTRY: &str = "sdallocx_entry";
    pub const DALLOCX_ENTRY: &str = "dallocx_entry";
    pub const OPERATOR_DELETE_ENTRY: &str = "operator_delete_entry";
    /// On libc's `exit`: see [`super::GLOBAL_STOP_AT_EXIT`].
    pub const EXIT_ENTRY: &str = "exit_entry";
    /// Raw tracepoint `sched_process_fork`: a new process of a followed one is traced.
    pub const PROCESS_FORK: &str = "process_fork";
    /// Return probe on libc's `_Fork` in every process: a new traced process stops there.
    pub const FORK_RETURN: &str = "fork_return";
    /// Raw tracepoint `sched_process_exec`.
    pub const PROCESS_EXEC: &str = "process_exec";
    /// Raw tracepoint `sched_process_exit`.
    pub const PROCESS_EXIT: &str = "process_exit";
    /// Does nothing: attached in place of every entry program to measure what the probes
    /// alone cost (the floor of any uprobe-based tracer).
    pub const EMPTY_ENTRY: &str = "empty_entry";
    /// Does nothing: attached in place of [`ALLOC_RETURN`] for the same measurement.
    pub const EMPTY_RETURN: &str = "empty_return";
}
