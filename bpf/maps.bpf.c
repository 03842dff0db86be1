/* SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause */
/* The one definition of every shared map (see maps.bpf.h). */
#define LT_MAPS_OWNER
#include "maps.bpf.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";
