/* The KV pool and paged sequences (engine/kv_cache.c) through a backend that keeps its storage apart, as a GPU
 * does: storage from kv_realloc under a byte budget, block tables written only through kv_table_write. Checked
 * against the layout's own rules: the views read the backend's table and it holds the sequence's blocks in order;
 * blocks never overlap and come back for reuse; a reserve the budget cannot meet fails with MIMO_E_NOMEM, takes
 * nothing and leaves the sequence usable; a sequence stays with its pool; a bf16 pool's blocks are half the size;
 * a fork shares whole blocks, copies the rest, and the blocks outlive any one of their holders. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/kv_cache.h"
#include "io/config.h"
#include "model/synth.h"

static char root[64];
static mimo_config cfg;

/* ---- a host backend that behaves like a device one ---- */
typedef struct {
  size_t budget, used;
  int table_writes;
} fake_ctx;

static fake_ctx fake;

static float *fake_realloc(mimo_backend *be, float *p, size_t old_n, size_t new_n) {
  (void)be;
  if (fake.used - old_n * 4 + new_n * 4 > fake.budget)
    return NULL; /* p untouched, as the hook promises */
  size_t *h = realloc(p ? (size_t *)p - 2 : NULL, new_n * 4 + 2 * sizeof(size_t));
  if (!h)
    return NULL;
  if (!p)
    h[0] = 0;
  fake.used = fake.used - h[0] * 4 + new_n * 4;
  h[0] = new_n;
  return (float *)(h + 2);
}

static void fake_free(mimo_backend *be, float *p) {
  (void)be;
  if (!p)
    return;
  size_t *h = (size_t *)p - 2;
  fake.used -= h[0] * 4;
  free(h);
}

static void fake_table_write(mimo_backend *be, void **dst, void *const *src, int n) {
  (void)be;
  memcpy(dst, src, (size_t)n * sizeof *dst);
  fake.table_writes++;
}

static mimo_backend fake_be = {.name = "fake", .kv_realloc = fake_realloc, .kv_free = fake_free,
                               .kv_table_write = fake_table_write};

static int n_full_layers(void) {
  int n = 0;
  for (int L = 0; L < cfg.num_hidden_layers; L++)
    n += mimo_config_geom(&cfg, L)->window == 0;
  return n;
}

/* The views of every full layer read the backend's copy of the table, which lists the sequence's blocks. */
static void check_views(const mimo_kv_seq *s) {
  for (int L = 0; L < s->n_layers; L++) {
    const mimo_kv_view *kv = &s->layers[L];
    if (kv->ring) {
      assert_int_equal(kv->cap, mimo_config_geom(&cfg, L)->window);
      continue;
    }
    assert_ptr_equal(kv->blocks, s->table);
    assert_int_equal(kv->cap, s->n_blocks * MIMO_KV_BLOCK);
  }
  assert_memory_equal(s->table, s->blocks, (size_t)s->n_blocks * sizeof(void *));
}

