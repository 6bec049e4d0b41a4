/* CUDA backend: construction, memory (scratch cache, weight arena, KV), and the
 * small ops (embed, rmsnorm, rope, scale, add, swiglu, copy2d). One stream; ops
 * queue work and return, download() waits and reports the first error. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <pthread.h>

#include "backend/cuda/cuda_internal.h"

mimo_status cu_fail(cu_ctx *c, const char *what, const char *msg, const char *file, int line) {
  /* The calling thread always gets the message (a rank's thread reports its own);
   * the backend keeps the first error for download() to return. */
  const char *f = strrchr(file, '/');
  mimo_status st = mimo_errf(MIMO_E_CUDA, "GPU %d: %s:%d: %s: %s", c->device, f ? f + 1 : file, line, what, msg);
  if (c->err == MIMO_OK)
    c->err = st;
  return MIMO_E_CUDA;
}

/* ---- memory ---- */

/* The budget of --gpu-memory-utilization: every long-lived allocation (weights,
 * KV, step scratch) is counted; going over is an out-of-memory error naming it. */
static bool mem_take(cu_ctx *c, size_t bytes, const char *what) {
  if (c->mem_limit && c->mem_used + bytes > c->mem_limit) {
    mimo_errf(MIMO_E_NOMEM,
              "GPU %d: no room for %s: %.3f GiB more would pass the --gpu-memory-utilization budget (%.2f of "
              "%.2f GiB in use, limit %.2f GiB)",
              c->device, what, bytes / 1073741824.0, c->mem_used / 1073741824.0, c->mem_total / 1073741824.0,
              c->mem_limit / 1073741824.0);
    return false;
  }
  c->mem_used += bytes;
  return true;
}

static void mem_give(cu_ctx *c, size_t bytes) { c->mem_used -= bytes < c->mem_used ? bytes : c->mem_used; }

extern "C" mimo_status mimo_cuda_set_memory_fraction(mimo_backend *be, double fraction) {
  cu_ctx *c = cu(be);
  if (!(fraction > 0 && fraction <= 1))
    return mimo_errf(MIMO_E_INVALID, "--gpu-memory-utilization %g must be in (0, 1]", fraction);
  c->mem_limit = (size_t)(fraction * (double)c->mem_total);
  if (c->mem_used > c->mem_limit)
    return mimo_errf(MIMO_E_NOMEM, "GPU %d: %.2f GiB already in use, over --gpu-memory-utilization %.2f", c->device,
                     c->mem_used / 1073741824.0, fraction);
  return MIMO_OK;
}

extern "C" size_t mimo_cuda_memory_used(mimo_backend *be) { return cu(be)->mem_used; }

/* Sizes of the KV blocks (kv_free is given only the pointer); device pointers are
 * unique across GPUs, so one table serves every backend of the process. */
typedef struct {
  void *p;
  size_t bytes;
} kv_block;
static kv_block *kv_blocks;
static int kv_n, kv_cap;
static pthread_mutex_t kv_mu = PTHREAD_MUTEX_INITIALIZER;

static bool kv_track(void *p, size_t bytes) {
  pthread_mutex_lock(&kv_mu);
  bool ok = true;
  if (kv_n == kv_cap) {
    int cap = kv_cap ? 2 * kv_cap : 256;
    kv_block *n = (kv_block *)realloc(kv_blocks, (size_t)cap * sizeof *n);
    if (n) {
      kv_blocks = n;
      kv_cap = cap;
    } else {
      ok = false;
    }
  }
  if (ok)
    kv_blocks[kv_n++] = (kv_block){p, bytes};
  pthread_mutex_unlock(&kv_mu);
  return ok;
}

static size_t kv_untrack(void *p) {
  size_t bytes = 0;
  pthread_mutex_lock(&kv_mu);
  for (int i = 0; i < kv_n; i++)
    if (kv_blocks[i].p == p) {
      bytes = kv_blocks[i].bytes;
      kv_blocks[i] = kv_blocks[--kv_n];
      break;
    }
  pthread_mutex_unlock(&kv_mu);
  return bytes;
}

