/* SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause */
/*
 * kprobe/kretprobe backend: the same functions as the fentry backend, for
 * kernels that refuse fentry.  kretprobes see no arguments, so the socket
 * (and recv flags) are saved at entry; the socket is a plain pointer here,
 * which socket storage does not accept, so `lo` packets are not attributed
 * to processes with this backend.
 */
#define LT_NO_SK_STORAGE
#define LT_PLAIN_POINTERS
#include "sock_common.bpf.h"

#define SEND_HOOKS(func, name)                                                          \
	SEC("kprobe/" #func)                                                             \
	int BPF_KPROBE(name##_in, struct socket *sock)                                   \
	{                                                                                \
		struct sock *sk = BPF_CORE_READ(sock, sk);                               \
		if (lt_outer_enter(false, sk))                                           \
			lt_send_enter(sk, 1);                                            \
		return 0;                                                                \
	}                                                                                \
	SEC("kretprobe/" #func)                                                          \
	int BPF_KRETPROBE(name##_out, int ret)                                           \
	{                                                                                \
		if (lt_outer_exit(false))                                                \
			lt_send_saved_exit(ret);                                         \
		return 0;                                                                \
	}

#define RECV_HOOKS(func, name)                                                          \
	SEC("kprobe/" #func)                                                             \
	int BPF_KPROBE(name##_in, struct socket *sock, struct msghdr *msg, size_t len, int flags) \
	{                                                                                \
		struct sock *sk = BPF_CORE_READ(sock, sk);                               \
		if (lt_outer_enter(true, sk))                                            \
			lt_recv_save(sk, flags);                                         \
		return 0;                                                                \
	}                                                                                \
	SEC("kretprobe/" #func)                                                          \
	int BPF_KRETPROBE(name##_out, int ret)                                           \
	{                                                                                \
		if (lt_outer_exit(true))                                                 \
			lt_recv_saved_exit(ret);                                         \
		return 0;                                                                \
	}

SEND_HOOKS(inet_sendmsg, lt_kp_in4_snd)
SEND_HOOKS(inet6_sendmsg, lt_kp_in6_snd)
SEND_HOOKS(unix_stream_sendmsg, lt_kp_ust_snd)
SEND_HOOKS(unix_dgram_sendmsg, lt_kp_udg_snd)
SEND_HOOKS(unix_seqpacket_sendmsg, lt_kp_usq_snd)
RECV_HOOKS(inet_recvmsg, lt_kp_in4_rcv)
RECV_HOOKS(inet6_recvmsg, lt_kp_in6_rcv)
RECV_HOOKS(unix_stream_recvmsg, lt_kp_ust_rcv)
RECV_HOOKS(unix_dgram_recvmsg, lt_kp_udg_rcv)
RECV_HOOKS(unix_seqpacket_recvmsg, lt_kp_usq_rcv)
/* Before 6.5, sendfile and splice to a socket use ->sendpage (optional targets). */
SEND_HOOKS(inet_sendpage, lt_kp_in_page)
SEND_HOOKS(unix_stream_sendpage, lt_kp_ust_page)

/* lo transmissions, for UDP loopback classification (see lt_xmit). */
SEC("kprobe/loopback_xmit")
int BPF_KPROBE(lt_kp_lo_xmit, struct sk_buff *skb, struct net_device *dev)
{
	lt_xmit(skb, dev);
	return 0;
}

SEC("tracepoint/sock/inet_sock_set_state")
int lt_kp_tcp_state(struct trace_event_raw_inet_sock_set_state *ctx)
{
	if (ctx->newstate == TCP_CLOSE && ctx->protocol == IPPROTO_TCP)
		lt_tcp_closed((struct sock *)ctx->skaddr);
	return 0;
}

SEC("kprobe/sock_def_readable")
int BPF_KPROBE(lt_kp_data_ready, struct sock *sk)
{
	lt_data_ready(sk);
	return 0;
}

SEC("tracepoint/skb/skb_copy_datagram_iovec")
int lt_kp_copy(struct trace_event_raw_skb_copy_datagram_iovec *ctx)
{
	lt_copy_datagram(ctx->skbaddr, ctx->len);
	return 0;
}

SEC("tracepoint/skb/kfree_skb")
int lt_kp_drop(struct trace_event_raw_kfree_skb *ctx)
{
	lt_dropped(ctx->skbaddr);
	return 0;
}

/*
 * A socket is freed: its queue (unix_stream, UDP) and unstamped-datagram state
 * go with it, so that a new socket at the same address starts clean (this
 * backend has no socket storage or cookies).
 */
SEC("kprobe/sk_free")
int BPF_KPROBE(lt_kp_sk_free, struct sock *sk)
{
	__u64 key = (__u64)sk;

	bpf_map_delete_elem(&sock_queues, &key);
	bpf_map_delete_elem(&dgram_unstamped, &key);
	return 0;
}
