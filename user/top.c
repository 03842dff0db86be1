/*
 * lotrace top: a live view.  Every interval the kernel's exact counters are
 * read again; a row's rates are what its counts grew by since the last frame,
 * per second.  Latency and send time are since the start (the histograms only
 * grow), so a row's p99 is not one interval's.  On a terminal the frame is
 * redrawn in place, cut to the terminal's height, and keys change the view;
 * without one (or with --batch) one frame per interval is printed, like
 * `top -b`.
 */
#include "top.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>
#include "kmaps.h"
#include "names.h"
#include "report.h"
#include "signals.h"

/* What each agg_proc row (by index: rows are never removed) held at the last frame. */
struct top_prev {
	uint64_t *messages, *bytes;
	size_t n;
};

/* A row of the view: one process's send and recv sides on one transport. */
struct top_row {
	const struct agg_proc *snd, *rcv;
	double msgs_s, bytes_s;
	uint64_t key;
};

struct top_pair {
	const struct agg_pair *p;
	double msgs_s;
	uint64_t key;
};

static struct termios saved_tty;
static bool tty_raw;

static void tty_restore(void)
{
	if (tty_raw)
		tcsetattr(STDIN_FILENO, TCSAFLUSH, &saved_tty);
	tty_raw = false;
}

/* Keys without Enter and without echo; restored at exit. */
static void tty_keys(void)
{
	if (!isatty(STDIN_FILENO) || tcgetattr(STDIN_FILENO, &saved_tty))
		return;
	struct termios raw = saved_tty;
	raw.c_lflag &= ~(tcflag_t)(ICANON | ECHO);
	raw.c_cc[VMIN] = 0;
	raw.c_cc[VTIME] = 0;
	if (!tcsetattr(STDIN_FILENO, TCSAFLUSH, &raw))
		tty_raw = true;
}

static void terminal_size(int *rows, int *cols)
{
	struct winsize ws;
	*rows = 24;
	*cols = 80;
	if (!ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) && ws.ws_row && ws.ws_col) {
		*rows = ws.ws_row;
		*cols = ws.ws_col;
	}
}

static int grow_prev(struct top_prev *p, size_t n)
{
	if (n <= p->n)
		return 0;
	uint64_t *m = realloc(p->messages, n * sizeof(*m)), *b;
	if (!m)
		return -1;
	p->messages = m;
	b = realloc(p->bytes, n * sizeof(*b));
	if (!b)
		return -1;
	p->bytes = b;
	memset(p->messages + p->n, 0, (n - p->n) * sizeof(*m));
	memset(p->bytes + p->n, 0, (n - p->n) * sizeof(*b));
	p->n = n;
	return 0;
}

static uint64_t quantile_key(const struct hist *h, double q)
{
	return h && h->count ? hist_quantile(h, q) : 0;
}

static int cmp_row(const void *x, const void *y)
{
	const struct top_row *a = x, *b = y;
	if (a->key != b->key)
		return a->key > b->key ? -1 : 1;
	const struct agg_proc *pa = a->snd ? a->snd : a->rcv, *pb = b->snd ? b->snd : b->rcv;
	if (pa->tgid != pb->tgid)
		return pa->tgid < pb->tgid ? -1 : 1;
	return pa->transport - pb->transport;
}

static int cmp_pair(const void *x, const void *y)
{
	const struct top_pair *a = x, *b = y;
	if (a->key != b->key)
		return a->key > b->key ? -1 : 1;
	return a->p->sender < b->p->sender ? -1 : a->p->sender > b->p->sender;
}

static const char *dur(char *buf, size_t len, const struct hist *h, double q)
{
	if (!h || !h->count)
		return "-";
	format_ns_short(buf, len, hist_quantile(h, q));
	return buf;
}

static const char *rate(char *buf, size_t len, double per_s)
{
	format_count_short(buf, len, (uint64_t)(per_s + 0.5));
	return buf;
}

