/*
 * lobench's own ground truth: for every transport and pattern, what one side
 * says it sent is exactly what the other says it received.  No root needed.
 */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <stdio.h>
#include <string.h>
#include "lotrace_run.h"

struct bench_case {
	char args[96];
	long pairs;
	long count; /* 0: duration mode */
	long size;
	bool pingpong;
};

static struct bench_case cases[] = {
	{ "-t unix_stream -p pingpong", 1, 300, 64, true },
	{ "-t unix_stream -u path -p oneway", 2, 300, 1000, false },
	{ "-t unix_stream -u abstract -p stream", 3, 300, 65536, false },
	{ "-t unix_dgram -p pingpong", 2, 300, 1, true },
	{ "-t unix_dgram -u path -p stream", 1, 300, 2048, false },
	{ "-t unix_dgram -u abstract -p oneway", 1, 300, 100, false },
	{ "-t unix_seqpacket -p stream", 2, 300, 512, false },
	{ "-t unix_seqpacket -u path -p pingpong", 1, 300, 100, true },
	{ "-t tcp -a 127.0.0.1 -p pingpong", 3, 300, 64, true },
	{ "-t tcp -a ::1 -p stream", 1, 300, 1048576, false },
	{ "-t tcp -a 127.0.0.1 -p oneway", 1, 300, 16384, false },
	{ "-t udp -a 127.0.0.1 -p stream", 2, 300, 1400, false },
	{ "-t udp -a ::1 -p pingpong", 1, 300, 64, true },
	{ "-t udp -a 127.0.0.1 -p oneway", 1, 300, 100, false },
	{ "-t unix_stream -p stream -d 0.2", 2, 0, 64, false },
	{ "-t udp -p pingpong -d 0.2", 1, 0, 64, true },
	{ "-t unix_dgram -p oneway -d 0.2", 1, 0, 64, false },
};

ParameterizedTestParameters(lobench, ground_truth_balances)
{
	return cr_make_param_array(struct bench_case, cases, sizeof(cases) / sizeof(cases[0]));
}

ParameterizedTest(struct bench_case *c, lobench, ground_truth_balances, .timeout = 60)
{
	char cmd[256];
	if (c->count)
		snprintf(cmd, sizeof(cmd), "%s %s -P %ld -n %ld -s %ld --json", lobench_path(), c->args,
			 c->pairs, c->count, c->size);
	else
		snprintf(cmd, sizeof(cmd), "%s %s -P %ld -s %ld --json", lobench_path(), c->args,
			 c->pairs, c->size);
	json_object *j = run_json(cmd);
	cr_assert_not_null(j, "%s", cmd);
	int64_t sent = jint(j, "clients_total.sent_messages");
	int64_t sent_b = jint(j, "clients_total.sent_bytes");
	if (c->count) {
		cr_expect_eq(sent, c->pairs * c->count, "%s", cmd);
		cr_expect_eq(sent_b, c->pairs * c->count * c->size, "%s", cmd);
	} else {
		cr_expect_gt(sent, 0, "%s", cmd);
		cr_expect_eq(sent_b, sent * c->size, "%s", cmd);
	}
	cr_expect_eq(jint(j, "messages"), sent, "%s", cmd);
	cr_expect_eq(jint(j, "servers_total.recv_messages"), sent, "%s", cmd);
	cr_expect_eq(jint(j, "servers_total.recv_bytes"), sent_b, "%s", cmd);
	if (c->pingpong) {
		cr_expect_eq(jint(j, "servers_total.sent_messages"), sent, "%s", cmd);
		cr_expect_eq(jint(j, "clients_total.recv_bytes"), sent_b, "%s", cmd);
		cr_expect_eq(jint(j, "rtt_ns.count"), sent, "%s", cmd);
		cr_expect_gt(jint(j, "one_way_ns.p50"), 0);
	} else {
		cr_expect_eq(jint(j, "servers_total.sent_messages"), 0, "%s", cmd);
		cr_expect_eq(jint(j, "clients_total.recv_messages"), 0, "%s", cmd);
	}
	/* Each pair is its own two processes. */
	json_object *cl = json_object_object_get(j, "clients");
	cr_expect_eq((long)json_object_array_length(cl), c->pairs);
	json_object_put(j);
}

Test(lobench, bad_flags_exit_2)
{
	char cmd[256], out[4096];
	const char *bad[] = { "-t sctp", "-s 0", "-s 2000000", "-P 0", "-d -1", "-t udp -s 70000",
			      "--bogus 1", "--stamp -s 15", "--read-size 0",
			      "-t unix_dgram -s 64 --read-size 63" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(cmd, sizeof(cmd), "%s %s 2>&1", lobench_path(), bad[i]);
		cr_expect_eq(run_capture(cmd, out, sizeof(out)), 2, "lobench %s: %s", bad[i], out);
	}
}

/*
 * --stamp: the server times every message it receives, whatever the read
 * size (a read may end inside a stamp, or hold many messages).  lobench
 * itself fails if a stamp's sequence number is not the message it expects,
 * so a count equal to the messages sent means every boundary was right.
 */
struct stamp_case {
	char args[96];
	long pairs, count, size;
	long min_reads; /* recv calls the server needs at least (read size < size) */
};

