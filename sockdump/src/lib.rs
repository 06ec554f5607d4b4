//! sockdump: capture what processes send on unix domain sockets.
//!
//! A [`pump::Source`] (live `capture`, or a file `read` back with `-r`)
//! hands decoded events to the one event loop, [`pump::pump`], which feeds
//! an [`output::Sink`]. `setup` builds them from the command line (`cli`),
//! `run` drives them, `messages` is what the user is told. `file` knows the
//! pcap and pcapng formats, for writing and reading alike.

pub mod capture;
pub mod cli;
pub mod clock;
pub mod command;
pub mod containers;
pub mod extcap;
pub mod file;
pub mod filter;
mod generations;
pub mod messages;
pub mod output;
pub mod privileges;
pub mod processes;
pub mod pump;
pub mod read;
pub mod readers;
pub mod run;
pub mod setup;
pub mod system;
