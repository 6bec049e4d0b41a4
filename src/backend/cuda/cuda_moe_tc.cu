/* int4 MoE decode on tensor cores (few tokens a step; groups that are multiples of 128).
 *
 * Why: the fp32 decode kernels of cuda_moe.cu spend ~3 instructions per weight (nibble permute, subtract,
 * FMA) and sit at ~1.3–1.5 TB/s on an H200 whatever their memory pipelining (docs/cuda.md, round 3): they are
 * bound by instruction issue. Here a pair of weights costs one LOP3 (nibbles i and i+4 into the halves of an
 * f16x2 as 1024 + n, exact) and one HADD2 (minus 1024 + zero point, exact: |n − z| ≤ 15), and mma.m16n8k16
 * does the products: ~1.1 instructions per weight.
 *
 * Accuracy as fp32: the activations go in as two fp16 columns of the mma's B operand, x_hi = fp16(x) and
 * x_lo = fp16(x − x_hi) (22 significant bits), the weights are exact small integers, the mma accumulates in
 * fp32, and the group scale multiplies each 128-column block's fp32 sum (one step = one block of 128 inputs,
 * inside one scale group). Columns 2..7 of B are zero.
 *
 * Fragments: thread (g = lane/4, t = lane%4) loads 16 bytes (32 inputs) of rows g and g+8 of its warp's 16-row
 * tile, word 4·step + t, so a step covers 128 inputs of 16 rows. In an mma the order of k is free as long as A
 * and B agree: for sub-word w (inputs 8w..8w+7 of the thread's word) the first mma takes the pairs (0,4) and
 * (1,5), the second (2,6) and (3,7), and B is stored per 8 inputs as those four pairs ("pair8" layout:
 * [column hi|lo][k/8] of uint4), written by k_tc_split (x) and by the gate+up epilogue (h). */
#include <stdint.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include "backend/cuda/cuda_internal.h"

/* Up: a block is one 16-row tile of gate and up for one (token, slot), its warps (4 by default) splitting the H
 * inputs into contiguous step ranges (one tile per warp left 1024 warps at one token: under one wave, each
 * walking 32 steps behind its own loads). Down: a block is 16 output rows of one token, warp w takes slots
 * w, w + TC_DN_WARPS, ... over all of I. Each warp copies the B operand of its steps into shared memory first
 * (cp.async), so no step waits on an L2 round trip for activations; weights run DEPTH steps ahead in registers. */
enum { TC_ROWS = 16, TC_DN_WARPS = 8, TC_UP_MAXW = 8 };

