//! `memtrail-record suspects`: step one of a leak hunt, finding the process whose memory grows.
//!
//! Samples every process's anonymous memory (`RssAnon + RssShmem` from `/proc/PID/status`: the
//! heap, anonymous mappings and anonymous shared mappings, not file pages that come and go)
//! every `--interval` for `--duration`, and lists those that grew *steadily*, fastest first,
//! each with a ready-to-paste `memtrail-record -p PID` line. Needs no BPF and no root: it reads
//! only what `/proc` lets anyone read. Processes that start or exit during the run are fine;
//! only those alive at the last sample are listed (one cannot attach to the others). Ctrl-C
//! ends the run early and reports on the samples taken so far. Names and command lines are
//! whatever their owners made them: both outputs escape them (`escape.rs`).
//!
//! Only processes seen for at least half of the run are judged (one that started later is in
//! its start-up). The steadiness rule ([`assess`]), on the samples `(t_i, y_i)` of one process:
//! 1. at least 3 intervals were seen;
//! 2. the least-squares slope of `y` over `t` is at least `--min-rate` bytes per second;
//! 3. growth over most intervals: `y` rose in at least half of them and fell in at most a
//!    quarter (a garbage collector's occasional drop is tolerated, a sawtooth is not);
//! 4. not one burst: no single interval holds more than half of the net growth;
//! 5. still growing at the end: the last third of the run gained at least a quarter of what
//!    the slope predicts for it (a cache that filled up and plateaued is not listed).
//!
//! The kernel counts RSS in pages, so a leak slower than about one page per interval shows as
//! flat intervals and needs a longer `--interval`.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use memtrail_format::units::{format_bytes, format_duration};

use crate::cli::{ReportFormat, SuspectsArgs};
use crate::signals;
use memtrail_format::text::{json_string, terminal};

/// At most this many sampling rounds (a day at one a second): memory is 8 bytes per process
/// and round.
const MAX_ROUNDS: usize = 86_400;

/// Options that parse but cannot make a run (the binary exits with status 2, as for clap's
/// usage errors).
#[derive(Debug, thiserror::Error)]
pub enum SuspectsError {
    #[error("--interval must be greater than zero")]
    ZeroInterval,
    #[error(
        "--duration / --interval is more than {} samples; use a longer --interval",
        MAX_ROUNDS
    )]
    TooManySamples,
    #[error("--duration must cover at least 3 intervals (steadiness needs several samples)")]
    TooFewIntervals,
}

/// Watches, then prints the suspects on standard output (text or JSON). Ctrl-C or SIGTERM
/// ends the watch early; the report is on the samples taken so far.
pub fn run(args: &SuspectsArgs) -> Result<(), SuspectsError> {
    if args.interval.is_zero() {
        return Err(SuspectsError::ZeroInterval);
    }
    if args.duration.as_secs_f64() / args.interval.as_secs_f64() > MAX_ROUNDS as f64 {
        return Err(SuspectsError::TooManySamples);
    }
    if args
        .interval
        .checked_mul(3)
        .is_none_or(|three| args.duration < three)
    {
        return Err(SuspectsError::TooFewIntervals);
    }
    let filter = Filter {
        pids: args.pids.clone(),
        name: args.name.clone(),
    };
    signals::install_stop_handlers();
    let watch = watch(&filter, args.interval, args.duration);
    let suspects = watch.suspects(args.min_rate as f64);
    match args.format() {
        ReportFormat::Json => println!("{}", render_json(args, &watch, &suspects)),
        ReportFormat::Table => print!("{}", render_text(args, &watch, &suspects)),
    }
    Ok(())
}

/// Which processes to watch.
struct Filter {
    pids: Vec<u32>,
    name: Option<String>,
}

impl Filter {
    fn wants_pid(&self, pid: u32) -> bool {
        self.pids.is_empty() || self.pids.contains(&pid)
    }

    fn wants_name(&self, name: &str) -> bool {
        self.name.as_ref().is_none_or(|n| name.contains(n.as_str()))
    }
}

/// One process instance: a PID and its start time, so that a reused PID is a new process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct ProcessKey {
    pid: u32,
    start_ticks: u64,
}

/// Everything sampled for one process: 8 bytes a sample.
#[derive(Debug)]
struct Series {
    name: String,
    command: String,
    /// The sampling round of `anon_bytes[0]`.
    first_round: usize,
    /// Anonymous bytes at each round from `first_round` on.
    anon_bytes: Vec<u64>,
    /// RSS at the last round it was seen in.
    rss_bytes: u64,
}

