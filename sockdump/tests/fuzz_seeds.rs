//! The fuzzers' seed corpus (`fuzz/corpus/TARGET/`): inputs sockdump's own
//! writers make, so that fuzzing starts from files, records and comments
//! that decode all the way. `UPDATE_FUZZ_SEEDS=1 cargo test --test
//! fuzz_seeds` writes them; without it the test checks that every seed in
//! the corpus still gets through its target's decoder.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sockdump::clock::WallClock;
use sockdump::output::framing::{Link, PortMap};
use sockdump::output::pcap::PcapSink;
use sockdump::output::pcapng::PcapngSink;
use sockdump::output::{Sink, SinkOptions, Stats};
use sockdump::read::CaptureFileReader;
use sockdump_common::abi::{self, Field};
use sockdump_common::meta::{
    parse_comment, write_comment, write_synthetic_comment, MessageMeta, Part, Synthetic,
};
use sockdump_common::{
    Comm, Container, Context, Event, EventFlags, ProcRecord, ProcessFacts, ReadRecord, Reader, SockType,
    SocketName,
};

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus")
}

/// A D-Bus method call (to `/a`, with `body` bytes), little-endian.
fn dbus_message(serial: u32, body: usize) -> Vec<u8> {
    let mut m = vec![b'l', 1, 0, 1];
    m.extend_from_slice(&(body as u32).to_le_bytes());
    m.extend_from_slice(&serial.to_le_bytes());
    let mut field = vec![1u8, 1, b'o', 0];
    field.extend_from_slice(&2u32.to_le_bytes());
    field.extend_from_slice(b"/a\0");
    m.extend_from_slice(&(field.len() as u32).to_le_bytes());
    m.extend_from_slice(&field);
    m.resize(m.len().next_multiple_of(8), 0);
    m.extend((0..body).map(|i| i as u8));
    m
}

struct Data {
    request: Vec<u8>,
    large: Vec<u8>,
    hello: Vec<u8>,
    reply: Vec<u8>,
}

fn data() -> Data {
    Data {
        request: b"GET /v1.43/containers/json HTTP/1.1\r\nHost: docker\r\n\r\n".to_vec(),
        large: (0..3000u32).map(|i| (i % 251) as u8).collect(),
        hello: [b"BEGIN\r\n".as_slice(), &dbus_message(1, 0)].concat(),
        reply: dbus_message(2, 8),
    }
}

/// A conversation with every kind of detail: an HTTP request with its
/// reader, sender and container, the reply, a message split over packets,
/// a datagram to an abstract name, and a D-Bus connection.
fn events(d: &Data) -> Vec<Event<'_>> {
    let request = Event {
        timestamp_ns: 1_000_000_000,
        sock_ino: 4242,
        peer_ino: 4243,
        pid: 1200,
        tid: 1201,
        peer_pid: 900,
        len: d.request.len() as u32,
        sock_type: SockType::Stream,
        flags: EventFlags(0),
        comm: b"curl",
        path: SocketName::Unnamed,
        peer_path: SocketName::Path(b"/run/docker.sock"),
        data: &d.request,
        rx_sock: 0,
        rx_pos: 0,
        reader: Reader::Thread {
            pid: 901,
            tid: 907,
            comm: Comm::new(b"dockerd"),
            others: 1,
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
            args: Some(Arc::from("curl --unix-socket /run/docker.sock http://x/v1.43/containers/json")),
            container: Some(Arc::new(Container {
                id: "4f1c2b3a".repeat(8),
                name: Some("web".into()),
                image: Some("nginx:1.25".into()),
                pod: None,
                namespace: None,
            })),
            reader_args: Some(Arc::from("/usr/bin/dockerd -H fd://")),
            reader_container: None,
        },
    };
    let reply = Event {
        timestamp_ns: 1_000_500_000,
        sock_ino: 4243,
        peer_ino: 4242,
        pid: 900,
        tid: 907,
        peer_pid: 1200,
        comm: b"dockerd",
        path: SocketName::Path(b"/run/docker.sock"),
        peer_path: SocketName::Unnamed,
        data: b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n[]",
        len: 41,
        reader: Reader::NotSeen,
        process: None,
        context: Context::default(),
        ..request.clone()
    };
    let split = Event {
        timestamp_ns: 1_001_000_000,
        data: &d.large,
        len: 5000,
        flags: EventFlags(abi::flag::TRUNC_SIZE),
        ..request.clone()
    };
    let datagram = Event {
        timestamp_ns: 1_002_000_000,
        sock_ino: 7000,
        peer_ino: 0,
        peer_pid: 0,
        sock_type: SockType::Dgram,
        flags: EventFlags(abi::flag::PEER_IS_DEST),
        comm: b"logger",
        peer_path: SocketName::Abstract(b"journal\0x"),
        data: b"<13>hello",
        len: 9,
        reader: Reader::Unknown,
        ..request.clone()
    };
    let dbus = |at: u64, sock_ino: u64, peer_ino: u64, data: &'static [u8]| Event {
        timestamp_ns: 1_003_000_000 + at,
        sock_ino,
        peer_ino,
        path: if sock_ino == 8001 {
            SocketName::Path(b"/run/dbus/system_bus_socket")
        } else {
            SocketName::Unnamed
        },
        peer_path: if sock_ino == 8000 {
            SocketName::Path(b"/run/dbus/system_bus_socket")
        } else {
            SocketName::Unnamed
        },
        data,
        len: data.len() as u32,
        reader: Reader::Unknown,
        ..request.clone()
    };
    let mut all = vec![
        request.clone(),
        reply,
        split,
        datagram,
        dbus(0, 8000, 8001, b"\0"),
        dbus(1, 8000, 8001, b"AUTH EXTERNAL 30\r\n"),
        dbus(2, 8001, 8000, b"OK 1234deadbeef1234deadbeef1234de\r\n"),
    ];
    all.push(Event { data: &d.hello, len: d.hello.len() as u32, ..dbus(3, 8000, 8001, b"") });
    all.push(Event { data: &d.reply, len: d.reply.len() as u32, ..dbus(4, 8001, 8000, b"") });
    all
}

