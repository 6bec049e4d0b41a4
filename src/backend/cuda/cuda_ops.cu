/* CUDA backend's small ops: embed, the step's positions, RMSNorm (with the residual add), RoPE, the fused qkv's
 * split (with RoPE), scale, add, SwiGLU, copy2d; and the pinned staging of the small integer inputs they read. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cuda/cuda_internal.h"

__global__ void k_embed(float *out, const void *table, int fmt, const int *ids, int n) {
  pdl_start();
  const int t = blockIdx.y, i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n)
    return;
  const size_t row = (size_t)ids[t] * n;
  float v;
  if (fmt == CU_BF16)
    v = __uint_as_float((uint32_t)((const uint16_t *)table)[row + i] << 16);
  else if (fmt == CU_F16)
    v = __half2float(((const __half *)table)[row + i]);
  else
    v = ((const float *)table)[row + i];
  out[(size_t)t * n + i] = v;
}

/* n ints from the host to u->dev (stream-ordered, asynchronous); NULL on failure (recorded). */
int *cu_upload_ints(cu_ctx *c, cu_ints *u, const int *src, int n) {
  if (u->pending && MIMO_CUDA(c, cudaEventSynchronize(u->done)) != MIMO_OK) /* the last copy has read pinned */
    return NULL;
  u->pending = false;
  if (n > u->cap) {
    if (u->dev)
      MIMO_CUDA(c, cudaFreeAsync(u->dev, c->st));
    cudaFreeHost(u->pinned);
    u->dev = u->pinned = NULL;
    u->cap = 0;
    const int cap = n < 64 ? 64 : n;
    if (MIMO_CUDA(c, cudaMallocAsync((void **)&u->dev, (size_t)cap * sizeof(int), c->st)) != MIMO_OK ||
        MIMO_CUDA(c, cudaMallocHost((void **)&u->pinned, (size_t)cap * sizeof(int))) != MIMO_OK)
      return NULL;
    if (!u->done && MIMO_CUDA(c, cudaEventCreateWithFlags(&u->done, cudaEventDisableTiming)) != MIMO_OK)
      return NULL;
    u->cap = cap;
  }
  if (src != u->pinned)
    memcpy(u->pinned, src, (size_t)n * sizeof(int));
  if (MIMO_CUDA(c, cudaMemcpyAsync(u->dev, u->pinned, (size_t)n * sizeof(int), cudaMemcpyHostToDevice, c->st)) !=
          MIMO_OK ||
      MIMO_CUDA(c, cudaEventRecord(u->done, c->st)) != MIMO_OK)
    return NULL;
  u->pending = true;
  return u->dev;
}

static void free_ints(cu_ints *u) {
  if (u->pending)
    cudaEventSynchronize(u->done);
  cudaFree(u->dev);
  cudaFreeHost(u->pinned);
  if (u->done)
    cudaEventDestroy(u->done);
}

static void cu_embed(mimo_backend *be, float *out, const mimo_linear *table, const int *ids, int T) {
  cu_ctx *c = cu(be);
  const cu_lin *L = (const cu_lin *)table->dev;
  if (!L || L->fmt == CU_INT4) {
    cu_fail(c, "embed", "table not uploaded or not dense", __FILE__, __LINE__);
    return;
  }
  /* a decode step feeds back what the device sampled last: those ids are already there */
  const int *d = T == c->fed_n && !memcmp(ids, c->fed_host, (size_t)T * sizeof *ids) ? c->fed
                                                                                       : cu_upload_ints(c, &c->ids, ids, T);
  if (!d)
    return;
  cu_launch(c, k_embed, dim3(cdiv(table->in, 256), T), 256, 0, out, L->w, L->fmt, d, table->in);
}

/* 1 / sqrt(mean square + eps) from each thread's partial sum of squares (block-wide, fixed order). */
__device__ __forceinline__ float rms_inverse(float ss, int n, float eps) {
  __shared__ float red[32];
  ss = warp_sum(ss);
  if ((threadIdx.x & 31) == 0)
    red[threadIdx.x >> 5] = ss;
  __syncthreads();
  if (threadIdx.x < 32) {
    float v = threadIdx.x < blockDim.x / 32 ? red[threadIdx.x] : 0.f;
    v = warp_sum(v);
    if (threadIdx.x == 0)
      red[0] = v;
  }
  __syncthreads();
  return (float)(1.0 / sqrt((double)red[0] / n + eps));
}

/* One block per row. The row stays in registers (NV float4 per thread, all loads issued before the first use,
 * the weight's with them): one memory round trip per row. A loop over the row in global memory made each pass a
 * chain of dependent round trips (stores to h may alias the next loads), 13–16 µs per call at one token on an H200
 * for 16 KB of data. x may be NULL (plain norm) or added into h first (h += x, written back). */
