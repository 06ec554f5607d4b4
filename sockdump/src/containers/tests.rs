//! `Containers` and `list` against a fake engine: a unix socket in a temp
//! dir answering canned responses.

use std::collections::HashMap;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use super::*;

const LISTED: &str = "1111111111111111111111111111111111111111111111111111111111111111";
const GONE: &str = "2222222222222222222222222222222222222222222222222222222222222222";
const EVENTED: &str = "3333333333333333333333333333333333333333333333333333333333333333";
const INSPECTED: &str = "4444444444444444444444444444444444444444444444444444444444444444";
const CRIO: &str = "5555555555555555555555555555555555555555555555555555555555555555";

struct FakeEngine {
    _dir: tempfile::TempDir,
    socket: PathBuf,
    inspects: Arc<AtomicUsize>,
    /// A message each time an events connection closes.
    events_closed: mpsc::Receiver<()>,
}

fn list_body() -> String {
    format!(
        r#"[{{"Id":"{LISTED}","Names":["/other/alias","/web"],"Image":"nginx:1.25","ImageID":"sha256:ab",
        "Command":"nginx","Created":1700000000,"State":"running","Labels":{{"io.kubernetes.pod.name":"web-0",
        "io.kubernetes.pod.namespace":"prod"}}}},
        {{"Id":"{GONE}","Names":["/gone"],"Image":"busybox","Labels":null}},
        {{"Id":"not-an-id","Names":["/bad"]}}]"#
    )
}

fn inspect_body() -> String {
    format!(
        r#"{{"Id":"{INSPECTED}","Name":"/db","State":{{"Running":true}},"Config":{{"Image":"postgres:16",
        "Labels":{{"io.kubernetes.pod.name":"db-0","io.kubernetes.pod.namespace":"data"}}}}}}"#
    )
}

fn event(action: &str, id: &str, name: &str) -> String {
    format!(
        r#"{{"status":"{action}","id":"{id}","Type":"container","Action":"{action}","Actor":{{"ID":"{id}",
        "Attributes":{{"image":"redis","name":"{name}"}}}},"scope":"local","time":1700000001}}"#
    )
    .replace('\n', "")
        + "\n"
}

fn chunk(data: &str) -> String {
    format!("{:x}\r\n{data}\r\n", data.len())
}

fn serve(mut stream: UnixStream, inspects: &AtomicUsize, events_closed: &mpsc::Sender<()>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut request_line = String::new();
    reader.read_line(&mut request_line).unwrap();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap() == 0 || line == "\r\n" {
            break;
        }
    }
    let target = request_line.split(' ').nth(1).unwrap_or_default().to_string();
    let json = |status: &str, body: &str| {
        format!(
            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
    };
    if target == "/v1.40/containers/json" {
        let _ = stream.write_all(json("200 OK", &list_body()).as_bytes());
    } else if let Some(id) = target.strip_prefix("/v1.40/containers/").and_then(|t| t.strip_suffix("/json")) {
        inspects.fetch_add(1, Ordering::SeqCst);
        if id == INSPECTED {
            let body = inspect_body();
            let (first, second) = body.split_at(body.len() / 2);
            let response = format!(
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n{}{}0\r\n\r\n",
                chunk(first),
                chunk(second)
            );
            let _ = stream.write_all(response.as_bytes());
        } else {
            let _ = stream.write_all(json("404 Not Found", r#"{"message":"No such container"}"#).as_bytes());
        }
    } else if target.starts_with("/v1.40/events?filters=%7B%22type%22") {
        let create = event("create", EVENTED, "cache");
        let (first, second) = create.split_at(40);
        // events split over chunks, and two in one
        let stream_body = [
            chunk(first),
            chunk(second),
            chunk(&(event("destroy", GONE, "gone") + &event("start", EVENTED, "cache"))),
            chunk(&event("rename", EVENTED, "renamed")),
        ]
        .concat();
        let head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";
        if stream.write_all((head.to_string() + &stream_body).as_bytes()).is_ok() {
            // the stream stays open, as the engine's does, until the client goes
            let _ = stream.read(&mut [0; 1]);
        }
        let _ = events_closed.send(());
    } else {
        let _ = stream.write_all(json("404 Not Found", "{}").as_bytes());
    }
}

fn fake_engine() -> FakeEngine {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("docker.sock");
    let listener = UnixListener::bind(&socket).unwrap();
    let inspects = Arc::new(AtomicUsize::new(0));
    let (closed, events_closed) = mpsc::channel();
    let counter = Arc::clone(&inspects);
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let (counter, closed) = (Arc::clone(&counter), closed.clone());
            thread::spawn(move || serve(stream, &counter, &closed));
        }
    });
    FakeEngine { _dir: dir, socket, inspects, events_closed }
}

/// A cgroup2 tree with these paths; their cgroup ids.
fn cgroup_tree(paths: &[String]) -> (tempfile::TempDir, HashMap<String, u64>) {
    let dir = tempfile::tempdir().unwrap();
    let ids = paths
        .iter()
        .map(|path| {
            let full = dir.path().join(path.trim_start_matches('/'));
            fs::create_dir_all(&full).unwrap();
            (path.clone(), fs::metadata(&full).unwrap().ino())
        })
        .collect();
    (dir, ids)
}

