//! Turns the command line into what the pipeline is built from: the
//! kernel-side settings and filter, and the sink for the output format.

use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use std::time::Duration;

use anyhow::{bail, Context, Result};
use sockdump_common::abi;

use crate::capture::{self, Filter, Settings, SocketFile};
use crate::cli::{Cli, Format, LinkChoice};
use crate::clock::{WallClock, Zone};
use crate::messages::note;
use crate::output::framing::{Link, PortMap};
use crate::output::json::JsonSink;
use crate::output::pcap::PcapSink;
use crate::output::pcapng::PcapngSink;
use crate::output::ring::{RingFiles, RingLimits, RotatingSink, SharedFile};
use crate::output::text::{Controls, TextSink, TextStyle};
use crate::output::{self, Destination, Expect, OutputKind, Sink, SinkOptions, Tee};
use crate::system;

/// Refuses options that would be silently ignored, and binary output to a terminal.
pub fn check_output_options(cli: &Cli) -> Result<()> {
    use std::io::IsTerminal;
    let format = cli.format();
    if cli.write.is_some() && !format.is_capture_file() {
        bail!("-w writes pcapng (or --format pcap); for --format {} give -o FILE", format.name());
    }
    let to_file = cli.output_path().is_some();
    if cli.print.is_some() && !(format.is_capture_file() && to_file) {
        bail!("--print shows messages on stdout while -w FILE writes them: give -w FILE");
    }
    if cli.file_count.is_some() && !cli.rotates() {
        bail!("-W COUNT limits a ring of files: give -C SIZE or -G SECONDS too");
    }
    if cli.rotates() && !(format.is_capture_file() && to_file) {
        bail!("-C and -G start new capture files: give -w FILE (a file name, not -)");
    }
    if !format.is_capture_file() {
        if cli.link != LinkChoice::Ethernet {
            bail!("--link applies to --format pcap and pcapng only");
        }
        if !cli.port_map.is_empty() {
            bail!("--port-map applies to --format pcap and pcapng only");
        }
        return Ok(());
    }
    if cli.link == LinkChoice::User && !cli.port_map.is_empty() {
        bail!("--port-map applies to --link ethernet only: --link user has no ports");
    }
    if !to_file && io::stdout().is_terminal() {
        bail!(
            "not writing a binary {} capture to the terminal: give -w FILE, or pipe it \
             (sockdump -w - | wireshark -k -i -)",
            format.name()
        );
    }
    Ok(())
}

/// The ring of files -C or -G asks for, before its first file is opened.
pub fn ring_from(cli: &Cli) -> Option<(RingFiles, RingLimits)> {
    let path = cli.output_path().filter(|_| cli.rotates())?;
    let limits = RingLimits {
        size: cli.file_size,
        period: cli.rotate_seconds.map(Duration::from_secs),
        count: cli.file_count,
    };
    Some((RingFiles::new(path, cli.file_count), limits))
}

/// The filter options in effect, as recorded in pcapng files.
pub fn filter_description(cli: &Cli) -> Option<String> {
    let mut parts = Vec::new();
    if let Some(pid) = cli.pid {
        parts.push(format!("--pid {pid}"));
    }
    if let Some(sock) = cli.sock_prefix() {
        parts.push(format!("--sock {sock}"));
    }
    if let Some(comm) = &cli.comm {
        parts.push(format!("--comm {comm}"));
    }
    if let Some(pid) = cli.exclude_pid {
        parts.push(format!("--exclude-pid {pid}"));
    }
    if let Some(uid) = &cli.uid {
        parts.push(format!("--uid {uid}"));
    } else if let Some(uid) = own_conversations_only(cli) {
        parts.push(format!("(only uid {uid}'s conversations)"));
    }
    for container in &cli.container {
        parts.push(format!("--container {container}"));
    }
    if !cli.command.is_empty() {
        let words: Vec<String> = cli.command.iter().map(|w| w.to_string_lossy().into_owned()).collect();
        parts.push(format!("-- {}", words.join(" ")));
    }
    (!parts.is_empty()).then(|| parts.join(" "))
}

