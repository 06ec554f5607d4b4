//! The capture scenarios: what each peer sends, and the sockdump options it
//! is captured with. The same table runs on the host and in every VM kernel.

use std::io::{IoSlice, Write};
use std::os::fd::{AsFd, AsRawFd};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram, UnixListener, UnixStream};
use std::path::Path;

use anyhow::{bail, ensure, Context, Result};
use nix::sys::socket::{
    accept, bind, connect, listen, recv, send, sendmsg, setsockopt, socket, sockopt, AddressFamily, Backlog,
    MsgFlags, SockFlag, SockType, UnixAddr,
};

use crate::peer::{inode_name, owned, peer_pid, Family, Limits, Peer, Shown, DEFAULT_LIMITS, LOST_MMSG};
use crate::readers;

/// Where a scenario's sockdump options can point.
pub struct Setup<'a> {
    /// The peer process.
    pub pid: u32,
    /// A fresh directory for the scenario's socket files.
    pub dir: &'a Path,
}

pub struct Scenario {
    pub name: &'static str,
    /// sockdump options (besides --hook and --format); scenarios with equal
    /// options share one sockdump run.
    pub options: fn(&Setup) -> Vec<String>,
    pub limits: Limits,
    /// Every record sockdump prints must be one of this scenario's (filter
    /// scenarios); otherwise records of other processes are ignored.
    pub exclusive: bool,
    /// sockdump stops by itself (`-c`): don't signal it.
    pub stops_itself: bool,
    /// The traffic function calls `Peer::ready` itself, after creating
    /// sockets sockdump must find when it starts.
    pub prepares: bool,
    pub traffic: fn(&mut Peer) -> Result<()>,
}

fn no_options(_: &Setup) -> Vec<String> {
    Vec::new()
}

const fn basic(name: &'static str, traffic: fn(&mut Peer) -> Result<()>) -> Scenario {
    Scenario {
        name,
        options: no_options,
        limits: DEFAULT_LIMITS,
        exclusive: false,
        stops_itself: false,
        prepares: false,
        traffic,
    }
}

const fn filtered(
    name: &'static str,
    options: fn(&Setup) -> Vec<String>,
    traffic: fn(&mut Peer) -> Result<()>,
) -> Scenario {
    Scenario {
        name,
        options,
        limits: DEFAULT_LIMITS,
        exclusive: true,
        stops_itself: false,
        prepares: false,
        traffic,
    }
}

pub const SCENARIOS: &[Scenario] = &[
    basic("stream-named", stream_named),
    basic("seqpacket", seqpacket),
    basic("stream-abstract", stream_abstract),
    basic("dgram-connected", dgram_connected),
    basic("dgram-sendto", dgram_sendto),
    basic("socketpair", socketpair),
    basic("writev-segments", writev_segments),
    basic("large-default", large_default),
    basic("failed-sends", failed_sends),
    basic("partial-send", partial_send),
    basic("threads", threads),
    basic("blocked-senders", blocked_senders),
    basic("many-threads", many_threads),
    basic("forked-child", forked_child),
    basic("reader-prefork", readers::prefork),
    basic("reader-backend", readers::backend),
    basic("reader-passed", readers::passed_socket),
    basic("reader-dgram", readers::dgram_child),
    basic("reader-split", readers::split_read),
    basic("sendmmsg", |p| send_mmsg(p, 3)),
    basic("io-uring-send", io_uring_send),
    basic("sendfile", send_file),
    basic("splice", splice),
    Scenario {
        name: "seg-size",
        // the ring also holds what the other sessions send meanwhile
        // (many-threads), which its default room of 100 such messages does not
        options: |_| {
            ["--seg-size", "1000", "--segs-per-msg", "3", "--segs-in-buffer", "4096"]
                .map(String::from)
                .to_vec()
        },
        limits: Limits { seg_size: 1000, segs_per_msg: 3 },
        exclusive: false,
        stops_itself: false,
        prepares: false,
        traffic: seg_size,
    },
    Scenario {
        name: "segs-max",
        options: |_| vec!["--segs-per-msg".into(), "64".into()],
        limits: Limits { seg_size: 51200, segs_per_msg: 64 },
        exclusive: false,
        stops_itself: false,
        prepares: false,
        traffic: segs_max,
    },
    filtered("filter-pid", |s| vec!["--pid".into(), s.pid.to_string()], filter_pid),
    filtered("filter-sock", |s| vec!["--sock".into(), format!("{}/own", s.dir.display())], filter_sock),
    filtered(
        "filter-sock-abstract",
        |s| vec!["--sock".into(), format!("@sdtest-{}-", s.pid)],
        filter_sock_abstract,
    ),
    Scenario {
        name: "filter-sock-file",
        options: |s| vec!["--sock".into(), format!("{}/rel.sock", s.dir.display())],
        limits: DEFAULT_LIMITS,
        exclusive: true,
        stops_itself: false,
        prepares: true,
        traffic: filter_sock_file,
    },
    filtered("filter-comm", |s| vec!["--comm".into(), format!("sdc{}", s.pid)], filter_comm),
    Scenario {
        name: "count",
        options: |s| vec!["--pid".into(), s.pid.to_string(), "-c".into(), "3".into()],
        limits: DEFAULT_LIMITS,
        exclusive: true,
        stops_itself: true,
        prepares: false,
        traffic: count,
    },
    // Last, in a session of its own: the tracepoint family counts the
    // messages it does not walk as lost in every sockdump still capturing.
    filtered("sendmmsg-20", |s| vec!["--pid".into(), s.pid.to_string()], |p| send_mmsg(p, 20)),
];

