//! The command line's job: options → capture → sink, until stopped.

use std::io::{self, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use sockdump_common::{abi, Event};

use crate::capture::{self, Capture, Filter, KernelCounters, Settings, SocketFile};
use crate::cli::{Cli, HookChoice, LinkChoice};
use crate::clock::{self, WallClock, Zone};
use crate::output::framing::{Link, PortMap};
use crate::output::pcap::PcapSink;
use crate::output::pcapng::PcapngSink;
use crate::output::{self, text::TextSink, Destination, Sink, SinkOptions, Stats};
use crate::system;

pub fn run(cli: Cli) -> Result<()> {
    check_output_options(&cli)?;
    if let Some(path) = &cli.read {
        return crate::read::run(&cli, path);
    }
    let settings = settings_from(&cli)?;
    system::check_privileges()?;
    system::raise_memlock_limit();
    let stop = stop_on_signals()?;
    // Capture starts before the output is opened: a capture that cannot
    // start leaves an existing file alone.
    let capture = Capture::start(&settings, cli.hook, |failure| {
        // a forced hook's failure is the error itself: say it once
        if cli.verbose > 0 && cli.hook == HookChoice::Auto {
            note(format_args!("sockdump: hook {} not available: {}", failure.hook, failure.reason));
        }
    })?;
    let output = output::open_destination(cli.output.as_deref())?;
    let flush_each = !output.is_regular_file();
    let mut sink = make_sink(&cli, output.writer, flush_each, WallClock::now())?;
    capture_to(&cli, &settings, capture, sink.as_mut(), output.reader.as_ref().map(|fd| fd.as_fd()), &stop)
}

/// One line on stderr. A closed stderr (`2>&1 | head`, a hung-up terminal)
/// is not a reason to fail.
pub fn note(line: impl std::fmt::Display) {
    let _ = writeln!(io::stderr(), "{line}");
}

/// Refuses options that would be silently ignored, and binary output to a terminal.
pub fn check_output_options(cli: &Cli) -> Result<()> {
    use std::io::IsTerminal;
    if !cli.format.is_capture_file() {
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
    let to_stdout = cli.output.as_deref().is_none_or(|p| p == Path::new("-"));
    if to_stdout && io::stdout().is_terminal() {
        bail!(
            "not writing a binary {} capture to the terminal: give -o FILE, or pipe it \
             (sockdump --format pcapng -o - | wireshark -k -i -)",
            if cli.format == crate::cli::Format::Pcap { "pcap" } else { "pcapng" }
        );
    }
    Ok(())
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
    (!parts.is_empty()).then(|| parts.join(" "))
}

/// The sink for --format, writing to `destination`; `flush_each`: after
/// every message (a pipe or fifo) rather than per ring buffer drain.
pub fn make_sink(
    cli: &Cli,
    destination: Destination,
    flush_each: bool,
    clock: WallClock,
) -> Result<Box<dyn Sink>> {
    if !cli.format.is_capture_file() {
        return Ok(Box::new(TextSink::new(destination, cli.format, clock, Zone::Local)));
    }
    let options = SinkOptions {
        link: match cli.link {
            LinkChoice::Ethernet => Link::Ethernet,
            LinkChoice::User => Link::User,
        },
        ports: PortMap::new(cli.port_map.clone()),
        clock,
        flush_each,
        filter: filter_description(cli),
    };
    let sink: Box<dyn Sink> = if cli.format == crate::cli::Format::Pcap {
        Box::new(PcapSink::new(destination, options).context("cannot write the pcap header")?)
    } else {
        Box::new(PcapngSink::new(destination, options).context("cannot write the pcapng header")?)
    };
    Ok(sink)
}

/// Captures into `sink` until Ctrl-C, SIGTERM, `--count` or a closed output
/// (`reader`: the output's descriptor when a pipe or fifo, watched for hangup).
fn capture_to(
    cli: &Cli,
    settings: &Settings,
    mut capture: Capture,
    sink: &mut dyn Sink,
    reader: Option<BorrowedFd<'_>>,
    stop: &AtomicBool,
) -> Result<()> {
    let say = |line: std::fmt::Arguments<'_>| {
        if !cli.quiet {
            note(line);
        }
    };
    say(format_args!(
        "listening on unix sockets, hook {} ({}), snapshot length {} bytes",
        capture.hook(),
        capture.hook().attach_points(),
        settings.seg_size
    ));

    let tally = pump(&mut capture, sink, stop, cli.count, reader)?;
    let counters = capture.counters()?;
    let stats = Stats { captured: tally.captured, lost: counters.lost() + tally.malformed };
    // A reader that went away (EPIPE) ends the capture, not an error.
    ignore_broken_pipe(sink.finish(&stats)).context("cannot finish the output")?;
    say(format_args!("{} packets captured, {} lost", stats.captured, stats.lost));
    if cli.verbose > 0 {
        report_counters(&counters, tally.malformed);
        note(format_args!(
            "skipped: the kernel skipped sockdump's programs {} times (already running on that CPU)",
            capture.skipped_runs()?
        ));
    }
    Ok(())
}

/// How long records may wait in the ring: the kernel wakes sockdump only for
/// large batches, so a trickle is picked up by this timeout.
const BATCH_WAIT: Duration = Duration::from_millis(50);

/// How far past the stop request the final drain reads (see `pump`).
const STOP_GRACE: Duration = Duration::from_millis(100);

#[derive(Debug, Default)]
struct Tally {
    captured: u64,
    malformed: u64,
}

/// Moves records from the ring buffer to the sink. After a stop request it
/// drains what was sent before the request, then returns: messages sent
/// later (say, by a reader of sockdump's own output) cannot keep it going.
fn pump(
    capture: &mut Capture,
    sink: &mut dyn Sink,
    stop: &AtomicBool,
    limit: Option<u64>,
    reader: Option<BorrowedFd<'_>>,
) -> Result<Tally> {
    let mut tally = Tally::default();
    let limit = limit.unwrap_or(u64::MAX);
    loop {
        let stopping = stop.load(Ordering::SeqCst);
        let sent_before = if stopping { clock::monotonic_ns() } else { u64::MAX };
        let mut write_error = None;
        capture.drain(|record| {
            if tally.captured >= limit {
                return false;
            }
            match Event::parse(record) {
                // Sent after the stop: not written. Other CPUs' records can be
                // a little out of order, so only one well past it ends the drain.
                Ok(event) if event.timestamp_ns > sent_before => {
                    return event.timestamp_ns - sent_before < STOP_GRACE.as_nanos() as u64
                }
                Ok(event) => match sink.write_event(&event) {
                    Ok(()) => tally.captured += 1,
                    Err(err) => {
                        write_error = Some(err);
                        return false;
                    }
                },
                Err(_) => tally.malformed += 1,
            }
            true
        });
        let written = match write_error {
            Some(err) => Err(err),
            None => sink.flush(),
        };
        match written {
            Ok(()) => {}
            Err(err) if err.kind() == io::ErrorKind::BrokenPipe => return Ok(tally),
            Err(err) => return Err(err).context("cannot write the output"),
        }
        if stopping || tally.captured >= limit {
            return Ok(tally);
        }
        if capture.wait(BATCH_WAIT, reader)? {
            return Ok(tally);
        }
    }
}

fn ignore_broken_pipe(result: io::Result<()>) -> io::Result<()> {
    match result {
        Err(err) if err.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

fn report_counters(counters: &KernelCounters, malformed: u64) {
    note(format_args!(
        "lost: {} ring buffer full, {} sendmmsg beyond the walked messages, {} in-flight table full, \
         {} returns the hook never saw, {} malformed records",
        counters.lost_ringbuf, counters.lost_mmsg, counters.lost_inflight, counters.lost_no_exit, malformed
    ));
}

/// The first Ctrl-C or SIGTERM asks for a clean stop; a second one exits at once.
fn stop_on_signals() -> Result<Arc<AtomicBool>> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    ctrlc::set_handler(move || {
        if flag.swap(true, Ordering::SeqCst) {
            std::process::exit(130);
        }
    })
    .context("cannot install the SIGINT/SIGTERM handler")?;
    Ok(stop)
}

/// Validates the options and turns them into kernel-side settings.
pub fn settings_from(cli: &Cli) -> Result<Settings> {
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
    Ok(Settings {
        filter: Filter { pid: cli.pid, comm, sock_prefix, sock_file },
        seg_size: cli.seg_size,
        segs_per_msg: cli.segs_per_msg,
        ring_bytes: capture::ring_bytes(cli.seg_size, cli.segs_in_buffer)?,
        verbose: cli.verbose > 0,
    })
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
        let dir = std::env::temp_dir().join(format!("sockdump-run-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("s.sock");
        let _listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let file = socket_file(path.to_str().unwrap()).expect("a socket file");
        assert_eq!(file.ino, std::fs::metadata(&path).unwrap().ino());
        assert_eq!(socket_file(dir.to_str().unwrap()), None, "a directory is not a socket");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
