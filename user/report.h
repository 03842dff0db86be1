/* lotrace's outputs: the human summary and the JSON document. */
#ifndef LOTRACE_REPORT_H
#define LOTRACE_REPORT_H

#include <stdbool.h>
#include <stdio.h>
#include "agg.h"

/* How the table orders its rows; names in report_sort_names (--sort). */
enum report_sort {
	REPORT_SORT_MSGS = 0, /* messages sent + received: the default */
	REPORT_SORT_BYTES,
	REPORT_SORT_P99,      /* latency p99 (rows: as receiver) */
	REPORT_SORT_SEND,     /* send duration p50 (pairs: by messages) */
	REPORT_SORT_PID,
	REPORT_SORT_COUNT,
};
extern const char *const report_sort_names[REPORT_SORT_COUNT];

/* What the table's rows are: processes (default), or their units or cgroups (--by). */
enum report_by { REPORT_BY_PROCESS = 0, REPORT_BY_UNIT, REPORT_BY_CGROUP, REPORT_BY_COUNT };
extern const char *const report_by_names[REPORT_BY_COUNT];

/* The width of a terminal the default table fits. */
#define REPORT_COLUMNS 80

struct report_options {
	/* A process is reported when its pid is one of pids and its name one
	 * of comms; an empty list takes any. */
	const int *pids;
	int npids;
	const char *const *comms;
	int ncomms;
	/* --unit: the process's unit (procid_unit_of its cgroup) is one of these;
	 * --cgroup: its cgroup is one of these or below one. */
	const char *const *units;
	int nunits;
	const char *const *cgroups;
	int ncgroups;
	unsigned transports; /* bit per enum lotrace_transport of the rows shown; 0: all */
	/* Table: every column (bytes, pairs' p99), full numbers; else REPORT_COLUMNS. */
	bool wide;
	enum report_sort sort; /* table rows and pairs, largest first (pid: ascending) */
	enum report_by by;     /* table: a row per process, unit or cgroup (and transport) */
	unsigned top;          /* table: at most this many rows and pairs (0: all) */
	bool hist;             /* table: a log2 latency histogram per transport */
};

/* f's --pid and --comm (as the kernel has the name or as the outputs show it). */
bool report_proc_wanted(const struct report_options *f, uint32_t tgid, const char *comm);
/* f's --unit and --cgroup for a process in cgroup (NULL: not recorded, so it fails them). */
bool report_cgroup_wanted(const struct report_options *f, const char *cgroup);
/* Every process filter of f for process (tgid, tag) of a (its name and cgroup from a). */
bool report_agg_proc_wanted(const struct agg *a, const struct report_options *f, uint32_t tgid,
			    uint32_t tag);
/*
 * Process (tgid, tag)'s label by `by` (unit or cgroup) into out, as the
 * kernel recorded its cgroup; "?" when it did not.
 */
void report_group_label(const struct agg *a, enum report_by by, uint32_t tgid, uint32_t tag,
			char *out, size_t len);
/*
 * A unit or cgroup label in a column of width: cleaned, cut at the end, or
 * with keep_end (cgroup paths, whose leaf matters) at the start.
 */
void report_label_column(FILE *out, const char *label, int width, bool keep_end);
/* f's --transport. */
bool report_transport_wanted(const struct report_options *f, int transport);
void report_table(FILE *out, const struct agg *a, const struct report_options *f);
/*
 * A line of text (without its '\n'): as it is when wide, else broken at
 * spaces to fit REPORT_COLUMNS, continued with an indent.
 */
void report_line(FILE *out, const char *text, bool wide);
void report_json(FILE *out, const struct agg *a, const struct report_options *f);
/* s as a JSON string, cleaned as every output shows names (lt_name_clean). */
void report_json_string(FILE *out, const char *s);
/* "850 ns", "4.1 us", "12.3 ms", "1.20 s" */
void format_ns(char *buf, size_t len, uint64_t ns);
/* At most 6 characters: "850ns", "4.1us", "12.3us", "850us", "12.3ms", "1.20s", ">1day" */
void format_ns_short(char *buf, size_t len, uint64_t ns);
/* At most 6 characters: 99999 as is, then "123.4k", "1.23M", "999.9M", "1.23G" */
void format_count_short(char *buf, size_t len, uint64_t n);

#endif
