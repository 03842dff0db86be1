#include "lo_attach.h"

#include <errno.h>
#include <net/if.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
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

static int count_filters_parent(int ifindex, __u32 parent)
{
	int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
	if (fd < 0)
		return -1;
	struct {
		struct nlmsghdr nh;
		struct tcmsg tc;
	} req;
	memset(&req, 0, sizeof(req));
	req.nh.nlmsg_len = NLMSG_LENGTH(sizeof(struct tcmsg));
	req.nh.nlmsg_type = RTM_GETTFILTER;
	req.nh.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
	req.nh.nlmsg_seq = 1;
	req.tc.tcm_family = AF_UNSPEC;
	req.tc.tcm_ifindex = ifindex;
	req.tc.tcm_parent = parent;
	if (send(fd, &req, req.nh.nlmsg_len, 0) < 0) {
		close(fd);
		return -1;
	}
	int count = 0;
	char buf[16384];
	for (;;) {
		ssize_t n = recv(fd, buf, sizeof(buf), 0);
		if (n <= 0) {
			count = -1;
			break;
		}
		for (struct nlmsghdr *nh = (struct nlmsghdr *)buf; NLMSG_OK(nh, (size_t)n);
		     nh = NLMSG_NEXT(nh, n)) {
			if (nh->nlmsg_type == NLMSG_DONE)
				goto out;
			if (nh->nlmsg_type == NLMSG_ERROR) {
				struct nlmsgerr *e = NLMSG_DATA(nh);
				/* No qdisc there: no filters. */
				count = e->error == -EINVAL || e->error == -ENOENT ? count : -1;
				goto out;
			}
			if (nh->nlmsg_type == RTM_NEWTFILTER)
				count++;
		}
	}
out:
	close(fd);
	return count;
}

int lo_count_filters(int ifindex)
{
	int e = count_filters_parent(ifindex, TC_H_MAKE(TC_H_CLSACT, TC_H_MIN_EGRESS));
	int i = count_filters_parent(ifindex, TC_H_MAKE(TC_H_CLSACT, TC_H_MIN_INGRESS));
	return e < 0 || i < 0 ? -1 : e + i;
}

static int prog_name_of_id(__u32 id, char *name, size_t len)
{
	int fd = bpf_prog_get_fd_by_id(id);
	if (fd < 0)
		return -1;
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
	lo->created_qdisc = !err;

	/* A filter at lotrace's handle/priority: a killed lotrace's, or someone else's. */
	DECLARE_LIBBPF_OPTS(bpf_tc_opts, q, .handle = LT_TC_HANDLE, .priority = LT_TC_PRIORITY);
	/* Usually there is none, and libbpf would log the kernel's "not found". */
	libbpf_print_fn_t print = libbpf_set_print(NULL);
	int found = !bpf_tc_query(&hook, &q);
	libbpf_set_print(print);
	if (found) {
		char name[BPF_OBJ_NAME_LEN] = "";
		if (prog_name_of_id(q.prog_id, name, sizeof(name)) || strcmp(name, LT_LO_PROG_NAME)) {
			fprintf(log, "lotrace: lo: a filter that is not lotrace's (program '%s') uses handle 0x%x priority 0x%x on lo egress; leaving it alone\n",
				name, LT_TC_HANDLE, LT_TC_PRIORITY);
			return -EEXIST;
		}
		DECLARE_LIBBPF_OPTS(bpf_tc_opts, d, .handle = LT_TC_HANDLE, .priority = LT_TC_PRIORITY);
		err = bpf_tc_detach(&hook, &d);
		if (err) {
			fprintf(log, "lotrace: lo: cannot remove a stale lotrace filter: %s\n", strerror(-err));
			return err;
		}
		fprintf(log, "lotrace: lo: removed a stale lotrace filter (program id %u) left by a lotrace that did not exit cleanly\n",
			q.prog_id);
	}
	DECLARE_LIBBPF_OPTS(bpf_tc_opts, a, .handle = LT_TC_HANDLE, .priority = LT_TC_PRIORITY,
			    .prog_fd = prog_fd);
	err = bpf_tc_attach(&hook, &a);
	if (err) {
		fprintf(log, "lotrace: lo: cannot attach the clsact filter: %s (is the cls_bpf module available?)\n",
			strerror(-err));
		return err;
	}
	lo->mode = LT_LO_CLSACT;
	return 0;
}

int lo_attach(struct lo_attachment *lo, int prog_fd, enum lt_lo_mode want, FILE *log)
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
	if (want == LT_LO_AUTO || want == LT_LO_TCX) {
		int fd = bpf_link_create(prog_fd, lo->ifindex, LT_BPF_TCX_EGRESS, NULL);
		if (fd >= 0) {
			lo->link_fd = fd;
			lo->mode = LT_LO_TCX;
			return 0;
		}
		int err = -errno;
		if (want == LT_LO_TCX) {
			fprintf(log, "lotrace: lo: tcx attach failed: %s (tcx needs Linux 6.6+)\n",
				strerror(-err));
			return err;
		}
		fprintf(log, "lotrace: lo: tcx not available (%s; needs Linux 6.6+), using a clsact filter instead\n",
			strerror(-err));
	}
	return clsact_attach(lo, prog_fd, log);
}

int lo_detach(struct lo_attachment *lo, FILE *log)
{
	int ret = 0;

	if (lo->mode == LT_LO_TCX) {
		close(lo->link_fd);
		lo->link_fd = -1;
	} else if (lo->mode == LT_LO_CLSACT) {
		DECLARE_LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = lo->ifindex,
				    .attach_point = BPF_TC_EGRESS);
		/* bpf_tc_detach insists that prog_fd, prog_id and flags are zero. */
		DECLARE_LIBBPF_OPTS(bpf_tc_opts, d, .handle = LT_TC_HANDLE, .priority = LT_TC_PRIORITY);
		int err = bpf_tc_detach(&hook, &d);
		if (err) {
			fprintf(log, "lotrace: lo: failed to remove lotrace's filter (handle 0x%x priority 0x%x on lo egress): %s\n",
				LT_TC_HANDLE, LT_TC_PRIORITY, strerror(-err));
			ret = err;
		} else if (lo->created_qdisc && lo_count_filters(lo->ifindex) == 0) {
			/* Ours and empty: remove it. Never a qdisc someone else made. */
			hook.attach_point = BPF_TC_INGRESS | BPF_TC_EGRESS;
			err = bpf_tc_hook_destroy(&hook);
			if (err) {
				fprintf(log, "lotrace: lo: failed to remove the clsact qdisc lotrace created: %s\n",
					strerror(-err));
				ret = err;
			}
		}
	}
	lo->mode = LT_LO_NONE;
	return ret;
}