fn options(link: Link) -> SinkOptions {
    SinkOptions {
        link,
        ports: PortMap::default(),
        clock: WallClock::with_offset(1_700_000_000_000_000_000),
        flush_each: false,
        filter: Some("--sock /run".into()),
    }
}

fn written<S: Sink>(mut sink: S, events: &[Event<'_>]) -> S {
    sink.begin().expect("header");
    for event in events {
        sink.write_event(event).expect("encode");
    }
    sink.finish(&Stats { captured: events.len() as u64, lost: Some(2) }).expect("finish");
    sink
}

/// A ring buffer record of `event`, laid out as `sockdump_abi.h` says.
fn event_record(event: &Event<'_>, cut_at: u32) -> Vec<u8> {
    let mut r = vec![0u8; abi::event::SIZE];
    let mut put =
        |field: Field, bytes: &[u8]| r[field.offset..field.offset + bytes.len()].copy_from_slice(bytes);
    use abi::event as at;
    let name = |name: SocketName<'_>| match name {
        SocketName::Unnamed => Vec::new(),
        SocketName::Path(p) => p.to_vec(),
        SocketName::Abstract(n) => [&[0u8][..], n].concat(),
    };
    let (path, peer_path) = (name(event.path), name(event.peer_path));
    let data = &event.data[..event.data.len().min(cut_at as usize)];
    put(at::TIMESTAMP_NS, &event.timestamp_ns.to_ne_bytes());
    put(at::SOCK_INO, &event.sock_ino.to_ne_bytes());
    put(at::PEER_INO, &event.peer_ino.to_ne_bytes());
    put(at::PID, &event.pid.to_ne_bytes());
    put(at::TID, &event.tid.to_ne_bytes());
    put(at::PEER_PID, &event.peer_pid.to_ne_bytes());
    put(at::LEN, &event.len.to_ne_bytes());
    put(at::CAPTURED, &(data.len() as u32).to_ne_bytes());
    put(at::SOCK_TYPE, &event.sock_type.raw().to_ne_bytes());
    put(at::FLAGS, &event.flags.0.to_ne_bytes());
    put(at::PATH_LEN, &[path.len() as u8]);
    put(at::PEER_PATH_LEN, &[peer_path.len() as u8]);
    put(at::COMM, event.comm);
    put(at::PATH, &path);
    put(at::PEER_PATH, &peer_path);
    put(at::RX_SOCK, &0xffff_8881_0000_1000u64.to_ne_bytes());
    put(at::RX_POS, &70_000u64.to_ne_bytes());
    if let Some(p) = event.process {
        put(at::UID, &p.uid.to_ne_bytes());
        put(at::GID, &p.gid.to_ne_bytes());
        put(at::PPID, &p.ppid.to_ne_bytes());
        put(at::CGROUP_ID, &p.cgroup_id.to_ne_bytes());
        put(at::PARENT_COMM, p.parent_comm.as_bytes());
    }
    r.extend_from_slice(data);
    r
}

