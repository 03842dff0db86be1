/*
 * lotrace compare: this host's local transports side by side, like for like.
 * lotrace traces its own ping-pongs: for each message size and transport a
 * fresh client and server (so each cell is one pair of processes in the
 * tracer's rows), both pinned to one CPU, a fixed number of round trips.  The
 * client's user-space round trip / 2 is measured next to lotrace's in-kernel
 * numbers for that pair: the two should agree, and the comparison between
 * transports is then of equal sizes on equal placement only.
 */
#include "compare.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "names.h"
#include "report.h"
#include "signals.h"

/* The order cells are shown in: Unix sockets first, then loopback IP. */
static const int compare_transports[] = { LT_UNIX_STREAM, LT_UNIX_SEQPACKET, LT_UNIX_DGRAM,
					  LT_TCP, LT_UDP };
#define NTRANSPORTS (sizeof(compare_transports) / sizeof(compare_transports[0]))

/* The seed's figures, shown for reference next to this host's. */
#define SEED_REFERENCE                                                                   \
	"The seed's reference: Unix sockets about 2-3 us against 3.6 us for TCP loopback " \
	"(\"a 36 % improvement\")"

struct compare_cell {
	int transport;
	unsigned size;
	pid_t client, server;
	int failed;           /* the ping-pong did not complete */
	uint64_t rtt_half_p50; /* user space: round trip / 2, median */
	uint64_t messages;     /* lotrace: both directions of the pair */
	uint64_t timed;
	struct hist latency;   /* lotrace: both directions */
	struct hist send;      /* lotrace: send durations, both ends */
};

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int sock_type(int transport)
{
	switch (transport) {
	case LT_UNIX_DGRAM:
	case LT_UDP:
		return SOCK_DGRAM;
	case LT_UNIX_SEQPACKET:
		return SOCK_SEQPACKET;
	default:
		return SOCK_STREAM;
	}
}

/* A connected pair of sockets of transport: sv[0] the client's, sv[1] the server's. */
static int connected_pair(int transport, int sv[2])
{
	if (transport != LT_TCP && transport != LT_UDP)
		return socketpair(AF_UNIX, sock_type(transport), 0, sv);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	struct sockaddr_in b = a;
	socklen_t len = sizeof(a);
	int type = sock_type(transport), s = socket(AF_INET, type, 0);
	sv[0] = socket(AF_INET, type, 0);
	sv[1] = -1;
	if (s < 0 || sv[0] < 0 || bind(s, (struct sockaddr *)&a, sizeof(a)) ||
	    getsockname(s, (struct sockaddr *)&a, &len))
		goto fail;
	if (transport == LT_TCP) {
		if (listen(s, 1) || connect(sv[0], (struct sockaddr *)&a, sizeof(a)))
			goto fail;
		sv[1] = accept(s, NULL, NULL);
		close(s);
		return sv[1] < 0 ? -1 : 0;
	}
	len = sizeof(b);
	if (bind(sv[0], (struct sockaddr *)&b, sizeof(b)) ||
	    getsockname(sv[0], (struct sockaddr *)&b, &len) ||
	    connect(sv[0], (struct sockaddr *)&a, sizeof(a)) ||
	    connect(s, (struct sockaddr *)&b, sizeof(b)))
		goto fail;
	sv[1] = s;
	return 0;
fail:
	if (s >= 0)
		close(s);
	if (sv[0] >= 0)
		close(sv[0]);
	return -1;
}

/* One message of size bytes: a stream's may arrive in pieces. */
static int recv_message(int fd, char *buf, unsigned size, bool stream)
{
	for (unsigned got = 0; got < size;) {
		ssize_t n = recv(fd, buf + got, size - got, 0);
		if (n <= 0)
			return -1;
		if (!stream)
			return (unsigned)n == size ? 0 : -1;
		got += (unsigned)n;
	}
	return 0;
}

static int send_message(int fd, const char *buf, unsigned size)
{
	for (unsigned put = 0; put < size;) {
		ssize_t n = send(fd, buf + put, size - put, 0);
		if (n <= 0)
			return -1;
		put += (unsigned)n;
	}
	return 0;
}

