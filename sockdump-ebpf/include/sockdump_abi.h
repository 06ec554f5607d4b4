/* SPDX-License-Identifier: (GPL-2.0-only OR MIT) */
/*
 * The kernel/user boundary of sockdump, defined once.
 *
 * The eBPF programs write these records into the ring buffer; the Rust decoder
 * in sockdump-common mirrors them and a test there compares its offsets with
 * this header (compiled by the host C compiler). Fixed-width types and explicit
 * padding only, so both compilers agree on the layout.
 */
#ifndef SOCKDUMP_ABI_H
#define SOCKDUMP_ABI_H

#ifdef __BPF__
/* vmlinux types already define the __uN names */
#else
#include <linux/types.h>
#endif

/* Largest --seg-size: bytes of one message the kernel copies. A power of two. */
#define SOCKDUMP_DATA_MAX (1u << 16)
/* Largest --segs-per-msg: iovec segments of one message walked. */
#define SOCKDUMP_SEGS_MAX 64u
/* Scratch buffers per CPU: user space sizes the `scratch` map with it. */
#define SOCKDUMP_SCRATCH_SLOTS 2
/* sockdump_event.path and .peer_path: a sun_path, not NUL terminated. */
#define SOCKDUMP_PATH_MAX 108
#define SOCKDUMP_COMM_LEN 16
/* Bytes of a command line an exec record holds. A power of two. */
#define SOCKDUMP_ARGS_MAX 4096
/* An exec record names the process's cgroup and this many ancestors in
 * all, each name at most SOCKDUMP_CGROUP_NAME_MAX bytes with its NUL. */
#define SOCKDUMP_CGROUP_DEPTH 4
#define SOCKDUMP_CGROUP_NAME_MAX 128

/* sockdump_event.flags */
enum sockdump_event_flag {
	/* the message was longer than --seg-size */
	SOCKDUMP_F_TRUNC_SIZE = 1 << 0,
	/* the message had more iovec segments than --segs-per-msg */
	SOCKDUMP_F_TRUNC_SEGS = 1 << 1,
	/* the bytes are not in user or kernel virtual memory (splice, sendfile),
	 * or reading them failed: captured stops where reading stopped */
	SOCKDUMP_F_UNREADABLE = 1 << 2,
	/* peer_path is the destination of an unconnected sendto()/sendmsg() */
	SOCKDUMP_F_PEER_IS_DEST = 1 << 3,
};

/* Socket types, as in the kernel's enum sock_type (stable UAPI values). */
enum sockdump_sock_type {
	SOCKDUMP_SOCK_STREAM = 1,
	SOCKDUMP_SOCK_DGRAM = 2,
	SOCKDUMP_SOCK_SEQPACKET = 5,
};

/*
 * One message a process sent on a unix socket. `captured` bytes of data follow
 * the header in the same ring buffer record.
 */
struct sockdump_event {
	__u64 timestamp_ns; /* CLOCK_MONOTONIC, when the send returned */
	__u64 sock_ino;     /* inode of the sending socket (as in /proc/PID/fd) */
	__u64 peer_ino;     /* inode of the peer socket, 0 if none */
	__u32 pid;          /* sending process (tgid), in the initial pid namespace */
	__u32 tid;          /* sending thread */
	__u32 peer_pid;     /* SO_PEERCRED pid of the sending socket, 0 if unknown */
	__u32 len;          /* bytes the kernel accepted */
	__u32 captured;     /* bytes of data that follow, <= len */
	__u16 sock_type;    /* enum sockdump_sock_type */
	__u16 flags;        /* enum sockdump_event_flag */
	__u8 path_len;      /* bytes used in path; 0 = unnamed */
	__u8 peer_path_len; /* bytes used in peer_path; 0 = unnamed or no peer */
	__u8 pad0[6];
	char comm[SOCKDUMP_COMM_LEN];
	/* sun_path bytes; path[0] == 0 marks an abstract name */
	char path[SOCKDUMP_PATH_MAX];
	char peer_path[SOCKDUMP_PATH_MAX];
	/* The socket that receives the message (an opaque kernel address), 0 if
	 * unknown, and where the message starts in its numbering: bytes of a
	 * stream, messages of a datagram or seqpacket socket. Read records
	 * (struct sockdump_read) say who consumed which stretch. */
	__u64 rx_sock;
	__u64 rx_pos;
	/* The sender's kernel uid and gid (initial user namespace), its parent
	 * process (tgid, command) and its cgroup v2 id (its container). */
	__u32 uid;
	__u32 gid;
	__u32 ppid;
	__u32 pad1;
	__u64 cgroup_id;
	char parent_comm[SOCKDUMP_COMM_LEN];
};

