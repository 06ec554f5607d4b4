//! Which well-known port a named socket gets, so Wireshark dissects its
//! protocol with no Decode As.

use std::fmt;
use std::str::FromStr;

use sockdump_common::{SockType, SocketName};

/// One `--port-map PREFIX=PORT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortMapEntry {
    /// A path prefix, or `@` and an abstract name prefix.
    pub prefix: String,
    pub port: u16,
}

impl FromStr for PortMapEntry {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        // The port follows the last `=`, so prefixes may contain `=`.
        let (prefix, port) = s.rsplit_once('=').ok_or_else(|| format!("{s:?} is not PREFIX=PORT"))?;
        if prefix.is_empty() {
            return Err(format!("{s:?} has an empty path prefix"));
        }
        let port = port
            .parse::<u16>()
            .ok()
            .filter(|&p| p != 0)
            .ok_or_else(|| format!("{s:?}: the port must be a number from 1 to 65535"))?;
        Ok(PortMapEntry { prefix: prefix.to_owned(), port })
    }
}

impl fmt::Display for PortMapEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.prefix, self.port)
    }
}

/// Which well-known port a named socket gets: `--port-map` entries first
/// (the longest matching prefix), then the built-in table.
#[derive(Debug, Clone, Default)]
pub struct PortMap {
    entries: Vec<PortMapEntry>,
}

fn starts_with(name: SocketName<'_>, prefix: &str) -> bool {
    match (name, prefix.strip_prefix('@')) {
        (SocketName::Abstract(n), Some(p)) => n.starts_with(p.as_bytes()),
        (SocketName::Path(p), None) => p.starts_with(prefix.as_bytes()),
        _ => false,
    }
}

