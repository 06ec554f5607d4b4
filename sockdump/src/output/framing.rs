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
//! Pure: no I/O; `pcapng.rs` and `pcap.rs` put the packets into files.
//! `docs/PCAPNG.md` describes the conventions for users.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use sockdump_common::meta::{Direction, MessageMeta, Part};
use sockdump_common::{abi, user0, Event, SockType, SocketName};

/// LINKTYPE_ETHERNET
pub const LINKTYPE_ETHERNET: u16 = 1;
/// LINKTYPE_USER0
pub const LINKTYPE_USER0: u16 = 147;
/// Snapshot length written in file headers: above the largest packet
/// either framing makes, and Wireshark's own maximum.
pub const SNAPLEN: u32 = 262_144;

const ETH_LEN: usize = 14;
const IPV4_LEN: usize = 20;
const TCP_LEN: usize = 20;
const UDP_LEN: usize = 8;
/// The largest TCP payload an IPv4 packet holds (total length is 16 bits).
pub const TCP_MAX_PAYLOAD: usize = 0xffff - IPV4_LEN - TCP_LEN;
/// The largest UDP payload an IPv4 packet holds.
pub const UDP_MAX_PAYLOAD: usize = 0xffff - IPV4_LEN - UDP_LEN;

/// Port of a named stream server whose path is not recognised: unix
/// socket APIs are mostly HTTP (Docker, systemd, Kubernetes), and the HTTP
/// dissector hands HTTP/2 (gRPC) on by its connection preface.
pub const GENERIC_SERVER_PORT: u16 = 80;
/// Unnamed and client sockets get ports from here up; no dissector in
/// Wireshark claims this range for TCP or UDP.
pub const EPHEMERAL_BASE: u16 = 61000;
const EPHEMERAL_COUNT: u32 = 65536 - EPHEMERAL_BASE as u32;
/// Beyond this many sockets the tables start over (new addresses), so a
/// capture of endless short connections keeps bounded memory.
const MAX_ENDPOINTS: usize = 1 << 20;

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

/// One `--port-map PREFIX=PORT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortMapEntry {
    /// A path prefix, or `@` and an abstract name prefix.
    pub prefix: String,
    pub port: u16,
}

impl FromStr for PortMapEntry {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        // The port follows the last `=`, so prefixes may contain `=`.
        let (prefix, port) = s.rsplit_once('=').ok_or_else(|| format!("{s:?} is not PREFIX=PORT"))?;
        if prefix.is_empty() {
            return Err(format!("{s:?} has an empty path prefix"));
        }
        let port = port
            .parse::<u16>()
            .ok()
            .filter(|&p| p != 0)
            .ok_or_else(|| format!("{s:?}: the port must be a number from 1 to 65535"))?;
        Ok(PortMapEntry { prefix: prefix.to_owned(), port })
    }
}

impl fmt::Display for PortMapEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.prefix, self.port)
    }
}

/// Which well-known port a named socket gets: `--port-map` entries first
/// (the longest matching prefix), then the built-in table.
#[derive(Debug, Clone, Default)]
pub struct PortMap {
    entries: Vec<PortMapEntry>,
}

fn starts_with(name: SocketName<'_>, prefix: &str) -> bool {
    match (name, prefix.strip_prefix('@')) {
        (SocketName::Abstract(n), Some(p)) => n.starts_with(p.as_bytes()),
        (SocketName::Path(p), None) => p.starts_with(prefix.as_bytes()),
        _ => false,
    }
}

fn name_bytes(name: SocketName<'_>) -> &[u8] {
    match name {
        SocketName::Unnamed => b"",
        SocketName::Path(b) | SocketName::Abstract(b) => b,
    }
}

