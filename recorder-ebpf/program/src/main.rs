//! memtrail's eBPF program: uprobes on the allocator functions of one process.
//!
//! Owns: turning allocator calls into [`Event`]s in the ring buffer, per-thread entry state,
//! stack capture and loss counting. Must not: format anything, allocate stack ids of its own,
//! or drop an event silently (every event not delivered is counted in `LOST_COUNTERS`).
//!
//! Shape of a traced allocation: an entry probe (`*_entry`) stores a [`PendingCall`] in its
//! thread's slot; the shared return probe `alloc_return` reads the result, captures the user
//! stack (at return, so the allocator's direct caller is the first frame), marks the slot idle
//! and emits the event. A thread's slot is the entry of the `THREAD_SLOTS`
//! array at its thread id modulo the array's size, tagged with the thread id, and rewritten in
//! place: an array entry costs a few instructions where a hash lookup cost ~80 ns, and every
//! pair of calls looks it up three times (entry, return, free). The entry's owner word (thread
//! id, plus a busy bit while a call is pending) is taken with a compare-and-swap when idle, so
//! two threads whose ids collide never write the same entry: while one holds it busy, the
//! other uses its slot in `PENDING_CALLS`, an LRU hash keyed by `pid_tgid` (LRU so that exited
//! threads' slots are recycled).
//! Allocator functions that call each other (glibc's realloc calls free and tail-calls malloc,
//! reallocarray tail-calls realloc, malloc calls mmap) are reported once, as the outermost
//! call: a call is "nested" when a pending call of the same thread sits at a higher stack
//! pointer within `NESTED_CALL_WINDOW` bytes, and a "tail call" when it sits at the same one.
//! Frees and munmaps have entry probes only and carry no stack.
//!
//! Sampling (`SAMPLE_BYTES` > 0): each thread counts down the bytes it allocates from a number
//! drawn from an exponential distribution with mean `SAMPLE_BYTES`; the allocation that reaches
//! zero is reported and its address kept in `SAMPLED_BLOCKS`, and a new countdown is drawn.
//! An allocation of s bytes is thus reported with probability 1 - exp(-s / SAMPLE_BYTES)
//! (a Poisson process over allocated bytes, as jemalloc samples). Unsampled allocations cost
//! their probes but no stack capture and no ring-buffer traffic; only frees and reallocs of
//! addresses in `SAMPLED_BLOCKS` are reported. Anonymous mmaps are sampled the same way;
//! munmaps are always reported (user space drops those of regions it never saw mapped).
//!
//! Stacks (`UNWIND_TABLES` = 0): the kernel's frame-pointer walk, `bpf_get_stackid` into
//! `STACKS`. With `UNWIND_TABLES` = 1 the program walks the user stack itself from the return
//! probe's registers (ip, sp, rbp), one `bpf_loop` iteration per frame: binary search of
//! `UNWIND_MAPPINGS` for the module, of its rows in `UNWIND_ROWS` for the CFA rule (rows derived
//! from the module's DWARF CFI by user space), then the return address at CFA - 8 and the saved
//! rbp. The frames are hashed and stored once in `DWARF_STACKS`; the event carries the hash.
//! The stack is copied in windows (few user reads), rows are cached per CPU by return address,
//! and a finished walk is remembered by its starting registers (`WALK_MEMO`): when a walk
//! from the same registers finds the same values in the stack words the remembered one read,
//! its stack is reused without walking.
//! Per-CPU walk state is taken by compare-and-swap (`WALK_CLAIMS`): on a fully preemptible
//! kernel another thread's probe can run on this CPU in the middle of a walk.
//!
//! Layouts, names and constants come from `memtrail-ebpf-abi`; user space sets the globals at
//! load time. x86-64 only (reads `rsp` from `pt_regs`).
#![no_std]
#![no_main]
// The BPF target declares no `core::sync::atomic` types; the compare-and-swap that hands over a
// thread slot is the intrinsic (BPF_CMPXCHG). The build already runs with RUSTC_BOOTSTRAP=1
// for aya-ebpf.
#![allow(internal_features)]
#![feature(core_intrinsics)]

use core::intrinsics::{AtomicOrdering, atomic_cxchg, atomic_xadd};

use aya_ebpf::{
    EbpfContext,
    bindings::{
        BPF_F_USER_STACK, BPF_NOEXIST, BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP,
    },
    cty::{c_long, c_void},
    helpers::generated::bpf_probe_read_user as read_user_bytes,
    helpers::{
        bpf_get_current_pid_tgid, bpf_get_prandom_u32, bpf_ktime_get_ns, bpf_loop,
        bpf_probe_read_user, bpf_send_signal,
    },
    macros::{map, uprobe, uretprobe},
    maps::{Array, HashMap, LruHashMap, PerCpuArray, RingBuf, StackTrace},
    programs::{ProbeContext, RetProbeContext, tracing::StackIdContext},
};
use memtrail_ebpf_abi::{
    CAPTURE_NONE, CAPTURE_READ_ONLY, CFA_END, CFA_FRAME_POINTER, CFA_PLT, CFA_RBP, CFA_RSP,
    DEFAULT_RING_BUFFER_BYTES, DWARF_STACK_TRUNCATED, DWARF_STACK_USED_FRAME_POINTERS, DwarfStack,
    EVENT_ALLOC, EVENT_FREE, EVENT_REALLOC, Event, LOST_COUNTER_COUNT, LOST_MISSING_ENTRY,
    LOST_PENDING_TABLE_FULL, LOST_RING_BUFFER_FULL, LOST_SAMPLE_TABLE_FULL, LOST_STACK_UNAVAILABLE,
    MAP_ANONYMOUS, OWNER_BUSY, PENDING_CALLS_CAPACITY, PendingCall, RBP_AT_CFA, RBP_SAME,
    SAMPLE_COUNTDOWN_CAPACITY, SAMPLED_BLOCKS_CAPACITY, STACK_FRAME_POINTER, STACK_NONE,
    STACK_READ_ONLY_BYTES, STACK_TABLES, STACKS_CAPACITY, THREAD_SLOTS_CAPACITY,
    UNWIND_MAPPING_SEARCH_STEPS, UNWIND_MAPPINGS_CAPACITY, UNWIND_MAX_FRAMES,
    UNWIND_ROW_SEARCH_STEPS, UNWIND_ROWS_CAPACITY, UnwindMapping, UnwindRow, alloc_api, free_api,
};

/// A pending call at most this many bytes above the current stack pointer is an outer allocator
/// call still running (nested allocator calls are a few hundred bytes deep). Farther away it is
/// stale (its return was never seen) and is replaced.
const NESTED_CALL_WINDOW: u64 = 8192;

#[map(name = "EVENTS")]
static EVENTS: RingBuf = RingBuf::with_byte_size(DEFAULT_RING_BUFFER_BYTES, 0);

#[map(name = "STACKS")]
static STACKS: StackTrace = StackTrace::with_max_entries(STACKS_CAPACITY, 0);

#[map(name = "THREAD_SLOTS")]
static THREAD_SLOTS: Array<PendingCall> = Array::with_max_entries(THREAD_SLOTS_CAPACITY, 0);

