use std::fmt;
use std::sync::Arc;

use crate::abi::{self, event as layout, Field, COMM_LEN};
use crate::bytes::{u16_at, u32_at, u64_at, NativeEndian};

/// Why a ring buffer record is not a valid event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("record of {len} bytes is shorter than the {need}-byte event header")]
    TooShort { len: usize, need: usize },
    #[error("record says {captured} data bytes follow but holds {available}")]
    MissingData { captured: u32, available: usize },
    #[error("record captured {captured} bytes of a {len}-byte message")]
    CapturedBeyondLength { captured: u32, len: u32 },
    #[error("socket name of {len} bytes is longer than sun_path")]
    NameTooLong { len: u8 },
    #[error("process record of unknown kind {kind}")]
    UnknownKind { kind: u32 },
}

/// The kind of unix socket a message was sent on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SockType {
    Stream,
    Dgram,
    SeqPacket,
    Other(u16),
}

impl SockType {
    pub fn from_raw(raw: u16) -> Self {
        match raw {
            abi::sock_type::STREAM => Self::Stream,
            abi::sock_type::DGRAM => Self::Dgram,
            abi::sock_type::SEQPACKET => Self::SeqPacket,
            other => Self::Other(other),
        }
    }

    pub fn raw(self) -> u16 {
        match self {
            Self::Stream => abi::sock_type::STREAM,
            Self::Dgram => abi::sock_type::DGRAM,
            Self::SeqPacket => abi::sock_type::SEQPACKET,
            Self::Other(raw) => raw,
        }
    }

    /// The name `ss` and the socket(2) man page use.
    pub fn name(self) -> &'static str {
        match self {
            Self::Stream => "stream",
            Self::Dgram => "dgram",
            Self::SeqPacket => "seqpacket",
            Self::Other(_) => "unknown",
        }
    }

    /// Whether the socket keeps message boundaries.
    pub fn is_datagram(self) -> bool {
        matches!(self, Self::Dgram)
    }
}

/// A unix socket's address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SocketName<'a> {
    /// Not bound: a socketpair end or an unbound client.
    Unnamed,
    /// A filesystem path, as the application spelled it.
    Path(&'a [u8]),
    /// An abstract name, without its leading NUL byte.
    Abstract(&'a [u8]),
}

impl<'a> SocketName<'a> {
    /// Decodes `sun_path` bytes: a leading NUL marks an abstract name, and a
    /// filesystem path ends at its first NUL.
    pub fn from_sun_path(bytes: &'a [u8]) -> Self {
        match bytes.split_first() {
            None => Self::Unnamed,
            Some((0, name)) => Self::Abstract(name),
            Some(_) => {
                let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
                Self::Path(&bytes[..end])
            }
        }
    }

    pub fn is_named(&self) -> bool {
        !matches!(self, Self::Unnamed)
    }
}

/// Shown as `ss` does: a path, `@name` for abstract names (NUL bytes inside
/// them as `@`), nothing for an unnamed socket.
impl fmt::Display for SocketName<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unnamed => Ok(()),
            Self::Path(path) => f.write_str(&String::from_utf8_lossy(path)),
            Self::Abstract(name) => {
                f.write_str("@")?;
                let shown: Vec<u8> = name.iter().map(|&b| if b == 0 { b'@' } else { b }).collect();
                f.write_str(&String::from_utf8_lossy(&shown))
            }
        }
    }
}

/// `enum sockdump_event_flag` bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct EventFlags(pub u16);

impl EventFlags {
    /// The message was longer than `--seg-size`.
    pub fn truncated_size(self) -> bool {
        self.0 & abi::flag::TRUNC_SIZE != 0
    }
    /// The message had more iovec segments than `--segs-per-msg`.
    pub fn truncated_segs(self) -> bool {
        self.0 & abi::flag::TRUNC_SEGS != 0
    }
    /// The bytes could not be read (splice, sendfile, or a failed read).
    pub fn unreadable(self) -> bool {
        self.0 & abi::flag::UNREADABLE != 0
    }
    /// `peer_path` is the destination of an unconnected send.
    pub fn peer_is_dest(self) -> bool {
        self.0 & abi::flag::PEER_IS_DEST != 0
    }
}

