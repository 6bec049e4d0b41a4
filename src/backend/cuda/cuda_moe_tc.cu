/* int4 MoE decode on integer tensor cores (few tokens a step; groups that are multiples of 128): the per-pair and
 * grouped-by-expert kernels and their launch shapes. The building blocks and the arithmetic: cuda_moe_tc.cuh. */
#include <stdint.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include "backend/cuda/cuda_moe_tc.cuh"

/* x [n][len] fp32 -> rec [n][len/128][TC_REC]: one warp per (vector, step) (tc_split_step). */
__global__ void k_tc_split8(char *rec, const float *x, int n, int len) {
  pdl_start();
  const int warp = (int)((blockIdx.x * (long)blockDim.x + threadIdx.x) >> 5), lane = threadIdx.x & 31, nst = len / 128;
  if (warp >= n * nst)
    return;
  const int v = warp / nst, s = warp % nst;
  tc_split_step(rec + ((size_t)v * nst + s) * TC_REC, *(const float4 *)(x + (size_t)v * len + (size_t)s * 128 + 4 * lane),
                lane);
}

/* gate+up+SiLU·up -> hf [T·K][I] fp32. grid (I/16 / (W/P), T·K); P warps share a tile, each a contiguous part of
 * the H steps; their sums meet in shared memory in warp order. Dynamic shared memory W · S · tc_ring<2>::BYTES. */
template <int W, int P, int S>
__global__ void __launch_bounds__(W * 32) k_tc_up(float *hf, const char *xrec, const cu_lin *tab, const int *sel, int K,
                                                  int I, int H, int gshift, bool tiled) {
  extern __shared__ uint4 tc_sm[];
  __shared__ float part[W][2][TC_ROWS];
  const int tk = blockIdx.y, wp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
  const int r0 = (blockIdx.x * (W / P) + wp / P) * TC_ROWS, n16 = H / 32, groups = H >> gshift, nst = H / 128;
  const int pi = wp % P, sa = pi * nst / P, sb = (pi + 1) * nst / P;
  const bool live = r0 < I;
  if (!live)
    pdl_start(); /* (live warps wait in their walk) */
  if (live) {
    char *ring = (char *)tc_sm + (size_t)wp * S * tc_ring<2>::BYTES;
    const int e = __ldcg(sel + tk); /* routed two launches back: complete when this kernel starts (cu_launch) */
    const uint4 *gq = tab[e * 3].q, *uq = tab[e * 3 + 1].q;
    const uint32_t *sp = tab[e * 3 + (lane >> 4)].sz;
    const uint4 *const q[2] = {tc_q(gq, tiled, r0, g, t, n16), tc_q(uq, tiled, r0, g, t, n16)};
    const uint32_t *scp = tc_sz(sp, tiled, r0, lane & 15, groups);
    const tc_map mp = tc_map_of(tiled, n16, groups);
    const char *rec = xrec + (size_t)(tk / K) * nst * TC_REC;
    float acc[2][2] = {{0.f, 0.f}, {0.f, 0.f}};
    tc_ring_walk<S>(
        ring, tc_ring<2>::BYTES, sb - sa, [&](char *st, int i) { tc_fill_w<2>(st, q, scp, mp, sa + i, gshift, lane); },
        [&](char *st, int i) { tc_fill_r<2>(st, rec, sa + i, lane); },
        [&](const char *st, int) { tc_use<2>(acc, st, g, t, lane); });
    tc_up_part(part[wp][0], part[wp][1], acc, g, t);
  }
  __syncthreads();
  if (live && pi == 0 && lane < TC_ROWS) {
    float a = 0.f, u = 0.f;
#pragma unroll
    for (int p = 0; p < P; p++) {
      a += part[wp + p][0][lane];
      u += part[wp + p][1][lane];
    }
    hf[(size_t)tk * I + r0 + lane] = a / (1.0f + expf(-a)) * u;
  }
}

/* down, weighted by the routing weights and summed over the slots. grid (H / (16·NT), T): NT row tiles of 16 per
 * block, which each step's records serve together; P warps share a slot, each a contiguous part of its steps, and
 * warp w takes slots w / P, w / P + W / P, ... (its ring runs on across them); the warps' sums meet in shared
 * memory in warp order. K <= 32. */