/*
 * One read of a receiving socket that a recorded message went to, in the
 * `reads` ring buffer: `units` (bytes of a stream, 1 for a datagram) from
 * `pos` on in the socket's numbering were consumed by this thread. Reads
 * with MSG_PEEK consume nothing and have no record.
 */
struct sockdump_read {
	__u64 timestamp_ns; /* CLOCK_MONOTONIC, when the read returned */
	__u64 rx_sock;      /* as sockdump_event.rx_sock */
	__u64 pos;
	__u32 units;
	__u32 pid; /* reading process (tgid), in the initial pid namespace */
	__u32 tid;
	__u32 uid; /* kernel uid, as sockdump_event.uid */
	char comm[SOCKDUMP_COMM_LEN];
	__u64 cgroup_id; /* as sockdump_event.cgroup_id */
};

/* sockdump_proc.kind */
enum sockdump_proc_kind {
	/* pid ran execve(): args holds its new command line */
	SOCKDUMP_PROC_EXEC = 1,
	/* ppid started process pid (not a thread): it shares ppid's command
	 * line until it runs execve() */
	SOCKDUMP_PROC_FORK = 2,
};

/* sockdump_proc.flags */
enum sockdump_proc_flag {
	/* the command line was longer than SOCKDUMP_ARGS_MAX */
	SOCKDUMP_PROC_F_ARGS_TRUNC = 1 << 0,
	/* reading the command line failed: args_len is 0 */
	SOCKDUMP_PROC_F_ARGS_UNREADABLE = 1 << 1,
};

/*
 * A process event, in the `procs` ring buffer, so that a message names the
 * command line and container of a process that lived only milliseconds
 * (its cgroup may be gone before user space looks).
 */
struct sockdump_proc {
	__u64 timestamp_ns; /* CLOCK_MONOTONIC */
	__u32 kind;         /* enum sockdump_proc_kind */
	__u32 pid;          /* tgid, in the initial pid namespace */
	__u32 ppid;
	__u32 args_len;
	__u32 flags;        /* enum sockdump_proc_flag */
	__u32 pad0;
	__u64 cgroup_id;    /* exec: the process's cgroup v2 id */
};

/* An exec record: the header, then the names of the process's cgroup and
 * its ancestors (innermost first; each ends in NUL, empty past the root),
 * then args_len bytes of arguments, each ending in NUL as in
 * /proc/PID/cmdline. */
struct sockdump_exec {
	struct sockdump_proc proc;
	char cgroup[SOCKDUMP_CGROUP_DEPTH][SOCKDUMP_CGROUP_NAME_MAX];
	char args[SOCKDUMP_ARGS_MAX];
};

/* Counters in the per-CPU `counters` map, summed by user space. */
enum sockdump_counter {
	/* messages dropped because the ring buffer was full */
	SOCKDUMP_LOST_RINGBUF = 0,
	/* messages of a sendmmsg() beyond what the tracepoint path walks */
	SOCKDUMP_LOST_MMSG = 1,
	/* sends not followed because the in-flight table was full */
	SOCKDUMP_LOST_INFLIGHT = 2,
	/* sends whose return the hook never saw: a kretprobe skips returns when
	 * more calls are in flight than it tracks (sockdump asks for 4096; the
	 * kernel's default, used when tracefs is read-only, is max(10, 2 * CPUs)
	 * with CONFIG_PREEMPTION and one per CPU without) */
	SOCKDUMP_LOST_NO_EXIT = 3,
	/* reads not recorded because the reads ring buffer was full: their
	 * messages may name SO_PEERCRED's pid instead of their reader */
	SOCKDUMP_LOST_READS = 4,
	/* exec and fork records not written because the procs ring was full:
	 * their messages' command lines come from /proc, if still there */
	SOCKDUMP_LOST_PROCS = 5,
	/* processes sockdump -- CMD stopped following: the tracked map was full */
	SOCKDUMP_LOST_TRACKED = 6,
	SOCKDUMP_COUNTER_MAX = 7,
};

