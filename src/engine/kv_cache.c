#include "engine/kv_cache.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

static const size_t CHUNK_MAX_BYTES = (size_t)256 << 20;
enum { FIRST_CHUNK_BLOCKS = 16 };

struct mimo_kv_pool {
  pthread_mutex_t mu;
  int refs;
  mimo_backend *be;
  size_t block_elems, es; /* a block's elements, and their size (4: float32, 2: bf16) */
  bool bf16;
  void **chunks;
  long *chunk_n;  /* blocks in each chunk */
  int **holders;  /* per chunk, per block: holders (sequences, and through them prefix-cache entries) */
  long n_chunks, cap_chunks;
  void **free_blocks; /* a stack: the lowest address on top, so a sequence's blocks tend to follow each other */
  long n_free, cap_free;
  long n_blocks;
  int n_layers;
  int *k_off, *v_off;  /* per full layer, elements into a block */
  int *window;         /* per sliding layer: ring slots (the window and the slack), */
  int slack;           /* ring slots past the window (cfg.kv_ring_slack) */
  size_t *kf, *vf;     /* and elements per slot of keys and of values */
  /* A sequence's rings, all its sliding layers', are one allocation (a ring set) at these byte offsets; a set comes
   * back here when its sequence ends and goes to the next one, so that starting a sequence (or a prefix-cache copy)
   * costs no allocation per layer and ending one no free (a device's free waits for the GPU). Free sets go back to
   * the backend when blocks need the memory. */
  size_t *rk_off, *rv_off, ring_bytes;
  void **free_rings;
  long n_free_rings, cap_free_rings, n_rings;
};

/* The backend's storage, or the host heap by default: bytes, kept when it grows. */
static void *kv_realloc(mimo_backend *be, void *p, size_t old_bytes, size_t new_bytes) {
  const size_t f = sizeof(float);
  if (be && be->kv_realloc)
    return be->kv_realloc(be, p, (old_bytes + f - 1) / f, (new_bytes + f - 1) / f);
  return realloc(p, new_bytes);
}

static void kv_free(mimo_backend *be, void *p) {
  if (be && be->kv_free)
    be->kv_free(be, p);
  else
    free(p);
}

/* A backend's kv_realloc says why it failed (a memory budget, say); the host heap does not. */
static mimo_status alloc_failed(const mimo_backend *be, const char *what, size_t bytes) {
  return be && be->kv_realloc ? mimo_err_prefix(MIMO_E_NOMEM, "KV cache %s of %zu bytes", what, bytes)
                              : mimo_errf(MIMO_E_NOMEM, "KV cache %s of %zu bytes", what, bytes);
}

static void pool_free(mimo_kv_pool *p);

/* Room for `need` pointers in *a (capacity *cap, doubling from `first`); false, untouched, when memory runs out. */
static bool grow_ptrs(void ***a, long *cap, long need, long first) {
  if (need <= *cap)
    return true;
  long c = *cap ? 2 * *cap : first;
  while (c < need)
    c *= 2;
  void **n = realloc(*a, (size_t)c * sizeof *n);
  if (!n)
    return false;
  *a = n;
  *cap = c;
  return true;
}

