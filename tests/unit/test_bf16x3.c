/* The three-part bf16 split of the CUDA decode attention (src/backend/cuda/cuda_bf16x3.cuh), on the host: the same
 * steps with core/num.h's round-to-nearest-even bf16 conversion standing in for cvt.rn.bf16x2.f32.
 * Properties: x = hi + mid + lo exactly for every float the kernel splits (scaled queries, probabilities), the last
 * part needs no rounding, and a dot product of split fp32 values with bf16 keys, accumulated in fp32, stays within
 * the fp32 accumulation bound: its error is the accumulation's alone (summed in double, the parts' products give the
 * exact dot product). Printed beside it, the 3xTF32 split it replaces (with bf16 keys also near that bound: the
 * change is for speed, not accuracy). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/num.h"

static float f_of(uint32_t u) {
  float f;
  memcpy(&f, &u, 4);
  return f;
}
static uint32_t u_of(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  return u;
}
static float bf(float x) { return mimo_bf16_to_f32(mimo_f32_to_bf16(x)); }

/* the kernel's split_bf16x3 for one value; *exact_lo: the last conversion did not round */
static void split3(float x, float *hi, float *mid, float *lo, int *exact_lo) {
  *hi = bf(x);
  const float r = x - *hi;
  *mid = bf(r);
  const float r2 = r - *mid;
  *lo = bf(r2);
  *exact_lo = *lo == r2;
}

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint32_t next32(void) {
  rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
  return (uint32_t)(rng >> 32);
}
static float uniform(float s) { return s * ((float)(next32() >> 8) * 0x1p-24f * 2.f - 1.f); }

static void check_exact(float x) {
  float hi, mid, lo;
  int exact;
  split3(x, &hi, &mid, &lo, &exact);
  if (!exact || (double)hi + (double)mid + (double)lo != (double)x)
    fail_msg("split of %a: %a + %a + %a (last part exact: %d)", (double)x, (double)hi, (double)mid, (double)lo, exact);
}

static void test_split_exact(void **state) {
  (void)state;
  /* random bit patterns over the normal exponents the kernel can meet (2^-100 .. 2^100), both signs */
  for (int i = 0; i < 2000000; i++) {
    const uint32_t e = 27 + next32() % 201; /* biased exponent 27..227 */
    check_exact(f_of((next32() & 0x807fffffu) | e << 23));
  }
  /* ties at every rounding step, powers of two and their neighbours, zero, probabilities */
  const float edge[] = {0.f, 1.f, -1.f, 1.f + 0x1p-8f, 1.f + 0x1p-16f, 1.f + 0x1p-8f + 0x1p-16f, 1.f + 3 * 0x1p-8f,
                        0x1.fffffep0f, 0x1.000002p0f, 0x1.fffffep-1f, 0x1p-100f, 0x1.fffffep100f, 0.5f, 0.999999f};
  for (size_t i = 0; i < sizeof edge / sizeof *edge; i++) {
    check_exact(edge[i]);
    check_exact(-edge[i]);
  }
  for (int i = 0; i < 1000000; i++) /* exp2 of a non-positive score: the probabilities split for P·V */
    check_exact(exp2f(-fabsf(uniform(30.f))));
}

/* 3xTF32 as the kernel does it (split_tf32): hi rounded to tf32, lo = x − hi, and the unit reads lo's top 19 bits */
static float tf32_hi(float x) { return f_of((u_of(x) + 0x1000u) & 0xffffe000u); }
static float tf32_read(float x) { return f_of(u_of(x) & 0xffffe000u); }

static void test_dot_error(void **state) {
  (void)state;
  enum { D = 192, TRIALS = 20000 };
  const double u = 0x1p-24, n = 3.0 * D, gamma = n * u / (1 - n * u); /* fp32 sums of n exact products */
  double worst_bf3 = 0, worst_x3 = 0, mean_bf3 = 0, mean_x3 = 0;
  for (int tr = 0; tr < TRIALS; tr++) {
    float q[D], k[D];
    for (int i = 0; i < D; i++) {
      q[i] = uniform(3.f) * 0.0721f; /* a query times 1/sqrt(192), as the kernel stages it */
      k[i] = bf(uniform(1.f));       /* a bf16 key */
    }
    double exact = 0, mag = 0, parts = 0;
    float acc3 = 0.f, accx = 0.f;
    for (int i = 0; i < D; i++) {
      exact += (double)q[i] * k[i];
      mag += fabs((double)q[i] * k[i]);
      float hi, mid, lo;
      int ex;
      split3(q[i], &hi, &mid, &lo, &ex);
      parts += ((double)lo * k[i] + (double)mid * k[i]) + (double)hi * k[i];
      acc3 += lo * k[i]; /* small parts first, as the kernel orders its mmas */
      acc3 += mid * k[i];
      acc3 += hi * k[i];
      const float th = tf32_hi(q[i]), tl = tf32_read(q[i] - th);
      accx += tl * k[i];
      accx += th * k[i];
    }
    if (fabs(parts - exact) > 0x1p-50 * mag) /* both sums of the same exact products in double */
      fail_msg("trial %d: the parts' products sum to %.17g, the dot product is %.17g", tr, parts, exact);
    const double e3 = fabs(acc3 - exact) / mag, ex = fabs(accx - exact) / mag;
    worst_bf3 = e3 > worst_bf3 ? e3 : worst_bf3;
    worst_x3 = ex > worst_x3 ? ex : worst_x3;
    mean_bf3 += e3 / TRIALS;
    mean_x3 += ex / TRIALS;
  }
  printf("dot of %d, error / sum |products| over %d trials: bf16x3 mean %.2e worst %.2e, 3xTF32 mean %.2e worst "
         "%.2e (fp32 accumulation bound %.2e)\n",
         D, TRIALS, mean_bf3, worst_bf3, mean_x3, worst_x3, gamma);
  assert_true(worst_bf3 <= gamma);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_split_exact),
      cmocka_unit_test(test_dot_error),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
