//! D-Bus on its own pcapng interface: a private dbus-daemon, called by
//! dbus-send, gdbus and a raw client, captured by the real binary and read
//! by tshark and `-r`. Needs root (eBPF), dbus-daemon, dbus-send, gdbus,
//! tshark and python3.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{count, lua, skip_unless_root, Sockdump, TempDir, SOCKDUMP};

/// A raw D-Bus client: `ok` authenticates, then sends a 200 kB signal in
/// 50 kB writes (`Large`) and in one (`LargeOneWrite`), a signal whose
/// header and body go in two writes (`Split`), two signals in one write
/// (`TwoA`, `TwoB`) and `GetId`; `never` sends a message without
/// authenticating (`Sneaky`). Prints its pid first.
const CLIENT: &str = r#"
import os, socket, struct, sys, time

def header(kind, serial, body_len, fields):
    out = bytearray()
    for code, sig, value in fields:
        out += b"\0" * (-len(out) % 8)
        out += bytes([code, 1]) + sig.encode() + b"\0"
        if sig == "g":
            out += bytes([len(value)]) + value.encode() + b"\0"
        else:
            out += struct.pack("<I", len(value)) + value.encode() + b"\0"
    fixed = b"l" + bytes([kind, 0, 1]) + struct.pack("<III", body_len, serial, len(out))
    head = fixed + bytes(out)
    return head + b"\0" * (-len(head) % 8)

serial = 0
def call(member):
    global serial
    serial += 1
    return header(1, serial, 0, [(1, "o", "/org/freedesktop/DBus"), (2, "s", "org.freedesktop.DBus"),
                                 (3, "s", member), (6, "s", "org.freedesktop.DBus")])

def signal(member, text):
    global serial
    serial += 1
    body = struct.pack("<I", len(text)) + text + b"\0"
    head = header(4, serial, len(body), [(1, "o", "/test"), (2, "s", "org.sockdump.Test"),
                                         (3, "s", member), (8, "g", "s")])
    return head, body

def receive(sock, buf):
    while True:
        if len(buf) >= 16:
            body, _, fields = struct.unpack("<III", buf[4:16])
            total = 16 + (fields + 7) // 8 * 8 + body
            if len(buf) >= total:
                return buf[:total], buf[total:]
        chunk = sock.recv(65536)
        if not chunk:
            raise SystemExit("the bus hung up")
        buf += chunk

def reply_to(sock, buf, wanted):
    while True:
        message, buf = receive(sock, buf)
        if message[1] in (2, 3):
            return buf

path, mode = sys.argv[1], sys.argv[2]
sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
sock.connect(path)
print(os.getpid(), flush=True)
if mode == "never":
    sock.sendall(b"\0AUTH BOGUS\r\n")
    sock.recv(100)
    sock.sendall(header(1, 1, 0, [(1, "o", "/x"), (3, "s", "Sneaky")]))
    sock.recv(100)
    sys.exit(0)
sock.sendall(b"\0")
sock.sendall(b"AUTH EXTERNAL " + str(os.getuid()).encode().hex().encode() + b"\r\n")
line = sock.recv(100)
assert line.startswith(b"OK "), line
sock.sendall(b"BEGIN\r\n")
sock.sendall(call("Hello"))
buf = reply_to(sock, b"", 1)
head, body = signal("Large", b"x" * 200000)
whole = head + body
for at in range(0, len(whole), 50000):
    sock.sendall(whole[at:at + 50000])
head, body = signal("LargeOneWrite", b"y" * 200000)
sock.sendall(head + body)
head, body = signal("Split", b"split")
sock.sendall(head)
time.sleep(0.05)
sock.sendall(body)
a, b = signal("TwoA", b"a"), signal("TwoB", b"b")
sock.sendall(a[0] + a[1] + b[0] + b[1])
sock.sendall(call("GetId"))
reply_to(sock, buf, 2)
"#;

/// The bus: a dbus-daemon on `DIR/bus` that lets everyone do anything.
struct Bus {
    daemon: Child,
    address: String,
}