mimo_status mimo_kv_pool_new(mimo_kv_pool **out, const mimo_config *cfg, mimo_backend *be, bool bf16) {
  mimo_kv_pool *p = calloc(1, sizeof *p);
  if (!p)
    return mimo_errf(MIMO_E_NOMEM, "KV pool");
  p->n_layers = cfg->num_hidden_layers;
  const size_t nl = (size_t)p->n_layers;
  p->k_off = calloc(nl, sizeof *p->k_off);
  p->v_off = calloc(nl, sizeof *p->v_off);
  p->window = calloc(nl, sizeof *p->window);
  p->kf = calloc(nl, sizeof *p->kf);
  p->vf = calloc(nl, sizeof *p->vf);
  p->rk_off = calloc(nl, sizeof *p->rk_off);
  p->rv_off = calloc(nl, sizeof *p->rv_off);
  if (!p->k_off || !p->v_off || !p->window || !p->kf || !p->vf || !p->rk_off || !p->rv_off) {
    pool_free(p);
    return mimo_errf(MIMO_E_NOMEM, "KV pool");
  }
  p->es = bf16 ? 2 : 4;
  p->slack = cfg->kv_ring_slack;
  size_t off = 0, roff = 0;
  for (int L = 0; L < p->n_layers; L++) {
    const mimo_attn_geom *g = mimo_config_geom(cfg, L);
    p->k_off[L] = p->v_off[L] = -1;
    p->window[L] = g->window > 0 ? g->window + cfg->kv_ring_slack : 0;
    p->kf[L] = (size_t)g->n_kv_heads * g->head_dim;
    p->vf[L] = (size_t)g->n_kv_heads * g->v_head_dim;
    if (g->window > 0) { /* each ring 256-byte aligned, as a device allocation of its own would be */
      p->rk_off[L] = roff;
      roff += ((size_t)p->window[L] * p->kf[L] * p->es + 255) & ~(size_t)255;
      p->rv_off[L] = roff;
      roff += ((size_t)p->window[L] * p->vf[L] * p->es + 255) & ~(size_t)255;
      continue;
    }
    p->k_off[L] = (int)off;
    off += MIMO_KV_BLOCK * p->kf[L];
    p->v_off[L] = (int)off;
    off += MIMO_KV_BLOCK * p->vf[L];
    if (off > (size_t)1 << 30) { /* kernels address a block with 32-bit offsets */
      pool_free(p);
      return mimo_errf(MIMO_E_CONFIG, "KV block of %zu elements (layers up to %d): over 2^30", off, L);
    }
  }
  p->block_elems = off;
  p->ring_bytes = roff;
  p->bf16 = bf16;
  p->be = be;
  p->refs = 1;
  pthread_mutex_init(&p->mu, NULL);
  *out = p;
  return MIMO_OK;
}

static void pool_free(mimo_kv_pool *p) {
  for (long i = 0; i < p->n_chunks; i++) {
    kv_free(p->be, p->chunks[i]);
    free(p->holders[i]);
  }
  free(p->chunks);
  free(p->chunk_n);
  free(p->holders);
  for (long i = 0; i < p->n_free_rings; i++)
    kv_free(p->be, p->free_rings[i]);
  free(p->free_rings);
  free(p->rk_off);
  free(p->rv_off);
  free(p->free_blocks);
  free(p->k_off);
  free(p->v_off);
  free(p->window);
  free(p->kf);
  free(p->vf);
  free(p);
}

void mimo_kv_pool_release(mimo_kv_pool *p) {
  if (!p)
    return;
  pthread_mutex_lock(&p->mu);
  const int left = --p->refs;
  pthread_mutex_unlock(&p->mu);
  if (left)
    return;
  pthread_mutex_destroy(&p->mu);
  pool_free(p);
}

size_t mimo_kv_pool_block_bytes(const mimo_kv_pool *p) { return p->block_elems * p->es; }

size_t mimo_kv_pool_bytes(mimo_kv_pool *p) {
  pthread_mutex_lock(&p->mu);
  const size_t b = (size_t)p->n_blocks * p->block_elems * p->es + (size_t)p->n_rings * p->ring_bytes;
  pthread_mutex_unlock(&p->mu);
  return b;
}

void mimo_kv_pool_usage(mimo_kv_pool *p, long *blocks, long *in_use) {
  pthread_mutex_lock(&p->mu);
  *blocks = p->n_blocks;
  *in_use = p->n_blocks - p->n_free;
  pthread_mutex_unlock(&p->mu);
}

/* One more chunk of at least `need` blocks (more when the pool is large: it doubles, up to CHUNK_MAX_BYTES a
 * chunk). Called with the lock held. */