#[map(name = "PENDING_CALLS")]
static PENDING_CALLS: LruHashMap<u64, PendingCall> =
    LruHashMap::with_max_entries(PENDING_CALLS_CAPACITY, 0);

#[map(name = "LOST_COUNTERS")]
static LOST_COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(LOST_COUNTER_COUNT, 0);

#[map(name = "EMIT_COUNT")]
static EMIT_COUNT: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

#[map(name = "EXIT_STOP")]
static EXIT_STOP: Array<u32> = Array::with_max_entries(1, 0);

#[map(name = "SAMPLED_BLOCKS")]
static SAMPLED_BLOCKS: HashMap<u64, u64> = HashMap::with_max_entries(SAMPLED_BLOCKS_CAPACITY, 0);

#[map(name = "SAMPLE_COUNTDOWN")]
static SAMPLE_COUNTDOWN: LruHashMap<u64, u64> =
    LruHashMap::with_max_entries(SAMPLE_COUNTDOWN_CAPACITY, 0);

#[map(name = "UNWIND_ROWS")]
static UNWIND_ROWS: Array<UnwindRow> = Array::with_max_entries(UNWIND_ROWS_CAPACITY, 0);

#[map(name = "UNWIND_MAPPINGS")]
static UNWIND_MAPPINGS: Array<UnwindMapping> = Array::with_max_entries(UNWIND_MAPPINGS_CAPACITY, 0);

#[map(name = "UNWIND_STATE")]
static UNWIND_STATE: Array<u32> = Array::with_max_entries(2, 0);

#[map(name = "DWARF_STACKS")]
static DWARF_STACKS: HashMap<u64, DwarfStack> = HashMap::with_max_entries(STACKS_CAPACITY, 0);

#[map(name = "UNWIND_SCRATCH")]
static UNWIND_SCRATCH: PerCpuArray<DwarfStack> = PerCpuArray::with_max_entries(WALK_LEVELS, 0);

#[map(name = "UNWIND_WINDOW")]
static UNWIND_WINDOW: PerCpuArray<StackWindow> = PerCpuArray::with_max_entries(WALK_LEVELS, 0);

#[map(name = "WALK_CLAIMS")]
static WALK_CLAIMS: PerCpuArray<u64> = PerCpuArray::with_max_entries(WALK_LEVELS, 0);

#[map(name = "WALK_MEMO")]
static WALK_MEMO: PerCpuArray<WalkMemo> = PerCpuArray::with_max_entries(WALK_MEMO_ENTRIES, 0);

#[map(name = "UNWIND_ROW_CACHE")]
static UNWIND_ROW_CACHE: PerCpuArray<RowCacheEntry> =
    PerCpuArray::with_max_entries(ROW_CACHE_ENTRIES, 0);

#[map(name = "KNOWN_STACKS")]
static KNOWN_STACKS: PerCpuArray<u64> = PerCpuArray::with_max_entries(KNOWN_STACKS_ENTRIES, 0);

/// Set by user space at load time (see `memtrail_ebpf_abi::GLOBAL_*`).
#[unsafe(no_mangle)]
static TARGET_TGID: u32 = 0;
#[unsafe(no_mangle)]
static MIN_SIZE: u64 = 0;
#[unsafe(no_mangle)]
static WAKEUP_THRESHOLD: u64 = 1 << 20;
#[unsafe(no_mangle)]
static STOP_AT_EXIT: u32 = 0;
#[unsafe(no_mangle)]
static SAMPLE_BYTES: u64 = 0;
#[unsafe(no_mangle)]
static CAPTURE_STACKS: u32 = 1;
#[unsafe(no_mangle)]
static UNWIND_TABLES: u32 = 0;
#[unsafe(no_mangle)]
static THREAD_SLOTS_MASK: u32 = THREAD_SLOTS_CAPACITY - 1;

/// ln 2 in Q16 fixed point.
const LN_2_Q16: u64 = 45426;

/// -ln(U) in Q16 fixed point, for U = (random + 1) / 2^32, uniform in (0, 1]: an exponential
/// variate with mean 1 (at most about 22.2). BPF has no floating point: log2 is computed as its
/// integer part plus 16 fraction bits by repeated squaring of the mantissa.
#[inline(always)]
fn exponential_q16(random: u32) -> u64 {
    let x = random as u64 + 1; // 1 ..= 2^32
    let mut v = x;
    let mut whole = 0u64;
    if v >= 1 << 32 {
        v >>= 32;
        whole += 32;
    }
    if v >= 1 << 16 {
        v >>= 16;
        whole += 16;
    }
    if v >= 1 << 8 {
        v >>= 8;
        whole += 8;
    }
    if v >= 1 << 4 {
        v >>= 4;
        whole += 4;
    }
    if v >= 1 << 2 {
        v >>= 2;
        whole += 2;
    }
    if v >= 1 << 1 {
        whole += 1;
    }
    // Mantissa x / 2^whole in [1, 2), Q30.
    let mut mantissa = if whole >= 30 {
        x >> (whole - 30)
    } else {
        x << (30 - whole)
    };
    let mut fraction = 0u64;
    let mut bit = 1u64 << 15;
    for _ in 0..16 {
        mantissa = (mantissa * mantissa) >> 30;
        if mantissa >= 2 << 30 {
            mantissa >>= 1;
            fraction |= bit;
        }
        bit >>= 1;
    }
    let log2_q16 = (whole << 16) | fraction;
    (((32u64 << 16) - log2_q16) * LN_2_Q16) >> 16
}

/// Bytes until the next sampled allocation: exponential with mean `sample_bytes`, at least 1.
#[inline(always)]
fn draw_countdown(sample_bytes: u64) -> u64 {
    let random = unsafe { bpf_get_prandom_u32() };
    ((sample_bytes * exponential_q16(random)) >> 16) + 1
}

/// Counts `size` bytes against this thread's countdown; true when the allocation is sampled
/// (the countdown reached zero inside it), a new countdown then starting after it.
#[inline(always)]
fn take_sample(pid_tgid: u64, size: u64, sample_bytes: u64) -> bool {
    match SAMPLE_COUNTDOWN.get_ptr_mut(&pid_tgid) {
        Some(left) => unsafe {
            if size < *left {
                *left -= size;
                false
            } else {
                *left = draw_countdown(sample_bytes);
                true
            }
        },
        None => {
            let first = draw_countdown(sample_bytes);
            let (hit, left) = if size < first {
                (false, first - size)
            } else {
                (true, draw_countdown(sample_bytes))
            };
            let _ = SAMPLE_COUNTDOWN.insert(&pid_tgid, &left, 0);
            hit
        }
    }
}

#[inline(always)]
fn count_lost(reason: u32) {
    if let Some(counter) = LOST_COUNTERS.get_ptr_mut(reason) {
        // Atomic although per CPU: on a fully preemptible kernel another thread's probe can
        // run on this CPU in the middle of this one.
        unsafe { atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(counter, 1) };
    }
}

