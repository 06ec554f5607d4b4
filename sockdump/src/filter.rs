//! `--pid`, `--comm`, `--sock`, `--uid` and `--container` in user space: on
//! messages read from a file (`-r`), as the kernel applies them while
//! capturing; and in a capture that names readers, on what only the reader
//! decides.

use sockdump_common::{Event, Reader, SocketName};

use crate::containers;

/// The capture filters as user space applies them. `--pid` keeps messages
/// sent by the process, read by it, or whose SO_PEERCRED peer it is;
/// `--comm` those sent or read by a thread of that name; `--uid` and
/// `--container` those sent or read by a process of that user or container.
#[derive(Debug, Clone, Default)]
pub struct MessageFilter {
    pub pid: Option<u32>,
    pub comm: Option<Vec<u8>>,
    pub sock: Option<Vec<u8>>,
    pub uid: Option<u32>,
    pub containers: Vec<String>,
}

/// Whether a name's `sun_path` bytes start with `prefix` (as `--sock` gives it).
fn name_starts_with(name: SocketName<'_>, prefix: &[u8]) -> bool {
    match (name, prefix.split_first()) {
        (SocketName::Abstract(n), Some((0, rest))) => n.starts_with(rest),
        (SocketName::Path(p), Some((first, _))) if *first != 0 => p.starts_with(prefix),
        _ => false,
    }
}

impl MessageFilter {
    /// Whether it filters on what only the reader may decide.
    pub fn involves_readers(&self) -> bool {
        self.pid.is_some() || self.comm.is_some()
    }

    pub fn matches(&self, ev: &Event<'_>) -> bool {
        let reader = match ev.reader {
            Reader::Thread { pid, comm, .. } => Some((pid, comm)),
            Reader::Unknown | Reader::NotSeen => None,
        };
        self.pid.is_none_or(|pid| ev.pid == pid || ev.peer_pid == pid || reader.is_some_and(|r| r.0 == pid))
            && self
                .comm
                .as_deref()
                .is_none_or(|comm| ev.comm == comm || reader.is_some_and(|r| r.1.as_bytes() == comm))
            && self.sock.as_deref().is_none_or(|prefix| {
                name_starts_with(ev.path, prefix) || name_starts_with(ev.peer_path, prefix)
            })
            && self.uid.is_none_or(|uid| {
                let reader_uid = match ev.reader {
                    Reader::Thread { uid, .. } => uid,
                    Reader::Unknown | Reader::NotSeen => None,
                };
                ev.process.is_some_and(|p| p.uid == uid) || reader_uid == Some(uid)
            })
            && (self.containers.is_empty()
                || [&ev.context.container, &ev.context.reader_container]
                    .into_iter()
                    .flatten()
                    .any(|c| self.containers.iter().any(|wanted| containers::matches(c, wanted))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::read::tests::events;
    use sockdump_common::Comm;

    #[test]
    fn filters_match_sender_peer_or_reader() {
        let big = vec![0u8; 10];
        let evs = events(&big);
        let f = MessageFilter { pid: Some(7), comm: None, sock: None, ..Default::default() };
        assert!(f.matches(&evs[0]), "peer pid matches");
        let f = MessageFilter {
            pid: None,
            comm: Some(b"my comm".to_vec()),
            sock: Some(b"\0logger".to_vec()),
            ..Default::default()
        };
        assert!(!f.matches(&evs[0]));
        assert!(f.matches(&evs[4]));
        let f = MessageFilter { pid: None, comm: None, sock: Some(b"/tmp/a".to_vec()), ..Default::default() };
        assert!(f.matches(&evs[0]) && f.matches(&evs[1]) && !f.matches(&evs[4]));
        let read = Event {
            reader: Reader::Thread {
                pid: 555,
                tid: 556,
                comm: Comm::new(b"postgres"),
                others: 0,
                uid: None,
                cgroup_id: 0,
            },
            ..evs[0].clone()
        };
        let by_pid = MessageFilter { pid: Some(555), comm: None, sock: None, ..Default::default() };
        let by_comm =
            MessageFilter { pid: None, comm: Some(b"postgres".to_vec()), sock: None, ..Default::default() };
        assert!(by_pid.matches(&read) && by_comm.matches(&read));
        assert!(!by_pid.matches(&evs[0]) && !by_comm.matches(&evs[0]));
        assert!(
            by_pid.involves_readers()
                && !MessageFilter { pid: None, comm: None, sock: Some(vec![]), ..Default::default() }
                    .involves_readers()
        );
    }
}
