#include "report.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include "kmaps.h"
#include "names.h"
#include "procid.h"

static bool filtering(const struct report_options *f)
{
	return f->npids || f->ncomms || f->nunits || f->ncgroups;
}

/* name is one of the filter's comms, as the kernel has it or as the outputs show it. */
static bool comm_wanted(const char *name, const struct report_options *f)
{
	/* The name as the table shows it (ev\x0ail for "ev\nil") matches too. */
	char clean[LT_NAME_CLEAN_LEN(LOTRACE_COMM_LEN)];
	lt_name_clean(clean, sizeof(clean), name);
	for (int i = 0; i < f->ncomms; i++)
		if (!strcmp(name, f->comms[i]) || !strcmp(clean, f->comms[i]))
			return true;
	return false;
}

bool report_proc_wanted(const struct report_options *f, uint32_t tgid, const char *comm)
{
	if (f->npids) {
		bool found = false;
		for (int i = 0; i < f->npids && !found; i++)
			found = (uint32_t)f->pids[i] == tgid;
		if (!found)
			return false;
	}
	return !f->ncomms || comm_wanted(comm, f);
}

bool report_cgroup_wanted(const struct report_options *f, const char *cgroup)
{
	if (!f->nunits && !f->ncgroups)
		return true;
	if (!cgroup)
		return false;
	if (f->nunits) {
		char unit[KMAP_CGROUP_PATH_LEN];
		bool found = false;
		procid_unit_of(cgroup, unit, sizeof(unit));
		for (int i = 0; i < f->nunits && !found; i++)
			found = !strcmp(unit, f->units[i]);
		if (!found)
			return false;
	}
	for (int i = 0; i < f->ncgroups; i++) {
		const char *want = f->cgroups[i];
		size_t n = strlen(want);
		while (n > 1 && want[n - 1] == '/')
			n--; /* "/system.slice/" is "/system.slice" */
		if (!strncmp(cgroup, want, n) && (n == 1 || cgroup[n] == '/' || !cgroup[n]))
			return true;
	}
	return !f->ncgroups;
}

/* comm: the process's name, or NULL to look it up as (tgid, tag). */
static bool proc_wanted(const struct agg *a, uint32_t tgid, uint32_t tag, const char *comm,
			const struct report_options *f)
{
	/* The name and cgroup are looked up only when a filter needs them. */
	return report_proc_wanted(f, tgid, comm || !f->ncomms ? comm : agg_comm(a, tgid, tag)) &&
	       (!(f->nunits || f->ncgroups) || report_cgroup_wanted(f, agg_cgroup_of(a, tgid, tag)));
}

bool report_agg_proc_wanted(const struct agg *a, const struct report_options *f, uint32_t tgid,
			    uint32_t tag)
{
	return proc_wanted(a, tgid, tag, NULL, f);
}

bool report_transport_wanted(const struct report_options *f, int transport)
{
	return !f->transports || (f->transports & (1u << transport));
}

static bool pair_wanted(const struct agg *a, const struct agg_pair *p, const struct report_options *f)
{
	return report_transport_wanted(f, p->transport) &&
	       (proc_wanted(a, p->sender, p->sender_tag, NULL, f) ||
		proc_wanted(a, p->receiver, p->receiver_tag, NULL, f));
}

/* lo per protocol: the rows plus what was folded, i.e. the kernel's exact totals. */
static void lo_sums(const struct agg *a, uint64_t pk[LT_L4_COUNT], uint64_t by[LT_L4_COUNT])
{
	for (int l = 0; l < LT_L4_COUNT; l++) {
		struct lt_count f = agg_folded_lo(a, l);
		pk[l] = f.n;
		by[l] = f.bytes;
	}
	for (size_t i = 0; i < a->nlo; i++) {
		pk[a->lo[i].l4 % LT_L4_COUNT] += a->lo[i].packets;
		by[a->lo[i].l4 % LT_L4_COUNT] += a->lo[i].bytes;
	}
}

/*
 * Counts that are in the totals above but in no row: the kernel's LRU maps
 * evicted those rows (idle processes, to make room for active ones).  One
 * line, without its newline; nothing when nothing was folded.
 */
static void folded_footer(FILE *out, const struct agg *a)
{
	const char *sep = "folded (rows evicted from the kernel maps; in no row above):";
	for (int t = 0; t < LT_TRANSPORT_COUNT; t++) {
		for (int d = 0; d < LT_DIRECTION_COUNT; d++) {
			struct lt_count f = agg_folded_proc(a, t, d);
			if (!f.n && !f.bytes)
				continue;
			fprintf(out, "%s %s %s %llu msgs %llu bytes", sep, lt_transport_name(t),
				lt_direction_name(d), (unsigned long long)f.n,
				(unsigned long long)f.bytes);
			sep = ",";
		}
	}
	for (int t = 0; t < LT_TRANSPORT_COUNT; t++) {
		struct lt_count f = agg_folded_pair(a, t);
		if (!f.n && !f.bytes)
			continue;
		fprintf(out, "%s pairs %s %llu msgs %llu bytes", sep, lt_transport_name(t),
			(unsigned long long)f.n, (unsigned long long)f.bytes);
		sep = ",";
	}
	for (int l = 0; l < LT_L4_COUNT; l++) {
		struct lt_count f = agg_folded_lo(a, l);
		if (!f.n && !f.bytes)
			continue;
		fprintf(out, "%s lo %s %llu packets %llu bytes", sep, lt_l4_name(l),
			(unsigned long long)f.n, (unsigned long long)f.bytes);
		sep = ",";
	}
}

void report_line(FILE *out, const char *text, bool wide)
{
	size_t n = strlen(text), width = REPORT_COLUMNS, at = 0;
	if (wide || n <= width) {
		fprintf(out, "%s\n", text);
		return;
	}
	while (at < n) {
		size_t room = at ? width - 4 : width, end = n;
		if (n - at > room) {
			end = at + room;
			while (end > at && text[end] != ' ')
				end--;
			if (end == at) /* one word longer than the line */
				end = at + room;
		}
		fprintf(out, "%s%.*s\n", at ? "    " : "", (int)(end - at), text + at);
		at = end;
		while (at < n && text[at] == ' ')
			at++;
	}
}

