//! sockdump: capture what processes send on unix domain sockets.
//!
//! The pipeline is `capture` (eBPF programs and the ring buffer) → decoding
//! (`sockdump_common::Event::parse`) → `output` (a [`output::Sink`]). `run`
//! ties them together for the command line; `read` replays a capture file
//! (`-r`) into the same sinks.

pub mod capture;
pub mod cli;
pub mod clock;
pub mod extcap;
mod kretprobe;
pub mod output;
pub mod read;
pub mod run;
pub mod system;
