//! The walk's copy of the user stack: the window, and reading words through it.
//!
//! Owns: `StackWindow` and `StackReader` (when to copy, how much, and recording each word a walk
//! reads into its memo entry). Must not: read past the end of a page the walk did not reach (a
//! read that runs off the top of the main thread's stack faults, and a faulting read costs
//! several times a successful one); the bounds are `memtrail_ebpf_arith`'s.

use memtrail_ebpf_arith::{
    FIRST_WINDOW_BYTES, WINDOW_WORDS, refill_bytes, window_offset, window_word,
};

use super::memo::{TRAIL_OFF, WALK_MEMO_WORDS, WalkMemo};
use crate::access::{copy_from_user, read_user_pair, read_user_u64};

/// A copy of `len` bytes of the user stack starting at `start` (8-byte aligned).
#[repr(C)]
pub struct StackWindow {
    pub start: u64,
    pub len: u64,
    pub words: [u64; WINDOW_WORDS],
}

/// Copies `len` bytes (at most `WINDOW_BYTES`) of user stack from `start` into `window`; on
/// failure the window is left empty.
#[inline(always)]
pub fn copy_stack(window: &mut StackWindow, start: u64, len: u64) -> bool {
    let copied = copy_from_user(&mut window.words, start, len);
    window.start = start;
    window.len = if copied { len } else { 0 };
    copied
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
    copy_stack(window, start, refill_bytes(start))
}

/// Reads a walk's stack words through its window, recording each into the walk's memo entry.
#[repr(C)]
pub struct StackReader<'a> {
    pub window: &'a mut StackWindow,
    /// The memo entry this walk is recorded into (`None`: not recorded).
    pub memo: Option<&'a mut WalkMemo>,
    /// Stack words recorded into `memo` so far; `TRAIL_OFF` once the walk cannot be memoized.
    pub trail: u32,
    /// Words of the window from its start up to the last one recorded into `memo`.
    pub reach: u32,
}

impl StackReader<'_> {
    /// Where the `bytes` bytes at `address` start in the window (a word index), refilling the
    /// window there when it does not hold them; `None` when they cannot come from a window
    /// (unaligned, or the read failed), for the caller to read them directly. A walk that
    /// needs more than its first window is not memoized.
    #[inline(always)]
    fn index(&mut self, address: u64, bytes: u64) -> Option<usize> {
        if address & 7 != 0 {
            self.trail = TRAIL_OFF;
            return None;
        }
        let offset = match window_offset(self.window.start, self.window.len, address, bytes) {
            Some(offset) => offset,
            None => {
                if self.window.len != 0 {
                    self.trail = TRAIL_OFF;
                }
                if !refill_window(self.window, address) {
                    self.trail = TRAIL_OFF;
                    return None;
                }
                0
            }
        };
        Some(window_word(offset))
    }

    /// The two user words at `address`, from the window.
    #[inline(always)]
    pub fn pair(&mut self, address: u64) -> Option<[u64; 2]> {
        let Some(index) = self.index(address, 16) else {
            return read_user_pair(address);
        };
        if index + 1 >= WINDOW_WORDS {
            return None;
        }
        let pair = [self.window.words[index], self.window.words[index + 1]];
        self.note_pair(index, pair);
        Some(pair)
    }

    /// The user word at `address`, from the window.
    #[inline(always)]
    pub fn word(&mut self, address: u64) -> Option<u64> {
        match self.index(address, 8) {
            Some(index) => {
                let value = self.window.words[index];
                self.note_word(index, value);
                Some(value)
            }
            None => read_user_u64(address),
        }
    }

    /// Records for the memo that the walk used the window word at `index`.
    #[inline(always)]
    fn note_word(&mut self, index: usize, value: u64) {
        let n = self.trail as usize;
        if n >= WALK_MEMO_WORDS {
            self.trail = TRAIL_OFF;
            return;
        }
        let Some(memo) = self.memo.as_deref_mut() else {
            self.trail = TRAIL_OFF;
            return;
        };
        memo.indexes[n] = index as u16;
        memo.values[n] = value;
        self.trail += 1;
        self.reach = self.reach.max(index as u32 + 1);
    }

    /// Records for the memo that the walk used the window words at `index` and `index + 1`:
    /// one bound check for both. (Two `note_word` calls in a row let the compiler carry the
    /// first one's `n + 1` into the second as `n != 47`, a bound the verifier cannot follow:
    /// it rejected the program. A walk that runs out of room is not memoized either way.)
    #[inline(always)]
    fn note_pair(&mut self, index: usize, pair: [u64; 2]) {
        let n = self.trail as usize;
        if n + 1 >= WALK_MEMO_WORDS {
            self.trail = TRAIL_OFF;
            return;
        }
        let Some(memo) = self.memo.as_deref_mut() else {
            self.trail = TRAIL_OFF;
            return;
        };
        memo.indexes[n] = index as u16;
        memo.values[n] = pair[0];
        memo.indexes[n + 1] = (index + 1) as u16;
        memo.values[n + 1] = pair[1];
        self.trail += 2;
        self.reach = self.reach.max(index as u32 + 2);
    }
}