static void test_growth_and_reuse(void **state) {
  (void)state;
  fake = (fake_ctx){.budget = (size_t)1 << 30};
  mimo_kv_pool *pool;
  assert_int_equal(mimo_kv_pool_new(&pool, &cfg, &fake_be, false), MIMO_OK);
  const size_t bb = mimo_kv_pool_block_bytes(pool);
  assert_true(n_full_layers() > 0);
  assert_int_equal(bb % 16, 0); /* kernels read rows with 16-byte loads */
  mimo_kv_seq *a, *b;
  assert_int_equal(mimo_kv_seq_init(&a, &cfg), MIMO_OK);
  assert_int_equal(mimo_kv_seq_init(&b, &cfg), MIMO_OK);
  /* grown in turns, so their blocks interleave */
  for (int len = 1; len <= 40 * MIMO_KV_BLOCK; len += 37) {
    assert_int_equal(mimo_kv_reserve(a, pool, len), MIMO_OK);
    assert_int_equal(mimo_kv_reserve(b, pool, len / 2 + 1), MIMO_OK);
    assert_int_equal(a->n_blocks, (len + MIMO_KV_BLOCK - 1) / MIMO_KV_BLOCK);
  }
  check_views(a);
  check_views(b);
  /* no two blocks overlap */
  const int n = a->n_blocks + b->n_blocks;
  char **all = malloc((size_t)n * sizeof *all);
  for (int i = 0; i < a->n_blocks; i++)
    all[i] = a->blocks[i];
  for (int i = 0; i < b->n_blocks; i++)
    all[a->n_blocks + i] = b->blocks[i];
  for (int i = 0; i < n; i++)
    for (int j = i + 1; j < n; j++)
      assert_true(all[i] + bb <= all[j] || all[j] + bb <= all[i]);
  long blocks, in_use;
  mimo_kv_pool_usage(pool, &blocks, &in_use);
  assert_int_equal(in_use, n);
  assert_true(blocks >= n);
  const long before = blocks;
  /* a ends: its blocks go back, and a new sequence of the same length takes them instead of new storage */
  mimo_kv_seq_free(a);
  mimo_kv_pool_usage(pool, &blocks, &in_use);
  assert_int_equal(in_use, b->n_blocks);
  mimo_kv_seq *c;
  assert_int_equal(mimo_kv_seq_init(&c, &cfg), MIMO_OK);
  assert_int_equal(mimo_kv_reserve(c, pool, 40 * MIMO_KV_BLOCK), MIMO_OK);
  mimo_kv_pool_usage(pool, &blocks, &in_use);
  assert_int_equal(blocks, before);
  check_views(c);
  mimo_kv_seq_free(b);
  mimo_kv_seq_free(c);
  mimo_kv_pool_usage(pool, &blocks, &in_use);
  assert_int_equal(in_use, 0);
  mimo_kv_pool_release(pool);
  free(all);
  assert_int_equal(fake.used, 0); /* every chunk, table and ring went back to the backend */
}

static void test_out_of_memory(void **state) {
  (void)state;
  fake = (fake_ctx){.budget = (size_t)1 << 30};
  mimo_kv_pool *pool;
  assert_int_equal(mimo_kv_pool_new(&pool, &cfg, &fake_be, false), MIMO_OK);
  const size_t bb = mimo_kv_pool_block_bytes(pool);
  mimo_kv_seq *a, *b;
  assert_int_equal(mimo_kv_seq_init(&a, &cfg), MIMO_OK);
  assert_int_equal(mimo_kv_reserve(a, pool, 1), MIMO_OK); /* rings, table, the first chunk */
  long blocks, in_use;
  mimo_kv_pool_usage(pool, &blocks, &in_use);
  /* room for 3 more blocks beyond the first chunk (and tables): asking for far more fails and takes nothing */
  fake.budget = fake.used + 3 * bb + 4096;
  const int have = a->n_blocks;
  mimo_status st = mimo_kv_reserve(a, pool, (int)(blocks + 50) * MIMO_KV_BLOCK);
  assert_int_equal(st, MIMO_E_NOMEM);
  assert_non_null(strstr(mimo_errmsg(), "KV cache"));
  assert_int_equal(a->n_blocks, have);
  long blocks2, in_use2;
  mimo_kv_pool_usage(pool, &blocks2, &in_use2);
  assert_int_equal(in_use2, in_use);
  check_views(a);
  /* what fits still works: the pool falls back from a large chunk to what the step needs */
  assert_int_equal(mimo_kv_reserve(a, pool, (int)(blocks + 2) * MIMO_KV_BLOCK), MIMO_OK);
  check_views(a);
  /* a sequence stays with its pool */
  mimo_kv_pool *other;
  assert_int_equal(mimo_kv_pool_new(&other, &cfg, &fake_be, false), MIMO_OK);
  assert_int_equal(mimo_kv_reserve(a, other, 1), MIMO_E_INVALID);
  mimo_kv_pool_release(other);
  /* another sequence gets a's blocks once a ends, within the same budget */
  const int took = a->n_blocks;
  mimo_kv_seq_free(a);
  assert_int_equal(mimo_kv_seq_init(&b, &cfg), MIMO_OK);
  assert_int_equal(mimo_kv_reserve(b, pool, took * MIMO_KV_BLOCK), MIMO_OK);
  mimo_kv_seq_free(b);
  /* no room for a new sequence's block table: refused, nothing kept, and the same sequence works once there is room */
  const size_t used = fake.used;
  fake.budget = used + 64;
  assert_int_equal(mimo_kv_seq_init(&b, &cfg), MIMO_OK);
  assert_int_equal(mimo_kv_reserve(b, pool, 1), MIMO_E_NOMEM);
  assert_true(fake.used <= used + 64);
  fake.budget = (size_t)1 << 30;
  assert_int_equal(mimo_kv_reserve(b, pool, 1), MIMO_OK);
  check_views(b);
  mimo_kv_seq_free(b);
  mimo_kv_pool_release(pool);
  assert_int_equal(fake.used, 0);
}

