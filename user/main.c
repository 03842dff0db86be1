/* lotrace: per-process TCP-loopback and Unix-socket traffic and latency. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include "agg.h"
#include "compare.h"
#include "top.h"
#include "trace.h"
#include "export.h"
#include "loader.h"
#include "opts.h"
#include "signals.h"
#include "report.h"

/*
 * Flushes the report: SIGPIPE is ignored, so a reader that went away is an
 * error here, not a silent death.
 */
static int finish(int ret)
{
	if (fflush(stdout) || ferror(stdout)) {
		fprintf(stderr, "lotrace: cannot write the report: %s\n", strerror(errno));
		ret = 1;
	}
	lt_reraise_fatal_signal();
	return ret;
}

int main(int argc, char **argv)
{
	struct lt_opts opts;
	enum lt_parse_result pr = lt_parse_args(argc, argv, &opts, stdout, stderr);
	if (pr == LT_PARSE_EXIT)
		return 0;
	if (pr == LT_PARSE_ERROR)
		return 2;
	if (opts.command == LT_CMD_EXPORT)
		return export_main(&opts);

	lt_catch_signals(true);

	struct agg *agg = agg_new();
	struct tracer t;
	if (!agg) {
		fprintf(stderr, "lotrace: out of memory\n");
		return 1;
	}
	if (tracer_start(&t, &opts, agg, stderr)) {
		agg_free(agg);
		return 1;
	}
	/* Attached: keep only what detaching needs. */
	if (lt_drop_capabilities(tracer_detach_caps(&t), stderr)) {
		tracer_stop(&t, stderr);
		agg_free(agg);
		return 1;
	}
	const char *comms[LT_MAX_FILTER_VALUES];
	for (int i = 0; i < opts.ncomms; i++)
		comms[i] = opts.comms[i];
	struct report_options f = { .pids = opts.pids,
				    .npids = opts.npids,
				    .comms = comms,
				    .ncomms = opts.ncomms,
				    .units = opts.units,
				    .nunits = opts.nunits,
				    .cgroups = opts.cgroups,
				    .ncgroups = opts.ncgroups,
				    .transports = opts.transports,
				    .wide = opts.wide,
				    .sort = (enum report_sort)opts.sort,
				    .by = (enum report_by)opts.by,
				    .top = opts.top,
				    .hist = opts.hist };
	if (opts.command == LT_CMD_TOP || opts.command == LT_CMD_COMPARE ||
	    opts.command == LT_CMD_TRACE) {
		int ret = opts.command == LT_CMD_TOP   ? top_run(&t, &opts, &f, agg, stdout) :
			  opts.command == LT_CMD_TRACE ? trace_run(&t, &opts, &f, agg, stdout) :
							 compare_run(&t, &opts, agg, stdout);
		if (tracer_stop(&t, stderr))
			ret = 1;
		agg_free(agg);
		return finish(ret);
	}
	if (!opts.quiet) {
		fprintf(stderr, "lotrace: tracing with the %s backend, lo counted via %s; ",
			agg->backend, agg->lo_attach);
		if (opts.duration_s > 0)
			fprintf(stderr, "reporting in %.1f s\n", opts.duration_s);
		else
			fprintf(stderr, "Ctrl-C to stop and report\n");
	}
	double start = lt_clock_s(CLOCK_MONOTONIC);
	int ret = 0;
	while (!lt_stop_requested) {
		double left = opts.duration_s > 0 ?
				      opts.duration_s - (lt_clock_s(CLOCK_MONOTONIC) - start) : 1;
		if (left <= 0)
			break;
		if (tracer_poll_within(&t, left)) {
			fprintf(stderr, "lotrace: reading the ring buffer failed\n");
			ret = 1;
			break;
		}
	}
	agg->duration_s = lt_clock_s(CLOCK_MONOTONIC) - start;
	tracer_freeze(&t);
	tracer_poll(&t, 0);
	tracer_snapshot(&t);
	if (tracer_stop(&t, stderr))
		ret = 1;

	if (opts.json)
		report_json(stdout, agg, &f);
	else
		report_table(stdout, agg, &f);
	agg_free(agg);
	return finish(ret);
}
