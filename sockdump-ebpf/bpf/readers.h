/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Who reads each message. Every receiving socket's traffic is numbered: the
 * bytes of a stream, the messages of a datagram or seqpacket socket. A send
 * takes the next numbers of its receiver's `sent` count, a read those of its
 * `read` count, and a read of a socket a recorded message went to leaves a
 * record (struct sockdump_read) of who consumed which numbers; user space
 * matches the two (sockdump/src/readers.rs). Metadata only: no bytes.
 *
 * A send is counted after its buffer is queued, so its reader may take it
 * first, on another CPU or while the sender waits to run. A read that
 * takes numbers no send has taken yet therefore always leaves a record;
 * and a send to be recorded marks its receiver watched before it takes its
 * numbers, so that a reader taking them after it sees the mark: a
 * fetching add orders the two, on x86 and arm64 (see sent_so_far()).
 *
 * Sockets are known by their kernel address, which a new socket may take
 * over from a freed one, and the counts start at 0 when an address is first
 * seen, whatever its socket held unread then. Both line up again when a
 * read leaves the queue empty: it consumed everything sent so far. Only
 * forward: a send is counted after its buffer is queued, so a reader can
 * count it first. Not at a send that finds only its own buffer queued: a
 * reader in the middle of a stream read has taken the buffers before it
 * off the queue but not counted them yet (docs/DESIGN.md, "Readers").
 *
 * Numbers are taken with a fetching atomic add, and counts realigned with
 * compare-and-swap, where the kernel has them (SOCKDUMP_ATOMIC_FETCH:
 * 5.12+, the objects user space loads there). For 5.10 the count is read
 * around a plain atomic add, and numbers taken at the same moment on
 * another CPU leave both unknown rather than guessed.
 */
#ifndef SOCKDUMP_READERS_H
#define SOCKDUMP_READERS_H

/* Included by capture.h where SOCKDUMP_READERS is defined. */

#define MSG_PEEK 2

struct rx_count {
	__u64 sent;
	__u64 read;
	__u32 watched;     /* a recorded message went here: its reads leave records */
	__u32 last_reader; /* tgid of the last read, 0 before any (for the filters) */
	char last_comm[SOCKDUMP_COMM_LEN]; /* its command, kept for --comm only */
	__u64 last_cgroup; /* its cgroup, kept for --container only */
	/* the inode of the socket these counts are of, 0 while it has no
	 * file (the server end of a connection until accept()) */
	__u64 ino;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, __u64); /* the receiving struct sock * */
	__type(value, struct rx_count);
	__uint(max_entries, 65536);
} rx_counts SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 20);
} reads SEC(".maps");

/* Taken by another CPU at the same moment: which numbers are whose is
 * unknown. */
#define NUMBERS_RACED (~0ULL)

/* Takes `units` numbers from `counter`: the first of them, or NUMBERS_RACED. */
static __always_inline __u64 take_numbers(__u64 *counter, __u32 units)
{
#ifdef SOCKDUMP_ATOMIC_FETCH
	return __sync_fetch_and_add(counter, units);
#else
	__u64 before = *(volatile __u64 *)counter;

	/* the result unused: a plain atomic add, which 5.10 has */
	__sync_fetch_and_add(counter, units);
	return *(volatile __u64 *)counter == before + units ? before : NUMBERS_RACED;
#endif
}

/* The count `sent` of a socket whose read just took its numbers, read
 * before anything the read looks at next (the queue's length, the mark).
 * x86 never lets a load pass an older one; arm64 does, and BPF has no
 * barrier: a fetching add of 0 is fully ordered there (LDADDAL, or an
 * exclusive loop and DMB). Without fetching atomics (arm64 before 5.18)
 * the two loads may pass each other, and a read then names nobody or
 * moves its count past a send not yet read. */
static __always_inline __u64 sent_so_far(__u64 *sent)
{
#if defined(__TARGET_ARCH_arm64) && defined(SOCKDUMP_ATOMIC_FETCH)
	return __sync_fetch_and_add(sent, 0);
#else
	return *(volatile __u64 *)sent;
#endif
}

/* Moves `count` up to `to`, never down. With fetching atomics (which
 * came with compare-and-swap) a count another CPU moves meanwhile keeps
 * the larger value; without, a plain store can undo a concurrent take. */
static __always_inline void raise_to(__u64 *count, __u64 to)
{
	__u64 now = *(volatile __u64 *)count;

#ifdef SOCKDUMP_ATOMIC_FETCH
	for (int tries = 0; tries < 4 && now < to; tries++) {
		__u64 was = __sync_val_compare_and_swap(count, now, to);

		if (was == now)
			return;
		now = was;
	}
#else
	if (now < to)
		*count = to;
#endif
}

/* The units a send or read of `ret` bytes moves on a socket of `type`:
 * a stream's bytes, another socket's messages. */
static __always_inline __u32 rx_units(__u16 type, int ret)
{
	return type == SOCKDUMP_SOCK_STREAM ? (__u32)ret : 1;
}

