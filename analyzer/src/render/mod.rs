//! Renderers: report models in, bytes out (text tables, JSON, CSV/Parquet, SVG, HTML).
//!
//! Each renderer owns one output form and must not compute anything a report does not already
//! hold: no replay, no ranking, no verdicts. Output is deterministic for a given trace.

pub mod export;
pub mod flamegraph;
pub mod html;
pub mod json;
pub mod svg;
pub mod table;

/// Escapes text for XML attributes and content.
pub(crate) fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if (c as u32) < 0x20 && c != '\n' && c != '\t' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}
