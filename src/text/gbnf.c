/* GBNF grammars to one regular expression (gbnf.h): the source is cut into tokens, rules are the spans between
 * `name ::=` pairs, and the text of root is written out by recursive descent with every rule reference replaced by
 * its own text (made once where it depends on no rule being made; a recursion written out again up to GB_MAX_NEST
 * times on a path). Every code point is written as a \U escape, so no character of the grammar reaches the regex
 * syntax unquoted. */
#include "text/gbnf.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "text/tok_internal.h"

#define GB_MAX_OUT ((size_t)4 << 20) /* regex text, all rules inlined */
#define GB_MAX_DEPTH 60              /* groups and rule references nested (the regex parser allows 200 groups) */
#define GB_MAX_QUANT 4               /* repetitions on one item */
#define GB_MAX_NEST 5                /* a rule stands at most this many times on a path: recursion nests 4 deep */

typedef enum { T_NAME, T_DEF, T_STR, T_CLASS, T_DOT, T_LP, T_RP, T_BAR, T_QUANT, T_END } tkind;

typedef struct {
  tkind k;
  size_t at, len; /* the token's bytes in the source (strings and classes without their delimiters) */
  int line;
} token;

typedef struct {
  size_t name, name_len; /* in the source */
  int first, end;        /* body tokens [first, end) */
  int line;
  int state;             /* 2: text made once and kept (it depends on no rule being made) */
  char *text;
  size_t text_len;
} rule;

typedef struct {
  const char *src;
  size_t len;
  token *t;
  int nt, capt;
  rule *r;
  int nr, capr;
  int *stack; /* rules being made, outermost first (nstack of them) */
  int nstack;
  long ctx;   /* references to a rule being made, so far (a text made meanwhile depends on its place) */
  int depth;  /* items nested (groups, references) */
  mimo_status st;
} gb;

typedef tok_buf buf;

static mimo_status gb_fail(gb *g, int line, const char *fmt, const char *a) {
  if (g->st == MIMO_OK)
    g->st = line > 0 ? mimo_errf(MIMO_E_INVALID, "grammar line %d: %s%s", line, fmt, a ? a : "")
                     : mimo_errf(MIMO_E_INVALID, "grammar: %s%s", fmt, a ? a : "");
  return g->st;
}

/* Appends n bytes, keeping the text NUL-terminated. */
static bool put(gb *g, buf *b, const char *s, size_t n) {
  if (b->n + n + 1 > GB_MAX_OUT) {
    gb_fail(g, 0, "its rules inline to more than 4 MiB of regular expression", NULL);
    return false;
  }
  if (tok_buf_put(b, s, n) != MIMO_OK || tok_buf_reserve(b, 1) != MIMO_OK) {
    gb_fail(g, 0, "out of memory", NULL);
    return false;
  }
  b->p[b->n] = 0;
  return true;
}
static bool puts_(gb *g, buf *b, const char *s) { return put(g, b, s, strlen(s)); }
static bool put_cp(gb *g, buf *b, uint32_t cp) {
  char e[12];
  snprintf(e, sizeof e, "\\U%08X", (unsigned)cp);
  return put(g, b, e, 10);
}

/* ---- tokens ---- */

static bool add_tok(gb *g, tkind k, size_t at, size_t len, int line) {
  if (g->nt == g->capt) {
    const int cap = g->capt ? 2 * g->capt : 64;
    token *t = realloc(g->t, (size_t)cap * sizeof *t);
    if (!t)
      return false;
    g->t = t;
    g->capt = cap;
  }
  g->t[g->nt++] = (token){k, at, len, line};
  return true;
}

static bool is_name_char(int c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
}

/* The end of a string or class whose body starts at i (after the opening delimiter), skipping escapes. */
static size_t scan_quoted(const char *s, size_t n, size_t i, char close) {
  while (i < n && s[i] != close && s[i] != '\n')
    i += s[i] == '\\' && i + 1 < n ? 2 : 1;
  return i;
}