/* receiver_ino of a socket its owner closed: the kernel keeps it while
 * its peer holds it, and a sender that ran late still numbers it. */
#define INO_CLOSED (~0ULL)

/* The inode of the socket `sk` belongs to, with probe reads; 0 while it
 * has no file (the server end of a connection until accept()), and
 * INO_CLOSED once closed (sock_orphan: no file either, but SOCK_DEAD).
 * Taking a closed socket for a new one at a freed address moved its
 * counts past reads already made of what a late sender sent. */
static __always_inline __u64 receiver_ino(const struct sock *sk)
{
	const struct socket *sock = BPF_CORE_READ(sk, sk_socket);

	if (!sock && (BPF_CORE_READ(sk, __sk_common.skc_flags) & (1UL << SOCK_DEAD)))
		return INO_CLOSED;
	return socket_ino(sock);
}

/*
 * The counts `c` were kept for the socket of inode `ino` (0: none). A
 * socket at a freed one's address has another inode, or none where the
 * old one had one (a new connection's server end): who read the old one
 * is forgotten, and both counts move up to the larger, dropping what it
 * left unread (or read unseen, from sends the hooks miss). Never back:
 * that would undo a read of the new socket that took numbers before its
 * send counted them. An inode appearing where there was none is the same
 * socket, accepted.
 */
static __always_inline void check_owner(struct rx_count *c, __u64 ino)
{
	if (c->ino && c->ino != ino) {
		raise_to(&c->read, c->sent);
		raise_to(&c->sent, c->read);
		c->watched = 0;
		c->last_reader = 0;
	}
	c->ino = ino;
}

/* The counts of socket `rx`, made on first sight, for a read of it
 * (inode `ino`) or a send to it (`ino` < 0: looked up after the counts,
 * so that a reader who saw the socket accepted and counted a read here
 * is never taken for another socket's by a sender that saw it still
 * unaccepted). */
static __always_inline struct rx_count *rx_count_of(__u64 rx, __s64 ino)
{
	struct rx_count *c = bpf_map_lookup_elem(&rx_counts, &rx);
	__u64 now = ino < 0 ? receiver_ino((const struct sock *)rx) : (__u64)ino;
	struct rx_count fresh = { .ino = now == INO_CLOSED ? 0 : now };

	if (!c) {
		bpf_map_update_elem(&rx_counts, &rx, &fresh, BPF_NOEXIST);
		return bpf_map_lookup_elem(&rx_counts, &rx);
	}
	if (now != INO_CLOSED)
		check_owner(c, now);
	return c;
}

/* How many buffers wait in the receive queue of `sk`, with a probe read. */
static __always_inline __u32 queued(const struct sock *sk)
{
	const struct sk_buff_head *queue = &sk->sk_receive_queue;

	return BPF_CORE_READ(queue, qlen);
}

/* The datagram socket each thread's last datagram went to, from
 * sk_data_ready, which the kernel calls on the receiver while the send is
 * in progress. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, __u64); /* pid_tgid */
	__type(value, __u64);
	__uint(max_entries, 16384);
} dgram_receiver SEC(".maps");

/* sk_data_ready on `sk`: notes it if a unix datagram socket. `trusted`:
 * a BTF pointer, read with plain loads. */
static __always_inline int data_ready(struct sock *sk, const bool trusted)
{
	__u64 id = bpf_get_current_pid_tgid(), rx = (__u64)sk;
	struct socket *sock;

	if ((trusted ? sk->__sk_common.skc_family : BPF_CORE_READ(sk, __sk_common.skc_family)) != AF_UNIX)
		return 0;
	sock = trusted ? sk->sk_socket : BPF_CORE_READ(sk, sk_socket);
	if (!sock || (trusted ? sock->type : BPF_CORE_READ(sock, type)) != SOCKDUMP_SOCK_DGRAM)
		return 0;
	bpf_map_update_elem(&dgram_receiver, &id, &rx, BPF_ANY);
	return 0;
}

/* Where a send of `ret` bytes on a socket of `type` went: a datagram's
 * receiver where sk_data_ready saw it go, else (not `named`, i.e. sent to
 * no address of its own) `peer`; 0 if unknown, or if it sent nothing.
 * Its address, not its inode: the server's end of a connection gets a
 * file (and inode) only at accept(), after the client may have sent. */
static __always_inline __u64 receiver_of(__u16 type, bool named, __u64 peer, int ret)
{
	/* a failed send sends nothing, an empty stream write neither */
	if (!settings.readers || ret < 0 || (ret == 0 && type == SOCKDUMP_SOCK_STREAM))
		return 0;
	if (type == SOCKDUMP_SOCK_DGRAM) {
		__u64 id = bpf_get_current_pid_tgid(), *seen = bpf_map_lookup_elem(&dgram_receiver, &id);

		if (seen) {
			__u64 rx = *seen;

			bpf_map_delete_elem(&dgram_receiver, &id);
			return rx;
		}
		if (named)
			return 0;
	}
	return peer;
}

