/* SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause */
/*
 * Counts packets and wire bytes leaving through `lo`, per L4 protocol and per
 * owning process.  Egress only: every loopback packet leaves lo once and comes
 * back in once, so one direction counts each packet exactly once.  On lo
 * egress the skb still carries the sending socket; its owner comes from the
 * socket storage the socket-layer programs fill.  Uses no helper unavailable
 * to TC programs on 6.1 (no bpf_get_current_pid_tgid: the current task in
 * softirq context is not the sender).
 */
#include "kernel_defs.h"
#include "maps.bpf.h"
#include <bpf/bpf_endian.h>


static __always_inline __u32 l4_class(__u8 proto)
{
	switch (proto) {
	case IPPROTO_TCP:
		return LT_L4_TCP;
	case IPPROTO_UDP:
		return LT_L4_UDP;
	case IPPROTO_ICMP:
	case IPPROTO_ICMPV6:
		return LT_L4_ICMP;
	default:
		return LT_L4_OTHER;
	}
}

SEC("tc")
int lt_lo_egress(struct __sk_buff *skb)
{
	__u8 proto = 0;

	if (lt_frozen)
		return TC_ACT_UNSPEC;
	if (skb->protocol == bpf_htons(ETH_P_IP)) {
		bpf_skb_load_bytes(skb, ETH_HLEN + 9, &proto, 1);
	} else if (skb->protocol == bpf_htons(ETH_P_IPV6)) {
		bpf_skb_load_bytes(skb, ETH_HLEN + 6, &proto, 1);
	}

	struct lt_lo_key key = { .l4 = l4_class(proto) };
	struct bpf_sock *bsk = skb->sk;
	if (bsk)
		bsk = bpf_sk_fullsock(bsk);
	if (bsk) {
		struct lt_sock_state *st = bpf_sk_storage_get(&sock_states, bsk, 0, 0);
		if (st)
			key.tgid = st->owner_tgid;
	}

	/* The exact total first: the row below may be evicted later (LRU). */
	__u32 idx = LT_TOT_LO_BASE + key.l4;
	struct lt_count *tot = bpf_map_lookup_elem(&totals, &idx);
	if (tot) {
		__sync_fetch_and_add(&tot->n, 1);
		__sync_fetch_and_add(&tot->bytes, skb->len);
	}

	struct lt_lo_val *v = bpf_map_lookup_elem(&lo_counts, &key);
	if (!v) {
		struct lt_lo_val zero = {};
		bpf_map_update_elem(&lo_counts, &key, &zero, BPF_NOEXIST);
		v = bpf_map_lookup_elem(&lo_counts, &key);
		if (!v)
			return TC_ACT_UNSPEC;
	}
	__sync_fetch_and_add(&v->packets, 1);
	__sync_fetch_and_add(&v->bytes, skb->len);
	return TC_ACT_UNSPEC;
}
