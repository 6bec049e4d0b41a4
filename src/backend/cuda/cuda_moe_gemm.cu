/* Grouped tensor-core experts for MoE prefill (cu_moe takes this path from GG_MIN_T, GG_MIN_T_WG or GG_MIN_T_TC
 * tokens; on SM90a int4 experts run the wgmma kernels of cuda_moe_wgmma.cu).
 *
 * The per-token kernels of cuda_moe.cu read an expert's weights once per (token, slot) that chose it. Here the
 * (token, slot) pairs are grouped by expert on the device (histogram, exclusive scan, scatter: no host sync)
 * and each expert's weights stream once per 128 of its rows through mma.sync m16n8k16 (fp32 accumulate; fp16
 * operands for int4 experts, bf16 for bf16 experts):
 *   count -> plan (scan over experts, list of 128-row tiles) -> scatter (pair -> position in its group)
 *   x -> 16-bit once -> gate+up GEMM (rows gathered, SiLU(gate)·up in the epilogue, h stored in 16 bits)
 *   -> down GEMM (routing weight in the epilogue, one fp32 row per pair) -> combine (sum over k in slot order).
 * The grid is sized for the worst case (tiles <= T*K/128 + experts); blocks past the planned tiles exit.
 * A row's result depends only on its own data and a fixed k order, and the combine sums slots in a fixed
 * order: where the scatter's atomics place a pair does not change any bit of the output.
 *
 * Fragments with plain 16-byte shared loads instead of ldmatrix: inside a 32-wide k block the order of k is
 * free as long as A and B agree. Thread (g, t) of the mma takes k 8t..8t+7 of its rows for both k16 halves,
 * i.e. one 16-byte load per row, and an int4 row's 8 weights there are exactly one 32-bit word of the layout
 * the backend repacks to at load. Nibbles i and i+4 of that word make one f16x2 ((q >> 4i) & 0x000f000f |
 * 0x64006400 = 1024 + u, exact), so for int4 experts the activations are stored with each group of 8 in the
 * order k0 k4 k1 k5 k2 k6 k3 k7 (x by the fp16 conversion, h by the gate+up epilogue); bf16 experts keep the
 * natural order, and their B words go to the mma as loaded. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cuda/cuda_moe_gemm.h"

enum { GG_BM = 128, GG_BK = 64 };

/* Dispatch thresholds (tokens), E256 top-8 4096x2048 int4 g128 on H200: where the tensor-core decode kernels take the
 * experts (cuda_moe_tc.cu: int4, groups of 128), against them (grouped by expert): with the mma.sync GEMM 815 vs
 * 2064 us at T = 64, 2481 vs 2606 us at T = 256, 3517 vs 2792 us at T = 384 (moe-prefill bench "crossover",
 * 2026-12-03; equal near 275); with the SM90a wgmma GEMM 786 vs 1034 us at T = 64, 1338 vs 1095 us at T = 128
 * (2026-12-04, fifth session; equal near 96); elsewhere against the fp32 per-token kernels, equal near T = 36
 * (1676 vs 1824 us at T = 32, 3305 vs 2105 us at T = 64). */
enum { GG_MIN_T_TC = 272, GG_MIN_T_WG = 96, GG_MIN_T = 40 };
static int gg_force_t;    /* test hook's threshold for every format (0: the two above) */
static int gg_wn = 4;     /* warps along n: block tile 128 x 32*wn (4 or 8) */
static cudaEvent_t *gg_ev;

/* Test hooks (mimo_cuda_check moe-prefill): one threshold for every format (t > 0 sets it, t < 0 goes back to the
 * measured ones; returns the old one, 0 for those) and the tile width (> 0 sets; the old value is returned), and
 * NULL or five events recorded before the sort, after sort + x conversion, after gate+up, after down, after the
 * combine. */
extern "C" int mimo_cuda_moe_grouped_min_t(int t) {
  const int o = gg_force_t;
  if (t)
    gg_force_t = t > 0 ? t : 0;
  return o;
}
extern "C" int mimo_cuda_moe_grouped_wn(int wn) {
  const int o = gg_wn;
  if (wn == 4 || wn == 8)
    gg_wn = wn;
  return o;
}
extern "C" void mimo_cuda_moe_grouped_events(void *ev5) { gg_ev = (cudaEvent_t *)ev5; }
static void gg_mark(cu_ctx *c, int i) {
  if (gg_ev)
    MIMO_CUDA(c, cudaEventRecord(gg_ev[i], c->st));
}

