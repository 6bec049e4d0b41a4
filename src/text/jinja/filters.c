/* Filters and tests (jinja2 3.1 built-ins, with HF's json.dumps-based tojson). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "text/jinja/internal.h"

jv jj_arg(jj_ctx *c, jj_args *a, int pos, const char *kw, jv dflt, bool *given) {
  (void)c;
  if (given) *given = true;
  if (pos >= 0 && pos < a->npos) return a->pos[pos];
  for (int i = 0; kw && i < a->nkw; i++)
    if (!strcmp(a->kwn[i], kw)) return a->kwv[i];
  if (given) *given = false;
  return dflt;
}

void jj_args_done(jj_ctx *c, jj_args *a, int maxpos, const char *what) {
  if (a->npos > maxpos) jj_fail(c, "%s() takes at most %d positional argument(s)", what, maxpos);
}

static jv S(const char *s) { return jv_str(s, strlen(s)); }

static jj_list *iter_nonundef(jj_ctx *c, jv v) { return jj_iter(c, v); }

static int64_t py_len(jj_ctx *c, jv v) {
  switch (v.t) {
  case V_STR: return (int64_t)jj_utf8_len(v.s, v.n);
  case V_LIST: case V_TUPLE: return (int64_t)v.l->n;
  case V_DICT: case V_NS: return (int64_t)v.d->n;
  case V_UNDEF: return 0;
  default: jj_fail(c, "object of type '%s' has no len()", jv_typename(v));
  }
}

/* attribute path "a.b.0" lookup as jinja2's make_attrgetter (getitem per part) */
static jv attr_path(jj_ctx *c, jv v, jv attr) {
  if (attr.t != V_STR) return jj_getitem(c, v, attr);
  const char *s = attr.s, *e = attr.s + attr.n;
  while (s <= e) {
    const char *d = memchr(s, '.', (size_t)(e - s));
    if (!d) d = e;
    size_t n = (size_t)(d - s);
    bool digits = n > 0;
    for (size_t i = 0; i < n; i++) digits = digits && s[i] >= '0' && s[i] <= '9';
    jv key = digits ? jv_int(strtoll(s, NULL, 10)) : jv_str(s, n);
    v = jj_getitem(c, v, key);
    s = d + 1;
  }
  return v;
}

/* ---- case helpers (ASCII + Latin-1/Greek/Cyrillic simple mappings) ---- */
static uint32_t cp_upper(uint32_t c) {
  if (c >= 'a' && c <= 'z') return c - 32;
  if ((c >= 0xe0 && c <= 0xfe && c != 0xf7)) return c - 32;
  if (c == 0xff) return 0x178;
  if (c >= 0x3b1 && c <= 0x3c9 && c != 0x3c2) return c - 32;
  if (c >= 0x430 && c <= 0x44f) return c - 32;
  if (c >= 0x450 && c <= 0x45f) return c - 80;
  if (c >= 0x100 && c <= 0x17f && (c & 1) && c != 0x131 && c != 0x138 && c != 0x149 && c != 0x17f &&
      !(c >= 0x139 && c <= 0x148))
    return c - 1;
  return c;
}
static uint32_t cp_lower(uint32_t c) {
  if (c >= 'A' && c <= 'Z') return c + 32;
  if (c >= 0xc0 && c <= 0xde && c != 0xd7) return c + 32;
  if (c >= 0x391 && c <= 0x3a9 && c != 0x3a2) return c + 32;
  if (c >= 0x410 && c <= 0x42f) return c + 32;
  if (c >= 0x400 && c <= 0x40f) return c + 80;
  if (c >= 0x100 && c <= 0x17f && !(c & 1) && c != 0x130 && c != 0x138 && !(c >= 0x139 && c <= 0x148)) return c + 1;
  return c;
}
bool jj_cp_isupper(uint32_t c) { return cp_lower(c) != c; }
bool jj_cp_islower(uint32_t c) { return cp_upper(c) != c || c == 0xdf; }

/* mode: 0 lower, 1 upper, 2 capitalize, 3 title (jinja2's word split), 4 swapcase, 5 python str.title */
jv jj_case(jj_ctx *c, jv s, int mode) {
  jj_buf b;
  jb_init(&b, c->a);
  bool first = true, prev_cased = false;
  for (size_t i = 0; i < s.n;) {
    uint32_t cp = (uint32_t)jj_utf8_dec(s.s, s.n, &i);
    uint32_t o = cp;
    switch (mode) {
    case 0: o = cp_lower(cp); break;
    case 1: o = cp_upper(cp); break;
    case 2: o = first ? cp_upper(cp) : cp_lower(cp); break;
    case 3: {
      bool sep = cp == '-' || jj_py_space(cp) || cp == '(' || cp == '{' || cp == '[' || cp == '<';
      o = sep ? cp : (first ? cp_upper(cp) : cp_lower(cp));
      first = sep;
      jj_utf8_enc(&b, o);
      continue;
    }
    case 4: o = jj_cp_isupper(cp) ? cp_lower(cp) : cp_upper(cp); break;
    case 5: {
      bool cased = jj_cp_isupper(cp) || jj_cp_islower(cp);
      o = cased ? (prev_cased ? cp_lower(cp) : cp_upper(cp)) : cp;
      prev_cased = cased;
      jj_utf8_enc(&b, o);
      continue;
    }
    }
    first = false;
    jj_utf8_enc(&b, o);
  }
  return jb_val(&b);
}