pub fn find(name: &str) -> Result<&'static Scenario> {
    SCENARIOS.iter().find(|s| s.name == name).with_context(|| format!("no scenario {name}"))
}

fn shown(path: &Path) -> String {
    path.display().to_string()
}

pub fn read_exact_from(fd: &impl AsFd, len: usize) -> Result<Vec<u8>> {
    let mut buf = vec![0; len];
    let mut got = 0;
    while got < len {
        let n = nix::unistd::read(fd.as_fd().as_raw_fd(), &mut buf[got..])?;
        ensure!(n > 0, "peer closed after {got} of {len} bytes");
        got += n;
    }
    Ok(buf)
}

/// Sends `msg` with one write() and records what the kernel took.
fn write_and_expect(p: &mut Peer, sock: &mut UnixStream, msg: &[u8], path: &str) -> Result<()> {
    let sent = sock.write(msg)?;
    let peer = peer_pid(sock);
    p.expect(msg, sent, path, peer)
}

/// A request from a forked client, a reply from the server: named path, both directions.
fn stream_named(p: &mut Peer) -> Result<()> {
    let path = p.dir.join("stream.sock");
    let listener = UnixListener::bind(&path)?;
    let request = b"stream-named: GET /status from the client";
    stream_exchange(
        p,
        &listener,
        || UnixStream::connect(&path),
        &shown(&path),
        request,
        b"stream-named: 200 OK replied",
    )
}

/// A forked client connects with `connect` and sends `request`; the server
/// answers with `reply`. Both are recorded under `name`.
fn stream_exchange(
    p: &mut Peer,
    listener: &UnixListener,
    connect: impl Fn() -> std::io::Result<UnixStream>,
    name: &str,
    request: &[u8],
    reply: &[u8],
) -> Result<()> {
    let client = p.fork_child(|c| {
        let mut sock = connect()?;
        write_and_expect(c, &mut sock, request, name)?;
        read_exact_from(&sock, reply.len())?;
        Ok(())
    })?;
    let (mut conn, _) = listener.accept()?;
    read_exact_from(&conn, request.len())?;
    write_and_expect(p, &mut conn, reply, name)?;
    p.join(client)?;
    Ok(())
}

fn seqpacket(p: &mut Peer) -> Result<()> {
    let path = p.dir.join("seq.sock");
    let name = shown(&path);
    let addr = UnixAddr::new(&path)?;
    let server = socket(AddressFamily::Unix, SockType::SeqPacket, SockFlag::empty(), None)?;
    bind(server.as_raw_fd(), &addr)?;
    listen(&server, Backlog::new(4)?)?;
    let client = p.fork_child(|c| {
        let sock = socket(AddressFamily::Unix, SockType::SeqPacket, SockFlag::empty(), None)?;
        connect(sock.as_raw_fd(), &addr)?;
        for msg in [&b"seqpacket: first record"[..], b"seqpacket: second record"] {
            let sent = send(sock.as_raw_fd(), msg, MsgFlags::empty())?;
            c.expect(msg, sent, &name, peer_pid(&sock))?;
        }
        let mut buf = [0u8; 64];
        recv(sock.as_raw_fd(), &mut buf, MsgFlags::empty())?;
        Ok(())
    })?;
    let conn = owned(accept(server.as_raw_fd())?)?;
    let mut buf = [0u8; 64];
    for _ in 0..2 {
        recv(conn.as_raw_fd(), &mut buf, MsgFlags::empty())?;
    }
    let reply = b"seqpacket: server record";
    let sent = send(conn.as_raw_fd(), reply, MsgFlags::empty())?;
    p.expect(reply, sent, &name, peer_pid(&conn))?;
    p.join(client)?;
    Ok(())
}

fn stream_abstract(p: &mut Peer) -> Result<()> {
    let name = format!("sdtest-{}-abstract", std::process::id());
    let addr = SocketAddr::from_abstract_name(name.as_bytes())?;
    let listener = UnixListener::bind_addr(&addr)?;
    let connect = || UnixStream::connect_addr(&addr);
    stream_exchange(p, &listener, connect, &format!("@{name}"), b"abstract: hello", b"abstract: reply")
}

