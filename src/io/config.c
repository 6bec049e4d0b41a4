#include "io/config.h"

#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/fileio.h"
#include "io/config_internal.h"

mimo_status mimo_cfg_int(mimo_cfg_reader *r, const char *key, long lo, long hi, int required, long dflt, long *out) {
  json_t *v = json_object_get(r->root, key);
  if (!v || json_is_null(v)) {
    if (required)
      return mimo_errf(MIMO_E_CONFIG, "%s: missing required field '%s'", r->path, key);
    *out = dflt;
    return MIMO_OK;
  }
  if (!json_is_integer(v))
    return mimo_errf(MIMO_E_CONFIG, "%s: field '%s' must be an integer", r->path, key);
  long x = (long)json_integer_value(v);
  if (x < lo || x > hi)
    return mimo_errf(MIMO_E_CONFIG, "%s: field '%s' = %ld is outside [%ld, %ld]", r->path, key, x, lo, hi);
  *out = x;
  return MIMO_OK;
}

mimo_status mimo_cfg_num(mimo_cfg_reader *r, const char *key, int required, double dflt, double *out) {
  json_t *v = json_object_get(r->root, key);
  if (!v || json_is_null(v)) {
    if (required)
      return mimo_errf(MIMO_E_CONFIG, "%s: missing required field '%s'", r->path, key);
    *out = dflt;
    return MIMO_OK;
  }
  if (!json_is_number(v))
    return mimo_errf(MIMO_E_CONFIG, "%s: field '%s' must be a number", r->path, key);
  *out = json_number_value(v);
  if (!isfinite(*out))
    return mimo_errf(MIMO_E_CONFIG, "%s: field '%s' is not finite", r->path, key);
  return MIMO_OK;
}

mimo_status mimo_cfg_bool(mimo_cfg_reader *r, const char *key, bool dflt, bool *out) {
  json_t *v = json_object_get(r->root, key);
  if (!v || json_is_null(v)) {
    *out = dflt;
    return MIMO_OK;
  }
  if (!json_is_boolean(v))
    return mimo_errf(MIMO_E_CONFIG, "%s: field '%s' must be true or false", r->path, key);
  *out = json_is_true(v);
  return MIMO_OK;
}

mimo_status mimo_cfg_expect_str(mimo_cfg_reader *r, const char *key, const char *const *allowed, const char *what) {
  json_t *v = json_object_get(r->root, key);
  if (!v || json_is_null(v))
    return MIMO_OK;
  if (!json_is_string(v))
    return mimo_errf(MIMO_E_CONFIG, "%s: field '%s' must be a string", r->path, key);
  for (int i = 0; allowed[i]; i++)
    if (strcmp(json_string_value(v), allowed[i]) == 0)
      return MIMO_OK;
  return mimo_errf(MIMO_E_CONFIG, "%s: %s '%s' = \"%s\" is not implemented", r->path, what, key,
                   json_string_value(v));
}

static mimo_status parse_geom(mimo_cfg_reader *r, const char *prefix, const mimo_attn_geom *dflt, mimo_attn_geom *g) {
  char k[64];
  long x = 0;
  snprintf(k, sizeof k, "%snum_attention_heads", prefix);
  MIMO_TRY(mimo_cfg_int(r, k, 1, 4096, dflt == NULL, dflt ? dflt->n_heads : 0, &x));
  g->n_heads = (int)x;
  snprintf(k, sizeof k, "%snum_key_value_heads", prefix);
  MIMO_TRY(mimo_cfg_int(r, k, 1, 4096, 0, dflt ? dflt->n_kv_heads : g->n_heads, &x));
  g->n_kv_heads = (int)x;
  snprintf(k, sizeof k, "%shead_dim", prefix);
  MIMO_TRY(mimo_cfg_int(r, k, 2, 4096, dflt == NULL, dflt ? dflt->head_dim : 0, &x));
  g->head_dim = (int)x;
  /* swa_v_head_dim absent defaults to swa_head_dim, not v_head_dim (spec §8.2) */
  snprintf(k, sizeof k, "%sv_head_dim", prefix);
  MIMO_TRY(mimo_cfg_int(r, k, 1, 4096, 0, g->head_dim, &x));
  g->v_head_dim = (int)x;
  if (g->n_heads % g->n_kv_heads != 0)
    return mimo_errf(MIMO_E_CONFIG, "%s: %snum_attention_heads (%d) is not a multiple of %snum_key_value_heads (%d)",
                     r->path, prefix, g->n_heads, prefix, g->n_kv_heads);
  return MIMO_OK;
}

