/* Shared by the grouped MoE prefill GEMMs: mma.sync (cuda_moe_gemm.cu, SM80 and up) and wgmma
 * (cuda_moe_wgmma.cu, SM90a): the kernels' arguments and the int4 -> fp16 dequantisation. */
#ifndef MIMO_BACKEND_CUDA_MOE_GEMM_H
#define MIMO_BACKEND_CUDA_MOE_GEMM_H
#include "backend/cuda/cuda_internal.h"

__device__ __forceinline__ uint32_t h2_fma(uint32_t a, uint32_t b, uint32_t c) {
  uint32_t d;
  asm("fma.rn.f16x2 %0, %1, %2, %3;\n" : "=r"(d) : "r"(a), "r"(b), "r"(c));
  return d;
}

/* fp16 with the range clamped (activations past 65504 would become inf). */
__device__ __forceinline__ unsigned short f2h(float v) {
  return __half_as_ushort(__float2half_rn(fminf(fmaxf(v, -65504.f), 65504.f)));
}
__device__ __forceinline__ uint32_t pack_h2(float lo, float hi) { return (uint32_t)f2h(lo) | ((uint32_t)f2h(hi) << 16); }

/* One 32-bit word of int4 weights (k 8t..8t+7 of a row) and its scale word -> the B registers (fp16) of both
 * k16 halves: pairs (u0,u4) (u1,u5) (u2,u6) (u3,u7). A nibble OR-ed into 0x6400 is the fp16 1024 + u, so
 * (1024 + u) − (1024 + o) is exact, then one rounding × scale (the bf16 scale is exact in fp16 above 6.1e-5). */
__device__ __forceinline__ void dq4(uint32_t q, uint32_t sz, uint32_t (&b)[4]) {
  const uint32_t s1 = __half_as_ushort(__float2half_rn(__uint_as_float(sz & 0xffff0000u))), s2 = s1 | (s1 << 16);
  const uint32_t no2 = (0xe400u | (sz & 0xffu)) * 0x00010001u; /* -(1024 + o) in both halves */
#pragma unroll
  for (int i = 0; i < 4; i++) {
    const uint32_t d = h2_fma(((q >> (4 * i)) & 0x000f000fu) | 0x64006400u, 0x3c003c00u, no2);
    b[i] = h2_fma(d, s2, 0x80008000u);
  }
}

struct gg_args {
  const cu_lin *tab;       /* local experts, [e][gate, up, down] */
  const int *tiles, *ntiles, *perm;
  const __nv_bfloat16 *a;  /* gate+up: x in 16 bits, [T][H] with rows gathered (mma.sync) or already in expert
                            * order [positions][H] (wgmma); down: h [positions][I] */
  __nv_bfloat16 *h;        /* gate+up output [positions][I] */
  float *y;                /* down output [positions][H] */
  const float *wts;        /* routing weights [T*K] */
  int topk, H, I;
  bool g32;                /* some expert has int4 groups of 32 (wgmma: a scale word per k32 half) */
  bool tl_up, tl_down;     /* int4 gate/up, down in the tiled order (q4_idx; the same for every expert) */
};

/* cuda_moe_wgmma.cu: the SM90a grouped GEMMs (int4 experts, H and I multiples of 64, power-of-two groups). usable:
 * this device runs the sm_90a code; xscatter: x fp32 -> fp16 rows in expert order (slot: pair -> position, as the
 * scatter made it) and the wgmma k order (see the file); launch: gate+up (up) or down over npos activation rows. */
bool cu_moe_wg_usable(cu_ctx *c, const mimo_moe_args *a);
void cu_moe_wg_xscatter(cu_ctx *c, void *xs, const float *x, const int *slot, int T, int topk, int H);
void cu_moe_wg_launch(cu_ctx *c, const gg_args &p, int npos, int max_tiles, bool up);
/* the wgmma kernels take an expert of up to this many rows in one tile (more: tiles of 128) */
int cu_moe_wg_one_tile(void);
#endif
