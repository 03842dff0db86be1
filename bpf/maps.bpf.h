/* SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause */
/*
 * Every map lotrace's BPF programs share, and the kernel-only types they hold.
 * maps.bpf.c defines them (LT_MAPS_OWNER); every other BPF file declares them
 * extern, and `bpftool gen object` links them into one object.
 */
#ifndef LOTRACE_MAPS_BPF_H
#define LOTRACE_MAPS_BPF_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "lotrace.h"

#ifdef LT_MAPS_OWNER
#define LT_SHARED
#else
#define LT_SHARED extern
#endif

/*
 * Configuration, set by user space before load.  The reader polls the ring
 * buffer on a timer and is woken only when it holds more than this.
 */
#ifdef LT_MAPS_OWNER
const volatile __u64 lt_wakeup_bytes = LOTRACE_RINGBUF_BYTES / 4;
#else
extern const volatile __u64 lt_wakeup_bytes;
#endif

/*
 * Counter maps are LRU: a full map evicts its least recently used rows
 * (idle processes) instead of refusing new ones, so no process can keep
 * another's traffic from being counted.  Evicted counts stay in `totals`.
 */
#define LOTRACE_MAX_PROCS 16384
#define LOTRACE_MAX_PAIRS 16384

LT_SHARED struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, LT_STAT_COUNT);
	__type(key, __u32);
	__type(value, __u64);
} stats SEC(".maps");

LT_SHARED struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, LT_TOT_COUNT);
	__type(key, __u32);
	__type(value, struct lt_count);
} totals SEC(".maps");

/* Per-socket state, freed with the socket. */
struct lt_sock_state {
	__u32 owner_tgid; /* last process that sent or received on it */
	__u32 pad;
};

LT_SHARED struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct lt_sock_state);
} sock_states SEC(".maps");

/*
 * UDP datagrams sent through a loopback device and not yet received, by
 * destination (netns, port): how an unconnected receiver, which has no route
 * of its own, knows its datagrams came over lo.
 */
struct lo_udp_dest {
	__u32 netns;
	__u16 port;
	__u16 pad;
};

LT_SHARED struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 8192);
	__type(key, struct lo_udp_dest);
	__type(value, __u64);
} lo_udp_pending SEC(".maps");

LT_SHARED struct {
	__uint(type, BPF_MAP_TYPE_LRU_PERCPU_HASH);
	__uint(max_entries, LOTRACE_MAX_PROCS);
	__type(key, struct lt_lo_key);
	__type(value, struct lt_lo_val);
} lo_counts SEC(".maps");

#define TQ_SLOTS 16 /* power of two */
#define TQ_MASK (TQ_SLOTS - 1)
#define TQ_MAX_QUEUES 16384

/* Who reports a message's send duration: see lt_send_exit and time_message. */
enum tq_slot_state {
	TQ_SLOT_OPEN = 0,  /* neither side is done */
	TQ_SLOT_SENT = 1,  /* the send returned first: send_ns is valid */
	TQ_SLOT_TAKEN = 2, /* the receiver took it first: the sender reports apart */
};

struct tq_slot {
	__u64 ts;      /* send-call entry time; 0: send failed, skip */
	__u32 start;   /* stream: offset of the message's first byte */
	__u32 seq;     /* producer index + 1, written last: slot is published */
	__u32 tgid;    /* sender */
	__u32 state;   /* enum tq_slot_state */
	__u32 send_ns; /* the send call's duration, once state is SENT */
	__u32 tag;     /* sender's start tag (lt_proc_key) */
};

struct timing_queue {
	__u32 head;        /* consumer index */
	__u32 tail;        /* producer index */
	__u32 sent_off;    /* unix stream: bytes sent into this direction */
	__u32 recv_off;    /* unix stream: bytes received from it */
	__u32 desync;      /* unix: data was queued before tracing started */
	__u32 pad;
	__u64 last_sender; /* process id (tag << 32 | tgid) of the last message popped (pair bytes) */
	__u64 peer;        /* unix stream: sending socket; detects address reuse */
	struct tq_slot slot[TQ_SLOTS];
};

/* The receiving end of one direction of traffic. */
struct tq_key {
	__u8 transport;
	__u8 family;
	__u16 lport; /* receiver's port (host order) */
	__u16 rport; /* sender's port (TCP) */
	__u16 pad;
	__u32 netns;
	__u64 sk;    /* unix: receiving socket, the whole key (unix_queues) */
	__u8 laddr[16];
	__u8 raddr[16];
};

/* Per-thread state of the send and recv calls in progress. */
struct lt_send_ctx {
	__u64 ts;        /* when the current message's send started */
	__u64 sk;        /* socket it sends on */
	__u32 slot_seq;  /* its queue slot (seq), 0 if none */
	__u32 remaining; /* messages left in this call (sendmmsg) */
	__u8 lo_tx;      /* a packet of this send left through a loopback device */
	__u8 send_depth; /* kprobe backend: nested hooked calls */
	__u8 recv_depth;
	__u8 pad[5];
	__u64 recv_sk;   /* kretprobe: the recv's socket and flags, saved at entry */
	__s64 recv_flags;
};

/* TCP and UDP queues. */
LT_SHARED struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, TQ_MAX_QUEUES);
	__type(key, struct tq_key);
	__type(value, struct timing_queue);
} timing_queues SEC(".maps");

/* Unix queues, by receiving socket: an 8-byte key hashes faster on the hot path. */
LT_SHARED struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, TQ_MAX_QUEUES);
	__type(key, __u64);
	__type(value, struct timing_queue);
} unix_queues SEC(".maps");

LT_SHARED struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct lt_send_ctx);
} send_ctxs SEC(".maps");

LT_SHARED struct {
	__uint(type, BPF_MAP_TYPE_LRU_PERCPU_HASH);
	__uint(max_entries, LOTRACE_MAX_PROCS);
	__type(key, struct lt_proc_key);
	__type(value, struct lt_proc_val);
} proc_counts SEC(".maps");

LT_SHARED struct {
	__uint(type, BPF_MAP_TYPE_LRU_PERCPU_HASH);
	__uint(max_entries, LOTRACE_MAX_PAIRS);
	__type(key, struct lt_pair_key);
	__type(value, struct lt_pair_val);
} pair_counts SEC(".maps");

LT_SHARED struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, LOTRACE_RINGBUF_BYTES);
} events SEC(".maps");

#endif
