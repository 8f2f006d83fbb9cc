//! The per-stack accumulators (`StackAgg`, found by stack id in `StackAggs`) and the replay's
//! `Aggregates`, which the replay calls on every allocation and release: the hot path of an
//! analysis. Curves get a point only when the bucket changes.

use super::curve::{BASE_BUCKET_NS, Curve, CurveMode, GLOBAL_CURVE_BUCKETS, STACK_CURVE_BUCKETS};
use super::histogram::{LogHistogram, lifetime_class, size_class};
use memtrail_format::IntMap;

/// Everything accumulated about one stack during the replay.
///
/// `repr(C)` keeps the fields every event touches together at the front (one or two cache
/// lines), ahead of the histograms and the curve.
#[derive(Debug, Clone)]
#[repr(C)]
pub struct StackAgg {
    pub allocations: u64,
    pub allocated_bytes: u64,
    pub frees: u64,
    pub freed_bytes: u64,
    /// Blocks (and split mappings) live now.
    pub live_allocations: u64,
    pub live_bytes: u64,
    pub peak_bytes: u64,
    /// The curve's latest point, not yet written to `curve` (see [`StackAgg::curve_point`]).
    pending_t: u64,
    pending_v: i64,
    pub first_alloc_ns: u64,
    pub last_alloc_ns: u64,
    pub lifetimes: LogHistogram,
    pub sizes: Vec<u64>,
    pub lifetime_classes: [u64; 12],
    /// Unfreed bytes over time. During the replay the latest point may still be pending:
    /// [`Aggregates::flush`] writes it (the replay's `finish` does).
    pub curve: Curve,
    pending: bool,
    /// The stack-curve axis `curve` is on (see [`Aggregates::restart_axis`]): a curve of an
    /// earlier axis is reset when the stack is next touched, and read as flat meanwhile.
    epoch: u32,
}

impl StackAgg {
    fn new() -> StackAgg {
        StackAgg {
            allocations: 0,
            allocated_bytes: 0,
            frees: 0,
            freed_bytes: 0,
            live_allocations: 0,
            live_bytes: 0,
            peak_bytes: 0,
            pending_t: 0,
            pending_v: 0,
            first_alloc_ns: u64::MAX,
            last_alloc_ns: 0,
            lifetimes: LogHistogram::default(),
            sizes: Vec::new(),
            lifetime_classes: [0; 12],
            curve: Curve::new(STACK_CURVE_BUCKETS, CurveMode::Last),
            pending: false,
            epoch: 0,
        }
    }

    /// Moves the curve to axis `epoch`, which starts now (relative time 0): empty, but for
    /// the bytes still live, which start it.
    #[cold]
    fn restart_curve(&mut self, epoch: u32) {
        self.curve.clear();
        self.epoch = epoch;
        self.pending = self.live_bytes != 0;
        self.pending_t = 0;
        self.pending_v = self.live_bytes.min(i64::MAX as u64) as i64;
    }

    /// The curve's value is `live_bytes` at `now` (relative to the axis's start). Only the last value of each bucket counts
    /// (`CurveMode::Last`, times never go back), so a point is written to the curve only when
    /// the next one falls in another bucket: most events touch no curve memory.
    #[inline]
    fn curve_point(&mut self, shift: u32, now: u64) {
        let w = shift + BASE_BUCKET_NS.trailing_zeros();
        if self.pending && (now >> w) != (self.pending_t >> w) {
            self.curve.record(shift, self.pending_t, self.pending_v);
        }
        self.pending = true;
        self.pending_t = now;
        // Curves are i64: a sum past i64::MAX stays there (flagged by the replay).
        self.pending_v = self.live_bytes.min(i64::MAX as u64) as i64;
    }

    fn flush(&mut self, shift: u32) {
        if self.pending {
            self.curve.record(shift, self.pending_t, self.pending_v);
            self.pending = false;
        }
    }
}

