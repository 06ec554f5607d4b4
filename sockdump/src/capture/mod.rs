//! Live capture: loads the eBPF object of the first hook family the kernel
//! allows (`sockdump_ebpf::FAMILIES`), configures and attaches it, and hands
//! out the ring buffer's records, decoded, as an event source.

mod attach;
mod context;
pub mod kernel;
mod kretprobe;

use std::fmt;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use aya::maps::{HashMap, HashMap as AyaHashMap, MapData, PerCpuArray, RingBuf};
use aya::{Btf, Ebpf, EbpfLoader};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use sockdump_common::{abi, Event, ReadRecord};
use sockdump_ebpf::{maps, Attach, Family, Program, FAMILIES};

use crate::containers::Containers;
use crate::filter::MessageFilter;
use crate::messages::note;
use crate::privileges::{self, StillNeeded};
use crate::processes::Processes;
use crate::pump::{Source, Waited};
use crate::readers::Attribution;
use crate::{messages, system};
use caps::Capability;
use context::{ContainerFilter, ContextSource};
use kretprobe::Kretprobe;

/// `--hook`: one family, or the first of them all that the kernel allows.
#[derive(Debug, Clone, Copy, Default)]
pub enum HookChoice {
    #[default]
    Auto,
    Only(&'static Family),
}

impl PartialEq for HookChoice {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (HookChoice::Auto, HookChoice::Auto) => true,
            // family names are unique (sockdump-ebpf/tests/objects.rs)
            (HookChoice::Only(a), HookChoice::Only(b)) => a.name == b.name,
            _ => false,
        }
    }
}

impl HookChoice {
    pub const AUTO: &'static str = "auto";

    /// Parses a `--hook` value: `auto` or a family's name.
    pub fn parse(name: &str) -> Option<HookChoice> {
        if name == Self::AUTO {
            return Some(HookChoice::Auto);
        }
        sockdump_ebpf::family(name).map(HookChoice::Only)
    }

    /// What `auto` does, in a line.
    pub fn auto_description() -> String {
        let names: Vec<&str> = FAMILIES.iter().map(|f| f.name).collect();
        format!("the first the kernel allows of {}", names.join(", "))
    }

    fn candidates(self) -> &'static [Family] {
        match self {
            HookChoice::Auto => FAMILIES,
            HookChoice::Only(family) => std::slice::from_ref(family),
        }
    }
}

impl fmt::Display for HookChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HookChoice::Auto => f.write_str(Self::AUTO),
            HookChoice::Only(family) => f.write_str(family.name),
        }
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
    /// Only conversations one side of which runs under this (kernel) uid:
    /// a non-root caller without --all-users.
    pub uid: Option<u32>,
    /// Leave out this process's conversations and those of what it started
    /// (a viewer's own traffic).
    pub exclude_pid: Option<u32>,
    /// --container: names or id prefixes; the messages their processes send or read.
    pub containers: Vec<String>,
    /// `sockdump -- CMD`: only what CMD and the processes it starts send or
    /// read (see [`Capture::follow`]).
    pub command: bool,
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
    /// How long a message may wait for its reader (`--reader-wait`); None
    /// leaves readers out, and the receive hooks unattached.
    pub reader_wait: Option<Duration>,
}

/// Records of messages held back for their readers, at most. Messages
/// leave in order, so one that nobody reads holds back those after it
/// for the whole window; at full speed that would be tens of MiB, and
/// with this bound the oldest leave without their readers instead (at
/// 1 KiB, after about 3000 messages), keeping the peak RSS near 30 MiB.
const MAX_HELD_BYTES: usize = 4 << 20;

/// Message records taken from the ring before reads are matched and
/// messages released.
const DRAIN_SLICE_BYTES: usize = 64 << 10;

