//! The records sockdump's eBPF programs send to user space, and their decoding.
//!
//! [`abi`] mirrors `sockdump-ebpf/include/sockdump_abi.h` (a test compiles the
//! header and compares); [`Event::parse`] turns one ring buffer record into an
//! [`Event`] without panicking on any input.

pub mod abi;
mod event;

pub use event::{DecodeError, Event, EventFlags, SockType, SocketName};
