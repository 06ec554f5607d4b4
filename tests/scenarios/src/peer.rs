//! The traffic side of a scenario: a separate process (and its children)
//! that sends known bytes and reports what sockdump must show for them.

use std::io::{BufRead, Read, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use nix::sys::socket::{getsockopt, sockopt};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, pipe, ForkResult};
use serde::{Deserialize, Serialize};

/// Per-message capture limits the scenario runs sockdump with.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub seg_size: usize,
    pub segs_per_msg: usize,
}

pub const DEFAULT_LIMITS: Limits = Limits { seg_size: 51200, segs_per_msg: 10 };

/// A message a peer sent, and what sockdump must print for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sent {
    pub comm: String,
    pub pid: u32,
    pub peer_pid: Option<u32>,
    pub path: String,
    /// Bytes the kernel accepted.
    pub len: usize,
    /// The bytes sockdump must show (for sends it must not show: the bytes
    /// sent, which no record may hold).
    pub data: Vec<u8>,
    pub notes: Vec<String>,
    pub shown: Shown,
    /// Who reads the message, where a scenario says.
    #[serde(default)]
    pub read_by: ReadBy,
}

/// Which process reads a message, for a hook family that names readers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum ReadBy {
    /// Not checked: any reader, or SO_PEERCRED's pid when none was seen.
    #[default]
    Unchecked,
    /// This process reads it, within sockdump's --reader-wait.
    Pid(u32),
    /// `first` reads its first part, `others` more processes the rest.
    Split { first: u32, others: u32 },
    /// Nobody reads it: sockdump shows SO_PEERCRED's pid.
    Nobody,
}

/// What sockdump must make of a send.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Shown {
    /// A record with the bytes (up to the capture limits).
    Bytes,
    /// A record with the length only, flagged: `len 0(N) [bytes not readable]`.
    Length,
    /// No record (failed send, filtered out, a path the hook does not see).
    Nothing,
    /// No record, but counted as lost in the `lost: ` counter named here.
    Lost(String),
}

impl Shown {
    /// Whether sockdump prints a record for the send.
    pub fn printed(&self) -> bool {
        matches!(self, Shown::Bytes | Shown::Length)
    }
}

/// The hook family sockdump captures with, from its `listening` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Fentry,
    Socket,
    Kprobe,
    Tracepoint,
}

impl std::str::FromStr for Family {
    type Err = anyhow::Error;

    fn from_str(name: &str) -> Result<Self> {
        Ok(match name {
            "fentry" => Family::Fentry,
            "socket" => Family::Socket,
            "kprobe" => Family::Kprobe,
            "tracepoint" => Family::Tracepoint,
            other => bail!("unknown hook family {other:?}"),
        })
    }
}

impl Family {
    /// Whether its messages name their readers (the syscall tracepoints
    /// do not see reads: README, Hooks).
    pub fn names_readers(self) -> bool {
        self != Family::Tracepoint
    }
}

/// What a peer process knows while it generates traffic.
pub struct Peer {
    pub dir: PathBuf,
    pub limits: Limits,
    /// The running kernel's version, (major, minor).
    pub kernel: (u32, u32),
    pub sent: Vec<Sent>,
    /// The family sockdump listens with: set once READY was printed and
    /// `GO <family>` received.
    family: Option<Family>,
    /// Whether sockdump names readers (`GO <family> readers`).
    readers_named: bool,
}

pub const NOTE_SEG_SIZE: &str = "truncated by --seg-size";
pub const NOTE_SEGS: &str = "truncated by --segs-per-msg";
pub const NOTE_UNREADABLE: &str = "bytes not readable";

/// The `lost: ` counter of sendmmsg messages the tracepoint family did not walk.
pub const LOST_MMSG: &str = "sendmmsg beyond the walked messages";

/// (major, minor) of a kernel release such as `6.12.38+deb12-amd64`.
pub fn kernel_version(release: &str) -> Option<(u32, u32)> {
    let mut numbers = release.split(|c: char| !c.is_ascii_digit()).map(str::parse);
    Some((numbers.next()?.ok()?, numbers.next()?.ok()?))
}

fn running_kernel() -> Result<(u32, u32)> {
    let release = nix::sys::utsname::uname()?.release().to_string_lossy().into_owned();
    kernel_version(&release).with_context(|| format!("cannot read the kernel version {release:?}"))
}

