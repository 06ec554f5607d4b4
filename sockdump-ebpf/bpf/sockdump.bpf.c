// SPDX-License-Identifier: GPL-2.0-only
/*
 * The three hook families. Each one stashes the socket and the location of the
 * bytes when a send starts and records the send when it returns:
 *
 *   fentry/fexit      unix_{stream,dgram}_sendmsg, via BPF trampolines (5.5+)
 *   kprobe/kretprobe  the same two functions, where trampolines are refused
 *   tracepoints       the send syscalls, where neither exists; they see only
 *                     sends made by these syscalls (not io_uring, splice or
 *                     sendfile, nor sends made by the kernel itself)
 *
 * unix_seqpacket_sendmsg calls unix_dgram_sendmsg, so seqpacket is covered.
 */
#include "capture.h"
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "GPL";

static __always_inline int sendmsg_enter(const struct socket *sock, const struct msghdr *msg)
{
	struct inflight f = {};

	if (!send_wanted(sock, &f))
		return 0;
	f.sock = (__u64)sock;
	f.kind = INFLIGHT_BUFFER;
	read_iter(&msg->msg_iter, &f.buffer);
	f.name = (__u64)BPF_CORE_READ(msg, msg_name);
	f.name_len = BPF_CORE_READ(msg, msg_namelen);
	remember_send(&f);
	return 0;
}

static __always_inline int sendmsg_exit(__s64 ret, __u32 slot)
{
	struct inflight f;

	if (take_send(&f))
		record_send(&f, ret, slot);
	return 0;
}

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

/* Attached to both sendmsg functions; kprobes never nest on a CPU. */
SEC("kprobe/unix_stream_sendmsg")
int BPF_KPROBE(kprobe_unix_sendmsg, struct socket *sock, struct msghdr *msg)
{
	return sendmsg_enter(sock, msg);
}

SEC("kretprobe/unix_stream_sendmsg")
int BPF_KRETPROBE(kretprobe_unix_sendmsg, int ret)
{
	return sendmsg_exit(ret, SLOT_STREAM);
}

/* --- syscall tracepoints --- */

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

static __always_inline int syscall_enter(__u64 fd, struct inflight *f)
{
	const struct socket *sock = unix_socket_of_fd(fd);

	if (!sock || !send_wanted(sock, f))
		return 0;
	f->sock = (__u64)sock;
	remember_send(f);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_write")
int tp_enter_write(struct syscall_enter_args *ctx)
{
	struct inflight f = {
		.kind = INFLIGHT_BUFFER,
		.buffer = { .kind = BUFFER_USER, .base = ctx->args[1], .count = ctx->args[2] },
	};

	return syscall_enter(ctx->args[0], &f);
}

SEC("tracepoint/syscalls/sys_enter_writev")
int tp_enter_writev(struct syscall_enter_args *ctx)
{
	struct inflight f = {
		.kind = INFLIGHT_BUFFER,
		.buffer = { .kind = BUFFER_USER_IOV_IN_USER,
			    .base = ctx->args[1],
			    .nr_segs = ctx->args[2] },
	};

	return syscall_enter(ctx->args[0], &f);
}

SEC("tracepoint/syscalls/sys_enter_sendto")
int tp_enter_sendto(struct syscall_enter_args *ctx)
{
	struct inflight f = {
		.kind = INFLIGHT_BUFFER,
		.buffer = { .kind = BUFFER_USER, .base = ctx->args[1], .count = ctx->args[2] },
		.name = ctx->args[4],
		.name_len = ctx->args[5],
		.name_in_user = 1,
	};

	return syscall_enter(ctx->args[0], &f);
}

SEC("tracepoint/syscalls/sys_enter_sendmsg")
int tp_enter_sendmsg(struct syscall_enter_args *ctx)
{
	struct inflight f = { .kind = INFLIGHT_MSGHDR, .buffer = { .base = ctx->args[1] } };

	return syscall_enter(ctx->args[0], &f);
}

SEC("tracepoint/syscalls/sys_enter_sendmmsg")
int tp_enter_sendmmsg(struct syscall_enter_args *ctx)
{
	struct inflight f = {
		.kind = INFLIGHT_MMSGHDR,
		.buffer = { .base = ctx->args[1], .nr_segs = ctx->args[2] },
	};

	return syscall_enter(ctx->args[0], &f);
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

static __always_inline int syscall_exit(__s64 ret)
{
	struct inflight f;
	struct user_msghdr m;
	struct mmsghdr mm;
	__u64 base;
	__u32 n;

	if (!take_send(&f) || ret <= 0)
		return 0;
	if (f.kind == INFLIGHT_BUFFER) {
		record_send(&f, ret, SLOT_STREAM);
		return 0;
	}
	if (f.kind == INFLIGHT_MSGHDR) {
		if (bpf_probe_read_user(&m, sizeof(m), (const void *)f.buffer.base))
			return 0;
		view_user_msghdr(&m, &f);
		record_send(&f, ret, SLOT_STREAM);
		return 0;
	}
	/* sendmmsg: ret messages were sent, each says in msg_len how much */
	base = f.buffer.base;
	n = ret;
	for (__u32 i = 0; i < MMSG_MAX; i++) {
		if (i >= n)
			break;
		if (bpf_probe_read_user(&mm, sizeof(mm), (const void *)(base + i * sizeof(mm))))
			break;
		view_user_msghdr(&mm.msg_hdr, &f);
		record_send(&f, mm.msg_len, SLOT_STREAM);
	}
	if (n > MMSG_MAX)
		count(SOCKDUMP_LOST_MMSG, n - MMSG_MAX);
	return 0;
}

/* One exit program, attached to the exit of every syscall above. */
SEC("tracepoint/syscalls/sys_exit_write")
int tp_exit_send(struct syscall_exit_args *ctx)
{
	return syscall_exit(ctx->ret);
}
