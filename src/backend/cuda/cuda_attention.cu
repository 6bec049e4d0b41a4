/* Attention over the engine's KV layout (kv_cache.c): past keys in the cache
 * (full layers: blocks of MIMO_KV_BLOCK positions through the sequence's block table; sliding layers: a ring,
 * slot = position % cap),
 * this step's keys in the step buffers; the new keys are appended afterwards,
 * so any chunking of a prompt gives the same result. Query t (position
 * p = len + t) sees keys max(0, p − window + 1) ≤ j ≤ p; GQA head h reads kv
 * head h / (n_heads / n_kv); the sink is one more denominator term.
 *
 * Three paths, chosen per call:
 *  - decode (T·G ≤ 256 query rows per kv head, G = n_heads / n_kv): split-KV
 *    flash-decoding on the fp32 cache as stored, 3xTF32 mma.sync (below);
 *  - prefill: fp16 tensor-core flash attention (cuda_attention_prefill.cu);
 *  - scalar fp32 fallback (head dims without a fast kernel, unaligned buffers).
 * Split paths write partial (max, sum, acc) rows that k_attn_combine merges.
 * MIMO_CUDA_ATTN=scalar|decode|prefill forces a path, MIMO_CUDA_ATTN_PREC=fast|fp16 the
 * operand precision (whole-model comparisons, speed references). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <type_traits>

#include "backend/cuda/cuda_attention_prefill.cuh"
#include "backend/cuda/cuda_bf16x3.cuh"
#include "backend/cuda/cuda_internal.h"

/* Step token t's keys and values of kv heads [h0, h0 + nh) into the cache at position p: elements i0, i0 + di, ...
 * of their nh·(D + V) floats. Every writer of the cache (k_kv_append, k_attn_combine) goes through here. */
__device__ __forceinline__ void kv_put(const kv_ref &c, int p, const float *k, const float *v, int t, int n_kv, int h0,
                                       int nh, int D, int V, int i0, int di) {
  const int kd = nh * D, vd = nh * V;
  void *kr = kv_row(c, p, 0, n_kv * D), *vr = kv_row(c, p, 1, n_kv * V);
  for (int i = i0; i < kd + vd; i += di)
    if (i < kd)
      kv_store(kr, (size_t)h0 * D + i, k[((size_t)t * n_kv + h0) * D + i], c.bf16);
    else
      kv_store(vr, (size_t)h0 * V + i - kd, v[((size_t)t * n_kv + h0) * V + i - kd], c.bf16);
}

/* Appends tokens [first, T) of the step to the cache. */
__global__ void k_kv_append(const kv_ref c, const float *k, const float *v, int first, int len, int n_kv, int D,
                            int V) {
  const int t = first + blockIdx.y;
  kv_put(c, len + t, k, v, t, n_kv, 0, n_kv, D, V, blockIdx.x * blockDim.x + threadIdx.x, gridDim.x * blockDim.x);
}


/* cuda_attention_scalar.cu: the fp32 fallback (any head dims up to ATT_MAXD / ATT_MAXV), before the append */
void cu_attn_scalar(cu_ctx *c, const mimo_attn_args *a);

/* cuda_attention_prefill.cu */
int cu_attn_prefill_dims(int D, int V);
int cu_attn_prefill_splits(cu_ctx *c, const mimo_attn_args *a, int prec);
void cu_attn_prefill(cu_ctx *c, const mimo_attn_args *a, float *part, int nsplit, int prec);
/* Operand precision (shared with cuda_attention_prefill.cu), relative errors of attn check on H200:
 *  ATTN_FAST  bf16 prefill (3.1e-3), one tf32 product in decode (1.5e-3): the former kernels, kept as
 *             the speed reference;
 *  ATTN_FP16  fp16 prefill (Q, K, P, V; 3.9e-4, same speed), 3xTF32 decode (6e-6; 128K context:
 *             +16 % at T = 1, +47 % at T = 4, where the extra products make it compute-bound). */
enum { ATTN_FAST = 0, ATTN_FP16 = 1, ATTN_PREC_DEFAULT = ATTN_FP16 };

/* MIMO_CUDA_ATTN_DECODE=bf16x3 and test hook: the fp32-grade decode over a bf16 cache through bf16 parts (DEC_BF3)
 * instead of 3xTF32. Off by default until measured: written in a session without a GPU (docs/cuda.md, round 18). */
static int bf3_on = -1;
extern "C" int mimo_cuda_attn_decode_bf16x3(int on) { return cu_switch(&bf3_on, "MIMO_CUDA_ATTN_DECODE", "bf16x3", on); }

namespace {
constexpr float LOG2E = 1.4426950408889634f;
constexpr int DEC_KT = 32, DEC_THREADS = 128, DEC_MAX_ROWS = 256;

__device__ __forceinline__ float ex2(float x) {
  float y; /* ex2.approx(−inf) = +0 */
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}
__device__ __forceinline__ void cp_async16(void *dst, const void *src, bool ok) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"((unsigned)__cvta_generic_to_shared(dst)),
               "l"(src), "r"(ok ? 16 : 0)
               : "memory");
}
__device__ __forceinline__ uint32_t f2u(float f) { return __float_as_uint(f); }
/* x = hi + lo with hi = x rounded to tf32 (nearest, ties away: integer ops, full rate) and lo = x − hi
 * exact in fp32; the unit reads lo's top 19 bits, so hi + lo carries ~21 bits of x. */
