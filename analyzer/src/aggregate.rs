//! Per-stack aggregates: what the replay feeds, and the per-stack table the renderers read.
//!
//! Owns the accumulators (counts, bytes, peaks, lifetime and size histograms, unfreed bytes over
//! time) and turning them into rows and a polars `DataFrame`. Must not know the event semantics
//! (which address is live: `replay.rs`), symbol names (`symbols.rs`) or output formats
//! (`render/`). Memory is proportional to the number of distinct stacks, never to events.

use polars::prelude::{Column, DataFrame, PolarsResult};

pub use memtrail_format::IntMap;

/// Width of a curve bucket before any doubling.
pub const BASE_BUCKET_NS: u64 = 1 << 10;
/// Buckets of each stack's unfreed-bytes-over-time curve.
pub const STACK_CURVE_BUCKETS: usize = 64;
/// Buckets of the whole process's live-heap curve (the timeline).
pub const GLOBAL_CURVE_BUCKETS: usize = 512;

const UNSET: i64 = i64::MIN;

/// How two adjacent buckets merge when the time axis doubles its bucket width.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CurveMode {
    /// Keep the later value: "live bytes at the end of the bucket".
    Last,
    /// Keep the larger value: "highest live bytes within the bucket".
    Max,
}

/// A value over time in a fixed number of buckets whose width doubles whenever time outgrows
/// them, so a single pass fills it without knowing the trace's duration in advance.
///
/// Bucket `i` covers `[i * w, (i + 1) * w)` with `w = BASE_BUCKET_NS << shift`.
#[derive(Debug, Clone)]
pub struct Curve {
    shift: u32,
    mode: CurveMode,
    vals: Box<[i64]>,
}

impl Curve {
    pub fn new(buckets: usize, mode: CurveMode) -> Curve {
        Curve {
            shift: 0,
            mode,
            vals: vec![UNSET; buckets.max(2)].into_boxed_slice(),
        }
    }

    /// The shift a curve of `buckets` buckets needs for time `t` to fall in its last bucket or
    /// before, starting from `shift`.
    pub fn shift_for(buckets: usize, mut shift: u32, t: u64) -> u32 {
        while shift < 53 && (t >> shift) / BASE_BUCKET_NS >= buckets as u64 {
            shift += 1;
        }
        shift
    }

    /// Doubles the bucket width until it is `BASE_BUCKET_NS << shift`.
    pub fn rescale(&mut self, shift: u32) {
        while self.shift < shift {
            let n = self.vals.len();
            for i in 0..n / 2 {
                let (a, b) = (self.vals[2 * i], self.vals[2 * i + 1]);
                self.vals[i] = match self.mode {
                    CurveMode::Last => {
                        if b != UNSET {
                            b
                        } else {
                            a
                        }
                    }
                    CurveMode::Max => a.max(b),
                };
            }
            for v in &mut self.vals[n / 2..] {
                *v = UNSET;
            }
            self.shift += 1;
        }
    }

    /// Records `value` at time `t`; `shift` must be large enough for `t` (see `shift_for`).
    pub fn record(&mut self, shift: u32, t: u64, value: i64) {
        self.rescale(shift);
        let i = ((t >> self.shift) / BASE_BUCKET_NS) as usize;
        let i = i.min(self.vals.len() - 1);
        let slot = &mut self.vals[i];
        *slot = match self.mode {
            CurveMode::Last => value,
            CurveMode::Max => (*slot).max(value),
        };
    }

    /// The curve on the final axis: `used` buckets, empty buckets carrying the previous value
    /// forward (0 before the first value).
    pub fn finish(&self, shift: u32, used: usize) -> Vec<i64> {
        let mut c = self.clone();
        c.rescale(shift);
        let mut prev = 0;
        c.vals
            .iter()
            .take(used)
            .map(|&v| {
                if v != UNSET {
                    prev = v;
                }
                prev
            })
            .collect()
    }
}

/// The time axis all curves end on: bucket width and how many buckets the recording fills.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct TimeAxis {
    pub bucket_ns: u64,
    pub buckets: usize,
}

impl TimeAxis {
    pub fn new(capacity: usize, shift: u32, duration_ns: u64) -> (TimeAxis, u32) {
        let shift = Curve::shift_for(capacity, shift, duration_ns);
        let bucket_ns = BASE_BUCKET_NS << shift;
        let buckets = ((duration_ns / bucket_ns) as usize + 1).min(capacity);
        (TimeAxis { bucket_ns, buckets }, shift)
    }
}

