//! The command line: the original sockdump's options, plus what tcpdump users expect.

use std::path::PathBuf;

use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};
use clap::{Parser, ValueEnum};
use sockdump_common::abi;

use crate::capture::HookChoice;
use crate::output::framing::PortMapEntry;
use crate::output::text::TextStyle;
use crate::output::Expect;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// offset, 16 bytes in hex, and their ASCII
    Hex,
    /// the bytes as they are
    String,
    /// every byte as \xNN
    Hexstring,
    /// classic pcap (nanosecond timestamps), for tools that read nothing newer
    Pcap,
    /// pcapng with process metadata in packet comments: open it in Wireshark
    Pcapng,
    /// JSON lines: one object per message, with its bytes in base64 (docs/JSON.md)
    Json,
}

impl Format {
    /// pcap and pcapng: packets for Wireshark rather than text.
    pub fn is_capture_file(self) -> bool {
        matches!(self, Format::Pcap | Format::Pcapng)
    }

    /// As `--format` spells it.
    pub fn name(self) -> &'static str {
        match self {
            Format::Hex => "hex",
            Format::String => "string",
            Format::Hexstring => "hexstring",
            Format::Pcap => "pcap",
            Format::Pcapng => "pcapng",
            Format::Json => "json",
        }
    }

    /// The text sink's style; none for the capture file formats.
    pub fn text_style(self) -> Option<TextStyle> {
        match self {
            Format::Hex => Some(TextStyle::Hex),
            Format::String => Some(TextStyle::String),
            Format::Hexstring => Some(TextStyle::Hexstring),
            Format::Pcap | Format::Pcapng | Format::Json => None,
        }
    }
}

/// `--print`: how messages are shown on stdout while -w writes a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PrintStyle {
    /// offset, 16 bytes in hex, and their ASCII
    Hex,
    /// the bytes as they are
    String,
    /// every byte as \xNN
    Hexstring,
}

impl PrintStyle {
    pub fn text_style(self) -> TextStyle {
        match self {
            PrintStyle::Hex => TextStyle::Hex,
            PrintStyle::String => TextStyle::String,
            PrintStyle::Hexstring => TextStyle::Hexstring,
        }
    }
}

/// `-C SIZE`: millions of bytes as tcpdump counts them, or KiB, MiB, GiB
/// with a k, m or g suffix.
fn file_size(text: &str) -> Result<u64, String> {
    let (digits, unit) = match text.char_indices().last() {
        Some((at, 'k' | 'K')) => (&text[..at], 1u64 << 10),
        Some((at, 'm' | 'M')) => (&text[..at], 1 << 20),
        Some((at, 'g' | 'G')) => (&text[..at], 1 << 30),
        _ => (text, 1_000_000),
    };
    let number: u64 =
        digits.parse().map_err(|_| format!("{text:?} is not a size (N millions of bytes, or Nk, Nm, Ng)"))?;
    match number.checked_mul(unit) {
        Some(0) => Err("the size must be above 0".into()),
        Some(bytes) => Ok(bytes),
        None => Err(format!("{text} is too large")),
    }
}

/// How --format pcap/pcapng frame each message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LinkChoice {
    /// Ethernet/IPv4 with synthetic TCP (stream, seqpacket) and UDP (datagrams):
    /// Wireshark's dissectors and Follow Stream work
    Ethernet,
    /// LINKTYPE_USER0 with a sockdump header, as the original tools wrote
    /// (decode it with wireshark/sockdump.lua)
    User,
}

/// `--hook`: `auto` or one of the hook families, each with its description.
fn hook_parser() -> impl clap::builder::TypedValueParser<Value = HookChoice> {
    let auto = PossibleValue::new(HookChoice::AUTO).help(HookChoice::auto_description());
    let families = sockdump_ebpf::FAMILIES.iter().map(|f| PossibleValue::new(f.name).help(f.description));
    PossibleValuesParser::new(std::iter::once(auto).chain(families))
        .try_map(|name| HookChoice::parse(&name).ok_or("not a hook family"))
}

