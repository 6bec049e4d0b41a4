/* MIMO_CUDA_PROFILE=1: where a forward pass spends GPU time, per backend op and shape.
 *
 * Every op of the backend's table is wrapped: CUDA events recorded on the stream before and after it (no host
 * synchronisation added), resolved at the next download (which waits anyway: once per step). A window runs from
 * one download to the next; its span is first event to last, so span minus the time inside ops is what the GPU
 * spent between ops (launch gaps, host work it waited for). Printed to stderr when the backend is freed. The
 * events cost ~2 µs of host time per op and a little GPU time: figures for shares and ranking, not for the
 * headline step time (bench runs without it). Tensor-parallel all-reduces are set after this wrap and show up as
 * time between ops. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cuda/cuda_internal.h"

enum { PF_KEYS = 128, PF_KEY = 64 };

typedef struct pf_key {
  char name[PF_KEY];
  long calls;
  double ms;
} pf_key;

struct cu_prof {
  mimo_backend orig; /* the unwrapped table */
  cudaEvent_t *ev;   /* pairs: 2i before, 2i+1 after op i of the window */
  int *key;
  int n, cap;
  pf_key keys[PF_KEYS];
  int nkeys;
  int decode_only; /* every op of the open window had T = 1 */
  long windows[2]; /* [0] other windows, [1] decode windows (single tokens) */
  double span_ms[2], in_ops_ms[2];
};

static int pf_key_of(cu_prof *p, const char *name) {
  for (int i = 0; i < p->nkeys; i++)
    if (!strcmp(p->keys[i].name, name))
      return i;
  if (p->nkeys == PF_KEYS)
    return PF_KEYS - 1; /* the last bucket collects the overflow */
  snprintf(p->keys[p->nkeys].name, PF_KEY, "%s", name);
  return p->nkeys++;
}

void cu_profile_flush(cu_ctx *c) {
  cu_prof *p = c->prof;
  if (!p || !p->n)
    return;
  if (cudaEventSynchronize(p->ev[2 * p->n - 1]) == cudaSuccess) {
    float ms = 0.f;
    for (int i = 0; i < p->n; i++)
      if (cudaEventElapsedTime(&ms, p->ev[2 * i], p->ev[2 * i + 1]) == cudaSuccess) {
        p->keys[p->key[i]].ms += ms;
        p->keys[p->key[i]].calls++;
      }
    const int d = p->decode_only;
    double in_ops = 0.0;
    for (int i = 0; i < p->n; i++)
      if (cudaEventElapsedTime(&ms, p->ev[2 * i], p->ev[2 * i + 1]) == cudaSuccess)
        in_ops += ms;
    if (cudaEventElapsedTime(&ms, p->ev[0], p->ev[2 * p->n - 1]) == cudaSuccess) {
      p->span_ms[d] += ms;
      p->in_ops_ms[d] += in_ops;
      p->windows[d]++;
    }
  }
  (void)cudaGetLastError();
  p->n = 0;
  p->decode_only = 1;
}

static void pf_begin(mimo_backend *be, const char *name, int T) {
  cu_ctx *c = cu(be);
  cu_prof *p = c->prof;
  if (T > 1)
    p->decode_only = 0;
  if (p->n == p->cap) {
    if (p->cap >= 16384) { /* no download for a long while: resolve what is there */
      cu_profile_flush(c);
    } else {
      const int cap = p->cap ? 2 * p->cap : 256;
      cudaEvent_t *ev = (cudaEvent_t *)realloc(p->ev, (size_t)2 * cap * sizeof *ev);
      int *key = ev ? (int *)realloc(p->key, (size_t)cap * sizeof *key) : NULL;
      if (ev)
        p->ev = ev;
      if (!ev || !key)
        return;
      p->key = key;
      for (int i = 2 * p->cap; i < 2 * cap; i++)
        if (MIMO_CUDA(c, cudaEventCreate(&p->ev[i])) != MIMO_OK)
          return;
      p->cap = cap;
    }
  }
  p->key[p->n] = pf_key_of(p, name);
  MIMO_CUDA(c, cudaEventRecord(p->ev[2 * p->n], c->st));
}