/// The well-known ports sockdump knows socket names for.
pub fn builtin_port(name: SocketName<'_>, sock_type: SockType) -> Option<u16> {
    let bytes = name_bytes(name);
    let base = bytes.rsplit(|&b| b == b'/').next().unwrap_or(bytes);
    // PostgreSQL names its socket after its TCP port: .s.PGSQL.5432
    if let Some(port) = base.strip_prefix(b".s.PGSQL.") {
        return Some(
            std::str::from_utf8(port).ok().and_then(|p| p.parse().ok()).filter(|&p| p != 0).unwrap_or(5432),
        );
    }
    if base.starts_with(b"redis") && base.ends_with(b".sock") {
        return Some(6379);
    }
    if base == b"mysqld.sock" || base == b"mysql.sock" {
        return Some(3306);
    }
    // HTTP APIs; containerd and CRI-O speak gRPC, which the HTTP dissector
    // passes to HTTP/2 on seeing the connection preface.
    if [&b"docker.sock"[..], b"podman.sock", b"containerd.sock", b"crio.sock", b"cri-dockerd.sock"]
        .contains(&base)
    {
        return Some(80);
    }
    // X server n listens on /tmp/.X11-unix/Xn and TCP port 6000 + n.
    if let Some(display) = bytes.strip_prefix(b"/tmp/.X11-unix/X") {
        if let Some(n) =
            std::str::from_utf8(display).ok().and_then(|d| d.parse::<u16>().ok()).filter(|&n| n < 64)
        {
            return Some(6000 + n);
        }
    }
    // syslog(3) sends datagrams to /dev/log (journald's dev-log behind it).
    if sock_type == SockType::Dgram
        && matches!(name, SocketName::Path(_))
        && (bytes == b"/dev/log" || bytes == b"/run/systemd/journal/dev-log")
    {
        return Some(514);
    }
    None
}

impl PortMap {
    pub fn new(entries: Vec<PortMapEntry>) -> Self {
        PortMap { entries }
    }

    pub fn port_for(&self, name: SocketName<'_>, sock_type: SockType) -> Option<u16> {
        if !name.is_named() {
            return None;
        }
        self.entries
            .iter()
            .filter(|e| starts_with(name, &e.prefix))
            .max_by_key(|e| e.prefix.len())
            .map(|e| e.port)
            .or_else(|| builtin_port(name, sock_type))
    }
}

/// A synthetic network endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Endpoint {
    pub ip: [u8; 4],
    pub port: u16,
}

impl Endpoint {
    /// A locally administered MAC address holding the IP address.
    pub fn mac(&self) -> [u8; 6] {
        let [a, b, c, d] = self.ip;
        [0x02, 0x00, a, b, c, d]
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d] = self.ip;
        write!(f, "{a}.{b}.{c}.{d}:{}", self.port)
    }
}

/// What identifies a socket across messages: its name when it has one (an
/// unconnected send names its destination only by path, and every socket a
/// server accepts carries the listening socket's name, so all of them
/// share the server's address), else its inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Key {
    Path { len: u8, bytes: [u8; abi::PATH_MAX] },
    Abstract { len: u8, bytes: [u8; abi::PATH_MAX] },
    Inode(u64),
}

