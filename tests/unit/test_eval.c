/* Evaluation math (quant/eval.h) against closed forms and stated properties: log-softmax normalises and ignores
 * a shift; KL of two Bernoulli distributions equals its closed form, is 0 for equal rows and positive otherwise;
 * perplexity is exp of the mean NLL with the delta-method error; quantiles by nearest rank; the base file's header
 * round-trips and names the field that differs. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "quant/eval.h"

static void test_log_softmax(void **state) {
  (void)state;
  const float x[5] = {1.5f, -2.0f, 0.25f, 3.0f, 3.0f};
  float y[5];
  double lp[5], lq[5], lse;
  for (int v = 0; v < 5; v++)
    y[v] = x[v] + 100.0f; /* exact in float: a shift */
  assert_int_equal(mimo_log_softmax(x, 5, lp, &lse), MIMO_OK);
  assert_int_equal(mimo_log_softmax(y, 5, lq, NULL), MIMO_OK);
  double z = 0, naive = 0;
  for (int v = 0; v < 5; v++) {
    z += exp(lp[v]);
    naive += exp((double)x[v]);
    assert_true(fabs(lp[v] - lq[v]) < 1e-12);
  }
  assert_true(fabs(z - 1) < 1e-14);
  assert_true(fabs(lse - log(naive)) < 1e-12);
  const float bad[3] = {0, NAN, 1};
  assert_int_equal(mimo_log_softmax(bad, 3, lp, NULL), MIMO_E_INVALID);
  const float inf[2] = {INFINITY, 1};
  assert_int_equal(mimo_log_softmax(inf, 2, lp, NULL), MIMO_E_INVALID);
}

static void test_kl(void **state) {
  (void)state;
  /* Bernoulli(p) || Bernoulli(q): p ln(p/q) + (1-p) ln((1-p)/(1-q)) */
  const double p = 0.3, q = 0.75;
  const double lp[2] = {log(p), log(1 - p)}, lq[2] = {log(q), log(1 - q)};
  const double closed = p * log(p / q) + (1 - p) * log((1 - p) / (1 - q));
  assert_true(fabs(mimo_kl_div(lp, lq, 2) - closed) < 1e-15);
  assert_true(mimo_kl_div(lq, lp, 2) > 0); /* not symmetric, still positive */
  assert_true(fabs(mimo_kl_div(lq, lp, 2) - closed) > 1e-3);
  assert_true(mimo_kl_div(lp, lp, 2) == 0);
  /* P(v) = 0 adds nothing whatever Q says */
  const double l0[3] = {0, -INFINITY, -INFINITY}, l1[3] = {log(0.5), log(0.25), log(0.25)};
  assert_true(fabs(mimo_kl_div(l0, l1, 3) - log(2)) < 1e-15);
}

static void test_ppl_stats(void **state) {
  (void)state;
  mimo_eval e;
  mimo_eval_init(&e);
  /* three positions whose next token has probability 1/2, 1/4, 1/8: NLL ln 2, 2 ln 2, 3 ln 2 */
  const double lp[3][2] = {{log(0.5), log(0.5)}, {log(0.25), log(0.75)}, {log(0.875), log(0.125)}};
  const int next[3] = {0, 0, 1};
  for (int i = 0; i < 3; i++)
    assert_int_equal(mimo_eval_add(&e, lp[i], 2, next[i], NULL), MIMO_OK);
  const mimo_estimate p = mimo_eval_ppl(&e);
  assert_true(fabs(p.mean - 4.0) < 1e-12); /* exp(mean(1, 2, 3) ln 2) = 2^2 */
  /* standard error of the mean NLL: sd(ln2 * {1,2,3}) / sqrt(3) = ln 2 / sqrt(3); delta method times PPL */
  assert_true(fabs(p.err - 4.0 * log(2) / sqrt(3)) < 1e-12);
  assert_int_equal(mimo_eval_add(&e, lp[0], 2, 2, NULL), MIMO_E_INVALID); /* id outside the vocabulary */
  assert_int_equal(e.n, 3);
  mimo_eval_free(&e);
}

static void test_against_base(void **state) {
  (void)state;
  mimo_eval e;
  mimo_eval_init(&e);
  const double a[2] = {log(0.9), log(0.1)}, b[2] = {log(0.6), log(0.4)}, c[2] = {log(0.3), log(0.7)};
  assert_int_equal(mimo_eval_add(&e, a, 2, 0, a), MIMO_OK); /* same row */
  assert_int_equal(mimo_eval_add(&e, b, 2, 0, a), MIMO_OK); /* same top, KL > 0 */
  assert_int_equal(mimo_eval_add(&e, c, 2, 0, a), MIMO_OK); /* other top */
  assert_true(fabs(mimo_eval_same_top(&e).mean - 2.0 / 3.0) < 1e-15);
  const double kb = mimo_kl_div(a, b, 2), kc = mimo_kl_div(a, c, 2);
  assert_true(kc > kb && kb > 0);
  assert_true(fabs(mimo_eval_kl(&e).mean - (kb + kc) / 3) < 1e-15);
  assert_true(e.kl_max == kc);
  assert_true(mimo_eval_kl_quantile(&e, 0.5) == (float)kb); /* nearest rank: 2nd of 3 */
  assert_true(mimo_eval_kl_quantile(&e, 1.0) == (float)kc);
  assert_true(mimo_eval_kl_quantile(&e, 0.0) == 0.0f);
  /* ln(PPL / PPL(base)) = mean(NLL - base NLL) */
  const double d = ((-a[0] + a[0]) + (-b[0] + a[0]) + (-c[0] + a[0])) / 3;
  assert_true(fabs(mimo_eval_ln_ppl_ratio(&e).mean - d) < 1e-15);
  assert_true(fabs(log(mimo_eval_ppl(&e).mean / mimo_eval_base_ppl(&e).mean) - d) < 1e-12);
  mimo_eval_free(&e);
}

