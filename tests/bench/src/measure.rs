//! The measurements. Every throughput is reported as a ratio to the
//! no-capture baseline of the same message size, measured in the same run,
//! alternating configurations so drift hits them all alike.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use sockdump::capture::Attached;
use sockdump_ebpf::Family;

pub struct Options {
    pub sockdump: PathBuf,
    pub quick: bool,
    pub markdown: Option<PathBuf>,
    /// `--hook` values, each measured in the same alternating runs
    pub hooks: Vec<String>,
    /// message sizes of the throughput runs
    pub sizes: Vec<usize>,
    /// how long the baseline of each run lasts, if not as `quick` says
    pub seconds: Option<f64>,
}

/// How sockdump (or strace) watches the workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Watcher {
    None,
    /// empty programs where the hook family attaches: what any capture
    /// through them costs on this kernel before doing any work
    Floor,
    /// capture everything, hex text to /dev/null
    Text,
    /// capture everything, pcapng to a file
    Pcapng,
    /// the same without learning readers (`--reader-wait 0`): what naming
    /// readers costs, in families that can
    PcapngNoReaders,
    /// a --sock filter that matches nothing: what unrelated traffic pays
    NoMatch,
    /// strace -f -e trace=write,sendmsg -s 65535, what users do today
    Strace,
}

impl Watcher {
    fn name(self) -> &'static str {
        match self {
            Watcher::None => "no capture (baseline)",
            Watcher::Floor => "floor: empty programs where the hook attaches",
            Watcher::Text => "sockdump, everything, text to /dev/null",
            Watcher::Pcapng => "sockdump, everything, pcapng to a file",
            Watcher::PcapngNoReaders => "sockdump, everything, pcapng to a file, --reader-wait 0",
            Watcher::NoMatch => "sockdump, --sock filter matching nothing",
            Watcher::Strace => "strace -f -e trace=write,sendmsg -s 65535",
        }
    }
}

/// One measured configuration: a watcher, through a hook family where it
/// is sockdump's.
#[derive(Debug, Clone, Copy)]
struct Config {
    watcher: Watcher,
    family: Option<&'static Family>,
}

impl Config {
    const BASELINE: Config = Config { watcher: Watcher::None, family: None };

    fn hook(&self) -> &'static str {
        self.family.map_or("-", |f| f.name)
    }
}

impl PartialEq for Config {
    fn eq(&self, other: &Config) -> bool {
        // family names are unique
        self.watcher == other.watcher && self.hook() == other.hook()
    }
}

/// What a finished sockdump reported and used.
#[derive(Debug, Default, Clone, Copy)]
struct SockdumpStats {
    captured: u64,
    lost: u64,
    max_rss_kib: u64,
    /// after start-up
    cpu: Duration,
}

/// eBPF programs, by the kernel's ids.
struct Programs(Vec<u32>);

impl Programs {
    /// Nanoseconds they ran so far (needs BPF run-time statistics on, see
    /// `run_all`).
    fn run_time(&self) -> u64 {
        aya::programs::loaded_programs()
            .filter_map(Result::ok)
            .filter(|p| self.0.contains(&p.id()))
            .map(|p| p.run_time().as_nanos() as u64)
            .sum()
    }
}

pub(crate) struct Sockdump {
    pub(crate) child: Child,
    /// the hook family it said it listens with
    pub(crate) family: &'static Family,
    startup: Duration,
    /// CPU it had used when it started listening (loading, BTF)
    pub(crate) startup_cpu: Duration,
    /// its programs: those loaded while it started (others loading at the
    /// same time would count too)
    programs: Programs,
    pub(crate) stderr: mpsc::Receiver<String>,
}

