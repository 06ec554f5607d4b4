//! `--format pcapng`: one section, one interface, and per packet an
//! Enhanced Packet Block with the message's metadata as a comment and its
//! direction in the flags; an Interface Statistics Block with the totals
//! ends the file. See `docs/PCAPNG.md`.
//!
//! Written by hand rather than with a pcap crate: it is a few fixed block
//! layouts, this way every block of a message goes out in one write from a
//! reused buffer, and timestamps are nanoseconds exactly as the IDB says.

use std::io::{self, Write};

use sockdump_common::meta::{self, MessageMeta, Synthetic};
use sockdump_common::Event;

use super::framing::{Content, Framer, SNAPLEN};
use super::{unix_now_ns, SinkOptions, Stats};
use crate::clock::WallClock;

pub const BLOCK_SHB: u32 = 0x0A0D_0D0A;
pub const BLOCK_IDB: u32 = 1;
pub const BLOCK_SPB: u32 = 3;
pub const BLOCK_ISB: u32 = 5;
pub const BLOCK_EPB: u32 = 6;
pub const BYTE_ORDER_MAGIC: u32 = 0x1A2B_3C4D;

pub const OPT_ENDOFOPT: u16 = 0;
pub const OPT_COMMENT: u16 = 1;
pub const SHB_OS: u16 = 3;
pub const SHB_USERAPPL: u16 = 4;
pub const IF_NAME: u16 = 2;
pub const IF_DESCRIPTION: u16 = 3;
pub const IF_TSRESOL: u16 = 9;
pub const IF_FILTER: u16 = 11;
pub const IF_TSOFFSET: u16 = 14;
pub const EPB_FLAGS: u16 = 2;
pub const ISB_STARTTIME: u16 = 2;
pub const ISB_ENDTIME: u16 = 3;
pub const ISB_IFRECV: u16 = 4;
pub const ISB_IFDROP: u16 = 5;
pub const ISB_USRDELIV: u16 = 8;

/// The interface name every sockdump capture has.
pub const INTERFACE_NAME: &str = "sockdump";

fn pad4(buf: &mut Vec<u8>) {
    while buf.len() & 3 != 0 {
        buf.push(0);
    }
}

fn push_u16(buf: &mut Vec<u8>, v: u16) {
    buf.extend_from_slice(&v.to_ne_bytes());
}

fn push_u32(buf: &mut Vec<u8>, v: u32) {
    buf.extend_from_slice(&v.to_ne_bytes());
}

/// An option: code, length, value padded to 32 bits. Values longer than an
/// option holds are cut (none of sockdump's come close).
fn push_option(buf: &mut Vec<u8>, code: u16, value: &[u8]) {
    let value = &value[..value.len().min(0xfff0)];
    push_u16(buf, code);
    push_u16(buf, value.len() as u16);
    buf.extend_from_slice(value);
    pad4(buf);
}

/// A 64-bit timestamp as pcapng stores it: high word, then low word.
fn timestamp_words(ns: u64) -> [u8; 8] {
    let mut out = [0u8; 8];
    out[..4].copy_from_slice(&((ns >> 32) as u32).to_ne_bytes());
    out[4..].copy_from_slice(&(ns as u32).to_ne_bytes());
    out
}

/// Starts a block; [`end_block`] fills in its length.
fn begin_block(buf: &mut Vec<u8>, block_type: u32) -> usize {
    let start = buf.len();
    push_u32(buf, block_type);
    push_u32(buf, 0);
    start
}

fn end_block(buf: &mut Vec<u8>, start: usize) {
    push_u32(buf, 0);
    // Blocks are at most a packet plus options: far below 4 GiB.
    let len = ((buf.len() - start) as u32).to_ne_bytes();
    buf[start + 4..start + 8].copy_from_slice(&len);
    let end = buf.len();
    buf[end - 4..].copy_from_slice(&len);
}

fn end_options(buf: &mut Vec<u8>) {
    push_u16(buf, OPT_ENDOFOPT);
    push_u16(buf, 0);
}

/// Section Header Block.
pub fn push_shb(buf: &mut Vec<u8>, userappl: &str, os: Option<&str>) {
    let start = begin_block(buf, BLOCK_SHB);
    push_u32(buf, BYTE_ORDER_MAGIC);
    push_u16(buf, 1);
    push_u16(buf, 0);
    // Section length unknown: we stream.
    buf.extend_from_slice(&(-1i64).to_ne_bytes());
    if let Some(os) = os {
        push_option(buf, SHB_OS, os.as_bytes());
    }
    push_option(buf, SHB_USERAPPL, userappl.as_bytes());
    end_options(buf);
    end_block(buf, start);
}

