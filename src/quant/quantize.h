/* `mimo quantize`: a checkpoint with dense routed experts (bf16, as `mimo synth --quant bf16` writes, or a bf16
 * MiMo-V2.5) to the published W4A16 layout: every routed expert projection int4 in compressed-tensors
 * `pack-quantized` groups (src/quant/int4.h), everything else as it was, the ignored layers' experts dense.
 *
 * Methods: "rtn" quantises the weights as they are; "awq" first searches, per MoE layer, llm-compressor's AWQ
 * scales (spec §7.3) on calibration tokens run through the CPU engine, and folds them into the stored tensors:
 *  - post_attention_layernorm -> [router, every expert's gate_proj and up_proj]: one scale s per hidden channel,
 *    norm weight / s, those matrices' columns * s (the router stays fp32/bf16, its logits unchanged);
 *  - each expert's up_proj -> down_proj: one scale per intermediate channel, up_proj's rows / s, down's columns * s.
 * For each mapping: x̄ = mean |input| per channel over the calibration tokens (a down mapping: its expert's tokens),
 * w̄ = mean over the balance matrices' rows of |w| / max |w| of its group; for α = 0, 1/grid, ..: s = x̄^α /
 * (w̄^(1-α) + 1e-4), at least 1e-4, divided by sqrt(max s · min s); the α whose fake-quantised output has the least
 * squared error wins (gate/up: the MoE block's output, routed and weighted; down: the expert's down output). One
 * candidate more than llm-compressor's: no scales at all, so a mapping never ends worse than round to nearest on
 * the calibration tokens (with duo scaling α = 0 is not the identity). */
#ifndef MIMO_QUANT_QUANTIZE_H
#define MIMO_QUANT_QUANTIZE_H
#include <stdbool.h>

#include "core/status.h"

typedef struct mimo_quant_opts {
  const char *src, *dst;
  bool awq;                /* else round to nearest */
  int group;               /* inputs per scale (default 128) */
  bool asym;               /* zero points (W4A16_ASYM) */
  const int *calib;        /* AWQ: calibration token ids, fed in sequences of calib_ctx, each from an empty cache */
  int n_calib, calib_ctx;
  const int *ignore;       /* layers whose experts stay dense (the release keeps layer 41's) */
  int n_ignore;
  int grid;                /* AWQ ratios tried (default 20) */
  bool smooth_only;        /* AWQ's scales folded in, experts left dense and every smoothed tensor written in float32:
                            * the same function up to float rounding (a check of the folding) */
  int threads;             /* 0: all cores */
} mimo_quant_opts;

mimo_status mimo_quantize(const mimo_quant_opts *o);
#endif
