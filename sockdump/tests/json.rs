//! `--format json`: JSON lines of real traffic, live and from a pcapng file
//! with `-r`, parsed and compared byte for byte. Needs root (eBPF) and
//! python3.

mod common;

use std::path::Path;
use std::process::Stdio;

use base64::Engine;
use common::{python, read_all, skip_unless_root, sockdump, Sockdump, TempDir};
use serde_json::Value;

/// Sends three datagrams to a socket it binds at `argv[1]`, reading each,
/// and prints its pid.
const SEND: &str = r#"
import os, socket, sys
rx = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
rx.bind(sys.argv[1])
tx = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
for message in [b"hello json\n", bytes(range(255, -1, -1)), b"A" * 500]:
    tx.sendto(message, sys.argv[1])
    rx.recv(1000)
print(os.getpid())
"#;

fn sent() -> Vec<Vec<u8>> {
    vec![b"hello json\n".to_vec(), (0..=255u8).rev().collect(), vec![b'A'; 500]]
}

/// Runs the sender; its pid.
fn send(socket: &Path) -> u64 {
    let out = python(SEND, &[socket.to_str().unwrap()]);
    String::from_utf8_lossy(&out.stdout).trim().parse().expect("python's pid")
}

fn lines(bytes: &[u8]) -> Vec<Value> {
    let text = std::str::from_utf8(bytes).expect("JSON lines are UTF-8");
    text.lines().map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"))).collect()
}

/// Each object holds the exact bytes (the first 100 of the long one) and
/// what the kernel said of them.
fn check(objects: &[Value], pid: u64, socket: &Path) {
    assert_eq!(objects.len(), 3, "{objects:?}");
    for (object, sent) in objects.iter().zip(sent()) {
        let data =
            base64::engine::general_purpose::STANDARD.decode(object["data"].as_str().unwrap()).unwrap();
        let captured = sent.len().min(100);
        assert_eq!(data, sent[..captured], "{object}");
        assert_eq!(object["len"].as_u64(), Some(sent.len() as u64));
        assert_eq!(object["captured"].as_u64(), Some(captured as u64));
        assert_eq!(object["truncated"].as_bool(), Some(captured < sent.len()));
        assert_eq!(
            object["flags"].as_array().is_some_and(|f| f.contains(&"trunc_size".into())),
            captured < sent.len()
        );
        assert_eq!(
            object["text"].as_str().map(str::as_bytes),
            std::str::from_utf8(&data).ok().map(str::as_bytes)
        );
        assert_eq!((object["pid"].as_u64(), object["comm"].as_str()), (Some(pid), Some("python3")));
        assert_eq!(object["type"], "dgram");
        assert_eq!(object["peer_path"].as_str(), socket.to_str());
        assert!(object["time"].as_str().is_some_and(|t| t.ends_with('Z') && t.len() == 30), "{object}");
        assert!(object["uid"].as_u64() == Some(0) && object["ppid"].as_u64().is_some(), "{object}");
    }
    assert!(objects[1].get("text").is_none(), "bytes 255 down to 156 are not UTF-8");
}

#[test]
fn json_lines_live_and_from_a_file() {
    if skip_unless_root("json_lines_live_and_from_a_file") {
        return;
    }
    let dir = TempDir::new("json");
    let socket = dir.join("s");
    let file = dir.join("cap.pcapng");
    let common = ["--sock", socket.to_str().unwrap(), "--seg-size", "100", "-c", "3"];
    let mut live = Sockdump::start_with(&[&["--format", "json"][..], &common].concat(), Stdio::piped());
    let stdout = live.stdout().expect("piped stdout");
    let reader = std::thread::spawn(move || read_all(stdout));
    let to_file = Sockdump::start(&[&["-w", file.to_str().unwrap()][..], &common].concat());
    let pid = send(&socket);
    live.wait();
    to_file.wait();
    check(&lines(&reader.join().unwrap()), pid, &socket);

    let replay = sockdump(&["-r", file.to_str().unwrap(), "--format", "json"]);
    assert!(replay.status.success(), "{replay:?}");
    check(&lines(&replay.stdout), pid, &socket);
}