impl Key {
    fn of(name: SocketName<'_>, ino: u64) -> Key {
        let fixed = |b: &[u8]| {
            let len = b.len().min(abi::PATH_MAX);
            let mut bytes = [0u8; abi::PATH_MAX];
            bytes[..len].copy_from_slice(&b[..len]);
            // len <= PATH_MAX (108) fits a byte.
            (len as u8, bytes)
        };
        match name {
            SocketName::Unnamed => Key::Inode(ino),
            SocketName::Path(p) => {
                let (len, bytes) = fixed(p);
                Key::Path { len, bytes }
            }
            SocketName::Abstract(n) => {
                let (len, bytes) = fixed(n);
                Key::Abstract { len, bytes }
            }
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Conversation {
    /// The client's endpoint id; in a conversation with no named side, the
    /// side that sent first.
    client: u32,
    /// Next sequence number client → server and server → client.
    next_seq: [u32; 2],
}

/// Sequence numbers of the synthetic handshake; data starts one above.
const CLIENT_ISN: u32 = 0;
const SERVER_ISN: u32 = 0;

/// Where one message goes in the synthetic network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    pub src: Endpoint,
    pub dst: Endpoint,
    pub direction: Direction,
    /// Whether this is the first message of its conversation.
    pub opens: bool,
    /// TCP: the sequence number of the message's first byte, and the
    /// acknowledgement (the other direction's next sequence number).
    pub seq: u32,
    pub ack: u32,
}

/// Addresses, roles and sequence numbers for every socket seen so far.
#[derive(Debug, Default)]
pub struct Tracker {
    ids: HashMap<Key, u32>,
    endpoints: Vec<Endpoint>,
    conversations: HashMap<(u32, u32), Conversation>,
    /// Counts every endpoint ever made, so addresses are not reused after
    /// the tables start over.
    made: u32,
}

/// Which side of a first message is the server: `Some(true)` the sender,
/// `Some(false)` the receiver, `None` neither (no side is named).
fn sender_is_server(ev: &Event<'_>, ports: &PortMap) -> Option<bool> {
    match (ev.path.is_named(), ev.peer_path.is_named()) {
        (true, false) => Some(true),
        (false, true) => Some(false),
        (false, false) => None,
        (true, true) => {
            let own = ports.port_for(ev.path, ev.sock_type).is_some();
            let peer = ports.port_for(ev.peer_path, ev.sock_type).is_some();
            // A recognised name marks the server; else the first message
            // is taken to go to it (most protocols have the client speak
            // first, and a sendto() goes to a server's name).
            Some(own && !peer)
        }
    }
}

impl Tracker {
    fn endpoint(
        &mut self,
        key: Key,
        name: SocketName<'_>,
        sock_type: SockType,
        serves: bool,
        ports: &PortMap,
    ) -> u32 {
        if let Some(&id) = self.ids.get(&key) {
            return id;
        }
        let made = self.made;
        self.made = self.made.wrapping_add(1);
        // 10.0.0.1 up to 10.255.255.254, then around again.
        let host = made % 0x00ff_fffe + 1;
        let [_, b, c, d] = host.to_be_bytes();
        let ephemeral = EPHEMERAL_BASE + (made % EPHEMERAL_COUNT) as u16;
        let port = match ports.port_for(name, sock_type) {
            Some(port) => port,
            None if serves && name.is_named() && !sock_type.is_datagram() => GENERIC_SERVER_PORT,
            None => ephemeral,
        };
        // Ids index `endpoints`, which the cap keeps far below u32::MAX.
        let id = self.endpoints.len() as u32;
        self.endpoints.push(Endpoint { ip: [10, b, c, d], port });
        self.ids.insert(key, id);
        id
    }

    /// Routes one message, advancing its direction's sequence number by
    /// the bytes sent (not captured: the receiver got them all).
    pub fn route(&mut self, ev: &Event<'_>, ports: &PortMap) -> Route {
        if self.endpoints.len() >= MAX_ENDPOINTS {
            self.ids.clear();
            self.endpoints.clear();
            self.conversations.clear();
        }
        let sender_key = Key::of(ev.path, ev.sock_ino);
        let receiver_key = Key::of(ev.peer_path, ev.peer_ino);
        let existing = match (self.ids.get(&sender_key), self.ids.get(&receiver_key)) {
            (Some(&s), Some(&r)) if self.conversations.contains_key(&pair(s, r)) => Some((s, r)),
            _ => None,
        };
        let (sender, receiver, new_client) = match existing {
            Some((s, r)) => (s, r, None),
            None => {
                let roles = sender_is_server(ev, ports);
                let serves = |sender: bool| roles == Some(sender);
                let s = self.endpoint(sender_key, ev.path, ev.sock_type, serves(true), ports);
                let r = self.endpoint(receiver_key, ev.peer_path, ev.sock_type, serves(false), ports);
                (s, r, Some(if serves(true) { r } else { s }))
            }
        };
        let conv = self.conversations.entry(pair(sender, receiver)).or_insert(Conversation {
            client: new_client.unwrap_or(sender),
            next_seq: [CLIENT_ISN.wrapping_add(1), SERVER_ISN.wrapping_add(1)],
        });
        let from_client = conv.client == sender;
        let (mine, theirs) = if from_client { (0, 1) } else { (1, 0) };
        let seq = conv.next_seq[mine];
        conv.next_seq[mine] = seq.wrapping_add(ev.len);
        // A socket sending to itself has one side only.
        let ack = if sender == receiver { seq } else { conv.next_seq[theirs] };
        let endpoint = |id: u32| self.endpoints.get(id as usize).copied().unwrap_or_default();
        Route {
            src: endpoint(sender),
            dst: endpoint(receiver),
            direction: if from_client { Direction::Outbound } else { Direction::Inbound },
            opens: new_client.is_some(),
            seq,
            ack,
        }
    }
}

/// The conversation key of two endpoints, whichever sends.
fn pair(a: u32, b: u32) -> (u32, u32) {
    (a.min(b), a.max(b))
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

mod tcp_flags {
    pub const SYN: u8 = 0x02;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;
}

/// TCP options of the synthetic SYN and SYN-ACK: the MSS our split size
/// gives, then NOP and window scale 14, so the 65535 window of every later
/// segment means 1 GiB and no segment looks like it overruns the receiver.
const SYN_OPTIONS: [u8; 8] = [2, 4, (TCP_MAX_PAYLOAD >> 8) as u8, TCP_MAX_PAYLOAD as u8, 1, 3, 3, 14];

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
        use tcp_flags::*;
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
        let len = ev.len as usize;
        let count = len.div_ceil(TCP_MAX_PAYLOAD).max(1);
        for index in 0..count {
            let offset = index * TCP_MAX_PAYLOAD;
            let sent = (len - offset).min(TCP_MAX_PAYLOAD);
            let captured = captured_slice(ev.data, offset, sent);
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
                content: Content::Message { part: part(index, count) },
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
        let len = ev.len as usize;
        let count = len.div_ceil(UDP_MAX_PAYLOAD).max(1);
        for index in 0..count {
            let offset = index * UDP_MAX_PAYLOAD;
            let sent = (len - offset).min(UDP_MAX_PAYLOAD);
            let captured = captured_slice(ev.data, offset, sent);
            self.buf.clear();
            push_udp_packet(&mut self.buf, &route.src, &route.dst, captured, sent);
            emit(Packet {
                bytes: &self.buf,
                orig_len: (ETH_LEN + IPV4_LEN + UDP_LEN + sent) as u32,
                direction: route.direction,
                content: Content::Message { part: part(index, count) },
            })?;
        }
        Ok(())
    }
}

fn part(index: usize, count: usize) -> Option<Part> {
    // Counts are at most len / 65495 + 1: they fit u32.
    (count > 1).then(|| Part { index: index as u32 + 1, count: count as u32 })
}

/// The captured bytes of the sent range `offset..offset + sent`.
fn captured_slice(data: &[u8], offset: usize, sent: usize) -> &[u8] {
    let start = offset.min(data.len());
    let end = (offset + sent).min(data.len());
    &data[start..end]
}

/// The Internet checksum (RFC 1071) of `parts`, each of even length but
/// the last.
fn checksum(parts: &[&[u8]]) -> u16 {
    let mut sum: u64 = 0;
    // a part of odd length leaves its last byte to pair with the next part
    let mut high: Option<u8> = None;
    for part in parts {
        let mut bytes = *part;
        if let Some(h) = high.take() {
            match bytes.split_first() {
                Some((&low, rest)) => {
                    sum += u64::from(u16::from_be_bytes([h, low]));
                    bytes = rest;
                }
                None => {
                    high = Some(h);
                    continue;
                }
            }
        }
        // one's complement addition is associative: add four words at a time
        let mut words = bytes.chunks_exact(8);
        for w in &mut words {
            let v = u64::from_be_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]]);
            sum += (v >> 48) + ((v >> 32) & 0xffff) + ((v >> 16) & 0xffff) + (v & 0xffff);
        }
        let mut pairs = words.remainder().chunks_exact(2);
        for p in &mut pairs {
            sum += u64::from(u16::from_be_bytes([p[0], p[1]]));
        }
        high = pairs.remainder().first().copied();
    }
    if let Some(h) = high {
        sum += u64::from(h) << 8;
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn push_ethernet(buf: &mut Vec<u8>, src: &Endpoint, dst: &Endpoint) {
    buf.extend_from_slice(&dst.mac());
    buf.extend_from_slice(&src.mac());
    buf.extend_from_slice(&0x0800u16.to_be_bytes());
}

/// `payload_len` counts the transport header and every sent byte.
fn push_ipv4(buf: &mut Vec<u8>, src: &Endpoint, dst: &Endpoint, protocol: u8, payload_len: usize) {
    let start = buf.len();
    // Callers keep payload_len <= 65515.
    let total = (IPV4_LEN + payload_len) as u16;
    buf.extend_from_slice(&[0x45, 0]);
    buf.extend_from_slice(&total.to_be_bytes());
    // id 0, don't fragment, TTL 64
    buf.extend_from_slice(&[0, 0, 0x40, 0, 64, protocol, 0, 0]);
    buf.extend_from_slice(&src.ip);
    buf.extend_from_slice(&dst.ip);
    let sum = checksum(&[&buf[start..]]);
    buf[start + 10..start + 12].copy_from_slice(&sum.to_be_bytes());
}

fn pseudo_header(src: &Endpoint, dst: &Endpoint, protocol: u8, len: usize) -> [u8; 12] {
    let [a, b, c, d] = src.ip;
    let [e, f, g, h] = dst.ip;
    // len <= 65515 (checked by the callers' split sizes)
    let [l1, l2] = (len as u16).to_be_bytes();
    [a, b, c, d, e, f, g, h, 0, protocol, l1, l2]
}

struct TcpSegment<'o> {
    seq: u32,
    ack: u32,
    flags: u8,
    options: &'o [u8],
}

