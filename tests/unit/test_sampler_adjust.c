/* Sampler adjustments against hand computations and the double-precision reference: penalties, logit bias and
 * min_tokens, the vocabulary limit, non-finite logits, logprobs, parameter checks. */
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

static void penalised(const mimo_sampling_params *p, const int *prompt, int np, const int *out, int no,
                      const float *x, int n, float *res) {
  mimo_sampler *s = make(p, n);
  mimo_sampler_add_prompt(s, prompt, np);
  for (int i = 0; i < no; i++)
    mimo_sampler_accept(s, out[i]);
  mimo_sample_info info;
  memcpy(res, x, (size_t)n * sizeof *res);
  assert_true(mimo_sampler_sample(s, res, &info) >= 0);
  mimo_sampler_free(s);
}

static void test_penalties(void **state) {
  (void)state;
  enum { V = 6 };
  const float x[V] = {2.0f, -1.0f, 0.5f, 3.0f, -2.0f, 1.0f};
  const int prompt[2] = {0, 1}, out[4] = {2, 2, 4, 0};
  struct { float rep, pres, freq; float want[V]; } cases[] = {
      /* repetition 1.5 over prompt+output {0,1,2,4}: >0 divided, <=0 multiplied */
      {1.5f, 0, 0, {2.0f / 1.5f, -1.5f, 0.5f / 1.5f, 3.0f, -3.0f, 1.0f}},
      /* presence 0.5 over output only {2,4,0}; token 1 (prompt only) untouched */
      {1, 0.5f, 0, {1.5f, -1.0f, 0.0f, 3.0f, -2.5f, 1.0f}},
      /* frequency 0.2 x counts {2:2, 4:1, 0:1} */
      {1, 0, 0.2f, {1.8f, -1.0f, 0.1f, 3.0f, -2.2f, 1.0f}},
      /* all three: repetition first, then 0.2*count + 0.5 */
      {1.5f, 0.5f, 0.2f, {2.0f / 1.5f - 0.7f, -1.5f, 0.5f / 1.5f - 0.9f, 3.0f, -3.7f, 1.0f}},
      /* negative penalties encourage */
      {0.5f, -1.0f, 0, {5.0f, -0.5f, 2.0f, 3.0f, 0.0f, 1.0f}},
  };
  for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
    mimo_sampling_params p;
    mimo_sampling_defaults(&p);
    p.repetition_penalty = cases[c].rep;
    p.presence_penalty = cases[c].pres;
    p.frequency_penalty = cases[c].freq;
    p.processed_logprobs = true;
    float res[V], mx = -INFINITY;
    penalised(&p, prompt, 2, out, 4, x, V, res);
    for (int i = 0; i < V; i++)
      mx = fmaxf(mx, cases[c].want[i]);
    for (int i = 0; i < V; i++)
      assert_float_equal(res[i], cases[c].want[i] - mx, 1e-5);
  }
  /* greedy sees penalties: without them 3 wins; presence 2 on an output 3 flips it to 0 */
  mimo_sampling_params p;
  mimo_sampling_defaults(&p);
  p.temperature = 0;
  p.presence_penalty = 2.0f;
  mimo_sampler *s = make(&p, V);
  float buf[V];
  assert_int_equal(draw(s, x, V, buf, NULL), 3);
  mimo_sampler_accept(s, 3);
  assert_int_equal(draw(s, x, V, buf, NULL), 0);
  /* out-of-range ids are ignored */
  mimo_sampler_accept(s, -1);
  mimo_sampler_accept(s, V);
  int bad[3] = {-5, V + 3, 1 << 30};
  mimo_sampler_add_prompt(s, bad, 3);
  assert_int_equal(draw(s, x, V, buf, NULL), 0);
  mimo_sampler_free(s);
}

/* logit_bias is added after the raw logprobs and before the penalties; min_tokens bans the stop ids until that many
 * tokens were accepted (vLLM's semantics, stated in engine/sampler.h). */