/// What the Interface Description Block says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface<'a> {
    pub linktype: u16,
    pub description: &'a str,
    /// The capture filter in sockdump's option syntax, if any.
    pub filter: Option<&'a str>,
}

/// Interface Description Block with nanosecond timestamps.
pub fn push_idb(buf: &mut Vec<u8>, interface: &Interface<'_>) {
    let start = begin_block(buf, BLOCK_IDB);
    push_u16(buf, interface.linktype);
    push_u16(buf, 0);
    push_u32(buf, SNAPLEN);
    push_option(buf, IF_NAME, INTERFACE_NAME.as_bytes());
    push_option(buf, IF_DESCRIPTION, interface.description.as_bytes());
    if let Some(filter) = interface.filter {
        // Filter type 0: a filter string (not libpcap syntax here, and
        // Wireshark only shows it).
        let mut value = Vec::with_capacity(filter.len() + 1);
        value.push(0);
        value.extend_from_slice(filter.as_bytes());
        push_option(buf, IF_FILTER, &value);
    }
    push_option(buf, IF_TSRESOL, &[9]);
    end_options(buf);
    end_block(buf, start);
}

/// Enhanced Packet Block on interface 0.
pub fn push_epb(buf: &mut Vec<u8>, timestamp_ns: u64, data: &[u8], orig_len: u32, flags: u32, comment: &str) {
    let start = begin_block(buf, BLOCK_EPB);
    push_u32(buf, 0);
    buf.extend_from_slice(&timestamp_words(timestamp_ns));
    // Packets are at most SNAPLEN bytes.
    push_u32(buf, data.len() as u32);
    push_u32(buf, orig_len);
    buf.extend_from_slice(data);
    pad4(buf);
    push_option(buf, OPT_COMMENT, comment.as_bytes());
    if flags != 0 {
        push_option(buf, EPB_FLAGS, &flags.to_ne_bytes());
    }
    end_options(buf);
    end_block(buf, start);
}

/// Interface Statistics Block for interface 0.
pub fn push_isb(buf: &mut Vec<u8>, now_ns: u64, started_ns: u64, stats: &Stats) {
    let start = begin_block(buf, BLOCK_ISB);
    push_u32(buf, 0);
    buf.extend_from_slice(&timestamp_words(now_ns));
    push_option(
        buf,
        OPT_COMMENT,
        format!("{} messages captured, {} lost", stats.captured, stats.lost).as_bytes(),
    );
    push_option(buf, ISB_STARTTIME, &timestamp_words(started_ns));
    push_option(buf, ISB_ENDTIME, &timestamp_words(now_ns));
    push_option(buf, ISB_IFRECV, &stats.captured.saturating_add(stats.lost).to_ne_bytes());
    push_option(buf, ISB_IFDROP, &stats.lost.to_ne_bytes());
    push_option(buf, ISB_USRDELIV, &stats.captured.to_ne_bytes());
    end_options(buf);
    end_block(buf, start);
}

/// The running kernel, for `shb_os`.
fn os_name() -> Option<String> {
    let read = |p: &str| std::fs::read_to_string(p).ok().map(|s| s.trim().to_owned());
    Some(format!("{} {}", read("/proc/sys/kernel/ostype")?, read("/proc/sys/kernel/osrelease")?))
}

pub fn user_application() -> String {
    format!("sockdump {}", env!("CARGO_PKG_VERSION"))
}

/// Nanoseconds since the epoch of a kernel timestamp (0 before 1970).
pub(super) fn epoch_ns(clock: WallClock, monotonic_ns: u64) -> u64 {
    u64::try_from(clock.epoch_ns(monotonic_ns).max(0)).unwrap_or(u64::MAX)
}

pub struct PcapngSink<W: Write> {
    out: W,
    framer: Framer,
    clock: WallClock,
    flush_each: bool,
    filter: Option<String>,
    /// When this file began, for its statistics.
    started_ns: u64,
    /// Every block of one message, written at once.
    blocks: Vec<u8>,
    comment: String,
}

impl<W: Write> PcapngSink<W> {
    pub fn new(out: W, options: SinkOptions) -> Self {
        PcapngSink {
            out,
            framer: Framer::new(options.link, options.ports),
            clock: options.clock,
            flush_each: options.flush_each,
            filter: options.filter,
            started_ns: 0,
            blocks: Vec::with_capacity(1 << 17),
            comment: String::with_capacity(512),
        }
    }

    pub fn into_inner(self) -> W {
        self.out
    }
}

