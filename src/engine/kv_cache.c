#include "engine/kv_cache.h"

#include <stdlib.h>

static size_t slot_floats(const mimo_attn_geom *g, int v) {
  return (size_t)g->n_kv_heads * (v ? g->v_head_dim : g->head_dim);
}

/* The backend's storage, or the host heap by default. */
static float *kv_realloc(mimo_backend *be, float *p, size_t old_n, size_t new_n) {
  if (be && be->kv_realloc)
    return be->kv_realloc(be, p, old_n, new_n);
  return realloc(p, new_n * sizeof(float));
}

static void kv_free(mimo_backend *be, float *p) {
  if (be && be->kv_free)
    be->kv_free(be, p);
  else
    free(p);
}

/* A backend's kv_realloc says why it failed (a memory budget, say); the host heap does not. */
static mimo_status grow_failed(const mimo_backend *be, int cap) {
  return be && be->kv_realloc ? mimo_err_prefix(MIMO_E_NOMEM, "KV cache for %d positions", cap)
                              : mimo_errf(MIMO_E_NOMEM, "KV cache: %d positions", cap);
}

static mimo_status grow(mimo_kv_seq *s, mimo_kv_view *kv, const mimo_attn_geom *g, int cap) {
  mimo_backend *be = s->be;
  float *k = kv_realloc(be, kv->k, (size_t)kv->cap * slot_floats(g, 0), (size_t)cap * slot_floats(g, 0));
  if (!k)
    return grow_failed(be, cap);
  kv->k = k;
  float *v = kv_realloc(be, kv->v, (size_t)kv->cap * slot_floats(g, 1), (size_t)cap * slot_floats(g, 1));
  if (!v)
    return grow_failed(be, cap);
  kv->v = v;
  s->bytes += (size_t)(cap - kv->cap) * (slot_floats(g, 0) + slot_floats(g, 1)) * sizeof(float);
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
  for (int L = 0; L < s->n_layers; L++)
    s->layers[L].ring = mimo_config_geom(cfg, L)->window > 0;
  *out = s;
  return MIMO_OK;
}

mimo_status mimo_kv_reserve(mimo_kv_seq *s, const mimo_config *cfg, mimo_backend *be, int new_len) {
  int fresh = 1;
  for (int L = 0; L < s->n_layers; L++)
    fresh &= s->layers[L].k == NULL && s->layers[L].v == NULL;
  if (fresh)
    s->be = be;
  else if (s->be != be)
    return mimo_errf(MIMO_E_INVALID, "KV cache belongs to backend '%s', not '%s'", s->be ? s->be->name : "host",
                     be ? be->name : "host");
  for (int L = 0; L < s->n_layers; L++) {
    mimo_kv_view *kv = &s->layers[L];
    const mimo_attn_geom *g = mimo_config_geom(cfg, L);
    if (kv->ring) {
      if (kv->cap == 0)
        MIMO_TRY(grow(s, kv, g, g->window));
      continue;
    }
    if (kv->cap >= new_len)
      continue;
    int cap = kv->cap ? kv->cap : 64;
    while (cap < new_len)
      cap = cap > (1 << 29) ? new_len : cap * 2;
    MIMO_TRY(grow(s, kv, g, cap));
  }
  return MIMO_OK;
}

size_t mimo_kv_bytes(const mimo_kv_seq *s) {
  size_t b = s->bytes;
  for (int i = 0; i < s->n_shards; i++)
    b += s->shards[i] ? mimo_kv_bytes(s->shards[i]) : 0;
  return b;
}

void mimo_kv_seq_free(mimo_kv_seq *s) {
  if (!s)
    return;
  if (s->on_free)
    s->on_free(s->on_free_ctx, s->uid);
  for (int L = 0; L < s->n_layers && s->layers; L++) {
    kv_free(s->be, s->layers[L].k);
    kv_free(s->be, s->layers[L].v);
  }
  free(s->layers);
  for (int i = 0; i < s->n_shards; i++)
    mimo_kv_seq_free(s->shards[i]);
  free(s->shards);
  free(s);
}
