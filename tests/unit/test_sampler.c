/* Sampler against stated properties and double-precision references: greedy is
 * argmax, draws follow softmax(logits/T) restricted by min-p/top-k/top-p
 * (chi-square), seeds reproduce. Penalties, biases and logprobs: test_sampler_adjust.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sampler_ref.h"

/* Chi-square upper bound for df degrees of freedom at z = 5 sigma (Wilson-Hilferty). */
static double chi2_bound(int df) {
  double a = 2.0 / (9.0 * df);
  return df * pow(1 - a + 5 * sqrt(a), 3);
}

/* Draws N tokens and checks their frequencies against the reference by chi-square;
 * tokens with zero reference mass must never appear. */
static void check_distribution(const float *logits, int n, const mimo_sampling_params *p, int N) {
  double *prob = calloc((size_t)n, sizeof *prob);
  long *hits = calloc((size_t)n, sizeof *hits);
  float *buf = malloc((size_t)n * sizeof *buf);
  ref_dist(logits, n, p, prob);
  mimo_sampler *s = make(p, n);
  for (int k = 0; k < N; k++) {
    int t = draw(s, logits, n, buf, NULL);
    assert_true(t >= 0 && t < n);
    hits[t]++;
  }
  /* tokens expected fewer than 20 times are pooled into one cell, as chi-square needs */
  double chi = 0, pool_e = 0, pool_o = 0;
  int df = -1;
  for (int i = 0; i < n; i++) {
    if (prob[i] == 0) {
      assert_int_equal(hits[i], 0);
      continue;
    }
    double e = prob[i] * N;
    if (e < 20) {
      pool_e += e;
      pool_o += (double)hits[i];
      continue;
    }
    chi += (hits[i] - e) * (hits[i] - e) / e;
    df++;
  }
  if (pool_e > 0) {
    chi += (pool_o - pool_e) * (pool_o - pool_e) / pool_e;
    df++;
  }
  if (df > 0)
    assert_true(chi < chi2_bound(df));
  mimo_sampler_free(s);
  free(prob);
  free(hits);
  free(buf);
}

/* Step 9: given the uniform, the token is the reference distribution's inverse CDF in id order, whichever path
 * found the kept set (the id-ordered walk, the top-k heap, quickselect, binned top-p). */
static void test_draw_order(void **state) {
  (void)state;
  const int V = 20000;
  float *logits = malloc((size_t)V * sizeof *logits), *buf = malloc((size_t)V * sizeof *buf);
  double *prob = malloc((size_t)V * sizeof *prob);
  random_logits(logits, V, 4242, 2.0);
  mimo_sample_ws *ws;
  assert_int_equal(mimo_sample_ws_init(&ws, V), MIMO_OK);
  const struct { float t, p, min_p; int k; } cs[6] = {
      {1, 1, 0, -1}, {0.8f, 1, 0, 10}, {1, 1, 0, 2000}, {1.2f, 0.9f, 0, -1}, {0.9f, 0.7f, 0.05f, -1}, {2, 0.99f, 0, 5000}};
  int checked = 0;
  for (int c = 0; c < 6; c++) {
    mimo_sampling_params p;
    mimo_sampling_defaults(&p);
    p.temperature = cs[c].t;
    p.top_p = cs[c].p;
    p.min_p = cs[c].min_p;
    p.top_k = cs[c].k;
    ref_dist(logits, V, &p, prob);
    mimo_sampler *s = make(&p, V);
    for (int q = 0; q < 200; q++) {
      const double u = (q + 0.5) / 200;
      double cum = 0, near = 1;
      int want = -1;
      for (int i = 0; i < V; i++) {
        cum += prob[i];
        if (prob[i] > 0)
          near = fmin(near, fabs(cum - u));
        if (want < 0 && u < cum)
          want = i;
      }
      if (near < 1e-6) /* the float weights may put this boundary on either side */
        continue;
      mimo_sample_job j;
      mimo_sampler_job(s, &j);
      j.u = u;
      memcpy(buf, logits, (size_t)V * sizeof *buf);
      assert_int_equal(mimo_sample_logits(&j, buf, V, NULL, ws), want);
      checked++;
    }
    mimo_sampler_free(s);
  }
  assert_true(checked > 1000);
  mimo_sample_ws_free(ws);
  free(logits);
  free(buf);
  free(prob);
}