static void test_header(void **state) {
  (void)state;
  const int ids[4] = {5, 6, 7, 8}, other[4] = {5, 6, 7, 9};
  mimo_kl_header h = {.vocab = 100, .ctx = 4, .score_from = 2, .chunks = 1, .n_tokens = 4};
  {
    FILE *g = tmpfile(); /* a header's top travels in the file, and cannot exceed the vocabulary */
    assert_non_null(g);
    mimo_kl_header t = h;
    t.top = 7;
    assert_int_equal(mimo_kl_write_header(g, "g", &t), MIMO_OK);
    assert_int_equal(ftell(g), MIMO_KL_HEADER_BYTES);
    rewind(g);
    uint32_t k = 0;
    assert_int_equal(mimo_kl_read_header(g, "g", &h, &k), MIMO_OK);
    assert_int_equal(k, 7);
    t.top = 101;
    rewind(g);
    assert_int_equal(mimo_kl_write_header(g, "g", &t), MIMO_OK);
    rewind(g);
    assert_int_equal(mimo_kl_read_header(g, "g", &h, &k), MIMO_E_FORMAT);
    fclose(g);
  }
  h.tokens_hash = mimo_tokens_hash(ids, 4);
  assert_true(h.tokens_hash != mimo_tokens_hash(other, 4));
  FILE *f = tmpfile();
  assert_non_null(f);
  assert_int_equal(mimo_kl_write_header(f, "t", &h), MIMO_OK);
  rewind(f);
  uint32_t top = 99;
  assert_int_equal(mimo_kl_read_header(f, "t", &h, &top), MIMO_OK);
  assert_int_equal(top, 0);
  mimo_kl_header w = h;
  w.score_from = 1;
  rewind(f);
  assert_int_equal(mimo_kl_read_header(f, "t", &w, &top), MIMO_E_INVALID);
  assert_non_null(strstr(mimo_errmsg(), "score_from 2, this run 1"));
  w = h;
  w.tokens_hash = mimo_tokens_hash(other, 4);
  rewind(f);
  assert_int_equal(mimo_kl_read_header(f, "t", &w, &top), MIMO_E_INVALID);
  assert_non_null(strstr(mimo_errmsg(), "other tokens"));
  fclose(f);
  f = tmpfile();
  assert_non_null(f);
  fwrite("MIMOKLB1\1\0", 1, 10, f); /* the magic, then a header cut short */
  rewind(f);
  assert_int_equal(mimo_kl_read_header(f, "t", &h, &top), MIMO_E_FORMAT);
  assert_non_null(strstr(mimo_errmsg(), "cut short"));
  fclose(f);
}

/* The k best entries against a full sort; KL over them plus a rest bucket: the full KL when they cover the
 * vocabulary, below it (and >= 0) otherwise, growing with k. */
static int cmp_desc(const void *a, const void *b) {
  const double *x = a, *y = b; /* value desc, then id asc */
  const int by_value = (x[0] < y[0]) - (x[0] > y[0]);
  return by_value ? by_value : (x[1] > y[1]) - (x[1] < y[1]);
}
static void test_top(void **state) {
  (void)state;
  enum { V = 300 };
  float xp[V], xq[V];
  double lp[V], lq[V], pairs[V][2], tlp[V];
  int tid[V];
  uint64_t s = 12345;
  for (int v = 0; v < V; v++) {
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    xp[v] = (float)((s >> 40) % 97) / 8.0f; /* a grid: many ties */
    xq[v] = xp[v] + (float)((s >> 20) % 13) / 64.0f;
  }
  assert_int_equal(mimo_log_softmax(xp, V, lp, NULL), MIMO_OK);
  assert_int_equal(mimo_log_softmax(xq, V, lq, NULL), MIMO_OK);
  for (int v = 0; v < V; v++)
    pairs[v][0] = lp[v], pairs[v][1] = v;
  qsort(pairs, V, sizeof pairs[0], cmp_desc);
  const double full = mimo_kl_div(lp, lq, V);
  double last = 0;
  const int ks[5] = {1, 10, 64, 299, 300};
  for (int i = 0; i < 5; i++) {
    const int k = ks[i];
    mimo_top_entries(lp, V, k, tid, tlp);
    for (int j = 0; j < k; j++) {
      assert_int_equal(tid[j], (int)pairs[j][1]);
      assert_true(tlp[j] == pairs[j][0]);
    }
    const mimo_base_top b = {.k = k, .id = tid, .lp = tlp, .lp_next = lp[5]};
    const double kt = mimo_kl_div_top(&b, lq);
    assert_true(kt >= 0 && kt <= full * (1 + 1e-12));
    assert_true(kt >= last * (1 - 1e-12));
    last = kt;
    if (k >= V - 1) /* one token left: its bucket is that token (1 - Σ p cancels: 1e-9, not 1e-15) */
      assert_true(fabs(kt - full) < 1e-9 * full);
    mimo_eval e;
    mimo_eval_init(&e);
    assert_int_equal(mimo_eval_add_top(&e, lq, V, 5, &b), MIMO_OK);
    assert_true(fabs(mimo_eval_base_ppl(&e).mean - exp(-lp[5])) < 1e-12 * exp(-lp[5]));
    mimo_eval_free(&e);
  }
  assert_true(full > 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_log_softmax), cmocka_unit_test(test_kl),
                                     cmocka_unit_test(test_ppl_stats), cmocka_unit_test(test_against_base),
                                     cmocka_unit_test(test_header), cmocka_unit_test(test_top)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}
