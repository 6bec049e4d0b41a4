#include "engine/kv_cache.h"

#include <stdlib.h>

static size_t slot_floats(const mimo_attn_geom *g, int v) {
  return (size_t)g->n_kv_heads * (v ? g->v_head_dim : g->head_dim);
}

static mimo_status grow(mimo_kv_view *kv, const mimo_attn_geom *g, int cap) {
  float *k = realloc(kv->k, (size_t)cap * slot_floats(g, 0) * sizeof(float));
  if (!k)
    return mimo_errf(MIMO_E_NOMEM, "KV cache: %d positions", cap);
  kv->k = k;
  float *v = realloc(kv->v, (size_t)cap * slot_floats(g, 1) * sizeof(float));
  if (!v)
    return mimo_errf(MIMO_E_NOMEM, "KV cache: %d positions", cap);
  kv->v = v;
  kv->cap = cap;
  return MIMO_OK;
}

mimo_status mimo_kv_seq_init(mimo_kv_seq **out, const mimo_config *cfg) {
  mimo_kv_seq *s = calloc(1, sizeof *s);
  if (!s)
    return mimo_errf(MIMO_E_NOMEM, "KV cache");
  s->n_layers = cfg->num_hidden_layers;
  s->layers = calloc((size_t)s->n_layers, sizeof *s->layers);
  if (!s->layers) {
    free(s);
    return mimo_errf(MIMO_E_NOMEM, "KV cache");
  }
  for (int L = 0; L < s->n_layers; L++) {
    const mimo_attn_geom *g = mimo_config_geom(cfg, L);
    mimo_kv_view *kv = &s->layers[L];
    kv->ring = g->window > 0;
    mimo_status st = grow(kv, g, kv->ring ? g->window : 64);
    if (st != MIMO_OK) {
      mimo_kv_seq_free(s);
      return st;
    }
  }
  *out = s;
  return MIMO_OK;
}

mimo_status mimo_kv_reserve(mimo_kv_seq *s, const mimo_config *cfg, int new_len) {
  for (int L = 0; L < s->n_layers; L++) {
    mimo_kv_view *kv = &s->layers[L];
    if (kv->ring || kv->cap >= new_len)
      continue;
    int cap = kv->cap;
    while (cap < new_len)
      cap = cap > (1 << 29) ? new_len : cap * 2;
    MIMO_TRY(grow(kv, mimo_config_geom(cfg, L), cap));
  }
  return MIMO_OK;
}

size_t mimo_kv_bytes(const mimo_kv_seq *s, const mimo_config *cfg) {
  size_t b = 0;
  for (int L = 0; L < s->n_layers; L++) {
    const mimo_attn_geom *g = mimo_config_geom(cfg, L);
    b += (size_t)s->layers[L].cap * (slot_floats(g, 0) + slot_floats(g, 1)) * sizeof(float);
  }
  return b;
}

void mimo_kv_seq_free(mimo_kv_seq *s) {
  if (!s)
    return;
  for (int L = 0; L < s->n_layers && s->layers; L++) {
    free(s->layers[L].k);
    free(s->layers[L].v);
  }
  free(s->layers);
  free(s);
}
