/* The ops the forward pass is written over. The model code (src/model) calls
 * only these; each backend (cpu, later cuda) implements all of them. Activations
 * are float32 row-major in backend memory; weights are views of the checkpoint
 * in its own formats (bf16/f16/f32 dense, int4 pack-quantized). */
#ifndef MIMO_BACKEND_BACKEND_H
#define MIMO_BACKEND_BACKEND_H
#include <math.h>
#include <stdbool.h>
#include <stdint.h>

#include "backend/sampling.h"
#include "core/status.h"
#include "io/safetensors.h"

typedef enum { MIMO_WF_DENSE, MIMO_WF_INT4 } mimo_wformat;

/* y = x · Wᵀ with W [out, in]. */
typedef struct mimo_linear {
  int out, in;
  mimo_wformat fmt;
  mimo_dtype dt;           /* dense: F32, BF16 or F16 */
  const void *w;           /* dense: [out][in] */
  const uint32_t *packed;  /* int4: [out][in/8], element c of a row in bits 4*(c%8) of word c/8, stored u = q+8 */
  const void *scale;       /* int4: [out][in/group] in scale_dt */
  mimo_dtype scale_dt;
  const uint32_t *zero;    /* int4 asymmetric: [ceil(out/8)][in/group], packed along rows; NULL = symmetric */
  int group;
  void *dev;               /* backend's copy (NULL: the backend reads the fields above) */
} mimo_linear;

/* A 1-D parameter (norm weight, sink logits, router bias). */
typedef struct mimo_vec {
  int n;
  mimo_dtype dt;
  const void *p;
  void *dev;               /* backend's copy, float32 [n] (NULL: read p) */
} mimo_vec;

float mimo_vec_get(const mimo_vec *v, int i);

/* Positions per block of a full-attention layer's cache (engine/kv_cache.h). */
#define MIMO_KV_BLOCK_LOG2 6
#define MIMO_KV_BLOCK (1 << MIMO_KV_BLOCK_LOG2)

/* One sequence's view of a layer's cached keys/values (owned by the engine; the storage comes from the backend's
 * kv_realloc, so it is device memory on a GPU backend, and so is the block table). Elements are float32, or bf16
 * (bf16 = 1), and offsets and strides count elements.
 *  - Sliding layers (ring = 1): k [cap][n_kv][head_dim], v [cap][n_kv][v_head_dim]; position p in slot p % cap.
 *  - Full layers (ring = 0): paged. blocks[p / MIMO_KV_BLOCK] holds MIMO_KV_BLOCK positions of every full layer
 *    of the sequence; this layer's keys start k_off elements into it, [MIMO_KV_BLOCK][n_kv][head_dim], its values
 *    v_off, [MIMO_KV_BLOCK][n_kv][v_head_dim]. cap = the positions the table covers.
 * With a bf16 cache, attention reads every key and value rounded to bf16 (nearest even), this step's own too, so
 * a prompt gives the same result however it is cut into steps. */
typedef struct mimo_kv_view {
  void *k, *v;          /* ring storage */
  void *const *blocks;  /* block table (paged) */
  int k_off, v_off;
  int cap;    /* slots */
  int ring;
  int len;    /* positions cached so far (0..len-1), before this step */
  int bf16;
} mimo_kv_view;

/* Position p's keys (isv = 0) or values of all n_kv heads, `row` = n_kv * dim elements. Host backends only: a
 * device backend's table and blocks are device memory. */
static inline void *mimo_kv_row(const mimo_kv_view *kv, int p, int isv, size_t row) {
  const size_t es = kv->bf16 ? 2 : 4;
  if (kv->ring)
    return (char *)(isv ? kv->v : kv->k) + (size_t)(p % kv->cap) * row * es;
  return (char *)kv->blocks[p >> MIMO_KV_BLOCK_LOG2] +
         ((size_t)(isv ? kv->v_off : kv->k_off) + (size_t)(p & (MIMO_KV_BLOCK - 1)) * row) * es;
}

