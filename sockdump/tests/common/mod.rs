//! Helpers shared by the pcap/pcapng integration tests: temporary
//! directories, tshark, and a running sockdump.
#![allow(dead_code, unused_imports)]

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub const SOCKDUMP: &str = env!("CARGO_BIN_EXE_sockdump");

/// The repository root (the workspace), for `wireshark/sockdump.lua`.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the crate sits in the workspace").to_path_buf()
}

pub fn lua_plugin() -> PathBuf {
    repo_root().join("wireshark/sockdump.lua")
}

/// A private temporary directory, removed when dropped unless
/// SOCKDUMP_KEEP_TEST_FILES is set. Short paths: unix socket paths hold at
/// most 107 bytes.
pub struct TempDir(tempfile::TempDir);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let dir = tempfile::Builder::new()
            .prefix(&format!("sdt-{tag}-"))
            .disable_cleanup(std::env::var_os("SOCKDUMP_KEEP_TEST_FILES").is_some())
            .tempdir()
            .expect("create a temporary directory");
        TempDir(dir)
    }

    pub fn path(&self) -> &Path {
        self.0.path()
    }

    pub fn join(&self, name: &str) -> PathBuf {
        self.0.path().join(name)
    }
}

/// Lines tshark prints on stderr that say nothing about the file.
fn harmless(line: &str) -> bool {
    line.trim().is_empty() || line.contains("Running as user \"root\"")
}

