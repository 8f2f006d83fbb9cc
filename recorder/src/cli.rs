//! The command line: clap definitions of `memtrail-record` (record a process) and its
//! `suspects` subcommand, and the parsers of their values.
//!
//! Owns the names, defaults and help texts users see; sizes and durations are parsed by
//! `memtrail_format::units`, as in the analyzer. Must not open files, probe or compute:
//! `recording` and `suspects` act on these values.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use memtrail_format::units::{UnitError, parse_bytes, parse_duration};

/// Record every allocation and free of a process (eBPF uprobes on the allocator) into a
/// memtrail trace file, for `memtrail` to analyze here or elsewhere.
#[derive(Debug, Parser)]
#[command(
    name = "memtrail-record",
    version,
    after_help = "Examples:\n  memtrail-record -p 1234 -o app.trace --duration 60\n  memtrail-record -o run.trace -- ./myprogram --its-args\n\nWhich process is growing? `memtrail-record suspects --help` (no root needed).",
    // `memtrail-record [OPTIONS] -o OUT -- COMMAND` records; `memtrail-record suspects ...`
    // is the subcommand. A word after `--` is always the command to launch, even `suspects`.
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true,
    disable_help_subcommand = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    #[command(flatten)]
    pub record: RecordArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Which process is growing? Samples the anonymous memory (RssAnon + RssShmem) of every
    /// process and lists those that grew steadily, with a `memtrail-record -p PID` line for each.
    /// Needs neither root nor BPF.
    #[command(
        after_help = "A process is listed when its anonymous memory grew at --min-rate or faster (least-squares \
slope), rose in at least half of the intervals and fell in at most a quarter, did not get half of \
its growth in one interval, and was still growing in the last third of the run.\n\n\
Examples:\n  memtrail-record suspects\n  memtrail-record suspects --interval 5s --duration 2m --name java"
    )]
    Suspects(SuspectsArgs),
}

// The options of a recording (no doc comment: on a flattened struct it would replace the
// command's own description).
#[derive(Debug, Args)]
pub struct RecordArgs {
    /// Attach to this running process (all its threads), with no restart. Repeat to record
    /// several processes into one trace.
    #[arg(short = 'p', long = "pid", conflicts_with = "command")]
    pub pids: Vec<u32>,

    /// With -p: also trace the processes they start after the attach (fork, vfork, clone
    /// without CLONE_THREAD, then exec), and the processes those start (a launched command's
    /// are traced anyway).
    #[arg(long)]
    pub follow: bool,

    /// Record every process running this executable: those running now and those that exec
    /// it during the recording (system-wide). Stops with --duration, Ctrl-C or SIGTERM.
    #[arg(long, value_name = "PATH", conflicts_with_all = ["pids", "command"])]
    pub exe: Option<PathBuf>,

    /// With a command: trace only the process launched, not the processes it starts (by
    /// default every process of its tree is traced).
    #[arg(long, conflicts_with_all = ["pids", "follow"])]
    pub no_follow: bool,

    /// Trace file to write: a new file with mode 0600, put in place once the target runs.
    /// An existing memtrail trace there is replaced; any other file or a symbolic link only
    /// with --force.
    // Required unless a subcommand is given (`subcommand_negates_reqs`), hence the Option.
    #[arg(short = 'o', long = "output", required = true)]
    pub output: Option<PathBuf>,

    /// Replace whatever file or symbolic link is at the output path (by rename: never
    /// following the link or writing into the file). Never a directory, FIFO or device, nor
    /// the program being traced.
    #[arg(long)]
    pub force: bool,

    /// Stop after this long: seconds (60, 2.5) or with a unit (500ms, 10s, 5m, 1h).
    #[arg(long, value_name = "DURATION", value_parser = duration)]
    pub duration: Option<Duration>,

    /// Keep at most this many frames of each stack (1..=127; the CFI unwinder walks at most
    /// 64).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u16).range(1..=127))]
    pub stack_depth: u16,

