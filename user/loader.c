#include "loader.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <linux/capability.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include "lotrace.skel.h"

#define LT_CAP_PERFMON 38
#define LT_CAP_BPF 39

static FILE *libbpf_log;

static int libbpf_print(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	if (level == LIBBPF_DEBUG || !libbpf_log)
		return 0;
	return vfprintf(libbpf_log, fmt, ap);
}

static bool has_cap(const struct __user_cap_data_struct d[2], int cap)
{
	return d[cap / 32].effective & (1u << (cap % 32));
}

/* The capabilities lotrace needs, named when missing. */
static int check_privileges(FILE *log)
{
	struct __user_cap_header_struct h = { _LINUX_CAPABILITY_VERSION_3, 0 };
	struct __user_cap_data_struct d[2];

	memset(d, 0, sizeof(d));
	if (syscall(SYS_capget, &h, d)) {
		fprintf(log, "lotrace: cannot read process capabilities: %s\n", strerror(errno));
		return -1;
	}
	bool admin = has_cap(d, CAP_SYS_ADMIN);
	char missing[128] = "";
	if (!admin && !has_cap(d, LT_CAP_BPF))
		strcat(missing, " CAP_BPF");
	if (!admin && !has_cap(d, LT_CAP_PERFMON))
		strcat(missing, " CAP_PERFMON");
	if (!has_cap(d, CAP_NET_ADMIN))
		strcat(missing, " CAP_NET_ADMIN");
	if (missing[0]) {
		fprintf(log, "lotrace: missing capabilities:%s (run as root, e.g. sudo lotrace ...)\n",
			missing);
		return -1;
	}
	return 0;
}

static int check_btf(FILE *log)
{
	if (access("/sys/kernel/btf/vmlinux", R_OK)) {
		fprintf(log, "lotrace: kernel BTF unavailable (/sys/kernel/btf/vmlinux: %s); lotrace needs a kernel built with CONFIG_DEBUG_INFO_BTF\n",
			strerror(errno));
		return -1;
	}
	return 0;
}

/* Does the running kernel have this raw tracepoint (BTF type btf_trace_NAME)? */
static bool kernel_has_tracepoint(const char *name)
{
	return libbpf_find_vmlinux_btf_id(name, BPF_TRACE_RAW_TP) > 0;
}

static const char *choose_backend(const struct lt_opts *opts, FILE *log)
{
	(void)opts; /* tracepoint is the only backend built so far */
	static const char *const needed[] = { "sock_send_length", "sock_recv_length", "sys_enter",
					      "inet_sock_set_state", "net_dev_start_xmit" };
	for (size_t i = 0; i < sizeof(needed) / sizeof(needed[0]); i++) {
		if (!kernel_has_tracepoint(needed[i])) {
			fprintf(log, "lotrace: the kernel lacks the %s tracepoint (sock:sock_send_length and sock_recv_length arrived in Linux 6.3); no other backend is available in this build\n",
				needed[i]);
			return NULL;
		}
	}
	return "tracepoint";
}

static int handle_event(void *ctx, void *data, size_t size)
{
	agg_event(ctx, data, size);
	return 0;
}

int tracer_start(struct tracer *t, const struct lt_opts *opts, struct agg *agg, FILE *log)
{
	memset(t, 0, sizeof(*t));
	t->agg = agg;
	t->lo.link_fd = -1;
	libbpf_log = log;
	libbpf_set_print(libbpf_print);

	if (check_privileges(log) || check_btf(log))
		return -1;
	struct rlimit rl = { RLIM_INFINITY, RLIM_INFINITY };
	setrlimit(RLIMIT_MEMLOCK, &rl); /* kernels before 5.11 charge BPF maps to memlock */

	t->backend = choose_backend(opts, log);
	if (!t->backend)
		return -1;
	t->skel = lotrace_bpf__open();
	if (!t->skel) {
		fprintf(log, "lotrace: cannot open the BPF object: %s\n", strerror(errno));
		return -1;
	}
	bpf_map__set_max_entries(t->skel->maps.events, (__u32)opts->ring_bytes);
	t->skel->rodata->lt_wakeup_bytes = opts->ring_bytes / 4;
	int err = lotrace_bpf__load(t->skel);
	if (err) {
		fprintf(log, "lotrace: the kernel refused lotrace's BPF programs: %s (details above)\n",
			strerror(-err));
		goto fail;
	}
	err = lotrace_bpf__attach(t->skel);
	if (err) {
		fprintf(log, "lotrace: cannot attach the %s hooks: %s\n", t->backend, strerror(-err));
		goto fail;
	}
	t->rb = ring_buffer__new(bpf_map__fd(t->skel->maps.events), handle_event, agg, NULL);
	if (!t->rb) {
		fprintf(log, "lotrace: cannot open the ring buffer: %s\n", strerror(errno));
		goto fail;
	}
	if (lo_attach(&t->lo, bpf_program__fd(t->skel->progs.lt_lo_egress), opts->lo_mode, log)) {
		fprintf(log, "lotrace: cannot count packets on lo (use --lo-attach none to trace without it)\n");
		goto fail;
	}
	agg->backend = t->backend;
	agg->lo_attach = lt_lo_mode_name(t->lo.mode);
	return 0;
fail:
	tracer_stop(t, log);
	return -1;
}

