//! The `kiln` binary: parse, run, and turn errors into one line and an exit code.

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = kiln_trainer::cli::Cli::parse();
    match kiln_trainer::cli::run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // `{:#}` joins the chain of causes into one line.
            eprintln!("error: {error:#}");
            ExitCode::from(kiln_trainer::cli::exit_code_for(&error))
        }
    }
}