static mimo_status add_chunk(mimo_kv_pool *p, long need) {
  const size_t bb = p->block_elems * p->es;
  long want = p->n_blocks > FIRST_CHUNK_BLOCKS ? p->n_blocks : FIRST_CHUNK_BLOCKS;
  const long most = (long)(CHUNK_MAX_BYTES / bb) > 1 ? (long)(CHUNK_MAX_BYTES / bb) : 1;
  if (want > most)
    want = most;
  if (want < need)
    want = need;
  /* the free stack has room for every block: all may come back */
  long cap_chunks = p->cap_chunks;
  if (!grow_ptrs(&p->chunks, &cap_chunks, p->n_chunks + 1, 8) ||
      !grow_ptrs(&p->free_blocks, &p->cap_free, p->n_blocks + want, 64))
    return mimo_errf(MIMO_E_NOMEM, "KV pool");
  if (cap_chunks != p->cap_chunks) {
    long *n = realloc(p->chunk_n, (size_t)cap_chunks * sizeof *n);
    if (n)
      p->chunk_n = n;
    int **r = n ? realloc(p->holders, (size_t)cap_chunks * sizeof *r) : NULL;
    if (r)
      p->holders = r;
    if (!n || !r)
      return mimo_errf(MIMO_E_NOMEM, "KV pool");
    p->cap_chunks = cap_chunks;
  }
  char *c = kv_realloc(p->be, NULL, 0, (size_t)want * bb);
  if (!c && want > need) { /* near the memory limit: only what this step needs */
    want = need;
    c = kv_realloc(p->be, NULL, 0, (size_t)want * bb);
  }
  if (!c)
    return alloc_failed(p->be, "blocks", (size_t)want * bb);
  int *holders = calloc((size_t)want, sizeof *holders);
  if (!holders) {
    kv_free(p->be, c);
    return mimo_errf(MIMO_E_NOMEM, "KV pool");
  }
  p->chunks[p->n_chunks] = c;
  p->chunk_n[p->n_chunks] = want;
  p->holders[p->n_chunks++] = holders;
  for (long i = want - 1; i >= 0; i--)
    p->free_blocks[p->n_free++] = c + (size_t)i * bb;
  p->n_blocks += want;
  return MIMO_OK;
}

/* A block's count of holders. Chunks are few (each at least as large as all before it), so a scan finds one. Called
 * with the lock held. */
static int *block_refs(mimo_kv_pool *p, const void *b) {
  const size_t bb = p->block_elems * p->es;
  for (long i = 0; i < p->n_chunks; i++) {
    const char *c = (const char *)p->chunks[i];
    if ((const char *)b >= c && (const char *)b < c + (size_t)p->chunk_n[i] * bb)
      return &p->holders[i][((const char *)b - c) / bb];
  }
  return NULL;
}

/* n blocks into out, all or none, each with one holder. */
static mimo_status pool_take(mimo_kv_pool *p, void **out, long n) {
  pthread_mutex_lock(&p->mu);
  mimo_status st = p->n_free >= n ? MIMO_OK : add_chunk(p, n - p->n_free);
  if (st != MIMO_OK && p->n_free_rings) { /* ring sets nobody holds give their memory to the blocks */
    for (; p->n_free_rings; p->n_rings--)
      kv_free(p->be, p->free_rings[--p->n_free_rings]);
    st = add_chunk(p, n - p->n_free);
  }
  if (st == MIMO_OK)
    for (long i = 0; i < n; i++) {
      out[i] = p->free_blocks[--p->n_free];
      *block_refs(p, out[i]) = 1;
    }
  pthread_mutex_unlock(&p->mu);
  return st;
}

/* A ring set: one nobody holds, or a new one. */
static mimo_status ring_take(mimo_kv_pool *p, void **out) {
  pthread_mutex_lock(&p->mu);
  mimo_status st = MIMO_OK;
  if (p->n_free_rings) {
    *out = p->free_rings[--p->n_free_rings];
  } else if (!grow_ptrs(&p->free_rings, &p->cap_free_rings, p->n_rings + 1, 16)) {
    st = mimo_errf(MIMO_E_NOMEM, "KV pool");
  } else if (!(*out = kv_realloc(p->be, NULL, 0, p->ring_bytes))) {
    st = alloc_failed(p->be, "rings", p->ring_bytes);
  } else {
    p->n_rings++; /* the free stack has room for every set: all may come back */
  }
  pthread_mutex_unlock(&p->mu);
  return st;
}