/// A whole Ethernet/IPv4/TCP packet. `captured` may hold fewer bytes than
/// the `sent` ones the headers describe; the checksum is then left 0, as
/// it cannot be computed (Wireshark does not check TCP checksums by default).
fn push_tcp_packet(
    buf: &mut Vec<u8>,
    src: &Endpoint,
    dst: &Endpoint,
    segment: &TcpSegment<'_>,
    captured: &[u8],
    sent: usize,
) {
    let header_len = TCP_LEN + segment.options.len();
    push_ethernet(buf, src, dst);
    push_ipv4(buf, src, dst, 6, header_len + sent);
    let start = buf.len();
    buf.extend_from_slice(&src.port.to_be_bytes());
    buf.extend_from_slice(&dst.port.to_be_bytes());
    buf.extend_from_slice(&segment.seq.to_be_bytes());
    buf.extend_from_slice(&segment.ack.to_be_bytes());
    // header_len is 20 or 28: the data offset in 32-bit words.
    buf.push(((header_len / 4) as u8) << 4);
    buf.push(segment.flags);
    buf.extend_from_slice(&0xffffu16.to_be_bytes());
    buf.extend_from_slice(&[0, 0, 0, 0]);
    buf.extend_from_slice(segment.options);
    buf.extend_from_slice(captured);
    if captured.len() == sent {
        let pseudo = pseudo_header(src, dst, 6, header_len + sent);
        let sum = checksum(&[&pseudo, &buf[start..]]);
        buf[start + 16..start + 18].copy_from_slice(&sum.to_be_bytes());
    }
}

