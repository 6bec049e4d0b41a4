/* The vision tower's part of config.json (spec §4.1, §4.3, §4.6): vision_config, processor_config and the
 * placeholder token ids. Sizes come from here like the text model's; what the tower cannot run is refused. */
#include <stdio.h>
#include <string.h>

#include "io/config.h"
#include "io/config_internal.h"

/* vit_window_attn_types, or, without it, fullatt_block_indexes with the rest row-major windows. Both given: they
 * must agree on which blocks are full. */
static mimo_status parse_block_types(json_t *vc, const char *p, mimo_vision_config *v) {
  json_t *types = json_object_get(vc, "vit_window_attn_types");
  json_t *full = json_object_get(vc, "fullatt_block_indexes");
  bool is_full[MIMO_MAX_VIT_DEPTH] = {0};
  bool have_full = full && !json_is_null(full);
  if (have_full) {
    if (!json_is_array(full))
      return mimo_errf(MIMO_E_CONFIG, "%s: vision_config.fullatt_block_indexes must be a list", p);
    for (size_t i = 0; i < json_array_size(full); i++) {
      json_t *x = json_array_get(full, i);
      if (!json_is_integer(x) || json_integer_value(x) < 0 || json_integer_value(x) >= v->depth)
        return mimo_errf(MIMO_E_CONFIG, "%s: vision_config.fullatt_block_indexes[%zu] must be a block index in [0, %d)",
                         p, i, v->depth);
      is_full[json_integer_value(x)] = true;
    }
  }
  if (types && !json_is_null(types)) {
    if (!json_is_array(types) || (int)json_array_size(types) != v->depth)
      return mimo_errf(MIMO_E_CONFIG, "%s: vision_config.vit_window_attn_types must be a list of %d entries (depth)",
                       p, v->depth);
    for (int i = 0; i < v->depth; i++) {
      json_t *x = json_array_get(types, (size_t)i);
      long t = json_is_integer(x) ? (long)json_integer_value(x) : 9;
      if (t < -1 || t > 1)
        return mimo_errf(MIMO_E_CONFIG, "%s: vision_config.vit_window_attn_types[%d] must be -1 (full), 0 (row window) "
                         "or 1 (column window)", p, i);
      v->attn[i] = (mimo_vit_attn)t;
      if (have_full && (t == -1) != is_full[i])
        return mimo_errf(MIMO_E_CONFIG, "%s: vision_config: block %d is %s in vit_window_attn_types but %s in "
                         "fullatt_block_indexes", p, i, t == -1 ? "full" : "windowed", is_full[i] ? "listed" : "not listed");
    }
  } else {
    for (int i = 0; i < v->depth; i++)
      v->attn[i] = have_full && !is_full[i] ? MIMO_VIT_ROW : MIMO_VIT_FULL;
  }
  return MIMO_OK;
}

static mimo_status token_id(mimo_cfg_reader *r, const char *key, int required, int vocab, int *out) {
  long x = 0;
  MIMO_TRY(mimo_cfg_int(r, key, -1, (long)vocab - 1, required, -1, &x));
  *out = (int)x;
  return MIMO_OK;
}

