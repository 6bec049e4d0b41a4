#include "server/sse.h"

#include <stdlib.h>
#include <string.h>

void mimo_sse_event(mimo_sbuf *b, const char *name, const char *data, size_t n) {
  if (name) {
    mimo_sbuf_puts(b, "event: ");
    mimo_sbuf_puts(b, name);
    mimo_sbuf_puts(b, "\n");
  }
  mimo_sbuf_puts(b, "data: ");
  mimo_sbuf_put(b, data, n);
  mimo_sbuf_puts(b, "\n\n");
}

void mimo_sse_json(mimo_sbuf *b, const char *name, const json_t *j) {
  char *s = json_dumps(j, JSON_COMPACT);
  if (!s) {
    b->oom = 1;
    return;
  }
  mimo_sse_event(b, name, s, strlen(s));
  free(s);
}

void mimo_sse_done(mimo_sbuf *b) { mimo_sbuf_puts(b, "data: [DONE]\n\n"); }
