//! Running a command: parse options into an analysis, pick the report and the renderer, write
//! the result. Warnings (truncation, lost events) go to stderr through the `warn` callback.
//!
//! Owns the glue only. Must not compute (that is `report.rs`) or format (that is `render/`).

use std::io::Write;
use std::path::Path;

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use crate::analysis::{Analysis, analyze_counting};
use crate::cli::{
    Cli, Command, CompareArgs, CompareOptions, DiffArgs, ExportFormat, ExportWhat, NormalizeArg,
    ReplayArgs, ReportArgs, ReportFormat, SummaryFormat,
};
use crate::diff::{self, Diff, DiffOptions, Normalize};
use crate::error::{Error, Result};
use crate::escape::shown;
use crate::files::{check_inputs_and_outputs, write_file, write_output};
use crate::progress::Progress;
use crate::render::{self, export::TableFormat};
use crate::replay::ReplayOptions;
use crate::report;

/// How a command that did not fail ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Done,
    /// A comparison's growth gate failed; the text names the stacks that crossed it (the
    /// binary prints it on stderr and exits with status 1).
    GrowthFound(String),
}

/// Runs `cli`, writing the report to `out` and each warning to `warn`.
pub fn run(cli: &Cli, out: &mut dyn Write, warn: &mut dyn FnMut(&str)) -> Result<Outcome> {
    check_files(cli)?;
    let done = match &cli.command {
        Command::Diff(args) => return diff_command(args, out, warn),
        Command::Compare(args) => return compare_command(args, out, warn),
        Command::Report(args) => return report_command(args, out, warn),
        Command::Info(args) => {
            let options = ReplayOptions {
                memory_limit: args.memory.limit(),
                pids: args.processes.filter()?,
                ..ReplayOptions::default()
            };
            let a = load(&args.file, options, warn)?;
            let text = match args.format.or_json(args.json) {
                SummaryFormat::Json => render::json::info(&a),
                SummaryFormat::Table => render::table::info(&a),
            };
            emit(out, &text)
        }
        Command::Leaks(args) => {
            let a = load_with(&args.replay, args.min_age, false, warn)?;
            let rep = report::leaks(&a, args.top);
            match args.format.or_json(args.json) {
                ReportFormat::Table => emit(out, &render::table::leaks(&a, &rep, args.frames)),
                ReportFormat::Json => emit(out, &render::json::leaks(&a, &rep)),
                ReportFormat::Csv => {
                    let mut df = render::export::candidates(&a, &rep)?;
                    let mut buf = Vec::new();
                    render::export::write(&mut df, TableFormat::Csv, &mut buf)?;
                    out.write_all(&buf).map_err(Error::Stdout)
                }
            }
        }
        Command::Flamegraph(args) => {
            let a = load_with(&args.replay, args.min_age, false, warn)?;
            let lines = render::flamegraph::folded(&a, args.metric);
            write_file(&args.output, |w| {
                if args.folded {
                    for l in &lines {
                        writeln!(w, "{l}")?;
                    }
                    Ok(())
                } else {
                    render::flamegraph::svg(&a, args.metric, args.inverted, &lines, w)
                }
            })
        }
        Command::Lifetimes(args) => {
            let a = load_with(&args.replay, 0, false, warn)?;
            let sel = report::Selection {
                stack: args.stack,
                function: args.function.clone(),
            };
            let what = match (&sel.stack, &sel.function) {
                (Some(id), _) => format!("stack {id}"),
                (None, Some(f)) => format!("stacks through {f}"),
                (None, None) => "all allocations".to_owned(),
            };
            let l = report::lifetimes(&a, &sel)?;
            if let Some(path) = &args.svg {
                let svg = render::svg::lifetimes(&a, &l, &what);
                write_file(path, |w| w.write_all(svg.as_bytes()))?;
            }
            match args.format.or_json(args.json) {
                ReportFormat::Table => emit(out, &render::table::lifetimes(&a, &l, &what)),
                ReportFormat::Json => emit(out, &render::json::lifetimes(&a, &l, &what)),
                ReportFormat::Csv => {
                    let mut df = render::export::lifetimes(&l)?;
                    let mut buf = Vec::new();
                    render::export::write(&mut df, TableFormat::Csv, &mut buf)?;
                    out.write_all(&buf).map_err(Error::Stdout)
                }
            }
        }
        Command::Timeline(args) => {
            let a = load_with(&args.replay, 0, false, warn)?;
            if let Some(path) = &args.svg {
                let svg = render::svg::timeline(&a);
                write_file(path, |w| w.write_all(svg.as_bytes()))?;
            }
            match args.format.or_json(args.json) {
                SummaryFormat::Json => emit(out, &render::json::timeline(&a)),
                SummaryFormat::Table => emit(out, &render::table::timeline(&a)),
            }
        }
        Command::Export(args) => {
            let allocations = args.what == ExportWhat::Allocations;
            let a = load_with(&args.replay, args.min_age, allocations, warn)?;
            let mut df = if allocations {
                render::export::allocations(a.replay.allocations.as_deref().unwrap_or(&[]))?
            } else {
                render::export::stacks(&a)?
            };
            let format = match args.format {
                ExportFormat::Parquet => TableFormat::Parquet,
                ExportFormat::Csv => TableFormat::Csv,
                ExportFormat::Json => TableFormat::Json,
            };
            write_output(&args.output, |w| {
                Ok(render::export::write(&mut df, format, w)?)
            })?;
            let _ = writeln!(
                out,
                "wrote {} rows to {}",
                df.height(),
                shown(args.output.display())
            );
            Ok(())
        }
    };
    done.map(|()| Outcome::Done)
}

