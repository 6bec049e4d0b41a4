/* Routed-expert MoE on the GPU with no host synchronisation: routing
 * (cuda_moe_route.cu) writes expert ids and weights to device memory; the
 * expert kernels read the ids there. Two launches for the experts: gate+up+SiLU·up fused (one warp
 * per (token, slot, row), both rows streamed), then down with the routing
 * weights and the sum over the k experts fused (one warp per (token, row)).
 * int4 experts with power-of-two groups take the decode kernels k_moe_up_q4 /
 * k_moe_down_q4 below (lane-major activations, several rows per warp). */
#include <math.h>
#include <stdlib.h>

#include "backend/cuda/cuda_internal.h"

template <int FMT>
__global__ void __launch_bounds__(256) k_moe_up(float *hbuf, const float *x, const cu_lin *tab, const int *sel, int K,
                                                int I, int H) {
  const int tk = blockIdx.y, t = tk / K, lane = threadIdx.x & 31, r = blockIdx.x * 8 + (threadIdx.x >> 5);
  if (r >= I)
    return;
  const int e = sel[tk];
  const cu_lin G = tab[e * 3], U = tab[e * 3 + 1];
  const float *xt = x + (size_t)t * H;
  float g = warp_dot<FMT>(G, r, xt, lane), u = warp_dot<FMT>(U, r, xt, lane);
  if (lane == 0)
    hbuf[(size_t)tk * I + r] = g / (1.0f + expf(-g)) * u;
}

template <int FMT>
__global__ void __launch_bounds__(256) k_moe_down(float *out, const float *hbuf, const cu_lin *tab, const int *sel,
                                                  const float *wts, int K, int I, int H) {
  const int t = blockIdx.y, lane = threadIdx.x & 31, r = blockIdx.x * 8 + (threadIdx.x >> 5);
  if (r >= H)
    return;
  float acc = 0.f;
  for (int k = 0; k < K; k++) {
    const int tk = t * K + k;
    const cu_lin D = tab[sel[tk] * 3 + 2];
    acc += wts[tk] * warp_dot<FMT>(D, r, hbuf + (size_t)tk * I, lane);
  }
  if (lane == 0)
    out[(size_t)t * H + r] = acc;
}

/* ---- int4 experts, decode-shaped (issue 5 MoE item) ----
 * The generic kernels above give one warp a row and let each lane read the 32
 * activations of its own 16-byte weight word straight from global memory: the
 * 32 lanes then touch 32 different cache lines per float4 load (32 L1
 * wavefronts), which capped the MoE at ~0.45 TB/s. Here the activations are
 * laid out "lane-major" (perm_idx): for a warp's step `it` and float4 chunk c,
 * the 32 lanes' float4s are 512 contiguous bytes (4 wavefronts, no bank
 * conflicts). x is staged so into shared memory once per block; the up kernel
 * writes h in that layout, so the down kernel reads it from L1 directly. Each
 * warp streams several rows sharing one x fetch, with every 16-byte weight
 * load of a row group issued before the first use. */
__host__ __device__ __forceinline__ int perm_idx(int k) { /* k = element index, K % 32 == 0 */
  const int j = k >> 5, c = (k >> 2) & 7;
  return ((((j >> 5) << 3) + c) * 32 + (j & 31)) * 4 + (k & 3);
}
__host__ __device__ __forceinline__ int perm_len(int n) { return (n + 1023) / 1024 * 1024; }