static void test_greedy(void **state) {
  (void)state;
  enum { V = 1000 };
  float x[V], buf[V];
  random_logits(x, V, 7, 2.0);
  int best = 0;
  for (int i = 1; i < V; i++)
    if (x[i] > x[best])
      best = i;
  mimo_sampling_params p;
  mimo_sampling_defaults(&p);
  p.temperature = 0;
  p.top_k = 5; /* filters do not change greedy */
  p.top_p = 0.1f;
  mimo_sampler *s = make(&p, V);
  for (int k = 0; k < 10; k++)
    assert_int_equal(draw(s, x, V, buf, NULL), best);
  /* ties go to the lowest id */
  x[3] = x[999] = x[500] = x[best] + 1;
  assert_int_equal(draw(s, x, V, buf, NULL), 3);
  mimo_sampler_free(s);
  /* temperatures below 1e-5 are greedy too */
  p.temperature = 1e-6f;
  s = make(&p, V);
  assert_int_equal(draw(s, x, V, buf, NULL), 3);
  mimo_sampler_free(s);
}

static void test_seed(void **state) {
  (void)state;
  enum { V = 500, N = 200 };
  float x[V], buf[V];
  random_logits(x, V, 11, 1.0);
  mimo_sampling_params p;
  mimo_sampling_defaults(&p);
  int seq[3][N];
  uint64_t seeds[3] = {1234, 1234, 1235};
  for (int r = 0; r < 3; r++) {
    p.seed = seeds[r];
    mimo_sampler *s = make(&p, V);
    for (int k = 0; k < N; k++)
      seq[r][k] = draw(s, x, V, buf, NULL);
    mimo_sampler_free(s);
  }
  assert_memory_equal(seq[0], seq[1], sizeof seq[0]);
  int diff = 0;
  for (int k = 0; k < N; k++)
    diff += seq[0][k] != seq[2][k];
  assert_true(diff > N / 2);
  /* two samplers interleaved do not disturb each other (no global state) */
  p.seed = 1234;
  mimo_sampler *a = make(&p, V), *b = make(&p, V);
  for (int k = 0; k < N; k++) {
    assert_int_equal(draw(a, x, V, buf, NULL), seq[0][k]);
    if (k % 3 == 0)
      (void)draw(b, x, V, buf, NULL);
  }
  mimo_sampler_free(a);
  mimo_sampler_free(b);
}

static void test_temperature_distribution(void **state) {
  (void)state;
  const float x[8] = {1.0f, 0.5f, -0.3f, 2.0f, 0.0f, -1.5f, 1.7f, 0.2f};
  mimo_sampling_params p;
  mimo_sampling_defaults(&p);
  float temps[3] = {1.0f, 0.7f, 2.5f};
  for (int t = 0; t < 3; t++) {
    p.temperature = temps[t];
    p.seed = 100 + (uint64_t)t;
    check_distribution(x, 8, &p, 100000);
  }
}

static void test_filtered_distribution(void **state) {
  (void)state;
  enum { V = 300 };
  float x[V];
  random_logits(x, V, 3, 1.5);
  mimo_sampling_params p;
  mimo_sampling_defaults(&p);
  struct { float T, top_p, min_p; int top_k; } cases[] = {
      {1.0f, 1.0f, 0.0f, 10}, {1.3f, 0.8f, 0.0f, -1}, {0.8f, 0.9f, 0.0f, 20},
      {1.0f, 1.0f, 0.05f, -1}, {1.2f, 0.7f, 0.02f, 40}, {1.0f, 0.3f, 0.0f, 2}};
  for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
    p.temperature = cases[c].T;
    p.top_p = cases[c].top_p;
    p.min_p = cases[c].min_p;
    p.top_k = cases[c].top_k;
    p.seed = 900 + c;
    check_distribution(x, V, &p, 20000);
  }
}

/* 152k vocab: top-k draws stay within the k best; top-p on a flat distribution
 * (the full-sort path) keeps the lowest ids; timing printed for the record. */
