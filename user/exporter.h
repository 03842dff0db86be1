/*
 * The state behind `lotrace export`: counters and histograms per (process
 * label, transport) for the exporter's whole life, bounded in size.
 *
 * The kernel keeps absolute counters per (pid, transport, direction).  Each
 * scan turns them into increments (value - value at the previous scan) added
 * to the series of the pid's label, so a series keeps counting when a process
 * exits and its kernel entries are deleted.  Histograms are fed from the
 * ring-buffer events.  At most max_series labels per transport have their own
 * series (the top ones by bytes); the others add into label "other", so the
 * sum over all series is always the exact total.  The labels tracked (own and
 * folded, which compete for promotion) are bounded too: exp_label_limit().
 */
#ifndef LOTRACE_EXPORTER_H
#define LOTRACE_EXPORTER_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include "export_opts.h"
#include "lotrace.h"

/*
 * How the exporter learns about processes; exp_procfs() is the real one, tests
 * fake it.  A process is (tgid, tag) as in the kernel maps (lotrace.h); the
 * kernel's start time tells whether the pid still names that process.
 */
struct exp_sys {
	/* 0 and the process start time (ns after boot) if tgid exists; -1 if it is gone. */
	int (*start)(void *ctx, uint32_t tgid, uint64_t *start_ns);
	/* The label (comm, cgroup path or unit) of a live process; -1 if it is gone. */
	int (*identity)(void *ctx, enum lt_export_by by, uint32_t tgid, char *out, size_t len);
	/* The comm the kernel recorded with the counters of (tgid, tag, transport, direction); -1 if none. */
	int (*kernel_comm)(void *ctx, uint32_t tgid, uint32_t tag, int transport, int direction,
			   char *out, size_t len);
	/* The cgroup v2 path the kernel recorded with those counters; -1 if none. */
	int (*kernel_cgroup)(void *ctx, uint32_t tgid, uint32_t tag, int transport, int direction,
			     char *out, size_t len);
	void *ctx;
	uint64_t start_tick_ns; /* resolution of start() (/proc: one clock tick); 0: 1 ns */
};

/* /proc-backed start and identity; kernel_comm/kernel_cgroup NULL (the caller has the maps). */
struct exp_sys exp_procfs(void);

/*
 * Label values tracked beyond the own series, in total over the transports
 * (EXP_SPARE_LABELS each): the candidates for promotion.  When the table is
 * full, a folded label with few bytes is forgotten (its counts are in
 * "other" already).
 */
#define EXP_SPARE_LABELS 1024
size_t exp_label_limit(unsigned max_series);

struct exp_config {
	enum lt_export_by by;
	unsigned max_series;
	double idle_expiry_s; /* 0: never */
	struct exp_sys sys;
};

enum exp_map { EXP_MAP_PROC, EXP_MAP_PAIR, EXP_MAP_LO, EXP_MAP_COUNT };

/* What the file says about lotrace itself that the exporter does not track. */
struct exp_self {
	const char *backend;
	const char *lo_attach;
	uint64_t events_processed;
	uint64_t write_failures;
	double unix_time; /* of this write */
};

struct exporter;

struct exporter *exporter_new(const struct exp_config *cfg);
void exporter_free(struct exporter *x);

/* A ring-buffer event: a latency (receiver) or send-duration (sender) sample. */
void exporter_event(struct exporter *x, const struct lt_event *e);

/*
 * One scan of the kernel counters: begin; every entry of proc_counts,
 * lo_counts and pair_counts; the stats; end.  exporter_proc/exporter_lo return
 * true when the entry's process is gone: the caller then reads and deletes it
 * in one step (its final values go to *_taken), so the kernel map stays
 * bounded while the totals stay in user space.
 */
void exporter_scan_begin(struct exporter *x);
bool exporter_proc(struct exporter *x, const struct lt_proc_key *k, uint64_t messages,
		   uint64_t bytes, uint64_t start_ns, const char *comm);
void exporter_proc_taken(struct exporter *x, const struct lt_proc_key *k, uint64_t messages,
			 uint64_t bytes);
bool exporter_lo(struct exporter *x, const struct lt_lo_key *k, uint64_t packets, uint64_t bytes);
void exporter_lo_taken(struct exporter *x, const struct lt_lo_key *k, uint64_t packets,
		       uint64_t bytes);
/* Pairs are not exported: true when an end is gone and the entry can be deleted. */
bool exporter_pair_gone(struct exporter *x, const struct lt_pair_key *k);
void exporter_stats(struct exporter *x, const uint64_t stats[LT_STAT_COUNT]);
/*
 * The kernel's exact totals (enum lotrace_total), read before the map scan:
 * what they hold beyond the series' sums was in rows the kernel evicted
 * before lotrace read them, and is added to "other" (and counted as evicted),
 * so the sum over a metric's series stays the exact total.
 */
void exporter_totals(struct exporter *x, const struct lt_count totals[LT_TOT_COUNT]);
void exporter_map_size(struct exporter *x, enum exp_map m, uint64_t entries, uint64_t capacity);
/* Folds and expires labels; now: monotonic seconds. */
void exporter_scan_end(struct exporter *x, double now);

/* The whole file, in Prometheus text format.  -1: out of memory. */
int exporter_render(struct exporter *x, FILE *f, const struct exp_self *self);

/* Processes the exporter currently tracks (for tests). */
size_t exporter_tasks(const struct exporter *x);
/* Label values (own and folded, all transports) it tracks: at most exp_label_limit(). */
size_t exporter_labels(const struct exporter *x);
/* Some traffic went to "other" for lack of memory. */
bool exporter_out_of_memory(const struct exporter *x);

#endif