/*
 * Numbers a send of `ret` bytes on a socket of `type` in the traffic of
 * its receiver `rx` (receiver_of): where it went and its first number, or
 * 0s where either is unknown. Every send is numbered, recorded or not,
 * since every read is; one to be recorded (`watch`) first marks `rx`.
 */
static __always_inline struct rx_place number_send(__u64 rx, __u16 type, int ret, bool watch)
{
	struct rx_place place = {};
	struct rx_count *c;
	__u64 pos;

	if (!rx)
		return place;
	c = rx_count_of(rx, -1);
	if (!c)
		return place;
	if (watch)
		c->watched = 1;
	pos = take_numbers(&c->sent, rx_units(type, ret));
	if (pos == NUMBERS_RACED)
		return place;
	place.sock = rx;
	place.pos = pos;
	return place;
}

/* Writes a read record: the current thread consumed `units` of socket
 * `rx` from `pos` on. */
static __always_inline void record_read(__u64 rx, __u64 pos, __u32 units)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	struct sockdump_read *r = bpf_ringbuf_reserve(&reads, sizeof(*r), 0);

	if (!r) {
		count(SOCKDUMP_LOST_READS, 1);
		return;
	}
	r->timestamp_ns = bpf_ktime_get_ns();
	r->rx_sock = rx;
	r->pos = pos;
	r->units = units;
	r->pid = pid_tgid >> 32;
	r->tid = (__u32)pid_tgid;
	r->uid = (__u32)bpf_get_current_uid_gid();
	r->cgroup_id = bpf_get_current_cgroup_id();
	bpf_get_current_comm(r->comm, sizeof(r->comm));
	/* no wakeup: user space reads them whenever it reads messages */
	bpf_ringbuf_submit(r, BPF_RB_NO_WAKEUP);
}

/* A read of socket `rx` (of `type`, inode `ino`) returned `ret` with
 * `flags`. */
static __always_inline int number_read(__u64 rx, __u64 ino, __u16 type, int ret, int flags)
{
	__u64 pos, sent, pid_tgid = bpf_get_current_pid_tgid();
	struct rx_count *c;
	__u32 units;
	bool ahead;

	/* a peek consumes nothing; 0 from a stream is its end */
	if (ret < 0 || (flags & MSG_PEEK) || (ret == 0 && type == SOCKDUMP_SOCK_STREAM))
		return 0;
	c = rx_count_of(rx, (__s64)ino);
	if (!c)
		return 0;
	units = rx_units(type, ret);
	pos = take_numbers(&c->read, units);
	sent = sent_so_far(&c->sent);
	/* ahead of the sends: the sender of what this read took has not
	 * counted it yet */
	ahead = pos + units > sent;
	/* nothing left unread: everything counted before the queue was
	 * looked at was read (a send counts after queueing; the count read
	 * after the queue took in sends this read never saw). Never back:
	 * a sender may not have counted what this read took yet. */
	if (!queued((const struct sock *)rx))
		raise_to(&c->read, sent);
	c->last_reader = pid_tgid >> 32;
	if (settings.filter_comm_len)
		bpf_get_current_comm(c->last_comm, sizeof(c->last_comm));
	if (settings.filter_cgroups)
		c->last_cgroup = bpf_get_current_cgroup_id();
	/* a read whose numbers are unknown names nobody */
	if ((c->watched || ahead) && pos != NUMBERS_RACED)
		record_read(rx, pos, units);
	return 0;
}

/* A read on `sock` (a BTF pointer) with `flags` returned `ret`. */
static __always_inline int read_done(struct socket *sock, int flags, int ret)
{
	struct sock *sk = sock->sk;

	if (!sk)
		return 0;
	return number_read((__u64)sk, file_ino(sock), sock->type, ret, flags);
}

/*
 * Whether a send that `filter` rejects as the sender's may be wanted for
 * its reader: its receiver was last read by a process the filter wants, or
 * not read yet (a socket at a freed one's address, whose reader the counts
 * still name, was not). User space decides once the reader is known.
 */
static __always_inline bool reader_may_match(const struct inflight *f, enum reader_filter filter)
{
	struct rx_count *c;
	__u64 ino;

	if (!settings.readers || !f->rx_sock)
		return false;
	if (f->rx_sock == RX_AT_EXIT)
		return true;
	c = bpf_map_lookup_elem(&rx_counts, &f->rx_sock);
	if (!c || !c->last_reader)
		return true;
	ino = receiver_ino((const struct sock *)f->rx_sock);
	if (ino && ino != INO_CLOSED && c->ino && c->ino != ino)
		return true;
	switch (filter) {
	case BY_PID:
		return c->last_reader == settings.filter_pid;
	case BY_CGROUP:
		return cgroup_may_be_wanted(c->last_cgroup);
	case BY_TRACKED:
		return is_tracked(c->last_reader);
	case BY_COMM:
		break;
	}
	for (__u32 i = 0; i < SOCKDUMP_COMM_LEN; i++) {
		if (c->last_comm[i] != settings.filter_comm[i])
			return false;
		if (i >= settings.filter_comm_len)
			break;
	}
	return true;
}

#endif
