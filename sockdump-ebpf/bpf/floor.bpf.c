// SPDX-License-Identifier: GPL-2.0-only
/*
 * Empty programs, for the benchmarks only (the sockdump binary never links
 * this object): what a family's attach points cost before any work. Each
 * has the name and section of the family program it stands in for, so the
 * family table in lib.rs attaches them as it is (floor::of).
 */
#include "kernel_types.h"
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

#define EMPTY(section, name)                                                                       \
	SEC(section)                                                                               \
	int name(void *ctx)                                                                        \
	{                                                                                          \
		return 0;                                                                          \
	}

EMPTY("fexit/unix_stream_sendmsg", fexit_unix_stream_sendmsg)
EMPTY("fexit/unix_dgram_sendmsg", fexit_unix_dgram_sendmsg)
EMPTY("fentry/unix_stream_sendmsg", fentry_unix_stream_sendmsg)
EMPTY("fentry/unix_dgram_sendmsg", fentry_unix_dgram_sendmsg)
EMPTY("fexit/unix_stream_recvmsg", fexit_unix_stream_recvmsg)
EMPTY("fexit/unix_dgram_recvmsg", fexit_unix_dgram_recvmsg)
EMPTY("fexit/unix_seqpacket_recvmsg", fexit_unix_seqpacket_recvmsg)
EMPTY("fentry/sock_def_readable", fentry_sock_def_readable)

EMPTY("tp_btf/sock_send_length", sock_send_length)
EMPTY("tracepoint/sock/sock_send_length", sock_send_length_perf)
EMPTY("tp_btf/sock_recv_length", sock_recv_length)
EMPTY("tracepoint/sock/sock_recv_length", sock_recv_length_perf)
EMPTY("tp_btf/sk_data_ready", sk_data_ready)
EMPTY("tracepoint/sock/sk_data_ready", sk_data_ready_perf)

/* attached to both sendmsg functions, like the kprobe family's */
EMPTY("kretprobe", kretprobe_unix_sendmsg)
EMPTY("kprobe", kprobe_unix_sendmsg)
EMPTY("kretprobe", kretprobe_unix_recvmsg)
EMPTY("kprobe", kprobe_unix_recvmsg)
EMPTY("kprobe", kprobe_sock_def_readable)

EMPTY("tp_btf/sys_exit", tp_sys_exit)
EMPTY("tp_btf/sys_enter", tp_sys_enter)
EMPTY("tracepoint/raw_syscalls/sys_exit", tp_sys_exit_perf)
EMPTY("tracepoint/raw_syscalls/sys_enter", tp_sys_enter_perf)
