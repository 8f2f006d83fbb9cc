//! The plain integer arithmetic of memtrail's eBPF program (`recorder-ebpf/program`): the
//! sampler's exponential draw, the call-nesting test, the saturating array size, the hashes
//! and slot indexes of the per-CPU caches, and the bounds of the stack windows the unwinder
//! copies.
//!
//! Owns: functions of their arguments only, so they can be unit-tested on the host
//! (`cargo test --manifest-path recorder-ebpf/arith/Cargo.toml`, run by .ci/run) and compiled
//! into the eBPF object unchanged. Must not: use maps, helpers, aya or anything else of the
//! kernel, floating point, 128-bit integers or division by a variable (BPF has none of them),
//! or loops without a constant bound (the verifier must see every loop end). Every function is
//! `#[inline(always)]`: the program is one function per probe.
#![cfg_attr(not(test), no_std)]

/// ln 2 in Q16 fixed point.
pub const LN_2_Q16: u64 = 45426;

/// -ln(U) in Q16 fixed point, for U = (random + 1) / 2^32, uniform in (0, 1]: an exponential
/// variate with mean 1 (at most about 22.2). BPF has no floating point: log2 is computed as its
/// integer part plus 16 fraction bits by repeated squaring of the mantissa.
#[inline(always)]
pub fn exponential_q16(random: u32) -> u64 {
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

/// Bytes until the next sampled allocation, from one random draw: exponential with mean
/// `sample_bytes`, at least 1. `sample_bytes` is at most `MAX_SAMPLE_BYTES` (2^40) of the abi,
/// which keeps the product within 64 bits.
#[inline(always)]
pub fn sample_countdown(sample_bytes: u64, random: u32) -> u64 {
    ((sample_bytes * exponential_q16(random)) >> 16) + 1
}

/// A thread's countdown after it allocates `size` bytes: `Some(bytes still to go)`, or `None`
/// when the countdown runs out inside this allocation (it is sampled, and a new countdown is
/// drawn).
#[inline(always)]
pub fn countdown_after(left: u64, size: u64) -> Option<u64> {
    if size < left { Some(left - size) } else { None }
}

/// A pending call at most this many bytes above the current stack pointer is an outer allocator
/// call still running (nested allocator calls are a few hundred bytes deep). Farther away it is
/// stale (its return was never seen) and is replaced.
pub const NESTED_CALL_WINDOW: u64 = 8192;

/// True when a call entered at stack pointer `sp` is made from inside a pending call entered at
/// `outer_sp` (a higher stack pointer, within [`NESTED_CALL_WINDOW`]). The same stack pointer is
/// a tail call, not a nested one.
#[inline(always)]
pub fn is_nested_call(outer_sp: u64, sp: u64) -> bool {
    outer_sp > sp && outer_sp - sp < NESTED_CALL_WINDOW
}

/// `count * size`, saturating. Done in 32-bit halves: BPF has no 128-bit multiply, which
/// `u64::saturating_mul` and a division-based overflow check both compile to.
#[inline(always)]
pub fn array_bytes(count: u64, size: u64) -> u64 {
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

/// The 64-bit golden-ratio multiplier the hashes below mix with.
const GOLDEN: u64 = 0x9e37_79b9_7f4a_7c15;

/// The slot of the walk memo (`entries`, a power of two) for a walk starting from these
/// registers.
#[inline(always)]
pub fn walk_memo_slot(ip: u64, sp: u64, bp: u64, entries: u32) -> u32 {
    let mixed = (ip ^ sp.rotate_left(17) ^ bp.rotate_left(41)).wrapping_mul(GOLDEN);
    ((mixed >> 40) as u32) & (entries - 1)
}

/// The slot of the row cache (`entries`, a power of two) for return address `ip`.
#[inline(always)]
pub fn row_cache_slot(ip: u64, entries: u32) -> u32 {
    ((ip.wrapping_mul(GOLDEN) >> 40) as u32) & (entries - 1)
}

/// The slot of the known-stacks cache (`entries`, a power of two) for a stack's hash (already
/// mixed: its low bits are used as they are).
#[inline(always)]
pub fn known_stack_slot(hash: u64, entries: u32) -> u32 {
    (hash as u32) & (entries - 1)
}

/// The key of an unwound stack: a hash of its first `depth` frames (at most `N`), its depth and
/// its flags. Never 0 (0 marks an empty slot of the known-stacks cache).
#[inline(always)]
pub fn stack_hash<const N: usize>(frames: &[u64; N], depth: usize, flags: u32) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325 ^ ((flags as u64) << 32) ^ depth as u64;
    // A constant bound with an early exit: the verifier sees the loop end.
    for (i, frame) in frames.iter().enumerate() {
        if i >= depth {
            break;
        }
        hash = (hash.rotate_left(23) ^ frame).wrapping_mul(GOLDEN);
    }
    finish_stack_hash(hash)
}

#[inline(always)]
fn finish_stack_hash(mut hash: u64) -> u64 {
    hash ^= hash >> 29;
    if hash == 0 { 1 } else { hash }
}

/// Bytes of user stack copied by the first read of a walk. A `bpf_probe_read_user` costs far
/// more than the bytes it copies (measured here: about 180 ns for 256 bytes, 200 ns for 1 KiB),
/// so the walk copies a window of the stack and reads the saved registers from it: one read
/// for the frames of a typical allocating call path (within 1 KiB of the stack pointer).
pub const FIRST_WINDOW_BYTES: u64 = 1024;
/// Later reads copy up to the end of the page (at most this much): never past it, since a read
/// that runs off the top of the main thread's stack faults, and a faulting read costs several
/// times a successful one.
pub const WINDOW_BYTES: u64 = 4096;
/// 64-bit words in a window.
pub const WINDOW_WORDS: usize = WINDOW_BYTES as usize / 8;
/// The page size of the traced process (x86-64).
pub const PAGE_BYTES: u64 = 4096;

/// Bytes a window refill copies from `start` (8-byte aligned, not the walk's first read): the
/// rest of `start`'s page, or [`WINDOW_BYTES`] (so into the next page) when fewer than 16 bytes
/// are left in it (a frame crossing pages: both are in use).
#[inline(always)]
pub fn refill_bytes(start: u64) -> u64 {
    let to_page_end = PAGE_BYTES - (start & (PAGE_BYTES - 1));
    // The upper bound is for the verifier (it holds already).
    if (16..=WINDOW_BYTES).contains(&to_page_end) {
        to_page_end
    } else {
        WINDOW_BYTES
    }
}

/// Where the `bytes` bytes at `address` start in a window of `window_len` bytes copied from
/// `window_start`: `Some(byte offset)` when the window holds all of them, else `None`.
#[inline(always)]
pub fn window_offset(window_start: u64, window_len: u64, address: u64, bytes: u64) -> Option<u64> {
    let offset = address.wrapping_sub(window_start);
    if offset >= window_len || window_len - offset < bytes {
        None
    } else {
        Some(offset)
    }
}

/// The window word at byte `offset`, masked so the verifier sees the bound (callers' offsets
/// are already below [`WINDOW_BYTES`]).
#[inline(always)]
pub fn window_word(offset: u64) -> usize {
    (offset >> 3) as usize & (WINDOW_WORDS - 1)
}

/// Bytes of window a memoized walk's check copies, for a walk that read words below word
/// `reach`: whole 64-byte cache lines, and never more than the `window_len` bytes the window
/// held.
#[inline(always)]
pub fn memo_extent(reach: u32, window_len: u64) -> u32 {
    let extent = (u64::from(reach) * 8).div_ceil(64) * 64;
    extent.min(window_len) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fixed pseudo-random sequence (64-bit LCG, high half), so failures reproduce.
    fn randoms(count: usize, seed: u64) -> Vec<u32> {
        let mut state = seed;
        (0..count)
            .map(|_| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (state >> 32) as u32
            })
            .collect()
    }

    fn exact_exponential_q16(random: u32) -> f64 {
        let u = (random as f64 + 1.0) / 4294967296.0;
        -u.ln() * 65536.0
    }

    #[test]
    fn exponential_exact_at_powers_of_two() {
        // U = 1: -ln 1 = 0.
        assert_eq!(exponential_q16(u32::MAX), 0);
        // U = 1/2: ln 2.
        assert_eq!(exponential_q16((1 << 31) - 1), LN_2_Q16);
        // U = 2^-32, the smallest: 32 ln 2, the largest value.
        assert_eq!(exponential_q16(0), 32 * LN_2_Q16);
        for k in 0..32u32 {
            // U = 2^-k.
            let random = ((1u64 << (32 - k)) - 1) as u32;
            assert_eq!(
                exponential_q16(random),
                (u64::from(k) * LN_2_Q16),
                "k = {k}"
            );
        }
    }

    #[test]
    fn exponential_close_to_minus_ln() {
        let mut worst = 0f64;
        let edges = [
            0,
            1,
            2,
            3,
            1000,
            1 << 16,
            (1 << 31) - 2,
            1 << 31,
            u32::MAX - 1,
            u32::MAX,
        ];
        for random in randoms(20_000, 1).into_iter().chain(edges) {
            let error = (exponential_q16(random) as f64 - exact_exponential_q16(random)).abs();
            worst = worst.max(error);
        }
        // Truncation in 16 squarings and in the final product: a few Q16 units, i.e. about
        // 1e-4 of the mean; far below what the sampling test in tests/ could notice.
        assert!(worst < 4.0, "worst error {worst} Q16 units");
    }

    #[test]
    fn exponential_is_non_increasing() {
        let mut inputs = randoms(5_000, 2);
        inputs.extend([0, 1, u32::MAX - 1, u32::MAX]);
        inputs.sort_unstable();
        for pair in inputs.windows(2) {
            assert!(
                exponential_q16(pair[0]) >= exponential_q16(pair[1]),
                "{} -> {}, {} -> {}",
                pair[0],
                exponential_q16(pair[0]),
                pair[1],
                exponential_q16(pair[1])
            );
        }
    }

    #[test]
    fn exponential_has_mean_one() {
        // Evenly spaced U over (0, 1]: the integral of -ln U is 1.
        let steps = 1u64 << 16;
        let total: u64 = (0..steps)
            .map(|i| exponential_q16(((i << 16) | 0x8000) as u32))
            .sum();
        let mean = total as f64 / steps as f64 / 65536.0;
        assert!((mean - 1.0).abs() < 1e-3, "mean {mean}");
    }

    #[test]
    fn countdown_tiny_mean_is_small_and_positive() {
        // Mean 1 byte: every allocation is sampled but the countdown never reaches 0.
        for random in randoms(2_000, 3).into_iter().chain([0, u32::MAX]) {
            let countdown = sample_countdown(1, random);
            assert!((1..=23).contains(&countdown), "{countdown}");
        }
        assert_eq!(sample_countdown(1, u32::MAX), 1);
        assert_eq!(sample_countdown(1, 0), 23); // 1 + floor(22.18)
        assert_eq!(sample_countdown(0, 0), 1);
    }

    #[test]
    fn countdown_huge_mean_does_not_overflow() {
        // The largest mean the recorder accepts, with the largest draw (32 ln 2 = 22.18).
        let max = memtrail_ebpf_abi::MAX_SAMPLE_BYTES;
        let countdown = sample_countdown(max, 0);
        let expected = (max as f64 * 32.0 * std::f64::consts::LN_2) as u64;
        assert!(
            countdown.abs_diff(expected) < expected / 10_000,
            "{countdown} vs {expected}"
        );
        assert!(countdown > max * 22 && countdown < max * 23);
        assert_eq!(sample_countdown(max, u32::MAX), 1);
    }

    #[test]
    fn countdown_mean_is_sample_bytes() {
        for sample_bytes in [4096u64, 256 << 10, 1 << 30] {
            let draws = randoms(200_000, sample_bytes);
            let total: u128 = draws
                .iter()
                .map(|&r| u128::from(sample_countdown(sample_bytes, r)))
                .sum();
            let mean = total as f64 / draws.len() as f64;
            // Standard error of a mean of 200,000 exponentials: 0.22%.
            let relative = (mean / sample_bytes as f64 - 1.0).abs();
            assert!(relative < 0.01, "mean {mean} for {sample_bytes}");
        }
    }

    #[test]
    fn countdown_runs_out_at_the_last_byte() {
        assert_eq!(countdown_after(100, 99), Some(1));
        assert_eq!(countdown_after(100, 100), None);
        assert_eq!(countdown_after(100, 101), None);
        assert_eq!(countdown_after(1, 0), Some(1));
        assert_eq!(countdown_after(u64::MAX, u64::MAX - 1), Some(1));
    }

    #[test]
    fn nested_call_window_edges() {
        let sp = 0x7ffc_0000_1000;
        assert!(!is_nested_call(sp, sp), "same sp is a tail call");
        assert!(is_nested_call(sp + 8, sp));
        assert!(is_nested_call(sp + NESTED_CALL_WINDOW - 1, sp));
        assert!(!is_nested_call(sp + NESTED_CALL_WINDOW, sp), "stale");
        assert!(!is_nested_call(sp - 8, sp), "outer call below: stale");
        assert!(!is_nested_call(0, u64::MAX));
        assert!(!is_nested_call(u64::MAX, 0));
    }

    #[test]
    fn array_bytes_matches_saturating_u128() {
        let edges = [
            0u64,
            1,
            2,
            0xffff_ffff,
            1 << 32,
            (1 << 32) + 1,
            1 << 33,
            (1 << 33) - 1,
            1 << 63,
            u64::MAX - 1,
            u64::MAX,
        ];
        let mut pairs: Vec<(u64, u64)> = edges
            .iter()
            .flat_map(|&a| edges.iter().map(move |&b| (a, b)))
            .collect();
        let r = randoms(8_000, 4);
        for chunk in r.chunks(4) {
            let a = (u64::from(chunk[0]) << 32 | u64::from(chunk[1])) >> (chunk[0] % 64);
            let b = (u64::from(chunk[2]) << 32 | u64::from(chunk[3])) >> (chunk[2] % 64);
            pairs.push((a, b));
        }
        for (count, size) in pairs {
            let expected = (u128::from(count) * u128::from(size)).min(u128::from(u64::MAX)) as u64;
            assert_eq!(array_bytes(count, size), expected, "{count} * {size}");
        }
    }

    #[test]
    fn stack_hash_is_deterministic_and_never_zero() {
        let frames = [0x5555_0000_1234u64, 0x7f00_0012_3456, 0x5555_0000_0042, 0];
        assert_eq!(stack_hash(&frames, 3, 0), stack_hash(&frames, 3, 0));
        // The frames past `depth` do not count.
        let mut other = frames;
        other[3] = 0xdead_beef;
        assert_eq!(stack_hash(&frames, 3, 0), stack_hash(&other, 3, 0));
        assert_ne!(stack_hash(&frames, 3, 0), 0);
        assert_ne!(stack_hash(&[0u64; 4], 0, 0), 0);
        assert_eq!(finish_stack_hash(0), 1);
    }

    #[test]
    fn stack_hash_tells_stacks_apart() {
        let frames = [
            0x5555_0000_1234u64,
            0x7f00_0012_3456,
            0x5555_0000_0042,
            0x5555_0000_0100,
        ];
        let base = stack_hash(&frames, 4, 0);
        let swapped = [frames[1], frames[0], frames[2], frames[3]];
        assert_ne!(base, stack_hash(&swapped, 4, 0), "order");
        assert_ne!(base, stack_hash(&frames, 3, 0), "depth");
        assert_ne!(base, stack_hash(&frames, 4, 1), "truncated flag");
        assert_ne!(
            stack_hash(&frames, 4, 1),
            stack_hash(&frames, 4, 2),
            "flags"
        );
        // One-byte differences in any frame (neighbouring call sites).
        for i in 0..4 {
            let mut moved = frames;
            moved[i] += 1;
            assert_ne!(base, stack_hash(&moved, 4, 0), "frame {i}");
        }
        // Many stacks that differ only in their innermost call site: no collisions.
        let mut seen = std::collections::HashSet::new();
        for site in 0..100_000u64 {
            let mut stack = frames;
            stack[0] = 0x5555_0000_0000 + site * 5;
            assert!(seen.insert(stack_hash(&stack, 4, 0)), "collision at {site}");
        }
    }

    /// Occupied slots and the fullest slot's load for `keys` hashed into `entries` slots.
    fn spread(slots: impl Iterator<Item = u32>, entries: u32) -> (usize, usize) {
        let mut load = vec![0usize; entries as usize];
        for slot in slots {
            assert!(slot < entries);
            load[slot as usize] += 1;
        }
        (
            load.iter().filter(|&&n| n > 0).count(),
            *load.iter().max().unwrap(),
        )
    }

    #[test]
    fn walk_memo_slots_spread_over_call_sites_and_depths() {
        // 16 call sites x 64 stack depths (16 bytes apart) into 256 slots: 4 a slot on average.
        let keys = (0..16u64).flat_map(|site| {
            (0..64u64).map(move |depth| {
                let sp = 0x7ffd_1234_5000 - depth * 16;
                (0x5555_5555_1000 + site * 0x24, sp, sp + 0x40)
            })
        });
        let (occupied, fullest) = spread(
            keys.map(|(ip, sp, bp)| walk_memo_slot(ip, sp, bp, 256)),
            256,
        );
        // A uniform hash would use about 251 slots; this one uses 232 here. A hash that ignored
        // the stack pointer would use at most 16, one that ignored ip at most 64.
        assert!(occupied >= 200, "{occupied} of 256 slots used");
        assert!(fullest <= 16, "a slot holds {fullest}");
        // The same registers always land in the same slot.
        assert_eq!(walk_memo_slot(1, 2, 3, 256), walk_memo_slot(1, 2, 3, 256));
        assert_ne!(
            walk_memo_slot(0x1000, 0x7ff0, 0x7ff8, 256),
            walk_memo_slot(0x1000, 0x7fe0, 0x7ff8, 256)
        );
    }

    #[test]
    fn row_cache_slots_spread_over_nearby_return_addresses() {
        // 1024 return addresses 5 bytes apart (a call instruction's length) into 1024 slots.
        let ips = (0..1024u64).map(|i| 0x7f12_3456_0000 + i * 5);
        let (occupied, fullest) = spread(ips.map(|ip| row_cache_slot(ip, 1024)), 1024);
        assert!(occupied >= 600, "{occupied} of 1024 slots used");
        assert!(fullest <= 8, "a slot holds {fullest}");
    }

    #[test]
    fn known_stack_slots_follow_the_hash() {
        let hashes = (0..4096u64).map(|i| stack_hash(&[0x5555_0000_0000 + i * 7], 1, 0));
        let (occupied, fullest) = spread(hashes.map(|h| known_stack_slot(h, 4096)), 4096);
        assert!(occupied >= 2400, "{occupied} of 4096 slots used");
        assert!(fullest <= 10, "a slot holds {fullest}");
        assert_eq!(known_stack_slot(0x1_0000_1fff, 4096), 0xfff);
    }

    #[test]
    fn refill_stops_at_the_page_end() {
        let page = 0x7ffd_1234_5000u64;
        assert_eq!(refill_bytes(page), 4096);
        assert_eq!(refill_bytes(page + 8), 4088);
        assert_eq!(refill_bytes(page + 4096 - 24), 24);
        assert_eq!(
            refill_bytes(page + 4096 - 16),
            16,
            "a frame's two words still fit"
        );
        // Fewer than 16 bytes left: the frame crosses pages, read into the next one.
        assert_eq!(refill_bytes(page + 4096 - 8), 4096);
        for start in (page..page + 2 * 4096).step_by(8) {
            let len = refill_bytes(start);
            assert!((16..=WINDOW_BYTES).contains(&len), "{start:#x}: {len}");
            let page_end = (start | (PAGE_BYTES - 1)) + 1;
            assert!(
                start + len <= page_end || len == WINDOW_BYTES,
                "{start:#x}: {len}"
            );
            assert!(
                start + len >= (start + 16).min(page_end),
                "{start:#x}: {len}"
            );
        }
    }

    #[test]
    fn window_offset_is_inside_the_window() {
        let start = 0x7ffd_1234_5400u64;
        assert_eq!(window_offset(start, 1024, start, 16), Some(0));
        assert_eq!(
            window_offset(start, 1024, start + 1008, 16),
            Some(1008),
            "last pair"
        );
        assert_eq!(
            window_offset(start, 1024, start + 1016, 16),
            None,
            "pair past the end"
        );
        assert_eq!(
            window_offset(start, 1024, start + 1016, 8),
            Some(1016),
            "last word"
        );
        assert_eq!(window_offset(start, 1024, start + 1024, 8), None);
        assert_eq!(
            window_offset(start, 1024, start - 8, 8),
            None,
            "below the window"
        );
        assert_eq!(window_offset(start, 0, start, 8), None, "empty window");
        assert_eq!(
            window_offset(start, 8, start, 16),
            None,
            "wider than the window"
        );
        assert_eq!(window_offset(u64::MAX - 7, 8, u64::MAX - 7, 8), Some(0));
        for address in (start - 64..start + 1100).step_by(8) {
            if let Some(offset) = window_offset(start, 1024, address, 16) {
                assert!(offset + 16 <= 1024 && start + offset == address);
                assert!(window_word(offset) + 1 < WINDOW_WORDS);
            }
        }
    }

    #[test]
    fn window_word_is_masked() {
        assert_eq!(window_word(0), 0);
        assert_eq!(window_word(8), 1);
        assert_eq!(window_word(WINDOW_BYTES - 8), WINDOW_WORDS - 1);
        assert_eq!(window_word(WINDOW_BYTES), 0);
        assert!(window_word(u64::MAX) < WINDOW_WORDS);
    }

    #[test]
    fn memo_extent_rounds_to_cache_lines_within_the_window() {
        assert_eq!(memo_extent(0, 1024), 0);
        assert_eq!(memo_extent(1, 1024), 64);
        assert_eq!(memo_extent(8, 1024), 64);
        assert_eq!(memo_extent(9, 1024), 128);
        assert_eq!(memo_extent(128, 1024), 1024);
        assert_eq!(
            memo_extent(126, 1000),
            1000,
            "capped at what the window held"
        );
        assert_eq!(memo_extent(512, 4096), 4096);
        assert_eq!(memo_extent(u32::MAX, 4096), 4096);
    }
}
