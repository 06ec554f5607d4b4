//! Each message names the process that read it, with real servers whose
//! readers SO_PEERCRED does not name: PostgreSQL (the postmaster accepts,
//! a forked backend reads) and nginx (workers forked after listen()
//! accept). Needs root (eBPF), PostgreSQL, nginx, psql, curl and tshark;
//! the socket family (Linux 6.3+), the one that sees reads.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{fields, lua, skip_unless_root, Sockdump, TempDir, SOCKDUMP};
use sockdump_common::meta::{parse_comment, Comment, OwnedMeta};
use sockdump_common::Reader;

/// Whether this kernel must have the socket family.
fn kernel_has_socket_family() -> bool {
    let release = nix::sys::utsname::uname().unwrap().release().to_string_lossy().into_owned();
    let mut numbers = release.split(|c: char| !c.is_ascii_digit()).filter_map(|n| n.parse::<u32>().ok());
    (numbers.next().unwrap_or(0), numbers.next().unwrap_or(0)) >= (6, 3)
}

fn skip(test: &str) -> bool {
    if skip_unless_root(test) {
        return true;
    }
    if !kernel_has_socket_family() {
        eprintln!("SKIPPED {test}: this kernel is older than 6.3: no hook family here sees reads yet");
        return true;
    }
    false
}

/// The message comments of a pcapng capture, parsed.
fn messages(file: &Path) -> Vec<OwnedMeta> {
    fields(file, "frame.comment", &["frame.comment"], &[])
        .into_iter()
        .filter_map(|row| match parse_comment(&row[0]) {
            Ok(Comment::Message { meta, .. }) => Some(meta),
            _ => None,
        })
        .collect()
}

/// A socket-family capture to pcapng `file`, with `filter` options.
fn capture_to(file: &Path, filter: &[&str]) -> Sockdump {
    let mut args = vec!["--hook", "socket", "--format", "pcapng", "-o", file.to_str().unwrap()];
    args.extend(filter);
    Sockdump::start(&args)
}

fn reader_pid(meta: &OwnedMeta) -> Option<u32> {
    match meta.reader {
        Reader::Thread { pid, .. } => Some(pid),
        _ => None,
    }
}

/// PostgreSQL's binaries: Debian keeps them under /usr/lib/postgresql/VERSION/bin.
fn postgres_bin() -> PathBuf {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL is installed (scripts/install-deps)")
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|d| d.join("postgres").exists())
        .collect();
    dirs.sort();
    dirs.pop().expect("a PostgreSQL server under /usr/lib/postgresql")
}

/// Runs `program` as the user postgres.
fn as_postgres(program: &Path) -> Command {
    let mut command = Command::new("setpriv");
    command.args(["--reuid", "postgres", "--regid", "postgres", "--init-groups"]).arg(program);
    command
}

/// A socket-only PostgreSQL server in `dir`, stopped on drop.
struct Postgres {
    bin: PathBuf,
    data: PathBuf,
}

