/* Python methods of str / dict / list values, and %-formatting and str.format. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "text/jinja/internal.h"

static const char *const str_methods[] = {
    "upper", "lower", "strip", "lstrip", "rstrip", "split", "rsplit", "splitlines", "startswith", "endswith",
    "replace", "find", "rfind", "index", "rindex", "count", "join", "format", "title", "capitalize", "swapcase",
    "casefold", "center", "ljust", "rjust", "zfill", "isdigit", "isdecimal", "isnumeric", "isalpha", "isalnum",
    "isspace", "islower", "isupper", "partition", "rpartition", "removeprefix", "removesuffix", NULL};
static const char *const dict_methods[] = {"items", "keys", "values", "get", "copy", NULL};
static const char *const dict_unsafe[] = {"pop", "popitem", "setdefault", "update", "clear", NULL};
static const char *const list_methods[] = {"index", "count", "copy", NULL};
static const char *const list_unsafe[] = {"append", "extend", "insert", "pop", "remove", "reverse", "sort", "clear", NULL};

static bool in_tab(const char *const *t, const char *n) {
  for (int i = 0; t[i]; i++)
    if (!strcmp(t[i], n)) return true;
  return false;
}

int jj_method_exists(jv self, const char *name) {
  switch (self.t) {
  case V_STR: return in_tab(str_methods, name);
  case V_DICT: return in_tab(dict_methods, name) ? 1 : in_tab(dict_unsafe, name) ? 2 : 0;
  case V_LIST: return in_tab(list_methods, name) ? 1 : in_tab(list_unsafe, name) ? 2 : 0;
  case V_TUPLE: return (!strcmp(name, "index") || !strcmp(name, "count"));
  default: return 0;
  }
}

static jv S(const char *s) { return jv_str(s, strlen(s)); }

static jv need_str(jj_ctx *c, jv v, const char *m) {
  if (v.t == V_UNDEF) jj_undef_fail(c, v);
  if (v.t != V_STR) jj_fail(c, "%s() argument must be str, not %s", m, jv_typename(v));
  return v;
}

static int64_t cp_index(jv s, size_t byte) { return (int64_t)jj_utf8_len(s.s, byte); }

static const char *find_sub(jv s, jv sub, size_t from) {
  if (sub.n == 0) return s.s + from;
  if (from > s.n) return NULL;
  return memmem(s.s + from, s.n - from, sub.s, sub.n);
}

static const char *rfind_sub(jv s, jv sub) {
  if (sub.n > s.n) return NULL;
  for (size_t i = s.n - sub.n + 1; i > 0; i--)
    if (memcmp(s.s + i - 1, sub.s, sub.n) == 0) return s.s + i - 1;
  return NULL;
}

static jv mklist(jj_ctx *c) { return jv_list(c->a, 0); }

static jv split(jj_ctx *c, jv s, jv sep, int64_t maxsplit, bool right) {
  jv r = mklist(c);
  if (sep.t == V_NONE || sep.t == V_UNDEF) {
    /* whitespace split: collect word boundaries */
    size_t *st = jj_alloc(c->a, (s.n + 1) * sizeof(size_t) * 2);
    size_t nw = 0, i = 0;
    while (i < s.n) {
      size_t p = i;
      uint32_t cp = (uint32_t)jj_utf8_dec(s.s, s.n, &i);
      if (jj_py_space(cp)) continue;
      size_t b = p, e = i;
      while (i < s.n) {
        size_t q = i;
        uint32_t d = (uint32_t)jj_utf8_dec(s.s, s.n, &i);
        if (jj_py_space(d)) { i = q; break; }
        e = i;
      }
      st[2 * nw] = b;
      st[2 * nw + 1] = e;
      nw++;
    }
    if (maxsplit < 0 || (size_t)maxsplit >= nw) {
      for (size_t k = 0; k < nw; k++) jv_list_push(c->a, r, jv_str(s.s + st[2 * k], st[2 * k + 1] - st[2 * k]));
      return r;
    }
    if (!right) {
      for (int64_t k = 0; k < maxsplit; k++) jv_list_push(c->a, r, jv_str(s.s + st[2 * k], st[2 * k + 1] - st[2 * k]));
      jv rest = jv_str(s.s + st[2 * maxsplit], s.n - st[2 * maxsplit]);
      jv_list_push(c->a, r, rest);
    } else {
      size_t first = nw - (size_t)maxsplit;
      jv rest = jv_str(s.s, st[2 * (first - 1) + 1]);
      jv_list_push(c->a, r, rest);
      for (size_t k = first; k < nw; k++) jv_list_push(c->a, r, jv_str(s.s + st[2 * k], st[2 * k + 1] - st[2 * k]));
    }
    return r;
  }
  need_str(c, sep, "split");
  if (sep.n == 0) jj_fail(c, "empty separator");
  if (!right) {
    size_t pos = 0;
    int64_t k = 0;
    const char *f;
    while ((maxsplit < 0 || k < maxsplit) && (f = find_sub(s, sep, pos)) != NULL) {
      jv_list_push(c->a, r, jv_str(s.s + pos, (size_t)(f - s.s) - pos));
      pos = (size_t)(f - s.s) + sep.n;
      k++;
    }
    jv_list_push(c->a, r, jv_str(s.s + pos, s.n - pos));
    return r;
  }
  /* rsplit with separator: collect from the right then reverse */
  jv tmp = mklist(c);
  size_t end = s.n;
  int64_t k = 0;
  while (maxsplit < 0 || k < maxsplit) {
    const char *f = rfind_sub(jv_str(s.s, end), sep);
    if (!f) break;
    size_t fp = (size_t)(f - s.s);
    jv_list_push(c->a, tmp, jv_str(s.s + fp + sep.n, end - fp - sep.n));
    end = fp;
    k++;
  }
  jv_list_push(c->a, tmp, jv_str(s.s, end));
  for (size_t i = tmp.l->n; i > 0; i--) jv_list_push(c->a, r, tmp.l->v[i - 1]);
  return r;
}