static void test_large_vocab(void **state) {
  (void)state;
  enum { V = 152576 };
  float *x = malloc(V * sizeof *x), *buf = malloc(V * sizeof *buf);
  random_logits(x, V, 5, 3.0);
  float kth[64];
  int nk = 0;
  for (int i = 0; i < V; i++) { /* the 50 best values, by insertion */
    if (nk < 50 || x[i] > kth[nk - 1]) {
      int j = nk < 50 ? nk++ : nk - 1;
      while (j > 0 && x[i] > kth[j - 1]) {
        kth[j] = kth[j - 1];
        j--;
      }
      kth[j] = x[i];
    }
  }
  mimo_sampling_params p;
  mimo_sampling_defaults(&p);
  p.top_k = 50;
  p.temperature = 5.0f; /* flatten, so all 50 get drawn */
  mimo_sampler *s = make(&p, V);
  int distinct = 0;
  char *hit = calloc(V, 1);
  for (int k = 0; k < 1000; k++) {
    int t = draw(s, x, V, buf, NULL);
    assert_true(x[t] >= kth[49]);
    distinct += !hit[t];
    hit[t] = 1;
  }
  assert_int_equal(distinct, 50);
  mimo_sampler_free(s);

  /* Flat distribution: the top-p prefix is the ceil(p * V) lowest ids. */
  float *flat = calloc(V, sizeof *flat);
  mimo_sampling_defaults(&p);
  p.top_p = 0.9f;
  s = make(&p, V);
  int hi = 0, keep = (int)ceil((double)0.9f * V);
  for (int k = 0; k < 50; k++) { /* each draw orders ~137k tied ids: keep it short */
    int t = draw(s, flat, V, buf, NULL);
    assert_true(t < keep);
    hi = t > hi ? t : hi;
  }
  assert_true(hi > keep - V / 10);
  mimo_sampler_free(s);

  struct { const char *name; float T, top_p; int top_k; } cfg[] = {
      {"greedy", 0, 1, -1}, {"T=1", 1, 1, -1}, {"top_k=50", 1, 1, 50},
      {"top_p=0.95", 1, 0.95f, -1}, {"top_k=50 top_p=0.95", 1, 0.95f, 50}, {"T=0.6 top_p=0.95", 0.6f, 0.95f, -1}};
  for (size_t c = 0; c < sizeof cfg / sizeof cfg[0]; c++) {
    mimo_sampling_defaults(&p);
    p.temperature = cfg[c].T;
    p.top_p = cfg[c].top_p;
    p.top_k = cfg[c].top_k;
    s = make(&p, V);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int k = 0; k < 20; k++)
      (void)draw(s, x, V, buf, NULL);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double ms = ((double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-6) / 20;
    printf("sampler V=%d %-22s %.3f ms/token\n", V, cfg[c].name, ms);
    assert_true(ms < 500); /* sanity only (sanitizer builds are slow); numbers are printed */
    mimo_sampler_free(s);
  }
  free(x);
  free(buf);
  free(flat);
  free(hit);
}

static void test_top_p_boundary(void **state) {
  (void)state;
  /* Four equal logits: each has mass exactly 1/4 (ties ordered by id). */
  const float x[6] = {0, 0, 0, 0, -INFINITY, -INFINITY};
  float buf[6];
  struct { float top_p; int keep; } cases[] = {
      {0.5f, 2}, {0.50001f, 3}, {0.25f, 1}, {0.2f, 1}, {0.75f, 3}, {0.76f, 4}, {1.0f, 4}, {1e-6f, 1}};
  for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
    mimo_sampling_params p;
    mimo_sampling_defaults(&p);
    p.top_p = cases[c].top_p;
    p.seed = c;
    mimo_sampler *s = make(&p, 6);
    int seen[6] = {0};
    for (int k = 0; k < 400; k++)
      seen[draw(s, x, 6, buf, NULL)]++;
    for (int i = 0; i < 6; i++)
      assert_true(i < cases[c].keep ? seen[i] > 0 : seen[i] == 0);
    mimo_sampler_free(s);
  }
  /* Unequal masses: probs 0.5, 0.25, 0.125, 0.125 (log2 steps); 0.74 keeps two, 0.76 three. */
  const float y[4] = {0, -(float)M_LN2, -2 * (float)M_LN2, -2 * (float)M_LN2};
  float tp[2] = {0.74f, 0.76f};
  for (int c = 0; c < 2; c++) {
    mimo_sampling_params p;
    mimo_sampling_defaults(&p);
    p.top_p = tp[c];
    mimo_sampler *s = make(&p, 4);
    int seen[4] = {0};
    for (int k = 0; k < 1000; k++)
      seen[draw(s, y, 4, buf, NULL)]++;
    assert_true(seen[0] > 0 && seen[1] > 0 && seen[3] == 0);
    assert_true(c == 0 ? seen[2] == 0 : seen[2] > 0);
    mimo_sampler_free(s);
  }
}

