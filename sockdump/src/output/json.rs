//! `--format json`: JSON lines, one object per message, for jq, log
//! pipelines and scripts. The fields are documented in `docs/JSON.md` and
//! named as the pcapng comment keys are.

use std::fmt::{self, Display, Write as _};
use std::io::{self, Write};

use base64::Engine;
use chrono::{DateTime, Datelike, Timelike};
use serde::{Serialize, Serializer};
use sockdump_common::meta::FLAG_NAMES;
use sockdump_common::{Container, Event, EventFlags, Reader, SockType, SocketName};

use super::{Sink, Stats};
use crate::clock::WallClock;

pub struct JsonSink<W: Write> {
    out: W,
    clock: WallClock,
    flush_each: bool,
    /// One line, and the message's bytes in base64, reused.
    line: Vec<u8>,
    data: String,
}

impl<W: Write> JsonSink<W> {
    pub fn new(out: W, clock: WallClock, flush_each: bool) -> Self {
        JsonSink { out, clock, flush_each, line: Vec::with_capacity(1 << 16), data: String::new() }
    }
}

impl<W: Write> Sink for JsonSink<W> {
    fn write_event(&mut self, event: &Event<'_>) -> io::Result<()> {
        self.data.clear();
        base64::engine::general_purpose::STANDARD.encode_string(event.data, &mut self.data);
        // beyond i64 (the year 2262) only a crafted file goes
        let time_ns = self.clock.epoch_ns(event.timestamp_ns).clamp(i64::MIN.into(), i64::MAX.into()) as i64;
        let record = Record::of(event, time_ns, &self.data);
        // the whole line first: a regular file ends at a whole line
        self.line.clear();
        let mut serializer = serde_json::Serializer::with_formatter(&mut self.line, TerminalSafe);
        record.serialize(&mut serializer).map_err(io::Error::other)?;
        self.line.push(b'\n');
        self.out.write_all(&self.line)?;
        if self.flush_each {
            self.out.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    fn finish(&mut self, _stats: &Stats) -> io::Result<()> {
        self.out.flush()
    }
}

/// One message as a JSON object; fields that do not apply are left out.
/// Strings are written straight into the line (no allocation per message).
#[derive(Serialize)]
struct Record<'a> {
    time: Rfc3339,
    time_ns: i64,
    pid: u32,
    tid: u32,
    comm: Text<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    uid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    gid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ppid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pcomm: Option<Text<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cgroup: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    args: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    container: Option<ContainerRecord<'a>>,
    /// SO_PEERCRED's pid of the sending socket; 0 when unknown.
    peer_pid: u32,
    /// Absent when reads are not seen; null when none was seen in time.
    #[serde(skip_serializing_if = "Option::is_none")]
    reader: Option<Option<ReaderRecord<'a>>>,
    #[serde(rename = "type")]
    sock_type: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    type_number: Option<u16>,
    path: Name<'a>,
    peer_path: Name<'a>,
    ino: u64,
    peer_ino: u64,
    len: u32,
    captured: usize,
    truncated: bool,
    #[serde(skip_serializing_if = "Flags::is_empty")]
    flags: Flags,
    data: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    text: Option<&'a str>,
}

#[derive(Serialize)]
struct ReaderRecord<'a> {
    pid: u32,
    tid: u32,
    comm: Text<'a>,
    /// Threads that read parts of the message, when more than one.
    #[serde(skip_serializing_if = "Option::is_none")]
    readers: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    uid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cgroup: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    args: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    container: Option<ContainerRecord<'a>>,
}

#[derive(Serialize)]
struct ContainerRecord<'a> {
    id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    image: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pod: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    namespace: Option<&'a str>,
}

impl<'a> ContainerRecord<'a> {
    fn of(container: &'a Container) -> Self {
        ContainerRecord {
            id: &container.id,
            name: container.name.as_deref(),
            image: container.image.as_deref(),
            pod: container.pod.as_deref(),
            namespace: container.namespace.as_deref(),
        }
    }
}

