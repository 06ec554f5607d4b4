// SPDX-License-Identifier: GPL-2.0-only
/*
 * fentry/fexit on the kernel's unix sendmsg functions, via BPF trampolines
 * (5.5+): every send, whatever the syscall. unix_seqpacket_sendmsg calls
 * unix_dgram_sendmsg, so seqpacket is covered.
 */
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
		struct exit_view exit = { .sock = (__u64)sock, .left = msg->msg_iter.count };     \
                                                                                                   \
		read_iter(&msg->msg_iter, &exit.now);                                              \
		return sendmsg_exit(ret, slot, &exit);                                             \
	}

SENDMSG_HOOKS(unix_stream_sendmsg, SLOT_STREAM)
SENDMSG_HOOKS(unix_dgram_sendmsg, SLOT_DGRAM)
