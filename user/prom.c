#include "prom.h"

#include <inttypes.h>
#include "names.h"

const uint64_t prom_bounds_ns[PROM_NBOUNDS] = {
#define PROM_X_BOUND(ns) ns##ULL,
	PROM_BOUNDS_NS(PROM_X_BOUND)
#undef PROM_X_BOUND
};

static const struct {
	const char *name, *type, *help;
} metrics[PROM_METRIC_COUNT] = {
#define PROM_X_DESC(e, name, type, help) [PROM_##e] = { name, type, help },
	PROM_METRICS(PROM_X_DESC)
#undef PROM_X_DESC
};

const char *prom_metric_name(enum prom_metric m)
{
	return metrics[m].name;
}

unsigned prom_bucket_of(uint64_t ns)
{
	unsigned lo = 0, hi = PROM_NBOUNDS; /* answer in [lo, hi] */
	while (lo < hi) {
		unsigned mid = (lo + hi) / 2;
		if (ns <= prom_bounds_ns[mid])
			hi = mid;
		else
			lo = mid + 1;
	}
	return lo;
}

void prom_hist_add(struct prom_hist *h, uint64_t ns, uint64_t weight)
{
	h->bucket[prom_bucket_of(ns)] += weight;
	h->count += weight;
	h->sum_ns += ns * weight;
}

void prom_hist_merge(struct prom_hist *into, const struct prom_hist *from)
{
	for (unsigned i = 0; i <= PROM_NBOUNDS; i++)
		into->bucket[i] += from->bucket[i];
	into->count += from->count;
	into->sum_ns += from->sum_ns;
}

void prom_escape(FILE *f, const char *v)
{
	for (; *v; v++) {
		if (*v == '\\')
			fputs("\\\\", f);
		else if (*v == '"')
			fputs("\\\"", f);
		else if (*v == '\n')
			fputs("\\n", f);
		else
			fputc(*v, f);
	}
}

void prom_sanitize(char *out, size_t len, const char *in)
{
	lt_name_clean(out, len, in);
}

void prom_family(FILE *f, enum prom_metric m)
{
	fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", metrics[m].name, metrics[m].help,
		metrics[m].name, metrics[m].type);
}

static void sample_start(FILE *f, enum prom_metric m, const char *suffix,
			 const struct prom_label *labels, size_t nlabels, const char *le)
{
	fputs(metrics[m].name, f);
	fputs(suffix, f);
	if (nlabels || le) {
		fputc('{', f);
		for (size_t i = 0; i < nlabels; i++) {
			fprintf(f, "%s%s=\"", i ? "," : "", labels[i].name);
			prom_escape(f, labels[i].value);
			fputc('"', f);
		}
		if (le)
			fprintf(f, "%sle=\"%s\"", nlabels ? "," : "", le);
		fputc('}', f);
	}
	fputc(' ', f);
}

void prom_sample(FILE *f, enum prom_metric m, const char *suffix, const struct prom_label *labels,
		 size_t nlabels, uint64_t value)
{
	sample_start(f, m, suffix, labels, nlabels, NULL);
	fprintf(f, "%" PRIu64 "\n", value);
}

void prom_histogram(FILE *f, enum prom_metric m, const struct prom_label *labels, size_t nlabels,
		    const struct prom_hist *h)
{
	uint64_t cum = 0;
	char le[32];

	for (unsigned i = 0; i < PROM_NBOUNDS; i++) {
		cum += h->bucket[i];
		/* %g of the bound in seconds: 5e-07, 2.5e-05, 0.001, 2.5 (as Go prints them). */
		snprintf(le, sizeof(le), "%g", (double)prom_bounds_ns[i] / 1e9);
		sample_start(f, m, "_bucket", labels, nlabels, le);
		fprintf(f, "%" PRIu64 "\n", cum);
	}
	sample_start(f, m, "_bucket", labels, nlabels, "+Inf");
	fprintf(f, "%" PRIu64 "\n", h->count);
	sample_start(f, m, "_sum", labels, nlabels, NULL);
	fprintf(f, "%" PRIu64 ".%09" PRIu64 "\n", h->sum_ns / 1000000000u, h->sum_ns % 1000000000u);
	sample_start(f, m, "_count", labels, nlabels, NULL);
	fprintf(f, "%" PRIu64 "\n", h->count);
}
