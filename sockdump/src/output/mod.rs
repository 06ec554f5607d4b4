//! Where events go. Every format is a [`Sink`]; where its bytes go (a file,
//! stdout, a fifo) is chosen separately by [`open_destination`].

pub mod framing;
pub mod json;
pub mod pcap;
pub mod pcapng;
pub mod ring;
pub mod text;

use std::fs::{File, OpenOptions, Permissions};
use std::io::{self, BufWriter, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use anyhow::{Context, Result};
use sockdump_common::Event;

use crate::clock::WallClock;
use framing::{Link, PortMap};

/// Totals a sink may record at the end of a file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    pub captured: u64,
    /// None where it is not known (a ring's files before the last).
    pub lost: Option<u64>,
}

/// An output format. Knows nothing of the command line: `run` chooses and
/// configures it.
pub trait Sink {
    /// Writes what precedes the first message (a file header), at once, so a
    /// reader on a pipe can start. Called once per output file; a format
    /// with no header (text) writes nothing.
    fn begin(&mut self) -> io::Result<()> {
        Ok(())
    }
    fn write_event(&mut self, event: &Event<'_>) -> io::Result<()>;
    /// Called whenever the ring buffer is drained, so a reader sees messages
    /// promptly without a write per message under load.
    fn flush(&mut self) -> io::Result<()>;
    /// Ends the output file; the sink is not used afterwards, unless a
    /// ring begins its next file.
    fn finish(&mut self, stats: &Stats) -> io::Result<()>;
    /// Bytes encoded but not yet handed to the writer, for a ring's size.
    fn buffered(&self) -> usize {
        0
    }
}

/// `--print`: a capture file's sink, and text on stdout beside it.
pub struct Tee {
    pub file: Box<dyn Sink>,
    pub print: Box<dyn Sink>,
}

impl Sink for Tee {
    fn begin(&mut self) -> io::Result<()> {
        self.file.begin()?;
        self.print.begin()
    }
    fn write_event(&mut self, event: &Event<'_>) -> io::Result<()> {
        self.file.write_event(event)?;
        self.print.write_event(event)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()?;
        self.print.flush()
    }
    fn finish(&mut self, stats: &Stats) -> io::Result<()> {
        self.file.finish(stats)?;
        self.print.finish(stats)
    }
}

pub type Destination = Box<dyn Write + Send>;

/// An opened output: where the bytes go, and what kind of place that is.
pub struct Output {
    pub writer: Destination,
    pub kind: OutputKind,
}

pub struct OutputKind {
    /// A duplicate of the output's descriptor when it is not a regular file
    /// (a pipe, fifo, socket): capture polls it to stop as soon as the
    /// reader goes away, without waiting for the next message to fail.
    pub reader: Option<OwnedFd>,
    /// A terminal: captured bytes must not reach it raw (escape sequences
    /// could drive the terminal of whoever watches).
    pub terminal: bool,
}

impl OutputKind {
    /// A regular file is flushed per batch; anything else (a pipe, a fifo, a
    /// terminal: `| wireshark -k -i -`, extcap) gets each message at once.
    pub fn is_regular_file(&self) -> bool {
        self.reader.is_none()
    }
}

/// What may stand at an output path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// A file: created mode 0600, or an existing regular file or fifo of
    /// the caller's (a regular one is truncated).
    File,
    /// Wireshark's extcap fifo: opened, never created or truncated.
    Fifo,
}

/// Opens `path` (`-` or none for stdout). A capture holds other people's
/// secrets, so a symlink is never followed, a file is created mode 0600,
/// and a file that is not the caller's is never written into (it would stay
/// readable to its owner). `/dev/null` is always fine.
pub fn open_destination(path: Option<&Path>, expect: Expect) -> Result<Output> {
    let named = path.filter(|p| *p != Path::new("-"));
    let file = match named {
        Some(p) => open_private(p, expect).with_context(|| format!("cannot write {}", p.display()))?,
        // a File on a duplicate of fd 1: io::Stdout would buffer lines again
        None => File::from(io::stdout().as_fd().try_clone_to_owned().context("cannot use stdout")?),
    };
    let regular = file.metadata().is_ok_and(|m| m.file_type().is_file());
    let reader = if regular { None } else { Some(file.try_clone()?.into()) };
    let terminal = io::IsTerminal::is_terminal(&file);
    let writer: Destination = match regular {
        true => Box::new(BufWriter::with_capacity(1 << 16, WholeWrites::new(file)?)),
        false => Box::new(BufWriter::with_capacity(1 << 16, file)),
    };
    Ok(Output { writer, kind: OutputKind { reader, terminal } })
}

/// A regular output file that never ends inside a write: a write that
/// fails part way (a full disk, EIO) is cut off again, so the file ends at
/// the last whole block or line and stays readable. Sinks hand over whole
/// blocks, and the `BufWriter` before this passes on whole buffers, since
/// a write here never reports a part.
struct WholeWrites {
    file: File,
    /// Where the last whole write ended.
    end: u64,
}

impl WholeWrites {
    fn new(mut file: File) -> io::Result<Self> {
        use std::io::Seek;
        let end = file.stream_position()?;
        Ok(WholeWrites { file, end })
    }
}

