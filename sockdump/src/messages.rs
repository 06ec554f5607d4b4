//! What sockdump says to the person running it, on stderr, one line each:
//! progress, totals and notes. Errors are formatted by main.

use std::io::{self, Write};

use crate::capture::KernelCounters;

/// One line on stderr. A closed stderr (`2>&1 | head`, a hung-up terminal)
/// is not a reason to fail.
pub fn note(line: impl std::fmt::Display) {
    let _ = writeln!(io::stderr(), "{line}");
}

/// Capture is live; `readers`: each message names the process that read it.
pub fn listening(family: &sockdump_ebpf::Family, readers: bool, snapshot_length: u32) {
    let readers = if readers { "readers named" } else { "readers not seen (SO_PEERCRED's pid shown)" };
    note(format_args!(
        "listening on unix sockets, hook {} ({}), {readers}, snapshot length {snapshot_length} bytes",
        family.name, family.description
    ));
}

/// A forced family whose programs this kernel may preempt.
pub fn preemptible_hook(family: &sockdump_ebpf::Family) {
    let readers = if family.sees_readers { ", and readers are not named" } else { "" };
    note(format_args!(
        "sockdump: warning: this kernel may preempt the {} hook's programs and then skips them for other sends \
         on that CPU: those sends are missed (counted as lost){readers}; --hook auto avoids this",
        family.name
    ));
}

/// A non-root caller without --all-users.
pub fn own_conversations_only(uid: u32) {
    note(format_args!(
        "sockdump: only conversations one side of which runs as uid {uid} (yours); --all-users shows all"
    ));
}

/// The totals at the end, as tcpdump prints them.
pub fn totals(captured: u64, lost: u64) {
    note(format_args!("{captured} packets captured, {lost} lost"));
}

/// With -v: where the lost messages went, how often the kernel skipped
/// sockdump's programs, and (`readers`) reads that went unrecorded.
pub fn kernel_counters(
    counters: &KernelCounters,
    malformed: u64,
    skipped_runs: &[(&str, u64)],
    readers: bool,
) {
    note(format_args!(
        "lost: {} ring buffer full, {} sendmmsg beyond the walked messages, {} in-flight table full, \
         {} returns the hook never saw, {} sends the kernel skipped, {} malformed records",
        counters.lost_ringbuf,
        counters.lost_mmsg,
        counters.lost_inflight,
        counters.lost_no_exit,
        counters.lost_skipped,
        malformed
    ));
    let total: u64 = skipped_runs.iter().map(|(_, n)| n).sum();
    let each: Vec<String> = skipped_runs.iter().map(|(name, n)| format!("{name} {n}")).collect();
    note(format_args!(
        "skipped: the kernel skipped sockdump's programs {total} times (already running or preempted on that CPU): {}",
        each.join(", ")
    ));
    if readers {
        note(format_args!(
            "readers: {} reads not recorded (the reads ring was full): their messages may show SO_PEERCRED's pid",
            counters.reads_unrecorded
        ));
    }
    note(format_args!(
        "processes: {} exec and fork records not written (the procs ring was full): their command lines \
         come from /proc; {} processes of -- CMD not followed (its table was full)",
        counters.procs_unrecorded, counters.untracked
    ));
}
