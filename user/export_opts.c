#include "export_opts.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "opts.h"

const char lt_export_usage[] =
"Usage: lotrace export --textfile-dir DIR [OPTIONS]\n"
"\n"
"Run until stopped (SIGINT/SIGTERM) and every interval rewrite DIR/lotrace.prom\n"
"for node_exporter's textfile collector: start node_exporter with\n"
"  --collector.textfile.directory=DIR\n"
"(Debian's prometheus-node-exporter reads /var/lib/prometheus/node-exporter).\n"
"The file is replaced atomically (a temporary file in DIR, written, fsynced,\n"
"renamed), never through a symlink, never outside DIR.  On exit it is\n"
"removed, so node_exporter stops exposing frozen counters.  One exporter per\n"
"DIR: it holds a lock on DIR/.lotrace.prom.lock, and a second one exits 2\n"
"naming the holder's pid.  If DIR is replaced (rm -rf DIR; mkdir DIR), the\n"
"new DIR is used from the next interval; while DIR is missing, every interval\n"
"counts a write failure (logged once) until it is back.  Needs CAP_BPF,\n"
"CAP_PERFMON and CAP_NET_ADMIN (deploy/lotrace-export.service); once attached\n"
"it keeps only CAP_NET_ADMIN for a clsact filter (none for tcx), plus\n"
"CAP_DAC_OVERRIDE if DIR's mode does not let its uid write there.\n"
"\n"
"Signals: SIGINT, SIGTERM stop (file removed, exit 0); SIGHUP follows a\n"
"replaced DIR and rewrites the file now; SIGPIPE is ignored; SIGUSR1,\n"
"SIGUSR2, SIGALRM clean up as for a stop, then lotrace dies of that signal\n"
"(a failure to a service manager).\n"
"\n"
"Options:\n"
"      --textfile-dir DIR  directory node_exporter reads (must exist, writable)\n"
"      --interval SECONDS  rewrite period (decimal allowed), default 15\n"
"      --by LABEL          process label of the traffic series: comm (default,\n"
"                          the process name), pid, cgroup (the cgroup v2 path)\n"
"                          or unit (the systemd unit or container of that path)\n"
"      --max-series N      process label values with their own series, per\n"
"                          transport: the top N by bytes; the rest are added\n"
"                          into LABEL=\"other\", so totals stay exact; default 5,\n"
"                          0 = per transport only.  Memory is bounded too: at\n"
"                          most 5 x (N + 1024) label values are tracked; when\n"
"                          full, one with few bytes and no series is dropped\n"
"                          (its counts are in \"other\" already)\n"
"      --idle-expiry SECONDS\n"
"                          a label value without traffic this long loses its\n"
"                          series (its totals move into \"other\"); default 3600,\n"
"                          0 = never\n"
"  -b, --backend NAME      hooks to use (see lotrace stat --help)\n"
"      --ring-buffer-size SIZE, --lo-attach MODE   as for lotrace stat\n"
"  -q, --quiet             no progress or backend-fallback messages on stderr\n"
"                          (errors still; lotrace_backend_info names the backend)\n"
"  -h, --help              show this help\n"
"\n"
"Metrics (counters are monotonic while lotrace runs; LABEL is --by):\n"
"  lotrace_sent_messages_total, lotrace_sent_bytes_total,\n"
"  lotrace_received_messages_total, lotrace_received_bytes_total\n"
"                                        {transport, LABEL}\n"
"  lotrace_message_latency_seconds       histogram {transport, LABEL}: receiver\n"
"  lotrace_send_duration_seconds         histogram {transport, LABEL}: sender\n"
"  lotrace_lo_packets_total, lotrace_lo_bytes_total   {protocol}\n"
"  lotrace_untimed_messages_total{transport}, lotrace_lost_events_total,\n"
"  lotrace_missed_program_runs_total,\n"
"  lotrace_events_processed_total, lotrace_kernel_map_full_total,\n"
"  lotrace_kernel_map_entries{map}, lotrace_kernel_map_capacity{map},\n"
"  lotrace_evicted_messages_total, lotrace_evicted_bytes_total\n"
"                                        {transport, direction}: in \"other\"\n"
"  lotrace_identities{transport}, lotrace_folded_identities{transport},\n"
"  lotrace_build_info{version}, lotrace_backend_info{backend,lo_attach},\n"
"  lotrace_write_failures_total, lotrace_last_write_timestamp_seconds\n"
"Histogram buckets (le, seconds, the same for every series): 5e-07 to 10 in\n"
"1-2.5-5 steps.\n"
"\n"
"Cardinality: each (transport, LABEL value) pair with traffic both ways is 56\n"
"series (4 counters + two 26-line histograms; 28 one way), plus 57 about\n"
"lotrace itself.  At most 5 transports x (N + 1) pairs: 1737 series with the\n"
"default N = 5.  Measured: redis-benchmark over TCP and a Unix socket plus\n"
"lobench on every transport = 9 pairs, 560 series.  With --by cgroup or unit,\n"
"a process that exits within ~50 ms of its first message is \"unknown\".\n"
"A label value earns a series by bytes; the series starts with the traffic\n"
"of the interval that earned it (earlier traffic stays in \"other\"), and a\n"
"series that loses its place adds its totals to \"other\": no counter goes\n"
"down.\n"
"\n"
"Exit status: 0 after SIGINT/SIGTERM; 1 when tracing could not start or\n"
"failed, or another exporter holds a replacement of DIR; 2 on bad usage, an\n"
"unusable --textfile-dir or one another exporter holds.\n";

