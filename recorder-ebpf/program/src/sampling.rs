//! Sampling (`SAMPLE_BYTES` > 0): which allocations are reported.
//!
//! Each thread counts down the bytes it allocates from a number drawn from an exponential
//! distribution with mean `SAMPLE_BYTES`; the allocation that reaches zero is reported and its
//! address kept in `SAMPLED_BLOCKS` (by `calls`), and a new countdown is drawn. An allocation of
//! s bytes is thus reported with probability 1 - exp(-s / SAMPLE_BYTES) (a Poisson process over
//! allocated bytes, as jemalloc samples). The arithmetic is `memtrail_ebpf_arith`'s.
//!
//! Owns: `SAMPLE_COUNTDOWN`. Must not: decide what happens to a sampled block (`calls`).

use memtrail_ebpf_arith::{countdown_after, sample_countdown};

use crate::{
    access::{MapPtr, random_u32},
    maps::SAMPLE_COUNTDOWN,
};

/// Bytes until the next sampled allocation: exponential with mean `sample_bytes`, at least 1.
#[inline(always)]
fn draw_countdown(sample_bytes: u64) -> u64 {
    sample_countdown(sample_bytes, random_u32())
}

/// Counts `size` bytes against this thread's countdown; true when the allocation is sampled
/// (the countdown reached zero inside it), a new countdown then starting after it.
#[inline(always)]
pub fn take_sample(pid_tgid: u64, size: u64, sample_bytes: u64) -> bool {
    match MapPtr::lru_hash(&SAMPLE_COUNTDOWN, &pid_tgid) {
        // Only this thread's probes use its countdown, one at a time.
        Some(left) => match countdown_after(left.read(), size) {
            Some(rest) => {
                left.write(rest);
                false
            }
            None => {
                left.write(draw_countdown(sample_bytes));
                true
            }
        },
        None => {
            let first = draw_countdown(sample_bytes);
            let (hit, left) = match countdown_after(first, size) {
                Some(rest) => (false, rest),
                None => (true, draw_countdown(sample_bytes)),
            };
            let _ = SAMPLE_COUNTDOWN.insert(&pid_tgid, &left, 0);
            hit
        }
    }
}
