/* SM90a grouped int4 MoE GEMMs (cuda_moe_wgmma.cu, cuda_moe_wgws.cu): the dequantisation into the A registers of
 * warpgroup MMAs and the copies into shared memory. Device code exists only where the compiler targets sm_90a
 * (MIMO_WG, cuda_sm90.cuh). */
#ifndef MIMO_BACKEND_CUDA_MOE_WGMMA_CUH
#define MIMO_BACKEND_CUDA_MOE_WGMMA_CUH
#include <stdint.h>

#include "backend/cuda/cuda_moe_gemm.h"
#include "backend/cuda/cuda_sm90.cuh"

/* The most tokens one tile holds: an expert's 129..160 tokens take one tile of N = 160 (cu_moe_wg_one_tile). */
enum { WG_BN = 160 };

/* cuda_moe_wgws.cu: with MIMO_CUDA_MOE_WG_WS=1 (mimo_cuda_moe_wg_ws), launches the warp-specialised kernels for one
 * GEMM of the pair (up: gate+up, else down) over the activation map and returns true; false when switched off. */
bool cu_moe_wgws_launch(cu_ctx *c, const gg_args &p, const CUtensorMap &map, bool up);

#ifdef MIMO_WG
/* dq4 of cuda_moe_gemm.h in 13 instructions per word, bitwise the same: nibbles 1 and 5 (3 and 7) are masked in
 * place, giving the fp16 1024 + 16u, and scaled by 1/16 in the fma that subtracts 64 + o (both steps exact, as in
 * dq4); a word's scale set-up is done once per scale word. Issued instructions bounded the grouped kernels (round
 * 30: 207 a warp per k64 stage, 4 of them MMAs), so the constants are forced into registers: "mask, then OR
 * 0x6400" is one LOP3 (a LOP3 takes one immediate, so the compiler had made it two: 17 a word), and the zero-point
 * pairs are one multiply-add each (o < 64: the OR and the add agree). */
struct dq_sz {
  uint32_t s2, n0, n1; /* scale, −(1024 + o), −(64 + o): fp16 pairs */
};
/* (a & imm) | c */
template <uint32_t M> __device__ __forceinline__ uint32_t and_or(uint32_t a, uint32_t c) {
  uint32_t d;
  asm("lop3.b32 %0, %1, %2, %3, 0xea;\n" : "=r"(d) : "r"(a), "n"(M), "r"(c));
  return d;
}
/* a * imm + c */
template <uint32_t M> __device__ __forceinline__ uint32_t mad_imm(uint32_t a, uint32_t c) {
  uint32_t d;
  asm("mad.lo.u32 %0, %1, %2, %3;\n" : "=r"(d) : "r"(a), "n"(M), "r"(c));
  return d;
}
struct dq_k {
  uint32_t magic, n0c, n1c; /* 0x64006400, 0xe400e400, 0xd400d400 held in registers */
};
__device__ __forceinline__ dq_k dq_consts() {
  dq_k k;
  asm("mov.b32 %0, 0x64006400;\n" : "=r"(k.magic));
  asm("mov.b32 %0, 0xe400e400;\n" : "=r"(k.n0c));
  asm("mov.b32 %0, 0xd400d400;\n" : "=r"(k.n1c));
  return k;
}
__device__ __forceinline__ dq_sz dq_setup(uint32_t sz, const dq_k &k) {
  const uint32_t s1 = __half_as_ushort(__float2half_rn(__uint_as_float(sz & 0xffff0000u))), o = sz & 0xffu;
  return {s1 * 0x00010001u, mad_imm<0x00010001u>(o, k.n0c), mad_imm<0x00100010u>(o, k.n1c)};
}
__device__ __forceinline__ void dq4f(uint32_t q, const dq_sz &z, const dq_k &k, uint32_t (&b)[4]) {
  const uint32_t q8 = q >> 8;
  const uint32_t x[4] = {and_or<0x000f000fu>(q, k.magic), and_or<0x00f000f0u>(q, k.magic),
                         and_or<0x000f000fu>(q8, k.magic), and_or<0x00f000f0u>(q8, k.magic)};
#pragma unroll
  for (int i = 0; i < 4; i++) {
    const uint32_t d = (i & 1) ? h2_fma(x[i], 0x2c002c00u, z.n1) : h2_fma(x[i], 0x3c003c00u, z.n0);
    b[i] = h2_fma(d, z.s2, 0x80008000u);
  }
}

/* cp.async to a shared-memory address (as smem_u32 gives it) */
__device__ __forceinline__ void cp16s(uint32_t dst, const void *src) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(dst), "l"(__cvta_generic_to_global(src)) : "memory");
}
__device__ __forceinline__ void cp4s(uint32_t dst, const void *src) {
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4;\n" ::"r"(dst), "l"(__cvta_generic_to_global(src)) : "memory");
}

/* One thread's share of a stage's weight copies, for a block of BM weight rows (column block cb): the int4 word of
 * k32 half wh of shared row wr, and its scale word, into [half][row][16 B] and [half][row] after the stage's
 * activations. gate+up rows alternate by 8 (gate rows of columns c..c+7, then their up rows), so one thread holds
 * SiLU(gate)·up's two inputs. Rows past the output copy row 0 (the epilogue drops them). The two halves of a row are
 * neighbouring lanes: in both int4 layouts a row's two 16-byte words of a stage are adjacent, so a warp reads whole
 * 32-byte sectors. */
