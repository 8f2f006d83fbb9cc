//! memtrail, the analyzer: replays a trace written by `memtrail-record` and reports leak
//! candidates with verdicts, allocation lifetimes, flame graphs, a heap timeline and exports.
//!
//! Data flows one way:
//! trace records ([`source`]: frames decoded on worker threads, in order) -> [`analysis`]
//! (one pass) -> [`replay`] (event semantics, live blocks, per process as [`processes`] says
//! which process each event belongs to) -> [`aggregate`] (per-stack accumulators, rows) ->
//! [`report`] (selection, ranking, [`verdict`]s, [`symbols`]) -> [`render`] (text, JSON,
//! CSV/Parquet, SVG). [`diff`] compares two analyses stack by stack (the `diff`, `compare` and
//! two-trace `report` commands). [`commands`] glues one CLI command ([`cli`]) to that pipeline;
//! [`files`] checks its inputs and writes its output files; [`escape`] makes a trace's text
//! safe for each output (terminal, JSON, XML/HTML, CSV).
//!
//! The library never prints and never exits: errors are [`Error`] values with a one-line
//! message, warnings go through a callback.

pub mod aggregate;
pub mod analysis;
pub mod budget;
pub mod cli;
pub mod commands;
pub mod diff;
pub mod error;
pub mod escape;
pub mod files;
pub mod processes;
pub mod progress;
pub mod render;
pub mod replay;
pub mod report;
pub mod source;
pub mod symbols;
pub mod verdict;

pub use analysis::{Analysis, analyze, analyze_bytes, analyze_from};
pub use commands::{Outcome, run};
pub use error::{Error, Result};
pub use replay::{Replay, ReplayOptions, ReplayOutput};
pub use verdict::Verdict;
