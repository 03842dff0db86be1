#include "export.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <linux/capability.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include "exporter.h"
#include "kmaps.h"
#include "loader.h"
#include "signals.h"
#include "lotrace.skel.h"
#include "textfile.h"

/*
 * Keys of entries to take or delete after a map walk (never during it).  One
 * per map: the key size is fixed when it is made, so a vector grown for one
 * key size is never filled with larger keys.
 */
struct keyvec {
	char *keys;
	size_t n, cap;
	size_t size; /* set once by keyvec_init */
};

static void keyvec_init(struct keyvec *v, size_t size)
{
	*v = (struct keyvec){ .size = size };
}

static void keyvec_push(struct keyvec *v, const void *key)
{
	if (v->n == v->cap) {
		size_t cap = v->cap ? v->cap * 2 : 64;
		char *k = realloc(v->keys, cap * v->size);
		if (!k)
			return; /* taken at a later scan */
		v->keys = k;
		v->cap = cap;
	}
	memcpy(v->keys + v->n++ * v->size, key, v->size);
}

struct exp_run {
	struct tracer t;
	struct kmap_reader scan, lookup;
	struct exporter *x;
	struct keyvec reap[EXP_MAP_COUNT]; /* indexed by enum exp_map */
	const char *dir;
	uint64_t write_failures;
	int last_errno; /* of the failing streak; 0: the last write worked */
	bool oom_logged;
	bool dir_lost;  /* --textfile-dir is gone: logged once until it is back */
};

static int kernel_comm(void *ctx, uint32_t tgid, uint32_t tag, int transport, int direction,
		       char *out, size_t len)
{
	struct exp_run *r = ctx;
	if (tracer_proc_record(&r->t, &r->lookup, tgid, tag, transport, direction, out, len, NULL,
			       0))
		return -1;
	return out[0] ? 0 : -1;
}

static int kernel_cgroup(void *ctx, uint32_t tgid, uint32_t tag, int transport, int direction,
			 char *out, size_t len)
{
	struct exp_run *r = ctx;
	if (tracer_proc_record(&r->t, &r->lookup, tgid, tag, transport, direction, NULL, 0, out,
			       len))
		return -1;
	return out[0] ? 0 : -1;
}

static void on_event(void *ctx, const struct lt_event *e)
{
	exporter_event(ctx, e);
}

static void scan_proc(void *ctx, const struct kmap_entry *e)
{
	struct exp_run *r = ctx;
	char comm[LOTRACE_COMM_LEN + 1] = "";
	const char *c = kmap_proc_comm(e);
	if (c)
		snprintf(comm, sizeof(comm), "%.*s", (int)strnlen(c, LOTRACE_COMM_LEN), c);
	if (exporter_proc(r->x, e->key, e->sum[0], e->sum[1], kmap_proc_start(e), comm))
		keyvec_push(&r->reap[EXP_MAP_PROC], e->key);
}

static void scan_lo(void *ctx, const struct kmap_entry *e)
{
	struct exp_run *r = ctx;
	if (exporter_lo(r->x, e->key, e->sum[0], e->sum[1]))
		keyvec_push(&r->reap[EXP_MAP_LO], e->key);
}

static void scan_pair(void *ctx, const struct kmap_entry *e)
{
	struct exp_run *r = ctx;
	if (exporter_pair_gone(r->x, e->key))
		keyvec_push(&r->reap[EXP_MAP_PAIR], e->key);
}

/*
 * Walks one counter map; entries of exited processes are then taken (read
 * and deleted in one step) or, for pairs, deleted.  Returns entries left.
 */
static uint64_t scan_map(struct exp_run *r, struct bpf_map *map, size_t value_size, kmap_fn fn,
			 enum exp_map which)
{
	int fd = bpf_map__fd(map);
	struct keyvec *reap = &r->reap[which];
	reap->n = 0;
	long n = kmap_foreach(&r->scan, fd, reap->size, value_size, 2, fn, r);
	if (n < 0)
		return 0;
	for (size_t i = 0; i < reap->n; i++) {
		const void *key = reap->keys + i * reap->size;
		uint64_t sum[2];
		if (which == EXP_MAP_PAIR) {
			if (!bpf_map_delete_elem(fd, key))
				n--;
		} else if (!kmap_take(&r->scan, fd, key, value_size, 2, sum)) {
			n--;
			if (which == EXP_MAP_PROC)
				exporter_proc_taken(r->x, key, sum[0], sum[1]);
			else
				exporter_lo_taken(r->x, key, sum[0], sum[1]);
		}
	}
	return (uint64_t)n;
}

