/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The capture core shared by every hook family: filters, socket metadata, the
 * copy of the sent bytes and the ring buffer record. A hook only says which
 * socket is sending and where the bytes are (at entry), and how many the
 * kernel accepted (at exit).
 */
#ifndef SOCKDUMP_CAPTURE_H
#define SOCKDUMP_CAPTURE_H

#include "compat.h"
#include "sockdump_abi.h"

/* Written by user space before load (see sockdump_abi.h); these defaults
 * only matter to tools that load an object without setting them. */
const volatile struct sockdump_settings settings = {
	.seg_size = 51200,
	.segs_per_msg = 10,
	.wakeup_bytes = 1,
};

/* A program may be preempted on its CPU (trampolines, and tp_btf from 7.0
 * on preemptible kernels: only migration is disabled), but the kernel never
 * runs a program while the same program is running or preempted on that CPU
 * (it skips it: recursion_misses). So each program that records gets its own
 * slot, and no two programs that could both be inside one CPU share one. */
enum scratch_slot {
	SLOT_STREAM = 0,
	SLOT_DGRAM = 1,
};

enum inflight_kind {
	INFLIGHT_BUFFER = 0,  /* `buffer` describes the bytes */
	INFLIGHT_MSGHDR = 1,  /* sendmsg(): buffer.base is the user msghdr */
	INFLIGHT_MMSGHDR = 2, /* sendmmsg(): buffer.base is the user mmsghdr array */
};

/* What the entry of a send leaves for its exit, per thread. */
struct inflight {
	__u64 sock; /* struct socket * */
	__u64 sk;   /* its struct sock *, a struct unix_sock */
	struct buffer_view buffer;
	__u64 name; /* destination sockaddr_un of an unconnected send, 0 if none */
	__u32 name_len;
	__u8 name_in_user;
	__u8 path_matched; /* --sock already matched the socket or its peer */
	__u8 kind;         /* enum inflight_kind */
	__u8 pad;
	__u16 type;        /* the socket type (SOCK_STREAM, ...) */
	__u8 pad2[6];
	__u64 iter_left;   /* bytes in the msghdr's iterator at entry, or ITER_LEFT_UNKNOWN */
	__u64 first_base;  /* where the first segment's bytes start, if iter_left is known */
	/* the receiving socket and the message's place in its numbering
	 * (readers.h); 0 where the hook does not number sends */
	__u64 rx_sock;
	__u64 rx_pos;
};
/* user space reads `sock` of every entry left when a capture ends (capture/mod.rs) */
_Static_assert(sizeof(struct inflight) == 104, "INFLIGHT_SIZE in sockdump/src/capture/mod.rs");

/* Where a send went, and the first of its numbers there (readers.h). */
struct rx_place {
	__u64 sock; /* the receiving struct sock *, 0 if unknown */
	__u64 pos;
};

/* inflight.rx_sock of a send whose receiver its exit learns (a datagram's,
 * where the entry decides the filters) */
#define RX_AT_EXIT (~0ULL)

/* A hook that cannot read the iterator cheaply does not check it. */
#define ITER_LEFT_UNKNOWN (~0ULL)

/* How far the copy got through the pending send's iovec. */
struct copy_progress {
	__u64 want; /* bytes to copy */
	__u64 done; /* bytes copied */
	__u64 skip; /* bytes still to skip: already consumed before this send */
	__u64 src;  /* the next chunk to copy (see next_chunk) */
	__u64 len;
	__u64 user; /* src is user memory */
};

/*
 * What a hook with trusted BTF pointers to the socket learnt with plain
 * loads, so that the shared code need not probe-read it again (each probe
 * read is a helper call of some 30 ns).
 */
struct sock_facts {
	__u64 own_addr;   /* struct unix_address * */
	__u64 own_dentry; /* struct dentry * of the socket file */
	__u64 peer;       /* struct unix_sock * */
	__u64 peer_addr;
	__u64 peer_dentry;
	__u64 sock_ino;
	__u64 peer_ino;
	__u32 peer_pid;
	__u32 known; /* 0: read them with probe reads */
};

struct scratch {
	/* the send being recorded, handed to record_pending() */
	struct inflight pending;
	struct sock_facts facts;
	struct copy_progress copy;
	/* the record's header; the bytes go straight into the ring buffer */
	struct sockdump_event event;
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 22); /* set by user space from --segs-in-buffer */
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct scratch);
	__uint(max_entries, 1); /* set by user space: possible CPUs * SOCKDUMP_SCRATCH_SLOTS */
} scratch SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, __u64); /* pid_tgid */
	__type(value, struct inflight);
	__uint(max_entries, 16384);
} inflight SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, SOCKDUMP_COUNTER_MAX);
} counters SEC(".maps");

/* exec and fork records (struct sockdump_proc) */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 20);
} procs SEC(".maps");

/* --container: user space's verdict on each cgroup it has seen (enum
 * sockdump_cgroup_verdict); LRU, since a cgroup forgotten is only asked
 * about again */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, __u64);
	__type(value, __u8);
	__uint(max_entries, 16384);
} cgroups SEC(".maps");

/* sockdump -- CMD: the tgids of CMD and the processes it started */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u32);
	__type(value, __u8);
	__uint(max_entries, 65536);
} tracked SEC(".maps");

/* Is the current task sockdump itself? Its writes are never captured, or
 * its output to a unix socket would feed itself. */
