//! sockdump's eBPF objects: the C programs under `bpf/`, compiled at build time,
//! one object per hook family, and the table that says what each holds.
//!
//! `include/sockdump_abi.h` defines the records the programs send to user
//! space and the settings they are loaded with; `sockdump-common` mirrors
//! both and checks its layout against the header. `tests/objects.rs` holds
//! every name in this file to the compiled objects.

#[repr(C, align(8))]
struct Aligned<T: ?Sized>(T);

// The ELF parser reads the objects in place: they must be 8-byte aligned.
macro_rules! object {
    ($file:literal) => {{
        static OBJECT: &$crate::Aligned<[u8]> =
            &$crate::Aligned(*include_bytes!(concat!(env!("OUT_DIR"), "/", $file)));
        &OBJECT.0
    }};
}

/// How a program attaches, and to what.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attach {
    /// BPF trampoline at a kernel function's entry.
    Fentry(&'static str),
    /// BPF trampoline at a kernel function's return.
    Fexit(&'static str),
    /// kprobe on each of these functions.
    Kprobe(&'static [&'static str]),
    /// kretprobe on each of these functions.
    Kretprobe(&'static [&'static str]),
    /// A BTF-typed raw tracepoint (tp_btf).
    TpBtf(&'static str),
    /// A tracepoint through perf, `category/name` as in tracefs.
    Tracepoint(&'static str),
    /// A raw tracepoint (raw_tracepoint), by its name.
    RawTracepoint(&'static str),
}

impl Attach {
    /// The kernel functions or tracepoints it attaches to.
    pub fn targets(&self) -> &[&'static str] {
        match self {
            Attach::Fentry(target)
            | Attach::Fexit(target)
            | Attach::TpBtf(target)
            | Attach::Tracepoint(target)
            | Attach::RawTracepoint(target) => std::slice::from_ref(target),
            Attach::Kprobe(targets) | Attach::Kretprobe(targets) => targets,
        }
    }

    /// The ELF section kind clang puts such a program in (`SEC("...")`).
    pub fn section(&self) -> &'static str {
        match self {
            Attach::Fentry(_) => "fentry",
            Attach::Fexit(_) => "fexit",
            Attach::Kprobe(_) => "kprobe",
            Attach::Kretprobe(_) => "kretprobe",
            Attach::TpBtf(_) => "tp_btf",
            Attach::Tracepoint(_) => "tracepoint",
            Attach::RawTracepoint(_) => "raw_tracepoint",
        }
    }

    /// Whether each firing starts (or is) one send, so that each time the
    /// kernel skips the program a send may be lost unseen: a unix send for
    /// fentry and kprobe, any socket's send for sock_send_length. An exit
    /// program's skip is found later, by the thread's next entry; the
    /// syscall tracepoints fire for every syscall.
    pub fn starts_a_send(&self) -> bool {
        match self {
            Attach::Fentry(_) | Attach::Kprobe(_) => true,
            Attach::TpBtf(target) | Attach::Tracepoint(target) => target.ends_with("sock_send_length"),
            Attach::Fexit(_) | Attach::Kretprobe(_) | Attach::RawTracepoint(_) => false,
        }
    }

    /// Whether a kernel that preempts as `kernel` says may preempt a program
    /// attached here, which then makes the kernel skip the same program for
    /// every other task on that CPU until it resumes (see docs/DESIGN.md).
    pub fn preemptible(&self, kernel: Preemption) -> bool {
        match self {
            // trampolines only disable migration, on every kernel
            Attach::Fentry(_) | Attach::Fexit(_) => kernel.kernel_preempts,
            Attach::TpBtf(_) | Attach::RawTracepoint(_) => {
                kernel.kernel_preempts && kernel.raw_tracepoints_preemptible
            }
            // kprobes and perf's tracepoint handlers keep preemption off
            Attach::Kprobe(_) | Attach::Kretprobe(_) | Attach::Tracepoint(_) => false,
        }
    }
}

/// What the running kernel lets preempt a BPF program.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Preemption {
    /// Kernel code can be preempted: the full, lazy or RT model.
    pub kernel_preempts: bool,
    /// Raw tracepoints (tp_btf) run their programs with only migration
    /// disabled: Linux 7.0 and later.
    pub raw_tracepoints_preemptible: bool,
}

/// One program of an object: its C function name and where it attaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Program {
    pub name: &'static str,
    pub attach: Attach,
    /// It only helps name readers (hooks reads, or learns where a datagram
    /// went): left unattached when readers are not wanted, or where the
    /// kernel lacks its tracepoint.
    pub learns_readers: bool,
}

impl Program {
    /// A program that captures sends.
    const fn sends(name: &'static str, attach: Attach) -> Program {
        Program { name, attach, learns_readers: false }
    }

