//! The command line: clap definitions of every command and option, nothing else.
//!
//! Owns the names, defaults and help texts users see. Must not open files or compute anything;
//! `commands.rs` turns these into analyses and reports.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::budget::MemoryLimit;
use crate::diff::Threshold;
use crate::processes::PidFilter;
use memtrail_format::units::{parse_bytes, parse_duration_ns};

/// Find memory leaks in traces written by memtrail-record: leak candidates with verdicts,
/// allocation lifetimes, flame graphs of unfreed bytes, exports for polars/pandas/DuckDB,
/// comparisons of two builds with a CI gate, and single-file HTML reports.
#[derive(Debug, Parser)]
#[command(name = "memtrail", version, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Metadata, duration, calls per API, lost events and truncation of a trace.
    Info(InfoArgs),
    /// Unfreed bytes grouped by call stack, with a verdict per stack (leak first).
    Leaks(LeaksArgs),
    /// A flame graph (SVG) of unfreed bytes, allocated bytes, allocations or peak bytes.
    Flamegraph(FlamegraphArgs),
    /// Histogram of allocation lifetimes (1 us .. hours, and never freed) beside a size histogram.
    Lifetimes(LifetimesArgs),
    /// Live heap bytes over time against the sampled RSS.
    Timeline(TimelineArgs),
    /// The per-stack or per-allocation table as Parquet, CSV or JSON.
    Export(ExportArgs),
    /// Compare two traces stack by stack: what grew, shrank, is new or gone; a CI gate.
    ///
    /// Exit status: 0 when the comparison ran (and the gate, if any, passed), 1 when a stack's
    /// growth crossed --fail-on-growth, 2 on bad input.
    Diff(DiffArgs),
    /// Compare several traces (or a directory of *.trace files) with one baseline: one row per
    /// trace and stack in a single CSV, JSON or Parquet table.
    ///
    /// Exit status as for diff.
    Compare(CompareArgs),
    /// One self-contained HTML page: summary, warnings, leak candidates, interactive flame
    /// graph, lifetimes, heap against RSS; with two traces, their comparison.
    Report(ReportArgs),
}

/// Every duration flag: nanoseconds; a bare number is seconds (see `memtrail_format::units`).
fn duration(s: &str) -> Result<u64, memtrail_format::units::UnitError> {
    parse_duration_ns(s)
}

/// Every size flag: bytes, with K/M/G/T binary units (see `memtrail_format::units`).
fn bytes(s: &str) -> Result<u64, memtrail_format::units::UnitError> {
    parse_bytes(s)
}

/// How a report is printed on standard output. `text` is accepted for `table` (lifetimes'
/// old name for it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReportFormat {
    #[value(alias = "text")]
    Table,
    Json,
    Csv,
}

impl ReportFormat {
    /// The format chosen with `--format`, or JSON when the older `--json` was given.
    pub fn or_json(self, json: bool) -> ReportFormat {
        if json { ReportFormat::Json } else { self }
    }
}

/// How a summary with no CSV form (`info`, `timeline`) is printed on standard output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SummaryFormat {
    #[value(alias = "text")]
    Table,
    Json,
}

impl SummaryFormat {
    /// The format chosen with `--format`, or JSON when the older `--json` was given.
    pub fn or_json(self, json: bool) -> SummaryFormat {
        if json { SummaryFormat::Json } else { self }
    }
}

/// The memory budget of every command that reads traces.
#[derive(Debug, Clone, Copy, Args)]
pub struct MemoryArgs {
    /// The most memory the analysis may hold for what a trace declares (live blocks, stacks,
    /// frames, names), e.g. 512M or 8G; past it the command stops with an error instead of
    /// exhausting the machine. Default: half of the available memory (or of the cgroup's
    /// memory.max when lower).
    #[arg(long, value_name = "SIZE", value_parser = bytes)]
    pub memory_limit: Option<u64>,
}

impl MemoryArgs {
    pub fn limit(&self) -> MemoryLimit {
        self.memory_limit
            .map_or_else(MemoryLimit::of_this_machine, MemoryLimit::from_flag)
    }
}

/// Which processes of a trace count, for every command that reads traces.
#[derive(Debug, Clone, Default, Args)]
pub struct ProcessArgs {
    /// Count only the events of the process with this PID (`memtrail info` lists a trace's
    /// processes); repeat it for several. Default: every process of the trace.
    #[arg(long = "pid", value_name = "PID")]
    pub pids: Vec<u32>,
}