static void ring_give(mimo_kv_pool *p, void *r) {
  pthread_mutex_lock(&p->mu);
  p->free_rings[p->n_free_rings++] = r;
  pthread_mutex_unlock(&p->mu);
}

/* One more holder for each of n blocks (a fork shares them). */
static void pool_ref(mimo_kv_pool *p, void *const *blocks, long n) {
  pthread_mutex_lock(&p->mu);
  for (long i = 0; i < n; i++)
    (*block_refs(p, blocks[i]))++;
  pthread_mutex_unlock(&p->mu);
}

/* One holder fewer; a block nobody holds goes back on the stack, in reverse, so the next taker gets them in the order
 * they were held. */
static void pool_give(mimo_kv_pool *p, void *const *blocks, long n) {
  pthread_mutex_lock(&p->mu);
  for (long i = n - 1; i >= 0; i--)
    if (--*block_refs(p, blocks[i]) == 0)
      p->free_blocks[p->n_free++] = blocks[i]; /* room: every block was on the stack once */
  pthread_mutex_unlock(&p->mu);
}

mimo_status mimo_kv_seq_init(mimo_kv_seq **out, const mimo_config *cfg) {
  mimo_kv_seq *s = calloc(1, sizeof *s);
  if (!s)
    return mimo_errf(MIMO_E_NOMEM, "KV cache");
  s->n_layers = cfg->num_hidden_layers;
  s->layers = calloc((size_t)s->n_layers, sizeof *s->layers);
  if (!s->layers) {
    free(s);
    return mimo_errf(MIMO_E_NOMEM, "KV cache");
  }
  for (int L = 0; L < s->n_layers; L++)
    s->layers[L].ring = mimo_config_geom(cfg, L)->window > 0;
  *out = s;
  return MIMO_OK;
}

/* Blocks up to `need` in the host table and the backend's copy: the first n_shared of them held with `shared` (a
 * fork), the rest new from the pool. */
static mimo_status add_blocks(mimo_kv_seq *s, int need, void *const *shared, int n_shared) {
  mimo_kv_pool *p = s->pool;
  mimo_backend *be = s->be;
  const bool dev = be && be->kv_realloc;
  if (dev && !be->kv_table_write)
    return mimo_errf(MIMO_E_INTERNAL, "backend '%s' keeps KV storage but cannot write block tables", be->name);
  if (!grow_ptrs(&s->blocks, &s->cap_blocks, need, 16))
    return mimo_errf(MIMO_E_NOMEM, "KV block table");
  if (dev && need > s->table_cap) {
    void *t = kv_realloc(be, s->table, (size_t)s->table_cap * sizeof(void *), (size_t)s->cap_blocks * sizeof(void *));
    if (!t)
      return alloc_failed(be, "block table", (size_t)s->cap_blocks * sizeof(void *));
    s->table = t;
    s->table_cap = s->cap_blocks;
  }
  const int n = need - s->n_blocks;
  MIMO_TRY(pool_take(p, s->blocks + s->n_blocks + n_shared, n - n_shared));
  if (n_shared) {
    memcpy(s->blocks + s->n_blocks, shared, (size_t)n_shared * sizeof *shared);
    pool_ref(p, shared, n_shared);
  }
  if (dev)
    be->kv_table_write(be, s->table + s->n_blocks, s->blocks + s->n_blocks, n);
  s->n_blocks = need;
  s->bytes += (size_t)n * p->block_elems * p->es;
  return MIMO_OK;
}

/* s draws its blocks from pool from now on (a reference); a sequence stays with the pool it was first reserved on. */
static mimo_status attach(mimo_kv_seq *s, mimo_kv_pool *pool) {
  if (!s->pool) {
    pthread_mutex_lock(&pool->mu);
    pool->refs++;
    pthread_mutex_unlock(&pool->mu);
    s->pool = pool;
    s->be = pool->be;
  } else if (s->pool != pool) {
    return mimo_errf(MIMO_E_INVALID, "KV cache belongs to another model (backend '%s'), not this one ('%s')",
                     s->be ? s->be->name : "host", pool->be ? pool->be->name : "host");
  }
  if (pool->n_layers != s->n_layers)
    return mimo_errf(MIMO_E_INVALID, "KV cache of %d layers for a model of %d", s->n_layers, pool->n_layers);
  return MIMO_OK;
}

