// SPDX-License-Identifier: GPL-2.0-only
/*
 * The raw syscall tracepoints sys_enter/sys_exit (BTF-typed, 5.5+), where
 * neither trampolines nor kprobes exist. They fire for every syscall, so the
 * first thing each program does is leave unless the syscall is one of the
 * sends below. Raw tracepoints skip the perf event layer that the
 * per-syscall tracepoints go through, which costs several times more here.
 *
 * They see only sends made by these syscalls: not io_uring, splice or
 * sendfile, nor sends made by the kernel itself.
 */
#include "capture.h"
#include <bpf/bpf_tracing.h>

/* x86_64 syscall numbers (the object is built for x86 only) */
enum send_syscall {
	NR_write = 1,
	NR_writev = 20,
	NR_sendto = 44,
	NR_sendmsg = 46,
	NR_sendmmsg = 307,
	NR_pwritev2 = 328, /* with offset -1, a writev with flags */
};

/* The struct socket behind fd if it is an AF_UNIX socket. This runs for every
 * write() in the system: non-sockets leave after the inode mode. */
static __always_inline const struct socket *unix_socket_of_fd(__u64 fd)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct fdtable *fdt = BPF_CORE_READ(task, files, fdt);
	struct file **fds;
	struct file *file;
	struct socket *sock;

	if (!fdt || fd >= BPF_CORE_READ(fdt, max_fds))
		return NULL;
	fds = BPF_CORE_READ(fdt, fd);
	if (bpf_probe_read_kernel(&file, sizeof(file), &fds[fd]) || !file)
		return NULL;
	if ((BPF_CORE_READ(file, f_inode, i_mode) & S_IFMT) != S_IFSOCK)
		return NULL;
	sock = BPF_CORE_READ(file, private_data);
	if (BPF_CORE_READ(sock, sk, __sk_common.skc_family) != AF_UNIX)
		return NULL;
	return sock;
}

SEC("tp_btf/sys_enter")
int BPF_PROG(tp_sys_enter, struct pt_regs *regs, long id)
{
	struct inflight f = {};
	const struct socket *sock;

	switch (id) {
	case NR_write:
	case NR_sendto:
		f.buffer.kind = BUFFER_USER;
		f.buffer.base = BPF_CORE_READ(regs, si);
		f.buffer.count = BPF_CORE_READ(regs, dx);
		if (id == NR_sendto) {
			f.name = BPF_CORE_READ(regs, r8);
			f.name_len = BPF_CORE_READ(regs, r9);
			f.name_in_user = 1;
		}
		break;
	case NR_writev:
	case NR_pwritev2:
		f.buffer.kind = BUFFER_USER_IOV_IN_USER;
		f.buffer.base = BPF_CORE_READ(regs, si);
		f.buffer.nr_segs = BPF_CORE_READ(regs, dx);
		break;
	case NR_sendmsg:
		f.kind = INFLIGHT_MSGHDR;
		f.buffer.base = BPF_CORE_READ(regs, si);
		break;
	case NR_sendmmsg:
		f.kind = INFLIGHT_MMSGHDR;
		f.buffer.base = BPF_CORE_READ(regs, si);
		f.buffer.nr_segs = BPF_CORE_READ(regs, dx);
		break;
	default:
		return 0;
	}
	sock = unix_socket_of_fd(BPF_CORE_READ(regs, di));
	if (!sock || !send_wanted(sock, &f))
		return 0;
	f.sock = (__u64)sock;
	remember_send(&f);
	return 0;
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

/* sendmmsg() messages walked per call; the rest are counted as lost. */
#define MMSG_MAX 8

SEC("tp_btf/sys_exit")
int BPF_PROG(tp_sys_exit, struct pt_regs *regs, long ret)
{
	struct scratch *s;
	struct user_msghdr m;
	struct mmsghdr mm;
	__u64 base;
	__u32 n;

	switch (BPF_CORE_READ(regs, orig_ax)) {
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
	s = take_send(SLOT_STREAM);
	if (!s || ret <= 0)
		return 0;
	if (s->pending.kind == INFLIGHT_BUFFER)
		return record_pending(ret, SLOT_STREAM);
	if (s->pending.kind == INFLIGHT_MSGHDR) {
		if (bpf_probe_read_user(&m, sizeof(m), (const void *)s->pending.buffer.base))
			return 0;
		view_user_msghdr(&m, &s->pending);
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
