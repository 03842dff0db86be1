/* lotrace compare: a like-for-like ping-pong of every local transport, traced. */
#ifndef LOTRACE_COMPARE_H
#define LOTRACE_COMPARE_H

#include <stdio.h>
#include "agg.h"
#include "loader.h"
#include "opts.h"

/*
 * Runs the ping-pongs with t attached (its events land in a), then prints the
 * table or JSON to out.  Returns 0 when every cell was measured, else 1.
 */
int compare_run(struct tracer *t, const struct lt_opts *o, struct agg *a, FILE *out);

#endif
