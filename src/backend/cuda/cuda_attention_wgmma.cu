/* Prefill attention on SM90a warpgroup MMA (wgmma), fp16 operands, fp32 accumulation: the same tiles, masking,
 * online softmax and outputs as the mma.sync kernel (cuda_attention_prefill.cu, whose shared pieces are in
 * cuda_attention_prefill.cuh), with the matrix products moved to warpgroup MMA and the key and value tiles brought
 * by the tensor copy engine.
 *
 * A block: 64·NWG query rows of one kv head in NWG consumer warpgroups of 64 rows (warp w: rows 16w..16w+15, as in
 * the mma.sync kernel) and a producer. Per key tile of 64:
 *   S [64 rows][64 keys] = Q · Kᵀ: m64n64k16, Q staged once into shared memory in the 128-byte swizzle (A through
 *     a descriptor: in registers it would take 48 of a consumer thread's registers), K as stored ([key][dim]: B
 *     K-major);
 *   O [64 rows][V] += P · V: m64nVk16, P from registers (the score accumulators, laid out as A fragments), V from
 *     shared memory as stored ([key][dim]: B N-major, the transposing form).
 * A thread's S and O accumulators sit where the mma.sync kernel has them, so the softmax and the store are
 * shared code; with NWG = 2 the blocks are the 8-warp kernel's and the results bit for bit its. The producer's one
 * thread keeps NS stages of K and V in flight: each tile is D/64 + V/64 boxes of 64 keys x 64 dims (128-byte
 * swizzle, which the descriptors read) of the 16-bit copies, completing on the stage's "full" mbarrier; the
 * consumer warps arrive on its "empty" mbarrier when their MMAs are done with it. Keys past a kv head's end come as
 * zeros (the map's bounds), and are masked. */
#include <atomic>

#include "backend/cuda/cuda_attention_prefill.cuh"
#include "backend/cuda/cuda_sm90.cuh"

