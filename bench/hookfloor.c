// SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause
/*
 * hookfloor: what the tracepoint backend's hooks cost before lotrace does any
 * work, for bench/overhead.py.
 *
 *   hookfloor attach SET   attach SET's programs until SIGINT/SIGTERM
 *   hookfloor loop         on CPU 0, best of 7 runs: ns per write + read of
 *                          64 B on a Unix socketpair, ns per getppid()
 *                          (what every system call on the host pays) and
 *                          per 64 B write to /dev/null (a write, not a send)
 *   hookfloor loop T [N [R]]  the same write + read on transport T (unix_stream,
 *                          unix_dgram, unix_seqpacket, tcp, udp over 127.0.0.1),
 *                          N calls, best of R runs: under qemu -icount, where
 *                          ns are instructions, bench/icount.sh's workload
 */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <bpf/libbpf.h>
#include "hookfloor.skel.h"

/* Program sets, by name: which of the skeleton's programs each loads. */
struct prog_set {
	const char *name;
	const char *what;
	bool sys_enter, send, recv, count, syscalls;
};

static const struct prog_set sets[] = {
	{"empty-sock", "empty programs on sock_send_length and sock_recv_length",
	 false, true, true, false, false},
	{"empty-all", "empty programs on sys_enter, sock_send_length and sock_recv_length",
	 true, true, true, false, false},
	{"count-all", "empty sys_enter; per-process message and byte counters on the sock tracepoints",
	 true, false, false, true, false},
	{"empty-syscalls", "empty programs on syscalls:sys_enter_{write,writev,sendto,sendmsg,sendmmsg}",
	 false, false, false, false, true},
};

#define N_SETS (sizeof(sets) / sizeof(sets[0]))

static void usage(FILE *to)
{
	fprintf(to, "Usage: hookfloor attach SET | hookfloor loop [T [N [R]]]\n"
		    "  attach SET  load SET's programs on the tracepoint backend's hooks and keep\n"
		    "              them attached until SIGINT or SIGTERM; SET is one of:\n");
	for (size_t i = 0; i < N_SETS; i++)
		fprintf(to, "                %-11s %s\n", sets[i].name, sets[i].what);
	fprintf(to, "  loop        on CPU 0, best of 7 runs, print as JSON the ns one write + read\n"
		    "              of 64 B on a Unix socketpair takes (write_read_ns) and the ns\n"
		    "              one getppid() takes (syscall_ns: what any system call pays)\n"
		    "              and one 64 B write to /dev/null (null_write_ns: a write that\n"
		    "              is not a send)\n"
		    "  loop T [N [R]]  the same on transport T (unix_stream, unix_dgram,\n"
		    "              unix_seqpacket, tcp, udp on 127.0.0.1): N write + read pairs\n"
		    "              (default 200000), best of R runs (default 7); getppid and the\n"
		    "              /dev/null write as well\n");
}

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

static int attach(const char *name)
{
	const struct prog_set *set = NULL;
	for (size_t i = 0; i < N_SETS; i++)
		if (!strcmp(sets[i].name, name))
			set = &sets[i];
	if (!set) {
		fprintf(stderr, "hookfloor: unknown SET '%s'\n", name);
		usage(stderr);
		return 2;
	}
	struct hookfloor_bpf *skel = hookfloor_bpf__open();
	if (!skel) {
		fprintf(stderr, "hookfloor: opening the BPF object failed: %s\n", strerror(errno));
		return 1;
	}
	bpf_program__set_autoload(skel->progs.hf_sys_enter, set->sys_enter);
	bpf_program__set_autoload(skel->progs.hf_send, set->send);
	bpf_program__set_autoload(skel->progs.hf_recv, set->recv);
	bpf_program__set_autoload(skel->progs.hf_count_send, set->count);
	bpf_program__set_autoload(skel->progs.hf_count_recv, set->count);
	bpf_program__set_autoload(skel->progs.hf_enter_write, set->syscalls);
	bpf_program__set_autoload(skel->progs.hf_enter_writev, set->syscalls);
	bpf_program__set_autoload(skel->progs.hf_enter_sendto, set->syscalls);
	bpf_program__set_autoload(skel->progs.hf_enter_sendmsg, set->syscalls);
	bpf_program__set_autoload(skel->progs.hf_enter_sendmmsg, set->syscalls);
	int err = hookfloor_bpf__load(skel);
	if (!err)
		err = hookfloor_bpf__attach(skel);
	if (err) {
		fprintf(stderr, "hookfloor: loading or attaching %s failed: %s\n", name, strerror(-err));
		hookfloor_bpf__destroy(skel);
		return 1;
	}
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	fprintf(stderr, "hookfloor: attached %s\n", name);
	while (!stop)
		pause();
	hookfloor_bpf__destroy(skel);
	return 0;
}

static int n_runs = 7;

