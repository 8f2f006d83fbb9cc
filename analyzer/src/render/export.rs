//! Tables out through polars: the per-stack and per-allocation `DataFrame`s written as Parquet,
//! CSV or JSON (an array of row objects), for people who continue in polars, pandas or DuckDB.

use std::io::Write;

use polars::prelude::*;

use crate::aggregate::{StackRow, stacks_dataframe};
use crate::analysis::Analysis;
use crate::replay::AllocationRow;
use crate::report::{LeakReport, Lifetimes, lifetime_class_bounds, row_labels, scaled_row};

/// A file format polars writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableFormat {
    Parquet,
    Csv,
    Json,
}

/// Writes `df` to `out`.
pub fn write(df: &mut DataFrame, format: TableFormat, out: impl Write) -> PolarsResult<()> {
    match format {
        TableFormat::Csv => CsvWriter::new(out).include_header(true).finish(df),
        TableFormat::Json => JsonWriter::new(out)
            .with_json_format(JsonFormat::Json)
            .finish(df),
        TableFormat::Parquet => {
            // Snappy: read by every Parquet reader, and cheap.
            ParquetWriter::new(out)
                .with_compression(ParquetCompression::Snappy)
                .finish(df)
                .map(|_| ())
        }
    }
}

/// The per-stack table of the whole trace, one row per stack, by stack id.
pub fn stacks(a: &Analysis) -> PolarsResult<DataFrame> {
    let rows: &[StackRow] = &a.replay.rows;
    let labels = row_labels(a, rows);
    stacks_dataframe(rows, &labels, |r| {
        if a.meta.sample_bytes == 0 {
            1.0
        } else {
            a.scale(r)
        }
    })
}

/// The leak candidates in rank order, with the per-stack table's columns plus `rank`.
pub fn candidates(a: &Analysis, rep: &LeakReport) -> PolarsResult<DataFrame> {
    let rows: Vec<StackRow> = rep
        .candidates
        .iter()
        .map(|c| scaled_row(a, &c.row))
        .collect();
    let labels = row_labels(a, &rows);
    let mut labels = labels;
    for (l, c) in labels.iter_mut().zip(&rep.candidates) {
        l.verdict = c.verdict.name().to_owned();
        l.reason = c.reason.clone();
    }
    let mut df = stacks_dataframe(&rows, &labels, |_| 1.0)?;
    let rank: Vec<u32> = rep.candidates.iter().map(|c| c.rank as u32).collect();
    df.insert_column(0, Column::new("rank".into(), rank))?;
    Ok(df)
}

/// One row per allocation: address, size, stack, API, alloc and free time, lifetime.
pub fn allocations(rows: &[AllocationRow]) -> PolarsResult<DataFrame> {
    DataFrame::new_infer_height(vec![
        Column::new(
            "address".into(),
            rows.iter().map(|r| r.address).collect::<Vec<u64>>(),
        ),
        Column::new(
            "size".into(),
            rows.iter().map(|r| r.size).collect::<Vec<u64>>(),
        ),
        Column::new(
            "stack_id".into(),
            rows.iter().map(|r| r.stack).collect::<Vec<u32>>(),
        ),
        Column::new(
            "api".into(),
            rows.iter().map(|r| r.api.name()).collect::<Vec<&str>>(),
        ),
        Column::new(
            "alloc_ns".into(),
            rows.iter().map(|r| r.alloc_ns).collect::<Vec<u64>>(),
        ),
        Column::new(
            "free_ns".into(),
            rows.iter().map(|r| r.free_ns).collect::<Vec<Option<u64>>>(),
        ),
        Column::new(
            "lifetime_ns".into(),
            rows.iter()
                .map(|r| r.free_ns.map(|f| f.saturating_sub(r.alloc_ns)))
                .collect::<Vec<Option<u64>>>(),
        ),
    ])
}

/// The lifetime histogram as a table: `kind` (lifetime, never-freed or size), label, bounds,
/// count.
pub fn lifetimes(l: &Lifetimes) -> PolarsResult<DataFrame> {
    use crate::aggregate::{LIFETIME_CLASS_LABELS, size_class_label};
    let mut kind = Vec::new();
    let mut label = Vec::new();
    let mut low = Vec::new();
    let mut high: Vec<Option<u64>> = Vec::new();
    let mut count = Vec::new();
    for (i, l_) in LIFETIME_CLASS_LABELS.iter().enumerate() {
        let (lo, hi) = lifetime_class_bounds(i);
        kind.push("lifetime_ns");
        label.push((*l_).to_owned());
        low.push(lo);
        high.push(hi);
        count.push(l.classes[i]);
    }
    kind.push("never_freed");
    label.push("never freed".to_owned());
    low.push(0);
    high.push(None);
    count.push(l.never_freed);
    for (i, &n) in l.sizes.iter().enumerate() {
        let (lo, hi) = super::json::size_class_bounds(i);
        kind.push("size_bytes");
        label.push(size_class_label(i));
        low.push(lo);
        high.push(Some(hi));
        count.push(n);
    }
    DataFrame::new_infer_height(vec![
        Column::new("kind".into(), kind),
        Column::new("label".into(), label),
        Column::new("low".into(), low),
        Column::new("high".into(), high),
        Column::new("count".into(), count),
    ])
}
