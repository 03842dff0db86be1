#include "opts.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "names.h"
#include "report.h"

static const char usage_text[] =
"Usage: lotrace stat [OPTIONS]\n"
"       lotrace export --textfile-dir DIR [OPTIONS]   (lotrace export --help)\n"
"       lotrace top [OPTIONS]       a live view (lotrace top --help)\n"
"       lotrace trace [OPTIONS]     a line per message (lotrace trace --help)\n"
"       lotrace compare [OPTIONS]   this host's transports, like for like, in\n"
"                                   seconds (lotrace compare --help)\n"
"\n"
"Trace the traffic this host sends to itself - TCP and UDP through a loopback\n"
"device, and Unix stream, datagram and seqpacket sockets - and print, per\n"
"process, messages and bytes sent and received on each transport, with the\n"
"kernel's cost per message, side by side.  Needs root (CAP_BPF, CAP_PERFMON\n"
"and, unless --lo-attach none, CAP_NET_ADMIN); once attached, lotrace keeps\n"
"only CAP_NET_ADMIN for a clsact filter, nothing otherwise.\n"
"\n"
"Options:\n"
"  -d, --duration SECONDS  trace this long (decimal allowed), then report;\n"
"                          default: until Ctrl-C (SIGINT) or SIGTERM\n"
"  -j, --json              print one JSON document instead of tables (schema\n"
"                          in README.md, section \"JSON output\")\n"
"  -w, --wide              the table with every column (bytes sent and\n"
"                          received, pairs' p99) and numbers in full; by\n"
"                          default it fits 80 columns (40.0k, 12.3us)\n"
"      --sort KEY          table order, largest first: msgs (default; sent +\n"
"                          received), bytes, p99 (latency), send (send p50),\n"
"                          or pid (ascending)\n"
"      --by WHAT           table rows per process (default), unit (systemd\n"
"                          unit or container: foo.service, container:ID) or\n"
"                          cgroup, and transport; pairs likewise.  JSON rows\n"
"                          are per process and carry cgroup and unit\n"
"      --top N             table: only the first N rows and N pairs (a line\n"
"                          says how many more there are); JSON has them all\n"
"      --hist              table: a latency histogram per transport, in\n"
"                          power-of-two ranges of nanoseconds (like bpftrace)\n"
"  -p, --pid PID           report only this process (rows where it sends or\n"
"                          receives, pairs where it is either end); repeat for\n"
"                          several processes (at most 16)\n"
"  -c, --comm NAME         report only processes with this name (exact match,\n"
"                          at most 15 characters, as in /proc/PID/comm); repeat\n"
"                          for several names (at most 16); with --pid as well,\n"
"                          a process must match both\n"
"      --unit NAME         report only processes of this systemd unit or\n"
"                          container (as JSON's \"unit\": foo.service,\n"
"                          run-u12.scope, container:0123456789ab); repeat for\n"
"                          several (at most 16)\n"
"      --cgroup PATH       report only processes in this cgroup (v2) or below\n"
"                          it (/system.slice); repeat for several.  A process's\n"
"                          cgroup is recorded in the kernel when it is first\n"
"                          counted, so one that lived 10 ms in a scope has it\n"
"  -t, --transport NAME    report only rows and pairs of this transport (tcp,\n"
"                          udp, unix_stream, unix_dgram, unix_seqpacket);\n"
"                          repeat for several.  Filters act on the report: the\n"
"                          lo line and per-transport summary stay host-wide\n"
"  -b, --backend NAME      hooks to use: auto (default: the first of these that\n"
"                          loads and attaches), fentry (fentry/fexit on the\n"
"                          socket send/recv functions), tracepoint\n"
"                          (sock:sock_send_length/sock_recv_length, 6.3+), or\n"
"                          kprobe (kprobe/kretprobe on the same functions)\n"
"      --ring-buffer-size SIZE\n"
"                          latency events buffer: a power of two from 4K to\n"
"                          1G (suffix K, M or G), default 16M; when it is\n"
"                          full, events are dropped and counted (lost_events),\n"
"                          but message and byte counts stay exact.  The kernel\n"
"                          maps the buffer twice in a row (so a record can wrap\n"
"                          around its end): lotrace's RSS grows by about twice\n"
"                          SIZE (32 MiB with the default)\n"
"      --lo-attach MODE    how to attach the lo packet counter: auto (tcx on\n"
"                          6.6+, else clsact), tcx, clsact, or none\n"
"  -q, --quiet             no progress or backend-fallback messages on stderr\n"
"                          (errors still; the reasons are in the JSON)\n"
"  -h, --help              show this help\n"
"  -V, --version           show the version\n"
"\n"
"What is measured:\n"
"  messages, bytes   one send call is one message (sendmmsg: each message);\n"
"                    a recv call that returns n > 0 bytes is one message of n\n"
"                    bytes.  Failed calls and MSG_PEEK reads count nothing.\n"
"                    Exact: kept in kernel counters, never sampled.\n"
"  latency           per message, from the moment the sending thread enters\n"
"                    the send system call to the moment the receiving\n"
"                    thread's recv call returns the message's first byte.\n"
"                    Reported on the receiving side and per sender->receiver\n"
"                    pair.  Every unix datagram is timed; on a stream or a\n"
"                    UDP socket with a backlog every k-th message in send\n"
"                    order is (k follows the backlog, not the latency),\n"
"                    weighted by k, and timed_fraction (the table's TIMED:\n"
"                    a share of the messages sent to that row or pair) says\n"
"                    how many were.\n"
"                    A message without a sample is counted in\n"
"                    untimed_messages, by cause (sampled, queue_full,\n"
"                    before_start, no_send_start, undelivered, unmatched).\n"
"  send duration     time spent inside the send call: the sender's kernel\n"
"                    path (for TCP loopback usually including the receive\n"
"                    side's softirq processing).\n"
"  lo                packets and wire bytes (headers included) leaving\n"
"                    through lo, per L4 protocol: each loopback packet once.\n"
"\n"
"Signals: SIGINT, SIGTERM and SIGHUP stop tracing and print the report;\n"
"SIGPIPE is ignored (a failed write of the report is exit 1); SIGUSR1,\n"
"SIGUSR2, SIGALRM detach, print, then lotrace dies of that signal.\n"
"\n"
"Exit status: 0 on success, 1 when tracing could not start or the report\n"
"could not be written, 2 on bad usage.\n";

