/* Command line of `lotrace`. */
#ifndef LOTRACE_OPTS_H
#define LOTRACE_OPTS_H

#include <stdbool.h>
#include <stdio.h>
#include "export_opts.h"
#include "lotrace.h"

/* Hook backends; values index agg.backend_reasons. */
enum lt_backend { LT_BACKEND_AUTO, LT_BACKEND_FENTRY, LT_BACKEND_TRACEPOINT, LT_BACKEND_KPROBE, LT_BACKEND_COUNT };
enum lt_lo_mode { LT_LO_AUTO, LT_LO_TCX, LT_LO_CLSACT, LT_LO_NONE };

enum lt_command { LT_CMD_STAT, LT_CMD_EXPORT, LT_CMD_COMPARE, LT_CMD_TOP, LT_CMD_TRACE };
#define LOTRACE_VERSION "0.1.0"

/* How many values one repeatable filter flag (--pid, --comm) takes. */
#define LT_MAX_FILTER_VALUES 16

struct lt_opts {
	enum lt_command command;
	double duration_s; /* 0: until SIGINT/SIGTERM */
	bool json;
	bool wide;         /* the table's every column (default: 80 columns) */
	int sort;          /* enum report_sort: the table's order */
	int by;            /* enum report_by: the table's rows (stat --by) */
	unsigned top;      /* the table's rows and pairs shown (0: all) */
	bool hist;         /* the table: latency histograms per transport */
	/* lotrace compare: round trips per cell and message sizes (bytes). */
#define LT_COMPARE_MAX_SIZES 8
	long compare_rounds;
	unsigned compare_sizes[LT_COMPARE_MAX_SIZES];
	int ncompare_sizes;
	/* lotrace top */
	double top_interval_s;
	long top_iterations; /* 0: until stopped */
	bool top_batch;      /* one frame after another, no terminal control */
	bool top_pairs;      /* start in the pairs view */
	/* lotrace trace: lines per second at most (of the messages' times) */
	long trace_rate;
	/* --pid and --comm may repeat: a process is reported when it is one of
	 * the pids (if any were given) and has one of the names (if any were). */
	int pids[LT_MAX_FILTER_VALUES];
	int npids;
	char comms[LT_MAX_FILTER_VALUES][LOTRACE_COMM_LEN];
	int ncomms;
	/* --unit NAME and --cgroup PATH (stat, top): argv strings */
	const char *units[LT_MAX_FILTER_VALUES];
	int nunits;
	const char *cgroups[LT_MAX_FILTER_VALUES];
	int ncgroups;
	unsigned transports; /* --transport: bit per enum lotrace_transport; 0: all */
	enum lt_backend backend;
	enum lt_lo_mode lo_mode;
	bool quiet;        /* no progress lines on stderr */
	unsigned long ring_bytes; /* ring buffer size, a power of two */
	struct lt_export_opts export; /* lotrace export only */
};

enum lt_parse_result {
	LT_PARSE_OK = 0,
	LT_PARSE_EXIT = 1,  /* --help or --version printed: exit 0 */
	LT_PARSE_ERROR = 2, /* message printed: exit 2 */
};

/* Parses argv (argv[0] is the program); prints help to out, errors to err. */
enum lt_parse_result lt_parse_args(int argc, char **argv, struct lt_opts *opts,
				   FILE *out, FILE *err);
const char *lt_backend_name(enum lt_backend b);
const char *lt_lo_mode_name(enum lt_lo_mode m);

/* Index of val in names[0..n), or -1. */
int lt_name_index(const char *const *names, int n, const char *val);

/*
 * Prints "lotrace: FLAG: invalid value 'VALUE': expected EXPECTED" (or
 * "lotrace: FLAG: EXPECTED" without a value) and the --help hint of the
 * command being parsed; returns LT_PARSE_ERROR.
 */
enum lt_parse_result lt_usage_error(FILE *err, const char *flag, const char *value,
				    const char *expected);

#endif
