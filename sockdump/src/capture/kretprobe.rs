//! kretprobes created through tracefs, which is the only way to choose how
//! many returns the kernel tracks at once (`maxactive`). The perf PMU that
//! aya uses keeps the kernel's default: max(10, 2 * CPUs) with
//! CONFIG_PREEMPTION, one per CPU without it (Debian's 5.10), where a third
//! thread blocked in a send makes the kernel skip its return, and the
//! message is lost (counted as SOCKDUMP_LOST_NO_EXIT).

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use caps::Capability;

use crate::privileges::with_capability;

/// The most the kernel accepts (KRETPROBE_MAXACTIVE_MAX); each instance is
/// a few dozen bytes of kernel memory.
const MAXACTIVE: u32 = 4096;

/// Event groups are named after the process, `sockdump_<pid namespace
/// inode>_<pid>`: unique across containers, and a run can tell the events
/// a killed run of its own namespace left behind.
const GROUP_PREFIX: &str = "sockdump_";

/// This process's event group.
fn own_group() -> String {
    format!("{GROUP_PREFIX}{}_{}", own_pid_namespace(), std::process::id())
}

fn own_pid_namespace() -> u64 {
    fs::metadata("/proc/self/ns/pid").map_or(0, |ns| ns.ino())
}

/// Events alive now, for [`remove_all_before_exit`]: (kprobe_events, event,
/// perf event descriptor).
static LIVE: Mutex<Vec<(PathBuf, String, RawFd)>> = Mutex::new(Vec::new());

/// Deletes every event of this process at once, for an exit that skips
/// destructors (a second Ctrl-C): the kernel refuses to delete an event
/// still in use, so its perf event is closed first.
pub fn remove_all_before_exit() {
    let Ok(live) = LIVE.lock() else { return };
    for (kprobe_events, event, perf) in live.iter() {
        // SAFETY: the process exits right after; nothing uses the fd again
        unsafe { libc::close(*perf) };
        let _ = delete_event(kprobe_events, event);
    }
}

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
        let event = format!("{}/{function}", own_group());
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
        if let Ok(mut live) = LIVE.lock() {
            live.push((probe.kprobe_events.clone(), probe.event.clone(), perf.as_raw_fd()));
        }
        probe.perf = Some(perf);
        Ok(probe)
    }
}

impl Drop for Kretprobe {
    fn drop(&mut self) {
        if let Ok(mut live) = LIVE.lock() {
            live.retain(|(_, event, _)| *event != self.event);
        }
        // the kernel refuses to delete an event still in use
        drop(self.perf.take());
        let _ = delete_event(&self.kprobe_events, &self.event);
    }
}

/// tracefs is root's: after `-Z USER` deleting needs CAP_DAC_OVERRIDE,
/// which stays permitted for this alone (see privileges.rs).
fn delete_event(kprobe_events: &Path, event: &str) -> io::Result<()> {
    with_capability(Capability::CAP_DAC_OVERRIDE, || append(kprobe_events, &format!("-:{event}")))
}

fn append(kprobe_events: &Path, line: &str) -> io::Result<()> {
    let mut file = OpenOptions::new().append(true).open(kprobe_events)?;
    file.write_all(format!("{line}\n").as_bytes())
}

/// Deletes events of sockdump runs that were killed before they could.
fn remove_stale_events(kprobe_events: &Path) {
    let Ok(listing) = fs::read_to_string(kprobe_events) else { return };
    let namespace = own_pid_namespace();
    for event in stale_events(&listing, namespace, |pid| Path::new(&format!("/proc/{pid}")).exists()) {
        let _ = append(kprobe_events, &format!("-:{event}"));
    }
}

/// The `group/event` names in a kprobe_events listing that belong to
/// sockdump processes of pid namespace `namespace` no longer alive (or to
/// this one: a pid reused). Other namespaces' pids cannot be checked from
/// here: their events are left alone.
fn stale_events(listing: &str, namespace: u64, alive: impl Fn(u32) -> bool) -> Vec<&str> {
    let own = std::process::id();
    listing
        .lines()
        .filter_map(|line| line.split_whitespace().next()?.split_once(':').map(|(_, event)| event))
        .filter(|event| {
            let group = event.split_once('/').and_then(|(group, _)| group.strip_prefix(GROUP_PREFIX));
            let owner = group
                .and_then(|g| g.split_once('_'))
                .and_then(|(ns, pid)| Some((ns.parse().ok()?, pid.parse().ok()?)));
            owner.is_some_and(|(ns, pid): (u64, u32)| ns == namespace && (pid == own || !alive(pid)))
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
    fn stale_events_are_those_of_dead_sockdumps_and_this_pid_in_this_namespace() {
        let own = std::process::id();
        let listing = format!(
            "r4096:sockdump_7_11/unix_stream_sendmsg unix_stream_sendmsg\n\
             r4096:sockdump_7_22/unix_dgram_sendmsg unix_dgram_sendmsg\n\
             r4096:sockdump_7_{own}/unix_stream_sendmsg unix_stream_sendmsg\n\
             r4096:sockdump_8_11/unix_stream_sendmsg unix_stream_sendmsg\n\
             p:kprobes/other do_sys_open\n\
             r:sockdump_x/odd do_sys_open\n\
             r:sockdump_11/old do_sys_open\n"
        );
        let stale = stale_events(&listing, 7, |pid| pid == 22);
        let own_event = format!("sockdump_7_{own}/unix_stream_sendmsg");
        assert_eq!(stale, vec!["sockdump_7_11/unix_stream_sendmsg", own_event.as_str()]);
    }

    #[test]
    fn groups_differ_between_pid_namespaces() {
        let group = own_group();
        let ns = own_pid_namespace();
        assert!(ns != 0, "the pid namespace inode is readable");
        assert_eq!(group, format!("sockdump_{ns}_{}", std::process::id()));
    }

    #[test]
    fn an_exit_skipping_destructors_still_deletes_live_events() {
        let dir = tempfile::tempdir().unwrap();
        let kprobe_events = dir.path().join("kprobe_events");
        fs::write(&kprobe_events, "").unwrap();
        let (perf, _other_end) = std::os::unix::net::UnixStream::pair().unwrap();
        let perf = OwnedFd::from(perf);
        LIVE.lock().unwrap().push((kprobe_events.clone(), "sockdump_1_2/f".into(), perf.as_raw_fd()));
        remove_all_before_exit();
        // the descriptor was closed: the fd number is no longer valid
        assert_eq!(unsafe { libc::fcntl(perf.as_raw_fd(), libc::F_GETFD) }, -1);
        std::mem::forget(perf);
        assert_eq!(fs::read_to_string(&kprobe_events).unwrap(), "-:sockdump_1_2/f\n");
        LIVE.lock().unwrap().clear();
    }
}
