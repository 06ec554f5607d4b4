//! How a unix socket message becomes packets that Wireshark understands.
//!
//! Ethernet framing: each socket gets a synthetic IPv4 address and port,
//! stable for the whole capture; stream and seqpacket messages become TCP
//! segments (with a synthetic handshake opening each connection and
//! sequence numbers advancing by the bytes sent), datagrams become UDP. The
//! named (server) side of a connection gets its protocol's well-known port
//! when its path is recognisable, so dissectors pick the traffic up with no
//! Decode As. USER0 framing: a sockdump header, then the bytes.
//!
//! Pure: no I/O; the pcapng and pcap sinks put the packets into files.
//! [`ports`] says which names get well-known ports, [`network`] keeps the
//! synthetic addresses and conversations, [`packet`] builds the headers and
//! [`parse`] finds the payload again (`-r`); [`dbus`] cuts D-Bus
//! connections into messages for their own interface.
//! `docs/PCAPNG.md` describes the conventions for users.

pub mod dbus;
mod network;
mod packet;
mod parse;
mod ports;

use sockdump_common::meta::{Direction, MessageMeta, Part};
use sockdump_common::{user0, Event};

use network::{Route, Tracker, CLIENT_ISN, SERVER_ISN};
use packet::{
    push_tcp_packet, push_udp_packet, TcpSegment, ETH_LEN, IPV4_LEN, SYN_OPTIONS, TCP_LEN, TCP_MAX_PAYLOAD,
    UDP_LEN, UDP_MAX_PAYLOAD,
};
pub use parse::{parse_frame, FrameError, ParsedFrame};
pub use ports::{PortMap, PortMapEntry};

/// LINKTYPE_ETHERNET
pub const LINKTYPE_ETHERNET: u16 = 1;
/// LINKTYPE_USER0
pub const LINKTYPE_USER0: u16 = 147;
/// LINKTYPE_DBUS: one D-Bus message per packet (pcapng's second interface).
pub const LINKTYPE_DBUS: u16 = 231;
/// Snapshot length written in file headers: above the largest packet
/// either framing makes, and Wireshark's own maximum.
pub const SNAPLEN: u32 = 262_144;

/// How messages are framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    /// Ethernet/IPv4/TCP or UDP with synthetic addresses.
    Ethernet,
    /// LINKTYPE_USER0 with sockdump's own header.
    User,
}

impl Link {
    pub fn linktype(self) -> u16 {
        match self {
            Link::Ethernet => LINKTYPE_ETHERNET,
            Link::User => LINKTYPE_USER0,
        }
    }
}

/// What a packet holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Content {
    /// One of the synthetic SYN, SYN-ACK and ACK opening a TCP stream.
    Handshake,
    /// Bytes of the message (`part` when it was split over packets).
    Message { part: Option<Part> },
}

/// One framed packet.
#[derive(Debug, Clone, Copy)]
pub struct Packet<'a> {
    /// The captured bytes of the packet.
    pub bytes: &'a [u8],
    /// Its length had every sent byte been captured.
    pub orig_len: u32,
    pub direction: Direction,
    pub content: Content,
}

/// Turns events into packets of one link type.
#[derive(Debug)]
pub struct Framer {
    link: Link,
    ports: PortMap,
    tracker: Tracker,
    buf: Vec<u8>,
}

impl Framer {
    pub fn new(link: Link, ports: PortMap) -> Self {
        Framer {
            link,
            ports,
            tracker: Tracker::default(),
            buf: Vec::with_capacity(ETH_LEN + IPV4_LEN + TCP_LEN + TCP_MAX_PAYLOAD),
        }
    }

    pub fn link(&self) -> Link {
        self.link
    }

    /// Each file of a ring opens its conversations again (a handshake,
    /// sequence numbers from the start), so it reads on its own.
    pub fn start_file(&mut self) {
        self.tracker = Tracker::default();
    }

