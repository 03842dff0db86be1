#include "kmaps.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include "lotrace.h"

#define KMAP_MAX_KEY 64
#ifndef ENOTSUPP
#define ENOTSUPP 524 /* kernel-internal errno some BPF commands return */
#endif

/* Per-CPU values are laid out 8-byte aligned, one per possible CPU. */
static size_t percpu_stride(size_t value_size)
{
	return (value_size + 7) & ~(size_t)7;
}

int kmap_reader_init(struct kmap_reader *r, size_t max_value_size)
{
	memset(r, 0, sizeof(*r));
	r->ncpu = libbpf_num_possible_cpus();
	if (r->ncpu <= 0) {
		errno = r->ncpu ? -r->ncpu : EINVAL;
		return -1;
	}
	r->stride = percpu_stride(max_value_size);
	r->buf = calloc((size_t)r->ncpu, r->stride);
	return r->buf ? 0 : -1;
}

void kmap_reader_free(struct kmap_reader *r)
{
	free(r->buf);
	r->buf = NULL;
}

/*
 * Values per key in map fd: one per possible CPU for the per-CPU types, else
 * one (the counters shared by all CPUs, updated with atomic adds).
 */
static int copies_of(const struct kmap_reader *r, int fd)
{
	struct bpf_map_info info;
	__u32 len = sizeof(info);
	memset(&info, 0, sizeof(info));
	if (bpf_obj_get_info_by_fd(fd, &info, &len))
		return -1;
	switch (info.type) {
	case BPF_MAP_TYPE_PERCPU_ARRAY:
	case BPF_MAP_TYPE_PERCPU_HASH:
	case BPF_MAP_TYPE_LRU_PERCPU_HASH:
		return r->ncpu;
	default:
		return 1;
	}
}

static void sum_copies(int copies, const void *values, size_t value_size, size_t nfields,
		       uint64_t *sum)
{
	size_t stride = percpu_stride(value_size);
	memset(sum, 0, nfields * sizeof(*sum));
	for (int c = 0; c < copies; c++) {
		const uint64_t *v = (const uint64_t *)((const char *)values + (size_t)c * stride);
		for (size_t f = 0; f < nfields; f++)
			sum[f] += v[f];
	}
}

long kmap_foreach(struct kmap_reader *r, int fd, size_t key_size, size_t value_size,
		  size_t nfields, kmap_fn fn, void *ctx)
{
	char key[KMAP_MAX_KEY], next[KMAP_MAX_KEY];
	uint64_t sum[KMAP_MAX_FIELDS];
	const void *prev = NULL;
	long n = 0;

	int copies = copies_of(r, fd);
	if (copies < 0 || key_size > KMAP_MAX_KEY || nfields > KMAP_MAX_FIELDS ||
	    percpu_stride(value_size) > r->stride)
		return -1;
	while (!bpf_map_get_next_key(fd, prev, next)) {
		memcpy(key, next, key_size);
		prev = key;
		if (bpf_map_lookup_elem(fd, key, r->buf))
			continue;
		sum_copies(copies, r->buf, value_size, nfields, sum);
		struct kmap_entry e = { key, sum, r->buf, percpu_stride(value_size), copies };
		fn(ctx, &e);
		n++;
	}
	return n;
}

int kmap_take(struct kmap_reader *r, int fd, const void *key, size_t value_size, size_t nfields,
	      uint64_t *sum)
{
	int copies = copies_of(r, fd);
	if (copies < 0)
		return -errno;
	if (nfields > KMAP_MAX_FIELDS || percpu_stride(value_size) > r->stride)
		return -EINVAL;
	int err = bpf_map_lookup_and_delete_elem(fd, key, r->buf);
	if (err == -EINVAL || err == -ENOTSUPP || err == -EOPNOTSUPP) {
		/* Before Linux 5.14 hashes cannot do it in one step. */
		err = bpf_map_lookup_elem(fd, key, r->buf);
		if (!err)
			err = bpf_map_delete_elem(fd, key);
	}
	if (err)
		return err < 0 ? err : -errno;
	sum_copies(copies, r->buf, value_size, nfields, sum);
	return 0;
}

int kmap_lookup(struct kmap_reader *r, int fd, const void *key, size_t value_size,
		struct kmap_entry *e)
{
	int copies = copies_of(r, fd);
	if (copies < 0 || percpu_stride(value_size) > r->stride)
		return -1;
	if (bpf_map_lookup_elem(fd, key, r->buf))
		return -1;
	*e = (struct kmap_entry){ key, NULL, r->buf, percpu_stride(value_size), copies };
	return 0;
}

const char *kmap_proc_comm(const struct kmap_entry *e)
{
	for (int c = 0; c < e->copies; c++) {
		const struct lt_proc_val *v =
			(const void *)((const char *)e->values + (size_t)c * e->stride);
		if (v->comm[0])
			return v->comm;
	}
	return NULL;
}

uint64_t kmap_proc_start(const struct kmap_entry *e)
{
	for (int c = 0; c < e->copies; c++) {
		const struct lt_proc_val *v =
			(const void *)((const char *)e->values + (size_t)c * e->stride);
		if (v->start_ns)
			return v->start_ns;
	}
	return 0;
}

uint64_t kmap_proc_cgroup(const struct kmap_entry *e)
{
	for (int c = 0; c < e->copies; c++) {
		const struct lt_proc_val *v =
			(const void *)((const char *)e->values + (size_t)c * e->stride);
		if (v->cgroup_id)
			return v->cgroup_id;
	}
	return 0;
}

void kmap_cgroup_path(const struct lt_cgroup_path *p, char *out, size_t len)
{
	size_t n = 0;
	int depth = p->depth < LOTRACE_CGROUP_DEPTH ? (int)p->depth : LOTRACE_CGROUP_DEPTH;
	out[0] = 0;
	if (p->truncated)
		n += (size_t)snprintf(out, len, "/...");
	for (int i = depth - 1; i >= 0 && n < len; i--)
		n += (size_t)snprintf(out + n, len - n, "/%.*s",
				      (int)strnlen(p->name[i], LOTRACE_CGROUP_NAME_LEN), p->name[i]);
	if (!depth && !p->truncated)
		snprintf(out, len, "/");
}

static void total_of(void *ctx, const struct kmap_entry *e)
{
	struct lt_count *out = ctx;
	__u32 i = *(const __u32 *)e->key;
	if (i < LT_TOT_COUNT)
		out[i] = (struct lt_count){ e->sum[0], e->sum[1] };
}

int kmap_read_totals(struct kmap_reader *r, int fd, struct lt_count *out)
{
	memset(out, 0, LT_TOT_COUNT * sizeof(*out));
	return kmap_foreach(r, fd, sizeof(__u32), sizeof(struct lt_count), 2, total_of, out) < 0 ?
		       -1 : 0;
}
