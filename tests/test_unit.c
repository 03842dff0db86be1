/* Unit tests of lotrace's user space: histogram, aggregation, outputs, flags. */
#include <criterion/criterion.h>
#include <json-c/json.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "agg.h"
#include "hist.h"
#include "names.h"
#include "opts.h"
#include "prom.h"
#include "report.h"

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* Deterministic xorshift so a failure reproduces. */
static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;
static uint64_t rnd(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return rng_state;
}

Test(hist, buckets_tile_the_value_range)
{
	for (unsigned b = 0; b + 1 < HIST_BUCKETS; b++) {
		cr_assert_leq(hist_bucket_low(b), hist_bucket_high(b), "bucket %u", b);
		cr_assert_eq(hist_bucket_of(hist_bucket_low(b)), b, "low of %u", b);
		cr_assert_eq(hist_bucket_of(hist_bucket_high(b)), b, "high of %u", b);
		cr_assert_eq(hist_bucket_high(b) + 1, hist_bucket_low(b + 1), "gap after %u", b);
	}
	cr_assert_eq(hist_bucket_of(UINT64_MAX), HIST_BUCKETS - 1);
	cr_assert_eq(hist_bucket_high(HIST_BUCKETS - 1), UINT64_MAX);
}

/* Every percentile within half a bucket (1/64 relative) of the exact one. */
Test(hist, percentiles_match_exact_ones_on_random_data)
{
	const size_t n = 200000;
	uint64_t *v = malloc(n * sizeof(*v));
	struct hist *h = calloc(1, sizeof(*h));
	for (int dist = 0; dist < 3; dist++) {
		memset(h, 0, sizeof(*h));
		for (size_t i = 0; i < n; i++) {
			double u = (double)(rnd() >> 11) / 9007199254740992.0;
			if (dist == 0) /* log-uniform 100 ns .. 10 ms, like IPC latencies */
				v[i] = (uint64_t)(100.0 * pow(1e5, u));
			else if (dist == 1) /* narrow: 4-5 us */
				v[i] = 4000 + (uint64_t)(u * 1000);
			else /* small exact values */
				v[i] = rnd() % 40;
			hist_add(h, v[i]);
		}
		qsort(v, n, sizeof(*v), cmp_u64);
		const double qs[] = { 0.5, 0.9, 0.99, 0.999 };
		for (size_t k = 0; k < 4; k++) {
			uint64_t exact = v[(size_t)ceil(qs[k] * (double)n) - 1];
			uint64_t got = hist_quantile(h, qs[k]);
			double err = fabs((double)got - (double)exact) / (double)(exact ? exact : 1);
			cr_expect_leq(err, 1.0 / 64 + 1e-9, "dist %d q %.3f: exact %llu got %llu", dist,
				      qs[k], (unsigned long long)exact, (unsigned long long)got);
		}
		cr_expect_eq(h->max, v[n - 1]);
		cr_expect_eq(h->min, v[0]);
		cr_expect_eq(h->count, n);
	}
	free(v);
	free(h);
}

Test(hist, merge_equals_adding_everything)
{
	struct hist *a = calloc(1, sizeof(*a)), *b = calloc(1, sizeof(*b)), *all = calloc(1, sizeof(*all));
	for (int i = 0; i < 10000; i++) {
		uint64_t x = rnd() % 1000000;
		hist_add(i % 3 ? a : b, x);
		hist_add(all, x);
	}
	hist_merge(a, b);
	cr_expect_eq(memcmp(a, all, sizeof(*a)), 0);
	free(a);
	free(b);
	free(all);
}

static void add_event(struct agg *a, int kind, int transport, uint32_t tgid, uint32_t peer,
		      uint64_t v)
{
	struct lt_event e = { .value_ns = v, .tgid = tgid, .peer_tgid = peer, .kind = (uint8_t)kind,
			      .transport = (uint8_t)transport };
	cr_assert_eq(agg_event(a, &e, sizeof(e)), 0);
}

Test(agg, events_land_in_rows_pairs_and_transport_totals)
{
	struct agg *a = agg_new();
	for (int i = 0; i < 100; i++) {
		add_event(a, LT_EV_MESSAGE, LT_UNIX_STREAM, 20, 10, 1000 + (uint64_t)i);
		add_event(a, LT_EV_SEND_DURATION, LT_UNIX_STREAM, 10, 0, 500);
	}
	add_event(a, LT_EV_MESSAGE, LT_TCP, 20, 11, 9000);
	struct agg_proc *recv = agg_proc(a, 20, 0, LT_UNIX_STREAM, LT_RECV);
	cr_assert_not_null(recv->latency);
	cr_expect_eq(recv->latency->count, 100);
	cr_expect_eq(agg_proc(a, 10, 0, LT_UNIX_STREAM, LT_SEND)->send_dur->count, 100);
	cr_expect_eq(agg_pair(a, 10, 0, 20, 0, LT_UNIX_STREAM)->latency->count, 100);
	cr_expect_eq(agg_pair(a, 11, 0, 20, 0, LT_TCP)->latency->count, 1);
	cr_expect_eq(a->transport_latency[LT_UNIX_STREAM].count, 100);
	cr_expect_eq(a->transport_send[LT_UNIX_STREAM].count, 100);
	cr_expect_eq(a->events_processed, 201);
	/* Malformed events are refused and not counted. */
	struct lt_event bad = { .kind = 99 };
	cr_expect_eq(agg_event(a, &bad, sizeof(bad)), -1);
	cr_expect_eq(agg_event(a, &bad, 3), -1);
	cr_expect_eq(a->events_processed, 201);
	agg_free(a);
}

Test(agg, counter_snapshots_replace_values_and_keep_comm)
{
	struct agg *a = agg_new();
	struct lt_proc_key k = { .tgid = 7, .transport = LT_TCP, .direction = LT_SEND };
	agg_set_proc(a, &k, 5, 500, 0, 0, "redis-server");
	agg_set_proc(a, &k, 6, 600, 0, 0, NULL);
	struct agg_proc *p = agg_proc(a, 7, 0, LT_TCP, LT_SEND);
	cr_expect_eq(p->messages, 6);
	cr_expect_eq(p->bytes, 600);
	cr_expect_str_eq(agg_comm(a, 7, 0), "redis-server");
	cr_expect_str_eq(agg_comm(a, 8, 0), "?");
	struct lt_lo_key lk = { .tgid = 7, .l4 = LT_L4_TCP };
	agg_set_lo(a, &lk, 3, 300);
	agg_set_lo(a, &lk, 4, 400);
	cr_expect_eq(a->nlo, 1);
	cr_expect_eq(a->lo[0].bytes, 400);
	agg_free(a);
}

Test(agg, many_rows_stay_findable)
{
	struct agg *a = agg_new();
	for (uint32_t pid = 1; pid <= 20000; pid++)
		agg_proc(a, pid, 0, (int)(pid % LT_TRANSPORT_COUNT), (int)(pid % 2))->messages = pid;
	for (uint32_t pid = 1; pid <= 20000; pid++)
		cr_assert_eq(agg_proc(a, pid, 0, (int)(pid % LT_TRANSPORT_COUNT), (int)(pid % 2))->messages,
			     pid);
	cr_expect_eq(a->nprocs, 20000);
	agg_free(a);
}

