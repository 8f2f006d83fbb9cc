//! The HTML report: one self-contained file (no network, no external file) with the trace
//! summary, lost-event warnings, the leak candidates and their frames, the interactive flame
//! graph of unfreed bytes, the lifetime histogram and the heap-vs-RSS timeline; or the same for
//! a comparison of two traces.
//!
//! Owns the page's layout and styling only; every chart comes from the other renderers. All
//! text from a trace is escaped ([`crate::escape::xml`]: C++ names carry `<`, `>` and `&`, and
//! a name may hold control characters or `</script>`); the page embeds no data in a script.
//!
//! The flame graph is inferno's SVG inlined into the page, script included. Its script was
//! written for a standalone SVG document, so three things hold here: the flame graph is the
//! first `<svg>` of the page (the script takes `getElementsByTagName("svg")[0]`), no other
//! element uses its ids (`frames`, `details`, `search`, `matched`, `unzoom`, `title`) or its
//! classes (`hide`, `parent`), and its `init` runs from the page's own script at the end,
//! instead of the SVG's `onload`, which HTML does not fire for inline SVG.

use std::fmt::Write as _;

use super::xml_escape as esc;
use super::{flamegraph, svg, table};
use crate::analysis::Analysis;
use crate::cli::Metric;
use crate::diff::{Diff, Side};
use crate::report::{LeakReport, Lifetimes, calls, pids_by_stack, processes};
use crate::symbols::Frame;
use memtrail_format::units::{format_bytes, format_duration};

const STYLE: &str = r#"
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0 auto;
  max-width: 1280px; padding: 0 24px 48px; color: #1d232a; background: #fff; }