static struct stamp_case stamp_cases[] = {
	{ "-t unix_stream -p stream", 1, 20000, 64, 0 },
	{ "-t unix_stream -p stream --read-size 7", 1, 3000, 64, 3000 * 64 / 7 },
	{ "-t unix_stream -p stream --read-size 4096", 2, 5000, 64, 0 },
	{ "-t tcp -p stream --read-size 65536", 1, 5000, 1000, 0 },
	{ "-t tcp -a ::1 -p oneway --read-size 3", 1, 500, 100, 500 * 100 / 3 },
	{ "-t unix_stream -p pingpong --read-size 5", 1, 300, 64, 300 * 64 / 5 },
	{ "-t tcp -p pingpong", 1, 300, 64, 0 },
	{ "-t unix_dgram -p oneway", 1, 2000, 64, 0 },
	{ "-t unix_dgram -u path -p stream --read-size 4096", 1, 2000, 100, 0 },
	{ "-t unix_seqpacket -p stream", 1, 2000, 16, 0 },
	{ "-t udp -p stream", 1, 2000, 1000, 0 },
	{ "-t udp -a ::1 -p pingpong", 1, 300, 64, 0 },
};

ParameterizedTestParameters(lobench, stamped_latency_every_message)
{
	return cr_make_param_array(struct stamp_case, stamp_cases,
				   sizeof(stamp_cases) / sizeof(stamp_cases[0]));
}

ParameterizedTest(struct stamp_case *c, lobench, stamped_latency_every_message, .timeout = 60)
{
	char cmd[256];
	snprintf(cmd, sizeof(cmd), "%s %s --stamp -P %ld -n %ld -s %ld --json", lobench_path(),
		 c->args, c->pairs, c->count, c->size);
	json_object *j = run_json(cmd);
	cr_assert_not_null(j, "%s", cmd);
	int64_t sent = jint(j, "clients_total.sent_messages");
	cr_expect_eq(sent, c->pairs * c->count, "%s", cmd);
	cr_expect_eq(jint(j, "stamped_latency_ns.count"), sent, "%s: every message timed", cmd);
	cr_expect_eq(jint(j, "servers_total.recv_bytes"), sent * c->size, "%s", cmd);
	cr_expect_geq(jint(j, "servers_total.recv_messages"), c->min_reads, "%s: reads", cmd);
	int64_t mn = jint(j, "stamped_latency_ns.min"), p50 = jint(j, "stamped_latency_ns.p50"),
		p90 = jint(j, "stamped_latency_ns.p90"), p99 = jint(j, "stamped_latency_ns.p99"),
		mx = jint(j, "stamped_latency_ns.max");
	cr_expect(mn > 0 && mn <= p50 && p50 <= p90 && p90 <= p99 && p99 <= mx,
		  "%s: min %lld p50 %lld p90 %lld p99 %lld max %lld", cmd, (long long)mn,
		  (long long)p50, (long long)p90, (long long)p99, (long long)mx);
	/* Every percentile, in order, agreeing with the named ones. */
	json_object *pa = json_object_object_get(json_object_object_get(j, "stamped_latency_ns"), "pct");
	cr_assert_eq(pa ? (long)json_object_array_length(pa) : 0, 101, "%s: pct[0..100]", cmd);
	for (size_t k = 1; k <= 100; k++)
		cr_expect_leq(json_object_get_int64(json_object_array_get_idx(pa, k - 1)),
			      json_object_get_int64(json_object_array_get_idx(pa, k)), "%s: pct[%zu]", cmd, k);
	const int named[] = { 0, 50, 90, 99, 100 };
	const int64_t val[] = { mn, p50, p90, p99, mx };
	for (size_t i = 0; i < 5; i++)
		cr_expect_eq(json_object_get_int64(json_object_array_get_idx(pa, (size_t)named[i])), val[i],
			     "%s: pct[%d]", cmd, named[i]);
	/* A message is received after it was sent and before the run ended. */
	json_object *e = json_object_object_get(j, "elapsed_s");
	double elapsed_ns = e ? json_object_get_double(e) * 1e9 : 0;
	cr_expect_leq((double)mx, elapsed_ns, "%s: max %lld ns beyond the run's %.0f ns", cmd,
		      (long long)mx, elapsed_ns);
	/*
	 * In a ping-pong each message's one-way time is part of its own round
	 * trip, so every stamped percentile is at most the same RTT percentile
	 * (no warm-up here: both sets hold the same messages).
	 */
	if (jint(j, "rtt_ns.count") > 0) {
		cr_expect_leq(p50, jint(j, "rtt_ns.p50"), "%s: one-way p50 vs RTT p50", cmd);
		cr_expect_leq(p90, jint(j, "rtt_ns.p90"), "%s: one-way p90 vs RTT p90", cmd);
		cr_expect_leq(mx, jint(j, "rtt_ns.max"), "%s: one-way max vs RTT max", cmd);
	}
	json_object_put(j);
}

/* Without --stamp nothing changes: no stamped latency in the output. */
Test(lobench, no_stamp_no_stamped_latency, .timeout = 30)
{
	char cmd[256];
	snprintf(cmd, sizeof(cmd), "%s -t unix_stream -p stream -n 100 --json", lobench_path());
	json_object *j = run_json(cmd);
	cr_assert_not_null(j, "%s", cmd);
	cr_expect_eq(jint(j, "stamped_latency_ns.count"), -1);
	cr_expect_eq(jint(j, "servers_total.recv_messages"), 100, "MSG_WAITALL: one read per message");
	json_object_put(j);
}
