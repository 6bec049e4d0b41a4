/* CUDA ops of the vision tower (spec §4.4; model/vision.c): bias add, exact GELU, LayerNorm, 2-D RoPE, row gather,
 * and the tower's bidirectional attention (full, or a band |i - j| <= window, with the sink on key 0 or in the
 * denominator). The projections are the backend's linear (cuBLAS at these sizes). fp32 like the CPU ops. */
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cuda/cuda_internal.h"

static unsigned vis_grid(long n) {
  const long b = (n + 255) / 256;
  return (unsigned)(b < 4096 ? (b > 0 ? b : 1) : 4096);
}

static const float *vec_dev(cu_ctx *c, const mimo_vec *v, const char *what) {
  if (!v->dev)
    cu_fail(c, what, "vector not uploaded", __FILE__, __LINE__);
  return (const float *)v->dev;
}

__global__ void k_bias_add(float *y, const float *b, long total, int n) {
  pdl_start();
  for (long i = blockIdx.x * (long)blockDim.x + threadIdx.x; i < total; i += (long)gridDim.x * blockDim.x)
    y[i] += __ldg(b + i % n);
}

static void cu_bias_add(mimo_backend *be, float *y, const mimo_vec *b, int T, int n) {
  cu_ctx *c = cu(be);
  const float *d = vec_dev(c, b, "bias_add");
  if (d)
    cu_launch(c, k_bias_add, vis_grid((long)T * n), 256, 0, y, d, (long)T * n, n);
}

__global__ void k_gelu(float *x, long n) {
  pdl_start();
  for (long i = blockIdx.x * (long)blockDim.x + threadIdx.x; i < n; i += (long)gridDim.x * blockDim.x)
    x[i] = 0.5f * x[i] * (1.0f + erff(x[i] * 0.70710678118654752f));
}

static void cu_gelu(mimo_backend *be, float *x, long n) { cu_launch(cu(be), k_gelu, vis_grid(n), 256, 0, x, n); }

/* Block-wide sum in a fixed order (so a row's result does not depend on timing). */
__device__ float block_sum(float v, float *red) {
  v = warp_sum(v);
  __syncthreads(); /* red is reused by consecutive calls */
  if ((threadIdx.x & 31) == 0)
    red[threadIdx.x >> 5] = v;
  __syncthreads();
  float s = 0.f;
  for (int w = 0; w < (int)(blockDim.x >> 5); w++)
    s += red[w];
  return s;
}

/* One block per row: mean, then the biased variance of the centred values (two passes over the row in global
 * memory; the tower's rows are 1280 floats). */
__global__ void __launch_bounds__(256) k_layernorm(float *out, const float *x, const float *w, int n, float eps) {
  __shared__ float red[8];
  pdl_start();
  const float *xr = x + (size_t)blockIdx.x * n;
  float s = 0.f;
  for (int i = threadIdx.x; i < n; i += blockDim.x)
    s += xr[i];
  const float mean = block_sum(s, red) / n;
  float ss = 0.f;
  for (int i = threadIdx.x; i < n; i += blockDim.x) {
    const float d = xr[i] - mean;
    ss += d * d;
  }
  const float r = (float)(1.0 / sqrt((double)block_sum(ss, red) / n + eps));
  for (int i = threadIdx.x; i < n; i += blockDim.x)
    out[(size_t)blockIdx.x * n + i] = __ldg(w + i) * ((xr[i] - mean) * r);
}

static void cu_layernorm(mimo_backend *be, float *out, const float *x, const mimo_vec *w, int T, int n, float eps) {
  cu_ctx *c = cu(be);
  const float *d = vec_dev(c, w, "layernorm");
  if (d && T > 0)
    cu_launch(c, k_layernorm, dim3(T), 256, 0, out, x, d, n, eps);
}

/* A thread per rotated pair (d, d + half) of a head: pairs d < quarter turn with the row, the others with the
 * column, by inv[d mod quarter] (the host's fp32 table, as the CPU op). */
