//! sockdump's output can itself be a unix socket (`sockdump | ssh ...`,
//! systemd services): it must never capture its own writes, or every
//! printed message would produce another. Also inside a container's pid
//! namespace, where the kernel knows sockdump by another pid.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::SOCKDUMP;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// The sockdump process: `pid` itself, or its child when a wrapper forked it.
fn sockdump_pid(pid: u32) -> i32 {
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    if comm.trim() == "sockdump" {
        return pid as i32;
    }
    let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap();
    children.split_whitespace().next().expect("the wrapper's child").parse().unwrap()
}

/// Runs `command` (sockdump, maybe wrapped) with its stdout on a unix
/// socket, sends one message, stops it with SIGINT, and returns what it
/// printed and its pid (as the kernel knows it).
fn capture_through_a_socket(mut command: Command) -> (String, i32) {
    let (ours, theirs) = UnixStream::pair().unwrap();
    let mut child = command
        .args([SOCKDUMP, "--format", "string"])
        .stdout(Stdio::from(std::os::fd::OwnedFd::from(theirs)))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // the Command holds our copy of sockdump's end: the reader's EOF needs it closed
    drop(command);
    // Read all along: a feedback loop must show up as output, not as a hang.
    let reader = std::thread::spawn(move || {
        let mut printed = Vec::new();
        let _ = (&ours).take(1 << 20).read_to_end(&mut printed);
        String::from_utf8_lossy(&printed).into_owned()
    });
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    stderr.read_line(&mut line).unwrap();
    assert!(line.starts_with("listening"), "{line}");

    let (mut a, mut b) = UnixStream::pair().unwrap();
    a.write_all(b"self-capture: one message from the test").unwrap();
    let mut got = [0u8; 39];
    b.read_exact(&mut got).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let pid = sockdump_pid(child.id());
    kill(Pid::from_raw(pid), Signal::SIGINT).unwrap();
    let printed = reader.join().unwrap();
    let _ = child.wait();
    (printed, pid)
}

/// The test's message is there, none sent by this sockdump (records of
/// another test's sockdump writing its output may be).
fn check((printed, pid): (String, i32)) {
    assert!(printed.contains("self-capture: one message from the test"), "{printed}");
    assert!(
        !printed.contains(&format!(">>> process sockdump [{pid} -> ")),
        "sockdump {pid} captured its own output:\n{}",
        &printed[..printed.len().min(2000)]
    );
}

/// One test, the two cases one after the other: two sockdumps writing to
/// unix sockets at once would capture each other (that is not self-capture,
/// and the nested text would confuse the check).
#[test]
fn output_to_a_unix_socket_does_not_feed_back() {
    if common::skip_unless_root("output_to_a_unix_socket_does_not_feed_back") {
        return;
    }
    check(capture_through_a_socket(Command::new("env")));
    // inside a container's pid namespace the kernel knows it by another pid
    let mut unshare = Command::new("unshare");
    unshare.args(["--pid", "--fork", "--mount-proc"]);
    check(capture_through_a_socket(unshare));
}