impl<'a> Record<'a> {
    fn of(event: &'a Event<'a>, time_ns: i64, data: &'a str) -> Self {
        let process = event.process.as_ref();
        let context = &event.context;
        let reader = match event.reader {
            Reader::Unknown => None,
            Reader::NotSeen => Some(None),
            Reader::Thread { pid, tid, ref comm, others, uid, cgroup_id } => Some(Some(ReaderRecord {
                pid,
                tid,
                comm: Text(comm.as_bytes()),
                readers: (others > 0).then(|| u64::from(others) + 1),
                uid,
                cgroup: (cgroup_id != 0).then_some(cgroup_id),
                args: context.reader_args.as_deref(),
                container: context.reader_container.as_deref().map(ContainerRecord::of),
            })),
        };
        Record {
            time: Rfc3339(time_ns),
            time_ns,
            pid: event.pid,
            tid: event.tid,
            comm: Text(event.comm),
            uid: process.map(|p| p.uid),
            gid: process.map(|p| p.gid),
            ppid: process.map(|p| p.ppid),
            pcomm: process.map(|p| Text(p.parent_comm.as_bytes())),
            cgroup: process.map(|p| p.cgroup_id).filter(|&id| id != 0),
            args: context.args.as_deref(),
            container: context.container.as_deref().map(ContainerRecord::of),
            peer_pid: event.peer_pid,
            reader,
            sock_type: event.sock_type.name(),
            type_number: match event.sock_type {
                SockType::Other(raw) => Some(raw),
                _ => None,
            },
            path: Name(event.path),
            peer_path: Name(event.peer_path),
            ino: event.sock_ino,
            peer_ino: event.peer_ino,
            len: event.len,
            captured: event.data.len(),
            truncated: event.data.len() < event.len as usize,
            flags: Flags(event.flags),
            data,
            text: std::str::from_utf8(event.data).ok(),
        }
    }
}

/// A JSON string from a `Display`, escaped as it is written.
macro_rules! serialize_as_string {
    ($($type:ty),*) => {$(
        impl Serialize for $type {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_str(self)
            }
        }
    )*};
}
serialize_as_string!(Rfc3339, Text<'_>, Name<'_>);

/// Nanoseconds since the epoch as RFC 3339 in UTC, all nine digits
/// (chrono's own formatting allocates).
struct Rfc3339(i64);

impl Display for Rfc3339 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = DateTime::from_timestamp_nanos(self.0);
        write!(
            f,
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:09}Z",
            t.year(),
            t.month(),
            t.day(),
            t.hour(),
            t.minute(),
            t.second(),
            t.nanosecond()
        )
    }
}

/// Bytes as text: as they are when UTF-8, else with every byte that is
/// not part of valid UTF-8 written `\xNN`.
struct Text<'a>(&'a [u8]);

impl Display for Text<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for chunk in self.0.utf8_chunks() {
            f.write_str(chunk.valid())?;
            for byte in chunk.invalid() {
                write!(f, "\\x{byte:02x}")?;
            }
        }
        Ok(())
    }
}

/// A socket name as users write it: `@` before abstract names, empty for
/// unnamed sockets, and `./` before a relative path that starts with `@`
/// (the same file, not taken for an abstract name).
struct Name<'a>(SocketName<'a>);

impl Display for Name<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            SocketName::Unnamed => Ok(()),
            SocketName::Path(path) => {
                if path.starts_with(b"@") {
                    f.write_str("./")?;
                }
                Text(path).fmt(f)
            }
            SocketName::Abstract(name) => {
                f.write_char('@')?;
                Text(name).fmt(f)
            }
        }
    }
}

/// The truncation and destination flags by name, in bit order.
struct Flags(EventFlags);

impl Flags {
    fn is_empty(&self) -> bool {
        self.0 .0 == 0
    }
}

impl Serialize for Flags {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let bits = self.0 .0;
        serializer.collect_seq(FLAG_NAMES.iter().filter(|(bit, _)| bits & bit != 0).map(|(_, name)| name))
    }
}

