// SPDX-License-Identifier: GPL-2.0-only
/*
 * The socket layer's own tracepoint, sock:sock_send_length (6.3+). It fires
 * in sock_sendmsg_nosec() once the protocol accepted a message, whichever
 * way the message came (write, writev, sendto, sendmsg, each message of a
 * sendmmsg, io_uring, splice, sendfile), and brings the socket with it: no
 * file descriptor walk, and a send on any other kind of socket costs one
 * load. The bytes are found from the syscall's registers; a send whose
 * registers do not describe them (kernel threads, io_uring, splice,
 * sendfile, aio, 32-bit tasks) is recorded with its length and flagged
 * unreadable: never a wrong buffer, never missed.
 *
 * From 7.0 tp_btf programs can be preempted, and the kernel then skips them
 * for other sends on that CPU: there the same code attaches through perf
 * (sock_send_length_perf), which keeps preemption off (docs/DESIGN.md).
 */
#define SOCKDUMP_READERS
#include "syscall_send.h"
#include <bpf/bpf_tracing.h>

#define PF_IO_WORKER 0x00000010
#define PF_KTHREAD 0x00200000

/* Where a thread is in its sendmmsg(): the tracepoint fires once per
 * message and the registers stay those of the call, so the message's index
 * is counted here. */
struct mmsg_progress {
	__u64 base; /* the mmsghdr array */
	__u32 next; /* the index the next firing sends */
	__u32 vlen;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, __u64); /* pid_tgid */
	__type(value, struct mmsg_progress);
	__uint(max_entries, 16384);
} mmsg_progress SEC(".maps");

/*
 * The index within its sendmmsg() of the message this firing sends. A call
 * ends after vlen messages or at its first failure (which fires too), so a
 * firing past either starts a new call. A call that ends before any message
 * reaches the socket (a bad msghdr: EFAULT) goes unseen: the next call on
 * the same array would count on from it.
 */
static __always_inline __u32 mmsg_index(__u64 base, __u32 vlen, bool failed)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct mmsg_progress *p = bpf_map_lookup_elem(&mmsg_progress, &id);
	struct mmsg_progress fresh = { .base = base, .vlen = vlen };
	__u32 i;

	if (!p || p->base != base || p->vlen != vlen || p->next >= vlen) {
		if (bpf_map_update_elem(&mmsg_progress, &id, &fresh, BPF_ANY))
			return 0;
		p = bpf_map_lookup_elem(&mmsg_progress, &id);
		if (!p)
			return 0;
	}
	i = p->next;
	p->next = failed ? vlen : i + 1;
	return i;
}

/* The registers of the syscall that made this send, or NULL when they
 * cannot tell where the bytes are. */
static __always_inline struct pt_regs *syscall_regs(void)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct pt_regs *regs;

	if (task->flags & (PF_KTHREAD | PF_IO_WORKER))
		return NULL;
	regs = (struct pt_regs *)bpf_task_pt_regs(task);
	return compat_syscall(regs) ? NULL : regs;
}

/* The filters, on the send pending in scratch slot `slot`. A global
 * function: inlined, its stack and record_pending()'s together went past
 * the 512 bytes the 6.12 verifier allows a call chain. */
__attribute__((noinline)) int pending_wanted(__u32 slot)
{
	struct scratch *s = scratch_slot(slot);

	return s && send_wanted((const struct sock *)s->pending.sk, &s->pending, &s->facts);
}

/* What the filters need of the socket and its peer (names, SO_PEERCRED
 * pid), with plain loads through the trusted `sk`; returns the peer. */
static __always_inline struct sock *learn_names(struct sock *sk, struct sock_facts *facts)
{
	struct unix_sock *u = bpf_skc_to_unix_sock(sk), *peer_u;
	const struct pid *pid = sk->sk_peer_pid;
	struct sock *peer;

	facts->known = 0;
	if (!u)
		return NULL;
	facts->own_addr = (__u64)u->addr;
	facts->own_dentry = (__u64)u->path.dentry;
	peer = u->peer;
	facts->peer = (__u64)peer;
	peer_u = peer ? bpf_skc_to_unix_sock(peer) : NULL;
	facts->peer_addr = peer_u ? (__u64)peer_u->addr : 0;
	facts->peer_dentry = peer_u ? (__u64)peer_u->path.dentry : 0;
	/* pid->numbers[0].nr; a flexible array, so by its offset */
	facts->peer_pid = pid ? *(const int *)((const char *)pid + bpf_core_field_offset(struct pid, numbers) +
					       bpf_core_field_offset(struct upid, nr))
			      : 0;
	facts->known = 1;
	return peer;
}

/* What only a recorded send needs: a rejected one never pays for these
 * pointer chases. */
static __always_inline void learn_inodes(struct socket *sock, struct sock *peer, struct sock_facts *facts)
{
	facts->sock_ino = file_ino(sock);
	facts->peer_ino = peer ? file_ino(peer->sk_socket) : 0;
}

SEC("tp_btf/sk_data_ready")
int BPF_PROG(sk_data_ready, struct sock *sk)
{
	return data_ready(sk, true);
}

/* The tracepoint's record for perf (its format file in tracefs). */
struct sk_data_ready_record {
	__u64 common; /* struct trace_entry */
	struct sock *sk;
	__u16 family;
	__u16 protocol;
};

SEC("tracepoint/sock/sk_data_ready")
int sk_data_ready_perf(struct sk_data_ready_record *record)
{
	return record->family == AF_UNIX ? data_ready(record->sk, false) : 0;
}

