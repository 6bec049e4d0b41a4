/* fp32 linears of many rows (the MoE router at prefill: 256 × 4096 fp32 weights) on SM90a tensor cores at fp32
 * accuracy: y[T][out] = x[T][in] · W[out][in]ᵀ as three tf32 products (3xTF32). Round 27 (H100): 103 µs against
 * cuBLAS SGEMM's 195 µs at 4096 rows, error 6.1e-7 against SGEMM's 8.7e-7 (max |err| / max |ref| to a double
 * product). MIMO_CUDA_F32_GEMM=sgemm, other devices and shapes that do not fit take SGEMM (cuda_linear.cu).
 *
 * Why: SGEMM runs at ~70 % of the FP32 pipes and leaves ~200 µs of the 4096-token MoE prefill in the router. Round 22
 * did the same three products on mma.sync and was latency-bound (2.7× slower); warpgroup MMA issues a whole m64 × n128
 * × k8 product per instruction.
 *
 * The split: v = hi + lo with hi = v with its low 13 mantissa bits cleared (a tf32 value, exact) and lo = v − hi
 * (exact in fp32, at most 13 significant bits, of which tf32 keeps 11). hi·hi + hi·lo + lo·hi leaves out lo·lo and
 * lo's last bits, both ~2⁻²² of the product. W is split once per call into scratch (4 MB at the router's shape); x
 * is split in shared memory, in place, by the threads of the block, after its tile lands.
 *
 * The tensor cores accumulate with truncation, which along all of K erred 9.6e-6 in round 13; here every k32 stage
 * (12 MMAs) starts a fresh accumulator (the first MMA's scale-d is 0) that is added to a running fp32 sum in
 * registers with rounding, as round 22 did per k8 (measured 4.7e-7 there against SGEMM's 8.7e-7).
 *
 * Block: two warpgroups, 128 rows × 128 outputs; K split over blockIdx.z when the tiles alone would leave SMs idle
 * (partial sums summed in split order by a second kernel: the result does not depend on scheduling). Stage: x tile
 * (hi in place), x lo, W hi, W lo, each 128 rows × 32 fp32 in the 128-byte swizzle the descriptors read; 3 stages. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cuda/cuda_sm90.cuh"

enum { X3_BM = 128, X3_BN = 128, X3_BK = 32, X3_ST = 3, X3_NT = 256, X3_TILE = 128 * 128 };
enum { X3_STAGE = 4 * X3_TILE, X3_SMEM = X3_ST * X3_STAGE + 1024 };

#ifdef MIMO_WG
/* m64n128k8 tf32, A and B through descriptors (K-major), fp32 D; acc 0 starts D from the product alone */
__device__ __forceinline__ void x3_mma(float *d, uint64_t da, uint64_t db, int acc) {
  asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n"
               "wgmma.mma_async.sync.aligned.m64n128k8.f32.tf32.tf32 {" WG_R0 WG_R1 WG_R2 WG_R3 "}, %64, %65, p, 1, 1;\n}\n"
               : WG_D16(0), WG_D16(16), WG_D16(32), WG_D16(48)
               : "l"(da), "l"(db), "r"(acc));
}
#endif

__device__ __forceinline__ float x3_hi(float v) { return __uint_as_float(__float_as_uint(v) & 0xffffe000u); }

__global__ void k_x3_wsplit(float4 *hi, float4 *lo, const float4 *w, long n4) {
  for (long i = blockIdx.x * (long)blockDim.x + threadIdx.x; i < n4; i += (long)gridDim.x * blockDim.x) {
    const float4 v = w[i], h = make_float4(x3_hi(v.x), x3_hi(v.y), x3_hi(v.z), x3_hi(v.w));
    hi[i] = h;
    lo[i] = make_float4(v.x - h.x, v.y - h.y, v.z - h.z, v.w - h.w);
  }
}

