/* Regular expressions to byte DFAs (regex_dfa.h): pattern -> syntax tree over code point sets -> Thompson NFA over
 * bytes (each set's code points as UTF-8 byte-range sequences) -> DFA by subset construction -> dead ends cut. */
#include "text/regex_dfa.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MAX_CP 0x10FFFF
#define MAX_REPEAT 1000
#define MAX_NFA (1 << 18)
#define MAX_WORK MIMO_RE_WORK /* NFA states visited while building the DFA (about half a second at most) */

/* ---- code point sets: sorted, disjoint, non-adjacent ranges ---- */

typedef struct {
  uint32_t (*r)[2];
  int n, cap;
} cpset;

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

typedef enum { N_SET, N_CAT, N_ALT, N_REP } nkind;

typedef struct rnode {
  nkind k;
  cpset set;              /* N_SET */
  struct rnode **kids;    /* N_CAT, N_ALT (any count; an empty CAT matches the empty string), N_REP: one */
  int n_kids, cap_kids;
  int min, max;           /* N_REP; max < 0: no bound */
} rnode;

static void node_free(rnode *n) {
  if (!n)
    return;
  for (int i = 0; i < n->n_kids; i++)
    node_free(n->kids[i]);
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
      node_free(c);
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
    node_free(n);
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
      node_free(n);
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
      node_free(a);
      return fail(ps, "a repeat's maximum is below its minimum");
    }
    if (min > MAX_REPEAT || max > MAX_REPEAT) {
      node_free(a);
      return fail(ps, "a repeat count over 1000");
    }
    if (peek(ps) == '?') /* lazy: the same strings */
      ps->at++;
    else if (peek(ps) == '+') {
      node_free(a);
      return fail(ps, "possessive repeats are not supported");
    }
    c = peek(ps);
    if (c == '*' || c == '+' || c == '?' || (c == '{' && ps->at + 1 < ps->len && ps->p[ps->at + 1] >= '0' &&
                                             ps->p[ps->at + 1] <= '9')) {
      node_free(a);
      return fail(ps, "multiple repeat");
    }
    rnode *r = node_new(N_REP);
    if (!r || !node_add(r, a)) {
      node_free(r);
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
      node_free(cat);
      return fail(ps, "out of memory");
    }
  }
  return cat;
}

static rnode *parse_alt(parser *ps) {
  rnode *alt = node_new(N_ALT);
  if (!alt || !node_add(alt, parse_cat(ps))) {
    node_free(alt);
    return fail(ps, "out of memory");
  }
  while (peek(ps) == '|') {
    ps->at++;
    if (!node_add(alt, parse_cat(ps))) {
      node_free(alt);
      return fail(ps, "out of memory");
    }
  }
  return alt;
}

/* ---- NFA over bytes ---- */

typedef struct {
  int *eps;        /* epsilon edges */
  int n_eps, cap_eps;
  uint8_t lo, hi;  /* one byte-range edge to `to` (to < 0: none) */
  int to;
} nstate;

typedef struct {
  nstate *s;
  int n, cap;
  bool full;
} nfa;

static int nfa_new(nfa *a) {
  if (a->n == a->cap) {
    if (a->cap >= MAX_NFA) {
      a->full = true;
      return -1;
    }
    const int cap = a->cap ? 2 * a->cap : 256;
    nstate *s = realloc(a->s, (size_t)cap * sizeof *s);
    if (!s) {
      a->full = true;
      return -1;
    }
    a->s = s;
    a->cap = cap;
  }
  a->s[a->n] = (nstate){NULL, 0, 0, 0, 0, -1};
  return a->n++;
}

static void eps(nfa *a, int from, int to) {
  if (from < 0 || to < 0)
    return;
  nstate *s = &a->s[from];
  if (s->n_eps == s->cap_eps) {
    const int cap = s->cap_eps ? 2 * s->cap_eps : 2;
    int *e = realloc(s->eps, (size_t)cap * sizeof *e);
    if (!e) {
      a->full = true;
      return;
    }
    s->eps = e;
    s->cap_eps = cap;
  }
  s->eps[s->n_eps++] = to;
}

