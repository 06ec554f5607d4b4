//! The one event loop: moves events from a [`Source`] (live capture or a
//! capture file) into a [`Sink`], and owns everything about stopping: the
//! count limit, a stop request, a reader that went away, flushing and totals.

use std::io;
use std::os::fd::BorrowedFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};
use sockdump_common::{DecodeError, Event};

use crate::output::{Sink, Stats};

/// What a wait for more events found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Waited {
    /// Events may be ready (or the timeout passed).
    Ready,
    /// The source has no more events (the end of a file).
    Ended,
    /// The reader of the output (a pipe or fifo) went away.
    OutputGone,
}

/// Where events come from. Decoding happens here, at the boundary: a
/// record that does not decode is handed on as the error it is.
pub trait Source {
    /// Passes the events available now to `handle`, oldest first, until it
    /// returns false or none are left for now.
    fn drain(&mut self, handle: &mut dyn FnMut(Result<Event<'_>, DecodeError>) -> bool) -> Result<()>;
    /// Waits up to `timeout` for more; `output` is the output's descriptor
    /// when it is a pipe or fifo, to notice its reader going away.
    fn wait(&mut self, timeout: Duration, output: Option<BorrowedFd<'_>>) -> Result<Waited>;
    /// Messages lost before they reached the source.
    fn lost(&self) -> Result<u64>;
    /// On a stop request: events stamped after this (monotonic ns) are not
    /// written; None stops at once.
    fn stop_cutoff(&mut self) -> Option<u64>;
}

/// How long events may wait in the source: the kernel wakes sockdump only
/// for large batches, so a trickle is picked up by this timeout.
const BATCH_WAIT: Duration = Duration::from_millis(50);

/// How far past the stop request the final drain reads: records of other
/// CPUs can be a little out of order, so only one well past it ends it.
const STOP_GRACE_NS: u64 = 100_000_000;

/// What a pump run did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Totals {
    pub written: u64,
    pub malformed: u64,
    /// The source's own count of lost messages.
    pub lost: u64,
}

impl Totals {
    /// What the sink records at the end: malformed records count as lost.
    pub fn stats(&self) -> Stats {
        Stats { captured: self.written, lost: Some(self.lost + self.malformed) }
    }
}

/// The limits of one run.
pub struct Limits<'a> {
    /// Stop after this many events are written.
    pub count: Option<u64>,
    /// Set by a signal handler: stop, after draining what came before.
    pub stop: &'a AtomicBool,
    /// The output's descriptor when a pipe or fifo (see [`Source::wait`]).
    pub output: Option<BorrowedFd<'a>>,
}

/// Pumps until the source ends, `count` events are written, a stop is
/// requested, or the output's reader goes away; then finishes the sink.
/// A reader that went away (EPIPE) ends the run; it is not an error.
pub fn pump(source: &mut dyn Source, sink: &mut dyn Sink, limits: &Limits<'_>) -> Result<Totals> {
    let mut totals = Totals::default();
    match pump_events(source, sink, limits, &mut totals) {
        Err(err) if is_broken_pipe(&err) => return Ok(totals),
        other => other?,
    }
    totals.lost = source.lost()?;
    match sink.finish(&totals.stats()) {
        Err(err) if err.kind() == io::ErrorKind::BrokenPipe => {}
        other => other.context("cannot finish the output")?,
    }
    Ok(totals)
}

fn pump_events(
    source: &mut dyn Source,
    sink: &mut dyn Sink,
    limits: &Limits<'_>,
    totals: &mut Totals,
) -> Result<()> {
    let limit = limits.count.unwrap_or(u64::MAX);
    loop {
        let cutoff = match limits.stop.load(Ordering::SeqCst) {
            false => u64::MAX,
            true => match source.stop_cutoff() {
                Some(cutoff) => cutoff,
                None => return Ok(()),
            },
        };
        let mut write_error = None;
        source.drain(&mut |decoded| {
            if totals.written >= limit {
                return false;
            }
            match decoded {
                // sent after the stop request: not written
                Ok(event) if event.timestamp_ns > cutoff => event.timestamp_ns - cutoff < STOP_GRACE_NS,
                Ok(event) => match sink.write_event(&event) {
                    Ok(()) => {
                        totals.written += 1;
                        true
                    }
                    Err(err) => {
                        write_error = Some(err);
                        false
                    }
                },
                Err(_) => {
                    totals.malformed += 1;
                    true
                }
            }
        })?;
        match write_error {
            Some(err) => Err(err),
            None => sink.flush(),
        }
        .context("cannot write the output")?;
        if cutoff != u64::MAX || totals.written >= limit {
            return Ok(());
        }
        match source.wait(BATCH_WAIT, limits.output)? {
            Waited::Ready => {}
            Waited::Ended | Waited::OutputGone => return Ok(()),
        }
    }
}

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain()
        .any(|cause| cause.downcast_ref::<io::Error>().is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe))
}

