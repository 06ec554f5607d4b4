//! The sockdump header of the LINKTYPE_USER0 (147) framing (`--link user`):
//! each packet is this header followed by the captured bytes of one message.
//!
//! Version 1, all numbers big-endian (network order):
//!
//! | offset | size | field |
//! |-------:|-----:|-------|
//! | 0  | 8  | magic `sockdump` |
//! | 8  | 2  | version, 1 |
//! | 10 | 2  | header length in bytes (a multiple of 4): the data starts there |
//! | 12 | 2  | socket type (1 stream, 2 dgram, 5 seqpacket) |
//! | 14 | 2  | flags (1 truncated by --seg-size, 2 truncated by --segs-per-msg, 4 bytes unreadable, 8 peer path is a sendto destination) |
//! | 16 | 1  | direction (0 unknown, 1 inbound, 2 outbound, as pcapng `epb_flags`) |
//! | 17 | 1  | path length P (bytes of `sun_path`, 0 = unnamed) |
//! | 18 | 1  | peer path length Q |
//! | 19 | 1  | reserved, 0 |
//! | 20 | 4  | pid |
//! | 24 | 4  | tid |
//! | 28 | 4  | peer pid (SO_PEERCRED; 0 unknown) |
//! | 32 | 4  | len: bytes the process sent |
//! | 36 | 4  | captured: data bytes after the header |
//! | 40 | 8  | socket inode |
//! | 48 | 8  | peer socket inode (0 none) |
//! | 56 | 16 | comm, NUL padded |
//! | 72 | P  | path: `sun_path` bytes (a leading NUL marks an abstract name) |
//! | 72+P | Q | peer path, the same way |
//!
//! then zero bytes up to the header length. Fields may be added before the
//! data in later revisions of version 1; readers use the header length to
//! find the data. An incompatible change gets a new version number.

use crate::abi;
use crate::bytes::{u16_at, u32_at, u64_at, BigEndian};
use crate::event::Context;
use crate::event::{EventFlags, Reader, SockType, SocketName};
use crate::meta::{Direction, MessageMeta};

pub const MAGIC: [u8; 8] = *b"sockdump";
pub const VERSION: u16 = 1;
/// Bytes before the variable-length paths.
pub const FIXED_LEN: usize = 72;
/// The longest header: both paths at their longest.
pub const MAX_LEN: usize = (FIXED_LEN + 2 * abi::PATH_MAX + 3) & !3;

/// Why a packet does not hold a sockdump USER0 header.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum User0Error {
    #[error("USER0 packet of {0} bytes is shorter than a sockdump header")]
    TooShort(usize),
    #[error("USER0 packet does not start with the `sockdump` magic")]
    Magic,
    #[error("sockdump USER0 header version {0} is not supported (this sockdump reads version {VERSION})")]
    Version(u16),
    #[error("sockdump USER0 header length {0} is inconsistent with the packet")]
    HeaderLength(usize),
    #[error("sockdump USER0 header says {captured} of {len} bytes were captured")]
    CapturedBeyondLength { captured: u32, len: u32 },
}

/// A decoded USER0 packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct User0Record<'a> {
    pub meta: MessageMeta<'a>,
    pub direction: Direction,
    /// The captured bytes in this packet (fewer than `meta.captured` when
    /// the packet itself was cut short afterwards, e.g. by `editcap -s`).
    pub data: &'a [u8],
}

/// `sun_path` bytes of a name: an abstract one gets its leading NUL back.
fn sun_path_len(name: SocketName<'_>) -> usize {
    match name {
        SocketName::Unnamed => 0,
        SocketName::Path(p) => p.len().min(abi::PATH_MAX),
        SocketName::Abstract(n) => (n.len() + 1).min(abi::PATH_MAX),
    }
}

fn push_sun_path(out: &mut Vec<u8>, name: SocketName<'_>) {
    let len = sun_path_len(name);
    match name {
        SocketName::Unnamed => {}
        SocketName::Path(p) => out.extend_from_slice(&p[..len]),
        SocketName::Abstract(n) => {
            out.push(0);
            out.extend_from_slice(&n[..len - 1]);
        }
    }
}

