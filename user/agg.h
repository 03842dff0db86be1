/*
 * What lotrace measured, aggregated in user space: per-process rows, sender ->
 * receiver pairs, host-wide per-transport histograms, `lo` counters and the
 * tracer's own statistics.  Counts are snapshots of the kernel's exact
 * counters; histograms are fed from ring-buffer events.
 */
#ifndef LOTRACE_AGG_H
#define LOTRACE_AGG_H

#include <stddef.h>
#include <stdint.h>
#include "hist.h"
#include "lotrace.h"
#include "opts.h"

/* A process is (tgid, tag): see lt_proc_key in lotrace.h. */
struct agg_proc {
	uint32_t tgid;
	uint32_t tag;
	uint64_t start_ns; /* 0 until its kernel row is read */
	uint64_t cgroup_id; /* cgroup v2 id, recorded in the kernel (0: unknown) */
	uint8_t transport;
	uint8_t direction;
	char comm[LOTRACE_COMM_LEN];
	uint64_t messages;
	uint64_t bytes;
	/*
	 * recv rows: the messages sent to it (its pairs' sum; a recv call can
	 * return several), what its timed fraction is a share of.
	 */
	uint64_t delivered;
	struct hist *latency;  /* recv rows: message latency */
	struct hist *send_dur; /* send rows: time inside the send call */
};

struct agg_pair {
	uint32_t sender, sender_tag;
	uint32_t receiver, receiver_tag;
	uint8_t transport;
	uint64_t messages;
	uint64_t bytes;
	struct hist *latency;
};

struct agg_lo_proc {
	uint32_t tgid;
	uint32_t l4;
	uint64_t packets;
	uint64_t bytes;
};

struct agg_index {
	uint32_t *slot; /* row index + 1; 0 empty */
	size_t cap;     /* power of two */
};

struct agg {
	struct agg_proc *procs;
	size_t nprocs, procs_cap;
	struct agg_index proc_index;
	struct agg_pair *pairs;
	size_t npairs, pairs_cap;
	struct agg_index pair_index;
	struct agg_lo_proc *lo;
	size_t nlo, lo_cap;
	struct agg_cgroup {
		uint64_t id;
		char *path;
	} *cgroups; /* few: searched in order */
	size_t ncgroups, cgroups_cap;

	struct hist transport_latency[LT_TRANSPORT_COUNT];
	struct hist transport_send[LT_TRANSPORT_COUNT];

	uint64_t lost_events;
	uint64_t missed_runs; /* program runs the kernel skipped (LT_STAT_MISSED_RUNS) */
	uint64_t map_full;
	uint64_t events_processed;
	/*
	 * Sent messages without a latency sample, by cause: the kernel's causes,
	 * then "unmatched", what they leave unexplained (agg_account_untimed).
	 */
#define LT_UNTIMED_UNMATCHED LT_UNTIMED_CAUSE_COUNT
	uint64_t untimed_by_cause[LT_UNTIMED_CAUSE_COUNT + 1][LT_TRANSPORT_COUNT];
	uint64_t untimed[LT_TRANSPORT_COUNT]; /* all causes */
	/*
	 * The kernel's exact totals (enum lotrace_total), read after the rows:
	 * what they hold beyond the rows' sum was folded (rows evicted from the
	 * LRU maps, or counted while the snapshot was read).
	 */
	struct lt_count totals[LT_TOT_COUNT];

	double duration_s;
	/*
	 * When set (lotrace export), events go here instead of into the per-process
	 * and per-pair histograms, which grow with every pid ever seen.
	 */
	void (*event_sink)(void *ctx, const struct lt_event *e);
	void *event_sink_ctx;
	const char *backend;
	/* Why each backend was or was not chosen ("" if not tried), by enum lt_backend. */
#define LT_REASON_LEN 192
	char backend_reasons[LT_BACKEND_COUNT][LT_REASON_LEN];
	const char *lo_attach; /* "tcx", "clsact" or "none" */
};

struct agg *agg_new(void);
void agg_free(struct agg *a);

/* Row for (tgid, tag, transport, direction); created empty if missing. NULL: out of memory. */
struct agg_proc *agg_proc(struct agg *a, uint32_t tgid, uint32_t tag, int transport, int direction);
struct agg_pair *agg_pair(struct agg *a, uint32_t sender, uint32_t sender_tag, uint32_t receiver,
			  uint32_t receiver_tag, int transport);
/* Comm of process (tgid, tag) from any of its rows, or "?" */
const char *agg_comm(const struct agg *a, uint32_t tgid, uint32_t tag);
/* Cgroup path of process (tgid, tag) (tag 0: of any process with pid tgid), or NULL. */
const char *agg_cgroup_of(const struct agg *a, uint32_t tgid, uint32_t tag);
/* Comm of the latest process (by start time) that had pid tgid, or "?" (lo rows carry no tag). */
const char *agg_comm_latest(const struct agg *a, uint32_t tgid);

/*
 * Counts in the kernel's totals but in no row: for processes by (transport,
 * direction), for pairs by transport, for lo by protocol.  totals == sum(rows)
 * + folded holds exactly (never negative: totals are read after the rows).
 */
struct lt_count agg_folded_proc(const struct agg *a, int transport, int direction);
struct lt_count agg_folded_pair(const struct agg *a, int transport);
struct lt_count agg_folded_lo(const struct agg *a, int l4);

/* One ring-buffer event. Returns -1 for a malformed event. */
int agg_event(struct agg *a, const void *data, size_t size);

/* Snapshots of the kernel counters (absolute values). */
void agg_set_proc(struct agg *a, const struct lt_proc_key *k, uint64_t messages,
		  uint64_t bytes, uint64_t start_ns, uint64_t cgroup_id, const char *comm);
/* The path of cgroup id as the kernel recorded it ("/system.slice/x.service"). */
void agg_set_cgroup(struct agg *a, uint64_t id, const char *path);
/* Path of cgroup id, or NULL if it was not recorded (or id is 0). */
const char *agg_cgroup_path(const struct agg *a, uint64_t id);
void agg_set_pair(struct agg *a, const struct lt_pair_key *k, uint64_t messages, uint64_t bytes);
void agg_set_lo(struct agg *a, const struct lt_lo_key *k, uint64_t packets, uint64_t bytes);

uint64_t agg_untimed_total(const struct agg *a);
/*
 * Complete the untimed counts from the kernel's per-cause counts (stats,
 * indexed as the stats map): each transport's sent messages (totals, read
 * first) that are neither timed (histogram samples) nor explained by a kernel
 * cause are "unmatched".
 */
void agg_account_untimed(struct agg *a, const uint64_t *stats);
/* Name of an untimed cause, "unmatched" included. */
const char *lt_untimed_cause_name(int cause);
/* Timed share of a row's or pair's messages (0 when it has none). */
double agg_timed_fraction(const struct hist *latency, uint64_t messages);
/* The messages a recv row's timed fraction is a share of: delivered, else its recv calls. */
uint64_t agg_recv_messages(const struct agg_proc *p);
/* Recount every recv row's delivered from the pairs (after a snapshot). */
void agg_count_delivered(struct agg *a);

#endif
