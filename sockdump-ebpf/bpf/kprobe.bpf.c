// SPDX-License-Identifier: GPL-2.0-only
/*
 * kprobe/kretprobe on the kernel's unix sendmsg functions, where BPF
 * trampolines are refused. Each program is attached to both functions;
 * kprobes never nest on a CPU, so one scratch slot serves both. The same on
 * the recvmsg functions and sock_def_readable name the readers (readers.h).
 */
#define SOCKDUMP_READERS
#include "capture.h"
#include <bpf/bpf_tracing.h>

/* no function in the section name: user space attaches each program to
 * both unix_stream_sendmsg and unix_dgram_sendmsg */
SEC("kprobe")
int BPF_KPROBE(kprobe_unix_sendmsg, struct socket *sock, struct msghdr *msg)
{
	/* a kretprobe has no arguments to check an entry against */
	return sendmsg_enter(sock, msg, ITER_LEFT_UNKNOWN);
}

SEC("kretprobe")
int BPF_KRETPROBE(kretprobe_unix_sendmsg, int ret)
{
	struct exit_view exit = { .left = ITER_LEFT_UNKNOWN };
	__u64 id = bpf_get_current_pid_tgid();
	/* the entry left the socket there, rejected by the filters or not */
	struct inflight *f = bpf_map_lookup_elem(&inflight, &id);

	if (f && f->sk && settings.readers) {
		exit.type = f->type;
		exit.rx = receiver_of(f->type, f->name_len, unix_peer((const struct sock *)f->sk), ret);
	}
	sendmsg_exit(ret, SLOT_STREAM, &exit);
	if (f)
		f->sk = 0;
	return 0;
}

/* A read in progress: its socket and flags, for the kretprobe. */
struct read_entry {
	__u64 sock; /* struct socket *, 0 once its exit ran */
	__s32 flags;
	__u32 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, __u64); /* pid_tgid */
	__type(value, struct read_entry);
	__uint(max_entries, 16384);
} reading SEC(".maps");

/* attached to unix_stream_recvmsg, unix_dgram_recvmsg and
 * unix_seqpacket_recvmsg */
SEC("kprobe")
int BPF_KPROBE(kprobe_unix_recvmsg, struct socket *sock, struct msghdr *msg, __u64 size, int flags)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct read_entry entry = { .sock = (__u64)sock, .flags = flags };

	bpf_map_update_elem(&reading, &id, &entry, BPF_ANY);
	return 0;
}

/* 5.10's unix_seqpacket_recvmsg jumps into unix_dgram_recvmsg: both
 * kretprobes then run at its return, and the first takes the read. */
SEC("kretprobe")
int BPF_KRETPROBE(kretprobe_unix_recvmsg, int ret)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct read_entry *entry = bpf_map_lookup_elem(&reading, &id);
	const struct socket *sock;
	struct sock *sk;

	if (!entry || !entry->sock)
		return 0;
	sock = (const struct socket *)entry->sock;
	entry->sock = 0;
	sk = BPF_CORE_READ(sock, sk);
	if (!sk)
		return 0;
	return number_read((__u64)sk, socket_ino(sock), BPF_CORE_READ(sock, type), ret, entry->flags);
}

/* A datagram's receiver, while its send runs (readers.h). */
SEC("kprobe")
int BPF_KPROBE(kprobe_sock_def_readable, struct sock *sk)
{
	return data_ready(sk, false);
}