static mimo_status parse_quant(mimo_cfg_reader *r, json_t *q, mimo_quant_config *qc) {
  const char *p = r->path;
  json_t *m = json_object_get(q, "quant_method");
  if (!json_is_string(m))
    return mimo_errf(MIMO_E_CONFIG, "%s: quantization_config.quant_method missing", p);
  if (strcmp(json_string_value(m), "compressed-tensors") != 0)
    return mimo_errf(MIMO_E_CONFIG, "%s: quantization_config.quant_method \"%s\" is not implemented (only compressed-tensors pack-quantized int4)",
                     p, json_string_value(m));
  json_t *fmt = json_object_get(q, "format");
  snprintf(qc->format, sizeof qc->format, "%s", json_is_string(fmt) ? json_string_value(fmt) : "pack-quantized");
  if (strcmp(qc->format, "pack-quantized") != 0)
    return mimo_errf(MIMO_E_CONFIG, "%s: quantization_config.format \"%s\" is not implemented (pack-quantized only)", p,
                     qc->format);
  json_t *groups = json_object_get(q, "config_groups");
  if (!json_is_object(groups) || json_object_size(groups) == 0)
    return mimo_errf(MIMO_E_CONFIG, "%s: quantization_config.config_groups missing or empty", p);
  if (json_object_size(groups) > 1)
    return mimo_errf(MIMO_E_CONFIG, "%s: quantization_config has %zu config_groups; one is implemented", p,
                     json_object_size(groups));
  const char *gname;
  json_t *g;
  json_object_foreach(groups, gname, g) {
    json_t *w = json_object_get(g, "weights");
    if (!json_is_object(w))
      return mimo_errf(MIMO_E_CONFIG, "%s: config_groups.%s.weights missing", p, gname);
    json_t *ia = json_object_get(g, "input_activations");
    if (ia && !json_is_null(ia))
      return mimo_errf(MIMO_E_CONFIG, "%s: config_groups.%s.input_activations is set; only weight-only (A16) is implemented",
                       p, gname);
    json_t *nb = json_object_get(w, "num_bits"), *ty = json_object_get(w, "type"),
           *sym = json_object_get(w, "symmetric"), *strat = json_object_get(w, "strategy"),
           *gs = json_object_get(w, "group_size"), *act = json_object_get(w, "actorder"),
           *gfmt = json_object_get(g, "format");
    if (!json_is_integer(nb) || json_integer_value(nb) != 4)
      return mimo_errf(MIMO_E_CONFIG, "%s: config_groups.%s.weights.num_bits must be 4 (got %s)", p, gname,
                       json_is_integer(nb) ? "another value" : "none");
    if (ty && (!json_is_string(ty) || strcmp(json_string_value(ty), "int") != 0))
      return mimo_errf(MIMO_E_CONFIG, "%s: config_groups.%s.weights.type must be \"int\"", p, gname);
    if (!strat || !json_is_string(strat) || strcmp(json_string_value(strat), "group") != 0)
      return mimo_errf(MIMO_E_CONFIG, "%s: config_groups.%s.weights.strategy must be \"group\"", p, gname);
    if (!json_is_integer(gs) || json_integer_value(gs) < 8 || json_integer_value(gs) > 1 << 20)
      return mimo_errf(MIMO_E_CONFIG, "%s: config_groups.%s.weights.group_size missing or invalid", p, gname);
    if (act && !json_is_null(act))
      return mimo_errf(MIMO_E_CONFIG, "%s: config_groups.%s.weights.actorder = %s (weight_g_idx) is not implemented", p,
                       gname, json_is_string(act) ? json_string_value(act) : "set");
    if (gfmt && json_is_string(gfmt) && strcmp(json_string_value(gfmt), "pack-quantized") != 0)
      return mimo_errf(MIMO_E_CONFIG, "%s: config_groups.%s.format \"%s\" is not implemented", p, gname,
                       json_string_value(gfmt));
    qc->num_bits = 4;
    qc->symmetric = sym ? json_is_true(sym) : true;
    qc->group_size = (int)json_integer_value(gs);
  }
  qc->present = true;
  return MIMO_OK;
}