int tracer_poll(struct tracer *t, int timeout_ms)
{
	/* Events are submitted without wakeups: poll times out, then drain. */
	int n = ring_buffer__poll(t->rb, timeout_ms);
	if (n < 0 && n != -EINTR)
		return n;
	n = ring_buffer__consume(t->rb);
	return n < 0 && n != -EINTR ? n : 0;
}

/* Sum a per-CPU map's values into out (value_size bytes of __u64 fields). */
static void sum_percpu(const void *values, int ncpu, size_t value_size, __u64 *out,
		       size_t nfields)
{
	size_t stride = (value_size + 7) & ~(size_t)7;
	memset(out, 0, nfields * sizeof(*out));
	for (int c = 0; c < ncpu; c++) {
		const __u64 *v = (const __u64 *)((const char *)values + (size_t)c * stride);
		for (size_t f = 0; f < nfields; f++)
			out[f] += v[f];
	}
}

int tracer_snapshot(struct tracer *t)
{
	int ncpu = libbpf_num_possible_cpus();
	if (ncpu <= 0)
		return -1;
	size_t max_val = sizeof(struct lt_proc_val);
	void *vals = calloc((size_t)ncpu, (max_val + 7) & ~(size_t)7);
	if (!vals)
		return -1;
	__u64 sum[2];

	int fd = bpf_map__fd(t->skel->maps.proc_counts);
	struct lt_proc_key pk, pnext, *pprev = NULL;
	while (!bpf_map_get_next_key(fd, pprev, &pnext)) {
		pk = pnext;
		pprev = &pk;
		if (bpf_map_lookup_elem(fd, &pk, vals))
			continue;
		sum_percpu(vals, ncpu, sizeof(struct lt_proc_val), sum, 2);
		const char *comm = NULL;
		size_t stride = (sizeof(struct lt_proc_val) + 7) & ~(size_t)7;
		for (int c = 0; c < ncpu && !comm; c++) {
			const struct lt_proc_val *v = (const void *)((char *)vals + (size_t)c * stride);
			if (v->comm[0])
				comm = v->comm;
		}
		agg_set_proc(t->agg, &pk, sum[0], sum[1], comm);
	}

	fd = bpf_map__fd(t->skel->maps.pair_counts);
	struct lt_pair_key qk, qnext, *qprev = NULL;
	while (!bpf_map_get_next_key(fd, qprev, &qnext)) {
		qk = qnext;
		qprev = &qk;
		if (bpf_map_lookup_elem(fd, &qk, vals))
			continue;
		sum_percpu(vals, ncpu, sizeof(struct lt_pair_val), sum, 2);
		agg_set_pair(t->agg, &qk, sum[0], sum[1]);
	}

	fd = bpf_map__fd(t->skel->maps.lo_counts);
	struct lt_lo_key lk, lnext, *lprev = NULL;
	while (!bpf_map_get_next_key(fd, lprev, &lnext)) {
		lk = lnext;
		lprev = &lk;
		if (bpf_map_lookup_elem(fd, &lk, vals))
			continue;
		sum_percpu(vals, ncpu, sizeof(struct lt_lo_val), sum, 2);
		agg_set_lo(t->agg, &lk, sum[0], sum[1]);
	}

	fd = bpf_map__fd(t->skel->maps.stats);
	for (__u32 i = 0; i < LT_STAT_COUNT; i++) {
		if (bpf_map_lookup_elem(fd, &i, vals))
			continue;
		sum_percpu(vals, ncpu, sizeof(__u64), sum, 1);
		if (i == LT_STAT_LOST_EVENTS)
			t->agg->lost_events = sum[0];
		else if (i == LT_STAT_MAP_FULL)
			t->agg->map_full = sum[0];
		else if (i == LT_STAT_EVENTS)
			t->agg->events_submitted = sum[0];
		else if (i >= LT_STAT_UNTIMED_BASE)
			t->agg->untimed[i - LT_STAT_UNTIMED_BASE] = sum[0];
	}
	free(vals);
	return 0;
}

int tracer_stop(struct tracer *t, FILE *log)
{
	int ret = lo_detach(&t->lo, log);
	ring_buffer__free(t->rb);
	t->rb = NULL;
	lotrace_bpf__destroy(t->skel);
	t->skel = NULL;
	return ret;
}
