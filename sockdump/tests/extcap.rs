//! sockdump as a Wireshark extcap, driven by a real tshark: installed into a
//! scratch home, listed by `tshark -D`, capturing with options and a capture
//! filter, stopped by SIGTERM or a closed fifo, and run by a user without
//! root through file capabilities.

mod common;

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{fields, one_line_error, skip_unless_root, sockdump, tshark, usage_error, TempDir, SOCKDUMP};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn answers_wiresharks_listing_calls() {
    let out = sockdump(&["--extcap-interfaces", "--extcap-version=4.0"]);
    assert!(out.status.success());
    assert!(stdout(&out).contains("interface {value=sockdump}{display=Unix sockets (sockdump)}"));
    // a newer Wireshark's unknown arguments are tolerated
    let out = sockdump(&[
        "--extcap-interfaces",
        "--extcap-version=9.0",
        "--extcap-future-flag",
        "--debug-level",
        "3",
    ]);
    assert!(out.status.success() && stdout(&out).starts_with("extcap {version="), "{out:?}");
    let out = sockdump(&["--extcap-dlts", "--extcap-interface", "sockdump"]);
    assert!(stdout(&out).starts_with("dlt {number=1}{name=EN10MB}"));
    let out = sockdump(&["--extcap-config", "--extcap-interface", "sockdump"]);
    for call in ["--sock", "--pid", "--comm", "--seg-size", "--hook", "--port-map"] {
        assert!(stdout(&out).contains(&format!("{{call={call}}}")), "{call}");
    }
    let out = sockdump(&["--extcap-dlts", "--extcap-interface", "eth0"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("sockdump: unknown extcap interface \"eth0\""));
}

#[test]
fn checks_capture_filters_without_capturing() {
    let check =
        |filter: &str| sockdump(&["--extcap-interface", "sockdump", "--extcap-capture-filter", filter]);
    for valid in ["", "pid 1", "sock /run/docker.sock and comm curl"] {
        let out = check(valid);
        assert!(out.status.success() && out.stdout.is_empty(), "{valid:?}: {out:?}");
    }
    let out = check("tcp port 80");
    assert!(out.status.success());
    assert!(stdout(&out).starts_with("capture filter: unknown term \"tcp\""), "{}", stdout(&out));
}

/// A bad command line in extcap mode, whether typed (`sockdump extcap`) or
/// passed on from Wireshark's dialog, takes sockdump's one-line error path.
#[test]
fn command_line_errors_in_extcap_mode_are_one_line() {
    for (args, says) in [
        (&["extcap", "install", "--bogus"][..], "unexpected argument '--bogus' found (see --help)"),
        (&["extcap", "bogus"], "unrecognized subcommand 'bogus'"),
        (&["extcap"], "'sockdump extcap' requires a subcommand"),
        (
            &["--capture", "--extcap-interface", "sockdump", "--fifo", "/no/such/fifo", "--pid", "x"],
            "invalid value 'x' for '--pid <PID>'",
        ),
    ] {
        let err = usage_error(args);
        assert!(err.contains(says), "{args:?}: {err}");
    }
}

/// `sockdump extcap install` with HOME in a scratch folder.
fn install(home: &TempDir, args: &[&str]) -> Output {
    Command::new(SOCKDUMP).args(["extcap", "install"]).args(args).env("HOME", home.path()).output().unwrap()
}

/// A home whose Wireshark folders hold the installed extcap.
fn installed_home(tag: &str) -> TempDir {
    let home = TempDir::new(tag);
    let out = install(&home, &[]);
    assert!(out.status.success(), "install: {out:?}");
    let said = stdout(&out);
    assert!(said.contains("linked ") && said.contains("sockdump.lua"), "{said}");
    home
}

fn tshark_as(home: &Path, user: Option<&str>, args: &[&str]) -> Command {
    let mut command = match user {
        // runuser sets HOME from the password database: set it after
        Some(user) => {
            let mut c = Command::new("runuser");
            c.args(["-u", user, "--", "env"]).arg(format!("HOME={}", home.display())).arg("tshark");
            c
        }
        None => Command::new("tshark"),
    };
    command.args(args).env("HOME", home).env("LC_ALL", "C");
    command
}

#[test]
fn install_makes_tshark_list_the_interface_and_uninstall_removes_it() {
    let home = installed_home("extcap-list");
    let listed = |home: &Path| stdout(&tshark_as(home, None, &["-D"]).output().unwrap());
    assert!(listed(home.path()).contains("sockdump (Unix sockets (sockdump))"), "{}", listed(home.path()));
    let out = install(&home, &["--uninstall"]);
    assert!(out.status.success() && stdout(&out).starts_with("removed "), "{out:?}");
    assert!(!listed(home.path()).contains("sockdump"));
}

#[test]
fn install_without_tshark_says_so_in_one_line() {
    let home = TempDir::new("extcap-no-tshark");
    let err = one_line_error(&install(&home, &["--tshark", "/no/such/tshark"]));
    assert!(
        err.contains("running `/no/such/tshark -G folders` failed; install tshark (apt-get install tshark)"),
        "{err}"
    );
}

#[test]
fn a_failing_tshark_is_reported_in_one_line() {
    let home = TempDir::new("extcap-bad-tshark");
    let tshark = home.join("tshark");
    std::fs::write(&tshark, "#!/bin/sh\necho 'tshark: broken' >&2\necho 'second line' >&2\nexit 1\n")
        .unwrap();
    std::fs::set_permissions(&tshark, std::fs::Permissions::from_mode(0o755)).unwrap();
    let err = one_line_error(&install(&home, &["--tshark", &tshark.display().to_string()]));
    assert!(err.contains("-G folders` failed: tshark: broken | second line"), "{err}");
}

/// An HTTP server on a unix socket in `dir`, and curl requests to it until
/// `until`; returns the (URI, curl pid) of every request made.
fn serve_and_request(dir: &Path, until: Instant) -> Vec<(String, u32)> {
    let socket = dir.join("http.sock");
    let mut server = Command::new("python3")
        .arg(common::repo_root().join("scripts/demo-http-server.py"))
        .arg(&socket)
        .spawn()
        .expect("python3");
    while !socket.exists() {
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut requests = Vec::new();
    while Instant::now() < until {
        let uri = format!("/extcap-{}", requests.len());
        let mut curl = Command::new("curl")
            .args(["-s", "-o", "/dev/null", "--unix-socket"])
            .arg(&socket)
            .arg(format!("http://localhost{uri}"))
            .spawn()
            .expect("curl");
        let pid = curl.id();
        assert!(curl.wait().unwrap().success());
        requests.push((uri, pid));
        std::thread::sleep(Duration::from_millis(250));
    }
    let _ = server.kill();
    let _ = server.wait();
    requests
}

/// `tshark -i sockdump` for `seconds`, with sockdump's `--sock` option and
/// `extra` tshark arguments, while curl talks to a server in `dir`.
fn capture_with_tshark(
    home: &Path,
    user: Option<&str>,
    dir: &Path,
    extra: &[&str],
) -> (Vec<(String, u32)>, String) {
    let file = dir.join("capture.pcapng");
    let sock = format!("extcap.sockdump.sock:{}", dir.display());
    let file_arg = file.display().to_string();
    let mut args = vec!["-i", "sockdump", "-o", sock.as_str(), "-a", "duration:8", "-w", file_arg.as_str()];
    args.extend_from_slice(extra);
    let mut capture =
        tshark_as(home, user, &args).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    // requests throughout the capture: sockdump starts within it
    let requests = serve_and_request(dir, Instant::now() + Duration::from_secs(7));
    let mut stderr = String::new();
    capture.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    assert!(capture.wait().unwrap().success(), "tshark: {stderr}");
    assert!(!stderr.contains("rror"), "tshark or sockdump complained: {stderr}");
    (requests, file_arg)
}

/// Every request in the file is one curl made, with its pid and the
/// socket's path in the metadata; returns how many there were.
fn check_requests(file: &str, requests: &[(String, u32)], dir: &Path) -> usize {
    let lua = format!("lua_script:{}", common::lua_plugin().display());
    let rows = fields(
        Path::new(file),
        "http.request",
        &["http.request.uri", "sockdump.pid", "sockdump.comm", "sockdump.path", "sockdump.peer_path"],
        &["-X", &lua],
    );
    let path = dir.join("http.sock").display().to_string();
    for row in &rows {
        let pid = requests.iter().find(|(uri, _)| *uri == row[0]).map(|(_, pid)| pid.to_string());
        assert_eq!(Some(row[1].clone()), pid, "request {row:?} not made by that curl");
        assert_eq!(row[2], "curl");
        assert!(row[3] == path || row[4] == path, "path of {row:?}");
    }
    rows.len()
}

#[test]
fn tshark_captures_through_the_extcap_with_options() {
    if skip_unless_root("tshark_captures_through_the_extcap_with_options") {
        return;
    }
    let home = installed_home("extcap-cap");
    let dir = TempDir::new("extcap-cap-s");
    let (requests, file) = capture_with_tshark(home.path(), None, dir.path(), &[]);
    let captured = check_requests(&file, &requests, dir.path());
    assert!(captured >= 3, "only {captured} of {} requests captured", requests.len());
    let responses = fields(Path::new(&file), "http.response.code == 200", &["frame.number"], &[]);
    assert!(responses.len() >= 3, "{} responses", responses.len());
}

#[test]
fn tshark_capture_filter_selects_what_is_captured() {
    if skip_unless_root("tshark_capture_filter_selects_what_is_captured") {
        return;
    }
    let home = installed_home("extcap-filter");
    let dir = TempDir::new("extcap-filter-s");
    let (requests, file) = capture_with_tshark(home.path(), None, dir.path(), &["-f", "comm curl"]);
    assert!(check_requests(&file, &requests, dir.path()) >= 3);
    // --comm keeps what curl sends or reads: the server's replies only
    // as read by curl (the extcap names readers on this kernel's family)
    let others = common::lua(
        Path::new(&file),
        "sockdump.comm != \"curl\"",
        &["sockdump.comm", "sockdump.reader_comm"],
    );
    assert!(others.iter().all(|row| row[1] == "curl"), "{others:?}");
}

/// sockdump in extcap mode writing to a fifo this test reads, as Wireshark does.
struct FifoCapture {
    sockdump: Child,
    fifo: File,
}

fn start_fifo_capture(dir: &Path, sock_filter: &Path) -> FifoCapture {
    let fifo = dir.join("extcap.fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRUSR | nix::sys::stat::Mode::S_IWUSR).unwrap();
    let sockdump = Command::new(SOCKDUMP)
        .args(["--capture", "--extcap-interface", "sockdump", "--fifo"])
        .arg(&fifo)
        .arg("--sock")
        .arg(sock_filter)
        // this test process plays Wireshark and also makes the traffic
        .arg("--include-viewer")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // opens once sockdump opened its end
    let fifo = File::open(&fifo).unwrap();
    FifoCapture { sockdump, fifo }
}

fn exit_within(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "did not exit within {limit:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn sigterm_ends_the_capture_within_a_second_with_a_valid_file() {
    if skip_unless_root("sigterm_ends_the_capture_within_a_second_with_a_valid_file") {
        return;
    }
    let dir = TempDir::new("extcap-term");
    let mut capture = start_fifo_capture(dir.path(), dir.path());
    let file = dir.join("copy.pcapng");
    let mut copy = File::create(&file).unwrap();
    let mut fifo = capture.fifo;
    let reader = std::thread::spawn(move || std::io::copy(&mut fifo, &mut copy).unwrap());
    std::thread::sleep(Duration::from_secs(2));
    let requests = serve_and_request(dir.path(), Instant::now() + Duration::from_secs(2));
    kill(Pid::from_raw(capture.sockdump.id() as i32), Signal::SIGTERM).unwrap();
    let status = exit_within(&mut capture.sockdump, Duration::from_secs(1));
    let mut stderr = String::new();
    capture.sockdump.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    assert!(status.success() && stderr.is_empty(), "{status}: {stderr}");
    reader.join().unwrap();
    tshark(&["-r", &file.display().to_string()]);
    assert!(check_requests(&file.display().to_string(), &requests, dir.path()) >= 3);
}

#[test]
fn a_closed_fifo_ends_the_capture_within_a_second() {
    if skip_unless_root("a_closed_fifo_ends_the_capture_within_a_second") {
        return;
    }
    let dir = TempDir::new("extcap-epipe");
    let mut capture = start_fifo_capture(dir.path(), dir.path());
    // the section header arrives first, then nothing: no traffic matches
    let mut header = [0u8; 4];
    capture.fifo.read_exact(&mut header).unwrap();
    assert_eq!(header, [0x0a, 0x0d, 0x0d, 0x0a], "a pcapng section header");
    std::thread::sleep(Duration::from_secs(1));
    drop(capture.fifo);
    let status = exit_within(&mut capture.sockdump, Duration::from_secs(1));
    assert!(status.success(), "{status}");
}

#[test]
fn an_unprivileged_user_captures_with_file_capabilities() {
    if skip_unless_root("an_unprivileged_user_captures_with_file_capabilities") {
        return;
    }
    // a copy only root and nobody's group (65534) can run, with the capabilities, as
    // `extcap install --system --setcap` makes one for group sockdump; in the
    // build tree, since /tmp may be mounted nosuid (which ignores file capabilities)
    let bin =
        tempfile::Builder::new().prefix("extcap-caps-").tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    std::fs::set_permissions(bin.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let copy = bin.path().join("sockdump");
    std::fs::copy(SOCKDUMP, &copy).unwrap();
    let home = TempDir::new("extcap-caps-home");
    std::fs::set_permissions(home.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let out = Command::new("runuser")
        .args(["-u", "nobody", "--", "env"])
        .arg(format!("HOME={}", home.path().display()))
        .arg(&copy)
        .args(["extcap", "install"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(stdout(&out).contains("`sockdump extcap install --system --setcap`"), "{}", stdout(&out));
    // without the capabilities: a clear refusal
    let refused =
        Command::new("runuser").args(["-u", "nobody", "--"]).arg(&copy).args(["-c", "1"]).output().unwrap();
    assert!(String::from_utf8_lossy(&refused.stderr).contains("needs root or CAP_BPF + CAP_PERFMON"));
    // capabilities on a binary that is not root's alone are refused
    let out = Command::new(&copy).args(["extcap", "install", "--setcap"]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("--setcap only goes with --system"), "{out:?}");
    for command in
        [vec!["chown", "root:65534"], vec!["chmod", "0750"], vec!["setcap", "cap_bpf,cap_perfmon+ep"]]
    {
        assert!(
            Command::new(command[0]).args(&command[1..]).arg(&copy).status().unwrap().success(),
            "{command:?}"
        );
    }

    let dir = TempDir::new("extcap-caps-s");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    // the traffic is root's: a user sees it only with the dialog's all-users switch
    let (requests, file) = capture_with_tshark(
        home.path(),
        Some("nobody"),
        dir.path(),
        &["-o", "extcap.sockdump.allusers:true"],
    );
    assert!(check_requests(&file, &requests, dir.path()) >= 3);
    let dir = TempDir::new("extcap-caps-own");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let (_, file) = capture_with_tshark(home.path(), Some("nobody"), dir.path(), &[]);
    assert_eq!(
        common::count(Path::new(&file), "tcp.len > 0", &[]),
        0,
        "root's conversations leaked to nobody"
    );
}
