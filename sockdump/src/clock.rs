//! Kernel timestamps (CLOCK_MONOTONIC) turned into wall-clock time.

use chrono::{DateTime, Local, Utc};
use nix::time::{clock_gettime, ClockId};

/// Maps CLOCK_MONOTONIC nanoseconds to nanoseconds since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WallClock {
    /// CLOCK_REALTIME minus CLOCK_MONOTONIC when capture started.
    offset_ns: i128,
}

fn nanos(clock: ClockId) -> i128 {
    // clock_gettime cannot fail for these clocks on Linux.
    clock_gettime(clock).map_or(0, |t| i128::from(t.tv_sec()) * 1_000_000_000 + i128::from(t.tv_nsec()))
}

/// CLOCK_MONOTONIC now, the clock of kernel timestamps.
pub fn monotonic_ns() -> u64 {
    nanos(ClockId::CLOCK_MONOTONIC) as u64
}

impl WallClock {
    pub fn now() -> Self {
        // Read monotonic on both sides of realtime: the offset is exact to
        // within the few hundred nanoseconds between the calls.
        let before = nanos(ClockId::CLOCK_MONOTONIC);
        let real = nanos(ClockId::CLOCK_REALTIME);
        let after = nanos(ClockId::CLOCK_MONOTONIC);
        WallClock { offset_ns: real - (before + after) / 2 }
    }

    /// A clock with a given offset, for tests and recorded captures.
    pub fn with_offset(offset_ns: i128) -> Self {
        WallClock { offset_ns }
    }

    /// Nanoseconds since the Unix epoch for a kernel timestamp.
    pub fn epoch_ns(&self, monotonic_ns: u64) -> i128 {
        i128::from(monotonic_ns) + self.offset_ns
    }
}

/// Where wall-clock times are shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Zone {
    /// The machine's local time (TZ, /etc/localtime), as tcpdump prints.
    Local,
    Utc,
}

/// Writes `HH:MM:SS.uuuuuu`, converting to the zone once per second: the
/// time zone lookup is far slower than the rest of a message's header.
#[derive(Debug, Clone)]
pub struct TimeOfDay {
    zone: Zone,
    second: Option<i64>,
    hms: [u8; 8],
}

impl TimeOfDay {
    pub fn new(zone: Zone) -> Self {
        TimeOfDay { zone, second: None, hms: *b"00:00:00" }
    }

    pub fn push(&mut self, out: &mut Vec<u8>, epoch_ns: i128) {
        let second = epoch_ns.div_euclid(1_000_000_000) as i64;
        if self.second != Some(second) {
            let utc = DateTime::<Utc>::from_timestamp(second, 0).unwrap_or_default();
            let hms = match self.zone {
                Zone::Local => utc.with_timezone(&Local).format("%H:%M:%S").to_string(),
                Zone::Utc => utc.format("%H:%M:%S").to_string(),
            };
            self.hms.copy_from_slice(&hms.as_bytes()[..8]);
            self.second = Some(second);
        }
        out.extend_from_slice(&self.hms);
        let micros = epoch_ns.rem_euclid(1_000_000_000) / 1000;
        out.push(b'.');
        for divisor in [100_000, 10_000, 1000, 100, 10, 1] {
            out.push(b'0' + (micros / divisor % 10) as u8);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_microseconds() {
        // 2026-11-25 11:55:44.123456789 UTC, then the next second and the one before
        let mut time = TimeOfDay::new(Zone::Utc);
        let mut out = Vec::new();
        for ns in [1_795_607_744_123_456_789i128, 1_795_607_745_000_000_999, 1_795_607_743_999_999_000] {
            time.push(&mut out, ns);
            out.push(b' ');
        }
        assert_eq!(out, b"11:55:44.123456 11:55:45.000000 11:55:43.999999 ");
    }

    #[test]
    fn offset_maps_monotonic_to_now() {
        let clock = WallClock::now();
        let mono = nanos(ClockId::CLOCK_MONOTONIC) as u64;
        let real = nanos(ClockId::CLOCK_REALTIME);
        assert!((clock.epoch_ns(mono) - real).abs() < 50_000_000);
    }
}