/* ---- PTX wrappers (sm_80: cp.async, mma.sync, bf16x2 fma) ---- */

/* smem_u32, cp16, cp4, cp_commit, cp_wait: cuda_internal.h */

__device__ __forceinline__ void mma16816(float (&d)[4], uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3,
                                         uint32_t b0, uint32_t b1) {
  asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

/* int4 experts use fp16 operands: the dequantised weight (u − o)·s and the activations keep 11 significant
 * bits instead of bf16's 8 (8x less rounding; same speed). */
__device__ __forceinline__ void mma16816h(float (&d)[4], uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3,
                                          uint32_t b0, uint32_t b1) {
  asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

__device__ __forceinline__ uint32_t bf2_fma(uint32_t a, uint32_t b, uint32_t c) {
  uint32_t d;
  asm("fma.rn.bf16x2 %0, %1, %2, %3;\n" : "=r"(d) : "r"(a), "r"(b), "r"(c));
  return d;
}

__device__ __forceinline__ uint32_t pack_bf2(float lo, float hi) {
  return (uint32_t)__bfloat16_as_ushort(__float2bfloat16_rn(lo)) |
         ((uint32_t)__bfloat16_as_ushort(__float2bfloat16_rn(hi)) << 16);
}

/* ---- grouping ---- */

__global__ void k_gg_count(const int *sel, int n, int e0, int nloc, int *cnt) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) {
    const int e = sel[i] - e0;
    if (e >= 0 && e < nloc)
      atomicAdd(cnt + e, 1);
  }
}

/* One block: exclusive scan of the counts (cur = start of each group, the scatter's cursor) and the tile
 * list (local expert, first position, rows <= GG_BM; a group of at most one_max rows is one tile); *ntiles = its
 * length. */
__global__ void __launch_bounds__(1024) k_gg_plan(const int *cnt, int nloc, int one_max, int *cur, int *tiles,
                                                  int *ntiles) {
  __shared__ int sc[1024], st[1024], carry[2];
  const int i = threadIdx.x;
  if (i == 0)
    carry[0] = carry[1] = 0;
  for (int e0 = 0; e0 < nloc; e0 += 1024) {
    const int e = e0 + i, c = e < nloc ? cnt[e] : 0, nt = c <= one_max ? (c > 0) : (c + GG_BM - 1) / GG_BM;
    sc[i] = c;
    st[i] = nt;
    __syncthreads();
    for (int o = 1; o < 1024; o <<= 1) { /* inclusive Hillis-Steele scan */
      const int vc = i >= o ? sc[i - o] : 0, vt = i >= o ? st[i - o] : 0;
      __syncthreads();
      sc[i] += vc;
      st[i] += vt;
      __syncthreads();
    }
    const int pc = carry[0] + sc[i] - c, pt = carry[1] + st[i] - nt;
    if (e < nloc) {
      cur[e] = pc;
      for (int j = 0; j < nt; j++) {
        tiles[3 * (pt + j)] = e;
        tiles[3 * (pt + j) + 1] = pc + j * GG_BM;
        tiles[3 * (pt + j) + 2] = nt == 1 ? c : min(GG_BM, c - j * GG_BM);
      }
    }
    __syncthreads(); /* every thread has read carry */
    if (i == 1023) {
      carry[0] += sc[1023];
      carry[1] += st[1023];
    }
    __syncthreads();
  }
  if (i == 0)
    *ntiles = carry[1];
}

/* pair i -> position in its expert's group (perm: position -> pair; slot: pair -> position, -1 if remote). */
__global__ void k_gg_scatter(const int *sel, int n, int e0, int nloc, int *cur, int *perm, int *slot) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) {
    const int e = sel[i] - e0;
    int s = -1;
    if (e >= 0 && e < nloc) {
      s = atomicAdd(cur + e, 1);
      perm[s] = i;
    }
    slot[i] = s;
  }
}

/* x fp32 -> 16-bit, 8 elements per step. PERM (int4 experts): fp16, each group of 8 as k0 k4 k1 k5 k2 k6
 * k3 k7; else (bf16 experts) bf16 in natural order. */
