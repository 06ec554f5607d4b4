//! The command's driver: a source (live capture, or a file with `-r`) is
//! pumped into the sink of the chosen format, and the totals are reported.

use std::os::fd::AsFd;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{Context, Result};

use crate::capture::{Capture, HookChoice};
use crate::cli::Cli;
use crate::clock::WallClock;
use crate::messages::{self, note};
use crate::output;
use crate::pump::{pump, Limits};
use crate::read::FileSource;
use crate::{setup, system};

pub fn run(cli: Cli) -> Result<()> {
    setup::check_output_options(&cli)?;
    match &cli.read {
        Some(path) => read_file(&cli, path),
        None => capture_live(&cli),
    }
}

fn capture_live(cli: &Cli) -> Result<()> {
    let settings = setup::settings_from(cli)?;
    system::check_privileges()?;
    system::raise_memlock_limit();
    let stop = stop_on_signals()?;
    // Capture starts before the output is opened: a capture that cannot
    // start leaves an existing file alone.
    let mut capture = Capture::start(&settings, cli.hook, |failure| {
        // a forced hook's failure is the error itself: say it once
        if cli.verbose > 0 && cli.hook == HookChoice::Auto {
            note(format_args!("sockdump: hook {} not available: {}", failure.family.name, failure.reason));
        }
    })?;
    let output = output::open_destination(cli.output.as_deref())?;
    let flush_each = !output.is_regular_file();
    let mut sink = setup::make_sink(cli, output.writer, flush_each, WallClock::now())?;
    if !cli.quiet {
        messages::listening(capture.family(), settings.seg_size);
    }
    let limits =
        Limits { count: cli.count, stop: &stop, output: output.reader.as_ref().map(|fd| fd.as_fd()) };
    let totals = pump(&mut capture, sink.as_mut(), &limits)?;
    if !cli.quiet {
        let stats = totals.stats();
        messages::totals(stats.captured, stats.lost);
    }
    if cli.verbose > 0 {
        messages::kernel_counters(&capture.counters()?, totals.malformed, capture.skipped_runs()?);
    }
    Ok(())
}

/// `-r FILE`: replays a capture sockdump wrote into any format, as `tcpdump -r`.
fn read_file(cli: &Cli, path: &Path) -> Result<()> {
    let filter = setup::filter_from(cli)?;
    let stop = stop_on_signals()?;
    let mut source = FileSource::open(path, filter)?;
    let output = output::open_destination(cli.output.as_deref())?;
    let flush_each = !output.is_regular_file();
    // timestamps in the file are wall-clock already
    let mut sink = setup::make_sink(cli, output.writer, flush_each, WallClock::with_offset(0))?;
    let limits =
        Limits { count: cli.count, stop: &stop, output: output.reader.as_ref().map(|fd| fd.as_fd()) };
    let totals = pump(&mut source, sink.as_mut(), &limits)?;
    source.report(totals.written, cli.verbose > 0);
    Ok(())
}

/// The first Ctrl-C or SIGTERM asks for a clean stop; a second one exits at once.
fn stop_on_signals() -> Result<Arc<AtomicBool>> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    ctrlc::set_handler(move || {
        if flag.swap(true, Ordering::SeqCst) {
            std::process::exit(130);
        }
    })
    .context("cannot install the SIGINT/SIGTERM handler")?;
    Ok(stop)
}
