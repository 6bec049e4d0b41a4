/* vLLM's structural tags (json_grammar.h, mimo_jg_structural_tag and mimo_jg_structural_format): free text in which a
 * trigger opens one of the structures, whose begin text, JSON value under its schema and end text follow; then free
 * text again, any number of times (or, in the format form's options, the first structure from the start, and none
 * after it). Free text is well-formed UTF-8 that contains no trigger outside a structure; the output may end in it.
 *
 * The triggers are found by an Aho-Corasick automaton over their bytes (a frame's off is its state), so a trigger
 * split over tokens or preceded by a false start ("<<function=") is still found. No trigger may contain another (so
 * at most one ends at a byte) and no begin may be a prefix of another (so a begin ends at one known byte); every
 * begin starts with a trigger. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "text/json_grammar_internal.h"

struct jg_stag {
  int16_t (*go)[256]; /* state × byte → state */
  int8_t *hit;        /* the trigger that ends at a state, -1: none */
  uint64_t *opens;    /* per trigger: the structures whose begin starts with it */
  uint16_t *tlen;     /* per trigger: its length */
  bool lt;            /* every trigger starts with '<': free text's plain tokens (no '<') never start one */
};

void jg_stag_free(jg_stag *t) {
  if (!t)
    return;
  free(t->go);
  free(t->hit);
  free(t->opens);
  free(t->tlen);
  free(t);
}

/* The automaton of the n triggers: a trie, then by breadth-first order each state's moves completed by its longest
 * proper suffix that is a trie state. */
static mimo_status build_automaton(jg_stag *t, char *const *trig, const size_t *len, int n) {
  size_t total = 1;
  for (int i = 0; i < n; i++)
    total += len[i];
  t->go = calloc(total, sizeof *t->go);
  t->hit = malloc(total);
  int *fail = calloc(total, sizeof *fail), *queue = malloc(total * sizeof *queue);
  if (!t->go || !t->hit || !fail || !queue) {
    free(fail);
    free(queue);
    return mimo_errf(MIMO_E_NOMEM, "structural tag");
  }
  memset(t->hit, -1, total);
  int n_states = 1;
  for (int i = 0; i < n; i++) { /* the trie; 0 in go means "no child" until the completion below */
    int at = 0;
    for (size_t k = 0; k < len[i]; k++) {
      const int c = (unsigned char)trig[i][k];
      if (!t->go[at][c])
        t->go[at][c] = (int16_t)n_states++;
      at = t->go[at][c];
    }
    t->hit[at] = (int8_t)i;
  }
  int head = 0, tail = 0;
  for (int c = 0; c < 256; c++)
    if (t->go[0][c])
      queue[tail++] = t->go[0][c]; /* depth 1: fail to the root */
  while (head < tail) {
    const int s = queue[head++];
    for (int c = 0; c < 256; c++) {
      const int nx = t->go[s][c];
      if (nx) {
        fail[nx] = t->go[fail[s]][c];
        queue[tail++] = nx;
      } else {
        t->go[s][c] = t->go[fail[s]][c];
      }
    }
  }
  free(fail);
  free(queue);
  return MIMO_OK;
}

/* The schema of structure s (list[i], or the one structure `list`): "schema" in the first form, "content":
 * {"type": "json_schema", "json_schema": ...} in the format form; NULL with the error set. */
static const json_t *structure_schema(const json_t *s, bool content_form, const char *where, mimo_status *st) {
  const json_t *sc = json_object_get(s, "schema");
  if (content_form) {
    const json_t *c = json_object_get(s, "content"), *ty = json_object_get(c, "type");
    if (!json_is_object(c) || !json_is_string(ty) || strcmp(json_string_value(ty), "json_schema")) {
      *st = mimo_errf(MIMO_E_INVALID, "%s.content must be {\"type\": \"json_schema\", \"json_schema\": ...} (other "
                      "content formats are not supported)", where);
      return NULL;
    }
    sc = json_object_get(c, "json_schema");
  }
  if (!sc || !(json_is_object(sc) || json_is_true(sc))) {
    *st = mimo_errf(MIMO_E_INVALID, "%s.%s must be a JSON schema (an object)", where,
                    content_form ? "content.json_schema" : "schema");
    return NULL;
  }
  return sc;
}

/* The grammar of structures (an array named list, or with single the one object named list) opened by triggers (none:
 * the first is forced), at least min_items of them first (0 or 1: the output starts with one), at most max_items
 * (< 0: any number); content_form: xgrammar's later form of a structure's schema. */