/// A connected, unbound datagram client: shown under the server's path.
fn dgram_connected(p: &mut Peer) -> Result<()> {
    let path = p.dir.join("dgram.sock");
    let server = UnixDatagram::bind(&path)?;
    let name = shown(&path);
    let client = p.fork_child(|c| {
        let sock = UnixDatagram::unbound()?;
        sock.connect(&path)?;
        // an empty datagram is a message too
        for msg in [&b"dgram-connected: one"[..], b"dgram-connected: two", b""] {
            let sent = sock.send(msg)?;
            c.expect(msg, sent, &name, peer_pid(&sock))?;
        }
        Ok(())
    })?;
    let mut buf = [0u8; 64];
    for _ in 0..3 {
        server.recv(&mut buf)?;
    }
    p.join(client)?;
    Ok(())
}

/// Unconnected sends name their destination, which sockdump shows.
fn dgram_sendto(p: &mut Peer) -> Result<()> {
    let path = p.dir.join("dest.sock");
    let server = UnixDatagram::bind(&path)?;
    let name = shown(&path);
    let source = p.dir.join("source.sock");
    let client = p.fork_child(|c| {
        let unbound = UnixDatagram::unbound()?;
        let msg = b"dgram-sendto: from an unbound socket";
        let sent = unbound.send_to(msg, &path)?;
        c.expect(msg, sent, &name, None)?;

        let bound = UnixDatagram::bind(&source)?;
        let msg = b"dgram-sendto: from a bound socket";
        let sent = bound.send_to(msg, &path)?;
        c.expect(msg, sent, &name, None)?;

        // sendmsg() with a msg_name, as syslog clients do
        let msg = b"dgram-sendto: sendmsg with an address";
        let dest = UnixAddr::new(&path)?;
        let sent = sendmsg(unbound.as_raw_fd(), &[IoSlice::new(msg)], &[], MsgFlags::empty(), Some(&dest))?;
        c.expect(msg, sent, &name, None)?;
        Ok(())
    })?;
    let mut buf = [0u8; 64];
    for _ in 0..3 {
        server.recv(&mut buf)?;
    }
    p.join(client)?;
    Ok(())
}

/// Unnamed sockets are shown by inode; SO_PEERCRED is the creator's pid.
fn socketpair(p: &mut Peer) -> Result<()> {
    let (mut a, mut b) = UnixStream::pair()?;
    let a_name = inode_name(&a)?;
    let b_name = inode_name(&b)?;
    write_and_expect(p, &mut a, b"socketpair: parent to child", &a_name)?;
    let child = p.fork_child(|c| {
        read_exact_from(&b, 27)?;
        write_and_expect(c, &mut b, b"socketpair: child to parent", &b_name)
    })?;
    p.join(child)?;

    let (x, y) = UnixDatagram::pair()?;
    let msg = b"socketpair: a datagram";
    let sent = x.send(msg)?;
    p.expect(msg, sent, &inode_name(&x)?, peer_pid(&x))?;
    let mut buf = [0u8; 64];
    y.recv(&mut buf)?;
    Ok(())
}

fn segments(prefix: &str, count: usize) -> Vec<Vec<u8>> {
    (0..count).map(|i| format!("{prefix}-{i:02}|").into_bytes()).collect()
}

/// writev and sendmsg with more segments than --segs-per-msg, and a zero-length one.
fn writev_segments(p: &mut Peer) -> Result<()> {
    let (mut a, _b) = UnixStream::pair()?;
    let name = inode_name(&a)?;
    let peer = peer_pid(&a);
    for (prefix, count) in [("writev-many", 12), ("writev-few", 3)] {
        let mut segs = segments(prefix, count);
        segs[1].clear();
        let slices: Vec<IoSlice> = segs.iter().map(|s| IoSlice::new(s)).collect();
        let sent = a.write_vectored(&slices)?;
        let refs: Vec<&[u8]> = segs.iter().map(|s| s.as_slice()).collect();
        p.expect_segments(&refs, sent, &name, peer)?;
    }
    let segs = segments("sendmsg-many", 11);
    let slices: Vec<IoSlice> = segs.iter().map(|s| IoSlice::new(s)).collect();
    let sent = sendmsg::<UnixAddr>(a.as_raw_fd(), &slices, &[], MsgFlags::empty(), None)?;
    let refs: Vec<&[u8]> = segs.iter().map(|s| s.as_slice()).collect();
    p.expect_segments(&refs, sent, &name, peer)
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
}