const AFTER_HELP: &str = "\
Examples:
  sockdump --sock /run/docker.sock --format string
  sockdump --pid 1234 -c 10
  sockdump --sock @/tmp/.X11-unix/X0      (abstract names start with @)
  sockdump -w - | wireshark -k -i -
  sockdump -w docker.pcapng --print=string /run/docker.sock
  sockdump -w bus.pcapng -C 100 -W 10       (a ring of 10 files of 100 MB)
  sockdump -r docker.pcapng --format string  (no root needed)
  sockdump --format json /run/docker.sock | jq -r .text
  sockdump extcap install                  (\"Unix sockets\" in Wireshark's interface list)

Needs root, or CAP_BPF + CAP_PERFMON. Prints `listening ...` on stderr once
capture is live, and `N packets captured, M lost` when it ends (Ctrl-C,
SIGTERM or --count).";

#[derive(Debug, Parser)]
#[command(name = "sockdump", version, about = "Dump unix domain socket traffic", after_help = AFTER_HELP)]
pub struct Cli {
    /// Output format [default: hex, or pcapng with -w]
    #[arg(long, value_enum)]
    pub format: Option<Format>,

    /// Write to FILE instead of stdout (created with mode 0600: captures hold secrets)
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: Option<PathBuf>,

    /// Write a pcapng capture to FILE (`-` for stdout), as tcpdump's -w; --format pcap
    /// writes classic pcap instead
    #[arg(short = 'w', long = "write", value_name = "FILE", conflicts_with = "output")]
    pub write: Option<PathBuf>,

    /// Also print each message on stdout while -w writes the file, in STYLE
    #[arg(long, value_name = "STYLE", value_enum, num_args = 0..=1, require_equals = true, default_missing_value = "hex")]
    pub print: Option<PrintStyle>,

    /// Start a new file once the current one is past SIZE millions of bytes (or
    /// SIZE KiB, MiB, GiB with a k, m, g suffix). Files are named as dumpcap names
    /// a ring: FILE_00001_YYYYmmddHHMMSS.pcapng, ...
    #[arg(short = 'C', long = "file-size", value_name = "SIZE", value_parser = file_size)]
    pub file_size: Option<u64>,

    /// Start a new file every SECONDS seconds (named as with -C)
    #[arg(short = 'G', long = "rotate-seconds", value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..))]
    pub rotate_seconds: Option<u64>,

    /// With -C or -G: keep at most COUNT files, removing the oldest
    #[arg(short = 'W', long = "file-count", value_name = "COUNT", value_parser = clap::value_parser!(u32).range(1..))]
    pub file_count: Option<u32>,

    /// Read messages from a pcapng (or --link user pcap) file sockdump wrote instead
    /// of capturing; --pid, --sock, --comm and -c filter what is printed
    #[arg(long = "read", short = 'r', value_name = "FILE")]
    pub read: Option<PathBuf>,

    /// Framing of --format pcap/pcapng packets
    #[arg(long, value_enum, default_value_t = LinkChoice::Ethernet)]
    pub link: LinkChoice,

    /// Give sockets whose path starts with PREFIX (`@name` for abstract names) the
    /// TCP/UDP port PORT in pcap/pcapng, so Wireshark dissects their protocol
    /// (repeatable; the longest prefix wins; see docs/PCAPNG.md for the built-in ports)
    #[arg(long = "port-map", value_name = "PREFIX=PORT")]
    pub port_map: Vec<PortMapEntry>,

    /// Only messages sent by PID, or sent to it (its socket's SO_PEERCRED peer)
    #[arg(long, value_name = "PID", value_parser = clap::value_parser!(u32).range(1..))]
    pub pid: Option<u32>,

    /// Only sockets whose path, or whose peer's path, starts with PREFIX (`@name` for
    /// abstract names). An existing socket file also matches however a process spelled it.
    #[arg(long, value_name = "PREFIX")]
    pub sock: Option<String>,

    /// The socket path, as the original sockdump took it (same as --sock; a trailing * is ignored)
    #[arg(value_name = "SOCK", conflicts_with = "sock")]
    pub sock_positional: Option<String>,

    /// As root: capture, then drop to USER (and its groups) before opening
    /// the output, so files are USER's, as tcpdump's -Z
    #[arg(short = 'Z', long, value_name = "USER")]
    pub relinquish_privileges: Option<String>,

    /// Also other users' conversations. A user who is not root (capturing
    /// through file capabilities) otherwise sees only conversations one side
    /// of which runs under their own uid; root always sees all.
    #[arg(long, conflicts_with = "read")]
    pub all_users: bool,

    /// Leave out the conversations of PID and of every process it started: messages
    /// they send, and messages sent to them on sockets they connected (e.g. a viewer's
    /// own display traffic). Wireshark's extcap sets it to Wireshark by default
    #[arg(long, value_name = "PID", value_parser = clap::value_parser!(u32).range(1..), conflicts_with = "read")]
    pub exclude_pid: Option<u32>,

    /// Only messages sent by threads named NAME (exact; the kernel keeps 15 bytes)
    #[arg(long, value_name = "NAME")]
    pub comm: Option<String>,

    /// Only messages sent by processes of USER (a name or uid), or sent to a socket
    /// USER owns (its reader's, where the reads are seen)
    #[arg(long, value_name = "USER")]
    pub uid: Option<String>,

    /// Only messages sent or read by processes in the container NAME, or whose id
    /// starts with ID-PREFIX, also one that starts later (repeatable; Docker names
    /// containers through its engine, DOCKER_HOST or /run/docker.sock)
    #[arg(long, value_name = "NAME|ID-PREFIX")]
    pub container: Vec<String>,

    /// Run CMD (as the user who ran sudo) and keep only what it and the processes it
    /// starts send or read; stop when it exits, with its exit status
    #[arg(last = true, value_name = "CMD", conflicts_with = "read")]
    pub command: Vec<std::ffi::OsString>,

    /// Bytes captured per message at most
    #[arg(long, default_value_t = 51200, conflicts_with = "read", value_parser = clap::value_parser!(u32).range(1..=i64::from(abi::DATA_MAX)))]
    pub seg_size: u32,

    /// iovec segments captured per message at most
    #[arg(long, default_value_t = 10, conflicts_with = "read", value_parser = clap::value_parser!(u32).range(1..=i64::from(abi::SEGS_MAX)))]
    pub segs_per_msg: u32,

    /// Sizes the kernel ring buffer: room for this many messages of --seg-size
    #[arg(long, default_value_t = 100, conflicts_with = "read", value_parser = clap::value_parser!(u32).range(1..))]
    pub segs_in_buffer: u32,

    /// Hold each message up to MS milliseconds to learn which process reads
    /// it; 0 names no readers (and hooks no reads)
    #[arg(long, value_name = "MS", default_value_t = 250, conflicts_with = "read", value_parser = clap::value_parser!(u32).range(0..=5000))]
    pub reader_wait: u32,

    /// Stop after N messages
    #[arg(short = 'c', long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub count: Option<u64>,

    /// Kernel hooks to capture with
    #[arg(long, value_name = "HOOK", default_value = HookChoice::AUTO, value_parser = hook_parser(), conflicts_with = "read")]
    pub hook: HookChoice,

    /// More detail: why hooks were skipped, full verifier logs, kernel counters;
    /// with -r, what the file holds
    #[arg(short, long, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// Only errors on stderr: set when Wireshark runs sockdump as an extcap,
    /// since it shows anything an extcap prints there as an error.
    #[arg(skip)]
    pub quiet: bool,

    /// --output is Wireshark's extcap fifo: open it, never create it.
    #[arg(skip)]
    pub output_is_fifo: bool,
}

impl Cli {
    /// --format, else pcapng with -w and hex text otherwise.
    pub fn format(&self) -> Format {
        let default = if self.write.is_some() { Format::Pcapng } else { Format::Hex };
        self.format.unwrap_or(default)
    }

    /// The file -w or -o names; None for stdout.
    pub fn output_path(&self) -> Option<&std::path::Path> {
        self.write.as_deref().or(self.output.as_deref()).filter(|path| *path != std::path::Path::new("-"))
    }

    /// -C or -G: the output is a ring of files.
    pub fn rotates(&self) -> bool {
        self.file_size.is_some() || self.rotate_seconds.is_some()
    }

    /// What may stand at the --output path.
    pub fn output_expect(&self) -> Expect {
        if self.output_is_fifo {
            Expect::Fifo
        } else {
            Expect::File
        }
    }

    /// The --sock value (or the positional one), without a trailing `*`.
    pub fn sock_prefix(&self) -> Option<&str> {
        let sock = self.sock.as_deref().or(self.sock_positional.as_deref())?;
        Some(sock.strip_suffix('*').unwrap_or(sock))
    }
}

/// What is wrong, in one line: clap's first line without its `error: `.
pub fn error_line(err: &clap::Error) -> String {
    let text = err.to_string();
    text.lines().next().unwrap_or_default().trim_start_matches("error: ").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("sockdump").chain(args.iter().copied()))
    }

    /// The extcap passes each option with its value in one argument
    /// (`sockdump_extcap::Capture::options`): a value may start with `-`.
    #[test]
    fn extcap_options_with_dashed_values() {
        let filter = sockdump_extcap::filter::to_options("comm -bash and sock -rel and pid 3").unwrap();
        let cli = parse(&filter.iter().map(String::as_str).collect::<Vec<_>>()).unwrap();
        assert_eq!((cli.comm.as_deref(), cli.sock_prefix(), cli.pid), (Some("-bash"), Some("-rel"), Some(3)));
    }

    #[test]
    fn defaults_are_the_original_tools() {
        let cli = parse(&[]).unwrap();
        assert_eq!(cli.format(), Format::Hex);
        assert_eq!((cli.seg_size, cli.segs_per_msg, cli.segs_in_buffer), (51200, 10, 100));
        assert_eq!(cli.hook, HookChoice::Auto);
        assert!(cli.output.is_none() && cli.sock_prefix().is_none());
        assert_eq!(cli.link, LinkChoice::Ethernet);
        assert!(cli.port_map.is_empty() && cli.read.is_none());
    }

    #[test]
    fn capture_file_options() {
        let cli = parse(&[
            "--format",
            "pcapng",
            "--link",
            "user",
            "--port-map",
            "/run/a=8080",
            "--port-map",
            "@b=9",
            "-r",
            "x.pcapng",
        ])
        .unwrap();
        assert!(cli.format().is_capture_file());
        assert_eq!(cli.link, LinkChoice::User);
        assert_eq!(cli.port_map.iter().map(ToString::to_string).collect::<Vec<_>>(), ["/run/a=8080", "@b=9"]);
        assert_eq!(cli.read.as_deref(), Some(std::path::Path::new("x.pcapng")));
        assert!(parse(&["--port-map", "/a"]).is_err());
        assert!(parse(&["--port-map", "/a=70000"]).is_err());
        assert!(parse(&["--link", "raw"]).is_err());
        assert!(!parse(&["--format", "string"]).unwrap().format().is_capture_file());
    }

    #[test]
    fn rejects_out_of_range_sizes() {
        assert!(parse(&["--seg-size", "0"]).is_err());
        assert!(parse(&["--seg-size", "65537"]).is_err());
        assert!(parse(&["--seg-size", "65536"]).is_ok());
        assert!(parse(&["--segs-per-msg", "0"]).is_err());
        assert!(parse(&["--segs-per-msg", "65"]).is_err());
        assert!(parse(&["--format", "xml"]).is_err());
        assert!(parse(&["--pid", "0"]).is_err());
        assert!(parse(&["-c", "0"]).is_err());
    }

    #[test]
    fn hooks_are_the_families_and_auto() {
        assert_eq!(parse(&[]).unwrap().hook, HookChoice::Auto);
        for family in sockdump_ebpf::FAMILIES {
            assert_eq!(parse(&["--hook", family.name]).unwrap().hook, HookChoice::Only(family));
        }
        let err = parse(&["--hook", "uprobe"]).unwrap_err().to_string();
        assert!(err.contains("possible values: auto, fentry, socket, kprobe, tracepoint"), "{err}");
    }

    #[test]
    fn kernel_options_are_refused_when_reading_a_file() {
        for option in [
            &["--hook", "kprobe"][..],
            &["--seg-size", "65536"],
            &["--segs-per-msg", "2"],
            &["--segs-in-buffer", "20000"],
        ] {
            let args = [&["-r", "x.pcapng"][..], option].concat();
            let err = parse(&args).unwrap_err();
            assert_eq!(err.kind(), clap::error::ErrorKind::ArgumentConflict, "{args:?}");
        }
        assert!(parse(&["-r", "x.pcapng", "-v", "-c", "3", "--sock", "/a"]).is_ok());
    }

    #[test]
    fn positional_socket_is_the_original_syntax() {
        assert_eq!(parse(&["/run/docker.sock*"]).unwrap().sock_prefix(), Some("/run/docker.sock"));
        assert_eq!(parse(&["--sock", "@abs"]).unwrap().sock_prefix(), Some("@abs"));
        assert!(parse(&["--sock", "/a", "/b"]).is_err());
    }
}