/* What a footer function writes, as report_line prints it (nothing if empty). */
static void footer(FILE *out, const struct agg *a, bool wide,
		   void (*write)(FILE *, const struct agg *))
{
	char *text = NULL;
	size_t len = 0;
	FILE *m = open_memstream(&text, &len);
	if (!m)
		return;
	write(m, a);
	if (fclose(m) == 0 && len)
		report_line(out, text, wide);
	free(text);
}

void format_ns(char *buf, size_t len, uint64_t ns)
{
	if (ns < 1000)
		snprintf(buf, len, "%llu ns", (unsigned long long)ns);
	else if (ns < 1000000)
		snprintf(buf, len, "%.1f us", (double)ns / 1e3);
	else if (ns < 1000000000)
		snprintf(buf, len, "%.1f ms", (double)ns / 1e6);
	else
		snprintf(buf, len, "%.2f s", (double)ns / 1e9);
}

void format_ns_short(char *buf, size_t len, uint64_t ns)
{
	static const char *const unit[] = { "us", "ms", "s" };
	if (ns < 1000) {
		snprintf(buf, len, "%lluns", (unsigned long long)ns);
		return;
	}
	double v = (double)ns / 1e3;
	int u = 0;
	for (; u < 2 && v >= 999.5; u++)
		v /= 1e3;
	if (u == 2 && v < 9.995)
		snprintf(buf, len, "%.2fs", v);
	else if (u == 2 && v >= 99999.5)
		snprintf(buf, len, ">1day"); /* 6 characters: nothing real waits this long */
	else if (v < 99.95)
		snprintf(buf, len, "%.1f%s", v, unit[u]);
	else
		snprintf(buf, len, "%.0f%s", v, unit[u]);
}

void format_count_short(char *buf, size_t len, uint64_t n)
{
	static const char *const unit[] = { "k", "M", "G", "T", "P", "E" };
	if (n < 100000) {
		snprintf(buf, len, "%llu", (unsigned long long)n);
		return;
	}
	double v = (double)n / 1e3;
	int u = 0;
	for (; u < 5 && v >= 999.95; u++)
		v /= 1e3;
	snprintf(buf, len, v < 9.995 ? "%.2f%s" : "%.1f%s", v, unit[u]);
}

/* A duration as the table shows it: in full when wide, else in at most 6 characters. */
static void table_ns(char *buf, size_t len, uint64_t ns, bool wide)
{
	if (wide)
		format_ns(buf, len, ns);
	else
		format_ns_short(buf, len, ns);
}

static const char *quantile_or_dash(char *buf, size_t len, const struct hist *h, double q,
				    bool wide)
{
	if (!h || !h->count)
		return "-";
	table_ns(buf, len, hist_quantile(h, q), wide);
	return buf;
}

static const char *count_short(char *buf, size_t len, uint64_t n)
{
	format_count_short(buf, len, n);
	return buf;
}


/* The TIMED column: the share of messages timed, rounded down ("100%" only for all). */
static const char *timed_or_dash(char *buf, size_t len, const struct hist *h, uint64_t messages)
{
	if (!messages)
		return "-";
	uint64_t timed = h ? h->samples : 0;
	if (timed >= messages)
		return "100%";
	if (timed && timed * 100 < messages)
		return "<1%";
	snprintf(buf, len, "%llu%%", (unsigned long long)(timed * 100 / messages));
	return buf;
}

/*
 * Rows are sorted by process (a reused pid's processes in start order), then
 * transport; send and recv side by side.
 */
static int cmp_proc(const void *x, const void *y)
{
	const struct agg_proc *a = *(struct agg_proc *const *)x, *b = *(struct agg_proc *const *)y;
	if (a->tgid != b->tgid)
		return a->tgid < b->tgid ? -1 : 1;
	if (a->tag != b->tag) {
		if (a->start_ns != b->start_ns)
			return a->start_ns < b->start_ns ? -1 : 1;
		return a->tag < b->tag ? -1 : 1;
	}
	if (a->transport != b->transport)
		return a->transport - b->transport;
	return a->direction - b->direction;
}

static struct agg_proc **sorted_procs(const struct agg *a, size_t *n)
{
	struct agg_proc **v = calloc(a->nprocs + 1, sizeof(*v));
	*n = 0;
	if (!v)
		return NULL;
	for (size_t i = 0; i < a->nprocs; i++)
		v[(*n)++] = &a->procs[i];
	qsort(v, *n, sizeof(*v), cmp_proc);
	return v;
}

static const struct hist *latency_of(const struct agg_proc *p)
{
	return p ? p->latency : NULL;
}

const char *const report_sort_names[REPORT_SORT_COUNT] = { "msgs", "bytes", "p99", "send", "pid" };

/* A table row: one process's send and recv sides on one transport. */
struct table_row {
	const struct agg_proc *snd, *rcv, *any;
	size_t order; /* in sorted_procs: pid, start, transport */
	uint64_t key;
};

static uint64_t quantile_key(const struct hist *h, double q)
{
	return h && h->count ? hist_quantile(h, q) : 0;
}

static uint64_t row_key(const struct table_row *r, enum report_sort sort)
{
	uint64_t msgs = (r->snd ? r->snd->messages : 0) + (r->rcv ? r->rcv->messages : 0);
	switch (sort) {
	case REPORT_SORT_BYTES:
		return (r->snd ? r->snd->bytes : 0) + (r->rcv ? r->rcv->bytes : 0);
	case REPORT_SORT_P99:
		return quantile_key(latency_of(r->rcv), 0.99);
	case REPORT_SORT_SEND:
		return quantile_key(r->snd ? r->snd->send_dur : NULL, 0.5);
	case REPORT_SORT_PID:
		return 0; /* order alone */
	default:
		return msgs;
	}
}

/* Largest key first; ties (and --sort pid) in pid order. */
static int cmp_row(const void *x, const void *y)
{
	const struct table_row *a = x, *b = y;
	if (a->key != b->key)
		return a->key > b->key ? -1 : 1;
	return a->order < b->order ? -1 : a->order > b->order;
}

