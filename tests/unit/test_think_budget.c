/* Thinking budgets (engine/think_budget.h) against stated properties: unrestricted (masks false, every id allowed)
 * until the budget is spent, then only the end id; nothing counted or restricted once the reasoning has ended;
 * the inner constraint sees exactly the tokens after its after_token, and decides the masks then; clones are
 * independent. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "engine/think_budget.h"

enum { V = 100, END = 7, OPEN = 9 };

/* An inner constraint that allows only even ids and records what it was fed. */
typedef struct {
  mimo_constraint base;
  int fed[64], n;
} even_c;
static void even_mask(mimo_constraint *c, uint32_t *allow, int vocab, const int *stops, int n_stops) {
  (void)c, (void)stops, (void)n_stops;
  for (int i = 0; i < vocab; i += 2)
    allow[i / 32] |= 1u << (i % 32);
}
static bool even_accept(mimo_constraint *c, int t) {
  even_c *x = (even_c *)c;
  if (t % 2 || x->n == 64)
    return false;
  x->fed[x->n++] = t;
  return true;
}
static bool even_done(mimo_constraint *c) { return ((even_c *)c)->n >= 3; }
static void even_free(mimo_constraint *c) { free(c); }
static mimo_constraint *even_clone(const mimo_constraint *c) {
  even_c *x = malloc(sizeof *x);
  if (x)
    *x = *(const even_c *)c;
  return x ? &x->base : NULL;
}
static even_c *new_even(int after) {
  even_c *x = calloc(1, sizeof *x);
  assert_non_null(x);
  x->base = (mimo_constraint){even_mask, even_accept, even_done, even_free, even_clone, after, NULL};
  return x;
}

static int allowed(mimo_constraint *c, int *only) {
  uint32_t allow[(V + 31) / 32] = {0};
  c->mask(c, allow, V, NULL, 0);
  int n = 0;
  for (int i = 0; i < V; i++)
    if (allow[i / 32] >> (i % 32) & 1) {
      n++;
      *only = i;
    }
  return n;
}

static void test_budget_alone(void **state) {
  (void)state;
  mimo_constraint *c = NULL;
  assert_int_equal(mimo_think_budget_constraint(END, 3, NULL, &c), MIMO_OK);
  int only = -1;
  for (int i = 0; i < 3; i++) {
    assert_false(c->masks(c));
    assert_int_equal(allowed(c, &only), V);
    assert_true(c->accept(c, 20 + i));
  }
  assert_true(c->masks(c)); /* spent: only the end */
  assert_int_equal(allowed(c, &only), 1);
  assert_int_equal(only, END);
  assert_false(c->accept(c, 20));
  mimo_constraint *k = c->clone(c);
  assert_non_null(k);
  assert_true(c->accept(c, END));
  assert_false(c->masks(c)); /* over: free again, and nothing is counted */
  for (int i = 0; i < 10; i++)
    assert_true(c->accept(c, 30 + i));
  assert_false(c->masks(c));
  assert_false(c->done(c));
  assert_true(k->masks(k)); /* the clone stayed where it was */
  assert_false(k->accept(k, 21));
  k->free(k);
  c->free(c);
  /* an early end: no forcing ever */
  assert_int_equal(mimo_think_budget_constraint(END, 2, NULL, &c), MIMO_OK);
  assert_true(c->accept(c, 1));
  assert_true(c->accept(c, END));
  for (int i = 0; i < 5; i++)
    assert_true(c->accept(c, 40 + i));
  assert_false(c->masks(c));
  c->free(c);
  /* budget 0: the end at once */
  assert_int_equal(mimo_think_budget_constraint(END, 0, NULL, &c), MIMO_OK);
  assert_true(c->masks(c));
  assert_int_equal(allowed(c, &only), 1);
  c->free(c);
  assert_int_equal(mimo_think_budget_constraint(-1, 4, NULL, &c), MIMO_E_INVALID);
  assert_null(c);
}

static void test_inner(void **state) {
  (void)state;
  /* a grammar after the reasoning (after_token = the end id) */
  even_c *in = new_even(END);
  mimo_constraint *c = NULL;
  assert_int_equal(mimo_think_budget_constraint(END, 2, &in->base, &c), MIMO_OK);
  assert_true(c->accept(c, 3)); /* odd ids in the reasoning: the inner grammar does not see them */
  assert_true(c->accept(c, 5));
  int only = -1;
  assert_int_equal(allowed(c, &only), 1);
  assert_true(c->accept(c, END));
  assert_true(c->masks(c)); /* the inner's masks from here */
  assert_int_equal(allowed(c, &only), V / 2);
  assert_false(c->accept(c, 11));
  assert_true(c->accept(c, 12));
  assert_true(c->accept(c, 14));
  assert_false(c->done(c));
  assert_true(c->accept(c, 16));
  assert_true(c->done(c));
  assert_int_equal(in->n, 3);
  assert_int_equal(in->fed[0], 12);
  c->free(c);
  /* a grammar from its own opening token (strict tool calls): waits for it after the reasoning */
  in = new_even(OPEN);
  assert_int_equal(mimo_think_budget_constraint(END, 5, &in->base, &c), MIMO_OK);
  assert_true(c->accept(c, OPEN)); /* inside the reasoning: not the opening */
  assert_true(c->accept(c, END));
  assert_false(c->masks(c));
  assert_true(c->accept(c, 3));
  assert_true(c->accept(c, OPEN));
  assert_true(c->masks(c));
  assert_false(c->accept(c, 3));
  assert_true(c->accept(c, 2));
  assert_int_equal(in->n, 1);
  c->free(c);
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_budget_alone), cmocka_unit_test(test_inner)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}
