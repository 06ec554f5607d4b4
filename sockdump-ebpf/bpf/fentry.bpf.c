// SPDX-License-Identifier: GPL-2.0-only
/*
 * fentry/fexit on the kernel's unix sendmsg functions, via BPF trampolines
 * (5.5+): every send, whatever the syscall. unix_seqpacket_sendmsg calls
 * unix_dgram_sendmsg, so seqpacket is covered.
 */
#include "capture.h"
#include <bpf/bpf_tracing.h>

SEC("fentry/unix_stream_sendmsg")
int BPF_PROG(fentry_unix_stream_sendmsg, struct socket *sock, struct msghdr *msg)
{
	return sendmsg_enter(sock, msg);
}

SEC("fexit/unix_stream_sendmsg")
int BPF_PROG(fexit_unix_stream_sendmsg, struct socket *sock, struct msghdr *msg, __u64 len, int ret)
{
	return sendmsg_exit(ret, SLOT_STREAM);
}

SEC("fentry/unix_dgram_sendmsg")
int BPF_PROG(fentry_unix_dgram_sendmsg, struct socket *sock, struct msghdr *msg)
{
	return sendmsg_enter(sock, msg);
}

SEC("fexit/unix_dgram_sendmsg")
int BPF_PROG(fexit_unix_dgram_sendmsg, struct socket *sock, struct msghdr *msg, __u64 len, int ret)
{
	return sendmsg_exit(ret, SLOT_DGRAM);
}
