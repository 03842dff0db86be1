/*
 * Attaching the `lo` packet counter.  tcx links (6.6+) go away with the
 * process, so a killed lotrace leaves nothing behind.  The clsact fallback
 * uses a fixed handle and priority: a new lotrace recognises (by program name)
 * and removes a filter a killed one left, and lotrace never removes a qdisc or
 * filter it did not create.
 */
#ifndef LOTRACE_LO_ATTACH_H
#define LOTRACE_LO_ATTACH_H

#include <stdbool.h>
#include <stdio.h>
#include "opts.h"

#define LT_TC_HANDLE 0x10ce
#define LT_TC_PRIORITY 1 /* runs before filters that end the chain */
#define LT_LO_PROG_NAME "lt_lo_egress"

struct lo_attachment {
	enum lt_lo_mode mode; /* what is attached: TCX, CLSACT or NONE */
	int link_fd;          /* tcx */
	int ifindex;
	bool created_qdisc;   /* clsact: we created it, so we may remove it */
};

/* Attach prog_fd to lo egress as opts asks; progress/fallback notes go to log. */
int lo_attach(struct lo_attachment *lo, int prog_fd, enum lt_lo_mode want, FILE *log);
/* Detach; returns 0 when nothing of lotrace's is left on lo. */
int lo_detach(struct lo_attachment *lo, FILE *log);
/* Number of tc filters on lo (both clsact directions), -1 on error. */
int lo_count_filters(int ifindex);

#endif
