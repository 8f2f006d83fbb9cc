//! The `memtrail` binary: parse the command line, run it, print errors on one line.

use std::io::{ErrorKind, Write};
use std::process::ExitCode;

use clap::Parser;
use memtrail::Error;
use memtrail::cli::Cli;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut warn = |w: &str| eprintln!("memtrail: warning: {w}");
    let result =
        memtrail::run(&cli, &mut out, &mut warn).and_then(|()| out.flush().map_err(Error::Stdout));
    match result.map_err(anyhow::Error::from) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if let Some(Error::Stdout(io)) = e.downcast_ref::<Error>()
                && io.kind() == ErrorKind::BrokenPipe
            {
                return ExitCode::SUCCESS;
            }
            // Each library error is one complete line; the causes are already in it.
            eprintln!("memtrail: error: {e}");
            ExitCode::from(2)
        }
    }
}