/* A process row's rates are summed over its send and recv sides. */
static uint64_t row_key(const struct top_row *r, enum report_sort sort)
{
	switch (sort) {
	case REPORT_SORT_BYTES:
		return (uint64_t)r->bytes_s;
	case REPORT_SORT_P99:
		return quantile_key(r->rcv ? r->rcv->latency : NULL, 0.99);
	case REPORT_SORT_SEND:
		return quantile_key(r->snd ? r->snd->send_dur : NULL, 0.5);
	case REPORT_SORT_PID: {
		const struct agg_proc *p = r->snd ? r->snd : r->rcv;
		return UINT64_MAX - p->tgid;
	}
	default:
		return (uint64_t)(r->msgs_s * 1000);
	}
}

/* The frame's process rows, from the rows' growth since the last frame. */
static struct top_row *gather_rows(const struct agg *a, struct top_prev *prev, double dt,
				   enum report_sort sort, size_t *n)
{
	struct top_row *rows = calloc(a->nprocs + 1, sizeof(*rows));
	*n = 0;
	if (!rows || grow_prev(prev, a->nprocs)) {
		free(rows);
		return NULL;
	}
	for (size_t i = 0; i < a->nprocs; i++) {
		const struct agg_proc *p = &a->procs[i];
		double dm = (double)(p->messages - prev->messages[i]) / dt;
		double db = (double)(p->bytes - prev->bytes[i]) / dt;
		prev->messages[i] = p->messages;
		prev->bytes[i] = p->bytes;
		/* Its other side, if already a row of this frame. */
		size_t j = 0;
		for (; j < *n; j++) {
			const struct agg_proc *o = rows[j].snd ? rows[j].snd : rows[j].rcv;
			if (o->tgid == p->tgid && o->tag == p->tag && o->transport == p->transport)
				break;
		}
		if (j == *n)
			(*n)++;
		if (p->direction == LT_SEND)
			rows[j].snd = p;
		else
			rows[j].rcv = p;
		rows[j].msgs_s += dm;
		rows[j].bytes_s += db;
	}
	for (size_t j = 0; j < *n; j++)
		rows[j].key = row_key(&rows[j], sort);
	qsort(rows, *n, sizeof(*rows), cmp_row);
	return rows;
}

/* Pairs' rates: their messages' growth, kept by pair index like the rows'. */
static struct top_pair *gather_pairs(const struct agg *a, struct top_prev *prev, double dt,
				     enum report_sort sort, size_t *n)
{
	struct top_pair *pairs = calloc(a->npairs + 1, sizeof(*pairs));
	*n = 0;
	if (!pairs || grow_prev(prev, a->npairs)) {
		free(pairs);
		return NULL;
	}
	for (size_t i = 0; i < a->npairs; i++) {
		const struct agg_pair *p = &a->pairs[i];
		struct top_pair *t = &pairs[(*n)++];
		t->p = p;
		t->msgs_s = (double)(p->messages - prev->messages[i]) / dt;
		uint64_t db = p->bytes - prev->bytes[i];
		prev->messages[i] = p->messages;
		prev->bytes[i] = p->bytes;
		t->key = sort == REPORT_SORT_BYTES ? (uint64_t)((double)db / dt) :
			 sort == REPORT_SORT_P99   ? quantile_key(p->latency, 0.99) :
			 sort == REPORT_SORT_PID   ? UINT64_MAX - p->sender :
						     (uint64_t)(t->msgs_s * 1000);
	}
	qsort(pairs, *n, sizeof(*pairs), cmp_pair);
	return pairs;
}


/* A row of the units (or cgroups) view: its processes' rows on one transport, summed. */
struct top_group {
	char label[KMAP_CGROUP_PATH_LEN];
	uint8_t transport;
	double msgs_s, bytes_s;
	struct hist latency, send;
	uint64_t key;
};

