#include "procid.h"

#include <ctype.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Reads /proc/TGID/what into buf (NUL-terminated); bytes read or -1. */
static ssize_t read_proc(uint32_t tgid, const char *what, char *buf, size_t len)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%u/%s", tgid, what);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	size_t n = 0;
	while (n + 1 < len) {
		ssize_t r = read(fd, buf + n, len - 1 - n);
		if (r <= 0)
			break;
		n += (size_t)r;
	}
	close(fd);
	buf[n] = 0;
	return (ssize_t)n;
}

int procid_start(uint32_t tgid, uint64_t *start)
{
	char buf[1024];
	if (read_proc(tgid, "stat", buf, sizeof(buf)) <= 0)
		return -1;
	/* "pid (comm) state ...": comm may hold ')' and spaces; fields follow the last ')'. */
	char *p = strrchr(buf, ')');
	if (!p)
		return -1;
	/* starttime is field 22; field 3 (state) is the first after ')'. */
	for (int field = 2; field < 22 && p; field++)
		p = strchr(p + 1, ' ');
	if (!p)
		return -1;
	*start = strtoull(p + 1, NULL, 10);
	return 0;
}

int procid_comm(uint32_t tgid, char *out, size_t len)
{
	if (read_proc(tgid, "comm", out, len) <= 0)
		return -1;
	out[strcspn(out, "\n")] = 0;
	return 0;
}

int procid_cgroup(uint32_t tgid, char *out, size_t len)
{
	char buf[8192];
	if (read_proc(tgid, "cgroup", buf, sizeof(buf)) <= 0)
		return -1;
	const char *v1 = NULL;
	for (char *save = NULL, *line = strtok_r(buf, "\n", &save); line;
	     line = strtok_r(NULL, "\n", &save)) {
		if (!strncmp(line, "0::", 3)) {
			snprintf(out, len, "%s", line + 3);
			return 0;
		}
		const char *c = strstr(line, ":name=systemd:");
		if (c)
			v1 = c + strlen(":name=systemd:");
	}
	snprintf(out, len, "%s", v1 ? v1 : "/");
	return 0;
}

/* s[0..n) is a container id (64 hex digits), maybe wrapped as docker-ID.scope etc. */
static bool container_id(const char *s, size_t n, const char **id)
{
	static const char *const prefixes[] = { "docker-", "cri-containerd-", "crio-", "libpod-",
						"containerd-" };
	if (n > 6 && !memcmp(s + n - 6, ".scope", 6))
		n -= 6;
	for (size_t i = 0; i < sizeof(prefixes) / sizeof(prefixes[0]); i++) {
		size_t pl = strlen(prefixes[i]);
		if (n > pl && !memcmp(s, prefixes[i], pl)) {
			s += pl;
			n -= pl;
			break;
		}
	}
	if (n != 64)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!isxdigit((unsigned char)s[i]))
			return false;
	*id = s;
	return true;
}

static bool ends_with(const char *s, size_t n, const char *suffix)
{
	size_t sl = strlen(suffix);
	return n > sl && !memcmp(s + n - sl, suffix, sl);
}

void procid_unit_of(const char *cgroup, char *out, size_t len)
{
	const char *end = cgroup + strlen(cgroup);
	while (end > cgroup && end[-1] == '/')
		end--;
	if (end == cgroup) {
		snprintf(out, len, "-.slice"); /* systemd's name for the root cgroup */
		return;
	}
	const char *last = cgroup; /* set by the first pass; the loop runs at least once */
	size_t last_len = 0;
	/* Deepest component first: a service's own scope beats its slice. */
	while (end > cgroup) {
		const char *start = end;
		while (start > cgroup && start[-1] != '/')
			start--;
		size_t n = (size_t)(end - start);
		if (last == cgroup && !last_len) {
			last = start;
			last_len = n;
		}
		const char *id;
		if (container_id(start, n, &id)) {
			snprintf(out, len, "container:%.12s", id);
			return;
		}
		if (ends_with(start, n, ".service") || ends_with(start, n, ".scope")) {
			snprintf(out, len, "%.*s", (int)n, start);
			return;
		}
		end = start;
		while (end > cgroup && end[-1] == '/')
			end--;
	}
	snprintf(out, len, "%.*s", (int)last_len, last);
}