template <bool PERM> __global__ void k_gg_xbf16(uint4 *xb, const float4 *x, long n8) {
  for (long i = blockIdx.x * (long)blockDim.x + threadIdx.x; i < n8; i += (long)gridDim.x * blockDim.x) {
    const float4 u = x[2 * i], v = x[2 * i + 1];
    xb[i] = PERM ? make_uint4(pack_h2(u.x, v.x), pack_h2(u.y, v.y), pack_h2(u.z, v.z), pack_h2(u.w, v.w))
                 : make_uint4(pack_bf2(u.x, u.y), pack_bf2(u.z, u.w), pack_bf2(v.x, v.y), pack_bf2(v.z, v.w));
  }
}

/* out[t] = sum over k (in order) of y[slot[t][k]]: fixed order, no atomics. */
__global__ void k_gg_combine(float4 *out, const float4 *y, const int *slot, long n4, int H4, int K) {
  pdl_start();
  for (long i = blockIdx.x * (long)blockDim.x + threadIdx.x; i < n4; i += (long)gridDim.x * blockDim.x) {
    const long t = i / H4;
    const int c4 = (int)(i % H4);
    float4 s = make_float4(0.f, 0.f, 0.f, 0.f);
    for (int k = 0; k < K; k++) {
      const int q = slot[t * K + k];
      if (q < 0)
        continue;
      const float4 v = y[(size_t)q * H4 + c4];
      s.x += v.x;
      s.y += v.y;
      s.z += v.z;
      s.w += v.w;
    }
    out[i] = s;
  }
}

void cu_moe_combine(cu_ctx *c, float *out, const float *y, const int *slot, int T, int H, int K) {
  const long n4 = (long)T * H / 4;
  cu_launch(c, k_gg_combine, cdiv(n4, 256) < 8192 ? cdiv(n4, 256) : 8192, 256, 0, (float4 *)out, (const float4 *)y, slot,
            n4, H / 4, K);
}

/* ---- grouped GEMM ---- */

template <bool Q4, int WN> struct gg_cfg {
  static constexpr int NT = 64 * WN, BN = 32 * WN, A_B = GG_BM * GG_BK * 2,
                       B_B = Q4 ? 2 * BN * 16 : BN * GG_BK * 2, S_B = Q4 ? 2 * BN * 4 : 0, STAGE = A_B + B_B + S_B,
                       STAGES = Q4 ? 4 : 3, BD = Q4 ? BN * GG_BK * 2 : 0, SMEM = STAGE * STAGES + BD;
};

/* Block: one tile of <= 128 rows of one expert x BN output columns (gate+up: BN/2 gate and the same BN/2 up
 * rows, so the epilogue has both in one thread). 2 x WN warps, warp tile 64 rows x 32 columns (4 x 4 mma
 * tiles). Shared memory per stage: A [128][64] bf16, rows of 128 B with 16-byte chunk c at c ^ 4*(row & 1)
 * (the 8 lanes of a 16-byte load phase then hit 8 different chunks); int4 B as [k32 half][BN rows][16 B] plus
 * the scale words [half][BN]; bf16 B like A. int4 B is dequantised once per stage by the thread that copied
 * it (no barrier needed before: its own cp.async) into one bf16 tile [BN][64] that all warps read (the two
 * warps along m would otherwise both dequantise it); there chunk c of row n sits at c ^ 4*(n & 1) ^ (n/2 & 3),
 * so the dequantising threads' 16-byte stores and the mma loads are both conflict-free. m16 tiles past the
 * tile's rows are skipped (warp-uniform). */