void *cu_tmp(cu_ctx *c, size_t bytes) {
  if (bytes > c->tmp_bytes) {
    if (c->tmp)
      MIMO_CUDA(c, cudaFreeAsync(c->tmp, c->st));
    c->tmp = NULL;
    c->tmp_bytes = 0;
    if (MIMO_CUDA(c, cudaMallocAsync(&c->tmp, bytes, c->st)) != MIMO_OK)
      return NULL;
    c->tmp_bytes = bytes;
  }
  return c->tmp;
}

void *cu_mapped(cu_ctx *c, size_t bytes, void **dev) {
  if (bytes > c->mapped_cap) {
    if (c->mapped)
      MIMO_CUDA(c, cudaFreeHost(c->mapped));
    c->mapped = c->mapped_dev = NULL;
    c->mapped_cap = 0;
    const size_t cap = bytes < 65536 ? 65536 : bytes;
    if (MIMO_CUDA(c, cudaHostAlloc((void **)&c->mapped, cap, cudaHostAllocMapped)) != MIMO_OK)
      return NULL;
    if (MIMO_CUDA(c, cudaHostGetDevicePointer((void **)&c->mapped_dev, c->mapped, 0)) != MIMO_OK) {
      cudaFreeHost(c->mapped);
      c->mapped = NULL;
      return NULL;
    }
    c->mapped_cap = cap;
  }
  *dev = c->mapped_dev;
  return c->mapped;
}

void *cu_tmp2(cu_ctx *c, size_t bytes) {
  if (bytes > c->tmp2_bytes) {
    if (c->tmp2)
      MIMO_CUDA(c, cudaFreeAsync(c->tmp2, c->st));
    c->tmp2 = NULL;
    c->tmp2_bytes = 0;
    if (MIMO_CUDA(c, cudaMallocAsync(&c->tmp2, bytes, c->st)) != MIMO_OK)
      return NULL;
    c->tmp2_bytes = bytes;
  }
  return c->tmp2;
}

float *cu_alloc(mimo_backend *be, size_t n) {
  cu_ctx *c = cu(be);
  size_t bytes = (n ? n : 1) * sizeof(float);
  int best = -1;
  for (int i = 0; i < c->nblocks; i++) /* smallest free block that fits, within 2x */
    if (!c->blocks[i].used && c->blocks[i].bytes >= bytes && c->blocks[i].bytes <= 2 * bytes + 4096 &&
        (best < 0 || c->blocks[i].bytes < c->blocks[best].bytes))
      best = i;
  if (best >= 0) {
    c->blocks[best].used = 1;
    return (float *)c->blocks[best].p;
  }
  if (c->nblocks == c->capblocks) {
    int cap = c->capblocks ? 2 * c->capblocks : 64;
    cu_block *nb = (cu_block *)realloc(c->blocks, (size_t)cap * sizeof *nb);
    if (!nb)
      return NULL;
    c->blocks = nb;
    c->capblocks = cap;
  }
  void *p = NULL;
  if (!mem_take(c, bytes, "step scratch"))
    return NULL;
  if (cudaMalloc(&p, bytes) != cudaSuccess) {
    (void)cudaGetLastError();
    mem_give(c, bytes);
    mimo_errf(MIMO_E_NOMEM, "GPU scratch: %zu bytes", bytes);
    return NULL;
  }
  c->blocks[c->nblocks++] = (cu_block){p, bytes, 1};
  return (float *)p;
}

void cu_release(mimo_backend *be, float *p) {
  cu_ctx *c = cu(be);
  for (int i = 0; i < c->nblocks; i++)
    if (c->blocks[i].p == p) {
      c->blocks[i].used = 0;
      return;
    }
}

