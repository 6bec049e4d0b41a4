/* y[T][out] = x[T][in] · Wᵀ for dense (f32/bf16/f16) and int4 pack-quantized W.
 *
 * Decode (T <= SMALL_T) reads each weight once and multiplies straight from its
 * storage format: memory-bound, so the inner loops are AVX2 where available.
 * Larger T decodes a tile of rows into a stack buffer (int4 stays int4 in memory)
 * and reuses it for a tile of tokens. For int4 the scale and offset are factored
 * out of each group: Σ_c (u_c − o)·s·x_c = s·(Σ_c u_c·x_c − o·Σ_c x_c). */
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/cpu.h"
#include "core/num.h"

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define MIMO_AVX2 1
#endif

enum { ROWS = 4, KC = 512, TT = 32, SMALL_T = 4 };

static inline float scale_at(const mimo_linear *W, size_t i) {
  switch (W->scale_dt) {
  case MIMO_DT_BF16: return mimo_bf16_to_f32(((const uint16_t *)W->scale)[i]);
  case MIMO_DT_F16: return mimo_f16_to_f32(((const uint16_t *)W->scale)[i]);
  default: return ((const float *)W->scale)[i];
  }
}

/* Offset o = 8 + zero point of (row r, group g); spec §6.2. */
static inline float int4_offset(const mimo_linear *W, int r, int g, int groups) {
  if (!W->zero)
    return 8.0f;
  return (float)((W->zero[(size_t)(r / 8) * groups + g] >> (4 * (r % 8))) & 15u);
}

static void int4_row(const mimo_linear *W, int r, int k0, int n, float *dst) {
  const int groups = W->in / W->group, words = W->in / 8;
  const uint32_t *row = W->packed + (size_t)r * words;
  for (int k = k0; k < k0 + n; k += 8) {
    int g = k / W->group;
    float s = scale_at(W, (size_t)r * groups + g), off = int4_offset(W, r, g, groups);
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
    int i = 0;
#ifdef MIMO_AVX2
    for (; i + 8 <= n; i += 8) {
      __m256i v = _mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(s + i))), 16);
      _mm256_storeu_ps(dst + i, _mm256_castsi256_ps(v));
    }
#endif
    for (; i < n; i++)
      dst[i] = mimo_bf16_to_f32(s[i]);
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
  int i = 0;
  float s = 0;
#ifdef MIMO_AVX2
  __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
  for (; i + 16 <= n; i += 16) {
    a0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), a0);
    a1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), a1);
  }
  float t[8];
  _mm256_storeu_ps(t, _mm256_add_ps(a0, a1));
  for (int j = 0; j < 8; j++)
    s += t[j];
#endif
  for (; i < n; i++)
    s += a[i] * b[i];
  return s;
}

typedef struct {
  float *y;
  const float *x;
  int T;
  const mimo_linear *W;
  const float *xsum; /* int4 small-T path: [T][groups] sums of x over each group */
} lin_job;

#ifdef MIMO_AVX2
static inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
  return _mm_cvtss_f32(s);
}

static inline __m256 bf16x8(const uint16_t *p) {
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p)), 16));
}

