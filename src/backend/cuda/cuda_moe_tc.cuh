/* int4 MoE decode on integer tensor cores (few tokens a step; groups that are multiples of 128).
 *
 * Why (docs/cuda.md, round 5): the fp16 tensor-core kernels spent ~145 warp-instructions per 16 rows × 128 inputs
 * of one matrix (nibble → fp16 dequantisation alone 72), so with the few warps a decode step has per SM they were
 * bound by instruction issue and latency, not DRAM. Here the weights go into mma.m16n8k32 as they are: one LOP3
 * takes the even nibbles of a 32-bit word as four u8 (q & 0x0f0f0f0f), a shift and a LOP3 the odd ones, and the
 * activations come as signed 8-bit limbs: 3 instructions per 8 weights and 4 mmas per step instead of 72 + 8.
 *
 * Exact arithmetic: per 128-input step (one scale group or a part of one) x is scaled by the power of two s with
 * max|x| / s <= 127 and written as s·(l0 + l1/128 + l2/128²), l0 in [-127, 127], l1, l2 in [-64, 64] (22
 * significant bits relative to the step's largest input, as fp16 hi + lo did). The limbs are the B operand's
 * columns 0..2; the mma sums n·l exactly in int32; the zero point comes off as o·Σl (Σl per step, precomputed);
 * the step's sum is converted to fp32 once and multiplied by the weight group's scale and s.
 *
 * Fragments (m16n8k32, 8-bit): thread (g = lane/4, t = lane%4) holds for rows g and g+8 the k-slots 4t..4t+3 and
 * 16+4t..16+4t+3; it loads word t of the step (32 inputs) of rows g and g+8, and sub-word w (inputs 8w..8w+7 of the
 * word) is one mma: its even nibbles in slots 4t.., its odd ones in 16+4t... B stores each limb column in that
 * order: byte (4t + w)·8 + j holds input 32t + 8w + (j < 4 ? 2j : 2(j − 4) + 1). Columns 3..7 are zero. */
#ifndef MIMO_BACKEND_CUDA_MOE_TC_CUH
#define MIMO_BACKEND_CUDA_MOE_TC_CUH
#include <stdint.h>

#include "backend/cuda/cuda_internal.h"

enum {
  TC_ROWS = 16,
  TC_COL = 144,               /* bytes per limb column of a step: 128 + 16 so lanes g = 0..2 hit distinct banks */
  TC_REC = 3 * TC_COL + 32,   /* a step's B record: 3 limb columns, then (Σ-term, scale) for each t */
  TC_SMEM_MAX = 128 * 1024    /* what a launch shape may use: 2 blocks per SM on H100 (228 KB) up to 96 KB, one on
                               * A100 (164 KB); the 16-warp down shape takes 124 KB (one block per SM, 16 warps) */
};

