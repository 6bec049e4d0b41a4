/* Per-sequence KV cache. Sliding layers keep a ring of `window` slots per sequence, so their memory does not grow
 * with context. Full-attention layers are paged: a sequence holds a table of blocks of MIMO_KV_BLOCK positions
 * (backend.h), each block carrying those positions of every full layer, taken from the model's pool and given
 * back when the sequence ends. Growing a sequence adds blocks (nothing is copied), and a block is the unit a
 * prefix cache can share later. Values are float32 or bf16 (the pool's choice) in the memory of the backend that
 * runs the model (its kv_realloc/kv_free hooks; the host heap when it has none). */
#ifndef MIMO_ENGINE_KV_CACHE_H
#define MIMO_ENGINE_KV_CACHE_H
#include <stdbool.h>
#include <stddef.h>

#include "backend/backend.h"
#include "io/config.h"

/* Blocks for the full layers of one model on one backend, shared by its sequences, and their ring sets (every
 * sliding layer's ring of one sequence in one allocation). Storage for blocks comes in chunks (the first small, then
 * each as large as all before it, up to 256 MiB) that stay until the pool ends; freed blocks and ring sets are
 * reused (free ring sets go back to the backend when blocks need room). Reference counted: the model and every
 * sequence holding blocks. Thread-safe. */
typedef struct mimo_kv_pool mimo_kv_pool;

/* bf16: elements are bf16 instead of float32 (half the memory; attention reads keys and values rounded). */
mimo_status mimo_kv_pool_new(mimo_kv_pool **out, const mimo_config *cfg, mimo_backend *be, bool bf16);
void mimo_kv_pool_release(mimo_kv_pool *p);
/* Bytes of one block (every full layer's keys and values for MIMO_KV_BLOCK positions); 0: no full layer. */
size_t mimo_kv_pool_block_bytes(const mimo_kv_pool *p);
/* Storage the pool has taken from its backend: blocks and ring sets, held or free. */
size_t mimo_kv_pool_bytes(mimo_kv_pool *p);
/* Blocks carved from storage so far, and how many of them sequences hold. */
void mimo_kv_pool_usage(mimo_kv_pool *p, long *blocks, long *in_use);

typedef struct mimo_kv_seq {
  int n_layers;
  mimo_kv_view *layers; /* per layer */
  void *rings;          /* the sliding layers' rings, one allocation from the pool (NULL: not reserved yet) */
  int len;              /* positions processed */
  mimo_backend *be;     /* owner of the storage (NULL: not reserved yet); not owned */
  mimo_kv_pool *pool;   /* where the blocks come from (a reference, from the first reserve) */
  void **blocks;        /* host copy of the block table */
  int n_blocks;
  long cap_blocks;
  void **table;         /* the table in backend memory (NULL: the backend reads `blocks`) */
  long table_cap;
  size_t bytes;         /* storage held: rings and blocks */
  /* Tensor parallel: one cache per rank (its own KV heads, on its device), made by
   * the model on the first step; this sequence's own views stay empty. */
  struct mimo_kv_seq **shards;
  int n_shards;
  /* What a user keeps with the sequence, freed with it and not forked (the engine's MTP context of a prefix-cache
   * entry: the hidden states of its last positions). */
  void *attach;
  void (*attach_free)(void *attach);
  /* Several processes: the sequence's id in the group, and who to tell when it ends. */
  unsigned long long uid;
  void (*on_free)(void *ctx, unsigned long long uid);
  void *on_free_ctx;
} mimo_kv_seq;

mimo_status mimo_kv_seq_init(mimo_kv_seq **out, const mimo_config *cfg);
/* Makes room for positions up to new_len - 1 in every full-attention layer from pool (a sequence stays with the
 * pool it was first reserved on). */
mimo_status mimo_kv_reserve(mimo_kv_seq *s, mimo_kv_pool *pool, int new_len);
/* dst (new: never reserved or run) takes src's positions 0..len - 1 on src's pool, len = src->len or src->len - 1
 * (a prompt equal to a cached one recomputes its last token; a sliding layer's ring keeps what that needs, but no
 * more): the full layers' blocks wholly below len are shared (nobody writes a position twice, so they stay as they
 * are), the block holding position len and the sliding layers' rings are copied (in order with the backend's queued
 * work). From here on the two grow apart. A prefix cache entry is such a copy; so is a request that starts from one.
 * Not for tensor-parallel sequences (their shards are forked one by one: mimo_model_kv_fork). */
mimo_status mimo_kv_fork(mimo_kv_seq *dst, const mimo_kv_seq *src, int len);
void mimo_kv_seq_free(mimo_kv_seq *s);
/* Forgets the positions from len on (len >= s->len minus the pool's ring slack, cfg.kv_ring_slack, when there are
 * sliding layers): rejected speculative tokens. Their slots are written again by the next step. */
mimo_status mimo_kv_seq_truncate(mimo_kv_seq *s, int len);
/* A new sequence (reserved, nothing run) of sliding layers only continues from position pos: its rings are cleared
 * to zeros, which the first steps' windows read in place of the positions never computed. */
mimo_status mimo_kv_seq_start_at(mimo_kv_seq *s, int pos);
/* Bytes of storage held, the ranks' shards included. */
size_t mimo_kv_bytes(const mimo_kv_seq *s);
#endif
