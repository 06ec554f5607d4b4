//! The metadata sockdump attaches to every packet it writes: one message's
//! process and socket details, as a `key=value` pcapng comment
//! ([`write_comment`] / [`parse_comment`]) and as the binary LINKTYPE_USER0
//! header ([`crate::user0`]). `docs/PCAPNG.md` documents both; the Wireshark
//! plugin in `wireshark/sockdump.lua` reads both.
//!
//! # Comment format, version 1
//!
//! One line of ASCII, fields separated by single spaces, each `key=value`,
//! always starting with `sockdump=1`:
//!
//! ```text
//! sockdump=1 pid=812 tid=812 comm=curl peer_pid=790 type=stream path= peer_path=/run/docker.sock ino=40211 peer_ino=40212 len=78 captured=78
//! ```
//!
//! Values are percent-encoded: every byte outside `!`..`~`, and `%` and `=`
//! themselves, is written `%XX` (two upper-case hex digits). So comm names and
//! paths with spaces, `=` or any bytes survive, and the comment stays valid
//! UTF-8 as pcapng requires. Socket names: empty for an unnamed socket, `@`
//! then the name for an abstract one (NUL bytes inside as `%00`), the path
//! otherwise (a path that itself starts with `@` has it written `%40`).
//! Readers ignore keys they do not know; a new major layout changes the
//! version number.

use std::fmt::Write as _;

use crate::abi;
use std::sync::Arc;

use crate::event::{Comm, Container, Context, Event, EventFlags, ProcessFacts, Reader, SockType, SocketName};

/// The version this module writes and reads.
pub const COMMENT_VERSION: u32 = 1;
/// Every sockdump comment starts with this.
pub const COMMENT_PREFIX: &str = "sockdump=1";

/// Which way a message went in its conversation; the pcapng EPB flags and
/// the USER0 header carry it. The client side's messages are outbound.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Direction {
    #[default]
    Unknown,
    /// Sent by the server side (the named socket) to the client.
    Inbound,
    /// Sent by the client side to the server (for socketpairs and other
    /// conversations with no named side: by the side that spoke first).
    Outbound,
}

impl Direction {
    /// The pcapng `epb_flags` direction bits (also the USER0 header byte).
    pub fn bits(self) -> u8 {
        match self {
            Self::Unknown => 0,
            Self::Inbound => 1,
            Self::Outbound => 2,
        }
    }

    pub fn from_bits(bits: u8) -> Self {
        match bits & 3 {
            1 => Self::Inbound,
            2 => Self::Outbound,
            _ => Self::Unknown,
        }
    }
}

/// Which part of a message a packet carries when the message was split
/// over several packets (1-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Part {
    pub index: u32,
    pub count: u32,
}

/// One message's details, borrowed from an [`Event`] or a parsed record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageMeta<'a> {
    pub pid: u32,
    pub tid: u32,
    pub comm: &'a [u8],
    pub peer_pid: u32,
    pub sock_type: SockType,
    pub sock_ino: u64,
    pub peer_ino: u64,
    pub path: SocketName<'a>,
    pub peer_path: SocketName<'a>,
    /// Bytes the kernel accepted.
    pub len: u32,
    /// Bytes captured (at most `len`).
    pub captured: u32,
    pub flags: EventFlags,
    pub reader: Reader,
    pub process: Option<ProcessFacts>,
    pub context: &'a Context,
}

impl<'a> MessageMeta<'a> {
    pub fn of(event: &'a Event<'a>) -> Self {
        MessageMeta {
            pid: event.pid,
            tid: event.tid,
            comm: event.comm,
            peer_pid: event.peer_pid,
            sock_type: event.sock_type,
            sock_ino: event.sock_ino,
            peer_ino: event.peer_ino,
            path: event.path,
            peer_path: event.peer_path,
            len: event.len,
            // Event::parse guarantees captured <= len <= u32::MAX.
            captured: u32::try_from(event.data.len()).unwrap_or(u32::MAX),
            flags: event.flags,
            reader: event.reader,
            process: event.process,
            context: &event.context,
        }
    }

    /// The event these details describe, with `data` as its captured bytes
    /// and `timestamp_ns` as its time.
    pub fn to_event<'d>(&self, timestamp_ns: u64, data: &'d [u8]) -> Event<'d>
    where
        'a: 'd,
    {
        Event {
            timestamp_ns,
            sock_ino: self.sock_ino,
            peer_ino: self.peer_ino,
            pid: self.pid,
            tid: self.tid,
            peer_pid: self.peer_pid,
            // An event never holds more bytes than were sent.
            len: self.len.max(u32::try_from(data.len()).unwrap_or(u32::MAX)),
            sock_type: self.sock_type,
            flags: self.flags,
            comm: self.comm,
            path: self.path,
            peer_path: self.peer_path,
            data,
            rx_sock: 0,
            rx_pos: 0,
            reader: self.reader,
            process: self.process,
            context: self.context.clone(),
        }
    }
}