static __always_inline bool is_self(void)
{
	struct bpf_pidns_info ns;

	if (!settings.self_pidns_ino)
		return bpf_get_current_pid_tgid() >> 32 == settings.self_tgid;
	/* fails for tasks outside that namespace: not sockdump */
	return !bpf_get_ns_current_pid_tgid(settings.self_pidns_dev, settings.self_pidns_ino, &ns, sizeof(ns)) &&
	       ns.tgid == settings.self_tgid;
}

static __always_inline void count(__u32 counter, __u64 n)
{
	__u64 *value = bpf_map_lookup_elem(&counters, &counter);

	/* atomic: two programs preempted on one CPU may count at once */
	if (value)
		__sync_fetch_and_add(value, n);
}

static __always_inline struct scratch *scratch_slot(__u32 slot)
{
	__u32 key = bpf_get_smp_processor_id() * SOCKDUMP_SCRATCH_SLOTS + slot;

	return bpf_map_lookup_elem(&scratch, &key);
}

/* The struct socket fields sockdump needs. */
struct socket_view {
	struct sock *sk;
	__u16 type;
};

static __always_inline int read_socket(const struct socket *sock, struct socket_view *v)
{
	DECLARE_SPAN(span);

	if (SPAN_FITS(struct socket, type, sk)) {
		if (READ_SPAN(span, sock, struct socket, type, sk))
			return -1;
		v->type = SPAN_FIELD(span, struct socket, type, type, short);
		v->sk = SPAN_FIELD(span, struct socket, type, sk, struct sock *);
		return 0;
	}
	v->type = BPF_CORE_READ(sock, type);
	v->sk = BPF_CORE_READ(sock, sk);
	return 0;
}

/* The struct unix_sock fields sockdump needs; all NULL for a NULL socket. */
struct unix_view {
	struct unix_address *addr;
	struct dentry *dentry; /* the socket file, when bound to a path */
	struct unix_sock *peer;
};

static __always_inline void read_unix(const struct unix_sock *u, struct unix_view *v)
{
	DECLARE_SPAN(span);

	v->addr = NULL;
	v->dentry = NULL;
	v->peer = NULL;
	if (!u)
		return;
	if (SPAN_FITS(struct unix_sock, addr, peer) && SPAN_HOLDS(struct unix_sock, addr, peer, path.dentry)) {
		if (READ_SPAN(span, u, struct unix_sock, addr, peer))
			return;
		v->addr = SPAN_FIELD(span, struct unix_sock, addr, addr, struct unix_address *);
		v->dentry = SPAN_FIELD(span, struct unix_sock, addr, path.dentry, struct dentry *);
		v->peer = SPAN_FIELD(span, struct unix_sock, addr, peer, struct unix_sock *);
		return;
	}
	v->addr = BPF_CORE_READ(u, addr);
	v->dentry = BPF_CORE_READ(u, path.dentry);
	v->peer = (struct unix_sock *)BPF_CORE_READ(u, peer);
}

/* The sending socket's unix_view: from the hook's facts when it has them. */
static __always_inline void read_own(const struct sock *sk, const struct sock_facts *facts, struct unix_view *v)
{
	if (facts && facts->known) {
		v->addr = (struct unix_address *)facts->own_addr;
		v->dentry = (struct dentry *)facts->own_dentry;
		v->peer = (struct unix_sock *)facts->peer;
		return;
	}
	read_unix((const struct unix_sock *)sk, v);
}

/* The peer's unix_view (`own` is the sending socket's). */
static __always_inline void read_peer(const struct unix_view *own, const struct sock_facts *facts,
				      struct unix_view *v)
{
	if (facts && facts->known) {
		v->addr = (struct unix_address *)facts->peer_addr;
		v->dentry = (struct dentry *)facts->peer_dentry;
		v->peer = NULL; /* not needed */
		return;
	}
	read_unix(own->peer, v);
}

/* The SO_PEERCRED pid of `sk`: from the hook's facts when it has them. */
static __always_inline __u32 peer_pid_of(const struct sock *sk, const struct sock_facts *facts)
{
	if (facts && facts->known)
		return facts->peer_pid;
	return pid_nr(BPF_CORE_READ(sk, sk_peer_pid));
}

static __always_inline __u64 socket_ino(const struct socket *sock)
{
	if (!sock)
		return 0;
	return BPF_CORE_READ((const struct socket_alloc *)sock, vfs_inode.i_ino);
}

/* The same through its file, with plain loads from a BTF pointer (a
 * socket the kernel made without one shows 0). */
static __always_inline __u64 file_ino(const struct socket *sock)
{
	const struct file *file = sock ? sock->file : NULL;

	return file ? file->f_inode->i_ino : 0;
}

/* unix_address.len and the sun_path behind it, read at once into
 * `len` onwards; `pad` puts `path` on an 8-byte boundary for the copy. */
struct bound_name {
	__u16 pad;
	int len;
	__u16 family;
	char path[SOCKDUMP_PATH_MAX];
} __attribute__((packed, aligned(8)));

