//! sockdump's eBPF object: the C programs under `bpf/`, compiled at build time.
//!
//! `include/sockdump_abi.h` defines the records the programs send to user
//! space; `sockdump-common` decodes them and checks its layout against it.

#[repr(C, align(8))]
struct Aligned<T: ?Sized>(T);

// The ELF parser reads the object in place: it must be 8-byte aligned.
static OBJECT: &Aligned<[u8]> = &Aligned(*include_bytes!(concat!(env!("OUT_DIR"), "/sockdump.bpf.o")));

/// The compiled eBPF object (ELF with BTF and CO-RE relocations).
pub fn object() -> &'static [u8] {
    &OBJECT.0
}

/// Names of the programs in [`object`], by hook family.
pub mod programs {
    pub const FENTRY_STREAM: &str = "fentry_unix_stream_sendmsg";
    pub const FEXIT_STREAM: &str = "fexit_unix_stream_sendmsg";
    pub const FENTRY_DGRAM: &str = "fentry_unix_dgram_sendmsg";
    pub const FEXIT_DGRAM: &str = "fexit_unix_dgram_sendmsg";
    pub const KPROBE: &str = "kprobe_unix_sendmsg";
    pub const KRETPROBE: &str = "kretprobe_unix_sendmsg";
    /// Syscall entry programs, each with the tracepoint it attaches to.
    pub const TRACEPOINT_ENTERS: &[(&str, &str)] = &[
        ("tp_enter_write", "sys_enter_write"),
        ("tp_enter_writev", "sys_enter_writev"),
        ("tp_enter_sendto", "sys_enter_sendto"),
        ("tp_enter_sendmsg", "sys_enter_sendmsg"),
        ("tp_enter_sendmmsg", "sys_enter_sendmmsg"),
    ];
    /// One exit program serves every syscall above.
    pub const TRACEPOINT_EXIT: &str = "tp_exit_send";
    pub const TRACEPOINT_EXITS: &[&str] =
        &["sys_exit_write", "sys_exit_writev", "sys_exit_sendto", "sys_exit_sendmsg", "sys_exit_sendmmsg"];
    /// The kernel functions the fentry and kprobe families hook.
    pub const STREAM_SENDMSG: &str = "unix_stream_sendmsg";
    pub const DGRAM_SENDMSG: &str = "unix_dgram_sendmsg";
}

/// Names of the maps and settings in [`object`].
pub mod maps {
    pub const EVENTS: &str = "events";
    pub const SCRATCH: &str = "scratch";
    pub const COUNTERS: &str = "counters";
}
