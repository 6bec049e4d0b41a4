#include "model/mimo_v2_weights.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/num.h"
#include "model/weights_bind.h"


/* compressed-tensors pack-quantized (spec §6.1-6.2). */
static mimo_status bind_int4(mimo_binder *b, const char *prefix, int out, int in, mimo_linear *l) {
  char name[512];
  const mimo_st_tensor *pk, *sc, *sh, *zp;
  const char *dir = b->ck->dir;
  snprintf(name, sizeof name, "%s.weight_g_idx", prefix);
  if (mimo_ckpt_find(b->ck, name))
    return mimo_errf(MIMO_E_CONFIG, "%s: '%s' present: activation ordering is not implemented", dir, name);
  if (in % 8)
    return mimo_errf(MIMO_E_FORMAT, "%s: %s: input dim %d is not a multiple of 8", dir, prefix, in);
  snprintf(name, sizeof name, "%s.weight_packed", prefix);
  MIMO_TRY(mimo_bind_get(b, name, &pk));
  MIMO_TRY(mimo_bind_expect_shape(b, pk, 2, out, in / 8));
  if (pk->dtype != MIMO_DT_I32)
    return mimo_errf(MIMO_E_FORMAT, "%s: tensor '%s' has dtype %s, expected I32", dir, name, mimo_dtype_name(pk->dtype));
  snprintf(name, sizeof name, "%s.weight_shape", prefix);
  MIMO_TRY(mimo_bind_get(b, name, &sh));
  if (sh->dtype != MIMO_DT_I64 || sh->ndim != 1 || sh->shape[0] != 2)
    return mimo_errf(MIMO_E_FORMAT, "%s: tensor '%s' must be I64 [2]", dir, name);
  int64_t dims[2];
  memcpy(dims, sh->data, sizeof dims);
  if (dims[0] != out || dims[1] != in)
    return mimo_errf(MIMO_E_FORMAT, "%s: tensor '%s' says [%lld, %lld], config needs [%d, %d]", dir, name,
                     (long long)dims[0], (long long)dims[1], out, in);
  snprintf(name, sizeof name, "%s.weight_scale", prefix);
  MIMO_TRY(mimo_bind_get(b, name, &sc));
  if (sc->ndim != 2 || sc->shape[0] != out || sc->shape[1] < 1 || in % sc->shape[1] != 0)
    return mimo_errf(MIMO_E_FORMAT, "%s: tensor '%s' must be [%d, in/group] with group dividing %d", dir, name, out, in);
  if (!mimo_bind_is_float(sc->dtype))
    return mimo_errf(MIMO_E_FORMAT, "%s: tensor '%s' has dtype %s, expected a float type", dir, name,
                     mimo_dtype_name(sc->dtype));
  int groups = (int)sc->shape[1], group = in / groups;
  if (group % 8)
    return mimo_errf(MIMO_E_FORMAT, "%s: tensor '%s' implies group size %d, not a multiple of 8", dir, name, group);
  const mimo_quant_config *q = &b->cfg->quant;
  if (q->present && q->group_size != group)
    return mimo_errf(MIMO_E_FORMAT, "%s: tensor '%s' implies group size %d, quantization_config says %d", dir, name, group,
                     q->group_size);
  snprintf(name, sizeof name, "%s.weight_zero_point", prefix);
  zp = mimo_ckpt_find(b->ck, name);
  if (zp) {
    MIMO_TRY(mimo_bind_get(b, name, &zp));
    MIMO_TRY(mimo_bind_expect_shape(b, zp, 2, (out + 7) / 8, groups));
    if (zp->dtype != MIMO_DT_I32)
      return mimo_errf(MIMO_E_FORMAT, "%s: tensor '%s' has dtype %s, expected I32", dir, name, mimo_dtype_name(zp->dtype));
  }
  if (q->present && q->symmetric && zp)
    return mimo_errf(MIMO_E_FORMAT, "%s: '%s' present but quantization_config is symmetric", dir, name);
  if (q->present && !q->symmetric && !zp)
    return mimo_errf(MIMO_E_FORMAT, "%s: missing tensor '%s' (quantization_config is asymmetric)", dir, name);
  memset(l, 0, sizeof *l);
  l->out = out;
  l->in = in;
  l->fmt = MIMO_WF_INT4;
  l->packed = pk->data;
  l->scale = sc->data;
  l->scale_dt = sc->dtype;
  l->zero = zp ? zp->data : NULL;
  l->group = group;
  return MIMO_OK;
}

