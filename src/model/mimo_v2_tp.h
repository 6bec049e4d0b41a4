/* Tensor-parallel internals shared by mimo_v2_tp.c and mimo_v2_tp_weights.c. */
#ifndef MIMO_MODEL_MIMO_V2_TP_H
#define MIMO_MODEL_MIMO_V2_TP_H
#include "model/mimo_v2.h"

/* The config rank `rank` of tp runs: its query/KV heads and MLP widths (experts
 * keep their width under ep). Fails naming what does not split. */
mimo_status mimo_tp_rank_config(const mimo_config *c, int tp, int rank, bool ep, mimo_config *out);
/* Embedding, final norm, lm_head (its vocabulary slice when split_vocab) and the
 * empty layer table of rank r (r->tp, r->rank, r->ep set). */
mimo_status mimo_tp_rank_globals(mimo_model *r, const mimo_config *c, const mimo_weights *full, bool split_vocab);
/* Layer L of rank r cut from the full views. */
mimo_status mimo_tp_rank_layer(mimo_model *r, const mimo_config *c, const mimo_weights *full, int L);
/* Frees the rank's host copies (once its backend holds its own). */
void mimo_tp_release_copies(mimo_model *r);
#endif
