// SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause
/*
 * hookfloor: what the tracepoint backend's hooks cost before lotrace does any
 * work, for bench/overhead.py.
 *
 *   hookfloor attach SET   attach SET's programs until SIGINT/SIGTERM
 *   hookfloor loop         on CPU 0, best of 7 runs: ns per write + read of
 *                          64 B on a Unix socketpair, and ns per getppid()
 *                          (what every system call on the host pays)
 */
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#include <bpf/libbpf.h>
#include "hookfloor.skel.h"

/* Program sets, by name: which of the skeleton's programs each loads. */
struct prog_set {
	const char *name;
	const char *what;
	bool sys_enter, send, recv, count;
};

static const struct prog_set sets[] = {
	{"empty-sock", "empty programs on sock_send_length and sock_recv_length",
	 false, true, true, false},
	{"empty-all", "empty programs on sys_enter, sock_send_length and sock_recv_length",
	 true, true, true, false},
	{"count-all", "empty sys_enter; per-process message and byte counters on the sock tracepoints",
	 true, false, false, true},
};

#define N_SETS (sizeof(sets) / sizeof(sets[0]))

static void usage(FILE *to)
{
	fprintf(to, "Usage: hookfloor attach SET | hookfloor loop\n"
		    "  attach SET  load SET's programs on the tracepoint backend's hooks and keep\n"
		    "              them attached until SIGINT or SIGTERM; SET is one of:\n");
	for (size_t i = 0; i < N_SETS; i++)
		fprintf(to, "                %-11s %s\n", sets[i].name, sets[i].what);
	fprintf(to, "  loop        on CPU 0, best of 7 runs, print as JSON the ns one write + read\n"
		    "              of 64 B on a Unix socketpair takes (write_read_ns) and the ns\n"
		    "              one getppid() takes (syscall_ns: what any system call pays)\n");
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

/* Best of 7 runs of n calls of fn, in ns per call. */
static double best_ns(bool (*fn)(void), long n)
{
	double best = 1e18;
	for (int run = 0; run < 7; run++) {
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

static int loop(void)
{
	cpu_set_t cpus;
	CPU_ZERO(&cpus);
	CPU_SET(0, &cpus);
	if (sched_setaffinity(0, sizeof(cpus), &cpus) || socketpair(AF_UNIX, SOCK_STREAM, 0, sv)) {
		perror("hookfloor: loop setup");
		return 1;
	}
	double wr = best_ns(write_read, 200000);
	double sys = best_ns(any_syscall, 1000000);
	if (wr < 0 || sys < 0) {
		perror("hookfloor: loop");
		return 1;
	}
	printf("{\"write_read_ns\": %.1f, \"syscall_ns\": %.1f}\n", wr, sys);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc == 3 && !strcmp(argv[1], "attach"))
		return attach(argv[2]);
	if (argc == 2 && !strcmp(argv[1], "loop"))
		return loop();
	if (argc == 2 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))) {
		usage(stdout);
		return 0;
	}
	usage(stderr);
	return 2;
}