/// A socket name that owns its bytes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub enum OwnedName {
    #[default]
    Unnamed,
    Path(Vec<u8>),
    Abstract(Vec<u8>),
}

impl OwnedName {
    pub fn of(name: SocketName<'_>) -> Self {
        match name {
            SocketName::Unnamed => Self::Unnamed,
            SocketName::Path(p) => Self::Path(p.to_vec()),
            SocketName::Abstract(n) => Self::Abstract(n.to_vec()),
        }
    }

    pub fn as_name(&self) -> SocketName<'_> {
        match self {
            Self::Unnamed => SocketName::Unnamed,
            Self::Path(p) => SocketName::Path(p),
            Self::Abstract(n) => SocketName::Abstract(n),
        }
    }
}

/// [`MessageMeta`] owning its bytes, as [`parse_comment`] returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedMeta {
    pub pid: u32,
    pub tid: u32,
    pub comm: Vec<u8>,
    pub peer_pid: u32,
    pub sock_type: SockType,
    pub sock_ino: u64,
    pub peer_ino: u64,
    pub path: OwnedName,
    pub peer_path: OwnedName,
    pub len: u32,
    pub captured: u32,
    pub flags: EventFlags,
    pub reader: Reader,
    pub process: Option<ProcessFacts>,
    pub context: Context,
}

impl OwnedMeta {
    pub fn of(meta: &MessageMeta<'_>) -> Self {
        OwnedMeta {
            pid: meta.pid,
            tid: meta.tid,
            comm: meta.comm.to_vec(),
            peer_pid: meta.peer_pid,
            sock_type: meta.sock_type,
            sock_ino: meta.sock_ino,
            peer_ino: meta.peer_ino,
            path: OwnedName::of(meta.path),
            peer_path: OwnedName::of(meta.peer_path),
            len: meta.len,
            captured: meta.captured,
            flags: meta.flags,
            reader: meta.reader,
            process: meta.process,
            context: meta.context.clone(),
        }
    }

    pub fn borrow(&self) -> MessageMeta<'_> {
        MessageMeta {
            pid: self.pid,
            tid: self.tid,
            comm: &self.comm,
            peer_pid: self.peer_pid,
            sock_type: self.sock_type,
            sock_ino: self.sock_ino,
            peer_ino: self.peer_ino,
            path: self.path.as_name(),
            peer_path: self.peer_path.as_name(),
            len: self.len,
            captured: self.captured,
            flags: self.flags,
            reader: self.reader,
            process: self.process,
            context: &self.context,
        }
    }
}

/// Flag names in bit order, as comments and JSON lines write them.
pub const FLAG_NAMES: [(u16, &str); 4] = [
    (abi::flag::TRUNC_SIZE, "trunc_size"),
    (abi::flag::TRUNC_SEGS, "trunc_segs"),
    (abi::flag::UNREADABLE, "unreadable"),
    (abi::flag::PEER_IS_DEST, "peer_is_dest"),
];

fn needs_escape(b: u8) -> bool {
    !(b'!'..=b'~').contains(&b) || b == b'%' || b == b'='
}

/// Appends `bytes` percent-encoded.
pub fn escape_into(out: &mut String, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    // Bytes that need no escape are printable ASCII (valid UTF-8):
    // appended a run at a time, without checking them again (a third of
    // the time escaping took).
    fn ascii(run: &[u8]) -> &str {
        debug_assert!(run.iter().all(|&b| !needs_escape(b)));
        // SAFETY: every byte of `run` is in b'!'..=b'~' (the callers cut
        // runs at the first byte needs_escape() accepts), so it is ASCII
        unsafe { std::str::from_utf8_unchecked(run) }
    }
    let mut rest = bytes;
    while let Some(i) = rest.iter().position(|&b| needs_escape(b)) {
        out.push_str(ascii(&rest[..i]));
        let b = rest[i];
        out.push('%');
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 15)]));
        rest = &rest[i + 1..];
    }
    out.push_str(ascii(rest));
}

/// Appends a socket name as comments write it.
pub fn escape_name_into(out: &mut String, name: SocketName<'_>) {
    match name {
        SocketName::Unnamed => {}
        SocketName::Abstract(n) => {
            out.push('@');
            escape_into(out, n);
        }
        SocketName::Path(p) => match p.split_first() {
            Some((b'@', rest)) => {
                out.push_str("%40");
                escape_into(out, rest);
            }
            _ => escape_into(out, p),
        },
    }
}

/// Writes the comment for one packet of a message (replacing `out`'s content).
pub fn write_comment(out: &mut String, meta: &MessageMeta<'_>, part: Option<Part>) {
    write_fields(out, meta, |out| write_context(out, meta.context), part);
}

