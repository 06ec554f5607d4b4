//! Loads the eBPF programs, attaches the first hook family the kernel allows,
//! and hands out the ring buffer's raw records.

use std::fmt;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use aya::maps::{MapData, PerCpuArray, RingBuf};
use aya::programs::{BtfTracePoint, FEntry, FExit, KProbe, ProgramError};
use aya::{Btf, Ebpf, EbpfLoader};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use sockdump_common::abi;
use sockdump_ebpf::{maps, programs};

use crate::cli::HookChoice;
use crate::kretprobe::{self, Kretprobe};
use crate::system;

/// A family of kernel hooks that can capture sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    Fentry,
    Kprobe,
    Tracepoint,
}

impl Hook {
    /// The order `--hook auto` tries them in: cheapest and most complete first.
    pub const PREFERENCE: [Hook; 3] = [Hook::Fentry, Hook::Kprobe, Hook::Tracepoint];

    pub fn name(self) -> &'static str {
        match self {
            Hook::Fentry => "fentry",
            Hook::Kprobe => "kprobe",
            Hook::Tracepoint => "tracepoint",
        }
    }

    /// What the hook attaches to, for the `listening` line.
    pub fn attach_points(self) -> &'static str {
        match self {
            Hook::Fentry => "fentry/fexit unix_stream_sendmsg, unix_dgram_sendmsg",
            Hook::Kprobe => "kprobe/kretprobe unix_stream_sendmsg, unix_dgram_sendmsg",
            Hook::Tracepoint => "raw syscall tracepoints: write, writev, sendto, sendmsg, sendmmsg, pwritev2",
        }
    }

    /// The eBPF object with this family's programs.
    fn object(self) -> &'static [u8] {
        match self {
            Hook::Fentry => sockdump_ebpf::fentry_object(),
            Hook::Kprobe => sockdump_ebpf::kprobe_object(),
            Hook::Tracepoint => sockdump_ebpf::tracepoint_object(),
        }
    }

    /// Why this kernel certainly lacks the hook, found cheaply: without
    /// loading anything, or (fentry) by loading an empty program.
    fn missing(self, loader: &mut EbpfLoader<'_>, btf: &Btf, verbose: bool) -> Option<String> {
        const KPROBE_PMU: &str = "/sys/bus/event_source/devices/kprobe/type";
        match self {
            Hook::Kprobe if !std::path::Path::new(KPROBE_PMU).exists() => {
                Some("this kernel has no kprobes (no kprobe PMU: CONFIG_KPROBES is off)".into())
            }
            Hook::Fentry => {
                let mut probe = match loader.load(sockdump_ebpf::probe_object()) {
                    Ok(probe) => probe,
                    Err(err) => return Some(format!("cannot load the fentry probe: {err}")),
                };
                let loaded = program_mut(&mut probe, programs::FENTRY_PROBE).and_then(|program| {
                    let p: &mut FEntry = program.try_into().map_err(|e: ProgramError| e.to_string())?;
                    p.load(programs::STREAM_SENDMSG, btf)
                        .map_err(|e| explain_program_error(self, programs::STREAM_SENDMSG, e, verbose))
                });
                loaded.err()
            }
            _ => None,
        }
    }

    fn candidates(choice: HookChoice) -> &'static [Hook] {
        match choice {
            HookChoice::Auto => &Hook::PREFERENCE,
            HookChoice::Fentry => &[Hook::Fentry],
            HookChoice::Kprobe => &[Hook::Kprobe],
            HookChoice::Tracepoint => &[Hook::Tracepoint],
        }
    }
}

impl fmt::Display for Hook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The file an existing `--sock` path names, as the kernel identifies it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SocketFile {
    pub ino: u64,
    /// The kernel's `dev_t` (see [`system::kernel_dev`]).
    pub dev: u32,
}

/// Which sends the kernel side keeps; everything else never leaves the kernel.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    pub pid: Option<u32>,
    /// The thread name, at most 15 bytes.
    pub comm: Option<Vec<u8>>,
    /// `sun_path` prefix bytes; an abstract name starts with a NUL byte.
    pub sock_prefix: Option<Vec<u8>>,
    pub sock_file: Option<SocketFile>,
}

