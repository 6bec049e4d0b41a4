/* `mimo synth`: random checkpoints in exactly the published layout of the AWQ
 * int4 MiMo-V2.5 release (config.json with quantization_config, fused chunked
 * qkv, per-expert pack-quantized tensors, sinks on sliding layers, fp32 router
 * with correction bias, one bf16 expert layer, several shards + index). */
#ifndef MIMO_MODEL_SYNTH_H
#define MIMO_MODEL_SYNTH_H
#include <stdint.h>

#include "core/status.h"

typedef struct mimo_synth_opts {
  const char *out;
  const char *preset;   /* tiny | small | full */
  const char *quant;    /* int4 | int4-asym | bf16 */
  int group_size;       /* 0 = preset default */
  int kv_heads;         /* 0 = preset default; also the qkv chunk count */
  int layers;           /* 0 = preset default */
  int shards;           /* 0 = preset default */
  int moe_inter;        /* expert width, 0 = preset default */
  uint64_t seed;
  int mtp_layers;       /* model.mtp.layers.{0..N-1} (spec §2.7; the release has 3) */
  int no_vision;        /* leave out the vision tower (visual.* and vision_config) */
  int split_qkv;        /* write q_proj/k_proj/v_proj (V2-Flash layout) holding the fused tensor's rows */
} mimo_synth_opts;

mimo_status mimo_synth(const mimo_synth_opts *o);
#endif
