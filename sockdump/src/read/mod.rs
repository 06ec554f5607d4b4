//! `-r FILE`: reads a capture sockdump wrote and replays its messages into
//! any sink, as `tcpdump -r` does. [`CaptureFileReader`] turns a pcap or
//! pcapng stream ([`crate::file`]) into messages ([`reassembly`]);
//! [`FileSource`] applies the capture filters ([`crate::filter`]) and hands them to
//! the event pump.

mod reassembly;

use std::fs::File;
use std::io::Read;
use std::os::fd::BorrowedFd;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use sockdump_common::meta::OwnedMeta;
use sockdump_common::{DecodeError, Event};

use crate::capture::Filter;
use crate::file::{FileError, Packets};
use crate::filter::MessageFilter;
use crate::messages::note;
use crate::output::framing::LINKTYPE_ETHERNET;
use crate::pump::{Source, Waited};
use reassembly::Reassembly;

/// Why a file cannot be read back.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error(transparent)]
    File(#[from] FileError),
    #[error(
        "packet {packet} has no sockdump comment: this is not a capture sockdump wrote \
         with --format pcapng (only those, and --link user captures, carry the process metadata)"
    )]
    NoComment { packet: u64 },
    #[error("packet {packet}: {reason}")]
    BadPacket { packet: u64, reason: String },
    #[error("link type {0} is not one sockdump writes (1 Ethernet, 147 USER0, 231 D-Bus)")]
    LinkType(u32),
    #[error(
        "a classic pcap file with Ethernet framing holds no process metadata: capture with \
         --format pcapng, or with --link user, to read it back"
    )]
    PcapEthernet,
}

/// A message put back together: it owns its metadata and bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub meta: OwnedMeta,
    pub timestamp_ns: u64,
    pub data: Vec<u8>,
}

impl Message {
    /// The event as it was captured (timestamps already wall-clock: replay
    /// it with `WallClock::with_offset(0)`).
    pub fn event(&self) -> Event<'_> {
        self.meta.borrow().to_event(self.timestamp_ns, &self.data)
    }
}

/// Reads sockdump messages from a pcap or pcapng stream.
pub struct CaptureFileReader<R: Read> {
    packets: Packets<R>,
    reassembly: Reassembly,
    /// Packets read so far.
    read: u64,
}

impl CaptureFileReader<File> {
    pub fn open(path: &Path) -> Result<Self, ReadError> {
        Self::new(File::open(path).map_err(FileError::from)?)
    }
}

impl<R: Read> CaptureFileReader<R> {
    pub fn new(input: R) -> Result<Self, ReadError> {
        let packets = Packets::open(input)?;
        if let Packets::Pcap(pcap) = &packets {
            if pcap.linktype() == u32::from(LINKTYPE_ETHERNET) {
                return Err(ReadError::PcapEthernet);
            }
        }
        Ok(CaptureFileReader { packets, reassembly: Reassembly::default(), read: 0 })
    }

    /// The next message in the file, or `None` at its end.
    pub fn next_message(&mut self) -> Result<Option<Message>, ReadError> {
        loop {
            if let Some(message) = self.reassembly.pop() {
                return Ok(Some(message));
            }
            let Some(packet) = self.packets.next_packet()? else {
                return Ok(self.reassembly.finish());
            };
            self.read += 1;
            self.reassembly.add(self.read, &packet)?;
        }
    }

    /// Messages the capture reported lost (pcapng statistics).
    pub fn lost(&self) -> u64 {
        self.packets.lost()
    }

    /// Messages some of whose packets were missing from the file.
    pub fn incomplete(&self) -> u64 {
        self.reassembly.incomplete()
    }

    /// Packets read so far.
    pub fn packets(&self) -> u64 {
        self.read
    }
}

/// How many messages one drain hands on before the pump looks at its
/// limits and stop requests again.
const BATCH: usize = 1024;

