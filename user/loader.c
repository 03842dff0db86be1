#include "loader.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>
#include <linux/capability.h>
#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>
#include "lotrace.skel.h"

#define LT_CAP_PERFMON 38
#define LT_CAP_BPF 39

static FILE *libbpf_log;

static char probe_last_warning[256];
static bool probing;

/* While probing backends, keep libbpf's last warning for the one-line reason. */
static int libbpf_print(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	if (level == LIBBPF_DEBUG || !libbpf_log)
		return 0;
	if (probing && !getenv("LOTRACE_DEBUG")) {
		char line[sizeof(probe_last_warning)];
		vsnprintf(line, sizeof(line), fmt, ap);
		line[strcspn(line, "\n")] = 0;
		const char *msg = strncmp(line, "libbpf: ", 8) ? line : line + 8;
		if (msg[0] && strncmp(msg, "failed to load", 14))
			snprintf(probe_last_warning, sizeof(probe_last_warning), "%s", msg);
		return 0;
	}
	return vfprintf(libbpf_log, fmt, ap);
}

static bool has_cap(const struct __user_cap_data_struct d[2], int cap)
{
	return d[cap / 32].effective & (1u << (cap % 32));
}

/* The capabilities lotrace needs, named when missing; --lo-attach none needs no CAP_NET_ADMIN. */
static int check_privileges(FILE *log, enum lt_lo_mode lo_mode)
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
	if (lo_mode != LT_LO_NONE && !has_cap(d, CAP_NET_ADMIN))
		strcat(missing, " CAP_NET_ADMIN");
	if (missing[0]) {
		/* Root without them is a container or a reduced bounding set: sudo would not help. */
		fprintf(log, "lotrace: missing capabilities:%s (%s)\n", missing,
			geteuid() ? "run as root, e.g. sudo lotrace ..."
				  : "root, but without them: grant them to the container or service");
		return -1;
	}
	return 0;
}

uint64_t tracer_detach_caps(const struct tracer *t)
{
	/* Closing links and fds needs nothing; removing a tc filter and qdisc does. */
	return t->lo.mode == LT_LO_CLSACT ? 1ull << CAP_NET_ADMIN : 0;
}

int lt_drop_capabilities(uint64_t keep, FILE *log)
{
	struct __user_cap_header_struct h = { _LINUX_CAPABILITY_VERSION_3, 0 };
	struct __user_cap_data_struct d[2];

	memset(d, 0, sizeof(d));
	if (syscall(SYS_capget, &h, d))
		goto fail;
	uint64_t prm = (uint64_t)d[1].permitted << 32 | d[0].permitted;
	keep &= prm;
	/*
	 * The bounding set too, so that not even an exec as root regains them
	 * (needs CAP_SETPCAP, which a service's bounding set usually lacks; then
	 * the permitted set alone is the limit).
	 */
	if (prm & (1ull << CAP_SETPCAP))
		for (int c = 0; c <= CAP_LAST_CAP; c++)
			if (!(keep & (1ull << c)))
				prctl(PR_CAPBSET_DROP, c, 0, 0, 0);
	prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
	for (int i = 0; i < 2; i++) {
		d[i].effective = d[i].permitted = (__u32)(keep >> (32 * i));
		d[i].inheritable = 0;
	}
	if (syscall(SYS_capset, &h, d))
		goto fail;
	return 0;
fail:
	fprintf(log, "lotrace: cannot drop capabilities after attaching: %s\n", strerror(errno));
	return -1;
}