/* Every layer's view of the storage: the rings in the sequence's ring set (taken once), the full layers reading the
 * block table. */
static mimo_status set_views(mimo_kv_seq *s, mimo_status st) {
  mimo_kv_pool *pool = s->pool;
  if (pool->ring_bytes && !s->rings && st == MIMO_OK) {
    st = ring_take(pool, &s->rings);
    if (st == MIMO_OK)
      s->bytes += pool->ring_bytes;
  }
  for (int L = 0; L < s->n_layers; L++) {
    mimo_kv_view *kv = &s->layers[L];
    if (kv->ring && s->rings) {
      kv->k = (char *)s->rings + pool->rk_off[L];
      kv->v = (char *)s->rings + pool->rv_off[L];
      kv->cap = pool->window[L];
    }
    kv->bf16 = pool->bf16;
    if (!kv->ring) {
      kv->blocks = s->table ? s->table : s->blocks;
      kv->k_off = pool->k_off[L];
      kv->v_off = pool->v_off[L];
      kv->cap = s->n_blocks * MIMO_KV_BLOCK;
    }
  }
  return st;
}

mimo_status mimo_kv_reserve(mimo_kv_seq *s, mimo_kv_pool *pool, int new_len) {
  MIMO_TRY(attach(s, pool));
  const int need = (int)(((long)new_len + MIMO_KV_BLOCK - 1) >> MIMO_KV_BLOCK_LOG2);
  /* The views follow the tables even when this fails: a grown table has moved, with the blocks held so far. */
  return set_views(s, pool->block_elems && need > s->n_blocks ? add_blocks(s, need, NULL, 0) : MIMO_OK);
}

static void kv_copy(mimo_backend *be, void *dst, const void *src, size_t bytes) {
  if (be && be->kv_copy)
    be->kv_copy(be, dst, src, bytes);
  else
    memcpy(dst, src, bytes);
}

mimo_status mimo_kv_fork(mimo_kv_seq *dst, const mimo_kv_seq *src, int len) {
  if (dst->pool || dst->len || dst->n_shards)
    return mimo_errf(MIMO_E_INVALID, "KV fork: the new sequence has already run");
  if (dst->n_layers != src->n_layers)
    return mimo_errf(MIMO_E_INVALID, "KV fork: %d layers from %d", dst->n_layers, src->n_layers);
  if (len < 0 || len > src->len || (len < src->len - 1 && len > 0))
    return mimo_errf(MIMO_E_INVALID, "KV fork: %d positions of a sequence at %d", len, src->len);
  if (!len)
    return MIMO_OK;
  if (!src->pool)
    return mimo_errf(MIMO_E_INVALID, "KV fork: the sequence's %d positions are not stored here", src->len);
  mimo_kv_pool *p = src->pool;
  MIMO_TRY(attach(dst, p));
  /* blocks wholly below len are shared; the one holding position len (if any of it is kept) is copied, since dst
   * writes there next */
  const int whole = len >> MIMO_KV_BLOCK_LOG2;
  const int need = (int)(((long)len + MIMO_KV_BLOCK - 1) >> MIMO_KV_BLOCK_LOG2);
  mimo_status st = MIMO_OK;
  if (p->block_elems) {
    if (need > src->n_blocks)
      return mimo_errf(MIMO_E_INTERNAL, "KV fork: %d positions in %d blocks", len, src->n_blocks);
    st = add_blocks(dst, need, src->blocks, whole);
    if (st == MIMO_OK && need > whole) /* positions from len on in the copy are written before they are read */
      kv_copy(dst->be, dst->blocks[whole], src->blocks[whole], p->block_elems * p->es);
  }
  MIMO_TRY(set_views(dst, st));
  /* A ring at src->len holds positions src->len - window .. src->len - 1; the keys a step from len reads are
   * len - window + 1 .. len - 1, all there for len >= src->len - 1 (position src->len - 1 is written again first). */
  for (int L = 0; L < dst->n_layers; L++) {
    mimo_kv_view *kv = &dst->layers[L];
    const mimo_kv_view *from = &src->layers[L];
    if (kv->ring) {
      kv_copy(dst->be, kv->k, from->k, (size_t)kv->cap * p->kf[L] * p->es);
      kv_copy(dst->be, kv->v, from->v, (size_t)kv->cap * p->vf[L] * p->es);
    }
    kv->len = len;
  }
  dst->len = len;
  return MIMO_OK;
}

