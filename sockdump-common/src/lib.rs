//! The records sockdump's eBPF programs send to user space, and their decoding.
//!
//! [`abi`] mirrors `sockdump-ebpf/include/sockdump_abi.h` (a test compiles the
//! header and compares); [`Event::parse`] turns one ring buffer record into an
//! [`Event`] without panicking on any input. [`meta`] and [`user0`] are the
//! per-packet metadata formats of the pcapng and LINKTYPE_USER0 outputs;
//! [`bytes`] reads numbers out of records for all of them.

pub mod abi;
pub mod bytes;
mod event;
pub mod meta;
pub mod user0;

pub use event::{
    show_args, Comm, Container, Context, DecodeError, Event, EventFlags, ProcRecord, ProcessFacts,
    ReadRecord, Reader, SockType, SocketName,
};