/// A whole Ethernet/IPv4/UDP packet; as for TCP, a cut-short payload has
/// no checksum (0 means none in UDP).
fn push_udp_packet(buf: &mut Vec<u8>, src: &Endpoint, dst: &Endpoint, captured: &[u8], sent: usize) {
    push_ethernet(buf, src, dst);
    push_ipv4(buf, src, dst, 17, UDP_LEN + sent);
    let start = buf.len();
    buf.extend_from_slice(&src.port.to_be_bytes());
    buf.extend_from_slice(&dst.port.to_be_bytes());
    // sent <= UDP_MAX_PAYLOAD
    buf.extend_from_slice(&((UDP_LEN + sent) as u16).to_be_bytes());
    buf.extend_from_slice(&[0, 0]);
    buf.extend_from_slice(captured);
    if captured.len() == sent {
        let pseudo = pseudo_header(src, dst, 17, UDP_LEN + sent);
        let sum = match checksum(&[&pseudo, &buf[start..]]) {
            // A computed 0 is sent as all ones (RFC 768).
            0 => 0xffff,
            sum => sum,
        };
        buf[start + 6..start + 8].copy_from_slice(&sum.to_be_bytes());
    }
}

/// Why a frame is not one of sockdump's Ethernet/IPv4 packets.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("the frame is shorter than its headers")]
    Short,
    #[error("the frame is not IPv4 over Ethernet")]
    NotIpv4,
    #[error("the IPv4 packet carries protocol {0}, not TCP or UDP")]
    Protocol(u8),
}

