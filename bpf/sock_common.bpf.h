/* SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause */
/*
 * The socket-layer logic every hook backend shares.  A backend only turns its
 * hook's arguments into calls of:
 *
 *   lt_send_enter(sk, messages)       - a send call that carries `messages`
 *                                        messages on sk starts (before any data
 *                                        is visible to the receiver)
 *   lt_send_exit(sk, ret)             - one message's send returned ret
 *   lt_recv_exit(sk, ret, flags)      - a recv call returned ret
 *   lt_tcp_closed(sk)                 - a TCP socket reached TCP_CLOSE
 *   lt_xmit(skb, dev)                 - a packet starts leaving through dev
 *
 * Counting (messages, bytes) is done in per-CPU hash maps and never depends on
 * the ring buffer; the ring buffer carries only timing samples.
 *
 * Message latency: a sender pushes (start offset, entry time, tgid) into a
 * small per-direction queue when its send call starts; the receiver pops the
 * entries whose first byte its recv returned.  Queues are keyed by the
 * receiving end: TCP by netns + 4-tuple, UDP by netns + port, Unix by the
 * receiving socket.  A message that cannot be queued is counted as untimed.
 */
#ifndef LOTRACE_SOCK_COMMON_BPF_H
#define LOTRACE_SOCK_COMMON_BPF_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_tracing.h>
#include "lotrace.h"
#include "kernel_defs.h"
#include "maps.bpf.h"


/*
 * Reading kernel memory.  In the tp_btf and fentry backends pointers are BTF
 * pointers and fields are read directly: the verifier makes those plain loads
 * guarded by exception tables, several times cheaper than the probe-read
 * helper calls of BPF_CORE_READ.  The kprobe backend's pointers are plain
 * numbers, so it defines LT_PLAIN_POINTERS and reads through the helper.
 * Reads through a containing type (tcp_sock, unix_sock), LT_RD_AS, are direct
 * loads too where the backend may use bpf_rdonly_cast (LT_RDONLY_CAST: 6.2+,
 * the tracepoint backend), which the verifier turns into a plain move; else
 * they go through BPF_CORE_READ, as the verifier knows the pointer as a sock.
 */
#ifdef LT_PLAIN_POINTERS
#define LT_RD(src, a, ...) BPF_CORE_READ(src, a, ##__VA_ARGS__)
#else
#define LT_RD(src, a, ...) ((src)->___arrow(a, ##__VA_ARGS__))
#endif

#ifdef LT_RDONLY_CAST
/* Weak: the object must still load on kernels without it (other backends). */
extern void *bpf_rdonly_cast(const void *obj, __u32 btf_id) __ksym __weak;
#define LT_CAST(type, p) ((type *)bpf_rdonly_cast((p), bpf_core_type_id_kernel(type)))
#define LT_RD_AS(type, p, a, ...) (LT_CAST(type, p)->___arrow(a, ##__VA_ARGS__))
#else
#define LT_RD_AS(type, p, a, ...) BPF_CORE_READ((type *)(p), a, ##__VA_ARGS__)
#endif

/*
 * A process identity, (tgid, tag) of lotrace.h's lt_proc_key, in one u64:
 * tag << 32 | tgid.  The tag tells a reused pid's new process from the old.
 */
#define LT_ID_TGID(id) ((__u32)(id))
#define LT_ID_TAG(id) ((__u32)((id) >> 32))

static __always_inline __u64 current_id(void)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
#ifdef LT_PLAIN_POINTERS
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	__u64 start = BPF_CORE_READ(task, group_leader, start_boottime);
#else
	__u64 start = bpf_get_current_task_btf()->group_leader->start_boottime;
#endif
	return (__u64)(__u32)start << 32 | tgid;
}

/* This thread's send/recv state. */
static __always_inline struct lt_send_ctx *task_ctx(bool create)
{
	return bpf_task_storage_get(&send_ctxs, bpf_get_current_task_btf(), 0,
				    create ? BPF_LOCAL_STORAGE_GET_F_CREATE : 0);
}

