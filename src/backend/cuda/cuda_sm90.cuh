/* SM90a building blocks shared by the warpgroup-MMA kernels (cuda_moe_wgmma.cu, cuda_attention_wgmma.cu):
 * wgmma with A from registers and B through a shared-memory descriptor, mbarriers, tensor copies (TMA), and on the
 * host the driver's tensor-map encoder and the question whether this device runs the sm_90a code at all.
 * The device functions exist only where the compiler targets sm_90a (MIMO_WG); elsewhere callers compile their
 * SM80 paths. */
#ifndef MIMO_BACKEND_CUDA_SM90_CUH
#define MIMO_BACKEND_CUDA_SM90_CUH
#include <cuda.h>
#include <cudaTypedefs.h>

#include "backend/cuda/cuda_internal.h"

#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define MIMO_WG 1
#endif

#ifdef MIMO_WG
/* m64nNk16, fp32 D in registers, fp16 A in registers (4), fp16 B through a shared-memory descriptor, K-major
 * (TB 0) or N-major (TB 1). One function per (N, TB): D's registers are operands 0..N/2-1, then A's four, the
 * descriptor, and the constant 1 that sets the predicate "accumulate into D". */
#define WG_D4(b) "+f"(d[(b)]), "+f"(d[(b) + 1]), "+f"(d[(b) + 2]), "+f"(d[(b) + 3])
#define WG_D16(b) WG_D4(b), WG_D4((b) + 4), WG_D4((b) + 8), WG_D4((b) + 12)
#define WG_R0 "%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15"
#define WG_R1 ",%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31"
#define WG_R2 ",%32,%33,%34,%35,%36,%37,%38,%39,%40,%41,%42,%43,%44,%45,%46,%47"
#define WG_R3 ",%48,%49,%50,%51,%52,%53,%54,%55,%56,%57,%58,%59,%60,%61,%62,%63"
#define WG_MMA(NAME, N, TB, REGS, REST, PRED, ...)                                                                  \
  __device__ __forceinline__ void NAME(float *d, const uint32_t *a, uint64_t desc) {                              \
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, " PRED ", 0;\n"                                                \
                 "wgmma.mma_async.sync.aligned.m64n" #N "k16.f32.f16.f16 {" REGS "}, " REST ", p, 1, 1, " #TB ";\n}\n" \
                 : __VA_ARGS__                                                                                      \
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc), "r"(1));                                  \
  }
WG_MMA(wg_mma_n32, 32, 0, WG_R0, "{%16,%17,%18,%19}, %20", "%21", WG_D16(0))
WG_MMA(wg_mma_n64, 64, 0, WG_R0 WG_R1, "{%32,%33,%34,%35}, %36", "%37", WG_D16(0), WG_D16(16))
WG_MMA(wg_mma_n96, 96, 0, WG_R0 WG_R1 WG_R2, "{%48,%49,%50,%51}, %52", "%53", WG_D16(0), WG_D16(16), WG_D16(32))
WG_MMA(wg_mma_n128, 128, 0, WG_R0 WG_R1 WG_R2 WG_R3, "{%64,%65,%66,%67}, %68", "%69", WG_D16(0), WG_D16(16),
       WG_D16(32), WG_D16(48))
#define WG_R4 ",%64,%65,%66,%67,%68,%69,%70,%71,%72,%73,%74,%75,%76,%77,%78,%79"
WG_MMA(wg_mma_n160, 160, 0, WG_R0 WG_R1 WG_R2 WG_R3 WG_R4, "{%80,%81,%82,%83}, %84", "%85", WG_D16(0), WG_D16(16),
       WG_D16(32), WG_D16(48), WG_D16(64))
WG_MMA(wg_mma_n64_tb, 64, 1, WG_R0 WG_R1, "{%32,%33,%34,%35}, %36", "%37", WG_D16(0), WG_D16(16))
WG_MMA(wg_mma_n128_tb, 128, 1, WG_R0 WG_R1 WG_R2 WG_R3, "{%64,%65,%66,%67}, %68", "%69", WG_D16(0), WG_D16(16),
       WG_D16(32), WG_D16(48))
/* The same with A also through a descriptor (K-major) */
#define WG_MMA_SS(NAME, N, REGS, REST, PRED, ...)                                                                   \
  __device__ __forceinline__ void NAME(float *d, uint64_t da, uint64_t db) {                                      \
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, " PRED ", 0;\n"                                                \
                 "wgmma.mma_async.sync.aligned.m64n" #N "k16.f32.f16.f16 {" REGS "}, " REST ", p, 1, 1, 0, 0;\n}\n" \
                 : __VA_ARGS__                                                                                      \
                 : "l"(da), "l"(db), "r"(1));                                                                       \
  }
