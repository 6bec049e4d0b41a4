/* CPU backend: construction and the small elementwise ops. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/cpu.h"
#include "core/num.h"

float mimo_vec_get(const mimo_vec *v, int i) {
  switch (v->dt) {
  case MIMO_DT_F32: return ((const float *)v->p)[i];
  case MIMO_DT_BF16: return mimo_bf16_to_f32(((const uint16_t *)v->p)[i]);
  case MIMO_DT_F16: return mimo_f16_to_f32(((const uint16_t *)v->p)[i]);
  default: MIMO_ASSERT(!"vector dtype");
  }
  return 0;
}

mimo_status mimo_backend_upload_linear(mimo_backend *be, mimo_linear *W) {
  return be && be->upload_linear && W->out > 0 ? be->upload_linear(be, W) : MIMO_OK;
}

mimo_status mimo_backend_upload_linear_cold(mimo_backend *be, mimo_linear *W) {
  if (be && be->upload_linear_cold && W->out > 0)
    return be->upload_linear_cold(be, W);
  return mimo_backend_upload_linear(be, W);
}

mimo_status mimo_backend_upload_vec(mimo_backend *be, mimo_vec *v) {
  return be && be->upload_vec && v->n > 0 ? be->upload_vec(be, v) : MIMO_OK;
}

mimo_status mimo_backend_to(mimo_backend *be, float *dst, const float *host, size_t n) {
  if (be->upload)
    return be->upload(be, dst, host, n);
  memcpy(dst, host, n * sizeof *dst);
  return MIMO_OK;
}

mimo_status mimo_backend_from(mimo_backend *be, float *host, const float *src, size_t n) {
  if (be->download)
    return be->download(be, host, src, n);
  memcpy(host, src, n * sizeof *host);
  return MIMO_OK;
}

static float *cpu_alloc(mimo_backend *be, size_t n) {
  (void)be;
  return malloc((n ? n : 1) * sizeof(float));
}

static void cpu_release(mimo_backend *be, float *p) {
  (void)be;
  free(p);
}

static void cpu_embed(mimo_backend *be, float *out, const mimo_linear *table, const int *ids, int T) {
  (void)be;
  for (int t = 0; t < T; t++)
    cpu_linear_row(table, ids[t], 0, table->in, out + (size_t)t * table->in);
}

/* RMSNorm in fp32 as the reference: w ⊙ x / sqrt(mean(x²) + eps). */
static void norm_rows(void *ctx, long b, long e) {
  cpu_norm_job *j = ctx;
  for (long t = b; t < e; t++) {
    const float *x = j->x + t * j->n;
    float *o = j->out + t * j->n;
    double ss = 0;
    for (int i = 0; i < j->n; i++)
      ss += (double)x[i] * x[i];
    float r = (float)(1.0 / sqrt(ss / j->n + j->eps));
    for (int i = 0; i < j->n; i++)
      o[i] = mimo_vec_get(j->w, i) * (x[i] * r);
  }
}

static void cpu_rmsnorm(mimo_backend *be, float *out, const float *x, const mimo_vec *w, int T, int n, float eps) {
  cpu_norm_job j = {out, x, w, n, eps};
  mimo_parallel_for(cpu_pool(be), T, 8, norm_rows, &j);
}

static void cpu_add(mimo_backend *be, float *y, const float *x, long n);

static void cpu_add_rmsnorm(mimo_backend *be, float *out, float *h, const float *x, const mimo_vec *w, int T, int n,
                            float eps) {
  cpu_add(be, h, x, (long)T * n);
  cpu_rmsnorm(be, out, h, w, T, n, eps);
}

static void cpu_rope(mimo_backend *be, float *x, int T, int n_heads, int head_dim, int stride, int rot_dim,
                     const int *pos, double theta) {
  (void)be;
  (void)head_dim;
  int half = rot_dim / 2;
  float cs[2048], sn[2048];
  MIMO_ASSERT(half <= 2048);
  for (int t = 0; t < T; t++) {
    /* The reference computes inv_freq and p·inv_freq in fp32; so do we. */
    for (int d = 0; d < half; d++) {
      float ang = (float)pos[t] * mimo_rope_inv_freq(theta, d, rot_dim);
      cs[d] = cosf(ang);
      sn[d] = sinf(ang);
    }
    for (int h = 0; h < n_heads; h++) {
      float *v = x + (size_t)t * stride + (size_t)h * head_dim;
      for (int d = 0; d < half; d++) {
        float a = v[d], b2 = v[d + half];
        v[d] = a * cs[d] - b2 * sn[d];
        v[d + half] = b2 * cs[d] + a * sn[d];
      }
    }
  }
}

