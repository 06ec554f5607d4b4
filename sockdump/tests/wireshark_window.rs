//! The Wireshark window itself, as a user starts it: `wireshark-qt` under
//! Xvfb captures live on the sockdump interface (options as preferences)
//! into a file while curl talks HTTP over a unix socket. The file holds
//! curl's requests and none of Wireshark's own display traffic. No pixels
//! are compared; every wait is bounded.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{skip_unless_root, SOCKDUMP};

/// Kills the child when the test ends, however it ends.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn require(program: &str) {
    let found = Command::new("sh").args(["-c", &format!("command -v {program}")]).output().unwrap();
    assert!(
        found.status.success(),
        "{program} is missing: install wireshark-qt and xvfb (scripts/install-deps)"
    );
}

/// A virtual X display; returns it and its number.
fn xvfb() -> (Killed, String) {
    let mut server = Command::new("Xvfb")
        .args(["-displayfd", "1", "-nolisten", "tcp", "-screen", "0", "1280x1024x24"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("Xvfb starts");
    let mut line = String::new();
    BufReader::new(server.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let display = format!(":{}", line.trim());
    assert!(display.len() > 1, "Xvfb printed no display number");
    (Killed(server), display)
}

#[test]
fn the_wireshark_window_captures_without_its_own_display_traffic() {
    if skip_unless_root("the_wireshark_window_captures_without_its_own_display_traffic") {
        return;
    }
    require("wireshark");
    require("Xvfb");
    let dir = tempfile::tempdir().unwrap();
    let extcap = dir.path().join("home/.config/wireshark/extcap");
    std::fs::create_dir_all(&extcap).unwrap();
    std::os::unix::fs::symlink(SOCKDUMP, extcap.join("sockdump")).unwrap();
    let (_x, display) = xvfb();

    let socket = dir.path().join("http.sock");
    let _server = Killed(
        Command::new("python3")
            .arg(common::repo_root().join("scripts/demo-http-server.py"))
            .arg(&socket)
            .spawn()
            .unwrap(),
    );
    let file = dir.path().join("window.pcapng");
    let mut wireshark = Killed(
        Command::new("wireshark")
            .args(["-k", "-i", "sockdump", "-a", "duration:8", "-w"])
            .arg(&file)
            .env("HOME", dir.path().join("home"))
            .env("DISPLAY", &display)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("wireshark starts"),
    );
    let (lines, log) = mpsc::channel();
    let stderr = wireshark.0.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    let wait_for = |what: &str, within: Duration| -> Vec<String> {
        let deadline = Instant::now() + within;
        let mut seen = Vec::new();
        while let Ok(line) = log.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            let found = line.contains(what);
            seen.push(line);
            if found {
                return seen;
            }
        }
        panic!("wireshark never said {what:?}:\n{}", seen.join("\n"));
    };
    wait_for("Capture started", Duration::from_secs(60));

    // requests while the window captures (and redraws as packets arrive)
    let mut made = 0;
    while made < 8 {
        let status = Command::new("curl")
            .args(["-s", "-o", "/dev/null", "--unix-socket"])
            .arg(&socket)
            .arg(format!("http://localhost/window-{made}"))
            .status()
            .unwrap();
        assert!(status.success());
        made += 1;
        std::thread::sleep(Duration::from_millis(300));
    }
    wait_for("Capture stopped", Duration::from_secs(30));
    drop(wireshark);

    let comments = common::tshark(&["-r", file.to_str().unwrap(), "-T", "fields", "-e", "frame.comment"]);
    let requests = common::tshark(&[
        "-r",
        file.to_str().unwrap(),
        "-Y",
        &format!(
            "http.request and frame.comment contains \"comm=curl\" and frame.comment contains \"{}\"",
            socket.display()
        ),
        "-T",
        "fields",
        "-e",
        "http.request.uri",
    ]);
    assert_eq!(requests.lines().filter(|uri| uri.starts_with("/window-")).count(), made, "{requests}");
    let own: Vec<&str> =
        comments.lines().filter(|c| c.contains(".X11-unix") || c.contains("comm=wireshark")).collect();
    assert!(
        own.is_empty(),
        "Wireshark's own traffic was captured: {} packets, e.g. {:?}",
        own.len(),
        own.first()
    );
}