/* A sequence's rings are one set from the pool: an ended sequence's set goes to the next sequence without new
 * storage; a set that cannot be had fails the reserve (E_NOMEM) and takes nothing; free sets give their storage
 * to blocks that need it. */
static void test_ring_sets(void **state) {
  (void)state;
  fake = (fake_ctx){.budget = (size_t)1 << 30};
  mimo_kv_pool *pool;
  assert_int_equal(mimo_kv_pool_new(&pool, &cfg, &fake_be, false), MIMO_OK);
  const size_t bb = mimo_kv_pool_block_bytes(pool);
  mimo_kv_seq *a, *b;
  assert_int_equal(mimo_kv_seq_init(&a, &cfg), MIMO_OK);
  assert_int_equal(mimo_kv_reserve(a, pool, 1), MIMO_OK);
  assert_non_null(a->rings);
  const size_t ring_set = mimo_kv_pool_bytes(pool) - 16 * bb; /* the first chunk holds 16 blocks */
  assert_true(ring_set > 0);
  for (int L = 0; L < a->n_layers; L++)
    if (a->layers[L].ring) { /* inside the set, aligned as a device allocation of its own */
      assert_true((char *)a->layers[L].k >= (char *)a->rings && (char *)a->layers[L].v < (char *)a->rings + ring_set);
      assert_int_equal(((char *)a->layers[L].k - (char *)a->rings) % 256, 0);
      assert_int_equal(((char *)a->layers[L].v - (char *)a->rings) % 256, 0);
    }
  void *set = a->rings;
  mimo_kv_seq_free(a);
  /* the next sequence gets the same set, with no more storage than its block table */
  const size_t used = fake.used;
  assert_int_equal(mimo_kv_seq_init(&b, &cfg), MIMO_OK);
  assert_int_equal(mimo_kv_reserve(b, pool, 1), MIMO_OK);
  assert_ptr_equal(b->rings, set);
  assert_true(fake.used < used + ring_set);
  /* a second set does not fit: refused, and nothing taken */
  fake.budget = fake.used + ring_set / 2;
  assert_int_equal(mimo_kv_seq_init(&a, &cfg), MIMO_OK);
  const size_t before = fake.used;
  assert_int_equal(mimo_kv_reserve(a, pool, 1), MIMO_E_NOMEM);
  assert_null(a->rings);
  assert_true(fake.used <= before + 128); /* at most its table */
  fake.budget = (size_t)1 << 30;
  assert_int_equal(mimo_kv_reserve(a, pool, 1), MIMO_OK);
  mimo_kv_seq_free(a); /* its set is free now */
  /* free sets, more than a block's worth, while b holds its own */
  const int k = (int)(bb / ring_set) + 2;
  mimo_kv_seq *many[64];
  assert_true(k <= 64);
  for (int i = 0; i < k; i++) {
    assert_int_equal(mimo_kv_seq_init(&many[i], &cfg), MIMO_OK);
    assert_int_equal(mimo_kv_reserve(many[i], pool, 1), MIMO_OK);
  }
  for (int i = 0; i < k; i++)
    mimo_kv_seq_free(many[i]);
  /* a block past the first chunk, under a budget that only the free sets' storage makes room for */
  long blocks, in_use;
  mimo_kv_pool_usage(pool, &blocks, &in_use);
  assert_int_equal(blocks, 16);
  fake.budget = fake.used + bb / 2;
  assert_int_equal(mimo_kv_reserve(b, pool, 17 * MIMO_KV_BLOCK), MIMO_OK);
  mimo_kv_pool_usage(pool, &blocks, &in_use);
  assert_int_equal(blocks, 17);
  assert_int_equal(mimo_kv_pool_bytes(pool), 17 * bb + ring_set); /* b's set alone is left */
  check_views(b);
  fake.budget = (size_t)1 << 30;
  mimo_kv_seq_free(b);
  mimo_kv_pool_release(pool);
  assert_int_equal(fake.used, 0);
}