static struct agg *sample_agg(void)
{
	struct agg *a = agg_new();
	a->backend = "tracepoint";
	a->lo_attach = "tcx";
	a->duration_s = 2.5;
	a->lost_events = 3;
	a->untimed[LT_UDP] = 2;
	struct lt_proc_key s = { .tgid = 100, .transport = LT_UNIX_STREAM, .direction = LT_SEND };
	struct lt_proc_key r = { .tgid = 200, .transport = LT_UNIX_STREAM, .direction = LT_RECV };
	struct lt_proc_key t = { .tgid = 200, .transport = LT_TCP, .direction = LT_RECV };
	agg_set_proc(a, &s, 10, 640, 0, 0, "cli\"ent\\x");
	agg_set_proc(a, &r, 10, 640, 0, 0, "server");
	agg_set_proc(a, &t, 4, 256, 0, 0, "server");
	struct lt_pair_key pk = { .sender_tgid = 100, .receiver_tgid = 200,
				  .transport = LT_UNIX_STREAM };
	agg_set_pair(a, &pk, 10, 640);
	for (int i = 0; i < 10; i++) {
		add_event(a, LT_EV_MESSAGE, LT_UNIX_STREAM, 200, 100, 4000);
		add_event(a, LT_EV_SEND_DURATION, LT_UNIX_STREAM, 100, 0, 1000);
	}
	for (int i = 0; i < 4; i++)
		add_event(a, LT_EV_MESSAGE, LT_TCP, 200, 300, 10000);
	struct lt_lo_key lk = { .tgid = 300, .l4 = LT_L4_TCP };
	agg_set_lo(a, &lk, 8, 800);
	return a;
}

static json_object *json_of(struct agg *a, struct report_options *f)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *m = open_memstream(&buf, &len);
	report_json(m, a, f);
	fclose(m);
	json_object *doc = json_tokener_parse(buf);
	cr_assert_not_null(doc, "report_json printed invalid JSON: %s", buf);
	free(buf);
	return doc;
}

static json_object *get(json_object *o, const char *k)
{
	json_object *v = NULL;
	cr_assert(json_object_object_get_ex(o, k, &v), "missing key %s", k);
	return v;
}

Test(json, documented_fields_and_values)
{
	struct agg *a = sample_agg();
	struct report_options f = { 0 };
	json_object *d = json_of(a, &f);
	cr_expect_str_eq(json_object_get_string(get(d, "backend")), "tracepoint");
	cr_expect_eq(json_object_get_int(get(d, "lost_events")), 3);
	cr_expect_eq(json_object_get_int(get(d, "untimed_messages")), 2);
	cr_expect_float_eq(json_object_get_double(get(d, "duration_s")), 2.5, 1e-9);
	json_object *procs = get(d, "processes");
	cr_assert_eq(json_object_array_length(procs), 3);
	json_object *p0 = json_object_array_get_idx(procs, 0);
	cr_expect_eq(json_object_get_int(get(p0, "pid")), 100);
	cr_expect_str_eq(json_object_get_string(get(p0, "comm")), "cli\"ent\\x");
	cr_expect_str_eq(json_object_get_string(get(p0, "transport")), "unix_stream");
	cr_expect_str_eq(json_object_get_string(get(p0, "direction")), "send");
	cr_expect_eq(json_object_get_int(get(p0, "bytes")), 640);
	json_object *sd = get(p0, "send_duration_ns");
	cr_expect_eq(json_object_get_int(get(sd, "count")), 10);
	cr_expect_eq(json_object_get_int(get(sd, "p50")), 1000);
	json_object *p1 = json_object_array_get_idx(procs, 2);
	json_object *lat = get(p1, "latency_ns");
	cr_expect_eq(json_object_get_int(get(lat, "count")), 10);
	cr_expect_eq(json_object_get_int(get(lat, "p99")), 4000);
	cr_expect_eq(json_object_get_int(get(lat, "max")), 4000);

	json_object *pair = json_object_array_get_idx(get(d, "pairs"), 0);
	cr_expect_eq(json_object_get_int(get(pair, "sender_pid")), 100);
	cr_expect_str_eq(json_object_get_string(get(pair, "receiver_comm")), "server");
	cr_expect_eq(json_object_get_int(get(pair, "messages")), 10);
	cr_expect_eq(json_object_get_int(get(get(pair, "latency_ns"), "p50")), 4000);

	json_object *lo = get(d, "lo");
	cr_expect_eq(json_object_get_int(get(lo, "packets")), 8);
	cr_expect_eq(json_object_get_int(get(get(get(lo, "by_protocol"), "tcp"), "bytes")), 800);
	json_object *tcp = get(get(d, "transports"), "tcp");
	cr_expect_eq(json_object_get_int(get(get(tcp, "latency_ns"), "count")), 4);
	cr_expect_eq(json_object_get_int(get(get(tcp, "latency_ns"), "p50")), 10000);
	json_object_put(d);
	agg_free(a);
}

Test(json, filters_by_pid_and_comm)
{
	struct agg *a = sample_agg();
	static const int pid200[] = { 200 };
	struct report_options f = { .pids = pid200, .npids = 1 };
	json_object *d = json_of(a, &f);
	json_object *procs = get(d, "processes");
	cr_expect_eq(json_object_array_length(procs), 2);
	for (size_t i = 0; i < json_object_array_length(procs); i++)
		cr_expect_eq(json_object_get_int(get(json_object_array_get_idx(procs, i), "pid")), 200);
	cr_expect_eq(json_object_array_length(get(d, "pairs")), 1, "pairs where either end matches");
	json_object_put(d);

	static const char *const client[] = { "cli\"ent\\x" };
	struct report_options c = { .comms = client, .ncomms = 1 };
	d = json_of(a, &c);
	cr_expect_eq(json_object_array_length(get(d, "processes")), 1);
	json_object_put(d);

	/* --transport: that transport's rows and pairs only (server's tcp row here). */
	struct report_options tcp_only = { .transports = 1u << LT_TCP };
	d = json_of(a, &tcp_only);
	cr_expect_eq(json_object_array_length(get(d, "processes")), 1);
	cr_expect_str_eq(json_object_get_string(get(json_object_array_get_idx(get(d, "processes"), 0),
						    "transport")),
			 "tcp");
	cr_expect_eq(json_object_array_length(get(d, "pairs")), 0, "the only pair is unix_stream");
	json_object_put(d);

	/* Repeated flags are sets: either pid, either name; pid and name both. */
	static const int both[] = { 100, 200 };
	struct report_options two = { .pids = both, .npids = 2 };
	d = json_of(a, &two);
	cr_expect_eq(json_object_array_length(get(d, "processes")), 3);
	json_object_put(d);
	static const char *const names[] = { "nobody", "server" };
	struct report_options named = { .comms = names, .ncomms = 2 };
	d = json_of(a, &named);
	cr_expect_eq(json_object_array_length(get(d, "processes")), 2);
	json_object_put(d);
	struct report_options mismatch = { .pids = both, .npids = 1, .comms = names, .ncomms = 2 };
	d = json_of(a, &mismatch);
	cr_expect_eq(json_object_array_length(get(d, "processes")), 0, "pid 100 is not \"server\"");
	json_object_put(d);
	agg_free(a);
}

Test(table, side_by_side_rows_and_transport_comparison)
{
	struct agg *a = sample_agg();
	struct report_options f = { .wide = true };
	char *buf = NULL;
	size_t len = 0;
	FILE *m = open_memstream(&buf, &len);
	report_table(m, a, &f);
	fclose(m);
	cr_expect(strstr(buf, "SENT MSGS") && strstr(buf, "RECV MSGS"), "%s", buf);
	cr_expect(strstr(buf, "=> unix_stream p50 4.0 us vs tcp p50 10.0 us (2.5x)") != NULL, "%s",
		  buf);
	cr_expect(strstr(buf, "3 lost") != NULL, "%s", buf);
	free(buf);
	agg_free(a);
}