static void cpu_scale(mimo_backend *be, float *x, long n, float s) {
  (void)be;
  for (long i = 0; i < n; i++)
    x[i] *= s;
}

static void cpu_add(mimo_backend *be, float *y, const float *x, long n) {
  (void)be;
  for (long i = 0; i < n; i++)
    y[i] += x[i];
}

static void cpu_swiglu(mimo_backend *be, float *out, const float *gate, const float *up, long n) {
  (void)be;
  for (long i = 0; i < n; i++) {
    float g = gate[i];
    out[i] = g / (1.0f + expf(-g)) * up[i];
  }
}

static void cpu_copy2d(mimo_backend *be, float *dst, long dst_ld, const float *src, long src_ld, int rows, int cols) {
  (void)be;
  for (int r = 0; r < rows; r++)
    memcpy(dst + r * dst_ld, src + r * src_ld, (size_t)cols * sizeof(float));
}

static void cpu_zero(mimo_backend *be, float *x, long n) {
  (void)be;
  memset(x, 0, (size_t)n * sizeof *x);
}

static void cpu_qkv_split(mimo_backend *be, float *q, float *k, float *v, const float *qkv, int T, int chunks, int qc,
                          int kc, int vc, float v_scale, const mimo_rope_args *rope) {
  const long row = (long)chunks * (qc + kc + vc);
  for (int t = 0; t < T; t++)
    for (int c = 0; c < chunks; c++) {
      const float *b = qkv + t * row + (long)c * (qc + kc + vc);
      memcpy(q + ((long)t * chunks + c) * qc, b, (size_t)qc * sizeof(float));
      memcpy(k + ((long)t * chunks + c) * kc, b + qc, (size_t)kc * sizeof(float));
      float *vo = v + ((long)t * chunks + c) * vc;
      for (int i = 0; i < vc; i++)
        vo[i] = v_scale == 1.0f ? b[qc + kc + i] : b[qc + kc + i] * v_scale;
    }
  if (rope) {
    cpu_rope(be, q, T, rope->n_q_heads, rope->head_dim, chunks * qc, rope->rot_dim, rope->pos, rope->theta);
    cpu_rope(be, k, T, rope->n_kv_heads, rope->head_dim, chunks * kc, rope->rot_dim, rope->pos, rope->theta);
  }
}

static void cpu_free(mimo_backend *be) {
  if (!be)
    return;
  cpu_ctx *c = be->ctx;
  if (c)
    mimo_pool_free(c->pool);
  free(c);
  free(be);
}

mimo_status mimo_backend_cpu_init(mimo_backend **out, int n_threads) {
  mimo_backend *be = calloc(1, sizeof *be);
  cpu_ctx *c = calloc(1, sizeof *c);
  if (!be || !c) {
    free(be);
    free(c);
    return mimo_errf(MIMO_E_NOMEM, "cpu backend");
  }
  mimo_status st = mimo_pool_init(&c->pool, n_threads);
  if (st != MIMO_OK) {
    free(be);
    free(c);
    return st;
  }
  be->name = "cpu";
  be->ctx = c;
  be->free = cpu_free;
  be->alloc = cpu_alloc;
  be->release = cpu_release;
  be->embed = cpu_embed;
  be->rmsnorm = cpu_rmsnorm;
  be->linear = cpu_linear;
  be->rope = cpu_rope;
  be->scale = cpu_scale;
  be->copy2d = cpu_copy2d;
  be->zero = cpu_zero;
  be->qkv_split = cpu_qkv_split;
  be->add_rmsnorm = cpu_add_rmsnorm;
  be->add = cpu_add;
  be->swiglu = cpu_swiglu;
  be->attention = cpu_attention;
  be->moe = cpu_moe;
  cpu_vision_ops(be);
  *out = be;
  return MIMO_OK;
}