/// Runs tshark; fails the test on a non-zero exit or any warning on stderr.
pub fn tshark(args: &[&str]) -> String {
    let output = Command::new("tshark")
        .args(args)
        .env("LC_ALL", "C")
        .output()
        .expect("tshark is installed (apt-get install -y tshark)");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let complaints: Vec<&str> = stderr.lines().filter(|l| !harmless(l)).collect();
    assert!(
        output.status.success() && complaints.is_empty(),
        "tshark {args:?} failed ({}):\n{}",
        output.status,
        complaints.join("\n")
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// `tshark -r FILE -T fields -e ...` with a display filter: one Vec per packet.
pub fn fields(file: &Path, filter: &str, fields: &[&str], extra: &[&str]) -> Vec<Vec<String>> {
    let file = file.to_str().expect("utf-8 path");
    let mut args = vec!["-r", file, "-T", "fields", "-E", "separator=|", "-E", "occurrence=a"];
    args.extend_from_slice(extra);
    if !filter.is_empty() {
        args.extend_from_slice(&["-Y", filter]);
    }
    for f in fields {
        args.extend_from_slice(&["-e", f]);
    }
    tshark(&args).lines().map(|l| l.split('|').map(str::to_owned).collect()).collect()
}

/// How many packets match a display filter.
/// `fields` with the sockdump Lua plugin loaded.
pub fn lua(file: &Path, filter: &str, names: &[&str]) -> Vec<Vec<String>> {
    let script = format!("lua_script:{}", lua_plugin().display());
    fields(file, filter, names, &["-X", &script])
}

pub fn count(file: &Path, filter: &str, extra: &[&str]) -> usize {
    fields(file, filter, &["frame.number"], extra).len()
}

pub fn unhex(hex: &str) -> Vec<u8> {
    let hex: Vec<u8> = hex.bytes().filter(|b| b.is_ascii_hexdigit()).collect();
    hex.chunks(2)
        .map(|pair| {
            let s = std::str::from_utf8(pair).expect("hex digits");
            u8::from_str_radix(s, 16).expect("hex digits")
        })
        .collect()
}

/// The bytes of each side of a TCP stream, from `tshark -z follow,tcp,raw,N`:
/// (first node's bytes, second node's bytes).
pub fn follow_tcp(file: &Path, stream: u32, extra: &[&str]) -> (Vec<u8>, Vec<u8>) {
    let spec = format!("follow,tcp,raw,{stream}");
    let mut args = vec!["-r", file.to_str().expect("utf-8 path"), "-q", "-z", &spec];
    args.extend_from_slice(extra);
    let out = tshark(&args);
    let (mut first, mut second) = (Vec::new(), Vec::new());
    let mut body = false;
    for line in out.lines() {
        if line.starts_with("Node 1:") {
            body = true;
            continue;
        }
        if !body || line.starts_with("====") {
            continue;
        }
        match line.strip_prefix('\t') {
            Some(hex) => second.extend(unhex(hex)),
            None => first.extend(unhex(line)),
        }
    }
    (first, second)
}

pub use sockdump_test_support::skip_unless_root;

/// A running `sockdump`, live once it printed `listening`.
pub struct Sockdump {
    child: Child,
    stderr: mpsc::Receiver<String>,
    pub stderr_lines: Vec<String>,
}

impl Sockdump {
    /// Starts sockdump with `args` and waits until capture is live.
    pub fn start(args: &[&str]) -> Sockdump {
        Self::start_with(args, Stdio::null())
    }

    pub fn start_with(args: &[&str], stdout: Stdio) -> Sockdump {
        let mut command = Command::new(SOCKDUMP);
        command.args(args).stdout(stdout);
        Self::start_command(command)
    }

    /// Starts `command` (sockdump, or a wrapper running it) and waits until
    /// capture is live.
    pub fn start_command(mut command: Command) -> Sockdump {
        let args: Vec<_> = command.get_args().map(|a| a.to_string_lossy().into_owned()).collect();
        let mut child = command.stderr(Stdio::piped()).stdin(Stdio::null()).spawn().expect("start sockdump");
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut running = Sockdump { child, stderr: rx, stderr_lines: Vec::new() };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match running.stderr.recv_timeout(left) {
                Ok(line) => {
                    let live = line.starts_with("listening");
                    running.stderr_lines.push(line);
                    if live {
                        return running;
                    }
                }
                Err(_) => {
                    let _ = running.child.kill();
                    panic!(
                        "sockdump {args:?} never printed `listening`:\n{}",
                        running.stderr_lines.join("\n")
                    );
                }
            }
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn stdout(&mut self) -> Option<std::process::ChildStdout> {
        self.child.stdout.take()
    }

    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, signal).expect("signal sockdump");
    }

    /// Waits for the exit (after SIGTERM or -c); returns stderr and checks
    /// the exit status and the closing `N packets captured` line.
    pub fn wait(self) -> (u64, Vec<String>) {
        let (status, lines) = self.exit();
        assert!(status.success(), "sockdump exited with {status}:\n{}", lines.join("\n"));
        let captured = lines
            .iter()
            .find_map(|l| l.split_once(" packets captured").map(|(n, _)| n.to_owned()))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or_else(|| panic!("no final count:\n{}", lines.join("\n")));
        (captured, lines)
    }

    /// Waits for the exit, whatever its status; returns it and stderr.
    pub fn exit(mut self) -> (std::process::ExitStatus, Vec<String>) {
        let deadline = Instant::now() + Duration::from_secs(60);
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait for sockdump") {
                break status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("sockdump did not stop:\n{}", self.stderr_lines.join("\n"));
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        while let Ok(line) = self.stderr.recv_timeout(Duration::from_secs(5)) {
            self.stderr_lines.push(line);
        }
        (status, std::mem::take(&mut self.stderr_lines))
    }

    /// SIGTERM, then [`Sockdump::wait`].
    pub fn stop(self) -> (u64, Vec<String>) {
        self.signal(nix::sys::signal::Signal::SIGTERM);
        self.wait()
    }
}

/// A test that fails leaves no capture running behind it.
impl Drop for Sockdump {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Runs `python3 -c SCRIPT ARGS...`, failing the test on an error.
pub fn python(script: &str, args: &[&str]) -> Output {
    let output =
        Command::new("python3").arg("-c").arg(script).args(args).output().expect("python3 is installed");
    assert!(
        output.status.success(),
        "python3 failed: {}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// Reads everything a child wrote to a pipe.
pub fn read_all(mut r: impl Read) -> Vec<u8> {
    let mut out = Vec::new();
    let _ = r.read_to_end(&mut out);
    out
}

/// The stderr of a sockdump that refused: one line (what a user or
/// Wireshark's error dialog sees), nothing on stdout, a failure exit.
pub fn one_line_error(out: &Output) -> String {
    assert!(!out.status.success(), "sockdump succeeded: {out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(stderr.lines().count(), 1, "not one line: {stderr:?}");
    assert!(stderr.starts_with("sockdump: "), "{stderr:?}");
    assert!(out.stdout.is_empty(), "printed to stdout: {:?}", out.stdout);
    stderr
}

pub fn sockdump(args: &[&str]) -> Output {
    Command::new(SOCKDUMP).args(args).output().expect("run sockdump")
}

/// What sockdump says about a command line it refuses: one line, exit 2.
pub fn usage_error(args: &[&str]) -> String {
    let out = sockdump(args);
    assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
    one_line_error(&out)
}