/*
 * A stream read in big recvs: 100 messages in 10 recv calls, 25 timed (with
 * weight 4).  The timed fraction is of the 100 messages, in the JSON recv row
 * and pair and in the table's TIMED column, never of the 10 calls.
 */
Test(table, timed_share_of_the_messages_delivered)
{
	struct agg *a = agg_new();
	a->backend = "tracepoint";
	a->lo_attach = "tcx";
	struct lt_proc_key s = { .tgid = 100, .transport = LT_TCP, .direction = LT_SEND };
	struct lt_proc_key r = { .tgid = 200, .transport = LT_TCP, .direction = LT_RECV };
	agg_set_proc(a, &s, 100, 100000, 0, 0, "writer");
	agg_set_proc(a, &r, 10, 100000, 0, 0, "reader");
	struct lt_pair_key pk = { .sender_tgid = 100, .receiver_tgid = 200, .transport = LT_TCP };
	agg_set_pair(a, &pk, 100, 100000);
	agg_count_delivered(a);
	for (int i = 0; i < 25; i++) {
		struct lt_event e = { .kind = LT_EV_MESSAGE, .transport = LT_TCP, .tgid = 200,
				      .peer_tgid = 100, .value_ns = 50000, .weight = 4 };
		cr_assert_eq(agg_event(a, &e, sizeof(e)), 0);
	}
	struct report_options f = { 0 };
	json_object *d = json_of(a, &f);
	json_object *rows = get(d, "processes"), *recv = NULL;
	for (size_t i = 0; i < json_object_array_length(rows); i++) {
		json_object *row = json_object_array_get_idx(rows, i);
		if (!strcmp(json_object_get_string(get(row, "direction")), "recv"))
			recv = row;
	}
	cr_assert_not_null(recv);
	cr_expect_float_eq(json_object_get_double(get(recv, "timed_fraction")), 0.25, 1e-9);
	json_object *pair = json_object_array_get_idx(get(d, "pairs"), 0);
	cr_expect_float_eq(json_object_get_double(get(pair, "timed_fraction")), 0.25, 1e-9);
	json_object_put(d);

	char *buf = NULL;
	size_t len = 0;
	FILE *m = open_memstream(&buf, &len);
	report_table(m, a, &f);
	fclose(m);
	cr_expect(strstr(buf, " TIMED ") != NULL, "%s", buf);
	/* The reader's row and the pair: 25 % each. */
	const char *row = strstr(buf, "reader");
	cr_assert_not_null(row, "%s", buf);
	cr_expect(strstr(row, "  25% ") != NULL, "%s", buf);
	const char *pairs = strstr(buf, "SENDER");
	cr_assert_not_null(pairs, "%s", buf);
	cr_expect(strstr(pairs, "  25%") != NULL, "%s", buf);
	free(buf);
	agg_free(a);
}

Test(format, durations_read_naturally)
{
	char b[32];
	format_ns(b, sizeof(b), 850);
	cr_expect_str_eq(b, "850 ns");
	format_ns(b, sizeof(b), 4100);
	cr_expect_str_eq(b, "4.1 us");
	format_ns(b, sizeof(b), 12300000);
	cr_expect_str_eq(b, "12.3 ms");
	format_ns(b, sizeof(b), 1200000000);
	cr_expect_str_eq(b, "1.20 s");
}

Test(names, transports_round_trip)
{
	for (int t = 0; t < LT_TRANSPORT_COUNT; t++)
		cr_expect_eq(lt_transport_from_name(lt_transport_name(t)), t);
	cr_expect_eq(lt_transport_from_name("sctp"), -1);
}

/* ---- names other users choose: one cleaning for table, JSON and .prom ---- */

static void expect_clean(const char *in, const char *want)
{
	char out[LT_NAME_CLEAN_LEN(64)];
	lt_name_clean(out, sizeof(out), in);
	cr_expect_str_eq(out, want);
}

Test(names, clean_keeps_valid_multibyte_utf8)
{
	expect_clean("\xc3\xa9\xe4\xb8\xad\xe6\x96\x87", "\xc3\xa9\xe4\xb8\xad\xe6\x96\x87"); /* é中文 */
	expect_clean("a\xf0\x9f\x98\x80z", "a\xf0\x9f\x98\x80z");                    /* a😀z */
	expect_clean("\xf4\x8f\xbf\xbf", "\xf4\x8f\xbf\xbf");                        /* U+10FFFF */
	expect_clean("q\"b\\c", "q\"b\\c");
	/* Columns: é 1, 中 and 文 2 each; emoji 2; a combining acute accent 0. */
	cr_expect_eq(lt_name_width("\xc3\xa9\xe4\xb8\xad\xe6\x96\x87"), 5);
	cr_expect_eq(lt_name_width("a\xf0\x9f\x98\x80z"), 4);
	cr_expect_eq(lt_name_width("e\xcc\x81"), 1);
	cr_expect_eq(lt_name_width("redis-server"), 12);
}

Test(names, clean_replaces_each_invalid_byte)
{
#define FFFD "\xef\xbf\xbd"
	expect_clean("bad\xff", "bad" FFFD);
	expect_clean("\x80x", FFFD "x");                             /* stray continuation */
	expect_clean("\xc0\xaf", FFFD FFFD);                         /* overlong '/' */
	expect_clean("\xed\xa0\x80", FFFD FFFD FFFD);                /* surrogate */
	expect_clean("\xf4\x90\x80\x80", FFFD FFFD FFFD FFFD);       /* past U+10FFFF */
	expect_clean("\xe4\xb8z", FFFD FFFD "z");                    /* cut before a valid byte */
	expect_clean("\x9b[31m", FFFD "[31m");                       /* 8-bit CSI alone */
}

Test(names, clean_makes_controls_visible)
{
	expect_clean("\x1b[31mred", "\\x1b[31mred");
	expect_clean("ev\nil", "ev\\x0ail");
	expect_clean("a\tb\rc", "a\\x09b\\x0dc");
	expect_clean("del\x7f", "del\\x7f");
	expect_clean("c1\xc2\x9b" "2J", "c1\\xc2\\x9b2J");          /* U+009B, CSI */
	expect_clean("\xc2\x85nel", "\\xc2\\x85nel");               /* U+0085, next line */
	expect_clean("rlo\xe2\x80\xae", "rlo\\xe2\\x80\\xae");      /* U+202E, bidi override */
	expect_clean("ls\xe2\x80\xa8", "ls\\xe2\\x80\\xa8");        /* U+2028, line separator */
	/* Every byte from 1 to 255: what comes out is valid UTF-8 without a control character. */
	char all[256], out[LT_NAME_CLEAN_LEN(256)];
	for (int i = 0; i < 255; i++)
		all[i] = (char)(i + 1);
	all[255] = 0;
	lt_name_clean(out, sizeof(out), all);
	for (const unsigned char *p = (const unsigned char *)out; *p; p++) {
		cr_assert(*p >= 0x20 && *p != 0x7f, "control byte 0x%02x left", *p);
		if (*p == 0xc2)
			cr_assert(p[1] > 0x9f, "C1 control U+%04X left", p[1]);
	}
	char again[sizeof(out)];
	lt_name_clean(again, sizeof(again), out);
	cr_expect_str_eq(again, out, "cleaning is idempotent");
}

