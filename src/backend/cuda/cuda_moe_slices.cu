/* The few-token int4 MoE split by slices of the expert width (docs/cuda.md, round 19).
 *
 * Block (s, tk) takes the 128 columns [128s, 128s + 128) of pair tk's expert: it computes those columns of h from
 * their gate and up rows over all of H (as k_tc_up does for 128 rows), splits them into one 8-bit step record (a
 * step is 128 inputs), and multiplies down's step s (every output row, those 128 inputs) by it: a partial output of
 * H floats, written to part. Nothing in a block waits for another block, so at one token the launch is one wave of
 * I/128 · K blocks (128 for MiMo, on 132 SMs) that stream gate+up's and down's bytes together, and down's first
 * stages are requested before gate+up's first use. A second launch sums the partials in a fixed order:
 * out[t] = Σ_k w_k · Σ_s part[t·K + k][s]. Slots of weight 0 (another rank's experts under expert parallel) are
 * skipped by both.
 *
 * Why: the per-pair path is split(x), gate+up, split(h), down, and its one-token kernels reach 52 % (gate+up) and
 * 44 % (down) of copy on their own, held by each launch's fixed cost (first bytes, the last wave's tail, 1.94 waves
 * for gate+up and 0.48 for down). Round 17 merged the four into one persistent launch whose down tasks waited on
 * gate+up tasks; it streamed gate+up slower and lost. Splitting down by its input columns removes the wait instead.
 * The arithmetic per step is that of the per-pair kernels (tc_use_parts); the sums over steps come in another order,
 * so the output is fp32-grade but not bitwise theirs. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "backend/cuda/cuda_moe_tc.cuh"

enum { SL_COLS = 128, SL_TILES = SL_COLS / TC_ROWS, SL_DB = 2 * 32 * 16 + TC_ROWS * 4 /* a down stage: words, scales */ };

/* W warps (W / 8 per gate+up tile, each over a contiguous part of H's steps), S gate+up ring stages, SB down ones. */
template <int W, int S, int SB>
__global__ void __launch_bounds__(W * 32, 1) k_tc_slices(float *part, const char *xrec, const cu_lin *tab, const int *sel,
                                                         const float *wts, int K, int I, int H, int gshift, bool tiled) {
  extern __shared__ uint4 tc_sm[];
  __shared__ float pg[W][2][TC_ROWS];
  __shared__ __align__(16) char hrec[TC_REC];
  constexpr int P = W / SL_TILES;
  const int s = blockIdx.x, tk = blockIdx.y, wp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
  /* sel and wts were routed two launches back (k_tc_split8 runs between): complete when this kernel starts */
  if (__ldcg(wts + tk) == 0.f) {
    pdl_start();
    return;
  }
  const int e = __ldcg(sel + tk), nsH = H / 128, nsI = I / 128;
  const cu_lin *ex = tab + (size_t)e * 3;
  const tc_map mpI = tc_map_of(tiled, I / 32, I >> gshift);
  char *dring = (char *)tc_sm + (size_t)W * S * tc_ring<2>::BYTES + (size_t)wp * SB * SL_DB;
  /* down: this warp's 16-row tiles wp, wp + W, ... of H, each one step (s) */
  const int nd = (H / TC_ROWS - wp + W - 1) / W;
  const uint4 *dq = ex[2].q;
  const uint32_t *dsz = ex[2].sz;
  const auto fill_down = [&](int i) {
    char *st = dring + (i % SB) * SL_DB;
    const int r0 = (wp + i * W) * TC_ROWS;
    const uint4 *const q[1] = {tc_q(dq, tiled, r0, g, t, I / 32)};
    tc_fill_q<1>(st, q, mpI, s, lane);
    if (lane < TC_ROWS)
      cp4((uint32_t *)(st + 2 * 32 * 16) + lane, tc_sz(dsz, tiled, r0, lane, I >> gshift) + (size_t)mpI.sstep * ((s * 128) >> gshift));
  };
  /* down's first stages go with the first group of gate+up's walk: they land while gate+up streams */
#pragma unroll
  for (int i = 0; i < SB - 1; i++)
    if (i < nd)
      fill_down(i);
  { /* gate+up: rows [128s + 16m, +16) of gate and up, m = wp / P, over steps [sa, sb) of H */
    const int pi = wp % P;
    tc_up_tile<S>((char *)tc_sm + (size_t)wp * S * tc_ring<2>::BYTES, ex, s * SL_COLS + (wp / P) * TC_ROWS,
                  pi * nsH / P, (pi + 1) * nsH / P, xrec + (size_t)(tk / K) * nsH * TC_REC, H, gshift, tiled, pg[wp][0],
                  pg[wp][1], lane);
  }
  __syncthreads();
  if (wp == 0) { /* the slice's h (lane: columns 4·lane .. 4·lane + 3), its parts in warp order, into one record */
    float h[4];
#pragma unroll
    for (int j = 0; j < 4; j++) {
      const int c = 4 * lane + j, m = c / TC_ROWS, r = c % TC_ROWS;
      float a = 0.f, u = 0.f;
#pragma unroll
      for (int p = 0; p < P; p++) {
        a += pg[m * P + p][0][r];
        u += pg[m * P + p][1][r];
      }
      h[j] = a / (1.0f + expf(-a)) * u;
    }
    tc_split_step(hrec, make_float4(h[0], h[1], h[2], h[3]), lane);
  }
  __syncthreads();
  float *dst = part + ((size_t)tk * nsI + s) * H;
  cp_wait<0>(); /* down's early stages (in flight since the start; a short gate+up walk need not have waited) */
  for (int i = 0; i < nd; i++) { /* down: stage i of the ring, SB − 1 ahead */
    if (i + SB - 1 < nd)
      fill_down(i + SB - 1);
    cp_commit();
    cp_wait<SB - 1>();
    __syncwarp();
    const char *st = dring + (i % SB) * SL_DB;
    float acc[1][2] = {{0.f, 0.f}};
    tc_use_parts<1>(acc, st, hrec, (const uint32_t *)(st + 2 * 32 * 16), g, t, lane);
    const float v0 = group_sum(acc[0][0]), v1 = group_sum(acc[0][1]);
    if (t == 0) {
      const int r0 = (wp + i * W) * TC_ROWS;
      dst[r0 + g] = v0;
      dst[r0 + g + 8] = v1;
    }
    __syncwarp(); /* the stage is refilled next iteration */
  }
}