static void pin(int cpu)
{
	cpu_set_t set;
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	sched_setaffinity(0, sizeof(set), &set);
}

/* The CPU both ends run on: the highest this process may use. */
static int chosen_cpu(void)
{
	cpu_set_t set;
	if (sched_getaffinity(0, sizeof(set), &set))
		return 0;
	for (int c = CPU_SETSIZE - 1; c > 0; c--)
		if (CPU_ISSET(c, &set))
			return c;
	return 0;
}

/* A child that runs fn and exits with its result; -1 if fork failed. */
static pid_t spawn(int cpu, int keep, int drop, int (*fn)(int, unsigned, long, uint64_t *),
		   unsigned size, long rounds, uint64_t *rtt)
{
	pid_t pid = fork();
	if (pid)
		return pid;
	signal(SIGINT, SIG_IGN); /* lotrace stops them; a Ctrl-C stops lotrace */
	signal(SIGTERM, SIG_DFL);
	close(drop);
	pin(cpu);
	struct timeval tv = { .tv_sec = 10 }; /* a lost message fails the cell, never hangs it */
	setsockopt(keep, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(keep, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	_exit(fn(keep, size, rounds, rtt) ? 1 : 0);
}

static int serve(int fd, unsigned size, long rounds, uint64_t *rtt)
{
	(void)rtt;
	char *buf = malloc(size);
	int type = 0;
	socklen_t len = sizeof(type);
	getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len);
	for (long i = 0; buf && i < rounds; i++)
		if (recv_message(fd, buf, size, type == SOCK_STREAM) || send_message(fd, buf, size))
			return -1;
	free(buf);
	return buf ? 0 : -1;
}

static int client(int fd, unsigned size, long rounds, uint64_t *rtt)
{
	char *buf = calloc(1, size);
	int type = 0;
	socklen_t len = sizeof(type);
	getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len);
	for (long i = 0; buf && i < rounds; i++) {
		uint64_t t0 = now_ns();
		if (send_message(fd, buf, size) || recv_message(fd, buf, size, type == SOCK_STREAM))
			return -1;
		rtt[i] = (now_ns() - t0) / 2;
	}
	free(buf);
	return buf ? 0 : -1;
}

static int cmp_u64(const void *x, const void *y)
{
	uint64_t a = *(const uint64_t *)x, b = *(const uint64_t *)y;
	return a < b ? -1 : a > b;
}

/* Runs one cell's ping-pong while the tracer drains its events. */
static int run_cell(struct tracer *t, struct compare_cell *c, long rounds, int cpu,
		    uint64_t *rtt)
{
	int sv[2];
	if (connected_pair(c->transport, sv))
		return -1;
	c->server = spawn(cpu, sv[1], sv[0], serve, c->size, rounds, NULL);
	c->client = c->server > 0 ? spawn(cpu, sv[0], sv[1], client, c->size, rounds, rtt) : -1;
	close(sv[0]);
	close(sv[1]);
	int ok = c->server > 0 && c->client > 0, alive = (c->server > 0) + (c->client > 0);
	while (alive) {
		if (tracer_poll_within(t, 0.05))
			ok = 0;
		int st;
		pid_t p;
		while ((p = waitpid(-1, &st, WNOHANG)) > 0) {
			if (p != c->server && p != c->client)
				continue;
			alive--;
			if (!WIFEXITED(st) || WEXITSTATUS(st))
				ok = 0;
		}
		if (p < 0 && errno != EINTR)
			break;
	}
	if (!ok)
		return -1;
	/* The first 10% warm up; the median of the rest. */
	long warm = rounds / 10, n = rounds - warm;
	qsort(rtt + warm, (size_t)n, sizeof(*rtt), cmp_u64);
	c->rtt_half_p50 = rtt[warm + (n - 1) / 2];
	return 0;
}

