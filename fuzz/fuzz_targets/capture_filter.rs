//! The capture filter Wireshark's filter field passes: a filter the check
//! accepts must also make a command line the capture accepts.
#![no_main]

use clap::Parser;
use libfuzzer_sys::fuzz_target;
use sockdump::cli::Cli;

fuzz_target!(|filter: &[u8]| {
    let Ok(filter) = std::str::from_utf8(filter) else { return };
    let Ok(options) = sockdump_extcap::filter::to_options(filter) else { return };
    let argv = ["sockdump", "--format", "pcapng", "--output", "/dev/null"]
        .into_iter()
        .map(String::from)
        .chain(options.iter().cloned());
    if let Err(err) = Cli::try_parse_from(argv) {
        panic!("filter {filter:?} passes the check, but its options {options:?} do not: {err}");
    }
});
