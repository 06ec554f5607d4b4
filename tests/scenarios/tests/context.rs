//! Who is talking: each message names its sender's (and reader's) user,
//! parent, command line and container; `--container`, `--uid` and
//! `sockdump -- CMD` keep only theirs. A private Docker engine runs the
//! static peer in a container, talking over a bind-mounted socket to a
//! server on the host. Needs root, docker.io and tshark; the socket family
//! (Linux 6.3+) for readers.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::thread::sleep;
use std::time::{Duration, Instant};

use sockdump_common::meta::{parse_comment, Comment, OwnedMeta};
use sockdump_test_support::{skip_unless_root, DockerEngine};

const SCENARIOS: &str = env!("CARGO_BIN_EXE_sockdump-scenarios");

/// sockdump, built beside this crate's binary by `cargo build --workspace`.
fn sockdump() -> PathBuf {
    let path = Path::new(SCENARIOS).with_file_name("sockdump");
    assert!(path.exists(), "{} is missing: run `cargo build --workspace` first", path.display());
    path
}

/// Kills a helper process however the test ends.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn echo_server(socket: &Path) -> Killed {
    let server = Killed(Command::new(SCENARIOS).arg("echo-server").arg(socket).spawn().unwrap());
    let started = Instant::now();
    while !socket.exists() {
        assert!(started.elapsed() < Duration::from_secs(10), "the echo server never listened");
        sleep(Duration::from_millis(10));
    }
    server
}

fn client(socket: &Path, message: &str) -> Output {
    let out = Command::new(SCENARIOS).arg("client").arg(socket).arg(message).output().unwrap();
    assert!(out.status.success(), "client: {}", String::from_utf8_lossy(&out.stderr));
    out
}

/// A running capture, live once it printed `listening`.
struct Capture {
    child: Child,
    stderr: mpsc::Receiver<String>,
    lines: Vec<String>,
}

impl Capture {
    fn start(args: &[&str], docker_host: Option<&Path>) -> Capture {
        Capture::start_hooked("auto", args, docker_host)
    }

    fn start_hooked(hook: &str, args: &[&str], docker_host: Option<&Path>) -> Capture {
        let mut command = Command::new(sockdump());
        command.args(["--hook", hook]).args(args).stdin(Stdio::null()).stderr(Stdio::piped());
        if let Some(socket) = docker_host {
            command.env("DOCKER_HOST", format!("unix://{}", socket.display()));
        }
        let mut child = command.spawn().unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut capture = Capture { child, stderr: rx, lines: Vec::new() };
        loop {
            let line = capture
                .stderr
                .recv_timeout(Duration::from_secs(60))
                .unwrap_or_else(|_| panic!("sockdump {args:?} never listened: {:?}", capture.lines));
            let live = line.starts_with("listening");
            capture.lines.push(line);
            if live {
                return capture;
            }
        }
    }

    /// Waits for sockdump to exit (after SIGTERM when `stop`); its status.
    fn finish(mut self, stop: bool) -> (i32, Vec<String>) {
        if stop {
            let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
            nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(Instant::now() < deadline, "sockdump did not stop: {:?}", self.lines);
            sleep(Duration::from_millis(20));
        };
        self.lines.extend(self.stderr.try_iter());
        (status.code().unwrap_or(-1), self.lines)
    }
}

/// (comment, payload) of every message packet of a pcapng capture.
fn messages(file: &Path) -> Vec<(OwnedMeta, String)> {
    let out = Command::new("tshark")
        .args(["-r"])
        .arg(file)
        .args(["-T", "fields", "-E", "separator=|", "-e", "frame.comment", "-e", "tcp.payload"])
        .output()
        .expect("tshark is installed");
    assert!(out.status.success(), "tshark: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| {
            let (comment, payload) = line.split_once('|')?;
            let Ok(Comment::Message { meta, .. }) = parse_comment(comment) else { return None };
            let bytes: Vec<u8> = (0..payload.len() / 2)
                .map(|i| u8::from_str_radix(&payload[2 * i..2 * i + 2], 16).unwrap())
                .collect();
            Some((meta, String::from_utf8_lossy(&bytes).into_owned()))
        })
        .collect()
}

