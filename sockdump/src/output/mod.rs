//! Where events go. Every format is a [`Sink`]; where its bytes go (a file,
//! stdout, a fifo) is chosen separately by [`open_destination`].

pub mod framing;
pub mod pcap;
pub mod pcapng;
pub mod text;

use std::fs::OpenOptions;
use std::io::{self, BufWriter, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
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

/// Opens `path` (`-` or none for stdout). Files are created with mode 0600:
/// captures hold whatever secrets went over the sockets.
pub fn open_destination(path: Option<&Path>) -> Result<Output> {
    let (fd, writer): (OwnedFd, Destination) = match path {
        Some(p) if p != Path::new("-") => {
            let file = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(p)
                .with_context(|| format!("cannot write --output {}", p.display()))?;
            (file.try_clone()?.into(), Box::new(BufWriter::with_capacity(1 << 16, file)))
        }
        _ => (
            io::stdout().as_fd().try_clone_to_owned()?,
            Box::new(BufWriter::with_capacity(1 << 16, io::stdout())),
        ),
    };
    let regular =
        nix::sys::stat::fstat(fd.as_raw_fd()).is_ok_and(|st| st.st_mode & libc::S_IFMT == libc::S_IFREG);
    Ok(Output { writer, reader: (!regular).then_some(fd) })
}

/// Whether `path` (`-` or none: stdout) is a regular file. Binary sinks
/// flush a pipe or fifo after every message, so `| wireshark -k -i -` and
/// extcap fifos show each packet at once; a file is flushed per drain.
pub fn is_regular_file(path: Option<&Path>) -> bool {
    match path {
        Some(p) if p != Path::new("-") => {
            std::fs::metadata(p).map(|m| m.file_type().is_file()).unwrap_or(false)
        }
        _ => nix::sys::stat::fstat(libc::STDOUT_FILENO)
            .map(|st| st.st_mode & libc::S_IFMT == libc::S_IFREG)
            .unwrap_or(false),
    }
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
    fn only_regular_files_are_flushed_per_drain() {
        let dir = std::env::temp_dir().join(format!("sockdump-dest-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("f.pcapng");
        std::fs::write(&file, b"").unwrap();
        let fifo = dir.join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        assert!(is_regular_file(Some(&file)));
        assert!(!is_regular_file(Some(&fifo)));
        assert!(!is_regular_file(Some(Path::new("/dev/null"))));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
