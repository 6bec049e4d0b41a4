/* Tensor-parallel placement math (issues 6-8, CPU side) for TP 1, 2, 4, 8 and
 * checkpoint chunk counts 2 and 4, on MiMo-V2.5's real head geometry and tiny
 * ones. The reference layout is built independently from spec §3.3's wording:
 * chunk c = [query heads of chunk c | their KV heads' K | their V]. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "model/mimo_v2_shard.h"

/* Label of a natural-order row: kind (0 q, 1 k, 2 v), head, dim. */
typedef struct {
  int kind, head, dim;
} label;

/* Builds the checkpoint's fused row order by walking the chunks as the spec describes. */
static label *ckpt_layout(const mimo_attn_geom *g, int chunks, int *n) {
  int rows = g->n_heads * g->head_dim + g->n_kv_heads * (g->head_dim + g->v_head_dim), k = 0;
  label *L = malloc((size_t)rows * sizeof *L);
  int qh = g->n_heads / chunks, kh = g->n_kv_heads / chunks;
  for (int c = 0; c < chunks; c++) {
    for (int h = c * qh; h < (c + 1) * qh; h++)
      for (int d = 0; d < g->head_dim; d++)
        L[k++] = (label){0, h, d};
    for (int h = c * kh; h < (c + 1) * kh; h++)
      for (int d = 0; d < g->head_dim; d++)
        L[k++] = (label){1, h, d};
    for (int h = c * kh; h < (c + 1) * kh; h++)
      for (int d = 0; d < g->v_head_dim; d++)
        L[k++] = (label){2, h, d};
  }
  *n = k;
  return L;
}

static label natural(const mimo_attn_geom *g, int row) {
  int nq = g->n_heads * g->head_dim, nk = g->n_kv_heads * g->head_dim;
  if (row < nq)
    return (label){0, row / g->head_dim, row % g->head_dim};
  if (row < nq + nk)
    return (label){1, (row - nq) / g->head_dim, (row - nq) % g->head_dim};
  row -= nq + nk;
  return (label){2, row / g->v_head_dim, row % g->v_head_dim};
}

static int same(label a, label b) { return a.kind == b.kind && a.head == b.head && a.dim == b.dim; }