/* Copies the sun_path bytes of a bound socket; returns how many (0 = unnamed). */
static __always_inline __u8 read_bound_name(const struct unix_address *addr, char *dst)
{
	const __u32 len_at = bpf_core_field_offset(struct unix_address, len);
	const __u32 name_at = bpf_core_field_offset(struct unix_address, name);
	struct bound_name name;
	__u32 len;

	if (!addr)
		return 0;
	/* One read where the name follows the length, as in every kernel so
	 * far. It may run past a short name's allocation: slab memory stays
	 * mapped, the bytes past `len` are not used, and a read that fails
	 * (a KFENCE guard page) falls back to reading exactly. */
	if (name_at == len_at + sizeof(int) &&
	    !bpf_probe_read_kernel(&name.len, sizeof(name) - sizeof(name.pad), (const char *)addr + len_at)) {
		len = name.len;
		if (len <= __builtin_offsetof(struct sockaddr_un, sun_path))
			return 0;
		len -= __builtin_offsetof(struct sockaddr_un, sun_path);
		if (len > SOCKDUMP_PATH_MAX)
			len = SOCKDUMP_PATH_MAX;
		__builtin_memcpy(dst, name.path, SOCKDUMP_PATH_MAX);
		return len;
	}
	len = BPF_CORE_READ(addr, len);
	if (len <= __builtin_offsetof(struct sockaddr_un, sun_path))
		return 0;
	len -= __builtin_offsetof(struct sockaddr_un, sun_path);
	if (len > SOCKDUMP_PATH_MAX)
		len = SOCKDUMP_PATH_MAX;
	if (bpf_probe_read_kernel(dst, len & 0x7f, unix_address_sun_path(addr)))
		return 0;
	return len;
}

/* Copies the sun_path of a destination sockaddr_un given to sendto()/sendmsg(). */
static __always_inline __u8 read_dest_name(__u64 name, __u32 name_len, bool in_user, char *dst)
{
	__u32 len;
	const void *src = (const void *)(name + __builtin_offsetof(struct sockaddr_un, sun_path));

	if (!name || name_len <= __builtin_offsetof(struct sockaddr_un, sun_path))
		return 0;
	len = name_len - __builtin_offsetof(struct sockaddr_un, sun_path);
	if (len > SOCKDUMP_PATH_MAX)
		len = SOCKDUMP_PATH_MAX;
	if (in_user ? bpf_probe_read_user(dst, len & 0x7f, src)
		    : bpf_probe_read_kernel(dst, len & 0x7f, src))
		return 0;
	return len;
}

static __always_inline bool name_has_prefix(const char *name, __u32 len)
{
	if (len < settings.filter_path_len)
		return false;
	for (__u32 i = 0; i < SOCKDUMP_PATH_MAX; i++) {
		if (i >= settings.filter_path_len)
			break;
		if (name[i] != settings.filter_path[i])
			return false;
	}
	return true;
}

/* Is this socket file (a unix_view's dentry) the one --sock names, by
 * inode rather than by spelling? */
static __always_inline bool is_filter_file(const struct dentry *dentry)
{
	struct inode *inode;

	if (!settings.filter_ino || !dentry)
		return false;
	inode = BPF_CORE_READ(dentry, d_inode);
	if (!inode)
		return false;
	return BPF_CORE_READ(inode, i_ino) == settings.filter_ino &&
	       BPF_CORE_READ(inode, i_sb, s_dev) == settings.filter_dev;
}

static __always_inline bool view_matches_path(const struct unix_view *v, char *name_buf)
{
	__u8 len;

	if (is_filter_file(v->dentry))
		return true;
	if (!settings.filter_path_len)
		return false;
	len = read_bound_name(v->addr, name_buf);
	return name_has_prefix(name_buf, len);
}

static __always_inline bool comm_matches(void)
{
	char comm[SOCKDUMP_COMM_LEN];

	if (!settings.filter_comm_len)
		return true;
	bpf_get_current_comm(comm, sizeof(comm));
	/* compare the terminating NUL too: --comm is an exact match */
	for (__u32 i = 0; i < SOCKDUMP_COMM_LEN; i++) {
		if (comm[i] != settings.filter_comm[i])
			return false;
		if (i >= settings.filter_comm_len)
			break;
	}
	return true;
}

/* The peer of `sk`, a struct unix_sock, with a probe read. */
static __always_inline __u64 unix_peer(const struct sock *sk)
{
	return (__u64)BPF_CORE_READ((const struct unix_sock *)sk, peer);
}

/* Without --all-users, a non-root caller sees only conversations one side
 * of which is theirs: the sender, or the owner of the socket at the other
 * end (sk_uid is set from the creator's fsuid). */
static __always_inline bool uid_matches(const struct sock *sk)
{
	const struct sock *peer;

	if (!settings.filter_uid_on || (__u32)bpf_get_current_uid_gid() == settings.filter_uid)
		return true;
	peer = (const struct sock *)unix_peer(sk);
	return peer && BPF_CORE_READ(peer, sk_uid.val) == settings.filter_uid;
}

/* How many ancestors --exclude-pid looks through: a viewer's helpers
 * (dumpcap, shells, D-Bus activation) sit a few levels below it. */
#define EXCLUDE_TREE_DEPTH 16

/* --exclude-pid: sent by that process or one it started, or on a socket
 * whose SO_PEERCRED peer it is (a server answering it, e.g. the X server
 * drawing Wireshark's window). */
static __always_inline bool excluded(const struct sock *sk, const struct sock_facts *facts)
{
	const struct task_struct *task;

	if (!settings.exclude_tgid)
		return false;
	if (peer_pid_of(sk, facts) == settings.exclude_tgid)
		return true;
	task = (const struct task_struct *)bpf_get_current_task();
	for (int i = 0; i < EXCLUDE_TREE_DEPTH && task; i++) {
		if ((__u32)BPF_CORE_READ(task, tgid) == settings.exclude_tgid)
			return true;
		task = BPF_CORE_READ(task, real_parent);
	}
	return false;
}

