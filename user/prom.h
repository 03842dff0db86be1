/*
 * Prometheus text exposition (format 0.0.4) for `lotrace export`: the one
 * list of metric names, the one set of histogram bounds, label escaping.
 */
#ifndef LOTRACE_PROM_H
#define LOTRACE_PROM_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* Label value of the series that collects every folded process identity. */
#define PROM_FOLD_LABEL "other"

/*
 * Histogram upper bounds in ns, identical for every series: 1-2.5-5 steps
 * from 500 ns (a fast Unix send) to 10 s (a receiver that sat on its data).
 */
#define PROM_BOUNDS_NS(X)                                                       \
	X(500) X(1000) X(2500) X(5000) X(10000) X(25000) X(50000) X(100000)    \
	X(250000) X(500000) X(1000000) X(2500000) X(5000000) X(10000000)       \
	X(25000000) X(50000000) X(100000000) X(250000000) X(500000000)         \
	X(1000000000) X(2500000000) X(5000000000) X(10000000000)

enum {
#define PROM_X_COUNT(ns) +1
	PROM_NBOUNDS = 0 PROM_BOUNDS_NS(PROM_X_COUNT),
#undef PROM_X_COUNT
};

extern const uint64_t prom_bounds_ns[PROM_NBOUNDS];

/* Exact counts for the bounds above; bucket[i] holds values in (bound[i-1], bound[i]]. */
struct prom_hist {
	uint64_t bucket[PROM_NBOUNDS + 1]; /* [PROM_NBOUNDS]: above the largest bound */
	uint64_t count;
	uint64_t sum_ns;
};

/* Index of the first bound >= ns (le is inclusive); PROM_NBOUNDS if none. */
unsigned prom_bucket_of(uint64_t ns);
void prom_hist_add(struct prom_hist *h, uint64_t ns, uint64_t weight);
void prom_hist_merge(struct prom_hist *into, const struct prom_hist *from);

/*
 * Every metric lotrace exports: enum, name, type, help.  Order is the order
 * in the file; lotrace_last_write_timestamp_seconds comes last, so a reader
 * can tell a complete file.
 */
#define PROM_METRICS(X)                                                                     \
	X(SENT_MESSAGES, "lotrace_sent_messages_total", "counter",                          \
	  "Messages sent over loopback IPC (one send call is one message; sendmmsg: each).") \
	X(SENT_BYTES, "lotrace_sent_bytes_total", "counter",                                \
	  "Payload bytes sent over loopback IPC.")                                          \
	X(RECEIVED_MESSAGES, "lotrace_received_messages_total", "counter",                  \
	  "Messages received over loopback IPC (recv calls that returned data).")           \
	X(RECEIVED_BYTES, "lotrace_received_bytes_total", "counter",                        \
	  "Payload bytes received over loopback IPC.")                                      \
	X(MESSAGE_LATENCY, "lotrace_message_latency_seconds", "histogram",                  \
	  "Per message, from the sender entering send to the receiver's recv returning its first byte; by receiver.") \
	X(SEND_DURATION, "lotrace_send_duration_seconds", "histogram",                      \
	  "Time spent inside each send call; by sender.")                                   \
	X(LO_PACKETS, "lotrace_lo_packets_total", "counter",                                \
	  "Packets leaving through the lo device, by L4 protocol.")                         \
	X(LO_BYTES, "lotrace_lo_bytes_total", "counter",                                    \
	  "Wire bytes (headers included) leaving through the lo device, by L4 protocol.")   \
	X(UNTIMED_MESSAGES, "lotrace_untimed_messages_total", "counter",                    \
	  "Messages sent that lotrace could not time (io_uring, sendfile, unconnected datagrams, queue overflow).") \
	X(LOST_EVENTS, "lotrace_lost_events_total", "counter",                              \
	  "Latency samples dropped because the ring buffer was full (counts stay exact).")  \
	X(MISSED_RUNS, "lotrace_missed_program_runs_total", "counter",                     \
	  "Runs of lotrace\'s BPF programs the kernel skipped (already running on that CPU): what they would have counted is missing.") \
	X(EVENTS_PROCESSED, "lotrace_events_processed_total", "counter",                    \
	  "Latency and send-duration samples read from the ring buffer.")                   \
	X(MAP_FULL, "lotrace_kernel_map_full_total", "counter",                            \
	  "Updates refused because a kernel counter map was full (those counts are lost).") \
	X(MAP_ENTRIES, "lotrace_kernel_map_entries", "gauge",                              \
	  "Entries in a kernel counter map at the last scan (entries of exited processes are folded and deleted).") \
	X(MAP_CAPACITY, "lotrace_kernel_map_capacity", "gauge",                            \
	  "Maximum entries of a kernel counter map.")                                       \
	X(EVICTED_MESSAGES, "lotrace_evicted_messages_total", "counter",                    \
	  "Messages counted in the \"other\" series because the kernel evicted their process's counter row (LRU, full map) before lotrace read it.") \
	X(EVICTED_BYTES, "lotrace_evicted_bytes_total", "counter",                          \
	  "Payload bytes counted in the \"other\" series because the kernel evicted their process's counter row before lotrace read it.") \
	X(IDENTITIES, "lotrace_identities", "gauge",                                        \
	  "Process identities (label values) lotrace tracks per transport, with or without their own series.") \
	X(FOLDED_IDENTITIES, "lotrace_folded_identities", "gauge",                          \
	  "Process identities counted in the \"other\" series (beyond --max-series).")      \
	X(BUILD_INFO, "lotrace_build_info", "gauge", "lotrace version.")                    \
	X(BACKEND_INFO, "lotrace_backend_info", "gauge",                                    \
	  "Hooks lotrace traces with and how lo packets are counted.")                      \
	X(WRITE_FAILURES, "lotrace_write_failures_total", "counter",                        \
	  "Rewrites of this file that failed (the next interval retries; no counts are lost).") \
	X(LAST_WRITE, "lotrace_last_write_timestamp_seconds", "gauge",                      \
	  "Unix time at which lotrace wrote this file.")

enum prom_metric {
#define PROM_X_ENUM(e, name, type, help) PROM_##e,
	PROM_METRICS(PROM_X_ENUM)
#undef PROM_X_ENUM
	PROM_METRIC_COUNT,
};

const char *prom_metric_name(enum prom_metric m);

struct prom_label {
	const char *name;
	const char *value; /* valid UTF-8 (see prom_sanitize) */
};

/* "# HELP" and "# TYPE" lines of a metric family. */
void prom_family(FILE *f, enum prom_metric m);
/* One sample line: name + suffix ("" or "_bucket"...), labels, integer value. */
void prom_sample(FILE *f, enum prom_metric m, const char *suffix, const struct prom_label *labels,
		 size_t nlabels, uint64_t value);
/* _bucket (cumulative, le inclusive, +Inf == count), _sum (seconds), _count lines. */
void prom_histogram(FILE *f, enum prom_metric m, const struct prom_label *labels, size_t nlabels,
		    const struct prom_hist *h);
/* Writes v escaped for a label value: \ " and newline. */
void prom_escape(FILE *f, const char *v);
/*
 * A label value from a name (comm, cgroup): lt_name_clean (names.h), the
 * cleaning every output shares.  Prometheus rejects the whole file over one
 * invalid UTF-8 label value, and comm/cgroup names are bytes.
 */
void prom_sanitize(char *out, size_t len, const char *in);

#endif
