//! Runs scenarios against a sockdump binary: peers wait, sockdump starts,
//! peers send, sockdump stops, and its printout is compared with what the
//! peers report they sent.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

use crate::parse::{parse_hex_output, Printed, To};
use crate::peer::{Family, ReadBy, Sent, Shown};
use crate::scenarios::{Scenario, Setup};

/// How long sockdump may take to load: BTF parsing and attaching are slow
/// under emulation, the more so with every VM of the matrix busy at once.
const START_TIMEOUT: Duration = Duration::from_secs(240);
const PEER_TIMEOUT: Duration = Duration::from_secs(60);
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug)]
pub struct Outcome {
    pub scenario: &'static str,
    /// None: passed.
    pub failure: Option<String>,
}

struct RunningPeer {
    scenario: &'static Scenario,
    process: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    pid: u32,
    dir: PathBuf,
}

fn spawn_peer(me: &Path, scenario: &'static Scenario, dir: PathBuf) -> Result<RunningPeer> {
    std::fs::create_dir_all(&dir)?;
    let mut process = Command::new(me)
        .args(["peer", scenario.name])
        .arg(&dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start peer {}", scenario.name))?;
    let stdin = process.stdin.take().context("peer stdin")?;
    let mut stdout = BufReader::new(process.stdout.take().context("peer stdout")?);
    let mut line = String::new();
    stdout.read_line(&mut line)?;
    let pid = line
        .strip_prefix("READY ")
        .and_then(|pid| pid.trim().parse().ok())
        .with_context(|| format!("peer {} said {line:?} instead of READY", scenario.name))?;
    Ok(RunningPeer { scenario, process, stdin, stdout, pid, dir })
}

impl RunningPeer {
    fn go(&mut self, family: &str, readers_named: bool) -> Result<()> {
        let readers = if readers_named { " readers" } else { "" };
        writeln!(self.stdin, "GO {family}{readers}")?;
        Ok(self.stdin.flush()?)
    }

    fn report(mut self) -> Result<Vec<Sent>> {
        let mut line = String::new();
        self.stdout.read_line(&mut line)?;
        let status = self.process.wait()?;
        if let Some(why) = line.strip_prefix("FAILED ") {
            bail!("{}", why.trim_end());
        }
        let json = line
            .strip_prefix("REPORT ")
            .with_context(|| format!("peer {} failed ({status})", self.scenario.name))?;
        serde_json::from_str(json).context("peer report")
    }
}

/// A sockdump process and what it printed.
struct Sockdump {
    process: Child,
    /// The hook family it listens with.
    family: String,
    /// It warned that the kernel may preempt that family's programs.
    preempted: bool,
    /// It names the process that read each message.
    readers_named: bool,
    stdout: mpsc::Receiver<String>,
    stderr: mpsc::Receiver<String>,
    stderr_lines: Vec<String>,
}

/// What to run sockdump with.
#[derive(Debug, Clone)]
pub struct Target {
    pub sockdump: PathBuf,
    pub hook: String,
    /// The hook family `--hook auto` must pick on this kernel.
    pub expect_hook: Option<String>,
    /// Text sockdump (run with -v) must print before it listens.
    pub expect_stderr: Option<String>,
    /// The kernel preempts the forced hook's programs: sockdump must warn so.
    /// Wherever it warns, every send it misses must be counted lost (which,
    /// the kernel not saying whose send it skipped, may count other sends).
    pub preempted: bool,
}

impl Target {
    /// Whether a sockdump that just printed `listening` (the last of
    /// `stderr`) started as expected.
    fn check_start(&self, stderr: &[String]) -> Result<()> {
        let listening = stderr.last().map_or("", String::as_str);
        if let Some(hook) = &self.expect_hook {
            if !listening.contains(&format!(", hook {hook} (")) {
                bail!("expected hook {hook}, sockdump says: {listening}");
            }
        }
        // every kernel sockdump supports takes the exec and fork programs
        if let Some(line) = stderr.iter().find(|line| line.contains("no exec records")) {
            bail!("the exec and fork programs did not attach: {line}");
        }
        if self.preempted && !warned(stderr) {
            bail!("sockdump did not warn that the kernel may preempt the hook: {}", stderr.join(" | "));
        }
        if let Some(text) = &self.expect_stderr {
            if !stderr.iter().any(|line| line.contains(text.as_str())) {
                bail!("sockdump did not say {text:?} before listening: {}", stderr.join(" | "));
            }
        }
        Ok(())
    }
}

/// Whether sockdump said, before listening, that the kernel may preempt the
/// forced hook's programs.
fn warned(stderr: &[String]) -> bool {
    stderr.iter().any(|line| line.contains("may preempt the"))
}

/// Whether `listening ...` (the last of `stderr`) says messages name their readers.
fn line_names_readers(stderr: &[String]) -> bool {
    stderr.last().is_some_and(|l| l.contains(", readers named, "))
}

/// `family` if it names readers wherever it can: the runner always asks for
/// them, and only a kernel that may skip the hook's programs (it warned)
/// leaves them unnamed.
fn names_readers_if_it_can(family: String, stderr: &[String]) -> Result<String> {
    if family.parse::<Family>()?.names_readers() && !warned(stderr) && !line_names_readers(stderr) {
        bail!("hook {family} does not name readers: {}", stderr.join(" | "));
    }
    Ok(family)
}

/// The family in `listening on unix sockets, hook FAMILY (...`, the last of `stderr`.
fn family(stderr: &[String]) -> Result<String> {
    let listening = stderr.last().map_or("", String::as_str);
    listening
        .split_once(", hook ")
        .and_then(|(_, rest)| rest.split_once(" ("))
        .map(|(family, _)| family.to_string())
        .with_context(|| format!("no hook family in {listening:?}"))
}

fn collect_lines(reader: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(reader).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

impl Sockdump {
    fn start(target: &Target, options: &[String]) -> Result<Self> {
        let mut process = Command::new(&target.sockdump)
            // -v: a failure can show the kernel's loss counters. Readers
            // are learnt within --reader-wait: an emulated VM under load
            // can take longer than the default to fork a reader and read
            .args(["--hook", &target.hook, "--format", "hex", "-v", "--reader-wait", "3000"])
            .args(options)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot start {}", target.sockdump.display()))?;
        let stdout = collect_lines(process.stdout.take().context("sockdump stdout")?);
        let stderr = collect_lines(process.stderr.take().context("sockdump stderr")?);
        let mut me = Sockdump {
            process,
            family: String::new(),
            preempted: false,
            readers_named: false,
            stdout,
            stderr,
            stderr_lines: Vec::new(),
        };
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match me.stderr.recv_timeout(left) {
                Ok(line) => {
                    let live = line.starts_with("listening");
                    me.stderr_lines.push(line);
                    if live {
                        let started = target
                            .check_start(&me.stderr_lines)
                            .and_then(|()| family(&me.stderr_lines))
                            .and_then(|family| names_readers_if_it_can(family, &me.stderr_lines));
                        match started {
                            Ok(family) => {
                                me.family = family;
                                me.preempted = warned(&me.stderr_lines);
                                me.readers_named = line_names_readers(&me.stderr_lines);
                            }
                            Err(err) => {
                                let _ = me.process.kill();
                                return Err(err);
                            }
                        }
                        return Ok(me);
                    }
                }
                Err(_) => {
                    let _ = me.process.kill();
                    let _ = me.process.wait();
                    me.stderr_lines.extend(me.stderr.try_iter());
                    bail!("sockdump did not start: {}", me.stderr_lines.join(" | "));
                }
            }
        }
    }

    /// Stops sockdump (SIGINT unless it stops by itself) and returns its
    /// stdout and the stderr lines after `listening`.
    fn finish(mut self, signal: bool) -> Result<(String, Vec<String>)> {
        if signal {
            let pid = nix::unistd::Pid::from_raw(self.process.id() as i32);
            nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT)?;
        }
        let deadline = Instant::now() + STOP_TIMEOUT;
        let status = loop {
            if let Some(status) = self.process.try_wait()? {
                break status;
            }
            if Instant::now() > deadline {
                let _ = self.process.kill();
                bail!("sockdump did not stop within {STOP_TIMEOUT:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        // The reader threads end at EOF, after the process exited.
        let stdout: Vec<String> = self.stdout.iter().collect();
        let stderr: Vec<String> = self.stderr.iter().collect();
        if !status.success() {
            bail!("sockdump exited with {status}: {}", stderr.join(" | "));
        }
        Ok((stdout.iter().map(|l| format!("{l}\n")).collect(), stderr))
    }
}

/// Runs `scenarios` against `target`.
pub fn run(me: &Path, target: &Target, scenarios: &[&'static Scenario]) -> Result<Vec<Outcome>> {
    let base = tempfile::Builder::new()
        .prefix("sdscen-")
        .tempdir()
        .context("cannot create a temporary directory")?;
    let mut peers = Vec::new();
    for scenario in scenarios {
        peers.push(spawn_peer(me, scenario, base.path().join(scenario.name))?);
    }
    // Scenarios with the same options share one sockdump run. The sessions
    // keep the order of the table: every sockdump still capturing counts a
    // send the hook loses (it cannot tell whether the send would have
    // matched its filters), so the scenarios with sends counted lost come
    // last in the table, in a session of their own.
    let mut sessions: Vec<(Vec<String>, Vec<RunningPeer>)> = Vec::new();
    for peer in peers {
        let options = (peer.scenario.options)(&Setup { pid: peer.pid, dir: &peer.dir });
        match sessions.iter_mut().find(|(o, _)| *o == options) {
            Some((_, peers)) => peers.push(peer),
            None => sessions.push((options, vec![peer])),
        }
    }
    // sockdump's start-up dominates under emulation: start every session's
    // capture at once, and wait for all of them before any traffic. An
    // attach or detach on a function rebuilds its BPF trampoline, and the
    // kernel then skips the fexit programs of threads sleeping in the old one.
    let starting: Vec<_> = sessions
        .into_iter()
        .map(|(options, peers)| {
            let target = target.clone();
            let start = std::thread::spawn(move || Sockdump::start(&target, &options));
            (peers, start)
        })
        .collect();
    let started: Vec<_> = starting
        .into_iter()
        .map(|(peers, start)| {
            (peers, start.join().map_err(|_| anyhow!("sockdump start thread panicked")).and_then(|s| s))
        })
        .collect();
    // The traffic runs one session at a time: more senders in flight at once
    // than a kretprobe tracks would make the kprobe hook skip returns.
    let mut outcomes = Vec::new();
    for (peers, started) in started {
        let names: Vec<&'static str> = peers.iter().map(|p| p.scenario.name).collect();
        let result = started.and_then(|capture| run_session(capture, peers));
        match result {
            Ok(mut results) => outcomes.append(&mut results),
            Err(err) => outcomes.extend(
                names.into_iter().map(|scenario| Outcome { scenario, failure: Some(format!("{err:#}")) }),
            ),
        }
    }
    Ok(outcomes)
}

/// Where sockdump warned that the kernel may preempt its programs, sends it
/// missed are allowed, as long as the totals count them lost.
fn run_session(capture: Sockdump, mut peers: Vec<RunningPeer>) -> Result<Vec<Outcome>> {
    let preempted = capture.preempted;
    let readers_named = capture.readers_named;
    let stops_itself = peers.iter().any(|p| p.scenario.stops_itself);
    for peer in &mut peers {
        peer.go(&capture.family, readers_named)?;
    }
    let (done_tx, done_rx) = mpsc::channel();
    let scenarios: Vec<&'static Scenario> = peers.iter().map(|p| p.scenario).collect();
    for peer in peers {
        let tx = done_tx.clone();
        std::thread::spawn(move || {
            let name = peer.scenario.name;
            let _ = tx.send((name, peer.report()));
        });
    }
    drop(done_tx);
    let mut reports = BTreeMap::new();
    let deadline = Instant::now() + PEER_TIMEOUT;
    while reports.len() < scenarios.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        let (name, report) =
            done_rx.recv_timeout(left).map_err(|_| anyhow!("peers did not finish in time"))?;
        reports.insert(name, report);
    }
    let (stdout, stderr) = capture.finish(!stops_itself)?;
    let printed = parse_hex_output(&stdout)?;
    let mut missed = 0;
    let outcomes = scenarios
        .into_iter()
        .map(|scenario| {
            let failure = match &reports[scenario.name] {
                Ok(sent) => match compare(scenario, sent, &printed, preempted, readers_named) {
                    Ok(n) => {
                        missed += n;
                        None
                    }
                    Err(e) => Some(format!("{e:#}")),
                },
                Err(err) => Some(format!("peer failed: {err:#}")),
            };
            Outcome { scenario: scenario.name, failure }
        })
        .collect();
    let missed = preempted.then_some(missed);
    check_totals(&stderr, printed.len(), &expected_lost(reports.values().flatten().flatten()), missed)?;
    Ok(outcomes)
}

/// How many sends each `lost: ` counter must show.
fn expected_lost<'a>(sent: impl Iterator<Item = &'a Sent>) -> BTreeMap<&'a str, u64> {
    let mut lost = BTreeMap::new();
    for s in sent {
        if let Shown::Lost(counter) = &s.shown {
            *lost.entry(counter.as_str()).or_default() += 1;
        }
    }
    lost
}

/// `N packets captured, M lost`: N must be what was printed, M the sends
/// expected lost; with -v, `lost: N counter, ...` must count each of them
/// under its counter and nothing under the others. With `missed` (sends
/// missing from a preempted hook's output), M must count at least the
/// expected and the missed ones: it may count other processes' sends too.
fn check_totals(
    stderr: &[String],
    printed: usize,
    expected_lost: &BTreeMap<&str, u64>,
    missed: Option<usize>,
) -> Result<()> {
    let line = stderr
        .iter()
        .find(|l| l.contains("packets captured"))
        .with_context(|| format!("no `packets captured` line on stderr: {}", stderr.join(" | ")))?;
    let (captured, lost) = line
        .split_once(" packets captured, ")
        .and_then(|(c, rest)| {
            Some((c.parse::<usize>().ok()?, rest.strip_suffix(" lost")?.parse::<u64>().ok()?))
        })
        .with_context(|| format!("cannot read {line:?}"))?;
    if captured != printed {
        bail!("stderr says {captured} packets captured, stdout shows {printed}");
    }
    let why = stderr.iter().find(|l| l.starts_with("lost: ")).map_or("", String::as_str);
    let expected: u64 = expected_lost.values().sum();
    if let Some(missed) = missed {
        println!("# a preempted hook: {missed} sends missed, {lost} counted lost ({why})");
        let at_least = expected + missed as u64;
        if lost < at_least {
            bail!("{lost} messages lost, but {missed} are missing and {expected} expected lost ({why})");
        }
    } else if lost != expected {
        bail!("{lost} messages lost, expected {expected} ({why})");
    }
    let counters = why
        .strip_prefix("lost: ")
        .with_context(|| format!("no `lost: ` line on stderr: {}", stderr.join(" | ")))?
        .split(", ")
        .map(|item| item.split_once(' ').and_then(|(n, counter)| Some((counter, n.parse::<u64>().ok()?))))
        .collect::<Option<BTreeMap<&str, u64>>>()
        .with_context(|| format!("cannot read {why:?}"))?;
    for (counter, n) in expected_lost {
        let counted = counters.get(counter).copied().unwrap_or_default();
        if counted != *n && (missed.is_none() || counted < *n) {
            bail!("expected {n} lost as {counter:?}: {why}");
        }
    }
    // A skip that lost one of the scenarios' sends shows above, as a missing
    // record or a count; the kernel also skips programs for other syscalls
    // (the tracepoint family runs on every one), e.g. while another
    // sockdump's bpf() map operation is preempted on that CPU as it starts.
    if let Some(skipped) =
        stderr.iter().find(|l| l.starts_with("skipped: ") && !l.contains(" programs 0 times"))
    {
        println!("# {skipped}");
    }
    Ok(())
}

/// Whether `to` is who `sent` went to: its reader, where sockdump names
/// readers (`readers_named`) and the scenario says who; else SO_PEERCRED's pid.
fn went_to(sent: &Sent, to: To, readers_named: bool) -> bool {
    match (to, sent.read_by) {
        (To::Peer(pid), ReadBy::Unchecked | ReadBy::Nobody) => pid == sent.peer_pid,
        (To::Peer(pid), ReadBy::Pid(_) | ReadBy::Split { .. }) => !readers_named && pid == sent.peer_pid,
        (To::Reader { .. }, ReadBy::Unchecked) => readers_named,
        (To::Reader { pid, others: 0 }, ReadBy::Pid(reader)) => readers_named && pid == reader,
        (To::Reader { pid, others }, ReadBy::Split { first, others: more }) => {
            readers_named && (pid, others) == (first, more)
        }
        (To::Reader { .. }, _) => false,
    }
}

fn matches(sent: &Sent, printed: &Printed, readers_named: bool) -> bool {
    sent.pid == printed.pid
        && sent.comm == printed.comm
        && went_to(sent, printed.to, readers_named)
        && sent.path == printed.path
        && sent.len == printed.len
        && sent.notes == printed.notes
        && sent.data == printed.data
}

/// Whether `printed` is a record of a send that must not have one: its
/// bytes, or a record of its length on its socket from its process.
fn shows(printed: &Printed, sent: &Sent) -> bool {
    (!sent.data.is_empty() && printed.data == sent.data)
        || (!sent.path.is_empty()
            && printed.pid == sent.pid
            && printed.path == sent.path
            && printed.len == sent.len)
}

fn describe(p: &Printed) -> String {
    format!(
        "{} [{} -> {:?}] path {} len {}({}) {:?} {:?}",
        p.comm,
        p.pid,
        p.to,
        p.path,
        p.captured,
        p.len,
        p.notes,
        String::from_utf8_lossy(&p.data[..p.data.len().min(48)])
    )
}

/// Every expected message printed exactly once (with `may_miss`, at most
/// once: returns how many are missing), no forbidden one printed, and for
/// exclusive scenarios nothing else printed.
fn compare(
    scenario: &Scenario,
    sent: &[Sent],
    printed: &[Printed],
    may_miss: bool,
    readers_named: bool,
) -> Result<usize> {
    let mut missing = 0;
    let pids: Vec<u32> = sent.iter().map(|s| s.pid).collect();
    let mut unused: Vec<&Printed> =
        printed.iter().filter(|p| scenario.exclusive || pids.contains(&p.pid)).collect();
    for expected in sent.iter().filter(|s| s.shown.printed()) {
        match unused.iter().position(|p| matches(expected, p, readers_named)) {
            Some(index) => {
                unused.remove(index);
            }
            None if may_miss => missing += 1,
            None => {
                // the same bytes, else the same socket, shows what went wrong
                let near = printed
                    .iter()
                    .find(|p| p.data == expected.data && p.pid == expected.pid)
                    .or_else(|| printed.iter().find(|p| p.path == expected.path && p.pid == expected.pid));
                bail!(
                    "missing {} [{} -> {:?} / peer {:?}] path {} len {}({}) {:?} {:?}; {}",
                    expected.comm,
                    expected.pid,
                    expected.read_by,
                    expected.peer_pid,
                    expected.path,
                    expected.data.len(),
                    expected.len,
                    expected.notes,
                    String::from_utf8_lossy(&expected.data[..expected.data.len().min(48)]),
                    near.map_or("no record with these bytes or from this socket".to_string(), |p| format!(
                        "printed as {}",
                        describe(p)
                    ))
                );
            }
        }
    }
    for forbidden in sent.iter().filter(|s| !s.shown.printed()) {
        if let Some(p) = unused.iter().find(|p| shows(p, forbidden)) {
            bail!("printed a send that must not appear ({:?}): {}", forbidden.shown, describe(p));
        }
    }
    // what a hook that may miss sends must still never do: print a send
    // wrongly (another send's bytes or length on one of these sockets)
    if may_miss {
        let wrong = |p: &&&Printed| sent.iter().any(|s| s.path == p.path && s.pid == p.pid);
        if let Some(p) = unused.iter().find(wrong) {
            bail!("printed a record that is none of the sends on its socket: {}", describe(p));
        }
    }
    if scenario.exclusive {
        if let Some(p) = unused.first() {
            bail!("printed {} records beyond the expected ones, e.g. {}", unused.len(), describe(p));
        }
    }
    Ok(missing)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::peer::{LOST_MMSG, NOTE_UNREADABLE};

    fn target(expect_hook: Option<&str>, expect_stderr: Option<&str>) -> Target {
        Target {
            sockdump: PathBuf::from("sockdump"),
            hook: "auto".into(),
            expect_hook: expect_hook.map(String::from),
            expect_stderr: expect_stderr.map(String::from),
            preempted: false,
        }
    }

    #[test]
    fn a_start_is_checked_against_the_hook_and_the_text_expected() {
        let stderr = [
            "sockdump: cannot create kretprobes in /sys/kernel/tracing (...): the kernel's default applies",
            "listening on unix sockets, hook kprobe (kprobe/kretprobe ...), snapshot length 51200 bytes",
        ]
        .map(String::from);
        assert!(target(None, None).check_start(&stderr).is_ok());
        assert!(target(Some("kprobe"), Some("default applies")).check_start(&stderr).is_ok());
        assert!(target(Some("fentry"), None).check_start(&stderr).is_err());
        assert!(target(None, Some("maxactive")).check_start(&stderr).is_err());
        assert_eq!(family(&stderr).unwrap(), "kprobe");
        assert!(family(&stderr[..1]).is_err());
    }

    fn sent(shown: Shown) -> Sent {
        Sent {
            comm: "peer".into(),
            pid: 10,
            peer_pid: None,
            path: "socket:[5]".into(),
            len: 4,
            data: b"data".to_vec(),
            notes: Vec::new(),
            shown,
            read_by: ReadBy::Unchecked,
        }
    }

    #[test]
    fn the_totals_count_exactly_the_sends_expected_lost_under_their_counter() {
        let stderr = |captured: u32, lost: u32, mmsg: u32, ringbuf: u32| {
            [
                format!("{captured} packets captured, {lost} lost"),
                format!(
                    "lost: {ringbuf} ring buffer full, {mmsg} sendmmsg beyond the walked messages, \
                     0 in-flight table full, 0 returns the hook never saw, 0 malformed records"
                ),
                "skipped: the kernel skipped sockdump's programs 0 times (already running on that CPU)"
                    .into(),
            ]
        };
        let lost =
            [sent(Shown::Bytes), sent(Shown::Lost(LOST_MMSG.into())), sent(Shown::Lost(LOST_MMSG.into()))];
        let expected = expected_lost(lost.iter());
        assert!(check_totals(&stderr(1, 2, 2, 0), 1, &expected, None).is_ok());
        assert!(check_totals(&stderr(1, 2, 2, 0), 2, &expected, None).is_err());
        assert!(check_totals(&stderr(1, 1, 1, 0), 1, &expected, None).is_err());
        // the right total, under another counter
        assert!(check_totals(&stderr(1, 2, 1, 1), 1, &expected, None).is_err());
        assert!(check_totals(&stderr(1, 0, 0, 0), 1, &BTreeMap::new(), None).is_ok());
        assert!(check_totals(&stderr(1, 1, 0, 1), 1, &BTreeMap::new(), None).is_err());
        // a preempted hook: the missing sends must be counted, others may be
        assert!(check_totals(&stderr(1, 5, 2, 0), 1, &expected, Some(3)).is_ok());
        assert!(check_totals(&stderr(1, 4, 2, 0), 1, &expected, Some(3)).is_err());
        assert!(check_totals(&stderr(1, 5, 1, 0), 1, &expected, Some(3)).is_err());
    }

    fn printed(data: &[u8], len: usize, notes: &[&str]) -> Printed {
        Printed {
            comm: "peer".into(),
            pid: 10,
            to: To::Peer(None),
            path: "socket:[5]".into(),
            captured: data.len(),
            len,
            notes: notes.iter().map(|n| n.to_string()).collect(),
            data: data.to_vec(),
        }
    }

    #[test]
    fn a_reader_is_checked_where_the_scenario_names_it() {
        let peer = Sent { peer_pid: Some(7), ..sent(Shown::Bytes) };
        let read_by = |read_by| Sent { read_by, ..peer.clone() };
        let reader = |pid| To::Reader { pid, others: 0 };
        // sockdump names readers
        assert!(went_to(&peer, reader(3), true) && went_to(&peer, To::Peer(Some(7)), true));
        assert!(!went_to(&peer, To::Peer(Some(8)), true));
        assert!(went_to(&read_by(ReadBy::Pid(3)), reader(3), true));
        assert!(!went_to(&read_by(ReadBy::Pid(3)), reader(4), true));
        assert!(!went_to(&read_by(ReadBy::Pid(3)), To::Reader { pid: 3, others: 1 }, true));
        let split = read_by(ReadBy::Split { first: 3, others: 1 });
        assert!(went_to(&split, To::Reader { pid: 3, others: 1 }, true));
        assert!(
            !went_to(&split, reader(3), true) && !went_to(&split, To::Reader { pid: 4, others: 1 }, true)
        );
        assert!(!went_to(&read_by(ReadBy::Pid(3)), To::Peer(Some(7)), true));
        assert!(went_to(&read_by(ReadBy::Nobody), To::Peer(Some(7)), true));
        assert!(!went_to(&read_by(ReadBy::Nobody), reader(3), true));
        // it does not: SO_PEERCRED's pid, always
        assert!(went_to(&read_by(ReadBy::Pid(3)), To::Peer(Some(7)), false));
        assert!(!went_to(&read_by(ReadBy::Pid(3)), reader(3), false));
        assert!(!went_to(&peer, reader(3), false));
    }

    #[test]
    fn flagged_records_are_compared_like_the_others() {
        let scenario = crate::scenarios::find("socketpair").unwrap();
        let flagged = [Sent { data: Vec::new(), notes: vec![NOTE_UNREADABLE.into()], ..sent(Shown::Length) }];
        assert!(compare(scenario, &flagged, &[printed(b"", 4, &[NOTE_UNREADABLE])], false, false).is_ok());
        assert!(compare(scenario, &flagged, &[printed(b"", 3, &[NOTE_UNREADABLE])], false, false).is_err());
        assert!(compare(scenario, &flagged, &[printed(b"", 4, &[])], false, false).is_err());
        assert!(compare(scenario, &flagged, &[printed(b"data", 4, &[])], false, false).is_err());
        // no record: neither the bytes nor a flagged length on the socket
        for shown in [Shown::Nothing, Shown::Lost(LOST_MMSG.into())] {
            assert!(compare(scenario, &[sent(shown.clone())], &[], false, false).is_ok());
            assert!(
                compare(scenario, &[sent(shown.clone())], &[printed(b"data", 4, &[])], false, false).is_err()
            );
            assert!(compare(scenario, &[sent(shown)], &[printed(b"", 4, &[NOTE_UNREADABLE])], false, false)
                .is_err());
        }
        // a preempted hook may miss a send and says how many it missed
        let bytes = [sent(Shown::Bytes)];
        assert_eq!(compare(scenario, &bytes, &[], true, false).unwrap(), 1);
        assert_eq!(compare(scenario, &bytes, &[printed(b"data", 4, &[])], true, false).unwrap(), 0);
        assert!(compare(scenario, &bytes, &[printed(b"dat4", 4, &[])], true, false).is_err());
        assert!(compare(scenario, &bytes, &[printed(b"data", 3, &[])], true, false).is_err());
        // never another send's record in its place, not even a flagged length
        assert!(compare(scenario, &bytes, &[printed(b"", 4, &[NOTE_UNREADABLE])], true, false).is_err());
        assert!(compare(scenario, &bytes, &[], false, false).is_err());
    }
}
