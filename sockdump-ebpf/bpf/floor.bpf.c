// SPDX-License-Identifier: GPL-2.0-only
/*
 * Empty raw syscall tracepoint programs, for the benchmarks only (the
 * sockdump binary never links this object): what any capture through
 * syscall tracepoints costs on a kernel before it does any work.
 */
#include "kernel_types.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "GPL";

SEC("tp_btf/sys_enter")
int BPF_PROG(floor_enter)
{
	return 0;
}

SEC("tp_btf/sys_exit")
int BPF_PROG(floor_exit)
{
	return 0;
}
