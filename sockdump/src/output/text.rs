//! The original sockdump's text output: one header line per message, then
//! the bytes as hex, as they are, or as `\xNN`.

use std::io::{self, Write};

use sockdump_common::{Event, Reader, SocketName};

use super::{Sink, Stats};
use crate::clock::{TimeOfDay, WallClock, Zone};

/// How the bytes of a message are shown under its header line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextStyle {
    /// Offset, 16 bytes in hex, and their ASCII.
    Hex,
    /// The bytes as they are.
    String,
    /// Every byte as `\xNN`.
    Hexstring,
}

/// What happens to control bytes in message bodies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Controls {
    /// Unchanged: files and pipes get the bytes as they were sent.
    Raw,
    /// Shown as `less` shows them (`^[`, `<U+009B>`, `<FF>`): for a terminal,
    /// which captured escape sequences could otherwise drive.
    Escaped,
}

pub struct TextSink<W: Write> {
    out: W,
    style: TextStyle,
    controls: Controls,
    clock: WallClock,
    time: TimeOfDay,
    /// One record, encoded before a single write: no allocation per message.
    buf: Vec<u8>,
}

impl<W: Write> TextSink<W> {
    pub fn new(out: W, style: TextStyle, controls: Controls, clock: WallClock, zone: Zone) -> Self {
        TextSink { out, style, controls, clock, time: TimeOfDay::new(zone), buf: Vec::with_capacity(1 << 16) }
    }

    pub fn into_inner(self) -> W {
        self.out
    }
}

impl<W: Write> Sink for TextSink<W> {
    fn write_event(&mut self, event: &Event<'_>) -> io::Result<()> {
        self.buf.clear();
        self.time.push(&mut self.buf, self.clock.epoch_ns(event.timestamp_ns));
        push_header(&mut self.buf, event);
        match self.style {
            TextStyle::Hex => push_hex(&mut self.buf, event.data),
            TextStyle::String if self.controls == Controls::Escaped => {
                push_string_escaped(&mut self.buf, event.data)
            }
            TextStyle::String => push_string(&mut self.buf, event.data),
            TextStyle::Hexstring => push_hexstring(&mut self.buf, event.data),
        }
        self.out.write_all(&self.buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    fn finish(&mut self, _stats: &Stats) -> io::Result<()> {
        self.out.flush()
    }
}

/// The path a message is shown under: the destination of an unconnected
/// send, else the sender's own name, else its peer's, else the sender's
/// inode as /proc/PID/fd shows it.
pub fn shown_path<'a>(event: &Event<'a>) -> ShownPath<'a> {
    let name = if event.flags.peer_is_dest() { event.peer_path } else { event.conversation_name() };
    match name {
        SocketName::Unnamed => ShownPath::Inode(event.sock_ino),
        named => ShownPath::Name(named),
    }
}

pub enum ShownPath<'a> {
    Name(SocketName<'a>),
    Inode(u64),
}

impl std::fmt::Display for ShownPath<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ShownPath::Name(name) => name.fmt(f),
            ShownPath::Inode(ino) => write!(f, "socket:[{ino}]"),
        }
    }
}

/// After the time: ` >>> process <comm> [<pid> -> <reader>] [container
/// <name>] path <path> len <captured>(<sent>)`, and a note when the bytes
/// are incomplete; the container is the sender's, when it runs in one. The
/// reader is the pid that read the message (`+N` when N more threads read
/// parts of it), or `peer <pid>`, SO_PEERCRED's, when no read was seen.
pub fn push_header(out: &mut Vec<u8>, event: &Event<'_>) {
    out.extend_from_slice(b" >>> process ");
    push_escaped(out, &String::from_utf8_lossy(event.comm));
    // Writing to a Vec cannot fail.
    let _ = write!(out, " [{} -> ", event.pid);
    let _ = match (event.reader, event.peer_pid) {
        (Reader::Thread { pid, others: 0, .. }, _) => write!(out, "{pid}"),
        (Reader::Thread { pid, others, .. }, _) => write!(out, "{pid} +{others}"),
        (Reader::Unknown | Reader::NotSeen, 0) => out.write_all(b"peer ?"),
        (Reader::Unknown | Reader::NotSeen, pid) => write!(out, "peer {pid}"),
    };
    out.push(b']');
    if let Some(container) = &event.context.container {
        out.extend_from_slice(b" container ");
        push_escaped(out, container.display_name());
    }
    out.extend_from_slice(b" path ");
    push_escaped_display(out, shown_path(event));
    let _ = write!(out, " len {}({})", event.data.len(), event.len);
    if event.flags.truncated_size() {
        out.extend_from_slice(b" [truncated by --seg-size]");
    }
    if event.flags.truncated_segs() {
        out.extend_from_slice(b" [truncated by --segs-per-msg]");
    }
    if event.flags.unreadable() {
        out.extend_from_slice(b" [bytes not readable]");
    }
    out.push(b'\n');
}

