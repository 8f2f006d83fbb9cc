//! Leak verdicts: reading a stack's unfreed-bytes-over-time curve.
//!
//! Owns the classification and the sentence that explains it. Must not look at anything but the
//! curve and its time axis (no names, no counts), so that verdicts are reproducible and testable
//! on hand-made curves.
//!
//! The curve has one value per time bucket: the stack's live bytes at the end of the bucket.
//! Its axis spans only the time the process was traced (from when it started to be, or its
//! latest exec, to its exit), so a recording that starts early, a recorder slow to start or
//! a recording that goes on after the exit does not make a leak look flat.
//! To ignore short-lived churn, trends are read on *floors*: the minimum over a window of
//! `n/16` buckets. Rules, in order:
//! 0. A curve that rose in a single bucket is `unfreed-at-exit`: one burst is not a trend.
//! 1. `leak`: the floor at the end is above the floor just before the last quarter by more than
//!    5% of the final bytes, or the floors of the last quarter's four sub-windows rise steadily.
//! 2. `unfreed-at-exit`: not growing at the end, and either 90% of the final bytes were reached
//!    within the first quarter of the recording, or in a single step.
//! 3. `growing-then-stable`: grew over several steps past the first quarter, then flat: a cache.

use memtrail_format::units::{format_bytes, format_duration};

use crate::aggregate::TimeAxis;

/// What a stack's unfreed bytes look like over the recording.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// Keeps growing through the recording.
    Leak,
    /// Grew, then plateaued (a cache, a pool).
    GrowingThenStable,
    /// Allocated early (or at once) and not growing; still live at the end.
    UnfreedAtExit,
}

impl Verdict {
    pub fn name(self) -> &'static str {
        match self {
            Verdict::Leak => "leak",
            Verdict::GrowingThenStable => "growing-then-stable",
            Verdict::UnfreedAtExit => "unfreed-at-exit",
        }
    }

    /// How strong the verdict is, when a stack has one in each of several processes: a trend
    /// over one that is not, a leak over a cache.
    pub fn strength(self) -> u8 {
        match self {
            Verdict::Leak => 3,
            Verdict::GrowingThenStable => 2,
            Verdict::UnfreedAtExit => 1,
        }
    }
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A verdict and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Classification {
    pub verdict: Verdict,
    pub reason: String,
}