struct table_pair {
	const struct agg_pair *p;
	size_t order;
	uint64_t key;
};

static uint64_t pair_key(const struct agg_pair *p, enum report_sort sort)
{
	switch (sort) {
	case REPORT_SORT_BYTES:
		return p->bytes;
	case REPORT_SORT_P99:
		return quantile_key(p->latency, 0.99);
	case REPORT_SORT_PID:
		return 0;
	default: /* msgs, and send (a pair has no send duration of its own) */
		return p->messages;
	}
}

static int cmp_pair_row(const void *x, const void *y)
{
	const struct table_pair *a = x, *b = y;
	if (a->key != b->key)
		return a->key > b->key ? -1 : 1;
	if (a->p->sender != b->p->sender)
		return a->p->sender < b->p->sender ? -1 : 1;
	return a->order < b->order ? -1 : a->order > b->order;
}

/* "... N more rows (--top N shows the first N)": nothing is left out silently. */
static void more_rows(FILE *out, size_t shown, size_t all, const char *what)
{
	if (all > shown)
		fprintf(out, "... %zu more %s (--top %zu shows the first %zu)\n", all - shown, what,
			shown, shown);
}

/* "PID/COMM" of a pair's end in its table column of width columns. */
static void pid_comm_column(FILE *out, const struct agg *a, uint32_t tgid, uint32_t tag,
			    int width)
{
	char comm[LT_NAME_CLEAN_LEN(LOTRACE_COMM_LEN)], both[16 + sizeof(comm)];
	lt_name_clean(comm, sizeof(comm), agg_comm(a, tgid, tag));
	snprintf(both, sizeof(both), "%u/%s", tgid, comm);
	lt_name_column(out, both, width);
}

/* "lo:  tcp N packets M bytes ...": exact totals per protocol. */
static void lo_footer(FILE *out, const struct agg *a)
{
	uint64_t lo_pk[LT_L4_COUNT], lo_by[LT_L4_COUNT], lo_all = 0;
	lo_sums(a, lo_pk, lo_by);
	fprintf(out, "lo:");
	for (int l = 0; l < LT_L4_COUNT; l++) {
		lo_all += lo_pk[l];
		if (lo_pk[l])
			fprintf(out, "  %s %llu packets %llu bytes", lt_l4_name(l),
				(unsigned long long)lo_pk[l], (unsigned long long)lo_by[l]);
	}
	fprintf(out, "%s", lo_all ? "" : "  no packets");
}

/* Events, untimed messages by cause, and what made counts incomplete. */
static void events_footer(FILE *out, const struct agg *a)
{
	fprintf(out, "events: %llu processed, %llu lost; untimed messages: %llu",
		(unsigned long long)a->events_processed, (unsigned long long)a->lost_events,
		(unsigned long long)agg_untimed_total(a));
	const char *sep = " (";
	for (int c = 0; c <= LT_UNTIMED_UNMATCHED; c++) {
		uint64_t n = 0;
		for (int t = 0; t < LT_TRANSPORT_COUNT; t++)
			n += a->untimed_by_cause[c][t];
		if (n) {
			fprintf(out, "%s%s %llu", sep, lt_untimed_cause_name(c), (unsigned long long)n);
			sep = ", ";
		}
	}
	if (sep[0] == ',')
		fputc(')', out);
	if (a->map_full)
		fprintf(out, "; counter map full %llu times (counts incomplete)",
			(unsigned long long)a->map_full);
	if (a->missed_runs)
		fprintf(out, "; %llu program runs skipped by the kernel (counts incomplete)",
			(unsigned long long)a->missed_runs);
}

/* The closing comparison: transports by median message latency, fastest first. */
static void transport_summary(FILE *out, const struct agg *a, bool wide)
{
	char b1[32], b2[32], b3[32], b4[32];
	int order[LT_TRANSPORT_COUNT], m = 0;
	for (int t = 0; t < LT_TRANSPORT_COUNT; t++)
		if (a->transport_latency[t].count)
			order[m++] = t;
	for (int x = 1; x < m; x++)
		for (int y = x; y > 0 && hist_quantile(&a->transport_latency[order[y]], 0.5) <
					       hist_quantile(&a->transport_latency[order[y - 1]], 0.5); y--) {
			int tmp = order[y];
			order[y] = order[y - 1];
			order[y - 1] = tmp;
		}
	if (!m)
		return;
	fprintf(out, "\nmessage latency on this host (all processes; x: p50 against %s):\n",
		lt_transport_name(order[0]));
	uint64_t base = hist_quantile(&a->transport_latency[order[0]], 0.5);
	for (int x = 0; x < m; x++) {
		const struct hist *h = &a->transport_latency[order[x]];
		uint64_t p50 = hist_quantile(h, 0.5);
		table_ns(b1, sizeof(b1), p50, wide);
		table_ns(b2, sizeof(b2), hist_quantile(h, 0.99), wide);
		table_ns(b3, sizeof(b3), hist_quantile(&a->transport_send[order[x]], 0.5), wide);
		if (wide)
			snprintf(b4, sizeof(b4), "%llu", (unsigned long long)h->count);
		else
			format_count_short(b4, sizeof(b4), h->count);
		int w = wide ? 9 : 6;
		fprintf(out, "  %-14s p50 %*s  p99 %*s  send p50 %*s  %6s msgs",
			lt_transport_name(order[x]), w, b1, w, b2, w,
			a->transport_send[order[x]].count ? b3 : "-", b4);
		if (x && base)
			fprintf(out, "  %.1fx", (double)p50 / (double)base);
		fputc('\n', out);
	}
	/* The headline: Unix stream against TCP loopback, else fastest vs slowest. */
	int fast = order[0], slow = order[m - 1];
	if (a->transport_latency[LT_UNIX_STREAM].count && a->transport_latency[LT_TCP].count) {
		fast = LT_UNIX_STREAM;
		slow = LT_TCP;
	}
	if (m > 1) {
		uint64_t f50 = hist_quantile(&a->transport_latency[fast], 0.5);
		uint64_t s50 = hist_quantile(&a->transport_latency[slow], 0.5);
		format_ns(b1, sizeof(b1), f50);
		format_ns(b2, sizeof(b2), s50);
		fprintf(out, "  => %s p50 %s vs %s p50 %s (%.1fx)\n", lt_transport_name(fast), b1,
			lt_transport_name(slow), b2, f50 ? (double)s50 / (double)f50 : 0.0);
	}
}

