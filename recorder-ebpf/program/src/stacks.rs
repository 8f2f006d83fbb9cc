//! Which stack an allocation event carries, by `CAPTURE_STACKS` and `UNWIND_TABLES`: none, the
//! kernel's frame-pointer walk (`bpf_get_stackid` into `STACKS`), or the program's own walk
//! with the unwind tables (`unwind`).
//!
//! Owns: the choice and `STACKS`. Must not: fail an event for want of a stack (it goes out with
//! `STACK_NONE`, the loss counted under `LOST_STACK_UNAVAILABLE`).

use aya_ebpf::{
    bindings::BPF_F_USER_STACK,
    programs::{RetProbeContext, tracing::StackIdContext},
};
use memtrail_ebpf_abi::{
    CAPTURE_NONE, CAPTURE_READ_ONLY, LOST_STACK_UNAVAILABLE, STACK_FRAME_POINTER, STACK_NONE,
    STACK_READ_ONLY_BYTES, STACK_TABLES,
};

use crate::{
    access::{MapPtr, global, user_regs},
    emit::count_lost,
    maps::{CAPTURE_STACKS, STACKS, UNWIND_TABLES, UNWIND_WINDOW},
    unwind::{unwind_with_tables, window::copy_stack},
};

/// The `(stack_kind, stack_key)` of an allocation returning now.
#[inline(always)]
pub fn capture_stack(ctx: &RetProbeContext) -> (u8, u64) {
    let capture = global(&CAPTURE_STACKS);
    if capture == CAPTURE_NONE {
        (STACK_NONE, 0)
    } else if capture == CAPTURE_READ_ONLY {
        read_stack_only(ctx);
        (STACK_NONE, 0)
    } else if global(&UNWIND_TABLES) != 0 {
        match unwind_with_tables(ctx) {
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
    }
}

/// The benchmark's lower bound for a verified stack: copies the top `STACK_READ_ONLY_BYTES`
/// of the user stack, as a recognized walk's one check does, and keeps nothing. Bench-only
/// (no walk runs in such a recording, so no walk state needs claiming).
#[inline(always)]
fn read_stack_only(ctx: &RetProbeContext) {
    if let Some(window) = MapPtr::per_cpu(&UNWIND_WINDOW, 0) {
        let start = user_regs(ctx).rsp & !7;
        // SAFETY: in this capture mode nothing else uses `UNWIND_WINDOW` (no walk runs) and
        // nothing reads what is copied; a probe preempting this one on the same CPU (a fully
        // preemptible kernel) may copy into the same entry meanwhile, and only the window's
        // bytes, which no one reads, can then be mixed.
        copy_stack(
            unsafe { window.as_exclusive() },
            start,
            STACK_READ_ONLY_BYTES,
        );
    }
}
