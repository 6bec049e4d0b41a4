/* CPU backend internals shared by its files. */
#ifndef MIMO_BACKEND_CPU_CPU_H
#define MIMO_BACKEND_CPU_CPU_H
#include "backend/backend.h"
#include "core/threads.h"

#include <math.h>

typedef struct cpu_ctx {
  mimo_pool *pool;
} cpu_ctx;

static inline mimo_pool *cpu_pool(mimo_backend *be) { return ((cpu_ctx *)be->ctx)->pool; }

void cpu_linear(mimo_backend *be, float *y, const float *x, int T, const mimo_linear *W);
void cpu_attention(mimo_backend *be, mimo_attn_args *a);
void cpu_moe(mimo_backend *be, mimo_moe_args *a);
/* Sets the vision tower ops (cpu_vision.c). */
void cpu_vision_ops(mimo_backend *be);
/* One query's online softmax (one pass over keys, fp32): running maximum m, denominator l, values acc[V]. */
static inline void cpu_softmax_add(float s, const float *v, int V, float *m, float *l, float *acc) {
  if (s > *m) { /* rescale what we have to the new maximum */
    const float c = expf(*m - s);
    *l *= c;
    for (int d = 0; d < V; d++)
      acc[d] *= c;
    *m = s;
  }
  const float w = expf(s - *m);
  *l += w;
  for (int d = 0; d < V; d++)
    acc[d] += w * v[d];
}
/* A sink: an extra denominator column that carries no value. */
static inline void cpu_softmax_sink(float sink, int V, float *m, float *l, float *acc) {
  const float m2 = sink > *m ? sink : *m, c = expf(*m - m2);
  *l = *l * c + expf(sink - m2);
  for (int d = 0; d < V; d++)
    acc[d] *= c;
}

/* RMSNorm / LayerNorm rows on the pool. */
typedef struct cpu_norm_job {
  float *out;
  const float *x;
  const mimo_vec *w;
  int n;
  float eps;
} cpu_norm_job;

/* Row r of W (columns [k0, k0+n)) as float32, whatever W's storage format. */
void cpu_linear_row(const mimo_linear *W, int r, int k0, int n, float *dst);
#endif
