/* lotrace trace: one line per timed message. */
#ifndef LOTRACE_TRACE_H
#define LOTRACE_TRACE_H

#include <stdio.h>
#include "agg.h"
#include "loader.h"
#include "opts.h"
#include "report.h"

/*
 * Prints a line to out for every timed message that passes f's filters, at
 * most o->trace_rate a second (the rest counted and said so), until
 * SIGINT/SIGTERM or o->duration_s, then a summary (stderr; in JSON, a last
 * line).  t's events go to a's event sink.  Returns 0, or 1 when reading the
 * kernel or writing out failed.
 */
int trace_run(struct tracer *t, const struct lt_opts *o, const struct report_options *f,
	      struct agg *a, FILE *out);

#endif