/// A thread's name as the kernel keeps it: at most 15 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Comm([u8; COMM_LEN]);

impl Comm {
    /// The first 15 bytes of `name`, up to its first NUL.
    pub fn new(name: &[u8]) -> Self {
        let mut bytes = [0u8; COMM_LEN];
        let end = name.iter().position(|&b| b == 0).unwrap_or(name.len()).min(COMM_LEN - 1);
        bytes[..end].copy_from_slice(&name[..end]);
        Comm(bytes)
    }

    pub fn as_bytes(&self) -> &[u8] {
        let end = self.0.iter().position(|&b| b == 0).unwrap_or(COMM_LEN);
        &self.0[..end]
    }
}

/// Who took a message out of the socket that received it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Reader {
    /// Not known: the hooks do not see reads, or the message was read
    /// from a file written without readers.
    #[default]
    Unknown,
    /// No read of it was seen in time (nobody read it yet, or the read
    /// went unseen): `peer_pid`, SO_PEERCRED's pid, is the best guess.
    NotSeen,
    /// The thread that read the message's first byte; `others` more
    /// threads read later parts of it. `uid` (None in files written before
    /// sockdump recorded it) and `cgroup_id` (0 if unknown) are its process's.
    Thread { pid: u32, tid: u32, comm: Comm, others: u32, uid: Option<u32>, cgroup_id: u64 },
}

/// What the kernel tells of a sending process beyond its pid and command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ProcessFacts {
    /// Kernel uid and gid (the initial user namespace's).
    pub uid: u32,
    pub gid: u32,
    /// The parent process (tgid) and its command.
    pub ppid: u32,
    pub parent_comm: Comm,
    /// The cgroup v2 id, which names its container; 0 if unknown.
    pub cgroup_id: u64,
}

/// A container, as far as the engine told.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Container {
    /// The full id (64 hex digits for Docker, containerd, CRI-O, Podman).
    pub id: String,
    pub name: Option<String>,
    pub image: Option<String>,
    /// The Kubernetes pod and namespace, from the container's labels.
    pub pod: Option<String>,
    pub namespace: Option<String>,
}

impl Container {
    /// The name when known, else the id's first 12 digits (as `docker ps`).
    pub fn display_name(&self) -> &str {
        match &self.name {
            Some(name) => name,
            None => self.id.get(..12).unwrap_or(&self.id),
        }
    }
}

/// What user space adds to a message from elsewhere: command lines from
/// exec records or /proc, containers from cgroups and the engine.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Context {
    /// The sender's command line, as a shell would show it (see `show_args`).
    pub args: Option<Arc<str>>,
    pub container: Option<Arc<Container>>,
    pub reader_args: Option<Arc<str>>,
    pub reader_container: Option<Arc<Container>>,
}

impl Context {
    pub const NONE: Context =
        Context { args: None, container: None, reader_args: None, reader_container: None };
}

/// A command line (arguments each ending in NUL, as /proc/PID/cmdline and
/// exec records hold them) as one line: arguments separated by spaces,
/// quoted where they hold spaces, quotes or nothing, and every byte that
/// is not printable UTF-8 written `\xNN`. Captured bytes are hostile: the
/// line is safe for a terminal and unambiguous.
pub fn show_args(cmdline: &[u8]) -> String {
    let cmdline = cmdline.strip_suffix(&[0]).unwrap_or(cmdline);
    let mut out = String::with_capacity(cmdline.len());
    for (i, arg) in cmdline.split(|&b| b == 0).enumerate() {
        if i > 0 {
            out.push(' ');
        }
        let text = String::from_utf8_lossy(arg);
        let quote = arg.is_empty() || arg.iter().any(|b| b" '\"\\$`".contains(b));
        if quote {
            out.push('\'');
        }
        for c in text.chars() {
            match c {
                '\'' if quote => out.push_str("'\\''"),
                c if c.is_control() || c == char::REPLACEMENT_CHARACTER => {
                    let mut buf = [0u8; 4];
                    for b in c.encode_utf8(&mut buf).bytes() {
                        out.push_str(&format!("\\x{b:02x}"));
                    }
                }
                c => out.push(c),
            }
        }
        if quote {
            out.push('\'');
        }
    }
    out
}