static void write_file(struct exp_run *r, struct textfile *tf)
{
	struct lotrace_bpf *s = r->t.skel;
	uint64_t stats[LT_STAT_COUNT];
	struct lt_count totals[LT_TOT_COUNT];

	/* Drain first: the events belong to processes whose counters are folded now. */
	tracer_poll(&r->t, 0);
	/* Totals before the rows: totals - rows then never exceeds what was evicted. */
	int have_totals = !kmap_read_totals(&r->scan, bpf_map__fd(s->maps.totals), totals);
	exporter_scan_begin(r->x);
	uint64_t n = scan_map(r, s->maps.proc_counts, sizeof(struct lt_proc_val), scan_proc,
			      EXP_MAP_PROC);
	exporter_map_size(r->x, EXP_MAP_PROC, n, bpf_map__max_entries(s->maps.proc_counts));
	n = scan_map(r, s->maps.lo_counts, sizeof(struct lt_lo_val), scan_lo, EXP_MAP_LO);
	exporter_map_size(r->x, EXP_MAP_LO, n, bpf_map__max_entries(s->maps.lo_counts));
	n = scan_map(r, s->maps.pair_counts, sizeof(struct lt_pair_val), scan_pair, EXP_MAP_PAIR);
	exporter_map_size(r->x, EXP_MAP_PAIR, n, bpf_map__max_entries(s->maps.pair_counts));
	if (have_totals)
		exporter_totals(r->x, totals);
	if (!tracer_read_stats(&r->t, &r->scan, stats))
		exporter_stats(r->x, stats);
	exporter_scan_end(r->x, lt_clock_s(CLOCK_MONOTONIC));
	if (exporter_out_of_memory(r->x) && !r->oom_logged) {
		fprintf(stderr, "lotrace: out of memory: some traffic was counted under \"other\"\n");
		r->oom_logged = true;
	}

	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	int err = ENOMEM;
	if (f) {
		struct exp_self self = { r->t.agg->backend, r->t.agg->lo_attach,
					 r->t.agg->events_processed, r->write_failures,
					 lt_clock_s(CLOCK_REALTIME) };
		int rendered = exporter_render(r->x, f, &self);
		err = fclose(f) || rendered ? ENOMEM : -textfile_write(tf, buf, len);
	}
	free(buf);
	if (err) {
		r->write_failures++;
		if (err != r->last_errno) /* one line per failing streak, not per interval */
			fprintf(stderr, "lotrace: cannot write %s/%s: %s; retrying every interval, counts are kept\n",
				r->dir, LT_EXPORT_FILE, strerror(err));
		r->last_errno = err;
	} else if (r->last_errno) {
		fprintf(stderr, "lotrace: wrote %s/%s again (%llu failed writes so far)\n", r->dir,
			LT_EXPORT_FILE, (unsigned long long)r->write_failures);
		r->last_errno = 0;
	}
}

/*
 * The directory may have been replaced (`rm -rf D; mkdir D`): writing into
 * the removed one would fail with ENOENT forever.  Follow the path instead.
 * -1 when another exporter took the new directory: stop, exit 1.
 */
static int follow_dir(struct exp_run *r, struct textfile *tf)
{
	char why[512];
	int f = textfile_follow(tf, why, sizeof(why));
	if (f == -2) {
		fprintf(stderr, "lotrace: --textfile-dir: %s; stopping\n", why);
		return -1;
	}
	if (f == -1) {
		if (!r->dir_lost)
			fprintf(stderr, "lotrace: --textfile-dir: %s; looking for it every interval, counts are kept\n",
				why);
		r->dir_lost = true;
	} else if (f == 1) {
		fprintf(stderr, "lotrace: --textfile-dir %s was replaced; writing into the new directory\n",
			r->dir);
		r->dir_lost = false;
	}
	/* Even without a directory: the scan folds exited processes out of the kernel maps. */
	write_file(r, tf);
	return 0;
}

