//! Tables out through polars: the per-stack and per-allocation `DataFrame`s written as Parquet,
//! CSV or JSON (an array of row objects), for people who continue in polars, pandas or DuckDB.

use std::io::Write;

use polars::prelude::*;

use crate::aggregate::{RowLabels, StackRow};
use crate::analysis::Analysis;
use crate::escape;
use crate::replay::AllocationRow;
use crate::report::{
    LeakReport, Lifetimes, lifetime_class_bounds, pids_by_stack, row_labels, scaled_row,
};

/// A file format polars writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableFormat {
    Parquet,
    Csv,
    Json,
}

/// Writes `df` to `out`. CSV string cells are escaped for terminals and spreadsheets
/// ([`escape::csv_cell`]: visible escapes, a `'` before a formula); JSON strings keep the raw
/// text, DEL, C1 controls and bidi overrides as `\uXXXX` escapes; Parquet keeps the raw text.
pub fn write(df: &mut DataFrame, format: TableFormat, out: impl Write) -> PolarsResult<()> {
    match format {
        TableFormat::Csv => CsvWriter::new(out)
            .include_header(true)
            .finish(&mut csv_cells(df)?),
        TableFormat::Json => {
            let mut out = escape::JsonWriter::new(out);
            JsonWriter::new(&mut out)
                .with_json_format(JsonFormat::Json)
                .finish(df)?;
            out.finish()?;
            Ok(())
        }
        TableFormat::Parquet => {
            // Snappy: read by every Parquet reader, and cheap.
            ParquetWriter::new(out)
                .with_compression(ParquetCompression::Snappy)
                .finish(df)
                .map(|_| ())
        }
    }
}