/// sockdump with `--hook hook` and `args`, once it listens; the error says
/// what it printed when it gave up (e.g. a hook this kernel lacks).
pub(crate) fn start_sockdump(
    sockdump: &Path,
    hook: &str,
    args: &[String],
    stdout: Stdio,
) -> Result<Sockdump> {
    let before = program_ids();
    let started = Instant::now();
    let mut child = Command::new(sockdump)
        .args(["--hook", hook])
        .args(args)
        .stdout(stdout)
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start {}", sockdump.display()))?;
    let (tx, stderr) = mpsc::channel();
    let pipe = child.stderr.take().context("stderr")?;
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut said = Vec::new();
    loop {
        // under TCG a start takes up to ~7 s
        let line = match stderr.recv_timeout(Duration::from_secs(30)) {
            Ok(line) => line,
            Err(RecvTimeoutError::Timeout) => {
                let _ = child.kill();
                let _ = child.wait();
                bail!("sockdump did not start within 30 s");
            }
            Err(RecvTimeoutError::Disconnected) => {
                let _ = child.wait();
                bail!("{}", said.join(" "));
            }
        };
        if !line.starts_with("listening") {
            said.push(line);
            continue;
        }
        let startup = started.elapsed();
        let startup_cpu = process_cpu(child.id())?;
        let programs = Programs(program_ids().into_iter().filter(|id| !before.contains(id)).collect());
        // "listening on unix sockets, hook NAME (description), ..."
        let name =
            line.split_once(", hook ").and_then(|(_, rest)| rest.split_once(" (")).map(|(name, _)| name);
        let family =
            name.and_then(sockdump_ebpf::family).with_context(|| format!("no hook family in {line:?}"))?;
        return Ok(Sockdump { child, family, startup, startup_cpu, programs, stderr });
    }
}

/// User + system CPU of a running process, from `/proc/PID/stat`.
fn process_cpu(pid: u32) -> Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // fields after the parenthesised name: utime and stime are the 12th and 13th
    let fields: Vec<&str> = stat.rsplit_once(')').context("stat")?.1.split_whitespace().collect();
    let ticks: u64 = fields.get(11..13).context("stat fields")?.iter().map(|f| f.parse().unwrap_or(0)).sum();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Ok(Duration::from_millis(ticks * 1000 / hz))
}

/// The peak resident memory of a running process. Not wait4's ru_maxrss:
/// that also counts what the child shared with this process before exec.
pub(crate) fn peak_rss_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).context("no VmHWM")?;
    Ok(line.split_whitespace().nth(1).context("VmHWM value")?.parse()?)
}

/// SIGINT, then the `N packets captured, M lost` line, CPU time and peak memory.
fn stop_sockdump(run: Sockdump) -> Result<SockdumpStats> {
    let max_rss_kib = peak_rss_kib(run.child.id())?;
    let pid = run.child.id() as i32;
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGINT)?;
    let mut status = 0;
    // SAFETY: an all-zero rusage is valid; wait4 fills it for our own child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: pid is our child; status and usage point to live locals.
    if unsafe { libc::wait4(pid, &mut status, 0, &mut usage) } != pid {
        bail!("wait4: {}", std::io::Error::last_os_error());
    }
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    let cpu = (tv(usage.ru_utime) + tv(usage.ru_stime)).saturating_sub(run.startup_cpu);
    let (captured, lost) = totals(&run.stderr)?;
    Ok(SockdumpStats { captured, lost, cpu, max_rss_kib })
}

/// (captured, lost) from sockdump's closing `N packets captured, M lost`.
pub(crate) fn totals(stderr: &mpsc::Receiver<String>) -> Result<(u64, u64)> {
    let line =
        stderr.iter().find(|l| l.contains(" packets captured, ")).context("sockdump printed no totals")?;
    let (captured, rest) = line.split_once(" packets captured, ").context("totals")?;
    Ok((captured.parse()?, rest.trim_end_matches(" lost").parse()?))
}

struct WorkloadRun {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    pid: u32,
}