/* A projection stored either dense (P.weight) or int4 (P.weight_packed ...). */
static mimo_status bind_proj(mimo_binder *b, const char *prefix, int out, int in, mimo_linear *l) {
  char name[512];
  snprintf(name, sizeof name, "%s.weight_packed", prefix);
  if (mimo_ckpt_find(b->ck, name))
    return bind_int4(b, prefix, out, in, l);
  snprintf(name, sizeof name, "%s.weight", prefix);
  if (!mimo_ckpt_find(b->ck, name))
    return mimo_errf(MIMO_E_FORMAT, "%s: missing tensor '%s' (or '%s.weight_packed')", b->ck->dir, name, prefix);
  return mimo_bind_dense(b, name, out, in, l);
}

/* The attention of the layer whose tensors start with prefix (model.layers.L, model.mtp.layers.M), geometry g. */
static mimo_status bind_attention_at(mimo_binder *b, const char *prefix, const mimo_attn_geom *g, mimo_layer_weights *lw) {
  const mimo_config *c = b->cfg;
  int H = c->hidden_size;
  char name[512];
  snprintf(name, sizeof name, "%s.self_attn.qkv_proj.weight", prefix);
  lw->fused_qkv = mimo_ckpt_find(b->ck, name) != NULL;
  if (lw->fused_qkv) {
    const mimo_st_tensor *t = mimo_ckpt_find(b->ck, name);
    int n = c->qkv_chunks;
    if (t->ndim != 2 || t->shape[0] % n != 0)
      return mimo_errf(MIMO_E_FORMAT, "%s: tensor '%s' has %lld rows, not divisible by the chunk count %d (num_key_value_heads)",
                       b->ck->dir, name, (long long)(t->ndim ? t->shape[0] : 0), n);
    if (g->n_heads % n || g->n_kv_heads % n)
      return mimo_errf(MIMO_E_CONFIG, "%s: %s: %d query / %d kv heads do not split into %d qkv chunks", b->ck->dir,
                       prefix, g->n_heads, g->n_kv_heads, n);
    int rows = g->n_heads * g->head_dim + g->n_kv_heads * (g->head_dim + g->v_head_dim);
    MIMO_TRY(mimo_bind_dense(b, name, rows, H, &lw->qkv));
  } else if (c->qkv_layout == MIMO_QKV_FUSED) {
    return mimo_errf(MIMO_E_FORMAT, "%s: missing tensor '%s' (config says attention_projection_layout fused_qkv)",
                     b->ck->dir, name);
  } else {
    snprintf(name, sizeof name, "%s.self_attn.q_proj", prefix);
    MIMO_TRY(bind_proj(b, name, g->n_heads * g->head_dim, H, &lw->q));
    snprintf(name, sizeof name, "%s.self_attn.k_proj", prefix);
    MIMO_TRY(bind_proj(b, name, g->n_kv_heads * g->head_dim, H, &lw->k));
    snprintf(name, sizeof name, "%s.self_attn.v_proj", prefix);
    MIMO_TRY(bind_proj(b, name, g->n_kv_heads * g->v_head_dim, H, &lw->v));
  }
  snprintf(name, sizeof name, "%s.self_attn.o_proj", prefix);
  MIMO_TRY(bind_proj(b, name, H, g->n_heads * g->v_head_dim, &lw->o));
  snprintf(name, sizeof name, "%s.self_attn.attention_sink_bias", prefix);
  if (g->has_sink) {
    MIMO_TRY(mimo_bind_vec(b, name, g->n_heads, &lw->sink));
  } else if (mimo_ckpt_find(b->ck, name)) {
    return mimo_errf(MIMO_E_FORMAT, "%s: unexpected tensor '%s': config gives this layer type no attention sink",
                     b->ck->dir, name);
  }
  return MIMO_OK;
}