static __always_inline int lt_transport_of(struct sock *sk)
{
	__u16 family = LT_RD(sk, __sk_common.skc_family);
	__u16 type = LT_RD(sk, sk_type);

	if (family == AF_UNIX) {
		if (type == SOCK_STREAM)
			return LT_UNIX_STREAM;
		if (type == SOCK_DGRAM)
			return LT_UNIX_DGRAM;
		if (type == SOCK_SEQPACKET)
			return LT_UNIX_SEQPACKET;
		return -1;
	}
	if (family != AF_INET && family != AF_INET6)
		return -1;
	__u16 protocol = LT_RD(sk, sk_protocol);
	if (protocol == IPPROTO_TCP && type == SOCK_STREAM)
		return LT_TCP;
	if (protocol == IPPROTO_UDP && type == SOCK_DGRAM)
		return LT_UDP;
	return -1;
}

static __always_inline bool lt_is_stream(int transport)
{
	return transport == LT_TCP || transport == LT_UNIX_STREAM;
}

static __always_inline bool lt_is_unix(int transport)
{
	return transport >= LT_UNIX_STREAM;
}

/*
 * The socket's addresses, IPv4 (also v4-mapped IPv6) as family AF_INET in the
 * first 4 bytes, so both ends of a v4-mapped connection agree.
 */
static __always_inline __u8 inet_addrs(struct sock *sk, __u8 local[16], __u8 remote[16])
{
	__u16 family = LT_RD(sk, __sk_common.skc_family);

	if (family == AF_INET6) {
		struct in6_addr d = LT_RD(sk, __sk_common.skc_v6_daddr);
		struct in6_addr s = LT_RD(sk, __sk_common.skc_v6_rcv_saddr);
		bool d_mapped = d.in6_u.u6_addr32[0] == 0 && d.in6_u.u6_addr32[1] == 0 &&
				d.in6_u.u6_addr32[2] == bpf_htonl(0xffff);
		bool d_any = !(d.in6_u.u6_addr32[0] | d.in6_u.u6_addr32[1] |
			       d.in6_u.u6_addr32[2] | d.in6_u.u6_addr32[3]);
		bool s_mapped = s.in6_u.u6_addr32[0] == 0 && s.in6_u.u6_addr32[1] == 0 &&
				s.in6_u.u6_addr32[2] == bpf_htonl(0xffff);
		if (!(d_mapped || (d_any && s_mapped))) {
			__builtin_memcpy(local, &s, 16);
			__builtin_memcpy(remote, &d, 16);
			return AF_INET6;
		}
	}
	__u32 daddr = LT_RD(sk, __sk_common.skc_daddr);
	__u32 saddr = LT_RD(sk, __sk_common.skc_rcv_saddr);
	__builtin_memcpy(local, &saddr, 4);
	__builtin_memcpy(remote, &daddr, 4);
	return AF_INET;
}

static __always_inline bool addr_is_loopback(__u8 family, const __u8 a[16])
{
	if (family == AF_INET)
		return a[0] == 127;
	__u32 w[4];
	__builtin_memcpy(w, a, 16);
	return w[0] == 0 && w[1] == 0 && w[2] == 0 && w[3] == bpf_htonl(1);
}

static __always_inline bool addr_is_any(__u8 family, const __u8 a[16])
{
	__u32 w[4];
	__builtin_memcpy(w, a, 16);
	if (family == AF_INET)
		return w[0] == 0;
	return !(w[0] | w[1] | w[2] | w[3]);
}

static __always_inline bool addr_eq(const __u8 a[16], const __u8 b[16])
{
	__u64 x[2], y[2];
	__builtin_memcpy(x, a, 16);
	__builtin_memcpy(y, b, 16);
	return x[0] == y[0] && x[1] == y[1];
}