    /// How user stacks are unwound: `dwarf` walks them in the eBPF program with tables
    /// derived from each module's CFI (.eh_frame/.debug_frame; frame pointers in modules
    /// without), complete for code built without frame pointers; `fp` uses the kernel's
    /// frame-pointer walk; `auto` is `dwarf` unless the target has no CFI at all.
    #[arg(long, value_enum, default_value_t = UnwindMode::Auto)]
    pub unwind: UnwindMode,

    /// Do not record allocations smaller than this many bytes, with optional K/M/G suffix
    /// (reallocs are always recorded).
    #[arg(long, default_value = "0", value_name = "BYTES", value_parser = bytes)]
    pub min_size: u64,

    /// Probe the allocator in this library or executable instead of libc (jemalloc,
    /// tcmalloc, mimalloc, a static binary), by symbol name.
    #[arg(long = "lib", value_name = "PATH")]
    pub lib: Option<PathBuf>,

    /// Kernel-to-recorder ring buffer size: a power of two, with optional K/M/G suffix.
    #[arg(long, default_value = "16M", value_parser = parse_ring_size)]
    pub ring_buffer_size: u32,

    /// Do not resolve symbols while recording (the analyzer can resolve them later from the
    /// binaries, found by build-id).
    #[arg(long)]
    pub no_symbols: bool,

    /// Record on average one allocation per this many bytes allocated (per thread, a byte
    /// countdown drawn from an exponential distribution with this mean, as jemalloc samples),
    /// and only the frees and reallocs of the sampled blocks. Reports scale the numbers back.
    #[arg(long, value_name = "BYTES", value_parser = parse_sample_bytes)]
    pub sample_bytes: Option<u64>,

    /// Keep event times to this many nanoseconds (1 = exact). The default, 1000 (1 us), makes
    /// traces about 40% smaller than exact nanoseconds: the low bits of a nanosecond clock
    /// are noise that does not compress, and sub-microsecond lifetimes do not matter to a
    /// leak hunt. Every event keeps its own timestamp either way.
    #[arg(
        long,
        default_value_t = 1000,
        value_name = "NS",
        value_parser = clap::value_parser!(u32).range(1..=1_000_000_000)
    )]
    pub time_resolution_ns: u32,

    /// DEFLATE level of the trace's frames, 1 (fastest) to 9 (smallest). The default, 3,
    /// writes about 2% more bytes than 6 for about two thirds of the compression CPU time,
    /// which the recorder takes from the machine it traces.
    #[arg(
        long,
        default_value_t = 3,
        value_name = "LEVEL",
        value_parser = clap::value_parser!(u32).range(1..=9)
    )]
    pub compression_level: u32,

    /// Attach programs that do nothing, on the same attach points: measures the cost of the
    /// probes alone (the floor of a uprobe-based tracer). The trace holds no events.
    #[arg(long, hide = true)]
    pub probes_only: bool,

    /// Capture no stacks (every event gets the unknown stack): measures stack capture's cost.
    #[arg(long, hide = true)]
    pub no_stacks: bool,

    /// Capture no stacks, but copy the top 256 bytes of the user stack at every allocation:
    /// the one read a remembered stack still costs (a lower bound, for the benchmark).
    #[arg(long, hide = true, conflicts_with = "no_stacks")]
    pub stack_read_only: bool,

    /// Entries of the kernel's per-thread slot array (a power of two): threads whose ids
    /// collide modulo it while one of them is inside an allocator call fall back to a hash
    /// map. A small value exercises that path (tests).
    #[arg(long, value_name = "N", hide = true, default_value_t = memtrail_ebpf_abi::THREAD_SLOTS_CAPACITY,
          value_parser = parse_thread_slots)]
    pub thread_slots: u32,

    /// Put the free probe at this offset into `free` instead of the decoded one (0: the
    /// function entry). For measuring and working around unusual allocators.
    #[arg(long, value_name = "BYTES", hide = true)]
    pub free_probe_offset: Option<u64>,

    /// No status line and no summary.
    #[arg(short, long)]
    pub quiet: bool,

    /// The command to launch and trace from its first allocation (after `--`).
    #[arg(last = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum UnwindMode {
    Fp,
    Dwarf,
    Auto,
}