/// The sink for --format, writing to `destination` (a ring's first file
/// when `ring` is given): flushed after every message unless it is a
/// regular file (then per ring buffer drain); text to a terminal shows
/// control bytes escaped. With --print, text on stdout as well.
pub fn make_sink(
    cli: &Cli,
    destination: Destination,
    kind: &OutputKind,
    ring: Option<(RingFiles, RingLimits)>,
    clock: WallClock,
) -> Result<Box<dyn Sink>> {
    let format = cli.format();
    if let Some(style) = format.text_style() {
        return Ok(text_sink(destination, kind, style, clock));
    }
    if format == Format::Json {
        return Ok(Box::new(JsonSink::new(destination, clock, !kind.is_regular_file())));
    }
    let options = SinkOptions {
        link: match cli.link {
            LinkChoice::Ethernet => Link::Ethernet,
            LinkChoice::User => Link::User,
        },
        ports: PortMap::new(cli.port_map.clone()),
        clock,
        flush_each: !kind.is_regular_file(),
        filter: filter_description(cli),
    };
    let file_sink = |out: Destination| -> Box<dyn Sink> {
        match format {
            Format::Pcap => Box::new(PcapSink::new(out, options.clone())),
            _ => Box::new(PcapngSink::new(out, options.clone())),
        }
    };
    let mut sink = match ring {
        Some((files, limits)) => {
            let shared = SharedFile::new(destination);
            let inner = file_sink(Box::new(shared.clone()));
            Box::new(RotatingSink::new(inner, shared, files, limits))
        }
        None => file_sink(destination),
    };
    if let Some(style) = cli.print {
        let stdout = output::open_destination(None, Expect::File)?;
        let print = text_sink(stdout.writer, &stdout.kind, style.text_style(), clock);
        sink = Box::new(Tee { file: sink, print });
    }
    sink.begin().with_context(|| format!("cannot write the {} header", format.name()))?;
    Ok(sink)
}

fn text_sink(
    destination: Destination,
    kind: &OutputKind,
    style: TextStyle,
    clock: WallClock,
) -> Box<dyn Sink> {
    let controls = if kind.terminal { Controls::Escaped } else { Controls::Raw };
    Box::new(TextSink::new(destination, style, controls, clock, Zone::Local))
}

/// The filter options the kernel applies: for a live capture.
pub fn settings_from(cli: &Cli) -> Result<Settings> {
    Ok(Settings {
        filter: filter_from(cli)?,
        seg_size: cli.seg_size,
        segs_per_msg: cli.segs_per_msg,
        ring_bytes: capture::ring_bytes(cli.seg_size, cli.segs_in_buffer)?,
        verbose: cli.verbose > 0,
        reader_wait: (cli.reader_wait > 0).then(|| Duration::from_millis(cli.reader_wait.into())),
    })
}

/// Validates --pid, --comm and --sock (the same filter for a capture and -r).
pub fn filter_from(cli: &Cli) -> Result<Filter> {
    let comm = cli.comm.as_ref().map(|name| {
        let bytes = name.as_bytes();
        if bytes.len() >= abi::COMM_LEN {
            note(format_args!(
                "sockdump: note: --comm {name}: the kernel keeps the first {} bytes of thread names, matching {}",
                abi::COMM_LEN - 1,
                String::from_utf8_lossy(&bytes[..abi::COMM_LEN - 1])
            ));
        }
        bytes[..bytes.len().min(abi::COMM_LEN - 1)].to_vec()
    });
    let (sock_prefix, sock_file) = match cli.sock_prefix() {
        Some(sock) => (Some(sun_path_prefix(sock)?), socket_file(sock)),
        None => (None, None),
    };
    Ok(Filter {
        pid: cli.pid,
        comm,
        sock_prefix,
        sock_file,
        uid: uid_filter(cli)?,
        exclude_pid: cli.exclude_pid,
        containers: cli.container.clone(),
        command: !cli.command.is_empty(),
    })
}