/// Writes comments as [`write_comment`] does, rendering a message's context
/// (command lines, containers) once for the last few contexts seen: a
/// flood comes from few processes talking to each other, and escaping
/// their command lines again for every packet cost a tenth of the pcapng
/// sink's time.
#[derive(Debug, Default)]
pub struct CommentWriter {
    /// Contexts and their rendering, the newest last.
    rendered: Vec<(Context, String)>,
}

/// Contexts [`CommentWriter`] keeps rendered.
const RENDERED_CONTEXTS: usize = 8;

impl CommentWriter {
    pub fn write(&mut self, out: &mut String, meta: &MessageMeta<'_>, part: Option<Part>) {
        let found = self.rendered.iter().rposition(|(context, _)| context == meta.context);
        let index = found.unwrap_or_else(|| {
            if self.rendered.len() == RENDERED_CONTEXTS {
                self.rendered.remove(0);
            }
            let mut text = String::new();
            write_context(&mut text, meta.context);
            self.rendered.push((meta.context.clone(), text));
            self.rendered.len() - 1
        });
        write_fields(out, meta, |out| out.push_str(&self.rendered[index].1), part);
    }
}

fn write_fields(
    out: &mut String,
    meta: &MessageMeta<'_>,
    context: impl FnOnce(&mut String),
    part: Option<Part>,
) {
    // Numbers through itoa: fmt was a fifth of the pcapng sink's time.
    let mut digits = itoa::Buffer::new();
    let mut number = |out: &mut String, key: &str, n: u64| {
        out.push_str(key);
        out.push_str(digits.format(n));
    };
    out.clear();
    out.push_str(COMMENT_PREFIX);
    number(out, " pid=", meta.pid.into());
    number(out, " tid=", meta.tid.into());
    out.push_str(" comm=");
    escape_into(out, meta.comm);
    number(out, " peer_pid=", meta.peer_pid.into());
    // `type=`: the name, or the raw number for types sockdump does not name.
    match meta.sock_type {
        SockType::Other(raw) => number(out, " type=", raw.into()),
        known => {
            out.push_str(" type=");
            out.push_str(known.name());
        }
    }
    out.push_str(" path=");
    escape_name_into(out, meta.path);
    out.push_str(" peer_path=");
    escape_name_into(out, meta.peer_path);
    number(out, " ino=", meta.sock_ino);
    number(out, " peer_ino=", meta.peer_ino);
    number(out, " len=", meta.len.into());
    number(out, " captured=", meta.captured.into());
    if meta.flags.0 != 0 {
        out.push_str(" flags=");
        let mut rest = meta.flags.0;
        let mut first = true;
        for (bit, name) in FLAG_NAMES {
            if rest & bit != 0 {
                if !first {
                    out.push(',');
                }
                out.push_str(name);
                first = false;
                rest &= !bit;
            }
        }
        if rest != 0 {
            if !first {
                out.push(',');
            }
            let _ = write!(out, "{rest:#x}");
        }
    }
    match meta.reader {
        Reader::Unknown => {}
        Reader::NotSeen => out.push_str(" reader=none"),
        Reader::Thread { pid, tid, comm, others, uid, cgroup_id } => {
            number(out, " reader_pid=", pid.into());
            number(out, " reader_tid=", tid.into());
            out.push_str(" reader_comm=");
            escape_into(out, comm.as_bytes());
            if others > 0 {
                number(out, " readers=", u64::from(others) + 1);
            }
            if let Some(uid) = uid {
                number(out, " reader_uid=", uid.into());
            }
            if cgroup_id != 0 {
                number(out, " reader_cgroup=", cgroup_id);
            }
        }
    }
    if let Some(p) = meta.process {
        number(out, " uid=", p.uid.into());
        number(out, " gid=", p.gid.into());
        number(out, " ppid=", p.ppid.into());
        out.push_str(" pcomm=");
        escape_into(out, p.parent_comm.as_bytes());
        number(out, " cgroup=", p.cgroup_id);
    }
    context(out);
    if let Some(part) = part {
        number(out, " part=", part.index.into());
        number(out, "/", part.count.into());
    }
}

/// The keys of what user space added: command lines and containers.
fn write_context(out: &mut String, context: &Context) {
    let mut text = |key: &str, value: Option<&str>| {
        if let Some(value) = value {
            out.push_str(key);
            escape_into(out, value.as_bytes());
        }
    };
    text(" args=", context.args.as_deref());
    for (prefix, container) in [("", &context.container), ("reader_", &context.reader_container)] {
        let Some(c) = container else { continue };
        text(&format!(" {prefix}container_id="), Some(&c.id));
        text(&format!(" {prefix}container="), c.name.as_deref());
        if prefix.is_empty() {
            text(" image=", c.image.as_deref());
            text(" pod=", c.pod.as_deref());
            text(" namespace=", c.namespace.as_deref());
        }
    }
    text(" reader_args=", context.reader_args.as_deref());
}