static mimo_status build(const json_t *structures, const char *list, bool single, bool content_form,
                         const json_t *triggers, int min_items, int max_items, mimo_jg **out) {
  *out = NULL;
  const int ns = single ? 1 : json_is_array(structures) ? (int)json_array_size(structures) : 0,
            nt = json_is_array(triggers) ? (int)json_array_size(triggers) : 0;
  if (ns < 1 || ns > 64)
    return mimo_errf(MIMO_E_INVALID, "%s must be a list of 1 to 64 objects {begin, %s, end}", list,
                     content_form ? "content" : "schema");
  if ((nt < 1 && !min_items) || nt > 64 || (triggers && !json_is_array(triggers)))
    return mimo_errf(MIMO_E_INVALID, "triggers must be a list of 1 to 64 strings");
  char *trig[64];
  size_t tl[64], total = 0;
  for (int i = 0; i < nt; i++) {
    const json_t *v = json_array_get(triggers, (size_t)i);
    if (!json_is_string(v) || !json_string_length(v) || memchr(json_string_value(v), 0, json_string_length(v)))
      return mimo_errf(MIMO_E_INVALID, "triggers[%d] must be a non-empty string", i);
    trig[i] = (char *)json_string_value(v);
    tl[i] = json_string_length(v);
    total += tl[i];
  }
  if (total > 4096)
    return mimo_errf(MIMO_E_INVALID, "triggers: %zu bytes in all, at most 4096", total);
  for (int i = 0; i < nt; i++)
    for (int j = 0; j < nt; j++)
      if (i != j && tl[i] <= tl[j] && memmem(trig[j], tl[j], trig[i], tl[i]))
        return mimo_errf(MIMO_E_INVALID, "triggers[%d] is contained in triggers[%d]: one trigger may not hold another",
                         i, j);
  mimo_jg *g;
  MIMO_TRY(jg_base(&g));
  mimo_status st = MIMO_OK;
  node *root = g->root = jg_new_node(g, K_STAG);
  jg_stag *t = g->stag = calloc(1, sizeof *g->stag);
  if (!root || !t || !(root->alts = calloc((size_t)ns, sizeof *root->alts)) ||
      !(root->keys = calloc((size_t)ns, sizeof *root->keys)) ||
      !(root->key_len = calloc((size_t)ns, sizeof *root->key_len)) || !(t->opens = calloc((size_t)nt + 1, 8)) ||
      !(t->tlen = calloc((size_t)nt + 1, sizeof *t->tlen))) {
    mimo_jg_free(g);
    return mimo_errf(MIMO_E_NOMEM, "structural tag");
  }
  root->n_alts = root->n_props = ns;
  root->min_items = min_items;
  root->max_items = max_items;
  for (int i = 0; i < nt; i++)
    t->tlen[i] = (uint16_t)tl[i];
  for (int i = 0; i < ns && st == MIMO_OK; i++) {
    const json_t *s = single ? structures : json_array_get(structures, (size_t)i), *b = json_object_get(s, "begin"),
                 *e = json_object_get(s, "end");
    char where[64], path[96];
    if (single)
      snprintf(where, sizeof where, "%s", list);
    else
      snprintf(where, sizeof where, "%s[%d]", list, i);
    if (!json_is_object(s) || !json_is_string(b) || !json_string_length(b) || !json_is_string(e) ||
        memchr(json_string_value(b), 0, json_string_length(b)) || memchr(json_string_value(e), 0, json_string_length(e))) {
      st = mimo_errf(MIMO_E_INVALID, "%s must be an object with a non-empty string 'begin', a '%s' and a string 'end'",
                     where, content_form ? "content" : "schema");
      break;
    }
    const json_t *sc = structure_schema(s, content_form, where, &st);
    if (!sc)
      break;
    snprintf(path, sizeof path, "%s.%s", where, content_form ? "content.json_schema" : "schema");
    const char *bs = json_string_value(b);
    const size_t bl = json_string_length(b);
    int opened_by = -1;
    for (int k = 0; k < nt; k++)
      if (tl[k] <= bl && !memcmp(bs, trig[k], tl[k]))
        opened_by = k;
    if (opened_by < 0 && nt) {
      st = mimo_errf(MIMO_E_INVALID, "%s.begin does not start with any of the triggers", where);
      break;
    }
    if (opened_by >= 0)
      t->opens[opened_by] |= 1ull << i;
    if ((st = jg_add_literal(root, bs, bl)) != MIMO_OK)
      break;
    if (!(root->keys[i] = malloc(json_string_length(e) + 1))) {
      st = mimo_errf(MIMO_E_NOMEM, "structural tag");
      break;
    }
    memcpy(root->keys[i], json_string_value(e), json_string_length(e) + 1);
    root->key_len[i] = json_string_length(e);
    g->schema_root = sc;
    st = jg_compile(g, sc, path, 1, &root->alts[i]);
    g->schema_root = NULL;
  }
  for (int i = 0; i < ns && st == MIMO_OK; i++)
    for (int j = 0; j < ns && st == MIMO_OK; j++)
      if (i != j && root->lit_len[i] <= root->lit_len[j] && !memcmp(root->lits[i], root->lits[j], root->lit_len[i]))
        st = mimo_errf(MIMO_E_INVALID, "%s[%d].begin is a prefix of %s[%d].begin: the structure would be ambiguous",
                       list, i, list, j);
  for (int k = 0; k < nt && st == MIMO_OK; k++) /* (free text could reach it and go no further) */
    if (!t->opens[k])
      st = mimo_errf(MIMO_E_INVALID, "triggers[%d] starts none of the %s' begins", k, list);
  if (st == MIMO_OK)
    st = build_automaton(t, trig, tl, nt);
  if (st != MIMO_OK) {
    mimo_jg_free(g);
    return st;
  }
  t->lt = true;
  for (int i = 0; i < nt; i++)
    t->lt &= trig[i][0] == '<';
  *out = g;
  return MIMO_OK;
}