#[cfg(test)]
mod tests {
    use super::*;
    use sockdump_common::abi;
    use std::collections::VecDeque;

    /// Records of events with these timestamps, in batches.
    struct FakeSource {
        batches: VecDeque<Vec<Vec<u8>>>,
        live: bool,
        now: u64,
        lost: u64,
        /// a stop request arrives when this batch has been drained
        stop_after_batch: Option<(usize, &'static AtomicBool)>,
        drained: usize,
    }

    fn record(timestamp_ns: u64) -> Vec<u8> {
        let mut record = vec![0u8; abi::event::SIZE];
        let at = abi::event::TIMESTAMP_NS.offset;
        record[at..at + 8].copy_from_slice(&timestamp_ns.to_ne_bytes());
        let at = abi::event::SOCK_TYPE.offset;
        record[at..at + 2].copy_from_slice(&abi::sock_type::STREAM.to_ne_bytes());
        record
    }

    impl FakeSource {
        fn new(batches: &[&[u64]]) -> Self {
            FakeSource {
                batches: batches.iter().map(|b| b.iter().map(|&t| record(t)).collect()).collect(),
                live: true,
                now: 1_000_000_000,
                lost: 0,
                stop_after_batch: None,
                drained: 0,
            }
        }
    }

    impl Source for FakeSource {
        fn drain(&mut self, handle: &mut dyn FnMut(Result<Event<'_>, DecodeError>) -> bool) -> Result<()> {
            let Some(batch) = self.batches.pop_front() else { return Ok(()) };
            let mut rest = batch.into_iter();
            for record in rest.by_ref() {
                if !handle(Event::parse(&record)) {
                    break;
                }
            }
            // what the handler did not take stays for the next drain
            let rest: Vec<_> = rest.collect();
            if !rest.is_empty() {
                self.batches.push_front(rest);
            }
            self.drained += 1;
            if let Some((batch, stop)) = self.stop_after_batch {
                if self.drained == batch {
                    stop.store(true, Ordering::SeqCst);
                }
            }
            Ok(())
        }

        fn wait(&mut self, _: Duration, _: Option<BorrowedFd<'_>>) -> Result<Waited> {
            Ok(if self.batches.is_empty() && !self.live { Waited::Ended } else { Waited::Ready })
        }

        fn lost(&self) -> Result<u64> {
            Ok(self.lost)
        }

        fn stop_cutoff(&mut self) -> Option<u64> {
            self.live.then_some(self.now)
        }
    }

    /// Timestamps written, stats finished with, and whether to fail with EPIPE.
    #[derive(Default)]
    struct FakeSink {
        written: Vec<u64>,
        finished: Option<Stats>,
        broken_after: Option<usize>,
        flushes: usize,
    }

