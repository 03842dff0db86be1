/* SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause */
/*
 * The floor under lotrace's tracepoint backend: programs on the same three
 * hooks (raw sys_enter, sock_send_length, sock_recv_length) that do nothing,
 * or only count messages and bytes per process.  What they cost is what any
 * tracer on these hooks pays before it times a single message.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

SEC("tp_btf/sys_enter")
int BPF_PROG(hf_sys_enter, struct pt_regs *regs, long id)
{
	return 0;
}

/*
 * The alternative send-start hook: the per-syscall tracepoints of the calls
 * that send.  Any of them still sends every system call through the slow
 * entry path, but only these five reach a BPF program.  Measured in a 6.12
 * guest (bench/icount-6.12.txt, floor:empty-syscalls against floor:empty-all):
 * getppid pays 109 instructions instead of raw sys_enter's 136, but every
 * write, a send or not, pays 446 (the kernel builds a perf record for it):
 * lotrace keeps raw sys_enter.
 */
#define HF_SYSCALL(name)                                                       \
	SEC("tracepoint/syscalls/sys_enter_" #name)                            \
	int hf_enter_##name(struct trace_event_raw_sys_enter *ctx)             \
	{                                                                      \
		return 0;                                                      \
	}
HF_SYSCALL(write)
HF_SYSCALL(writev)
HF_SYSCALL(sendto)
HF_SYSCALL(sendmsg)
HF_SYSCALL(sendmmsg)

SEC("tp_btf/sock_send_length")
int BPF_PROG(hf_send, struct sock *sk, int ret, int flags)
{
	return 0;
}

SEC("tp_btf/sock_recv_length")
int BPF_PROG(hf_recv, struct sock *sk, int ret, int flags)
{
	return 0;
}

struct count_key {
	__u32 tgid;
	__u16 family_type; /* family << 8 | type: the transport, roughly */
	__u16 direction;
};

struct count_val {
	__u64 messages;
	__u64 bytes;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct count_key);
	__type(value, struct count_val);
} counts SEC(".maps");

/* The least per-process counting can do: one lookup, two atomic adds. */
static __always_inline void count(struct sock *sk, int ret, __u16 direction)
{
	if (ret <= 0)
		return;
	struct count_key key = {
		.tgid = bpf_get_current_pid_tgid() >> 32,
		.family_type = sk->__sk_common.skc_family << 8 | (__u8)sk->sk_type,
		.direction = direction,
	};
	struct count_val *v = bpf_map_lookup_elem(&counts, &key);
	if (!v) {
		struct count_val zero = {};
		bpf_map_update_elem(&counts, &key, &zero, BPF_NOEXIST);
		v = bpf_map_lookup_elem(&counts, &key);
		if (!v)
			return;
	}
	__sync_fetch_and_add(&v->messages, 1);
	__sync_fetch_and_add(&v->bytes, ret);
}

SEC("tp_btf/sock_send_length")
int BPF_PROG(hf_count_send, struct sock *sk, int ret, int flags)
{
	count(sk, ret, 0);
	return 0;
}

SEC("tp_btf/sock_recv_length")
int BPF_PROG(hf_count_recv, struct sock *sk, int ret, int flags)
{
	count(sk, ret, 1);
	return 0;
}
