//! Scenarios whose messages are read by another process than SO_PEERCRED
//! names: servers that fork, sockets passed to another process, datagrams.
//! Each message says who reads it (`Peer::read_by`); where sockdump names
//! readers, it must name exactly that process.

use std::io::{IoSlice, IoSliceMut, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::{UnixDatagram, UnixListener, UnixStream};
use std::path::Path;

use anyhow::{Context, Result};
use nix::sys::socket::{recv, recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags};

use crate::peer::{inode_name, owned, peer_pid, Peer, ReadBy};
use crate::scenarios::read_exact_from;

/// A reply that names the process that read the request: `served by NNNNNNNNNN`.
fn served_by() -> String {
    format!("served by {:010}", std::process::id())
}

const SERVED_BY_LEN: usize = "served by 0000000000".len();

fn server_pid(reply: &[u8]) -> Result<u32> {
    let text = std::str::from_utf8(reply)?;
    text.strip_prefix("served by ")
        .and_then(|pid| pid.parse().ok())
        .with_context(|| format!("not a `served by` reply: {text:?}"))
}

/// Connects to `path`, sends `request` (the connection's first message),
/// and learns from the reply which process read it.
fn request(c: &mut Peer, path: &Path, request: &[u8]) -> Result<()> {
    let mut sock = UnixStream::connect(path)?;
    let sent = sock.write(request)?;
    c.expect(request, sent, &path.display().to_string(), peer_pid(&sock))?;
    let reader = server_pid(&read_exact_from(&sock, SERVED_BY_LEN)?)?;
    c.read_by(ReadBy::Pid(reader))
}

/// Reads a request of `len` bytes on `conn` and answers who read it; the
/// client, SO_PEERCRED's pid of `conn`, reads the answer.
fn answer(w: &mut Peer, mut conn: UnixStream, len: usize, name: &str) -> Result<()> {
    read_exact_from(&conn, len)?;
    let reply = served_by();
    let sent = conn.write(reply.as_bytes())?;
    let client = peer_pid(&conn);
    w.expect(reply.as_bytes(), sent, name, client)?;
    w.read_by(client.map_or(ReadBy::Nobody, ReadBy::Pid))
}

const PREFORK_REQUEST: &[u8] = b"reader-prefork: GET / HTTP/1.0";

/// nginx's shape: workers forked after listen() accept and read; SO_PEERCRED
/// of each connection names the process that called listen().
pub fn prefork(p: &mut Peer) -> Result<()> {
    let path = p.dir.join("prefork.sock");
    let listener = UnixListener::bind(&path)?;
    let name = path.display().to_string();
    let workers = (0..2)
        .map(|_| {
            p.fork_child(|w| {
                let (conn, _) = listener.accept()?;
                answer(w, conn, PREFORK_REQUEST.len(), &name)
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let client = p.fork_child(|c| (0..2).try_for_each(|_| request(c, &path, PREFORK_REQUEST)))?;
    for worker in workers {
        p.join(worker)?;
    }
    p.join(client)?;
    Ok(())
}

const STARTUP: &[u8] = b"reader-backend: startup packet user=test";

/// PostgreSQL's shape: the parent accepts and forks a backend that reads;
/// the backend peeks before it reads, which consumes nothing.
pub fn backend(p: &mut Peer) -> Result<()> {
    let path = p.dir.join("backend.sock");
    let listener = UnixListener::bind(&path)?;
    let name = path.display().to_string();
    let client = p.fork_child(|c| request(c, &path, STARTUP))?;
    let (conn, _) = listener.accept()?;
    let backend = p.fork_child(|b| {
        let mut peeked = [0u8; 8];
        recv(conn.as_raw_fd(), &mut peeked, MsgFlags::MSG_PEEK)?;
        answer(b, conn.try_clone()?, STARTUP.len(), &name)
    })?;
    drop(conn);
    p.join(backend)?;
    p.join(client)?;
    Ok(())
}

fn send_fd(over: &UnixStream, fd: &impl AsFd) -> Result<()> {
    let fds = [fd.as_fd().as_raw_fd()];
    sendmsg::<()>(
        over.as_raw_fd(),
        &[IoSlice::new(b"F")],
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::empty(),
        None,
    )?;
    Ok(())
}

fn receive_fd(over: &UnixStream) -> Result<OwnedFd> {
    let mut byte = [0u8; 1];
    let mut iov = [IoSliceMut::new(&mut byte)];
    let mut space = nix::cmsg_space!([std::os::fd::RawFd; 1]);
    let msg = recvmsg::<()>(over.as_raw_fd(), &mut iov, Some(&mut space), MsgFlags::empty())?;
    for cmsg in msg.cmsgs()? {
        if let ControlMessageOwned::ScmRights(fds) = cmsg {
            if let Some(&fd) = fds.first() {
                return owned(fd);
            }
        }
    }
    anyhow::bail!("no file descriptor came with the message")
}

const PASSED: &[u8] = b"reader-passed: read where the socket went";

/// A socket passed over SCM_RIGHTS is read by the process it went to
/// (forked before the socket existed: it has it only from the message).
pub fn passed_socket(p: &mut Peer) -> Result<()> {
    let (control, control_end) = UnixStream::pair()?;
    let reader = p.fork_child(|_| {
        let sock = receive_fd(&control_end)?;
        read_exact_from(&sock, PASSED.len())?;
        Ok(())
    })?;
    let (mut mine, theirs) = UnixStream::pair()?;
    send_fd(&control, &theirs)?;
    drop(theirs);
    let sent = mine.write(PASSED)?;
    p.expect(PASSED, sent, &inode_name(&mine)?, peer_pid(&mine))?;
    p.read_by(ReadBy::Pid(reader.pid.as_raw() as u32))?;
    p.join(reader)?;
    Ok(())
}

/// Datagrams to a bound socket, connected and not, read by a forked child.
pub fn dgram_child(p: &mut Peer) -> Result<()> {
    let path = p.dir.join("readers-dgram.sock");
    let server = UnixDatagram::bind(&path)?;
    let name = path.display().to_string();
    let reader = p.fork_child(|_| {
        let mut buf = [0u8; 64];
        for _ in 0..2 {
            server.recv(&mut buf)?;
        }
        Ok(())
    })?;
    let reader_pid = reader.pid.as_raw() as u32;
    let connected = UnixDatagram::unbound()?;
    connected.connect(&path)?;
    let msg = b"reader-dgram: connected";
    let sent = connected.send(msg)?;
    p.expect(msg, sent, &name, peer_pid(&connected))?;
    p.read_by(ReadBy::Pid(reader_pid))?;
    let msg = b"reader-dgram: sent to the path";
    let sent = UnixDatagram::unbound()?.send_to(msg, &path)?;
    p.expect(msg, sent, &name, None)?;
    p.read_by(ReadBy::Pid(reader_pid))?;
    p.join(reader)?;
    Ok(())
}

const SPLIT: &[u8] = b"reader-split: twenty+ bytes read in two halves";

/// One message read in two parts by two processes: the first part's reader
/// is named, and one more. Both are forked before it is sent; the second
/// reads once the first says it has.
pub fn split_read(p: &mut Peer) -> Result<()> {
    let (mut mine, theirs) = UnixStream::pair()?;
    let (turn, turn_end) = UnixStream::pair()?;
    let half = SPLIT.len() / 2;
    let first = p.fork_child(|_| {
        read_exact_from(&theirs, half)?;
        (&turn).write_all(b"go")?;
        Ok(())
    })?;
    let second = p.fork_child(|_| {
        read_exact_from(&turn_end, 2)?;
        read_exact_from(&theirs, SPLIT.len() - half).map(drop)
    })?;
    let sent = mine.write(SPLIT)?;
    p.expect(SPLIT, sent, &inode_name(&mine)?, peer_pid(&mine))?;
    p.read_by(ReadBy::Split { first: first.pid.as_raw() as u32, others: 1 })?;
    p.join(first)?;
    p.join(second)?;
    Ok(())
}

const TO_TARGET: &[u8] = b"filter-pid: read by the target";

/// For --pid of the peer, as a process that only reads: a child makes a
/// socketpair (so SO_PEERCRED names the child) and passes one end to the
/// target (the peer), which reads what the child then sends on the other.
/// The child's message to a socket the target does not read must not appear.
pub fn read_by_the_target(p: &mut Peer) -> Result<()> {
    let (control, control_end) = UnixStream::pair()?;
    let target = std::process::id();
    let child = p.fork_child(|c| {
        let (mut mine, theirs) = UnixStream::pair()?;
        send_fd(&control_end, &theirs)?;
        // the target made the control pair: SO_PEERCRED names it too
        c.expect(b"F", 1, &inode_name(&control_end)?, peer_pid(&control_end))?;
        c.read_by(ReadBy::Pid(target))?;
        drop(theirs);
        let sent = mine.write(TO_TARGET)?;
        // only a capture that names readers can tell it went to the target
        if c.readers_named() {
            c.expect(TO_TARGET, sent, &inode_name(&mine)?, peer_pid(&mine))?;
            c.read_by(ReadBy::Pid(target))?;
        } else {
            c.forbid(TO_TARGET)?;
        }
        // read by the child itself
        let (mut x, y) = UnixStream::pair()?;
        let msg = b"MUST-NOT-APPEAR: read by the sender";
        x.write_all(msg)?;
        read_exact_from(&y, msg.len())?;
        c.forbid(msg)
    })?;
    let sock = receive_fd(&control)?;
    read_exact_from(&sock, TO_TARGET.len())?;
    p.join(child)?;
    Ok(())
}