size_t mimo_kv_bytes(const mimo_kv_seq *s) {
  size_t b = s->bytes;
  for (int i = 0; i < s->n_shards; i++)
    b += s->shards[i] ? mimo_kv_bytes(s->shards[i]) : 0;
  return b;
}

void mimo_kv_seq_free(mimo_kv_seq *s) {
  if (!s)
    return;
  if (s->on_free)
    s->on_free(s->on_free_ctx, s->uid);
  if (s->attach_free)
    s->attach_free(s->attach);
  if (s->pool) {
    /* the next holder of the rings and blocks writes them in stream order after this one's queued reads */
    if (s->rings)
      ring_give(s->pool, s->rings);
    if (s->table)
      kv_free(s->be, s->table); /* waits for queued work on a device backend, before the blocks go back */
    pool_give(s->pool, s->blocks, s->n_blocks);
    mimo_kv_pool_release(s->pool);
  }
  free(s->blocks);
  free(s->layers);
  for (int i = 0; i < s->n_shards; i++)
    mimo_kv_seq_free(s->shards[i]);
  free(s->shards);
  free(s);
}

mimo_status mimo_kv_seq_truncate(mimo_kv_seq *s, int len) {
  if (s->n_shards)
    return mimo_errf(MIMO_E_INVALID, "stepping back a tensor-parallel sequence is not implemented");
  if (len < 0 || len > s->len)
    return mimo_errf(MIMO_E_INVALID, "cannot step a sequence of %d positions back to %d", s->len, len);
  for (int L = 0; L < s->n_layers; L++) {
    mimo_kv_view *v = &s->layers[L];
    /* a ring holds cap positions back from its length; a step needs window - 1 of them before len */
    if (v->ring && s->len - len > (s->pool ? s->pool->slack : 0))
      return mimo_errf(MIMO_E_INVALID, "layer %d: stepping back %d positions needs as many ring slots of slack, the "
                       "pool has %d", L, s->len - len, s->pool ? s->pool->slack : 0);
    v->len = len;
  }
  s->len = len;
  return MIMO_OK;
}

mimo_status mimo_kv_seq_start_at(mimo_kv_seq *s, int pos) {
  if (s->len || !s->pool || s->n_shards)
    return mimo_errf(MIMO_E_INVALID, "a sequence starts at a later position only when new and reserved here");
  if (pos < 0)
    return mimo_errf(MIMO_E_INVALID, "a sequence cannot start at position %d", pos);
  if (s->pool->block_elems && pos > 0)
    return mimo_errf(MIMO_E_INVALID, "full-attention layers read every position: their sequences start at 0");
  mimo_backend *be = s->be;
  if (s->rings && s->pool->ring_bytes) { /* zeros (float32 or bf16) where the skipped positions would be */
    if (be && be->kv_realloc && !be->zero)
      return mimo_errf(MIMO_E_INVALID, "the backend cannot clear its KV storage");
    if (be && be->kv_realloc)
      be->zero(be, (float *)s->rings, (long)(s->pool->ring_bytes / sizeof(float)));
    else
      memset(s->rings, 0, s->pool->ring_bytes);
  }
  for (int L = 0; L < s->n_layers; L++)
    s->layers[L].len = pos;
  s->len = pos;
  return MIMO_OK;
}
