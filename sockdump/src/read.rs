//! `-r FILE`: reads a capture sockdump wrote and replays its messages into
//! any sink, as `tcpdump -r` does. The metadata comes from the pcapng
//! comments (Ethernet framing) or the USER0 headers (`--link user`, pcap or
//! pcapng); messages split over several packets are joined again.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::os::fd::BorrowedFd;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use sockdump_common::meta::{self, Comment, OwnedMeta};
use sockdump_common::{user0, DecodeError, Event, SocketName};

use crate::capture::Filter;
use crate::messages::note;
use crate::output::framing::{self, LINKTYPE_ETHERNET, LINKTYPE_USER0};
use crate::output::pcapng::{
    BLOCK_EPB, BLOCK_IDB, BLOCK_ISB, BLOCK_SHB, BLOCK_SPB, BYTE_ORDER_MAGIC, IF_TSOFFSET, IF_TSRESOL,
    ISB_IFDROP, OPT_COMMENT,
};
use crate::pump::{Source, Waited};

/// Why a file cannot be read back.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("not a pcap or pcapng file (it starts with {0:02x?})")]
    NotCapture([u8; 4]),
    #[error("the file is damaged: {0}")]
    Damaged(String),
    #[error(
        "packet {packet} has no sockdump comment: this is not a capture sockdump wrote \
         with --format pcapng (only those, and --link user captures, carry the process metadata)"
    )]
    NoComment { packet: u64 },
    #[error("packet {packet}: {reason}")]
    BadPacket { packet: u64, reason: String },
    #[error("link type {0} is not one sockdump writes (1 Ethernet, 147 USER0)")]
    LinkType(u32),
    #[error(
        "a classic pcap file with Ethernet framing holds no process metadata: capture with \
         --format pcapng, or with --link user, to read it back"
    )]
    PcapEthernet,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endian {
    Little,
    Big,
}

impl Endian {
    fn u16(self, b: &[u8]) -> u16 {
        let raw = [b[0], b[1]];
        match self {
            Endian::Little => u16::from_le_bytes(raw),
            Endian::Big => u16::from_be_bytes(raw),
        }
    }

    fn u32(self, b: &[u8]) -> u32 {
        let raw = [b[0], b[1], b[2], b[3]];
        match self {
            Endian::Little => u32::from_le_bytes(raw),
            Endian::Big => u32::from_be_bytes(raw),
        }
    }