    /// A program that only helps name readers.
    const fn readers(name: &'static str, attach: Attach) -> Program {
        Program { name, attach, learns_readers: true }
    }
}

/// How to find out cheaply that a kernel lacks a family, before loading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    /// Nothing cheaper than loading it.
    None,
    /// The family needs this file (the kprobe PMU exists with CONFIG_KPROBES).
    Path(&'static str),
    /// Load this program of [`probe_object`] (trampolines may be refused).
    Load(Program),
    /// The kernel's BTF has this type (a tracepoint's `btf_trace_*`
    /// typedef): vendors backport tracepoints, so versions say little.
    BtfTypedef(&'static str),
}

/// A family of kernel hooks that captures sends: one object.
#[derive(Debug)]
pub struct Family {
    /// `--hook NAME`
    pub name: &'static str,
    /// What it hooks, in a line.
    pub description: &'static str,
    /// Its object, for a kernel with or without fetching atomics (5.12+).
    object: fn(bool) -> &'static [u8],
    /// Its programs, in the order they are attached: exits before entries,
    /// so no entry is seen whose exit is not yet hooked.
    pub programs: &'static [Program],
    /// The same capture through hooks the kernel never preempts, for kernels
    /// that may preempt `programs`; None where there are none.
    pub unpreempted: Option<&'static [Program]>,
    pub probe: Probe,
    /// Its programs also hook reads (`maps::READS`), so that each message
    /// can name the process that read it.
    pub sees_readers: bool,
}

impl Family {
    /// The compiled object (ELF with BTF and CO-RE relocations) for a
    /// kernel whose BPF has fetching atomics (5.12+) or not.
    pub fn object(&self, fetching_atomics: bool) -> &'static [u8] {
        (self.object)(fetching_atomics)
    }

    /// The programs to attach on a kernel that preempts as `kernel` says:
    /// `Err` holds `programs` when the kernel may preempt them and there is
    /// nothing else, so that sends can be missed.
    pub fn programs_for(&self, kernel: Preemption) -> Result<&'static [Program], &'static [Program]> {
        if !self.programs.iter().any(|p| p.attach.preemptible(kernel)) {
            return Ok(self.programs);
        }
        self.unpreempted.ok_or(self.programs)
    }

    /// Every program of the object: `programs` and `unpreempted`.
    pub fn all_programs(&self) -> impl Iterator<Item = &'static Program> {
        self.programs.iter().chain(self.unpreempted.unwrap_or_default())
    }
}

const SENDMSG: &[&str] = &["unix_stream_sendmsg", "unix_dgram_sendmsg"];

/// 5.10's unix_seqpacket_recvmsg jumps into unix_dgram_recvmsg, later ones
/// past it: the programs count a seqpacket read once either way.
const RECVMSG: &[&str] = &["unix_stream_recvmsg", "unix_dgram_recvmsg", "unix_seqpacket_recvmsg"];

/// Where a datagram's receiver is told it has data, while the send runs.
const DATA_READY: &[&str] = &["sock_def_readable"];

const FENTRY_PROBE: Program = Program::sends("fentry_probe", Attach::Fentry("unix_stream_sendmsg"));