/// `Some(pid_tgid)` when the current task belongs to the traced process.
#[inline(always)]
fn traced_pid_tgid() -> Option<u64> {
    let pid_tgid = bpf_get_current_pid_tgid();
    let target = unsafe { core::ptr::read_volatile(&TARGET_TGID) };
    if target != 0 && (pid_tgid >> 32) as u32 != target {
        return None;
    }
    Some(pid_tgid)
}

#[inline(always)]
fn stack_pointer<C: EbpfContext>(ctx: &C) -> u64 {
    let regs = ctx.as_ptr() as *const aya_ebpf::bindings::pt_regs;
    unsafe { (*regs).rsp }
}

/// This thread's entry of `THREAD_SLOTS`, whoever owns it.
#[inline(always)]
fn array_slot(pid_tgid: u64) -> Option<*mut PendingCall> {
    let mask = unsafe { core::ptr::read_volatile(&THREAD_SLOTS_MASK) };
    THREAD_SLOTS.get_ptr_mut(pid_tgid as u32 & mask)
}

/// The owner word of `slot` (shared with other threads for `THREAD_SLOTS` entries).
#[inline(always)]
fn owner_of(slot: *mut PendingCall) -> u64 {
    unsafe { core::ptr::read_volatile(&(*slot).owner) }
}

#[inline(always)]
fn set_owner(slot: *mut PendingCall, owner: u64) {
    unsafe { core::ptr::write_volatile(&mut (*slot).owner, owner) }
}

/// Sets the owner word of `slot` to `new` if it still is `current`.
#[inline(always)]
fn swap_owner(slot: *mut PendingCall, current: u64, new: u64) -> bool {
    // SAFETY: `slot` points into a map value; `owner` is an aligned u64.
    let (_, swapped) = unsafe {
        atomic_cxchg::<u64, { AtomicOrdering::Acquire }, { AtomicOrdering::Relaxed }>(
            &raw mut (*slot).owner,
            current,
            new,
        )
    };
    swapped
}

/// This thread's pending-call slot, if it has one: its entry of `THREAD_SLOTS` when it owns
/// it (busy or idle), else its slot in `PENDING_CALLS`.
#[inline(always)]
fn own_slot(pid_tgid: u64) -> Option<*mut PendingCall> {
    if let Some(slot) = array_slot(pid_tgid)
        && owner_of(slot) & !OWNER_BUSY == u64::from(pid_tgid as u32)
    {
        return Some(slot);
    }
    PENDING_CALLS.get_ptr_mut(&pid_tgid)
}

/// This thread's slot if it holds a pending call (its outermost allocator call running).
#[inline(always)]
fn busy_slot(pid_tgid: u64) -> Option<*mut PendingCall> {
    let slot = own_slot(pid_tgid)?;
    (owner_of(slot) == u64::from(pid_tgid as u32) | OWNER_BUSY).then_some(slot)
}

/// The fields of a call that its entry probe records (the slot's owner word aside).
#[derive(Clone, Copy)]
struct CallEntry {
    entry_sp: u64,
    size: u64,
    old_address: u64,
    result_slot: u64,
    api: u8,
}

/// Writes `call` into `slot` (whose owner word says this thread holds it busy) field by
/// field: building a whole `PendingCall` compiles to a byte-loop `memset` for its zero fields.
#[inline(always)]
fn store_call(slot: *mut PendingCall, call: CallEntry) {
    unsafe {
        core::ptr::write_volatile(&mut (*slot).entry_sp, call.entry_sp);
        core::ptr::write_volatile(&mut (*slot).size, call.size);
        core::ptr::write_volatile(&mut (*slot).old_address, call.old_address);
        core::ptr::write_volatile(&mut (*slot).result_slot, call.result_slot);
        core::ptr::write_volatile(&mut (*slot).api, call.api);
        core::ptr::write_volatile(&mut (*slot).tail_calls, 0);
        core::ptr::write_volatile(&mut (*slot).padding, 0);
        core::ptr::write_volatile(&mut (*slot).padding_wide, 0);
    }
}

/// True when a probed allocator call of this thread is running at a higher stack pointer
/// (the current call is made from inside it and must not be reported on its own).
#[inline(always)]
fn inside_outer_call(pid_tgid: u64, sp: u64) -> bool {
    match busy_slot(pid_tgid) {
        Some(outer) => {
            let outer_sp = unsafe { (*outer).entry_sp };
            outer_sp > sp && outer_sp - sp < NESTED_CALL_WINDOW
        }
        None => false,
    }
}

/// Events between two looks at how much the ring buffer holds (per CPU, a power of two): a
/// look reads the consumer position the reader's CPU keeps writing (a cache-line transfer),
/// and a wake-up a few KiB late changes nothing against a threshold of about 1 MiB.
const WAKEUP_CHECK_EVERY: u64 = 32;

/// Writes `event` into the ring buffer, waking the reader only when a lot is pending.
#[inline(always)]
fn emit(event: Event) {
    let mut flags = BPF_RB_NO_WAKEUP as u64;
    if let Some(count) = EMIT_COUNT.get_ptr_mut(0) {
        let n = unsafe { *count }.wrapping_add(1);
        unsafe { *count = n };
        if n & (WAKEUP_CHECK_EVERY - 1) == 0 {
            let threshold = unsafe { core::ptr::read_volatile(&WAKEUP_THRESHOLD) };
            if EVENTS.query(BPF_RB_AVAIL_DATA as u64) > threshold {
                flags = BPF_RB_FORCE_WAKEUP as u64;
            }
        }
    }
    match EVENTS.reserve::<Event>(0) {
        Some(mut entry) => {
            // Field by field: a struct store compiles to a byte-loop `memset` for the zeros.
            let slot = entry.as_mut_ptr();
            unsafe {
                core::ptr::write_volatile(&mut (*slot).time_ns, event.time_ns);
                core::ptr::write_volatile(&mut (*slot).address, event.address);
                core::ptr::write_volatile(&mut (*slot).old_address, event.old_address);
                core::ptr::write_volatile(&mut (*slot).size, event.size);
                core::ptr::write_volatile(&mut (*slot).stack_key, event.stack_key);
                core::ptr::write_volatile(&mut (*slot).tid, event.tid);
                core::ptr::write_volatile(&mut (*slot).kind, event.kind);
                core::ptr::write_volatile(&mut (*slot).api, event.api);
                core::ptr::write_volatile(&mut (*slot).stack_kind, event.stack_kind);
                core::ptr::write_volatile(&mut (*slot).padding, 0);
            }
            entry.submit(flags);
        }
        None => count_lost(LOST_RING_BUFFER_FULL),
    }
}

