/*
 * Unit tests of `lotrace export`'s user space: the exposition format, bucket
 * mapping, escaping, folding and expiry of series, the atomic file writer,
 * cgroup -> unit names and the flags.  No root, no BPF: processes are faked.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "exporter.h"
#include "names.h"
#include "opts.h"
#include "procid.h"
#include "prom.h"
#include "textfile.h"

/* ---- a tiny parser of the text format, independent of the writer ---- */

struct sample {
	char name[96];
	char labels[512]; /* raw text between the braces */
	double value;
};

struct parsed {
	struct sample *s;
	size_t n;
	size_t help, type;
};

/* Parses every line; fails the test on a line that is not HELP, TYPE or a sample. */
static struct parsed parse(const char *text)
{
	struct parsed p = { 0 };
	char *copy = strdup(text), *save = NULL;
	size_t cap = 0;
	for (char *line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		if (!strncmp(line, "# HELP ", 7)) {
			p.help++;
			continue;
		}
		if (!strncmp(line, "# TYPE ", 7)) {
			p.type++;
			continue;
		}
		cr_assert_neq(line[0], '#', "unexpected comment: %s", line);
		if (p.n == cap) {
			cap = cap ? cap * 2 : 256;
			p.s = realloc(p.s, cap * sizeof(*p.s));
		}
		struct sample *s = &p.s[p.n++];
		memset(s, 0, sizeof(*s));
		size_t nl = strcspn(line, "{ ");
		cr_assert_lt(nl, sizeof(s->name));
		memcpy(s->name, line, nl);
		const char *rest = line + nl;
		if (*rest == '{') {
			/* the closing brace is the last '}' before the value */
			const char *close = strrchr(rest, '}');
			cr_assert_not_null(close, "no closing brace: %s", line);
			size_t ll = (size_t)(close - rest - 1);
			cr_assert_lt(ll, sizeof(s->labels));
			memcpy(s->labels, rest + 1, ll);
			rest = close + 1;
		}
		cr_assert_eq(*rest, ' ', "no value: %s", line);
		char *end;
		s->value = strtod(rest + 1, &end);
		cr_assert_eq(*end, 0, "bad value: %s", line);
	}
	free(copy);
	return p;
}

/* Sum of name's samples whose labels contain every comma-free fragment of `want`. */
static double sum_of(const struct parsed *p, const char *name, const char *want)
{
	double sum = 0;
	for (size_t i = 0; i < p->n; i++) {
		if (strcmp(p->s[i].name, name))
			continue;
		if (want && !strstr(p->s[i].labels, want))
			continue;
		sum += p->s[i].value;
	}
	return sum;
}

static size_t count_of(const struct parsed *p, const char *prefix, const char *want)
{
	size_t n = 0;
	for (size_t i = 0; i < p->n; i++)
		if (!strncmp(p->s[i].name, prefix, strlen(prefix)) &&
		    (!want || strstr(p->s[i].labels, want)))
			n++;
	return n;
}

static char *render(struct exporter *x)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	struct exp_self self = { "tracepoint", "tcx", 7, 0, 1700000000.5 };
	exporter_render(x, f, &self);
	fclose(f);
	return buf;
}

/* ---- buckets and the histogram lines ---- */

Test(prom, bounds_increase_and_le_is_inclusive)
{
	for (unsigned i = 0; i < PROM_NBOUNDS; i++) {
		if (i)
			cr_assert_gt(prom_bounds_ns[i], prom_bounds_ns[i - 1]);
		cr_assert_eq(prom_bucket_of(prom_bounds_ns[i]), i, "value == bound %u", i);
		cr_assert_eq(prom_bucket_of(prom_bounds_ns[i] + 1), i + 1, "bound %u + 1 ns", i);
		cr_assert_eq(prom_bucket_of(prom_bounds_ns[i] - 1), i, "bound %u - 1 ns", i);
	}
	cr_assert_eq(prom_bucket_of(0), 0);
	cr_assert_eq(prom_bucket_of(UINT64_MAX), PROM_NBOUNDS);
	cr_assert_eq(prom_bounds_ns[0], 500);
	cr_assert_eq(prom_bounds_ns[PROM_NBOUNDS - 1], 10000000000ULL);
}

Test(prom, histogram_is_cumulative_with_inf_equal_to_count)
{
	struct prom_hist h = { 0 };
	/* One value at each bound, one just above each, and one past the last. */
	for (unsigned i = 0; i < PROM_NBOUNDS; i++) {
		prom_hist_add(&h, prom_bounds_ns[i], 1);
		prom_hist_add(&h, prom_bounds_ns[i] + 1, 1);
	}
	prom_hist_add(&h, 20000000000ULL, 1);
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	struct prom_label l = { "transport", "tcp" };
	prom_family(f, PROM_MESSAGE_LATENCY);
	prom_histogram(f, PROM_MESSAGE_LATENCY, &l, 1, &h);
	fclose(f);

	struct parsed p = parse(buf);
	cr_assert_eq(p.n, PROM_NBOUNDS + 3);
	uint64_t sum_ns = 0;
	for (unsigned i = 0; i < PROM_NBOUNDS; i++) {
		const struct sample *s = &p.s[i];
		cr_assert_str_eq(s->name, "lotrace_message_latency_seconds_bucket");
		char le[64];
		snprintf(le, sizeof(le), "le=\"%g\"", (double)prom_bounds_ns[i] / 1e9);
		cr_assert(strstr(s->labels, le), "bucket %u labels %s", i, s->labels);
		/* Values <= bound i: the bound itself for 0..i, bound+1 for 0..i-1. */
		cr_assert_eq((uint64_t)s->value, 2 * i + 1, "bucket %u", i);
		sum_ns += prom_bounds_ns[i] * 2 + 1;
	}
	sum_ns += 20000000000ULL;
	cr_assert(strstr(p.s[PROM_NBOUNDS].labels, "le=\"+Inf\""));
	cr_assert_eq((uint64_t)p.s[PROM_NBOUNDS].value, h.count);
	cr_assert_str_eq(p.s[PROM_NBOUNDS + 1].name, "lotrace_message_latency_seconds_sum");
	cr_assert_str_eq(p.s[PROM_NBOUNDS + 2].name, "lotrace_message_latency_seconds_count");
	cr_assert_eq((uint64_t)p.s[PROM_NBOUNDS + 2].value, 2 * PROM_NBOUNDS + 1);
	/* _sum in seconds, printed exactly (9 decimals of the ns total). */
	char want[64];
	snprintf(want, sizeof(want), "} %llu.%09llu\n", (unsigned long long)(sum_ns / 1000000000),
		 (unsigned long long)(sum_ns % 1000000000));
	cr_assert(strstr(buf, want), "sum line %s not in\n%s", want, buf);
	cr_assert(strstr(buf, "le=\"5e-07\"") && strstr(buf, "le=\"2.5e-05\"") &&
		  strstr(buf, "le=\"0.001\"") && strstr(buf, "le=\"10\""));
	free(p.s);
	free(buf);
}