// The options of `suspects` (no doc comment: see `RecordArgs`).
#[derive(Debug, Args)]
pub struct SuspectsArgs {
    /// Time between samples (`500ms`, `1s`, `2m`; a bare number is seconds).
    #[arg(long, default_value = "1s", value_parser = duration)]
    pub interval: Duration,

    /// How long to watch.
    #[arg(long, default_value = "10s", value_parser = duration)]
    pub duration: Duration,

    /// Least growth rate to list, in bytes per second (suffixes K, M, G).
    #[arg(long, default_value = "4K", value_name = "BYTES", value_parser = bytes)]
    pub min_rate: u64,

    /// Watch only this process (repeatable).
    #[arg(short = 'p', long = "pid")]
    pub pids: Vec<u32>,

    /// Watch only processes whose name (as in `ps`) contains this text.
    #[arg(long)]
    pub name: Option<String>,

    /// Output format (`text` is the same as `table`).
    #[arg(long, value_enum, default_value_t = ReportFormat::Table)]
    pub format: ReportFormat,

    /// Print the result as JSON.
    #[arg(long, conflicts_with = "format")]
    pub json: bool,
}

/// How `suspects` prints its result; the analyzer's reports take the same names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReportFormat {
    #[value(alias = "text")]
    Table,
    Json,
}

impl SuspectsArgs {
    /// The format chosen with `--format`, or JSON when `--json` was given.
    pub fn format(&self) -> ReportFormat {
        if self.json {
            ReportFormat::Json
        } else {
            self.format
        }
    }
}

/// Every duration flag (a bare number is seconds; see `memtrail_format::units`).
fn duration(text: &str) -> Result<Duration, UnitError> {
    parse_duration(text)
}

/// Every size flag (K/M/G/T binary units; see `memtrail_format::units`).
fn bytes(text: &str) -> Result<u64, UnitError> {
    parse_bytes(text)
}

fn parse_sample_bytes(text: &str) -> Result<u64, String> {
    let bytes = parse_bytes(text).map_err(|e| e.to_string())?;
    if !(1..=memtrail_ebpf_abi::MAX_SAMPLE_BYTES).contains(&bytes) {
        return Err(format!(
            "`{text}`: the sampling interval must be between 1 byte and 1T"
        ));
    }
    Ok(bytes)
}

fn parse_ring_size(text: &str) -> Result<u32, String> {
    let bytes = parse_bytes(text).map_err(|e| e.to_string())?;
    if !bytes.is_power_of_two() || !(4096..=(1 << 30)).contains(&bytes) {
        return Err(format!(
            "`{text}`: the ring buffer size must be a power of two between 4K and 1G"
        ));
    }
    u32::try_from(bytes).map_err(|_| format!("`{text}`: out of range"))
}

