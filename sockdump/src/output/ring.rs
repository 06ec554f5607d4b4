//! `-C SIZE`, `-G SECONDS`, `-W COUNT`: a capture written to a ring of
//! files, as tcpdump and dumpcap write them. Each file is complete on its
//! own (its section and interface blocks, its statistics), so a finished
//! one can be read while the next is written; names follow dumpcap's
//! `PREFIX_NNNNN_YYYYmmddHHMMSS.EXT`, which Wireshark's File Set dialog
//! recognises.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::Result;
use sockdump_common::Event;

use super::{open_destination, Destination, Expect, Output, Sink, Stats};

/// When a ring starts its next file, and how many it keeps.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RingLimits {
    /// Past this many bytes.
    pub size: Option<u64>,
    /// After this long.
    pub period: Option<Duration>,
    /// Files kept at most; the oldest is removed.
    pub count: Option<u32>,
}

/// A file of the ring, remembered to remove it later: by identity, so a
/// file put in its place by someone else is left alone.
struct Written {
    path: PathBuf,
    dev: u64,
    ino: u64,
}

/// The files of a ring: named, opened (as `-w` opens a file: never through
/// a symlink, never someone else's) and removed past the count.
pub struct RingFiles {
    /// The given path up to its extension, and the extension with its dot.
    prefix: OsString,
    suffix: OsString,
    /// The number of the file opened last (dumpcap counts from 1).
    number: u64,
    written: VecDeque<Written>,
    count: Option<u32>,
}

impl RingFiles {
    pub fn new(path: &Path, count: Option<u32>) -> Self {
        let (prefix, suffix) = match (path.file_stem(), path.extension()) {
            (Some(stem), Some(ext)) => {
                let mut suffix = OsString::from(".");
                suffix.push(ext);
                (path.with_file_name(stem).into_os_string(), suffix)
            }
            _ => (path.as_os_str().to_owned(), OsString::new()),
        };
        RingFiles { prefix, suffix, number: 0, written: VecDeque::new(), count }
    }

    /// The name of file `number` opened at local time `opened`.
    fn name(&self, number: u64, opened: &chrono::DateTime<chrono::Local>) -> PathBuf {
        let mut name = self.prefix.clone();
        name.push(format!("_{number:05}_{}", opened.format("%Y%m%d%H%M%S")));
        name.push(&self.suffix);
        PathBuf::from(name)
    }

    /// Opens the next file, then removes the oldest beyond the count.
    pub fn open_next(&mut self) -> Result<Output> {
        self.number += 1;
        let path = self.name(self.number, &chrono::Local::now());
        let output = open_destination(Some(&path), Expect::File)?;
        let meta = std::fs::metadata(&path)?;
        self.written.push_back(Written { path, dev: meta.dev(), ino: meta.ino() });
        let keep = self.count.map_or(usize::MAX, |count| count as usize);
        while self.written.len() > keep {
            if let Some(oldest) = self.written.pop_front() {
                remove_if_same(&oldest)?;
            }
        }
        Ok(output)
    }

    /// The file being written.
    pub fn current(&self) -> Option<&Path> {
        self.written.back().map(|written| written.path.as_path())
    }
}

fn remove_if_same(file: &Written) -> io::Result<()> {
    match std::fs::symlink_metadata(&file.path) {
        Ok(meta) if (meta.dev(), meta.ino()) == (file.dev, file.ino) => std::fs::remove_file(&file.path),
        Ok(_) => Ok(()),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(err) => Err(err),
    }
}

/// The file a ring's sink writes into, swapped at each rotation; it counts
/// the bytes the current file received.
#[derive(Clone)]
pub struct SharedFile(Arc<Mutex<CountedFile>>);

struct CountedFile {
    out: Destination,
    bytes: u64,
}

impl SharedFile {
    pub fn new(out: Destination) -> Self {
        SharedFile(Arc::new(Mutex::new(CountedFile { out, bytes: 0 })))
    }

    fn lock(&self) -> MutexGuard<'_, CountedFile> {
        // a panic while writing leaves nothing half-updated that matters
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn bytes(&self) -> u64 {
        self.lock().bytes
    }

