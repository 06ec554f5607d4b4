//! The interface dialog Wireshark shows for sockdump (`--extcap-config`):
//! one table of options, each with a default the dialog accepts as it
//! comes, so the options can be saved without touching them.

use std::fmt::Write as _;

/// How the dialog shows an option, and what it accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A text field; empty (the default) must match `validation`.
    Text { validation: &'static str },
    /// A number field with a default in `min..=max` (Wireshark's number
    /// fields refuse an empty value).
    Unsigned { default: u32, min: u32, max: u32 },
    /// A checkbox, off by default; passed bare when on.
    BoolFlag,
    /// A drop-down of the choices [`config`] is given for it; with
    /// `reload`, a button asks for them again ([`reload`]).
    Selector { reload: bool },
}

/// One option of the dialog.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Arg {
    pub call: &'static str,
    display: &'static str,
    pub kind: Kind,
    tooltip: &'static str,
    group: &'static str,
}

impl Arg {
    /// Whether the call is followed by a value.
    pub fn takes_value(&self) -> bool {
        self.kind != Kind::BoolFlag
    }
}

/// The `--uid` field's pattern: a user name or number, or nothing.
const USER: &str = "^([0-9]{1,10}|[a-z_][a-z0-9_-]{0,31}[$]?)?$";

/// The dialog's switch that keeps Wireshark's own conversations in the
/// capture; not a sockdump option (see [`crate::Capture::include_viewer`]).
pub const INCLUDE_VIEWER: &str = "--include-viewer";

/// Every option, in the dialog's order.
pub const ARGS: &[Arg] = &[
    Arg {
        call: "--sock",
        display: "Socket path prefix",
        kind: Kind::Text { validation: "^.{0,107}$" },
        tooltip: "Only sockets whose path or whose peer's path starts with this; @name for abstract names. \
                  Empty: every unix socket.",
        group: "Filter",
    },
    Arg {
        call: "--pid",
        display: "Process ID",
        kind: Kind::Text { validation: "^([1-9][0-9]{0,6})?$" },
        tooltip: "Only messages sent by this process or to it (its socket's SO_PEERCRED peer). Empty: every process.",
        group: "Filter",
    },
    Arg {
        call: "--comm",
        display: "Command name",
        kind: Kind::Text { validation: "^.{0,15}$" },
        tooltip: "Only messages sent by threads with this exact name (at most 15 characters). Empty: every thread.",
        group: "Filter",
    },
    Arg {
        call: "--uid",
        display: "User",
        kind: Kind::Text { validation: USER },
        tooltip: "Only messages sent by this user's processes (a name or uid), or sent to sockets it owns. \
                  Empty: every user.",
        group: "Filter",
    },
    Arg {
        call: "--container",
        display: "Container",
        kind: Kind::Selector { reload: true },
        tooltip: "Only messages sent or read by processes in this container (reload lists the running ones; \
                  one that starts later matches too)",
        group: "Filter",
    },
    Arg {
        call: "--all-users",
        display: "All users' conversations",
        kind: Kind::BoolFlag,
        tooltip: "Also other users' conversations; without it a user who is not root sees only those one side \
                  of which runs under their own user id",
        group: "Filter",
    },
    Arg {
        call: INCLUDE_VIEWER,
        display: "Wireshark's own conversations",
        kind: Kind::BoolFlag,
        tooltip: "Also what Wireshark itself and the programs it started send and are sent, e.g. the drawing of \
                  its window; without it they are left out, or the capture would show its own display",
        group: "Filter",
    },
    Arg {
        call: "--seg-size",
        display: "Bytes per message",
        kind: Kind::Unsigned { default: 51200, min: 1, max: 65536 },
        tooltip: "Bytes captured of each message at most; longer messages are shown cut short",
        group: "Capture",
    },
    Arg {
        call: "--hook",
        display: "Kernel hook",
        kind: Kind::Selector { reload: false },
        tooltip: "How sockdump hooks the kernel; the first choice picks for you",
        group: "Capture",
    },
    Arg {
        call: "--port-map",
        display: "Port map",
        kind: Kind::Text { validation: "^([^=,]+=[0-9]{1,5}(,[^=,]+=[0-9]{1,5})*)?$" },
        tooltip: "PREFIX=PORT pairs separated by commas: sockets under PREFIX get PORT, so Wireshark dissects \
                  their protocol. Empty: the built-in ports only.",
        group: "Capture",
    },
];

