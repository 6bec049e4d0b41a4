/* Grouped int4 MoE prefill on SM90a warpgroup MMA (wgmma): the same grouping, tiles and epilogues as the mma.sync
 * kernels of cuda_moe_gemm.cu, with the roles of the operands swapped so the dequantised weights never touch
 * shared memory:
 *   D [128 weight rows][<= 128 tokens] += A (weights, fp16, in registers) x B (activations, fp16, shared memory).
 * A block is two warpgroups, each m64 (warp w of a warpgroup: rows 16w..16w+15 of its 64); gate+up gives a warp's
 * rows g = gate row c and g + 8 = up row c of the same column c of h, so SiLU(gate)·up is formed in registers.
 * A tile's MMAs are n32, n64, n96 or n128: its rows rounded up to 32 (an expert's last tile is part-filled).
 *
 * The k order. Thread (g, t) holds A elements k ∈ {2t, 2t+1, 2t+8, 2t+9} of each k16; the int4 word it reads
 * holds a row's k 8t..8t+7 of a k32 block, which dq4 turns into the fp16 pairs (u0,u4) (u1,u5) (u2,u6) (u3,u7).
 * Given to the two k16 steps of the block in that order, MMA position p of the block (0..31) multiplies weight
 * element 4(p % 8) + p / 8 of it, so the activations are stored with element k at position 8(k % 4) + k / 4 of
 * each 32 (x by cu_moe_wg_xscatter, h by the gate+up epilogue). A sum over k does not care about the order; both
 * operands agree, which is all the MMA needs. Same products, same k16 order as the mma.sync kernels: the
 * outputs have come out bitwise equal to theirs.
 *
 * Pipeline: 4 stages of k64. Activations (x written in expert order first, or h, which is) come by the tensor copy
 * engine: thread 0 asks for the tile's rows in boxes of 32 rows x 128 bytes, in the 128-byte swizzle the wgmma
 * descriptor reads, completing on the stage's mbarrier. Every thread copies one int4 word [k32 half][row][16 B] and
 * one scale word [half][row] with cp.async. At stage kt a warpgroup issues its 4 wgmma k16 steps, waits for those
 * of kt − 1 (which frees their stage for the copies of kt + 3 and their A registers), then dequantises stage kt + 1
 * while the tensor cores run. */
#include <atomic>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cuda/cuda_moe_gemm.h"
#include "backend/cuda/cuda_moe_wgmma.cuh"
#include "backend/cuda/cuda_sm90.cuh"

/* A block: two warpgroups (256 threads), 128 weight rows, two blocks per SM (4 stages: 101 KB);
 * a tile: up to 128 tokens of one expert, or all of an expert's 129..160 (a 256-token tile with one block per SM
 * measured 10-30 % slower; so were 256 weight rows a block, round 30). Stage: activations (WG_BN rows of 64 fp16),
 * int4 words (2 k32 halves x 128 rows x 16 bytes), scale words; a multiple of the swizzle's 1024-byte alignment. */
enum { WG_BM = 128, WG_NT = 256, WG_W_B = 2 * WG_BM * 16, WG_S_B = 2 * WG_BM * 4 };
template <int ST> struct wg_cfg {
  static constexpr int B_B = WG_BN * 128, STAGE = B_B + WG_W_B + WG_S_B, SMEM = STAGE * ST + 1024;
};

/* One tile's main loop and epilogue with N tokens per MMA (N >= the tile's rows). The tile's activation rows are
 * positions base.. of the map (x gathered into expert order for gate+up, h for down): thread 0 asks the copy engine
 * for N/32 boxes of 32 rows per stage; every thread copies one int4 word and one scale word with cp.async. */
