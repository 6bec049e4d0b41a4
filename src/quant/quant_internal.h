/* Shared by quantize.c (the writer) and awq.c (calibration and the scale search). */
#ifndef MIMO_QUANT_INTERNAL_H
#define MIMO_QUANT_INTERNAL_H
#include "core/threads.h"
#include "model/mimo_v2.h"
#include "quant/quantize.h"

typedef struct qlayer {
  bool quant;   /* MoE layer whose experts become int4 (dense in the source, not ignored) */
  float *s_gu;  /* [H] AWQ scales of the experts' and router's inputs (NULL: none) */
  float *s_dn;  /* [E][I] each expert's down-input scales (NULL: none) */
  double alpha_gu, alpha_dn_mean, gain_gu; /* chosen ratios; RTN error / AWQ error of the block's output */
  int tokens;   /* calibration tokens seen */
} qlayer;

typedef struct qctx {
  const mimo_quant_opts *o;
  mimo_model *m;
  qlayer *L;
  mimo_pool *pool;
} qctx;

/* Row-major floats of a dense linear (NULL on OOM). */
float *mimo_q_dense_f32(const mimo_linear *l);
/* AWQ: calibrates and fills every quantised layer's s_gu and s_dn. */
mimo_status mimo_awq_scales(qctx *q);
#endif
