/* CUDA backend: construction and memory (scratch cache, weight arena, KV, mapped host memory); the small ops are
 * in cuda_ops.cu. One stream; ops queue work and return, download() waits and reports the first error. */
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

void cu_defer_free(cu_ctx *c, void *p) {
  if (!p)
    return;
  if (c->n_deferred == c->cap_deferred) {
    const int cap = c->cap_deferred ? 2 * c->cap_deferred : 16;
    void **d = (void **)realloc(c->deferred, (size_t)cap * sizeof *d);
    if (!d) { /* no list (host out of memory): wait here instead; while capturing nothing may wait, so p leaks */
      if (!c->capturing && MIMO_CUDA(c, cudaStreamSynchronize(c->st)) == MIMO_OK)
        cudaFree(p);
      return;
    }
    c->deferred = d;
    c->cap_deferred = cap;
  }
  c->deferred[c->n_deferred++] = p;
}

static void free_deferred(cu_ctx *c) {
  for (int i = 0; i < c->n_deferred; i++)
    cudaFree(c->deferred[i]);
  c->n_deferred = 0;
}

/* A temporary grown to bytes (contents not kept). While the stream is captured a stream-ordered allocation or free
 * would become a node of the graph: take plain memory then (*plain), and free the old buffer after the next wait. */
static void *cu_grow(cu_ctx *c, void **buf, size_t *have, bool *plain, size_t bytes) {
  if (bytes <= *have)
    return *buf;
  void *p = NULL;
  const cudaError_t e = c->capturing ? cudaMalloc(&p, bytes) : cudaMallocAsync(&p, bytes, c->st);
  if (e != cudaSuccess) {
    (void)cudaGetLastError();
    cu_fail(c, "temporary", c->capturing ? "out of device memory while capturing a decode step"
                                         : "out of device memory", __FILE__, __LINE__);
    return NULL;
  }
  if (c->capturing || *plain) /* cudaFreeAsync takes stream-ordered allocations only */
    cu_defer_free(c, *buf);
  else if (*buf)
    MIMO_CUDA(c, cudaFreeAsync(*buf, c->st));
  *buf = p;
  *have = bytes;
  *plain = c->capturing;
  return p;
}

void *cu_tmp(cu_ctx *c, size_t bytes) { return cu_grow(c, &c->tmp, &c->tmp_bytes, &c->tmp_plain, bytes); }
void *cu_tmp2(cu_ctx *c, size_t bytes) { return cu_grow(c, &c->tmp2, &c->tmp2_bytes, &c->tmp2_plain, bytes); }

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

void *cu_host_arena(cu_ctx *c, size_t bytes) {
  bytes = (bytes + 255) & ~(size_t)255;
  if (c->nharenas == 0 || c->harena_used + bytes > c->harena_cap) {
    const size_t cap = bytes > ((size_t)256 << 20) ? bytes : ((size_t)256 << 20);
    char *h = NULL, *d = NULL;
    if (cudaHostAlloc((void **)&h, cap, cudaHostAllocMapped | cudaHostAllocPortable) != cudaSuccess) {
      (void)cudaGetLastError();
      cu_fail(c, "--cpu-offload-gb", "no pinned host memory for more routed experts", __FILE__, __LINE__);
      return NULL;
    }
    if (MIMO_CUDA(c, cudaHostGetDevicePointer((void **)&d, h, 0)) != MIMO_OK) {
      cudaFreeHost(h);
      return NULL;
    }
    void *na = realloc(c->harenas, (size_t)(c->nharenas + 1) * sizeof *c->harenas);
    if (!na) {
      cudaFreeHost(h);
      return NULL;
    }
    c->harenas = (decltype(c->harenas))na;
    c->harenas[c->nharenas].base = h;
    c->harenas[c->nharenas++].dev = d;
    c->harena_used = 0;
    c->harena_cap = cap;
  }
  void *r = c->harenas[c->nharenas - 1].dev + c->harena_used;
  c->harena_used += bytes;
  return r;
}

extern "C" void mimo_cuda_set_cpu_offload(mimo_backend *be, double gib) {
  cu(be)->offload_left = gib > 0 ? (size_t)(gib * 1073741824.0) : 0;
}
extern "C" size_t mimo_cuda_offloaded_bytes(mimo_backend *be) { return cu(be)->offloaded; }

unsigned *cu_counters(cu_ctx *c, unsigned **slot, size_t n, const char *what) {
  if (*slot)
    return *slot;
  void *d = cu_arena(c, n * sizeof(unsigned));
  if (!d || MIMO_CUDA(c, cudaMemsetAsync(d, 0, n * sizeof(unsigned), c->st)) != MIMO_OK) {
    cu_fail(c, what, "out of GPU memory for its counters", __FILE__, __LINE__);
    return NULL;
  }
  return *slot = (unsigned *)d;
}

static void on_device(cu_ctx *c);

static float *cu_kv_realloc(mimo_backend *be, float *p, size_t old_n, size_t new_n) {
  cu_ctx *c = cu(be);
  on_device(c); /* a fork runs on the engine's thread, not the rank's */
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

static void cu_kv_copy(mimo_backend *be, void *dst, const void *src, size_t bytes) {
  cu_ctx *c = cu(be);
  on_device(c);
  MIMO_CUDA(c, cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, c->st));
}

/* Block table entries travel as a kernel parameter: in stream order with the ops that read them, no pinned staging
 * buffer and no wait (a copy from pageable memory would make the host wait for the queued work). */
