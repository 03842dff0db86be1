/*
 * Micro-benchmark of lotrace's user-side event path: how many ring-buffer
 * events per second one core aggregates (agg_event: row lookup, histograms).
 * Events cycle over a realistic number of processes and transports.
 * Usage: aggbench [EVENTS] [PROCESSES]
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include "agg.h"

int main(int argc, char **argv)
{
	long n = argc > 1 ? atol(argv[1]) : 50000000;
	long procs = argc > 2 ? atol(argv[2]) : 200;
	if (n <= 0 || procs <= 0) {
		fprintf(stderr, "usage: aggbench [EVENTS > 0] [PROCESSES > 0]\n");
		return 2;
	}
	struct agg *a = agg_new();
	struct lt_event *ev = calloc(4096, sizeof(*ev));
	if (!a || !ev)
		return 1;
	uint64_t x = 88172645463325252ULL;
	for (int i = 0; i < 4096; i++) {
		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		ev[i].tgid = 1000 + (uint32_t)(x % (uint64_t)procs);
		ev[i].peer_tgid = 1000 + (uint32_t)((x >> 20) % (uint64_t)procs);
		ev[i].transport = (uint8_t)((x >> 40) % LT_TRANSPORT_COUNT);
		ev[i].kind = (x >> 50) & 1 ? LT_EV_MESSAGE : LT_EV_SEND_DURATION;
		ev[i].value_ns = 1000 + (x >> 44) % 100000;
	}
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (long i = 0; i < n; i++)
		agg_event(a, &ev[i & 4095], sizeof(*ev));
	clock_gettime(CLOCK_MONOTONIC, &t1);
	double s = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
	printf("{\"events\": %ld, \"processes\": %ld, \"seconds\": %.3f, \"events_per_s\": %.0f, "
	       "\"ns_per_event\": %.1f}\n",
	       n, procs, s, (double)n / s, s * 1e9 / (double)n);
	int ok = a->events_processed == (uint64_t)n;
	agg_free(a);
	free(ev);
	return ok ? 0 : 1;
}