/// The option `call` names.
pub fn arg(call: &str) -> Option<&'static Arg> {
    ARGS.iter().find(|a| a.call == call)
}

/// One choice of a selector: its value and what the dialog shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    pub value: String,
    pub display: String,
}

/// `--extcap-config`: the interface dialog's options. `choices` gives each
/// selector's (by its call), the first being the default.
pub fn config(choices: &dyn Fn(&str) -> Vec<Choice>) -> String {
    let mut out = String::new();
    for (number, arg) in ARGS.iter().enumerate() {
        let (kind, extra) = match arg.kind {
            Kind::Text { validation } => ("string", format!("{{validation={validation}}}")),
            Kind::Unsigned { default, min, max } => {
                ("unsigned", format!("{{default={default}}}{{range={min},{max}}}"))
            }
            Kind::BoolFlag => ("boolflag", "{default=false}".to_string()),
            Kind::Selector { reload: false } => ("selector", String::new()),
            Kind::Selector { reload: true } => ("selector", "{reload=true}{placeholder=Reload}".to_string()),
        };
        let _ = writeln!(
            out,
            "arg {{number={number}}}{{call={}}}{{display={}}}{{type={kind}}}{{tooltip={}}}{extra}{{group={}}}",
            arg.call, arg.display, arg.tooltip, arg.group
        );
        if matches!(arg.kind, Kind::Selector { .. }) {
            values_into(&mut out, number, &choices(arg.call));
        }
    }
    out
}

/// `--extcap-config --extcap-reload-option CALL`: the choices of that
/// selector alone, as the dialog's reload button asks for them.
pub fn reload(call: &str, choices: &[Choice]) -> String {
    let mut out = String::new();
    if let Some(number) =
        ARGS.iter().position(|a| a.call == call && a.kind == Kind::Selector { reload: true })
    {
        values_into(&mut out, number, choices);
    }
    out
}

