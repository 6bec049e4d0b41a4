/* BPE model: vocabulary, merge ranks keyed by id pairs, and the merge loop (a
 * binary heap ordered by (rank, position), so the lowest-ranked leftmost pair
 * merges first). A per-call cache maps repeated words to their ids. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "text/tok_internal.h"

/* ---- pair map: (left id, right id) -> (rank, merged id) ---- */

static uint32_t pair_slot(const tok_pairmap *p, uint64_t key) {
  uint64_t h = key * 0x9E3779B97F4A7C15ull;
  uint32_t i = (uint32_t)(h >> 32) & p->mask;
  while (p->key[i] && p->key[i] != key)
    i = (i + 1) & p->mask;
  return i;
}

static mimo_status pairs_init(tok_pairmap *p, size_t expect) {
  uint32_t sz = 1024;
  while (sz < expect * 2)
    sz *= 2;
  p->mask = sz - 1;
  p->n = 0;
  p->key = calloc(sz, sizeof *p->key);
  p->rank = malloc(sz * sizeof *p->rank);
  p->merged = malloc(sz * sizeof *p->merged);
  if (!p->key || !p->rank || !p->merged)
    return mimo_errf(MIMO_E_NOMEM, "tokenizer: out of memory");
  return MIMO_OK;
}

static inline uint64_t pair_key(int a, int b) { return (((uint64_t)(uint32_t)a << 32) | (uint32_t)b) + 1; }

static inline int pair_get(const tok_pairmap *p, int a, int b, int *merged) {
  uint64_t key = pair_key(a, b);
  uint32_t i = pair_slot(p, key);
  if (!p->key[i])
    return -1;
  *merged = p->merged[i];
  return p->rank[i];
}

/* ---- loading ---- */

static mimo_status vocab_id(const tok_bpe *m, const char *s, size_t n, int idx, int *out) {
  int id = tok_strmap_get(&m->vocab, s, n);
  if (id < 0)
    return mimo_errf(MIMO_E_FORMAT, "tokenizer.json: merges[%d]: token \"%.*s\" is not in the vocabulary", idx,
                     (int)(n > 64 ? 64 : n), s);
  *out = id;
  return MIMO_OK;
}

static mimo_status add_merge(tok_bpe *m, const char *a, size_t an, const char *b, size_t bn, int rank, char **tmp,
                             size_t *tmpcap) {
  int ia = 0, ib = 0, im = 0;
  MIMO_TRY(vocab_id(m, a, an, rank, &ia));
  MIMO_TRY(vocab_id(m, b, bn, rank, &ib));
  if (an + bn > *tmpcap) {
    char *t = realloc(*tmp, an + bn);
    if (!t)
      return mimo_errf(MIMO_E_NOMEM, "tokenizer: out of memory");
    *tmp = t;
    *tmpcap = an + bn;
  }
  memcpy(*tmp, a, an);
  memcpy(*tmp + an, b, bn);
  MIMO_TRY(vocab_id(m, *tmp, an + bn, rank, &im));
  uint64_t key = pair_key(ia, ib);
  uint32_t i = pair_slot(&m->pairs, key);
  if (!m->pairs.key[i])
    m->pairs.n++;
  m->pairs.key[i] = key; /* a repeated pair keeps its last rank */
  m->pairs.rank[i] = rank;
  m->pairs.merged[i] = im;
  return MIMO_OK;
}

static int is_empty_str(json_t *v) { return !v || json_is_null(v) || (json_is_string(v) && !json_string_length(v)); }

