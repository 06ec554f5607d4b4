use std::process::ExitCode;

use clap::error::ErrorKind;
use clap::Parser;

fn main() -> ExitCode {
    let cli = match sockdump::cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) if matches!(err.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) => err.exit(),
        Err(err) => {
            // clap's first line says what is wrong; keep errors to one line.
            let text = err.to_string();
            let first = text.lines().next().unwrap_or_default();
            eprintln!("sockdump: {} (see --help)", first.trim_start_matches("error: "));
            return ExitCode::from(2);
        }
    };
    match sockdump::run::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // One line a user can act on; the causes follow on the same line.
            eprintln!("sockdump: {err:#}");
            ExitCode::FAILURE
        }
    }
}