/// A selector's `value` lines. Values and names come from elsewhere (a
/// container engine): a brace or line break would end the line's field.
fn values_into(out: &mut String, number: usize, choices: &[Choice]) {
    let clean = |text: &str| text.replace(['{', '}', '\n', '\r'], "_");
    for (i, Choice { value, display }) in choices.iter().enumerate() {
        let default = if i == 0 { "{default=true}" } else { "" };
        let _ = writeln!(
            out,
            "value {{arg={number}}}{{value={}}}{{display={}}}{default}",
            clean(value),
            clean(display)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// The `{key=value}` fields of one config line.
    /// Fields end at `}{` or the line's last `}`: values (regexes) may hold braces.
    fn fields(line: &str) -> HashMap<&str, &str> {
        let body = line.split_once(" {").map_or("", |(_, rest)| rest).trim_end().trim_end_matches('}');
        body.split("}{").filter_map(|f| f.split_once('=')).collect()
    }

    /// What Wireshark's dialog does with an option as it first shows it:
    /// a number field accepts only a number in its range (an empty one is
    /// red), a text field its validation regex matched against the default
    /// (empty when none), a checkbox true or false, a selector one default.
    fn dialog_accepts(arg: &HashMap<&str, &str>, values: &[HashMap<&str, &str>]) -> Result<(), String> {
        let default = arg.get("default").copied().unwrap_or("");
        if arg.get("required") == Some(&"true") && default.is_empty() {
            return Err("required with no default".into());
        }
        match arg["type"] {
            "unsigned" | "integer" | "long" => {
                let value: i64 =
                    default.parse().map_err(|_| format!("default {default:?} is not a number"))?;
                if let Some(range) = arg.get("range") {
                    let (min, max) = range.split_once(',').ok_or("a range of two numbers")?;
                    let (min, max): (i64, i64) =
                        (min.parse().map_err(|_| "range")?, max.parse().map_err(|_| "range")?);
                    if !(min..=max).contains(&value) {
                        return Err(format!("default {value} outside {min}..={max}"));
                    }
                }
            }
            "string" => {
                if let Some(validation) = arg.get("validation") {
                    let regex = regex::Regex::new(validation).map_err(|e| e.to_string())?;
                    if !regex.is_match(default) {
                        return Err(format!("default {default:?} fails {validation}"));
                    }
                }
            }
            "boolflag" | "boolean" => {
                if !matches!(default, "true" | "false") {
                    return Err(format!("default {default:?} is not true or false"));
                }
            }
            "selector" => {
                let defaults = values.iter().filter(|v| v.get("default") == Some(&"true")).count();
                if values.is_empty() || defaults != 1 {
                    return Err(format!("{} values, {defaults} defaults", values.len()));
                }
            }
            other => return Err(format!("type {other} not modelled")),
        }
        Ok(())
    }

    #[test]
    fn every_option_is_accepted_by_the_dialog_as_it_comes() {
        let config = config(&choices);
        let lines: Vec<HashMap<&str, &str>> = config.lines().map(fields).collect();
        let args: Vec<&HashMap<&str, &str>> = lines.iter().filter(|f| f.contains_key("call")).collect();
        assert_eq!(args.len(), ARGS.len());
        for arg in args {
            let number = arg["number"];
            let values: Vec<HashMap<&str, &str>> = lines
                .iter()
                .filter(|f| f.get("arg") == Some(&number) && f.contains_key("value"))
                .cloned()
                .collect();
            dialog_accepts(arg, &values).unwrap_or_else(|why| panic!("{}: {why}", arg["call"]));
            assert!(!arg["tooltip"].is_empty());
        }
    }

    #[test]
    fn the_model_refuses_what_wireshark_refuses() {
        let arg = |text: &'static str| fields(text);
        let refused = [
            "arg {number=0}{call=--pid}{type=unsigned}{range=1,4194304}",
            "arg {number=0}{call=--n}{type=unsigned}{default=0}{range=1,9}",
            "arg {number=0}{call=--s}{type=string}{validation=^[0-9]+$}",
            "arg {number=0}{call=--s}{type=string}{required=true}",
            "arg {number=0}{call=--b}{type=boolflag}",
        ];
        for text in refused {
            assert!(dialog_accepts(&arg(text), &[]).is_err(), "{text}");
        }
        assert!(dialog_accepts(&arg("arg {number=0}{call=--s}{type=selector}"), &[]).is_err());
    }

    fn choice(value: &str, display: &str) -> Choice {
        Choice { value: value.into(), display: display.into() }
    }

    /// Two choices per selector, named after it.
    fn choices(call: &str) -> Vec<Choice> {
        vec![choice("", &format!("any {call}")), choice("x}{y", &format!("{call} 2\nline"))]
    }

    #[test]
    fn selectors_list_every_choice_with_the_first_as_default() {
        let config = config(&choices);
        let hook = ARGS.iter().position(|a| a.call == "--hook").unwrap();
        assert!(config
            .contains(&format!("value {{arg={hook}}}{{value=}}{{display=any --hook}}{{default=true}}\n")));
        assert!(config.contains(&format!("value {{arg={hook}}}{{value=x__y}}{{display=--hook 2_line}}\n")));
        let container = ARGS.iter().position(|a| a.call == "--container").unwrap();
        assert!(config.contains("{call=--container}{display=Container}{type=selector}"));
        assert!(config.lines().any(|l| l.contains("{call=--container}") && l.contains("{reload=true}")));
        let reloaded = reload("--container", &choices("--container"));
        assert_eq!(
            reloaded,
            format!(
                "value {{arg={container}}}{{value=}}{{display=any --container}}{{default=true}}\n\
                 value {{arg={container}}}{{value=x__y}}{{display=--container 2_line}}\n"
            )
        );
        assert_eq!(reload("--hook", &choices("--hook")), "", "the hooks do not reload");
    }
}