/// A message over the default --seg-size (51200) is cut there and says so.
fn large_default(p: &mut Peer) -> Result<()> {
    let (mut a, b) = UnixStream::pair()?;
    let name = inode_name(&a)?;
    let reader = std::thread::spawn(move || read_exact_from(&b, 60_000));
    let msg = pattern(60_000, 7);
    let sent = a.write(&msg)?;
    ensure!(sent == msg.len(), "short write of {sent} bytes");
    p.expect(&msg, sent, &name, peer_pid(&a))?;
    reader.join().map_err(|_| anyhow::anyhow!("reader panicked"))??;
    Ok(())
}

/// Runs with --seg-size 1000 --segs-per-msg 3.
fn seg_size(p: &mut Peer) -> Result<()> {
    let (mut a, b) = UnixStream::pair()?;
    let name = inode_name(&a)?;
    let reader = std::thread::spawn(move || read_exact_from(&b, 5000 + 1000 + 1001 + 32 + 1600));
    for (len, seed) in [(5000, 1), (1000, 2), (1001, 3)] {
        write_and_expect(p, &mut a, &pattern(len, seed), &name)?;
    }
    // four segments with --segs-per-msg 3; then --seg-size cutting inside a segment
    for segs in [segments("segs", 4), vec![pattern(800, 4), pattern(800, 5)]] {
        let slices: Vec<IoSlice> = segs.iter().map(|s| IoSlice::new(s)).collect();
        let sent = a.write_vectored(&slices)?;
        let refs: Vec<&[u8]> = segs.iter().map(|s| s.as_slice()).collect();
        p.expect_segments(&refs, sent, &name, peer_pid(&a))?;
    }
    reader.join().map_err(|_| anyhow::anyhow!("reader panicked"))??;
    Ok(())
}

/// Runs with --segs-per-msg 64, the largest: more segments are still flagged.
fn segs_max(p: &mut Peer) -> Result<()> {
    let (mut a, _b) = UnixStream::pair()?;
    let name = inode_name(&a)?;
    for count in [64, 70] {
        let segs = segments(&format!("max{count}"), count);
        let slices: Vec<IoSlice> = segs.iter().map(|s| IoSlice::new(s)).collect();
        let sent = a.write_vectored(&slices)?;
        let refs: Vec<&[u8]> = segs.iter().map(|s| s.as_slice()).collect();
        p.expect_segments(&refs, sent, &name, peer_pid(&a))?;
    }
    Ok(())
}

fn set_small_send_buffer(sock: &UnixStream) -> Result<()> {
    setsockopt(sock, sockopt::SndBuf, &4096)?;
    sock.set_nonblocking(true)?;
    Ok(())
}

/// Sends that fail leave no record: EAGAIN, EPIPE, ECONNREFUSED.
fn failed_sends(p: &mut Peer) -> Result<()> {
    let (mut a, _b) = UnixStream::pair()?;
    set_small_send_buffer(&a)?;
    let name = inode_name(&a)?;
    let mut index = 0;
    loop {
        let msg = format!("fill-{index:04}-").repeat(100).into_bytes();
        match a.write(&msg) {
            Ok(sent) => p.expect(&msg, sent, &name, peer_pid(&a))?,
            Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(err) => return Err(err.into()),
        }
        index += 1;
        ensure!(index < 10_000, "the send buffer never filled");
    }
    let refused = b"MUST-NOT-APPEAR: EAGAIN";
    match a.write(refused) {
        Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => p.forbid(refused)?,
        other => bail!("expected EAGAIN, got {other:?}"),
    }

    let (c, d) = UnixStream::pair()?;
    drop(d);
    let refused = b"MUST-NOT-APPEAR: EPIPE";
    match send(c.as_raw_fd(), refused, MsgFlags::MSG_NOSIGNAL) {
        Err(nix::errno::Errno::EPIPE) => p.forbid(refused)?,
        other => bail!("expected EPIPE, got {other:?}"),
    }

    let sock = UnixDatagram::unbound()?;
    let refused = b"MUST-NOT-APPEAR: no such socket";
    match sock.send_to(refused, p.dir.join("missing.sock")) {
        Err(_) => p.forbid(refused),
        Ok(n) => bail!("send to a missing socket sent {n} bytes"),
    }
}

/// A non-blocking send that only partly fits: the record holds what was sent.
fn partial_send(p: &mut Peer) -> Result<()> {
    let (mut a, _b) = UnixStream::pair()?;
    set_small_send_buffer(&a)?;
    let msg = pattern(100_000, 11);
    let sent = a.write(&msg)?;
    ensure!(sent > 0 && sent < msg.len(), "wanted a partial send, sent {sent} of {}", msg.len());
    p.expect(&msg, sent, &inode_name(&a)?, peer_pid(&a))
}

