//! Per-stack aggregates: what the replay feeds, and the per-stack rows the reports read.
//!
//! Owns the accumulators (counts, bytes, peaks, lifetime and size histograms, unfreed bytes over
//! time) and turning them into rows. Must not know the event semantics (which address is live:
//! `replay.rs`), symbol names (`symbols.rs`) or output formats (`render/`; the per-stack
//! `DataFrame` is built in `render/export.rs`). Memory is proportional to the number of
//! distinct stacks, never to events.
//!
//! - `curve`: values over time in buckets that double, and the time axis they end on;
//! - `histogram`: the log-linear histogram, lifetime classes and size classes;
//! - `stacks`: the per-stack accumulators and the replay's `Aggregates` (the hot path);
//! - `rows`: a stack's final numbers, as reports and exports read them.

mod curve;
mod histogram;
mod rows;
mod stacks;

pub use curve::{
    BASE_BUCKET_NS, Curve, CurveMode, GLOBAL_CURVE_BUCKETS, STACK_CURVE_BUCKETS, TimeAxis,
};
pub use histogram::{
    LIFETIME_CLASS_BOUNDS_NS, LIFETIME_CLASS_LABELS, LogHistogram, SIZE_CLASSES, lifetime_class,
    size_class, size_class_label,
};
pub use memtrail_format::IntMap;
pub use rows::{RowLabels, StackRow};
pub use stacks::{Aggregates, StackAgg, StackAggs};