fn read_record() -> Vec<u8> {
    use abi::read as at;
    let mut r = vec![0u8; at::SIZE];
    let mut put =
        |field: Field, bytes: &[u8]| r[field.offset..field.offset + bytes.len()].copy_from_slice(bytes);
    put(at::TIMESTAMP_NS, &1_000_200_000u64.to_ne_bytes());
    put(at::RX_SOCK, &0xffff_8881_0000_1000u64.to_ne_bytes());
    put(at::POS, &70_000u64.to_ne_bytes());
    put(at::UNITS, &52u32.to_ne_bytes());
    put(at::PID, &901u32.to_ne_bytes());
    put(at::TID, &907u32.to_ne_bytes());
    put(at::COMM, b"dockerd");
    put(at::CGROUP_ID, &1u64.to_ne_bytes());
    r
}

/// An exec record with its cgroup names (innermost first) and arguments,
/// or a fork record.
fn proc_record(exec: Option<(&[&str], &[u8])>) -> Vec<u8> {
    use abi::proc as at;
    let size = if exec.is_some() { abi::exec::ARGS.offset } else { at::SIZE };
    let mut r = vec![0u8; size];
    let put = |r: &mut Vec<u8>, field: Field, bytes: &[u8]| {
        r[field.offset..field.offset + bytes.len()].copy_from_slice(bytes)
    };
    put(&mut r, at::TIMESTAMP_NS, &999_000_000u64.to_ne_bytes());
    put(&mut r, at::PID, &1200u32.to_ne_bytes());
    put(&mut r, at::PPID, &1100u32.to_ne_bytes());
    match exec {
        None => put(&mut r, at::KIND, &abi::proc_kind::FORK.to_ne_bytes()),
        Some((cgroups, args)) => {
            put(&mut r, at::KIND, &abi::proc_kind::EXEC.to_ne_bytes());
            put(&mut r, at::ARGS_LEN, &(args.len() as u32).to_ne_bytes());
            put(&mut r, at::CGROUP_ID, &5000u64.to_ne_bytes());
            for (i, name) in cgroups.iter().enumerate() {
                let at = abi::exec::CGROUP.offset + i * abi::CGROUP_NAME_MAX;
                r[at..at + name.len()].copy_from_slice(name.as_bytes());
            }
            r.extend_from_slice(args);
        }
    }
    r
}

/// Arguments as the extcap target takes them: separated by NUL bytes.
fn argv(args: &[&str]) -> Vec<u8> {
    args.join("\0").into_bytes()
}