template <int NV>
__global__ void __launch_bounds__(256) k_rmsnorm_v(float *out, float *h, const float *x, const float *w, int n,
                                                   float eps) {
  const int n4 = n / 4;
  float4 *hr = (float4 *)(h + (size_t)blockIdx.x * n);
  const float4 *xr = x ? (const float4 *)(x + (size_t)blockIdx.x * n) : NULL;
  float4 v[NV], wv[NV];
  float ss = 0.f;
#pragma unroll
  for (int j = 0; j < NV; j++) {
    const int i = threadIdx.x + 256 * j;
    wv[j] = i < n4 ? __ldg((const float4 *)w + i) : make_float4(0.f, 0.f, 0.f, 0.f);
  }
  pdl_start();
#pragma unroll
  for (int j = 0; j < NV; j++) {
    const int i = threadIdx.x + 256 * j;
    v[j] = i < n4 ? hr[i] : make_float4(0.f, 0.f, 0.f, 0.f);
  }
  if (xr) {
#pragma unroll
    for (int j = 0; j < NV; j++) {
      const int i = threadIdx.x + 256 * j;
      if (i < n4) {
        const float4 a = xr[i];
        v[j].x += a.x;
        v[j].y += a.y;
        v[j].z += a.z;
        v[j].w += a.w;
        hr[i] = v[j];
      }
    }
  }
#pragma unroll
  for (int j = 0; j < NV; j++)
    ss += v[j].x * v[j].x + v[j].y * v[j].y + v[j].z * v[j].z + v[j].w * v[j].w;
  const float r = rms_inverse(ss, n, eps);
  float4 *o = (float4 *)(out + (size_t)blockIdx.x * n);
#pragma unroll
  for (int j = 0; j < NV; j++) {
    const int i = threadIdx.x + 256 * j;
    if (i < n4)
      o[i] = make_float4(wv[j].x * (v[j].x * r), wv[j].y * (v[j].y * r), wv[j].z * (v[j].z * r),
                         wv[j].w * (v[j].w * r));
  }
}

/* Rows of any width or alignment: a strided loop. */
__global__ void k_rmsnorm(float *out, float *h, const float *x, const float *w, int n, float eps) {
  pdl_start();
  float *hr = h + (size_t)blockIdx.x * n;
  const float *xr = x ? x + (size_t)blockIdx.x * n : NULL;
  float ss = 0.f;
  for (int i = threadIdx.x; i < n; i += blockDim.x) {
    float v = hr[i];
    if (xr) {
      v += xr[i];
      hr[i] = v;
    }
    ss += v * v;
  }
  const float r = rms_inverse(ss, n, eps);
  float *o = out + (size_t)blockIdx.x * n;
  for (int i = threadIdx.x; i < n; i += blockDim.x)
    o[i] = w[i] * (hr[i] * r);
}

/* out = rmsnorm(h (+ x, written back to h)) · w, T rows of n. */
static void rmsnorm_rows(cu_ctx *c, float *out, float *h, const float *x, const mimo_vec *w, int T, int n, float eps) {
  if (!w->dev) {
    cu_fail(c, "rmsnorm", "weight not uploaded", __FILE__, __LINE__);
    return;
  }
  const float *wd = (const float *)w->dev;
  const int nv = n % 4 ? 0 : (int)cdiv(n / 4, 256);
  const bool al = !(((uintptr_t)out | (uintptr_t)h | (uintptr_t)x | (uintptr_t)wd) & 15);
  if (al && nv >= 1 && nv <= 2)
    cu_launch(c, k_rmsnorm_v<2>, T, 256, 0, out, h, x, wd, n, eps);
  else if (al && nv >= 3 && nv <= 4)
    cu_launch(c, k_rmsnorm_v<4>, T, 256, 0, out, h, x, wd, n, eps);
  else if (al && nv >= 5 && nv <= 8)
    cu_launch(c, k_rmsnorm_v<8>, T, 256, 0, out, h, x, wd, n, eps);
  else
    cu_launch(c, k_rmsnorm, T, 256, 0, out, h, x, wd, n, eps);
}

static void cu_add_rmsnorm(mimo_backend *be, float *out, float *h, const float *x, const mimo_vec *w, int T, int n,
                           float eps) {
  rmsnorm_rows(cu(be), out, h, x, w, T, n, eps);
}

static void cu_rmsnorm(mimo_backend *be, float *out, const float *x, const mimo_vec *w, int T, int n, float eps) {
  rmsnorm_rows(cu(be), out, (float *)x, NULL, w, T, n, eps); /* h = x is only read when nothing is added */
}

