/* JSON-schema grammar, matching (json_grammar.h): a frame per open value, its schema node and where in the value
 * the bytes have got to; numbers and literals end when a byte cannot continue them, which then goes to the
 * enclosing value. The nodes come from json_grammar.c. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "text/json_grammar_internal.h"


static bool is_digit(int c) { return c >= '0' && c <= '9'; }
static bool is_hex(int c) { return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }

bool jg_push(mimo_jg_stack *s, const node *n, int phase) {
  if (s->depth >= MIMO_JG_MAX_DEPTH)
    return false;
  mimo_jg_frame *f = &s->f[s->depth++];
  memset(f, 0, sizeof *f);
  f->node = n;
  f->phase = (uint8_t)phase;
  return true;
}

/* The top value is complete: its parent moves on. */
void jg_pop(mimo_jg_stack *s) {
  if (--s->depth == 0)
    return;
  mimo_jg_frame *p = &s->f[s->depth - 1];
  p->ws = 0;
  if (p->phase == P_OBJ_VALUE) {
    if (p->prop >= 0)
      p->seen |= 1ull << p->prop;
    p->phase = P_OBJ_AFTER;
  } else if (p->phase == P_OBJ_KEYSTR) {
    p->phase = P_OBJ_COLON;
  } else if (p->phase == P_ARR_VALUE) {
    p->count++;
    p->phase = P_ARR_AFTER;
  } else if (p->phase == P_XF_VALUE) { /* a JSON value; a text value moves its parent on itself */
    if (p->prop >= 0)
      p->seen |= 1ull << p->prop;
    p->phase = P_XF_VEND;
  } else if (p->phase == P_XC_FUNC) {
    p->phase = P_XC_END;
    p->off = 0;
  } else if (p->phase == P_ST_VALUE) { /* its end text, or the structure is over where it has none */
    p->off = 0;
    if (p->node->key_len[p->prop])
      p->phase = P_ST_END;
    else
      jg_stag_after(s, p);
  }
}

static bool num_complete(int phase) {
  return phase == P_NUM_ZERO || phase == P_NUM_INT || phase == P_NUM_FRAC || phase == P_NUM_EXP;
}

/* A pattern string's (or a bounded integer's) DFA after decoded byte c (false: it cannot continue). */
bool jg_pattern_byte(const node *n, mimo_jg_frame *f, int c) {
  const int next = mimo_re_next(n->pattern, (int)f->off, (unsigned char)c);
  if (next < 0)
    return false;
  f->off = (uint32_t)next;
  return true;
}

/* A number that may end here: complete, and within its bounds where it has them. */
static bool num_done(const mimo_jg_frame *f) {
  return num_complete(f->phase) && (!f->node->pattern || mimo_re_accepts(f->node->pattern, (int)f->off));
}

static bool lit_complete(const mimo_jg_frame *f) {
  for (int i = 0; i < f->node->n_lits; i++)
    if (f->cand >> i & 1 && f->node->lit_len[i] == f->off)
      return true;
  return false;
}

static void copy_stack(mimo_jg_stack *dst, const mimo_jg_stack *src) {
  dst->depth = src->depth;
  memcpy(dst->f, src->f, (size_t)src->depth * sizeof *src->f);
}

/* The readings of one byte's step: those of the state, then those forked while stepping them. */
typedef struct {
  mimo_jg_state *set;
  int used;
} readings;

/* A copy of s whose top value is read as alternative alt (dropped when there is no room: see json_grammar.h). */
static void fork_reading(readings *room, const mimo_jg_stack *s, const node *alt) {
  if (room->used >= MIMO_JG_MAX_READINGS)
    return;
  mimo_jg_stack *t = &room->set->s[room->used++];
  copy_stack(t, s);
  t->f[t->depth - 1].node = alt;
}


