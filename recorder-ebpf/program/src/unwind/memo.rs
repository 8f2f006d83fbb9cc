//! The walk memo: a finished walk, remembered by its starting registers, so that a walk that
//! recurs is recognized by checking the stack words it read instead of walking again.
//!
//! Owns: `WalkMemo`, looking a walk up and recording one. Must not: recognize a walk without
//! checking every stack word it read against the live stack (the stack would be wrong), or be
//! used by a walk other than level 0 (the memo is per CPU, and only level 0's state is free of
//! a preempted walk).

use memtrail_ebpf_arith::{FIRST_WINDOW_BYTES, WINDOW_WORDS, memo_extent};

use super::window::{StackReader, StackWindow, copy_stack};

/// Entries of the per-CPU walk memo (a power of two). An entry is 536 bytes, per CPU: 134 KiB
/// a CPU, 17 MiB on a 128-CPU machine.
pub const WALK_MEMO_ENTRIES: u32 = 256;
/// Stack words one memoized walk may have used (a usual frame uses two: 24 such frames).
pub const WALK_MEMO_WORDS: usize = 48;
/// [`StackReader::trail`] of a walk that is not memoized.
pub const TRAIL_OFF: u32 = u32::MAX;

/// A finished walk, to be recognized when it recurs: a walk is a function of the registers it
/// starts from, the unwind tables (their generation) and the stack words it reads, so a walk
/// from the same registers that finds the same values at the same places in the copied stack
/// ends in the same stack, and only those words need checking (a few ns each where a walk
/// step costs ~30 ns). Allocations recur from the same call sites at the same stack depth,
/// so most walks are recognized. Only walks that used their first window alone are memoized.
#[repr(C)]
pub struct WalkMemo {
    /// The starting registers; `ip` 0: empty.
    pub ip: u64,
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
    pub indexes: [u16; WALK_MEMO_WORDS],
    pub values: [u64; WALK_MEMO_WORDS],
}

const _: () = assert!(core::mem::size_of::<WalkMemo>() == 536);

/// The key of the stack a memoized walk from these registers found, if `memo` holds one and
/// the stack words it read are unchanged (copied into `window`, which the walk then reuses).
#[inline(always)]
pub fn recall_walk(
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

impl StackReader<'_> {
    /// Records the finished walk from these registers, which found the stack `hash`, into its
    /// memo entry (if it has one and stayed memoizable).
    #[inline(always)]
    pub fn record_walk(self, ip: u64, sp: u64, bp: u64, hash: u64, generation: u32) {
        if self.trail == TRAIL_OFF {
            return;
        }
        let Some(memo) = self.memo else {
            return;
        };
        // The registers last: the entry is valid once they match.
        memo.window_start = self.window.start;
        memo.hash = hash;
        memo.generation = generation;
        memo.words = self.trail;
        // Whole cache lines, and never more than the window held.
        memo.extent = memo_extent(self.reach, self.window.len);
        memo.sp = sp;
        memo.bp = bp;
        memo.ip = ip;
    }
}