Test(names, clean_of_a_comm_the_kernel_cut)
{
	/* The kernel keeps 15 bytes of a name (TASK_COMM_LEN 16), cutting characters. */
	const char *names[] = { "a\xe4\xb8\xad\xe4\xb8\xad\xe4\xb8\xad\xe4\xb8\xad\xe4\xb8\xad",
				"\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9" };
	const char *want[] = { "a\xe4\xb8\xad\xe4\xb8\xad\xe4\xb8\xad\xe4\xb8\xad" FFFD FFFD,
			       "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9" FFFD };
	for (int i = 0; i < 2; i++) {
		char comm[LOTRACE_COMM_LEN];
		snprintf(comm, sizeof(comm), "%s", names[i]);
		cr_assert_eq(strlen(comm), LOTRACE_COMM_LEN - 1);
		expect_clean(comm, want[i]);
	}
	cr_expect_eq(lt_name_width("a\xe4\xb8\xad\xe4\xb8\xad\xe4\xb8\xad\xe4\xb8\xad" FFFD FFFD), 11);
	/* A short output buffer gets whole characters and whole escapes only. */
	char small[6];
	lt_name_clean(small, sizeof(small), "a\x1bz");
	cr_expect_str_eq(small, "a\\x1b");
	lt_name_clean(small, 5, "a\x1bz");
	cr_expect_str_eq(small, "a");
	lt_name_clean(small, 6, "ab\xe4\xb8\xad");
	cr_expect_str_eq(small, "ab\xe4\xb8\xad");
	lt_name_clean(small, 6, "abc\xe4\xb8\xad");
	cr_expect_str_eq(small, "abc");
}

/* Processes with hostile and multi-byte names, as the kernel reports them. */
static struct agg *names_agg(void)
{
	static const char *comms[] = { "\xc3\xa9\xe4\xb8\xad\xe6\x96\x87", "\x1b[31mred", "ev\nil",
				       "bad\xff", "\x1b\x1b\x1b\x1b\x1b\x1b" };
	struct agg *a = agg_new();
	a->backend = "tracepoint";
	a->lo_attach = "tcx";
	for (uint32_t i = 0; i < 5; i++) {
		struct lt_proc_key k = { .tgid = 101 + i, .transport = LT_UNIX_STREAM,
					 .direction = LT_SEND };
		agg_set_proc(a, &k, 1 + i, 10 * (1 + i), 0, 0, comms[i]);
		struct lt_pair_key pk = { .sender_tgid = 101 + i, .receiver_tgid = 101,
					  .transport = LT_UNIX_STREAM };
		agg_set_pair(a, &pk, 1 + i, 10 * (1 + i));
	}
	return a;
}

Test(table, names_are_clean_and_keep_their_columns)
{
	struct agg *a = names_agg();
	struct report_options f = { .wide = true };
	char *buf = NULL;
	size_t len = 0;
	FILE *m = open_memstream(&buf, &len);
	report_table(m, a, &f);
	fclose(m);
	for (size_t i = 0; i < len; i++)
		cr_assert((unsigned char)buf[i] >= 0x20 ? buf[i] != 0x7f : buf[i] == '\n',
			  "control byte 0x%02x at %zu:\n%s", (unsigned char)buf[i], i, buf);
	/* COMM is 16 columns wide: é中文 takes 5 of them, so 11 spaces follow it. */
	const char *rows[] = {
		"\n101      \xc3\xa9\xe4\xb8\xad\xe6\x96\x87" "            unix_stream ",
		"\n102      \\x1b[31mred      unix_stream ",
		"\n103      ev\\x0ail         unix_stream ",
		"\n104      bad" FFFD "             unix_stream ",
		"\n105      \\x1b\\x1b\\x1b\\x1\xe2\x80\xa6 unix_stream ", /* cut, with an ellipsis */
		"\n101/\xc3\xa9\xe4\xb8\xad\xe6\x96\x87" "                -> 101/\xc3\xa9\xe4\xb8\xad\xe6\x96\x87",
		"\n102/\\x1b[31mred          -> 101/",
		"\n104/bad" FFFD "                 -> 101/",
	};
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++)
		cr_expect(strstr(buf, rows[i]) != NULL, "no row starting %s in\n%s", rows[i] + 1, buf);
	free(buf);
	agg_free(a);
}

Test(json, names_are_valid_utf8_without_controls)
{
	struct agg *a = names_agg();
	struct report_options f = { 0 };
	json_object *d = json_of(a, &f);
	const char *want[] = { "\xc3\xa9\xe4\xb8\xad\xe6\x96\x87", "\\x1b[31mred", "ev\\x0ail",
			       "bad" FFFD, "\\x1b\\x1b\\x1b\\x1b\\x1b\\x1b" };
	json_object *procs = get(d, "processes");
	cr_assert_eq(json_object_array_length(procs), 5);
	for (size_t i = 0; i < 5; i++) {
		json_object *p = json_object_array_get_idx(procs, i);
		cr_expect_eq(json_object_get_int(get(p, "pid")), 101 + (int)i);
		cr_expect_str_eq(json_object_get_string(get(p, "comm")), want[i]);
	}
	json_object *pair = json_object_array_get_idx(get(d, "pairs"), 1);
	cr_expect_str_eq(json_object_get_string(get(pair, "sender_comm")), want[1]);
	cr_expect_str_eq(json_object_get_string(get(pair, "receiver_comm")), want[0]);
	json_object_put(d);
	/* --comm also takes the name as the outputs show it. */
	static const char *const shown[] = { "ev\\x0ail" };
	struct report_options c = { .comms = shown, .ncomms = 1 };
	d = json_of(a, &c);
	cr_expect_eq(json_object_array_length(get(d, "processes")), 1);
	json_object_put(d);
	agg_free(a);
}

Test(names, prom_labels_are_cleaned_the_same_way)
{
	const char *in[] = { "\xc3\xa9\xe4\xb8\xad\xe6\x96\x87", "\x1b[31mred", "ev\nil", "bad\xff" };
	for (size_t i = 0; i < 4; i++) {
		char label[64], clean[64];
		prom_sanitize(label, sizeof(label), in[i]);
		lt_name_clean(clean, sizeof(clean), in[i]);
		cr_expect_str_eq(label, clean);
	}
	char *buf = NULL;
	size_t len = 0;
	FILE *m = open_memstream(&buf, &len);
	char label[64];
	prom_sanitize(label, sizeof(label), "ev\nil");
	struct prom_label l[1] = { { "comm", label } };
	prom_sample(m, PROM_SENT_BYTES, "", l, 1, 7);
	fclose(m);
	/* One line: the label's backslash is escaped as the text format wants. */
	cr_expect_str_eq(buf, "lotrace_sent_bytes_total{comm=\"ev\\\\x0ail\"} 7\n");
	free(buf);
#undef FFFD
}

static enum lt_parse_result parse(struct lt_opts *o, char **err_out, const char *a1,
				  const char *a2, const char *a3, const char *a4)
{
	char *argv[6] = { "lotrace", (char *)a1, (char *)a2, (char *)a3, (char *)a4, NULL };
	int argc = 1;
	while (argc < 5 && argv[argc])
		argc++;
	static char outbuf[8192];
	char *errbuf = NULL;
	size_t errlen = 0;
	FILE *out = fmemopen(outbuf, sizeof(outbuf), "w");
	FILE *err = open_memstream(&errbuf, &errlen);
	enum lt_parse_result r = lt_parse_args(argc, argv, o, out, err);
	fclose(out);
	fclose(err);
	if (err_out)
		*err_out = errbuf;
	else
		free(errbuf);
	return r;
}

