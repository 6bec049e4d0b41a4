/* Attention over the engine's KV layout (kv_cache.c): past keys in the cache
 * (full layers: slot = position; sliding layers: a ring, slot = position % cap),
 * this step's keys in the step buffers; the new keys are appended afterwards,
 * so any chunking of a prompt gives the same result.
 *
 * One block per (query head, token), flash-style: keys in tiles of 32, scores by
 * one warp per key (qk 192 natively), online softmax (running max m, sum l, acc),
 * each thread owning output dims tid and tid+128 (v 128 natively, no padding);
 * GQA by head → kv head h / (n_heads / n_kv); causal or sliding window
 * (i − window < j ≤ i); the sink is one more denominator term, folded in at the end. */
#include <math.h>

#include "backend/cuda/cuda_internal.h"

enum { ATT_THREADS = 128, ATT_TILE = 32, ATT_MAXD = 256, ATT_MAXV = 256 };

typedef struct {
  const float *q, *k, *v, *kc, *vc;
  float *out;
  const float *sink;
  int n_heads, n_kv, D, V, window, len, cap, ring;
  float scale;
} att_p;

__device__ __forceinline__ const float *att_key(const att_p &a, int j, int g, int which) {
  int dim = which ? a.V : a.D;
  if (j >= a.len)
    return (which ? a.v : a.k) + ((size_t)(j - a.len) * a.n_kv + g) * dim;
  int slot = a.ring ? j % a.cap : j;
  return (which ? a.vc : a.kc) + ((size_t)slot * a.n_kv + g) * dim;
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
      const float *kp = att_key(a, j0 + kk, g, 0);
      float s = 0.f;
      for (int d = lane; d < a.D; d += 32)
        s += qs[d] * kp[d];
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
      const float *vp = att_key(a, j0 + kk, g, 1);
      l += pj;
      if (d0 < a.V)
        acc0 += pj * vp[d0];
      if (d1 < a.V)
        acc1 += pj * vp[d1];
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

/* Appends tokens [first, T) of the step to the cache. */
__global__ void k_kv_append(float *kc, float *vc, const float *k, const float *v, int first, int len, int cap, int ring,
                            int kd, int vd) {
  const int t = first + blockIdx.y, p = len + t, slot = ring ? p % cap : p;
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < kd + vd; i += gridDim.x * blockDim.x) {
    if (i < kd)
      kc[(size_t)slot * kd + i] = k[(size_t)t * kd + i];
    else
      vc[(size_t)slot * vd + i - kd] = v[(size_t)t * vd + i - kd];
  }
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
  att_p p = {a->q, a->k, a->v, kv->k, kv->v, a->out, a->sink && a->sink->n ? (const float *)a->sink->dev : NULL,
             a->n_heads, a->n_kv, a->head_dim, a->v_head_dim, a->window, kv->len, kv->cap, kv->ring, a->scale};
  k_attention<<<dim3(a->n_heads, a->T), ATT_THREADS, 0, c->st>>>(p);
  MIMO_CUDA_LAUNCHED(c);
  int first = kv->ring && a->T > kv->cap ? a->T - kv->cap : 0;
  int kd = a->n_kv * a->head_dim, vd = a->n_kv * a->v_head_dim;
  if (!kv->ring && kv->len + a->T > kv->cap) {
    cu_fail(c, "attention", "KV cache too small", __FILE__, __LINE__);
    return;
  }
  k_kv_append<<<dim3(cdiv(kd + vd, 256), a->T - first), 256, 0, c->st>>>(kv->k, kv->v, a->k, a->v, first, kv->len,
                                                                          kv->cap, kv->ring, kd, vd);
  MIMO_CUDA_LAUNCHED(c);
  kv->len += a->T;
}
