//! pcap/pcapng captures of real traffic by the real binary, checked with
//! tshark. Needs root (eBPF), and tshark, curl and python3.
//!
//! Every capture is filtered to the test's own temporary directory
//! (`--sock DIR`) or its own processes (`--pid`), so other traffic on the
//! machine cannot disturb it.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{count, fields, follow_tcp, lua, python, skip_unless_root, tshark, Sockdump, TempDir, SOCKDUMP};
use sockdump_common::meta::{parse_comment, Comment};

/// An HTTP/1.0 server on a unix socket that answers one GET and exits.
const HTTP_SERVER: &str = r#"
import http.server, socketserver, sys
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"hello from a unix socket\n"
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
class Server(socketserver.UnixStreamServer):
    def get_request(self):
        conn, _ = super().get_request()
        return conn, ("unix", 0)
server = Server(sys.argv[1], Handler)
server.timeout = 30
print("ready", flush=True)
server.handle_request()
"#;

/// Starts a python script that prints `ready` once it is listening (and,
/// if it waits for one, goes on at a line on stdin: see [`go`]).
fn start_python(script: &str, args: &[&str]) -> Child {
    let mut child = Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("python3 is installed");
    let stdout = child.stdout.take().expect("piped stdout");
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).expect("read python's first line");
    assert_eq!(line.trim(), "ready", "python did not start");
    child
}

/// Lets a script started with [`start_python`] go on, once capture is live.
fn go(child: &mut Child) {
    use std::io::Write;
    child.stdin.take().expect("piped stdin").write_all(b"go\n").expect("tell python to go");
}