/* Dot of NR rows' 16-byte words (lane's word j = lane + 32*it) with 32 activations each. */
template <int NR>
__device__ __forceinline__ void q4_accum(float (&acc)[NR], const uint4 (&w)[NR], const uint32_t (&s)[NR][4],
                                         const float *xp /* perm base + it*1024 + lane*4 */, bool valid) {
  if (!valid) /* past the row's end: the activations there may be unwritten */
    return;
#pragma unroll
  for (int wd = 0; wd < 4; wd++) {
    const float4 x0 = *(const float4 *)(xp + (2 * wd) * 128), x1 = *(const float4 *)(xp + (2 * wd + 1) * 128);
#pragma unroll
    for (int r = 0; r < NR; r++) {
      const uint32_t q = wd == 0 ? w[r].x : wd == 1 ? w[r].y : wd == 2 ? w[r].z : w[r].w, sz = s[r][wd];
      const float base = __uint_as_float(0x4b000000u | (sz & 0xffu));
      /* even nibbles in lo's bytes, odd in hi's; one byte permute per weight then makes the float 2^23 + n
       * (byte k of v, zeros, 0x4b): 2 integer ops per 8 weights plus 8 permutes instead of ~15 shifts/masks */
      const uint32_t lo = q & 0x0f0f0f0fu, hi = (q >> 4) & 0x0f0f0f0fu;
#define MIMO_NIB(v, k) (__uint_as_float(__byte_perm(v, 0x4b000000u, 0x7440u | (k))) - base)
      float d = MIMO_NIB(lo, 0) * x0.x;
      d = fmaf(MIMO_NIB(hi, 0), x0.y, d);
      d = fmaf(MIMO_NIB(lo, 1), x0.z, d);
      d = fmaf(MIMO_NIB(hi, 1), x0.w, d);
      d = fmaf(MIMO_NIB(lo, 2), x1.x, d);
      d = fmaf(MIMO_NIB(hi, 2), x1.y, d);
      d = fmaf(MIMO_NIB(lo, 3), x1.z, d);
      d = fmaf(MIMO_NIB(hi, 3), x1.w, d);
#undef MIMO_NIB
      acc[r] = fmaf(bf16_hi(sz), d, acc[r]);
    }
  }
}

/* Loads word j of row `row` (zeros, i.e. scale 0, past the row's end or for row < 0). */
template <bool G32>
__device__ __forceinline__ void q4_load(uint4 &w, uint32_t (&s)[4], const cu_lin &L, int row, int j, int n16,
                                        int groups, int gshift) {
  if (row >= 0 && j < n16) {
    w = __ldg(L.q + q4_idx(L.tiled, n16, row, j));
    if (G32) {
      s[0] = s[1] = s[2] = s[3] = __ldg(L.sz + sz_idx(L.tiled, groups, row, (j * 32) >> gshift));
    } else {
#pragma unroll
      for (int i = 0; i < 4; i++)
        s[i] = __ldg(L.sz + sz_idx(L.tiled, groups, row, (j * 32 + i * 8) >> gshift));
    }
  } else {
    w = make_uint4(0, 0, 0, 0);
    s[0] = s[1] = s[2] = s[3] = 0;
  }
}

enum { Q4_WARPS = 8, Q4_UP_RP = 2, Q4_DN_RW = 4 };

/* Test hook (mimo_cuda_check bench): when set, five events are recorded on the stream around the MoE's phases:
 * before the router, after it, after the routing, after gate+up, after down (int4 decode path only). */
static cudaEvent_t *moe_ev;
extern "C" void mimo_cuda_moe_events(void *ev5) { moe_ev = (cudaEvent_t *)ev5; }
static void moe_mark(cu_ctx *c, int i) {
  if (moe_ev)
    (void)cudaEventRecord(moe_ev[i], c->st);
}
void cu_moe_mark(cu_ctx *c, int i) { moe_mark(c, i); }