/// serde_json escapes C0 controls; DEL and the C1 controls (U+0080 to
/// U+009F, which some terminals obey as escape sequences) are escaped too,
/// so a captured name or message shown by `jq` or `cat` cannot drive the
/// terminal.
struct TerminalSafe;

impl serde_json::ser::Formatter for TerminalSafe {
    fn write_string_fragment<W: ?Sized + Write>(&mut self, writer: &mut W, fragment: &str) -> io::Result<()> {
        // By bytes, not chars: in UTF-8 the C1 controls are 0xc2 0x80..=0x9f.
        let bytes = fragment.as_bytes();
        let (mut start, mut at) = (0, 0);
        while at < bytes.len() {
            let control = match (bytes[at], bytes.get(at + 1)) {
                (0x7f, _) => Some((0x7f, 1)),
                (0xc2, Some(&second @ 0x80..=0x9f)) => Some((second, 2)),
                _ => None,
            };
            match control {
                Some((code, width)) => {
                    writer.write_all(&bytes[start..at])?;
                    write!(writer, "\\u{code:04x}")?;
                    at += width;
                    start = at;
                }
                None => at += 1,
            }
        }
        writer.write_all(&bytes[start..])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sockdump_common::{Comm, Context, EventFlags, ProcessFacts};
    use std::sync::Arc;

    fn event(data: &[u8]) -> Event<'_> {
        Event {
            timestamp_ns: 1_500_000_001,
            sock_ino: 100,
            peer_ino: 200,
            pid: 42,
            tid: 43,
            peer_pid: 7,
            len: data.len() as u32,
            sock_type: SockType::Stream,
            flags: EventFlags::default(),
            comm: b"curl",
            path: SocketName::Unnamed,
            peer_path: SocketName::Path(b"/run/docker.sock"),
            data,
            rx_sock: 0,
            rx_pos: 0,
            reader: Reader::Unknown,
            process: None,
            context: Context::NONE,
        }
    }

    fn json(event: &Event<'_>) -> serde_json::Value {
        let mut sink = JsonSink::new(Vec::new(), WallClock::with_offset(1_000_000_000), false);
        sink.write_event(event).unwrap();
        let line = String::from_utf8(sink.out).unwrap();
        assert!(line.ends_with('\n') && line.matches('\n').count() == 1, "one line: {line:?}");
        serde_json::from_str(&line).unwrap()
    }

    #[test]
    fn a_plain_message() {
        let v = json(&event(b"GET / HTTP/1.1\r\n"));
        assert_eq!(v["time"], "1970-01-01T00:00:02.500000001Z");
        assert_eq!(v["time_ns"], 2_500_000_001u64);
        assert_eq!(
            (v["pid"].as_u64(), v["tid"].as_u64(), v["peer_pid"].as_u64()),
            (Some(42), Some(43), Some(7))
        );
        assert_eq!((v["comm"].as_str(), v["type"].as_str()), (Some("curl"), Some("stream")));
        assert_eq!((v["path"].as_str(), v["peer_path"].as_str()), (Some(""), Some("/run/docker.sock")));
        assert_eq!((v["ino"].as_u64(), v["peer_ino"].as_u64()), (Some(100), Some(200)));
        assert_eq!(
            (v["len"].as_u64(), v["captured"].as_u64(), v["truncated"].as_bool()),
            (Some(16), Some(16), Some(false))
        );
        assert_eq!(v["data"], "R0VUIC8gSFRUUC8xLjENCg==");
        assert_eq!(v["text"], "GET / HTTP/1.1\r\n");
        for absent in
            ["uid", "gid", "ppid", "pcomm", "cgroup", "args", "container", "reader", "flags", "type_number"]
        {
            assert!(v.get(absent).is_none(), "{absent} is left out: {v}");
        }
    }