/*
 * Does this TCP/UDP socket's traffic go through a loopback device?  The cached
 * route says so exactly; without one (route being rebuilt) the addresses do:
 * a loopback address, or the same address at both ends (Linux routes traffic
 * to the host's own addresses over lo).  Unconnected UDP sockets have neither;
 * for them lt_xmit sees the device of each datagram.
 */
static __always_inline bool lt_inet_on_loopback(struct sock *sk)
{
	struct dst_entry *dst = LT_RD(sk, sk_dst_cache);

	if (dst) {
		unsigned int flags = LT_RD(dst, dev, flags);
		return flags & IFF_LOOPBACK;
	}
	__u8 local[16] = {}, remote[16] = {};
	__u8 family = inet_addrs(sk, local, remote);

	if (addr_is_any(family, remote))
		return addr_is_loopback(family, local);
	return addr_is_loopback(family, remote) || addr_eq(local, remote);
}

static __always_inline __u32 sk_netns(struct sock *sk)
{
	return LT_RD(sk, __sk_common.skc_net.net, ns.inum);
}

/* Key of the queue that data sent on sk goes into; false if unknown. */
static __always_inline bool tq_key_send(struct sock *sk, int transport, struct tq_key *k)
{
	k->transport = transport;
	if (lt_is_unix(transport)) {
		struct sock *peer = LT_RD_AS(struct unix_sock, sk, peer);
		if (!peer)
			return false; /* unconnected datagram: receiver unknown */
		k->sk = (__u64)peer;
		return true;
	}
	k->netns = sk_netns(sk);
	k->lport = bpf_ntohs(LT_RD(sk, __sk_common.skc_dport));
	if (!k->lport)
		return false; /* unconnected UDP: destination is per call */
	if (transport == LT_UDP)
		return true;
	k->rport = LT_RD(sk, __sk_common.skc_num);
	k->family = inet_addrs(sk, k->raddr, k->laddr);
	return true;
}

/* Key of the queue that data received on sk came through. */
static __always_inline void tq_key_recv(struct sock *sk, int transport, struct tq_key *k)
{
	k->transport = transport;
	if (lt_is_unix(transport)) {
		k->sk = (__u64)sk;
		return;
	}
	k->netns = sk_netns(sk);
	k->lport = LT_RD(sk, __sk_common.skc_num);
	if (transport == LT_UDP)
		return;
	k->rport = bpf_ntohs(LT_RD(sk, __sk_common.skc_dport));
	k->family = inet_addrs(sk, k->laddr, k->raddr);
}

static __always_inline void stat_add(__u32 idx, __u64 n)
{
	__u64 *v = bpf_map_lookup_elem(&stats, &idx);
	if (v)
		__sync_fetch_and_add(v, n);
}

static __always_inline void count_untimed(int transport, __u64 n)
{
	stat_add(LT_STAT_UNTIMED_BASE + transport, n);
}

/*
 * The counting and event functions are global (weak: every backend file has
 * them, the linker keeps one): the verifier checks them once instead of at
 * every call site, which keeps the recv path's loop within its limits.
 */
static __always_inline void count_total(__u32 idx, __u64 n, __u64 bytes)
{
	struct lt_count *c = bpf_map_lookup_elem(&totals, &idx);
	if (c) {
		__sync_fetch_and_add(&c->n, n);
		__sync_fetch_and_add(&c->bytes, bytes);
	}
}

__weak __noinline int count_proc(__u64 id, int transport, int direction, __u64 bytes)
{
	struct lt_proc_key key = {
		.tgid = LT_ID_TGID(id),
		.tag = LT_ID_TAG(id),
		.transport = transport,
		.direction = direction,
	};

	/* The exact total first: the row below may be evicted later (LRU). */
	count_total(LT_TOT_PROC_BASE + (transport & 7) * LT_DIRECTION_COUNT + (direction & 1), 1,
		    bytes);
	struct lt_proc_val *v = bpf_map_lookup_elem(&proc_counts, &key);
	if (!v) {
		struct lt_proc_val init = {};
		/* Helper reads: this one copy serves every backend (see above). */
		struct task_struct *task = (struct task_struct *)bpf_get_current_task();
		BPF_CORE_READ_STR_INTO(&init.comm, task, group_leader, comm);
		init.start_ns = BPF_CORE_READ(task, group_leader, start_boottime);
		bpf_map_update_elem(&proc_counts, &key, &init, BPF_NOEXIST);
		v = bpf_map_lookup_elem(&proc_counts, &key);
		if (!v) {
			stat_add(LT_STAT_MAP_FULL, 1);
			return 0;
		}
	}
	/* Atomic even per CPU: a preemptible kernel can interleave two tasks. */
	__sync_fetch_and_add(&v->messages, 1);
	__sync_fetch_and_add(&v->bytes, bytes);
	return 0;
}