/// Entry half of every allocation function: remember what the return half needs.
#[inline(always)]
fn enter(ctx: &ProbeContext, api: u8, size: u64, old_address: u64, result_slot: u64) -> u32 {
    let Some(pid_tgid) = traced_pid_tgid() else {
        return 0;
    };
    let sp = stack_pointer(ctx);
    let owner = u64::from(pid_tgid as u32) | OWNER_BUSY;
    let call = CallEntry {
        entry_sp: sp,
        size,
        old_address,
        result_slot,
        api,
    };
    if let Some(outer) = busy_slot(pid_tgid) {
        let outer_sp = unsafe { (*outer).entry_sp };
        if outer_sp == sp {
            // Tail call from the outer function: same frame, same return.
            unsafe { (*outer).tail_calls = (*outer).tail_calls.saturating_add(1) };
            return 0;
        }
        if outer_sp > sp && outer_sp - sp < NESTED_CALL_WINDOW {
            return 0;
        }
        // Stale (its return was never seen): replaced, the slot stays this thread's.
        store_call(outer, call);
        return 0;
    }
    // No call pending: take this thread's array entry if it is idle (whoever owned it last),
    // with a compare-and-swap of the owner word, so that of two colliding threads exactly one
    // gets it and only the holder writes the other fields.
    if let Some(entry) = array_slot(pid_tgid) {
        let current = owner_of(entry);
        if current & OWNER_BUSY == 0 && swap_owner(entry, current, owner) {
            store_call(entry, call);
            return 0;
        }
    }
    // Held by another thread's call: this thread's slot in the hash map.
    match PENDING_CALLS.get_ptr_mut(&pid_tgid) {
        Some(slot) => {
            store_call(slot, call);
            set_owner(slot, owner);
        }
        None => {
            let pending = PendingCall {
                entry_sp: call.entry_sp,
                size: call.size,
                old_address: call.old_address,
                result_slot: call.result_slot,
                api: call.api,
                tail_calls: 0,
                padding: 0,
                padding_wide: 0,
                owner,
            };
            if PENDING_CALLS.insert(&pid_tgid, &pending, 0).is_err() {
                count_lost(LOST_PENDING_TABLE_FULL);
            }
        }
    }
    0
}

/// `count * size`, saturating. Done in 32-bit halves: BPF has no 128-bit multiply, which
/// `u64::saturating_mul` and a division-based overflow check both compile to.
#[inline(always)]
fn array_bytes(count: u64, size: u64) -> u64 {
    let (count_high, count_low) = (count >> 32, count & 0xffff_ffff);
    let (size_high, size_low) = (size >> 32, size & 0xffff_ffff);
    if count_high != 0 && size_high != 0 {
        return u64::MAX;
    }
    let cross = count_high * size_low + count_low * size_high;
    if cross >> 32 != 0 {
        return u64::MAX;
    }
    let low = count_low * size_low;
    let total = low.wrapping_add(cross << 32);
    if total < low { u64::MAX } else { total }
}

#[inline(always)]
fn arg(ctx: &ProbeContext, n: usize) -> u64 {
    ctx.arg::<u64>(n).unwrap_or(0)
}

#[uprobe]
pub fn malloc_entry(ctx: ProbeContext) -> u32 {
    enter(&ctx, alloc_api::MALLOC, arg(&ctx, 0), 0, 0)
}

#[uprobe]
pub fn calloc_entry(ctx: ProbeContext) -> u32 {
    let size = array_bytes(arg(&ctx, 0), arg(&ctx, 1));
    enter(&ctx, alloc_api::CALLOC, size, 0, 0)
}

#[uprobe]
pub fn realloc_entry(ctx: ProbeContext) -> u32 {
    enter(&ctx, alloc_api::REALLOC, arg(&ctx, 1), arg(&ctx, 0), 0)
}

#[uprobe]
pub fn reallocarray_entry(ctx: ProbeContext) -> u32 {
    let size = array_bytes(arg(&ctx, 1), arg(&ctx, 2));
    enter(&ctx, alloc_api::REALLOCARRAY, size, arg(&ctx, 0), 0)
}

#[uprobe]
pub fn posix_memalign_entry(ctx: ProbeContext) -> u32 {
    enter(
        &ctx,
        alloc_api::POSIX_MEMALIGN,
        arg(&ctx, 2),
        0,
        arg(&ctx, 0),
    )
}

#[uprobe]
pub fn aligned_alloc_entry(ctx: ProbeContext) -> u32 {
    enter(&ctx, alloc_api::ALIGNED_ALLOC, arg(&ctx, 1), 0, 0)
}

#[uprobe]
pub fn memalign_entry(ctx: ProbeContext) -> u32 {
    enter(&ctx, alloc_api::MEMALIGN, arg(&ctx, 1), 0, 0)
}

#[uprobe]
pub fn valloc_entry(ctx: ProbeContext) -> u32 {
    enter(&ctx, alloc_api::VALLOC, arg(&ctx, 0), 0, 0)
}

#[uprobe]
pub fn pvalloc_entry(ctx: ProbeContext) -> u32 {
    enter(&ctx, alloc_api::PVALLOC, arg(&ctx, 0), 0, 0)
}

#[uprobe]
pub fn mmap_entry(ctx: ProbeContext) -> u32 {
    // File mappings still get a pending call, so their return is not counted as missing.
    let api = if arg(&ctx, 3) & MAP_ANONYMOUS == 0 {
        alloc_api::NOT_REPORTED
    } else {
        alloc_api::MMAP
    };
    enter(&ctx, api, arg(&ctx, 1), 0, 0)
}

