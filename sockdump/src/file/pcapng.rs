//! pcapng, the format Wireshark writes: the blocks sockdump writes (one
//! section, an interface and one for D-Bus, a packet block per packet with a comment and
//! direction flags, statistics at the end; see `docs/PCAPNG.md`), and the
//! packets of any pcapng file, read through `pcap-file`.
//!
//! Written by hand rather than with the crate: these few fixed layouts go
//! into a reused buffer, every block of a message in one write, and the
//! crate's writer costs 20-80% more CPU per message at 64 B and 1 KiB
//! (BENCHMARKS.md).

use std::io::Read;

use pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketOption;
use pcap_file::pcapng::blocks::interface_statistics::InterfaceStatisticsOption;
use pcap_file::pcapng::blocks::opt_common::{CommonOption, COMMENT};
use pcap_file::pcapng::blocks::{
    ENHANCED_PACKET_BLOCK, INTERFACE_DESCRIPTION_BLOCK, INTERFACE_STATISTIC_BLOCK, SECTION_HEADER_BLOCK,
};
use pcap_file::pcapng::{Block, PcapNgReader};
use sockdump_common::meta;

use super::{damaged, FileError, RawPacket, MAX_BLOCK};

// Block types and the comment option come from the crate that reads the
// files; the option codes it keeps private are here.
pub(crate) const BYTE_ORDER_MAGIC: u32 = 0x1A2B_3C4D;
const OPT_ENDOFOPT: u16 = 0;
const SHB_OS: u16 = 3;
const SHB_USERAPPL: u16 = 4;
const IF_NAME: u16 = 2;
const IF_DESCRIPTION: u16 = 3;
const IF_TSRESOL: u16 = 9;
const IF_FILTER: u16 = 11;
const EPB_FLAGS: u16 = 2;
const ISB_STARTTIME: u16 = 2;
const ISB_ENDTIME: u16 = 3;
const ISB_IFRECV: u16 = 4;
const ISB_IFDROP: u16 = 5;
const ISB_USRDELIV: u16 = 8;

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
    let start = begin_block(buf, SECTION_HEADER_BLOCK);
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
    pub snaplen: u32,
    pub name: &'a str,
    pub description: &'a str,
    /// The capture filter in sockdump's option syntax, if any.
    pub filter: Option<&'a str>,
}

