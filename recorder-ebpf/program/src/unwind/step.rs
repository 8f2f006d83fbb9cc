//! One frame of the walk: the CFA rules of x86-64 unwind rows.
//!
//! Owns: `unwind_step`, the `bpf_loop` callback. Must not: accept a caller frame at or below
//! the current one (a broken walk would loop), or record more than `UNWIND_MAX_FRAMES` frames.

use aya_ebpf::cty::c_long;
use memtrail_ebpf_abi::{
    CFA_END, CFA_FRAME_POINTER, CFA_PLT, CFA_RBP, CFA_RSP, DWARF_STACK_TRUNCATED,
    DWARF_STACK_USED_FRAME_POINTERS, DwarfStack, RBP_AT_CFA, RBP_SAME, UNWIND_MAX_FRAMES,
};

use super::{UnwindCursor, tables::row_for};

/// Marks `stack` truncated and stops the walk.
#[inline(always)]
fn truncated(stack: &mut DwarfStack) -> c_long {
    stack.flags |= DWARF_STACK_TRUNCATED;
    1
}

/// One frame of the walk (a `bpf_loop` callback): records `ip`, then finds the caller's
/// registers with the row covering `ip`. Returns 1 to stop.
#[inline(never)]
pub extern "C" fn unwind_step(_index: u64, cursor: &mut UnwindCursor) -> c_long {
    if cursor.ip == 0 {
        return 1; // the outermost frame returned to nothing: complete
    }
    let depth = cursor.stack.depth as usize;
    if depth >= UNWIND_MAX_FRAMES {
        return truncated(cursor.stack);
    }
    cursor.stack.frames[depth & (UNWIND_MAX_FRAMES - 1)] = cursor.ip;
    cursor.stack.depth = depth as u32 + 1;

    let Some(row) = row_for(cursor.ip, cursor.generation, cursor.slot, cursor.level) else {
        return truncated(cursor.stack);
    };
    let offset = row.cfa_offset as i64 as u64;
    let cfa = match row.cfa_kind {
        CFA_RSP => cursor.sp.wrapping_add(offset),
        CFA_RBP | CFA_FRAME_POINTER => {
            if row.cfa_kind == CFA_FRAME_POINTER {
                cursor.stack.flags |= DWARF_STACK_USED_FRAME_POINTERS;
                if cursor.bp == 0 {
                    return 1; // frame-pointer chains end with rbp = 0
                }
            }
            if cursor.bp == 0 {
                return truncated(cursor.stack);
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
        _ => return truncated(cursor.stack),
    };
    // The caller's frame is above this one; anything else is a broken walk.
    if cfa <= cursor.sp {
        return truncated(cursor.stack);
    }
    if row.rbp_kind == RBP_AT_CFA && row.cfa_kind != CFA_PLT && row.rbp_offset == -16 {
        // The usual frame (`push %rbp` right after the call): saved rbp and return address
        // are adjacent, one user read for both.
        let Some([saved_bp, return_address]) = cursor.reader.pair(cfa - 16) else {
            return truncated(cursor.stack);
        };
        cursor.bp = saved_bp;
        cursor.sp = cfa;
        cursor.ip = return_address;
        return 0;
    }
    let Some(return_address) = cursor.reader.word(cfa - 8) else {
        return truncated(cursor.stack);
    };
    cursor.bp = match row.rbp_kind {
        RBP_SAME => cursor.bp,
        RBP_AT_CFA if row.cfa_kind != CFA_PLT => {
            match cursor
                .reader
                .word(cfa.wrapping_add(row.rbp_offset as i64 as u64))
            {
                Some(bp) => bp,
                None => return truncated(cursor.stack),
            }
        }
        RBP_AT_CFA => cursor.bp,
        _ => 0,
    };
    cursor.sp = cfa;
    cursor.ip = return_address;
    0
}
