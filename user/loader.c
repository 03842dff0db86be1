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

static void snap_proc(void *agg, const struct kmap_entry *e)
{
	agg_set_proc(agg, e->key, e->sum[0], e->sum[1], kmap_proc_comm(e));
}

static void snap_pair(void *agg, const struct kmap_entry *e)
{
	agg_set_pair(agg, e->key, e->sum[0], e->sum[1]);
}

static void snap_lo(void *agg, const struct kmap_entry *e)
{
	agg_set_lo(agg, e->key, e->sum[0], e->sum[1]);
}

static void snap_stat(void *ctx, const struct kmap_entry *e)
{
	uint64_t *stats = ctx;
	__u32 i = *(const __u32 *)e->key;
	if (i < LT_STAT_COUNT)
		stats[i] = e->sum[0];
}

int tracer_read_stats(struct tracer *t, struct kmap_reader *r, uint64_t stats[LT_STAT_COUNT])
{
	memset(stats, 0, LT_STAT_COUNT * sizeof(*stats));
	return kmap_foreach(r, bpf_map__fd(t->skel->maps.stats), sizeof(__u32), sizeof(__u64), 1,
			    snap_stat, stats) < 0 ? -1 : 0;
}

int tracer_snapshot(struct tracer *t)
{
	struct kmap_reader r;
	uint64_t stats[LT_STAT_COUNT];
	if (kmap_reader_init(&r, sizeof(struct lt_proc_val)))
		return -1;
	kmap_foreach(&r, bpf_map__fd(t->skel->maps.proc_counts), sizeof(struct lt_proc_key),
		     sizeof(struct lt_proc_val), 2, snap_proc, t->agg);
	kmap_foreach(&r, bpf_map__fd(t->skel->maps.pair_counts), sizeof(struct lt_pair_key),
		     sizeof(struct lt_pair_val), 2, snap_pair, t->agg);
	kmap_foreach(&r, bpf_map__fd(t->skel->maps.lo_counts), sizeof(struct lt_lo_key),
		     sizeof(struct lt_lo_val), 2, snap_lo, t->agg);
	if (!tracer_read_stats(t, &r, stats)) {
		t->agg->lost_events = stats[LT_STAT_LOST_EVENTS];
		t->agg->map_full = stats[LT_STAT_MAP_FULL];
		t->agg->events_submitted = stats[LT_STAT_EVENTS];
		memcpy(t->agg->untimed, &stats[LT_STAT_UNTIMED_BASE], sizeof(t->agg->untimed));
	}
	kmap_reader_free(&r);
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
