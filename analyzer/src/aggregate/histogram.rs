//! Distributions: the log-linear histogram of lifetimes, the lifetime classes of the
//! `lifetimes` report and the power-of-two size classes.

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

/// The lifetime class of `ns` (an index into `LIFETIME_CLASS_LABELS`). Called on every free.
#[inline]
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

/// The size class of `size`. Called on every allocation.
#[inline]
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
}
