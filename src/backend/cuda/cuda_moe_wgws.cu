/* Warp-specialised grouped int4 MoE GEMM on SM90a (round 31; MIMO_CUDA_MOE_WG_WS=1, off by default until a device
 * has measured it against cuda_moe_wgmma.cu's kernels).
 *
 * Why (docs/cuda.md, round 30): the grouped kernels of cuda_moe_wgmma.cu are bound by the L2 at 80-85 % of its
 * throughput, ~78 % of it the activation boxes that each of a tile's column blocks fetches. 256 weight rows a block
 * halve those bytes per weight row but cost either warps (two m64 a warpgroup) or a 16-warp block barrier a stage
 * (four warpgroups): 18-31 % slower. Here one block an SM, persistent over (tile, column block) items, has
 *   - a producer warpgroup (warps 12-15, 56 registers): its first thread asks the copy engine for a stage's
 *     activation boxes; all 128 copy the int4 words and scale words of the block's 192 weight rows with cp.async,
 *     whose completions arrive on the stage's "full" barrier (129 arrivals a phase: 128 copies and the expect-tx);
 *   - three consumer warpgroups (152 registers), each one m64 row block with cuda_moe_wgmma.cu's dequantisation,
 *     k order and epilogue (so the outputs are bit for bit that kernel's). A consumer waits on "full", never at a
 *     block barrier, and each warpgroup arrives on the stage's "empty" barrier (3 arrivals a phase) once its MMAs
 *     that read the stage are done; the producer waits on "empty" before it refills a stage. The producer runs ahead
 *     across items, so a tile's first stages load while the consumers finish the previous tile.
 * 192 rows a block fetch 2/3 of the activation bytes per weight row that 128 do. Registers: 3 x 128 x 152 +
 * 128 x 56 = 65,536 (every thread starts at 65,536 / 512 = 128). */
#include <stdint.h>

#include "backend/cuda/cuda_moe_gemm.h"
#include "backend/cuda/cuda_moe_wgmma.cuh"
#include "backend/cuda/cuda_sm90.cuh"

/* Block: WS_CWG consumer warpgroups of 64 rows, a producer warpgroup; WS_ST stages of WS_STAGE bytes (activations
 * WG_BN rows of 128 bytes, int4 words [k32 half][row][16 B], scale words [half][row]; padded to the swizzle's 1 KB) */
enum {
  WS_CWG = 3, WS_BM = 64 * WS_CWG, WS_NT = 128 * (WS_CWG + 1), WS_ST = 6, WS_PT = 128,
  WS_B_B = WG_BN * 128, WS_W_B = 2 * WS_BM * 16, WS_S_B = 2 * WS_BM * 4,
  WS_STAGE = (WS_B_B + WS_W_B + WS_S_B + 1023) / 1024 * 1024, WS_SMEM = WS_STAGE * WS_ST + 1024,
  WS_REG_P = 56, WS_REG_C = 152
};

#ifdef MIMO_WG
template <int R> __device__ __forceinline__ void setmaxnreg_inc() {
  asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(R));
}
template <int R> __device__ __forceinline__ void setmaxnreg_dec() {
  asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(R));
}
/* one arrival on bar when this thread's cp.async copies so far have landed (counted in the barrier's init count) */
__device__ __forceinline__ void cp_arrive_noinc(uint32_t bar) {
  asm volatile("cp.async.mbarrier.arrive.noinc.shared::cta.b64 [%0];\n" ::"r"(bar) : "memory");
}