static const char *const backend_names[LT_BACKEND_COUNT] = {
	[LT_BACKEND_AUTO] = "auto", [LT_BACKEND_FENTRY] = "fentry",
	[LT_BACKEND_TRACEPOINT] = "tracepoint", [LT_BACKEND_KPROBE] = "kprobe",
};

const char *lt_backend_name(enum lt_backend b)
{
	return b < LT_BACKEND_COUNT ? backend_names[b] : "unknown";
}

static const char *const lo_mode_names[] = { "auto", "tcx", "clsact", "none" };

const char *lt_lo_mode_name(enum lt_lo_mode m)
{
	return lo_mode_names[m];
}

int lt_name_index(const char *const *names, int n, const char *val)
{
	while (--n >= 0 && strcmp(val, names[n]))
		;
	return n;
}

static const char compare_usage_text[] =
"Usage: lotrace compare [--count N] [--sizes LIST] [--json] [OPTIONS]\n"
"\n"
"Compare this host's local transports like for like, in a few seconds and\n"
"without other traffic: lotrace traces itself while it runs a ping-pong over\n"
"unix_stream, unix_seqpacket, unix_dgram, tcp and udp (127.0.0.1) at each\n"
"message size, client and server on one CPU, and prints per size and\n"
"transport the user-space round trip / 2 next to lotrace's in-kernel message\n"
"latency and send cost, with each transport's latency against unix_stream's.\n"
"\n"
"Options:\n"
"  -n, --count N           round trips per transport and size (default 2000,\n"
"                          at most 1000000); the first 10% warm up\n"
"  -s, --sizes LIST        message sizes in bytes, comma-separated (default\n"
"                          64,1024,16384; each 1 to 65000, at most 8)\n"
"  -j, --json              one JSON document (schema in README.md, section\n"
"                          \"lotrace compare\")\n"
"  -b, --backend NAME      auto, fentry, tracepoint or kprobe (see stat --help)\n"
"      --lo-attach MODE    auto, tcx, clsact or none\n"
"      --ring-buffer-size SIZE\n"
"                          latency events buffer (default 16M)\n"
"  -q, --quiet             no progress or backend-fallback messages on stderr\n"
"  -h, --help              show this help\n"
"\n"
"Needs root, as lotrace stat does.  Exit status: 0 when every cell was\n"
"measured, 1 when tracing or a ping-pong failed, 2 on bad usage.\n";