/* 2^e in bpftrace's histogram notation: 512, 1K, 2M (K = 1024). */
static void pow2_label(char *buf, size_t len, unsigned e)
{
	static const char suffix[] = " KMGTPE";
	unsigned u = e / 10 < 6 ? e / 10 : 6;
	if (e >= 64)
		u = 6;
	snprintf(buf, len, "%llu%.*s", (unsigned long long)(1ull << (e - 10 * u)), u ? 1 : 0,
		 &suffix[u]);
}

/*
 * --hist: per transport, the messages in each power-of-two latency range, as
 * bars (like bpftrace's hist()); weighted, so a sampled backlog counts for all
 * the messages its samples stand for.  Fits REPORT_COLUMNS.
 */
static void latency_histograms(FILE *out, const struct agg *a)
{
	enum { BAR = 40 };
	for (int t = 0; t < LT_TRANSPORT_COUNT; t++) {
		const struct hist *h = &a->transport_latency[t];
		if (!h->count)
			continue;
		/* pow2[e]: values in [2^(e-1), 2^e), pow2[0]: the value 0. */
		uint64_t pow2[65] = { 0 }, most = 0;
		int lo = 65, hi = -1;
		for (unsigned b = 0; b < HIST_BUCKETS; b++) {
			if (!h->bucket[b])
				continue;
			uint64_t low = hist_bucket_low(b);
			int e = low ? 64 - __builtin_clzll(low) : 0;
			pow2[e] += h->bucket[b];
			lo = e < lo ? e : lo;
			hi = e > hi ? e : hi;
		}
		for (int e = lo; e <= hi; e++)
			most = pow2[e] > most ? pow2[e] : most;
		fprintf(out, "\n%s latency, nanoseconds (%llu messages%s):\n", lt_transport_name(t),
			(unsigned long long)h->count, h->count > h->samples ? ", sampled, weighted" : "");
		for (int e = lo; e <= hi && most; e++) {
			char from[24], to[24], range[56], bar[BAR + 1];
			if (e == 0) {
				snprintf(range, sizeof(range), "[0]");
			} else {
				pow2_label(from, sizeof(from), (unsigned)e - 1);
				pow2_label(to, sizeof(to), (unsigned)e);
				snprintf(range, sizeof(range), "[%s, %s)", from, to);
			}
			int n = (int)((pow2[e] * BAR + most - 1) / most); /* any message shows */
			memset(bar, '@', (size_t)n);
			bar[n] = 0;
			fprintf(out, "%-14s %12llu |%-*s|\n", range, (unsigned long long)pow2[e], BAR,
				bar);
		}
	}
}

/* What the short column names mean (the default table). */
static const char table_legend[] =
	"SENT, RECV: messages; LAT: from the sender entering send to the receiver's recv\n"
	"returning the first byte (p50, p99); SEND: time inside the send call; TIMED:\n"
	"share of the messages received with a latency sample.  --wide: bytes, p99s.\n";