/// What a packet that no process sent stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Synthetic {
    /// The SYN, SYN-ACK and ACK that open a TCP stream in the Ethernet
    /// framing, so tools see a complete connection.
    Handshake,
}

impl Synthetic {
    pub fn name(self) -> &'static str {
        match self {
            Self::Handshake => "handshake",
        }
    }
}

/// Writes the comment of a synthetic packet.
pub fn write_synthetic_comment(out: &mut String, what: Synthetic) {
    out.clear();
    out.push_str(COMMENT_PREFIX);
    out.push_str(" synthetic=");
    out.push_str(what.name());
}

/// A parsed sockdump comment.
// parsed one packet at a time, never stored in bulk: boxing would only cost
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Comment {
    Message { meta: OwnedMeta, part: Option<Part> },
    Synthetic(Synthetic),
}

/// Why a comment is not a sockdump comment this version understands.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommentError {
    #[error("not a sockdump comment (it does not start with `sockdump=`)")]
    NotSockdump,
    #[error("sockdump comment version {0} is not supported (this sockdump reads version {COMMENT_VERSION})")]
    Version(String),
    #[error("sockdump comment has no `{0}=`")]
    Missing(&'static str),
    #[error("sockdump comment has a bad `{key}=` value: {value:?}")]
    Bad { key: &'static str, value: String },
    #[error("sockdump comment field {0:?} is not key=value")]
    NotKeyValue(String),
}

/// Whether a comment was written by sockdump (of any version).
pub fn is_sockdump_comment(comment: &str) -> bool {
    comment.starts_with("sockdump=")
}

/// Decodes percent-encoding; `None` on a malformed escape.
pub fn unescape(value: &str) -> Option<Vec<u8>> {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Some(out)
}

fn unescape_name(value: &str) -> Option<OwnedName> {
    if value.is_empty() {
        return Some(OwnedName::Unnamed);
    }
    if let Some(rest) = value.strip_prefix('@') {
        let name = unescape(rest)?;
        return (name.len() < abi::PATH_MAX).then_some(OwnedName::Abstract(name));
    }
    let path = unescape(value)?;
    // A filesystem path ends at its first NUL, so it cannot hold one.
    (path.len() <= abi::PATH_MAX && !path.contains(&0)).then_some(OwnedName::Path(path))
}

fn parse_sock_type(value: &str) -> Option<SockType> {
    match value {
        "stream" => Some(SockType::Stream),
        "dgram" => Some(SockType::Dgram),
        "seqpacket" => Some(SockType::SeqPacket),
        number => number.parse().ok().map(SockType::from_raw),
    }
}

fn parse_flags(value: &str) -> Option<EventFlags> {
    let mut bits = 0u16;
    for token in value.split(',').filter(|t| !t.is_empty()) {
        bits |= match FLAG_NAMES.iter().find(|(_, name)| *name == token) {
            Some((bit, _)) => *bit,
            None => u16::from_str_radix(token.strip_prefix("0x")?, 16).ok()?,
        };
    }
    Some(EventFlags(bits))
}

fn parse_part(value: &str) -> Option<Part> {
    let (index, count) = value.split_once('/')?;
    let part = Part { index: index.parse().ok()?, count: count.parse().ok()? };
    (part.index >= 1 && part.index <= part.count).then_some(part)
}

#[derive(Default)]
struct Fields<'c> {
    pid: Option<&'c str>,
    tid: Option<&'c str>,
    comm: Option<&'c str>,
    peer_pid: Option<&'c str>,
    sock_type: Option<&'c str>,
    path: Option<&'c str>,
    peer_path: Option<&'c str>,
    ino: Option<&'c str>,
    peer_ino: Option<&'c str>,
    len: Option<&'c str>,
    captured: Option<&'c str>,
    flags: Option<&'c str>,
    part: Option<&'c str>,
    synthetic: Option<&'c str>,
    reader: Option<&'c str>,
    reader_pid: Option<&'c str>,
    reader_tid: Option<&'c str>,
    reader_comm: Option<&'c str>,
    readers: Option<&'c str>,
    reader_uid: Option<&'c str>,
    reader_cgroup: Option<&'c str>,
    uid: Option<&'c str>,
    gid: Option<&'c str>,
    ppid: Option<&'c str>,
    pcomm: Option<&'c str>,
    cgroup: Option<&'c str>,
    args: Option<&'c str>,
    container_id: Option<&'c str>,
    container: Option<&'c str>,
    image: Option<&'c str>,
    pod: Option<&'c str>,
    namespace: Option<&'c str>,
    reader_args: Option<&'c str>,
    reader_container_id: Option<&'c str>,
    reader_container: Option<&'c str>,
}

fn need<'c>(value: Option<&'c str>, key: &'static str) -> Result<&'c str, CommentError> {
    value.ok_or(CommentError::Missing(key))
}

fn bad(key: &'static str, value: &str) -> CommentError {
    CommentError::Bad { key, value: value.to_owned() }
}