static void read_eos(json_t *eos, int *ids, int *n);

static mimo_status parse_root(mimo_cfg_reader *r, mimo_config *c) {
  const char *p = r->path;
  json_t *mt = json_object_get(r->root, "model_type");
  if (!json_is_string(mt))
    return mimo_errf(MIMO_E_CONFIG, "%s: missing required field 'model_type'", p);
  if (strcmp(json_string_value(mt), "mimo_v2") != 0 && strcmp(json_string_value(mt), "mimo_v2_flash") != 0)
    return mimo_errf(MIMO_E_CONFIG, "%s: model_type \"%s\" is not a MiMo-V2 model (expected \"mimo_v2\")", p,
                     json_string_value(mt));
  long x = 0;
  MIMO_TRY(mimo_cfg_int(r, "vocab_size", 1, 16L << 20, 1, 0, &x));
  c->vocab_size = (int)x;
  MIMO_TRY(mimo_cfg_int(r, "hidden_size", 1, 65536, 1, 0, &x));
  c->hidden_size = (int)x;
  MIMO_TRY(mimo_cfg_int(r, "num_hidden_layers", 1, MIMO_MAX_LAYERS, 1, 0, &x));
  c->num_hidden_layers = (int)x;
  MIMO_TRY(mimo_cfg_int(r, "intermediate_size", 1, 1 << 20, 1, 0, &x));
  c->intermediate_size = (int)x;
  MIMO_TRY(mimo_cfg_int(r, "max_position_embeddings", 1, 1L << 40, 0, 1L << 20, &c->max_position_embeddings));

  static const char *silu[] = {"silu", NULL}, *sigmoid[] = {"sigmoid", NULL}, *noaux[] = {"noaux_tc", NULL};
  MIMO_TRY(mimo_cfg_expect_str(r, "hidden_act", silu, "activation"));

  MIMO_TRY(parse_geom(r, "", NULL, &c->full));
  MIMO_TRY(parse_geom(r, "swa_", &c->full, &c->swa));
  MIMO_TRY(mimo_cfg_num(r, "partial_rotary_factor", 0, 1.0, &c->partial_rotary_factor));
  if (!(c->partial_rotary_factor > 0 && c->partial_rotary_factor <= 1))
    return mimo_errf(MIMO_E_CONFIG, "%s: partial_rotary_factor must be in (0, 1]", p);
  MIMO_TRY(mimo_cfg_num(r, "rope_theta", 0, 10000.0, &c->full.rope_theta));
  MIMO_TRY(mimo_cfg_num(r, "swa_rope_theta", 0, c->full.rope_theta, &c->swa.rope_theta));
  if (c->full.rope_theta <= 1 || c->swa.rope_theta <= 1)
    return mimo_errf(MIMO_E_CONFIG, "%s: rope_theta must be > 1", p);
  json_t *rs = json_object_get(r->root, "rope_scaling");
  if (rs && !json_is_null(rs)) {
    json_t *t = json_object_get(rs, "rope_type");
    if (!t)
      t = json_object_get(rs, "type");
    if (!json_is_string(t) || strcmp(json_string_value(t), "default") != 0)
      return mimo_errf(MIMO_E_CONFIG, "%s: rope_scaling type \"%s\" is not implemented (only default)", p,
                       json_is_string(t) ? json_string_value(t) : "?");
  }
  mimo_attn_geom *gs[2] = {&c->full, &c->swa};
  for (int i = 0; i < 2; i++) {
    /* int(192 * 0.334) = 64, as the references truncate */
    gs[i]->rotary_dim = (int)((double)gs[i]->head_dim * c->partial_rotary_factor);
    if (gs[i]->rotary_dim < 2 || gs[i]->rotary_dim % 2)
      return mimo_errf(MIMO_E_CONFIG, "%s: rotary dim int(%d * %g) = %d must be even and >= 2", p, gs[i]->head_dim,
                       c->partial_rotary_factor, gs[i]->rotary_dim);
  }
  MIMO_TRY(mimo_cfg_num(r, "attention_value_scale", 0, 1.0, &c->attention_value_scale));
  MIMO_TRY(mimo_cfg_bool(r, "add_swa_attention_sink_bias", false, &c->swa.has_sink));
  MIMO_TRY(mimo_cfg_bool(r, "add_full_attention_sink_bias", false, &c->full.has_sink));
  bool attn_bias;
  MIMO_TRY(mimo_cfg_bool(r, "attention_bias", false, &attn_bias));
  if (attn_bias)
    return mimo_errf(MIMO_E_CONFIG, "%s: attention_bias = true is not implemented", p);
  bool tie;
  MIMO_TRY(mimo_cfg_bool(r, "tie_word_embeddings", false, &tie));
  c->tie_word_embeddings = tie;

  long win = 0;
  MIMO_TRY(mimo_cfg_int(r, "sliding_window", 1, 1L << 30, 0, 0, &win));
  if (!win)
    MIMO_TRY(mimo_cfg_int(r, "sliding_window_size", 1, 1L << 30, 0, 0, &win));
  c->swa.window = (int)win;
  c->full.window = 0;

  json_t *lay = json_object_get(r->root, "attention_projection_layout");
  c->qkv_layout = MIMO_QKV_SPLIT;
  if (lay && !json_is_null(lay)) {
    if (!json_is_string(lay))
      return mimo_errf(MIMO_E_CONFIG, "%s: attention_projection_layout must be a string", p);
    if (strcmp(json_string_value(lay), "fused_qkv") == 0)
      c->qkv_layout = MIMO_QKV_FUSED;
    else if (strcmp(json_string_value(lay), "split") != 0)
      return mimo_errf(MIMO_E_CONFIG, "%s: attention_projection_layout \"%s\" is not implemented", p,
                       json_string_value(lay));
  }
  c->qkv_chunks = c->full.n_kv_heads; /* the export's TP size = top-level num_key_value_heads (spec §3.3) */

  int L = c->num_hidden_layers;
  json_t *pat = json_object_get(r->root, "hybrid_layer_pattern");
  bool any_swa = false;
  if (pat && !json_is_null(pat)) {
    if (!json_is_array(pat) || (int)json_array_size(pat) != L)
      return mimo_errf(MIMO_E_CONFIG, "%s: hybrid_layer_pattern must be a list of %d entries (num_hidden_layers)", p, L);
    for (int i = 0; i < L; i++) {
      json_t *v = json_array_get(pat, (size_t)i);
      if (!json_is_integer(v) || (json_integer_value(v) != 0 && json_integer_value(v) != 1))
        return mimo_errf(MIMO_E_CONFIG, "%s: hybrid_layer_pattern[%d] must be 0 (full) or 1 (sliding)", p, i);
      c->layer_type[i] = json_integer_value(v) ? MIMO_ATTN_SWA : MIMO_ATTN_FULL;
      any_swa |= c->layer_type[i] == MIMO_ATTN_SWA;
    }
  }
  if (any_swa && c->swa.window <= 0)
    return mimo_errf(MIMO_E_CONFIG, "%s: sliding layers need 'sliding_window' (or 'sliding_window_size')", p);

  json_t *freq = json_object_get(r->root, "moe_layer_freq");
  bool any_moe = false;
  if (freq && !json_is_null(freq)) {
    if (!json_is_array(freq) || (int)json_array_size(freq) != L)
      return mimo_errf(MIMO_E_CONFIG, "%s: moe_layer_freq must be a list of %d entries", p, L);
    for (int i = 0; i < L; i++) {
      json_t *v = json_array_get(freq, (size_t)i);
      if (!json_is_integer(v) || (json_integer_value(v) != 0 && json_integer_value(v) != 1))
        return mimo_errf(MIMO_E_CONFIG, "%s: moe_layer_freq[%d] must be 0 or 1", p, i);
      c->layer_moe[i] = json_integer_value(v) == 1;
      any_moe |= c->layer_moe[i];
    }
  }
  if (any_moe) {
    MIMO_TRY(mimo_cfg_int(r, "moe_intermediate_size", 1, 1 << 20, 1, 0, &x));
    c->moe_intermediate_size = (int)x;
    MIMO_TRY(mimo_cfg_int(r, "n_routed_experts", 1, 1 << 16, 1, 0, &x));
    c->n_routed_experts = (int)x;
    MIMO_TRY(mimo_cfg_int(r, "num_experts_per_tok", 1, c->n_routed_experts, 1, 0, &x));
    c->num_experts_per_tok = (int)x;
    MIMO_TRY(mimo_cfg_int(r, "n_shared_experts", 0, 0, 0, 0, &x));
    MIMO_TRY(mimo_cfg_expect_str(r, "scoring_func", sigmoid, "router scoring"));
    MIMO_TRY(mimo_cfg_expect_str(r, "topk_method", noaux, "router top-k method"));
    MIMO_TRY(mimo_cfg_int(r, "n_group", 1, 1, 0, 1, &x));
    c->n_group = (int)x;
    MIMO_TRY(mimo_cfg_int(r, "topk_group", 1, 1, 0, 1, &x));
    c->topk_group = (int)x;
    MIMO_TRY(mimo_cfg_bool(r, "norm_topk_prob", true, &c->norm_topk_prob));
    MIMO_TRY(mimo_cfg_num(r, "routed_scaling_factor", 0, 1.0, &c->routed_scaling_factor));
  }
  MIMO_TRY(mimo_cfg_num(r, "layernorm_epsilon", 0, -1, &c->layernorm_epsilon));
  if (c->layernorm_epsilon < 0)
    MIMO_TRY(mimo_cfg_num(r, "rms_norm_eps", 0, 1e-6, &c->layernorm_epsilon));
  if (!(c->layernorm_epsilon > 0 && c->layernorm_epsilon < 1))
    return mimo_errf(MIMO_E_CONFIG, "%s: layernorm_epsilon must be in (0, 1)", p);

  read_eos(json_object_get(r->root, "eos_token_id"), c->eos_token_id, &c->n_eos);
  for (int i = 0; i < c->n_eos; i++) /* the engine indexes logits with these */
    if (c->eos_token_id[i] < 0 || c->eos_token_id[i] >= c->vocab_size)
      return mimo_errf(MIMO_E_CONFIG, "%s: eos_token_id %d is outside the vocab [0, %d)", p, c->eos_token_id[i],
                       c->vocab_size);
  MIMO_TRY(mimo_cfg_int(r, "pad_token_id", -1, 16L << 20, 0, -1, &x));
  c->pad_token_id = (int)x;

  json_t *q = json_object_get(r->root, "quantization_config");
  if (q && !json_is_null(q)) {
    if (!json_is_object(q))
      return mimo_errf(MIMO_E_CONFIG, "%s: quantization_config must be an object", p);
    MIMO_TRY(parse_quant(r, q, &c->quant));
  }
  return MIMO_OK;
}

