/* The fp32 scalar attention kernel: one block per (head, token), keys in tiles of ATT_TILE, online softmax with the
 * sink as one more denominator term. The fallback for head dims the tensor-core kernels do not take and for
 * unaligned buffers (cuda_attention.cu chooses); it reads the cache as cuda_attention.cu's kernels do (kv_row). */
#include <math.h>

#include "backend/cuda/cuda_internal.h"

namespace {
enum { ATT_THREADS = 128, ATT_TILE = 32 };

typedef struct {
  const float *q, *k, *v;
  kv_ref c;
  float *out;
  const float *sink;
  int n_heads, n_kv, D, V, window, len;
  float scale;
} att_p;

/* Key (which = 0) or value j of kv head g, element d: from the cache, or this step's buffers (rounded as the
 * cache will keep them). */
__device__ __forceinline__ float att_el(const att_p &a, int j, int g, int which, int d) {
  const int dim = which ? a.V : a.D;
  if (j >= a.len)
    return kv_round((which ? a.v : a.k)[((size_t)(j - a.len) * a.n_kv + g) * dim + d], a.c.bf16);
  return kv_get(kv_row(a.c, j, which, a.n_kv * dim), (size_t)g * dim + d, a.c.bf16);
}

__global__ void __launch_bounds__(ATT_THREADS) k_attention(att_p a) {
  __shared__ float qs[ATT_MAXD];
  __shared__ float sc[ATT_TILE];
  const int h = blockIdx.x, t = blockIdx.y, tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int g = h / (a.n_heads / a.n_kv);
  const float *q = a.q + ((size_t)t * a.n_heads + h) * a.D;
  for (int d = tid; d < a.D; d += ATT_THREADS)
    qs[d] = q[d];
  __syncthreads();
  const int p = a.len + t;
  const int lo = a.window > 0 && p - a.window + 1 > 0 ? p - a.window + 1 : 0;
  float m = -INFINITY, l = 0.f, acc0 = 0.f, acc1 = 0.f;
  const int d0 = tid, d1 = tid + ATT_THREADS;
  for (int j0 = lo; j0 <= p; j0 += ATT_TILE) {
    const int n = p + 1 - j0 < ATT_TILE ? p + 1 - j0 : ATT_TILE;
    for (int kk = warp; kk < n; kk += ATT_THREADS / 32) {
      float s = 0.f;
      for (int d = lane; d < a.D; d += 32)
        s += qs[d] * att_el(a, j0 + kk, g, 0, d);
      s = warp_sum(s);
      if (lane == 0)
        sc[kk] = s * a.scale;
    }
    __syncthreads();
    float tmax = -INFINITY;
    for (int kk = 0; kk < n; kk++)
      tmax = fmaxf(tmax, sc[kk]);
    const float mn = fmaxf(m, tmax), c = m == -INFINITY ? 0.f : expf(m - mn);
    l *= c;
    acc0 *= c;
    acc1 *= c;
    for (int kk = 0; kk < n; kk++) {
      const float pj = expf(sc[kk] - mn);
      l += pj;
      if (d0 < a.V)
        acc0 += pj * att_el(a, j0 + kk, g, 1, d0);
      if (d1 < a.V)
        acc1 += pj * att_el(a, j0 + kk, g, 1, d1);
    }
    m = mn;
    __syncthreads();
  }
  if (a.sink) {
    const float sg = a.sink[h], m2 = fmaxf(sg, m), c = expf(m - m2);
    l = l * c + expf(sg - m2);
    acc0 *= c;
    acc1 *= c;
  }
  float *o = a.out + ((size_t)t * a.n_heads + h) * a.V;
  if (d0 < a.V)
    o[d0] = acc0 / l;
  if (d1 < a.V)
    o[d1] = acc1 / l;
}

} // namespace

void cu_attn_scalar(cu_ctx *c, const mimo_attn_args *a) {
  const mimo_kv_view *kv = a->kv;
  att_p p = {a->q, a->k, a->v, kv_ref_of(kv), a->out, a->sink && a->sink->n ? (const float *)a->sink->dev : NULL,
             a->n_heads, a->n_kv, a->head_dim, a->v_head_dim, a->window, kv->len, a->scale};
  k_attention<<<dim3(a->n_heads, a->T), ATT_THREADS, 0, c->st>>>(p);
  MIMO_CUDA_LAUNCHED(c);
}