impl Write for WholeWrites {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        use std::io::{Seek, SeekFrom};
        match self.file.write_all(buf) {
            Ok(()) => {
                self.end += buf.len() as u64;
                Ok(buf.len())
            }
            Err(err) => {
                // best effort: the error that matters is the write's
                let _ = self.file.set_len(self.end);
                let _ = self.file.seek(SeekFrom::Start(self.end));
                Err(err)
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// Why an output path is refused.
#[derive(Debug, thiserror::Error)]
enum Refused {
    #[error("it is a symbolic link; give the path it points to")]
    Symlink,
    #[error("it belongs to uid {0}, not to you; remove it or choose another name")]
    NotYours(u32),
    #[error("it is not a regular file or fifo")]
    NotAFile,
    #[error("it is not a fifo: Wireshark's extcap fifo was expected")]
    NotAFifo,
}

fn open_private(path: &Path, expect: Expect) -> Result<File> {
    let mut options = OpenOptions::new();
    options.write(true).custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC);
    if path == Path::new("/dev/null") {
        return Ok(options.open(path)?);
    }
    if expect == Expect::File {
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)
        {
            Ok(file) => return Ok(file),
            Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {}
            Err(err) => return Err(err.into()),
        }
    }
    // It exists: look before opening, so someone else's fifo is not opened
    // (that would block), then check that what was opened is what was seen.
    let seen = std::fs::symlink_metadata(path)?;
    let kind = seen.file_type();
    if kind.is_symlink() {
        return Err(Refused::Symlink.into());
    }
    match expect {
        Expect::Fifo if !kind.is_fifo() => return Err(Refused::NotAFifo.into()),
        Expect::File if !kind.is_file() && !kind.is_fifo() => return Err(Refused::NotAFile.into()),
        _ => {}
    }
    if seen.uid() != nix::unistd::geteuid().as_raw() {
        return Err(Refused::NotYours(seen.uid()).into());
    }
    let file = options.open(path).map_err(|err| match err.raw_os_error() {
        Some(libc::ELOOP) => Refused::Symlink.into(),
        _ => anyhow::Error::from(err),
    })?;
    let opened = file.metadata()?;
    if (opened.dev(), opened.ino()) != (seen.dev(), seen.ino()) {
        anyhow::bail!("it was replaced while being opened");
    }
    if opened.file_type().is_file() {
        file.set_len(0)?;
        file.set_permissions(Permissions::from_mode(0o600))?;
    }
    Ok(file)
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

/// Nanoseconds since the epoch of a kernel timestamp (0 before 1970).
fn epoch_ns(clock: WallClock, monotonic_ns: u64) -> u64 {
    u64::try_from(clock.epoch_ns(monotonic_ns).max(0)).unwrap_or(u64::MAX)
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

    fn refusal(path: &Path, expect: Expect) -> String {
        format!("{:#}", open_destination(Some(path), expect).err().expect("refused"))
    }

    #[test]
    fn files_are_private_and_the_rest_is_watched_for_its_reader() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f.pcapng");
        std::fs::write(&file, b"old").unwrap();
        std::fs::set_permissions(&file, Permissions::from_mode(0o644)).unwrap();
        let opened = open_destination(Some(&file), Expect::File).unwrap();
        assert!(opened.kind.is_regular_file() && opened.kind.reader.is_none());
        let meta = std::fs::metadata(&file).unwrap();
        assert_eq!((meta.len(), meta.permissions().mode() & 0o777), (0, 0o600), "truncated and private");

        let new = dir.path().join("new.pcapng");
        open_destination(Some(&new), Expect::File).unwrap();
        assert_eq!(std::fs::metadata(&new).unwrap().permissions().mode() & 0o777, 0o600);

        let null = open_destination(Some(Path::new("/dev/null")), Expect::File).unwrap();
        assert!(!null.kind.is_regular_file() && null.kind.reader.is_some());
        let fifo = dir.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let _reader =
            std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open(&fifo).unwrap();
        assert!(!open_destination(Some(&fifo), Expect::File).unwrap().kind.is_regular_file());
        assert!(!open_destination(Some(&fifo), Expect::Fifo).unwrap().kind.is_regular_file());
    }

    #[test]
    fn symlinks_are_never_followed() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("target");
        std::fs::write(&target, b"keep").unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let dangling = dir.path().join("dangling");
        std::os::unix::fs::symlink(dir.path().join("nothing"), &dangling).unwrap();
        for path in [&link, &dangling] {
            assert!(refusal(path, Expect::File).contains("symbolic link"), "{}", refusal(path, Expect::File));
        }
        assert_eq!(std::fs::read(&target).unwrap(), b"keep");
        assert!(!dir.path().join("nothing").exists(), "nothing was created through the link");
    }

    #[test]
    fn someone_elses_file_is_left_alone() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("SKIPPED someone_elses_file_is_left_alone: needs root to give a file away");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let theirs = dir.path().join("theirs.pcapng");
        std::fs::write(&theirs, b"keep").unwrap();
        std::os::unix::fs::chown(&theirs, Some(65534), None).unwrap();
        let err = refusal(&theirs, Expect::File);
        assert!(err.contains("belongs to uid 65534, not to you"), "{err}");
        assert_eq!(std::fs::read(&theirs).unwrap(), b"keep", "left untouched");
    }

    #[test]
    fn the_extcap_fifo_is_never_created() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("wireshark_extcap_fifo");
        assert!(refusal(&missing, Expect::Fifo).contains("No such file"));
        assert!(!missing.exists());
        let file = dir.path().join("plain");
        std::fs::write(&file, b"keep").unwrap();
        assert!(refusal(&file, Expect::Fifo).contains("not a fifo"));
        assert_eq!(std::fs::read(&file).unwrap(), b"keep");
    }
}
