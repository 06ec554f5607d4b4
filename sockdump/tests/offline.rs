//! pcap/pcapng output and `-r` checked with tshark on recorded (synthetic)
//! events: deterministic, no root needed. Needs tshark (and editcap, which
//! comes with it).

mod common;

use std::path::Path;
use std::process::Command;

use common::{count, fields, follow_tcp, lua_plugin, TempDir, SOCKDUMP};
use sockdump::clock::{WallClock, Zone};
use sockdump::output::framing::{Link, PortMap, PortMapEntry};
use sockdump::output::pcap::PcapSink;
use sockdump::output::pcapng::PcapngSink;
use sockdump::output::text::{Controls, TextSink, TextStyle};
use sockdump::output::{Sink, SinkOptions, Stats};
use sockdump_common::{abi, Event, EventFlags, SockType, SocketName};

/// 2023-11-14 22:13:20 UTC, as the offset from the recorded monotonic times.
const EPOCH_OFFSET: i128 = 1_700_000_000_000_000_000;

const HTTP_REQUEST: &[u8] = b"GET /info HTTP/1.1\r\nHost: x\r\nUser-Agent: t\r\n\r\n";
const HTTP_HEAD: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 11\r\n\r\n";
const HTTP_BODY: &[u8] = b"hello world";
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00";
const PG_STARTUP: &[u8] = b"\x00\x00\x00\x17\x00\x03\x00\x00user\x00postgres\x00\x00";
const REDIS_PING: &[u8] = b"*1\r\n$4\r\nPING\r\n";
const SYSLOG: &[u8] = b"<13>Nov 14 22:13:20 myhost test: hello syslog";

struct Recorded {
    bulk_client: Vec<Vec<u8>>,
    bulk_server: Vec<Vec<u8>>,
}

fn recorded() -> Recorded {
    let pattern = |n: usize, seed: u8| -> Vec<u8> {
        (0..n).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
    };
    Recorded {
        bulk_client: vec![pattern(100, 1), pattern(65536, 2), pattern(3, 3)],
        bulk_server: vec![pattern(65536, 4), pattern(7, 5)],
    }
}

#[allow(clippy::too_many_arguments)]
fn ev<'a>(
    t: u64,
    pid: u32,
    comm: &'a [u8],
    (ino, path): (u64, SocketName<'a>),
    (peer_ino, peer_path): (u64, SocketName<'a>),
    sock_type: SockType,
    data: &'a [u8],
    len: u32,
) -> Event<'a> {
    let mut flags = 0;
    if (data.len() as u32) < len {
        flags |= abi::flag::TRUNC_SIZE;
    }
    Event {
        timestamp_ns: t,
        sock_ino: ino,
        peer_ino,
        pid,
        tid: pid + 1,
        peer_pid: if pid == 100 { 200 } else { 100 },
        len,
        sock_type,
        flags: EventFlags(flags),
        comm,
        path,
        peer_path,
        data,
        rx_sock: 0,
        rx_pos: 0,
        reader: sockdump_common::Reader::Unknown,
        process: None,
        context: Default::default(),
    }
}

const UNNAMED: SocketName<'static> = SocketName::Unnamed;
const APP: SocketName<'static> = SocketName::Path(b"/run/app with space=1.sock");
const BULK: SocketName<'static> = SocketName::Path(b"/run/bulk.sock");
const CUT: SocketName<'static> = SocketName::Path(b"/run/cut.sock");
const DEVLOG: SocketName<'static> = SocketName::Path(b"/dev/log");
const NOTIFY: SocketName<'static> = SocketName::Abstract(b"notify\0x");
const CONTAINERD: SocketName<'static> = SocketName::Path(b"/run/containerd/containerd.sock");
const PGSQL: SocketName<'static> = SocketName::Path(b"/run/postgresql/.s.PGSQL.5432");
const REDIS: SocketName<'static> = SocketName::Path(b"/run/redis/redis-server.sock");