/// Four threads write to one socket at once.
fn threads(p: &mut Peer) -> Result<()> {
    const THREADS: usize = 4;
    const MESSAGES: usize = 50;
    let (a, b) = UnixStream::pair()?;
    let name = inode_name(&a)?;
    let total = THREADS * MESSAGES * "thread-0-message-000|".len();
    let reader = std::thread::spawn(move || read_exact_from(&b, total));
    let writers: Vec<_> = (0..THREADS)
        .map(|t| {
            let sock = a.try_clone()?;
            Ok(spawn_writer(sock, (0..MESSAGES).map(move |m| format!("thread-{t}-message-{m:03}|"))))
        })
        .collect::<Result<_>>()?;
    for writer in writers {
        for (msg, sent) in writer.join().map_err(|_| anyhow::anyhow!("writer panicked"))?? {
            p.expect(&msg, sent, &name, peer_pid(&a))?;
        }
    }
    reader.join().map_err(|_| anyhow::anyhow!("reader panicked"))??;
    Ok(())
}

type Written = Result<Vec<(Vec<u8>, usize)>>;

/// A thread writing each of `messages` to `sock`; it returns what it sent.
fn spawn_writer(
    mut sock: UnixStream,
    messages: impl Iterator<Item = String> + Send + 'static,
) -> std::thread::JoinHandle<Written> {
    std::thread::spawn(move || {
        messages
            .map(|msg| {
                let sent = sock.write(msg.as_bytes())?;
                Ok((msg.into_bytes(), sent))
            })
            .collect()
    })
}

/// Eight threads, each sending many messages on a socket of its own: on a
/// kernel that preempts the programs, they are preempted mid-send.
fn many_threads(p: &mut Peer) -> Result<()> {
    const THREADS: usize = 8;
    const MESSAGES: usize = 250;
    let writers: Vec<_> = (0..THREADS)
        .map(|t| {
            let (a, b) = UnixStream::pair()?;
            let name = inode_name(&a)?;
            let peer = peer_pid(&a);
            let reader =
                std::thread::spawn(move || read_exact_from(&b, MESSAGES * "many-0-message-000|".len()));
            let writer = spawn_writer(a, (0..MESSAGES).map(move |m| format!("many-{t}-message-{m:03}|")));
            Ok((writer, reader, name, peer))
        })
        .collect::<Result<_>>()?;
    for (writer, reader, name, peer) in writers {
        for (msg, sent) in writer.join().map_err(|_| anyhow::anyhow!("writer panicked"))?? {
            p.expect(&msg, sent, &name, peer)?;
        }
        reader.join().map_err(|_| anyhow::anyhow!("reader panicked"))??;
    }
    Ok(())
}

/// Sixteen threads blocked in a send at the same time: more than the
/// returns a kretprobe tracks by default (one per CPU on 5.10).
fn blocked_senders(p: &mut Peer) -> Result<()> {
    const THREADS: u8 = 16;
    const LEN: usize = 60_000;
    let pairs: Vec<(UnixStream, UnixStream)> =
        (0..THREADS).map(|_| Ok(UnixStream::pair()?)).collect::<Result<_>>()?;
    let writers: Vec<_> = pairs
        .iter()
        .zip(0..THREADS)
        .map(|((a, _), seed)| {
            setsockopt(a, sockopt::SndBuf, &4096)?;
            let mut sock = a.try_clone()?;
            Ok(std::thread::spawn(move || -> Result<(Vec<u8>, usize)> {
                let msg = pattern(LEN, seed);
                // blocks until the receiver below reads
                let sent = sock.write(&msg)?;
                Ok((msg, sent))
            }))
        })
        .collect::<Result<_>>()?;
    // Bytes waiting at a receiver mean its sender is inside the send, and
    // blocked: the message is much larger than the socket buffer.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !pairs.iter().all(|(_, b)| unread_bytes(b) > 0) {
        ensure!(std::time::Instant::now() < deadline, "senders did not start within 30 s");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    for (_, b) in &pairs {
        read_exact_from(b, LEN)?;
    }
    for (writer, (a, _)) in writers.into_iter().zip(&pairs) {
        let (msg, sent) = writer.join().map_err(|_| anyhow::anyhow!("writer panicked"))??;
        ensure!(sent == LEN, "short write of {sent} bytes");
        p.expect(&msg, sent, &inode_name(a)?, peer_pid(a))?;
    }
    Ok(())
}

fn unread_bytes(sock: &UnixStream) -> libc::c_int {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int
    let rc = unsafe { libc::ioctl(sock.as_raw_fd(), libc::FIONREAD, &mut n) };
    if rc < 0 {
        0
    } else {
        n
    }
}

fn forked_child(p: &mut Peer) -> Result<()> {
    let (mut a, b) = UnixStream::pair()?;
    let name = inode_name(&a)?;
    let child = p.fork_child(|c| write_and_expect(c, &mut a, b"forked-child: sent by the child", &name))?;
    p.join(child)?;
    read_exact_from(&b, 31)?;
    Ok(())
}