/// Stack ids below this are looked up in a flat table, others in a hash map.
const DIRECT_IDS: u32 = 1 << 22;

/// The per-stack accumulators, stored densely in first-seen order and found by stack id
/// through a flat table (ids are small integers interned by the recorder), with a hash map
/// for ids too large for it.
///
/// The replay sets how many stacks it may hold (its memory budget); a new stack past that is
/// refused: counted into the first stack instead and remembered ([`StackAggs::refused`]), and
/// the replay stops with a budget error at its next check.
#[derive(Debug, Clone, Default)]
pub struct StackAggs {
    aggs: Vec<StackAgg>,
    ids: Vec<u32>,
    /// Stack id -> dense index + 1 (0: not seen).
    direct: Vec<u32>,
    sparse: IntMap<u32, u32>,
    /// The most stacks allowed; no limit when `None`.
    max_stacks: Option<usize>,
    refused: bool,
    /// Every id in `sparse`: a process's own accumulators, of which there may be thousands,
    /// each using a few of the trace's stack ids (a flat table each would cost 4 bytes per id
    /// up to the largest).
    sparse_only: bool,
}

impl StackAggs {
    /// The dense index of `stack`, adding it if new.
    #[inline]
    fn index(&mut self, stack: u32) -> usize {
        if let Some(&i) = self.direct.get(stack as usize)
            && i != 0
        {
            return i as usize - 1;
        }
        self.index_slow(stack)
    }

    #[cold]
    fn index_slow(&mut self, stack: u32) -> usize {
        if let Some(i) = self.find(stack) {
            return i;
        }
        let i = self.aggs.len();
        if i > 0 && self.max_stacks.is_some_and(|m| i >= m) {
            self.refused = true;
            return 0;
        }
        self.aggs.push(StackAgg::new());
        self.ids.push(stack);
        if stack < DIRECT_IDS && !self.sparse_only {
            let need = stack as usize + 1;
            if self.direct.len() < need {
                self.direct
                    .resize(need.max(self.direct.len() * 2).min(DIRECT_IDS as usize), 0);
            }
            self.direct[stack as usize] = i as u32 + 1;
        } else {
            self.sparse.insert(stack, i as u32);
        }
        i
    }

    fn find(&self, stack: u32) -> Option<usize> {
        if stack < DIRECT_IDS && !self.sparse_only {
            match self.direct.get(stack as usize) {
                Some(&i) if i != 0 => Some(i as usize - 1),
                _ => None,
            }
        } else {
            self.sparse.get(&stack).map(|&i| i as usize)
        }
    }

    pub fn get(&self, stack: &u32) -> Option<&StackAgg> {
        self.find(*stack).map(|i| &self.aggs[i])
    }

    pub fn contains_key(&self, stack: &u32) -> bool {
        self.find(*stack).is_some()
    }

    pub fn len(&self) -> usize {
        self.aggs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.aggs.is_empty()
    }

    /// True once a new stack was refused for lack of memory budget.
    pub fn refused(&self) -> bool {
        self.refused
    }

    /// (stack id, accumulators), in the order stacks were first seen.
    pub fn iter(&self) -> impl Iterator<Item = (&u32, &StackAgg)> + '_ {
        self.ids.iter().zip(&self.aggs)
    }
}

impl std::ops::Index<&u32> for StackAggs {
    type Output = StackAgg;
    fn index(&self, stack: &u32) -> &StackAgg {
        self.get(stack).expect("no such stack in the aggregates")
    }
}