enum { KV_TABLE_BATCH = 32 };
struct kv_table_part {
  void *p[KV_TABLE_BATCH];
};
__global__ void k_kv_table_write(void **dst, const kv_table_part src, int n) {
  if ((int)threadIdx.x < n)
    dst[threadIdx.x] = src.p[threadIdx.x];
}

static void cu_kv_table_write(mimo_backend *be, void **dst, void *const *src, int n) {
  cu_ctx *c = cu(be);
  on_device(c);
  for (int i = 0; i < n; i += KV_TABLE_BATCH) {
    const int m = n - i < KV_TABLE_BATCH ? n - i : KV_TABLE_BATCH;
    kv_table_part t;
    memcpy(t.p, src + i, (size_t)m * sizeof *t.p);
    k_kv_table_write<<<1, KV_TABLE_BATCH, 0, c->st>>>(dst + i, t, m);
    if (MIMO_CUDA_LAUNCHED(c) != MIMO_OK)
      return;
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
  if (MIMO_CUDA(c, cudaStreamSynchronize(c->st)) == MIMO_OK)
    free_deferred(c);
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
    free_deferred(c);
    free(c->deferred);
    cu_graphs_free(c);
    cu_profile_report(c);
    for (int i = 0; i < c->nblocks; i++)
      cudaFree(c->blocks[i].p);
    for (int i = 0; i < c->narenas; i++)
      cudaFree(c->arenas[i]);
    for (int i = 0; i < c->nharenas; i++)
      cudaFreeHost(c->harenas[i].base);
    free(c->harenas);
    for (int i = 0; i < c->nlins; i++) {
      if (c->lins[i]->table)
        cudaFree(c->lins[i]->table);
      free(c->lins[i]);
    }
    cudaFree(c->tmp);
    cudaFree(c->tmp2);
    cu_ops_free(c);
    if (c->mapped)
      cudaFreeHost(c->mapped);
    cudaFree(c->fed);
    free(c->fed_host);
    free(c->blocks);
    free(c->arenas);
    free(c->lins);
    if (c->blas)
      cublasDestroy(c->blas);
    cudaFree(c->blas_ws);
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
/* MIMO_CUDA_SKIP_KERNELS (cuda_internal.h): the stand-in keeps the launch chain's waits and nothing else */
static __global__ void k_skipped_stand_in() { pdl_start(); }

static void launch_stand_in(cu_ctx *c) { cu_launch_now(c, k_skipped_stand_in, dim3(1), dim3(32), 0); }

void cu_extra_links(cu_ctx *c) {
  for (int i = 0; i < c->extra_links; i++)
    launch_stand_in(c);
}

bool cu_skip_kernel(cu_ctx *c, const void *k) {
  const char *name = NULL;
  if (cudaFuncGetName(&name, k) != cudaSuccess || !name) {
    cudaGetLastError(); /* an unnamed kernel is simply launched */
    return false;
  }
  for (const char *part = c->skip_kernels; *part;) {
    const char *end = strchr(part, ',');
    const size_t n = end ? (size_t)(end - part) : strlen(part);
    char want[128];
    if (n > 0 && n < sizeof want) {
      memcpy(want, part, n);
      want[n] = 0;
      if (strstr(name, want)) {
        launch_stand_in(c);
        return true;
      }
    }
    part = end ? end + 1 : part + n;
  }
  return false;
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
  /* cuBLAS's own workspace: given once, so that a captured decode step allocates none inside the graph */
  if (st == MIMO_OK)
    st = MIMO_CUDA(c, cudaMalloc(&c->blas_ws, CU_BLAS_WS));
  if (st == MIMO_OK)
    st = MIMO_CUBLAS(c, cublasSetWorkspace(c->blas, c->blas_ws, CU_BLAS_WS));
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
  const char *skip = getenv("MIMO_CUDA_SKIP_KERNELS");
  if (skip && *skip) {
    c->skip_kernels = skip;
    fprintf(stderr, "MIMO_CUDA_SKIP_KERNELS=%s: kernels left out for timing; every result is wrong\n", skip);
  }
  const char *links = getenv("MIMO_CUDA_EXTRA_LINKS");
  c->extra_links = links ? atoi(links) : 0;
  if (c->extra_links < 0 || c->extra_links > 8)
    c->extra_links = 0;
  c->mem_total = p.totalGlobalMem;
  c->mem_used += CU_BLAS_WS; /* cuBLAS's workspace, allocated above, counts against --gpu-memory-utilization too */
  c->sms = p.multiProcessorCount;
  snprintf(c->name, sizeof c->name, "%.200s (sm_%d, %d SMs, %.1f GiB%s)", p.name, c->cc, c->sms,
           p.totalGlobalMem / 1073741824.0, c->pdl ? ", programmatic dependent launch" : "");
  be->name = "cuda";
  be->alloc = cu_alloc;
  be->release = cu_release;
  be->linear = cu_linear;
  cu_ops_install(be); /* embed, positions, norms, rope, qkv split, elementwise ops (cuda_ops.cu) */
  cu_vision_install(be); /* the vision tower's ops (cuda_vision.cu) */
  be->attention = cu_attention;
  be->attention_seqs = cu_attention_seqs;
  be->moe = cu_moe;
  be->upload_linear = cu_upload_linear;
  be->upload_linear_cold = cu_upload_linear_cold;
  be->upload_vec = cu_upload_vec;
  be->kv_realloc = cu_kv_realloc;
  be->kv_free = cu_kv_free;
  be->kv_table_write = cu_kv_table_write;
  be->kv_copy = cu_kv_copy;
  be->download = cu_download;
  be->sample = cu_sample;
  be->bind_thread = cu_bind_thread;
  be->upload = mimo_cuda_upload;
  cu_graphs_install(be);
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