/// sendmmsg() messages the tracepoint family walks per call; it counts the
/// others as lost (README, Hooks).
const TRACEPOINT_MMSG_WALKED: usize = 8;

/// One sendmmsg() of `count` datagrams.
fn send_mmsg(p: &mut Peer, count: usize) -> Result<()> {
    let (a, b) = UnixDatagram::pair()?;
    let msgs: Vec<Vec<u8>> =
        (0..count).map(|i| format!("sendmmsg-{count}: message {i:02}").into_bytes()).collect();
    let mut iovs: Vec<libc::iovec> = msgs
        .iter()
        .map(|m| libc::iovec { iov_base: m.as_ptr() as *mut libc::c_void, iov_len: m.len() })
        .collect();
    let mut headers: Vec<libc::mmsghdr> = iovs
        .iter_mut()
        .map(|iov| {
            // SAFETY: an all-zero mmsghdr is valid; the fields set point into live buffers.
            let mut h: libc::mmsghdr = unsafe { std::mem::zeroed() };
            h.msg_hdr.msg_iov = iov;
            h.msg_hdr.msg_iovlen = 1;
            h
        })
        .collect();
    // SAFETY: headers, iovecs and buffers outlive the call.
    let sent = unsafe { libc::sendmmsg(a.as_raw_fd(), headers.as_mut_ptr(), headers.len() as u32, 0) };
    ensure!(sent == count as i32, "sendmmsg sent {sent} messages: {}", std::io::Error::last_os_error());
    let name = inode_name(&a)?;
    for (index, (msg, header)) in msgs.iter().zip(&headers).enumerate() {
        let shown = if p.family() == Family::Tracepoint && index >= TRACEPOINT_MMSG_WALKED {
            Shown::Lost(LOST_MMSG.into())
        } else {
            Shown::Bytes
        };
        p.expect_shown(shown, msg, header.msg_len as usize, &name, peer_pid(&a))?;
    }
    let mut buf = [0u8; 64];
    for _ in 0..count {
        b.recv(&mut buf)?;
    }
    Ok(())
}

/// A ring for the io-uring scenario, or why io_uring cannot be used here.
fn io_uring() -> Result<io_uring::IoUring> {
    io_uring::IoUring::new(4).with_context(|| {
        let disabled = std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled")
            .map_or("absent".into(), |s| s.trim().to_string());
        format!("io_uring is not usable on this kernel (kernel.io_uring_disabled: {disabled})")
    })
}

/// Submits one entry and waits for it: the number of bytes sent.
fn io_uring_submit(ring: &mut io_uring::IoUring, entry: io_uring::squeue::Entry) -> Result<usize> {
    // SAFETY: the buffers the entry points to outlive the wait for its completion below.
    unsafe { ring.submission().push(&entry) }.context("the submission queue is full")?;
    ring.submit_and_wait(1)?;
    let cqe = ring.completion().next().context("no completion")?;
    let sent = cqe.result();
    ensure!(sent >= 0, "io_uring send failed: {}", std::io::Error::from_raw_os_error(-sent));
    Ok(sent as usize)
}

/// io_uring SEND and SENDMSG on a stream socket: no syscall of the send
/// kind, the bytes named by the submission. fentry and kprobe hook the
/// protocol's sendmsg and read them; the socket family sees the send but not
/// where its bytes were; the syscall tracepoints never see it.
fn io_uring_send(p: &mut Peer) -> Result<()> {
    use io_uring::{opcode, types::Fd};

    let (a, b) = UnixStream::pair()?;
    let name = inode_name(&a)?;
    let shown = match p.family() {
        Family::Fentry | Family::Kprobe => Shown::Bytes,
        Family::Socket => Shown::Length,
        Family::Tracepoint => Shown::Nothing,
    };
    let mut ring = io_uring()?;
    let send = b"io-uring-send: IORING_OP_SEND";
    let entry = opcode::Send::new(Fd(a.as_raw_fd()), send.as_ptr(), send.len() as u32).build();
    let sent = io_uring_submit(&mut ring, entry)?;
    p.expect_shown(shown.clone(), send, sent, &name, peer_pid(&a))?;

    let sendmsg = b"io-uring-send: IORING_OP_SENDMSG, a longer one";
    let mut iov = libc::iovec { iov_base: sendmsg.as_ptr() as *mut libc::c_void, iov_len: sendmsg.len() };
    // SAFETY: an all-zero msghdr is valid; the iovec set points into a live buffer.
    let mut header: libc::msghdr = unsafe { std::mem::zeroed() };
    header.msg_iov = &mut iov;
    header.msg_iovlen = 1;
    let sent = io_uring_submit(&mut ring, opcode::SendMsg::new(Fd(a.as_raw_fd()), &header).build())?;
    p.expect_shown(shown, sendmsg, sent, &name, peer_pid(&a))?;
    read_exact_from(&b, send.len() + sendmsg.len())?;
    Ok(())
}

