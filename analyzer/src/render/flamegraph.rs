//! Flame graphs: folded stacks from the per-stack rows, drawn by inferno.
//!
//! Folded lines are `outermost;...;innermost value`, merged by symbolized stack and sorted,
//! so the SVG is the same for the same trace. A diff's lines carry two values (BASE, NEW),
//! which inferno draws as a differential flame graph.
//!
//! inferno escapes `& < > " '` but not control characters, which XML 1.0 forbids: every name,
//! title and subtitle reaches it as [`terminal`] shows it (visible escapes), so the SVG is
//! well-formed whatever a trace holds; the folded lines carry the same names.

use std::collections::BTreeMap;
use std::io::Write;

use inferno::flamegraph::{self, Options, color::BasicPalette, color::Palette};

use crate::analysis::Analysis;
use crate::cli::Metric;
use crate::diff::{Diff, Normalize};
use crate::escape::{shown, terminal};
use crate::report::scaled_row;
use memtrail_format::units::format_duration;

fn metric_value(m: Metric, r: &crate::aggregate::StackRow) -> u64 {
    match m {
        Metric::Unfreed => r.unfreed_bytes,
        Metric::Allocated => r.allocated_bytes,
        Metric::Allocations => r.allocations,
        Metric::Peak => r.peak_bytes,
    }
}

fn clean(name: &str) -> String {
    // ';' separates frames and a trailing number is the count: keep names from looking like
    // either (newlines are escaped, with every other control character).
    terminal(name).replace(';', ":")
}

/// Folded stacks for `metric`, sorted, one per distinct symbolized stack, zero values left out.
pub fn folded(a: &Analysis, metric: Metric) -> Vec<String> {
    let mut merged: BTreeMap<String, u64> = BTreeMap::new();
    for row in &a.replay.rows {
        let v = metric_value(metric, &scaled_row(a, row));
        if v == 0 {
            continue;
        }
        let frames = a.symbols.resolve(row.stack_id);
        let names: Vec<String> = frames.iter().rev().map(|f| clean(&f.function)).collect();
        let sum = merged.entry(names.join(";")).or_default();
        *sum = sum.saturating_add(v);
    }
    let shift = total_shift(merged.values().copied());
    merged
        .into_iter()
        .map(|(stack, v)| format!("{stack} {}", v >> shift))
        .collect()
}

/// How far to shift every value right so that their sum fits a u64 (inferno adds them up):
/// 0 unless the trace's sums saturated (the analysis warns then); widths keep their
/// proportions.
fn total_shift(values: impl Iterator<Item = u64> + Clone) -> u32 {
    (0..64)
        .find(|&k| {
            values
                .clone()
                .try_fold(0u64, |sum, v| sum.checked_add(v >> k))
                .is_some()
        })
        .unwrap_or(63)
}

/// Draws the flame graph SVG of `lines` into `out`.
pub fn svg(
    a: &Analysis,
    metric: Metric,
    inverted: bool,
    lines: &[String],
    out: impl Write,
) -> std::io::Result<()> {
    let (what, count_name) = match metric {
        Metric::Unfreed => ("unfreed bytes", "bytes"),
        Metric::Allocated => ("allocated bytes", "bytes"),
        Metric::Allocations => ("allocations", "allocations"),
        Metric::Peak => ("peak live bytes per stack", "bytes"),
    };
    let mut opts = Options::default();
    opts.title = format!(
        "memtrail: {what} of {} ({})",
        shown(a.command()),
        format_duration(a.replay.duration_ns)
    );
    opts.subtitle = Some(match a.replay.options.at_ns {
        Some(t) => format!("at {}", format_duration(t)),
        None => format!("over the whole recording of {}", shown(a.path.display())),
    });
    opts.count_name = count_name.to_owned();
    opts.colors = Palette::Basic(BasicPalette::Mem);
    opts.deterministic = true;
    opts.reverse_stack_order = inverted;
    if lines.is_empty() {
        // inferno refuses empty input; draw a single placeholder frame.
        let placeholder = ["(nothing to show) 1".to_owned()];
        return flamegraph::from_lines(&mut opts, placeholder.iter().map(String::as_str), out);
    }
    flamegraph::from_lines(&mut opts, lines.iter().map(String::as_str), out)
}