impl Postgres {
    fn start(dir: &TempDir) -> Postgres {
        let bin = postgres_bin();
        let data = dir.join("data");
        std::fs::create_dir(&data).unwrap();
        let chown = |path: &Path| {
            assert!(Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(path)
                .status()
                .unwrap()
                .success())
        };
        chown(dir.path());
        let initdb = as_postgres(&bin.join("initdb"))
            .args(["-A", "trust", "-U", "postgres", "-D"])
            .arg(&data)
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(initdb.success(), "initdb failed");
        let options = format!("-k {} -c listen_addresses=''", dir.path().display());
        let started = as_postgres(&bin.join("pg_ctl"))
            .arg("-D")
            .arg(&data)
            .args(["-w", "-o", &options, "-l"])
            .arg(dir.join("log"))
            .arg("start")
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(
            started.success(),
            "pg_ctl start failed: {}",
            std::fs::read_to_string(dir.join("log")).unwrap_or_default()
        );
        Postgres { bin, data }
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = as_postgres(&self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(&self.data)
            .args(["-m", "immediate", "stop"])
            .stdout(Stdio::null())
            .status();
    }
}

/// An interactive psql: statements in, one line of unaligned output back.
struct Psql {
    child: Child,
    out: BufReader<std::process::ChildStdout>,
}

impl Psql {
    fn connect(socket_dir: &Path) -> Psql {
        let mut child = Command::new("psql")
            .args(["-X", "-q", "-A", "-t", "-U", "postgres", "-h"])
            .arg(socket_dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("psql is installed");
        let out = BufReader::new(child.stdout.take().unwrap());
        Psql { child, out }
    }

    fn query(&mut self, sql: &str) -> String {
        writeln!(self.child.stdin.as_mut().unwrap(), "{sql}").unwrap();
        let mut line = String::new();
        self.out.read_line(&mut line).unwrap();
        line.trim().to_string()
    }
}

impl Drop for Psql {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

#[test]
fn psql_queries_name_the_backend_and_pid_keeps_its_whole_conversation() {
    if skip("psql_queries_name_the_backend_and_pid_keeps_its_whole_conversation") {
        return;
    }
    let dir = TempDir::new("postgres");
    let _server = Postgres::start(&dir);
    let dir_s = dir.path().to_str().unwrap();

    // the whole session, from the startup packet on
    let all = dir.join("all.pcapng");
    let capture = capture_to(&all, &["--sock", dir_s]);
    let mut psql = Psql::connect(dir.path());
    let backend: u32 = psql.query("select pg_backend_pid();").parse().expect("a backend pid");
    let psql_pid = psql.child.id();

    // then only what the backend sends or reads
    let by_pid = dir.join("backend.pcapng");
    let backend_s = backend.to_string();
    let filtered = capture_to(&by_pid, &["--pid", &backend_s]);
    assert_eq!(psql.query("select 'sockdump-query-marker';"), "sockdump-query-marker");
    drop(psql);
    std::thread::sleep(Duration::from_millis(500));
    capture.stop();
    filtered.stop();

    let all = messages(&all);
    let from_psql: Vec<&OwnedMeta> = all.iter().filter(|m| m.pid == psql_pid).collect();
    assert!(from_psql.len() >= 3, "startup, the query and the marker query from psql: {all:?}");
    for m in &from_psql {
        assert_ne!(m.peer_pid, backend, "SO_PEERCRED of psql's socket is the postmaster");
        assert_eq!(reader_pid(m), Some(backend), "psql's message read by the backend: {m:?}");
    }
    assert!(
        all.iter().any(|m| m.pid == backend && reader_pid(m) == Some(psql_pid)),
        "the backend's replies, read by psql"
    );

    let kept = messages(&by_pid);
    assert!(
        kept.iter().any(|m| m.pid == psql_pid && reader_pid(m) == Some(backend)),
        "--pid BACKEND keeps psql's query: {kept:?}"
    );
    assert!(kept.iter().any(|m| m.pid == backend), "and the backend's reply: {kept:?}");
    assert!(
        kept.iter().all(|m| m.pid == backend || m.peer_pid == backend || reader_pid(m) == Some(backend)),
        "{kept:?}"
    );
}

/// nginx with two workers, answering on a unix socket.
const NGINX_CONF: &str = "worker_processes 2;
daemon off;
master_process on;
pid DIR/nginx.pid;
error_log stderr;
events { worker_connections 64; }
http {
    access_log off;
    client_body_temp_path DIR/body;
    proxy_temp_path DIR/proxy;
    fastcgi_temp_path DIR/fastcgi;
    uwsgi_temp_path DIR/uwsgi;
    scgi_temp_path DIR/scgi;
    server {
        listen unix:DIR/nginx.sock;
        location / { return 200 \"hello from a worker\\n\"; }
    }
}
";

/// The pids of the children of `pid`.
fn children(pid: u32) -> Vec<u32> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).unwrap();
    tasks
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("children")).ok())
        .flat_map(|c| c.split_whitespace().filter_map(|p| p.parse().ok()).collect::<Vec<u32>>())
        .collect()
}