template <bool UP, bool TL, int BM> struct wg_copy {
  const uint4 *q;    /* the word of stage 0 */
  const uint32_t *s; /* the row's first scale word */
  int gsh, wh;       /* group = 32 << gsh (a power of two: cu_moe_wg_usable); k32 half */
  uint32_t wdst, sdst;
  __device__ __forceinline__ wg_copy(const gg_args &p, const cu_lin *tb, int cb, int idx) {
    const int Kd = UP ? p.H : p.I, Nd = UP ? p.I : p.H, wr = idx >> 1;
    wh = idx & 1;
    const cu_lin *L = UP ? tb + ((wr >> 3) & 1) : tb + 2;
    const int mrow = UP ? cb * (BM / 2) + 8 * (wr >> 4) + (wr & 7) : cb * BM + wr, r = mrow < Nd ? mrow : 0;
    q = L->q + q4_idx(TL, Kd / 32, r, 0) + wh;
    s = L->sz + sz_idx(TL, Kd / L->group, r, 0);
    gsh = __ffs(L->group) - 6;
    wdst = WG_BN * 128 + (wh * BM + wr) * 16;
    sdst = WG_BN * 128 + 2 * BM * 16 + (wh * BM + wr) * 4;
  }
  /* stage kt (k32 block 2 kt + wh) into the stage at shared-memory address sB */
  __device__ __forceinline__ void issue(uint32_t sB, int kt) const {
    constexpr int SSTEP = TL ? 16 : 1, QSTEP2 = TL ? 64 : 4; /* scale words a group, int4 words two stages apart */
    cp16s(sB + wdst, q + (kt >> 1) * QSTEP2 + ((kt & 1) << 1));
    cp4s(sB + sdst, s + ((2 * kt + wh) >> gsh) * SSTEP);
  }
};

/* A thread's A registers of one k64 stage: rows R0 (gate+up: gate) and R0 + 8 (up) of a block of BM rows whose
 * int4 words sit at sW ([k32 half][BM rows][16 B]) and scale words at sS ([half][BM rows]); t = lane % 4. G32: some
 * expert has groups of 32, a scale word per k32 half (from 64 on, one a stage). */
template <int BM, bool G32>
__device__ __forceinline__ void wg_dequant(const char *sW, const char *sS, int R0, int t, int grp, const dq_k &kc,
                                           uint32_t (&a)[16]) {
  dq_sz z0 = dq_setup(*(const uint32_t *)(sS + R0 * 4), kc), z1 = dq_setup(*(const uint32_t *)(sS + (R0 + 8) * 4), kc);
#pragma unroll
  for (int hf = 0; hf < 2; hf++) {
    if (G32 && hf == 1 && grp == 32) {
      z0 = dq_setup(*(const uint32_t *)(sS + (BM + R0) * 4), kc);
      z1 = dq_setup(*(const uint32_t *)(sS + (BM + R0 + 8) * 4), kc);
    }
    const uint32_t q0 = *(const uint32_t *)(sW + (hf * BM + R0) * 16 + 4 * t),
                   q1 = *(const uint32_t *)(sW + (hf * BM + R0 + 8) * 16 + 4 * t);
    uint32_t b0[4], b1[4];
    dq4f(q0, z0, kc, b0);
    dq4f(q1, z1, kc, b1);
#pragma unroll
    for (int i = 0; i < 4; i++) {
      a[8 * hf + 2 * i] = b0[i];
      a[8 * hf + 2 * i + 1] = b1[i];
    }
  }
}
#endif

/* A grouped GEMM's epilogue for one thread (t = lane % 4) of an m64 row block: d[4j + v] is its row g (v < 2) or
 * g + 8 (v >= 2), token 8j + 2t + (v & 1). gate+up (UP): SiLU(gate)·up into column rc of h, stored at the down GEMM's
 * k position; down: wt(token) times rows rc and rc + 8 into y. Tokens from rows on are padding. */
template <bool UP, int N, typename WT>
__device__ __forceinline__ void wg_store(const gg_args &p, const float (&d)[N / 2], int base, int rows, int t, int rc,
                                         WT &&wt) {
  auto each_token = [&](auto &&fn) {
#pragma unroll
    for (int j = 0; j < N / 8; j++)
#pragma unroll
      for (int v = 0; v < 2; v++) {
        const int tok = 8 * j + 2 * t + v;
        if (tok < rows)
          fn(tok, d[4 * j + v], d[4 * j + 2 + v]);
      }
  };
  if constexpr (UP) {
    unsigned short *dh = (unsigned short *)p.h + (size_t)base * p.I + (rc & ~31) + 8 * (rc & 3) + ((rc & 31) >> 2);
    if (rc < p.I)
      each_token([&](int tok, float gv, float uv) { dh[(size_t)tok * p.I] = f2h(gv / (1.0f + expf(-gv)) * uv); });
  } else {
    float *y = p.y + (size_t)base * p.H + rc;
    each_token([&](int tok, float lo, float hi) {
      const float w = wt(tok);
      if (rc < p.H)
        y[(size_t)tok * p.H] = w * lo;
      if (rc + 8 < p.H)
        y[(size_t)tok * p.H + 8] = w * hi;
    });
  }
}
#endif
