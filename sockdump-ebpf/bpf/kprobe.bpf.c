// SPDX-License-Identifier: GPL-2.0-only
/*
 * kprobe/kretprobe on the kernel's unix sendmsg functions, where BPF
 * trampolines are refused. Each program is attached to both functions;
 * kprobes never nest on a CPU, so one scratch slot serves both.
 */
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
	const struct exit_view unknown = { .left = ITER_LEFT_UNKNOWN };

	return sendmsg_exit(ret, SLOT_STREAM, &unknown);
}
