#include "server/sbuf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "text/tokenizer.h"

static int grow(mimo_sbuf *b, size_t n) {
  if (b->oom)
    return 0;
  if (b->len + n + 1 <= b->cap)
    return 1;
  size_t cap = b->cap ? b->cap : 256;
  while (cap < b->len + n + 1)
    cap *= 2;
  char *p = realloc(b->p, cap);
  if (!p) {
    b->oom = 1;
    return 0;
  }
  b->p = p;
  b->cap = cap;
  return 1;
}

void mimo_sbuf_put(mimo_sbuf *b, const void *data, size_t n) {
  if (!grow(b, n))
    return;
  if (n)
    memcpy(b->p + b->len, data, n);
  b->len += n;
  b->p[b->len] = 0;
}

void mimo_sbuf_puts(mimo_sbuf *b, const char *s) { mimo_sbuf_put(b, s, strlen(s)); }

void mimo_sbuf_printf(mimo_sbuf *b, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  char tmp[256];
  int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
  va_end(ap);
  if (n < 0)
    return;
  if ((size_t)n < sizeof tmp) {
    mimo_sbuf_put(b, tmp, (size_t)n);
    return;
  }
  if (!grow(b, (size_t)n))
    return;
  va_start(ap, fmt);
  vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
  va_end(ap);
  b->len += (size_t)n;
}

void mimo_sbuf_json_str(mimo_sbuf *b, const char *s, size_t n) {
  static const char hex[] = "0123456789abcdef";
  if (!grow(b, n + 8))
    return;
  size_t run = 0; /* bytes copied verbatim in one go */
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c >= 0x80) { /* JSON text is UTF-8: an ill-formed subsequence becomes U+FFFD, never raw bytes */
      size_t bad = 0, L = mimo_utf8_next(s + i, n - i, &bad);
      if (L) {
        i += L - 1;
        continue;
      }
      mimo_sbuf_put(b, s + run, i - run);
      mimo_sbuf_put(b, "\xEF\xBF\xBD", 3);
      run = i + bad;
      i = run - 1;
      continue;
    }
    if (c >= 0x20 && c != '"' && c != '\\')
      continue;
    mimo_sbuf_put(b, s + run, i - run);
    run = i + 1;
    char esc[7] = {'\\', 0};
    switch (c) {
    case '"': esc[1] = '"'; break;
    case '\\': esc[1] = '\\'; break;
    case '\n': esc[1] = 'n'; break;
    case '\r': esc[1] = 'r'; break;
    case '\t': esc[1] = 't'; break;
    default:
      memcpy(esc, "\\u00", 4);
      esc[4] = hex[c >> 4];
      esc[5] = hex[c & 15];
    }
    mimo_sbuf_put(b, esc, strlen(esc));
  }
  mimo_sbuf_put(b, s + run, n - run);
}

void mimo_sbuf_consume(mimo_sbuf *b, size_t n) {
  if (n >= b->len) {
    b->len = 0;
  } else {
    memmove(b->p, b->p + n, b->len - n);
    b->len -= n;
  }
  if (b->p)
    b->p[b->len] = 0;
}

void mimo_sbuf_free(mimo_sbuf *b) {
  free(b->p);
  memset(b, 0, sizeof *b);
}
