#include "lotrace_run.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <sched.h>
#include <sys/syscall.h>
#include <linux/bpf.h>
#include <fcntl.h>
#include <grp.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

const char *lotrace_path(void)
{
	const char *p = getenv("LOTRACE");
	return p ? p : "./lotrace";
}

const char *lobench_path(void)
{
	const char *p = getenv("LOBENCH");
	return p ? p : "./tools/lobench";
}

static void drain_err(struct lotrace_proc *p, int timeout_ms)
{
	size_t len = strlen(p->err);
	struct pollfd pfd = { .fd = p->err_fd, .events = POLLIN };
	while (len + 1 < sizeof(p->err) && poll(&pfd, 1, timeout_ms) > 0) {
		ssize_t n = read(p->err_fd, p->err + len, sizeof(p->err) - 1 - len);
		if (n <= 0)
			break;
		len += (size_t)n;
		p->err[len] = 0;
		if (strstr(p->err, "lotrace: tracing with"))
			break;
	}
}

bool lotrace_start(struct lotrace_proc *p, const char *const *args)
{
	return lotrace_start_in(p, NULL, args);
}

/*
 * `$LOTRACE command ARGS...` (stat: with --json), in netns; its stdout a pipe,
 * or the file out_path (for output that must not wait for its reader).
 */