/* Attention for one sequence's new tokens (T of them at positions len..len+T-1). */
typedef struct mimo_attn_args {
  const float *q;       /* [T][n_heads][head_dim] after RoPE */
  const float *k;       /* [T][n_kv][head_dim] after RoPE */
  const float *v;       /* [T][n_kv][v_head_dim], already scaled */
  float *out;           /* [T][n_heads][v_head_dim] */
  int T, n_heads, n_kv, head_dim, v_head_dim;
  int window;           /* 0 = full causal */
  float scale;          /* softmax scale, 1/sqrt(head_dim) */
  const mimo_vec *sink; /* NULL or [n_heads] extra denominator logits (not scaled) */
  mimo_kv_view *kv;     /* past keys; the op appends the new ones after use */
} mimo_attn_args;

typedef struct mimo_moe_args {
  const float *x;          /* [T][hidden] normed input */
  float *out;              /* [T][hidden], overwritten */
  int T, hidden, inter;
  int n_experts, top_k;
  const mimo_linear *router;   /* [n_experts, hidden], computed in fp32 */
  const mimo_vec *bias;        /* e_score_correction_bias [n_experts] or n=0 */
  const mimo_linear *experts;  /* [n_experts][3]: gate, up, down */
  bool norm_topk;
  float scaling;
  /* Expert parallel: this rank holds experts [expert0, expert0 + n_local) and `experts`
   * lists only those; slots routed elsewhere contribute nothing here (another rank
   * adds them in the all-reduce). n_local = 0: every expert is local. */
  int expert0, n_local;
  int *ids_out;               /* optional [T][top_k] chosen experts (for tests/traces) */
  float *margin_out;          /* optional [T], filled by the caller (+inf to start): lowered to the k-th chosen
                               * biased score minus the best one left out, i.e. how near the routing was to a
                               * tie, so one array collects the minimum over layers (CPU backend; traces) */
} mimo_moe_args;

/* RoPE's inverse frequency of rotated pair d, in fp32 as the reference computes it: one formula for every
 * backend, so their angles agree bit for bit. */
static inline float mimo_rope_inv_freq(double theta, int d, int rot_dim) {
  return (float)(1.0 / pow(theta, (double)(2 * d) / rot_dim));
}

/* Partial NeoX RoPE on q [T][n_q_heads][head_dim] and k [T][n_kv_heads][head_dim] (see rope()). */
typedef struct mimo_rope_args {
  int n_q_heads, n_kv_heads, head_dim, rot_dim;
  const int *pos; /* [T] */
  double theta;
} mimo_rope_args;

/* Vision tower attention (spec §4.4): bidirectional over each frame-sequence [seq_start[s], seq_start[s+1]) of
 * the T tokens, GQA (q head h reads kv head h / (n_heads / n_kv)), all heads of width head_dim. */
typedef struct mimo_vit_attn_args {
  const float *q;          /* [T][n_heads][head_dim] after RoPE */
  const float *k;          /* [T][n_kv][head_dim] after RoPE */
  const float *v;          /* [T][n_kv][head_dim] */
  float *out;              /* [T][n_heads][head_dim] */
  int T, n_heads, n_kv, head_dim;
  int n_seq;
  const int *seq_start;    /* [n_seq + 1], host memory */
  int window;              /* 0: every key of the sequence; else keys with |i - j| <= window (sequence-local) */
  float scale;
  const mimo_vec *sink;    /* NULL or [n_heads] */
  bool sink_key0;          /* sink added to the logit of the sequence's key 0 (else an extra denominator column) */
} mimo_vit_attn_args;

