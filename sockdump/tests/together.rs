//! Captures side by side and after a crash: two sockdumps at once each see
//! every message, and one killed with SIGKILL leaves nothing that stops the
//! next. (The kprobe family's tracefs events, which a kill leaves behind,
//! are checked in the VM matrix's `kill-9` row: this host has no kprobes.)
//! Needs root (eBPF) and python3.

mod common;

use std::path::Path;
use std::process::Stdio;

use common::{python, skip_unless_root, Sockdump, TempDir};

/// One end of a socketpair sends `argv[1]`, the other reads it.
const PAIR: &str = r#"
import socket, sys
a, b = socket.socketpair()
a.sendall(sys.argv[1].encode())
b.recv(100)
"#;

/// A capture of what python3 sends, as text into `out`.
fn capture(hook: &str, out: &Path) -> Sockdump {
    let args = ["--hook", hook, "--comm", "python3", "--format", "string", "-o", out.to_str().unwrap()];
    Sockdump::start_with(&args, Stdio::null())
}

fn captured(file: &Path, word: &str) -> usize {
    std::fs::read_to_string(file).expect("the capture").lines().filter(|l| *l == word).count()
}

#[test]
fn two_captures_at_once_see_the_same_messages() {
    if skip_unless_root("two_captures_at_once_see_the_same_messages") {
        return;
    }
    let dir = TempDir::new("two");
    // the same family twice, and two families side by side
    for (first, second) in [("auto", "auto"), ("tracepoint", "tracepoint"), ("auto", "tracepoint")] {
        let (a, b) = (dir.join(&format!("{first}.a")), dir.join(&format!("{second}.b")));
        let one = capture(first, &a);
        let two = capture(second, &b);
        let word = format!("together-{first}-{second}");
        python(PAIR, &[&word]);
        two.stop();
        one.stop();
        assert_eq!(
            (captured(&a, &word), captured(&b, &word)),
            (1, 1),
            "{first} and {second} each saw it once"
        );
    }
}

#[test]
fn a_capture_killed_with_sigkill_leaves_nothing_in_the_way() {
    if skip_unless_root("a_capture_killed_with_sigkill_leaves_nothing_in_the_way") {
        return;
    }
    let dir = TempDir::new("kill");
    let killed = capture("auto", &dir.join("killed"));
    python(PAIR, &["before-the-kill"]);
    killed.signal(nix::sys::signal::Signal::SIGKILL);
    let (status, _) = killed.exit();
    assert_eq!(std::os::unix::process::ExitStatusExt::signal(&status), Some(9));
    let next = capture("auto", &dir.join("next"));
    python(PAIR, &["after-the-kill"]);
    next.stop();
    assert_eq!(captured(&dir.join("next"), "after-the-kill"), 1);
    if let Ok(events) = std::fs::read_to_string("/sys/kernel/tracing/kprobe_events") {
        assert!(!events.contains("sockdump_"), "tracefs events left behind:\n{events}");
    }
}