fn wait_success(mut child: Child, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            assert!(status.success(), "{what} failed: {status}");
            return;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{what} did not finish");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The sockdump comments of the data packets (not the synthetic ones), in order.
fn message_comments(file: &Path, extra: &[&str]) -> Vec<(u32, String)> {
    fields(file, "frame.comment", &["frame.number", "frame.comment"], extra)
        .into_iter()
        .filter(|row| !row[1].contains("synthetic="))
        .map(|row| (row[0].parse().expect("frame number"), row[1].clone()))
        .collect()
}

fn pid_of(comment: &str) -> u32 {
    match parse_comment(comment) {
        Ok(Comment::Message { meta, .. }) => meta.pid,
        other => panic!("not a message comment: {comment:?} ({other:?})"),
    }
}

#[test]
fn curl_to_a_python_http_server_dissects_as_http() {
    if skip_unless_root("curl_to_a_python_http_server_dissects_as_http") {
        return;
    }
    let dir = TempDir::new("http");
    let sock = dir.join("http.sock");
    let sock_s = sock.to_str().expect("utf-8");
    let dir_s = dir.path().to_str().expect("utf-8");
    let eth = dir.join("eth.pcapng");
    let user = dir.join("user.pcapng");
    let classic = dir.join("eth.pcap");
    let server = start_python(HTTP_SERVER, &[sock_s]);
    let server_pid = server.id();
    // Three captures of the same exchange: pcapng, pcapng --link user, pcap.
    let captures: Vec<Sockdump> =
        [vec!["--format", "pcapng"], vec!["--format", "pcapng", "--link", "user"], vec!["--format", "pcap"]]
            .into_iter()
            .zip([&eth, &user, &classic])
            .map(|(mut args, out)| {
                args.extend(["--sock", dir_s, "-o", out.to_str().expect("utf-8")]);
                Sockdump::start(&args)
            })
            .collect();
    let curl = Command::new("curl")
        .args(["-sS", "--max-time", "20", "--unix-socket", sock_s, "http://localhost/hello?x=1"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("curl is installed (apt-get install -y curl)");
    let curl_pid = curl.id();
    let output = curl.wait_with_output().expect("curl runs");
    assert!(output.status.success(), "curl failed");
    assert_eq!(output.stdout, b"hello from a unix socket\n");
    wait_success(server, "the python HTTP server");
    for capture in captures {
        let (captured, _) = capture.stop();
        assert!(captured >= 3, "request, response head and body: {captured}");
    }

    // Captures hold secrets: owner-only files.
    let mode = std::fs::metadata(&eth).expect("capture file").permissions().mode();
    assert_eq!(mode & 0o777, 0o600);

    // pcapng: HTTP with no Decode As; comments name the right processes.
    let requests = fields(&eth, "http.request", &["http.request.uri", "frame.comment", "tcp.dstport"], &[]);
    assert_eq!(requests.len(), 1, "{requests:?}");
    assert_eq!(requests[0][0], "/hello?x=1");
    assert_eq!(requests[0][2], "80");
    let comment = &requests[0][1];
    assert!(comment.starts_with(&format!("sockdump=1 pid={curl_pid} ")), "{comment}");
    assert!(comment.contains(" comm=curl "), "{comment}");
    assert!(comment.contains(&format!(" peer_path={sock_s} ")), "{comment}");
    assert!(comment.contains(" type=stream "), "{comment}");
    let responses = fields(&eth, "http.response", &["http.response.code", "frame.comment"], &[]);
    let packets = || {
        let columns = [
            "frame.number",
            "tcp.srcport",
            "tcp.dstport",
            "tcp.seq",
            "tcp.len",
            "tcp.flags.str",
            "frame.comment",
        ];
        fields(&eth, "", &columns, &[])
    };
    assert_eq!(responses.len(), 1, "{responses:?}; the packets: {:?}", packets());
    assert_eq!(responses[0][0], "200");
    assert_eq!(pid_of(&responses[0][1]), server_pid);
    assert!(responses[0][1].contains(&format!(" path={sock_s} ")), "{}", responses[0][1]);
    // Client messages are outbound, the server's inbound.
    let dirs = fields(&eth, "http.request || http.response", &["frame.packet_flags_direction"], &[]);
    assert_eq!(dirs, [["0x00000002"], ["0x00000001"]]);

    // The Lua fields select exactly the packets whose comment names the pid.
    let comments = message_comments(&eth, &[]);
    for pid in [curl_pid, server_pid] {
        let expected: Vec<Vec<String>> =
            comments.iter().filter(|(_, c)| pid_of(c) == pid).map(|(n, _)| vec![n.to_string()]).collect();
        assert!(!expected.is_empty());
        let filter = format!("sockdump.pid == {pid}");
        assert_eq!(lua(&eth, &filter, &["frame.number"]), expected, "{filter}");
    }
    assert_eq!(lua(&eth, "sockdump.comm == \"curl\"", &["sockdump.pid"]), [[curl_pid.to_string()]]);
    let served = lua(&eth, "http.response", &["sockdump.path", "sockdump.peer_pid"]);
    assert_eq!(served, [[sock_s.to_string(), curl_pid.to_string()]]);

    // --link user: the plugin decodes the header and hands the bytes to HTTP.
    assert_eq!(count(&user, "", &[]), comments.len(), "one packet per message");
    let rows = lua(
        &user,
        "http.request",
        &["sockdump.pid", "sockdump.comm", "sockdump.peer_path", "http.request.uri"],
    );
    assert_eq!(rows, [[curl_pid.to_string(), "curl".into(), sock_s.to_string(), "/hello?x=1".into()]]);
    assert_eq!(lua(&user, "http.response", &["sockdump.pid"]), [[server_pid.to_string()]]);
    assert_eq!(
        lua(&user, &format!("sockdump.pid == {server_pid}"), &["frame.number"]).len(),
        comments.len() - 1
    );

    // pcap: the same packets, no comments.
    assert_eq!(count(&classic, "", &[]), count(&eth, "", &[]));
    assert_eq!(count(&classic, "http.request || http.response", &[]), 2);
    let magic = std::fs::read(&classic).expect("pcap file")[..4].to_vec();
    assert_eq!(magic, 0xa1b2_3c4du32.to_ne_bytes(), "nanosecond pcap");
}

/// Client and server exchange writes of several sizes on one connection,
/// and record what each side sent.
const BULK: &str = r#"
import os, socket, sys
d = sys.argv[1]
path = os.path.join(d, "bulk.sock")
srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
srv.bind(path)
srv.listen(1)
print("ready", flush=True)
sys.stdin.readline()
cli = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
cli.settimeout(20)
cli.connect(path)
conn, _ = srv.accept()
conn.settimeout(20)
sent = {"client": b"", "server": b""}
def send(side, sock, data):
    sock.sendall(data)
    sent[side] += data
def recv(sock, n):
    got = b""
    while len(got) < n:
        chunk = sock.recv(n - len(got))
        if not chunk:
            raise SystemExit("connection closed")
        got += chunk
    return got
steps = [("client", 10), ("server", 100), ("client", 65536), ("server", 65536), ("client", 3), ("server", 1)]
for i, (side, n) in enumerate(steps):
    data = bytes((i * 7 + k * 13) % 256 for k in range(n))
    a, b = (cli, conn) if side == "client" else (conn, cli)
    send(side, a, data)
    recv(b, n)
# One sendmsg with three buffers is one message.
parts = [b"alpha-", b"beta-", b"gamma"]
cli.sendmsg(parts)
sent["client"] += b"".join(parts)
recv(conn, sum(map(len, parts)))
for side in sent:
    with open(os.path.join(d, side + ".bin"), "wb") as f:
        f.write(sent[side])
"#;

#[test]
fn follow_stream_equals_the_bytes_each_side_sent() {
    if skip_unless_root("follow_stream_equals_the_bytes_each_side_sent") {
        return;
    }
    let dir = TempDir::new("bulk");
    let dir_s = dir.path().to_str().expect("utf-8");
    let file = dir.join("bulk.pcapng");
    let mut peer = start_python(BULK, &[dir_s]);
    // 7 messages; -c stops the capture by itself.
    let capture = Sockdump::start(&[
        "--format",
        "pcapng",
        "--seg-size",
        "65536",
        "--sock",
        dir_s,
        "-c",
        "7",
        "-o",
        file.to_str().expect("utf-8"),
    ]);
    go(&mut peer);
    wait_success(peer, "the python exchange");
    let (captured, _) = capture.wait();
    assert_eq!(captured, 7);
    let client = std::fs::read(dir.join("client.bin")).expect("client bytes");
    let server = std::fs::read(dir.join("server.bin")).expect("server bytes");
    assert_eq!(client.len(), 10 + 65536 + 3 + 16);
    let (first, second) = follow_tcp(&file, 0, &[]);
    assert!(first == client, "client side: {} bytes, sent {}", first.len(), client.len());
    assert!(second == server, "server side: {} bytes, sent {}", second.len(), server.len());
    assert_eq!(count(&file, "tcp.stream != 0", &[]), 0, "one connection, one stream");
    assert_eq!(count(&file, "tcp.analysis.flags", &[]), 0);
    // 65536-byte messages are split in two packets each.
    assert_eq!(lua(&file, "sockdump.part == 2", &["frame.number"]).len(), 2);
    let multi = fields(&file, "frame.comment contains \"len=16 \"", &["tcp.payload"], &[]);
    assert_eq!(multi.len(), 1);
    assert_eq!(common::unhex(&multi[0][0]), b"alpha-beta-gamma");
}

const DATAGRAMS: &str = r#"
import os, socket, sys
d = sys.argv[1]
path = os.path.join(d, "dgram.sock")
srv = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
srv.bind(path)
print("ready", flush=True)
sys.stdin.readline()
cli = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
for i in range(3):
    cli.sendto(b"datagram %d" % i, path)
conn = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
conn.connect(path)
conn.send(b"connected datagram")
for i in range(4):
    srv.recv(100)
"#;

#[test]
fn datagrams_are_udp() {
    if skip_unless_root("datagrams_are_udp") {
        return;
    }
    let dir = TempDir::new("dgram");
    let dir_s = dir.path().to_str().expect("utf-8");
    let file = dir.join("dgram.pcapng");
    let mut peer = start_python(DATAGRAMS, &[dir_s]);
    let capture =
        Sockdump::start(&["--format", "pcapng", "--sock", dir_s, "-o", file.to_str().expect("utf-8")]);
    go(&mut peer);
    let peer_pid = peer.id();
    wait_success(peer, "the python datagrams");
    let (captured, _) = capture.stop();
    assert_eq!(captured, 4);
    assert_eq!(count(&file, "", &[]), 4, "no handshake for datagrams");
    let rows = fields(&file, "udp", &["udp.payload", "ip.dst", "udp.dstport", "frame.comment"], &[]);
    let payloads: Vec<Vec<u8>> = rows.iter().map(|r| common::unhex(&r[0])).collect();
    assert_eq!(payloads, [&b"datagram 0"[..], b"datagram 1", b"datagram 2", b"connected datagram"]);
    // Every datagram goes to the one named receiver.
    assert!(rows.iter().all(|r| r[1] == rows[0][1] && r[2] == rows[0][2]), "{rows:?}");
    for (i, row) in rows.iter().enumerate() {
        assert_eq!(pid_of(&row[3]), peer_pid);
        assert!(row[3].contains(" type=dgram "), "{}", row[3]);
        assert_eq!(row[3].contains("flags=peer_is_dest"), i < 3, "{}", row[3]);
    }
    assert_eq!(lua(&file, "sockdump.type == \"dgram\"", &["frame.number"]).len(), 4);
}

/// Writes 1 KiB messages over a socketpair until killed.
const ENDLESS: &str = r#"
import socket, threading, time
a, b = socket.socketpair()
def drain():
    while True:
        b.recv(65536)
threading.Thread(target=drain, daemon=True).start()
print("ready", flush=True)
n = 0
while True:
    a.send(b"%08d" % n + b"x" * 1016)
    n += 1
    time.sleep(0.001)
"#;

#[test]
fn a_capture_stopped_by_sigterm_mid_stream_reads_cleanly() {
    if skip_unless_root("a_capture_stopped_by_sigterm_mid_stream_reads_cleanly") {
        return;
    }
    let dir = TempDir::new("term");
    let file = dir.join("term.pcapng");
    let mut writer = start_python(ENDLESS, &[]);
    let pid = writer.id().to_string();
    let capture =
        Sockdump::start(&["--format", "pcapng", "--pid", &pid, "-o", file.to_str().expect("utf-8")]);
    std::thread::sleep(Duration::from_millis(1500));
    let (captured, _) = capture.stop();
    let _ = writer.kill();
    let _ = writer.wait();
    assert!(captured > 50, "only {captured} messages in 1.5 s");
    // tshark() fails on any warning, e.g. a cut-short last block.
    let data = count(&file, "tcp.len > 0", &[]);
    assert_eq!(data as u64, captured, "every counted message is in the file");
    assert_eq!(count(&file, "tcp.len > 0 && !(tcp.len == 1024)", &[]), 0);
    // The statistics block at the end holds the totals.
    let info = Command::new("capinfos").arg(&file).output().expect("capinfos");
    let info = String::from_utf8_lossy(&info.stdout);
    assert!(info.contains("Number of stat entries = 1"), "{info}");
}

#[test]
fn stdout_pipe_gets_each_packet_at_once() {
    if skip_unless_root("stdout_pipe_gets_each_packet_at_once") {
        return;
    }
    let dir = TempDir::new("pipe");
    let dir_s = dir.path().to_str().expect("utf-8");
    let sock = dir.join("p.sock");
    let mut capture =
        Sockdump::start_with(&["--format", "pcapng", "--sock", dir_s, "-o", "-"], Stdio::piped());
    let mut stdout = capture.stdout().expect("piped stdout");
    let (tx, rx) = std::sync::mpsc::channel::<Vec<u8>>();
    std::thread::spawn(move || {
        let mut buf = [0u8; 65536];
        loop {
            match stdout.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if tx.send(buf[..n].to_vec()).is_err() {
                        break;
                    }
                }
            }
        }
    });
    let mut stream = Vec::new();
    let wait_for = |stream: &mut Vec<u8>, needle: &[u8], what: &str| {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !stream.windows(needle.len()).any(|w| w == needle) {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(chunk) => stream.extend(chunk),
                Err(_) => panic!("{what} did not arrive on the pipe while sockdump ran"),
            }
        }
    };
    // The section header is there before any packet.
    wait_for(&mut stream, &[0x0a, 0x0d, 0x0d, 0x0a], "the section header");
    python(
        r#"
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
c = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
c.sendto(b"first-marker", sys.argv[1])
"#,
        &[sock.to_str().expect("utf-8")],
    );
    wait_for(&mut stream, b"first-marker", "the first packet");
    let (captured, _) = capture.stop();
    while let Ok(chunk) = rx.recv_timeout(Duration::from_secs(2)) {
        stream.extend(chunk);
    }
    assert_eq!(captured, 1);
    let file = dir.join("piped.pcapng");
    std::fs::write(&file, &stream).expect("save the stream");
    assert_eq!(count(&file, "udp.payload == \"first-marker\"", &[]), 1);
}