mimo_status tok_bpe_parse(tok_bpe *m, const void *node, int byte_level) {
  json_t *n = (json_t *)node;
  memset(m, 0, sizeof *m);
  m->unk_id = -1;
  const char *type = json_string_value(json_object_get(n, "type"));
  if (type && strcmp(type, "BPE") != 0)
    return mimo_errf(MIMO_E_CONFIG, "tokenizer.json: unsupported model type \"%s\" (only BPE)", type);
  if (json_is_true(json_object_get(n, "byte_fallback")))
    return mimo_errf(MIMO_E_CONFIG, "tokenizer.json: model.byte_fallback=true is not supported");
  if (!is_empty_str(json_object_get(n, "continuing_subword_prefix")) ||
      !is_empty_str(json_object_get(n, "end_of_word_suffix")))
    return mimo_errf(MIMO_E_CONFIG,
                     "tokenizer.json: model.continuing_subword_prefix/end_of_word_suffix are not supported");
  json_t *dropout = json_object_get(n, "dropout");
  if (dropout && !json_is_null(dropout) && json_number_value(dropout) != 0.0)
    return mimo_errf(MIMO_E_CONFIG, "tokenizer.json: model.dropout is not supported");
  m->ignore_merges = json_is_true(json_object_get(n, "ignore_merges"));
  m->fuse_unk = json_is_true(json_object_get(n, "fuse_unk"));
  json_t *vocab = json_object_get(n, "vocab"), *merges = json_object_get(n, "merges");
  if (!json_is_object(vocab))
    return mimo_errf(MIMO_E_FORMAT, "tokenizer.json: model.vocab is missing or not an object");
  if (merges && !json_is_array(merges))
    return mimo_errf(MIMO_E_FORMAT, "tokenizer.json: model.merges is not an array");
  MIMO_TRY(tok_strmap_init(&m->vocab, (uint32_t)json_object_size(vocab)));
  const char *key;
  size_t klen;
  json_t *v;
  json_object_keylen_foreach(vocab, key, klen, v) {
    if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > 0x7FFFFFFF)
      return mimo_errf(MIMO_E_FORMAT, "tokenizer.json: model.vocab[\"%.*s\"] is not a valid id",
                       (int)(klen > 64 ? 64 : klen), key);
    MIMO_TRY(tok_strmap_put(&m->vocab, key, klen, (int)json_integer_value(v)));
  }
  json_t *unk = json_object_get(n, "unk_token");
  if (json_is_string(unk)) {
    m->unk_id = tok_strmap_get(&m->vocab, json_string_value(unk), json_string_length(unk));
    if (m->unk_id < 0)
      return mimo_errf(MIMO_E_FORMAT, "tokenizer.json: model.unk_token \"%s\" is not in the vocabulary",
                       json_string_value(unk));
  }
  size_t nmerges = merges ? json_array_size(merges) : 0;
  MIMO_TRY(pairs_init(&m->pairs, nmerges));
  char *tmp = NULL;
  size_t tmpcap = 0;
  mimo_status st = MIMO_OK;
  for (size_t i = 0; i < nmerges && st == MIMO_OK; i++) {
    json_t *e = json_array_get(merges, i);
    if (json_is_string(e)) {
      /* legacy "a b": split at the first space (byte-level tokens contain none) */
      const char *s = json_string_value(e);
      size_t len = json_string_length(e);
      const char *sp = memchr(s, ' ', len);
      if (!sp)
        st = mimo_errf(MIMO_E_FORMAT, "tokenizer.json: merges[%zu] \"%.*s\" has no space", i,
                       (int)(len > 64 ? 64 : len), s);
      else
        st = add_merge(m, s, (size_t)(sp - s), sp + 1, len - (size_t)(sp - s) - 1, (int)i, &tmp, &tmpcap);
    } else if (json_is_array(e) && json_array_size(e) == 2 && json_is_string(json_array_get(e, 0)) &&
               json_is_string(json_array_get(e, 1))) {
      json_t *a = json_array_get(e, 0), *b = json_array_get(e, 1);
      st = add_merge(m, json_string_value(a), json_string_length(a), json_string_value(b), json_string_length(b),
                     (int)i, &tmp, &tmpcap);
    } else {
      st = mimo_errf(MIMO_E_FORMAT, "tokenizer.json: merges[%zu] is neither \"a b\" nor [\"a\", \"b\"]", i);
    }
  }
  free(tmp);
  MIMO_TRY(st);
  for (int b = 0; b < 256; b++) {
    char u[4];
    int l = byte_level ? tok_utf8_encode(tok_byte_to_cp((unsigned char)b), u) : 0;
    m->byte_id[b] = byte_level ? tok_strmap_get(&m->vocab, u, (size_t)l) : -1;
  }
  return MIMO_OK;
}