    /// Frames one message, calling `emit` for each packet in order.
    pub fn frame<E>(
        &mut self,
        ev: &Event<'_>,
        mut emit: impl FnMut(Packet<'_>) -> Result<(), E>,
    ) -> Result<(), E> {
        let route = self.tracker.route(ev, &self.ports);
        match self.link {
            Link::User => {
                self.buf.clear();
                let meta = MessageMeta::of(ev);
                user0::write_header(&mut self.buf, &meta, route.direction);
                let header = self.buf.len();
                self.buf.extend_from_slice(ev.data);
                emit(Packet {
                    bytes: &self.buf,
                    orig_len: u32::try_from(header).unwrap_or(u32::MAX).saturating_add(ev.len),
                    direction: route.direction,
                    content: Content::Message { part: None },
                })
            }
            Link::Ethernet if ev.sock_type.is_datagram() => self.frame_udp(ev, &route, &mut emit),
            Link::Ethernet => self.frame_tcp(ev, &route, &mut emit),
        }
    }

    fn frame_tcp<E>(
        &mut self,
        ev: &Event<'_>,
        route: &Route,
        emit: &mut impl FnMut(Packet<'_>) -> Result<(), E>,
    ) -> Result<(), E> {
        use packet::tcp_flags::*;
        if route.opens {
            // The client opens: its segments are outbound, the server's inbound.
            let (client, server) = if route.direction == Direction::Inbound {
                (route.dst, route.src)
            } else {
                (route.src, route.dst)
            };
            let steps = [
                (client, server, CLIENT_ISN, 0, SYN, &SYN_OPTIONS[..], Direction::Outbound),
                (
                    server,
                    client,
                    SERVER_ISN,
                    CLIENT_ISN.wrapping_add(1),
                    SYN | ACK,
                    &SYN_OPTIONS[..],
                    Direction::Inbound,
                ),
                (
                    client,
                    server,
                    CLIENT_ISN.wrapping_add(1),
                    SERVER_ISN.wrapping_add(1),
                    ACK,
                    &[][..],
                    Direction::Outbound,
                ),
            ];
            for (src, dst, seq, ack, flags, options, direction) in steps {
                self.buf.clear();
                let segment = TcpSegment { seq, ack, flags, options };
                push_tcp_packet(&mut self.buf, &src, &dst, &segment, b"", 0);
                emit(Packet {
                    bytes: &self.buf,
                    orig_len: self.buf.len() as u32,
                    direction,
                    content: Content::Handshake,
                })?;
            }
        }
        for Piece { offset, sent, captured, part } in pieces(ev, TCP_MAX_PAYLOAD) {
            self.buf.clear();
            let segment = TcpSegment {
                // Offsets stay below len, a u32.
                seq: route.seq.wrapping_add(offset as u32),
                ack: route.ack,
                flags: PSH | ACK,
                options: &[],
            };
            push_tcp_packet(&mut self.buf, &route.src, &route.dst, &segment, captured, sent);
            emit(Packet {
                bytes: &self.buf,
                orig_len: (ETH_LEN + IPV4_LEN + TCP_LEN + sent) as u32,
                direction: route.direction,
                content: Content::Message { part },
            })?;
        }
        Ok(())
    }

    fn frame_udp<E>(
        &mut self,
        ev: &Event<'_>,
        route: &Route,
        emit: &mut impl FnMut(Packet<'_>) -> Result<(), E>,
    ) -> Result<(), E> {
        for Piece { sent, captured, part, .. } in pieces(ev, UDP_MAX_PAYLOAD) {
            self.buf.clear();
            push_udp_packet(&mut self.buf, &route.src, &route.dst, captured, sent);
            emit(Packet {
                bytes: &self.buf,
                orig_len: (ETH_LEN + IPV4_LEN + UDP_LEN + sent) as u32,
                direction: route.direction,
                content: Content::Message { part },
            })?;
        }
        Ok(())
    }
}

/// One packet's share of a message split into packets of at most `max`
/// sent bytes.
struct Piece<'d> {
    /// Where its sent bytes start in the message.
    offset: usize,
    sent: usize,
    /// The captured ones among them.
    captured: &'d [u8],
    /// Which part it is, when there are several.
    part: Option<Part>,
}

/// Packets stop one after the captured bytes: a huge send captured in part
/// (or a crafted length in `-r`) does not become thousands of empty
/// packets; the next message's sequence number still counts every byte,
/// so Wireshark shows the gap as "previous segment not captured".
fn pieces<'d>(ev: &Event<'d>, max: usize) -> impl Iterator<Item = Piece<'d>> {
    let len = ev.len as usize;
    let data = ev.data;
    let count = len.div_ceil(max).clamp(1, data.len().div_ceil(max) + 1);
    (0..count).map(move |index| {
        let offset = index * max;
        let sent = (len - offset).min(max);
        let start = offset.min(data.len());
        let end = (offset + sent).min(data.len());
        // Counts are at most len / 65495 + 1: they fit u32.
        let part = (count > 1).then(|| Part { index: index as u32 + 1, count: count as u32 });
        Piece { offset, sent, captured: &data[start..end], part }
    })
}

