//! The anonymous mappings the trace has recorded as allocations (mmap) and not yet unmapped.
//!
//! Owns: deciding whether a munmap concerns a recorded mapping. glibc unmaps the large blocks
//! it allocated with its own internal mmap (from inside free, which has no return probe to
//! tell nesting), and those regions were never recorded as mmap allocations: reporting their
//! munmaps would only add unmatched frees. Must not: write records.

use std::collections::BTreeMap;

/// Byte ranges `[start, end)` of recorded anonymous mappings still mapped.
#[derive(Debug, Default)]
pub struct AnonMappings {
    ranges: BTreeMap<u64, u64>,
}

impl AnonMappings {
    /// Records `mmap` returning `address` for `len` bytes (rounded up to whole pages).
    pub fn mapped(&mut self, address: u64, len: u64, page_size: u64) {
        let end = address.saturating_add(len.div_ceil(page_size).saturating_mul(page_size));
        self.unmap(address, end - address);
        self.ranges.insert(address, end);
    }

    /// Applies `munmap(address, len)`; true when it overlapped a recorded mapping.
    pub fn unmap(&mut self, address: u64, len: u64) -> bool {
        let end = address.saturating_add(len.max(1));
        let overlapping: Vec<(u64, u64)> = self
            .ranges
            .range(..end)
            .rev()
            .take_while(|&(_, &range_end)| range_end > address)
            .map(|(&s, &e)| (s, e))
            .collect();
        for &(start, range_end) in &overlapping {
            self.ranges.remove(&start);
            if start < address {
                self.ranges.insert(start, address);
            }
            if range_end > end {
                self.ranges.insert(end, range_end);
            }
        }
        !overlapping.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_partial_and_foreign_unmaps() {
        let mut maps = AnonMappings::default();
        maps.mapped(0x10000, 0x3000, 0x1000);
        maps.mapped(0x20000, 100, 0x1000);
        assert!(!maps.unmap(0x50000, 0x1000), "never recorded");
        assert!(maps.unmap(0x11000, 0x1000), "middle page");
        assert!(maps.unmap(0x10000, 0x1000));
        assert!(maps.unmap(0x12000, 0x1000));
        assert!(!maps.unmap(0x10000, 0x3000), "already gone");
        assert!(maps.unmap(0x20000, 0x1000), "rounded to a page");
        assert!(maps.ranges.is_empty());
    }
}
