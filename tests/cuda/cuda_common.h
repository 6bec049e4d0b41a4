/* Shared helpers of the GPU checks and benchmarks (tests/cuda, run by tools/gpu-check). */
#ifndef MIMO_TESTS_CUDA_COMMON_H
#define MIMO_TESTS_CUDA_COMMON_H
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cuda_runtime.h>

#include "backend/backend.h"
#include "backend/cuda/cuda_backend.h"
#include "core/num.h"

/* cuda_moe.cu test hook: NULL or five cudaEvent_t (router, routing, gate+up, down boundaries) */
void mimo_cuda_moe_events(void *ev5);
/* cuda_moe_tc.cu test hook: 1 = the fp32 int4 decode kernels instead of the tensor-core ones; returns the old */
int mimo_cuda_moe_decode_fp32(int on);
/* cuda_moe_route.cu: 1 = router GEMV and routing as two launches (the fused kernel otherwise); returns the old */
int mimo_cuda_moe_route_split(int on);
/* cuda_moe_tc.cu: the grouping threshold in tokens (t > 0 sets it) and the grouped kernels' launch shapes
 * (as mimo_cuda_moe_tc_variant); cuda_moe_gemm.cu: the grouped GEMM's threshold. Each returns the old value. */
int mimo_cuda_moe_tcg_min_t(int t);
int mimo_cuda_moe_tcg_variant(int up, int dn, char *label, int n);
int mimo_cuda_moe_grouped_min_t(int t);
/* cuda_sample.cu: blocks per sampled row (g > 0 fixes it, clamped to the device's cluster limit; 0 chooses by the
 * row count); returns the old value */
int mimo_cuda_sample_group(int g);
/* cuda_linear_x3.cu: 1 = fp32 linears as three tf32 products on wgmma where they fit (MIMO_CUDA_F32_GEMM=x3);
 * returns the old value */
int mimo_cuda_f32_x3(int on);

static uint64_t rng_s = 0x9e3779b97f4a7c15ull;
static inline uint64_t rnd64(void) {
  rng_s ^= rng_s << 13;
  rng_s ^= rng_s >> 7;
  rng_s ^= rng_s << 17;
  return rng_s;
}
static inline float rndf(void) { return (float)((rnd64() >> 40) * (1.0 / 16777216.0)) * 2.0f - 1.0f; }
static inline void fill(float *p, size_t n, float s) {
  for (size_t i = 0; i < n; i++)
    p[i] = s * rndf();
}
static inline uint16_t to_bf16(float f) {
  uint32_t b;
  memcpy(&b, &f, 4);
  return (uint16_t)((b + 0x7fffu + ((b >> 16) & 1u)) >> 16);
}
static inline void *xmalloc(size_t n) {
  void *p = malloc(n ? n : 1);
  if (!p) {
    fprintf(stderr, "out of host memory (%zu bytes)\n", n);
    exit(2);
  }
  return p;
}
static inline void must(mimo_status st, const char *what) {
  if (st != MIMO_OK) {
    fprintf(stderr, "%s: %s\n", what, mimo_errmsg());
    exit(2);
  }
}
/* ‖g − c‖ / ‖c‖ in double; infinite if g has a non-finite value. */
static inline double relerr(const float *g, const float *c, size_t n) {
  double num = 0, den = 0;
  for (size_t i = 0; i < n; i++) {
    if (!isfinite(g[i]))
      return INFINITY;
    num += ((double)g[i] - c[i]) * ((double)g[i] - c[i]);
    den += (double)c[i] * c[i];
  }
  return sqrt(num / (den > 0 ? den : 1e-30));
}

