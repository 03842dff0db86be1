/* SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause */
/*
 * The ABI between lotrace's BPF programs and its user space: map keys and
 * values, ring-buffer events, and the one list of transports.  Included by
 * both sides, so it uses only fixed-width types.
 */
#ifndef LOTRACE_H
#define LOTRACE_H

#ifndef __VMLINUX_H__
#include <linux/types.h>
#endif

#define LOTRACE_COMM_LEN 16

/*
 * The transports lotrace tells apart: enum name, name used in every output.
 * Order is ABI (map keys carry the index).
 */
#define LOTRACE_TRANSPORTS(X)                  \
	X(TCP, "tcp")                          \
	X(UDP, "udp")                          \
	X(UNIX_STREAM, "unix_stream")          \
	X(UNIX_DGRAM, "unix_dgram")            \
	X(UNIX_SEQPACKET, "unix_seqpacket")

enum lotrace_transport {
#define LOTRACE_X_ENUM(e, n) LT_##e,
	LOTRACE_TRANSPORTS(LOTRACE_X_ENUM)
#undef LOTRACE_X_ENUM
	LT_TRANSPORT_COUNT,
};

enum lotrace_direction {
	LT_SEND = 0,
	LT_RECV = 1,
	LT_DIRECTION_COUNT,
};

/*
 * A process is (tgid, tag): tag is the low 32 bits of its thread-group
 * leader's start time (task->start_boottime, ns), so a pid reused by a new
 * process names a new identity.  lt_proc_val.start_ns carries the full start
 * time, which user space matches against /proc/PID/stat's (in clock ticks).
 */

/*
 * Per-process traffic counters: kept in the kernel (LRU hash).  Rows
 * the LRU evicts are not lost: every count also goes into the exact totals
 * below, and totals - sum(rows) is what was folded.
 */
struct lt_proc_key {
	__u32 tgid;
	__u32 tag;
	__u8 transport;
	__u8 direction;
	__u16 pad;
};

struct lt_proc_val {
	__u64 messages;
	__u64 bytes;
	__u64 start_ns; /* thread-group leader's start_boottime */
	char comm[LOTRACE_COMM_LEN]; /* thread-group leader's name */
	__u64 cgroup_id; /* its cgroup v2 (the row's first counting thread's): key of proc_cgroups */
};

/*
 * A cgroup's path, recorded in the kernel with the first process row counted
 * in it: a process that lives 10 ms in a scope systemd removes at once still
 * has its unit.  Components leaf first; the root's is not among them (a
 * process in the root cgroup has depth 0).  A component longer than
 * LOTRACE_CGROUP_NAME_LEN - 1 is cut; one above LOTRACE_CGROUP_DEPTH levels
 * sets `truncated`.
 */
#define LOTRACE_CGROUP_DEPTH 8
#define LOTRACE_CGROUP_NAME_LEN 96

struct lt_cgroup_path {
	__u32 depth;     /* components filled */
	__u32 truncated; /* 1: more levels above the last */
	char name[LOTRACE_CGROUP_DEPTH][LOTRACE_CGROUP_NAME_LEN];
};

/* Sender -> receiver pairs, counted by the receiving side. */
struct lt_pair_key {
	__u32 sender_tgid;
	__u32 sender_tag;
	__u32 receiver_tgid;
	__u32 receiver_tag;
	__u8 transport;
	__u8 pad[3];
};

struct lt_pair_val {
	__u64 messages; /* messages whose first byte the receiver got, timed */
	__u64 bytes;    /* bytes the receiver got, attributed to the sender */
};

/* `lo` device counters (TC egress on lo, so each packet counts once). */
enum lotrace_l4 {
	LT_L4_TCP = 0,
	LT_L4_UDP = 1,
	LT_L4_ICMP = 2,
	LT_L4_OTHER = 3,
	LT_L4_COUNT,
};

struct lt_lo_key {
	__u32 tgid; /* 0: no owning socket (kernel, timewait, replies) */
	__u32 l4;   /* enum lotrace_l4 */
};

struct lt_lo_val {
	__u64 packets;
	__u64 bytes; /* wire bytes, L2 header included */
};