/// `memtrail diff BASE NEW`.
fn diff_command(
    args: &DiffArgs,
    out: &mut dyn Write,
    warn: &mut dyn FnMut(&str),
) -> Result<Outcome> {
    let (base, new) = (
        load_compared(&args.base, &args.options, warn)?,
        load_compared(&args.new, &args.options, warn)?,
    );
    let d = diff::diff(&base, &new, &diff_options(&args.options))?;
    drop((base, new));
    if let Some(path) = &args.flamegraph {
        let lines = render::flamegraph::diff_folded(&d);
        write_file(path, |w| render::flamegraph::diff_svg(&d, &lines, w))?;
    }
    match args.format.or_json(args.json) {
        ReportFormat::Table => emit(out, &render::table::diff(&d, args.top, args.frames))?,
        ReportFormat::Json => emit(out, &render::json::diff(&d))?,
        ReportFormat::Csv => {
            let mut df = render::export::diff(&[&d])?;
            let mut buf = Vec::new();
            render::export::write(&mut df, TableFormat::Csv, &mut buf)?;
            out.write_all(&buf).map_err(Error::Stdout)?;
        }
    }
    Ok(gate_outcome(&[&d]))
}

/// `memtrail compare --baseline BASE NEW...`.
fn compare_command(
    args: &CompareArgs,
    out: &mut dyn Write,
    warn: &mut dyn FnMut(&str),
) -> Result<Outcome> {
    let traces = expand_traces(&args.traces, &args.baseline)?;
    let inputs: Vec<&Path> = std::iter::once(args.baseline.as_path())
        .chain(traces.iter().map(|t| t.as_path()))
        .collect();
    check_inputs_and_outputs(
        &inputs,
        &args.output.as_deref().into_iter().collect::<Vec<_>>(),
    )?;
    if args.format == ExportFormat::Parquet && args.output.is_none() {
        return Err(Error::Invalid(
            "Parquet is a binary format: name the output file with -o OUT.parquet".into(),
        ));
    }
    let base = load_compared(&args.baseline, &args.options, warn)?;
    let options = diff_options(&args.options);
    let mut diffs = Vec::with_capacity(traces.len());
    for t in &traces {
        let new = load_compared(t, &args.options, warn)?;
        diffs.push(diff::diff(&base, &new, &options)?);
    }
    let refs: Vec<&Diff> = diffs.iter().collect();
    let mut df = render::export::diff(&refs)?;
    let format = match args.format {
        ExportFormat::Parquet => TableFormat::Parquet,
        ExportFormat::Csv => TableFormat::Csv,
        ExportFormat::Json => TableFormat::Json,
    };
    match &args.output {
        Some(path) => {
            write_output(path, |w| Ok(render::export::write(&mut df, format, w)?))?;
            emit(
                out,
                &format!(
                    "wrote {} rows ({} traces against {}) to {}\n",
                    df.height(),
                    traces.len(),
                    shown(args.baseline.display()),
                    shown(path.display())
                ),
            )?;
        }
        None => {
            let mut buf = Vec::new();
            render::export::write(&mut df, format, &mut buf)?;
            out.write_all(&buf).map_err(Error::Stdout)?;
        }
    }
    Ok(gate_outcome(&refs))
}

/// `memtrail report TRACE [NEW] -o OUT.html`.
fn report_command(
    args: &ReportArgs,
    out: &mut dyn Write,
    warn: &mut dyn FnMut(&str),
) -> Result<Outcome> {
    let options = CompareOptions {
        min_age: args.min_age,
        normalize: args.normalize,
        fail_on_growth: Vec::new(),
        processes: args.processes.clone(),
        memory: args.memory,
    };
    let all = report::Selection::default();
    let html = match args.traces.as_slice() {
        [one] => {
            let a = load_compared(one, &options, warn)?;
            let leaks = report::leaks(&a, Some(args.top));
            let lifetimes = report::lifetimes(&a, &all)?;
            render::html::single(&a, &leaks, &lifetimes)
                .map_err(|e| Error::write(&args.output, e))?
        }
        [base_path, new_path] => {
            let base = load_compared(base_path, &options, warn)?;
            let new = load_compared(new_path, &options, warn)?;
            let d = diff::diff(&base, &new, &diff_options(&options))?;
            let (lb, ln) = (
                report::lifetimes(&base, &all)?,
                report::lifetimes(&new, &all)?,
            );
            render::html::compared(&base, &new, &d, &lb, &ln, args.top)
                .map_err(|e| Error::write(&args.output, e))?
        }
        _ => {
            return Err(Error::Invalid(
                "report takes one trace, or two (BASE NEW) to compare".into(),
            ));
        }
    };
    write_file(&args.output, |w| w.write_all(html.as_bytes()))?;
    emit(
        out,
        &format!(
            "wrote {} ({} bytes)\n",
            shown(args.output.display()),
            html.len()
        ),
    )?;
    Ok(Outcome::Done)
}

