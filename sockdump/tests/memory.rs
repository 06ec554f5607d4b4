//! An endless capture keeps bounded memory: 100000 socketpairs (200000
//! sockets, each pair one conversation) captured to pcapng. Before the
//! tables forgot old sockets, sockdump's peak RSS grew with every socket
//! (114 MiB in the debug build the tests run); now it stays below the 64 MiB, of which
//! the kernel's ring buffers mapped in take 22 MiB.

mod common;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use common::{skip_unless_root, Sockdump};

const PAIRS: usize = 100_000;
/// Pairs open at once, their messages interleaved: live conversations.
const BATCH: usize = 256;
const LIMIT_KIB: u64 = 64 * 1024;

fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[test]
fn memory_stays_bounded_over_100000_socketpairs() {
    if skip_unless_root("memory_stays_bounded_over_100000_socketpairs") {
        return;
    }
    let capture = Sockdump::start(&["--comm", "sdmempairs", "--format", "pcapng", "-o", "/dev/null"]);
    // the peak up to the process's very end, drain included: an exited
    // process, not yet reaped, shows no VmHWM
    let pid = capture.pid();
    let watcher = std::thread::spawn(move || {
        let mut peak = 0;
        while let Some(now) = peak_rss_kib(pid) {
            peak = peak.max(now);
            std::thread::sleep(Duration::from_millis(5));
        }
        peak
    });
    let sent = std::thread::Builder::new()
        .name("sdmempairs".into())
        .spawn(|| {
            let (message, mut buf) = ([b'm'; 64], [0u8; 64]);
            let mut sent = 0u64;
            for _ in 0..PAIRS / BATCH {
                let pairs: Vec<(UnixStream, UnixStream)> =
                    (0..BATCH).map(|_| UnixStream::pair().unwrap()).collect();
                for (mut a, mut b) in pairs.iter().map(|(a, b)| (a, b)) {
                    a.write_all(&message).unwrap();
                    b.read_exact(&mut buf).unwrap();
                }
                for (mut a, mut b) in pairs.iter().map(|(a, b)| (a, b)) {
                    b.write_all(&message).unwrap();
                    a.read_exact(&mut buf).unwrap();
                }
                sent += 2 * BATCH as u64;
                // at about 20000 messages a second: the debug build the
                // tests run keeps up, so its tables see every socket
                std::thread::sleep(Duration::from_millis(25));
            }
            sent
        })
        .unwrap()
        .join()
        .unwrap();
    capture.signal(nix::sys::signal::Signal::SIGTERM);
    let (status, lines) = capture.exit();
    let peak = watcher.join().unwrap();
    assert!(status.success(), "{lines:?}");
    let totals = lines.iter().find_map(|l| l.split_once(" packets captured, ")).expect("totals");
    let (captured, lost): (u64, u64) =
        (totals.0.parse().unwrap(), totals.1.trim_end_matches(" lost").parse().unwrap());
    assert_eq!(captured + lost, sent, "{lines:?}");
    assert!(captured >= sent / 2, "too few captured to say anything: {lines:?}");
    assert!(peak > 0, "no VmHWM read");
    assert!(
        peak < LIMIT_KIB,
        "peak RSS {} MiB over {PAIRS} socketpairs, limit {} MiB",
        peak / 1024,
        LIMIT_KIB / 1024
    );
}