static mimo_status tokenize(gb *g) {
  const char *s = g->src;
  const size_t n = g->len;
  int line = 1;
  for (size_t i = 0; i < n;) {
    const char c = s[i];
    if (c == '\n') {
      line++;
      i++;
    } else if (c == ' ' || c == '\t' || c == '\r') {
      i++;
    } else if (c == '#') {
      while (i < n && s[i] != '\n')
        i++;
    } else if (c == '"' || c == '[') {
      const size_t e = scan_quoted(s, n, i + 1, c == '"' ? '"' : ']');
      if (e >= n || s[e] != (c == '"' ? '"' : ']'))
        return gb_fail(g, line, c == '"' ? "a string is not closed on its line" : "a character class is not closed on its line",
                       NULL);
      if (!add_tok(g, c == '"' ? T_STR : T_CLASS, i + 1, e - i - 1, line))
        return gb_fail(g, 0, "out of memory", NULL);
      i = e + 1;
    } else if (c == ':' && i + 2 < n + 0 && s[i + 1] == ':' && s[i + 2] == '=') {
      if (!add_tok(g, T_DEF, i, 3, line))
        return gb_fail(g, 0, "out of memory", NULL);
      i += 3;
    } else if (is_name_char((unsigned char)c)) {
      size_t e = i;
      while (e < n && is_name_char((unsigned char)s[e]))
        e++;
      if (!add_tok(g, T_NAME, i, e - i, line))
        return gb_fail(g, 0, "out of memory", NULL);
      i = e;
    } else if (c == '{') {
      size_t e = i + 1;
      while (e < n && s[e] != '}' && s[e] != '\n')
        e++;
      if (e >= n || s[e] != '}')
        return gb_fail(g, line, "a repetition { is not closed on its line", NULL);
      if (!add_tok(g, T_QUANT, i, e + 1 - i, line))
        return gb_fail(g, 0, "out of memory", NULL);
      i = e + 1;
    } else {
      const char *ops = ".()|*+?";
      const char *o = strchr(ops, c);
      if (!o || !c) {
        char what[40];
        if ((unsigned char)c >= 0x20 && (unsigned char)c < 0x7f)
          snprintf(what, sizeof what, "'%c'", c);
        else
          snprintf(what, sizeof what, "byte 0x%02x", (unsigned char)c);
        return gb_fail(g, line, "unexpected ", what);
      }
      static const tkind kinds[] = {T_DOT, T_LP, T_RP, T_BAR, T_QUANT, T_QUANT, T_QUANT};
      if (!add_tok(g, kinds[o - ops], i, 1, line))
        return gb_fail(g, 0, "out of memory", NULL);
      i++;
    }
  }
  if (!add_tok(g, T_END, n, 0, line))
    return gb_fail(g, 0, "out of memory", NULL);
  return MIMO_OK;
}

/* ---- rules ---- */

static int find_rule(const gb *g, const char *name, size_t len) {
  for (int i = 0; i < g->nr; i++)
    if (g->r[i].name_len == len && memcmp(g->src + g->r[i].name, name, len) == 0)
      return i;
  return -1;
}

static char *name_of(const gb *g, const token *t) {
  static char nm[80];
  const size_t n = t->len < sizeof nm - 1 ? t->len : sizeof nm - 1;
  memcpy(nm, g->src + t->at, n);
  nm[n] = 0;
  return nm;
}

