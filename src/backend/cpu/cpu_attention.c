/* Causal / sliding-window attention with optional per-head sink, over the
 * sequence's cached keys plus this step's new ones; then appends the new keys.
 * Online softmax (one pass over keys), fp32, so memory does not grow with context. A bf16 cache is read widened
 * (exact), its keys and values rounded to bf16 once, when appended. */
#include <math.h>
#include <string.h>

#include "backend/cpu/cpu.h"
#include "core/num.h"

typedef struct {
  mimo_attn_args *a;
} attn_job;

/* Key (which = 0) or value j of kv head g: a pointer into the cache or the step's buffers, or, with a bf16 cache,
 * into tmp, converted (this step's own rounded to bf16 first, as a later step reads them from the cache). */
static inline const float *key_at(const mimo_attn_args *a, int j, int which, int g, float *tmp) {
  const mimo_kv_view *kv = a->kv;
  const int dim = which ? a->v_head_dim : a->head_dim;
  const size_t row = (size_t)a->n_kv * dim;
  if (j >= kv->len) { /* this step's tokens */
    const float *x = (which ? a->v : a->k) + (size_t)(j - kv->len) * row + (size_t)g * dim;
    if (!kv->bf16)
      return x;
    for (int d = 0; d < dim; d++)
      tmp[d] = mimo_bf16_to_f32(mimo_f32_to_bf16(x[d]));
    return tmp;
  }
  if (!kv->bf16)
    return (const float *)mimo_kv_row(kv, j, which, row) + (size_t)g * dim;
  const uint16_t *h = (const uint16_t *)mimo_kv_row(kv, j, which, row) + (size_t)g * dim;
  for (int d = 0; d < dim; d++)
    tmp[d] = mimo_bf16_to_f32(h[d]);
  return tmp;
}

static void attn_tasks(void *ctx, long b, long e) {
  mimo_attn_args *a = ((attn_job *)ctx)->a;
  int group = a->n_heads / a->n_kv, D = a->head_dim, V = a->v_head_dim;
  float acc[1024], kt[1024], vt[1024];
  MIMO_ASSERT(V <= 1024 && D <= 1024);
  for (long task = b; task < e; task++) {
    int t = (int)(task / a->n_heads), h = (int)(task % a->n_heads), g = h / group;
    int p = a->kv->len + t;
    int lo = a->window > 0 && p - a->window + 1 > 0 ? p - a->window + 1 : 0;
    const float *q = a->q + ((size_t)t * a->n_heads + h) * D;
    float m = -INFINITY, l = 0;
    memset(acc, 0, (size_t)V * sizeof(float));
    for (int j = lo; j <= p; j++) {
      const float *k = key_at(a, j, 0, g, kt);
      float s = 0;
      for (int d = 0; d < D; d++)
        s += q[d] * k[d];
      s *= a->scale;
      cpu_softmax_add(s, key_at(a, j, 1, g, vt), V, &m, &l, acc);
    }
    if (a->sink && a->sink->n)
      cpu_softmax_sink(mimo_vec_get(a->sink, h), V, &m, &l, acc);
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
    int p = kv->len + t;
    MIMO_ASSERT(kv->ring || p < kv->cap);
    if (!kv->bf16) {
      memcpy(mimo_kv_row(kv, p, 0, kd), a->k + t * kd, kd * sizeof(float));
      memcpy(mimo_kv_row(kv, p, 1, vd), a->v + t * vd, vd * sizeof(float));
      continue;
    }
    uint16_t *hk = mimo_kv_row(kv, p, 0, kd), *hv = mimo_kv_row(kv, p, 1, vd);
    for (size_t i = 0; i < kd; i++)
      hk[i] = mimo_f32_to_bf16(a->k[t * kd + i]);
    for (size_t i = 0; i < vd; i++)
      hv[i] = mimo_f32_to_bf16(a->v[t * vd + i]);
  }
  kv->len += a->T;
}