/* Python str.strip(chars) family: which = 1 left, 2 right, 3 both */
jv jj_strip(jj_ctx *c, jv s, jv chars, int which) {
  if (chars.t != V_NONE && chars.t != V_UNDEF && chars.t != V_STR)
    jj_fail(c, "strip arg must be None or str");
  bool ws = chars.t != V_STR;
  size_t st = 0, en = s.n, i = 0;
  /* left */
  if (which & 1) {
    while (i < s.n) {
      size_t p = i;
      uint32_t cp = (uint32_t)jj_utf8_dec(s.s, s.n, &i);
      bool hit = ws ? jj_py_space(cp) : false;
      if (!ws) {
        for (size_t k = 0; k < chars.n;) {
          if ((uint32_t)jj_utf8_dec(chars.s, chars.n, &k) == cp) { hit = true; break; }
        }
      }
      if (!hit) { i = p; break; }
    }
    st = i;
  }
  if (which & 2) {
    size_t last = st;
    i = st;
    while (i < s.n) {
      uint32_t cp = (uint32_t)jj_utf8_dec(s.s, s.n, &i);
      bool hit = ws ? jj_py_space(cp) : false;
      if (!ws)
        for (size_t k = 0; k < chars.n;)
          if ((uint32_t)jj_utf8_dec(chars.s, chars.n, &k) == cp) { hit = true; break; }
      if (!hit) last = i;
    }
    en = last;
  }
  jv r = jv_str(s.s + st, en - st);
  return r;
}

static jv tup2(jj_ctx *c, jv a, jv b) {
  jv t = jv_list(c->a, 2);
  t.l->v[0] = a;
  t.l->v[1] = b;
  t.l->n = 2;
  t.t = V_TUPLE;
  return t;
}

/* ---- sorting (stable merge sort; comparisons may raise) ---- */
typedef struct sortkey { jv key, val; } sortkey;

static jv casefold_key(jj_ctx *c, jv v, bool cs) {
  return (!cs && v.t == V_STR) ? jj_case(c, v, 0) : v;
}

static void msort(jj_ctx *c, sortkey *a, sortkey *tmp, size_t n, bool rev) {
  if (n < 2) return;
  size_t m = n / 2;
  msort(c, a, tmp, m, rev);
  msort(c, a + m, tmp, n - m, rev);
  size_t i = 0, j = m, k = 0;
  while (i < m && j < n) {
    int r = jj_compare(c, a[j].key, a[i].key);
    bool take_right = rev ? r > 0 : r < 0;
    tmp[k++] = take_right ? a[j++] : a[i++];
  }
  while (i < m) tmp[k++] = a[i++];
  while (j < n) tmp[k++] = a[j++];
  jj_memcpy(a, tmp, n * sizeof *a);
}

static jv sorted(jj_ctx *c, jj_list *l, bool rev, bool cs, jv attr, int by) {
  sortkey *a = jj_alloc(c->a, (l->n + 1) * sizeof *a), *tmp = jj_alloc(c->a, (l->n + 1) * sizeof *a);
  for (size_t i = 0; i < l->n; i++) {
    jv k = l->v[i];
    if (by >= 0) k = k.l->v[by];
    else if (attr.t != V_NONE && attr.t != V_UNDEF) k = attr_path(c, k, attr);
    a[i].key = casefold_key(c, k, cs);
    a[i].val = l->v[i];
  }
  msort(c, a, tmp, l->n, rev);
  jv r = jv_list(c->a, l->n);
  for (size_t i = 0; i < l->n; i++) r.l->v[i] = a[i].val;
  r.l->n = l->n;
  return r;
}

static jv escape_html(jj_ctx *c, jv s) {
  jj_buf b;
  jb_init(&b, c->a);
  for (size_t i = 0; i < s.n; i++) {
    switch (s.s[i]) {
    case '&': jb_puts(&b, "&amp;"); break;
    case '<': jb_puts(&b, "&lt;"); break;
    case '>': jb_puts(&b, "&gt;"); break;
    case '\'': jb_puts(&b, "&#39;"); break;
    case '"': jb_puts(&b, "&#34;"); break;
    default: jb_putc(&b, s.s[i]);
    }
  }
  jv r = jb_val(&b);
  r.flags = VF_SAFE;
  return r;
}