Test(prom, metric_names_follow_prometheus_conventions)
{
	for (int m = 0; m < PROM_METRIC_COUNT; m++) {
		const char *n = prom_metric_name(m);
		cr_assert(!strncmp(n, "lotrace_", 8), "%s: one prefix", n);
		for (const char *c = n; *c; c++)
			cr_assert((*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') || *c == '_',
				  "%s: snake case", n);
		for (int o = 0; o < m; o++)
			cr_assert_str_neq(n, prom_metric_name(o));
	}
	/* The family header says the type; counters and only counters end in _total. */
	for (int m = 0; m < PROM_METRIC_COUNT; m++) {
		char *buf = NULL;
		size_t len = 0;
		FILE *f = open_memstream(&buf, &len);
		prom_family(f, m);
		fclose(f);
		const char *n = prom_metric_name(m);
		bool total = strlen(n) > 6 && !strcmp(n + strlen(n) - 6, "_total");
		cr_assert_eq(strstr(buf, " counter\n") != NULL, total, "%s", buf);
		free(buf);
	}
	cr_assert_str_eq(prom_metric_name(PROM_METRIC_COUNT - 1),
			 "lotrace_last_write_timestamp_seconds");
}

Test(prom, label_values_are_escaped)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	struct prom_label l[2] = { { "transport", "tcp" }, { "comm", "a\\b\"c\nd" } };
	prom_sample(f, PROM_SENT_BYTES, "", l, 2, 42);
	fclose(f);
	cr_assert_str_eq(buf, "lotrace_sent_bytes_total{transport=\"tcp\",comm=\"a\\\\b\\\"c\\nd\"} 42\n");
	free(buf);
}

Test(prom, invalid_utf8_becomes_replacement_characters)
{
	char out[64];
	prom_sanitize(out, sizeof(out), "ok-\xc3\xa9-\xff-\xc0\xaf-\xed\xa0\x80-\xe2\x82");
	/* é stays; 0xff, the overlong '/', the surrogate and the cut sequence are replaced per byte. */
	cr_assert_str_eq(out, "ok-\xc3\xa9-\xef\xbf\xbd-\xef\xbf\xbd\xef\xbf\xbd-"
			      "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd-\xef\xbf\xbd\xef\xbf\xbd");
	/* Truncation keeps whole characters. */
	char small[5];
	prom_sanitize(small, sizeof(small), "ab\xc3\xa9\xc3\xa9");
	cr_assert_str_eq(small, "ab\xc3\xa9");
	prom_sanitize(small, 4, "ab\xc3\xa9");
	cr_assert_str_eq(small, "ab");
}

/* ---- the exporter with fake processes ---- */

#define FAKE_PIDS 4096

struct fake {
	bool alive[FAKE_PIDS];
	uint64_t start[FAKE_PIDS];
	char comm[FAKE_PIDS][16];    /* what /proc says */
	char kcomm[FAKE_PIDS][16];   /* what the kernel recorded */
	char cgroup[FAKE_PIDS][64];
	char kcgroup[FAKE_PIDS][64]; /* what the kernel recorded ("": nothing) */
};

static int fake_start(void *ctx, uint32_t tgid, uint64_t *start)
{
	struct fake *f = ctx;
	if (tgid >= FAKE_PIDS || !f->alive[tgid])
		return -1;
	*start = f->start[tgid];
	return 0;
}

static int fake_identity(void *ctx, enum lt_export_by by, uint32_t tgid, char *out, size_t len)
{
	struct fake *f = ctx;
	if (tgid >= FAKE_PIDS || !f->alive[tgid])
		return -1;
	if (by == LT_BY_COMM)
		snprintf(out, len, "%s", f->comm[tgid]);
	else if (by == LT_BY_CGROUP)
		snprintf(out, len, "%s", f->cgroup[tgid]);
	else
		procid_unit_of(f->cgroup[tgid], out, len);
	return 0;
}

static struct fake *cur_fake; /* the fake the simulated kernel below belongs to */

/* A process's start tag (lt_proc_key): the fake's start times are its identity. */
static uint32_t tag_of(uint32_t tgid)
{
	return (uint32_t)cur_fake->start[tgid];
}

static int fake_kernel_comm(void *ctx, uint32_t tgid, uint32_t tag, int transport, int direction,
			    char *out, size_t len)
{
	struct fake *f = ctx;
	(void)transport;
	(void)direction;
	if (tgid >= FAKE_PIDS || !f->kcomm[tgid][0] || tag != tag_of(tgid))
		return -1;
	snprintf(out, len, "%s", f->kcomm[tgid]);
	return 0;
}

static int fake_kernel_cgroup(void *ctx, uint32_t tgid, uint32_t tag, int transport,
			      int direction, char *out, size_t len)
{
	struct fake *f = ctx;
	(void)transport;
	(void)direction;
	if (tgid >= FAKE_PIDS || !f->kcgroup[tgid][0] || tag != tag_of(tgid))
		return -1;
	snprintf(out, len, "%s", f->kcgroup[tgid]);
	return 0;
}

static struct fake *fake_new(void)
{
	return cur_fake = calloc(1, sizeof(struct fake));
}

static void fake_spawn(struct fake *f, uint32_t tgid, const char *comm, const char *cgroup)
{
	f->alive[tgid] = true;
	f->start[tgid] += 1000;
	snprintf(f->comm[tgid], sizeof(f->comm[tgid]), "%s", comm);
	snprintf(f->kcomm[tgid], sizeof(f->kcomm[tgid]), "%s", comm);
	snprintf(f->cgroup[tgid], sizeof(f->cgroup[tgid]), "%s", cgroup ? cgroup : "/");
}

static struct exporter *fake_exporter(struct fake *f, enum lt_export_by by, unsigned max_series,
				      double idle)
{
	struct exp_config cfg = { by, max_series, idle,
				  { fake_start, fake_identity, fake_kernel_comm, fake_kernel_cgroup, f, 1 } };
	return exporter_new(&cfg);
}

/*
 * A simulated kernel: absolute counters per (tgid, transport, direction)
 * that the "scan" reports, taking entries of dead processes as lotrace does.
 */
struct kentry {
	bool present;
	uint64_t messages, bytes;
	uint64_t start_ns; /* of the process that made it (its tag is the low 32 bits) */
};

static struct kentry kernel[FAKE_PIDS][LT_TRANSPORT_COUNT][LT_DIRECTION_COUNT];