Test(opts, good_flags)
{
	struct lt_opts o;
	cr_assert_eq(parse(&o, NULL, "stat", "--duration", "2.5", "--json"), LT_PARSE_OK);
	cr_expect_float_eq(o.duration_s, 2.5, 1e-9);
	cr_expect(o.json);
	cr_assert_eq(parse(&o, NULL, "stat", "-p", "42", "--comm=redis-server"), LT_PARSE_OK);
	cr_expect_eq(o.npids, 1);
	cr_expect_eq(o.pids[0], 42);
	cr_expect_eq(o.ncomms, 1);
	cr_expect_str_eq(o.comms[0], "redis-server");
	cr_assert_eq(parse(&o, NULL, "stat", "-p", "42", "--pid=7"), LT_PARSE_OK);
	cr_expect_eq(o.npids, 2, "--pid repeats: both are kept");
	cr_expect_eq(o.pids[1], 7);
	cr_assert_eq(parse(&o, NULL, "stat", "-t", "tcp", "--transport=unix_dgram"), LT_PARSE_OK);
	cr_expect_eq(o.transports, (1u << LT_TCP) | (1u << LT_UNIX_DGRAM));
	cr_assert_eq(parse(&o, NULL, "stat", "--backend", "tracepoint", "--lo-attach=clsact"),
		     LT_PARSE_OK);
	cr_expect_eq(o.backend, LT_BACKEND_TRACEPOINT);
	cr_expect_eq(o.lo_mode, LT_LO_CLSACT);
	cr_assert_eq(parse(&o, NULL, "stat", "-b", "kprobe", NULL), LT_PARSE_OK);
	cr_expect_eq(o.backend, LT_BACKEND_KPROBE);
	cr_assert_eq(parse(&o, NULL, "stat", "--backend=fentry", NULL, NULL), LT_PARSE_OK);
	cr_expect_eq(o.backend, LT_BACKEND_FENTRY);
	cr_assert_eq(parse(&o, NULL, "stat", NULL, NULL, NULL), LT_PARSE_OK);
	cr_expect_eq(o.duration_s, 0);
	cr_expect_eq(o.lo_mode, LT_LO_AUTO);
	cr_expect_eq(parse(&o, NULL, "--help", NULL, NULL, NULL), LT_PARSE_EXIT);
	cr_expect_eq(parse(&o, NULL, "stat", "-h", NULL, NULL), LT_PARSE_EXIT);
}

Test(opts, trace_defaults_and_flags)
{
	struct lt_opts o;
	cr_assert_eq(parse(&o, NULL, "trace", NULL, NULL, NULL), LT_PARSE_OK);
	cr_expect_eq(o.command, LT_CMD_TRACE);
	cr_expect_eq(o.trace_rate, 1000, "a bound by default");
	cr_expect_eq(o.lo_mode, LT_LO_NONE, "trace shows no lo line: no clsact/tcx needed");
	cr_assert_eq(parse(&o, NULL, "trace", "--rate=50", "-j", "--pid=7"), LT_PARSE_OK);
	cr_expect_eq(o.trace_rate, 50);
	cr_expect(o.json);
	cr_expect_eq(o.npids, 1);
	cr_assert_eq(parse(&o, NULL, "trace", "-d", "1.5", "--transport=tcp"), LT_PARSE_OK);
	cr_expect_float_eq(o.duration_s, 1.5, 1e-9);
	cr_expect_eq(o.transports, 1u << LT_TCP);
	cr_assert_eq(parse(&o, NULL, "top", "--by", "unit", "--unit=a.service"), LT_PARSE_OK);
	cr_expect_eq(o.by, REPORT_BY_UNIT);
	cr_expect_eq(o.nunits, 1);
	cr_assert_eq(parse(&o, NULL, "stat", "--by=cgroup", "--cgroup", "/system.slice"), LT_PARSE_OK);
	cr_expect_eq(o.by, REPORT_BY_CGROUP);
	cr_expect_str_eq(o.cgroups[0], "/system.slice");
}

Test(opts, help_fits_80_columns)
{
	const char *commands[] = { "stat", "export", "compare", "top", "trace" };
	for (size_t c = 0; c < sizeof(commands) / sizeof(commands[0]); c++) {
		char *argv[] = { "lotrace", (char *)commands[c], "--help", NULL };
		char *text = NULL;
		size_t len = 0;
		FILE *out = open_memstream(&text, &len), *err = fopen("/dev/null", "w");
		struct lt_opts o;
		cr_assert_eq(lt_parse_args(3, argv, &o, out, err), LT_PARSE_EXIT);
		fclose(out);
		fclose(err);
		cr_assert_gt(len, 900, "%s --help is short: %s", commands[c], text);
		int line = 1;
		for (char *p = text, *nl; *p; p = nl + 1, line++) {
			nl = strchr(p, '\n');
			if (!nl)
				nl = p + strlen(p) - 1;
			cr_expect_leq(nl - p, 80, "%s --help line %d is %ld columns: %.*s", commands[c],
				      line, (long)(nl - p), (int)(nl - p), p);
		}
		free(text);
	}
}

Test(opts, a_seventeenth_pid_is_refused_not_dropped)
{
	char *argv[2 + 2 * (LT_MAX_FILTER_VALUES + 1)];
	char pids[LT_MAX_FILTER_VALUES + 1][8];
	int argc = 0;
	argv[argc++] = "lotrace";
	argv[argc++] = "stat";
	for (int i = 0; i <= LT_MAX_FILTER_VALUES; i++) {
		snprintf(pids[i], sizeof(pids[i]), "%d", i + 1);
		argv[argc++] = "--pid";
		argv[argc++] = pids[i];
	}
	struct lt_opts o;
	char *errbuf = NULL;
	size_t errlen = 0;
	FILE *out = fopen("/dev/null", "w"), *err = open_memstream(&errbuf, &errlen);
	cr_assert_eq(lt_parse_args(argc - 2, argv, &o, out, err), LT_PARSE_OK, "16 pids are fine");
	cr_expect_eq(o.npids, LT_MAX_FILTER_VALUES);
	cr_expect_eq(lt_parse_args(argc, argv, &o, out, err), LT_PARSE_ERROR);
	fclose(out);
	fclose(err);
	cr_expect(strstr(errbuf, "--pid") && strstr(errbuf, "at most 16"), "error: %s", errbuf);
	free(errbuf);
}

Test(opts, bad_flags_name_the_flag)
{
	struct {
		const char *a1, *a2, *a3, *mention;
	} cases[] = {
		{ "stat", "--duration", "0", "--duration" },
		{ "stat", "--duration", "1e999", "--duration" },
		{ "stat", "--pid", "-3", "--pid" },
		{ "stat", "--comm", "", "--comm" },
		{ "stat", "--json=yes", NULL, "--json" },
		{ "stat", "--backend", "kprobes", "--backend" },
		{ "stat", "-x", NULL, "-x" },
		{ "stat", "--pid", NULL, "--pid" },
		{ "stat", "--sort", "latency", "--sort" },
		{ "stat", "--top", "0", "--top" },
		{ "stat", "--top", "5x", "--top" },
		{ "stat", "--transport", "sctp", "--transport" },
		{ "frob", NULL, NULL, "frob" },
		{ "trace", "--rate", "0", "--rate" },
		{ "trace", "--rate", "many", "--rate" },
		{ "trace", "--wide", NULL, "--wide" },
		{ "trace", "--lo-attach", "tcx", "--lo-attach" },
		{ "stat", "--rate", "10", "--rate" },
		{ "stat", "--by", "comm", "--by" },
		{ "stat", "--unit", "a/b", "--unit" },
		{ "stat", "--cgroup", "system.slice", "--cgroup" },
		{ "compare", "--unit", "a.service", "--unit" },
		{ "trace", "--by", "unit", "--by" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct lt_opts o;
		char *err = NULL;
		cr_expect_eq(parse(&o, &err, cases[i].a1, cases[i].a2, cases[i].a3, NULL),
			     LT_PARSE_ERROR, "case %zu", i);
		cr_expect(strstr(err, cases[i].mention) != NULL, "case %zu: %s", i, err);
		free(err);
	}
}

static char *table_with(struct agg *a, const struct report_options *f)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *m = open_memstream(&buf, &len);
	report_table(m, a, f);
	fclose(m);
	return buf;
}

