//! `--format pcap`: classic libpcap files with nanosecond timestamps, for
//! tools that read nothing newer. The packets are the same as in pcapng;
//! comments, direction flags and the final statistics have no place in
//! this format (use `--link user` to keep the metadata in each packet).
//! The records are `crate::file::pcap`'s.

use std::io::{self, Write};

use sockdump_common::Event;

use super::framing::{Framer, SNAPLEN};
use super::{epoch_ns, SinkOptions, Stats};
use crate::clock::WallClock;
use crate::file::pcap::{push_record, write_header};

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
        self.framer.start_file();
        write_header(&mut self.out, self.framer.link().linktype(), SNAPLEN)?;
        self.out.flush()
    }

    fn write_event(&mut self, event: &Event<'_>) -> io::Result<()> {
        let ts = epoch_ns(self.clock, event.timestamp_ns);
        let Self { framer, records, .. } = self;
        records.clear();
        framer.frame(event, |packet| push_record(records, ts, packet.bytes, packet.orig_len))?;
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