/// What sockdump shows of a send from pages (sendfile, splice): the socket
/// family a flagged length; fentry and kprobe the same from 6.5, where it
/// goes through unix_stream_sendmsg with a page iterator, and nothing
/// before, where it goes through unix_stream_sendpage, which they do not
/// hook; the syscall tracepoints never see it.
fn shown_from_pages(p: &Peer) -> Shown {
    match p.family() {
        Family::Socket => Shown::Length,
        Family::Fentry | Family::Kprobe if p.kernel >= (6, 5) => Shown::Length,
        Family::Fentry | Family::Kprobe | Family::Tracepoint => Shown::Nothing,
    }
}

/// Sends `msg` into a fresh stream socketpair with `send` (a syscall that
/// moves pages: sendfile, splice), which returns what the kernel accepted.
fn send_pages(p: &mut Peer, what: &str, msg: &[u8], send: impl FnOnce(&UnixStream) -> isize) -> Result<()> {
    let (a, b) = UnixStream::pair()?;
    let sent = send(&a);
    ensure!(
        sent == msg.len() as isize,
        "{what} sent {sent} of {} bytes: {}",
        msg.len(),
        std::io::Error::last_os_error()
    );
    p.expect_shown(shown_from_pages(p), msg, msg.len(), &inode_name(&a)?, peer_pid(&a))?;
    read_exact_from(&b, msg.len())?;
    Ok(())
}

/// sendfile() from a regular file into a stream socket.
fn send_file(p: &mut Peer) -> Result<()> {
    let mut file = tempfile::tempfile_in(&p.dir)?;
    let msg = pattern(3000, 13);
    file.write_all(&msg)?;
    let mut offset: libc::off_t = 0;
    // SAFETY: both descriptors are open; offset is a live off_t.
    send_pages(p, "sendfile", &msg, |a| unsafe {
        libc::sendfile(a.as_raw_fd(), file.as_raw_fd(), &mut offset, msg.len())
    })
}

/// splice() from a pipe into a stream socket.
fn splice(p: &mut Peer) -> Result<()> {
    let (pipe_out, pipe_in) = nix::unistd::pipe()?;
    let msg = pattern(1500, 17);
    nix::unistd::write(&pipe_in, &msg)?;
    // SAFETY: both descriptors are open; no offsets.
    send_pages(p, "splice", &msg, |a| unsafe {
        libc::splice(
            pipe_out.as_raw_fd(),
            std::ptr::null_mut(),
            a.as_raw_fd(),
            std::ptr::null_mut(),
            msg.len(),
            0,
        )
    })
}

/// --pid: what the peer sends, what is sent to it, and what it reads; nothing else.
fn filter_pid(p: &mut Peer) -> Result<()> {
    let (mut a, _b) = UnixStream::pair()?;
    let name = inode_name(&a)?;
    write_and_expect(p, &mut a, b"filter-pid: sent by the target", &name)?;

    let decoy = p.fork_child(|c| {
        let (mut x, _y) = UnixStream::pair()?;
        let msg = b"MUST-NOT-APPEAR: decoy process";
        x.write_all(msg)?;
        c.forbid(msg)
    })?;
    p.join(decoy)?;

    let path = p.dir.join("target.sock");
    let listener = UnixListener::bind(&path)?;
    let name = shown(&path);
    let client = p.fork_child(|c| {
        let mut sock = UnixStream::connect(&path)?;
        // SO_PEERCRED of this socket is the target: captured as sent to it
        write_and_expect(c, &mut sock, b"filter-pid: sent to the target", &name)
    })?;
    let (conn, _) = listener.accept()?;
    read_exact_from(&conn, 30)?;
    p.join(client)?;
    readers::read_by_the_target(p)
}

/// Exchanges one message each way on a fresh connection to `path`.
fn exchange(
    p: &mut Peer,
    listener: &UnixListener,
    connect: impl FnOnce() -> Result<UnixStream>,
    shown: &str,
    keep: bool,
) -> Result<()> {
    let client_msg = format!("{}exchange: client to {shown}", if keep { "" } else { "MUST-NOT-APPEAR: " });
    let server_msg = format!("{}exchange: server reply", if keep { "" } else { "MUST-NOT-APPEAR: " });
    let mut client = connect()?;
    let (mut server, _) = listener.accept()?;
    for (sock, msg) in [(&mut client, &client_msg), (&mut server, &server_msg)] {
        if keep {
            write_and_expect(p, sock, msg.as_bytes(), shown)?;
        } else {
            sock.write_all(msg.as_bytes())?;
            p.forbid(msg.as_bytes())?;
        }
    }
    read_exact_from(&server, client_msg.len())?;
    read_exact_from(&client, server_msg.len())?;
    Ok(())
}

