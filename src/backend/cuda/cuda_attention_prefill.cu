/* Tensor-core prefill attention: fp16 (or bf16) mma.sync.m16n8k16 with fp32
 * accumulation, ldmatrix fragments, cp.async double buffering (SM80 instructions;
 * the same code runs on SM90).
 *
 * Operand precision P (cuda_attention.cu's ATTN_*): PF_FP16 rounds Q, K, P, V to
 * fp16 (11-bit significand: ~8x less error than bf16 at the same speed; on H200
 * 3.9e-4 vs 3.1e-3 relative in attn check); PF_BF16 is the former bf16 kernel,
 * kept as the speed reference. fp16 range: q·scale·log2(e), k and v are clamped
 * to ±65504 before the conversion (finite, never inf/NaN); this model's q/k/v are
 * far below that, and P ≤ 1. Scores from hi + lo fp16 splits of Q and K (3
 * products) were measured and dropped: only 1.5x less error (P·V rounding then
 * dominates) for 1.7x (causal 32K) / 2.3x (window 128) the time.
 *
 * First the keys/values this step reads (cache for positions < len, ring aware,
 * step buffers after) are converted once to contiguous 16-bit [n_kv][L][dim], so
 * the tile loads are plain 16-byte cp.async copies and every later read costs
 * half the bytes. A block takes 128 (or 64) query rows of ONE kv head: row r of the
 * group is (token r / G, head g·G + r % G), so the heads that share the kv head
 * share every K/V tile and the rows of a block span few positions (narrow causal
 * edge, few wasted keys under a sliding window). 8 (4) warps × 16 rows, keys in
 * tiles of 64; Q stays in registers as bf16 fragments, pre-multiplied by
 * scale·log2(e) so the online softmax runs on exp2. Key tiles outside every
 * row's window or above the diagonal are never visited; only edge tiles are
 * masked. With few blocks (short chunk, long cache) the key range is split
 * across blocks, which then write partial (max, sum, acc) rows that
 * cuda_attention.cu combines (and adds the sink to). */
#include "backend/cuda/cuda_attention_prefill.cuh"

