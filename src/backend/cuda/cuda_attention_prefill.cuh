/* Shared by the tensor-core prefill attention kernels: mma.sync (cuda_attention_prefill.cu, SM80 and up) and
 * warpgroup MMA (cuda_attention_wgmma.cu, SM90a). Both hold a thread's scores and outputs in the same layout (rows
 * gq and gq + 8 of its warp's 16, columns 8i + 2tq and + 1), so the masking, the online softmax and the final
 * store are one piece of code, and the two kernels do the same arithmetic in the same order. */
#ifndef MIMO_BACKEND_CUDA_ATTENTION_PREFILL_CUH
#define MIMO_BACKEND_CUDA_ATTENTION_PREFILL_CUH
#include <math.h>

#include "backend/cuda/cuda_internal.h"

namespace pf {
enum { PF_BF16 = 0, PF_FP16 = 1 }; /* = ATTN_FAST, ATTN_FP16 */
constexpr int BN = 64;             /* keys per tile */
constexpr float LOG2E = 1.4426950408889634f;

struct pf_args {
  const float *q;
  float *out, *part;             /* part: NULL = final output (sink folded in here) */
  const uint16_t *kb, *vb;       /* 16-bit [n_kv][L][D], [n_kv][L][V]; index = position − j0 */
  const float *sink;
  int n_heads, n_kv, G, rows, len, T, window, j0, L, nsplit;
  float qscale;                  /* scale · log2(e) */
};

__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
  uint32_t r; /* cvt puts its first source in the upper half */
  asm("cvt.rn.bf16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
  return r;
}
__device__ __forceinline__ uint32_t pack_f16(float lo, float hi) {
  uint32_t r;
  asm("cvt.rn.f16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
  return r;
}
__device__ __forceinline__ float clamp_f16(float x) { return fminf(fmaxf(x, -65504.f), 65504.f); }
/* Two values to this precision's 16-bit pair (P, in [0, 1], needs no clamp). */
template <int P> __device__ __forceinline__ uint32_t pack2(float lo, float hi) {
  if constexpr (P == PF_BF16)
    return pack_bf16(lo, hi);
  else
    return pack_f16(clamp_f16(lo), clamp_f16(hi));
}
__device__ __forceinline__ float fast_exp2(float x) {
  float y; /* ex2.approx(−inf) = +0, which the masking relies on */
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}
__device__ __forceinline__ unsigned smem_addr(const void *p) { return (unsigned)__cvta_generic_to_shared(p); }
__device__ __forceinline__ void ldsm_x4(uint32_t *r, const void *p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_addr(p)));
}

/* A block's geometry: rows R0 .. R0 + BM − 1 of kv head g (row r = token r / G, head g·G + r % G), the key
 * tiles its rows can see, and this split's share of them. */
struct pf_span {
  int R0, p_first, kbeg, lo_last, t_lo, t_hi;
};
__device__ __forceinline__ pf_span pf_block_span(const pf_args &a, int BM) {
  pf_span s;
  s.R0 = (gridDim.x - 1 - blockIdx.x) * BM; /* rows with the most keys start first */
  const int rows_end = min(s.R0 + BM, a.rows), split = blockIdx.z;
  s.p_first = a.len + s.R0 / a.G;
  const int p_last = a.len + (rows_end - 1) / a.G;
  s.kbeg = a.window > 0 ? max(0, s.p_first - a.window + 1) : 0;
  s.lo_last = a.window > 0 ? p_last - a.window + 1 : 0; /* tiles at/after it are inside every window */
  const int ntiles = (p_last + 1 - s.kbeg + BN - 1) / BN;
  s.t_lo = split * ntiles / a.nsplit;
  s.t_hi = (split + 1) * ntiles / a.nsplit;
  return s;
}

/* Q rows R0.. → 16-bit shared memory, scaled into the exp2 domain; all of a thread's loads issued before the first
 * store. THREADS threads take part. Rows of D + 8 elements (ldmatrix: the 8 rows one reads land in 8 bank groups),
 * or SW128: boxes of 64 dims x BM rows of 128 bytes, 16-byte unit u of row r at u ^ (r % 8), the 128-byte swizzle a
 * warpgroup-MMA descriptor reads (box bases 1024-byte aligned). */