/// One message a process sent on a unix socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event<'a> {
    /// CLOCK_MONOTONIC nanoseconds when the send returned.
    pub timestamp_ns: u64,
    pub sock_ino: u64,
    /// 0 when the socket has no peer (unconnected datagrams).
    pub peer_ino: u64,
    pub pid: u32,
    pub tid: u32,
    /// SO_PEERCRED pid of the sending socket; 0 when unknown.
    pub peer_pid: u32,
    /// Bytes the kernel accepted.
    pub len: u32,
    pub sock_type: SockType,
    pub flags: EventFlags,
    /// The sending thread's name, without trailing NULs.
    pub comm: &'a [u8],
    pub path: SocketName<'a>,
    /// The peer's name, or the destination of an unconnected send.
    pub peer_path: SocketName<'a>,
    /// The first captured bytes of the message.
    pub data: &'a [u8],
    /// The receiving socket (an opaque id, 0 if unknown) and where the
    /// message starts in its numbering, to find the reads that took it.
    pub rx_sock: u64,
    pub rx_pos: u64,
    pub reader: Reader,
    /// None in files written before sockdump recorded them.
    pub process: Option<ProcessFacts>,
    pub context: Context,
}

fn bytes_at(record: &[u8], field: Field) -> Result<&[u8], DecodeError> {
    field
        .offset
        .checked_add(field.size)
        .and_then(|end| record.get(field.offset..end))
        .ok_or(DecodeError::TooShort { len: record.len(), need: layout::SIZE })
}

/// A number of `field`, in the kernel's (this machine's) byte order.
fn number<T>(record: &[u8], field: Field, read: fn(&[u8], usize) -> Option<T>) -> Result<T, DecodeError> {
    read(bytes_at(record, field)?, 0).ok_or(DecodeError::TooShort { len: record.len(), need: layout::SIZE })
}

fn name_at<'a>(record: &'a [u8], field: Field, len_field: Field) -> Result<SocketName<'a>, DecodeError> {
    let len = bytes_at(record, len_field)?[0];
    if usize::from(len) > field.size {
        return Err(DecodeError::NameTooLong { len });
    }
    Ok(SocketName::from_sun_path(&bytes_at(record, field)?[..usize::from(len)]))
}

impl<'a> Event<'a> {
    /// Decodes one ring buffer record (header, then `captured` data bytes).
    pub fn parse(record: &'a [u8]) -> Result<Self, DecodeError> {
        if record.len() < layout::SIZE {
            return Err(DecodeError::TooShort { len: record.len(), need: layout::SIZE });
        }
        let u16_field = |field| number(record, field, u16_at::<NativeEndian>);
        let u32_field = |field| number(record, field, u32_at::<NativeEndian>);
        let u64_field = |field| number(record, field, u64_at::<NativeEndian>);
        let len = u32_field(layout::LEN)?;
        let captured = u32_field(layout::CAPTURED)?;
        if captured > len {
            return Err(DecodeError::CapturedBeyondLength { captured, len });
        }
        let available = record.len() - layout::SIZE;
        let data = usize::try_from(captured)
            .ok()
            .and_then(|captured| record[layout::SIZE..].get(..captured))
            .ok_or(DecodeError::MissingData { captured, available })?;
        let comm = bytes_at(record, layout::COMM)?;
        let comm_end = comm.iter().position(|&b| b == 0).unwrap_or(comm.len());

        Ok(Self {
            timestamp_ns: u64_field(layout::TIMESTAMP_NS)?,
            sock_ino: u64_field(layout::SOCK_INO)?,
            peer_ino: u64_field(layout::PEER_INO)?,
            pid: u32_field(layout::PID)?,
            tid: u32_field(layout::TID)?,
            peer_pid: u32_field(layout::PEER_PID)?,
            len,
            sock_type: SockType::from_raw(u16_field(layout::SOCK_TYPE)?),
            flags: EventFlags(u16_field(layout::FLAGS)?),
            comm: &comm[..comm_end],
            path: name_at(record, layout::PATH, layout::PATH_LEN)?,
            peer_path: name_at(record, layout::PEER_PATH, layout::PEER_PATH_LEN)?,
            data,
            rx_sock: u64_field(layout::RX_SOCK)?,
            rx_pos: u64_field(layout::RX_POS)?,
            reader: Reader::Unknown,
            process: Some(ProcessFacts {
                uid: u32_field(layout::UID)?,
                gid: u32_field(layout::GID)?,
                ppid: u32_field(layout::PPID)?,
                parent_comm: Comm::new(bytes_at(record, layout::PARENT_COMM)?),
                cgroup_id: u64_field(layout::CGROUP_ID)?,
            }),
            context: Context::default(),
        })
    }