/// Folded lines of a diff, `outermost;...;innermost BASE NEW`, the compared quantity of each
/// stack in both traces (rounded to whole bytes, or bytes per second), sorted.
pub fn diff_folded(d: &Diff) -> Vec<String> {
    let mut merged: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for s in &d.stacks {
        let (b, n) = (
            s.base_value(d.normalize).round() as u64,
            s.new_value(d.normalize).round() as u64,
        );
        if b == 0 && n == 0 {
            continue;
        }
        let names: Vec<String> = s.frames.iter().rev().map(|f| clean(&f.function)).collect();
        let e = merged.entry(names.join(";")).or_default();
        e.0 = e.0.saturating_add(b);
        e.1 = e.1.saturating_add(n);
    }
    let shift = total_shift(merged.values().map(|&(b, _)| b))
        .max(total_shift(merged.values().map(|&(_, n)| n)));
    merged
        .into_iter()
        .map(|(stack, (b, n))| format!("{stack} {} {}", b >> shift, n >> shift))
        .collect()
}

/// Draws the differential flame graph of `lines` (from [`diff_folded`]): red frames grew since
/// BASE, blue ones shrank. Frame widths are the unfreed bytes of whichever trace holds more in
/// total (NEW on a tie), so that a leak shows whether it appeared (widths from NEW) or was
/// fixed (widths from BASE); a stack with nothing unfreed in that trace has no width (it is in
/// the table).
pub fn diff_svg(d: &Diff, lines: &[String], out: impl Write) -> std::io::Result<()> {
    let mut opts = Options::default();
    let per_second = d.normalize == Normalize::Duration;
    opts.title = format!(
        "memtrail diff: unfreed bytes{} of {} against {}",
        if per_second { " per second" } else { "" },
        shown(&d.new.command),
        shown(&d.base.command)
    );
    let counts = |l: &String| -> Option<(u64, u64)> {
        let mut it = l.rsplitn(3, ' ');
        let new = it.next()?.parse().ok()?;
        let base = it.next()?.parse().ok()?;
        Some((base, new))
    };
    let (base_total, new_total) = lines
        .iter()
        .filter_map(counts)
        .fold((0u64, 0u64), |(b, n), (x, y)| {
            (b.saturating_add(x), n.saturating_add(y))
        });
    opts.count_name = if per_second { "bytes/s" } else { "bytes" }.to_owned();
    opts.deterministic = true;
    if base_total == 0 && new_total == 0 {
        opts.subtitle = Some("nothing unfreed in either trace".into());
        let placeholder = ["(nothing unfreed) 1".to_owned()];
        return flamegraph::from_lines(&mut opts, placeholder.iter().map(String::as_str), out);
    }
    if base_total > new_total {
        // inferno takes widths from the second count and colors by second minus first: give
        // it BASE second and negate the differences, so red still means grew.
        opts.subtitle = Some(format!(
            "width: BASE ({}), which holds more; red grew, blue shrank in NEW ({})",
            shown(d.base.path.display()),
            shown(d.new.path.display())
        ));
        opts.negate_differentials = true;
        let swapped: Vec<String> = lines
            .iter()
            .filter_map(|l| {
                let (base, new) = counts(l)?;
                let stack = l.rsplitn(3, ' ').nth(2)?;
                Some(format!("{stack} {new} {base}"))
            })
            .collect();
        return flamegraph::from_lines(&mut opts, swapped.iter().map(String::as_str), out);
    }
    opts.subtitle = Some(format!(
        "width: NEW ({}); red grew, blue shrank since BASE ({})",
        shown(d.new.path.display()),
        shown(d.base.path.display())
    ));
    flamegraph::from_lines(&mut opts, lines.iter().map(String::as_str), out)
}
