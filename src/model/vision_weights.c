/* visual.* tensors bound to the vision tower's weight views (spec §4.2), checked against vision_config. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/vision.h"
#include "model/weights_bind.h"

static mimo_status bind_linear_bias(mimo_binder *b, const char *prefix, int out, int in, mimo_linear *l,
                                    mimo_vec *bias) {
  char name[256];
  snprintf(name, sizeof name, "%s.weight", prefix);
  MIMO_TRY(mimo_bind_dense(b, name, out, in, l));
  snprintf(name, sizeof name, "%s.bias", prefix);
  return mimo_bind_vec(b, name, out, bias);
}

/* The Conv3d kernel [hidden, C, tp, p, p] is one [hidden, C*tp*p*p] matrix over patch rows in (c, tt, py, px)
 * order: its own memory order. */
static mimo_status bind_patch_embed(mimo_binder *b, const mimo_vision_config *v, mimo_linear *l) {
  const char *name = "visual.patch_embed.proj.weight";
  const mimo_st_tensor *t;
  MIMO_TRY(mimo_bind_get(b, name, &t));
  const int64_t want[5] = {v->hidden, v->in_chans, v->temporal_patch, v->patch, v->patch};
  bool ok = t->ndim == 5;
  for (int i = 0; ok && i < 5; i++)
    ok = t->shape[i] == want[i];
  if (!ok) {
    char have[128];
    return mimo_errf(MIMO_E_FORMAT, "%s: tensor '%s' has shape %s, config needs [%d, %d, %d, %d, %d]", b->ck->dir, name,
                     mimo_bind_shape_str(t, have, sizeof have), v->hidden, v->in_chans, v->temporal_patch, v->patch,
                     v->patch);
  }
  if (!mimo_bind_is_float(t->dtype))
    return mimo_errf(MIMO_E_FORMAT, "%s: tensor '%s' has dtype %s, expected F32, BF16 or F16", b->ck->dir, name,
                     mimo_dtype_name(t->dtype));
  memset(l, 0, sizeof *l);
  l->out = v->hidden;
  l->in = v->in_chans * v->temporal_patch * v->patch * v->patch;
  l->fmt = MIMO_WF_DENSE;
  l->dt = t->dtype;
  l->w = t->data;
  return MIMO_OK;
}

static mimo_status bind_block(mimo_binder *b, const mimo_vision_config *v, int i, mimo_vit_block *blk) {
  char p[128], name[192];
  const int H = v->hidden, q = v->n_heads * v->head_dim, kv = v->n_kv_heads * v->head_dim;
  snprintf(p, sizeof p, "visual.blocks.%d", i);
  snprintf(name, sizeof name, "%s.norm1.weight", p);
  MIMO_TRY(mimo_bind_vec(b, name, H, &blk->norm1));
  snprintf(name, sizeof name, "%s.norm2.weight", p);
  MIMO_TRY(mimo_bind_vec(b, name, H, &blk->norm2));
  snprintf(name, sizeof name, "%s.attn.qkv", p);
  MIMO_TRY(bind_linear_bias(b, name, q + 2 * kv, H, &blk->qkv, &blk->qkv_bias));
  snprintf(name, sizeof name, "%s.attn.proj", p);
  MIMO_TRY(bind_linear_bias(b, name, H, q, &blk->proj, &blk->proj_bias));
  snprintf(name, sizeof name, "%s.attn.sinks", p);
  const bool sink = v->use_sink && v->attn[i] != MIMO_VIT_FULL;
  if (sink)
    MIMO_TRY(mimo_bind_vec(b, name, v->n_heads, &blk->sinks));
  else if (mimo_ckpt_find(b->ck, name))
    return mimo_errf(MIMO_E_FORMAT, "%s: unexpected tensor '%s': vision_config gives block %d no attention sink%s",
                     b->ck->dir, name, i, v->use_sink ? " (a full-attention block)" : " (use_sink is false)");
  static const char *mlp[3] = {"gate_proj", "up_proj", "down_proj"};
  mimo_linear *lins[3] = {&blk->gate, &blk->up, &blk->down};
  mimo_vec *biases[3] = {&blk->gate_bias, &blk->up_bias, &blk->down_bias};
  for (int j = 0; j < 3; j++) {
    snprintf(name, sizeof name, "%s.mlp.%s", p, mlp[j]);
    MIMO_TRY(bind_linear_bias(b, name, j == 2 ? H : v->inter, j == 2 ? v->inter : H, lins[j], biases[j]));
  }
  return MIMO_OK;
}

mimo_status mimo_vision_bind(const mimo_config *cfg, const mimo_ckpt *ck, mimo_vision_weights *w) {
  memset(w, 0, sizeof *w);
  const mimo_vision_config *v = &cfg->vision;
  if (!v->present)
    return MIMO_OK;
  mimo_binder b = {cfg, ck, &w->bytes};
  w->blocks = calloc((size_t)v->depth, sizeof *w->blocks);
  if (!w->blocks)
    return mimo_errf(MIMO_E_NOMEM, "vision blocks");
  mimo_status st = bind_patch_embed(&b, v, &w->patch_embed);
  for (int i = 0; st == MIMO_OK && i < v->depth; i++)
    st = bind_block(&b, v, i, &w->blocks[i]);
  char name[64];
  snprintf(name, sizeof name, "visual.blocks.%d.norm1.weight", v->depth);
  if (st == MIMO_OK && mimo_ckpt_find(ck, name))
    st = mimo_errf(MIMO_E_FORMAT, "%s: unexpected tensor '%s': vision_config.depth is %d", ck->dir, name, v->depth);
  const int cat = v->hidden * v->merge * v->merge;
  if (st == MIMO_OK)
    st = mimo_bind_vec(&b, "visual.merger.ln_q.weight", v->hidden, &w->merger_norm);
  if (st == MIMO_OK)
    st = mimo_bind_dense(&b, "visual.merger.mlp.0.weight", cat, cat, &w->merger_fc1);
  if (st == MIMO_OK)
    st = mimo_bind_dense(&b, "visual.merger.mlp.2.weight", v->out_hidden, cat, &w->merger_fc2);
  if (st != MIMO_OK) {
    mimo_vision_weights_free(w);
    return st;
  }
  w->present = true;
  return MIMO_OK;
}

void mimo_vision_weights_free(mimo_vision_weights *w) {
  free(w->blocks);
  memset(w, 0, sizeof *w);
}
