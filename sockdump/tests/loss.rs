//! Messages that cannot be delivered are counted, never dropped in silence:
//! captured + lost = sent, through a ring buffer too small for a burst and
//! through the tracepoint hook's limit of 8 messages per sendmmsg().

mod common;

use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::{UnixDatagram, UnixStream};

use common::{skip_unless_root, Sockdump};

/// Runs `send` in a thread named `name` (the --comm filter picks exactly
/// its messages) and returns what it sent.
fn in_thread(name: &str, send: impl FnOnce() -> u64 + Send + 'static) -> u64 {
    std::thread::Builder::new().name(name.into()).spawn(send).unwrap().join().unwrap()
}

/// What a capture run with -v said at its end.
struct Totals {
    captured: u64,
    lost: u64,
    /// Runs of sockdump's programs the kernel skipped (already running on
    /// that CPU, or preempted): counted as lost, though whose sends they
    /// were is unknown; other processes' traffic on a busy machine adds to it.
    skipped: u64,
    hook: String,
}

impl Totals {
    /// `N packets captured, M lost`, `-v`'s breakdown, and the hook used.
    fn of(lines: &[String]) -> Totals {
        let line = lines.iter().find(|l| l.contains(" packets captured, ")).expect("totals line");
        let (captured, rest) = line.split_once(" packets captured, ").unwrap();
        let lost = rest.trim_end_matches(" lost").parse().unwrap();
        let breakdown = lines.iter().find(|l| l.starts_with("lost: ")).expect("-v's lost line");
        let (before, _) = breakdown.split_once(" sends the kernel skipped").expect("skipped sends");
        let skipped = before.rsplit(' ').next().unwrap().parse().unwrap();
        let listening = lines.iter().find(|l| l.starts_with("listening")).expect("listening line");
        let hook = listening.split(", hook ").nth(1).unwrap().split(' ').next().unwrap().to_string();
        Totals { captured: captured.parse().unwrap(), lost, skipped, hook }
    }

    /// captured + lost = sent, but for skipped runs that were not the test's.
    fn balance(&self, sent: u64, lines: &[String]) {
        let Totals { captured, lost, skipped, .. } = *self;
        assert!(captured + lost >= sent && captured + lost - skipped <= sent, "sent {sent}: {lines:?}");
    }
}

#[test]
fn a_full_ring_buffer_counts_what_it_drops() {
    if skip_unless_root("a_full_ring_buffer_counts_what_it_drops") {
        return;
    }
    // room for about seven 16 KiB messages
    let capture = Sockdump::start(&[
        "--comm",
        "sdlossburst",
        "--seg-size",
        "65536",
        "--segs-in-buffer",
        "1",
        "-o",
        "/dev/null",
        "-v",
    ]);
    const MESSAGES: usize = 3000;
    let sent = in_thread("sdlossburst", || {
        let (mut a, mut b) = UnixStream::pair().unwrap();
        let reader = std::thread::spawn(move || {
            let mut sink = vec![0u8; 1 << 16];
            while b.read(&mut sink).unwrap() > 0 {}
        });
        // each write() is a message: under memory pressure the kernel
        // may take part of one, and the rest is another send
        let message = vec![b'x'; 16 * 1024];
        let mut sends = 0;
        for _ in 0..MESSAGES {
            let mut rest = &message[..];
            while !rest.is_empty() {
                rest = &rest[a.write(rest).unwrap()..];
                sends += 1;
            }
        }
        drop(a);
        reader.join().unwrap();
        sends
    });
    let (_, lines) = capture.stop();
    let totals = Totals::of(&lines);
    totals.balance(sent, &lines);
    assert!(totals.lost > totals.skipped, "a burst of {sent} into a 128 KiB ring lost nothing: {lines:?}");
}

#[test]
fn sendmmsg_beyond_what_a_hook_walks_is_counted() {
    if skip_unless_root("sendmmsg_beyond_what_a_hook_walks_is_counted") {
        return;
    }
    let capture = Sockdump::start(&["--comm", "sdlossmmsg", "-o", "/dev/null", "-v"]);
    const MESSAGES: usize = 12;
    let sent = in_thread("sdlossmmsg", || {
        let (a, b) = UnixDatagram::pair().unwrap();
        let mut bufs: Vec<Vec<u8>> = (0..MESSAGES).map(|i| format!("mmsg {i}").into_bytes()).collect();
        let mut iovs: Vec<libc::iovec> = bufs
            .iter_mut()
            .map(|m| libc::iovec { iov_base: m.as_mut_ptr().cast(), iov_len: m.len() })
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
        let n = unsafe { libc::sendmmsg(a.as_raw_fd(), headers.as_mut_ptr(), headers.len() as u32, 0) };
        assert_eq!(n, MESSAGES as i32, "{}", std::io::Error::last_os_error());
        let mut buf = [0u8; 64];
        for _ in 0..MESSAGES {
            b.recv(&mut buf).unwrap();
        }
        MESSAGES as u64
    });
    let (_, lines) = capture.stop();
    let totals = Totals::of(&lines);
    totals.balance(sent, &lines);
    // the tracepoint hook walks 8 messages of a sendmmsg(); the others see each send
    let expected_lost = if totals.hook == "tracepoint" { 4 } else { 0 };
    assert_eq!(totals.lost - totals.skipped, expected_lost, "with hook {}: {lines:?}", totals.hook);
}
