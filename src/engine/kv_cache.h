/* Per-sequence KV cache. Full-attention layers keep every position; sliding
 * layers keep a ring of `window` slots, so their memory does not grow with
 * context. Values are float32 in the memory of the backend that runs the
 * model: storage is taken on the first mimo_kv_reserve, through the backend's
 * kv_realloc/kv_free hooks (host malloc/realloc when it has none). */
#ifndef MIMO_ENGINE_KV_CACHE_H
#define MIMO_ENGINE_KV_CACHE_H
#include <stddef.h>

#include "backend/backend.h"
#include "io/config.h"

typedef struct mimo_kv_seq {
  int n_layers;
  mimo_kv_view *layers; /* per layer */
  int len;              /* positions processed */
  mimo_backend *be;     /* owner of the storage (NULL: host heap); not owned */
  size_t bytes;         /* storage held */
  /* Tensor parallel: one cache per rank (its own KV heads, on its device), made by
   * the model on the first step; this sequence's own views stay empty. */
  struct mimo_kv_seq **shards;
  int n_shards;
  /* Several processes: the sequence's id in the group, and who to tell when it ends. */
  unsigned long long uid;
  void (*on_free)(void *ctx, unsigned long long uid);
  void *on_free_ctx;
} mimo_kv_seq;

mimo_status mimo_kv_seq_init(mimo_kv_seq **out, const mimo_config *cfg);
/* Makes room for positions up to new_len - 1 in every full-attention layer, in
 * be's memory (a sequence stays with the backend it was first reserved on). */
mimo_status mimo_kv_reserve(mimo_kv_seq *s, const mimo_config *cfg, mimo_backend *be, int new_len);
void mimo_kv_seq_free(mimo_kv_seq *s);
/* Bytes of storage held, the ranks' shards included. */
size_t mimo_kv_bytes(const mimo_kv_seq *s);
#endif