/* A value of f's node begins with c (f in P_VALUE). */
static int value_start(const mimo_jg *g, mimo_jg_stack *s, mimo_jg_frame *f, int c, readings *room) {
  const node *n = f->node;
  if (!has_first(n, c))
    return REJECT;
  switch (n->k) {
  case K_ANY:
    f->node = c == '{' ? g->any_obj : c == '[' ? g->any_arr : c == '"' ? g->free_str
              : (c == '-' || is_digit(c)) ? g->any_num : g->json_lits;
    return AGAIN;
  case K_UNION: { /* the first alternative that may start with c here, the others in readings of their own */
    const node *pick = NULL;
    for (int i = 0; i < n->n_alts; i++)
      if (has_first(n->alts[i], c)) {
        if (!pick)
          pick = n->alts[i];
        else
          fork_reading(room, s, n->alts[i]);
      }
    f->node = pick;
    return pick ? AGAIN : REJECT;
  }
  case K_OBJECT:
    f->phase = P_OBJ_OPEN;
    f->prop = -1;
    return TOOK;
  case K_ARRAY:
    f->phase = P_ARR_OPEN;
    return TOOK;
  case K_STRING:
    f->phase = P_STR_IN;
    f->off = n->pattern ? (uint32_t)mimo_re_start(n->pattern) : 0;
    return TOOK;
  case K_NUMBER:
  case K_INTEGER:
    if (n->pattern) { /* bounds: the digits' DFA (int_range.h) */
      f->off = (uint32_t)mimo_re_start(n->pattern);
      if (!jg_pattern_byte(n, f, c))
        return REJECT;
    }
    f->phase = c == '-' ? P_NUM_MINUS : c == '0' ? P_NUM_ZERO : P_NUM_INT;
    f->count = 1;
    return TOOK;
  case K_LITERALS:
    f->phase = P_LIT;
    f->cand = jg_all_bits(n->n_lits);
    f->off = 0;
    return AGAIN;
  case K_XCALLS:
  case K_XFUNC:
  case K_XTEXT:
  case K_STAG: break; /* never a JSON value */
  }
  (void)s;
  return REJECT;
}


/* A short escape's decoded byte ('\\' followed by c), or -1. */
static int short_escape(int c) {
  switch (c) {
  case '"': case '\\': case '/': return c;
  case 'b': return 8;
  case 'f': return 12;
  case 'n': return 10;
  case 'r': return 13;
  case 't': return 9;
  default: return -1;
  }
}

