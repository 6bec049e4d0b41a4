/* A growable byte buffer for response bodies and SSE frames. Allocation failure
 * latches `oom` (later appends are dropped) so callers check once at the end. */
#ifndef MIMO_SERVER_SBUF_H
#define MIMO_SERVER_SBUF_H
#include <stddef.h>

typedef struct mimo_sbuf {
  char *p;
  size_t len, cap;
  int oom;
} mimo_sbuf;

void mimo_sbuf_put(mimo_sbuf *b, const void *data, size_t n);
void mimo_sbuf_puts(mimo_sbuf *b, const char *s);
void mimo_sbuf_printf(mimo_sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Appends s (n bytes) as the inside of a JSON string literal (no quotes). */
void mimo_sbuf_json_str(mimo_sbuf *b, const char *s, size_t n);
/* Drops the first n bytes. */
void mimo_sbuf_consume(mimo_sbuf *b, size_t n);
void mimo_sbuf_free(mimo_sbuf *b);
#endif
