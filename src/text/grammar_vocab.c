/* Token masks for structured outputs (grammar_vocab.h). Tries of token bytes: every ordinary token; those that are
 * not plain text of both kinds, JSON string text (no '"', '\\' or control byte) and raw text (no '<' or control byte
 * but tab and line ends), whole UTF-8 for both; and the added tokens that are not special (<tool_call>, ...). Inside
 * a free string every plain token of its kind is allowed at once (a precomputed bit set) and only the second trie
 * is walked; other states walk every ordinary token's trie, whose branches die at their first refused byte, and
 * between tool calls also the added tokens'. */
#include "text/grammar_vocab.h"

#include <stdlib.h>
#include <string.h>

typedef struct {
  int *first, *next, *tok; /* per node: first child, next sibling, first token ending here (-1: none) */
  uint8_t *byte;
  int n, cap;
} trie;

struct mimo_gvocab {
  int n_ids;        /* ids covered: the tokenizer's */
  /* special: the tokens that are not plain text of both kinds (JSON and raw): a free string of either kind, or a JSON
   * string inside a tool call, allows its kind's plain tokens at once and walks these (some of them plain for it
   * too: walked, and allowed again, rather than a trie per kind built at start-up) */
  trie all, special, added;
  int *tok_next;    /* tokens with the same bytes, chained */
  uint32_t *plain, *plain_raw, *is_added; /* a bit per token */
  const char **bytes;
  size_t *len;
  int depth;        /* the tries' depth: the longest token's bytes, at most MAX_WALK */
};

enum { MAX_WALK = 512 };

static int trie_node(trie *t, int byte) {
  if (t->n == t->cap) {
    const int cap = t->cap ? 2 * t->cap : 4096;
    int *f = realloc(t->first, (size_t)cap * sizeof *f);
    if (f)
      t->first = f;
    int *x = realloc(t->next, (size_t)cap * sizeof *x);
    if (x)
      t->next = x;
    int *k = realloc(t->tok, (size_t)cap * sizeof *k);
    if (k)
      t->tok = k;
    uint8_t *b = realloc(t->byte, (size_t)cap);
    if (b)
      t->byte = b;
    if (!f || !x || !k || !b)
      return -1;
    t->cap = cap;
  }
  t->first[t->n] = t->next[t->n] = t->tok[t->n] = -1;
  t->byte[t->n] = (uint8_t)byte;
  return t->n++;
}

static bool trie_add(trie *t, const char *s, size_t n, int id, int *tok_next) {
  int at = 0;
  for (size_t i = 0; i < n; i++) {
    const uint8_t c = (uint8_t)s[i];
    int ch = t->first[at];
    while (ch >= 0 && t->byte[ch] != c)
      ch = t->next[ch];
    if (ch < 0) {
      if ((ch = trie_node(t, c)) < 0)
        return false;
      t->next[ch] = t->first[at];
      t->first[at] = ch;
    }
    at = ch;
  }
  tok_next[id] = t->tok[at];
  t->tok[at] = id;
  return true;
}

static void trie_free(trie *t) {
  free(t->first);
  free(t->next);
  free(t->tok);
  free(t->byte);
}

/* Well-formed UTF-8 (whole sequences) of bytes >= 0x20 without '"' or '\\': text a JSON string takes as it is.
 * raw: of bytes >= 0x20, tabs and line ends, without '<': text a tool call's text value takes as it is. */
static bool plain_text(const char *s, size_t n, bool raw) {
  for (size_t i = 0; i < n;) {
    const uint8_t c = (uint8_t)s[i];
    if (raw ? (c < 0x20 && c != '\n' && c != '\t' && c != '\r') || c == '<' : c < 0x20 || c == '"' || c == '\\')
      return false;
    size_t bad = 0;
    const size_t k = mimo_utf8_next(s + i, n - i, &bad);
    if (!k)
      return false;
    i += k;
  }
  return n > 0;
}

void mimo_gvocab_free(mimo_gvocab *v) {
  if (!v)
    return;
  trie_free(&v->all);
  trie_free(&v->special);
  trie_free(&v->added);
  free(v->tok_next);
  free(v->plain);
  free(v->plain_raw);
  free(v->is_added);
  free((void *)v->bytes);
  free(v->len);
  free(v);
}