/* Partial NeoX RoPE; angle in fp32 from an fp32 inverse frequency, as the reference (whose inverse frequencies
 * the host computes once per (theta, rotary dims), with the CPU backend's formula: no double pow per element). */
__global__ void k_rope(float *x, int n_heads, int head_dim, int stride, int half, const int *pos, const float *inv) {
  pdl_start();
  const int t = blockIdx.y, i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n_heads * half)
    return;
  const int h = i / half, d = i % half;
  const float ang = (float)pos[t] * __ldg(inv + d);
  float sn, cs;
  sincosf(ang, &sn, &cs);
  float *v = x + (size_t)t * stride + (size_t)h * head_dim;
  const float a = v[d], b = v[d + half];
  v[d] = a * cs - b * sn;
  v[d + half] = b * cs + a * sn;
}

const float *cu_rope_inv(cu_ctx *c, double theta, int rot_dim) {
  const int n = (int)(sizeof c->rope_inv / sizeof *c->rope_inv);
  int i = 0;
  for (; i < n && c->rope_inv[i].inv; i++)
    if (c->rope_inv[i].theta == theta && c->rope_inv[i].rot_dim == rot_dim)
      return c->rope_inv[i].inv;
  if (i == n)
    i = n - 1; /* more than n distinct settings: the last slot is rebuilt (never with MiMo's two) */
  const int half = rot_dim / 2;
  float *h = (float *)malloc((size_t)half * sizeof(float));
  float *d = (float *)cu_arena(c, (size_t)half * sizeof(float));
  if (!h || !d) {
    free(h);
    cu_fail(c, "rope", "out of memory for the inverse frequencies", __FILE__, __LINE__);
    return NULL;
  }
  for (int k = 0; k < half; k++)
    h[k] = mimo_rope_inv_freq(theta, k, rot_dim);
  const mimo_status st = MIMO_CUDA(c, cudaMemcpy(d, h, (size_t)half * sizeof(float), cudaMemcpyHostToDevice));
  free(h);
  if (st != MIMO_OK)
    return NULL;
  c->rope_inv[i].theta = theta;
  c->rope_inv[i].rot_dim = rot_dim;
  c->rope_inv[i].inv = d;
  return d;
}

/* The step's positions on the device: they change once per step and every layer's calls share them. */
static const int *rope_pos(cu_ctx *c, const int *pos, int T) {
  if (T != c->pos_n || !c->pos.pinned || memcmp(pos, c->pos.pinned, (size_t)T * sizeof(int)) != 0) {
    c->pos_n = 0;
    if (!cu_upload_ints(c, &c->pos, pos, T))
      return NULL;
    c->pos_n = T;
  }
  return c->pos.dev;
}

static void cu_positions(mimo_backend *be, const int *pos, int T) { rope_pos(cu(be), pos, T); }

static void cu_rope(mimo_backend *be, float *x, int T, int n_heads, int head_dim, int stride, int rot_dim,
                    const int *pos, double theta) {
  cu_ctx *c = cu(be);
  const float *inv = cu_rope_inv(c, theta, rot_dim);
  if (!inv)
    return;
  const int *dpos = rope_pos(c, pos, T);
  if (!dpos)
    return;
  const int half = rot_dim / 2;
  cu_launch(c, k_rope, dim3(cdiv(n_heads * half, 128), T), 128, 0, x, n_heads, head_dim, stride, half, dpos, inv);
}

__global__ void k_scale(float *x, long n, float s) {
  pdl_start();
  for (long i = blockIdx.x * (long)blockDim.x + threadIdx.x; i < n; i += (long)gridDim.x * blockDim.x)
    x[i] *= s;
}
__global__ void k_add(float *y, const float *x, long n) {
  pdl_start();
  for (long i = blockIdx.x * (long)blockDim.x + threadIdx.x; i < n; i += (long)gridDim.x * blockDim.x)
    y[i] += x[i];
}
__global__ void k_swiglu(float *out, const float *g, const float *u, long n) {
  pdl_start();
  for (long i = blockIdx.x * (long)blockDim.x + threadIdx.x; i < n; i += (long)gridDim.x * blockDim.x) {
    float a = g[i];
    out[i] = a / (1.0f + expf(-a)) * u[i];
  }
}

static unsigned ew_grid(long n) {
  long b = (n + 255) / 256;
  return (unsigned)(b < 4096 ? (b > 0 ? b : 1) : 4096);
}

