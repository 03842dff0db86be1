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
 *   lt_data_ready(sk)                 - data was queued to sk (unix datagrams)
 *   lt_copy_datagram(skb)             - a recv copies skb's data to user space
 *   lt_dropped(skb)                   - the kernel drops skb
 *
 * Counting (messages, bytes) is done in hash maps with atomic adds and never
 * depends on the ring buffer; the ring buffer carries only timing samples.
 *
 * Message latency, from the sender's send-call entry to the recv return that
 * delivers the message's first byte:
 * - streams (TCP, unix_stream): when a send returns, its first byte's offset
 *   and entry time go into a short queue of the receiving end, thinned by a
 *   stride under a backlog (see tq_pick); the receiver times the entries whose
 *   first byte its recv returned.  TCP queues are keyed by netns + 4-tuple,
 *   unix queues live in the receiving socket's storage.
 * - datagrams (UDP, unix_dgram, unix_seqpacket): the skb itself is stamped
 *   (dgram_stamps) and the recv that copies it takes the stamp, so a datagram
 *   that never arrives cannot time another.
 * A sent message that gets no sample is counted as untimed, by cause.
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
 * A unix socket's peer, as a pointer its fields can be read through with
 * LT_RD.  fentry has no bpf_rdonly_cast (6.1, libbpf 1.1), but
 * bpf_skc_to_unix_sock gives the same BTF pointer for one helper call: the
 * two probe reads it replaces (the peer, then its queue length) cost ~180
 * instructions per unix_stream message.
 */
#if defined(LT_RDONLY_CAST) || defined(LT_PLAIN_POINTERS)
#define LT_UNIX_PEER(sk) LT_RD_AS(struct unix_sock, sk, peer)
#else
static __always_inline struct sock *lt_unix_peer(struct sock *sk)
{
	struct unix_sock *us = bpf_skc_to_unix_sock(sk);
	return us ? us->peer : NULL;
}
#define LT_UNIX_PEER(sk) lt_unix_peer(sk)
#endif

/*
 * One load or store the compiler keeps, in program order with the other such
 * accesses: fields shared with other CPUs without a lock (x86 keeps loads in
 * order and stores in order).
 */
#define LT_ONCE(x) (*(volatile typeof(x) *)&(x))

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

/*
 * Whether the thread's send start is that of a send in progress on sk (0: on
 * any socket).  A backend whose send start is not a function entry (the
 * tracepoint backend: system call entry) also says whether the thread is
 * still in a send system call (LT_SEND_SYSCALLS); a start left by a call that
 * never reached its socket is dropped.
 */