template <int D, int BM, int THREADS, int P, bool SW128 = false>
__device__ __forceinline__ void pf_stage_q(const pf_args &a, uint16_t *sQ, int R0, int g, int tid) {
  constexpr int DS = D + 8, DC = D / 8;
  static_assert(BM * DC % THREADS == 0, "Q tile splits evenly");
#pragma unroll
  for (int k = 0; k < BM * DC / THREADS; k++) {
    const int i = tid + k * THREADS, r = i / DC, c = (i % DC) * 8, R = R0 + r;
    uint4 u = {0, 0, 0, 0};
    if (R < a.rows) {
      const float *src = a.q + ((size_t)(R / a.G) * a.n_heads + g * a.G + R % a.G) * D + c;
      const float4 x = *(const float4 *)src, y = *(const float4 *)(src + 4);
      const float s = a.qscale;
      u = make_uint4(pack2<P>(x.x * s, x.y * s), pack2<P>(x.z * s, x.w * s), pack2<P>(y.x * s, y.y * s),
                     pack2<P>(y.z * s, y.w * s));
    }
    if constexpr (SW128)
      *(uint4 *)((char *)sQ + (c >> 6) * (BM * 128) + r * 128 + (((c >> 3) & 7) ^ (r & 7)) * 16) = u;
    else
      *(uint4 *)(sQ + r * DS + c) = u;
  }
}

/* This thread's two rows (gq and gq + 8 of warp's 16): position (−1 past the end) and window start. */
struct pf_rows {
  int Ra, Rb, pa, pb, loa, lob;
};
__device__ __forceinline__ pf_rows pf_thread_rows(const pf_args &a, int R0, int warp, int gq) {
  pf_rows r;
  r.Ra = R0 + warp * 16 + gq;
  r.Rb = r.Ra + 8;
  r.pa = r.Ra < a.rows ? a.len + r.Ra / a.G : -1;
  r.pb = r.Rb < a.rows ? a.len + r.Rb / a.G : -1;
  r.loa = a.window > 0 ? r.pa - a.window + 1 : 0;
  r.lob = a.window > 0 ? r.pb - a.window + 1 : 0;
  return r;
}

/* Running softmax state of a thread's two rows: max and (per-thread partial) sum. */
struct pf_state {
  float ma, mb, la, lb;
};

/* The online softmax over one tile's masked scores s (NT n-tiles of 8 keys, exp2 domain) of a thread's two rows
 * (the 4 threads of a quad share a row): new maxima ma, mb and per-thread partial sums la, lb, s turned into
 * P = exp2(s − max); returns the factors the accumulated outputs are rescaled by. The decode kernel
 * (cuda_attention.cu) uses it too. */
template <int NT>
__device__ __forceinline__ float2 pf_online_tile(float (&s)[NT][4], float &ma, float &mb, float &la, float &lb) {
  float xa = -INFINITY, xb = -INFINITY;
#pragma unroll
  for (int nt = 0; nt < NT; nt++) {
    xa = fmaxf(xa, fmaxf(s[nt][0], s[nt][1]));
    xb = fmaxf(xb, fmaxf(s[nt][2], s[nt][3]));
  }
  xa = fmaxf(xa, __shfl_xor_sync(0xffffffffu, xa, 1));
  xa = fmaxf(xa, __shfl_xor_sync(0xffffffffu, xa, 2));
  xb = fmaxf(xb, __shfl_xor_sync(0xffffffffu, xb, 1));
  xb = fmaxf(xb, __shfl_xor_sync(0xffffffffu, xb, 2));
  const float na = fmaxf(ma, xa), nb = fmaxf(mb, xb);
  const float ba = na == -INFINITY ? 0.f : na, bb = nb == -INFINITY ? 0.f : nb; /* no key yet: avoid inf − inf */
  const float ca = fast_exp2(ma - ba), cb = fast_exp2(mb - bb);
  ma = na;
  mb = nb;
  float sa = 0.f, sb = 0.f;
#pragma unroll
  for (int nt = 0; nt < NT; nt++) {
    s[nt][0] = fast_exp2(s[nt][0] - ba);
    s[nt][1] = fast_exp2(s[nt][1] - ba);
    s[nt][2] = fast_exp2(s[nt][2] - bb);
    s[nt][3] = fast_exp2(s[nt][3] - bb);
    sa += s[nt][0] + s[nt][1];
    sb += s[nt][2] + s[nt][3];
  }
  la = la * ca + sa; /* per-thread partial sums; the quad adds them at the end */
  lb = lb * cb + sb;
  return make_float2(ca, cb);
}

/* One key tile's scores s (keys kt..kt+63, in the exp2 domain): masks an edge tile (causal / window), then the
 * online softmax above. */
__device__ __forceinline__ float2 pf_softmax_tile(float (&s)[BN / 8][4], pf_state &st, const pf_rows &r,
                                                  const pf_span &sp, int kt, int tq) {
  if (!(kt >= sp.lo_last && kt + BN - 1 <= sp.p_first)) { /* edge tile: causal / window mask */
#pragma unroll
    for (int nt = 0; nt < BN / 8; nt++)
#pragma unroll
      for (int e = 0; e < 4; e++) {
        const int j = kt + nt * 8 + 2 * tq + (e & 1);
        const bool ok = e < 2 ? (j >= r.loa && j <= r.pa) : (j >= r.lob && j <= r.pb);
        if (!ok)
          s[nt][e] = -INFINITY;
      }
  }
  return pf_online_tile<BN / 8>(s, st.ma, st.mb, st.la, st.lb);
}

