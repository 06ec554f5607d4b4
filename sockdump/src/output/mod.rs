//! Where events go. Every format is a [`Sink`]; where its bytes go (a file,
//! stdout, a fifo) is chosen separately by [`open_destination`].

pub mod text;

use std::fs::OpenOptions;
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use anyhow::{Context, Result};
use sockdump_common::Event;

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

/// Opens `path` (`-` or none for stdout). Files are created with mode 0600:
/// captures hold whatever secrets went over the sockets.
pub fn open_destination(path: Option<&Path>) -> Result<Destination> {
    match path {
        None => Ok(Box::new(BufWriter::with_capacity(1 << 16, io::stdout()))),
        Some(p) if p == Path::new("-") => Ok(Box::new(BufWriter::with_capacity(1 << 16, io::stdout()))),
        Some(p) => {
            let file = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(p)
                .with_context(|| format!("cannot write --output {}", p.display()))?;
            Ok(Box::new(BufWriter::with_capacity(1 << 16, file)))
        }
    }
}