/* Whether the send may go to an address of its own, which then decides
 * --sock: only datagrams do (a connected stream or seqpacket socket refuses
 * an address, an unconnected one cannot send). */
static __always_inline bool may_name_destination(const struct inflight *f, const struct unix_view *own)
{
	return f->type == SOCKDUMP_SOCK_DGRAM && (!own->peer || f->name || f->kind != INFLIGHT_BUFFER);
}

/* Which filter asks reader_may_match() about a send's reader. */
enum reader_filter {
	BY_COMM,
	BY_PID,
	BY_CGROUP,
	BY_TRACKED,
};

/* --container: false only for a cgroup user space has ruled out. */
static __always_inline bool cgroup_may_be_wanted(__u64 cgroup)
{
	__u8 *verdict = bpf_map_lookup_elem(&cgroups, &cgroup);

	return !verdict || *verdict != SOCKDUMP_CGROUP_UNWANTED;
}

static __always_inline bool is_tracked(__u32 tgid)
{
	return bpf_map_lookup_elem(&tracked, &tgid) != NULL;
}

/* A family that names readers (SOCKDUMP_READERS) numbers the traffic of
 * receiving sockets; its filters then consult the numbering. */
#ifdef SOCKDUMP_READERS
#include "readers.h"
#else
static __always_inline __u64 receiver_of(__u16 type, bool named, __u64 peer, int ret)
{
	return 0;
}

static __always_inline struct rx_place number_send(__u64 rx, __u16 type, int ret, bool watch)
{
	return (struct rx_place){};
}

static __always_inline bool reader_may_match(const struct inflight *f, enum reader_filter filter)
{
	return false;
}
#endif

/*
 * The filters that can be decided when a send starts, on the socket `sk`.
 * Returns false to ignore the send; sets f->path_matched when --sock is
 * already satisfied, otherwise the destination of an unconnected send
 * decides at exit.
 */
static __always_inline bool send_wanted(const struct sock *sk, struct inflight *f, const struct sock_facts *facts)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct unix_view own, peer;
	char name[SOCKDUMP_PATH_MAX];

	if (is_self())
		return false;
	if ((!comm_matches() && !reader_may_match(f, BY_COMM)) || !uid_matches(sk) || excluded(sk, facts))
		return false;
	if (settings.filter_pid && tgid != settings.filter_pid &&
	    peer_pid_of(sk, facts) != settings.filter_pid && !reader_may_match(f, BY_PID))
		return false;
	if (settings.filter_cgroups && !cgroup_may_be_wanted(bpf_get_current_cgroup_id()) &&
	    !reader_may_match(f, BY_CGROUP))
		return false;
	/* a server answering CMD: its reader, or CMD as SO_PEERCRED names it
	 * where reads are not seen */
	if (settings.filter_tracked && !is_tracked(tgid) && !reader_may_match(f, BY_TRACKED) &&
	    !is_tracked(peer_pid_of(sk, facts)))
		return false;

	f->path_matched = !settings.filter_path_len && !settings.filter_ino;
	if (f->path_matched)
		return true;
	/* struct unix_sock starts with struct sock: a CO-RE cast works on every
	 * kernel, bpf_skc_to_unix_sock() only from 5.16 */
	read_own(sk, facts, &own);
	read_peer(&own, facts, &peer);
	f->path_matched = view_matches_path(&own, name) || view_matches_path(&peer, name);
	/* A destination address (given, or in a msghdr read at exit) decides
	 * at exit, even on a connected datagram socket; without one the peer
	 * is the only other party. */
	return f->path_matched || may_name_destination(f, &own);
}

/*
 * Each thread keeps one slot in the in-flight table. Inserting and deleting
 * on every send costs hundreds of nanoseconds; a lookup and a write in place
 * cost a fraction of that. The map is LRU so slots of threads that are gone
 * are reused when it fills up.
 */
static __always_inline void remember_send(const struct inflight *f)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	struct inflight *slot = bpf_map_lookup_elem(&inflight, &pid_tgid);

	if (slot) {
		/* still pending: the exit of this thread's last send never ran */
		if (slot->sock)
			count(SOCKDUMP_LOST_NO_EXIT, 1);
		*slot = *f;
		return;
	}
	if (bpf_map_update_elem(&inflight, &pid_tgid, f, BPF_ANY))
		count(SOCKDUMP_LOST_INFLIGHT, 1);
}

/* A send the filters rejected: the thread's slot must not keep an earlier
 * send whose exit was missed, or this send's exit would record that one.
 * Where readers are named it keeps what numbering the send needs, for an
 * exit that cannot see the socket (a kretprobe). */
static __always_inline void forget_send(const struct inflight *f)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	struct inflight *slot = bpf_map_lookup_elem(&inflight, &pid_tgid);

	if (!slot) {
		if (settings.readers)
			bpf_map_update_elem(&inflight, &pid_tgid, f, BPF_ANY);
		return;
	}
	if (slot->sock)
		count(SOCKDUMP_LOST_NO_EXIT, 1);
	slot->sock = 0;
	slot->sk = f->sk;
	slot->type = f->type;
	slot->name_len = f->name_len;
}

/* Completes `f` for a send on `sock` that the filters want; for any other
 * send, clears the thread's slot and returns false. */
static __always_inline bool claim_send(struct inflight *f, const struct socket *sock,
				       const struct socket_view *v)
{
	f->type = v->type;
	f->sk = (__u64)v->sk;
	if (!send_wanted(v->sk, f, NULL)) {
		forget_send(f);
		return false;
	}
	f->sock = (__u64)sock;
	return true;
}

