#include <string.h>
#include "names.h"

static const char *const transport_names[LT_TRANSPORT_COUNT] = {
#define LOTRACE_X_NAME(e, n) [LT_##e] = n,
	LOTRACE_TRANSPORTS(LOTRACE_X_NAME)
#undef LOTRACE_X_NAME
};

const char *lt_transport_name(int transport)
{
	if (transport < 0 || transport >= LT_TRANSPORT_COUNT)
		return "unknown";
	return transport_names[transport];
}

int lt_transport_from_name(const char *name)
{
	for (int t = 0; t < LT_TRANSPORT_COUNT; t++)
		if (!strcmp(name, transport_names[t]))
			return t;
	return -1;
}

const char *lt_direction_name(int direction)
{
	return direction == LT_SEND ? "send" : "recv";
}

const char *lt_l4_name(int l4)
{
	static const char *const names[LT_L4_COUNT] = {
		[LT_L4_TCP] = "tcp", [LT_L4_UDP] = "udp",
		[LT_L4_ICMP] = "icmp", [LT_L4_OTHER] = "other",
	};
	return l4 >= 0 && l4 < LT_L4_COUNT ? names[l4] : "other";
}