/* The table's rows per process and transport, then its sender -> receiver pairs. */
static void process_tables(FILE *out, const struct agg *a, const struct report_options *f)
{
	char b1[32], b2[32], b3[32], b4[16], c1[16], c2[16];
	const bool wide = f->wide;
	size_t n;
	struct agg_proc **v = sorted_procs(a, &n);

	if (wide)
		fprintf(out, "%-8s %-16s %-15s %10s %12s %10s %12s %9s %9s %5s %9s\n", "PID", "COMM",
			"TRANSPORT", "SENT MSGS", "SENT BYTES", "RECV MSGS", "RECV BYTES", "LAT p50",
			"LAT p99", "TIMED", "SEND p50");
	else
		fprintf(out, "%-7s %-15s %-14s %6s %6s %6s %6s %5s %6s\n", "PID", "COMM", "TRANSPORT",
			"SENT", "RECV", "LAT50", "LAT99", "TIMED", "SEND50");
	struct table_row *rows = calloc(n + 1, sizeof(*rows));
	size_t nrows = 0;
	for (size_t i = 0; v && rows && i < n;) {
		/* Gather the send and recv rows of one (pid, transport). */
		struct table_row r = { .any = v[i], .order = i };
		size_t j = i;
		for (; j < n && v[j]->tgid == v[i]->tgid && v[j]->tag == v[i]->tag &&
		       v[j]->transport == v[i]->transport; j++) {
			if (v[j]->direction == LT_SEND)
				r.snd = v[j];
			else
				r.rcv = v[j];
		}
		i = j;
		if (!report_transport_wanted(f, r.any->transport) ||
		    !proc_wanted(a, r.any->tgid, r.any->tag, NULL, f))
			continue;
		if (!(r.snd && r.snd->messages) && !(r.rcv && r.rcv->messages))
			continue;
		r.key = row_key(&r, f->sort);
		rows[nrows++] = r;
	}
	if (rows)
		qsort(rows, nrows, sizeof(*rows), cmp_row);
	size_t shown = f->top && f->top < nrows ? f->top : nrows;
	for (size_t i = 0; i < shown; i++) {
		const struct agg_proc *snd = rows[i].snd, *rcv = rows[i].rcv, *any = rows[i].any;
		char comm[LT_NAME_CLEAN_LEN(LOTRACE_COMM_LEN)];
		lt_name_clean(comm, sizeof(comm), agg_comm(a, any->tgid, any->tag));
		uint64_t sent = snd ? snd->messages : 0, recvd = rcv ? rcv->messages : 0;
		const char *lat50 = quantile_or_dash(b1, sizeof(b1), latency_of(rcv), 0.5, wide);
		const char *lat99 = quantile_or_dash(b2, sizeof(b2), latency_of(rcv), 0.99, wide);
		const char *timed = timed_or_dash(b4, sizeof(b4), latency_of(rcv),
						  rcv ? agg_recv_messages(rcv) : 0);
		const char *send50 =
			quantile_or_dash(b3, sizeof(b3), snd ? snd->send_dur : NULL, 0.5, wide);
		if (wide) {
			fprintf(out, "%-8u ", any->tgid);
			lt_name_column(out, comm, 16);
			fprintf(out, " %-15s %10llu %12llu %10llu %12llu %9s %9s %5s %9s\n",
				lt_transport_name(any->transport), (unsigned long long)sent,
				(unsigned long long)(snd ? snd->bytes : 0), (unsigned long long)recvd,
				(unsigned long long)(rcv ? rcv->bytes : 0), lat50, lat99, timed, send50);
		} else {
			fprintf(out, "%-7u ", any->tgid);
			lt_name_column(out, comm, 15);
			fprintf(out, " %-14s %6s %6s %6s %6s %5s %6s\n", lt_transport_name(any->transport),
				count_short(c1, sizeof(c1), sent), count_short(c2, sizeof(c2), recvd),
				lat50, lat99, timed, send50);
		}
	}
	more_rows(out, shown, nrows, "rows");
	if (!nrows)
		fprintf(out, "(no %straffic seen in %.1f s; `lotrace compare` makes some)\n",
			filtering(f) ? "matching " : "", a->duration_s);
	free(rows);
	free(v);

	struct table_pair *pairs = calloc(a->npairs + 1, sizeof(*pairs));
	size_t npairs = 0;
	for (size_t i = 0; pairs && i < a->npairs; i++) {
		const struct agg_pair *p = &a->pairs[i];
		if (!pair_wanted(a, p, f) || (!p->messages && !p->bytes))
			continue;
		pairs[npairs++] = (struct table_pair){ p, i, pair_key(p, f->sort) };
	}
	if (pairs)
		qsort(pairs, npairs, sizeof(*pairs), cmp_pair_row);
	if (npairs && wide)
		fprintf(out, "\n%-24s    %-24s %-15s %10s %12s %9s %9s %5s\n", "SENDER", "RECEIVER",
			"TRANSPORT", "MSGS", "BYTES", "LAT p50", "LAT p99", "TIMED");
	else if (npairs)
		fprintf(out, "\n%-20s    %-20s %-14s %6s %6s %5s\n", "SENDER", "RECEIVER",
			"TRANSPORT", "MSGS", "LAT50", "TIMED");
	shown = f->top && f->top < npairs ? f->top : npairs;
	for (size_t i = 0; i < shown; i++) {
		const struct agg_pair *p = pairs[i].p;
		int w = wide ? 24 : 20;
		pid_comm_column(out, a, p->sender, p->sender_tag, w);
		fputs(" -> ", out);
		pid_comm_column(out, a, p->receiver, p->receiver_tag, w);
		const char *lat50 = quantile_or_dash(b1, sizeof(b1), p->latency, 0.5, wide);
		const char *timed = timed_or_dash(b4, sizeof(b4), p->latency, p->messages);
		if (wide)
			fprintf(out, " %-15s %10llu %12llu %9s %9s %5s\n",
				lt_transport_name(p->transport), (unsigned long long)p->messages,
				(unsigned long long)p->bytes, lat50,
				quantile_or_dash(b2, sizeof(b2), p->latency, 0.99, wide), timed);
		else
			fprintf(out, " %-14s %6s %6s %5s\n", lt_transport_name(p->transport),
				count_short(c1, sizeof(c1), p->messages), lat50, timed);
	}
	more_rows(out, shown, npairs, "pairs");
	free(pairs);
}

const char *const report_by_names[REPORT_BY_COUNT] = { "process", "unit", "cgroup" };

void report_group_label(const struct agg *a, enum report_by by, uint32_t tgid, uint32_t tag,
			char *out, size_t len)
{
	const char *cgroup = agg_cgroup_of(a, tgid, tag);
	if (!cgroup)
		snprintf(out, len, "?");
	else if (by == REPORT_BY_UNIT)
		procid_unit_of(cgroup, out, len);
	else
		snprintf(out, len, "%s", cgroup);
}

/* One row of a --by table: a unit's (or cgroup's) processes on one transport. */
struct group_row {
	char label[KMAP_CGROUP_PATH_LEN];
	char peer[KMAP_CGROUP_PATH_LEN]; /* pairs: the receiver's label */
	uint8_t transport;
	uint64_t sent, sent_bytes, recvd, recv_bytes, delivered;
	struct hist latency, send;
	uint64_t key;
};

struct group_set {
	struct group_row *rows;
	size_t n, cap;
};

/* The row of (label, peer, transport), created empty; NULL when out of memory. */
static struct group_row *group_of(struct group_set *g, const char *label, const char *peer,
				  int transport)
{
	for (size_t i = 0; i < g->n; i++)
		if (g->rows[i].transport == transport && !strcmp(g->rows[i].label, label) &&
		    !strcmp(g->rows[i].peer, peer))
			return &g->rows[i];
	if (g->n == g->cap) {
		size_t cap = g->cap ? g->cap * 2 : 16;
		struct group_row *r = realloc(g->rows, cap * sizeof(*r));
		if (!r)
			return NULL;
		g->rows = r;
		g->cap = cap;
	}
	struct group_row *r = &g->rows[g->n++];
	memset(r, 0, sizeof(*r));
	snprintf(r->label, sizeof(r->label), "%s", label);
	snprintf(r->peer, sizeof(r->peer), "%s", peer);
	r->transport = (uint8_t)transport;
	return r;
}

static uint64_t group_key(const struct group_row *r, enum report_sort sort)
{
	switch (sort) {
	case REPORT_SORT_BYTES:
		return r->sent_bytes + r->recv_bytes;
	case REPORT_SORT_P99:
		return quantile_key(&r->latency, 0.99);
	case REPORT_SORT_SEND:
		return quantile_key(&r->send, 0.5);
	case REPORT_SORT_PID:
		return 0; /* by label */
	default:
		return r->sent + r->recvd;
	}
}