static int cmp_group(const void *x, const void *y)
{
	const struct top_group *a = x, *b = y;
	if (a->key != b->key)
		return a->key > b->key ? -1 : 1;
	int c = strcmp(a->label, b->label);
	return c ? c : a->transport - b->transport;
}

/* The frame's rows (already filtered by wanted()) summed per label and transport. */
static struct top_group *gather_groups(const struct agg *a, const struct report_options *f,
				       const struct top_row *rows, size_t n, size_t *ng)
{
	struct top_group *g = calloc(n + 1, sizeof(*g));
	char label[KMAP_CGROUP_PATH_LEN];
	*ng = 0;
	for (size_t i = 0; g && i < n; i++) {
		const struct top_row *r = &rows[i];
		const struct agg_proc *p = r->snd ? r->snd : r->rcv;
		if (!report_agg_proc_wanted(a, f, p->tgid, p->tag) ||
		    !report_transport_wanted(f, p->transport))
			continue;
		report_group_label(a, f->by, p->tgid, p->tag, label, sizeof(label));
		size_t j = 0;
		while (j < *ng && (g[j].transport != p->transport || strcmp(g[j].label, label)))
			j++;
		if (j == *ng) {
			snprintf(g[j].label, sizeof(g[j].label), "%s", label);
			g[j].transport = p->transport;
			(*ng)++;
		}
		g[j].msgs_s += r->msgs_s;
		g[j].bytes_s += r->bytes_s;
		if (r->rcv && r->rcv->latency)
			hist_merge(&g[j].latency, r->rcv->latency);
		if (r->snd && r->snd->send_dur)
			hist_merge(&g[j].send, r->snd->send_dur);
	}
	for (size_t j = 0; j < *ng; j++)
		g[j].key = f->sort == REPORT_SORT_BYTES ? (uint64_t)g[j].bytes_s :
			   f->sort == REPORT_SORT_P99	? quantile_key(&g[j].latency, 0.99) :
			   f->sort == REPORT_SORT_SEND	? quantile_key(&g[j].send, 0.5) :
			   f->sort == REPORT_SORT_PID	? 0 :
							  (uint64_t)(g[j].msgs_s * 1000);
	if (g && *ng)
		qsort(g, *ng, sizeof(*g), cmp_group);
	return g;
}

/*
 * One frame into out: at most max_lines lines (a terminal's height; 0: no
 * limit), rows that moved in this interval first by the sort key.
 */