static int string_byte(mimo_jg_stack *s, mimo_jg_frame *f, int c, bool tools) {
  const node *n = f->node;
  if (f->phase == P_STR_ESC && n->pattern) { /* the short escapes only: their byte is known at once */
    const int d = short_escape(c);
    if (d < 0 || !jg_pattern_byte(n, f, d))
      return REJECT;
    f->phase = P_STR_IN;
    return TOOK;
  }
  if (f->phase == P_STR_ESC) {
    if (c == 'u') {
      f->phase = P_STR_HEX;
      f->hex = 4;
      f->off = 0;
      return TOOK;
    }
    if (!strchr("\"\\/bfnrt", c) || !c)
      return REJECT;
    f->phase = P_STR_IN;
    return TOOK;
  }
  if (f->phase == P_STR_HEX) { /* \uXXXX: surrogates only as a high-low pair, so the text is Unicode */
    if (!is_hex(c))
      return REJECT;
    const unsigned v = (unsigned)(is_digit(c) ? c - '0' : (c | 0x20) - 'a' + 10), pos = 4u - f->hex;
    const bool low = f->off >> 16 & 1;
    const unsigned prev = f->off & 0xffff;
    if (low ? (pos == 0 && v != 0xd) || (pos == 1 && v < 0xc) : pos == 1 && prev == 0xd && v >= 0xc)
      return REJECT;
    f->off = (low ? 1u << 16 : 0) | ((prev << 4 | v) & 0xffff);
    if (--f->hex == 0) {
      const unsigned cp = f->off & 0xffff;
      f->phase = !low && cp >= 0xd800 && cp <= 0xdbff ? P_STR_SURR1 : P_STR_IN;
      f->off = 0;
    }
    return TOOK;
  }
  if (f->phase == P_STR_SURR1 || f->phase == P_STR_SURR2) { /* the low half of a pair: \uDC00..\uDFFF */
    if (c != (f->phase == P_STR_SURR1 ? '\\' : 'u'))
      return REJECT;
    if (f->phase == P_STR_SURR2) {
      f->hex = 4;
      f->off = 1u << 16;
    }
    f->phase = f->phase == P_STR_SURR1 ? P_STR_SURR2 : P_STR_HEX;
    return TOOK;
  }
  if (f->need) /* inside a UTF-8 sequence */
    return jg_utf8_cont(n, f, c) ? TOOK : REJECT;
  if (c == '"') {
    if (f->count < n->min_len || (n->pattern && !mimo_re_accepts(n->pattern, (int)f->off)))
      return REJECT;
    jg_pop(s);
    return TOOK;
  }
  if (c < 0x20)
    return REJECT;
  if (n->max_len >= 0 && f->count >= n->max_len)
    return REJECT;
  if (n->pattern && c == '\\') { /* only when some short escape's byte can come next */
    static const char esc[] = "\"\\/bfnrt";
    bool any = false;
    for (int i = 0; esc[i] && !any; i++)
      any = mimo_re_next(n->pattern, (int)f->off, (unsigned char)short_escape(esc[i])) >= 0;
    if (!any)
      return REJECT;
  } else if (n->pattern) {
    mimo_jg_frame t = *f;
    if (!jg_pattern_byte(n, &t, c))
      return REJECT;
    f->off = t.off;
  }
  if (tools) { /* inside a tool call's parameter: the parser ends the value at the first "</parameter>", in a string
                * too (f->seen: its bytes matched so far) */
    const uint64_t at = (unsigned char)XML_PARAM_END[f->seen] == c ? f->seen + 1 : c == '<';
    if (!XML_PARAM_END[at])
      return REJECT;
    f->seen = at;
  }
  if (c == '\\') {
    f->phase = P_STR_ESC;
  } else if (c >= 0x80 && !jg_utf8_lead(f, c)) {
    return REJECT;
  }
  f->count++;
  return TOOK;
}

static int number_byte(mimo_jg_stack *s, mimo_jg_frame *f, int c) {
  const bool integer = f->node->k == K_INTEGER;
  int next = -1;
  switch (f->phase) {
  case P_NUM_MINUS: next = c == '0' ? P_NUM_ZERO : is_digit(c) ? P_NUM_INT : -1; break;
  case P_NUM_ZERO:
  case P_NUM_INT:
    next = f->phase == P_NUM_INT && is_digit(c) ? P_NUM_INT
           : !integer && c == '.'             ? P_NUM_DOT
           : !integer && (c == 'e' || c == 'E') ? P_NUM_E
                                                : -1;
    break;
  case P_NUM_DOT: next = is_digit(c) ? P_NUM_FRAC : -1; break;
  case P_NUM_FRAC: next = is_digit(c) ? P_NUM_FRAC : (c == 'e' || c == 'E') ? P_NUM_E : -1; break;
  case P_NUM_E: next = is_digit(c) ? P_NUM_EXP : (c == '+' || c == '-') ? P_NUM_ESIGN : -1; break;
  case P_NUM_ESIGN:
  case P_NUM_EXP: next = is_digit(c) ? P_NUM_EXP : -1; break;
  }
  if (next >= 0 && f->count < MIMO_JG_MAX_NUM && (!f->node->pattern || jg_pattern_byte(f->node, f, c))) {
    f->phase = (uint8_t)next;
    f->count++;
    return TOOK;
  }
  if (!num_done(f) || s->depth == 1) /* a top-level number ends the output */
    return REJECT;
  jg_pop(s);
  return AGAIN;
}

static int literal_byte(mimo_jg_stack *s, mimo_jg_frame *f, int c) {
  const node *n = f->node;
  if (jg_narrow(f, n->lits, n->lit_len, n->n_lits, c))
    return TOOK;
  if (!lit_complete(f) || s->depth == 1)
    return REJECT;
  jg_pop(s);
  return AGAIN;
}