template <bool Q4, bool UP, int WN>
__global__ void __launch_bounds__(64 * WN, WN == 4 ? 2 : 1) k_gg(const gg_args p) {
  using C = gg_cfg<Q4, WN>;
  constexpr int NT = C::NT, BN = C::BN, AR = GG_BM * 8 / NT, BR = BN * 8 / NT, ST = C::STAGES;
  extern __shared__ uint4 gg_smem[];
  char *sm = (char *)gg_smem;
  const int tile = blockIdx.y;
  if (tile >= *p.ntiles)
    return;
  const int e = p.tiles[3 * tile], base = p.tiles[3 * tile + 1], rows = p.tiles[3 * tile + 2];
  const int Kd = UP ? p.H : p.I, Nd = UP ? p.I : p.H, nk32 = Kd / 32, nkt = (nk32 + 1) / 2;
  const int n0 = blockIdx.x * (UP ? BN / 2 : BN);
  const int tid = threadIdx.x, lane = tid & 31, w = tid >> 5, wm = w & 1, wn = w >> 1, g = lane >> 2, t = lane & 3;
  const cu_lin *tb = p.tab + (size_t)e * 3;

  /* A rows of the tile: token (gate+up, gathered) or position (down), -1 past the tile's rows. Rows past the
   * tile (and weight rows past N) are not copied at all: an mma output row depends only on its own A row and
   * an output column only on its own B row, and those rows and columns are never stored, so whatever the
   * shared memory holds there is harmless (this keeps small tiles from issuing copies for empty rows).
   * Kept in shared memory rather than registers (the mma loop needs them all). */
  __shared__ int s_row[GG_BM];
  if (tid < GG_BM)
    s_row[tid] = tid >= rows ? -1 : UP ? p.perm[base + tid] / p.topk : base + tid;
  __syncthreads();
  /* copy assignments: A and bf16 B, 16-byte chunk ac of smem rows (tid >> 3) + jj*NT/8 (all of one parity);
   * int4 B, k32 half bh of smem row bn (one 16-byte word) and its scale word */
  const int ac = tid & 7, bn = tid % BN, bh = tid / BN;
  const uint4 *qsrc = NULL;
  const uint32_t *ssrc = NULL;
  int grp = 32, qrow = 0;
  bool qok = false, qtl = false;
  if constexpr (Q4) {
    const cu_lin *L = UP ? tb + (bn < BN / 2 ? 0 : 1) : tb + 2;
    const int wr = n0 + (UP ? bn % (BN / 2) : bn);
    qok = wr < Nd;
    grp = L->group;
    qrow = qok ? wr : 0;
    qtl = L->tiled;
    qsrc = L->q;
    ssrc = L->sz;
  }

  auto load = [&](int sb, int kt) {
    char *sA = sm + sb * C::STAGE, *sB = sA + C::A_B;
    const int kb = 2 * kt; /* first k32 block of this stage; a stage's second half may lie past K */
    const int aoff = ((ac ^ (((tid >> 3) & 1) << 2)) << 4);
    const bool aon = kb + (ac >> 2) < nk32;
#pragma unroll
    for (int jj = 0; jj < AR; jj++) {
      const int r = (tid >> 3) + jj * (NT / 8), src = s_row[r];
      if (aon && src >= 0)
        cp16(sA + r * (GG_BK * 2) + aoff, p.a + (size_t)src * Kd + ac * 8 + kt * GG_BK);
    }
    if constexpr (Q4) {
      if (kb + bh < nk32 && qok) {
        cp16(sB + (bh * BN + bn) * 16, qsrc + q4_idx(qtl, nk32, qrow, kb + bh));
        cp4(sB + C::B_B + (bh * BN + bn) * 4, ssrc + sz_idx(qtl, Kd / grp, qrow, (kb + bh) * 32 / grp));
      }
    } else {
#pragma unroll
      for (int jj = 0; jj < BR; jj++) { /* gate+up: rows < BN/2 (jj < BR/2) from gate, the rest from up */
        const int nb = (tid >> 3) + jj * (NT / 8), wr = n0 + (UP ? nb % (BN / 2) : nb);
        const __nv_bfloat16 *W = (const __nv_bfloat16 *)tb[UP ? (jj < BR / 2 ? 0 : 1) : 2].w;
        if (aon && wr < Nd)
          cp16(sB + nb * (GG_BK * 2) + aoff, W + (size_t)wr * Kd + ac * 8 + kt * GG_BK);
      }
    }
  };

  int nv = (rows - wm * 64 + 15) / 16; /* this warp's m16 tiles that hold rows */
  nv = nv < 0 ? 0 : nv > 4 ? 4 : nv;
  float acc[4][4][4];
#pragma unroll
  for (int i = 0; i < 4; i++)
#pragma unroll
    for (int j = 0; j < 4; j++)
#pragma unroll
      for (int v = 0; v < 4; v++)
        acc[i][j][v] = 0.f;

  char *sD = sm + C::STAGE * ST; /* int4: the stage's B dequantised to bf16 */
  auto dequant = [&](int sb, int kt) {
    const char *sB = sm + sb * C::STAGE + C::A_B;
    if (2 * kt + bh < nk32) {
      const uint4 q = *(const uint4 *)(sB + (bh * BN + bn) * 16);
      const uint32_t sz = *(const uint32_t *)(sB + C::B_B + (bh * BN + bn) * 4);
      const uint32_t qw[4] = {q.x, q.y, q.z, q.w};
#pragma unroll
      for (int c = 0; c < 4; c++) {
        uint32_t d[4];
        dq4(qw[c], sz, d);
        *(uint4 *)(sD + bn * (GG_BK * 2) + (((4 * bh + c) ^ ((bn & 1) << 2) ^ ((bn >> 1) & 3)) << 4)) =
            make_uint4(d[0], d[1], d[2], d[3]);
      }
    }
  };
  auto comp = [&](int sb, int kt) {
    const char *sA = sm + sb * C::STAGE, *sB = sA + C::A_B;
#pragma unroll
    for (int hf = 0; hf < 2; hf++) {
      if (2 * kt + hf >= nk32)
        break;
      const int off = ((4 * hf + t) ^ ((g & 1) << 2)) << 4; /* this lane's 16-byte chunk in a row */
      uint32_t b[4][4];
#pragma unroll
      for (int j = 0; j < 4; j++) {
        const int nr = (UP ? (j < 2 ? wn * 16 + 8 * j : BN / 2 + wn * 16 + 8 * (j - 2)) : wn * 32 + 8 * j) + g;
        const uint4 v = Q4 ? *(const uint4 *)(sD + nr * (GG_BK * 2) + ((((4 * hf + t) ^ ((g & 1) << 2)) ^ (g >> 1)) << 4))
                           : *(const uint4 *)(sB + nr * (GG_BK * 2) + off);
        b[j][0] = v.x;
        b[j][1] = v.y;
        b[j][2] = v.z;
        b[j][3] = v.w;
      }
#pragma unroll
      for (int i = 0; i < 4; i++)
        if (i < nv) {
          const int r = wm * 64 + 16 * i + g;
          const uint4 lo = *(const uint4 *)(sA + r * (GG_BK * 2) + off),
                      hi = *(const uint4 *)(sA + (r + 8) * (GG_BK * 2) + off);
#pragma unroll
          for (int j = 0; j < 4; j++) {
            if constexpr (Q4) {
              mma16816h(acc[i][j], lo.x, hi.x, lo.y, hi.y, b[j][0], b[j][1]);
              mma16816h(acc[i][j], lo.z, hi.z, lo.w, hi.w, b[j][2], b[j][3]);
            } else {
              mma16816(acc[i][j], lo.x, hi.x, lo.y, hi.y, b[j][0], b[j][1]);
              mma16816(acc[i][j], lo.z, hi.z, lo.w, hi.w, b[j][2], b[j][3]);
            }
          }
        }
    }
  };

#pragma unroll
  for (int s = 0; s < ST - 1; s++) {
    if (s < nkt)
      load(s, s);
    cp_commit();
  }
  for (int kt = 0; kt < nkt; kt++) {
    cp_wait<ST - 2>();
    __syncthreads(); /* stage kt landed for all threads; stage kt-1 is no longer read */
    if (kt + ST - 1 < nkt)
      load((kt + ST - 1) % ST, kt + ST - 1);
    cp_commit();
    if constexpr (Q4) {
      dequant(kt % ST, kt); /* the bf16 tile was last read in comp(kt-1), before the barrier above */
      __syncthreads();
    }
    if (nv > 0)
      comp(kt % ST, kt);
  }
  cp_wait<0>();

  /* epilogue: c0,c1 = row g, columns 2t, 2t+1; c2,c3 = row g+8 */
#pragma unroll
  for (int i = 0; i < 4; i++)
    if (i < nv)
#pragma unroll
      for (int hr = 0; hr < 2; hr++) {
        const int r = wm * 64 + 16 * i + g + 8 * hr;
        if (r >= rows)
          continue;
        if constexpr (UP) {
          __nv_bfloat16 *dst = p.h + (size_t)(base + r) * p.I;
#pragma unroll
          for (int j = 0; j < 2; j++) {
            const int col = n0 + wn * 16 + 8 * j + 2 * t;
            if (col >= p.I)
              continue;
            float hv[2];
#pragma unroll
            for (int v = 0; v < 2; v++) {
              const float gv = acc[i][j][2 * hr + v], uv = acc[i][j + 2][2 * hr + v];
              hv[v] = gv / (1.0f + expf(-gv)) * uv;
            }
            if constexpr (Q4) { /* the down GEMM's A order: natural k -> 2*(k%4) + (k%8)/4 within each group of 8 */
              const int c8 = col & ~7, k = col & 7;
              unsigned short *dh = (unsigned short *)dst; /* fp16 bits for the int4 down GEMM */
              dh[c8 + 2 * (k & 3) + (k >> 2)] = f2h(hv[0]);
              dh[c8 + 2 * ((k + 1) & 3) + ((k + 1) >> 2)] = f2h(hv[1]);
            } else {
              *(uint32_t *)(dst + col) = pack_bf2(hv[0], hv[1]);
            }
          }
        } else {
          const float wt = p.wts[p.perm[base + r]];
          float *dst = p.y + (size_t)(base + r) * p.H;
#pragma unroll
          for (int j = 0; j < 4; j++) {
            const int col = n0 + wn * 32 + 8 * j + 2 * t;
            if (col < p.H)
              *(float2 *)(dst + col) = make_float2(wt * acc[i][j][2 * hr], wt * acc[i][j][2 * hr + 1]);
          }
        }
      }
}