__weak __noinline int count_pair(__u64 sender, __u64 receiver, int transport, __u64 messages,
				 __u64 bytes)
{
	struct lt_pair_key key = {
		.sender_tgid = LT_ID_TGID(sender),
		.sender_tag = LT_ID_TAG(sender),
		.receiver_tgid = LT_ID_TGID(receiver),
		.receiver_tag = LT_ID_TAG(receiver),
		.transport = transport,
	};

	count_total(LT_TOT_PAIR_BASE + (transport & 7), messages, bytes);
	struct lt_pair_val *v = bpf_map_lookup_elem(&pair_counts, &key);

	if (!v) {
		struct lt_pair_val init = {};
		bpf_map_update_elem(&pair_counts, &key, &init, BPF_NOEXIST);
		v = bpf_map_lookup_elem(&pair_counts, &key);
		if (!v) {
			stat_add(LT_STAT_MAP_FULL, 1);
			return 0;
		}
	}
	if (messages)
		__sync_fetch_and_add(&v->messages, messages);
	if (bytes)
		__sync_fetch_and_add(&v->bytes, bytes);
	return 0;
}

/* what: kind << 8 | transport (BPF functions take at most five arguments). */
#define EV(kind, transport) ((kind) << 8 | (transport))

__weak __noinline int emit(__u32 what, __u64 id, __u64 peer, __u64 value, __u32 send_ns)
{
	struct lt_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);

	if (!e) {
		stat_add(LT_STAT_LOST_EVENTS, 1);
		return 0;
	}
	e->value_ns = value;
	e->tgid = LT_ID_TGID(id);
	e->peer_tgid = LT_ID_TGID(peer);
	e->tag = LT_ID_TAG(id);
	e->peer_tag = LT_ID_TAG(peer);
	e->send_ns = send_ns;
	e->kind = what >> 8;
	e->transport = what & 0xff;
	e->pad = 0;
	/*
	 * Waking the reader for every event costs more than the traffic traced;
	 * it polls on a short timer and is woken only when the ring fills up.
	 */
	__u64 flags = bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA) > lt_wakeup_bytes ?
			      BPF_RB_FORCE_WAKEUP : BPF_RB_NO_WAKEUP;
	bpf_ringbuf_submit(e, flags);
	return 0;
}

/*
 * Remember which process uses sk, for the lo TC program's attribution.
 * Backends whose sk is not a BTF pointer (kprobes) cannot use socket storage.
 */
#ifdef LT_NO_SK_STORAGE
static __always_inline void note_owner(struct sock *sk, __u32 tgid)
{
}
#else
static __always_inline void note_owner(struct sock *sk, __u32 tgid)
{
	struct lt_sock_state *st = bpf_sk_storage_get(&sock_states, sk, 0,
						       BPF_SK_STORAGE_GET_F_CREATE);

	if (st && st->owner_tgid != tgid)
		st->owner_tgid = tgid;
}
#endif

/* Too large for the BPF stack; new queues are copied from here. */
static const struct timing_queue empty_queue;

/*
 * One subprogram per queue map: inlined, the compiler merges the two lookups
 * into one call on either map, which the verifier can no longer inline.
 */
