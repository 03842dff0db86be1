/*
 * Attaching the `lo` packet counter.  tcx links (6.6+) go away with the
 * process, so a killed lotrace leaves nothing behind.  The clsact fallback is
 * a tc filter that outlives its process, so ownership is explicit:
 *  - each lotrace's filter sits at priority LT_TC_PRIORITY with the handle
 *    LT_TC_HANDLE_TAG | its pid, so several lotraces count side by side;
 *  - a filter with that tag running lt_lo_egress (the name is checked where
 *    lotrace may read it: CAP_SYS_ADMIN) is stale only when its owner is gone: no
 *    process with that pid, or that process holds no fd of the filter's
 *    program (/proc/PID/fdinfo prog_id); when that cannot be read it is left
 *    alone.  Every start that touches tc (clsact, tcx, auto) removes stale ones;
 *  - a clsact qdisc lotrace created is recorded in LT_RUN_DIR (per network
 *    namespace, by its cookie), so it is removed once no filter is left on it, by the lotrace
 *    that created it or, after a SIGKILL, by the next one.  A qdisc someone
 *    else created is never removed.  The tc changes of concurrent lotraces are
 *    serialised by a flock on LT_RUN_DIR.
 */
#ifndef LOTRACE_LO_ATTACH_H
#define LOTRACE_LO_ATTACH_H

#include <stdbool.h>
#include <stdio.h>
#include "opts.h"

#define LT_TC_PRIORITY 1 /* runs before filters that end the chain */
#define LT_TC_PID_MASK 0x3fffffu /* pids are at most 2^22 */
#define LT_TC_HANDLE_TAG 0x10c00000u
#define LT_LO_PROG_NAME "lt_lo_egress"
#define LT_RUN_DIR "/run/lotrace"

struct lo_attachment {
	enum lt_lo_mode mode; /* what is attached: TCX, CLSACT or NONE */
	int link_fd;          /* tcx */
	int ifindex;
	unsigned handle;      /* clsact: our filter's handle (our pid) */
	bool created_qdisc;   /* clsact: lotrace created it, so it may remove it */
};

/* Attach prog_fd to lo egress as opts asks; errors go to log, and the fallback note unless quiet. */
int lo_attach(struct lo_attachment *lo, int prog_fd, enum lt_lo_mode want, FILE *log, bool quiet);
/* Detach; returns 0 when nothing of lotrace's is left on lo. */
int lo_detach(struct lo_attachment *lo, FILE *log);
/* Number of tc filters on lo (both clsact directions), -1 on error. */
int lo_count_filters(int ifindex);

#endif