static void test_logit_bias_min_tokens(void **state) {
  (void)state;
  enum { V = 6 };
  const float x[V] = {2.0f, -1.0f, 0.5f, 3.0f, -2.0f, 1.0f};
  const int ids[2] = {1, 3};
  const float vals[2] = {4.5f, -0.5f};
  mimo_sampling_params p;
  mimo_sampling_defaults(&p);
  p.n_bias = 2;
  p.bias_ids = ids;
  p.bias_vals = vals;
  p.presence_penalty = 1.0f; /* over the output {1}: after the bias */
  p.processed_logprobs = true;
  const int out[1] = {1};
  float res[V];
  penalised(&p, NULL, 0, out, 1, x, V, res);
  const float want[V] = {2.0f, -1.0f + 4.5f - 1.0f, 0.5f, 3.0f - 0.5f, -2.0f, 1.0f};
  float mx = -INFINITY;
  for (int i = 0; i < V; i++)
    mx = fmaxf(mx, want[i]);
  for (int i = 0; i < V; i++)
    assert_float_equal(res[i], want[i] - mx, 1e-5);
  /* the raw logprobs do not see the bias */
  p.processed_logprobs = false;
  p.presence_penalty = 0;
  p.temperature = 0;
  p.logprobs = 1;
  mimo_sampler *s = make(&p, V);
  float buf[V];
  mimo_sample_info info;
  double z = 0;
  for (int i = 0; i < V; i++)
    z += exp((double)x[i]);
  assert_int_equal(draw(s, x, V, buf, &info), 1); /* -1 + 4.5 beats 3 - 0.5 */
  assert_float_equal(info.logprob, (double)x[1] - log(z), 1e-5);
  mimo_sampler_free(s);
  /* min_tokens: the stop ids 3 and 0 (the two best) are banned for the first 2 tokens */
  mimo_sampling_defaults(&p);
  p.temperature = 0;
  const int stops[2] = {3, 0};
  p.min_tokens = 2;
  p.n_min_tokens_ids = 2;
  p.min_tokens_ids = stops;
  s = make(&p, V);
  for (int k = 0; k < 2; k++) {
    assert_int_equal(draw(s, x, V, buf, NULL), 5);
    mimo_sampler_accept(s, 5);
  }
  assert_int_equal(draw(s, x, V, buf, NULL), 3);
  mimo_sampler_free(s);
  /* speculative rows: row i counts the drafts before it (two rows banned, the third not) */
  s = make(&p, V);
  mimo_sample_job jobs[3];
  const int ahead[2] = {5, 5};
  assert_int_equal(mimo_sampler_jobs_ahead(s, ahead, 2, jobs), MIMO_OK);
  assert_int_equal(jobs[0].n_ban, 2);
  assert_int_equal(jobs[1].n_ban, 2);
  assert_int_equal(jobs[2].n_ban, 0);
  mimo_sampler_free(s);
  /* bad biases are refused */
  mimo_sampling_defaults(&p);
  const int bad_id[1] = {V};
  const float ok_val[1] = {1}, bad_val[1] = {NAN};
  p.n_bias = 1;
  p.bias_ids = bad_id;
  p.bias_vals = ok_val;
  assert_int_equal(mimo_sampler_init(&s, &p, V), MIMO_E_INVALID);
  p.bias_ids = ids;
  p.bias_vals = bad_val;
  assert_int_equal(mimo_sampler_init(&s, &p, V), MIMO_E_INVALID);
}

