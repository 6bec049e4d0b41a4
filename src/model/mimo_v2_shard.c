#include "model/mimo_v2_shard.h"

mimo_status mimo_shard_check(const mimo_attn_geom *g, int tp) {
  if (tp < 1)
    return mimo_errf(MIMO_E_INVALID, "tensor-parallel size %d must be >= 1", tp);
  if (g->n_heads % tp)
    return mimo_errf(MIMO_E_INVALID, "%d query heads do not split over %d ranks", g->n_heads, tp);
  if (tp <= g->n_kv_heads ? g->n_kv_heads % tp : tp % g->n_kv_heads)
    return mimo_errf(MIMO_E_INVALID, "%d KV heads cannot be spread over %d ranks (split or replicate evenly)",
                     g->n_kv_heads, tp);
  return MIMO_OK;
}

void mimo_shard_attn_rank(const mimo_attn_geom *g, int tp, int rank, mimo_shard_attn *o) {
  o->n_q_heads = g->n_heads / tp;
  o->q_head0 = rank * o->n_q_heads;
  if (tp <= g->n_kv_heads) {
    o->n_kv_heads = g->n_kv_heads / tp;
    o->kv_head0 = rank * o->n_kv_heads;
  } else { /* each KV head replicated on tp / n_kv consecutive ranks */
    o->n_kv_heads = 1;
    o->kv_head0 = rank / (tp / g->n_kv_heads);
  }
}

int mimo_shard_qkv_ckpt_row(const mimo_attn_geom *g, int chunks, int row) {
  int nq = g->n_heads * g->head_dim, nk = g->n_kv_heads * g->head_dim;
  int qc = nq / chunks, kc = nk / chunks, vc = g->n_kv_heads * g->v_head_dim / chunks, per = qc + kc + vc;
  if (row < nq)
    return (row / qc) * per + row % qc;
  row -= nq;
  if (row < nk)
    return (row / kc) * per + qc + row % kc;
  row -= nk;
  return (row / vc) * per + qc + kc + row % vc;
}

int mimo_shard_qkv_rows(const mimo_attn_geom *g, int tp) {
  mimo_shard_attn a;
  mimo_shard_attn_rank(g, tp, 0, &a);
  return a.n_q_heads * g->head_dim + a.n_kv_heads * (g->head_dim + g->v_head_dim);
}

void mimo_shard_qkv_rank_rows(const mimo_attn_geom *g, int chunks, int tp, int rank, int *rows) {
  mimo_shard_attn a;
  mimo_shard_attn_rank(g, tp, rank, &a);
  int n = 0, nq = g->n_heads * g->head_dim, nk = g->n_kv_heads * g->head_dim;
  for (int r = a.q_head0 * g->head_dim; r < (a.q_head0 + a.n_q_heads) * g->head_dim; r++)
    rows[n++] = mimo_shard_qkv_ckpt_row(g, chunks, r);
  for (int r = a.kv_head0 * g->head_dim; r < (a.kv_head0 + a.n_kv_heads) * g->head_dim; r++)
    rows[n++] = mimo_shard_qkv_ckpt_row(g, chunks, nq + r);
  for (int r = a.kv_head0 * g->v_head_dim; r < (a.kv_head0 + a.n_kv_heads) * g->v_head_dim; r++)
    rows[n++] = mimo_shard_qkv_ckpt_row(g, chunks, nq + nk + r);
}

void mimo_shard_range(int n, int tp, int rank, int *begin, int *end) {
  int base = n / tp, extra = n % tp;
  *begin = rank * base + (rank < extra ? rank : extra);
  *end = *begin + base + (rank < extra);
}

void mimo_shard_experts(int n_experts, int ep, int rank, int *begin, int *end) {
  mimo_shard_range(n_experts, ep, rank, begin, end);
}
