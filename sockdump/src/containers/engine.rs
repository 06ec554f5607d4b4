//! The Docker Engine API calls sockdump makes: list the running
//! containers, inspect one, follow container events.

use std::collections::HashMap;
use std::ffi::OsString;
use std::io::{self, BufReader};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::cgroup::is_container_id;
use super::http::{self, Body, HttpError, Timed};

/// dockerd 20.10 speaks 1.41; newer engines still answer 1.40 (the oldest
/// they drop is far older).
const API: &str = "/v1.40";
/// Labels can be many, but an event line of a megabyte is no real engine's.
const MAX_EVENT: usize = 1 << 20;
/// Longer than any real name, image or label value; caps what a hostile
/// engine can make the cache hold.
const MAX_FIELD: usize = 1024;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Http(#[from] HttpError),
    #[error("unexpected JSON from the engine: {0}")]
    Json(#[from] serde_json::Error),
}

impl From<io::Error> for EngineError {
    fn from(err: io::Error) -> EngineError {
        EngineError::Http(HttpError::Io(err))
    }
}

/// The engine's socket: `DOCKER_HOST` when it is `unix://PATH`, else
/// /run/docker.sock, else /var/run/docker.sock.
pub fn default_socket() -> PathBuf {
    socket_for(std::env::var_os("DOCKER_HOST"))
}

fn socket_for(docker_host: Option<OsString>) -> PathBuf {
    if let Some(path) =
        docker_host.as_deref().and_then(|h| h.to_str()).and_then(|h| h.strip_prefix("unix://"))
    {
        return PathBuf::from(path);
    }
    let run = PathBuf::from("/run/docker.sock");
    if run.exists() {
        run
    } else {
        PathBuf::from("/var/run/docker.sock")
    }
}

/// What the engine says about a container.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Info {
    pub name: Option<String>,
    pub image: Option<String>,
    pub pod: Option<String>,
    pub namespace: Option<String>,
}

fn bounded(s: &str) -> Option<String> {
    if s.is_empty() {
        return None;
    }
    let mut end = s.len().min(MAX_FIELD);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    Some(s[..end].to_string())
}