typedef struct mimo_backend mimo_backend;
struct mimo_backend {
  const char *name;
  void *ctx;
  void (*free)(mimo_backend *be);
  float *(*alloc)(mimo_backend *be, size_t n_floats);      /* step scratch; NULL on OOM */
  void (*release)(mimo_backend *be, float *p);
  void (*embed)(mimo_backend *be, float *out, const mimo_linear *table, const int *ids, int T);
  /* Optional: the step's T token positions, given before its first op so that a device backend can bring them
   * over while nothing waits for them (NULL: the positions come with the rope and qkv_split calls only). */
  void (*positions)(mimo_backend *be, const int *pos, int T);
  void (*rmsnorm)(mimo_backend *be, float *out, const float *x, const mimo_vec *w, int T, int n, float eps);
  /* The residual add and the next norm in one pass: h += x, then out = rmsnorm(h) (same arithmetic as add
   * followed by rmsnorm). */
  void (*add_rmsnorm)(mimo_backend *be, float *out, float *h, const float *x, const mimo_vec *w, int T, int n,
                      float eps);
  void (*linear)(mimo_backend *be, float *y, const float *x, int T, const mimo_linear *W);
  /* In place on heads of width head_dim laid out with stride `stride` floats per token. */
  void (*rope)(mimo_backend *be, float *x, int T, int n_heads, int head_dim, int stride, int rot_dim,
               const int *pos, double theta);
  void (*scale)(mimo_backend *be, float *x, long n, float s);
  /* dst[r][0..cols) = src[r][0..cols) with row strides dst_ld/src_ld (floats). */
  void (*copy2d)(mimo_backend *be, float *dst, long dst_ld, const float *src, long src_ld, int rows, int cols);
  void (*add)(mimo_backend *be, float *y, const float *x, long n);
  /* Optional: x[0..n) = 0 (tensor-parallel ranks gather their logits slices with it; NULL: they cannot). */
  void (*zero)(mimo_backend *be, float *x, long n);
  /* q, k, v out of the fused projection qkv [T][chunks * (qc + kc + vc)], stored as `chunks` blocks
   * [Q_c | K_c | V_c] per token (spec §3.3): q [T][chunks*qc], k [T][chunks*kc], v [T][chunks*vc] in natural
   * head order, v multiplied by v_scale, then (rope != NULL) RoPE on q and k exactly as rope() on each. One
   * pass (not a copy per block, a scale and two rope launches). */
  void (*qkv_split)(mimo_backend *be, float *q, float *k, float *v, const float *qkv, int T, int chunks, int qc,
                    int kc, int vc, float v_scale, const mimo_rope_args *rope);
  void (*swiglu)(mimo_backend *be, float *out, const float *gate, const float *up, long n);
  void (*attention)(mimo_backend *be, mimo_attn_args *a);
  /* Optional (NULL: attention per sequence): the step's n sequences at once, each as attention() would; a device
   * backend runs the one-token ones together. */
  void (*attention_seqs)(mimo_backend *be, mimo_attn_args *a, int n);
  void (*moe)(mimo_backend *be, mimo_moe_args *a);

  /* Vision tower ops (model/vision.c). Optional as a set: a backend without them (NULL) has its images encoded
   * on a CPU backend. */
  void (*bias_add)(mimo_backend *be, float *y, const mimo_vec *b, int T, int n);          /* y[t] += b */
  void (*gelu)(mimo_backend *be, float *x, long n);                                    /* exact (erf) GELU */
  /* LayerNorm with a weight and no bias: w ⊙ (x - mean) / sqrt(var + eps), var the biased variance. */
  void (*layernorm)(mimo_backend *be, float *out, const float *x, const mimo_vec *w, int T, int n, float eps);
  /* 2-D rotate-half RoPE over whole heads: dim d pairs with d + head_dim/2; pair d turns by hpos[t]·f(d) for
   * d < head_dim/4 and wpos[t]·f(d - head_dim/4) after, f(i) = theta^(-2i/(head_dim/2)) in fp32. */
  void (*rope_2d)(mimo_backend *be, float *x, int T, int n_heads, int head_dim, int stride, const int *hpos,
                  const int *wpos, double theta);
  void (*vit_attention)(mimo_backend *be, const mimo_vit_attn_args *a);
  /* dst[r] = src[idx[r]] for rows of cols floats (idx in host memory). */
  void (*gather_rows)(mimo_backend *be, float *dst, const float *src, const int *idx, int rows, int cols);

