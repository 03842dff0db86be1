/* SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause */
/*
 * fentry/fexit backend: the protocol-family send and recv functions every
 * socket call goes through (read and write, the send and recv calls, each
 * message of sendmmsg, io_uring and splice too).  Entry gives the send start
 * directly; recv needs only the exit.  All these functions take
 * (struct socket *, struct msghdr *, size_t[, int flags]) on every kernel
 * lotrace supports, so no signature differs between versions.
 */
#include "sock_common.bpf.h"

/*
 * unix_seqpacket_*msg calls unix_dgram_*msg (unless the compiler inlined it):
 * the unix_dgram hooks (nested = 1) leave seqpacket sockets to the outer hook.
 */
#define NESTED_SEQPACKET(nested, sock) ((nested) && (sock)->type == SOCK_SEQPACKET)

#define SEND_HOOKS(func, name, nested)                                                  \
	SEC("fentry/" #func)                                                             \
	int BPF_PROG(name##_in, struct socket *sock)                                     \
	{                                                                                \
		if (!NESTED_SEQPACKET(nested, sock))                                     \
			lt_send_enter(sock->sk, 1);                                      \
		return 0;                                                                \
	}                                                                                \
	SEC("fexit/" #func)                                                              \
	int BPF_PROG(name##_out, struct socket *sock, struct msghdr *msg, size_t len, int ret) \
	{                                                                                \
		if (!NESTED_SEQPACKET(nested, sock))                                     \
			lt_send_exit(sock->sk, ret);                                     \
		return 0;                                                                \
	}

#define RECV_HOOKS(func, name, nested)                                                  \
	SEC("fexit/" #func)                                                              \
	int BPF_PROG(name##_out, struct socket *sock, struct msghdr *msg, size_t len, int flags, \
		     int ret)                                                            \
	{                                                                                \
		if (!NESTED_SEQPACKET(nested, sock))                                     \
			lt_recv_exit(sock->sk, ret, flags);                              \
		return 0;                                                                \
	}

/*
 * Before 6.5, sendfile and splice to a socket go through ->sendpage instead
 * of sendmsg: (struct socket *, struct page *, int offset, size_t, int flags).
 * The loader leaves these out on kernels that no longer have them.
 */
#define SENDPAGE_HOOKS(func, name)                                                      \
	SEC("fentry/" #func)                                                             \
	int BPF_PROG(name##_in, struct socket *sock)                                     \
	{                                                                                \
		lt_send_enter(sock->sk, 1);                                              \
		return 0;                                                                \
	}                                                                                \
	SEC("fexit/" #func)                                                              \
	int BPF_PROG(name##_out, struct socket *sock, void *page, int offset, size_t size, \
		     int flags, long ret)                                                \
	{                                                                                \
		lt_send_exit(sock->sk, ret);                                             \
		return 0;                                                                \
	}

SEND_HOOKS(inet_sendmsg, lt_fe_in4_snd, 0)
SEND_HOOKS(inet6_sendmsg, lt_fe_in6_snd, 0)
SEND_HOOKS(unix_stream_sendmsg, lt_fe_ust_snd, 0)
SEND_HOOKS(unix_dgram_sendmsg, lt_fe_udg_snd, 1)
SEND_HOOKS(unix_seqpacket_sendmsg, lt_fe_usq_snd, 0)
RECV_HOOKS(inet_recvmsg, lt_fe_in4_rcv, 0)
RECV_HOOKS(inet6_recvmsg, lt_fe_in6_rcv, 0)
RECV_HOOKS(unix_stream_recvmsg, lt_fe_ust_rcv, 0)
RECV_HOOKS(unix_dgram_recvmsg, lt_fe_udg_rcv, 1)
RECV_HOOKS(unix_seqpacket_recvmsg, lt_fe_usq_rcv, 0)
SENDPAGE_HOOKS(inet_sendpage, lt_fe_in_page)
SENDPAGE_HOOKS(unix_stream_sendpage, lt_fe_ust_page)



/*
 * Unix datagrams are stamped when queued; sk_data_ready's tracepoint is 6.3+.
 * The skb tracepoints (copy, drop) come from sock_tp.bpf.c's programs, which
 * the loader gives this backend too.
 */
SEC("fentry/sock_def_readable")
int BPF_PROG(lt_fe_data_ready, struct sock *sk)
{
	lt_data_ready(sk);
	return 0;
}
