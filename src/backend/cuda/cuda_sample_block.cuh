/* The device sampler's building blocks (cuda_sample.cu includes this once): the job and result records, the
 * block's shared memory, order-preserving keys, the view of a row that the filters leave, passes over a row, and
 * block-wide reductions and scans. */
#ifndef MIMO_BACKEND_CUDA_SAMPLE_BLOCK_CUH
#define MIMO_BACKEND_CUDA_SAMPLE_BLOCK_CUH
#include <float.h>
#include <limits.h>
#include <math.h>

#include "backend/cuda/cuda_internal.h"

#define SNT 1024         /* threads per row */
#define GREEDY_EPS 1e-5f /* as engine/sampler.c */

typedef struct sjob {
  int row, top_k, limit, pen0, n_pen, logprobs, processed, raw; /* raw: row of the raw copy, -1 none */
  float temperature, top_p, min_p, rep, presence, frequency;
  double u;
} sjob;

typedef struct sout {
  int token, n_top;
  float logprob;
  int top_id[MIMO_MAX_LOGPROBS];
  float top_lp[MIMO_MAX_LOGPROBS];
} sout;

#define HCOPIES 8 /* radix histograms: warp w adds into copy w % HCOPIES (hot bins otherwise serialise 32 warps) */

typedef struct sshared {
  unsigned hist[HCOPIES][256];
  unsigned long long massfx[HCOPIES][256];
  double red_d[32];
  float red_f[32];
  int red_i[32];
  unsigned bcast_u;
  int bcast_i;
  double bcast_d;
  int n_sel;
  int sel_id[MIMO_MAX_LOGPROBS];
  float sel_v[MIMO_MAX_LOGPROBS];
  int n_cmp;             /* the compact path's candidates (at most SNT) */
  float cv[SNT];
  int cid[SNT];
} sshared;

/* Larger float, larger key (NaN never reaches here). */
__device__ __forceinline__ uint32_t okey(float v) {
  const uint32_t b = __float_as_uint(v);
  return b & 0x80000000u ? ~b : b | 0x80000000u;
}
__device__ __forceinline__ float key_value(uint32_t k) {
  return __uint_as_float(k & 0x80000000u ? k & 0x7fffffffu : ~k);
}

__device__ __forceinline__ float sanitize(float x) {
  if (isnan(x))
    return -INFINITY;
  return x == INFINITY ? FLT_MAX : x;
}

/* The values a step looks at and which ids count. mode 0: x itself, ids with x > -inf. mode 1 (sampling):
 * v = (x - m) / T, ids with v > -inf and v >= log(min_p) that pass the top-k cut (key > kk, or = kk and
 * id <= kcut) and the top-p cut (likewise). */
struct sview {
  const float *x;
  int mode;
  float m, inv_t, min_log;
  uint32_t kk, pk;
  int kcut, pcut;
  float lo, scale; /* lb >= 0: only values in linear bin lb of [lo, lo + 256 / scale] (see lin_first) */
  int lb;
  __device__ __forceinline__ int lin_bin(float v) const { return min(255, max(0, (int)((v - lo) * scale))); }
  /* whether id i, whose logit is xi, counts; its value v and key */
  __device__ __forceinline__ bool test(int i, float xi, float &v, uint32_t &key) const {
    v = mode ? (xi - m) * inv_t : xi;
    if (!(v > -INFINITY) || (mode && !(v >= min_log)))
      return false;
    if (lb >= 0 && lin_bin(v) != lb)
      return false;
    key = okey(v);
    return (key > kk || (key == kk && i <= kcut)) && (key > pk || (key == pk && i <= pcut));
  }
};

__device__ __forceinline__ sview view_all(const float *x) {
  sview s;
  s.x = x;
  s.mode = 0;
  s.m = 0;
  s.inv_t = 1;
  s.min_log = -INFINITY;
  s.kk = s.pk = 0;
  s.kcut = s.pcut = INT_MAX;
  s.lo = 0;
  s.scale = 0;
  s.lb = -1;
  return s;
}

/* ---- passes over a row: SB loads in flight per thread before any is used, so a thread does not wait one L2
 * round trip per element (measured: greedy 44 -> 36 us per 152k-logit row; the passes are mostly bound by
 * instructions, not latency) ---- */
#define SB 8

/* f(i, x[i]) for every i in [0, L), SNT-strided (coalesced). */
template <typename F> __device__ __forceinline__ void row_pass(const float *x, int L, F f) {
  for (int base = threadIdx.x; base < L; base += SB * SNT) {
    float xv[SB];
#pragma unroll
    for (int u = 0; u < SB; u++)
      xv[u] = base + u * SNT < L ? x[base + u * SNT] : 0.0f;
#pragma unroll
    for (int u = 0; u < SB; u++)
      if (base + u * SNT < L)
        f(base + u * SNT, xv[u]);
  }
}