    #[test]
    fn bytes_that_are_not_utf8_are_base64_only() {
        let bytes = [0xff, 0x00, 0xc3, 0x28, b'a'];
        let mut ev = event(&bytes);
        ev.len = 9000;
        ev.flags = EventFlags(sockdump_common::abi::flag::TRUNC_SIZE);
        ev.comm = b"bad\xffname";
        ev.path = SocketName::Abstract(b"abs");
        ev.sock_type = SockType::Other(9);
        let v = json(&ev);
        assert!(v.get("text").is_none());
        let decoded = base64::engine::general_purpose::STANDARD.decode(v["data"].as_str().unwrap()).unwrap();
        assert_eq!(decoded, bytes);
        assert_eq!(
            (v["len"].as_u64(), v["captured"].as_u64(), v["truncated"].as_bool()),
            (Some(9000), Some(5), Some(true))
        );
        assert_eq!(v["flags"], serde_json::json!(["trunc_size"]));
        assert_eq!(v["comm"], "bad\\xffname");
        assert_eq!(v["path"], "@abs");
        assert_eq!((v["type"].as_str(), v["type_number"].as_u64()), (Some("unknown"), Some(9)));
    }

    /// A line as written, with none of DEL, ESC, CSI (C1) or NUL raw in it.
    fn terminal_safe_line(event: &Event<'_>) -> Vec<u8> {
        let mut sink = JsonSink::new(Vec::new(), WallClock::with_offset(0), false);
        sink.write_event(event).unwrap();
        for raw in [&b"\x1b"[..], b"\x07", b"\x7f", "\u{9b}".as_bytes(), "\u{85}".as_bytes(), b"\0"] {
            assert!(!sink.out.windows(raw.len()).any(|w| w == raw), "{raw:?} left raw");
        }
        sink.out
    }

    #[test]
    fn control_characters_never_leave_raw() {
        let line = terminal_safe_line(&event("\u{1b}[2J\u{7f}\u{9b}31m\u{a0}\u{85}ok\u{c2}".as_bytes()));
        let v: serde_json::Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(v["text"], "\u{1b}[2J\u{7f}\u{9b}31m\u{a0}\u{85}ok\u{c2}", "the text is still exact");
        let text = std::str::from_utf8(&line).unwrap();
        assert!(text.contains(r#""text":"\u001b[2J\u007f\u009b31m"#), "{text}");
        assert!(text.contains("\u{a0}\\u0085ok\u{c2}\""), "U+00A0 and U+00C2 are printable: {text}");
    }

    #[test]
    fn hostile_names() {
        let mut ev = event(b"x");
        ev.comm = "\u{1b}]0;pwned\u{7}\u{9d}".as_bytes();
        ev.path = SocketName::Abstract(b"a\0b\xfe\x7f");
        ev.peer_path = SocketName::Path("/tmp/\u{9b}2J\n".as_bytes());
        ev.process = Some(ProcessFacts { parent_comm: Comm::new(b"sh\xc3\x7f"), ..ProcessFacts::default() });
        let v: serde_json::Value = serde_json::from_slice(&terminal_safe_line(&ev)).unwrap();
        assert_eq!(v["comm"], "\u{1b}]0;pwned\u{7}\u{9d}");
        assert_eq!(v["path"], "@a\u{0}b\\xfe\u{7f}");
        assert_eq!(v["peer_path"], "/tmp/\u{9b}2J\n");
        assert_eq!(v["pcomm"], "sh\\xc3\u{7f}");
    }

    #[test]
    fn socket_names() {
        let mut ev = event(b"x");
        ev.path = SocketName::Path(b"@relative");
        ev.peer_path = SocketName::Abstract(b"");
        let v = json(&ev);
        assert_eq!((v["path"].as_str(), v["peer_path"].as_str()), (Some("./@relative"), Some("@")));
    }

    #[test]
    fn every_flag_by_name() {
        use sockdump_common::abi::flag;
        let mut ev = event(b"");
        ev.len = 70_000;
        ev.flags = EventFlags(flag::PEER_IS_DEST | flag::UNREADABLE | flag::TRUNC_SEGS);
        let v = json(&ev);
        assert_eq!(v["flags"], serde_json::json!(["trunc_segs", "unreadable", "peer_is_dest"]));
        assert_eq!((v["captured"].as_u64(), v["truncated"].as_bool()), (Some(0), Some(true)));
        assert_eq!((v["data"].as_str(), v["text"].as_str()), (Some(""), Some("")));
        ev.flags = EventFlags(flag::PEER_IS_DEST);
        ev.len = 0;
        let v = json(&ev);
        assert_eq!(
            (v["flags"].clone(), v["truncated"].as_bool()),
            (serde_json::json!(["peer_is_dest"]), Some(false))
        );
    }

    #[test]
    fn times() {
        for (ns, shown) in [
            (0, "1970-01-01T00:00:00.000000000Z"),
            (-1, "1969-12-31T23:59:59.999999999Z"),
            (1_795_716_000_123_456_789, "2026-11-26T18:00:00.123456789Z"),
            (i64::MAX, "2262-04-11T23:47:16.854775807Z"),
        ] {
            assert_eq!(Rfc3339(ns).to_string(), shown);
        }
        // a crafted file's timestamp past i64 is clamped, not wrapped
        let mut sink = JsonSink::new(Vec::new(), WallClock::with_offset(i128::from(i64::MAX)), false);
        sink.write_event(&event(b"x")).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&sink.out).unwrap();
        assert_eq!(v["time_ns"], i64::MAX);
    }

    /// Counts flushes.
    #[derive(Default)]
    struct Flushes(usize);

    impl Write for Flushes {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            self.0 += 1;
            Ok(())
        }
    }

