//! `--format json`: JSON lines of real traffic, live and from a pcapng file
//! with `-r`, parsed and compared byte for byte. Needs root (eBPF) and
//! python3.

mod common;

use std::path::Path;
use std::process::Stdio;

use base64::Engine;
use common::{one_line_error, python, read_all, skip_unless_root, sockdump, Sockdump, TempDir};
use serde_json::Value;

/// In a directory (`argv[1]`): datagrams from an unbound socket to `d`,
/// then a stream connection to `s` and its reply, each read before the
/// next is sent; prints its pid. Must match [`sent`].
const SEND: &str = r#"
import os, socket, sys
d, s = os.path.join(sys.argv[1], "d"), os.path.join(sys.argv[1], "s")
rx = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
rx.bind(d)
tx = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
for message in [b"hello json\n", b"\xff\x00\xc3\x28\x7f\x1b[2J", bytes(range(256)) * 2]:
    tx.sendto(message, d)
    rx.recv(1000)
server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
server.bind(s)
server.listen()
client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
client.connect(s)
accepted, _ = server.accept()
client.sendall(b"ping \xc3")
accepted.recv(1000)
accepted.sendall("pong \u009b\u00e9".encode())
client.recv(1000)
print(os.getpid())
"#;

/// What SEND sends, in order: the bytes, and whether the unbound socket
/// sent them to `d`, the stream's client to `s`, or the server's end back.
fn sent() -> [(Vec<u8>, From); 5] {
    [
        (b"hello json\n".to_vec(), From::Datagram),
        (b"\xff\x00\xc3\x28\x7f\x1b[2J".to_vec(), From::Datagram),
        ((0..=255u8).chain(0..=255).collect(), From::Datagram),
        (b"ping \xc3".to_vec(), From::Client),
        ("pong \u{9b}\u{e9}".as_bytes().to_vec(), From::Server),
    ]
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum From {
    Datagram,
    Client,
    Server,
}

const SEG_SIZE: usize = 100;

fn lines(bytes: &[u8]) -> Vec<Value> {
    let text = std::str::from_utf8(bytes).expect("JSON lines are UTF-8");
    text.lines().map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"))).collect()
}

/// Each object holds the exact bytes (the first SEG_SIZE of the long one)
/// and what the kernel said of them.
fn check(objects: &[Value], pid: u64, dir: &Path) {
    assert_eq!(objects.len(), sent().len(), "{objects:#?}");
    let (d, s) = (dir.join("d"), dir.join("s"));
    for (object, (sent, from)) in objects.iter().zip(sent()) {
        let data =
            base64::engine::general_purpose::STANDARD.decode(object["data"].as_str().unwrap()).unwrap();
        let captured = sent.len().min(SEG_SIZE);
        assert_eq!(data, sent[..captured], "{object}");
        assert_eq!(object["len"].as_u64(), Some(sent.len() as u64), "{object}");
        assert_eq!(object["captured"].as_u64(), Some(captured as u64), "{object}");
        assert_eq!(object["truncated"].as_bool(), Some(captured < sent.len()), "{object}");
        let mut flags = Vec::new();
        if captured < sent.len() {
            flags.push("trunc_size");
        }
        if from == From::Datagram {
            flags.push("peer_is_dest");
        }
        let no_flags = Value::Array(Vec::new());
        assert_eq!(object.get("flags").unwrap_or(&no_flags), &serde_json::json!(flags), "{object}");
        assert_eq!(
            object["text"].as_str().map(str::as_bytes),
            std::str::from_utf8(&data).ok().map(str::as_bytes),
            "{object}"
        );
        assert_eq!(
            (object["pid"].as_u64(), object["tid"].as_u64(), object["comm"].as_str()),
            (Some(pid), Some(pid), Some("python3")),
            "{object}"
        );
        let (kind, path, peer_path, peer_pid) = match from {
            From::Datagram => ("dgram", "", d.to_str().unwrap(), 0),
            From::Client => ("stream", "", s.to_str().unwrap(), pid),
            From::Server => ("stream", s.to_str().unwrap(), "", pid),
        };
        assert_eq!(object["type"], kind, "{object}");
        assert_eq!((object["path"].as_str(), object["peer_path"].as_str()), (Some(path), Some(peer_path)));
        assert_eq!(object["peer_pid"].as_u64(), Some(peer_pid), "SO_PEERCRED: {object}");
        assert!(object["uid"].as_u64() == Some(0) && object["ppid"].as_u64().is_some(), "{object}");
        let time = object["time"].as_str().unwrap_or_default();
        assert!(time.ends_with('Z') && time.len() == 30, "{object}");
        // the reader, where reads are seen, is the sender itself
        if let Some(reader) = object.get("reader").filter(|r| !r.is_null()) {
            assert_eq!((reader["pid"].as_u64(), reader["comm"].as_str()), (Some(pid), Some("python3")));
        }
    }
    // the long one's first 100 bytes are ASCII
    let texts: Vec<bool> = objects.iter().map(|o| o.get("text").is_some()).collect();
    assert_eq!(texts, [true, false, true, false, true]);
}

/// An object without what two captures of one message may differ in: the
/// time (each took its own timestamp) and the reader (seen in time or not).
fn without_time_and_reader(object: &Value) -> Value {
    let mut object = object.clone();
    let map = object.as_object_mut().expect("an object");
    for key in ["time", "time_ns", "reader"] {
        map.remove(key);
    }
    object
}

#[test]
fn json_lines_live_and_from_a_file() {
    if skip_unless_root("json_lines_live_and_from_a_file") {
        return;
    }
    let dir = TempDir::new("json");
    let file = dir.join("cap.pcapng");
    let prefix = format!("{}/", dir.path().display());
    let seg_size = SEG_SIZE.to_string();
    let count = sent().len().to_string();
    let common = ["--sock", &prefix, "--seg-size", &seg_size, "-c", &count];
    let mut live = Sockdump::start_with(&[&["--format", "json"][..], &common].concat(), Stdio::piped());
    let stdout = live.stdout().expect("piped stdout");
    let reader = std::thread::spawn(move || read_all(stdout));
    let to_file = Sockdump::start(&[&["-w", file.to_str().unwrap()][..], &common].concat());
    let out = python(SEND, &[dir.path().to_str().unwrap()]);
    let pid = String::from_utf8_lossy(&out.stdout).trim().parse().expect("python's pid");
    live.wait();
    to_file.wait();
    let live = lines(&reader.join().unwrap());
    check(&live, pid, dir.path());

    let replay = sockdump(&["-r", file.to_str().unwrap(), "--format", "json"]);
    assert!(replay.status.success(), "{replay:?}");
    let replay = lines(&replay.stdout);
    check(&replay, pid, dir.path());
    for (live, replay) in live.iter().zip(&replay) {
        assert_eq!(without_time_and_reader(live), without_time_and_reader(replay));
        let apart = live["time_ns"].as_i64().unwrap().abs_diff(replay["time_ns"].as_i64().unwrap());
        assert!(apart < 1_000_000_000, "one send, two captures {apart} ns apart: {live} {replay}");
    }
}

/// JSON is text: the pcap-only options are refused, and -w asks for -o.
#[test]
fn options_for_capture_files_only() {
    for (args, says) in [
        (&["--format", "json", "--link", "user"][..], "--link applies to --format pcap and pcapng only"),
        (&["--format", "json", "--port-map", "/x=80"], "--port-map applies to --format pcap and pcapng only"),
        (&["--format", "json", "-w", "/nonexistent/x"], "for --format json give -o FILE"),
    ] {
        let err = one_line_error(&sockdump(args));
        assert!(err.contains(says), "{args:?}: {err}");
    }
}

/// Counts this thread's allocations (tests run on threads of their own).
struct Counting;

thread_local! {
    static ALLOCATIONS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

// SAFETY: forwards to the system allocator, only counting calls
unsafe impl std::alloc::GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        ALLOCATIONS.with(|n| n.set(n.get() + 1));
        unsafe { std::alloc::System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        unsafe { std::alloc::System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, size: usize) -> *mut u8 {
        ALLOCATIONS.with(|n| n.set(n.get() + 1));
        unsafe { std::alloc::System.realloc(ptr, layout, size) }
    }
}

#[global_allocator]
static COUNTING: Counting = Counting;

/// Once its buffers have grown, the sink allocates nothing per message,
/// whatever the message holds.
#[test]
fn no_allocation_per_message() {
    use sockdump::clock::WallClock;
    use sockdump::output::{json::JsonSink, Sink};
    use sockdump_common::{
        abi::flag, Comm, Context, Event, EventFlags, ProcessFacts, Reader, SockType, SocketName,
    };

    let data: Vec<u8> = (0..=255u8).cycle().take(5000).collect();
    let context = Context { args: Some("python3 -c 'x'".into()), ..Context::NONE };
    let event = Event {
        timestamp_ns: 1,
        sock_ino: 1,
        peer_ino: 2,
        pid: 3,
        tid: 4,
        peer_pid: 5,
        len: 9000,
        sock_type: SockType::Other(9),
        flags: EventFlags(flag::TRUNC_SIZE | flag::PEER_IS_DEST),
        comm: b"\x1b\xffname\x7f",
        path: SocketName::Abstract(b"abs\0\xc2\x9b"),
        peer_path: SocketName::Path(b"@relative\xfe"),
        data: &data,
        rx_sock: 0,
        rx_pos: 0,
        reader: Reader::Thread {
            pid: 6,
            tid: 7,
            comm: Comm::new(b"r\xff"),
            others: 2,
            uid: Some(0),
            cgroup_id: 8,
        },
        process: Some(ProcessFacts {
            uid: 1,
            gid: 2,
            ppid: 3,
            parent_comm: Comm::new(b"sh\x9b"),
            cgroup_id: 4,
        }),
        context,
    };
    let utf8 = Event { data: b"GET / HTTP/1.1\r\n\x7f", flags: EventFlags::default(), ..event.clone() };
    let mut sink = JsonSink::new(std::io::sink(), WallClock::with_offset(1_795_716_000_000_000_000), true);
    for event in [&event, &utf8] {
        sink.write_event(event).unwrap();
        let before = ALLOCATIONS.with(|n| n.get());
        for _ in 0..100 {
            sink.write_event(event).unwrap();
        }
        assert_eq!(ALLOCATIONS.with(|n| n.get()) - before, 0, "allocations for 100 messages");
    }
}
