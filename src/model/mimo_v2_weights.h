/* MiMo-V2 text weights bound to checkpoint tensors (zero-copy views of the
 * mmapped shards), validated against the config (spec §8, generalised). */
#ifndef MIMO_MODEL_MIMO_V2_WEIGHTS_H
#define MIMO_MODEL_MIMO_V2_WEIGHTS_H
#include "backend/backend.h"
#include "io/checkpoint.h"
#include "io/config.h"

typedef struct mimo_layer_weights {
  mimo_vec input_norm, post_norm;   /* [hidden] */
  bool fused_qkv;
  mimo_linear qkv;                  /* fused: [chunks*(Qc+Kc+Vc), hidden], checkpoint chunk order (§3.3) */
  mimo_linear q, k, v;              /* split layout */
  mimo_linear o;                    /* [hidden, n_heads*v_head_dim] */
  mimo_vec sink;                    /* [n_heads] or n = 0 */
  bool moe;
  mimo_linear gate, up, down;       /* dense MLP */
  mimo_linear router;               /* [n_experts, hidden] */
  mimo_vec router_bias;             /* [n_experts] or n = 0 */
  mimo_linear *experts;             /* [n_experts * 3]: gate, up, down */
  mimo_wformat expert_fmt;
  mimo_dtype expert_dt;             /* dense experts: weight dtype */
  int expert_group;
  bool expert_asym;
} mimo_layer_weights;

/* One MTP layer (spec §2.7): x = eh_proj · [enorm(E[next token]) ; hnorm(h)], then a decoder layer of the sliding
 * geometry with its sink and a dense MLP, then final_norm and the shared lm_head. */
typedef struct mimo_mtp_weights {
  mimo_vec enorm, hnorm, final_norm;
  mimo_linear eh_proj;              /* [hidden, 2 * hidden] */
  mimo_layer_weights layer;         /* input_norm, attention, post_norm = pre_mlp_layernorm, dense MLP */
} mimo_mtp_weights;

typedef struct mimo_weights {
  mimo_linear embed;                /* [vocab, hidden] as a table */
  mimo_vec final_norm;
  mimo_linear lm_head;
  mimo_layer_weights *layers;       /* [num_hidden_layers] */
  int n_layers;
  mimo_mtp_weights *mtp;            /* model.mtp.layers.{0..n_mtp-1}, as many as the checkpoint has (0: none) */
  int n_mtp;
  uint64_t bytes;                   /* bytes of all bound tensors */
} mimo_weights;

mimo_status mimo_weights_bind(const mimo_config *cfg, const mimo_ckpt *ck, mimo_weights *w);
void mimo_weights_free(mimo_weights *w);
/* Bytes a projection occupies in its stored format (int4: nibbles + scales + zero points). */
double mimo_linear_bytes(const mimo_linear *l);
#endif
