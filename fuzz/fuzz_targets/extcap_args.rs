//! Wireshark's extcap calls: the input is argv, arguments separated by NUL
//! bytes (any bytes, as a command line may hold).
#![no_main]

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|argv: &[u8]| {
    let args: Vec<OsString> = argv.split(|&b| b == 0).map(|a| OsString::from_vec(a.to_vec())).collect();
    let _ = sockdump_extcap::is_extcap_call(&args);
    let _ = sockdump_extcap::parse(&args);
});
