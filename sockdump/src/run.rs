//! The command's driver: a source (live capture, or a file with `-r`) is
//! pumped into the sink of the chosen format, and the totals are reported.

use std::os::fd::AsFd;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{Context, Result};

use nix::sys::signal::{pthread_sigmask, SigSet, SigmaskHow, Signal};

use crate::capture::{self, Capture, HookChoice};
use crate::cli::Cli;
use crate::clock::WallClock;
use crate::command::{HeldCommand, RunAs};
use crate::messages::{self, note};
use crate::output::ring::RingFiles;
use crate::output::{self, Output};
use crate::privileges::{self, Account, StillNeeded};
use crate::pump::{pump, Limits};
use crate::read::FileSource;
use crate::{setup, system};

/// Runs the command line; the exit status is CMD's with `-- CMD`, else 0.
pub fn run(cli: Cli) -> Result<u8> {
    setup::check_output_options(&cli)?;
    match &cli.read {
        Some(path) => read_file(&cli, path).map(|()| 0),
        None => capture_live(&cli),
    }
}

fn capture_live(cli: &Cli) -> Result<u8> {
    let settings = setup::settings_from(cli)?;
    // forked before any thread starts, and before signals are held: CMD
    // inherits the signal mask
    let mut command = match cli.command.is_empty() {
        true => None,
        false => Some(HeldCommand::spawn(&cli.command, RunAs::invoking_user()?.as_ref())?),
    };
    let account = relinquish_to(cli)?;
    system::check_privileges()?;
    system::raise_memlock_limit();
    let signals = HeldSignals::hold()?;
    // Capture starts before the output is opened: a capture that cannot
    // start leaves an existing file alone.
    let mut capture = Capture::start(&settings, cli.hook, |failure| {
        // a forced hook's failure is the error itself: say it once
        if cli.verbose > 0 && cli.hook == HookChoice::Auto {
            note(format_args!("sockdump: hook {} not available: {}", failure.family.name, failure.reason));
        }
    })?;
    // while capabilities are held: before 6.5 a map update needs CAP_BPF
    if let Some(held) = &command {
        capture.follow(u32::try_from(held.pid.as_raw())?)?;
    }
    let mut ring = setup::ring_from(cli);
    let Output { writer, kind } = open_output(
        cli,
        account.as_ref(),
        capture.still_needed(account.is_some()),
        ring.as_mut().map(|(files, _)| files),
    )?;
    capture.name_containers(cli.verbose > 0)?;
    // after capabilities are dropped: the handler runs in a thread of its own
    let stop = signals.arm()?;
    let command = match command.as_mut() {
        Some(held) => {
            held.release()?;
            Some(CommandWatch::start(held.pid, Arc::clone(&stop))?)
        }
        None => None,
    };
    let mut sink = setup::make_sink(cli, writer, &kind, ring, WallClock::now())?;
    if !cli.quiet {
        messages::listening(capture.family(), capture.names_readers(), settings.seg_size);
        if let (Some(uid), None) = (settings.filter.uid, &cli.uid) {
            messages::own_conversations_only(uid);
        }
    }
    let limits = Limits { count: cli.count, stop: &stop, output: kind.reader.as_ref().map(|fd| fd.as_fd()) };
    let totals = pump(&mut capture, sink.as_mut(), &limits)?;
    if !cli.quiet {
        let stats = totals.stats();
        messages::totals(stats.captured, stats.lost.unwrap_or(0));
    }
    if cli.verbose > 0 {
        messages::kernel_counters(
            &capture.counters()?,
            totals.malformed,
            &capture.skipped_runs()?,
            capture.names_readers(),
        );
    }
    Ok(match command {
        Some(watch) => watch.status()?,
        None => 0,
    })
}

/// CMD of `sockdump -- CMD`, waited for in a thread: its end stops the
/// capture, which then drains what CMD sent before it exited.
struct CommandWatch {
    pid: nix::unistd::Pid,
    /// None once joined.
    waiter: Option<std::thread::JoinHandle<Result<u8>>>,
}

