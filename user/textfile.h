/*
 * Atomic replacement of one file in one directory, for node_exporter's
 * textfile collector: a reader sees the old file or the new one, never a
 * part.  The directory is opened once; every later access is relative to it,
 * so nothing is ever written outside it, and no symlink in it is followed.
 */
#ifndef LOTRACE_TEXTFILE_H
#define LOTRACE_TEXTFILE_H

#include <stddef.h>
#include <stdint.h>

struct textfile {
	int dirfd;
	char name[64]; /* file name inside the directory */
};

/*
 * Opens dir (its last component must not be a symlink) and proves a file can
 * be created there.  0, or -1 with a one-line reason (no newline) in why.
 */
int textfile_open(struct textfile *tf, const char *dir, const char *name, char *why,
		  size_t whylen);
/* Replaces the file with data.  0 or -errno; on failure the old file is intact. */
int textfile_write(struct textfile *tf, const void *data, size_t len);
/* Removes the file (not what a symlink there points to).  0 or -errno. */
int textfile_remove(struct textfile *tf);
void textfile_close(struct textfile *tf);

/* Temporary names are ".NAME.tmp.XXXXXXXXXXXX" with this random source (tests replace it). */
extern uint64_t (*textfile_random)(void);

#endif