WG_MMA_SS(wg_mma_ss_n64, 64, WG_R0 WG_R1, "%32, %33", "%34", WG_D16(0), WG_D16(16))
template <int N> __device__ __forceinline__ void wg_mma(float *d, const uint32_t *a, uint64_t desc) {
  if constexpr (N == 32)
    wg_mma_n32(d, a, desc);
  else if constexpr (N == 64)
    wg_mma_n64(d, a, desc);
  else if constexpr (N == 96)
    wg_mma_n96(d, a, desc);
  else if constexpr (N == 128)
    wg_mma_n128(d, a, desc);
  else if constexpr (N == 160)
    wg_mma_n160(d, a, desc);
}
/* B N-major (stored [k][n], n contiguous) */
template <int N> __device__ __forceinline__ void wg_mma_tb(float *d, const uint32_t *a, uint64_t desc) {
  if constexpr (N == 64)
    wg_mma_n64_tb(d, a, desc);
  else if constexpr (N == 128)
    wg_mma_n128_tb(d, a, desc);
}
__device__ __forceinline__ void wg_fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void wg_commit() { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }
template <int N> __device__ __forceinline__ void wg_wait() {
  asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
}
/* Keeps the compiler from reading an accumulator before the wait that makes it final. */
__device__ __forceinline__ void wg_hold(float &v) { asm volatile("" : "+f"(v)::"memory"); }

/* mbarriers: stages that complete by byte count (TMA) or by arrivals */
__device__ __forceinline__ void mbar_init(uint32_t bar, int count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(bar), "r"(count) : "memory");
}
__device__ __forceinline__ void mbar_init_fence() { asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory"); }
__device__ __forceinline__ void mbar_expect_tx(uint32_t bar, uint32_t bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(bar), "r"(bytes) : "memory");
}
__device__ __forceinline__ void mbar_arrive(uint32_t bar) {
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(bar) : "memory");
}
__device__ __forceinline__ void mbar_wait(uint32_t bar, uint32_t parity) {
  uint32_t done;
  do
    asm volatile("{\n.reg .pred p;\nmbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\nselp.u32 %0, 1, 0, p;\n}\n"
                 : "=r"(done)
                 : "r"(bar), "r"(parity)
                 : "memory");
  while (!done);
}
/* One box of the map at (x, y) or (x, y, z) into shared memory (in the swizzle the map says), completing on bar */
__device__ __forceinline__ void tma_load(uint32_t dst, const CUtensorMap *map, int x, int y, uint32_t bar) {
  asm volatile("cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3}], [%4];\n" ::"r"(dst),
               "l"((uint64_t)map), "r"(x), "r"(y), "r"(bar)
               : "memory");
}
__device__ __forceinline__ void tma_load3(uint32_t dst, const CUtensorMap *map, int x, int y, int z, uint32_t bar) {
  asm volatile("cp.async.bulk.tensor.3d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3, %4}], [%5];\n" ::"r"(dst),
               "l"((uint64_t)map), "r"(x), "r"(y), "r"(z), "r"(bar)
               : "memory");
}
/* Operand descriptors in the 128-byte swizzle (layout 1, bits 62-63), atoms of 8 rows x 128 bytes = 1024 bytes.
 * K-major: start address, leading offset unused (1), 1024 bytes between groups of 8 rows (of M or N).
 * N-major: lbo = bytes between atoms along N (64 fp16 apart), 1024 bytes between groups of 8 k rows. */
__device__ __forceinline__ uint64_t wg_desc(uint32_t addr) {
  return (uint64_t)((addr & 0x3ffffu) >> 4) | ((uint64_t)1 << 16) | ((uint64_t)(1024 >> 4) << 32) | ((uint64_t)1 << 62);
}
__device__ __forceinline__ uint64_t wg_desc_n(uint32_t addr, uint32_t lbo) {
  return (uint64_t)((addr & 0x3ffffu) >> 4) | ((uint64_t)((lbo & 0x3ffffu) >> 4) << 16) |
         ((uint64_t)(1024 >> 4) << 32) | ((uint64_t)1 << 62);
}
#endif

/* Host (cuda_sm90.cu): cuTensorMapEncodeTiled from the driver, found through the runtime (no link against libcuda;
 * NULL if the driver lacks it); whether this device runs the build's sm_90a code (a compute_80 PTX build JIT-compiled
 * on Hopper does not: it has no wgmma), asked once per device. */
PFN_cuTensorMapEncodeTiled_v12000 cu_tmap_encoder(void);
bool cu_runs_sm90a(cu_ctx *c);
#endif