/// Return half of every allocation function.
#[uretprobe]
pub fn alloc_return(ctx: RetProbeContext) -> u32 {
    let Some(pid_tgid) = traced_pid_tgid() else {
        return 0;
    };
    let sp = stack_pointer(&ctx);
    let Some(pending) = busy_slot(pid_tgid) else {
        // No slot, or an idle one: the entry of this return was not seen.
        count_lost(LOST_MISSING_ENTRY);
        return 0;
    };
    let call = unsafe { *pending };
    if sp <= call.entry_sp {
        // Return of a call nested inside the pending one; the outer call is still running.
        return 0;
    }
    if call.tail_calls > 0 {
        // The tail-called function's return: same place, the outer one follows.
        unsafe { (*pending).tail_calls = call.tail_calls - 1 };
        return 0;
    }
    // Done: the slot goes idle (and stays this thread's until another thread takes it; `call`
    // is a copy, read before another thread can take the slot).
    set_owner(pending, u64::from(pid_tgid as u32));

    if call.api == alloc_api::NOT_REPORTED {
        return 0;
    }
    let returned: u64 = ctx.ret();
    let (mut kind, address) = match call.api {
        alloc_api::POSIX_MEMALIGN => {
            // Returns 0 on success and stores the block through `memptr`.
            if returned as u32 != 0 {
                return 0;
            }
            let stored = unsafe { bpf_probe_read_user(call.result_slot as *const u64) };
            match stored {
                Ok(address) => (EVENT_ALLOC, address),
                Err(_) => return 0,
            }
        }
        alloc_api::MMAP => {
            if returned == u64::MAX {
                return 0; // MAP_FAILED
            }
            (EVENT_ALLOC, returned)
        }
        alloc_api::REALLOC | alloc_api::REALLOCARRAY => (EVENT_REALLOC, returned),
        _ => (EVENT_ALLOC, returned),
    };
    if kind == EVENT_ALLOC {
        if address == 0 {
            return 0; // failed allocation: nothing to track
        }
        let min_size = unsafe { core::ptr::read_volatile(&MIN_SIZE) };
        if call.size < min_size {
            return 0;
        }
    }
    let mut old_address = call.old_address;
    let sample_bytes = unsafe { core::ptr::read_volatile(&SAMPLE_BYTES) };
    if sample_bytes != 0 {
        if kind == EVENT_ALLOC {
            if !take_sample(pid_tgid, call.size, sample_bytes) {
                return 0;
            }
            // munmaps are matched in user space, by range.
            if call.api != alloc_api::MMAP
                && SAMPLED_BLOCKS.insert(&address, &call.size, 0).is_err()
            {
                count_lost(LOST_SAMPLE_TABLE_FULL);
                return 0;
            }
        } else if old_address != 0 && SAMPLED_BLOCKS.get_ptr(&old_address).is_some() {
            // A sampled block resized: reported, and the new block stays sampled.
            if address != 0 {
                let _ = SAMPLED_BLOCKS.remove(&old_address);
                if SAMPLED_BLOCKS.insert(&address, &call.size, 0).is_err() {
                    // The old block is gone and the new one cannot be followed: report only
                    // the release, and count the allocation as lost.
                    count_lost(LOST_SAMPLE_TABLE_FULL);
                    kind = EVENT_FREE;
                }
            } else if call.size == 0 {
                let _ = SAMPLED_BLOCKS.remove(&old_address); // realloc(p, 0) freed it
            }
            // else: failed, the old block stays live (and sampled).
        } else {
            // An unsampled (or no) block resized: reported only if the new block is sampled,
            // then as a fresh allocation.
            if address == 0 || !take_sample(pid_tgid, call.size, sample_bytes) {
                return 0;
            }
            if SAMPLED_BLOCKS.insert(&address, &call.size, 0).is_err() {
                count_lost(LOST_SAMPLE_TABLE_FULL);
                return 0;
            }
            old_address = 0;
        }
    }
    if kind == EVENT_FREE {
        emit(Event {
            time_ns: unsafe { bpf_ktime_get_ns() },
            address: old_address,
            old_address: 0,
            size: 0,
            stack_key: 0,
            tid: pid_tgid as u32,
            kind: EVENT_FREE,
            api: free_api::FREE,
            stack_kind: STACK_NONE,
            padding: 0,
        });
        return 0;
    }
    let capture = unsafe { core::ptr::read_volatile(&CAPTURE_STACKS) };
    let (stack_kind, stack_key) = if capture == CAPTURE_NONE {
        (STACK_NONE, 0)
    } else if capture == CAPTURE_READ_ONLY {
        read_stack_only(&ctx);
        (STACK_NONE, 0)
    } else if unsafe { core::ptr::read_volatile(&UNWIND_TABLES) } != 0 {
        match unwind_with_tables(&ctx) {
            Some(key) => (STACK_TABLES, key),
            None => {
                count_lost(LOST_STACK_UNAVAILABLE);
                (STACK_NONE, 0)
            }
        }
    } else {
        match ctx.get_stackid(&STACKS, BPF_F_USER_STACK as u64) {
            Ok(id) => (STACK_FRAME_POINTER, id as u64),
            Err(_) => {
                count_lost(LOST_STACK_UNAVAILABLE);
                (STACK_NONE, 0)
            }
        }
    };
    emit(Event {
        time_ns: unsafe { bpf_ktime_get_ns() },
        address,
        old_address,
        size: call.size,
        stack_key,
        tid: pid_tgid as u32,
        kind,
        api: call.api,
        stack_kind,
        padding: 0,
    });
    0
}

/// The benchmark's lower bound for a verified stack: copies the top `STACK_READ_ONLY_BYTES`
/// of the user stack, as a recognized walk's one check does, and keeps nothing. Bench-only
/// (no walk runs in such a recording, so no walk state needs claiming).
#[inline(always)]
fn read_stack_only(ctx: &RetProbeContext) {
    if let Some(window) = UNWIND_WINDOW.get_ptr_mut(0) {
        let start = stack_pointer(ctx) & !7;
        copy_stack(unsafe { &mut *window }, start, STACK_READ_ONLY_BYTES);
    }
}

/// Where the walk is: the registers of the frame being unwound, and where it writes.
#[repr(C)]
struct UnwindCursor {
    ip: u64,
    sp: u64,
    bp: u64,
    stack: *mut DwarfStack,
    window: *mut StackWindow,
    /// The memo entry this walk is recorded into (null: not recorded).
    memo: *mut WalkMemo,
    /// `UNWIND_STATE`'s generation when the walk began (see [`RowCacheEntry`]).
    generation: u32,
    /// Stack words recorded into `memo` so far; `TRAIL_OFF` once the walk cannot be memoized.
    trail: u32,
    /// Words of the window from its start up to the last one recorded into `memo`.
    reach: u32,
    /// The walk's level (see [`claim_walk_level`]); only level 0 uses the per-CPU caches.
    level: u32,
}

/// Per-CPU sets of walk state (window, scratch stack): a walk takes the first free level.
/// Programs here run with migration disabled but, on a fully preemptible kernel, another
/// thread's probe can run on the same CPU in the middle of a walk; it then takes level 1
/// instead of overwriting the first walk's window. A third nested walk gets no stack (counted).
const WALK_LEVELS: u32 = 2;

/// Takes the first free walk level of this CPU; `release_walk_level` gives it back.
#[inline(always)]
fn claim_walk_level() -> Option<(u32, *mut u64)> {
    for level in 0..WALK_LEVELS {
        let claim = WALK_CLAIMS.get_ptr_mut(level)?;
        // SAFETY: a map value, an aligned u64.
        let (_, taken) = unsafe {
            atomic_cxchg::<u64, { AtomicOrdering::Acquire }, { AtomicOrdering::Relaxed }>(
                claim, 0, 1,
            )
        };
        if taken {
            return Some((level, claim));
        }
    }
    None
}

#[inline(always)]
fn release_walk_level(claim: *mut u64) {
    unsafe { core::ptr::write_volatile(claim, 0) };
}

/// Entries of the per-CPU walk memo (a power of two). An entry is 536 bytes, per CPU: 134 KiB
/// a CPU, 17 MiB on a 128-CPU machine.
const WALK_MEMO_ENTRIES: u32 = 256;
/// Stack words one memoized walk may have used (a usual frame uses two: 24 such frames).
const WALK_MEMO_WORDS: usize = 48;
/// [`UnwindCursor::trail`] of a walk that is not memoized.
const TRAIL_OFF: u32 = u32::MAX;

/// A finished walk, to be recognized when it recurs: a walk is a function of the registers it
/// starts from, the unwind tables (their generation) and the stack words it reads, so a walk
/// from the same registers that finds the same values at the same places in the copied stack
/// ends in the same stack, and only those words need checking (a few ns each where a walk
/// step costs ~30 ns). Allocations recur from the same call sites at the same stack depth,
/// so most walks are recognized. Only walks that used their first window alone are memoized.
#[repr(C)]
struct WalkMemo {
    /// The starting registers; `ip` 0: empty.
    ip: u64,
    sp: u64,
    bp: u64,
    /// Where the walk's window began.
    window_start: u64,
    /// The stack's key in `DWARF_STACKS`.
    hash: u64,
    generation: u32,
    /// Valid entries of `indexes` and `values`.
    words: u32,
    /// Bytes of stack from `window_start` that hold them (what a check copies).
    extent: u32,
    padding: u32,
    /// Word indexes in the window, and the values the walk found there.
    indexes: [u16; WALK_MEMO_WORDS],
    values: [u64; WALK_MEMO_WORDS],
}

