/* Core helpers against independent definitions: bf16/f16 rounding, RNG determinism,
 * and the thread pool covering every index exactly once. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdlib.h>

#include "core/num.h"
#include "core/threads.h"

static void test_bf16_round_trip(void **state) {
  (void)state;
  /* Every bf16 value converts to f32 and back unchanged (NaNs stay NaN). */
  for (uint32_t h = 0; h < 65536; h++) {
    float f = mimo_bf16_to_f32((uint16_t)h);
    if (isnan(f))
      assert_true(isnan(mimo_bf16_to_f32(mimo_f32_to_bf16(f))));
    else
      assert_int_equal(mimo_f32_to_bf16(f), h);
  }
  /* Round half to even: 1 + 2^-8 is halfway between bf16 1.0 and 1+2^-7. */
  assert_int_equal(mimo_f32_to_bf16(1.0f + 0x1p-8f), 0x3f80);
  assert_int_equal(mimo_f32_to_bf16(1.0f + 3 * 0x1p-8f), 0x3f82);
}

static void test_f16_round_trip(void **state) {
  (void)state;
  for (uint32_t h = 0; h < 65536; h++) {
    float f = mimo_f16_to_f32((uint16_t)h);
    if (isnan(f))
      continue;
    assert_int_equal(mimo_f32_to_f16(f), h);
  }
  assert_true(mimo_f16_to_f32(0x3c00) == 1.0f);
  assert_true(mimo_f16_to_f32(0x0001) == 0x1p-24f);
  assert_true(mimo_f16_to_f32(0xc000) == -2.0f);
}

static void test_rng(void **state) {
  (void)state;
  mimo_rng a, b;
  mimo_rng_seed(&a, 42);
  mimo_rng_seed(&b, 42);
  double sum = 0, sq = 0;
  for (int i = 0; i < 100000; i++) {
    assert_true(mimo_rng_next(&a) == mimo_rng_next(&b));
    double x = mimo_rng_normal(&a);
    (void)mimo_rng_normal(&b);
    sum += x;
    sq += x * x;
  }
  /* mean ~ 0, variance ~ 1 within 5 standard errors */
  assert_true(fabs(sum / 1e5) < 5 / sqrt(1e5));
  assert_true(fabs(sq / 1e5 - 1) < 5 * sqrt(2.0 / 1e5));
}

static void mark(void *ctx, long b, long e) {
  int *hits = ctx;
  for (long i = b; i < e; i++)
    __atomic_fetch_add(&hits[i], 1, __ATOMIC_RELAXED);
}

static void test_pool(void **state) {
  (void)state;
  mimo_pool *p;
  assert_int_equal(mimo_pool_init(&p, 4), MIMO_OK);
  for (long n = 1; n < 3000; n = n * 3 + 1) {
    int *hits = calloc((size_t)n, sizeof *hits);
    for (int rep = 0; rep < 3; rep++)
      mimo_parallel_for(p, n, 7, mark, hits);
    for (long i = 0; i < n; i++)
      assert_int_equal(hits[i], 3);
    free(hits);
  }
  mimo_pool_free(p);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_bf16_round_trip),
      cmocka_unit_test(test_f16_round_trip),
      cmocka_unit_test(test_rng),
      cmocka_unit_test(test_pool),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
