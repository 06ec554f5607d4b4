//! `sockdump-bench soak`: an endless capture in miniature. A workload
//! process opens many unix socketpairs in batches and sends messages both
//! ways over them; the release sockdump captures it (`--pid`) to pcapng. It
//! reports sockdump's peak RSS and CPU, and whether captured + lost = sent.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};

use crate::measure::{peak_rss_kib, start_sockdump, totals};

pub struct Options {
    pub sockdump: PathBuf,
    pub hook: String,
    pub pairs: u64,
    pub messages: u64,
    pub size: usize,
    /// pcapng goes here; /dev/null by default
    pub output: PathBuf,
}

/// Pairs open at once: their messages interleave, so the capture sees
/// this many live conversations, and the fd limit (1024) holds.
const BATCH: u64 = 256;

/// The traffic: `pairs` socketpairs, `messages` in all spread over them,
/// alternating direction, each read by the other end before the next.
/// Prints `READY <pid>`, waits for a line on stdin, and prints
/// `RESULT <messages> <seconds>`.
pub fn workload(pairs: u64, messages: u64, size: usize) -> Result<()> {
    ensure!(pairs > 0, "--pairs must be at least 1");
    let mut stdout = std::io::stdout();
    writeln!(stdout, "READY {}", std::process::id())?;
    stdout.flush()?;
    std::io::stdin().lock().read_line(&mut String::new())?;
    let message = vec![b's'; size];
    let mut buf = vec![0u8; size];
    let started = Instant::now();
    let mut sent = 0u64;
    let mut first = 0u64;
    while first < pairs {
        let batch = BATCH.min(pairs - first);
        let open: Vec<(UnixStream, UnixStream)> =
            (0..batch).map(|_| UnixStream::pair()).collect::<std::io::Result<_>>()?;
        // pair i carries messages / pairs, the first messages % pairs one more
        let share = |i: u64| messages / pairs + u64::from(first + i < messages % pairs);
        let rounds = (0..batch).map(share).max().unwrap_or(0);
        for round in 0..rounds {
            for (i, (a, b)) in open.iter().enumerate() {
                if round >= share(i as u64) {
                    continue;
                }
                let (mut from, mut to) = if round % 2 == 0 { (a, b) } else { (b, a) };
                from.write_all(&message)?;
                to.read_exact(&mut buf)?;
                sent += 1;
            }
        }
        first += batch;
    }
    writeln!(stdout, "RESULT {sent} {:.6}", started.elapsed().as_secs_f64())?;
    Ok(())
}

/// What sockdump's `/proc/PID/status` says: (VmRSS, VmHWM) in KiB.
fn rss_kib(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        let line = status.lines().find(|l| l.starts_with(name))?;
        line.split_whitespace().nth(1)?.parse().ok()
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

pub fn run(opts: &Options) -> Result<()> {
    let me = std::env::current_exe()?;
    let mut workload = Command::new(&me)
        .args(["soak-workload", "--pairs", &opts.pairs.to_string()])
        .args(["--messages", &opts.messages.to_string(), "--size", &opts.size.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    let mut go = workload.stdin.take().context("stdin")?;
    let mut said = BufReader::new(workload.stdout.take().context("stdout")?);
    let mut line = String::new();
    said.read_line(&mut line)?;
    let pid: u32 = line.trim().strip_prefix("READY ").context("the workload did not start")?.parse()?;
    let args = [
        "--pid".to_string(),
        pid.to_string(),
        "--format".into(),
        "pcapng".into(),
        "--output".into(),
        opts.output.display().to_string(),
    ];
    let capture = start_sockdump(&opts.sockdump, &opts.hook, &args, Stdio::null())?;
    let sockdump = capture.child.id();
    println!(
        "soak: {} socketpairs, {} messages of {} B, hook {}, pcapng to {}",
        opts.pairs,
        opts.messages,
        opts.size,
        capture.family.name,
        opts.output.display()
    );
    let started = Instant::now();
    writeln!(go, "GO")?;
    go.flush()?;
    let (done_tx, done) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = said.read_line(&mut line);
        let _ = done_tx.send(line);
    });
    let mut peak = 0;
    let mut reported = Instant::now();
    let result = loop {
        match done.recv_timeout(Duration::from_millis(200)) {
            Ok(line) => break line,
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => bail!("the workload ended without a result"),
        }
        if let Some((rss, hwm)) = rss_kib(sockdump) {
            peak = peak.max(hwm);
            if reported.elapsed() >= Duration::from_secs(10) {
                reported = Instant::now();
                println!(
                    "  {:>4.0} s: sockdump RSS {:.1} MiB, peak {:.1} MiB",
                    started.elapsed().as_secs_f64(),
                    rss as f64 / 1024.0,
                    hwm as f64 / 1024.0
                );
            }
        }
    };
    workload.wait()?;
    let mut fields = result.split_whitespace();
    let (sent, seconds): (u64, f64) = match (fields.next(), fields.next(), fields.next()) {
        (Some("RESULT"), Some(n), Some(s)) => (n.parse()?, s.parse()?),
        _ => bail!("the workload said {result:?}"),
    };
    // SIGINT drains what was sent; the peak is read until the process is gone
    let raw = nix::unistd::Pid::from_raw(sockdump as i32);
    nix::sys::signal::kill(raw, nix::sys::signal::Signal::SIGINT)?;
    let mut status = 0;
    // SAFETY: an all-zero rusage is valid; wait4 fills it for our own child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        peak = peak.max(peak_rss_kib(sockdump).unwrap_or(0));
        // SAFETY: sockdump is our child; status and usage point to live locals.
        match unsafe { libc::wait4(sockdump as i32, &mut status, libc::WNOHANG, &mut usage) } {
            0 => std::thread::sleep(Duration::from_millis(5)),
            n if n == sockdump as i32 => break,
            _ => bail!("wait4: {}", std::io::Error::last_os_error()),
        }
    }
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    let cpu = (tv(usage.ru_utime) + tv(usage.ru_stime)).saturating_sub(capture.startup_cpu);
    let (captured, lost) = totals(&capture.stderr)?;
    let balanced = if captured + lost == sent { "yes" } else { "NO" };
    println!();
    println!("| socketpairs | messages sent | captured | lost | captured + lost = sent | peak RSS | sockdump CPU | workload |");
    println!("| --- | --- | --- | --- | --- | --- | --- | --- |");
    println!(
        "| {} | {sent} | {captured} | {lost} | {balanced} | {:.1} MiB | {:.1} s | {seconds:.1} s ({:.0} msgs/s) |",
        opts.pairs,
        peak as f64 / 1024.0,
        cpu.as_secs_f64(),
        sent as f64 / seconds.max(1e-9),
    );
    ensure!(balanced == "yes", "captured + lost != sent");
    Ok(())
}
