//! Who read each message. The kernel numbers what goes through each
//! receiving socket (bytes of a stream, messages of a datagram or seqpacket
//! socket; sockdump-ebpf/bpf/readers.h): a message record says which
//! stretch of its receiver's numbering it took, a read record which stretch
//! a thread consumed. A message is held back until the read of its first
//! unit is seen, or its holding window ends; messages leave in the order
//! they came, so output stays in time order. Pure: no kernel, no clock.

use std::collections::VecDeque;
use std::ops::Range;

use sockdump_common::{Comm, DecodeError, Event, ReadRecord, Reader};

use crate::generations::Generations;

/// Reads kept per receiving socket: enough for the messages still held
/// back, while a socket read in tiny pieces by turns cannot grow the table.
const READS_PER_SOCKET: usize = 4096;
/// Receiving sockets and reads kept per generation, whatever the window: a
/// flood of new sockets forgets the reads of those not read lately (their
/// messages, if still held, leave with no reader named). Two generations
/// hold more than the default reads ring does (32768 reads), so that a
/// capture that fell behind by a ring still finds them; 2 MiB of reads.
const READ_SOCKETS: usize = 28672;
const READS: usize = 32768;

/// A reading thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Thread {
    pid: u32,
    tid: u32,
    comm: Comm,
    uid: u32,
    cgroup_id: u64,
}

#[derive(Debug)]
struct Read {
    range: Range<u64>,
    thread: Thread,
    /// When it was read (monotonic ns), to forget it later.
    at_ns: u64,
}

/// The reads seen on each receiving socket.
#[derive(Debug)]
struct ReadLog {
    sockets: Generations<u64, VecDeque<Read>>,
}

impl Default for ReadLog {
    fn default() -> Self {
        ReadLog { sockets: Generations::weighed(READ_SOCKETS, READS, VecDeque::len) }
    }
}

impl ReadLog {
    fn add(&mut self, socket: u64, range: Range<u64>, thread: Thread, at_ns: u64) {
        if range.is_empty() {
            return;
        }
        // most sockets see one read (a thread reading on is merged)
        let reads = self.sockets.get_or_insert_with(socket, || VecDeque::with_capacity(1));
        // a thread reading on where it stopped: one read
        if let Some(last) = reads.back_mut() {
            if last.thread == thread && last.range.end == range.start {
                last.range.end = range.end;
                last.at_ns = at_ns;
                return;
            }
        }
        let full = reads.len() == READS_PER_SOCKET;
        if full {
            reads.pop_front();
        }
        reads.push_back(Read { range, thread, at_ns });
        if !full {
            self.sockets.grew(1);
        }
    }

    /// The reader of `message`'s first unit, and how many other threads
    /// read parts of it, with whether its last unit was read too; None
    /// until its first unit was read.
    fn reader_of(&self, socket: u64, message: &Range<u64>) -> Option<(Reader, bool)> {
        let reads = self.sockets.peek(&socket)?;
        let first = reads.iter().rev().find(|r| r.range.contains(&message.start))?.thread;
        let last = message.end.saturating_sub(1).max(message.start);
        let whole = reads.iter().any(|r| r.range.contains(&last));
        let mut others: Vec<u32> = Vec::new();
        for read in reads.iter().filter(|r| r.range.start < message.end && message.start < r.range.end) {
            if read.thread.tid != first.tid && !others.contains(&read.thread.tid) {
                others.push(read.thread.tid);
            }
        }
        let reader = Reader::Thread {
            pid: first.pid,
            tid: first.tid,
            comm: first.comm,
            others: u32::try_from(others.len()).unwrap_or(u32::MAX),
            uid: Some(first.uid),
            cgroup_id: first.cgroup_id,
        };
        Some((reader, whole))
    }

    /// Forgets reads last extended before `before_ns`, and sockets left
    /// with none.
    fn forget_before(&mut self, before_ns: u64) {
        self.sockets.retain(|_, reads| {
            reads.retain(|r| r.at_ns >= before_ns);
            !reads.is_empty()
        });
    }
}

/// A message record waiting for its reader.
struct Held {
    record: Vec<u8>,
    rx_sock: u64,
    range: Range<u64>,
    /// When it is let go whether or not its reader is known.
    deadline_ns: u64,
}

/// Messages held back until their readers are known, and the reads seen.
pub struct Attribution {
    window_ns: u64,
    log: ReadLog,
    held: VecDeque<Held>,
    held_bytes: usize,
    max_held_bytes: usize,
    /// When reads were last forgotten.
    forgot_at_ns: u64,
    /// The newest time of a record taken: where the capture has got to.
    latest_ns: u64,
}

