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
#include <string.h>
#include <time.h>
#include <bpf/libbpf.h>
#include "kmaps.h"
#include "lotrace.skel.h"
#include "names.h"
#include "signals.h"

/* Direct-mapped cache of process names, by (tgid, tag). */
#define COMM_CACHE 1024

struct comm_slot {
	uint64_t id; /* tag << 32 | tgid; 0: empty */
	char name[LT_NAME_CLEAN_LEN(LOTRACE_COMM_LEN)];
};

struct trace_run {
	const struct lt_opts *o;
	const struct report_options *f;
	struct tracer *t;
	struct agg *a;
	FILE *out;
	struct kmap_reader lookup;
	struct comm_slot *comms;
	int64_t realtime_off_ns; /* CLOCK_REALTIME - CLOCK_MONOTONIC */
	uint64_t window;         /* the wall-clock second (of event times) being counted */
	uint64_t in_window;      /* lines printed in it */
	uint64_t window_dropped; /* and not printed */
	uint64_t lines, dropped, filtered;
	uint64_t events; /* timed messages seen */
};

/*
 * A process's name as the kernel recorded it with its counters (so a process
 * that has exited still has one), cleaned; "?" when its row is gone.
 */
static const char *comm_of(struct trace_run *r, uint32_t tgid, uint32_t tag, int transport,
			   int direction)
{
	uint64_t id = (uint64_t)tag << 32 | tgid;
	struct comm_slot *s = &r->comms[(id * 0x9e3779b97f4a7c15ull) >> 54];
	if (s->id == id)
		return s->name;
	struct lt_proc_key k = { .tgid = tgid, .tag = tag, .transport = (__u8)transport,
				 .direction = (__u8)direction };
	struct kmap_entry e;
	const char *comm = NULL;
	if (!kmap_lookup(&r->lookup, bpf_map__fd(r->t->skel->maps.proc_counts), &k,
			 sizeof(struct lt_proc_val), &e))
		comm = kmap_proc_comm(&e);
	if (!comm)
		return "?"; /* not cached: the row may come */
	char raw[LOTRACE_COMM_LEN + 1];
	snprintf(raw, sizeof(raw), "%.*s", (int)strnlen(comm, LOTRACE_COMM_LEN), comm);
	lt_name_clean(s->name, sizeof(s->name), raw);
	s->id = id;
	return s->name;
}

static void format_time(const struct trace_run *r, uint64_t mono_ns, char *buf, size_t len,
			bool iso)
{
	int64_t ns = (int64_t)mono_ns + r->realtime_off_ns;
	time_t sec = (time_t)(ns / 1000000000);
	struct tm tm;
	if (iso) {
		gmtime_r(&sec, &tm);
		size_t n = strftime(buf, len, "%Y-%m-%dT%H:%M:%S", &tm);
		snprintf(buf + n, len - n, ".%06" PRId64 "Z", ns % 1000000000 / 1000);
	} else {
		localtime_r(&sec, &tm);
		size_t n = strftime(buf, len, "%H:%M:%S", &tm);
		snprintf(buf + n, len - n, ".%06" PRId64, ns % 1000000000 / 1000);
	}
}

/* The lines a second lost to --rate, once it is over. */
static void flush_window(struct trace_run *r)
{
	if (!r->window_dropped)
		return;
	char when[40];
	format_time(r, (uint64_t)((int64_t)r->window * 1000000000 - r->realtime_off_ns), when,
		    sizeof(when), r->o->json);
	if (r->o->json)
		fprintf(r->out, "{\"type\": \"not_shown\", \"second\": \"%s\", \"messages\": %" PRIu64
			", \"reason\": \"over --rate %ld/s\"}\n", when, r->window_dropped, r->o->trace_rate);
	else
		fprintf(r->out, "# %" PRIu64 " timed messages of the second from %s not shown: over --rate %ld/s\n",
			r->window_dropped, when, r->o->trace_rate);
	r->window_dropped = 0;
}

static void print_message(struct trace_run *r, const struct lt_event *e, const char *snd,
			  const char *rcv)
{
	const char *transport = lt_transport_name(e->transport);
	char when[40];
	format_time(r, e->at_ns, when, sizeof(when), r->o->json);
	if (r->o->json) {
		fprintf(r->out, "{\"type\": \"message\", \"time\": \"%s\", \"time_ns\": %" PRIu64
			", \"transport\": \"%s\", \"sender\": {\"pid\": %u, \"comm\": ",
			when, (uint64_t)e->at_ns, transport, e->peer_tgid);
		report_json_string(r->out, snd);
		fprintf(r->out, "}, \"receiver\": {\"pid\": %u, \"comm\": ", e->tgid);
		report_json_string(r->out, rcv);
		fprintf(r->out, "}, \"latency_ns\": %" PRIu64 ", \"send_ns\": ", (uint64_t)e->value_ns);
		if (e->send_ns)
			fprintf(r->out, "%u", e->send_ns);
		else
			fputs("null", r->out);
		fprintf(r->out, ", \"weight\": %u}\n", e->weight ? e->weight : 1);
		return;
	}
	/* 80 columns: 15 + 1 + 16 + 3 + 16 + 1 + 14 + 1 + 6 + 1 + 6 */
	char who[64], lat[16], send[16] = "-";
	fprintf(r->out, "%s ", when);
	snprintf(who, sizeof(who), "%u %s", e->peer_tgid, snd);
	lt_name_column(r->out, who, 16);
	fputs(" > ", r->out);
	snprintf(who, sizeof(who), "%u %s", e->tgid, rcv);
	lt_name_column(r->out, who, 16);
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
	const char *snd = comm_of(r, e->peer_tgid, e->peer_tag, e->transport, LT_SEND);
	const char *rcv = comm_of(r, e->tgid, e->tag, e->transport, LT_RECV);
	if (!report_proc_wanted(r->f, e->peer_tgid, snd) && !report_proc_wanted(r->f, e->tgid, rcv)) {
		r->filtered++;
		return;
	}
	uint64_t second = (uint64_t)((int64_t)e->at_ns + r->realtime_off_ns) / 1000000000ull;
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
		fprintf(r->out, "%-15s %-16s > %-16s %-14s %6s %6s\n", "TIME", "SENDER", "RECEIVER",
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
	r.comms = calloc(COMM_CACHE, sizeof(*r.comms));
	if (!r.comms || kmap_reader_init(&r.lookup, sizeof(struct lt_proc_val))) {
		fprintf(stderr, "lotrace: out of memory\n");
		free(r.comms);
		return 1;
	}
	struct timespec rt, mono;
	clock_gettime(CLOCK_REALTIME, &rt);
	clock_gettime(CLOCK_MONOTONIC, &mono);
	r.realtime_off_ns = ((int64_t)rt.tv_sec - mono.tv_sec) * 1000000000 + (rt.tv_nsec - mono.tv_nsec);
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
	free(r.comms);
	return ret;
}