__global__ void k_rope_2d(float *x, int n_heads, int hd, int stride, const int *pos, int T, const float *inv) {
  pdl_start();
  const int t = blockIdx.y, half = hd / 2, quarter = hd / 4;
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n_heads * half)
    return;
  const int h = i / half, d = i % half;
  const int p = d < quarter ? pos[t] : pos[T + t];
  float sn, cs;
  sincosf((float)p * __ldg(inv + (d < quarter ? d : d - quarter)), &sn, &cs);
  float *v = x + (size_t)t * stride + (size_t)h * hd;
  const float a = v[d], b = v[d + half];
  v[d] = a * cs - b * sn;
  v[d + half] = b * cs + a * sn;
}

static void cu_rope_2d(mimo_backend *be, float *x, int T, int n_heads, int head_dim, int stride, const int *hpos,
                       const int *wpos, double theta) {
  cu_ctx *c = cu(be);
  if (T <= 0)
    return;
  int *both = (int *)malloc((size_t)2 * T * sizeof(int));
  if (!both) {
    cu_fail(c, "rope_2d", "out of host memory", __FILE__, __LINE__);
    return;
  }
  memcpy(both, hpos, (size_t)T * sizeof(int));
  memcpy(both + T, wpos, (size_t)T * sizeof(int));
  const int *d = cu_upload_ints(c, &c->vis_ints, both, 2 * T);
  free(both);
  const float *inv = cu_rope_inv(c, theta, head_dim / 2); /* head_dim/4 frequencies over half the head */
  if (d && inv)
    cu_launch(c, k_rope_2d, dim3(cdiv((long)n_heads * (head_dim / 2), 128), T), 128, 0, x, n_heads, head_dim, stride,
              d, T, inv);
}

__global__ void k_gather_rows(float *dst, const float *src, const int *idx, int cols) {
  pdl_start();
  const size_t r = blockIdx.y;
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < cols; i += gridDim.x * blockDim.x)
    dst[r * cols + i] = src[(size_t)idx[r] * cols + i];
}

static void cu_gather_rows(mimo_backend *be, float *dst, const float *src, const int *idx, int rows, int cols) {
  cu_ctx *c = cu(be);
  const int *d = rows > 0 ? cu_upload_ints(c, &c->vis_ints, idx, rows) : NULL;
  if (d)
    cu_launch(c, k_gather_rows, dim3(cdiv(cols, 256) < 8 ? cdiv(cols, 256) : 8, rows), 256, 0, dst, src, d, cols);
}

/* A thread per (query, head), its accumulator in registers: the 32 queries of a warp are consecutive tokens of one
 * head, so they walk the same keys (the union of their ranges, each thread masking its own) and every key and value
 * row they read is one broadcast load. Online softmax in fp32, as the CPU op. */