impl<W: Write> super::Sink for PcapngSink<W> {
    /// The section and interface headers: Wireshark on a pipe can start
    /// before the first packet.
    fn begin(&mut self) -> io::Result<()> {
        self.started_ns = unix_now_ns();
        self.blocks.clear();
        push_shb(&mut self.blocks, &user_application(), os_name().as_deref());
        push_idb(
            &mut self.blocks,
            &Interface {
                linktype: self.framer.link().linktype(),
                description: "unix domain socket messages",
                filter: self.filter.as_deref(),
            },
        );
        self.out.write_all(&self.blocks)?;
        self.out.flush()
    }

    fn write_event(&mut self, event: &Event<'_>) -> io::Result<()> {
        let ts = epoch_ns(self.clock, event.timestamp_ns);
        let meta = MessageMeta::of(event);
        let Self { framer, blocks, comment, .. } = self;
        blocks.clear();
        framer.frame(event, |packet| {
            match packet.content {
                Content::Handshake => meta::write_synthetic_comment(comment, Synthetic::Handshake),
                Content::Message { part } => meta::write_comment(comment, &meta, part),
            }
            push_epb(blocks, ts, packet.bytes, packet.orig_len, u32::from(packet.direction.bits()), comment);
            Ok::<(), io::Error>(())
        })?;
        self.out.write_all(&self.blocks)?;
        if self.flush_each {
            self.out.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    fn finish(&mut self, stats: &Stats) -> io::Result<()> {
        self.blocks.clear();
        push_isb(&mut self.blocks, unix_now_ns(), self.started_ns, stats);
        self.out.write_all(&self.blocks)?;
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    // Blocks are in the writer's byte order: these goldens are little-endian.
    #[cfg(target_endian = "little")]
    #[test]
    fn golden_section_header() {
        let mut buf = Vec::new();
        push_shb(&mut buf, "sockdump 9", Some("Linux"));
        assert_eq!(
            hex(&buf),
            concat!(
                "0a0d0d0a",
                "3c000000",
                "4d3c2b1a",
                "0100",
                "0000",
                "ffffffffffffffff",
                "0300",
                "0500",
                "4c696e7578000000",
                "0400",
                "0a00",
                "736f636b64756d702039",
                "0000",
                "00000000",
                "3c000000"
            )
        );
    }

    // Blocks are in the writer's byte order: these goldens are little-endian.
    #[cfg(target_endian = "little")]
    #[test]
    fn golden_interface() {
        let mut buf = Vec::new();
        push_idb(&mut buf, &Interface { linktype: 1, description: "d", filter: Some("--pid 1") });
        assert_eq!(
            hex(&buf),
            concat!(
                "01000000",
                "40000000",
                "0100",
                "0000",
                "00000400",
                "0200",
                "0800",
                "736f636b64756d70",
                "0300",
                "0100",
                "64000000",
                "0b00",
                "0800",
                "002d2d7069642031",
                "0900",
                "0100",
                "09000000",
                "00000000",
                "40000000"
            )
        );
    }

    // Blocks are in the writer's byte order: these goldens are little-endian.
    #[cfg(target_endian = "little")]
    #[test]
    fn golden_packet() {
        let mut buf = Vec::new();
        push_epb(&mut buf, 0x0000_0001_0000_0002, b"abcde", 9, 2, "c");
        assert_eq!(
            hex(&buf),
            concat!(
                "06000000",
                "3c000000",
                "00000000",
                "01000000",
                "02000000",
                "05000000",
                "09000000",
                "6162636465000000",
                "0100",
                "0100",
                "63000000",
                "0200",
                "0400",
                "02000000",
                "00000000",
                "3c000000"
            )
        );
    }

    // Blocks are in the writer's byte order: these goldens are little-endian.
    #[cfg(target_endian = "little")]
    #[test]
    fn golden_statistics() {
        let mut buf = Vec::new();
        let stats = Stats { captured: 3, lost: 1 };
        push_isb(&mut buf, 5, 4, &stats);
        let text = "3 messages captured, 1 lost";
        assert_eq!(text.len(), 27);
        assert_eq!(
            hex(&buf),
            [
                "05000000",
                "78000000",
                "00000000",
                "00000000",
                "05000000",
                "01001b00",
                &hex(text.as_bytes()),
                "00",
                "02000800",
                "0000000004000000",
                "03000800",
                "0000000005000000",
                "04000800",
                "0400000000000000",
                "05000800",
                "0100000000000000",
                "08000800",
                "0300000000000000",
                "00000000",
                "78000000",
            ]
            .concat()
        );
    }
}
