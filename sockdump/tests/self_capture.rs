//! sockdump's output can itself be a unix socket (`sockdump | ssh ...`,
//! systemd services): it must never capture its own writes, or every
//! printed message would produce another.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

#[test]
fn output_to_a_unix_socket_does_not_feed_back() {
    if common::skip_unless_root("output_to_a_unix_socket_does_not_feed_back") {
        return;
    }
    let (ours, theirs) = UnixStream::pair().unwrap();
    let mut sockdump = Command::new(env!("CARGO_BIN_EXE_sockdump"))
        .args(["--format", "string"])
        .stdout(Stdio::from(std::os::fd::OwnedFd::from(theirs)))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Read all along: a feedback loop must show up as output, not as a hang.
    let reader = std::thread::spawn(move || {
        let mut printed = Vec::new();
        let _ = (&ours).take(1 << 20).read_to_end(&mut printed);
        String::from_utf8_lossy(&printed).into_owned()
    });
    let mut stderr = BufReader::new(sockdump.stderr.take().unwrap());
    let mut line = String::new();
    stderr.read_line(&mut line).unwrap();
    assert!(line.starts_with("listening"), "{line}");

    let (mut a, mut b) = UnixStream::pair().unwrap();
    a.write_all(b"self-capture: one message from the test").unwrap();
    let mut got = [0u8; 39];
    b.read_exact(&mut got).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    kill(Pid::from_raw(sockdump.id() as i32), Signal::SIGINT).unwrap();
    let printed = reader.join().unwrap();
    let _ = sockdump.wait();

    let own = format!("[{} -> ", sockdump.id());
    assert!(printed.contains("self-capture: one message from the test"), "{printed}");
    assert!(
        !printed.contains(&own),
        "sockdump captured its own output:\n{}",
        &printed[..printed.len().min(2000)]
    );
}