/* out[t][n] = Σ_k w_k · Σ_s part[t·K + k][s][n], k and s in order. grid (H / 32, T), 8 warps: warp w sums slots
 * w, w + 8, ... over s; warp 0 weighs them in slot order. */
__global__ void __launch_bounds__(256) k_tc_slices_sum(float *out, const float *part, const float *wts, int K, int nsI,
                                                       int H) {
  __shared__ float ps[32][32];
  const int t = blockIdx.y, wp = threadIdx.x >> 5, lane = threadIdx.x & 31, n = blockIdx.x * 32 + lane;
  pdl_start();
  for (int k = wp; k < K; k += 8) {
    float v = 0.f;
    if (wts[t * K + k] != 0.f) {
      const float *p = part + (size_t)(t * K + k) * nsI * H + n;
#pragma unroll 4
      for (int s = 0; s < nsI; s++)
        v += p[(size_t)s * H];
    }
    ps[k][lane] = v;
  }
  __syncthreads();
  if (wp == 0) {
    float o = 0.f;
    for (int k = 0; k < K; k++) {
      const float w = wts[t * K + k];
      if (w != 0.f)
        o = fmaf(w, ps[k][lane], o);
    }
    out[(size_t)t * H + n] = o;
  }
}

typedef void (*sl_fn)(float *, const char *, const cu_lin *, const int *, const float *, int, int, int, int, bool);
typedef struct {
  sl_fn f;
  int warps, stages, dstages;
} sl_shape;
#define SL_SHAPE(W, S, SB) {k_tc_slices<W, S, SB>, W, S, SB}
/* The first that fits the device's shared memory is the default (16 warps need Hopper's 227 KB; A100 takes the
 * 8-warp shapes); the others are there to be measured. */
static const sl_shape sl_shapes[] = {SL_SHAPE(16, 4, 3), SL_SHAPE(8, 4, 4), SL_SHAPE(8, 6, 4), SL_SHAPE(16, 3, 4)};
enum { SL_NV = sizeof sl_shapes / sizeof *sl_shapes };
static int sl_v = -1; /* chosen shape; -1: the first that fits */

static size_t sl_smem(const sl_shape *sh) {
  return (size_t)sh->warps * (sh->stages * (size_t)tc_ring<2>::BYTES + sh->dstages * (size_t)SL_DB);
}
/* What a block of shape sh takes with its static shared memory (pg, hrec), against what it may opt into. */
static bool sl_fits_device(const cu_ctx *c, const sl_shape *sh) {
  return sl_smem(sh) + (size_t)sh->warps * 2 * TC_ROWS * 4 + TC_REC <= (size_t)c->smem_optin;
}

/* MIMO_CUDA_MOE_SLICES=on and test hook: take the slices. Off by default until they have run on a GPU (written in a
 * session whose device calls got no machine, docs/cuda.md round 19); the per-pair launches are the measured path. */
static int sl_on = -1;
extern "C" int mimo_cuda_moe_slices_on(int on) { return cu_switch(&sl_on, "MIMO_CUDA_MOE_SLICES", "on", on); }

/* Test hook and MIMO_CUDA_MOE_SLICES_MAX_T: steps of up to this many tokens take the slices (t > 0 sets it);
 * returns the old value. */
