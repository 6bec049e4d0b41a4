/* y[T][out] = x[T][in] · Wᵀ for dense (f32/bf16/f16) and int4 pack-quantized W.
 * Weights are decoded a tile at a time into a small stack buffer (int4 stays
 * int4 in memory) and each decoded tile is reused for a tile of tokens. */
#include <string.h>

#include "backend/cpu/cpu.h"
#include "core/num.h"

enum { ROWS = 4, KC = 512, TT = 32 };

static inline float scale_at(const mimo_linear *W, size_t i) {
  switch (W->scale_dt) {
  case MIMO_DT_BF16: return mimo_bf16_to_f32(((const uint16_t *)W->scale)[i]);
  case MIMO_DT_F16: return mimo_f16_to_f32(((const uint16_t *)W->scale)[i]);
  default: return ((const float *)W->scale)[i];
  }
}

/* compressed-tensors: w = (u - 8 - zp) * scale, zp packed along rows (spec §6.2). */
static void int4_row(const mimo_linear *W, int r, int k0, int n, float *dst) {
  const int groups = W->in / W->group, words = W->in / 8;
  const uint32_t *row = W->packed + (size_t)r * words;
  for (int k = k0; k < k0 + n; k += 8) {
    int g = k / W->group;
    float s = scale_at(W, (size_t)r * groups + g);
    int zp = 0;
    if (W->zero)
      zp = (int)((W->zero[(size_t)(r / 8) * groups + g] >> (4 * (r % 8))) & 15u) - 8;
    float off = (float)(8 + zp);
    uint32_t word = row[k / 8];
    float *d = dst + (k - k0);
    for (int j = 0; j < 8; j++)
      d[j] = ((float)((word >> (4 * j)) & 15u) - off) * s;
  }
}

void cpu_linear_row(const mimo_linear *W, int r, int k0, int n, float *dst) {
  if (W->fmt == MIMO_WF_INT4) {
    int4_row(W, r, k0, n, dst);
    return;
  }
  size_t base = (size_t)r * W->in + k0;
  switch (W->dt) {
  case MIMO_DT_BF16: {
    const uint16_t *s = (const uint16_t *)W->w + base;
    for (int i = 0; i < n; i++) {
      uint32_t u = (uint32_t)s[i] << 16;
      memcpy(&dst[i], &u, 4);
    }
    break;
  }
  case MIMO_DT_F16: {
    const uint16_t *s = (const uint16_t *)W->w + base;
    for (int i = 0; i < n; i++)
      dst[i] = mimo_f16_to_f32(s[i]);
    break;
  }
  default: memcpy(dst, (const float *)W->w + base, (size_t)n * sizeof(float)); break;
  }
}

static inline float dot(const float *a, const float *b, int n) {
  float acc[16] = {0};
  int i = 0;
  for (; i + 16 <= n; i += 16)
    for (int j = 0; j < 16; j++)
      acc[j] += a[i + j] * b[i + j];
  float s = 0;
  for (; i < n; i++)
    s += a[i] * b[i];
  for (int j = 0; j < 16; j++)
    s += acc[j];
  return s;
}

typedef struct {
  float *y;
  const float *x;
  int T;
  const mimo_linear *W;
} lin_job;

static void lin_rows(void *ctx, long rb, long re) {
  lin_job *j = ctx;
  const mimo_linear *W = j->W;
  float wbuf[ROWS][KC];
  float acc[TT][ROWS];
  for (long r0 = rb; r0 < re; r0 += ROWS) {
    int nr = re - r0 < ROWS ? (int)(re - r0) : ROWS;
    for (int t0 = 0; t0 < j->T; t0 += TT) {
      int nt = j->T - t0 < TT ? j->T - t0 : TT;
      memset(acc, 0, sizeof acc);
      for (int k0 = 0; k0 < W->in; k0 += KC) {
        int nk = W->in - k0 < KC ? W->in - k0 : KC;
        for (int r = 0; r < nr; r++)
          cpu_linear_row(W, (int)r0 + r, k0, nk, wbuf[r]);
        for (int t = 0; t < nt; t++) {
          const float *xt = j->x + (size_t)(t0 + t) * W->in + k0;
          for (int r = 0; r < nr; r++)
            acc[t][r] += dot(xt, wbuf[r], nk);
        }
      }
      for (int t = 0; t < nt; t++)
        for (int r = 0; r < nr; r++)
          j->y[(size_t)(t0 + t) * W->out + r0 + r] = acc[t][r];
    }
  }
}

void cpu_linear(mimo_backend *be, float *y, const float *x, int T, const mimo_linear *W) {
  MIMO_ASSERT(W->fmt != MIMO_WF_INT4 || (W->in % 8 == 0 && W->group % 8 == 0 && KC % 8 == 0));
  lin_job j = {y, x, T, W};
  mimo_parallel_for(cpu_pool(be), W->out, ROWS * 4, lin_rows, &j);
}
