//! Values over time in a fixed number of buckets whose width doubles as time outgrows them
//! (unfreed bytes per stack, the heap timeline), and the time axis every curve ends on.

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

    /// Empties the curve, back to its narrowest buckets.
    pub fn clear(&mut self) {
        self.vals.fill(UNSET);
        self.shift = 0;
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

/// The time axis a set of curves is on: where it starts, its bucket width and how many
/// buckets the span fills. Bucket `i` covers `start_ns + [i * bucket_ns, (i + 1) * bucket_ns)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct TimeAxis {
    pub bucket_ns: u64,
    pub buckets: usize,
    /// On the trace's clock: 0 for the heap timeline, when the process started to be traced
    /// (or its latest exec) for stack curves.
    pub start_ns: u64,
}

impl TimeAxis {
    /// The axis of curves of `capacity` buckets recorded up to `shift`, spanning `start_ns` to
    /// `end_ns`; and the shift it ends at.
    pub fn new(capacity: usize, shift: u32, start_ns: u64, end_ns: u64) -> (TimeAxis, u32) {
        let span = end_ns.saturating_sub(start_ns);
        let shift = Curve::shift_for(capacity, shift, span);
        let bucket_ns = BASE_BUCKET_NS << shift;
        let buckets = ((span / bucket_ns) as usize + 1).min(capacity);
        (
            TimeAxis {
                bucket_ns,
                buckets,
                start_ns,
            },
            shift,
        )
    }

    /// The time (trace clock) bucket `i` starts at.
    pub fn time_of(&self, i: usize) -> u64 {
        self.start_ns
            .saturating_add((i as u64).saturating_mul(self.bucket_ns))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