fn current_comm() -> Result<String> {
    let comm =
        std::fs::read_to_string("/proc/thread-self/comm").context("cannot read /proc/thread-self/comm")?;
    Ok(comm.trim_end_matches('\n').to_string())
}

/// The SO_PEERCRED pid of a socket, as sockdump reports it (None for 0).
pub fn peer_pid(fd: &impl AsFd) -> Option<u32> {
    let cred = getsockopt(fd, sockopt::PeerCredentials).ok()?;
    u32::try_from(cred.pid()).ok().filter(|&pid| pid != 0)
}

/// `socket:[INODE]`, the name sockdump shows for an unnamed socket.
pub fn inode_name(fd: &impl AsFd) -> Result<String> {
    let stat = nix::sys::stat::fstat(fd.as_fd().as_raw_fd())?;
    Ok(format!("socket:[{}]", stat.st_ino))
}

impl Peer {
    /// Tells the runner this peer's pid, then waits until sockdump listens.
    /// Scenarios that `prepare` call it once their sockets exist.
    pub fn ready(&mut self) -> Result<()> {
        let mut stdout = std::io::stdout();
        writeln!(stdout, "READY {}", std::process::id())?;
        stdout.flush()?;
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        let go = line
            .trim()
            .strip_prefix("GO ")
            .with_context(|| format!("expected GO <family> from the runner, got {line:?}"))?;
        let (family, readers) = go.split_once(' ').unwrap_or((go, ""));
        self.family = Some(family.parse()?);
        self.readers_named = readers == "readers";
        Ok(())
    }

    /// The hook family sockdump captures with (known once ready).
    pub fn family(&self) -> Family {
        self.family.expect("the family is known once the peer is ready")
    }

    /// Whether each message names its reader (known once ready): not with
    /// the syscall tracepoints, nor with a hook the kernel may preempt.
    pub fn readers_named(&self) -> bool {
        self.readers_named
    }

    /// Records a message of one buffer that the kernel accepted `sent` bytes of.
    pub fn expect(&mut self, buf: &[u8], sent: usize, path: &str, peer_pid: Option<u32>) -> Result<()> {
        self.expect_segments(&[buf], sent, path, peer_pid)
    }

    /// Records a vectored message; sockdump walks at most `segs_per_msg` segments.
    pub fn expect_segments(
        &mut self,
        segs: &[&[u8]],
        sent: usize,
        path: &str,
        peer_pid: Option<u32>,
    ) -> Result<()> {
        let want = sent.min(self.limits.seg_size);
        let mut data = Vec::new();
        let mut notes = Vec::new();
        if sent > self.limits.seg_size {
            notes.push(NOTE_SEG_SIZE.to_string());
        }
        for (index, seg) in segs.iter().enumerate() {
            if data.len() >= want {
                break;
            }
            if index >= self.limits.segs_per_msg {
                notes.push(NOTE_SEGS.to_string());
                break;
            }
            data.extend_from_slice(&seg[..seg.len().min(want - data.len())]);
        }
        self.push(Shown::Bytes, data, notes, sent, path, peer_pid)
    }

    /// Records a message of one buffer that sockdump shows as `shown` says.
    pub fn expect_shown(
        &mut self,
        shown: Shown,
        buf: &[u8],
        sent: usize,
        path: &str,
        peer_pid: Option<u32>,
    ) -> Result<()> {
        match shown {
            Shown::Bytes => self.expect(buf, sent, path, peer_pid),
            Shown::Length => {
                self.push(Shown::Length, Vec::new(), vec![NOTE_UNREADABLE.to_string()], sent, path, peer_pid)
            }
            shown => self.push(shown, buf[..sent].to_vec(), Vec::new(), sent, path, peer_pid),
        }
    }

    /// Records a send that sockdump must not show.
    pub fn forbid(&mut self, buf: &[u8]) -> Result<()> {
        self.push(Shown::Nothing, buf.to_vec(), Vec::new(), buf.len(), "", None)
    }

    fn push(
        &mut self,
        shown: Shown,
        data: Vec<u8>,
        notes: Vec<String>,
        len: usize,
        path: &str,
        peer_pid: Option<u32>,
    ) -> Result<()> {
        self.sent.push(Sent {
            comm: current_comm()?,
            pid: std::process::id(),
            peer_pid,
            path: path.to_string(),
            len,
            data,
            notes,
            shown,
            read_by: ReadBy::Unchecked,
        });
        Ok(())
    }