    impl Sink for FakeSink {
        fn write_event(&mut self, event: &Event<'_>) -> io::Result<()> {
            if self.broken_after == Some(self.written.len()) {
                return Err(io::ErrorKind::BrokenPipe.into());
            }
            self.written.push(event.timestamp_ns);
            Ok(())
        }
        fn flush(&mut self) -> io::Result<()> {
            self.flushes += 1;
            Ok(())
        }
        fn finish(&mut self, stats: &Stats) -> io::Result<()> {
            self.finished = Some(*stats);
            Ok(())
        }
    }

    fn limits(count: Option<u64>, stop: &AtomicBool) -> Limits<'_> {
        Limits { count, stop, output: None }
    }

    #[test]
    fn a_file_source_is_pumped_to_its_end() {
        let stop = AtomicBool::new(false);
        let mut source = FakeSource::new(&[&[1, 2], &[3]]);
        source.live = false;
        source.lost = 4;
        let mut sink = FakeSink::default();
        let totals = pump(&mut source, &mut sink, &limits(None, &stop)).unwrap();
        assert_eq!(sink.written, [1, 2, 3]);
        assert_eq!(totals, Totals { written: 3, malformed: 0, lost: 4 });
        assert_eq!(sink.finished, Some(Stats { captured: 3, lost: Some(4) }));
        assert!(sink.flushes >= 2, "flushed per drain");
    }

    #[test]
    fn count_stops_mid_batch() {
        let stop = AtomicBool::new(false);
        let mut source = FakeSource::new(&[&[1, 2, 3], &[4]]);
        let mut sink = FakeSink::default();
        pump(&mut source, &mut sink, &limits(Some(2), &stop)).unwrap();
        assert_eq!(sink.written, [1, 2]);
        assert_eq!(sink.finished, Some(Stats { captured: 2, lost: Some(0) }));
    }

    #[test]
    fn malformed_records_are_counted_as_lost_not_fatal() {
        let stop = AtomicBool::new(false);
        let mut source = FakeSource::new(&[&[1]]);
        source.live = false;
        source.batches[0].insert(0, vec![1, 2, 3]);
        let mut sink = FakeSink::default();
        let totals = pump(&mut source, &mut sink, &limits(None, &stop)).unwrap();
        assert_eq!((totals.written, totals.malformed), (1, 1));
        assert_eq!(sink.finished, Some(Stats { captured: 1, lost: Some(1) }));
    }

    #[test]
    fn a_stop_drains_what_was_sent_before_it_and_no_more() {
        static STOP: AtomicBool = AtomicBool::new(false);
        let now = 1_000_000_000;
        // the stop arrives after the first batch; the second holds events
        // before it, one just after (out of order across CPUs: skipped), and
        // one well after, which ends the drain
        let mut source = FakeSource::new(&[&[1], &[now - 5, now + 10, now - 3, now + 200_000_000, now - 1]]);
        source.stop_after_batch = Some((1, &STOP));
        let mut sink = FakeSink::default();
        pump(&mut source, &mut sink, &limits(None, &STOP)).unwrap();
        assert_eq!(sink.written, [1, now - 5, now - 3]);
        assert!(sink.finished.is_some(), "the output is finished after a stop");
    }

    #[test]
    fn a_stop_ends_a_file_source_at_once() {
        let stop = AtomicBool::new(true);
        let mut source = FakeSource::new(&[&[1, 2]]);
        source.live = false;
        let mut sink = FakeSink::default();
        pump(&mut source, &mut sink, &limits(None, &stop)).unwrap();
        assert!(sink.written.is_empty());
        assert!(sink.finished.is_some());
    }

    #[test]
    fn a_reader_gone_ends_the_run_quietly() {
        let stop = AtomicBool::new(false);
        let mut source = FakeSource::new(&[&[1, 2, 3]]);
        let mut sink = FakeSink { broken_after: Some(1), ..FakeSink::default() };
        let totals = pump(&mut source, &mut sink, &limits(None, &stop)).unwrap();
        assert_eq!(totals.written, 1);
        assert_eq!(sink.finished, None, "nothing more is written to a closed pipe");
    }
}
