/* Routed-expert MoE on the GPU with no host synchronisation: router (fp32
 * linear), then one warp per token does sigmoid, biased top-k and renormalise
 * and writes expert ids and weights to device memory; the expert kernels read
 * the ids there. Two launches for the experts: gate+up+SiLU·up fused (one warp
 * per (token, slot, row), both rows streamed), then down with the routing
 * weights and the sum over the k experts fused (one warp per (token, row)). */
#include <math.h>
#include <stdlib.h>

#include "backend/cuda/cuda_internal.h"

__global__ void k_route(const float *z, const float *bias, int E, int K, int norm, float scaling, int *sel,
                        float *wts) {
  extern __shared__ float sm[]; /* s[E], choice[E] */
  float *s = sm, *ch = sm + E;
  const int t = blockIdx.x, lane = threadIdx.x;
  for (int e = lane; e < E; e += 32) {
    float v = 1.0f / (1.0f + expf(-z[(size_t)t * E + e]));
    s[e] = v;
    ch[e] = v + (bias ? bias[e] : 0.f);
  }
  __syncwarp();
  float sum = 0.f;
  for (int k = 0; k < K; k++) {
    float bv = -INFINITY;
    int bi = 0x7fffffff;
    for (int e = lane; e < E; e += 32)
      if (ch[e] > bv) { /* ascending e: ties keep the lower index */
        bv = ch[e];
        bi = e;
      }
    for (int o = 16; o > 0; o >>= 1) {
      float ov = __shfl_xor_sync(0xffffffffu, bv, o);
      int oi = __shfl_xor_sync(0xffffffffu, bi, o);
      if (ov > bv || (ov == bv && oi < bi)) {
        bv = ov;
        bi = oi;
      }
    }
    if (lane == 0) {
      sel[t * K + k] = bi;
      ch[bi] = -INFINITY;
    }
    sum += s[bi];
    __syncwarp();
  }
  if (lane < K) {
    float w = s[sel[t * K + lane]];
    if (norm)
      w /= sum + 1e-20f;
    wts[t * K + lane] = w * scaling;
  }
}

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

void cu_moe(mimo_backend *be, mimo_moe_args *a) {
  cu_ctx *c = cu(be);
  const int T = a->T, E = a->n_experts, K = a->top_k, H = a->hidden, I = a->inter;
  const cu_lin *tab = expert_table(c, a->experts, E);
  if (!tab || !a->router->dev || (a->bias && a->bias->n && !a->bias->dev) || K > 32) {
    cu_fail(c, "moe", "experts/router not uploaded, mixed expert formats, or top_k > 32", __FILE__, __LINE__);
    return;
  }
  float *z = cu_alloc(be, (size_t)T * E), *w = cu_alloc(be, (size_t)T * K), *selb = cu_alloc(be, (size_t)T * K),
        *hb = cu_alloc(be, (size_t)T * K * I);
  if (!z || !w || !selb || !hb) {
    cu_fail(c, "moe", "out of GPU memory for scratch", __FILE__, __LINE__);
  } else {
    int *sel = (int *)selb;
    cu_linear_dev(c, z, a->x, T, (const cu_lin *)a->router->dev);
    k_route<<<T, 32, (size_t)2 * E * sizeof(float), c->st>>>(
        z, a->bias && a->bias->n ? (const float *)a->bias->dev : NULL, E, K, a->norm_topk, a->scaling, sel, w);
    MIMO_CUDA_LAUNCHED(c);
    switch (tab == NULL ? -1 : ((const cu_lin *)a->experts[0].dev)->fmt) {
    case CU_INT4: experts<CU_INT4>(c, a->out, hb, a->x, tab, sel, w, T, K, I, H); break;
    case CU_BF16: experts<CU_BF16>(c, a->out, hb, a->x, tab, sel, w, T, K, I, H); break;
    case CU_F16: experts<CU_F16>(c, a->out, hb, a->x, tab, sel, w, T, K, I, H); break;
    default: experts<CU_F32>(c, a->out, hb, a->x, tab, sel, w, T, K, I, H); break;
    }
    if (a->ids_out) /* tests and traces only: this one waits */
      MIMO_CUDA(c, cudaMemcpyAsync(a->ids_out, sel, (size_t)T * K * sizeof(int), cudaMemcpyDeviceToHost, c->st)) ==
              MIMO_OK &&
          MIMO_CUDA(c, cudaStreamSynchronize(c->st));
  }
  cu_release(be, z);
  cu_release(be, w);
  cu_release(be, selb);
  cu_release(be, hb);
}