void tok_bpe_free(tok_bpe *m) {
  tok_strmap_free(&m->vocab);
  free(m->pairs.key);
  free(m->pairs.rank);
  free(m->pairs.merged);
  memset(m, 0, sizeof *m);
}

/* ---- word cache ---- */

struct tok_cache {
  tok_strmap map; /* word -> offset in ids */
  tok_ids ids;    /* [count, id...] records */
};

tok_cache *tok_cache_new(void) {
  tok_cache *c = calloc(1, sizeof *c);
  if (c && tok_strmap_init(&c->map, 4096) != MIMO_OK) {
    tok_strmap_free(&c->map);
    free(c);
    return NULL;
  }
  return c;
}

void tok_cache_free(tok_cache *c) {
  if (!c)
    return;
  tok_strmap_free(&c->map);
  free(c->ids.p);
  free(c);
}

/* ---- merge loop ---- */

typedef struct {
  int id, prev, next;
} sym;
typedef struct {
  int rank, pos;
} cand;

static inline int cand_less(cand a, cand b) { return a.rank < b.rank || (a.rank == b.rank && a.pos < b.pos); }

static void heap_push(cand *h, size_t *n, cand c) {
  size_t i = (*n)++;
  while (i > 0) {
    size_t p = (i - 1) / 2;
    if (!cand_less(c, h[p]))
      break;
    h[i] = h[p];
    i = p;
  }
  h[i] = c;
}

static cand heap_pop(cand *h, size_t *n) {
  cand top = h[0], last = h[--(*n)];
  size_t i = 0;
  for (;;) {
    size_t l = 2 * i + 1, r = l + 1, m = i;
    cand best = last;
    if (l < *n && cand_less(h[l], best)) {
      m = l;
      best = h[l];
    }
    if (r < *n && cand_less(h[r], best))
      m = r;
    if (m == i)
      break;
    h[i] = h[m];
    i = m;
  }
  if (*n)
    h[i] = last;
  return top;
}

static mimo_status initial_symbols(const tok_bpe *m, int byte_level, const char *w, size_t n, tok_ids *syms) {
  const unsigned char *u = (const unsigned char *)w;
  int prev_unk = 0;
  for (size_t i = 0; i < n;) {
    int id;
    size_t l = 1;
    if (byte_level) {
      id = m->byte_id[u[i]];
    } else {
      uint32_t cp;
      int k = tok_utf8_next(u + i, n - i, &cp);
      l = k ? (size_t)k : 1;
      id = tok_strmap_get(&m->vocab, w + i, l);
    }
    i += l;
    if (id < 0) {
      /* an unknown symbol becomes unk (fused with a previous unk), or vanishes */
      if (m->unk_id >= 0 && !(m->fuse_unk && prev_unk))
        MIMO_TRY(tok_ids_push(syms, m->unk_id));
      prev_unk = m->unk_id >= 0;
      continue;
    }
    prev_unk = 0;
    MIMO_TRY(tok_ids_push(syms, id));
  }
  return MIMO_OK;
}