static jv splitlines(jj_ctx *c, jv s, bool keep) {
  jv r = mklist(c);
  size_t st = 0, i = 0;
  while (i < s.n) {
    size_t p = i;
    uint32_t cp = (uint32_t)jj_utf8_dec(s.s, s.n, &i);
    bool br = cp == '\n' || cp == '\r' || cp == 11 || cp == 12 || (cp >= 0x1c && cp <= 0x1e) || cp == 0x85 ||
              cp == 0x2028 || cp == 0x2029;
    if (!br) continue;
    if (cp == '\r' && i < s.n && s.s[i] == '\n') i++;
    jv_list_push(c->a, r, jv_str(s.s + st, (keep ? i : p) - st));
    st = i;
  }
  if (st < s.n) jv_list_push(c->a, r, jv_str(s.s + st, s.n - st));
  return r;
}

static bool affix(jj_ctx *c, jv s, jv x, bool start) {
  if (x.t == V_TUPLE) {
    for (size_t i = 0; i < x.l->n; i++)
      if (affix(c, s, x.l->v[i], start)) return true;
    return false;
  }
  if (x.t != V_STR) {
    if (x.t == V_UNDEF) jj_undef_fail(c, x);
    jj_fail(c, "%s first arg must be str or a tuple of str, not %s", start ? "startswith" : "endswith", jv_typename(x));
  }
  if (x.n > s.n) return false;
  return memcmp(start ? s.s : s.s + s.n - x.n, x.s, x.n) == 0;
}

static jv pad(jj_ctx *c, jv s, int64_t width, uint32_t fill, int align /* '<' '>' '^' '=' */) {
  int64_t n = (int64_t)jj_utf8_len(s.s, s.n);
  if (width <= n) return s;
  if (width > JJ_MAX_STRING) jj_check_str(c, (size_t)width);
  int64_t total = width - n, left = align == '<' ? 0 : align == '>' ? total : total / 2, right = total - left;
  jj_buf b;
  jb_init(&b, c->a);
  for (int64_t i = 0; i < left; i++) jj_utf8_enc(&b, fill);
  jb_put(&b, s.s, s.n);
  for (int64_t i = 0; i < right; i++) jj_utf8_enc(&b, fill);
  return jb_val(&b);
}

