/*
 * lotrace trace: one line per timed message, as the kernel times it (the
 * events stat and top fold into histograms).  A message without a latency
 * sample has no event, so it has no line: the summary says how many, by
 * cause.  Lines beyond --rate per second (of the messages' own times) are
 * not printed but counted, and a line says so for each second that lost
 * some.
 */
#include "trace.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "kmaps.h"
#include "names.h"
#include "procid.h"
#include "signals.h"

/* Direct-mapped cache of what the kernel recorded of a process, by (tgid, tag). */
#define PROC_CACHE 1024

struct proc_slot {
	uint64_t id; /* tag << 32 | tgid; 0: empty */
	char name[LT_NAME_CLEAN_LEN(LOTRACE_COMM_LEN)];
	char cgroup[KMAP_CGROUP_PATH_LEN]; /* "": not recorded */
	char unit[KMAP_CGROUP_PATH_LEN];
};

struct trace_run {
	const struct lt_opts *o;
	const struct report_options *f;
	struct tracer *t;
	struct agg *a;
	FILE *out;
	struct kmap_reader lookup;
	struct proc_slot *procs;
	int64_t realtime_off_ns; /* CLOCK_REALTIME - CLOCK_MONOTONIC */
	int64_t start_ns;        /* CLOCK_MONOTONIC when tracing began: the text's TIME 0 */
	int64_t window;          /* the wall-clock second (of event times) being counted */
	uint64_t in_window;      /* lines printed in it */
	uint64_t window_dropped; /* and not printed */
	uint64_t lines, dropped, filtered;
	uint64_t events; /* timed messages seen */
};

static const struct proc_slot unknown_proc = { .name = "?" };

/*
 * A process's name and cgroup as the kernel recorded them with its counters
 * (so a process that has exited still has them); unknown_proc when its row is
 * gone.
 */
static const struct proc_slot *proc_of(struct trace_run *r, uint32_t tgid, uint32_t tag,
				       int transport, int direction)
{
	uint64_t id = (uint64_t)tag << 32 | tgid;
	struct proc_slot *s = &r->procs[(id * 0x9e3779b97f4a7c15ull) >> 54];
	if (s->id == id)
		return s;
	char raw[LOTRACE_COMM_LEN + 1], cgroup[sizeof(s->cgroup)];
	if (tracer_proc_record(r->t, &r->lookup, tgid, tag, transport, direction, raw, sizeof(raw),
			       cgroup, sizeof(cgroup)) ||
	    !raw[0])
		return &unknown_proc; /* not cached (the slot keeps its process): the row may come */
	lt_name_clean(s->name, sizeof(s->name), raw);
	memcpy(s->cgroup, cgroup, sizeof(cgroup));
	s->unit[0] = 0;
	if (s->cgroup[0])
		procid_unit_of(s->cgroup, s->unit, sizeof(s->unit));
	s->id = id;
	return s;
}

