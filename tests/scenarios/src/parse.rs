//! Reads sockdump's `--format hex` text back into records.

use anyhow::{bail, Context, Result};

/// One message as sockdump printed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Printed {
    pub comm: String,
    pub pid: u32,
    /// Who sockdump says the message went to.
    pub to: To,
    pub path: String,
    pub captured: usize,
    pub len: usize,
    /// The bracketed notes after the lengths, e.g. `truncated by --seg-size`.
    pub notes: Vec<String>,
    pub data: Vec<u8>,
}

/// After `->` in a header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum To {
    /// `PID` or `PID +N`: the process that read the message, and how many
    /// more threads read parts of it.
    Reader { pid: u32, others: u32 },
    /// `peer PID` or `peer ?`: no read seen, SO_PEERCRED's pid.
    Peer(Option<u32>),
}

impl To {
    fn parse(text: &str) -> Result<Self> {
        Ok(match text.strip_prefix("peer ") {
            Some("?") => To::Peer(None),
            Some(pid) => To::Peer(Some(pid.parse()?)),
            None => match text.split_once(" +") {
                Some((pid, others)) => To::Reader { pid: pid.parse()?, others: others.parse()? },
                None => To::Reader { pid: text.parse()?, others: 0 },
            },
        })
    }
}

/// `HH:MM:SS.uuuuuu >>> process COMM [PID -> TO] path PATH len CAP(LEN) [note]...`
fn parse_header(line: &str) -> Result<Printed> {
    let (time, rest) = line.split_once(" >>> process ").context("no `>>> process`")?;
    if time.len() != 15 || time.as_bytes()[8] != b'.' {
        bail!("time {time:?} is not HH:MM:SS.uuuuuu");
    }
    let (who, rest) = rest.rsplit_once("] path ").context("no `] path`")?;
    let (comm, pids) = who.rsplit_once(" [").context("no `[pid -> peer`")?;
    let (pid, to) = pids.split_once(" -> ").context("no `->`")?;
    let (path, rest) = rest.rsplit_once(" len ").context("no `len`")?;
    let (lengths, notes) = match rest.split_once(" [") {
        Some((lengths, notes)) => (lengths, format!("[{notes}")),
        None => (rest, String::new()),
    };
    let (captured, len) =
        lengths.strip_suffix(')').and_then(|l| l.split_once('(')).context("no `CAP(LEN)`")?;
    Ok(Printed {
        comm: comm.to_string(),
        pid: pid.parse()?,
        to: To::parse(to).with_context(|| format!("bad reader {to:?}"))?,
        path: path.to_string(),
        captured: captured.parse()?,
        len: len.parse()?,
        notes: notes
            .split(" [")
            .filter(|n| !n.is_empty())
            .map(|n| n.trim_start_matches('[').trim_end_matches(']').to_string())
            .collect(),
        data: Vec::new(),
    })
}

/// Whether `line` starts as a header does: `HH:MM:SS.uuuuuu >>> process `.
fn is_header(line: &str) -> bool {
    let time = line.as_bytes().get(..15).unwrap_or_default();
    time.len() == 15
        && time.iter().enumerate().all(|(i, &b)| match i {
            2 | 5 => b == b':',
            8 => b == b'.',
            _ => b.is_ascii_digit(),
        })
        && line[15..].starts_with(" >>> process ")
}

/// `0000  47 45 ...  54 50 ...  GET / HTTP/1.1..`: the hex field is 50 columns after the offset.
fn parse_hex_line(line: &str, data: &mut Vec<u8>) -> Result<()> {
    let offset_len = line.find(' ').context("no offset")?;
    let offset = usize::from_str_radix(&line[..offset_len], 16).context("bad offset")?;
    if offset != data.len() {
        bail!("hex line at offset {offset:#x}, expected {:#x}", data.len());
    }
    let hex = line.get(offset_len + 1..offset_len + 51).context("short hex line")?;
    for byte in hex.split_whitespace() {
        data.push(u8::from_str_radix(byte, 16).with_context(|| format!("bad hex byte {byte:?}"))?);
    }
    Ok(())
}

pub fn parse_hex_output(text: &str) -> Result<Vec<Printed>> {
    let mut records: Vec<Printed> = Vec::new();
    for (number, line) in text.lines().enumerate() {
        // a hex line's text column may hold ` >>> process ` too
        let parsed = if is_header(line) {
            parse_header(line).map(|r| records.push(r))
        } else {
            match records.last_mut() {
                Some(record) => parse_hex_line(line, &mut record.data),
                None => Err(anyhow::anyhow!("data before any header")),
            }
        };
        parsed.with_context(|| format!("sockdump output line {}: {line:?}", number + 1))?;
    }
    for r in &records {
        if r.data.len() != r.captured {
            bail!("record of {} says {} bytes captured but shows {}", r.comm, r.captured, r.data.len());
        }
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_headers_notes_and_bytes() {
        let text = "\
12:00:00.000001 >>> process my prog [10 -> peer ?] path /tmp/a b.sock len 20(70000) [truncated by --seg-size] [bytes not readable]
0000  47 45 54 20 2f 20 48 54  54 50 2f 31 2e 31 0d 0a  GET / HTTP/1.1..
0010  48 6f 73 74                                       Host
12:00:00.000002 >>> process x [11 -> peer 10] path socket:[5] len 0(0)
12:00:00.000003 >>> process x [11 -> 12] path socket:[5] len 0(0)
12:00:00.000004 >>> process x [11 -> 12 +2] path socket:[5] len 0(0)
";
        let r = parse_hex_output(text).unwrap();
        assert_eq!(r.len(), 4);
        assert_eq!(r[0].comm, "my prog");
        assert_eq!((r[0].pid, r[0].to), (10, To::Peer(None)));
        assert_eq!(r[0].path, "/tmp/a b.sock");
        assert_eq!((r[0].captured, r[0].len), (20, 70000));
        assert_eq!(r[0].notes, ["truncated by --seg-size", "bytes not readable"]);
        assert_eq!(r[0].data, b"GET / HTTP/1.1\r\nHost");
        assert_eq!((r[1].to, r[1].path.as_str()), (To::Peer(Some(10)), "socket:[5]"));
        assert_eq!(
            (r[2].to, r[3].to),
            (To::Reader { pid: 12, others: 0 }, To::Reader { pid: 12, others: 2 })
        );
    }

    #[test]
    fn rejects_inconsistent_output() {
        assert!(parse_hex_output("0000  41\n").is_err());
        assert!(
            parse_hex_output("12:00:00.000001 >>> process a [1 -> 2] path p len 2(2)\n0000  41\n").is_err()
        );
        assert!(parse_hex_output("12:00:00.000001 >>> process a [1 -> peer x] path p len 0(0)\n").is_err());
        // bytes that read like a header are bytes
        let text = "12:00:00.000001 >>> process a [1 -> 2] path p len 16(16)\n\
                    0000  3e 3e 3e 20 70 72 6f 63  65 73 73 20 6f 75 74 70  >>> process outp\n";
        assert_eq!(parse_hex_output(text).unwrap()[0].data, b">>> process outp");
    }
}