namespace {
using namespace pf;
/* 16-byte async copy global → shared; ok = 0 writes zeros (src not read). */
__device__ __forceinline__ void cp_async16(void *dst, const void *src, bool ok) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(smem_addr(dst)), "l"(src), "r"(ok ? 16 : 0)
               : "memory");
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;" ::: "memory"); }
template <int N> __device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;" ::"n"(N) : "memory");
}
__device__ __forceinline__ void ldsm_x4_t(uint32_t *r, const void *p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_addr(p)));
}
/* d += A(16×16, row) · B(16×8, col), bf16 or fp16 operands, fp32 accumulators. */
template <int P> __device__ __forceinline__ void mma16(float *d, const uint32_t *a, uint32_t b0, uint32_t b1) {
  if constexpr (P == PF_BF16)
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                 "{%0,%1,%2,%3};"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  else
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                 "{%0,%1,%2,%3};"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

/* Keys/values of positions j0 .. j0+L−1 to 16-bit, kv head = blockIdx.y; 8 elements per thread. */
template <int P>
__global__ void k_kv_to_16(const float *k, const float *v, const kv_ref kc, uint16_t *kb, uint16_t *vb, int n_kv, int D,
                           int V, int len, int j0, int L) {
  const int g = blockIdx.y, ch = (D + V) / 8;
  const long idx = (long)blockIdx.x * blockDim.x + threadIdx.x;
  if (idx >= (long)L * ch)
    return;
  const int i = (int)(idx / ch), c = (int)(idx % ch), j = j0 + i;
  const int isv = c >= D / 8, dim = isv ? V : D, off = (isv ? c - D / 8 : c) * 8;
  float4 x, y;
  if (j < len) { /* the cache's elements (bf16 widened: exact) */
    const void *row = kv_row(kc, j, isv, n_kv * dim);
    if (kc.bf16) {
      const uint4 h = *(const uint4 *)((const uint16_t *)row + (size_t)g * dim + off);
      x = kv_widen4(make_uint2(h.x, h.y));
      y = kv_widen4(make_uint2(h.z, h.w));
    } else {
      const float *src = (const float *)row + (size_t)g * dim + off;
      x = *(const float4 *)src, y = *(const float4 *)(src + 4);
    }
  } else { /* this step's, rounded as the cache will keep them */
    const float *src = (isv ? v : k) + ((size_t)(j - len) * n_kv + g) * dim + off;
    x = *(const float4 *)src, y = *(const float4 *)(src + 4);
    x = make_float4(kv_round(x.x, kc.bf16), kv_round(x.y, kc.bf16), kv_round(x.z, kc.bf16), kv_round(x.w, kc.bf16));
    y = make_float4(kv_round(y.x, kc.bf16), kv_round(y.y, kc.bf16), kv_round(y.z, kc.bf16), kv_round(y.w, kc.bf16));
  }
  uint4 u = {pack2<P>(x.x, x.y), pack2<P>(x.z, x.w), pack2<P>(y.x, y.y), pack2<P>(y.z, y.w)};
  *(uint4 *)((isv ? vb : kb) + ((size_t)g * L + i) * dim + off) = u;
}

/* NW warps × 16 query rows per block: 8 (one block per SM, K/V tiles shared by 128 rows) for long key
 * ranges; 4 for short sliding windows, where two blocks per SM let one block's Q load and output
 * store overlap the other's math. */
template <int D, int V, int NW, int P> __global__ void __launch_bounds__(NW * 32) k_attn_prefill(pf_args a) {
  constexpr int BM = NW * 16, THREADS = NW * 32;
  /* Rows padded by 16 bytes: the 8 rows one ldmatrix reads land in 8 different bank groups. */
  constexpr int DS = D + 8, VS = V + 8, DC = D / 8, VC = V / 8;
  extern __shared__ uint4 smem_u4[];
  uint16_t *sQ = (uint16_t *)smem_u4, *sK = sQ + BM * DS, *sV = sK + 2 * BN * DS;
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, gq = lane >> 2, tq = lane & 3;
  const int g = blockIdx.y;
  const pf_span sp = pf_block_span(a, BM);
  const int t_lo = sp.t_lo, t_hi = sp.t_hi;

  auto load_tile = [&](int tile, int buf) {
    const int kt = sp.kbeg + tile * BN, jend = a.len + a.T;
    uint16_t *dk = sK + buf * BN * DS, *dv = sV + buf * BN * VS;
    for (int i = tid; i < BN * DC; i += THREADS) {
      const int r = i / DC, c = (i % DC) * 8, j = kt + r;
      cp_async16(dk + r * DS + c, a.kb + ((size_t)g * a.L + (j < jend ? j - a.j0 : 0)) * D + c, j < jend);
    }
    for (int i = tid; i < BN * VC; i += THREADS) {
      const int r = i / VC, c = (i % VC) * 8, j = kt + r;
      cp_async16(dv + r * VS + c, a.vb + ((size_t)g * a.L + (j < jend ? j - a.j0 : 0)) * V + c, j < jend);
    }
  };
  /* First K/V tile in flight while Q is staged. */
  if (t_lo < t_hi)
    load_tile(t_lo, 0);
  cp_async_commit();
  pf_stage_q<D, BM, THREADS, P>(a, sQ, sp.R0, g, tid);
  __syncthreads();
  uint32_t qf[D / 16][4];
#pragma unroll
  for (int kk = 0; kk < D / 16; kk++)
    ldsm_x4(qf[kk], sQ + (warp * 16 + (lane & 15)) * DS + kk * 16 + (lane >> 4) * 8);

  const pf_rows rw = pf_thread_rows(a, sp.R0, warp, gq);
  float o[V / 8][4];
#pragma unroll
  for (int i = 0; i < V / 8; i++)
    o[i][0] = o[i][1] = o[i][2] = o[i][3] = 0.f;
  pf_state st = {-INFINITY, -INFINITY, 0.f, 0.f};

  for (int it = t_lo; it < t_hi; it++) {
    const int buf = (it - t_lo) & 1;
    if (it + 1 < t_hi)
      load_tile(it + 1, buf ^ 1);
    cp_async_commit();
    cp_async_wait<1>();
    __syncthreads();
    const uint16_t *bk = sK + buf * BN * DS, *bv = sV + buf * BN * VS;
    float s[BN / 8][4];
#pragma unroll
    for (int i = 0; i < BN / 8; i++)
      s[i][0] = s[i][1] = s[i][2] = s[i][3] = 0.f;
#pragma unroll
    for (int kk = 0; kk < D / 16; kk++) {
#pragma unroll
      for (int np = 0; np < BN / 16; np++) {
        uint32_t b[4]; /* b0,b1 of key n-tile 2np, then of 2np+1 */
        ldsm_x4(b, bk + (np * 16 + (lane & 7) + (lane >> 4) * 8) * DS + kk * 16 + ((lane >> 3) & 1) * 8);
        mma16<P>(s[2 * np], qf[kk], b[0], b[1]);
        mma16<P>(s[2 * np + 1], qf[kk], b[2], b[3]);
      }
    }
    pf_rescale<V>(o, pf_softmax_tile(s, st, rw, sp, sp.kbeg + it * BN, tq));
    /* O += P · V: the score accumulators are already laid out as A fragments. */
#pragma unroll
    for (int kc = 0; kc < BN / 16; kc++) {
      uint32_t p[4];
      pf_p_frag<P>(p, s, kc);
#pragma unroll
      for (int vp = 0; vp < V / 16; vp++) {
        uint32_t b[4]; /* b0,b1 of value n-tile 2vp, then of 2vp+1 */
        ldsm_x4_t(b, bv + (kc * 16 + (lane & 7) + ((lane >> 3) & 1) * 8) * VS + vp * 16 + (lane >> 4) * 8);
        mma16<P>(o[2 * vp], p, b[0], b[1]);
        mma16<P>(o[2 * vp + 1], p, b[2], b[3]);
      }
    }
    __syncthreads(); /* the buffer is refilled next iteration */
  }
  cp_async_wait<0>();
  pf_store<V>(a, o, st, rw, g, tq);
}

template <int D, int V, int NW, int P> void launch(cu_ctx *c, const pf_args &p) {
  constexpr int BM = NW * 16;
  const int nrb = (p.rows + BM - 1) / BM;
  const size_t smem = (size_t)(BM * (D + 8) + 2 * BN * (D + 8) + 2 * BN * (V + 8)) * 2;
  if (MIMO_CUDA(c, cudaFuncSetAttribute(k_attn_prefill<D, V, NW, P>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                        (int)smem)) != MIMO_OK)
    return;
  k_attn_prefill<D, V, NW, P><<<dim3(nrb, p.n_kv, p.nsplit), NW * 32, smem, c->st>>>(p);
  MIMO_CUDA_LAUNCHED(c);
}
template <int D, int V, int P> void launch_nw(cu_ctx *c, const pf_args &p, int nw) {
  nw == 4 ? launch<D, V, 4, P>(c, p) : launch<D, V, 8, P>(c, p);
}
} // namespace