/// Everything the kernel side is configured with.
#[derive(Debug, Clone)]
pub struct Settings {
    pub filter: Filter,
    pub seg_size: u32,
    pub segs_per_msg: u32,
    /// Ring buffer size in bytes: a power of two, a multiple of the page size.
    pub ring_bytes: u32,
    /// Show whole verifier logs instead of a summary.
    pub verbose: bool,
}

/// Counters the kernel side keeps.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KernelCounters {
    pub lost_ringbuf: u64,
    pub lost_mmsg: u64,
    pub lost_inflight: u64,
    pub lost_no_exit: u64,
}

impl KernelCounters {
    /// Messages that were sent and matched but never reached user space.
    pub fn lost(&self) -> u64 {
        self.lost_ringbuf + self.lost_mmsg + self.lost_inflight + self.lost_no_exit
    }
}

/// A running capture: programs attached, records arriving in the ring buffer.
pub struct Capture {
    hook: Hook,
    ring: RingBuf<MapData>,
    counters: PerCpuArray<MapData, u64>,
    /// Kretprobes sockdump made itself (see kretprobe.rs); dropping them
    /// detaches them and deletes their events.
    _kretprobes: Vec<Kretprobe>,
    /// Owns the programs and their links: dropping it detaches everything.
    ebpf: Ebpf,
}

/// The settings' values in the layout the C globals have.
struct Globals {
    self_tgid: u32,
    self_pidns_dev: u64,
    self_pidns_ino: u64,
    filter_pid: u32,
    filter_comm_len: u32,
    filter_comm: [u8; abi::COMM_LEN],
    filter_path_len: u32,
    filter_path: [u8; abi::PATH_MAX],
    filter_ino: u64,
    filter_dev: u32,
}

impl Globals {
    fn new(filter: &Filter) -> Self {
        let own_pid_namespace = system::child_pid_namespace();
        let mut globals = Globals {
            self_tgid: std::process::id(),
            self_pidns_dev: own_pid_namespace.map_or(0, |(dev, _)| dev),
            self_pidns_ino: own_pid_namespace.map_or(0, |(_, ino)| ino),
            filter_pid: filter.pid.unwrap_or(0),
            filter_comm_len: 0,
            filter_comm: [0; abi::COMM_LEN],
            filter_path_len: 0,
            filter_path: [0; abi::PATH_MAX],
            filter_ino: filter.sock_file.map_or(0, |f| f.ino),
            filter_dev: filter.sock_file.map_or(0, |f| f.dev),
        };
        if let Some(comm) = &filter.comm {
            let len = comm.len().min(abi::COMM_LEN - 1);
            globals.filter_comm[..len].copy_from_slice(&comm[..len]);
            globals.filter_comm_len = len as u32;
        }
        if let Some(prefix) = &filter.sock_prefix {
            let len = prefix.len().min(abi::PATH_MAX);
            globals.filter_path[..len].copy_from_slice(&prefix[..len]);
            globals.filter_path_len = len as u32;
        }
        globals
    }
}

/// Why one hook family could not be used.
#[derive(Debug)]
pub struct HookFailure {
    pub hook: Hook,
    pub reason: String,
}

impl Capture {
    /// Starts capturing with the first hook family `choice` allows; `skipped`
    /// hears about each one refused before it.
    pub fn start(settings: &Settings, choice: HookChoice, skipped: impl FnMut(&HookFailure)) -> Result<Self> {
        let (ebpf, kretprobes, hook) = load_and_attach(settings, choice, skipped)?;
        // The loader and its parsed BTF are gone: hand their memory back
        // before mapping the ring buffer, or both count in the peak RSS.
        system::release_free_memory();
        Self::from_ebpf(ebpf, kretprobes, hook)
    }

    fn from_ebpf(mut ebpf: Ebpf, kretprobes: Vec<Kretprobe>, hook: Hook) -> Result<Self> {
        let ring = ebpf.take_map(maps::EVENTS).context("eBPF object has no events map")?;
        let counters = ebpf.take_map(maps::COUNTERS).context("eBPF object has no counters map")?;
        Ok(Capture {
            hook,
            ring: RingBuf::try_from(ring)?,
            counters: PerCpuArray::try_from(counters)?,
            _kretprobes: kretprobes,
            ebpf,
        })
    }

    pub fn hook(&self) -> Hook {
        self.hook
    }