    /// Says who reads the message recorded last.
    pub fn read_by(&mut self, read_by: ReadBy) -> Result<()> {
        self.sent.last_mut().context("no message recorded yet")?.read_by = read_by;
        Ok(())
    }

    /// Starts `child` in a forked process; [`Peer::join`] collects what it sent.
    pub fn fork_child(&mut self, child: impl FnOnce(&mut Peer) -> Result<()>) -> Result<Child> {
        let (read_end, write_end) = pipe()?;
        // SAFETY: peers are single-threaded when they fork, so the child may
        // run arbitrary code; it leaves with _exit and never returns here.
        match unsafe { fork() }? {
            ForkResult::Child => {
                drop(read_end);
                let mut peer = Peer {
                    dir: self.dir.clone(),
                    limits: self.limits,
                    kernel: self.kernel,
                    sent: Vec::new(),
                    family: self.family,
                    readers_named: self.readers_named,
                };
                let outcome = child(&mut peer).and_then(|()| {
                    let mut pipe = std::fs::File::from(write_end);
                    pipe.write_all(&serde_json::to_vec(&peer.sent)?)?;
                    Ok(())
                });
                let code = match outcome {
                    Ok(()) => 0,
                    Err(err) => {
                        eprintln!("peer child {}: {err:#}", std::process::id());
                        1
                    }
                };
                // SAFETY: leaves the forked child without running the parent's atexit handlers.
                unsafe { libc::_exit(code) }
            }
            ForkResult::Parent { child } => {
                drop(write_end);
                Ok(Child { pid: child, report: read_end })
            }
        }
    }

    /// Waits for a forked child and adds what it sent to this peer's report.
    pub fn join(&mut self, child: Child) -> Result<u32> {
        let mut report = Vec::new();
        std::fs::File::from(child.report).read_to_end(&mut report)?;
        match waitpid(child.pid, None)? {
            WaitStatus::Exited(_, 0) => {}
            status => bail!("peer child {} ended with {status:?}", child.pid),
        }
        let sent: Vec<Sent> = serde_json::from_slice(&report).context("child report")?;
        self.sent.extend(sent);
        Ok(child.pid.as_raw() as u32)
    }
}

/// A forked child of a peer.
pub struct Child {
    pub pid: nix::unistd::Pid,
    report: OwnedFd,
}

/// The peer process: prepare, report the pid, wait for GO, send, report
/// what was sent (`REPORT <json>`), or why it could not (`FAILED <why>`,
/// which the runner shows as the scenario's failure).
pub fn serve(scenario: &crate::scenarios::Scenario, dir: PathBuf) -> Result<()> {
    let line = match send(scenario, dir) {
        Ok(sent) => format!("REPORT {}", serde_json::to_string(&sent)?),
        Err(err) => format!("FAILED {}", format!("{err:#}").replace('\n', " ")),
    };
    let mut stdout = std::io::stdout();
    writeln!(stdout, "{line}")?;
    stdout.flush()?;
    Ok(())
}

fn send(scenario: &crate::scenarios::Scenario, dir: PathBuf) -> Result<Vec<Sent>> {
    let mut peer = Peer {
        dir,
        limits: scenario.limits,
        kernel: running_kernel()?,
        sent: Vec::new(),
        family: None,
        readers_named: false,
    };
    if !scenario.prepares {
        peer.ready()?;
    }
    (scenario.traffic)(&mut peer)?;
    if peer.family.is_none() {
        bail!("scenario {} never signalled ready", scenario.name);
    }
    Ok(peer.sent)
}

/// Wraps a raw fd returned by libc in an owned one.
pub fn owned(fd: i32) -> Result<OwnedFd> {
    if fd < 0 {
        return Err(std::io::Error::last_os_error().into());
    }
    // SAFETY: fd was just returned by the kernel and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_versions_and_families_are_read() {
        assert_eq!(kernel_version("6.12.38+deb12-amd64"), Some((6, 12)));
        assert_eq!(kernel_version("5.10.0-35-amd64"), Some((5, 10)));
        assert_eq!(kernel_version("6.18.44-fc-v657"), Some((6, 18)));
        assert_eq!(kernel_version("6"), None);
        assert_eq!("socket".parse::<Family>().unwrap(), Family::Socket);
        assert!("auto".parse::<Family>().is_err());
    }
}