/* The same with every lane of a warp calling f(i, x[i], valid) together (for warp-wide steps inside f). */
template <typename F> __device__ __forceinline__ void row_pass_warp(const float *x, int L, F f) {
  const int lane = threadIdx.x & 31;
  for (int wb = threadIdx.x & ~31; wb < L; wb += SB * SNT) {
    float xv[SB];
#pragma unroll
    for (int u = 0; u < SB; u++)
      xv[u] = wb + u * SNT + lane < L ? x[wb + u * SNT + lane] : 0.0f;
#pragma unroll
    for (int u = 0; u < SB; u++)
      if (wb + u * SNT < L) /* uniform in the warp */
        f(wb + u * SNT + lane, xv[u], wb + u * SNT + lane < L);
  }
}

/* f(i, x[i]) in order over [c0, c1) until it returns true. */
template <typename F> __device__ __forceinline__ void chunk_pass(const float *x, int c0, int c1, F f) {
  for (int b = c0; b < c1; b += SB) {
    float xv[SB];
#pragma unroll
    for (int u = 0; u < SB; u++)
      xv[u] = b + u < c1 ? x[b + u] : 0.0f;
#pragma unroll
    for (int u = 0; u < SB; u++)
      if (b + u < c1 && f(b + u, xv[u]))
        return;
  }
}

/* ---- block-wide reductions and scans (every thread gets the result; fixed order, so reproducible) ---- */

/* op over every thread's v (op associative and commutative). */
template <typename T, typename Op> __device__ T block_reduce(T v, T *red, Op op) {
  for (int o = 16; o; o >>= 1)
    v = op(v, __shfl_xor_sync(~0u, v, o));
  __syncthreads();
  if ((threadIdx.x & 31) == 0)
    red[threadIdx.x >> 5] = v;
  __syncthreads();
  v = red[threadIdx.x & 31];
  for (int o = 16; o; o >>= 1)
    v = op(v, __shfl_xor_sync(~0u, v, o));
  return v;
}
__device__ double block_sum(double v, sshared *sh) {
  return block_reduce<double>(v, sh->red_d, [](double a, double b) { return a + b; });
}
__device__ int block_sum_int(int v, sshared *sh) {
  return block_reduce<int>(v, sh->red_i, [](int a, int b) { return a + b; });
}
__device__ int block_min_int(int v, sshared *sh) {
  return block_reduce<int>(v, sh->red_i, [](int a, int b) { return min(a, b); });
}
__device__ int block_max_int(int v, sshared *sh) {
  return block_reduce<int>(v, sh->red_i, [](int a, int b) { return max(a, b); });
}
__device__ float block_max(float v, sshared *sh) {
  return block_reduce<float>(v, sh->red_f, [](float a, float b) { return fmaxf(a, b); });
}

/* The best (value desc, id asc) over the block; id INT_MAX when no thread has one. */
__device__ void block_argmax(float &v, int &id, sshared *sh) {
  for (int o = 16; o; o >>= 1) {
    const float ov = __shfl_xor_sync(~0u, v, o);
    const int oi = __shfl_xor_sync(~0u, id, o);
    if (ov > v || (ov == v && oi < id))
      v = ov, id = oi;
  }
  __syncthreads();
  if ((threadIdx.x & 31) == 0) {
    sh->red_f[threadIdx.x >> 5] = v;
    sh->red_i[threadIdx.x >> 5] = id;
  }
  __syncthreads();
  v = sh->red_f[threadIdx.x & 31];
  id = sh->red_i[threadIdx.x & 31];
  for (int o = 16; o; o >>= 1) {
    const float ov = __shfl_xor_sync(~0u, v, o);
    const int oi = __shfl_xor_sync(~0u, id, o);
    if (ov > v || (ov == v && oi < id))
      v = ov, id = oi;
  }
}

/* Exclusive prefix over threads in thread order. */
template <typename T> __device__ T block_exscan(T v, T *red) {
  const int l = threadIdx.x & 31, w = threadIdx.x >> 5;
  T x = v;
  for (int o = 1; o < 32; o <<= 1) {
    const T y = __shfl_up_sync(~0u, x, o);
    if (l >= o)
      x += y;
  }
  __syncthreads();
  if (l == 31)
    red[w] = x;
  __syncthreads();
  T base = 0;
  for (int i = 0; i < w; i++)
    base += red[i];
  return base + x - v;
}
#endif
