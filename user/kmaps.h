/*
 * Reading lotrace's counter maps from user space: one place that sums the
 * per-CPU copies (of the per-CPU maps) for `stat` snapshots and `export`
 * scans alike.
 */
#ifndef LOTRACE_KMAPS_H
#define LOTRACE_KMAPS_H

#include <stddef.h>
#include <stdint.h>
#include "lotrace.h"

#define KMAP_MAX_FIELDS 4

struct kmap_reader {
	int ncpu;
	size_t stride;   /* bytes per CPU in a value buffer (8-aligned) */
	void *buf;       /* room for one value per possible CPU */
};

/*
 * One entry: its key, the sums of the value's leading __u64 counters over its
 * copies, and the raw copies (one per possible CPU in a per-CPU map, else one).
 */
struct kmap_entry {
	const void *key;
	const uint64_t *sum;
	const void *values;
	size_t stride;
	int copies;
};

typedef void (*kmap_fn)(void *ctx, const struct kmap_entry *e);

/* Sized for values up to max_value_size bytes.  0, or -1 (errno set). */
int kmap_reader_init(struct kmap_reader *r, size_t max_value_size);
void kmap_reader_free(struct kmap_reader *r);
/* The entry of key in map fd, its copies in r's buffer (sum NULL).  0, or -1. */
int kmap_lookup(struct kmap_reader *r, int fd, const void *key, size_t value_size,
		struct kmap_entry *e);
/*
 * Calls fn for every entry of the map fd (per-CPU or not) whose values start with
 * nfields __u64 counters.  Returns the number of entries, or -1.
 */
long kmap_foreach(struct kmap_reader *r, int fd, size_t key_size, size_t value_size,
		  size_t nfields, kmap_fn fn, void *ctx);
/* Reads and deletes one entry in one step; sum gets its counters.  0 or -errno. */
int kmap_take(struct kmap_reader *r, int fd, const void *key, size_t value_size, size_t nfields,
	      uint64_t *sum);
/* The comm of a proc_counts entry: the first CPU's copy that has one, or NULL. */
const char *kmap_proc_comm(const struct kmap_entry *e);
/* The process start time (ns after boot) of a proc_counts entry, or 0. */
uint64_t kmap_proc_start(const struct kmap_entry *e);
/* The cgroup id of a proc_counts entry, or 0. */
uint64_t kmap_proc_cgroup(const struct kmap_entry *e);
/* A proc_cgroups value as a path: "/", "/system.slice/x.service", "/.../deep/leaf". */
struct lt_cgroup_path;
#define KMAP_CGROUP_PATH_LEN (LOTRACE_CGROUP_DEPTH * LOTRACE_CGROUP_NAME_LEN + 8)
void kmap_cgroup_path(const struct lt_cgroup_path *p, char *out, size_t len);
/* The `totals` map (enum lotrace_total), summed over CPUs.  0, or -1. */
struct lt_count;
int kmap_read_totals(struct kmap_reader *r, int fd, struct lt_count *out);

#endif