fn find<'m>(messages: &'m [(OwnedMeta, String)], payload: &str) -> &'m OwnedMeta {
    let payloads: Vec<&str> = messages.iter().map(|(_, p)| p.as_str()).collect();
    &messages.iter().find(|(_, p)| p == payload).unwrap_or_else(|| panic!("no {payload:?} in {payloads:?}")).0
}

fn has(messages: &[(OwnedMeta, String)], payload: &str) -> bool {
    messages.iter().any(|(_, p)| p == payload)
}

fn container_name(meta: &OwnedMeta) -> Option<&str> {
    meta.context.container.as_ref().and_then(|c| c.name.as_deref())
}

fn reader_container_name(meta: &OwnedMeta) -> Option<&str> {
    meta.context.reader_container.as_ref().and_then(|c| c.name.as_deref())
}

#[test]
fn containers_are_named_and_filtered_also_when_they_start_later() {
    if skip_unless_root("containers_are_named_and_filtered_also_when_they_start_later") {
        return;
    }
    let engine = DockerEngine::start().unwrap();
    engine.import_image("sockdump-ctx", &[(Path::new(SCENARIOS), "/bin/sockdump-scenarios")]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("sock");
    let _server = echo_server(&socket);
    let (all_file, only_file) = (dir.path().join("all.pcapng"), dir.path().join("only.pcapng"));
    let sock = socket.to_str().unwrap();
    let all = Capture::start(
        &["--format", "pcapng", "-o", all_file.to_str().unwrap(), "--sock", sock],
        Some(engine.socket()),
    );
    // the container does not exist yet
    let only = Capture::start(
        &["--format", "pcapng", "-o", only_file.to_str().unwrap(), "--container", "sd-ctx-later"],
        Some(engine.socket()),
    );

    client(&socket, "from-host");
    let run = engine
        .docker()
        .args(["run", "--rm", "--network", "none", "--name", "sd-ctx-later", "--volume"])
        .arg(format!("{}:/w", dir.path().display()))
        .args(["sockdump-ctx", "/bin/sockdump-scenarios", "client", "/w/sock", "from-container"])
        .output()
        .unwrap();
    assert!(run.status.success(), "docker run: {}", String::from_utf8_lossy(&run.stderr));
    client(&socket, "from-host-after");
    sleep(Duration::from_millis(500));
    let (status, lines) = all.finish(true);
    assert_eq!(status, 0, "{lines:?}");
    let (status, lines) = only.finish(true);
    assert_eq!(status, 0, "{lines:?}");

    let all = messages(&all_file);
    let sent = find(&all, "from-container");
    let container = sent.context.container.as_ref().expect("the container is named");
    assert_eq!(container.name.as_deref(), Some("sd-ctx-later"));
    assert_eq!(container.image.as_deref(), Some("sockdump-ctx"));
    assert!(
        container.id.len() == 64 && container.id.bytes().all(|b| b.is_ascii_hexdigit()),
        "{}",
        container.id
    );
    assert_eq!(sent.context.args.as_deref(), Some("/bin/sockdump-scenarios client /w/sock from-container"));
    let process = sent.process.expect("uid, gid, parent");
    assert_eq!(process.uid, 0);
    // the host server reads it, and its reply is read in the container
    assert_eq!(sent.context.reader_container, None);
    let reply = find(&all, "re:from-container");
    assert_eq!(reader_container_name(reply), Some("sd-ctx-later"));
    assert_eq!(container_name(reply), None, "the server runs on the host");

    let host = find(&all, "from-host");
    assert_eq!(host.context.container, None);
    // a client that lived milliseconds, named by its exec record
    assert_eq!(host.context.args.as_deref(), Some(format!("{SCENARIOS} client {sock} from-host").as_str()));
    assert_eq!(host.process.map(|p| p.ppid), Some(std::process::id()));

    // --container: the container's messages and the replies it read, and
    // nothing that no process in it sent or read
    let only = messages(&only_file);
    assert!(has(&only, "from-container") && has(&only, "re:from-container"), "{only:?}");
    for (meta, payload) in &only {
        assert!(
            container_name(meta) == Some("sd-ctx-later")
                || reader_container_name(meta) == Some("sd-ctx-later"),
            "{payload:?} is neither sent nor read in the container: {meta:?}"
        );
    }

    // the text header names the container; -r filters by it too
    let text = Command::new(sockdump())
        .args(["--format", "string", "-r"])
        .arg(&all_file)
        .args(["--container", "sd-ctx-later"])
        .output()
        .unwrap();
    assert!(text.status.success(), "sockdump -r: {}", String::from_utf8_lossy(&text.stderr));
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("container sd-ctx-later path"), "{text}");
    assert!(text.contains("from-container") && !text.contains("from-host"), "{text}");

    // Wireshark's fields, through the Lua plugin
    let sender =
        lua_fields(&all_file, "sockdump.container == \"sd-ctx-later\"", &["sockdump.args", "sockdump.image"]);
    assert!(
        sender.contains(&"/bin/sockdump-scenarios client /w/sock from-container|sockdump-ctx".to_string()),
        "{sender:?}"
    );
    // Wireshark's dialog lists the running containers, again on reload
    let running = engine
        .docker()
        .args(["run", "--detach", "--network", "none", "--name", "sd-ctx-listed", "sockdump-ctx"])
        .args(["/bin/busybox", "sleep", "60"])
        .output()
        .unwrap();
    assert!(running.status.success(), "docker run: {}", String::from_utf8_lossy(&running.stderr));
    for extra in [&[][..], &["--extcap-reload-option", "container"]] {
        let dialog = Command::new(sockdump())
            .args(["--extcap-interface", "sockdump", "--extcap-config"])
            .args(extra)
            .env("DOCKER_HOST", format!("unix://{}", engine.socket().display()))
            .output()
            .unwrap();
        let dialog = String::from_utf8_lossy(&dialog.stdout);
        assert!(dialog.contains("{value=sd-ctx-listed}{display=sd-ctx-listed (sockdump-ctx, "), "{dialog}");
        assert_eq!(dialog.contains("{call=--container}"), extra.is_empty(), "{dialog}");
    }
    let removed = engine.docker().args(["rm", "--force", "sd-ctx-listed"]).output().unwrap();
    assert!(removed.status.success(), "docker rm: {}", String::from_utf8_lossy(&removed.stderr));
    let replies = lua_fields(&all_file, "sockdump.reader_container == \"sd-ctx-later\"", &["sockdump.uid"]);
    assert_eq!(replies, ["0"]);
}