/// A non-root caller (running through file capabilities) sees only
/// conversations of their own uid unless --all-users: capture rights are
/// not a licence to read everyone's traffic. Root sees everything.
/// `--uid` (a user name or number), within what the caller may see.
fn uid_filter(cli: &Cli) -> Result<Option<u32>> {
    let own = own_conversations_only(cli);
    let Some(user) = &cli.uid else { return Ok(own) };
    let uid = match user.parse::<u32>() {
        Ok(uid) => uid,
        Err(_) => nix::unistd::User::from_name(user)
            .with_context(|| format!("--uid {user}: cannot look the user up"))?
            .with_context(|| format!("--uid {user}: no such user"))?
            .uid
            .as_raw(),
    };
    match own {
        Some(own) if own != uid => bail!(
            "--uid {user}: you may see only your own conversations (uid {own}); \
             other users' need root or --all-users"
        ),
        _ => Ok(Some(uid)),
    }
}

fn own_conversations_only(cli: &Cli) -> Option<u32> {
    let uid = nix::unistd::getuid().as_raw();
    (uid != 0 && !cli.all_users && cli.read.is_none()).then_some(uid)
}

/// `--sock` as `sun_path` bytes: `@name` is abstract (a leading NUL byte).
pub fn sun_path_prefix(sock: &str) -> Result<Vec<u8>> {
    let bytes = match sock.strip_prefix('@') {
        Some(name) => [&[0u8][..], name.as_bytes()].concat(),
        None => sock.as_bytes().to_vec(),
    };
    if bytes.is_empty() {
        bail!("--sock is empty: give a socket path or prefix, or leave it out to capture every socket");
    }
    // A path needs its terminating NUL inside sun_path; an abstract name does not.
    let room = if bytes[0] == 0 { abi::PATH_MAX } else { abi::PATH_MAX - 1 };
    if bytes.len() > room {
        bail!(
            "--sock {sock}: {} bytes, but a unix socket {} holds at most {} bytes",
            bytes.len() - usize::from(bytes[0] == 0),
            if bytes[0] == 0 { "abstract name" } else { "path" },
            room - usize::from(bytes[0] == 0)
        );
    }
    Ok(bytes)
}

/// The socket file `--sock` names, if it exists: then sockets bound to it
/// match however the application spelled the path.
fn socket_file(sock: &str) -> Option<SocketFile> {
    if sock.starts_with('@') {
        return None;
    }
    let meta = std::fs::metadata(Path::new(sock)).ok()?;
    meta.file_type().is_socket().then(|| SocketFile { ino: meta.ino(), dev: system::kernel_dev(meta.dev()) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn abstract_names_start_with_nul() {
        assert_eq!(sun_path_prefix("@abc").unwrap(), b"\0abc");
        assert_eq!(sun_path_prefix("/run/x").unwrap(), b"/run/x");
    }

    #[test]
    fn over_long_paths_are_refused() {
        assert!(sun_path_prefix(&"a".repeat(107)).is_ok());
        let err = sun_path_prefix(&"a".repeat(108)).unwrap_err().to_string();
        assert!(err.contains("108 bytes") && err.contains("at most 107"), "{err}");
        assert!(sun_path_prefix(&format!("@{}", "a".repeat(107))).is_ok());
        assert!(sun_path_prefix(&format!("@{}", "a".repeat(108))).is_err());
        assert!(sun_path_prefix("").is_err());
    }

    #[test]
    fn existing_socket_files_are_matched_by_inode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        let _listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let file = socket_file(path.to_str().unwrap()).expect("a socket file");
        assert_eq!(file.ino, std::fs::metadata(&path).unwrap().ino());
        assert_eq!(socket_file(dir.path().to_str().unwrap()), None, "a directory is not a socket");
    }
}
