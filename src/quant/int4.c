#include "quant/int4.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/num.h"

/* The stored bf16 scale of one group. */
static float group_scale(const float *w, int n, bool asym, float *lo_out) {
  float lo = 0.f, hi = 0.f, amax = 0.f; /* the range always includes 0 */
  for (int i = 0; i < n; i++) {
    lo = fminf(lo, w[i]);
    hi = fmaxf(hi, w[i]);
    amax = fmaxf(amax, fabsf(w[i]));
  }
  float s = asym ? (hi - lo) / 15.f : amax / 7.5f;
  s = mimo_bf16_to_f32(mimo_f32_to_bf16(s));
  if (s == 0.f || !isfinite(s))
    s = 0.0078125f; /* bf16 epsilon, 2^-7 */
  *lo_out = lo;
  return s;
}

static int clamp_q(float v) {
  const float r = nearbyintf(v); /* half to even in the default rounding mode */
  return r < -8.f ? -8 : r > 7.f ? 7 : (int)r;
}

void mimo_int4_quantize(const float *w, int rows, int in, int group, bool asym, uint32_t *packed, uint16_t *scale,
                        uint32_t *zero) {
  const int ng = in / group;
  if (asym)
    memset(zero, 0, (size_t)((rows + 7) / 8) * ng * sizeof *zero);
  for (int r = 0; r < rows; r++) {
    const float *row = w + (size_t)r * in;
    uint32_t *pw = packed + (size_t)r * (in / 8);
    memset(pw, 0, (size_t)(in / 8) * sizeof *pw);
    for (int g = 0; g < ng; g++) {
      float lo;
      const float s = group_scale(row + (size_t)g * group, group, asym, &lo);
      scale[(size_t)r * ng + g] = mimo_f32_to_bf16(s);
      const int zp = asym ? clamp_q(-8.f - lo / s) : 0;
      if (asym)
        zero[(size_t)(r / 8) * ng + g] |= (uint32_t)(zp + 8) << (4 * (r % 8));
      for (int i = 0; i < group; i++) {
        const int c = g * group + i, q = clamp_q(row[c] / s + (float)zp);
        pw[c / 8] |= (uint32_t)(q + 8) << (4 * (c % 8));
      }
    }
  }
}

void mimo_int4_dequantize(const uint32_t *packed, const uint16_t *scale, const uint32_t *zero, int rows, int in,
                          int group, float *w) {
  const int ng = in / group;
  for (int r = 0; r < rows; r++)
    for (int c = 0; c < in; c++) {
      const int g = c / group, q = (int)((packed[(size_t)r * (in / 8) + c / 8] >> (4 * (c % 8))) & 15u) - 8;
      const int zp = zero ? (int)((zero[(size_t)(r / 8) * ng + g] >> (4 * (r % 8))) & 15u) - 8 : 0;
      w[(size_t)r * in + c] = (float)(q - zp) * mimo_bf16_to_f32(scale[(size_t)r * ng + g]);
    }
}

void mimo_int4_fake_quantize(float *w, int rows, int in, int group, bool asym) {
  for (int r = 0; r < rows; r++) {
    float *row = w + (size_t)r * in;
    for (int g = 0; g < in / group; g++) {
      float lo, *x = row + (size_t)g * group;
      const float s = group_scale(x, group, asym, &lo);
      const int zp = asym ? clamp_q(-8.f - lo / s) : 0;
      for (int i = 0; i < group; i++)
        x[i] = (float)(clamp_q(x[i] / s + (float)zp) - zp) * s;
    }
  }
}