fn diff_options(o: &CompareOptions) -> DiffOptions {
    DiffOptions {
        normalize: match o.normalize {
            NormalizeArg::None => Normalize::None,
            NormalizeArg::Duration => Normalize::Duration,
        },
        thresholds: o.fail_on_growth.clone(),
    }
}

fn load_compared(path: &Path, o: &CompareOptions, warn: &mut dyn FnMut(&str)) -> Result<Analysis> {
    load(
        path,
        ReplayOptions {
            min_age_ns: o.min_age,
            memory_limit: o.memory.limit(),
            pids: o.processes.filter()?,
            ..ReplayOptions::default()
        },
        warn,
    )
}

/// The gate's message over one or more comparisons.
fn gate_outcome(diffs: &[&Diff]) -> Outcome {
    let failed: Vec<String> = diffs
        .iter()
        .filter(|d| d.crossed().next().is_some())
        .filter_map(|d| {
            let text = render::table::gate(d)?;
            Some(if diffs.len() > 1 {
                format!("{}: {text}", shown(d.new.path.display()))
            } else {
                text
            })
        })
        .collect();
    if failed.is_empty() {
        Outcome::Done
    } else {
        Outcome::GrowthFound(failed.concat())
    }
}

/// The traces `compare` reads: files as given, directories as their `*.trace` files sorted by
/// name, the baseline itself left out.
fn expand_traces(paths: &[std::path::PathBuf], baseline: &Path) -> Result<Vec<std::path::PathBuf>> {
    let same = |p: &Path| match (p.canonicalize(), baseline.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            let entries = std::fs::read_dir(p).map_err(|e| {
                Error::Invalid(format!("cannot list the directory {}: {e}", p.display()))
            })?;
            let mut found = Vec::new();
            for entry in entries {
                let entry = entry.map_err(|e| {
                    Error::Invalid(format!("cannot list the directory {}: {e}", p.display()))
                })?;
                let path = entry.path();
                if path.is_file() && path.extension().is_some_and(|x| x == "trace") && !same(&path)
                {
                    found.push(path);
                }
            }
            if found.is_empty() {
                return Err(Error::Invalid(format!(
                    "{} holds no *.trace file to compare",
                    p.display()
                )));
            }
            found.sort();
            out.extend(found);
        } else {
            out.push(p.clone());
        }
    }
    Ok(out)
}

fn load(path: &Path, options: ReplayOptions, warn: &mut dyn FnMut(&str)) -> Result<Analysis> {
    let bytes_read = Arc::new(AtomicU64::new(0));
    let progress = Progress::start(path, bytes_read.clone());
    let a = analyze_counting(path, options, bytes_read);
    progress.finish();
    let a = a?;
    for w in a.warnings() {
        warn(&w);
    }
    Ok(a)
}

fn load_with(
    r: &ReplayArgs,
    min_age_ns: u64,
    collect_allocations: bool,
    warn: &mut dyn FnMut(&str),
) -> Result<Analysis> {
    load(
        &r.file,
        ReplayOptions {
            at_ns: r.at,
            min_age_ns,
            collect_allocations,
            memory_limit: r.memory.limit(),
            pids: r.processes.filter()?,
        },
        warn,
    )
}

fn emit(out: &mut dyn Write, text: &str) -> Result<()> {
    out.write_all(text.as_bytes()).map_err(Error::Stdout)
}

/// Before any analysis: every input must be a regular file, and no output may be an input
/// (`compare` checks its own, once its directories are expanded).
fn check_files(cli: &Cli) -> Result<()> {
    let (inputs, outputs): (Vec<&Path>, Vec<Option<&Path>>) = match &cli.command {
        Command::Info(args) => (vec![&args.file], vec![]),
        Command::Leaks(args) => (vec![&args.replay.file], vec![]),
        Command::Flamegraph(args) => (vec![&args.replay.file], vec![Some(&args.output)]),
        Command::Lifetimes(args) => (vec![&args.replay.file], vec![args.svg.as_deref()]),
        Command::Timeline(args) => (vec![&args.replay.file], vec![args.svg.as_deref()]),
        Command::Export(args) => (vec![&args.replay.file], vec![Some(&args.output)]),
        Command::Diff(args) => (
            vec![&args.base, &args.new],
            vec![args.flamegraph.as_deref()],
        ),
        Command::Report(args) => (
            args.traces.iter().map(|t| t.as_path()).collect(),
            vec![Some(&args.output)],
        ),
        Command::Compare(_) => return Ok(()),
    };
    let outputs: Vec<&Path> = outputs.into_iter().flatten().collect();
    check_inputs_and_outputs(&inputs, &outputs)
}