/* y (or part[blockIdx.z]) for rows m0.., outputs n0.., k stages kt0 .. kt0 + nkt − 1 */
__global__ void __launch_bounds__(X3_NT, 1)
    k_x3(const __grid_constant__ CUtensorMap mx, const __grid_constant__ CUtensorMap mwh,
         const __grid_constant__ CUtensorMap mwl, float *y, int T, int out, int nkt) {
#ifdef MIMO_WG
  extern __shared__ uint4 x3_smem[];
  __shared__ alignas(8) uint64_t s_bar[X3_ST];
  char *sm = (char *)x3_smem + ((1024u - (smem_u32(x3_smem) & 1023u)) & 1023u);
  const uint32_t sm0 = smem_u32(sm), bars = smem_u32(s_bar);
  const int tid = threadIdx.x, wg = tid >> 7, wi = (tid >> 5) & 3, lane = tid & 31, g = lane >> 2, t = lane & 3;
  const int n0 = blockIdx.x * X3_BN, m0 = blockIdx.y * X3_BM, kt0 = blockIdx.z * nkt;
  if (tid == 0) {
    for (int s = 0; s < X3_ST; s++)
      mbar_init(bars + 8 * s, 1);
    mbar_init_fence();
  }
  __syncthreads();
  /* stage s: [x (hi after the split)][x lo][W hi][W lo] */
  auto load = [&](int kt) {
    const int s = kt % X3_ST;
    const uint32_t b = sm0 + s * X3_STAGE, bar = bars + 8 * s;
    mbar_expect_tx(bar, 3 * X3_TILE);
    tma_load(b, &mx, (kt0 + kt) * X3_BK, m0, bar);
    tma_load(b + 2 * X3_TILE, &mwh, (kt0 + kt) * X3_BK, n0, bar);
    tma_load(b + 3 * X3_TILE, &mwl, (kt0 + kt) * X3_BK, n0, bar);
  };
  /* x's tile in place to hi, lo beside it: elementwise, so the swizzle is the same in both */
  auto split = [&](int kt) {
    char *b = sm + (kt % X3_ST) * X3_STAGE;
    mbar_wait(bars + 8 * (kt % X3_ST), (kt / X3_ST) & 1);
#pragma unroll
    for (int i = 0; i < X3_TILE / 16 / X3_NT; i++) {
      const int off = (tid + i * X3_NT) * 16;
      const float4 v = *(const float4 *)(b + off), h = make_float4(x3_hi(v.x), x3_hi(v.y), x3_hi(v.z), x3_hi(v.w));
      *(float4 *)(b + off) = h;
      *(float4 *)(b + X3_TILE + off) = make_float4(v.x - h.x, v.y - h.y, v.z - h.z, v.w - h.w);
    }
    asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory"); /* these writes, then the MMAs' reads */
  };
  if (tid == 0)
    for (int kt = 0; kt < X3_ST - 1 && kt < nkt; kt++)
      load(kt);
  split(0);
  __syncthreads();

  float acc[64], sum[64];
#pragma unroll
  for (int i = 0; i < 64; i++)
    acc[i] = sum[i] = 0.f;
  for (int kt = 0; kt < nkt; kt++) {
    /* stage kt − 1's buffer is free: every warpgroup waited for its MMAs before the barrier that ended kt − 1 */
    if (tid == 0 && kt + X3_ST - 1 < nkt)
      load(kt + X3_ST - 1);
    const uint32_t b = sm0 + (kt % X3_ST) * X3_STAGE, xa = b + wg * 64 * 128;
    wg_fence();
#pragma unroll
    for (int ks = 0; ks < 4; ks++) { /* small terms first: the fresh accumulator truncates less of them */
      x3_mma(acc, wg_desc(xa + X3_TILE + 32 * ks), wg_desc(b + 2 * X3_TILE + 32 * ks), ks > 0);
      x3_mma(acc, wg_desc(xa + 32 * ks), wg_desc(b + 3 * X3_TILE + 32 * ks), 1);
      x3_mma(acc, wg_desc(xa + 32 * ks), wg_desc(b + 2 * X3_TILE + 32 * ks), 1);
    }
    wg_commit();
    if (kt + 1 < nkt)
      split(kt + 1); /* while the tensor cores run */
    wg_wait<0>();
#pragma unroll
    for (int i = 0; i < 64; i++) {
      wg_hold(acc[i]);
      sum[i] += acc[i];
    }
    __syncthreads(); /* stage kt + 1 split by every thread; stage kt read by both warpgroups */
  }

  /* sum[4j + v]: row 16·wi + g + 8·(v ≥ 2) of this warpgroup's 64, output 8j + 2t + (v & 1) */
  float *dst = y + (size_t)blockIdx.z * T * out;
#pragma unroll
  for (int j = 0; j < 16; j++)
#pragma unroll
    for (int h = 0; h < 2; h++) {
      const int r = m0 + wg * 64 + 16 * wi + g + 8 * h, col = n0 + 8 * j + 2 * t;
      if (r < T && col < out) {
        dst[(size_t)r * out + col] = sum[4 * j + 2 * h];
        if (col + 1 < out)
          dst[(size_t)r * out + col + 1] = sum[4 * j + 2 * h + 1];
      }
    }
#endif
}

