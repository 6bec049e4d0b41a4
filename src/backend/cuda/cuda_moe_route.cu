/* MoE routing on the GPU: sigmoid scores, top-k on score + correction bias (ties keep the lower expert id),
 * weights = the unbiased scores of the chosen experts, renormalised on request, times the scaling factor.
 *
 * Two ways to get there, same selection rule and the same weight arithmetic:
 * - k_route after the router GEMV (any T, any E): one warp per token, k serial arg-max passes over shared memory.
 * - k_router_route for decode (T ≤ RT_TMAX, E ≤ RT_EMAX, fp32 router): the router GEMV and the routing in one
 *   launch. At one token the separate pair took ~18 µs on an H200 for a 4 MB read (1 µs of bandwidth): the GEMV
 *   ran 8.9 µs on 256 short rows and the one-warp routing 9.3 µs of dependent shared-memory and shuffle latency.
 *   Here block (8 rows, quarter of H) writes partial sums; the last block to finish (a counter in device memory,
 *   reset by that block) adds the four quarters in a fixed order and routes each token in one warp with the
 *   scores held in registers. Under dependent launch (SM90) one token takes the separate pair again (cu_moe_route). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cuda/cuda_internal.h"

__global__ void k_route(const float *z, const float *bias, int E, int K, int norm, float scaling, int *sel,
                        float *wts) {
  extern __shared__ float sm[]; /* s[E], choice[E] */
  float *s = sm, *ch = sm + E;
  pdl_start();
  const int t = blockIdx.x, lane = threadIdx.x;
  for (int e = lane; e < E; e += 32) {
    float v = 1.0f / (1.0f + expf(-z[(size_t)t * E + e]));
    s[e] = v;
    ch[e] = v + (bias ? bias[e] : 0.f);
  }
  __syncwarp();
  float sum = 0.f;
  for (int k = 0; k < K; k++) {
    float bv = -INFINITY;
    int bi = 0x7fffffff;
    for (int e = lane; e < E; e += 32)
      if (ch[e] > bv) { /* ascending e: ties keep the lower index */
        bv = ch[e];
        bi = e;
      }
    for (int o = 16; o > 0; o >>= 1) {
      float ov = __shfl_xor_sync(0xffffffffu, bv, o);
      int oi = __shfl_xor_sync(0xffffffffu, bi, o);
      if (ov > bv || (ov == bv && oi < bi)) {
        bv = ov;
        bi = oi;
      }
    }
    if (lane == 0) {
      sel[t * K + k] = bi;
      ch[bi] = -INFINITY;
    }
    sum += s[bi];
    __syncwarp();
  }
  if (lane < K) {
    float w = s[sel[t * K + lane]];
    if (norm)
      w /= sum + 1e-20f;
    wts[t * K + lane] = w * scaling;
  }
}

enum { RT_WARPS = 8, RT_PARTS = 4, RT_TMAX = 8, RT_EMAX = 256, RT_J = RT_EMAX / 32, RT_LD = 8 };

/* Float order as unsigned order (after -0 became +0 and NaN -inf), for the warp-wide max in one instruction. */
__device__ __forceinline__ unsigned rt_key(float f) {
  const unsigned u = __float_as_uint(f);
  return u & 0x80000000u ? ~u : u | 0x80000000u;
}

/* Routes token t in one warp from the partial scores zp (read once): lane holds experts lane + 32j. Each of the
 * k passes is a scan of 8 registers, a warp max (redux) of the best keys, a warp min of the expert ids holding
 * it (ties keep the lower id) and one shuffle for its score: no shared memory, ~4 dependent warp operations. */
__device__ __forceinline__ void route_warp(const float *zp, int T, int t, const float *bias, int E, int K, int norm,
                                           float scaling, int *sel, float *wts, int lane) {
  float s[RT_J];
  unsigned key[RT_J];
#pragma unroll
  for (int j = 0; j < RT_J; j++) {
    const int e = lane + 32 * j;
    s[j] = 0.f;
    key[j] = 0u; /* below every real score: never chosen before one */
    if (e < E) {
      float z = 0.f;
#pragma unroll
      for (int p = 0; p < RT_PARTS; p++) /* fixed order: the same sum whichever block finished last */
        z += __ldcg(zp + ((size_t)p * T + t) * E + e);
      s[j] = 1.0f / (1.0f + expf(-z));
      const float c = s[j] + (bias ? __ldg(bias + e) : 0.f);
      key[j] = rt_key(c == c ? c + 0.0f : -INFINITY); /* NaN ranks last; -0 counts as +0 */
    }
  }
  float sum = 0.f, my_s = 0.f;
  int my_e = 0;
  unsigned taken = 0u;
  for (int k = 0; k < K; k++) {
    unsigned bk = 0u;
    float bs = 0.f;
    int bj = -1;
#pragma unroll
    for (int j = 0; j < RT_J; j++) /* ascending expert id: ties keep the lower one */
      if (!(taken >> j & 1u) && (key[j] > bk || (bj < 0 && lane + 32 * j < E))) {
        bk = key[j];
        bs = s[j];
        bj = j;
      }
    const unsigned mx = __reduce_max_sync(0xffffffffu, bk);
    const unsigned bi = __reduce_min_sync(0xffffffffu, bj >= 0 && bk == mx ? (unsigned)(lane + 32 * bj) : 0xffffffffu);
    bs = __shfl_sync(0xffffffffu, bs, (int)(bi & 31));
    if ((int)(bi & 31) == lane)
      taken |= 1u << (bi >> 5); /* a mask, not a write to key[bi >> 5]: that indexing would put key in local memory */
    if (lane == k) {
      my_e = (int)bi;
      my_s = bs;
    }
    sum += bs;
  }
  if (lane < K) {
    sel[t * K + lane] = my_e;
    float w = my_s;
    if (norm)
      w /= sum + 1e-20f;
    wts[t * K + lane] = w * scaling;
  }
}