/// A ping-pong of a few messages on a path socket and a datagram, from one
/// thread so every capture sees them in the same order.
const PINGPONG: &str = r#"
import os, socket, sys
d = sys.argv[1]
path = os.path.join(d, "pp.sock")
srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
srv.bind(path)
srv.listen(1)
print("ready", flush=True)
sys.stdin.readline()
cli = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
cli.connect(path)
conn, _ = srv.accept()
for msg in [b"PING 1\n", b"line one\nline two\n", bytes(range(256))]:
    cli.sendall(msg)
    got = conn.recv(4096)
    conn.sendall(b"PONG " + got[:8])
    cli.recv(4096)
dpath = os.path.join(d, "dg.sock")
ds = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
ds.bind(dpath)
dc = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
dc.sendto(b"\x00binary\xffdatagram", dpath)
ds.recv(100)
"#;

/// Splits text output into (header without its time, time) and data lines.
fn untimed(text: &[u8]) -> (Vec<Vec<u8>>, Vec<String>) {
    let mut lines = Vec::new();
    let mut times = Vec::new();
    for line in text.split(|&b| b == b'\n') {
        let marker = b" >>> process ";
        match line.windows(marker.len()).position(|w| w == marker) {
            Some(at) => {
                times.push(String::from_utf8_lossy(&line[..at]).into_owned());
                lines.push(line[at..].to_vec());
            }
            None => lines.push(line.to_vec()),
        }
    }
    (lines, times)
}

