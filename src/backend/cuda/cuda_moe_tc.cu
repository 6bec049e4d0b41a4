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
#include <string.h>

#include "backend/cuda/cuda_internal.h"

enum { TC_ROWS = 16, TC_UP_WARPS = 4, TC_DN_WARPS = 8, TC_DEPTH = 4 };

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
  const uint32_t qg[4] = {wg.x, wg.y, wg.z, wg.w}, qg8[4] = {wg8.x, wg8.y, wg8.z, wg8.w};
#pragma unroll
  for (int w = 0; w < 4; w++) {
    uint32_t ag[4], ag8[4]; /* pairs (i, i+4) of sub-word w, as n − z in fp16 */
#pragma unroll
    for (int i = 0; i < 4; i++) {
      ag[i] = hadd2(((qg[w] >> (4 * i)) & 0x000f000fu) | 0x64006400u, og);
      ag8[i] = hadd2(((qg8[w] >> (4 * i)) & 0x000f000fu) | 0x64006400u, og8);
    }
    mma_f16(d, ag[0], ag8[0], ag[1], ag8[1], b[w].x, b[w].y);
    mma_f16(d, ag[2], ag8[2], ag[3], ag8[3], b[w].z, b[w].w);
  }
  sg = d[0] + d[1];
  sg8 = d[2] + d[3];
}

/* The thread's B fragments for a step: pair8 uint4s of inputs 128·step + 32t + 8w (w = 0..3) of column g
 * (g < 2), zero otherwise. */
__device__ __forceinline__ void tc_b(uint4 (&b)[4], const uint4 *vec, int n8, int step, int g, int t) {
#pragma unroll
  for (int w = 0; w < 4; w++)
    b[w] = g < 2 ? __ldg(vec + (size_t)g * n8 + 16 * step + 4 * t + w) : make_uint4(0, 0, 0, 0);
}

/* gate+up+SiLU·up: warp = 16 rows of gate and of up for one (token, slot); block = TC_UP_WARPS such tiles of
 * one slot. Weight loads run TC_DEPTH steps ahead in registers. */
__global__ void __launch_bounds__(TC_UP_WARPS * 32) k_tc_up(uint4 *hh, const uint4 *xh, const cu_lin *tab,
                                                            const int *sel, int K, int I, int H, int gshift) {
  const int tk = blockIdx.y, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
  const int r0 = (blockIdx.x * TC_UP_WARPS + (threadIdx.x >> 5)) * TC_ROWS;
  if (r0 >= I)
    return;
  const int e = __ldg(sel + tk), n16 = H / 32, groups = H >> gshift, nst = H / 128, n8 = H / 8;
  const cu_lin G = tab[e * 3], U = tab[e * 3 + 1];
  const uint4 *qg = G.q + (size_t)(r0 + g) * n16 + t, *qu = U.q + (size_t)(r0 + g) * n16 + t;
  const uint32_t *sg = G.sz + (size_t)(r0 + g) * groups, *su = U.sz + (size_t)(r0 + g) * groups;
  const size_t r8w = (size_t)8 * n16, r8s = (size_t)8 * groups; /* row g -> row g+8 */
  const uint4 *x = xh + (size_t)(tk / K) * 2 * n8;
  uint4 wq[TC_DEPTH][4];
  uint32_t ws[TC_DEPTH][4];
  auto load = [&](int d, int s) {
    if (s < nst) {
      wq[d][0] = __ldg(qg + 4 * s);
      wq[d][1] = __ldg(qg + r8w + 4 * s);
      wq[d][2] = __ldg(qu + 4 * s);
      wq[d][3] = __ldg(qu + r8w + 4 * s);
      const int gi = (s * 128) >> gshift;
      ws[d][0] = __ldg(sg + gi);
      ws[d][1] = __ldg(sg + r8s + gi);
      ws[d][2] = __ldg(su + gi);
      ws[d][3] = __ldg(su + r8s + gi);
    }
  };
#pragma unroll
  for (int d = 0; d < TC_DEPTH; d++)
    load(d, d);
  float ag = 0.f, ag8 = 0.f, au = 0.f, au8 = 0.f;
  for (int s0 = 0; s0 < nst; s0 += TC_DEPTH) {
#pragma unroll
    for (int d = 0; d < TC_DEPTH; d++) {
      const int s = s0 + d;
      if (s < nst) {
        uint4 b[4];
        tc_b(b, x, n8, s, g, t);
        float pg, pg8, pu, pu8;
        tc_step(wq[d][0], wq[d][1], ws[d][0], ws[d][1], b, pg, pg8);
        tc_step(wq[d][2], wq[d][3], ws[d][2], ws[d][3], b, pu, pu8);
        ag = fmaf(bf16_hi(ws[d][0]), pg, ag);
        ag8 = fmaf(bf16_hi(ws[d][1]), pg8, ag8);
        au = fmaf(bf16_hi(ws[d][2]), pu, au);
        au8 = fmaf(bf16_hi(ws[d][3]), pu8, au8);
        load(d, s + TC_DEPTH);
      }
    }
  }
  if (t == 0) {
    unsigned short *h = (unsigned short *)(hh + (size_t)tk * 2 * (I / 8));
    pair8_store(h, I / 8, r0 + g, ag / (1.0f + expf(-ag)) * au);
    pair8_store(h, I / 8, r0 + g + 8, ag8 / (1.0f + expf(-ag8)) * au8);
  }
}

