/* int4 MoE decode on integer tensor cores, weights streamed straight into registers (round 20, docs/cuda.md).
 *
 * Why: the ring kernels (cuda_moe_tc.cuh) stage every weight word through shared memory, so a warp's bytes in flight
 * are bounded by the ring that shares the SM's shared memory with the other warps' rings: the one-token gate+up runs
 * two waves of two 8-warp blocks per SM and each warp walks only 8 steps behind a 3-step prologue. Here a lane loads
 * its own words (rows g and g+8 of each matrix, word t: exactly its mma A fragment) D steps ahead into registers and
 * only the activations' step records sit in shared memory, so the whole grid fits in one wave and nothing but the
 * records is written to shared memory. Same products and sums in the same order as tc_use: the outputs are bit for
 * bit the ring kernels'. */
#ifndef MIMO_BACKEND_CUDA_MOE_TC_REG_CUH
#define MIMO_BACKEND_CUDA_MOE_TC_REG_CUH
#include "backend/cuda/cuda_moe_tc.cuh"

/* Streamed once: not kept in L1 (volatile: issued where written, D steps ahead of their use). */
__device__ __forceinline__ uint4 ld_stream16(const uint4 *p) {
  uint4 v;
  asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
               : "l"(p));
  return v;
}
__device__ __forceinline__ uint32_t ld_stream4(const uint32_t *p) {
  uint32_t v;
  asm volatile("ld.global.nc.L1::no_allocate.u32 %0, [%1];\n" : "=r"(v) : "l"(p));
  return v;
}

/* A lane's part of one step: rows g and g+8 (word t) of each of NM matrices or row tiles, and the scale word of row
 * lane % 16 of matrix lane / 16 (lanes past NM·16 hold none), which tc_reg_use hands round by shuffles. */
template <int NM> struct tc_regs {
  uint4 q[NM][2];
  uint32_t s;
};

/* Issues step s's loads into r: q[m] row g's word t at step 0, scp this lane's scale word of group 0. */
template <int NM>
__device__ __forceinline__ void tc_reg_load(tc_regs<NM> &r, const uint4 *const (&q)[NM], const uint32_t *scp,
                                            const tc_map &mp, int s, int gshift, int lane) {
#pragma unroll
  for (int m = 0; m < NM; m++) {
    r.q[m][0] = ld_stream16(q[m] + (size_t)mp.qstep * s);
    r.q[m][1] = ld_stream16(q[m] + mp.r8w + (size_t)mp.qstep * s);
  }
  r.s = lane < NM * 16 ? ld_stream4(scp + (size_t)mp.sstep * ((s * 128) >> gshift)) : 0u;
}

/* tc_use with the weights from r and the step's record at rb (shared memory): the same mmas, sums and roundings. */
template <int NM>
__device__ __forceinline__ void tc_reg_use(float (&acc)[NM][2], const tc_regs<NM> &r, const char *rb, int g, int t) {
  const uint4 z = make_uint4(0, 0, 0, 0);
  const uint4 b0 = g < 3 ? *(const uint4 *)(rb + g * TC_COL + t * 32) : z;
  const uint4 b1 = g < 3 ? *(const uint4 *)(rb + g * TC_COL + t * 32 + 16) : z;
  const int2 tl = *(const int2 *)(rb + 3 * TC_COL + 8 * t);
  const float xs = __int_as_float(tl.y);
  const uint32_t bb[8] = {b0.x, b0.y, b0.z, b0.w, b1.x, b1.y, b1.z, b1.w};
#pragma unroll
  for (int m = 0; m < NM; m++) {
    const uint4 q = r.q[m][0], q8 = r.q[m][1];
    const uint32_t qa[4] = {q.x, q.y, q.z, q.w}, qb[4] = {q8.x, q8.y, q8.z, q8.w};
    int d[4] = {0, 0, 0, 0};
#pragma unroll
    for (int k = 0; k < 4; k++)
      mma_u8s8(d, qa[k] & 0x0f0f0f0fu, qb[k] & 0x0f0f0f0fu, (qa[k] >> 4) & 0x0f0f0f0fu, (qb[k] >> 4) & 0x0f0f0f0fu,
               bb[2 * k], bb[2 * k + 1]);
    const uint32_t zg = __shfl_sync(0xffffffffu, r.s, m * 16 + g), zg8 = __shfl_sync(0xffffffffu, r.s, m * 16 + g + 8);
    const int vg = d[0] * 128 + d[1] - (int)(zg & 0xffu) * tl.x, vg8 = d[2] * 128 + d[3] - (int)(zg8 & 0xffu) * tl.x;
    acc[m][0] = fmaf(bf16_hi(zg) * xs, (float)vg, acc[m][0]);
    acc[m][1] = fmaf(bf16_hi(zg8) * xs, (float)vg8, acc[m][1]);
  }
}

