/* SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause */
/* Kernel constants that vmlinux.h cannot carry (they are macros, not enums). */
#ifndef LOTRACE_KERNEL_DEFS_H
#define LOTRACE_KERNEL_DEFS_H

#include "vmlinux.h"

#define AF_UNIX 1
#define AF_INET 2
#define AF_INET6 10
#define IPPROTO_ICMPV6 58
#define MSG_PEEK 2
#define MSG_ERRQUEUE 0x2000
#define TS_COMPAT 0x0002 /* x86 thread_info.status: a 32-bit system call */
#define UIO_MAXIOV 1024 /* sendmmsg handles at most this many messages */
#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD
#define ETH_HLEN 14
#define TC_ACT_UNSPEC (-1)
#define EEXIST 17

#endif
