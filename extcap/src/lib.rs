//! Wireshark's extcap protocol, as sockdump speaks it.
//!
//! Wireshark (and tshark) run every program in their extcap folder with
//! `--extcap-interfaces`, `--extcap-dlts`, `--extcap-config`, a capture-filter
//! check, and finally `--capture --fifo PATH`. This crate parses those calls
//! ([`parse`]), answers the listing calls ([`interfaces`], [`dlts`],
//! [`config`]), turns the capture filter into sockdump options ([`filter`]),
//! and installs sockdump where Wireshark looks ([`install`]). Starting the
//! capture itself is the binary's job.

mod dialog;
pub mod filter;
pub mod install;
mod protocol;

pub use dialog::{config, reload, Choice};
pub use protocol::{dlts, interfaces, is_extcap_call, parse, Call, Capture, ExtcapError, INTERFACE};
