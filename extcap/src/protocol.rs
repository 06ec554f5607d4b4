use std::ffi::OsString;
use std::path::PathBuf;

use crate::dialog;

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
    /// The dialog; `reload`: only the choices of that selector (its call).
    Config {
        reload: Option<String>,
    },
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
    /// capture filter, e.g. `["--sock=/run/docker.sock"]`: a value is in
    /// its option's argument, so that one starting with `-` stays a value.
    pub options: Vec<String>,
    /// The dialog's switch to keep Wireshark's own conversations; without
    /// it the binary leaves out those of the process that started it.
    pub include_viewer: bool,
}

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
    let mut include_viewer = false;
    let mut reload = None;
    let mut i = 0;
    while i < args.len() {
        let (name, inline) = match args[i].split_once('=') {
            Some((name, value)) if name.starts_with("--") => (name, Some(value)),
            _ => (args[i], None),
        };
        let takes_value =
            matches!(name, "--extcap-interface" | "--fifo" | "--extcap-capture-filter" | "--extcap-version")
                || dialog::arg(name).is_some_and(|arg| arg.takes_value())
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
            "--extcap-config" => listing = Some(Call::Config { reload: None }),
            // Wireshark names the option without its dashes
            "--extcap-reload-option" => {
                reload = value.map(|v| if v.starts_with("--") { v } else { format!("--{v}") })
            }
            "--capture" => capture = true,
            "--extcap-interface" => interface = value,
            "--fifo" => fifo = value.map(PathBuf::from),
            "--extcap-capture-filter" => filter = value,
            // the dialog takes several PREFIX=PORT pairs in one field
            "--port-map" => {
                for pair in value.iter().flat_map(|v| v.split(',')).filter(|p| !p.is_empty()) {
                    options.push(format!("--port-map={pair}"));
                }
            }
            dialog::INCLUDE_VIEWER => include_viewer = true,
            // an emptied field means the option is off
            _ if dialog::arg(name).is_some() && value.as_deref() != Some("") => {
                options.push(value.map_or_else(|| name.to_string(), |value| format!("{name}={value}")));
            }
            _ if dialog::arg(name).is_some() => {}
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
        return Ok(match call {
            Call::Config { .. } => Call::Config { reload },
            other => other,
        });
    }
    if capture {
        let fifo = fifo.ok_or(ExtcapError::MissingFifo)?;
        if let Some(filter) = filter.as_deref().filter(|f| !f.trim().is_empty()) {
            options.extend(crate::filter::to_options(filter)?);
        }
        return Ok(Call::Capture(Capture { fifo, options, include_viewer }));
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
        assert_eq!(
            call(&["--extcap-config", "--extcap-interface", "sockdump"]),
            Ok(Call::Config { reload: None })
        );
        for option in ["container", "--container"] {
            assert_eq!(
                call(&[
                    "--extcap-config",
                    "--extcap-interface",
                    "sockdump",
                    "--extcap-reload-option",
                    option
                ]),
                Ok(Call::Config { reload: Some("--container".into()) })
            );
        }
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
            "--include-viewer",
            "--pid",
            "",
            "--seg-size=1000",
        ]);
        assert_eq!(
            got,
            Ok(Call::Capture(Capture {
                fifo: "/tmp/wireshark_extcap_sockdump_1".into(),
                options: ["--sock=/run/docker.sock", "--all-users", "--seg-size=1000", "--comm=curl"]
                    .map(String::from)
                    .to_vec(),
                include_viewer: true,
            }))
        );
        assert_eq!(call(&["--capture", "--extcap-interface", "sockdump"]), Err(ExtcapError::MissingFifo));
    }

    /// Found by fuzzing: given as two arguments, a value starting with `-`
    /// was taken for an option by sockdump's command line, and the
    /// capture failed after the filter check had passed.
    #[test]
    fn values_starting_with_a_dash_stay_values() {
        let got = call(&[
            "--capture",
            "--fifo",
            "/f",
            "--sock",
            "-rel.sock",
            "--extcap-capture-filter",
            "comm -bash",
        ]);
        let Ok(Call::Capture(capture)) = got else { panic!("{got:?}") };
        assert_eq!(capture.options, ["--sock=-rel.sock", "--comm=-bash"]);
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
            Ok(Call::Capture(Capture {
                fifo: "/f".into(),
                options: vec!["--pid=7".into()],
                include_viewer: false
            }))
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
        let config = crate::config(&|_| vec![crate::Choice { value: "auto".into(), display: "a".into() }]);
        for line in config.lines() {
            assert!(line.starts_with("arg {number=") || line.starts_with("value {arg="), "{line}");
            assert_eq!(line.matches('{').count(), line.matches('}').count(), "{line}");
        }
    }
}