h1 { font-size: 1.6em; margin: 24px 0 4px; }
h2 { font-size: 1.25em; margin: 32px 0 8px; border-bottom: 1px solid #dde2e8; padding-bottom: 4px; }
.command { font-family: ui-monospace, Menlo, Consolas, monospace; color: #46505c; margin: 0; }
table.facts td:first-child { color: #5b6672; padding-right: 16px; white-space: nowrap; }
table.facts td { padding: 2px 8px 2px 0; vertical-align: top; }
table.rows { border-collapse: collapse; width: 100%; font-size: 0.92em; }
table.rows th { text-align: left; background: #f2f4f7; padding: 6px 8px; white-space: nowrap; }
table.rows td { border-top: 1px solid #e6e9ee; padding: 6px 8px; vertical-align: top; }
td.num, th.num { text-align: right; white-space: nowrap; font-variant-numeric: tabular-nums; }
.function { font-family: ui-monospace, Menlo, Consolas, monospace; font-weight: 600; }
.why { color: #46505c; font-size: 0.95em; }
.stack-frames { margin: 4px 0 0; padding-left: 22px; font-family: ui-monospace, Menlo, Consolas, monospace;
  font-size: 0.9em; }
.stack-frames .where { color: #5b6672; }
.badge { display: inline-block; padding: 1px 8px; border-radius: 10px; font-size: 0.85em;
  white-space: nowrap; background: #e6e9ee; }
.badge.leak, .badge.new, .badge.grown { background: #fbd5d0; color: #8a1c0e; }
.badge.growing-then-stable { background: #fdebc8; color: #7a4b00; }
.badge.shrunk, .badge.gone { background: #d3e6fb; color: #0d4a8a; }
.warning { background: #fff4e5; border-left: 4px solid #e08600; padding: 8px 12px; margin: 6px 0; }
.fine { background: #eaf6ec; border-left: 4px solid #2f8f46; padding: 8px 12px; margin: 6px 0; }
.chart { overflow-x: auto; }
.chart svg { max-width: 100%; height: auto; }
#flamegraph-box svg { width: 100%; }
.note { color: #5b6672; font-size: 0.9em; }
footer { margin-top: 40px; color: #8a949f; font-size: 0.85em; }
"#;

/// The page's own script: start the flame graph's (see the module comment).
const SCRIPT: &str = r#"if (typeof init === "function") { init(null); }"#;

fn page_start(o: &mut String, title: &str) {
    let _ = write!(
        o,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n",
        esc(title)
    );
}

fn page_end(o: &mut String) {
    let _ = write!(
        o,
        "<footer>Written by memtrail {}. This file is self-contained: it loads nothing.</footer>\n\
         <script>{SCRIPT}</script>\n</body>\n</html>\n",
        env!("CARGO_PKG_VERSION")
    );
}

/// An SVG document as an element of the page: the XML declaration and DOCTYPE dropped, and
/// inferno's `onload` hook removed (the page calls `init` itself).
fn inline_svg(document: &str) -> String {
    let start = document.find("<svg").unwrap_or(0);
    document[start..].replacen(" onload=\"init(evt)\"", "", 1)
}

fn facts(o: &mut String, rows: &[(&str, String)]) {
    o.push_str("<table class=\"facts\">\n");
    for (k, v) in rows {
        let _ = writeln!(o, "<tr><td>{}</td><td>{}</td></tr>", esc(k), esc(v));
    }
    o.push_str("</table>\n");
}

fn summary_rows(a: &Analysis) -> Vec<(&'static str, String)> {
    let r = &a.replay;
    let m = &a.meta;
    let s = &r.stats;
    let mut rows = vec![
        ("trace", a.path.display().to_string()),
        ("command", a.command()),
        (
            "process",
            format!(
                "pid {} on {} (kernel {})",
                m.pid, m.host_name, m.kernel_release
            ),
        ),
    ];
    if m.start_wall_ns > 0 {
        rows.push(("started", table::format_wall(m.start_wall_ns)));
    }
    rows.push((
        "duration",
        format!(
            "{} (process active from {} to {})",
            format_duration(r.duration_ns),
            format_duration(r.active_start_ns),
            format_duration(r.active_end_ns)
        ),
    ));
    rows.push((
        "sampling",
        if m.sample_bytes > 0 {
            format!(
                "one allocation per {} bytes: numbers are estimates",
                m.sample_bytes
            )
        } else {
            "none: every call recorded".into()
        },
    ));
    let calls: Vec<String> = calls(a)
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .map(|(k, n)| format!("{k} {n}"))
        .collect();
    rows.push(("events", format!("{} ({})", s.events, calls.join(", "))));
    rows.push((
        "heap",
        format!(
            "peak {} at {}; {} live at the end in {} blocks",
            format_bytes(r.peak_bytes),
            format_duration(r.peak_time_ns),
            format_bytes(r.live_bytes),
            r.live_allocations
        ),
    ));
    if let Some(peak) = s.rss.iter().map(|x| x.rss_bytes).max() {
        rows.push((
            "RSS",
            format!("{} samples, peak {}", s.rss.len(), format_bytes(peak)),
        ));
    }
    rows.push((
        "unmatched",
        format!(
            "{} frees, {} munmaps (of blocks from before the recording, or lost)",
            s.unmatched_frees, s.unmatched_munmaps
        ),
    ));
    rows.push((
        "complete",
        match &a.truncation {
            Some(t) => format!("no: {t}"),
            None => "yes".into(),
        },
    ));
    rows
}

fn warnings(o: &mut String, analyses: &[&Analysis]) {
    o.push_str("<section id=\"warnings\">\n<h2>Lost events and warnings</h2>\n");
    let mut any = false;
    for a in analyses {
        for w in a.warnings() {
            any = true;
            let _ = writeln!(o, "<p class=\"warning\">{}</p>", esc(&w));
        }
    }
    if !any {
        let _ = writeln!(
            o,
            "<p class=\"fine\">No events were lost and the trace{} complete: the counts are exact.</p>",
            if analyses.len() > 1 { "s are" } else { " is" }
        );
    }
    o.push_str("</section>\n");
}

fn frames_list(o: &mut String, frames: &[Frame]) {
    let _ = write!(
        o,
        "<details><summary>{} frame{}</summary><ol class=\"stack-frames\">",
        frames.len(),
        if frames.len() == 1 { "" } else { "s" }
    );
    for f in frames {
        let _ = write!(
            o,
            "<li>{}<span class=\"where\">{}{}{}</span></li>",
            esc(&f.function),
            esc(&f.place()),
            esc(&f.module_tag()),
            if f.inlined { " (inlined)" } else { "" }
        );
    }
    o.push_str("</ol></details>");
}

fn badge(class: &str) -> String {
    format!("<span class=\"badge {0}\">{0}</span>", esc(class))
}

fn flamegraph_section(o: &mut String, heading: &str, note: &str, svg_document: &[u8]) {
    let _ = writeln!(
        o,
        "<section id=\"flamegraph-section\">\n<h2>{}</h2>\n<p class=\"note\">{} Click a frame to \
         zoom, \"Reset Zoom\" to go back; \"Search\" (or Ctrl-F) highlights functions matching \
         a regular expression.</p>\n<div id=\"flamegraph-box\" class=\"chart\">",
        esc(heading),
        esc(note)
    );
    o.push_str(&inline_svg(&String::from_utf8_lossy(svg_document)));
    o.push_str("</div>\n</section>\n");
}

fn chart(o: &mut String, id: &str, heading: &str, svg_document: &str) {
    let _ = writeln!(
        o,
        "<section id=\"{id}\">\n<h2>{}</h2>\n<div class=\"chart\">{}</div>\n</section>",
        esc(heading),
        inline_svg(svg_document)
    );
}

/// Each process with its own candidates (a trace of several processes only).
fn processes_section(o: &mut String, a: &Analysis) {
    let all = processes(a);
    let _ = writeln!(
        o,
        "<section id=\"processes\">\n<h2>Processes</h2>\n<p class=\"note\">{} processes; \
         each judged on its own time axis, from when it started to be traced (or its latest exec) to \
         its exit. Blocks live when a \
         process replaced its image (exec) are released, not leaks.</p>",
        all.len()
    );
    o.push_str(
        "<table class=\"rows\"><thead><tr><th class=\"num\">pid</th><th class=\"num\">parent</th>\
         <th>origin</th><th>command</th><th>exit</th><th class=\"num\">events</th>\
         <th class=\"num\">unfreed</th><th class=\"num\">blocks</th><th>candidates</th></tr></thead><tbody>\n",
    );
    for p in &all {
        let f = &p.process.facts;
        let exit = match f.exit {
            Some(e) => match (e.code, e.signal) {
                (_, Some(sig)) => format!("signal {sig} at {}", format_duration(e.time_ns)),
                (Some(c), None) => format!("status {c} at {}", format_duration(e.time_ns)),
                (None, None) => format!("at {}", format_duration(e.time_ns)),
            },
            None => "running at the end".into(),
        };
        let _ = write!(
            o,
            "<tr><td class=\"num\">{}</td><td class=\"num\">{}</td><td>{}</td>\
             <td><span class=\"function\">{}</span></td><td>{}</td><td class=\"num\">{}</td>\
             <td class=\"num\">{}</td><td class=\"num\">{}</td><td>",
            f.pid,
            if f.parent_pid == 0 {
                "?".to_owned()
            } else {
                f.parent_pid.to_string()
            },
            esc(f.origin.name()),
            esc(&f.command()),
            esc(&exit),
            p.process.events,
            format_bytes(p.leaks.total_unfreed_bytes),
            p.leaks.total_unfreed_allocations,
        );
        if p.leaks.candidates.is_empty() {
            o.push_str("none");
        }
        for c in &p.leaks.candidates {
            let _ = write!(
                o,
                "<div>{} {} <span class=\"function\">{}</span> (stack {})</div>",
                badge(c.verdict.name()),
                format_bytes(c.scaled.unfreed_bytes),
                esc(c.frames.first().map_or("", |f| f.function.as_str())),
                c.row.stack_id
            );
        }
        if p.process.released_by_exec_blocks > 0 {
            let _ = write!(
                o,
                "<div class=\"why\">{} in {} blocks released by exec</div>",
                format_bytes(p.process.released_by_exec_bytes),
                p.process.released_by_exec_blocks
            );
        }
        o.push_str("</td></tr>\n");
    }
    o.push_str("</tbody></table>\n</section>\n");
}

/// The processes of two traces paired by command, with their unfreed change and the stack
/// that changed most (traces of several processes only).
fn compared_processes(o: &mut String, d: &Diff) {
    let n = d.normalize;
    o.push_str(
        "<section id=\"processes\">\n<h2>Processes</h2>\n<p class=\"note\">Matched by command \
         (the program's file name and its arguments), not by PID; processes with the same command \
         in order of appearance.</p>\n<table class=\"rows\"><thead><tr><th>command</th>\
         <th class=\"num\">pid BASE</th><th class=\"num\">pid NEW</th><th>status</th>\
         <th class=\"num\">BASE unfreed</th><th class=\"num\">NEW unfreed</th>\
         <th class=\"num\">change</th><th>changed most</th></tr></thead><tbody>\n",
    );
    for p in &d.processes {
        let pid =
            |s: Option<&crate::diff::ProcessSide>| s.map_or("-".to_owned(), |s| s.pid.to_string());
        let base: f64 = p.stacks.iter().map(|s| s.base_value(n)).sum();
        let top = p.stacks.iter().find(|s| s.growth != 0.0);
        let _ = writeln!(
            o,
            "<tr><td><span class=\"function\">{}</span></td><td class=\"num\">{}</td>\
             <td class=\"num\">{}</td><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>\
             <td class=\"num\">{}</td><td>{}</td></tr>",
            esc(&p.label()),
            pid(p.base.as_ref()),
            pid(p.new.as_ref()),
            badge(p.status.name()),
            esc(&table::amount(base, n)),
            esc(&table::amount(base + p.growth, n)),
            esc(&table::signed_amount(p.growth, n)),
            top.map_or_else(String::new, |s| format!(
                "{} {}",
                badge(s.status.name()),
                esc(s.top_function())
            )),
        );
    }
    o.push_str("</tbody></table>\n</section>\n");
}

/// The report of one trace.
pub fn single(a: &Analysis, leaks: &LeakReport, lifetimes: &Lifetimes) -> std::io::Result<String> {
    let mut o = String::new();
    let command = a.command();
    page_start(&mut o, &format!("memtrail report: {command}"));
    let _ = writeln!(
        o,
        "<header><h1>memtrail report</h1><p class=\"command\">{}</p></header>",
        esc(&command)
    );
    o.push_str("<section id=\"summary\">\n<h2>Summary</h2>\n");
    facts(&mut o, &summary_rows(a));
    let _ = writeln!(
        o,
        "<p>{} leak candidate{}: {} unfreed in {} blocks older than {}; {} in stacks judged leaks.</p>",
        leaks.candidates_total,
        if leaks.candidates_total == 1 { "" } else { "s" },
        format_bytes(leaks.total_unfreed_bytes),
        leaks.total_unfreed_allocations,
        format_duration(a.replay.options.min_age_ns),
        format_bytes(leaks.leak_bytes)
    );
    o.push_str("</section>\n");
    warnings(&mut o, &[a]);

    o.push_str("<section id=\"candidates\">\n<h2>Leak candidates</h2>\n");
    let several = a.replay.processes.len() > 1;
    let pids = if several {
        pids_by_stack(a)
    } else {
        Default::default()
    };
    if leaks.candidates.is_empty() {
        o.push_str("<p class=\"fine\">Nothing older than the minimum age was left unfreed.</p>\n");
    } else {
        if leaks.candidates_total > leaks.candidates.len() {
            let _ = writeln!(
                o,
                "<p class=\"note\">The first {} of {} (--top).</p>",
                leaks.candidates.len(),
                leaks.candidates_total
            );
        }
        o.push_str(
            "<table class=\"rows\"><thead><tr><th class=\"num\">#</th><th>verdict</th>\
             <th class=\"num\">unfreed</th><th class=\"num\">blocks</th>\
             <th class=\"num\">allocations</th><th class=\"num\">freed lifetime p50</th>\
             <th>allocated in</th></tr></thead><tbody>\n",
        );
        for c in &leaks.candidates {
            let s = &c.scaled;
            let _ = write!(
                o,
                "<tr><td class=\"num\">{}</td><td>{}</td><td class=\"num\">{}</td>\
                 <td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>\
                 <td><span class=\"function\">{}</span><div class=\"why\">{}</div>",
                c.rank,
                badge(c.verdict.name()),
                format_bytes(s.unfreed_bytes),
                s.unfreed_allocations,
                s.allocations,
                c.row
                    .lifetime_p50_ns
                    .map_or_else(|| "none freed".into(), format_duration),
                esc(c.frames.first().map_or("", |f| f.function.as_str())),
                esc(&c.reason)
            );
            if let Some(pids) = pids.get(&c.row.stack_id) {
                let _ = write!(
                    o,
                    "<div class=\"why\">in process{} {}</div>",
                    if pids.len() == 1 { "" } else { "es" },
                    pids.iter()
                        .map(u32::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
            frames_list(&mut o, &c.frames);
            o.push_str("</td></tr>\n");
        }
        o.push_str("</tbody></table>\n");
    }
    o.push_str("</section>\n");
    if several {
        processes_section(&mut o, a);
    }

    let lines = flamegraph::folded(a, Metric::Unfreed);
    let mut fg = Vec::new();
    flamegraph::svg(a, Metric::Unfreed, false, &lines, &mut fg)?;
    flamegraph_section(
        &mut o,
        "Flame graph of unfreed bytes",
        "Width is unfreed bytes; callers below, the allocating function on top.",
        &fg,
    );
    chart(
        &mut o,
        "lifetimes",
        "Lifetimes and sizes of all allocations",
        &svg::lifetimes(a, lifetimes, "all allocations"),
    );
    chart(
        &mut o,
        "timeline",
        "Live heap against RSS",
        &svg::timeline(a),
    );
    page_end(&mut o);
    Ok(o)
}

fn verdict_cell(side: Option<&Side>) -> String {
    side.and_then(|s| s.verdict)
        .map_or_else(|| "-".into(), |v| badge(v.name()))
}

/// The report of a comparison: NEW against BASE.
pub fn compared(
    base: &Analysis,
    new: &Analysis,
    d: &Diff,
    base_lifetimes: &Lifetimes,
    new_lifetimes: &Lifetimes,
    top: usize,
) -> std::io::Result<String> {
    let mut o = String::new();
    let n = d.normalize;
    page_start(
        &mut o,
        &format!(
            "memtrail diff: {} against {}",
            d.new.command, d.base.command
        ),
    );
    let _ = writeln!(
        o,
        "<header><h1>memtrail diff report</h1><p class=\"command\">BASE {}<br>NEW&nbsp; {}</p></header>",
        esc(&d.base.command),
        esc(&d.new.command)
    );
    o.push_str("<section id=\"summary\">\n<h2>Summary</h2>\n");
    let (tb, tn) = d.totals();
    let c = &d.counts;
    let _ = writeln!(
        o,
        "<p>Unfreed{} (blocks older than {}): {} &rarr; {} ({}). {} stacks: {} new, {} grown, \
         {} shrunk, {} gone, {} unchanged.</p>",
        if n == crate::diff::Normalize::Duration {
            " per second of activity"
        } else {
            ""
        },
        format_duration(d.min_age_ns),
        esc(&table::amount(tb, n)),
        esc(&table::amount(tn, n)),
        esc(&table::signed_amount(tn - tb, n)),
        d.stacks.len(),
        c.new,
        c.grown,
        c.shrunk,
        c.gone,
        c.unchanged
    );
    o.push_str(
        "<table class=\"rows\"><thead><tr><th></th><th>BASE</th><th>NEW</th></tr></thead><tbody>\n",
    );
    let (rb, rn) = (summary_rows(base), summary_rows(new));
    for ((k, vb), (_, vn)) in rb.iter().zip(&rn) {
        let _ = writeln!(
            o,
            "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(k),
            esc(vb),
            esc(vn)
        );
    }
    o.push_str("</tbody></table>\n</section>\n");
    warnings(&mut o, &[base, new]);

    o.push_str("<section id=\"candidates\">\n<h2>Stacks whose unfreed bytes changed</h2>\n");
    let changed: Vec<_> = d.changed().collect();
    if changed.is_empty() {
        o.push_str("<p class=\"fine\">No stack's unfreed bytes changed.</p>\n");
    } else {
        if changed.len() > top {
            let _ = writeln!(
                o,
                "<p class=\"note\">The first {top} of {} (--top).</p>",
                changed.len()
            );
        }
        o.push_str(
            "<table class=\"rows\"><thead><tr><th class=\"num\">#</th><th>status</th>\
             <th class=\"num\">BASE unfreed</th><th class=\"num\">NEW unfreed</th>\
             <th class=\"num\">change</th><th class=\"num\">%</th>\
             <th class=\"num\">allocs BASE</th><th class=\"num\">allocs NEW</th>\
             <th class=\"num\">p50 life BASE</th><th class=\"num\">p50 life NEW</th>\
             <th>verdict NEW</th><th>allocated in</th></tr></thead><tbody>\n",
        );
        for s in changed.iter().take(top) {
            let _ = write!(
                o,
                "<tr><td class=\"num\">{}</td><td>{}</td><td class=\"num\">{}</td>\
                 <td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>\
                 <td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>\
                 <td class=\"num\">{}</td><td>{}</td><td><span class=\"function\">{}</span>",
                s.rank,
                badge(s.status.name()),
                esc(&table::amount(s.base_value(n), n)),
                esc(&table::amount(s.new_value(n), n)),
                esc(&table::signed_amount(s.growth, n)),
                esc(&table::pct(s.growth_pct, s.growth)),
                esc(&table::rate(s.base.as_ref())),
                esc(&table::rate(s.new.as_ref())),
                esc(&table::p50(s.base.as_ref())),
                esc(&table::p50(s.new.as_ref())),
                verdict_cell(s.new.as_ref()),
                esc(s.top_function()),
            );
            frames_list(&mut o, &s.frames);
            o.push_str("</td></tr>\n");
        }
        o.push_str("</tbody></table>\n");
    }
    o.push_str("</section>\n");
    if d.processes.len() > 1 {
        compared_processes(&mut o, d);
    }

    let lines = flamegraph::diff_folded(d);
    let mut fg = Vec::new();
    flamegraph::diff_svg(d, &lines, &mut fg)?;
    flamegraph_section(
        &mut o,
        "Differential flame graph of unfreed bytes",
        "Red frames grew since BASE, blue ones shrank. Widths are the unfreed bytes of the \
         trace that holds more (the subtitle says which): a stack with nothing unfreed there \
         has no width, but is in the table above.",
        &fg,
    );
    for (id, name, a, l) in [
        ("lifetimes-new", "NEW", new, new_lifetimes),
        ("lifetimes-base", "BASE", base, base_lifetimes),
    ] {
        chart(
            &mut o,
            id,
            &format!("Lifetimes and sizes of all allocations: {name}"),
            &svg::lifetimes(a, l, "all allocations"),
        );
    }
    for (id, name, a) in [
        ("timeline-new", "NEW", new),
        ("timeline-base", "BASE", base),
    ] {
        chart(
            &mut o,
            id,
            &format!("Live heap against RSS: {name}"),
            &svg::timeline(a),
        );
    }
    page_end(&mut o);
    Ok(o)
}