static void nfa_free(nfa *a) {
  for (int i = 0; i < a->n; i++)
    free(a->s[i].eps);
  free(a->s);
}

/* The byte-sequence form of code points [lo, hi]: each sequence a product of byte ranges, chained from `from` to
 * `to` (UTF-8 range splitting). */
static void utf8_range(nfa *a, uint32_t lo, uint32_t hi, int from, int to) {
  static const uint32_t max_len[4] = {0x7F, 0x7FF, 0xFFFF, MAX_CP};
  for (int i = 0; i < 3; i++)
    if (lo <= max_len[i] && hi > max_len[i]) {
      utf8_range(a, lo, max_len[i], from, to);
      utf8_range(a, max_len[i] + 1, hi, from, to);
      return;
    }
  const int n = lo <= 0x7F ? 1 : lo <= 0x7FF ? 2 : lo <= 0xFFFF ? 3 : 4;
  for (int i = 1; i < n; i++) {
    const uint32_t m = (1u << (6 * i)) - 1;
    if ((lo & ~m) != (hi & ~m)) {
      if (lo & m) {
        utf8_range(a, lo, lo | m, from, to);
        utf8_range(a, (lo | m) + 1, hi, from, to);
        return;
      }
      if ((hi & m) != m) {
        utf8_range(a, lo, (hi & ~m) - 1, from, to);
        utf8_range(a, hi & ~m, hi, from, to);
        return;
      }
    }
  }
  uint8_t el[4], eh[4];
  for (int k = 0; k < 2; k++) {
    const uint32_t cp = k ? hi : lo;
    uint8_t *e = k ? eh : el;
    if (n == 1) {
      e[0] = (uint8_t)cp;
    } else {
      for (int j = n - 1; j > 0; j--)
        e[j] = (uint8_t)(0x80 | ((cp >> (6 * (n - 1 - j))) & 0x3F));
      e[0] = (uint8_t)((0xF00 >> n) | (cp >> (6 * (n - 1))));
    }
  }
  int cur = from;
  for (int j = 0; j < n; j++) {
    const int nx = j == n - 1 ? to : nfa_new(a);
    const int st = nfa_new(a); /* a state per edge: each has room for one range */
    if (nx < 0 || st < 0)
      return;
    eps(a, cur, st);
    a->s[st].lo = el[j];
    a->s[st].hi = eh[j];
    a->s[st].to = nx;
    cur = nx;
  }
}

/* Thompson fragment of n: from `in` to a new end state (returned; -1 when the NFA is full). */
static int build(nfa *a, const rnode *n, int in) {
  if (in < 0)
    return -1;
  switch (n->k) {
  case N_SET: {
    const int out = nfa_new(a);
    for (int i = 0; out >= 0 && i < n->set.n; i++)
      utf8_range(a, n->set.r[i][0], n->set.r[i][1], in, out);
    return out;
  }
  case N_CAT: {
    int cur = in;
    for (int i = 0; i < n->n_kids && cur >= 0; i++)
      cur = build(a, n->kids[i], cur);
    return cur;
  }
  case N_ALT: {
    const int out = nfa_new(a);
    for (int i = 0; i < n->n_kids && out >= 0; i++) {
      const int s = nfa_new(a), e = s >= 0 ? build(a, n->kids[i], s) : -1;
      if (e < 0)
        return -1;
      eps(a, in, s);
      eps(a, e, out);
    }
    return out;
  }
  default: { /* N_REP */
    int cur = in;
    for (int i = 0; i < n->min && cur >= 0; i++)
      cur = build(a, n->kids[0], cur);
    if (cur < 0)
      return -1;
    if (n->max < 0) { /* a loop: cur -> body -> cur, and out */
      const int s = nfa_new(a), out = nfa_new(a);
      const int e = s >= 0 ? build(a, n->kids[0], s) : -1;
      if (e < 0 || out < 0)
        return -1;
      eps(a, cur, s);
      eps(a, cur, out);
      eps(a, e, cur);
      return out;
    }
    const int out = nfa_new(a);
    for (int i = n->min; i < n->max && cur >= 0; i++) { /* each further copy optional */
      const int s = nfa_new(a);
      eps(a, cur, s);
      eps(a, cur, out);
      cur = s >= 0 ? build(a, n->kids[0], s) : -1;
    }
    eps(a, cur, out);
    return cur < 0 ? -1 : out;
  }
  }
}

