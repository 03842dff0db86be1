#include "lotrace_run.h"

#include <dirent.h>
#include <errno.h>
#include <sched.h>
#include <sys/syscall.h>
#include <linux/bpf.h>
#include <fcntl.h>
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

bool lotrace_start_in(struct lotrace_proc *p, const char *netns, const char *const *args)
{
	int out[2], err[2];
	memset(p, 0, sizeof(*p));
	if (pipe2(out, O_CLOEXEC) || pipe2(err, O_CLOEXEC))
		return false;
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
		const char *argv[32] = { lotrace_path(), "stat", "--json" };
		int n = 3;
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
	/* Ready when it says it traces; BPF loading takes well under 10 s. */
	for (int i = 0; i < 100 && !strstr(p->err, "lotrace: tracing with"); i++) {
		drain_err(p, 100);
		if (waitpid(pid, NULL, WNOHANG) == pid) {
			drain_err(p, 0);
			fprintf(stderr, "lotrace exited early: %s\n", p->err);
			p->pid = 0;
			return false;
		}
	}
	if (!strstr(p->err, "lotrace: tracing with")) {
		fprintf(stderr, "lotrace did not start: %s\n", p->err);
		return false;
	}
	return true;
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

int64_t jint(json_object *obj, const char *path)
{
	char buf[128];
	snprintf(buf, sizeof(buf), "%s", path);
	json_object *cur = obj;
	for (char *save = NULL, *tok = strtok_r(buf, ".", &save); tok;
	     tok = strtok_r(NULL, ".", &save)) {
		if (!cur || !json_object_object_get_ex(cur, tok, &cur))
			return -1;
	}
	return cur ? json_object_get_int64(cur) : -1;
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
