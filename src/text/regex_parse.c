/* Regular expressions, parsing (regex_dfa.h): the pattern -> a syntax tree over code point sets, for regex_dfa.c to
 * turn into automata. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "text/regex_dfa.h"
#include "text/regex_internal.h"

#define MAX_REPEAT 1000

/* ---- code point sets ---- */

static bool set_add(cpset *s, uint32_t lo, uint32_t hi) {
  if (s->n == s->cap) {
    const int cap = s->cap ? 2 * s->cap : 8;
    uint32_t(*r)[2] = realloc(s->r, (size_t)cap * sizeof *r);
    if (!r)
      return false;
    s->r = r;
    s->cap = cap;
  }
  s->r[s->n][0] = lo;
  s->r[s->n][1] = hi;
  s->n++;
  return true;
}

static int cmp_range(const void *a, const void *b) {
  const uint32_t *x = a, *y = b;
  return (x[0] > y[0]) - (x[0] < y[0]);
}

static void set_normalize(cpset *s) {
  if (!s->n)
    return;
  qsort(s->r, (size_t)s->n, sizeof *s->r, cmp_range);
  int k = 0;
  for (int i = 1; i < s->n; i++) {
    if (s->r[i][0] <= s->r[k][1] + 1) {
      if (s->r[i][1] > s->r[k][1])
        s->r[k][1] = s->r[i][1];
    } else {
      s->r[++k][0] = s->r[i][0];
      s->r[k][1] = s->r[i][1];
    }
  }
  s->n = k + 1;
}

/* The complement within the scalar values (no surrogates). */
static bool set_negate(cpset *s) {
  set_normalize(s);
  cpset t = {0};
  uint32_t next = 0;
  bool ok = true;
  for (int i = 0; i < s->n && ok; i++) {
    if (s->r[i][0] > next)
      ok = set_add(&t, next, s->r[i][0] - 1);
    next = s->r[i][1] + 1;
  }
  if (ok && next <= MAX_CP)
    ok = set_add(&t, next, MAX_CP);
  free(s->r);
  *s = t;
  return ok;
}

/* Without the surrogates, which UTF-8 cannot carry. */
static bool set_no_surrogates(cpset *s) {
  set_normalize(s);
  cpset t = {0};
  bool ok = true;
  for (int i = 0; i < s->n && ok; i++) {
    uint32_t lo = s->r[i][0], hi = s->r[i][1];
    if (hi < 0xD800 || lo > 0xDFFF) {
      ok = set_add(&t, lo, hi);
      continue;
    }
    if (lo < 0xD800)
      ok = set_add(&t, lo, 0xD7FF);
    if (ok && hi > 0xDFFF)
      ok = set_add(&t, 0xE000, hi);
  }
  free(s->r);
  *s = t;
  return ok;
}

/* ---- syntax tree ---- */


void mimo_re_node_free(rnode *n) {
  if (!n)
    return;
  for (int i = 0; i < n->n_kids; i++)
    mimo_re_node_free(n->kids[i]);
  free(n->kids);
  free(n->set.r);
  free(n);
}

static rnode *node_new(nkind k) {
  rnode *n = calloc(1, sizeof *n);
  if (n)
    n->k = k;
  return n;
}

static bool node_add(rnode *p, rnode *c) {
  if (!c)
    return false;
  if (p->n_kids == p->cap_kids) {
    const int cap = p->cap_kids ? 2 * p->cap_kids : 4;
    rnode **k = realloc(p->kids, (size_t)cap * sizeof *k);
    if (!k) {
      mimo_re_node_free(c);
      return false;
    }
    p->kids = k;
    p->cap_kids = cap;
  }
  p->kids[p->n_kids++] = c;
  return true;
}

typedef struct {
  const char *p;
  size_t len, at;
  int depth;
  mimo_status st; /* the first error */
} parser;

static rnode *fail(parser *ps, const char *why) {
  if (ps->st == MIMO_OK)
    ps->st = mimo_errf(MIMO_E_INVALID, "regex: %s at position %zu", why, ps->at);
  return NULL;
}