/// Every hook family, in the order `--hook auto` tries them: cheapest and
/// most complete first.
pub static FAMILIES: &[Family] = &[
    Family {
        name: "fentry",
        description: "fentry/fexit unix_stream_sendmsg, unix_dgram_sendmsg",
        object: |fetching| if fetching { object!("fentry.bpf.o") } else { object!("fentry-5.10.bpf.o") },
        programs: &[
            Program::readers("fexit_unix_stream_recvmsg", Attach::Fexit("unix_stream_recvmsg")),
            Program::readers("fexit_unix_dgram_recvmsg", Attach::Fexit("unix_dgram_recvmsg")),
            Program::readers("fexit_unix_seqpacket_recvmsg", Attach::Fexit("unix_seqpacket_recvmsg")),
            Program::sends("fexit_unix_stream_sendmsg", Attach::Fexit("unix_stream_sendmsg")),
            Program::sends("fexit_unix_dgram_sendmsg", Attach::Fexit("unix_dgram_sendmsg")),
            Program::readers("fentry_sock_def_readable", Attach::Fentry("sock_def_readable")),
            Program::sends("fentry_unix_stream_sendmsg", Attach::Fentry("unix_stream_sendmsg")),
            Program::sends("fentry_unix_dgram_sendmsg", Attach::Fentry("unix_dgram_sendmsg")),
        ],
        unpreempted: None,
        probe: Probe::Load(FENTRY_PROBE),
        sees_readers: true,
    },
    Family {
        name: "socket",
        description: "the socket layer's sock_send_length tracepoint (6.3+)",
        object: |_| object!("socket.bpf.o"),
        programs: &[
            Program::readers("sock_recv_length", Attach::TpBtf("sock_recv_length")),
            Program::readers("sk_data_ready", Attach::TpBtf("sk_data_ready")),
            Program::sends("sock_send_length", Attach::TpBtf("sock_send_length")),
        ],
        unpreempted: Some(&[
            Program::readers("sock_recv_length_perf", Attach::Tracepoint("sock/sock_recv_length")),
            Program::readers("sk_data_ready_perf", Attach::Tracepoint("sock/sk_data_ready")),
            Program::sends("sock_send_length_perf", Attach::Tracepoint("sock/sock_send_length")),
        ]),
        sees_readers: true,
        probe: Probe::BtfTypedef("btf_trace_sock_send_length"),
    },
    Family {
        name: "kprobe",
        description: "kprobe/kretprobe unix_stream_sendmsg, unix_dgram_sendmsg",
        object: |fetching| if fetching { object!("kprobe.bpf.o") } else { object!("kprobe-5.10.bpf.o") },
        programs: &[
            Program::readers("kretprobe_unix_recvmsg", Attach::Kretprobe(RECVMSG)),
            Program::sends("kretprobe_unix_sendmsg", Attach::Kretprobe(SENDMSG)),
            Program::readers("kprobe_unix_recvmsg", Attach::Kprobe(RECVMSG)),
            Program::readers("kprobe_sock_def_readable", Attach::Kprobe(DATA_READY)),
            Program::sends("kprobe_unix_sendmsg", Attach::Kprobe(SENDMSG)),
        ],
        unpreempted: None,
        probe: Probe::Path("/sys/bus/event_source/devices/kprobe/type"),
        sees_readers: true,
    },
    Family {
        name: "tracepoint",
        description: "raw syscall tracepoints: write, writev, sendto, sendmsg, sendmmsg, pwritev2",
        object: |_| object!("tracepoint.bpf.o"),
        programs: &[
            Program::sends("tp_sys_exit", Attach::TpBtf("sys_exit")),
            Program::sends("tp_sys_enter", Attach::TpBtf("sys_enter")),
        ],
        unpreempted: Some(&[
            Program::sends("tp_sys_exit_perf", Attach::Tracepoint("raw_syscalls/sys_exit")),
            Program::sends("tp_sys_enter_perf", Attach::Tracepoint("raw_syscalls/sys_enter")),
        ]),
        probe: Probe::None,
        sees_readers: false,
    },
];

/// Programs every family's object also holds, attached beside its own:
/// exec and fork records (`maps::PROCS`), for each message's command line,
/// and the processes `sockdump -- CMD` follows. A kernel that refuses them
/// leaves command lines to /proc.
pub static PROCESS_PROGRAMS: &[Program] = &[
    Program::sends("proc_fork", Attach::RawTracepoint("sched_process_fork")),
    Program::sends("proc_exec", Attach::RawTracepoint("sched_process_exec")),
];

/// The family named `name`.
pub fn family(name: &str) -> Option<&'static Family> {
    FAMILIES.iter().find(|f| f.name == name)
}

/// The object holding the [`Probe::Load`] programs: tiny, with no maps and
/// no relocations, so asking costs a millisecond rather than a CO-RE pass.
pub fn probe_object() -> &'static [u8] {
    object!("probe.bpf.o")
}

/// Empty programs where each family attaches, that the benchmarks attach to
/// measure what a family's attach points cost alone; not used by sockdump.
pub mod floor {
    use super::Family;

    /// One object with an empty stand-in for every family's programs, under
    /// the same names.
    pub fn object() -> &'static [u8] {
        object!("floor.bpf.o")
    }

    /// `family` with its programs empty: attached like the family itself.
    pub fn of(family: &Family) -> Family {
        Family { object: |_| object(), ..*family }
    }
}

/// Names of the maps every family's object has.
pub mod maps {
    pub const EVENTS: &str = "events";
    pub const SCRATCH: &str = "scratch";
    pub const COUNTERS: &str = "counters";
    /// Each thread's send between its entry and exit programs.
    pub const INFLIGHT: &str = "inflight";
    /// Read records (`struct sockdump_read`), in families that see readers.
    pub const READS: &str = "reads";
    /// Exec and fork records (`struct sockdump_proc`).
    pub const PROCS: &str = "procs";
    /// --container: cgroup id to `enum sockdump_cgroup_verdict`.
    pub const CGROUPS: &str = "cgroups";
    /// sockdump -- CMD: the tgids followed.
    pub const TRACKED: &str = "tracked";
    pub const ALL: &[&str] = &[EVENTS, SCRATCH, COUNTERS, INFLIGHT, PROCS, CGROUPS, TRACKED];
}

/// The global every family's object reads its settings from
/// (`struct sockdump_settings`).
pub const SETTINGS: &str = "settings";
