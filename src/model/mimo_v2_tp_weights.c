/* One tensor-parallel rank's config and weights, cut from the checkpoint's views
 * (issue 6; placement math in mimo_v2_shard.c):
 *   attention  query heads split, KV heads split or replicated; the fused qkv's
 *              rows gathered from the checkpoint's chunks into [Q_r | K_r | V_r];
 *              o_proj split by input columns (row-parallel, all-reduced)
 *   dense MLP  gate/up split by output rows, down by input columns
 *   experts    TP: every expert split like the dense MLP; EP: whole experts
 *   router, norms, embedding: replicated; lm_head split by vocabulary rows.
 * Row slices of row-major tensors are views into the mapped checkpoint; column
 * slices and gathers are host copies owned by the rank (a GPU backend has copied
 * them by the time the load returns, and they are freed then). */
#include <stdlib.h>
#include <string.h>

#include "core/num.h"
#include "model/mimo_v2.h"
#include "model/mimo_v2_shard.h"
#include "model/mimo_v2_tp.h"

static void *own(mimo_model *r, size_t bytes) {
  if (r->n_owned == r->cap_owned) {
    int cap = r->cap_owned ? 2 * r->cap_owned : 256;
    void **n = realloc(r->owned, (size_t)cap * sizeof *n);
    if (!n)
      return NULL;
    r->owned = n;
    r->cap_owned = cap;
  }
  void *p = malloc(bytes ? bytes : 1);
  if (p)
    r->owned[r->n_owned++] = p;
  return p;
}

void mimo_tp_release_copies(mimo_model *r) {
  for (int i = 0; i < r->n_owned; i++)
    free(r->owned[i]);
  r->n_owned = 0;
}

/* Zero points are packed 8 rows to a 32-bit word along the output dimension. */
static uint32_t zp_get(const uint32_t *z, int groups, int row, int g) {
  return (z[(size_t)(row / 8) * groups + g] >> (4 * (row % 8))) & 15u;
}

/* Rows [r0, r1). */
static mimo_status lin_rows(mimo_model *r, const mimo_linear *W, int r0, int r1, mimo_linear *o) {
  *o = *W;
  o->dev = NULL;
  o->out = r1 - r0;
  if (W->fmt == MIMO_WF_DENSE) {
    o->w = (const char *)W->w + (size_t)r0 * W->in * mimo_dtype_size(W->dt);
    return MIMO_OK;
  }
  int groups = W->in / W->group;
  o->packed = W->packed + (size_t)r0 * (W->in / 8);
  o->scale = (const char *)W->scale + (size_t)r0 * groups * mimo_dtype_size(W->scale_dt);
  if (W->zero && r0 % 8) { /* rows no longer start on a word: repack */
    uint32_t *z = own(r, (size_t)((o->out + 7) / 8) * groups * 4);
    if (!z)
      return mimo_errf(MIMO_E_NOMEM, "zero points of a slice");
    memset(z, 0, (size_t)((o->out + 7) / 8) * groups * 4);
    for (int i = 0; i < o->out; i++)
      for (int g = 0; g < groups; g++)
        z[(size_t)(i / 8) * groups + g] |= zp_get(W->zero, groups, r0 + i, g) << (4 * (i % 8));
    o->zero = z;
  } else if (W->zero) {
    o->zero = W->zero + (size_t)(r0 / 8) * groups;
  }
  return MIMO_OK;
}

static int gcd(int a, int b) {
  while (b) {
    int t = a % b;
    a = b;
    b = t;
  }
  return a;
}

/* Input columns [c0, c1): a copy. */
static mimo_status lin_cols(mimo_model *r, const mimo_linear *W, int c0, int c1, const char *what, mimo_linear *o) {
  *o = *W;
  o->dev = NULL;
  int n = c1 - c0;
  o->in = n;
  if (W->fmt == MIMO_WF_DENSE) {
    size_t es = mimo_dtype_size(W->dt);
    char *d = own(r, (size_t)W->out * n * es);
    if (!d)
      return mimo_errf(MIMO_E_NOMEM, "%s: column slice", what);
    for (int i = 0; i < W->out; i++)
      memcpy(d + (size_t)i * n * es, (const char *)W->w + ((size_t)i * W->in + c0) * es, (size_t)n * es);
    o->w = d;
    return MIMO_OK;
  }
  /* Local groups of g = gcd(group, c0, n) columns, each inside one checkpoint
   * group, whose scale and zero point they repeat: any cut works (g a multiple of 8). */
  int g = gcd(gcd(W->group, n), c0 ? c0 : W->group);
  if (g % 8)
    return mimo_errf(MIMO_E_CONFIG,
                     "%s: columns [%d, %d) of this rank cut int4 words (8 columns); choose a tensor-parallel size "
                     "that keeps multiples of 8 per rank (or --enable-expert-parallel for the experts)",
                     what, c0, c1);
  int groups = W->in / W->group, gn = n / g;
  size_t ss = mimo_dtype_size(W->scale_dt);
  uint32_t *pk = own(r, (size_t)W->out * (n / 8) * 4);
  char *sc = own(r, (size_t)W->out * gn * ss);
  uint32_t *zp = W->zero ? own(r, (size_t)((W->out + 7) / 8) * gn * 4) : NULL;
  if (!pk || !sc || (W->zero && !zp))
    return mimo_errf(MIMO_E_NOMEM, "%s: column slice", what);
  for (int i = 0; i < W->out; i++) {
    memcpy(pk + (size_t)i * (n / 8), W->packed + (size_t)i * (W->in / 8) + c0 / 8, (size_t)(n / 8) * 4);
    for (int j = 0; j < gn; j++)
      memcpy(sc + ((size_t)i * gn + j) * ss, (const char *)W->scale + ((size_t)i * groups + (c0 + j * g) / W->group) * ss,
             ss);
  }
  for (int i = 0; zp && i < (W->out + 7) / 8; i++)
    for (int j = 0; j < gn; j++)
      zp[(size_t)i * gn + j] = W->zero[(size_t)i * groups + (c0 + j * g) / W->group];
  o->group = g;
  o->packed = pk;
  o->scale = sc;
  o->zero = zp;
  return MIMO_OK;
}