static void pf_end(mimo_backend *be) {
  cu_ctx *c = cu(be);
  cu_prof *p = c->prof;
  if (p->n < p->cap) {
    MIMO_CUDA(c, cudaEventRecord(p->ev[2 * p->n + 1], c->st));
    p->n++;
  }
}

static const char *pf_t(int T) { return T == 1 ? "T=1" : T <= 8 ? "T<=8" : T <= 64 ? "T<=64" : "T>64"; }

static const char *pf_fmt(const mimo_linear *W) {
  const cu_lin *L = (const cu_lin *)W->dev;
  return !L ? "?" : L->fmt == CU_INT4 ? "int4" : L->fmt == CU_BF16 ? "bf16" : L->fmt == CU_F16 ? "f16" : "f32";
}

#define PF_ORIG(be) (cu(be)->prof->orig)

static void pf_embed(mimo_backend *be, float *out, const mimo_linear *table, const int *ids, int T) {
  pf_begin(be, "embed", T);
  PF_ORIG(be).embed(be, out, table, ids, T);
  pf_end(be);
}
static void pf_rmsnorm(mimo_backend *be, float *out, const float *x, const mimo_vec *w, int T, int n, float eps) {
  pf_begin(be, "rmsnorm", T);
  PF_ORIG(be).rmsnorm(be, out, x, w, T, n, eps);
  pf_end(be);
}
static void pf_add_rmsnorm(mimo_backend *be, float *out, float *h, const float *x, const mimo_vec *w, int T, int n,
                           float eps) {
  pf_begin(be, "add_rmsnorm", T);
  PF_ORIG(be).add_rmsnorm(be, out, h, x, w, T, n, eps);
  pf_end(be);
}
static void pf_linear(mimo_backend *be, float *y, const float *x, int T, const mimo_linear *W) {
  char k[PF_KEY];
  snprintf(k, sizeof k, "linear %dx%d %s %s", W->out, W->in, pf_fmt(W), pf_t(T));
  pf_begin(be, k, T);
  PF_ORIG(be).linear(be, y, x, T, W);
  pf_end(be);
}
static void pf_rope(mimo_backend *be, float *x, int T, int n_heads, int head_dim, int stride, int rot_dim,
                    const int *pos, double theta) {
  pf_begin(be, "rope", T);
  PF_ORIG(be).rope(be, x, T, n_heads, head_dim, stride, rot_dim, pos, theta);
  pf_end(be);
}
static void pf_scale(mimo_backend *be, float *x, long n, float s) {
  pf_begin(be, "scale", 1);
  PF_ORIG(be).scale(be, x, n, s);
  pf_end(be);
}
static void pf_copy2d(mimo_backend *be, float *dst, long dst_ld, const float *src, long src_ld, int rows, int cols) {
  pf_begin(be, "copy2d", 1);
  PF_ORIG(be).copy2d(be, dst, dst_ld, src, src_ld, rows, cols);
  pf_end(be);
}
static void pf_add(mimo_backend *be, float *y, const float *x, long n) {
  pf_begin(be, "add", 1);
  PF_ORIG(be).add(be, y, x, n);
  pf_end(be);
}
static void pf_qkv_split(mimo_backend *be, float *q, float *k, float *v, const float *qkv, int T, int chunks, int qc,
                         int kc, int vc, float v_scale, const mimo_rope_args *rope) {
  pf_begin(be, rope ? "qkv_split+rope" : "qkv_split", T);
  PF_ORIG(be).qkv_split(be, q, k, v, qkv, T, chunks, qc, kc, vc, v_scale, rope);
  pf_end(be);
}
static void pf_swiglu(mimo_backend *be, float *out, const float *gate, const float *up, long n) {
  pf_begin(be, "swiglu", 1);
  PF_ORIG(be).swiglu(be, out, gate, up, n);
  pf_end(be);
}
static void pf_attention(mimo_backend *be, mimo_attn_args *a) {
  char k[PF_KEY];
  snprintf(k, sizeof k, "attention %s %s", a->window > 0 ? "sliding" : "full", pf_t(a->T));
  pf_begin(be, k, a->T);
  PF_ORIG(be).attention(be, a);
  pf_end(be);
}
static void pf_attention_seqs(mimo_backend *be, mimo_attn_args *a, int n) {
  char k[PF_KEY];
  snprintf(k, sizeof k, "attention %s, %s sequences", a->window > 0 ? "sliding" : "full", n > 1 ? "several" : "one");
  pf_begin(be, k, a->T);
  PF_ORIG(be).attention_seqs(be, a, n);
  pf_end(be);
}
static void pf_moe(mimo_backend *be, mimo_moe_args *a) {
  char k[PF_KEY];
  snprintf(k, sizeof k, "moe %s", pf_t(a->T));
  pf_begin(be, k, a->T);
  PF_ORIG(be).moe(be, a);
  pf_end(be);
}