    /// Waits until records are ready or `timeout` passes; a signal ends the
    /// wait early. Returns true when the reader of `output` (a pipe or fifo)
    /// went away.
    pub fn wait(&self, timeout: Duration, output: Option<BorrowedFd<'_>>) -> Result<bool> {
        let mut fds = vec![PollFd::new(self.ring.as_fd(), PollFlags::POLLIN)];
        // no events asked: a write end reports only errors and hangups
        fds.extend(output.map(|fd| PollFd::new(fd, PollFlags::empty())));
        let timeout = PollTimeout::try_from(timeout).unwrap_or(PollTimeout::MAX);
        match poll(&mut fds, timeout) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(err) => return Err(err).context("cannot poll the ring buffer"),
        }
        let gone = PollFlags::POLLERR | PollFlags::POLLHUP;
        Ok(fds.get(1).and_then(|fd| fd.revents()).is_some_and(|events| events.intersects(gone)))
    }

    /// Passes every record waiting in the ring buffer to `handle`, oldest
    /// first, until it returns false or the ring is empty.
    pub fn drain(&mut self, mut handle: impl FnMut(&[u8]) -> bool) {
        while let Some(record) = self.ring.next() {
            if !handle(&record) {
                break;
            }
        }
    }

    pub fn counters(&self) -> Result<KernelCounters> {
        let read = |index: u32| -> Result<u64> {
            let per_cpu = self.counters.get(&index, 0).context("cannot read the kernel counters")?;
            Ok(per_cpu.iter().sum())
        };
        Ok(KernelCounters {
            lost_ringbuf: read(abi::counter::LOST_RINGBUF)?,
            lost_mmsg: read(abi::counter::LOST_MMSG)?,
            lost_inflight: read(abi::counter::LOST_INFLIGHT)?,
            lost_no_exit: read(abi::counter::LOST_NO_EXIT)?,
        })
    }

    /// How often the kernel skipped one of the programs because it was
    /// already running on that CPU (`recursion_misses`; not counted before 5.12).
    pub fn skipped_runs(&self) -> Result<u64> {
        let mut total = 0;
        for (name, program) in self.ebpf.programs() {
            // programs of the object that this kernel did not need
            let Ok(fd) = program.fd() else { continue };
            total += recursion_misses(fd.as_fd())
                .with_context(|| format!("cannot read the statistics of program {name}"))?;
        }
        Ok(total)
    }
}

/// Where struct bpf_prog_info (uapi) keeps recursion_misses, from 5.12.
const RECURSION_MISSES_OFFSET: usize = 208;

/// The program's recursion_misses; 0 where the kernel does not count them.
fn recursion_misses(program: BorrowedFd) -> std::io::Result<u64> {
    const BPF_OBJ_GET_INFO_BY_FD: libc::c_int = 15;
    #[repr(C)]
    struct InfoByFd {
        bpf_fd: u32,
        info_len: u32,
        info: u64,
    }
    let mut info = [0u8; 256];
    let mut attr = InfoByFd {
        bpf_fd: program.as_raw_fd() as u32,
        info_len: info.len() as u32,
        info: info.as_mut_ptr() as u64,
    };
    // SAFETY: the kernel writes at most info_len bytes to `info` and updates
    // attr.info_len to how many it knows
    let rc = unsafe {
        libc::syscall(libc::SYS_bpf, BPF_OBJ_GET_INFO_BY_FD, &mut attr, std::mem::size_of::<InfoByFd>())
    };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let field = RECURSION_MISSES_OFFSET..RECURSION_MISSES_OFFSET + 8;
    if (attr.info_len as usize) < field.end {
        return Ok(0);
    }
    Ok(info[field].try_into().map(u64::from_ne_bytes).unwrap_or(0))
}