mimo_status mimo_config_parse_vision(const void *root_, const char *p, mimo_config *c) {
  json_t *root = (json_t *)root_;
  mimo_vision_config *v = &c->vision;
  memset(v, 0, sizeof *v);
  json_t *vc = json_object_get(root, "vision_config");
  if (!vc || json_is_null(vc))
    return MIMO_OK;
  if (!json_is_object(vc))
    return mimo_errf(MIMO_E_CONFIG, "%s: vision_config must be an object", p);
  char path[4200];
  snprintf(path, sizeof path, "%s: vision_config", p);
  mimo_cfg_reader r = {vc, path};
  long x = 0;
  MIMO_TRY(mimo_cfg_int(&r, "depth", 1, MIMO_MAX_VIT_DEPTH, 1, 0, &x));
  v->depth = (int)x;
  MIMO_TRY(mimo_cfg_int(&r, "hidden_size", 1, 65536, 1, 0, &x));
  v->hidden = (int)x;
  MIMO_TRY(mimo_cfg_int(&r, "intermediate_size", 1, 1 << 20, 1, 0, &x));
  v->inter = (int)x;
  static const char *silu[] = {"silu", NULL};
  MIMO_TRY(mimo_cfg_expect_str(&r, "hidden_act", silu, "activation"));
  MIMO_TRY(mimo_cfg_int(&r, "num_heads", 1, 4096, 1, 0, &x));
  v->n_heads = (int)x;
  MIMO_TRY(mimo_cfg_int(&r, "num_key_value_heads", 1, v->n_heads, 0, v->n_heads, &x));
  v->n_kv_heads = (int)x;
  if (v->n_heads % v->n_kv_heads)
    return mimo_errf(MIMO_E_CONFIG, "%s: num_heads %d is not a multiple of num_key_value_heads %d", path, v->n_heads,
                     v->n_kv_heads);
  MIMO_TRY(mimo_cfg_int(&r, "qk_channels", 1, 4096, 0, v->hidden / v->n_heads, &x));
  v->head_dim = (int)x;
  if (v->head_dim % 4) /* 2-D RoPE: half the rotated pairs turn with the row, half with the column */
    return mimo_errf(MIMO_E_CONFIG, "%s: qk_channels %d must be a multiple of 4 (2-D RoPE)", path, v->head_dim);
  MIMO_TRY(mimo_cfg_int(&r, "in_chans", 3, 3, 0, 3, &x));
  v->in_chans = (int)x;
  long patch = 0, spatial = 0;
  MIMO_TRY(mimo_cfg_int(&r, "patch_size", 1, 1024, 0, 0, &patch));
  MIMO_TRY(mimo_cfg_int(&r, "spatial_patch_size", 1, 1024, 0, 0, &spatial));
  if (!patch && !spatial)
    return mimo_errf(MIMO_E_CONFIG, "%s: missing required field 'patch_size'", path);
  if (patch && spatial && patch != spatial)
    return mimo_errf(MIMO_E_CONFIG, "%s: patch_size %ld and spatial_patch_size %ld differ", path, patch, spatial);
  v->patch = (int)(patch ? patch : spatial);
  MIMO_TRY(mimo_cfg_int(&r, "temporal_patch_size", 1, 64, 0, 2, &x));
  v->temporal_patch = (int)x;
  MIMO_TRY(mimo_cfg_int(&r, "spatial_merge_size", 1, 64, 0, 2, &x));
  v->merge = (int)x;
  MIMO_TRY(mimo_cfg_int(&r, "out_hidden_size", 1, 65536, 0, c->hidden_size, &x));
  if (x != c->hidden_size)
    return mimo_errf(MIMO_E_CONFIG, "%s: out_hidden_size %ld must equal the text model's hidden_size %d", path, x,
                     c->hidden_size);
  v->out_hidden = (int)x;
  MIMO_TRY(mimo_cfg_bool(&r, "use_sink", false, &v->use_sink));
  MIMO_TRY(parse_block_types(vc, p, v));
  bool windowed = false;
  for (int i = 0; i < v->depth; i++)
    windowed |= v->attn[i] != MIMO_VIT_FULL;
  MIMO_TRY(mimo_cfg_int(&r, "visual_token_window_size", 1, 1L << 30, windowed, 0, &x));
  v->window = (int)x;
  MIMO_TRY(mimo_cfg_num(&r, "rope_theta", 0, 10000.0, &v->rope_theta));
  if (v->rope_theta <= 1)
    return mimo_errf(MIMO_E_CONFIG, "%s: rope_theta must be > 1", path);
  v->eps = 1e-6;
  static const double mean[3] = {123.675, 116.28, 103.53}, std[3] = {58.395, 57.12, 57.375};
  memcpy(v->mean, mean, sizeof mean);
  memcpy(v->std, std, sizeof std);

  v->min_pixels = 8192;
  v->max_pixels = 8388608;
  json_t *pc = json_object_get(root, "processor_config");
  if (pc && !json_is_null(pc)) {
    if (!json_is_object(pc))
      return mimo_errf(MIMO_E_CONFIG, "%s: processor_config must be an object", p);
    char ppath[4200];
    snprintf(ppath, sizeof ppath, "%s: processor_config", p);
    mimo_cfg_reader pr = {pc, ppath};
    MIMO_TRY(mimo_cfg_int(&pr, "image_min_pixels", 1, 1L << 40, 0, v->min_pixels, &v->min_pixels));
    MIMO_TRY(mimo_cfg_int(&pr, "image_max_pixels", v->min_pixels, 1L << 40, 0, v->max_pixels, &v->max_pixels));
  }
  mimo_cfg_reader top = {root, p};
  MIMO_TRY(token_id(&top, "image_token_id", 1, c->vocab_size, &v->image_token_id));
  MIMO_TRY(token_id(&top, "vision_start_token_id", 1, c->vocab_size, &v->vision_start_id));
  MIMO_TRY(token_id(&top, "vision_end_token_id", 1, c->vocab_size, &v->vision_end_id));
  MIMO_TRY(token_id(&top, "video_token_id", 0, c->vocab_size, &v->video_token_id));
  v->present = true;
  return MIMO_OK;
}