impl Series {
    /// The round after the last one it was seen in.
    fn end_round(&self) -> usize {
        self.first_round + self.anon_bytes.len()
    }
}

/// The result of watching: every process's samples.
struct Watch {
    series: std::collections::BTreeMap<ProcessKey, Series>,
    /// Seconds since the start of each sampling round.
    round_times: Vec<f64>,
    elapsed: Duration,
}

/// A process that grew steadily.
#[derive(Debug)]
struct Suspect<'a> {
    pid: u32,
    series: &'a Series,
    growth: Growth,
}

impl Watch {
    fn rounds(&self) -> usize {
        self.round_times.len()
    }

    /// Processes alive at the last round and seen for at least half of the rounds (one that
    /// started late is in its start-up) whose growth passes the steadiness rule, fastest first.
    fn suspects(&self, min_rate: f64) -> Vec<Suspect<'_>> {
        let rounds = self.rounds();
        let mut suspects: Vec<Suspect<'_>> = self
            .series
            .iter()
            .filter(|(_, s)| s.end_round() == rounds && s.anon_bytes.len() * 2 >= rounds)
            .filter_map(|(key, series)| {
                let points: Vec<(f64, f64)> = series
                    .anon_bytes
                    .iter()
                    .zip(&self.round_times[series.first_round..])
                    .map(|(&anon, &t)| (t, anon as f64))
                    .collect();
                let growth = assess(&points);
                growth.is_steady(min_rate).then_some(Suspect {
                    pid: key.pid,
                    series,
                    growth,
                })
            })
            .collect();
        suspects.sort_by(|a, b| b.growth.slope.total_cmp(&a.growth.slope));
        suspects
    }
}

/// Samples the filtered processes every `interval` for `duration`, or until interrupted.
fn watch(filter: &Filter, interval: Duration, duration: Duration) -> Watch {
    let own_pid = std::process::id();
    let start = Instant::now();
    let mut series = std::collections::BTreeMap::<ProcessKey, Series>::new();
    let mut round_times = Vec::new();
    loop {
        let round = round_times.len();
        round_times.push(start.elapsed().as_secs_f64());
        for pid in list_pids(filter) {
            if pid == own_pid {
                continue;
            }
            let Some(reading) = read_process(pid) else {
                continue; // gone, a kernel thread, or a zombie
            };
            if !filter.wants_name(&reading.name) {
                continue;
            }
            let key = ProcessKey {
                pid,
                start_ticks: reading.start_ticks,
            };
            let entry = series.entry(key).or_insert_with(|| Series {
                command: command_line(pid).unwrap_or_else(|| reading.name.clone()),
                name: reading.name.clone(),
                first_round: round,
                anon_bytes: Vec::new(),
                rss_bytes: 0,
            });
            // A round that missed the process (a failed read) repeats its last value.
            while entry.end_round() < round {
                let last = entry.anon_bytes.last().copied().unwrap_or(0);
                entry.anon_bytes.push(last);
            }
            entry.anon_bytes.push(reading.anon_bytes);
            entry.rss_bytes = reading.rss_bytes;
        }
        // The next round is due at a whole number of intervals from the start, so that slow
        // rounds do not stretch the run.
        let next = interval.saturating_mul(round_times.len() as u32);
        if next > duration {
            break;
        }
        while let Some(wait) = next.checked_sub(start.elapsed()) {
            if signals::stop_requested() {
                break;
            }
            std::thread::sleep(wait.min(Duration::from_millis(100)));
        }
        if signals::stop_requested() {
            break;
        }
    }
    Watch {
        series,
        round_times,
        elapsed: start.elapsed(),
    }
}

fn list_pids(filter: &Filter) -> Vec<u32> {
    if !filter.pids.is_empty() {
        return filter.pids.clone();
    }
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| filter.wants_pid(pid))
        .collect()
}

/// What one sampling round reads of one process.
#[derive(Debug, PartialEq, Eq)]
struct Reading {
    name: String,
    start_ticks: u64,
    anon_bytes: u64,
    rss_bytes: u64,
}

fn read_process(pid: u32) -> Option<Reading> {
    // Lossy: a name that is not UTF-8 must not hide its process (its odd bytes show as U+FFFD).
    let read = |file: &str| {
        std::fs::read(format!("/proc/{pid}/{file}"))
            .ok()
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
    };
    parse_process(&read("stat")?, &read("status")?)
}