static bool all_cp(jv s, int kind) {
  if (s.n == 0) return false;
  bool any_cased = false;
  for (size_t i = 0; i < s.n;) {
    uint32_t cp = (uint32_t)jj_utf8_dec(s.s, s.n, &i);
    bool d = cp >= '0' && cp <= '9';
    bool al = (cp >= 'a' && cp <= 'z') || (cp >= 'A' && cp <= 'Z') || (cp >= 0xc0 && !jj_py_space(cp) && cp != 0xd7 && cp != 0xf7);
    switch (kind) {
    case 0: if (!d) return false; break;
    case 1: if (!al) return false; break;
    case 2: if (!al && !d) return false; break;
    case 3: if (!jj_py_space(cp)) return false; break;
    case 4: if (jj_cp_isupper(cp)) return false; if (jj_cp_islower(cp)) any_cased = true; break;
    case 5: if (jj_cp_islower(cp)) return false; if (jj_cp_isupper(cp)) any_cased = true; break;
    }
  }
  return kind >= 4 ? any_cased : true;
}

static jv str_method(jj_ctx *c, jv s, const char *m, jj_args *a) {
  bool given;
  jv a0 = jj_arg(c, a, 0, NULL, JV_NONE, &given);
  if (!strcmp(m, "upper")) return jj_case(c, s, 1);
  if (!strcmp(m, "lower") || !strcmp(m, "casefold")) return jj_case(c, s, 0);
  if (!strcmp(m, "title")) return jj_case(c, s, 5);
  if (!strcmp(m, "capitalize")) return jj_case(c, s, 2);
  if (!strcmp(m, "swapcase")) return jj_case(c, s, 4);
  if (!strcmp(m, "strip")) return jj_strip(c, s, jj_arg(c, a, 0, "chars", JV_NONE, NULL), 3);
  if (!strcmp(m, "lstrip")) return jj_strip(c, s, jj_arg(c, a, 0, "chars", JV_NONE, NULL), 1);
  if (!strcmp(m, "rstrip")) return jj_strip(c, s, jj_arg(c, a, 0, "chars", JV_NONE, NULL), 2);
  if (!strcmp(m, "split") || !strcmp(m, "rsplit")) {
    jv sep = jj_arg(c, a, 0, "sep", JV_NONE, NULL);
    jv ms = jj_arg(c, a, 1, "maxsplit", jv_int(-1), NULL);
    if (ms.t != V_INT && ms.t != V_BOOL) jj_fail(c, "maxsplit must be an integer");
    return split(c, s, sep, ms.i, m[0] == 'r');
  }
  if (!strcmp(m, "splitlines")) return splitlines(c, s, jv_truthy(jj_arg(c, a, 0, "keepends", jv_bool(false), NULL)));
  if (!strcmp(m, "startswith") || !strcmp(m, "endswith")) {
    if (!given) jj_fail(c, "%s() takes at least 1 argument (0 given)", m);
    return jv_bool(affix(c, s, a0, m[0] == 's'));
  }
  if (!strcmp(m, "replace")) {
    jv old = need_str(c, jj_arg(c, a, 0, NULL, JV_UNDEF, NULL), "replace");
    jv nw = need_str(c, jj_arg(c, a, 1, NULL, JV_UNDEF, NULL), "replace");
    jv cnt = jj_arg(c, a, 2, "count", jv_int(-1), NULL);
    int64_t k = cnt.t == V_INT || cnt.t == V_BOOL ? cnt.i : -1, done = 0;
    jj_buf b;
    jb_init(&b, c->a);
    if (old.n == 0) {
      size_t i = 0;
      while (i <= s.n) {
        if (k < 0 || done < k) { jb_put(&b, nw.s, nw.n); done++; }
        if (i == s.n) break;
        size_t p = i;
        jj_utf8_dec(s.s, s.n, &i);
        jb_put(&b, s.s + p, i - p);
        jj_check_str(c, b.n);
      }
      return jb_val(&b);
    }
    size_t pos = 0;
    const char *f;
    while ((k < 0 || done < k) && (f = find_sub(s, old, pos)) != NULL) {
      jb_put(&b, s.s + pos, (size_t)(f - s.s) - pos);
      jb_put(&b, nw.s, nw.n);
      jj_check_str(c, b.n);
      pos = (size_t)(f - s.s) + old.n;
      done++;
    }
    jb_put(&b, s.s + pos, s.n - pos);
    return jb_val(&b);
  }
  if (!strcmp(m, "find") || !strcmp(m, "index") || !strcmp(m, "rfind") || !strcmp(m, "rindex")) {
    jv sub = need_str(c, a0, m);
    const char *f = m[0] == 'r' ? rfind_sub(s, sub) : find_sub(s, sub, 0);
    if (!f) {
      if (strstr(m, "index")) jj_fail(c, "substring not found");
      return jv_int(-1);
    }
    return jv_int(cp_index(s, (size_t)(f - s.s)));
  }
  if (!strcmp(m, "count")) {
    jv sub = need_str(c, a0, m);
    if (sub.n == 0) return jv_int((int64_t)jj_utf8_len(s.s, s.n) + 1);
    int64_t n = 0;
    size_t pos = 0;
    const char *f;
    while ((f = find_sub(s, sub, pos)) != NULL) {
      n++;
      pos = (size_t)(f - s.s) + sub.n;
    }
    return jv_int(n);
  }
  if (!strcmp(m, "join")) {
    jj_list *l = jj_iter(c, a0);
    jj_buf b;
    jb_init(&b, c->a);
    for (size_t i = 0; i < l->n; i++) {
      if (l->v[i].t != V_STR) jj_fail(c, "sequence item %zu: expected str instance, %s found", i, jv_typename(l->v[i]));
      if (i) jb_put(&b, s.s, s.n);
      jb_put(&b, l->v[i].s, l->v[i].n);
      jj_check_str(c, b.n);
    }
    return jb_val(&b);
  }
  if (!strcmp(m, "format")) return jj_str_format(c, s, a);
  if (!strcmp(m, "center") || !strcmp(m, "ljust") || !strcmp(m, "rjust") || !strcmp(m, "zfill")) {
    if (a0.t != V_INT && a0.t != V_BOOL) jj_fail(c, "%s() requires an integer width", m);
    uint32_t fill = ' ';
    jv fc = jj_arg(c, a, 1, "fillchar", JV_NONE, NULL);
    if (fc.t == V_STR) {
      if (jj_utf8_len(fc.s, fc.n) != 1) jj_fail(c, "The fill character must be exactly one character long");
      size_t i = 0;
      fill = (uint32_t)jj_utf8_dec(fc.s, fc.n, &i);
    }
    if (m[0] == 'z') {
      bool sign = s.n && (s.s[0] == '-' || s.s[0] == '+');
      jv body = sign ? jv_str(s.s + 1, s.n - 1) : s;
      jv p = pad(c, body, a0.i - (sign ? 1 : 0), '0', '>');
      if (!sign) return p;
      jj_buf b;
      jb_init(&b, c->a);
      jb_putc(&b, s.s[0]);
      jb_put(&b, p.s, p.n);
      return jb_val(&b);
    }
    if (m[0] == 'c') {
      /* Python centres with the extra space on the right unless width is odd and len even */
      int64_t n = (int64_t)jj_utf8_len(s.s, s.n), w = a0.i;
      if (w <= n) return s;
      int64_t marg = w - n, left = marg / 2 + (marg & w & 1);
      jj_buf b;
      jb_init(&b, c->a);
      jj_check_str(c, (size_t)w);
      for (int64_t i = 0; i < left; i++) jj_utf8_enc(&b, fill);
      jb_put(&b, s.s, s.n);
      for (int64_t i = 0; i < marg - left; i++) jj_utf8_enc(&b, fill);
      return jb_val(&b);
    }
    return pad(c, s, a0.i, fill, m[0] == 'l' ? '<' : '>');
  }
  if (!strcmp(m, "isdigit") || !strcmp(m, "isdecimal") || !strcmp(m, "isnumeric")) return jv_bool(all_cp(s, 0));
  if (!strcmp(m, "isalpha")) return jv_bool(all_cp(s, 1));
  if (!strcmp(m, "isalnum")) return jv_bool(all_cp(s, 2));
  if (!strcmp(m, "isspace")) return jv_bool(all_cp(s, 3));
  if (!strcmp(m, "islower")) return jv_bool(all_cp(s, 4));
  if (!strcmp(m, "isupper")) return jv_bool(all_cp(s, 5));
  if (!strcmp(m, "partition") || !strcmp(m, "rpartition")) {
    jv sep = need_str(c, a0, m);
    if (sep.n == 0) jj_fail(c, "empty separator");
    const char *f = m[0] == 'r' ? rfind_sub(s, sep) : find_sub(s, sep, 0);
    jv t = jv_list(c->a, 3);
    t.t = V_TUPLE;
    t.l->n = 3;
    if (!f) {
      t.l->v[m[0] == 'r' ? 2 : 0] = s;
      t.l->v[1] = S("");
      t.l->v[m[0] == 'r' ? 0 : 2] = S("");
    } else {
      size_t p = (size_t)(f - s.s);
      t.l->v[0] = jv_str(s.s, p);
      t.l->v[1] = sep;
      t.l->v[2] = jv_str(s.s + p + sep.n, s.n - p - sep.n);
    }
    return t;
  }
  if (!strcmp(m, "removeprefix") || !strcmp(m, "removesuffix")) {
    jv x = need_str(c, a0, m);
    if (x.n <= s.n && memcmp(m[6] == 'p' ? s.s : s.s + s.n - x.n, x.s, x.n) == 0)
      return m[6] == 'p' ? jv_str(s.s + x.n, s.n - x.n) : jv_str(s.s, s.n - x.n);
    return s;
  }
  jj_fail(c, "'str' object has no attribute '%s'", m);
}