/// Names come from the processes being watched: control characters in a
/// thread name or socket path must not forge header lines or drive the
/// terminal of whoever reads the capture.
fn push_escaped(out: &mut Vec<u8>, text: &str) {
    for c in text.chars() {
        if c.is_control() {
            let _ = write!(out, "\\x{:02x}", u32::from(c));
        } else {
            let mut utf8 = [0; 4];
            out.extend_from_slice(c.encode_utf8(&mut utf8).as_bytes());
        }
    }
}

/// `push_escaped` for a value's Display form, written in place: the
/// common name, with nothing to escape, costs no allocation.
fn push_escaped_display(out: &mut Vec<u8>, value: impl std::fmt::Display) {
    let start = out.len();
    // Writing to a Vec cannot fail, and Display writes UTF-8.
    let _ = write!(out, "{value}");
    let written = std::str::from_utf8(&out[start..]).unwrap_or_default();
    if written.chars().any(char::is_control) {
        let text = written.to_owned();
        out.truncate(start);
        push_escaped(out, &text);
    }
}

const HEX_DIGITS: &[u8; 16] = b"0123456789abcdef";

fn push_hex_byte(out: &mut Vec<u8>, b: u8) {
    out.extend_from_slice(&[HEX_DIGITS[usize::from(b >> 4)], HEX_DIGITS[usize::from(b & 15)]]);
}

/// `0000  47 45 54 20 2f 20 48 54  54 50 2f 31 2e 31 0d 0a  GET / HTTP/1.1..`
pub fn push_hex(out: &mut Vec<u8>, data: &[u8]) {
    out.reserve(data.len() / 16 * 76 + 76);
    let mut lines = data.chunks_exact(16);
    let mut offset = 0;
    for chunk in &mut lines {
        let chunk: &[u8; 16] = chunk.try_into().unwrap_or(&[0; 16]);
        if offset <= 0xffff {
            push_full_hex_line(out, offset, chunk);
        } else {
            push_hex_line(out, offset, chunk);
        }
        offset += 16;
    }
    if !lines.remainder().is_empty() {
        push_hex_line(out, offset, lines.remainder());
    }
}

fn printable(b: u8) -> u8 {
    if b.is_ascii_graphic() || b == b' ' {
        b
    } else {
        b'.'
    }
}

/// The common line: 16 bytes at a four-digit offset. Every position is a
/// constant, so the compiler drops the bounds checks: this line is most of
/// the cost of hex output.
fn push_full_hex_line(out: &mut Vec<u8>, offset: usize, chunk: &[u8; 16]) {
    let mut line = *b"0000  xx xx xx xx xx xx xx xx  xx xx xx xx xx xx xx xx  ................\n";
    for (i, digit) in line[..4].iter_mut().enumerate() {
        *digit = HEX_DIGITS[(offset >> ((3 - i) * 4)) & 15];
    }
    for (column, &b) in chunk.iter().enumerate() {
        let at = 6 + column * 3 + column / 8;
        line[at] = HEX_DIGITS[usize::from(b >> 4)];
        line[at + 1] = HEX_DIGITS[usize::from(b & 15)];
        line[56 + column] = printable(b);
    }
    out.extend_from_slice(&line);
}

/// Any line: a short last one, or one past offset 0xffff (more digits).
fn push_hex_line(out: &mut Vec<u8>, offset: usize, chunk: &[u8]) {
    let digits = ((usize::BITS - offset.leading_zeros()).div_ceil(4) as usize).max(4);
    for shift in (0..digits).rev() {
        out.push(HEX_DIGITS[(offset >> (shift * 4)) & 15]);
    }
    out.push(b' ');
    for column in 0..16 {
        if column % 8 == 0 {
            out.push(b' ');
        }
        match chunk.get(column) {
            Some(&b) => {
                push_hex_byte(out, b);
                out.push(b' ');
            }
            None => out.extend_from_slice(b"   "),
        }
    }
    out.push(b' ');
    out.extend(chunk.iter().map(|&b| printable(b)));
    out.push(b'\n');
}