    /// Closes the current file (its writer is flushed as it drops).
    fn replace(&self, out: Destination) -> io::Result<()> {
        let mut file = self.lock();
        file.out.flush()?;
        *file = CountedFile { out, bytes: 0 };
        Ok(())
    }
}

impl Write for SharedFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut file = self.lock();
        let written = file.out.write(buf)?;
        file.bytes += written as u64;
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.lock().out.flush()
    }
}

/// A capture file sink that moves on to the next file of the ring when
/// the current one is full or old enough. The inner sink keeps its state
/// across files; its `begin` starts each file afresh.
pub struct RotatingSink {
    inner: Box<dyn Sink>,
    file: SharedFile,
    files: RingFiles,
    limits: RingLimits,
    opened: Instant,
    /// Messages in the current file, for its statistics.
    in_file: u64,
}

impl RotatingSink {
    /// `inner` writes into `file`, which holds the ring's first file.
    pub fn new(inner: Box<dyn Sink>, file: SharedFile, files: RingFiles, limits: RingLimits) -> Self {
        RotatingSink { inner, file, files, limits, opened: Instant::now(), in_file: 0 }
    }

    fn full(&self) -> bool {
        self.limits.size.is_some_and(|size| self.file.bytes() + self.inner.buffered() as u64 >= size)
    }

    fn expired(&self) -> bool {
        self.limits.period.is_some_and(|period| self.opened.elapsed() >= period)
    }

    /// Ends the current file with its statistics and starts the next.
    fn rotate(&mut self) -> io::Result<()> {
        self.inner.finish(&Stats { captured: self.in_file, lost: None })?;
        let next = self.files.open_next().map_err(|err| io::Error::other(format!("{err:#}")))?;
        self.file.replace(next.writer)?;
        self.opened = Instant::now();
        self.in_file = 0;
        self.inner.begin()
    }
}

impl Sink for RotatingSink {
    fn begin(&mut self) -> io::Result<()> {
        self.opened = Instant::now();
        self.inner.begin()
    }

    /// A message goes into a new file once the current one is past the
    /// size (so no file ends empty) or its time.
    fn write_event(&mut self, event: &Event<'_>) -> io::Result<()> {
        if self.in_file > 0 && (self.full() || self.expired()) {
            self.rotate()?;
        }
        self.in_file += 1;
        self.inner.write_event(event)
    }

    /// Time passes without messages too: a quiet capture still starts a
    /// file every -G seconds, as dumpcap's.
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()?;
        if self.expired() {
            self.rotate()?;
        }
        Ok(())
    }

    /// The last file's statistics also hold what the whole capture lost:
    /// the kernel's counts are read only at the end.
    fn finish(&mut self, stats: &Stats) -> io::Result<()> {
        self.inner.finish(&Stats { captured: self.in_file, lost: stats.lost })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn names_are_dumpcaps() {
        let at = chrono::Local.with_ymd_and_hms(2026, 11, 26, 8, 5, 9).single().unwrap();
        let ring = RingFiles::new(Path::new("/tmp/cap.pcapng"), None);
        assert_eq!(ring.name(1, &at), Path::new("/tmp/cap_00001_20261126080509.pcapng"));
        assert_eq!(ring.name(123_456, &at), Path::new("/tmp/cap_123456_20261126080509.pcapng"));
        let bare = RingFiles::new(Path::new("dir.d/cap"), None);
        assert_eq!(bare.name(2, &at), Path::new("dir.d/cap_00002_20261126080509"));
    }

    #[test]
    fn the_oldest_files_go_and_only_they() {
        let dir = tempfile::tempdir().unwrap();
        let mut ring = RingFiles::new(&dir.path().join("r.pcapng"), Some(2));
        let mut opened = Vec::new();
        for _ in 0..4 {
            ring.open_next().unwrap();
            opened.push(ring.current().unwrap().to_path_buf());
        }
        let exist: Vec<bool> = opened.iter().map(|p| p.exists()).collect();
        assert_eq!(exist, [false, false, true, true]);
        // a file someone put in place of ours is not removed
        std::fs::remove_file(&opened[2]).unwrap();
        std::fs::write(&opened[2], b"theirs").unwrap();
        ring.open_next().unwrap();
        assert_eq!(std::fs::read(&opened[2]).unwrap(), b"theirs");
    }
}
