use std::ffi::OsString;
use std::fmt::Write as _;
use std::path::PathBuf;

/// The one interface sockdump offers.
pub const INTERFACE: &str = "sockdump";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExtcapError {
    #[error("{0} needs a value")]
    MissingValue(String),
    #[error("unknown extcap interface {0:?}: sockdump offers only {INTERFACE:?}")]
    UnknownInterface(String),
    #[error("--capture needs --fifo PATH")]
    MissingFifo,
    #[error("{0}")]
    Filter(#[from] crate::filter::FilterError),
    #[error("arguments are not valid UTF-8")]
    NotUtf8,
}

/// What Wireshark asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    Interfaces,
    Dlts,
    Config,
    /// `--extcap-capture-filter F` without `--capture`: print nothing when F
    /// is valid, an error message when not.
    FilterCheck(String),
    Capture(Capture),
}

/// `--capture`: stream pcapng to `fifo`, with these sockdump options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capture {
    pub fifo: PathBuf,
    /// sockdump command-line options from the interface dialog and the
    /// capture filter, e.g. `["--sock", "/run/docker.sock"]`.
    pub options: Vec<String>,
}

/// The options the interface dialog offers: `(call, takes a value)`.
const OPTIONS: &[(&str, bool)] = &[
    ("--sock", true),
    ("--pid", true),
    ("--comm", true),
    ("--seg-size", true),
    ("--hook", true),
    ("--port-map", true),
    ("--all-users", false),
];

/// Whether Wireshark started this process (rather than a user).
pub fn is_extcap_call(args: &[OsString]) -> bool {
    args.iter().any(|a| {
        a.to_str().is_some_and(|a| a.starts_with("--extcap-") || a == "--capture" || a.starts_with("--fifo"))
    })
}

/// Parses an extcap call. Arguments of newer Wireshark versions that
/// sockdump does not know are skipped, with their value if they have one.
pub fn parse(args: &[OsString]) -> Result<Call, ExtcapError> {
    let args: Vec<&str> =
        args.iter().map(|a| a.to_str().ok_or(ExtcapError::NotUtf8)).collect::<Result<_, _>>()?;
    let mut listing = None;
    let mut capture = false;
    let mut interface = None;
    let mut fifo = None;
    let mut filter = None;
    let mut options = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let (name, inline) = match args[i].split_once('=') {
            Some((name, value)) if name.starts_with("--") => (name, Some(value)),
            _ => (args[i], None),
        };
        let takes_value =
            matches!(name, "--extcap-interface" | "--fifo" | "--extcap-capture-filter" | "--extcap-version")
                || OPTIONS.iter().any(|&(call, value)| call == name && value)
                || name.starts_with("--extcap-control")
                || name == "--extcap-reload-option";
        let value = if takes_value {
            match inline {
                Some(v) => Some(v.to_string()),
                None => {
                    i += 1;
                    Some(args.get(i).ok_or_else(|| ExtcapError::MissingValue(name.to_string()))?.to_string())
                }
            }
        } else {
            None
        };
        match name {
            "--extcap-interfaces" => listing = Some(Call::Interfaces),
            "--extcap-dlts" => listing = Some(Call::Dlts),
            "--extcap-config" => listing = Some(Call::Config),
            "--capture" => capture = true,
            "--extcap-interface" => interface = value,
            "--fifo" => fifo = value.map(PathBuf::from),
            "--extcap-capture-filter" => filter = value,
            // the dialog takes several PREFIX=PORT pairs in one field
            "--port-map" => {
                for pair in value.iter().flat_map(|v| v.split(',')).filter(|p| !p.is_empty()) {
                    options.extend(["--port-map".to_string(), pair.to_string()]);
                }
            }
            _ if OPTIONS.iter().any(|&(call, _)| call == name) => {
                options.push(name.to_string());
                options.extend(value);
            }
            // --extcap-version, control pipes, and whatever newer versions add
            _ => {
                if !takes_value
                    && inline.is_none()
                    && args.get(i + 1).is_some_and(|next| !next.starts_with("--"))
                {
                    i += 1;
                }
            }
        }
        i += 1;
    }
    if let Some(interface) = &interface {
        if interface != INTERFACE {
            return Err(ExtcapError::UnknownInterface(interface.clone()));
        }
    }
    if let Some(call) = listing {
        return Ok(call);
    }
    if capture {
        let fifo = fifo.ok_or(ExtcapError::MissingFifo)?;
        if let Some(filter) = filter.as_deref().filter(|f| !f.trim().is_empty()) {
            options.extend(crate::filter::to_options(filter)?);
        }
        return Ok(Call::Capture(Capture { fifo, options }));
    }
    Ok(Call::FilterCheck(filter.unwrap_or_default()))
}