/* One bf16 row against T <= SMALL_T tokens, reading the row once. */
static void row_bf16_small(const lin_job *j, int r, float *out) {
  const mimo_linear *W = j->W;
  const uint16_t *w = (const uint16_t *)W->w + (size_t)r * W->in;
  if (j->T == 1) { /* four independent FMA chains hide the FMA latency */
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    const float *x = j->x;
    int k = 0;
    for (; k + 32 <= W->in; k += 32) {
      a0 = _mm256_fmadd_ps(bf16x8(w + k), _mm256_loadu_ps(x + k), a0);
      a1 = _mm256_fmadd_ps(bf16x8(w + k + 8), _mm256_loadu_ps(x + k + 8), a1);
      a2 = _mm256_fmadd_ps(bf16x8(w + k + 16), _mm256_loadu_ps(x + k + 16), a2);
      a3 = _mm256_fmadd_ps(bf16x8(w + k + 24), _mm256_loadu_ps(x + k + 24), a3);
    }
    float s = hsum(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
    for (; k < W->in; k++)
      s += mimo_bf16_to_f32(w[k]) * x[k];
    out[0] = s;
    return;
  }
  __m256 acc[SMALL_T];
  for (int t = 0; t < j->T; t++)
    acc[t] = _mm256_setzero_ps();
  int k = 0;
  for (; k + 8 <= W->in; k += 8) {
    __m256 wv = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(w + k))), 16));
    for (int t = 0; t < j->T; t++)
      acc[t] = _mm256_fmadd_ps(wv, _mm256_loadu_ps(j->x + (size_t)t * W->in + k), acc[t]);
  }
  for (int t = 0; t < j->T; t++) {
    float s = hsum(acc[t]);
    for (int kk = k; kk < W->in; kk++)
      s += mimo_bf16_to_f32(w[kk]) * j->x[(size_t)t * W->in + kk];
    out[t] = s;
  }
}

/* One int4 row: per group, Σ u·x with u the raw nibble, then s·(that − o·Σx). */
static void row_int4_small(const lin_job *j, int r, float *out) {
  const mimo_linear *W = j->W;
  const int groups = W->in / W->group, words = W->in / 8, wpg = W->group / 8;
  const uint32_t *row = W->packed + (size_t)r * words;
  const __m256i shifts = _mm256_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28), mask = _mm256_set1_epi32(15);
  float res[SMALL_T] = {0};
  if (j->T == 1) { /* accumulators stay in registers; two chains per group */
    const float *x = j->x;
    for (int g = 0; g < groups; g++) {
      __m256 a0 = _mm256_setzero_ps(), a1 = a0;
      int wi = g * wpg, we = (g + 1) * wpg;
      for (; wi + 2 <= we; wi += 2) {
        __m256i u0 = _mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32((int)row[wi]), shifts), mask);
        __m256i u1 = _mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32((int)row[wi + 1]), shifts), mask);
        a0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(u0), _mm256_loadu_ps(x + wi * 8), a0);
        a1 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(u1), _mm256_loadu_ps(x + wi * 8 + 8), a1);
      }
      for (; wi < we; wi++) {
        __m256i u0 = _mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32((int)row[wi]), shifts), mask);
        a0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(u0), _mm256_loadu_ps(x + wi * 8), a0);
      }
      float s = scale_at(W, (size_t)r * groups + g), off = int4_offset(W, r, g, groups);
      res[0] += s * (hsum(_mm256_add_ps(a0, a1)) - off * j->xsum[g]);
    }
    out[0] = res[0];
    return;
  }
  for (int g = 0; g < groups; g++) {
    __m256 acc[SMALL_T];
    for (int t = 0; t < j->T; t++)
      acc[t] = _mm256_setzero_ps();
    for (int wi = g * wpg; wi < (g + 1) * wpg; wi++) {
      __m256i u = _mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32((int)row[wi]), shifts), mask);
      __m256 uf = _mm256_cvtepi32_ps(u);
      for (int t = 0; t < j->T; t++)
        acc[t] = _mm256_fmadd_ps(uf, _mm256_loadu_ps(j->x + (size_t)t * W->in + wi * 8), acc[t]);
    }
    float s = scale_at(W, (size_t)r * groups + g), off = int4_offset(W, r, g, groups);
    for (int t = 0; t < j->T; t++)
      res[t] += s * (hsum(acc[t]) - off * j->xsum[(size_t)t * groups + g]);
  }
  for (int t = 0; t < j->T; t++)
    out[t] = res[t];
}