fn number<T: std::str::FromStr>(value: Option<&str>, key: &'static str) -> Result<T, CommentError> {
    let value = need(value, key)?;
    value.parse().map_err(|_| bad(key, value))
}

/// Parses a comment [`write_comment`] or [`write_synthetic_comment`] wrote.
pub fn parse_comment(comment: &str) -> Result<Comment, CommentError> {
    let comment = comment.trim_end_matches(['\r', '\n']);
    let mut tokens = comment.split(' ').filter(|t| !t.is_empty());
    let version = tokens.next().and_then(|t| t.strip_prefix("sockdump=")).ok_or(CommentError::NotSockdump)?;
    if version != "1" {
        return Err(CommentError::Version(version.to_owned()));
    }
    let mut f = Fields::default();
    for token in tokens {
        let (key, value) =
            token.split_once('=').ok_or_else(|| CommentError::NotKeyValue(token.to_owned()))?;
        let slot = match key {
            "pid" => &mut f.pid,
            "tid" => &mut f.tid,
            "comm" => &mut f.comm,
            "peer_pid" => &mut f.peer_pid,
            "type" => &mut f.sock_type,
            "path" => &mut f.path,
            "peer_path" => &mut f.peer_path,
            "ino" => &mut f.ino,
            "peer_ino" => &mut f.peer_ino,
            "len" => &mut f.len,
            "captured" => &mut f.captured,
            "flags" => &mut f.flags,
            "part" => &mut f.part,
            "synthetic" => &mut f.synthetic,
            "reader" => &mut f.reader,
            "reader_pid" => &mut f.reader_pid,
            "reader_tid" => &mut f.reader_tid,
            "reader_comm" => &mut f.reader_comm,
            "readers" => &mut f.readers,
            "reader_uid" => &mut f.reader_uid,
            "reader_cgroup" => &mut f.reader_cgroup,
            "uid" => &mut f.uid,
            "gid" => &mut f.gid,
            "ppid" => &mut f.ppid,
            "pcomm" => &mut f.pcomm,
            "cgroup" => &mut f.cgroup,
            "args" => &mut f.args,
            "container_id" => &mut f.container_id,
            "container" => &mut f.container,
            "image" => &mut f.image,
            "pod" => &mut f.pod,
            "namespace" => &mut f.namespace,
            "reader_args" => &mut f.reader_args,
            "reader_container_id" => &mut f.reader_container_id,
            "reader_container" => &mut f.reader_container,
            // Later writers may add keys: skip what this reader does not know.
            _ => continue,
        };
        *slot = Some(value);
    }
    if let Some(what) = f.synthetic {
        return match what {
            "handshake" => Ok(Comment::Synthetic(Synthetic::Handshake)),
            other => Err(bad("synthetic", other)),
        };
    }
    let comm_value = need(f.comm, "comm")?;
    let comm =
        unescape(comm_value).filter(|c| c.len() <= abi::COMM_LEN).ok_or_else(|| bad("comm", comm_value))?;
    let type_value = need(f.sock_type, "type")?;
    let sock_type = parse_sock_type(type_value).ok_or_else(|| bad("type", type_value))?;
    let path_value = need(f.path, "path")?;
    let path = unescape_name(path_value).ok_or_else(|| bad("path", path_value))?;
    let peer_value = need(f.peer_path, "peer_path")?;
    let peer_path = unescape_name(peer_value).ok_or_else(|| bad("peer_path", peer_value))?;
    let flags = match f.flags {
        None => EventFlags::default(),
        Some(value) => parse_flags(value).ok_or_else(|| bad("flags", value))?,
    };
    let part = match f.part {
        None => None,
        Some(value) => Some(parse_part(value).ok_or_else(|| bad("part", value))?),
    };
    let reader = parse_reader(&f)?;
    let len: u32 = number(f.len, "len")?;
    let captured: u32 = number(f.captured, "captured")?;
    if captured > len {
        return Err(bad("captured", need(f.captured, "captured")?));
    }
    Ok(Comment::Message {
        meta: OwnedMeta {
            pid: number(f.pid, "pid")?,
            tid: number(f.tid, "tid")?,
            comm,
            peer_pid: number(f.peer_pid, "peer_pid")?,
            sock_type,
            sock_ino: number(f.ino, "ino")?,
            peer_ino: number(f.peer_ino, "peer_ino")?,
            path,
            peer_path,
            len,
            captured,
            flags,
            reader,
            process: parse_process(&f)?,
            context: parse_context(&f)?,
        },
        part,
    })
}

