/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Who reads each message. Every receiving socket's traffic is numbered: the
 * bytes of a stream, the messages of a datagram or seqpacket socket. A send
 * takes the next numbers of its receiver's `sent` count, a read those of its
 * `read` count, and a read of a socket a recorded message went to leaves a
 * record (struct sockdump_read) of who consumed which numbers; user space
 * matches the two (sockdump/src/readers.rs). Metadata only: no bytes.
 *
 * Sockets are known by their kernel address, which a new socket may take
 * over from a freed one, and the counts start at 0 when an address is first
 * seen, whatever its socket held unread then. Both line up again whenever
 * a queue is seen holding nothing unread: a read that leaves it empty has
 * consumed everything sent so far, and a send that finds only its own
 * buffer queued follows everything sent before it. These only move the
 * read count forward: a send is counted after its buffer is queued, so a
 * reader can count it first (docs/DESIGN.md, "Readers").
 */
#ifndef SOCKDUMP_READERS_H
#define SOCKDUMP_READERS_H

/* Included by capture.h where SOCKDUMP_READERS is defined. */

#define MSG_PEEK 2

struct rx_count {
	__u64 sent;
	__u64 read;
	__u32 watched;     /* a recorded message went here: its reads leave records */
	__u32 last_reader; /* tgid of the last read, 0 before any */
	__u32 last_tid;
	__u32 pad;
	char last_comm[SOCKDUMP_COMM_LEN];
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

/* The units a send or read of `ret` bytes moves on a socket of `type`. */
static __always_inline __u32 rx_units(__u16 type, int ret)
{
	return type == SOCKDUMP_SOCK_STREAM ? (__u32)ret : 1;
}

/* The counts of socket `rx`, whose inode is `ino` (0: no file yet), made
 * on first sight. Another socket at a freed one's address has another
 * inode, or none where the old one had one: what the old one left unread
 * is then dropped, and who read it forgotten. */
static __always_inline struct rx_count *rx_count_of(__u64 rx, __u64 ino)
{
	struct rx_count *c = bpf_map_lookup_elem(&rx_counts, &rx);
	struct rx_count fresh = { .ino = ino };

	if (!c) {
		bpf_map_update_elem(&rx_counts, &rx, &fresh, BPF_NOEXIST);
		return bpf_map_lookup_elem(&rx_counts, &rx);
	}
	if (c->ino != ino && c->ino) {
		c->read = c->sent;
		c->watched = 0;
		c->last_reader = 0;
	}
	c->ino = ino;
	return c;
}

/* Numbers a send of `units` to socket `rx` (inode `ino`), which now
 * holds `queued` buffers: the first of its numbers. Every send is
 * numbered, recorded or not, since every read is. */
static __always_inline __u64 number_send(__u64 rx, __u64 ino, __u32 units, __u32 queued)
{
	struct rx_count *c = rx_count_of(rx, ino);
	__u64 pos;

	if (!c)
		return 0;
	pos = __sync_fetch_and_add(&c->sent, units);
	/* only this send's buffer waits: all before it were read. Never
	 * back: a reader may have taken part of it and counted already. */
	if (queued == 1 && c->read < pos)
		c->read = pos;
	return pos;
}

/* Writes a read record: thread `tid` of `pid`, named `comm`, consumed
 * `units` of socket `rx` from `pos` on. */
static __always_inline void record_read(__u64 rx, __u64 pos, __u32 units, __u32 pid, __u32 tid, const char *comm)
{
	struct sockdump_read *r = bpf_ringbuf_reserve(&reads, sizeof(*r), 0);

	if (!r) {
		count(SOCKDUMP_LOST_READS, 1);
		return;
	}
	r->timestamp_ns = bpf_ktime_get_ns();
	r->rx_sock = rx;
	r->pos = pos;
	r->units = units;
	r->pid = pid;
	r->tid = tid;
	r->pad0 = 0;
	__builtin_memcpy(r->comm, comm, sizeof(r->comm));
	/* no wakeup: user space reads them whenever it reads messages */
	bpf_ringbuf_submit(r, BPF_RB_NO_WAKEUP);
}

/* A recorded message of `units` from `pos` went to `rx`: its reads are
 * recorded from now on. A reader may have taken it already: a send is
 * counted after its buffer is queued. That read was not recorded, so it
 * is recorded now, as the socket's last reader's. */
static __always_inline void watch_receiver(__u64 rx, __u64 pos, __u32 units)
{
	struct rx_count *c = bpf_map_lookup_elem(&rx_counts, &rx);
	char comm[SOCKDUMP_COMM_LEN];

	if (!c || c->watched)
		return;
	c->watched = 1;
	if (c->read > pos && c->last_reader) {
		__builtin_memcpy(comm, c->last_comm, sizeof(comm));
		record_read(rx, pos, c->read - pos < units ? c->read - pos : units, c->last_reader, c->last_tid, comm);
	}
}

/* A read of socket `rx` (of `type`, inode `ino`) returned `ret` with
 * `flags`; `queued` is how many buffers it left in the socket's queue. */
static __always_inline int number_read(__u64 rx, __u64 ino, __u16 type, int ret, int flags, __u32 queued)
{
	__u64 pos, pid_tgid = bpf_get_current_pid_tgid();
	struct rx_count *c;
	__u32 units;

	/* a peek consumes nothing; 0 from a stream is its end */
	if (ret < 0 || (flags & MSG_PEEK) || (ret == 0 && type == SOCKDUMP_SOCK_STREAM))
		return 0;
	c = rx_count_of(rx, ino);
	if (!c)
		return 0;
	units = rx_units(type, ret);
	pos = __sync_fetch_and_add(&c->read, units);
	/* nothing left unread: everything sent so far was read. Never back:
	 * the sender of what this read took may not have counted it yet. */
	if (!queued && c->read < c->sent)
		c->read = c->sent;
	c->last_reader = pid_tgid >> 32;
	c->last_tid = (__u32)pid_tgid;
	bpf_get_current_comm(c->last_comm, sizeof(c->last_comm));
	if (c->watched)
		record_read(rx, pos, units, c->last_reader, c->last_tid, c->last_comm);
	return 0;
}

/*
 * Whether a send the --pid (`by_pid`) or --comm filter rejects as the
 * sender's may be wanted for its reader: its receiver was last read by
 * that process, or not read yet. User space decides once the reader is
 * known.
 */
static __always_inline bool reader_may_match(const struct inflight *f, bool by_pid)
{
	struct rx_count *c;

	if (!settings.readers || !f->rx_sock)
		return false;
	c = bpf_map_lookup_elem(&rx_counts, &f->rx_sock);
	if (!c || !c->last_reader)
		return true;
	if (by_pid)
		return c->last_reader == settings.filter_pid;
	for (__u32 i = 0; i < SOCKDUMP_COMM_LEN; i++) {
		if (c->last_comm[i] != settings.filter_comm[i])
			return false;
		if (i >= settings.filter_comm_len)
			break;
	}
	return true;
}

#endif