static void lin_rows_small(void *ctx, long rb, long re) {
  lin_job *j = ctx;
  float out[SMALL_T];
  for (long r = rb; r < re; r++) {
    if (j->W->fmt == MIMO_WF_INT4)
      row_int4_small(j, (int)r, out);
    else
      row_bf16_small(j, (int)r, out);
    for (int t = 0; t < j->T; t++)
      j->y[(size_t)t * j->W->out + r] = out[t];
  }
}
#endif

#ifdef MIMO_AVX2
/* acc[t][r] += x_t · w_r for two tokens and four decoded rows at once: six loads
 * feed eight FMAs (a lone dot product loads twice per FMA). n % 8 == 0. */
static void tile_2x4(const float *x0, const float *x1, float (*w)[KC], int n, float *acc0, float *acc1) {
  __m256 a00 = _mm256_setzero_ps(), a01 = a00, a02 = a00, a03 = a00, a10 = a00, a11 = a00, a12 = a00, a13 = a00;
  for (int k = 0; k < n; k += 8) {
    __m256 v0 = _mm256_loadu_ps(x0 + k), v1 = _mm256_loadu_ps(x1 + k);
    __m256 w0 = _mm256_loadu_ps(w[0] + k), w1 = _mm256_loadu_ps(w[1] + k), w2 = _mm256_loadu_ps(w[2] + k),
           w3 = _mm256_loadu_ps(w[3] + k);
    a00 = _mm256_fmadd_ps(v0, w0, a00);
    a01 = _mm256_fmadd_ps(v0, w1, a01);
    a02 = _mm256_fmadd_ps(v0, w2, a02);
    a03 = _mm256_fmadd_ps(v0, w3, a03);
    a10 = _mm256_fmadd_ps(v1, w0, a10);
    a11 = _mm256_fmadd_ps(v1, w1, a11);
    a12 = _mm256_fmadd_ps(v1, w2, a12);
    a13 = _mm256_fmadd_ps(v1, w3, a13);
  }
  acc0[0] += hsum(a00);
  acc0[1] += hsum(a01);
  acc0[2] += hsum(a02);
  acc0[3] += hsum(a03);
  acc1[0] += hsum(a10);
  acc1[1] += hsum(a11);
  acc1[2] += hsum(a12);
  acc1[3] += hsum(a13);
}
#endif

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
        int t = 0;
#ifdef MIMO_AVX2
        if (nr == ROWS && nk % 8 == 0)
          for (; t + 2 <= nt; t += 2)
            tile_2x4(j->x + (size_t)(t0 + t) * W->in + k0, j->x + (size_t)(t0 + t + 1) * W->in + k0, wbuf, nk,
                     acc[t], acc[t + 1]);
#endif
        for (; t < nt; t++) {
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
  MIMO_ASSERT(W->fmt != MIMO_WF_INT4 || (W->in % 8 == 0 && W->group % 8 == 0));
  lin_job j = {y, x, T, W, NULL};
#ifdef MIMO_AVX2
  int small = T <= SMALL_T && (W->fmt == MIMO_WF_INT4 || W->dt == MIMO_DT_BF16);
  float *xsum = NULL;
  if (small && W->fmt == MIMO_WF_INT4) {
    int groups = W->in / W->group;
    xsum = malloc((size_t)T * groups * sizeof *xsum);
    MIMO_ASSERT(xsum);
    for (int t = 0; t < T; t++)
      for (int g = 0; g < groups; g++) {
        float s = 0;
        for (int c = g * W->group; c < (g + 1) * W->group; c++)
          s += x[(size_t)t * W->in + c];
        xsum[(size_t)t * groups + g] = s;
      }
    j.xsum = xsum;
  }
  if (small) {
    mimo_parallel_for(cpu_pool(be), W->out, 16, lin_rows_small, &j);
    free(xsum);
    return;
  }
#endif
  mimo_parallel_for(cpu_pool(be), W->out, ROWS * 4, lin_rows, &j);
}
