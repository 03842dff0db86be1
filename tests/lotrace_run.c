#include "lotrace_run.h"

#include <errno.h>
#include <math.h>
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