/// tshark's `fields` of the packets `filter` keeps, `|`-separated, with
/// sockdump's Lua plugin loaded; any complaint on stderr fails.
fn lua_fields(file: &Path, filter: &str, fields: &[&str]) -> Vec<String> {
    let plugin = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../wireshark/sockdump.lua");
    let mut command = Command::new("tshark");
    command.arg("-X").arg(format!("lua_script:{}", plugin.display())).arg("-r").arg(file);
    command.args(["-Y", filter, "-T", "fields", "-E", "separator=|"]);
    for field in fields {
        command.args(["-e", field]);
    }
    let out = command.output().expect("tshark is installed");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let complaints: Vec<&str> =
        stderr.lines().filter(|l| !l.trim().is_empty() && !l.contains("Running as user \"root\"")).collect();
    assert!(out.status.success() && complaints.is_empty(), "tshark: {complaints:?}");
    String::from_utf8_lossy(&out.stdout).lines().map(str::to_owned).collect()
}

/// A client that keeps talking to `socket` until dropped.
fn chatter(socket: &Path, message: &str) -> Killed {
    let script =
        format!("while :; do {SCENARIOS} client {} {message} >/dev/null; sleep 0.01; done", socket.display());
    Killed(Command::new("sh").arg("-c").arg(script).spawn().unwrap())
}