/// Loads and attaches per `choice`; `skipped` hears about every hook
/// family that was tried and refused before the one that worked.
fn load_and_attach(
    settings: &Settings,
    choice: HookChoice,
    mut skipped: impl FnMut(&HookFailure),
) -> Result<(Ebpf, Vec<Kretprobe>, Hook)> {
    system::check_btf()?;
    let nr_cpus = aya::util::nr_cpus()
        .map_err(|(path, err)| anyhow!("cannot read the CPU count from {path}: {err}"))?;
    let scratch_entries = u32::try_from(nr_cpus)? * abi::SCRATCH_SLOTS;
    let globals = Globals::new(&settings.filter);
    // Batches of an eighth of the ring wake the reader; less waits for its poll timeout.
    let wakeup_bytes = u64::from(settings.ring_bytes / 8);

    // The loader parses the kernel BTF itself, but program loading needs one
    // too: free the loader's and share ours, so only one (15-20 MB) is alive.
    // Declared first so it outlives the loader that borrows it, assigned
    // only after the loader's own copy is freed.
    #[allow(clippy::needless_late_init)]
    let btf: Btf;
    let mut loader = EbpfLoader::new();
    loader.btf(None);
    btf = Btf::from_sys_fs()
        .with_context(|| format!("cannot parse the kernel's BTF at {}", system::BTF_PATH))?;
    // The globals need not exist: the fentry probe object has none.
    loader
        .btf(Some(&btf))
        .map_max_entries(maps::EVENTS, settings.ring_bytes)
        .map_max_entries(maps::SCRATCH, scratch_entries)
        .override_global("self_tgid", &globals.self_tgid, false)
        .override_global("self_pidns_dev", &globals.self_pidns_dev, false)
        .override_global("self_pidns_ino", &globals.self_pidns_ino, false)
        .override_global("filter_pid", &globals.filter_pid, false)
        .override_global("filter_comm_len", &globals.filter_comm_len, false)
        .override_global("filter_comm", &globals.filter_comm, false)
        .override_global("filter_path_len", &globals.filter_path_len, false)
        .override_global("filter_path", &globals.filter_path, false)
        .override_global("filter_ino", &globals.filter_ino, false)
        .override_global("filter_dev", &globals.filter_dev, false)
        .override_global("seg_size", &settings.seg_size, false)
        .override_global("segs_per_msg", &settings.segs_per_msg, false)
        .override_global("wakeup_bytes", &wakeup_bytes, false);

    let mut failures = Vec::new();
    for &hook in Hook::candidates(choice) {
        // a forced hook skips the probe: loading it for real says more
        let missing =
            if choice == HookChoice::Auto { hook.missing(&mut loader, &btf, settings.verbose) } else { None };
        let attached = match missing {
            Some(reason) => Err(reason),
            None => {
                let mut ebpf = loader.load(hook.object()).with_context(|| {
                    let memlock = if system::maps_count_against_memlock() {
                        " (this kernel counts BPF maps against the locked-memory limit: \
                         run as root, or give sockdump cap_sys_resource)"
                    } else {
                        ""
                    };
                    format!("cannot load sockdump's eBPF object (maps or CO-RE relocations){memlock}")
                })?;
                attach(&mut ebpf, hook, &btf, settings.verbose).map(|kretprobes| (ebpf, kretprobes))
            }
        };
        match attached {
            Ok((ebpf, kretprobes)) => return Ok((ebpf, kretprobes, hook)),
            Err(reason) => {
                let failure = HookFailure { hook, reason };
                skipped(&failure);
                failures.push(failure);
            }
        }
    }
    Err(no_hook_error(choice, &failures))
}

fn no_hook_error(choice: HookChoice, failures: &[HookFailure]) -> anyhow::Error {
    // the first line of each: with -v a reason carries a whole verifier log, already shown
    let reasons: Vec<String> = failures
        .iter()
        .map(|f| format!("{}: {}", f.hook, f.reason.lines().next().unwrap_or_default()))
        .collect();
    match choice {
        HookChoice::Auto => anyhow!("no hook family works on this kernel ({})", reasons.join("; ")),
        _ => anyhow!(
            "--hook {} is not available on this kernel: {}; try --hook auto",
            failures.first().map_or("?", |f| f.hook.name()),
            failures.first().map_or("", |f| f.reason.as_str())
        ),
    }
}