static void ksend(uint32_t tgid, int transport, int direction, uint64_t messages, uint64_t bytes)
{
	struct kentry *k = &kernel[tgid][transport][direction];
	k->present = true;
	k->start_ns = cur_fake->start[tgid];
	k->messages += messages;
	k->bytes += bytes;
}

/* One scan; totals (may be NULL): the kernel's exact totals, read before the rows. */
static void scan_totals(struct exporter *x, double now, const struct lt_count *totals)
{
	exporter_scan_begin(x);
	for (uint32_t t = 0; t < FAKE_PIDS; t++)
		for (int tr = 0; tr < LT_TRANSPORT_COUNT; tr++)
			for (int d = 0; d < LT_DIRECTION_COUNT; d++) {
				struct kentry *k = &kernel[t][tr][d];
				if (!k->present)
					continue;
				struct lt_proc_key key = { t, (uint32_t)k->start_ns, (uint8_t)tr,
							   (uint8_t)d, 0 };
				if (exporter_proc(x, &key, k->messages, k->bytes, k->start_ns,
						  NULL)) {
					exporter_proc_taken(x, &key, k->messages, k->bytes);
					memset(k, 0, sizeof(*k));
				}
			}
	if (totals)
		exporter_totals(x, totals);
	exporter_scan_end(x, now);
}

static void scan(struct exporter *x, double now)
{
	scan_totals(x, now, NULL);
}

static void event(struct exporter *x, uint32_t tgid, int transport, int kind, uint64_t ns)
{
	struct lt_event e = { .value_ns = ns, .tgid = tgid, .tag = tag_of(tgid), .kind = (uint8_t)kind,
			      .transport = (uint8_t)transport };
	exporter_event(x, &e);
}

Test(exporter, counts_survive_process_exit_and_kernel_deletion)
{
	memset(kernel, 0, sizeof(kernel));
	struct fake *f = fake_new();
	struct exporter *x = fake_exporter(f, LT_BY_COMM, 5, 0);
	fake_spawn(f, 10, "redis-server", NULL);
	fake_spawn(f, 11, "redis-cli", NULL);
	ksend(10, LT_TCP, LT_RECV, 3, 300);
	ksend(11, LT_TCP, LT_SEND, 3, 300);
	event(x, 10, LT_TCP, LT_EV_MESSAGE, 20000);
	/* A message whose sender's send duration rides along: a sample for each side. */
	struct lt_event both = { .value_ns = 30000, .tgid = 10, .peer_tgid = 11, .send_ns = 3000,
				 .tag = tag_of(10), .peer_tag = tag_of(11),
				 .kind = LT_EV_MESSAGE, .transport = LT_TCP };
	exporter_event(x, &both);
	scan(x, 1);
	ksend(11, LT_TCP, LT_SEND, 2, 50);
	f->alive[11] = false; /* exits: its kernel entry is taken at the next scan */
	scan(x, 2);
	cr_assert_not(kernel[11][LT_TCP][LT_SEND].present, "entry of the exited process taken");
	/* An event it caused that arrives after the scan still finds its name. */
	event(x, 11, LT_TCP, LT_EV_SEND_DURATION, 1000);
	scan(x, 3);
	cr_assert_eq(exporter_tasks(x), 1, "forgotten one scan after its entries were taken");

	char *text = render(x);
	struct parsed p = parse(text);
	cr_assert_eq(sum_of(&p, "lotrace_sent_messages_total", "comm=\"redis-cli\""), 5);
	cr_assert_eq(sum_of(&p, "lotrace_sent_bytes_total", "comm=\"redis-cli\""), 350);
	cr_assert_eq(sum_of(&p, "lotrace_received_bytes_total", "comm=\"redis-server\""), 300);
	cr_assert_eq(sum_of(&p, "lotrace_message_latency_seconds_count", "redis-server"), 2);
	cr_assert_eq(sum_of(&p, "lotrace_message_latency_seconds_bucket",
			    "comm=\"redis-server\",le=\"2.5e-05\""), 1);
	cr_assert_eq(sum_of(&p, "lotrace_message_latency_seconds_bucket",
			    "comm=\"redis-server\",le=\"5e-05\""), 2);
	cr_assert_eq(sum_of(&p, "lotrace_send_duration_seconds_count", "redis-cli"), 2);
	cr_assert_eq(count_of(&p, "lotrace_send_duration_seconds_count", "unknown"), 0);
	cr_assert_eq(sum_of(&p, "lotrace_send_duration_seconds_bucket",
			    "comm=\"redis-cli\",le=\"5e-06\""), 2);
	cr_assert_eq(sum_of(&p, "lotrace_send_duration_seconds_bucket",
			    "comm=\"redis-cli\",le=\"1e-06\""), 1);
	cr_assert_eq(sum_of(&p, "lotrace_message_latency_seconds_bucket",
			    "comm=\"redis-server\",le=\"1e-05\""), 0);
	/* No empty series: redis-server never sent, so no sent series for it. */
	cr_assert_eq(count_of(&p, "lotrace_sent", "redis-server"), 0);
	cr_assert_eq(count_of(&p, "lotrace_send_duration", "redis-server"), 0);
	cr_assert_eq(p.help, p.type);
	cr_assert_eq(sum_of(&p, "lotrace_backend_info", "backend=\"tracepoint\",lo_attach=\"tcx\""), 1);
	cr_assert_eq(sum_of(&p, "lotrace_events_processed_total", NULL), 7);
	/* The last line is the write time: the mark of a complete file. */
	const char *last = strrchr(text, '\n');
	while (last > text && last[-1] != '\n')
		last--;
	cr_assert(!strncmp(last, "lotrace_last_write_timestamp_seconds 1700000000.500\n", 52) ||
		  strstr(text, "\nlotrace_last_write_timestamp_seconds 1700000000.500\n"));
	free(p.s);
	free(text);
	exporter_free(x);
	free(f);
}

struct truth {
	uint64_t messages[LT_TRANSPORT_COUNT][LT_DIRECTION_COUNT];
	uint64_t bytes[LT_TRANSPORT_COUNT][LT_DIRECTION_COUNT];
	uint64_t events[LT_TRANSPORT_COUNT][LT_DIRECTION_COUNT];
};

