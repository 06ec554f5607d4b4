use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    // Wireshark runs the same binary with --extcap-* arguments.
    let result = if sockdump_extcap::is_extcap_call(&args) {
        sockdump::extcap::answer(&args).map(|()| 0)
    } else if args.first().is_some_and(|a| a == "extcap") {
        sockdump::extcap::command(&args[1..]).map(|()| 0)
    } else {
        sockdump::cli::Cli::try_parse().map_err(anyhow::Error::from).and_then(sockdump::run::run)
    };
    report(result)
}

/// Every way sockdump ends, whichever mode it ran in: an error is one line
/// a user (or Wireshark's error dialog) can act on, with its causes on the
/// same line.
fn report(result: anyhow::Result<u8>) -> ExitCode {
    let err = match result {
        Ok(status) => return ExitCode::from(status),
        Err(err) => err,
    };
    match err.downcast_ref::<clap::Error>() {
        // --help and --version: clap prints them
        Some(usage) if !usage.use_stderr() => usage.exit(),
        Some(usage) => {
            let line = sockdump::cli::error_line(usage);
            sockdump::messages::note(format_args!("sockdump: {line} (see --help)"));
            ExitCode::from(2)
        }
        None => {
            sockdump::messages::note(format_args!("sockdump: {err:#}"));
            ExitCode::FAILURE
        }
    }
}