fn spawn_workload(size: usize, count: u64, rate: Option<u64>, wrapper: &[&str]) -> Result<WorkloadRun> {
    let me = std::env::current_exe()?;
    let mut args: Vec<String> = wrapper.iter().map(|s| s.to_string()).collect();
    args.push(me.display().to_string());
    args.extend(
        ["workload", "--wait", "--size", &size.to_string(), "--count", &count.to_string()].map(String::from),
    );
    if let Some(rate) = rate {
        args.extend(["--rate".to_string(), rate.to_string()]);
    }
    let mut child =
        Command::new(&args[0]).args(&args[1..]).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn()?;
    let stdin = child.stdin.take().context("stdin")?;
    let mut stdout = BufReader::new(child.stdout.take().context("stdout")?);
    let mut line = String::new();
    stdout.read_line(&mut line)?;
    let pid = line.trim().strip_prefix("READY ").context("workload did not start")?.parse()?;
    Ok(WorkloadRun { child, stdin, stdout, pid })
}

/// Lets the workload go; returns messages per second.
fn finish_workload(mut run: WorkloadRun) -> Result<f64> {
    writeln!(run.stdin, "GO")?;
    run.stdin.flush()?;
    let mut line = String::new();
    run.stdout.read_line(&mut line)?;
    run.child.wait()?;
    let mut fields = line.split_whitespace().skip(1);
    let (count, seconds): (f64, f64) = match (fields.next(), fields.next()) {
        (Some(c), Some(s)) if line.starts_with("RESULT ") => (c.parse()?, s.parse()?),
        _ => bail!("workload said {line:?}"),
    };
    Ok(count / seconds)
}

/// sockdump started as `config` says, if it is one of sockdump's.
fn start_watcher(opts: &Options, config: Config, scratch: &Path) -> Result<Option<Sockdump>> {
    let Some(family) = config.family else { return Ok(None) };
    let args: Vec<String> = match config.watcher {
        Watcher::None | Watcher::Floor | Watcher::Strace => return Ok(None),
        Watcher::Text => vec!["--format".into(), "hex".into()],
        Watcher::Pcapng | Watcher::PcapngNoReaders => {
            let mut args = vec![
                "--format".into(),
                "pcapng".into(),
                "--output".into(),
                scratch.join("bench.pcapng").display().to_string(),
            ];
            if config.watcher == Watcher::PcapngNoReaders {
                args.extend(["--reader-wait".into(), "0".into()]);
            }
            args
        }
        Watcher::NoMatch => vec!["--sock".into(), "/nonexistent/sockdump-bench".into()],
    };
    start_sockdump(&opts.sockdump, family.name, &args, Stdio::null()).map(Some)
}

/// One workload run.
struct Measured {
    /// messages per second
    rate: f64,
    /// nanoseconds sockdump's or the floor's eBPF programs ran during it
    bpf_ns: Option<u64>,
    sockdump: Option<SockdumpStats>,
}

/// One workload run under `config`.
fn measure(opts: &Options, config: Config, size: usize, count: u64, scratch: &Path) -> Result<Measured> {
    let strace = ["strace", "-f", "-qq", "-e", "trace=write,sendmsg", "-s", "65535", "-o", "/dev/null"];
    let wrapper: &[&str] = if config.watcher == Watcher::Strace { &strace } else { &[] };
    let workload = spawn_workload(size, count, None, wrapper)?;
    let capture = start_watcher(opts, config, scratch)?;
    let floor = match (config.watcher, config.family) {
        (Watcher::Floor, Some(family)) => Some(Floor::attach(family)?),
        _ => None,
    };
    let programs = capture.as_ref().map(|c| &c.programs).or(floor.as_ref().map(|f| &f.programs));
    let before = programs.map(Programs::run_time);
    let rate = finish_workload(workload)?;
    let bpf_ns = programs.zip(before).map(|(p, before)| p.run_time().saturating_sub(before));
    drop(floor);
    let sockdump = capture.map(stop_sockdump).transpose()?;
    Ok(Measured { rate, bpf_ns, sockdump })
}

/// The empty programs of a family's floor, attached while this lives.
struct Floor {
    programs: Programs,
    _attached: Attached,
}

