//! `sockdump-bench writers`: the CPU a message costs in the pcapng and pcap
//! sinks with a hand-written writer and with the `pcap-file` crate's,
//! measured in one run. sockdump writes pcapng by hand and pcap with the
//! crate; the other writer of each pair lives here. No root needed.

use std::borrow::Cow;
use std::io::{self, Write};
use std::time::Duration;

use anyhow::{bail, ensure, Result};
use nix::time::{clock_gettime, ClockId};
use pcap_file::pcapng::blocks::enhanced_packet::{EnhancedPacketBlock, EnhancedPacketOption};
use pcap_file::pcapng::blocks::interface_description::{
    InterfaceDescriptionBlock, InterfaceDescriptionOption, InterfaceTsResolution,
};
use pcap_file::pcapng::blocks::opt_common::CommonOption;
use pcap_file::pcapng::blocks::section_header::{SectionHeaderBlock, SectionHeaderOption};
use pcap_file::pcapng::PcapNgWriter;
use pcap_file::{DataLink, Endianness};
use sockdump::clock::WallClock;
use sockdump::output::framing::{Content, Framer, Link, PortMap, SNAPLEN};
use sockdump::output::pcap::PcapSink;
use sockdump::output::pcapng::{user_application, PcapngSink, INTERFACE_DESCRIPTION, INTERFACE_NAME};
use sockdump::output::{Sink, SinkOptions, Stats};
use sockdump_common::meta::{self, MessageMeta, Synthetic};
use sockdump_common::{Event, EventFlags, SockType, SocketName};

use crate::measure::{median, Report};

/// Where every sink writes: what `open_destination` gives, minus the file.
type Out = io::BufWriter<io::Sink>;

fn out() -> Out {
    io::BufWriter::with_capacity(1 << 16, io::sink())
}

fn options() -> SinkOptions {
    SinkOptions {
        link: Link::Ethernet,
        ports: PortMap::default(),
        clock: WallClock::with_offset(1_700_000_000_000_000_000),
        flush_each: false,
        filter: None,
    }
}

fn epoch(clock: WallClock, ns: u64) -> Duration {
    Duration::from_nanos(u64::try_from(clock.epoch_ns(ns).max(0)).unwrap_or(u64::MAX))
}

fn crate_error(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(e.to_string())
}

/// A crate writer, made by `begin` around the output (its constructor
/// writes the file header).
enum Writer<W, C> {
    New(W),
    Begun(C),
    Failed,
}

impl<W, C> Writer<W, C> {
    fn begin(&mut self, make: impl FnOnce(W) -> io::Result<C>) -> io::Result<()> {
        match std::mem::replace(self, Writer::Failed) {
            Writer::New(out) => *self = Writer::Begun(make(out)?),
            _ => return Err(io::Error::other("begun twice")),
        }
        Ok(())
    }

    fn get(&mut self) -> io::Result<&mut C> {
        match self {
            Writer::Begun(writer) => Ok(writer),
            _ => Err(io::Error::other("not begun")),
        }
    }
}

/// pcapng through `pcap_file::pcapng::PcapNgWriter`: the same blocks as
/// `PcapngSink` (but `shb_os`).
struct CratePcapng<W: Write> {
    writer: Writer<W, PcapNgWriter<W>>,
    framer: Framer,
    clock: WallClock,
    comment: String,
}

impl<W: Write> CratePcapng<W> {
    fn new(out: W) -> Self {
        let framer = Framer::new(Link::Ethernet, PortMap::default());
        CratePcapng { writer: Writer::New(out), framer, clock: options().clock, comment: String::new() }
    }
}

impl<W: Write> Sink for CratePcapng<W> {
    fn begin(&mut self) -> io::Result<()> {
        let linktype = DataLink::from(u32::from(self.framer.link().linktype()));
        self.writer.begin(|out| {
            let section = SectionHeaderBlock {
                endianness: Endianness::native(),
                options: vec![SectionHeaderOption::UserApplication(Cow::Owned(user_application()))],
                ..Default::default()
            };
            let mut writer = PcapNgWriter::with_section_header(out, section).map_err(crate_error)?;
            let interface = InterfaceDescriptionBlock {
                linktype,
                snaplen: SNAPLEN,
                options: vec![
                    InterfaceDescriptionOption::IfName(Cow::Borrowed(INTERFACE_NAME)),
                    InterfaceDescriptionOption::IfDescription(Cow::Borrowed(INTERFACE_DESCRIPTION)),
                    InterfaceDescriptionOption::IfTsResol(InterfaceTsResolution::NANO),
                ],
            };
            writer.write_pcapng_block(interface).map_err(crate_error)?;
            Ok(writer)
        })
    }