static char *table_of(struct agg *a, bool wide)
{
	struct report_options f = { .wide = wide };
	return table_with(a, &f);
}

/*
 * Issue 11: the kernel's totals hold more than the rows (rows evicted from
 * the LRU maps): JSON and table say what was folded, per transport and
 * direction, and rows + folded == totals.
 */
Test(json, folded_is_totals_minus_rows)
{
	struct agg *a = sample_agg(); /* unix_stream: 100 sent 10/640, 200 received 10/640 */
	a->totals[LT_TOT_PROC_BASE + LT_UNIX_STREAM * LT_DIRECTION_COUNT + LT_SEND] =
		(struct lt_count){ 13, 700 };
	a->totals[LT_TOT_PROC_BASE + LT_UNIX_STREAM * LT_DIRECTION_COUNT + LT_RECV] =
		(struct lt_count){ 10, 640 };
	a->totals[LT_TOT_PAIR_BASE + LT_UNIX_STREAM] = (struct lt_count){ 11, 650 };
	a->totals[LT_TOT_LO_BASE + LT_L4_TCP] = (struct lt_count){ 9, 900 };
	struct report_options f = { 0 };
	json_object *doc = json_of(a, &f);
	json_object *pr = get(get(get(doc, "folded"), "processes"), "unix_stream");
	cr_expect_eq(json_object_get_int64(get(get(pr, "send"), "messages")), 3);
	cr_expect_eq(json_object_get_int64(get(get(pr, "send"), "bytes")), 60);
	cr_expect_eq(json_object_get_int64(get(get(pr, "recv"), "messages")), 0);
	json_object *tcp = get(get(get(doc, "folded"), "processes"), "tcp");
	cr_expect_eq(json_object_get_int64(get(get(tcp, "recv"), "messages")), 0,
		     "no totals read: nothing folded, never negative");
	json_object *pair = get(get(get(doc, "folded"), "pairs"), "unix_stream");
	cr_expect_eq(json_object_get_int64(get(pair, "messages")), 1);
	cr_expect_eq(json_object_get_int64(get(pair, "bytes")), 10);
	json_object *lo = get(get(get(doc, "folded"), "lo"), "tcp");
	cr_expect_eq(json_object_get_int64(get(lo, "packets")), 1);
	/* lo per protocol is the exact total: rows (8) + folded (1). */
	cr_expect_eq(json_object_get_int64(get(get(get(get(doc, "lo"), "by_protocol"), "tcp"),
					       "packets")),
		     9);
	json_object_put(doc);
	char *table = table_of(a, true);
	cr_expect(strstr(table, "folded (rows evicted from the kernel maps; in no row above): "
				"unix_stream send 3 msgs 60 bytes, pairs unix_stream 1 msgs 10 bytes, "
				"lo tcp 1 packets 100 bytes\n") != NULL,
		  "%s", table);
	free(table);
	agg_free(a);
}

/* The widest a table can get: 7-digit pids, 15-character (and wide UTF-8) names, big numbers. */
static struct agg *widest_agg(void)
{
	struct agg *a = agg_new();
	a->backend = "tracepoint";
	a->lo_attach = "clsact";
	a->duration_s = 86400;
	a->events_processed = 123456789012345ull;
	a->lost_events = 98765432109ull;
	a->map_full = 123456789;
	a->missed_runs = 987654321;
	static const char *const comms[] = { "redis-benchmark", "\xe4\xb8\xad\xe6\x96\x87\xe4\xb8\xad\xe6\x96\x87"
					     "\xe4\xb8\xad\xe6\x96\x87\xe4\xb8\xad" };
	for (uint32_t t = 0; t < LT_TRANSPORT_COUNT; t++) {
		for (uint32_t d = 0; d < LT_DIRECTION_COUNT; d++) {
			struct lt_proc_key k = { .tgid = 4194304 - t, .transport = t, .direction = d };
			agg_set_proc(a, &k, 999999999999ull, 999999999999999ull, 0, 0, comms[t % 2]);
			a->totals[LT_TOT_PROC_BASE + t * LT_DIRECTION_COUNT + d] =
				(struct lt_count){ 1999999999999ull, 1999999999999999ull };
		}
		struct lt_pair_key pk = { .sender_tgid = 4194304 - t, .receiver_tgid = 4194300 + t,
					  .transport = t };
		agg_set_pair(a, &pk, 999999999999ull, 999999999999999ull);
		a->totals[LT_TOT_PAIR_BASE + t] = (struct lt_count){ 1999999999999ull, 1 };
		for (int c = 0; c <= LT_UNTIMED_UNMATCHED; c++)
			a->untimed_by_cause[c][t] = 123456789012ull;
		add_event(a, LT_EV_MESSAGE, (int)t, 4194304 - t, 4194300 + t, 987654321012ull);
		add_event(a, LT_EV_SEND_DURATION, (int)t, 4194304 - t, 0, 99999999999ull);
	}
	for (int l = 0; l < LT_L4_COUNT; l++) {
		struct lt_lo_key lk = { .tgid = 4194304, .l4 = (uint32_t)l };
		agg_set_lo(a, &lk, 999999999999ull, 999999999999999ull);
		a->totals[LT_TOT_LO_BASE + l] = (struct lt_count){ 1999999999999ull, 1999999999999999ull };
	}
	return a;
}

/* Issue 12: the default table fits 80 columns, whatever it holds; --wide need not. */
Test(table, fits_80_columns_by_default)
{
	struct agg *a = widest_agg();
	for (int wide = 0; wide < 2; wide++) {
		char *table = table_of(a, wide);
		int widest = 0, line = 1;
		for (char *p = table, *nl; *p; p = nl + 1, line++) {
			nl = strchr(p, '\n');
			cr_assert_not_null(nl, "the table ends without a newline");
			*nl = 0;
			int w = lt_name_width(p);
			if (w > widest)
				widest = w;
			if (!wide)
				cr_expect_leq(w, REPORT_COLUMNS, "line %d is %d columns:\n%s", line, w, p);
			*nl = '\n';
		}
		if (wide)
			cr_expect_gt(widest, REPORT_COLUMNS, "the test's data is not wide enough");
		/* Both say what their short column names mean. */
		if (!wide)
			cr_expect(strstr(table, "LAT: from the sender entering send") &&
					  strstr(table, "SEND: time inside the send call"),
				  "%s", table);
		free(table);
	}
	agg_free(a);
}

