#include "lo_attach.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <net/if.h>
#include <string.h>
#include <unistd.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/socket.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/pkt_cls.h>
#include <linux/pkt_sched.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>

/* libbpf 1.1's headers predate tcx (Linux 6.6); the UAPI value is fixed. */
#define LT_BPF_TCX_EGRESS 47

#ifndef TC_H_CLSACT
#define TC_H_CLSACT TC_H_INGRESS
#endif
#ifndef TC_H_MIN_EGRESS
#define TC_H_MIN_EGRESS 0xFFF3U
#define TC_H_MIN_INGRESS 0xFFF2U
#endif


/* One tc filter or qdisc from a netlink dump. */
struct tc_obj {
	__u32 handle, parent, prio;
	char kind[16];
	__u32 prog_id; /* cls_bpf only */
};

typedef void (*tc_obj_fn)(const struct tc_obj *o, void *ctx);

/*
 * Dumps the filters under parent (RTM_GETTFILTER) or the qdiscs
 * (RTM_GETQDISC) of ifindex.  Objects found, or -errno; no qdisc at parent
 * is 0 objects.
 */
static int tc_dump(int type, int ifindex, __u32 parent, tc_obj_fn fn, void *ctx)
{
	int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
	if (fd < 0)
		return -errno;
	struct {
		struct nlmsghdr nh;
		struct tcmsg tc;
	} req;
	memset(&req, 0, sizeof(req));
	req.nh.nlmsg_len = NLMSG_LENGTH(sizeof(struct tcmsg));
	req.nh.nlmsg_type = (__u16)type;
	req.nh.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
	req.nh.nlmsg_seq = 1;
	req.tc.tcm_family = AF_UNSPEC;
	req.tc.tcm_ifindex = ifindex;
	req.tc.tcm_parent = parent;
	if (send(fd, &req, req.nh.nlmsg_len, 0) < 0) {
		int err = -errno;
		close(fd);
		return err;
	}
	int count = 0;
	static char buf[32768];
	for (;;) {
		ssize_t n = recv(fd, buf, sizeof(buf), 0);
		if (n <= 0) {
			count = n < 0 ? -errno : -EIO;
			break;
		}
		for (struct nlmsghdr *nh = (struct nlmsghdr *)buf; NLMSG_OK(nh, (size_t)n);
		     nh = NLMSG_NEXT(nh, n)) {
			if (nh->nlmsg_type == NLMSG_DONE)
				goto out;
			if (nh->nlmsg_type == NLMSG_ERROR) {
				struct nlmsgerr *e = NLMSG_DATA(nh);
				/* No qdisc there: no filters. */
				if (e->error && e->error != -EINVAL && e->error != -ENOENT)
					count = e->error;
				goto out;
			}
			if (nh->nlmsg_type != RTM_NEWTFILTER && nh->nlmsg_type != RTM_NEWQDISC)
				continue;
			struct tcmsg *tc = NLMSG_DATA(nh);
			if (tc->tcm_ifindex != ifindex)
				continue;
			struct tc_obj o = { .handle = tc->tcm_handle, .parent = tc->tcm_parent,
					    .prio = TC_H_MAJ(tc->tcm_info) >> 16 };
			int alen = (int)(nh->nlmsg_len - NLMSG_LENGTH(sizeof(*tc)));
			for (struct rtattr *a = (struct rtattr *)((char *)tc + NLMSG_ALIGN(sizeof(*tc)));
			     RTA_OK(a, alen); a = RTA_NEXT(a, alen)) {
				if (a->rta_type == TCA_KIND) {
					snprintf(o.kind, sizeof(o.kind), "%.*s", (int)RTA_PAYLOAD(a),
						 (const char *)RTA_DATA(a));
				} else if (a->rta_type == TCA_OPTIONS) {
					int olen = (int)RTA_PAYLOAD(a);
					for (struct rtattr *b = RTA_DATA(a); RTA_OK(b, olen);
					     b = RTA_NEXT(b, olen))
						if (b->rta_type == TCA_BPF_ID &&
						    RTA_PAYLOAD(b) >= sizeof(__u32))
							memcpy(&o.prog_id, RTA_DATA(b), sizeof(__u32));
				}
			}
			count++;
			if (fn)
				fn(&o, ctx);
		}
	}
out:
	close(fd);
	return count;
}