static int cmp_group(const void *x, const void *y)
{
	const struct group_row *a = x, *b = y;
	if (a->key != b->key)
		return a->key > b->key ? -1 : 1;
	int c = strcmp(a->label, b->label);
	if (c)
		return c;
	c = strcmp(a->peer, b->peer);
	return c ? c : a->transport - b->transport;
}

static void sort_groups(struct group_set *g, enum report_sort sort)
{
	for (size_t i = 0; i < g->n; i++)
		g->rows[i].key = group_key(&g->rows[i], sort);
	if (g->n)
		qsort(g->rows, g->n, sizeof(*g->rows), cmp_group);
}

/*
 * A label in a column: cleaned (it comes from other users' names) and cut to
 * width; a cgroup path loses its start ("…/redis-server.service"), where the
 * slices are, rather than its leaf.
 */
void report_label_column(FILE *out, const char *label, int width, bool keep_end)
{
	char clean[LT_NAME_CLEAN_LEN(KMAP_CGROUP_PATH_LEN) + 4];
	lt_name_clean(clean, sizeof(clean) - 4, label);
	const char *p = clean;
	if (keep_end && lt_name_width(p) > width) {
		while (*p && lt_name_width(p) > width - 1)
			do
				p++;
			while (((unsigned char)*p & 0xc0) == 0x80);
		memmove(clean + 3, p, strlen(p) + 1);
		memcpy(clean, "\xe2\x80\xa6", 3); /* U+2026 */
		p = clean;
	}
	lt_name_column(out, p, width);
}

/*
 * --by unit|cgroup: the process rows and pairs summed per unit (or cgroup),
 * histograms merged; the same filters, sort and --top.
 */
static void group_tables(FILE *out, const struct agg *a, const struct report_options *f)
{
	char b1[32], b2[32], b3[32], b4[16], c1[16], c2[16], label[KMAP_CGROUP_PATH_LEN],
		peer[KMAP_CGROUP_PATH_LEN];
	const bool wide = f->wide;
	const char *what = f->by == REPORT_BY_UNIT ? "UNIT" : "CGROUP";
	struct group_set rows = { 0 }, pairs = { 0 };

	for (size_t i = 0; i < a->nprocs; i++) {
		const struct agg_proc *p = &a->procs[i];
		if (!p->messages || !report_transport_wanted(f, p->transport) ||
		    !proc_wanted(a, p->tgid, p->tag, NULL, f))
			continue;
		report_group_label(a, f->by, p->tgid, p->tag, label, sizeof(label));
		struct group_row *r = group_of(&rows, label, "", p->transport);
		if (!r)
			break;
		if (p->direction == LT_SEND) {
			r->sent += p->messages;
			r->sent_bytes += p->bytes;
			if (p->send_dur)
				hist_merge(&r->send, p->send_dur);
		} else {
			r->recvd += p->messages;
			r->recv_bytes += p->bytes;
			r->delivered += agg_recv_messages(p);
			if (p->latency)
				hist_merge(&r->latency, p->latency);
		}
	}
	for (size_t i = 0; i < a->npairs; i++) {
		const struct agg_pair *p = &a->pairs[i];
		if (!pair_wanted(a, p, f) || (!p->messages && !p->bytes))
			continue;
		report_group_label(a, f->by, p->sender, p->sender_tag, label, sizeof(label));
		report_group_label(a, f->by, p->receiver, p->receiver_tag, peer, sizeof(peer));
		struct group_row *r = group_of(&pairs, label, peer, p->transport);
		if (!r)
			break;
		r->sent += p->messages;
		r->sent_bytes += p->bytes;
		if (p->latency)
			hist_merge(&r->latency, p->latency);
	}
	sort_groups(&rows, f->sort);
	sort_groups(&pairs, f->sort);

	int lw = wide ? 40 : 23;
	if (wide)
		fprintf(out, "%-40s %-15s %10s %12s %10s %12s %9s %9s %5s %9s\n", what, "TRANSPORT",
			"SENT MSGS", "SENT BYTES", "RECV MSGS", "RECV BYTES", "LAT p50", "LAT p99",
			"TIMED", "SEND p50");
	else
		fprintf(out, "%-23s %-14s %6s %6s %6s %6s %5s %6s\n", what, "TRANSPORT", "SENT", "RECV",
			"LAT50", "LAT99", "TIMED", "SEND50");
	size_t shown = f->top && f->top < rows.n ? f->top : rows.n;
	for (size_t i = 0; i < shown; i++) {
		const struct group_row *r = &rows.rows[i];
		const char *lat50 = quantile_or_dash(b1, sizeof(b1), &r->latency, 0.5, wide);
		const char *lat99 = quantile_or_dash(b2, sizeof(b2), &r->latency, 0.99, wide);
		const char *timed = timed_or_dash(b4, sizeof(b4), &r->latency, r->delivered);
		const char *send50 = quantile_or_dash(b3, sizeof(b3), &r->send, 0.5, wide);
		report_label_column(out, r->label, lw, f->by == REPORT_BY_CGROUP);
		if (wide)
			fprintf(out, " %-15s %10llu %12llu %10llu %12llu %9s %9s %5s %9s\n",
				lt_transport_name(r->transport), (unsigned long long)r->sent,
				(unsigned long long)r->sent_bytes, (unsigned long long)r->recvd,
				(unsigned long long)r->recv_bytes, lat50, lat99, timed, send50);
		else
			fprintf(out, " %-14s %6s %6s %6s %6s %5s %6s\n", lt_transport_name(r->transport),
				count_short(c1, sizeof(c1), r->sent), count_short(c2, sizeof(c2), r->recvd),
				lat50, lat99, timed, send50);
	}
	more_rows(out, shown, rows.n, "rows");
	if (!rows.n)
		fprintf(out, "(no %straffic seen in %.1f s; `lotrace compare` makes some)\n",
			filtering(f) ? "matching " : "", a->duration_s);

	int pw = wide ? 30 : 20;
	if (pairs.n && wide)
		fprintf(out, "\n%-30s    %-30s %-15s %10s %12s %9s %9s %5s\n", "SENDER", "RECEIVER",
			"TRANSPORT", "MSGS", "BYTES", "LAT p50", "LAT p99", "TIMED");
	else if (pairs.n)
		fprintf(out, "\n%-20s    %-20s %-14s %6s %6s %5s\n", "SENDER", "RECEIVER", "TRANSPORT",
			"MSGS", "LAT50", "TIMED");
	shown = f->top && f->top < pairs.n ? f->top : pairs.n;
	for (size_t i = 0; i < shown; i++) {
		const struct group_row *r = &pairs.rows[i];
		report_label_column(out, r->label, pw, f->by == REPORT_BY_CGROUP);
		fputs(" -> ", out);
		report_label_column(out, r->peer, pw, f->by == REPORT_BY_CGROUP);
		const char *lat50 = quantile_or_dash(b1, sizeof(b1), &r->latency, 0.5, wide);
		const char *timed = timed_or_dash(b4, sizeof(b4), &r->latency, r->sent);
		if (wide)
			fprintf(out, " %-15s %10llu %12llu %9s %9s %5s\n", lt_transport_name(r->transport),
				(unsigned long long)r->sent, (unsigned long long)r->sent_bytes, lat50,
				quantile_or_dash(b2, sizeof(b2), &r->latency, 0.99, wide), timed);
		else
			fprintf(out, " %-14s %6s %6s %5s\n", lt_transport_name(r->transport),
				count_short(c1, sizeof(c1), r->sent), lat50, timed);
	}
	more_rows(out, shown, pairs.n, "pairs");
	free(rows.rows);
	free(pairs.rows);
}

