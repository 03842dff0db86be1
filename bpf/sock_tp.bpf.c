/* SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause */
/*
 * Tracepoint backend: for kernels (6.3+) with the sock:sock_send_length and
 * sock:sock_recv_length tracepoints, including those that refuse fentry and
 * kprobes.  Those tracepoints fire when a send or recv returns; the send's
 * start is taken at syscall entry, where the socket is found from the fd.
 */
/* This backend needs 6.3 anyway: read through bpf_rdonly_cast (6.2+). */
#define LT_RDONLY_CAST
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "kernel_defs.h"

/* x86_64 system call numbers of the calls that send on a socket. */
#define NR_write 1
#define NR_writev 20
#define NR_sendfile 40
#define NR_sendto 44
#define NR_sendmsg 46
#define NR_splice 275
#define NR_sendmmsg 307

static __always_inline bool is_send_nr(long nr)
{
	return nr == NR_write || nr == NR_writev || nr == NR_sendto || nr == NR_sendmsg ||
	       nr == NR_sendmmsg || nr == NR_sendfile || nr == NR_splice;
}

/*
 * The send start is taken at system call entry, so one exists only while the
 * thread is in one of those calls: a call that failed before it reached its
 * socket (EMSGSIZE) leaves its start behind, which a send that no entry
 * precedes (io_uring) must not take.  A 32-bit process's numbers are the i386
 * table's: those would be other calls.
 */
static __always_inline bool lt_in_send_syscall(void)
{
	struct task_struct *task = bpf_get_current_task_btf();

	if (task->thread_info.status & TS_COMPAT)
		return false;
	return is_send_nr(((struct pt_regs *)bpf_task_pt_regs(task))->orig_ax);
}
#define LT_SEND_SYSCALLS

#include "sock_common.bpf.h"

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
	if (!is_send_nr(id))
		return 0;
	if (bpf_get_current_task_btf()->thread_info.status & TS_COMPAT)
		return 0;
	/* splice(fd_in, off_in, fd_out, ...): the socket is fd_out. */
	struct sock *sk = sock_of_fd(id == NR_splice ? regs->dx : regs->di);
	if (!sk)
		return 0;
	__u32 messages = 1;
	if (id == NR_sendmmsg)
		messages = regs->dx < UIO_MAXIOV ? (__u32)regs->dx : UIO_MAXIOV;
	else if (id == NR_sendfile || id == NR_splice)
		/* One socket send per chunk, each a message that starts as the last returns. */
		messages = ~0u;
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