/* y = Σ over the splits in their order */
__global__ void k_x3_sum(float *y, const float *part, long n, int splits) {
  for (long i = blockIdx.x * (long)blockDim.x + threadIdx.x; i < n; i += (long)gridDim.x * blockDim.x) {
    float s = part[i];
    for (int k = 1; k < splits; k++)
      s += part[(size_t)k * n + i];
    y[i] = s;
  }
}

/* Test hook (on > 0 sets, 0 clears, < 0 asks; the old state is returned) and MIMO_CUDA_F32_GEMM=sgemm. */
static int x3_off = -1;
extern "C" int mimo_cuda_f32_x3(int on) {
  return !cu_switch(&x3_off, "MIMO_CUDA_F32_GEMM", "sgemm", on < 0 ? -1 : !on);
}

static bool x3_map(cu_ctx *c, CUtensorMap *m, const float *p, int in, int rows) {
  const cuuint64_t dim[2] = {(cuuint64_t)in, (cuuint64_t)rows}, stride[1] = {(cuuint64_t)in * 4};
  const cuuint32_t box[2] = {X3_BK, 128}, estride[2] = {1, 1};
  if (cu_tmap_encoder()(m, CU_TENSOR_MAP_DATA_TYPE_FLOAT32, 2, (void *)p, dim, stride, box, estride,
                        CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B, CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
                        CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE) == CUDA_SUCCESS)
    return true;
  cu_fail(c, "linear", "cuTensorMapEncodeTiled refused an fp32 map", __FILE__, __LINE__);
  return false;
}

bool cu_linear_x3(cu_ctx *c, float *y, const float *x, int T, const cu_lin *L) {
  const int in = L->in, out = L->out, nk = in / X3_BK;
  if (!mimo_cuda_f32_x3(-1) || L->fmt != CU_F32 || T < 64 || in % X3_BK || out < 64 || (uintptr_t)x % 16 ||
      !cu_tmap_encoder() || !cu_runs_sm90a(c))
    return false;
  /* split K while twice the blocks still fit one wave (one block an SM: 193 KB of shared memory), keeping >= 8
   * stages a split: 4096 rows x 256 outputs, 64 tiles, take 2 splits */
  const int tiles = cdiv(out, X3_BN) * cdiv(T, X3_BM);
  int splits = 1;
  while (2 * tiles * splits <= c->sms && nk % (2 * splits) == 0 && nk / (2 * splits) >= 8)
    splits *= 2;
  const size_t wn = (size_t)out * in, pn = splits > 1 ? (size_t)splits * T * out : 0;
  float *tmp = (float *)cu_tmp(c, (2 * wn + pn) * sizeof(float));
  if (!tmp)
    return true; /* cu_tmp reported it */
  float *whi = tmp, *wlo = tmp + wn, *part = splits > 1 ? tmp + 2 * wn : y;
  const long w4 = (long)(wn / 4);
  k_x3_wsplit<<<cdiv(w4, 256) < 4096 ? cdiv(w4, 256) : 4096, 256, 0, c->st>>>((float4 *)whi, (float4 *)wlo,
                                                                              (const float4 *)L->w, w4);
  MIMO_CUDA_LAUNCHED(c);
  CUtensorMap mx, mwh, mwl;
  if (!x3_map(c, &mx, x, in, T) || !x3_map(c, &mwh, whi, in, out) || !x3_map(c, &mwl, wlo, in, out))
    return true;
  if (MIMO_CUDA(c, cudaFuncSetAttribute(k_x3, cudaFuncAttributeMaxDynamicSharedMemorySize, X3_SMEM)) != MIMO_OK)
    return true;
  k_x3<<<dim3(cdiv(out, X3_BN), cdiv(T, X3_BM), splits), X3_NT, X3_SMEM, c->st>>>(mx, mwh, mwl, part, T, out,
                                                                                    nk / splits);
  MIMO_CUDA_LAUNCHED(c);
  if (splits > 1) {
    const long n = (long)T * out;
    k_x3_sum<<<cdiv(n, 256) < 4096 ? cdiv(n, 256) : 4096, 256, 0, c->st>>>(y, part, n, splits);
    MIMO_CUDA_LAUNCHED(c);
  }
  return true;
}