#define EGRESS TC_H_MAKE(TC_H_CLSACT, TC_H_MIN_EGRESS)
#define INGRESS TC_H_MAKE(TC_H_CLSACT, TC_H_MIN_INGRESS)

int lo_count_filters(int ifindex)
{
	int e = tc_dump(RTM_GETTFILTER, ifindex, EGRESS, NULL, NULL);
	int i = tc_dump(RTM_GETTFILTER, ifindex, INGRESS, NULL, NULL);
	return e < 0 || i < 0 ? -1 : e + i;
}

static void find_clsact(const struct tc_obj *o, void *ctx)
{
	if (!strcmp(o->kind, "clsact"))
		*(bool *)ctx = true;
}

/* 1: lo has a clsact qdisc, 0: not, -1: cannot tell. */
static int has_clsact(int ifindex)
{
	bool found = false;
	return tc_dump(RTM_GETQDISC, ifindex, 0, find_clsact, &found) < 0 ? -1 : found;
}

static int prog_name_of_id(__u32 id, char *name, size_t len)
{
	int fd = bpf_prog_get_fd_by_id(id);
	if (fd < 0)
		return -1; /* errno says why */
	struct bpf_prog_info info;
	__u32 info_len = sizeof(info);
	memset(&info, 0, sizeof(info));
	int err = bpf_obj_get_info_by_fd(fd, &info, &info_len);
	close(fd);
	if (err)
		return -1;
	snprintf(name, len, "%s", info.name);
	return 0;
}

enum owner { OWNER_ALIVE, OWNER_GONE, OWNER_UNKNOWN };

/*
 * Is the lotrace whose pid is the filter's handle still there, holding the
 * filter's program?  A lotrace keeps its program's fd open while it runs, so
 * /proc/PID/fdinfo shows "prog_id: ID".  No such pid, or a pid (reused) that
 * holds no fd of it: gone.  Unreadable fdinfo (a process with capabilities we
 * lack): unknown, so the filter is left alone.
 */
static enum owner filter_owner(__u32 pid, __u32 prog_id)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%u/fdinfo", pid);
	int dfd = pid ? open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC) : -1;
	if (dfd < 0)
		return pid && errno != ENOENT ? OWNER_UNKNOWN : OWNER_GONE;
	DIR *d = fdopendir(dfd);
	if (!d) {
		close(dfd);
		return OWNER_UNKNOWN;
	}
	enum owner st = OWNER_GONE;
	char want[32];
	int wlen = snprintf(want, sizeof(want), "prog_id:\t%u\n", prog_id);
	struct dirent *e;
	while (st == OWNER_GONE && (e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		int fd = openat(dirfd(d), e->d_name, O_RDONLY | O_CLOEXEC);
		if (fd < 0) {
			if (errno != ENOENT) /* ENOENT: that fd was just closed */
				st = OWNER_UNKNOWN;
			continue;
		}
		char buf[1024];
		ssize_t n = read(fd, buf, sizeof(buf) - 1);
		close(fd);
		if (n <= 0)
			continue;
		buf[n] = 0;
		for (char *p = buf; (p = strstr(p, want)); p += wlen)
			if (p == buf || p[-1] == '\n')
				st = OWNER_ALIVE;
	}
	closedir(d);
	return st;
}

/* Removes the filter at handle on lo egress.  bpf_tc_detach wants prog_fd, prog_id and flags zero. */
static int detach_filter(int ifindex, __u32 handle)
{
	DECLARE_LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = ifindex, .attach_point = BPF_TC_EGRESS);
	DECLARE_LIBBPF_OPTS(bpf_tc_opts, d, .handle = handle, .priority = LT_TC_PRIORITY);
	return bpf_tc_detach(&hook, &d);
}

struct stale_scan {
	int ifindex;
	FILE *log;
	int left; /* lotrace filters of live (or unknown) owners */
	__u32 stale[64];
	int nstale;
};

static void note_filter(const struct tc_obj *o, void *ctx)
{
	struct stale_scan *s = ctx;
	char name[BPF_OBJ_NAME_LEN] = "";
	if (o->prio != LT_TC_PRIORITY || strcmp(o->kind, "bpf") || !o->prog_id ||
	    (o->handle & ~LT_TC_PID_MASK) != LT_TC_HANDLE_TAG)
		return; /* not lotrace's */
	/* The name, where we may read it (CAP_SYS_ADMIN); else the handle's tag decides. */
	if (prog_name_of_id(o->prog_id, name, sizeof(name)) ? errno != EPERM :
							      strcmp(name, LT_LO_PROG_NAME) != 0)
		return;
	__u32 pid = o->handle & LT_TC_PID_MASK;
	if (filter_owner(pid, o->prog_id) == OWNER_GONE &&
	    s->nstale < (int)(sizeof(s->stale) / sizeof(s->stale[0])))
		s->stale[s->nstale++] = o->handle;
	else
		s->left++;
}