void report_table(FILE *out, const struct agg *a, const struct report_options *f)
{
	const bool wide = f->wide;

	fprintf(out, "lotrace: %.1f s traced, backend %s, lo counted via %s\n\n", a->duration_s,
		a->backend, a->lo_attach);
	if (f->by == REPORT_BY_PROCESS)
		process_tables(out, a, f);
	else
		group_tables(out, a, f);
	if (!wide)
		fprintf(out, "\n%s", table_legend);

	fputc('\n', out);
	footer(out, a, wide, lo_footer);
	transport_summary(out, a, wide);
	if (f->hist)
		latency_histograms(out, a);
	fputc('\n', out);
	footer(out, a, wide, events_footer);
	footer(out, a, wide, folded_footer);
}

/*
 * A string as the table shows it (lt_name_clean: valid UTF-8 written as is,
 * no control characters left), so only " and \\ need escaping.  The longest
 * strings are backend reasons.
 */
void report_json_string(FILE *out, const char *s)
{
	char clean[LT_NAME_CLEAN_LEN(LT_REASON_LEN)];
	lt_name_clean(clean, sizeof(clean), s);
	fputc('"', out);
	for (const char *p = clean; *p; p++) {
		if (*p == '"' || *p == '\\')
			fputc('\\', out);
		fputc(*p, out);
	}
	fputc('"', out);
}

static void json_summary(FILE *out, const char *name, const struct hist *h)
{
	static const struct hist empty;
	struct hist_summary s = hist_summarize(h ? h : &empty);
	fprintf(out,
		"\"%s\": {\"count\": %llu, \"estimated_messages\": %llu, \"p50\": %llu, "
		"\"p90\": %llu, \"p99\": %llu, \"max\": %llu, \"min\": %llu, \"mean\": %.1f}",
		name, (unsigned long long)s.samples, (unsigned long long)s.count,
		(unsigned long long)s.p50,
		(unsigned long long)s.p90, (unsigned long long)s.p99, (unsigned long long)s.max,
		(unsigned long long)s.min, s.mean);
}

static void json_count(FILE *out, const char *n_name, struct lt_count c)
{
	fprintf(out, "{\"%s\": %llu, \"bytes\": %llu}", n_name, (unsigned long long)c.n,
		(unsigned long long)c.bytes);
}

/* "folded": what the kernel's totals hold beyond the rows (see folded_footer). */
static void json_folded(FILE *out, const struct agg *a)
{
	fprintf(out, " \"folded\": {\"processes\": {");
	for (int t = 0; t < LT_TRANSPORT_COUNT; t++) {
		fprintf(out, "%s\"%s\": {", t ? ", " : "", lt_transport_name(t));
		for (int d = 0; d < LT_DIRECTION_COUNT; d++) {
			fprintf(out, "%s\"%s\": ", d ? ", " : "", lt_direction_name(d));
			json_count(out, "messages", agg_folded_proc(a, t, d));
		}
		fputc('}', out);
	}
	fprintf(out, "},\n  \"pairs\": {");
	for (int t = 0; t < LT_TRANSPORT_COUNT; t++) {
		fprintf(out, "%s\"%s\": ", t ? ", " : "", lt_transport_name(t));
		json_count(out, "messages", agg_folded_pair(a, t));
	}
	fprintf(out, "},\n  \"lo\": {");
	for (int l = 0; l < LT_L4_COUNT; l++) {
		fprintf(out, "%s\"%s\": ", l ? ", " : "", lt_l4_name(l));
		json_count(out, "packets", agg_folded_lo(a, l));
	}
	fprintf(out, "}}");
}