/// `uid`, `gid`, `ppid`, `pcomm` and `cgroup`: all or none.
fn parse_process(f: &Fields<'_>) -> Result<Option<ProcessFacts>, CommentError> {
    if f.uid.is_none() {
        return Ok(None);
    }
    // a thread name is bytes, not text: as `comm`, never made UTF-8
    let pcomm = match f.pcomm {
        None => Vec::new(),
        Some(value) => {
            unescape(value).filter(|c| c.len() < abi::COMM_LEN).ok_or_else(|| bad("pcomm", value))?
        }
    };
    Ok(Some(ProcessFacts {
        uid: number(f.uid, "uid")?,
        gid: number(f.gid, "gid")?,
        ppid: number(f.ppid, "ppid")?,
        parent_comm: Comm::new(&pcomm),
        cgroup_id: number(f.cgroup, "cgroup")?,
    }))
}

/// A percent-encoded text value, None when the key is absent; bytes that
/// are not UTF-8 become U+FFFD.
fn text(value: Option<&str>, key: &'static str) -> Result<Option<String>, CommentError> {
    value
        .map(|v| unescape(v).map(|b| String::from_utf8_lossy(&b).into_owned()).ok_or_else(|| bad(key, v)))
        .transpose()
}

fn parse_context(f: &Fields<'_>) -> Result<Context, CommentError> {
    let container = |id: Option<&str>, id_key, name: Option<&str>, name_key, with_labels: bool| {
        let Some(id) = text(id, id_key)? else { return Ok(None) };
        let labels = |value, key| if with_labels { text(value, key) } else { Ok(None) };
        Ok::<_, CommentError>(Some(Arc::new(Container {
            id,
            name: text(name, name_key)?,
            image: labels(f.image, "image")?,
            pod: labels(f.pod, "pod")?,
            namespace: labels(f.namespace, "namespace")?,
        })))
    };
    Ok(Context {
        args: text(f.args, "args")?.map(Arc::from),
        container: container(f.container_id, "container_id", f.container, "container", true)?,
        reader_args: text(f.reader_args, "reader_args")?.map(Arc::from),
        reader_container: container(
            f.reader_container_id,
            "reader_container_id",
            f.reader_container,
            "reader_container",
            false,
        )?,
    })
}