impl ProcessArgs {
    /// The filter the replay applies; an error for more PIDs than it takes.
    pub fn filter(&self) -> Result<PidFilter, crate::Error> {
        PidFilter::new(&self.pids).map_err(crate::Error::Invalid)
    }
}

/// Options of every command that replays a trace.
#[derive(Debug, Clone, Args)]
pub struct ReplayArgs {
    /// The trace file written by memtrail-record.
    pub file: PathBuf,
    /// Replay only up to this time since the start of the trace (e.g. 10s, 1500ms; a bare
    /// number is seconds).
    #[arg(long, value_name = "TIME", value_parser = duration)]
    pub at: Option<u64>,
    #[command(flatten)]
    pub processes: ProcessArgs,
    #[command(flatten)]
    pub memory: MemoryArgs,
}

#[derive(Debug, Args)]
pub struct InfoArgs {
    /// The trace file written by memtrail-record.
    pub file: PathBuf,
    /// Output format (`text` is the same as `table`).
    #[arg(long, value_enum, default_value_t = SummaryFormat::Table)]
    pub format: SummaryFormat,
    /// Print a JSON object instead of text (same as --format json).
    #[arg(long, conflicts_with = "format")]
    pub json: bool,
    #[command(flatten)]
    pub processes: ProcessArgs,
    #[command(flatten)]
    pub memory: MemoryArgs,
}