/// A parsed sockdump Ethernet frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParsedFrame<'a> {
    /// The captured payload bytes.
    pub payload: &'a [u8],
}

/// Finds the TCP or UDP payload in an Ethernet frame (as `-r` needs).
pub fn parse_frame(frame: &[u8]) -> Result<ParsedFrame<'_>, FrameError> {
    let ethertype = frame.get(12..14).ok_or(FrameError::Short)?;
    if ethertype != [0x08, 0x00] {
        return Err(FrameError::NotIpv4);
    }
    let ip = &frame[ETH_LEN..];
    let first = *ip.first().ok_or(FrameError::Short)?;
    if first >> 4 != 4 {
        return Err(FrameError::NotIpv4);
    }
    let ihl = usize::from(first & 15) * 4;
    if ihl < IPV4_LEN || ip.len() < ihl {
        return Err(FrameError::Short);
    }
    let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    // Ethernet may pad short frames: the IP length says where data ends.
    let ip = &ip[..ip.len().min(total.max(ihl))];
    let transport = &ip[ihl..];
    match ip[9] {
        6 => {
            let offset = usize::from(*transport.get(12).ok_or(FrameError::Short)? >> 4) * 4;
            if offset < TCP_LEN || transport.len() < offset {
                return Err(FrameError::Short);
            }
            Ok(ParsedFrame { payload: &transport[offset..] })
        }
        17 => Ok(ParsedFrame { payload: transport.get(UDP_LEN..).ok_or(FrameError::Short)? }),
        other => Err(FrameError::Protocol(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 1071, one 16-bit word at a time, over the parts joined.
    fn reference_checksum(parts: &[&[u8]]) -> u16 {
        let mut bytes: Vec<u8> = parts.concat();
        if bytes.len() % 2 == 1 {
            bytes.push(0);
        }
        let mut sum: u32 = bytes.chunks(2).map(|w| u32::from(u16::from_be_bytes([w[0], w[1]]))).sum();
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        !(sum as u16)
    }

    #[test]
    fn checksum_matches_rfc_1071_for_any_split() {
        let data: Vec<u8> = (0..301u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
        for cut in [0, 1, 7, 8, 13, 150, 300, 301] {
            for second in [cut, (cut + 3).min(301), 301] {
                let parts = [&data[..cut], &data[cut..second], &data[second..]];
                assert_eq!(checksum(&parts), reference_checksum(&parts), "cut {cut} {second}");
            }
        }
        assert_eq!(checksum(&[&[0xff; 64]]), reference_checksum(&[&[0xff; 64]]));
    }
    use sockdump_common::EventFlags;

    fn event<'a>(
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
    fn internet_checksum_matches_rfc1071_example() {
        // RFC 1071 section 3: the sum of these words is 0xddf2.
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(checksum(&[&data]), !0xddf2);
        assert_eq!(checksum(&[&data[..3], &data[3..]]), !0xddf2);
        // A known IPv4 header (Wikipedia's example): checksum 0xb861.
        let mut header = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8, 0x00, 0x01,
            0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert_eq!(checksum(&[&header]), 0xb861);
        header[10..12].copy_from_slice(&0xb861u16.to_be_bytes());
        assert_eq!(checksum(&[&header]), 0);
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
        assert_eq!(packets.len(), 4);
        let mut expect_seq = 1u32;
        let mut captured = 0;
        let mut sent = 0;
        for (i, (bytes, orig, _, content)) in packets.iter().enumerate() {
            assert_eq!(*content, Content::Message { part: Some(Part { index: i as u32 + 1, count: 4 }) });
            assert_eq!(u32::from_be_bytes(bytes[38..42].try_into().unwrap()), expect_seq);
            let seg = *orig as usize - 54;
            assert!(seg <= TCP_MAX_PAYLOAD);
            let total = u16::from_be_bytes([bytes[16], bytes[17]]) as usize;
            assert_eq!(total, 40 + seg, "IP length covers the sent bytes");
            expect_seq += seg as u32;
            sent += seg;
            captured += parse_frame(bytes).unwrap().payload.len();
        }
        assert_eq!((sent, captured), (len as usize, 65536));
        assert_eq!(packets[0].0.len(), 54 + TCP_MAX_PAYLOAD);
        assert_eq!(packets[1].0.len(), 54 + 65536 - TCP_MAX_PAYLOAD);
        assert_eq!(packets[2].0.len(), 54, "nothing captured of the rest");
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
    fn builtin_ports() {
        let stream = SockType::Stream;
        let port = |n: SocketName<'_>| builtin_port(n, stream);
        assert_eq!(port(SocketName::Path(b"/var/run/docker.sock")), Some(80));
        assert_eq!(port(SocketName::Path(b"/run/containerd/containerd.sock")), Some(80));
        assert_eq!(port(SocketName::Path(b"/run/containerd/containerd.sock.ttrpc")), None);
        assert_eq!(port(SocketName::Path(b"/run/postgresql/.s.PGSQL.5432")), Some(5432));
        assert_eq!(port(SocketName::Path(b"/tmp/.s.PGSQL.6543")), Some(6543));
        assert_eq!(port(SocketName::Path(b"/tmp/.s.PGSQL.x")), Some(5432));
        assert_eq!(port(SocketName::Path(b"/run/redis/redis-server.sock")), Some(6379));
        assert_eq!(port(SocketName::Path(b"/run/redis.sock")), Some(6379));
        assert_eq!(port(SocketName::Path(b"/run/mysqld/mysqld.sock")), Some(3306));
        assert_eq!(port(SocketName::Path(b"/var/lib/mysql/mysql.sock")), Some(3306));
        assert_eq!(port(SocketName::Path(b"/tmp/.X11-unix/X1")), Some(6001));
        assert_eq!(port(SocketName::Abstract(b"/tmp/.X11-unix/X0")), Some(6000));
        assert_eq!(port(SocketName::Path(b"/tmp/.X11-unix/X99")), None);
        assert_eq!(port(SocketName::Path(b"/dev/log")), None, "syslog is datagrams");
        assert_eq!(builtin_port(SocketName::Path(b"/dev/log"), SockType::Dgram), Some(514));
        assert_eq!(port(SocketName::Path(b"/run/app.sock")), None);
    }

    #[test]
    fn port_map_prefers_the_longest_user_prefix() {
        let map = PortMap::new(vec![
            "/run/app=8080".parse().unwrap(),
            "/run/app/admin=9090".parse().unwrap(),
            "@ns=1234".parse().unwrap(),
            "/run/docker.sock=2375".parse().unwrap(),
        ]);
        let st = SockType::Stream;
        assert_eq!(map.port_for(SocketName::Path(b"/run/app/x.sock"), st), Some(8080));
        assert_eq!(map.port_for(SocketName::Path(b"/run/app/admin.sock"), st), Some(9090));
        assert_eq!(map.port_for(SocketName::Abstract(b"ns/x"), st), Some(1234));
        assert_eq!(map.port_for(SocketName::Path(b"ns/x"), st), None);
        assert_eq!(map.port_for(SocketName::Path(b"/run/docker.sock"), st), Some(2375));
        assert_eq!(map.port_for(SocketName::Path(b"/run/mysqld/mysqld.sock"), st), Some(3306));
        assert_eq!(map.port_for(SocketName::Unnamed, st), None);
    }

    #[test]
    fn port_map_entries_parse() {
        let e: PortMapEntry = "/a=b=8080".parse().unwrap();
        assert_eq!((e.prefix.as_str(), e.port), ("/a=b", 8080));
        assert_eq!(e.to_string(), "/a=b=8080");
        assert!("/a".parse::<PortMapEntry>().is_err());
        assert!("=80".parse::<PortMapEntry>().is_err());
        assert!("/a=0".parse::<PortMapEntry>().is_err());
        assert!("/a=65536".parse::<PortMapEntry>().is_err());
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