template <int W, int S, int NT, int P>
__global__ void __launch_bounds__(W * 32) k_tc_down(float *out, const char *hrec, const cu_lin *tab, const int *sel,
                                                    const float *wts, int K, int I, int H, int gshift, bool tiled) {
  extern __shared__ uint4 tc_sm[];
  __shared__ const uint4 *sq[32];
  __shared__ const uint32_t *ss[32];
  __shared__ float sw[32], part[W][NT * TC_ROWS];
  const int tt = blockIdx.y, r0 = blockIdx.x * NT * TC_ROWS, wp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int g = lane >> 2, t = lane & 3, n16 = I / 32, groups = I >> gshift, nst = I / 128;
  const int st = lane >> 4 < NT ? lane >> 4 : 0; /* the row tile whose scale words this lane fetches */
  if (threadIdx.x < K) { /* the slots' weights, fetched once; routed launches back, complete now (cu_launch) */
    const cu_lin *D = tab + __ldcg(sel + tt * K + threadIdx.x) * 3 + 2;
    sq[threadIdx.x] = D->q;
    ss[threadIdx.x] = D->sz;
    sw[threadIdx.x] = __ldcg(wts + tt * K + threadIdx.x);
  }
  __syncthreads();
  char *ring = (char *)tc_sm + (size_t)wp * S * tc_ring<NT>::BYTES;
  const tc_map mp = tc_map_of(tiled, n16, groups);
  constexpr int SW = W / P; /* slots in flight per block */
  const int wg = wp / P, pi = wp % P, sa = pi * nst / P, sb = (pi + 1) * nst / P;
  const int ns = wg < K ? (K - wg + SW - 1) / SW : 0;
  float acc[NT][2] = {}, og[NT][2] = {};
  /* slot and step of the next weight fill, record fill and use (each walks in order) */
  int wk = wg, ws = sa, rk = wg, rs = sa, uk = wg, us = sa;
  tc_ring_walk<S>(
      ring, tc_ring<NT>::BYTES, ns * (sb - sa),
      [&](char *stg, int) {
        const uint4 *q[NT];
#pragma unroll
        for (int m = 0; m < NT; m++)
          q[m] = tc_q(sq[wk], tiled, r0 + m * TC_ROWS, g, t, n16);
        tc_fill_w<NT>(stg, q, tc_sz(ss[wk], tiled, r0 + st * TC_ROWS, lane & 15, groups), mp, ws, gshift, lane);
        if (++ws == sb) {
          ws = sa;
          wk += SW;
        }
      },
      [&](char *stg, int) {
        tc_fill_r<NT>(stg, hrec + (size_t)(tt * K + rk) * nst * TC_REC, rs, lane);
        if (++rs == sb) {
          rs = sa;
          rk += SW;
        }
      },
      [&](const char *stg, int) {
        tc_use<NT>(acc, stg, g, t, lane);
        if (++us == sb) { /* the slot's last step (of this warp's part): weight it into the output */
          tc_weigh_slot<NT>(og, acc, sw[uk]);
          us = sa;
          uk += SW;
        }
      });
  tc_down_store<NT, W>(&part[0][0], NT * TC_ROWS, og, out + (size_t)tt * H + r0, wp, g, t);
}

/* ---- grouped by expert (T >= tcg_min_t): an expert's weights are read once for up to NT of the step's
 * (token, slot) pairs that chose it, instead of once per pair (at 32 tokens top-8 of 256, ~162 distinct
 * experts for 256 pairs). Two members share one mma: member 2p's limbs are B columns 0..2, member 2p+1's
 * columns 4..6, so thread t's accumulators (columns 2t, 2t+1) belong to member 2p + t/2 and the record tail
 * entry t%2 of it applies. Everything is indexed by position (pairs sorted by expert); a member's result
 * depends only on its own inputs, so where the sort's atomics put a pair changes no bit of the output. ---- */

/* Inclusive sums over the block of (a, b) per thread; ws: 2 × 32 ints of shared memory. */
__device__ __forceinline__ int2 block_scan2(int a, int b, int *ws) {
  const int lane = threadIdx.x & 31, wp = threadIdx.x >> 5, nw = blockDim.x >> 5;
  for (int o = 1; o < 32; o <<= 1) {
    const int va = __shfl_up_sync(0xffffffffu, a, o), vb = __shfl_up_sync(0xffffffffu, b, o);
    if (lane >= o) {
      a += va;
      b += vb;
    }
  }
  if (lane == 31) {
    ws[wp] = a;
    ws[32 + wp] = b;
  }
  __syncthreads();
  if (wp == 0) {
    int wa = lane < nw ? ws[lane] : 0, wb = lane < nw ? ws[32 + lane] : 0;
    for (int o = 1; o < 32; o <<= 1) {
      const int va = __shfl_up_sync(0xffffffffu, wa, o), vb = __shfl_up_sync(0xffffffffu, wb, o);
      if (lane >= o) {
        wa += va;
        wb += vb;
      }
    }
    ws[lane] = wa;
    ws[32 + lane] = wb;
  }
  __syncthreads();
  const int2 r = make_int2(a + (wp ? ws[wp - 1] : 0), b + (wp ? ws[32 + wp - 1] : 0));
  __syncthreads(); /* ws is reused by the next call */
  return r;
}