static __noinline struct timing_queue *tq_get_unix(__u64 sk, bool create)
{
	struct timing_queue *q = bpf_map_lookup_elem(&unix_queues, &sk);

	if (q || !create)
		return q;
	bpf_map_update_elem(&unix_queues, &sk, &empty_queue, BPF_NOEXIST);
	return bpf_map_lookup_elem(&unix_queues, &sk);
}

static __noinline struct timing_queue *tq_get_inet(struct tq_key *k, bool create)
{
	struct timing_queue *q = bpf_map_lookup_elem(&timing_queues, k);

	if (q || !create)
		return q;
	bpf_map_update_elem(&timing_queues, k, &empty_queue, BPF_NOEXIST);
	return bpf_map_lookup_elem(&timing_queues, k);
}

static __always_inline struct timing_queue *tq_get(struct tq_key *k, bool create)
{
	return lt_is_unix(k->transport) ? tq_get_unix(k->sk, create) : tq_get_inet(k, create);
}

/*
 * A packet starts leaving through dev.  On a loopback device: mark the send
 * in progress on this thread (if the packet is its own) as going over lo, and
 * note a UDP datagram as pending for its destination, before it can arrive.
 */
static __always_inline void lt_xmit(const struct sk_buff *skb, const struct net_device *dev)
{
	if (!(LT_RD(dev, flags) & IFF_LOOPBACK))
		return;
	struct lt_send_ctx *ctx = task_ctx(false);
	if (ctx && ctx->ts && ctx->sk == (__u64)LT_RD(skb, sk))
		ctx->lo_tx = 1;

	unsigned char *head = LT_RD(skb, head);
	__u16 nh = LT_RD(skb, network_header);
	__u16 th = LT_RD(skb, transport_header);
	__u16 proto = bpf_ntohs(LT_RD(skb, protocol));
	__u8 l4 = 0;
	if (proto == ETH_P_IP)
		bpf_probe_read_kernel(&l4, 1, head + nh + 9);
	else if (proto == ETH_P_IPV6)
		bpf_probe_read_kernel(&l4, 1, head + nh + 6);
	if (l4 != IPPROTO_UDP)
		return;
	__u16 dport = 0;
	if (bpf_probe_read_kernel(&dport, 2, head + th + 2))
		return;
	struct lo_udp_dest d = {
		.netns = LT_RD(dev, nd_net.net, ns.inum),
		.port = bpf_ntohs(dport),
	};
	__u64 *pending = bpf_map_lookup_elem(&lo_udp_pending, &d);
	if (pending) {
		__sync_fetch_and_add(pending, 1);
	} else {
		__u64 one = 1;
		if (bpf_map_update_elem(&lo_udp_pending, &d, &one, BPF_NOEXIST) &&
		    (pending = bpf_map_lookup_elem(&lo_udp_pending, &d)))
			__sync_fetch_and_add(pending, 1);
	}
}

/* Was the datagram this UDP socket just received sent through lo? */
static __always_inline bool udp_received_over_lo(struct sock *sk)
{
	struct lo_udp_dest d = {
		.netns = sk_netns(sk),
		.port = LT_RD(sk, __sk_common.skc_num),
	};
	__u64 *pending = bpf_map_lookup_elem(&lo_udp_pending, &d);
	if (!pending)
		return false;
	/* Claim one pending datagram; other receivers on the port may race. */
	for (int i = 0; i < 8; i++) {
		__u64 n = *pending;
		if (!n)
			return false;
		if (__sync_val_compare_and_swap(pending, n, n - 1) == n)
			return true;
	}
	return false;
}