void *cu_arena(cu_ctx *c, size_t bytes) {
  bytes = (bytes + 255) & ~(size_t)255;
  if (c->narenas == 0 || c->arena_used + bytes > c->arena_cap) {
    size_t cap = bytes > ((size_t)1 << 30) ? bytes : ((size_t)1 << 30);
    size_t fr = 0, tot = 0;
    if (cudaMemGetInfo(&fr, &tot) == cudaSuccess && cap > bytes && cap > fr / 2)
      cap = bytes; /* near the end of memory take only what is asked */
    if (c->mem_limit && cap > bytes && c->mem_used + cap > c->mem_limit)
      cap = bytes;
    if (!mem_take(c, cap, "the weights"))
      return NULL;
    char *p = NULL;
    if (cudaMalloc((void **)&p, cap) != cudaSuccess) {
      (void)cudaGetLastError();
      mem_give(c, cap);
      mimo_errf(MIMO_E_NOMEM, "GPU memory for weights: %zu more bytes (free %zu of %zu)", cap, fr, tot);
      return NULL;
    }
    char **na = (char **)realloc(c->arenas, (size_t)(c->narenas + 1) * sizeof *na);
    if (!na) {
      cudaFree(p);
      return NULL;
    }
    c->arenas = na;
    c->arenas[c->narenas++] = p;
    c->arena_used = 0;
    c->arena_cap = cap;
  }
  void *r = c->arenas[c->narenas - 1] + c->arena_used;
  c->arena_used += bytes;
  return r;
}

static float *cu_kv_realloc(mimo_backend *be, float *p, size_t old_n, size_t new_n) {
  cu_ctx *c = cu(be);
  float *q = NULL;
  const size_t bytes = (new_n ? new_n : 1) * sizeof(float);
  if (!mem_take(c, bytes, "the KV cache"))
    return NULL;
  if (cudaMalloc((void **)&q, bytes) != cudaSuccess || !kv_track(q, bytes)) {
    (void)cudaGetLastError();
    if (q)
      cudaFree(q);
    mem_give(c, bytes);
    mimo_errf(MIMO_E_NOMEM, "GPU %d: KV cache of %zu bytes: out of device memory", c->device, bytes);
    return NULL;
  }
  if (p && old_n) {
    if (MIMO_CUDA(c, cudaMemcpyAsync(q, p, (old_n < new_n ? old_n : new_n) * sizeof(float),
                                     cudaMemcpyDeviceToDevice, c->st)) != MIMO_OK) {
      mem_give(c, kv_untrack(q));
      cudaFree(q);
      return NULL;
    }
    MIMO_CUDA(c, cudaStreamSynchronize(c->st));
    mem_give(c, kv_untrack(p));
    MIMO_CUDA(c, cudaFree(p));
  }
  return q;
}

static void cu_kv_free(mimo_backend *be, float *p) {
  if (p) { /* also from threads that run no op of this backend (the engine frees finished sequences) */
    MIMO_CUDA(cu(be), cudaSetDevice(cu(be)->device));
    MIMO_CUDA(cu(be), cudaStreamSynchronize(cu(be)->st));
    mem_give(cu(be), kv_untrack(p));
    MIMO_CUDA(cu(be), cudaFree(p));
  }
}

static mimo_status cu_upload_vec(mimo_backend *be, mimo_vec *v) {
  cu_ctx *c = cu(be);
  float *h = (float *)malloc((size_t)v->n * sizeof(float));
  if (!h)
    return mimo_errf(MIMO_E_NOMEM, "vector upload");
  for (int i = 0; i < v->n; i++)
    h[i] = mimo_vec_get(v, i);
  float *d = (float *)cu_arena(c, (size_t)v->n * sizeof(float));
  mimo_status st = d ? MIMO_CUDA(c, cudaMemcpy(d, h, (size_t)v->n * sizeof(float), cudaMemcpyHostToDevice))
                     : MIMO_E_NOMEM;
  free(h);
  if (st == MIMO_OK)
    v->dev = d;
  return st;
}