impl Bus {
    fn start(dir: &TempDir) -> Bus {
        let socket = dir.join("bus");
        let config = dir.join("bus.conf");
        let policy = r#"<policy context="default"><allow send_destination="*"/><allow receive_sender="*"/><allow own="*"/></policy>"#;
        let text = format!(
            "<busconfig><type>session</type><listen>unix:path={}</listen><auth>EXTERNAL</auth>{policy}</busconfig>",
            socket.display()
        );
        std::fs::write(&config, text).expect("write the bus configuration");
        let mut daemon = Command::new("dbus-daemon")
            .args(["--nofork", "--print-address", "--config-file"])
            .arg(&config)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("dbus-daemon is installed (apt-get install -y dbus-daemon)");
        let mut line = String::new();
        let stdout = daemon.stdout.take().expect("piped stdout");
        BufReader::new(stdout).read_line(&mut line).expect("the bus address");
        assert!(line.starts_with("unix:path="), "dbus-daemon said {line:?}");
        Bus { daemon, address: format!("unix:path={}", socket.display()) }
    }
}

impl Drop for Bus {
    fn drop(&mut self) {
        let _ = self.daemon.kill();
        let _ = self.daemon.wait();
    }
}

/// Runs a command; its stdout, or why it failed.
fn run(command: &mut Command, what: &str) -> Result<String, String> {
    let out = command.output().map_err(|e| format!("{what}: {e}"))?;
    if !out.status.success() {
        return Err(format!("{what} failed: {}", String::from_utf8_lossy(&out.stderr)));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The raw client in `mode`; its pid.
fn client(socket: &Path, mode: &str) -> Result<u32, String> {
    let out =
        run(Command::new("python3").arg("-c").arg(CLIENT).arg(socket).arg(mode), "the raw D-Bus client")?;
    out.trim().parse().map_err(|e| format!("the client's pid {out:?}: {e}"))
}

/// `dbus-send ... ListNames`.
fn list_names(bus: &Bus) -> Result<String, String> {
    run(
        Command::new("dbus-send").args([
            &format!("--bus={}", bus.address),
            "--print-reply",
            "--dest=org.freedesktop.DBus",
            "/org/freedesktop/DBus",
            "org.freedesktop.DBus.ListNames",
        ]),
        "dbus-send ListNames",
    )
}

/// The traffic the capture test looks for; the unauthenticated client's pid.
fn talk(bus: &Bus, socket: &Path) -> Result<u32, String> {
    let list = list_names(bus)?;
    assert!(list.contains("org.freedesktop.DBus"), "{list}");
    run(
        Command::new("dbus-send").args([
            &format!("--bus={}", bus.address),
            "--type=signal",
            "/org/sockdump/Test",
            "org.sockdump.Test.Ping",
            "string:hello",
        ]),
        "dbus-send a signal",
    )?;
    let id = run(
        Command::new("gdbus").args([
            "call",
            "--address",
            &bus.address,
            "--dest",
            "org.freedesktop.DBus",
            "--object-path",
            "/org/freedesktop/DBus",
            "--method",
            "org.freedesktop.DBus.GetId",
        ]),
        "gdbus call GetId",
    )?;
    assert!(id.starts_with("('"), "{id}");
    client(socket, "ok")?;
    client(socket, "never")
}

/// Per member on the D-Bus interface: (frame length, captured length).
fn members(file: &Path) -> HashMap<String, Vec<(usize, usize)>> {
    let mut members: HashMap<String, Vec<(usize, usize)>> = HashMap::new();
    let rows =
        lua(file, "frame.interface_id == 1 && dbus.member", &["dbus.member", "frame.len", "frame.cap_len"]);
    for row in rows {
        let number = |i: usize| row[i].parse::<usize>().expect("a length");
        members.entry(row[0].clone()).or_default().push((number(1), number(2)));
    }
    members
}

#[test]
fn dbus_messages_get_their_own_interface() {
    if skip_unless_root("dbus_messages_get_their_own_interface") {
        return;
    }
    let dir = TempDir::new("dbus");
    let bus = Bus::start(&dir);
    let socket = dir.join("bus");
    let eth = dir.join("bus.pcapng");
    let user = dir.join("user.pcapng");
    let captures: Vec<Sockdump> = [(&eth, "ethernet"), (&user, "user")]
        .into_iter()
        .map(|(file, link)| {
            let (file, sock) = (file.to_str().expect("utf-8"), socket.to_str().expect("utf-8"));
            // one write of the big signal is 200 kB: capture as much of it as can be
            let args =
                ["--format", "pcapng", "--link", link, "-o", file, "--sock", sock, "--seg-size", "65536"];
            Sockdump::start(&args)
        })
        .collect();

    // the captures end before any failure is reported
    let talked = talk(&bus, &socket);
    for capture in captures {
        capture.stop();
    }
    let never = talked.unwrap_or_else(|e| panic!("{e}"));

    for file in [&eth, &user] {
        let found = members(file);
        for member in
            ["Hello", "ListNames", "Ping", "GetId", "Large", "LargeOneWrite", "Split", "TwoA", "TwoB"]
        {
            assert!(found.contains_key(member), "{member} missing from {}: {found:?}", file.display());
        }
        for member in ["Large", "LargeOneWrite", "Split", "TwoA", "TwoB"] {
            assert_eq!(found[member].len(), 1, "{member} once: {found:?}");
        }
        // gathered from four writes: whole
        let (len, captured) = found["Large"][0];
        assert!(len > 200_000 && captured == len, "Large: {len} bytes, {captured} captured");
        // one write of it: as much as the kernel captured, and its length
        let (len, captured) = found["LargeOneWrite"][0];
        assert!(len > 200_000 && captured == 65536, "LargeOneWrite: {len} bytes, {captured} captured");
        // the handshake stays with the ordinary framing; the unauthenticated client too
        assert_eq!(found.get("Sneaky"), None);
        let never_on = lua(file, &format!("sockdump.pid == {never}"), &["frame.interface_id"]);
        assert!(!never_on.is_empty() && never_on.iter().all(|row| row[0] == "0"), "{never_on:?}");
        assert_eq!(count(file, "frame.interface_id == 1 && !dbus", &[]), 0, "every D-Bus packet dissects");
        let problems = "frame.interface_id == 1 && (_ws.malformed || _ws.expert.severity >= \"Warning\")";
        assert_eq!(count(file, problems, &[]), 0, "{problems}");
        // the comment's fields on every D-Bus packet, its length the message's
        let rows = lua(
            file,
            "frame.interface_id == 1",
            &[
                "frame.interface_name",
                "sockdump.comm",
                "sockdump.len",
                "frame.len",
                "frame.packet_flags_direction",
            ],
        );
        assert!(rows.len() >= 20, "{rows:?}");
        for row in &rows {
            assert_eq!(row[0], "sockdump-dbus");
            assert!(["dbus-send", "gdbus", "python3", "dbus-daemon"].contains(&row[1].as_str()), "{row:?}");
            assert_eq!(row[2], row[3], "the comment's len is the message's");
            let direction = if row[1] == "dbus-daemon" { "0x00000001" } else { "0x00000002" };
            assert_eq!(row[4], direction, "{row:?}");
        }
    }
    let handshakes = "frame.interface_id == 0 && tcp.payload contains \"BEGIN\"";
    assert_eq!(count(&eth, handshakes, &[]), 4, "every authenticated client's BEGIN");

    // -r gives the handshake and the messages back
    let out = Command::new(SOCKDUMP)
        .args(["-r", eth.to_str().expect("utf-8"), "--format", "string"])
        .output()
        .expect("sockdump -r");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    for expected in ["AUTH EXTERNAL", "BEGIN", "OK ", "ListNames", "GetId", "TwoA", "TwoB", "Sneaky"] {
        assert!(text.contains(expected), "{expected} missing from -r:\n{text}");
    }
}

#[test]
fn wireshark_sees_dbus_members_through_the_extcap() {
    if skip_unless_root("wireshark_sees_dbus_members_through_the_extcap") {
        return;
    }
    let (home, dir) = (TempDir::new("dbus-home"), TempDir::new("dbus-extcap"));
    let install = Command::new(SOCKDUMP).args(["extcap", "install"]).env("HOME", home.path()).output();
    assert!(install.as_ref().is_ok_and(|out| out.status.success()), "sockdump extcap install: {install:?}");
    let bus = Bus::start(&dir);
    let file = dir.join("extcap.pcapng");
    let sock = format!("extcap.sockdump.sock:{}", dir.path().display());
    let mut tshark = Command::new("tshark")
        .args(["-i", "sockdump", "-o", &sock, "-a", "duration:8", "-w"])
        .arg(&file)
        .env("HOME", home.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("tshark is installed");
    // calls throughout the capture: sockdump starts within it
    let until = Instant::now() + Duration::from_secs(7);
    while Instant::now() < until {
        list_names(&bus).unwrap_or_else(|e| panic!("{e}"));
        std::thread::sleep(Duration::from_millis(250));
    }
    assert!(tshark.wait().expect("tshark ends").success());
    let calls = lua(&file, "dbus.member == \"ListNames\"", &["frame.interface_name", "sockdump.comm"]);
    assert!(!calls.is_empty(), "no ListNames through the extcap");
    assert!(calls.iter().all(|row| row == &["sockdump-dbus", "dbus-send"]), "{calls:?}");
}
