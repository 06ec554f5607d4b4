//! Captured bytes bound for a terminal are shown escaped, as `less` shows
//! them: any process could otherwise send escape sequences to the terminal
//! of the person watching. Files and pipes get the bytes unchanged.

mod common;

use std::process::{Command, Stdio};

use common::{skip_unless_root, Sockdump, SOCKDUMP};

const MESSAGE: &[u8] = b"\x1b]0;owned\x07\x1b[2J tty-marker";

fn send_message() {
    let script =
        "import socket,sys\na,b=socket.socketpair()\na.send(bytes.fromhex(sys.argv[1])); b.recv(100)\n";
    let hex: String = MESSAGE.iter().map(|b| format!("{b:02x}")).collect();
    assert!(Command::new("python3").args(["-c", script, &hex]).status().unwrap().success());
}

#[test]
fn escape_sequences_reach_a_terminal_escaped_and_a_pipe_unchanged() {
    if skip_unless_root("escape_sequences_reach_a_terminal_escaped_and_a_pipe_unchanged") {
        return;
    }
    // `script` gives sockdump a pseudo-terminal as stdout; its stderr goes
    // around the terminal (fd 3) so the `listening` line can be waited for
    let mut command = Command::new("sh");
    command
        .args([
            "-c",
            "exec script -qfec \"$0 --format string --comm python3 -c 1 2>&3\" /dev/null 3>&2",
            SOCKDUMP,
        ])
        .stdout(Stdio::piped());
    let mut on_terminal = Sockdump::start_command(command);
    let stdout = on_terminal.stdout().unwrap();
    send_message();
    on_terminal.wait();
    let shown = common::read_all(stdout);
    let text = String::from_utf8_lossy(&shown);
    assert!(text.contains("^[]0;owned^G^[[2J tty-marker"), "{text:?}");
    assert!(!shown.contains(&0x1b), "a raw escape byte reached the terminal: {text:?}");

    let mut to_pipe =
        Sockdump::start_with(&["--format", "string", "--comm", "python3", "-c", "1"], Stdio::piped());
    let stdout = to_pipe.stdout().unwrap();
    send_message();
    to_pipe.wait();
    let piped = common::read_all(stdout);
    assert!(piped.windows(MESSAGE.len()).any(|w| w == MESSAGE), "{:?}", String::from_utf8_lossy(&piped));
}