/* Object key of a named-properties object: the bytes between the quotes must spell one not given yet. */
static int key_byte(mimo_jg_frame *f, int c) {
  const node *n = f->node;
  if (c == '"') {
    for (int i = 0; i < n->n_props; i++)
      if (f->cand >> i & 1 && n->key_len[i] == f->off) {
        f->prop = (int16_t)i;
        f->phase = P_OBJ_COLON;
        f->ws = 0;
        return TOOK;
      }
    return REJECT;
  }
  return jg_narrow(f, n->keys, n->key_len, n->n_props, c) ? TOOK : REJECT;
}

int jg_ws_byte(mimo_jg_frame *f) {
  if (f->ws >= MIMO_JG_MAX_WS)
    return REJECT;
  f->ws++;
  return TOOK;
}

static int object_byte(const mimo_jg *g, mimo_jg_stack *s, mimo_jg_frame *f, int c) {
  const node *n = f->node;
  const bool named = n->n_props > 0;
  const uint64_t left = jg_all_bits(n->n_props) & ~f->seen;
  switch (f->phase) {
  case P_OBJ_OPEN:
  case P_OBJ_NEXT:
    if (jg_is_ws(c))
      return jg_ws_byte(f);
    if (c == '}' && f->phase == P_OBJ_OPEN && (!named || !n->required)) {
      jg_pop(s);
      return TOOK;
    }
    if (c != '"' || (named ? !left : !n->addl))
      return REJECT;
    f->ws = 0;
    if (named) {
      f->phase = P_OBJ_KEY;
      f->cand = left;
      f->off = 0;
      return TOOK;
    }
    f->phase = P_OBJ_KEYSTR;
    f->prop = -1;
    if (!jg_push(s, g->free_str, P_STR_IN))
      return REJECT;
    return TOOK;
  case P_OBJ_KEY:
    return key_byte(f, c);
  case P_OBJ_COLON:
    if (jg_is_ws(c))
      return jg_ws_byte(f);
    if (c != ':')
      return REJECT;
    f->phase = P_OBJ_VALUE;
    return jg_push(s, named ? n->props[f->prop] : n->addl, P_VALUE) ? TOOK : REJECT;
  case P_OBJ_AFTER:
    if (jg_is_ws(c))
      return jg_ws_byte(f);
    if (c == ',' && (!named || left)) {
      f->phase = P_OBJ_NEXT;
      f->ws = 0;
      return TOOK;
    }
    if (c == '}' && (!named || (f->seen & n->required) == n->required)) {
      jg_pop(s);
      return TOOK;
    }
    return REJECT;
  }
  return REJECT;
}

static int array_byte(mimo_jg_stack *s, mimo_jg_frame *f, int c) {
  const node *n = f->node;
  switch (f->phase) {
  case P_ARR_OPEN:
  case P_ARR_NEXT:
    if (jg_is_ws(c))
      return jg_ws_byte(f);
    if (c == ']' && f->phase == P_ARR_OPEN) {
      if (n->min_items > 0)
        return REJECT;
      jg_pop(s);
      return TOOK;
    }
    if (n->max_items >= 0 && f->count >= n->max_items)
      return REJECT;
    f->phase = P_ARR_VALUE;
    f->ws = 0;
    return jg_push(s, f->count < n->n_alts ? n->alts[f->count] : n->items, P_VALUE) ? AGAIN : REJECT;
  case P_ARR_AFTER:
    if (jg_is_ws(c))
      return jg_ws_byte(f);
    if (c == ',' && (n->max_items < 0 || f->count < n->max_items)) {
      f->phase = P_ARR_NEXT;
      f->ws = 0;
      return TOOK;
    }
    if (c == ']' && f->count >= n->min_items) {
      jg_pop(s);
      return TOOK;
    }
    return REJECT;
  }
  return REJECT;
}