impl CommandWatch {
    fn start(pid: nix::unistd::Pid, stop: Arc<AtomicBool>) -> Result<Self> {
        let waiter = std::thread::Builder::new()
            .name("command".into())
            .spawn(move || {
                let status = HeldCommand::wait(pid);
                stop.store(true, Ordering::SeqCst);
                status
            })
            .context("cannot start a thread to wait for the command")?;
        Ok(CommandWatch { pid, waiter: Some(waiter) })
    }

    /// CMD's exit status; a capture that stopped first (a signal, -c)
    /// ends CMD with SIGTERM.
    fn status(mut self) -> Result<u8> {
        self.end();
        let waiter = self.waiter.take().context("the command was waited for already")?;
        waiter.join().map_err(|_| anyhow::anyhow!("the thread waiting for the command failed"))?
    }

    fn end(&self) {
        if self.waiter.as_ref().is_some_and(|waiter| !waiter.is_finished()) {
            let _ = nix::sys::signal::kill(self.pid, Signal::SIGTERM);
        }
    }
}

/// A capture that fails leaves no CMD running.
impl Drop for CommandWatch {
    fn drop(&mut self) {
        self.end();
    }
}

/// `-r FILE`: replays a capture sockdump wrote into any format, as `tcpdump -r`.
fn read_file(cli: &Cli, path: &Path) -> Result<()> {
    let filter = setup::filter_from(cli)?;
    let account = relinquish_to(cli)?;
    let signals = HeldSignals::hold()?;
    let mut source = FileSource::open(path, filter)?;
    let mut ring = setup::ring_from(cli);
    let Output { writer, kind } =
        open_output(cli, account.as_ref(), StillNeeded::default(), ring.as_mut().map(|(files, _)| files))?;
    let stop = signals.arm()?;
    // timestamps in the file are wall-clock already
    let mut sink = setup::make_sink(cli, writer, &kind, ring, WallClock::with_offset(0))?;
    let limits = Limits { count: cli.count, stop: &stop, output: kind.reader.as_ref().map(|fd| fd.as_fd()) };
    let totals = pump(&mut source, sink.as_mut(), &limits)?;
    source.report(totals.written, cli.verbose > 0);
    Ok(())
}

/// `-Z USER`, looked up before anything starts.
fn relinquish_to(cli: &Cli) -> Result<Option<Account>> {
    cli.relinquish_privileges.as_deref().map(Account::lookup).transpose()
}

/// Opens the output (a ring's first file) and drops every capability:
/// with `-Z` as the user the file is for (so it is theirs), otherwise as
/// the caller, before dropping them (root may need to override file
/// permissions to create it).
fn open_output(
    cli: &Cli,
    account: Option<&Account>,
    needed: StillNeeded,
    ring: Option<&mut RingFiles>,
) -> Result<Output> {
    let open = |ring: Option<&mut RingFiles>| match ring {
        Some(files) => files.open_next(),
        None => output::open_destination(cli.output_path(), cli.output_expect()),
    };
    if account.is_some() {
        privileges::relinquish(account, needed)?;
        return open(ring);
    }
    let output = open(ring)?;
    privileges::relinquish(None, needed)?;
    Ok(output)
}

/// SIGINT, SIGTERM and SIGHUP, held until the handler is armed: its thread
/// must start after capabilities are dropped (they belong to threads), and
/// a signal while loading is then handled, not fatal.
struct HeldSignals {
    before: SigSet,
}

impl HeldSignals {
    fn hold() -> Result<Self> {
        let mut stop_signals = SigSet::empty();
        for signal in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
            stop_signals.add(signal);
        }
        let mut before = SigSet::empty();
        pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&stop_signals), Some(&mut before))
            .context("cannot hold SIGINT/SIGTERM")?;
        Ok(HeldSignals { before })
    }

    /// The first signal asks for a clean stop; a second one exits at once,
    /// deleting what would outlive sockdump in the kernel. A signal held
    /// until now is handled as soon as this returns.
    fn arm(self) -> Result<Arc<AtomicBool>> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        ctrlc::set_handler(move || {
            if flag.swap(true, Ordering::SeqCst) {
                capture::remove_kernel_state_before_exit();
                std::process::exit(130);
            }
        })
        .context("cannot install the SIGINT/SIGTERM handler")?;
        pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&self.before), None)
            .context("cannot restore the signal mask")?;
        Ok(stop)
    }
}
