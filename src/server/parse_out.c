/* reasoning split -> (content) -> tool-call parser -> the choice's delta. */
#include "server/parse_out.h"

#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "server/gen.h"
#include "text/reasoning.h"
#include "text/toolcall.h"

typedef struct po_state {
  mimo_parse_out *p;
  mimo_gen_delta *d; /* the delta being filled (set on every feed) */
  mimo_reasoning rs;
  mimo_toolcall *tc;
} po_state;

static mimo_gen_tool *tool_slot(mimo_gen_delta *d, int index) {
  if (d->n_tools && d->tools[d->n_tools - 1].index == index)
    return &d->tools[d->n_tools - 1];
  if (d->n_tools == d->cap_tools) {
    int cap = d->cap_tools ? d->cap_tools * 2 : 4;
    mimo_gen_tool *t = realloc(d->tools, (size_t)cap * sizeof *t);
    if (!t)
      return NULL;
    d->tools = t;
    d->cap_tools = cap;
  }
  mimo_gen_tool *t = &d->tools[d->n_tools++];
  memset(t, 0, sizeof *t);
  t->index = index;
  return t;
}

static void tc_content(void *ctx, const char *s, size_t n) {
  po_state *st = ctx;
  if (!st->p->calls_done)
    mimo_sbuf_put(&st->d->content, s, n);
}
static void tc_start(void *ctx, int index, const char *id, const char *name) {
  po_state *st = ctx;
  mimo_gen_delta *d = st->d;
  if (st->p->calls_done)
    return;
  /* a new call always opens a new entry (its first delta carries id + name) */
  if (d->n_tools && d->tools[d->n_tools - 1].index == index)
    return;
  mimo_gen_tool *t = tool_slot(d, index);
  if (t) {
    t->id = strdup(id);
    t->name = strdup(name);
  }
  st->p->n_calls++;
}
static void tc_args(void *ctx, int index, const char *s, size_t n) {
  if (((po_state *)ctx)->p->calls_done)
    return;
  mimo_gen_tool *t = tool_slot(((po_state *)ctx)->d, index);
  if (t)
    mimo_sbuf_put(&t->args, s, n);
}
static void tc_end(void *ctx, int index) {
  po_state *st = ctx;
  if (st->p->max_calls && index + 1 >= st->p->max_calls)
    st->p->calls_done = true;
}

static void on_text(void *ctx, mimo_text_kind kind, const char *s, size_t n) {
  po_state *st = ctx;
  if (kind == MIMO_TEXT_REASONING) {
    mimo_sbuf_put(&st->d->reasoning, s, n);
    return;
  }
  if (st->tc) {
    mimo_toolcall_feed(st->tc, s, n);
    return;
  }
  mimo_sbuf_put(&st->d->content, s, n);
}

void mimo_parse_out_init(mimo_parse_out *p, bool parse_reasoning, bool thinking, const json_t *tools, int max_calls) {
  memset(p, 0, sizeof *p);
  p->reasoning = parse_reasoning;
  p->tools = tools != NULL;
  p->max_calls = max_calls;
  po_state *st = calloc(1, sizeof *st);
  if (!st)
    return; /* degrades to plain content */
  st->p = p;
  mimo_reasoning_init(&st->rs, parse_reasoning && thinking, on_text, st);
  if (tools) {
    uint64_t seed = 0;
    if (getrandom(&seed, sizeof seed, GRND_NONBLOCK) != (ssize_t)sizeof seed)
      seed = (uint64_t)(uintptr_t)st;
    mimo_toolcall_sink sink = {tc_content, tc_start, tc_args, tc_end, st};
    st->tc = mimo_toolcall_new(tools, seed, &sink);
  }
  p->rs = st;
}

void mimo_parse_out_feed(mimo_parse_out *p, const char *text, size_t n, mimo_gen_delta *d) {
  po_state *st = p->rs;
  if (!st || !p->reasoning) {
    mimo_sbuf_put(&d->content, text, n);
    return;
  }
  st->d = d;
  mimo_reasoning_feed(&st->rs, text, n);
}

void mimo_parse_out_finish(mimo_parse_out *p, mimo_gen_delta *d) {
  po_state *st = p->rs;
  if (!st || !p->reasoning)
    return;
  st->d = d;
  mimo_reasoning_finish(&st->rs);
  if (st->tc)
    mimo_toolcall_finish(st->tc);
}

void mimo_parse_out_free(mimo_parse_out *p) {
  po_state *st = p->rs;
  if (!st)
    return;
  mimo_toolcall_free(st->tc);
  free(st);
  p->rs = NULL;
}
