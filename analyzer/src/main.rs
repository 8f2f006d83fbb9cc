//! The `memtrail` binary: parse the command line, run it, print errors on one line.
//!
//! Exit status: 0 on success, 1 when a comparison's growth gate (`--fail-on-growth`) failed,
//! 2 on bad input (clap's usage errors too).

use std::io::{ErrorKind, Write};
use std::process::ExitCode;

use clap::Parser;
use memtrail::cli::Cli;
use memtrail::escape::{shown, terminal_lines};
use memtrail::{Error, Outcome};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    // Warnings and errors name traces and their contents: escaped like every report.
    let mut warn = |w: &str| eprintln!("memtrail: warning: {}", shown(w));
    let result = memtrail::run(&cli, &mut out, &mut warn)
        .and_then(|outcome| out.flush().map_err(Error::Stdout).map(|()| outcome));
    match result.map_err(anyhow::Error::from) {
        Ok(Outcome::Done) => ExitCode::SUCCESS,
        Ok(Outcome::GrowthFound(message)) => {
            // The comparison is printed; this names what failed the gate, on stderr so that
            // JSON or CSV on stdout stays clean.
            eprint!("memtrail: {}", terminal_lines(&message));
            ExitCode::from(1)
        }
        Err(e) => {
            if let Some(Error::Stdout(io)) = e.downcast_ref::<Error>()
                && io.kind() == ErrorKind::BrokenPipe
            {
                return ExitCode::SUCCESS;
            }
            // Each library error is one complete line; the causes are already in it.
            eprintln!("memtrail: error: {}", shown(&e));
            ExitCode::from(2)
        }
    }
}