/* Exactly k survive top-k; ties at the k-th value go to the lowest ids. Covers the
 * heap path (small k) and the quickselect path (k > 1024). */
static void test_top_k_ties(void **state) {
  (void)state;
  enum { V = 5000 };
  float *x = calloc(V, sizeof *x), *buf = malloc(V * sizeof *buf);
  int ks[3] = {2, 700, 3000};
  for (int c = 0; c < 3; c++) {
    mimo_sampling_params p;
    mimo_sampling_defaults(&p);
    p.top_k = ks[c];
    mimo_sampler *s = make(&p, V);
    int hi = 0;
    for (int k = 0; k < 6000; k++) {
      int t = draw(s, x, V, buf, NULL);
      assert_true(t < ks[c]);
      hi = t > hi ? t : hi;
    }
    assert_true(hi >= ks[c] * 9 / 10);
    mimo_sampler_free(s);
  }
  /* random logits, quickselect path: draws stay among the 3000 best */
  random_logits(x, V, 77, 1.0);
  float *sorted = malloc(V * sizeof *sorted);
  memcpy(sorted, x, V * sizeof *x);
  for (int i = 1; i < V; i++) /* insertion sort, descending */
    for (int j = i; j > 0 && sorted[j] > sorted[j - 1]; j--) {
      float t = sorted[j];
      sorted[j] = sorted[j - 1];
      sorted[j - 1] = t;
    }
  mimo_sampling_params p;
  mimo_sampling_defaults(&p);
  p.top_k = 3000;
  p.temperature = 0.3f;
  mimo_sampler *s = make(&p, V);
  for (int k = 0; k < 1000; k++)
    assert_true(x[draw(s, x, V, buf, NULL)] >= sorted[2999]);
  mimo_sampler_free(s);
  free(sorted);
  free(x);
  free(buf);
}

static void test_min_p(void **state) {
  (void)state;
  const float x[4] = {0, -1, -2, -3};
  float buf[4];
  /* prob ratios to the max: T=1: e^-1=.37, e^-2=.14; T=2: e^-.5, e^-1=.37, e^-1.5=.22 */
  struct { float T, min_p; int keep; } cases[] = {{1, 0.3f, 2}, {2, 0.3f, 3}, {1, 1.0f, 1}, {1, 0.01f, 4}};
  for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
    mimo_sampling_params p;
    mimo_sampling_defaults(&p);
    p.temperature = cases[c].T;
    p.min_p = cases[c].min_p;
    mimo_sampler *s = make(&p, 4);
    int seen[4] = {0};
    for (int k = 0; k < 3000; k++)
      seen[draw(s, x, 4, buf, NULL)]++;
    for (int i = 0; i < 4; i++)
      assert_true(i < cases[c].keep ? seen[i] > 0 : seen[i] == 0);
    mimo_sampler_free(s);
  }
}

/* Penalised logits read back through processed logits (T = 1: logits - max). */
int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_draw_order),      cmocka_unit_test(test_greedy),          cmocka_unit_test(test_seed),
      cmocka_unit_test(test_temperature_distribution), cmocka_unit_test(test_filtered_distribution),
      cmocka_unit_test(test_large_vocab),     cmocka_unit_test(test_top_p_boundary),
      cmocka_unit_test(test_min_p), cmocka_unit_test(test_top_k_ties),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
