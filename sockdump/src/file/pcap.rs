//! Classic libpcap files, with nanosecond timestamps when sockdump writes
//! them. Both ways through `pcap-file`.

use std::io::{self, Read, Write};
use std::time::Duration;

use pcap_file::pcap::{PcapHeader, PcapPacket, PcapReader, PcapTsResolution, PcapWriteError};
use pcap_file::{DataLink, Endianness};
use sockdump_common::bytes::NativeEndian;

use super::{damaged, FileError, RawPacket, MAX_BLOCK};

/// Magic numbers of microsecond and nanosecond files, in the writer's
/// byte order.
const MAGIC_MICROS: u32 = 0xA1B2_C3D4;
const MAGIC_NANOS: u32 = 0xA1B2_3C4D;
/// The header's link type field keeps FCS details in its upper bits.
const LINKTYPE_MASK: u32 = 0x0fff_ffff;

/// Whether a file starting with these bytes is a pcap file, in either byte order.
pub fn starts_file(magic: [u8; 4]) -> bool {
    [u32::from_le_bytes(magic), u32::from_be_bytes(magic)]
        .iter()
        .any(|m| [MAGIC_MICROS, MAGIC_NANOS].contains(m))
}

fn io_error(err: PcapWriteError) -> io::Error {
    match err {
        PcapWriteError::Io(e) | PcapWriteError::FieldWriteFailed(_, e) => e,
        other => io::Error::new(io::ErrorKind::InvalidInput, other),
    }
}

/// The file header: nanosecond timestamps, this machine's byte order.
pub fn write_header(out: &mut impl Write, linktype: u16, snaplen: u32) -> io::Result<()> {
    let header = PcapHeader {
        snaplen,
        datalink: DataLink::from(u32::from(linktype)),
        ts_resolution: PcapTsResolution::NanoSecond,
        endianness: Endianness::native(),
        ..Default::default()
    };
    header.write_to(out).map(drop).map_err(io_error)
}

/// The last time a pcap file holds: seconds are 32 bits (until 2106).
const LAST_TIME: Duration = Duration::new(u32::MAX as u64, 999_999_999);

/// Appends one packet record.
pub fn push_record(buf: &mut Vec<u8>, timestamp_ns: u64, data: &[u8], orig_len: u32) -> io::Result<()> {
    let timestamp = Duration::from_nanos(timestamp_ns).min(LAST_TIME);
    let packet = PcapPacket::new(timestamp, orig_len, data)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    packet
        .as_raw_packet(PcapTsResolution::NanoSecond)
        .write_to::<_, NativeEndian>(buf)
        .map(drop)
        .map_err(io_error)
}

/// The packets of a pcap file.
pub struct Packets<R: Read> {
    reader: PcapReader<R>,
    /// The current packet's bytes.
    data: Vec<u8>,
}

impl<R: Read> Packets<R> {
    pub fn new(input: R) -> Result<Self, FileError> {
        let reader = PcapReader::with_capacity(input, MAX_BLOCK)
            .map_err(|e| damaged(&e, "the pcap file header is cut short"))?;
        Ok(Packets { reader, data: Vec::new() })
    }

    pub fn linktype(&self) -> u32 {
        u32::from(self.reader.header().datalink) & LINKTYPE_MASK
    }

    pub fn next_packet(&mut self) -> Result<Option<RawPacket<'_>>, FileError> {
        let linktype = self.linktype();
        let packet = match self.reader.next_packet() {
            None => return Ok(None),
            Some(packet) => {
                packet.map_err(|e| damaged(&e, "the last packet is cut short, or longer than 16 MiB"))?
            }
        };
        let timestamp_ns = u64::try_from(packet.timestamp().as_nanos()).unwrap_or(u64::MAX);
        self.data.clear();
        self.data.extend_from_slice(packet.data());
        Ok(Some(RawPacket { linktype, timestamp_ns, data: &self.data, comment: None }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_endian = "little")]
    #[test]
    fn golden_header_and_record() {
        let mut buf = Vec::new();
        write_header(&mut buf, 147, 262_144).unwrap();
        push_record(&mut buf, 1_700_000_000_123_456_789, b"ab", 5).unwrap();
        let hex: String = buf.iter().map(|x| format!("{x:02x}")).collect();
        assert_eq!(
            hex,
            concat!(
                "4d3cb2a1", "0200", "0400", "00000000", "00000000", "00000400", "93000000", "00f15365",
                "15cd5b07", "02000000", "05000000", "6162"
            )
        );
    }
}