/* d += A·B, A 16×32 u8 (rows g, g+8), B 32×8 s8, int32 accumulators. */
__device__ __forceinline__ void mma_u8s8(int (&d)[4], uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3, uint32_t b0,
                                         uint32_t b1) {
  asm("mma.sync.aligned.m16n8k32.row.col.s32.u8.s8.s32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
      : "+r"(d[0]), "+r"(d[1]), "+r"(d[2]), "+r"(d[3])
      : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

/* One 128-input step of a vector: xs its 4 inputs of lane (4·lane..4·lane+3), r the step's record. Whole warp. The
 * record's tail holds per t: (128·X_2t + X_2t+1, s·2^(−7(2t+1))), X_c = Σ of limb c over the step. */
__device__ __forceinline__ void tc_split_step(char *r, float4 u, int lane) {
  const float xv[4] = {u.x, u.y, u.z, u.w};
  float m = fmaxf(fmaxf(fabsf(u.x), fabsf(u.y)), fmaxf(fabsf(u.z), fabsf(u.w)));
  for (int o = 16; o; o >>= 1)
    m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, o));
  int e = 0; /* m / 127 = f·2^e, f < 1: 2^e >= m / 127 */
  if (m > 0.f)
    frexpf(m / 127.f, &e);
  const float inv = ldexpf(1.f, -e);
  const int t = lane >> 3, w = (lane >> 1) & 3, j0 = 4 * (lane & 1);
  int sum[3] = {0, 0, 0};
#pragma unroll
  for (int k = 0; k < 4; k++) {
    const float a = xv[k] * inv, l0 = rintf(a), b = (a - l0) * 128.f, l1 = rintf(b), l2 = rintf((b - l1) * 128.f);
    const int j = j0 + k, at = (4 * t + w) * 8 + ((j & 1) ? 4 + (j >> 1) : (j >> 1));
    const int l[3] = {(int)l0, (int)l1, (int)l2};
#pragma unroll
    for (int c = 0; c < 3; c++) {
      r[c * TC_COL + at] = (char)l[c];
      sum[c] += l[c];
    }
  }
#pragma unroll
  for (int c = 0; c < 3; c++)
    for (int o = 16; o; o >>= 1)
      sum[c] += __shfl_xor_sync(0xffffffffu, sum[c], o);
  if (lane < 4) { /* t = lane: columns 2t, 2t+1 */
    int *tl = (int *)(r + 3 * TC_COL) + 2 * lane;
    tl[0] = lane == 0 ? 128 * sum[0] + sum[1] : lane == 1 ? 128 * sum[2] : 0;
    tl[1] = __float_as_int(lane < 2 ? ldexpf(1.f, e - 7 * (2 * lane + 1)) : 0.f);
  }
}

/* Where a 16-row tile's words sit (q4_idx, sz_idx): thread (g, t) reads word t of row g and of row g+8 each step.
 * Row-major: a step is 4 words further, row g+8 is 8 rows further. Tiled: a step is 64 words further (1 KB), row
 * g+8 is 32 words further; scale words of a group 16 further, row g+8 8 further. */
struct tc_map {
  int qstep, sstep; /* uint4 / scale words per step (per group) */
  size_t r8w, r8s;  /* row g+8 from row g */
};
__device__ __forceinline__ tc_map tc_map_of(bool tiled, int n16, int groups) {
  return tiled ? tc_map{64, 16, 32, 8} : tc_map{4, 1, (size_t)8 * n16, (size_t)8 * groups};
}
/* Row g's word t at step 0, and row g's first scale word, of tile r0 / 16 (n16 = in / 32 words per row). */
__device__ __forceinline__ const uint4 *tc_q(const uint4 *q, bool tiled, int r0, int g, int t, int n16) {
  return q + q4_idx(tiled, n16, r0 + g, t);
}
__device__ __forceinline__ const uint32_t *tc_sz(const uint32_t *sz, bool tiled, int r0, int g, int groups) {
  return sz + sz_idx(tiled, groups, r0 + g, 0);
}

/* A warp walks a run of steps through a ring of S stages in shared memory that cp.async fills S − 1 steps ahead,
 * so the bytes in flight do not live in registers. A stage is one step: the 16-byte words of rows g and g+8 of
 * each matrix in lane order, the B record, and the 16 rows' scale words of each matrix. */
template <int NM> struct tc_ring {
  enum { WB = NM * 2 * 32 * 16, SB = NM * 16 * 4, BYTES = WB + TC_REC + SB };
};

/* The weight words of step s (rows g and g+8 of each of NM matrices or tiles, lane order) to the stage's start. */
template <int NM>
__device__ __forceinline__ void tc_fill_q(char *st, const uint4 *const *q, const tc_map &mp, int s, int lane) {
  uint4 *w = (uint4 *)st;
#pragma unroll
  for (int m = 0; m < NM; m++) {
    cp16(w + (2 * m) * 32 + lane, q[m] + (size_t)mp.qstep * s);
    cp16(w + (2 * m + 1) * 32 + lane, q[m] + mp.r8w + (size_t)mp.qstep * s);
  }
}
/* Issues the weights of step s into stage st: q[m] row g's word t (step 0), scp the scale words of row lane % 16 of
 * matrix lane / 16. Not committed. */