/* gate+up+SiLU·up: block (tk, tile of Q4_WARPS*RP rows); warp: RP rows of gate and of up. */
template <bool G32>
__global__ void __launch_bounds__(Q4_WARPS * 32) k_moe_up_q4(float *hbuf, const float *x, const cu_lin *tab,
                                                              const int *sel, int K, int I, int H, int gshift) {
  extern __shared__ float4 xs4[];
  float *xs = (float *)xs4;
  const int tk = blockIdx.x, t = tk / K, lane = threadIdx.x & 31, wp = threadIdx.x >> 5;
  const int r0 = blockIdx.y * (Q4_WARPS * Q4_UP_RP) + wp * Q4_UP_RP;
  const int e = __ldg(sel + tk);
  const cu_lin G = tab[e * 3], U = tab[e * 3 + 1];
  const int n16 = H / 32, groups = H / G.group, HP = perm_len(H), steps = (n16 + 31) / 32;
  constexpr int NR = 2 * Q4_UP_RP, CH = 4; /* rows (gate,up interleaved) x words per lane in flight */
  uint4 w[CH][NR];
  uint32_t s[CH][NR][4];
  int it0 = 0;
  auto load = [&](int itb) {
#pragma unroll
    for (int c = 0; c < CH; c++)
#pragma unroll
      for (int p = 0; p < Q4_UP_RP; p++) {
        const int row = r0 + p < I ? r0 + p : -1, j = lane + 32 * (itb + c);
        q4_load<G32>(w[c][2 * p], s[c][2 * p], G, itb + c < steps ? row : -1, j, n16, groups, gshift);
        q4_load<G32>(w[c][2 * p + 1], s[c][2 * p + 1], U, itb + c < steps ? row : -1, j, n16, groups, gshift);
      }
  };
  load(0);
  /* stage x (token t) in the lane-major layout; threads walk the destination so stores are conflict-free */
  const float *xt = x + (size_t)t * H;
  for (int p = threadIdx.x; p < HP / 4; p += blockDim.x) {
    const int ln = p & 31, c = (p >> 5) & 7, it = p >> 8, k = ((it * 32 + ln) * 32) + c * 4;
    xs4[p] = k < H ? *(const float4 *)(xt + k) : make_float4(0.f, 0.f, 0.f, 0.f);
  }
  __syncthreads();
  float acc[NR];
#pragma unroll
  for (int r = 0; r < NR; r++)
    acc[r] = 0.f;
  for (;;) {
#pragma unroll
    for (int c = 0; c < CH; c++)
      if (it0 + c < steps)
        q4_accum<NR>(acc, w[c], s[c], xs + (it0 + c) * 1024 + lane * 4, lane + 32 * (it0 + c) < n16);
    it0 += CH;
    if (it0 >= steps)
      break;
    load(it0);
  }
#pragma unroll
  for (int p = 0; p < Q4_UP_RP; p++) {
    const float g = warp_sum(acc[2 * p]), u = warp_sum(acc[2 * p + 1]);
    if (lane == 0 && r0 + p < I)
      hbuf[(size_t)tk * perm_len(I) + perm_idx(r0 + p)] = g / (1.0f + expf(-g)) * u;
  }
}

/* down with the routing weights and the sum over the k experts: block (t, tile of 4*RW rows); warp w takes
 * rows quad w%4 for the slots k ≡ w/4 (mod 2); the two halves meet in shared memory in a fixed order. */