/// Interface Description Block with nanosecond timestamps.
pub fn push_idb(buf: &mut Vec<u8>, interface: &Interface<'_>) {
    let start = begin_block(buf, INTERFACE_DESCRIPTION_BLOCK);
    push_u16(buf, interface.linktype);
    push_u16(buf, 0);
    push_u32(buf, interface.snaplen);
    push_option(buf, IF_NAME, interface.name.as_bytes());
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

/// Enhanced Packet Block on `interface` (the index of its description block).
pub fn push_epb(
    buf: &mut Vec<u8>,
    interface: u32,
    timestamp_ns: u64,
    data: &[u8],
    orig_len: u32,
    flags: u32,
    comment: &str,
) {
    let start = begin_block(buf, ENHANCED_PACKET_BLOCK);
    push_u32(buf, interface);
    buf.extend_from_slice(&timestamp_words(timestamp_ns));
    // Packets are at most SNAPLEN bytes.
    push_u32(buf, data.len() as u32);
    push_u32(buf, orig_len);
    buf.extend_from_slice(data);
    pad4(buf);
    push_option(buf, COMMENT, comment.as_bytes());
    if flags != 0 {
        push_option(buf, EPB_FLAGS, &flags.to_ne_bytes());
    }
    end_options(buf);
    end_block(buf, start);
}

/// Interface Statistics Block for interface 0; losses not known are left out.
pub fn push_isb(buf: &mut Vec<u8>, now_ns: u64, started_ns: u64, captured: u64, lost: Option<u64>) {
    let start = begin_block(buf, INTERFACE_STATISTIC_BLOCK);
    push_u32(buf, 0);
    buf.extend_from_slice(&timestamp_words(now_ns));
    let comment = match lost {
        Some(lost) => format!("{captured} messages captured, {lost} lost"),
        None => format!("{captured} messages captured"),
    };
    push_option(buf, COMMENT, comment.as_bytes());
    push_option(buf, ISB_STARTTIME, &timestamp_words(started_ns));
    push_option(buf, ISB_ENDTIME, &timestamp_words(now_ns));
    if let Some(lost) = lost {
        push_option(buf, ISB_IFRECV, &captured.saturating_add(lost).to_ne_bytes());
        push_option(buf, ISB_IFDROP, &lost.to_ne_bytes());
    }
    push_option(buf, ISB_USRDELIV, &captured.to_ne_bytes());
    end_options(buf);
    end_block(buf, start);
}

/// Whether a file starting with these bytes is a pcapng file.
pub fn starts_file(magic: [u8; 4]) -> bool {
    // The block type reads the same in either byte order.
    magic == SECTION_HEADER_BLOCK.to_be_bytes()
}

/// The packets of a pcapng file, with the losses its statistics report.
pub struct Packets<R: Read> {
    reader: PcapNgReader<R>,
    lost: u64,
    /// The current packet's bytes and sockdump comment.
    data: Vec<u8>,
    comment: String,
}

impl<R: Read> Packets<R> {
    pub fn new(input: R) -> Result<Self, FileError> {
        let reader = PcapNgReader::with_capacity(input, MAX_BLOCK)
            .map_err(|e| damaged(&e, "the section header is cut short"))?;
        Ok(Packets { reader, lost: 0, data: Vec::new(), comment: String::new() })
    }

    pub fn lost(&self) -> u64 {
        self.lost
    }

    /// Reads blocks up to the next packet. Its bytes are copied out: the
    /// crate lends them only until its next block.
    pub fn next_packet(&mut self) -> Result<Option<RawPacket<'_>>, FileError> {
        let (linktype, timestamp_ns, commented) = loop {
            let Some(block) = self.reader.next_block() else { return Ok(None) };
            let (block, state) =
                block.map_err(|e| damaged(&e, "the last block is cut short, or longer than 16 MiB"))?;
            // The crate checks the interface a packet block names; a simple
            // packet block is on interface 0, which may not be described.
            let linktype = |id: u32| state.interfaces().get(id as usize).map(|i| u32::from(i.linktype));
            match block {
                Block::EnhancedPacket(packet) => {
                    self.data.clear();
                    self.data.extend_from_slice(&packet.data);
                    self.comment.clear();
                    let comment = packet.options.iter().find_map(|option| match option {
                        EnhancedPacketOption::Common(CommonOption::Comment(c))
                            if meta::is_sockdump_comment(c) =>
                        {
                            Some(c)
                        }
                        _ => None,
                    });
                    if let Some(comment) = comment {
                        self.comment.push_str(comment);
                    }
                    let ns = u64::try_from(packet.timestamp.as_nanos()).unwrap_or(u64::MAX);
                    break (linktype(packet.interface_id), ns, comment.is_some());
                }
                // Simple packet blocks carry no comments or timestamps.
                Block::SimplePacket(packet) => {
                    self.data.clear();
                    self.data.extend_from_slice(&packet.data);
                    break (linktype(0), 0, false);
                }
                Block::InterfaceStatistics(statistics) => {
                    for option in &statistics.options {
                        if let InterfaceStatisticsOption::IsbIfDrop(dropped) = option {
                            self.lost = self.lost.saturating_add(*dropped);
                        }
                    }
                }
                // Sections, interfaces (the crate keeps them), name
                // resolution and the rest say nothing else we need.
                _ => {}
            }
        };
        let linktype = linktype
            .ok_or_else(|| FileError::Damaged("a packet names an interface that is not described".into()))?;
        Ok(Some(RawPacket {
            linktype,
            timestamp_ns,
            data: &self.data,
            comment: commented.then_some(self.comment.as_str()),
        }))
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
        push_idb(
            &mut buf,
            &Interface {
                linktype: 1,
                snaplen: 262_144,
                name: "sockdump",
                description: "d",
                filter: Some("--pid 1"),
            },
        );
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
        push_epb(&mut buf, 1, 0x0000_0001_0000_0002, b"abcde", 9, 2, "c");
        assert_eq!(
            hex(&buf),
            concat!(
                "06000000",
                "3c000000",
                "01000000",
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
        push_isb(&mut buf, 5, 4, 3, Some(1));
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