mimo_status cu_wait(cu_ctx *c) {
  MIMO_CUDA(c, cudaStreamSynchronize(c->st));
  cu_profile_flush(c);
  mimo_status st = c->err;
  if (st != MIMO_OK)
    mimo_errf(st, "%s", mimo_errmsg()); /* keep the first message current for this thread */
  return st;
}

static mimo_status cu_download(mimo_backend *be, float *host, const float *src, size_t n) {
  cu_ctx *c = cu(be);
  if (n)
    MIMO_CUDA(c, cudaMemcpyAsync(host, src, n * sizeof(float), cudaMemcpyDeviceToHost, c->st));
  return cu_wait(c);
}

/* ---- small ops ---- */

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
static int *upload_ints(cu_ctx *c, cu_ints *u, const int *src, int n) {
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
                                                                                       : upload_ints(c, &c->ids, ids, T);
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

static const float *rope_inv(cu_ctx *c, double theta, int rot_dim) {
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
    if (!upload_ints(c, &c->pos, pos, T))
      return NULL;
    c->pos_n = T;
  }
  return c->pos.dev;
}

static void cu_positions(mimo_backend *be, const int *pos, int T) { rope_pos(cu(be), pos, T); }

static void cu_rope(mimo_backend *be, float *x, int T, int n_heads, int head_dim, int stride, int rot_dim,
                    const int *pos, double theta) {
  cu_ctx *c = cu(be);
  const float *inv = rope_inv(c, theta, rot_dim);
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
  if (rope && (!(inv = rope_inv(c, rope->theta, rope->rot_dim)) || !(dpos = rope_pos(c, rope->pos, T))))
    return;
  cu_launch(c, k_qkv_split, dim3(cdiv(row, 256), T), 256, 0, q, k, v, qkv, chunks, qc, kc, vc, v_scale, dpos, inv,
            rope ? rope->head_dim : 1, rope ? rope->rot_dim / 2 : 0);
}

static void cu_copy2d(mimo_backend *be, float *dst, long dst_ld, const float *src, long src_ld, int rows, int cols) {
  cu_ctx *c = cu(be);
  MIMO_CUDA(c, cudaMemcpy2DAsync(dst, (size_t)dst_ld * sizeof(float), src, (size_t)src_ld * sizeof(float),
                                 (size_t)cols * sizeof(float), (size_t)rows, cudaMemcpyDeviceToDevice, c->st));
}

/* ---- lifecycle and helpers ---- */

void cu_comm_free(mimo_backend *be); /* cuda_comm.cu */

static mimo_status cu_bind_thread(mimo_backend *be) {
  MIMO_CUDA_TRY(cu(be), cudaSetDevice(cu(be)->device));
  return MIMO_OK;
}

static void cu_free_be(mimo_backend *be) {
  if (!be)
    return;
  cu_ctx *c = cu(be);
  if (c) {
    cudaSetDevice(c->device);
    cu_comm_free(be);
    cudaStreamSynchronize(c->st);
    cu_profile_report(c);
    for (int i = 0; i < c->nblocks; i++)
      cudaFree(c->blocks[i].p);
    for (int i = 0; i < c->narenas; i++)
      cudaFree(c->arenas[i]);
    for (int i = 0; i < c->nlins; i++) {
      if (c->lins[i]->table)
        cudaFree(c->lins[i]->table);
      free(c->lins[i]);
    }
    cudaFree(c->tmp);
    cudaFree(c->tmp2);
    free_ints(&c->pos);
    free_ints(&c->ids);
    if (c->mapped)
      cudaFreeHost(c->mapped);
    cudaFree(c->fed);
    free(c->fed_host);
    free(c->blocks);
    free(c->arenas);
    free(c->lins);
    if (c->blas)
      cublasDestroy(c->blas);
    cudaEventDestroy(c->ev0);
    cudaEventDestroy(c->ev1);
    cudaStreamDestroy(c->st);
    free(c);
  }
  free(be);
}

/* The architecture the running device code was compiled for (the compute_80 PTX build JIT-compiled on a Hopper
 * reports 800): programmatic dependent launch needs the SM90 code's griddepcontrol in every kernel. */