/* Python int(str) / float(str) parsing; false when not a number */
static bool parse_int(jv s, int base, int64_t *out) {
  char tmp[80];
  size_t k = 0;
  jv t = s;
  size_t i = 0;
  while (i < t.n && (t.s[i] == ' ' || (t.s[i] >= 9 && t.s[i] <= 13))) i++;
  size_t e = t.n;
  while (e > i && (t.s[e - 1] == ' ' || (t.s[e - 1] >= 9 && t.s[e - 1] <= 13))) e--;
  if (e - i == 0 || e - i >= sizeof tmp) return false;
  for (size_t j = i; j < e; j++) {
    if (t.s[j] == '_') {
      if (j == i || j + 1 == e || t.s[j + 1] == '_') return false;
      continue;
    }
    tmp[k++] = t.s[j];
  }
  tmp[k] = 0;
  char *end;
  const char *p = tmp;
  if (base == 10 && (p[0] == '+' || p[0] == '-') ? !(p[1] >= '0' && p[1] <= '9') : (base == 10 && !(p[0] >= '0' && p[0] <= '9') && p[0] != '+' && p[0] != '-'))
    return false;
  long long v = strtoll(tmp, &end, base);
  if (*end) return false;
  *out = v;
  return true;
}

static bool parse_float(jv s, double *out) {
  char tmp[80];
  size_t i = 0, e = s.n, k = 0;
  while (i < e && (s.s[i] == ' ' || (s.s[i] >= 9 && s.s[i] <= 13))) i++;
  while (e > i && (s.s[e - 1] == ' ' || (s.s[e - 1] >= 9 && s.s[e - 1] <= 13))) e--;
  if (e == i || e - i >= sizeof tmp) return false;
  for (size_t j = i; j < e; j++)
    if (s.s[j] != '_') tmp[k++] = s.s[j];
  tmp[k] = 0;
  if (strchr(tmp, 'x') || strchr(tmp, 'X')) return false;
  char *end;
  *out = strtod(tmp, &end);
  return *end == 0;
}

static jv to_list(jj_ctx *c, jv v) {
  jj_list *l = iter_nonundef(c, v);
  jv r = jv_list(c->a, l->n);
  jj_memcpy(r.l->v, l->v, l->n * sizeof(jv));
  r.l->n = l->n;
  return r;
}

static jv select_impl(jj_ctx *c, jv v, jj_args *a, bool attr, bool want) {
  jj_list *l = jj_iter(c, v);
  int off = 0;
  jv attrname = JV_NONE;
  if (attr) {
    if (a->npos < 1) jj_fail(c, "missing attribute argument");
    attrname = a->pos[0];
    off = 1;
  }
  const char *test = NULL;
  if (a->npos > off) {
    jv t = a->pos[off];
    if (t.t != V_STR) jj_fail(c, "test name must be a string");
    test = jj_strndup(c->a, t.s, t.n);
    if (!jj_test_exists(test)) jj_fail(c, "No test named '%s'.", test);
  }
  jj_args ta = {a->pos + off + 1, a->npos > off + 1 ? a->npos - off - 1 : 0, a->kwn, a->kwv, a->nkw};
  jv r = jv_list(c->a, l->n);
  for (size_t i = 0; i < l->n; i++) {
    jv x = attr ? attr_path(c, l->v[i], attrname) : l->v[i];
    bool ok = test ? jj_apply_test(c, test, x, &ta) : jv_truthy(x);
    if (ok == want) r.l->v[r.l->n++] = l->v[i];
  }
  return r;
}

static jv minmax(jj_ctx *c, jv v, jj_args *a, bool want_max) {
  jj_list *l = jj_iter(c, v);
  bool cs = jv_truthy(jj_arg(c, a, 0, "case_sensitive", jv_bool(false), NULL));
  jv attr = jj_arg(c, a, 1, "attribute", JV_NONE, NULL);
  if (!l->n) return jv_undef_named("No aggregated item, sequence was empty.");
  jv best = l->v[0];
  jv bk = casefold_key(c, attr.t == V_NONE ? best : attr_path(c, best, attr), cs);
  for (size_t i = 1; i < l->n; i++) {
    jv k = casefold_key(c, attr.t == V_NONE ? l->v[i] : attr_path(c, l->v[i], attr), cs);
    int r = jj_compare(c, k, bk);
    if (want_max ? r > 0 : r < 0) {
      best = l->v[i];
      bk = k;
    }
  }
  return best;
}