/* One block of 1024: the n pairs grouped by local expert (sel − e0 in [0, nloc)). slot: pair -> position (−1:
 * another rank's expert), perm: position -> pair, items: (first position, members <= nt, local expert) per run of
 * one expert's positions, in expert order; *nitems their count. Dynamic shared memory: nloc ints. */
__global__ void __launch_bounds__(1024) k_tc_group(const int *sel, int n, int e0, int nloc, int nt, int *slot,
                                                   int *perm, int4 *items, int *nitems) {
  extern __shared__ int cnt[];
  __shared__ int ws[64], carry[2];
  pdl_start();
  const int i = threadIdx.x;
  for (int e = i; e < nloc; e += blockDim.x)
    cnt[e] = 0;
  if (i == 0)
    carry[0] = carry[1] = 0;
  __syncthreads();
  for (int p = i; p < n; p += blockDim.x) {
    const int e = __ldg(sel + p) - e0;
    if (e >= 0 && e < nloc)
      atomicAdd(cnt + e, 1);
  }
  __syncthreads();
  for (int b = 0; b < nloc; b += blockDim.x) {
    const int e = b + i, c = e < nloc ? cnt[e] : 0, ni = (c + nt - 1) / nt;
    const int2 inc = block_scan2(c, ni, ws);
    const int pc = carry[0] + inc.x - c, pt = carry[1] + inc.y - ni;
    if (e < nloc) {
      cnt[e] = pc; /* from here on: the scatter's cursor */
      for (int j = 0; j < ni; j++)
        items[pt + j] = make_int4(pc + j * nt, min(nt, c - j * nt), e, 0);
    }
    __syncthreads(); /* every thread has read carry */
    if (i == blockDim.x - 1) {
      carry[0] += inc.x;
      carry[1] += inc.y;
    }
    __syncthreads();
  }
  for (int p = i; p < n; p += blockDim.x) {
    const int e = __ldg(sel + p) - e0;
    int s = -1;
    if (e >= 0 && e < nloc) {
      s = atomicAdd(cnt + e, 1);
      perm[s] = p;
    }
    slot[p] = s;
  }
  if (i == 0)
    *nitems = carry[1];
}

/* A grouped stage: the weights as in tc_ring, the NT members' records of the step, the scale words. */
template <int NM, int NT> struct tcg_ring {
  enum { WB = NM * 2 * 32 * 16, RB = NT * TC_REC, SB = NM * 16 * 4, BYTES = WB + RB + SB };
};

/* Issues the weights and scale words of step s into stage st. Not committed. */
template <int NM, int NT>
__device__ __forceinline__ void tcg_fill_w(char *st, const uint4 *const *q, const uint32_t *scp, const tc_map &mp,
                                           int s, int gshift, int lane) {
  tc_fill_q<NM>(st, q, mp, s, lane);
  if (lane < NM * 16)
    cp4((uint32_t *)(st + tcg_ring<NM, NT>::WB + tcg_ring<NM, NT>::RB) + lane,
        scp + (size_t)mp.sstep * ((s * 128) >> gshift));
}
/* Issues the n members' records of step s into stage st. Not committed. */
template <int NM, int NT>
__device__ __forceinline__ void tcg_fill_r(char *st, const char *const *mrec, int n, int s, int lane) {
  enum { CH = TC_REC / 16 };
#pragma unroll
  for (int c = lane; c < NT * CH; c += 32) {
    const int mb = c / CH, k = c % CH;
    if (mb < n)
      cp16(st + tcg_ring<NM, NT>::WB + mb * TC_REC + 16 * k, mrec[mb] + (size_t)s * TC_REC + 16 * k);
  }
}