static void test_bf16_blocks(void **state) {
  (void)state;
  fake = (fake_ctx){.budget = (size_t)1 << 30};
  mimo_kv_pool *f32, *bf;
  assert_int_equal(mimo_kv_pool_new(&f32, &cfg, &fake_be, false), MIMO_OK);
  assert_int_equal(mimo_kv_pool_new(&bf, &cfg, &fake_be, true), MIMO_OK);
  assert_int_equal(mimo_kv_pool_block_bytes(bf) * 2, mimo_kv_pool_block_bytes(f32));
  mimo_kv_seq *a, *b;
  assert_int_equal(mimo_kv_seq_init(&a, &cfg), MIMO_OK);
  assert_int_equal(mimo_kv_seq_init(&b, &cfg), MIMO_OK);
  assert_int_equal(mimo_kv_reserve(a, f32, 300), MIMO_OK);
  assert_int_equal(mimo_kv_reserve(b, bf, 300), MIMO_OK);
  assert_int_equal(mimo_kv_bytes(b) * 2, mimo_kv_bytes(a)); /* rings and blocks alike */
  for (int L = 0; L < b->n_layers; L++)
    assert_int_equal(b->layers[L].bf16, 1);
  mimo_kv_seq_free(a);
  mimo_kv_seq_free(b);
  mimo_kv_pool_release(f32);
  mimo_kv_pool_release(bf);
  assert_int_equal(fake.used, 0);
}

/* Fills a sequence's storage with bytes that say where they are (block i: i + 1, a ring: 0x40 + layer). */
static void fill(mimo_kv_seq *s, size_t bb) {
  for (int i = 0; i < s->n_blocks; i++)
    memset(s->blocks[i], i + 1, bb);
  for (int L = 0; L < s->n_layers; L++)
    if (s->layers[L].ring) {
      memset(s->layers[L].k, 0x40 + L, 4);
      memset(s->layers[L].v, 0x50 + L, 4);
    }
}

/* mimo_kv_fork: the blocks wholly below the length are the source's (one more holder each), the one holding the
 * length is a copy, the rings are copies; a length more than one short of the source's is refused; the shared blocks
 * stay held until the last holder ends, in any order, and then come back for reuse. */