static jv do_indent(jj_ctx *c, jv s, jj_args *a) {
  jv w = jj_arg(c, a, 0, "width", jv_int(4), NULL);
  bool first = jv_truthy(jj_arg(c, a, 1, "first", jv_bool(false), NULL));
  bool blank = jv_truthy(jj_arg(c, a, 2, "blank", jv_bool(false), NULL));
  jv ind;
  if (w.t == V_STR) ind = w;
  else {
    jv sp = S(" ");
    ind = jj_binop(c, OP_MUL, sp, w);
  }
  jv text = jj_binop(c, OP_ADD, jj_to_str(c, s), S("\n"));
  jv lines = jj_call_method(c, text, "splitlines", &(jj_args){0});
  jj_buf b;
  jb_init(&b, c->a);
  jj_list *L = lines.l;
  for (size_t i = 0; i < L->n; i++) {
    if (i) jb_putc(&b, '\n');
    jv ln = L->v[i];
    if (i > 0 && (blank || ln.n)) jb_put(&b, ind.s, ind.n);
    jb_put(&b, ln.s, ln.n);
  }
  jv r = jb_val(&b);
  if (first) r = jj_binop(c, OP_ADD, ind, r);
  return r;
}

static double round_half_even(double x, int64_t prec) {
  char tmp[400];
  if (prec > 300 || prec < -300 || !isfinite(x)) return x;
  if (prec >= 0) {
    snprintf(tmp, sizeof tmp, "%.*f", (int)prec, x);
    return strtod(tmp, NULL);
  }
  double p = pow(10, (double)-prec);
  double y = x / p, r = nearbyint(y);
  return r * p;
}