template <int NM>
__device__ __forceinline__ void tc_fill_w(char *st, const uint4 *const (&q)[NM], const uint32_t *scp, const tc_map &mp,
                                          int s, int gshift, int lane) {
  tc_fill_q<NM>(st, q, mp, s, lane);
  if (lane < NM * 16)
    cp4((uint32_t *)(st + tc_ring<NM>::WB + TC_REC) + lane, scp + (size_t)mp.sstep * ((s * 128) >> gshift));
}
/* Issues the vector's record of step s (rec: its step records) into stage st. Not committed. */
template <int NM> __device__ __forceinline__ void tc_fill_r(char *st, const char *rec, int s, int lane) {
  if (lane < TC_REC / 16)
    cp16(st + tc_ring<NM>::WB + 16 * lane, rec + (size_t)s * TC_REC + 16 * lane);
}

/* One step from stage st: acc[m][0|1] += scale · (rows g, g+8 of matrix m) · x over this thread's limb columns
 * (the four t of a group add up to the row's sum). */
template <int NM>
__device__ __forceinline__ void tc_use(float (&acc)[NM][2], const char *st, int g, int t, int lane) {
  const uint4 *w = (const uint4 *)st;
  const char *rb = st + tc_ring<NM>::WB;
  const uint32_t *sc = (const uint32_t *)(rb + TC_REC);
  const uint4 z = make_uint4(0, 0, 0, 0);
  const uint4 b0 = g < 3 ? *(const uint4 *)(rb + g * TC_COL + t * 32) : z;
  const uint4 b1 = g < 3 ? *(const uint4 *)(rb + g * TC_COL + t * 32 + 16) : z;
  const int2 tl = *(const int2 *)(rb + 3 * TC_COL + 8 * t);
  const float xs = __int_as_float(tl.y);
#pragma unroll
  for (int m = 0; m < NM; m++) {
    const uint4 q = w[(2 * m) * 32 + lane], q8 = w[(2 * m + 1) * 32 + lane];
    const uint32_t qa[4] = {q.x, q.y, q.z, q.w}, qb[4] = {q8.x, q8.y, q8.z, q8.w};
    const uint32_t bb[8] = {b0.x, b0.y, b0.z, b0.w, b1.x, b1.y, b1.z, b1.w};
    int d[4] = {0, 0, 0, 0};
#pragma unroll
    for (int k = 0; k < 4; k++)
      mma_u8s8(d, qa[k] & 0x0f0f0f0fu, qb[k] & 0x0f0f0f0fu, (qa[k] >> 4) & 0x0f0f0f0fu, (qb[k] >> 4) & 0x0f0f0f0fu,
               bb[2 * k], bb[2 * k + 1]);
    const uint32_t zg = sc[m * 16 + g], zg8 = sc[m * 16 + g + 8];
    const int vg = d[0] * 128 + d[1] - (int)(zg & 0xffu) * tl.x, vg8 = d[2] * 128 + d[3] - (int)(zg8 & 0xffu) * tl.x;
    acc[m][0] = fmaf(bf16_hi(zg) * xs, (float)vg, acc[m][0]);
    acc[m][1] = fmaf(bf16_hi(zg8) * xs, (float)vg8, acc[m][1]);
  }
}

/* Steps 0..n-1 through the warp's ring of S stages of `bytes` each: fill_w(stage, i) issues step i's weights,
 * fill_r(stage, i) its activation records, use(stage, i) consumes it. Whole warp. The first S − 1 steps' weights
 * are issued before wait() (they need nothing from the previous kernel or task), their records after it. (Reading
 * step i + 1's operands into registers while step i computes was measured: no gain at 1, 8 or 32 tokens,
 * docs/cuda.md round 5.) */
