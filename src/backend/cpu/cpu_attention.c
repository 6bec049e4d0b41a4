/* Causal / sliding-window attention with optional per-head sink, over the
 * sequence's cached keys plus this step's new ones; then appends the new keys.
 * Online softmax (one pass over keys), fp32, so memory does not grow with context. */
#include <math.h>
#include <string.h>

#include "backend/cpu/cpu.h"

typedef struct {
  mimo_attn_args *a;
} attn_job;

static inline const float *key_at(const mimo_attn_args *a, int j, int which /* 0 k, 1 v */) {
  const mimo_kv_view *kv = a->kv;
  int dim = which ? a->v_head_dim : a->head_dim;
  if (j >= kv->len) { /* this step's tokens */
    const float *base = which ? a->v : a->k;
    return base + (size_t)(j - kv->len) * a->n_kv * dim;
  }
  int slot = kv->ring ? j % kv->cap : j;
  return (which ? kv->v : kv->k) + (size_t)slot * a->n_kv * dim;
}

static void attn_tasks(void *ctx, long b, long e) {
  mimo_attn_args *a = ((attn_job *)ctx)->a;
  int group = a->n_heads / a->n_kv, D = a->head_dim, V = a->v_head_dim;
  float acc[1024];
  MIMO_ASSERT(V <= 1024);
  for (long task = b; task < e; task++) {
    int t = (int)(task / a->n_heads), h = (int)(task % a->n_heads), g = h / group;
    int p = a->kv->len + t;
    int lo = a->window > 0 && p - a->window + 1 > 0 ? p - a->window + 1 : 0;
    const float *q = a->q + ((size_t)t * a->n_heads + h) * D;
    float m = -INFINITY, l = 0;
    memset(acc, 0, (size_t)V * sizeof(float));
    for (int j = lo; j <= p; j++) {
      const float *k = key_at(a, j, 0) + (size_t)g * D;
      float s = 0;
      for (int d = 0; d < D; d++)
        s += q[d] * k[d];
      s *= a->scale;
      const float *v = key_at(a, j, 1) + (size_t)g * V;
      if (s > m) { /* rescale what we have to the new maximum */
        float c = expf(m - s);
        l *= c;
        for (int d = 0; d < V; d++)
          acc[d] *= c;
        m = s;
      }
      float w = expf(s - m);
      l += w;
      for (int d = 0; d < V; d++)
        acc[d] += w * v[d];
    }
    if (a->sink && a->sink->n) { /* extra denominator column, carries no value */
      float sg = mimo_vec_get(a->sink, h);
      float m2 = sg > m ? sg : m, c = expf(m - m2);
      l = l * c + expf(sg - m2);
      for (int d = 0; d < V; d++)
        acc[d] *= c;
    }
    float *o = a->out + ((size_t)t * a->n_heads + h) * V;
    for (int d = 0; d < V; d++)
      o[d] = acc[d] / l;
  }
}

void cpu_attention(mimo_backend *be, mimo_attn_args *a) {
  attn_job j = {a};
  mimo_parallel_for(cpu_pool(be), (long)a->T * a->n_heads, 4, attn_tasks, &j);
  /* Append after every query of the step has read the cache. */
  mimo_kv_view *kv = a->kv;
  size_t kd = (size_t)a->n_kv * a->head_dim, vd = (size_t)a->n_kv * a->v_head_dim;
  int first = 0;
  if (kv->ring && a->T > kv->cap)
    first = a->T - kv->cap; /* older ones would be overwritten anyway */
  for (int t = first; t < a->T; t++) {
    int p = kv->len + t, slot = kv->ring ? p % kv->cap : p;
    MIMO_ASSERT(slot < kv->cap);
    memcpy(kv->k + slot * kd, a->k + t * kd, kd * sizeof(float));
    memcpy(kv->v + slot * vd, a->v + t * vd, vd * sizeof(float));
  }
  kv->len += a->T;
}