/* lotrace's numbers for a cell: the pair both ways, and both ends' send rows. */
static void cell_from_agg(struct compare_cell *c, const struct agg *a)
{
	for (size_t i = 0; i < a->npairs; i++) {
		const struct agg_pair *p = &a->pairs[i];
		bool fwd = p->sender == (uint32_t)c->client && p->receiver == (uint32_t)c->server;
		bool back = p->sender == (uint32_t)c->server && p->receiver == (uint32_t)c->client;
		if (p->transport != c->transport || (!fwd && !back))
			continue;
		c->messages += p->messages;
		if (p->latency) {
			hist_merge(&c->latency, p->latency);
			c->timed += p->latency->samples;
		}
	}
	for (size_t i = 0; i < a->nprocs; i++) {
		const struct agg_proc *p = &a->procs[i];
		if (p->transport == c->transport && p->direction == LT_SEND && p->send_dur &&
		    (p->tgid == (uint32_t)c->client || p->tgid == (uint32_t)c->server))
			hist_merge(&c->send, p->send_dur);
	}
}

static uint64_t q(const struct hist *h, double quantile)
{
	return h->count ? hist_quantile(h, quantile) : 0;
}

/* The unix_stream cell of the same size, whose latency the others are shown against. */
static const struct compare_cell *baseline_of(const struct compare_cell *cells, size_t n,
					      const struct compare_cell *c)
{
	for (size_t i = 0; i < n; i++)
		if (cells[i].size == c->size && cells[i].transport == LT_UNIX_STREAM &&
		    !cells[i].failed && cells[i].latency.count)
			return &cells[i];
	return NULL;
}

static void print_table(FILE *out, const struct compare_cell *cells, size_t n,
			const struct lt_opts *o, int cpu, const char *backend)
{
	char b[5][16];
	fprintf(out, "lotrace compare: %ld round trips per cell on CPU %d, backend %s\n\n",
		o->compare_rounds, cpu, backend);
	fprintf(out, "%-7s %-14s %9s %8s %8s %8s %6s %6s\n", "SIZE", "TRANSPORT", "RTT/2 p50",
		"LAT p50", "LAT p99", "SEND p50", "TIMED", "LAT x");
	for (size_t i = 0; i < n; i++) {
		const struct compare_cell *c = &cells[i];
		if (i && c->size != cells[i - 1].size)
			fputc('\n', out);
		char size[16];
		snprintf(size, sizeof(size), "%u B", c->size);
		fprintf(out, "%-7s %-14s ", size, lt_transport_name(c->transport));
		if (c->failed) {
			fprintf(out, "ping-pong failed\n");
			continue;
		}
		format_ns_short(b[0], sizeof(b[0]), c->rtt_half_p50);
		format_ns_short(b[1], sizeof(b[1]), q(&c->latency, 0.5));
		format_ns_short(b[2], sizeof(b[2]), q(&c->latency, 0.99));
		format_ns_short(b[3], sizeof(b[3]), q(&c->send, 0.5));
		snprintf(b[4], sizeof(b[4]), "%llu%%",
			 c->messages ? (unsigned long long)(c->timed * 100 / c->messages) : 0ull);
		fprintf(out, "%9s %8s %8s %8s %6s", b[0], c->latency.count ? b[1] : "-",
			c->latency.count ? b[2] : "-", c->send.count ? b[3] : "-", b[4]);
		const struct compare_cell *base = baseline_of(cells, n, c);
		if (base && base != c && c->latency.count)
			fprintf(out, " %5.2fx", (double)q(&c->latency, 0.5) / (double)q(&base->latency, 0.5));
		fputc('\n', out);
	}
	fprintf(out, "\nRTT/2: the client's round trip / 2, in user space.  LAT: lotrace's per-\n"
		     "message latency (send entry to recv return), both directions; SEND: time in\n"
		     "the send call; LAT x: LAT p50 against unix_stream's at the same size.\n\n");
	/* The headline: TCP loopback against a Unix stream, per size. */
	bool header = false;
	for (size_t i = 0; i < n; i++) {
		const struct compare_cell *c = &cells[i], *base = baseline_of(cells, n, c);
		if (c->transport != LT_TCP || c->failed || !base || !c->latency.count ||
		    !c->send.count || !base->send.count || !q(&base->latency, 0.5) ||
		    !q(&base->send, 0.5))
			continue;
		if (!header)
			fprintf(out, "=> tcp against unix_stream, p50:  latency     send\n");
		header = true;
		char size[16];
		snprintf(size, sizeof(size), "%u B", c->size);
		fprintf(out, "   %-30s %6.2fx %7.2fx\n", size,
			(double)q(&c->latency, 0.5) / (double)q(&base->latency, 0.5),
			(double)q(&c->send, 0.5) / (double)q(&base->send, 0.5));
	}
	fputc('\n', out);
	report_line(out, SEED_REFERENCE ".", false);
}

