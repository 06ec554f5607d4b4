// SPDX-License-Identifier: GPL-2.0-only
/*
 * The raw syscall tracepoints sys_enter/sys_exit (BTF-typed, 5.5+), where
 * neither trampolines nor kprobes exist. They fire for every syscall, so the
 * first thing each program does is leave unless the syscall is one of the
 * sends below. Raw tracepoints skip the perf event layer that the
 * per-syscall tracepoints go through, which costs several times more here.
 *
 * From 7.2 they run tp_btf programs preemptible; from 7.0, as for the
 * other tracepoints, the same code attaches through perf (docs/DESIGN.md).
 *
 * They see only sends made by these syscalls from 64-bit processes: not
 * io_uring, splice or sendfile, 32-bit processes, nor sends made by the
 * kernel itself.
 */
#include "syscall_send.h"
#include <bpf/bpf_tracing.h>

/* The current task's open file table: max_fds and the file array. */
static __always_inline int current_fds(__u32 *max_fds, struct file ***fds)
{
	struct fdtable *fdt;
	DECLARE_SPAN(span);

	if (have_task_btf()) {
		/* plain loads: a few nanoseconds instead of a probe read each */
		fdt = bpf_get_current_task_btf()->files->fdt;
		*max_fds = fdt->max_fds;
		*fds = fdt->fd;
		return 0;
	}
	fdt = BPF_CORE_READ((struct task_struct *)bpf_get_current_task(), files, fdt);
	if (!fdt)
		return -1;
	if (SPAN_FITS(struct fdtable, max_fds, fd)) {
		if (READ_SPAN(span, fdt, struct fdtable, max_fds, fd))
			return -1;
		*max_fds = SPAN_FIELD(span, struct fdtable, max_fds, max_fds, unsigned int);
		*fds = SPAN_FIELD(span, struct fdtable, max_fds, fd, struct file **);
		return 0;
	}
	*max_fds = BPF_CORE_READ(fdt, max_fds);
	*fds = BPF_CORE_READ(fdt, fd);
	return 0;
}

/* The inode and private data of an open file. */
static __always_inline void read_file(const struct file *file, struct inode **inode, void **private_data)
{
	DECLARE_SPAN(span);

	if (SPAN_FITS(struct file, private_data, f_inode)) {
		if (READ_SPAN(span, file, struct file, private_data, f_inode)) {
			*inode = NULL;
			return;
		}
		*private_data = SPAN_FIELD(span, struct file, private_data, private_data, void *);
		*inode = SPAN_FIELD(span, struct file, private_data, f_inode, struct inode *);
		return;
	}
	*private_data = BPF_CORE_READ(file, private_data);
	*inode = BPF_CORE_READ(file, f_inode);
}

/* The socket behind fd if it is an AF_UNIX socket. This runs for every write()
 * in the system: non-sockets leave after the inode mode. */
static __always_inline const struct socket *unix_socket_of_fd(__u64 fd, struct socket_view *v)
{
	struct file **fds;
	struct file *file;
	struct inode *inode;
	void *private_data;
	struct sock *sk;
	__u32 max_fds;

	if (current_fds(&max_fds, &fds) || fd >= max_fds)
		return NULL;
	if (bpf_probe_read_kernel(&file, sizeof(file), &fds[fd]) || !file)
		return NULL;
	read_file(file, &inode, &private_data);
	if (!inode || (BPF_CORE_READ(inode, i_mode) & S_IFMT) != S_IFSOCK)
		return NULL;
	if (read_socket(private_data, v))
		return NULL;
	/* a local copy: CO-RE must not see the access through the view struct */
	sk = v->sk;
	if (BPF_CORE_READ(sk, __sk_common.skc_family) != AF_UNIX)
		return NULL;
	return private_data;
}

/* The entry of syscall `id` with arguments `a` (fd first), and its
 * registers `regs` where the program has them. */