impl Settings {
    /// The `settings` global of the eBPF objects.
    fn kernel(&self) -> abi::Settings {
        let own_pid_namespace = system::child_pid_namespace();
        let filter = &self.filter;
        let mut kernel = abi::Settings {
            self_tgid: std::process::id(),
            self_pidns_dev: own_pid_namespace.map_or(0, |(dev, _)| dev),
            self_pidns_ino: own_pid_namespace.map_or(0, |(_, ino)| ino),
            filter_pid: filter.pid.unwrap_or(0),
            filter_uid_on: filter.uid.is_some().into(),
            filter_uid: filter.uid.unwrap_or(0),
            exclude_tgid: filter.exclude_pid.unwrap_or(0),
            filter_cgroups: (!filter.containers.is_empty()).into(),
            filter_tracked: filter.command.into(),
            filter_ino: filter.sock_file.map_or(0, |f| f.ino),
            filter_dev: filter.sock_file.map_or(0, |f| f.dev),
            seg_size: self.seg_size,
            segs_per_msg: self.segs_per_msg,
            // batches of an eighth of the ring wake the reader; less waits for its poll timeout
            wakeup_bytes: u64::from(self.ring_bytes / 8),
            ..abi::Settings::ZERO
        };
        if let Some(comm) = &filter.comm {
            let len = comm.len().min(abi::COMM_LEN - 1);
            kernel.filter_comm[..len].copy_from_slice(&comm[..len]);
            kernel.filter_comm_len = len as u32;
        }
        if let Some(prefix) = &filter.sock_prefix {
            let len = prefix.len().min(abi::PATH_MAX);
            kernel.filter_path[..len].copy_from_slice(&prefix[..len]);
            kernel.filter_path_len = len as u32;
        }
        kernel
    }
}

/// Counters the kernel side keeps.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KernelCounters {
    pub lost_ringbuf: u64,
    pub lost_mmsg: u64,
    pub lost_inflight: u64,
    pub lost_no_exit: u64,
    /// Sends whose entry program the kernel skipped (already running on
    /// that CPU, preempted there, or a bpf() map operation was): whether the
    /// filters wanted them, or they were unix sends at all, is unknown.
    pub lost_skipped: u64,
    /// Reads not recorded (the reads ring was full): not lost messages, but
    /// the messages they took may name SO_PEERCRED's pid instead of a reader.
    pub reads_unrecorded: u64,
    /// Exec and fork records not written (the procs ring was full): their
    /// processes' command lines come from /proc, if still there.
    pub procs_unrecorded: u64,
    /// Processes `sockdump -- CMD` stopped following (its table was full).
    pub untracked: u64,
}

impl KernelCounters {
    /// Messages that were sent and matched but never reached user space.
    pub fn lost(&self) -> u64 {
        self.lost_ringbuf + self.lost_mmsg + self.lost_inflight + self.lost_no_exit + self.lost_skipped
    }
}

/// Deletes what the capture made in the kernel that would outlive the
/// process (tracefs events), for an exit that skips destructors.
pub fn remove_kernel_state_before_exit() {
    kretprobe::remove_all_before_exit();
}

/// A running capture: programs attached, records arriving in the ring buffer.
pub struct Capture {
    family: &'static Family,
    /// The attached programs.
    programs: Vec<Program>,
    /// Whether the kernel may preempt them (a forced family, warned about).
    preempted: bool,
    ring: RingBuf<MapData>,
    /// Read records and the messages waiting for them, where the family
    /// sees readers.
    readers: Option<(RingBuf<MapData>, Attribution)>,
    /// --pid and --comm, which the kernel decides only for the sender: the
    /// reader decides the rest here.
    reader_filter: Option<MessageFilter>,
    /// After a stop request: every held message goes.
    stopping: bool,
    /// What user space adds to each message.
    context: ContextSource,
    counters: PerCpuArray<MapData, u64>,
    /// Kretprobes sockdump made itself (see kretprobe.rs); dropping them
    /// detaches them and deletes their events.
    kretprobes: Vec<Kretprobe>,
    /// Owns the programs and their links: dropping it detaches everything.
    ebpf: Ebpf,
}

/// Why one hook family could not be used.
#[derive(Debug)]
pub struct HookFailure {
    pub family: &'static Family,
    pub reason: String,
}

