//! The `memtrail-record` binary: parse the command line, run it, print an error on one line.
//!
//! Exit status (as `env` and `timeout` use them): the launched command's own status (0 in
//! attach mode and for `suspects`); 127 when the command is not found, 126 when it cannot be
//! run; 128 + N when signal N stopped the recording; 2 on usage errors; 1 for the recorder's
//! own errors. Everything else is in the `memtrail_record` library.

use clap::Parser;
use memtrail_record::Cli;

fn main() {
    let cli = Cli::parse();
    let code = match memtrail_record::run(&cli) {
        Ok(code) => code,
        Err(error) => {
            let (line, code) = memtrail_record::failure(&error);
            eprintln!("{line}");
            code
        }
    };
    std::process::exit(code);
}