/* Steps 0..n-1 with D of them in flight in registers: load(r, i) issues step i into r, use(r, i) consumes it. The
 * first D are issued by the caller's prologue (tc_reg_prime) so that they can go out before a wait. Whole warp. */
template <int NM, int D, typename Load, typename Use>
__device__ __forceinline__ void tc_reg_walk(tc_regs<NM> (&rg)[D], int n, Load load, Use use) {
  for (int i0 = 0; i0 < n; i0 += D) {
#pragma unroll
    for (int j = 0; j < D; j++) {
      const int i = i0 + j;
      if (i < n) {
        use(rg[j], i);
        if (i + D < n)
          load(rg[j], i + D);
      }
    }
  }
}
template <int NM, int D, typename Load>
__device__ __forceinline__ void tc_reg_prime(tc_regs<NM> (&rg)[D], int n, Load load) {
#pragma unroll
  for (int j = 0; j < D; j++)
    if (j < n)
      load(rg[j], j);
}

/* gate+up+SiLU·up -> hf [T·K][I], as k_tc_up (same grid, same P-way split of the steps and the same sums), the
 * weights D steps ahead in registers and the token's step records once per block in dynamic shared memory
 * (H / 128 · TC_REC bytes). */
template <int W, int P, int D>
__global__ void __launch_bounds__(W * 32) k_tcr_up(float *hf, const char *xrec, const cu_lin *tab, const int *sel, int K,
                                                   int I, int H, int gshift, bool tiled) {
  extern __shared__ uint4 tc_sm[];
  __shared__ float part[W][2][TC_ROWS];
  const int tk = blockIdx.y, wp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
  const int r0 = (blockIdx.x * (W / P) + wp / P) * TC_ROWS, n16 = H / 32, groups = H >> gshift, nst = H / 128;
  const int pi = wp % P, sa = pi * nst / P, n = (pi + 1) * nst / P - sa;
  const bool live = r0 < I;
  const tc_map mp = tc_map_of(tiled, n16, groups);
  const uint4 *q[2] = {NULL, NULL};
  const uint32_t *scp = NULL;
  tc_regs<2> rg[D];
  const auto load = [&](tc_regs<2> &r, int i) { tc_reg_load<2>(r, q, scp, mp, sa + i, gshift, lane); };
  if (live) {
    const int e = __ldcg(sel + tk); /* routed two launches back: complete when this kernel starts (cu_launch) */
    q[0] = tc_q(tab[e * 3].q, tiled, r0, g, t, n16);
    q[1] = tc_q(tab[e * 3 + 1].q, tiled, r0, g, t, n16);
    scp = tc_sz(tab[e * 3 + (lane >> 4)].sz, tiled, r0, lane & 15, groups);
    tc_reg_prime<2, D>(rg, n, load);
  }
  pdl_start();
  char *recs = (char *)tc_sm;
  const char *src = xrec + (size_t)(tk / K) * nst * TC_REC;
  for (int c = threadIdx.x; c < nst * (TC_REC / 16); c += W * 32)
    cp16(recs + 16 * c, src + 16 * c);
  cp_commit();
  cp_wait<0>();
  __syncthreads();
  if (live) {
    float acc[2][2] = {{0.f, 0.f}, {0.f, 0.f}};
    tc_reg_walk<2, D>(rg, n, load,
                      [&](const tc_regs<2> &r, int i) { tc_reg_use<2>(acc, r, recs + (size_t)(sa + i) * TC_REC, g, t); });
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

/* down as k_tc_down (same grid, slots and sums), the weights D steps ahead in registers across the warp's slots, and
 * each slot's step records (this warp's part of them) copied into the warp's own dynamic shared memory when the
 * slot begins: W · ceil(I / 128 / P) · TC_REC bytes a block. */
template <int W, int D, int NT, int P>
__global__ void __launch_bounds__(W * 32) k_tcr_down(float *out, const char *hrec, const cu_lin *tab, const int *sel,
                                                     const float *wts, int K, int I, int H, int gshift, bool tiled) {
  extern __shared__ uint4 tc_sm[];
  __shared__ const uint4 *sq[32];
  __shared__ const uint32_t *ss[32];
  __shared__ float sw[32], part[W][NT * TC_ROWS];
  const int tt = blockIdx.y, r0 = blockIdx.x * NT * TC_ROWS, wp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int g = lane >> 2, t = lane & 3, n16 = I / 32, groups = I >> gshift, nst = I / 128;
  const int st = lane >> 4 < NT ? lane >> 4 : 0; /* the row tile whose scale words this lane fetches */
  if (threadIdx.x < K) { /* the slots' weights, fetched once; routed launches back, complete now (cu_launch) */
    const cu_lin *Dn = tab + __ldcg(sel + tt * K + threadIdx.x) * 3 + 2;
    sq[threadIdx.x] = Dn->q;
    ss[threadIdx.x] = Dn->sz;
    sw[threadIdx.x] = __ldcg(wts + tt * K + threadIdx.x);
  }
  __syncthreads();
  const tc_map mp = tc_map_of(tiled, n16, groups);
  constexpr int SW = W / P; /* slots in flight per block */
  const int wg = wp / P, pi = wp % P, sa = pi * nst / P, len = (pi + 1) * nst / P - sa;
  const int ns = wg < K ? (K - wg + SW - 1) / SW : 0;
  char *recs = (char *)tc_sm + (size_t)wp * ((nst + P - 1) / P) * TC_REC;
  tc_regs<NT> rg[D];
  int wk = wg, ws = 0; /* slot and step (of this warp's part) of the next load */
  const auto load = [&](tc_regs<NT> &r, int) {
    const uint4 *q[NT];
#pragma unroll
    for (int m = 0; m < NT; m++)
      q[m] = tc_q(sq[wk], tiled, r0 + m * TC_ROWS, g, t, n16);
    tc_reg_load<NT>(r, q, tc_sz(ss[wk], tiled, r0 + st * TC_ROWS, lane & 15, groups), mp, sa + ws, gshift, lane);
    if (++ws == len) {
      ws = 0;
      wk += SW;
    }
  };
  tc_reg_prime<NT, D>(rg, ns * len, load);
  pdl_start();
  float acc[NT][2] = {}, og[NT][2] = {};
  int uk = wg, us = 0; /* slot and step of the next use */
  tc_reg_walk<NT, D>(rg, ns * len, load, [&](const tc_regs<NT> &r, int) {
    if (us == 0) { /* the slot's records of this warp's steps, after every lane is done with the last slot's */
      const char *src = hrec + ((size_t)(tt * K + uk) * nst + sa) * TC_REC;
      __syncwarp();
      for (int c = lane; c < len * (TC_REC / 16); c += 32)
        cp16(recs + 16 * c, src + 16 * c);
      cp_commit();
      cp_wait<0>();
      __syncwarp();
    }
    tc_reg_use<NT>(acc, r, recs + (size_t)us * TC_REC, g, t);
    if (++us == len) { /* the slot's last step (of this warp's part): weight it into the output */
      tc_weigh_slot<NT>(og, acc, sw[uk]);
      us = 0;
      uk += SW;
    }
  });
  tc_down_store<NT, W>(&part[0][0], NT * TC_ROWS, og, out + (size_t)tt * H + r0, wp, g, t);
}
/* ---- grouped by expert (cuda_moe_tc.cu's k_tcg) with the weights in registers ---- */

/* tcg_use with the weights from r: member mb's record of the step at rb + mb · mstride (shared memory). */
template <int NM, int NT>
__device__ __forceinline__ void tcg_reg_use(float (&acc)[NM][NT / 2][2], const tc_regs<NM> &r, const char *rb,
                                            size_t mstride, int n, int g, int t) {
  uint32_t lo[NM][8], hi[NM][8], zg[NM], zg8[NM]; /* even / odd nibbles: rows g (k) and g+8 (4 + k) */
#pragma unroll
  for (int m = 0; m < NM; m++) {
    const uint4 q = r.q[m][0], q8 = r.q[m][1];
    const uint32_t qa[8] = {q.x, q.y, q.z, q.w, q8.x, q8.y, q8.z, q8.w};
#pragma unroll
    for (int k = 0; k < 8; k++) {
      lo[m][k] = qa[k] & 0x0f0f0f0fu;
      hi[m][k] = (qa[k] >> 4) & 0x0f0f0f0fu;
    }
    zg[m] = __shfl_sync(0xffffffffu, r.s, m * 16 + g);
    zg8[m] = __shfl_sync(0xffffffffu, r.s, m * 16 + g + 8);
  }
  const int c = g & 3;
  const uint4 z = make_uint4(0, 0, 0, 0);
#pragma unroll
  for (int p = 0; p < NT / 2; p++) {
    if (2 * p >= n)
      break;
    const int mb = 2 * p + (g >> 2), mt = 2 * p + (t >> 1);
    const char *bp = rb + mb * mstride + c * TC_COL + t * 32;
    const bool bl = c < 3 && mb < n;
    const uint4 b0 = bl ? *(const uint4 *)bp : z, b1 = bl ? *(const uint4 *)(bp + 16) : z;
    const int2 tl = mt < n ? *(const int2 *)(rb + mt * mstride + 3 * TC_COL + 8 * (t & 1)) : make_int2(0, 0);
    const float xs = __int_as_float(tl.y);
    const uint32_t bb[8] = {b0.x, b0.y, b0.z, b0.w, b1.x, b1.y, b1.z, b1.w};
#pragma unroll
    for (int m = 0; m < NM; m++) {
      int d[4] = {0, 0, 0, 0};
#pragma unroll
      for (int k = 0; k < 4; k++)
        mma_u8s8(d, lo[m][k], lo[m][4 + k], hi[m][k], hi[m][4 + k], bb[2 * k], bb[2 * k + 1]);
      const int vg = d[0] * 128 + d[1] - (int)(zg[m] & 0xffu) * tl.x,
                vg8 = d[2] * 128 + d[3] - (int)(zg8[m] & 0xffu) * tl.x;
      acc[m][p][0] = fmaf(bf16_hi(zg[m]) * xs, (float)vg, acc[m][p][0]);
      acc[m][p][1] = fmaf(bf16_hi(zg8[m]) * xs, (float)vg8, acc[m][p][1]);
    }
  }
}

/* k_tcg (same grid, items, splits, products and sums: bit for bit its output) with the weights D steps ahead in
 * registers and the item's members' step records once per block in dynamic shared memory: NT · len / 128 · TC_REC
 * bytes, member mb's steps at mb · len / 128 · TC_REC. */
template <bool UP, int NM, int W, int P, int D, int NT>
__global__ void __launch_bounds__(W * 32)
    k_tcgr(float *dst, const char *rec, const cu_lin *tab, const int4 *items, const int *nitems, const int *perm,
           const float *wts, int K, int rows, int len, int gshift, bool tiled) {
  static_assert(!UP || NM == 2, "gate+up is two matrices");
  extern __shared__ uint4 tc_sm[];
  __shared__ const char *mrec[NT];
  __shared__ float part[W][NM][NT][TC_ROWS];
  /* items, nitems and perm come from k_tc_group, two launches back: complete when this kernel starts (cu_launch) */
  if ((int)blockIdx.y >= __ldcg(nitems))
    return;
  const int4 item = __ldcg(items + blockIdx.y); /* first position, members, local expert */
  const int n = item.y, wp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
  const int tile = UP ? TC_ROWS : NM * TC_ROWS; /* output rows of a warp tile */
  const int r0 = (blockIdx.x * (W / P) + wp / P) * tile, n16 = len / 32, groups = len >> gshift, nst = len / 128;
  const int pi = wp % P, sa = pi * nst / P, ns = (pi + 1) * nst / P - sa;
  if (threadIdx.x < NT)
    mrec[threadIdx.x] =
        (int)threadIdx.x < n
            ? rec + (size_t)(UP ? __ldcg(perm + item.x + threadIdx.x) / K : item.x + threadIdx.x) * nst * TC_REC
            : NULL;
  const bool live = r0 < rows;
  const tc_map mp = tc_map_of(tiled, n16, groups);
  const uint4 *q[NM];
  const uint32_t *scp = NULL;
  tc_regs<NM> rg[D];
  const auto load = [&](tc_regs<NM> &r, int i) { tc_reg_load<NM>(r, q, scp, mp, sa + i, gshift, lane); };
  if (live) {
    const cu_lin *ex = tab + item.z * 3 + (UP ? 0 : 2);
#pragma unroll
    for (int m = 0; m < NM; m++)
      q[m] = UP ? tc_q(ex[m].q, tiled, r0, g, t, n16) : tc_q(ex->q, tiled, r0 + m * TC_ROWS, g, t, n16);
    const int sm = lane >> 4; /* the matrix (UP) or row tile whose scale words this lane fetches */
    scp = UP ? tc_sz(ex[sm].sz, tiled, r0, lane & 15, groups)
             : tc_sz(ex->sz, tiled, r0 + (sm < NM ? sm : 0) * TC_ROWS, lane & 15, groups);
    tc_reg_prime<NM, D>(rg, ns, load);
  }
  pdl_start();
  __syncthreads(); /* mrec */
  char *recs = (char *)tc_sm;
  const int per = nst * (TC_REC / 16); /* 16-byte chunks of a member's records */
  for (int c = threadIdx.x; c < n * per; c += W * 32)
    cp16(recs + 16 * c, mrec[c / per] + 16 * (c % per));
  cp_commit();
  cp_wait<0>();
  __syncthreads();
  if (live) {
    float acc[NM][NT / 2][2] = {};
    tc_reg_walk<NM, D>(rg, ns, load, [&](const tc_regs<NM> &r, int i) {
      tcg_reg_use<NM, NT>(acc, r, recs + (size_t)(sa + i) * TC_REC, (size_t)nst * TC_REC, n, g, t);
    });
#pragma unroll
    for (int m = 0; m < NM; m++)
#pragma unroll
      for (int p = 0; p < NT / 2; p++) {
        const float a0 = acc[m][p][0] + __shfl_xor_sync(0xffffffffu, acc[m][p][0], 1);
        const float a1 = acc[m][p][1] + __shfl_xor_sync(0xffffffffu, acc[m][p][1], 1);
        const int mb = 2 * p + (t >> 1);
        if (!(t & 1) && mb < n) {
          part[wp][m][mb][g] = a0;
          part[wp][m][mb][g + 8] = a1;
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
        a += part[wp + p][m][mb][rr];
        if (UP)
          u += part[wp + p][NM - 1][mb][rr];
      }
      const size_t pos = (size_t)item.x + mb;
      dst[pos * rows + r0 + r] = UP ? a / (1.0f + expf(-a)) * u : __ldg(wts + __ldg(perm + pos)) * a;
    }
}
#endif