static void check_totals(const struct parsed *p, const struct truth *t, unsigned max_series)
{
	static const char *const counters[2][2] = {
		[LT_SEND] = { "lotrace_sent_messages_total", "lotrace_sent_bytes_total" },
		[LT_RECV] = { "lotrace_received_messages_total", "lotrace_received_bytes_total" },
	};
	for (int tr = 0; tr < LT_TRANSPORT_COUNT; tr++) {
		char want[64];
		snprintf(want, sizeof(want), "transport=\"%s\"", lt_transport_name(tr));
		for (int d = 0; d < LT_DIRECTION_COUNT; d++) {
			cr_assert_eq(sum_of(p, counters[d][0], want), t->messages[tr][d], "%s %s", want,
				     counters[d][0]);
			cr_assert_eq(sum_of(p, counters[d][1], want), t->bytes[tr][d], "%s %s", want,
				     counters[d][1]);
			/* every series one per label value: at most max_series + "other" */
			cr_assert_leq(count_of(p, counters[d][0], want), max_series + 1);
		}
		cr_assert_eq(sum_of(p, "lotrace_message_latency_seconds_count", want),
			     t->events[tr][LT_RECV]);
		cr_assert_eq(sum_of(p, "lotrace_send_duration_seconds_count", want),
			     t->events[tr][LT_SEND]);
	}
}

/* Counters of a label set present in both renders never go down. */
static void check_monotonic(const struct parsed *before, const struct parsed *after)
{
	for (size_t i = 0; i < after->n; i++) {
		const struct sample *a = &after->s[i];
		if (!strstr(a->name, "_total") && !strstr(a->name, "_bucket") &&
		    !strstr(a->name, "_count"))
			continue;
		for (size_t j = 0; j < before->n; j++) {
			const struct sample *b = &before->s[j];
			if (!strcmp(a->name, b->name) && !strcmp(a->labels, b->labels))
				cr_assert_geq(a->value, b->value, "%s{%s} went down", a->name, a->labels);
		}
	}
}