/*
 * Everything user space configures the programs with, written into the
 * `settings` global (.rodata) before loading: the verifier sees the values as
 * constants, so a disabled filter costs nothing.
 */
struct sockdump_settings {
	/* sockdump's own pid namespace (device, inode) when it is not the initial
	 * one, so its own writes are recognised in a container; 0 otherwise */
	__u64 self_pidns_dev;
	__u64 self_pidns_ino;
	/* the socket file --sock names, when it exists: matched whatever name the
	 * application used to bind or connect (relative, in a container); 0 = none */
	__u64 filter_ino;
	/* wake user space only once this many bytes wait in the ring */
	__u64 wakeup_bytes;
	__u32 self_tgid;       /* sockdump's tgid, in the namespace above */
	__u32 filter_dev;      /* the kernel dev_t of filter_ino's file system */
	__u32 filter_pid;      /* --pid, 0 = any */
	__u32 filter_comm_len; /* bytes of filter_comm to match, 0 = any */
	__u32 filter_path_len; /* bytes of filter_path to match, 0 = any */
	__u32 seg_size;        /* --seg-size */
	__u32 segs_per_msg;    /* --segs-per-msg */
	/* a non-root caller without --all-users: only sends by filter_uid, or on
	 * a socket whose peer is owned by filter_uid (kernel uids) */
	__u32 filter_uid_on;
	__u32 filter_uid;
	/* --exclude-pid: sends by this process or its descendants, or on a socket
	 * whose SO_PEERCRED peer it is, are left out (a viewer's own traffic); 0 = none */
	__u32 exclude_tgid;
	char filter_comm[SOCKDUMP_COMM_LEN];
	/* --sock prefix as sun_path bytes; an abstract name starts with NUL */
	char filter_path[SOCKDUMP_PATH_MAX];
	/* the family's receive hooks are attached: sends are numbered in
	 * their receivers' traffic (see struct sockdump_read) */
	__u32 readers;
	/* --container: only sends by processes in cgroups the `cgroups` map
	 * does not mark SOCKDUMP_CGROUP_UNWANTED, or read by them */
	__u32 filter_cgroups;
	/* sockdump -- CMD: only sends by processes in the `tracked` map (CMD
	 * and what it started), or read by them */
	__u32 filter_tracked;
};

/* Values of the `cgroups` map (--container); a cgroup not in it is
 * undecided, and its sends go to user space, which decides. */
enum sockdump_cgroup_verdict {
	SOCKDUMP_CGROUP_WANTED = 1,
	SOCKDUMP_CGROUP_UNWANTED = 2,
};

_Static_assert(sizeof(struct sockdump_settings) == 208, "sockdump_settings size is ABI");
_Static_assert(sizeof(struct sockdump_event) == 344, "sockdump_event size is ABI");
_Static_assert(sizeof(struct sockdump_read) == 64, "sockdump_read size is ABI");
_Static_assert(sizeof(struct sockdump_proc) == 40, "sockdump_proc size is ABI");
_Static_assert(__builtin_offsetof(struct sockdump_exec, args) == 552, "exec args offset is ABI");
_Static_assert((SOCKDUMP_ARGS_MAX & (SOCKDUMP_ARGS_MAX - 1)) == 0, "args max is a power of two");
_Static_assert(__builtin_offsetof(struct sockdump_event, comm) == 56, "comm offset is ABI");
_Static_assert(sizeof(struct sockdump_event) % 8 == 0, "records stay 8-byte aligned");
_Static_assert((SOCKDUMP_DATA_MAX & (SOCKDUMP_DATA_MAX - 1)) == 0, "data max is a power of two");

#endif
