use std::process::ExitCode;

use clap::error::ErrorKind;
use clap::Parser;

fn main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    // Wireshark runs the same binary with --extcap-* arguments.
    if sockdump_extcap::is_extcap_call(&args) {
        return report(sockdump::extcap::answer(&args));
    }
    if args.first().is_some_and(|a| a == "extcap") {
        return report(sockdump::extcap::command(&args[1..]));
    }
    let cli = match sockdump::cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) if matches!(err.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) => err.exit(),
        Err(err) => {
            // clap's first line says what is wrong; keep errors to one line.
            let line = sockdump::cli::error_line(&err);
            sockdump::messages::note(format_args!("sockdump: {line} (see --help)"));
            return ExitCode::from(2);
        }
    };
    report(sockdump::run::run(cli))
}

fn report(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // One line a user (or Wireshark's error dialog) can act on; the
            // causes follow on the same line.
            sockdump::messages::note(format_args!("sockdump: {err:#}"));
            ExitCode::FAILURE
        }
    }
}