    /// The stretch of its receiver's numbering the message takes: bytes
    /// of a stream, one message otherwise.
    pub fn rx_units(&self) -> u64 {
        match self.sock_type {
            SockType::Stream => u64::from(self.len),
            _ => 1,
        }
    }

    /// The name that identifies the conversation: the sender's own name when
    /// it is bound, else its peer's (or destination's).
    pub fn conversation_name(&self) -> SocketName<'a> {
        if self.path.is_named() {
            self.path
        } else {
            self.peer_path
        }
    }
}

/// One read of a receiving socket a recorded message went to: `units` of
/// its numbering from `pos` on, consumed by a thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadRecord {
    pub timestamp_ns: u64,
    pub rx_sock: u64,
    pub pos: u64,
    pub units: u32,
    pub pid: u32,
    pub tid: u32,
    pub uid: u32,
    pub comm: Comm,
    pub cgroup_id: u64,
}

impl ReadRecord {
    /// Decodes one record of the `reads` ring buffer.
    pub fn parse(record: &[u8]) -> Result<Self, DecodeError> {
        use abi::read as at;
        if record.len() < at::SIZE {
            return Err(DecodeError::TooShort { len: record.len(), need: at::SIZE });
        }
        let short = DecodeError::TooShort { len: record.len(), need: at::SIZE };
        let u32_field = |field: Field| u32_at::<NativeEndian>(record, field.offset).ok_or(short.clone());
        let u64_field = |field: Field| u64_at::<NativeEndian>(record, field.offset).ok_or(short.clone());
        Ok(ReadRecord {
            timestamp_ns: u64_field(at::TIMESTAMP_NS)?,
            rx_sock: u64_field(at::RX_SOCK)?,
            pos: u64_field(at::POS)?,
            units: u32_field(at::UNITS)?,
            pid: u32_field(at::PID)?,
            tid: u32_field(at::TID)?,
            uid: u32_field(at::UID)?,
            comm: Comm::new(&record[at::COMM.offset..at::COMM.offset + at::COMM.size]),
            cgroup_id: u64_field(at::CGROUP_ID)?,
        })
    }
}

/// `/`-joined cgroup names, outermost first, from an exec record's
/// innermost-first NUL-terminated names (the root's is empty).
fn cgroup_path(names: &[u8]) -> String {
    let mut path = String::new();
    for name in names.chunks(abi::CGROUP_NAME_MAX).rev() {
        let name = &name[..name.iter().position(|&b| b == 0).unwrap_or(name.len())];
        if !name.is_empty() {
            path.push('/');
            path.push_str(&String::from_utf8_lossy(name));
        }
    }
    path
}