static int sl_max_t;
extern "C" int mimo_cuda_moe_slices_max_t(int t) { return cu_tunable(&sl_max_t, "MIMO_CUDA_MOE_SLICES_MAX_T", 1, t); }

/* Test hook and MIMO_CUDA_SLICES_VARIANT=v: the launch shape (v >= 0 sets it, -2 goes back to the default: the first
 * that fits); returns how many there are and writes a label of the current one. */
extern "C" int mimo_cuda_moe_slices_variant(int v, char *label, int n) {
  static bool env_read;
  if (!env_read) {
    env_read = true;
    const char *e = getenv("MIMO_CUDA_SLICES_VARIANT");
    if (e && atoi(e) >= 0 && atoi(e) < SL_NV)
      sl_v = atoi(e);
  }
  if (v >= 0 && v < SL_NV)
    sl_v = v;
  if (v == -2)
    sl_v = -1;
  const sl_shape *sh = &sl_shapes[sl_v < 0 ? 0 : sl_v];
  if (label)
    snprintf(label, (size_t)n, "slices, %d warps, %d + %d stages", sh->warps, sh->stages, sh->dstages);
  return SL_NV;
}

/* The shape to launch on this device: the chosen one, or by default the first that fits; NULL if none fits. */
static const sl_shape *sl_pick(const cu_ctx *c) {
  mimo_cuda_moe_slices_variant(-1, NULL, 0);
  if (sl_v >= 0)
    return sl_fits_device(c, &sl_shapes[sl_v]) ? &sl_shapes[sl_v] : NULL;
  for (int i = 0; i < SL_NV; i++)
    if (sl_fits_device(c, &sl_shapes[i]))
      return &sl_shapes[i];
  return NULL;
}

/* Test hook: whether launch shape v fits this backend's device. */
extern "C" int mimo_cuda_moe_slices_shape_fits(mimo_backend *be, int v) {
  return v >= 0 && v < SL_NV && sl_fits_device(cu(be), &sl_shapes[v]);
}

/* Test hook and MIMO_CUDA_MOE_SLICES_MIN_BLOCKS: the fewest blocks (slices × pairs) a step must have to take the
 * slices (t > 0 sets it; returns the old value, 0 for the default). One block per SM streams a slice, so with fewer
 * blocks than half the SMs (a tensor-parallel rank's narrow experts: I/8 = 256 is 2 slices, 16 blocks at one token)
 * most of the GPU would idle: by default the per-pair kernels keep those. */
static int sl_min_blocks;
extern "C" int mimo_cuda_moe_slices_min_blocks(int t) {
  const int o = cu_tunable(&sl_min_blocks, "MIMO_CUDA_MOE_SLICES_MIN_BLOCKS", INT32_MAX, t);
  return o == INT32_MAX ? 0 : o;
}

bool cu_moe_slices_fits(cu_ctx *c, int T, int K, int I, int H) {
  const int mb = mimo_cuda_moe_slices_min_blocks(0);
  return mimo_cuda_moe_slices_on(-1) && T <= mimo_cuda_moe_slices_max_t(0) && K <= 32 && I % SL_COLS == 0 &&
         H % 128 == 0 && (long)(I / SL_COLS) * T * K >= (mb ? mb : (c->sms + 1) / 2) && sl_pick(c);
}

size_t cu_moe_slices_scratch(int T, int K, int I, int H) { return (size_t)T * K * (I / SL_COLS) * H; }

/* Test hook: launches so far (a check that compares the slices with the CPU knows they ran). */
static long sl_launches;
extern "C" long mimo_cuda_moe_slices_launches(void) { return sl_launches; }

void cu_moe_slices(cu_ctx *c, float *out, float *part, const void *xrec, const cu_lin *tab, const int *sel,
                   const float *wts, int T, int K, int I, int H, int group, bool tiled) {
  static bool opted[SL_NV][64]; /* per shape and device */
  const sl_shape *sh = sl_pick(c);
  if (!sh) {
    cu_fail(c, "moe", "no slices launch shape fits this device's shared memory", __FILE__, __LINE__);
    return;
  }
  const size_t smem = sl_smem(sh);
  const int dev = c->device >= 0 && c->device < 64 ? c->device : 0;
  bool *o = &opted[sh - sl_shapes][dev];
  if (!*o) {
    if (MIMO_CUDA(c, cudaFuncSetAttribute((const void *)sh->f, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                          (int)smem)) != MIMO_OK)
      return;
    *o = true;
  }
  sl_launches++;
  cu_launch(c, sh->f, dim3(I / SL_COLS, T * K), sh->warps * 32, smem, part, (const char *)xrec, tab, sel, wts, K, I, H,
            __builtin_ctz((unsigned)group), tiled);
  cu_launch(c, k_tc_slices_sum, dim3(H / 32, T), 256, 0, out, (const float *)part, wts, K, I / SL_COLS, H);
}