/* Where the first segment of a send's bytes starts. An iovec array on the
 * kernel stack (6.1's write() and sendto()) sits at the same address for
 * every send of a thread, but each send writes its own buffer into it; a
 * freed array reads back as something else. 0 where it cannot be read. */
static __always_inline __u64 first_base(const struct buffer_view *b)
{
	const struct iovec *first = (const struct iovec *)b->base;
	__u64 base = 0;

	if (b->kind == BUFFER_USER)
		return b->base;
	if (b->kind == BUFFER_USER_IOV || b->kind == BUFFER_KERNEL_IOV)
		bpf_probe_read_kernel(&base, sizeof(base), &first->iov_base);
	else if (b->kind == BUFFER_USER_IOV_IN_USER)
		bpf_probe_read_user(&base, sizeof(base), &first->iov_base);
	return base;
}

/* What the exiting send shows of itself, to check the entry it takes
 * against; where `left` is ITER_LEFT_UNKNOWN the hook knows nothing. */
struct exit_view {
	__u64 sock; /* struct socket * */
	__u64 left; /* bytes left in the iterator */
	struct buffer_view now; /* the iterator as the send left it */
	__u64 rx;               /* where it went (readers.h: receiver_of) */
	__u16 type;             /* the socket type */
};

/* Whether `now`, a send's iterator at its exit, is where the entry saw
 * `entry`. A user buffer stays put. An iovec array does too, the iterator
 * moved past the segments consumed; and since an array on the kernel
 * stack (6.1's write(), sendto(), writev()) sits at the same address for
 * each send of a thread, its first segment must still be the entry's. */
static __always_inline bool same_buffer(const struct buffer_view *entry, __u64 entry_first,
					const struct buffer_view *now)
{
	__u64 moved = now->base - entry->base;

	if (now->kind != entry->kind)
		return false;
	if (now->kind == BUFFER_USER)
		return now->base == entry->base;
	if (now->kind == BUFFER_NONE)
		return true;
	return now->base >= entry->base && moved % sizeof(struct iovec) == 0 &&
	       moved / sizeof(struct iovec) + now->nr_segs == entry->nr_segs && first_base(entry) == entry_first;
}

/* Moves the thread's in-flight send into its scratch slot; its table slot
 * is marked consumed (sock = 0) for the next send. Where the kernel may skip
 * programs, the entry can belong to an earlier send whose exit was skipped
 * (this send's entry was skipped too): the entry must be on this send's
 * socket, with its buffer (same_buffer), and its iterator must have held at least
 * what this send consumed and left (less on a partial send, which consumed
 * more than it sent), or it is dropped as lost. */
static __always_inline struct scratch *take_exit(__u32 slot, __s64 sent, const struct exit_view *exit)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	struct inflight *stored = bpf_map_lookup_elem(&inflight, &pid_tgid);
	struct scratch *s;

	if (!stored || !stored->sock)
		return NULL;
	if ((exit->sock && stored->sock != exit->sock) ||
	    (exit->left != ITER_LEFT_UNKNOWN && stored->iter_left != ITER_LEFT_UNKNOWN &&
	     (!same_buffer(&stored->buffer, stored->first_base, &exit->now) ||
	      (sent >= 0 && stored->iter_left < exit->left + sent)))) {
		count(SOCKDUMP_LOST_NO_EXIT, 1);
		stored->sock = 0;
		return NULL;
	}
	s = scratch_slot(slot);
	if (s) {
		s->pending = *stored;
		s->facts.known = 0;
	}
	stored->sock = 0;
	return s;
}

static __always_inline long read_memory(void *dst, __u32 len, __u64 src, bool user)
{
	return user ? bpf_probe_read_user(dst, len, (const void *)src)
		    : bpf_probe_read_kernel(dst, len, (const void *)src);
}

enum chunk_step {
	CHUNK_END = 0,  /* nothing more to copy */
	CHUNK_COPY = 1, /* copy s->copy.src/len/user */
	CHUNK_SKIP = 2, /* a segment consumed before this send: go on */
};

/*
 * Finds the bytes of iovec entry `i` (entry 0 of a single buffer) of the
 * send pending in scratch slot `slot` still to be copied after s->copy.done,
 * and leaves them in s->copy; returns an enum chunk_step. Flags truncation
 * and unreadable memory in the pending event.
 *
 * A global function, checked once: inlined in the copy loop, every entry's
 * branches multiplied the paths the verifier walks past its budget of a
 * million instructions on 5.10 and 6.1.
 */
__attribute__((noinline)) int next_chunk(__u32 slot, __u32 i)
{
	struct scratch *s = scratch_slot(slot);
	const struct buffer_view *b;
	struct copy_progress *c;
	struct iovec seg;
	__u64 len;

	if (!s)
		return CHUNK_END;
	b = &s->pending.buffer;
	c = &s->copy;
	/* one buffer is entry 0, whatever nr_segs says */
	if (c->done >= c->want || i >= (b->kind == BUFFER_USER ? 1 : b->nr_segs))
		return CHUNK_END;
	if (i >= settings.segs_per_msg) {
		s->event.flags |= SOCKDUMP_F_TRUNC_SEGS;
		return CHUNK_END;
	}
	if (b->kind == BUFFER_USER) {
		seg.iov_base = (void *)b->base;
		seg.iov_len = c->want + c->skip;
	} else if (read_memory(&seg, sizeof(seg), b->base + i * sizeof(seg),
			       b->kind == BUFFER_USER_IOV_IN_USER)) {
		s->event.flags |= SOCKDUMP_F_UNREADABLE;
		return CHUNK_END;
	}
	if (seg.iov_len <= c->skip) {
		c->skip -= seg.iov_len;
		return CHUNK_SKIP;
	}
	len = seg.iov_len - c->skip;
	if (len > c->want - c->done)
		len = c->want - c->done;
	c->src = (__u64)seg.iov_base + c->skip;
	c->len = len;
	c->user = b->kind != BUFFER_KERNEL_IOV;
	c->skip = 0;
	return CHUNK_COPY;
}

