/* config.json of a MiMo-V2 checkpoint (spec §1.1, §6.4), with the documented
 * defaults. Every size the model uses comes from here: nothing is hard-coded. */
#ifndef MIMO_IO_CONFIG_H
#define MIMO_IO_CONFIG_H
#include <stdbool.h>
#include <stddef.h>

#include "core/status.h"

#define MIMO_MAX_LAYERS 256
#define MIMO_MAX_EOS 8

typedef enum { MIMO_ATTN_FULL = 0, MIMO_ATTN_SWA = 1 } mimo_attn_type;
typedef enum { MIMO_QKV_FUSED, MIMO_QKV_SPLIT } mimo_qkv_layout;

/* Geometry of one attention type (full or sliding-window). */
typedef struct mimo_attn_geom {
  int n_heads;      /* query heads */
  int n_kv_heads;
  int head_dim;     /* q/k */
  int v_head_dim;
  int rotary_dim;   /* int(head_dim * partial_rotary_factor), even */
  double rope_theta;
  int window;       /* 0 = causal over everything; else keys i-window < j <= i */
  bool has_sink;
} mimo_attn_geom;

typedef struct mimo_quant_config {
  bool present;      /* quantization_config with quant_method compressed-tensors */
  int num_bits;      /* 4 */
  bool symmetric;
  int group_size;
  char format[32];   /* pack-quantized */
} mimo_quant_config;

#define MIMO_MAX_VIT_DEPTH 128

/* Vision tower attention of one block (vit_window_attn_types): -1 full, 0 window in row-major merge-unit order,
 * 1 window in column-major order (spec §4.4). */
typedef enum { MIMO_VIT_FULL = -1, MIMO_VIT_ROW = 0, MIMO_VIT_COL = 1 } mimo_vit_attn;
/* Where a window block's sink logit goes (spec §4.4, a CONFLICT between ports): a bias on key 0 of each
 * frame-sequence (the HF source as ported by NeMo/MLX; upstream vLLM) or an extra softmax-denominator column (as
 * the text model; vLLM's later MiMo vision fix). */
typedef enum { MIMO_VIT_SINK_KEY0 = 0, MIMO_VIT_SINK_DENOM = 1 } mimo_vit_sink;
/* The merger's ln_q (weight only): LayerNorm (NeMo, MLX, the HF class) or RMSNorm (vLLM, SGLang). */
typedef enum { MIMO_VIT_NORM_LAYER = 0, MIMO_VIT_NORM_RMS = 1 } mimo_vit_norm;

/* config.json's vision_config and processor_config (spec §4.1, §4.3) and the placeholder ids (§4.6). */
typedef struct mimo_vision_config {
  bool present;                  /* vision_config given (else the model takes text only) */
  int depth, hidden, inter;      /* blocks, width, SwiGLU width */
  int n_heads, n_kv_heads, head_dim; /* head_dim = qk_channels (not hidden / n_heads) */
  int in_chans, patch, temporal_patch, merge;
  int out_hidden;                /* = the text model's hidden_size */
  int window;                    /* visual_token_window_size: window blocks see keys with |i - j| <= window */
  bool use_sink;                 /* window blocks carry attn.sinks [n_heads] */
  mimo_vit_attn attn[MIMO_MAX_VIT_DEPTH];
  double rope_theta;             /* 2-D RoPE base, 10000 */
  double eps;                    /* RMSNorm / LayerNorm eps, 1e-6 */
  long min_pixels, max_pixels;   /* processor_config image_min_pixels / image_max_pixels */
  double mean[3], std[3];        /* per-channel normalisation in 0..255 units */
  int image_token_id, vision_start_id, vision_end_id, video_token_id;
  mimo_vit_sink sink_mode;       /* run-time choice (default key 0) */
  mimo_vit_norm merger_norm;     /* run-time choice (default LayerNorm) */
} mimo_vision_config;

typedef struct mimo_config {
  int vocab_size, hidden_size, num_hidden_layers;
  int intermediate_size, moe_intermediate_size;
  int n_routed_experts, num_experts_per_tok;
  int n_group, topk_group;
  bool norm_topk_prob;
  double routed_scaling_factor; /* null -> 1.0 */
  double layernorm_epsilon;
  double attention_value_scale; /* absent -> 1.0 */
  double partial_rotary_factor;
  bool tie_word_embeddings;
  mimo_qkv_layout qkv_layout;
  int qkv_chunks;               /* fused layout: chunk count = num_key_value_heads */
  mimo_attn_geom full, swa;
  mimo_attn_type layer_type[MIMO_MAX_LAYERS];
  bool layer_moe[MIMO_MAX_LAYERS];
  int n_eos;
  int eos_token_id[MIMO_MAX_EOS];
  int pad_token_id;             /* -1 if absent */
  mimo_quant_config quant;
  long max_position_embeddings;
  mimo_vision_config vision;
  int kv_ring_slack;            /* run time: sliding caches keep this many slots past the window (speculation) */
} mimo_config;

/* vision_config / processor_config / the placeholder ids of root (config_vision.c); absent vision_config leaves
 * vision.present false. */
mimo_status mimo_config_parse_vision(const void *root /* json_t */, const char *path, mimo_config *c);

/* generation_config.json: the checkpoint's sampling defaults and extra stop ids. */
typedef struct mimo_gen_defaults {
  double temperature, top_p, min_p, repetition_penalty; /* absent: 1, 1, 0, 1 */
  int top_k;                                           /* absent: -1 (off) */
  int n_eos;
  int eos_token_id[MIMO_MAX_EOS];
} mimo_gen_defaults;

/* Missing file: defaults and no ids. Malformed file: an error naming it. */
mimo_status mimo_gen_defaults_load(const char *dir, mimo_gen_defaults *g);
/* Adds g's stop ids to cfg's (no duplicates). */
void mimo_config_merge_eos(mimo_config *cfg, const mimo_gen_defaults *g);

/* Parses text (the file's bytes); `path` labels messages. */
mimo_status mimo_config_parse(const char *text, size_t len, const char *path, mimo_config *cfg);
mimo_status mimo_config_load(const char *dir, mimo_config *cfg);
/* Whether id is one of the model's stop ids. */
static inline bool mimo_config_is_eos(const mimo_config *c, int id) {
  for (int e = 0; e < c->n_eos; e++)
    if (id == c->eos_token_id[e])
      return true;
  return false;
}
static inline const mimo_attn_geom *mimo_config_geom(const mimo_config *c, int layer) {
  return c->layer_type[layer] == MIMO_ATTN_SWA ? &c->swa : &c->full;
}
#endif