/// Loads and attaches one hook family's programs, returning the kretprobes
/// that sockdump owns itself; the error says why the kernel refused, in a line.
fn attach(ebpf: &mut Ebpf, hook: Hook, btf: &Btf, verbose: bool) -> Result<Vec<Kretprobe>, String> {
    let explain = |what: &str, err: ProgramError| explain_program_error(hook, what, err, verbose);
    match hook {
        Hook::Fentry => {
            // exits first: an entry seen without its exit would leave a stale slot
            for (name, function, exit) in [
                (programs::FEXIT_STREAM, programs::STREAM_SENDMSG, true),
                (programs::FEXIT_DGRAM, programs::DGRAM_SENDMSG, true),
                (programs::FENTRY_STREAM, programs::STREAM_SENDMSG, false),
                (programs::FENTRY_DGRAM, programs::DGRAM_SENDMSG, false),
            ] {
                let program = program_mut(ebpf, name)?;
                let attached = if exit {
                    let p: &mut FExit = program.try_into().map_err(|e: ProgramError| e.to_string())?;
                    p.load(function, btf).and_then(|()| p.attach().map(drop))
                } else {
                    let p: &mut FEntry = program.try_into().map_err(|e: ProgramError| e.to_string())?;
                    p.load(function, btf).and_then(|()| p.attach().map(drop))
                };
                attached.map_err(|e| explain(function, e))?;
            }
        }
        Hook::Kprobe => {
            let functions = [programs::STREAM_SENDMSG, programs::DGRAM_SENDMSG];
            let mut kretprobes = Vec::new();
            for name in [programs::KRETPROBE, programs::KPROBE] {
                let p: &mut KProbe =
                    program_mut(ebpf, name)?.try_into().map_err(|e: ProgramError| e.to_string())?;
                p.load().map_err(|e| explain(name, e))?;
                // Without (writable) tracefs, the kernel's default number of
                // tracked returns applies.
                if let (programs::KRETPROBE, Some(tracefs)) = (name, kretprobe::tracefs()) {
                    let program = p.fd().map_err(|e| e.to_string())?.as_fd();
                    match kretprobe::attach(&tracefs, &functions, program) {
                        Ok(attached) => {
                            kretprobes = attached;
                            continue;
                        }
                        Err(err) if verbose => crate::run::note(format_args!(
                            "sockdump: cannot create kretprobes in {} ({err}): the kernel's default \
                             number of tracked sends in progress applies",
                            tracefs.display()
                        )),
                        Err(_) => {}
                    }
                }
                for function in functions {
                    p.attach(function, 0).map_err(|e| explain(function, e))?;
                }
            }
            return Ok(kretprobes);
        }
        Hook::Tracepoint => {
            for (name, tracepoint) in [programs::TRACEPOINT_EXIT, programs::TRACEPOINT_ENTER] {
                let p: &mut BtfTracePoint =
                    program_mut(ebpf, name)?.try_into().map_err(|e: ProgramError| e.to_string())?;
                p.load(tracepoint, btf).map_err(|e| explain(tracepoint, e))?;
                p.attach().map_err(|e| explain(tracepoint, e))?;
            }
        }
    }
    Ok(Vec::new())
}

fn program_mut<'a>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut aya::programs::Program, String> {
    ebpf.program_mut(name).ok_or_else(|| format!("eBPF object has no program {name}"))
}

/// The kernel's internal "operation not supported" (not in libc), which BPF
/// returns for trampolines on unsupported functions.
const ENOTSUPP: i32 = 524;

/// aya turns an instruction whose CO-RE relocation failed into a call to
/// helper 0xbad2310, which the verifier reports as `unknown#195896080`.
const CORE_POISON: &str = "195896080";

/// One line for a refused program; the verifier's last words, or all of
/// them when verbose.
fn explain_program_error(hook: Hook, what: &str, err: ProgramError, verbose: bool) -> String {
    match err {
        ProgramError::LoadError { io_error, verifier_log } => {
            let log = verifier_log.to_string();
            let rejected = !log.trim().is_empty();
            let hint = match (hook, io_error.raw_os_error()) {
                _ if log.contains(CORE_POISON) => {
                    " (a CO-RE relocation failed: a kernel field sockdump reads does not exist on this kernel)"
                }
                (Hook::Fentry, Some(libc::EPERM)) => {
                    " (the kernel refuses BPF trampolines here, e.g. ftrace is locked down)"
                }
                (_, Some(libc::EPERM)) => " (missing privileges or a kernel lockdown)",
                (Hook::Fentry, Some(ENOTSUPP | libc::EOPNOTSUPP | libc::EINVAL)) if !rejected => {
                    " (this kernel has no BPF trampolines for this architecture or function)"
                }
                _ => "",
            };
            if verbose && rejected {
                format!("loading {what} failed: {io_error}{hint}; verifier log:\n{log}")
            } else {
                format!("loading {what} failed: {io_error}{hint}{}", summarize_verifier_log(&log))
            }
        }
        ProgramError::SyscallError(err) => {
            let hint = match (hook, err.io_error.raw_os_error()) {
                (Hook::Kprobe, Some(libc::ENOENT)) => {
                    " (no kprobe support: CONFIG_KPROBES is off, or the function is not probeable)"
                }
                (Hook::Tracepoint, Some(libc::ENOENT)) => {
                    " (no syscall tracepoints: CONFIG_FTRACE_SYSCALLS is off)"
                }
                _ => "",
            };
            format!("attaching to {what} failed: {} returned {}{hint}", err.call, err.io_error)
        }
        other => {
            let mut text = format!("{what}: {other}");
            let mut source = std::error::Error::source(&other);
            while let Some(cause) = source {
                text += &format!(": {cause}");
                source = cause.source();
            }
            let hint = match hook {
                Hook::Kprobe if text.contains("kprobe") || text.contains("No such file") => {
                    " (no kprobe support: CONFIG_KPROBES is off)"
                }
                _ => "",
            };
            text + hint
        }
    }
}

