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
 * `lotrace trace` prints when each message was timed: only then does an event
 * carry a clock read (a constant here, so the other modes' programs lose the
 * branch at load).
 */
#ifdef LT_MAPS_OWNER
const volatile __u8 lt_event_times = 0;
#else
extern const volatile __u8 lt_event_times;
#endif

/*
 * Set for the tracepoint backend, whose send start is a system call's entry:
 * its programs the fentry backend shares (lo transmit) must not judge a
 * function-entry start by the system call it happens in (io_uring has none).
 */
#ifdef LT_MAPS_OWNER
const volatile __u8 lt_send_start_at_syscall = 0;
#else
extern const volatile __u8 lt_send_start_at_syscall;
#endif

/*
 * Raised by user space just before its final read (tracer_freeze): from then
 * on no program counts, times or stamps anything, so the rows, events and
 * untimed counters it reads are one cut, and detaching the programs one by
 * one afterwards cannot half-see a message.  In .bss: one load per run.
 */
#ifdef LT_MAPS_OWNER
volatile __u8 lt_frozen = 0;
#else
extern volatile __u8 lt_frozen;
#endif

/*
 * Counter maps are LRU: a full map evicts its least recently used rows
 * (idle processes) instead of refusing new ones, so no process can keep
 * another's traffic from being counted.  Evicted counts stay in `totals`.
 * The row maps are shared by all CPUs (atomic adds), not per-CPU: a per-CPU
 * row is one copy per possible CPU, 160 MiB for proc_counts alone on a
 * 256-CPU host (bench/mapmem); only the small arrays below stay per-CPU.
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
	__u32 had_queue;  /* unix stream: a timing queue was made for what it receives */
};

LT_SHARED struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct lt_sock_state);
} sock_states SEC(".maps");

LT_SHARED struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, LOTRACE_MAX_PROCS);
	__type(key, struct lt_lo_key);
	__type(value, struct lt_lo_val);
} lo_counts SEC(".maps");

/*
 * Stream timing (TCP, unix_stream).  A stream has no message boundaries the
 * receiver can see, so the sender queues (first byte's offset, send time) and
 * the receiver times the entries whose first byte its recv returned.  The
 * queue is short; under a backlog the sender thins it by timing every
 * stride-th message only, chosen in send order (so independent of latency),
 * and each sample carries as its weight the messages it stands for.
 */
#define TQ_SLOTS 64 /* power of two */
#define TQ_MASK (TQ_SLOTS - 1)
#define TQ_MAX_QUEUES 2048
#define TQ_MAX_WEIGHT 65535 /* fits lt_event.weight */

struct tq_slot {
	__u64 ts;         /* send-call entry time */
	__u64 sender;     /* process id (tag << 32 | tgid) */
	__u64 receiver;   /* id that received its first byte; 0: not yet */
	__u32 start;      /* offset of the message's first byte */
	__u32 seq;        /* producer index + 1, written last: slot is published */
	__u32 send_ns;    /* its send call's duration */
	__u32 weight;     /* messages it stands for: its stride, and any folded in */
	__u32 msgs;       /* messages of its run (itself, then unpicked ones) sent */
	__u32 attributed; /* of those, counted in the receiver's pair */
	__u32 clock;      /* the sampler's clock when it was picked */
	__u32 pad;
};

/*
 * The last few recvs, for a message whose send returns after the receiver got
 * it (a woken receiver can run first): its sender times it from here.
 */
#define TQ_RECENT 4 /* power of two */

struct tq_recv {
	__u64 ts;
	__u64 id;    /* the receiving process */
	__u32 start; /* the offsets it returned: [start, end) */
	__u32 end;
};

struct timing_queue {
	__u32 head;        /* consumer index */
	__u32 tail;        /* producer index */
	__u32 sent_off;    /* unix: bytes sent into this direction (UDP: datagrams) */
	__u32 recv_end;    /* offset received up to (unix: bytes; TCP: copied_seq) */
	__u32 desync;      /* unix: data was queued before tracing started */
	__u32 started;     /* messages sent into this queue: the sampler's clock */
	__u32 next_pick;   /* the next message to time, on that clock */
	__u32 nrecent;     /* recent[] producer index */
	__u64 last_sender; /* id of the last message popped (pair bytes; UDP: the run's) */
	__u64 last_id;     /* sender of the last message */
	__u64 ident;       /* sock_queues: cookie of the socket it was made for (0: unknown) */
	__u64 rx_ident;    /* unix streams: cookie of the receiving socket (0: unknown) */
	__u64 orphan_rx;   /* a receiver that got bytes before any sender was known... */
	__u64 orphan_bytes; /* ...and how many: the next sender counts them in its pair */
	struct tq_recv recent[TQ_RECENT];
	struct tq_slot slot[TQ_SLOTS];
};