void lt_export_defaults(struct lt_export_opts *x)
{
	memset(x, 0, sizeof(*x));
	x->interval_s = LT_EXPORT_INTERVAL_S;
	x->by = LT_BY_COMM;
	x->max_series = LT_EXPORT_MAX_SERIES;
	x->idle_expiry_s = LT_EXPORT_IDLE_EXPIRY_S;
}

static const char *const by_names[] = { "comm", "pid", "cgroup", "unit" };

const char *lt_export_by_name(enum lt_export_by by)
{
	return by_names[by];
}

/* Seconds in [min, max]; false if val is not such a number. */
static bool parse_seconds(const char *val, double min, double max, double *out)
{
	char *end;
	errno = 0;
	double d = strtod(val, &end);
	if (errno || end == val || *end || !isfinite(d) || d < min || d > max)
		return false;
	*out = d;
	return true;
}

static const char *const value_flags[] = { "--textfile-dir", "--interval", "--by",
					   "--max-series", "--idle-expiry" };

bool lt_export_flag_takes_value(const char *flag)
{
	for (size_t i = 0; i < sizeof(value_flags) / sizeof(value_flags[0]); i++)
		if (!strcmp(flag, value_flags[i]))
			return true;
	return false;
}

int lt_export_flag(struct lt_export_opts *x, const char *flag, const char *val, FILE *out,
		   FILE *err)
{
	if (!strcmp(flag, "-h") || !strcmp(flag, "--help")) {
		fputs(lt_export_usage, out);
		return LT_PARSE_EXIT;
	}
	if (!strcmp(flag, "--textfile-dir")) {
		if (!val[0])
			return lt_usage_error(err, flag, val, "a directory");
		x->textfile_dir = val;
	} else if (!strcmp(flag, "--interval")) {
		/* Sub-second intervals exist for tests; production uses 15 s or so. */
		if (!parse_seconds(val, 0.01, 86400, &x->interval_s))
			return lt_usage_error(err, flag, val, "a number of seconds from 0.01 to 86400 (e.g. 15)");
	} else if (!strcmp(flag, "--by")) {
		int by = lt_name_index(by_names, sizeof(by_names) / sizeof(by_names[0]), val);
		if (by < 0)
			return lt_usage_error(err, flag, val, "comm, pid, cgroup or unit");
		x->by = (enum lt_export_by)by;
	} else if (!strcmp(flag, "--max-series")) {
		char *end;
		errno = 0;
		long n = strtol(val, &end, 10);
		if (errno || end == val || *end || n < 0 || n > 100000)
			return lt_usage_error(err, flag, val, "a number from 0 to 100000");
		x->max_series = (unsigned)n;
	} else if (!strcmp(flag, "--idle-expiry")) {
		if (!parse_seconds(val, 0, 31536000, &x->idle_expiry_s))
			return lt_usage_error(err, flag, val, "a number of seconds (0 = never)");
	} else if (!strcmp(flag, "-j") || !strcmp(flag, "--json") || !strcmp(flag, "-p") ||
		   !strcmp(flag, "--pid") || !strcmp(flag, "-c") || !strcmp(flag, "--comm") ||
		   !strcmp(flag, "-d") || !strcmp(flag, "--duration")) {
		return lt_usage_error(err, flag, NULL, "is an option of 'lotrace stat', not of 'lotrace export'");
	} else {
		return -1;
	}
	return LT_PARSE_OK;
}

int lt_export_finish(const struct lt_export_opts *x, FILE *err)
{
	if (!x->textfile_dir)
		return lt_usage_error(err, "--textfile-dir", NULL,
			   "required (the directory node_exporter's --collector.textfile.directory reads)");
	return LT_PARSE_OK;
}
