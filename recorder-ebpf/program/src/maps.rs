//! Every map of the program and the globals user space sets at load time.
//!
//! Owns: the maps' names (`#[map(name = ...)]`, the recorder's handles to them, spelled in
//! `memtrail_ebpf_abi::*_MAP`), types and default sizes, and the globals' symbols (user space
//! writes them by name, `memtrail_ebpf_abi::GLOBAL_*`). Must not: change a name, a value type
//! or a global's type without the matching change in the abi crate and the recorder. Read the
//! globals through [`crate::access::global`] only.

use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, LruHashMap, PerCpuArray, RingBuf, StackTrace},
};
use memtrail_ebpf_abi::{
    DEFAULT_RING_BUFFER_BYTES, DwarfStack, LOST_COUNTER_COUNT, PENDING_CALLS_CAPACITY, PendingCall,
    SAMPLE_COUNTDOWN_CAPACITY, SAMPLED_BLOCKS_CAPACITY, STACKS_CAPACITY,
    STOPPED_PROCESSES_CAPACITY, THREAD_SLOTS_CAPACITY, TRACED_PROCESSES_CAPACITY,
    UNWIND_MAPPINGS_CAPACITY, UNWIND_PROCESS_SLOTS, UNWIND_ROWS_CAPACITY, UnwindMapping, UnwindRow,
};

use crate::unwind::{
    KNOWN_STACKS_ENTRIES, WALK_LEVELS,
    memo::{WALK_MEMO_ENTRIES, WalkMemo},
    tables::{ROW_CACHE_ENTRIES, RowCacheEntry},
    window::StackWindow,
};

/// The events, to the recorder.
#[map(name = "EVENTS")]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(DEFAULT_RING_BUFFER_BYTES, 0);

/// Stacks of the kernel's frame-pointer walk (`bpf_get_stackid`).
#[map(name = "STACKS")]
pub static STACKS: StackTrace = StackTrace::with_max_entries(STACKS_CAPACITY, 0);

/// Pending calls, one entry per thread id modulo the size (see `slots`).
#[map(name = "THREAD_SLOTS")]
pub static THREAD_SLOTS: Array<PendingCall> = Array::with_max_entries(THREAD_SLOTS_CAPACITY, 0);

/// Pending calls of threads whose `THREAD_SLOTS` entry another thread holds.
#[map(name = "PENDING_CALLS")]
pub static PENDING_CALLS: LruHashMap<u64, PendingCall> =
    LruHashMap::with_max_entries(PENDING_CALLS_CAPACITY, 0);

/// Events not delivered, by `memtrail_ebpf_abi::LOST_*` reason.
#[map(name = "LOST_COUNTERS")]
pub static LOST_COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(LOST_COUNTER_COUNT, 0);

/// Events emitted on this CPU (when to look at the ring buffer's fill; see `emit`).
#[map(name = "EMIT_COUNT")]
pub static EMIT_COUNT: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// Processes stopped with SIGSTOP and not resumed yet, tgid -> `STOP_*` reason.
#[map(name = "STOPPED_PROCESSES")]
pub static STOPPED_PROCESSES: HashMap<u32, u32> =
    HashMap::with_max_entries(STOPPED_PROCESSES_CAPACITY, 0);

/// Traced processes, tgid -> `TRACED_*` flags.
#[map(name = "TRACED_PROCESSES")]
pub static TRACED_PROCESSES: HashMap<u32, u32> =
    HashMap::with_max_entries(TRACED_PROCESSES_CAPACITY, 0);

/// Traced processes forked but not stopped yet, tgid -> parent tgid.
#[map(name = "PENDING_PROCESSES")]
pub static PENDING_PROCESSES: HashMap<u32, u32> =
    HashMap::with_max_entries(TRACED_PROCESSES_CAPACITY, 0);

/// Unwinder slot of each traced process but the first (which uses slot 0).
#[map(name = "UNWIND_SLOTS")]
pub static UNWIND_SLOTS: HashMap<u32, u32> = HashMap::with_max_entries(UNWIND_PROCESS_SLOTS, 0);

/// Sampled blocks still live, address -> size (when sampling).
#[map(name = "SAMPLED_BLOCKS")]
pub static SAMPLED_BLOCKS: HashMap<u64, u64> =
    HashMap::with_max_entries(SAMPLED_BLOCKS_CAPACITY, 0);

/// Each thread's bytes to go until its next sampled allocation (when sampling).
#[map(name = "SAMPLE_COUNTDOWN")]
pub static SAMPLE_COUNTDOWN: LruHashMap<u64, u64> =
    LruHashMap::with_max_entries(SAMPLE_COUNTDOWN_CAPACITY, 0);

/// Every loaded module's unwind rows.
#[map(name = "UNWIND_ROWS")]
pub static UNWIND_ROWS: Array<UnwindRow> = Array::with_max_entries(UNWIND_ROWS_CAPACITY, 0);

/// Per slot (process), its executable mappings, sorted by start.
#[map(name = "UNWIND_MAPPINGS")]
pub static UNWIND_MAPPINGS: Array<UnwindMapping> =
    Array::with_max_entries(UNWIND_MAPPINGS_CAPACITY * UNWIND_PROCESS_SLOTS, 0);