    #[test]
    fn flushed_per_message_or_per_drain() {
        for (flush_each, after_two) in [(true, 2), (false, 0)] {
            let mut sink = JsonSink::new(Flushes::default(), WallClock::with_offset(0), flush_each);
            sink.write_event(&event(b"a")).unwrap();
            sink.write_event(&event(b"b")).unwrap();
            assert_eq!(sink.out.0, after_two, "flush_each {flush_each}");
            sink.flush().unwrap();
            assert_eq!(sink.out.0, after_two + 1);
        }
    }

    #[test]
    fn context_and_reader() {
        let container = Arc::new(Container {
            id: "ab".repeat(32),
            name: Some("web".into()),
            image: Some("nginx:1".into()),
            pod: None,
            namespace: None,
        });
        let mut ev = event(b"x");
        ev.process = Some(ProcessFacts {
            uid: 1000,
            gid: 100,
            ppid: 1,
            parent_comm: Comm::new(b"bash"),
            cgroup_id: 77,
        });
        ev.context = Context {
            args: Some("curl -s 'a b'".into()),
            container: Some(Arc::clone(&container)),
            reader_args: Some("dockerd -H fd://".into()),
            reader_container: None,
        };
        ev.reader = Reader::Thread {
            pid: 812,
            tid: 813,
            comm: Comm::new(b"dockerd"),
            others: 1,
            uid: Some(0),
            cgroup_id: 5,
        };
        let v = json(&ev);
        assert_eq!(
            (v["uid"].as_u64(), v["gid"].as_u64(), v["ppid"].as_u64()),
            (Some(1000), Some(100), Some(1))
        );
        assert_eq!((v["pcomm"].as_str(), v["cgroup"].as_u64()), (Some("bash"), Some(77)));
        assert_eq!(v["args"], "curl -s 'a b'");
        assert_eq!(
            v["container"],
            serde_json::json!({"id": "ab".repeat(32), "name": "web", "image": "nginx:1"})
        );
        assert_eq!(
            v["reader"],
            serde_json::json!({"pid": 812, "tid": 813, "comm": "dockerd", "readers": 2, "uid": 0, "cgroup": 5, "args": "dockerd -H fd://"})
        );
        ev.reader = Reader::NotSeen;
        assert!(json(&ev)["reader"].is_null() && json(&ev).get("reader").is_some(), "null: no read seen");
    }
}