static bool start_command(struct lotrace_proc *p, const char *netns, const char *command,
			  const char *out_path, const char *const *args)
{
	int out[2], err[2];
	memset(p, 0, sizeof(*p));
	if (pipe2(out, O_CLOEXEC) || pipe2(err, O_CLOEXEC))
		return false;
	if (out_path) {
		close(out[0]);
		close(out[1]);
		out[0] = -1;
		out[1] = open(out_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
		if (out[1] < 0)
			return false;
	}
	pid_t pid = fork();
	if (pid < 0)
		return false;
	if (pid == 0) {
		/* A test that dies must not leave its lotrace tracing. */
		prctl(PR_SET_PDEATHSIG, SIGTERM);
		if (netns) {
			char path[256];
			snprintf(path, sizeof(path), "/run/netns/%s", netns);
			int fd = open(path, O_RDONLY | O_CLOEXEC);
			if (fd < 0 || setns(fd, CLONE_NEWNET)) {
				fprintf(stderr, "cannot enter netns %s: %s\n", netns, strerror(errno));
				_exit(127);
			}
			close(fd);
		}
		const char *argv[32] = { lotrace_path(), command, "--json" };
		int n = strcmp(command, "stat") ? 2 : 3;
		/* The VM matrix runs the same tests once per backend. */
		const char *backend = getenv("LOTRACE_BACKEND");
		if (backend && *backend) {
			argv[n++] = "--backend";
			argv[n++] = backend;
		}
		for (int i = 0; args && args[i] && n < 31; i++)
			argv[n++] = args[i];
		argv[n] = NULL;
		dup2(out[1], 1);
		dup2(err[1], 2);
		execv(argv[0], (char *const *)argv);
		_exit(127);
	}
	close(out[1]);
	close(err[1]);
	p->pid = pid;
	p->out_fd = out[0];
	p->err_fd = err[0];
	/*
	 * Ready when it says it traces: well under a second here, but a cold
	 * guest under TCG emulation has taken more than 10 s to attach.
	 */
	for (int i = 0; i < 300 && !strstr(p->err, "lotrace: tracing with"); i++) {
		drain_err(p, 100);
		if (waitpid(pid, NULL, WNOHANG) == pid) {
			drain_err(p, 0);
			fprintf(stderr, "lotrace exited early: %s\n", p->err);
			p->pid = 0;
			return false;
		}
	}
	if (!strstr(p->err, "lotrace: tracing with")) {
		fprintf(stderr, "lotrace did not start within 30 s: %s\n", p->err);
		/* Not left to attach later, under the next test. */
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
		p->pid = 0;
		return false;
	}
	return true;
}

bool lotrace_start_in(struct lotrace_proc *p, const char *netns, const char *const *args)
{
	return start_command(p, netns, "stat", NULL, args);
}

bool lotrace_start_to_file(struct lotrace_proc *p, const char *command, const char *out_path,
			   const char *const *args)
{
	return start_command(p, NULL, command, out_path, args);
}

int lotrace_stop_status(struct lotrace_proc *p)
{
	int st = -1;
	if (p->pid <= 0)
		return -1;
	kill(p->pid, SIGINT);
	waitpid(p->pid, &st, 0);
	drain_err(p, 0);
	if (p->out_fd >= 0)
		close(p->out_fd);
	close(p->err_fd);
	p->pid = 0;
	return st;
}

char *read_fd_all(int fd, size_t *len_out)
{
	size_t cap = 65536, len = 0;
	char *buf = malloc(cap);
	for (;;) {
		if (len + 1 >= cap)
			buf = realloc(buf, cap *= 2);
		ssize_t n = read(fd, buf + len, cap - 1 - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		len += (size_t)n;
	}
	buf[len] = 0;
	if (len_out)
		*len_out = len;
	return buf;
}

json_object *lotrace_stop(struct lotrace_proc *p, int *status)
{
	int st = -1;
	if (p->pid <= 0)
		return NULL;
	kill(p->pid, SIGINT);
	char *out = read_fd_all(p->out_fd, NULL);
	waitpid(p->pid, &st, 0);
	drain_err(p, 0);
	close(p->out_fd);
	close(p->err_fd);
	p->pid = 0;
	if (status)
		*status = st;
	json_object *doc = json_tokener_parse(out);
	if (!doc)
		fprintf(stderr, "lotrace printed no JSON: stdout '%s' stderr '%s'\n", out, p->err);
	free(out);
	return doc;
}

void lotrace_kill(struct lotrace_proc *p)
{
	if (p->pid <= 0)
		return;
	kill(p->pid, SIGKILL);
	waitpid(p->pid, NULL, 0);
	close(p->out_fd);
	close(p->err_fd);
	p->pid = 0;
}

int run_capture(const char *cmd, char *buf, size_t len)
{
	FILE *f = popen(cmd, "r");
	if (!f)
		return -1;
	size_t n = fread(buf, 1, len - 1, f);
	buf[n] = 0;
	int st = pclose(f);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

int run_cmd(const char *cmd)
{
	int st = system(cmd);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

json_object *run_json(const char *cmd)
{
	static char buf[1 << 16];
	if (run_capture(cmd, buf, sizeof(buf))) {
		fprintf(stderr, "command failed: %s\n%s\n", cmd, buf);
		return NULL;
	}
	return json_tokener_parse(buf);
}

static const char *jstr(json_object *o, const char *key)
{
	json_object *v;
	return json_object_object_get_ex(o, key, &v) ? json_object_get_string(v) : "";
}

json_object *find_process(json_object *doc, int pid, const char *transport, const char *direction)
{
	json_object *rows;
	if (!json_object_object_get_ex(doc, "processes", &rows))
		return NULL;
	for (size_t i = 0; i < json_object_array_length(rows); i++) {
		json_object *r = json_object_array_get_idx(rows, i);
		if (jint(r, "pid") == pid && !strcmp(jstr(r, "transport"), transport) &&
		    !strcmp(jstr(r, "direction"), direction))
			return r;
	}
	return NULL;
}

json_object *find_pair(json_object *doc, int sender, int receiver, const char *transport)
{
	json_object *rows;
	if (!json_object_object_get_ex(doc, "pairs", &rows))
		return NULL;
	for (size_t i = 0; i < json_object_array_length(rows); i++) {
		json_object *r = json_object_array_get_idx(rows, i);
		if (jint(r, "sender_pid") == sender && jint(r, "receiver_pid") == receiver &&
		    !strcmp(jstr(r, "transport"), transport))
			return r;
	}
	return NULL;
}

static json_object *jpath(json_object *obj, const char *path)
{
	char buf[128];
	snprintf(buf, sizeof(buf), "%s", path);
	json_object *cur = obj;
	for (char *save = NULL, *tok = strtok_r(buf, ".", &save); tok;
	     tok = strtok_r(NULL, ".", &save)) {
		if (!cur || !json_object_object_get_ex(cur, tok, &cur))
			return NULL;
	}
	return cur;
}

double jnum(json_object *obj, const char *path)
{
	json_object *v = jpath(obj, path);
	return v ? json_object_get_double(v) : NAN;
}

int64_t jint(json_object *obj, const char *path)
{
	json_object *v = jpath(obj, path);
	return v ? json_object_get_int64(v) : -1;
}

const char *accounting_of(json_object *doc, char *buf, size_t len)
{
	json_object *causes = json_object_object_get(doc, "untimed_by_cause");
	int n = snprintf(buf, len, "(lotrace: missed_program_runs %lld, lost_events %lld, untimed",
			 (long long)jint(doc, "missed_program_runs"),
			 (long long)jint(doc, "lost_events"));
	if (causes) {
		json_object_object_foreach(causes, cause, v)
		{
			if (n >= 0 && (size_t)n < len)
				n += snprintf(buf + n, len - (size_t)n, " %s %lld", cause,
					      (long long)json_object_get_int64(v));
		}
	}
	if (n >= 0 && (size_t)n < len)
		snprintf(buf + n, len - (size_t)n, ")");
	return buf;
}

long owned_map_max_entries(pid_t owner, const char *name)
{
	char dir[64], path[320], line[256];
	snprintf(dir, sizeof(dir), "/proc/%d/fdinfo", (int)owner);
	DIR *d = opendir(dir);
	if (!d)
		return -1;
	long found = -1;
	for (struct dirent *e; found < 0 && (e = readdir(d));) {
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		FILE *f = fopen(path, "r");
		long id = -1;
		while (f && fgets(line, sizeof(line), f))
			if (sscanf(line, "map_id: %ld", &id) == 1)
				break;
		if (f)
			fclose(f);
		if (id < 0)
			continue;
		char cmd[96];
		snprintf(cmd, sizeof(cmd), "bpftool -j map show id %ld", id);
		json_object *m = run_json(cmd), *v;
		if (m && json_object_object_get_ex(m, "name", &v) &&
		    !strcmp(json_object_get_string(v), name) &&
		    json_object_object_get_ex(m, "max_entries", &v))
			found = json_object_get_int64(v);
		json_object_put(m);
	}
	closedir(d);
	return found;
}

/* One message of size bytes from a to b, then received: 0 or -1. */
static int ping(int a, int b, size_t size, bool stream)
{
	char buf[256] = { 0 };
	if (size > sizeof(buf) || send(a, buf, size, 0) != (ssize_t)size)
		return -1;
	size_t got = 0;
	while (got < size) { /* a stream may split it */
		ssize_t r = recv(b, buf, sizeof(buf), 0);
		if (r <= 0)
			return -1;
		got += (size_t)r;
		if (!stream)
			break;
	}
	return got == size ? 0 : -1;
}

static int pair_ping(int type, size_t size)
{
	int sv[2];
	if (socketpair(AF_UNIX, type, 0, sv))
		return -1;
	int rc = ping(sv[0], sv[1], size, type == SOCK_STREAM);
	close(sv[0]);
	close(sv[1]);
	return rc;
}

static int inet_ping(int type, size_t size)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(a);
	int s = socket(AF_INET, type, 0), c = -1, rc = -1;
	if (s < 0 || bind(s, (struct sockaddr *)&a, sizeof(a)) ||
	    getsockname(s, (struct sockaddr *)&a, &len))
		goto out;
	if (type == SOCK_DGRAM) {
		if (connect(s, (struct sockaddr *)&a, sizeof(a)) == 0)
			rc = ping(s, s, size, false); /* to itself */
		goto out;
	}
	c = socket(AF_INET, SOCK_STREAM, 0);
	if (c < 0 || listen(s, 1) || connect(c, (struct sockaddr *)&a, sizeof(a)))
		goto out;
	int acc = accept(s, NULL, NULL);
	if (acc >= 0) {
		rc = ping(c, acc, size, true);
		close(acc);
	}
out:
	if (c >= 0)
		close(c);
	if (s >= 0)
		close(s);
	return rc;
}

pid_t idle_fillers_start(int n, uid_t uid, size_t size)
{
	int ready[2];
	if (pipe2(ready, O_CLOEXEC))
		return -1;
	pid_t leader = fork();
	if (leader < 0)
		return -1;
	if (leader == 0) {
		/* Their own group, so the test can end them all; then an ordinary user. */
		setpgid(0, 0);
		if (setgroups(0, NULL) || setgid(uid) || setuid(uid))
			_exit(1);
		prctl(PR_SET_PDEATHSIG, SIGKILL); /* after setuid, which clears it */
		prctl(PR_SET_NAME, IDLE_FILLER_COMM);
		close(ready[0]);
		for (int i = 0; i < n; i++) {
			pid_t c = fork();
			if (c < 0)
				_exit(1);
			if (c == 0) {
				prctl(PR_SET_PDEATHSIG, SIGKILL);
				char ok = pair_ping(SOCK_DGRAM, size) || pair_ping(SOCK_STREAM, size) ||
						  pair_ping(SOCK_SEQPACKET, size) ||
						  inet_ping(SOCK_DGRAM, size) || inet_ping(SOCK_STREAM, size) ?
					  'E' : 'r';
				if (write(ready[1], &ok, 1) != 1)
					_exit(1);
				close(ready[1]);
				pause(); /* idle, holding its kernel rows */
				_exit(0);
			}
		}
		pause();
		_exit(0);
	}
	setpgid(leader, leader); /* no race with the child's own call */
	close(ready[1]);
	int got = 0;
	struct pollfd pfd = { .fd = ready[0], .events = POLLIN };
	while (got < n && poll(&pfd, 1, 30000) > 0) {
		char buf[256];
		ssize_t r = read(ready[0], buf, sizeof(buf));
		if (r <= 0 || memchr(buf, 'E', (size_t)r))
			break;
		got += (int)r;
	}
	close(ready[0]);
	if (got < n) {
		idle_fillers_stop(leader);
		return -1;
	}
	return leader;
}

void idle_fillers_stop(pid_t pgid)
{
	kill(-pgid, SIGKILL);
	waitpid(pgid, NULL, 0);
}

int self_dgram_traffic(int n, size_t size)
{
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_DGRAM, 0, sv))
		return -1;
	int rc = 0;
	for (int i = 0; i < n && !rc; i++)
		rc = ping(sv[0], sv[1], size, false);
	close(sv[0]);
	close(sv[1]);
	return rc;
}

pid_t run_named(const char *comm, int n, size_t size)
{
	pid_t pid = fork();
	if (pid == 0) {
		prctl(PR_SET_NAME, comm);
		_exit(self_dgram_traffic(n, size) ? 1 : 0);
	}
	return pid;
}

/* clone3's arguments up to set_tid (Linux 5.5); glibc has no wrapper. */
struct clone3_args {
	uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls;
	uint64_t set_tid, set_tid_size;
};

pid_t fork_at_pid(pid_t want)
{
	struct clone3_args args = { .exit_signal = SIGCHLD, .set_tid = (uint64_t)(uintptr_t)&want,
				    .set_tid_size = 1 };
	return (pid_t)syscall(SYS_clone3, &args, sizeof(args));
}

pid_t run_named_at_pid_as_nobody(pid_t want, const char *comm, int n, size_t size)
{
	pid_t pid = -1;
	for (int i = 0; i < 20 && pid < 0; i++) { /* another process may take it first */
		pid = fork_at_pid(want);
		if (pid < 0 && errno != EEXIST)
			break;
		if (pid < 0)
			sleep_s(0.1);
	}
	if (pid == 0) {
		/* Raw system calls: after a raw clone3, glibc's setuid would wait for threads. */
		if (syscall(SYS_setgroups, 0, NULL) || syscall(SYS_setgid, 65534) ||
		    syscall(SYS_setuid, 65534))
			_exit(1);
		prctl(PR_SET_NAME, comm);
		_exit(self_dgram_traffic(n, size) ? 1 : 0);
	}
	return pid;
}

double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void sleep_s(double s)
{
	struct timespec ts = { (time_t)s, (long)((s - (double)(time_t)s) * 1e9) };
	while (nanosleep(&ts, &ts) && errno == EINTR)
		;
}

int bpf_prog_ids_of(pid_t pid, unsigned *ids, int max)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/fdinfo", (int)pid);
	DIR *d = opendir(path);
	if (!d)
		return 0;
	int n = 0;
	struct dirent *e;
	while ((e = readdir(d)) && n < max) {
		char f[320], buf[2048];
		snprintf(f, sizeof(f), "%s/%s", path, e->d_name);
		int fd = e->d_name[0] == '.' ? -1 : open(f, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			continue;
		ssize_t len = read(fd, buf, sizeof(buf) - 1);
		close(fd);
		if (len <= 0)
			continue;
		buf[len] = 0;
		unsigned id;
		const char *p = strstr(buf, "prog_id:");
		if (!p || sscanf(p, "prog_id: %u", &id) != 1 || !id)
			continue;
		bool seen = false;
		for (int i = 0; i < n; i++)
			seen = seen || ids[i] == id;
		if (!seen)
			ids[n++] = id;
	}
	closedir(d);
	return n;
}

bool bpf_prog_id_exists(unsigned id)
{
	union bpf_attr attr;
	memset(&attr, 0, sizeof(attr));
	attr.prog_id = id;
	int fd = (int)syscall(__NR_bpf, BPF_PROG_GET_FD_BY_ID, &attr, sizeof(attr));
	if (fd >= 0) {
		close(fd);
		return true;
	}
	return errno != ENOENT;
}

unsigned wait_prog_ids_gone(const unsigned *ids, int n, double timeout_s)
{
	/* Programs are freed asynchronously after their last reference goes. */
	for (int tries = (int)(timeout_s * 10);; tries--) {
		unsigned left = 0;
		for (int i = 0; i < n && !left; i++)
			if (bpf_prog_id_exists(ids[i]))
				left = ids[i];
		if (!left || tries <= 0)
			return left;
		usleep(100 * 1000);
	}
}