/* Where the send of `ret` bytes went, for the filters (readers.h). */
static __always_inline void find_receiver(struct inflight *f, struct sock *sk, struct sock *peer, int ret,
					  const bool trusted)
{
	if (!settings.readers)
		return;
	if (!trusted)
		peer = (struct sock *)unix_peer(sk);
	f->rx_sock = receiver_of(f->type, f->name_len, (__u64)peer, ret);
}

/* Numbers the send in its receiver's traffic, and returns `wanted`: one
 * the filters want watches its receiver (readers.h). */
static __always_inline bool number_pending(struct inflight *f, int ret, bool wanted)
{
	struct rx_place place = number_send(f->rx_sock, f->type, ret, wanted);

	f->rx_sock = place.sock;
	f->rx_pos = place.pos;
	return wanted;
}

/*
 * One firing of sock_send_length. `trusted`: sk is the BTF-typed argument of
 * tp_btf, read with plain loads; otherwise it came from a perf tracepoint's
 * record and every read is a probe read.
 */
static __always_inline int capture_send(struct sock *sk, int ret, const bool trusted)
{
	struct socket *sock;
	struct sock *peer = NULL;
	struct syscall_args args;
	struct pt_regs *regs;
	struct inflight *f;
	struct scratch *s;
	__u32 i = 0;

	s = scratch_slot(SLOT_STREAM);
	if (!s)
		return 0;
	f = &s->pending;
	*f = (struct inflight){};
	sock = trusted ? sk->sk_socket : BPF_CORE_READ(sk, sk_socket);
	if (!sock)
		return 0;
	f->sock = (__u64)sock;
	f->sk = (__u64)sk;
	f->type = trusted ? sock->type : BPF_CORE_READ(sock, type);
	if (trusted)
		peer = learn_names(sk, &s->facts);
	else
		s->facts.known = 0;
	/* Only a datagram's filters depend on the syscall (its destination):
	 * a successful send on another socket is decided before looking at the
	 * registers (a failed one may end a sendmmsg, below). */
	if (f->type != SOCKDUMP_SOCK_DGRAM) {
		find_receiver(f, sk, peer, ret, trusted);
		if (ret >= 0 && !number_pending(f, ret, pending_wanted(SLOT_STREAM)))
			return 0;
	}
	regs = syscall_regs();
	if (regs)
		args_from_regs(regs, &args);
	if (!regs || !send_from_syscall(&args, SYSCALL_NR(regs), f))
		f->buffer.kind = BUFFER_NONE;
	/* every message of a sendmmsg moves its index, failed or not */
	if (f->kind == INFLIGHT_MMSGHDR) {
		i = mmsg_index(f->buffer.base, f->buffer.nr_segs, ret < 0);
		/* msg_hdr comes first in struct mmsghdr: read it as sendmsg()'s */
		f->kind = INFLIGHT_MSGHDR;
		f->buffer.base += (__u64)(i & 1023) * sizeof(struct mmsghdr);
	}
	/* failed sends leave no record; 0 is an empty datagram */
	if (ret < 0)
		return 0;
	if (f->type == SOCKDUMP_SOCK_DGRAM) {
		find_receiver(f, sk, peer, ret, trusted);
		if (!number_pending(f, ret, pending_wanted(SLOT_STREAM)))
			return 0;
	}
	if (trusted)
		learn_inodes(sock, peer, &s->facts);
	if (f->kind == INFLIGHT_MSGHDR && !read_user_msghdr(f, f->buffer.base)) {
		f->kind = INFLIGHT_BUFFER;
		f->buffer.kind = BUFFER_NONE;
	}
	return record_pending(ret, SLOT_STREAM);
}

SEC("tp_btf/sock_send_length")
int BPF_PROG(sock_send_length, struct sock *sk, int ret, int flags)
{
	if (sk->__sk_common.skc_family != AF_UNIX)
		return 0;
	return capture_send(sk, ret, true);
}

/* The record the tracepoint writes for perf (its format file in tracefs). */
struct sock_msg_length_record {
	__u64 common; /* struct trace_entry */
	struct sock *sk;
	__u16 family;
	__u16 protocol;
	int ret;
	int flags;
};

/*
 * The same tracepoint through perf, for kernels that run tp_btf programs
 * preemptible (see README, Hooks): perf's handler keeps preemption off, so
 * another task's preempted program never makes the kernel skip this one (a
 * preempted bpf() map operation still can: docs/DESIGN.md).
 */
SEC("tracepoint/sock/sock_send_length")
int sock_send_length_perf(struct sock_msg_length_record *record)
{
	if (record->family != AF_UNIX)
		return 0;
	return capture_send(record->sk, record->ret, false);
}

SEC("tp_btf/sock_recv_length")
int BPF_PROG(sock_recv_length, struct sock *sk, int ret, int flags)
{
	/* a socket being read has its struct socket */
	if (sk->__sk_common.skc_family != AF_UNIX || !sk->sk_socket)
		return 0;
	return read_done(sk->sk_socket, flags, ret);
}

/* The same through perf, beside sock_send_length_perf. */
SEC("tracepoint/sock/sock_recv_length")
int sock_recv_length_perf(struct sock_msg_length_record *record)
{
	struct sock *sk = record->sk;

	if (record->family != AF_UNIX)
		return 0;
	return number_read((__u64)sk, receiver_ino(sk), BPF_CORE_READ(sk, sk_socket, type), record->ret, record->flags);
}