/// The header length for a message's names.
pub fn header_len(meta: &MessageMeta<'_>) -> usize {
    (FIXED_LEN + sun_path_len(meta.path) + sun_path_len(meta.peer_path) + 3) & !3
}

/// Appends the header for one message to `out`.
pub fn write_header(out: &mut Vec<u8>, meta: &MessageMeta<'_>, direction: Direction) {
    let start = out.len();
    let header_len = header_len(meta);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&VERSION.to_be_bytes());
    // At most MAX_LEN (296): fits.
    out.extend_from_slice(&(header_len as u16).to_be_bytes());
    out.extend_from_slice(&meta.sock_type.raw().to_be_bytes());
    out.extend_from_slice(&meta.flags.0.to_be_bytes());
    out.push(direction.bits());
    // Names are at most PATH_MAX (108) bytes: they fit a byte.
    out.push(sun_path_len(meta.path) as u8);
    out.push(sun_path_len(meta.peer_path) as u8);
    out.push(0);
    for value in [meta.pid, meta.tid, meta.peer_pid, meta.len, meta.captured] {
        out.extend_from_slice(&value.to_be_bytes());
    }
    out.extend_from_slice(&meta.sock_ino.to_be_bytes());
    out.extend_from_slice(&meta.peer_ino.to_be_bytes());
    let mut comm = [0u8; abi::COMM_LEN];
    let n = meta.comm.len().min(abi::COMM_LEN);
    comm[..n].copy_from_slice(&meta.comm[..n]);
    out.extend_from_slice(&comm);
    push_sun_path(out, meta.path);
    push_sun_path(out, meta.peer_path);
    out.resize(start + header_len, 0);
}