#[cfg(test)]
pub(super) mod tests {
    use super::network::{Endpoint, EPHEMERAL_BASE};
    use super::packet::{checksum, pseudo_header};
    use super::*;
    use sockdump_common::{abi, SockType, SocketName};

    use sockdump_common::EventFlags;

    pub(super) fn event<'a>(
        path: SocketName<'a>,
        peer_path: SocketName<'a>,
        ino: u64,
        peer_ino: u64,
        data: &'a [u8],
        len: u32,
    ) -> Event<'a> {
        Event {
            timestamp_ns: 1,
            sock_ino: ino,
            peer_ino,
            pid: 10,
            tid: 10,
            peer_pid: 20,
            len,
            sock_type: SockType::Stream,
            flags: EventFlags::default(),
            comm: b"t",
            path,
            peer_path,
            data,
            rx_sock: 0,
            rx_pos: 0,
            reader: sockdump_common::Reader::Unknown,
            process: None,
            context: Default::default(),
        }
    }

    const SERVER: SocketName<'static> = SocketName::Path(b"/run/app.sock");

    /// Checked with `tshark -o ip.check_checksum:TRUE -o tcp.check_checksum:TRUE`.
    const GOLDEN_SYN: &str = concat!(
        "02000a000002",
        "02000a000001",
        "0800",
        "45000030",
        "00004000",
        "4006",
        "26c6",
        "0a000001",
        "0a000002",
        "ee48",
        "0050",
        "00000000",
        "00000000",
        "7002",
        "ffff",
        "8752",
        "0000",
        "0204ffd7",
        "0103030e"
    );
    const GOLDEN_DATA: &str = concat!(
        "02000a000002",
        "02000a000001",
        "0800",
        "4500002d",
        "00004000",
        "4006",
        "26c9",
        "0a000001",
        "0a000002",
        "ee48",
        "0050",
        "00000001",
        "00000001",
        "5018",
        "ffff",
        "e2c4",
        "0000",
        "474554202f"
    );

    fn frames(framer: &mut Framer, ev: &Event<'_>) -> Vec<(Vec<u8>, u32, Direction, Content)> {
        let mut out = Vec::new();
        framer
            .frame(ev, |p| {
                out.push((p.bytes.to_vec(), p.orig_len, p.direction, p.content));
                Ok::<(), ()>(())
            })
            .unwrap();
        out
    }

    #[test]
    fn golden_first_message_of_a_connection() {
        let mut framer = Framer::new(Link::Ethernet, PortMap::default());
        let ev = event(SocketName::Unnamed, SERVER, 100, 0, b"GET /", 5);
        let packets = frames(&mut framer, &ev);
        assert_eq!(packets.len(), 4, "SYN, SYN-ACK, ACK, data");
        let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
        // The client 10.0.0.1:61000 connects to the server 10.0.0.2:80.
        assert_eq!(hex(&packets[0].0), GOLDEN_SYN);
        assert_eq!(hex(&packets[3].0), GOLDEN_DATA);
        let dirs: Vec<Direction> = packets.iter().map(|p| p.2).collect();
        assert_eq!(dirs, [Direction::Outbound, Direction::Inbound, Direction::Outbound, Direction::Outbound]);
        assert_eq!(packets[3].3, Content::Message { part: None });
        for (bytes, orig, ..) in &packets {
            assert_eq!(*orig as usize, bytes.len());
            let ip = &bytes[ETH_LEN..ETH_LEN + IPV4_LEN];
            assert_eq!(checksum(&[ip]), 0, "IPv4 header checksum");
            let seg = &bytes[ETH_LEN + IPV4_LEN..];
            let pseudo = pseudo_header(
                &Endpoint { ip: [10, 0, 0, 1], port: 0 },
                &Endpoint { ip: [10, 0, 0, 2], port: 0 },
                6,
                seg.len(),
            );
            // Either direction: the sum over both addresses is the same.
            assert_eq!(checksum(&[&pseudo, seg]), 0, "TCP checksum");
        }
    }

    #[test]
    fn both_directions_form_one_stream_and_sequence_counts_sent_bytes() {
        let mut framer = Framer::new(Link::Ethernet, PortMap::default());
        // Client (unnamed, inode 100) writes 10 bytes but only 4 were captured.
        let mut ev = event(SocketName::Unnamed, SERVER, 100, 0, b"abcd", 10);
        ev.flags = EventFlags(abi::flag::TRUNC_SIZE);
        let first = frames(&mut framer, &ev);
        let data = &first[3];
        assert_eq!(data.0.len(), 54 + 4);
        assert_eq!(data.1, 54 + 10, "orig_len keeps the sent length");
        assert_eq!(&data.0[50..52], &[0, 0], "no checksum over cut-short data");
        // Server's accepted socket (inode 200, same path) answers.
        let reply = event(SERVER, SocketName::Unnamed, 200, 100, b"ok", 2);
        let back = frames(&mut framer, &reply);
        assert_eq!(back.len(), 1, "no second handshake");
        let p = parse_frame(&back[0].0).unwrap();
        assert_eq!(p.payload, b"ok");
        assert_eq!(back[0].2, Direction::Inbound);
        let b = &back[0].0;
        assert_eq!(&b[26..30], &[10, 0, 0, 2], "from the server address");
        assert_eq!(&b[30..34], &[10, 0, 0, 1], "to the client address");
        assert_eq!(
            &b[34..38],
            &80u16.to_be_bytes().iter().chain(&61000u16.to_be_bytes()).copied().collect::<Vec<_>>()[..]
        );
        assert_eq!(u32::from_be_bytes(b[38..42].try_into().unwrap()), 1, "server seq");
        assert_eq!(
            u32::from_be_bytes(b[42..46].try_into().unwrap()),
            11,
            "acks all 10 sent bytes, captured or not"
        );
        // The client's next message continues at 11.
        let next = event(SocketName::Unnamed, SERVER, 100, 200, b"x", 1);
        let again = frames(&mut framer, &next);
        assert_eq!(u32::from_be_bytes(again[0].0[38..42].try_into().unwrap()), 11);
        assert_eq!(u32::from_be_bytes(again[0].0[42..46].try_into().unwrap()), 3);
    }

    #[test]
    fn a_reply_sent_as_the_client_closes_stays_in_its_connection() {
        let mut framer = Framer::new(Link::Ethernet, PortMap::default());
        frames(&mut framer, &event(SocketName::Unnamed, SERVER, 100, 0, b"GET", 3));
        let head = frames(&mut framer, &event(SERVER, SocketName::Unnamed, 200, 100, b"head", 4));
        // the client read the head and closed before the body's hook ran:
        // its end shows no inode
        let body = frames(&mut framer, &event(SERVER, SocketName::Unnamed, 200, 0, b"body", 4));
        assert_eq!(body.len(), 1, "no second handshake");
        assert_eq!(&body[0].0[26..38], &head[0].0[26..38], "the same addresses and ports");
        assert_eq!(u32::from_be_bytes(body[0].0[38..42].try_into().unwrap()), 5, "after the head");
    }

    #[test]
    fn a_second_client_gets_its_own_address_and_the_same_server() {
        let mut framer = Framer::new(Link::Ethernet, PortMap::default());
        let a = frames(&mut framer, &event(SocketName::Unnamed, SERVER, 100, 0, b"a", 1));
        let b = frames(&mut framer, &event(SocketName::Unnamed, SERVER, 300, 0, b"b", 1));
        assert_eq!(b.len(), 4, "a new connection opens with a handshake");
        assert_eq!(&a[3].0[30..34], &b[3].0[30..34], "one server address");
        assert_ne!(&a[3].0[26..30], &b[3].0[26..30], "two client addresses");
    }

    #[test]
    fn large_messages_are_split_with_consecutive_sequence_numbers() {
        let mut framer = Framer::new(Link::Ethernet, PortMap::default());
        let data = vec![7u8; 65536];
        let len = 200_000;
        let ev = event(SocketName::Unnamed, SERVER, 100, 0, &data, len);
        let packets: Vec<_> = frames(&mut framer, &ev).into_iter().skip(3).collect();
        assert_eq!(packets.len(), 3, "the captured bytes, then one packet of the rest");
        let mut expect_seq = 1u32;
        let mut captured = 0;
        let mut sent = 0;
        for (i, (bytes, orig, _, content)) in packets.iter().enumerate() {
            assert_eq!(*content, Content::Message { part: Some(Part { index: i as u32 + 1, count: 3 }) });
            assert_eq!(u32::from_be_bytes(bytes[38..42].try_into().unwrap()), expect_seq);
            let seg = *orig as usize - 54;
            assert!(seg <= TCP_MAX_PAYLOAD);
            let total = u16::from_be_bytes([bytes[16], bytes[17]]) as usize;
            assert_eq!(total, 40 + seg, "IP length covers the sent bytes");
            expect_seq += seg as u32;
            sent += seg;
            captured += parse_frame(bytes).unwrap().payload.len();
        }
        assert_eq!((sent, captured), (3 * TCP_MAX_PAYLOAD, 65536));
        assert_eq!(packets[0].0.len(), 54 + TCP_MAX_PAYLOAD);
        assert_eq!(packets[1].0.len(), 54 + 65536 - TCP_MAX_PAYLOAD);
        assert_eq!(packets[2].0.len(), 54, "nothing captured of the rest");
        // the next message comes after every byte sent, captured or not
        let next = frames(&mut framer, &event(SocketName::Unnamed, SERVER, 100, 0, b"n", 1));
        assert_eq!(u32::from_be_bytes(next[0].0[38..42].try_into().unwrap()), 1 + len);
    }

    #[test]
    fn a_huge_length_makes_few_packets() {
        let mut framer = Framer::new(Link::Ethernet, PortMap::default());
        let ev = event(SocketName::Unnamed, SERVER, 100, 0, b"abc", u32::MAX);
        assert_eq!(frames(&mut framer, &ev).len(), 3 + 2, "handshake, the captured bytes, one of the rest");
        let mut dgram = event(SocketName::Unnamed, SERVER, 101, 0, b"", u32::MAX);
        dgram.sock_type = SockType::Dgram;
        assert_eq!(frames(&mut framer, &dgram).len(), 1);
    }

    #[test]
    fn datagrams_are_udp_to_the_destination_name() {
        let mut framer = Framer::new(Link::Ethernet, PortMap::default());
        let mut ev = event(SocketName::Unnamed, SocketName::Path(b"/dev/log"), 100, 0, b"<13>hi", 6);
        ev.sock_type = SockType::Dgram;
        ev.flags = EventFlags(abi::flag::PEER_IS_DEST);
        let packets = frames(&mut framer, &ev);
        assert_eq!(packets.len(), 1, "no handshake for UDP");
        let b = &packets[0].0;
        assert_eq!(b[23], 17, "UDP");
        assert_eq!(&b[36..38], &514u16.to_be_bytes(), "syslog port");
        assert_eq!(u16::from_be_bytes([b[38], b[39]]), 8 + 6);
        let seg = &b[34..];
        let pseudo = pseudo_header(
            &Endpoint { ip: [10, 0, 0, 1], port: 0 },
            &Endpoint { ip: [10, 0, 0, 2], port: 0 },
            17,
            seg.len(),
        );
        assert_eq!(checksum(&[&pseudo, seg]), 0, "UDP checksum");
        assert_eq!(parse_frame(b).unwrap().payload, b"<13>hi");
        assert_eq!(packets[0].2, Direction::Outbound);
    }

    #[test]
    fn socketpairs_have_no_server_and_the_first_sender_is_the_client() {
        let mut framer = Framer::new(Link::Ethernet, PortMap::default());
        let a = frames(&mut framer, &event(SocketName::Unnamed, SocketName::Unnamed, 51, 50, b"x", 1));
        let b = frames(&mut framer, &event(SocketName::Unnamed, SocketName::Unnamed, 50, 51, b"y", 1));
        assert_eq!(a.len(), 4);
        assert_eq!(b.len(), 1);
        assert_eq!(a[3].2, Direction::Outbound);
        assert_eq!(b[0].2, Direction::Inbound);
        for port in [&a[3].0[34..36], &a[3].0[36..38]] {
            assert!(u16::from_be_bytes([port[0], port[1]]) >= EPHEMERAL_BASE);
        }
    }

    #[test]
    fn both_named_a_recognised_name_is_the_server() {
        let mut framer = Framer::new(Link::Ethernet, PortMap::default());
        // A client bound to its own path sends to PostgreSQL on port 5433...
        let mut ev = event(
            SocketName::Path(b"/tmp/client"),
            SocketName::Path(b"/run/postgresql/.s.PGSQL.5433"),
            7,
            8,
            b"q",
            1,
        );
        let p = frames(&mut framer, &ev);
        assert_eq!(&p[3].0[36..38], &5433u16.to_be_bytes());
        assert_eq!(p[3].2, Direction::Outbound);
        // ... and when the server speaks first, it is still the server.
        let mut framer = Framer::new(Link::Ethernet, PortMap::default());
        std::mem::swap(&mut ev.path, &mut ev.peer_path);
        let p = frames(&mut framer, &ev);
        assert_eq!(&p[3].0[34..36], &5433u16.to_be_bytes());
        assert_eq!(p[3].2, Direction::Inbound);
        assert_eq!(p[0].2, Direction::Outbound, "the SYN comes from the client");
    }

    #[test]
    fn user0_packets_carry_the_header_and_the_sent_length() {
        let mut framer = Framer::new(Link::User, PortMap::default());
        let ev = event(SocketName::Unnamed, SERVER, 100, 0, b"abc", 7);
        let packets = frames(&mut framer, &ev);
        assert_eq!(packets.len(), 1);
        let (bytes, orig, dir, _) = &packets[0];
        let record = user0::parse(bytes).unwrap();
        assert_eq!(record.data, b"abc");
        assert_eq!(record.direction, Direction::Outbound);
        assert_eq!(*dir, Direction::Outbound);
        assert_eq!(record.meta, MessageMeta::of(&ev));
        assert_eq!(*orig as usize, bytes.len() + 4);
    }

    #[test]
    fn parse_frame_refuses_what_is_not_ours() {
        assert_eq!(parse_frame(b"short"), Err(FrameError::Short));
        let mut arp = vec![0u8; 60];
        arp[12..14].copy_from_slice(&[0x08, 0x06]);
        assert_eq!(parse_frame(&arp), Err(FrameError::NotIpv4));
        let mut framer = Framer::new(Link::Ethernet, PortMap::default());
        let mut p = frames(&mut framer, &event(SocketName::Unnamed, SERVER, 1, 0, b"", 0)).remove(3).0;
        p[23] = 1;
        assert_eq!(parse_frame(&p), Err(FrameError::Protocol(1)));
        for cut in 0..p.len() {
            let _ = parse_frame(&p[..cut]);
        }
    }
}