__global__ void k_code_arch(int *out) {
#ifdef __CUDA_ARCH__
  *out = __CUDA_ARCH__;
#endif
}
static mimo_status probe_pdl(cu_ctx *c) {
  if (c->cc < 90)
    return MIMO_OK;
  int *d = NULL, arch = 0;
  mimo_status st = MIMO_CUDA(c, cudaMalloc(&d, sizeof *d));
  if (st != MIMO_OK)
    return st;
  k_code_arch<<<1, 1, 0, c->st>>>(d);
  st = MIMO_CUDA_LAUNCHED(c);
  if (st == MIMO_OK)
    st = MIMO_CUDA(c, cudaMemcpyAsync(&arch, d, sizeof arch, cudaMemcpyDeviceToHost, c->st));
  if (st == MIMO_OK)
    st = MIMO_CUDA(c, cudaStreamSynchronize(c->st));
  const mimo_status fr = MIMO_CUDA(c, cudaFree(d));
  c->pdl = st == MIMO_OK && arch >= 900;
  return st != MIMO_OK ? st : fr;
}

static int pdl_off = -1;
extern "C" int mimo_cuda_pdl_off(int on) { return cu_switch(&pdl_off, "MIMO_CUDA_PDL", "off", on); }

extern "C" int mimo_cuda_device_count(void) {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    (void)cudaGetLastError();
    return 0;
  }
  return n;
}

extern "C" mimo_status mimo_backend_cuda_init(mimo_backend **out, int device) {
  int n = mimo_cuda_device_count();
  if (n == 0)
    return mimo_errf(MIMO_E_CUDA, "cuda backend: no CUDA device (or no driver)");
  if (device < 0 || device >= n)
    return mimo_errf(MIMO_E_INVALID, "cuda backend: device %d does not exist (%d present)", device, n);
  mimo_backend *be = (mimo_backend *)calloc(1, sizeof *be);
  cu_ctx *c = (cu_ctx *)calloc(1, sizeof *c);
  if (!be || !c) {
    free(be);
    free(c);
    return mimo_errf(MIMO_E_NOMEM, "cuda backend");
  }
  be->ctx = c;
  c->device = device;
  be->free = cu_free_be;
  cudaDeviceProp p;
  mimo_status st = MIMO_CUDA(c, cudaSetDevice(device));
  if (st == MIMO_OK)
    st = MIMO_CUDA(c, cudaGetDeviceProperties(&p, device));
  if (st == MIMO_OK)
    st = MIMO_CUDA(c, cudaStreamCreateWithFlags(&c->st, cudaStreamNonBlocking));
  if (st == MIMO_OK)
    st = MIMO_CUBLAS(c, cublasCreate(&c->blas));
  if (st == MIMO_OK)
    st = MIMO_CUBLAS(c, cublasSetStream(c->blas, c->st));
  if (st == MIMO_OK)
    st = MIMO_CUDA(c, cudaEventCreate(&c->ev0));
  if (st == MIMO_OK)
    st = MIMO_CUDA(c, cudaEventCreate(&c->ev1));
  if (st == MIMO_OK) {
    c->cc = p.major * 10 + p.minor;
    st = probe_pdl(c);
  }
  if (st != MIMO_OK) {
    c->err = MIMO_OK;
    cu_free_be(be);
    return st;
  }
  c->mem_total = p.totalGlobalMem;
  c->sms = p.multiProcessorCount;
  snprintf(c->name, sizeof c->name, "%.200s (sm_%d, %d SMs, %.1f GiB%s)", p.name, c->cc, c->sms,
           p.totalGlobalMem / 1073741824.0, c->pdl ? ", programmatic dependent launch" : "");
  be->name = "cuda";
  be->alloc = cu_alloc;
  be->release = cu_release;
  be->embed = cu_embed;
  be->positions = cu_positions;
  be->rmsnorm = cu_rmsnorm;
  be->linear = cu_linear;
  be->rope = cu_rope;
  be->scale = cu_scale;
  be->copy2d = cu_copy2d;
  be->qkv_split = cu_qkv_split;
  be->add_rmsnorm = cu_add_rmsnorm;
  be->add = cu_add;
  be->swiglu = cu_swiglu;
  be->attention = cu_attention;
  be->attention_seqs = cu_attention_seqs;
  be->moe = cu_moe;
  be->upload_linear = cu_upload_linear;
  be->upload_vec = cu_upload_vec;
  be->kv_realloc = cu_kv_realloc;
  be->kv_free = cu_kv_free;
  be->download = cu_download;
  be->sample = cu_sample;
  be->bind_thread = cu_bind_thread;
  be->upload = mimo_cuda_upload;
  cu_profile_install(be);
  *out = be;
  return MIMO_OK;
}