/// Parses `/proc/PID/stat` (for the start time) and `/proc/PID/status` (name and memory).
/// `None` for kernel threads and zombies, which have no memory lines.
fn parse_process(stat: &str, status: &str) -> Option<Reading> {
    // The command name in stat is in parentheses and may itself hold spaces and parentheses;
    // the fields after the last ')' start with field 3 (state); field 22 is the start time.
    let after_name = &stat[stat.rfind(')')? + 1..];
    let start_ticks = after_name.split_ascii_whitespace().nth(19)?.parse().ok()?;
    let kib = |key: &str| -> Option<u64> {
        let line = status.lines().find_map(|l| l.strip_prefix(key))?;
        let value = line.trim().trim_end_matches("kB").trim();
        value.parse::<u64>().ok()?.checked_mul(1024)
    };
    let name = status
        .lines()
        .find_map(|l| l.strip_prefix("Name:"))
        .map(|n| n.trim().to_owned())
        .unwrap_or_default();
    let rss_bytes = kib("VmRSS:")?;
    let anon_bytes = kib("RssAnon:")?.saturating_add(kib("RssShmem:").unwrap_or(0));
    Some(Reading {
        name,
        start_ticks,
        anon_bytes,
        rss_bytes,
    })
}

fn command_line(pid: u32) -> Option<String> {
    let bytes = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let words: Vec<String> = bytes
        .split(|&b| b == 0)
        .filter(|w| !w.is_empty())
        .map(|w| String::from_utf8_lossy(w).into_owned())
        .collect();
    (!words.is_empty()).then(|| words.join(" "))
}

/// How a series of `(seconds, bytes)` points moved: the figures the steadiness rule reads.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Growth {
    /// Least-squares slope, bytes per second.
    pub slope: f64,
    /// Last value minus first value.
    pub net: f64,
    pub intervals: usize,
    pub rising: usize,
    pub falling: usize,
    /// The largest rise in one interval.
    pub largest_rise: f64,
    /// Growth over the last third of the intervals.
    pub last_third_growth: f64,
    /// What the slope predicts for the last third's time span.
    pub last_third_expected: f64,
}

impl Growth {
    /// The steadiness rule of the module documentation.
    pub fn is_steady(&self, min_rate: f64) -> bool {
        self.intervals >= 3
            && self.slope >= min_rate.max(f64::MIN_POSITIVE)
            && self.rising * 2 >= self.intervals
            && self.falling * 4 <= self.intervals
            && self.net > 0.0
            && self.largest_rise * 2.0 <= self.net
            && self.last_third_growth * 4.0 >= self.last_third_expected
            && self.last_third_growth > 0.0
    }
}

/// Measures the points (in time order).
pub fn assess(points: &[(f64, f64)]) -> Growth {
    let n = points.len();
    let intervals = n.saturating_sub(1);
    let mut growth = Growth {
        slope: 0.0,
        net: 0.0,
        intervals,
        rising: 0,
        falling: 0,
        largest_rise: 0.0,
        last_third_growth: 0.0,
        last_third_expected: 0.0,
    };
    if n < 2 {
        return growth;
    }
    let mean_t = points.iter().map(|p| p.0).sum::<f64>() / n as f64;
    let mean_y = points.iter().map(|p| p.1).sum::<f64>() / n as f64;
    let (mut covariance, mut variance) = (0.0, 0.0);
    for &(t, y) in points {
        covariance += (t - mean_t) * (y - mean_y);
        variance += (t - mean_t) * (t - mean_t);
    }
    growth.slope = if variance > 0.0 {
        covariance / variance
    } else {
        0.0
    };
    growth.net = points[n - 1].1 - points[0].1;
    for pair in points.windows(2) {
        let rise = pair[1].1 - pair[0].1;
        if rise > 0.0 {
            growth.rising += 1;
            growth.largest_rise = growth.largest_rise.max(rise);
        } else if rise < 0.0 {
            growth.falling += 1;
        }
    }
    // The last third of the intervals, at least one.
    let from = n - 1 - (intervals / 3).max(1);
    growth.last_third_growth = points[n - 1].1 - points[from].1;
    growth.last_third_expected = growth.slope * (points[n - 1].0 - points[from].0);
    growth
}

/// A positive byte figure of the steadiness rule (a growth or a rate) for the table.
fn shown_bytes(bytes: f64) -> String {
    format_bytes(bytes.max(0.0).round() as u64)
}

/// A duration in whole nanoseconds, saturating (a watch lasts at most a day of samples).
fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

fn record_line(pid: u32) -> String {
    format!("memtrail-record -p {pid} -o {pid}.trace")
}