/// A log-linear histogram: 4 sub-buckets per power of two, so any percentile read from it is
/// within 25% of the true value (and exact when all samples in its bucket are equal to the
/// minimum or maximum, which are tracked exactly).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogHistogram {
    counts: Vec<u64>,
    total: u64,
    min: u64,
    max: u64,
}

impl LogHistogram {
    #[inline]
    pub fn index(v: u64) -> usize {
        if v < 4 {
            return v as usize;
        }
        let e = 63 - v.leading_zeros();
        let sub = (v >> (e - 2)) & 3;
        4 + (e as usize - 2) * 4 + sub as usize
    }

    /// The smallest and largest value of bucket `i`.
    pub fn bounds(i: usize) -> (u64, u64) {
        if i < 4 {
            return (i as u64, i as u64);
        }
        let e = (i - 4) / 4 + 2;
        let sub = ((i - 4) % 4) as u64;
        let low = (4 + sub) << (e - 2);
        let high = low + ((1u64 << (e - 2)) - 1);
        (low, high)
    }

    #[inline]
    pub fn add(&mut self, v: u64) {
        let i = Self::index(v);
        if self.counts.len() <= i {
            self.counts.resize(i + 1, 0);
        }
        self.counts[i] += 1;
        if self.total == 0 || v < self.min {
            self.min = v;
        }
        self.max = self.max.max(v);
        self.total += 1;
    }

    pub fn total(&self) -> u64 {
        self.total
    }

    /// Adds every sample of `other`.
    pub fn merge(&mut self, other: &LogHistogram) {
        if other.total == 0 {
            return;
        }
        if self.counts.len() < other.counts.len() {
            self.counts.resize(other.counts.len(), 0);
        }
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a = a.saturating_add(*b);
        }
        self.min = if self.total == 0 {
            other.min
        } else {
            self.min.min(other.min)
        };
        self.max = self.max.max(other.max);
        self.total = self.total.saturating_add(other.total);
    }

    pub fn max(&self) -> Option<u64> {
        (self.total > 0).then_some(self.max)
    }

    /// The `q` quantile (0..=1): the upper bound of the bucket holding it, clamped to the exact
    /// minimum and maximum.
    pub fn quantile(&self, q: f64) -> Option<u64> {
        if self.total == 0 {
            return None;
        }
        let rank = ((q * self.total as f64).ceil() as u64).clamp(1, self.total);
        let mut seen = 0u64;
        for (i, &c) in self.counts.iter().enumerate() {
            seen = seen.saturating_add(c);
            if seen >= rank {
                return Some(Self::bounds(i).1.clamp(self.min, self.max));
            }
        }
        Some(self.max)
    }
}

/// Lifetime classes of the `lifetimes` report: decades from 1 us to an hour.
pub const LIFETIME_CLASS_BOUNDS_NS: [u64; 11] = [
    1_000,
    10_000,
    100_000,
    1_000_000,
    10_000_000,
    100_000_000,
    1_000_000_000,
    10_000_000_000,
    60_000_000_000,
    600_000_000_000,
    3_600_000_000_000,
];
pub const LIFETIME_CLASS_LABELS: [&str; 12] = [
    "< 1 us",
    "1-10 us",
    "10-100 us",
    "100 us-1 ms",
    "1-10 ms",
    "10-100 ms",
    "100 ms-1 s",
    "1-10 s",
    "10 s-1 min",
    "1-10 min",
    "10 min-1 h",
    ">= 1 h",
];

pub fn lifetime_class(ns: u64) -> usize {
    // Consecutive bounds are at least 6x apart, so at most one falls inside any power of two:
    // the class is a table lookup on the value's log2, plus one compare.
    if ns == 0 {
        return 0;
    }
    let e = (63 - ns.leading_zeros()) as usize;
    let (base, mid) = LIFETIME_CLASS_BY_LOG2[e];
    base as usize + usize::from(ns >= mid)
}