jv jj_apply_filter(jj_ctx *c, const char *f, jv v, jj_args *a) {
  bool given;
  if (!strcmp(f, "safe")) {
    v = jj_to_str(c, v);
    v.flags |= VF_SAFE;
    return v;
  }
  if (!strcmp(f, "string")) return jj_to_str(c, v);
  if (!strcmp(f, "tojson")) {
    jv ind = jj_arg(c, a, 0, "indent", JV_NONE, NULL);
    jv seps = jj_arg(c, a, 1, "separators", JV_NONE, NULL);
    bool sk = jv_truthy(jj_arg(c, a, 2, "sort_keys", jv_bool(false), NULL));
    jv ea = jj_arg(c, a, -1, "ensure_ascii", jv_bool(false), NULL);
    if (jv_truthy(ea)) jj_fail(c, "tojson: ensure_ascii=True is not supported");
    int indent = -1;
    if (ind.t == V_INT || ind.t == V_BOOL) indent = ind.i < 0 ? 0 : (int)(ind.i > 64 ? 64 : ind.i);
    else if (ind.t != V_NONE) jj_fail(c, "tojson: indent must be an integer");
    const char *is = indent >= 0 ? "," : ", ", *ks = ": ";
    if (seps.t == V_LIST || seps.t == V_TUPLE) {
      if (seps.l->n != 2 || seps.l->v[0].t != V_STR || seps.l->v[1].t != V_STR) jj_fail(c, "tojson: bad separators");
      is = jj_strndup(c->a, seps.l->v[0].s, seps.l->v[0].n);
      ks = jj_strndup(c->a, seps.l->v[1].s, seps.l->v[1].n);
    }
    jj_buf b;
    jb_init(&b, c->a);
    jj_tojson(c, &b, v, indent, is, ks, sk, 0);
    return jb_val(&b);
  }
  if (!strcmp(f, "length") || !strcmp(f, "count")) return jv_int(py_len(c, v));
  if (!strcmp(f, "default") || !strcmp(f, "d")) {
    jv dv = jj_arg(c, a, 0, "default_value", S(""), NULL);
    bool boolean = jv_truthy(jj_arg(c, a, 1, "boolean", jv_bool(false), NULL));
    if (v.t == V_UNDEF || (boolean && !jv_truthy(v))) return dv;
    return v;
  }
  if (!strcmp(f, "trim")) return jj_strip(c, jj_to_str(c, v), jj_arg(c, a, 0, "chars", JV_NONE, NULL), 3);
  if (!strcmp(f, "upper")) return jj_case(c, jj_to_str(c, v), 1);
  if (!strcmp(f, "lower")) return jj_case(c, jj_to_str(c, v), 0);
  if (!strcmp(f, "capitalize")) return jj_case(c, jj_to_str(c, v), 2);
  if (!strcmp(f, "title")) return jj_case(c, jj_to_str(c, v), 3);
  if (!strcmp(f, "items")) {
    if (v.t == V_UNDEF) return jv_list(c->a, 0);
    if (v.t != V_DICT) jj_fail(c, "Can only get item pairs from a mapping.");
    jv r = jv_list(c->a, v.d->n);
    for (size_t i = 0; i < v.d->n; i++) r.l->v[i] = tup2(c, v.d->k[i], v.d->v[i]);
    r.l->n = v.d->n;
    return r;
  }
  if (!strcmp(f, "list")) return to_list(c, v);
  if (!strcmp(f, "join")) {
    jv d = jj_arg(c, a, 0, "d", S(""), NULL);
    jv attr = jj_arg(c, a, 1, "attribute", JV_NONE, NULL);
    jj_list *l = jj_iter(c, v);
    jj_buf b;
    jb_init(&b, c->a);
    jv ds = jj_to_str(c, d);
    for (size_t i = 0; i < l->n; i++) {
      if (i) jb_put(&b, ds.s, ds.n);
      jj_str(c, &b, attr.t != V_NONE ? attr_path(c, l->v[i], attr) : l->v[i]);
      jj_check_str(c, b.n);
    }
    return jb_val(&b);
  }
  if (!strcmp(f, "replace")) {
    jv args[3] = {jj_arg(c, a, 0, "old", JV_UNDEF, NULL), jj_arg(c, a, 1, "new", JV_UNDEF, NULL),
                  jj_arg(c, a, 2, "count", JV_NONE, &given)};
    jj_args ma = {args, given ? 3 : 2, NULL, NULL, 0};
    for (int i = 0; i < 2; i++) args[i] = jj_to_str(c, args[i]);
    return jj_call_method(c, jj_to_str(c, v), "replace", &ma);
  }
  if (!strcmp(f, "first") || !strcmp(f, "last")) {
    jj_list *l = jj_iter(c, v);
    if (!l->n) return jv_undef_named(f[0] == 'f' ? "No first item, sequence was empty." : "No last item, sequence was empty.");
    return f[0] == 'f' ? l->v[0] : l->v[l->n - 1];
  }
  if (!strcmp(f, "reverse")) {
    if (v.t == V_STR) {
      jj_list *l = jj_iter(c, v);
      jj_buf b;
      jb_init(&b, c->a);
      for (size_t i = l->n; i > 0; i--) jb_put(&b, l->v[i - 1].s, l->v[i - 1].n);
      return jb_val(&b);
    }
    jj_list *l = jj_iter(c, v);
    jv r = jv_list(c->a, l->n);
    for (size_t i = 0; i < l->n; i++) r.l->v[i] = l->v[l->n - 1 - i];
    r.l->n = l->n;
    return r;
  }
  if (!strcmp(f, "map")) {
    jj_list *l = jj_iter(c, v);
    jv r = jv_list(c->a, l->n);
    jv attr = jj_arg(c, a, -1, "attribute", JV_NONE, &given);
    if (given) {
      jv dflt = jj_arg(c, a, -1, "default", JV_UNDEF, NULL);
      for (size_t i = 0; i < l->n; i++) {
        jv x = attr_path(c, l->v[i], attr);
        r.l->v[r.l->n++] = (x.t == V_UNDEF && dflt.t != V_UNDEF) ? dflt : x;
      }
      return r;
    }
    if (a->npos < 1 || a->pos[0].t != V_STR) jj_fail(c, "map requires a filter name");
    const char *fn = jj_strndup(c->a, a->pos[0].s, a->pos[0].n);
    if (!jj_filter_exists(fn)) jj_fail(c, "No filter named '%s'.", fn);
    jj_args fa = {a->pos + 1, a->npos - 1, a->kwn, a->kwv, a->nkw};
    for (size_t i = 0; i < l->n; i++) r.l->v[r.l->n++] = jj_apply_filter(c, fn, l->v[i], &fa);
    return r;
  }
  if (!strcmp(f, "select")) return select_impl(c, v, a, false, true);
  if (!strcmp(f, "reject")) return select_impl(c, v, a, false, false);
  if (!strcmp(f, "selectattr")) return select_impl(c, v, a, true, true);
  if (!strcmp(f, "rejectattr")) return select_impl(c, v, a, true, false);
  if (!strcmp(f, "unique")) {
    jj_list *l = jj_iter(c, v);
    bool cs = jv_truthy(jj_arg(c, a, 0, "case_sensitive", jv_bool(false), NULL));
    jv attr = jj_arg(c, a, 1, "attribute", JV_NONE, NULL);
    jv r = jv_list(c->a, l->n), seen = jv_list(c->a, l->n);
    for (size_t i = 0; i < l->n; i++) {
      jv k = casefold_key(c, attr.t == V_NONE ? l->v[i] : attr_path(c, l->v[i], attr), cs);
      bool dup = false;
      for (size_t j = 0; j < seen.l->n && !dup; j++) dup = jv_eq(seen.l->v[j], k);
      if (!dup) {
        seen.l->v[seen.l->n++] = k;
        r.l->v[r.l->n++] = l->v[i];
      }
    }
    return r;
  }
  if (!strcmp(f, "sort")) {
    bool rev = jv_truthy(jj_arg(c, a, 0, "reverse", jv_bool(false), NULL));
    bool cs = jv_truthy(jj_arg(c, a, 1, "case_sensitive", jv_bool(false), NULL));
    jv attr = jj_arg(c, a, 2, "attribute", JV_NONE, NULL);
    return sorted(c, jj_iter(c, v), rev, cs, attr, -1);
  }
  if (!strcmp(f, "dictsort")) {
    if (v.t != V_DICT) jj_fail(c, "dictsort: expected a mapping");
    bool cs = jv_truthy(jj_arg(c, a, 0, "case_sensitive", jv_bool(false), NULL));
    jv by = jj_arg(c, a, 1, "by", S("key"), NULL);
    bool rev = jv_truthy(jj_arg(c, a, 2, "reverse", jv_bool(false), NULL));
    int pos = by.t == V_STR && by.n == 5 && !memcmp(by.s, "value", 5) ? 1 : 0;
    if (!(by.t == V_STR && ((by.n == 3 && !memcmp(by.s, "key", 3)) || pos))) jj_fail(c, "You can only sort by either \"key\" or \"value\"");
    jv items = jv_list(c->a, v.d->n);
    for (size_t i = 0; i < v.d->n; i++) items.l->v[i] = tup2(c, v.d->k[i], v.d->v[i]);
    items.l->n = v.d->n;
    return sorted(c, items.l, rev, cs, JV_NONE, pos);
  }
  if (!strcmp(f, "int")) {
    jv dflt = jj_arg(c, a, 0, "default", jv_int(0), NULL);
    jv base = jj_arg(c, a, 1, "base", jv_int(10), NULL);
    int64_t r;
    if (v.t == V_INT || v.t == V_BOOL) return jv_int(v.i);
    if (v.t == V_FLOAT) return isfinite(v.f) && fabs(v.f) < 9.2e18 ? jv_int((int64_t)v.f) : dflt;
    if (v.t == V_STR) {
      if (parse_int(v, (int)base.i, &r)) return jv_int(r);
      double d;
      if (parse_float(v, &d) && isfinite(d) && fabs(d) < 9.2e18) return jv_int((int64_t)d);
    }
    return dflt;
  }
  if (!strcmp(f, "float")) {
    jv dflt = jj_arg(c, a, 0, "default", jv_float(0.0), NULL);
    if (v.t == V_FLOAT) return v;
    if (v.t == V_INT || v.t == V_BOOL) return jv_float((double)v.i);
    double d;
    if (v.t == V_STR && parse_float(v, &d)) return jv_float(d);
    return dflt;
  }
  if (!strcmp(f, "abs")) {
    if (v.t == V_INT || v.t == V_BOOL) {
      if (v.i == INT64_MIN) jj_fail(c, "integer overflow");
      return jv_int(v.i < 0 ? -v.i : v.i);
    }
    if (v.t == V_FLOAT) return jv_float(fabs(v.f));
    if (v.t == V_UNDEF) jj_undef_fail(c, v);
    jj_fail(c, "bad operand type for abs(): '%s'", jv_typename(v));
  }
  if (!strcmp(f, "round")) {
    jv prec = jj_arg(c, a, 0, "precision", jv_int(0), NULL);
    jv method = jj_arg(c, a, 1, "method", S("common"), NULL);
    if (!jv_is_num(v)) {
      if (v.t == V_UNDEF) jj_undef_fail(c, v);
      jj_fail(c, "type %s doesn't define __round__ method", jv_typename(v));
    }
    double x = v.t == V_FLOAT ? v.f : (double)v.i;
    if (prec.t != V_INT && prec.t != V_BOOL) jj_fail(c, "round: precision must be an integer");
    if (method.t != V_STR) jj_fail(c, "method must be 'common', 'ceil' or 'floor'");
    if (method.n == 6 && !memcmp(method.s, "common", 6)) {
      if (v.t != V_FLOAT) return jv_int(v.i);
      return jv_float(round_half_even(x, prec.i));
    }
    double p = pow(10, (double)prec.i);
    if (method.n == 4 && !memcmp(method.s, "ceil", 4)) return jv_float(ceil(x * p) / p);
    if (method.n == 5 && !memcmp(method.s, "floor", 5)) return jv_float(floor(x * p) / p);
    jj_fail(c, "method must be 'common', 'ceil' or 'floor'");
  }
  if (!strcmp(f, "indent")) return do_indent(c, v, a);
  if (!strcmp(f, "escape") || !strcmp(f, "e") || !strcmp(f, "forceescape")) {
    if (v.t == V_STR && (v.flags & VF_SAFE) && f[0] != 'f') return v;
    return escape_html(c, jj_to_str(c, v));
  }
  if (!strcmp(f, "wordcount")) {
    jv s = jj_to_str(c, v);
    int64_t n = 0;
    bool in = false;
    for (size_t i = 0; i < s.n;) {
      uint32_t cp = (uint32_t)jj_utf8_dec(s.s, s.n, &i);
      bool w = (cp >= '0' && cp <= '9') || (cp >= 'a' && cp <= 'z') || (cp >= 'A' && cp <= 'Z') || cp == '_' ||
               (cp >= 0xaa && !jj_py_space(cp) && !(cp >= 0x2000 && cp <= 0x206f) && !(cp >= 0x3000 && cp <= 0x303f) &&
                !(cp >= 0xff00 && cp <= 0xff0f) && cp != 0xd7 && cp != 0xf7);
      if (w && !in) n++;
      in = w;
    }
    return jv_int(n);
  }
  if (!strcmp(f, "batch")) {
    jv cnt = jj_arg(c, a, 0, "linecount", JV_UNDEF, NULL);
    jv fill = jj_arg(c, a, 1, "fill_with", JV_NONE, &given);
    if (cnt.t != V_INT || cnt.i <= 0) jj_fail(c, "batch: linecount must be a positive integer");
    jj_list *l = jj_iter(c, v);
    jv r = jv_list(c->a, 0), tmp = jv_list(c->a, 0);
    for (size_t i = 0; i < l->n; i++) {
      if ((int64_t)tmp.l->n == cnt.i) {
        jv_list_push(c->a, r, tmp);
        tmp = jv_list(c->a, 0);
      }
      jv_list_push(c->a, tmp, l->v[i]);
    }
    if (tmp.l->n) {
      if (given)
        while ((int64_t)tmp.l->n < cnt.i) jv_list_push(c->a, tmp, fill);
      jv_list_push(c->a, r, tmp);
    }
    return r;
  }
  if (!strcmp(f, "sum")) {
    jv attr = jj_arg(c, a, 0, "attribute", JV_NONE, NULL);
    jv acc = jj_arg(c, a, 1, "start", jv_int(0), NULL);
    jj_list *l = jj_iter(c, v);
    for (size_t i = 0; i < l->n; i++) acc = jj_binop(c, OP_ADD, acc, attr.t == V_NONE ? l->v[i] : attr_path(c, l->v[i], attr));
    return acc;
  }
  if (!strcmp(f, "min")) return minmax(c, v, a, false);
  if (!strcmp(f, "max")) return minmax(c, v, a, true);
  if (!strcmp(f, "center")) {
    jv w = jj_arg(c, a, 0, "width", jv_int(80), NULL);
    jv args[1] = {w};
    return jj_call_method(c, jj_to_str(c, v), "center", &(jj_args){args, 1, NULL, NULL, 0});
  }
  if (!strcmp(f, "format")) {
    jv args;
    if (a->nkw) {
      args = jv_dict(c->a);
      for (int i = 0; i < a->nkw; i++) jj_dict_set(c->a, args.d, S(a->kwn[i]), a->kwv[i]);
    } else {
      args = jv_list(c->a, (size_t)a->npos);
      for (int i = 0; i < a->npos; i++) args.l->v[i] = a->pos[i];
      args.l->n = (size_t)a->npos;
      args.t = V_TUPLE;
    }
    return jj_percent_format(c, jj_to_str(c, v), args);
  }
  if (!strcmp(f, "attr")) {
    jv name = jj_arg(c, a, 0, "name", JV_UNDEF, NULL);
    if (name.t != V_STR) jj_fail(c, "attribute name must be a string");
    if (v.t == V_DICT && !jj_method_exists(v, jj_strndup(c->a, name.s, name.n)))
      return jv_undef_named("no such attribute");
    return jj_getattr(c, v, jj_strndup(c->a, name.s, name.n), name.n);
  }
  if (!strcmp(f, "truncate")) {
    jv s = jj_to_str(c, v);
    int64_t length = jj_arg(c, a, 0, "length", jv_int(255), NULL).i;
    bool killwords = jv_truthy(jj_arg(c, a, 1, "killwords", jv_bool(false), NULL));
    jv end = jj_to_str(c, jj_arg(c, a, 2, "end", S("..."), NULL));
    int64_t leeway = jj_arg(c, a, 3, "leeway", jv_int(5), NULL).i;
    int64_t n = (int64_t)jj_utf8_len(s.s, s.n), en = (int64_t)jj_utf8_len(end.s, end.n);
    if (length < en) jj_fail(c, "expected length >= %lld, got %lld", (long long)en, (long long)length);
    if (n <= length + leeway) return s;
    jv args[3] = {JV_NONE, jv_int(length - en), JV_NONE};
    jv sl = jv_list(c->a, 3);
    jj_memcpy(sl.l->v, args, sizeof args);
    sl.l->n = 3;
    sl.t = V_TUPLE;
    sl.flags = 2;
    jv head = jj_getitem(c, s, sl);
    if (!killwords) {
      const char *sp = NULL;
      for (size_t i = head.n; i > 0; i--)
        if (head.s[i - 1] == ' ') { sp = head.s + i - 1; break; }
      if (sp) head.n = (uint32_t)(sp - head.s);
    }
    return jj_binop(c, OP_ADD, head, end);
  }
  jj_fail(c, "No filter named '%s'.", f);
}