static mimo_status split_rules(gb *g) {
  for (int i = 0; i + 1 < g->nt; i++) {
    if (g->t[i].k != T_NAME || g->t[i + 1].k != T_DEF)
      continue;
    if (find_rule(g, g->src + g->t[i].at, g->t[i].len) >= 0)
      return gb_fail(g, g->t[i].line, "a second definition of rule ", name_of(g, &g->t[i]));
    if (g->nr == g->capr) {
      const int cap = g->capr ? 2 * g->capr : 16;
      rule *r = realloc(g->r, (size_t)cap * sizeof *r);
      if (!r)
        return gb_fail(g, 0, "out of memory", NULL);
      g->r = r;
      g->capr = cap;
    }
    if (g->nr)
      g->r[g->nr - 1].end = i;
    g->r[g->nr++] = (rule){.name = g->t[i].at, .name_len = g->t[i].len, .first = i + 2, .line = g->t[i].line};
  }
  if (!g->nr)
    return gb_fail(g, 0, "no rules (name ::= ...)", NULL);
  g->r[g->nr - 1].end = g->nt - 1; /* before T_END */
  if (g->r[0].first - 2 > 0)
    return gb_fail(g, g->t[0].line, "text before the first rule", NULL);
  for (int i = 0; i < g->nt; i++) /* a `::=` that does not follow a name */
    if (g->t[i].k == T_DEF && (i == 0 || g->t[i - 1].k != T_NAME))
      return gb_fail(g, g->t[i].line, "'::=' without a rule name before it", NULL);
  return MIMO_OK;
}

/* ---- writing the regex ---- */

/* One code point of a string or class at s[*i] (an escape or UTF-8), advancing *i; -1 with the error set. */
static long one_cp(gb *g, const char *s, size_t n, size_t *i, int line) {
  unsigned char c = (unsigned char)s[*i];
  if (c == '\\') {
    if (*i + 1 >= n) {
      gb_fail(g, line, "a backslash ends a string or class", NULL);
      return -1;
    }
    const char e = s[*i + 1];
    *i += 2;
    switch (e) {
    case 'n': return '\n';
    case 'r': return '\r';
    case 't': return '\t';
    case '\\': case '"': case '[': case ']': case '-': case '^': case '\'': return e;
    case 'x': case 'u': case 'U': {
      const int nd = e == 'x' ? 2 : e == 'u' ? 4 : 8;
      long v = 0;
      for (int k = 0; k < nd; k++, (*i)++) {
        const int h = *i < n ? s[*i] : 0, d = h >= '0' && h <= '9' ? h - '0' : h >= 'a' && h <= 'f' ? h - 'a' + 10
                                                                          : h >= 'A' && h <= 'F' ? h - 'A' + 10 : -1;
        if (d < 0) {
          gb_fail(g, line, "a \\x, \\u or \\U escape without its hex digits", NULL);
          return -1;
        }
        v = v * 16 + d;
      }
      if (v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) {
        gb_fail(g, line, "an escape names no Unicode character", NULL);
        return -1;
      }
      return v;
    }
    default:
      gb_fail(g, line, "an unknown escape in a string or class", NULL);
      return -1;
    }
  }
  uint32_t cp;
  const int l = tok_utf8_next((const unsigned char *)s + *i, n - *i, &cp);
  if (!l) {
    gb_fail(g, line, "invalid UTF-8", NULL);
    return -1;
  }
  *i += (size_t)l;
  return (long)cp;
}

static bool write_string(gb *g, buf *b, const token *t) {
  const char *s = g->src + t->at;
  size_t i = 0;
  if (!puts_(g, b, "(?:"))
    return false;
  while (i < t->len) {
    const long cp = one_cp(g, s, t->len, &i, t->line);
    if (cp < 0 || !put_cp(g, b, (uint32_t)cp))
      return false;
  }
  return puts_(g, b, ")");
}

static bool write_class(gb *g, buf *b, const token *t) {
  const char *s = g->src + t->at;
  size_t i = 0;
  if (!puts_(g, b, "["))
    return false;
  if (i < t->len && s[i] == '^') {
    i++;
    if (!puts_(g, b, "^"))
      return false;
  }
  if (i >= t->len) {
    gb_fail(g, t->line, "an empty character class", NULL);
    return false;
  }
  while (i < t->len) {
    const long lo = one_cp(g, s, t->len, &i, t->line);
    if (lo < 0 || !put_cp(g, b, (uint32_t)lo))
      return false;
    if (i + 1 < t->len && s[i] == '-') {
      i++;
      const long hi = one_cp(g, s, t->len, &i, t->line);
      if (hi < 0)
        return false;
      if (hi < lo) {
        gb_fail(g, t->line, "a class range runs backwards", NULL);
        return false;
      }
      if (!puts_(g, b, "-") || !put_cp(g, b, (uint32_t)hi))
        return false;
    }
  }
  return puts_(g, b, "]");
}