impl Attribution {
    /// Holds each message at most `window_ns` after it was sent, and at
    /// most `max_held_bytes` of records at once (the oldest leave early).
    pub fn new(window_ns: u64, max_held_bytes: usize) -> Self {
        Attribution {
            window_ns,
            log: ReadLog::default(),
            held: VecDeque::new(),
            held_bytes: 0,
            max_held_bytes,
            forgot_at_ns: 0,
            latest_ns: 0,
        }
    }

    /// A read record from the kernel.
    pub fn read(&mut self, read: &ReadRecord) {
        let thread = Thread {
            pid: read.pid,
            tid: read.tid,
            comm: read.comm,
            uid: read.uid,
            cgroup_id: read.cgroup_id,
        };
        let end = read.pos.saturating_add(read.units.into());
        self.log.add(read.rx_sock, read.pos..end, thread, read.timestamp_ns);
        self.latest_ns = self.latest_ns.max(read.timestamp_ns);
    }

    /// A message record from the kernel, handed on at once when nothing
    /// waits before it and its reads are in (most are, when the reads are
    /// taken first: a copy saved), else held. Records that do not decode
    /// are handed on at once, as errors. False if `handle` asked to stop.
    pub fn take(
        &mut self,
        record: &[u8],
        handle: &mut dyn FnMut(Result<Event<'_>, DecodeError>) -> bool,
    ) -> bool {
        if self.held.is_empty() {
            let event = match Event::parse(record) {
                Ok(event) => event,
                Err(err) => return handle(Err(err)),
            };
            self.latest_ns = self.latest_ns.max(event.timestamp_ns);
            // no known receiver: no reader to wait for
            if event.rx_sock == 0 {
                return handle(Ok(Event { reader: Reader::NotSeen, ..event }));
            }
            let range = event.rx_pos..event.rx_pos.saturating_add(event.rx_units());
            if let Some((reader, true)) = self.log.reader_of(event.rx_sock, &range) {
                return handle(Ok(Event { reader, ..event }));
            }
        }
        match self.hold(record) {
            Ok(()) => true,
            Err(err) => handle(Err(err)),
        }
    }

    /// Whether `record` would be held now: something waits before it, or
    /// its reads are not all in. (A record that does not decode would not.)
    pub fn would_hold(&self, record: &[u8]) -> bool {
        if !self.held.is_empty() {
            return true;
        }
        let Ok(event) = Event::parse(record) else { return false };
        let range = event.rx_pos..event.rx_pos.saturating_add(event.rx_units());
        event.rx_sock != 0 && !matches!(self.log.reader_of(event.rx_sock, &range), Some((_, true)))
    }

    /// Holds a message record until its reader is known.
    fn hold(&mut self, record: &[u8]) -> Result<(), DecodeError> {
        let event = Event::parse(record)?;
        self.latest_ns = self.latest_ns.max(event.timestamp_ns);
        let start = event.rx_pos;
        self.held_bytes += record.len();
        self.held.push_back(Held {
            record: record.to_vec(),
            rx_sock: event.rx_sock,
            range: start..start.saturating_add(event.rx_units()),
            deadline_ns: event.timestamp_ns.saturating_add(self.window_ns),
        });
        Ok(())
    }

    /// The newest time of a record taken. Behind the clock while records
    /// wait in the rings: windows end by it then, or a capture that fell
    /// behind would let every message go unread.
    pub fn latest_ns(&self) -> u64 {
        self.latest_ns
    }

    /// Whether messages are waiting.
    pub fn holding(&self) -> bool {
        !self.held.is_empty()
    }

    /// Hands on, oldest first, each message read to its end or whose
    /// window ended by `now_ns` (all of them when `all`), until `handle`
    /// returns false. A message whose first unit was not read names no
    /// reader ([`Reader::NotSeen`]); one read in part names the reader of
    /// its first unit and counts the others seen so far. False if
    /// `handle` asked to stop.
    pub fn release(
        &mut self,
        now_ns: u64,
        all: bool,
        handle: &mut dyn FnMut(Result<Event<'_>, DecodeError>) -> bool,
    ) -> bool {
        let mut go_on = true;
        while let Some(head) = self.held.front() {
            let found = match head.rx_sock {
                0 => None,
                socket => self.log.reader_of(socket, &head.range),
            };
            // a message with no known receiver has no reader to wait for
            let due = all
                || head.rx_sock == 0
                || now_ns >= head.deadline_ns
                || self.held_bytes > self.max_held_bytes;
            let read_whole = found.is_some_and(|(_, whole)| whole);
            if !read_whole && !due {
                break;
            }
            let reader = found.map(|(reader, _)| reader);
            let Some(head) = self.held.pop_front() else { break };
            self.held_bytes -= head.record.len();
            let event = Event::parse(&head.record)
                .map(|event| Event { reader: reader.unwrap_or(Reader::NotSeen), ..event });
            if !handle(event) {
                go_on = false;
                break;
            }
        }
        // a read is needed only by messages sent within a window of it;
        // looked at every half window, not on each of many releases
        if now_ns >= self.forgot_at_ns.saturating_add(self.window_ns / 2) {
            self.log.forget_before(now_ns.saturating_sub(2 * self.window_ns));
            self.forgot_at_ns = now_ns;
        }
        go_on
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sockdump_common::abi;

    const WINDOW: u64 = 250_000_000;

    fn message(rx_sock: u64, rx_pos: u64, len: u32, sent_ns: u64) -> Vec<u8> {
        let mut r = vec![0u8; abi::event::SIZE];
        let mut put = |field: abi::Field, bytes: &[u8]| {
            r[field.offset..field.offset + bytes.len()].copy_from_slice(bytes)
        };
        put(abi::event::TIMESTAMP_NS, &sent_ns.to_ne_bytes());
        put(abi::event::LEN, &len.to_ne_bytes());
        put(abi::event::SOCK_TYPE, &abi::sock_type::STREAM.to_ne_bytes());
        put(abi::event::RX_SOCK, &rx_sock.to_ne_bytes());
        put(abi::event::RX_POS, &rx_pos.to_ne_bytes());
        r
    }

    fn read(rx_sock: u64, pos: u64, units: u32, tid: u32, at_ns: u64) -> ReadRecord {
        ReadRecord {
            timestamp_ns: at_ns,
            rx_sock,
            pos,
            units,
            pid: tid / 10 * 10,
            tid,
            uid: 1000,
            comm: Comm::new(b"reader"),
            cgroup_id: 1,
        }
    }

    /// Releases at `now` and returns (rx_pos, reader tid or 0 for not seen).
    fn released(a: &mut Attribution, now: u64, all: bool) -> Vec<(u64, u32)> {
        let mut out = Vec::new();
        a.release(now, all, &mut |event| {
            let event = event.expect("valid record");
            out.push((
                event.rx_pos,
                match event.reader {
                    Reader::Thread { tid, .. } => tid,
                    _ => 0,
                },
            ));
            true
        });
        out
    }

    #[test]
    fn a_message_waits_for_the_read_of_its_first_byte() {
        let mut a = Attribution::new(WINDOW, 1 << 20);
        a.hold(&message(7, 0, 10, 1_000)).unwrap();
        assert_eq!(released(&mut a, 2_000, false), []);
        // read in two pieces by two threads: the first byte decides
        a.read(&read(7, 0, 4, 101, 3_000));
        // read in part: it waits for the rest
        assert_eq!(released(&mut a, 3_500, false), []);
        a.read(&read(7, 4, 6, 202, 4_000));
        let mut got = None;
        a.release(5_000, false, &mut |e| {
            got = Some(e.unwrap().reader);
            true
        });
        assert!(matches!(got, Some(Reader::Thread { tid: 101, pid: 100, others: 1, .. })), "{got:?}");
    }

    #[test]
    fn messages_leave_in_order_and_unread_ones_when_their_window_ends() {
        let mut a = Attribution::new(WINDOW, 1 << 20);
        a.hold(&message(7, 0, 10, 1_000)).unwrap();
        a.hold(&message(8, 0, 5, 2_000)).unwrap();
        a.hold(&message(7, 10, 10, 3_000)).unwrap();
        // the second is read, but the first holds it back
        a.read(&read(8, 0, 5, 303, 4_000));
        assert_eq!(released(&mut a, 5_000, false), []);
        // the first one's window ends: unread; then the second goes
        assert_eq!(released(&mut a, 1_000 + WINDOW, false), [(0, 0), (0, 303)]);
        // a read that came before its message is found too
        a.read(&read(7, 10, 20, 404, 5_000));
        a.hold(&message(7, 20, 1, 6_000)).unwrap();
        assert_eq!(released(&mut a, 7_000, false), [(10, 404), (20, 404)]);
        assert!(!a.holding());
    }

    #[test]
    fn a_message_with_no_known_receiver_is_not_read_and_all_go_at_the_end() {
        let mut a = Attribution::new(WINDOW, 1 << 20);
        a.hold(&message(0, 0, 3, 1_000)).unwrap();
        a.hold(&message(9, 0, 3, 1_000)).unwrap();
        assert_eq!(released(&mut a, 2_000, false), [(0, 0)]);
        assert_eq!(released(&mut a, 2_000, true), [(0, 0)]);
    }

    #[test]
    fn a_message_already_read_goes_at_once_unless_one_before_it_waits() {
        let mut a = Attribution::new(WINDOW, 1 << 20);
        let mut got = Vec::new();
        let mut take = |a: &mut Attribution, record: &[u8]| {
            a.take(record, &mut |e| {
                got.push(e.expect("valid record").rx_pos);
                true
            })
        };
        a.read(&read(7, 0, 30, 101, 900));
        assert!(take(&mut a, &message(7, 0, 10, 1_000)));
        assert!(!a.holding(), "read already: not held");
        // unread, so held; the next one, read already, waits behind it
        assert!(take(&mut a, &message(8, 0, 10, 1_100)));
        assert!(take(&mut a, &message(7, 10, 10, 1_200)));
        assert_eq!(got, [0]);
        assert_eq!(released(&mut a, 1_100 + WINDOW, false), [(0, 0), (10, 101)]);
    }

    #[test]
    fn held_records_are_bounded() {
        let one = message(7, 0, 1, 1_000).len();
        let mut a = Attribution::new(WINDOW, 3 * one);
        for i in 0..5 {
            a.hold(&message(7, i, 1, 1_000 + i)).unwrap();
        }
        // over the bound, the oldest leave unread until it holds again
        assert_eq!(released(&mut a, 2_000, false), [(0, 0), (1, 0)]);
    }

    #[test]
    fn reads_are_merged_forgotten_and_bounded() {
        let mut log = ReadLog::default();
        let t = |tid| Thread { pid: 1, tid, comm: Comm::new(b"x"), uid: 0, cgroup_id: 1 };
        for i in 0..10 {
            log.add(1, i..i + 1, t(5), 100 + i);
        }
        assert_eq!(log.sockets.peek(&1).map(VecDeque::len), Some(1));
        log.add(2, 0..1, t(6), 10);
        log.forget_before(50);
        assert!(log.sockets.peek(&2).is_none());
        for i in 0..(READS_PER_SOCKET as u64 + 10) {
            log.add(3, i..i + 1, t(i as u32 % 2), 400);
        }
        assert_eq!(log.sockets.peek(&3).map(VecDeque::len), Some(READS_PER_SOCKET));
        assert_eq!(log.reader_of(3, &(0..1)), None);
    }

    #[test]
    fn a_flood_of_sockets_within_a_window_is_bounded_and_live_ones_stay() {
        let mut log = ReadLog::default();
        let t = |tid| Thread { pid: 1, tid, comm: Comm::new(b"x"), uid: 0, cgroup_id: 1 };
        let (mut most_sockets, mut most_reads) = (0, 0);
        for socket in 10..1_000_010 {
            // one read each, all within one window: time forgets none
            log.add(socket, 0..64, t(7), 100);
            // socket 1 is read on now and then, by turns
            if socket % 1000 == 0 {
                log.add(1, socket..socket + 1, t(socket as u32 % 2), 100);
                assert!(log.reader_of(1, &(socket..socket + 1)).is_some());
            }
            if socket % 997 == 0 {
                let mut reads = 0;
                log.sockets.retain(|_, r| {
                    reads += r.len();
                    true
                });
                most_reads = most_reads.max(reads);
            }
            most_sockets = most_sockets.max(log.sockets.len());
        }
        assert!(most_sockets <= 2 * READ_SOCKETS, "{most_sockets} sockets");
        assert!(most_reads <= 2 * READS, "{most_reads} reads");
        assert!(log.reader_of(1, &(1_000_000..1_000_001)).is_some(), "the live socket's reads stay");
        assert!(log.reader_of(10, &(0..1)).is_none(), "the first socket's were forgotten");
    }

    #[test]
    fn a_message_read_in_part_when_its_window_ends_names_its_first_reader() {
        let mut a = Attribution::new(WINDOW, 1 << 20);
        a.hold(&message(7, 0, 10, 1_000)).unwrap();
        a.read(&read(7, 0, 4, 101, 2_000));
        assert_eq!(released(&mut a, 3_000, false), []);
        assert_eq!(released(&mut a, 1_000 + WINDOW, false), [(0, 101)]);
    }

    #[test]
    fn records_that_do_not_decode_are_refused() {
        let mut a = Attribution::new(WINDOW, 1 << 20);
        assert!(a.hold(&[0u8; 10]).is_err());
        assert!(!a.holding());
    }
}
