// SPDX-License-Identifier: GPL-2.0-only
/*
 * A tiny program with no maps and no relocations.
 *
 * fentry_probe: does this kernel load fentry programs on unix_stream_sendmsg?
 * Some refuse BPF trampolines (ftrace locked down), and finding out by
 * loading the real fentry object costs its CO-RE relocation, tens of
 * milliseconds at start-up. Asking with this one costs a millisecond.
 */
#include "kernel_types.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "GPL";

SEC("fentry/unix_stream_sendmsg")
int BPF_PROG(fentry_probe)
{
	return 0;
}