static void cu_scale(mimo_backend *be, float *x, long n, float s) {
  cu_launch(cu(be), k_scale, ew_grid(n), 256, 0, x, n, s);
}
static void cu_add(mimo_backend *be, float *y, const float *x, long n) {
  cu_launch(cu(be), k_add, ew_grid(n), 256, 0, y, x, n);
}
static void cu_swiglu(mimo_backend *be, float *out, const float *g, const float *u, long n) {
  cu_launch(cu(be), k_swiglu, ew_grid(n), 256, 0, out, g, u, n);
}
/* One launch for the fused qkv's de-chunking, the value scale and (inv != NULL) RoPE on q and k: a thread per
 * element; of a rotated pair (d, d + half) of a head the thread of d writes both. Heads lie inside chunks. */
__global__ void k_qkv_split(float *q, float *k, float *v, const float *qkv, int chunks, int qc, int kc, int vc,
                            float v_scale, const int *pos, const float *inv, int hd, int half) {
  pdl_start();
  const int t = blockIdx.y, per = qc + kc + vc, row = chunks * per;
  const float *src = qkv + (size_t)t * row;
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < row; i += gridDim.x * blockDim.x) {
    const int c = i / per, j = i % per;
    if (j >= qc + kc) {
      v[((size_t)t * chunks + c) * vc + j - qc - kc] = src[i] * v_scale;
      continue;
    }
    float *dst = j < qc ? q + ((size_t)t * chunks + c) * qc + j : k + ((size_t)t * chunks + c) * kc + j - qc;
    const int d = (j < qc ? j : j - qc) % hd;
    if (!inv || d >= 2 * half) {
      *dst = src[i];
    } else if (d < half) {
      float sn, cs;
      sincosf((float)pos[t] * __ldg(inv + d), &sn, &cs);
      const float a = src[i], b = src[i + half];
      dst[0] = a * cs - b * sn;
      dst[half] = b * cs + a * sn;
    }
  }
}

static void cu_qkv_split(mimo_backend *be, float *q, float *k, float *v, const float *qkv, int T, int chunks, int qc,
                         int kc, int vc, float v_scale, const mimo_rope_args *rope) {
  cu_ctx *c = cu(be);
  const int row = chunks * (qc + kc + vc);
  const int *dpos = NULL;
  const float *inv = NULL;
  if (rope && (qc % rope->head_dim || kc % rope->head_dim)) { /* a head across chunks: split, then rope each */
    cu_qkv_split(be, q, k, v, qkv, T, chunks, qc, kc, vc, v_scale, NULL);
    cu_rope(be, q, T, rope->n_q_heads, rope->head_dim, chunks * qc, rope->rot_dim, rope->pos, rope->theta);
    cu_rope(be, k, T, rope->n_kv_heads, rope->head_dim, chunks * kc, rope->rot_dim, rope->pos, rope->theta);
    return;
  }
  if (rope && (!(inv = cu_rope_inv(c, rope->theta, rope->rot_dim)) || !(dpos = rope_pos(c, rope->pos, T))))
    return;
  cu_launch(c, k_qkv_split, dim3(cdiv(row, 256), T), 256, 0, q, k, v, qkv, chunks, qc, kc, vc, v_scale, dpos, inv,
            rope ? rope->head_dim : 1, rope ? rope->rot_dim / 2 : 0);
}

static void cu_copy2d(mimo_backend *be, float *dst, long dst_ld, const float *src, long src_ld, int rows, int cols) {
  cu_ctx *c = cu(be);
  MIMO_CUDA(c, cudaMemcpy2DAsync(dst, (size_t)dst_ld * sizeof(float), src, (size_t)src_ld * sizeof(float),
                                 (size_t)cols * sizeof(float), (size_t)rows, cudaMemcpyDeviceToDevice, c->st));
}

static void cu_zero(mimo_backend *be, float *x, long n) {
  cu_ctx *c = cu(be);
  MIMO_CUDA(c, cudaMemsetAsync(x, 0, (size_t)n * sizeof(float), c->st));
}

void cu_ops_install(mimo_backend *be) {
  be->embed = cu_embed;
  be->positions = cu_positions;
  be->rmsnorm = cu_rmsnorm;
  be->add_rmsnorm = cu_add_rmsnorm;
  be->rope = cu_rope;
  be->qkv_split = cu_qkv_split;
  be->scale = cu_scale;
  be->add = cu_add;
  be->swiglu = cu_swiglu;
  be->copy2d = cu_copy2d;
  be->zero = cu_zero;
}

void cu_ops_free(cu_ctx *c) {
  free_ints(&c->pos);
  free_ints(&c->ids);
  free_ints(&c->vis_ints);
  free_ints(&c->vis_seq);
}
