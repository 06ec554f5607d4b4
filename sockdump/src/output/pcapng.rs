//! `--format pcapng`: one section, an interface for the messages, framed,
//! and a second for D-Bus messages, one per packet, described when the
//! first one comes (files without D-Bus keep one link type, which pcap
//! tools and libpcap need); per packet an Enhanced Packet Block
//! with the message's metadata as a comment and its direction in the
//! flags; an Interface Statistics Block with the totals ends the file. See
//! `docs/PCAPNG.md`; the blocks are `crate::file::pcapng`'s.

use std::io::{self, Write};

use sockdump_common::meta::{self, Direction, MessageMeta, Synthetic};
use sockdump_common::Event;

use super::framing::dbus::{piece_event, DbusSplitter, Piece};
use super::framing::{Content, Framer, LINKTYPE_DBUS, SNAPLEN};
use super::{epoch_ns, unix_now_ns, SinkOptions, Stats};
use crate::clock::WallClock;
use crate::file::pcapng::{push_epb, push_idb, push_isb, push_shb, Interface};

/// The interface name every sockdump capture has.
pub const INTERFACE_NAME: &str = "sockdump";
/// And its description.
pub const INTERFACE_DESCRIPTION: &str = "unix domain socket messages";
/// The second interface: D-Bus messages after their connection's handshake.
pub const DBUS_INTERFACE: u32 = 1;
pub const DBUS_INTERFACE_NAME: &str = "sockdump-dbus";
pub const DBUS_INTERFACE_DESCRIPTION: &str = "D-Bus messages on unix sockets";

/// The running kernel, for `shb_os`.
fn os_name() -> Option<String> {
    let read = |p: &str| std::fs::read_to_string(p).ok().map(|s| s.trim().to_owned());
    Some(format!("{} {}", read("/proc/sys/kernel/ostype")?, read("/proc/sys/kernel/osrelease")?))
}

pub fn user_application() -> String {
    format!("sockdump {}", env!("CARGO_PKG_VERSION"))
}

/// See `PcapngSink::blocks`; the size of `open_destination`'s `BufWriter`.
const BATCH: usize = 1 << 16;

pub struct PcapngSink<W: Write> {
    out: W,
    framer: Framer,
    dbus: DbusSplitter,
    clock: WallClock,
    flush_each: bool,
    filter: Option<String>,
    /// This file has described the D-Bus interface.
    dbus_described: bool,
    /// When this file began, for its statistics.
    started_ns: u64,
    /// Blocks of whole messages not yet written: they go out together once
    /// there are `BATCH` bytes (or at a flush), in writes large enough to
    /// pass a `BufWriter` by rather than be copied into it.
    blocks: Vec<u8>,
    comment: String,
    comments: meta::CommentWriter,
}

impl<W: Write> PcapngSink<W> {
    pub fn new(out: W, options: SinkOptions) -> Self {
        PcapngSink {
            out,
            framer: Framer::new(options.link, options.ports),
            dbus: DbusSplitter::default(),
            clock: options.clock,
            flush_each: options.flush_each,
            filter: options.filter,
            dbus_described: false,
            started_ns: 0,
            blocks: Vec::with_capacity(2 * BATCH),
            comment: String::with_capacity(512),
            comments: meta::CommentWriter::default(),
        }
    }

    pub fn into_inner(self) -> W {
        self.out
    }

    fn write_blocks(&mut self) -> io::Result<()> {
        let result = self.out.write_all(&self.blocks);
        self.blocks.clear();
        result
    }
}

/// Where one event's packet blocks go.
struct Packets<'s> {
    framer: &'s mut Framer,
    dbus_described: &'s mut bool,
    filter: Option<&'s str>,
    blocks: &'s mut Vec<u8>,
    comment: &'s mut String,
    comments: &'s mut meta::CommentWriter,
    ts: u64,
}

impl Packets<'_> {
    /// The event framed, on interface 0.
    fn frame(&mut self, event: &Event<'_>) -> io::Result<()> {
        let meta = MessageMeta::of(event);
        let Self { framer, blocks, comment, comments, ts, .. } = self;
        framer.frame(event, |packet| {
            match packet.content {
                Content::Handshake => meta::write_synthetic_comment(comment, Synthetic::Handshake),
                Content::Message { part } => comments.write(comment, &meta, part),
            }
            let flags = u32::from(packet.direction.bits());
            push_epb(blocks, 0, *ts, packet.bytes, packet.orig_len, flags, comment);
            Ok(())
        })
    }

    /// The event, a D-Bus message, as is on the D-Bus interface.
    fn dbus(&mut self, event: &Event<'_>, direction: Direction) -> io::Result<()> {
        if !*self.dbus_described {
            *self.dbus_described = true;
            let interface = Interface {
                linktype: LINKTYPE_DBUS,
                snaplen: SNAPLEN,
                name: DBUS_INTERFACE_NAME,
                description: DBUS_INTERFACE_DESCRIPTION,
                filter: self.filter,
            };
            push_idb(self.blocks, &interface);
        }
        self.comments.write(self.comment, &MessageMeta::of(event), None);
        let flags = u32::from(direction.bits());
        push_epb(self.blocks, DBUS_INTERFACE, self.ts, event.data, event.len, flags, self.comment);
        Ok(())
    }
}

impl<W: Write> super::Sink for PcapngSink<W> {
    /// The section and interface headers: Wireshark on a pipe can start
    /// before the first packet.
    fn begin(&mut self) -> io::Result<()> {
        self.started_ns = unix_now_ns();
        self.framer.start_file();
        self.dbus_described = false;
        push_shb(&mut self.blocks, &user_application(), os_name().as_deref());
        let interface = Interface {
            linktype: self.framer.link().linktype(),
            snaplen: SNAPLEN,
            name: INTERFACE_NAME,
            description: INTERFACE_DESCRIPTION,
            filter: self.filter.as_deref(),
        };
        push_idb(&mut self.blocks, &interface);
        self.flush()
    }

    fn write_event(&mut self, event: &Event<'_>) -> io::Result<()> {
        let Self { framer, dbus, blocks, comment, comments, clock, dbus_described, filter, .. } = self;
        let mut packets = Packets {
            framer,
            dbus_described,
            filter: filter.as_deref(),
            blocks,
            comment,
            comments,
            ts: epoch_ns(*clock, event.timestamp_ns),
        };
        // D-Bus connections' events come in pieces: their handshake framed
        // as usual, their messages on the D-Bus interface
        let split = dbus.split(event, |piece| match piece {
            Piece::Ordinary { data, len } => packets.frame(&piece_event(event, data, len)),
            Piece::Message { data, len, direction } => {
                packets.dbus(&piece_event(event, data, len), direction)
            }
        })?;
        if !split {
            packets.frame(event)?;
        }
        if self.flush_each {
            return self.flush();
        }
        if self.blocks.len() >= BATCH {
            self.write_blocks()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.write_blocks()?;
        self.out.flush()
    }

    fn finish(&mut self, stats: &Stats) -> io::Result<()> {
        push_isb(&mut self.blocks, unix_now_ns(), self.started_ns, stats.captured, stats.lost);
        self.flush()
    }

    fn buffered(&self) -> usize {
        self.blocks.len()
    }
}