static const char *const filters[] = {
    "safe", "string", "tojson", "length", "count", "default", "d", "trim", "upper", "lower", "capitalize", "title",
    "items", "list", "join", "replace", "first", "last", "reverse", "map", "select", "reject", "selectattr",
    "rejectattr", "unique", "sort", "dictsort", "int", "float", "abs", "round", "indent", "escape", "e",
    "forceescape", "wordcount", "batch", "sum", "min", "max", "center", "format", "attr", "truncate", NULL};

bool jj_filter_exists(const char *name) {
  for (int i = 0; filters[i]; i++)
    if (!strcmp(filters[i], name)) return true;
  return false;
}

static const char *const tests[] = {
    "defined", "undefined", "none", "boolean", "false", "true", "integer", "float", "number", "string", "mapping",
    "iterable", "sequence", "callable", "sameas", "escaped", "odd", "even", "divisibleby", "lower", "upper", "in",
    "eq", "equalto", "==", "ne", "!=", "lt", "lessthan", "<", "le", "<=", "gt", "greaterthan", ">", "ge", ">=",
    "filter", "test", NULL};

bool jj_test_exists(const char *name) {
  for (int i = 0; tests[i]; i++)
    if (!strcmp(tests[i], name)) return true;
  return false;
}

bool jj_apply_test(jj_ctx *c, const char *t, jv v, jj_args *a) {
  jv arg = jj_arg(c, a, 0, NULL, JV_UNDEF, NULL);
  if (!strcmp(t, "defined")) return v.t != V_UNDEF;
  if (!strcmp(t, "undefined")) return v.t == V_UNDEF;
  if (!strcmp(t, "none")) return v.t == V_NONE;
  if (!strcmp(t, "boolean")) return v.t == V_BOOL;
  if (!strcmp(t, "false")) return v.t == V_BOOL && !v.i;
  if (!strcmp(t, "true")) return v.t == V_BOOL && v.i;
  if (!strcmp(t, "integer")) return v.t == V_INT;
  if (!strcmp(t, "float")) return v.t == V_FLOAT;
  if (!strcmp(t, "number")) return jv_is_num(v);
  if (!strcmp(t, "string")) return v.t == V_STR;
  if (!strcmp(t, "mapping")) return v.t == V_DICT;
  if (!strcmp(t, "iterable")) return v.t == V_STR || v.t == V_LIST || v.t == V_TUPLE || v.t == V_DICT || v.t == V_UNDEF;
  if (!strcmp(t, "sequence")) return v.t == V_STR || v.t == V_LIST || v.t == V_TUPLE || v.t == V_DICT || v.t == V_UNDEF;
  if (!strcmp(t, "callable")) return v.t == V_UNDEF || v.t == V_MACRO || v.t == V_FUNC || v.t == V_METHOD || v.t == V_JOINER;
  if (!strcmp(t, "sameas")) {
    if (v.t != arg.t) return false;
    if (v.t == V_NONE || v.t == V_UNDEF) return true;
    if (v.t == V_BOOL) return v.i == arg.i;
    if (v.t == V_INT) return v.i == arg.i && v.i >= -5 && v.i <= 256;
    if (v.t == V_STR) return v.s == arg.s && v.n == arg.n;
    return v.p == arg.p;
  }
  if (!strcmp(t, "escaped")) return v.t == V_STR && (v.flags & VF_SAFE);
  if (!strcmp(t, "odd") || !strcmp(t, "even")) {
    jv m = jj_binop(c, OP_MOD, v, jv_int(2));
    return jv_eq(m, jv_int(t[0] == 'o' ? 1 : 0));
  }
  if (!strcmp(t, "divisibleby")) return jv_eq(jj_binop(c, OP_MOD, v, arg), jv_int(0));
  if (!strcmp(t, "lower") || !strcmp(t, "upper")) {
    jv s = jj_to_str(c, v);
    return jv_truthy(jj_call_method(c, s, t[0] == 'l' ? "islower" : "isupper", &(jj_args){0}));
  }
  if (!strcmp(t, "in")) return jj_contains(c, arg, v);
  if (!strcmp(t, "eq") || !strcmp(t, "equalto") || !strcmp(t, "==")) return jv_eq(v, arg);
  if (!strcmp(t, "ne") || !strcmp(t, "!=")) return !jv_eq(v, arg);
  if (!strcmp(t, "lt") || !strcmp(t, "lessthan") || !strcmp(t, "<")) return jj_compare(c, v, arg) < 0;
  if (!strcmp(t, "le") || !strcmp(t, "<=")) return jj_compare(c, v, arg) <= 0;
  if (!strcmp(t, "gt") || !strcmp(t, "greaterthan") || !strcmp(t, ">")) return jj_compare(c, v, arg) > 0;
  if (!strcmp(t, "ge") || !strcmp(t, ">=")) return jj_compare(c, v, arg) >= 0;
  if (!strcmp(t, "filter") || !strcmp(t, "test")) {
    if (v.t != V_STR) return false;
    const char *nm = jj_strndup(c->a, v.s, v.n);
    return t[0] == 'f' ? jj_filter_exists(nm) : jj_test_exists(nm);
  }
  jj_fail(c, "No test named '%s'.", t);
}