impl Floor {
    fn attach(family: &Family) -> Result<Floor> {
        let attached = Attached::new(&sockdump_ebpf::floor::of(family))
            .with_context(|| format!("the {} floor", family.name))?;
        Ok(Floor { programs: Programs(attached.program_ids()), _attached: attached })
    }
}

fn program_ids() -> Vec<u32> {
    aya::programs::loaded_programs().filter_map(Result::ok).map(|p| p.id()).collect()
}

pub(crate) fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Messages that take the baseline about `seconds`.
fn calibrate(opts: &Options, size: usize, seconds: f64, scratch: &Path) -> Result<u64> {
    let probe = 20_000;
    let rate = measure(opts, Config::BASELINE, size, probe, scratch)?.rate;
    Ok(((rate * seconds) as u64).max(1000))
}

pub(crate) struct Report {
    pub(crate) text: String,
}

impl Report {
    pub(crate) fn line(&mut self, line: String) {
        println!("{line}");
        self.text += &line;
        self.text.push('\n');
    }
}

fn pcapng_supported(opts: &Options) -> bool {
    Command::new(&opts.sockdump)
        .arg("--help")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("pcapng"))
        .unwrap_or(false)
}

pub fn run_all(opts: &Options) -> Result<()> {
    // private and unguessable: the benchmarks run as root
    let scratch = tempfile::Builder::new().prefix("sockdump-bench-").tempdir()?;
    run_all_in(opts, scratch.path())
}

/// Whether `tool` runs here.
fn have(tool: &str) -> bool {
    Command::new(tool).arg("--version").output().is_ok()
}

/// A hook family to measure.
struct Hook {
    family: &'static Family,
    /// whether its floor attaches here
    floor: bool,
}

/// The families `opts.hooks` name on this kernel (`auto` resolved), each
/// once; a hook the kernel refuses is left out, saying why.
fn resolve_hooks(opts: &Options, report: &mut Report) -> Result<Vec<Hook>> {
    let mut hooks: Vec<Hook> = Vec::new();
    for hook in &opts.hooks {
        let run = match start_sockdump(&opts.sockdump, hook, &["--pid".into(), "1".into()], Stdio::null()) {
            Ok(run) => run,
            Err(err) => {
                report.line(format!("- --hook {hook}: skipped: {err:#}"));
                continue;
            }
        };
        let family = run.family;
        stop_sockdump(run)?;
        report.line(format!("- --hook {hook}: {} ({})", family.name, family.description));
        if hooks.iter().any(|h| h.family.name == family.name) {
            continue;
        }
        let floor = Floor::attach(family).map(drop);
        if let Err(err) = &floor {
            report.line(format!("  - its floor: skipped: {err:#}"));
        }
        hooks.push(Hook { family, floor: floor.is_ok() });
    }
    if hooks.is_empty() {
        bail!("no hook family to measure");
    }
    Ok(hooks)
}

