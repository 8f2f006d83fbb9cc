//! Delivering events: the ring buffer, when to wake its reader, and the loss counters.
//!
//! Owns: `EVENTS`, `EMIT_COUNT` and `LOST_COUNTERS`. Must not: drop an event without counting
//! it, or wake the reader on every event (a wake-up per event made a pair cost about 19 us).

use aya_ebpf::bindings::{BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP};
use memtrail_ebpf_abi::{Event, LOST_RING_BUFFER_FULL};

use crate::{
    access::{MapPtr, global},
    maps::{EMIT_COUNT, EVENTS, LOST_COUNTERS, WAKEUP_THRESHOLD},
};

/// Counts an event not delivered, under `reason` (`memtrail_ebpf_abi::LOST_*`).
#[inline(always)]
pub fn count_lost(reason: u32) {
    if let Some(counter) = MapPtr::per_cpu(&LOST_COUNTERS, reason) {
        // Atomic although per CPU: on a fully preemptible kernel another thread's probe can
        // run on this CPU in the middle of this one.
        counter.fetch_add(1);
    }
}

/// Events between two looks at how much the ring buffer holds (per CPU, a power of two): a
/// look reads the consumer position the reader's CPU keeps writing (a cache-line transfer),
/// and a wake-up a few KiB late changes nothing against a threshold of about 1 MiB.
const WAKEUP_CHECK_EVERY: u64 = 32;

/// Writes `event` into the ring buffer, waking the reader only when a lot is pending.
#[inline(always)]
pub fn emit(event: Event) {
    emit_with(event, false);
}

/// Writes `event` and wakes the reader at once: a process event, which a stopped process
/// waits on.
#[inline(always)]
pub fn emit_now(event: Event) {
    emit_with(event, true);
}

#[inline(always)]
fn emit_with(event: Event, wake: bool) {
    let mut flags = if wake {
        BPF_RB_FORCE_WAKEUP as u64
    } else {
        BPF_RB_NO_WAKEUP as u64
    };
    if let Some(count) = MapPtr::per_cpu(&EMIT_COUNT, 0) {
        // Plain, not atomic: a count lost to a preempting probe only moves the next look.
        let n = count.read().wrapping_add(1);
        count.write(n);
        if n & (WAKEUP_CHECK_EVERY - 1) == 0 {
            let threshold = global(&WAKEUP_THRESHOLD);
            if EVENTS.query(BPF_RB_AVAIL_DATA as u64) > threshold {
                flags = BPF_RB_FORCE_WAKEUP as u64;
            }
        }
    }
    match EVENTS.reserve::<Event>(0) {
        Some(mut entry) => {
            // Field by field: a struct store compiles to a byte-loop `memset` for the zeros.
            let slot = entry.as_mut_ptr();
            // SAFETY: `slot` is the reserved entry: room for one aligned `Event`, ours alone
            // until it is submitted below; every field is written before that.
            unsafe {
                core::ptr::write_volatile(&raw mut (*slot).time_ns, event.time_ns);
                core::ptr::write_volatile(&raw mut (*slot).address, event.address);
                core::ptr::write_volatile(&raw mut (*slot).old_address, event.old_address);
                core::ptr::write_volatile(&raw mut (*slot).size, event.size);
                core::ptr::write_volatile(&raw mut (*slot).stack_key, event.stack_key);
                core::ptr::write_volatile(&raw mut (*slot).tid, event.tid);
                core::ptr::write_volatile(&raw mut (*slot).tgid, event.tgid);
                core::ptr::write_volatile(&raw mut (*slot).kind, event.kind);
                core::ptr::write_volatile(&raw mut (*slot).api, event.api);
                core::ptr::write_volatile(&raw mut (*slot).stack_kind, event.stack_kind);
                core::ptr::write_volatile(&raw mut (*slot).padding, 0);
                core::ptr::write_volatile(&raw mut (*slot).padding_wide, 0);
            }
            entry.submit(flags);
        }
        None => count_lost(LOST_RING_BUFFER_FULL),
    }
}