void report_json(FILE *out, const struct agg *a, const struct report_options *f)
{
	size_t n;
	struct agg_proc **v = sorted_procs(a, &n);

	fprintf(out, "{\"backend\": ");
	report_json_string(out, a->backend);
	fprintf(out, ", \"lo_attach\": ");
	report_json_string(out, a->lo_attach);
	fprintf(out, ", \"backend_reasons\": {");
	bool first_reason = true;
	for (int b = LT_BACKEND_AUTO + 1; b < LT_BACKEND_COUNT; b++) {
		if (!a->backend_reasons[b][0])
			continue;
		fprintf(out, "%s\"%s\": ", first_reason ? "" : ", ", lt_backend_name(b));
		report_json_string(out, a->backend_reasons[b]);
		first_reason = false;
	}
	fprintf(out, "}");
	fprintf(out, ", \"duration_s\": %.3f, \"lost_events\": %llu, \"missed_program_runs\": %llu, "
		     "\"untimed_messages\": %llu",
		a->duration_s, (unsigned long long)a->lost_events, (unsigned long long)a->missed_runs,
		(unsigned long long)agg_untimed_total(a));
	fprintf(out, ", \"events_processed\": %llu, \"counter_map_full\": %llu",
		(unsigned long long)a->events_processed, (unsigned long long)a->map_full);
	fprintf(out, ",\n \"untimed_by_transport\": {");
	for (int t = 0; t < LT_TRANSPORT_COUNT; t++)
		fprintf(out, "%s\"%s\": %llu", t ? ", " : "", lt_transport_name(t),
			(unsigned long long)a->untimed[t]);
	fprintf(out, "},\n \"untimed_by_cause\": {");
	for (int c = 0; c <= LT_UNTIMED_UNMATCHED; c++) {
		uint64_t n = 0;
		for (int t = 0; t < LT_TRANSPORT_COUNT; t++)
			n += a->untimed_by_cause[c][t];
		fprintf(out, "%s\"%s\": %llu", c ? ", " : "", lt_untimed_cause_name(c),
			(unsigned long long)n);
	}
	fprintf(out, "},\n \"processes\": [");
	bool first = true;
	for (size_t i = 0; v && i < n; i++) {
		const struct agg_proc *p = v[i];
		if (!report_transport_wanted(f, p->transport) || !proc_wanted(a, p->tgid, p->tag, NULL, f) ||
		    !p->messages)
			continue;
		fprintf(out, "%s\n  {\"pid\": %u, \"comm\": ", first ? "" : ",", p->tgid);
		report_json_string(out, agg_comm(a, p->tgid, p->tag));
		const char *cgroup = agg_cgroup_path(a, p->cgroup_id);
		fputs(", \"cgroup\": ", out);
		if (cgroup) {
			char unit[KMAP_CGROUP_PATH_LEN];
			procid_unit_of(cgroup, unit, sizeof(unit));
			report_json_string(out, cgroup);
			fputs(", \"unit\": ", out);
			report_json_string(out, unit);
		} else {
			fputs("null, \"unit\": null", out);
		}
		fprintf(out, ", \"transport\": \"%s\", \"direction\": \"%s\", \"messages\": %llu, "
			     "\"bytes\": %llu, ",
			lt_transport_name(p->transport), lt_direction_name(p->direction),
			(unsigned long long)p->messages, (unsigned long long)p->bytes);
		if (p->direction == LT_RECV) {
			json_summary(out, "latency_ns", p->latency);
			fprintf(out, ", \"timed_fraction\": %.4f",
				agg_timed_fraction(p->latency, agg_recv_messages(p)));
		} else
			json_summary(out, "send_duration_ns", p->send_dur);
		fputc('}', out);
		first = false;
	}
	free(v);
	fprintf(out, "\n ],\n \"pairs\": [");
	first = true;
	for (size_t i = 0; i < a->npairs; i++) {
		const struct agg_pair *p = &a->pairs[i];
		if (!pair_wanted(a, p, f) || (!p->messages && !p->bytes))
			continue;
		fprintf(out, "%s\n  {\"sender_pid\": %u, \"sender_comm\": ", first ? "" : ",",
			p->sender);
		report_json_string(out, agg_comm(a, p->sender, p->sender_tag));
		fprintf(out, ", \"receiver_pid\": %u, \"receiver_comm\": ", p->receiver);
		report_json_string(out, agg_comm(a, p->receiver, p->receiver_tag));
		fprintf(out, ", \"transport\": \"%s\", \"messages\": %llu, \"bytes\": %llu, ",
			lt_transport_name(p->transport), (unsigned long long)p->messages,
			(unsigned long long)p->bytes);
		json_summary(out, "latency_ns", p->latency);
		fprintf(out, ", \"timed_fraction\": %.4f", agg_timed_fraction(p->latency, p->messages));
		fputc('}', out);
		first = false;
	}
	fprintf(out, "\n ],\n \"transports\": {");
	for (int t = 0; t < LT_TRANSPORT_COUNT; t++) {
		fprintf(out, "%s\n  \"%s\": {", t ? "," : "", lt_transport_name(t));
		json_summary(out, "latency_ns", &a->transport_latency[t]);
		fprintf(out, ", ");
		json_summary(out, "send_duration_ns", &a->transport_send[t]);
		fputc('}', out);
	}
	uint64_t pk[LT_L4_COUNT], by[LT_L4_COUNT], tp = 0, tb = 0;
	lo_sums(a, pk, by);
	for (int l = 0; l < LT_L4_COUNT; l++) {
		tp += pk[l];
		tb += by[l];
	}
	fprintf(out, "\n },\n \"lo\": {\"packets\": %llu, \"bytes\": %llu, \"by_protocol\": {",
		(unsigned long long)tp, (unsigned long long)tb);
	for (int l = 0; l < LT_L4_COUNT; l++)
		fprintf(out, "%s\"%s\": {\"packets\": %llu, \"bytes\": %llu}", l ? ", " : "",
			lt_l4_name(l), (unsigned long long)pk[l], (unsigned long long)by[l]);
	fprintf(out, "}, \"by_process\": [");
	first = true;
	for (size_t i = 0; i < a->nlo; i++) {
		const struct agg_lo_proc *l = &a->lo[i];
		const char *comm = l->tgid ? agg_comm_latest(a, l->tgid) : "[kernel]";
		if (filtering(f) && !proc_wanted(a, l->tgid, 0, comm, f))
			continue;
		fprintf(out, "%s\n   {\"pid\": %u, \"comm\": ", first ? "" : ",", l->tgid);
		report_json_string(out, comm);
		fprintf(out, ", \"protocol\": \"%s\", \"packets\": %llu, \"bytes\": %llu}",
			lt_l4_name((int)l->l4), (unsigned long long)l->packets,
			(unsigned long long)l->bytes);
		first = false;
	}
	fprintf(out, "]},\n");
	json_folded(out, a);
	fprintf(out, "\n}\n");
}
