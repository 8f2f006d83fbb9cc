//! memtrail's eBPF program: uprobes on the allocator functions of one process.
//!
//! Owns: turning allocator calls into [`Event`]s in the ring buffer, per-thread entry state,
//! stack capture and loss counting. Must not: format anything, allocate stack ids of its own,
//! or drop an event silently (every event not delivered is counted in `LOST_COUNTERS`).
//!
//! Shape of a traced allocation: an entry probe (`*_entry`) stores a [`PendingCall`] keyed by
//! `pid_tgid`; the shared return probe `alloc_return` reads the result, captures the user stack
//! (at return, so the allocator's direct caller is the first frame) and emits the event.
//! Allocator functions that call each other (glibc's realloc calls free and tail-calls malloc,
//! reallocarray tail-calls realloc, malloc calls mmap) are reported once, as the outermost
//! call: a call is "nested" when a pending call of the same thread sits at a higher stack
//! pointer within `NESTED_CALL_WINDOW` bytes, and a "tail call" when it sits at the same one.
//! Frees and munmaps have entry probes only and carry no stack.
//!
//! Layouts, names and constants come from `memtrail-ebpf-abi`; user space sets the globals at
//! load time. x86-64 only (reads `rsp` from `pt_regs`).
#![no_std]
#![no_main]

use aya_ebpf::{
    EbpfContext,
    bindings::{BPF_F_USER_STACK, BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP},
    helpers::{bpf_get_current_pid_tgid, bpf_ktime_get_ns, bpf_probe_read_user, bpf_send_signal},
    macros::{map, uprobe, uretprobe},
    maps::{Array, HashMap, PerCpuArray, RingBuf, StackTrace},
    programs::{ProbeContext, RetProbeContext, tracing::StackIdContext},
};
use memtrail_ebpf_abi::{
    DEFAULT_RING_BUFFER_BYTES, EVENT_ALLOC, EVENT_FREE, EVENT_REALLOC, Event, LOST_COUNTER_COUNT,
    LOST_MISSING_ENTRY, LOST_PENDING_TABLE_FULL, LOST_RING_BUFFER_FULL, LOST_STACK_UNAVAILABLE,
    MAP_ANONYMOUS, NO_STACK_ID, PENDING_CALLS_CAPACITY, PendingCall, STACKS_CAPACITY, alloc_api,
    free_api,
};

/// A pending call at most this many bytes above the current stack pointer is an outer allocator
/// call still running (nested allocator calls are a few hundred bytes deep). Farther away it is
/// stale (its return was never seen) and is replaced.
const NESTED_CALL_WINDOW: u64 = 8192;

#[map(name = "EVENTS")]
static EVENTS: RingBuf = RingBuf::with_byte_size(DEFAULT_RING_BUFFER_BYTES, 0);

#[map(name = "STACKS")]
static STACKS: StackTrace = StackTrace::with_max_entries(STACKS_CAPACITY, 0);

#[map(name = "PENDING_CALLS")]
static PENDING_CALLS: HashMap<u64, PendingCall> =
    HashMap::with_max_entries(PENDING_CALLS_CAPACITY, 0);

#[map(name = "LOST_COUNTERS")]
static LOST_COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(LOST_COUNTER_COUNT, 0);

#[map(name = "EXIT_STOP")]
static EXIT_STOP: Array<u32> = Array::with_max_entries(1, 0);

/// Set by user space at load time (see `memtrail_ebpf_abi::GLOBAL_*`).
#[unsafe(no_mangle)]
static TARGET_TGID: u32 = 0;
#[unsafe(no_mangle)]
static MIN_SIZE: u64 = 0;
#[unsafe(no_mangle)]
static WAKEUP_THRESHOLD: u64 = 1 << 20;
#[unsafe(no_mangle)]
static STOP_AT_EXIT: u32 = 0;

#[inline(always)]
fn count_lost(reason: u32) {
    if let Some(counter) = LOST_COUNTERS.get_ptr_mut(reason) {
        // Per-CPU slot: no other writer while this program runs on this CPU.
        unsafe { *counter += 1 };
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

/// True when a probed allocator call of this thread is running at a higher stack pointer
/// (the current call is made from inside it and must not be reported on its own).
#[inline(always)]
fn inside_outer_call(pid_tgid: u64, sp: u64) -> bool {
    match PENDING_CALLS.get_ptr(&pid_tgid) {
        Some(outer) => {
            let outer_sp = unsafe { (*outer).entry_sp };
            outer_sp > sp && outer_sp - sp < NESTED_CALL_WINDOW
        }
        None => false,
    }
}

/// Writes `event` into the ring buffer, waking the reader only when a lot is pending.
#[inline(always)]
fn emit(event: Event) {
    let threshold = unsafe { core::ptr::read_volatile(&WAKEUP_THRESHOLD) };
    let flags = if EVENTS.query(BPF_RB_AVAIL_DATA as u64) > threshold {
        BPF_RB_FORCE_WAKEUP
    } else {
        BPF_RB_NO_WAKEUP
    } as u64;
    match EVENTS.reserve::<Event>(0) {
        Some(mut entry) => {
            entry.write(event);
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
    if let Some(outer) = PENDING_CALLS.get_ptr_mut(&pid_tgid) {
        let outer_sp = unsafe { (*outer).entry_sp };
        if outer_sp == sp {
            // Tail call from the outer function: same frame, same return.
            unsafe { (*outer).tail_calls = (*outer).tail_calls.saturating_add(1) };
            return 0;
        }
        if outer_sp > sp && outer_sp - sp < NESTED_CALL_WINDOW {
            return 0;
        }
    }
    let call = PendingCall {
        entry_sp: sp,
        size,
        old_address,
        result_slot,
        api,
        tail_calls: 0,
        padding: [0; 6],
    };
    if PENDING_CALLS.insert(&pid_tgid, &call, 0).is_err() {
        count_lost(LOST_PENDING_TABLE_FULL);
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
    let Some(pending) = PENDING_CALLS.get_ptr_mut(&pid_tgid) else {
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
    let _ = PENDING_CALLS.remove(&pid_tgid);

    if call.api == alloc_api::NOT_REPORTED {
        return 0;
    }
    let returned: u64 = ctx.ret();
    let (kind, address) = match call.api {
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
    let stack_id = match ctx.get_stackid(&STACKS, BPF_F_USER_STACK as u64) {
        Ok(id) => id as i32,
        Err(_) => {
            count_lost(LOST_STACK_UNAVAILABLE);
            NO_STACK_ID
        }
    };
    emit(Event {
        time_ns: unsafe { bpf_ktime_get_ns() },
        address,
        old_address: call.old_address,
        size: call.size,
        stack_id,
        tid: pid_tgid as u32,
        kind,
        api: call.api,
        padding: [0; 6],
    });
    0
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
    emit(Event {
        time_ns: unsafe { bpf_ktime_get_ns() },
        address,
        old_address: 0,
        size,
        stack_id: NO_STACK_ID,
        tid: pid_tgid as u32,
        kind: EVENT_FREE,
        api,
        padding: [0; 6],
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

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}