static int peek(const parser *ps) { return ps->at < ps->len ? (unsigned char)ps->p[ps->at] : -1; }

/* One UTF-8 code point of the pattern (invalid UTF-8: -1). */
static long next_cp(parser *ps) {
  const unsigned char *s = (const unsigned char *)ps->p + ps->at;
  const size_t left = ps->len - ps->at;
  unsigned c = s[0];
  int n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
  if (!n || (size_t)n > left)
    return -1;
  uint32_t cp = n == 1 ? c : c & (0x7F >> n);
  for (int i = 1; i < n; i++) {
    if ((s[i] & 0xC0) != 0x80)
      return -1;
    cp = cp << 6 | (s[i] & 0x3F);
  }
  static const uint32_t min_of[5] = {0, 0, 0x80, 0x800, 0x10000};
  if (cp < min_of[n] || cp > MAX_CP || (cp >= 0xD800 && cp <= 0xDFFF))
    return -1;
  ps->at += (size_t)n;
  return (long)cp;
}

static bool add_class(cpset *s, int which) { /* \d \w \s (ASCII, as re.ASCII) */
  switch (which) {
  case 'd': return set_add(s, '0', '9');
  case 'w': return set_add(s, '0', '9') && set_add(s, 'A', 'Z') && set_add(s, 'a', 'z') && set_add(s, '_', '_');
  default: return set_add(s, '\t', '\r') && set_add(s, ' ', ' ');
  }
}

static long hex_digits(parser *ps, int n) {
  long v = 0;
  for (int i = 0; i < n; i++) {
    const int c = peek(ps);
    const int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
    if (d < 0)
      return -1;
    v = v * 16 + d;
    ps->at++;
  }
  return v;
}

/* After a backslash: a code point (>= 0), or a class letter as -'d' etc., or -1 after an error. in_class: \b is a
 * backspace there. */
static long escape(parser *ps, bool in_class) {
  const int c = peek(ps);
  if (c < 0) {
    fail(ps, "a pattern may not end with a backslash");
    return -1;
  }
  ps->at++;
  switch (c) {
  case 'd': case 'D': case 'w': case 'W': case 's': case 'S': return -(long)c;
  case 'n': return '\n';
  case 't': return '\t';
  case 'r': return '\r';
  case 'f': return '\f';
  case 'v': return '\v';
  case 'a': return 7;
  case '0': return 0;
  case 'x': case 'u': case 'U': {
    const long v = hex_digits(ps, c == 'x' ? 2 : c == 'u' ? 4 : 8);
    if (v < 0 || v > MAX_CP || (v >= 0xD800 && v <= 0xDFFF)) {
      fail(ps, "a bad \\x, \\u or \\U escape");
      return -1;
    }
    return v;
  }
  case 'b':
    if (in_class)
      return 8;
    /* fall through */
  default:
    if (c >= '1' && c <= '9') {
      fail(ps, "backreferences are not supported (a DFA cannot match them)");
      return -1;
    }
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) {
      ps->at--;
      fail(ps, "this escape is not supported (word boundaries, \\A, \\Z and named characters are not)");
      return -1;
    }
    if (c >= 0x80) { /* an escaped non-ASCII character is itself */
      ps->at--;
      const long cp = next_cp(ps);
      if (cp < 0)
        fail(ps, "invalid UTF-8");
      return cp;
    }
    return c;
  }
}

static rnode *set_node(cpset s, parser *ps) {
  rnode *n = node_new(N_SET);
  if (!n || !set_no_surrogates(&s)) {
    free(s.r);
    mimo_re_node_free(n);
    return fail(ps, "out of memory");
  }
  n->set = s;
  return n;
}

