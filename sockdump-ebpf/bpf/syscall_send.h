/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Where a send syscall's bytes are, from its registers: shared by the
 * families that see the syscall rather than the kernel's msghdr (the raw
 * syscall tracepoints, and the socket-layer tracepoint).
 */
#ifndef SOCKDUMP_SYSCALL_SEND_H
#define SOCKDUMP_SYSCALL_SEND_H

#include "capture.h"

/* The arguments of a syscall that may be a send, wherever they come from:
 * its registers, or the record of the perf tracepoint raw_syscalls:sys_enter. */
struct syscall_args {
	__u64 arg[6];
};

#if defined(__TARGET_ARCH_x86)
enum send_syscall {
	NR_write = 1,
	NR_writev = 20,
	NR_sendto = 44,
	NR_sendmsg = 46,
	NR_sendmmsg = 307,
	NR_pwritev2 = 328, /* with offset -1, a writev with flags */
};

/* x86_64 passes syscall arguments in di, si, dx, r10, r8, r9. */
static __always_inline void args_from_regs(const struct pt_regs *regs, struct syscall_args *a)
{
	a->arg[0] = regs->di;
	a->arg[1] = regs->si;
	a->arg[2] = regs->dx;
	a->arg[3] = regs->r10;
	a->arg[4] = regs->r8;
	a->arg[5] = regs->r9;
}

#define SYSCALL_NR(regs) ((regs)->orig_ax)

/* thread_info.status: a 32-bit process, whose syscall numbers, registers
 * and structures differ (20 is getpid there) */
#define TS_COMPAT 0x0002

/* Whether the current syscall was made by a 32-bit process (`regs`, its
 * registers where the caller has them, tell nothing on x86). */
static __always_inline bool compat_syscall(const struct pt_regs *regs)
{
	if (have_task_btf())
		return bpf_get_current_task_btf()->thread_info.status & TS_COMPAT;
	return BPF_CORE_READ((struct task_struct *)bpf_get_current_task(), thread_info.status) & TS_COMPAT;
}
#elif defined(__TARGET_ARCH_arm64)
/* arm64 has the generic table (asm-generic/unistd.h) */
enum send_syscall {
	NR_write = 64,
	NR_writev = 66,
	NR_sendto = 206,
	NR_sendmsg = 211,
	NR_sendmmsg = 269,
	NR_pwritev2 = 287, /* with offset -1, a writev with flags */
};

/* x0..x5; orig_x0 keeps the first once the return value is in x0 */
static __always_inline void args_from_regs(const struct pt_regs *regs, struct syscall_args *a)
{
	a->arg[0] = regs->orig_x0;
	a->arg[1] = regs->regs[1];
	a->arg[2] = regs->regs[2];
	a->arg[3] = regs->regs[3];
	a->arg[4] = regs->regs[4];
	a->arg[5] = regs->regs[5];
}

#define SYSCALL_NR(regs) ((regs)->syscallno)

/* pstate of an AArch32 process (compat: other numbers and structures) */
#define PSR_MODE32_BIT 0x10
/* thread_info.flags: the same, before bpf_task_pt_regs() (5.15) */
#define TIF_32BIT 22

/* Whether the current syscall was made by a 32-bit process: the saved
 * processor state says. `regs`: its registers, NULL to look them up. */
static __always_inline bool compat_syscall(const struct pt_regs *regs)
{
	if (!regs) {
		if (!bpf_core_enum_value_exists(enum bpf_func_id, BPF_FUNC_task_pt_regs))
			return BPF_CORE_READ((struct task_struct *)bpf_get_current_task(), thread_info.flags) &
			       (1UL << TIF_32BIT);
		regs = (const struct pt_regs *)bpf_task_pt_regs(bpf_get_current_task_btf());
	}
	return regs->pstate & PSR_MODE32_BIT;
}
#endif

/* Fills `f` with the send that syscall `nr` describes in `a`; false for
 * any other syscall. A msghdr or mmsghdr array stays in user memory: it is
 * read once the send returned (see view_user_msghdr). */
static __always_inline bool send_from_syscall(const struct syscall_args *a, long nr, struct inflight *f)
{
	switch (nr) {
	case NR_write:
	case NR_sendto:
		f->buffer.kind = BUFFER_USER;
		f->buffer.base = a->arg[1];
		if (nr == NR_sendto) {
			f->name = a->arg[4];
			f->name_len = a->arg[5];
			f->name_in_user = 1;
		}
		return true;
	case NR_writev:
	case NR_pwritev2:
		f->buffer.kind = BUFFER_USER_IOV_IN_USER;
		f->buffer.base = a->arg[1];
		f->buffer.nr_segs = a->arg[2];
		return true;
	case NR_sendmsg:
		f->kind = INFLIGHT_MSGHDR;
		f->buffer.base = a->arg[1];
		return true;
	case NR_sendmmsg:
		f->kind = INFLIGHT_MMSGHDR;
		f->buffer.base = a->arg[1];
		f->buffer.nr_segs = a->arg[2];
		return true;
	default:
		return false;
	}
}

/* A user msghdr, as sendmsg() got it, seen as the send it describes. */
static __always_inline void view_user_msghdr(const struct user_msghdr *m, struct inflight *f)
{
	f->kind = INFLIGHT_BUFFER;
	f->buffer.kind = BUFFER_USER_IOV_IN_USER;
	f->buffer.base = (__u64)m->msg_iov;
	f->buffer.nr_segs = m->msg_iovlen;
	f->buffer.offset = 0;
	f->name = (__u64)m->msg_name;
	f->name_len = m->msg_namelen;
	f->name_in_user = 1;
}

/* Replaces a pending INFLIGHT_MSGHDR with the send its user msghdr
 * describes; false when it cannot be read. */
static __always_inline bool read_user_msghdr(struct inflight *f, __u64 msghdr)
{
	struct user_msghdr m;

	if (bpf_probe_read_user(&m, sizeof(m), (const void *)msghdr))
		return false;
	view_user_msghdr(&m, f);
	return true;
}

#endif
