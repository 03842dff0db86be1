/* What /proc says about a process: whether it still exists, its name, its cgroup. */
#ifndef LOTRACE_PROCID_H
#define LOTRACE_PROCID_H

#include <stddef.h>
#include <stdint.h>

/* 0 and its start time (clock ticks after boot) if tgid exists; -1 if it is gone. */
int procid_start(uint32_t tgid, uint64_t *start);
/* Its name (/proc/PID/comm); -1 if it is gone. */
int procid_comm(uint32_t tgid, char *out, size_t len);
/* Its cgroup v2 path ("0::" line; cgroup v1: the name=systemd one); -1 if it is gone. */
int procid_cgroup(uint32_t tgid, char *out, size_t len);
/*
 * The systemd unit or container a cgroup path belongs to: the deepest
 * component that is a container ("container:" + 12 hex digits of its id) or
 * ends in .service or .scope; else the last component; "-.slice" for "/".
 */
void procid_unit_of(const char *cgroup, char *out, size_t len);

#endif