void cu_profile_install(mimo_backend *be) {
  cu_ctx *c = cu(be);
  const char *e = getenv("MIMO_CUDA_PROFILE");
  if (!e || !*e || !strcmp(e, "0") || c->prof)
    return;
  cu_prof *p = (cu_prof *)calloc(1, sizeof *p);
  if (!p)
    return;
  p->orig = *be;
  p->decode_only = 1;
  c->prof = p;
  be->embed = pf_embed;
  be->rmsnorm = pf_rmsnorm;
  be->add_rmsnorm = pf_add_rmsnorm;
  be->linear = pf_linear;
  be->rope = pf_rope;
  be->scale = pf_scale;
  be->copy2d = pf_copy2d;
  be->add = pf_add;
  be->qkv_split = pf_qkv_split;
  be->swiglu = pf_swiglu;
  be->attention = pf_attention;
  if (be->attention_seqs)
    be->attention_seqs = pf_attention_seqs;
  be->moe = pf_moe;
}

static int pf_by_ms(const void *a, const void *b) {
  const double x = ((const pf_key *)a)->ms, y = ((const pf_key *)b)->ms;
  return (x < y) - (x > y);
}

void cu_profile_report(cu_ctx *c) {
  cu_prof *p = c->prof;
  if (!p)
    return;
  cu_profile_flush(c);
  const double span = p->span_ms[0] + p->span_ms[1];
  if (p->windows[0] + p->windows[1]) {
    qsort(p->keys, (size_t)p->nkeys, sizeof *p->keys, pf_by_ms);
    fprintf(stderr, "cuda profile, device %d (windows run download to download):\n", c->device);
    for (int d = 1; d >= 0; d--)
      if (p->windows[d])
        fprintf(stderr, "  %s: %ld windows, span %.3f ms each, %.3f ms of it inside ops (%.1f %%)\n",
                d ? "single-token windows" : "other windows", p->windows[d], p->span_ms[d] / p->windows[d],
                p->in_ops_ms[d] / p->windows[d], 100.0 * p->in_ops_ms[d] / p->span_ms[d]);
    fprintf(stderr, "  %-44s %8s %10s %10s %7s\n", "op", "calls", "total ms", "us/call", "of span");
    for (int i = 0; i < p->nkeys; i++)
      fprintf(stderr, "  %-44s %8ld %10.3f %10.2f %6.1f%%\n", p->keys[i].name, p->keys[i].calls, p->keys[i].ms,
              p->keys[i].calls ? 1e3 * p->keys[i].ms / p->keys[i].calls : 0.0,
              span > 0 ? 100.0 * p->keys[i].ms / span : 0.0);
  }
  for (int i = 0; i < 2 * p->cap; i++)
    cudaEventDestroy(p->ev[i]);
  free(p->ev);
  free(p->key);
  free(p);
  c->prof = NULL;
}