fn eventually(containers: &mut Containers, cgroup: u64, done: impl Fn(&Container) -> bool) -> Arc<Container> {
    let started = Instant::now();
    loop {
        let container = containers.of_cgroup(cgroup).unwrap();
        if done(&container) {
            return container;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "still {container:?}");
        thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn an_absent_engine_gives_the_id_alone_at_once() {
    let docker = format!("/docker/{LISTED}");
    let (root, ids) = cgroup_tree(&[docker.clone(), "/user.slice/user-1000.slice/session-2.scope".into()]);
    let absent = root.path().join("absent.sock");
    let mut containers = Containers::start_with(Some(absent), CgroupPaths::new(root.path().into())).unwrap();
    let started = Instant::now();
    let container = containers.of_cgroup(ids[&docker]).unwrap();
    assert!(started.elapsed() < Duration::from_millis(500), "{:?}", started.elapsed());
    assert_eq!((container.id.as_str(), container.runtime, &container.name), (LISTED, Runtime::Docker, &None));
    assert_eq!(containers.of_cgroup(ids["/user.slice/user-1000.slice/session-2.scope"]), None);
    assert_eq!(containers.of_cgroup(u64::MAX - 1), None);
    // final once the engine is known to be absent
    let container = eventually(&mut containers, ids[&docker], |c| c.resolved);
    assert_eq!((&container.name, &container.image), (&None, &None));
}

#[test]
fn the_engine_fills_in_names() {
    let engine = fake_engine();
    let paths = [
        format!("/docker/{LISTED}"),
        format!("/system.slice/docker-{GONE}.scope"),
        format!("/system.slice/docker-{EVENTED}.scope/init"),
        format!("/kubepods/besteffort/pod7d5a6a3e-1e0b-4d2c-9a6f-3c1b2a4d5e6f/{INSPECTED}"),
        format!("/machine.slice/crio-{CRIO}.scope"),
    ];
    let (root, ids) = cgroup_tree(&paths);
    let mut containers =
        Containers::start_with(Some(engine.socket.clone()), CgroupPaths::new(root.path().into())).unwrap();

    // from the list
    let web = eventually(&mut containers, ids[&paths[0]], |c| c.name.is_some());
    let expected = Container {
        info: Arc::new(sockdump_common::Container {
            id: LISTED.into(),
            name: Some("web".into()),
            image: Some("nginx:1.25".into()),
            pod: Some("web-0".into()),
            namespace: Some("prod".into()),
        }),
        runtime: Runtime::Docker,
        resolved: true,
    };
    assert_eq!(*web, expected);
    // from the events, the last of which renamed it (after destroying GONE)
    let redis = eventually(&mut containers, ids[&paths[2]], |c| c.name.as_deref() == Some("renamed"));
    assert_eq!((redis.image.as_deref(), redis.resolved), (Some("redis"), true));
    let gone = eventually(&mut containers, ids[&paths[1]], |c| c.resolved);
    assert_eq!(gone.name, None);
    // inspected, being in no list or event
    let db = eventually(&mut containers, ids[&paths[3]], |c| c.resolved);
    assert_eq!(
        (db.runtime, db.name.as_deref(), db.image.as_deref(), db.pod.as_deref(), db.namespace.as_deref()),
        (Runtime::Containerd, Some("db"), Some("postgres:16"), Some("db-0"), Some("data"))
    );
    // another runtime's: the engine does not know it
    let crio = eventually(&mut containers, ids[&paths[4]], |c| c.resolved);
    assert_eq!((crio.runtime, &crio.name), (Runtime::CriO, &None));
    let asked = engine.inspects.load(Ordering::SeqCst);
    for _ in 0..10 {
        for id in ids.values() {
            containers.of_cgroup(*id);
        }
    }
    thread::sleep(Duration::from_millis(100));
    // each id at most once
    assert_eq!(engine.inspects.load(Ordering::SeqCst), asked);
    assert!(asked <= paths.len(), "{asked}");

    // dropping it closes the events stream
    drop(containers);
    engine.events_closed.recv_timeout(Duration::from_secs(5)).unwrap();
}

#[test]
fn lists_running_containers() {
    let engine = fake_engine();
    let listed = list(Some(&engine.socket)).unwrap();
    let names: Vec<_> = listed.iter().map(|c| (c.id.as_str(), c.name.as_deref())).collect();
    assert_eq!(names, [(GONE, Some("gone")), (LISTED, Some("web"))]);
    assert_eq!(listed[1].pod.as_deref(), Some("web-0"));
    let dir = tempfile::tempdir().unwrap();
    let err = list(Some(&dir.path().join("absent.sock"))).unwrap_err();
    assert!(format!("{err:#}").contains("cannot list the containers"), "{err:#}");
}

#[test]
fn matches_names_and_id_prefixes() {
    let container =
        sockdump_common::Container { id: LISTED.into(), name: Some("web".into()), ..Default::default() };
    for wanted in ["web", "/web", "1", "111111", LISTED] {
        assert!(matches(&container, wanted), "{wanted}");
    }
    for wanted in ["", "/", "we", "web2", "2", "1111x", "WEB"] {
        assert!(!matches(&container, wanted), "{wanted}");
    }
    let unnamed = sockdump_common::Container { name: None, ..container };
    assert!(!matches(&unnamed, "web") && matches(&unnamed, "11"));
}

#[test]
fn containers_can_move_to_another_thread() {
    fn send<T: Send>() {}
    send::<Containers>();
}