impl Capture {
    /// Starts capturing with the first hook family `choice` allows; `skipped`
    /// hears about each one refused before it.
    pub fn start(settings: &Settings, choice: HookChoice, skipped: impl FnMut(&HookFailure)) -> Result<Self> {
        let Loaded { mut ebpf, kretprobes, family, programs, sees_processes } =
            load_and_attach(settings, choice, skipped)?;
        // The loader and its parsed BTF are gone: hand their memory back
        // before mapping the ring buffer, or both count in the peak RSS.
        system::release_free_memory();
        let preempted = programs.iter().any(|p| p.attach.preemptible(kernel::preemption()));
        let ring = ebpf.take_map(maps::EVENTS).context("eBPF object has no events map")?;
        let counters = ebpf.take_map(maps::COUNTERS).context("eBPF object has no counters map")?;
        let readers = match settings.reader_wait.filter(|_| programs.iter().any(|p| p.learns_readers)) {
            Some(wait) => {
                let reads = ebpf.take_map(maps::READS).context("eBPF object has no reads map")?;
                let window_ns = u64::try_from(wait.as_nanos()).unwrap_or(u64::MAX);
                Some((RingBuf::try_from(reads)?, Attribution::new(window_ns, MAX_HELD_BYTES)))
            }
            None => None,
        };
        let context = context_source(&mut ebpf, &settings.filter, sees_processes)?;
        Ok(Capture {
            context,
            family,
            programs,
            preempted,
            ring: RingBuf::try_from(ring)?,
            reader_filter: readers.as_ref().and(reader_filter(&settings.filter)),
            readers,
            stopping: false,
            counters: PerCpuArray::try_from(counters)?,
            kretprobes,
            ebpf,
        })
    }

    /// Starts naming containers (threads that ask the engine): after
    /// capabilities are dropped, since threads keep those they start with.
    pub fn name_containers(&mut self, verbose: bool) -> Result<()> {
        match Containers::start(None) {
            Ok(containers) => self.context.containers = Some(containers),
            Err(err) if self.context.container_filter.is_some() => {
                return Err(err.context("--container needs cgroup v2"))
            }
            Err(err) if verbose => note(format_args!("sockdump: no container names: {err:#}")),
            Err(_) => {}
        }
        Ok(())
    }

    /// Keeps what `pid` (CMD of `sockdump -- CMD`, not yet exec'd) and the
    /// processes it starts send or read.
    pub fn follow(&mut self, pid: u32) -> Result<()> {
        let tracked = self.context.tracked.as_mut().context("this capture follows no command")?;
        tracked.insert(pid);
        let map = self.ebpf.map_mut(maps::TRACKED).context("eBPF object has no tracked map")?;
        let mut map: AyaHashMap<_, u32, u8> = AyaHashMap::try_from(map)?;
        map.insert(pid, 1, 0).context("cannot follow the command")?;
        Ok(())
    }

    /// The hook family capturing.
    pub fn family(&self) -> &'static Family {
        self.family
    }

    /// Whether each message names the process that read it.
    pub fn names_readers(&self) -> bool {
        self.readers.is_some()
    }

    /// What the live capture still needs: deleting the kretprobe events it
    /// made in root's tracefs, after becoming another user; reading its
    /// counters, where this kernel wants CAP_BPF for any bpf() command.
    pub fn still_needed(&self, other_user: bool) -> StillNeeded {
        StillNeeded {
            dac_override: other_user && !self.kretprobes.is_empty(),
            bpf: privileges::fails_without_bpf_capability(|| self.read_counters().is_ok()),
        }
    }

    /// The kernel counters (with CAP_BPF raised for the moment where it was
    /// kept for this, see [`Capture::still_needed`]).
    pub fn counters(&self) -> Result<KernelCounters> {
        privileges::with_capability(Capability::CAP_BPF, || self.read_counters())
    }

    fn read_counters(&self) -> Result<KernelCounters> {
        let read = |index: u32| -> Result<u64> {
            let per_cpu = self.counters.get(&index, 0).context("cannot read the kernel counters")?;
            Ok(per_cpu.iter().sum())
        };
        Ok(KernelCounters {
            lost_ringbuf: read(abi::counter::LOST_RINGBUF)?,
            lost_mmsg: read(abi::counter::LOST_MMSG)?,
            lost_inflight: read(abi::counter::LOST_INFLIGHT)?,
            lost_no_exit: read(abi::counter::LOST_NO_EXIT)? + self.exits_missed_at_end()?,
            lost_skipped: self.read_skipped(|attach| attach.starts_a_send())?,
            reads_unrecorded: read(abi::counter::LOST_READS)?,
            procs_unrecorded: read(abi::counter::LOST_PROCS)?,
            untracked: read(abi::counter::LOST_TRACKED)?,
        })
    }

    /// Sends whose entry was seen and whose exit was not, yet: the kernel
    /// skipped the exit program if it may preempt it (a thread's next send
    /// counts one as lost_no_exit, but not the last of a thread). Counted
    /// only then: elsewhere such a send is still in progress.
    fn exits_missed_at_end(&self) -> Result<u64> {
        if !self.preempted {
            return Ok(0);
        }
        let map = self.ebpf.map(maps::INFLIGHT).context("eBPF object has no in-flight map")?;
        let inflight: HashMap<_, u64, [u8; INFLIGHT_SIZE]> = HashMap::try_from(map)?;
        let mut pending = 0;
        for entry in inflight.iter() {
            let (_, value) = entry.context("cannot read the in-flight table")?;
            // struct inflight starts with the socket; 0 once the exit ran
            pending += u64::from(value[..8] != [0; 8]);
        }
        Ok(pending)
    }

    /// How often the kernel skipped each attached program (`recursion_misses`,
    /// counted from 5.12): it was already running on that CPU, preempted
    /// there, or a BPF map operation was (for kprobes and perf tracepoints).
    pub fn skipped_runs(&self) -> Result<Vec<(&'static str, u64)>> {
        privileges::with_capability(Capability::CAP_BPF, || {
            self.programs.iter().map(|p| Ok((p.name, self.skips_of(p)?))).collect()
        })
    }

    /// The kernel's skips of the attached programs that `which` picks.
    fn read_skipped(&self, which: impl Fn(&Attach) -> bool) -> Result<u64> {
        self.programs.iter().filter(|p| which(&p.attach)).map(|p| self.skips_of(p)).sum()
    }

    fn skips_of(&self, program: &Program) -> Result<u64> {
        let fd = self
            .ebpf
            .program(program.name)
            .and_then(|p| p.fd().ok())
            .with_context(|| format!("program {} is not loaded", program.name))?;
        recursion_misses(fd.as_fd())
            .with_context(|| format!("cannot read the statistics of program {}", program.name))
    }
}