/* Listed rows of a dense tensor, in list order: a copy. */
static mimo_status lin_gather(mimo_model *r, const mimo_linear *W, const int *rows, int n, mimo_linear *o) {
  if (W->fmt != MIMO_WF_DENSE)
    return mimo_errf(MIMO_E_CONFIG, "tensor parallel: gathering rows of an int4 tensor is not supported");
  size_t row_bytes = (size_t)W->in * mimo_dtype_size(W->dt);
  char *d = own(r, (size_t)n * row_bytes);
  if (!d)
    return mimo_errf(MIMO_E_NOMEM, "qkv rows");
  for (int i = 0; i < n; i++)
    memcpy(d + (size_t)i * row_bytes, (const char *)W->w + (size_t)rows[i] * row_bytes, row_bytes);
  *o = *W;
  o->dev = NULL;
  o->out = n;
  o->w = d;
  return MIMO_OK;
}

static mimo_vec vec_slice(const mimo_vec *v, int i0, int n) {
  mimo_vec o = *v;
  o.dev = NULL;
  if (v->n) {
    o.n = n;
    o.p = (const char *)v->p + (size_t)i0 * mimo_dtype_size(v->dt);
  }
  return o;
}

static mimo_vec vec_copy(const mimo_vec *v) {
  mimo_vec o = *v;
  o.dev = NULL;
  return o;
}

mimo_status mimo_tp_rank_config(const mimo_config *c, int tp, int rank, bool ep, mimo_config *o) {
  *o = *c;
  mimo_attn_geom *gs[2] = {&o->full, &o->swa};
  for (int i = 0; i < 2; i++) {
    MIMO_TRY(mimo_shard_check(gs[i], tp));
    mimo_shard_attn a;
    mimo_shard_attn_rank(gs[i], tp, rank, &a);
    gs[i]->n_heads = a.n_q_heads;
    gs[i]->n_kv_heads = a.n_kv_heads;
  }
  if (c->intermediate_size % tp)
    return mimo_errf(MIMO_E_CONFIG, "intermediate_size %d does not split over %d ranks", c->intermediate_size, tp);
  o->intermediate_size = c->intermediate_size / tp;
  if (ep) {
    if (c->n_routed_experts % tp)
      return mimo_errf(MIMO_E_CONFIG, "%d routed experts do not split over %d ranks", c->n_routed_experts, tp);
  } else if (c->moe_intermediate_size % tp) {
    return mimo_errf(MIMO_E_CONFIG, "moe_intermediate_size %d does not split over %d ranks", c->moe_intermediate_size,
                     tp);
  } else {
    o->moe_intermediate_size = c->moe_intermediate_size / tp;
  }
  o->qkv_chunks = 1; /* a rank's q, k, v are separate projections */
  return MIMO_OK;
}

static mimo_status rank_attention(mimo_model *r, const mimo_config *c, int L, const mimo_layer_weights *fw,
                                  mimo_layer_weights *lw) {
  const mimo_attn_geom *g = mimo_config_geom(c, L);
  mimo_shard_attn a;
  mimo_shard_attn_rank(g, r->tp, r->rank, &a);
  const int D = g->head_dim, V = g->v_head_dim;
  lw->fused_qkv = false;
  if (fw->fused_qkv) { /* de-chunk the checkpoint's [Q_c | K_c | V_c] blocks into this rank's [Q_r | K_r | V_r] */
    int n = mimo_shard_qkv_rows(g, r->tp);
    int *rows = malloc((size_t)n * sizeof *rows);
    if (!rows)
      return mimo_errf(MIMO_E_NOMEM, "qkv rows");
    mimo_shard_qkv_rank_rows(g, c->qkv_chunks, r->tp, r->rank, rows);
    mimo_linear all;
    mimo_status st = lin_gather(r, &fw->qkv, rows, n, &all);
    free(rows);
    MIMO_TRY(st);
    int nq = a.n_q_heads * D, nk = a.n_kv_heads * D;
    MIMO_TRY(lin_rows(r, &all, 0, nq, &lw->q));
    MIMO_TRY(lin_rows(r, &all, nq, nq + nk, &lw->k));
    MIMO_TRY(lin_rows(r, &all, nq + nk, n, &lw->v));
  } else {
    MIMO_TRY(lin_rows(r, &fw->q, a.q_head0 * D, (a.q_head0 + a.n_q_heads) * D, &lw->q));
    MIMO_TRY(lin_rows(r, &fw->k, a.kv_head0 * D, (a.kv_head0 + a.n_kv_heads) * D, &lw->k));
    MIMO_TRY(lin_rows(r, &fw->v, a.kv_head0 * V, (a.kv_head0 + a.n_kv_heads) * V, &lw->v));
  }
  MIMO_TRY(lin_cols(r, &fw->o, a.q_head0 * V, (a.q_head0 + a.n_q_heads) * V, "o_proj", &lw->o));
  lw->sink = vec_slice(&fw->sink, a.q_head0, a.n_q_heads);
  return MIMO_OK;
}