/* Queue the message process id starts now on sk; returns its slot seq or 0. */
static __always_inline __u32 tq_push(struct sock *sk, int transport, __u64 ts, __u64 id)
{
	struct tq_key k = {};

	if (!tq_key_send(sk, transport, &k))
		return 0;
	if (!lt_is_unix(transport) && !lt_inet_on_loopback(sk))
		return 0;
	struct timing_queue *q = tq_get(&k, true);
	if (!q)
		return 0;

	__u32 start = 0;
	bool fresh = q->tail == 0;
	if (transport == LT_TCP) {
		start = LT_RD_AS(struct tcp_sock, sk, write_seq);
	} else if (transport == LT_UNIX_STREAM) {
		/* A new socket at a freed one's address: start this queue afresh. */
		if (q->peer != (__u64)sk) {
			q->head = q->tail;
			q->sent_off = 0;
			q->recv_off = 0;
			q->peer = (__u64)sk;
			fresh = true;
		}
		start = q->sent_off;
	}
	if (fresh && lt_is_unix(transport)) {
		/* Data queued before we saw it: offsets are unknown until it drains. */
		struct sock *peer = (struct sock *)k.sk;
		q->desync = BPF_CORE_READ(peer, sk_receive_queue.qlen) > 0;
	}

	__u32 idx = __sync_fetch_and_add(&q->tail, 1);
	if (idx - q->head >= TQ_SLOTS)
		count_untimed(transport, 1); /* overwrites a message never received */
	struct tq_slot *s = &q->slot[idx & TQ_MASK];
	s->ts = ts;
	s->start = start;
	s->tgid = LT_ID_TGID(id);
	s->tag = LT_ID_TAG(id);
	s->state = TQ_SLOT_OPEN;
	s->send_ns = 0;
	s->seq = idx + 1;
	return idx + 1;
}

static __always_inline void lt_send_enter(struct sock *sk, __u32 messages)
{
	int transport = lt_transport_of(sk);

	if (transport < 0)
		return;
	struct lt_send_ctx *ctx = task_ctx(true);
	if (!ctx)
		return;
	__u64 now = bpf_ktime_get_ns();
	ctx->ts = now;
	ctx->sk = (__u64)sk;
	ctx->remaining = messages;
	ctx->lo_tx = 0;
	ctx->slot_seq = tq_push(sk, transport, now, current_id());
}

/* The queue that data sent on sk goes into, or NULL. */
static __always_inline struct timing_queue *tq_my_queue(struct sock *sk, int transport)
{
	struct tq_key k = {};

	return tq_key_send(sk, transport, &k) ? tq_get(&k, false) : NULL;
}

/* The queue slot of the message this thread is sending, or NULL. */
static __always_inline struct tq_slot *tq_my_slot(struct sock *sk, int transport, __u32 seq,
						  struct timing_queue **qp)
{
	struct timing_queue *q = tq_my_queue(sk, transport);
	if (!q)
		return NULL;
	*qp = q;
	struct tq_slot *s = &q->slot[(seq - 1) & TQ_MASK];
	return seq && s->seq == seq ? s : NULL;
}

static __always_inline void lt_send_exit(struct sock *sk, int ret)
{
	int transport = lt_transport_of(sk);

	if (transport < 0)
		return;
	struct lt_send_ctx *ctx = task_ctx(false);
	bool timed = ctx && ctx->ts && ctx->sk == (__u64)sk;

	if (!lt_is_unix(transport) && !(timed && ctx->lo_tx) && !lt_inet_on_loopback(sk)) {
		if (ctx) {
			/* Not over lo; and kretprobes must not see this sk as theirs later. */
			ctx->ts = 0;
			ctx->sk = 0;
		}
		return;
	}
	__u64 now = bpf_ktime_get_ns();
	__u64 id = current_id();
	if (!lt_is_unix(transport))
		note_owner(sk, LT_ID_TGID(id)); /* only TCP/UDP packets cross lo */

	struct timing_queue *q = NULL;
	struct tq_slot *s = timed ? tq_my_slot(sk, transport, ctx->slot_seq, &q) : NULL;
	if (ret > 0) {
		count_proc(id, transport, LT_SEND, ret);
		if (!timed || !ctx->slot_seq)
			count_untimed(transport, 1);
		if (timed) {
			/* Hand the duration to the receiver's event, unless it came first. */
			__u64 dur = now - ctx->ts;
			bool handed = false;
			if (s && dur <= 0xffffffffu) {
				s->send_ns = dur ? dur : 1;
				handed = __sync_val_compare_and_swap(&s->state, TQ_SLOT_OPEN,
								     TQ_SLOT_SENT) == TQ_SLOT_OPEN;
			}
			if (!handed)
				emit(EV(LT_EV_SEND_DURATION, transport), id, 0, dur, 0);
		}
		if (transport == LT_UNIX_STREAM && (q || (!timed && (q = tq_my_queue(sk, transport)))))
			__sync_fetch_and_add(&q->sent_off, ret);
	} else if (s) {
		s->ts = 0; /* the send failed: no message */
	}
	if (!timed)
		return;
	if (ret > 0 && ctx->remaining > 1) {
		/* sendmmsg: the next message's send starts now. */
		ctx->remaining--;
		ctx->ts = now;
		ctx->slot_seq = tq_push(sk, transport, now, id);
	} else {
		ctx->ts = 0;
		ctx->sk = 0;
	}
	ctx->lo_tx = 0;
}