static rnode *parse_class(parser *ps) {
  cpset s = {0};
  bool neg = false, ok = true;
  if (peek(ps) == '^') {
    neg = true;
    ps->at++;
  }
  for (bool first = true; ok; first = false) {
    int c = peek(ps);
    if (c < 0) {
      free(s.r);
      return fail(ps, "a class [...] is not closed");
    }
    if (c == ']' && !first) {
      ps->at++;
      break;
    }
    long lo;
    if (c == '\\') {
      ps->at++;
      lo = escape(ps, true);
      if (lo < -1) {
        const int w = (int)-lo;
        cpset t = {0};
        ok = add_class(&t, w | 0x20) && (w & 0x20 || set_negate(&t));
        for (int i = 0; ok && i < t.n; i++)
          ok = set_add(&s, t.r[i][0], t.r[i][1]);
        free(t.r);
        continue;
      }
    } else {
      lo = next_cp(ps);
      if (lo < 0)
        fail(ps, "invalid UTF-8");
    }
    if (lo < 0) {
      free(s.r);
      return NULL;
    }
    long hi = lo;
    if (peek(ps) == '-' && ps->at + 1 < ps->len && ps->p[ps->at + 1] != ']') {
      ps->at++;
      if (peek(ps) == '\\') {
        ps->at++;
        hi = escape(ps, true);
        if (hi < -1)
          fail(ps, "a range cannot end in a class escape");
      } else {
        hi = next_cp(ps);
        if (hi < 0)
          fail(ps, "invalid UTF-8");
      }
      if (hi >= 0 && hi < lo)
        fail(ps, "a range goes backwards");
      if (ps->st != MIMO_OK) {
        free(s.r);
        return NULL;
      }
    }
    ok = set_add(&s, (uint32_t)lo, (uint32_t)hi);
  }
  if (!ok || (neg && !set_negate(&s))) {
    free(s.r);
    return fail(ps, "out of memory");
  }
  return set_node(s, ps);
}

static rnode *parse_alt(parser *ps);

static rnode *parse_atom(parser *ps) {
  const int c = peek(ps);
  if (c == '(') {
    ps->at++;
    if (peek(ps) == '?') {
      ps->at++;
      const int d = peek(ps);
      if (d == ':') {
        ps->at++;
      } else if (d == 'P' && ps->at + 1 < ps->len && ps->p[ps->at + 1] == '<') {
        while (ps->at < ps->len && ps->p[ps->at] != '>')
          ps->at++;
        if (ps->at >= ps->len)
          return fail(ps, "a group name is not closed");
        ps->at++;
      } else {
        return fail(ps, "lookaround, inline flags, backreferences and comments are not supported");
      }
    }
    if (++ps->depth > 200)
      return fail(ps, "groups nested too deep");
    rnode *n = parse_alt(ps);
    ps->depth--;
    if (!n)
      return NULL;
    if (peek(ps) != ')') {
      mimo_re_node_free(n);
      return fail(ps, "a group ( is not closed");
    }
    ps->at++;
    return n;
  }
  if (c == '[') {
    ps->at++;
    return parse_class(ps);
  }
  cpset s = {0};
  bool ok;
  if (c == '.') {
    ps->at++;
    ok = set_add(&s, '\n', '\n') && set_negate(&s);
  } else if (c == '\\') {
    ps->at++;
    const long e = escape(ps, false);
    if (e == -1)
      return NULL;
    ok = e >= 0 ? set_add(&s, (uint32_t)e, (uint32_t)e) : add_class(&s, (int)-e | 0x20) && (-e & 0x20 || set_negate(&s));
  } else if (c == '*' || c == '+' || c == '?') {
    return fail(ps, "nothing to repeat");
  } else if (c == '^' || c == '$') {
    return fail(ps, "'^' and '$' may stand only at the very start and end of the pattern");
  } else {
    const long cp = next_cp(ps);
    if (cp < 0)
      return fail(ps, "invalid UTF-8");
    ok = set_add(&s, (uint32_t)cp, (uint32_t)cp);
  }
  if (!ok) {
    free(s.r);
    return fail(ps, "out of memory");
  }
  return set_node(s, ps);
}

/* {m}, {m,}, {,n}, {m,n} at ps->at: true with the bounds (max -1: none), or false (then '{' is a literal, as in
 * Python) with ps->at unchanged. */