/* The producer: for every item of this block and every k64 stage, wait until the stage is free, then fill it. */
template <bool UP, bool TL>
__device__ __forceinline__ void ws_produce(const gg_args &p, const CUtensorMap *map, uint32_t sm0, uint32_t full,
                                           uint32_t empty, int cols, int items) {
  const int pt = threadIdx.x - WS_CWG * 128; /* 0..127 */
  const int nkt = (UP ? p.H : p.I) / 64;
  constexpr int NC = WS_BM * 2 / WS_PT; /* copies a thread: (row, k32 half) pairs */
  static_assert(NC == 3, "one initialiser a copy below");
  int s = 0;
  uint32_t ph = 0;
  for (int it = blockIdx.x; it < items; it += gridDim.x) {
    const int tile = it / cols, cb = it - tile * cols;
    const int e = p.tiles[3 * tile], base = p.tiles[3 * tile + 1], rows = p.tiles[3 * tile + 2];
    const int nb = (rows + 31) >> 5; /* boxes of 32 activation rows: the consumers' N / 32 */
    const cu_lin *tb = p.tab + (size_t)e * 3;
    const wg_copy<UP, TL, WS_BM> cp[NC] = {{p, tb, cb, pt}, {p, tb, cb, pt + WS_PT}, {p, tb, cb, pt + 2 * WS_PT}};
    for (int kt = 0; kt < nkt; kt++) {
      mbar_wait(empty + 8 * s, ph ^ 1); /* the consumers are done with the stage's previous contents */
      const uint32_t sB = sm0 + s * WS_STAGE;
      if (pt == 0) {
        mbar_expect_tx(full + 8 * s, nb * 4096);
        for (int j = 0; j < nb; j++)
          tma_load(sB + j * 4096, map, kt * 64, base + 32 * j, full + 8 * s);
      }
#pragma unroll
      for (int j = 0; j < NC; j++)
        cp[j].issue(sB, kt);
      cp_arrive_noinc(full + 8 * s);
      if (++s == WS_ST) {
        s = 0;
        ph ^= 1;
      }
    }
  }
  /* stay until the consumers have released every stage: no copy of this warpgroup's is in flight at its exit */
  for (int i = 0; i < WS_ST; i++) {
    mbar_wait(empty + 8 * s, ph ^ 1);
    if (++s == WS_ST) {
      s = 0;
      ph ^= 1;
    }
  }
  asm volatile("cp.async.wait_all;\n" ::: "memory");
}

/* One consumer warpgroup's tile: N tokens per MMA (N >= rows), its m64 row block, stages from ring position s
 * (phase ph), advanced past the tile's nkt stages. */
template <bool UP, int N, bool G32>
__device__ __forceinline__ void ws_tile(const gg_args &p, char *sm, uint32_t full, uint32_t empty, int e, int base,
                                        int rows, int cb, int &s, uint32_t &ph) {
  const int Kd = UP ? p.H : p.I, nkt = Kd / 64;
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, g = lane >> 2, t = lane & 3;
  const int grp = p.tab[(size_t)e * 3 + (UP ? 0 : 2)].group;
  const uint32_t sm0 = smem_u32(sm);
  const int R0 = 16 * warp + g; /* A rows R0 (gate+up: gate) and R0 + 8 (up) of the block's WS_BM */
  const dq_k kc = dq_consts();
  auto dequant = [&](int sb, uint32_t(&a)[16]) {
    const char *sW = sm + sb * WS_STAGE + WS_B_B;
    wg_dequant<WS_BM, G32>(sW, sW + WS_W_B, R0, t, grp, kc, a);
  };
  /* the warpgroup's first thread frees a stage once the warpgroup's MMAs that read it are done */
  auto release = [&](int sb) {
    if ((tid & 127) == 0)
      mbar_arrive(empty + 8 * sb);
  };
  const uint64_t desc0 = wg_desc(sm0);
  const uint32_t dlo = (uint32_t)desc0, dhi = (uint32_t)(desc0 >> 32);

  float d[N / 2];
#pragma unroll
  for (int i = 0; i < N / 2; i++)
    d[i] = 0.f;
  constexpr bool SB = N > 128; /* no room for a second set of A registers beside N/2 accumulators */
  uint32_t a0[16], a1[SB ? 1 : 16];
  int prev = -1;
  mbar_wait(full + 8 * s, ph);
  dequant(s, a0);
  auto step = [&](int kt, const uint32_t(&a)[16], uint32_t(&nx)[16]) {
    wg_fence();
    const uint32_t lo = dlo + s * (WS_STAGE >> 4);
#pragma unroll
    for (int i = 0; i < 4; i++)
      wg_mma<N>(d, a + 4 * i, ((uint64_t)dhi << 32) | (lo + 2 * i));
    wg_commit();
    if constexpr (SB) {
      wg_wait<0>(); /* stage kt's MMAs are done: a and the stage are free */
      release(s);
    } else {
      wg_wait<1>(); /* stage kt − 1's MMAs are done */
      if (prev >= 0)
        release(prev);
      prev = s;
    }
    if (++s == WS_ST) {
      s = 0;
      ph ^= 1;
    }
    if (kt + 1 < nkt) {
      mbar_wait(full + 8 * s, ph);
      dequant(s, nx);
    }
  };
  if constexpr (SB) {
    for (int kt = 0; kt < nkt; kt++)
      step(kt, a0, a0);
  } else {
    for (int kt = 0; kt < nkt; kt += 2) {
      step(kt, a0, a1);
      if (kt + 1 < nkt)
        step(kt + 1, a1, a0);
    }
  }
  wg_wait<0>();
  if (!SB && prev >= 0)
    release(prev);
#pragma unroll
  for (int i = 0; i < N / 2; i++)
    wg_hold(d[i]);

  /* epilogue: column 8 warp + g of h (gate+up), or output rows R0, R0 + 8 (down) */
  wg_store<UP, N>(p, d, base, rows, t, UP ? cb * (WS_BM / 2) + 8 * warp + g : cb * WS_BM + R0,
                  [&](int tok) { return __ldg(p.wts + __ldg(p.perm + base + tok)); });
}