/* ---- DFA ---- */

struct mimo_re {
  int n, start;
  int32_t *next;   /* [n][256] */
  uint8_t *accept; /* [n] */
};

typedef struct {
  int *items; /* sorted NFA states */
  int n;
  uint64_t hash;
} sset;

static int cmp_int(const void *a, const void *b) {
  const int x = *(const int *)a, y = *(const int *)b;
  return (x > y) - (x < y);
}

/* The epsilon closure of stack[0..n) (distinct states; marked in seen with the stamp) into a sorted set; buf has room
 * for every NFA state. */
static bool closure(const nfa *a, int *stack, int n, int *seen, int stamp, int *buf, sset *out, long *work) {
  int k = 0;
  for (int i = 0; i < n; i++)
    seen[stack[i]] = stamp;
  while (n) {
    const int s = stack[--n];
    buf[k++] = s;
    for (int e = 0; e < a->s[s].n_eps; e++) {
      const int t = a->s[s].eps[e];
      if (seen[t] != stamp) {
        seen[t] = stamp;
        stack[n++] = t;
      }
    }
  }
  *work += k;
  int *items = malloc((size_t)(k ? k : 1) * sizeof *items);
  if (!items)
    return false;
  memcpy(items, buf, (size_t)k * sizeof *items);
  qsort(items, (size_t)k, sizeof *items, cmp_int);
  uint64_t h = 1469598103934665603ull;
  for (int i = 0; i < k; i++)
    h = (h ^ (uint64_t)items[i]) * 1099511628211ull;
  out->items = items;
  out->n = k;
  out->hash = h;
  return true;
}

