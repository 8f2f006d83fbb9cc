//! What each probed call means: the entry half and the return half of allocations, releases,
//! and the stop at exit.
//!
//! Shape of a traced allocation: an entry probe stores the call in its thread's slot (`slots`);
//! the shared return probe `alloc_return` reads the result, captures the user stack (at
//! return, so the allocator's direct caller is the first frame), marks the slot idle and emits
//! the event. Allocator functions that call each other (glibc's realloc calls free and
//! tail-calls malloc, reallocarray tail-calls realloc, malloc calls mmap) are reported once, as
//! the outermost call: a call is "nested" when a pending call of the same thread sits at a
//! higher stack pointer within `NESTED_CALL_WINDOW` bytes, and a "tail call" when it sits at the
//! same one. Frees and munmaps have entry probes only and carry no stack.
//!
//! Owns: the decisions (report or not, as what, sampled or not) and `SAMPLED_BLOCKS`. Must not: capture stacks (`stacks`) or write to the ring buffer other than
//! through `emit`; or leave a slot busy once its outermost call has returned (the thread's
//! next call would be taken for a nested one and not reported).

use memtrail_ebpf_abi::{
    EVENT_ALLOC, EVENT_FREE, EVENT_REALLOC, Event, LOST_MISSING_ENTRY, LOST_PENDING_TABLE_FULL,
    LOST_SAMPLE_TABLE_FULL, OWNER_BUSY, STACK_NONE, STOP_PROBE, alloc_api, free_api,
};
use memtrail_ebpf_arith::is_nested_call;

use aya_ebpf::{
    EbpfContext,
    bindings::pt_regs,
    helpers::bpf_get_current_pid_tgid,
    programs::{ProbeContext, RetProbeContext},
};

use crate::{
    access::{global, now_ns, read_user_u64, user_regs},
    emit::{count_lost, emit},
    maps::{MIN_SIZE, SAMPLE_BYTES, SAMPLED_BLOCKS, STOP_AT_EXIT, TARGET_TGID},
    processes::stop_current,
    sampling::take_sample,
    slots::{
        CallEntry, array_slot, busy_owner, busy_slot, hash_slot, idle_owner, insert_hash_slot,
    },
    stacks::capture_stack,
};

/// `Some(pid_tgid)` when the current task belongs to the traced process.
#[inline(always)]
fn traced_pid_tgid() -> Option<u64> {
    let pid_tgid = bpf_get_current_pid_tgid();
    let target = global(&TARGET_TGID);
    if target != 0 && (pid_tgid >> 32) as u32 != target {
        return None;
    }
    Some(pid_tgid)
}

#[inline(always)]
fn stack_pointer<C: EbpfContext>(ctx: &C) -> u64 {
    let regs: &pt_regs = user_regs(ctx);
    regs.rsp
}

/// True when a probed allocator call of this thread is running at a higher stack pointer
/// (the current call is made from inside it and must not be reported on its own).
#[inline(always)]
fn inside_outer_call(pid_tgid: u64, sp: u64) -> bool {
    match busy_slot(pid_tgid) {
        Some(outer) => is_nested_call(outer.entry_sp(), sp),
        None => false,
    }
}

/// Entry half of every allocation function: remember what the return half needs.
#[inline(always)]
pub fn enter(ctx: &ProbeContext, api: u8, size: u64, old_address: u64, result_slot: u64) -> u32 {
    let Some(pid_tgid) = traced_pid_tgid() else {
        return 0;
    };
    let sp = stack_pointer(ctx);
    let owner = busy_owner(pid_tgid);
    let call = CallEntry {
        entry_sp: sp,
        size,
        old_address,
        result_slot,
        api,
    };
    if let Some(outer) = busy_slot(pid_tgid) {
        let outer_sp = outer.entry_sp();
        if outer_sp == sp {
            // Tail call from the outer function: same frame, same return.
            outer.add_tail_call();
            return 0;
        }
        if is_nested_call(outer_sp, sp) {
            return 0;
        }
        // Stale (its return was never seen): replaced, the slot stays this thread's.
        outer.store(call);
        return 0;
    }
    // No call pending: take this thread's array entry if it is idle (whoever owned it last),
    // with a compare-and-swap of the owner word, so that of two colliding threads exactly one
    // gets it and only the holder writes the other fields.
    if let Some(entry) = array_slot(pid_tgid) {
        let current = entry.owner();
        if current & OWNER_BUSY == 0 && entry.swap_owner(current, owner) {
            entry.store(call);
            return 0;
        }
    }
    // Held by another thread's call: this thread's slot in the hash map.
    match hash_slot(pid_tgid) {
        Some(slot) => {
            slot.store(call);
            slot.set_owner(owner);
        }
        None => {
            if !insert_hash_slot(pid_tgid, call) {
                count_lost(LOST_PENDING_TABLE_FULL);
            }
        }
    }
    0
}