fn run_all_in(opts: &Options, scratch: &Path) -> Result<()> {
    let (seconds, reps) = if opts.quick { (0.1, 1) } else { (1.0, 5) };
    let seconds = opts.seconds.unwrap_or(seconds);
    let mut report = Report { text: String::new() };
    // BPF run-time statistics while this runs (BPF_ENABLE_STATS: off again when dropped)
    let _stats = aya::sys::enable_stats(aya::sys::Stats::RunTime).context("cannot enable BPF statistics")?;

    report.line("## Hook families".into());
    report.line(String::new());
    let hooks = resolve_hooks(opts, &mut report)?;
    // the first capturing configuration captures everything
    let mut captures = vec![Watcher::Text, Watcher::NoMatch];
    if pcapng_supported(opts) {
        captures.insert(0, Watcher::Pcapng);
    }
    let mut configs = vec![Config::BASELINE];
    for hook in &hooks {
        let floor = hook.floor.then_some(Watcher::Floor);
        let no_readers = (hook.family.sees_readers && captures.contains(&Watcher::Pcapng))
            .then_some(Watcher::PcapngNoReaders);
        configs.extend(
            floor
                .iter()
                .chain(&captures)
                .chain(&no_readers)
                .map(|&watcher| Config { watcher, family: Some(hook.family) }),
        );
    }
    if have("strace") {
        configs.push(Config { watcher: Watcher::Strace, family: None });
    } else {
        report.line("- strace: skipped, not installed (apt-get install strace)".into());
    }

    report.line(String::new());
    report.line("## Throughput (messages/s relative to no capture, median of alternating runs)".into());
    report.line(String::new());
    report.line("| message size | hook | configuration | throughput ratio | baseline msgs/s |".into());
    report.line("| --- | --- | --- | --- | --- |".into());
    // sockdump's own figures at 1 KiB, per configuration
    let mut at_1k: Vec<(Config, SockdumpStats, u64)> = Vec::new();
    let mut bpf_per_message: Vec<(usize, Config, f64)> = Vec::new();
    for &size in &opts.sizes {
        let count = calibrate(opts, size, seconds, scratch)?;
        let mut rates: Vec<Vec<f64>> = vec![Vec::new(); configs.len()];
        let mut bpf: Vec<Vec<f64>> = vec![Vec::new(); configs.len()];
        for _ in 0..reps {
            for (i, &config) in configs.iter().enumerate() {
                let run = measure(opts, config, size, count, scratch)?;
                rates[i].push(run.rate);
                if let Some(ns) = run.bpf_ns {
                    bpf[i].push(ns as f64 / count as f64);
                }
                if let (1024, Watcher::Text | Watcher::Pcapng, Some(stats)) =
                    (size, config.watcher, run.sockdump)
                {
                    at_1k.retain(|(c, _, _)| *c != config);
                    at_1k.push((config, stats, count));
                }
            }
        }
        for (i, &config) in configs.iter().enumerate() {
            if !bpf[i].is_empty() {
                bpf_per_message.push((size, config, median(&mut bpf[i])));
            }
        }
        let baseline = median(&mut rates[0]);
        for (i, config) in configs.iter().enumerate().skip(1) {
            let ratio = median(&mut rates[i]) / baseline;
            report.line(format!(
                "| {size} B | {} | {} | {:.1}% | {baseline:.0} |",
                config.hook(),
                config.watcher.name(),
                ratio * 100.0
            ));
        }
    }

    report.line(String::new());
    report.line("## Time in the eBPF programs per message sent (BPF run-time statistics)".into());
    report.line(String::new());
    report.line("| message size | hook | configuration | ns per message |".into());
    report.line("| --- | --- | --- | --- |".into());
    for (size, config, ns) in &bpf_per_message {
        report.line(format!("| {size} B | {} | {} | {ns:.0} |", config.hook(), config.watcher.name()));
    }
    bpf_targets(&hooks, captures[0], &bpf_per_message, &mut report);

    // the rest with the first hook family: they do not compare families
    let first = hooks[0].family;
    report.line(String::new());
    report
        .line(format!("## Loss at 1 KiB with default settings (`--pid` of the sender), hook {}", first.name));
    report.line(String::new());
    report.line("| send rate | sent | captured | lost | captured + lost = sent |".into());
    report.line("| --- | --- | --- | --- | --- |".into());
    let full = calibrate(opts, 1024, seconds * 2.0, scratch)?;
    for rate in [Some(50_000u64), Some(100_000), Some(200_000), None] {
        let count = rate.map_or(full, |r| (r as f64 * seconds * 2.0) as u64);
        let workload = spawn_workload(1024, count, rate, &[])?;
        let capture = start_sockdump(
            &opts.sockdump,
            first.name,
            &["--pid".into(), workload.pid.to_string()],
            Stdio::null(),
        )?;
        let achieved = finish_workload(workload)?;
        let stats = stop_sockdump(capture)?;
        let label = rate
            .map_or(format!("full speed ({achieved:.0}/s)"), |r| format!("{r}/s (achieved {achieved:.0}/s)"));
        let balanced = if stats.captured + stats.lost == count { "yes" } else { "NO" };
        report.line(format!("| {label} | {count} | {} | {} | {balanced} |", stats.captured, stats.lost));
    }

    report.line(String::new());
    report.line("## Start-up, memory and CPU".into());
    report.line(String::new());
    for hook in &hooks {
        let mut startups: Vec<f64> = Vec::new();
        for _ in 0..reps.max(3) {
            let run = start_sockdump(
                &opts.sockdump,
                hook.family.name,
                &["--pid".into(), "1".into()],
                Stdio::null(),
            )?;
            startups.push(run.startup.as_secs_f64() * 1000.0);
            stop_sockdump(run)?;
        }
        report.line(format!(
            "- start-up (launch to `listening`), hook {}, median of {}: {:.0} ms",
            hook.family.name,
            startups.len(),
            median(&mut startups)
        ));
    }
    for (config, stats, sent) in &at_1k {
        report.line(format!(
            "- hook {}, {}: peak RSS {:.1} MiB; sockdump CPU time (after start-up) per million messages {:.2} s ({} captured of {sent} sent)",
            config.hook(),
            config.watcher.name(),
            stats.max_rss_kib as f64 / 1024.0,
            stats.cpu.as_secs_f64() / stats.captured.max(1) as f64 * 1e6,
            stats.captured
        ));
    }
    redis(opts, first, reps, scratch, &mut report)?;

    if let Some(path) = &opts.markdown {
        std::fs::write(path, &report.text)?;
    }
    Ok(())
}

