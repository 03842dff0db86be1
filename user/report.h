/* lotrace's outputs: the human summary and the JSON document. */
#ifndef LOTRACE_REPORT_H
#define LOTRACE_REPORT_H

#include <stdio.h>
#include "agg.h"

/* A process is wanted when its pid is one of pids and its name one of comms; an empty list takes any. */
struct report_filter {
	const int *pids;
	int npids;
	const char *const *comms;
	int ncomms;
};

void report_table(FILE *out, const struct agg *a, const struct report_filter *f);
void report_json(FILE *out, const struct agg *a, const struct report_filter *f);
/* "850 ns", "4.1 us", "12.3 ms", "1.20 s" */
void format_ns(char *buf, size_t len, uint64_t ns);

#endif