/* A CUDA runtime, cuBLAS or cuBLASLt call that must succeed (status 0), else the test binary stops with its name. */
#define CK(x)                                                                                                        \
  do {                                                                                                               \
    const int ck_status_ = (int)(x);                                                                                 \
    if (ck_status_ != 0) {                                                                                           \
      fprintf(stderr, "%s:%d: %s failed (%d)\n", __FILE__, __LINE__, #x, ck_status_);                                \
      exit(2);                                                                                                       \
    }                                                                                                                \
  } while (0)

static inline int cmp_float(const void *a, const void *b) {
  const float x = *(const float *)a, y = *(const float *)b;
  return (x > y) - (x < y);
}
/* Median of n timings (sorts v). */
static inline float median(float *v, int n) {
  qsort(v, (size_t)n, sizeof *v, cmp_float);
  return v[n / 2];
}

/* Median milliseconds of reps (<= 32) calls of run(arg), each between two events on the default stream, after 3
 * untimed ones (library calls such as cuBLAS's, which take no backend). */
static inline float time_default_stream_ms(void (*run)(void *), void *arg, int reps) {
  cudaEvent_t e0, e1;
  float ms[32];
  reps = reps < 1 ? 1 : reps > 32 ? 32 : reps;
  CK(cudaEventCreate(&e0));
  CK(cudaEventCreate(&e1));
  for (int r = 0; r < reps + 3; r++) {
    CK(cudaEventRecord(e0, 0));
    run(arg);
    CK(cudaEventRecord(e1, 0));
    CK(cudaEventSynchronize(e1));
    if (r >= 3)
      CK(cudaEventElapsedTime(&ms[r - 3], e0, e1));
  }
  cudaEventDestroy(e0);
  cudaEventDestroy(e1);
  return median(ms, reps);
}

/* Device copy of a host array. */
static inline float *to_dev(mimo_backend *g, const float *h, size_t n) {
  float *d = g->alloc(g, n);
  if (!d)
    must(MIMO_E_NOMEM, "device alloc");
  must(mimo_cuda_upload(g, d, h, n), "upload");
  return d;
}
static inline void from_dev(mimo_backend *g, float *h, const float *d, size_t n) { must(g->download(g, h, d, n), "download"); }

/* One layer's KV cache in kv_cache.c's layout, for the CPU backend (host) and the GPU alike, each in one buffer of
 * n elements (float32, or bf16) with the same layout, so whole caches compare with memcmp: a ring (ring: keys then
 * values), else blocks of MIMO_KV_BLOCK positions (keys then values in each) that the block table visits
 * backwards, as a pool hands out blocks that came back. */
typedef struct {
  mimo_kv_view c, g; /* the CPU's and the GPU's views */
  char *hs, *ds;     /* storage: host, device */
  size_t n, es;      /* elements, and their size */
  void **htab, **dtab; /* block tables: host, device */
} kv_pair;

static inline void kv_pair_init(kv_pair *p, mimo_backend *g, int cap, int ring, int nkv, int D, int V, int bf16) {
  memset(p, 0, sizeof *p);
  const size_t kr = (size_t)nkv * D, vr = (size_t)nkv * V;
  if (!ring)
    cap = (cap + MIMO_KV_BLOCK - 1) / MIMO_KV_BLOCK * MIMO_KV_BLOCK;
  p->es = bf16 ? 2 : 4;
  p->n = (size_t)cap * (kr + vr);
  p->hs = xmalloc(p->n * p->es);
  p->ds = (char *)g->kv_realloc(g, NULL, 0, (p->n * p->es + 3) / 4);
  if (!p->ds)
    must(MIMO_E_NOMEM, "kv alloc");
  p->c = (mimo_kv_view){.cap = cap, .ring = ring, .bf16 = bf16};
  if (ring) {
    p->c.k = p->hs;
    p->c.v = p->hs + (size_t)cap * kr * p->es;
    p->g = p->c;
    p->g.k = p->ds;
    p->g.v = p->ds + (size_t)cap * kr * p->es;
    return;
  }
  const int nb = cap / MIMO_KV_BLOCK;
  const size_t bb = (size_t)MIMO_KV_BLOCK * (kr + vr) * p->es;
  void **dh = xmalloc((size_t)nb * sizeof *dh);
  p->htab = xmalloc((size_t)nb * sizeof *p->htab);
  for (int b = 0; b < nb; b++) {
    p->htab[b] = p->hs + (size_t)(nb - 1 - b) * bb;
    dh[b] = p->ds + (size_t)(nb - 1 - b) * bb;
  }
  p->dtab = (void **)g->kv_realloc(g, NULL, 0, (size_t)nb * (sizeof(void *) / sizeof(float)));
  if (!p->dtab)
    must(MIMO_E_NOMEM, "kv table alloc");
  g->kv_table_write(g, p->dtab, dh, nb);
  free(dh);
  p->c.blocks = p->htab;
  p->c.k_off = 0;
  p->c.v_off = (int)(MIMO_KV_BLOCK * kr);
  p->g = p->c;
  p->g.blocks = p->dtab;
}

/* The same random contents on both sides (bf16: rounded from the same floats). */
static inline void kv_pair_fill(kv_pair *p, mimo_backend *g) {
  float *f = xmalloc(p->n * 4);
  fill(f, p->n, 1.0f);
  if (p->es == 2)
    for (size_t i = 0; i < p->n; i++)
      ((uint16_t *)p->hs)[i] = mimo_f32_to_bf16(f[i]);
  else
    memcpy(p->hs, f, p->n * 4);
  free(f);
  must(mimo_cuda_upload(g, (float *)p->ds, (const float *)p->hs, (p->n * p->es + 3) / 4), "upload");
}

/* The device storage back into buf (n · es bytes, rounded up to whole floats). */
static inline void kv_pair_get(kv_pair *p, mimo_backend *g, void *buf) {
  from_dev(g, buf, (const float *)p->ds, (p->n * p->es + 3) / 4);
}
static inline void kv_pair_put(kv_pair *p, mimo_backend *g, const void *buf) {
  must(mimo_cuda_upload(g, (float *)p->ds, buf, (p->n * p->es + 3) / 4), "upload");
}

/* Whether the GPU's cache equals the CPU's, byte for byte. */
static inline int kv_pair_equal(kv_pair *p, mimo_backend *g) {
  char *h = xmalloc((p->n * p->es + 3) / 4 * 4);
  kv_pair_get(p, g, h);
  const int eq = p->c.len == p->g.len && !memcmp(h, p->hs, p->n * p->es);
  free(h);
  return eq;
}

static inline void kv_pair_free(kv_pair *p, mimo_backend *g) {
  free(p->hs);
  free(p->htab);
  g->kv_free(g, (float *)p->ds);
  if (p->dtab)
    g->kv_free(g, (float *)p->dtab);
}

/* A random int4 pack-quantized weight (bf16 scales; zero points when asym). */
static inline mimo_linear rand_int4(int out, int in, int group, int asym) {
  mimo_linear l;
  memset(&l, 0, sizeof l);
  l.out = out;
  l.in = in;
  l.fmt = MIMO_WF_INT4;
  l.group = group;
  l.scale_dt = MIMO_DT_BF16;
  uint32_t *q = xmalloc((size_t)out * in / 8 * 4);
  for (size_t i = 0; i < (size_t)out * in / 8; i++)
    q[i] = (uint32_t)rnd64();
  uint16_t *s = xmalloc((size_t)out * (in / group) * 2);
  for (size_t i = 0; i < (size_t)out * (in / group); i++)
    s[i] = to_bf16(0.01f + 0.01f * fabsf(rndf()));
  l.packed = q;
  l.scale = s;
  if (asym) {
    uint32_t *z = xmalloc((size_t)((out + 7) / 8) * (in / group) * 4);
    for (size_t i = 0; i < (size_t)((out + 7) / 8) * (in / group); i++)
      z[i] = (uint32_t)rnd64();
    l.zero = z;
  }
  return l;
}
/* A dense weight over host data w [out][in]; free_lin frees w with it. */
static inline mimo_linear dense_linear(int out, int in, mimo_dtype dt, const void *w) {
  mimo_linear l;
  memset(&l, 0, sizeof l);
  l.out = out;
  l.in = in;
  l.fmt = MIMO_WF_DENSE;
  l.dt = dt;
  l.w = w;
  return l;
}
static inline mimo_linear rand_dense(int out, int in, mimo_dtype dt, float scale) {
  size_t n = (size_t)out * in;
  if (dt == MIMO_DT_BF16) {
    uint16_t *w = xmalloc(n * 2);
    for (size_t i = 0; i < n; i++)
      w[i] = to_bf16(scale * rndf());
    return dense_linear(out, in, dt, w);
  }
  float *w = xmalloc(n * 4);
  fill(w, n, scale);
  return dense_linear(out, in, dt, w);
}
static inline void free_lin(mimo_linear *l) {
  free((void *)l->w);
  free((void *)l->packed);
  free((void *)l->scale);
  free((void *)l->zero);
}

int cuda_bench_main(int argc, char **argv);
/* cuda_bench.c: achieved cuBLAS bf16 GEMM rate n x n x n in FLOP/s (the compute ceiling of every benchmark);
 * the copy-bandwidth ceiling is mimo_cuda_copy_bandwidth() (cuda_backend.h). */
double cublas_bf16_rate(int n);
/* attn_check.c: tensor-core attention prefill / split-KV decode checks (argv[1] = check) and benchmarks (bench) */
int cuda_attn_main(int argc, char **argv);
/* moe_prefill_check.c: grouped int4/bf16 MoE GEMM checks (check) and benchmarks (bench) */
int cuda_moe_prefill_main(int argc, char **argv);
/* sample_check.c: the device sampler against the host sampler (check) and against download + host (bench) */
int cuda_sample_main(int argc, char **argv);
/* allreduce_check.c: NCCL all-reduce between this host's GPUs: exact sums, latency 8 KB .. 64 MB */
int cuda_allreduce_main(int argc, char **argv);
/* graph_check.c: decode steps as CUDA graphs = the same steps launched as issued, bitwise, over a serving schedule */
int cuda_graph_main(int argc, char **argv);
#endif