extern "C" const char *mimo_cuda_device_name(mimo_backend *be) { return cu(be)->name; }

/* The C entry points below may be called from any thread (a benchmark's main
 * thread with several GPUs' backends): each selects its backend's device first. */
static void on_device(cu_ctx *c) { MIMO_CUDA(c, cudaSetDevice(c->device)); }

extern "C" mimo_status mimo_cuda_sync(mimo_backend *be) {
  on_device(cu(be));
  return cu_download(be, NULL, NULL, 0);
}

extern "C" void mimo_cuda_timer_start(mimo_backend *be) {
  on_device(cu(be));
  MIMO_CUDA(cu(be), cudaEventRecord(cu(be)->ev0, cu(be)->st));
}

extern "C" float mimo_cuda_timer_stop(mimo_backend *be) {
  cu_ctx *c = cu(be);
  on_device(c);
  float ms = 0;
  MIMO_CUDA(c, cudaEventRecord(c->ev1, c->st));
  MIMO_CUDA(c, cudaEventSynchronize(c->ev1));
  MIMO_CUDA(c, cudaEventElapsedTime(&ms, c->ev0, c->ev1));
  return ms;
}

extern "C" mimo_status mimo_cuda_upload(mimo_backend *be, float *dst, const float *host, size_t n) {
  cu_ctx *c = cu(be);
  on_device(c);
  MIMO_CUDA_TRY(c, cudaMemcpyAsync(dst, host, n * sizeof(float), cudaMemcpyHostToDevice, c->st));
  return mimo_cuda_sync(be);
}

extern "C" void mimo_cuda_poison(mimo_backend *be, float *p, size_t n) {
  on_device(cu(be));
  MIMO_CUDA(cu(be), cudaMemsetAsync(p, 0xff, n * sizeof(float), cu(be)->st)); /* all-ones bits: NaN */
}

static int cmp_f(const void *a, const void *b) {
  float x = *(const float *)a, y = *(const float *)b;
  return (x > y) - (x < y);
}

extern "C" double mimo_cuda_copy_bandwidth(mimo_backend *be, size_t bytes) {
  cu_ctx *c = cu(be);
  on_device(c);
  void *a = NULL, *b = NULL;
  if (MIMO_CUDA(c, cudaMalloc(&a, bytes)) != MIMO_OK || MIMO_CUDA(c, cudaMalloc(&b, bytes)) != MIMO_OK) {
    cudaFree(a);
    return 0;
  }
  MIMO_CUDA(c, cudaMemsetAsync(a, 1, bytes, c->st));
  float ms[12];
  for (int r = 0; r < 14; r++) {
    mimo_cuda_timer_start(be);
    MIMO_CUDA(c, cudaMemcpyAsync(r & 1 ? a : b, r & 1 ? b : a, bytes, cudaMemcpyDeviceToDevice, c->st));
    float t = mimo_cuda_timer_stop(be);
    if (r >= 2)
      ms[r - 2] = t;
  }
  qsort(ms, 12, sizeof *ms, cmp_f);
  cudaFree(a);
  cudaFree(b);
  return 2.0 * bytes / (ms[6] * 1e-3);
}