/// `--extcap-interfaces`: sockdump's version and its interface.
pub fn interfaces(version: &str) -> String {
    format!(
        "extcap {{version={version}}}{{help=https://github.com/sockdump/sockdump}}\n\
         interface {{value={INTERFACE}}}{{display=Unix sockets (sockdump)}}\n"
    )
}

/// `--extcap-dlts`: messages arrive as Ethernet frames of synthetic TCP/UDP.
pub fn dlts() -> String {
    "dlt {number=1}{name=EN10MB}{display=Unix socket messages as Ethernet/IPv4 TCP and UDP}\n".to_string()
}

/// One choice of the `--hook` selector: its value and what it does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HookValue<'a> {
    pub value: &'a str,
    pub display: &'a str,
}

/// `--extcap-config`: the interface dialog's options. `hooks` are the
/// `--hook` choices, the first being the default.
pub fn config(hooks: &[HookValue<'_>]) -> String {
    let mut out = String::new();
    let args: &[(&str, &str, &str, &str, &str)] = &[
        (
            "--sock",
            "Socket path prefix",
            "string",
            "Only sockets whose path or whose peer's path starts with this; @name for abstract names. Empty: every unix socket.",
            "{validation=^.{0,107}$}{group=Filter}",
        ),
        (
            "--pid",
            "Process ID",
            "unsigned",
            "Only messages sent by this process or to it (its socket's SO_PEERCRED peer)",
            "{range=1,4194304}{group=Filter}",
        ),
        (
            "--comm",
            "Command name",
            "string",
            "Only messages sent by threads with this exact name (at most 15 characters)",
            "{validation=^.{0,15}$}{group=Filter}",
        ),
        (
            "--seg-size",
            "Bytes per message",
            "unsigned",
            "Bytes captured of each message at most; longer messages are shown cut short",
            "{default=51200}{range=1,65536}{group=Capture}",
        ),
        (
            "--hook",
            "Kernel hook",
            "selector",
            "How sockdump hooks the kernel; the first choice picks for you",
            "{group=Capture}",
        ),
        (
            "--all-users",
            "All users' conversations",
            "boolflag",
            "Also other users' conversations; without it a user who is not root sees only those one side of which runs under their own user id",
            "{default=false}{group=Filter}",
        ),
        (
            "--port-map",
            "Port map",
            "string",
            "PREFIX=PORT pairs separated by commas: sockets under PREFIX get PORT, so Wireshark dissects their protocol",
            r"{validation=^([^=,]+=[0-9]{1,5}(,[^=,]+=[0-9]{1,5})*)?$}{group=Capture}",
        ),
    ];
    for (number, (call, display, kind, tooltip, extra)) in args.iter().enumerate() {
        let _ = writeln!(
            out,
            "arg {{number={number}}}{{call={call}}}{{display={display}}}{{type={kind}}}{{tooltip={tooltip}}}{extra}"
        );
    }
    let hook = args.iter().position(|a| a.0 == "--hook").unwrap_or_default();
    for (i, HookValue { value, display }) in hooks.iter().enumerate() {
        let default = if i == 0 { "{default=true}" } else { "" };
        let _ = writeln!(out, "value {{arg={hook}}}{{value={value}}}{{display={value}: {display}}}{default}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(args: &[&str]) -> Result<Call, ExtcapError> {
        parse(&args.iter().map(OsString::from).collect::<Vec<_>>())
    }

    #[test]
    fn listing_calls() {
        assert_eq!(call(&["--extcap-interfaces", "--extcap-version=4.0"]), Ok(Call::Interfaces));
        assert_eq!(call(&["--extcap-interfaces", "--extcap-version", "4.6.1"]), Ok(Call::Interfaces));
        assert_eq!(call(&["--extcap-dlts", "--extcap-interface", "sockdump"]), Ok(Call::Dlts));
        assert_eq!(call(&["--extcap-config", "--extcap-interface", "sockdump"]), Ok(Call::Config));
        assert_eq!(
            call(&["--extcap-dlts", "--extcap-interface", "eth0"]),
            Err(ExtcapError::UnknownInterface("eth0".into()))
        );
    }

    #[test]
    fn capture_with_options_and_filter() {
        let got = call(&[
            "--capture",
            "--extcap-interface",
            "sockdump",
            "--fifo",
            "/tmp/wireshark_extcap_sockdump_1",
            "--extcap-capture-filter",
            "comm curl",
            "--sock",
            "/run/docker.sock",
            "--extcap-control-in",
            "/tmp/in",
            "--extcap-control-out",
            "/tmp/out",
            "--all-users",
            "--seg-size=1000",
        ]);
        assert_eq!(
            got,
            Ok(Call::Capture(Capture {
                fifo: "/tmp/wireshark_extcap_sockdump_1".into(),
                options: [
                    "--sock",
                    "/run/docker.sock",
                    "--all-users",
                    "--seg-size",
                    "1000",
                    "--comm",
                    "curl"
                ]
                .map(String::from)
                .to_vec(),
            }))
        );
        assert_eq!(call(&["--capture", "--extcap-interface", "sockdump"]), Err(ExtcapError::MissingFifo));
    }

    #[test]
    fn unknown_arguments_from_newer_wiresharks_are_skipped() {
        let got = call(&[
            "--extcap-interfaces",
            "--extcap-new-flag",
            "--extcap-new-option",
            "value",
            "--debug",
            "--extcap-version=9.9",
        ]);
        assert_eq!(got, Ok(Call::Interfaces));
        let got = call(&["--capture", "--fifo", "/f", "--future", "x", "--pid", "7"]);
        assert_eq!(
            got,
            Ok(Call::Capture(Capture { fifo: "/f".into(), options: vec!["--pid".into(), "7".into()] }))
        );
    }

    #[test]
    fn filter_check_without_capture() {
        assert_eq!(
            call(&["--extcap-interface", "sockdump", "--extcap-capture-filter", "pid 1"]),
            Ok(Call::FilterCheck("pid 1".into()))
        );
        assert!(is_extcap_call(&["--extcap-capture-filter".into(), "x".into()]));
        assert!(!is_extcap_call(&["--sock".into(), "/x".into()]));
    }

    #[test]
    fn listings_are_well_formed() {
        assert!(interfaces("1.2.3").starts_with("extcap {version=1.2.3}"));
        assert!(interfaces("1").contains("interface {value=sockdump}{display=Unix sockets (sockdump)}"));
        assert_eq!(dlts().lines().count(), 1);
        let hooks = [
            HookValue { value: "auto", display: "the first that works" },
            HookValue { value: "kprobe", display: "kprobe/kretprobe" },
        ];
        let config = config(&hooks);
        for line in config.lines() {
            assert!(line.starts_with("arg {number=") || line.starts_with("value {arg="), "{line}");
            assert_eq!(line.matches('{').count(), line.matches('}').count(), "{line}");
        }
        for (call, _) in OPTIONS {
            assert!(config.contains(&format!("{{call={call}}}")), "{call} missing from the dialog");
        }
        assert!(config.contains("{tooltip="));
        assert!(config.contains("{value=auto}{display=auto: the first that works}{default=true}"));
        assert!(config.contains("{value=kprobe}{display=kprobe: kprobe/kretprobe}\n"));
    }
}
