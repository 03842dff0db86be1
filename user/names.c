#include <stdbool.h>
#include <stdint.h>
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

/* Length of the valid UTF-8 sequence at s (and its code point in *cp), or 0. */
static size_t utf8_decode(const unsigned char *s, uint32_t *cp)
{
	size_t n;
	uint32_t c;

	if (s[0] < 0x80) {
		*cp = s[0];
		return 1;
	}
	if ((s[0] & 0xe0) == 0xc0)
		n = 2, c = s[0] & 0x1f;
	else if ((s[0] & 0xf0) == 0xe0)
		n = 3, c = s[0] & 0x0f;
	else if ((s[0] & 0xf8) == 0xf0)
		n = 4, c = s[0] & 0x07;
	else
		return 0;
	for (size_t i = 1; i < n; i++) {
		if ((s[i] & 0xc0) != 0x80) /* also stops at the NUL of a cut sequence */
			return 0;
		c = c << 6 | (s[i] & 0x3f);
	}
	/* Overlong forms, surrogates and values past U+10FFFF are invalid too. */
	static const uint32_t min_cp[5] = { 0, 0, 0x80, 0x800, 0x10000 };
	if (c < min_cp[n] || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
		return 0;
	*cp = c;
	return n;
}

/* Characters that move the cursor, start escape sequences or reorder text. */
static bool is_control(uint32_t cp)
{
	return cp < 0x20 || (cp >= 0x7f && cp <= 0x9f) || (cp >= 0x2028 && cp <= 0x202e) ||
	       (cp >= 0x2066 && cp <= 0x2069);
}

void lt_name_clean(char *out, size_t len, const char *in)
{
	static const char replacement[] = "\xef\xbf\xbd";
	const unsigned char *s = (const unsigned char *)in;
	size_t o = 0;

	if (!len)
		return;
	while (*s) {
		uint32_t cp = 0;
		size_t n = utf8_decode(s, &cp);
		char esc[17];
		const char *src;
		size_t w;
		if (!n) {
			src = replacement, w = 3, n = 1;
		} else if (is_control(cp)) {
			for (size_t i = 0; i < n; i++)
				snprintf(esc + 4 * i, sizeof(esc) - 4 * i, "\\x%02x", s[i]);
			src = esc, w = 4 * n;
		} else {
			src = (const char *)s, w = n;
		}
		if (o + w >= len)
			break; /* whole characters only */
		memcpy(out + o, src, w);
		o += w;
		s += n;
	}
	out[o] = 0;
}

static int cp_width(uint32_t cp)
{
	static const uint32_t zero[][2] = {
		{ 0x0300, 0x036f }, { 0x200b, 0x200f }, { 0xfe00, 0xfe0f }, { 0xfe20, 0xfe2f },
	};
	static const uint32_t wide[][2] = {
		{ 0x1100, 0x115f },   { 0x2e80, 0x303e },   { 0x3041, 0x33ff },
		{ 0x3400, 0x4dbf },   { 0x4e00, 0x9fff },   { 0xa000, 0xa4cf },
		{ 0xac00, 0xd7a3 },   { 0xf900, 0xfaff },   { 0xfe30, 0xfe4f },
		{ 0xff00, 0xff60 },   { 0xffe0, 0xffe6 },   { 0x1f300, 0x1f64f },
		{ 0x1f900, 0x1f9ff }, { 0x20000, 0x2fffd }, { 0x30000, 0x3fffd },
	};
	for (size_t i = 0; i < sizeof(zero) / sizeof(zero[0]); i++)
		if (cp >= zero[i][0] && cp <= zero[i][1])
			return 0;
	for (size_t i = 0; i < sizeof(wide) / sizeof(wide[0]); i++)
		if (cp >= wide[i][0] && cp <= wide[i][1])
			return 2;
	return 1;
}

/* Width of the character at s and its length in *n (1 for a stray byte). */
static int char_width(const unsigned char *s, size_t *n)
{
	uint32_t cp = 0;
	*n = utf8_decode(s, &cp);
	if (!*n) {
		*n = 1;
		return 1;
	}
	return cp_width(cp);
}

int lt_name_width(const char *clean)
{
	int w = 0;
	size_t n;
	for (const unsigned char *s = (const unsigned char *)clean; *s; s += n)
		w += char_width(s, &n);
	return w;
}

void lt_name_column(FILE *f, const char *clean, int width)
{
	const unsigned char *s = (const unsigned char *)clean;
	int w = lt_name_width(clean), used = 0;
	size_t n;

	if (w <= width) {
		fputs(clean, f);
		used = w;
	} else {
		/* Room for the ellipsis (one column) at the end. */
		for (int cw; *s && used + (cw = char_width(s, &n)) <= width - 1; s += n) {
			fwrite(s, 1, n, f);
			used += cw;
		}
		if (width > 0) {
			fputs("\xe2\x80\xa6", f);
			used++;
		}
	}
	for (; used < width; used++)
		fputc(' ', f);
}
