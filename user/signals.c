#include "signals.h"

#include <string.h>
#include <unistd.h>

volatile sig_atomic_t lt_stop_requested;
volatile sig_atomic_t lt_hup_requested;
static volatile sig_atomic_t fatal_signal;

static void on_stop(int sig)
{
	(void)sig;
	lt_stop_requested = 1;
}

static void on_hup(int sig)
{
	(void)sig;
	lt_hup_requested = 1;
}

static void on_fatal(int sig)
{
	fatal_signal = sig;
	lt_stop_requested = 1;
}

static void catch(int sig, void (*fn)(int))
{
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = fn;
	sigemptyset(&sa.sa_mask);
	/* No SA_RESTART: a signal must cut the poll wait short. */
	sigaction(sig, &sa, NULL);
}

void lt_catch_signals(bool hup_stops)
{
	catch(SIGINT, on_stop);
	catch(SIGTERM, on_stop);
	catch(SIGHUP, hup_stops ? on_stop : on_hup);
	catch(SIGUSR1, on_fatal);
	catch(SIGUSR2, on_fatal);
	catch(SIGALRM, on_fatal);
	signal(SIGPIPE, SIG_IGN);
}

void lt_reraise_fatal_signal(void)
{
	int sig = fatal_signal;
	if (!sig)
		return;
	signal(sig, SIG_DFL);
	sigset_t s;
	sigemptyset(&s);
	sigaddset(&s, sig);
	sigprocmask(SIG_UNBLOCK, &s, NULL);
	raise(sig);
	_exit(128 + sig); /* not reached */
}