/// Return half of every allocation function (the `alloc_return` program).
#[inline(always)]
pub fn finish(ctx: &RetProbeContext) -> u32 {
    let Some(pid_tgid) = traced_pid_tgid() else {
        return 0;
    };
    let sp = stack_pointer(ctx);
    let Some(pending) = busy_slot(pid_tgid) else {
        // No slot, or an idle one: the entry of this return was not seen.
        count_lost(LOST_MISSING_ENTRY);
        return 0;
    };
    let mut call = pending.read();
    if sp <= call.entry_sp {
        // Return of a call nested inside the pending one; the outer call is still running.
        return 0;
    }
    if call.tail_calls > 0 {
        // The tail-called function's return: same place, the outer one follows.
        pending.set_tail_calls(call.tail_calls - 1);
        return 0;
    }
    // Done: the slot goes idle (and stays this thread's until another thread takes it; `call`
    // is a copy, read before another thread can take the slot).
    pending.set_owner(idle_owner(pid_tgid));

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
            match read_user_u64(call.result_slot) {
                Some(address) => (EVENT_ALLOC, address),
                None => return 0,
            }
        }
        alloc_api::MMAP => {
            if returned == u64::MAX {
                return 0; // MAP_FAILED
            }
            (EVENT_ALLOC, returned)
        }
        alloc_api::REALLOC | alloc_api::REALLOCARRAY | alloc_api::RALLOCX => {
            (EVENT_REALLOC, returned)
        }
        alloc_api::XALLOCX => {
            // Returns the block's size after the attempt (resized or not); the block stays.
            call.size = returned;
            (EVENT_REALLOC, call.old_address)
        }
        _ => (EVENT_ALLOC, returned),
    };
    if kind == EVENT_ALLOC {
        if address == 0 {
            return 0; // failed allocation: nothing to track
        }
        if call.size < global(&MIN_SIZE) {
            return 0;
        }
    }
    let mut old_address = call.old_address;
    let sample_bytes = global(&SAMPLE_BYTES);
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
            time_ns: now_ns(),
            address: old_address,
            old_address: 0,
            size: 0,
            stack_key: 0,
            tid: pid_tgid as u32,
            tgid: (pid_tgid >> 32) as u32,
            kind: EVENT_FREE,
            api: free_api::FREE,
            stack_kind: STACK_NONE,
            padding: 0,
            padding_wide: 0,
        });
        return 0;
    }
    let (stack_kind, stack_key) = capture_stack(ctx);
    emit(Event {
        time_ns: now_ns(),
        address,
        old_address,
        size: call.size,
        stack_key,
        tid: pid_tgid as u32,
        tgid: (pid_tgid >> 32) as u32,
        kind,
        api: call.api,
        stack_kind,
        padding: 0,
        padding_wide: 0,
    });
    0
}

/// A free or munmap of `address` (frees inside an allocator call are that call's business).
#[inline(always)]
pub fn release(ctx: &ProbeContext, api: u8, address: u64, size: u64) -> u32 {
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
        && global(&SAMPLE_BYTES) != 0
        && SAMPLED_BLOCKS.remove(&address).is_err()
    {
        return 0; // not a sampled block
    }
    emit(Event {
        time_ns: now_ns(),
        address,
        old_address: 0,
        size,
        stack_key: 0,
        tid: pid_tgid as u32,
        tgid: (pid_tgid >> 32) as u32,
        kind: EVENT_FREE,
        api,
        stack_kind: STACK_NONE,
        padding: 0,
        padding_wide: 0,
    });
    0
}

/// In launch mode (`STOP_AT_EXIT`), stops the traced process entering `exit()` (SIGSTOP) so the
/// recorder can read its mappings before they are torn down; the recorder resumes it. The
/// same program stops a launched process once the loader has mapped its libraries.
#[inline(always)]
pub fn stop_at_exit() -> u32 {
    let Some(pid_tgid) = traced_pid_tgid() else {
        return 0;
    };
    if global(&STOP_AT_EXIT) == 0 {
        return 0;
    }
    stop_current((pid_tgid >> 32) as u32, STOP_PROBE);
    0
}