__device__ __forceinline__ void split_tf32(float x, uint32_t &hi, uint32_t &lo) {
  hi = (f2u(x) + 0x1000u) & 0xffffe000u;
  lo = f2u(x - __uint_as_float(hi));
}
/* d += A(16×8, row) · B(8×8, col) in tf32 (the fp32 bit patterns; the unit reads the top 19 bits). */
__device__ __forceinline__ void mma_tf32(float *d, const uint32_t *a, uint32_t b0, uint32_t b1) {
  asm volatile("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
               "{%0,%1,%2,%3};"
               : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
               : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

/* Four staged cache elements as floats (bf16 widened: exact). */
__device__ __forceinline__ float4 ld4(const float *p) { return *(const float4 *)p; }
__device__ __forceinline__ float4 ld4(const uint16_t *p) { return kv_widen4(*(const uint2 *)p); }
/* Staged V row stride (elements): 8-byte bf16 reads of a half-warp hit 32 distinct banks at V + 8, 16-byte fp32
 * ones at V + 4. */
template <int V, bool BF> __host__ __device__ constexpr int dec_vs() { return BF ? V + 8 : V + 4; }

struct dec_args {
  const float *q, *k, *v;
  kv_ref c;
  float *part;
  int n_heads, n_kv, G, rows, len, window, nrg, nsplit;
  float qscale;
};

/* Many sequences' decode steps (one token each) in one launch, blockIdx.z = sequence: its cache and length, and
 * `tok`, its token's row in the step's q/k/v/out buffers. A kernel parameter (3 KB: indexed loads from the
 * parameter bank, no upload and no host wait); dec_none for one sequence. */
enum { DEC_BATCH = 64 };
struct dec_seq {
  kv_ref c;
  int len, tok;
};
struct dec_batch {
  dec_seq s[DEC_BATCH];
};
struct dec_none {};
template <bool B> using dec_tab = typename std::conditional<B, dec_batch, dec_none>::type;

/* a's fields for sequence z of a batch: its cache, length, token rows and partials (each sequence its own
 * region of n_kv · nsplit · rows · (V + 2) floats, laid out as one sequence's). */
template <int D, int V>
__device__ __forceinline__ void dec_seq_of(dec_args &a, const dec_batch &bt, int z) {
  const dec_seq &s = bt.s[z];
  a.q += (size_t)s.tok * a.n_heads * D;
  a.k += (size_t)s.tok * a.n_kv * D;
  a.v += (size_t)s.tok * a.n_kv * V;
  a.c = s.c;
  a.len = s.len;
  a.part += (size_t)z * a.n_kv * a.nsplit * a.rows * (V + 2);
}

/* Split-KV decode. Block = (row group of 16·(4/KS) query rows, key split, kv head):
 * all query heads of the kv head (and all T tokens) read each K/V byte once.
 * K/V tiles of 32 keys go fp32 → shared by cp.async (double buffered, L1
 * bypassed); 4 warps = (4/KS) m-tiles × KS key slices of each tile. tf32 mma on
 * the raw fp32 values: the dot over d is order-free, so a thread's float4 of
 * K (d = c+4t..c+4t+3) feeds two k8 steps, Q staged the same way; P·V pairs keys
 * (2t, 2t+1) with the score fragment the thread already holds and spreads a
 * float4 of V over 4 output n-tiles. Padded rows (K +16, V +4 floats) make
 * those float4 reads conflict-free. The KS slices merge in shared memory; each
 * block writes one partial (max, sum, acc) per row.
 * PM (dec_pm): DEC_X3 both products in 3xTF32 (a·b ≈ a_hi·b_hi + a_hi·b_lo + a_lo·b_hi, split_tf32),
 * fp32-grade scores and outputs: whole-model logits need them (tiny score errors flip near-tied MoE routing);
 * DEC_TF32 one tf32 product (~1e-3 relative), kept as the speed reference (MIMO_CUDA_ATTN_PREC=fast);
 * DEC_BF3 (bf16 cache only) q and p in three bf16 parts (cuda_bf16x3.cuh) against the stored bf16 keys and values:
 * the same fp32-grade products in three quarters of 3xTF32's tensor-core cycles. */
enum dec_pm { DEC_TF32 = 0, DEC_X3 = 1, DEC_BF3 = 2 };
template <int D, int V, int KS, int KT, int NST, int PM, bool B, bool BF>
__global__ void __launch_bounds__(DEC_THREADS) k_attn_decode(dec_args a, const dec_tab<B> bt) {
  constexpr bool X3 = PM == DEC_X3;
  static_assert(PM != DEC_BF3 || BF, "bf16 parts against a bf16 cache only");
  using CT = typename std::conditional<BF, uint16_t, float>::type; /* the cache's elements, as staged */
  constexpr int DS = D + 16, VS = dec_vs<V, BF>(), MTP = 4 / KS, NT = KT / 8 / KS, QR = MTP * 16;
  constexpr int EPC = 16 / (int)sizeof(CT); /* elements per 16-byte copy */
  pdl_start();
  if constexpr (B)
    dec_seq_of<D, V>(a, bt, blockIdx.z);
  static_assert(NT >= 1 && KS * QR * V * 4 <= NST * KT * (DS + VS) * (int)sizeof(CT),
                "merge buffer fits in the stage buffers");
  extern __shared__ float4 dec_smem[];
  float *sQ = (float *)dec_smem;
  CT *sK = (CT *)(sQ + QR * DS), *sV = sK + NST * KT * DS;
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, gq = lane >> 2, tq = lane & 3;
  const int rg = blockIdx.x % a.nrg, split = blockIdx.x / a.nrg, g = blockIdx.y;
  const int R0 = rg * QR, rows_end = min(R0 + QR, a.rows);
  const int p_first = a.len + R0 / a.G, p_last = a.len + (rows_end - 1) / a.G;
  const int kbeg = a.window > 0 ? max(0, p_first - a.window + 1) : 0;
  const int ntiles = (p_last + 1 - kbeg + KT - 1) / KT;
  const int t_lo = split * ntiles / a.nsplit, t_hi = (split + 1) * ntiles / a.nsplit;

  for (int i = tid; i < QR * (D / 4); i += DEC_THREADS) {
    const int r = i / (D / 4), c = (i % (D / 4)) * 4, R = R0 + r;
    float4 x = make_float4(0.f, 0.f, 0.f, 0.f);
    if (R < a.rows) {
      x = *(const float4 *)(a.q + ((size_t)(R / a.G) * a.n_heads + g * a.G + R % a.G) * D + c);
      x.x *= a.qscale, x.y *= a.qscale, x.z *= a.qscale, x.w *= a.qscale;
    }
    *(float4 *)(sQ + r * DS + c) = x;
  }
  auto load_tile = [&](int tile, int buf) {
    const int kt = kbeg + tile * KT;
    /* paged layers: the tile's block, read once, when the tile lies in one (full layers start at 0, KT | block) */
    const CT *blk = nullptr;
    if (!a.c.ring && kt < a.len && (kt >> MIMO_KV_BLOCK_LOG2) == ((kt + KT - 1) >> MIMO_KV_BLOCK_LOG2))
      blk = (const CT *)a.c.bt[kt >> MIMO_KV_BLOCK_LOG2];
    /* rings of at least KT slots: the tile's first slot, once (no division per row) */
    const int slot0 = a.c.ring && a.c.cap >= KT ? kt % a.c.cap : -1;
    auto cache_row = [&](int j, int isv) -> const CT * { /* j < len */
      const int dim = isv ? V : D;
      if (blk)
        return blk + (isv ? a.c.voff : a.c.koff) + ((size_t)(j & (MIMO_KV_BLOCK - 1)) * a.n_kv + g) * dim;
      if (slot0 >= 0) {
        const int sl = slot0 + j - kt;
        return (const CT *)(isv ? a.c.v : a.c.k) + ((size_t)(sl >= a.c.cap ? sl - a.c.cap : sl) * a.n_kv + g) * dim;
      }
      return (const CT *)kv_row(a.c, j, isv, a.n_kv * dim) + (size_t)g * dim;
    };
    auto step_row = [&](int j, int isv) -> const float * { /* j >= len */
      const int dim = isv ? V : D;
      return (isv ? a.v : a.k) + ((size_t)(j - a.len) * a.n_kv + g) * dim;
    };
    /* 16 bytes of row j from column c into dst: the cache's bytes as they are, this step's converted to the
     * cache's elements (bf16: rounded, as the append will store them); rows past the last key zeros */
    auto stage = [&](CT *dst, int j, int isv, int c) {
      if (j > p_last) {
        cp_async16(dst, a.k, false);
      } else if (j < a.len) {
        cp_async16(dst, cache_row(j, isv) + c, true);
      } else if constexpr (!BF) {
        cp_async16(dst, step_row(j, isv) + c, true);
      } else {
        const float4 x = *(const float4 *)(step_row(j, isv) + c), y = *(const float4 *)(step_row(j, isv) + c + 4);
        *(uint4 *)dst = make_uint4(kv_pack2(x.x, x.y), kv_pack2(x.z, x.w), kv_pack2(y.x, y.y), kv_pack2(y.z, y.w));
      }
    };
    for (int i = tid; i < KT * (D / EPC); i += DEC_THREADS) {
      const int r = i / (D / EPC), c = (i % (D / EPC)) * EPC;
      stage(sK + (buf * KT + r) * DS + c, kt + r, 0, c);
    }
    for (int i = tid; i < KT * (V / EPC); i += DEC_THREADS) {
      const int r = i / (V / EPC), c = (i % (V / EPC)) * EPC;
      stage(sV + (buf * KT + r) * VS + c, kt + r, 1, c);
    }
  };
#pragma unroll
  for (int k = 0; k < NST - 1; k++) { /* NST − 1 tiles ahead */
    if (t_lo + k < t_hi)
      load_tile(t_lo + k, k);
    asm volatile("cp.async.commit_group;" ::: "memory");
  }

  const int mt = warp % MTP, ks = warp / MTP;
  const int ra = mt * 16 + gq, rb = ra + 8, Ra = R0 + ra, Rb = R0 + rb;
  const int pa = Ra < a.rows ? a.len + Ra / a.G : -1, pb = Rb < a.rows ? a.len + Rb / a.G : -1;
  const int loa = a.window > 0 ? pa - a.window + 1 : 0, lob = a.window > 0 ? pb - a.window + 1 : 0;
  const float *q0 = sQ + ra * DS + 4 * tq, *q1 = q0 + 8 * DS;
  float o[V / 8][4];
#pragma unroll
  for (int i = 0; i < V / 8; i++)
    o[i][0] = o[i][1] = o[i][2] = o[i][3] = 0.f;
  float ma = -INFINITY, mb = -INFINITY, la = 0.f, lb = 0.f;

  for (int it = t_lo; it < t_hi; it++) {
    const int buf = (it - t_lo) % NST;
    if (it + NST - 1 < t_hi)
      load_tile(it + NST - 1, (it - t_lo + NST - 1) % NST);
    asm volatile("cp.async.commit_group;" ::: "memory");
    asm volatile("cp.async.wait_group %0;" ::"n"(NST - 1) : "memory");
    __syncthreads();
    const CT *kr = sK + (buf * KT + ks * NT * 8 + gq) * DS + 4 * tq;
    float s[NT][4], s2[NT][4]; /* two accumulator chains: half the dependent mma latency */
#pragma unroll
    for (int i = 0; i < NT; i++)
      s[i][0] = s[i][1] = s[i][2] = s[i][3] = s2[i][0] = s2[i][1] = s2[i][2] = s2[i][3] = 0.f;
#pragma unroll
    for (int c = 0; c < D; c += 16) {
      const float4 qa = *(const float4 *)(q0 + c), qb = *(const float4 *)(q1 + c);
      if constexpr (PM == DEC_BF3) {
        /* thread t's dims c+4t..c+4t+3 are its k slots 2t, 2t+1, 2t+8, 2t+9 in A (q rows g, g+8) and in B (key g's
         * stored bf16, one 8-byte read); even chunks accumulate in s, odd ones in s2 */
        uint32_t qh[4], qm[4], ql[4];
        split_bf16x3(qa.x, qa.y, qh[0], qm[0], ql[0]);
        split_bf16x3(qb.x, qb.y, qh[1], qm[1], ql[1]);
        split_bf16x3(qa.z, qa.w, qh[2], qm[2], ql[2]);
        split_bf16x3(qb.z, qb.w, qh[3], qm[3], ql[3]);
#pragma unroll
        for (int nt = 0; nt < NT; nt++) {
          const uint2 kb = *(const uint2 *)(kr + nt * 8 * DS + c);
          if ((c / 16) % 2) { /* small parts first */
            mma_bf16_k16(s2[nt], ql, kb.x, kb.y);
            mma_bf16_k16(s2[nt], qm, kb.x, kb.y);
            mma_bf16_k16(s2[nt], qh, kb.x, kb.y);
          } else {
            mma_bf16_k16(s[nt], ql, kb.x, kb.y);
            mma_bf16_k16(s[nt], qm, kb.x, kb.y);
            mma_bf16_k16(s[nt], qh, kb.x, kb.y);
          }
        }
      } else if constexpr (X3) {
        uint32_t a1[4], a2[4], l1[4], l2[4];
        split_tf32(qa.x, a1[0], l1[0]), split_tf32(qb.x, a1[1], l1[1]);
        split_tf32(qa.y, a1[2], l1[2]), split_tf32(qb.y, a1[3], l1[3]);
        split_tf32(qa.z, a2[0], l2[0]), split_tf32(qb.z, a2[1], l2[1]);
        split_tf32(qa.w, a2[2], l2[2]), split_tf32(qb.w, a2[3], l2[3]);
#pragma unroll
        for (int nt = 0; nt < NT; nt++) {
          const float4 kf = ld4(kr + nt * 8 * DS + c);
          uint32_t kh[4], kl[4];
          split_tf32(kf.x, kh[0], kl[0]), split_tf32(kf.y, kh[1], kl[1]);
          split_tf32(kf.z, kh[2], kl[2]), split_tf32(kf.w, kh[3], kl[3]);
          /* small terms first; a bf16 key is exact in tf32 (its low part is 0) */
          mma_tf32(s[nt], l1, kh[0], kh[1]);
          mma_tf32(s2[nt], l2, kh[2], kh[3]);
          if constexpr (!BF) {
            mma_tf32(s[nt], a1, kl[0], kl[1]);
            mma_tf32(s2[nt], a2, kl[2], kl[3]);
          }
          mma_tf32(s[nt], a1, kh[0], kh[1]);
          mma_tf32(s2[nt], a2, kh[2], kh[3]);
        }
      } else {
        const uint32_t a1[4] = {f2u(qa.x), f2u(qb.x), f2u(qa.y), f2u(qb.y)};
        const uint32_t a2[4] = {f2u(qa.z), f2u(qb.z), f2u(qa.w), f2u(qb.w)};
#pragma unroll
        for (int nt = 0; nt < NT; nt++) {
          const float4 kf = ld4(kr + nt * 8 * DS + c);
          mma_tf32(s[nt], a1, f2u(kf.x), f2u(kf.y));
          mma_tf32(s2[nt], a2, f2u(kf.z), f2u(kf.w));
        }
      }
    }
#pragma unroll
    for (int i = 0; i < NT; i++)
      s[i][0] += s2[i][0], s[i][1] += s2[i][1], s[i][2] += s2[i][2], s[i][3] += s2[i][3];
    const int kt = kbeg + it * KT + ks * NT * 8;
#pragma unroll
    for (int nt = 0; nt < NT; nt++)
#pragma unroll
      for (int e = 0; e < 4; e++) {
        const int j = kt + nt * 8 + 2 * tq + (e & 1);
        if (!(e < 2 ? (j >= loa && j <= pa) : (j >= lob && j <= pb)))
          s[nt][e] = -INFINITY;
      }
    pf::pf_rescale<V>(o, pf::pf_online_tile<NT>(s, ma, mb, la, lb));
    const CT *vr = sV + (buf * KT + ks * NT * 8 + 2 * tq) * VS + 4 * gq;
#pragma unroll
    for (int nt = 0; nt < NT; nt++) {
      /* k index t ↔ key 2t, t+4 ↔ key 2t+1: the thread's own score pair */
      if constexpr (PM == DEC_BF3) {
        /* m16n8k8: A = p of keys 2t, 2t+1 (the thread's scores, rows g and g+8); B column g of n-tile i = value dim
         * vg·32 + 4g + i of those two keys, paired from the two rows' 8-byte reads */
        uint32_t ph[2], pm[2], pl[2];
        split_bf16x3(s[nt][0], s[nt][1], ph[0], pm[0], pl[0]);
        split_bf16x3(s[nt][2], s[nt][3], ph[1], pm[1], pl[1]);
#pragma unroll
        for (int vg = 0; vg < V / 32; vg++) {
          const uint2 va = *(const uint2 *)(vr + nt * 8 * VS + vg * 32), vb = *(const uint2 *)(vr + (nt * 8 + 1) * VS + vg * 32);
          const uint32_t bv[4] = {__byte_perm(va.x, vb.x, 0x5410), __byte_perm(va.x, vb.x, 0x7632),
                                  __byte_perm(va.y, vb.y, 0x5410), __byte_perm(va.y, vb.y, 0x7632)};
#pragma unroll
          for (int i = 0; i < 4; i++) {
            mma_bf16_k8(o[vg * 4 + i], pl[0], pl[1], bv[i]);
            mma_bf16_k8(o[vg * 4 + i], pm[0], pm[1], bv[i]);
            mma_bf16_k8(o[vg * 4 + i], ph[0], ph[1], bv[i]);
          }
        }
      } else if constexpr (X3) {
        uint32_t p[4], pl[4];
        split_tf32(s[nt][0], p[0], pl[0]), split_tf32(s[nt][2], p[1], pl[1]);
        split_tf32(s[nt][1], p[2], pl[2]), split_tf32(s[nt][3], p[3], pl[3]);
#pragma unroll
        for (int vg = 0; vg < V / 32; vg++) {
          const float4 va = ld4(vr + nt * 8 * VS + vg * 32), vb = ld4(vr + (nt * 8 + 1) * VS + vg * 32);
          const float x[8] = {va.x, vb.x, va.y, vb.y, va.z, vb.z, va.w, vb.w};
          uint32_t vh[8], vl[8];
#pragma unroll
          for (int i = 0; i < 8; i++)
            split_tf32(x[i], vh[i], vl[i]);
#pragma unroll
          for (int i = 0; i < 4; i++)
            mma_tf32(o[vg * 4 + i], pl, vh[2 * i], vh[2 * i + 1]);
          if constexpr (!BF) /* a bf16 value is exact in tf32 */
#pragma unroll
            for (int i = 0; i < 4; i++)
              mma_tf32(o[vg * 4 + i], p, vl[2 * i], vl[2 * i + 1]);
#pragma unroll
          for (int i = 0; i < 4; i++)
            mma_tf32(o[vg * 4 + i], p, vh[2 * i], vh[2 * i + 1]);
        }
      } else {
        const uint32_t p[4] = {f2u(s[nt][0]), f2u(s[nt][2]), f2u(s[nt][1]), f2u(s[nt][3])};
#pragma unroll
        for (int vg = 0; vg < V / 32; vg++) {
          const float4 va = ld4(vr + nt * 8 * VS + vg * 32), vb = ld4(vr + (nt * 8 + 1) * VS + vg * 32);
          mma_tf32(o[vg * 4 + 0], p, f2u(va.x), f2u(vb.x));
          mma_tf32(o[vg * 4 + 1], p, f2u(va.y), f2u(vb.y));
          mma_tf32(o[vg * 4 + 2], p, f2u(va.z), f2u(vb.z));
          mma_tf32(o[vg * 4 + 3], p, f2u(va.w), f2u(vb.w));
        }
      }
    }
    __syncthreads();
  }
  asm volatile("cp.async.wait_group 0;" ::: "memory");
  __syncthreads();
  la += __shfl_xor_sync(0xffffffffu, la, 1);
  la += __shfl_xor_sync(0xffffffffu, la, 2);
  lb += __shfl_xor_sync(0xffffffffu, lb, 1);
  lb += __shfl_xor_sync(0xffffffffu, lb, 2);
  /* Merge the KS key slices of each row in shared memory (stage buffers are free now). */
  float *red = (float *)sK, *rml = sQ; /* [KS][QR][V], [KS][QR][2] */
  if (tq == 0) {
    rml[(ks * QR + ra) * 2] = ma, rml[(ks * QR + ra) * 2 + 1] = la;
    rml[(ks * QR + rb) * 2] = mb, rml[(ks * QR + rb) * 2 + 1] = lb;
  }
  __syncthreads();
  float Ma = -INFINITY, Mb = -INFINITY;
#pragma unroll
  for (int k2 = 0; k2 < KS; k2++) {
    Ma = fmaxf(Ma, rml[(k2 * QR + ra) * 2]);
    Mb = fmaxf(Mb, rml[(k2 * QR + rb) * 2]);
  }
  const float fa = ma == -INFINITY ? 0.f : ex2(ma - Ma), fb = mb == -INFINITY ? 0.f : ex2(mb - Mb);
  float *wa = red + (ks * QR + ra) * V + 8 * tq, *wb = red + (ks * QR + rb) * V + 8 * tq;
#pragma unroll
  for (int vg = 0; vg < V / 32; vg++) {
    /* n-tile vg·4+i column 2t ↔ value dim vg·32 + 8t + i, column 2t+1 ↔ vg·32 + 8t + 4 + i */
    *(float4 *)(wa + vg * 32) = make_float4(o[vg * 4][0] * fa, o[vg * 4 + 1][0] * fa, o[vg * 4 + 2][0] * fa, o[vg * 4 + 3][0] * fa);
    *(float4 *)(wa + vg * 32 + 4) = make_float4(o[vg * 4][1] * fa, o[vg * 4 + 1][1] * fa, o[vg * 4 + 2][1] * fa, o[vg * 4 + 3][1] * fa);
    *(float4 *)(wb + vg * 32) = make_float4(o[vg * 4][2] * fb, o[vg * 4 + 1][2] * fb, o[vg * 4 + 2][2] * fb, o[vg * 4 + 3][2] * fb);
    *(float4 *)(wb + vg * 32 + 4) = make_float4(o[vg * 4][3] * fb, o[vg * 4 + 1][3] * fb, o[vg * 4 + 2][3] * fb, o[vg * 4 + 3][3] * fb);
  }
  __syncthreads();
  const size_t pr0 = (size_t)(g * a.nsplit + split) * a.rows;
  for (int i = tid; i < QR * (V / 4); i += DEC_THREADS) {
    const int r = i / (V / 4), c = (i % (V / 4)) * 4;
    if (R0 + r >= a.rows)
      continue;
    float4 acc = *(const float4 *)(red + r * V + c);
#pragma unroll
    for (int k2 = 1; k2 < KS; k2++) {
      const float4 x = *(const float4 *)(red + (k2 * QR + r) * V + c);
      acc.x += x.x, acc.y += x.y, acc.z += x.z, acc.w += x.w;
    }
    *(float4 *)(a.part + (pr0 + R0 + r) * V + c) = acc;
  }
  for (int r = tid; r < QR; r += DEC_THREADS) {
    if (R0 + r >= a.rows)
      continue;
    float M = -INFINITY, L = 0.f;
    for (int k2 = 0; k2 < KS; k2++)
      M = fmaxf(M, rml[(k2 * QR + r) * 2]);
    for (int k2 = 0; k2 < KS; k2++) {
      const float m = rml[(k2 * QR + r) * 2];
      L += m == -INFINITY ? 0.f : rml[(k2 * QR + r) * 2 + 1] * ex2(m - M);
    }
    *(float2 *)(a.part + (size_t)a.n_kv * a.nsplit * a.rows * V + (pr0 + R0 + r) * 2) = make_float2(M, L);
  }
}

/* This step's keys and values into the cache, after every read of the cache (the combine runs after the split
 * kernel, so it can take the job of k_kv_append: one launch fewer per attention call). kc == NULL: nothing. */
typedef struct {
  kv_ref c;
  const float *k, *v;
  int T, first, len, D;
} kv_app;

/* Merges the nsplit partials of row R (blockIdx.x) of kv head g (blockIdx.y) and adds the sink; blocks R < T
 * also append token R's key and value of head g (ap). */
template <bool B>
__global__ void __launch_bounds__(256) k_attn_combine(const float *part, float *out, const float *sink, int rows,
                                                      int nsplit, int n_kv, int G, int n_heads, int V, kv_app ap,
                                                      const dec_tab<B> bt) {
  extern __shared__ float4 cmb4[]; /* weights [nsplit, rounded to 4], then [256 / (V/4)][V] partial sums */
  float *cmb = (float *)cmb4;
  __shared__ float red[8];
  pdl_start();
  const int R = blockIdx.x, g = blockIdx.y, tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  if constexpr (B) { /* sequence blockIdx.z of a batch: one token (row tok of the step), its cache */
    const dec_seq &s = bt.s[blockIdx.z];
    part += (size_t)blockIdx.z * n_kv * nsplit * rows * (V + 2);
    out += (size_t)s.tok * n_heads * V;
    ap.k += (size_t)s.tok * n_kv * ap.D;
    ap.v += (size_t)s.tok * n_kv * V;
    ap.c = s.c;
    ap.len = s.len;
  }
  const int h = g * G + R % G;
  if (kv_set(ap.c) && R < ap.T && R >= ap.first)
    kv_put(ap.c, ap.len + R, ap.k, ap.v, R, n_kv, g, 1, ap.D, V, tid, 256);
  const float *ml = part + (size_t)n_kv * nsplit * rows * V;
  const size_t p0 = (size_t)g * nsplit * rows + R;
  float mx = sink ? sink[h] * LOG2E : -INFINITY;
  for (int s = tid; s < nsplit; s += 256)
    mx = fmaxf(mx, ml[(p0 + (size_t)s * rows) * 2]);
#pragma unroll
  for (int o = 16; o > 0; o >>= 1)
    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
  if (lane == 0)
    red[warp] = mx;
  __syncthreads();
  float M = red[0];
  for (int w = 1; w < 8; w++)
    M = fmaxf(M, red[w]);
  __syncthreads();
  float ls = 0.f;
  for (int s = tid; s < nsplit; s += 256) {
    const float2 x = *(const float2 *)(ml + (p0 + (size_t)s * rows) * 2);
    const float w = x.x == -INFINITY ? 0.f : ex2(x.x - M);
    cmb[s] = w;
    ls += w * x.y;
  }
  ls = warp_sum(ls);
  if (lane == 0)
    red[warp] = ls;
  __syncthreads();
  float L = sink ? ex2(sink[h] * LOG2E - M) : 0.f;
  for (int w = 0; w < 8; w++)
    L += red[w];
  const int nc = V / 4, ng = 256 / nc, grp = tid / nc, c = (tid % nc) * 4;
  float *acc = cmb + ((nsplit + 3) & ~3); /* float4-aligned */
  if (grp < ng) {
    float4 y = make_float4(0.f, 0.f, 0.f, 0.f);
    for (int s = grp; s < nsplit; s += ng) {
      const float w = cmb[s];
      if (w != 0.f) { /* splits that saw none of this row's keys */
        const float4 x = *(const float4 *)(part + (p0 + (size_t)s * rows) * V + c);
        y.x += w * x.x, y.y += w * x.y, y.z += w * x.z, y.w += w * x.w;
      }
    }
    *(float4 *)(acc + grp * V + c) = y;
  }
  __syncthreads();
  for (int i = tid; i < V; i += 256) {
    float y = 0.f;
    for (int k = 0; k < ng; k++)
      y += acc[k * V + i];
    out[((size_t)(R / G) * n_heads + h) * V + i] = y / L;
  }
}

/* nseq > 0: a batch of nseq sequences (bt), one token each. */
template <int PM, int D, int V, int KS, bool B, bool BF, int KT = DEC_KT, int NST = 2>
void dec_launch(cu_ctx *c, dec_args &p, int keys, const dec_tab<B> &bt, int nseq) {
  constexpr int QR = 64 / KS;
  const size_t smem = (size_t)QR * (D + 16) * 4 + (size_t)NST * KT * (D + 16 + dec_vs<V, BF>()) * (BF ? 2 : 4);
  if (MIMO_CUDA(c, cudaFuncSetAttribute(k_attn_decode<D, V, KS, KT, NST, PM, B, BF>,
                                        cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem)) != MIMO_OK)
    return;
  static int occ_of[64]; /* per device: blocks per SM (a host query per call cost more than some launches) */
  int occ = c->device < 64 ? occ_of[c->device] : 0;
  if (!occ) {
    if (MIMO_CUDA(c, cudaOccupancyMaxActiveBlocksPerMultiprocessor(&occ, k_attn_decode<D, V, KS, KT, NST, PM, B, BF>,
                                                                   DEC_THREADS, smem)) != MIMO_OK)
      return;
    if (c->device < 64)
      occ_of[c->device] = occ;
  }
  const int max_tiles = (keys + KT - 1) / KT, nz = nseq > 0 ? nseq : 1;
  p.nrg = (p.rows + QR - 1) / QR;
  const int per = p.n_kv * p.nrg * nz, want = (occ > 0 ? occ : 1) * c->sms; /* one wave */
  p.nsplit = (want + per - 1) / per;
  if (p.nsplit > max_tiles)
    p.nsplit = max_tiles;
  if (p.nsplit < 1)
    p.nsplit = 1;
  p.part = (float *)cu_tmp2(c, (size_t)nz * p.n_kv * p.nsplit * p.rows * (V + 2) * sizeof(float));
  if (!p.part)
    return;
  cu_launch(c, k_attn_decode<D, V, KS, KT, NST, PM, B, BF>, dim3(p.nrg * p.nsplit, p.n_kv, nz), DEC_THREADS, smem, p,
            bt);
}

/* Measured on H200 at 128K (T = 1): 32-key tiles, 2 stages, 2 blocks per SM, one wave of splits is
 * the fastest tried; 64-key tiles (362 µs) or 3 stages (415 µs), both 1 block per SM, and 2 or 4
 * waves of splits (265 / 276 µs) were slower than this (257 µs). */
template <int PM, int D, int V, bool B, bool BF>
void dec_dispatch(cu_ctx *c, dec_args &p, int keys, const dec_tab<B> &bt, int nseq) {
  if (p.rows <= 16)
    dec_launch<PM, D, V, 4, B, BF>(c, p, keys, bt, nseq);
  else if (p.rows <= 32)
    dec_launch<PM, D, V, 2, B, BF>(c, p, keys, bt, nseq);
  else
    dec_launch<PM, D, V, 1, B, BF>(c, p, keys, bt, nseq);
}
/* DEC_BF3 on a float32 cache is DEC_X3 (the callers ask for it by the switch alone) */
template <int PM, int D, int V, bool B>
void dec_dispatch(cu_ctx *c, dec_args &p, int keys, const dec_tab<B> &bt, int nseq, bool bf16) {
  constexpr int PF = PM == DEC_BF3 ? DEC_X3 : PM;
  bf16 ? dec_dispatch<PM, D, V, B, true>(c, p, keys, bt, nseq) : dec_dispatch<PF, D, V, B, false>(c, p, keys, bt, nseq);
}
template <int PM, bool B>
void dec_dispatch_pm(cu_ctx *c, dec_args &p, int D, int keys, const dec_tab<B> &bt, int nseq, bool bf) {
  if (D == 192)
    dec_dispatch<PM, 192, 128, B>(c, p, keys, bt, nseq, bf);
  else if (D == 128)
    dec_dispatch<PM, 128, 128, B>(c, p, keys, bt, nseq, bf);
  else
    dec_dispatch<PM, 64, 64, B>(c, p, keys, bt, nseq, bf);
}
/* The split kernel for head dim D (192, 128 or 64; V follows) and operand precision prec: one sequence (B = false),
 * or nseq of a batch. */
template <bool B>
void dec_dispatch(cu_ctx *c, dec_args &p, int D, int keys, int prec, const dec_tab<B> &bt, int nseq, bool bf) {
  if (prec == ATTN_FAST)
    dec_dispatch_pm<DEC_TF32, B>(c, p, D, keys, bt, nseq, bf);
  else if (bf && mimo_cuda_attn_decode_bf16x3(-1))
    dec_dispatch_pm<DEC_BF3, B>(c, p, D, keys, bt, nseq, bf);
  else
    dec_dispatch_pm<DEC_X3, B>(c, p, D, keys, bt, nseq, bf);
}

/* nseq > 0: a batch (bt), a->out, a->k, a->v the step's buffers (row tok of each sequence). */
template <bool B>
void combine(cu_ctx *c, const mimo_attn_args *a, const float *part, int nsplit, kv_app ap, const dec_tab<B> &bt,
             int nseq) {
  const int G = a->n_heads / a->n_kv, V = a->v_head_dim;
  const size_t smem = (size_t)(((nsplit + 3) & ~3) + 256 / (V / 4) * V) * sizeof(float);
  if (MIMO_CUDA(c, cudaFuncSetAttribute(k_attn_combine<B>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem)) !=
      MIMO_OK)
    return;
  cu_launch(c, k_attn_combine<B>, dim3(a->T * G, a->n_kv, nseq > 0 ? nseq : 1), 256, smem, part, a->out,
            a->sink && a->sink->n ? (const float *)a->sink->dev : (const float *)NULL, a->T * G, nsplit, a->n_kv, G,
            a->n_heads, V, ap, bt);
}
void combine(cu_ctx *c, const mimo_attn_args *a, const float *part, int nsplit, kv_app ap) {
  combine<false>(c, a, part, nsplit, ap, dec_none{}, 0);
}
} // namespace

/* 0 auto, 1 scalar, 2 decode, 3 prefill: set by the test hook, or by MIMO_CUDA_ATTN=scalar|decode|prefill
 * (comparisons of whole models against the scalar kernel) */
static int force_path = -1;
extern "C" void mimo_cuda_attn_force(int path) { force_path = path; }
static int attn_path_env(void) {
  const char *e = getenv("MIMO_CUDA_ATTN");
  return !e ? 0 : !strcmp(e, "scalar") ? 1 : !strcmp(e, "decode") ? 2 : !strcmp(e, "prefill") ? 3 : 0;
}
/* Operand precision: test hook, else MIMO_CUDA_ATTN_PREC=fast|fp16, else ATTN_PREC_DEFAULT.
 * prec < 0 only asks; returns the precision in force. */
static int prec_force = -1;
extern "C" int mimo_cuda_attn_precision(int prec) {
  if (prec >= ATTN_FAST && prec <= ATTN_FP16)
    prec_force = prec;
  if (prec_force < 0) {
    const char *e = getenv("MIMO_CUDA_ATTN_PREC");
    prec_force = !e ? ATTN_PREC_DEFAULT : !strcmp(e, "fast") ? ATTN_FAST : !strcmp(e, "fp16") ? ATTN_FP16
                                                                          : ATTN_PREC_DEFAULT;
  }
  return prec_force;
}


void cu_attention(mimo_backend *be, mimo_attn_args *a) {
  cu_ctx *c = cu(be);
  mimo_kv_view *kv = a->kv;
  if (a->head_dim > ATT_MAXD || a->v_head_dim > ATT_MAXV || a->n_heads % a->n_kv) {
    cu_fail(c, "attention", "head dims over 256 or heads not a multiple of kv heads", __FILE__, __LINE__);
    return;
  }
  if (a->sink && a->sink->n && !a->sink->dev) {
    cu_fail(c, "attention", "sink not uploaded", __FILE__, __LINE__);
    return;
  }
  if (!kv->ring && kv->len + a->T > kv->cap) {
    cu_fail(c, "attention", "KV cache too small", __FILE__, __LINE__);
    return;
  }
  if (a->T <= 0)
    return;
  const int D = a->head_dim, V = a->v_head_dim, G = a->n_heads / a->n_kv, rows = a->T * G;
  const uintptr_t al = (uintptr_t)a->q | (uintptr_t)a->k | (uintptr_t)a->v | (uintptr_t)kv->k | (uintptr_t)kv->v |
                       (uintptr_t)a->out;
  int path = 1;
  if (cu_attn_prefill_dims(D, V) && !(al & 15)) { /* float4 / cp.async need 16-byte rows */
    if (force_path < 0)
      force_path = attn_path_env();
    path = force_path ? force_path : rows <= DEC_MAX_ROWS ? 2 : 3;
  }
  const int prec = mimo_cuda_attn_precision(-1);
  const int first = kv->ring && a->T > kv->cap ? a->T - kv->cap : 0;
  const kv_app ap = {kv_ref_of(kv), a->k, a->v, a->T, first, kv->len, a->head_dim};
  bool appended = false; /* by the combine kernel */
  if (path == 2) {
    dec_args p = {a->q, a->k, a->v, kv_ref_of(kv), NULL, a->n_heads, a->n_kv, G, rows, kv->len, a->window, 1, 1,
                  a->scale * LOG2E};
    const int end = kv->len + a->T, lo = a->window > 0 && end - a->window - a->T + 1 > 0 ? end - a->window - a->T + 1 : 0;
    dec_dispatch<false>(c, p, D, end - lo, prec, dec_none{}, 0, kv->bf16);
    if (p.part) {
      combine(c, a, p.part, p.nsplit, ap);
      appended = true;
    }
  } else if (path == 3) {
    const int nsplit = cu_attn_prefill_splits(c, a, prec);
    float *part = NULL;
    if (nsplit > 1 &&
        !(part = (float *)cu_tmp2(c, (size_t)a->n_kv * nsplit * rows * (V + 2) * sizeof(float))))
      return;
    cu_attn_prefill(c, a, part, nsplit, prec);
    if (part) {
      combine(c, a, part, nsplit, ap);
      appended = true;
    }
  } else {
    cu_attn_scalar(c, a);
  }
  if (!appended) {
    const int kd = a->n_kv * a->head_dim, vd = a->n_kv * a->v_head_dim;
    k_kv_append<<<dim3(cdiv(kd + vd, 256), a->T - first), 256, 0, c->st>>>(kv_ref_of(kv), a->k, a->v, first, kv->len,
                                                                            a->n_kv, a->head_dim, a->v_head_dim);
    MIMO_CUDA_LAUNCHED(c);
  }
  kv->len += a->T;
}

/* ---- many sequences' decode steps at once ---- */

/* Whether sequence x's one-token step takes the decode path, and may share a launch with y's (same shapes). */
static bool dec_batchable(const mimo_attn_args *x, int path) {
  const mimo_kv_view *kv = x->kv;
  const uintptr_t al = (uintptr_t)x->q | (uintptr_t)x->k | (uintptr_t)x->v | (uintptr_t)kv->k | (uintptr_t)kv->v |
                       (uintptr_t)x->out;
  return x->T == 1 && (path == 0 || path == 2) && cu_attn_prefill_dims(x->head_dim, x->v_head_dim) && !(al & 15) &&
         x->n_heads % x->n_kv == 0 && x->n_heads / x->n_kv <= DEC_MAX_ROWS && (!x->sink || !x->sink->n || x->sink->dev) &&
         (kv->ring || kv->len + 1 <= kv->cap);
}
static bool dec_same_shape(const mimo_attn_args *x, const mimo_attn_args *y) {
  return x->n_heads == y->n_heads && x->n_kv == y->n_kv && x->head_dim == y->head_dim &&
         x->v_head_dim == y->v_head_dim && x->window == y->window && x->scale == y->scale &&
         x->kv->bf16 == y->kv->bf16 &&
         (x->sink && x->sink->n ? x->sink->dev : NULL) == (y->sink && y->sink->n ? y->sink->dev : NULL);
}

/* The nb sequences a[idx[..]] (dec_batchable, dec_same_shape) in one split launch and one combine; false if their
 * tokens are not rows of the same step buffers (then nothing was launched). */
static bool dec_batch_run(cu_ctx *c, mimo_attn_args *a, const int *idx, int nb, int prec) {
  const mimo_attn_args *b = &a[idx[0]];
  for (int j = 1; j < nb; j++)
    if (a[idx[j]].q < b->q)
      b = &a[idx[j]];
  const int D = b->head_dim, V = b->v_head_dim, G = b->n_heads / b->n_kv;
  const long qs = (long)b->n_heads * D, ks = (long)b->n_kv * D, vs = (long)b->n_kv * V, os = (long)b->n_heads * V;
  dec_batch bt;
  int keys = 1;
  for (int j = 0; j < nb; j++) {
    const mimo_attn_args *x = &a[idx[j]];
    const long dq = (long)(x->q - b->q), tok = dq / qs;
    if (dq % qs || x->k - b->k != tok * ks || x->v - b->v != tok * vs || x->out - b->out != tok * os || tok > INT32_MAX)
      return false;
    const mimo_kv_view *kv = x->kv;
    bt.s[j] = dec_seq{kv_ref_of(kv), kv->len, (int)tok};
    const int end = kv->len + 1, lo = b->window > 0 && end - b->window > 0 ? end - b->window : 0;
    keys = end - lo > keys ? end - lo : keys;
  }
  dec_args p = {b->q, b->k, b->v, kv_ref{}, NULL, b->n_heads, b->n_kv, G, G, 0, b->window, 1, 1, b->scale * LOG2E};
  dec_dispatch<true>(c, p, D, keys, prec, bt, nb, b->kv->bf16);
  if (p.part) { /* else the failure is recorded: the step fails */
    const kv_app ap = {kv_ref{}, b->k, b->v, 1, 0, 0, D}; /* the cache fields come per sequence */
    combine<true>(c, b, p.part, p.nsplit, ap, bt, nb);
  }
  for (int j = 0; j < nb; j++)
    a[idx[j]].kv->len += 1;
  return true;
}

/* backend.h attention_seqs: the one-token sequences that take the decode path, DEC_BATCH at a time in one split
 * launch and one combine (instead of that pair per sequence: ~16 µs each, the larger part of a 64-sequence step's
 * attention); the others one by one. Sequences are independent, so the order of the calls does not matter. */
static int seqs_off = -1; /* MIMO_CUDA_ATTN_SEQS=0: one sequence at a time (before/after in one run) */
void cu_attention_seqs(mimo_backend *be, mimo_attn_args *a, int n) {
  cu_ctx *c = cu(be);
  if (cu_switch(&seqs_off, "MIMO_CUDA_ATTN_SEQS", "0", -1)) {
    for (int i = 0; i < n; i++)
      cu_attention(be, &a[i]);
    return;
  }
  if (force_path < 0)
    force_path = attn_path_env();
  const int prec = mimo_cuda_attn_precision(-1);
  int idx[DEC_BATCH], nb = 0;
  auto flush = [&]() {
    if (nb > 1 && dec_batch_run(c, a, idx, nb, prec))
      nb = 0;
    for (int j = 0; j < nb; j++)
      cu_attention(be, &a[idx[j]]);
    nb = 0;
  };
  for (int i = 0; i < n; i++) {
    if (!dec_batchable(&a[i], force_path)) {
      cu_attention(be, &a[i]);
      continue;
    }
    if (nb && !dec_same_shape(&a[i], &a[idx[0]]))
      flush();
    idx[nb++] = i;
    if (nb == DEC_BATCH)
      flush();
  }
  flush();
}