static mimo_status dfa_build(const nfa *a, int start, int accept, int max_states, long *budget, mimo_re **out) {
  mimo_status st = MIMO_OK;
  const long max_work = *budget;
  long work = 0; /* NFA states visited: a bound on the compile's time */
  sset *sets = NULL;
  int n_sets = 0, cap_sets = 0, hcap = 1024;
  int *htab = malloc((size_t)hcap * sizeof *htab), *stack = malloc((size_t)a->n * sizeof *stack),
      *seen = calloc((size_t)a->n, sizeof *seen), *buf = malloc((size_t)a->n * sizeof *buf), stamp = 0;
  int *edges = malloc((size_t)a->n * sizeof *edges); /* a DFA state's NFA states with a byte edge */
  mimo_re *re = calloc(1, sizeof *re);
  if (!htab || !stack || !seen || !buf || !edges || !re)
    st = mimo_errf(MIMO_E_NOMEM, "regex DFA");
  if (htab)
    memset(htab, -1, (size_t)hcap * sizeof *htab);
  /* interns a closed set; its index, or -1 */
#define INTERN(SET, OUT)                                                                                             \
  do {                                                                                                               \
    int slot_ = (int)((SET).hash & (uint64_t)(hcap - 1)), found_ = -1;                                                \
    for (; htab[slot_] >= 0; slot_ = (slot_ + 1) & (hcap - 1)) {                                                      \
      const sset *o_ = &sets[htab[slot_]];                                                                           \
      if (o_->hash == (SET).hash && o_->n == (SET).n && !memcmp(o_->items, (SET).items, (size_t)o_->n * sizeof(int))) { \
        found_ = htab[slot_];                                                                                        \
        break;                                                                                                       \
      }                                                                                                              \
    }                                                                                                                \
    if (found_ >= 0) {                                                                                               \
      free((SET).items);                                                                                             \
      (OUT) = found_;                                                                                                \
    } else if (n_sets >= max_states) {                                                                               \
      free((SET).items);                                                                                             \
      st = mimo_errf(MIMO_E_INVALID, "regex: the pattern needs more than %d DFA states; simplify it", max_states);   \
      (OUT) = -1;                                                                                                    \
    } else {                                                                                                         \
      if (n_sets == cap_sets) {                                                                                      \
        cap_sets = cap_sets ? 2 * cap_sets : 64;                                                                     \
        sset *ns_ = realloc(sets, (size_t)cap_sets * sizeof *ns_);                                                   \
        int32_t *nx_ = realloc(re->next, (size_t)cap_sets * 256 * sizeof *nx_);                                     \
        if (ns_)                                                                                                     \
          sets = ns_;                                                                                                \
        if (nx_)                                                                                                     \
          re->next = nx_;                                                                                            \
        if (!ns_ || !nx_) {                                                                                          \
          free((SET).items);                                                                                         \
          st = mimo_errf(MIMO_E_NOMEM, "regex DFA");                                                                 \
          (OUT) = -1;                                                                                                \
          break;                                                                                                     \
        }                                                                                                            \
      }                                                                                                              \
      sets[n_sets] = (SET);                                                                                          \
      htab[slot_] = n_sets;                                                                                          \
      (OUT) = n_sets++;                                                                                              \
      if (2 * n_sets > hcap) { /* grow and rehash */                                                                \
        int *nh_ = malloc((size_t)hcap * 2 * sizeof *nh_);                                                           \
        if (!nh_) {                                                                                                  \
          st = mimo_errf(MIMO_E_NOMEM, "regex DFA");                                                                 \
          break;                                                                                                     \
        }                                                                                                            \
        free(htab);                                                                                                  \
        htab = nh_;                                                                                                  \
        hcap *= 2;                                                                                                   \
        memset(htab, -1, (size_t)hcap * sizeof *htab);                                                               \
        for (int q_ = 0; q_ < n_sets; q_++) {                                                                        \
          int s2_ = (int)(sets[q_].hash & (uint64_t)(hcap - 1));                                                     \
          while (htab[s2_] >= 0)                                                                                     \
            s2_ = (s2_ + 1) & (hcap - 1);                                                                            \
          htab[s2_] = q_;                                                                                            \
        }                                                                                                            \
      }                                                                                                              \
    }                                                                                                                \
  } while (0)
  if (st == MIMO_OK) {
    sset s0;
    stack[0] = start;
    if (!closure(a, stack, 1, seen, ++stamp, buf, &s0, &work)) {
      st = mimo_errf(MIMO_E_NOMEM, "regex DFA");
    } else {
      int id;
      INTERN(s0, id);
      re->start = id;
    }
  }
  for (int d = 0; st == MIMO_OK && d < n_sets; d++) {
    int n_edges = 0;
    for (int i = 0; i < sets[d].n; i++)
      if (a->s[sets[d].items[i]].to >= 0)
        edges[n_edges++] = sets[d].items[i];
    /* bytes that every edge either takes or not fall in one class: its targets are found once */
    uint8_t cut[257] = {0};
    for (int i = 0; i < n_edges; i++) {
      cut[a->s[edges[i]].lo] = 1;
      cut[a->s[edges[i]].hi + 1] = 1;
    }
    for (int b0 = 0; b0 < 256 && st == MIMO_OK;) {
      int b1 = b0 + 1;
      while (b1 < 256 && !cut[b1])
        b1++;
      int id = -1, n = 0;
      work += n_edges;
      if (work > max_work) {
        st = mimo_errf(MIMO_E_INVALID, "regex: the pattern is too complex to compile (its automaton grows too fast); "
                       "simplify it");
        break;
      }
      ++stamp; /* the targets of the class's bytes, each once */
      for (int i = 0; i < n_edges; i++) {
        const nstate *ns = &a->s[edges[i]];
        if (b0 >= ns->lo && b0 <= ns->hi && seen[ns->to] != stamp) {
          seen[ns->to] = stamp;
          stack[n++] = ns->to;
        }
      }
      if (n) {
        sset t;
        if (!closure(a, stack, n, seen, ++stamp, buf, &t, &work))
          st = mimo_errf(MIMO_E_NOMEM, "regex DFA");
        else
          INTERN(t, id);
      }
      for (int b = b0; st == MIMO_OK && b < b1; b++)
        re->next[(size_t)d * 256 + b] = id;
      b0 = b1;
    }
  }
#undef INTERN
  if (st == MIMO_OK && !(re->accept = calloc((size_t)n_sets, 1)))
    st = mimo_errf(MIMO_E_NOMEM, "regex DFA");
  for (int d = 0; st == MIMO_OK && d < n_sets; d++)
    for (int i = 0; i < sets[d].n; i++)
      re->accept[d] |= sets[d].items[i] == accept;
  re->n = n_sets;
  /* dead ends: states from which no accepting state is reachable lose their incoming edges */
  uint8_t *live = st == MIMO_OK ? calloc((size_t)n_sets, 1) : NULL;
  if (st == MIMO_OK && !live)
    st = mimo_errf(MIMO_E_NOMEM, "regex DFA");
  for (bool changed = true; st == MIMO_OK && changed;) {
    changed = false;
    for (int d = 0; d < n_sets; d++) {
      if (live[d])
        continue;
      bool l = re->accept[d];
      for (int b = 0; b < 256 && !l; b++) {
        const int t = re->next[(size_t)d * 256 + b];
        l = t >= 0 && live[t];
      }
      if (l)
        live[d] = changed = true;
    }
  }
  for (int d = 0; st == MIMO_OK && d < n_sets; d++)
    for (int b = 0; b < 256; b++) {
      int32_t *t = &re->next[(size_t)d * 256 + b];
      if (*t >= 0 && !live[*t])
        *t = -1;
    }
  if (st == MIMO_OK && !live[re->start])
    st = mimo_errf(MIMO_E_INVALID, "regex: the pattern matches no string");
  free(live);
  *budget = max_work - work;
  for (int i = 0; i < n_sets; i++)
    free(sets[i].items);
  free(sets);
  free(htab);
  free(stack);
  free(seen);
  free(buf);
  free(edges);
  if (st != MIMO_OK) {
    mimo_re_free(re);
    return st;
  }
  *out = re;
  return MIMO_OK;
}

