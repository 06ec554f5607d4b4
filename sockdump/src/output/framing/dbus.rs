//! D-Bus connections: a stream whose client starts with the SASL handshake
//! (a NUL byte, then `AUTH` lines) is followed; after the handshake (the
//! client's `BEGIN` line, the server's lines up to and after `OK`) its bytes
//! are cut into D-Bus messages, one packet each on the pcapng interface
//! with LINKTYPE_DBUS. The handshake, and everything on other connections,
//! stays with the ordinary framing.
//!
//! Pure and bounded: at most [`MAX_STREAMS`] streams are followed (the least
//! recently used is forgotten), a message keeps at most [`SNAPLEN`] bytes,
//! and messages spanning sends keep at most [`BUFFER_BUDGET`] bytes in all.
//! A header that is not D-Bus's, or bytes the kernel did not capture across
//! a message boundary, send the connection back to ordinary framing for
//! the rest of its life.

use foldhash::HashMap;

use sockdump_common::meta::Direction;
use sockdump_common::{abi, Event, EventFlags, SockType};

use super::SNAPLEN;

/// The fixed part of every message header.
const FIXED_HEADER: usize = 16;
/// The specification's limits: a whole message, and its header fields.
const MAX_MESSAGE: u32 = 1 << 27;
const MAX_FIELDS: u32 = 1 << 26;
/// Handshake bytes a side may send before it is not taken for D-Bus: real
/// handshakes are a few hundred.
const MAX_HANDSHAKE: u32 = 16 << 10;
/// Streams (one per direction of a connection) followed at once.
pub const MAX_STREAMS: usize = 4096;
/// Bytes kept of messages that span sends, all streams together; beyond,
/// messages keep fewer bytes (their packets are cut short).
pub const BUFFER_BUDGET: usize = 32 << 20;
/// Event flags that say bytes were not captured.
const TRUNCATION: u16 = abi::flag::TRUNC_SIZE | abi::flag::TRUNC_SEGS | abi::flag::UNREADABLE;