    fn write_event(&mut self, event: &Event<'_>) -> io::Result<()> {
        let timestamp = epoch(self.clock, event.timestamp_ns);
        let meta = MessageMeta::of(event);
        let Self { framer, writer, comment, .. } = self;
        let writer = writer.get()?;
        framer.frame(event, |packet| {
            match packet.content {
                Content::Handshake => meta::write_synthetic_comment(comment, Synthetic::Handshake),
                Content::Message { part } => meta::write_comment(comment, &meta, part),
            }
            let mut options =
                vec![EnhancedPacketOption::Common(CommonOption::Comment(Cow::Borrowed(comment)))];
            if packet.direction.bits() != 0 {
                options.push(EnhancedPacketOption::Flags(u32::from(packet.direction.bits())));
            }
            let block = EnhancedPacketBlock {
                interface_id: 0,
                timestamp,
                original_len: packet.orig_len,
                data: Cow::Borrowed(packet.bytes),
                options,
            };
            writer.write_pcapng_block(block).map(drop).map_err(crate_error)
        })
    }

    fn flush(&mut self) -> io::Result<()> {
        self.writer.get()?.get_mut().flush()
    }

    fn finish(&mut self, _stats: &Stats) -> io::Result<()> {
        self.flush()
    }
}

/// pcap as sockdump wrote it by hand before it used `pcap-file`: the
/// records of a message into a reused buffer, then one write.
struct HandPcap<W: Write> {
    out: W,
    framer: Framer,
    clock: WallClock,
    records: Vec<u8>,
}

impl<W: Write> HandPcap<W> {
    fn new(out: W) -> Self {
        let framer = Framer::new(Link::Ethernet, PortMap::default());
        HandPcap { out, framer, clock: options().clock, records: Vec::with_capacity(1 << 17) }
    }
}

impl<W: Write> Sink for HandPcap<W> {
    fn begin(&mut self) -> io::Result<()> {
        let mut header = Vec::with_capacity(24);
        header.extend_from_slice(&0xA1B2_3C4Du32.to_ne_bytes());
        header.extend_from_slice(&2u16.to_ne_bytes());
        header.extend_from_slice(&4u16.to_ne_bytes());
        // thiszone, sigfigs
        header.extend_from_slice(&[0; 8]);
        header.extend_from_slice(&SNAPLEN.to_ne_bytes());
        header.extend_from_slice(&u32::from(self.framer.link().linktype()).to_ne_bytes());
        self.out.write_all(&header)
    }