/*
 * The ring buffer record of the event pending in scratch slot `slot`, with
 * its `want` bytes read straight into it: one copy. The kernel only reserves
 * records of a constant size, so each size class is its own function, for
 * 2^bits bytes of data. A message of one buffer fills up to all of it; one
 * of several segments up to half, since the verifier must see every
 * segment's offset and length inside the record, and only segmented classes
 * hold the segment loop, which the verifier walks once per pass.
 */
static __always_inline int emit_record(__u32 slot, __u32 want, const __u32 bits, const bool segments)
{
	const __u32 room = 1u << bits, half = room >> 1;
	const __u64 size = sizeof(struct sockdump_event) + room;
	struct scratch *s = scratch_slot(slot);
	struct sockdump_event *rec;
	struct copy_progress *c;
	__u64 wake, waiting;
	int step;

	if (!s)
		return 0;
	c = &s->copy;
	rec = bpf_ringbuf_reserve(&events, size, 0);
	if (!rec) {
		count(SOCKDUMP_LOST_RINGBUF, 1);
		return 0;
	}
	step = want ? next_chunk(slot, 0) : CHUNK_END;
	if (!segments && step == CHUNK_COPY) {
		if (read_memory(rec + 1, ((c->len - 1) & (room - 1)) + 1, c->src, c->user))
			s->event.flags |= SOCKDUMP_F_UNREADABLE;
		else
			c->done = c->len;
	}
	/* bounded by the setting, which the verifier sees as a constant; the
	 * pass at i == --segs-per-msg only finds the message truncated */
	for (__u32 i = 1; segments && i <= settings.segs_per_msg && i <= SOCKDUMP_SEGS_MAX && step != CHUNK_END;
	     i++) {
		if (step == CHUNK_COPY) {
			if (read_memory((__u8 *)(rec + 1) + (c->done & (half - 1)), ((c->len - 1) & (half - 1)) + 1,
					c->src, c->user)) {
				s->event.flags |= SOCKDUMP_F_UNREADABLE;
				break;
			}
			c->done += c->len;
		}
		step = next_chunk(slot, i);
	}
	s->event.captured = c->done;
	__builtin_memcpy(rec, &s->event, sizeof(*rec));

	/* Wake the reader once, with the record that fills the ring past
	 * wakeup_bytes (the reserved record and its 8-byte ring header already
	 * count): a wakeup is an inter-processor interrupt, and a reader still
	 * busy with the batch needs none. */
	waiting = bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA);
	wake = waiting >= settings.wakeup_bytes && waiting < settings.wakeup_bytes + size + 8
		       ? BPF_RB_FORCE_WAKEUP
		       : BPF_RB_NO_WAKEUP;
	bpf_ringbuf_submit(rec, wake);
	return 0;
}

#define ONE_BUFFER_CLASS(bits)                                       \
	__attribute__((noinline)) int emit_##bits(__u32 slot, __u32 want) \
	{                                                            \
		return emit_record(slot, want, bits, false);         \
	}
#define SEGMENTS_CLASS(bits)                                                  \
	__attribute__((noinline)) int emit_segments_##bits(__u32 slot, __u32 want) \
	{                                                                     \
		return emit_record(slot, want, bits, true);                   \
	}
ONE_BUFFER_CLASS(6)
ONE_BUFFER_CLASS(7)
ONE_BUFFER_CLASS(8)
ONE_BUFFER_CLASS(9)
ONE_BUFFER_CLASS(10)
ONE_BUFFER_CLASS(11)
ONE_BUFFER_CLASS(12)
ONE_BUFFER_CLASS(13)
ONE_BUFFER_CLASS(14)
ONE_BUFFER_CLASS(15)
ONE_BUFFER_CLASS(16)
/* fewer segmented classes (each a factor of four): each holds the loop */
SEGMENTS_CLASS(8)
SEGMENTS_CLASS(10)
SEGMENTS_CLASS(12)
SEGMENTS_CLASS(14)
SEGMENTS_CLASS(16)
SEGMENTS_CLASS(17)

/* Emits the pending event with `want` bytes in the smallest class that
 * holds them. */
static __always_inline int emit(__u32 slot, __u32 want, bool one_buffer)
{
	__u32 bits = 6;

	/* the smallest 2^bits >= want (clang 14 cannot lower ctlz for BPF) */
	while (bits < 16 && (1u << bits) < want)
		bits++;
	if (one_buffer) {
		switch (bits) {
		case 6: return emit_6(slot, want);
		case 7: return emit_7(slot, want);
		case 8: return emit_8(slot, want);
		case 9: return emit_9(slot, want);
		case 10: return emit_10(slot, want);
		case 11: return emit_11(slot, want);
		case 12: return emit_12(slot, want);
		case 13: return emit_13(slot, want);
		case 14: return emit_14(slot, want);
		case 15: return emit_15(slot, want);
		default: return emit_16(slot, want);
		}
	}
	/* half of the class holds the message */
	if (bits <= 7)
		return emit_segments_8(slot, want);
	if (bits <= 9)
		return emit_segments_10(slot, want);
	if (bits <= 11)
		return emit_segments_12(slot, want);
	if (bits <= 13)
		return emit_segments_14(slot, want);
	if (bits <= 15)
		return emit_segments_16(slot, want);
	return emit_segments_17(slot, want);
}

