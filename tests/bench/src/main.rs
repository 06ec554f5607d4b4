//! `sockdump-bench`: what capturing costs, measured against a baseline in
//! the same run (these machines are noisy: only ratios are reported).
//!
//! `sockdump-bench [--sockdump PATH] [--quick] [--hook H[,H...]] [--sizes
//! N[,N...]] [--seconds S] [--markdown FILE]` prints tables, with a row per hook family
//! given (default: `auto`) in the same alternating runs; `workload` is the
//! measured traffic, started by the runner.
//! `sockdump-bench writers [--messages N] [--rounds N] [--realistic-only]`
//! measures the pcapng sink with realistic events and compares the capture
//! file writers (no root, no capture).
//! `sockdump-bench soak [--quick] [--pairs N] [--messages M] [--size B]
//! [--hook H] [--output FILE] [--sockdump PATH]`: sockdump's peak memory and
//! CPU over a million socketpairs; `soak-workload` is its traffic.

mod measure;
mod soak;
mod workload;
mod writers;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};

fn main() -> ExitCode {
    match real_main() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("sockdump-bench: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn real_main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("workload") {
        let get = |name: &str| -> Result<Option<u64>> {
            match args.iter().position(|a| a == name) {
                Some(i) => Ok(Some(args.get(i + 1).context("missing value")?.parse()?)),
                None => Ok(None),
            }
        };
        let w = workload::Workload {
            size: get("--size")?.context("--size")? as usize,
            count: get("--count")?.context("--count")?,
            rate: get("--rate")?,
        };
        return workload::run(&w, args.iter().any(|a| a == "--wait"));
    }
    if args.first().map(String::as_str) == Some("writers") {
        let mut options = writers::Options { messages: 50_000, rounds: 25, realistic_only: false };
        let mut rest = args[1..].iter();
        while let Some(arg) = rest.next() {
            let mut value = || -> Result<usize> { Ok(rest.next().context("missing value")?.parse()?) };
            match arg.as_str() {
                "--messages" => options.messages = value()?,
                "--rounds" => options.rounds = value()?,
                "--realistic-only" => options.realistic_only = true,
                other => bail!(
                    "unknown argument {other}; usage: sockdump-bench writers [--messages N] [--rounds N] [--realistic-only]"
                ),
            }
        }
        return writers::run(&options, &mut measure::Report { text: String::new() });
    }
    if args.first().map(String::as_str) == Some("soak-workload") {
        let mut rest = args[1..].iter();
        let (mut pairs, mut messages, mut size) = (None, None, None);
        while let Some(arg) = rest.next() {
            let value = rest.next().with_context(|| format!("{arg} needs a value"))?;
            match arg.as_str() {
                "--pairs" => pairs = Some(value.parse()?),
                "--messages" => messages = Some(value.parse()?),
                "--size" => size = Some(value.parse()?),
                other => bail!("unknown argument {other}"),
            }
        }
        return soak::workload(
            pairs.context("--pairs")?,
            messages.context("--messages")?,
            size.context("--size")?,
        );
    }
    if args.first().map(String::as_str) == Some("soak") {
        return soak::run(&soak_options(&args[1..])?);
    }
    let mut options = measure::Options {
        sockdump: std::env::current_exe()?.with_file_name("sockdump"),
        quick: false,
        markdown: None,
        hooks: vec!["auto".into()],
        sizes: vec![64, 1024, 65536],
        seconds: None,
    };
    let list = |value: Option<String>, what: &str| -> Result<Vec<String>> {
        let value = value.with_context(|| format!("{what} needs a value"))?;
        Ok(value.split(',').map(String::from).collect())
    };
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--sockdump" => options.sockdump = PathBuf::from(args.next().context("--sockdump PATH")?),
            "--quick" => options.quick = true,
            "--markdown" => options.markdown = Some(PathBuf::from(args.next().context("--markdown FILE")?)),
            "--seconds" => {
                options.seconds = Some(args.next().context("--seconds S")?.parse().context("--seconds S")?)
            }
            "--hook" => options.hooks = list(args.next(), "--hook")?,
            "--sizes" => {
                options.sizes = list(args.next(), "--sizes")?
                    .iter()
                    .map(|n| n.parse().with_context(|| format!("--sizes: {n} is not a size")))
                    .collect::<Result<_>>()?
            }
            other => bail!(
                "unknown argument {other}; usage: sockdump-bench [--sockdump PATH] [--quick] [--hook H[,H...]] [--sizes N[,N...]] [--seconds S] [--markdown FILE]"
            ),
        }
    }
    measure::run_all(&options)
}

const SOAK_USAGE: &str = "usage: sockdump-bench soak [--quick] [--pairs N] [--messages M] [--size B] [--hook H] [--output FILE] [--sockdump PATH]";

/// A million socketpairs and ten million messages unless told otherwise;
/// `--quick`: the same pairs with one message each way.
fn soak_options(args: &[String]) -> Result<soak::Options> {
    let mut options = soak::Options {
        sockdump: std::env::current_exe()?.with_file_name("sockdump"),
        hook: "auto".into(),
        pairs: 1_000_000,
        messages: 10_000_000,
        size: 64,
        output: PathBuf::from("/dev/null"),
    };
    let (mut messages, mut quick) = (None, false);
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        if arg == "--quick" {
            quick = true;
            continue;
        }
        let value = args.next().with_context(|| format!("{arg} needs a value; {SOAK_USAGE}"))?;
        let number = || value.parse::<u64>().with_context(|| format!("{arg}: {value} is not a number"));
        match arg.as_str() {
            "--pairs" => options.pairs = number()?,
            "--messages" => messages = Some(number()?),
            "--size" => options.size = number()? as usize,
            "--hook" => options.hook = value.clone(),
            "--output" => options.output = PathBuf::from(value),
            "--sockdump" => options.sockdump = PathBuf::from(value),
            other => bail!("unknown argument {other}; {SOAK_USAGE}"),
        }
    }
    options.messages = messages.unwrap_or(if quick { 2 * options.pairs } else { options.messages });
    Ok(options)
}