/// The accumulators of a replay: per stack, and for the whole process.
#[derive(Debug, Clone)]
pub struct Aggregates {
    pub stacks: StackAggs,
    stack_shift: u32,
    /// Where the stack curves' time axis starts: their bucket 0 begins here (the heap curve's
    /// at 0, the trace's clock). See [`Aggregates::restart_axis`].
    stack_origin_ns: u64,
    /// Counts the axis restarts; a stack whose `epoch` differs has a curve of an earlier axis.
    epoch: u32,
    global_shift: u32,
    /// The first time at which either shift must grow.
    next_rescale_ns: u64,
    pub live_bytes: u64,
    pub live_allocations: u64,
    pub peak_bytes: u64,
    pub peak_time_ns: u64,
    /// Highest live bytes per bucket, for the timeline. During the replay the current
    /// bucket's maximum may still be pending: [`Aggregates::flush`] writes it.
    pub heap_curve: Curve,
    heap_pending: bool,
    heap_pending_t: u64,
    heap_pending_max: i64,
}

impl Default for Aggregates {
    fn default() -> Self {
        Aggregates {
            stacks: StackAggs::default(),
            stack_shift: 0,
            stack_origin_ns: 0,
            epoch: 0,
            global_shift: 0,
            next_rescale_ns: 0,
            live_bytes: 0,
            live_allocations: 0,
            peak_bytes: 0,
            peak_time_ns: 0,
            heap_curve: Curve::new(GLOBAL_CURVE_BUCKETS, CurveMode::Max),
            heap_pending: false,
            heap_pending_t: 0,
            heap_pending_max: 0,
        }
    }
}

/// The first time that does not fit `buckets` buckets at `shift` (see [`Curve::shift_for`]).
fn rescale_at(buckets: usize, shift: u32) -> u64 {
    if shift >= 53 {
        return u64::MAX;
    }
    (buckets as u64 * BASE_BUCKET_NS)
        .checked_shl(shift)
        .filter(|&v| v >> shift == buckets as u64 * BASE_BUCKET_NS)
        .unwrap_or(u64::MAX)
}

impl Aggregates {
    /// Accumulators that find every stack through a hash map (see `StackAggs::sparse_only`).
    pub fn sparse() -> Aggregates {
        let mut a = Aggregates::default();
        a.stacks.sparse_only = true;
        a
    }

    /// Starts the stack curves' time axis at `start_ns`: from here on their bucket 0 begins
    /// there, and the curves recorded so far are dropped (a stack's next point starts its
    /// curve again, from the bytes it still has live). The replay calls it at a process's
    /// first event and when it replaces its image, so that each process (and each image) is
    /// judged on a span of its own, whatever the recording did before. O(1): stacks catch up
    /// when next touched.
    pub fn restart_axis(&mut self, start_ns: u64) {
        self.stack_origin_ns = start_ns;
        self.stack_shift = 0;
        self.epoch = self.epoch.wrapping_add(1);
        self.next_rescale_ns = 0;
    }

    /// Where the stack curves' axis starts (see [`Aggregates::restart_axis`]).
    pub fn stack_origin_ns(&self) -> u64 {
        self.stack_origin_ns
    }

    /// Stack `a`'s unfreed bytes over time on the current axis: `buckets` buckets at `shift`
    /// (flat at its live bytes when it was not touched since the axis started).
    pub fn stack_curve(&self, a: &StackAgg, shift: u32, buckets: usize) -> Vec<i64> {
        if a.epoch == self.epoch {
            a.curve.finish(shift, buckets)
        } else {
            vec![a.live_bytes.min(i64::MAX as u64) as i64; buckets]
        }
    }

    /// The index of `stack`'s accumulators, its curve on the current axis.
    #[inline(always)]
    fn stack_index(&mut self, stack: u32) -> usize {
        let i = self.stacks.index(stack);
        let a = &mut self.stacks.aggs[i];
        if a.epoch != self.epoch {
            a.restart_curve(self.epoch);
        }
        i
    }

