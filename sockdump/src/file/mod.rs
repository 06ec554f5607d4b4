//! Capture files, both ways. Each format is known to one module, which
//! writes it and reads it back: [`pcapng`] and [`pcap`]. Reading goes
//! through the `pcap-file` crate for both, and so does writing pcap;
//! pcapng is written by hand because the crate's writer costs 20-50% more
//! CPU per message at 64 B and 1 KiB (BENCHMARKS.md, `sockdump-bench
//! writers`).

pub mod pcap;
pub mod pcapng;

use std::error::Error;
use std::io::{self, Read};

/// Why a file cannot be read as a capture.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error(transparent)]
    Io(#[from] io::Error),
    #[error("not a pcap or pcapng file (it starts with {0:02x?})")]
    NotCapture([u8; 4]),
    #[error("the file is damaged: {0}")]
    Damaged(String),
}

/// Readers buffer this much: a block or packet longer than this is refused
/// (the messages say 16 MiB).
const MAX_BLOCK: usize = 16 << 20;

/// One packet as a file holds it, valid until the next is read.
#[derive(Debug, Clone, Copy)]
pub struct RawPacket<'a> {
    pub linktype: u32,
    /// Nanoseconds since the epoch.
    pub timestamp_ns: u64,
    pub data: &'a [u8],
    /// The packet's sockdump comment (pcapng only).
    pub comment: Option<&'a str>,
}

/// A crate error as one line, with its causes: the crate's own messages
/// name only the outermost.
fn damaged(err: &dyn Error, cut_short: &str) -> FileError {
    let mut line = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        if let Some(io) = cause.downcast_ref::<io::Error>() {
            if io.kind() == io::ErrorKind::UnexpectedEof {
                return FileError::Damaged(cut_short.to_owned());
            }
        }
        line = format!("{line}: {cause}");
        source = cause.source();
    }
    FileError::Damaged(line)
}

/// The packets of a pcap or pcapng stream, whichever it holds.
pub enum Packets<R: Read> {
    Pcapng(pcapng::Packets<Sniffed<R>>),
    Pcap(pcap::Packets<Sniffed<R>>),
}

/// The input after its first bytes were looked at.
pub type Sniffed<R> = io::Chain<io::Cursor<[u8; 4]>, R>;

impl<R: Read> Packets<R> {
    /// Tells the format by the first four bytes.
    pub fn open(mut input: R) -> Result<Self, FileError> {
        let mut magic = [0u8; 4];
        input.read_exact(&mut magic).map_err(|e| match e.kind() {
            io::ErrorKind::UnexpectedEof => FileError::NotCapture(magic),
            _ => FileError::Io(e),
        })?;
        let sniffed = io::Cursor::new(magic).chain(input);
        if pcapng::starts_file(magic) {
            Ok(Packets::Pcapng(pcapng::Packets::new(sniffed)?))
        } else if pcap::starts_file(magic) {
            Ok(Packets::Pcap(pcap::Packets::new(sniffed)?))
        } else {
            Err(FileError::NotCapture(magic))
        }
    }

    /// The next packet, or `None` at the end of the file.
    pub fn next_packet(&mut self) -> Result<Option<RawPacket<'_>>, FileError> {
        match self {
            Packets::Pcapng(p) => p.next_packet(),
            Packets::Pcap(p) => p.next_packet(),
        }
    }

    /// Messages the capture reported lost (pcapng statistics blocks).
    pub fn lost(&self) -> u64 {
        match self {
            Packets::Pcapng(p) => p.lost(),
            Packets::Pcap(_) => 0,
        }
    }
}
