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
  h.tokens_hash = mimo_tokens_hash(ids, 4);
  assert_true(h.tokens_hash != mimo_tokens_hash(other, 4));
  FILE *f = tmpfile();
  assert_non_null(f);
  assert_int_equal(mimo_kl_write_header(f, "t", &h), MIMO_OK);
  rewind(f);
  assert_int_equal(mimo_kl_read_header(f, "t", &h), MIMO_OK);
  mimo_kl_header w = h;
  w.score_from = 1;
  rewind(f);
  assert_int_equal(mimo_kl_read_header(f, "t", &w), MIMO_E_INVALID);
  assert_non_null(strstr(mimo_errmsg(), "score_from 2, this run 1"));
  w = h;
  w.tokens_hash = mimo_tokens_hash(other, 4);
  rewind(f);
  assert_int_equal(mimo_kl_read_header(f, "t", &w), MIMO_E_INVALID);
  assert_non_null(strstr(mimo_errmsg(), "other tokens"));
  fclose(f);
  f = tmpfile();
  assert_non_null(f);
  fwrite("MIMOKLB1\1\0", 1, 10, f); /* the magic, then a header cut short */
  rewind(f);
  assert_int_equal(mimo_kl_read_header(f, "t", &h), MIMO_E_FORMAT);
  assert_non_null(strstr(mimo_errmsg(), "cut short"));
  fclose(f);
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_log_softmax), cmocka_unit_test(test_kl),
                                     cmocka_unit_test(test_ppl_stats), cmocka_unit_test(test_against_base),
                                     cmocka_unit_test(test_header)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}