template <bool UP, int N, int WG_ST, bool G32, bool TL>
__device__ __forceinline__ void wg_tile(const gg_args &p, const CUtensorMap *map, char *sm, uint32_t bars,
                                        const float *s_wt, int e, int base, int rows) {
#ifdef MIMO_WG
  using C = wg_cfg<WG_ST>;
  const int nkt = (UP ? p.H : p.I) / 64;
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, g = lane >> 2, t = lane & 3;
  const cu_lin *tb = p.tab + (size_t)e * 3;
  const wg_copy<UP, TL, WG_BM> cp(p, tb, blockIdx.x, tid); /* this thread's int4 word and scale word a stage */
  const int grp = 32 << cp.gsh;
  const uint32_t sm0 = smem_u32(sm);

  auto load = [&](int sb, int kt) {
    const uint32_t sB = sm0 + sb * C::STAGE;
    if (tid == 0) {
      mbar_expect_tx(bars + 8 * sb, N * 128);
#pragma unroll
      for (int j = 0; j < N / 32; j++)
        tma_load(sB + j * 4096, map, kt * 64, base + 32 * j, bars + 8 * sb);
    }
    cp.issue(sB, kt);
  };
  /* this thread's A rows: R0 (gate+up: gate) and R0 + 8 (up) */
  const int R0 = 16 * warp + g;
  const dq_k kc = dq_consts();
  auto dequant = [&](int sb, uint32_t(&a)[16]) {
    const char *sW = sm + sb * C::STAGE + C::B_B;
    wg_dequant<WG_BM, G32>(sW, sW + WG_W_B, R0, t, grp, kc, a);
  };

  float d[N / 2];
#pragma unroll
  for (int i = 0; i < N / 2; i++)
    d[i] = 0.f;
  constexpr bool SB = N > 128; /* see step */
  uint32_t a0[16], a1[SB ? 1 : 16];
#pragma unroll
  for (int s = 0; s < WG_ST - 1; s++) {
    if (s < nkt)
      load(s, s);
    cp_commit();
  }
  cp_wait<WG_ST - 2>();
  __syncthreads();
  dequant(0, a0);

  /* stage kt: MMAs from registers a (dequantised before), then prepare stage kt + 1 into nx. N = 160 (an expert's
   * 129..160 tokens in one tile) has no room for a second set of A registers beside its 80 accumulators: it waits
   * for its own MMAs before dequantising into the same registers (nx = a), the other warpgroups keeping the tensor
   * cores busy meanwhile. */
  /* the stages' B descriptors: one descriptor's low word plus the offset >> 4 (at most 0x3900 < the 14-bit field:
   * no carry), its high word unchanged */
  const uint64_t desc0 = wg_desc(sm0);
  const uint32_t dlo = (uint32_t)desc0, dhi = (uint32_t)(desc0 >> 32);
  /* stage kt in shared-memory stage sb, its activations' barrier in phase ph */
  auto step = [&](int kt, int sb, uint32_t ph, const uint32_t(&a)[16], uint32_t(&nx)[16]) {
    mbar_wait(bars + 8 * sb, ph); /* this stage's activations have landed */
    wg_fence();
    const uint32_t lo = dlo + sb * (C::STAGE >> 4);
#pragma unroll
    for (int i = 0; i < 4; i++)
      wg_mma<N>(d, a + 4 * i, ((uint64_t)dhi << 32) | (lo + 2 * i));
    wg_commit();
    if constexpr (SB)
      wg_wait<0>(); /* stage kt's MMAs are done: a is free */
    else
      wg_wait<1>(); /* stage kt − 1's MMAs are done: its buffer and registers are free */
    if (kt + 1 < nkt) {
      cp_wait<WG_ST - 3>();
      __syncthreads(); /* every thread's weight copies of kt + 1 landed; every warpgroup is past kt − 1 */
      if (kt + WG_ST - 1 < nkt)
        load((sb + WG_ST - 1) % WG_ST, kt + WG_ST - 1);
      cp_commit();
      dequant((sb + 1) % WG_ST, nx);
    }
  };
  /* unrolled over a whole number of stages and register swaps, so that every stage's shared-memory offsets,
   * descriptors and barrier are constants (round 30: ~20 fewer instructions a stage) */
  constexpr int U = WG_ST % 2 ? 2 * WG_ST : WG_ST;
  for (int kt0 = 0; kt0 < nkt; kt0 += U) {
    const uint32_t ph0 = (kt0 / WG_ST) & 1;
#pragma unroll
    for (int u = 0; u < U; u++) {
      const int kt = kt0 + u;
      if (kt < nkt) {
        if constexpr (SB)
          step(kt, u % WG_ST, ph0 ^ ((u / WG_ST) & 1), a0, a0);
        else if (u & 1)
          step(kt, u % WG_ST, ph0 ^ ((u / WG_ST) & 1), a1, a0);
        else
          step(kt, u % WG_ST, ph0 ^ ((u / WG_ST) & 1), a0, a1);
      }
    }
  }
  wg_wait<0>();
  cp_wait<0>();
#pragma unroll
  for (int i = 0; i < N / 2; i++)
    wg_hold(d[i]);

  /* epilogue: column 8 warp + g of h (gate+up), or output rows R0, R0 + 8 (down) */
  wg_store<UP, N>(p, d, base, rows, t, UP ? blockIdx.x * (WG_BM / 2) + 8 * warp + g : blockIdx.x * WG_BM + R0,
                  [&](int tok) { return s_wt[tok]; });
#endif
}