    fn u64(self, b: &[u8]) -> u64 {
        let mut raw = [0; 8];
        raw.copy_from_slice(&b[..8]);
        match self {
            Endian::Little => u64::from_le_bytes(raw),
            Endian::Big => u64::from_be_bytes(raw),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Interface {
    linktype: u32,
    /// `if_tsresol`: bit 7 clear = 10^-n seconds, set = 2^-n seconds.
    tsresol: u8,
    /// `if_tsoffset` in seconds.
    tsoffset: i64,
}

impl Interface {
    fn nanoseconds(&self, units: u64) -> u64 {
        let units = u128::from(units);
        let n = u32::from(self.tsresol & 0x7f);
        let ns = if self.tsresol & 0x80 != 0 {
            (units * 1_000_000_000) >> n.min(127)
        } else if n <= 9 {
            units * 10u128.pow(9 - n)
        } else {
            units / 10u128.pow((n - 9).min(38))
        };
        let ns = ns as i128 + i128::from(self.tsoffset) * 1_000_000_000;
        u64::try_from(ns.max(0)).unwrap_or(u64::MAX)
    }
}

enum Container {
    Pcapng { endian: Endian, interfaces: Vec<Interface> },
    Pcap { endian: Endian, nanos: bool, linktype: u32 },
}

/// A message put back together.
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

/// One packet as the container holds it; `data` indexes `CaptureReader::block`.
struct RawPacket {
    linktype: u32,
    timestamp_ns: u64,
    data: std::ops::Range<usize>,
    comments: Vec<String>,
}

struct Pending {
    message: Message,
    /// The part index expected next.
    next_part: u32,
    parts: u32,
    /// Some earlier part was missing.
    damaged: bool,
}

/// Reads sockdump messages from a pcap or pcapng stream.
pub struct CaptureReader<R: Read> {
    input: R,
    container: Container,
    pending: Option<Pending>,
    /// Messages put together, in file order.
    ready: VecDeque<Message>,
    packets: u64,
    /// Messages the capture reported lost (pcapng statistics).
    pub lost: u64,
    /// Messages some of whose packets were missing from the file.
    pub incomplete: u64,
    block: Vec<u8>,
}

const MAX_BLOCK: usize = 16 << 20;

fn damaged(what: impl Into<String>) -> ReadError {
    ReadError::Damaged(what.into())
}

impl<R: Read> CaptureReader<R> {
    pub fn new(mut input: R) -> Result<Self, ReadError> {
        let mut magic = [0u8; 4];
        input.read_exact(&mut magic).map_err(|e| match e.kind() {
            io::ErrorKind::UnexpectedEof => ReadError::NotCapture(magic),
            _ => ReadError::Io(e),
        })?;
        let container = match magic {
            [0x0a, 0x0d, 0x0d, 0x0a] => {
                // The byte order is known once the section header is read.
                let mut reader =
                    Self::with(input, Container::Pcapng { endian: Endian::Little, interfaces: Vec::new() });
                let mut len = [0u8; 4];
                reader.input.read_exact(&mut len).map_err(|_| damaged("the section header is cut short"))?;
                reader.read_section(len)?;
                return Ok(reader);
            }
            [0xd4, 0xc3, 0xb2, 0xa1] => (Endian::Little, false),
            [0x4d, 0x3c, 0xb2, 0xa1] => (Endian::Little, true),
            [0xa1, 0xb2, 0xc3, 0xd4] => (Endian::Big, false),
            [0xa1, 0xb2, 0x3c, 0x4d] => (Endian::Big, true),
            other => return Err(ReadError::NotCapture(other)),
        };
        let (endian, nanos) = container;
        let mut header = [0u8; 20];
        input.read_exact(&mut header).map_err(|_| damaged("the pcap file header is cut short"))?;
        let linktype = endian.u32(&header[16..20]) & 0x0fff_ffff;
        if linktype == u32::from(LINKTYPE_ETHERNET) {
            return Err(ReadError::PcapEthernet);
        }
        Ok(Self::with(input, Container::Pcap { endian, nanos, linktype }))
    }

    fn with(input: R, container: Container) -> Self {
        CaptureReader {
            input,
            container,
            pending: None,
            ready: VecDeque::new(),
            packets: 0,
            lost: 0,
            incomplete: 0,
            block: Vec::new(),
        }
    }

    /// The next message in the file, or `None` at its end.
    pub fn next_message(&mut self) -> Result<Option<Message>, ReadError> {
        loop {
            if let Some(message) = self.ready.pop_front() {
                return Ok(Some(message));
            }
            let packet = match self.container {
                Container::Pcapng { .. } => self.next_pcapng_packet()?,
                Container::Pcap { .. } => self.next_pcap_packet()?,
            };
            let Some(packet) = packet else {
                self.flush_pending();
                return Ok(self.ready.pop_front());
            };
            self.packets += 1;
            // assemble() needs &mut self while it reads the packet bytes.
            let block = std::mem::take(&mut self.block);
            let result =
                self.assemble(packet.linktype, packet.timestamp_ns, &block[packet.data], &packet.comments);
            self.block = block;
            result?;
        }
    }

    /// Reads blocks up to the next packet.
    fn next_pcapng_packet(&mut self) -> Result<Option<RawPacket>, ReadError> {
        loop {
            let mut head = [0u8; 8];
            match read_full(&mut self.input, &mut head)? {
                0 => return Ok(None),
                8 => {}
                _ => return Err(damaged("the last block is cut short")),
            }
            if head[..4] == BLOCK_SHB.to_le_bytes() {
                // A new section: its own byte order and interfaces.
                let mut len = [0u8; 4];
                len.copy_from_slice(&head[4..]);
                self.read_section(len)?;
                continue;
            }
            let Container::Pcapng { endian, .. } = self.container else {
                return Ok(None);
            };
            let block_type = endian.u32(&head[..4]);
            let len = endian.u32(&head[4..]) as usize;
            if !(12..=MAX_BLOCK).contains(&len) || len & 3 != 0 {
                return Err(damaged(format!("block of length {len}")));
            }
            self.block.resize(len - 8, 0);
            self.input.read_exact(&mut self.block).map_err(|_| damaged("the last block is cut short"))?;
            let body_len = len - 12;
            if endian.u32(&self.block[body_len..]) as usize != len {
                return Err(damaged("a block's two lengths differ"));
            }
            match block_type {
                BLOCK_IDB => self.read_interface(endian, body_len)?,
                BLOCK_ISB => self.read_statistics(endian, body_len),
                BLOCK_EPB => return self.read_enhanced_packet(endian, body_len).map(Some),
                // Simple packet blocks carry no comments or timestamps.
                BLOCK_SPB if body_len >= 4 => {
                    let linktype = self.interface(0)?.linktype;
                    let orig_len = endian.u32(&self.block[..4]) as usize;
                    let caplen = orig_len.min(body_len - 4);
                    return Ok(Some(RawPacket {
                        linktype,
                        timestamp_ns: 0,
                        data: 4..4 + caplen,
                        comments: Vec::new(),
                    }));
                }
                // Name resolution, custom and other blocks say nothing we need.
                _ => {}
            }
        }
    }

    /// A section header block after its block type: `len` is its length
    /// field, in the byte order its magic number then tells.
    fn read_section(&mut self, len: [u8; 4]) -> Result<(), ReadError> {
        let mut magic = [0u8; 4];
        self.input.read_exact(&mut magic).map_err(|_| damaged("the section header is cut short"))?;
        let endian = if u32::from_le_bytes(magic) == BYTE_ORDER_MAGIC {
            Endian::Little
        } else if u32::from_be_bytes(magic) == BYTE_ORDER_MAGIC {
            Endian::Big
        } else {
            return Err(damaged("a section header has no byte-order magic"));
        };
        let len = endian.u32(&len) as usize;
        if !(28..=MAX_BLOCK).contains(&len) || len & 3 != 0 {
            return Err(damaged(format!("section header length {len}")));
        }
        let mut rest = vec![0u8; len - 12];
        self.input.read_exact(&mut rest).map_err(|_| damaged("the section header is cut short"))?;
        if endian.u16(&rest[..2]) != 1 {
            return Err(damaged("pcapng major version is not 1"));
        }
        self.container = Container::Pcapng { endian, interfaces: Vec::new() };
        Ok(())
    }

    fn interface(&self, id: u32) -> Result<Interface, ReadError> {
        match &self.container {
            Container::Pcapng { interfaces, .. } => interfaces
                .get(id as usize)
                .copied()
                .ok_or_else(|| damaged(format!("a packet names interface {id}, which is not described"))),
            Container::Pcap { .. } => Err(damaged("no interfaces in a pcap file")),
        }
    }

    fn read_interface(&mut self, endian: Endian, body_len: usize) -> Result<(), ReadError> {
        let body = &self.block[..body_len];
        if body.len() < 8 {
            return Err(damaged("an interface block is too short"));
        }
        let mut interface =
            Interface { linktype: u32::from(endian.u16(&body[..2])), tsresol: 6, tsoffset: 0 };
        for (code, value) in options(endian, &body[8..]) {
            match (code, value.len()) {
                (IF_TSRESOL, 1) => interface.tsresol = value[0],
                (IF_TSOFFSET, 8) => interface.tsoffset = endian.u64(value) as i64,
                _ => {}
            }
        }
        if let Container::Pcapng { interfaces, .. } = &mut self.container {
            interfaces.push(interface);
        }
        Ok(())
    }

    fn read_statistics(&mut self, endian: Endian, body_len: usize) {
        let body = &self.block[..body_len];
        if body.len() < 12 {
            return;
        }
        for (code, value) in options(endian, &body[12..]) {
            if code == ISB_IFDROP && value.len() == 8 {
                self.lost = self.lost.saturating_add(endian.u64(value));
            }
        }
    }

    fn read_enhanced_packet(&mut self, endian: Endian, body_len: usize) -> Result<RawPacket, ReadError> {
        let body = &self.block[..body_len];
        if body.len() < 20 {
            return Err(damaged("a packet block is too short"));
        }
        let interface = self.interface(endian.u32(&body[..4]))?;
        let units = (u64::from(endian.u32(&body[4..8])) << 32) | u64::from(endian.u32(&body[8..12]));
        let caplen = endian.u32(&body[12..16]) as usize;
        let padded = caplen.div_ceil(4) * 4;
        if 20 + padded > body.len() {
            return Err(damaged("a packet is longer than its block"));
        }
        let comments = options(endian, &body[20 + padded..])
            .filter(|(code, _)| *code == OPT_COMMENT)
            .map(|(_, value)| String::from_utf8_lossy(value).into_owned())
            .collect();
        Ok(RawPacket {
            linktype: interface.linktype,
            timestamp_ns: interface.nanoseconds(units),
            data: 20..20 + caplen,
            comments,
        })
    }

    fn next_pcap_packet(&mut self) -> Result<Option<RawPacket>, ReadError> {
        let Container::Pcap { endian, nanos, linktype } = self.container else {
            return Ok(None);
        };
        let mut head = [0u8; 16];
        match read_full(&mut self.input, &mut head)? {
            0 => return Ok(None),
            16 => {}
            _ => return Err(damaged("the last packet record is cut short")),
        }
        let secs = u64::from(endian.u32(&head[..4]));
        let frac = u64::from(endian.u32(&head[4..8]));
        let caplen = endian.u32(&head[8..12]) as usize;
        if caplen > MAX_BLOCK {
            return Err(damaged(format!("a packet of {caplen} bytes")));
        }
        self.block.resize(caplen, 0);
        self.input.read_exact(&mut self.block).map_err(|_| damaged("the last packet is cut short"))?;
        let ns = secs * 1_000_000_000 + if nanos { frac } else { frac * 1000 };
        Ok(Some(RawPacket { linktype, timestamp_ns: ns, data: 0..caplen, comments: Vec::new() }))
    }

    /// Adds one packet; complete messages go to `ready`.
    fn assemble(
        &mut self,
        linktype: u32,
        timestamp_ns: u64,
        data: &[u8],
        comments: &[String],
    ) -> Result<(), ReadError> {
        let packet = self.packets;
        let bad = |reason: String| ReadError::BadPacket { packet, reason };
        if linktype == u32::from(LINKTYPE_USER0) {
            let record = user0::parse(data).map_err(|e| bad(e.to_string()))?;
            self.flush_pending();
            self.ready.push_back(Message {
                meta: OwnedMeta::of(&record.meta),
                timestamp_ns,
                data: record.data.to_vec(),
            });
            return Ok(());
        }
        if linktype != u32::from(LINKTYPE_ETHERNET) {
            return Err(ReadError::LinkType(linktype));
        }
        let comment =
            comments.iter().find(|c| meta::is_sockdump_comment(c)).ok_or(ReadError::NoComment { packet })?;
        let (meta, part) = match meta::parse_comment(comment) {
            Ok(Comment::Synthetic(_)) => return Ok(()),
            Ok(Comment::Message { meta, part }) => (meta, part),
            Err(e) => return Err(bad(e.to_string())),
        };
        let payload = framing::parse_frame(data).map_err(|e| bad(e.to_string()))?.payload;
        let (index, count) = part.map_or((1, 1), |p| (p.index, p.count));
        let continues = self
            .pending
            .as_ref()
            .is_some_and(|p| index > 1 && p.next_part == index && p.parts == count && p.message.meta == meta);
        if !continues {
            self.flush_pending();
            self.pending = Some(Pending {
                message: Message { meta, timestamp_ns, data: Vec::with_capacity(payload.len()) },
                next_part: index,
                parts: count,
                // Parts before this one are not in the file.
                damaged: index > 1,
            });
        }
        if let Some(pending) = &mut self.pending {
            pending.message.data.extend_from_slice(payload);
            pending.next_part += 1;
            if index == count {
                self.flush_pending();
            }
        }
        Ok(())
    }

    /// Moves the message being assembled, complete or not, to `ready`.
    fn flush_pending(&mut self) {
        if let Some(pending) = self.pending.take() {
            if pending.damaged || pending.next_part <= pending.parts {
                self.incomplete += 1;
            }
            self.ready.push_back(pending.message);
        }
    }
}

/// Iterates over (code, value) options up to `opt_endofopt`.
fn options(endian: Endian, mut bytes: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        if bytes.len() < 4 {
            return None;
        }
        let code = endian.u16(&bytes[..2]);
        let len = usize::from(endian.u16(&bytes[2..4]));
        if code == 0 || 4 + len > bytes.len() {
            return None;
        }
        let value = &bytes[4..4 + len];
        bytes = &bytes[(4 + len.div_ceil(4) * 4).min(bytes.len())..];
        Some((code, value))
    })
}

/// Reads until `buf` is full or the input ends; returns the bytes read.
fn read_full(input: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match input.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// The user-space version of the capture filters, for `-r`.
struct ReadFilter {
    pid: Option<u32>,
    comm: Option<Vec<u8>>,
    sock: Option<Vec<u8>>,
}

/// Whether a name's `sun_path` bytes start with `prefix` (as `--sock` gives it).
fn name_starts_with(name: SocketName<'_>, prefix: &[u8]) -> bool {
    match (name, prefix.split_first()) {
        (SocketName::Abstract(n), Some((0, rest))) => n.starts_with(rest),
        (SocketName::Path(p), Some((first, _))) if *first != 0 => p.starts_with(prefix),
        _ => false,
    }
}

impl ReadFilter {
    fn matches(&self, ev: &Event<'_>) -> bool {
        self.pid.is_none_or(|pid| ev.pid == pid || ev.peer_pid == pid)
            && self.comm.as_deref().is_none_or(|comm| ev.comm == comm)
            && self.sock.as_deref().is_none_or(|prefix| {
                name_starts_with(ev.path, prefix) || name_starts_with(ev.peer_path, prefix)
            })
    }
}

/// How many messages one drain hands on before the pump looks at its
/// limits and stop requests again.
const BATCH: usize = 1024;

/// A capture file as an event source, with the `-r` filter applied.
pub struct FileSource {
    path: std::path::PathBuf,
    reader: CaptureReader<BufReader<File>>,
    filter: ReadFilter,
    ended: bool,
}

impl FileSource {
    pub fn open(path: &Path, filter: Filter) -> Result<Self> {
        let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
        let reader = CaptureReader::new(BufReader::with_capacity(1 << 16, file))
            .with_context(|| format!("cannot read {}", path.display()))?;
        let filter = ReadFilter { pid: filter.pid, comm: filter.comm, sock: filter.sock_prefix };
        Ok(FileSource { path: path.to_path_buf(), reader, filter, ended: false })
    }

    /// What the file told about itself, once read: losses it recorded,
    /// messages it cut, and with `verbose` what it held.
    pub fn report(&self, shown: u64, verbose: bool) {
        let reader = &self.reader;
        if reader.lost > 0 {
            note(format_args!(
                "sockdump: the capture lost {} messages (the kernel ring buffer was full)",
                reader.lost
            ));
        }
        if reader.incomplete > 0 {
            note(format_args!(
                "sockdump: {} messages miss some of their packets in this file",
                reader.incomplete
            ));
        }
        if reader.packets == 0 {
            note(format_args!("sockdump: {} holds no packets", self.path.display()));
        } else if verbose {
            note(format_args!(
                "sockdump: read {} packets from {}; {shown} messages matched and were written",
                reader.packets,
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
        Ok(self.reader.lost)
    }

    /// A file has nothing in flight: a stop ends it at once.
    fn stop_cutoff(&self) -> Option<u64> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::WallClock;
    use crate::output::framing::{Link, PortMap};
    use crate::output::pcap::PcapSink;
    use crate::output::pcapng::PcapngSink;
    use crate::output::{Sink, SinkOptions, Stats};
    use sockdump_common::{abi, EventFlags, SockType};

    fn options(link: Link) -> SinkOptions {
        SinkOptions {
            link,
            ports: PortMap::default(),
            clock: WallClock::with_offset(1_700_000_000_000_000_000),
            flush_each: false,
            filter: Some("--sock /tmp".into()),
        }
    }

    fn events(big: &[u8]) -> Vec<Event<'_>> {
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
        sink.finish(&Stats { captured: events.len() as u64, lost: 3 }).unwrap();
    }

    fn read_back(bytes: &[u8]) -> (Vec<Message>, u64) {
        let mut reader = CaptureReader::new(bytes).unwrap();
        let mut out = Vec::new();
        while let Some(m) = reader.next_message().unwrap() {
            out.push(m);
        }
        assert_eq!(reader.incomplete, 0);
        (out, reader.lost)
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
        let err = CaptureReader::new(&bytes[..]).err().unwrap();
        assert!(matches!(err, ReadError::PcapEthernet), "{err}");
    }

    #[test]
    fn foreign_files_are_refused_clearly() {
        let err = CaptureReader::new(&b"GET / HTTP/1.1\r\n"[..]).err().unwrap();
        assert!(err.to_string().contains("not a pcap or pcapng file"), "{err}");
        assert!(CaptureReader::new(&b""[..]).is_err());
        // A pcapng with an Ethernet packet but no comment.
        let mut file = Vec::new();
        crate::output::pcapng::push_shb(&mut file, "other", None);
        crate::output::pcapng::push_idb(
            &mut file,
            &crate::output::pcapng::Interface { linktype: 1, description: "eth0", filter: None },
        );
        let mut epb = Vec::new();
        crate::output::pcapng::push_epb(&mut epb, 1, &[0u8; 60], 60, 0, "hello");
        file.extend_from_slice(&epb);
        let mut reader = CaptureReader::new(&file[..]).unwrap();
        let err = reader.next_message().unwrap_err();
        assert!(matches!(err, ReadError::NoComment { packet: 1 }), "{err}");
        // Cut short anywhere: an error or fewer messages, never a panic.
        let big = vec![2u8; 70000];
        let mut sink = PcapngSink::new(Vec::new(), options(Link::Ethernet));
        write_all(&mut sink, &events(&big));
        let bytes = sink.into_inner();
        for cut in (0..bytes.len()).step_by(97) {
            if let Ok(mut reader) = CaptureReader::new(&bytes[..cut]) {
                while let Ok(Some(_)) = reader.next_message() {}
            }
        }
    }

    /// A big-endian pcapng, as a big-endian machine writes it: USER0, the
    /// default microsecond resolution, and a second section.
    #[test]
    fn reads_big_endian_sections() {
        fn block(out: &mut Vec<u8>, kind: u32, body: &[u8]) {
            let len = (12 + body.len().div_ceil(4) * 4) as u32;
            out.extend_from_slice(&kind.to_be_bytes());
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(body);
            out.resize(out.len() + (4 - body.len() % 4) % 4, 0);
            out.extend_from_slice(&len.to_be_bytes());
        }
        let big = vec![0u8; 10];
        let evs = events(&big);
        let meta = sockdump_common::meta::MessageMeta::of(&evs[0]);
        let mut packet = Vec::new();
        user0::write_header(&mut packet, &meta, sockdump_common::meta::Direction::Outbound);
        packet.extend_from_slice(evs[0].data);
        let mut file = Vec::new();
        for section in 0..2u32 {
            let shb = [&BYTE_ORDER_MAGIC.to_be_bytes()[..], &[0, 1, 0, 0], &[0xff; 8]].concat();
            block(&mut file, BLOCK_SHB, &shb);
            let idb = [&147u16.to_be_bytes()[..], &[0, 0], &0u32.to_be_bytes()].concat();
            block(&mut file, BLOCK_IDB, &idb);
            let mut epb = Vec::new();
            epb.extend_from_slice(&0u32.to_be_bytes());
            epb.extend_from_slice(&0u32.to_be_bytes());
            epb.extend_from_slice(&(1_000_000 + section).to_be_bytes());
            epb.extend_from_slice(&(packet.len() as u32).to_be_bytes());
            epb.extend_from_slice(&(packet.len() as u32).to_be_bytes());
            epb.extend_from_slice(&packet);
            block(&mut file, BLOCK_EPB, &epb);
        }
        let (messages, _) = read_back(&file);
        assert_eq!(messages.len(), 2);
        assert_eq!(messages[0].timestamp_ns, 1_000_000_000);
        assert_eq!(messages[1].timestamp_ns, 1_000_001_000);
        assert_eq!(messages[1].meta, OwnedMeta::of(&meta));
        assert_eq!(messages[1].data, b"hello");
    }

    #[test]
    fn timestamp_resolutions() {
        let iface = |tsresol, tsoffset| Interface { linktype: 1, tsresol, tsoffset };
        assert_eq!(iface(9, 0).nanoseconds(123), 123);
        assert_eq!(iface(6, 0).nanoseconds(123), 123_000);
        assert_eq!(iface(12, 0).nanoseconds(123_456), 123);
        assert_eq!(iface(0x80 | 10, 0).nanoseconds(1024), 1_000_000_000);
        assert_eq!(iface(9, 2).nanoseconds(5), 2_000_000_005);
    }

    #[test]
    fn read_filters() {
        let big = vec![0u8; 10];
        let evs = events(&big);
        let f = ReadFilter { pid: Some(7), comm: None, sock: None };
        assert!(f.matches(&evs[0]), "peer pid matches");
        let f = ReadFilter { pid: None, comm: Some(b"my comm".to_vec()), sock: Some(b"\0logger".to_vec()) };
        assert!(!f.matches(&evs[0]));
        assert!(f.matches(&evs[4]));
        let f = ReadFilter { pid: None, comm: None, sock: Some(b"/tmp/a".to_vec()) };
        assert!(f.matches(&evs[0]) && f.matches(&evs[1]) && !f.matches(&evs[4]));
    }
}