static __always_inline int syscall_enter(const struct syscall_args *a, long id, const struct pt_regs *regs)
{
	struct inflight f = { .iter_left = ITER_LEFT_UNKNOWN };
	const struct socket *sock;
	struct socket_view v;

	if (!send_from_syscall(a, id, &f))
		return 0;
	/* sockdump's own output (to a socket, a pipe, a file) never needs the fd lookup */
	if (is_self() || compat_syscall(regs))
		return 0;
	sock = unix_socket_of_fd(a->arg[0], &v);
	if (!sock)
		return 0;
	if (!claim_send(&f, sock, &v))
		return 0;
	remember_send(&f);
	return 0;
}

/* sendmmsg() messages walked per call; the rest are counted as lost. */
#define MMSG_MAX 8

/* The return of syscall `id` with `ret`. */
static __always_inline int syscall_exit(long id, long ret)
{
	struct scratch *s;
	struct mmsghdr mm;
	__u64 base;
	__u32 n;

	switch (id) {
	case NR_write:
	case NR_writev:
	case NR_sendto:
	case NR_sendmsg:
	case NR_sendmmsg:
	case NR_pwritev2:
		break;
	default:
		return 0;
	}
	s = take_exit(SLOT_STREAM, ret, &(struct exit_view){ .left = ITER_LEFT_UNKNOWN });
	/* 0 is a send too: an empty datagram (record_pending skips empty stream writes) */
	if (!s || ret < 0)
		return 0;
	if (s->pending.kind == INFLIGHT_BUFFER)
		return record_pending(ret, SLOT_STREAM);
	if (s->pending.kind == INFLIGHT_MSGHDR) {
		if (!read_user_msghdr(&s->pending, s->pending.buffer.base))
			return 0;
		return record_pending(ret, SLOT_STREAM);
	}
	/* sendmmsg: ret messages were sent, each says in msg_len how much */
	base = s->pending.buffer.base;
	n = ret;
	for (__u32 i = 0; i < MMSG_MAX; i++) {
		if (i >= n)
			break;
		if (bpf_probe_read_user(&mm, sizeof(mm), (const void *)(base + i * sizeof(mm))))
			break;
		view_user_msghdr(&mm.msg_hdr, &s->pending);
		record_pending(mm.msg_len, SLOT_STREAM);
	}
	if (n > MMSG_MAX)
		count(SOCKDUMP_LOST_MMSG, n - MMSG_MAX);
	return 0;
}

SEC("tp_btf/sys_enter")
int BPF_PROG(tp_sys_enter, struct pt_regs *regs, long id)
{
	struct syscall_args a;

	args_from_regs(regs, &a);
	return syscall_enter(&a, id, regs);
}

SEC("tp_btf/sys_exit")
int BPF_PROG(tp_sys_exit, struct pt_regs *regs, long ret)
{
	return syscall_exit(SYSCALL_NR(regs), ret);
}

/* The records raw_syscalls:sys_enter and sys_exit write for perf (their
 * format files in tracefs). */
struct sys_enter_record {
	__u64 common; /* struct trace_entry */
	long id;
	struct syscall_args args;
};

struct sys_exit_record {
	__u64 common;
	long id;
	long ret;
};

/*
 * The same tracepoints through perf, for kernels that run tp_btf programs
 * preemptible (see README, Hooks): perf's handler keeps preemption off, so
 * another task's preempted program never makes the kernel skip these (a
 * preempted bpf() map operation still can: docs/DESIGN.md). Each firing
 * costs more than through tp_btf.
 */
SEC("tracepoint/raw_syscalls/sys_enter")
int tp_sys_enter_perf(struct sys_enter_record *record)
{
	struct syscall_args a = record->args;

	return syscall_enter(&a, record->id, NULL);
}

SEC("tracepoint/raw_syscalls/sys_exit")
int tp_sys_exit_perf(struct sys_exit_record *record)
{
	return syscall_exit(record->id, record->ret);
}
