//! Where events go. Every format is a [`Sink`]; where its bytes go (a file,
//! stdout, a fifo) is chosen separately by [`open_destination`].

pub mod framing;
pub mod pcap;
pub mod pcapng;
pub mod text;

use std::fs::{File, OpenOptions, Permissions};
use std::io::{self, BufWriter, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use anyhow::{Context, Result};
use sockdump_common::Event;

use crate::clock::WallClock;
use framing::{Link, PortMap};

/// Totals a sink may record at the end of a capture.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    pub captured: u64,
    pub lost: u64,
}

/// An output format.
pub trait Sink {
    fn write_event(&mut self, event: &Event<'_>) -> io::Result<()>;
    /// Called whenever the ring buffer is drained, so a reader sees messages
    /// promptly without a write per message under load.
    fn flush(&mut self) -> io::Result<()>;
    /// Ends the output; the sink is not used afterwards.
    fn finish(&mut self, stats: &Stats) -> io::Result<()>;
}

pub type Destination = Box<dyn Write + Send>;

/// An opened output.
pub struct Output {
    pub writer: Destination,
    /// A duplicate of the output's descriptor when it is not a regular file
    /// (a pipe, fifo, socket): capture polls it to stop as soon as the
    /// reader goes away, without waiting for the next message to fail.
    pub reader: Option<OwnedFd>,
}

impl Output {
    /// A regular file is flushed per batch; anything else (a pipe, a fifo, a
    /// terminal: `| wireshark -k -i -`, extcap) gets each message at once.
    pub fn is_regular_file(&self) -> bool {
        self.reader.is_none()
    }
}

/// Opens `path` (`-` or none for stdout). Files are mode 0600, even one that
/// existed: captures hold whatever secrets went over the sockets.
pub fn open_destination(path: Option<&Path>) -> Result<Output> {
    let named = path.filter(|p| *p != Path::new("-"));
    let file = match named {
        Some(p) => OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(p)
            .with_context(|| format!("cannot write --output {}", p.display()))?,
        // a File on a duplicate of fd 1: io::Stdout would buffer lines again
        None => File::from(io::stdout().as_fd().try_clone_to_owned().context("cannot use stdout")?),
    };
    let regular = file.metadata().is_ok_and(|m| m.file_type().is_file());
    if let (true, Some(p)) = (regular, named) {
        file.set_permissions(Permissions::from_mode(0o600))
            .with_context(|| format!("cannot make --output {} private (mode 0600)", p.display()))?;
    }
    let reader = if regular { None } else { Some(file.try_clone()?.into()) };
    Ok(Output { writer: Box::new(BufWriter::with_capacity(1 << 16, file)), reader })
}

/// What the pcap and pcapng sinks are made with.
#[derive(Debug, Clone)]
pub struct SinkOptions {
    pub link: Link,
    pub ports: PortMap,
    /// Maps kernel timestamps to wall-clock time.
    pub clock: WallClock,
    /// Flush after every message (a pipe or fifo) rather than per drain.
    pub flush_each: bool,
    /// The capture filter, recorded in the pcapng interface block.
    pub filter: Option<String>,
}

/// Nanoseconds since the Unix epoch, now.
pub fn unix_now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_private_and_the_rest_is_watched_for_its_reader() {
        let dir = std::env::temp_dir().join(format!("sockdump-dest-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("f.pcapng");
        std::fs::write(&file, b"old").unwrap();
        std::fs::set_permissions(&file, Permissions::from_mode(0o644)).unwrap();
        let opened = open_destination(Some(&file)).unwrap();
        assert!(opened.is_regular_file() && opened.reader.is_none());
        let meta = std::fs::metadata(&file).unwrap();
        assert_eq!((meta.len(), meta.permissions().mode() & 0o777), (0, 0o600), "truncated and private");

        let null = open_destination(Some(Path::new("/dev/null"))).unwrap();
        assert!(!null.is_regular_file() && null.reader.is_some());
        let fifo = dir.join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let _reader =
            std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open(&fifo).unwrap();
        assert!(!open_destination(Some(&fifo)).unwrap().is_regular_file());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
