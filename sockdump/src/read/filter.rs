//! `--pid`, `--comm` and `--sock` applied to messages read from a file, as
//! the kernel applies them while capturing.

use sockdump_common::{Event, SocketName};

/// The user-space version of the capture filters, for `-r`.
pub(super) struct ReadFilter {
    pub(super) pid: Option<u32>,
    pub(super) comm: Option<Vec<u8>>,
    pub(super) sock: Option<Vec<u8>>,
}

/// Whether a name's `sun_path` bytes start with `prefix` (as `--sock` gives it).
fn name_starts_with(name: SocketName<'_>, prefix: &[u8]) -> bool {
    match (name, prefix.split_first()) {
        (SocketName::Abstract(n), Some((0, rest))) => n.starts_with(rest),
        (SocketName::Path(p), Some((first, _))) if *first != 0 => p.starts_with(prefix),
        _ => false,
    }
}

impl ReadFilter {
    pub(super) fn matches(&self, ev: &Event<'_>) -> bool {
        self.pid.is_none_or(|pid| ev.pid == pid || ev.peer_pid == pid)
            && self.comm.as_deref().is_none_or(|comm| ev.comm == comm)
            && self.sock.as_deref().is_none_or(|prefix| {
                name_starts_with(ev.path, prefix) || name_starts_with(ev.peer_path, prefix)
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::read::tests::events;

    #[test]
    fn read_filters() {
        let big = vec![0u8; 10];
        let evs = events(&big);
        let f = ReadFilter { pid: Some(7), comm: None, sock: None };
        assert!(f.matches(&evs[0]), "peer pid matches");
        let f = ReadFilter { pid: None, comm: Some(b"my comm".to_vec()), sock: Some(b"\0logger".to_vec()) };
        assert!(!f.matches(&evs[0]));
        assert!(f.matches(&evs[4]));
        let f = ReadFilter { pid: None, comm: None, sock: Some(b"/tmp/a".to_vec()) };
        assert!(f.matches(&evs[0]) && f.matches(&evs[1]) && !f.matches(&evs[4]));
    }
}
