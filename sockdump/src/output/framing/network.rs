//! The synthetic network: an address per socket, and per conversation its
//! client and the next sequence number each way.

use std::fmt;
use std::hash::{Hash, Hasher};

use foldhash::HashMap;

use sockdump_common::meta::Direction;
use sockdump_common::{abi, Event, SockType, SocketName};

use super::ports::PortMap;

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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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

/// Hashes the bytes of a name that are used, not all `PATH_MAX`. Names
/// are chosen by whoever binds a socket: the tables' hasher is keyed.
impl Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        match self {
            Key::Path { len, bytes } => state.write(&bytes[..usize::from(*len)]),
            Key::Abstract { len, bytes } => {
                state.write_u8(0);
                state.write(&bytes[..usize::from(*len)]);
            }
            Key::Inode(ino) => state.write_u64(*ino),
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

/// Addresses, roles and sequence numbers for every socket seen so far.
#[derive(Debug, Default)]
pub struct Tracker {
    ids: HashMap<Key, u32>,
    endpoints: Vec<Endpoint>,
    conversations: HashMap<(u32, u32), Conversation>,
    /// The receiver each connected (stream or seqpacket) socket last sent
    /// to, by its inode: a peer that closed its end before the send's hook
    /// ran shows no inode, and is still the same peer.
    partners: HashMap<u64, Key>,
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
            self.partners.clear();
        }
        let sender_key = Key::of(ev.path, ev.sock_ino);
        let mut receiver_key = Key::of(ev.peer_path, ev.peer_ino);
        if !ev.sock_type.is_datagram() && ev.sock_ino != 0 {
            match receiver_key {
                Key::Inode(0) => {
                    if let Some(&partner) = self.partners.get(&ev.sock_ino) {
                        receiver_key = partner;
                    }
                }
                known => {
                    self.partners.insert(ev.sock_ino, known);
                }
            }
        }
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
