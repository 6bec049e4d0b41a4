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

#define GMAX 16   /* blocks per row at most (a thread block cluster: the largest size Hopper allows) */
#define SORTN 4096 /* candidates a selection sorts instead of walking key digits over the row (bin_select) */
#define NLIN 2048  /* linear bins of a selection's first pass: one histogram over the copies' storage */

typedef struct sshared {
  int xpar;                       /* the exchange slot in use */
  unsigned long long xw[2][2]; /* exchange slots (two, used in turn: see group_reduce) */
  unsigned long long xg[GMAX][2]; /* the group's slot values, fetched once for the whole block */
  union { /* the histograms, or a selection's candidates once the histogram that found their bin is read */
    struct {
      unsigned long long massfx[HCOPIES][256];
      unsigned hist[HCOPIES][256];
    };
    unsigned long long cand[SORTN]; /* (~key << 32 | id): ascending = value desc, then id asc */
  };
  unsigned long long red_u[32];
  double red_d[32];
  float red_f[32];
  int red_i[32];
  unsigned bcast_u;
  int bcast_i;
  double bcast_d, bcast_t;
  unsigned long long bcast_w;
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
  float lo, scale; /* lb >= 0: only values in linear bin lb of [lo, lo + NLIN / scale] (see lin_first) */
  int lb;
  __device__ __forceinline__ int lin_bin(float v) const { return min(NLIN - 1, max(0, (int)((v - lo) * scale))); }
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

/* ---- a row's group: with few rows, each row is split over a cluster of G blocks (SM90), which meet through
 * distributed shared memory at cluster barriers. With G = 1 (one block per row, and always below SM90) none of
 * the cluster instructions runs. Every decision a block takes depends only on values the whole group agrees on
 * (integer sums, or reductions combined in rank order), so the blocks take the same path and meet at the same
 * barriers. ---- */
/* This block's rank in its row's group and the group's size: the cluster's (1 and 0 without one). */
__device__ __forceinline__ int grp_size() {
  unsigned n = 1;
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm("mov.u32 %0, %%cluster_nctarank;\n" : "=r"(n));
#endif
  return (int)n;
}
__device__ __forceinline__ int grp_rank() {
  unsigned r = 0;
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm("mov.u32 %0, %%cluster_ctarank;\n" : "=r"(r));
#endif
  return (int)r;
}
__device__ __forceinline__ void cl_sync() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("barrier.cluster.arrive.release.aligned;\n\tbarrier.cluster.wait.acquire.aligned;\n" ::: "memory");
#else
  __trap();
#endif
}
/* p (this block's shared memory) as rank r's copy of it in the cluster's shared window */
__device__ __forceinline__ uint32_t cl_addr(const void *p, int r) {
  uint32_t d = 0;
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("mapa.shared::cluster.u32 %0, %1, %2;\n" : "=r"(d) : "r"((uint32_t)__cvta_generic_to_shared(p)), "r"(r));
#endif
  return d;
}
__device__ __forceinline__ unsigned long long cl_ld64(uint32_t a) {
  unsigned long long v = 0;
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("ld.shared::cluster.u64 %0, [%1];\n" : "=l"(v) : "r"(a) : "memory");
#endif
  return v;
}
__device__ __forceinline__ unsigned cl_ld32(uint32_t a) {
  unsigned v = 0;
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("ld.shared::cluster.u32 %0, [%1];\n" : "=r"(v) : "r"(a) : "memory");
#endif
  return v;
}
__device__ __forceinline__ void cl_st32(uint32_t a, unsigned v) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("st.shared::cluster.u32 [%0], %1;\n" ::"r"(a), "r"(v) : "memory");
#endif
}

/* Publishes this block's pair (w0, w1) (thread 0's) and fetches every rank's into sh->xg, in rank order. Two slots
 * used in turn make one barrier enough: a block writes a slot again two exchanges later, when everyone has passed
 * the barrier of the exchange between, so nobody still reads it. */
__device__ void group_exchange(unsigned long long w0, unsigned long long w1, sshared *sh) {
  const int p = sh->xpar;
  if (threadIdx.x == 0) {
    sh->xw[p][0] = w0;
    sh->xw[p][1] = w1;
  }
  cl_sync();
  if ((int)threadIdx.x < 2 * grp_size()) {
    const int r = threadIdx.x >> 1, k = threadIdx.x & 1;
    sh->xg[r][k] = cl_ld64(cl_addr(&sh->xw[p][k], r));
  }
  __syncthreads();
  if (threadIdx.x == 0)
    sh->xpar = p ^ 1; /* every thread read p before the barrier; the next exchange reads it after a __syncthreads */
}

template <typename T> __device__ __forceinline__ unsigned long long to_word(T v) {
  unsigned long long w = 0;
  memcpy(&w, &v, sizeof v);
  return w;
}
template <typename T> __device__ __forceinline__ T of_word(unsigned long long w) {
  T v;
  memcpy(&v, &w, sizeof v);
  return v;
}

/* ---- passes over a row: SB loads in flight per thread before any is used, so a thread does not wait one L2
 * round trip per element (measured: greedy 44 -> 36 us per 152k-logit row; the passes are mostly bound by
 * instructions, not latency) ---- */