static const char top_usage_text[] =
"Usage: lotrace top [--interval SECONDS] [--sort KEY] [OPTIONS]\n"
"\n"
"A live view of the traffic this host sends to itself: every interval, per\n"
"process and transport, messages and bytes per second (sent + received, over\n"
"that interval) with latency (send entry to recv return) and send time p50\n"
"and p99 since lotrace started.  On a terminal it redraws in place, fits the\n"
"window (also after a resize) and takes keys: q quits, s cycles the sort\n"
"key, p switches between processes and sender -> receiver pairs, u between\n"
"processes, units and cgroups.  Without a terminal (or with --batch) it\n"
"prints one frame per interval, like top -b.\n"
"\n"
"Options:\n"
"  -i, --interval SECONDS  time between frames (default 1, 0.1 to 3600)\n"
"      --iterations N      stop after N frames (default: until q or Ctrl-C)\n"
"      --batch             frames one after another, no terminal control\n"
"      --pairs             start with the pairs view\n"
"      --by WHAT           rows per process (default), unit or cgroup\n"
"      --sort KEY          msgs (default: messages per second), bytes (per\n"
"                          second), p99 (latency), send (send p50) or pid\n"
"      --top N             at most N rows (default: what fits the terminal)\n"
"  -p, --pid PID           only this process (repeat for several)\n"
"  -c, --comm NAME         only processes with this name (repeat for several)\n"
"      --unit NAME         only processes of this unit (repeat for several)\n"
"      --cgroup PATH       only processes in this cgroup or below it\n"
"  -t, --transport NAME    only this transport (repeat for several)\n"
"  -b, --backend NAME      auto, fentry, tracepoint or kprobe (see stat --help)\n"
"      --lo-attach MODE    auto, tcx, clsact or none\n"
"      --ring-buffer-size SIZE\n"
"                          latency events buffer (default 16M)\n"
"  -q, --quiet             no progress or backend-fallback messages on stderr\n"
"  -h, --help              show this help\n"
"\n"
"Needs root, as lotrace stat does.  Exit status: 0 on q, Ctrl-C or the last\n"
"iteration; 1 when tracing failed; 2 on bad usage.\n";

