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

mod measure;
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
