// SPDX-License-Identifier: GPL-2.0-only
/*
 * fentry/fexit on the kernel's unix sendmsg functions, via BPF trampolines
 * (5.5+): every send, whatever the syscall. unix_seqpacket_sendmsg calls
 * unix_dgram_sendmsg, so seqpacket is covered. fexit on the recvmsg
 * functions and fentry on sock_def_readable name the readers (readers.h).
 */
#define SOCKDUMP_READERS
#include "capture.h"
#include <bpf/bpf_tracing.h>

/* The entry and exit programs of one sendmsg function; each exit program
 * has its own scratch slot, since fexit programs can be preempted. What the
 * exit sees of the send pairs it with its entry where the kernel skipped
 * some (see take_exit). */
#define SENDMSG_HOOKS(function, slot)                                                              \
	SEC("fentry/" #function)                                                                   \
	int BPF_PROG(fentry_##function, struct socket *sock, struct msghdr *msg)                  \
	{                                                                                          \
		return sendmsg_enter(sock, msg, msg->msg_iter.count);                              \
	}                                                                                          \
                                                                                                   \
	SEC("fexit/" #function)                                                                    \
	int BPF_PROG(fexit_##function, struct socket *sock, struct msghdr *msg, __u64 len, int ret) \
	{                                                                                          \
		struct exit_view exit = { .sock = (__u64)sock, .left = msg->msg_iter.count, .type = sock->type }; \
                                                                                                   \
		read_iter(&msg->msg_iter, &exit.now);                                              \
		if (settings.readers)                                                              \
			exit.rx = receiver_of(exit.type, msg->msg_namelen, unix_peer(sock->sk), ret); \
		return sendmsg_exit(ret, slot, &exit);                                             \
	}

SENDMSG_HOOKS(unix_stream_sendmsg, SLOT_STREAM)
SENDMSG_HOOKS(unix_dgram_sendmsg, SLOT_DGRAM)

/* The exit of a recvmsg function. 5.10's unix_seqpacket_recvmsg jumps into
 * unix_dgram_recvmsg, later ones past it: a seqpacket read is counted by
 * the seqpacket program alone. */
#define RECVMSG_HOOK(function, counts_seqpacket)                                                            \
	SEC("fexit/" #function)                                                                             \
	int BPF_PROG(fexit_##function, struct socket *sock, struct msghdr *msg, __u64 size, int flags, int ret) \
	{                                                                                                   \
		if (!counts_seqpacket && sock->type == SOCKDUMP_SOCK_SEQPACKET)                             \
			return 0;                                                                           \
		return read_done(sock, flags, ret);                                                         \
	}

RECVMSG_HOOK(unix_stream_recvmsg, false)
RECVMSG_HOOK(unix_dgram_recvmsg, false)
RECVMSG_HOOK(unix_seqpacket_recvmsg, true)

/* A datagram's receiver, while its send runs (readers.h). */
SEC("fentry/sock_def_readable")
int BPF_PROG(fentry_sock_def_readable, struct sock *sk)
{
	return data_ready(sk, true);
}