/// Per log2 `e`: (base, mid) such that the class of any `ns` in `[2^e, 2^(e+1))` is
/// `base + (ns >= mid)`: how many class bounds are `<= 2^e`, and the bound inside
/// `(2^e, 2^(e+1))`, if any.
const LIFETIME_CLASS_BY_LOG2: [(u8, u64); 64] = {
    let mut t = [(0u8, u64::MAX); 64];
    let mut e = 0;
    while e < 64 {
        let low = 1u64 << e;
        let high = if e == 63 {
            u64::MAX
        } else {
            (1u64 << (e + 1)) - 1
        };
        let mut base = 0u8;
        let mut mid = u64::MAX;
        let mut i = 0;
        while i < LIFETIME_CLASS_BOUNDS_NS.len() {
            let b = LIFETIME_CLASS_BOUNDS_NS[i];
            if b <= low {
                base += 1;
            } else if b <= high {
                mid = b;
            }
            i += 1;
        }
        // Without a bound inside, `ns >= mid` must be constant: always true with mid 0 (and
        // base one lower), or, when base is 0 (small e), always false with mid u64::MAX.
        t[e] = if mid != u64::MAX {
            (base, mid)
        } else if base > 0 {
            (base - 1, 0)
        } else {
            (0, u64::MAX)
        };
        e += 1;
    }
    t
};

/// Size classes: class `i` holds sizes in `(2^(i-1), 2^i]`, class 0 sizes 0 and 1.
pub const SIZE_CLASSES: usize = 65;

pub fn size_class(size: u64) -> usize {
    (64 - size.saturating_sub(1).leading_zeros()) as usize
}