/* The receiving end of one direction of TCP traffic. */
struct tq_key {
	__u8 transport;
	__u8 family;
	__u16 lport; /* receiver's port (host order) */
	__u16 rport; /* sender's port */
	__u16 pad;
	__u32 netns;
	__u8 laddr[16];
	__u8 raddr[16];
};

/* Who reports a datagram's send duration: see lt_send_exit and dgram_received. */
enum dg_state {
	DG_OPEN = 0,  /* neither side is done */
	DG_SENT = 1,  /* the send returned first: send_ns is valid */
	DG_TAKEN = 2, /* received or dropped first: the sender reports apart */
	DG_CLAIMING = 3, /* a sender writes its stamp over a stale COPIED */
	/*
	 * No stamp but a mark: a unix datagram copied before its sender could
	 * stamp it (see lt_copy_datagram); DG_COPIED and up, a new value each
	 * time a copy marks it, so a sender replacing a stale mark cannot miss
	 * a new one.  No other field is meaningful.
	 */
	DG_COPIED = 16,
};

/*
 * A stamp's key: the skb and, for unix datagrams, the sending socket (skb->sk).
 * A sender stamps its skb after queueing it, so a receiver may have taken and
 * freed it by then, and the next datagram at that address (the reply, as a
 * rule: the receiver's CPU reuses what it freed) may be stamped already: with
 * the sender in the key, a late stamp can neither overwrite nor delete another
 * sender's.
 */
struct dg_key {
	__u64 skb;
	__u64 sender; /* unix: sending socket; UDP: 0 */
};

struct dg_stamp {
	__u64 ts;        /* sender's send-call entry; 0: no send start seen */
	__u64 id;        /* sender */
	__u32 state;     /* enum dg_state */
	__u32 send_ns;   /* once state is DG_SENT */
	__u32 transport;
	__u32 pad;
};

/* Per-thread state of the send and recv calls in progress. */
struct lt_send_ctx {
	__u64 ts;        /* when the current message's send started */
	__u64 sk;        /* socket it sends on */
	__u64 stamp;     /* unix datagram: the skb stamped for it (with sk: its key) */
	struct dg_key rx_key; /* datagram recv: the stamp it took from its skb... */
	struct dg_stamp rx_stamp; /* ...and its stamp, taken while the skb lived */
	__u32 peer_qlen; /* unix stream: skbs queued at the receiver when the send began */
	__u32 remaining; /* messages left in this call (sendmmsg) */
	__u8 lo_tx;      /* a packet of this send left through a loopback device */
	__u8 send_depth; /* kprobe backend: nested hooked calls */
	__u8 recv_depth;
	__u8 pad;
	__u32 barrier;   /* target of a locked add that serves as a full barrier */
	__u64 recv_sk;   /* kretprobe: the recv's socket and flags, saved at entry */
	__s64 recv_flags;
	__u64 outer_sk[2];  /* kprobe backend: socket and start of the outermost */
	__u64 outer_ts[2];  /* hooked send [0] and recv [1] call in progress */
};

/* TCP queues, by receiving end; deleted when the receiving socket closes. */
LT_SHARED struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, TQ_MAX_QUEUES);
	__type(key, struct tq_key);
	__type(value, struct timing_queue);
} timing_queues SEC(".maps");

/*
 * unix_stream and UDP queues, by receiving socket's address (UDP: a stream of
 * datagrams, one offset each, in the order they were queued to the socket).
 * A new socket at a freed one's address must not meet the old queue: the
 * queue names the socket it was made for by cookie (never reused; unix: the
 * sending socket, UDP: the receiving one) and is reset on a mismatch.  The
 * kprobe backend has no cookies: it deletes the queue when the socket is freed.
 */
LT_SHARED struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, TQ_MAX_QUEUES);
	__type(key, __u64);
	__type(value, struct timing_queue);
} sock_queues SEC(".maps");

/*
 * Datagram stamps: each unix datagram's skb is stamped when it is queued to its
 * receiver, and the stamp is taken by the recv that copies that skb; a UDP
 * datagram's skb is stamped when it leaves through lo, and the stamp moves to
 * its socket's queue when the datagram is queued there.  A datagram that is
 * dropped, never read or sent elsewhere can therefore never time another, and
 * every datagram names its own sender.
 */

#define DG_MAX_STAMPS 65536

/*
 * Per-CPU LRU lists: a stamp is made on the sender's CPU and deleted on the
 * receiver's; a common list can evict live stamps under that churn.
 */
