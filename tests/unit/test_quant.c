/* int4 group quantisation (quant/int4.h) against hand-worked cases of spec §6.2-6.3 and stated properties:
 * symmetric and asymmetric groups whose scale is exactly 1 (so every integer is known: half to even, clamping at
 * -8 and 7), the nibble order in a word, the zero points packed down the rows, a zero group's epsilon scale, and on
 * random rows: dequantised values within half a step of the weight, and fake quantisation = quantise + dequantise. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/num.h"
#include "quant/int4.h"

static void test_symmetric(void **state) {
  (void)state;
  /* max |w| = 7.5: scale 1 exactly; q = round half to even, 7.5 -> 8 clamps to 7, -7.5 -> -8 */
  const float w[8] = {0.f, 1.f, -1.f, 7.5f, -7.5f, 2.5f, 3.5f, -0.5f};
  uint32_t packed[1];
  uint16_t scale[1];
  mimo_int4_quantize(w, 1, 8, 8, false, packed, scale, NULL);
  assert_int_equal(scale[0], 0x3F80); /* bf16 1.0 */
  /* u = q + 8 = 8, 9, 7, 15, 0, 10, 12, 8, element k in bits 4k */
  assert_int_equal(packed[0], 0x8CA0F798u);
  float back[8];
  mimo_int4_dequantize(packed, scale, NULL, 1, 8, 8, back);
  const float want[8] = {0.f, 1.f, -1.f, 7.f, -8.f, 2.f, 4.f, 0.f};
  for (int i = 0; i < 8; i++)
    assert_true(back[i] == want[i]);
}

static void test_asymmetric(void **state) {
  (void)state;
  /* range [0, 15]: scale 1, zero point round(-8 - 0) = -8; q = round(w - 8) half to even */
  const float w[8] = {0.f, 1.5f, 3.f, 4.5f, 6.f, 7.5f, 15.f, 10.f};
  uint32_t packed[1], zero[1];
  uint16_t scale[1];
  mimo_int4_quantize(w, 1, 8, 8, true, packed, scale, zero);
  assert_int_equal(scale[0], 0x3F80);
  assert_int_equal(zero[0], 0u); /* zp + 8 = 0 in row 0's nibble */
  /* q = -8, -6 (of -6.5), -5, -4 (of -3.5), -2, 0 (of -0.5), 7, 2: u = 0, 2, 3, 4, 6, 8, 15, 10 */
  assert_int_equal(packed[0], 0xAF864320u);
  float back[8];
  mimo_int4_dequantize(packed, scale, zero, 1, 8, 8, back);
  const float want[8] = {0.f, 2.f, 3.f, 4.f, 6.f, 8.f, 15.f, 10.f};
  for (int i = 0; i < 8; i++)
    assert_true(back[i] == want[i]);
}

static void test_layout(void **state) {
  (void)state;
  /* 10 rows x 16 inputs, group 8: row r group g holds the constant -(r + 1) (g = 0) or 0 (g = 1) */
  enum { R = 10, C = 16, G = 8 };
  float w[R * C];
  for (int r = 0; r < R; r++)
    for (int c = 0; c < C; c++)
      w[r * C + c] = c < G ? -(float)(r + 1) : 0.f;
  uint32_t packed[R * C / 8], zero[2 * 2];
  uint16_t scale[R * 2];
  mimo_int4_quantize(w, R, C, G, true, packed, scale, zero);
  for (int r = 0; r < R; r++) {
    /* group 0: range [-(r+1), 0], scale (r+1)/15 rounded to bf16; the minimum maps to q = -8 */
    const float s = mimo_bf16_to_f32(mimo_f32_to_bf16((float)(r + 1) / 15.f));
    assert_true(mimo_bf16_to_f32(scale[r * 2]) == s);
    /* group 1: all zero: bf16 epsilon 2^-7, zero point round(-8 - 0) = -8, q = -8 */
    assert_int_equal(scale[r * 2 + 1], 0x3C00);
    assert_int_equal(packed[r * 2 + 1], 0u);
    const int zp = (int)((zero[(r / 8) * 2 + 0] >> (4 * (r % 8))) & 15u) - 8;
    assert_int_equal(zp, (int)fmaxf(-8.f, fminf(7.f, nearbyintf(-8.f - -(float)(r + 1) / s))));
  }
  /* rows 8 and 9 of group 1 in word [1][1], nibbles 0 and 1: zp -8 -> u = 0 */
  assert_int_equal(zero[1 * 2 + 1] & 0xFFu, 0u);
  /* a zero symmetric group: scale epsilon, every u = 8 */
  const float z[8] = {0};
  uint32_t pz[1];
  uint16_t sz[1];
  mimo_int4_quantize(z, 1, 8, 8, false, pz, sz, NULL);
  assert_int_equal(sz[0], 0x3C00);
  assert_int_equal(pz[0], 0x88888888u);
}

static void test_random_rows(void **state) {
  (void)state;
  enum { R = 7, C = 256, G = 32 };
  float w[R * C], back[R * C], fake[R * C];
  uint32_t packed[R * C / 8], zero[1 * C / G];
  uint16_t scale[R * C / G];
  srand(11);
  for (int asym = 0; asym < 2; asym++) {
    for (int i = 0; i < R * C; i++)
      w[i] = (float)rand() / RAND_MAX * 2.f - 1.f + (asym ? 0.7f : 0.f);
    mimo_int4_quantize(w, R, C, G, asym, packed, scale, asym ? zero : NULL);
    mimo_int4_dequantize(packed, scale, asym ? zero : NULL, R, C, G, back);
    memcpy(fake, w, sizeof w);
    mimo_int4_fake_quantize(fake, R, C, G, asym);
    for (int i = 0; i < R * C; i++) {
      const float s = mimo_bf16_to_f32(scale[(i / C) * (C / G) + (i % C) / G]);
      /* within half a step, except symmetric values past 7 steps (the top of the range clamps at 7) */
      if (asym || w[i] < 7.f * s)
        assert_true(fabsf(back[i] - w[i]) <= 0.5f * s * 1.0001f);
      assert_true(back[i] == fake[i]);
    }
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_symmetric), cmocka_unit_test(test_asymmetric),
                                     cmocka_unit_test(test_layout), cmocka_unit_test(test_random_rows)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}
