//! The synthetic network: an address per socket, and per conversation its
//! client and the next sequence number each way. Every table forgets what
//! went unused longest ([`Generations`]), so an endless capture of new
//! sockets keeps bounded memory while live conversations keep theirs.

use std::fmt;

use sockdump_common::meta::Direction;
use sockdump_common::{abi, Event, SockType, SocketName};

use super::ports::PortMap;
use crate::generations::Generations;

/// Port of a named stream server whose path is not recognised: unix
/// socket APIs are mostly HTTP (Docker, systemd, Kubernetes), and the HTTP
/// dissector hands HTTP/2 (gRPC) on by its connection preface.
pub const GENERIC_SERVER_PORT: u16 = 80;
/// Unnamed and client sockets get ports from here up; no dissector in
/// Wireshark claims this range for TCP or UDP.
pub const EPHEMERAL_BASE: u16 = 61000;
const EPHEMERAL_COUNT: u32 = 65536 - EPHEMERAL_BASE as u32;
/// Unnamed sockets, peers and conversations kept per generation: one not
/// used while this many others came is forgotten. 7/8 of 65536, where a
/// map's buckets double: each table stays at 65536 buckets (1.1-1.4 MiB).
const GENERATION: usize = 57344;
/// Named sockets kept per generation: they are few (servers, bound
/// datagram sockets), and each keeps its name.
const NAMED_GENERATION: usize = 7168;

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

/// A socket's endpoint: which one it is (its address follows) and its port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Ep {
    id: u32,
    port: u16,
}

impl Ep {
    fn endpoint(self) -> Endpoint {
        // 10.0.0.1 up to 10.255.255.254, then around again.
        let host = self.id % 0x00ff_fffe + 1;
        let [_, b, c, d] = host.to_be_bytes();
        Endpoint { ip: [10, b, c, d], port: self.port }
    }
}

/// What identifies a socket across messages: its name when it has one (an
/// unconnected send names its destination only by path, and every socket a
/// server accepts carries the listening socket's name, so all of them
/// share the server's address), else its inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Key {
    Inode(u64),
    /// The kind (`PATH` or `ABSTRACT`), then the name.
    Name {
        len: u8,
        bytes: [u8; abi::PATH_MAX + 1],
    },
}

const PATH: u8 = 1;
const ABSTRACT: u8 = 0;