/// A capture file as an event source, with the `-r` filter applied.
pub struct FileSource {
    path: std::path::PathBuf,
    reader: CaptureFileReader<File>,
    filter: MessageFilter,
    ended: bool,
}

impl FileSource {
    pub fn open(path: &Path, filter: Filter) -> Result<Self> {
        let reader =
            CaptureFileReader::open(path).with_context(|| format!("cannot read {}", path.display()))?;
        let filter = MessageFilter {
            pid: filter.pid,
            comm: filter.comm,
            sock: filter.sock_prefix,
            uid: filter.uid,
            containers: filter.containers,
        };
        Ok(FileSource { path: path.to_path_buf(), reader, filter, ended: false })
    }

    /// What the file told about itself, once read: losses it recorded,
    /// messages it cut, and with `verbose` what it held.
    pub fn report(&self, shown: u64, verbose: bool) {
        let reader = &self.reader;
        if reader.lost() > 0 {
            note(format_args!(
                "sockdump: the capture lost {} messages (the kernel ring buffer was full)",
                reader.lost()
            ));
        }
        if reader.incomplete() > 0 {
            note(format_args!(
                "sockdump: {} messages miss some of their packets in this file",
                reader.incomplete()
            ));
        }
        if reader.packets() == 0 {
            note(format_args!("sockdump: {} holds no packets", self.path.display()));
        } else if verbose {
            note(format_args!(
                "sockdump: read {} packets from {}; {shown} messages matched and were written",
                reader.packets(),
                self.path.display()
            ));
        }
    }
}

