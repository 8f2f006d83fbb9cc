//! memtrail-record: records every allocation and free of a live process into a memtrail trace
//! (eBPF uprobes on the allocator), and finds which process to record (`suspects`).
//!
//! It runs as root on production hosts, so it stays small: no polars, nothing heavy, and no
//! analysis (that is the `memtrail` analyzer's). It owns launching or attaching to the target,
//! loading and attaching the eBPF object, the recording loop and every record it writes. It
//! must not exit, nor print more than its status lines (stderr) and `suspects`' report
//! (stdout): [`run`] returns the exit status or an [`Error`], which the binary prints on one
//! line.
//!
//! The modules, in the order a recording uses them:
//! - [`cli`]: the command line (clap), the `suspects` subcommand included;
//! - `recording`: the steps of one recording, in order (checks, output, allocator, target,
//!   probes, metadata, session), with `host` for facts about the machine;
//! - `output`: which existing file at `-o` may be replaced (the trace goes into a temporary
//!   file renamed over it once the target has started);
//! - `target`: launching a command held before exec, or checking a running PID;
//! - `allocators`: which allocators the target uses and which functions to probe where (with
//!   `entry_probe` for the instruction and `elf_file` for the symbols);
//! - `probes`: loading the embedded eBPF object and attaching it;
//! - `unwind_tables`, `unwind_loader`: CFI unwind tables for the in-kernel unwinder;
//! - `kernel_btf`: the offsets of the kernel's `task_struct` fields the process-tracking
//!   programs read;
//! - `session`: the recording loop and every record written, with `processes` (the traced
//!   process tree), `modules`, `symbols`, `anon_mappings` and `rss`;
//! - `watchdog`: resumes the processes the programs stopped if the recorder dies;
//! - `signals`: the one SIGINT/SIGTERM handler, which both commands poll;
//! - `suspects`: the `suspects` subcommand (which process grows?), apart from all the above;
//! - `escape`: text from `/proc` made safe to print;
//! - [`error`]: every failure as a value, with its one-line message and exit status.
//!
//! Sizes and durations are parsed and printed by `memtrail_format::units`, as in the analyzer.

mod allocators;
mod anon_mappings;
pub mod cli;
mod elf_file;
mod entry_probe;
pub mod error;
mod host;
mod kernel_btf;
mod modules;
mod output;
mod probes;
mod processes;
mod recording;
mod rss;
mod session;
mod signals;
mod suspects;
mod symbols;
mod target;
mod unwind_loader;
mod unwind_tables;
mod watchdog;

pub use cli::{Cli, Command};
pub use error::Error;

/// Runs the command line: records, or runs `suspects`. Returns the exit status of a run that
/// did not fail (a launched command's own, or 128 + N when signal N stopped the recording).
pub fn run(cli: &Cli) -> Result<i32, Error> {
    match &cli.command {
        Some(Command::Suspects(args)) => {
            suspects::run(args)?;
            Ok(0)
        }
        None => recording::run(&cli.record),
    }
}

/// What the binary prints and returns for an error from [`run`]: the one line for stderr,
/// escaped (errors name paths and command lines), and the exit status
/// ([`Error::exit_code`]).
pub fn failure(error: &Error) -> (String, i32) {
    let text = memtrail_format::text::terminal(&error.one_line()).into_owned();
    (format!("{}: {text}", error.program()), error.exit_code())
}
