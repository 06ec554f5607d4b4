//! `--exclude-pid`: a viewer's own conversations stay out of the capture,
//! decided in the kernel: what it and its children send, and what a server
//! sends back to it; everyone else's traffic is kept.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::{skip_unless_root, Sockdump};

/// A server answering every message on `path` with `to-viewer`.
const SERVER: &str = "import socket,sys\n\
s=socket.socket(socket.AF_UNIX); s.bind(sys.argv[1]); s.listen(); print('ready', flush=True)\n\
c,_=s.accept()\n\
while c.recv(100): c.send(b'to-viewer')\n";

/// The viewer: once told to go, talks to the server and has a child talk
/// on a socketpair.
const VIEWER: &str = "import os,socket,sys\n\
sys.stdin.readline()\n\
v=socket.socket(socket.AF_UNIX); v.connect(sys.argv[1])\n\
for _ in range(3): v.send(b'from-viewer'); v.recv(100)\n\
pid=os.fork()\n\
if pid == 0:\n    a,b=socket.socketpair()\n    for _ in range(3): a.send(b'from-child'); b.recv(100)\n    os._exit(0)\n\
os.waitpid(pid, 0)\n";

const OTHER: &str = "import socket\n\
a,b=socket.socketpair()\n\
for _ in range(3): a.send(b'from-other'); b.recv(100)\n";

#[test]
fn a_viewers_own_conversations_are_left_out() {
    if skip_unless_root("a_viewers_own_conversations_are_left_out") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("server.sock");
    let mut server =
        Command::new("python3").args(["-c", SERVER]).arg(&path).stdout(Stdio::piped()).spawn().unwrap();
    let mut ready = [0u8; 6];
    std::io::Read::read_exact(server.stdout.as_mut().unwrap(), &mut ready).unwrap();
    let mut viewer =
        Command::new("python3").args(["-c", VIEWER]).arg(&path).stdin(Stdio::piped()).spawn().unwrap();

    let viewer_pid = viewer.id().to_string();
    let mut running = Sockdump::start_with(
        &["--format", "string", "--comm", "python3", "--exclude-pid", &viewer_pid],
        Stdio::piped(),
    );
    let stdout = running.stdout().unwrap();
    viewer.stdin.as_mut().unwrap().write_all(b"go\n").unwrap();
    assert!(viewer.wait().unwrap().success());
    assert!(Command::new("python3").args(["-c", OTHER]).status().unwrap().success());
    let _ = server.kill();
    let _ = server.wait();
    running.stop();

    let printed = String::from_utf8_lossy(&common::read_all(stdout)).into_owned();
    assert_eq!(printed.matches("from-other").count(), 3, "{printed}");
    for own in ["from-viewer", "to-viewer", "from-child"] {
        assert_eq!(printed.matches(own).count(), 0, "{own} was captured:\n{printed}");
    }
}