/* down, weighted by the routing weights and summed over the slots: block = 16 output rows of one token,
 * warp w takes slots w, w + TC_DN_WARPS, ...; the warps' sums meet in shared memory in warp order. */
__global__ void __launch_bounds__(TC_DN_WARPS * 32) k_tc_down(float *out, const uint4 *hh, const cu_lin *tab,
                                                              const int *sel, const float *wts, int K, int I, int H,
                                                              int gshift) {
  __shared__ float part[TC_DN_WARPS][TC_ROWS];
  const int tt = blockIdx.y, r0 = blockIdx.x * TC_ROWS, wp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int g = lane >> 2, t = lane & 3, n16 = I / 32, groups = I >> gshift, nst = I / 128, n8 = I / 8;
  float og = 0.f, og8 = 0.f;
  for (int k = wp; k < K; k += TC_DN_WARPS) {
    const int e = __ldg(sel + tt * K + k);
    const cu_lin D = tab[e * 3 + 2];
    const uint4 *q = D.q + (size_t)(r0 + g) * n16 + t;
    const uint32_t *sz = D.sz + (size_t)(r0 + g) * groups;
    const size_t r8w = (size_t)8 * n16, r8s = (size_t)8 * groups;
    const uint4 *hv = hh + (size_t)(tt * K + k) * 2 * n8;
    uint4 wq[TC_DEPTH][2];
    uint32_t ws[TC_DEPTH][2];
    auto load = [&](int d, int s) {
      if (s < nst) {
        wq[d][0] = __ldg(q + 4 * s);
        wq[d][1] = __ldg(q + r8w + 4 * s);
        const int gi = (s * 128) >> gshift;
        ws[d][0] = __ldg(sz + gi);
        ws[d][1] = __ldg(sz + r8s + gi);
      }
    };
#pragma unroll
    for (int d = 0; d < TC_DEPTH; d++)
      load(d, d);
    float a = 0.f, a8 = 0.f;
    for (int s0 = 0; s0 < nst; s0 += TC_DEPTH) {
#pragma unroll
      for (int d = 0; d < TC_DEPTH; d++) {
        const int s = s0 + d;
        if (s < nst) {
          uint4 b[4];
          tc_b(b, hv, n8, s, g, t);
          float p, p8;
          tc_step(wq[d][0], wq[d][1], ws[d][0], ws[d][1], b, p, p8);
          a = fmaf(bf16_hi(ws[d][0]), p, a);
          a8 = fmaf(bf16_hi(ws[d][1]), p8, a8);
          load(d, s + TC_DEPTH);
        }
      }
    }
    const float wk = __ldg(wts + tt * K + k);
    og = fmaf(wk, a, og);
    og8 = fmaf(wk, a8, og8);
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
extern "C" int mimo_cuda_moe_decode_fp32(int on) {
  if (tc_off < 0) {
    const char *e = getenv("MIMO_CUDA_MOE_DECODE");
    tc_off = e && !strcmp(e, "fp32");
  }
  const int o = tc_off;
  if (on >= 0)
    tc_off = on;
  return o;
}

bool cu_moe_tc_fits(const cu_lin *L0, int H, int I) {
  return L0->fmt == CU_INT4 && L0->group % 128 == 0 && H % 128 == 0 && I % 128 == 0 && !mimo_cuda_moe_decode_fp32(-1);
}

void cu_moe_tc(cu_ctx *c, float *out, void *hh, void *xh, const float *x, const cu_lin *tab, const int *sel,
               const float *wts, int T, int K, int I, int H, int group) {
  const int gshift = __builtin_ctz((unsigned)group);
  k_tc_split<<<cdiv((long)T * H / 8, 256), 256, 0, c->st>>>((uint4 *)xh, x, T, H);
  MIMO_CUDA_LAUNCHED(c);
  k_tc_up<<<dim3(cdiv(I / TC_ROWS, TC_UP_WARPS), T * K), TC_UP_WARPS * 32, 0, c->st>>>(
      (uint4 *)hh, (const uint4 *)xh, tab, sel, K, I, H, gshift);
  MIMO_CUDA_LAUNCHED(c);
  cu_moe_mark(c, 3);
  k_tc_down<<<dim3(H / TC_ROWS, T), TC_DN_WARPS * 32, 0, c->st>>>(out, (const uint4 *)hh, tab, sel, wts, K, I, H,
                                                                  gshift);
  MIMO_CUDA_LAUNCHED(c);
}
