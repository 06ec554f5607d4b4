//! The capture filter sockdump's interface accepts in Wireshark's capture
//! filter field: terms joined by `and`, each becoming a sockdump option.
//!
//! ```text
//! pid 1234 and comm curl and sock /run/docker.sock
//! ```

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    #[error("capture filter: {0:?} needs a value (terms are `pid N`, `sock PREFIX`, `comm NAME`, joined by `and`)")]
    MissingValue(String),
    #[error(
        "capture filter: unknown term {0:?} (terms are `pid N`, `sock PREFIX`, `comm NAME`, joined by `and`)"
    )]
    UnknownTerm(String),
    #[error("capture filter: pid {0:?} is not a process id")]
    BadPid(String),
    #[error("capture filter: {0} given twice")]
    Repeated(&'static str),
}

/// Turns a filter into sockdump options (`["--pid=1234", ...]`): each with
/// its value in one argument, so that a value starting with `-` stays a
/// value (`comm -bash`).
pub fn to_options(filter: &str) -> Result<Vec<String>, FilterError> {
    let mut options = Vec::new();
    let mut seen = Vec::new();
    let words: Vec<&str> = filter.split_whitespace().collect();
    let mut terms = words.split(|w| *w == "and" || *w == "&&");
    for term in terms.by_ref() {
        let (keyword, value) = match term {
            [] => continue,
            [keyword] => return Err(FilterError::MissingValue(keyword.to_string())),
            [keyword, rest @ ..] => (*keyword, rest.join(" ")),
        };
        let option = match keyword {
            "pid" => {
                if !value.parse::<u32>().is_ok_and(|pid| pid > 0) {
                    return Err(FilterError::BadPid(value));
                }
                "--pid"
            }
            "sock" => "--sock",
            "comm" => "--comm",
            other => return Err(FilterError::UnknownTerm(other.to_string())),
        };
        if seen.contains(&option) {
            return Err(FilterError::Repeated(option.trim_start_matches('-')));
        }
        seen.push(option);
        options.push(format!("{option}={value}"));
    }
    Ok(options)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terms_become_options() {
        assert_eq!(
            to_options("pid 12 and sock /run/a b.sock && comm curl").unwrap(),
            ["--pid=12", "--sock=/run/a b.sock", "--comm=curl"]
        );
        assert_eq!(to_options("comm -bash").unwrap(), ["--comm=-bash"]);
        assert_eq!(to_options("  ").unwrap(), Vec::<String>::new());
    }

    #[test]
    fn bad_filters_say_why() {
        assert_eq!(to_options("pid"), Err(FilterError::MissingValue("pid".into())));
        assert_eq!(to_options("port 80"), Err(FilterError::UnknownTerm("port".into())));
        assert_eq!(to_options("pid x"), Err(FilterError::BadPid("x".into())));
        assert_eq!(to_options("pid 0"), Err(FilterError::BadPid("0".into())));
        assert_eq!(to_options("pid 1 and pid 2"), Err(FilterError::Repeated("pid")));
        assert!(to_options("tcp port 80").unwrap_err().to_string().contains("terms are `pid N`"));
    }
}