/// The bytes as they were sent, ending the record with a newline.
pub fn push_string(out: &mut Vec<u8>, data: &[u8]) {
    out.extend_from_slice(data);
    if data.last() != Some(&b'\n') {
        out.push(b'\n');
    }
}

/// The bytes as text for a terminal: newlines and tabs as they are, other
/// control characters in caret notation (C0, DEL) or as `<U+XXXX>` (C1),
/// bytes that are not UTF-8 as `<XX>`.
pub fn push_string_escaped(out: &mut Vec<u8>, data: &[u8]) {
    use std::io::Write as _;
    for chunk in data.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\n' | '\t' => out.push(c as u8),
                '\0'..='\x1f' => out.extend_from_slice(&[b'^', c as u8 + 0x40]),
                '\x7f' => out.extend_from_slice(b"^?"),
                '\u{80}'..='\u{9f}' => {
                    let _ = write!(out, "<U+{:04X}>", u32::from(c));
                }
                _ => {
                    let mut utf8 = [0; 4];
                    out.extend_from_slice(c.encode_utf8(&mut utf8).as_bytes());
                }
            }
        }
        for &b in chunk.invalid() {
            let _ = write!(out, "<{b:02X}>");
        }
    }
    if data.last() != Some(&b'\n') {
        out.push(b'\n');
    }
}

/// Every byte as `\xNN`, one line per message.
pub fn push_hexstring(out: &mut Vec<u8>, data: &[u8]) {
    out.reserve(data.len() * 4 + 1);
    for &b in data {
        out.extend_from_slice(b"\\x");
        push_hex_byte(out, b);
    }
    out.push(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(data: &[u8]) -> String {
        let mut out = Vec::new();
        push_hex(&mut out, data);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn hex_lines_have_offset_two_groups_and_ascii() {
        assert_eq!(
            hex(b"GET / HTTP/1.1\r\nHost"),
            "0000  47 45 54 20 2f 20 48 54  54 50 2f 31 2e 31 0d 0a  GET / HTTP/1.1..\n\
             0010  48 6f 73 74                                       Host\n"
        );
        assert_eq!(hex(b""), "");
        let long = hex(&[0u8; 0x10011]);
        assert!(long.contains("\nfff0  00") && long.contains("\n10000  00") && long.contains("\n10010  00"));
    }

    #[test]
    fn control_characters_in_names_are_escaped() {
        let mut out = Vec::new();
        push_escaped(&mut out, "evil\n12:00 >>> process\u{1b}[2J é");
        assert_eq!(out, "evil\\x0a12:00 >>> process\\x1b[2J é".as_bytes());
        let mut in_place = b"kept ".to_vec();
        push_escaped_display(&mut in_place, "evil\n12:00 >>> process\u{1b}[2J é");
        push_escaped_display(&mut in_place, " /run/plain.sock");
        assert_eq!(in_place, "kept evil\\x0a12:00 >>> process\\x1b[2J é /run/plain.sock".as_bytes());
    }

    #[test]
    fn control_bytes_for_a_terminal_are_escaped_as_less_does() {
        let mut out = Vec::new();
        push_string_escaped(&mut out, b"GET /\x1b]0;owned\x07\r\tok\xc2\x9b2J\xff\x7f\xc3\xa9\n");
        assert_eq!(String::from_utf8(out).unwrap(), "GET /^[]0;owned^G^M\tok<U+009B>2J<FF>^?\u{e9}\n");
        let mut out = Vec::new();
        push_string_escaped(&mut out, b"no newline");
        assert_eq!(out, b"no newline\n");
    }

    #[test]
    fn string_ends_with_one_newline() {
        let mut out = Vec::new();
        push_string(&mut out, b"a\n");
        push_string(&mut out, b"b");
        assert_eq!(out, b"a\nb\n");
    }

    #[test]
    fn hexstring_escapes_every_byte() {
        let mut out = Vec::new();
        push_hexstring(&mut out, b"A\0\xff");
        assert_eq!(out, b"\\x41\\x00\\xff\n");
    }
}