/// The verifier's verdict is in the last lines of its log, before the
/// statistics it prints at the end.
fn summarize_verifier_log(log: &str) -> String {
    let is_statistics = |line: &str| {
        ["verification time", "stack depth", "processed ", "max_states_per_insn"]
            .iter()
            .any(|stat| line.starts_with(stat))
    };
    let tail: Vec<&str> =
        log.lines().filter(|l| !l.trim().is_empty() && !is_statistics(l)).rev().take(2).collect();
    if tail.is_empty() {
        return String::new();
    }
    let tail: Vec<&str> = tail.into_iter().rev().collect();
    format!("; verifier: {} (-v shows the whole log)", tail.join(" | "))
}

/// The ring buffer size for `segs` messages of `seg_size` bytes plus headers,
/// rounded up to a power of two as the kernel requires.
pub fn ring_bytes(seg_size: u32, segs: u32) -> Result<u32> {
    const MIN: u64 = 64 * 1024;
    const MAX: u64 = 1 << 30;
    let want = (u64::from(seg_size) + abi::event::SIZE as u64 + 8) * u64::from(segs);
    let bytes = want.max(MIN).next_power_of_two();
    if bytes > MAX {
        anyhow::bail!(
            "--segs-in-buffer {segs} with --seg-size {seg_size} needs a {} MiB ring buffer; the most is {} MiB",
            bytes >> 20,
            MAX >> 20
        );
    }
    Ok(bytes as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_is_a_power_of_two_holding_the_messages() {
        assert_eq!(ring_bytes(51200, 100).unwrap(), 8 << 20);
        assert_eq!(ring_bytes(1, 1).unwrap(), 64 * 1024);
        assert!(ring_bytes(65536, 100_000).is_err());
    }

    #[test]
    fn verifier_summary_keeps_the_last_lines() {
        let log = "0: (b7) r0 = 0\n1: (95) exit\n\nR1 invalid mem access 'scalar'\n\
                   verification time 4905 usec\nstack depth 208\nprocessed 2 insns (limit 1000000)\n";
        assert_eq!(
            summarize_verifier_log(log),
            "; verifier: 1: (95) exit | R1 invalid mem access 'scalar' (-v shows the whole log)"
        );
        assert_eq!(summarize_verifier_log(""), "");
    }

    #[test]
    fn recursion_misses_offset_is_the_kernels() {
        let offset = std::mem::offset_of!(aya_obj::generated::bpf_prog_info, recursion_misses);
        assert_eq!(offset, RECURSION_MISSES_OFFSET);
    }

    #[test]
    fn globals_carry_the_filter() {
        let filter = Filter {
            pid: Some(7),
            comm: Some(b"a-very-long-thread-name".to_vec()),
            sock_prefix: Some(b"\0abs".to_vec()),
            sock_file: Some(SocketFile { ino: 9, dev: 3 }),
        };
        let g = Globals::new(&filter);
        assert_eq!(g.filter_pid, 7);
        assert_eq!(g.filter_comm_len, 15);
        assert_eq!(&g.filter_comm[..16], b"a-very-long-thr\0");
        assert_eq!(g.filter_path_len, 4);
        assert_eq!(&g.filter_path[..5], b"\0abs\0");
        assert_eq!((g.filter_ino, g.filter_dev), (9, 3));
        assert_eq!(g.self_tgid, std::process::id());
    }
}
