/* MiMo-V2 text model: load a checkpoint directory and run the forward pass of
 * spec §2 over backend ops. */
#ifndef MIMO_MODEL_MIMO_V2_H
#define MIMO_MODEL_MIMO_V2_H
#include "backend/backend.h"
#include "engine/kv_cache.h"
#include "io/checkpoint.h"
#include "io/config.h"
#include "model/mimo_v2_weights.h"

typedef struct mimo_model {
  mimo_config cfg;        /* stop ids include generation_config.json's */
  mimo_gen_defaults gen;  /* generation_config.json sampling defaults */
  mimo_ckpt ck;
  mimo_weights w;
  mimo_backend *be; /* not owned */
} mimo_model;

mimo_status mimo_model_load(const char *dir, mimo_backend *be, mimo_model **out);
void mimo_model_free(mimo_model *m);

/* One step over a batch of sequences: sequence i contributes n_tokens[i] tokens
 * (concatenated in `tokens`) at its next positions, and its cache grows by as
 * many. logits gets [rows][vocab]: every token's row if all_logits, else one
 * row per sequence (its last token). */
typedef struct mimo_batch {
  int n_seqs;
  mimo_kv_seq **seqs;
  const int *n_tokens;
  const int *tokens;
  int all_logits;
} mimo_batch;

mimo_status mimo_model_forward(mimo_model *m, const mimo_batch *b, float *logits);
#endif