/// Every kind of conversation, in time order. pid 100 is the client
/// (`curl`), pid 200 the server (`server`).
fn events(r: &Recorded) -> Vec<Event<'_>> {
    use SockType::*;
    let c = |ino| (ino, UNNAMED);
    let mut t = 1_000_000_000u64;
    let mut next = || {
        t += 1_234_567;
        t
    };
    let mut out = vec![
        ev(next(), 100, b"curl", c(1000), (0, APP), Stream, HTTP_REQUEST, HTTP_REQUEST.len() as u32),
        ev(next(), 200, b"server", (1001, APP), c(1000), Stream, HTTP_HEAD, HTTP_HEAD.len() as u32),
        ev(next(), 200, b"server", (1001, APP), c(1000), Stream, HTTP_BODY, HTTP_BODY.len() as u32),
    ];
    let (mut ci, mut si) = (r.bulk_client.iter(), r.bulk_server.iter());
    // Interleaved writes in both directions of one stream.
    for turn in [true, false, true, true, false] {
        let e = if turn {
            let d = ci.next().expect("client writes");
            ev(next(), 100, b"bulk", c(2000), (2001, BULK), Stream, d, d.len() as u32)
        } else {
            let d = si.next().expect("server writes");
            ev(next(), 200, b"server", (2001, BULK), c(2000), Stream, d, d.len() as u32)
        };
        out.push(e);
    }
    out.extend([
        // 10 of 5000 bytes captured, then a short message.
        ev(next(), 100, b"curl", c(3000), (3001, CUT), Stream, b"0123456789", 5000),
        ev(next(), 100, b"curl", c(3000), (3001, CUT), Stream, b"next", 4),
        ev(next(), 100, b"logger", c(4000), (0, DEVLOG), Dgram, SYSLOG, SYSLOG.len() as u32),
        ev(next(), 100, b"notify", c(4001), (0, NOTIFY), Dgram, b"READY=1", 7),
        ev(next(), 100, b"pair", c(5000), c(5001), Stream, b"ping", 4),
        ev(next(), 100, b"pair", c(5001), c(5000), Stream, b"pong", 4),
        ev(next(), 100, b"ctr", c(6000), (6001, CONTAINERD), Stream, H2_PREFACE, H2_PREFACE.len() as u32),
        ev(next(), 100, b"psql", c(7000), (7001, PGSQL), Stream, PG_STARTUP, PG_STARTUP.len() as u32),
        ev(next(), 100, b"redis-cli", c(8000), (8001, REDIS), Stream, REDIS_PING, REDIS_PING.len() as u32),
    ]);
    for e in out.iter_mut().filter(|e| e.sock_type == Dgram) {
        e.flags.0 |= abi::flag::PEER_IS_DEST;
        e.peer_pid = 0;
    }
    out
}

fn options(link: Link, ports: Vec<PortMapEntry>) -> SinkOptions {
    SinkOptions {
        link,
        ports: PortMap::new(ports),
        clock: WallClock::with_offset(EPOCH_OFFSET),
        flush_each: false,
        filter: Some("--sock /run".into()),
    }
}