fn seconds_of_day(time: &str) -> f64 {
    let parts: Vec<f64> = time.split(':').map(|p| p.parse().expect("HH:MM:SS.micros")).collect();
    parts[0] * 3600.0 + parts[1] * 60.0 + parts[2]
}

#[test]
fn read_back_prints_what_a_direct_text_capture_printed() {
    if skip_unless_root("read_back_prints_what_a_direct_text_capture_printed") {
        return;
    }
    let dir = TempDir::new("rt");
    let dir_s = dir.path().to_str().expect("utf-8");
    let mut peer = start_python(PINGPONG, &[dir_s]);
    let pcapng = dir.join("rt.pcapng");
    let user = dir.join("rt-user.pcapng");
    let formats = ["hex", "string", "hexstring"];
    let mut captures = Vec::new();
    for format in formats {
        let out = dir.join(&format!("{format}.txt"));
        captures.push(Sockdump::start(&[
            "--format",
            format,
            "--sock",
            dir_s,
            "-o",
            out.to_str().expect("utf-8"),
        ]));
    }
    captures.push(Sockdump::start(&[
        "--format",
        "pcapng",
        "--sock",
        dir_s,
        "-o",
        pcapng.to_str().expect("utf-8"),
    ]));
    captures.push(Sockdump::start(&[
        "--format",
        "pcapng",
        "--link",
        "user",
        "--sock",
        dir_s,
        "-o",
        user.to_str().expect("utf-8"),
    ]));
    go(&mut peer);
    wait_success(peer, "the python ping-pong");
    for capture in captures {
        let (captured, _) = capture.stop();
        assert_eq!(captured, 7);
    }
    for format in formats {
        let direct = std::fs::read(dir.join(&format!("{format}.txt"))).expect("text capture");
        for file in [&pcapng, &user] {
            let out = Command::new(SOCKDUMP)
                .arg("-r")
                .arg(file)
                .args(["--format", format])
                .output()
                .expect("sockdump -r");
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            let (lines, times) = untimed(&out.stdout);
            let (direct_lines, direct_times) = untimed(&direct);
            assert!(
                lines == direct_lines,
                "{format} from {}:\n{}\n----\n{}",
                file.display(),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&direct)
            );
            assert_eq!(times.len(), 7);
            // Both come from the same kernel timestamp; only the two
            // processes' wall-clock offsets may differ, by microseconds.
            for (a, b) in times.iter().zip(&direct_times) {
                assert!((seconds_of_day(a) - seconds_of_day(b)).abs() < 0.001, "{a} vs {b}");
            }
        }
    }
    // A binary datagram and the abstract-free paths survive in the comments.
    let rows = fields(&pcapng, "udp", &["frame.comment"], &[]);
    assert_eq!(rows.len(), 1);
    assert!(rows[0][0].contains(&format!("peer_path={dir_s}/dg.sock ")), "{}", rows[0][0]);
    let _ = tshark(&["-r", pcapng.to_str().expect("utf-8"), "-q"]);
}