/* Best of n_runs runs of n calls of fn, in ns per call. */
static double best_ns(bool (*fn)(void), long n)
{
	double best = 1e18;
	for (int run = 0; run < n_runs; run++) {
		struct timespec a, b;
		clock_gettime(CLOCK_MONOTONIC, &a);
		for (long i = 0; i < n; i++)
			if (!fn())
				return -1;
		clock_gettime(CLOCK_MONOTONIC, &b);
		double ns = ((double)(b.tv_sec - a.tv_sec) * 1e9 + (double)(b.tv_nsec - a.tv_nsec)) / n;
		if (ns < best)
			best = ns;
	}
	return best;
}

static int sv[2];

static bool write_read(void)
{
	char buf[64] = {0};
	return write(sv[0], buf, sizeof(buf)) == sizeof(buf) &&
	       read(sv[1], buf, sizeof(buf)) == sizeof(buf);
}

static bool any_syscall(void)
{
	return syscall(SYS_getppid) > 0;
}

static int null_fd;

/* A write that is not a send: what send-start hooks on write(2) cost everything else. */
static bool null_write(void)
{
	char buf[64] = {0};
	return write(null_fd, buf, sizeof(buf)) == sizeof(buf);
}

/* A connected pair of T on 127.0.0.1 in sv; false on an error. */
static bool inet_pair(int type)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	struct sockaddr_in b = a;
	socklen_t len = sizeof(a);
	int one = 1;
	int s0 = socket(AF_INET, type, 0), s1 = socket(AF_INET, type, 0);

	if (s0 < 0 || s1 < 0 || bind(s1, (struct sockaddr *)&b, sizeof(b)) ||
	    getsockname(s1, (struct sockaddr *)&b, &len))
		return false;
	if (type == SOCK_STREAM) {
		/* Nagle would hold the next write until the last one is acked. */
		if (listen(s1, 1) || connect(s0, (struct sockaddr *)&b, sizeof(b)) ||
		    setsockopt(s0, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)))
			return false;
		int c = accept(s1, NULL, NULL);
		if (c < 0)
			return false;
		close(s1);
		s1 = c;
	} else {
		len = sizeof(a);
		if (bind(s0, (struct sockaddr *)&a, sizeof(a)) ||
		    getsockname(s0, (struct sockaddr *)&a, &len) ||
		    connect(s0, (struct sockaddr *)&b, sizeof(b)) ||
		    connect(s1, (struct sockaddr *)&a, sizeof(a)))
			return false;
	}
	sv[0] = s0;
	sv[1] = s1;
	return true;
}

static int loop(const char *transport, long n, int runs)
{
	cpu_set_t cpus;
	CPU_ZERO(&cpus);
	CPU_SET(0, &cpus);
	bool ok = !sched_setaffinity(0, sizeof(cpus), &cpus);
	if (!strcmp(transport, "unix_stream"))
		ok = ok && !socketpair(AF_UNIX, SOCK_STREAM, 0, sv);
	else if (!strcmp(transport, "unix_dgram"))
		ok = ok && !socketpair(AF_UNIX, SOCK_DGRAM, 0, sv);
	else if (!strcmp(transport, "unix_seqpacket"))
		ok = ok && !socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv);
	else if (!strcmp(transport, "tcp"))
		ok = ok && inet_pair(SOCK_STREAM);
	else if (!strcmp(transport, "udp"))
		ok = ok && inet_pair(SOCK_DGRAM);
	else {
		fprintf(stderr, "hookfloor: unknown transport '%s'\n", transport);
		return 2;
	}
	if (!ok) {
		perror("hookfloor: loop setup");
		return 1;
	}
	null_fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
	if (null_fd < 0) {
		perror("hookfloor: /dev/null");
		return 1;
	}
	n_runs = runs;
	double wr = best_ns(write_read, n);
	double sys = best_ns(any_syscall, 5 * n); /* a cheaper call: more of them */
	double nw = best_ns(null_write, 5 * n);
	if (wr < 0 || sys < 0 || nw < 0) {
		perror("hookfloor: loop");
		return 1;
	}
	printf("{\"transport\": \"%s\", \"write_read_ns\": %.1f, \"syscall_ns\": %.1f, "
	       "\"null_write_ns\": %.1f}\n",
	       transport, wr, sys, nw);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc == 3 && !strcmp(argv[1], "attach"))
		return attach(argv[2]);
	if (argc == 2 && !strcmp(argv[1], "loop"))
		return loop("unix_stream", 200000, 7);
	if (argc >= 3 && argc <= 5 && !strcmp(argv[1], "loop")) {
		long n = argc >= 4 ? atol(argv[3]) : 200000;
		int runs = argc >= 5 ? atoi(argv[4]) : 7;
		if (n <= 0 || runs <= 0) {
			usage(stderr);
			return 2;
		}
		return loop(argv[2], n, runs);
	}
	if (argc == 2 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))) {
		usage(stdout);
		return 0;
	}
	usage(stderr);
	return 2;
}
