/* Thinking budgets (think_budget.h). */
#include "engine/think_budget.h"

#include <stdlib.h>
#include <string.h>

typedef struct {
  mimo_constraint base;
  mimo_constraint *inner; /* NULL: none */
  int end_id, budget, spent;
  bool ended;        /* the reasoning is over (its end id came) */
  bool inner_active; /* inner's after_token came after the reasoning (or it had none) */
} budget_constraint;

static bool tb_forcing(const budget_constraint *x) { return !x->ended && x->spent >= x->budget; }

static bool tb_masks(const mimo_constraint *c) {
  const budget_constraint *x = (const budget_constraint *)c;
  return tb_forcing(x) || (x->inner_active && (!x->inner->masks || x->inner->masks(x->inner)));
}

static void tb_mask(mimo_constraint *c, uint32_t *allow, int V, const int *stops, int n_stops) {
  budget_constraint *x = (budget_constraint *)c;
  if (tb_forcing(x)) {
    if (x->end_id >= 0 && x->end_id < V)
      allow[x->end_id / 32] |= 1u << (x->end_id % 32);
    return;
  }
  if (x->inner_active) {
    x->inner->mask(x->inner, allow, V, stops, n_stops);
    return;
  }
  memset(allow, 0xff, ((size_t)V + 31) / 32 * sizeof *allow); /* nothing restricted */
}

static bool tb_accept(mimo_constraint *c, int token) {
  budget_constraint *x = (budget_constraint *)c;
  if (!x->ended) { /* in the reasoning: counted, and the inner constraint waits for its end */
    if (token == x->end_id) {
      x->ended = true;
      x->inner_active = x->inner && (x->inner->after_token < 0 || x->inner->after_token == token);
      return true;
    }
    if (tb_forcing(x))
      return false;
    x->spent++;
    return true;
  }
  if (!x->inner)
    return true;
  if (!x->inner_active) {
    x->inner_active = token == x->inner->after_token;
    return true;
  }
  return x->inner->accept(x->inner, token);
}

static bool tb_done(mimo_constraint *c) {
  budget_constraint *x = (budget_constraint *)c;
  return x->inner_active && x->inner->done(x->inner);
}

static void tb_free(mimo_constraint *c) {
  budget_constraint *x = (budget_constraint *)c;
  if (x && x->inner)
    x->inner->free(x->inner);
  free(x);
}

static mimo_constraint *tb_clone(const mimo_constraint *c) {
  const budget_constraint *from = (const budget_constraint *)c;
  budget_constraint *x = malloc(sizeof *x);
  if (!x)
    return NULL;
  *x = *from;
  x->inner = NULL;
  if (from->inner && (!from->inner->clone || !(x->inner = from->inner->clone(from->inner)))) {
    free(x);
    return NULL;
  }
  return &x->base;
}

mimo_status mimo_think_budget_constraint(int end_id, int budget, mimo_constraint *inner, mimo_constraint **out) {
  *out = NULL;
  budget_constraint *x = end_id >= 0 && budget >= 0 ? calloc(1, sizeof *x) : NULL;
  if (!x) {
    if (inner)
      inner->free(inner);
    return end_id < 0 || budget < 0 ? mimo_errf(MIMO_E_INVALID, "a thinking budget needs the reasoning's end token")
                                    : mimo_errf(MIMO_E_NOMEM, "thinking budget");
  }
  x->base = (mimo_constraint){tb_mask, tb_accept, tb_done, tb_free, tb_clone, -1, tb_masks};
  x->inner = inner;
  x->end_id = end_id;
  x->budget = budget;
  *out = &x->base;
  return MIMO_OK;
}