impl Source for Capture {
    /// Decodes each record waiting in the ring buffer, oldest first. Where
    /// readers are seen, messages wait for theirs (see readers.rs).
    fn drain(
        &mut self,
        handle: &mut dyn FnMut(Result<Event<'_>, sockdump_common::DecodeError>) -> bool,
    ) -> Result<()> {
        let context = &mut self.context;
        context.take_procs();
        let handle = &mut |event: Result<Event<'_>, _>| match event.map(|e| context.add_to(e)) {
            Ok(None) => true,
            Ok(Some(event)) => handle(Ok(event)),
            Err(err) => handle(Err(err)),
        };
        let Some((reads, attribution)) = self.readers.as_mut() else {
            while let Some(record) = self.ring.next() {
                if !handle(Event::parse(&record)) {
                    break;
                }
            }
            return Ok(());
        };
        let filter = &self.reader_filter;
        let mut wanted = |event: Result<Event<'_>, _>| match (&event, filter) {
            (Ok(message), Some(filter)) if !filter.matches(message) => true,
            _ => handle(event),
        };
        // the reads first: most messages taken next are read already, and
        // leave at once. Then a slice of the ring at a time: a full ring
        // copied out whole before any is released held as much again.
        loop {
            let mut taken = 0;
            let mut go_on = take_reads(reads, attribution, &mut wanted);
            while go_on && taken < DRAIN_SLICE_BYTES {
                let Some(record) = self.ring.next() else { break };
                taken += record.len();
                // its reader may have read it since: look before copying it
                if !attribution.holding() && attribution.would_hold(&record) {
                    go_on = take_reads(reads, attribution, &mut wanted);
                }
                go_on = go_on && attribution.take(&record, &mut wanted);
            }
            // after the messages: a read of one held above is in by now
            // windows end by the clock once the ring is drained, else by
            // the records taken so far
            let now = match taken < DRAIN_SLICE_BYTES {
                true => crate::clock::monotonic_ns(),
                false => attribution.latest_ns(),
            };
            go_on = go_on
                && take_reads(reads, attribution, &mut wanted)
                && attribution.release(now, self.stopping, &mut wanted);
            if !go_on || taken < DRAIN_SLICE_BYTES {
                return Ok(());
            }
        }
    }

    /// Waits until records are ready or `timeout` passes; a signal ends the
    /// wait early. `output` (a pipe or fifo) is watched for its reader going away.
    fn wait(&mut self, timeout: Duration, output: Option<BorrowedFd<'_>>) -> Result<Waited> {
        let mut fds = vec![PollFd::new(self.ring.as_fd(), PollFlags::POLLIN)];
        // no events asked: a write end reports only errors and hangups
        fds.extend(output.map(|fd| PollFd::new(fd, PollFlags::empty())));
        let timeout = PollTimeout::try_from(timeout).unwrap_or(PollTimeout::MAX);
        match poll(&mut fds, timeout) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(err) => return Err(err).context("cannot poll the ring buffer"),
        }
        let gone = PollFlags::POLLERR | PollFlags::POLLHUP;
        let output_gone =
            fds.get(1).and_then(|fd| fd.revents()).is_some_and(|events| events.intersects(gone));
        Ok(if output_gone { Waited::OutputGone } else { Waited::Ready })
    }

    fn lost(&self) -> Result<u64> {
        Ok(self.counters()?.lost())
    }

    /// Messages sent before a stop request are still written: records from
    /// other CPUs can arrive a little out of order. Held messages all go
    /// with the last drain.
    fn stop_cutoff(&mut self) -> Option<u64> {
        self.stopping = true;
        Some(crate::clock::monotonic_ns())
    }
}

