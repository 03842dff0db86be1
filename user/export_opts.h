/* Flags of `lotrace export` (the flags it shares with `stat` live in opts.c). */
#ifndef LOTRACE_EXPORT_OPTS_H
#define LOTRACE_EXPORT_OPTS_H

#include <stdbool.h>
#include <stdio.h>

/* What a series' process label is: --by. */
enum lt_export_by { LT_BY_COMM, LT_BY_PID, LT_BY_CGROUP, LT_BY_UNIT };

#define LT_EXPORT_FILE "lotrace.prom"
#define LT_EXPORT_INTERVAL_S 15.0
#define LT_EXPORT_MAX_SERIES 5
#define LT_EXPORT_IDLE_EXPIRY_S 3600.0

struct lt_export_opts {
	const char *textfile_dir; /* required */
	double interval_s;
	enum lt_export_by by;
	unsigned max_series;  /* process identities with their own series, per transport */
	double idle_expiry_s; /* 0: never */
};

void lt_export_defaults(struct lt_export_opts *x);
/* Label name of --by: "comm", "pid", "cgroup", "unit". */
const char *lt_export_by_name(enum lt_export_by by);
bool lt_export_flag_takes_value(const char *flag);
/*
 * One flag of `lotrace export`.  Returns -1 when the flag is not export's own
 * (the caller handles the shared ones), else a enum lt_parse_result value.
 */
int lt_export_flag(struct lt_export_opts *x, const char *flag, const char *val, FILE *out,
		   FILE *err);
/* After all flags: required ones present?  enum lt_parse_result value. */
int lt_export_finish(const struct lt_export_opts *x, FILE *err);

extern const char lt_export_usage[];

#endif