template <bool Q4, bool UP, int WN> static void gg_launch(cu_ctx *c, const gg_args &p, int max_tiles) {
  using C = gg_cfg<Q4, WN>;
  const int cols = UP ? C::BN / 2 : C::BN, N = UP ? p.I : p.H;
  /* more than 48 KB of dynamic shared memory must be opted into (per function; cheap to repeat) */
  if (MIMO_CUDA(c, cudaFuncSetAttribute(k_gg<Q4, UP, WN>, cudaFuncAttributeMaxDynamicSharedMemorySize, C::SMEM)) !=
      MIMO_OK)
    return;
  k_gg<Q4, UP, WN><<<dim3(cdiv(N, cols), max_tiles), C::NT, C::SMEM, c->st>>>(p);
  MIMO_CUDA_LAUNCHED(c);
}

template <bool Q4, bool UP> static void gg_launch_wn(cu_ctx *c, const gg_args &p, int max_tiles) {
  if (gg_wn == 8)
    gg_launch<Q4, UP, 8>(c, p, max_tiles);
  else
    gg_launch<Q4, UP, 4>(c, p, max_tiles);
}

/* ---- entry ---- */

bool cu_moe_grouped_fits(cu_ctx *c, const mimo_moe_args *a, int n_local, bool tc_decode) {
  static int off = -1; /* MIMO_CUDA_MOE_GROUPED=0: per-token experts at every T (whole-model comparisons) */
  if (off < 0) {
    const char *e = getenv("MIMO_CUDA_MOE_GROUPED");
    off = e && !strcmp(e, "0");
  }
  int min_t = gg_force_t ? gg_force_t : tc_decode ? GG_MIN_T_WG : GG_MIN_T;
  if (!gg_force_t && tc_decode && a->T >= min_t && !cu_moe_wg_usable(c, a))
    min_t = GG_MIN_T_TC; /* the mma.sync GEMM (SM80, or a build without sm_90a code) */
  if (off || a->T < min_t || a->hidden % 32 || a->inter % 32 || ((uintptr_t)a->x | (uintptr_t)a->out) % 16)
    return false;
  const cu_lin *L0 = (const cu_lin *)a->experts[0].dev;
  if (!L0 || (L0->fmt != CU_INT4 && L0->fmt != CU_BF16))
    return false;
  for (int i = 0; i < 3 * n_local; i++) { /* int4: every k32 block inside one scale group */
    const cu_lin *L = (const cu_lin *)a->experts[i].dev;
    if (!L || L->fmt != L0->fmt || (L->fmt == CU_INT4 && (L->group % 32 || L->in % L->group)))
      return false;
  }
  return true;
}