    #[inline]
    fn advance(&mut self, now: u64) {
        if now >= self.next_rescale_ns {
            let since_origin = now.saturating_sub(self.stack_origin_ns);
            self.stack_shift =
                Curve::shift_for(STACK_CURVE_BUCKETS, self.stack_shift, since_origin);
            self.global_shift = Curve::shift_for(GLOBAL_CURVE_BUCKETS, self.global_shift, now);
            self.next_rescale_ns = self
                .stack_origin_ns
                .saturating_add(rescale_at(STACK_CURVE_BUCKETS, self.stack_shift))
                .min(rescale_at(GLOBAL_CURVE_BUCKETS, self.global_shift));
        }
    }

    /// The process's live bytes at `now`, for the timeline: only the maximum of each bucket
    /// counts (`CurveMode::Max`), so it is written when the bucket changes.
    #[inline]
    fn heap_point(&mut self, now: u64) {
        let v = self.live_bytes.min(i64::MAX as u64) as i64;
        let w = self.global_shift + BASE_BUCKET_NS.trailing_zeros();
        if self.heap_pending && (now >> w) == (self.heap_pending_t >> w) {
            self.heap_pending_max = self.heap_pending_max.max(v);
        } else {
            if self.heap_pending {
                self.heap_curve.record(
                    self.global_shift,
                    self.heap_pending_t,
                    self.heap_pending_max,
                );
            }
            self.heap_pending = true;
            self.heap_pending_max = v;
        }
        self.heap_pending_t = now;
    }

    /// Writes the curves' pending points. The replay's `finish` calls it; call it before
    /// reading `curve` or `heap_curve` in the middle of a replay.
    pub fn flush(&mut self) {
        let (shift, epoch) = (self.stack_shift, self.epoch);
        for a in self.stacks.aggs.iter_mut().filter(|a| a.epoch == epoch) {
            a.flush(shift);
        }
        if self.heap_pending {
            self.heap_curve.record(
                self.global_shift,
                self.heap_pending_t,
                self.heap_pending_max,
            );
            self.heap_pending = false;
        }
    }

    /// A block of `size` bytes was allocated from `stack` at `now`.
    #[inline]
    pub fn alloc(&mut self, now: u64, stack: u32, size: u64) {
        self.advance(now);
        let (shift, t) = (self.stack_shift, now.saturating_sub(self.stack_origin_ns));
        let i = self.stack_index(stack);
        let a = &mut self.stacks.aggs[i];
        a.allocations += 1;
        a.allocated_bytes = a.allocated_bytes.saturating_add(size);
        a.live_allocations += 1;
        a.live_bytes = a.live_bytes.saturating_add(size);
        a.peak_bytes = a.peak_bytes.max(a.live_bytes);
        a.first_alloc_ns = a.first_alloc_ns.min(now);
        a.last_alloc_ns = a.last_alloc_ns.max(now);
        let class = size_class(size);
        if a.sizes.len() <= class {
            a.sizes.resize(class + 1, 0);
        }
        a.sizes[class] += 1;
        a.curve_point(shift, t);
        self.live_allocations += 1;
        self.live_bytes = self.live_bytes.saturating_add(size);
        if self.live_bytes > self.peak_bytes {
            self.peak_bytes = self.live_bytes;
            self.peak_time_ns = now;
        }
        self.heap_point(now);
    }

    /// `size` bytes allocated from `stack` at `alloc_ns` were released at `now`. `whole` is
    /// false when only part of a block went (a partial munmap), which is not a free.
    #[inline(always)]
    pub fn release(&mut self, now: u64, stack: u32, size: u64, alloc_ns: u64, whole: bool) {
        self.advance(now);
        let (shift, t) = (self.stack_shift, now.saturating_sub(self.stack_origin_ns));
        let i = self.stack_index(stack);
        let a = &mut self.stacks.aggs[i];
        a.freed_bytes = a.freed_bytes.saturating_add(size);
        a.live_bytes = a.live_bytes.saturating_sub(size);
        if whole {
            let lifetime = now.saturating_sub(alloc_ns);
            a.frees += 1;
            a.live_allocations = a.live_allocations.saturating_sub(1);
            a.lifetimes.add(lifetime);
            a.lifetime_classes[lifetime_class(lifetime)] += 1;
            self.live_allocations = self.live_allocations.saturating_sub(1);
        }
        a.curve_point(shift, t);
        self.live_bytes = self.live_bytes.saturating_sub(size);
        self.heap_point(now);
    }

