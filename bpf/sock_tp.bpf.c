/* SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause */
/*
 * Tracepoint backend: for kernels (6.3+) with the sock:sock_send_length and
 * sock:sock_recv_length tracepoints, including those that refuse fentry and
 * kprobes.  Those tracepoints fire when a send or recv returns; the send's
 * start is taken at syscall entry, where the socket is found from the fd.
 */
/* This backend needs 6.3 anyway: read through bpf_rdonly_cast (6.2+). */
#define LT_RDONLY_CAST
#include "sock_common.bpf.h"

/* x86_64 system call numbers of the calls that send on a socket. */
#define NR_write 1
#define NR_writev 20
#define NR_sendto 44
#define NR_sendmsg 46
#define NR_sendmmsg 307

#define S_IFMT 00170000
#define S_IFSOCK 0140000

/* The socket behind fd in the current task, or NULL. */
static __always_inline struct sock *sock_of_fd(unsigned long fd)
{
	struct fdtable *fdt = bpf_get_current_task_btf()->files->fdt;
	struct file *file = NULL;

	if (fd >= fdt->max_fds)
		return NULL;
	/* fd is an array of pointers: index it through the probe-read helper. */
	struct file **fds = fdt->fd;
	if (bpf_probe_read_kernel(&file, sizeof(file), &fds[fd]) || !file)
		return NULL;
	file = LT_CAST(struct file, file);
	if ((file->f_inode->i_mode & S_IFMT) != S_IFSOCK)
		return NULL;
	struct socket *sock = LT_CAST(struct socket, file->private_data);
	return sock->sk;
}

SEC("tp_btf/sys_enter")
int BPF_PROG(lt_tp_sys_enter, struct pt_regs *regs, long id)
{
	if (id != NR_write && id != NR_writev && id != NR_sendto && id != NR_sendmsg &&
	    id != NR_sendmmsg)
		return 0;
	/* A 32-bit process's numbers are the i386 table's: those would be other calls. */
	if (bpf_get_current_task_btf()->thread_info.status & TS_COMPAT)
		return 0;
	struct sock *sk = sock_of_fd(regs->di);
	if (!sk)
		return 0;
	__u32 messages = 1;
	if (id == NR_sendmmsg)
		messages = regs->dx < UIO_MAXIOV ? (__u32)regs->dx : UIO_MAXIOV;
	lt_send_enter(sk, messages);
	return 0;
}

SEC("tp_btf/sock_send_length")
int BPF_PROG(lt_tp_send, struct sock *sk, int ret, int flags)
{
	lt_send_exit(sk, ret);
	return 0;
}

SEC("tp_btf/sock_recv_length")
int BPF_PROG(lt_tp_recv, struct sock *sk, int ret, int flags)
{
	lt_recv_exit(sk, ret, flags);
	return 0;
}

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(lt_tp_tcp_state, struct sock *sk, int oldstate, int newstate)
{
	if (newstate == TCP_CLOSE && sk->sk_protocol == IPPROTO_TCP)
		lt_tcp_closed(sk);
	return 0;
}

SEC("tp_btf/net_dev_start_xmit")
int BPF_PROG(lt_tp_xmit, const struct sk_buff *skb, const struct net_device *dev)
{
	lt_xmit(skb, dev);
	return 0;
}

SEC("tp_btf/sk_data_ready")
int BPF_PROG(lt_tp_data_ready, struct sock *sk)
{
	lt_data_ready(sk);
	return 0;
}

SEC("tp_btf/skb_copy_datagram_iovec")
int BPF_PROG(lt_tp_copy, const struct sk_buff *skb, int len)
{
	lt_copy_datagram(skb, len);
	return 0;
}

SEC("tp_btf/kfree_skb")
int BPF_PROG(lt_tp_drop, struct sk_buff *skb)
{
	lt_dropped(skb);
	return 0;
}