#[test]
fn curl_requests_to_nginx_name_the_worker_that_read_them() {
    if skip("curl_requests_to_nginx_name_the_worker_that_read_them") {
        return;
    }
    let dir = TempDir::new("nginx");
    let conf = dir.join("nginx.conf");
    std::fs::write(&conf, NGINX_CONF.replace("DIR", dir.path().to_str().unwrap())).unwrap();
    let mut nginx =
        Command::new("nginx").arg("-c").arg(&conf).stderr(Stdio::null()).spawn().expect("nginx is installed");
    let sock = dir.join("nginx.sock");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !(sock.exists() && children(nginx.id()).len() == 2) {
        assert!(Instant::now() < deadline, "nginx did not start two workers");
        std::thread::sleep(Duration::from_millis(50));
    }
    let workers = children(nginx.id());
    let file = dir.join("nginx.pcapng");
    let capture = capture_to(&file, &["--sock", sock.to_str().unwrap()]);
    for _ in 0..4 {
        let curl = Command::new("curl")
            .args(["-sS", "--max-time", "20", "--unix-socket"])
            .arg(&sock)
            .arg("http://localhost/")
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&curl.stdout), "hello from a worker\n");
    }
    std::thread::sleep(Duration::from_millis(500));
    capture.stop();
    // SIGTERM: the master takes its workers down (SIGKILL left them running)
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(nginx.id() as i32), nix::sys::signal::SIGTERM);
    let _ = nginx.wait();

    let requests: Vec<OwnedMeta> = messages(&file).into_iter().filter(|m| m.comm == b"curl").collect();
    assert_eq!(requests.len(), 4, "one request per curl");
    for request in &requests {
        assert_eq!(request.peer_pid, nginx.id(), "SO_PEERCRED names the master, which called listen()");
        let reader = reader_pid(request).expect("a reader");
        assert!(workers.contains(&reader), "request read by a worker ({workers:?}), not {reader}");
    }
    // the Lua plugin shows the reader, and -r prints it
    let rows = lua(&file, "sockdump.comm == \"curl\"", &["sockdump.reader_pid", "sockdump.reader_comm"]);
    assert_eq!(rows.len(), 4);
    for row in &rows {
        assert!(workers.contains(&row[0].parse().unwrap()) && row[1] == "nginx", "{row:?}");
    }
    let text =
        Command::new(SOCKDUMP).args(["-r", file.to_str().unwrap(), "--comm", "curl"]).output().unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    for request in &requests {
        let header = format!("[{} -> {}]", request.pid, reader_pid(request).unwrap());
        assert!(text.contains(&header), "-r shows {header}: {text}");
    }
}

/// A flood over one stream, read in 64 KiB pieces as it comes: every
/// message names its reader. Counts that jumped past a read in progress
/// (a send that found only its own buffer queued; a read that looked at
/// the sent count after the queue) left about one message in 7000 without
/// one, and held the rest back for the whole window.
#[test]
fn a_flood_read_as_it_comes_names_the_reader_of_every_message() {
    if skip("a_flood_read_as_it_comes_names_the_reader_of_every_message") {
        return;
    }
    const MESSAGES: usize = 100_000;
    let dir = TempDir::new("flood");
    let file = dir.join("flood.txt");
    let capture = Sockdump::start(&[
        "--hook",
        "socket",
        "--comm",
        "sdflood",
        "--seg-size",
        "16",
        "--segs-in-buffer",
        "65536",
        "-o",
        file.to_str().unwrap(),
    ]);
    std::thread::Builder::new()
        .name("sdflood".into())
        .spawn(|| {
            let (mut a, mut b) = std::os::unix::net::UnixStream::pair().unwrap();
            let reader = std::thread::spawn(move || {
                let mut sink = vec![0u8; 1 << 16];
                while std::io::Read::read(&mut b, &mut sink).unwrap() > 0 {}
            });
            let message = [b'f'; 1024];
            for _ in 0..MESSAGES {
                a.write_all(&message).unwrap();
            }
            drop(a);
            reader.join().unwrap();
        })
        .unwrap()
        .join()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let (_, lines) = capture.stop();
    let text = std::fs::read_to_string(&file).unwrap();
    let me = std::process::id();
    let headers: Vec<&str> = text.lines().filter(|l| l.contains(" >>> process ")).collect();
    assert!(lines.iter().any(|l| l.contains(" 0 lost")), "nothing lost: {lines:?}");
    assert_eq!(headers.len(), MESSAGES, "{lines:?}");
    let unnamed: Vec<&&str> = headers.iter().filter(|h| !h.contains(&format!("[{me} -> {me}]"))).collect();
    assert!(unnamed.is_empty(), "{} of {MESSAGES} name no reader, e.g. {:?}", unnamed.len(), unnamed.first());
}
