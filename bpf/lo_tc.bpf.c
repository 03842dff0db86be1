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
#include "maps.bpf.h"
#include <bpf/bpf_endian.h>

#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD
#define ETH_HLEN 14
#define TC_ACT_UNSPEC (-1)

static __always_inline __u32 l4_class(__u8 proto)
{
	switch (proto) {
	case 6:
		return LT_L4_TCP;
	case 17:
		return LT_L4_UDP;
	case 1:
	case 58:
		return LT_L4_ICMP;
	default:
		return LT_L4_OTHER;
	}
}

SEC("tc")
int lt_lo_egress(struct __sk_buff *skb)
{
	__u8 proto = 0;
	__u32 l4_off = 0;

	if (skb->protocol == bpf_htons(ETH_P_IP)) {
		__u8 vihl = 0;
		bpf_skb_load_bytes(skb, ETH_HLEN, &vihl, 1);
		bpf_skb_load_bytes(skb, ETH_HLEN + 9, &proto, 1);
		l4_off = ETH_HLEN + (vihl & 0xf) * 4;
	} else if (skb->protocol == bpf_htons(ETH_P_IPV6)) {
		bpf_skb_load_bytes(skb, ETH_HLEN + 6, &proto, 1);
		l4_off = ETH_HLEN + 40;
	}

	struct lt_lo_key key = { .l4 = l4_class(proto) };
	struct bpf_sock *bsk = skb->sk;
	if (bsk)
		bsk = bpf_sk_fullsock(bsk);
	if (bsk) {
		struct lt_sock_state *st = bpf_sk_storage_get(&sock_states, bsk, 0, 0);
		if (st) {
			key.tgid = st->owner_tgid;
			if (proto == 17)
				st->lo_tx_ns = bpf_ktime_get_ns();
		}
	}
	if (proto == 17 && l4_off) {
		__u16 dport = 0;
		if (!bpf_skb_load_bytes(skb, l4_off + 2, &dport, 2)) {
			__u16 port = bpf_ntohs(dport);
			__u64 one = 1;
			if (!bpf_map_lookup_elem(&lo_udp_ports, &port))
				bpf_map_update_elem(&lo_udp_ports, &port, &one, BPF_ANY);
		}
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