    /// `size` bytes of `stack` stopped being live at `now` without being freed (their process
    /// replaced its image): no free, no lifetime. `whole` as for [`Aggregates::release`].
    pub fn discard(&mut self, now: u64, stack: u32, size: u64, whole: bool) {
        self.advance(now);
        let (shift, t) = (self.stack_shift, now.saturating_sub(self.stack_origin_ns));
        let i = self.stack_index(stack);
        let a = &mut self.stacks.aggs[i];
        a.live_bytes = a.live_bytes.saturating_sub(size);
        if whole {
            a.live_allocations = a.live_allocations.saturating_sub(1);
            self.live_allocations = self.live_allocations.saturating_sub(1);
        }
        a.curve_point(shift, t);
        self.live_bytes = self.live_bytes.saturating_sub(size);
        self.heap_point(now);
    }

    pub fn stack_shift(&self) -> u32 {
        self.stack_shift
    }

    /// Distinct stacks so far.
    pub fn stack_count(&self) -> usize {
        self.stacks.len()
    }

    /// Allows `more` new stacks beyond those held now (see [`StackAggs`]).
    pub fn allow_stacks(&mut self, more: usize) {
        self.stacks.max_stacks = Some(self.stacks.len().saturating_add(more));
    }

    /// True once a new stack was refused (see [`StackAggs`]).
    pub fn refused_stack(&self) -> bool {
        self.stacks.refused
    }

    pub fn global_shift(&self) -> u32 {
        self.global_shift
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lazy_curves_match_recording_every_point() {
        // The same events through Aggregates (which writes a stack's curve point only when
        // the bucket changes, and the heap curve's maximum per bucket) and through plain
        // curves recording every point.
        let mut aggs = Aggregates::default();
        let mut stack = Curve::new(STACK_CURVE_BUCKETS, CurveMode::Last);
        let mut heap = Curve::new(GLOBAL_CURVE_BUCKETS, CurveMode::Max);
        let (mut shift, mut gshift) = (0, 0);
        let (mut live, mut total) = (0i64, 0i64);
        let mut t = 0u64;
        let mut x = 12345u64;
        for i in 0..20_000u64 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            t += (x >> 40) % 3000;
            shift = Curve::shift_for(STACK_CURVE_BUCKETS, shift, t);
            gshift = Curve::shift_for(GLOBAL_CURVE_BUCKETS, gshift, t);
            let size = 16 + (x >> 20) % 100;
            if i % 3 == 2 && live >= size as i64 {
                aggs.release(t, 7, size, t / 2, true);
                live -= size as i64;
                total -= size as i64;
            } else if i % 5 == 0 {
                aggs.alloc(t, 8, size);
                total += size as i64;
                heap.record(gshift, t, total);
                continue;
            } else {
                aggs.alloc(t, 7, size);
                live += size as i64;
                total += size as i64;
            }
            stack.record(shift, t, live);
            heap.record(gshift, t, total);
        }
        aggs.flush();
        let (s, g) = (aggs.stack_shift(), aggs.global_shift());
        assert_eq!((s, g), (shift, gshift));
        assert_eq!(
            aggs.stacks[&7].curve.finish(s, STACK_CURVE_BUCKETS),
            stack.finish(s, STACK_CURVE_BUCKETS)
        );
        assert_eq!(
            aggs.heap_curve.finish(g, GLOBAL_CURVE_BUCKETS),
            heap.finish(g, GLOBAL_CURVE_BUCKETS)
        );
        assert_eq!(aggs.stacks.len(), 2);
        assert!(aggs.stacks.get(&9).is_none());
    }
}
