/*
 * Signals, shared by `lotrace stat` and `lotrace export`:
 *   SIGINT, SIGTERM        clean stop (detach; export removes its file), exit 0
 *   SIGHUP                 stat: a clean stop (the terminal is gone);
 *                          export: reopen the directory and rewrite now
 *   SIGPIPE                ignored (write errors are reported where they happen)
 *   SIGUSR1, SIGUSR2, SIGALRM
 *                          unexpected: clean up as for a stop, then die of the
 *                          same signal, so a service manager sees a failure
 */
#ifndef LOTRACE_SIGNALS_H
#define LOTRACE_SIGNALS_H

#include <signal.h>
#include <stdbool.h>

/* Set by the handlers; main loops poll them. */
extern volatile sig_atomic_t lt_stop_requested;
extern volatile sig_atomic_t lt_hup_requested; /* only when SIGHUP does not stop */

/* hup_stops: SIGHUP is a stop (stat) rather than lt_hup_requested (export). */
void lt_catch_signals(bool hup_stops);
/* After cleanup: if an unexpected signal stopped us, die of it (never returns then). */
void lt_reraise_fatal_signal(void);

#endif