/* One step for the n live members: acc[m][p][0|1] += scale · (rows g, g+8 of matrix m) · member (2p + t/2). */
template <int NM, int NT>
__device__ __forceinline__ void tcg_use(float (&acc)[NM][NT / 2][2], const char *st, int n, int g, int t, int lane) {
  const uint4 *w = (const uint4 *)st;
  const char *rb = st + tcg_ring<NM, NT>::WB;
  const uint32_t *sc = (const uint32_t *)(rb + tcg_ring<NM, NT>::RB);
  uint32_t lo[NM][8], hi[NM][8]; /* even / odd nibbles: rows g (k) and g+8 (4 + k) */
#pragma unroll
  for (int m = 0; m < NM; m++) {
    const uint4 q = w[(2 * m) * 32 + lane], q8 = w[(2 * m + 1) * 32 + lane];
    const uint32_t qa[8] = {q.x, q.y, q.z, q.w, q8.x, q8.y, q8.z, q8.w};
#pragma unroll
    for (int k = 0; k < 8; k++) {
      lo[m][k] = qa[k] & 0x0f0f0f0fu;
      hi[m][k] = (qa[k] >> 4) & 0x0f0f0f0fu;
    }
  }
  const int c = g & 3;
  const uint4 z = make_uint4(0, 0, 0, 0);
#pragma unroll
  for (int p = 0; p < NT / 2; p++) {
    if (2 * p >= n)
      break;
    const int mb = 2 * p + (g >> 2), mt = 2 * p + (t >> 1);
    const char *bp = rb + mb * TC_REC + c * TC_COL + t * 32;
    const bool bl = c < 3 && mb < n;
    const uint4 b0 = bl ? *(const uint4 *)bp : z, b1 = bl ? *(const uint4 *)(bp + 16) : z;
    const int2 tl = mt < n ? *(const int2 *)(rb + mt * TC_REC + 3 * TC_COL + 8 * (t & 1)) : make_int2(0, 0);
    const float xs = __int_as_float(tl.y);
    const uint32_t bb[8] = {b0.x, b0.y, b0.z, b0.w, b1.x, b1.y, b1.z, b1.w};
#pragma unroll
    for (int m = 0; m < NM; m++) {
      int d[4] = {0, 0, 0, 0};
#pragma unroll
      for (int k = 0; k < 4; k++)
        mma_u8s8(d, lo[m][k], lo[m][4 + k], hi[m][k], hi[m][4 + k], bb[2 * k], bb[2 * k + 1]);
      const uint32_t zg = sc[m * 16 + g], zg8 = sc[m * 16 + g + 8];
      const int vg = d[0] * 128 + d[1] - (int)(zg & 0xffu) * tl.x, vg8 = d[2] * 128 + d[3] - (int)(zg8 & 0xffu) * tl.x;
      acc[m][p][0] = fmaf(bf16_hi(zg) * xs, (float)vg, acc[m][p][0]);
      acc[m][p][1] = fmaf(bf16_hi(zg8) * xs, (float)vg8, acc[m][p][1]);
    }
  }
}

/* One item (an expert, up to NT positions) × W/P warp tiles per block; grid (warp tiles / (W/P), max items),
 * blocks past *nitems exit. P warps share a warp tile, each a contiguous part of the steps; their sums meet in
 * shared memory in warp order. UP (NM = 2): gate and up rows r0..r0+15 over x's records (member = token
 * perm[pos] / K), SiLU(gate)·up -> dst[pos][rows]. Down: rows r0 .. r0 + 16·NM − 1 of the down matrix (NM tiles
 * of 16 share each step's records) over h's records (member = position), × the pair's routing weight ->
 * dst[pos][rows]. Dynamic shared memory W · S · tcg_ring<NM, NT>::BYTES. */
