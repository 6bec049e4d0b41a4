/* fp32 operands on bf16 tensor cores without losing a bit: x = hi + mid + lo, each part a bf16, exactly.
 *
 * Why (docs/cuda.md, round 18): the decode attention over a bf16 cache multiplies fp32 queries and probabilities
 * by bf16 keys and values. 3xTF32 takes two m16n8k8 tf32 products per 8 inputs; three bf16 parts take three
 * m16n8k16 products per 16 inputs (or three m16n8k8 per 8): a quarter fewer tensor-core cycles, and the bf16 keys
 * and values go into the mma as they are stored (no widening). A bf16 × bf16 product is exact in fp32 (8 × 8
 * significant bits), so the sum of the three parts' products is the fp32 product up to the accumulation's rounding.
 *
 * Why three parts are exact: hi = x rounded to bf16 (nearest even) leaves r = x − hi exactly (a rounding residual
 * within one binary format), |r| ≤ half a bf16 ulp of x, and r is a multiple of x's fp32 ulp, so r has at most 16
 * significant bits; mid = r rounded to bf16 leaves r − mid with at most 8, which is a bf16 value: lo. The identity
 * is checked on the host by tests/unit/test_bf16x3.c, with the same steps (core/num.h RNE for the cvt). */
#ifndef MIMO_BACKEND_CUDA_BF16X3_CUH
#define MIMO_BACKEND_CUDA_BF16X3_CUH
#include <stdint.h>

/* Two floats as bf16 (nearest even) in one register: x0 in the low half (the lower k index of a fragment pair). */
__device__ __forceinline__ uint32_t bf16x2_rn(float x0, float x1) {
  uint32_t d;
  asm("cvt.rn.bf16x2.f32 %0, %1, %2;" : "=r"(d) : "f"(x1), "f"(x0));
  return d;
}
__device__ __forceinline__ float bf16_lo_f(uint32_t u) { return __uint_as_float(u << 16); }
__device__ __forceinline__ float bf16_hi_f(uint32_t u) { return __uint_as_float(u & 0xffff0000u); }

/* (x0, x1) = hi + mid + lo, each register two bf16 parts (x0's low). */
__device__ __forceinline__ void split_bf16x3(float x0, float x1, uint32_t &hi, uint32_t &mid, uint32_t &lo) {
  hi = bf16x2_rn(x0, x1);
  const float r0 = x0 - bf16_lo_f(hi), r1 = x1 - bf16_hi_f(hi);
  mid = bf16x2_rn(r0, r1);
  lo = bf16x2_rn(r0 - bf16_lo_f(mid), r1 - bf16_hi_f(mid)); /* exact: no rounding happens here */
}

/* d += A(16×16, row) · B(16×8, col), bf16 operands, fp32 accumulators. */
__device__ __forceinline__ void mma_bf16_k16(float *d, const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
               "{%0,%1,%2,%3};"
               : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
               : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
/* d += A(16×8, row) · B(8×8, col), bf16 operands, fp32 accumulators. */
__device__ __forceinline__ void mma_bf16_k8(float *d, uint32_t a0, uint32_t a1, uint32_t b0) {
  asm volatile("mma.sync.aligned.m16n8k8.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5}, {%6}, {%0,%1,%2,%3};"
               : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
               : "r"(a0), "r"(a1), "r"(b0));
}
#endif