static mimo_status bind_attention(mimo_binder *b, int L, mimo_layer_weights *lw) {
  char prefix[64];
  snprintf(prefix, sizeof prefix, "model.layers.%d", L);
  return bind_attention_at(b, prefix, mimo_config_geom(b->cfg, L), lw);
}

static mimo_status bind_experts(mimo_binder *b, int L, mimo_layer_weights *lw) {
  const mimo_config *c = b->cfg;
  int E = c->n_routed_experts, H = c->hidden_size, I = c->moe_intermediate_size;
  lw->experts = calloc((size_t)E * 3, sizeof *lw->experts);
  if (!lw->experts)
    return mimo_errf(MIMO_E_NOMEM, "layer %d experts", L);
  static const char *proj[3] = {"gate_proj", "up_proj", "down_proj"};
  char name[512];
  for (int e = 0; e < E; e++) {
    for (int p = 0; p < 3; p++) {
      snprintf(name, sizeof name, "model.layers.%d.mlp.experts.%d.%s", L, e, proj[p]);
      mimo_linear *l = &lw->experts[e * 3 + p];
      MIMO_TRY(bind_proj(b, name, p == 2 ? H : I, p == 2 ? I : H, l));
      const mimo_linear *first = &lw->experts[0];
      if (l->fmt != first->fmt || (l->fmt == MIMO_WF_INT4 && ((l->zero != NULL) != (first->zero != NULL))))
        return mimo_errf(MIMO_E_FORMAT, "%s: '%s' is stored %s but expert 0 of layer %d is %s: all experts of a layer share one format",
                         b->ck->dir, name, l->fmt == MIMO_WF_INT4 ? "int4" : "dense", L,
                         first->fmt == MIMO_WF_INT4 ? "int4" : "dense");
    }
  }
  lw->expert_fmt = lw->experts[0].fmt;
  lw->expert_dt = lw->experts[0].dt;
  lw->expert_group = lw->experts[0].group;
  lw->expert_asym = lw->experts[0].zero != NULL;
  return MIMO_OK;
}

static mimo_status bind_ffn(mimo_binder *b, int L, mimo_layer_weights *lw) {
  const mimo_config *c = b->cfg;
  int H = c->hidden_size;
  char name[512];
  lw->moe = c->layer_moe[L];
  if (!lw->moe) {
    int I = c->intermediate_size;
    snprintf(name, sizeof name, "model.layers.%d.mlp.gate_proj", L);
    MIMO_TRY(bind_proj(b, name, I, H, &lw->gate));
    snprintf(name, sizeof name, "model.layers.%d.mlp.up_proj", L);
    MIMO_TRY(bind_proj(b, name, I, H, &lw->up));
    snprintf(name, sizeof name, "model.layers.%d.mlp.down_proj", L);
    return bind_proj(b, name, H, I, &lw->down);
  }
  snprintf(name, sizeof name, "model.layers.%d.mlp.gate.weight", L);
  MIMO_TRY(mimo_bind_dense(b, name, c->n_routed_experts, H, &lw->router));
  snprintf(name, sizeof name, "model.layers.%d.mlp.gate.e_score_correction_bias", L);
  if (mimo_ckpt_find(b->ck, name))
    MIMO_TRY(mimo_bind_vec(b, name, c->n_routed_experts, &lw->router_bias));
  return bind_experts(b, L, lw);
}

static mimo_status bind_mtp(mimo_binder *b, int M, mimo_mtp_weights *t) {
  const mimo_config *c = b->cfg;
  const int H = c->hidden_size, I = c->intermediate_size;
  char p[64], name[128];
  snprintf(p, sizeof p, "model.mtp.layers.%d", M);
  mimo_vec *norms[] = {&t->enorm, &t->hnorm, &t->layer.input_norm, &t->layer.post_norm, &t->final_norm};
  static const char *nn[] = {"enorm", "hnorm", "input_layernorm", "pre_mlp_layernorm", "final_layernorm"};
  for (int k = 0; k < 5; k++) {
    snprintf(name, sizeof name, "%s.%s.weight", p, nn[k]);
    MIMO_TRY(mimo_bind_vec(b, name, H, norms[k]));
  }
  snprintf(name, sizeof name, "%s.eh_proj", p);
  MIMO_TRY(bind_proj(b, name, H, 2 * H, &t->eh_proj));
  MIMO_TRY(bind_attention_at(b, p, &c->swa, &t->layer));
  static const char *mlp[3] = {"gate_proj", "up_proj", "down_proj"};
  mimo_linear *l[3] = {&t->layer.gate, &t->layer.up, &t->layer.down};
  for (int k = 0; k < 3; k++) {
    snprintf(name, sizeof name, "%s.mlp.%s", p, mlp[k]);
    MIMO_TRY(bind_proj(b, name, k == 2 ? H : I, k == 2 ? I : H, l[k]));
  }
  t->layer.moe = false;
  return MIMO_OK;
}

