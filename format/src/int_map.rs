//! `IntMap`: the hash map both programs use for the integers a trace is keyed by (stack ids,
//! kernel stack keys, module and string ids, addresses), on their per-event paths.
//!
//! std's SipHash resists keys chosen to collide, at about 5% of the recorder's CPU time and
//! more of the analyzer's; these keys come from our own eBPF programs or from a trace file,
//! and keys shaped to collide can only make a run slower, never wrong.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// A multiply-and-fold hasher for integer keys.
#[derive(Default, Clone, Copy)]
pub struct IntHasher(u64);

impl Hasher for IntHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(5) ^ u64::from(b)).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
        }
    }
    fn write_u8(&mut self, n: u8) {
        self.write_u64(u64::from(n));
    }
    fn write_u32(&mut self, n: u32) {
        self.write_u64(u64::from(n));
    }
    fn write_u64(&mut self, n: u64) {
        // Fold the high half in: the table takes its buckets from the low bits, which a
        // multiply mixes the least (page-aligned addresses, consecutive ids).
        let x = (self.0 ^ n).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        self.0 = x ^ (x >> 29);
    }
}

/// A `HashMap` with [`IntHasher`].
pub type IntMap<K, V> = HashMap<K, V, BuildHasherDefault<IntHasher>>;

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;
    use std::hash::BuildHasher;

    /// The keys the recorder sees most (small consecutive kernel stack ids, one kind, as
    /// `(kind, id)`) must spread over both ends of the hash: the table's buckets come from the
    /// low bits and its per-entry tags from the top seven.
    #[test]
    fn int_hasher_spreads_consecutive_ids() {
        const KIND_A: u8 = 1;
        const KIND_B: u8 = 2;
        let build = BuildHasherDefault::<IntHasher>::default();
        let hashes: Vec<u64> = (0..4096u64)
            .map(|id| build.hash_one((KIND_A, id)))
            .collect();
        let low: HashSet<u64> = hashes.iter().map(|h| h & 4095).collect();
        let top: HashSet<u64> = hashes.iter().map(|h| h >> 57).collect();
        assert!(low.len() > 2400, "{} distinct buckets of 4096", low.len());
        assert_eq!(top.len(), 128, "top seven bits");
        let mut map = IntMap::default();
        for (i, &id) in [7u64, 1 << 40, 7].iter().enumerate() {
            map.insert((KIND_B, id), i as u32);
        }
        assert_eq!(map.len(), 2);
        assert_eq!(map.get(&(KIND_B, 7)), Some(&2));
        assert_eq!(map.get(&(KIND_A, 7)), None);
    }
}
