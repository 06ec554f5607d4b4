//! Mirror of `sockdump-ebpf/include/sockdump_abi.h`.
//!
//! Hand-written, and held to the header by `tests/abi.rs`, which compiles the
//! header with the host C compiler and compares every offset and constant.

/// `SOCKDUMP_DATA_MAX`: the largest `--seg-size`.
pub const DATA_MAX: u32 = 1 << 16;
/// `SOCKDUMP_SEGS_MAX`: the largest `--segs-per-msg`.
pub const SEGS_MAX: u32 = 64;
/// `SOCKDUMP_PATH_MAX`: bytes in a `sun_path`.
pub const PATH_MAX: usize = 108;
/// `SOCKDUMP_COMM_LEN`
pub const COMM_LEN: usize = 16;
/// `SOCKDUMP_SCRATCH_SLOTS`: scratch buffers per CPU.
pub const SCRATCH_SLOTS: u32 = 2;
/// `SOCKDUMP_ARGS_MAX`: bytes of a command line in an exec record.
pub const ARGS_MAX: usize = 4096;
/// `SOCKDUMP_CGROUP_DEPTH`: cgroup names in an exec record.
pub const CGROUP_DEPTH: usize = 4;
/// `SOCKDUMP_CGROUP_NAME_MAX`: bytes of each, with its NUL.
pub const CGROUP_NAME_MAX: usize = 128;

/// `enum sockdump_event_flag`
pub mod flag {
    pub const TRUNC_SIZE: u16 = 1 << 0;
    pub const TRUNC_SEGS: u16 = 1 << 1;
    pub const UNREADABLE: u16 = 1 << 2;
    pub const PEER_IS_DEST: u16 = 1 << 3;
}

/// `enum sockdump_counter`: indexes of the per-CPU `counters` map.
pub mod counter {
    pub const LOST_RINGBUF: u32 = 0;
    pub const LOST_MMSG: u32 = 1;
    pub const LOST_INFLIGHT: u32 = 2;
    pub const LOST_NO_EXIT: u32 = 3;
    pub const LOST_READS: u32 = 4;
    pub const LOST_PROCS: u32 = 5;
    pub const LOST_TRACKED: u32 = 6;
    pub const COUNT: u32 = 7;
}

/// `enum sockdump_sock_type`
pub mod sock_type {
    pub const STREAM: u16 = 1;
    pub const DGRAM: u16 = 2;
    pub const SEQPACKET: u16 = 5;
}

/// Where a field of `struct sockdump_event` lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field {
    pub name: &'static str,
    pub offset: usize,
    pub size: usize,
}

const fn field(name: &'static str, offset: usize, size: usize) -> Field {
    Field { name, offset, size }
}

/// Layout of `struct sockdump_event`; `captured` data bytes follow it.
pub mod event {
    use super::{field, Field, COMM_LEN, PATH_MAX};

    pub const TIMESTAMP_NS: Field = field("timestamp_ns", 0, 8);
    pub const SOCK_INO: Field = field("sock_ino", 8, 8);
    pub const PEER_INO: Field = field("peer_ino", 16, 8);
    pub const PID: Field = field("pid", 24, 4);
    pub const TID: Field = field("tid", 28, 4);
    pub const PEER_PID: Field = field("peer_pid", 32, 4);
    pub const LEN: Field = field("len", 36, 4);
    pub const CAPTURED: Field = field("captured", 40, 4);
    pub const SOCK_TYPE: Field = field("sock_type", 44, 2);
    pub const FLAGS: Field = field("flags", 46, 2);
    pub const PATH_LEN: Field = field("path_len", 48, 1);
    pub const PEER_PATH_LEN: Field = field("peer_path_len", 49, 1);
    pub const COMM: Field = field("comm", 56, COMM_LEN);
    pub const PATH: Field = field("path", 72, PATH_MAX);
    pub const PEER_PATH: Field = field("peer_path", 180, PATH_MAX);
    pub const RX_SOCK: Field = field("rx_sock", 288, 8);
    pub const RX_POS: Field = field("rx_pos", 296, 8);
    pub const UID: Field = field("uid", 304, 4);
    pub const GID: Field = field("gid", 308, 4);
    pub const PPID: Field = field("ppid", 312, 4);
    pub const CGROUP_ID: Field = field("cgroup_id", 320, 8);
    pub const PARENT_COMM: Field = field("parent_comm", 328, COMM_LEN);

    /// Every named field, in order.
    pub const FIELDS: &[Field] = &[
        TIMESTAMP_NS,
        SOCK_INO,
        PEER_INO,
        PID,
        TID,
        PEER_PID,
        LEN,
        CAPTURED,
        SOCK_TYPE,
        FLAGS,
        PATH_LEN,
        PEER_PATH_LEN,
        COMM,
        PATH,
        PEER_PATH,
        RX_SOCK,
        RX_POS,
        UID,
        GID,
        PPID,
        CGROUP_ID,
        PARENT_COMM,
    ];

    /// `sizeof(struct sockdump_event)`
    pub const SIZE: usize = 344;
}

/// Layout of `struct sockdump_read`, a record of the `reads` ring buffer.
pub mod read {
    use super::{field, Field, COMM_LEN};