fn parse_thread_slots(text: &str) -> Result<u32, String> {
    match text.parse::<u32>() {
        Ok(n) if n.is_power_of_two() && n <= 1 << 20 => Ok(n),
        _ => Err(format!(
            "`{text}`: the number of thread slots must be a power of two up to 1048576"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("memtrail-record").chain(args.iter().copied()))
    }

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn records_a_launched_command_even_one_named_suspects() {
        let cli = parse(&["-o", "x.trace", "--", "suspects", "--json"]).expect("parses");
        assert!(cli.command.is_none());
        assert_eq!(cli.record.command, ["suspects", "--json"]);
        assert_eq!(cli.record.output, Some(PathBuf::from("x.trace")));
    }

    #[test]
    fn attaches_to_a_pid() {
        let cli = parse(&["-p", "42", "-o", "x.trace", "--duration", "60"]).expect("parses");
        assert!(cli.command.is_none());
        assert_eq!(cli.record.pids, [42]);
        assert_eq!(cli.record.duration, Some(Duration::from_secs(60)));
    }

    #[test]
    fn pids_repeat_and_follow_needs_them() {
        let cli = parse(&["-p", "42", "-p", "43", "--follow", "-o", "x.trace"]).expect("parses");
        assert_eq!(cli.record.pids, [42, 43]);
        assert!(cli.record.follow);
        assert!(parse(&["--follow", "--no-follow", "-o", "x.trace", "--", "ls"]).is_err());
        assert!(parse(&["-p", "42", "--no-follow", "-o", "x.trace"]).is_err());
        let cli = parse(&["--no-follow", "-o", "x.trace", "--", "ls"]).expect("parses");
        assert!(cli.record.no_follow);
    }

    #[test]
    fn exe_excludes_pids_and_a_command() {
        let cli = parse(&["--exe", "/usr/bin/x", "-o", "x.trace"]).expect("parses");
        assert_eq!(cli.record.exe, Some(PathBuf::from("/usr/bin/x")));
        assert!(parse(&["--exe", "/usr/bin/x", "-p", "1", "-o", "x.trace"]).is_err());
        assert!(parse(&["--exe", "/usr/bin/x", "-o", "x.trace", "--", "ls"]).is_err());
    }

    #[test]
    fn a_recording_needs_an_output() {
        assert!(parse(&["-p", "42"]).is_err());
        assert!(parse(&["--", "ls"]).is_err());
    }

    #[test]
    fn suspects_is_a_subcommand_with_its_own_options() {
        let cli = parse(&[
            "suspects",
            "--interval",
            "500ms",
            "--min-rate",
            "1M",
            "-p",
            "7",
        ])
        .expect("parses");
        let Some(Command::Suspects(args)) = cli.command else {
            panic!("not the suspects subcommand");
        };
        assert_eq!(args.interval, Duration::from_millis(500));
        assert_eq!(args.duration, Duration::from_secs(10));
        assert_eq!(args.min_rate, 1 << 20);
        assert_eq!(args.pids, [7]);
        assert_eq!(args.format(), ReportFormat::Table);
        // Recording options do not mix with the subcommand.
        assert!(parse(&["-o", "x.trace", "suspects"]).is_err());
        assert!(parse(&["suspects", "-o", "x.trace"]).is_err());
    }

    #[test]
    fn suspects_prints_json_with_either_flag() {
        for json in [
            &["suspects", "--json"][..],
            &["suspects", "--format", "json"],
        ] {
            let Ok(Cli {
                command: Some(Command::Suspects(args)),
                ..
            }) = parse(json)
            else {
                panic!("{json:?}");
            };
            assert_eq!(args.format(), ReportFormat::Json);
        }
        let Ok(Cli {
            command: Some(Command::Suspects(args)),
            ..
        }) = parse(&["suspects", "--format", "text"])
        else {
            panic!("--format text");
        };
        assert_eq!(args.format(), ReportFormat::Table);
        assert!(parse(&["suspects", "--json", "--format", "table"]).is_err());
    }

    #[test]
    fn sizes_take_suffixes() {
        let cli = parse(&[
            "-o",
            "x",
            "--min-size",
            "4K",
            "--ring-buffer-size",
            "64K",
            "--",
            "ls",
        ])
        .expect("parses");
        assert_eq!(cli.record.min_size, 4096);
        assert_eq!(cli.record.ring_buffer_size, 65536);
        assert_eq!(
            parse(&["-o", "x", "--", "ls"])
                .expect("parses")
                .record
                .min_size,
            0
        );
    }

    #[test]
    fn value_parsers_check_their_ranges() {
        assert_eq!(parse_sample_bytes("64K"), Ok(65536));
        assert!(parse_sample_bytes("0").is_err());
        assert!(parse_sample_bytes("2T").is_err());
        assert!(parse_sample_bytes("lots").is_err());
        assert_eq!(parse_ring_size("16M"), Ok(16 << 20));
        assert_eq!(parse_ring_size("4096"), Ok(4096));
        assert!(parse_ring_size("3M").is_err());
        assert!(parse_ring_size("2K").is_err());
        assert!(parse_ring_size("2G").is_err());
        assert_eq!(parse_thread_slots("1024"), Ok(1024));
        assert!(parse_thread_slots("1000").is_err());
        assert!(parse_thread_slots("2097152").is_err());
    }
}