mimo_status mimo_config_parse(const char *text, size_t len, const char *path, mimo_config *c) {
  memset(c, 0, sizeof *c);
  json_error_t err;
  json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &err);
  if (!root)
    return mimo_errf(MIMO_E_CONFIG, "%s: line %d: %s", path, err.line, err.text);
  if (!json_is_object(root)) {
    json_decref(root);
    return mimo_errf(MIMO_E_CONFIG, "%s: not a JSON object", path);
  }
  mimo_cfg_reader r = {root, path};
  mimo_status st = parse_root(&r, c);
  if (st == MIMO_OK)
    st = mimo_config_parse_vision(root, path, c);
  json_decref(root);
  return st;
}

mimo_status mimo_config_load(const char *dir, mimo_config *c) {
  char path[4096];
  snprintf(path, sizeof path, "%s/config.json", dir);
  char *text;
  size_t len;
  MIMO_TRY(mimo_read_file(path, &text, &len, 16u << 20));
  mimo_status st = mimo_config_parse(text, len, path, c);
  free(text);
  return st;
}

/* Ids beyond int become -1, which no token matches and config.json refuses. */
static int eos_id(json_t *v) {
  json_int_t x = json_integer_value(v);
  return x >= 0 && x <= INT_MAX ? (int)x : -1;
}