#define SB 8

/* f(i, x[i]) for every i in [0, L), SNT-strided (coalesced). */
template <typename F> __device__ __forceinline__ void row_pass(const float *x, int L, F f) {
  const int G = grp_size(), step = SNT * G;
  for (int base = grp_rank() * SNT + threadIdx.x; base < L; base += SB * step) {
    float xv[SB];
#pragma unroll
    for (int u = 0; u < SB; u++)
      xv[u] = base + u * step < L ? x[base + u * step] : 0.0f;
#pragma unroll
    for (int u = 0; u < SB; u++)
      if (base + u * step < L)
        f(base + u * step, xv[u]);
  }
}

/* The same with every lane of a warp calling f(i, x[i], valid) together (for warp-wide steps inside f). */
template <typename F> __device__ __forceinline__ void row_pass_warp(const float *x, int L, F f) {
  const int lane = threadIdx.x & 31, step = SNT * grp_size();
  for (int wb = grp_rank() * SNT + (threadIdx.x & ~31); wb < L; wb += SB * step) {
    float xv[SB];
#pragma unroll
    for (int u = 0; u < SB; u++)
      xv[u] = wb + u * step + lane < L ? x[wb + u * step + lane] : 0.0f;
#pragma unroll
    for (int u = 0; u < SB; u++)
      if (wb + u * step < L) /* uniform in the warp */
        f(wb + u * step + lane, xv[u], wb + u * step + lane < L);
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

/* ---- the same over the row's group (the block's value when G = 1); combined in rank order ---- */
template <typename T, typename Op> __device__ T group_reduce(T v, T *red, sshared *sh, Op op) {
  T b = block_reduce<T>(v, red, op);
  const int G = grp_size();
  if (G == 1)
    return b;
  group_exchange(to_word(b), 0, sh);
  T r = of_word<T>(sh->xg[0][0]);
  for (int k = 1; k < G; k++)
    r = op(r, of_word<T>(sh->xg[k][0]));
  return r;
}
__device__ double group_sum(double v, sshared *sh) {
  return group_reduce<double>(v, sh->red_d, sh, [](double a, double b) { return a + b; });
}
__device__ int group_sum_int(int v, sshared *sh) {
  return group_reduce<int>(v, sh->red_i, sh, [](int a, int b) { return a + b; });
}
__device__ int group_min_int(int v, sshared *sh) {
  return group_reduce<int>(v, sh->red_i, sh, [](int a, int b) { return min(a, b); });
}
__device__ int group_max_int(int v, sshared *sh) {
  return group_reduce<int>(v, sh->red_i, sh, [](int a, int b) { return max(a, b); });
}
__device__ float group_max(float v, sshared *sh) {
  return group_reduce<float>(v, sh->red_f, sh, [](float a, float b) { return fmaxf(a, b); });
}
__device__ void group_argmax(float &v, int &id, sshared *sh) {
  block_argmax(v, id, sh);
  const int G = grp_size();
  if (G == 1)
    return;
  group_exchange(to_word(v), (unsigned long long)(unsigned)id, sh);
  for (int k = 0; k < G; k++) {
    const float ov = of_word<float>(sh->xg[k][0]);
    const int oi = (int)(unsigned)sh->xg[k][1];
    if (k == 0 || ov > v || (ov == v && oi < id))
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
/* The same over the group's threads, rank by rank; *total (if given) gets the sum over the group. */
template <typename T> __device__ T group_exscan(T v, T *red, sshared *sh, T *total = NULL) {
  const T pre = block_exscan<T>(v, red);
  const int G = grp_size();
  if (G == 1 && !total)
    return pre;
  const T tot = block_reduce<T>(v, red, [](T a, T b) { return a + b; });
  if (G == 1)
    return *total = tot, pre;
  group_exchange(to_word(tot), 0, sh);
  T base = 0, all = 0;
  for (int k = 0; k < G; k++) {
    const T t = of_word<T>(sh->xg[k][0]);
    base += k < grp_rank() ? t : 0;
    all += t;
  }
  if (total)
    *total = all;
  return base + pre;
}

/* The group's count of counted ids and their values' range (r->x min, r->y max) in one exchange. */
__device__ int group_count_range(int n, float2 *r, sshared *sh) {
  n = block_reduce<int>(n, sh->red_i, [](int a, int b) { return a + b; });
  float lo = -block_reduce<float>(-r->x, sh->red_f, [](float a, float b) { return fmaxf(a, b); });
  float hi = block_reduce<float>(r->y, sh->red_f, [](float a, float b) { return fmaxf(a, b); });
  const int G = grp_size();
  if (G > 1) {
    group_exchange((unsigned long long)(unsigned)n | (unsigned long long)__float_as_uint(lo) << 32,
                   (unsigned long long)__float_as_uint(hi), sh);
    n = 0;
    for (int k = 0; k < G; k++) {
      n += (int)(unsigned)sh->xg[k][0];
      lo = fminf(lo, __uint_as_float((unsigned)(sh->xg[k][0] >> 32)));
      hi = fmaxf(hi, __uint_as_float((unsigned)sh->xg[k][1]));
    }
  }
  r->x = lo;
  r->y = hi;
  return n;
}
#endif