template <int S, typename FillW, typename Wait, typename FillR, typename Use>
__device__ __forceinline__ void tc_ring_walk_after(char *ring, int bytes, int n, FillW fill_w, Wait wait, FillR fill_r,
                                                   Use use) {
#pragma unroll
  for (int i = 0; i < S - 1; i++)
    if (i < n)
      fill_w(ring + i * bytes, i);
  wait();
#pragma unroll
  for (int i = 0; i < S - 1; i++) {
    if (i < n)
      fill_r(ring + i * bytes, i);
    cp_commit(); /* group i: step i's records (group 0 also every early weight) */
  }
  int fs = S - 1, us = 0; /* stages being filled and used */
  for (int i = 0; i < n; i++) {
    if (i + S - 1 < n) {
      fill_w(ring + fs * bytes, i + S - 1);
      fill_r(ring + fs * bytes, i + S - 1);
    }
    cp_commit();
    cp_wait<S - 1>();
    __syncwarp(); /* the other lanes' copies of step i have landed */
    use(ring + us * bytes, i);
    __syncwarp(); /* stage us is refilled next iteration */
    fs = fs + 1 == S ? 0 : fs + 1;
    us = us + 1 == S ? 0 : us + 1;
  }
}
/* The same in a kernel's first walk: the wait is for the previous kernel (pdl_start). */
template <int S, typename FillW, typename FillR, typename Use>
__device__ __forceinline__ void tc_ring_walk(char *ring, int bytes, int n, FillW fill_w, FillR fill_r, Use use) {
  tc_ring_walk_after<S>(ring, bytes, n, fill_w, [] { pdl_start(); }, fill_r, use);
}

/* Sum over the four t of each group (fixed order: deterministic). */
__device__ __forceinline__ float group_sum(float v) {
  v += __shfl_xor_sync(0xffffffffu, v, 1);
  return v + __shfl_xor_sync(0xffffffffu, v, 2);
}

/* gate+up: a warp's sums of its 16 rows of gate (pg) and up (pu), summed over the four t of each group */
__device__ __forceinline__ void tc_up_part(float *pg, float *pu, float (&acc)[2][2], int g, int t) {
  const float a0 = group_sum(acc[0][0]), a1 = group_sum(acc[0][1]), u0 = group_sum(acc[1][0]), u1 = group_sum(acc[1][1]);
  if (t == 0) {
    pg[g] = a0;
    pg[g + 8] = a1;
    pu[g] = u0;
    pu[g + 8] = u1;
  }
}
/* down: a slot's sums done, weighted by its routing weight w into og (fixed order), acc cleared for the next slot */
template <int NT> __device__ __forceinline__ void tc_weigh_slot(float (&og)[NT][2], float (&acc)[NT][2], float w) {
#pragma unroll
  for (int m = 0; m < NT; m++) {
    og[m][0] = fmaf(w, acc[m][0], og[m][0]);
    og[m][1] = fmaf(w, acc[m][1], og[m][1]);
    acc[m][0] = acc[m][1] = 0.f;
  }
}
/* down: each warp's NT·16 row sums into its row of part (stride floats apart), then the block's sum over its W
 * warps in warp order to out (NT·16 rows). Whole block. */
template <int NT, int W>
__device__ __forceinline__ void tc_down_store(float *part, int stride, const float (&og)[NT][2], float *out, int wp,
                                              int g, int t) {
#pragma unroll
  for (int m = 0; m < NT; m++) {
    const float a = group_sum(og[m][0]), b = group_sum(og[m][1]);
    if (t == 0) {
      part[wp * stride + m * TC_ROWS + g] = a;
      part[wp * stride + m * TC_ROWS + g + 8] = b;
    }
  }
  __syncthreads();
  if (threadIdx.x < NT * TC_ROWS) {
    float v = 0.f;
    for (int w = 0; w < W; w++)
      v += part[w * stride + threadIdx.x];
    out[threadIdx.x] = v;
  }
}
#endif
