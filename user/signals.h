/* Stopping on SIGINT, SIGTERM and SIGHUP: every lotrace command's main loop. */
#ifndef LOTRACE_SIGNALS_H
#define LOTRACE_SIGNALS_H

#include <signal.h>

/* Set by the handlers; main loops poll it. */
extern volatile sig_atomic_t lt_stop_requested;

void lt_catch_stop_signals(void);

#endif
