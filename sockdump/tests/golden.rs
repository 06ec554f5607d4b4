//! Recorded events in, exact text out, for every text format. Regenerate the
//! expected files with `UPDATE_GOLDEN=1 cargo test --test golden` after an
//! intended change, and review the diff.

use std::path::PathBuf;

use sockdump::clock::{WallClock, Zone};
use sockdump::output::text::{Controls, TextSink, TextStyle};
use sockdump::output::{Sink, Stats};
use std::sync::Arc;

use sockdump_common::{
    Comm, Container, Context, Event, EventFlags, ProcessFacts, Reader, SockType, SocketName,
};

/// A fixed set of events covering every header variant.
fn events() -> Vec<Event<'static>> {
    let base = Event {
        timestamp_ns: 1_000_000_000,
        sock_ino: 4242,
        peer_ino: 4243,
        pid: 1200,
        tid: 1201,
        peer_pid: 900,
        len: 78,
        sock_type: SockType::Stream,
        flags: EventFlags(0),
        comm: b"curl",
        path: SocketName::Unnamed,
        peer_path: SocketName::Path(b"/run/docker.sock"),
        data: b"GET /v1.43/containers/json HTTP/1.1\r\nHost: docker\r\nUser-Agent: curl/7.88.1\r\n\r\n",
        rx_sock: 0,
        rx_pos: 0,
        // a capture that does not see reads: SO_PEERCRED's pid, marked
        reader: Reader::Unknown,
        process: None,
        context: Default::default(),
    };
    vec![
        // a client request, shown under the server's path, read by a
        // daemon thread SO_PEERCRED does not name
        // from a container, whose name holds an escape sequence
        Event {
            len: 78,
            reader: Reader::Thread {
                pid: 901,
                tid: 907,
                comm: Comm::new(b"dockerd"),
                others: 0,
                uid: Some(0),
                cgroup_id: 1,
            },
            process: Some(ProcessFacts {
                uid: 1000,
                gid: 1000,
                ppid: 1100,
                parent_comm: Comm::new(b"bash"),
                cgroup_id: 5000,
            }),
            context: Context {
                args: Some(Arc::from("curl --unix-socket /run/docker.sock http://d/v1.43/containers/json")),
                container: Some(Arc::new(Container {
                    id: "0123456789ab".repeat(5) + "cdef",
                    name: Some("web\x1b[2J".into()),
                    image: Some("nginx".into()),
                    pod: None,
                    namespace: None,
                })),
                reader_args: Some(Arc::from("dockerd -H fd://")),
                reader_container: None,
            },
            ..base.clone()
        },
        // the server's reply from its own bound socket
        Event {
            timestamp_ns: 1_000_250_000,
            pid: 900,
            tid: 901,
            peer_pid: 1200,
            comm: b"dockerd",
            path: SocketName::Path(b"/run/docker.sock"),
            peer_path: SocketName::Unnamed,
            len: 17,
            data: b"HTTP/1.1 200 OK\r\n",
            // read in parts by two threads
            reader: Reader::Thread {
                pid: 1200,
                tid: 1201,
                comm: Comm::new(b"curl"),
                others: 1,
                uid: None,
                cgroup_id: 0,
            },
            ..base.clone()
        },
        // a socketpair: no names, shown by inode; binary bytes
        Event {
            timestamp_ns: 2_500_000_001,
            path: SocketName::Unnamed,
            peer_path: SocketName::Unnamed,
            len: 20,
            data: &[
                0, 1, 2, 0x7f, 0x80, 0xff, b'a', b' ', b'~', 9, 10, 13, 0x1b, 0x41, 0x42, 0x43, 0x44, 0x45,
                0x46, 0x47,
            ],
            ..base.clone()
        },
        // an unconnected datagram: the destination is shown, no peer pid
        Event {
            sock_type: SockType::Dgram,
            peer_pid: 0,
            peer_ino: 0,
            comm: b"logger",
            flags: EventFlags(sockdump_common::abi::flag::PEER_IS_DEST),
            path: SocketName::Path(b"/tmp/client.sock"),
            peer_path: SocketName::Path(b"/dev/log"),
            len: 10,
            data: b"<13>hello\n",
            // nobody read it in time, and there is no SO_PEERCRED pid
            reader: Reader::NotSeen,
            ..base.clone()
        },
        // an abstract name with a NUL inside, cut by --seg-size and --segs-per-msg
        Event {
            sock_type: SockType::SeqPacket,
            comm: b"dbus-daemon",
            flags: EventFlags(
                sockdump_common::abi::flag::TRUNC_SIZE | sockdump_common::abi::flag::TRUNC_SEGS,
            ),
            path: SocketName::Abstract(b"/tmp/dbus-x\0y"),
            len: 100_000,
            data: b"l\x01\x00\x01\x08\x00\x00\x00",
            ..base.clone()
        },
        // bytes the kernel could not give (sendfile): nothing captured
        Event { flags: EventFlags(sockdump_common::abi::flag::UNREADABLE), len: 4096, data: b"", ..base },
    ]
}

fn render(style: TextStyle) -> Vec<u8> {
    let mut sink = TextSink::new(
        Vec::new(),
        style,
        Controls::Raw,
        WallClock::with_offset(1_764_071_744_000_000_000),
        Zone::Utc,
    );
    for event in events() {
        sink.write_event(&event).unwrap();
    }
    sink.finish(&Stats::default()).unwrap();
    sink.into_inner()
}

fn check(style: TextStyle, file: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden").join(file);
    let actual = render(style);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &actual).unwrap();
    }
    let expected = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(
        actual == expected,
        "{file} differs (UPDATE_GOLDEN=1 regenerates it):\n{}",
        String::from_utf8_lossy(&actual)
    );
}

#[test]
fn hex() {
    check(TextStyle::Hex, "text-hex.txt");
}

#[test]
fn string() {
    check(TextStyle::String, "text-string.txt");
}

#[test]
fn hexstring() {
    check(TextStyle::Hexstring, "text-hexstring.txt");
}