/// The BPF time of a rejected and of a captured 1 KiB message per family,
/// beside its floor's and the targets.
fn bpf_targets(hooks: &[Hook], everything: Watcher, measured: &[(usize, Config, f64)], report: &mut Report) {
    let at_1k = |watcher: Watcher, family: &'static Family| {
        let config = Config { watcher, family: Some(family) };
        measured
            .iter()
            .find(|(size, c, _)| *size == 1024 && *c == config)
            .map_or("-".to_string(), |(_, _, ns)| format!("{ns:.0}"))
    };
    report.line(String::new());
    report.line(
        "## eBPF ns per 1 KiB message against the targets (rejected: at most 150, captured: at most 500)"
            .into(),
    );
    report.line(String::new());
    report.line(format!(
        "| hook | floor (empty programs) | rejected send (--sock matching nothing) | captured ({}) |",
        everything.name()
    ));
    report.line("| --- | --- | --- | --- |".into());
    for hook in hooks {
        let family = hook.family;
        report.line(format!(
            "| {} | {} | {} | {} |",
            family.name,
            at_1k(Watcher::Floor, family),
            at_1k(Watcher::NoMatch, family),
            at_1k(everything, family)
        ));
    }
}

/// redis-benchmark against one redis-server over TCP loopback and over a
/// unix socket: tcpdump on `lo` (the peer users compare with) as a ratio to
/// the TCP baseline, sockdump as a ratio to the unix one, alternating.
fn redis(
    opts: &Options,
    family: &'static Family,
    reps: usize,
    scratch: &Path,
    report: &mut Report,
) -> Result<()> {
    let missing: Vec<&str> =
        [("redis-server", "redis-server"), ("redis-benchmark", "redis-tools"), ("tcpdump", "tcpdump")]
            .into_iter()
            .filter(|(tool, _)| !have(tool))
            .map(|(_, package)| package)
            .collect();
    if !missing.is_empty() {
        report.line(format!(
            "\n- redis: skipped, it needs the Debian packages redis-server, redis-tools and tcpdump (missing: apt-get install {})",
            missing.join(" ")
        ));
        return Ok(());
    }
    report.line(String::new());
    report.line(format!(
        "## redis-benchmark (SET+GET, 20 clients) under capture, each as a ratio to its own no-capture baseline, hook {}",
        family.name
    ));
    report.line(String::new());
    report.line("| transport | capture | requests/s ratio | baseline requests/s |".into());
    report.line("| --- | --- | --- | --- |".into());
    let socket = scratch.join("redis.sock");
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port().to_string();
    let mut server = Command::new("redis-server")
        .args(["--bind", "127.0.0.1", "--port", &port, "--save", "", "--appendonly", "no", "--unixsocket"])
        .arg(&socket)
        .stdout(Stdio::null())
        .spawn()?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !socket.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let result = redis_runs(opts, family, reps, scratch, &socket, &port);
    let _ = server.kill();
    let _ = server.wait();
    let rows = result?;
    for (label, ratio, baseline) in rows {
        report.line(format!("| {label} | {:.1}% | {baseline:.0} |", ratio * 100.0));
    }
    Ok(())
}