static void test_fork(void **state) {
  (void)state;
  fake = (fake_ctx){.budget = (size_t)1 << 30};
  mimo_kv_pool *pool;
  assert_int_equal(mimo_kv_pool_new(&pool, &cfg, &fake_be, false), MIMO_OK);
  const size_t bb = mimo_kv_pool_block_bytes(pool);
  const int B = MIMO_KV_BLOCK;
  mimo_kv_seq *a, *f[4];
  assert_int_equal(mimo_kv_seq_init(&a, &cfg), MIMO_OK);
  assert_int_equal(mimo_kv_reserve(a, pool, 2 * B + 22), MIMO_OK);
  a->len = 2 * B + 22;
  for (int L = 0; L < a->n_layers; L++)
    a->layers[L].len = a->len;
  fill(a, bb);
  const int lens[4] = {2 * B + 22, 2 * B + 21, 2 * B, 0};
  for (int i = 0; i < 4; i++) {
    assert_int_equal(mimo_kv_seq_init(&f[i], &cfg), MIMO_OK);
    if (i == 2) { /* 22 positions short: the rings no longer hold what a step from there reads */
      assert_int_equal(mimo_kv_fork(f[i], a, lens[i]), MIMO_E_INVALID);
      mimo_kv_seq_free(f[i]);
      assert_int_equal(mimo_kv_seq_init(&f[i], &cfg), MIMO_OK);
      continue;
    }
    assert_int_equal(mimo_kv_fork(f[i], a, lens[i]), MIMO_OK);
    assert_int_equal(f[i]->len, lens[i]);
    if (!lens[i]) {
      assert_null(f[i]->pool);
      continue;
    }
    assert_int_equal(f[i]->n_blocks, 3);
    check_views(f[i]);
    assert_ptr_equal(f[i]->blocks[0], a->blocks[0]);
    assert_ptr_equal(f[i]->blocks[1], a->blocks[1]);
    assert_ptr_not_equal(f[i]->blocks[2], a->blocks[2]);
    assert_memory_equal(f[i]->blocks[2], a->blocks[2], bb);
    for (int L = 0; L < a->n_layers; L++) {
      assert_int_equal(f[i]->layers[L].len, lens[i]);
      if (!a->layers[L].ring)
        continue;
      assert_ptr_not_equal(f[i]->layers[L].k, a->layers[L].k);
      assert_memory_equal(f[i]->layers[L].k, a->layers[L].k, 4);
      assert_memory_equal(f[i]->layers[L].v, a->layers[L].v, 4);
    }
  }
  assert_int_equal(mimo_kv_fork(f[0], a, a->len), MIMO_E_INVALID); /* only into a new sequence */
  long blocks, in_use;
  mimo_kv_pool_usage(pool, &blocks, &in_use);
  assert_int_equal(in_use, 3 + 2); /* a's three, and one copy for each fork */
  /* a fork of a fork, at a block boundary: both blocks shared, nothing copied */
  mimo_kv_seq *g;
  assert_int_equal(mimo_kv_seq_init(&g, &cfg), MIMO_OK);
  f[1]->len = 2 * B + 1; /* as if it had stepped back to one position past the boundary */
  assert_int_equal(mimo_kv_fork(g, f[1], 2 * B), MIMO_OK);
  assert_int_equal(g->n_blocks, 2);
  assert_ptr_equal(g->blocks[1], a->blocks[1]);
  mimo_kv_pool_usage(pool, &blocks, &in_use);
  assert_int_equal(in_use, 5);
  /* the source ends first: the shared blocks stay with the forks, its own last block comes back */
  mimo_kv_seq_free(a);
  mimo_kv_pool_usage(pool, &blocks, &in_use);
  assert_int_equal(in_use, 4);
  assert_memory_equal(f[0]->blocks[0], g->blocks[0], bb);
  mimo_kv_seq_free(f[0]);
  mimo_kv_seq_free(g);
  mimo_kv_pool_usage(pool, &blocks, &in_use);
  assert_int_equal(in_use, 3);
  mimo_kv_seq_free(f[1]);
  mimo_kv_seq_free(f[2]);
  mimo_kv_seq_free(f[3]);
  mimo_kv_pool_usage(pool, &blocks, &in_use);
  assert_int_equal(in_use, 0);
  mimo_kv_pool_release(pool);
  assert_int_equal(fake.used, 0);
}

static int setup(void **state) {
  (void)state;
  snprintf(root, sizeof root, "/tmp/mimo-test-kv-XXXXXX");
  if (!mkdtemp(root))
    return -1;
  char dir[128];
  snprintf(dir, sizeof dir, "%s/tiny", root);
  mimo_synth_opts o = {.out = dir, .preset = "tiny", .quant = "int4", .seed = 5};
  if (mimo_synth(&o) != MIMO_OK || mimo_config_load(dir, &cfg) != MIMO_OK)
    return -1;
  return 0;
}

static int teardown(void **state) {
  (void)state;
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf %s", root);
  return system(cmd) == 0 ? 0 : -1;
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_growth_and_reuse), cmocka_unit_test(test_out_of_memory),
                                     cmocka_unit_test(test_bf16_blocks), cmocka_unit_test(test_fork),
                                     cmocka_unit_test(test_ring_sets)};
  return cmocka_run_group_tests(tests, setup, teardown);
}