template <bool G32>
__global__ void __launch_bounds__(Q4_WARPS * 32, G32 ? 2 : 1) k_moe_down_q4(float *out, const float *hbuf, const cu_lin *tab,
                                                                const int *sel, const float *wts, int K, int I,
                                                                int H, int gshift) {
  __shared__ const uint4 *sq[32];
  __shared__ const uint32_t *ssz[32];
  __shared__ float sw[32];
  __shared__ float part[Q4_WARPS][Q4_DN_RW];
  const int t = blockIdx.x, lane = threadIdx.x & 31, wp = threadIdx.x >> 5;
  const int r0 = blockIdx.y * (4 * Q4_DN_RW) + (wp & 3) * Q4_DN_RW, half = wp >> 2;
  if (threadIdx.x < K) {
    const int e = sel[t * K + threadIdx.x];
    sq[threadIdx.x] = tab[e * 3 + 2].q;
    ssz[threadIdx.x] = tab[e * 3 + 2].sz;
    sw[threadIdx.x] = wts[t * K + threadIdx.x];
  }
  const int group = tab[2].group, n16 = I / 32, groups = I / group, steps = (n16 + 31) / 32, IP = perm_len(I);
  const int tiled = tab[2].tiled; /* every expert of a layer has the same shape, so the same layout */
  __syncthreads();
  /* The (slot, row-word block) passes of this warp run as one software pipeline: the next pass's weight loads
   * are issued before the current pass's arithmetic (two register buffers), so a warp keeps a DRAM round trip
   * in flight across slots instead of waiting for one per slot. Same arithmetic order as one pass at a time. */
  constexpr int CH = 2, RW = Q4_DN_RW;
  const int nsb = (steps + CH - 1) / CH, total = (K - half + 1) / 2 * nsb;
  float acc[RW], a[RW];
#pragma unroll
  for (int r = 0; r < RW; r++)
    acc[r] = a[r] = 0.f;
  uint4 w0[CH][RW], w1[CH][RW];
  uint32_t s0[CH][RW][4], s1[CH][RW][4];
  auto load = [&](uint4(&w)[CH][RW], uint32_t(&s)[CH][RW][4], int n) {
    const bool on = n < total;
    const int k = on ? half + 2 * (n / nsb) : half, itb = on ? CH * (n % nsb) : 0;
    cu_lin D;
    D.q = sq[k];
    D.sz = ssz[k];
    D.tiled = tiled;
#pragma unroll
    for (int c = 0; c < CH; c++)
#pragma unroll
      for (int r = 0; r < RW; r++)
        q4_load<G32>(w[c][r], s[c][r], D, on && r0 + r < H && itb + c < steps ? r0 + r : -1, lane + 32 * (itb + c),
                     n16, groups, gshift);
  };
  auto comp = [&](const uint4(&w)[CH][RW], const uint32_t(&s)[CH][RW][4], int n) {
    const int k = half + 2 * (n / nsb), itb = CH * (n % nsb);
    const float *hp = hbuf + (size_t)(t * K + k) * IP;
#pragma unroll
    for (int c = 0; c < CH; c++)
      if (itb + c < steps)
        q4_accum<RW>(a, w[c], s[c], hp + (itb + c) * 1024 + lane * 4, lane + 32 * (itb + c) < n16);
    if (itb + CH >= steps) { /* the slot's last pass: weight it into the sum */
#pragma unroll
      for (int r = 0; r < RW; r++) {
        acc[r] = fmaf(sw[k], a[r], acc[r]);
        a[r] = 0.f;
      }
    }
  };
  load(w0, s0, 0);
  for (int n = 0; n < total; n += 2) {
    load(w1, s1, n + 1);
    comp(w0, s0, n);
    if (n + 1 >= total)
      break;
    load(w0, s0, n + 2);
    comp(w1, s1, n + 1);
  }
#pragma unroll
  for (int r = 0; r < Q4_DN_RW; r++) {
    const float v = warp_sum(acc[r]);
    if (lane == 0)
      part[wp][r] = v;
  }
  __syncthreads();
  if (threadIdx.x < 4 * Q4_DN_RW) {
    const int q = threadIdx.x / Q4_DN_RW, r = threadIdx.x % Q4_DN_RW, row = blockIdx.y * (4 * Q4_DN_RW) + threadIdx.x;
    if (row < H)
      out[(size_t)t * H + row] = part[q][r] + part[q + 4][r];
  }
}

/* The int4 decode path needs power-of-two groups of at least 8 and x small enough for default shared memory. */
static bool q4_fast_ok(const cu_lin *L0, int H, int I) {
  const int g = L0->group;
  return g >= 8 && (g & (g - 1)) == 0 && H % 32 == 0 && I % 32 == 0 && H % g == 0 && I % g == 0 &&
         (size_t)perm_len(H) * sizeof(float) <= 48 * 1024;
}

static void experts_q4(cu_ctx *c, float *out, float *hb, const float *x, const cu_lin *tab, const int *sel,
                       const float *wts, int T, int K, int I, int H, int group) {
  const int gshift = __builtin_ctz((unsigned)group);
  const size_t smem = (size_t)perm_len(H) * sizeof(float);
  const dim3 gu(T * K, cdiv(I, Q4_WARPS * Q4_UP_RP)), gd(T, cdiv(H, 4 * Q4_DN_RW));
  if (group >= 32) {
    k_moe_up_q4<true><<<gu, Q4_WARPS * 32, smem, c->st>>>(hb, x, tab, sel, K, I, H, gshift);
    MIMO_CUDA_LAUNCHED(c);
    moe_mark(c, 3);
    k_moe_down_q4<true><<<gd, Q4_WARPS * 32, 0, c->st>>>(out, hb, tab, sel, wts, K, I, H, gshift);
  } else {
    k_moe_up_q4<false><<<gu, Q4_WARPS * 32, smem, c->st>>>(hb, x, tab, sel, K, I, H, gshift);
    MIMO_CUDA_LAUNCHED(c);
    moe_mark(c, 3);
    k_moe_down_q4<false><<<gd, Q4_WARPS * 32, 0, c->st>>>(out, hb, tab, sel, wts, K, I, H, gshift);
  }
  MIMO_CUDA_LAUNCHED(c);
  moe_mark(c, 4);
}

