#include "engine/prefix_cache.h"

#include <stdlib.h>
#include <string.h>

typedef struct {
  int *tokens; /* owned, kv->len of them */
  uint64_t salt;
  mimo_kv_seq *kv;
  long used;   /* the cache's clock when last found or put */
} entry;

struct mimo_prefix_cache {
  entry *e;
  int n, max;
  long clock;
};

mimo_status mimo_prefix_cache_new(mimo_prefix_cache **out, int max_entries) {
  if (max_entries < 1)
    return mimo_errf(MIMO_E_INVALID, "prefix cache of %d entries", max_entries);
  mimo_prefix_cache *c = calloc(1, sizeof *c);
  if (c)
    c->e = calloc((size_t)max_entries, sizeof *c->e);
  if (!c || !c->e) {
    free(c);
    return mimo_errf(MIMO_E_NOMEM, "prefix cache of %d entries", max_entries);
  }
  c->max = max_entries;
  *out = c;
  return MIMO_OK;
}

static void drop(mimo_prefix_cache *c, int i) {
  mimo_kv_seq_free(c->e[i].kv);
  free(c->e[i].tokens);
  c->e[i] = c->e[--c->n];
}

void mimo_prefix_cache_free(mimo_prefix_cache *c) {
  if (!c)
    return;
  while (c->n)
    drop(c, c->n - 1);
  free(c->e);
  free(c);
}

/* Entries are few (tens to hundreds) and a comparison stops at the first token that differs, so a scan is cheap next
 * to the forward pass it saves; entries that share a long prefix with the prompt cost a full compare each. */
mimo_kv_seq *mimo_prefix_cache_find(mimo_prefix_cache *c, uint64_t salt, const int *tokens, int n, int max_len,
                                    int *len) {
  int best = -1, best_len = 0;
  if (max_len > n)
    max_len = n;
  for (int i = 0; i < c->n; i++) {
    const int m = c->e[i].kv->len; /* usable as m, or as m - 1 (mimo_kv_fork) */
    if (c->e[i].salt != salt || m - 1 > max_len || m - 1 <= best_len ||
        memcmp(c->e[i].tokens, tokens, (size_t)(m - 1) * sizeof *tokens))
      continue;
    best = i;
    best_len = m <= max_len && c->e[i].tokens[m - 1] == tokens[m - 1] ? m : m - 1;
  }
  *len = best_len;
  if (best < 0)
    return NULL;
  c->e[best].used = ++c->clock;
  return c->e[best].kv;
}

mimo_status mimo_prefix_cache_put(mimo_prefix_cache *c, uint64_t salt, const int *tokens, mimo_kv_seq *kv) {
  const int m = kv->len;
  for (int i = 0; i < c->n; i++)
    if (c->e[i].salt == salt && c->e[i].kv->len == m && memcmp(c->e[i].tokens, tokens, (size_t)m * sizeof *tokens) == 0) {
      c->e[i].used = ++c->clock;
      mimo_kv_seq_free(kv);
      return MIMO_OK;
    }
  int *t = malloc((size_t)(m > 0 ? m : 1) * sizeof *t);
  if (!t) {
    mimo_kv_seq_free(kv);
    return mimo_errf(MIMO_E_NOMEM, "prefix cache entry of %d tokens", m);
  }
  memcpy(t, tokens, (size_t)m * sizeof *t);
  if (c->n == c->max)
    mimo_prefix_cache_evict(c);
  c->e[c->n++] = (entry){.tokens = t, .salt = salt, .kv = kv, .used = ++c->clock};
  return MIMO_OK;
}

bool mimo_prefix_cache_evict(mimo_prefix_cache *c) {
  if (!c->n)
    return false;
  int lru = 0;
  for (int i = 1; i < c->n; i++)
    if (c->e[i].used < c->e[lru].used)
      lru = i;
  drop(c, lru);
  return true;
}

int mimo_prefix_cache_entries(const mimo_prefix_cache *c) { return c->n; }

size_t mimo_prefix_cache_bytes(const mimo_prefix_cache *c) {
  size_t b = 0;
  for (int i = 0; i < c->n; i++)
    b += mimo_kv_bytes(c->e[i].kv);
  return b;
}