static bool write_alt(gb *g, buf *b, int *i, int end);
static bool ref_rule(gb *g, int r, buf *out);

/* {m}, {m,} or {m,n} with m <= n <= 1000 (the regex engine's bound) */
static bool valid_braces(gb *g, const token *q) {
  long v[2] = {-1, -1};
  int k = 0;
  for (size_t j = 1; j + 1 < q->len; j++) {
    const char c = g->src[q->at + j];
    if (c == ',' && k == 0 && v[0] >= 0)
      k = 1;
    else if (c >= '0' && c <= '9' && (v[k] < 0 ? (v[k] = 0, 1) : 1) && (v[k] = v[k] * 10 + (c - '0')) <= 1000)
      continue;
    else {
      gb_fail(g, q->line, "a repetition is {m}, {m,} or {m,n} with m <= n <= 1000", NULL);
      return false;
    }
  }
  if (v[0] < 0 || (k && v[1] >= 0 && v[1] < v[0])) {
    gb_fail(g, q->line, "a repetition is {m}, {m,} or {m,n} with m <= n <= 1000", NULL);
    return false;
  }
  return true;
}

static bool write_item(gb *g, buf *out, int *i, int end) {
  const token *t = &g->t[*i];
  if (++g->depth > GB_MAX_DEPTH) {
    gb_fail(g, t->line, "groups and rule references nested too deep", NULL);
    return false;
  }
  buf item = {0}, *b = &item; /* the item alone, so that a second repetition can wrap the first */
  bool ok = true;
  switch (t->k) {
  case T_STR: ok = write_string(g, b, t); (*i)++; break;
  case T_CLASS: ok = write_class(g, b, t); (*i)++; break;
  case T_DOT: ok = puts_(g, b, "[\\U00000000-\\U0010FFFF]"); (*i)++; break;
  case T_LP:
    (*i)++;
    ok = puts_(g, b, "(?:") && write_alt(g, b, i, end);
    if (ok && (*i >= end || g->t[*i].k != T_RP)) {
      gb_fail(g, t->line, "a group ( is not closed", NULL);
      ok = false;
    }
    ok = ok && puts_(g, b, ")");
    (*i)++;
    break;
  case T_NAME: {
    const int r = find_rule(g, g->src + t->at, t->len);
    if (r < 0) {
      gb_fail(g, t->line, "no rule named ", name_of(g, t));
      ok = false;
    } else {
      ok = ref_rule(g, r, b);
    }
    (*i)++;
    break;
  }
  default: {
    static const char *what[] = {"a rule name", "'::='", "", "", "", "'('", "')'", "'|'", "a repetition", "the end"};
    gb_fail(g, t->line, "expected a string, class, '.', name or group, not ", what[t->k]);
    ok = false;
  }
  }
  for (int nq = 0; ok && *i < end && g->t[*i].k == T_QUANT; nq++) { /* postfix repetitions, as written */
    const token *q = &g->t[*i];
    if (nq == GB_MAX_QUANT) {
      gb_fail(g, q->line, "more than 4 repetitions on one item", NULL);
      ok = false;
      break;
    }
    if (q->len > 1 && !valid_braces(g, q)) {
      ok = false;
      break;
    }
    if (nq) { /* a repetition of a repetition: the first as a group */
      buf w = {0};
      ok = puts_(g, &w, "(?:") && put(g, &w, item.p, item.n) && puts_(g, &w, ")");
      free(item.p);
      item = w;
    }
    ok = ok && put(g, b, g->src + q->at, q->len);
    (*i)++;
  }
  ok = ok && put(g, out, item.p ? item.p : "", item.n);
  free(item.p);
  g->depth--;
  return ok;
}