/// What the splitter makes of part of an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Piece<'a> {
    /// Bytes for the ordinary interface: `data` captured of `len` sent.
    Ordinary { data: &'a [u8], len: u32 },
    /// One D-Bus message: its captured bytes and its whole length.
    Message { data: &'a [u8], len: u32, direction: Direction },
}

/// The event a piece stands for: the same sender and details, the piece's
/// bytes and length. A piece with all its bytes loses the event's
/// truncation flags: the bytes the kernel missed were in another piece.
pub fn piece_event<'d>(ev: &Event<'d>, data: &'d [u8], len: u32) -> Event<'d> {
    let mut flags = ev.flags;
    if data.len() == len as usize {
        flags = EventFlags(flags.0 & !TRUNCATION);
    }
    Event { data, len, flags, ..ev.clone() }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Client,
    Server,
}

impl Role {
    fn direction(self) -> Direction {
        match self {
            Role::Client => Direction::Outbound,
            Role::Server => Direction::Inbound,
        }
    }
}

#[derive(Debug)]
enum Phase {
    /// The client sent the NUL byte in a write of its own: `AUTH` follows.
    Nul,
    Lines(Lines),
    Messages(Messages),
    /// Not (or no longer) D-Bus: ordinary framing for good.
    Ordinary,
}

impl Phase {
    /// Gives back what a message being gathered held of the budget.
    fn release(self, buffered: &mut usize) {
        if let Phase::Messages(Messages { current: Some(current), .. }) = self {
            current.release(buffered);
        }
    }
}

/// The SASL lines of one side.
#[derive(Debug, Default)]
struct Lines {
    /// Handshake bytes so far.
    bytes: u32,
    /// The current line's first bytes, and its length so far.
    start: [u8; 8],
    len: usize,
    /// The server said `OK`: a line starting like a message ends the lines.
    ok: bool,
}

enum Scan {
    /// The handshake ends this many bytes in.
    Done(usize),
    More,
    NotSasl,
}

impl Lines {
    fn scan(&mut self, role: Role, data: &[u8]) -> Scan {
        for (i, &b) in data.iter().enumerate() {
            // No server line starts with a message's endianness mark.
            if role == Role::Server && self.ok && self.len == 0 && (b == b'l' || b == b'B') {
                return Scan::Done(i);
            }
            self.bytes += 1;
            if self.bytes > MAX_HANDSHAKE || !(b.is_ascii_graphic() || b" \r\n\t".contains(&b)) {
                return Scan::NotSasl;
            }
            if let Some(slot) = self.start.get_mut(self.len) {
                *slot = b;
            }
            self.len += 1;
            if b == b'\n' {
                let line = &self.start[..self.len.min(self.start.len())];
                match role {
                    Role::Client if line == b"BEGIN\r\n" => return Scan::Done(i + 1),
                    Role::Server if line.starts_with(b"OK ") => self.ok = true,
                    _ => {}
                }
                self.len = 0;
            }
        }
        Scan::More
    }
}

/// Gathering messages.
#[derive(Debug, Default)]
struct Messages {
    /// The fixed header, while it arrives in pieces.
    head: [u8; FIXED_HEADER],
    head_len: usize,
    /// The message whose header was read.
    current: Option<Current>,
}

#[derive(Debug)]
struct Current {
    len: u32,
    /// Bytes of it sent so far, captured or not.
    seen: u32,
    kept: Vec<u8>,
    /// How many bytes it may keep; what `kept` holds against the budget.
    limit: usize,
    reserved: usize,
    /// The kernel missed some of its bytes: what follows them is not kept.
    holed: bool,
}

impl Current {
    fn new(len: u32, buffered: &mut usize) -> Current {
        let limit = (len as usize).min(SNAPLEN as usize).min(BUFFER_BUDGET.saturating_sub(*buffered));
        let kept = Vec::with_capacity(limit);
        let reserved = kept.capacity();
        *buffered += reserved;
        Current { len, seen: 0, kept, limit, reserved, holed: false }
    }

    fn take(&mut self, bytes: &[u8]) {
        if !self.holed {
            let room = self.limit - self.kept.len();
            self.kept.extend_from_slice(&bytes[..bytes.len().min(room)]);
        }
        // at most len - seen bytes are passed
        self.seen += bytes.len() as u32;
    }

    fn release(self, buffered: &mut usize) {
        *buffered -= self.reserved;
    }
}

/// The length of the message a fixed header starts, if it is a D-Bus
/// header: endianness `l` or `B`, type 1 to 4, version 1, a serial, and
/// lengths within the specification's limits.
fn message_len(header: &[u8]) -> Option<u32> {
    let word = |at: usize| -> Option<u32> {
        let bytes: [u8; 4] = header.get(at..at + 4)?.try_into().ok()?;
        match header[0] {
            b'l' => Some(u32::from_le_bytes(bytes)),
            _ => Some(u32::from_be_bytes(bytes)),
        }
    };
    let (&endian, &kind, &version) = (header.first()?, header.get(1)?, header.get(3)?);
    if !matches!(endian, b'l' | b'B') || !(1..=4).contains(&kind) || version != 1 || word(8)? == 0 {
        return None;
    }
    let (body, fields) = (word(4)?, word(12)?);
    if body > MAX_MESSAGE || fields > MAX_FIELDS {
        return None;
    }
    // the header fields are padded to 8 bytes
    let len = FIXED_HEADER as u32 + fields.next_multiple_of(8) + body;
    (len <= MAX_MESSAGE).then_some(len)
}

#[derive(Debug)]
struct Stream {
    role: Role,
    /// The other direction's stream (its sender's inode), 0 until known.
    partner: u64,
    phase: Phase,
    used: u64,
}

/// Follows D-Bus connections across events (see the module's comment).
#[derive(Debug, Default)]
pub struct DbusSplitter {
    /// By the sending socket's inode.
    streams: HashMap<u64, Stream>,
    tick: u64,
    /// Bytes reserved for messages spanning sends.
    buffered: usize,
    /// A leaving stream's header bytes and the rest of its event.
    scratch: Vec<u8>,
}

/// What became of a stream's event.
enum Outcome {
    /// It holds nothing for D-Bus: frame it whole.
    Whole,
    /// Its pieces were emitted.
    Split,
}

impl DbusSplitter {
    /// Cuts a D-Bus connection's event into pieces, calling `emit` for
    /// each in order. Returns false, having emitted nothing, when the
    /// event is to be framed whole as usual.
    pub fn split<E>(
        &mut self,
        ev: &Event<'_>,
        mut emit: impl FnMut(Piece<'_>) -> Result<(), E>,
    ) -> Result<bool, E> {
        if ev.sock_type != SockType::Stream || ev.sock_ino == 0 {
            return Ok(false);
        }
        self.tick += 1;
        let start = match self.streams.get(&ev.sock_ino) {
            Some(_) => 0,
            None => match self.begin(ev) {
                Some(start) => start,
                None => return Ok(false),
            },
        };
        let Self { streams, tick, buffered, scratch } = self;
        let Some(stream) = streams.get_mut(&ev.sock_ino) else { return Ok(false) };
        stream.used = *tick;
        let (outcome, left) = advance(stream, ev, start, buffered, scratch, &mut emit)?;
        if left {
            let partner = stream.partner;
            self.leave(ev.sock_ino);
            self.leave(partner);
        }
        Ok(matches!(outcome, Outcome::Split))
    }

    /// Starts following a stream this event opens: a client's SASL start,
    /// or the first answer on a followed client's connection. Returns where
    /// in the event the stream's bytes start.
    fn begin(&mut self, ev: &Event<'_>) -> Option<usize> {
        let (role, partner, start) = match ev.data.first() {
            Some(0) if ev.data.len() == 1 || sasl_auth(&ev.data[1..]) => (Role::Client, 0, 1),
            _ => {
                let client = self.streams.get(&ev.peer_ino).filter(|_| ev.peer_ino != 0)?;
                if client.role != Role::Client
                    || client.partner != 0
                    || matches!(client.phase, Phase::Ordinary)
                {
                    return None;
                }
                (Role::Server, ev.peer_ino, 0)
            }
        };
        if self.streams.len() >= MAX_STREAMS {
            self.forget_oldest();
        }
        if let Some(client) = self.streams.get_mut(&partner) {
            client.partner = ev.sock_ino;
        }
        let phase = match role {
            Role::Client => Phase::Nul,
            Role::Server => Phase::Lines(Lines::default()),
        };
        self.streams.insert(ev.sock_ino, Stream { role, partner, phase, used: self.tick });
        Some(start)
    }

    /// Forgets the least recently used eighth of the streams: a flood of
    /// new connections costs a scan per eighth, not per connection.
    fn forget_oldest(&mut self) {
        let mut ages: Vec<(u64, u64)> = self.streams.iter().map(|(&key, s)| (s.used, key)).collect();
        let cut = ages.len() / 8;
        if cut == 0 {
            return;
        }
        ages.select_nth_unstable(cut - 1);
        for (_, key) in &ages[..cut] {
            if let Some(stream) = self.streams.remove(key) {
                stream.phase.release(&mut self.buffered);
            }
        }
    }

    /// Ordinary framing for the stream, from now on.
    fn leave(&mut self, key: u64) {
        if let Some(stream) = self.streams.get_mut(&key) {
            std::mem::replace(&mut stream.phase, Phase::Ordinary).release(&mut self.buffered);
        }
    }

    /// Streams followed, and bytes reserved for messages spanning sends.
    #[cfg(test)]
    fn load(&self) -> (usize, usize) {
        (self.streams.len(), self.buffered)
    }
}

/// `AUTH` as a client's first SASL command: alone or with a mechanism.
fn sasl_auth(data: &[u8]) -> bool {
    data.starts_with(b"AUTH ") || data.starts_with(b"AUTH\r\n")
}

/// Runs a stream's event from `start` through its phases. Returns whether
/// pieces were emitted, and whether the connection leaves D-Bus framing.
fn advance<E>(
    stream: &mut Stream,
    ev: &Event<'_>,
    mut pos: usize,
    buffered: &mut usize,
    scratch: &mut Vec<u8>,
    emit: &mut impl FnMut(Piece<'_>) -> Result<(), E>,
) -> Result<(Outcome, bool), E> {
    let data = ev.data;
    let len = (ev.len as usize).max(data.len());
    loop {
        match &mut stream.phase {
            Phase::Ordinary => return Ok((Outcome::Whole, false)),
            Phase::Nul if pos == len => return Ok((Outcome::Whole, false)),
            Phase::Nul if sasl_auth(&data[pos.min(data.len())..]) => {
                stream.phase = Phase::Lines(Lines::default());
            }
            Phase::Nul => return Ok((Outcome::Whole, true)),
            Phase::Lines(lines) => match lines.scan(stream.role, &data[pos.min(data.len())..]) {
                Scan::Done(n) => {
                    pos += n;
                    stream.phase = Phase::Messages(Messages::default());
                    if pos == len {
                        return Ok((Outcome::Whole, false));
                    }
                    if pos > 0 {
                        emit(Piece::Ordinary { data: &data[..pos], len: pos as u32 })?;
                    }
                }
                // bytes the kernel missed may have ended the handshake
                Scan::More => return Ok((Outcome::Whole, data.len() < len)),
                Scan::NotSasl => return Ok((Outcome::Whole, true)),
            },
            Phase::Messages(messages) => {
                let direction = stream.role.direction();
                let left = messages.cut(data, len, pos, direction, buffered, scratch, emit)?;
                return Ok((Outcome::Split, left));
            }
        }
    }
}

impl Messages {
    /// Cuts `data` (captured of `len` sent) from `pos` into messages.
    /// Returns whether the connection leaves D-Bus framing: what was not
    /// made into messages was then emitted as an ordinary piece.
    #[allow(clippy::too_many_arguments)]
    fn cut<E>(
        &mut self,
        data: &[u8],
        len: usize,
        mut pos: usize,
        direction: Direction,
        buffered: &mut usize,
        scratch: &mut Vec<u8>,
        emit: &mut impl FnMut(Piece<'_>) -> Result<(), E>,
    ) -> Result<bool, E> {
        while pos < len {
            if self.current.is_none() {
                let rest = &data[pos.min(data.len())..];
                if self.head_len == 0 && rest.len() >= FIXED_HEADER {
                    let Some(whole) = message_len(rest) else { break };
                    // the common case: the message is all in this send
                    if let Some(message) = rest.get(..whole as usize) {
                        let kept = &message[..message.len().min(SNAPLEN as usize)];
                        emit(Piece::Message { data: kept, len: whole, direction })?;
                        pos += message.len();
                    } else {
                        self.current = Some(Current::new(whole, buffered));
                    }
                    continue;
                }
                // missed bytes where a header was due: the next one is lost
                if rest.is_empty() {
                    break;
                }
                let take = rest.len().min(FIXED_HEADER - self.head_len);
                self.head[self.head_len..self.head_len + take].copy_from_slice(&rest[..take]);
                self.head_len += take;
                pos += take;
                if self.head_len < FIXED_HEADER {
                    continue;
                }
                let Some(whole) = message_len(&self.head) else {
                    pos -= take;
                    self.head_len -= take;
                    break;
                };
                let mut current = Current::new(whole, buffered);
                current.take(&self.head);
                self.head_len = 0;
                self.current = Some(current);
            }
            let Some(current) = &mut self.current else { continue };
            let remaining = (current.len - current.seen) as usize;
            let available = data.len().saturating_sub(pos).min(remaining);
            if available > 0 {
                current.take(&data[pos..pos + available]);
                pos += available;
            } else if remaining > 0 {
                // missed bytes: crossed by count within the message
                let missed = (len - pos).min(remaining);
                current.holed = true;
                current.seen += missed as u32;
                pos += missed;
            }
            if current.seen == current.len {
                emit(Piece::Message { data: &current.kept, len: current.len, direction })?;
                if let Some(done) = self.current.take() {
                    done.release(buffered);
                }
            }
        }
        if pos >= len {
            return Ok(false);
        }
        // Not D-Bus from here on, or out of step: the header bytes held and
        // the rest of the event go to the ordinary interface.
        let rest = &data[pos.min(data.len())..];
        let sent = (len - pos + self.head_len) as u32;
        if self.head_len == 0 {
            emit(Piece::Ordinary { data: rest, len: sent })?;
        } else {
            scratch.clear();
            scratch.extend_from_slice(&self.head[..self.head_len]);
            scratch.extend_from_slice(rest);
            emit(Piece::Ordinary { data: scratch, len: sent })?;
        }
        Ok(true)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use sockdump_common::SocketName;

    const CLIENT: u64 = 100;
    const SERVER: u64 = 200;

    fn event(ino: u64, peer: u64, data: &[u8]) -> Event<'_> {
        let (client, server) = (SocketName::Unnamed, SocketName::Path(b"/run/bus"));
        let (path, peer_path) = if ino == SERVER { (server, client) } else { (client, server) };
        super::super::tests::event(path, peer_path, ino, peer, data, data.len() as u32)
    }

    /// What the splitter made of one event.
    #[derive(Debug, Clone, PartialEq, Eq)]
    enum Out {
        Whole,
        Ordinary(Vec<u8>, u32),
        Message(Vec<u8>, u32, Direction),
    }

    fn split(splitter: &mut DbusSplitter, ev: &Event<'_>) -> Vec<Out> {
        let mut out = Vec::new();
        let cut = splitter
            .split(ev, |piece| {
                out.push(match piece {
                    Piece::Ordinary { data, len } => Out::Ordinary(data.to_vec(), len),
                    Piece::Message { data, len, direction } => Out::Message(data.to_vec(), len, direction),
                });
                Ok::<(), ()>(())
            })
            .unwrap();
        if !cut {
            assert!(out.is_empty(), "a whole event emits nothing");
            out.push(Out::Whole);
        }
        out
    }

    /// A method call with `body` bytes, little- or big-endian.
    pub(crate) fn message(big_endian: bool, serial: u32, body: usize) -> Vec<u8> {
        let word = |n: u32| if big_endian { n.to_be_bytes() } else { n.to_le_bytes() };
        let mut m = vec![if big_endian { b'B' } else { b'l' }, 1, 0, 1];
        m.extend_from_slice(&word(body as u32));
        m.extend_from_slice(&word(serial));
        // one header field: PATH (1), signature 'o', "/a"
        let field = [1u8, 1, b'o', 0, 0, 0, 0, 0];
        let mut field = field.to_vec();
        field[4..8].copy_from_slice(&word(2));
        field.extend_from_slice(b"/a\0");
        m.extend_from_slice(&word(field.len() as u32));
        m.extend_from_slice(&field);
        m.resize(m.len().next_multiple_of(8), 0);
        m.extend((0..body).map(|i| (i % 251) as u8));
        m
    }

    const AUTH: &[u8] = b"AUTH EXTERNAL 30\r\n";
    const OK: &[u8] = b"OK 1234deadbeef1234deadbeef1234de\r\n";
    const BEGIN: &[u8] = b"BEGIN\r\n";

    /// A connection through its handshake: the NUL alone, AUTH, OK, BEGIN.
    fn authenticated() -> DbusSplitter {
        let mut s = DbusSplitter::default();
        assert_eq!(split(&mut s, &event(CLIENT, 0, b"\0")), [Out::Whole]);
        assert_eq!(split(&mut s, &event(CLIENT, 0, AUTH)), [Out::Whole]);
        assert_eq!(split(&mut s, &event(SERVER, CLIENT, OK)), [Out::Whole]);
        assert_eq!(split(&mut s, &event(CLIENT, SERVER, BEGIN)), [Out::Whole]);
        s
    }

    fn msg(m: &[u8], direction: Direction) -> Out {
        Out::Message(m.to_vec(), m.len() as u32, direction)
    }

    #[test]
    fn handshake_in_many_writes_then_messages_both_ways() {
        let mut s = authenticated();
        let hello = message(false, 1, 0);
        assert_eq!(split(&mut s, &event(CLIENT, SERVER, &hello)), [msg(&hello, Direction::Outbound)]);
        let reply = message(false, 1, 12);
        assert_eq!(split(&mut s, &event(SERVER, CLIENT, &reply)), [msg(&reply, Direction::Inbound)]);
        assert_eq!(s.load(), (2, 0));
    }

    #[test]
    fn handshake_in_one_write_with_the_first_message() {
        // sd-bus pipelines everything up to its Hello
        let mut s = DbusSplitter::default();
        let hello = message(false, 1, 0);
        let first =
            [b"\0AUTH EXTERNAL\r\nDATA\r\nNEGOTIATE_UNIX_FD\r\nBEGIN\r\n".as_slice(), &hello].concat();
        let handshake = first.len() - hello.len();
        assert_eq!(
            split(&mut s, &event(CLIENT, 0, &first)),
            [Out::Ordinary(first[..handshake].to_vec(), handshake as u32), msg(&hello, Direction::Outbound)]
        );
        // the server's lines in one write, then a message of its own
        let lines = b"DATA\r\nOK 0123456789abcdef\r\nAGREE_UNIX_FD\r\n";
        assert_eq!(split(&mut s, &event(SERVER, CLIENT, lines)), [Out::Whole]);
        let reply = message(false, 7, 3);
        assert_eq!(split(&mut s, &event(SERVER, CLIENT, &reply)), [msg(&reply, Direction::Inbound)]);
        // and the server's lines followed by a message in one write
        let mut s = DbusSplitter::default();
        split(&mut s, &event(CLIENT, 0, &first));
        let both = [lines.as_slice(), &reply].concat();
        assert_eq!(
            split(&mut s, &event(SERVER, CLIENT, &both)),
            [Out::Ordinary(lines.to_vec(), lines.len() as u32), msg(&reply, Direction::Inbound)]
        );
    }

    #[test]
    fn several_messages_in_one_write_and_one_over_many() {
        let mut s = authenticated();
        let (a, b, c) = (message(false, 2, 5), message(false, 3, 0), message(false, 4, 1000));
        let write = [a.as_slice(), &b, &c[..100]].concat();
        assert_eq!(
            split(&mut s, &event(CLIENT, SERVER, &write)),
            [msg(&a, Direction::Outbound), msg(&b, Direction::Outbound)]
        );
        assert!(s.load().1 >= c.len(), "the rest of c is kept");
        // the rest a byte at a time, then through the header of the next
        for byte in &c[100..c.len() - 1] {
            assert_eq!(split(&mut s, &event(CLIENT, SERVER, &[*byte])), []);
        }
        let d = message(false, 5, 2);
        let write = [&c[c.len() - 1..], &d[..3]].concat();
        assert_eq!(split(&mut s, &event(CLIENT, SERVER, &write)), [msg(&c, Direction::Outbound)]);
        assert_eq!(s.load().1, 0, "released once sent");
        for chunk in d[3..].chunks(5) {
            let out = split(&mut s, &event(CLIENT, SERVER, chunk));
            assert!(out.is_empty() || out == [msg(&d, Direction::Outbound)], "{out:?}");
        }
    }

    #[test]
    fn big_endian_messages() {
        let mut s = authenticated();
        let m = message(true, 9, 33);
        assert_eq!(split(&mut s, &event(CLIENT, SERVER, &m)), [msg(&m, Direction::Outbound)]);
        assert_eq!(message_len(&m), Some(m.len() as u32));
    }

    #[test]
    fn a_message_longer_than_the_kept_bytes_is_cut_short() {
        let mut s = authenticated();
        let big = message(false, 2, SNAPLEN as usize + 5000);
        let mut out = Vec::new();
        for chunk in big.chunks(60_000) {
            out.extend(split(&mut s, &event(CLIENT, SERVER, chunk)));
        }
        let cut = Out::Message(big[..SNAPLEN as usize].to_vec(), big.len() as u32, Direction::Outbound);
        assert_eq!(out, std::slice::from_ref(&cut));
        // in one write too: the packet holds the first SNAPLEN bytes
        assert_eq!(split(&mut s, &event(CLIENT, SERVER, &big)), [cut]);
    }

    #[test]
    fn an_invalid_header_leaves_dbus_for_good() {
        let mut s = authenticated();
        let good = message(false, 2, 0);
        let mut bad = message(false, 3, 0);
        bad[3] = 2; // version 2
                    // the bad header arrives in two writes: its bytes go out together
        let write = [good.as_slice(), &bad[..10]].concat();
        assert_eq!(split(&mut s, &event(CLIENT, SERVER, &write)), [msg(&good, Direction::Outbound)]);
        assert_eq!(
            split(&mut s, &event(CLIENT, SERVER, &bad[10..])),
            [Out::Ordinary(bad.clone(), bad.len() as u32)]
        );
        // both directions, and later valid messages
        assert_eq!(split(&mut s, &event(CLIENT, SERVER, &good)), [Out::Whole]);
        assert_eq!(split(&mut s, &event(SERVER, CLIENT, &good)), [Out::Whole]);
        for bad in [b"lx\0\x01".as_slice(), b"l\x01\0\x01\0\0\0\0\0\0\0\0\0\0\0\0", b"X\x01\0\x01"] {
            let mut header = bad.to_vec();
            header.resize(16, 0);
            assert_eq!(message_len(&header), None, "{bad:?}");
        }
        let mut huge = message(false, 1, 0);
        huge[4..8].copy_from_slice(&MAX_MESSAGE.to_le_bytes());
        assert_eq!(message_len(&huge), None, "longer than 128 MiB in all");
    }

    #[test]
    fn missed_bytes_are_crossed_inside_a_message_and_not_across() {
        let mut s = authenticated();
        let m = message(false, 2, 1000);
        // 600 bytes sent, 200 captured: the message goes on past the gap
        let mut ev = event(CLIENT, SERVER, &m[..200]);
        ev.len = 600;
        ev.flags = EventFlags(abi::flag::TRUNC_SIZE);
        assert_eq!(split(&mut s, &ev), []);
        let out = split(&mut s, &event(CLIENT, SERVER, &m[600..]));
        assert_eq!(out, [Out::Message(m[..200].to_vec(), m.len() as u32, Direction::Outbound)]);
        // a gap past the end of a message: that message is cut, the rest ordinary
        let next = message(false, 3, 100);
        let mut ev = event(CLIENT, SERVER, &next[..50]);
        ev.len = next.len() as u32 + 40;
        assert_eq!(
            split(&mut s, &ev),
            [
                Out::Message(next[..50].to_vec(), next.len() as u32, Direction::Outbound),
                Out::Ordinary(vec![], 40)
            ]
        );
        assert_eq!(split(&mut s, &event(CLIENT, SERVER, &m)), [Out::Whole]);
        assert_eq!(s.load().1, 0);
    }

    #[test]
    fn a_truncated_handshake_is_not_followed() {
        let mut s = DbusSplitter::default();
        let mut ev = event(CLIENT, 0, b"\0AUTH EXTERNAL 30\r\nBEG");
        ev.len = 200;
        assert_eq!(split(&mut s, &ev), [Out::Whole]);
        assert_eq!(split(&mut s, &event(CLIENT, 0, b"IN\r\n")), [Out::Whole]);
        assert_eq!(split(&mut s, &event(CLIENT, 0, &message(false, 1, 0))), [Out::Whole]);
    }

    #[test]
    fn connections_that_never_authenticate_stay_ordinary() {
        let mut s = DbusSplitter::default();
        // not SASL at all
        assert_eq!(split(&mut s, &event(CLIENT, 0, &message(false, 1, 0))), [Out::Whole]);
        assert_eq!(s.load().0, 0, "not followed");
        // the NUL, then something else
        assert_eq!(split(&mut s, &event(CLIENT, 0, b"\0")), [Out::Whole]);
        assert_eq!(split(&mut s, &event(CLIENT, 0, b"GET / HTTP/1.1\r\n")), [Out::Whole]);
        assert_eq!(split(&mut s, &event(CLIENT, 0, b"BEGIN\r\n")), [Out::Whole]);
        assert_eq!(split(&mut s, &event(CLIENT, 0, &message(false, 1, 0))), [Out::Whole]);
        // AUTH, rejected, never BEGIN: lines up to the handshake limit, then given up
        let mut s = DbusSplitter::default();
        assert_eq!(split(&mut s, &event(CLIENT, 0, b"\0AUTH EXTERNAL 30\r\n")), [Out::Whole]);
        assert_eq!(split(&mut s, &event(SERVER, CLIENT, b"REJECTED EXTERNAL\r\n")), [Out::Whole]);
        let m = message(false, 1, 0);
        assert_eq!(split(&mut s, &event(SERVER, CLIENT, &m)), [Out::Whole], "binary is not SASL");
        let line = vec![b'x'; 1000];
        for _ in 0..20 {
            assert_eq!(split(&mut s, &event(CLIENT, 0, &line)), [Out::Whole]);
        }
        assert_eq!(split(&mut s, &event(CLIENT, 0, b"\r\nBEGIN\r\n")), [Out::Whole]);
        assert_eq!(split(&mut s, &event(CLIENT, 0, &m)), [Out::Whole]);
        // datagrams are never D-Bus
        let mut s = DbusSplitter::default();
        let mut ev = event(CLIENT, 0, b"\0AUTH EXTERNAL\r\nBEGIN\r\n");
        ev.sock_type = SockType::Dgram;
        assert_eq!(split(&mut s, &ev), [Out::Whole]);
        assert_eq!(s.load().0, 0);
    }

    #[test]
    fn a_server_line_that_looks_like_a_message_waits_for_ok() {
        let mut s = DbusSplitter::default();
        split(&mut s, &event(CLIENT, 0, b"\0AUTH\r\n"));
        // before OK, 'l' and 'B' start ordinary lines
        assert_eq!(split(&mut s, &event(SERVER, CLIENT, b"REJECTED EXTERNAL\r\n")), [Out::Whole]);
        split(&mut s, &event(CLIENT, SERVER, b"AUTH EXTERNAL 30\r\n"));
        assert_eq!(split(&mut s, &event(SERVER, CLIENT, OK)), [Out::Whole]);
        split(&mut s, &event(CLIENT, SERVER, BEGIN));
        let m = message(true, 1, 0);
        assert_eq!(split(&mut s, &event(SERVER, CLIENT, &m)), [msg(&m, Direction::Inbound)]);
    }

    #[test]
    fn streams_and_buffers_are_bounded() {
        let mut s = DbusSplitter::default();
        // every stream holds part of a message as large as may be kept
        let big = message(false, 1, SNAPLEN as usize);
        let open = |s: &mut DbusSplitter, ino: u64| {
            split(s, &event(ino, 0, b"\0AUTH EXTERNAL 30\r\nBEGIN\r\n"));
            split(s, &event(ino, 0, &big[..100]));
            let (streams, buffered) = s.load();
            assert!(streams <= MAX_STREAMS && buffered <= BUFFER_BUDGET, "{streams} {buffered}");
        };
        let fill = (BUFFER_BUDGET / SNAPLEN as usize) as u64;
        for ino in 1..=fill + 1 {
            open(&mut s, ino);
        }
        assert_eq!(s.load(), (fill as usize + 1, BUFFER_BUDGET), "the budget is used");
        let out = split(&mut s, &event(fill + 1, 0, &big[100..]));
        assert_eq!(out, [Out::Message(vec![], big.len() as u32, Direction::Outbound)], "past the budget");
        let last = MAX_STREAMS as u64 + 100;
        for ino in fill + 2..=last {
            open(&mut s, ino);
        }
        // the oldest were forgotten: their next bytes are ordinary
        assert_eq!(split(&mut s, &event(1, 0, &big[100..])), [Out::Whole]);
        let out = split(&mut s, &event(last, 0, &big[100..]));
        assert!(matches!(&out[..], [Out::Message(_, len, _)] if *len == big.len() as u32), "{out:?}");
    }

    #[test]
    fn piece_events_keep_the_sender_and_drop_truncation_when_whole() {
        let mut ev = event(CLIENT, SERVER, b"abcdef");
        ev.len = 10;
        ev.flags = EventFlags(abi::flag::TRUNC_SIZE | abi::flag::PEER_IS_DEST);
        let whole = piece_event(&ev, b"abc", 3);
        assert_eq!(
            (whole.data, whole.len, whole.flags),
            (&b"abc"[..], 3, EventFlags(abi::flag::PEER_IS_DEST))
        );
        let cut = piece_event(&ev, b"ef", 6);
        assert_eq!(cut.flags, ev.flags);
        assert_eq!((cut.pid, cut.comm, cut.sock_ino), (ev.pid, ev.comm, ev.sock_ino));
    }

    #[test]
    fn hostile_bytes_never_panic() {
        let mut seed = 0x1234_5678u32;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            seed
        };
        for round in 0..200 {
            let mut s = authenticated();
            for _ in 0..50 {
                let n = (next() % 64) as usize;
                let mut bytes: Vec<u8> = (0..n).map(|_| next() as u8).collect();
                if round % 2 == 0 && n >= 16 {
                    bytes[..16].copy_from_slice(&message(false, 1, 0)[..16]);
                }
                let mut ev = event(if next() % 2 == 0 { CLIENT } else { SERVER }, 0, &bytes);
                ev.len += next() % 3 * 10;
                split(&mut s, &ev);
            }
            let (_, buffered) = s.load();
            assert!(buffered <= BUFFER_BUDGET);
        }
    }
}