impl Key {
    fn of(name: SocketName<'_>, ino: u64) -> Key {
        let (kind, name) = match name {
            SocketName::Unnamed => return Key::Inode(ino),
            SocketName::Path(p) => (PATH, p),
            SocketName::Abstract(n) => (ABSTRACT, n),
        };
        let len = name.len().min(abi::PATH_MAX);
        let mut bytes = [0u8; abi::PATH_MAX + 1];
        bytes[0] = kind;
        bytes[1..=len].copy_from_slice(&name[..len]);
        // len + 1 <= 109 fits a byte.
        Key::Name { len: len as u8 + 1, bytes }
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
pub(super) const CLIENT_ISN: u32 = 0;
pub(super) const SERVER_ISN: u32 = 0;

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

/// Addresses, roles and sequence numbers of the sockets seen lately.
#[derive(Debug)]
pub struct Tracker {
    unnamed: Generations<u64, Ep>,
    /// Names hold the names' bytes ([`Key::Name`]).
    named: Generations<Box<[u8]>, Ep>,
    conversations: Generations<(u32, u32), Conversation>,
    /// The receiver each connected (stream or seqpacket) socket last sent
    /// to, by its inode: a peer that closed its end before the send's hook
    /// ran shows no inode, and is still the same peer.
    partners: Generations<u64, Ep>,
    /// Counts every endpoint ever made: ids, and so addresses, are not
    /// reused for a long while.
    made: u32,
}

impl Default for Tracker {
    fn default() -> Self {
        Tracker {
            unnamed: Generations::new(GENERATION),
            named: Generations::new(NAMED_GENERATION),
            conversations: Generations::new(GENERATION),
            partners: Generations::new(GENERATION),
            made: 0,
        }
    }
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
    fn find(&mut self, key: &Key) -> Option<Ep> {
        match key {
            Key::Inode(ino) => self.unnamed.get(ino).copied(),
            Key::Name { len, bytes } => self.named.get(&bytes[..usize::from(*len)]).copied(),
        }
    }

    /// A new endpoint for `key`, replacing any it had.
    fn make(
        &mut self,
        key: &Key,
        name: SocketName<'_>,
        sock_type: SockType,
        serves: bool,
        ports: &PortMap,
    ) -> Ep {
        let id = self.made;
        self.made = self.made.wrapping_add(1);
        let ephemeral = EPHEMERAL_BASE + (id % EPHEMERAL_COUNT) as u16;
        let port = match ports.port_for(name, sock_type) {
            Some(port) => port,
            None if serves && name.is_named() && !sock_type.is_datagram() => GENERIC_SERVER_PORT,
            None => ephemeral,
        };
        let ep = Ep { id, port };
        match key {
            Key::Inode(ino) => self.unnamed.insert(*ino, ep),
            Key::Name { len, bytes } => self.named.insert(bytes[..usize::from(*len)].into(), ep),
        };
        ep
    }

    /// Routes one message, advancing its direction's sequence number by
    /// the bytes sent (not captured: the receiver got them all).
    pub fn route(&mut self, ev: &Event<'_>, ports: &PortMap) -> Route {
        let stream = !ev.sock_type.is_datagram();
        let sender_key = Key::of(ev.path, ev.sock_ino);
        let receiver_key = Key::of(ev.peer_path, ev.peer_ino);
        let connected = stream && ev.sock_ino != 0;
        let partner = if connected { self.partners.get(&ev.sock_ino).copied() } else { None };
        let sender = self.find(&sender_key);
        let receiver = match receiver_key {
            Key::Inode(0) if partner.is_some() => partner,
            _ => self.find(&receiver_key),
        };
        let (s, r, new_client) = match (sender, receiver) {
            (Some(s), Some(r)) if self.conversations.get(&pair(s.id, r.id)).is_some() => (s, r, None),
            _ => {
                let roles = sender_is_server(ev, ports);
                let serves = |sender: bool| roles == Some(sender);
                let mut s = match sender {
                    Some(s) => s,
                    None => self.make(&sender_key, ev.path, ev.sock_type, serves(true), ports),
                };
                let mut r = match receiver {
                    Some(r) => r,
                    None => self.make(&receiver_key, ev.peer_path, ev.sock_type, serves(false), ports),
                };
                // A connection whose conversation was forgotten opens anew
                // from a new client address: the old one's handshake and
                // sequence numbers are still in the file.
                let client_seen = if serves(true) { receiver.is_some() } else { sender.is_some() };
                if stream && client_seen && s.id != r.id {
                    if serves(true) {
                        r = self.make(&receiver_key, ev.peer_path, ev.sock_type, false, ports);
                    } else {
                        s = self.make(&sender_key, ev.path, ev.sock_type, false, ports);
                    }
                }
                (s, r, Some(if serves(true) { r.id } else { s.id }))
            }
        };
        if connected && partner != Some(r) {
            self.partners.insert(ev.sock_ino, r);
        }
        let conv = self.conversations.get_or_insert_with(pair(s.id, r.id), || Conversation {
            client: new_client.unwrap_or(s.id),
            next_seq: [CLIENT_ISN.wrapping_add(1), SERVER_ISN.wrapping_add(1)],
        });
        let from_client = conv.client == s.id;
        let (mine, theirs) = if from_client { (0, 1) } else { (1, 0) };
        let seq = conv.next_seq[mine];
        conv.next_seq[mine] = seq.wrapping_add(ev.len);
        // A socket sending to itself has one side only.
        let ack = if s.id == r.id { seq } else { conv.next_seq[theirs] };
        Route {
            src: s.endpoint(),
            dst: r.endpoint(),
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

#[cfg(test)]
mod tests {
    use super::super::tests::event;
    use super::*;

    fn pair_event(from: u64, to: u64, len: u32) -> Event<'static> {
        event(SocketName::Unnamed, SocketName::Unnamed, from, to, b"", len)
    }

    fn held(t: &Tracker) -> [usize; 4] {
        [t.unnamed.len(), t.named.len(), t.conversations.len(), t.partners.len()]
    }

    #[test]
    fn a_million_socketpairs_stay_within_the_tables_bounds() {
        let (mut t, ports) = (Tracker::default(), PortMap::default());
        let mut most = [0; 4];
        for n in 0..1_000_000u64 {
            let (a, b) = (2 * n + 10, 2 * n + 11);
            assert!(t.route(&pair_event(a, b, 5), &ports).opens);
            assert!(!t.route(&pair_event(b, a, 5), &ports).opens);
            for (most, now) in most.iter_mut().zip(held(&t)) {
                *most = (*most).max(now);
            }
        }
        assert!(most.iter().all(|&n| n <= 2 * GENERATION), "{most:?}");
        assert!(most[0] > GENERATION, "the bound was reached: {most:?}");
    }

    #[test]
    fn live_conversations_survive_a_flood_of_new_ones() {
        let (mut t, ports) = (Tracker::default(), PortMap::default());
        let server = SocketName::Path(b"/run/app.sock");
        let first = t.route(&event(SocketName::Unnamed, server, 1, 0, b"", 10), &ports);
        assert!(first.opens);
        let mut next_seq = 11;
        for n in 0..10 * GENERATION as u64 {
            t.route(&pair_event(100 + 2 * n, 101 + 2 * n, 1), &ports);
            // the live one speaks now and then, both ways
            if n % 10_000 == 0 {
                let out = t.route(&event(SocketName::Unnamed, server, 1, 0, b"", 3), &ports);
                assert!(!out.opens, "no new handshake after {n} others");
                assert_eq!((out.src, out.dst, out.seq), (first.src, first.dst, next_seq));
                next_seq += 3;
                let back = t.route(&event(server, SocketName::Unnamed, 2, 1, b"", 2), &ports);
                assert!(!back.opens);
                assert_eq!((back.src, back.dst, back.ack), (first.dst, first.src, next_seq));
            }
        }
    }

    #[test]
    fn a_forgotten_conversation_opens_again_from_a_new_address() {
        let (mut t, ports) = (Tracker::default(), PortMap::default());
        let server = SocketName::Path(b"/run/app.sock");
        let old = t.route(&event(SocketName::Unnamed, server, 1, 0, b"", 10), &ports);
        t.route(&event(SocketName::Unnamed, server, 1, 0, b"", 10), &ports);
        // the server stays in use by others; the idle client is forgotten
        for n in 0..3 * GENERATION as u64 {
            t.route(&event(SocketName::Unnamed, server, 100 + n, 0, b"", 1), &ports);
        }
        let again = t.route(&event(SocketName::Unnamed, server, 1, 0, b"", 4), &ports);
        assert!(again.opens, "a new handshake");
        assert_eq!((again.seq, again.ack), (CLIENT_ISN + 1, SERVER_ISN + 1));
        assert_eq!(again.dst, old.dst, "the same server");
        assert_ne!(again.src, old.src, "a new client address");
        let next = t.route(&event(SocketName::Unnamed, server, 1, 0, b"", 1), &ports);
        assert!(!next.opens);
        assert_eq!((next.src, next.seq), (again.src, 5));
    }

    #[test]
    fn a_conversation_forgotten_while_its_sockets_are_known_opens_from_a_new_client() {
        let (mut t, ports) = (Tracker::default(), PortMap::default());
        let old = t.route(&pair_event(1, 2, 1), &ports);
        // only the conversation table fills: the same two sockets stay known
        for n in 0..2 * GENERATION as u32 {
            t.conversations.insert((u32::MAX - n, u32::MAX), Conversation { client: 0, next_seq: [0; 2] });
        }
        assert!(t.conversations.peek(&pair(0, 1)).is_none(), "forgotten");
        let again = t.route(&pair_event(2, 1, 1), &ports);
        assert!(again.opens);
        assert_eq!(again.dst, old.src, "the receiver keeps its address");
        assert_ne!(again.src, old.dst, "the new client, the first sender, has a new one");
    }

    #[test]
    fn datagrams_among_many_bound_sockets_stay_bounded() {
        let (mut t, ports) = (Tracker::default(), PortMap::default());
        let names: Vec<String> = (0..600).map(|i| format!("/run/dgram/{i}")).collect();
        let mut most = [0; 4];
        for from in &names {
            for to in &names {
                let mut ev =
                    event(SocketName::Path(from.as_bytes()), SocketName::Path(to.as_bytes()), 1, 0, b"", 1);
                ev.sock_type = SockType::Dgram;
                t.route(&ev, &ports);
                for (most, now) in most.iter_mut().zip(held(&t)) {
                    *most = (*most).max(now);
                }
            }
        }
        // 360000 conversations went by
        assert!(most[2] <= 2 * GENERATION && most[2] > GENERATION, "{most:?}");
        assert!(most[1] <= 600, "{most:?}");
    }
}