mimo_status mimo_re_compile(const char *pattern, size_t len, int max_states, mimo_re **out) {
  long budget = MAX_WORK;
  return mimo_re_compile_budget(pattern, len, max_states, &budget, out);
}

mimo_status mimo_re_compile_budget(const char *pattern, size_t len, int max_states, long *budget, mimo_re **out) {
  *out = NULL;
  parser ps = {.p = pattern, .len = len};
  if (peek(&ps) == '^')
    ps.at++;
  rnode *root = parse_alt(&ps);
  if (ps.st == MIMO_OK && ps.at < ps.len)
    fail(&ps, "an unbalanced ')'");
  if (ps.st != MIMO_OK) {
    node_free(root);
    return ps.st;
  }
  nfa a = {0};
  const int start = nfa_new(&a), end = build(&a, root, start);
  node_free(root);
  mimo_status st = end < 0 || a.full ? mimo_errf(MIMO_E_INVALID, "regex: the pattern is too large (its repeats "
                                                               "expand past %d NFA states)", MAX_NFA)
                                      : dfa_build(&a, start, end, max_states, budget, out);
  nfa_free(&a);
  return st;
}

void mimo_re_free(mimo_re *re) {
  if (!re)
    return;
  free(re->next);
  free(re->accept);
  free(re);
}

int mimo_re_start(const mimo_re *re) { return re->start; }
int mimo_re_next(const mimo_re *re, int state, unsigned char c) { return re->next[(size_t)state * 256 + c]; }
bool mimo_re_accepts(const mimo_re *re, int state) { return re->accept[state] != 0; }
int mimo_re_states(const mimo_re *re) { return re->n; }