/* Who the sender is beyond its pid: user, parent and cgroup. */
static __always_inline void record_sender(struct sockdump_event *ev)
{
	__u64 uid_gid = bpf_get_current_uid_gid();
	const struct task_struct *parent;

	/* 5.11+: the task as a BTF pointer, read with plain loads; each probe
	 * read cost 50-70 ns, half of what recording the sender cost */
	if (have_task_btf()) {
		parent = bpf_get_current_task_btf()->real_parent;
		ev->ppid = parent->tgid;
		__builtin_memcpy(ev->parent_comm, parent->comm, sizeof(ev->parent_comm));
	} else {
		parent = BPF_CORE_READ((const struct task_struct *)bpf_get_current_task(), real_parent);
		ev->ppid = BPF_CORE_READ(parent, tgid);
		/* not the string variant, which copies byte by byte: user
		 * space stops at the first NUL */
		BPF_CORE_READ_INTO(&ev->parent_comm, parent, comm);
	}
	ev->uid = (__u32)uid_gid;
	ev->gid = uid_gid >> 32;
	ev->pad1 = 0;
	ev->cgroup_id = bpf_get_current_cgroup_id();
}

/*
 * The send pending in scratch slot `slot` returned `sent`: record it. Runs
 * after the kernel copied the bytes, so they are mapped in and `sent` is
 * exactly what was accepted; failed sends (sent < 0) leave no record.
 *
 * A global function: the verifier checks it once, not at every call site
 * (the sendmmsg loop calls it several times).
 */
__attribute__((noinline)) int record_pending(__s64 sent, __u32 slot)
{
	struct scratch *s = scratch_slot(slot);
	const struct inflight *f;
	const struct sock *sk;
	struct unix_view own, peer;
	struct sockdump_event *ev;
	__u64 pid_tgid;
	__u32 want;

	if (sent < 0 || !s)
		return 0;
	f = &s->pending;
	/* an empty datagram is a message; an empty stream write sends nothing */
	if (sent == 0 && f->type == SOCKDUMP_SOCK_STREAM)
		return 0;
	ev = &s->event;
	sk = (const struct sock *)f->sk;
	read_own(sk, &s->facts, &own);

	ev->flags = 0;
	ev->path_len = read_bound_name(own.addr, ev->path);
	/* an address given to the send wins over the connected peer */
	ev->peer_path_len = read_dest_name(f->name, f->name_len, f->name_in_user, ev->peer_path);
	if (ev->peer_path_len) {
		ev->flags |= SOCKDUMP_F_PEER_IS_DEST;
		ev->peer_ino = 0;
	} else if (own.peer) {
		const struct sock *peer_sk = &own.peer->sk;

		read_peer(&own, &s->facts, &peer);
		ev->peer_path_len = read_bound_name(peer.addr, ev->peer_path);
		ev->peer_ino = s->facts.known ? s->facts.peer_ino : socket_ino(BPF_CORE_READ(peer_sk, sk_socket));
	} else {
		ev->peer_ino = 0;
	}
	if (!f->path_matched && !is_filter_file(own.dentry) &&
	    !name_has_prefix(ev->path, ev->path_len) &&
	    !name_has_prefix(ev->peer_path, ev->peer_path_len))
		return 0;

	pid_tgid = bpf_get_current_pid_tgid();
	ev->timestamp_ns = bpf_ktime_get_ns();
	ev->pid = pid_tgid >> 32;
	ev->tid = (__u32)pid_tgid;
	ev->peer_pid = peer_pid_of(sk, &s->facts);
	ev->sock_ino = s->facts.known ? s->facts.sock_ino : socket_ino((const struct socket *)f->sock);
	ev->sock_type = f->type;
	ev->len = sent;
	ev->rx_sock = f->rx_sock;
	ev->rx_pos = f->rx_pos;
	bpf_get_current_comm(ev->comm, sizeof(ev->comm));
	record_sender(ev);

	want = sent;
	if (want > settings.seg_size) {
		want = settings.seg_size;
		ev->flags |= SOCKDUMP_F_TRUNC_SIZE;
	}
	if (want && f->buffer.kind == BUFFER_NONE) {
		ev->flags |= SOCKDUMP_F_UNREADABLE;
		want = 0;
	}
	s->copy.want = want;
	s->copy.done = 0;
	s->copy.skip = f->buffer.offset;
	return emit(slot, want, f->buffer.kind == BUFFER_USER || f->buffer.nr_segs == 1);
}

/* Everything the entry and exit of kernel sendmsg functions share
 * (fentry/fexit and kprobe/kretprobe). */
