//! Least privilege, with real captures: capabilities dropped once capture is
//! live, `-Z USER`, and a user capturing through file capabilities sees only
//! their own conversations unless `--all-users`.

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Stdio};

use common::{skip_unless_root, Sockdump, SOCKDUMP};

/// A `Name:` line of /proc/PID/status.
fn status_field(pid: u32, name: &str) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("sockdump is running");
    status
        .lines()
        .find_map(|line| line.strip_prefix(name).map(|v| v.trim().to_string()))
        .unwrap_or_else(|| panic!("no {name} in /proc/{pid}/status"))
}

/// nobody's uid and gid (`id`: a static test binary cannot use NSS).
fn nobody() -> (u32, u32) {
    let id = |flag: &str| -> u32 {
        let out = Command::new("id").args([flag, "nobody"]).output().expect("id runs");
        String::from_utf8_lossy(&out.stdout).trim().parse().expect("nobody exists")
    };
    (id("-u"), id("-g"))
}

/// Sends `marker` 3 times over a socketpair, as `uid` (None: this process's user).
fn converse(marker: &str, uid: Option<u32>) {
    let script = "import socket,sys,time\n\
                  a,b=socket.socketpair()\n\
                  for _ in range(3):\n    a.send(sys.argv[1].encode()); b.recv(100); time.sleep(0.01)\n";
    let mut command = match uid {
        Some(uid) => {
            let mut c = Command::new("setpriv");
            c.args([
                &format!("--reuid={uid}"),
                &format!("--regid={uid}"),
                "--clear-groups",
                "/usr/bin/python3",
            ]);
            c
        }
        None => Command::new("/usr/bin/python3"),
    };
    let status = command.args(["-c", script, marker]).status().expect("python3 runs");
    assert!(status.success(), "the {marker} conversation failed");
}

#[test]
fn capabilities_are_dropped_once_capture_is_live() {
    if skip_unless_root("capabilities_are_dropped_once_capture_is_live") {
        return;
    }
    let running = Sockdump::start(&["--sock", "/nonexistent-cap-test", "-o", "/dev/null"]);
    let pid = running.pid();
    assert_eq!(status_field(pid, "CapEff:"), "0000000000000000", "effective capabilities left");
    assert_eq!(status_field(pid, "CapPrm:"), "0000000000000000", "permitted capabilities left");
    assert!(status_field(pid, "Uid:").starts_with("0\t"), "without -Z root stays root");
    running.stop();
}

#[test]
fn dash_z_captures_as_root_and_writes_the_file_as_that_user() {
    if skip_unless_root("dash_z_captures_as_root_and_writes_the_file_as_that_user") {
        return;
    }
    let (uid, gid) = nobody();
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let file = dir.path().join("z.pcapng");
    let marker = "dash-z-marker";
    let running = Sockdump::start(&[
        "-Z",
        "nobody",
        "--format",
        "pcapng",
        "-o",
        file.to_str().unwrap(),
        "--comm",
        "python3",
    ]);
    let pid = running.pid();
    assert_eq!(status_field(pid, "Uid:"), format!("{uid}\t{uid}\t{uid}\t{uid}"));
    assert_eq!(status_field(pid, "Gid:"), format!("{gid}\t{gid}\t{gid}\t{gid}"));
    assert_eq!(status_field(pid, "CapEff:"), "0000000000000000");
    converse(marker, None);
    running.stop();
    let meta = std::fs::metadata(&file).unwrap();
    assert_eq!((meta.uid(), meta.mode() & 0o777), (uid, 0o600), "the file is nobody's and private");
    let text = common::tshark(&["-r", file.to_str().unwrap(), "-T", "fields", "-e", "data.data"]);
    let seen = text.lines().filter(|l| common::unhex(l) == marker.as_bytes()).count();
    assert_eq!(seen, 3, "{text}");
}

#[test]
fn dash_z_needs_root_and_an_existing_user() {
    let out = Command::new(SOCKDUMP).args(["-Z", "no-such-user-here", "-c", "1"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert_eq!(err.lines().count(), 1, "{err}");
    let expected = if nix::unistd::geteuid().is_root() { "no such user" } else { "needs root" };
    assert!(err.contains(expected), "{err}");
}

/// A copy of sockdump that `nobody` can run, with the file capabilities
/// that let a user who is not root capture.
fn capability_copy(dir: &Path) -> std::path::PathBuf {
    let bin = dir.join("bin");
    std::fs::create_dir(&bin).unwrap();
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o711)).unwrap();
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o711)).unwrap();
    let copy = bin.join("sockdump");
    std::fs::copy(SOCKDUMP, &copy).unwrap();
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755)).unwrap();
    let status =
        Command::new("setcap").arg("cap_bpf,cap_perfmon+ep").arg(&copy).status().expect("setcap runs");
    assert!(status.success(), "setcap failed");
    copy
}

/// Captures as `nobody` through file capabilities while nobody and root
/// each hold a conversation; returns what the capture printed.
fn capture_as_nobody(copy: &Path, extra: &[&str]) -> String {
    let (uid, _) = nobody();
    let mut command = Command::new("setpriv");
    command
        .args([&format!("--reuid={uid}"), &format!("--regid={uid}"), "--clear-groups"])
        .arg(copy)
        .args(["--format", "string", "--comm", "python3"])
        .args(extra)
        .stdout(Stdio::piped());
    let mut running = Sockdump::start_command(command);
    let stdout = running.stdout().unwrap();
    converse("from-nobody", Some(uid));
    converse("from-root", None);
    let (_, stderr) = running.stop();
    let printed = String::from_utf8_lossy(&common::read_all(stdout)).into_owned();
    format!("{printed}\n--- stderr\n{}", stderr.join("\n"))
}

#[test]
fn a_user_sees_only_their_own_conversations_unless_all_users() {
    if skip_unless_root("a_user_sees_only_their_own_conversations_unless_all_users") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let copy = capability_copy(dir.path());

    let own = capture_as_nobody(&copy, &[]);
    assert_eq!(own.matches("from-nobody").count(), 3, "{own}");
    assert_eq!(own.matches("from-root").count(), 0, "root's conversation leaked:\n{own}");
    assert!(own.contains("only conversations one side of which runs as uid"), "{own}");

    let all = capture_as_nobody(&copy, &["--all-users"]);
    assert_eq!(all.matches("from-nobody").count(), 3, "{all}");
    assert_eq!(all.matches("from-root").count(), 3, "{all}");
}

#[test]
fn a_symlink_or_another_users_file_at_the_output_is_refused_in_one_line() {
    if skip_unless_root("a_symlink_or_another_users_file_at_the_output_is_refused_in_one_line") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("etc-shadow-stand-in");
    std::fs::write(&target, b"keep").unwrap();
    let link = dir.path().join("capture.pcapng");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let theirs = dir.path().join("theirs.pcapng");
    std::fs::write(&theirs, b"keep").unwrap();
    std::os::unix::fs::chown(&theirs, Some(nobody().0), None).unwrap();
    for (path, why) in [(&link, "symbolic link"), (&theirs, "not to you")] {
        let out =
            Command::new(SOCKDUMP).args(["--format", "pcapng", "-c", "1", "-o"]).arg(path).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains(why), "{err}");
    }
    assert_eq!(std::fs::read(&target).unwrap(), b"keep");
    assert_eq!(std::fs::read(&theirs).unwrap(), b"keep");
}
