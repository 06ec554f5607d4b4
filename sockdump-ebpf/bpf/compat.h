/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Kernel differences sockdump depends on, all in one place. Each is resolved
 * at load time by CO-RE against the running kernel's BTF, never by version
 * checks or constants.
 */
#ifndef SOCKDUMP_COMPAT_H
#define SOCKDUMP_COMPAT_H

#include "kernel_types.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

/* Before 5.14 one `unsigned int type` held the iterator kind as bit flags
 * (ITER_IOVEC = 4, ITER_KVEC = 8, ...) together with the direction bit. */
struct iov_iter___pre_5_14 {
	unsigned int type;
} __attribute__((preserve_access_index));

/* 6.4 renamed `iov` to `__iov` when ITER_UBUF got its own iovec overlay. */
struct iov_iter___pre_6_4 {
	const struct iovec *iov;
} __attribute__((preserve_access_index));

/* How the bytes of a send are laid out. */
enum buffer_kind {
	BUFFER_NONE = 0,     /* bytes not in virtual memory (bvec, pipe, ...) */
	BUFFER_USER = 1,     /* one user buffer: ITER_UBUF (6.0+), write(), sendto() */
	BUFFER_USER_IOV = 2, /* iovec array in kernel memory, bases in user memory */
	BUFFER_KERNEL_IOV = 3, /* kvec array in kernel memory, bases in kernel memory */
	BUFFER_USER_IOV_IN_USER = 4, /* iovec array itself in user memory (writev) */
};

struct buffer_view {
	__u64 base;    /* the buffer (BUFFER_USER) or the iovec array */
	__u64 nr_segs; /* iovec entries; 1 for BUFFER_USER */
	__u64 offset;  /* bytes already consumed in the first entry */
	__u32 kind;    /* enum buffer_kind */
};

static __always_inline __u32 iter_kind(const struct iov_iter *it)
{
	if (bpf_core_field_exists(it->iter_type)) {
		__u32 type = BPF_CORE_READ(it, iter_type);

		/* ITER_UBUF exists from 6.0 and is 6 on 6.1 but 0 on 6.12+ */
		if (bpf_core_enum_value_exists(enum iter_type, ITER_UBUF) &&
		    type == bpf_core_enum_value(enum iter_type, ITER_UBUF))
			return BUFFER_USER;
		if (type == bpf_core_enum_value(enum iter_type, ITER_IOVEC))
			return BUFFER_USER_IOV;
		if (type == bpf_core_enum_value(enum iter_type, ITER_KVEC))
			return BUFFER_KERNEL_IOV;
		return BUFFER_NONE;
	}

	const struct iov_iter___pre_5_14 *old = (const void *)it;
	__u32 type = BPF_CORE_READ(old, type);

	if (type & bpf_core_enum_value(enum iter_type, ITER_IOVEC))
		return BUFFER_USER_IOV;
	if (type & bpf_core_enum_value(enum iter_type, ITER_KVEC))
		return BUFFER_KERNEL_IOV;
	return BUFFER_NONE;
}

static __always_inline void read_iter(const struct iov_iter *it, struct buffer_view *view)
{
	view->kind = iter_kind(it);
	view->offset = BPF_CORE_READ(it, iov_offset);
	if (view->kind == BUFFER_USER) {
		view->base = (__u64)BPF_CORE_READ(it, ubuf);
		view->nr_segs = 1;
		return;
	}
	if (bpf_core_field_exists(it->__iov)) {
		view->base = (__u64)BPF_CORE_READ(it, __iov);
	} else {
		const struct iov_iter___pre_6_4 *old = (const void *)it;
		view->base = (__u64)BPF_CORE_READ(old, iov);
	}
	view->nr_segs = BPF_CORE_READ(it, nr_segs);
}

/*
 * Several fields of one struct in one probe read. Each probe read costs tens
 * of nanoseconds, and the hot path needs about twenty, so fields that sit
 * close together are fetched as one span. The span's bounds are CO-RE
 * relocated; a kernel that spreads the fields wider than SPAN_MAX (a lock
 * debugging build, say) falls back to one read per field. The bounds are
 * constants once relocated, so the verifier keeps only one of the two paths.
 */
#define SPAN_MAX 128

/* spans start on an 8-byte boundary, so 8-byte fields in them stay aligned */
#define SPAN_START(type, first) (bpf_core_field_offset(type, first) & ~7u)
#define SPAN_END(type, last) (bpf_core_field_offset(type, last) + bpf_core_field_size(type, last))
#define SPAN_FITS(type, first, last)                                                               \
	(SPAN_START(type, first) < SPAN_END(type, last) &&                                         \
	 SPAN_END(type, last) - SPAN_START(type, first) < SPAN_MAX)
/* whether `field` lies inside the span [first, last] */
#define SPAN_HOLDS(type, first, last, field)                                                       \
	(bpf_core_field_offset(type, field) >= SPAN_START(type, first) &&                          \
	 SPAN_END(type, field) <= SPAN_END(type, last))

/* A span buffer: 8-byte aligned for the verifier's stack checks. */
#define DECLARE_SPAN(name) __u64 name##_words[SPAN_MAX / 8]; char *name = (char *)name##_words

/* Reads [first, last] of *ptr into span; 0 on success. */
#define READ_SPAN(span, ptr, type, first, last)                                                    \
	bpf_probe_read_kernel(span, (SPAN_END(type, last) - SPAN_START(type, first)) & (SPAN_MAX - 1), \
			      (const char *)(ptr) + SPAN_START(type, first))

/* A pointer `off` bytes into a span. The barrier keeps clang from turning
 * the addition into a bitwise OR on the (aligned) stack pointer, which the
 * verifier refuses; the verifier still sees the constant. */
static __always_inline char *span_at(char *span, __u32 off)
{
	asm volatile("" : "+r"(off));
	return span + (off & (SPAN_MAX - 1));
}

/* A field inside a span read from `first`. */
#define SPAN_FIELD(span, type, first, field, ctype)                                                \
	(*(ctype *)span_at(span, bpf_core_field_offset(type, field) - SPAN_START(type, first)))

/* bpf_get_current_task_btf() exists from 5.11: a task pointer the verifier
 * lets us walk with plain loads instead of probe reads. */
static __always_inline bool have_task_btf(void)
{
	return bpf_core_enum_value_exists(enum bpf_func_id, BPF_FUNC_get_current_task_btf);
}

/* unix_address.name and pid.numbers are flexible arrays: CO-RE access
 * through their element 0 is rejected by aya, so compute the address. */
static __always_inline const char *unix_address_sun_path(const struct unix_address *addr)
{
	return (const char *)addr + bpf_core_field_offset(struct unix_address, name) +
	       __builtin_offsetof(struct sockaddr_un, sun_path);
}

static __always_inline __u32 pid_nr(const struct pid *pid)
{
	int nr = 0;

	if (!pid)
		return 0;
	bpf_probe_read_kernel(&nr, sizeof(nr),
			      (const char *)pid + bpf_core_field_offset(struct pid, numbers) +
				      bpf_core_field_offset(struct upid, nr));
	return nr;
}

#endif