static const char trace_usage_text[] =
"Usage: lotrace trace [--rate N] [--json] [OPTIONS]\n"
"\n"
"One line per timed message, as the kernel timed it:\n"
"  TIME(s)    seconds since tracing began, when the receiver got the\n"
"             message's first byte (a send that returned after the receive:\n"
"             when the send did); --json has the date and time, UTC\n"
"  SENDER > RECEIVER   pid and name of each end\n"
"  TRANSPORT  tcp, udp, unix_stream, unix_dgram or unix_seqpacket\n"
"  LAT        send entry to the recv return of the message's first byte\n"
"  SEND       time inside the send call (- when it ended after the receive\n"
"             and travelled apart)\n"
"  xK         on a stream or UDP socket with a backlog every K-th message\n"
"             in send order is timed: its line stands for K messages\n"
"A message without a latency sample has no line (stat counts them by cause\n"
"in untimed_messages); the summary at the end says how many there were.\n"
"\n"
"Options:\n"
"  -d, --duration SECONDS  trace this long (default: until Ctrl-C or SIGTERM)\n"
"      --rate N            print at most N lines per second (default 1000,\n"
"                          1 to 10000000); the lines over it are counted, and\n"
"                          a line (\"# N timed messages ... not shown\") says\n"
"                          so for each second that had some\n"
"  -j, --json              JSON lines: {\"type\": \"message\", ...} per message,\n"
"                          {\"type\": \"not_shown\"} per second over --rate, and\n"
"                          a last {\"type\": \"summary\"} (schema in README.md)\n"
"  -p, --pid PID           only messages this process sent or received\n"
"                          (repeat for several)\n"
"  -c, --comm NAME         only messages a process of this name sent or\n"
"                          received (repeat for several)\n"
"      --unit NAME         only messages a process of this unit sent or\n"
"                          received (repeat for several)\n"
"      --cgroup PATH       only messages a process in this cgroup (or below)\n"
"                          sent or received (repeat for several)\n"
"  -t, --transport NAME    only this transport (repeat for several)\n"
"  -b, --backend NAME      auto, fentry, tracepoint or kprobe (see stat --help)\n"
"      --ring-buffer-size SIZE\n"
"                          latency events buffer (default 16M); events lost\n"
"                          when it is full are counted in the summary\n"
"  -q, --quiet             no progress lines and no summary on stderr\n"
"  -h, --help              show this help\n"
"\n"
"Filters act on the lines, in user space; the summary's message counts are\n"
"host-wide.  lo is not attached (trace needs no CAP_NET_ADMIN).  Exit status:\n"
"0 on Ctrl-C or the end of --duration, 1 when tracing failed or the output\n"
"could not be written, 2 on bad usage.\n";

static const char *command_name = "stat";

enum lt_parse_result lt_usage_error(FILE *err, const char *flag, const char *value,
				   const char *expected)
{
	if (value)
		fprintf(err, "lotrace: %s: invalid value '%s': expected %s\n", flag, value, expected);
	else
		fprintf(err, "lotrace: %s: %s\n", flag, expected);
	fprintf(err, "Try 'lotrace %s --help'.\n", command_name);
	return LT_PARSE_ERROR;
}

/*
 * "64K", "16M", "1G" or a byte count: digits only first (strtoull would take
 * leading spaces and a sign, and wrap negatives), and a suffix that would
 * overflow 64 bits is an error rather than a small wrapped size.
 */
static int parse_size(const char *val, unsigned long long *out)
{
	char *end;
	if (val[0] < '0' || val[0] > '9')
		return -1;
	errno = 0;
	unsigned long long n = strtoull(val, &end, 10);
	if (errno)
		return -1;
	unsigned shift = 0;
	switch (*end) {
	case 'k': case 'K': shift = 10; end++; break;
	case 'm': case 'M': shift = 20; end++; break;
	case 'g': case 'G': shift = 30; end++; break;
	}
	if (*end || n > (~0ull >> shift))
		return -1;
	*out = n << shift;
	return 0;
}

static bool matches(const char *arg, const char *s, const char *l)
{
	return (s && !strcmp(arg, s)) || !strcmp(arg, l);
}

/* A flag of stat's in stat_only[n]: an error saying so for command; else 0. */
static int refuse_stat_flag(FILE *err, const char *flag, const char *const stat_only[][2],
			    size_t n, const char *command)
{
	char expected[64];
	snprintf(expected, sizeof(expected), "is an option of lotrace stat, not %s", command);
	for (size_t i = 0; i < n; i++)
		if (matches(flag, stat_only[i][0], stat_only[i][1]))
			return lt_usage_error(err, flag, NULL, expected);
	return 0;
}

