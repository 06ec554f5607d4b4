//! Capture files as tcpdump and dumpcap users write them: `-w FILE`,
//! `-w -`, `--print`, and rings of files (`-C`, `-G`, `-W`), each file
//! read back by tshark. Needs root (eBPF), tshark and python3.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{
    count, fields, one_line_error, python, read_all, skip_unless_root, sockdump, Sockdump, TempDir,
};

/// Sends datagrams `argv[2]` up to `argv[3]` of 400 bytes to a socket it
/// binds at `argv[1]`, reading each, every `argv[4]` seconds; each starts
/// with `msg-NNNN:`.
const SEND: &str = r#"
import socket, sys, time
path, first, end, pause = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
rx = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
rx.bind(path)
tx = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
for i in range(first, end):
    tx.sendto(b"msg-%04d:" % i + b"x" * 391, path)
    rx.recv(1000)
    time.sleep(pause)
"#;

fn send(socket: &Path, numbers: std::ops::Range<u32>, pause: f64) {
    std::fs::remove_file(socket).ok();
    let (first, end) = (numbers.start.to_string(), numbers.end.to_string());
    python(SEND, &[socket.to_str().expect("utf-8 path"), &first, &end, &pause.to_string()]);
}

/// The numbers of the messages in a capture file, in order.
fn numbers(file: &Path) -> Vec<u32> {
    fields(file, "udp", &["data.data"], &[])
        .iter()
        .map(|row| number_of(&row[0]).unwrap_or_else(|| panic!("not a message of the test: {row:?}")))
        .collect()
}

/// The message numbers tshark finds in a file that may be removed meanwhile.
fn unchecked_numbers(file: &Path) -> Option<Vec<u32>> {
    let out = std::process::Command::new("tshark")
        .args(["-r".as_ref(), file.as_os_str(), "-Y".as_ref(), "udp".as_ref(), "-T".as_ref()])
        .args(["fields", "-e", "data.data"])
        .output()
        .ok()
        .filter(|out| out.status.success())?;
    String::from_utf8(out.stdout).ok()?.lines().map(number_of).collect()
}

fn number_of(hex: &str) -> Option<u32> {
    let text = String::from_utf8(common::unhex(hex)).ok()?;
    text.get("msg-".len()..8)?.parse().ok()
}

/// The ring's files, by number: dumpcap's `PREFIX_NNNNN_YYYYmmddHHMMSS.EXT`.
fn ring_files(dir: &Path, prefix: &str, ext: &str) -> Vec<(u64, PathBuf)> {
    let mut files: Vec<(u64, PathBuf)> = std::fs::read_dir(dir)
        .expect("list the ring's directory")
        .map(|entry| entry.expect("a directory entry").path())
        .filter_map(|path| {
            let name = path.file_name()?.to_str()?.to_owned();
            let rest = name.strip_prefix(prefix)?.strip_prefix('_')?.strip_suffix(ext)?;
            let (number, stamp) = rest.split_once('_')?;
            let valid = number.len() == 5 && stamp.len() == 14 && stamp.bytes().all(|b| b.is_ascii_digit());
            Some((number.parse().ok().filter(|_| valid)?, path))
        })
        .collect();
    files.sort();
    files
}

#[test]
fn write_a_file_and_print_the_messages() {
    if skip_unless_root("write_a_file_and_print_the_messages") {
        return;
    }
    let dir = TempDir::new("w");
    let file = dir.join("cap.pcapng");
    let sock = dir.join("s");
    let args =
        ["-w", file.to_str().unwrap(), "--print=string", "--sock", dir.path().to_str().unwrap(), "-c", "20"];
    let mut running = Sockdump::start_with(&args, Stdio::piped());
    let stdout = running.stdout().expect("piped stdout");
    let printed = std::thread::spawn(move || read_all(stdout));
    send(&sock, 0..20, 0.0);
    let (captured, _) = running.wait();
    assert_eq!(captured, 20);
    assert_eq!(numbers(&file), (0..20).collect::<Vec<_>>(), "the file holds every message, in order");
    let printed = String::from_utf8(printed.join().expect("stdout reader")).expect("text");
    let headers = printed.lines().filter(|l| l.contains(">>> process python3")).count();
    assert_eq!(headers, 20, "--print shows each message:\n{printed}");
    for i in 0..20 {
        assert!(printed.contains(&format!("msg-{i:04}:")), "message {i} printed");
    }
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&file).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600, "captures are private");
}

