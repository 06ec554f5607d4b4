//! sockdump's capture scenarios, as one static binary that runs on the host
//! and inside VM kernels alike.
//!
//! `sockdump-scenarios run --sockdump PATH --hook HOOK [SCENARIO...]` prints
//! `RESULT <hook> <scenario> PASS|FAIL [why]` per scenario and fails if any
//! failed. `refused --sockdump PATH --hook HOOK` checks that a hook the kernel
//! lacks fails cleanly. `peer` is the traffic side, started by `run`.

mod parse;
mod peer;
mod runner;
mod scenarios;

use std::path::PathBuf;
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

struct Options {
    sockdump: PathBuf,
    hook: String,
    names: Vec<String>,
}

fn parse_options(args: &[String]) -> Result<Options> {
    let mut sockdump = None;
    let mut hook = "auto".to_string();
    let mut names = Vec::new();
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--sockdump" => sockdump = Some(PathBuf::from(args.next().context("--sockdump PATH")?)),
            "--hook" => hook = args.next().context("--hook HOOK")?.clone(),
            name => names.push(name.to_string()),
        }
    }
    let sockdump = match sockdump {
        Some(path) => path,
        // Next to this binary, as cargo and the VM images lay them out.
        None => std::env::current_exe()?.with_file_name("sockdump"),
    };
    Ok(Options { sockdump, hook, names })
}

fn run(options: &Options) -> Result<bool> {
    let selected: Vec<&'static scenarios::Scenario> = if options.names.is_empty() {
        scenarios::SCENARIOS.iter().collect()
    } else {
        options.names.iter().map(|n| scenarios::find(n)).collect::<Result<_>>()?
    };
    let me = std::env::current_exe()?;
    let started = Instant::now();
    let outcomes = runner::run(&me, &options.sockdump, &options.hook, &selected)?;
    let mut ok = true;
    for outcome in &outcomes {
        match &outcome.failure {
            None => println!("RESULT {} {} PASS", options.hook, outcome.scenario),
            Some(why) => {
                ok = false;
                println!("RESULT {} {} FAIL {}", options.hook, outcome.scenario, why.replace('\n', " "));
            }
        }
    }
    println!(
        "# {} scenarios with --hook {} in {:.1}s",
        outcomes.len(),
        options.hook,
        started.elapsed().as_secs_f64()
    );
    Ok(ok)
}

/// A forced hook the kernel lacks: a clear one-line error and a failure exit, quickly.
fn refused(options: &Options) -> Result<bool> {
    let started = Instant::now();
    let out = Command::new(&options.sockdump).args(["--hook", &options.hook, "-c", "1"]).output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    let expected = format!("sockdump: --hook {} is not available on this kernel: ", options.hook);
    let ok = !out.status.success()
        && stderr.lines().count() == 1
        && stderr.starts_with(&expected)
        && started.elapsed() < Duration::from_secs(60);
    let verdict = if ok { "PASS" } else { "FAIL" };
    println!("RESULT {} refused {verdict} {}", options.hook, stderr.trim().replace('\n', " | "));
    Ok(ok)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("peer") if args.len() == 3 => {
            scenarios::find(&args[1]).and_then(|s| peer::serve(s, PathBuf::from(&args[2]))).map(|()| true)
        }
        Some("run") => parse_options(&args[1..]).and_then(|o| run(&o)),
        Some("refused") => parse_options(&args[1..]).and_then(|o| refused(&o)),
        Some("list") => {
            scenarios::SCENARIOS.iter().for_each(|s| println!("{}", s.name));
            Ok(true)
        }
        _ => Err(anyhow::anyhow!(
            "usage: sockdump-scenarios run|refused [--sockdump PATH] [--hook HOOK] [SCENARIO...] | list"
        )),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(err) => {
            eprintln!("sockdump-scenarios: {err:#}");
            ExitCode::FAILURE
        }
    }
}