/* A CLOCK_MONOTONIC time as UTC, RFC 3339 with microseconds. */
static void format_time(const struct trace_run *r, uint64_t mono_ns, char *buf, size_t len)
{
	int64_t ns = (int64_t)mono_ns + r->realtime_off_ns;
	time_t sec = (time_t)(ns / 1000000000);
	struct tm tm;
	gmtime_r(&sec, &tm);
	size_t n = strftime(buf, len, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(buf + n, len - n, ".%06" PRId64 "Z", ns % 1000000000 / 1000);
}

/* The lines a second lost to --rate, once it is over. */
static void flush_window(struct trace_run *r)
{
	if (!r->window_dropped)
		return;
	int64_t at = r->window * 1000000000 - r->realtime_off_ns; /* CLOCK_MONOTONIC */
	if (r->o->json) {
		char when[40];
		format_time(r, (uint64_t)at, when, sizeof(when));
		fprintf(r->out, "{\"type\": \"not_shown\", \"second\": \"%s\", \"messages\": %" PRIu64
			", \"reason\": \"over --rate %ld/s\"}\n", when, r->window_dropped, r->o->trace_rate);
	} else {
		fprintf(r->out, "# %" PRIu64 " timed messages not shown: over --rate %ld/s in the "
			"second up to %.6f s\n", r->window_dropped, r->o->trace_rate,
			(double)(at + 1000000000 - r->start_ns) / 1e9);
	}
	r->window_dropped = 0;
}

/* A JSON end of a message: {"pid", "comm", "unit"}. */
static void json_end(FILE *out, uint32_t pid, const struct proc_slot *p)
{
	fprintf(out, "{\"pid\": %u, \"comm\": ", pid);
	report_json_string(out, p->name);
	fputs(", \"unit\": ", out);
	if (p->unit[0])
		report_json_string(out, p->unit);
	else
		fputs("null", out);
	fputc('}', out);
}

static void print_message(struct trace_run *r, const struct lt_event *e,
			  const struct proc_slot *snd, const struct proc_slot *rcv)
{
	const char *transport = lt_transport_name(e->transport);
	if (r->o->json) {
		char when[40];
		format_time(r, e->at_ns, when, sizeof(when));
		fprintf(r->out, "{\"type\": \"message\", \"time\": \"%s\", \"time_ns\": %" PRIu64
			", \"transport\": \"%s\", \"sender\": ", when, (uint64_t)e->at_ns, transport);
		json_end(r->out, e->peer_tgid, snd);
		fputs(", \"receiver\": ", r->out);
		json_end(r->out, e->tgid, rcv);
		fprintf(r->out, ", \"latency_ns\": %" PRIu64 ", \"send_ns\": ", (uint64_t)e->value_ns);
		if (e->send_ns)
			fprintf(r->out, "%u", e->send_ns);
		else
			fputs("null", r->out);
		fprintf(r->out, ", \"weight\": %u}\n", e->weight ? e->weight : 1);
		return;
	}
	/* 80 columns: 11 + 1 + 18 + 3 + 18 + 1 + 14 + 1 + 6 + 1 + 6 */
	char who[16 + LT_NAME_CLEAN_LEN(LOTRACE_COMM_LEN)], lat[16], send[16] = "-";
	fprintf(r->out, "%11.6f ", (double)((int64_t)e->at_ns - r->start_ns) / 1e9);
	snprintf(who, sizeof(who), "%u %s", e->peer_tgid, snd->name);
	lt_name_column(r->out, who, 18);
	fputs(" > ", r->out);
	snprintf(who, sizeof(who), "%u %s", e->tgid, rcv->name);
	lt_name_column(r->out, who, 18);
	format_ns_short(lat, sizeof(lat), e->value_ns);
	if (e->send_ns)
		format_ns_short(send, sizeof(send), e->send_ns);
	fprintf(r->out, " %-14s %6s %6s", transport, lat, send);
	if (e->weight > 1)
		fprintf(r->out, " x%u", e->weight);
	fputc('\n', r->out);
}

static void on_event(void *ctx, const struct lt_event *e)
{
	struct trace_run *r = ctx;
	if (e->kind != LT_EV_MESSAGE)
		return; /* a send duration that travelled apart: no message to show it with */
	r->events++;
	/* Host-wide, as stat's summary: what untimed_messages is reckoned against. */
	hist_add_weighted(&r->a->transport_latency[e->transport], e->value_ns, e->weight);
	if (!report_transport_wanted(r->f, e->transport)) {
		r->filtered++;
		return;
	}
	const struct proc_slot *snd = proc_of(r, e->peer_tgid, e->peer_tag, e->transport, LT_SEND);
	const struct proc_slot *rcv = proc_of(r, e->tgid, e->tag, e->transport, LT_RECV);
	if (!(report_proc_wanted(r->f, e->peer_tgid, snd->name) &&
	      report_cgroup_wanted(r->f, snd->cgroup[0] ? snd->cgroup : NULL)) &&
	    !(report_proc_wanted(r->f, e->tgid, rcv->name) &&
	      report_cgroup_wanted(r->f, rcv->cgroup[0] ? rcv->cgroup : NULL))) {
		r->filtered++;
		return;
	}
	int64_t second = ((int64_t)e->at_ns + r->realtime_off_ns) / 1000000000;
	if (second != r->window) {
		flush_window(r);
		r->window = second;
		r->in_window = 0;
	}
	if (r->in_window >= (uint64_t)r->o->trace_rate) {
		r->window_dropped++;
		r->dropped++;
		return;
	}
	r->in_window++;
	r->lines++;
	print_message(r, e, snd, rcv);
}

static void header(struct trace_run *r, const struct agg *a)
{
	if (!r->o->quiet)
		fprintf(stderr, "lotrace: tracing with the %s backend; one line per timed message, "
			"Ctrl-C to stop\n", a->backend);
	if (!r->o->json)
		fprintf(r->out, "%-11s %-18s > %-18s %-14s %6s %6s\n", "TIME(s)", "SENDER", "RECEIVER",
			"TRANSPORT", "LAT", "SEND");
}

/* Totals: lines, what was not shown and why, and the messages with no sample. */
static void summary(struct trace_run *r, const struct agg *a)
{
	uint64_t untimed = 0, sent = 0;
	for (int t = 0; t < LT_TRANSPORT_COUNT; t++) {
		if (!report_transport_wanted(r->f, t))
			continue;
		untimed += a->untimed[t];
		sent += a->totals[LT_TOT_PROC_BASE + t * LT_DIRECTION_COUNT + LT_SEND].n;
	}
	if (r->o->json) {
		fprintf(r->out, "{\"type\": \"summary\", \"lines\": %" PRIu64 ", \"not_shown_rate\": %" PRIu64
			", \"filtered\": %" PRIu64 ", \"lost_events\": %" PRIu64
			", \"host_messages_sent\": %" PRIu64 ", \"host_untimed_messages\": {",
			r->lines, r->dropped, r->filtered, a->lost_events, sent);
		bool first = true;
		for (int c = 0; c <= LT_UNTIMED_UNMATCHED; c++) {
			uint64_t n = 0;
			for (int t = 0; t < LT_TRANSPORT_COUNT; t++)
				if (report_transport_wanted(r->f, t))
					n += a->untimed_by_cause[c][t];
			fprintf(r->out, "%s\"%s\": %" PRIu64, first ? "" : ", ", lt_untimed_cause_name(c), n);
			first = false;
		}
		fputs("}}\n", r->out);
		return;
	}
	if (r->o->quiet)
		return;
	fprintf(stderr, "lotrace: %" PRIu64 " lines; %" PRIu64 " timed messages not shown (over --rate), "
		"%" PRIu64 " filtered out, %" PRIu64 " events lost in the kernel; host-wide %" PRIu64
		" messages sent, %" PRIu64 " without a latency sample (no line: see stat's untimed)\n",
		r->lines, r->dropped, r->filtered, a->lost_events, sent, untimed);
}

int trace_run(struct tracer *t, const struct lt_opts *o, const struct report_options *f,
	      struct agg *a, FILE *out)
{
	struct trace_run r = { .o = o, .f = f, .t = t, .a = a, .out = out };
	int ret = 0;
	r.procs = calloc(PROC_CACHE, sizeof(*r.procs));
	if (!r.procs || kmap_reader_init(&r.lookup, sizeof(struct lt_cgroup_path))) {
		fprintf(stderr, "lotrace: out of memory\n");
		free(r.procs);
		return 1;
	}
	struct timespec rt, mono;
	clock_gettime(CLOCK_REALTIME, &rt);
	clock_gettime(CLOCK_MONOTONIC, &mono);
	r.realtime_off_ns = ((int64_t)rt.tv_sec - mono.tv_sec) * 1000000000 + (rt.tv_nsec - mono.tv_nsec);
	r.start_ns = (int64_t)mono.tv_sec * 1000000000 + mono.tv_nsec;
	a->event_sink = on_event;
	a->event_sink_ctx = &r;
	header(&r, a);
	double start = lt_clock_s(CLOCK_MONOTONIC);
	while (!lt_stop_requested) {
		double left = o->duration_s > 0 ? o->duration_s - (lt_clock_s(CLOCK_MONOTONIC) - start) : 1;
		if (left <= 0)
			break;
		if (tracer_poll_within(t, left)) {
			fprintf(stderr, "lotrace: reading the ring buffer failed\n");
			ret = 1;
			break;
		}
		if (fflush(out) || ferror(out))
			break; /* the reader went away: main says so */
	}
	a->duration_s = lt_clock_s(CLOCK_MONOTONIC) - start;
	tracer_freeze(t);
	tracer_poll(t, 0);
	flush_window(&r);
	if (tracer_snapshot(t))
		ret = 1;
	summary(&r, a);
	a->event_sink = NULL;
	kmap_reader_free(&r.lookup);
	free(r.procs);
	return ret;
}
