/* lotrace top: the live view (rates per interval, latency since the start). */
#ifndef LOTRACE_TOP_H
#define LOTRACE_TOP_H

#include <stdio.h>
#include "agg.h"
#include "loader.h"
#include "opts.h"
#include "report.h"

/*
 * Draws a frame every o->top_interval_s with t attached (its events land in
 * a) until SIGINT/SIGTERM, 'q', or o->top_iterations frames.  f: filters,
 * sort and --top.  Returns 0, or 1 when reading the kernel failed.
 */
int top_run(struct tracer *t, const struct lt_opts *o, const struct report_options *f,
	    struct agg *a, FILE *out);

#endif