#ifndef SO_NETNS_COOKIE
#define SO_NETNS_COOKIE 71
#endif

/*
 * LT_RUN_DIR/clsact-lo.NETNS: "lotrace created the clsact qdisc on lo in this
 * netns".  NETNS is the netns cookie (5.14+), never reused, unlike the netns
 * inode number, which is the fallback.
 */
static void marker_path(char *buf, size_t len)
{
	unsigned long long cookie = 0;
	socklen_t clen = sizeof(cookie);
	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd >= 0 && !getsockopt(fd, SOL_SOCKET, SO_NETNS_COOKIE, &cookie, &clen)) {
		close(fd);
		snprintf(buf, len, "%s/clsact-lo.c%llu", LT_RUN_DIR, cookie);
		return;
	}
	if (fd >= 0)
		close(fd);
	struct stat st;
	unsigned long ns = stat("/proc/self/ns/net", &st) ? 0 : (unsigned long)st.st_ino;
	snprintf(buf, len, "%s/clsact-lo.i%lu", LT_RUN_DIR, ns);
}

static bool marker_exists(void)
{
	char path[128];
	marker_path(path, sizeof(path));
	return !access(path, F_OK);
}

static void marker_set(bool on)
{
	char path[128];
	marker_path(path, sizeof(path));
	if (!on) {
		unlink(path);
		return;
	}
	int fd = open(path, O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0644);
	if (fd >= 0)
		close(fd);
}

/* flock on LT_RUN_DIR: one lotrace at a time changes lo's tc state.  -1: no run dir (no lock). */
static int tc_lock(void)
{
	mkdir(LT_RUN_DIR, 0755);
	int fd = open(LT_RUN_DIR, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd >= 0 && flock(fd, LOCK_EX)) {
		close(fd);
		fd = -1;
	}
	return fd;
}

static void tc_unlock(int fd)
{
	if (fd >= 0)
		close(fd);
}

/* Removes the clsact qdisc if lotrace created it (we, or the marker says so) and it holds no filter. */
static int remove_qdisc_if_ours_and_empty(int ifindex, bool ours, FILE *log, const char *whose)
{
	int q = has_clsact(ifindex);
	if (q == 0) {
		marker_set(false); /* someone removed it: the record is stale */
		return 0;
	}
	if (q < 0 || !(ours || marker_exists()) || lo_count_filters(ifindex) != 0)
		return 0;
	DECLARE_LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = ifindex,
			    .attach_point = BPF_TC_INGRESS | BPF_TC_EGRESS);
	int err = bpf_tc_hook_destroy(&hook);
	if (err) {
		fprintf(log, "lotrace: lo: failed to remove the clsact qdisc %s created: %s\n", whose,
			strerror(-err));
		return err;
	}
	marker_set(false);
	if (strcmp(whose, "lotrace"))
		fprintf(log, "lotrace: lo: removed the clsact qdisc %s created\n", whose);
	return 0;
}

/*
 * Removes the filters of lotraces that are gone, then the qdisc a lotrace
 * created if nothing is left on it.  Called with the tc lock held.
 */
static void clean_stale(int ifindex, FILE *log)
{
	if (has_clsact(ifindex) == 0) {
		marker_set(false);
		return;
	}
	struct stale_scan s = { .ifindex = ifindex, .log = log };
	if (tc_dump(RTM_GETTFILTER, ifindex, EGRESS, note_filter, &s) < 0)
		return;
	for (int i = 0; i < s.nstale; i++) {
		int err = detach_filter(ifindex, s.stale[i]);
		if (err)
			fprintf(log, "lotrace: lo: cannot remove the filter of lotrace pid %u, which is gone: %s\n",
				s.stale[i] & LT_TC_PID_MASK, strerror(-err));
		else
			fprintf(log, "lotrace: lo: removed a stale lotrace filter left by pid %u, which did not exit cleanly\n",
				s.stale[i] & LT_TC_PID_MASK);
	}
	remove_qdisc_if_ours_and_empty(ifindex, false, log, "a lotrace that did not exit cleanly");
}