static void frame(FILE *out, const struct agg *a, struct top_prev *prev_rows,
		  struct top_prev *prev_pairs, double dt, const struct report_options *f,
		  bool pairs_view, int max_lines, bool keys)
{
	char b[6][16];
	time_t now = time(NULL);
	struct tm tm;
	localtime_r(&now, &tm);
	char when[16];
	strftime(when, sizeof(when), "%H:%M:%S", &tm);
	fprintf(out, "lotrace top %s  every %.1f s  backend %s  sort %s  lost events %llu\n", when,
		dt, a->backend, report_sort_names[f->sort], (unsigned long long)a->lost_events);
	fprintf(out, "%s\n", keys ? "keys: q quit, s sort, p pairs, u units/cgroups;"
				    " LAT, SEND: p50/p99 since start" :
				    "LAT (send entry to recv return), SEND (in the send call): since start");
	int budget = max_lines ? max_lines - 3 : 1 << 30;
	size_t n = 0, shown = 0;
	struct top_row *rows = gather_rows(a, prev_rows, dt, f->sort, &n);
	size_t np = 0;
	struct top_pair *pairs = gather_pairs(a, prev_pairs, dt, f->sort, &np);
	if (!pairs_view && f->by != REPORT_BY_PROCESS) {
		size_t ng = 0;
		struct top_group *g = gather_groups(a, f, rows, n, &ng);
		fprintf(out, "%-23s %-14s %7s %7s %6s %6s %6s\n",
			f->by == REPORT_BY_UNIT ? "UNIT" : "CGROUP", "TRANSPORT", "MSG/s", "BYTES/s",
			"LAT50", "LAT99", "SEND50");
		for (size_t i = 0; g && i < ng && (int)shown < budget && !(f->top && shown >= f->top);
		     i++, shown++) {
			report_label_column(out, g[i].label, 23, f->by == REPORT_BY_CGROUP);
			fprintf(out, " %-14s %7s %7s %6s %6s %6s\n", lt_transport_name(g[i].transport),
				rate(b[0], sizeof(b[0]), g[i].msgs_s), rate(b[1], sizeof(b[1]), g[i].bytes_s),
				dur(b[2], sizeof(b[2]), &g[i].latency, 0.5),
				dur(b[3], sizeof(b[3]), &g[i].latency, 0.99),
				dur(b[4], sizeof(b[4]), &g[i].send, 0.5));
		}
		free(g);
	} else if (!pairs_view) {
		fprintf(out, "%-7s %-15s %-14s %7s %7s %6s %6s %6s\n", "PID", "COMM", "TRANSPORT",
			"MSG/s", "BYTES/s", "LAT50", "LAT99", "SEND50");
		for (size_t i = 0; rows && i < n && (int)shown < budget; i++) {
			const struct top_row *r = &rows[i];
			const struct agg_proc *p = r->snd ? r->snd : r->rcv;
			const char *comm = agg_comm(a, p->tgid, p->tag);
			if (!report_agg_proc_wanted(a, f, p->tgid, p->tag) || (f->top && shown >= f->top) ||
			    !report_transport_wanted(f, p->transport))
				continue;
			char clean[LT_NAME_CLEAN_LEN(LOTRACE_COMM_LEN)];
			lt_name_clean(clean, sizeof(clean), comm);
			fprintf(out, "%-7u ", p->tgid);
			lt_name_column(out, clean, 15);
			fprintf(out, " %-14s %7s %7s %6s %6s %6s\n", lt_transport_name(p->transport),
				rate(b[0], sizeof(b[0]), r->msgs_s), rate(b[1], sizeof(b[1]), r->bytes_s),
				dur(b[2], sizeof(b[2]), r->rcv ? r->rcv->latency : NULL, 0.5),
				dur(b[3], sizeof(b[3]), r->rcv ? r->rcv->latency : NULL, 0.99),
				dur(b[4], sizeof(b[4]), r->snd ? r->snd->send_dur : NULL, 0.5));
			shown++;
		}
	} else {
		fprintf(out, "%-20s    %-20s %-14s %7s %6s %6s\n", "SENDER", "RECEIVER", "TRANSPORT",
			"MSG/s", "LAT50", "LAT99");
		for (size_t i = 0; pairs && i < np && (int)shown < budget; i++) {
			const struct agg_pair *p = pairs[i].p;
			const char *sc = agg_comm(a, p->sender, p->sender_tag);
			const char *rc = agg_comm(a, p->receiver, p->receiver_tag);
			if ((!report_agg_proc_wanted(a, f, p->sender, p->sender_tag) &&
			     !report_agg_proc_wanted(a, f, p->receiver, p->receiver_tag)) ||
			    (f->top && shown >= f->top) || !report_transport_wanted(f, p->transport))
				continue;
			char clean[LT_NAME_CLEAN_LEN(LOTRACE_COMM_LEN)], both[16 + sizeof(clean)];
			lt_name_clean(clean, sizeof(clean), sc);
			snprintf(both, sizeof(both), "%u/%s", p->sender, clean);
			lt_name_column(out, both, 20);
			fputs(" -> ", out);
			lt_name_clean(clean, sizeof(clean), rc);
			snprintf(both, sizeof(both), "%u/%s", p->receiver, clean);
			lt_name_column(out, both, 20);
			fprintf(out, " %-14s %7s %6s %6s\n", lt_transport_name(p->transport),
				rate(b[0], sizeof(b[0]), pairs[i].msgs_s),
				dur(b[1], sizeof(b[1]), p->latency, 0.5),
				dur(b[2], sizeof(b[2]), p->latency, 0.99));
			shown++;
		}
	}
	if (!shown)
		fprintf(out, "(no traffic seen yet; `lotrace compare` makes some)\n");
	free(rows);
	free(pairs);
}