template <bool UP, int NM, int W, int P, int S, int NT>
__global__ void __launch_bounds__(W * 32)
    k_tcg(float *dst, const char *rec, const cu_lin *tab, const int4 *items, const int *nitems, const int *perm,
          const float *wts, int K, int rows, int len, int gshift, bool tiled) {
  static_assert(!UP || NM == 2, "gate+up is two matrices");
  extern __shared__ uint4 tc_sm[];
  __shared__ const char *mrec[NT];
  /* items, nitems and perm come from k_tc_group, two launches back: complete when this kernel starts (cu_launch) */
  if ((int)blockIdx.y >= __ldcg(nitems))
    return;
  const int4 item = __ldcg(items + blockIdx.y); /* first position, members, local expert */
  const int n = item.y, wp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
  const int tile = UP ? TC_ROWS : NM * TC_ROWS; /* output rows of a warp tile */
  const int r0 = (blockIdx.x * (W / P) + wp / P) * tile, n16 = len / 32, groups = len >> gshift, nst = len / 128;
  const int pi = wp % P, sa = pi * nst / P, sb = (pi + 1) * nst / P;
  if (threadIdx.x < NT)
    mrec[threadIdx.x] =
        (int)threadIdx.x < n
            ? rec + (size_t)(UP ? __ldcg(perm + item.x + threadIdx.x) / K : item.x + threadIdx.x) * nst * TC_REC
            : NULL;
  __syncthreads();
  const bool live = r0 < rows;
  typedef float part_t[NM][NT][TC_ROWS]; /* a warp's sums, in its own ring once the walk is done */
  const auto part = [&](int w) -> part_t & { return *(part_t *)((char *)tc_sm + (size_t)w * S * tcg_ring<NM, NT>::BYTES); };
  if (!live)
    pdl_start(); /* (live warps wait in their walk) */
  if (live) {
    char *ring = (char *)tc_sm + (size_t)wp * S * tcg_ring<NM, NT>::BYTES;
    const cu_lin *ex = tab + item.z * 3 + (UP ? 0 : 2);
    const uint4 *q[NM];
#pragma unroll
    for (int m = 0; m < NM; m++)
      q[m] = UP ? tc_q(ex[m].q, tiled, r0, g, t, n16) : tc_q(ex->q, tiled, r0 + m * TC_ROWS, g, t, n16);
    const int sm = lane >> 4; /* the matrix (UP) or row tile whose scale words this lane fetches */
    const uint32_t *scp = UP ? tc_sz(ex[sm].sz, tiled, r0, lane & 15, groups)
                             : tc_sz(ex->sz, tiled, r0 + (sm < NM ? sm : 0) * TC_ROWS, lane & 15, groups);
    const tc_map mp = tc_map_of(tiled, n16, groups);
    float acc[NM][NT / 2][2] = {};
    tc_ring_walk<S>(
        ring, tcg_ring<NM, NT>::BYTES, sb - sa,
        [&](char *st, int i) { tcg_fill_w<NM, NT>(st, q, scp, mp, sa + i, gshift, lane); },
        [&](char *st, int i) { tcg_fill_r<NM, NT>(st, mrec, n, sa + i, lane); },
        [&](const char *st, int) { tcg_use<NM, NT>(acc, st, n, g, t, lane); });
#pragma unroll
    for (int m = 0; m < NM; m++)
#pragma unroll
      for (int p = 0; p < NT / 2; p++) {
        const float a0 = acc[m][p][0] + __shfl_xor_sync(0xffffffffu, acc[m][p][0], 1);
        const float a1 = acc[m][p][1] + __shfl_xor_sync(0xffffffffu, acc[m][p][1], 1);
        const int mb = 2 * p + (t >> 1);
        if (!(t & 1) && mb < n) {
          part(wp)[m][mb][g] = a0;
          part(wp)[m][mb][g + 8] = a1;
        }
      }
  }
  __syncthreads();
  if (live && pi == 0)
    for (int j = lane; j < n * tile; j += 32) {
      const int mb = j / tile, r = j % tile, m = UP ? 0 : r / TC_ROWS, rr = r % TC_ROWS;
      float a = 0.f, u = 0.f;
#pragma unroll
      for (int p = 0; p < P; p++) {
        a += part(wp + p)[m][mb][rr];
        if (UP)
          u += part(wp + p)[NM - 1][mb][rr];
      }
      const size_t pos = (size_t)item.x + mb;
      dst[pos * rows + r0 + r] = UP ? a / (1.0f + expf(-a)) * u : __ldg(wts + __ldg(perm + pos)) * a;
    }
}

/* Test hook and MIMO_CUDA_MOE_DECODE=fp32: the fp32 decode kernels instead (before/after in one run). */
static int tc_off = -1;
extern "C" int mimo_cuda_moe_decode_fp32(int on) { return cu_switch(&tc_off, "MIMO_CUDA_MOE_DECODE", "fp32", on); }

/* Launch shapes (warps per block, warps per up tile, ring stages): the first of each table is the default; the
 * others are there to be measured (mimo_cuda_moe_tc_variant). */
typedef void (*tc_up_fn)(float *, const char *, const cu_lin *, const int *, int, int, int, int, bool);
typedef void (*tc_dn_fn)(float *, const char *, const cu_lin *, const int *, const float *, int, int, int, int, bool);
typedef struct {
  tc_up_fn f;
  int warps, per_tile, stages;
} tc_up_shape;
typedef struct {
  tc_dn_fn f;
  int warps, stages, tiles, per_slot; /* tiles: 16-row tiles per block; per_slot: warps sharing a slot's steps */
} tc_dn_shape;
static const tc_up_shape tc_ups[] = {{k_tc_up<8, 4, 4>, 8, 4, 4}, {k_tc_up<4, 1, 6>, 4, 1, 6}, {k_tc_up<8, 2, 4>, 8, 2, 4},
                                     {k_tc_up<4, 2, 8>, 4, 2, 8}, {k_tc_up<8, 1, 4>, 8, 1, 4}};
/* down: 32-row blocks (each step's records serve two row tiles) 60.0 / 255.5 µs at T = 1 / 8 against 61.6 / 259.4
 * with 16 rows and 6 stages (H200, one run, 2026-12-03). 16 warps, 2 per slot (16 warps per SM at one token instead
 * of 8): 51.5 / 259.9 µs against 52.5 / 249.6 with the default (H200, 2026-12-04), no change to the decode step. */
