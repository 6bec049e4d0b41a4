#include "text/reasoning.h"

#include <string.h>

static const char OPEN[] = "<think>", CLOSE[] = "</think>", CALL[] = "<tool_call>", FUNC[] = "<function=";

enum { START, REASONING, CONTENT };

void mimo_reasoning_init(mimo_reasoning *r, bool thinking, mimo_text_emit emit, void *ctx) {
  memset(r, 0, sizeof *r);
  r->state = thinking ? START : CONTENT;
  r->emit = emit;
  r->ctx = ctx;
}

static int is_space(char c) { return c == ' ' || c == '\n' || c == '\r' || c == '\t'; }

/* At s[0..n): 1 = a complete implicit end (`<tool_call>` ws* `<function=`), 0 = cannot be one,
 * -1 = could still become one with more text. */
static int implicit_end(const char *s, size_t n, size_t *len) {
  size_t lc = sizeof CALL - 1, lf = sizeof FUNC - 1;
  if (n < lc)
    return memcmp(s, CALL, n) == 0 ? -1 : 0;
  if (memcmp(s, CALL, lc) != 0)
    return 0;
  size_t i = lc;
  while (i < n && is_space(s[i]))
    i++;
  if (i - lc > 8) /* a long run of whitespace: not the call syntax */
    return 0;
  size_t m = n - i < lf ? n - i : lf;
  if (memcmp(s + i, FUNC, m) != 0)
    return 0;
  if (m < lf)
    return -1;
  *len = i;
  return 1;
}

static void process(mimo_reasoning *r, const char *s, size_t n, int final) {
  size_t i = 0;
  if (r->state == START) {
    size_t lo = sizeof OPEN - 1, m = n < lo ? n : lo;
    if (memcmp(s, OPEN, m) == 0 && m < lo && !final) {
      memcpy(r->hold, s, n); /* might still be `<think>` */
      r->n_hold = n;
      return;
    }
    r->state = REASONING;
    if (n >= lo && memcmp(s, OPEN, lo) == 0)
      i = lo;
  }
  if (r->state == CONTENT) {
    if (n > i)
      r->emit(r->ctx, MIMO_TEXT_CONTENT, s + i, n - i);
    return;
  }
  /* reasoning: look for `</think>` or the implicit end */
  size_t start = i;
  for (; i < n; i++) {
    if (s[i] != '<')
      continue;
    size_t rest = n - i, lc = sizeof CLOSE - 1, len = 0;
    if (rest >= lc && memcmp(s + i, CLOSE, lc) == 0) {
      if (i > start)
        r->emit(r->ctx, MIMO_TEXT_REASONING, s + start, i - start);
      r->state = CONTENT;
      if (n > i + lc)
        r->emit(r->ctx, MIMO_TEXT_CONTENT, s + i + lc, n - i - lc);
      return;
    }
    int ie = implicit_end(s + i, rest, &len);
    if (ie == 1) {
      if (i > start)
        r->emit(r->ctx, MIMO_TEXT_REASONING, s + start, i - start);
      r->state = CONTENT;
      r->emit(r->ctx, MIMO_TEXT_CONTENT, s + i, n - i);
      return;
    }
    int could_close = rest < lc && memcmp(s + i, CLOSE, rest) == 0;
    if ((could_close || ie == -1) && !final && rest < sizeof r->hold) {
      if (i > start)
        r->emit(r->ctx, MIMO_TEXT_REASONING, s + start, i - start);
      memcpy(r->hold, s + i, rest);
      r->n_hold = rest;
      return;
    }
  }
  if (n > start)
    r->emit(r->ctx, MIMO_TEXT_REASONING, s + start, n - start);
}

void mimo_reasoning_feed(mimo_reasoning *r, const char *s, size_t n) {
  if (!n)
    return;
  if (!r->n_hold) {
    process(r, s, n, 0);
    return;
  }
  /* join the held bytes with the new piece; pieces are small, a bounded buffer will do */
  char buf[512];
  while (n) {
    size_t take = sizeof buf - r->n_hold < n ? sizeof buf - r->n_hold : n;
    memcpy(buf, r->hold, r->n_hold);
    memcpy(buf + r->n_hold, s, take);
    size_t total = r->n_hold + take;
    r->n_hold = 0;
    s += take;
    n -= take;
    if (!n) {
      process(r, buf, total, 0);
      return;
    }
    /* more to come: process all but what we could still need to hold */
    process(r, buf, total, 0);
    if (!r->n_hold) {
      process(r, s, n, 0);
      return;
    }
  }
}

void mimo_reasoning_finish(mimo_reasoning *r) {
  if (!r->n_hold)
    return;
  char buf[64];
  size_t n = r->n_hold;
  memcpy(buf, r->hold, n);
  r->n_hold = 0;
  process(r, buf, n, 1);
}