    fn write_event(&mut self, event: &Event<'_>) -> io::Result<()> {
        let ns = epoch(self.clock, event.timestamp_ns).as_nanos();
        let Self { framer, records, .. } = self;
        records.clear();
        framer.frame(event, |packet| {
            // Seconds fit 32 bits until 2106.
            let secs = u32::try_from(ns / 1_000_000_000).unwrap_or(u32::MAX);
            records.extend_from_slice(&secs.to_ne_bytes());
            records.extend_from_slice(&((ns % 1_000_000_000) as u32).to_ne_bytes());
            records.extend_from_slice(&(packet.bytes.len() as u32).to_ne_bytes());
            records.extend_from_slice(&packet.orig_len.to_ne_bytes());
            records.extend_from_slice(packet.bytes);
            Ok::<(), io::Error>(())
        })?;
        self.out.write_all(&self.records)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    fn finish(&mut self, _stats: &Stats) -> io::Result<()> {
        self.flush()
    }
}

/// Two sinks of one format: (format, hand-written, pcap-file).
type Pair = (&'static str, Box<dyn Sink>, Box<dyn Sink>);

fn sinks() -> Vec<Pair> {
    vec![
        ("pcapng", Box::new(PcapngSink::new(out(), options())), Box::new(CratePcapng::new(out()))),
        ("pcap", Box::new(HandPcap::new(out())), Box::new(PcapSink::new(out(), options()))),
    ]
}

/// A few clients of one server, taking turns, and the server's answers.
fn events(data: &[u8]) -> Vec<Event<'_>> {
    (0..64u64)
        .map(|i| {
            let client = 1000 + i % 8;
            let answer = i % 2 == 1;
            let (path, peer_path) = if answer {
                (SocketName::Path(b"/run/app.sock"), SocketName::Unnamed)
            } else {
                (SocketName::Unnamed, SocketName::Path(b"/run/app.sock"))
            };
            let (ino, peer) = if answer { (2000 + client, client) } else { (client, 2000 + client) };
            Event {
                timestamp_ns: 1_000_000 * (i + 1),
                sock_ino: ino,
                peer_ino: peer,
                pid: 42,
                tid: 42,
                peer_pid: 7,
                len: data.len() as u32,
                sock_type: SockType::Stream,
                flags: EventFlags::default(),
                comm: b"bench",
                path,
                peer_path,
                data,
                rx_sock: 0,
                rx_pos: 0,
                reader: sockdump_common::Reader::Unknown,
                process: None,
                context: Default::default(),
            }
        })
        .collect()
}

/// Names of the realistic workload: 16 named servers (paths as long as
/// systemd's and Docker's), each with 64 client sockets.
struct Names {
    servers: Vec<Vec<u8>>,
    comms: Vec<Vec<u8>>,
}

impl Names {
    fn new() -> Self {
        Names {
            servers: (0..16)
                .map(|s| format!("/run/user/1000/service-{s:02}/api.sock").into_bytes())
                .collect(),
            comms: (0..16).map(|s| format!("worker-{s:02}").into_bytes()).collect(),
        }
    }

