/* Tensor-parallel placement for MiMo-V2 (issue 6), as pure index math the CPU
 * can test: which query/KV heads, qkv rows, o_proj columns, MLP and expert
 * slices and vocab rows each rank of a TP group owns.
 *
 * Query heads split evenly (n_heads % tp == 0). KV heads split evenly when
 * tp <= n_kv; when tp > n_kv each KV head is replicated on tp / n_kv ranks
 * (rank r holds KV head r / (tp / n_kv)), which keeps GQA local: rank r's query
 * heads all map to the KV head it holds. The checkpoint's fused qkv is stored in
 * `chunks` blocks [Q_c | K_c | V_c] (spec §3.3); serving at another TP size means
 * mapping every natural-order row to its checkpoint row first. */
#ifndef MIMO_MODEL_MIMO_V2_SHARD_H
#define MIMO_MODEL_MIMO_V2_SHARD_H
#include "core/status.h"
#include "io/config.h"

typedef struct mimo_shard_attn {
  int q_head0, n_q_heads;   /* natural-order query heads [q_head0, q_head0 + n_q_heads) */
  int kv_head0, n_kv_heads; /* KV heads held (replicated ones included) */
} mimo_shard_attn;

/* Checks that the layer type's heads can be spread over tp ranks. */
mimo_status mimo_shard_check(const mimo_attn_geom *g, int tp);
void mimo_shard_attn_rank(const mimo_attn_geom *g, int tp, int rank, mimo_shard_attn *out);

/* Row of the checkpoint's fused qkv tensor holding natural-order row `row` of
 * [Q_all | K_all | V_all] (Q: n_heads*head_dim rows, K: n_kv*head_dim, V: n_kv*v_head_dim). */
int mimo_shard_qkv_ckpt_row(const mimo_attn_geom *g, int chunks, int row);

/* The rows of the fused checkpoint tensor that rank `rank` needs, in the order
 * its local [Q_r | K_r | V_r] projection wants them. rows must hold
 * mimo_shard_qkv_rows(g, tp) entries. */
int mimo_shard_qkv_rows(const mimo_attn_geom *g, int tp);
void mimo_shard_qkv_rank_rows(const mimo_attn_geom *g, int chunks, int tp, int rank, int *rows);

/* An even split of n items (MLP width, expert width, vocab rows, o_proj input
 * columns by head) over tp ranks: [*begin, *end). Uneven n gives the first
 * n % tp ranks one more. */
void mimo_shard_range(int n, int tp, int rank, int *begin, int *end);
/* Expert parallel: whole experts per rank, contiguous blocks. */
void mimo_shard_experts(int n_experts, int ep, int rank, int *begin, int *end);
#endif
