//! The per-thread predictions of the codec: each thread slot's lists of the addresses it
//! allocated and freed recently, which encoder and decoder keep identically so that an
//! address can be written as its position in a list. Only the lists live here; how positions
//! are written is `encode`'s and `decode`'s business.

use super::THREAD_LIST;

/// Which side of a block's life an address is on: it decides which list predicts it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Role {
    /// An address being allocated: likely one this thread freed recently (allocators reuse
    /// the most recently freed block of a size, per thread).
    Allocated = 0,
    /// An address being freed: likely one this thread allocated recently, newest first.
    Freed = 1,
}

/// Entries a `RecentList` has room for: the list twice over.
const LIST_ROOM: usize = 2 * THREAD_LIST;

/// A most-recent-first list of at most `THREAD_LIST` addresses. The entries sit in order in
/// `items[start..end]`, the newest last, in room for twice the list: putting an address first
/// is a store, removing entry `i` moves the `i` newer entries (entries near the front are the
/// common case), and the live entries are moved back to the start of `items` once every
/// `THREAD_LIST` insertions, when `end` reaches the end of the room. Eight entries of slack
/// after the room let removals move whole blocks of eight.
#[derive(Clone)]
pub(super) struct RecentList {
    pub(super) start: usize,
    pub(super) end: usize,
    pub(super) items: [u64; LIST_ROOM + 8],
}

impl Default for RecentList {
    fn default() -> Self {
        RecentList {
            start: 0,
            end: 0,
            items: [0; LIST_ROOM + 8],
        }
    }
}

impl RecentList {
    /// The position of `address` in the list (0 is the newest). Compares eight entries at a
    /// time without an early exit, which the compiler turns into vector code: the encoder asks
    /// this of every address, and most are not in the list.
    pub(super) fn find(&self, address: u64) -> Option<usize> {
        let live = &self.items[self.start..self.end];
        let mut chunks = live.rchunks_exact(8);
        let mut newer = 0;
        for chunk in &mut chunks {
            if let Ok(chunk) = <&[u64; 8]>::try_from(chunk) {
                // A fixed eight compares and no branch: the compiler makes vector code of it.
                let hits = chunk.iter().enumerate().fold(0u32, |hits, (k, &item)| {
                    hits | (u32::from(item == address) << k)
                });
                if hits != 0 {
                    // The newest match in this chunk is its highest set bit.
                    return Some(newer + 7 - (31 - hits.leading_zeros() as usize));
                }
            }
            newer += 8;
        }
        // The oldest entries, fewer than eight.
        let rest = chunks.remainder();
        rest.iter()
            .rev()
            .position(|&item| item == address)
            .map(|i| newer + i)
    }

    /// Removes and returns entry `i` (the newest is 0).
    #[inline(always)]
    pub(super) fn take(&mut self, i: usize) -> Option<u64> {
        if i >= self.end - self.start {
            return None;
        }
        let at = self.end - 1 - i;
        let address = self.items[at];
        // Close the gap, eight entries at a time: fixed-size moves, inline, cost less than a
        // call to memmove for these few entries. What the last block carries past `end` lands
        // in the slack after the room. Entry 1 is common enough to have its own case.
        if i == 1 {
            self.items[at] = self.items[at + 1];
        } else {
            let mut k = at;
            while k + 1 < self.end {
                let Some(block) = self
                    .items
                    .get(k + 1..k + 9)
                    .and_then(|b| <[u64; 8]>::try_from(b).ok())
                else {
                    break;
                };
                if let Some(dst) = self.items.get_mut(k..k + 8) {
                    dst.copy_from_slice(&block);
                }
                k += 8;
            }
        }
        self.end -= 1;
        Some(address)
    }

    /// Puts `address` first; when full, the oldest entry is dropped.
    #[inline(always)]
    pub(super) fn push_front(&mut self, address: u64) {
        if self.end == LIST_ROOM {
            self.compact();
        }
        self.items[self.end] = address;
        self.end += 1;
        if self.end - self.start > THREAD_LIST {
            self.start += 1;
        }
    }

    /// Empties the list.
    pub(super) fn clear(&mut self) {
        self.start = 0;
        self.end = 0;
    }

    #[cold]
    fn compact(&mut self) {
        self.items.copy_within(self.start..self.end, 0);
        self.end -= self.start;
        self.start = 0;
    }
}

/// What encoder and decoder remember per thread slot, identically.
#[derive(Clone, Default)]
pub(super) struct ThreadSlot {
    pub(super) prev_stack: u32,
    /// The last literal address of each role: new blocks come from a bump pointer, while
    /// literal frees are of old blocks, so the two walk different parts of the heap.
    pub(super) prev_literal: [u64; 2],
    /// Addresses this slot allocated (and has not been seen freeing), newest first.
    pub(super) allocated: RecentList,
    /// Addresses this slot freed (and has not been seen allocating again), newest first.
    pub(super) freed: RecentList,
}

impl ThreadSlot {
    /// Back to the default state without rewriting the lists' storage (2 KiB a slot): only
    /// the entries between a list's start and end are ever read.
    pub(super) fn reset(&mut self) {
        self.prev_stack = 0;
        self.prev_literal = [0; 2];
        self.allocated.clear();
        self.freed.clear();
    }

    #[inline(always)]
    pub(super) fn list(&mut self, role: Role) -> &mut RecentList {
        match role {
            Role::Allocated => &mut self.freed,
            Role::Freed => &mut self.allocated,
        }
    }

    /// Moves `address` to the front of the list of the other side of its life.
    #[inline(always)]
    pub(super) fn remember(&mut self, role: Role, address: u64) {
        match role {
            Role::Allocated => self.allocated.push_front(address),
            Role::Freed => self.freed.push_front(address),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `RecentList` against the plainest model of its contract: a most-recent-first vector of
    /// at most `THREAD_LIST` addresses.
    #[test]
    fn recent_list_behaves_as_a_most_recent_first_list() {
        let mut list = RecentList::default();
        let mut model: Vec<u64> = Vec::new();
        let mut rng = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        for step in 0..200_000 {
            // Few distinct addresses, so that lookups hit at every depth and miss too.
            let address = next() % 97;
            match next() % 3 {
                0 => {
                    list.push_front(address);
                    model.insert(0, address);
                    model.truncate(THREAD_LIST);
                }
                1 => {
                    let expected = model.iter().position(|&a| a == address);
                    assert_eq!(list.find(address), expected, "find at step {step}");
                }
                _ => {
                    let i = (next() % (THREAD_LIST as u64 + 4)) as usize;
                    let expected = (i < model.len()).then(|| model.remove(i));
                    assert_eq!(list.take(i), expected, "take({i}) at step {step}");
                }
            }
        }
    }
}
