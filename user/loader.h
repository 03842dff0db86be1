/* Loading, attaching and reading lotrace's BPF side. */
#ifndef LOTRACE_LOADER_H
#define LOTRACE_LOADER_H

#include <stdint.h>
#include <stdio.h>
#include <time.h>
#include "agg.h"
#include "kmaps.h"
#include "lo_attach.h"
#include "opts.h"

struct lotrace_bpf;
struct ring_buffer;
struct bpf_link;

#define LT_MAX_LINKS 64

struct tracer {
	struct lotrace_bpf *skel;
	struct bpf_link *links[LT_MAX_LINKS];
	int nlinks;
	struct ring_buffer *rb;
	struct lo_attachment lo;
	struct agg *agg;
	const char *backend;
};

/* 0 on success; on failure a one-line reason was printed to log. */
int tracer_start(struct tracer *t, const struct lt_opts *opts, struct agg *agg, FILE *log);
/* Wait up to timeout_ms for the ring buffer, then drain it. */
int tracer_poll(struct tracer *t, int timeout_ms);
/*
 * Drain the ring buffer, waiting at most left_s seconds and at most one poll
 * interval (the reader is woken early only when the buffer fills up).
 */
int tracer_poll_within(struct tracer *t, double left_s);

/* Seconds on clock c (CLOCK_MONOTONIC for intervals, CLOCK_REALTIME for dates). */
double lt_clock_s(clockid_t c);
/*
 * Stop every program counting, and wait until the runs already under way have
 * ended: what is read afterwards (rows, events, untimed counters) is one cut.
 * For the final report; nothing counts again until tracer_stop.
 */
void tracer_freeze(struct tracer *t);
/* Copy the kernel counters into the aggregate. */
int tracer_snapshot(struct tracer *t);
/*
 * What the kernel recorded with the counters of (tgid, tag, transport,
 * direction), read through r (sized for struct lt_cgroup_path): the process's
 * name into comm and its cgroup v2 path into cgroup (either may be NULL;
 * each "" when not recorded).  0, or -1 when the row is gone.
 */
int tracer_proc_record(struct tracer *t, struct kmap_reader *r, uint32_t tgid, uint32_t tag,
		       int transport, int direction, char *comm, size_t comm_len, char *cgroup,
		       size_t cgroup_len);
/* The kernel's statistics (enum lotrace_stat). */
int tracer_read_stats(struct tracer *t, struct kmap_reader *r, uint64_t stats[LT_STAT_COUNT]);
/* The capabilities tracer_stop still needs (a bit mask of CAP_*). */
uint64_t tracer_detach_caps(const struct tracer *t);
/*
 * Keep only the capabilities in keep (effective and permitted; ambient and,
 * when allowed, bounding set cleared): what is attached stays attached.
 */
int lt_drop_capabilities(uint64_t keep, FILE *log);
/* Detach everything; 0 when nothing is left attached. */
int tracer_stop(struct tracer *t, FILE *log);

#endif