/// Every seed, by target and name.
fn seeds() -> Vec<(&'static str, &'static str, Vec<u8>)> {
    let d = data();
    let evs = events(&d);
    let pcapng = |link| PcapngSink::new(Vec::new(), options(link));
    let mut seeds = vec![
        ("read", "pcapng-ethernet", written(pcapng(Link::Ethernet), &evs).into_inner()),
        ("read", "pcapng-user0", written(pcapng(Link::User), &evs[..4]).into_inner()),
        (
            "read",
            "pcap-user0",
            written(PcapSink::new(Vec::new(), options(Link::User)), &evs[..4]).into_inner(),
        ),
        ("event", "message-stream", event_record(&evs[0], u32::MAX)),
        ("event", "message-truncated", event_record(&evs[2], 200)),
        ("event", "message-dgram-abstract", event_record(&evs[3], u32::MAX)),
        ("event", "read", read_record()),
        (
            "event",
            "exec",
            proc_record(Some((&["web.scope", "docker", ""], b"curl\0--unix-socket\0/run/docker.sock\0x\0"))),
        ),
        ("event", "fork", proc_record(None)),
    ];
    let comment = |event: &Event<'_>, part| {
        let mut out = String::new();
        write_comment(&mut out, &MessageMeta::of(event), part);
        out.into_bytes()
    };
    let mut synthetic = String::new();
    write_synthetic_comment(&mut synthetic, Synthetic::Handshake);
    seeds.extend([
        ("comment", "request", comment(&evs[0], None)),
        ("comment", "reply-unread", comment(&evs[1], None)),
        ("comment", "split-part", comment(&evs[2], Some(Part { index: 2, count: 3 }))),
        ("comment", "dgram-abstract", comment(&evs[3], None)),
        ("comment", "handshake", synthetic.into_bytes()),
    ]);
    let extcap = [
        ("interfaces", &["--extcap-interfaces", "--extcap-version=4.0.17"][..]),
        ("dlts", &["--extcap-dlts", "--extcap-interface", "sockdump"]),
        ("config", &["--extcap-config", "--extcap-interface", "sockdump"]),
        (
            "reload",
            &["--extcap-config", "--extcap-interface=sockdump", "--extcap-reload-option", "container"],
        ),
        (
            "filter-check",
            &["--extcap-capture-filter", "pid 1 and comm curl", "--extcap-interface", "sockdump"],
        ),
        (
            "capture",
            &[
                "--capture",
                "--extcap-interface",
                "sockdump",
                "--fifo",
                "/tmp/wireshark_extcap_sockdump_1",
                "--extcap-capture-filter",
                "sock /run/docker.sock",
                "--extcap-control-in",
                "/tmp/in",
                "--extcap-control-out",
                "/tmp/out",
                "--hook",
                "auto",
                "--seg-size",
                "65536",
                "--port-map",
                "/srv/pg=5432,/run/x=80",
                "--container",
                "",
                "--all-users",
                "--include-viewer",
            ],
        ),
    ];
    seeds.extend(extcap.map(|(name, args)| ("extcap_args", name, argv(args))));
    let filters = [
        ("all-terms", "pid 12 and sock /run/a b.sock && comm curl"),
        ("abstract", "sock @/tmp/.X11-unix/X0"),
        ("comm", "comm postgres"),
    ];
    seeds.extend(filters.map(|(name, filter)| ("capture_filter", name, filter.as_bytes().to_vec())));
    seeds
}

/// Whether `seed` gets through `target`'s decoder without an error.
fn decodes(target: &str, name: &str, seed: &[u8]) -> Result<(), String> {
    let show = |e: &dyn std::fmt::Display| e.to_string();
    match target {
        "read" => {
            let mut reader = CaptureFileReader::new(seed).map_err(|e| show(&e))?;
            let mut messages = 0;
            while reader.next_message().map_err(|e| show(&e))?.is_some() {
                messages += 1;
            }
            (messages > 0 && reader.incomplete() == 0).then_some(()).ok_or("no whole messages".into())
        }
        // the three rings' records, told apart by the seed's name
        "event" if name.starts_with("message") => Event::parse(seed).map(drop).map_err(|e| show(&e)),
        "event" if name == "read" => ReadRecord::parse(seed).map(drop).map_err(|e| show(&e)),
        "event" => ProcRecord::parse(seed).map(drop).map_err(|e| show(&e)),
        "comment" => std::str::from_utf8(seed)
            .map_err(|e| show(&e))
            .and_then(|c| parse_comment(c).map(drop).map_err(|e| show(&e))),
        "extcap_args" => {
            let args: Vec<OsString> =
                seed.split(|&b| b == 0).map(|a| OsString::from_vec(a.to_vec())).collect();
            sockdump_extcap::parse(&args).map(drop).map_err(|e| show(&e))
        }
        "capture_filter" => std::str::from_utf8(seed)
            .map_err(|e| show(&e))
            .and_then(|f| sockdump_extcap::filter::to_options(f).map(drop).map_err(|e| show(&e))),
        other => Err(format!("no target {other}")),
    }
}

#[test]
fn seeds_decode_and_are_in_the_corpus() {
    let update = std::env::var_os("UPDATE_FUZZ_SEEDS").is_some();
    for (target, name, seed) in seeds() {
        decodes(target, name, &seed).unwrap_or_else(|e| panic!("seed {target}/{name}: {e}"));
        let path = corpus().join(target).join(name);
        if update {
            std::fs::create_dir_all(path.parent().expect("a folder")).expect("corpus folder");
            std::fs::write(&path, &seed).expect("write the seed");
        }
        assert!(path.exists(), "{} missing: run with UPDATE_FUZZ_SEEDS=1", path.display());
    }
}
