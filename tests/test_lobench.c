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
			      "--bogus 1" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(cmd, sizeof(cmd), "%s %s 2>&1", lobench_path(), bad[i]);
		cr_expect_eq(run_capture(cmd, out, sizeof(out)), 2, "lobench %s: %s", bad[i], out);
	}
}