static const tc_dn_shape tc_dns[] = {{k_tc_down<8, 4, 2, 1>, 8, 4, 2, 1},  {k_tc_down<8, 6, 1, 1>, 8, 6, 1, 1},
                                     {k_tc_down<4, 8, 1, 1>, 4, 8, 1, 1},  {k_tc_down<8, 4, 1, 1>, 8, 4, 1, 1},
                                     {k_tc_down<4, 8, 2, 1>, 4, 8, 2, 1},  {k_tc_down<16, 3, 2, 2>, 16, 3, 2, 2}};
static int tc_up_v = -1, tc_dn_v = 0;

/* The (up, down) table choice *uv, *dv: first the environment variable var's "u,d" (else the defaults, 0), then
 * up / dn where they are indices of the tables (nu, nd long). */
static void variant_pick(int *uv, int *dv, int nu, int nd, const char *var, int up, int dn) {
  if (*uv < 0) {
    const char *e = getenv(var);
    int u = 0, d = 0;
    *uv = 0;
    if (e && sscanf(e, "%d,%d", &u, &d) == 2 && u >= 0 && u < nu && d >= 0 && d < nd) {
      *uv = u;
      *dv = d;
    }
  }
  if (up >= 0 && up < nu)
    *uv = up;
  if (dn >= 0 && dn < nd)
    *dv = dn;
}

/* Test hook and MIMO_CUDA_TC_VARIANT=up,down (table indices): picks the launch shapes; returns how many up
 * variants there are (with up == -2: down variants), and writes a label of the current choice. */
extern "C" int mimo_cuda_moe_tc_variant(int up, int dn, char *label, int n) {
  const int nu = (int)(sizeof tc_ups / sizeof *tc_ups), nd = (int)(sizeof tc_dns / sizeof *tc_dns);
  variant_pick(&tc_up_v, &tc_dn_v, nu, nd, "MIMO_CUDA_TC_VARIANT", up, dn);
  if (label)
    snprintf(label, (size_t)n, "up %d warps, %d per tile, %d stages; down %d warps, %d per slot, %d stages, %d rows",
             tc_ups[tc_up_v].warps, tc_ups[tc_up_v].per_tile, tc_ups[tc_up_v].stages, tc_dns[tc_dn_v].warps,
             tc_dns[tc_dn_v].per_slot, tc_dns[tc_dn_v].stages, 16 * tc_dns[tc_dn_v].tiles);
  return up == -2 ? nd : nu;
}

static size_t tc_up_smem(const tc_up_shape *u) { return (size_t)u->warps * u->stages * tc_ring<2>::BYTES; }
static size_t tc_dn_smem(const tc_dn_shape *d) {
  return (size_t)d->warps * d->stages * (size_t)(d->tiles == 2 ? (int)tc_ring<2>::BYTES : (int)tc_ring<1>::BYTES);
}

bool cu_moe_tc_fits(const cu_lin *L0, int H, int I, int K) {
  if (L0->fmt != CU_INT4 || L0->group % 128 || H % 128 || I % 128 || K > 32 || mimo_cuda_moe_decode_fp32(-1))
    return false;
  for (size_t i = 0; i < sizeof tc_ups / sizeof *tc_ups; i++) /* every shape must fit what a launch may opt into */
    if (tc_up_smem(&tc_ups[i]) > TC_SMEM_MAX)
      return false;
  for (size_t i = 0; i < sizeof tc_dns / sizeof *tc_dns; i++)
    if (tc_dn_smem(&tc_dns[i]) > TC_SMEM_MAX)
      return false;
  return true;
}

size_t cu_moe_tc_scratch(int n, int len) { return (size_t)n * (len / 128) * TC_REC; }

static bool tc_opt_in(cu_ctx *c);

void cu_moe_tc(cu_ctx *c, float *out, float *hf, void *hrec, void *xrec, const float *x, const cu_lin *tab,
               const int *sel, const float *wts, int T, int K, int I, int H, int group, bool tiled) {
  if (tc_up_v < 0)
    mimo_cuda_moe_tc_variant(-1, -1, NULL, 0);
  const tc_up_shape *u = &tc_ups[tc_up_v];
  const tc_dn_shape *d = &tc_dns[tc_dn_v];
  const int gshift = __builtin_ctz((unsigned)group);
  const size_t su = tc_up_smem(u), sd = tc_dn_smem(d);
  if (!tc_opt_in(c))
    return;
  /* up and down read sel and wts before their wait: k_tc_split8 always runs between (cu_launch's contract) */
  cu_launch(c, k_tc_split8, cdiv((long)T * (H / 128) * 32, 256), 256, 0, (char *)xrec, x, T, H);
  const int tiles_per_block = u->warps / u->per_tile;
  cu_launch(c, u->f, dim3(cdiv(I / TC_ROWS, tiles_per_block), T * K), u->warps * 32, su, hf, (const char *)xrec, tab, sel,
            K, I, H, gshift, tiled);
  cu_moe_mark(c, 3);
  cu_launch(c, k_tc_split8, cdiv((long)T * K * (I / 128) * 32, 256), 256, 0, (char *)hrec, (const float *)hf, T * K, I);
  cu_launch(c, d->f, dim3(H / (TC_ROWS * d->tiles), T), d->warps * 32, sd, out, (const char *)hrec, tab, sel, wts, K, I, H,
            gshift, tiled);
}