jv jj_call_method(jj_ctx *c, jv self, const char *m, jj_args *a) {
  if (self.t == V_FUNC && !strcmp(m, "strftime_now")) {
    jv f = jj_arg(c, a, 0, NULL, JV_UNDEF, NULL);
    if (f.t != V_STR) jj_fail(c, "strftime_now() expects a format string");
    char fmt[256], out[512];
    snprintf(fmt, sizeof fmt, "%.*s", (int)(f.n > 255 ? 255 : f.n), f.s);
    time_t t = time(NULL);
    struct tm tm;
    localtime_r(&t, &tm);
    size_t n = strftime(out, sizeof out, fmt, &tm);
    return jv_str(jj_strndup(c->a, out, n), n);
  }
  if (jj_method_exists(self, m) == 2) jj_fail(c, "access to attribute '%s' of '%s' object is unsafe.", m, jv_typename(self));
  if (self.t == V_STR) return str_method(c, self, m, a);
  if (self.t == V_DICT) {
    jj_dict *d = self.d;
    if (!strcmp(m, "get")) {
      jv *v = jj_dict_get(d, jj_arg(c, a, 0, NULL, JV_NONE, NULL));
      return v ? *v : jj_arg(c, a, 1, NULL, JV_NONE, NULL);
    }
    if (!strcmp(m, "copy")) {
      jv r = jv_dict(c->a);
      for (size_t i = 0; i < d->n; i++) jj_dict_set(c->a, r.d, d->k[i], d->v[i]);
      return r;
    }
    jv r = jv_list(c->a, d->n);
    for (size_t i = 0; i < d->n; i++) {
      if (m[0] == 'k') r.l->v[i] = d->k[i];
      else if (m[0] == 'v') r.l->v[i] = d->v[i];
      else {
        jv t = jv_list(c->a, 2);
        t.l->v[0] = d->k[i];
        t.l->v[1] = d->v[i];
        t.l->n = 2;
        t.t = V_TUPLE;
        r.l->v[i] = t;
      }
    }
    r.l->n = d->n;
    return r;
  }
  if (self.t == V_LIST || self.t == V_TUPLE) {
    jj_list *l = self.l;
    if (!strcmp(m, "copy")) {
      jv r = jv_list(c->a, l->n);
      jj_memcpy(r.l->v, l->v, l->n * sizeof(jv));
      r.l->n = l->n;
      return r;
    }
    jv x = jj_arg(c, a, 0, NULL, JV_UNDEF, NULL);
    int64_t n = 0;
    for (size_t i = 0; i < l->n; i++)
      if (jv_eq(l->v[i], x)) {
        if (m[0] == 'i') return jv_int((int64_t)i);
        n++;
      }
    if (m[0] == 'i') jj_fail(c, "value is not in list");
    return jv_int(n);
  }
  jj_fail(c, "'%s' object has no attribute '%s'", jv_typename(self), m);
}
