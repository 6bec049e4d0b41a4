/* Regular expressions to byte DFAs (regex_dfa.h): pattern -> syntax tree over code point sets (regex_parse.c) ->
 * Thompson NFA over bytes (each set's code points as UTF-8 byte-range sequences) -> DFA by subset construction ->
 * dead ends cut. */
#include "text/regex_dfa.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "text/regex_internal.h"

#define MAX_NFA (1 << 18)
#define MAX_WORK MIMO_RE_WORK /* NFA states visited while building the DFA (about half a second at most) */

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
  mimo_status pst;
  rnode *root = mimo_re_parse(pattern, len, &pst);
  if (!root)
    return pst;
  nfa a = {0};
  const int start = nfa_new(&a), end = build(&a, root, start);
  mimo_re_node_free(root);
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