static void print_json(FILE *out, const struct compare_cell *cells, size_t n,
		       const struct lt_opts *o, int cpu, const char *backend)
{
	fprintf(out, "{\"backend\": \"%s\", \"round_trips\": %ld, \"cpu\": %d, \"cells\": [", backend,
		o->compare_rounds, cpu);
	for (size_t i = 0; i < n; i++) {
		const struct compare_cell *c = &cells[i];
		const struct compare_cell *base = baseline_of(cells, n, c);
		fprintf(out,
			"%s\n  {\"size\": %u, \"transport\": \"%s\", \"ok\": %s, \"client_pid\": %d, "
			"\"server_pid\": %d, \"rtt_half_p50_ns\": %llu, \"messages\": %llu, "
			"\"timed\": %llu, \"latency_p50_ns\": %llu, \"latency_p99_ns\": %llu, "
			"\"send_p50_ns\": %llu, \"latency_vs_unix_stream\": ",
			i ? "," : "", c->size, lt_transport_name(c->transport),
			c->failed ? "false" : "true", (int)c->client, (int)c->server,
			(unsigned long long)c->rtt_half_p50, (unsigned long long)c->messages,
			(unsigned long long)c->timed, (unsigned long long)q(&c->latency, 0.5),
			(unsigned long long)q(&c->latency, 0.99), (unsigned long long)q(&c->send, 0.5));
		if (base && c->latency.count && !c->failed)
			fprintf(out, "%.3f}", (double)q(&c->latency, 0.5) / (double)q(&base->latency, 0.5));
		else
			fprintf(out, "null}");
	}
	/* SEED_REFERENCE's figures. */
	fprintf(out, "\n], \"reference\": {\"source\": \"the seed\", \"unix_socket_us\": [2, 3], "
		     "\"tcp_loopback_us\": 3.6, \"improvement_percent\": 36}}\n");
}

int compare_run(struct tracer *t, const struct lt_opts *o, struct agg *a, FILE *out)
{
	size_t n = (size_t)o->ncompare_sizes * NTRANSPORTS;
	struct compare_cell *cells = calloc(n, sizeof(*cells));
	/* Shared with the clients, which write their round trips there. */
	uint64_t *rtt = mmap(NULL, (size_t)o->compare_rounds * sizeof(*rtt), PROT_READ | PROT_WRITE,
			     MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (!cells || rtt == MAP_FAILED) {
		fprintf(stderr, "lotrace: compare: out of memory\n");
		free(cells);
		return 1;
	}
	int cpu = chosen_cpu(), ret = 0;
	for (int s = 0; s < o->ncompare_sizes; s++) {
		for (size_t k = 0; k < NTRANSPORTS; k++) {
			struct compare_cell *c = &cells[s * NTRANSPORTS + k];
			c->transport = compare_transports[k];
			c->size = o->compare_sizes[s];
			if (!o->quiet)
				fprintf(stderr, "lotrace: compare: %s, %u B ...\n",
					lt_transport_name(c->transport), c->size);
			if (lt_stop_requested || run_cell(t, c, o->compare_rounds, cpu, rtt)) {
				c->failed = 1;
				ret = 1;
				if (!lt_stop_requested)
					fprintf(stderr, "lotrace: compare: the %s ping-pong of %u B failed\n",
						lt_transport_name(c->transport), c->size);
			}
		}
	}
	munmap(rtt, (size_t)o->compare_rounds * sizeof(*rtt));
	tracer_freeze(t);
	if (tracer_poll(t, 0) || tracer_snapshot(t))
		ret = 1;
	for (size_t i = 0; i < n; i++)
		if (!cells[i].failed)
			cell_from_agg(&cells[i], a);
	if (o->json)
		print_json(out, cells, n, o, cpu, a->backend);
	else
		print_table(out, cells, n, o, cpu, a->backend);
	free(cells);
	return ret;
}