mimo_status mimo_weights_bind(const mimo_config *c, const mimo_ckpt *ck, mimo_weights *w) {
  memset(w, 0, sizeof *w);
  mimo_binder b = {c, ck, &w->bytes};
  int H = c->hidden_size;
  mimo_status st = mimo_bind_dense(&b, "model.embed_tokens.weight", c->vocab_size, H, &w->embed);
  if (st == MIMO_OK)
    st = mimo_bind_vec(&b, "model.norm.weight", H, &w->final_norm);
  if (st == MIMO_OK) {
    if (c->tie_word_embeddings && !mimo_ckpt_find(ck, "lm_head.weight"))
      w->lm_head = w->embed;
    else
      st = mimo_bind_dense(&b, "lm_head.weight", c->vocab_size, H, &w->lm_head);
  }
  if (st == MIMO_OK) {
    w->layers = calloc((size_t)c->num_hidden_layers, sizeof *w->layers);
    w->n_layers = c->num_hidden_layers;
    if (!w->layers)
      st = mimo_errf(MIMO_E_NOMEM, "layers");
  }
  for (int L = 0; st == MIMO_OK && L < c->num_hidden_layers; L++) {
    mimo_layer_weights *lw = &w->layers[L];
    char name[256];
    snprintf(name, sizeof name, "model.layers.%d.input_layernorm.weight", L);
    st = mimo_bind_vec(&b, name, H, &lw->input_norm);
    snprintf(name, sizeof name, "model.layers.%d.post_attention_layernorm.weight", L);
    if (st == MIMO_OK)
      st = mimo_bind_vec(&b, name, H, &lw->post_norm);
    if (st == MIMO_OK)
      st = bind_attention(&b, L, lw);
    if (st == MIMO_OK)
      st = bind_ffn(&b, L, lw);
  }
  /* MTP layers (not in config.json: the checkpoint says how many there are) */
  char name[96];
  for (int M = 0; st == MIMO_OK && M < 16; M++) {
    snprintf(name, sizeof name, "model.mtp.layers.%d.eh_proj.weight", M);
    if (!mimo_ckpt_find(ck, name))
      break;
    mimo_mtp_weights *t = realloc(w->mtp, (size_t)(M + 1) * sizeof *t);
    if (!t) {
      st = mimo_errf(MIMO_E_NOMEM, "MTP layers");
      break;
    }
    w->mtp = t;
    memset(&w->mtp[M], 0, sizeof *w->mtp);
    w->n_mtp = M + 1;
    st = bind_mtp(&b, M, &w->mtp[M]);
  }
  if (st != MIMO_OK)
    mimo_weights_free(w);
  return st;
}

void mimo_weights_free(mimo_weights *w) {
  if (!w)
    return;
  for (int i = 0; w->layers && i < w->n_layers; i++)
    free(w->layers[i].experts);
  free(w->layers);
  w->layers = NULL;
  free(w->mtp);
  w->mtp = NULL;
  w->n_mtp = 0;
}

double mimo_linear_bytes(const mimo_linear *l) {
  if (l->fmt == MIMO_WF_INT4) {
    double groups = (double)l->out * (l->in / l->group);
    return (double)l->out * l->in / 2 + groups * mimo_dtype_size(l->scale_dt) +
           (l->zero ? (double)((l->out + 7) / 8) * (l->in / l->group) * 4 : 0);
  }
  return (double)l->out * l->in * mimo_dtype_size(l->dt);
}