namespace {
using namespace pf;
/* NWG consumer warpgroups of 64 rows (BM rows per block) and the producer: one warp with two consumer warpgroups
 * (288 threads, 168 registers each); a whole warpgroup with three, which gives its registers to the consumers
 * (setmaxnreg: 24 for the producer, 160 for the consumers, of the 128 a thread of 512 starts with). */
template <int D, int V, int NS, int NWG> struct wa_cfg {
  static constexpr int BM = 64 * NWG, CT = 128 * NWG, NT = CT + (NWG == 3 ? 128 : 32);
  static constexpr int KB = BN * D * 2, STAGE = KB + BN * V * 2, QS = BM * D * 2;
  static constexpr int SMEM = 1024 + NS * STAGE + QS;
};

template <int D, int V, int NS, int NWG>
__global__ void __launch_bounds__(wa_cfg<D, V, NS, NWG>::NT, 1)
    k_attn_wg(const pf_args a, const __grid_constant__ CUtensorMap mk, const __grid_constant__ CUtensorMap mv) {
#ifdef MIMO_WG
  using C = wa_cfg<D, V, NS, NWG>;
  constexpr int WBM = C::BM;
  extern __shared__ uint4 wa_smem[];
  __shared__ alignas(8) uint64_t s_full[NS], s_empty[NS];
  char *sm = (char *)wa_smem + ((1024u - (smem_u32(wa_smem) & 1023u)) & 1023u); /* the swizzle's alignment */
  uint16_t *sQ = (uint16_t *)(sm + NS * C::STAGE);
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, gq = lane >> 2, tq = lane & 3;
  const int g = blockIdx.y;
  const pf_span sp = pf_block_span(a, WBM);
  const uint32_t full0 = smem_u32(s_full), empty0 = smem_u32(s_empty), st0 = smem_u32(sm);
  if (tid == 0) {
    for (int s = 0; s < NS; s++) {
      mbar_init(full0 + 8 * s, 1);
      mbar_init(empty0 + 8 * s, 4 * NWG);
    }
    mbar_init_fence();
  }
  __syncthreads();

  if (warp >= 4 * NWG) { /* producer */
    if constexpr (NWG == 3)
      asm volatile("setmaxnreg.dec.sync.aligned.u32 24;\n" ::: "memory");
    if (warp == 4 * NWG && lane == 0)
      for (int it = sp.t_lo; it < sp.t_hi; it++) {
        const int i = it - sp.t_lo, s = i % NS;
        if (i >= NS)
          mbar_wait(empty0 + 8 * s, (i / NS - 1) & 1); /* the consumers are done with its previous tile */
        const uint32_t stg = st0 + s * C::STAGE, fb = full0 + 8 * s;
        const int row = sp.kbeg + it * BN - a.j0;
        mbar_expect_tx(fb, C::STAGE);
#pragma unroll
        for (int c = 0; c < D / 64; c++)
          tma_load3(stg + c * BN * 128, &mk, c * 64, row, g, fb);
#pragma unroll
        for (int c = 0; c < V / 64; c++)
          tma_load3(stg + C::KB + c * BN * 128, &mv, c * 64, row, g, fb);
      }
    return;
  }

  if constexpr (NWG == 3)
    asm volatile("setmaxnreg.inc.sync.aligned.u32 160;\n" ::: "memory");
  pf_stage_q<D, WBM, C::CT, PF_FP16, true>(a, sQ, sp.R0, g, tid);
  asm volatile("bar.sync 1, %0;\n" ::"n"(C::CT) : "memory"); /* the consumers only */
  /* this warpgroup's 64 rows of Q: A through a descriptor, rows 64·wg.. of each 64-dim box */
  const uint32_t q0 = smem_u32(sQ) + (warp >> 2) * 64 * 128;

  const pf_rows rw = pf_thread_rows(a, sp.R0, warp, gq);
  float o[V / 8][4];
#pragma unroll
  for (int i = 0; i < V / 8; i++)
    o[i][0] = o[i][1] = o[i][2] = o[i][3] = 0.f;
  pf_state st = {-INFINITY, -INFINITY, 0.f, 0.f};

  /* S = Q · Kᵀ of the tile in stage stg into sc (one wgmma group) */
  auto issue_qk = [&](float(&sc)[BN / 8][4], uint32_t stg) {
#pragma unroll
    for (int j = 0; j < BN / 8; j++)
      sc[j][0] = sc[j][1] = sc[j][2] = sc[j][3] = 0.f;
    wg_fence();
#pragma unroll
    for (int kk = 0; kk < D / 16; kk++) /* box kk / 4, 32 bytes per k16 inside its 128-byte rows */
      wg_mma_ss_n64(&sc[0][0], wg_desc(q0 + (kk >> 2) * (WBM * 128) + (kk & 3) * 32),
                    wg_desc(stg + (kk >> 2) * (BN * 128) + (kk & 3) * 32));
    wg_commit();
  };
  /* O += P · V of the tile in stage stg (one wgmma group) */
  auto issue_pv = [&](const uint32_t(&p)[BN / 16][4], uint32_t stg) {
    wg_fence();
#pragma unroll
    for (int kc = 0; kc < BN / 16; kc++) /* keys 16kc..: two groups of 8 rows; V's 64-dim boxes BN·128 apart */
      wg_mma_tb<V>(&o[0][0], p[kc], wg_desc_n(stg + C::KB + kc * 16 * 128, BN * 128));
    wg_commit();
  };
  auto hold_s = [&](float(&sc)[BN / 8][4]) {
#pragma unroll
    for (int j = 0; j < BN / 8; j++)
#pragma unroll
      for (int e = 0; e < 4; e++)
        wg_hold(sc[j][e]);
  };
  auto hold_o = [&]() {
#pragma unroll
    for (int j = 0; j < V / 8; j++)
#pragma unroll
      for (int e = 0; e < 4; e++)
        wg_hold(o[j][e]);
  };
  /* rescale O, then P as A fragments */
  auto rescale_pack = [&](float2 cf, const float(&sc)[BN / 8][4], uint32_t(&p)[BN / 16][4]) {
    pf_rescale<V>(o, cf);
#pragma unroll
    for (int kc = 0; kc < BN / 16; kc++)
      pf_p_frag<PF_FP16>(p[kc], sc, kc);
  };
  const int n = sp.t_hi - sp.t_lo;
  auto stage = [&](int i) { return st0 + (i % NS) * C::STAGE; };
  float sc[BN / 8][4];
  uint32_t p[BN / 16][4];
  /* Tried and not kept (H200, 32K causal, two consumer warpgroups, each against this loop in the same run):
   * issuing tile i + 1's Q·Kᵀ before tile i's softmax, with 3 or 4 stages (41.1–42.2 ms against 39.6–42.8 ms), and
   * on top of it the two warpgroups taking turns on the tensor cores through named barriers (40.1–41.7 against
   * 41.2–41.9 ms): within the runs' noise. Nsight Compute (base clocks) had the tensor pipe 67 % busy, L2 34 %,
   * DRAM 2 %, 9 warps per SM: latency, which the third consumer warpgroup hides (38.1 against 42.1 ms). */
  for (int i = 0; i < n; i++) {
    mbar_wait(full0 + 8 * (i % NS), (i / NS) & 1);
    issue_qk(sc, stage(i));
    wg_wait<0>();
    hold_s(sc);
    rescale_pack(pf_softmax_tile(sc, st, rw, sp, sp.kbeg + (sp.t_lo + i) * BN, tq), sc, p);
    issue_pv(p, stage(i));
    wg_wait<0>();
    hold_o();
    if (lane == 0)
      mbar_arrive(empty0 + 8 * (i % NS)); /* this warp is done with the stage */
  }
  pf_store<V>(a, o, st, rw, g, tq);
#endif
}

/* Test hooks: mode 0 keeps the mma.sync kernel on SM90 too (1: the default); consumer warpgroups per block 2 or 3
 * (0: the default, cu_attn_wg_rows). */
int wa_mode = 1, wa_wgs = 0;
std::atomic<int> wa_last; /* the last fp16 prefill took this kernel */

/* 3 stages: 4 measured the same */
template <int D, int V, int NWG>
void wa_launch(cu_ctx *c, const pf_args &p, const CUtensorMap &mk, const CUtensorMap &mv) {
  constexpr int NS = 3;
  using C = wa_cfg<D, V, NS, NWG>;
  if (MIMO_CUDA(c, cudaFuncSetAttribute(k_attn_wg<D, V, NS, NWG>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                        C::SMEM)) != MIMO_OK)
    return;
  const int nrb = (p.rows + C::BM - 1) / C::BM;
  k_attn_wg<D, V, NS, NWG><<<dim3(nrb, p.n_kv, p.nsplit), C::NT, C::SMEM, c->st>>>(p, mk, mv);
  MIMO_CUDA_LAUNCHED(c);
}
template <int D, int V> void wa_launch(cu_ctx *c, const pf_args &p, const CUtensorMap &mk, const CUtensorMap &mv) {
  cu_attn_wg_rows() == 192 ? wa_launch<D, V, 3>(c, p, mk, mv) : wa_launch<D, V, 2>(c, p, mk, mv);
}
} // namespace

