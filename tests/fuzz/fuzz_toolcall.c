/* Model output of arbitrary bytes through the reasoning and tool-call parsers:
 * no crash, and feeding it in small pieces gives exactly what one piece gives
 * (per stream: reasoning, content, tool content, names, arguments, call ends).
 * The first byte picks thinking on/off and the piece size. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "text/reasoning.h"
#include "text/toolcall.h"

typedef struct {
  char *p;
  size_t n, cap;
} out;

typedef struct {
  out s[5]; /* reasoning, content, tool content, names, arguments */
  int ends;
} outs;

static void add(out *o, const char *s, size_t n) {
  if (o->n + n + 1 > o->cap) {
    o->cap = (o->n + n + 1) * 2;
    o->p = realloc(o->p, o->cap);
  }
  memcpy(o->p + o->n, s, n);
  o->n += n;
}
static void on_text(void *ctx, mimo_text_kind k, const char *s, size_t n) { add(&((outs *)ctx)->s[k ? 1 : 0], s, n); }
static void on_content(void *ctx, const char *s, size_t n) { add(&((outs *)ctx)->s[2], s, n); }
static void on_start(void *ctx, int i, const char *id, const char *name) {
  (void)i;
  (void)id;
  add(&((outs *)ctx)->s[3], name, strlen(name) + 1);
}
static void on_args(void *ctx, int i, const char *s, size_t n) {
  (void)i;
  add(&((outs *)ctx)->s[4], s, n);
}
static void on_end(void *ctx, int i) {
  (void)i;
  ((outs *)ctx)->ends++;
}

static void run(const uint8_t *d, size_t n, size_t step, outs *o) {
  mimo_reasoning rs;
  mimo_reasoning_init(&rs, d[0] & 1, on_text, o);
  mimo_toolcall_sink sink = {on_content, on_start, on_args, on_end, o};
  mimo_toolcall *tc = mimo_toolcall_new(NULL, 1, &sink);
  for (size_t i = 1; i < n; i += step) {
    size_t k = n - i < step ? n - i : step;
    mimo_reasoning_feed(&rs, (const char *)d + i, k);
    mimo_toolcall_feed(tc, (const char *)d + i, k);
  }
  mimo_reasoning_finish(&rs);
  mimo_toolcall_finish(tc);
  mimo_toolcall_free(tc);
}

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) {
  if (n < 1 || n > 4096)
    return 0;
  outs a = {0}, b = {0};
  run(d, n, n, &a);
  run(d, n, 1 + (d[0] >> 1) % 7, &b);
  if (a.ends != b.ends)
    abort();
  for (int k = 0; k < 5; k++) {
    if (a.s[k].n != b.s[k].n || (a.s[k].n && memcmp(a.s[k].p, b.s[k].p, a.s[k].n)))
      abort();
    free(a.s[k].p);
    free(b.s[k].p);
  }
  return 0;
}