/// `df` with every string cell as [`escape::csv_cell`] shows it; numbers untouched (a negative
/// growth stays a number).
fn csv_cells(df: &DataFrame) -> PolarsResult<DataFrame> {
    let columns = df
        .columns()
        .iter()
        .map(|column| {
            if column.dtype() != &DataType::String {
                return Ok(column.clone());
            }
            let cells: StringChunked = column
                .str()?
                .iter()
                .map(|cell| cell.map(escape::csv_cell))
                .collect();
            Ok(cells.with_name(column.name().clone()).into_column())
        })
        .collect::<PolarsResult<Vec<Column>>>()?;
    DataFrame::new(df.height(), columns)
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

/// The leak candidates in rank order, with the per-stack table's columns plus `rank` and
/// `pids` (the processes where the stack holds unfreed bytes, separated by spaces).
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
    let by_stack = pids_by_stack(a);
    let pids: Vec<String> = rep
        .candidates
        .iter()
        .map(|c| {
            by_stack
                .get(&c.row.stack_id)
                .map(|p| p.iter().map(u32::to_string).collect::<Vec<_>>().join(" "))
                .unwrap_or_default()
        })
        .collect();
    df.with_column(Column::new("pids".into(), pids))?;
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

/// The diff table: one row per trace and stack, in rank order within each comparison. Columns
/// `baseline` and `trace` name the two files; `base_*` and `new_*` are each side's numbers
/// (null when the stack is not in that trace); `growth` is what the ranking and the gate read
/// (unfreed bytes, or per second with `--normalize duration`).
pub fn diff(diffs: &[&crate::diff::Diff]) -> PolarsResult<DataFrame> {
    use crate::diff::{ProcessDiff, Side, StackDiff};
    // The whole traces' stacks (no process), then each pair of processes' stacks.
    let rows: Vec<(&crate::diff::Diff, Option<&ProcessDiff>, &StackDiff)> = diffs
        .iter()
        .flat_map(|d| {
            // Per process only when a trace has several: else the one pair repeats the whole.
            let processes = if d.processes.len() > 1 {
                &d.processes[..]
            } else {
                &[]
            };
            d.stacks.iter().map(move |s| (*d, None, s)).chain(
                processes
                    .iter()
                    .flat_map(move |p| p.stacks.iter().map(move |s| (*d, Some(p), s))),
            )
        })
        .collect();
    let text = |f: &dyn Fn(&crate::diff::Diff, &StackDiff) -> String| -> Vec<String> {
        rows.iter().map(|(d, _, s)| f(d, s)).collect()
    };
    type SideField = fn(&Side) -> Option<u64>;
    let side_u64 = |name: &str, f: SideField| -> [Column; 2] {
        [
            Column::new(
                format!("base_{name}").into(),
                rows.iter()
                    .map(|(_, _, s)| s.base.as_ref().and_then(f))
                    .collect::<Vec<Option<u64>>>(),
            ),
            Column::new(
                format!("new_{name}").into(),
                rows.iter()
                    .map(|(_, _, s)| s.new.as_ref().and_then(f))
                    .collect::<Vec<Option<u64>>>(),
            ),
        ]
    };
    let side_f64 = |name: &str, f: fn(&Side) -> Option<f64>| -> [Column; 2] {
        [
            Column::new(
                format!("base_{name}").into(),
                rows.iter()
                    .map(|(_, _, s)| s.base.as_ref().and_then(f))
                    .collect::<Vec<Option<f64>>>(),
            ),
            Column::new(
                format!("new_{name}").into(),
                rows.iter()
                    .map(|(_, _, s)| s.new.as_ref().and_then(f))
                    .collect::<Vec<Option<f64>>>(),
            ),
        ]
    };
    let side_text = |name: &str, f: fn(&Side) -> Option<&'static str>| -> [Column; 2] {
        [
            Column::new(
                format!("base_{name}").into(),
                rows.iter()
                    .map(|(_, _, s)| s.base.as_ref().and_then(f))
                    .collect::<Vec<Option<&str>>>(),
            ),
            Column::new(
                format!("new_{name}").into(),
                rows.iter()
                    .map(|(_, _, s)| s.new.as_ref().and_then(f))
                    .collect::<Vec<Option<&str>>>(),
            ),
        ]
    };
    let mut columns = vec![
        Column::new(
            "baseline".into(),
            text(&|d, _| d.base.path.display().to_string()),
        ),
        Column::new(
            "trace".into(),
            text(&|d, _| d.new.path.display().to_string()),
        ),
        Column::new(
            "rank".into(),
            rows.iter()
                .map(|(_, _, s)| s.rank as u32)
                .collect::<Vec<u32>>(),
        ),
        Column::new(
            "status".into(),
            rows.iter()
                .map(|(_, _, s)| s.status.name())
                .collect::<Vec<&str>>(),
        ),
        Column::new(
            "growth".into(),
            rows.iter().map(|(_, _, s)| s.growth).collect::<Vec<f64>>(),
        ),
        Column::new(
            "growth_pct".into(),
            rows.iter()
                .map(|(_, _, s)| s.growth_pct)
                .collect::<Vec<Option<f64>>>(),
        ),
        Column::new(
            "crossed".into(),
            rows.iter()
                .map(|(_, _, s)| s.crossed)
                .collect::<Vec<bool>>(),
        ),
    ];
    columns.extend(side_u64("unfreed_bytes", |s| Some(s.row.unfreed_bytes)));
    columns.extend(side_u64("unfreed_allocations", |s| {
        Some(s.row.unfreed_allocations)
    }));
    columns.extend(side_u64("allocated_bytes", |s| Some(s.row.allocated_bytes)));
    columns.extend(side_u64("allocations", |s| Some(s.row.allocations)));
    columns.extend(side_f64(
        "allocations_per_second",
        Side::allocations_per_second,
    ));
    columns.extend(side_f64(
        "unfreed_bytes_per_second",
        Side::unfreed_bytes_per_second,
    ));
    columns.extend(side_u64("lifetime_p50_ns", |s| s.row.lifetime_p50_ns));
    columns.extend(side_text("verdict", |s| s.verdict.map(|v| v.name())));
    columns.push(Column::new(
        "top_function".into(),
        text(&|_, s| s.top_function().to_owned()),
    ));
    columns.push(Column::new("key".into(), text(&|_, s| s.key.clone())));
    columns.push(Column::new(
        "process".into(),
        rows.iter()
            .map(|(_, p, _)| p.map(|p| p.label()))
            .collect::<Vec<Option<String>>>(),
    ));
    DataFrame::new_infer_height(columns)
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
