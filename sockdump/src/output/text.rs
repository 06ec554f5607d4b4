//! The original sockdump's text output: one header line per message, then
//! the bytes as hex, as they are, or as `\xNN`.

use std::io::{self, Write};

use sockdump_common::{Event, SocketName};

use super::{Sink, Stats};
use crate::cli::Format;
use crate::clock::{time_of_day, WallClock, Zone};

pub struct TextSink<W: Write> {
    out: W,
    format: Format,
    clock: WallClock,
    zone: Zone,
}

impl<W: Write> TextSink<W> {
    pub fn new(out: W, format: Format, clock: WallClock, zone: Zone) -> Self {
        TextSink { out, format, clock, zone }
    }

    pub fn into_inner(self) -> W {
        self.out
    }
}

impl<W: Write> Sink for TextSink<W> {
    fn write_event(&mut self, event: &Event<'_>) -> io::Result<()> {
        write_header(&mut self.out, event, self.clock, self.zone)?;
        match self.format {
            // run.rs builds other sinks for capture files; hex is the fallback.
            Format::Hex | Format::Pcap | Format::Pcapng => write_hex(&mut self.out, event.data),
            Format::String => write_string(&mut self.out, event.data),
            Format::Hexstring => write_hexstring(&mut self.out, event.data),
        }
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

/// `<time> >>> process <comm> [<pid> -> <peer pid>] path <path> len <captured>(<sent>)`,
/// and a note when the bytes are incomplete.
pub fn write_header(out: &mut impl Write, event: &Event<'_>, clock: WallClock, zone: Zone) -> io::Result<()> {
    write!(
        out,
        "{} >>> process {} [{} -> ",
        time_of_day(clock.epoch_ns(event.timestamp_ns), zone),
        String::from_utf8_lossy(event.comm),
        event.pid
    )?;
    match event.peer_pid {
        0 => out.write_all(b"?")?,
        pid => write!(out, "{pid}")?,
    }
    write!(out, "] path {} len {}({})", shown_path(event), event.data.len(), event.len)?;
    if event.flags.truncated_size() {
        out.write_all(b" [truncated by --seg-size]")?;
    }
    if event.flags.truncated_segs() {
        out.write_all(b" [truncated by --segs-per-msg]")?;
    }
    if event.flags.unreadable() {
        out.write_all(b" [bytes not readable]")?;
    }
    out.write_all(b"\n")
}

/// `0000  47 45 54 20 2f 20 48 54  54 50 2f 31 2e 31 0d 0a  GET / HTTP/1.1..`
pub fn write_hex(out: &mut impl Write, data: &[u8]) -> io::Result<()> {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut line = Vec::with_capacity(80);
    for (index, chunk) in data.chunks(16).enumerate() {
        line.clear();
        write!(line, "{:04x} ", index * 16)?;
        for column in 0..16 {
            if column % 8 == 0 {
                line.push(b' ');
            }
            match chunk.get(column) {
                Some(&b) => {
                    line.extend_from_slice(&[DIGITS[usize::from(b >> 4)], DIGITS[usize::from(b & 15)], b' '])
                }
                None => line.extend_from_slice(b"   "),
            }
        }
        line.push(b' ');
        line.extend(chunk.iter().map(|&b| if b.is_ascii_graphic() || b == b' ' { b } else { b'.' }));
        line.push(b'\n');
        out.write_all(&line)?;
    }
    Ok(())
}

/// The bytes as they were sent, ending the record with a newline.
pub fn write_string(out: &mut impl Write, data: &[u8]) -> io::Result<()> {
    out.write_all(data)?;
    if data.last() != Some(&b'\n') {
        out.write_all(b"\n")?;
    }
    Ok(())
}

/// Every byte as `\xNN`, one line per message.
pub fn write_hexstring(out: &mut impl Write, data: &[u8]) -> io::Result<()> {
    for b in data {
        write!(out, "\\x{b:02x}")?;
    }
    out.write_all(b"\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(data: &[u8]) -> String {
        let mut out = Vec::new();
        write_hex(&mut out, data).unwrap();
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
    }

    #[test]
    fn string_ends_with_one_newline() {
        let mut out = Vec::new();
        write_string(&mut out, b"a\n").unwrap();
        write_string(&mut out, b"b").unwrap();
        assert_eq!(out, b"a\nb\n");
    }

    #[test]
    fn hexstring_escapes_every_byte() {
        let mut out = Vec::new();
        write_hexstring(&mut out, b"A\0\xff").unwrap();
        assert_eq!(out, b"\\x41\\x00\\xff\n");
    }
}