extern "C" int mimo_cuda_attn_prefill_wgmma(int mode) {
  const int o = wa_mode;
  if (mode == 0 || mode == 1)
    wa_mode = mode;
  return o;
}
extern "C" int mimo_cuda_attn_prefill_wgmma_wgs(int n) {
  const int o = wa_wgs;
  if (n == 0 || n == 2 || n == 3)
    wa_wgs = n;
  return o;
}
/* Rows per block: three consumer warpgroups (H200, 32K tokens: causal 38.1 against 42.1 ms with two, window 128
 * 1.76 against 2.06 ms); two remain for the tests (the 8-warp mma.sync kernel's blocks, bit for bit). */
int cu_attn_wg_rows(void) { return 64 * (wa_wgs ? wa_wgs : 3); }
extern "C" int mimo_cuda_attn_prefill_wgmma_last(void) { return wa_last.load(std::memory_order_relaxed); }

bool cu_attn_wg_usable(cu_ctx *c, int D, int V) {
  /* MIMO_CUDA_ATTN_WGMMA=0: the mma.sync kernel on SM90 too (whole-model A/B runs) */
  static const bool env = [] {
    const char *v = getenv("MIMO_CUDA_ATTN_WGMMA");
    return !(v && !strcmp(v, "0"));
  }();
  const bool dims = (D == 192 && V == 128) || (D == 128 && V == 128) || (D == 64 && V == 64);
  const bool ok = env && wa_mode && dims && cu_tmap_encoder() && cu_runs_sm90a(c);
  wa_last.store(ok, std::memory_order_relaxed);
  return ok;
}

/* The 16-bit copies [n_kv][L][dim] as 3-D maps (dim, position, kv head), boxes of 64 dims x 64 positions. */
static bool wa_map(cu_ctx *c, CUtensorMap *m, const uint16_t *base, int dim, int L, int n_kv) {
  const cuuint64_t gdim[3] = {(cuuint64_t)dim, (cuuint64_t)L, (cuuint64_t)n_kv},
                   stride[2] = {(cuuint64_t)dim * 2, (cuuint64_t)dim * 2 * L};
  const cuuint32_t box[3] = {64, BN, 1}, estride[3] = {1, 1, 1};
  const CUresult r = cu_tmap_encoder()(m, CU_TENSOR_MAP_DATA_TYPE_FLOAT16, 3, (void *)base, gdim, stride, box, estride,
                                       CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B,
                                       CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  if (r != CUDA_SUCCESS) {
    cu_fail(c, "attention", "cuTensorMapEncodeTiled refused the key/value map", __FILE__, __LINE__);
    return false;
  }
  return true;
}

void cu_attn_wg_launch(cu_ctx *c, const pf_args &p, int D, int V) {
  CUtensorMap mk, mv;
  if (!wa_map(c, &mk, p.kb, D, p.L, p.n_kv) || !wa_map(c, &mv, p.vb, V, p.L, p.n_kv))
    return;
  if (D == 192 && V == 128)
    wa_launch<192, 128>(c, p, mk, mv);
  else if (D == 128 && V == 128)
    wa_launch<128, 128>(c, p, mk, mv);
  else if (D == 64 && V == 64)
    wa_launch<64, 64>(c, p, mk, mv);
  else
    cu_fail(c, "attention", "no warpgroup-MMA kernel for these head dims", __FILE__, __LINE__);
}