/*
 * Why a message sent on a traced path got no latency sample.  Kept in the
 * kernel per cause and transport; user space derives one more cause,
 * "unmatched" (sent, never matched to a receive: in flight at stop, receiver
 * closed with it unread, state evicted), as what the others leave unexplained.
 */
#define LOTRACE_UNTIMED_CAUSES(X)                                              \
	X(SAMPLED, "sampled")             /* not picked by the sampler; a sample's weight stands for it */ \
	X(QUEUE_FULL, "queue_full")       /* picked, but its timing queue was full */ \
	X(BEFORE_START, "before_start")   /* queued behind data sent before tracing began */ \
	X(NO_SEND_START, "no_send_start") /* send seen only at its end (io_uring, sendfile) */ \
	X(UNDELIVERED, "undelivered")     /* the kernel dropped the datagram */

enum lotrace_untimed_cause {
#define LOTRACE_X_ENUM(e, n) LT_UNTIMED_##e,
	LOTRACE_UNTIMED_CAUSES(LOTRACE_X_ENUM)
#undef LOTRACE_X_ENUM
	LT_UNTIMED_CAUSE_COUNT,
};

/*
 * Exact host totals of the counter maps (per-CPU array `totals`, never
 * evicted): one lt_count per proc (transport, direction), pair transport and
 * lo protocol.  Value layout is that of lt_proc_val/lt_pair_val/lt_lo_val's
 * first two fields.
 */
enum lotrace_total {
	LT_TOT_PROC_BASE = 0,                                        /* + transport * 2 + direction */
	LT_TOT_PAIR_BASE = LT_TOT_PROC_BASE + LT_TRANSPORT_COUNT * LT_DIRECTION_COUNT, /* + transport */
	LT_TOT_LO_BASE = LT_TOT_PAIR_BASE + LT_TRANSPORT_COUNT,      /* + enum lotrace_l4 */
	LT_TOT_COUNT = LT_TOT_LO_BASE + LT_L4_COUNT,
};

struct lt_count {
	__u64 n;     /* messages, or packets */
	__u64 bytes;
};

/* Global statistics (per-CPU array, index below). */
enum lotrace_stat {
	LT_STAT_LOST_EVENTS = 0,  /* ring buffer full: event dropped */
	LT_STAT_MAP_FULL,         /* a counter map refused a new key */
	/*
	 * Runs of lotrace's programs the kernel skipped (recursion_misses: a
	 * program was already running on that CPU): their events went uncounted.
	 * Filled in by user space from the programs' info, never by BPF.
	 */
	LT_STAT_MISSED_RUNS,
	LT_STAT_UNTIMED_BASE,     /* + cause * LT_TRANSPORT_COUNT + transport */
	LT_STAT_COUNT = LT_STAT_UNTIMED_BASE + LT_UNTIMED_CAUSE_COUNT * LT_TRANSPORT_COUNT,
};

#define LT_STAT_UNTIMED(cause, transport)                                      \
	(LT_STAT_UNTIMED_BASE + (cause) * LT_TRANSPORT_COUNT + (transport))

/*
 * Ring-buffer events: one per timed message, carrying its sender's send
 * duration too when the sender finished first; a send duration that could
 * not travel with its message comes as an event of its own.
 */
enum lotrace_event_kind {
	LT_EV_MESSAGE = 1,       /* value_ns: latency; tgid received, peer_tgid sent */
	LT_EV_SEND_DURATION = 2, /* value_ns: send duration; tgid sent */
};

struct lt_event {
	__u64 value_ns;
	__u32 tgid;
	__u32 peer_tgid;
	__u32 tag;      /* start tags of tgid and peer_tgid (see lt_proc_key) */
	__u32 peer_tag;
	__u32 send_ns; /* LT_EV_MESSAGE: the sender's send duration, 0 if sent apart */
	__u8 kind;
	__u8 transport;
	/*
	 * LT_EV_MESSAGE: how many messages this sample stands for (1 unless the
	 * sampler was thinning a backlog: then every weight-th message is timed).
	 */
	__u16 weight;
	/* When it was emitted (CLOCK_MONOTONIC ns) in `lotrace trace`; else 0. */
	__u64 at_ns;
};

/* Default ring buffer size (--ring-buffer-size changes it before load). */
#define LOTRACE_RINGBUF_BYTES (16u << 20)

#endif
