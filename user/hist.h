/*
 * Log-linear latency histogram: values below 2^HIST_SUB_BITS are exact; above,
 * each power of two is split into 2^HIST_SUB_BITS buckets, so a reported
 * percentile (bucket midpoint) is within 1/2^(HIST_SUB_BITS+1) of the truth.
 */
#ifndef LOTRACE_HIST_H
#define LOTRACE_HIST_H

#include <stdint.h>

#define HIST_SUB_BITS 5
#define HIST_SUB (1u << HIST_SUB_BITS)
#define HIST_BUCKETS ((64 - HIST_SUB_BITS + 1) * HIST_SUB)

/*
 * Samples may carry weights (a sampled backlog: one sample stands for several
 * messages); count, sum and the buckets are weighted, samples is not.
 */
struct hist {
	uint64_t samples; /* values added */
	uint64_t count;   /* their total weight: the messages they stand for */
	uint64_t sum;
	uint64_t min;
	uint64_t max;
	uint64_t bucket[HIST_BUCKETS];
};

struct hist_summary {
	uint64_t samples, count, p50, p90, p99, max, min;
	double mean;
};

void hist_add(struct hist *h, uint64_t value);
void hist_add_weighted(struct hist *h, uint64_t value, uint64_t weight);
void hist_merge(struct hist *into, const struct hist *from);
unsigned hist_bucket_of(uint64_t value);
/* Smallest and largest value that fall in bucket b. */
uint64_t hist_bucket_low(unsigned b);
uint64_t hist_bucket_high(unsigned b);
/* Value at quantile q (0 < q <= 1): nearest-rank, bucket midpoint, clamped to min/max. */
uint64_t hist_quantile(const struct hist *h, double q);
struct hist_summary hist_summarize(const struct hist *h);

#endif