fn render_text(cli: &SuspectsArgs, watch: &Watch, suspects: &[Suspect<'_>]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "watched {} processes for {} ({} samples, every {}); anonymous memory = RssAnon + RssShmem",
        watch.series.len(),
        format_duration(nanos(watch.elapsed)),
        watch.rounds(),
        format_duration(nanos(cli.interval))
    );
    if suspects.is_empty() {
        let _ = writeln!(
            out,
            "no process grew steadily at {}/s or more",
            format_bytes(cli.min_rate)
        );
        return out;
    }
    let _ = writeln!(
        out,
        "{} grew steadily (fastest first):\n",
        if suspects.len() == 1 {
            "1 process".to_owned()
        } else {
            format!("{} processes", suspects.len())
        }
    );
    let _ = writeln!(
        out,
        "{:>8}  {:<16} {:>11} {:>11} {:>12} {:>7} {:>11}",
        "PID", "NAME", "ANON NOW", "GROWTH", "RATE", "RISING", "RSS NOW"
    );
    for suspect in suspects {
        let anon_now = suspect.series.anon_bytes.last().copied().unwrap_or(0);
        let rss_now = suspect.series.rss_bytes;
        let _ = writeln!(
            out,
            "{:>8}  {:<16} {:>11} {:>11} {:>12} {:>7} {:>11}",
            suspect.pid,
            terminal(&suspect.series.name),
            format_bytes(anon_now),
            format!("+{}", shown_bytes(suspect.growth.net)),
            format!("+{}/s", shown_bytes(suspect.growth.slope)),
            format!("{}/{}", suspect.growth.rising, suspect.growth.intervals),
            format_bytes(rss_now),
        );
        let command: String = suspect.series.command.chars().take(100).collect();
        let _ = writeln!(out, "{:>8}  command: {}", "", terminal(&command));
        let _ = writeln!(out, "{:>8}  record:  {}", "", record_line(suspect.pid));
    }
    out
}

