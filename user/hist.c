#include "hist.h"

#include <math.h>
#include <string.h>

unsigned hist_bucket_of(uint64_t v)
{
	if (v < HIST_SUB)
		return (unsigned)v;
	unsigned e = 63 - (unsigned)__builtin_clzll(v); /* >= HIST_SUB_BITS */
	unsigned sub = (unsigned)(v >> (e - HIST_SUB_BITS)) & (HIST_SUB - 1);
	return (e - HIST_SUB_BITS + 1) * HIST_SUB + sub;
}

uint64_t hist_bucket_low(unsigned b)
{
	if (b < HIST_SUB)
		return b;
	unsigned e = b / HIST_SUB + HIST_SUB_BITS - 1;
	uint64_t sub = b % HIST_SUB;
	return (HIST_SUB + sub) << (e - HIST_SUB_BITS);
}

uint64_t hist_bucket_high(unsigned b)
{
	if (b < HIST_SUB)
		return b;
	unsigned e = b / HIST_SUB + HIST_SUB_BITS - 1;
	return hist_bucket_low(b) + ((uint64_t)1 << (e - HIST_SUB_BITS)) - 1;
}

void hist_add_weighted(struct hist *h, uint64_t v, uint64_t weight)
{
	if (!weight)
		weight = 1;
	if (!h->count || v < h->min)
		h->min = v;
	if (v > h->max)
		h->max = v;
	h->samples++;
	h->count += weight;
	h->sum += v * weight;
	h->bucket[hist_bucket_of(v)] += weight;
}

void hist_add(struct hist *h, uint64_t v)
{
	hist_add_weighted(h, v, 1);
}

void hist_merge(struct hist *into, const struct hist *from)
{
	if (!from->count)
		return;
	if (!into->count || from->min < into->min)
		into->min = from->min;
	if (from->max > into->max)
		into->max = from->max;
	into->samples += from->samples;
	into->count += from->count;
	into->sum += from->sum;
	for (unsigned b = 0; b < HIST_BUCKETS; b++)
		into->bucket[b] += from->bucket[b];
}

uint64_t hist_quantile(const struct hist *h, double q)
{
	if (!h->count)
		return 0;
	uint64_t rank = (uint64_t)ceil(q * (double)h->count);
	if (rank < 1)
		rank = 1;
	uint64_t seen = 0;
	for (unsigned b = 0; b < HIST_BUCKETS; b++) {
		seen += h->bucket[b];
		if (seen >= rank) {
			uint64_t lo = hist_bucket_low(b), hi = hist_bucket_high(b);
			uint64_t mid = lo + (hi - lo) / 2;
			if (mid < h->min)
				mid = h->min;
			if (mid > h->max)
				mid = h->max;
			return mid;
		}
	}
	return h->max;
}

struct hist_summary hist_summarize(const struct hist *h)
{
	struct hist_summary s;
	memset(&s, 0, sizeof(s));
	s.samples = h->samples;
	s.count = h->count;
	if (!h->count)
		return s;
	s.p50 = hist_quantile(h, 0.50);
	s.p90 = hist_quantile(h, 0.90);
	s.p99 = hist_quantile(h, 0.99);
	s.max = h->max;
	s.min = h->min;
	s.mean = (double)h->sum / (double)h->count;
	return s;
}