void cu_moe_grouped(mimo_backend *be, const mimo_moe_args *a, const cu_lin *tab, const int *sel, const float *wts,
                    int e0, int n_local) {
  cu_ctx *c = cu(be);
  const int T = a->T, K = a->top_k, H = a->hidden, I = a->inter, TK = T * K;
  const bool q4 = ((const cu_lin *)a->experts[0].dev)->fmt == CU_INT4;
  const int max_tiles = TK / GG_BM + (n_local < TK ? n_local : TK) + 1;
  const bool wg = cu_moe_wg_usable(c, a); /* SM90a: warpgroup MMA (x gathered into expert order, its k order) */
  int *ib = (int *)cu_alloc(be, 2 * (size_t)n_local + 3 * (size_t)max_tiles + 1 + 2 * (size_t)TK);
  __nv_bfloat16 *xb = (__nv_bfloat16 *)cu_alloc(be, (size_t)(wg ? TK : T) * H / 2),
                *hb = (__nv_bfloat16 *)cu_alloc(be, (size_t)TK * I / 2);
  float *y = cu_alloc(be, (size_t)TK * H);
  if (!ib || !xb || !hb || !y) {
    cu_fail(c, "moe", "out of GPU memory for grouped-expert scratch", __FILE__, __LINE__);
  } else {
    int *cnt = ib, *cur = cnt + n_local, *tiles = cur + n_local, *ntiles = tiles + 3 * max_tiles,
        *perm = ntiles + 1, *slot = perm + TK;
    gg_mark(c, 0);
    MIMO_CUDA(c, cudaMemsetAsync(cnt, 0, (size_t)n_local * sizeof(int), c->st));
    k_gg_count<<<cdiv(TK, 256), 256, 0, c->st>>>(sel, TK, e0, n_local, cnt);
    MIMO_CUDA_LAUNCHED(c);
    k_gg_plan<<<1, 1024, 0, c->st>>>(cnt, n_local, wg ? cu_moe_wg_one_tile() : GG_BM, cur, tiles, ntiles);
    MIMO_CUDA_LAUNCHED(c);
    k_gg_scatter<<<cdiv(TK, 256), 256, 0, c->st>>>(sel, TK, e0, n_local, cur, perm, slot);
    MIMO_CUDA_LAUNCHED(c);
    if (wg) {
      cu_moe_wg_xscatter(c, xb, a->x, slot, T, K, H);
    } else {
      const long n8 = (long)T * H / 8;
      const unsigned gx = cdiv(n8, 256) < 4096 ? cdiv(n8, 256) : 4096;
      if (q4)
        k_gg_xbf16<true><<<gx, 256, 0, c->st>>>((uint4 *)xb, (const float4 *)a->x, n8);
      else
        k_gg_xbf16<false><<<gx, 256, 0, c->st>>>((uint4 *)xb, (const float4 *)a->x, n8);
      MIMO_CUDA_LAUNCHED(c);
    }
    gg_mark(c, 1);
    bool g32 = false;
    for (int i = 0; i < 3 * n_local && q4; i++)
      g32 |= ((const cu_lin *)a->experts[i].dev)->group == 32; /* this rank's experts, from 0 */
    const bool tl_up = ((const cu_lin *)a->experts[0].dev)->tiled, tl_down = ((const cu_lin *)a->experts[2].dev)->tiled;
    gg_args p = {tab, tiles, ntiles, perm, xb, hb, y, wts, K, H, I, g32, tl_up, tl_down};
    if (wg)
      cu_moe_wg_launch(c, p, TK, max_tiles, true);
    else if (q4)
      gg_launch_wn<true, true>(c, p, max_tiles);
    else
      gg_launch_wn<false, true>(c, p, max_tiles);
    gg_mark(c, 2);
    p.a = hb;
    if (wg)
      cu_moe_wg_launch(c, p, TK, max_tiles, false);
    else if (q4)
      gg_launch_wn<true, false>(c, p, max_tiles);
    else
      gg_launch_wn<false, false>(c, p, max_tiles);
    gg_mark(c, 3);
    cu_moe_combine(c, a->out, y, slot, T, H, K);
    gg_mark(c, 4);
  }
  cu_release(be, (float *)ib);
  cu_release(be, (float *)xb);
  cu_release(be, (float *)hb);
  cu_release(be, y);
}