fn render_json(cli: &SuspectsArgs, watch: &Watch, suspects: &[Suspect<'_>]) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "{{\"interval_s\":{},\"duration_s\":{},\"samples\":{},\"processes_watched\":{},\"min_rate_bytes_per_s\":{},\"suspects\":[",
        cli.interval.as_secs_f64(),
        watch.elapsed.as_secs_f64(),
        watch.rounds(),
        watch.series.len(),
        cli.min_rate
    );
    for (i, suspect) in suspects.iter().enumerate() {
        let anon_start = suspect.series.anon_bytes.first().copied().unwrap_or(0);
        let anon_now = suspect.series.anon_bytes.last().copied().unwrap_or(0);
        let rss_now = suspect.series.rss_bytes;
        let growth = &suspect.growth;
        let _ = write!(
            out,
            "{}{{\"pid\":{},\"name\":{},\"command\":{},\"anon_bytes_start\":{anon_start},\"anon_bytes_end\":{anon_now},\"rss_bytes_end\":{rss_now},\"growth_bytes\":{},\"rate_bytes_per_s\":{:.0},\"rising_intervals\":{},\"falling_intervals\":{},\"intervals\":{},\"record_command\":{}}}",
            if i > 0 { "," } else { "" },
            suspect.pid,
            json_string(&suspect.series.name),
            json_string(&suspect.series.command),
            growth.net as i64,
            growth.slope,
            growth.rising,
            growth.falling,
            growth.intervals,
            json_string(&record_line(suspect.pid)),
        );
    }
    out.push_str("]}");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const KIB: f64 = 1024.0;

    fn points(values: &[f64]) -> Vec<(f64, f64)> {
        values
            .iter()
            .enumerate()
            .map(|(i, &v)| (i as f64, v))
            .collect()
    }

    fn steady(values: &[f64]) -> bool {
        assess(&points(values)).is_steady(4.0 * KIB)
    }

    #[test]
    fn linear_growth_is_steady_with_its_slope() {
        let values: Vec<f64> = (0..11).map(|i| 1e6 + i as f64 * 64.0 * KIB).collect();
        let growth = assess(&points(&values));
        assert!((growth.slope - 64.0 * KIB).abs() < 1e-6, "{growth:?}");
        assert_eq!(
            (growth.rising, growth.falling, growth.intervals),
            (10, 0, 10)
        );
        assert!(growth.is_steady(4.0 * KIB));
    }

    #[test]
    fn noisy_growth_with_an_occasional_drop_is_steady() {
        // +100 KiB a second, one collector-like drop and one flat interval.
        let values = [
            0.0, 100.0, 210.0, 150.0, 300.0, 400.0, 400.0, 520.0, 600.0, 700.0,
        ]
        .map(|v| v * KIB);
        assert!(steady(&values));
    }

    #[test]
    fn flat_and_shrinking_are_not() {
        assert!(!steady(&[5e6; 10]));
        let shrinking: Vec<f64> = (0..10).map(|i| 5e6 - i as f64 * 64.0 * KIB).collect();
        assert!(!steady(&shrinking));
    }

    #[test]
    fn growth_below_the_floor_is_not_listed() {
        // Just above the 4 KiB/s floor is listed; half of it is not.
        let above: Vec<f64> = (0..10).map(|i| i as f64 * 4.5 * KIB).collect();
        assert!(steady(&above));
        let below: Vec<f64> = (0..10).map(|i| i as f64 * 2.0 * KIB).collect();
        assert!(!steady(&below));
    }

    #[test]
    fn one_burst_is_not_steady() {
        // Start-up: a big step, then a page now and then.
        let mut values = vec![1e6; 10];
        for (i, v) in values.iter_mut().enumerate().skip(2) {
            *v = 50e6 + i as f64 * 4.0 * KIB;
        }
        let growth = assess(&points(&values));
        assert!(growth.slope > 4.0 * KIB, "{growth:?}");
        assert!(!growth.is_steady(4.0 * KIB));
    }

    #[test]
    fn a_cache_that_filled_up_is_not_steady() {
        // Grows for 6 s, then flat for the last 4 s: most intervals rose, but not at the end.
        let values: Vec<f64> = (0..11).map(|i| (i.min(6) as f64) * 512.0 * KIB).collect();
        let growth = assess(&points(&values));
        assert!(growth.rising * 2 >= growth.intervals, "{growth:?}");
        assert!(!growth.is_steady(4.0 * KIB));
    }

    #[test]
    fn a_sawtooth_is_not_steady() {
        // Allocate, allocate, release: drifts up, but falls in a third of the intervals.
        let mut values = Vec::new();
        let mut base = 0.0;
        for _ in 0..4 {
            values.extend([base, base + 300.0 * KIB, base + 600.0 * KIB]);
            base += 100.0 * KIB;
        }
        let growth = assess(&points(&values));
        assert!(growth.slope > 4.0 * KIB, "{growth:?}");
        assert!(!growth.is_steady(4.0 * KIB));
    }

    #[test]
    fn too_few_samples_are_not_judged() {
        assert!(!steady(&[0.0, 1e6, 2e6]));
        assert!(!steady(&[0.0]));
        assert!(!steady(&[]));
    }

    #[test]
    fn only_processes_alive_at_the_end_and_seen_for_half_the_run_are_listed() {
        let growing = |first_round: usize, rounds: usize| Series {
            name: format!("from-{first_round}"),
            command: String::new(),
            first_round,
            anon_bytes: (0..rounds - first_round)
                .map(|i| 1 << 20 | (i as u64) << 16)
                .collect(),
            rss_bytes: 0,
        };
        let key = |pid| ProcessKey {
            pid,
            start_ticks: 1,
        };
        let mut series = std::collections::BTreeMap::new();
        series.insert(key(10), growing(0, 10)); // the whole run
        series.insert(key(11), growing(5, 10)); // the second half
        series.insert(key(12), growing(6, 10)); // started late: in its start-up
        let mut gone = growing(0, 10);
        gone.anon_bytes.pop(); // exited before the last round
        series.insert(key(13), gone);
        let watch = Watch {
            series,
            round_times: (0..10).map(f64::from).collect(),
            elapsed: Duration::from_secs(9),
        };
        let listed: Vec<u32> = watch.suspects(4096.0).iter().map(|s| s.pid).collect();
        assert_eq!(listed, [10, 11]);
    }

    #[test]
    fn parses_stat_and_status() {
        let stat = "4242 (a (weird) name) S 1 4242 4242 0 -1 4194560 100 0 0 0 5 3 0 0 20 0 1 0 987654 10000 200";
        let status = "Name:\ta (weird) name\nVmRSS:\t    1500 kB\nRssAnon:\t     300 kB\nRssFile:\t1100 kB\nRssShmem:\t     100 kB\n";
        assert_eq!(
            parse_process(stat, status),
            Some(Reading {
                name: "a (weird) name".to_owned(),
                start_ticks: 987654,
                anon_bytes: 400 * 1024,
                rss_bytes: 1500 * 1024,
            })
        );
        // A kernel thread or a zombie: no memory lines.
        assert_eq!(parse_process(stat, "Name:\tkworker/0:1\n"), None);
        assert_eq!(parse_process("garbage", status), None);
    }
}