/// --sock DIR/own: the own side and the peer side of matching sockets, and
/// the destination of an unconnected send; nothing under other names.
fn filter_sock(p: &mut Peer) -> Result<()> {
    let own = p.dir.join("own-stream.sock");
    let listener = UnixListener::bind(&own)?;
    exchange(p, &listener, || Ok(UnixStream::connect(&own)?), &shown(&own), true)?;

    let dest = p.dir.join("own-dgram.sock");
    let server = UnixDatagram::bind(&dest)?;
    let msg = b"filter-sock: sendto a matching destination";
    let sent = UnixDatagram::unbound()?.send_to(msg, &dest)?;
    p.expect(msg, sent, &shown(&dest), None)?;
    server.recv(&mut [0u8; 64])?;
    // connected elsewhere, but this send names a matching destination
    let elsewhere = p.dir.join("decoy-dgram.sock");
    let decoy_server = UnixDatagram::bind(&elsewhere)?;
    let connected = UnixDatagram::unbound()?;
    connected.connect(&elsewhere)?;
    let msg = b"filter-sock: connected elsewhere, sent to a matching path";
    let sent = connected.send_to(msg, &dest)?;
    p.expect(msg, sent, &shown(&dest), None)?;
    server.recv(&mut [0u8; 64])?;
    let msg = b"MUST-NOT-APPEAR: connected to a decoy";
    connected.send(msg)?;
    p.forbid(msg)?;
    decoy_server.recv(&mut [0u8; 64])?;

    let decoy = p.dir.join("decoy.sock");
    let decoy_listener = UnixListener::bind(&decoy)?;
    exchange(p, &decoy_listener, || Ok(UnixStream::connect(&decoy)?), &shown(&decoy), false)?;
    let (mut x, _y) = UnixStream::pair()?;
    let msg = b"MUST-NOT-APPEAR: unnamed";
    x.write_all(msg)?;
    p.forbid(msg)
}

fn filter_sock_abstract(p: &mut Peer) -> Result<()> {
    let name = format!("sdtest-{}-matching", std::process::id());
    let addr = SocketAddr::from_abstract_name(name.as_bytes())?;
    let listener = UnixListener::bind_addr(&addr)?;
    exchange(p, &listener, || Ok(UnixStream::connect_addr(&addr)?), &format!("@{name}"), true)?;

    let other = format!("sdother-{}", std::process::id());
    let other_addr = SocketAddr::from_abstract_name(other.as_bytes())?;
    let other_listener = UnixListener::bind_addr(&other_addr)?;
    exchange(p, &other_listener, || Ok(UnixStream::connect_addr(&other_addr)?), &format!("@{other}"), false)
}

/// --sock names an existing file that the application bound by a relative
/// name: sockdump matches it by inode.
fn filter_sock_file(p: &mut Peer) -> Result<()> {
    std::env::set_current_dir(&p.dir)?;
    let listener = UnixListener::bind("rel.sock")?;
    p.ready()?;
    exchange(p, &listener, || Ok(UnixStream::connect("rel.sock")?), "rel.sock", true)?;
    let (mut x, _y) = UnixStream::pair()?;
    let msg = b"MUST-NOT-APPEAR: unnamed";
    x.write_all(msg)?;
    p.forbid(msg)
}

fn set_thread_name(name: &str) -> Result<()> {
    std::fs::write("/proc/thread-self/comm", name).context("cannot set the thread name")
}

fn filter_comm(p: &mut Peer) -> Result<()> {
    let pid = std::process::id();
    set_thread_name(&format!("sdc{pid}"))?;
    let (mut a, _b) = UnixStream::pair()?;
    let name = inode_name(&a)?;
    write_and_expect(p, &mut a, b"filter-comm: matching thread", &name)?;
    let mut other = a.try_clone()?;
    let decoy = std::thread::spawn(move || -> Result<&'static [u8]> {
        set_thread_name(&format!("sdx{pid}"))?;
        let msg = b"MUST-NOT-APPEAR: other thread name";
        other.write_all(msg)?;
        Ok(msg)
    });
    let msg = decoy.join().map_err(|_| anyhow::anyhow!("decoy thread panicked"))??;
    p.forbid(msg)
}

/// -c 3: sockdump prints the first three messages and stops by itself.
fn count(p: &mut Peer) -> Result<()> {
    let (mut a, _b) = UnixStream::pair()?;
    let name = inode_name(&a)?;
    for i in 0..10 {
        let msg = format!("count: message {i}").into_bytes();
        if i < 3 {
            write_and_expect(p, &mut a, &msg, &name)?;
        } else {
            a.write_all(&msg)?;
            p.forbid(&msg)?;
        }
    }
    Ok(())
}
