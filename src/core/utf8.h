/* A text cut at a byte count (snprintf into a fixed buffer) can end inside a UTF-8 sequence; JSON writers then
 * refuse the whole string. */
#ifndef MIMO_CORE_UTF8_H
#define MIMO_CORE_UTF8_H
#include <string.h>

/* Drops an incomplete UTF-8 sequence at the end of s (in place). */
static inline void mimo_utf8_trim_tail(char *s) {
  size_t n = strlen(s), i = n;
  while (i > 0 && n - i < 4 && ((unsigned char)s[i - 1] & 0xc0) == 0x80) /* continuation bytes */
    i--;
  if (i == 0 || ((unsigned char)s[i - 1] & 0x80) == 0)
    return; /* ASCII before them: nothing open (stray continuations are not ours to judge) */
  const unsigned char lead = (unsigned char)s[i - 1];
  const size_t want = lead >= 0xf0 ? 4 : lead >= 0xe0 ? 3 : lead >= 0xc0 ? 2 : 1;
  if (n - (i - 1) < want)
    s[i - 1] = 0;
}
#endif