impl Source for FileSource {
    fn drain(&mut self, handle: &mut dyn FnMut(Result<Event<'_>, DecodeError>) -> bool) -> Result<()> {
        for _ in 0..BATCH {
            let next =
                self.reader.next_message().with_context(|| format!("cannot read {}", self.path.display()))?;
            let Some(message) = next else {
                self.ended = true;
                return Ok(());
            };
            let event = message.event();
            if self.filter.matches(&event) && !handle(Ok(event)) {
                return Ok(());
            }
        }
        Ok(())
    }

    fn wait(&mut self, _: Duration, _: Option<BorrowedFd<'_>>) -> Result<Waited> {
        Ok(if self.ended { Waited::Ended } else { Waited::Ready })
    }

    fn lost(&self) -> Result<u64> {
        Ok(self.reader.lost())
    }

    /// A file has nothing in flight: a stop ends it at once.
    fn stop_cutoff(&mut self) -> Option<u64> {
        None
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use pcap_file::pcapng::blocks::{
        ENHANCED_PACKET_BLOCK, INTERFACE_DESCRIPTION_BLOCK, SECTION_HEADER_BLOCK,
    };
    use sockdump_common::meta::{Direction, MessageMeta};
    use sockdump_common::user0;

    use super::*;
    use crate::clock::WallClock;
    use crate::file::pcapng::{self, BYTE_ORDER_MAGIC};
    use crate::output::framing::{Link, PortMap};
    use crate::output::pcap::PcapSink;
    use crate::output::pcapng::PcapngSink;
    use crate::output::Stats;
    use crate::output::{Sink, SinkOptions};
    use sockdump_common::{abi, EventFlags, SockType, SocketName};

    fn options(link: Link) -> SinkOptions {
        SinkOptions {
            link,
            ports: PortMap::default(),
            clock: WallClock::with_offset(1_700_000_000_000_000_000),
            flush_each: false,
            filter: Some("--sock /tmp".into()),
        }
    }

    pub(crate) fn events(big: &[u8]) -> Vec<Event<'_>> {
        let base = Event {
            timestamp_ns: 5_000_000_123,
            sock_ino: 100,
            peer_ino: 200,
            pid: 42,
            tid: 43,
            peer_pid: 7,
            len: 5,
            sock_type: SockType::Stream,
            flags: EventFlags::default(),
            comm: b"my comm",
            path: SocketName::Unnamed,
            peer_path: SocketName::Path(b"/tmp/a b.sock"),
            data: b"hello",
            rx_sock: 0,
            rx_pos: 0,
            reader: sockdump_common::Reader::Unknown,
            process: None,
            context: Default::default(),
        };
        let mut reply = base.clone();
        reply.sock_ino = 200;
        reply.peer_ino = 100;
        reply.path = base.peer_path;
        reply.peer_path = SocketName::Unnamed;
        reply.data = b"world!";
        reply.len = 6;
        reply.timestamp_ns += 1000;
        let mut cut = base.clone();
        cut.data = &big[..big.len().min(1000)];
        cut.len = 5000;
        cut.flags = EventFlags(abi::flag::TRUNC_SIZE);
        let mut large = base.clone();
        large.data = big;
        large.len = big.len() as u32 + 100_000;
        large.flags = EventFlags(abi::flag::TRUNC_SIZE);
        let mut dgram = base.clone();
        dgram.sock_type = SockType::Dgram;
        dgram.sock_ino = 300;
        dgram.peer_ino = 0;
        dgram.flags = EventFlags(abi::flag::PEER_IS_DEST);
        dgram.peer_path = SocketName::Abstract(b"logger\0x");
        let mut empty = dgram.clone();
        empty.data = b"";
        empty.len = 0;
        vec![base, reply, cut, large, dgram, empty]
    }

    fn write_all(sink: &mut dyn Sink, events: &[Event<'_>]) {
        sink.begin().unwrap();
        for ev in events {
            sink.write_event(ev).unwrap();
        }
        sink.finish(&Stats { captured: events.len() as u64, lost: Some(3) }).unwrap();
    }

    fn read_back(bytes: &[u8]) -> (Vec<Message>, u64) {
        let mut reader = CaptureFileReader::new(bytes).unwrap();
        let mut out = Vec::new();
        while let Some(m) = reader.next_message().unwrap() {
            out.push(m);
        }
        assert_eq!(reader.incomplete(), 0);
        (out, reader.lost())
    }

    fn expected(ev: &Event<'_>) -> Message {
        Message {
            meta: OwnedMeta::of(&sockdump_common::meta::MessageMeta::of(ev)),
            timestamp_ns: (1_700_000_000_000_000_000 + i128::from(ev.timestamp_ns)) as u64,
            data: ev.data.to_vec(),
        }
    }

    #[test]
    fn pcapng_round_trips_every_message() {
        let big: Vec<u8> = (0..65536u32).map(|i| (i % 251) as u8).collect();
        let evs = events(&big);
        for link in [Link::Ethernet, Link::User] {
            let mut sink = PcapngSink::new(Vec::new(), options(link));
            write_all(&mut sink, &evs);
            let (messages, lost) = read_back(&sink.into_inner());
            assert_eq!(lost, 3);
            assert_eq!(messages.len(), evs.len(), "{link:?}");
            for (m, ev) in messages.iter().zip(&evs) {
                assert_eq!(*m, expected(ev), "{link:?}");
                assert_eq!(m.event().len, ev.len);
            }
        }
    }

    #[test]
    fn dbus_messages_round_trip_from_their_own_interface() {
        use crate::file::Packets;
        use crate::output::framing::dbus::{piece_event, tests::message};
        use crate::output::framing::LINKTYPE_DBUS;
        let (hello, reply) = (message(false, 1, 0), message(true, 1, 20));
        let pipelined = [b"BEGIN\r\n".as_slice(), &hello].concat();
        let base = events(b"");
        let client = |data| Event { data, len: data.len() as u32, ..base[0].clone() };
        let server = |data| Event { data, len: data.len() as u32, ..base[1].clone() };
        let evs = [
            client(b"\0"),
            client(b"AUTH EXTERNAL 30\r\n"),
            server(b"OK 0123456789abcdef\r\n"),
            client(&pipelined),
            server(&reply),
        ];
        let begin = piece_event(&evs[3], b"BEGIN\r\n", 7);
        let hello_event = piece_event(&evs[3], &hello, hello.len() as u32);
        let want = [&evs[0], &evs[1], &evs[2], &begin, &hello_event, &evs[4]].map(expected);
        for link in [Link::Ethernet, Link::User] {
            let mut sink = PcapngSink::new(Vec::new(), options(link));
            write_all(&mut sink, &evs);
            let bytes = sink.into_inner();
            assert_eq!(read_back(&bytes).0, want, "{link:?}");
            let mut packets = Packets::open(&bytes[..]).unwrap();
            let mut dbus = Vec::new();
            while let Some(packet) = packets.next_packet().unwrap() {
                if packet.linktype == u32::from(LINKTYPE_DBUS) {
                    dbus.push(packet.data.to_vec());
                }
            }
            assert_eq!(dbus, [hello.clone(), reply.clone()], "{link:?}");
        }
    }

    #[test]
    fn pcap_user0_round_trips_and_pcap_ethernet_is_refused() {
        let big = vec![1u8; 100];
        let evs = events(&big);
        let mut sink = PcapSink::new(Vec::new(), options(Link::User));
        write_all(&mut sink, &evs);
        let (messages, lost) = read_back(&sink.into_inner());
        assert_eq!(lost, 0);
        assert_eq!(messages, evs.iter().map(expected).collect::<Vec<_>>());

        let mut sink = PcapSink::new(Vec::new(), options(Link::Ethernet));
        write_all(&mut sink, &evs);
        let bytes = sink.into_inner();
        let err = CaptureFileReader::new(&bytes[..]).err().unwrap();
        assert!(matches!(err, ReadError::PcapEthernet), "{err}");
    }

    #[test]
    fn foreign_files_are_refused_clearly() {
        let err = CaptureFileReader::new(&b"GET / HTTP/1.1\r\n"[..]).err().unwrap();
        assert!(err.to_string().contains("not a pcap or pcapng file"), "{err}");
        assert!(CaptureFileReader::new(&b""[..]).is_err());
        // A pcapng with an Ethernet packet but no comment.
        let mut file = Vec::new();
        pcapng::push_shb(&mut file, "other", None);
        let eth0 = pcapng::Interface { linktype: 1, snaplen: 0, name: "eth0", description: "", filter: None };
        pcapng::push_idb(&mut file, &eth0);
        let mut epb = Vec::new();
        pcapng::push_epb(&mut epb, 0, 1, &[0u8; 60], 60, 0, "hello");
        file.extend_from_slice(&epb);
        let mut reader = CaptureFileReader::new(&file[..]).unwrap();
        let err = reader.next_message().unwrap_err();
        assert!(matches!(err, ReadError::NoComment { packet: 1 }), "{err}");
        // Cut short anywhere: an error or fewer messages, never a panic.
        let big = vec![2u8; 70000];
        let mut sink = PcapngSink::new(Vec::new(), options(Link::Ethernet));
        write_all(&mut sink, &events(&big));
        let bytes = sink.into_inner();
        for cut in (0..bytes.len()).step_by(97) {
            if let Ok(mut reader) = CaptureFileReader::new(&bytes[..cut]) {
                while let Ok(Some(_)) = reader.next_message() {}
            }
        }
    }

    /// Appends a big-endian pcapng block.
    fn block(out: &mut Vec<u8>, kind: u32, body: &[u8]) {
        let len = (12 + body.len().div_ceil(4) * 4) as u32;
        out.extend_from_slice(&kind.to_be_bytes());
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(body);
        out.resize(out.len() + (4 - body.len() % 4) % 4, 0);
        out.extend_from_slice(&len.to_be_bytes());
    }

    /// A big-endian option, padded.
    fn option(code: u16, value: &[u8]) -> Vec<u8> {
        let mut out = [&code.to_be_bytes()[..], &(value.len() as u16).to_be_bytes(), value].concat();
        out.resize(out.len().div_ceil(4) * 4, 0);
        out
    }

    /// A big-endian section header block.
    fn section() -> Vec<u8> {
        let mut file = Vec::new();
        let shb = [&BYTE_ORDER_MAGIC.to_be_bytes()[..], &[0, 1, 0, 0], &[0xff; 8]].concat();
        block(&mut file, SECTION_HEADER_BLOCK, &shb);
        file
    }

    /// The body of a packet block on interface 0 at `units` of its resolution.
    fn epb(units: u64, packet: &[u8]) -> Vec<u8> {
        let mut epb = 0u32.to_be_bytes().to_vec();
        epb.extend_from_slice(&((units >> 32) as u32).to_be_bytes());
        epb.extend_from_slice(&(units as u32).to_be_bytes());
        epb.extend_from_slice(&(packet.len() as u32).to_be_bytes());
        epb.extend_from_slice(&(packet.len() as u32).to_be_bytes());
        epb.extend_from_slice(packet);
        epb
    }

    /// A USER0 packet of the first test event.
    fn user0_packet() -> Vec<u8> {
        let big = vec![0u8; 10];
        let evs = events(&big);
        let mut packet = Vec::new();
        user0::write_header(&mut packet, &MessageMeta::of(&evs[0]), Direction::Outbound);
        packet.extend_from_slice(evs[0].data);
        packet
    }

    /// A big-endian pcapng, as a big-endian machine writes it: USER0, the
    /// default microsecond resolution, and a second section.
    #[test]
    fn reads_big_endian_sections() {
        let packet = user0_packet();
        let mut file = Vec::new();
        for units in [1_000_000, 1_000_001] {
            file.extend_from_slice(&section());
            let idb = [&147u16.to_be_bytes()[..], &[0, 0], &0u32.to_be_bytes()].concat();
            block(&mut file, INTERFACE_DESCRIPTION_BLOCK, &idb);
            block(&mut file, ENHANCED_PACKET_BLOCK, &epb(units, &packet));
        }
        let (messages, _) = read_back(&file);
        assert_eq!(messages.len(), 2);
        assert_eq!(messages[0].timestamp_ns, 1_000_000_000);
        assert_eq!(messages[1].timestamp_ns, 1_000_001_000);
        let big = vec![0u8; 10];
        assert_eq!(messages[1].meta, OwnedMeta::of(&MessageMeta::of(&events(&big)[0])));
        assert_eq!(messages[1].data, b"hello");
    }

    /// Timestamps in any resolution the reader supports, and an offset.
    #[test]
    fn timestamp_resolutions() {
        let packet = user0_packet();
        let time = |tsresol: u8, tsoffset: i64, units: u64| {
            let mut file = section();
            let mut idb = [&147u16.to_be_bytes()[..], &[0, 0], &0u32.to_be_bytes()].concat();
            idb.extend_from_slice(&option(9, &[tsresol]));
            idb.extend_from_slice(&option(14, &tsoffset.to_be_bytes()));
            block(&mut file, INTERFACE_DESCRIPTION_BLOCK, &idb);
            block(&mut file, ENHANCED_PACKET_BLOCK, &epb(units, &packet));
            let mut reader = CaptureFileReader::new(&file[..])?;
            reader.next_message().map(|m| m.map(|m| m.timestamp_ns))
        };
        assert_eq!(time(9, 0, 123).unwrap(), Some(123));
        assert_eq!(time(6, 0, 123).unwrap(), Some(123_000));
        assert_eq!(time(0x80 | 10, 0, 1024).unwrap(), Some(1_000_000_000));
        assert_eq!(time(9, 2, 5).unwrap(), Some(2_000_000_005));
        // Finer than nanoseconds: pcap-file refuses the interface.
        let err = time(12, 0, 123_456).unwrap_err();
        assert!(err.to_string().contains("the file is damaged"), "{err}");
    }
}