int top_run(struct tracer *t, const struct lt_opts *o, const struct report_options *f0,
	    struct agg *a, FILE *out)
{
	struct report_options f = *f0;
	bool keys = !o->top_batch && isatty(STDOUT_FILENO) && isatty(STDIN_FILENO);
	bool pairs_view = o->top_pairs;
	struct top_prev prev_rows = { 0 }, prev_pairs = { 0 };
	int ret = 0;
	if (keys) {
		tty_keys();
		atexit(tty_restore);
	}
	double last = lt_clock_s(CLOCK_MONOTONIC);
	/* The rows' counts at the start: the first frame's rates are of its interval only. */
	if (tracer_snapshot(t))
		ret = 1;
	size_t ignored;
	free(gather_rows(a, &prev_rows, 1, f.sort, &ignored));
	free(gather_pairs(a, &prev_pairs, 1, f.sort, &ignored));
	for (long it = 0; !ret && !lt_stop_requested && (!o->top_iterations || it < o->top_iterations);
	     it++) {
		double until = last + o->top_interval_s;
		bool redraw = false;
		while (!lt_stop_requested && !redraw) {
			double left = until - lt_clock_s(CLOCK_MONOTONIC);
			if (left <= 0)
				break;
			if (tracer_poll_within(t, left < 0.05 ? left : 0.05)) {
				fprintf(stderr, "lotrace: reading the ring buffer failed\n");
				ret = 1;
				break;
			}
			char c;
			struct pollfd pfd = { .fd = STDIN_FILENO, .events = POLLIN };
			while (keys && poll(&pfd, 1, 0) > 0 && read(STDIN_FILENO, &c, 1) == 1) {
				if (c == 'q' || c == 'Q')
					lt_stop_requested = 1;
				else if (c == 's')
					f.sort = (enum report_sort)((f.sort + 1) % REPORT_SORT_COUNT);
				else if (c == 'p')
					pairs_view = !pairs_view;
				else if (c == 'u') /* processes -> units -> cgroups -> processes */
					f.by = (enum report_by)((f.by + 1) % REPORT_BY_COUNT);
				else
					continue;
				redraw = true; /* at once, over the interval so far */
			}
		}
		if (ret || lt_stop_requested)
			break;
		double now = lt_clock_s(CLOCK_MONOTONIC);
		if (tracer_snapshot(t)) {
			ret = 1;
			break;
		}
		int rows = 0, cols = 0;
		if (keys)
			terminal_size(&rows, &cols);
		char *text = NULL;
		size_t len = 0;
		FILE *m = open_memstream(&text, &len);
		if (!m) {
			ret = 1;
			break;
		}
		frame(m, a, &prev_rows, &prev_pairs, now - last, &f, pairs_view, rows, keys);
		fclose(m);
		last = now;
		if (keys) {
			/* Home, clear, then the frame with each line cut to the width. */
			fputs("\033[H\033[2J", out);
			for (char *p = text, *nl; *p; p = nl + 1) {
				nl = strchr(p, '\n');
				if (!nl)
					break;
				fprintf(out, "%.*s\r\n", (int)(nl - p) < cols ? (int)(nl - p) : cols, p);
			}
		} else {
			fprintf(out, "%s\n", text);
		}
		free(text);
		if (fflush(out)) {
			ret = 1;
			break;
		}
	}
	tty_restore();
	free(prev_rows.messages);
	free(prev_rows.bytes);
	free(prev_pairs.messages);
	free(prev_pairs.bytes);
	return ret;
}
