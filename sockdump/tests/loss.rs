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

/// `N packets captured, M lost` from sockdump's stderr, and the hook it used.
fn totals(lines: &[String]) -> (u64, u64, String) {
    let line = lines.iter().find(|l| l.contains(" packets captured, ")).expect("totals line");
    let (captured, rest) = line.split_once(" packets captured, ").unwrap();
    let lost = rest.trim_end_matches(" lost").parse().unwrap();
    let hook = lines[0].split(", hook ").nth(1).unwrap().split(' ').next().unwrap().to_string();
    (captured.parse().unwrap(), lost, hook)
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
    ]);
    const MESSAGES: u64 = 3000;
    let sent = in_thread("sdlossburst", || {
        let (mut a, mut b) = UnixStream::pair().unwrap();
        let reader = std::thread::spawn(move || {
            let mut sink = vec![0u8; 1 << 16];
            while b.read(&mut sink).unwrap() > 0 {}
        });
        let message = vec![b'x'; 16 * 1024];
        for _ in 0..MESSAGES {
            a.write_all(&message).unwrap();
        }
        drop(a);
        reader.join().unwrap();
        MESSAGES
    });
    let (_, lines) = capture.stop();
    let (captured, lost, _) = totals(&lines);
    assert_eq!(captured + lost, sent, "{lines:?}");
    assert!(lost > 0, "a burst of {sent} into a 128 KiB ring lost nothing: {lines:?}");
}

#[test]
fn sendmmsg_beyond_what_a_hook_walks_is_counted() {
    if skip_unless_root("sendmmsg_beyond_what_a_hook_walks_is_counted") {
        return;
    }
    let capture = Sockdump::start(&["--comm", "sdlossmmsg", "-o", "/dev/null"]);
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
    let (captured, lost, hook) = totals(&lines);
    assert_eq!(captured + lost, sent, "{lines:?}");
    // the tracepoint hook walks 8 messages of a sendmmsg(); the others see each send
    let expected_lost = if hook == "tracepoint" { 4 } else { 0 };
    assert_eq!(lost, expected_lost, "with hook {hook}: {lines:?}");
}