/* The accumulated outputs o (V dims of the thread's two rows) rescaled by the factors of pf_online_tile */
template <int V> __device__ __forceinline__ void pf_rescale(float (&o)[V / 8][4], float2 cf) {
#pragma unroll
  for (int i = 0; i < V / 8; i++) {
    o[i][0] *= cf.x;
    o[i][1] *= cf.x;
    o[i][2] *= cf.y;
    o[i][3] *= cf.y;
  }
}

/* P of key chunk kc (16 keys) as an A fragment of this precision */
template <int P> __device__ __forceinline__ void pf_p_frag(uint32_t (&p)[4], const float (&s)[BN / 8][4], int kc) {
  if constexpr (P == PF_BF16) {
    p[0] = pack_bf16(s[2 * kc][0], s[2 * kc][1]), p[1] = pack_bf16(s[2 * kc][2], s[2 * kc][3]);
    p[2] = pack_bf16(s[2 * kc + 1][0], s[2 * kc + 1][1]), p[3] = pack_bf16(s[2 * kc + 1][2], s[2 * kc + 1][3]);
  } else {
    p[0] = pack_f16(s[2 * kc][0], s[2 * kc][1]), p[1] = pack_f16(s[2 * kc][2], s[2 * kc][3]);
    p[2] = pack_f16(s[2 * kc + 1][0], s[2 * kc + 1][1]), p[3] = pack_f16(s[2 * kc + 1][2], s[2 * kc + 1][3]);
  }
}

/* The rows' outputs: partials of one key split (unnormalised, with max and sum), or the final rows with the sink
 * added to the denominator. */
template <int V>
__device__ __forceinline__ void pf_store(const pf_args &a, const float (&o)[V / 8][4], pf_state st, const pf_rows &r,
                                         int g, int tq) {
  st.la += __shfl_xor_sync(0xffffffffu, st.la, 1);
  st.la += __shfl_xor_sync(0xffffffffu, st.la, 2);
  st.lb += __shfl_xor_sync(0xffffffffu, st.lb, 1);
  st.lb += __shfl_xor_sync(0xffffffffu, st.lb, 2);
  const int split = blockIdx.z;
#pragma unroll
  for (int half = 0; half < 2; half++) {
    const int R = half ? r.Rb : r.Ra;
    if (R >= a.rows)
      continue;
    float m = half ? st.mb : st.ma, l = half ? st.lb : st.la;
    const int h = g * a.G + R % a.G;
    if (a.part) { /* partial of one key split: unnormalised */
      const size_t pr = (size_t)(g * a.nsplit + split) * a.rows + R;
      float *dst = a.part + pr * V + 2 * tq;
#pragma unroll
      for (int i = 0; i < V / 8; i++)
        *(float2 *)(dst + i * 8) = make_float2(o[i][2 * half], o[i][2 * half + 1]);
      if (tq == 0)
        *(float2 *)(a.part + (size_t)a.n_kv * a.nsplit * a.rows * V + pr * 2) = make_float2(m, l);
      continue;
    }
    float c = 1.f;
    if (a.sink) { /* one more denominator term, no value */
      const float sg = a.sink[h] * LOG2E, m2 = fmaxf(m, sg);
      c = fast_exp2(m - m2);
      l = l * c + fast_exp2(sg - m2);
    }
    const float f = c / l;
    float *dst = a.out + ((size_t)(R / a.G) * a.n_heads + h) * V + 2 * tq;
#pragma unroll
    for (int i = 0; i < V / 8; i++)
      *(float2 *)(dst + i * 8) = make_float2(o[i][2 * half] * f, o[i][2 * half + 1] * f);
  }
}
} // namespace pf

/* cuda_attention_wgmma.cu: the SM90a kernel (fp16 operands, dims 192/128, 128/128, 64/64). usable: this device
 * runs its code and the test hook / MIMO_CUDA_ATTN_WGMMA=0 has not turned it off; launch: as the mma.sync kernel
 * (blocks of cu_attn_wg_rows rows), after the keys and values were converted. */
bool cu_attn_wg_usable(cu_ctx *c, int D, int V);
int cu_attn_wg_rows(void); /* rows per block it takes */
void cu_attn_wg_launch(cu_ctx *c, const pf::pf_args &p, int D, int V);
#endif