/* gate/up rows and down columns [i0, i1) of one SwiGLU block. */
static mimo_status split_mlp(mimo_model *r, const mimo_linear *gud, int i0, int i1, mimo_linear *out) {
  MIMO_TRY(lin_rows(r, &gud[0], i0, i1, &out[0]));
  MIMO_TRY(lin_rows(r, &gud[1], i0, i1, &out[1]));
  return lin_cols(r, &gud[2], i0, i1, "down_proj", &out[2]);
}

static mimo_status rank_ffn(mimo_model *r, const mimo_config *c, int L, const mimo_layer_weights *fw,
                            mimo_layer_weights *lw) {
  lw->moe = fw->moe;
  int i0, i1;
  if (!fw->moe) {
    mimo_shard_range(c->intermediate_size, r->tp, r->rank, &i0, &i1);
    mimo_linear full[3] = {fw->gate, fw->up, fw->down}, part[3];
    MIMO_TRY(split_mlp(r, full, i0, i1, part));
    lw->gate = part[0];
    lw->up = part[1];
    lw->down = part[2];
    return MIMO_OK;
  }
  lw->router = fw->router;
  lw->router.dev = NULL;
  lw->router_bias = vec_copy(&fw->router_bias);
  lw->expert_fmt = fw->expert_fmt;
  lw->expert_dt = fw->expert_dt;
  lw->expert_group = fw->expert_group;
  lw->expert_asym = fw->expert_asym;
  int E = c->n_routed_experts, e0 = 0, e1 = E;
  if (r->ep)
    mimo_shard_experts(E, r->tp, r->rank, &e0, &e1);
  lw->experts = calloc((size_t)(e1 - e0) * 3, sizeof *lw->experts);
  if (!lw->experts)
    return mimo_errf(MIMO_E_NOMEM, "layer %d experts", L);
  mimo_shard_range(c->moe_intermediate_size, r->tp, r->rank, &i0, &i1);
  for (int e = e0; e < e1; e++) {
    mimo_linear *dst = &lw->experts[(size_t)(e - e0) * 3];
    const mimo_linear *src = &fw->experts[(size_t)e * 3];
    if (r->ep) {
      for (int p = 0; p < 3; p++) {
        dst[p] = src[p];
        dst[p].dev = NULL;
      }
    } else {
      MIMO_TRY(split_mlp(r, src, i0, i1, dst));
    }
  }
  r->expert0 = r->ep ? e0 : 0;
  r->n_local = r->ep ? e1 - e0 : 0;
  return MIMO_OK;
}

mimo_status mimo_tp_rank_layer(mimo_model *r, const mimo_config *c, const mimo_weights *full, int L) {
  const mimo_layer_weights *fw = &full->layers[L];
  mimo_layer_weights *lw = &r->w.layers[L];
  lw->input_norm = vec_copy(&fw->input_norm);
  lw->post_norm = vec_copy(&fw->post_norm);
  MIMO_TRY(rank_attention(r, c, L, fw, lw));
  return rank_ffn(r, c, L, fw, lw);
}

mimo_status mimo_tp_rank_globals(mimo_model *r, const mimo_config *c, const mimo_weights *full, bool split_vocab) {
  r->w.embed = full->embed;
  r->w.embed.dev = NULL;
  r->w.final_norm = vec_copy(&full->final_norm);
  if (split_vocab) {
    mimo_shard_range(c->vocab_size, r->tp, r->rank, &r->vocab0, &r->vocab_n);
    r->vocab_n -= r->vocab0;
  } else {
    r->vocab0 = 0;
    r->vocab_n = c->vocab_size;
  }
  MIMO_TRY(lin_rows(r, &full->lm_head, r->vocab0, r->vocab0 + r->vocab_n, &r->w.lm_head));
  r->w.n_layers = full->n_layers;
  r->w.layers = calloc((size_t)full->n_layers, sizeof *r->w.layers);
  if (!r->w.layers)
    return mimo_errf(MIMO_E_NOMEM, "layers");
  return MIMO_OK;
}