Test(format, short_durations_and_counts_take_at_most_6_characters)
{
	static const struct {
		uint64_t ns;
		const char *want;
	} ns[] = { { 0, "0ns" },          { 999, "999ns" },        { 1000, "1.0us" },
		   { 4149, "4.1us" },     { 12345, "12.3us" },     { 99949, "99.9us" },
		   { 99950, "100us" },    { 999499, "999us" },     { 999500, "1.0ms" },
		   { 12345678, "12.3ms" }, { 999500000, "1.00s" }, { 12345678901ull, "12.3s" },
		   { 86400000000000ull, "86400s" }, { UINT64_MAX, ">1day" } };
	char b[32];
	for (size_t i = 0; i < sizeof(ns) / sizeof(ns[0]); i++) {
		format_ns_short(b, sizeof(b), ns[i].ns);
		cr_expect_str_eq(b, ns[i].want, "%llu ns", (unsigned long long)ns[i].ns);
	}
	static const struct {
		uint64_t n;
		const char *want;
	} counts[] = { { 0, "0" },           { 99999, "99999" },       { 100000, "100.0k" },
		       { 999949, "999.9k" }, { 999950, "1.00M" },       { 12345678, "12.3M" },
		       { 999999999999ull, "1.00T" }, { 18446744073709551615ull, "18.4E" } };
	for (size_t i = 0; i < sizeof(counts) / sizeof(counts[0]); i++) {
		format_count_short(b, sizeof(b), counts[i].n);
		cr_expect_str_eq(b, counts[i].want, "%llu", (unsigned long long)counts[i].n);
	}
	/* Every magnitude, and the values just under each rounding step. */
	for (uint64_t v = 1; v && v < UINT64_MAX / 10; v *= 10) {
		for (uint64_t d = 0; d < 3; d++) {
			uint64_t x = v * 10 - 1 - d * (v / 2);
			format_ns_short(b, sizeof(b), x);
			cr_expect_leq(strlen(b), 6, "%llu ns: %s", (unsigned long long)x, b);
			format_count_short(b, sizeof(b), x);
			cr_expect_leq(strlen(b), 6, "%llu: %s", (unsigned long long)x, b);
		}
	}
}

/* Issue 12: rows largest first by the --sort key; --top N shows N and says how many more. */
Test(table, sorted_by_traffic_and_cut_by_top)
{
	struct agg *a = agg_new();
	a->backend = "tracepoint";
	a->lo_attach = "tcx";
	/* pid 10: few messages, slow; 20: many, fast; 30: in between. */
	static const struct {
		uint32_t pid;
		uint64_t msgs, bytes, lat, send;
		const char *comm;
	} p[] = { { 10, 5, 50000, 900000, 9000, "slow" },
		  { 20, 500, 5000, 2000, 1000, "busy" },
		  { 30, 50, 500, 20000, 90000, "middle" } };
	for (int i = 0; i < 3; i++) {
		struct lt_proc_key s = { .tgid = p[i].pid, .transport = LT_TCP, .direction = LT_SEND };
		struct lt_proc_key r = { .tgid = p[i].pid + 1, .transport = LT_TCP, .direction = LT_RECV };
		agg_set_proc(a, &s, p[i].msgs, p[i].bytes, 0, 0, p[i].comm);
		agg_set_proc(a, &r, p[i].msgs, p[i].bytes, 0, 0, "peer");
		struct lt_pair_key pk = { .sender_tgid = p[i].pid, .receiver_tgid = p[i].pid + 1,
					  .transport = LT_TCP };
		agg_set_pair(a, &pk, p[i].msgs, p[i].bytes);
		add_event(a, LT_EV_MESSAGE, LT_TCP, p[i].pid + 1, p[i].pid, p[i].lat);
		add_event(a, LT_EV_SEND_DURATION, LT_TCP, p[i].pid, 0, p[i].send);
	}
	static const struct {
		enum report_sort sort;
		const char *first, *second;
	} cases[] = { { REPORT_SORT_MSGS, "\n20 ", "\n21 " }, { REPORT_SORT_BYTES, "\n10 ", "\n11 " },
		      { REPORT_SORT_P99, "\n11 ", "\n31 " }, { REPORT_SORT_SEND, "\n30 ", "\n10 " },
		      { REPORT_SORT_PID, "\n10 ", "\n11 " } };
	for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		struct report_options o = { .sort = cases[c].sort, .top = 2 };
		char *t = NULL;
		size_t len = 0;
		FILE *m = open_memstream(&t, &len);
		report_table(m, a, &o);
		fclose(m);
		const char *rows = strstr(t, "\nPID"), *x = strstr(t, cases[c].first),
			   *y = strstr(t, cases[c].second);
		cr_assert_not_null(rows);
		cr_expect(x && y && rows < x && x < y, "--sort %s: %s then %s:\n%s",
			  report_sort_names[cases[c].sort], cases[c].first + 1, cases[c].second + 1, t);
		cr_expect(strstr(t, "... 4 more rows (--top 2 shows the first 2)") != NULL,
			  "--top 2 of 6 rows:\n%s", t);
		cr_expect(strstr(t, "... 1 more pairs (--top 2 shows the first 2)") != NULL,
			  "--top 2 of 3 pairs:\n%s", t);
		free(t);
	}
	/* JSON keeps every row whatever --top says. */
	struct report_options o = { .top = 1 };
	json_object *d = json_of(a, &o);
	cr_expect_eq(json_object_array_length(get(d, "processes")), 6);
	json_object_put(d);
	agg_free(a);
}

/* Issue 12: --hist draws each transport's latencies in power-of-two ranges, weighted. */
Test(table, latency_histogram_per_transport)
{
	struct agg *a = agg_new();
	a->backend = "tracepoint";
	a->lo_attach = "tcx";
	/* unix_stream: 100 at 1500 ns, 50 at 3000 ns, 1 at 0; tcp: 10 samples standing for 40. */
	for (int i = 0; i < 100; i++)
		add_event(a, LT_EV_MESSAGE, LT_UNIX_STREAM, 2, 1, 1500);
	for (int i = 0; i < 50; i++)
		add_event(a, LT_EV_MESSAGE, LT_UNIX_STREAM, 2, 1, 3000);
	add_event(a, LT_EV_MESSAGE, LT_UNIX_STREAM, 2, 1, 0);
	for (int i = 0; i < 10; i++) {
		struct lt_event e = { .kind = LT_EV_MESSAGE, .transport = LT_TCP, .tgid = 4,
				      .peer_tgid = 3, .value_ns = 5000000, .weight = 4 };
		cr_assert_eq(agg_event(a, &e, sizeof(e)), 0);
	}
	struct report_options o = { .hist = true };
	char *t = NULL;
	size_t len = 0;
	FILE *m = open_memstream(&t, &len);
	report_table(m, a, &o);
	fclose(m);
	char bar40[41], bar20[21], bar1[2] = "@";
	memset(bar40, '@', 40);
	bar40[40] = 0;
	memset(bar20, '@', 20);
	bar20[20] = 0;
	char want[160];
	cr_expect(strstr(t, "unix_stream latency, nanoseconds (151 messages):") != NULL, "%s", t);
	snprintf(want, sizeof(want), "[0]                       1 |%-40s|\n", bar1);
	cr_expect(strstr(t, want) != NULL, "want %s in:\n%s", want, t);
	snprintf(want, sizeof(want), "[1K, 2K)                100 |%s|\n", bar40);
	cr_expect(strstr(t, want) != NULL, "want %s in:\n%s", want, t);
	snprintf(want, sizeof(want), "[2K, 4K)                 50 |%-40s|\n", bar20);
	cr_expect(strstr(t, want) != NULL, "want %s in:\n%s", want, t);
	cr_expect(strstr(t, "[4K, 8K)") == NULL, "an empty range between the ends:\n%s", t);
	cr_expect(strstr(t, "tcp latency, nanoseconds (40 messages, sampled, weighted):") != NULL,
		  "%s", t);
	snprintf(want, sizeof(want), "[4M, 8M)                 40 |%s|\n", bar40);
	cr_expect(strstr(t, want) != NULL, "want %s in:\n%s", want, t);
	for (char *p = t, *nl; (nl = strchr(p, '\n')); p = nl + 1)
		cr_expect_leq(nl - p, REPORT_COLUMNS, "%.*s", (int)(nl - p), p);
	free(t);
	agg_free(a);
}

