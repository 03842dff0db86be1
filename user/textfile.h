/*
 * Atomic replacement of one file in one directory, for node_exporter's
 * textfile collector: a reader sees the old file or the new one, never a
 * part.  The directory is opened once; every later access is relative to it,
 * so nothing is ever written outside it, and no symlink in it is followed.
 */
#ifndef LOTRACE_TEXTFILE_H
#define LOTRACE_TEXTFILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct textfile {
	int dirfd;
	int lockfd;      /* ".NAME.lock" in the directory, write-locked (fcntl) while we run */
	char name[64];   /* file name inside the directory */
	char dir[4096];  /* the path given, to notice the directory being replaced */
};

/*
 * Opens dir (its last component must not be a symlink), locks it against a
 * second writer of the same file (another lotrace export), and proves a file
 * can be created there.  0, or -1 with a one-line reason (no newline) in why.
 */
int textfile_open(struct textfile *tf, const char *dir, const char *name, char *why,
		  size_t whylen);
/*
 * If the path now names another directory than the one open (removed and
 * recreated, as configuration management does) or the open one was removed,
 * open and lock the new one.  0: unchanged; 1: reopened; -1: the path is not
 * usable now (why says so; the old directory stays open, call again later);
 * -2: another lotrace export holds the new directory (why names its pid).
 */
int textfile_follow(struct textfile *tf, char *why, size_t whylen);
/* Replaces the file with data.  0 or -errno; on failure the old file is intact. */
int textfile_write(struct textfile *tf, const void *data, size_t len);
/* Removes the file (not what a symlink there points to).  0 or -errno. */
int textfile_remove(struct textfile *tf);
/*
 * Whether writing into the directory relies on CAP_DAC_OVERRIDE (its mode
 * does not let this process's uid/gid create files there): then lotrace keeps
 * that capability after dropping the others.
 */
bool textfile_needs_dac_override(const struct textfile *tf);
/* Closes the directory and releases the lock (removing the lock file). */
void textfile_close(struct textfile *tf);

/* Temporary names are ".NAME.tmp.XXXXXXXXXXXX" with this random source (tests replace it). */
extern uint64_t (*textfile_random)(void);

#endif
