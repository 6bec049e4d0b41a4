/* Reasoning split (text/reasoning.h): expected (reasoning, content) for each
 * case, and the property that any split of the text into pieces — every 2-piece
 * split, 1-byte pieces, seeded random multi-piece splits — gives exactly the
 * one-piece (non-streaming) result. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "core/num.h"
#include "text/reasoning.h"

typedef struct sb {
  char *p;
  size_t n;
} sb;
typedef struct out {
  sb r, c;
  int order_bad; /* reasoning after content */
} out;

static void sb_put(sb *b, const char *s, size_t n) {
  b->p = realloc(b->p, b->n + n + 1);
  assert_non_null(b->p);
  memcpy(b->p + b->n, s, n);
  b->n += n;
  b->p[b->n] = 0;
}

static void on_text(void *ctx, mimo_text_kind k, const char *s, size_t n) {
  out *o = ctx;
  assert_true(n > 0);
  if (k == MIMO_TEXT_REASONING && o->c.n)
    o->order_bad = 1;
  sb_put(k == MIMO_TEXT_REASONING ? &o->r : &o->c, s, n);
}

/* Feeds text cut at cuts[0..nc) (increasing). */
static out run(const char *text, int thinking, const size_t *cuts, int nc) {
  out o = {0};
  sb_put(&o.r, "", 0);
  sb_put(&o.c, "", 0);
  mimo_reasoning r;
  mimo_reasoning_init(&r, thinking, on_text, &o);
  size_t at = 0, n = strlen(text);
  for (int i = 0; i <= nc; i++) {
    size_t e = i < nc ? cuts[i] : n;
    mimo_reasoning_feed(&r, text + at, e - at);
    at = e;
  }
  mimo_reasoning_finish(&r);
  assert_false(o.order_bad);
  return o;
}

static void same(const out *a, const out *b) {
  assert_string_equal(a->r.p, b->r.p);
  assert_string_equal(a->c.p, b->c.p);
}
static void drop(out *o) {
  free(o->r.p);
  free(o->c.p);
}

static int n_checked;

static void check(const char *text, int thinking, const char *want_r, const char *want_c) {
  out one = run(text, thinking, NULL, 0);
  assert_string_equal(one.r.p, want_r);
  assert_string_equal(one.c.p, want_c);
  size_t n = strlen(text);
  for (size_t k = 0; k <= n; k++) { /* every 2-piece split */
    out two = run(text, thinking, &k, 1);
    same(&one, &two);
    drop(&two);
  }
  size_t *cuts = malloc((n + 1) * sizeof *cuts);
  for (size_t k = 0; k < n; k++)
    cuts[k] = k + 1;
  out bytes = run(text, thinking, cuts, n ? (int)n - 1 : 0); /* 1-byte pieces */
  same(&one, &bytes);
  drop(&bytes);
  mimo_rng rng;
  mimo_rng_seed(&rng, 1234 + n);
  for (int t = 0; t < 40; t++) { /* random multi-piece splits, empty pieces included */
    int nc = 0;
    size_t at = 0;
    while (at < n && nc < (int)n) {
      at += mimo_rng_next(&rng) % 6;
      if (at > n)
        at = n;
      cuts[nc++] = at;
    }
    out m = run(text, thinking, cuts, nc);
    same(&one, &m);
    drop(&m);
  }
  free(cuts);
  drop(&one);
  n_checked++;
}

static void test_thinking_on(void **state) {
  (void)state;
  check("<think>\nplan it</think>\n\nThe answer.", 1, "\nplan it", "\n\nThe answer.");
  check("<think>no end tag, cut off by max_tokens", 1, "no end tag, cut off by max_tokens", "");
  check("no start tag</think>answer", 1, "no start tag", "answer");
  check("<think></think>", 1, "", "");
  check("", 1, "", "");
  check("<", 1, "<", "");
  check("<think", 1, "<think", "");
  check("<think>a </thin", 1, "a </thin", "");
  check("<think>a < b << c </ </th</think>", 1, "a < b << c </ </th", "");
  /* only the FIRST </think> ends reasoning; later ones are content */
  check("<think>r</think>c </think> d", 1, "r", "c </think> d");
  /* a <think> that is not the first generated text is ordinary text */
  check("<think>mid <think> text</think>ok", 1, "mid <think> text", "ok");
  check("pre <think>x</think>y", 1, "pre <think>x", "y");
  check("\n<think>x</think>y", 1, "\n<think>x", "y");
  check("<thinking>not the tag</think>c", 1, "<thinking>not the tag", "c");
  /* multi-byte UTF-8 passes through untouched */
  check("<think>思考 ☀</think>答案 é", 1, "思考 ☀", "答案 é");
}

static void test_implicit_end(void **state) {
  (void)state;
  /* <tool_call> + optional whitespace (≤ 8) + <function= ends reasoning; the call is content */
  check("<think>plan<tool_call>\n<function=f>\n</function>\n</tool_call>", 1, "plan",
        "<tool_call>\n<function=f>\n</function>\n</tool_call>");
  check("<tool_call><function=f>", 1, "", "<tool_call><function=f>");
  check("<think>x<tool_call>  \n\t<function=g>", 1, "x", "<tool_call>  \n\t<function=g>");
  /* not followed by <function=: stays reasoning */
  check("<think><tool_call> is a tag I mention</think>c", 1, "<tool_call> is a tag I mention", "c");
  check("<think>a<tool_call>\n<func", 1, "a<tool_call>\n<func", "");
  check("<think>a<tool_call>         <function=f>", 1, "a<tool_call>         <function=f>", "");
  /* after </think> a call is plain content for the tool parser */
  check("<think>r</think><tool_call>\n<function=f>", 1, "r", "<tool_call>\n<function=f>");
}

static void test_thinking_off(void **state) {
  (void)state;
  check("Hello!", 0, "", "Hello!");
  check("<think>x</think>y", 0, "", "<think>x</think>y");
  check("a</think>b", 0, "", "a</think>b");
  check("", 0, "", "");
}

/* The prompt is never scanned: a state made from the generated text alone must
 * not depend on whatever came before (regression for the stock-parser pitfall). */
static void test_no_prompt_state(void **state) {
  (void)state;
  check("Let me think.</think>Answer", 1, "Let me think.", "Answer");
  out a = run("<think>r</think>c", 1, NULL, 0), b = run("<think>r</think>c", 1, NULL, 0);
  same(&a, &b);
  drop(&a);
  drop(&b);
  assert_true(n_checked > 20);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_thinking_on),
      cmocka_unit_test(test_implicit_end),
      cmocka_unit_test(test_thinking_off),
      cmocka_unit_test(test_no_prompt_state),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