/* A sequence up to '|', ')' or the end; an empty one matches the empty string. */
static bool write_seq(gb *g, buf *b, int *i, int end) {
  while (*i < end && g->t[*i].k != T_BAR && g->t[*i].k != T_RP)
    if (!write_item(g, b, i, end))
      return false;
  return true;
}

static bool write_alt(gb *g, buf *b, int *i, int end) {
  if (!write_seq(g, b, i, end))
    return false;
  while (*i < end && g->t[*i].k == T_BAR) {
    (*i)++;
    if (!puts_(g, b, "|") || !write_seq(g, b, i, end))
      return false;
  }
  return true;
}

/* Rule r's text into out, r on the stack meanwhile. */
static bool render_rule(gb *g, int r, buf *out) {
  const rule *R = &g->r[r];
  g->stack[g->nstack++] = r; /* (at most one per nesting level: room for GB_MAX_DEPTH + 1) */
  const int saved = g->depth;
  int i = R->first;
  bool ok = write_alt(g, out, &i, R->end) && puts_(g, out, "");
  if (ok && i < R->end) {
    gb_fail(g, g->t[i].line, "an unmatched ')'", NULL);
    ok = false;
  }
  g->depth = saved;
  g->nstack--;
  return ok;
}

/* Rule r's text where it is referenced now, as a group. A rule already being made (a recursion) is written out once
 * more while it stands fewer than GB_MAX_NEST times on the stack, and beyond that matches nothing: the output then
 * nests at most GB_MAX_NEST deep (a regular subset of the grammar's language). A rule whose text depends on no
 * rule being made is made once and kept. */
static bool ref_rule(gb *g, int r, buf *out) {
  rule *R = &g->r[r];
  if (R->state == 2)
    return puts_(g, out, "(?:") && put(g, out, R->text, R->text_len) && puts_(g, out, ")");
  int on = 0;
  for (int k = 0; k < g->nstack; k++)
    on += g->stack[k] == r;
  if (on) {
    g->ctx++; /* the text being made depends on where it stands */
    if (on >= GB_MAX_NEST)
      return puts_(g, out, "[^\\U00000000-\\U0010FFFF]");
  }
  const long ctx0 = g->ctx;
  buf b = {0};
  bool ok = render_rule(g, r, &b) && puts_(g, out, "(?:") && put(g, out, b.p, b.n) && puts_(g, out, ")");
  R = &g->r[r];
  if (ok && !on && g->ctx == ctx0) {
    R->text = b.p;
    R->text_len = b.n;
    R->state = 2;
  } else {
    free(b.p);
  }
  return ok;
}

mimo_status mimo_gbnf_to_regex(const char *src, size_t len, char **regex) {
  *regex = NULL;
  gb g = {.src = src, .len = len};
  g.stack = calloc(GB_MAX_DEPTH + 2, sizeof *g.stack);
  if (!g.stack)
    return mimo_errf(MIMO_E_NOMEM, "grammar");
  if (tokenize(&g) == MIMO_OK && split_rules(&g) == MIMO_OK) {
    const int root = find_rule(&g, "root", 4);
    if (root < 0)
      gb_fail(&g, 0, "no rule named root (the whole output)", NULL);
    else {
      buf b = {0};
      if (render_rule(&g, root, &b))
        for (int i = 0; i < g.nr && g.st == MIMO_OK; i++) { /* the rules root does not use are checked too */
          buf u = {0};
          if (g.r[i].state != 2 && i != root)
            render_rule(&g, i, &u);
          free(u.p);
        }
      if (g.st == MIMO_OK)
        *regex = b.p;
      else
        free(b.p);
    }
  }
  for (int i = 0; i < g.nr; i++)
    free(g.r[i].text);
  free(g.r);
  free(g.t);
  free(g.stack);
  return g.st;
}