/// One record of the `procs` ring buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProcRecord<'a> {
    /// `pid` ran execve(); `cmdline` holds its arguments (each ending in
    /// NUL), cut at `abi::ARGS_MAX` bytes when `truncated`. It runs in the
    /// cgroup `cgroup_id`, whose path ends in `cgroup_path` (up to
    /// `abi::CGROUP_DEPTH` names, `/`-separated).
    Exec { pid: u32, ppid: u32, cmdline: &'a [u8], truncated: bool, cgroup_id: u64, cgroup_path: String },
    /// `ppid` started the process `pid`.
    Fork { pid: u32, ppid: u32 },
}

impl<'a> ProcRecord<'a> {
    pub fn parse(record: &'a [u8]) -> Result<Self, DecodeError> {
        use abi::proc as at;
        let short = || DecodeError::TooShort { len: record.len(), need: at::SIZE };
        let u32_field = |field: Field| u32_at::<NativeEndian>(record, field.offset).ok_or_else(short);
        let (pid, ppid) = (u32_field(at::PID)?, u32_field(at::PPID)?);
        if record.len() < at::SIZE {
            return Err(short());
        }
        match u32_field(at::KIND)? {
            abi::proc_kind::FORK => Ok(ProcRecord::Fork { pid, ppid }),
            abi::proc_kind::EXEC => {
                let len = u32_field(at::ARGS_LEN)?;
                let args_at = abi::exec::ARGS.offset;
                let cmdline = usize::try_from(len)
                    .ok()
                    .filter(|&len| len <= abi::ARGS_MAX)
                    .and_then(|len| record.get(args_at..)?.get(..len))
                    .ok_or(DecodeError::MissingData {
                        captured: len,
                        available: record.len().saturating_sub(args_at),
                    })?;
                let truncated = u32_field(at::FLAGS)? & abi::proc_flag::ARGS_TRUNC != 0;
                let cgroup_id = u64_at::<NativeEndian>(record, at::CGROUP_ID.offset).ok_or_else(short)?;
                let names = record.get(abi::exec::CGROUP.offset..args_at).ok_or_else(short)?;
                Ok(ProcRecord::Exec {
                    pid,
                    ppid,
                    cmdline,
                    truncated,
                    cgroup_id,
                    cgroup_path: cgroup_path(names),
                })
            }
            kind => Err(DecodeError::UnknownKind { kind }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A record as the eBPF side writes it.
    pub(crate) fn record(path: &[u8], peer_path: &[u8], data: &[u8], len: u32) -> Vec<u8> {
        let mut r = vec![0u8; layout::SIZE];
        let mut put =
            |field: Field, bytes: &[u8]| r[field.offset..field.offset + bytes.len()].copy_from_slice(bytes);
        put(layout::TIMESTAMP_NS, &123_456_789u64.to_ne_bytes());
        put(layout::SOCK_INO, &1000u64.to_ne_bytes());
        put(layout::PEER_INO, &1001u64.to_ne_bytes());
        put(layout::PID, &42u32.to_ne_bytes());
        put(layout::TID, &43u32.to_ne_bytes());
        put(layout::PEER_PID, &7u32.to_ne_bytes());
        put(layout::LEN, &len.to_ne_bytes());
        put(layout::CAPTURED, &(data.len() as u32).to_ne_bytes());
        put(layout::SOCK_TYPE, &abi::sock_type::STREAM.to_ne_bytes());
        put(layout::FLAGS, &abi::flag::TRUNC_SIZE.to_ne_bytes());
        put(layout::PATH_LEN, &[path.len() as u8]);
        put(layout::PEER_PATH_LEN, &[peer_path.len() as u8]);
        put(layout::COMM, b"curl\0\0\0\0\0\0\0\0\0\0\0\0");
        put(layout::PATH, path);
        put(layout::PEER_PATH, peer_path);
        r.extend_from_slice(data);
        r
    }

    #[test]
    fn parses_every_field() {
        let r = record(b"/run/a.sock\0", b"\0abs\0x", b"GET /", 10);
        let ev = Event::parse(&r).expect("valid record");
        assert_eq!(ev.timestamp_ns, 123_456_789);
        assert_eq!((ev.sock_ino, ev.peer_ino), (1000, 1001));
        assert_eq!((ev.pid, ev.tid, ev.peer_pid), (42, 43, 7));
        assert_eq!(ev.len, 10);
        assert_eq!(ev.sock_type, SockType::Stream);
        assert!(ev.flags.truncated_size() && !ev.flags.truncated_segs());
        assert_eq!(ev.comm, b"curl");
        assert_eq!(ev.path, SocketName::Path(b"/run/a.sock"));
        assert_eq!(ev.peer_path, SocketName::Abstract(b"abs\0x"));
        assert_eq!(ev.peer_path.to_string(), "@abs@x");
        assert_eq!(ev.data, b"GET /");
    }

    #[test]
    fn unnamed_sockets_have_no_name() {
        let r = record(b"", b"", b"", 0);
        let ev = Event::parse(&r).expect("valid record");
        assert_eq!(ev.path, SocketName::Unnamed);
        assert_eq!(ev.conversation_name(), SocketName::Unnamed);
    }

    #[test]
    fn rejects_short_and_inconsistent_records() {
        let r = record(b"/a", b"", b"abc", 3);
        assert_eq!(Event::parse(&r[..100]), Err(DecodeError::TooShort { len: 100, need: layout::SIZE }));
        assert_eq!(
            Event::parse(&r[..r.len() - 1]),
            Err(DecodeError::MissingData { captured: 3, available: 2 })
        );
        let r = record(b"/a", b"", b"abc", 2);
        assert_eq!(Event::parse(&r), Err(DecodeError::CapturedBeyondLength { captured: 3, len: 2 }));
        let mut r = record(b"/a", b"", b"", 0);
        r[layout::PATH_LEN.offset] = 200;
        assert_eq!(Event::parse(&r), Err(DecodeError::NameTooLong { len: 200 }));
    }

    #[test]
    fn read_records_decode_and_short_ones_are_refused() {
        use crate::abi::read as at;
        let mut r = vec![0u8; at::SIZE];
        let mut put =
            |field: Field, bytes: &[u8]| r[field.offset..field.offset + bytes.len()].copy_from_slice(bytes);
        put(at::TIMESTAMP_NS, &5u64.to_ne_bytes());
        put(at::RX_SOCK, &0xffff_8881_0000_1000u64.to_ne_bytes());
        put(at::POS, &70_000u64.to_ne_bytes());
        put(at::UNITS, &42u32.to_ne_bytes());
        put(at::PID, &18555u32.to_ne_bytes());
        put(at::TID, &18556u32.to_ne_bytes());
        put(at::COMM, b"postgres\0\0\0\0\0\0\0\0");
        let read = ReadRecord::parse(&r).expect("valid record");
        assert_eq!(
            (read.timestamp_ns, read.rx_sock, read.pos, read.units),
            (5, 0xffff_8881_0000_1000, 70_000, 42)
        );
        assert_eq!((read.pid, read.tid, read.comm.as_bytes()), (18555, 18556, &b"postgres"[..]));
        assert_eq!(
            ReadRecord::parse(&r[..at::SIZE - 1]),
            Err(DecodeError::TooShort { len: at::SIZE - 1, need: at::SIZE })
        );
        // a name that fills the field keeps the kernel's 15 bytes
        assert_eq!(Comm::new(b"0123456789abcdefgh").as_bytes(), b"0123456789abcde");
    }

    #[test]
    fn never_panics_on_arbitrary_bytes() {
        // A deterministic sweep of corrupted and cut records.
        let base = record(b"/x", b"/y", b"0123456789", 10);
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..20_000 {
            let mut r = base.clone();
            for _ in 0..4 {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let at = (state % r.len() as u64) as usize;
                r[at] = (state >> 32) as u8;
            }
            let cut = (state >> 40) as usize % (r.len() + 1);
            let _ = Event::parse(&r[..cut]);
        }
    }
}