/// The redis configurations, each `reps` times in turn: (what, ratio to
/// its baseline, baseline requests/s) per capture.
fn redis_runs(
    opts: &Options,
    family: &'static Family,
    reps: usize,
    scratch: &Path,
    socket: &Path,
    port: &str,
) -> Result<Vec<(String, f64, f64)>> {
    let requests = if opts.quick { "20000" } else { "200000" };
    let bench = |tcp: bool| -> Result<f64> {
        let mut command = Command::new("redis-benchmark");
        if tcp {
            command.args(["-h", "127.0.0.1", "-p", port]);
        } else {
            command.arg("-s").arg(socket);
        }
        let out = command.args(["-n", requests, "-c", "20", "-t", "set,get", "-q"]).output()?;
        // "SET: 123456.79 requests per second, p50=..." per command; sum them
        let text = String::from_utf8_lossy(&out.stdout);
        let total: f64 = text
            .split(['\r', '\n'])
            .filter_map(|l| l.split_once(": ")?.1.split_whitespace().next()?.parse::<f64>().ok())
            .sum();
        if total == 0.0 {
            bail!("redis-benchmark printed no rates: {text}");
        }
        Ok(total)
    };
    let watchers =
        [Watcher::Pcapng, Watcher::NoMatch].map(|watcher| Config { watcher, family: Some(family) });
    let (mut tcp_base, mut tcpdump, mut unix_base) = (Vec::new(), Vec::new(), Vec::new());
    let mut captured = vec![Vec::new(); watchers.len()];
    for _ in 0..reps {
        tcp_base.push(bench(true)?);
        let peer = start_tcpdump(&scratch.join("tcpdump.pcap"))?;
        tcpdump.push(bench(true)?);
        stop_tcpdump(peer)?;
        unix_base.push(bench(false)?);
        for (i, &config) in watchers.iter().enumerate() {
            let capture = start_watcher(opts, config, scratch)?;
            captured[i].push(bench(false)?);
            capture.map(stop_sockdump).transpose()?;
        }
    }
    let (tcp_base, unix_base) = (median(&mut tcp_base), median(&mut unix_base));
    let mut rows =
        vec![("TCP loopback | tcpdump -w FILE -i lo".to_owned(), median(&mut tcpdump) / tcp_base, tcp_base)];
    for (config, rates) in watchers.iter().zip(&mut captured) {
        rows.push((format!("unix socket | {}", config.watcher.name()), median(rates) / unix_base, unix_base));
    }
    Ok(rows)
}

/// tcpdump writing everything on `lo` to `file`, once it says it listens.
fn start_tcpdump(file: &Path) -> Result<Child> {
    let mut child = Command::new("tcpdump")
        .args(["-i", "lo", "-w"])
        .arg(file)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot start tcpdump")?;
    let stderr = child.stderr.take().context("tcpdump stderr")?;
    let mut lines = BufReader::new(stderr).lines();
    loop {
        match lines.next() {
            // "tcpdump: listening on lo, link-type ..."
            Some(Ok(line)) if line.contains("listening on") => break,
            Some(Ok(_)) => {}
            _ => bail!("tcpdump did not start"),
        }
    }
    // the rest of its stderr (the totals) is not needed: let it go
    std::thread::spawn(move || lines.for_each(drop));
    Ok(child)
}

fn stop_tcpdump(mut child: Child) -> Result<()> {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGINT)?;
    child.wait()?;
    Ok(())
}
