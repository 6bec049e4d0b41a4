/* Shared by the sampler tests (test_sampler.c, test_sampler_adjust.c): making a sampler, drawing from a copy of
 * the logits, random logits, and the double-precision reference distribution. Include after cmocka.h. */
#ifndef MIMO_TESTS_SAMPLER_REF_H
#define MIMO_TESTS_SAMPLER_REF_H
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/num.h"
#include "engine/sampler.h"

static inline mimo_sampler *make(const mimo_sampling_params *p, int vocab) {
  mimo_sampler *s = NULL;
  assert_int_equal(mimo_sampler_init(&s, p, vocab), MIMO_OK);
  return s;
}

/* Samples once from a copy of logits (the sampler overwrites its input). */
static inline int draw(mimo_sampler *s, const float *logits, int n, float *scratch, mimo_sample_info *info) {
  memcpy(scratch, logits, (size_t)n * sizeof *scratch);
  return mimo_sampler_sample(s, scratch, info);
}

static inline void random_logits(float *x, int n, uint64_t seed, double scale) {
  mimo_rng r;
  mimo_rng_seed(&r, seed);
  for (int i = 0; i < n; i++)
    x[i] = (float)(scale * mimo_rng_normal(&r));
}

/* Reference: the distribution actually sampled, in double, following the
 * documented order (temperature, min-p, top-k, top-p; ties by lowest id). */
static const double *ref_vals;
static inline int ref_cmp(const void *a, const void *b) {
  int i = *(const int *)a, j = *(const int *)b;
  if (ref_vals[i] != ref_vals[j])
    return ref_vals[i] > ref_vals[j] ? -1 : 1;
  return (i > j) - (i < j);
}
static inline void ref_dist(const float *logits, int n, const mimo_sampling_params *p, double *prob) {
  double *l = malloc((size_t)n * sizeof *l);
  int *ord = malloc((size_t)n * sizeof *ord);
  double mx = -INFINITY;
  for (int i = 0; i < n; i++)
    mx = fmax(mx, (double)logits[i]);
  double z = 0;
  for (int i = 0; i < n; i++) {
    l[i] = ((double)logits[i] - mx) / p->temperature;
    z += exp(l[i]);
  }
  for (int i = 0; i < n; i++) {
    prob[i] = exp(l[i]) / z;
    if (prob[i] < p->min_p * (1.0 / z)) /* max prob is 1/z */
      prob[i] = 0;
    ord[i] = i;
  }
  ref_vals = l;
  qsort(ord, (size_t)n, sizeof *ord, ref_cmp);
  int kept = 0;
  for (int r = 0; r < n; r++)
    if (prob[ord[r]] > 0) {
      if (p->top_k > 0 && kept >= p->top_k)
        prob[ord[r]] = 0;
      else
        kept++;
    }
  z = 0;
  for (int i = 0; i < n; i++)
    z += prob[i];
  double cum = 0;
  int cut = 0;
  for (int r = 0; r < n; r++) {
    int i = ord[r];
    if (cut)
      prob[i] = 0;
    cum += prob[i] / z;
    if (p->top_p < 1 && cum >= p->top_p)
      cut = 1;
  }
  z = 0;
  for (int i = 0; i < n; i++)
    z += prob[i];
  for (int i = 0; i < n; i++)
    prob[i] /= z;
  free(l);
  free(ord);
}
#endif