/*
 * Pair messages popped by one recv, counted once per run of one sender: one
 * pair-map update per recv in the usual case, together with its bytes.
 */
struct pop_tally {
	__u64 sender; /* process id (LT_ID_*) */
	__u32 messages;
	__u32 pad;
};

/* Global, like count_pair: its branches on the tally stay out of the pop loop's states. */
__weak __noinline int tally_message(struct pop_tally *tally, __u64 sender, __u64 me, int transport)
{
	if (!tally)
		return 0;
	if (tally->messages && tally->sender != sender) {
		count_pair(tally->sender, me, transport, tally->messages, 0);
		tally->messages = 0;
	}
	tally->sender = sender;
	tally->messages++;
	return 0;
}

/* A message whose first byte the receiver got now. */
static __always_inline void time_message(struct tq_slot *s, int transport, __u64 me, __u64 now,
					 struct pop_tally *tally)
{
	__u64 sender = (__u64)s->tag << 32 | s->tgid;
	/* Take the send duration if the sender left it; else it reports it itself. */
	__u32 state = __sync_lock_test_and_set(&s->state, TQ_SLOT_TAKEN);
	__u32 send_ns = state == TQ_SLOT_SENT ? s->send_ns : 0;

	emit(EV(LT_EV_MESSAGE, transport), me, sender, now - s->ts, send_ns);
	tally_message(tally, sender, me, transport);
}

/*
 * Pop the entries whose message starts in [start, end) (stream) or the next
 * live entry (datagram); time them.
 */
static __always_inline void tq_pop(struct timing_queue *q, int transport, bool stream,
				   __u32 start, __u32 end, __u64 now, __u64 me,
				   struct pop_tally *tally)
{
	for (int i = 0; i < TQ_SLOTS + 2; i++) {
		__u32 h = q->head, t = q->tail;
		if (h == t)
			break;
		if (t - h > TQ_SLOTS) {
			q->head = t - TQ_SLOTS; /* overwritten; counted by the sender */
			continue;
		}
		struct tq_slot *s = &q->slot[h & TQ_MASK];
		__u32 seq = s->seq;
		if (seq != h + 1) {
			if ((__s32)(seq - (h + 1)) > 0) {
				q->head = h + 1;
				continue;
			}
			break; /* being written */
		}
		if (!s->ts) { /* the send failed */
			q->head = h + 1;
			continue;
		}
		if (!stream) {
			time_message(s, transport, me, now, tally);
			q->head = h + 1;
			break;
		}
		if ((__s32)(s->start - end) >= 0)
			break; /* not reached yet */
		if ((__s32)(s->start - start) >= 0)
			time_message(s, transport, me, now, tally);
		q->head = h + 1;
	}
}