template <int D>
__global__ void __launch_bounds__(128) k_vit_attention(float *out, const float *q, const float *k, const float *v,
                                                      int T, int n_heads, int n_kv, const int *seq_start, int n_seq,
                                                      int window, float scale, const float *sink, int sink_key0) {
  pdl_start();
  const int h = blockIdx.y, g = h / (n_heads / n_kv);
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  const bool live = i < T;
  int s0 = 0, s1 = 0;
  if (live) { /* this token's sequence */
    int s = 0;
    while (s + 1 < n_seq && seq_start[s + 1] <= i)
      s++;
    s0 = seq_start[s];
    s1 = seq_start[s + 1];
  }
  int lo = s0, hi = s1 - 1;
  if (live && window > 0) {
    lo = max(s0, i - window);
    hi = min(s1 - 1, i + window);
  }
  /* the warp's range: every lane walks it, each updating only inside its own */
  int wlo = live ? lo : INT_MAX, whi = live ? hi : -1;
  for (int o = 16; o > 0; o >>= 1) {
    wlo = min(wlo, __shfl_xor_sync(0xffffffffu, wlo, o));
    whi = max(whi, __shfl_xor_sync(0xffffffffu, whi, o));
  }
  float qr[D], acc[D];
#pragma unroll
  for (int d = 0; d < D; d++) {
    qr[d] = live ? q[((size_t)i * n_heads + h) * D + d] : 0.f;
    acc[d] = 0.f;
  }
  const float sk = sink ? __ldg(sink + h) : 0.f;
  float m = -INFINITY, l = 0.f;
  for (int j = wlo; j <= whi; j++) {
    const float4 *kr = (const float4 *)(k + ((size_t)j * n_kv + g) * D);
    float s = 0.f;
#pragma unroll
    for (int d = 0; d < D / 4; d++) {
      const float4 kv4 = __ldg(kr + d);
      s += qr[4 * d] * kv4.x + qr[4 * d + 1] * kv4.y + qr[4 * d + 2] * kv4.z + qr[4 * d + 3] * kv4.w;
    }
    if (!(live && j >= lo && j <= hi))
      continue;
    s *= scale;
    if (sink && sink_key0 && j == s0)
      s += sk;
    const float4 *vr = (const float4 *)(v + ((size_t)j * n_kv + g) * D);
    if (s > m) {
      const float cf = expf(m - s);
      l *= cf;
#pragma unroll
      for (int d = 0; d < D; d++)
        acc[d] *= cf;
      m = s;
    }
    const float w = expf(s - m);
    l += w;
#pragma unroll
    for (int d = 0; d < D / 4; d++) {
      const float4 v4 = __ldg(vr + d);
      acc[4 * d] += w * v4.x;
      acc[4 * d + 1] += w * v4.y;
      acc[4 * d + 2] += w * v4.z;
      acc[4 * d + 3] += w * v4.w;
    }
  }
  if (!live)
    return;
  if (sink && !sink_key0) { /* an extra denominator column that carries no value */
    const float m2 = sk > m ? sk : m, cf = expf(m - m2);
    l = l * cf + expf(sk - m2);
#pragma unroll
    for (int d = 0; d < D; d++)
      acc[d] *= cf;
  }
  float *o = out + ((size_t)i * n_heads + h) * D;
#pragma unroll
  for (int d = 0; d < D; d++)
    o[d] = acc[d] / l;
}

static void cu_vit_attention(mimo_backend *be, const mimo_vit_attn_args *a) {
  cu_ctx *c = cu(be);
  if (a->T <= 0)
    return;
  const int *starts = cu_upload_ints(c, &c->vis_seq, a->seq_start, a->n_seq + 1);
  const float *sink = a->sink && a->sink->n ? vec_dev(c, a->sink, "vit_attention") : NULL;
  if (!starts || (a->sink && a->sink->n && !sink))
    return;
  const dim3 grid(cdiv(a->T, 128), a->n_heads);
#define VIT_ATT(D)                                                                                                 \
  cu_launch(c, k_vit_attention<D>, grid, 128, 0, a->out, a->q, a->k, a->v, a->T, a->n_heads, a->n_kv, starts,     \
            a->n_seq, a->window, a->scale, sink, (int)a->sink_key0)
  switch (a->head_dim) {
  case 16: VIT_ATT(16); break;
  case 32: VIT_ATT(32); break;
  case 64: VIT_ATT(64); break;
  case 128: VIT_ATT(128); break;
  default: cu_fail(c, "vit_attention", "head dim not 16, 32, 64 or 128", __FILE__, __LINE__);
  }
#undef VIT_ATT
}

void cu_vision_install(mimo_backend *be) {
  be->bias_add = cu_bias_add;
  be->gelu = cu_gelu;
  be->layernorm = cu_layernorm;
  be->rope_2d = cu_rope_2d;
  be->vit_attention = cu_vit_attention;
  be->gather_rows = cu_gather_rows;
}