/// What adds context to messages, and the filters that need it.
fn context_source(ebpf: &mut Ebpf, filter: &Filter, sees_processes: bool) -> Result<ContextSource> {
    let procs = match sees_processes {
        true => Some(RingBuf::try_from(ebpf.take_map(maps::PROCS).context("eBPF object has no procs map")?)?),
        false if filter.command => {
            bail!("this kernel refused the exec and fork programs: `sockdump -- CMD` cannot follow CMD's children")
        }
        false => None,
    };
    let container_filter = match filter.containers.is_empty() {
        true => None,
        false => Some(ContainerFilter {
            wanted: filter.containers.clone(),
            verdicts: AyaHashMap::try_from(
                ebpf.take_map(maps::CGROUPS).context("eBPF object has no cgroups map")?,
            )?,
            written: Default::default(),
        }),
    };
    Ok(ContextSource {
        procs,
        processes: Processes::new(),
        containers: None,
        container_filter,
        tracked: filter.command.then(Default::default),
    })
}

/// Hands every read record waiting in `reads` to `attribution`; false if
/// `handle`, given one that does not decode, asked to stop.
fn take_reads(
    reads: &mut RingBuf<MapData>,
    attribution: &mut Attribution,
    handle: &mut dyn FnMut(Result<Event<'_>, sockdump_common::DecodeError>) -> bool,
) -> bool {
    while let Some(record) = reads.next() {
        match ReadRecord::parse(&record) {
            Ok(read) => attribution.read(&read),
            Err(err) => {
                if !handle(Err(err)) {
                    return false;
                }
            }
        }
    }
    true
}

/// The user-space half of --pid and --comm, where they involve readers.
fn reader_filter(filter: &Filter) -> Option<MessageFilter> {
    let filter = MessageFilter { pid: filter.pid, comm: filter.comm.clone(), ..MessageFilter::default() };
    filter.involves_readers().then_some(filter)
}

/// sizeof(struct inflight) in capture.h, which asserts it.
const INFLIGHT_SIZE: usize = 104;

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

/// A family's programs attached with no capture around them (the
/// benchmarks' floor, `sockdump_ebpf::floor`): dropping it detaches them.
pub struct Attached {
    _kretprobes: Vec<Kretprobe>,
    ebpf: Ebpf,
}

impl Attached {
    /// Loads `family`'s object and attaches its programs as sockdump would.
    pub fn new(family: &Family) -> Result<Attached> {
        let btf = Btf::from_sys_fs()
            .with_context(|| format!("cannot parse the kernel's BTF at {}", system::BTF_PATH))?;
        let mut ebpf =
            EbpfLoader::new().btf(Some(&btf)).load(family.object(kernel::has_fetching_atomics()))?;
        let programs = family.programs_for(kernel::preemption()).unwrap_or_else(|programs| programs);
        let kretprobes =
            attach::attach(&mut ebpf, programs, &btf, false).map_err(|reason| anyhow!(reason))?;
        Ok(Attached { _kretprobes: kretprobes, ebpf })
    }

    /// The kernel's ids of the attached programs.
    pub fn program_ids(&self) -> Vec<u32> {
        self.ebpf.programs().filter_map(|(_, p)| p.info().ok()).map(|info| info.id()).collect()
    }
}

/// Loads and attaches per `choice`; `skipped` hears about every hook
/// family that was tried and refused before the one that worked.
/// Why `--hook auto` passes over a family whose programs this kernel may preempt.
const PREEMPTED: &str =
    "this kernel may preempt its programs, and then skips them for other sends on that CPU";

/// A family's object, loaded and attached.
struct Loaded {
    ebpf: Ebpf,
    kretprobes: Vec<Kretprobe>,
    family: &'static Family,
    programs: Vec<Program>,
    /// The exec and fork programs are attached too.
    sees_processes: bool,
}

/// Attaches the exec and fork programs; where the kernel refuses them,
/// command lines come from /proc only.
fn attach_process_programs(ebpf: &mut Ebpf, btf: &Btf, verbose: bool) -> bool {
    match attach::attach(ebpf, sockdump_ebpf::PROCESS_PROGRAMS, btf, verbose) {
        Ok(_) => true,
        Err(reason) => {
            if verbose {
                note(format_args!(
                    "sockdump: no exec records ({reason}): command lines come from /proc, \
                     and processes that exit at once have none"
                ));
            }
            false
        }
    }
}

fn load_and_attach(
    settings: &Settings,
    choice: HookChoice,
    mut skipped: impl FnMut(&HookFailure),
) -> Result<Loaded> {
    let preemption = kernel::preemption();
    let fetching_atomics = kernel::has_fetching_atomics();
    system::check_btf()?;
    let nr_cpus = aya::util::nr_cpus()
        .map_err(|(path, err)| anyhow!("cannot read the CPU count from {path}: {err}"))?;
    let scratch_entries = u32::try_from(nr_cpus)? * abi::SCRATCH_SLOTS;
    let kernel_settings = settings.kernel();
    // the receive hooks number sends only where they are attached
    let with_readers = abi::Settings { readers: 1, ..kernel_settings };

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
    loader
        .btf(Some(&btf))
        .map_max_entries(maps::EVENTS, settings.ring_bytes)
        .map_max_entries(maps::READS, reads_ring_bytes(settings.ring_bytes))
        .map_max_entries(maps::SCRATCH, scratch_entries);

    let mut failures = Vec::new();
    for family in choice.candidates() {
        // A read the kernel skips would leave its message's reader unknown,
        // or name the reader of a later part: where the kernel may preempt
        // the programs, readers are not named.
        let mut names_readers = family.sees_readers && settings.reader_wait.is_some();
        let programs = match (family.programs_for(preemption), choice) {
            (Ok(programs), _) => programs,
            (Err(programs), HookChoice::Only(_)) => {
                messages::preemptible_hook(family);
                names_readers = false;
                programs
            }
            (Err(_), HookChoice::Auto) => {
                let failure = HookFailure { family, reason: PREEMPTED.into() };
                skipped(&failure);
                failures.push(failure);
                continue;
            }
        };
        let programs: Vec<Program> = programs
            .iter()
            .filter(|p| !p.learns_readers || (names_readers && attach::kernel_has(&p.attach, &btf)))
            .copied()
            .collect();
        let family_settings = match names_readers {
            true => with_readers.as_bytes(),
            false => kernel_settings.as_bytes(),
        };
        // not required to exist: the probe object has none (tests/objects.rs
        // checks that every family's object has it)
        loader.override_global(sockdump_ebpf::SETTINGS, family_settings, false);
        // a forced hook skips the probe: loading it for real says more
        let missing = match choice {
            HookChoice::Auto => attach::missing(family, &mut loader, &btf, settings.verbose),
            HookChoice::Only(_) => None,
        };
        let attached = match missing {
            Some(reason) => Err(reason),
            None => {
                let mut ebpf = loader.load(family.object(fetching_atomics)).with_context(|| {
                    let memlock = if system::maps_count_against_memlock() {
                        " (this kernel counts BPF maps against the locked-memory limit: \
                         run as root, or give sockdump cap_sys_resource)"
                    } else {
                        ""
                    };
                    format!("cannot load sockdump's eBPF object (maps or CO-RE relocations){memlock}")
                })?;
                attach::attach(&mut ebpf, &programs, &btf, settings.verbose)
                    .map(|kretprobes| (ebpf, kretprobes))
            }
        };
        match attached {
            Ok((mut ebpf, kretprobes)) => {
                let sees_processes = attach_process_programs(&mut ebpf, &btf, settings.verbose);
                return Ok(Loaded { ebpf, kretprobes, family, programs, sees_processes });
            }
            Err(reason) => {
                let failure = HookFailure { family, reason };
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
        .map(|f| format!("{}: {}", f.family.name, f.reason.lines().next().unwrap_or_default()))
        .collect();
    match choice {
        HookChoice::Auto => anyhow!("no hook family works on this kernel ({})", reasons.join("; ")),
        HookChoice::Only(family) => anyhow!(
            "--hook {} is not available on this kernel: {}; try --hook auto",
            family.name,
            failures.first().map_or("", |f| f.reason.as_str())
        ),
    }
}

/// The ring buffer size for `segs` messages of `seg_size` bytes, rounded up
/// to a power of two as the kernel requires. The kernel reserves each
/// record in a size class: the message's bytes rounded up to a power of two
/// (twice that for a message of several segments) behind the header.
pub fn ring_bytes(seg_size: u32, segs: u32) -> Result<u32> {
    const MIN: u64 = 64 * 1024;
    const MAX: u64 = 1 << 30;
    let record = |data: u64| data + abi::event::SIZE as u64 + 8;
    let class = u64::from(seg_size).next_power_of_two();
    // a few of the largest records fit whatever --segs-in-buffer says
    let want = (record(class) * u64::from(segs)).max(4 * record(2 * class));
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

/// The reads ring for an events ring of `ring_bytes`: a quarter of it
/// holds a read record (64 bytes with its header) for every message the
/// events ring can (each at least 312 bytes), so that reads are not lost
/// where messages are not; at least 1 MiB.
fn reads_ring_bytes(ring_bytes: u32) -> u32 {
    (ring_bytes / 4).max(1 << 20)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_is_a_power_of_two_holding_the_messages() {
        assert_eq!(ring_bytes(51200, 100).unwrap(), 8 << 20);
        assert_eq!(reads_ring_bytes(8 << 20), 2 << 20);
        assert_eq!(reads_ring_bytes(64 << 10), 1 << 20);
        assert_eq!(ring_bytes(1, 1).unwrap(), 64 * 1024);
        // one vectored message of 64 KiB takes a 128 KiB record
        assert_eq!(ring_bytes(65536, 1).unwrap(), 1 << 20);
        assert!(ring_bytes(65536, 100_000).is_err());
    }

    #[test]
    fn recursion_misses_offset_is_the_kernels() {
        let offset = std::mem::offset_of!(aya_obj::generated::bpf_prog_info, recursion_misses);
        assert_eq!(offset, RECURSION_MISSES_OFFSET);
    }

    #[test]
    fn kernel_settings_carry_the_filter() {
        let settings = Settings {
            filter: Filter {
                pid: Some(7),
                comm: Some(b"a-very-long-thread-name".to_vec()),
                sock_prefix: Some(b"\0abs".to_vec()),
                sock_file: Some(SocketFile { ino: 9, dev: 3 }),
                uid: Some(1000),
                exclude_pid: Some(42),
                containers: vec!["web".into()],
                command: true,
            },
            seg_size: 100,
            segs_per_msg: 3,
            ring_bytes: 1 << 20,
            verbose: false,
            reader_wait: None,
        };
        let k = settings.kernel();
        assert_eq!(k.filter_pid, 7);
        assert_eq!(k.filter_comm_len, 15);
        assert_eq!(&k.filter_comm[..16], b"a-very-long-thr\0");
        assert_eq!(k.filter_path_len, 4);
        assert_eq!(&k.filter_path[..5], b"\0abs\0");
        assert_eq!((k.filter_ino, k.filter_dev), (9, 3));
        assert_eq!((k.filter_uid_on, k.filter_uid, k.exclude_tgid), (1, 1000, 42));
        assert_eq!((k.filter_cgroups, k.filter_tracked), (1, 1));
        assert_eq!((k.seg_size, k.segs_per_msg, k.wakeup_bytes), (100, 3, 1 << 17));
        assert_eq!(k.self_tgid, std::process::id());
        assert_eq!(k.as_bytes().len(), std::mem::size_of::<abi::Settings>());
    }

    #[test]
    fn hook_choices_are_auto_and_the_families() {
        assert_eq!(HookChoice::parse("auto"), Some(HookChoice::Auto));
        for family in FAMILIES {
            assert_eq!(HookChoice::parse(family.name).map(|c| c.to_string()), Some(family.name.to_string()));
        }
        assert_eq!(HookChoice::parse("uprobe"), None);
        assert_eq!(HookChoice::Auto.candidates().len(), FAMILIES.len());
    }
}