    pub const TIMESTAMP_NS: Field = field("timestamp_ns", 0, 8);
    pub const RX_SOCK: Field = field("rx_sock", 8, 8);
    pub const POS: Field = field("pos", 16, 8);
    pub const UNITS: Field = field("units", 24, 4);
    pub const PID: Field = field("pid", 28, 4);
    pub const TID: Field = field("tid", 32, 4);
    pub const UID: Field = field("uid", 36, 4);
    pub const COMM: Field = field("comm", 40, COMM_LEN);
    pub const CGROUP_ID: Field = field("cgroup_id", 56, 8);

    /// Every named field, in order.
    pub const FIELDS: &[Field] = &[TIMESTAMP_NS, RX_SOCK, POS, UNITS, PID, TID, UID, COMM, CGROUP_ID];

    /// `sizeof(struct sockdump_read)`
    pub const SIZE: usize = 64;
}

/// `enum sockdump_proc_kind`
pub mod proc_kind {
    pub const EXEC: u32 = 1;
    pub const FORK: u32 = 2;
}

/// `enum sockdump_proc_flag`
pub mod proc_flag {
    pub const ARGS_TRUNC: u32 = 1 << 0;
    pub const ARGS_UNREADABLE: u32 = 1 << 1;
}

/// `enum sockdump_cgroup_verdict`: values of the `cgroups` map.
pub mod cgroup_verdict {
    pub const WANTED: u8 = 1;
    pub const UNWANTED: u8 = 2;
}

/// Layout of `struct sockdump_proc`, a record of the `procs` ring buffer;
/// an exec record's arguments follow it.
pub mod proc {
    use super::{field, Field};

    pub const TIMESTAMP_NS: Field = field("timestamp_ns", 0, 8);
    pub const KIND: Field = field("kind", 8, 4);
    pub const PID: Field = field("pid", 12, 4);
    pub const PPID: Field = field("ppid", 16, 4);
    pub const ARGS_LEN: Field = field("args_len", 20, 4);
    pub const FLAGS: Field = field("flags", 24, 4);
    pub const CGROUP_ID: Field = field("cgroup_id", 32, 8);

    /// Every named field, in order.
    pub const FIELDS: &[Field] = &[TIMESTAMP_NS, KIND, PID, PPID, ARGS_LEN, FLAGS, CGROUP_ID];

    /// `sizeof(struct sockdump_proc)`
    pub const SIZE: usize = 40;
}

/// Layout of `struct sockdump_exec`: an exec record of the `procs` ring.
pub mod exec {
    use super::{field, Field, ARGS_MAX, CGROUP_DEPTH, CGROUP_NAME_MAX};

    pub const PROC: Field = field("proc", 0, super::proc::SIZE);
    pub const CGROUP: Field = field("cgroup", 40, CGROUP_DEPTH * CGROUP_NAME_MAX);
    pub const ARGS: Field = field("args", 552, ARGS_MAX);

    /// Every named field, in order.
    pub const FIELDS: &[Field] = &[PROC, CGROUP, ARGS];

    /// `sizeof(struct sockdump_exec)`
    pub const SIZE: usize = 552 + ARGS_MAX;
}

/// `struct sockdump_settings`: what the programs are loaded with (the
/// `settings` global). Field meanings are in the header.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    pub self_pidns_dev: u64,
    pub self_pidns_ino: u64,
    pub filter_ino: u64,
    pub wakeup_bytes: u64,
    pub self_tgid: u32,
    pub filter_dev: u32,
    pub filter_pid: u32,
    pub filter_comm_len: u32,
    pub filter_path_len: u32,
    pub seg_size: u32,
    pub segs_per_msg: u32,
    pub filter_uid_on: u32,
    pub filter_uid: u32,
    pub exclude_tgid: u32,
    pub filter_comm: [u8; COMM_LEN],
    pub filter_path: [u8; PATH_MAX],
    pub readers: u32,
    pub filter_cgroups: u32,
    pub filter_tracked: u32,
}

impl Settings {
    /// Everything off: no filter, nothing captured (seg_size 0).
    pub const ZERO: Settings = Settings {
        self_pidns_dev: 0,
        self_pidns_ino: 0,
        filter_ino: 0,
        wakeup_bytes: 0,
        self_tgid: 0,
        filter_dev: 0,
        filter_pid: 0,
        filter_comm_len: 0,
        filter_path_len: 0,
        seg_size: 0,
        segs_per_msg: 0,
        filter_uid_on: 0,
        filter_uid: 0,
        exclude_tgid: 0,
        filter_comm: [0; COMM_LEN],
        filter_path: [0; PATH_MAX],
        readers: 0,
        filter_cgroups: 0,
        filter_tracked: 0,
    };

    /// The bytes the `settings` global is overwritten with.
    pub fn as_bytes(&self) -> &[u8] {
        // SAFETY: repr(C) with explicit padding fields, so every byte is
        // initialised; the slice borrows self for its whole length
        unsafe {
            std::slice::from_raw_parts(
                (self as *const Settings).cast::<u8>(),
                std::mem::size_of::<Settings>(),
            )
        }
    }
}