static __always_inline bool send_started(struct lt_send_ctx *ctx, __u64 sk)
{
	if (!ctx || !ctx->ts || (sk && ctx->sk != sk))
		return false;
#ifdef LT_SEND_SYSCALLS
	if (lt_send_start_at_syscall && !lt_in_send_syscall()) {
		ctx->ts = 0;
		ctx->sk = 0;
		return false;
	}
#endif
	return true;
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

static __always_inline bool lt_is_dgram(int transport)
{
	return !lt_is_stream(transport);
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

/* Key of the TCP queue that data sent on sk goes into; false if unconnected. */
static __always_inline bool tq_key_send(struct sock *sk, struct tq_key *k)
{
	k->transport = LT_TCP;
	k->netns = sk_netns(sk);
	k->lport = bpf_ntohs(LT_RD(sk, __sk_common.skc_dport));
	k->rport = LT_RD(sk, __sk_common.skc_num);
	k->family = inet_addrs(sk, k->raddr, k->laddr);
	return k->lport != 0;
}

/*
 * Key of the TCP queue that data received on sk came through.  A socket
 * reaching TCP_CLOSE (closing) has released its port already (skc_num is 0):
 * the port is still in inet_sport then.
 */
static __always_inline void tq_key_recv(struct sock *sk, struct tq_key *k, bool closing)
{
	k->transport = LT_TCP;
	k->netns = sk_netns(sk);
	k->lport = closing ? bpf_ntohs(BPF_CORE_READ((struct inet_sock *)sk, inet_sport)) :
			     LT_RD(sk, __sk_common.skc_num);
	k->rport = bpf_ntohs(LT_RD(sk, __sk_common.skc_dport));
	k->family = inet_addrs(sk, k->laddr, k->raddr);
}

static __always_inline void stat_add(__u32 idx, __u64 n)
{
	__u64 *v = bpf_map_lookup_elem(&stats, &idx);
	if (v)
		__sync_fetch_and_add(v, n);
}

static __always_inline void count_untimed(int cause, int transport, __u64 n)
{
	stat_add(LT_STAT_UNTIMED(cause, transport), n);
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

/* Linux 6.15 renamed kernfs_node.parent to __parent (RCU). */
struct kernfs_node___old {
	struct kernfs_node *parent;
} __attribute__((preserve_access_index));

static __always_inline struct kernfs_node *kn_parent(struct kernfs_node *kn)
{
	if (bpf_core_field_exists(kn->__parent))
		return BPF_CORE_READ(kn, __parent);
	return BPF_CORE_READ((struct kernfs_node___old *)kn, parent);
}

/*
 * Records the path of cgroup id (the current task's, on the default
 * hierarchy) unless it is known.  Runs once per new process row, not per
 * message.
 */
__weak __noinline int note_cgroup(__u64 id)
{
	__u32 zero = 0;
	if (bpf_map_lookup_elem(&proc_cgroups, &id))
		return 0;
	struct lt_cgroup_path *p = bpf_map_lookup_elem(&cgroup_scratch, &zero);
	if (!p)
		return 0;
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct kernfs_node *kn = BPF_CORE_READ(task, cgroups, dfl_cgrp, kn);
	p->depth = 0;
	p->truncated = 0;
	for (int i = 0; i < LOTRACE_CGROUP_DEPTH; i++) {
		struct kernfs_node *parent = kn ? kn_parent(kn) : NULL;
		if (!parent) /* kn is the root (its name is not a component), or none */
			break;
		const char *name = BPF_CORE_READ(kn, name);
		if (bpf_probe_read_kernel_str(p->name[i], LOTRACE_CGROUP_NAME_LEN, name) < 0)
			p->name[i][0] = 0;
		p->depth = i + 1;
		kn = parent;
	}
	if (p->depth == LOTRACE_CGROUP_DEPTH && kn && kn_parent(kn))
		p->truncated = 1;
	bpf_map_update_elem(&proc_cgroups, &id, p, BPF_NOEXIST);
	return 0;
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
		init.cgroup_id = bpf_get_current_cgroup_id();
		note_cgroup(init.cgroup_id);
		bpf_map_update_elem(&proc_counts, &key, &init, BPF_NOEXIST);
		v = bpf_map_lookup_elem(&proc_counts, &key);
		if (!v) {
			stat_add(LT_STAT_MAP_FULL, 1);
			return 0;
		}
	}
	/* The row is shared by all CPUs. */
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

/*
 * what: weight << 16 | kind << 8 | transport (BPF functions take at most five
 * arguments).
 */
#define EV(kind, transport) ((kind) << 8 | (transport))
#define EV_MESSAGE(transport, weight) ((weight) << 16 | EV(LT_EV_MESSAGE, transport))

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
	e->kind = (what >> 8) & 0xff;
	e->transport = what & 0xff;
	e->weight = what >> 16;
	e->at_ns = lt_event_times ? bpf_ktime_get_ns() : 0;
	/*
	 * Waking the reader for every event costs more than the traffic traced;
	 * it polls on a short timer and is woken only when the ring fills up.
	 */
	__u64 flags = bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA) > lt_wakeup_bytes ?
			      BPF_RB_FORCE_WAKEUP : BPF_RB_NO_WAKEUP;
	bpf_ringbuf_submit(e, flags);
	return 0;
}

static __always_inline void emit_send_duration(int transport, __u64 id, __u64 dur)
{
	emit(EV(LT_EV_SEND_DURATION, transport), id, 0, dur, 0);
}

/*
 * Remember which process uses sk, for the lo TC program's attribution.
 * Backends whose sk is not a BTF pointer (kprobes) cannot use socket storage.
 */
#ifdef LT_NO_SK_STORAGE
static __always_inline void note_owner(struct sock *sk, __u32 tgid)
{
}

static __always_inline bool had_stream_queue(struct sock *sk)
{
	return false;
}
#else
static __always_inline void note_owner(struct sock *sk, __u32 tgid)
{
	struct lt_sock_state *st = bpf_sk_storage_get(&sock_states, sk, 0,
						       BPF_SK_STORAGE_GET_F_CREATE);

	if (st && st->owner_tgid != tgid)
		st->owner_tgid = tgid;
}

/*
 * Whether a timing queue was made before for what unix stream socket sk
 * receives (there is one now).  Asked once per queue, when its receiver
 * first meets it.
 */
static __always_inline bool had_stream_queue(struct sock *sk)
{
	struct lt_sock_state *st = bpf_sk_storage_get(&sock_states, sk, 0,
						       BPF_SK_STORAGE_GET_F_CREATE);

	return st && __sync_lock_test_and_set(&st->had_queue, 1);
}
#endif

/* ---- Stream queues (TCP, unix_stream) ---- */

/* Too large for the BPF stack; new hash-map queues are copied from here. */
static const struct timing_queue empty_queue;

static __noinline struct timing_queue *tcp_queue(struct tq_key *k, bool create)
{
	struct timing_queue *q = bpf_map_lookup_elem(&timing_queues, k);

	if (q || !create)
		return q;
	bpf_map_update_elem(&timing_queues, k, &empty_queue, BPF_NOEXIST);
	return bpf_map_lookup_elem(&timing_queues, k);
}

static __noinline struct timing_queue *sock_queue(__u64 rx, bool create)
{
	struct timing_queue *q = bpf_map_lookup_elem(&sock_queues, &rx);

	if (q || !create)
		return q;
	bpf_map_update_elem(&sock_queues, &rx, &empty_queue, BPF_NOEXIST);
	return bpf_map_lookup_elem(&sock_queues, &rx);
}

/* sk's cookie, made now if it has none yet; 0 where the helper is not allowed. */
#ifdef LT_PLAIN_POINTERS
#define sock_cookie(sk) 0
#else
#define sock_cookie(sk) bpf_get_socket_cookie(sk)
#endif

/* A queue that was another socket's: start it afresh for the socket of cookie. */
static __always_inline void tq_reset(struct timing_queue *q, __u64 cookie, __u64 rx_cookie)
{
	q->head = q->tail;
	q->sent_off = 0;
	q->recv_end = 0;
	q->last_sender = 0;
	q->desync = 0;
	q->next_pick = q->started;
	for (int i = 0; i < TQ_RECENT; i++)
		q->recent[i].ts = 0;
	q->ident = cookie;
	q->rx_ident = rx_cookie;
}

/*
 * A unix stream queue is one connection's: its sender's cookie (ident) and
 * its receiver's (rx_ident).  Either side can meet it first, before the other
 * socket has a cookie: a side takes over a queue its peer made (its own
 * identity still 0, the peer's matching) and starts afresh one an older
 * socket at the receiver's address left.  A connected stream socket's peer
 * never changes, so a side's own cookie in the queue proves the queue is its.
 * Both sides of a new queue can take it over at once: neither resets it.
 */
static __always_inline void unix_queue_claim(struct timing_queue *q, bool sender, __u64 mine,
					     struct sock *peer)
{
	__u64 *own = sender ? &q->ident : &q->rx_ident;
	__u64 *other = sender ? &q->rx_ident : &q->ident;

	if (*own == mine)
		return;
	/*
	 * The other side's identity, then its socket's cookie: that side made
	 * its cookie before it wrote its identity, so (loads in order) an
	 * identity seen here is its cookie seen after it.  The cookie read
	 * first could still be 0 while the identity is not: a queue wrongly
	 * started afresh, and a first message lost.
	 */
	__u64 theirs = LT_ONCE(*other);
	__asm__ __volatile__("" ::: "memory");
	__u64 peers = LT_RD_AS(struct sock, peer, __sk_common.skc_cookie.counter);

	/* The other side's identity 0: a new queue, or made by a peer without a cookie yet. */
	if (!*own && (theirs == peers || !theirs))
		*own = mine;
	else if (sender)
		tq_reset(q, mine, peers);
	else
		tq_reset(q, peers, mine);
}

/* The queue that data sent on sk goes into, or NULL. */
static __always_inline struct timing_queue *stream_queue_send(struct sock *sk, int transport)
{
	if (transport == LT_UNIX_STREAM) {
		struct sock *peer = LT_UNIX_PEER(sk);
		if (!peer)
			return NULL;
		struct timing_queue *q = sock_queue((__u64)peer, false);
		bool made = !q;
		if (made && !(q = sock_queue((__u64)peer, true)))
			return NULL;
		__u64 mine = sock_cookie(sk);
		if (q->ident == mine)
			return q;
		/*
		 * This socket's first send into this queue.  If the LRU evicted one
		 * it sent into before and the receiver made this one, that receiver
		 * counted bytes sent before the queue: offsets are unknown until
		 * the stream drains.
		 */
		bool evicted = had_stream_queue(sk) && !made;
		unix_queue_claim(q, true, mine, peer);
		if (evicted) {
			tq_reset(q, mine, LT_RD_AS(struct sock, peer, __sk_common.skc_cookie.counter));
			q->desync = 1;
		}
		return q;
	}
	struct tq_key k = {};
	return tq_key_send(sk, &k) ? tcp_queue(&k, true) : NULL;
}

/*
 * The stride sampler.  Every message sent into a queue ticks its clock; every
 * stride-th message is timed, and so is the first of each run of one sender
 * (so the pair counts stay exact).  The stride is the backlog ahead of the
 * message (messages sent and not yet received: from offsets once a recv told
 * where the receiver is, and at least those since the oldest sample still
 * queued) over an eighth of the queue, rounded up to a power of two: it follows the backlog, which
 * the latency of any one message does not choose, and a sample weighs its
 * stride, the messages sent from it up to the next pick.  A message that still
 * finds the queue full is folded into the newest sample, sent just before it,
 * unless that one was already received.  Returns the weight, or 0 when this
 * message gets no slot; untimed: such a message counts as untimed.
 */
static __always_inline __u32 tq_pick(struct timing_queue *q, __u64 id, int transport,
				     bool untimed, __u32 backlog, __u32 *clock)
{
	__u32 n = __sync_fetch_and_add(&q->started, 1);
	bool new_sender = q->last_id != id;

	*clock = n;
	if (new_sender)
		q->last_id = id;
	if ((__s32)(n - q->next_pick) < 0 && !new_sender) {
		if (untimed)
			count_untimed(LT_UNTIMED_SAMPLED, transport, 1);
		return 0;
	}
	__u32 t = q->tail;
	if (t - q->head >= TQ_SLOTS) {
		struct tq_slot *last = &q->slot[(t - 1) & TQ_MASK];
		bool folded = last->sender == id && !last->receiver && last->weight < TQ_MAX_WEIGHT;
		if (folded)
			__sync_fetch_and_add(&last->weight, 1);
		if (untimed)
			count_untimed(folded ? LT_UNTIMED_SAMPLED : LT_UNTIMED_QUEUE_FULL, transport,
				      1);
		return 0;
	}
	__u32 queued_since = t != q->head ? n - q->slot[q->head & TQ_MASK].clock : 0;
	if (queued_since > backlog)
		backlog = queued_since;
	__u32 stride = 1;
	for (int i = 0; i < 15 && stride * (TQ_SLOTS / 8) < backlog; i++)
		stride <<= 1;
	q->next_pick = n + stride;
	return stride;
}

/* Count the slot's messages not yet in its receiver's pair (sender or receiver may call). */
static __always_inline void tq_attribute(struct tq_slot *s, int transport)
{
	__u64 receiver = s->receiver;
	if (!receiver)
		return;
	__u32 done = s->attributed, msgs = s->msgs;
	if (msgs != done && __sync_val_compare_and_swap(&s->attributed, done, msgs) == done)
		count_pair(s->sender, receiver, transport, msgs - done, 0);
}

/*
 * A recent-recv entry is rewritten in place while late senders read it, so
 * it is published like a seqlock: its ts is cleared, the fields are written,
 * then ts is set by an exchange (also the full barrier tq_enqueue relies on).
 * x86 keeps stores in order and loads in order, so a reader that sees the
 * same nonzero ts before and after reading the fields has read one whole
 * entry; otherwise the entry is being rewritten and does not count.  (A torn
 * read, the new range with the old ts, made a message look received before
 * its send began: untimed: about one TCP ping-pong message in 150,000.)
 */
static __always_inline void tq_note_recv(struct timing_queue *q, __u32 start, __u32 end,
					 __u64 me, __u64 now)
{
	/* Racing recvs may share an entry: it is a hint for late senders only. */
	struct tq_recv *r = &q->recent[q->nrecent++ & (TQ_RECENT - 1)];

	LT_ONCE(r->ts) = 0;
	LT_ONCE(r->start) = start;
	LT_ONCE(r->end) = end;
	LT_ONCE(r->id) = me;
	__sync_lock_test_and_set(&r->ts, now);
}

/* When the recv that returned offset start got it, from the recent recvs; 0 if gone. */
static __always_inline __u64 tq_recent(struct timing_queue *q, __u32 start, __u64 *id)
{
	__u64 best = 0;

	for (int i = 0; i < TQ_RECENT; i++) {
		struct tq_recv *r = &q->recent[i];
		__u64 ts = LT_ONCE(r->ts);
		if (!ts)
			continue;
		__u32 from = LT_ONCE(r->start), to = LT_ONCE(r->end);
		__u64 who = LT_ONCE(r->id);
		if (LT_ONCE(r->ts) != ts)
			continue; /* rewritten while read */
		if ((__s32)(start - from) >= 0 && (__s32)(to - start) > 0 && (!best || ts < best)) {
			best = ts;
			*id = who;
		}
	}
	return best;
}

/* Not a loopback sender: marks a run of datagrams that came from elsewhere. */
#define TQ_FOREIGN (~0ULL)

/*
 * Queue the message of id that occupies [start, start + size), sent at ts (0:
 * not known), for the receiver.  counted: it is a sent loopback message
 * (untimed when it gets no sample).  Returns true when a sample will carry
 * send_ns.
 */
static __always_inline bool tq_enqueue(struct timing_queue *q, int transport, __u32 start,
				       __u32 size, __u64 ts, __u64 send_ns, __u64 id, bool counted)
{
	/* Messages ahead of this one, once a recv has told where the receiver is. */
	__s32 ahead = start - q->recv_end;
	__u32 backlog = q->nrecent && ahead > 0 && size ? (__u32)ahead / size : 0;
	__u32 clock;
	__u32 weight = tq_pick(q, id, transport, counted && ts, backlog, &clock);
	if (q->orphan_bytes && id != TQ_FOREIGN) {
		__u64 orphan = __sync_lock_test_and_set(&q->orphan_bytes, 0);
		if (orphan)
			count_pair(id, q->orphan_rx, transport, 0, orphan);
	}
	if (send_ns > 0xffffffffu)
		send_ns = 0xffffffffu;

	/*
	 * recv_end means nothing until a recv set it (TCP offsets are sequence
	 * numbers), nor while the offsets are unknown (desync).
	 */
	bool synced = q->nrecent && !q->desync;
	if (weight && ts && synced && (__s32)(q->recv_end - start) > 0) {
		/* Its receiver ran first: time it from the recv that returned it. */
		__u64 receiver = 0;
		__u64 got = tq_recent(q, start, &receiver);
		if (got >= ts) {
			emit(EV_MESSAGE(transport, weight), receiver, id, got - ts, send_ns);
			count_pair(id, receiver, transport, 1, 0);
			return true;
		}
		/*
		 * No recent recv holds it: that recv may not have written its
		 * entry yet (it moves recv_end first).  Published, it is taken
		 * back below once the entry is there, else popped by that recv.
		 */
		if (receiver) {
			weight = 0; /* returned before its send began: untimed (unmatched) */
			/* No slot will carry it: its pair message is counted here. */
			count_pair(id, receiver, transport, 1, 0);
			/*
			 * Impossible while the offsets agree: on a unix stream traced
			 * from mid-stream, the receiver counted bytes sent before
			 * tracing began, its offsets run ahead of the sender's, and
			 * every message would meet an older recv.  Offsets are
			 * unknown until the stream drains.
			 */
			if (transport == LT_UNIX_STREAM)
				q->desync = 1;
		}
	}
	if (weight) {
		__u32 idx = __sync_fetch_and_add(&q->tail, 1);
		struct tq_slot *s = &q->slot[idx & TQ_MASK];
		s->ts = ts;
		s->start = start;
		s->sender = id;
		s->send_ns = send_ns;
		s->weight = weight;
		s->msgs = 1;
		s->attributed = 0;
		s->receiver = 0;
		s->clock = clock;
		s->seq = idx + 1;
		/*
		 * A recv that returned it between the check above and now has
		 * popped without it, and the connection may carry nothing more:
		 * take it back and time it from that recv.  Both sides publish,
		 * then read the other's progress through a full barrier (the
		 * receiver's is the exchange of its recent entry's ts), so one of
		 * them sees the other.
		 */
		__u32 seen = __sync_fetch_and_add(&q->recv_end, 0);
		__u64 receiver = 0, got = 0;
		/* Read again: a recv may have set them since (the first, on a new queue). */
		if ((__s32)(seen - start) > 0 && q->nrecent && !q->desync)
			got = tq_recent(q, start, &receiver);
		/* Not among the recent recvs: the next recv pops it, as usual. */
		if (receiver && __sync_val_compare_and_swap(&q->head, idx, idx + 1) == idx) {
			s->receiver = receiver;
			s->attributed = 1;
			count_pair(id, receiver, transport, 1, 0);
			if (!ts || got < ts)
				return false;
			emit(EV_MESSAGE(transport, weight), receiver, id, got - ts, send_ns);
			return true;
		}
		return ts != 0;
	}
	/* Unpicked: one more message in the run of the last slot. */
	__u32 t = q->tail;
	struct tq_slot *s = &q->slot[(t - 1) & TQ_MASK];
	if (t && s->seq == t && s->sender == id) {
		__sync_fetch_and_add(&s->msgs, 1);
		tq_attribute(s, transport);
	}
	return false;
}

/* A stream send of ret > 0 bytes returned: queue its message for the receiver. */
static __always_inline void stream_sent(struct sock *sk, int transport, struct lt_send_ctx *ctx,
					__u64 id, __u64 now, int ret)
{
	__u64 dur = ctx ? now - ctx->ts : 0;
	struct timing_queue *q = stream_queue_send(sk, transport);

	if (!ctx)
		count_untimed(LT_UNTIMED_NO_SEND_START, transport, 1);
	if (!q) {
		if (ctx)
			emit_send_duration(transport, id, dur);
		return;
	}
	__u32 start;
	if (transport == LT_TCP) {
		start = LT_RD_AS(struct tcp_sock, sk, write_seq) - ret;
	} else {
		start = __sync_fetch_and_add(&q->sent_off, ret);
		/* A new queue behind data queued before we saw it: offsets unknown. */
		if (start == 0 && q->tail == 0 && ctx && ctx->peer_qlen)
			q->desync = 1;
	}
	if (!tq_enqueue(q, transport, start, ret, ctx ? ctx->ts : 0, dur, id, true) && ctx)
		emit_send_duration(transport, id, dur);
}

/* Emit the sample of slot s, received by me at now. */
static __always_inline void tq_time(struct tq_slot *s, int transport, __u64 me, __u64 now)
{
	if (s->ts && now >= s->ts)
		emit(EV_MESSAGE(transport, s->weight), me, s->sender, now - s->ts, s->send_ns);
}

/*
 * Pair messages one recv delivers, counted once per run of one sender: one
 * pair-map update per recv in the usual case, together with its bytes.
 */
struct pop_tally {
	__u64 sender;
	__u64 msgs;
};

/*
 * The slot's run reached me: its messages so far go to my tally, later ones
 * straight to the pair (tq_attribute, by either side).  Global, like
 * count_pair: its branches stay out of the pop loop's verifier states.
 */
__weak __noinline int tq_deliver(struct pop_tally *t, struct tq_slot *s, __u64 me, int transport)
{
	if (!t || !s)
		return 0;
	__u64 sender = s->sender;
	if (sender == TQ_FOREIGN || !sender)
		return 0;
	__sync_lock_test_and_set(&s->receiver, me);
	__u32 done = s->attributed, msgs = s->msgs;
	if (msgs == done || __sync_val_compare_and_swap(&s->attributed, done, msgs) != done)
		return 0;
	if (t->msgs && t->sender != sender) {
		count_pair(t->sender, me, transport, t->msgs, 0);
		t->msgs = 0;
	}
	t->sender = sender;
	t->msgs += msgs - done;
	return 0;
}

/* Pop the slots whose first byte is below end; time those at or above start. */
static __always_inline void tq_pop(struct timing_queue *q, int transport, __u32 start, __u32 end,
				   __u64 now, __u64 me, struct pop_tally *tally)
{
	for (int i = 0; i < TQ_SLOTS + 1; i++) {
		__u32 h = q->head;
		if (h == q->tail)
			break;
		struct tq_slot *s = &q->slot[h & TQ_MASK];
		if (s->seq != h + 1)
			break; /* being written */
		__u32 off = s->start;
		/* Beyond a GiB ahead: left from an older connection on this 4-tuple. */
		bool stale = (__s32)(off - end) > (1 << 30);
		if (!stale && (__s32)(off - end) >= 0)
			break; /* not reached yet */
		if (__sync_val_compare_and_swap(&q->head, h, h + 1) != h)
			continue; /* another reader took it */
		if (stale)
			continue;
		if ((__s32)(off - start) >= 0) {
			tq_time(s, transport, me, now);
		} else {
			/* Published after the recv that got it: time it from that recv. */
			__u64 rx = 0;
			__u64 got = tq_recent(q, off, &rx);
			if (got)
				tq_time(s, transport, rx, got);
		}
		tq_deliver(tally, s, me, transport);
		q->last_sender = s->sender;
	}
}

static __always_inline void stream_received(struct sock *sk, int transport, __u64 me, __u64 now,
					    int ret)
{
	struct pop_tally tally = {};
	struct timing_queue *q;
	struct tq_key k = {};
	__u32 end;

	if (transport == LT_TCP) {
		tq_key_recv(sk, &k, false);
		q = tcp_queue(&k, true); /* a send that returns after this recv needs it */
		if (!q)
			return;
		end = LT_RD_AS(struct tcp_sock, sk, copied_seq);
		q->recv_end = end; /* read with a barrier by late senders: see tq_enqueue */
	} else {
		q = sock_queue((__u64)sk, true);
		if (!q)
			return;
		/* Queued by our peer, or left by an older socket at our address? */
		struct sock *peer = LT_UNIX_PEER(sk);
		if (peer)
			unix_queue_claim(q, false, sock_cookie(sk), peer);
		end = __sync_fetch_and_add(&q->recv_end, ret) + ret;
		/*
		 * Drained, yet behind what the sender counted (whose count grows
		 * only once its data is queued): this receiver missed bytes (a
		 * recv in progress when tracing began), and every message would
		 * look queued behind a backlog.  Resync below.
		 */
		if (!q->desync && (__s32)(LT_ONCE(q->sent_off) - end) > 0 &&
		    LT_RD(sk, sk_receive_queue.qlen) == 0)
			q->desync = 1;
	}
	/* Its exchange is the full barrier between this recv's progress and its pop. */
	tq_note_recv(q, end - ret, end, me, now);

	if (q->desync) {
		if (LT_RD(sk, sk_receive_queue.qlen) == 0) {
			/* Drained: what is queued now was all sent while we watched. */
			for (int i = 0; i < TQ_SLOTS; i++) {
				__u32 h = q->head;
				if (h == q->tail)
					break;
				struct tq_slot *s = &q->slot[h & TQ_MASK];
				q->head = h + 1;
				count_untimed(LT_UNTIMED_BEFORE_START, transport, 1);
				tq_deliver(&tally, s, me, transport);
			}
			q->head = q->tail;
			q->recv_end = q->sent_off;
			q->desync = 0;
		}
	} else {
		tq_pop(q, transport, end - ret, end, now, me, &tally);
	}
	/*
	 * The bytes go to the last sender popped, else to the last one that sent
	 * (its message was timed from the sender's side): one sender per
	 * connection, usually.
	 */
	__u64 sender = q->last_sender ? q->last_sender : q->last_id;
	if (tally.msgs && tally.sender != sender) {
		count_pair(tally.sender, me, transport, tally.msgs, 0);
		tally.msgs = 0;
	}
	if (sender) {
		count_pair(sender, me, transport, tally.msgs, ret);
	} else { /* before its sender's send returned: the sender counts them */
		q->orphan_rx = me;
		__sync_fetch_and_add(&q->orphan_bytes, ret);
	}
}

/* ---- Datagram stamps (UDP, unix_dgram, unix_seqpacket) ---- */

/*
 * Map update results are compared as int: on 6.1 the verifier calls the map's
 * int-returning update op directly, and the upper half of the 64-bit result
 * is not its sign (-EEXIST read back as 4294967279 in a 6.1 fentry program:
 * every datagram stamped in a race then went unmatched).
 */
static __always_inline int stamp(__u64 skb, __u64 ts, __u64 sender, __u64 id, int transport,
				 __u64 flags)
{
	struct dg_key key = { .skb = skb, .sender = sender };
	struct dg_stamp st = {
		.ts = ts,
		.id = id,
		.transport = transport,
	};
	return (int)bpf_map_update_elem(&dgram_stamps, &key, &st, flags);
}

/*
 * Claim the unix datagram skb for this thread's send in progress: 0 when
 * stamped; -EEXIST if another send on the same socket claimed it (another
 * thread's, or this thread's earlier datagram still queued: their datagrams
 * were queued before either looked; *other_ts is then that send's start);
 * DG_WAS_COPIED if it was copied before it could be stamped.  A COPIED an
 * earlier datagram at this address left (this skb is queued again: linked) is
 * written over in place, CLAIMING first: a copy that marks it meanwhile
 * changes the state, and the claim fails.
 */
#define DG_WAS_COPIED 1
static __always_inline int claim_stamp(struct sk_buff *skb, __u64 ts, __u64 sender, __u64 id,
					int transport, __u64 *other_ts)
{
	int err = stamp((__u64)skb, ts, sender, id, transport, BPF_NOEXIST);
	if (err != -EEXIST)
		return err;
	struct dg_key key = { .skb = (__u64)skb, .sender = sender };
	struct dg_stamp *old = bpf_map_lookup_elem(&dgram_stamps, &key);
	if (!old)
		return -EEXIST; /* another send's, taken since */
	__u32 state = LT_ONCE(old->state);
	if (state < DG_COPIED) {
		*other_ts = LT_ONCE(old->ts);
		return -EEXIST; /* another send's stamp, or claim in progress */
	}
	if (!LT_RD(skb, next))
		return DG_WAS_COPIED; /* unlinked: its copy came first */
	if (__sync_val_compare_and_swap(&old->state, state, DG_CLAIMING) != state)
		return DG_WAS_COPIED; /* marked again since: copied now */
	old->ts = ts;
	old->id = id;
	old->transport = transport;
	old->send_ns = 0;
	if (__sync_val_compare_and_swap(&old->state, DG_CLAIMING, DG_OPEN) != DG_CLAIMING)
		return DG_WAS_COPIED; /* copied while it was written */
	return 0;
}

/*
 * The key skb's stamp has where it is received or dropped (see dg_key); false
 * for a unix stream's skb, which is never stamped.
 */
static __always_inline bool dg_key_of(const struct sk_buff *skb, struct dg_key *key)
{
	struct sock *ssk = LT_RD(skb, sk);

	key->skb = (__u64)skb;
	key->sender = 0;
	if (!ssk || LT_RD(ssk, __sk_common.skc_family) != AF_UNIX)
		return true;
	if (LT_RD(ssk, sk_type) == SOCK_STREAM)
		return false;
	key->sender = (__u64)ssk;
	return true;
}

/*
 * A packet starts leaving through dev.  On a loopback device: mark the send
 * in progress on this thread (if the packet is its own) as going over lo, and
 * stamp a UDP datagram before it can arrive (without a send start if it is not
 * this thread's: it still counts as loopback traffic at its receiver).
 */
static __always_inline void lt_xmit(const struct sk_buff *skb, const struct net_device *dev)
{
	if (lt_frozen)
		return;
	if (!(LT_RD(dev, flags) & IFF_LOOPBACK))
		return;
	struct lt_send_ctx *ctx = task_ctx(false);
	/*
	 * The send start is copied out here: the verifier does not carry "mine
	 * implies ctx" to a later ctx->ts (kprobe backend: "invalid mem access").
	 */
	__u64 ts = 0;
	struct sock *owner = LT_RD(skb, sk);
	if (send_started(ctx, (__u64)owner)) {
		ctx->lo_tx = 1;
		ts = ctx->ts;
	}
	/*
	 * Only UDP is stamped here: a TCP socket's packet (data and ACKs, most
	 * of lo's) returns before the header read (~180 instructions each).
	 */
	if (owner && LT_RD(owner, sk_protocol) == IPPROTO_TCP)
		return;

	unsigned char *head = LT_RD(skb, head);
	__u16 nh = LT_RD(skb, network_header);
	__u16 proto = bpf_ntohs(LT_RD(skb, protocol));
	__u8 l4 = 0;
	if (proto == ETH_P_IP)
		bpf_probe_read_kernel(&l4, 1, head + nh + 9);
	else if (proto == ETH_P_IPV6)
		bpf_probe_read_kernel(&l4, 1, head + nh + 6);
	if (l4 != IPPROTO_UDP)
		return;
	/*
	 * A GSO skb (UDP_SEGMENT) is cut into new skbs where it arrives and is
	 * never queued itself: its stamp would stay behind at its address.  Its
	 * datagrams are counted, untimed.
	 */
	/* A helper read: this program is the fentry backend's too (6.1: no rdonly_cast). */
	struct skb_shared_info *shinfo = (void *)(head + LT_RD(skb, end));
	if (BPF_CORE_READ(shinfo, gso_size))
		return;
	/* No check: the stamp is looked up by this skb where it is queued. */
	stamp((__u64)skb, ts, 0, ts ? current_id() : 0, LT_UDP, BPF_ANY);
	if (ts && ctx)
		ctx->stamp = (__u64)skb; /* for udp_queued: which datagram is this thread's */
}

/* How many skbs back from a receive queue's tail a sender looks for its own datagram. */
#define DG_LOOK_BACK 32

/*
 * The inode number of the socket sk (an address), 0 once it is closed.  Helper
 * reads: the programs that call this are the fentry backend's too (6.1: no
 * bpf_rdonly_cast), and they do on rare paths only.
 */
static __always_inline __u32 sock_ino(__u64 sk)
{
	struct socket *so = BPF_CORE_READ((struct sock *)sk, sk_socket);
	if (!so)
		return 0;
	return BPF_CORE_READ((struct socket_alloc *)so, vfs_inode.i_ino);
}

/* A RACED left at this address by a socket closed since (raced_ino read first). */
static __always_inline bool raced_by_another(__u32 raced_ino, __u32 ino)
{
	return raced_ino && ino && raced_ino != ino;
}

/* All slots EMPTY (in .rodata: too big for the stack). */
static const struct dg_unstamped empty_unstamped;

/* The unstamped-datagram state of a sending socket, made if missing. */
static __always_inline struct dg_unstamped *unstamped_of(__u64 sender)
{
	struct dg_unstamped *u = bpf_map_lookup_elem(&dgram_unstamped, &sender);
	if (u)
		return u;
	bpf_map_update_elem(&dgram_unstamped, &sender, &empty_unstamped, BPF_NOEXIST);
	return bpf_map_lookup_elem(&dgram_unstamped, &sender);
}

/* Rounds a copy tries to own a RACED that another copy keeps taking first. */
#define DG_U_ROUNDS 3

/* A slot whose other half will never come: it may be reserved anew. */
static __always_inline bool slot_stale(struct dg_unstamped_slot *s, __u32 state, __u32 ino,
				       __u64 now)
{
	if (state == DG_U_TAKEN)
		return LT_ONCE(s->taken_ts) + DG_U_TAKEN_STALE_NS < now;
	if (state == DG_U_RACED)
		return LT_ONCE(s->raced_ts) + DG_U_RACED_STALE_NS < now ||
		       raced_by_another(LT_ONCE(s->raced_ino), ino);
	return false;
}

/* Reserve a slot of u (BUSY) to write into; -1 if all are in use. */
static __always_inline int slot_reserve(struct dg_unstamped *u, __u32 ino, __u64 now)
{
	for (int i = 0; i < DG_U_SLOTS; i++) {
		struct dg_unstamped_slot *s = &u->slot[i];
		__u32 state = LT_ONCE(s->state);
		if (state != DG_U_EMPTY && !slot_stale(s, state, ino, now))
			continue;
		if (__sync_val_compare_and_swap(&s->state, state, DG_U_BUSY) != state)
			continue;
		return i;
	}
	return -1;
}

/* Take a TAKEN slot back (or claim it): false if another side had it first. */
static __always_inline bool slot_take_taken(struct dg_unstamped_slot *s)
{
	return __sync_val_compare_and_swap(&s->state, DG_U_TAKEN, DG_U_EMPTY) == DG_U_TAKEN;
}

/*
 * A copy that found no stamp owns a RACED of this socket: its sender's start
 * goes into found.  Another socket's RACED (it lived at this address; its
 * datagram will never be copied) is dropped.  Fields are read before the slot
 * is emptied: once EMPTY it can be reserved and written again.
 */
static __always_inline bool own_raced(struct dg_unstamped *u, __u32 ino, struct dg_stamp *found)
{
	for (int i = 0; i < DG_U_SLOTS; i++) {
		struct dg_unstamped_slot *s = &u->slot[i];
		if (LT_ONCE(s->state) != DG_U_RACED)
			continue;
		__u32 raced_ino = LT_ONCE(s->raced_ino);
		__u64 ts = LT_ONCE(s->raced_ts), id = LT_ONCE(s->raced_id);
		__u32 transport = LT_ONCE(s->transport);
		if (__sync_val_compare_and_swap(&s->state, DG_U_RACED, DG_U_EMPTY) != DG_U_RACED)
			continue;
		if (raced_by_another(raced_ino, ino))
			continue;
		found->ts = ts;
		found->id = id;
		found->transport = transport;
		return true;
	}
	return false;
}

static __always_inline bool any_raced(struct dg_unstamped *u)
{
	for (int i = 0; i < DG_U_SLOTS; i++)
		if (LT_ONCE(u->slot[i].state) == DG_U_RACED)
			return true;
	return false;
}

/*
 * A sender whose datagram was copied before it could stamp it claims a copy's
 * TAKEN: one copied after its send began (with skb set: of that skb, the one
 * it saw COPIED), timed from its copy.  An empty datagram delivered no
 * message: claimed, not counted.
 */
static __always_inline bool claim_taken(struct dg_unstamped *u, __u64 skb, __u64 ts, __u64 me,
					int transport)
{
	for (int i = 0; i < DG_U_SLOTS; i++) {
		struct dg_unstamped_slot *s = &u->slot[i];
		if (LT_ONCE(s->state) != DG_U_TAKEN)
			continue;
		__u64 taken_ts = LT_ONCE(s->taken_ts), taken_by = LT_ONCE(s->taken_by);
		__u32 bytes = LT_ONCE(s->taken_bytes);
		if (taken_ts < ts || (skb && LT_ONCE(s->taken_skb) != skb))
			continue;
		if (!slot_take_taken(s))
			continue;
		if (bytes) {
			emit(EV_MESSAGE(transport, 1), taken_by, me, taken_ts - ts, 0);
			count_pair(me, taken_by, transport, 1, bytes);
		}
		return true;
	}
	return false;
}

/*
 * A sender whose datagram another thread stamped (their datagrams were queued
 * before either looked; other_ts is that thread's start) and that finds no
 * TAKEN copied since its own send began claims one copied since the other's:
 * the other thread's datagram, copied before it was stamped, which no sender
 * would claim (a RACED put up instead waits for a copy that never comes).
 * Timed from the other thread's start.  Without such a sign of a swap an
 * earlier TAKEN is not this send's business: a single sender's own copy can
 * be still on its way (a CI run took one left at a reused socket address).
 */
static __always_inline bool claim_swapped_taken(struct dg_unstamped *u, __u64 other_ts, __u64 me,
						int transport)
{
	return other_ts && claim_taken(u, 0, other_ts, me, transport);
}

/*
 * A datagram was queued to UDP socket sk: it takes the next offset of the
 * socket's queue, with its stamp if it came over lo (a run of TQ_FOREIGN if
 * it came from elsewhere, so the receiver can tell).  It is the tail of the receive queue, or of
 * the reader's queue if a recv moved it there already; one a recv took
 * already is still numbered, so the offsets stay right.
 */
static __always_inline void udp_queued(struct sock *sk)
{
	__u64 head = (__u64)&sk->sk_receive_queue;
	struct sk_buff *skb = LT_RD(sk, sk_receive_queue.prev);
	if ((__u64)skb == head) {
		head = (__u64)&((struct udp_sock *)sk)->reader_queue;
		skb = LT_RD_AS(struct udp_sock, sk, reader_queue.prev);
		if ((__u64)skb == head)
			skb = NULL;
	}
	/*
	 * Another sender's datagram, queued after this thread's but before its
	 * sk_data_ready, can be the tail: this thread's own (lt_xmit noted it)
	 * is a few skbs back.  (Taking the tail's stamp, one in 100 of three
	 * senders' datagrams into one socket went to no pair.)
	 */
	struct lt_send_ctx *ctx = task_ctx(false);
	/* Copied out: the verifier does not carry "mine implies ctx" (see lt_xmit). */
	__u64 mine = 0, my_ts = 0;
	if (ctx && ctx->ts && ctx->lo_tx) {
		mine = ctx->stamp;
		my_ts = ctx->ts;
	}
	if (mine && skb && (__u64)skb != mine) {
		struct sk_buff *s = skb;
		/* Helper reads: skb may be a number here (fentry, from the reader queue). */
		for (int i = 0; i < DG_LOOK_BACK; i++) {
			s = BPF_CORE_READ(s, prev);
			if (!s || (__u64)s == head)
				break;
			if ((__u64)s == mine) {
				skb = s;
				break;
			}
		}
	}
	struct dg_key key = { .skb = (__u64)skb };
	struct dg_stamp *st = skb ? bpf_map_lookup_elem(&dgram_stamps, &key) : NULL;
	/*
	 * Not found, and the tail is another sender's stamped datagram: this
	 * thread's was read already.  Its own send is what was queued; the
	 * other's stamp stays for its sender.
	 */
	if (mine && (__u64)skb != mine && st && st->ts != my_ts) {
		struct dg_key own = { .skb = mine };
		bpf_map_delete_elem(&dgram_stamps, &own);
		st = NULL;
		skb = NULL;
	}
	struct timing_queue *q = sock_queue((__u64)sk, st || mine);
	if (!q)
		return;
	__u64 cookie = sock_cookie(sk);
	if (q->ident != cookie)
		tq_reset(q, cookie, 0);
	if (q->tail == 0 && q->sent_off == 0) {
		/* Datagrams queued before this one were not numbered: skip them. */
		__u32 older = LT_RD(sk, sk_receive_queue.qlen) - 1 +
			      LT_RD_AS(struct udp_sock, sk, reader_queue.qlen);
		q->recv_end = -older;
	}
	__u32 n = __sync_fetch_and_add(&q->sent_off, 1);
	if (st) {
		tq_enqueue(q, LT_UDP, n, 1, st->ts, 0, st->id, true);
		bpf_map_delete_elem(&dgram_stamps, &key);
	} else if (skb) {
		/*
		 * Unstamped: from another device, or a copy of a lo datagram (a
		 * packet tap on lo makes the stack clone it): the device tells.
		 * Sender 0: loopback traffic from a sender lotrace cannot name.
		 */
		bool lo = BPF_CORE_READ(skb, dev, flags) & IFF_LOOPBACK; /* rare: helper reads */
		tq_enqueue(q, LT_UDP, n, 1, 0, 0, lo ? 0 : TQ_FOREIGN, false);
	} else {
		/*
		 * Gone already.  Loopback delivers in its sender's context as a
		 * rule: a send in progress on this thread that left through lo is
		 * its; else it joins the current run, untimed.
		 */
		if (ctx && ctx->ts && ctx->lo_tx)
			tq_enqueue(q, LT_UDP, n, 1, ctx->ts, 0, current_id(), true);
		else
			tq_enqueue(q, LT_UDP, n, 1, 0, 0, q->last_id ? q->last_id : TQ_FOREIGN,
				   false);
	}
}

/*
 * A sender's datagram was copied before it could stamp it (or there was no
 * room for its stamp): see dgram_unstamped.  The TAKEN of the skb it saw
 * COPIED (mine) first, so the time is its own.  Not inlined: verified once per
 * call with scalar arguments, not once per state of the queue walk before it.
 */
struct unstamped_send {
	__u64 sk, ts, me;
	__u64 mine;     /* its skb, seen COPIED; 0: not found */
	__u64 other_ts; /* not found: the start of another send that had stamped one of its skbs */
	int transport;
};

static __noinline void sender_unstamped(struct unstamped_send *a)
{
	if (!a)
		return;
	__u64 sk = a->sk, ts = a->ts, me = a->me, mine = a->mine;
	int transport = a->transport;
	struct dg_unstamped *u = unstamped_of(sk);
	if (!u || (mine && claim_taken(u, mine, ts, me, transport)) ||
	    claim_taken(u, 0, ts, me, transport))
		return;
	if (!mine && claim_swapped_taken(u, a->other_ts, me, transport))
		return;
	__u32 ino = sock_ino(sk);
	int i = slot_reserve(u, ino, bpf_ktime_get_ns());
	if (i < 0)
		return; /* every slot in use: its copy finds no sender (unmatched) */
	struct dg_unstamped_slot *s = &u->slot[i & (DG_U_SLOTS - 1)];
	s->raced_ts = ts;
	s->raced_id = me;
	s->transport = transport;
	s->raced_ino = ino;
	__sync_val_compare_and_swap(&s->state, DG_U_BUSY, DG_U_RACED);
	/*
	 * Its copy may have put TAKEN up since the first look, before this RACED
	 * was up: claim it (then take the RACED back; a copy that owned it
	 * meanwhile was another of this socket's, timed from this send start).
	 */
	if (claim_taken(u, 0, ts, me, transport))
		__sync_val_compare_and_swap(&s->state, DG_U_RACED, DG_U_EMPTY);
}

/*
 * Data was queued to sk: a UDP datagram (see udp_queued), or a unix datagram
 * appended to its receive queue just before: stamp it if this thread sent it
 * (the last, or one of the few before it when other senders raced in: it is
 * looked for DG_LOOK_BACK deep; of one socket's, the newest that no other
 * send claimed).  One found COPIED, or not found (copied already, or deeper
 * than that), meets its copy in dgram_unstamped (sender_unstamped).
 */
static __always_inline void lt_data_ready(struct sock *sk)
{
	if (lt_frozen)
		return;
	__u16 family = LT_RD(sk, __sk_common.skc_family);
	if ((family == AF_INET || family == AF_INET6) && LT_RD(sk, sk_protocol) == IPPROTO_UDP) {
		udp_queued(sk);
		return;
	}
	if (family != AF_UNIX || LT_RD(sk, sk_type) == SOCK_STREAM)
		return;
	struct lt_send_ctx *ctx = task_ctx(false);
	if (!send_started(ctx, 0))
		return;
	struct sk_buff *skb = LT_RD(sk, sk_receive_queue.prev);
	__u64 empty = (__u64)&sk->sk_receive_queue; /* the list head: queue empty */
	int transport = LT_RD(sk, sk_type) == SOCK_DGRAM ? LT_UNIX_DGRAM : LT_UNIX_SEQPACKET;
	__u64 me = current_id(), mine = 0, other_ts = 0;
	/* A tail dequeued under us reads as NULL links: then it was copied. */
	for (int i = 0; i < DG_LOOK_BACK && skb && (__u64)skb != empty; i++) {
		if ((__u64)LT_RD(skb, sk) == ctx->sk) {
			/* An empty datagram is no message (its send returns 0). */
			if (!LT_RD(skb, len))
				return;
			int err = claim_stamp(skb, ctx->ts, ctx->sk, me, transport, &other_ts);
			if (err == -EEXIST) {
				/* Another thread's send on this socket took it: look further back. */
				skb = LT_RD(skb, prev);
				continue;
			}
			if (err == 0) {
				ctx->stamp = (__u64)skb;
				return;
			}
			if (err == DG_WAS_COPIED)
				mine = (__u64)skb;
			break; /* copied already (or no room for its stamp): see below */
		}
		skb = LT_RD(skb, prev);
	}
	struct unstamped_send a = {
		.sk = ctx->sk, .ts = ctx->ts, .me = me, .mine = mine, .other_ts = other_ts,
		.transport = transport,
	};
	sender_unstamped(&a);
}

static __always_inline void dgram_received(struct dg_stamp *st, int transport, __u64 me,
					   __u64 now, int ret)
{
	/* The send duration rides along if its sender returned first. */
	if (st->ts && now >= st->ts)
		emit(EV_MESSAGE(transport, 1), me, st->id, now - st->ts,
		     st->state == DG_SENT ? st->send_ns : 0);
	if (st->id)
		count_pair(st->id, me, transport, 1, ret);
}

/*
 * A recv copies skb: if it is a stamped unix datagram, the recv's return takes
 * the stamp (UDP stamps moved to their socket's queue when queued).
 */
static __always_inline void lt_copy_datagram(const struct sk_buff *skb, int len)
{
	if (lt_frozen)
		return;
	struct dg_key key;
	if (!dg_key_of(skb, &key) || !key.sender)
		return;
	struct dg_stamp taken;
	bool stamped = false;
	/*
	 * Not stamped (yet): mark it copied, atomically against its sender's
	 * stamp: both insert with BPF_NOEXIST (under the bucket lock), or
	 * compare-and-swap the state of a mark an earlier datagram at this
	 * address left.  A sender that finds its datagram then learns it was
	 * copied first, and both sides meet in dgram_unstamped.  Each lost race
	 * is a step of its sender's claim (no entry or a stale mark, CLAIMING,
	 * stamped), so the fourth look finds the stamp.  (With two, a copy that
	 * read CLAIMING just before the sender stamped gave up, and left the
	 * stamp to nobody: now and then one datagram of a run under TCG.)
	 */
	for (int i = 0; i < 4; i++) {
		struct dg_stamp *st = bpf_map_lookup_elem(&dgram_stamps, &key);
		if (!st) {
			struct dg_stamp copied = { .state = DG_COPIED };
			if ((int)bpf_map_update_elem(&dgram_stamps, &key, &copied, BPF_NOEXIST) !=
			    -EEXIST)
				break;
			continue;
		}
		__u32 state = LT_ONCE(st->state);
		if (state >= DG_COPIED || state == DG_CLAIMING) {
			__u32 mark = state >= DG_COPIED ? state + 1 : DG_COPIED;
			if (__sync_val_compare_and_swap(&st->state, state, mark) == state)
				break;
			continue;
		}
		/*
		 * Take the stamp now: the skb is freed before the recv returns, and
		 * a new datagram at its address can be stamped in between.  TAKEN
		 * first, so a sender still to return reports its own send duration.
		 */
		__sync_val_compare_and_swap(&st->state, DG_OPEN, DG_TAKEN);
		taken = *st;
		bpf_map_delete_elem(&dgram_stamps, &key);
		stamped = true;
		break;
	}
	if (!stamped) {
		/*
		 * Copied before its sender stamped it (the mark stays for a sender
		 * that still looks; one that never does leaves it to be written
		 * over by the next datagram at this address).  Own a RACED of its socket, else put
		 * TAKEN up for its sender, then look again for a RACED: its sender
		 * may have looked since, before TAKEN was up.  Taking TAKEN back
		 * first (it fails if a sender claimed it), DG_U_ROUNDS times at most:
		 * another copy can own that RACED first.  The last round leaves its
		 * TAKEN up whatever it sees: a sender still to look can claim it.
		 */
		/*
		 * Where no slot is left, nothing is counted here: the copy cannot
		 * tell a traced send's datagram from one queued before tracing
		 * began, so its sender's message stays unmatched (sent, not timed).
		 */
		struct dg_unstamped *u = unstamped_of(key.sender);
		if (!u)
			return;
		__u32 ino = sock_ino(key.sender);
		taken = (struct dg_stamp){};
		bool raced = own_raced(u, ino, &taken);
		for (int round = 0; round < DG_U_ROUNDS && !raced; round++) {
			int i = slot_reserve(u, ino, bpf_ktime_get_ns());
			if (i < 0)
				return; /* every slot in use: no sender will find it */
			struct dg_unstamped_slot *s = &u->slot[i & (DG_U_SLOTS - 1)];
			s->taken_ts = bpf_ktime_get_ns();
			s->taken_by = current_id();
			s->taken_bytes = len;
			s->taken_skb = key.skb;
			__sync_val_compare_and_swap(&s->state, DG_U_BUSY, DG_U_TAKEN);
			if (round == DG_U_ROUNDS - 1 || !any_raced(u) || !slot_take_taken(s))
				return; /* its sender times it */
			raced = own_raced(u, ino, &taken);
		}
		if (!raced)
			return; /* not reached: the last round returns */
	}
	struct lt_send_ctx *ctx = task_ctx(true);
	if (!ctx) {
		/*
		 * No per-thread state for the recv's return (the kernel could not
		 * allocate it): the message is timed and paired at its copy, a
		 * moment early, rather than lost.
		 */
		dgram_received(&taken, taken.transport, current_id(), bpf_ktime_get_ns(), len);
		return;
	}
	ctx->rx_stamp = taken;
	ctx->rx_key = key;
}

/* The kernel drops skb: a stamped datagram will never be received. */
static __always_inline void lt_dropped(const struct sk_buff *skb)
{
	if (lt_frozen)
		return;
	struct dg_key key;
	if (!dg_key_of(skb, &key))
		return;
	struct dg_stamp *st = bpf_map_lookup_elem(&dgram_stamps, &key);
	if (!st)
		return;
	if (st->ts && LT_ONCE(st->state) <= DG_TAKEN) {
		count_untimed(LT_UNTIMED_UNDELIVERED, st->transport, 1);
		/* Its sender returned first and left the duration to the receiver. */
		if (__sync_val_compare_and_swap(&st->state, DG_SENT, DG_TAKEN) == DG_SENT)
			emit_send_duration(st->transport, st->id, st->send_ns);
	}
	bpf_map_delete_elem(&dgram_stamps, &key);
}

/* A datagram send of ret > 0 bytes returned: hand its duration to its stamp. */
static __always_inline void dgram_sent(int transport, struct lt_send_ctx *ctx, __u64 id,
				       __u64 now)
{
	if (!ctx) {
		count_untimed(LT_UNTIMED_NO_SEND_START, transport, 1);
		return;
	}
	__u64 dur = now - ctx->ts;
	struct dg_key key = { .skb = ctx->stamp, .sender = ctx->sk };
	/* UDP stamps travel on in socket queues: the sender reports its own. */
	struct dg_stamp *st = key.skb ? bpf_map_lookup_elem(&dgram_stamps, &key) : NULL;
	if (st && st->ts == ctx->ts && st->id == id && dur <= 0xffffffffu) {
		st->send_ns = dur ? dur : 1;
		if (__sync_val_compare_and_swap(&st->state, DG_OPEN, DG_SENT) == DG_OPEN)
			return;
	}
	emit_send_duration(transport, id, dur);
}

/*
 * The stamp of the unix datagram this recv returned.  A peek leaves the
 * datagram queued: its stamp goes back for the recv that takes it.
 */
static __always_inline struct dg_stamp *dgram_stamp_of(int transport, struct lt_send_ctx *ctx,
						       int flags)
{
	if (!ctx || !ctx->rx_key.skb)
		return NULL;
	struct dg_key key = ctx->rx_key;
	ctx->rx_key.skb = 0;
	if (flags & MSG_PEEK) {
		bpf_map_update_elem(&dgram_stamps, &key, &ctx->rx_stamp, BPF_NOEXIST);
		return NULL;
	}
	return ctx->rx_stamp.transport == transport ? &ctx->rx_stamp : NULL;
}

/* ---- The calls every backend makes ---- */

static __always_inline void lt_send_enter(struct sock *sk, __u32 messages)
{
	if (lt_frozen)
		return;
	int transport = lt_transport_of(sk);

	if (transport < 0)
		return;
	struct lt_send_ctx *ctx = task_ctx(true);
	if (!ctx)
		return;
	ctx->ts = bpf_ktime_get_ns();
	ctx->sk = (__u64)sk;
	ctx->stamp = 0;
	ctx->remaining = messages;
	ctx->lo_tx = 0;
	ctx->peer_qlen = 0;
	if (transport == LT_UNIX_STREAM) {
		struct sock *peer = LT_UNIX_PEER(sk);
		if (peer)
			ctx->peer_qlen = LT_RD(peer, sk_receive_queue.qlen);
	}
}

static __always_inline void lt_send_exit(struct sock *sk, int ret)
{
	if (lt_frozen)
		return;
	int transport = lt_transport_of(sk);

	if (transport < 0)
		return;
	struct lt_send_ctx *ctx = task_ctx(false);
	bool timed = send_started(ctx, (__u64)sk);

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

	if (ret > 0) {
		count_proc(id, transport, LT_SEND, ret);
		if (lt_is_stream(transport))
			stream_sent(sk, transport, timed ? ctx : NULL, id, now, ret);
		else
			dgram_sent(transport, timed ? ctx : NULL, id, now);
	}
	if (!timed)
		return;
	if (ret > 0 && ctx->remaining > 1) {
		/* sendmmsg: the next message's send starts now. */
		ctx->remaining--;
		ctx->ts = now;
	} else {
		ctx->ts = 0;
		ctx->sk = 0;
	}
	ctx->stamp = 0;
	ctx->lo_tx = 0;
}

/*
 * A UDP recv returned one datagram: the next offset of the socket's queue.
 * Returns whether it came over lo (its run's sender is not TQ_FOREIGN).
 */
static __always_inline bool udp_received(struct sock *sk, __u64 now, __u64 me)
{
	struct timing_queue *q = sock_queue((__u64)sk, false);
	if (!q || q->ident != sock_cookie(sk))
		return false;
	__u32 end = __sync_fetch_and_add(&q->recv_end, 1) + 1;
	tq_note_recv(q, end - 1, end, me, now);
	struct pop_tally tally = {};
	tq_pop(q, LT_UDP, end - 1, end, now, me, &tally);
	if (tally.msgs)
		count_pair(tally.sender, me, LT_UDP, tally.msgs, 0);
	/* Within a run: its first datagram was popped by this or an earlier recv. */
	__u32 h = q->head;
	struct tq_slot *s = &q->slot[(h - 1) & TQ_MASK];
	return h && s->seq == h && (__s32)(end - 1 - s->start) >= 0 && q->last_sender != TQ_FOREIGN;
}

static __always_inline void lt_recv_exit(struct sock *sk, int ret, int flags)
{
	if (lt_frozen)
		return;
	int transport = lt_transport_of(sk);
	if (transport < 0)
		return;
	struct dg_stamp *st = NULL;

	if (lt_is_unix(transport) && lt_is_dgram(transport))
		st = dgram_stamp_of(transport, task_ctx(false), flags);
	/* MSG_PEEK leaves the data queued; MSG_ERRQUEUE returns no data sent to us. */
	if (ret <= 0 || (flags & (MSG_PEEK | MSG_ERRQUEUE)))
		return;
	__u64 now = bpf_ktime_get_ns();
	__u64 me = current_id();
	if (transport == LT_UDP) {
		/* Queued to us over lo, or our own route is lo. */
		if (!udp_received(sk, now, me) && !lt_inet_on_loopback(sk))
			return;
	} else if (transport == LT_TCP && !lt_inet_on_loopback(sk)) {
		return;
	}
	if (!lt_is_unix(transport))
		note_owner(sk, LT_ID_TGID(me)); /* only TCP/UDP packets cross lo */
	count_proc(me, transport, LT_RECV, ret);
	if (st) {
		dgram_received(st, transport, me, now, ret);
	} else if (lt_is_stream(transport)) {
		stream_received(sk, transport, me, now, ret);
	} else if (transport == LT_UDP) {
		struct timing_queue *q = sock_queue((__u64)sk, false);
		__u64 sender = q ? q->last_sender : 0;
		if (sender && sender != TQ_FOREIGN)
			count_pair(sender, me, transport, 0, ret);
	}
}

/*
 * The kprobe backend hooks both unix_seqpacket_*msg and the unix_dgram_*msg
 * they call (which the compiler may inline): only the outermost hooked call on
 * a thread counts.  Its kretprobes see no socket to tell the two apart by
 * type, as the fentry backend does, so a per-thread depth counts the nesting.
 */
static __always_inline bool lt_outer_enter(bool recv, struct sock *sk)
{
	struct lt_send_ctx *ctx = task_ctx(true);
	if (!ctx)
		return true;
	__u8 *depth = recv ? &ctx->recv_depth : &ctx->send_depth;
	int i = recv ? 1 : 0;
	__u64 now = bpf_ktime_get_ns();
	/*
	 * The nested call comes at once, on the outer call's socket.  Depth found
	 * raised otherwise means a kretprobe was missed (too many at once for its
	 * maxactive): start over instead of never counting this thread again.
	 */
	if (*depth && (ctx->outer_sk[i] != (__u64)sk || now - ctx->outer_ts[i] > 10000000))
		*depth = 0;
	if (*depth == 0) {
		ctx->outer_sk[i] = (__u64)sk;
		ctx->outer_ts[i] = now;
	}
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

/* A TCP socket closed: the queue of data sent to it goes with it. */
static __always_inline void lt_tcp_closed(struct sock *sk)
{
	if (lt_frozen)
		return;
	struct tq_key k = {};

	tq_key_recv(sk, &k, true);
	bpf_map_delete_elem(&timing_queues, &k);
}

#endif
