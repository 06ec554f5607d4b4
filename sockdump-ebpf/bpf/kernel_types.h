/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The few kernel types sockdump reads, declared by hand instead of a generated
 * vmlinux.h. Every struct carries preserve_access_index, so field offsets are
 * CO-RE relocated against the running kernel's BTF: only the fields named here
 * need to exist there, in any order, at any offset.
 */
#ifndef SOCKDUMP_KERNEL_TYPES_H
#define SOCKDUMP_KERNEL_TYPES_H

/* tell bpf_tracing.h that pt_regs uses the kernel's field names */
#define __VMLINUX_H__

typedef signed char __s8;
typedef unsigned char __u8;
typedef short __s16;
typedef unsigned short __u16;
typedef int __s32;
typedef unsigned int __u32;
typedef long long __s64;
typedef unsigned long long __u64;
typedef __u16 __be16;
typedef __u32 __be32;
typedef __u32 __wsum;
typedef _Bool bool;
#define true 1
#define false 0

enum bpf_map_type {
	BPF_MAP_TYPE_HASH = 1,
	BPF_MAP_TYPE_ARRAY = 2,
	BPF_MAP_TYPE_PERCPU_ARRAY = 6,
	BPF_MAP_TYPE_LRU_HASH = 9,
	BPF_MAP_TYPE_RINGBUF = 27,
};

#define BPF_ANY 0
#define BPF_NOEXIST 1

/* Helper ids, for checking with CO-RE whether the running kernel has one. */
enum bpf_func_id {
	BPF_FUNC_get_current_task_btf = 158,
	BPF_FUNC_task_pt_regs = 175,
};

/* UAPI flags of bpf_ringbuf_output() and bpf_ringbuf_query() */
#define BPF_RB_NO_WAKEUP (1ULL << 0)
#define BPF_RB_FORCE_WAKEUP (1ULL << 1)
#define BPF_RB_AVAIL_DATA 0

#pragma clang attribute push(__attribute__((preserve_access_index)), apply_to = record)

#if defined(__TARGET_ARCH_x86)
struct pt_regs {
	unsigned long di, si, dx, cx, r8, r9, r10, ax, orig_ax, sp, ip;
};
#elif defined(__TARGET_ARCH_arm64)
/* what a kprobe's context is read as (bpf_tracing.h's PT_REGS_PARM*) */
struct user_pt_regs {
	__u64 regs[31];
	__u64 sp;
	__u64 pc;
	__u64 pstate;
};

/* The kernel's: user_pt_regs's fields (in an anonymous union, which CO-RE
 * looks into), then the syscall's first argument, which the return value
 * overwrites in regs[0], and its number. */
struct pt_regs {
	__u64 regs[31];
	__u64 sp;
	__u64 pc;
	__u64 pstate;
	__u64 orig_x0;
	__s32 syscallno;
};
#else
#error "the eBPF programs are built for x86 (-D__TARGET_ARCH_x86) or arm64 (-D__TARGET_ARCH_arm64)"
#endif

/* the iterator inside struct msghdr */
enum iter_type {
	ITER_IOVEC, /* values differ per kernel: always use bpf_core_enum_value */
	ITER_KVEC,
	ITER_UBUF,
};

struct iovec {
	void *iov_base;
	unsigned long iov_len;
};

struct iov_iter {
	__u8 iter_type;
	unsigned long iov_offset;
	const struct iovec *__iov;
	void *ubuf;
	unsigned long count;
	unsigned long nr_segs;
};

struct msghdr {
	void *msg_name;
	int msg_namelen;
	struct iov_iter msg_iter;
};

struct sockaddr_un {
	unsigned short sun_family;
	char sun_path[108];
};

struct unix_address {
	int len;
	struct sockaddr_un name[];
};

struct upid {
	int nr;
};

struct pid {
	struct upid numbers[1];
};

struct super_block {
	unsigned int s_dev;
};

struct inode {
	unsigned short i_mode;
	struct super_block *i_sb;
	unsigned long i_ino;
};

struct dentry {
	struct inode *d_inode;
};

struct path {
	struct dentry *dentry;
};

struct sock_common {
	unsigned short skc_family;
	unsigned long skc_flags; /* sk_flags (here since 4.4) */
};

struct socket;

typedef struct {
	__u32 val;
} kuid_t;

struct sk_buff_head {
	__u32 qlen;
};

struct sock {
	struct sock_common __sk_common;
	struct sk_buff_head sk_receive_queue;
	struct pid *sk_peer_pid;
	struct socket *sk_socket;
	kuid_t sk_uid; /* the socket's owner (4.10+) */
};

#define SOCK_DEAD 0 /* enum sock_flags, first since 2.6 */

struct unix_sock {
	struct sock sk;
	struct unix_address *addr;
	struct path path;
	struct sock *peer;
};

struct socket {
	short type;
	struct file *file;
	struct sock *sk;
};

struct socket_alloc {
	struct socket socket;
	struct inode vfs_inode;
};

struct file {
	struct inode *f_inode;
	void *private_data;
};

struct fdtable {
	unsigned int max_fds;
	struct file **fd;
};

struct files_struct {
	struct fdtable *fdt;
};

struct thread_info {
	__u32 status;	     /* x86 */
	unsigned long flags; /* arm64 */
};

struct kernfs_node {
	const char *name;
	struct kernfs_node *parent;
};

/* 6.15 renamed kernfs_node.parent (RCU-protected since) */
struct kernfs_node___rcu {
	struct kernfs_node *__parent;
};

struct cgroup {
	struct kernfs_node *kn;
};

struct css_set {
	struct cgroup *dfl_cgrp;
};

struct mm_struct {
	unsigned long arg_start;
	unsigned long arg_end;
};

struct task_struct {
	struct thread_info thread_info;
	unsigned int flags; /* PF_* */
	int pid;
	int tgid;
	struct task_struct *real_parent;
	struct files_struct *files;
	struct mm_struct *mm;
	struct css_set *cgroups;
	char comm[16];
};

#pragma clang attribute pop

/* UAPI: what bpf_get_ns_current_pid_tgid() fills in. */
struct bpf_pidns_info {
	__u32 pid;
	__u32 tgid;
};

/* UAPI, read from user memory by the tracepoint path. */
struct user_msghdr {
	void *msg_name;
	int msg_namelen;
	struct iovec *msg_iov;
	unsigned long msg_iovlen;
	void *msg_control;
	unsigned long msg_controllen;
	unsigned int msg_flags;
};

struct mmsghdr {
	struct user_msghdr msg_hdr;
	unsigned int msg_len;
};

#define AF_UNIX 1
#define S_IFMT 00170000
#define S_IFSOCK 0140000

#endif