static void check_geometry(const mimo_attn_geom *g, int chunks) {
  int rows;
  label *L = ckpt_layout(g, chunks, &rows);
  /* natural row -> checkpoint row is the spec's layout, and a permutation */
  char *hit = calloc((size_t)rows, 1);
  for (int r = 0; r < rows; r++) {
    int c = mimo_shard_qkv_ckpt_row(g, chunks, r);
    assert_true(c >= 0 && c < rows);
    assert_true(same(L[c], natural(g, r)));
    assert_false(hit[c]);
    hit[c] = 1;
  }
  for (int tp = 1; tp <= 8; tp *= 2) {
    if (mimo_shard_check(g, tp) != MIMO_OK)
      continue;
    int per = mimo_shard_qkv_rows(g, tp), *rr = malloc((size_t)per * sizeof *rr);
    int *q_owner = calloc((size_t)g->n_heads, sizeof(int)), *kv_copies = calloc((size_t)g->n_kv_heads, sizeof(int));
    for (int h = 0; h < g->n_heads; h++)
      q_owner[h] = -1;
    for (int rank = 0; rank < tp; rank++) {
      mimo_shard_attn a;
      mimo_shard_attn_rank(g, tp, rank, &a);
      mimo_shard_qkv_rank_rows(g, chunks, tp, rank, rr);
      for (int h = a.q_head0; h < a.q_head0 + a.n_q_heads; h++) {
        assert_int_equal(q_owner[h], -1); /* every query head on exactly one rank ... */
        q_owner[h] = rank;
        assert_int_equal(rank, h / (g->n_heads / tp)); /* ... the one the formula says */
        int kv = h / (g->n_heads / g->n_kv_heads);  /* GQA stays local */
        assert_true(kv >= a.kv_head0 && kv < a.kv_head0 + a.n_kv_heads);
      }
      for (int h = a.kv_head0; h < a.kv_head0 + a.n_kv_heads; h++)
        kv_copies[h]++;
      /* the rank's rows are [its Q | its K | its V] in natural order */
      int k = 0;
      for (int h = a.q_head0; h < a.q_head0 + a.n_q_heads; h++)
        for (int d = 0; d < g->head_dim; d++)
          assert_true(same(L[rr[k++]], (label){0, h, d}));
      for (int h = a.kv_head0; h < a.kv_head0 + a.n_kv_heads; h++)
        for (int d = 0; d < g->head_dim; d++)
          assert_true(same(L[rr[k++]], (label){1, h, d}));
      for (int h = a.kv_head0; h < a.kv_head0 + a.n_kv_heads; h++)
        for (int d = 0; d < g->v_head_dim; d++)
          assert_true(same(L[rr[k++]], (label){2, h, d}));
      assert_int_equal(k, per);
      /* serving at the checkpoint's own TP size: rank c's slice is chunk c, contiguous */
      if (tp == chunks)
        for (int i = 0; i < per; i++)
          assert_int_equal(rr[i], rank * per + i);
    }
    int copies = tp > g->n_kv_heads ? tp / g->n_kv_heads : 1;
    for (int h = 0; h < g->n_kv_heads; h++)
      assert_int_equal(kv_copies[h], copies); /* TP-8 over 4 KV heads: each on two ranks */
    free(rr);
    free(q_owner);
    free(kv_copies);
  }
  free(hit);
  free(L);
}

static void test_mimo_v25_geometry(void **state) {
  (void)state;
  mimo_attn_geom full = {.n_heads = 64, .n_kv_heads = 4, .head_dim = 192, .v_head_dim = 128};
  mimo_attn_geom swa = {.n_heads = 64, .n_kv_heads = 8, .head_dim = 192, .v_head_dim = 128};
  check_geometry(&full, 4);
  check_geometry(&swa, 4);
  /* the published sizes: 13568 / 14848 rows, 3392 / 3712 per chunk */
  assert_int_equal(mimo_shard_qkv_rows(&full, 4), 3392);
  assert_int_equal(mimo_shard_qkv_rows(&swa, 4), 3712);
  assert_int_equal(mimo_shard_qkv_rows(&full, 8), 1536 + 192 + 128);
  assert_int_equal(mimo_shard_check(&full, 8), MIMO_OK);
  assert_int_equal(mimo_shard_check(&full, 3), MIMO_E_INVALID);
}

static void test_tiny_geometries(void **state) {
  (void)state;
  mimo_attn_geom a = {.n_heads = 8, .n_kv_heads = 2, .head_dim = 32, .v_head_dim = 16};
  mimo_attn_geom b = {.n_heads = 8, .n_kv_heads = 4, .head_dim = 32, .v_head_dim = 16};
  check_geometry(&a, 2);
  check_geometry(&b, 2);
  check_geometry(&b, 4);
}

static void test_ranges(void **state) {
  (void)state;
  static const int ns[] = {1, 7, 256, 2048, 152576, 16384};
  for (size_t i = 0; i < sizeof ns / sizeof *ns; i++)
    for (int tp = 1; tp <= 8; tp++) {
      int next = 0;
      for (int r = 0; r < tp; r++) {
        int b, e;
        mimo_shard_range(ns[i], tp, r, &b, &e);
        assert_int_equal(b, next);
        assert_true(e - b == ns[i] / tp || e - b == ns[i] / tp + 1);
        next = e;
      }
      assert_int_equal(next, ns[i]);
    }
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_mimo_v25_geometry), cmocka_unit_test(test_tiny_geometries),
                                     cmocka_unit_test(test_ranges)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}