static __always_inline void lt_recv_exit(struct sock *sk, int ret, int flags)
{
	if (ret <= 0 || (flags & MSG_PEEK))
		return;
	int transport = lt_transport_of(sk);
	if (transport < 0)
		return;
	if (transport == LT_UDP) {
		/* One datagram per recv: claim one of those lt_xmit saw leave via lo. */
		if (!udp_received_over_lo(sk) && !lt_inet_on_loopback(sk))
			return;
	} else if (transport == LT_TCP && !lt_inet_on_loopback(sk)) {
		return;
	}

	__u64 now = bpf_ktime_get_ns();
	__u64 me = current_id();
	if (!lt_is_unix(transport))
		note_owner(sk, LT_ID_TGID(me)); /* only TCP/UDP packets cross lo */
	count_proc(me, transport, LT_RECV, ret);

	struct tq_key k = {};
	tq_key_recv(sk, transport, &k);
	struct timing_queue *q = tq_get(&k, false);
	if (!q)
		return;
	bool stream = lt_is_stream(transport);
	__u32 end = 0;

	if (transport == LT_TCP)
		end = LT_RD_AS(struct tcp_sock, sk, copied_seq);
	else if (transport == LT_UNIX_STREAM)
		end = __sync_fetch_and_add(&q->recv_off, ret) + ret;

	if (q->desync) {
		if (LT_RD(sk, sk_receive_queue.qlen) == 0) {
			/* Drained: what is queued now was all sent while we watched. */
			count_untimed(transport, q->tail - q->head);
			q->head = q->tail;
			q->recv_off = q->sent_off;
			q->desync = 0;
		}
		return;
	}
	struct pop_tally tally = {};
	tq_pop(q, transport, stream, end - ret, end, now, me, &tally);
	if (tally.messages)
		q->last_sender = tally.sender;
	/*
	 * The bytes go to the last sender popped, else the last one seen: one
	 * sender per connection, usually.
	 */
	__u64 sender = tally.messages ? tally.sender : q->last_sender;
	if (sender)
		count_pair(sender, me, transport, tally.messages, ret);
}


/*
 * The kprobe backend hooks both unix_seqpacket_*msg and the unix_dgram_*msg
 * they call (which the compiler may inline): only the outermost hooked call on
 * a thread counts.  Its kretprobes see no socket to tell the two apart by
 * type, as the fentry backend does, so a per-thread depth counts the nesting.
 */
static __always_inline bool lt_outer_enter(bool recv)
{
	struct lt_send_ctx *ctx = task_ctx(true);
	if (!ctx)
		return true;
	__u8 *depth = recv ? &ctx->recv_depth : &ctx->send_depth;
	return (*depth)++ == 0;
}

static __always_inline bool lt_outer_exit(bool recv)
{
	struct lt_send_ctx *ctx = task_ctx(false);
	if (!ctx)
		return true;
	__u8 *depth = recv ? &ctx->recv_depth : &ctx->send_depth;
	if (*depth == 0) /* entry happened before tracing started */
		return true;
	return --(*depth) == 0;
}

/* kretprobes see no arguments: the recv's socket and flags are saved at entry. */
static __always_inline void lt_recv_save(struct sock *sk, int flags)
{
	struct lt_send_ctx *ctx = task_ctx(true);
	if (ctx) {
		ctx->recv_sk = (__u64)sk;
		ctx->recv_flags = flags;
	}
}

static __always_inline void lt_recv_saved_exit(int ret)
{
	struct lt_send_ctx *ctx = task_ctx(false);
	if (ctx && ctx->recv_sk) {
		lt_recv_exit((struct sock *)ctx->recv_sk, ret, (int)ctx->recv_flags);
		ctx->recv_sk = 0;
	}
}

static __always_inline void lt_send_saved_exit(int ret)
{
	struct lt_send_ctx *ctx = task_ctx(false);
	if (ctx && ctx->sk)
		lt_send_exit((struct sock *)ctx->sk, ret);
}

static __always_inline void lt_tcp_closed(struct sock *sk)
{
	struct tq_key k = {};

	tq_key_recv(sk, LT_TCP, &k);
	bpf_map_delete_elem(&timing_queues, &k);
}

#endif