static void test_vocab_limit(void **state) {
  (void)state;
  enum { V = 100 };
  float x[V], buf[V];
  random_logits(x, V, 9, 1.0);
  x[95] = 50; /* padding row that would win */
  mimo_sampling_params p;
  mimo_sampling_defaults(&p);
  p.vocab_limit = 90;
  p.logprobs = 5;
  p.temperature = 3;
  mimo_sampler *s = make(&p, V);
  mimo_sample_info info;
  for (int k = 0; k < 2000; k++) {
    int t = draw(s, x, V, buf, &info);
    assert_true(t < 90);
    for (int j = 0; j < info.n_top; j++)
      assert_true(info.top[j].token < 90);
  }
  /* raw logprobs are normalised over ids < limit only */
  double z = 0;
  for (int i = 0; i < 90; i++)
    z += exp((double)x[i]);
  int t = draw(s, x, V, buf, &info);
  assert_float_equal(info.logprob, (double)x[t] - log(z), 1e-5);
  mimo_sampler_free(s);
  p.temperature = 0;
  s = make(&p, V);
  int best = 0;
  for (int i = 0; i < 90; i++)
    best = x[i] > x[best] ? i : best;
  assert_int_equal(draw(s, x, V, buf, NULL), best);
  mimo_sampler_free(s);
  p.vocab_limit = 1000; /* above the vocab: no limit */
  s = make(&p, V);
  assert_int_equal(draw(s, x, V, buf, NULL), 95);
  mimo_sampler_free(s);
}

static void test_nonfinite(void **state) {
  (void)state;
  enum { V = 16 };
  float x[V], buf[V];
  mimo_sampling_params p;
  mimo_sampling_defaults(&p);
  p.logprobs = 3;
  /* NaN is never sampled (treated as -inf) */
  for (int i = 0; i < V; i++)
    x[i] = i % 2 ? NAN : 0.0f;
  mimo_sampler *s = make(&p, V);
  mimo_sample_info info;
  for (int k = 0; k < 500; k++)
    assert_int_equal(draw(s, x, V, buf, &info) % 2, 0);
  assert_float_equal(info.logprob, -log(8.0), 1e-6);
  mimo_sampler_free(s);
  /* +inf tokens are certain and share the mass */
  for (int i = 0; i < V; i++)
    x[i] = (float)i;
  x[7] = x[9] = INFINITY;
  x[3] = NAN;
  p.top_p = 0.9f;
  p.repetition_penalty = 0.5f; /* multiplies/divides inf: must stay finite-safe */
  s = make(&p, V);
  mimo_sampler_accept(s, 7);
  int n7 = 0, n9 = 0;
  for (int k = 0; k < 1000; k++) {
    int t = draw(s, x, V, buf, &info);
    assert_true(t == 7 || t == 9);
    n7 += t == 7;
    n9 += t == 9;
    assert_false(isnan(info.logprob));
  }
  assert_true(n7 > 300 && n9 > 300);
  mimo_sampler_free(s);
  /* all NaN / -inf: no token, -1 and a message; greedy too */
  for (int p_greedy = 0; p_greedy < 2; p_greedy++) {
    for (int i = 0; i < V; i++)
      x[i] = i % 2 ? NAN : -INFINITY;
    mimo_sampling_defaults(&p);
    p.temperature = p_greedy ? 0.0f : 1.0f;
    s = make(&p, V);
    assert_int_equal(draw(s, x, V, buf, NULL), -1);
    assert_non_null(strstr(mimo_errmsg(), "no token"));
    x[11] = -1e30f; /* one finite token left */
    assert_int_equal(draw(s, x, V, buf, NULL), 11);
    mimo_sampler_free(s);
  }
  /* huge finite values with a tiny temperature do not overflow */
  for (int i = 0; i < V; i++)
    x[i] = i == 4 ? FLT_MAX : -FLT_MAX;
  mimo_sampling_defaults(&p);
  p.temperature = 1e-4f;
  s = make(&p, V);
  assert_int_equal(draw(s, x, V, buf, NULL), 4);
  mimo_sampler_free(s);
}