mimo_status mimo_jg_structural_tag(const json_t *structures, const json_t *triggers, mimo_jg **out) {
  return build(structures, "structures", false, false, triggers, 0, -1, out);
}

mimo_status mimo_jg_structural_format(const json_t *format, mimo_jg **out) {
  *out = NULL;
  const json_t *ty = json_object_get(format, "type");
  const char *type = json_is_string(ty) ? json_string_value(ty) : "";
  if (!strcmp(type, "json_schema")) {
    const json_t *sc = json_object_get(format, "json_schema");
    if (!sc || !(json_is_object(sc) || json_is_true(sc)))
      return mimo_errf(MIMO_E_INVALID, "format.json_schema must be a JSON schema (an object)");
    return mimo_jg_compile(sc, out);
  }
  if (!strcmp(type, "tag")) /* one structure, the whole output */
    return build(format, "format", true, true, NULL, 1, 1, out);
  if (!strcmp(type, "triggered_tags")) {
    const json_t *first = json_object_get(format, "at_least_one"), *once = json_object_get(format, "stop_after_first");
    if ((first && !json_is_boolean(first)) || (once && !json_is_boolean(once)))
      return mimo_errf(MIMO_E_INVALID, "format.at_least_one and format.stop_after_first must be booleans");
    return build(json_object_get(format, "tags"), "format.tags", false, true, json_object_get(format, "triggers"),
                 json_is_true(first), json_is_true(once) ? 1 : -1, out);
  }
  return mimo_errf(MIMO_E_INVALID, "format.type '%s' is not supported (triggered_tags, tag and json_schema are)", type);
}

/* A structure has ended (its end text, or its value where it has none): free text again, or the whole output where
 * no more may come. */
void jg_stag_after(mimo_jg_stack *s, mimo_jg_frame *f) {
  if (f->count < UINT16_MAX)
    f->count++;
  f->off = 0;
  f->ws = 0;
  f->phase = P_ST_FREE;
  if (f->node->max_items >= 0 && f->count >= f->node->max_items)
    jg_pop(s);
}

/* A begin is complete at f->off: its structure's value follows. */
static int begin_done(mimo_jg_stack *s, mimo_jg_frame *f) {
  const node *n = f->node;
  for (int i = 0; i < n->n_lits; i++)
    if (f->cand >> i & 1 && n->lit_len[i] == f->off) { /* no begin is a prefix of another: the only one */
      f->phase = P_ST_VALUE;
      f->prop = (int16_t)i;
      return jg_push(s, n->alts[i], P_VALUE) ? TOOK : REJECT;
    }
  return TOOK;
}

/* One byte of free text, of a begin, or of an end (the JSON value in between runs on its own frames). */
int jg_stag_byte(const mimo_jg *g, mimo_jg_stack *s, mimo_jg_frame *f, int c) {
  const node *n = f->node;
  const jg_stag *t = g->stag;
  switch (f->phase) {
  case P_ST_FREE: {
    if (f->need) { /* a UTF-8 sequence's continuation */
      if (c < f->lo || c > f->hi)
        return REJECT;
      f->need--;
      f->lo = 0x80;
      f->hi = 0xbf;
    } else if (!c || (c >= 0x80 && !jg_utf8_lead(f, c))) {
      return REJECT;
    }
    f->off = (uint32_t)t->go[f->off][c];
    const int k = t->hit[f->off];
    if (k >= 0) { /* a trigger: one of the structures it opens follows (its begin may be the trigger itself) */
      f->phase = P_ST_BEGIN;
      f->cand = t->opens[k];
      f->off = t->tlen[k];
      return begin_done(s, f);
    }
    return TOOK;
  }
  case P_ST_BEGIN:
    return jg_narrow(f, n->lits, n->lit_len, n->n_lits, c) ? begin_done(s, f) : REJECT;
  case P_ST_END: {
    const char *e = n->keys[f->prop];
    if (f->off == 0 && jg_is_ws(c) && (unsigned char)e[0] != c) /* space after the value */
      return jg_ws_byte(f);
    if (f->off >= n->key_len[f->prop] || (unsigned char)e[f->off] != c)
      return REJECT;
    if (++f->off == n->key_len[f->prop])
      jg_stag_after(s, f);
    return TOOK;
  }
  }
  return REJECT;
}

/* Whether a structural tag's output may end with reading s's top frame f: in free text, between characters. */
bool jg_stag_done(const mimo_jg_frame *f) { return f->phase == P_ST_FREE && !f->need; }

/* Free text where no trigger has begun and no character is open: every plain token is text (when every trigger
 * starts with '<', which plain tokens lack). */
bool jg_stag_free_text(const mimo_jg *g, const mimo_jg_frame *f) {
  return g->stag->lt && f->phase == P_ST_FREE && f->off == 0 && !f->need;
}