/* Deterministic xorshift so a failure reproduces. */
static uint64_t rng = 0x9e3779b97f4a7c15ULL;
static uint64_t rnd(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

Test(exporter, folding_keeps_series_bounded_and_totals_exact, .timeout = 60)
{
	memset(kernel, 0, sizeof(kernel));
	struct fake *f = fake_new();
	const unsigned max = 5;
	struct exporter *x = fake_exporter(f, LT_BY_COMM, max, 0);
	struct truth t = { 0 };
	struct parsed prev = { 0 };

	/* 20 rounds: 500 short-lived processes with distinct names, a few long-lived big ones. */
	uint32_t next_pid = 100;
	for (int round = 0; round < 20; round++) {
		for (int i = 0; i < 25; i++) {
			uint32_t pid = next_pid++;
			char comm[16];
			snprintf(comm, sizeof(comm), "short-%u", pid);
			fake_spawn(f, pid, comm, NULL);
			int tr = (int)(rnd() % LT_TRANSPORT_COUNT);
			uint64_t m = 1 + rnd() % 20, b = m * (1 + rnd() % 1000);
			ksend(pid, tr, LT_SEND, m, b);
			ksend(pid, tr, LT_RECV, m, b);
			t.messages[tr][LT_SEND] += m, t.bytes[tr][LT_SEND] += b;
			t.messages[tr][LT_RECV] += m, t.bytes[tr][LT_RECV] += b;
			for (uint64_t k = 0; k < m; k++) {
				if (k % 2) { /* send duration apart, or riding along */
					event(x, pid, tr, LT_EV_MESSAGE, rnd() % 100000000);
					event(x, pid, tr, LT_EV_SEND_DURATION, rnd() % 100000);
				} else {
					struct lt_event e = { .value_ns = rnd() % 100000000, .tgid = pid,
							      .peer_tgid = pid, .send_ns = 1 + rnd() % 100000,
							      .tag = tag_of(pid), .peer_tag = tag_of(pid),
							      .kind = LT_EV_MESSAGE, .transport = (uint8_t)tr };
					exporter_event(x, &e);
				}
			}
			t.events[tr][LT_RECV] += m;
			t.events[tr][LT_SEND] += m;
			if (rnd() % 2) /* some exit before lotrace ever saw them alive */
				f->alive[pid] = false;
		}
		/* Big talkers that appear late must earn their own series. */
		for (uint32_t big = 10; big < 10 + (uint32_t)round / 4; big++) {
			if (!f->alive[big]) {
				char comm[16];
				snprintf(comm, sizeof(comm), "big-%u", big);
				fake_spawn(f, big, comm, NULL);
			}
			ksend(big, LT_UNIX_STREAM, LT_SEND, 100, 1000000);
			t.messages[LT_UNIX_STREAM][LT_SEND] += 100;
			t.bytes[LT_UNIX_STREAM][LT_SEND] += 1000000;
		}
		for (uint32_t pid = 100; pid < next_pid; pid++)
			if (rnd() % 3 == 0)
				f->alive[pid] = false;
		scan(x, round);
		char *text = render(x);
		struct parsed p = parse(text);
		check_totals(&p, &t, max);
		if (prev.s)
			check_monotonic(&prev, &p);
		free(prev.s);
		prev = p;
		free(text);
	}
	/* The big talkers own series now; the short-lived ones are in "other". */
	cr_assert_gt(sum_of(&prev, "lotrace_sent_bytes_total", "comm=\"big-10\""), 0);
	cr_assert_gt(sum_of(&prev, "lotrace_folded_identities", "transport=\"unix_stream\""), 0);
	cr_assert_gt(sum_of(&prev, "lotrace_sent_bytes_total", "comm=\"other\""), 0);
	free(prev.s);
	exporter_free(x);
	free(f);
}

Test(exporter, idle_labels_expire_into_other)
{
	memset(kernel, 0, sizeof(kernel));
	struct fake *f = fake_new();
	struct exporter *x = fake_exporter(f, LT_BY_COMM, 5, 60);
	fake_spawn(f, 20, "cron-job", NULL);
	fake_spawn(f, 21, "daemon", NULL);
	ksend(20, LT_UNIX_DGRAM, LT_SEND, 4, 40);
	ksend(21, LT_UNIX_DGRAM, LT_SEND, 1, 10);
	scan(x, 0);
	f->alive[20] = false;
	scan(x, 30);
	ksend(21, LT_UNIX_DGRAM, LT_SEND, 1, 10);
	scan(x, 61);
	char *text = render(x);
	struct parsed p = parse(text);
	cr_assert_eq(count_of(&p, "lotrace_sent_bytes_total", "cron-job"), 0, "expired");
	cr_assert_eq(sum_of(&p, "lotrace_sent_bytes_total", "comm=\"other\""), 40);
	cr_assert_eq(sum_of(&p, "lotrace_sent_bytes_total", "comm=\"daemon\""), 20);
	cr_assert_eq(sum_of(&p, "lotrace_identities", "unix_dgram"), 1);
	free(p.s);
	free(text);
	exporter_free(x);
	free(f);
}

Test(exporter, a_process_named_other_and_a_reused_pid)
{
	memset(kernel, 0, sizeof(kernel));
	struct fake *f = fake_new();
	struct exporter *x = fake_exporter(f, LT_BY_COMM, 5, 0);
	fake_spawn(f, 30, "other", NULL);
	ksend(30, LT_TCP, LT_SEND, 1, 7);
	fake_spawn(f, 31, "first", NULL);
	ksend(31, LT_TCP, LT_SEND, 1, 5);
	scan(x, 0);
	/*
	 * pid 31 exits and is reused by "second", which receives: the kernel keeps
	 * the old row under the old start tag and counts the new process apart.
	 */
	fake_spawn(f, 31, "second", NULL);
	ksend(31, LT_TCP, LT_RECV, 1, 6);
	scan(x, 1);
	cr_assert_not(kernel[31][LT_TCP][LT_SEND].present, "the old process's row is taken");
	cr_assert(kernel[31][LT_TCP][LT_RECV].present, "the new process's row stays");
	char *text = render(x);
	struct parsed p = parse(text);
	cr_assert_eq(sum_of(&p, "lotrace_sent_bytes_total", "comm=\"other\""), 7);
	cr_assert_eq(count_of(&p, "lotrace_sent_bytes_total", "comm=\"other\""), 1, "one series");
	cr_assert_eq(sum_of(&p, "lotrace_sent_bytes_total", "comm=\"first\""), 5);
	cr_assert_eq(count_of(&p, "lotrace_sent_bytes_total", "comm=\"second\""), 0);
	cr_assert_eq(sum_of(&p, "lotrace_received_bytes_total", "comm=\"second\""), 6);
	cr_assert_eq(count_of(&p, "lotrace_received_bytes_total", "comm=\"first\""), 0);
	free(p.s);
	free(text);
	exporter_free(x);
	free(f);
}

Test(exporter, labels_by_pid_cgroup_and_unit)
{
	static const struct {
		enum lt_export_by by;
		const char *want;
	} cases[] = {
		{ LT_BY_PID, "pid=\"40\"" },
		{ LT_BY_CGROUP, "cgroup=\"/system.slice/nginx.service\"" },
		{ LT_BY_UNIT, "unit=\"nginx.service\"" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		memset(kernel, 0, sizeof(kernel));
		struct fake *f = fake_new();
		struct exporter *x = fake_exporter(f, cases[i].by, 5, 0);
		fake_spawn(f, 40, "nginx", "/system.slice/nginx.service");
		ksend(40, LT_TCP, LT_RECV, 2, 20);
		/* Gone before lotrace saw it, no kernel record: its cgroup is unknown. */
		ksend(41, LT_TCP, LT_RECV, 1, 1);
		/* Gone too, but the kernel recorded its cgroup with its counters. */
		snprintf(f->kcgroup[42], sizeof(f->kcgroup[42]), "/system.slice/nginx.service");
		ksend(42, LT_TCP, LT_RECV, 1, 300);
		scan(x, 0);
		char *text = render(x);
		struct parsed p = parse(text);
		cr_assert_eq(sum_of(&p, "lotrace_received_bytes_total", cases[i].want),
			     cases[i].by == LT_BY_PID ? 20 : 320, "%s", text);
		if (cases[i].by != LT_BY_PID)
			cr_assert_eq(sum_of(&p, "lotrace_received_bytes_total", "\"unknown\""), 1);
		free(p.s);
		free(text);
		exporter_free(x);
		free(f);
	}
}

Test(exporter, max_series_zero_is_per_transport_only)
{
	memset(kernel, 0, sizeof(kernel));
	struct fake *f = fake_new();
	struct exporter *x = fake_exporter(f, LT_BY_COMM, 0, 0);
	fake_spawn(f, 50, "a", NULL);
	fake_spawn(f, 51, "b", NULL);
	ksend(50, LT_UDP, LT_SEND, 1, 100);
	ksend(51, LT_UDP, LT_SEND, 1, 200);
	scan(x, 0);
	scan(x, 1);
	char *text = render(x);
	struct parsed p = parse(text);
	cr_assert_eq(count_of(&p, "lotrace_sent_bytes_total", NULL), 1);
	cr_assert_eq(sum_of(&p, "lotrace_sent_bytes_total", "transport=\"udp\",comm=\"other\""), 300);
	free(p.s);
	free(text);
	exporter_free(x);
	free(f);
}

Test(exporter, lo_entries_of_exited_processes_are_taken_once_idle)
{
	struct fake *f = fake_new();
	struct exporter *x = fake_exporter(f, LT_BY_COMM, 5, 0);
	struct lt_lo_key k = { 60, LT_L4_TCP };
	exporter_scan_begin(x);
	cr_assert_not(exporter_lo(x, &k, 3, 300), "gone, but still moving: keep");
	exporter_scan_end(x, 0);
	exporter_scan_begin(x);
	cr_assert(exporter_lo(x, &k, 3, 300), "gone and idle: take");
	exporter_lo_taken(x, &k, 3, 300);
	exporter_scan_end(x, 1);
	struct lt_lo_key none = { 0, LT_L4_UDP };
	exporter_scan_begin(x);
	cr_assert_not(exporter_lo(x, &none, 2, 100), "no owner: never taken");
	exporter_scan_end(x, 2);
	cr_assert_eq(exporter_tasks(x), 1, "pid 60 forgotten, the owner-less entry kept");
	char *text = render(x);
	struct parsed p = parse(text);
	cr_assert_eq(sum_of(&p, "lotrace_lo_packets_total", "protocol=\"tcp\""), 3);
	cr_assert_eq(sum_of(&p, "lotrace_lo_bytes_total", "protocol=\"tcp\""), 300);
	cr_assert_eq(sum_of(&p, "lotrace_lo_packets_total", "protocol=\"udp\""), 2);
	free(p.s);
	free(text);
	exporter_free(x);
	free(f);
}

/* Own series (tracked minus folded) of a transport, and how many of them the file shows. */
static void check_no_hidden_series(const struct parsed *p, const char *transport)
{
	char want[64], tr[64];
	snprintf(want, sizeof(want), "transport=\"%s\"", transport);
	snprintf(tr, sizeof(tr), "transport=\"%s\",", transport);
	double own = sum_of(p, "lotrace_identities", want) - sum_of(p, "lotrace_folded_identities", want);
	size_t shown = 0;
	for (size_t i = 0; i < p->n; i++) {
		const struct sample *s = &p->s[i];
		bool traffic = !strcmp(s->name, "lotrace_sent_bytes_total") ||
			       !strcmp(s->name, "lotrace_received_bytes_total");
		if (traffic && strstr(s->labels, tr) && !strstr(s->labels, "comm=\"other\""))
			shown++;
	}
	/* Every label holding a place shows at least one counter (one direction or both). */
	cr_assert_leq(own, (double)shown, "%g own series on %s, %zu counters shown", own, transport, shown);
}

Test(exporter, the_biggest_talker_gets_its_own_series)
{
	memset(kernel, 0, sizeof(kernel));
	struct fake *f = fake_new();
	struct exporter *x = fake_exporter(f, LT_BY_COMM, 2, 3600);
	struct truth t = { 0 };
	struct parsed prev = { 0 };
	const int tr = LT_UNIX_STREAM;
	fake_spawn(f, 70, "small-a", NULL);
	fake_spawn(f, 71, "small-b", NULL);
	fake_spawn(f, 72, "big", NULL);
	/* scan 0: two small talkers take the two places; scan 1: "big" starts small, so folded. */
	static const struct {
		uint32_t pid;
		uint64_t bytes;
		bool exits;
	} plan[][3] = {
		{ { 70, 100, false }, { 71, 100, false } },
		{ { 72, 10, false } },
		/* then sends 2.5 MB: it must show them under its name */
		{ { 72, 2500000, false }, { 70, 5, false } },
		/* a process that sends 5 MB and exits within one interval */
		{ { 73, 5000000, true } },
		{ { 72, 1000, false }, { 73, 0, false } },
	};
	fake_spawn(f, 73, "burst", NULL);
	for (int scan_no = 0; scan_no < 5; scan_no++) {
		for (int i = 0; i < 3 && plan[scan_no][i].pid; i++) {
			if (!plan[scan_no][i].bytes)
				continue;
			ksend(plan[scan_no][i].pid, tr, LT_SEND, 1, plan[scan_no][i].bytes);
			event(x, plan[scan_no][i].pid, tr, LT_EV_SEND_DURATION, 5000);
			t.messages[tr][LT_SEND]++;
			t.bytes[tr][LT_SEND] += plan[scan_no][i].bytes;
			t.events[tr][LT_SEND]++;
			if (plan[scan_no][i].exits)
				f->alive[plan[scan_no][i].pid] = false;
		}
		scan(x, scan_no);
		char *text = render(x);
		struct parsed p = parse(text);
		check_totals(&p, &t, 2);
		check_no_hidden_series(&p, "unix_stream");
		if (prev.s)
			check_monotonic(&prev, &p);
		if (scan_no == 1)
			cr_assert_eq(sum_of(&p, "lotrace_sent_bytes_total", "comm=\"other\""), 10,
				     "big's first 10 bytes are folded:\n%s", text);
		if (scan_no == 2) {
			cr_assert_eq(sum_of(&p, "lotrace_sent_bytes_total", "comm=\"big\""), 2500000,
				     "promoted with the traffic that earned it:\n%s", text);
			cr_assert_eq(sum_of(&p, "lotrace_send_duration_seconds_count", "comm=\"big\""), 1);
		}
		if (scan_no == 3)
			cr_assert_eq(sum_of(&p, "lotrace_sent_bytes_total", "comm=\"burst\""), 5000000,
				     "a big sender gone within one interval is named:\n%s", text);
		free(prev.s);
		prev = p;
		free(text);
	}
	cr_assert_eq(sum_of(&prev, "lotrace_sent_bytes_total", "comm=\"big\""), 2501000);
	cr_assert_eq(sum_of(&prev, "lotrace_sent_bytes_total", "comm=\"burst\""), 5000000);
	free(prev.s);
	exporter_free(x);
	free(f);
}

Test(exporter, the_label_table_is_bounded_and_totals_stay_exact, .timeout = 120)
{
	memset(kernel, 0, sizeof(kernel));
	struct fake *f = fake_new();
	const unsigned max = 5;
	struct exporter *x = fake_exporter(f, LT_BY_COMM, max, 0); /* idle expiry never */
	const size_t limit = exp_label_limit(max);
	struct truth t = { 0 };
	struct parsed prev = { 0 };
	size_t most = 0;
	fake_spawn(f, 10, "known", NULL);
	uint64_t known_bytes = 0;
	/* 150 scans of 1000 short-lived processes, each with a name never seen before. */
	for (int round = 0; round < 150; round++) {
		for (uint32_t i = 0; i < 1000; i++) {
			uint32_t pid = 100 + i;
			char comm[16];
			snprintf(comm, sizeof(comm), "n%d-%u", round, i);
			fake_spawn(f, pid, comm, NULL);
			int tr = (int)(rnd() % LT_TRANSPORT_COUNT);
			uint64_t b = 1 + rnd() % 100;
			ksend(pid, tr, LT_SEND, 1, b);
			t.messages[tr][LT_SEND]++;
			t.bytes[tr][LT_SEND] += b;
			event(x, pid, tr, LT_EV_MESSAGE, 1000 + rnd() % 1000000);
			t.events[tr][LT_RECV]++;
			f->alive[pid] = false; /* gone before the scan: its entry is taken */
		}
		ksend(10, LT_TCP, LT_SEND, 10, 100000);
		known_bytes += 100000;
		t.messages[LT_TCP][LT_SEND] += 10;
		t.bytes[LT_TCP][LT_SEND] += 100000;
		scan(x, round);
		size_t labels = exporter_labels(x);
		cr_assert_leq(labels, limit, "round %d: %zu labels tracked, limit %zu", round, labels, limit);
		most = labels > most ? labels : most;
		cr_assert_leq(exporter_tasks(x), 1002, "exited processes are forgotten");
		if (round % 10 == 9 || round == 149) { /* rendering is the slow part */
			char *text = render(x);
			struct parsed p = parse(text);
			check_totals(&p, &t, max);
			double tracked = sum_of(&p, "lotrace_identities", NULL);
			cr_assert_leq(tracked, (double)limit, "lotrace_identities %g", tracked);
			if (prev.s)
				check_monotonic(&prev, &p);
			free(prev.s);
			prev = p;
			free(text);
		}
	}
	cr_assert_eq(most, limit, "150000 names filled the table (%zu of %zu)", most, limit);
	cr_assert_eq(sum_of(&prev, "lotrace_sent_bytes_total", "comm=\"known\""), (double)known_bytes,
		     "the big talker keeps its series through the churn");
	free(prev.s);
	exporter_free(x);
	free(f);
}

/* ---- cgroup -> unit ---- */

Test(procid, unit_of_cgroup_paths)
{
	static const char *const cases[][2] = {
		{ "/system.slice/nginx.service", "nginx.service" },
		{ "/user.slice/user-1000.slice/session-2.scope", "session-2.scope" },
		{ "/user.slice/user-1000.slice/user@1000.service/app.slice/dbus.service", "dbus.service" },
		{ "/system.slice/docker-0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef.scope",
		  "container:0123456789ab" },
		{ "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1.slice/"
		  "cri-containerd-fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210.scope",
		  "container:fedcba987654" },
		{ "/docker/0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
		  "container:0123456789ab" },
		{ "/init.scope", "init.scope" },
		{ "/", "-.slice" },
		{ "", "-.slice" },
		{ "/lotrace-test/leaf", "leaf" },
		{ "/system.slice/foo.service/", "foo.service" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char out[128];
		procid_unit_of(cases[i][0], out, sizeof(out));
		cr_assert_str_eq(out, cases[i][1], "%s", cases[i][0]);
	}
}

Test(procid, this_process)
{
	uint64_t start;
	char buf[256];
	cr_assert_eq(procid_start((uint32_t)getpid(), &start), 0);
	cr_assert_gt(start, 0);
	cr_assert_eq(procid_comm((uint32_t)getpid(), buf, sizeof(buf)), 0);
	cr_assert_str_eq(buf, "test_export");
	cr_assert_eq(procid_cgroup((uint32_t)getpid(), buf, sizeof(buf)), 0);
	cr_assert_eq(buf[0], '/');
	cr_assert_eq(procid_start(4194304 + 1, &start), -1, "no such pid");
}

/* ---- the atomic file ---- */

static char tmpdir[64];

static void make_tmpdir(void)
{
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/lt-textfile-XXXXXX");
	cr_assert_not_null(mkdtemp(tmpdir));
}

static void remove_tmpdir(void)
{
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
	cr_assert_eq(system(cmd), 0);
}

static char *slurp(const char *path)
{
	static char buf[4096];
	FILE *f = fopen(path, "r");
	if (!f)
		return NULL;
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	buf[n] = 0;
	fclose(f);
	return buf;
}

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	cr_assert_not_null(f, "%s", path);
	fputs(text, f);
	fclose(f);
}

Test(textfile, replaces_the_file_and_a_symlink_in_its_place, .init = make_tmpdir,
     .fini = remove_tmpdir)
{
	struct textfile tf;
	char why[256], path[128], target[128];
	snprintf(target, sizeof(target), "%s.target", tmpdir);
	write_file(target, "precious\n");
	snprintf(path, sizeof(path), "%s/lotrace.prom", tmpdir);
	cr_assert_eq(symlink(target, path), 0);
	cr_assert_eq(textfile_open(&tf, tmpdir, "lotrace.prom", why, sizeof(why)), 0, "%s", why);
	cr_assert_eq(textfile_write(&tf, "a 1\n", 4), 0);
	struct stat st;
	cr_assert_eq(lstat(path, &st), 0);
	cr_assert(S_ISREG(st.st_mode), "the symlink itself was replaced");
	cr_assert_eq(st.st_mode & 0777, 0644);
	cr_assert_str_eq(slurp(path), "a 1\n");
	cr_assert_str_eq(slurp(target), "precious\n", "the symlink's target is untouched");
	cr_assert_eq(textfile_write(&tf, "a 2\n", 4), 0);
	cr_assert_str_eq(slurp(path), "a 2\n");
	cr_assert_eq(textfile_remove(&tf), 0);
	cr_assert_neq(access(path, F_OK), 0);
	textfile_close(&tf);
	unlink(target);
}

static uint64_t fixed_random_calls;
static uint64_t fixed_random(void)
{
	/* First name: the planted one; then a fresh one. */
	return fixed_random_calls++ == 0 ? 0xabc : 0xdef;
}

Test(textfile, a_symlink_named_like_the_temporary_file_is_not_followed, .init = make_tmpdir,
     .fini = remove_tmpdir)
{
	struct textfile tf;
	char why[256], planted[128], target[128], path[128];
	snprintf(target, sizeof(target), "%s.target", tmpdir);
	write_file(target, "precious\n");
	cr_assert_eq(textfile_open(&tf, tmpdir, "lotrace.prom", why, sizeof(why)), 0, "%s", why);
	snprintf(planted, sizeof(planted), "%s/.lotrace.prom.tmp.000000000abc", tmpdir);
	cr_assert_eq(symlink(target, planted), 0);
	fixed_random_calls = 0;
	textfile_random = fixed_random;
	cr_assert_eq(textfile_write(&tf, "b 1\n", 4), 0);
	cr_assert_eq(fixed_random_calls, 2, "the taken name was skipped");
	snprintf(path, sizeof(path), "%s/lotrace.prom", tmpdir);
	cr_assert_str_eq(slurp(path), "b 1\n");
	cr_assert_str_eq(slurp(target), "precious\n");
	struct stat st;
	cr_assert_eq(lstat(planted, &st), 0);
	cr_assert(S_ISLNK(st.st_mode), "someone else's symlink is left alone");
	textfile_close(&tf);
	unlink(target);
}

Test(textfile, bad_directories_are_refused_at_open, .init = make_tmpdir, .fini = remove_tmpdir)
{
	struct textfile tf;
	char why[256], path[128];
	cr_assert_eq(textfile_open(&tf, "/nonexistent/lotrace", "lotrace.prom", why, sizeof(why)),
		     -1);
	cr_assert(strstr(why, "No such file or directory"), "%s", why);
	snprintf(path, sizeof(path), "%s/file", tmpdir);
	write_file(path, "x");
	cr_assert_eq(textfile_open(&tf, path, "lotrace.prom", why, sizeof(why)), -1);
	cr_assert(strstr(why, "not a directory"), "%s", why);
	snprintf(path, sizeof(path), "%s/link", tmpdir);
	cr_assert_eq(symlink(tmpdir, path), 0);
	cr_assert_eq(textfile_open(&tf, path, "lotrace.prom", why, sizeof(why)), -1);
	cr_assert(strstr(why, "symlink"), "%s", why);
}

Test(textfile, stale_temporary_files_are_removed, .init = make_tmpdir, .fini = remove_tmpdir)
{
	struct textfile tf;
	char why[256], stale[128];
	snprintf(stale, sizeof(stale), "%s/.lotrace.prom.tmp.123456789abc", tmpdir);
	write_file(stale, "half a fi");
	cr_assert_eq(textfile_open(&tf, tmpdir, "lotrace.prom", why, sizeof(why)), 0, "%s", why);
	cr_assert_neq(access(stale, F_OK), 0);
	textfile_close(&tf);
}

/* ---- flags ---- */

static enum lt_parse_result parse_args(const char *const *argv, struct lt_opts *o, char *err,
				       size_t errlen)
{
	int argc = 0;
	while (argv[argc])
		argc++;
	FILE *e = fmemopen(err, errlen, "w");
	FILE *out = fopen("/dev/null", "w");
	enum lt_parse_result r = lt_parse_args(argc, (char **)argv, o, out, e);
	fclose(e);
	fclose(out);
	return r;
}

Test(flags, export_defaults_and_values)
{
	struct lt_opts o;
	char err[512] = "";
	const char *const a[] = { "lotrace", "export", "--textfile-dir", "/tmp", NULL };
	cr_assert_eq(parse_args(a, &o, err, sizeof(err)), LT_PARSE_OK, "%s", err);
	cr_assert_eq(o.command, LT_CMD_EXPORT);
	cr_assert_str_eq(o.export.textfile_dir, "/tmp");
	cr_assert_eq(o.export.interval_s, 15);
	cr_assert_eq(o.export.by, LT_BY_COMM);
	cr_assert_eq(o.export.max_series, 5);
	cr_assert_eq(o.export.idle_expiry_s, 3600);
	const char *const b[] = { "lotrace", "export", "--textfile-dir=/x", "--interval", "0.5",
				  "--by", "unit", "--max-series", "0", "--idle-expiry", "0",
				  "--lo-attach", "none", "--ring-buffer-size", "1M", "-q", NULL };
	cr_assert_eq(parse_args(b, &o, err, sizeof(err)), LT_PARSE_OK, "%s", err);
	cr_assert_eq(o.export.interval_s, 0.5);
	cr_assert_eq(o.export.by, LT_BY_UNIT);
	cr_assert_eq(o.export.max_series, 0);
	cr_assert_eq(o.export.idle_expiry_s, 0);
	cr_assert_eq(o.lo_mode, LT_LO_NONE);
	cr_assert_eq(o.ring_bytes, 1u << 20);
	cr_assert(o.quiet);
}

Test(flags, export_bad_values_name_the_flag)
{
	static const char *const cases[][3] = {
		{ "--interval", "0", "--interval" },
		{ "--interval", "abc", "--interval" },
		{ "--by", "user", "--by" },
		{ "--max-series", "-1", "--max-series" },
		{ "--max-series", "5x", "--max-series" },
		{ "--idle-expiry", "soon", "--idle-expiry" },
		{ "--json", NULL, "--json" },
		{ "--pid", "1", "--pid" },
		{ "--bogus", NULL, "--bogus" },
		{ "--backend", "nope", "--backend" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct lt_opts o;
		char err[512] = "";
		const char *a[8] = { "lotrace", "export", "--textfile-dir", "/tmp", cases[i][0],
				     cases[i][1], NULL };
		cr_assert_eq(parse_args(a, &o, err, sizeof(err)), LT_PARSE_ERROR, "%s", cases[i][0]);
		cr_assert(strstr(err, cases[i][2]), "error names the flag: %s", err);
		cr_assert(strstr(err, "lotrace export --help"), "%s", err);
		cr_assert_eq(strchr(err, '\n') - err + 1 + strlen("Try 'lotrace export --help'.\n"),
			     strlen(err), "one line and the hint: %s", err);
	}
	struct lt_opts o;
	char err[512] = "";
	const char *const a[] = { "lotrace", "export", NULL };
	cr_assert_eq(parse_args(a, &o, err, sizeof(err)), LT_PARSE_ERROR);
	cr_assert(strstr(err, "--textfile-dir") && strstr(err, "required"), "%s", err);
}

Test(flags, export_help_teaches)
{
	for (int m = 0; m < PROM_METRIC_COUNT; m++)
		cr_assert(strstr(lt_export_usage, prom_metric_name(m)), "help names %s",
			  prom_metric_name(m));
	cr_assert(strstr(lt_export_usage, "--collector.textfile.directory"));
	cr_assert(strstr(lt_export_usage, "--max-series"));
	cr_assert(strstr(lt_export_usage, "Cardinality"));
}

/*
 * The kernel's LRU evicts a row between two scans (its last increments are
 * lost to the rows) and the row comes back from 0: the series never goes
 * down, the lost counts go to "other" and lotrace_evicted_*, and every
 * metric's sum stays the kernel's exact total.
 */
Test(exporter, evicted_rows_fold_into_other_and_series_stay_monotonic)
{
	memset(kernel, 0, sizeof(kernel));
	struct fake *f = fake_new();
	struct exporter *x = fake_exporter(f, LT_BY_COMM, 5, 0);
	struct lt_count tot[LT_TOT_COUNT] = { { 0, 0 } };
	struct lt_count *udp_send = &tot[LT_TOT_PROC_BASE + LT_UDP * LT_DIRECTION_COUNT + LT_SEND];
	struct kentry *row = &kernel[70][LT_UDP][LT_SEND];
	struct parsed prev = { 0 };
	/* rows: what the kernel row holds at each scan; lost: counted, then evicted unread. */
	static const struct {
		uint64_t lost, row_msgs;
		double talker, other;
	} steps[] = {
		{ 0, 10, 10, 0 }, /* first scan: 10 in the row */
		{ 5, 3, 13, 5 },  /* +5, evicted; back from 0 with 3 (below the last value) */
		{ 4, 12, 22, 12 }, /* +4, evicted; back with 12 (above 3: 3 of them look old) */
		{ 0, 15, 25, 12 }, /* no eviction */
	};
	fake_spawn(f, 70, "talker", NULL);
	for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
		udp_send->n += steps[i].lost;
		udp_send->bytes += steps[i].lost * 100;
		uint64_t fresh = i && steps[i].lost ? steps[i].row_msgs :
						      steps[i].row_msgs - row->messages;
		if (i && steps[i].lost)
			memset(row, 0, sizeof(*row)); /* evicted: nobody took it */
		ksend(70, LT_UDP, LT_SEND, fresh, fresh * 100);
		udp_send->n += fresh;
		udp_send->bytes += fresh * 100;
		scan_totals(x, (double)i, tot);
		char *text = render(x);
		struct parsed p = parse(text);
		cr_assert_eq(sum_of(&p, "lotrace_sent_messages_total", "comm=\"talker\""),
			     steps[i].talker, "step %zu: %s", i, text);
		cr_assert_eq(sum_of(&p, "lotrace_sent_messages_total", "comm=\"other\""),
			     steps[i].other, "step %zu", i);
		cr_assert_eq(sum_of(&p, "lotrace_sent_messages_total", NULL), (double)udp_send->n);
		cr_assert_eq(sum_of(&p, "lotrace_sent_bytes_total", NULL), (double)udp_send->bytes);
		cr_assert_eq(sum_of(&p, "lotrace_evicted_messages_total",
				    "transport=\"udp\",direction=\"send\""), steps[i].other);
		cr_assert_eq(sum_of(&p, "lotrace_evicted_messages_total", NULL), steps[i].other);
		if (prev.s)
			check_monotonic(&prev, &p);
		free(prev.s);
		prev = p;
		free(text);
	}
	free(prev.s);
	exporter_free(x);
	free(f);
}