static __always_inline int sendmsg_enter(const struct socket *sock, const struct msghdr *msg, __u64 iter_left)
{
	struct inflight f = { .kind = INFLIGHT_BUFFER, .iter_left = iter_left };
	struct socket_view v;

	if (read_socket(sock, &v))
		return 0;
	f.name_len = BPF_CORE_READ(msg, msg_namelen);
	if (f.name_len)
		f.name = (__u64)BPF_CORE_READ(msg, msg_name);
	/* for the filters: the exit learns a datagram's receiver */
	if (settings.readers)
		f.rx_sock = v.type == SOCKDUMP_SOCK_DGRAM ? RX_AT_EXIT : unix_peer(v.sk);
	if (!claim_send(&f, sock, &v))
		return 0;
	read_iter(&msg->msg_iter, &f.buffer);
	/* only a hook that checks its exits (it knows iter_left) needs it */
	if (iter_left != ITER_LEFT_UNKNOWN)
		f.first_base = first_base(&f.buffer);
	remember_send(&f);
	return 0;
}

static __always_inline int sendmsg_exit(__s64 ret, __u32 slot, const struct exit_view *exit)
{
	struct scratch *s = take_exit(slot, ret, exit);
	/* every send is numbered; one that may be recorded watches its receiver */
	struct rx_place place = number_send(exit->rx, exit->type, ret, s != NULL);

	if (!s)
		return 0;
	s->pending.rx_sock = place.sock;
	s->pending.rx_pos = place.pos;
	return record_pending(ret, slot);
}

/*
 * Process events, so that messages name the command lines of processes that
 * lived only milliseconds, and sockdump -- CMD follows what CMD starts.
 * Raw tracepoints: no tracefs needed, and in every kernel sockdump supports.
 */
static __always_inline const struct kernfs_node *kernfs_parent(const struct kernfs_node *kn)
{
	if (bpf_core_field_exists(struct kernfs_node___rcu, __parent))
		return BPF_CORE_READ((const struct kernfs_node___rcu *)kn, __parent);
	return BPF_CORE_READ(kn, parent);
}

/* The names of the task's cgroup v2 and its ancestors, innermost first. */
static __always_inline void read_cgroup_names(const struct task_struct *task, struct sockdump_exec *e)
{
	const struct kernfs_node *kn = BPF_CORE_READ(task, cgroups, dfl_cgrp, kn);

	for (int i = 0; i < SOCKDUMP_CGROUP_DEPTH; i++) {
		e->cgroup[i][0] = 0;
		if (kn) {
			bpf_probe_read_kernel_str(e->cgroup[i], SOCKDUMP_CGROUP_NAME_MAX, BPF_CORE_READ(kn, name));
			kn = kernfs_parent(kn);
		}
	}
}

SEC("raw_tracepoint/sched_process_exec")
int proc_exec(unsigned long long *ctx)
{
	const struct task_struct *task = (const struct task_struct *)bpf_get_current_task();
	const struct mm_struct *mm = BPF_CORE_READ(task, mm);
	__u64 start = BPF_CORE_READ(mm, arg_start), end = BPF_CORE_READ(mm, arg_end);
	__u64 len = end > start ? end - start : 0;
	struct sockdump_exec *e = bpf_ringbuf_reserve(&procs, sizeof(*e), 0);
	struct sockdump_proc *p;

	if (!e) {
		count(SOCKDUMP_LOST_PROCS, 1);
		return 0;
	}
	p = &e->proc;
	p->cgroup_id = bpf_get_current_cgroup_id();
	read_cgroup_names(task, e);
	p->timestamp_ns = bpf_ktime_get_ns();
	p->kind = SOCKDUMP_PROC_EXEC;
	p->pid = bpf_get_current_pid_tgid() >> 32;
	p->ppid = BPF_CORE_READ(task, real_parent, tgid);
	p->flags = 0;
	p->pad0 = 0;
	if (len > SOCKDUMP_ARGS_MAX) {
		len = SOCKDUMP_ARGS_MAX;
		p->flags |= SOCKDUMP_PROC_F_ARGS_TRUNC;
	}
	/* the arguments were just copied in by execve: their pages are present */
	if (bpf_probe_read_user(e->args, len, (const void *)start)) {
		len = 0;
		p->flags |= SOCKDUMP_PROC_F_ARGS_UNREADABLE;
	}
	p->args_len = len;
	bpf_ringbuf_submit(e, BPF_RB_NO_WAKEUP);
	return 0;
}

SEC("raw_tracepoint/sched_process_fork")
int proc_fork(unsigned long long *ctx)
{
	const struct task_struct *parent = (const struct task_struct *)ctx[0];
	const struct task_struct *child = (const struct task_struct *)ctx[1];
	__u32 tgid = BPF_CORE_READ(child, tgid), ptgid = BPF_CORE_READ(parent, tgid);
	struct sockdump_proc *p;
	__u8 one = 1;

	/* a new thread runs the same command line in the same process */
	if (BPF_CORE_READ(child, pid) != tgid)
		return 0;
	if (settings.filter_tracked && is_tracked(ptgid) &&
	    bpf_map_update_elem(&tracked, &tgid, &one, BPF_ANY))
		count(SOCKDUMP_LOST_TRACKED, 1);
	p = bpf_ringbuf_reserve(&procs, sizeof(*p), 0);
	if (!p) {
		count(SOCKDUMP_LOST_PROCS, 1);
		return 0;
	}
	*p = (struct sockdump_proc){
		.timestamp_ns = bpf_ktime_get_ns(),
		.kind = SOCKDUMP_PROC_FORK,
		.pid = tgid,
		.ppid = ptgid,
	};
	bpf_ringbuf_submit(p, BPF_RB_NO_WAKEUP);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";

#endif