LT_SHARED struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(map_flags, BPF_F_NO_COMMON_LRU);
	__uint(max_entries, DG_MAX_STAMPS);
	__type(key, struct dg_key);
	__type(value, struct dg_stamp);
} dgram_stamps SEC(".maps");

/*
 * Unix datagrams a receiver copied before their sender could stamp them (it
 * looks for its datagram at sk_data_ready, after queueing it), by sending
 * socket.  The copy marks its skb COPIED in dgram_stamps, atomically against
 * the stamp (see lt_copy_datagram and claim_stamp), so a sender learns its
 * datagram went unstamped whether it looked before or after the copy; then
 * whichever side comes second here completes the other's half: a copy
 * leaves TAKEN (a sender times it), a sender leaves RACED (a copy takes its
 * start).  Several threads can send on one socket, so several such datagrams
 * can be in flight at once: each gets a slot.  A side reserves an EMPTY slot
 * (compare-and-swap to BUSY), writes its fields, publishes it, and looks
 * again for the other kind: of two that publish at once, at least one sees
 * the other (each publication is a locked instruction, a full barrier).  The
 * copy is the authority: every copy is completed once, so a pair counts each
 * datagram received once; which of a socket's racing senders times a copy
 * follows the skb it saw COPIED, else the order they come.  (One slot per
 * socket and a sender that could stamp a copied skb lost 1-4 of 400,000
 * messages from their pair with 8 threads on one socket, in 12 of 12 runs.)
 */
enum dg_unstamped_state {
	DG_U_EMPTY = 0,
	DG_U_TAKEN = 1, /* copied: taken_* set, for the sender */
	DG_U_RACED = 2, /* not found by its sender: raced_* set, for the copy */
	DG_U_BUSY = 3,  /* reserved: its owner is writing it */
};

/*
 * Slots per sending socket: each holds one datagram copied before its sender
 * stamped it, until the other side comes.  Threads sharing a socket can each
 * have one in flight, so 8 threads could run 4 slots out (unmatched, then).
 */
#define DG_U_SLOTS 8
/*
 * A TAKEN no sender claimed within a second is a datagram queued before
 * tracing began (a sender looks microseconds after queueing); a RACED no copy
 * claimed within 10 s was dropped with its socket.  Either gives up its slot.
 */
#define DG_U_TAKEN_STALE_NS 1000000000ull
#define DG_U_RACED_STALE_NS 10000000000ull

struct dg_unstamped_slot {
	__u64 raced_ts;  /* the datagram's send entry and sender */
	__u64 raced_id;
	__u64 taken_ts;  /* when it was copied, by whom, how many bytes */
	__u64 taken_by;
	/*
	 * The skb copied: a sender that found its skb COPIED claims that TAKEN
	 * first, so it is timed from its own send (other threads' sends on the
	 * socket can be racing the same way).
	 */
	__u64 taken_skb;
	__u32 taken_bytes;
	__u32 state;     /* enum dg_unstamped_state */
	__u32 transport;
	/*
	 * Inode number of the socket that raced (sockfs numbers are not reused):
	 * keyed by address, this state can be a freed socket's, whose raced
	 * datagram was never copied; a new socket there must not take it.
	 */
	__u32 raced_ino;
};

struct dg_unstamped {
	struct dg_unstamped_slot slot[DG_U_SLOTS];
};

LT_SHARED struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64); /* sending socket */
	__type(value, struct dg_unstamped);
} dgram_unstamped SEC(".maps");

LT_SHARED struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct lt_send_ctx);
} send_ctxs SEC(".maps");

LT_SHARED struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, LOTRACE_MAX_PROCS);
	__type(key, struct lt_proc_key);
	__type(value, struct lt_proc_val);
} proc_counts SEC(".maps");

LT_SHARED struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, LOTRACE_MAX_PAIRS);
	__type(key, struct lt_pair_key);
	__type(value, struct lt_pair_val);
} pair_counts SEC(".maps");

/* Cgroup paths by cgroup id (see lt_cgroup_path); many processes share one. */
#define LOTRACE_MAX_CGROUPS 4096

LT_SHARED struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, LOTRACE_MAX_CGROUPS);
	__type(key, __u64);
	__type(value, struct lt_cgroup_path);
} proc_cgroups SEC(".maps");

/* Where a path is built: too big for the 512-byte BPF stack. */
LT_SHARED struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct lt_cgroup_path);
} cgroup_scratch SEC(".maps");

LT_SHARED struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, LOTRACE_RINGBUF_BYTES);
} events SEC(".maps");

#endif