/// With each family here: the syscall family sees no reads, and keeps the
/// replies as sent to a socket whose SO_PEERCRED peer CMD is.
#[test]
fn a_command_and_what_it_starts_are_followed_and_its_status_returned() {
    if skip_unless_root("a_command_and_what_it_starts_are_followed_and_its_status_returned") {
        return;
    }
    for hook in ["auto", "tracepoint"] {
        follow_a_command(hook);
    }
}

fn follow_a_command(hook: &str) {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("sock");
    let _server = echo_server(&socket);
    let _unrelated = chatter(&socket, "unrelated");
    let file = dir.path().join("cmd.pcapng");
    let capture = Capture::start_hooked(
        hook,
        &[
            "--format",
            "pcapng",
            "-o",
            file.to_str().unwrap(),
            "--",
            SCENARIOS,
            "fork-client",
            socket.to_str().unwrap(),
            "m",
        ],
        None,
    );
    let (status, lines) = capture.finish(false);
    assert_eq!(status, 3, "fork-client's status with hook {hook}: {lines:?}");
    let got = messages(&file);
    for payload in ["m-parent", "m-child", "re:m-parent", "re:m-child"] {
        assert!(has(&got, payload), "hook {hook}: no {payload:?} in {got:?}");
    }
    assert!(!has(&got, "unrelated") && !has(&got, "re:unrelated"), "hook {hook}: {got:?}");
    let child = find(&got, "m-child");
    let parent = find(&got, "m-parent");
    assert_eq!(child.process.map(|p| p.ppid), Some(parent.pid));
    // the child did not exec: it runs its parent's command line
    assert_eq!(child.context.args, parent.context.args);
}

#[test]
fn uid_keeps_one_users_conversations() {
    if skip_unless_root("uid_keeps_one_users_conversations") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let socket = dir.path().join("sock");
    let _server = echo_server(&socket);
    std::fs::set_permissions(&socket, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let file = dir.path().join("uid.pcapng");
    let capture = Capture::start(
        &[
            "--format",
            "pcapng",
            "-o",
            file.to_str().unwrap(),
            "--uid",
            "nobody",
            "--sock",
            socket.to_str().unwrap(),
        ],
        None,
    );
    client(&socket, "as-root");
    let nobody = Command::new("setpriv")
        .args(["--reuid", "65534", "--regid", "65534", "--clear-groups", SCENARIOS, "client"])
        .arg(&socket)
        .arg("as-nobody")
        .output()
        .unwrap();
    assert!(nobody.status.success(), "{}", String::from_utf8_lossy(&nobody.stderr));
    sleep(Duration::from_millis(300));
    let (status, lines) = capture.finish(true);
    assert_eq!(status, 0, "{lines:?}");
    let got = messages(&file);
    assert_eq!(find(&got, "as-nobody").process.map(|p| p.uid), Some(65534));
    assert!(has(&got, "re:as-nobody"), "the reply to nobody's socket: {got:?}");
    assert!(!has(&got, "as-root") && !has(&got, "re:as-root"), "{got:?}");
}

#[test]
fn a_command_runs_as_the_user_who_ran_sudo() {
    if skip_unless_root("a_command_runs_as_the_user_who_ran_sudo") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let ids = dir.path().join("ids");
    let script = format!("id -u > {0}; id -g >> {0}; id -G >> {0}", ids.display());
    let mut command = Command::new(sockdump());
    command.args(["--format", "string", "-o", "/dev/null", "--", "sh", "-c", &script]);
    command.env("SUDO_UID", "65534").env("SUDO_GID", "65534").stderr(Stdio::piped());
    let out = command.output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(std::fs::read_to_string(&ids).unwrap(), "65534\n65534\n65534\n");
}