static mimo_status merge_word(const tok_bpe *m, const int *ids, size_t n, tok_ids *out) {
  if (n <= 1) {
    for (size_t i = 0; i < n; i++)
      MIMO_TRY(tok_ids_push(out, ids[i]));
    return MIMO_OK;
  }
  sym sbuf[64];
  cand hbuf[128];
  sym *s = n <= 64 ? sbuf : malloc(n * sizeof *s);
  cand *h = n <= 64 ? hbuf : malloc(2 * n * sizeof *h);
  if (!s || !h) {
    if (s != sbuf)
      free(s);
    if (h != hbuf)
      free(h);
    return mimo_errf(MIMO_E_NOMEM, "tokenizer: out of memory");
  }
  size_t hn = 0;
  for (size_t i = 0; i < n; i++)
    s[i] = (sym){ids[i], (int)i - 1, i + 1 < n ? (int)i + 1 : -1};
  for (size_t i = 0; i + 1 < n; i++) {
    int merged, r = pair_get(&m->pairs, s[i].id, s[i + 1].id, &merged);
    if (r >= 0)
      heap_push(h, &hn, (cand){r, (int)i});
  }
  /* heap bound: n-1 initial candidates, then each of < n merges pops one and
   * pushes at most two, so 2n entries suffice. */
  while (hn) {
    cand c = heap_pop(h, &hn);
    sym *a = &s[c.pos];
    if (a->id < 0 || a->next < 0)
      continue;
    sym *b = &s[a->next];
    int merged = 0, r = pair_get(&m->pairs, a->id, b->id, &merged);
    if (r != c.rank)
      continue;
    a->id = merged;
    b->id = -1;
    a->next = b->next;
    if (a->next >= 0)
      s[a->next].prev = c.pos;
    if (a->prev >= 0) {
      int mm, rr = pair_get(&m->pairs, s[a->prev].id, a->id, &mm);
      if (rr >= 0)
        heap_push(h, &hn, (cand){rr, a->prev});
    }
    if (a->next >= 0) {
      int mm, rr = pair_get(&m->pairs, a->id, s[a->next].id, &mm);
      if (rr >= 0)
        heap_push(h, &hn, (cand){rr, c.pos});
    }
  }
  mimo_status st = MIMO_OK;
  for (int i = 0; i >= 0 && st == MIMO_OK; i = s[i].next)
    st = tok_ids_push(out, s[i].id);
  if (s != sbuf)
    free(s);
  if (h != hbuf)
    free(h);
  return st;
}

mimo_status tok_bpe_word(const tok_bpe *m, int byte_level, const char *w, size_t n, tok_cache *cache, tok_ids *out) {
  if (n == 0)
    return MIMO_OK;
  if (cache) {
    int off = tok_strmap_get(&cache->map, w, n);
    if (off >= 0) {
      int cnt = cache->ids.p[off];
      for (int i = 0; i < cnt; i++)
        MIMO_TRY(tok_ids_push(out, cache->ids.p[off + 1 + i]));
      return MIMO_OK;
    }
  }
  size_t start = out->n;
  int whole = -1;
  if (m->ignore_merges) {
    if (byte_level) {
      char sb[512];
      char *mb = n * 2 <= sizeof sb ? sb : malloc(n * 2);
      if (!mb)
        return mimo_errf(MIMO_E_NOMEM, "tokenizer: out of memory");
      size_t k = 0;
      for (size_t i = 0; i < n; i++)
        k += (size_t)tok_utf8_encode(tok_byte_to_cp((unsigned char)w[i]), mb + k);
      whole = tok_strmap_get(&m->vocab, mb, k);
      if (mb != sb)
        free(mb);
    } else {
      whole = tok_strmap_get(&m->vocab, w, n);
    }
  }
  if (whole >= 0) {
    MIMO_TRY(tok_ids_push(out, whole));
  } else {
    tok_ids syms = {0};
    int sbuf[64];
    mimo_status st;
    if (n <= 64) {
      syms.p = sbuf;
      syms.cap = 64; /* n bytes never give more than n symbols */
    }
    st = initial_symbols(m, byte_level, w, n, &syms);
    if (st == MIMO_OK)
      st = merge_word(m, syms.p, syms.n, out);
    if (syms.p != sbuf)
      free(syms.p);
    MIMO_TRY(st);
  }
  if (cache && n <= 256) {
    if (cache->map.n > (1u << 20)) { /* bound the memory of a huge input */
      tok_strmap_free(&cache->map);
      MIMO_TRY(tok_strmap_init(&cache->map, 4096));
      cache->ids.n = 0;
    }
    size_t cnt = out->n - start;
    int off = (int)cache->ids.n;
    MIMO_TRY(tok_ids_push(&cache->ids, (int)cnt));
    for (size_t i = 0; i < cnt; i++)
      MIMO_TRY(tok_ids_push(&cache->ids, out->p[start + i]));
    MIMO_TRY(tok_strmap_put(&cache->map, w, n, off));
  }
  return MIMO_OK;
}