#[derive(Debug, Args)]
pub struct LeaksArgs {
    #[command(flatten)]
    pub replay: ReplayArgs,
    /// Ignore blocks younger than this at the end (they may be about to be freed). Default
    /// 500ms; a bare number is seconds.
    #[arg(long, value_name = "DUR", default_value = "500ms", value_parser = duration)]
    pub min_age: u64,
    /// Show only the first N candidates.
    #[arg(long, value_name = "N")]
    pub top: Option<usize>,
    /// Output format (`text` is the same as `table`).
    #[arg(long, value_enum, default_value_t = ReportFormat::Table)]
    pub format: ReportFormat,
    /// Same as --format json.
    #[arg(long, conflicts_with = "format")]
    pub json: bool,
    /// Frames shown per candidate in the table (JSON and CSV always have all).
    #[arg(long, value_name = "N", default_value_t = 8)]
    pub frames: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Metric {
    /// Bytes still live at the end (or at --at).
    Unfreed,
    /// All bytes allocated.
    Allocated,
    /// Number of allocations.
    Allocations,
    /// Highest live bytes of each stack.
    Peak,
}

#[derive(Debug, Args)]
pub struct FlamegraphArgs {
    #[command(flatten)]
    pub replay: ReplayArgs,
    /// Where to write the SVG.
    #[arg(short, long, value_name = "OUT.svg")]
    pub output: PathBuf,
    /// What the width of a frame measures.
    #[arg(long, value_enum, default_value_t = Metric::Unfreed)]
    pub metric: Metric,
    /// Merge stacks from the allocating function outwards (callers on top).
    #[arg(long)]
    pub inverted: bool,
    /// With --metric unfreed: ignore blocks younger than this at the end. Default 0 (every
    /// live block counts; `leaks` uses 500ms); a bare number is seconds.
    #[arg(long, value_name = "DUR", default_value = "0", value_parser = duration)]
    pub min_age: u64,
    /// Write the folded stacks (text) instead of the SVG.
    #[arg(long)]
    pub folded: bool,
}

#[derive(Debug, Args)]
pub struct LifetimesArgs {
    #[command(flatten)]
    pub replay: ReplayArgs,
    /// Only the allocations of this stack id (as `leaks` prints it).
    #[arg(long, value_name = "ID", conflicts_with = "function")]
    pub stack: Option<u32>,
    /// Only stacks with a frame in this function (exact name, else substring).
    #[arg(long, value_name = "NAME")]
    pub function: Option<String>,
    /// Output format (`text` is the same as `table`).
    #[arg(long, value_enum, default_value_t = ReportFormat::Table)]
    pub format: ReportFormat,
    /// Same as --format json.
    #[arg(long, conflicts_with = "format")]
    pub json: bool,
    /// Also draw both histograms into this SVG file.
    #[arg(long, value_name = "OUT.svg")]
    pub svg: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct TimelineArgs {
    #[command(flatten)]
    pub replay: ReplayArgs,
    /// Draw the chart into this SVG file.
    #[arg(long, value_name = "OUT.svg")]
    pub svg: Option<PathBuf>,
    /// Output format: a text summary, or the series as JSON (`text` is the same as `table`).
    #[arg(long, value_enum, default_value_t = SummaryFormat::Table)]
    pub format: SummaryFormat,
    /// Print the series as JSON instead of a text summary (same as --format json).
    #[arg(long, conflicts_with = "format")]
    pub json: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    Parquet,
    Csv,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExportWhat {
    /// One row per stack: counts, bytes, unfreed, peak, lifetime percentiles, verdict, frames.
    Stacks,
    /// One row per allocation: address, size, stack, API, alloc time, free time, lifetime.
    Allocations,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    #[command(flatten)]
    pub replay: ReplayArgs,
    /// File format.
    #[arg(long, value_enum)]
    pub format: ExportFormat,
    /// Which table.
    #[arg(long, value_enum, default_value_t = ExportWhat::Stacks)]
    pub what: ExportWhat,
    /// Where to write it.
    #[arg(short, long, value_name = "OUT")]
    pub output: PathBuf,
    /// For the stacks table: blocks younger than this at the end do not count as unfreed.
    /// Default 500ms; a bare number is seconds.
    #[arg(long, value_name = "DUR", default_value = "500ms", value_parser = duration)]
    pub min_age: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum NormalizeArg {
    /// Compare totals.
    None,
    /// Compare per second of each process's activity (traces of different lengths).
    Duration,
}

/// Options shared by `diff` and `compare`.
#[derive(Debug, Args)]
pub struct CompareOptions {
    /// Blocks younger than this at the end of a trace do not count as unfreed. Default 500ms;
    /// a bare number is seconds.
    #[arg(long, value_name = "DUR", default_value = "500ms", value_parser = duration)]
    pub min_age: u64,
    /// Compare unfreed bytes per second of activity instead of totals.
    #[arg(long, value_enum, default_value_t = NormalizeArg::None)]
    pub normalize: NormalizeArg,
    /// Exit with status 1 when a stack's unfreed bytes grew past this: BYTES (64K, 1M) or
    /// PCT% (10%). Given twice (1M and 10%), a stack must pass both.
    #[arg(long, value_name = "BYTES|PCT%", value_parser = Threshold::parse)]
    pub fail_on_growth: Vec<Threshold>,
    #[command(flatten)]
    pub processes: ProcessArgs,
    #[command(flatten)]
    pub memory: MemoryArgs,
}

#[derive(Debug, Args)]
pub struct DiffArgs {
    /// The trace to compare against (last night's, the release build...).
    pub base: PathBuf,
    /// The trace to judge.
    pub new: PathBuf,
    #[command(flatten)]
    pub options: CompareOptions,
    /// Output format (`text` is the same as `table`).
    #[arg(long, value_enum, default_value_t = ReportFormat::Table)]
    pub format: ReportFormat,
    /// Same as --format json.
    #[arg(long, conflicts_with = "format")]
    pub json: bool,
    /// Stacks shown in the table (JSON and CSV always have all).
    #[arg(long, value_name = "N", default_value_t = 20)]
    pub top: usize,
    /// Frames shown per stack in the table.
    #[arg(long, value_name = "N", default_value_t = 6)]
    pub frames: usize,
    /// Also write a differential flame graph of unfreed bytes (red grew, blue shrank; widths
    /// from the trace holding more).
    #[arg(long, value_name = "OUT.svg")]
    pub flamegraph: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct CompareArgs {
    /// The trace every other one is compared with.
    #[arg(long, value_name = "BASE")]
    pub baseline: PathBuf,
    /// Traces to compare, or directories (their *.trace files, by name).
    #[arg(required = true, value_name = "NEW")]
    pub traces: Vec<PathBuf>,
    #[command(flatten)]
    pub options: CompareOptions,
    /// File format (Parquet needs -o).
    #[arg(long, value_enum, default_value_t = ExportFormat::Csv)]
    pub format: ExportFormat,
    /// Where to write the table; standard output when absent.
    #[arg(short, long, value_name = "OUT")]
    pub output: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// A trace, or BASE and NEW to compare.
    #[arg(required = true, num_args = 1..=2, value_name = "TRACE")]
    pub traces: Vec<PathBuf>,
    /// Where to write the HTML page.
    #[arg(short, long, value_name = "OUT.html")]
    pub output: PathBuf,
    /// Blocks younger than this at the end do not count as unfreed. Default 500ms; a bare
    /// number is seconds.
    #[arg(long, value_name = "DUR", default_value = "500ms", value_parser = duration)]
    pub min_age: u64,
    /// Rows of the candidates (or changed stacks) table.
    #[arg(long, value_name = "N", default_value_t = 50)]
    pub top: usize,
    /// With two traces: compare unfreed bytes per second of activity instead of totals.
    #[arg(long, value_enum, default_value_t = NormalizeArg::None)]
    pub normalize: NormalizeArg,
    #[command(flatten)]
    pub processes: ProcessArgs,
    #[command(flatten)]
    pub memory: MemoryArgs,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Result<Command, clap::Error> {
        Cli::try_parse_from(std::iter::once("memtrail").chain(args.iter().copied()))
            .map(|cli| cli.command)
    }

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn every_report_takes_table_or_its_old_name_text() {
        for format in ["table", "text"] {
            let Ok(Command::Leaks(leaks)) = parse(&["leaks", "t", "--format", format]) else {
                panic!("leaks --format {format}");
            };
            assert_eq!(leaks.format, ReportFormat::Table);
            let Ok(Command::Lifetimes(lifetimes)) = parse(&["lifetimes", "t", "--format", format])
            else {
                panic!("lifetimes --format {format}");
            };
            assert_eq!(lifetimes.format, ReportFormat::Table);
            let Ok(Command::Diff(diff)) = parse(&["diff", "a", "b", "--format", format]) else {
                panic!("diff --format {format}");
            };
            assert_eq!(diff.format, ReportFormat::Table);
            let Ok(Command::Info(info)) = parse(&["info", "t", "--format", format]) else {
                panic!("info --format {format}");
            };
            assert_eq!(info.format, SummaryFormat::Table);
            let Ok(Command::Timeline(timeline)) = parse(&["timeline", "t", "--format", format])
            else {
                panic!("timeline --format {format}");
            };
            assert_eq!(timeline.format, SummaryFormat::Table);
        }
    }

    #[test]
    fn json_is_still_a_flag_where_it_was() {
        let Ok(Command::Info(info)) = parse(&["info", "t", "--json"]) else {
            panic!("info --json");
        };
        assert_eq!(info.format.or_json(info.json), SummaryFormat::Json);
        let Ok(Command::Timeline(timeline)) = parse(&["timeline", "t", "--json"]) else {
            panic!("timeline --json");
        };
        assert_eq!(timeline.format.or_json(timeline.json), SummaryFormat::Json);
        let Ok(Command::Lifetimes(lifetimes)) = parse(&["lifetimes", "t", "--json"]) else {
            panic!("lifetimes --json");
        };
        assert_eq!(lifetimes.format.or_json(lifetimes.json), ReportFormat::Json);
        assert!(parse(&["leaks", "t", "--json", "--format", "csv"]).is_err());
        // No CSV form of a summary.
        assert!(parse(&["info", "t", "--format", "csv"]).is_err());
    }

    #[test]
    fn durations_and_sizes_read_the_same_in_every_flag() {
        let Ok(Command::Leaks(leaks)) = parse(&["leaks", "t", "--min-age", "60", "--at", "1.5"])
        else {
            panic!("leaks");
        };
        assert_eq!(leaks.min_age, 60_000_000_000);
        assert_eq!(leaks.replay.at, Some(1_500_000_000));
        let Ok(Command::Leaks(leaks)) = parse(&["leaks", "t"]) else {
            panic!("leaks");
        };
        assert_eq!(leaks.min_age, 500_000_000);
        let Ok(Command::Flamegraph(flamegraph)) = parse(&["flamegraph", "t", "-o", "x.svg"]) else {
            panic!("flamegraph");
        };
        assert_eq!(flamegraph.min_age, 0);
        let Ok(Command::Info(info)) = parse(&["info", "t", "--memory-limit", "1.5G"]) else {
            panic!("info");
        };
        assert_eq!(info.memory.memory_limit, Some(3 << 29));
        assert!(parse(&["leaks", "t", "--min-age", "soon"]).is_err());
    }
}