/*
 * A flag of lotrace compare: its own (--count, --sizes, --help), or one of
 * stat's that only stat's report uses (an error); -1 for the flags both share.
 */
static int compare_flag(struct lt_opts *opts, const char *flag, const char *val, FILE *out,
			FILE *err)
{
	static const char *const stat_only[][2] = {
		{ "-d", "--duration" }, { "-p", "--pid" }, { "-c", "--comm" }, { "-w", "--wide" },
		{ NULL, "--sort" },     { NULL, "--top" }, { NULL, "--hist" }, { "-t", "--transport" },
		{ NULL, "--unit" },     { NULL, "--cgroup" }, { NULL, "--by" },
	};
	if (matches(flag, "-h", "--help")) {
		fputs(compare_usage_text, out);
		return LT_PARSE_EXIT;
	}
	if (refuse_stat_flag(err, flag, stat_only, sizeof(stat_only) / sizeof(stat_only[0]),
			     "compare"))
		return LT_PARSE_ERROR;
	if (matches(flag, "-n", "--count")) {
		char *end;
		errno = 0;
		long n = strtol(val, &end, 10);
		if (errno || end == val || *end || n < 10 || n > 1000000)
			return lt_usage_error(err, flag, val, "a number of round trips, 10 to 1000000");
		opts->compare_rounds = n;
		return LT_PARSE_OK;
	}
	if (matches(flag, "-s", "--sizes")) {
		opts->ncompare_sizes = 0;
		for (const char *p = val;;) {
			char *end;
			errno = 0;
			long n = strtol(p, &end, 10);
			if (errno || end == p || (*end && *end != ',') || n < 1 || n > 65000 ||
			    opts->ncompare_sizes == LT_COMPARE_MAX_SIZES)
				return lt_usage_error(err, flag, val,
						      "1 to 8 sizes in bytes, 1 to 65000, comma-separated");
			opts->compare_sizes[opts->ncompare_sizes++] = (unsigned)n;
			if (!*end)
				break;
			p = end + 1;
		}
		return LT_PARSE_OK;
	}
	return -1;
}

/* A flag of lotrace top: its own, or one of stat's that top has no use for (an error). */
static int top_flag(struct lt_opts *opts, const char *flag, const char *val, FILE *out,
		    FILE *err)
{
	static const char *const stat_only[][2] = {
		{ "-d", "--duration" }, { "-j", "--json" }, { "-w", "--wide" }, { NULL, "--hist" },
	};
	if (matches(flag, "-h", "--help")) {
		fputs(top_usage_text, out);
		return LT_PARSE_EXIT;
	}
	if (refuse_stat_flag(err, flag, stat_only, sizeof(stat_only) / sizeof(stat_only[0]), "top"))
		return LT_PARSE_ERROR;
	if (matches(flag, "-i", "--interval")) {
		char *end;
		errno = 0;
		double d = strtod(val, &end);
		if (errno || end == val || *end || !isfinite(d) || d < 0.1 || d > 3600)
			return lt_usage_error(err, flag, val, "seconds between frames, 0.1 to 3600");
		opts->top_interval_s = d;
		return LT_PARSE_OK;
	}
	if (matches(flag, NULL, "--iterations")) {
		char *end;
		errno = 0;
		long n = strtol(val, &end, 10);
		if (errno || end == val || *end || n < 1 || n > 100000000)
			return lt_usage_error(err, flag, val, "a number of frames, 1 or more");
		opts->top_iterations = n;
		return LT_PARSE_OK;
	}
	if (matches(flag, NULL, "--batch")) {
		opts->top_batch = true;
		return LT_PARSE_OK;
	}
	if (matches(flag, NULL, "--pairs")) {
		opts->top_pairs = true;
		return LT_PARSE_OK;
	}
	return -1;
}

