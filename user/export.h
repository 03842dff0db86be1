/* `lotrace export`: trace, and keep node_exporter's textfile up to date. */
#ifndef LOTRACE_EXPORT_H
#define LOTRACE_EXPORT_H

#include "opts.h"

/* Runs until SIGINT/SIGTERM; returns the exit status. */
int export_main(const struct lt_opts *opts);

#endif