/// Classifies a curve on `axis`. Times in the reason are on the trace's clock (the axis's
/// start plus the buckets before), capped at `end_ns`.
pub fn classify(curve: &[i64], axis: &TimeAxis, end_ns: u64) -> Classification {
    let n = curve.len();
    let at = |i: usize| format_duration(axis.time_of(i).min(end_ns));
    let end_value = curve.last().copied().unwrap_or(0).max(0);
    if n < 8 {
        return Classification {
            verdict: Verdict::UnfreedAtExit,
            reason: format!(
                "{} live at the end; the recording is too short ({n} time buckets) to see a trend",
                format_bytes(end_value as u64)
            ),
        };
    }
    let k = (n / 16).max(1);
    let floor = |end: usize| -> i64 {
        // Minimum over the k buckets ending at `end` (exclusive).
        curve[end.saturating_sub(k)..end]
            .iter()
            .copied()
            .min()
            .unwrap_or(0)
    };
    let steps = curve.windows(2).filter(|w| w[1] > w[0]).count() + usize::from(curve[0] > 0);
    if steps <= 1 {
        let when = curve.iter().position(|&v| v > 0).unwrap_or(0);
        // The curve says in which bucket the step was, not when in it.
        return Classification {
            verdict: Verdict::UnfreedAtExit,
            reason: format!(
                "allocated in one step between {} and {} ({}% into the run), not growing: {} live at the end",
                at(when),
                at(when + 1),
                when * 100 / n,
                format_bytes(end_value as u64)
            ),
        };
    }
    let quarter = n - n / 4;
    let floor_end = floor(n);
    let floor_before = floor(quarter);
    let fin = end_value.max(floor_end).max(1);
    let growth = floor_end - floor_before;
    let sub = (n - quarter) / 4;
    let steady = sub >= 1
        && (0..4).all(|j| floor(quarter + (j + 1) * sub) > floor(quarter + j * sub).max(0))
        && floor(quarter + sub) > floor_before;
    if growth as f64 > 0.05 * fin as f64 || (steady && growth > 0) {
        return Classification {
            verdict: Verdict::Leak,
            reason: format!(
                "still growing at the end: +{} in the last quarter ({} .. {}), {} live at the end",
                format_bytes(growth as u64),
                at(quarter),
                at(n),
                format_bytes(end_value as u64)
            ),
        };
    }
    let reach = curve
        .iter()
        .position(|&v| v as f64 >= 0.9 * fin as f64)
        .unwrap_or(n - 1);
    if (reach + 1) * 4 <= n {
        return Classification {
            verdict: Verdict::UnfreedAtExit,
            reason: format!(
                "allocated early (90% of its {} reached by {}, {}% into the run), flat since",
                format_bytes(end_value as u64),
                at(reach + 1),
                (reach + 1) * 100 / n
            ),
        };
    }
    Classification {
        verdict: Verdict::GrowingThenStable,
        reason: format!(
            "grew until {} ({}% into the run) over {steps} steps, then flat at {} (a cache or pool?)",
            at(reach + 1),
            (reach + 1) * 100 / n,
            format_bytes(end_value as u64)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const AXIS: TimeAxis = TimeAxis {
        bucket_ns: 1_000_000,
        buckets: 64,
        start_ns: 0,
    };

    fn v(curve: &[i64]) -> Verdict {
        classify(curve, &AXIS, 64_000_000).verdict
    }

    #[test]
    fn steady_growth_is_a_leak() {
        let c: Vec<i64> = (1..=64).map(|i| i * 8192).collect();
        assert_eq!(v(&c), Verdict::Leak);
        assert!(
            classify(&c, &AXIS, 64_000_000)
                .reason
                .starts_with("still growing")
        );
    }

    #[test]
    fn slow_growth_on_a_large_base_is_a_leak() {
        let c: Vec<i64> = (0..64).map(|i| 1_000_000 + i * 100).collect();
        assert_eq!(v(&c), Verdict::Leak);
    }

    #[test]
    fn growth_then_plateau_is_a_cache() {
        let c: Vec<i64> = (0..64).map(|i| (i.min(32)) * 4096).collect();
        assert_eq!(v(&c), Verdict::GrowingThenStable);
        // Churn at the plateau does not make it a leak.
        let c: Vec<i64> = (0..64)
            .map(|i| i.min(32) * 4096 + if i > 32 && i % 3 == 0 { 4096 } else { 0 })
            .collect();
        assert_eq!(v(&c), Verdict::GrowingThenStable);
    }

    #[test]
    fn early_and_flat_is_unfreed_at_exit() {
        let mut c = vec![100_000i64; 64];
        c[0] = 50_000;
        assert_eq!(v(&c), Verdict::UnfreedAtExit);
        // One step in the middle: not a trend.
        let c: Vec<i64> = (0..64).map(|i| if i >= 32 { 4096 } else { 0 }).collect();
        assert_eq!(v(&c), Verdict::UnfreedAtExit);
        // Too short to tell.
        assert_eq!(v(&[1, 2, 3]), Verdict::UnfreedAtExit);
        // One allocation just before the end: not a trend either.
        let mut c = vec![0i64; 64];
        c[63] = 8192;
        assert_eq!(v(&c), Verdict::UnfreedAtExit);
        assert!(
            classify(&c, &AXIS, 64_000_000)
                .reason
                .contains("one step between 63.0 ms and 64.0 ms")
        );
    }

    #[test]
    fn reasons_quote_times_on_the_trace_clock() {
        // An axis starting 5 s into the recording: times in the reason start there.
        let axis = TimeAxis {
            start_ns: 5_000_000_000,
            ..AXIS
        };
        let c: Vec<i64> = (1..=64).map(|i| i * 8192).collect();
        let r = classify(&c, &axis, 5_064_000_000).reason;
        assert!(r.contains("(5.05 s .. 5.06 s)"), "{r}");
    }

    #[test]
    fn growth_only_at_the_very_end_is_a_leak() {
        let c: Vec<i64> = (0..64)
            .map(|i| if i >= 60 { (i - 59) * 1000 } else { 0 })
            .collect();
        assert_eq!(v(&c), Verdict::Leak);
    }
}