/* ---- grouped by expert: launch shapes, dispatch ---- */

enum { TCG_NT = 4 }; /* members per item: at 32 tokens ~0.9 items per distinct expert, 2 mmas per step */
typedef void (*tcg_fn)(float *, const char *, const cu_lin *, const int4 *, const int *, const int *, const float *,
                       int, int, int, int, bool);
typedef struct {
  tcg_fn f;
  int tiles, warps, per_tile, stages; /* tiles: 16-row tiles per warp tile (down) */
  size_t smem;
} tcg_shape;
#define TCG_SHAPE(UP, NM, W, P, S)                                                                                \
  {k_tcg<UP, NM, W, P, S, TCG_NT>, NM, W, P, S, (size_t)(W) * (S) * tcg_ring<NM, TCG_NT>::BYTES}
/* H200, E256 top-8 4096x2048 g128 (2026-12-03): up 4 warps per tile 620 us at T = 64 against 677 us with 2 (2 % the
 * other way at T = 32); down with 32-row warp tiles (each step's records serve two 16-row tiles) 636 / 245 us at
 * T = 32 / 8 against 709 / 264 us with 16 rows. */
static const tcg_shape tcg_ups[] = {TCG_SHAPE(true, 2, 8, 4, 3), TCG_SHAPE(true, 2, 8, 2, 3),
                                    TCG_SHAPE(true, 2, 4, 2, 6)};
static const tcg_shape tcg_dns[] = {TCG_SHAPE(false, 2, 8, 1, 3), TCG_SHAPE(false, 1, 8, 1, 4),
                                    TCG_SHAPE(false, 2, 4, 1, 6)};
static int tcg_up_v = -1, tcg_dn_v = 0;
static int tcg_min_t = 8; /* tokens from which a step's pairs are grouped by expert (cuda_bench: per-token vs grouped) */

/* Test hook and MIMO_CUDA_TCG_VARIANT=up,down: as mimo_cuda_moe_tc_variant, for the grouped kernels. */
extern "C" int mimo_cuda_moe_tcg_variant(int up, int dn, char *label, int n) {
  const int nu = (int)(sizeof tcg_ups / sizeof *tcg_ups), nd = (int)(sizeof tcg_dns / sizeof *tcg_dns);
  variant_pick(&tcg_up_v, &tcg_dn_v, nu, nd, "MIMO_CUDA_TCG_VARIANT", up, dn);
  if (label)
    snprintf(label, (size_t)n,
             "grouped: up %d warps, %d per tile, %d stages; down %d warps, %d per tile of %d rows, %d stages",
             tcg_ups[tcg_up_v].warps, tcg_ups[tcg_up_v].per_tile, tcg_ups[tcg_up_v].stages, tcg_dns[tcg_dn_v].warps,
             tcg_dns[tcg_dn_v].per_tile, 16 * tcg_dns[tcg_dn_v].tiles, tcg_dns[tcg_dn_v].stages);
  return up == -2 ? nd : nu;
}

/* Test hook and MIMO_CUDA_TCG_MIN_T: the grouping threshold in tokens (t > 0 sets it); returns the old one. */
extern "C" int mimo_cuda_moe_tcg_min_t(int t) {
  static bool env_read;
  if (!env_read) {
    env_read = true;
    const char *e = getenv("MIMO_CUDA_TCG_MIN_T");
    if (e && atoi(e) > 0)
      tcg_min_t = atoi(e);
  }
  const int o = tcg_min_t;
  if (t > 0)
    tcg_min_t = t;
  return o;
}

bool cu_moe_tcg_fits(int T, int n_local) {
  for (size_t i = 0; i < sizeof tcg_ups / sizeof *tcg_ups; i++)
    if (tcg_ups[i].smem > TC_SMEM_MAX)
      return false;
  for (size_t i = 0; i < sizeof tcg_dns / sizeof *tcg_dns; i++)
    if (tcg_dns[i].smem > TC_SMEM_MAX)
      return false;
  return T >= mimo_cuda_moe_tcg_min_t(0) && n_local <= 8192 && (long)T * 32 <= 65535;
}