/* The layer's experts as one device table (built on first use, kept on experts[0]'s handle). */
static const cu_lin *expert_table(cu_ctx *c, const mimo_linear *ex, int E) {
  cu_lin *L0 = (cu_lin *)ex[0].dev;
  if (!L0)
    return NULL;
  if (L0->table)
    return (const cu_lin *)L0->table;
  cu_lin *h = (cu_lin *)malloc((size_t)E * 3 * sizeof *h);
  if (!h)
    return NULL;
  for (int i = 0; i < 3 * E; i++) {
    if (!ex[i].dev || ((cu_lin *)ex[i].dev)->fmt != L0->fmt) {
      free(h);
      return NULL;
    }
    h[i] = *(cu_lin *)ex[i].dev;
    h[i].table = NULL;
  }
  void *d = NULL;
  if (MIMO_CUDA(c, cudaMalloc(&d, (size_t)E * 3 * sizeof *h)) == MIMO_OK &&
      MIMO_CUDA(c, cudaMemcpy(d, h, (size_t)E * 3 * sizeof *h, cudaMemcpyHostToDevice)) == MIMO_OK)
    L0->table = d;
  free(h);
  return (const cu_lin *)L0->table;
}

template <int FMT>
static void experts(cu_ctx *c, float *out, float *hb, const float *x, const cu_lin *tab, const int *sel,
                    const float *wts, int T, int K, int I, int H) {
  k_moe_up<FMT><<<dim3(cdiv(I, 8), T * K), 256, 0, c->st>>>(hb, x, tab, sel, K, I, H);
  MIMO_CUDA_LAUNCHED(c);
  k_moe_down<FMT><<<dim3(cdiv(H, 8), T), 256, 0, c->st>>>(out, hb, tab, sel, wts, K, I, H);
  MIMO_CUDA_LAUNCHED(c);
}

/* Expert parallel, per-token kernels: slots routed to another rank's experts
 * point at local expert 0 with weight 0 (they add exactly nothing); the others
 * get local ids. The grouped path skips foreign slots itself. */
__global__ void k_ep_local(const int *sel, const float *w, int *lsel, float *lw, int n, int e0, int nl) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n)
    return;
  const int e = sel[i] - e0;
  const bool here = e >= 0 && e < nl;
  lsel[i] = here ? e : 0;
  lw[i] = here ? w[i] : 0.f;
}