impl Info {
    fn new(name: Option<&str>, image: Option<&str>, labels: Option<&HashMap<String, String>>) -> Info {
        let label = |key: &str| labels.and_then(|l| l.get(key)).and_then(|v| bounded(v));
        Info {
            // Docker's names start with `/`
            name: name.map(|n| n.strip_prefix('/').unwrap_or(n)).and_then(bounded),
            image: image.and_then(bounded),
            pod: label("io.kubernetes.pod.name"),
            namespace: label("io.kubernetes.pod.namespace"),
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Summary {
    id: String,
    names: Option<Vec<String>>,
    image: Option<String>,
    labels: Option<HashMap<String, String>>,
}

/// The running containers, by id.
pub fn containers(socket: &Path) -> Result<Vec<(String, Info)>, EngineError> {
    let (status, body) = http::get(socket, &format!("{API}/containers/json"))?;
    if status != 200 {
        return Err(HttpError::Status(status).into());
    }
    let summaries: Vec<Summary> = serde_json::from_slice(&body)?;
    Ok(summaries
        .into_iter()
        .filter(|s| is_container_id(&s.id))
        .map(|s| {
            // links add names like `/web/db`; the container's own has one `/`
            let names = s.names.unwrap_or_default();
            let name = names.iter().find(|n| !n.trim_start_matches('/').contains('/')).or(names.first());
            let info = Info::new(name.map(String::as_str), s.image.as_deref(), s.labels.as_ref());
            (s.id, info)
        })
        .collect())
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Inspect {
    name: Option<String>,
    config: Option<InspectConfig>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct InspectConfig {
    image: Option<String>,
    labels: Option<HashMap<String, String>>,
}

/// One container; None when the engine does not know it (gone, or another
/// runtime's).
pub fn inspect(socket: &Path, id: &str) -> Result<Option<Info>, EngineError> {
    // the id goes into the request line: only hex may
    if !is_container_id(id) {
        return Ok(None);
    }
    let (status, body) = http::get(socket, &format!("{API}/containers/{id}/json"))?;
    match status {
        200 => {}
        404 => return Ok(None),
        other => return Err(HttpError::Status(other).into()),
    }
    let inspect: Inspect = serde_json::from_slice(&body)?;
    let config = inspect.config.as_ref();
    Ok(Some(Info::new(
        inspect.name.as_deref(),
        config.and_then(|c| c.image.as_deref()),
        config.and_then(|c| c.labels.as_ref()),
    )))
}

#[derive(Debug, PartialEq, Eq)]
pub enum Event {
    /// Created, started or renamed: what it is now.
    Changed(String, Info),
    Destroyed(String),
}

#[derive(Deserialize)]
struct RawEvent {
    #[serde(rename = "Type")]
    kind: Option<String>,
    #[serde(rename = "Action")]
    action: Option<String>,
    #[serde(rename = "Actor")]
    actor: Option<Actor>,
}

#[derive(Deserialize)]
struct Actor {
    #[serde(rename = "ID")]
    id: String,
    /// The container's labels, with `name` and `image` added.
    #[serde(rename = "Attributes")]
    attributes: Option<HashMap<String, String>>,
}

/// The container events, as the engine sends them.
pub struct Events {
    body: BufReader<Body<BufReader<Timed>>>,
}

/// Subscribes on `stream` to the container events sockdump wants.
pub fn events(stream: UnixStream) -> Result<Events, EngineError> {
    let filters = r#"{"type":["container"],"event":["create","start","rename","destroy"]}"#;
    let body = http::get_stream(stream, &format!("{API}/events?filters={}", query_escape(filters)))?;
    Ok(Events { body: BufReader::new(body) })
}

fn query_escape(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => char::from(b).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

impl Events {
    /// The next event about a container; None when the engine ends the stream.
    pub fn next(&mut self) -> Result<Option<Event>, EngineError> {
        // one JSON object per line (chunks need not follow the lines)
        while let Some(line) = http::read_line(&mut self.body, MAX_EVENT)? {
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            if let Some(event) = parse_event(&line)? {
                return Ok(Some(event));
            }
        }
        Ok(None)
    }
}

fn parse_event(line: &[u8]) -> Result<Option<Event>, EngineError> {
    let raw: RawEvent = serde_json::from_slice(line)?;
    let Some(actor) = raw.actor.filter(|a| is_container_id(&a.id)) else { return Ok(None) };
    if raw.kind.as_deref() != Some("container") {
        return Ok(None);
    }
    let attributes = actor.attributes.as_ref();
    let attribute = |key: &str| attributes.and_then(|a| a.get(key)).map(String::as_str);
    Ok(match raw.action.as_deref() {
        Some("create" | "start" | "rename") => Some(Event::Changed(
            actor.id.clone(),
            Info::new(attribute("name"), attribute("image"), attributes),
        )),
        Some("destroy") => Some(Event::Destroyed(actor.id)),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "3f4e5d6c7b8a99887766554433221100ffeeddccbbaa00112233445566778899";

    #[test]
    fn socket_from_docker_host() {
        assert_eq!(socket_for(Some("unix:///tmp/d.sock".into())), PathBuf::from("/tmp/d.sock"));
        for host in [None, Some("tcp://127.0.0.1:2375".into()), Some("".into())] {
            let socket = socket_for(host);
            assert!(socket == Path::new("/run/docker.sock") || socket == Path::new("/var/run/docker.sock"));
        }
    }

    #[test]
    fn escapes_the_filters() {
        assert_eq!(query_escape(r#"{"a":["b c"]}"#), "%7B%22a%22%3A%5B%22b%20c%22%5D%7D");
    }

    #[test]
    fn events() {
        let create = format!(
            r#"{{"status":"create","id":"{ID}","from":"nginx","Type":"container","Action":"create",
            "Actor":{{"ID":"{ID}","Attributes":{{"image":"nginx","name":"web",
            "io.kubernetes.pod.name":"web-0","io.kubernetes.pod.namespace":"prod"}}}},"scope":"local",
            "time":1700000000,"timeNano":1700000000000000000}}"#
        );
        let info = Info {
            name: Some("web".into()),
            image: Some("nginx".into()),
            pod: Some("web-0".into()),
            namespace: Some("prod".into()),
        };
        assert_eq!(parse_event(create.as_bytes()).unwrap(), Some(Event::Changed(ID.into(), info)));
        let destroy = format!(r#"{{"Type":"container","Action":"destroy","Actor":{{"ID":"{ID}"}}}}"#);
        assert_eq!(parse_event(destroy.as_bytes()).unwrap(), Some(Event::Destroyed(ID.into())));
        for ignored in [
            format!(r#"{{"Type":"container","Action":"die","Actor":{{"ID":"{ID}"}}}}"#),
            format!(r#"{{"Type":"network","Action":"create","Actor":{{"ID":"{ID}"}}}}"#),
            r#"{"Type":"container","Action":"create","Actor":{"ID":"../../etc"}}"#.to_string(),
            r#"{"Type":"container","Action":"create"}"#.to_string(),
            "{}".to_string(),
        ] {
            assert_eq!(parse_event(ignored.as_bytes()).unwrap(), None, "{ignored}");
        }
        assert!(parse_event(b"[1,2]").is_err());
        assert!(parse_event(br#"{"Actor":{"ID":5}}"#).is_err());
    }

    #[test]
    fn fields_are_bounded() {
        let long = "é".repeat(MAX_FIELD);
        let info = Info::new(Some(&format!("/{long}")), Some(""), None);
        let name = info.name.unwrap();
        assert!(name.len() <= MAX_FIELD && long.starts_with(&name));
        assert_eq!(info.image, None);
    }
}
