//! `--format json`: JSON lines, one object per message, for jq, log
//! pipelines and scripts. The fields are documented in `docs/JSON.md` and
//! named as the pcapng comment keys are.

use std::borrow::Cow;
use std::io::{self, Write};

use base64::Engine;
use chrono::{DateTime, SecondsFormat};
use serde::Serialize;
use sockdump_common::meta::FLAG_NAMES;
use sockdump_common::{Container, Event, Reader, SockType, SocketName};

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
#[derive(Serialize)]
struct Record<'a> {
    /// RFC 3339, UTC, nanoseconds.
    time: String,
    time_ns: i64,
    pid: u32,
    tid: u32,
    comm: Cow<'a, str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    uid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    gid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ppid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pcomm: Option<Cow<'a, str>>,
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
    path: Cow<'a, str>,
    peer_path: Cow<'a, str>,
    ino: u64,
    peer_ino: u64,
    len: u32,
    captured: usize,
    truncated: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    flags: Vec<&'static str>,
    data: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    text: Option<&'a str>,
}

#[derive(Serialize)]
struct ReaderRecord<'a> {
    pid: u32,
    tid: u32,
    comm: Cow<'a, str>,
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
                comm: text_of(comm.as_bytes()),
                readers: (others > 0).then(|| u64::from(others) + 1),
                uid,
                cgroup: (cgroup_id != 0).then_some(cgroup_id),
                args: context.reader_args.as_deref(),
                container: context.reader_container.as_deref().map(ContainerRecord::of),
            })),
        };
        let flags =
            FLAG_NAMES.iter().filter(|(bit, _)| event.flags.0 & bit != 0).map(|(_, name)| *name).collect();
        Record {
            time: DateTime::from_timestamp_nanos(time_ns).to_rfc3339_opts(SecondsFormat::Nanos, true),
            time_ns,
            pid: event.pid,
            tid: event.tid,
            comm: text_of(event.comm),
            uid: process.map(|p| p.uid),
            gid: process.map(|p| p.gid),
            ppid: process.map(|p| p.ppid),
            pcomm: process.map(|p| text_of(p.parent_comm.as_bytes())),
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
            path: name_of(event.path),
            peer_path: name_of(event.peer_path),
            ino: event.sock_ino,
            peer_ino: event.peer_ino,
            len: event.len,
            captured: event.data.len(),
            truncated: event.data.len() < event.len as usize,
            flags,
            data,
            text: std::str::from_utf8(event.data).ok(),
        }
    }
}

/// A socket name as users write it: `@` before abstract names, empty for
/// unnamed sockets.
fn name_of(name: SocketName<'_>) -> Cow<'_, str> {
    match name {
        SocketName::Unnamed => Cow::Borrowed(""),
        SocketName::Path(path) => text_of(path),
        SocketName::Abstract(name) => Cow::Owned(format!("@{}", text_of(name))),
    }
}

/// Bytes as a string: as they are when UTF-8, else with every byte that
/// is not part of valid UTF-8 written `\xNN`.
fn text_of(bytes: &[u8]) -> Cow<'_, str> {
    if let Ok(text) = std::str::from_utf8(bytes) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(bytes.len() + 8);
    for chunk in bytes.utf8_chunks() {
        out.push_str(chunk.valid());
        for byte in chunk.invalid() {
            out.push_str(&format!("\\x{byte:02x}"));
        }
    }
    Cow::Owned(out)
}

/// serde_json escapes C0 controls; DEL and the C1 controls (U+0080 to
/// U+009F, which some terminals obey as escape sequences) are escaped too,
/// so a captured name or message shown by `jq` or `cat` cannot drive the
/// terminal.
struct TerminalSafe;

impl serde_json::ser::Formatter for TerminalSafe {
    fn write_string_fragment<W: ?Sized + Write>(&mut self, writer: &mut W, fragment: &str) -> io::Result<()> {
        let mut rest = fragment;
        while let Some(at) = rest.find(|c: char| ('\u{7f}'..='\u{9f}').contains(&c)) {
            writer.write_all(&rest.as_bytes()[..at])?;
            let control = rest[at..].chars().next().unwrap_or_default();
            write!(writer, "\\u{:04x}", u32::from(control))?;
            rest = &rest[at + control.len_utf8()..];
        }
        writer.write_all(rest.as_bytes())
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

    #[test]
    fn control_characters_never_leave_raw() {
        let line = {
            let mut sink = JsonSink::new(Vec::new(), WallClock::with_offset(0), false);
            sink.write_event(&event("\u{1b}[2J\u{7f}\u{9b}31m\u{a0}ok".as_bytes())).unwrap();
            sink.out
        };
        for raw in [&b"\x1b"[..], b"\x7f", "\u{9b}".as_bytes()] {
            assert!(!line.windows(raw.len()).any(|w| w == raw), "{raw:?} left raw");
        }
        let v: serde_json::Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(v["text"], "\u{1b}[2J\u{7f}\u{9b}31m\u{a0}ok", "the text is still exact");
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