/// The reader keys: `reader_pid`, `reader_tid`, `reader_comm` and
/// `readers` (threads that read parts, when more than one), or
/// `reader=none`; neither when the capture did not see readers.
fn parse_reader(f: &Fields<'_>) -> Result<Reader, CommentError> {
    if let Some(value) = f.reader {
        return if value == "none" { Ok(Reader::NotSeen) } else { Err(bad("reader", value)) };
    }
    if f.reader_pid.is_none() {
        return Ok(Reader::Unknown);
    }
    let comm_value = need(f.reader_comm, "reader_comm")?;
    let comm = unescape(comm_value)
        .filter(|c| c.len() < abi::COMM_LEN)
        .ok_or_else(|| bad("reader_comm", comm_value))?;
    let readers: u32 = match f.readers {
        None => 1,
        Some(_) => number(f.readers, "readers")?,
    };
    if readers == 0 {
        return Err(bad("readers", "0"));
    }
    Ok(Reader::Thread {
        pid: number(f.reader_pid, "reader_pid")?,
        tid: number(f.reader_tid, "reader_tid")?,
        comm: Comm::new(&comm),
        others: readers - 1,
        uid: f.reader_uid.map(|_| number(f.reader_uid, "reader_uid")).transpose()?,
        cgroup_id: f.reader_cgroup.map_or(Ok(0), |_| number(f.reader_cgroup, "reader_cgroup"))?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta<'a>(comm: &'a [u8], path: SocketName<'a>, peer: SocketName<'a>) -> MessageMeta<'a> {
        MessageMeta {
            pid: 812,
            tid: 813,
            comm,
            peer_pid: 790,
            sock_type: SockType::Stream,
            sock_ino: 40211,
            peer_ino: 40212,
            path,
            peer_path: peer,
            len: 78,
            captured: 78,
            flags: EventFlags::default(),
            reader: Reader::Unknown,
            process: None,
            context: &Context::NONE,
        }
    }

    fn comment(meta: &MessageMeta<'_>, part: Option<Part>) -> String {
        let mut out = String::new();
        write_comment(&mut out, meta, part);
        out
    }

    #[test]
    fn golden_plain_comment() {
        let m = meta(b"curl", SocketName::Unnamed, SocketName::Path(b"/run/docker.sock"));
        assert_eq!(
            comment(&m, None),
            "sockdump=1 pid=812 tid=813 comm=curl peer_pid=790 type=stream path= \
             peer_path=/run/docker.sock ino=40211 peer_ino=40212 len=78 captured=78"
        );
    }

    #[test]
    fn golden_escaped_comment_with_flags_and_part() {
        let mut m = meta(b"my app=1%", SocketName::Path(b"@odd path"), SocketName::Abstract(b"abs\0x\xff"));
        m.sock_type = SockType::Other(3);
        m.flags = EventFlags(abi::flag::TRUNC_SIZE | abi::flag::PEER_IS_DEST | 0x40);
        m.captured = 10;
        assert_eq!(
            comment(&m, Some(Part { index: 2, count: 3 })),
            "sockdump=1 pid=812 tid=813 comm=my%20app%3D1%25 peer_pid=790 type=3 \
             path=%40odd%20path peer_path=@abs%00x%FF ino=40211 peer_ino=40212 len=78 \
             captured=10 flags=trunc_size,peer_is_dest,0x40 part=2/3"
        );
    }

    #[test]
    fn round_trips_every_byte() {
        let all: Vec<u8> = (0..=255u8).collect();
        let comm: Vec<u8> = (0..16u8).map(|i| i.wrapping_mul(37)).collect();
        for (path, peer) in [
            (SocketName::Path(&all[1..109]), SocketName::Abstract(&all[..107])),
            (SocketName::Unnamed, SocketName::Path(b"@")),
            (SocketName::Abstract(b""), SocketName::Path(b"a b=c")),
        ] {
            for flags in [0u16, 1, 2, 4, 8, 15, 0xfff0] {
                let mut m = meta(&comm, path, peer);
                m.flags = EventFlags(flags);
                for sock_type in [SockType::Stream, SockType::Dgram, SockType::SeqPacket, SockType::Other(9)]
                {
                    m.sock_type = sock_type;
                    for part in [None, Some(Part { index: 1, count: 1 })] {
                        let text = comment(&m, part);
                        assert!(text.is_ascii() && !text.contains("  "), "{text}");
                        assert_eq!(
                            parse_comment(&text),
                            Ok(Comment::Message { meta: OwnedMeta::of(&m), part }),
                            "{text}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn process_and_context_are_written_and_read_back() {
        let context = Context {
            args: Some(Arc::from("curl -s 'a b' x=%")),
            container: Some(Arc::new(Container {
                id: "4f".repeat(32),
                name: Some("web".into()),
                image: Some("nginx:1.25".into()),
                pod: Some("web-7d9".into()),
                namespace: Some("default".into()),
            })),
            reader_args: Some(Arc::from("dockerd -H fd://")),
            reader_container: Some(Arc::new(Container { id: "ab".repeat(32), ..Container::default() })),
        };
        let mut m = meta(b"curl", SocketName::Unnamed, SocketName::Path(b"/run/docker.sock"));
        m.process = Some(ProcessFacts {
            uid: 1000,
            gid: 100,
            ppid: 700,
            parent_comm: Comm::new(b"ba sh"),
            cgroup_id: 4242,
        });
        m.context = &context;
        let text = comment(&m, None);
        assert!(
            text.ends_with(&format!(
                " uid=1000 gid=100 ppid=700 pcomm=ba%20sh cgroup=4242 args=curl%20-s%20'a%20b'%20x%3D%25 \
                 container_id={} container=web image=nginx:1.25 pod=web-7d9 namespace=default \
                 reader_container_id={} reader_args=dockerd%20-H%20fd://",
                "4f".repeat(32),
                "ab".repeat(32)
            )),
            "{text}"
        );
        assert_eq!(parse_comment(&text), Ok(Comment::Message { meta: OwnedMeta::of(&m), part: None }));
        for bad in [" uid=x", " uid=1 gid=1 ppid=1 cgroup=1 pcomm=0123456789abcdef", " args=%zz"] {
            let broken = format!("{text}{bad}");
            assert!(parse_comment(&broken).is_err(), "{broken}");
        }
    }

    /// Found by fuzzing: a parent's name that is not UTF-8 (any bytes, as
    /// prctl(PR_SET_NAME) allows) came back as U+FFFD, and a long one made
    /// the comment, and `-r` of its file, fail.
    #[test]
    fn a_parent_name_of_any_bytes_reads_back() {
        let mut m = meta(b"curl", SocketName::Unnamed, SocketName::Unnamed);
        let process = ProcessFacts {
            uid: 1,
            gid: 1,
            ppid: 2,
            parent_comm: Comm::new(b"\x88\x13\xff\xfe\xfd\xfc\xfb"),
            cgroup_id: 3,
        };
        m.process = Some(process);
        let text = comment(&m, None);
        assert!(text.contains(" pcomm=%88%13%FF%FE%FD%FC%FB "), "{text}");
        assert_eq!(parse_comment(&text), Ok(Comment::Message { meta: OwnedMeta::of(&m), part: None }));
    }

    #[test]
    fn the_comment_writer_writes_what_write_comment_does() {
        let first = Context { args: Some(Arc::from("a b")), ..Context::default() };
        let second = Context { args: Some(Arc::from("c")), ..Context::default() };
        let mut writer = CommentWriter::default();
        let mut m = meta(b"x", SocketName::Unnamed, SocketName::Unnamed);
        let others: Vec<Context> = (0..10)
            .map(|i| Context { args: Some(Arc::from(format!("p{i}"))), ..Context::default() })
            .collect();
        let mut contexts = vec![&first, &first, &second, &Context::NONE, &first, &second];
        contexts.extend(others.iter().chain(others.iter().rev()));
        contexts.push(&first);
        for context in contexts {
            m.context = context;
            let mut cached = String::new();
            writer.write(&mut cached, &m, Some(Part { index: 1, count: 2 }));
            assert_eq!(cached, comment(&m, Some(Part { index: 1, count: 2 })));
        }
    }

    #[test]
    fn readers_are_written_and_read_back() {
        let mut m = meta(b"psql", SocketName::Unnamed, SocketName::Path(b"/run/pg/.s.PGSQL.5432"));
        m.reader = Reader::Thread {
            pid: 18555,
            tid: 18556,
            comm: Comm::new(b"post gres"),
            others: 0,
            uid: None,
            cgroup_id: 0,
        };
        let text = comment(&m, None);
        assert!(text.ends_with(" reader_pid=18555 reader_tid=18556 reader_comm=post%20gres"), "{text}");
        for reader in [
            m.reader,
            Reader::Thread { pid: 1, tid: 2, comm: Comm::new(b""), others: 2, uid: Some(0), cgroup_id: 7 },
            Reader::NotSeen,
            Reader::Unknown,
        ] {
            m.reader = reader;
            let text = comment(&m, Some(Part { index: 1, count: 2 }));
            assert_eq!(
                parse_comment(&text),
                Ok(Comment::Message { meta: OwnedMeta::of(&m), part: Some(Part { index: 1, count: 2 }) }),
                "{text}"
            );
        }
        m.reader = Reader::NotSeen;
        assert!(comment(&m, None).ends_with(" reader=none"));
        let base = comment(&meta(b"x", SocketName::Unnamed, SocketName::Unnamed), None);
        for bad in [
            " reader=maybe",
            " reader_pid=1 reader_tid=2",
            " reader_pid=x reader_tid=2 reader_comm=a",
            " reader_pid=1 reader_tid=2 reader_comm=a readers=0",
            " reader_pid=1 reader_tid=2 reader_comm=0123456789abcdef",
        ] {
            assert!(parse_comment(&(base.clone() + bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn synthetic_comments_round_trip() {
        let mut out = String::new();
        write_synthetic_comment(&mut out, Synthetic::Handshake);
        assert_eq!(out, "sockdump=1 synthetic=handshake");
        assert_eq!(parse_comment(&out), Ok(Comment::Synthetic(Synthetic::Handshake)));
    }

    #[test]
    fn unknown_keys_are_skipped_and_bad_input_refused() {
        let m = meta(b"x", SocketName::Unnamed, SocketName::Unnamed);
        let text = comment(&m, None) + " future=thing";
        assert!(matches!(parse_comment(&text), Ok(Comment::Message { .. })));
        assert_eq!(parse_comment("hello world"), Err(CommentError::NotSockdump));
        assert_eq!(parse_comment("sockdump=2 pid=1"), Err(CommentError::Version("2".into())));
        assert_eq!(parse_comment("sockdump=1 pid=1"), Err(CommentError::Missing("comm")));
        let broken = comment(&m, None).replace("comm=x", "comm=%G1");
        assert!(matches!(parse_comment(&broken), Err(CommentError::Bad { key: "comm", .. })));
        let over = comment(&m, None).replace("captured=78", "captured=79");
        assert!(matches!(parse_comment(&over), Err(CommentError::Bad { key: "captured", .. })));
        let nul = comment(&m, None).replace("path= ", "path=a%00b ");
        assert!(matches!(parse_comment(&nul), Err(CommentError::Bad { key: "path", .. })));
        let part = comment(&m, Some(Part { index: 1, count: 2 })).replace("1/2", "3/2");
        assert!(matches!(parse_comment(&part), Err(CommentError::Bad { key: "part", .. })));
    }

    #[test]
    fn directions_match_pcapng_flag_bits() {
        assert_eq!(Direction::Inbound.bits(), 1);
        assert_eq!(Direction::Outbound.bits(), 2);
        for d in [Direction::Unknown, Direction::Inbound, Direction::Outbound] {
            assert_eq!(Direction::from_bits(d.bits()), d);
        }
    }

    #[test]
    fn parsing_never_panics() {
        let base = "sockdump=1 pid=1 tid=2 comm=a%20b peer_pid=3 type=stream path=/a peer_path=@b ino=4 peer_ino=5 len=6 captured=6 flags=trunc_size part=1/2";
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..20_000 {
            let mut bytes = base.as_bytes().to_vec();
            for _ in 0..3 {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let at = (state % bytes.len() as u64) as usize;
                bytes[at] = b" =%/,@0123456789abcxyz"[(state >> 40) as usize % 22];
            }
            let cut = (state >> 20) as usize % (bytes.len() + 1);
            if let Ok(text) = std::str::from_utf8(&bytes[..cut]) {
                let _ = parse_comment(text);
            }
        }
    }
}