/* One byte on reading s in place (readings it forks go to room); false leaves s in an unspecified state. */
static bool step(const mimo_jg *g, mimo_jg_stack *s, int c, readings *room) {
  for (int guard = 0; guard < 4 * MIMO_JG_MAX_DEPTH; guard++) {
    if (s->depth == 0)
      return false; /* nothing may follow the value */
    mimo_jg_frame *f = &s->f[s->depth - 1];
    int r;
    if (g->no_ws && jg_is_ws(c) && (f->phase == P_VALUE || f->phase == P_OBJ_OPEN || f->phase == P_OBJ_COLON ||
                                    f->phase == P_OBJ_AFTER || f->phase == P_OBJ_NEXT || f->phase == P_ARR_OPEN ||
                                    f->phase == P_ARR_AFTER || f->phase == P_ARR_NEXT))
      return false; /* compact JSON: whitespace only inside strings (numbers end at it and hand it up to here) */
    switch (f->phase) {
    case P_VALUE:
      if (jg_is_ws(c) && !g->raw)
        return jg_ws_byte(f) == TOOK;
      r = value_start(g, s, f, c, room);
      break;
    case P_STR_IN:
    case P_STR_ESC:
    case P_STR_HEX:
    case P_STR_SURR1:
    case P_STR_SURR2: r = string_byte(s, f, c, g->tools); break;
    case P_LIT: r = literal_byte(s, f, c); break;
    case P_REGEX: {
      const int next = mimo_re_next(g->re, (int)f->off, (unsigned char)c);
      if (next < 0)
        return false;
      f->off = (uint32_t)next;
      return true;
    }
    case P_ARR_OPEN:
    case P_ARR_AFTER:
    case P_ARR_NEXT: r = array_byte(s, f, c); break;
    case P_ARR_VALUE:
    case P_OBJ_VALUE:
    case P_OBJ_KEYSTR:
    case P_XC_FUNC:
    case P_XF_VALUE:
    case P_ST_VALUE: return false; /* a child frame is on top while these wait */
    case P_ST_FREE:
    case P_ST_BEGIN:
    case P_ST_END: r = jg_stag_byte(g, s, f, c); break;
    case P_XC_OPEN:
    case P_XC_NAME:
    case P_XC_END:
    case P_XC_AFTER: r = jg_xcalls_byte(s, f, c); break;
    case P_XF_NEXT:
    case P_XF_PARAM:
    case P_XF_CLOSE:
    case P_XF_KEY:
    case P_XF_VSTART:
    case P_XF_VEND:
    case P_XF_VCLOSE: r = jg_xfunc_byte(s, f, c); break;
    case P_XT: r = jg_xtext_byte(s, f, c); break;
    default:
      r = f->phase >= P_NUM_MINUS && f->phase <= P_NUM_EXP ? number_byte(s, f, c) : object_byte(g, s, f, c);
      break;
    }
    if (r != AGAIN)
      return r == TOOK;
  }
  return false;
}

void mimo_jg_copy(mimo_jg_state *dst, const mimo_jg_state *src) {
  dst->n = src->n;
  for (int i = 0; i < src->n; i++)
    copy_stack(&dst->s[i], &src->s[i]);
}

static bool same_stack(const mimo_jg_stack *a, const mimo_jg_stack *b) {
  return a->depth == b->depth && !memcmp(a->f, b->f, (size_t)a->depth * sizeof *a->f);
}

/* One byte on every reading, in place; false (no reading took it) leaves set in an unspecified state. */
static bool step_all(const mimo_jg *g, mimo_jg_state *set, int c) {
  bool alive[MIMO_JG_MAX_READINGS];
  readings room = {set, set->n};
  for (int i = 0; i < room.used; i++) /* room.used grows as readings fork; the forks step in this loop too */
    alive[i] = step(g, &set->s[i], c, &room);
  int n = 0;
  for (int i = 0; i < room.used; i++) {
    if (!alive[i])
      continue;
    bool dup = false;
    for (int j = 0; j < n && !dup; j++)
      dup = same_stack(&set->s[j], &set->s[i]);
    if (!dup && n != i)
      copy_stack(&set->s[n], &set->s[i]);
    n += !dup;
  }
  set->n = n;
  return n > 0;
}