template <bool UP, int ST, bool G32, bool TL>
__global__ void __launch_bounds__(WG_NT, 2) k_wg(const gg_args p, const __grid_constant__ CUtensorMap map) {
  extern __shared__ uint4 wg_smem[];
  __shared__ float s_wt[UP ? 1 : WG_BN]; /* down: the tile's routing weights (read in the epilogue) */
  __shared__ alignas(8) uint64_t s_bar[ST];  /* per stage: its activations have landed */
  const int tile = blockIdx.y;
  if (tile >= *p.ntiles)
    return;
  char *sm = (char *)wg_smem + ((1024u - (smem_u32(wg_smem) & 1023u)) & 1023u);
  const int e = p.tiles[3 * tile], base = p.tiles[3 * tile + 1], rows = p.tiles[3 * tile + 2];
  uint32_t bars = smem_u32(s_bar);
#ifdef MIMO_WG
  asm volatile("mov.b32 %0, %0;\n" : "+r"(bars)); /* opaque: kept in a register, not rebuilt at every stage */
  if (threadIdx.x == 0) {
    for (int s = 0; s < ST; s++)
      mbar_init(bars + 8 * s, 1);
    mbar_init_fence();
  }
#endif
  if (!UP)
    for (int i = threadIdx.x; i < WG_BN; i += WG_NT)
      s_wt[i] = i >= rows ? 0.f : p.wts[p.perm[base + i]];
  __syncthreads();
  switch ((rows + 31) >> 5) { /* tokens per MMA: the tile's rows rounded up to 32 */
  case 1: wg_tile<UP, 32, ST, G32, TL>(p, &map, sm, bars, s_wt, e, base, rows); break;
  case 2: wg_tile<UP, 64, ST, G32, TL>(p, &map, sm, bars, s_wt, e, base, rows); break;
  case 3: wg_tile<UP, 96, ST, G32, TL>(p, &map, sm, bars, s_wt, e, base, rows); break;
  case 4: wg_tile<UP, 128, ST, G32, TL>(p, &map, sm, bars, s_wt, e, base, rows); break;
  default: wg_tile<UP, 160, ST, G32, TL>(p, &map, sm, bars, s_wt, e, base, rows); break;
  }
}

/* x fp32 -> fp16 rows in expert order: token t's row goes to the positions slot[t·K + k] of its pairs (−1: on
 * another rank), each fp32 row read once; element k of each 32 at position 8(k % 4) + k / 4 (output chunk q of a 32
 * holds elements q, q + 4, ..., q + 28). */
__global__ void k_wg_xscatter(uint4 *xs, const float *x, const int *slot, int topk, int H8, long n8) {
  for (long i = blockIdx.x * (long)blockDim.x + threadIdx.x; i < n8; i += (long)gridDim.x * blockDim.x) {
    const long t = i / H8;
    const int c = (int)(i - t * H8);
    const float *s = x + (size_t)t * (H8 * 8) + (c >> 2) * 32 + (c & 3);
    const uint4 v = make_uint4(pack_h2(s[0], s[4]), pack_h2(s[8], s[12]), pack_h2(s[16], s[20]), pack_h2(s[24], s[28]));
    for (int k = 0; k < topk; k++) {
      const int q = slot[t * topk + k];
      if (q >= 0)
        xs[(size_t)q * H8 + c] = v;
    }
  }
}

void cu_moe_wg_xscatter(cu_ctx *c, void *xs, const float *x, const int *slot, int T, int topk, int H) {
  const long n8 = (long)T * H / 8;
  k_wg_xscatter<<<cdiv(n8, 256) < 8192 ? cdiv(n8, 256) : 8192, 256, 0, c->st>>>((uint4 *)xs, x, slot, topk, H / 8, n8);
  MIMO_CUDA_LAUNCHED(c);
}

