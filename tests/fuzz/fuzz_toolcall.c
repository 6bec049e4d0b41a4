/* Model output of arbitrary bytes through the reasoning and tool-call parsers:
 * no crash, and feeding it in random pieces gives exactly what one piece gives
 * (per stream: reasoning, content, tool content, names, arguments, call ends);
 * every call's arguments parse as a JSON object. The first byte picks thinking
 * on/off, whether the typed tool schema is used, and the piece-size seed. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/num.h"
#include "text/reasoning.h"
#include "text/toolcall.h"

typedef struct {
  char *p;
  size_t n, cap;
} out;

typedef struct {
  out s[6]; /* reasoning, content, tool content, names, arguments, current call's arguments */
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
  outs *o = ctx;
  (void)i;
  if (strlen(id) != 29)
    abort();
  add(&o->s[3], name, strlen(name) + 1);
  o->s[5].n = 0;
}
static void on_args(void *ctx, int i, const char *s, size_t n) {
  (void)i;
  add(&((outs *)ctx)->s[4], s, n);
  add(&((outs *)ctx)->s[5], s, n);
}
static void on_end(void *ctx, int i) {
  outs *o = ctx;
  (void)i;
  o->ends++;
  json_t *v = json_loadb(o->s[5].p ? o->s[5].p : "", o->s[5].n, JSON_ALLOW_NUL, NULL);
  if (!json_is_object(v))
    abort(); /* the concatenated fragments must be one JSON object */
  json_decref(v);
}

static json_t *tools;

/* step 0: one piece; else random piece sizes 0..step-1 seeded by step. */
static void run(const uint8_t *d, size_t n, size_t step, outs *o) {
  mimo_reasoning rs;
  mimo_reasoning_init(&rs, d[0] & 1, on_text, o);
  mimo_toolcall_sink sink = {on_content, on_start, on_args, on_end, o};
  if (!tools)
    tools = json_loads("[{\"type\":\"function\",\"function\":{\"name\":\"f\",\"parameters\":{\"properties\":{"
                       "\"s\":{\"type\":\"string\"},\"i\":{\"type\":\"integer\"},\"x\":{\"type\":\"number\"},"
                       "\"b\":{\"type\":\"boolean\"},\"o\":{\"type\":\"object\"},\"a\":{\"type\":\"array\"}}}}}]",
                       0, NULL);
  mimo_toolcall *tc = mimo_toolcall_new(d[0] & 2 ? tools : NULL, 1, &sink);
  mimo_rng rng;
  mimo_rng_seed(&rng, step);
  for (size_t i = 1, k; i < n; i += k) {
    k = step ? mimo_rng_next(&rng) % step : n - i;
    k = n - i < k ? n - i : k;
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
  run(d, n, 0, &a);
  run(d, n, 2 + (d[0] >> 2) % 9, &b);
  if (a.ends != b.ends)
    abort();
  for (int k = 0; k < 6; k++) {
    if (a.s[k].n != b.s[k].n || (a.s[k].n && memcmp(a.s[k].p, b.s[k].p, a.s[k].n)))
      abort();
    free(a.s[k].p);
    free(b.s[k].p);
  }
  return 0;
}