void cu_moe(mimo_backend *be, mimo_moe_args *a) {
  cu_ctx *c = cu(be);
  const int T = a->T, E = a->n_experts, K = a->top_k, H = a->hidden, I = a->inter;
  const int e0 = a->n_local ? a->expert0 : 0, NL = a->n_local ? a->n_local : E;
  const cu_lin *tab = expert_table(c, a->experts, NL);
  if (!tab || !a->router->dev || (a->bias && a->bias->n && !a->bias->dev) || K > 32) {
    cu_fail(c, "moe", "experts/router not uploaded, mixed expert formats, or top_k > 32", __FILE__, __LINE__);
    return;
  }
  /* prefill: experts grouped by the tokens that chose them, tensor cores (cuda_moe_gemm.cu) */
  const cu_lin *L0 = (const cu_lin *)a->experts[0].dev;
  const bool q4 = L0->fmt == CU_INT4 && q4_fast_ok(L0, H, I) &&
                  ((const cu_lin *)a->experts[1].dev)->group == L0->group &&
                  ((const cu_lin *)a->experts[2].dev)->group == L0->group;
  const bool tc_ok = q4 && cu_moe_tc_fits(L0, H, I, K);
  const bool grouped = cu_moe_grouped_fits(c, a, NL, tc_ok);
  const bool tc = !grouped && tc_ok; /* tensor-core decode (cuda_moe_tc.cu) */
  const bool tcg = tc && cu_moe_tcg_fits(T, NL);                  /* the same, pairs grouped by expert */
  const bool own = grouped || tcg;                                /* paths with their own scratch and expert ranges */
  float *z = cu_alloc(be, cu_moe_route_scratch(T, E)), *w = cu_alloc(be, (size_t)T * K), *selb = cu_alloc(be, (size_t)T * K),
        *hb = own ? NULL : cu_alloc(be, (size_t)T * K * perm_len(I)),
        *xh = tc && !own ? cu_alloc(be, cdiv(cu_moe_tc_scratch(T, H), 4)) : NULL,
        *hr = tc && !own ? cu_alloc(be, cdiv(cu_moe_tc_scratch(T * K, I), 4)) : NULL;
  if (!z || !w || !selb || (!own && !hb) || (tc && !own && (!xh || !hr))) {
    cu_fail(c, "moe", "out of GPU memory for scratch", __FILE__, __LINE__);
  } else {
    int *sel = (int *)selb;
    moe_mark(c, 0);
    cu_moe_route(c, z, a->x, T, (const cu_lin *)a->router->dev,
                 a->bias && a->bias->n ? (const float *)a->bias->dev : NULL, E, K, a->norm_topk, a->scaling, sel, w);
    moe_mark(c, 2);
    int *xsel = sel; /* what the per-token kernels read */
    float *xw = w, *epb = NULL;
    if (NL != E && !own) {
      epb = cu_alloc(be, (size_t)2 * T * K);
      if (!epb) {
        cu_fail(c, "moe", "out of GPU memory for scratch", __FILE__, __LINE__);
      } else {
        xsel = (int *)epb;
        xw = epb + (size_t)T * K;
        k_ep_local<<<cdiv((long)T * K, 256), 256, 0, c->st>>>(sel, w, xsel, xw, T * K, e0, NL);
        MIMO_CUDA_LAUNCHED(c);
      }
    }
    const bool ep_ok = NL == E || own || epb;
    switch (!ep_ok ? -4 : grouped ? -3 : q4 ? -2 : L0->fmt) {
    case -4: break; /* scratch for the local ids failed: reported above */
    case -3:
      cu_moe_grouped(be, a, tab, sel, w, e0, NL);
      moe_mark(c, 3); /* the decode phase hook sees the whole grouped path as gate+up */
      moe_mark(c, 4);
      break;
    case -2:
      if (tcg) {
        cu_moe_tcg(be, a->out, a->x, tab, sel, w, T, K, I, H, L0->group, L0->tiled, e0, NL);
        moe_mark(c, 4);
      } else if (tc) {
        cu_moe_tc(c, a->out, hb, hr, xh, a->x, tab, xsel, xw, T, K, I, H, L0->group, L0->tiled);
        moe_mark(c, 4);
      } else {
        experts_q4(c, a->out, hb, a->x, tab, xsel, xw, T, K, I, H, L0->group);
      }
      break;
    case CU_INT4: experts<CU_INT4>(c, a->out, hb, a->x, tab, xsel, xw, T, K, I, H); break;
    case CU_BF16: experts<CU_BF16>(c, a->out, hb, a->x, tab, xsel, xw, T, K, I, H); break;
    case CU_F16: experts<CU_F16>(c, a->out, hb, a->x, tab, xsel, xw, T, K, I, H); break;
    default: experts<CU_F32>(c, a->out, hb, a->x, tab, xsel, xw, T, K, I, H); break;
    }
    if (epb)
      cu_release(be, epb);
    if (a->ids_out) /* tests and traces only: this one waits */
      MIMO_CUDA(c, cudaMemcpyAsync(a->ids_out, sel, (size_t)T * K * sizeof(int), cudaMemcpyDeviceToHost, c->st)) ==
              MIMO_OK &&
          MIMO_CUDA(c, cudaStreamSynchronize(c->st));
  }
  cu_release(be, z);
  cu_release(be, w);
  cu_release(be, selb);
  cu_release(be, hb);
  cu_release(be, xh);
  cu_release(be, hr);
}
