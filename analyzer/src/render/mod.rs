//! Renderers: report models in, bytes out (text tables, JSON, CSV/Parquet, SVG, HTML).
//!
//! Each renderer owns one output form and must not compute anything a report does not already
//! hold: no replay, no ranking, no verdicts. Output is deterministic for a given trace. Text
//! from a trace is raw in the report models; each renderer escapes it for its own form with
//! [`crate::escape`].

pub mod export;
pub mod flamegraph;
pub mod html;
pub mod json;
pub mod svg;
pub mod table;

/// Escapes text for XML attributes and content (see [`crate::escape::xml`]).
pub(crate) fn xml_escape(s: &str) -> String {
    crate::escape::xml(s)
}