__device__ __forceinline__ void mma_f16(float (&d)[4], uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3, uint32_t b0,
                                        uint32_t b1) {
  asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

__device__ __forceinline__ uint32_t hadd2(uint32_t a, uint32_t b) {
  uint32_t d;
  asm("add.rn.f16x2 %0, %1, %2;\n" : "=r"(d) : "r"(a), "r"(b));
  return d;
}
__device__ __forceinline__ uint32_t hfma2(uint32_t a, uint32_t b, uint32_t c) {
  uint32_t d;
  asm("fma.rn.f16x2 %0, %1, %2, %3;\n" : "=r"(d) : "r"(a), "r"(b), "r"(c));
  return d;
}
/* Pairs (i, i+4) of a word's nibbles as fp16 n − o, i = 0..3, in 9 instructions instead of 11: the low nibbles of
 * each byte pair OR'ed under 1024 (exact integers) less 1024 + o; the high nibbles in place give 1024 + 16n,
 * and one fma by 1/16 less 64 + o recovers n − o exactly. lo = −(1024 + o), hi = −(64 + o) per half. */
__device__ __forceinline__ void nib_pairs(uint32_t q, uint32_t lo, uint32_t hi, uint32_t (&a)[4]) {
  const uint32_t q8 = q >> 8;
  a[0] = hadd2((q & 0x000f000fu) | 0x64006400u, lo);
  a[1] = hfma2((q & 0x00f000f0u) | 0x64006400u, 0x2c002c00u, hi);
  a[2] = hadd2((q8 & 0x000f000fu) | 0x64006400u, lo);
  a[3] = hfma2((q8 & 0x00f000f0u) | 0x64006400u, 0x2c002c00u, hi);
}

/* fp16 bits of v, range clamped (an activation past 65504 would become inf). */
__device__ __forceinline__ uint32_t h16(float v) {
  return __half_as_ushort(__float2half_rn(fminf(fmaxf(v, -65504.f), 65504.f)));
}

/* Writes element k of v into the pair8 layout of one vector (hi column at p, lo column at p + n8). */
__device__ __forceinline__ void pair8_store(unsigned short *p, int n8, int k, float v) {
  const uint32_t hi = h16(v);
  const float lo = v - __half2float(__ushort_as_half((unsigned short)hi));
  const int i = k & 7, at = (k >> 3) * 8 + 2 * (i & 3) + (i >> 2); /* uint4 k/8, pair i%4, half i/4 */
  p[at] = (unsigned short)hi;
  p[(size_t)n8 * 8 + at] = (unsigned short)h16(lo);
}

/* x [T][H] fp32 -> pair8 [T][2][H/8] uint4: one thread per 8 inputs. */
__global__ void k_tc_split(uint4 *xh, const float *x, int T, int H) {
  const int n8 = H / 8;
  const long i = blockIdx.x * (long)blockDim.x + threadIdx.x;
  if (i >= (long)T * n8)
    return;
  const int t = (int)(i / n8), b = (int)(i % n8);
  const float4 u = *(const float4 *)(x + (size_t)t * H + 8 * b), v = *(const float4 *)(x + (size_t)t * H + 8 * b + 4);
  const float e[8] = {u.x, u.y, u.z, u.w, v.x, v.y, v.z, v.w};
  uint32_t hi[8], lo[8];
#pragma unroll
  for (int j = 0; j < 8; j++) {
    hi[j] = h16(e[j]);
    lo[j] = h16(e[j] - __half2float(__ushort_as_half((unsigned short)hi[j])));
  }
  uint4 *o = xh + (size_t)t * 2 * n8;
  o[b] = make_uint4(hi[0] | hi[4] << 16, hi[1] | hi[5] << 16, hi[2] | hi[6] << 16, hi[3] | hi[7] << 16);
  o[n8 + b] = make_uint4(lo[0] | lo[4] << 16, lo[1] | lo[5] << 16, lo[2] | lo[6] << 16, lo[3] | lo[7] << 16);
}

/* One step of one matrix's 16-row tile: 8 mmas over the thread's two 16-byte words (rows g, g+8) against B
 * (the thread's pair8 uint4 per sub-word; zero for columns past 1). Returns the step's fp32 sums of columns
 * 0 + 1 for rows g and g+8 (valid in threads t == 0). */
__device__ __forceinline__ void tc_step(const uint4 &wg, const uint4 &wg8, uint32_t zg, uint32_t zg8, const uint4 (&b)[4],
                                        float &sg, float &sg8) {
  float d[4] = {0.f, 0.f, 0.f, 0.f};
  const uint32_t og = (0xe400u | (zg & 0xffu)) * 0x00010001u, og8 = (0xe400u | (zg8 & 0xffu)) * 0x00010001u;
  const uint32_t hg = (0xd400u | (zg & 0xffu) << 4) * 0x00010001u, hg8 = (0xd400u | (zg8 & 0xffu) << 4) * 0x00010001u;
  const uint32_t qg[4] = {wg.x, wg.y, wg.z, wg.w}, qg8[4] = {wg8.x, wg8.y, wg8.z, wg8.w};
#pragma unroll
  for (int w = 0; w < 4; w++) {
    uint32_t ag[4], ag8[4]; /* pairs (i, i+4) of sub-word w, as n − o in fp16 */
    nib_pairs(qg[w], og, hg, ag);
    nib_pairs(qg8[w], og8, hg8, ag8);
    mma_f16(d, ag[0], ag8[0], ag[1], ag8[1], b[w].x, b[w].y);
    mma_f16(d, ag[2], ag8[2], ag[3], ag8[3], b[w].z, b[w].w);
  }
  sg = d[0] + d[1];
  sg8 = d[2] + d[3];
}

/* Copies the B operand (pair8 columns 0 and 1 of vec, n8 uint4 each) of steps [sa, sb) into bs: [column]
 * [16 uint4 per step], column stride bstride. Whole warp; committed, not waited for. */
__device__ __forceinline__ void tc_stage(uint4 *bs, int bstride, const uint4 *vec, int n8, int sa, int sb, int lane) {
  const int n = 16 * (sb - sa);
  for (int i = lane; i < 2 * n; i += 32) {
    const int col = i >= n, j = i - col * n;
    cp16(bs + col * bstride + j, vec + (size_t)col * n8 + 16 * sa + j);
  }
  cp_commit();
}

/* Steps [sa, sb) of NM matrices' 16-row tiles over the same inputs: q[m] / sz[m] point at row g's word t /
 * scale words, row g+8 is r8w / r8s further. B comes from the warp's staged copy (tc_stage, waited for here
 * after the first weight loads are issued). acc[m][0|1]: group-scaled sums of rows g and g+8 (threads t == 0). */
template <int NM, int DEPTH>
__device__ __forceinline__ void tc_walk(float (&acc)[NM][2], const uint4 *const (&q)[NM], const uint32_t *const (&sz)[NM],
                                        size_t r8w, size_t r8s, const uint4 *bs, int bstride, int sa, int sb,
                                        int gshift, int g, int t) {
  uint4 wq[DEPTH][NM][2];
  uint32_t ws[DEPTH][NM][2];
  auto load = [&](int d, int s) {
    if (s < sb) {
      const int gi = (s * 128) >> gshift;
#pragma unroll
      for (int m = 0; m < NM; m++) {
        wq[d][m][0] = __ldg(q[m] + 4 * s);
        wq[d][m][1] = __ldg(q[m] + r8w + 4 * s);
        ws[d][m][0] = __ldg(sz[m] + gi);
        ws[d][m][1] = __ldg(sz[m] + r8s + gi);
      }
    }
  };
#pragma unroll
  for (int d = 0; d < DEPTH; d++)
    load(d, sa + d);
#pragma unroll
  for (int m = 0; m < NM; m++)
    acc[m][0] = acc[m][1] = 0.f;
  cp_wait<0>();
  __syncwarp();
  for (int s0 = sa; s0 < sb; s0 += DEPTH) {
#pragma unroll
    for (int d = 0; d < DEPTH; d++) {
      const int s = s0 + d;
      if (s < sb) {
        uint4 b[4];
#pragma unroll
        for (int w = 0; w < 4; w++) /* columns 2..7 of B are zero */
          b[w] = g < 2 ? bs[g * bstride + 16 * (s - sa) + 4 * t + w] : make_uint4(0, 0, 0, 0);
#pragma unroll
        for (int m = 0; m < NM; m++) {
          float p, p8;
          tc_step(wq[d][m][0], wq[d][m][1], ws[d][m][0], ws[d][m][1], b, p, p8);
          acc[m][0] = fmaf(bf16_hi(ws[d][m][0]), p, acc[m][0]);
          acc[m][1] = fmaf(bf16_hi(ws[d][m][1]), p8, acc[m][1]);
        }
        load(d, s + DEPTH);
      }
    }
  }
}

/* gate+up+SiLU·up. grid (I/16, T·K); W warps; dynamic shared memory: W × 32 × L uint4, L = steps per warp. */
template <int W, int DEPTH, int MINB>
__global__ void __launch_bounds__(W * 32, MINB) k_tc_up(uint4 *hh, const uint4 *xh, const cu_lin *tab, const int *sel,
                                                        int K, int I, int H, int gshift, int L) {
  extern __shared__ uint4 tc_sm[];
  __shared__ float part[W][4][8]; /* warp, (gate g, gate g+8, up g, up g+8), g */
  const int tk = blockIdx.y, wp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
  const int r0 = blockIdx.x * TC_ROWS, n16 = H / 32, groups = H >> gshift, nst = H / 128, n8 = H / 8;
  const int sa = min(nst, wp * L), sb = min(nst, sa + L);
  uint4 *bs = tc_sm + (size_t)wp * 32 * L;
  tc_stage(bs, 16 * L, xh + (size_t)(tk / K) * 2 * n8, n8, sa, sb, lane);
  const int e = __ldg(sel + tk);
  const cu_lin G = tab[e * 3], U = tab[e * 3 + 1];
  const uint4 *const q[2] = {G.q + (size_t)(r0 + g) * n16 + t, U.q + (size_t)(r0 + g) * n16 + t};
  const uint32_t *const sz[2] = {G.sz + (size_t)(r0 + g) * groups, U.sz + (size_t)(r0 + g) * groups};
  float acc[2][2];
  tc_walk<2, DEPTH>(acc, q, sz, (size_t)8 * n16, (size_t)8 * groups, bs, 16 * L, sa, sb, gshift, g, t);
  if (t == 0) {
    part[wp][0][g] = acc[0][0];
    part[wp][1][g] = acc[0][1];
    part[wp][2][g] = acc[1][0];
    part[wp][3][g] = acc[1][1];
  }
  __syncthreads();
  if (threadIdx.x < TC_ROWS) { /* row r0 + r = r0 + (r & 7) + 8 (r >> 3); warps summed in order */
    const int r = threadIdx.x, hi = r >> 3, gg = r & 7;
    float a = 0.f, u = 0.f;
#pragma unroll
    for (int w = 0; w < W; w++) {
      a += part[w][hi][gg];
      u += part[w][2 + hi][gg];
    }
    pair8_store((unsigned short *)(hh + (size_t)tk * 2 * (I / 8)), I / 8, r0 + r, a / (1.0f + expf(-a)) * u);
  }
}

/* down, weighted by the routing weights and summed over the slots. grid (H/16, T); dynamic shared memory:
 * TC_DN_WARPS × 32 × (I/128) uint4. The warps' sums meet in shared memory in warp order. */
template <int DEPTH, int MINB>
__global__ void __launch_bounds__(TC_DN_WARPS * 32, MINB) k_tc_down(float *out, const uint4 *hh, const cu_lin *tab,
                                                                    const int *sel, const float *wts, int K, int I,
                                                                    int H, int gshift) {
  extern __shared__ uint4 tc_sm[];
  __shared__ float part[TC_DN_WARPS][TC_ROWS];
  const int tt = blockIdx.y, r0 = blockIdx.x * TC_ROWS, wp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int g = lane >> 2, t = lane & 3, n16 = I / 32, groups = I >> gshift, nst = I / 128, n8 = I / 8;
  uint4 *bs = tc_sm + (size_t)wp * 32 * nst;
  float og = 0.f, og8 = 0.f;
  for (int k = wp; k < K; k += TC_DN_WARPS) {
    __syncwarp(); /* the previous slot's reads of bs are done */
    tc_stage(bs, 16 * nst, hh + (size_t)(tt * K + k) * 2 * n8, n8, 0, nst, lane);
    const cu_lin D = tab[__ldg(sel + tt * K + k) * 3 + 2];
    const uint4 *const q[1] = {D.q + (size_t)(r0 + g) * n16 + t};
    const uint32_t *const sz[1] = {D.sz + (size_t)(r0 + g) * groups};
    float acc[1][2];
    tc_walk<1, DEPTH>(acc, q, sz, (size_t)8 * n16, (size_t)8 * groups, bs, 16 * nst, 0, nst, gshift, g, t);
    const float wk = __ldg(wts + tt * K + k);
    og = fmaf(wk, acc[0][0], og);
    og8 = fmaf(wk, acc[0][1], og8);
  }
  if (t == 0) {
    part[wp][g] = og;
    part[wp][g + 8] = og8;
  }
  __syncthreads();
  if (threadIdx.x < TC_ROWS) {
    float v = 0.f;
    for (int w = 0; w < TC_DN_WARPS && w < K; w++)
      v += part[w][threadIdx.x];
    out[(size_t)tt * H + r0 + threadIdx.x] = v;
  }
}

/* Test hook and MIMO_CUDA_MOE_DECODE=fp32: the fp32 decode kernels instead (before/after in one run). */
static int tc_off = -1;
extern "C" int mimo_cuda_moe_decode_fp32(int on) { return cu_switch(&tc_off, "MIMO_CUDA_MOE_DECODE", "fp32", on); }

/* Launch shapes (warps per up block, weight steps in flight, blocks per SM the registers are bounded for): the
 * first of each table is the default; the others are there to be measured (mimo_cuda_moe_tc_variant). */
typedef void (*tc_up_fn)(uint4 *, const uint4 *, const cu_lin *, const int *, int, int, int, int, int);
typedef void (*tc_dn_fn)(float *, const uint4 *, const cu_lin *, const int *, const float *, int, int, int, int);
static const struct { tc_up_fn f; int warps, depth, minb; } tc_ups[] = {
    {k_tc_up<4, 4, 4>, 4, 4, 4}, {k_tc_up<4, 2, 6>, 4, 2, 6}, {k_tc_up<8, 2, 3>, 8, 2, 3},
    {k_tc_up<8, 4, 2>, 8, 4, 2}, {k_tc_up<2, 4, 8>, 2, 4, 8}, {k_tc_up<8, 1, 4>, 8, 1, 4}};
static const struct { tc_dn_fn f; int depth, minb; } tc_dns[] = {
    {k_tc_down<8, 2>, 8, 2}, {k_tc_down<4, 3>, 4, 3}, {k_tc_down<2, 3>, 2, 3}, {k_tc_down<16, 1>, 16, 1}};
static int tc_up_v = -1, tc_dn_v = 0;

/* Test hook and MIMO_CUDA_TC_VARIANT=up,down (table indices): picks the launch shapes; returns how many up
 * variants there are (with up < 0: just that), and writes a label of the current choice. */
extern "C" int mimo_cuda_moe_tc_variant(int up, int dn, char *label, int n) {
  const int nu = (int)(sizeof tc_ups / sizeof *tc_ups), nd = (int)(sizeof tc_dns / sizeof *tc_dns);
  if (tc_up_v < 0) {
    const char *e = getenv("MIMO_CUDA_TC_VARIANT");
    int u = 0, d = 0;
    tc_up_v = 0;
    if (e && sscanf(e, "%d,%d", &u, &d) == 2 && u >= 0 && u < nu && d >= 0 && d < nd) {
      tc_up_v = u;
      tc_dn_v = d;
    }
  }
  if (up >= 0 && up < nu)
    tc_up_v = up;
  if (dn >= 0 && dn < nd)
    tc_dn_v = dn;
  if (label)
    snprintf(label, (size_t)n, "up %d warps x %d steps, down %d steps", tc_ups[tc_up_v].warps, tc_ups[tc_up_v].depth,
             tc_dns[tc_dn_v].depth);
  return up == -2 ? nd : nu;
}

/* Shared memory of the staged B operands (bytes): both must fit what the launch opts into. */
static size_t tc_up_smem(int H, int W) { return (size_t)W * 32 * cdiv(H / 128, W) * sizeof(uint4); }
static size_t tc_dn_smem(int I) { return (size_t)TC_DN_WARPS * 32 * (I / 128) * sizeof(uint4); }
enum { TC_SMEM_MAX = 96 * 1024 }; /* two down blocks per SM on A100 (164 KB) and H100 (228 KB) */

bool cu_moe_tc_fits(const cu_lin *L0, int H, int I) {
  return L0->fmt == CU_INT4 && L0->group % 128 == 0 && H % 128 == 0 && I % 128 == 0 && tc_up_smem(H, TC_UP_MAXW) <= TC_SMEM_MAX &&
         tc_dn_smem(I) <= TC_SMEM_MAX && !mimo_cuda_moe_decode_fp32(-1);
}

void cu_moe_tc(cu_ctx *c, float *out, void *hh, void *xh, const float *x, const cu_lin *tab, const int *sel,
               const float *wts, int T, int K, int I, int H, int group) {
  if (tc_up_v < 0)
    mimo_cuda_moe_tc_variant(-1, -1, NULL, 0);
  const tc_up_fn up = tc_ups[tc_up_v].f;
  const tc_dn_fn dn = tc_dns[tc_dn_v].f;
  const int W = tc_ups[tc_up_v].warps, gshift = __builtin_ctz((unsigned)group), L = cdiv(H / 128, W);
  const size_t su = tc_up_smem(H, W), sd = tc_dn_smem(I);
  k_tc_split<<<cdiv((long)T * H / 8, 256), 256, 0, c->st>>>((uint4 *)xh, x, T, H);
  MIMO_CUDA_LAUNCHED(c);
  if (MIMO_CUDA(c, cudaFuncSetAttribute(up, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)su)) != MIMO_OK ||
      MIMO_CUDA(c, cudaFuncSetAttribute(dn, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)sd)) != MIMO_OK)
    return;
  up<<<dim3(I / TC_ROWS, T * K), W * 32, su, c->st>>>((uint4 *)hh, (const uint4 *)xh, tab, sel, K, I, H, gshift, L);
  MIMO_CUDA_LAUNCHED(c);
  cu_moe_mark(c, 3);
  dn<<<dim3(H / TC_ROWS, T), TC_DN_WARPS * 32, sd, c->st>>>(out, (const uint4 *)hh, tab, sel, wts, K, I, H, gshift);
  MIMO_CUDA_LAUNCHED(c);
}