/// Decodes one USER0 packet: header, then data.
pub fn parse(packet: &[u8]) -> Result<User0Record<'_>, User0Error> {
    let short = || User0Error::TooShort(packet.len());
    let be16 = |at| u16_at::<BigEndian>(packet, at).ok_or_else(short);
    let be32 = |at| u32_at::<BigEndian>(packet, at).ok_or_else(short);
    let be64 = |at| u64_at::<BigEndian>(packet, at).ok_or_else(short);
    let fixed = packet.get(..FIXED_LEN).ok_or_else(short)?;
    if fixed[..8] != MAGIC {
        return Err(User0Error::Magic);
    }
    let version = be16(8)?;
    if version != VERSION {
        return Err(User0Error::Version(version));
    }
    let header_len = usize::from(be16(10)?);
    let path_len = usize::from(fixed[17]);
    let peer_path_len = usize::from(fixed[18]);
    if path_len > abi::PATH_MAX
        || peer_path_len > abi::PATH_MAX
        || header_len < FIXED_LEN + path_len + peer_path_len
        || header_len > packet.len()
    {
        return Err(User0Error::HeaderLength(header_len));
    }
    let len = be32(32)?;
    let captured = be32(36)?;
    if captured > len {
        return Err(User0Error::CapturedBeyondLength { captured, len });
    }
    let comm = &fixed[56..72];
    let comm_end = comm.iter().position(|&b| b == 0).unwrap_or(comm.len());
    let path = &packet[FIXED_LEN..FIXED_LEN + path_len];
    let peer_path = &packet[FIXED_LEN + path_len..FIXED_LEN + path_len + peer_path_len];
    let data = &packet[header_len..];
    let data = &data[..data.len().min(captured as usize)];
    Ok(User0Record {
        meta: MessageMeta {
            pid: be32(20)?,
            tid: be32(24)?,
            comm: &comm[..comm_end],
            peer_pid: be32(28)?,
            sock_type: SockType::from_raw(be16(12)?),
            sock_ino: be64(40)?,
            peer_ino: be64(48)?,
            path: SocketName::from_sun_path(path),
            peer_path: SocketName::from_sun_path(peer_path),
            len,
            captured,
            flags: EventFlags(be16(14)?),
            // the header has no reader or context; the packet's comment does
            reader: Reader::Unknown,
            process: None,
            context: &Context::NONE,
        },
        direction: Direction::from_bits(fixed[16]),
        data,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta<'a>(path: SocketName<'a>, peer: SocketName<'a>) -> MessageMeta<'a> {
        MessageMeta {
            pid: 0x0102_0304,
            tid: 0x0506_0708,
            comm: b"curl",
            peer_pid: 9,
            sock_type: SockType::Stream,
            sock_ino: 0x1122_3344_5566_7788,
            peer_ino: 42,
            path,
            peer_path: peer,
            len: 5,
            captured: 3,
            flags: EventFlags(abi::flag::TRUNC_SIZE),
            reader: Reader::Unknown,
            process: None,
            context: &Context::NONE,
        }
    }

    #[test]
    fn golden_header() {
        let mut out = Vec::new();
        let m = meta(SocketName::Path(b"/a"), SocketName::Abstract(b"b"));
        write_header(&mut out, &m, Direction::Outbound);
        let expected: Vec<u8> = [
            &b"sockdump"[..],
            &[0, 1, 0, 76, 0, 1, 0, 1],
            &[2, 2, 2, 0],
            &[1, 2, 3, 4, 5, 6, 7, 8, 0, 0, 0, 9, 0, 0, 0, 5, 0, 0, 0, 3],
            &[0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88],
            &[0, 0, 0, 0, 0, 0, 0, 42],
            b"curl\0\0\0\0\0\0\0\0\0\0\0\0",
            b"/a\0b",
        ]
        .concat();
        assert_eq!(out, expected);
        assert_eq!(header_len(&m), 76);
    }

    #[test]
    fn round_trips_with_data() {
        let long = [b'x'; abi::PATH_MAX];
        for (path, peer) in [
            (SocketName::Unnamed, SocketName::Unnamed),
            (SocketName::Path(&long), SocketName::Abstract(&long[..107])),
            (SocketName::Abstract(b""), SocketName::Path(b"/run/x.sock")),
        ] {
            for direction in [Direction::Unknown, Direction::Inbound, Direction::Outbound] {
                let m = meta(path, peer);
                let mut packet = Vec::new();
                write_header(&mut packet, &m, direction);
                assert_eq!(packet.len() % 4, 0);
                assert!(packet.len() <= MAX_LEN);
                packet.extend_from_slice(b"abc");
                let record = parse(&packet).expect("valid header");
                assert_eq!(record.meta, m);
                assert_eq!(record.direction, direction);
                assert_eq!(record.data, b"abc");
            }
        }
    }

    #[test]
    fn refuses_foreign_and_broken_headers() {
        let mut packet = Vec::new();
        write_header(&mut packet, &meta(SocketName::Path(b"/a"), SocketName::Unnamed), Direction::Inbound);
        assert_eq!(parse(&packet[..10]), Err(User0Error::TooShort(10)));
        let mut bad = packet.clone();
        bad[0] = b'S';
        assert_eq!(parse(&bad), Err(User0Error::Magic));
        let mut bad = packet.clone();
        bad[9] = 2;
        assert_eq!(parse(&bad), Err(User0Error::Version(2)));
        let mut bad = packet.clone();
        bad[11] = 200;
        assert_eq!(parse(&bad), Err(User0Error::HeaderLength(200)));
        let mut bad = packet.clone();
        bad[39] = 9;
        assert!(matches!(parse(&bad), Err(User0Error::CapturedBeyondLength { .. })));
    }

    #[test]
    fn never_panics_on_arbitrary_bytes() {
        let mut base = Vec::new();
        write_header(
            &mut base,
            &meta(SocketName::Path(b"/a"), SocketName::Abstract(b"zz")),
            Direction::Outbound,
        );
        base.extend_from_slice(b"abc");
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..20_000 {
            let mut p = base.clone();
            for _ in 0..3 {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let at = (state % p.len() as u64) as usize;
                p[at] = (state >> 32) as u8;
            }
            let cut = (state >> 40) as usize % (p.len() + 1);
            let _ = parse(&p[..cut]);
        }
    }
}
