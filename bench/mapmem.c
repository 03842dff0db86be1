// SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause
/*
 * mapmem: the kernel memory lotrace's BPF maps take, computed from their
 * types, key and value sizes and max_entries for a given number of CPUs:
 * per-CPU maps hold one value per possible CPU, so a map that is small on a
 * laptop can be large on a 256-CPU host.  No root needed: the BPF object is
 * opened, never loaded.
 *
 *   mapmem [--ring-buffer-size BYTES] [--limit-mib M] [CPUS...]   (default CPUS: 2 64 256)
 *
 * Prints a table, one row per map, one column per CPU count, in MiB.  With
 * --limit-mib, exits 1 when the total at any of the CPU counts exceeds M.
 *
 * The estimate follows the kernel's layout (kernel/bpf/hashtab.c, arraymap.c):
 * a preallocated hash holds max_entries elements of a 48-byte header, the key
 * and the value (per-CPU: a pointer, and the values in per-CPU memory), and a
 * 16-byte bucket per power of two; arrays hold the values; a ring buffer its
 * data pages.  Task and socket storage grow with the tasks and sockets that
 * use them and are shown per object, not in the total.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <bpf/libbpf.h>
#include "lotrace.h"
#include "lotrace.skel.h"

#define MAX_CPU_COUNTS 8
#define HTAB_ELEM_HEADER 48
#define HTAB_BUCKET 16

static unsigned long long round8(unsigned long long n)
{
	return (n + 7) & ~7ull;
}

static unsigned long long pow2_at_least(unsigned long long n)
{
	unsigned long long p = 1;
	while (p < n)
		p <<= 1;
	return p;
}

/* Bytes for map m on a host with ncpu possible CPUs; -1: per object (storage maps). */
static long long map_bytes(const struct bpf_map *m, unsigned ncpu)
{
	unsigned long long key = round8(bpf_map__key_size(m));
	unsigned long long value = round8(bpf_map__value_size(m));
	unsigned long long n = bpf_map__max_entries(m);

	switch (bpf_map__type(m)) {
	case BPF_MAP_TYPE_ARRAY:
		return (long long)(n * value);
	case BPF_MAP_TYPE_PERCPU_ARRAY:
		return (long long)(n * value * ncpu);
	case BPF_MAP_TYPE_HASH:
	case BPF_MAP_TYPE_LRU_HASH:
		return (long long)(n * (HTAB_ELEM_HEADER + key + value) +
				   pow2_at_least(n) * HTAB_BUCKET);
	case BPF_MAP_TYPE_PERCPU_HASH:
	case BPF_MAP_TYPE_LRU_PERCPU_HASH:
		return (long long)(n * (HTAB_ELEM_HEADER + key + 8) + n * value * ncpu +
				   pow2_at_least(n) * HTAB_BUCKET);
	case BPF_MAP_TYPE_RINGBUF:
		return (long long)n;
	case BPF_MAP_TYPE_TASK_STORAGE:
	case BPF_MAP_TYPE_SK_STORAGE:
	case BPF_MAP_TYPE_INODE_STORAGE:
		return -1;
	default:
		return (long long)(n * (key + value)); /* not used by lotrace today */
	}
}

static const char *type_name(const struct bpf_map *m)
{
	const char *name = libbpf_bpf_map_type_str(bpf_map__type(m));
	return name ? name : "?";
}

static int usage(FILE *to, int code)
{
	fprintf(to, "Usage: mapmem [--ring-buffer-size BYTES] [--limit-mib M] [CPUS...]\n"
		    "  The kernel memory of lotrace's BPF maps for each CPU count in CPUS\n"
		    "  (default 2 64 256), in MiB, computed from map types and sizes.\n"
		    "  --ring-buffer-size BYTES  the event ring buffer's size in bytes, as\n"
		    "                  given to lotrace (default %u)\n"
		    "  --limit-mib M   exit 1 if the total at any CPU count exceeds M MiB\n",
		LOTRACE_RINGBUF_BYTES);
	return code;
}

static bool parse_ull(const char *s, unsigned long long *out)
{
	char *end;
	errno = 0;
	*out = strtoull(s, &end, 10);
	return !errno && end != s && !*end && s[0] != '-';
}

int main(int argc, char **argv)
{
	unsigned cpus[MAX_CPU_COUNTS] = { 2, 64, 256 };
	int ncounts = 0;
	unsigned long long ring = LOTRACE_RINGBUF_BYTES, limit_mib = 0;

	for (int i = 1; i < argc; i++) {
		unsigned long long v;
		if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help"))
			return usage(stdout, 0);
		if ((!strcmp(argv[i], "--ring-buffer-size") || !strcmp(argv[i], "--limit-mib")) &&
		    i + 1 < argc) {
			if (!parse_ull(argv[i + 1], &v) || !v || v > 0xffffffffull) {
				fprintf(stderr, "mapmem: %s expects a positive integer below 2^32, got '%s'\n",
					argv[i], argv[i + 1]);
				return 2;
			}
			*(!strcmp(argv[i], "--limit-mib") ? &limit_mib : &ring) = v;
			i++;
			continue;
		}
		if (!parse_ull(argv[i], &v) || !v || v > 65536 || ncounts == MAX_CPU_COUNTS) {
			fprintf(stderr, "mapmem: CPUS are up to %d CPU counts, 1 to 65536; got '%s'\n",
				MAX_CPU_COUNTS, argv[i]);
			return usage(stderr, 2);
		}
		cpus[ncounts++] = (unsigned)v;
	}
	if (!ncounts)
		ncounts = 3;

	struct lotrace_bpf *skel = lotrace_bpf__open();
	if (!skel) {
		fprintf(stderr, "mapmem: opening lotrace's BPF object failed: %s\n", strerror(errno));
		return 1;
	}
	/* As lotrace sizes it before loading. */
	bpf_map__set_max_entries(skel->maps.events, (unsigned)ring);

	double total[MAX_CPU_COUNTS] = { 0 };
	printf("%-18s %-16s %8s %6s %6s", "map", "type", "entries", "key", "value");
	for (int c = 0; c < ncounts; c++)
		printf("  %5u CPUs", cpus[c]);
	printf("\n");
	const struct bpf_map *m;
	bpf_object__for_each_map(m, skel->obj) {
		printf("%-18s %-16s %8u %6u %6u", bpf_map__name(m), type_name(m),
		       bpf_map__max_entries(m), bpf_map__key_size(m), bpf_map__value_size(m));
		for (int c = 0; c < ncounts; c++) {
			long long b = map_bytes(m, cpus[c]);
			if (b < 0) {
				printf("  %10s", "per object");
				continue;
			}
			total[c] += (double)b;
			printf("  %6.2f MiB", (double)b / (1 << 20));
		}
		printf("\n");
	}
	printf("%-18s %-16s %8s %6s %6s", "total", "", "", "", "");
	int rc = 0;
	for (int c = 0; c < ncounts; c++) {
		printf("  %6.2f MiB", total[c] / (1 << 20));
		if (limit_mib && total[c] > (double)limit_mib * (1 << 20))
			rc = 1;
	}
	printf("\n");
	if (rc)
		fprintf(stderr, "mapmem: over the limit of %llu MiB\n", limit_mib);
	lotrace_bpf__destroy(skel);
	return rc;
}