/* Issue 13: an idle host's table says so, and how to see lotrace work. */
Test(table, an_empty_table_says_why_and_what_to_try)
{
	struct agg *a = agg_new();
	a->backend = "tracepoint";
	a->lo_attach = "tcx";
	a->duration_s = 10;
	char *t = table_of(a, false);
	cr_expect(strstr(t, "(no traffic seen in 10.0 s; `lotrace compare` makes some)")
		  != NULL, "%s", t);
	free(t);
	agg_free(a);
}

/* Issue 11: one pid, two processes (a reused pid): two rows, each under its own name. */
Test(table, a_reused_pid_shows_both_processes)
{
	struct agg *a = agg_new();
	a->backend = "tracepoint";
	a->lo_attach = "tcx";
	struct lt_proc_key old = { .tgid = 42, .tag = 7, .transport = LT_UDP, .direction = LT_SEND };
	struct lt_proc_key new = { .tgid = 42, .tag = 9, .transport = LT_UDP, .direction = LT_SEND };
	agg_set_proc(a, &new, 2, 20, 2000, 0, "newer");
	agg_set_proc(a, &old, 1, 10, 1000, 0, "older");
	add_event(a, LT_EV_SEND_DURATION, LT_UDP, 42, 0, 500);
	cr_expect_str_eq(agg_comm(a, 42, 7), "older");
	cr_expect_str_eq(agg_comm(a, 42, 9), "newer");
	cr_expect_str_eq(agg_comm_latest(a, 42), "newer");
	struct report_options by_pid = { .wide = true, .sort = REPORT_SORT_PID };
	char *table = NULL;
	size_t len = 0;
	FILE *m = open_memstream(&table, &len);
	report_table(m, a, &by_pid);
	fclose(m);
	char *o = strstr(table, "42       older"), *n = strstr(table, "42       newer");
	cr_expect(o && n && o < n, "both, in start order:\n%s", table);
	free(table);
	agg_free(a);
}

/*
 * Issue 12: --by unit sums a unit's processes per transport (histograms
 * merged) and its pairs per (sender unit, receiver unit); --unit/--cgroup
 * keep the processes they name; JSON rows carry cgroup and unit.
 */
static struct agg *units_agg(void)
{
	struct agg *a = agg_new();
	a->backend = "tracepoint";
	a->lo_attach = "none";
	a->duration_s = 1;
	agg_set_cgroup(a, 11, "/system.slice/redis-server.service");
	agg_set_cgroup(a, 12, "/user.slice/user-0.slice/session-1.scope/bench");
	struct lt_proc_key k = { .transport = LT_TCP };
	/* two redis processes (send), one client (recv) */
	k.tgid = 100, k.direction = LT_SEND;
	agg_set_proc(a, &k, 10, 1000, 0, 11, "redis-server");
	k.tgid = 101;
	agg_set_proc(a, &k, 5, 500, 0, 11, "redis-server");
	k.tgid = 200, k.direction = LT_RECV;
	agg_set_proc(a, &k, 15, 1500, 0, 12, "redis-benchmark");
	struct lt_pair_key pk = { .sender_tgid = 100, .receiver_tgid = 200, .transport = LT_TCP };
	agg_set_pair(a, &pk, 10, 1000);
	pk.sender_tgid = 101;
	agg_set_pair(a, &pk, 5, 500);
	for (int i = 0; i < 15; i++)
		add_event(a, LT_EV_MESSAGE, LT_TCP, 200, i < 10 ? 100 : 101, 3000);
	return a;
}

Test(table, by_unit_sums_processes_and_pairs)
{
	struct agg *a = units_agg();
	struct report_options f = { .by = REPORT_BY_UNIT };
	char *buf = table_with(a, &f);
	cr_expect(strstr(buf, "UNIT "), "%s", buf);
	/* both redis processes in one row: 15 sent */
	cr_expect(strstr(buf, "redis-server.service    tcp                15      0"), "%s", buf);
	cr_expect(strstr(buf, "session-1.scope         tcp                 0     15"), "%s", buf);
	cr_expect(strstr(buf, "redis-server.service -> session-1.scope      tcp                15"),
		  "%s", buf);
	free(buf);
	f.by = REPORT_BY_CGROUP;
	buf = table_with(a, &f);
	/* 80 columns: a path keeps its end */
	cr_expect(strstr(buf, "\xe2\x80\xa6" "e/redis-server.service tcp                15"), "%s", buf);
	cr_expect(strstr(buf, "\xe2\x80\xa6/session-1.scope/bench tcp                 0     15"), "%s", buf);
	free(buf);
	f.wide = true;
	buf = table_with(a, &f);
	cr_expect(strstr(buf, "/system.slice/redis-server.service       tcp "), "%s", buf);
	free(buf);
	agg_free(a);
}

/* The JSON processes row of (pid, transport, direction), or NULL. */
static json_object *find_process(json_object *doc, int pid, const char *transport,
				 const char *direction)
{
	json_object *procs = get(doc, "processes");
	for (size_t i = 0; procs && i < json_object_array_length(procs); i++) {
		json_object *p = json_object_array_get_idx(procs, i);
		if (json_object_get_int(get(p, "pid")) == pid &&
		    !strcmp(json_object_get_string(get(p, "transport")), transport) &&
		    !strcmp(json_object_get_string(get(p, "direction")), direction))
			return p;
	}
	return NULL;
}

Test(json, rows_carry_cgroup_and_unit_and_filters_keep_them)
{
	struct agg *a = units_agg();
	const char *units[] = { "session-1.scope" };
	const char *cgroups[] = { "/system.slice/" };
	struct report_options f = { 0 };
	json_object *doc = json_of(a, &f);
	json_object *row = find_process(doc, 100, "tcp", "send");
	cr_assert_not_null(row);
	cr_expect_str_eq(json_object_get_string(json_object_object_get(row, "cgroup")),
			 "/system.slice/redis-server.service");
	cr_expect_str_eq(json_object_get_string(json_object_object_get(row, "unit")),
			 "redis-server.service");
	json_object_put(doc);

	f = (struct report_options){ .units = units, .nunits = 1 };
	doc = json_of(a, &f);
	cr_expect_null(find_process(doc, 100, "tcp", "send"));
	cr_expect_not_null(find_process(doc, 200, "tcp", "recv"));
	json_object_put(doc);

	f = (struct report_options){ .cgroups = cgroups, .ncgroups = 1 };
	doc = json_of(a, &f);
	cr_expect_not_null(find_process(doc, 100, "tcp", "send"));
	cr_expect_not_null(find_process(doc, 101, "tcp", "send"));
	cr_expect_null(find_process(doc, 200, "tcp", "recv"));
	json_object_put(doc);
	const char *prefix_only[] = { "/system.sl" }; /* a path prefix is not a parent cgroup */
	f = (struct report_options){ .cgroups = prefix_only, .ncgroups = 1 };
	doc = json_of(a, &f);
	cr_expect_null(find_process(doc, 100, "tcp", "send"));
	json_object_put(doc);
	agg_free(a);
}