/* Dims with a tensor-core prefill kernel. */
int cu_attn_prefill_dims(int D, int V) { return (D == 192 && V == 128) || (D == 128 && V == 128) || (D == 64 && V == 64); }

static int pf_warps; /* test hook: 0 auto, else 4 or 8 warps per block */
extern "C" void mimo_cuda_attn_prefill_warps(int nw) { pf_warps = nw; }

/* The SM90a kernel takes fp16 prefills where its code runs (128 rows per block, as 8 warps). */
static bool use_wg(cu_ctx *c, const mimo_attn_args *a, int prec) {
  return prec == PF_FP16 && cu_attn_wg_usable(c, a->head_dim, a->v_head_dim);
}

static int warps_for(const mimo_attn_args *a) {
  if (pf_warps == 4 || pf_warps == 8)
    return pf_warps;
  return a->window > 0 && a->window <= 512 ? 4 : 8;
}

/* How many key splits the prefill will use: enough blocks to cover the SMs once. */
int cu_attn_prefill_splits(cu_ctx *c, const mimo_attn_args *a, int prec) {
  const int BM = use_wg(c, a, prec) ? cu_attn_wg_rows() : 16 * warps_for(a);
  const int G = a->n_heads / a->n_kv, rows = a->T * G, nrb = (rows + BM - 1) / BM, blocks = nrb * a->n_kv;
  if (blocks >= c->sms)
    return 1;
  const int lo = a->window > 0 ? a->kv->len - a->window + 1 : 0;
  const int keys = a->kv->len + a->T - (lo > 0 ? lo : 0), maxs = (keys + BN - 1) / BN;
  int s = (c->sms + blocks - 1) / blocks;
  return s < maxs ? s : maxs;
}

/* Converts the keys/values this step reads, then runs the kernel for the dims. */
template <int P> static void prefill_prec(cu_ctx *c, const mimo_attn_args *a, pf_args &p) {
  const mimo_kv_view *kv = a->kv;
  const int D = a->head_dim, V = a->v_head_dim;
  uint16_t *kb = (uint16_t *)cu_tmp(c, (size_t)a->n_kv * p.L * (D + V) * 2);
  if (!kb)
    return;
  uint16_t *vb = kb + (size_t)a->n_kv * p.L * D;
  const long n = (long)p.L * ((D + V) / 8);
  k_kv_to_16<P><<<dim3(cdiv(n, 256), a->n_kv), 256, 0, c->st>>>(a->k, a->v, kv_ref_of(kv), kb, vb, a->n_kv, D, V,
                                                                 kv->len, p.j0, p.L);
  if (MIMO_CUDA_LAUNCHED(c) != MIMO_OK)
    return;
  p.kb = kb, p.vb = vb;
  if (use_wg(c, a, P)) {
    cu_attn_wg_launch(c, p, D, V);
    return;
  }
  const int nw = warps_for(a);
  if (D == 192 && V == 128)
    launch_nw<192, 128, P>(c, p, nw);
  else if (D == 128 && V == 128)
    launch_nw<128, 128, P>(c, p, nw);
  else
    launch_nw<64, 64, P>(c, p, nw);
}

/* Runs the prefill; part == NULL: writes a->out (nsplit must be 1), else partials for the combine.
 * prec: cuda_attention.cu's ATTN_* (= PF_*). */
void cu_attn_prefill(cu_ctx *c, const mimo_attn_args *a, float *part, int nsplit, int prec) {
  const mimo_kv_view *kv = a->kv;
  const int G = a->n_heads / a->n_kv;
  const int j0 = a->window > 0 && kv->len - a->window + 1 > 0 ? kv->len - a->window + 1 : 0;
  const int L = kv->len + a->T - j0;
  pf_args p = {a->q, a->out, part, NULL, NULL,
               a->sink && a->sink->n ? (const float *)a->sink->dev : NULL,
               a->n_heads, a->n_kv, G, a->T * G, kv->len, a->T, a->window, j0, L, nsplit, a->scale * LOG2E};
  if (prec == PF_BF16)
    prefill_prec<PF_BF16>(c, a, p);
  else
    prefill_prec<PF_FP16>(c, a, p);
}
