//! A stack's final numbers as reports, diffs and exports read them (`StackRow`), and the text
//! columns reports put beside them (`RowLabels`).

use super::histogram::LogHistogram;
use super::stacks::StackAgg;

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
    /// Live bytes at the end of each bucket of the time axis of the replay it belongs to
    /// (`ReplayOutput::axis`: the process's, from when it started to be traced or its latest
    /// exec).
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
        unfreed_over_time: Vec<i64>,
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
            unfreed_over_time,
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
