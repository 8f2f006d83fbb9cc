//! Leak verdicts: reading a stack's unfreed-bytes-over-time curve.
//!
//! Owns the classification and the sentence that explains it. Must not look at anything but the
//! curve and its time axis (no names, no counts), so that verdicts are reproducible and testable
//! on hand-made curves.
//!
//! The curve has one value per time bucket: the stack's live bytes at the end of the bucket.
//! Only the span when the process was active is read (from its first event to its exit), so a
//! recording that starts early or goes on after the exit does not make a leak look flat.
//! To ignore short-lived churn, trends are read on *floors*: the minimum over a window of
//! `n/16` buckets. Rules, in order:
//! 0. A curve that rose in a single bucket is `unfreed-at-exit`: one burst is not a trend.
//! 1. `leak`: the floor at the end is above the floor just before the last quarter by more than
//!    5% of the final bytes, or the floors of the last quarter's four sub-windows rise steadily.
//! 2. `unfreed-at-exit`: not growing at the end, and either 90% of the final bytes were reached
//!    within the first quarter of the recording, or in a single step.
//! 3. `growing-then-stable`: grew over several steps past the first quarter, then flat: a cache.

use memtrail_format::units::{format_bytes, format_duration};

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

/// Classifies a curve whose buckets are `bucket_ns` wide. Only the buckets from `start` on
/// are read (the process's activity starts there); times in the reason are capped at `end_ns`.
pub fn classify(curve: &[i64], bucket_ns: u64, start: usize, end_ns: u64) -> Classification {
    let start = start.min(curve.len().saturating_sub(1));
    let curve = &curve[start..];
    let n = curve.len();
    let at = |i: usize| format_duration(((start + i) as u64).saturating_mul(bucket_ns).min(end_ns));
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
        return Classification {
            verdict: Verdict::UnfreedAtExit,
            reason: format!(
                "allocated in one step at {} ({}% into the run), not growing: {} live at the end",
                at(when),
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

    fn v(curve: &[i64]) -> Verdict {
        classify(curve, 1_000_000, 0, 64_000_000).verdict
    }

    #[test]
    fn steady_growth_is_a_leak() {
        let c: Vec<i64> = (1..=64).map(|i| i * 8192).collect();
        assert_eq!(v(&c), Verdict::Leak);
        assert!(
            classify(&c, 1_000_000, 0, 64_000_000)
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
            classify(&c, 1_000_000, 0, 64_000_000)
                .reason
                .contains("one step at 63.0 ms")
        );
    }

    #[test]
    fn growth_only_at_the_very_end_is_a_leak() {
        let c: Vec<i64> = (0..64)
            .map(|i| if i >= 60 { (i - 59) * 1000 } else { 0 })
            .collect();
        assert_eq!(v(&c), Verdict::Leak);
    }
}