fn write(sink: &mut dyn Sink, events: &[Event<'_>], path: &Path) {
    sink.begin().expect("header");
    for e in events {
        sink.write_event(e).expect("encode");
    }
    sink.finish(&Stats { captured: events.len() as u64, lost: Some(2) }).expect("finish");
    let _ = path;
}

fn pcapng_file(dir: &TempDir, name: &str, link: Link, events: &[Event<'_>]) -> std::path::PathBuf {
    let mut sink = PcapngSink::new(Vec::new(), options(link, Vec::new()));
    let path = dir.join(name);
    write(&mut sink, events, &path);
    std::fs::write(&path, sink.into_inner()).expect("write the capture");
    path
}

#[test]
fn pcapng_reads_cleanly_with_valid_checksums_and_no_tcp_complaints() {
    let dir = TempDir::new("clean");
    let r = recorded();
    let evs = events(&r);
    let file = pcapng_file(&dir, "all.pcapng", Link::Ethernet, &evs);
    // Reads without a warning (tshark() fails on any).
    let total = count(&file, "", &[]);
    // 17 messages, 2 of them split in two; 7 TCP connections open with 3 packets.
    assert_eq!(total, 17 + 2 + 7 * 3);
    let checks =
        ["-o", "ip.check_checksum:TRUE", "-o", "tcp.check_checksum:TRUE", "-o", "udp.check_checksum:TRUE"];
    assert_eq!(
        count(&file, "ip.checksum.status == \"Bad\" || tcp.checksum.status == \"Bad\" || udp.checksum.status == \"Bad\"", &checks),
        0,
        "bad checksums"
    );
    assert_eq!(count(&file, "ip.checksum.status == \"Good\"", &checks), total);
    // Only the truncated packet has no checksum to verify.
    assert_eq!(
        count(&file, "tcp.checksum.status == \"Good\" || udp.checksum.status == \"Good\"", &checks),
        total - 1
    );
    assert_eq!(count(&file, "tcp.analysis.flags", &[]), 0, "TCP analysis complaints");
    assert_eq!(count(&file, "_ws.malformed || _ws.expert.severity >= \"Warning\"", &[]), 0);
}

#[test]
fn metadata_direction_interface_and_timestamps() {
    let dir = TempDir::new("meta");
    let r = recorded();
    let evs = events(&r);
    let file = pcapng_file(&dir, "all.pcapng", Link::Ethernet, &evs);
    let rows = fields(
        &file,
        "tcp.len > 0 || udp",
        &["frame.comment", "frame.packet_flags_direction", "frame.interface_name", "frame.time_epoch"],
        &[],
    );
    let first = &rows[0];
    assert_eq!(
        first[0],
        format!(
            "sockdump=1 pid=100 tid=101 comm=curl peer_pid=200 type=stream path= \
             peer_path=/run/app%20with%20space%3D1.sock ino=1000 peer_ino=0 len={0} captured={0}",
            HTTP_REQUEST.len()
        )
    );
    assert_eq!(first[1], "0x00000002", "client to server is outbound");
    assert_eq!(first[2], "sockdump");
    assert_eq!(first[3], "1700000001.001234567", "nanoseconds from the kernel timestamp");
    assert!(rows[1][0].starts_with("sockdump=1 pid=200 tid=201 comm=server"));
    assert_eq!(rows[1][1], "0x00000001", "server to client is inbound");
    let handshakes = fields(&file, "tcp.flags.syn == 1", &["frame.comment"], &[]);
    assert_eq!(handshakes.len(), 14);
    assert!(handshakes.iter().all(|h| h[0] == "sockdump=1 synthetic=handshake"));
    // The interface block carries the filter; the statistics the losses.
    let info = Command::new("capinfos").arg(&file).output().expect("capinfos (wireshark-common)");
    let info = String::from_utf8_lossy(&info.stdout);
    assert!(info.contains("Capture application: sockdump "), "{info}");
    assert!(info.contains("--sock /run"), "{info}");
    assert!(info.contains("Number of packets = 40"), "{info}");
}

#[test]
fn protocols_dissect_on_their_ports() {
    let dir = TempDir::new("proto");
    let r = recorded();
    let evs = events(&r);
    let file = pcapng_file(&dir, "all.pcapng", Link::Ethernet, &evs);
    let req = fields(&file, "http.request", &["http.request.uri", "tcp.dstport"], &[]);
    assert_eq!(req, [["/info", "80"]]);
    let resp = fields(&file, "http.response", &["http.response.code", "http.file_data"], &[]);
    assert_eq!(resp.len(), 1);
    assert_eq!(resp[0][0], "200");
    // The body came in a second write: TCP reassembly joins it.
    assert!(resp[0][1] == "hello world" || resp[0][1] == "68656c6c6f20776f726c64", "{resp:?}");
    assert_eq!(count(&file, "http2.magic", &[]), 1, "containerd's gRPC is HTTP/2");
    assert_eq!(count(&file, "pgsql && tcp.dstport == 5432", &[]), 1);
    assert_eq!(count(&file, "resp && tcp.dstport == 6379", &[]), 1);
    assert_eq!(
        fields(&file, "syslog", &["syslog.msg", "udp.dstport"], &[]),
        [["Nov 14 22:13:20 myhost test: hello syslog", "514"]]
    );
    assert_eq!(count(&file, "udp", &[]), 2);
}

#[test]
fn follow_stream_gives_the_bytes_sent_each_way() {
    let dir = TempDir::new("follow");
    let r = recorded();
    let evs = events(&r);
    let file = pcapng_file(&dir, "all.pcapng", Link::Ethernet, &evs);
    // The bulk exchange is the second connection.
    let (client, server) = follow_tcp(&file, 1, &[]);
    assert_eq!(client, r.bulk_client.concat());
    assert_eq!(server, r.bulk_server.concat());
    // Both directions of the socketpair are one stream.
    let (a, b) = follow_tcp(&file, 3, &[]);
    assert_eq!((a.as_slice(), b.as_slice()), (&b"ping"[..], &b"pong"[..]));
}

#[test]
fn truncated_messages_keep_their_length_and_the_sequence() {
    let dir = TempDir::new("cut");
    let r = recorded();
    let evs = events(&r);
    let file = pcapng_file(&dir, "all.pcapng", Link::Ethernet, &evs);
    let rows = fields(
        &file,
        "tcp.stream == 2 && tcp.len > 0",
        &["frame.len", "frame.cap_len", "tcp.seq", "tcp.len", "tcp.nxtseq"],
        &[],
    );
    assert_eq!(rows, [["5054", "64", "1", "5000", "5001"], ["58", "58", "5001", "4", "5005"],]);
}

#[test]
fn pcap_has_the_same_packets_with_nanosecond_times() {
    let dir = TempDir::new("pcap");
    let r = recorded();
    let evs = events(&r);
    let mut sink = PcapSink::new(Vec::new(), options(Link::Ethernet, Vec::new()));
    let path = dir.join("all.pcap");
    write(&mut sink, &evs, &path);
    std::fs::write(&path, sink.into_inner()).expect("write");
    assert_eq!(count(&path, "", &[]), 40);
    assert_eq!(count(&path, "http.request || http.response", &[]), 2);
    let times = fields(&path, "frame.number == 1", &["frame.time_epoch"], &[]);
    assert_eq!(times, [["1700000001.001234567"]]);
    let (client, server) = follow_tcp(&path, 1, &[]);
    assert_eq!((client, server), (r.bulk_client.concat(), r.bulk_server.concat()));
}

#[test]
fn port_map_gives_unknown_paths_a_protocol() {
    let dir = TempDir::new("portmap");
    let get = b"GET / HTTP/1.1\r\nHost: y\r\n\r\n";
    let evs = [
        ev(
            1,
            100,
            b"c",
            (1, UNNAMED),
            (2, SocketName::Path(b"/srv/pg/socket")),
            SockType::Stream,
            b"\x00\x00\x00\x08\x04\xd2\x16\x2f",
            8,
        ),
        ev(
            2,
            100,
            b"c",
            (3, UNNAMED),
            (4, SocketName::Path(b"/srv/web/s")),
            SockType::Stream,
            get,
            get.len() as u32,
        ),
    ];
    let mut sink =
        PcapngSink::new(Vec::new(), options(Link::Ethernet, vec!["/srv/pg=5432".parse().expect("entry")]));
    let path = dir.join("m.pcapng");
    write(&mut sink, &evs, &path);
    std::fs::write(&path, sink.into_inner()).expect("write");
    // An SSLRequest to the mapped PostgreSQL port; plain HTTP on the generic port.
    assert_eq!(count(&path, "pgsql && tcp.dstport == 5432", &[]), 1);
    assert_eq!(count(&path, "http.request && tcp.dstport == 80", &[]), 1);
}

fn lua(file: &Path, filter: &str, fields_: &[&str]) -> Vec<Vec<String>> {
    let script = format!("lua_script:{}", lua_plugin().display());
    fields(file, filter, fields_, &["-X", &script])
}

#[test]
fn lua_plugin_turns_comments_into_fields() {
    let dir = TempDir::new("lua");
    let r = recorded();
    let evs = events(&r);
    let file = pcapng_file(&dir, "all.pcapng", Link::Ethernet, &evs);
    let by_pid = lua(&file, "sockdump.pid == 200", &["frame.number"]);
    let by_comment = fields(&file, "frame.comment matches \"^sockdump=1 pid=200 \"", &["frame.number"], &[]);
    assert_eq!(by_pid, by_comment);
    // 4 server messages, one of them split in two.
    assert_eq!(by_pid.len(), 5);
    let rows = lua(
        &file,
        "sockdump.comm == \"curl\" && sockdump.peer_path contains \"space=1\"",
        &[
            "sockdump.pid",
            "sockdump.tid",
            "sockdump.peer_pid",
            "sockdump.path",
            "sockdump.peer_path",
            "sockdump.type",
            "sockdump.ino",
            "sockdump.len",
            "sockdump.captured",
        ],
    );
    assert_eq!(
        rows,
        [[
            "100",
            "101",
            "200",
            "",
            "/run/app with space=1.sock",
            "stream",
            "1000",
            &HTTP_REQUEST.len().to_string(),
            &HTTP_REQUEST.len().to_string()
        ]]
    );
    assert_eq!(lua(&file, "sockdump.truncated == 1", &["frame.number"]).len(), 1);
    assert_eq!(lua(&file, "sockdump.peer_path == \"@notify@x\"", &["frame.number"]).len(), 1);
    assert_eq!(lua(&file, "sockdump.type == \"dgram\"", &["frame.number"]).len(), 2);
    assert_eq!(lua(&file, "sockdump.synthetic", &["frame.number"]).len(), 21);
    assert_eq!(lua(&file, "sockdump.part == 2", &["frame.number"]).len(), 2);
}

#[test]
fn lua_plugin_shows_odd_names_readably() {
    let dir = TempDir::new("odd");
    let evs = [ev(
        1,
        100,
        b"we\xffird =%",
        (1, SocketName::Path("/tmp/\u{fc}ber \u{2603}".as_bytes())),
        (2, SocketName::Abstract(b"a\0b")),
        SockType::SeqPacket,
        b"x",
        1,
    )];
    for link in [Link::Ethernet, Link::User] {
        let mut sink = PcapngSink::new(Vec::new(), options(link, Vec::new()));
        let path = dir.join("odd.pcapng");
        write(&mut sink, &evs, &path);
        std::fs::write(&path, sink.into_inner()).expect("write");
        let rows = lua(
            &path,
            "sockdump.len == 1",
            &["sockdump.comm", "sockdump.path", "sockdump.peer_path", "sockdump.type"],
        );
        assert_eq!(rows, [["we\\xffird =%", "/tmp/\u{fc}ber \u{2603}", "@a@b", "seqpacket"]], "{link:?}");
    }
}

#[test]
fn lua_plugin_decodes_user0() {
    let dir = TempDir::new("user0");
    let r = recorded();
    let evs = events(&r);
    for (name, sink) in [
        (
            "u.pcapng",
            Box::new(PcapngSink::new(Vec::new(), options(Link::User, Vec::new()))) as Box<dyn SinkBytes>,
        ),
        ("u.pcap", Box::new(PcapSink::new(Vec::new(), options(Link::User, Vec::new())))),
    ] {
        let path = dir.join(name);
        let bytes = sink.encode(&evs);
        std::fs::write(&path, bytes).expect("write");
        // One packet per message, whatever its size.
        assert_eq!(count(&path, "", &[]), evs.len());
        let rows = lua(&path, "sockdump.pid == 200", &["sockdump.comm", "sockdump.path", "frame.cap_len"]);
        assert_eq!(rows.len(), 4, "{name}");
        assert_eq!(rows[0][..2], ["server", "/run/app with space=1.sock"]);
        assert_eq!(lua(&path, "http.request", &["http.request.uri"]), [["/info"]], "{name}");
        assert_eq!(lua(&path, "http.response", &["http.response.code"]), [["200"]], "{name}");
        // Inbound: the 4 server messages and the socketpair's answer.
        assert_eq!(lua(&path, "sockdump.direction == 1", &["frame.number"]).len(), 5, "{name}");
        assert_eq!(lua(&path, "sockdump.flags.peer_is_dest == 1", &["frame.number"]).len(), 2, "{name}");
        // The comment (pcapng only) is not decoded a second time.
        assert_eq!(lua(&path, "frame.number == 1", &["sockdump.pid"]), [["100"]], "{name}");
    }
}

/// A sink that can hand back its bytes.
trait SinkBytes {
    fn encode(self: Box<Self>, events: &[Event<'_>]) -> Vec<u8>;
}

impl SinkBytes for PcapngSink<Vec<u8>> {
    fn encode(mut self: Box<Self>, events: &[Event<'_>]) -> Vec<u8> {
        write(&mut *self, events, Path::new(""));
        self.into_inner()
    }
}

impl SinkBytes for PcapSink<Vec<u8>> {
    fn encode(mut self: Box<Self>, events: &[Event<'_>]) -> Vec<u8> {
        write(&mut *self, events, Path::new(""));
        self.into_inner()
    }
}

/// The text sockdump would print for `events` while capturing.
fn text(events: &[Event<'_>], style: TextStyle) -> Vec<u8> {
    let mut sink =
        TextSink::new(Vec::new(), style, Controls::Raw, WallClock::with_offset(EPOCH_OFFSET), Zone::Local);
    for e in events {
        sink.write_event(e).expect("text");
    }
    sink.into_inner()
}

/// Where two outputs first differ, with some context, for a readable failure.
fn first_difference(a: &[u8], b: &[u8]) -> String {
    let at = a.iter().zip(b).position(|(x, y)| x != y).unwrap_or(a.len().min(b.len()));
    let from = at.saturating_sub(80);
    format!(
        "lengths {} and {}, first difference at byte {at}:\n{}\n----\n{}",
        a.len(),
        b.len(),
        String::from_utf8_lossy(&a[from..(at + 80).min(a.len())]),
        String::from_utf8_lossy(&b[from..(at + 80).min(b.len())])
    )
}

fn read_back(file: &Path, args: &[&str]) -> (Vec<u8>, String) {
    let out = Command::new(SOCKDUMP).arg("-r").arg(file).args(args).output().expect("run sockdump -r");
    assert!(out.status.success(), "sockdump -r failed: {}", String::from_utf8_lossy(&out.stderr));
    (out.stdout, String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn read_back_prints_what_a_text_capture_prints() {
    let dir = TempDir::new("read");
    let r = recorded();
    let evs = events(&r);
    let file = pcapng_file(&dir, "all.pcapng", Link::Ethernet, &evs);
    let user = pcapng_file(&dir, "user.pcapng", Link::User, &evs);
    // Wireshark's own writer, to show -r does not depend on sockdump's block layout.
    let rewritten = dir.join("rewritten.pcapng");
    let status =
        Command::new("editcap").arg(&file).arg(&rewritten).status().expect("editcap (wireshark-common)");
    assert!(status.success());
    for style in [TextStyle::Hex, TextStyle::String, TextStyle::Hexstring] {
        let name = format!("{style:?}").to_lowercase();
        let expected = text(&evs, style);
        for f in [&file, &user, &rewritten] {
            let (stdout, stderr) = read_back(f, &["--format", &name]);
            assert!(
                stdout == expected,
                "{} as {name}: {}",
                f.display(),
                first_difference(&stdout, &expected)
            );
            // editcap leaves the statistics block out.
            if f != &rewritten {
                assert!(stderr.contains("lost 2 messages"), "{stderr}");
            }
        }
    }
    // Filters and -c apply when reading.
    let (stdout, _) = read_back(&file, &["--format", "string", "--pid", "200", "-c", "2"]);
    assert_eq!(stdout, text(&evs[..2], TextStyle::String));
    let (stdout, _) = read_back(&file, &["--format", "string", "--sock", "@notify", "--comm", "notify"]);
    assert_eq!(stdout, text(&evs[11..12], TextStyle::String));
}

#[test]
fn read_back_converts_between_framings() {
    let dir = TempDir::new("convert");
    let r = recorded();
    let evs = events(&r);
    let user = pcapng_file(&dir, "user.pcapng", Link::User, &evs);
    let eth = dir.join("eth.pcapng");
    let (_, _) = read_back(&user, &["--format", "pcapng", "-o", eth.to_str().expect("utf-8")]);
    let (stdout, _) = read_back(&eth, &["--format", "hex"]);
    assert_eq!(stdout, text(&evs, TextStyle::Hex));
    assert_eq!(count(&eth, "http.request", &[]), 1);
}

#[test]
fn read_refuses_files_sockdump_did_not_write() {
    let dir = TempDir::new("foreign");
    let r = recorded();
    let evs = events(&r);
    let file = pcapng_file(&dir, "all.pcapng", Link::Ethernet, &evs);
    let classic = dir.join("classic.pcap");
    let stripped = dir.join("stripped.pcapng");
    let text_file = dir.join("notes.txt");
    std::fs::write(&text_file, "hello").expect("write");
    assert!(Command::new("editcap")
        .args(["-F", "pcap"])
        .arg(&file)
        .arg(&classic)
        .status()
        .expect("editcap")
        .success());
    // A pcapng another tool wrote: an Ethernet frame with no sockdump comment.
    let hex = dir.join("frame.txt");
    std::fs::write(&hex, "0000 ff ff ff ff ff ff 02 00 00 00 00 01 08 06 00 01\n0010 08 00 06 04 00 01\n")
        .expect("write");
    assert!(Command::new("text2pcap")
        .arg("-n")
        .arg(&hex)
        .arg(&stripped)
        .output()
        .expect("text2pcap (wireshark-common)")
        .status
        .success());
    for (f, message) in [
        (&classic, "classic pcap file with Ethernet framing holds no process metadata"),
        (&stripped, "packet 1 has no sockdump comment"),
        (&text_file, "not a pcap or pcapng file"),
    ] {
        let out = Command::new(SOCKDUMP).arg("-r").arg(f).output().expect("run sockdump");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{} was accepted", f.display());
        assert!(stderr.contains(message), "{}: {stderr}", f.display());
    }
}

#[test]
fn x11_on_its_abstract_name_dissects_as_x11() {
    // Linux X clients connect to the abstract @/tmp/.X11-unix/Xn
    const X0: SocketName<'static> = SocketName::Abstract(b"/tmp/.X11-unix/X0");
    const SETUP: &[u8] = b"l\0\x0b\0\0\0\0\0\0\0\0\0";
    let dir = TempDir::new("x11");
    let evs = [ev(1_000_000_000, 100, b"xterm", (6000, UNNAMED), (6001, X0), SockType::Stream, SETUP, 12)];
    let file = pcapng_file(&dir, "x11.pcapng", Link::Ethernet, &evs);
    assert_eq!(fields(&file, "x11", &["tcp.dstport"], &[]), [["6000"]]);
}

#[test]
fn read_with_v_says_what_the_file_held_and_kernel_options_are_refused() {
    let dir = TempDir::new("read-v");
    let r = recorded();
    let evs = events(&r);
    let file = pcapng_file(&dir, "all.pcapng", Link::Ethernet, &evs);
    let out = Command::new(SOCKDUMP)
        .arg("-r")
        .arg(&file)
        .args(["-v", "--format", "string", "--comm", "pair"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("packets from") && stderr.contains("; 2 messages matched and were written"),
        "{stderr}"
    );
    let out =
        Command::new(SOCKDUMP).arg("-r").arg(&file).args(["--segs-in-buffer", "20000"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.lines().count() == 1 && stderr.contains("cannot be used with"),
        "{stderr}"
    );
}