void mimo_jg_start(const mimo_jg *g, mimo_jg_state *set) {
  mimo_jg_stack *s = &set->s[0];
  set->n = 1;
  s->depth = 0;
  if (g->re) {
    jg_push(s, NULL, P_REGEX);
    s->f[0].off = (uint32_t)mimo_re_start(g->re);
    return;
  }
  /* tool calls from the start (an empty start text): whitespace, then the first call, as between calls */
  jg_push(s, g->root, g->root->k == K_STAG ? (g->root->min_items > 0 ? P_ST_BEGIN : P_ST_FREE)
                      : g->root->k != K_XCALLS ? P_VALUE : g->start_text && *g->start_text ? P_XC_OPEN : P_XC_AFTER);
  if (g->root->k == K_STAG && g->root->min_items > 0) /* the first structure from the start: any of the begins */
    s->f[0].cand = jg_all_bits(g->root->n_lits);
  for (const char *c = g->start_text; c && *c; c++) /* compiled from it: it always goes through */
    step_all(g, set, (unsigned char)*c);
}

bool mimo_jg_feed(const mimo_jg *g, mimo_jg_state *s, unsigned char c) {
  mimo_jg_state t;
  mimo_jg_copy(&t, s);
  if (!step_all(g, &t, c))
    return false;
  mimo_jg_copy(s, &t);
  return true;
}

static bool stack_done(const mimo_jg *g, const mimo_jg_stack *s) {
  if (s->depth == 0)
    return true;
  if (s->depth > 1)
    return false;
  const mimo_jg_frame *f = &s->f[0];
  if (f->phase == P_REGEX)
    return mimo_re_accepts(g->re, (int)f->off);
  if (f->phase >= P_NUM_MINUS && f->phase <= P_NUM_EXP)
    return num_done(f);
  if (f->phase == P_XC_AFTER)
    return f->count > 0;
  if (f->node && f->node->k == K_STAG)
    return jg_stag_done(f);
  return f->phase == P_LIT && lit_complete(f);
}

bool mimo_jg_done(const mimo_jg *g, const mimo_jg_state *s) {
  for (int i = 0; i < s->n; i++)
    if (stack_done(g, &s->s[i]))
      return true;
  return false;
}

bool mimo_jg_closed(const mimo_jg_state *s) {
  for (int i = 0; i < s->n; i++)
    if (s->s[i].depth)
      return false;
  return true;
}

/* The kind of free text reading s is in (json_grammar.h), 0 if none. */
static int free_text(const mimo_jg *g, const mimo_jg_stack *s) {
  if (!s->depth)
    return 0;
  const mimo_jg_frame *f = &s->f[s->depth - 1];
  if (f->node && f->node->k == K_STAG)
    return jg_stag_free_text(g, f) ? MIMO_JG_FREE_RAW : 0;
  if (f->need || f->node == NULL || f->node->max_len >= 0 || f->node->pattern)
    return 0;
  if (f->phase == P_STR_IN)
    return g->tools ? MIMO_JG_FREE_JSON_IN_TOOL : MIMO_JG_FREE_JSON;
  return f->phase == P_XT && !f->hex ? MIMO_JG_FREE_RAW : 0;
}

int mimo_jg_free_text(const mimo_jg *g, const mimo_jg_state *set) {
  const int k = set->n ? free_text(g, &set->s[0]) : 0;
  for (int i = 1; i < set->n && k; i++)
    if (free_text(g, &set->s[i]) != k)
      return 0;
  return k;
}

bool mimo_jg_between_calls(const mimo_jg *g, const mimo_jg_state *set) {
  for (int i = 0; g->tools && i < set->n; i++) {
    const mimo_jg_stack *s = &set->s[i];
    if (s->depth && s->f[s->depth - 1].node && s->f[s->depth - 1].node->k == K_XCALLS)
      return true;
  }
  return false;
}

/* For the vocabulary's mask (grammar_vocab.c): the same step, in place. */
bool mimo_jg_step_inplace(const mimo_jg *g, mimo_jg_state *s, unsigned char c) { return step_all(g, s, c); }