void cu_moe_tcg(mimo_backend *be, float *out, const float *x, const cu_lin *tab, const int *sel, const float *wts,
                int T, int K, int I, int H, int group, bool tiled, int e0, int n_local) {
  cu_ctx *c = cu(be);
  if (tcg_up_v < 0)
    mimo_cuda_moe_tcg_variant(-1, -1, NULL, 0);
  const tcg_shape *u = &tcg_ups[tcg_up_v], *d = &tcg_dns[tcg_dn_v];
  const int n = T * K, max_items = n < n / TCG_NT + n_local ? n : n / TCG_NT + n_local;
  const int gshift = __builtin_ctz((unsigned)group);
  float *hf = cu_alloc(be, (size_t)n * I), *y = cu_alloc(be, (size_t)n * H),
        *xr = cu_alloc(be, cdiv(cu_moe_tc_scratch(T, H), 4)), *hr = cu_alloc(be, cdiv(cu_moe_tc_scratch(n, I), 4)),
        *ib = cu_alloc(be, (size_t)4 * max_items + 2 * (size_t)n + 1);
  if (!hf || !y || !xr || !hr || !ib) {
    cu_fail(c, "moe", "out of GPU memory for scratch", __FILE__, __LINE__);
  } else if (tc_opt_in(c)) {
    int4 *items = (int4 *)ib;
    int *slot = (int *)(items + max_items), *perm = slot + n, *nitems = perm + n;
    /* the grouped kernels read the group's tables before their wait: a k_tc_split8 always runs between */
    cu_launch(c, k_tc_group, 1, 1024, (size_t)n_local * sizeof(int), sel, n, e0, n_local, (int)TCG_NT, slot, perm, items,
              nitems);
    cu_launch(c, k_tc_split8, cdiv((long)T * (H / 128) * 32, 256), 256, 0, (char *)xr, x, T, H);
    cu_launch(c, u->f, dim3(cdiv(I / TC_ROWS, u->warps / u->per_tile), max_items), u->warps * 32, u->smem, hf,
              (const char *)xr, tab, (const int4 *)items, (const int *)nitems, (const int *)perm, wts, K, I, H, gshift,
              tiled);
    cu_moe_mark(c, 3);
    /* every position's h (rows past the live positions are not read: their records are not either) */
    cu_launch(c, k_tc_split8, cdiv((long)n * (I / 128) * 32, 256), 256, 0, (char *)hr, (const float *)hf, n, I);
    cu_launch(c, d->f, dim3(cdiv(H / (TC_ROWS * d->tiles), d->warps / d->per_tile), max_items), d->warps * 32, d->smem,
              y, (const char *)hr, tab, (const int4 *)items, (const int *)nitems, (const int *)perm, wts, K, H, I,
              gshift, tiled);
    cu_moe_combine(c, out, y, slot, T, H, K);
  }
  cu_release(be, hf);
  cu_release(be, y);
  cu_release(be, xr);
  cu_release(be, hr);
  cu_release(be, ib);
}

/* Every decode kernel of the tables above may use TC_SMEM_MAX bytes of dynamic shared memory (each shape's fits,
 * cu_moe_tc_fits): set once per device, not before every launch. */
static bool tc_opt_in(cu_ctx *c) {
  static bool done[64];
  if (c->device >= 0 && c->device < 64 && done[c->device])
    return true;
  const void *fs[sizeof tc_ups / sizeof *tc_ups + sizeof tc_dns / sizeof *tc_dns + sizeof tcg_ups / sizeof *tcg_ups +
                 sizeof tcg_dns / sizeof *tcg_dns];
  size_t n = 0;
  for (size_t i = 0; i < sizeof tc_ups / sizeof *tc_ups; i++)
    fs[n++] = (const void *)tc_ups[i].f;
  for (size_t i = 0; i < sizeof tc_dns / sizeof *tc_dns; i++)
    fs[n++] = (const void *)tc_dns[i].f;
  for (size_t i = 0; i < sizeof tcg_ups / sizeof *tcg_ups; i++)
    fs[n++] = (const void *)tcg_ups[i].f;
  for (size_t i = 0; i < sizeof tcg_dns / sizeof *tcg_dns; i++)
    fs[n++] = (const void *)tcg_dns[i].f;
  for (size_t i = 0; i < n; i++)
    if (MIMO_CUDA(c, cudaFuncSetAttribute(fs[i], cudaFuncAttributeMaxDynamicSharedMemorySize, TC_SMEM_MAX)) != MIMO_OK)
      return false;
  if (c->device >= 0 && c->device < 64)
    done[c->device] = true;
  return true;
}