/* A flag of lotrace trace: its own, or one of stat's that trace has no use for (an error). */
static int trace_flag(struct lt_opts *opts, const char *flag, const char *val, FILE *out,
		      FILE *err)
{
	static const char *const stat_only[][2] = {
		{ "-w", "--wide" }, { NULL, "--sort" }, { NULL, "--top" }, { NULL, "--hist" },
		{ NULL, "--lo-attach" }, { NULL, "--by" },
	};
	if (matches(flag, "-h", "--help")) {
		fputs(trace_usage_text, out);
		return LT_PARSE_EXIT;
	}
	if (refuse_stat_flag(err, flag, stat_only, sizeof(stat_only) / sizeof(stat_only[0]),
			     "trace"))
		return LT_PARSE_ERROR;
	if (matches(flag, NULL, "--rate")) {
		char *end;
		errno = 0;
		long n = strtol(val, &end, 10);
		if (errno || end == val || *end || n < 1 || n > 10000000)
			return lt_usage_error(err, flag, val, "lines per second, 1 to 10000000");
		opts->trace_rate = n;
		return LT_PARSE_OK;
	}
	return -1;
}

enum lt_parse_result lt_parse_args(int argc, char **argv, struct lt_opts *opts,
				   FILE *out, FILE *err)
{
	memset(opts, 0, sizeof(*opts));
	opts->ring_bytes = LOTRACE_RINGBUF_BYTES;
	int i = 1;

	if (argc < 2) {
		fputs(usage_text, err);
		return LT_PARSE_ERROR;
	}
	if (matches(argv[1], "-h", "--help") || !strcmp(argv[1], "help")) {
		fputs(usage_text, out);
		return LT_PARSE_EXIT;
	}
	if (matches(argv[1], "-V", "--version")) {
		fprintf(out, "lotrace %s\n", LOTRACE_VERSION);
		return LT_PARSE_EXIT;
	}
	command_name = "stat";
	if (!strcmp(argv[1], "export")) {
		opts->command = LT_CMD_EXPORT;
		command_name = "export";
		lt_export_defaults(&opts->export);
	} else if (!strcmp(argv[1], "top")) {
		opts->command = LT_CMD_TOP;
		command_name = "top";
		opts->top_interval_s = 1;
	} else if (!strcmp(argv[1], "trace")) {
		opts->command = LT_CMD_TRACE;
		command_name = "trace";
		opts->trace_rate = 1000;
		opts->lo_mode = LT_LO_NONE; /* no lo line to show */
	} else if (!strcmp(argv[1], "compare")) {
		opts->command = LT_CMD_COMPARE;
		command_name = "compare";
		opts->compare_rounds = 2000;
	} else if (strcmp(argv[1], "stat")) {
		fprintf(err, "lotrace: unknown command '%s': expected stat, top, trace, export or compare\n",
			argv[1]);
		fprintf(err, "Try 'lotrace stat --help'.\n");
		return LT_PARSE_ERROR;
	}
	for (i = 2; i < argc; i++) {
		const char *arg = argv[i];
		const char *val = NULL;
		char flag[32];
		/* --flag=value and --flag value both work. */
		const char *eq = strncmp(arg, "--", 2) ? NULL : strchr(arg, '=');
		size_t flen = eq ? (size_t)(eq - arg) : strlen(arg);
		if (flen >= sizeof(flag))
			flen = sizeof(flag) - 1;
		memcpy(flag, arg, flen);
		flag[flen] = 0;

		bool takes_value = matches(flag, "-d", "--duration") || matches(flag, "-p", "--pid") ||
				   (opts->command == LT_CMD_COMPARE &&
				    (matches(flag, "-n", "--count") || matches(flag, "-s", "--sizes"))) ||
				   (opts->command == LT_CMD_TOP &&
				    (matches(flag, "-i", "--interval") || matches(flag, NULL, "--iterations"))) ||
				   (opts->command == LT_CMD_TRACE && matches(flag, NULL, "--rate")) ||
				   matches(flag, "-c", "--comm") || matches(flag, "-b", "--backend") ||
				   matches(flag, "-t", "--transport") || matches(flag, NULL, "--unit") ||
				   matches(flag, NULL, "--cgroup") || matches(flag, NULL, "--by") ||
				   matches(flag, NULL, "--lo-attach") ||
				   matches(flag, NULL, "--ring-buffer-size") ||
				   matches(flag, NULL, "--sort") || matches(flag, NULL, "--top") ||
				   (opts->command == LT_CMD_EXPORT && lt_export_flag_takes_value(flag));
		if (takes_value) {
			if (eq)
				val = eq + 1;
			else if (i + 1 < argc)
				val = argv[++i];
			else
				return lt_usage_error(err, flag, NULL, "needs a value");
		} else if (eq) {
			return lt_usage_error(err, flag, NULL, "takes no value");
		}

		if (opts->command == LT_CMD_EXPORT) {
			int r = lt_export_flag(&opts->export, flag, val, out, err);
			if (r == LT_PARSE_OK)
				continue;
			if (r > 0)
				return r;
		}
		if (opts->command == LT_CMD_TOP) {
			int r = top_flag(opts, flag, val, out, err);
			if (r == LT_PARSE_OK)
				continue;
			if (r > 0)
				return r;
		}
		if (opts->command == LT_CMD_TRACE) {
			int r = trace_flag(opts, flag, val, out, err);
			if (r == LT_PARSE_OK)
				continue;
			if (r > 0)
				return r;
		}
		if (opts->command == LT_CMD_COMPARE) {
			int r = compare_flag(opts, flag, val, out, err);
			if (r == LT_PARSE_OK)
				continue;
			if (r > 0)
				return r;
		}
		if (matches(flag, "-h", "--help")) {
			fputs(usage_text, out);
			return LT_PARSE_EXIT;
		} else if (matches(flag, "-V", "--version")) {
			fprintf(out, "lotrace %s\n", LOTRACE_VERSION);
			return LT_PARSE_EXIT;
		} else if (matches(flag, "-j", "--json")) {
			opts->json = true;
		} else if (matches(flag, "-w", "--wide")) {
			opts->wide = true;
		} else if (matches(flag, NULL, "--hist")) {
			opts->hist = true;
		} else if (matches(flag, NULL, "--sort")) {
			int k = lt_name_index(report_sort_names, REPORT_SORT_COUNT, val);
			if (k < 0)
				return lt_usage_error(err, flag, val, "msgs, bytes, p99, send or pid");
			opts->sort = k;
		} else if (matches(flag, NULL, "--by") &&
			   (opts->command == LT_CMD_STAT || opts->command == LT_CMD_TOP)) {
			int k = lt_name_index(report_by_names, REPORT_BY_COUNT, val);
			if (k < 0)
				return lt_usage_error(err, flag, val, "process, unit or cgroup");
			opts->by = k;
		} else if (matches(flag, NULL, "--top")) {
			char *end;
			errno = 0;
			long t = strtol(val, &end, 10);
			if (errno || end == val || *end || t < 1 || t > 1000000)
				return lt_usage_error(err, flag, val, "a number of rows, 1 to 1000000");
			opts->top = (unsigned)t;
		} else if (matches(flag, "-q", "--quiet")) {
			opts->quiet = true;
		} else if (matches(flag, "-d", "--duration")) {
			char *end;
			errno = 0;
			double d = strtod(val, &end);
			if (errno || end == val || *end || !isfinite(d) || d <= 0 || d > 31536000)
				return lt_usage_error(err, flag, val, "a number of seconds > 0 (e.g. 10 or 0.5)");
			opts->duration_s = d;
		} else if (matches(flag, "-p", "--pid")) {
			char *end;
			errno = 0;
			long p = strtol(val, &end, 10);
			if (errno || end == val || *end || p <= 0 || p > 4194304)
				return lt_usage_error(err, flag, val, "a process id (1 to 4194304)");
			if (opts->npids == LT_MAX_FILTER_VALUES)
				return lt_usage_error(err, flag, val, "at most 16 --pid flags");
			opts->pids[opts->npids++] = (int)p;
		} else if (matches(flag, "-c", "--comm")) {
			size_t n = strlen(val);
			if (n == 0 || n >= LOTRACE_COMM_LEN)
				return lt_usage_error(err, flag, val, "a process name of 1 to 15 characters");
			if (opts->ncomms == LT_MAX_FILTER_VALUES)
				return lt_usage_error(err, flag, val, "at most 16 --comm flags");
			memcpy(opts->comms[opts->ncomms++], val, n + 1);
		} else if (matches(flag, NULL, "--unit") &&
			   opts->command != LT_CMD_EXPORT && opts->command != LT_CMD_COMPARE) {
			if (!*val || strchr(val, '/'))
				return lt_usage_error(err, flag, val,
						      "a unit name without '/' (e.g. redis-server.service)");
			if (opts->nunits == LT_MAX_FILTER_VALUES)
				return lt_usage_error(err, flag, val, "at most 16 --unit flags");
			opts->units[opts->nunits++] = val;
		} else if (matches(flag, NULL, "--cgroup") &&
			   opts->command != LT_CMD_EXPORT && opts->command != LT_CMD_COMPARE) {
			if (val[0] != '/')
				return lt_usage_error(err, flag, val,
						      "a cgroup path from the cgroup2 root, starting with '/'");
			if (opts->ncgroups == LT_MAX_FILTER_VALUES)
				return lt_usage_error(err, flag, val, "at most 16 --cgroup flags");
			opts->cgroups[opts->ncgroups++] = val;
		} else if (matches(flag, "-t", "--transport")) {
			int t = lt_transport_from_name(val);
			if (t < 0)
				return lt_usage_error(err, flag, val,
						      "tcp, udp, unix_stream, unix_dgram or unix_seqpacket");
			opts->transports |= 1u << t;
		} else if (matches(flag, "-b", "--backend")) {
			int b = lt_name_index(backend_names, LT_BACKEND_COUNT, val);
			if (b < 0)
				return lt_usage_error(err, flag, val, "auto, fentry, tracepoint or kprobe");
			opts->backend = (enum lt_backend)b;
		} else if (!strcmp(flag, "--ring-buffer-size")) {
			unsigned long long n;
			if (parse_size(val, &n) || n < 4096 || n > (1ull << 30) || (n & (n - 1)))
				return lt_usage_error(err, flag, val, "a power of two from 4K to 1G (e.g. 64K, 16M)");
			opts->ring_bytes = (unsigned long)n;
		} else if (!strcmp(flag, "--lo-attach")) {
			int m = lt_name_index(lo_mode_names, sizeof(lo_mode_names) / sizeof(lo_mode_names[0]), val);
			if (m < 0)
				return lt_usage_error(err, flag, val, "auto, tcx, clsact or none");
			opts->lo_mode = (enum lt_lo_mode)m;
		} else {
			fprintf(err, "lotrace: unknown option '%s'\n", arg);
			fprintf(err, "Try 'lotrace %s --help'.\n", command_name);
			return LT_PARSE_ERROR;
		}
	}
	if (opts->command == LT_CMD_EXPORT)
		return lt_export_finish(&opts->export, err);
	if (opts->command == LT_CMD_COMPARE && !opts->ncompare_sizes) {
		static const unsigned defaults[] = { 64, 1024, 16384 };
		for (size_t k = 0; k < sizeof(defaults) / sizeof(defaults[0]); k++)
			opts->compare_sizes[opts->ncompare_sizes++] = defaults[k];
	}
	return LT_PARSE_OK;
}