template <bool UP, bool G32>
__device__ __forceinline__ void ws_consume(const gg_args &p, char *sm, uint32_t full, uint32_t empty, int cols,
                                           int items) {
  int s = 0;
  uint32_t ph = 0;
  for (int it = blockIdx.x; it < items; it += gridDim.x) {
    const int tile = it / cols, cb = it - tile * cols;
    const int e = p.tiles[3 * tile], base = p.tiles[3 * tile + 1], rows = p.tiles[3 * tile + 2];
    switch ((rows + 31) >> 5) { /* tokens per MMA: the tile's rows rounded up to 32, as the producer's boxes */
    case 1: ws_tile<UP, 32, G32>(p, sm, full, empty, e, base, rows, cb, s, ph); break;
    case 2: ws_tile<UP, 64, G32>(p, sm, full, empty, e, base, rows, cb, s, ph); break;
    case 3: ws_tile<UP, 96, G32>(p, sm, full, empty, e, base, rows, cb, s, ph); break;
    case 4: ws_tile<UP, 128, G32>(p, sm, full, empty, e, base, rows, cb, s, ph); break;
    default: ws_tile<UP, 160, G32>(p, sm, full, empty, e, base, rows, cb, s, ph); break;
    }
  }
}
#endif

template <bool UP, bool G32, bool TL>
__global__ void __launch_bounds__(WS_NT, 1) k_wgws(const gg_args p, const __grid_constant__ CUtensorMap map) {
#ifdef MIMO_WG
  extern __shared__ uint4 ws_smem[];
  __shared__ alignas(8) uint64_t s_full[WS_ST], s_empty[WS_ST];
  char *sm = (char *)ws_smem + ((1024u - (smem_u32(ws_smem) & 1023u)) & 1023u);
  uint32_t full = smem_u32(s_full), empty = smem_u32(s_empty);
  asm volatile("mov.b32 %0, %0;\n" : "+r"(full)); /* kept in registers, not rebuilt at every stage */
  asm volatile("mov.b32 %0, %0;\n" : "+r"(empty));
  if (threadIdx.x == 0) {
    for (int s = 0; s < WS_ST; s++) {
      mbar_init(full + 8 * s, WS_PT + 1);
      mbar_init(empty + 8 * s, WS_CWG);
    }
    mbar_init_fence();
  }
  __syncthreads();
  const int cols = UP ? (p.I + WS_BM / 2 - 1) / (WS_BM / 2) : (p.H + WS_BM - 1) / WS_BM, items = *p.ntiles * cols;
  if (threadIdx.x >= WS_CWG * 128) {
    setmaxnreg_dec<WS_REG_P>();
    ws_produce<UP, TL>(p, &map, smem_u32(sm), full, empty, cols, items);
  } else {
    setmaxnreg_inc<WS_REG_C>();
    ws_consume<UP, G32>(p, sm, full, empty, cols, items);
  }
#endif
}

/* Test hook and MIMO_CUDA_MOE_WG_WS=1: the grouped wgmma GEMMs warp-specialised (this file) */
static int ws_on = -1;
extern "C" int mimo_cuda_moe_wg_ws(int on) { return cu_switch(&ws_on, "MIMO_CUDA_MOE_WG_WS", "1", on); }

bool cu_moe_wgws_launch(cu_ctx *c, const gg_args &p, const CUtensorMap &map, bool up) {
  if (!mimo_cuda_moe_wg_ws(-1))
    return false;
  const bool tl = up ? p.tl_up : p.tl_down;
  void (*k)(const gg_args, const CUtensorMap) =
      up ? (p.g32 ? (tl ? k_wgws<true, true, true> : k_wgws<true, true, false>)
                  : (tl ? k_wgws<true, false, true> : k_wgws<true, false, false>))
         : (p.g32 ? (tl ? k_wgws<false, true, true> : k_wgws<false, true, false>)
                  : (tl ? k_wgws<false, false, true> : k_wgws<false, false, false>));
  if (MIMO_CUDA(c, cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, WS_SMEM)) != MIMO_OK)
    return true;
  k<<<c->sms, WS_NT, WS_SMEM, c->st>>>(p, map); /* persistent: one block an SM walks the (tile, column) items */
  MIMO_CUDA_LAUNCHED(c);
  return true;
}