/* Test hook and MIMO_CUDA_MOE_WG_TILE=128: an expert of 129..160 tokens takes a full tile and a part-filled one
 * instead of one tile of N = 160. */
static int wg_tile128 = -1;
extern "C" int mimo_cuda_moe_wg_tile128(int on) { return cu_switch(&wg_tile128, "MIMO_CUDA_MOE_WG_TILE", "128", on); }
int cu_moe_wg_one_tile(void) { return mimo_cuda_moe_wg_tile128(-1) ? 128 : (int)WG_BN; }

/* Test hook: wgmma mode 0 keeps the mma.sync kernels on SM90 too (1: the default). */
static int wg_mode = 1;
static std::atomic<int> wg_last; /* the last grouped MoE took the wgmma kernels (set by every GPU's thread) */
extern "C" int mimo_cuda_moe_grouped_wgmma_last(void) { return wg_last.load(std::memory_order_relaxed); }
extern "C" int mimo_cuda_moe_grouped_wgmma(int mode) {
  const int o = wg_mode;
  if (mode == 0 || mode == 1)
    wg_mode = mode;
  return o;
}

static bool wg_usable(cu_ctx *c, const mimo_moe_args *a) {
  /* MIMO_CUDA_MOE_WGMMA=0: the mma.sync kernels on SM90 too (whole-model A/B runs) */
  static const bool env = [] {
    const char *v = getenv("MIMO_CUDA_MOE_WGMMA");
    return !(v && !strcmp(v, "0"));
  }();
  if (!env || !wg_mode || c->cc != 90 || a->hidden % 64 || a->inter % 64 || !cu_tmap_encoder())
    return false;
  const cu_lin *L0 = (const cu_lin *)a->experts[0].dev;
  if (L0->fmt != CU_INT4 || (L0->group & (L0->group - 1)))
    return false;
  return cu_runs_sm90a(c);
}
bool cu_moe_wg_usable(cu_ctx *c, const mimo_moe_args *a) {
  const bool ok = wg_usable(c, a);
  wg_last.store(ok, std::memory_order_relaxed);
  return ok;
}

template <int ST> static void wg_launch(cu_ctx *c, const gg_args &p, const CUtensorMap &map, int max_tiles, bool up) {
  using C = wg_cfg<ST>;
  /* the experts' int4 layout is set by their shape (q4_idx), so one flag holds for all of a launch's experts */
  const bool tl = up ? p.tl_up : p.tl_down;
  void (*k)(const gg_args, const CUtensorMap) =
      up ? (p.g32 ? (tl ? k_wg<true, ST, true, true> : k_wg<true, ST, true, false>)
                  : (tl ? k_wg<true, ST, false, true> : k_wg<true, ST, false, false>))
         : (p.g32 ? (tl ? k_wg<false, ST, true, true> : k_wg<false, ST, true, false>)
                  : (tl ? k_wg<false, ST, false, true> : k_wg<false, ST, false, false>));
  if (MIMO_CUDA(c, cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, C::SMEM)) != MIMO_OK)
    return;
  const int cols = up ? cdiv(p.I, WG_BM / 2) : cdiv(p.H, WG_BM);
  k<<<dim3(cols, max_tiles), WG_NT, C::SMEM, c->st>>>(p, map);
  MIMO_CUDA_LAUNCHED(c);
}

void cu_moe_wg_launch(cu_ctx *c, const gg_args &p, int npos, int max_tiles, bool up) {
  /* the activations (x gathered, or h): npos rows of Kd fp16, boxes of 64 x 32 in the 128-byte swizzle */
  const int Kd = up ? p.H : p.I;
  CUtensorMap map;
  const cuuint64_t dim[2] = {(cuuint64_t)Kd, (cuuint64_t)npos}, stride[1] = {(cuuint64_t)Kd * 2};
  const cuuint32_t box[2] = {64, 32}, estride[2] = {1, 1};
  const CUresult r = cu_tmap_encoder()(&map, CU_TENSOR_MAP_DATA_TYPE_FLOAT16, 2, (void *)p.a, dim, stride, box, estride,
                                 CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B,
                                 CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  if (r != CUDA_SUCCESS) {
    cu_fail(c, "moe", "cuTensorMapEncodeTiled refused the activation map", __FILE__, __LINE__);
    return;
  }
  if (!cu_moe_wgws_launch(c, p, map, up))
    wg_launch<4>(c, p, map, max_tiles, up);
}