const _: () = assert!(core::mem::size_of::<WalkMemo>() == 536);

#[inline(always)]
fn walk_memo_slot(ip: u64, sp: u64, bp: u64) -> u32 {
    let mixed = (ip ^ sp.rotate_left(17) ^ bp.rotate_left(41)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    ((mixed >> 40) as u32) & (WALK_MEMO_ENTRIES - 1)
}

/// The key of the stack a memoized walk from these registers found, if `memo` holds one and
/// the stack words it read are unchanged (copied into `window`, which the walk then reuses).
#[inline(always)]
fn recall_walk(
    memo: &WalkMemo,
    window: &mut StackWindow,
    ip: u64,
    sp: u64,
    bp: u64,
    generation: u32,
) -> Option<u64> {
    if memo.ip != ip || memo.sp != sp || memo.bp != bp || memo.generation != generation {
        return None;
    }
    let words = memo.words as usize;
    // Only the bytes the checked words are in: a smaller copy costs a little less and
    // displaces less of the cache.
    let extent = u64::from(memo.extent);
    if extent == 0 || extent > FIRST_WINDOW_BYTES {
        return None;
    }
    if !copy_stack(window, memo.window_start, extent) {
        return None;
    }
    for i in 0..WALK_MEMO_WORDS {
        if i >= words {
            break;
        }
        let index = memo.indexes[i] as u64;
        if index * 8 >= window.len
            || window.words[index as usize & (WINDOW_WORDS - 1)] != memo.values[i]
        {
            return None;
        }
    }
    Some(memo.hash)
}

/// Records for the memo that the walk used the window word at `index`.
#[inline(always)]
fn note_word(cursor: &mut UnwindCursor, index: usize, value: u64) {
    let n = cursor.trail as usize;
    if n >= WALK_MEMO_WORDS || cursor.memo.is_null() {
        cursor.trail = TRAIL_OFF;
        return;
    }
    let memo = unsafe { &mut *cursor.memo };
    memo.indexes[n] = index as u16;
    memo.values[n] = value;
    cursor.trail += 1;
    cursor.reach = cursor.reach.max(index as u32 + 1);
}

/// Entries of the per-CPU row cache (a power of two).
const ROW_CACHE_ENTRIES: u32 = 1024;

/// A return address and the row that unwinds it, as found by the two binary searches
/// (about 20 dependent map reads for a large library): a program allocates from a few
/// hundred call sites over and over, so nearly every frame hits. Valid while the
/// generation user space bumps on every change of the mapping list is the same.
#[repr(C)]
#[derive(Clone, Copy)]
struct RowCacheEntry {
    ip: u64,
    generation: u32,
    row: UnwindRow,
}

/// Entries of the per-CPU cache of stack hashes already stored in `DWARF_STACKS`.
const KNOWN_STACKS_ENTRIES: u32 = 4096;

/// The row for return address `ip`: from the cache, or searched and then cached. `None`
/// when `ip` is in no known executable mapping.
#[inline(always)]
fn row_for(ip: u64, generation: u32, level: u32) -> Option<UnwindRow> {
    if level != 0 {
        // A walk nested in another on this CPU: the cache is the outer walk's.
        return search_row(ip);
    }
    let slot = ((ip.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 40) as u32) & (ROW_CACHE_ENTRIES - 1);
    let entry = UNWIND_ROW_CACHE.get_ptr_mut(slot)?;
    unsafe {
        if (*entry).ip == ip && (*entry).generation == generation {
            return Some((*entry).row);
        }
    }
    let row = search_row(ip)?;
    unsafe {
        core::ptr::write_volatile(&mut (*entry).ip, 0);
        core::ptr::write_volatile(&mut (*entry).row, row);
        core::ptr::write_volatile(&mut (*entry).generation, generation);
        core::ptr::write_volatile(&mut (*entry).ip, ip);
    }
    Some(row)
}

/// The row for return address `ip`, by binary search of the mappings and of the module's
/// rows. `None` when `ip` is in no known executable mapping.
#[inline(always)]
fn search_row(ip: u64) -> Option<UnwindRow> {
    let mapping = find_mapping(ip)?;
    // Every ip here is a return address: the call instruction is the byte before, and its
    // row holds the state after the call (the return address may already be past the end
    // of the function for a call that does not return).
    let pc = ip.wrapping_sub(1).wrapping_sub(mapping.bias);
    // No table, or an address before the module's first row: the frame-pointer rule.
    Some(find_row(&mapping, pc).unwrap_or(UnwindRow {
        pc: 0,
        cfa_offset: 16,
        rbp_offset: -16,
        cfa_kind: CFA_FRAME_POINTER,
        rbp_kind: RBP_AT_CFA,
    }))
}

/// Bytes of user stack copied by the first read of a walk. A `bpf_probe_read_user` costs far
/// more than the bytes it copies (measured here: about 180 ns for 256 bytes, 200 ns for 1 KiB),
/// so the walk copies a window of the stack and reads the saved registers from it: one read
/// for the frames of a typical allocating call path (within 1 KiB of the stack pointer).
const FIRST_WINDOW_BYTES: u64 = 1024;
/// Later reads copy up to the end of the page (at most this much): never past it, since a read
/// that runs off the top of the main thread's stack faults, and a faulting read costs several
/// times a successful one.
const WINDOW_BYTES: u64 = 4096;
const WINDOW_WORDS: usize = WINDOW_BYTES as usize / 8;
const PAGE_BYTES: u64 = 4096;

/// A copy of `len` bytes of the user stack starting at `start` (8-byte aligned).
#[repr(C)]
struct StackWindow {
    start: u64,
    len: u64,
    words: [u64; WINDOW_WORDS],
}

/// Copies the user stack from `address` (rounded down to 8 bytes) into `window`: the walk's
/// first read takes `FIRST_WINDOW_BYTES` (or, if that runs off the stack, up to the end of the
/// page); later ones take the rest of `address`'s page, or the next page too when fewer than
/// 16 bytes are left in it (a frame crossing pages: both are in use).
#[inline(always)]
fn refill_window(window: &mut StackWindow, address: u64) -> bool {
    let start = address & !7;
    if window.len == 0 && copy_stack(window, start, FIRST_WINDOW_BYTES) {
        return true;
    }
    let to_page_end = PAGE_BYTES - (start & (PAGE_BYTES - 1));
    // Fewer than 16 bytes left: the frame crosses into the next page, read 4 KiB. The upper
    // bound is for the verifier (it holds already).
    let len = if (16..=WINDOW_BYTES).contains(&to_page_end) {
        to_page_end
    } else {
        WINDOW_BYTES
    };
    copy_stack(window, start, len)
}

/// Copies `len` bytes (at most `WINDOW_BYTES`) of user stack from `start` into `window`; on
/// failure the window is left empty.
#[inline(always)]
fn copy_stack(window: &mut StackWindow, start: u64, len: u64) -> bool {
    let words = window.words.as_mut_ptr() as *mut c_void;
    let read = unsafe { read_user_bytes(words, len as u32, start as *const c_void) };
    window.start = start;
    window.len = if read == 0 { len } else { 0 };
    read == 0
}

/// Where the `bytes` bytes at `address` start in the cursor's window, refilling the window
/// there when it does not hold them; `None` when they cannot come from a window (unaligned,
/// or the read failed), for the caller to read them directly. A walk that needs more than
/// its first window is not memoized.
#[inline(always)]
fn window_index(cursor: &mut UnwindCursor, address: u64, bytes: u64) -> Option<usize> {
    let window = unsafe { &mut *cursor.window };
    if address & 7 != 0 {
        cursor.trail = TRAIL_OFF;
        return None;
    }
    let mut offset = address.wrapping_sub(window.start);
    if offset >= window.len || window.len - offset < bytes {
        if window.len != 0 {
            cursor.trail = TRAIL_OFF;
        }
        if !refill_window(window, address) {
            cursor.trail = TRAIL_OFF;
            return None;
        }
        offset = 0;
    }
    // Masked so the verifier sees the bound (offset < len <= WINDOW_BYTES already holds).
    Some((offset >> 3) as usize & (WINDOW_WORDS - 1))
}

/// The two user words at `address`, from the window.
#[inline(always)]
fn window_pair(cursor: &mut UnwindCursor, address: u64) -> Option<[u64; 2]> {
    let Some(index) = window_index(cursor, address, 16) else {
        return read_user_pair(address);
    };
    if index + 1 >= WINDOW_WORDS {
        return None;
    }
    let window = unsafe { &*cursor.window };
    let pair = [window.words[index], window.words[index + 1]];
    note_word(cursor, index, pair[0]);
    note_word(cursor, index + 1, pair[1]);
    Some(pair)
}

/// The user word at `address`, from the window.
#[inline(always)]
fn window_u64(cursor: &mut UnwindCursor, address: u64) -> Option<u64> {
    match window_index(cursor, address, 8) {
        Some(index) => {
            let value = unsafe { (*cursor.window).words[index] };
            note_word(cursor, index, value);
            Some(value)
        }
        None => read_user_u64(address),
    }
}

/// The executable mapping containing `ip`, by binary search over the sorted mappings.
#[inline(always)]
fn find_mapping(ip: u64) -> Option<UnwindMapping> {
    let count = *UNWIND_STATE.get(0)?;
    if count == 0 || count > UNWIND_MAPPINGS_CAPACITY {
        return None;
    }
    // Largest index whose start <= ip.
    let mut base = 0u32;
    let mut len = count;
    for _ in 0..UNWIND_MAPPING_SEARCH_STEPS + 1 {
        if len <= 1 {
            break;
        }
        let half = len / 2;
        let mid = base + half;
        if UNWIND_MAPPINGS.get(mid)?.start <= ip {
            base = mid;
        }
        len -= half;
    }
    let mapping = *UNWIND_MAPPINGS.get(base)?;
    (mapping.start <= ip && ip < mapping.end).then_some(mapping)
}

/// The row of `mapping`'s table covering module address `pc`.
#[inline(always)]
fn find_row(mapping: &UnwindMapping, pc: u64) -> Option<UnwindRow> {
    let mut base = mapping.rows_start;
    let mut len = mapping.rows_len;
    if len == 0 {
        return None;
    }
    for _ in 0..UNWIND_ROW_SEARCH_STEPS + 1 {
        if len <= 1 {
            break;
        }
        let half = len / 2;
        let mid = base + half;
        if u64::from(UNWIND_ROWS.get(mid)?.pc) <= pc {
            base = mid;
        }
        len -= half;
    }
    let row = *UNWIND_ROWS.get(base)?;
    (u64::from(row.pc) <= pc).then_some(row)
}

#[inline(always)]
fn read_user_u64(address: u64) -> Option<u64> {
    unsafe { bpf_probe_read_user(address as *const u64) }.ok()
}

/// Two adjacent user words at `address` (each user read is a helper call with fault handling).
#[inline(always)]
fn read_user_pair(address: u64) -> Option<[u64; 2]> {
    unsafe { bpf_probe_read_user(address as *const [u64; 2]) }.ok()
}

/// One frame of the walk (a `bpf_loop` callback): records `ip`, then finds the caller's
/// registers with the row covering `ip`. Returns 1 to stop.
#[inline(never)]
unsafe extern "C" fn unwind_step(_index: u64, context: *mut c_void) -> c_long {
    let cursor = unsafe { &mut *(context as *mut UnwindCursor) };
    let stack = unsafe { &mut *cursor.stack };
    if cursor.ip == 0 {
        return 1; // the outermost frame returned to nothing: complete
    }
    let depth = stack.depth as usize;
    if depth >= UNWIND_MAX_FRAMES {
        stack.flags |= DWARF_STACK_TRUNCATED;
        return 1;
    }
    stack.frames[depth & (UNWIND_MAX_FRAMES - 1)] = cursor.ip;
    stack.depth = depth as u32 + 1;

    let truncated = |stack: &mut DwarfStack| {
        stack.flags |= DWARF_STACK_TRUNCATED;
        1
    };
    let Some(row) = row_for(cursor.ip, cursor.generation, cursor.level) else {
        return truncated(stack);
    };
    let offset = row.cfa_offset as i64 as u64;
    let cfa = match row.cfa_kind {
        CFA_RSP => cursor.sp.wrapping_add(offset),
        CFA_RBP | CFA_FRAME_POINTER => {
            if row.cfa_kind == CFA_FRAME_POINTER {
                stack.flags |= DWARF_STACK_USED_FRAME_POINTERS;
                if cursor.bp == 0 {
                    return 1; // frame-pointer chains end with rbp = 0
                }
            }
            if cursor.bp == 0 {
                return truncated(stack);
            }
            cursor.bp.wrapping_add(offset)
        }
        CFA_PLT => {
            let extra = if (cursor.ip & 15) >= row.rbp_offset as u64 {
                8
            } else {
                0
            };
            cursor.sp.wrapping_add(offset).wrapping_add(extra)
        }
        CFA_END => return 1,
        _ => return truncated(stack),
    };
    // The caller's frame is above this one; anything else is a broken walk.
    if cfa <= cursor.sp {
        return truncated(stack);
    }
    if row.rbp_kind == RBP_AT_CFA && row.cfa_kind != CFA_PLT && row.rbp_offset == -16 {
        // The usual frame (`push %rbp` right after the call): saved rbp and return address
        // are adjacent, one user read for both.
        let Some([saved_bp, return_address]) = window_pair(cursor, cfa - 16) else {
            return truncated(stack);
        };
        cursor.bp = saved_bp;
        cursor.sp = cfa;
        cursor.ip = return_address;
        return 0;
    }
    let Some(return_address) = window_u64(cursor, cfa - 8) else {
        return truncated(stack);
    };
    cursor.bp = match row.rbp_kind {
        RBP_SAME => cursor.bp,
        RBP_AT_CFA if row.cfa_kind != CFA_PLT => {
            match window_u64(cursor, cfa.wrapping_add(row.rbp_offset as i64 as u64)) {
                Some(bp) => bp,
                None => return truncated(stack),
            }
        }
        RBP_AT_CFA => cursor.bp,
        _ => 0,
    };
    cursor.sp = cfa;
    cursor.ip = return_address;
    0
}

/// Unwinds the user stack from the return probe's registers with the loaded tables, stores
/// it in `DWARF_STACKS` (once per distinct stack) and returns its key.
#[inline(always)]
fn unwind_with_tables(ctx: &RetProbeContext) -> Option<u64> {
    let (level, claim) = claim_walk_level()?;
    let key = walk_stack(ctx, level);
    release_walk_level(claim);
    key
}

/// [`unwind_with_tables`] with this CPU's walk state of `level`.
#[inline(always)]
fn walk_stack(ctx: &RetProbeContext, level: u32) -> Option<u64> {
    let regs = ctx.as_ptr() as *const aya_ebpf::bindings::pt_regs;
    let (ip, sp, bp) = unsafe { ((*regs).rip, (*regs).rsp, (*regs).rbp) };
    let stack = UNWIND_SCRATCH.get_ptr_mut(level)?;
    let window = UNWIND_WINDOW.get_ptr_mut(level)?;
    let generation = *UNWIND_STATE.get(1)?;
    // Nothing copied yet: the first read fills the window.
    unsafe { (*window).len = 0 };
    let mut memo: *mut WalkMemo = core::ptr::null_mut();
    if level == 0
        && let Some(entry) = WALK_MEMO.get_ptr_mut(walk_memo_slot(ip, sp, bp))
    {
        if let Some(hash) = recall_walk(
            unsafe { &*entry },
            unsafe { &mut *window },
            ip,
            sp,
            bp,
            generation,
        ) {
            return Some(hash);
        }
        // Rewritten by this walk (emptied until it is complete).
        unsafe { (*entry).ip = 0 };
        memo = entry;
    }
    let mut cursor = UnwindCursor {
        ip,
        sp,
        bp,
        stack,
        window,
        memo,
        generation,
        trail: if memo.is_null() { TRAIL_OFF } else { 0 },
        reach: 0,
        level,
    };
    unsafe {
        (*stack).depth = 0;
        (*stack).flags = 0;
        bpf_loop(
            UNWIND_MAX_FRAMES as u32 + 1,
            unwind_step as *mut c_void,
            &mut cursor as *mut UnwindCursor as *mut c_void,
            0,
        );
    }
    let stack = unsafe { &*stack };
    let depth = stack.depth as usize;
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325 ^ ((stack.flags as u64) << 32) ^ depth as u64;
    for i in 0..UNWIND_MAX_FRAMES {
        if i >= depth {
            break;
        }
        hash = (hash.rotate_left(23) ^ stack.frames[i]).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
    hash ^= hash >> 29;
    // 0 is an empty slot of `KNOWN_STACKS`.
    let hash = if hash == 0 { 1 } else { hash };
    // Stored before (by this CPU): nothing to do. Otherwise look, and store it if missing.
    let known = KNOWN_STACKS.get_ptr_mut((hash as u32) & (KNOWN_STACKS_ENTRIES - 1))?;
    if unsafe { *known } != hash {
        if DWARF_STACKS.get_ptr(&hash).is_none() {
            // BPF_NOEXIST: another CPU may have stored the same stack meanwhile; that is fine.
            if let Err(error) = DWARF_STACKS.insert(&hash, stack, BPF_NOEXIST as u64)
                && error != -17
            {
                return None;
            }
        }
        unsafe { *known = hash };
    }
    if cursor.trail != TRAIL_OFF && !memo.is_null() {
        // The registers last: the entry is valid once they match.
        let memo = unsafe { &mut *memo };
        memo.window_start = unsafe { (*window).start };
        memo.hash = hash;
        memo.generation = generation;
        memo.words = cursor.trail;
        // Whole cache lines, and never more than the window held.
        let extent = (u64::from(cursor.reach) * 8).div_ceil(64) * 64;
        memo.extent = extent.min(unsafe { (*window).len }) as u32;
        memo.sp = sp;
        memo.bp = bp;
        memo.ip = ip;
    }
    Some(hash)
}

#[inline(always)]
fn release(ctx: &ProbeContext, api: u8, address: u64, size: u64) -> u32 {
    if address == 0 {
        return 0;
    }
    let Some(pid_tgid) = traced_pid_tgid() else {
        return 0;
    };
    if inside_outer_call(pid_tgid, stack_pointer(ctx)) {
        return 0; // e.g. realloc(p, 0) calling free: the realloc event says it
    }
    if api == free_api::FREE
        && unsafe { core::ptr::read_volatile(&SAMPLE_BYTES) } != 0
        && SAMPLED_BLOCKS.remove(&address).is_err()
    {
        return 0; // not a sampled block
    }
    emit(Event {
        time_ns: unsafe { bpf_ktime_get_ns() },
        address,
        old_address: 0,
        size,
        stack_key: 0,
        tid: pid_tgid as u32,
        kind: EVENT_FREE,
        api,
        stack_kind: STACK_NONE,
        padding: 0,
    });
    0
}

/// Attached at `free` + the offset user space decoded (past the NULL check), or at `free`.
#[uprobe]
pub fn free_entry(ctx: ProbeContext) -> u32 {
    release(&ctx, free_api::FREE, arg(&ctx, 0), 0)
}

#[uprobe]
pub fn munmap_entry(ctx: ProbeContext) -> u32 {
    release(&ctx, free_api::MUNMAP, arg(&ctx, 0), arg(&ctx, 1))
}

/// Attached to libc's `exit` in launch mode: stops the process (SIGSTOP) so the recorder can
/// read its mappings before they are torn down; the recorder resumes it with SIGCONT.
#[uprobe]
pub fn exit_entry(_ctx: ProbeContext) -> u32 {
    let Some(pid_tgid) = traced_pid_tgid() else {
        return 0;
    };
    if unsafe { core::ptr::read_volatile(&STOP_AT_EXIT) } == 0 {
        return 0;
    }
    if let Some(slot) = EXIT_STOP.get_ptr_mut(0) {
        unsafe { *slot = (pid_tgid >> 32) as u32 };
        // SIGSTOP is 19 on every Linux architecture aya-ebpf targets here (x86-64).
        unsafe { bpf_send_signal(19) };
    }
    0
}

/// Does nothing, on every entry attach point: the cost of the probes alone.
#[uprobe]
pub fn empty_entry(_ctx: ProbeContext) -> u32 {
    0
}

/// Does nothing, on every return attach point.
#[uretprobe]
pub fn empty_return(_ctx: RetProbeContext) -> u32 {
    0
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}
