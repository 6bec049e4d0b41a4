/* CPU ops of the vision tower (spec §4.4): bias add, exact GELU, LayerNorm, 2-D RoPE, bidirectional windowed
 * attention with the tower's sink, row gather. fp32 throughout, like the reference. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/cpu.h"

static void cpu_bias_add(mimo_backend *be, float *y, const mimo_vec *b, int T, int n) {
  (void)be;
  for (int t = 0; t < T; t++)
    for (int i = 0; i < n; i++)
      y[(size_t)t * n + i] += mimo_vec_get(b, i);
}

static void cpu_gelu(mimo_backend *be, float *x, long n) {
  (void)be;
  for (long i = 0; i < n; i++)
    x[i] = 0.5f * x[i] * (1.0f + erff(x[i] * (float)M_SQRT1_2));
}

static void ln_rows(void *ctx, long b, long e) {
  cpu_norm_job *j = ctx;
  for (long t = b; t < e; t++) {
    const float *x = j->x + t * j->n;
    float *o = j->out + t * j->n;
    double s = 0, ss = 0;
    for (int i = 0; i < j->n; i++)
      s += x[i];
    const double mean = s / j->n;
    for (int i = 0; i < j->n; i++)
      ss += (x[i] - mean) * (x[i] - mean);
    const float r = (float)(1.0 / sqrt(ss / j->n + j->eps)), m = (float)mean;
    for (int i = 0; i < j->n; i++)
      o[i] = mimo_vec_get(j->w, i) * ((x[i] - m) * r);
  }
}

static void cpu_layernorm(mimo_backend *be, float *out, const float *x, const mimo_vec *w, int T, int n, float eps) {
  cpu_norm_job j = {out, x, w, n, eps};
  mimo_parallel_for(cpu_pool(be), T, 8, ln_rows, &j);
}

static void cpu_rope_2d(mimo_backend *be, float *x, int T, int n_heads, int head_dim, int stride, const int *hpos,
                        const int *wpos, double theta) {
  (void)be;
  const int half = head_dim / 2, quarter = head_dim / 4;
  float cs[2048], sn[2048];
  MIMO_ASSERT(half <= 2048);
  for (int t = 0; t < T; t++) {
    /* fp32 inverse frequencies over half the head (the reference's rotary table of width head_dim / 2) */
    for (int d = 0; d < half; d++) {
      const int i = d < quarter ? d : d - quarter;
      const float ang = (float)(d < quarter ? hpos[t] : wpos[t]) * mimo_rope_inv_freq(theta, i, half);
      cs[d] = cosf(ang);
      sn[d] = sinf(ang);
    }
    for (int h = 0; h < n_heads; h++) {
      float *v = x + (size_t)t * stride + (size_t)h * head_dim;
      for (int d = 0; d < half; d++) {
        const float a = v[d], b = v[d + half];
        v[d] = a * cs[d] - b * sn[d];
        v[d + half] = b * cs[d] + a * sn[d];
      }
    }
  }
}

typedef struct {
  const mimo_vit_attn_args *a;
  const int *seq_of; /* token -> its sequence */
} vit_job;

static void vit_tasks(void *ctx, long b, long e) {
  const vit_job *j = ctx;
  const mimo_vit_attn_args *a = j->a;
  const int D = a->head_dim, group = a->n_heads / a->n_kv;
  float acc[1024];
  MIMO_ASSERT(D <= 1024);
  for (long task = b; task < e; task++) {
    const int i = (int)(task / a->n_heads), h = (int)(task % a->n_heads), g = h / group;
    const int s0 = a->seq_start[j->seq_of[i]], s1 = a->seq_start[j->seq_of[i] + 1];
    int lo = s0, hi = s1 - 1;
    if (a->window > 0) {
      lo = i - a->window > s0 ? i - a->window : s0;
      hi = i + a->window < s1 - 1 ? i + a->window : s1 - 1;
    }
    const float *q = a->q + ((size_t)i * a->n_heads + h) * D;
    const float sink = a->sink && a->sink->n ? mimo_vec_get(a->sink, h) : 0;
    float m = -INFINITY, l = 0;
    memset(acc, 0, (size_t)D * sizeof(float));
    for (int k = lo; k <= hi; k++) {
      const float *kr = a->k + ((size_t)k * a->n_kv + g) * D;
      float s = 0;
      for (int d = 0; d < D; d++)
        s += q[d] * kr[d];
      s *= a->scale;
      if (k == s0 && a->sink && a->sink->n && a->sink_key0)
        s += sink;
      cpu_softmax_add(s, a->v + ((size_t)k * a->n_kv + g) * D, D, &m, &l, acc);
    }
    if (a->sink && a->sink->n && !a->sink_key0)
      cpu_softmax_sink(sink, D, &m, &l, acc);
    float *o = a->out + ((size_t)i * a->n_heads + h) * D;
    for (int d = 0; d < D; d++)
      o[d] = acc[d] / l;
  }
}

static void cpu_vit_attention(mimo_backend *be, const mimo_vit_attn_args *a) {
  int *seq_of = malloc((size_t)(a->T ? a->T : 1) * sizeof *seq_of);
  MIMO_ASSERT(seq_of);
  for (int s = 0; s < a->n_seq; s++)
    for (int t = a->seq_start[s]; t < a->seq_start[s + 1]; t++)
      seq_of[t] = s;
  vit_job j = {a, seq_of};
  mimo_parallel_for(cpu_pool(be), (long)a->T * a->n_heads, 4, vit_tasks, &j);
  free(seq_of);
}

static void cpu_gather_rows(mimo_backend *be, float *dst, const float *src, const int *idx, int rows, int cols) {
  (void)be;
  for (int r = 0; r < rows; r++)
    memcpy(dst + (size_t)r * cols, src + (size_t)idx[r] * cols, (size_t)cols * sizeof(float));
}

void cpu_vision_ops(mimo_backend *be) {
  be->bias_add = cpu_bias_add;
  be->gelu = cpu_gelu;
  be->layernorm = cpu_layernorm;
  be->rope_2d = cpu_rope_2d;
  be->vit_attention = cpu_vit_attention;
  be->gather_rows = cpu_gather_rows;
}
