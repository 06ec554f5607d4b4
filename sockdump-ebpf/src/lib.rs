//! sockdump's eBPF objects: the C programs under `bpf/`, compiled at build time,
//! one object per hook family.
//!
//! `include/sockdump_abi.h` defines the records the programs send to user
//! space; `sockdump-common` decodes them and checks its layout against it.

#[repr(C, align(8))]
struct Aligned<T: ?Sized>(T);

// The ELF parser reads the objects in place: they must be 8-byte aligned.
macro_rules! object {
    ($file:literal) => {{
        static OBJECT: &Aligned<[u8]> = &Aligned(*include_bytes!(concat!(env!("OUT_DIR"), "/", $file)));
        &OBJECT.0
    }};
}

/// fentry/fexit programs (ELF with BTF and CO-RE relocations).
pub fn fentry_object() -> &'static [u8] {
    object!("fentry.bpf.o")
}

/// kprobe/kretprobe programs.
pub fn kprobe_object() -> &'static [u8] {
    object!("kprobe.bpf.o")
}

/// Raw syscall tracepoint (tp_btf) programs.
pub fn tracepoint_object() -> &'static [u8] {
    object!("tracepoint.bpf.o")
}

/// Empty programs: the fentry probe (whether the kernel loads fentry at all,
/// asked without relocating the fentry object) and the syscall tracepoint
/// floor the benchmarks measure.
pub fn probe_object() -> &'static [u8] {
    object!("probe.bpf.o")
}

/// Names of the programs in the objects, by hook family.
pub mod programs {
    pub const FENTRY_STREAM: &str = "fentry_unix_stream_sendmsg";
    pub const FEXIT_STREAM: &str = "fexit_unix_stream_sendmsg";
    pub const FENTRY_DGRAM: &str = "fentry_unix_dgram_sendmsg";
    pub const FEXIT_DGRAM: &str = "fexit_unix_dgram_sendmsg";
    pub const FENTRY_PROBE: &str = "fentry_probe";
    /// Empty raw tracepoint programs on sys_enter and sys_exit (benchmarks only).
    pub const FLOOR: [(&str, &str); 2] = [("floor_enter", "sys_enter"), ("floor_exit", "sys_exit")];
    pub const KPROBE: &str = "kprobe_unix_sendmsg";
    pub const KRETPROBE: &str = "kretprobe_unix_sendmsg";
    /// Raw tracepoint programs and the tracepoints they attach to.
    pub const TRACEPOINT_ENTER: (&str, &str) = ("tp_sys_enter", "sys_enter");
    pub const TRACEPOINT_EXIT: (&str, &str) = ("tp_sys_exit", "sys_exit");
    /// The kernel functions the fentry and kprobe families hook.
    pub const STREAM_SENDMSG: &str = "unix_stream_sendmsg";
    pub const DGRAM_SENDMSG: &str = "unix_dgram_sendmsg";
}

/// Names of the maps every object has.
pub mod maps {
    pub const EVENTS: &str = "events";
    pub const SCRATCH: &str = "scratch";
    pub const COUNTERS: &str = "counters";
}
