//! kretprobes created through tracefs, which is the only way to choose how
//! many returns the kernel tracks at once (`maxactive`). The perf PMU that
//! aya uses keeps the kernel's default: max(10, 2 * CPUs) with
//! CONFIG_PREEMPTION, one per CPU without it (Debian's 5.10), where a third
//! thread blocked in a send makes the kernel skip its return, and the
//! message is lost (counted as SOCKDUMP_LOST_NO_EXIT).

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

/// The most the kernel accepts (KRETPROBE_MAXACTIVE_MAX); each instance is
/// a few dozen bytes of kernel memory.
const MAXACTIVE: u32 = 4096;

/// Event groups are named after the process, so a run can tell its own
/// events from those a killed run left behind.
const GROUP_PREFIX: &str = "sockdump_";

/// The tracefs directory holding `kprobe_events`, if tracefs is mounted.
pub fn tracefs() -> Option<PathBuf> {
    ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"]
        .into_iter()
        .map(PathBuf::from)
        .find(|dir| dir.join("kprobe_events").exists())
}

/// A kretprobe event with a BPF program attached; dropping it detaches the
/// program and deletes the event.
pub struct Kretprobe {
    kprobe_events: PathBuf,
    event: String,
    perf: Option<OwnedFd>,
}

/// Attaches `program` (a loaded kretprobe program) to the return of each
/// of `functions`.
pub fn attach(tracefs: &Path, functions: &[&str], program: BorrowedFd) -> io::Result<Vec<Kretprobe>> {
    remove_stale_events(&tracefs.join("kprobe_events"));
    functions.iter().map(|function| Kretprobe::attach(tracefs, function, program)).collect()
}

impl Kretprobe {
    fn attach(tracefs: &Path, function: &str, program: BorrowedFd) -> io::Result<Self> {
        let kprobe_events = tracefs.join("kprobe_events");
        let event = format!("{GROUP_PREFIX}{}/{function}", std::process::id());
        append(&kprobe_events, &format!("r{MAXACTIVE}:{event} {function}"))?;
        // from here on, dropping `probe` deletes the event
        let mut probe = Kretprobe { kprobe_events, event, perf: None };
        let id_file = tracefs.join("events").join(&probe.event).join("id");
        let id = fs::read_to_string(&id_file)?
            .trim()
            .parse()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("{}: {e}", id_file.display())))?;
        let perf = open_tracepoint_event(id)?;
        // SAFETY: ioctls on a perf event fd we own, with an fd argument
        // (SET_BPF) or none (ENABLE)
        unsafe {
            if libc::ioctl(perf.as_raw_fd(), PERF_EVENT_IOC_SET_BPF, program.as_raw_fd()) < 0
                || libc::ioctl(perf.as_raw_fd(), PERF_EVENT_IOC_ENABLE, 0) < 0
            {
                return Err(io::Error::last_os_error());
            }
        }
        probe.perf = Some(perf);
        Ok(probe)
    }
}

impl Drop for Kretprobe {
    fn drop(&mut self) {
        // the kernel refuses to delete an event still in use
        drop(self.perf.take());
        let _ = append(&self.kprobe_events, &format!("-:{}", self.event));
    }
}

fn append(kprobe_events: &Path, line: &str) -> io::Result<()> {
    let mut file = OpenOptions::new().append(true).open(kprobe_events)?;
    file.write_all(format!("{line}\n").as_bytes())
}

/// Deletes events of sockdump runs that were killed before they could.
fn remove_stale_events(kprobe_events: &Path) {
    let Ok(listing) = fs::read_to_string(kprobe_events) else { return };
    for event in stale_events(&listing, |pid| Path::new(&format!("/proc/{pid}")).exists()) {
        let _ = append(kprobe_events, &format!("-:{event}"));
    }
}

/// The `group/event` names in a kprobe_events listing that belong to
/// sockdump processes no longer alive (or to this one: a pid reused).
fn stale_events(listing: &str, alive: impl Fn(u32) -> bool) -> Vec<&str> {
    let own = std::process::id();
    listing
        .lines()
        .filter_map(|line| line.split_whitespace().next()?.split_once(':').map(|(_, event)| event))
        .filter(|event| {
            let pid = event.strip_prefix(GROUP_PREFIX).and_then(|rest| rest.split_once('/'));
            pid.and_then(|(pid, _)| pid.parse().ok()).is_some_and(|pid: u32| pid == own || !alive(pid))
        })
        .collect()
}

const PERF_TYPE_TRACEPOINT: u32 = 2;
const PERF_ATTR_DISABLED: u64 = 1;
const PERF_FLAG_FD_CLOEXEC: libc::c_ulong = 8;
const PERF_EVENT_IOC_ENABLE: libc::c_ulong = 0x2400; // _IO('$', 0)
const PERF_EVENT_IOC_SET_BPF: libc::c_ulong = 0x4004_2408; // _IOW('$', 8, u32)

/// The first version of struct perf_event_attr (PERF_ATTR_SIZE_VER0),
/// which every kernel accepts.
#[repr(C)]
#[derive(Default)]
struct PerfEventAttr {
    kind: u32,
    size: u32,
    config: u64,
    sample_period: u64,
    sample_type: u64,
    read_format: u64,
    flags: u64,
    wakeup_events: u32,
    bp_type: u32,
    config1: u64,
}

/// A disabled perf event on trace event `id`, for every process; on one
/// CPU, since a BPF program on a trace event runs on all of them.
fn open_tracepoint_event(id: u64) -> io::Result<OwnedFd> {
    let attr = PerfEventAttr {
        kind: PERF_TYPE_TRACEPOINT,
        size: std::mem::size_of::<PerfEventAttr>() as u32,
        config: id,
        sample_period: 1,
        wakeup_events: 1,
        flags: PERF_ATTR_DISABLED,
        ..Default::default()
    };
    // SAFETY: attr is a valid perf_event_attr of the size it states
    let fd = unsafe { libc::syscall(libc::SYS_perf_event_open, &attr, -1, 0, -1, PERF_FLAG_FD_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this fd, and nothing else owns it
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attr_is_version_zero_size() {
        assert_eq!(std::mem::size_of::<PerfEventAttr>(), 64);
    }

    #[test]
    fn stale_events_are_those_of_dead_sockdumps_and_this_pid() {
        let own = std::process::id();
        let listing = format!(
            "r4096:sockdump_11/unix_stream_sendmsg unix_stream_sendmsg\n\
             r4096:sockdump_22/unix_dgram_sendmsg unix_dgram_sendmsg\n\
             r4096:sockdump_{own}/unix_stream_sendmsg unix_stream_sendmsg\n\
             p:kprobes/other do_sys_open\n\
             r:sockdump_x/odd do_sys_open\n"
        );
        let stale = stale_events(&listing, |pid| pid == 22);
        let own_event = format!("sockdump_{own}/unix_stream_sendmsg");
        assert_eq!(stale, vec!["sockdump_11/unix_stream_sendmsg", own_event.as_str()]);
    }
}
