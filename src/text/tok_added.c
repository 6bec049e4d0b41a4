/* Added tokens: a byte trie over their contents, searched leftmost-longest, then
 * the lstrip / rstrip / single_word flags applied to each match. */
#include <stdlib.h>
#include <string.h>

#include "text/tok_internal.h"

typedef struct {
  int child, sibling; /* node indices, -1 = none */
  int term;           /* index into the added-token array, -1 = none */
  unsigned char byte;
} node;

struct tok_trie {
  node *nodes;
  size_t n, cap;
  int root[256]; /* first-level nodes by byte */
};

static int new_node(tok_trie *t, unsigned char b) {
  if (t->n == t->cap) {
    size_t cap = t->cap ? t->cap * 2 : 256;
    node *p = realloc(t->nodes, cap * sizeof *p);
    if (!p)
      return -1;
    t->nodes = p;
    t->cap = cap;
  }
  t->nodes[t->n] = (node){-1, -1, -1, b};
  return (int)t->n++;
}

tok_trie *tok_trie_build(const tok_added *toks, const int *which, size_t n) {
  tok_trie *t = calloc(1, sizeof *t);
  if (!t)
    return NULL;
  for (int i = 0; i < 256; i++)
    t->root[i] = -1;
  for (size_t k = 0; k < n; k++) {
    const tok_added *a = &toks[which[k]];
    if (a->len == 0)
      continue;
    const unsigned char *s = (const unsigned char *)a->content;
    int cur = t->root[s[0]];
    if (cur < 0 && (cur = t->root[s[0]] = new_node(t, s[0])) < 0)
      goto oom;
    for (size_t i = 1; i < a->len; i++) {
      int c = t->nodes[cur].child;
      while (c >= 0 && t->nodes[c].byte != s[i])
        c = t->nodes[c].sibling;
      if (c < 0) {
        if ((c = new_node(t, s[i])) < 0)
          goto oom;
        t->nodes[c].sibling = t->nodes[cur].child;
        t->nodes[cur].child = c;
      }
      cur = c;
    }
    if (t->nodes[cur].term < 0) /* the first token with a given content wins */
      t->nodes[cur].term = which[k];
  }
  return t;
oom:
  tok_trie_free(t);
  return NULL;
}

void tok_trie_free(tok_trie *t) {
  if (!t)
    return;
  free(t->nodes);
  free(t);
}

/* Code point ending just before s+i (i > 0). */
static uint32_t cp_before(const unsigned char *s, size_t i, size_t *start) {
  size_t j = i - 1;
  while (j > 0 && i - j < 4 && (s[j] & 0xC0) == 0x80)
    j--;
  uint32_t cp;
  if (tok_utf8_next(s + j, i - j, &cp) != (int)(i - j)) {
    *start = i - 1;
    return s[i - 1];
  }
  *start = j;
  return cp;
}

static uint32_t cp_at(const unsigned char *s, size_t n, size_t i, size_t *len) {
  uint32_t cp;
  int l = tok_utf8_next(s + i, n - i, &cp);
  *len = l ? (size_t)l : 1;
  return l ? cp : s[i];
}

mimo_status tok_trie_find(const tok_trie *t, const tok_added *toks, const char *str, size_t n, tok_match **out,
                          size_t *nout) {
  const unsigned char *s = (const unsigned char *)str;
  tok_match *m = NULL;
  size_t nm = 0, cap = 0, start_off = 0, i = 0;
  *out = NULL;
  *nout = 0;
  if (!t)
    return MIMO_OK;
  while (i < n) {
    int cur = t->root[s[i]];
    if (cur < 0) {
      i++;
      continue;
    }
    int best = -1;
    size_t best_end = 0, j = i + 1;
    for (;;) {
      if (t->nodes[cur].term >= 0) {
        best = t->nodes[cur].term;
        best_end = j;
      }
      if (j >= n)
        break;
      int c = t->nodes[cur].child;
      while (c >= 0 && t->nodes[c].byte != s[j])
        c = t->nodes[c].sibling;
      if (c < 0)
        break;
      cur = c;
      j++;
    }
    if (best < 0) {
      i++;
      continue;
    }
    const tok_added *a = &toks[best];
    size_t ms = i, me = best_end, l;
    i = best_end; /* matches never overlap, even a rejected one */
    if (a->single_word) {
      size_t dummy;
      int word_before = ms > 0 && tok_is_alnum(cp_before(s, ms, &dummy));
      int word_after = me < n && tok_is_alnum(cp_at(s, n, me, &l));
      if (word_before || word_after)
        continue;
    }
    if (a->lstrip) {
      while (ms > start_off) {
        size_t p;
        if (!tok_is_whitespace(cp_before(s, ms, &p)) || p < start_off)
          break;
        ms = p;
      }
    }
    if (a->rstrip) {
      while (me < n && tok_is_whitespace(cp_at(s, n, me, &l)))
        me += l;
      i = me;
    }
    if (nm == cap) {
      cap = cap ? cap * 2 : 16;
      tok_match *p = realloc(m, cap * sizeof *p);
      if (!p) {
        free(m);
        return mimo_errf(MIMO_E_NOMEM, "tokenizer: out of memory");
      }
      m = p;
    }
    m[nm++] = (tok_match){ms, me, a->id};
    start_off = me;
  }
  *out = m;
  *nout = nm;
  return MIMO_OK;
}