    /// 1024 conversations taking turns, a request then an answer in each,
    /// with distinct inodes, pids and threads: every message looks up a
    /// different socket and conversation, and its comment carries a path.
    fn events<'a>(&'a self, data: &'a [u8]) -> Vec<Event<'a>> {
        (0..2048u64)
            .map(|i| {
                let conn = i / 2 % 1024;
                let server = (conn % 16) as usize;
                let answer = i % 2 == 1;
                let name = SocketName::Path(&self.servers[server]);
                let client_ino = 100_000 + conn;
                let server_ino = 200_000 + conn;
                let (path, peer_path, ino, peer) = if answer {
                    (name, SocketName::Unnamed, server_ino, client_ino)
                } else {
                    (SocketName::Unnamed, name, client_ino, server_ino)
                };
                let pid = if answer { 500 + server as u32 } else { 3000 + conn as u32 };
                Event {
                    timestamp_ns: 1_000 * (i + 1),
                    sock_ino: ino,
                    peer_ino: peer,
                    pid,
                    tid: pid + (i % 4) as u32,
                    peer_pid: if answer { 3000 + conn as u32 } else { 500 + server as u32 },
                    len: data.len() as u32,
                    sock_type: SockType::Stream,
                    flags: EventFlags::default(),
                    comm: &self.comms[server],
                    path,
                    peer_path,
                    data,
                    rx_sock: 0,
                    rx_pos: 0,
                    reader: sockdump_common::Reader::Unknown,
                    process: None,
                    context: Default::default(),
                }
            })
            .collect()
    }
}

/// CPU seconds per million 1 KiB messages through the pcapng sink sockdump
/// ships, with realistic events: issue 12's target is at most 1 s.
fn realistic_pcapng(opts: &Options, report: &mut Report) -> Result<()> {
    let names = Names::new();
    let data: Vec<u8> = (0..1024u32).map(|i| (i * 7 + 3) as u8).collect();
    let evs = names.events(&data);
    let mut sink = PcapngSink::new(out(), options());
    sink.begin()?;
    // warm up: every socket and conversation in the tables
    cpu_per_message(&mut sink, &evs, evs.len() * 2)?;
    let mut samples: Vec<f64> =
        (0..opts.rounds).map(|_| cpu_per_message(&mut sink, &evs, opts.messages)).collect::<Result<_>>()?;
    report.line(format!(
        "- pcapng sink, 1 KiB messages, 1024 conversations of 16 named servers: {:.2} s CPU per million messages (median of {} rounds of {})",
        median(&mut samples) / 1000.0,
        opts.rounds,
        opts.messages
    ));
    Ok(())
}

fn thread_cpu() -> Duration {
    clock_gettime(ClockId::CLOCK_THREAD_CPUTIME_ID).map(Duration::from).unwrap_or_default()
}

/// Thread CPU time per message of `messages` messages through `sink`.
fn cpu_per_message(sink: &mut dyn Sink, events: &[Event<'_>], messages: usize) -> Result<f64> {
    let started = thread_cpu();
    for event in events.iter().cycle().take(messages) {
        sink.write_event(event)?;
    }
    Ok((thread_cpu() - started).as_nanos() as f64 / messages as f64)
}

/// Skips a pcapng section header block (the crate's has no `shb_os`).
fn after_section(file: &[u8]) -> &[u8] {
    let len = file.get(4..8).and_then(|b| b.try_into().ok()).map_or(0, u32::from_ne_bytes);
    file.get(len as usize..).unwrap_or_default()
}

/// Both writers must produce the same bytes for the comparison to mean anything.
fn check_same_bytes() -> Result<()> {
    let data = vec![b'x'; 100_000];
    let evs = events(&data);
    let encode = |sink: &mut dyn Sink| -> Result<()> {
        sink.begin()?;
        evs.iter().try_for_each(|e| sink.write_event(e))?;
        Ok(sink.flush()?)
    };
    let mut hand = PcapngSink::new(Vec::new(), options());
    encode(&mut hand)?;
    let mut krate = CratePcapng::new(Vec::new());
    encode(&mut krate)?;
    let Writer::Begun(krate) = krate.writer else { bail!("not begun") };
    ensure!(after_section(&hand.into_inner()) == after_section(&krate.into_inner()), "pcapng files differ");

    let mut hand = HandPcap::new(Vec::new());
    encode(&mut hand)?;
    let mut krate = PcapSink::new(Vec::new(), options());
    encode(&mut krate)?;
    ensure!(hand.out == krate.into_inner(), "pcap files differ");
    Ok(())
}

pub struct Options {
    pub messages: usize,
    pub rounds: usize,
    /// Only the realistic pcapng figure (for profiling it).
    pub realistic_only: bool,
}

pub fn run(opts: &Options, report: &mut Report) -> Result<()> {
    check_same_bytes()?;
    realistic_pcapng(opts, report)?;
    if opts.realistic_only {
        return Ok(());
    }
    report.line(String::new());
    report.line("| message size | format | hand-written ns/message | pcap-file ns/message | pcap-file / hand-written |".into());
    report.line("| --- | --- | --- | --- | --- |".into());
    for size in [64usize, 1024, 65536] {
        let data = vec![b'm'; size];
        let evs = events(&data);
        let messages = (opts.messages * 1024 / size.max(1024)).max(1000);
        let mut sinks = sinks();
        for (_, hand, krate) in &mut sinks {
            for sink in [hand, krate] {
                sink.begin()?;
                // warm up: tables, buffers, caches
                cpu_per_message(sink.as_mut(), &evs, evs.len() * 4)?;
            }
        }
        // Alternating, so drift hits both writers alike.
        let mut samples = vec![Vec::new(); sinks.len() * 2];
        for _ in 0..opts.rounds {
            for (i, (_, hand, krate)) in sinks.iter_mut().enumerate() {
                samples[2 * i].push(cpu_per_message(hand.as_mut(), &evs, messages)?);
                samples[2 * i + 1].push(cpu_per_message(krate.as_mut(), &evs, messages)?);
            }
        }
        for ((format, ..), pair) in sinks.iter().zip(samples.chunks_mut(2)) {
            let [hand, krate] = pair else { continue };
            let (hand, krate) = (median(hand), median(krate));
            report.line(format!(
                "| {size} B | {format} | {hand:.0} | {krate:.0} | {:.1}% |",
                krate / hand * 100.0
            ));
        }
    }
    Ok(())
}
