//! sockdump's capture scenarios, as one static binary that runs on the host
//! and inside VM kernels alike.
//!
//! `sockdump-scenarios run --sockdump PATH --hook HOOK [--expect-hook HOOK]
//! [--expect-stderr TEXT] [--report-as NAME] [SCENARIO...]` prints `RESULT
//! <hook> <scenario> PASS|FAIL [why]` per scenario and fails if any failed
//! (`--expect-hook`: the family `--hook auto` must pick; `--expect-stderr`:
//! what sockdump must say before it listens; `--report-as`: one result named
//! NAME for all the scenarios). `hook` does the same where the kernel has
//! the hook, and otherwise checks that forcing it fails cleanly (`RESULT <hook> refused`).
//! `peer` is the traffic side, started by `run`.
//!
//! Peers for container tests (see tools.rs): `client PATH MSG...` prints the
//! reply to each message; `echo-server PATH` answers each with `re:MSG`
//! until killed; `fork-client PATH MSG` sends `MSG-parent` and, from a
//! forked child, `MSG-child`, and exits 3.

mod parse;
mod peer;
mod readers;
mod runner;
mod scenarios;
mod tools;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

struct Options {
    target: runner::Target,
    names: Vec<String>,
    /// Report the scenarios as one result under this name.
    report_as: Option<String>,
}

fn parse_options(args: &[String]) -> Result<Options> {
    let mut sockdump = None;
    let mut hook = "auto".to_string();
    let mut expect_hook = None;
    let mut expect_stderr = None;
    let mut report_as = None;
    let mut preempted = false;
    let mut names = Vec::new();
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--sockdump" => sockdump = Some(PathBuf::from(args.next().context("--sockdump PATH")?)),
            "--hook" => hook = args.next().context("--hook HOOK")?.clone(),
            "--expect-hook" => expect_hook = Some(args.next().context("--expect-hook HOOK")?.clone()),
            "--expect-stderr" => expect_stderr = Some(args.next().context("--expect-stderr TEXT")?.clone()),
            "--report-as" => report_as = Some(args.next().context("--report-as NAME")?.clone()),
            "--preempted" => preempted = true,
            name => names.push(name.to_string()),
        }
    }
    let sockdump = match sockdump {
        Some(path) => path,
        // Next to this binary, as cargo and the VM images lay them out.
        None => std::env::current_exe()?.with_file_name("sockdump"),
    };
    Ok(Options {
        target: runner::Target { sockdump, hook, expect_hook, expect_stderr, preempted },
        names,
        report_as,
    })
}

fn run(options: &Options) -> Result<bool> {
    // in the table's order, whatever the order of the names (see runner::run)
    for name in &options.names {
        scenarios::find(name)?;
    }
    let selected: Vec<&'static scenarios::Scenario> = scenarios::SCENARIOS
        .iter()
        .filter(|s| options.names.is_empty() || options.names.contains(&s.name.to_string()))
        .collect();
    let me = std::env::current_exe()?;
    let hook = &options.target.hook;
    let started = Instant::now();
    let outcomes = runner::run(&me, &options.target, &selected)?;
    let results: Vec<(&str, Option<String>)> = match &options.report_as {
        None => outcomes.iter().map(|o| (o.scenario, o.failure.clone())).collect(),
        Some(name) => {
            let failures: Vec<String> = outcomes
                .iter()
                .filter_map(|o| o.failure.as_ref().map(|why| format!("{}: {why}", o.scenario)))
                .collect();
            vec![(name.as_str(), (!failures.is_empty()).then(|| failures.join("; ")))]
        }
    };
    let mut ok = true;
    for (name, failure) in results {
        match failure {
            None => println!("RESULT {hook} {name} PASS"),
            Some(why) => {
                ok = false;
                println!("RESULT {hook} {name} FAIL {}", why.replace('\n', " "));
            }
        }
    }
    println!("# {} scenarios with --hook {hook} in {:.1}s", outcomes.len(), started.elapsed().as_secs_f64());
    Ok(ok)
}

/// A forced hook the kernel lacks: a clear one-line error and a failure
/// exit, quickly. Returns None when the kernel has the hook after all.
fn refused(options: &Options) -> Result<Option<bool>> {
    let hook = &options.target.hook;
    let started = Instant::now();
    let mut probe = Command::new(&options.target.sockdump)
        .args(["--hook", hook, "--pid", "1"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    // `listening` (the kernel has the hook, perhaps after a warning; sockdump
    // then runs until stopped), or the error, after which stderr ends.
    let mut lines = BufReader::new(probe.stderr.take().context("stderr")?);
    let mut stderr = String::new();
    loop {
        let mut line = String::new();
        if lines.read_line(&mut line)? == 0 {
            break;
        }
        if line.starts_with("listening") {
            let _ = probe.kill();
            probe.wait()?;
            return Ok(None);
        }
        stderr += &line;
    }
    let status = probe.wait()?;
    let expected = format!("sockdump: --hook {hook} is not available on this kernel: ");
    let ok = !status.success()
        && stderr.lines().count() == 1
        && stderr.starts_with(&expected)
        && started.elapsed() < Duration::from_secs(60);
    let verdict = if ok { "PASS" } else { "FAIL" };
    println!("RESULT {hook} refused {verdict} {}", stderr.trim().replace('\n', " | "));
    Ok(Some(ok))
}

/// Where the kernel has the hook, every scenario runs with it; where it
/// does not, the forced hook must be refused cleanly.
fn hook(options: &Options) -> Result<bool> {
    match refused(options)? {
        Some(ok) => Ok(ok),
        None => run(options),
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("peer") if args.len() == 3 => {
            scenarios::find(&args[1]).and_then(|s| peer::serve(s, PathBuf::from(&args[2]))).map(|()| true)
        }
        Some("run") => parse_options(&args[1..]).and_then(|o| run(&o)),
        Some("hook") => parse_options(&args[1..]).and_then(|o| hook(&o)),
        Some("client") if args.len() >= 3 => tools::client(Path::new(&args[1]), &args[2..]).map(|()| true),
        Some("echo-server") if args.len() == 2 => tools::echo_server(Path::new(&args[1])).map(|()| true),
        Some("fork-client") if args.len() == 3 => tools::fork_client(Path::new(&args[1]), &args[2])
            .map(|()| std::process::exit(tools::FORK_CLIENT_STATUS)),
        Some("list") => {
            scenarios::SCENARIOS.iter().for_each(|s| println!("{}", s.name));
            Ok(true)
        }
        _ => Err(anyhow::anyhow!(
            "usage: sockdump-scenarios run|hook [--sockdump PATH] [--hook HOOK] [--expect-hook HOOK] \
             [--expect-stderr TEXT] [--report-as NAME] [SCENARIO...] | list | client PATH MSG... | \
             echo-server PATH | fork-client PATH MSG"
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