/* Ring buffers (5.8), task storage and socket storage for tracing (5.11). */
static int check_kernel_version(FILE *log)
{
	struct utsname u;
	int major = 0, minor = 0;
	if (uname(&u) || sscanf(u.release, "%d.%d", &major, &minor) != 2)
		return 0; /* unknown: let loading decide */
	if (major < 5 || (major == 5 && minor < 11)) {
		fprintf(log, "lotrace: Linux %s is too old: lotrace needs 5.11 or newer (BPF ring buffers, task and socket storage)\n",
			u.release);
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

/*
 * The hook backends, cheapest first (the order `--backend auto` tries them).
 * A backend is the set of BPF programs whose section starts with one of its
 * prefixes; "tc" (the lo counter) belongs to every backend.
 */
struct backend_def {
	enum lt_backend id;
	const char *prefixes[6]; /* the tp_btf programs a backend shares with "tracepoint" */
};

static const struct backend_def backends[] = {
	{ LT_BACKEND_FENTRY,
	  { "fentry/", "fexit/", "tp_btf/inet_sock_set_state", "tp_btf/net_dev_start_xmit",
	    "tp_btf/skb_copy_datagram_iovec", "tp_btf/kfree_skb" } },
	{ LT_BACKEND_TRACEPOINT, { "tp_btf/" } },
	{ LT_BACKEND_KPROBE, { "kprobe/", "kretprobe/", "tracepoint/" } },
};

/* Kernel functions a backend may lack without losing anything it needs. */
static const char *const optional_targets[] = {
	"inet6_sendmsg",          /* IPv6 disabled or a module not loaded */
	"inet6_recvmsg",
	"unix_seqpacket_sendmsg", /* inlined: unix_dgram_*msg carries seqpacket too */
	"unix_seqpacket_recvmsg",
	"inet_sendpage",          /* ->sendpage is gone since 6.5 (sendmsg does it) */
	"unix_stream_sendpage",
};

static bool prog_in_backend(const char *sec, const struct backend_def *b)
{
	for (size_t i = 0; i < sizeof(b->prefixes) / sizeof(b->prefixes[0]) && b->prefixes[i]; i++)
		if (!strncmp(sec, b->prefixes[i], strlen(b->prefixes[i])))
			return true;
	return false;
}

/* "fexit/unix_stream_sendmsg" -> "unix_stream_sendmsg"; "tp_btf/x" -> "x". */
static const char *hook_target(const char *sec)
{
	const char *slash = strrchr(sec, '/');
	return slash ? slash + 1 : sec;
}

static bool target_in_btf(const struct btf *vmlinux, const char *sec)
{
	const char *target = hook_target(sec);
	if (!strncmp(sec, "tp_btf/", 7) || !strncmp(sec, "tracepoint/", 11)) {
		char name[128];
		snprintf(name, sizeof(name), "btf_trace_%s", target);
		return btf__find_by_name_kind(vmlinux, name, BTF_KIND_TYPEDEF) > 0;
	}
	return btf__find_by_name_kind(vmlinux, target, BTF_KIND_FUNC) > 0;
}

static bool is_optional(const char *target)
{
	for (size_t i = 0; i < sizeof(optional_targets) / sizeof(optional_targets[0]); i++)
		if (!strcmp(target, optional_targets[i]))
			return true;
	return false;
}

static void note_reason(char *reason, size_t len, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(reason, len, fmt, ap);
	va_end(ap);
}

static void destroy_links(struct tracer *t)
{
	for (int i = 0; i < t->nlinks; i++)
		bpf_link__destroy(t->links[i]);
	t->nlinks = 0;
}

/*
 * Load and attach one backend: the probe is the real thing, not a version
 * check.  On success t->skel and t->links hold it; on failure reason says why.
 */
static int try_backend(struct tracer *t, const struct backend_def *b, const struct lt_opts *opts,
		       const struct btf *vmlinux, char *reason, size_t rlen)
{
	struct bpf_program *prog;

	t->skel = lotrace_bpf__open();
	if (!t->skel) {
		note_reason(reason, rlen, "cannot open the BPF object: %s", strerror(errno));
		return -1;
	}
	bpf_map__set_max_entries(t->skel->maps.events, (__u32)opts->ring_bytes);
	t->skel->rodata->lt_wakeup_bytes = opts->ring_bytes / 4;
	t->skel->rodata->lt_send_start_at_syscall = b->id == LT_BACKEND_TRACEPOINT;
	t->skel->rodata->lt_event_times = opts->command == LT_CMD_TRACE;
	bpf_object__for_each_program(prog, t->skel->obj) {
		const char *sec = bpf_program__section_name(prog);
		/* The lo counter only when it is attached: loading it needs CAP_NET_ADMIN. */
		bool want = !strcmp(sec, "tc") ? opts->lo_mode != LT_LO_NONE : prog_in_backend(sec, b);
		if (want && strcmp(sec, "tc") && !target_in_btf(vmlinux, sec)) {
			if (!is_optional(hook_target(sec))) {
				note_reason(reason, rlen, "the kernel has no %s %s",
					    hook_target(sec),
					    strncmp(sec, "tp_btf/", 7) ? "function" : "tracepoint");
				goto fail;
			}
			want = false;
		}
		bpf_program__set_autoload(prog, want);
	}
	probe_last_warning[0] = 0;
	probing = true; /* libbpf's warnings become the reason, not noise */
	int err = lotrace_bpf__load(t->skel);
	if (err) {
		note_reason(reason, rlen, "loading failed: %s%s%s", strerror(-err),
			    probe_last_warning[0] ? ": " : "", probe_last_warning);
		goto fail;
	}
	bpf_object__for_each_program(prog, t->skel->obj) {
		const char *sec = bpf_program__section_name(prog);
		if (!bpf_program__autoload(prog) || !strcmp(sec, "tc"))
			continue;
		struct bpf_link *link = t->nlinks < LT_MAX_LINKS ? bpf_program__attach(prog) : NULL;
		if (!link) {
			int e = errno;
			note_reason(reason, rlen, "attaching %s failed: %s%s%s%s", sec, strerror(e),
				    probe_last_warning[0] ? " (" : "", probe_last_warning,
				    probe_last_warning[0] ? ")" : "");
			goto fail;
		}
		t->links[t->nlinks++] = link;
	}
	probing = false;
	return 0;
fail:
	probing = false;
	destroy_links(t);
	lotrace_bpf__destroy(t->skel);
	t->skel = NULL;
	return -1;
}

static int choose_backend(struct tracer *t, const struct lt_opts *opts, FILE *log)
{
	struct btf *vmlinux = btf__load_vmlinux_btf();
	if (!vmlinux) {
		fprintf(log, "lotrace: cannot read the kernel's BTF: %s\n", strerror(errno));
		return -1;
	}
	int chosen = -1;
	for (size_t i = 0; i < sizeof(backends) / sizeof(backends[0]) && chosen < 0; i++) {
		const struct backend_def *b = &backends[i];
		if (opts->backend != LT_BACKEND_AUTO && opts->backend != b->id)
			continue;
		char *reason = t->agg->backend_reasons[b->id];
		if (!try_backend(t, b, opts, vmlinux, reason, LT_REASON_LEN)) {
			chosen = (int)i;
			snprintf(reason, LT_REASON_LEN, "chosen");
			break;
		}
		if (opts->backend != LT_BACKEND_AUTO)
			fprintf(log, "lotrace: the %s backend cannot run here: %s\n",
				lt_backend_name(b->id), reason);
		else if (!opts->quiet) /* the reasons stay in the JSON's backend_reasons */
			fprintf(log, "lotrace: %s backend unavailable (%s); trying the next\n",
				lt_backend_name(b->id), reason);
	}
	btf__free(vmlinux);
	if (chosen < 0) {
		if (opts->backend == LT_BACKEND_AUTO && opts->quiet) {
			/* An error is never quiet: say why each backend failed. */
			for (size_t i = 0; i < sizeof(backends) / sizeof(backends[0]); i++)
				fprintf(log, "lotrace: %s backend unavailable (%s)\n",
					lt_backend_name(backends[i].id),
					t->agg->backend_reasons[backends[i].id]);
		}
		if (opts->backend == LT_BACKEND_AUTO)
			fprintf(log, "lotrace: no hook backend works on this kernel (reasons above)\n");
		return -1;
	}
	t->backend = lt_backend_name(backends[chosen].id);
	return 0;
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

	if (check_privileges(log, opts->lo_mode) || check_btf(log))
		return -1;
	struct rlimit rl = { RLIM_INFINITY, RLIM_INFINITY };
	setrlimit(RLIMIT_MEMLOCK, &rl); /* kernels before 5.11 charge BPF maps to memlock */

	if (check_kernel_version(log) || choose_backend(t, opts, log))
		return -1;
	t->rb = ring_buffer__new(bpf_map__fd(t->skel->maps.events), handle_event, agg, NULL);
	if (!t->rb) {
		fprintf(log, "lotrace: cannot open the ring buffer: %s\n", strerror(errno));
		goto fail;
	}
	if (lo_attach(&t->lo, bpf_program__fd(t->skel->progs.lt_lo_egress), opts->lo_mode, log,
		      opts->quiet)) {
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

/* How often the ring buffer is drained when nothing wakes the reader. */
#define POLL_INTERVAL_MS 50

int tracer_poll_within(struct tracer *t, double left_s)
{
	double left_ms = left_s * 1000;
	return tracer_poll(t, left_ms < POLL_INTERVAL_MS ? (int)left_ms + 1 : POLL_INTERVAL_MS);
}

double lt_clock_s(clockid_t c)
{
	struct timespec ts;
	clock_gettime(c, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
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

void tracer_freeze(struct tracer *t)
{
	__atomic_store_n(&t->skel->bss->lt_frozen, 1, __ATOMIC_SEQ_CST);
	/*
	 * A program that read the flag before it was raised may still be
	 * counting.  Non-sleepable BPF programs run inside an RCU read-side
	 * section, and MEMBARRIER_CMD_GLOBAL waits for an RCU grace period
	 * (synchronize_rcu) on a multi-CPU host.  It returns at once on one CPU
	 * or fails with nohz_full, where a short sleep covers a run that was
	 * preempted (a run takes microseconds).
	 */
	if (syscall(SYS_membarrier, 1 /* MEMBARRIER_CMD_GLOBAL */, 0, 0) != 0 ||
	    sysconf(_SC_NPROCESSORS_ONLN) < 2)
		nanosleep(&(struct timespec){ .tv_nsec = 10 * 1000 * 1000 }, NULL);
}

static void snap_proc(void *agg, const struct kmap_entry *e)
{
	agg_set_proc(agg, e->key, e->sum[0], e->sum[1], kmap_proc_start(e), kmap_proc_cgroup(e),
		     kmap_proc_comm(e));
}

static void snap_cgroup(void *agg, const struct kmap_entry *e)
{
	char path[KMAP_CGROUP_PATH_LEN];
	kmap_cgroup_path(e->values, path, sizeof(path));
	agg_set_cgroup(agg, *(const __u64 *)e->key, path);
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

/* Runs the kernel skipped because one of our programs was already running on that CPU. */
static uint64_t missed_runs(struct tracer *t)
{
	uint64_t n = 0;
	struct bpf_program *prog;
	bpf_object__for_each_program(prog, t->skel->obj) {
		struct bpf_prog_info info;
		__u32 len = sizeof(info);
		memset(&info, 0, sizeof(info));
		int fd = bpf_program__fd(prog);
		if (fd >= 0 && !bpf_obj_get_info_by_fd(fd, &info, &len))
			n += info.recursion_misses;
	}
	return n;
}

int tracer_proc_record(struct tracer *t, struct kmap_reader *r, uint32_t tgid, uint32_t tag,
		       int transport, int direction, char *comm, size_t comm_len, char *cgroup,
		       size_t cgroup_len)
{
	struct lt_proc_key k = { .tgid = tgid, .tag = tag, .transport = (__u8)transport,
				 .direction = (__u8)direction };
	struct kmap_entry e;
	if (kmap_lookup(r, bpf_map__fd(t->skel->maps.proc_counts), &k, sizeof(struct lt_proc_val),
			&e))
		return -1;
	if (comm) {
		const char *c = kmap_proc_comm(&e);
		snprintf(comm, comm_len, "%.*s", c ? (int)strnlen(c, LOTRACE_COMM_LEN) : 0,
			 c ? c : "");
	}
	if (cgroup) {
		__u64 id = kmap_proc_cgroup(&e); /* read before r's buffer is reused */
		cgroup[0] = 0;
		if (id && !kmap_lookup(r, bpf_map__fd(t->skel->maps.proc_cgroups), &id,
				       sizeof(struct lt_cgroup_path), &e))
			kmap_cgroup_path(e.values, cgroup, cgroup_len);
	}
	return 0;
}

int tracer_read_stats(struct tracer *t, struct kmap_reader *r, uint64_t stats[LT_STAT_COUNT])
{
	memset(stats, 0, LT_STAT_COUNT * sizeof(*stats));
	if (kmap_foreach(r, bpf_map__fd(t->skel->maps.stats), sizeof(__u32), sizeof(__u64), 1,
			 snap_stat, stats) < 0)
		return -1;
	stats[LT_STAT_MISSED_RUNS] = missed_runs(t);
	return 0;
}

int tracer_snapshot(struct tracer *t)
{
	struct kmap_reader r;
	uint64_t stats[LT_STAT_COUNT];
	if (kmap_reader_init(&r, sizeof(struct lt_cgroup_path)))
		return -1;
	kmap_foreach(&r, bpf_map__fd(t->skel->maps.proc_counts), sizeof(struct lt_proc_key),
		     sizeof(struct lt_proc_val), 2, snap_proc, t->agg);
	/* After the rows: a row's cgroup is recorded before the row. */
	kmap_foreach(&r, bpf_map__fd(t->skel->maps.proc_cgroups), sizeof(__u64),
		     sizeof(struct lt_cgroup_path), 0, snap_cgroup, t->agg);
	kmap_foreach(&r, bpf_map__fd(t->skel->maps.pair_counts), sizeof(struct lt_pair_key),
		     sizeof(struct lt_pair_val), 2, snap_pair, t->agg);
	agg_count_delivered(t->agg);
	kmap_foreach(&r, bpf_map__fd(t->skel->maps.lo_counts), sizeof(struct lt_lo_key),
		     sizeof(struct lt_lo_val), 2, snap_lo, t->agg);
	/* After the rows: totals - rows is then what was folded, never negative. */
	kmap_read_totals(&r, bpf_map__fd(t->skel->maps.totals), t->agg->totals);
	if (!tracer_read_stats(t, &r, stats)) {
		t->agg->lost_events = stats[LT_STAT_LOST_EVENTS];
		t->agg->map_full = stats[LT_STAT_MAP_FULL];
		t->agg->missed_runs = stats[LT_STAT_MISSED_RUNS];
		agg_account_untimed(t->agg, stats);
	}
	kmap_reader_free(&r);
	return 0;
}

int tracer_stop(struct tracer *t, FILE *log)
{
	int ret = lo_detach(&t->lo, log);
	ring_buffer__free(t->rb);
	t->rb = NULL;
	destroy_links(t);
	lotrace_bpf__destroy(t->skel);
	t->skel = NULL;
	return ret;
}