mimo_status mimo_gvocab_new(const mimo_tok *t, mimo_gvocab **out) {
  *out = NULL;
  mimo_gvocab *v = calloc(1, sizeof *v);
  if (!v)
    return mimo_errf(MIMO_E_NOMEM, "structured output vocabulary");
  v->n_ids = mimo_tok_vocab_size(t);
  const size_t words = ((size_t)v->n_ids + 31) / 32;
  v->tok_next = malloc((size_t)v->n_ids * sizeof *v->tok_next);
  v->plain = calloc(words, sizeof *v->plain);
  v->plain_raw = calloc(words, sizeof *v->plain_raw);
  v->is_added = calloc(words, sizeof *v->is_added);
  v->bytes = calloc((size_t)v->n_ids, sizeof *v->bytes);
  v->len = calloc((size_t)v->n_ids, sizeof *v->len);
  bool ok = v->tok_next && v->plain && v->plain_raw && v->is_added && v->bytes && v->len &&
            trie_node(&v->all, 0) == 0 && trie_node(&v->special, 0) == 0 &&
            trie_node(&v->added, 0) == 0;
  for (int id = 0; ok && id < v->n_ids; id++) {
    size_t n = 0;
    const char *b = mimo_tok_token_bytes(t, id, &n);
    /* special tokens never stand for grammar text; other added ones only between tool calls */
    if (!b || !n || mimo_tok_is_special(t, id))
      continue;
    v->bytes[id] = b;
    v->len[id] = n;
    if ((size_t)v->depth < n)
      v->depth = n < MAX_WALK ? (int)n : MAX_WALK;
    if (mimo_tok_is_added(t, id)) {
      v->is_added[id / 32] |= 1u << (id % 32);
      ok = trie_add(&v->added, b, n, id, v->tok_next);
      continue;
    }
    ok = trie_add(&v->all, b, n, id, v->tok_next);
    if (plain_text(b, n, false))
      v->plain[id / 32] |= 1u << (id % 32);
    if (plain_text(b, n, true))
      v->plain_raw[id / 32] |= 1u << (id % 32);
  }
  /* Tokens with the same bytes are all plain or all not, and go in in the same (id) order: the other tries' chains
   * are the first one's, so all share tok_next. */
  for (int id = 0; ok && id < v->n_ids; id++) {
    if (!v->bytes[id] || v->is_added[id / 32] >> (id % 32) & 1)
      continue;
    if (!((v->plain[id / 32] & v->plain_raw[id / 32]) >> (id % 32) & 1))
      ok = trie_add(&v->special, v->bytes[id], v->len[id], id, v->tok_next);
  }
  if (!ok) {
    mimo_gvocab_free(v);
    return mimo_errf(MIMO_E_NOMEM, "structured output vocabulary");
  }
  *out = v;
  return MIMO_OK;
}

static void set_tokens(const mimo_gvocab *v, const trie *t, int node, uint32_t *allow) {
  for (int id = t->tok[node]; id >= 0; id = v->tok_next[id])
    allow[id / 32] |= 1u << (id % 32);
}

int mimo_gvocab_scratch_states(const mimo_gvocab *v) { return v->depth + 1; }

/* Depth-first over t's children of node from state s (each child tries its byte on scratch[depth], a copy). */
static void walk(const mimo_gvocab *v, const trie *t, int node, const mimo_jg *g, const mimo_jg_state *s,
                 uint32_t *allow, mimo_jg_state *scratch, int depth) {
  if (depth >= v->depth)
    return;
  mimo_jg_state *c = &scratch[depth];
  for (int ch = t->first[node]; ch >= 0; ch = t->next[ch]) {
    mimo_jg_copy(c, s);
    if (!mimo_jg_step_inplace(g, c, t->byte[ch]))
      continue;
    set_tokens(v, t, ch, allow);
    if (t->first[ch] >= 0)
      walk(v, t, ch, g, c, allow, scratch, depth + 1);
  }
}

