//! Hand-written SVG charts: the lifetimes histograms and the heap/RSS timeline.

use std::fmt::Write as _;

use super::xml_escape;
use crate::analysis::Analysis;
use crate::report::Lifetimes;
use memtrail_format::units::{format_bytes, format_duration};

const FONT: &str = "font-family=\"Verdana, sans-serif\" font-size=\"11\"";

fn header(o: &mut String, w: u32, h: u32, title: &str) {
    let _ = writeln!(
        o,
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\">"
    );
    let _ = writeln!(o, "<title>{}</title>", xml_escape(title));
    let _ = writeln!(
        o,
        "<rect x=\"0\" y=\"0\" width=\"{w}\" height=\"{h}\" fill=\"white\"/>"
    );
    let _ = writeln!(
        o,
        "<text x=\"{}\" y=\"22\" text-anchor=\"middle\" font-family=\"Verdana, sans-serif\" font-size=\"15\">{}</text>",
        w / 2,
        xml_escape(title)
    );
}

/// Horizontal bars: one per (label, count), in a panel at `x`.
fn bars(o: &mut String, x: u32, y: u32, heading: &str, items: &[(String, u64)], color: &str) {
    let max = items.iter().map(|i| i.1).max().unwrap_or(0).max(1);
    let _ = writeln!(
        o,
        "<text x=\"{x}\" y=\"{y}\" {FONT} font-weight=\"bold\">{}</text>",
        xml_escape(heading)
    );
    for (k, (label, n)) in items.iter().enumerate() {
        let row_y = y + 12 + k as u32 * 20;
        let len = (*n as f64 / max as f64 * 260.0).round() as u32;
        let _ = writeln!(
            o,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"end\" {FONT}>{}</text>",
            x + 110,
            row_y + 13,
            xml_escape(label)
        );
        let _ = writeln!(
            o,
            "<rect x=\"{}\" y=\"{row_y}\" width=\"{len}\" height=\"16\" fill=\"{color}\"><title>{}: {n}</title></rect>",
            x + 116,
            xml_escape(label)
        );
        let _ = writeln!(
            o,
            "<text x=\"{}\" y=\"{}\" {FONT}>{n}</text>",
            x + 120 + len,
            row_y + 13
        );
    }
}

pub fn lifetimes(a: &Analysis, l: &Lifetimes, what: &str) -> String {
    let (left, right) = l.labeled_rows();
    let rows = left.len().max(right.len()) as u32;
    let (w, h) = (900, 70 + rows * 20 + 20);
    let mut o = String::new();
    header(
        &mut o,
        w,
        h,
        &format!(
            "memtrail lifetimes: {what} of {} ({})",
            a.command(),
            format_duration(a.replay.duration_ns)
        ),
    );
    bars(&mut o, 10, 50, "lifetime of blocks", &left, "#4a7ebb");
    bars(&mut o, 460, 50, "size of blocks", &right, "#5aa469");
    o.push_str("</svg>\n");
    o
}

pub fn timeline(a: &Analysis) -> String {
    let r = &a.replay;
    let (w, h) = (900u32, 420u32);
    let (x0, y0, pw, ph) = (80.0, 50.0, 780.0, 310.0);
    let duration = r.duration_ns.max(1) as f64;
    let rss_max = r.stats.rss.iter().map(|s| s.rss_bytes).max().unwrap_or(0);
    let heap_max = r.heap_curve.iter().copied().max().unwrap_or(0).max(0) as u64;
    let ymax = rss_max.max(heap_max).max(1) as f64;
    let px = |t: f64| x0 + t / duration * pw;
    let py = |v: f64| y0 + ph - v / ymax * ph;
    let mut o = String::new();
    header(
        &mut o,
        w,
        h,
        &format!(
            "memtrail timeline: {} ({})",
            a.command(),
            format_duration(r.duration_ns)
        ),
    );
    let _ = writeln!(
        o,
        "<rect x=\"{x0}\" y=\"{y0}\" width=\"{pw}\" height=\"{ph}\" fill=\"none\" stroke=\"#999\"/>"
    );
    for k in 0..=4 {
        let v = ymax * k as f64 / 4.0;
        let _ = writeln!(
            o,
            "<text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\" {FONT}>{}</text>",
            x0 - 4.0,
            py(v) + 4.0,
            format_bytes(v as u64)
        );
        let t = duration * k as f64 / 4.0;
        let _ = writeln!(
            o,
            "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\" {FONT}>{}</text>",
            px(t),
            y0 + ph + 16.0,
            format_duration(t as u64)
        );
    }
    let mut heap = String::new();
    let b = r.heap_axis.bucket_ns as f64;
    for (i, &v) in r.heap_curve.iter().enumerate() {
        let t = ((i as f64 + 1.0) * b).min(duration);
        let _ = write!(heap, "{:.1},{:.1} ", px(t), py(v.max(0) as f64));
    }
    let _ = writeln!(
        o,
        "<polyline points=\"{}\" fill=\"none\" stroke=\"#c0392b\" stroke-width=\"2\"><title>live heap bytes (peak {})</title></polyline>",
        heap.trim_end(),
        format_bytes(r.peak_bytes)
    );
    if !r.stats.rss.is_empty() {
        let mut rss = String::new();
        for s in &r.stats.rss {
            let _ = write!(
                rss,
                "{:.1},{:.1} ",
                px(s.time_ns as f64),
                py(s.rss_bytes as f64)
            );
        }
        let _ = writeln!(
            o,
            "<polyline points=\"{}\" fill=\"none\" stroke=\"#2c7bb6\" stroke-width=\"2\"><title>RSS (peak {})</title></polyline>",
            rss.trim_end(),
            format_bytes(rss_max)
        );
    }
    let ly = h - 18;
    let _ = writeln!(
        o,
        "<rect x=\"{x0}\" y=\"{}\" width=\"14\" height=\"4\" fill=\"#c0392b\"/><text x=\"{}\" y=\"{ly}\" {FONT}>live heap (malloc family + mmap)</text>",
        ly - 5,
        x0 + 20.0
    );
    let _ = writeln!(
        o,
        "<rect x=\"{}\" y=\"{}\" width=\"14\" height=\"4\" fill=\"#2c7bb6\"/><text x=\"{}\" y=\"{ly}\" {FONT}>RSS{}</text>",
        x0 + 300.0,
        ly - 5,
        x0 + 320.0,
        if r.stats.rss.is_empty() {
            " (no samples in this trace)"
        } else {
            ""
        }
    );
    o.push_str("</svg>\n");
    o
}