static void read_eos(json_t *eos, int *ids, int *n) {
  *n = 0;
  if (json_is_integer(eos)) {
    ids[(*n)++] = eos_id(eos);
  } else if (json_is_array(eos)) {
    size_t i;
    json_t *v;
    json_array_foreach(eos, i, v) if (json_is_integer(v) && *n < MIMO_MAX_EOS) ids[(*n)++] = eos_id(v);
  }
}

mimo_status mimo_gen_defaults_load(const char *dir, mimo_gen_defaults *g) {
  memset(g, 0, sizeof *g);
  g->temperature = g->top_p = g->repetition_penalty = 1.0;
  g->top_k = -1;
  char path[4096];
  snprintf(path, sizeof path, "%s/generation_config.json", dir);
  if (!mimo_file_exists(path))
    return MIMO_OK;
  char *text;
  size_t len;
  MIMO_TRY(mimo_read_file(path, &text, &len, 1u << 20));
  json_error_t err;
  json_t *root = json_loadb(text, len, 0, &err);
  free(text);
  if (!json_is_object(root)) {
    json_decref(root);
    return mimo_errf(MIMO_E_CONFIG, "%s: line %d: %s", path, err.line, root ? "not an object" : err.text);
  }
  mimo_cfg_reader r = {root, path};
  long k = -1;
  mimo_status st = mimo_cfg_num(&r, "temperature", 0, 1.0, &g->temperature);
  if (st == MIMO_OK)
    st = mimo_cfg_num(&r, "top_p", 0, 1.0, &g->top_p);
  if (st == MIMO_OK)
    st = mimo_cfg_num(&r, "min_p", 0, 0.0, &g->min_p);
  if (st == MIMO_OK)
    st = mimo_cfg_num(&r, "repetition_penalty", 0, 1.0, &g->repetition_penalty);
  if (st == MIMO_OK && (st = mimo_cfg_int(&r, "top_k", -1, 1L << 30, 0, -1, &k)) == MIMO_OK)
    g->top_k = k == 0 ? -1 : (int)k;
  read_eos(json_object_get(root, "eos_token_id"), g->eos_token_id, &g->n_eos);
  json_decref(root);
  return st;
}

void mimo_config_merge_eos(mimo_config *cfg, const mimo_gen_defaults *g) {
  for (int i = 0; i < g->n_eos; i++) {
    int seen = 0;
    for (int j = 0; j < cfg->n_eos; j++)
      seen |= cfg->eos_token_id[j] == g->eos_token_id[i];
    if (!seen && cfg->n_eos < MIMO_MAX_EOS)
      cfg->eos_token_id[cfg->n_eos++] = g->eos_token_id[i];
  }
}
