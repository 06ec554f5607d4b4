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

/// `HH:MM:SS.uuuuuu` for nanoseconds since the epoch.
pub fn time_of_day(epoch_ns: i128, zone: Zone) -> impl std::fmt::Display {
    let secs = epoch_ns.div_euclid(1_000_000_000) as i64;
    let nanos = epoch_ns.rem_euclid(1_000_000_000) as u32;
    let utc = DateTime::<Utc>::from_timestamp(secs, nanos).unwrap_or_default();
    let naive = match zone {
        Zone::Local => utc.with_timezone(&Local).naive_local(),
        Zone::Utc => utc.naive_utc(),
    };
    naive.format("%H:%M:%S%.6f")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_microseconds() {
        // 2026-11-25 11:55:44.123456789 UTC
        let ns = 1_795_607_744_123_456_789i128;
        assert_eq!(time_of_day(ns, Zone::Utc).to_string(), "11:55:44.123456");
    }

    #[test]
    fn offset_maps_monotonic_to_now() {
        let clock = WallClock::now();
        let mono = nanos(ClockId::CLOCK_MONOTONIC) as u64;
        let real = nanos(ClockId::CLOCK_REALTIME);
        assert!((clock.epoch_ns(mono) - real).abs() < 50_000_000);
    }
}
