/* Names of transports, directions and protocols: one place, used everywhere. */
#ifndef LOTRACE_NAMES_H
#define LOTRACE_NAMES_H

#include "lotrace.h"

const char *lt_transport_name(int transport);
/* Index of a transport name, or -1. */
int lt_transport_from_name(const char *name);
const char *lt_direction_name(int direction);
const char *lt_l4_name(int l4);

#endif