/// Per slot, the valid entries of its `UNWIND_MAPPINGS` and the generation of its list.
#[map(name = "UNWIND_STATE")]
pub static UNWIND_STATE: Array<u32> = Array::with_max_entries(2 * UNWIND_PROCESS_SLOTS, 0);

/// Stacks unwound with the tables, by hash (the recorder deletes those it has read).
#[map(name = "DWARF_STACKS")]
pub static DWARF_STACKS: HashMap<u64, DwarfStack> = HashMap::with_max_entries(STACKS_CAPACITY, 0);

/// Per CPU and walk level: the stack being unwound.
#[map(name = "UNWIND_SCRATCH")]
pub static UNWIND_SCRATCH: PerCpuArray<DwarfStack> = PerCpuArray::with_max_entries(WALK_LEVELS, 0);

/// Per CPU and walk level: the copy of the user stack the walk reads.
#[map(name = "UNWIND_WINDOW")]
pub static UNWIND_WINDOW: PerCpuArray<StackWindow> = PerCpuArray::with_max_entries(WALK_LEVELS, 0);

/// Per CPU and walk level: 1 while a walk holds the level.
#[map(name = "WALK_CLAIMS")]
pub static WALK_CLAIMS: PerCpuArray<u64> = PerCpuArray::with_max_entries(WALK_LEVELS, 0);

/// Per CPU: finished walks, to be recognized when they recur.
#[map(name = "WALK_MEMO")]
pub static WALK_MEMO: PerCpuArray<WalkMemo> = PerCpuArray::with_max_entries(WALK_MEMO_ENTRIES, 0);

/// Per CPU: the unwind row of recently seen return addresses.
#[map(name = "UNWIND_ROW_CACHE")]
pub static UNWIND_ROW_CACHE: PerCpuArray<RowCacheEntry> =
    PerCpuArray::with_max_entries(ROW_CACHE_ENTRIES, 0);

/// Per CPU: hashes of stacks already stored in `DWARF_STACKS`.
#[map(name = "KNOWN_STACKS")]
pub static KNOWN_STACKS: PerCpuArray<u64> = PerCpuArray::with_max_entries(KNOWN_STACKS_ENTRIES, 0);

/// Only this thread group is traced (0: every process the probes are scoped to).
#[unsafe(no_mangle)]
pub static TARGET_TGID: u32 = 0;
/// Allocations below this size are not reported.
#[unsafe(no_mangle)]
pub static MIN_SIZE: u64 = 0;
/// Ring-buffer bytes pending before the reader is woken.
#[unsafe(no_mangle)]
pub static WAKEUP_THRESHOLD: u64 = 1 << 20;
/// 1: `exit_entry` stops the process.
#[unsafe(no_mangle)]
pub static STOP_AT_EXIT: u32 = 0;
/// The process whose mappings are in unwinder slot 0.
#[unsafe(no_mangle)]
pub static FIRST_TGID: u32 = 0;
/// Offsets in `struct task_struct` (0: unknown, process tracking off).
#[unsafe(no_mangle)]
pub static TASK_TGID_OFFSET: u32 = 0;
#[unsafe(no_mangle)]
pub static TASK_PID_OFFSET: u32 = 0;
#[unsafe(no_mangle)]
pub static TASK_EXIT_CODE_OFFSET: u32 = 0;
/// `--exe`: the executable (inode 0: off), the flags its processes get, and the offsets of
/// the fields that lead from an exec's `linux_binprm` to its file's inode and device.
#[unsafe(no_mangle)]
pub static EXE_INODE: u64 = 0;
#[unsafe(no_mangle)]
pub static EXE_DEVICE: u32 = 0;
#[unsafe(no_mangle)]
pub static EXE_FLAGS: u32 = 0;
#[unsafe(no_mangle)]
pub static BINPRM_FILE_OFFSET: u32 = 0;
#[unsafe(no_mangle)]
pub static FILE_INODE_OFFSET: u32 = 0;
#[unsafe(no_mangle)]
pub static INODE_INO_OFFSET: u32 = 0;
#[unsafe(no_mangle)]
pub static INODE_SB_OFFSET: u32 = 0;
#[unsafe(no_mangle)]
pub static SB_DEV_OFFSET: u32 = 0;
/// Mean bytes between sampled allocations (0: no sampling).
#[unsafe(no_mangle)]
pub static SAMPLE_BYTES: u64 = 0;
/// `memtrail_ebpf_abi::CAPTURE_*`.
#[unsafe(no_mangle)]
pub static CAPTURE_STACKS: u32 = 1;
/// 1: unwind with the tables; 0: the kernel's frame-pointer walk.
#[unsafe(no_mangle)]
pub static UNWIND_TABLES: u32 = 0;
/// Entries of `THREAD_SLOTS` minus one.
#[unsafe(no_mangle)]
pub static THREAD_SLOTS_MASK: u32 = THREAD_SLOTS_CAPACITY - 1;