static void test_logprobs(void **state) {
  (void)state;
  enum { V = 40 };
  float x[V], buf[V];
  random_logits(x, V, 21, 2.0);
  x[17] = x[18] = 4.0f; /* a tie inside the top list: lower id first */
  mimo_sampling_params p;
  mimo_sampling_defaults(&p);
  p.temperature = 0.5f;
  p.repetition_penalty = 1.3f;
  p.top_k = 10;
  p.logprobs = 5;
  mimo_sampler *s = make(&p, V);
  int pr[3] = {1, 2, 3};
  mimo_sampler_add_prompt(s, pr, 3);
  /* raw: log-softmax of the unprocessed logits */
  double z = 0;
  for (int i = 0; i < V; i++)
    z += exp((double)x[i]);
  int ord[V];
  for (int i = 0; i < V; i++)
    ord[i] = i;
  double xv[V];
  for (int i = 0; i < V; i++)
    xv[i] = x[i];
  ref_vals = xv;
  qsort(ord, V, sizeof *ord, ref_cmp);
  mimo_sample_info info;
  for (int k = 0; k < 50; k++) {
    int t = draw(s, x, V, buf, &info);
    assert_float_equal(info.logprob, (double)x[t] - log(z), 1e-5);
    assert_int_equal(info.n_top, 5);
    for (int j = 0; j < 5; j++) {
      assert_int_equal(info.top[j].token, ord[j]);
      assert_float_equal(info.top[j].logprob, (double)x[ord[j]] - log(z), 1e-5);
    }
  }
  assert_int_equal(info.top[0].token, 17);
  assert_int_equal(info.top[1].token, 18);
  mimo_sampler_free(s);
  /* processed: the sampled distribution; the chosen token's probability matches the reference */
  p.processed_logprobs = true;
  p.repetition_penalty = 1;
  p.top_p = 0.8f;
  s = make(&p, V);
  double prob[V];
  ref_dist(x, V, &p, prob);
  int kept = 0;
  for (int i = 0; i < V; i++)
    kept += prob[i] > 0;
  for (int k = 0; k < 50; k++) {
    int t = draw(s, x, V, buf, &info);
    assert_float_equal(info.logprob, log(prob[t]), 1e-4);
    assert_int_equal(info.n_top, kept < 5 ? kept : 5);
    double sum = 0;
    for (int i = 0; i < V; i++)
      sum += buf[i] > -INFINITY ? exp((double)buf[i] - (double)buf[t] + (double)info.logprob) : 0;
    assert_float_equal(sum, 1.0, 1e-4);
  }
  mimo_sampler_free(s);
}

static void test_params(void **state) {
  (void)state;
  mimo_sampling_params p;
  mimo_sampler *s = NULL;
#define BAD(stmt, word)                                                 \
  do {                                                                  \
    mimo_sampling_defaults(&p);                                         \
    stmt;                                                               \
    assert_int_equal(mimo_sampler_init(&s, &p, 10), MIMO_E_INVALID);    \
    assert_null(s);                                                     \
    assert_non_null(strstr(mimo_errmsg(), word));                       \
  } while (0)
  BAD(p.temperature = -1, "temperature");
  BAD(p.temperature = NAN, "temperature");
  BAD(p.temperature = INFINITY, "temperature");
  BAD(p.top_p = 0, "top_p");
  BAD(p.top_p = 1.5f, "top_p");
  BAD(p.top_p = NAN, "top_p");
  BAD(p.min_p = -0.1f, "min_p");
  BAD(p.min_p = 2, "min_p");
  BAD(p.repetition_penalty = 0, "repetition_penalty");
  BAD(p.presence_penalty = NAN, "presence_penalty");
  BAD(p.logprobs = MIMO_MAX_LOGPROBS + 1, "logprobs");
  BAD(p.logprobs = -1, "logprobs");
  mimo_sampling_defaults(&p);
  assert_int_equal(mimo_sampler_init(&s, &p, 0), MIMO_E_INVALID);
  assert_true(p.temperature == 1 && p.top_p == 1 && p.top_k <= 0 && p.min_p == 0 &&
              p.repetition_penalty == 1 && p.presence_penalty == 0 && p.frequency_penalty == 0);
  mimo_sampler_free(NULL);
#undef BAD
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_penalties),  cmocka_unit_test(test_vocab_limit), cmocka_unit_test(test_nonfinite),
      cmocka_unit_test(test_logit_bias_min_tokens), cmocka_unit_test(test_logprobs), cmocka_unit_test(test_params),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
