/* Names of transports, directions and protocols: one place, used everywhere. */
#ifndef LOTRACE_NAMES_H
#define LOTRACE_NAMES_H

#include <stddef.h>
#include <stdio.h>
#include "lotrace.h"

const char *lt_transport_name(int transport);
/* Index of a transport name, or -1. */
int lt_transport_from_name(const char *name);
const char *lt_direction_name(int direction);
const char *lt_l4_name(int l4);

/*
 * Names other users choose (comm, cgroup paths) as every output shows them:
 * the table, the JSON and the .prom labels all go through lt_name_clean, so
 * a name reads the same everywhere and cannot drive root's terminal.
 * Valid UTF-8 is kept; each byte that is not part of valid UTF-8 becomes
 * U+FFFD; control characters (C0, DEL, C1, the line/paragraph separators
 * U+2028/9 and the bidi overrides U+202A-E, U+2066-9) become "\xHH" per
 * byte, so "ev\nil" reads ev\x0ail.  Backslashes stay as they are (systemd
 * writes unit names with \x2d), so a literal "\x0a" looks the same as a
 * newline: visible, not unambiguous.
 * out gets at most len - 1 bytes and a NUL, whole characters only.
 */
void lt_name_clean(char *out, size_t len, const char *in);
/* Room for cleaning n input bytes (each byte becomes at most 4). */
#define LT_NAME_CLEAN_LEN(n) (4 * (n) + 1)
/*
 * Terminal columns of a cleaned name: 2 for East Asian wide and fullwidth
 * characters, 0 for combining marks and zero-width characters, 1 otherwise.
 */
int lt_name_width(const char *clean);
/*
 * Writes a cleaned name into a table column of width columns: padded with
 * spaces, or cut at a character boundary and ended with an ellipsis (U+2026) when wider.
 */
void lt_name_column(FILE *f, const char *clean, int width);

#endif