/* grid (E / RT_WARPS, RT_PARTS): warp = one router row over a quarter of H for all T tokens; the block's x
 * quarter (T × H/4 floats) is copied to shared memory while the weights load. */
__global__ void __launch_bounds__(RT_WARPS * 32) k_router_route(const float *x, int T, const float *W, int E, int H,
                                                                const float *bias, int K, int norm, float scaling,
                                                                float *zp, unsigned *done, int *sel, float *wts) {
  extern __shared__ float4 xs[]; /* [T][len / 4] */
  __shared__ int last;
  const int lane = threadIdx.x & 31, wp = threadIdx.x >> 5, row = blockIdx.x * RT_WARPS + wp;
  const int len = H / RT_PARTS, k0 = blockIdx.y * len, n4 = len / 4;
  const float *w = W + (size_t)(row < E ? row : 0) * H + k0;
  float4 wv[RT_LD]; /* RT_LD 16-byte weight loads in flight per lane */
  const auto load = [&](int c0) {
#pragma unroll
    for (int u = 0; u < RT_LD; u++) {
      const int i = c0 + lane + 32 * u;
      wv[u] = row < E && i < n4 ? __ldg((const float4 *)w + i) : make_float4(0.f, 0.f, 0.f, 0.f);
    }
  };
  load(0); /* the weights need nothing from the previous kernel (cu_launch) */
  pdl_start();
  for (int i = threadIdx.x; i < T * n4; i += RT_WARPS * 32)
    cp16(xs + i, x + (size_t)(i / n4) * H + k0 + 4 * (i % n4));
  cp_commit();
  cp_wait<0>();
  __syncthreads();
  float acc[RT_TMAX];
#pragma unroll
  for (int t = 0; t < RT_TMAX; t++)
    acc[t] = 0.f;
  for (int c0 = 0; c0 < n4; c0 += 32 * RT_LD) {
    if (c0 > 0)
      load(c0);
#pragma unroll
    for (int t = 0; t < RT_TMAX; t++)
      if (t < T) {
#pragma unroll
        for (int u = 0; u < RT_LD; u++) {
          const int i = c0 + lane + 32 * u;
          if (i < n4) {
            const float4 xv = xs[t * n4 + i];
            acc[t] = fmaf(wv[u].x, xv.x, fmaf(wv[u].y, xv.y, fmaf(wv[u].z, xv.z, fmaf(wv[u].w, xv.w, acc[t]))));
          }
        }
      }
  }
#pragma unroll
  for (int t = 0; t < RT_TMAX; t++)
    if (t < T) {
      const float v = warp_sum(acc[t]);
      if (lane == 0 && row < E)
        zp[((size_t)blockIdx.y * T + t) * E + row] = v;
    }
  __threadfence();
  __syncthreads();
  if (threadIdx.x == 0)
    last = atomicAdd(done, 1u) == gridDim.x * gridDim.y - 1;
  __syncthreads();
  if (!last)
    return;
  __threadfence();
  for (int t = wp; t < T; t += RT_WARPS)
    route_warp(zp, T, t, bias, E, K, norm, scaling, sel, wts, lane);
  if (threadIdx.x == 0)
    *done = 0; /* ready for the next launch on this stream */
}

/* Test hook and MIMO_CUDA_MOE_ROUTE=split: the router GEMV and k_route as two launches (before/after in one run). */
static int split_route = -1;
extern "C" int mimo_cuda_moe_route_split(int on) { return cu_switch(&split_route, "MIMO_CUDA_MOE_ROUTE", "split", on); }

void cu_moe_route(cu_ctx *c, float *z, const float *x, int T, const cu_lin *router, const float *bias, int E, int K,
                  int norm, float scaling, int *sel, float *wts) {
  const size_t smem = (size_t)T * (router->in / RT_PARTS) * sizeof(float);
  /* One token takes the split pair: under dependent launch (SM90) it ran the one-token MoE 2–6 µs faster back to
   * back than the fused kernel, whose last block waits on a device-wide fence and counter (H200, 2026-12-04, four
   * runs); from two tokens the fused kernel stays (at eight: 253 against 262 µs). The choice follows the device,
   * not MIMO_CUDA_PDL, so that switch compares launches over the same arithmetic (gpu-check: bitwise equal). */
  const bool fused = router->fmt == CU_F32 && T <= RT_TMAX && E <= RT_EMAX && K <= 32 && K <= E &&
                     router->in % 16 == 0 && smem <= 48 * 1024 && !mimo_cuda_moe_route_split(-1) && (T > 1 || !c->pdl);
  if (fused && !cu_counters(c, &c->route_done, 1, "moe routing"))
    return;
  if (fused) {
    cu_launch(c, k_router_route, dim3(cdiv(E, RT_WARPS), RT_PARTS), RT_WARPS * 32, smem, x, T,
              (const float *)router->w, E, router->in, bias, K, norm, scaling, z, c->route_done, sel, wts);
    cu_moe_mark(c, 1); /* the phase hook sees router and routing as "router" */
    return;
  }
  cu_linear_dev(c, z, x, T, router);
  cu_moe_mark(c, 1);
  cu_launch(c, k_route, T, 32, (size_t)2 * E * sizeof(float), (const float *)z, bias, E, K, norm, scaling, sel, wts);
}

size_t cu_moe_route_scratch(int T, int E) { return (size_t)RT_PARTS * T * E; }
