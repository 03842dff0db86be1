#include "signals.h"

#include <string.h>

volatile sig_atomic_t lt_stop_requested;

static void on_stop_signal(int sig)
{
	(void)sig;
	lt_stop_requested = 1;
}

void lt_catch_stop_signals(void)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_stop_signal;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
}