/// How a built-in rule recognises a socket name.
#[derive(Debug, Clone, Copy)]
enum Pattern {
    /// The last path component is this.
    Base(&'static str),
    /// The last path component starts with the first string and ends with
    /// the second.
    BaseAround(&'static str, &'static str),
    /// The last path component starts with this; the rest is the port
    /// number (the rule's port when it is none).
    BaseThenPort(&'static str),
    /// The name is this, then a number n below 64: the rule's port + n.
    NameThenOffset(&'static str),
    /// A datagram socket's filesystem path is this.
    DatagramPath(&'static str),
}

/// The well-known ports sockdump knows socket names for; the first rule
/// that matches wins. `docs/PCAPNG.md` lists them for users.
const BUILTIN: &[(Pattern, u16)] = &[
    // PostgreSQL names its socket after its TCP port: .s.PGSQL.5432
    (Pattern::BaseThenPort(".s.PGSQL."), 5432),
    (Pattern::BaseAround("redis", ".sock"), 6379),
    (Pattern::Base("mysqld.sock"), 3306),
    (Pattern::Base("mysql.sock"), 3306),
    // HTTP APIs; containerd and CRI-O speak gRPC, which the HTTP dissector
    // passes to HTTP/2 on seeing the connection preface.
    (Pattern::Base("docker.sock"), 80),
    (Pattern::Base("podman.sock"), 80),
    (Pattern::Base("containerd.sock"), 80),
    (Pattern::Base("crio.sock"), 80),
    (Pattern::Base("cri-dockerd.sock"), 80),
    // X server n listens on /tmp/.X11-unix/Xn and TCP port 6000 + n.
    (Pattern::NameThenOffset("/tmp/.X11-unix/X"), 6000),
    // syslog(3) sends datagrams to /dev/log (journald's dev-log behind it).
    (Pattern::DatagramPath("/dev/log"), 514),
    (Pattern::DatagramPath("/run/systemd/journal/dev-log"), 514),
];

/// A decimal number, if `digits` is one.
fn number(digits: &[u8]) -> Option<u16> {
    std::str::from_utf8(digits).ok()?.parse().ok()
}

impl Pattern {
    /// The port `name` gets from a rule of this pattern and `port`.
    fn port(self, name: SocketName<'_>, sock_type: SockType, port: u16) -> Option<u16> {
        let bytes = match name {
            SocketName::Unnamed => return None,
            SocketName::Path(b) | SocketName::Abstract(b) => b,
        };
        let base = bytes.rsplit(|&b| b == b'/').next().unwrap_or(bytes);
        let matched = match self {
            Pattern::Base(b) => base == b.as_bytes(),
            Pattern::BaseAround(start, end) => {
                base.starts_with(start.as_bytes()) && base.ends_with(end.as_bytes())
            }
            Pattern::BaseThenPort(start) => {
                let rest = base.strip_prefix(start.as_bytes())?;
                return Some(number(rest).filter(|&p| p != 0).unwrap_or(port));
            }
            Pattern::NameThenOffset(start) => {
                let n = number(bytes.strip_prefix(start.as_bytes())?).filter(|&n| n < 64)?;
                return Some(port + n);
            }
            Pattern::DatagramPath(path) => {
                sock_type == SockType::Dgram && name == SocketName::Path(path.as_bytes())
            }
        };
        matched.then_some(port)
    }
}

/// The port of the first built-in rule `name` matches.
pub fn builtin_port(name: SocketName<'_>, sock_type: SockType) -> Option<u16> {
    BUILTIN.iter().find_map(|&(pattern, port)| pattern.port(name, sock_type, port))
}

impl PortMap {
    pub fn new(entries: Vec<PortMapEntry>) -> Self {
        PortMap { entries }
    }

    pub fn port_for(&self, name: SocketName<'_>, sock_type: SockType) -> Option<u16> {
        if !name.is_named() {
            return None;
        }
        self.entries
            .iter()
            .filter(|e| starts_with(name, &e.prefix))
            .max_by_key(|e| e.prefix.len())
            .map(|e| e.port)
            .or_else(|| builtin_port(name, sock_type))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_ports() {
        let stream = SockType::Stream;
        let port = |n: SocketName<'_>| builtin_port(n, stream);
        assert_eq!(port(SocketName::Path(b"/var/run/docker.sock")), Some(80));
        assert_eq!(port(SocketName::Path(b"/run/containerd/containerd.sock")), Some(80));
        assert_eq!(port(SocketName::Path(b"/run/containerd/containerd.sock.ttrpc")), None);
        assert_eq!(port(SocketName::Path(b"/run/postgresql/.s.PGSQL.5432")), Some(5432));
        assert_eq!(port(SocketName::Path(b"/tmp/.s.PGSQL.6543")), Some(6543));
        assert_eq!(port(SocketName::Path(b"/tmp/.s.PGSQL.x")), Some(5432));
        assert_eq!(port(SocketName::Path(b"/run/redis/redis-server.sock")), Some(6379));
        assert_eq!(port(SocketName::Path(b"/run/redis.sock")), Some(6379));
        assert_eq!(port(SocketName::Path(b"/run/mysqld/mysqld.sock")), Some(3306));
        assert_eq!(port(SocketName::Path(b"/var/lib/mysql/mysql.sock")), Some(3306));
        assert_eq!(port(SocketName::Path(b"/tmp/.X11-unix/X1")), Some(6001));
        assert_eq!(port(SocketName::Abstract(b"/tmp/.X11-unix/X0")), Some(6000));
        assert_eq!(port(SocketName::Path(b"/tmp/.X11-unix/X99")), None);
        assert_eq!(port(SocketName::Path(b"/dev/log")), None, "syslog is datagrams");
        assert_eq!(builtin_port(SocketName::Path(b"/dev/log"), SockType::Dgram), Some(514));
        assert_eq!(port(SocketName::Path(b"/run/app.sock")), None);
    }

    #[test]
    fn port_map_prefers_the_longest_user_prefix() {
        let map = PortMap::new(vec![
            "/run/app=8080".parse().unwrap(),
            "/run/app/admin=9090".parse().unwrap(),
            "@ns=1234".parse().unwrap(),
            "/run/docker.sock=2375".parse().unwrap(),
        ]);
        let st = SockType::Stream;
        assert_eq!(map.port_for(SocketName::Path(b"/run/app/x.sock"), st), Some(8080));
        assert_eq!(map.port_for(SocketName::Path(b"/run/app/admin.sock"), st), Some(9090));
        assert_eq!(map.port_for(SocketName::Abstract(b"ns/x"), st), Some(1234));
        assert_eq!(map.port_for(SocketName::Path(b"ns/x"), st), None);
        assert_eq!(map.port_for(SocketName::Path(b"/run/docker.sock"), st), Some(2375));
        assert_eq!(map.port_for(SocketName::Path(b"/run/mysqld/mysqld.sock"), st), Some(3306));
        assert_eq!(map.port_for(SocketName::Unnamed, st), None);
    }

    #[test]
    fn port_map_entries_parse() {
        let e: PortMapEntry = "/a=b=8080".parse().unwrap();
        assert_eq!((e.prefix.as_str(), e.port), ("/a=b", 8080));
        assert_eq!(e.to_string(), "/a=b=8080");
        assert!("/a".parse::<PortMapEntry>().is_err());
        assert!("=80".parse::<PortMapEntry>().is_err());
        assert!("/a=0".parse::<PortMapEntry>().is_err());
        assert!("/a=65536".parse::<PortMapEntry>().is_err());
    }
}