/// The label of size class `i`: `<= 1 B`, `2 B`, `3-4 B`, ... `513 B-1 KiB`, `1-2 KiB`
/// (upper bound inclusive, lower bound exclusive from 1 KiB on).
pub fn size_class_label(i: usize) -> String {
    fn short(n: u64) -> String {
        const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
        let mut v = n;
        let mut u = 0;
        while v >= 1024 && v.is_multiple_of(1024) && u + 1 < UNITS.len() {
            v /= 1024;
            u += 1;
        }
        format!("{v} {}", UNITS[u])
    }
    match i {
        0 => "<= 1 B".into(),
        1 => "2 B".into(),
        2..=9 => format!("{}-{} B", (1u64 << (i - 1)) + 1, 1u64 << i),
        10 => "513 B-1 KiB".into(),
        11..=63 => {
            let (low, high) = (short(1 << (i - 1)), short(1 << i));
            match (low.split_once(' '), high.split_once(' ')) {
                (Some((l, lu)), Some((h, hu))) if lu == hu => format!("{l}-{h} {hu}"),
                _ => format!("{low}-{high}"),
            }
        }
        _ => "> 8 EiB".into(),
    }
}

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
        }
    }

    /// The curve's value is `live_bytes` at `now`. Only the last value of each bucket counts
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
        if stack < DIRECT_IDS {
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
        if stack < DIRECT_IDS {
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
    #[inline]
    fn advance(&mut self, now: u64) {
        if now >= self.next_rescale_ns {
            self.stack_shift = Curve::shift_for(STACK_CURVE_BUCKETS, self.stack_shift, now);
            self.global_shift = Curve::shift_for(GLOBAL_CURVE_BUCKETS, self.global_shift, now);
            self.next_rescale_ns = rescale_at(STACK_CURVE_BUCKETS, self.stack_shift)
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
        let shift = self.stack_shift;
        for a in &mut self.stacks.aggs {
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
        let shift = self.stack_shift;
        let i = self.stacks.index(stack);
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
        a.curve_point(shift, now);
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
        let shift = self.stack_shift;
        let i = self.stacks.index(stack);
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
        a.curve_point(shift, now);
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

/// One row of the per-stack table: the final numbers of a stack, unscaled (as recorded).
#[derive(Debug, Clone, PartialEq)]
pub struct StackRow {
    pub stack_id: u32,
    pub allocations: u64,
    pub allocated_bytes: u64,
    pub frees: u64,
    pub freed_bytes: u64,
    /// Still live at the end (or at `--at`), whatever their age.
    pub live_allocations: u64,
    pub live_bytes: u64,
    /// Still live at the end and older than `--min-age`: what leak reports count.
    pub unfreed_allocations: u64,
    pub unfreed_bytes: u64,
    pub peak_bytes: u64,
    pub first_alloc_ns: u64,
    pub last_alloc_ns: u64,
    pub lifetime_p50_ns: Option<u64>,
    pub lifetime_p90_ns: Option<u64>,
    pub lifetime_p99_ns: Option<u64>,
    pub lifetime_max_ns: Option<u64>,
    /// Live bytes at the end of each bucket of the trace's time axis.
    pub unfreed_over_time: Vec<i64>,
    pub lifetimes: LogHistogram,
    pub lifetime_classes: [u64; 12],
    pub sizes: Vec<u64>,
}

impl StackRow {
    pub fn from_agg(
        stack_id: u32,
        a: &StackAgg,
        unfreed: (u64, u64),
        shift: u32,
        axis: TimeAxis,
    ) -> StackRow {
        StackRow {
            stack_id,
            allocations: a.allocations,
            allocated_bytes: a.allocated_bytes,
            frees: a.frees,
            freed_bytes: a.freed_bytes,
            live_allocations: a.live_allocations,
            live_bytes: a.live_bytes,
            unfreed_allocations: unfreed.0,
            unfreed_bytes: unfreed.1,
            peak_bytes: a.peak_bytes,
            first_alloc_ns: if a.allocations == 0 {
                0
            } else {
                a.first_alloc_ns
            },
            last_alloc_ns: a.last_alloc_ns,
            lifetime_p50_ns: a.lifetimes.quantile(0.50),
            lifetime_p90_ns: a.lifetimes.quantile(0.90),
            lifetime_p99_ns: a.lifetimes.quantile(0.99),
            lifetime_max_ns: a.lifetimes.max(),
            unfreed_over_time: a.curve.finish(shift, axis.buckets),
            lifetimes: a.lifetimes.clone(),
            lifetime_classes: a.lifetime_classes,
            sizes: a.sizes.clone(),
        }
    }
}

/// Extra per-row text columns the table carries beside the numbers (verdicts, frames).
#[derive(Debug, Clone, Default)]
pub struct RowLabels {
    pub verdict: String,
    pub reason: String,
    pub top_function: String,
    /// Symbolized frames, innermost first, joined with " <- ".
    pub frames: String,
}

/// Builds the per-stack `DataFrame`: one row per stack, numbers scaled by `scale` (the
/// sampling weight per stack; 1.0 for unsampled traces).
pub fn stacks_dataframe(
    rows: &[StackRow],
    labels: &[RowLabels],
    scale: impl Fn(&StackRow) -> f64,
) -> PolarsResult<DataFrame> {
    let s = |f: fn(&StackRow) -> u64| -> Vec<u64> {
        rows.iter()
            .map(|r| (f(r) as f64 * scale(r)).round() as u64)
            .collect()
    };
    let raw = |f: fn(&StackRow) -> u64| -> Vec<u64> { rows.iter().map(f).collect() };
    let opt =
        |f: fn(&StackRow) -> Option<u64>| -> Vec<Option<u64>> { rows.iter().map(f).collect() };
    let text = |f: fn(&RowLabels) -> &str| -> Vec<String> {
        labels.iter().map(|l| f(l).to_owned()).collect()
    };
    let columns = vec![
        Column::new(
            "stack_id".into(),
            rows.iter().map(|r| r.stack_id).collect::<Vec<u32>>(),
        ),
        Column::new("verdict".into(), text(|l| &l.verdict)),
        Column::new("unfreed_bytes".into(), s(|r| r.unfreed_bytes)),
        Column::new("unfreed_allocations".into(), s(|r| r.unfreed_allocations)),
        Column::new("live_bytes".into(), s(|r| r.live_bytes)),
        Column::new("live_allocations".into(), s(|r| r.live_allocations)),
        Column::new("allocations".into(), s(|r| r.allocations)),
        Column::new("allocated_bytes".into(), s(|r| r.allocated_bytes)),
        Column::new("frees".into(), s(|r| r.frees)),
        Column::new("freed_bytes".into(), s(|r| r.freed_bytes)),
        Column::new("peak_bytes".into(), s(|r| r.peak_bytes)),
        Column::new("first_alloc_ns".into(), raw(|r| r.first_alloc_ns)),
        Column::new("last_alloc_ns".into(), raw(|r| r.last_alloc_ns)),
        Column::new("lifetime_p50_ns".into(), opt(|r| r.lifetime_p50_ns)),
        Column::new("lifetime_p90_ns".into(), opt(|r| r.lifetime_p90_ns)),
        Column::new("lifetime_p99_ns".into(), opt(|r| r.lifetime_p99_ns)),
        Column::new("lifetime_max_ns".into(), opt(|r| r.lifetime_max_ns)),
        Column::new("top_function".into(), text(|l| &l.top_function)),
        Column::new("frames".into(), text(|l| &l.frames)),
        Column::new("reason".into(), text(|l| &l.reason)),
    ];
    DataFrame::new_infer_height(columns)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_histogram_buckets_round_trip() {
        for v in [
            0u64,
            1,
            3,
            4,
            5,
            7,
            8,
            9,
            15,
            16,
            1000,
            1023,
            1024,
            123_456_789,
            u64::MAX,
        ] {
            let i = LogHistogram::index(v);
            let (lo, hi) = LogHistogram::bounds(i);
            assert!(lo <= v && v <= hi, "{v} in bucket {i} = {lo}..={hi}");
        }
        assert_eq!(LogHistogram::index(1000), 35);
        assert_eq!(LogHistogram::bounds(35), (896, 1023));
        // Buckets tile the line: each starts right after the previous one ends.
        for i in 1..200 {
            assert_eq!(LogHistogram::bounds(i).0, LogHistogram::bounds(i - 1).1 + 1);
        }
    }

    #[test]
    fn quantiles_are_clamped_bucket_bounds() {
        let mut h = LogHistogram::default();
        assert_eq!(h.quantile(0.5), None);
        h.add(1000);
        assert_eq!(h.quantile(0.5), Some(1000));
        for _ in 0..8 {
            h.add(10);
        }
        h.add(5000);
        // 10 values: eight 10s, a 1000, a 5000. p50 -> bucket of 10 = 10..=11.
        assert_eq!(h.quantile(0.5), Some(11));
        assert_eq!(h.quantile(0.9), Some(1023));
        assert_eq!(h.quantile(0.99), Some(5000));
        assert_eq!(h.max(), Some(5000));
    }

    #[test]
    fn classes() {
        assert_eq!(lifetime_class(0), 0);
        assert_eq!(lifetime_class(999), 0);
        assert_eq!(lifetime_class(1000), 1);
        assert_eq!(lifetime_class(59_999_999_999), 8);
        assert_eq!(lifetime_class(3_600_000_000_000), 11);
        assert_eq!(size_class(0), 0);
        assert_eq!(size_class(1), 0);
        assert_eq!(size_class(2), 1);
        assert_eq!(size_class(3), 2);
        assert_eq!(size_class(4), 2);
        assert_eq!(size_class(1024), 10);
        assert_eq!(size_class(1025), 11);
        assert_eq!(size_class_label(10), "513 B-1 KiB");
        assert_eq!(size_class_label(5), "17-32 B");
        assert_eq!(size_class_label(11), "1-2 KiB");
        assert_eq!(size_class_label(20), "512 KiB-1 MiB");
        assert_eq!(size_class_label(21), "1-2 MiB");
    }

    #[test]
    fn curves_rebucket_without_losing_the_last_value() {
        let mut c = Curve::new(4, CurveMode::Last);
        let mut shift = 0;
        for (t, v) in [(0u64, 1i64), (1024, 2), (3 * 1024, 3)] {
            shift = Curve::shift_for(4, shift, t);
            c.record(shift, t, v);
        }
        assert_eq!(c.finish(shift, 4), vec![1, 2, 2, 3]);
        // Time 5 KiB-ns does not fit 4 buckets of 1024: width doubles.
        shift = Curve::shift_for(4, shift, 5 * 1024);
        assert_eq!(shift, 1);
        c.record(shift, 5 * 1024, 4);
        assert_eq!(c.finish(shift, 4), vec![2, 3, 4, 4]);
        let mut m = Curve::new(4, CurveMode::Max);
        m.record(0, 0, 5);
        m.record(0, 1024, 1);
        assert_eq!(m.finish(1, 2), vec![5, 5]);
    }

    #[test]
    fn lifetime_class_table_matches_the_bounds() {
        let slow = |ns: u64| LIFETIME_CLASS_BOUNDS_NS.partition_point(|&b| b <= ns);
        let mut values = vec![0u64, 1, 2, u64::MAX, u64::MAX - 1];
        for &b in &LIFETIME_CLASS_BOUNDS_NS {
            values.extend([b - 1, b, b + 1]);
        }
        for e in 0..64 {
            let p = 1u64 << e;
            values.extend([p - 1, p, p + 1, p | (p >> 1)]);
        }
        for v in values {
            assert_eq!(lifetime_class(v), slow(v), "{v}");
        }
    }

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