static int clsact_attach(struct lo_attachment *lo, int prog_fd, FILE *log)
{
	DECLARE_LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = lo->ifindex,
			    .attach_point = BPF_TC_EGRESS);
	int err = bpf_tc_hook_create(&hook);
	if (err && err != -EEXIST) {
		fprintf(log, "lotrace: lo: cannot create a clsact qdisc: %s (is the sch_ingress module available?)\n",
			strerror(-err));
		return err;
	}
	/* An existing one is ours to remove later only if a lotrace recorded creating it. */
	lo->created_qdisc = !err || marker_exists();
	if (!err)
		marker_set(true);
	lo->handle = LT_TC_HANDLE_TAG | ((unsigned)getpid() & LT_TC_PID_MASK);
	DECLARE_LIBBPF_OPTS(bpf_tc_opts, a, .handle = lo->handle, .priority = LT_TC_PRIORITY,
			    .prog_fd = prog_fd);
	err = bpf_tc_attach(&hook, &a);
	if (err) {
		fprintf(log, "lotrace: lo: cannot attach the clsact filter (handle 0x%x priority %u on lo egress): %s%s\n",
			lo->handle, LT_TC_PRIORITY, strerror(-err),
			err == -EEXIST ? " (a filter of a process that is still there uses it)" :
					 " (is the cls_bpf module available?)");
		remove_qdisc_if_ours_and_empty(lo->ifindex, lo->created_qdisc, log, "lotrace");
		return err;
	}
	lo->mode = LT_LO_CLSACT;
	return 0;
}

int lo_attach(struct lo_attachment *lo, int prog_fd, enum lt_lo_mode want, FILE *log, bool quiet)
{
	memset(lo, 0, sizeof(*lo));
	lo->link_fd = -1;
	lo->mode = LT_LO_NONE;
	if (want == LT_LO_NONE)
		return 0;
	lo->ifindex = (int)if_nametoindex("lo");
	if (!lo->ifindex) {
		fprintf(log, "lotrace: lo: no loopback device 'lo' in this network namespace\n");
		return -ENODEV;
	}
	/* libbpf's raw kernel messages ("Exclusivity flag on, cannot modify") are not ours. */
	libbpf_print_fn_t print = libbpf_set_print(NULL);
	int lock = tc_lock();
	clean_stale(lo->ifindex, log);
	int err = 0;
	if (want == LT_LO_AUTO || want == LT_LO_TCX) {
		int fd = bpf_link_create(prog_fd, lo->ifindex, LT_BPF_TCX_EGRESS, NULL);
		if (fd >= 0) {
			lo->link_fd = fd;
			lo->mode = LT_LO_TCX;
			goto out;
		}
		err = -errno;
		if (want == LT_LO_TCX) {
			fprintf(log, "lotrace: lo: tcx attach failed: %s (tcx needs Linux 6.6+)\n",
				strerror(-err));
			goto out;
		}
		if (!quiet) /* the JSON's lo_attach says which */
			fprintf(log, "lotrace: lo: tcx not available (%s; needs Linux 6.6+), using a clsact filter instead\n",
				strerror(-err));
	}
	err = clsact_attach(lo, prog_fd, log);
out:
	tc_unlock(lock);
	libbpf_set_print(print);
	return err;
}

int lo_detach(struct lo_attachment *lo, FILE *log)
{
	int ret = 0;

	if (lo->mode == LT_LO_TCX) {
		close(lo->link_fd);
		lo->link_fd = -1;
	} else if (lo->mode == LT_LO_CLSACT) {
		libbpf_print_fn_t print = libbpf_set_print(NULL);
		int lock = tc_lock();
		int err = detach_filter(lo->ifindex, lo->handle);
		if (err) {
			fprintf(log, "lotrace: lo: failed to remove lotrace's filter (handle 0x%x priority %u on lo egress): %s\n",
				lo->handle, LT_TC_PRIORITY, strerror(-err));
			ret = err;
		} else {
			/* Ours and empty: remove it.  Never a qdisc someone else made. */
			ret = remove_qdisc_if_ours_and_empty(lo->ifindex, lo->created_qdisc, log, "lotrace");
		}
		tc_unlock(lock);
		libbpf_set_print(print);
	}
	lo->mode = LT_LO_NONE;
	return ret;
}