#[test]
fn write_to_stdout() {
    if skip_unless_root("write_to_stdout") {
        return;
    }
    let dir = TempDir::new("wo");
    let sock = dir.join("s");
    let args = ["-w", "-", "--sock", dir.path().to_str().unwrap(), "-c", "5"];
    let mut running = Sockdump::start_with(&args, Stdio::piped());
    let stdout = running.stdout().expect("piped stdout");
    let written = std::thread::spawn(move || read_all(stdout));
    send(&sock, 0..5, 0.0);
    running.wait();
    let bytes = written.join().expect("stdout reader");
    assert_eq!(&bytes[..4], &[0x0a, 0x0d, 0x0d, 0x0a], "pcapng on stdout");
    let file = dir.join("from-stdout.pcapng");
    std::fs::write(&file, &bytes).unwrap();
    assert_eq!(numbers(&file), [0, 1, 2, 3, 4]);
}

/// `-C 8k -W 3`: files past 8 KiB are closed and the next begun; three
/// are kept, each a capture tshark reads on its own (also while sockdump
/// writes the next), together the last messages in order.
#[test]
fn a_ring_by_size_keeps_its_count_and_each_file_reads_alone() {
    if skip_unless_root("a_ring_by_size_keeps_its_count_and_each_file_reads_alone") {
        return;
    }
    let dir = TempDir::new("ring");
    let out = dir.join("out");
    std::fs::create_dir(&out).unwrap();
    let sock = dir.join("s");
    let template = out.join("ring.pcapng");
    let args = ["-w", template.to_str().unwrap(), "-C", "8k", "-W", "3", "--sock", sock.to_str().unwrap()];
    let running = Sockdump::start(&args);
    send(&sock, 0..60, 0.0);
    // once the last message is written the ring rests until the next one
    let deadline = Instant::now() + Duration::from_secs(30);
    let files = loop {
        let files = ring_files(&out, "ring", ".pcapng");
        // a file may go while it is looked at: the ring moves on meanwhile
        let newest = files.last().and_then(|(_, path)| unchecked_numbers(path));
        if newest.is_some_and(|numbers| numbers.contains(&59)) {
            break files;
        }
        assert!(Instant::now() < deadline, "message 59 never reached the ring: {files:?}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(files.len(), 3, "{files:?}");
    // the files before the newest are complete while it is written
    for (_, finished) in &files[..2] {
        assert!(!numbers(finished).is_empty(), "{} reads while the ring goes on", finished.display());
    }
    send(&sock, 60..120, 0.0);
    running.stop();

    let files = ring_files(&out, "ring", ".pcapng");
    assert_eq!(files.len(), 3, "-W 3 keeps three files: {files:?}");
    assert_eq!(std::fs::read_dir(&out).unwrap().count(), 3, "nothing else is left");
    let first = files[0].0;
    assert!(first >= 10, "120 messages of ~1 KiB in 8 KiB files: file {first} is the oldest kept");
    assert_eq!(files.iter().map(|f| f.0).collect::<Vec<_>>(), [first, first + 1, first + 2], "consecutive");
    let mut all = Vec::new();
    for (i, (_, file)) in files.iter().enumerate() {
        let size = std::fs::metadata(file).unwrap().len();
        // past 8 KiB by at most one message's blocks and the statistics
        assert!(size <= 8192 + 2048, "{}: {size} bytes", file.display());
        if i < 2 {
            assert!(size >= 8192, "{} was closed before it was full: {size} bytes", file.display());
        }
        // each file opens its own section and interface
        assert_eq!(count(file, "frame.number == 1 && frame.interface_name == \"sockdump\"", &[]), 1);
        all.extend(numbers(file));
    }
    let last = *all.last().expect("messages in the ring");
    assert_eq!(last, 119, "the last message ends the ring");
    let expected: Vec<u32> = (0..all.len() as u32).map(|i| last + 1 - all.len() as u32 + i).collect();
    assert_eq!(all, expected, "the kept files hold the last messages, in order, none twice");
    // sockdump reads a ring file back, and its statistics say what it holds
    let newest = &files[2].1;
    let replay = sockdump(&["-r", newest.to_str().unwrap(), "--format", "string"]);
    assert!(replay.status.success(), "{replay:?}");
    let shown = String::from_utf8_lossy(&replay.stdout).matches(">>> process").count();
    assert_eq!(shown, numbers(newest).len());
}

/// `-G 1 -W 2`: a new file every second, two kept.
#[test]
fn a_ring_by_time() {
    if skip_unless_root("a_ring_by_time") {
        return;
    }
    let dir = TempDir::new("ringt");
    let out = dir.join("out");
    std::fs::create_dir(&out).unwrap();
    let sock = dir.join("s");
    let template = out.join("timed");
    let args = ["-w", template.to_str().unwrap(), "-G", "1", "-W", "2", "--sock", sock.to_str().unwrap()];
    let running = Sockdump::start(&args);
    send(&sock, 0..35, 0.1);
    running.stop();
    let files = ring_files(&out, "timed", "");
    assert_eq!(files.len(), 2, "{files:?}");
    assert!(files[0].0 >= 3, "3.5 s of messages start at least 3 files: {files:?}");
    assert_eq!(files[1].0, files[0].0 + 1);
    let mut all = Vec::new();
    for (_, file) in &files {
        all.extend(numbers(file));
    }
    assert!(!all.is_empty() && all.len() < 35, "the ring holds the last second or two: {all:?}");
    assert!(all.windows(2).all(|w| w[1] == w[0] + 1), "in order, none lost: {all:?}");
    assert_eq!(*all.last().unwrap(), 34);
}

/// A tmpfs of `size`, unmounted when dropped.
struct SmallDisk(PathBuf);

impl SmallDisk {
    fn mount(path: PathBuf, size: &str) -> SmallDisk {
        std::fs::create_dir(&path).unwrap();
        let options = format!("size={size},mode=0700");
        let status = Command::new("mount").args(["-t", "tmpfs", "-o", &options, "tmpfs"]).arg(&path).status();
        assert!(status.expect("run mount").success(), "mount a tmpfs at {}", path.display());
        SmallDisk(path)
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// A full disk ends the capture with one line, and the file at its last
/// whole block: tshark reads it without a warning.
#[test]
fn a_full_disk_leaves_whole_blocks() {
    if skip_unless_root("a_full_disk_leaves_whole_blocks") {
        return;
    }
    let dir = TempDir::new("full");
    let disk = SmallDisk::mount(dir.join("disk"), "256k");
    let file = disk.0.join("cap.pcapng");
    let sock = dir.join("s");
    let running = Sockdump::start(&["-w", file.to_str().unwrap(), "--sock", sock.to_str().unwrap()]);
    // about 400 KB of blocks: more than the disk holds
    send(&sock, 0..400, 0.0);
    let (status, lines) = running.exit();
    assert!(!status.success(), "sockdump went on with a full disk: {lines:?}");
    let after: Vec<&String> = lines.iter().skip_while(|l| !l.starts_with("listening")).skip(1).collect();
    assert_eq!(after.len(), 1, "one line: {after:?}");
    assert!(after[0].starts_with("sockdump: ") && after[0].contains("No space left on device"), "{after:?}");
    let kept = numbers(&file);
    assert!(!kept.is_empty(), "what fitted is kept");
    assert_eq!(kept, (0..kept.len() as u32).collect::<Vec<_>>(), "whole messages, in order");
}

#[test]
fn file_options_that_do_not_fit_are_refused() {
    for (args, says) in [
        (&["-w", "x.pcapng", "--format", "string"][..], "-w writes pcapng (or --format pcap)"),
        (&["--print"], "--print shows messages on stdout while -w FILE writes them"),
        (&["-w", "-", "--print"], "give -w FILE"),
        (&["-w", "x.pcapng", "-W", "3"], "-W COUNT limits a ring of files: give -C SIZE or -G SECONDS"),
        (&["-w", "-", "-C", "1"], "-C and -G start new capture files: give -w FILE"),
        (&["-C", "1", "--format", "string", "-o", "x.txt"], "-C and -G start new capture files"),
    ] {
        let err = one_line_error(&sockdump(args));
        assert!(err.contains(says), "{args:?}: {err}");
    }
    for (args, says) in [
        (&["-C", "0"][..], "the size must be above 0"),
        (&["-C", "12q"], "is not a size"),
        (&["-G", "0"], "--rotate-seconds"),
        (&["-w", "a", "-o", "b"], "cannot be used with"),
    ] {
        let err = common::usage_error(args);
        assert!(err.contains(says), "{args:?}: {err}");
    }
}