void mimo_gvocab_mask(const mimo_gvocab *v, const mimo_jg *g, const mimo_jg_state *s, uint32_t *allow,
                      mimo_jg_state *scratch) {
  const int free_text = mimo_jg_free_text(g, s);
  if (free_text) {
    const bool json = free_text != MIMO_JG_FREE_RAW, raw = free_text != MIMO_JG_FREE_JSON;
    for (int w = 0; w < (v->n_ids + 31) / 32; w++)
      allow[w] |= (json ? v->plain[w] : ~0u) & (raw ? v->plain_raw[w] : ~0u);
    walk(v, &v->special, 0, g, s, allow, scratch, 0);
    return;
  }
  walk(v, &v->all, 0, g, s, allow, scratch, 0);
  if (mimo_jg_between_calls(g, s))
    walk(v, &v->added, 0, g, s, allow, scratch, 0);
}

bool mimo_gvocab_feed(const mimo_gvocab *v, const mimo_jg *g, mimo_jg_state *s, int id) {
  if (id < 0 || id >= v->n_ids || !v->bytes[id])
    return false;
  if (v->is_added[id / 32] >> (id % 32) & 1 && !mimo_jg_between_calls(g, s)) /* <tool_call>: between calls only */
    return false;
  mimo_jg_state c;
  mimo_jg_copy(&c, s);
  for (size_t i = 0; i < v->len[id]; i++)
    if (!mimo_jg_step_inplace(g, &c, (unsigned char)v->bytes[id][i]))
      return false;
  mimo_jg_copy(s, &c);
  return true;
}

/* ---- the engine's constraint ---- */

typedef struct {
  mimo_constraint base;
  const mimo_gvocab *v;
  const mimo_jg *g;
  mimo_jg_state s;
  mimo_jg_state *scratch; /* the mask's (mimo_gvocab_scratch_states) */
} grammar_constraint;

static void gc_mask(mimo_constraint *c, uint32_t *allow, int V, const int *stops, int n_stops) {
  grammar_constraint *x = (grammar_constraint *)c;
  (void)V;
  mimo_gvocab_mask(x->v, x->g, &x->s, allow, x->scratch);
  if (mimo_jg_done(x->g, &x->s))
    for (int i = 0; i < n_stops; i++)
      if (stops[i] >= 0 && stops[i] < V)
        allow[stops[i] / 32] |= 1u << (stops[i] % 32);
}

static bool gc_accept(mimo_constraint *c, int token) {
  grammar_constraint *x = (grammar_constraint *)c;
  return mimo_gvocab_feed(x->v, x->g, &x->s, token);
}

static bool gc_done(mimo_constraint *c) {
  grammar_constraint *x = (grammar_constraint *)c;
  /* complete, and no byte could extend it (a number, literal or regex match that could go on is not done yet) */
  if (!mimo_jg_done(x->g, &x->s))
    return false;
  for (int b = 0; b < 256; b++) {
    mimo_jg_copy(x->scratch, &x->s);
    if (mimo_jg_step_inplace(x->g, x->scratch, (unsigned char)b))
      return false;
  }
  return true;
}

static void gc_free(mimo_constraint *c) {
  grammar_constraint *x = (grammar_constraint *)c;
  if (x) {
    free(x->scratch);
    mimo_jg_free((mimo_jg *)x->g);
  }
  free(x);
}

static grammar_constraint *gc_alloc(const mimo_gvocab *v) {
  grammar_constraint *x = calloc(1, sizeof *x);
  if (x && !(x->scratch = malloc((size_t)mimo_gvocab_scratch_states(v) * sizeof *x->scratch))) {
    free(x);
    x = NULL;
  }
  return x;
}

static mimo_constraint *gc_clone(const mimo_constraint *c) {
  const grammar_constraint *from = (const grammar_constraint *)c;
  grammar_constraint *x = gc_alloc(from->v);
  if (!x)
    return NULL;
  mimo_jg_state *scratch = x->scratch;
  *x = *from;
  x->scratch = scratch;
  mimo_jg_ref(x->g);
  return &x->base;
}

mimo_status mimo_grammar_constraint(const mimo_gvocab *v, const mimo_jg *g, int after_token, mimo_constraint **out) {
  grammar_constraint *x = gc_alloc(v);
  if (!x)
    return mimo_errf(MIMO_E_NOMEM, "structured output state");
  x->base = (mimo_constraint){gc_mask, gc_accept, gc_done, gc_free, gc_clone, after_token, NULL};
  x->v = v;
  x->g = g;
  mimo_jg_ref(g);
  mimo_jg_start(g, &x->s);
  *out = &x->base;
  return MIMO_OK;
}