  /* Optional hooks; NULL means host memory (the CPU default). */
  /* Called once per weight by mimo_model_load: copy/repack into backend memory, set ->dev. */
  mimo_status (*upload_linear)(mimo_backend *be, mimo_linear *W);
  /* The same for a weight a step reads little of (a routed expert: top-k of many); the backend may keep it where
   * its kernels reach it more slowly but memory is plentiful (a GPU: pinned host memory read over the bus, up to
   * --cpu-offload-gb). NULL: upload_linear. */
  mimo_status (*upload_linear_cold)(mimo_backend *be, mimo_linear *W);
  mimo_status (*upload_vec)(mimo_backend *be, mimo_vec *v);
  /* KV storage: grow p from old_n to new_n floats keeping its contents (p may be NULL);
   * NULL on OOM with p untouched. */
  float *(*kv_realloc)(mimo_backend *be, float *p, size_t old_n, size_t new_n);
  void (*kv_free)(mimo_backend *be, float *p);
  /* Block tables (with kv_realloc): n pointers from the host into backend memory at dst, in order with the ops
   * (the host array may change as soon as this returns; no wait for queued work). */
  void (*kv_table_write)(mimo_backend *be, void **dst, void *const *src, int n);
  /* Optional (NULL: memcpy): bytes of KV storage (kv_realloc's) from src to dst, in order with the ops. */
  void (*kv_copy)(mimo_backend *be, void *dst, const void *src, size_t bytes);
  /* Copies n floats of backend memory to the host, waits for all queued work and
   * returns the first error any op met (ops themselves return nothing). */
  mimo_status (*download)(mimo_backend *be, float *host, const float *src, size_t n);
  /* Optional (NULL: the model samples on the host): row r of logits [rows][V] (backend memory, overwritten)
   * sampled with jobs[r] as mimo_sample_logits would, into tokens[r] (-1: skipped, or no usable logit) and
   * infos[r] (when infos and jobs[r].logprobs > 0). Waits for the step and returns its first error, as
   * download does. */
  mimo_status (*sample)(mimo_backend *be, float *logits, int rows, int V, const mimo_sample_job *jobs, int *tokens,
                        mimo_sample_info *infos);
  /* Host to backend memory (NULL with download NULL). */
  mimo_status (*upload)(mimo_backend *be, float *dst, const float *host, size_t n);
  /* Optional (NULL: ops run as they are issued). The ops issued between graph_begin and graph_end are recorded
   * and then run as one unit (a CUDA graph), kept per (shape, part) (shape: the caller's key for steps whose ops
   * differ only in their arguments; part: which stretch of the step) and updated each time. A step may record in
   * several parts so that the device runs one while the host records the next. graph_begin returns false when it
   * does not record (the ops then run as usual and graph_end is not called); graph_end runs what was recorded and
   * returns the step's first error. Nothing between them may wait for the backend (download, sample). */
  bool (*graph_begin)(mimo_backend *be, int shape, int part);
  mimo_status (*graph_end)(mimo_backend *be);
  /* Tensor parallel (set by the group that joins backends into ranks, NULL alone):
   * x[0..n) becomes the sum over the ranks of their x, identical on every rank. */
  void (*all_reduce)(mimo_backend *be, float *x, long n);
  void *comm;
  /* Makes the calling thread able to run this backend's ops (a GPU backend selects its
   * device); NULL when any thread can. */
  mimo_status (*bind_thread)(mimo_backend *be);
};

mimo_status mimo_backend_cpu_init(mimo_backend **out, int n_threads);
/* Hands the weights to be->upload_* when the backend has them (no-op on the CPU). */
mimo_status mimo_backend_upload_linear(mimo_backend *be, mimo_linear *W);
/* A routed expert's weight: be->upload_linear_cold where the backend has it, else as mimo_backend_upload_linear. */
mimo_status mimo_backend_upload_linear_cold(mimo_backend *be, mimo_linear *W);
mimo_status mimo_backend_upload_vec(mimo_backend *be, mimo_vec *v);
/* n floats host -> backend memory (its upload op, or a copy where backend memory is the host's). */
mimo_status mimo_backend_to(mimo_backend *be, float *dst, const float *host, size_t n);
/* n floats backend memory -> host, after the queued work (download), or a copy. */
mimo_status mimo_backend_from(mimo_backend *be, float *host, const float *src, size_t n);
#endif