int export_main(const struct lt_opts *opts)
{
	const struct lt_export_opts *xo = &opts->export;
	struct textfile tf;
	char why[512];

	if (textfile_open(&tf, xo->textfile_dir, LT_EXPORT_FILE, why, sizeof(why))) {
		fprintf(stderr, "lotrace: --textfile-dir: %s\n", why);
		return 2;
	}

	lt_catch_signals(false);

	struct exp_run *r = calloc(1, sizeof(*r));
	struct agg *agg = agg_new();
	int ret = 1;
	if (!r || !agg || kmap_reader_init(&r->scan, sizeof(struct lt_proc_val)) ||
	    kmap_reader_init(&r->lookup, sizeof(struct lt_cgroup_path))) {
		fprintf(stderr, "lotrace: out of memory\n");
		goto out;
	}
	r->dir = xo->textfile_dir;
	keyvec_init(&r->reap[EXP_MAP_PROC], sizeof(struct lt_proc_key));
	keyvec_init(&r->reap[EXP_MAP_PAIR], sizeof(struct lt_pair_key));
	keyvec_init(&r->reap[EXP_MAP_LO], sizeof(struct lt_lo_key));
	struct exp_config cfg = { xo->by, xo->max_series, xo->idle_expiry_s, exp_procfs() };
	cfg.sys.kernel_comm = kernel_comm;
	cfg.sys.kernel_cgroup = kernel_cgroup;
	cfg.sys.ctx = r;
	r->x = exporter_new(&cfg);
	if (!r->x) {
		fprintf(stderr, "lotrace: out of memory\n");
		goto out;
	}
	agg->event_sink = on_event;
	agg->event_sink_ctx = r->x;
	if (tracer_start(&r->t, opts, agg, stderr))
		goto out;
	/* Attached: keep only what detaching and writing the file need. */
	if (lt_drop_capabilities(tracer_detach_caps(&r->t) |
				 (textfile_needs_dac_override(&tf) ? 1ull << CAP_DAC_OVERRIDE : 0),
				 stderr)) {
		tracer_stop(&r->t, stderr);
		goto out;
	}
	if (!opts->quiet)
		fprintf(stderr, "lotrace: tracing with the %s backend, lo counted via %s; writing %s/%s every %g s\n",
			agg->backend, agg->lo_attach, xo->textfile_dir, LT_EXPORT_FILE,
			xo->interval_s);

	ret = 0;
	double next = lt_clock_s(CLOCK_MONOTONIC);
	while (!lt_stop_requested) {
		double now = lt_clock_s(CLOCK_MONOTONIC);
		if (lt_hup_requested) { /* reopen the directory if replaced, rewrite now */
			lt_hup_requested = 0;
			next = now;
		}
		if (now >= next) {
			if (follow_dir(r, &tf)) {
				ret = 1;
				break;
			}
			next += xo->interval_s;
			if (next <= now) /* fell behind (suspend, slow disk): no burst of writes */
				next = now + xo->interval_s;
			continue;
		}
		if (tracer_poll_within(&r->t, next - now)) {
			fprintf(stderr, "lotrace: reading the ring buffer failed\n");
			ret = 1;
			break;
		}
	}
	/* Frozen counters would look like idle processes: take the file away. */
	int err = textfile_remove(&tf);
	if (err && err != -ENOENT)
		fprintf(stderr, "lotrace: cannot remove %s/%s: %s\n", xo->textfile_dir,
			LT_EXPORT_FILE, strerror(-err));
	if (tracer_stop(&r->t, stderr))
		ret = 1;
out:
	if (r) {
		exporter_free(r->x);
		kmap_reader_free(&r->scan);
		kmap_reader_free(&r->lookup);
		for (int i = 0; i < EXP_MAP_COUNT; i++)
			free(r->reap[i].keys);
	}
	free(r);
	agg_free(agg);
	textfile_close(&tf);
	lt_reraise_fatal_signal();
	return ret;
}
