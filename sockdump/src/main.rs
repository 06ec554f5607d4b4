use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = sockdump::cli::Cli::parse();
    match sockdump::run::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // One line a user can act on; the causes follow on the same line.
            eprintln!("sockdump: {err:#}");
            ExitCode::FAILURE
        }
    }
}
