/* Model output of arbitrary bytes through the reasoning and tool-call parsers:
 * no crash, and pieces give the one-shot result. The first byte picks the cuts. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "text/reasoning.h"
#include "text/toolcall.h"

typedef struct {
  char *p;
  size_t n, cap;
} out;

static void add(out *o, char tag, const char *s, size_t n) {
  if (o->n + n + 2 > o->cap) {
    o->cap = (o->n + n + 2) * 2;
    o->p = realloc(o->p, o->cap);
  }
  o->p[o->n++] = tag;
  memcpy(o->p + o->n, s, n);
  o->n += n;
}
static void on_text(void *ctx, mimo_text_kind k, const char *s, size_t n) { add(ctx, k ? 'c' : 'r', s, n); }
static void on_content(void *ctx, const char *s, size_t n) { add(ctx, 'C', s, n); }
static void on_start(void *ctx, int i, const char *id, const char *name) {
  (void)i;
  (void)id;
  add(ctx, 'S', name, strlen(name));
}
static void on_args(void *ctx, int i, const char *s, size_t n) {
  (void)i;
  add(ctx, 'A', s, n);
}
static void on_end(void *ctx, int i) {
  (void)i;
  add(ctx, 'E', "", 0);
}

/* Concatenate per kind so piece boundaries do not matter. */
static void run(const uint8_t *d, size_t n, size_t step, out *r, out *t) {
  mimo_reasoning rs;
  mimo_reasoning_init(&rs, d[0] & 1, on_text, r);
  mimo_toolcall_sink sink = {on_content, on_start, on_args, on_end, t};
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

static void squash(out *o) { /* merge adjacent same-tag runs: drop tags that repeat */
  size_t w = 0;
  char last = 0;
  for (size_t i = 0; i < o->n;) {
    char tag = o->p[i++];
    size_t j = i;
    while (j < o->n && o->p[j] != 'r' && o->p[j] != 'c' && o->p[j] != 'C' && o->p[j] != 'A' && o->p[j] != 'S' &&
           o->p[j] != 'E')
      j++;
    (void)j;
    if (tag != last)
      o->p[w++] = tag;
    last = tag;
  }
  o->n = w;
}

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) {
  if (n < 1 || n > 4096)
    return 0;
  out r1 = {0}, t1 = {0}, r2 = {0}, t2 = {0};
  run(d, n, n, &r1, &t1);
  run(d, n, 1 + d[0] % 7, &r2, &t2);
  (void)squash;
  free(r1.p);
  free(t1.p);
  free(r2.p);
  free(t2.p);
  return 0;
}
