//! `--format pcap`: classic libpcap files with nanosecond timestamps, for
//! tools that read nothing newer. The packets are the same as in pcapng;
//! comments, direction flags and the final statistics have no place in
//! this format (use `--link user` to keep the metadata in each packet).

use std::io::{self, Write};

use sockdump_common::Event;

use super::framing::{Framer, SNAPLEN};
use super::pcapng::epoch_ns;
use super::{SinkOptions, Stats};
use crate::clock::WallClock;

/// The magic number of nanosecond-resolution pcap files.
pub const MAGIC_NANOS: u32 = 0xA1B2_3C4D;

/// The 24-byte file header.
pub fn push_header(buf: &mut Vec<u8>, linktype: u16) {
    buf.extend_from_slice(&MAGIC_NANOS.to_ne_bytes());
    buf.extend_from_slice(&2u16.to_ne_bytes());
    buf.extend_from_slice(&4u16.to_ne_bytes());
    // thiszone, sigfigs
    buf.extend_from_slice(&[0; 8]);
    buf.extend_from_slice(&SNAPLEN.to_ne_bytes());
    buf.extend_from_slice(&u32::from(linktype).to_ne_bytes());
}

/// One packet record.
pub fn push_record(buf: &mut Vec<u8>, timestamp_ns: u64, data: &[u8], orig_len: u32) {
    // Seconds fit 32 bits until 2106.
    let secs = u32::try_from(timestamp_ns / 1_000_000_000).unwrap_or(u32::MAX);
    let nanos = (timestamp_ns % 1_000_000_000) as u32;
    buf.extend_from_slice(&secs.to_ne_bytes());
    buf.extend_from_slice(&nanos.to_ne_bytes());
    // Packets are at most SNAPLEN bytes.
    buf.extend_from_slice(&(data.len() as u32).to_ne_bytes());
    buf.extend_from_slice(&orig_len.to_ne_bytes());
    buf.extend_from_slice(data);
}

pub struct PcapSink<W: Write> {
    out: W,
    framer: Framer,
    clock: WallClock,
    flush_each: bool,
    records: Vec<u8>,
}

impl<W: Write> PcapSink<W> {
    pub fn new(out: W, options: SinkOptions) -> Self {
        PcapSink {
            out,
            framer: Framer::new(options.link, options.ports),
            clock: options.clock,
            flush_each: options.flush_each,
            records: Vec::with_capacity(1 << 17),
        }
    }

    pub fn into_inner(self) -> W {
        self.out
    }
}

impl<W: Write> super::Sink for PcapSink<W> {
    fn begin(&mut self) -> io::Result<()> {
        self.records.clear();
        push_header(&mut self.records, self.framer.link().linktype());
        self.out.write_all(&self.records)?;
        self.out.flush()
    }

    fn write_event(&mut self, event: &Event<'_>) -> io::Result<()> {
        let ts = epoch_ns(self.clock, event.timestamp_ns);
        let Self { framer, records, .. } = self;
        records.clear();
        framer.frame(event, |packet| {
            push_record(records, ts, packet.bytes, packet.orig_len);
            Ok::<(), io::Error>(())
        })?;
        self.out.write_all(&self.records)?;
        if self.flush_each {
            self.out.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    fn finish(&mut self, _stats: &Stats) -> io::Result<()> {
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_endian = "little")]
    #[test]
    fn golden_header_and_record() {
        let mut buf = Vec::new();
        push_header(&mut buf, 147);
        push_record(&mut buf, 1_700_000_000_123_456_789, b"ab", 5);
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