static bool braces(parser *ps, int *min, int *max) {
  size_t i = ps->at + 1;
  long a = -1, b = -1;
  for (long v = 0; i < ps->len && ps->p[i] >= '0' && ps->p[i] <= '9'; i++)
    a = v = v * 10 + (ps->p[i] - '0') > 100000 ? 100000 : v * 10 + (ps->p[i] - '0');
  bool comma = i < ps->len && ps->p[i] == ',';
  if (comma)
    for (i++, b = -2; i < ps->len && ps->p[i] >= '0' && ps->p[i] <= '9'; i++)
      b = (b < 0 ? 0 : b) * 10 + (ps->p[i] - '0') > 100000 ? 100000 : (b < 0 ? 0 : b) * 10 + (ps->p[i] - '0');
  if (i >= ps->len || ps->p[i] != '}' || (a < 0 && !comma))
    return false;
  *min = a < 0 ? 0 : (int)a;
  *max = !comma ? *min : b == -2 ? -1 : (int)b;
  ps->at = i + 1;
  return true;
}

static rnode *parse_repeat(parser *ps) {
  rnode *a = parse_atom(ps);
  while (a) {
    int c = peek(ps), min, max;
    if (c == '*')
      min = 0, max = -1, ps->at++;
    else if (c == '+')
      min = 1, max = -1, ps->at++;
    else if (c == '?')
      min = 0, max = 1, ps->at++;
    else if (c == '{' && braces(ps, &min, &max))
      ;
    else
      break;
    if (max >= 0 && max < min) {
      mimo_re_node_free(a);
      return fail(ps, "a repeat's maximum is below its minimum");
    }
    if (min > MAX_REPEAT || max > MAX_REPEAT) {
      mimo_re_node_free(a);
      return fail(ps, "a repeat count over 1000");
    }
    if (peek(ps) == '?') /* lazy: the same strings */
      ps->at++;
    else if (peek(ps) == '+') {
      mimo_re_node_free(a);
      return fail(ps, "possessive repeats are not supported");
    }
    c = peek(ps);
    if (c == '*' || c == '+' || c == '?' || (c == '{' && ps->at + 1 < ps->len && ps->p[ps->at + 1] >= '0' &&
                                             ps->p[ps->at + 1] <= '9')) {
      mimo_re_node_free(a);
      return fail(ps, "multiple repeat");
    }
    rnode *r = node_new(N_REP);
    if (!r || !node_add(r, a)) {
      mimo_re_node_free(r);
      return fail(ps, "out of memory");
    }
    r->min = min;
    r->max = max;
    a = r;
  }
  return a;
}

static rnode *parse_cat(parser *ps) {
  rnode *cat = node_new(N_CAT);
  if (!cat)
    return fail(ps, "out of memory");
  for (int c = peek(ps); c >= 0 && c != '|' && c != ')'; c = peek(ps)) {
    if (c == '$' && ps->at + 1 == ps->len) { /* at the very end: fullmatch ends there anyway */
      ps->at++;
      break;
    }
    if (!node_add(cat, parse_repeat(ps))) {
      mimo_re_node_free(cat);
      return fail(ps, "out of memory");
    }
  }
  return cat;
}

static rnode *parse_alt(parser *ps) {
  rnode *alt = node_new(N_ALT);
  if (!alt || !node_add(alt, parse_cat(ps))) {
    mimo_re_node_free(alt);
    return fail(ps, "out of memory");
  }
  while (peek(ps) == '|') {
    ps->at++;
    if (!node_add(alt, parse_cat(ps))) {
      mimo_re_node_free(alt);
      return fail(ps, "out of memory");
    }
  }
  return alt;
}

rnode *mimo_re_parse(const char *pattern, size_t len, mimo_status *st) {
  parser ps = {.p = pattern, .len = len};
  if (peek(&ps) == '^')
    ps.at++;
  rnode *root = parse_alt(&ps);
  if (ps.st == MIMO_OK && ps.at < ps.len)
    fail(&ps, "an unbalanced ')'");
  *st = ps.st;
  if (ps.st != MIMO_OK) {
    mimo_re_node_free(root);
    return NULL;
  }
  return root;
}
