/* Arena, value model, string builder, UTF-8 helpers and Python-compatible printing. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "text/jinja/internal.h"

/* ---------------- arena ---------------- */
typedef struct jj_chunk { struct jj_chunk *next; size_t used, cap; _Alignas(16) char mem[]; } jj_chunk;

void *jj_alloc(jj_arena *a, size_t n) {
  n = (n + 15) & ~(size_t)15;
  jj_chunk *c = a->head;
  if (!c || c->cap - c->used < n) {
    size_t cap = n > (64u << 10) ? n : (64u << 10);
    if (a->limit && a->used_total + cap > a->limit) {
      if (a->oom) longjmp(*a->oom, 1);
      return NULL;
    }
    c = malloc(sizeof *c + cap);
    if (!c) {
      if (a->oom) longjmp(*a->oom, 1);
      return NULL;
    }
    c->cap = cap;
    c->used = 0;
    c->next = a->head;
    a->head = c;
    a->used_total += cap;
  }
  void *p = c->mem + c->used;
  c->used += n;
  memset(p, 0, n);
  return p;
}

void jj_arena_free(jj_arena *a) {
  jj_chunk *c = a->head;
  while (c) {
    jj_chunk *n = c->next;
    free(c);
    c = n;
  }
  a->head = NULL;
  a->used_total = 0;
}

char *jj_strndup(jj_arena *a, const char *s, size_t n) {
  char *p = jj_alloc(a, n + 1);
  if (!p) return NULL;
  if (n) memcpy(p, s, n);
  p[n] = 0;
  return p;
}

/* ---------------- values ---------------- */
const jv JV_UNDEF = {.t = V_UNDEF};
const jv JV_NONE = {.t = V_NONE};
jv jv_bool(bool b) { return (jv){.t = V_BOOL, .i = b}; }
jv jv_int(int64_t i) { return (jv){.t = V_INT, .i = i}; }
jv jv_float(double f) { return (jv){.t = V_FLOAT, .f = f}; }
jv jv_str(const char *s, size_t n) { return (jv){.t = V_STR, .n = (uint32_t)n, .s = s}; }
jv jv_undef_named(const char *name) { return (jv){.t = V_UNDEF, .s = name}; }

jv jv_list(jj_arena *a, size_t cap) {
  jj_list *l = jj_alloc(a, sizeof *l);
  if (cap) {
    l->v = jj_alloc(a, cap * sizeof(jv));
    l->cap = cap;
  }
  return (jv){.t = V_LIST, .l = l};
}

void jv_list_push(jj_arena *a, jv list, jv item) {
  jj_list *l = list.l;
  if (l->n == l->cap) {
    size_t cap = l->cap ? l->cap * 2 : 4;
    jv *nv = jj_alloc(a, cap * sizeof(jv));
    if (l->n) memcpy(nv, l->v, l->n * sizeof(jv));
    l->v = nv;
    l->cap = cap;
  }
  l->v[l->n++] = item;
}

jv jv_dict(jj_arena *a) {
  jj_dict *d = jj_alloc(a, sizeof *d);
  return (jv){.t = V_DICT, .d = d};
}

static bool key_eq(jv a, jv b) {
  if (a.t == V_STR && b.t == V_STR) return a.n == b.n && memcmp(a.s, b.s, a.n) == 0;
  return jv_eq(a, b);
}

jv *jj_dict_get(const jj_dict *d, jv k) {
  for (size_t i = 0; i < d->n; i++)
    if (key_eq(d->k[i], k)) return &d->v[i];
  return NULL;
}

jv *jj_dict_gets(const jj_dict *d, const char *k) { return jj_dict_get(d, jv_str(k, strlen(k))); }

void jj_dict_set(jj_arena *a, jj_dict *d, jv k, jv v) {
  jv *p = jj_dict_get(d, k);
  if (p) {
    *p = v;
    return;
  }
  if (d->n == d->cap) {
    size_t cap = d->cap ? d->cap * 2 : 4;
    jv *nk = jj_alloc(a, cap * sizeof(jv)), *nv = jj_alloc(a, cap * sizeof(jv));
    if (d->n) {
      memcpy(nk, d->k, d->n * sizeof(jv));
      memcpy(nv, d->v, d->n * sizeof(jv));
    }
    d->k = nk;
    d->v = nv;
    d->cap = cap;
  }
  d->k[d->n] = k;
  d->v[d->n++] = v;
}

bool jv_is_str(jv v) { return v.t == V_STR; }
bool jv_is_seq(jv v) { return v.t == V_LIST || v.t == V_TUPLE; }
bool jv_is_num(jv v) { return v.t == V_INT || v.t == V_FLOAT || v.t == V_BOOL; }

bool jv_truthy(jv v) {
  switch (v.t) {
  case V_UNDEF: case V_NONE: return false;
  case V_BOOL: case V_INT: return v.i != 0;
  case V_FLOAT: return v.f != 0.0;
  case V_STR: return v.n != 0;
  case V_LIST: case V_TUPLE: return v.l->n != 0;
  case V_DICT: return v.d->n != 0;
  default: return true;
  }
}

static double num_f(jv v) { return v.t == V_FLOAT ? v.f : (double)v.i; }

bool jv_eq(jv a, jv b) {
  if (jv_is_num(a) && jv_is_num(b)) {
    if (a.t != V_FLOAT && b.t != V_FLOAT) return a.i == b.i;
    return num_f(a) == num_f(b);
  }
  if (a.t != b.t) return false;
  switch (a.t) {
  case V_UNDEF: case V_NONE: return true;
  case V_STR: return a.n == b.n && memcmp(a.s, b.s, a.n) == 0;
  case V_LIST: case V_TUPLE:
    if (a.l->n != b.l->n) return false;
    for (size_t i = 0; i < a.l->n; i++)
      if (!jv_eq(a.l->v[i], b.l->v[i])) return false;
    return true;
  case V_DICT:
    if (a.d->n != b.d->n) return false;
    for (size_t i = 0; i < a.d->n; i++) {
      jv *o = jj_dict_get(b.d, a.d->k[i]);
      if (!o || !jv_eq(a.d->v[i], *o)) return false;
    }
    return true;
  case V_METHOD: {
    const jj_method *x = a.p, *y = b.p;
    return strcmp(x->name, y->name) == 0 && jv_eq(x->self, y->self);
  }
  case V_FUNC: return a.i == b.i;
  default: return a.p == b.p;
  }
}

const char *jv_typename(jv v) {
  switch (v.t) {
  case V_UNDEF: return "Undefined";
  case V_NONE: return "NoneType";
  case V_BOOL: return "bool";
  case V_INT: return "int";
  case V_FLOAT: return "float";
  case V_STR: return "str";
  case V_LIST: return "list";
  case V_TUPLE: return "tuple";
  case V_DICT: return "dict";
  case V_NS: return "Namespace";
  case V_LOOP: return "LoopContext";
  case V_MACRO: return "Macro";
  case V_METHOD: return "builtin_function_or_method";
  case V_CYCLER: return "Cycler";
  case V_JOINER: return "Joiner";
  default: return "function";
  }
}

/* ---------------- string builder ---------------- */
void jb_init(jj_buf *b, jj_arena *a) {
  memset(b, 0, sizeof *b);
  b->a = a;
}

static void jb_grow(jj_buf *b, size_t need) {
  if (b->n + need <= b->cap) return;
  size_t cap = b->cap ? b->cap * 2 : 64;
  while (cap < b->n + need) cap *= 2;
  char *np = jj_alloc(b->a, cap);
  if (b->n) memcpy(np, b->p, b->n);
  b->p = np;
  b->cap = cap;
}

void jb_put(jj_buf *b, const char *s, size_t n) {
  if (!n) return;
  jb_grow(b, n);
  memcpy(b->p + b->n, s, n);
  b->n += n;
}
void jb_puts(jj_buf *b, const char *s) { jb_put(b, s, strlen(s)); }
void jb_putc(jj_buf *b, char c) { jb_put(b, &c, 1); }

void jb_printf(jj_buf *b, const char *fmt, ...) {
  char tmp[512];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
  va_end(ap);
  if (n > 0) jb_put(b, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

jv jb_val(jj_buf *b) { return jv_str(b->p ? b->p : "", b->n); }

/* ---------------- UTF-8 ---------------- */
int jj_utf8_dec(const char *s, size_t n, size_t *i) {
  const unsigned char *u = (const unsigned char *)s;
  unsigned char c = u[*i];
  int len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
  if (len == 0 || *i + len > n) {
    (*i)++;
    return 0xFFFD;
  }
  uint32_t cp = len == 1 ? c : len == 2 ? (c & 0x1F) : len == 3 ? (c & 0x0F) : (c & 0x07);
  for (int k = 1; k < len; k++) {
    if ((u[*i + k] & 0xC0) != 0x80) {
      (*i)++;
      return 0xFFFD;
    }
    cp = (cp << 6) | (u[*i + k] & 0x3F);
  }
  *i += len;
  return (int)cp;
}

void jj_utf8_enc(jj_buf *b, uint32_t cp) {
  char t[4];
  if (cp < 0x80) {
    jb_putc(b, (char)cp);
  } else if (cp < 0x800) {
    t[0] = (char)(0xC0 | (cp >> 6)); t[1] = (char)(0x80 | (cp & 0x3F));
    jb_put(b, t, 2);
  } else if (cp < 0x10000) {
    t[0] = (char)(0xE0 | (cp >> 12)); t[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
    t[2] = (char)(0x80 | (cp & 0x3F));
    jb_put(b, t, 3);
  } else {
    t[0] = (char)(0xF0 | (cp >> 18)); t[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    t[2] = (char)(0x80 | ((cp >> 6) & 0x3F)); t[3] = (char)(0x80 | (cp & 0x3F));
    jb_put(b, t, 4);
  }
}

size_t jj_utf8_len(const char *s, size_t n) {
  size_t k = 0;
  for (size_t i = 0; i < n; k++) jj_utf8_dec(s, n, &i);
  return k;
}

bool jj_py_space(uint32_t cp) {
  return (cp >= 9 && cp <= 13) || cp == ' ' || (cp >= 0x1c && cp <= 0x1f) || cp == 0x85 || cp == 0xa0 ||
         cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200a) || cp == 0x2028 || cp == 0x2029 || cp == 0x202f ||
         cp == 0x205f || cp == 0x3000;
}

/* ---------------- printing ---------------- */
void jj_float_repr(jj_buf *b, double f) {
  if (isnan(f)) { jb_puts(b, "nan"); return; }
  if (isinf(f)) { jb_puts(b, f < 0 ? "-inf" : "inf"); return; }
  if (f == 0) { jb_puts(b, signbit(f) ? "-0.0" : "0.0"); return; }
  char tmp[64];
  int p;
  for (p = 1; p <= 17; p++) { /* shortest digits that round-trip, as Python's repr */
    snprintf(tmp, sizeof tmp, "%.*e", p - 1, f);
    if (strtod(tmp, NULL) == f) break;
  }
  /* tmp = [-]d.ddde[+-]XX */
  char digits[32];
  int nd = 0;
  const char *q = tmp;
  bool neg = *q == '-';
  if (neg) q++;
  for (; *q && *q != 'e'; q++)
    if (*q >= '0' && *q <= '9') digits[nd++] = *q;
  int exp10 = atoi(q + 1);
  while (nd > 1 && digits[nd - 1] == '0') nd--;
  int decpt = exp10 + 1;
  if (neg) jb_putc(b, '-');
  if (decpt <= -4 || decpt > 16) {
    jb_putc(b, digits[0]);
    if (nd > 1) {
      jb_putc(b, '.');
      jb_put(b, digits + 1, nd - 1);
    }
    jb_printf(b, "e%c%02d", exp10 < 0 ? '-' : '+', exp10 < 0 ? -exp10 : exp10);
  } else if (decpt <= 0) {
    jb_puts(b, "0.");
    for (int i = 0; i < -decpt; i++) jb_putc(b, '0');
    jb_put(b, digits, nd);
  } else if (decpt >= nd) {
    jb_put(b, digits, nd);
    for (int i = nd; i < decpt; i++) jb_putc(b, '0');
    jb_puts(b, ".0");
  } else {
    jb_put(b, digits, decpt);
    jb_putc(b, '.');
    jb_put(b, digits + decpt, nd - decpt);
  }
}

static bool py_printable(uint32_t cp) {
  if (cp < 0x20 || (cp >= 0x7f && cp <= 0xa0) || cp == 0xad) return false;
  if (cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200f) || (cp >= 0x2028 && cp <= 0x202f) ||
      (cp >= 0x205f && cp <= 0x2064) || (cp >= 0x2066 && cp <= 0x206f) || cp == 0x3000 || cp == 0xfeff ||
      (cp >= 0xd800 && cp <= 0xf8ff) || (cp >= 0xfff9 && cp <= 0xfffb) || cp == 0x61c || cp == 0x180e ||
      (cp >= 0xe0000 && cp <= 0xe007f) || cp >= 0xf0000 || cp == 0xfffe || cp == 0xffff)
    return false;
  return true;
}

static void repr_str(jj_buf *b, const char *s, size_t n) {
  bool has_sq = memchr(s, '\'', n) != NULL, has_dq = memchr(s, '"', n) != NULL;
  char q = has_sq && !has_dq ? '"' : '\'';
  jb_putc(b, q);
  for (size_t i = 0; i < n;) {
    size_t st = i;
    uint32_t cp = (uint32_t)jj_utf8_dec(s, n, &i);
    if (cp == (uint32_t)q || cp == '\\') { jb_putc(b, '\\'); jb_putc(b, (char)cp); }
    else if (cp == '\n') jb_puts(b, "\\n");
    else if (cp == '\r') jb_puts(b, "\\r");
    else if (cp == '\t') jb_puts(b, "\\t");
    else if (!py_printable(cp)) {
      if (cp < 0x100) jb_printf(b, "\\x%02x", cp);
      else if (cp < 0x10000) jb_printf(b, "\\u%04x", cp);
      else jb_printf(b, "\\U%08x", cp);
    } else jb_put(b, s + st, i - st);
  }
  jb_putc(b, q);
}

static void check_depth(jj_ctx *c, int d) {
  if (d > JJ_MAX_DEPTH) jj_fail(c, "value nested too deeply to print");
}

static void repr_in(jj_ctx *c, jj_buf *b, jv v, int d);

static void str_in(jj_ctx *c, jj_buf *b, jv v, int d) {
  switch (v.t) {
  case V_UNDEF: return;
  case V_STR: jb_put(b, v.s, v.n); return;
  default: repr_in(c, b, v, d);
  }
}

static void repr_in(jj_ctx *c, jj_buf *b, jv v, int d) {
  check_depth(c, d);
  switch (v.t) {
  case V_UNDEF: jb_puts(b, "Undefined"); return;
  case V_NONE: jb_puts(b, "None"); return;
  case V_BOOL: jb_puts(b, v.i ? "True" : "False"); return;
  case V_INT: jb_printf(b, "%lld", (long long)v.i); return;
  case V_FLOAT: jj_float_repr(b, v.f); return;
  case V_STR: repr_str(b, v.s, v.n); return;
  case V_LIST: case V_TUPLE: {
    jb_putc(b, v.t == V_LIST ? '[' : '(');
    for (size_t i = 0; i < v.l->n; i++) {
      if (i) jb_puts(b, ", ");
      repr_in(c, b, v.l->v[i], d + 1);
    }
    if (v.t == V_TUPLE && v.l->n == 1) jb_putc(b, ',');
    jb_putc(b, v.t == V_LIST ? ']' : ')');
    return;
  }
  case V_DICT: case V_NS: {
    if (v.t == V_NS) jb_puts(b, "<Namespace ");
    jb_putc(b, '{');
    for (size_t i = 0; i < v.d->n; i++) {
      if (i) jb_puts(b, ", ");
      repr_in(c, b, v.d->k[i], d + 1);
      jb_puts(b, ": ");
      repr_in(c, b, v.d->v[i], d + 1);
    }
    jb_putc(b, '}');
    if (v.t == V_NS) jb_putc(b, '>');
    return;
  }
  case V_MACRO: jb_puts(b, "<Macro>"); return;
  default: jb_printf(b, "<%s object>", jv_typename(v)); return;
  }
  (void)str_in;
}

void jj_str(jj_ctx *c, jj_buf *b, jv v) { str_in(c, b, v, 0); }
void jj_repr(jj_ctx *c, jj_buf *b, jv v) { repr_in(c, b, v, 0); }

jv jj_to_str(jj_ctx *c, jv v) {
  if (v.t == V_STR) return v;
  jj_buf b;
  jb_init(&b, c->a);
  jj_str(c, &b, v);
  jj_check_str(c, b.n);
  return jb_val(&b);
}

/* ---------------- iteration and ordering ---------------- */
jj_list *jj_iter(jj_ctx *c, jv v) {
  switch (v.t) {
  case V_LIST: case V_TUPLE: return v.l;
  case V_UNDEF: return jv_list(c->a, 0).l;
  case V_DICT: {
    jv l = jv_list(c->a, v.d->n);
    jj_memcpy(l.l->v, v.d->k, v.d->n * sizeof(jv)); /* an empty dict has no key array */
    l.l->n = v.d->n;
    return l.l;
  }
  case V_STR: {
    jv l = jv_list(c->a, v.n);
    for (size_t i = 0; i < v.n;) {
      size_t st = i;
      jj_utf8_dec(v.s, v.n, &i);
      l.l->v[l.l->n++] = jv_str(v.s + st, i - st);
    }
    return l.l;
  }
  default: jj_fail(c, "'%s' object is not iterable", jv_typename(v));
  }
}

int jj_compare(jj_ctx *c, jv a, jv b) {
  if (jv_is_num(a) && jv_is_num(b)) {
    if (a.t != V_FLOAT && b.t != V_FLOAT) return a.i < b.i ? -1 : a.i > b.i;
    double x = num_f(a), y = num_f(b);
    return x < y ? -1 : x > y;
  }
  if (a.t == V_STR && b.t == V_STR) {
    size_t m = a.n < b.n ? a.n : b.n;
    int r = m ? memcmp(a.s, b.s, m) : 0;
    if (r) return r < 0 ? -1 : 1;
    return a.n < b.n ? -1 : a.n > b.n;
  }
  if ((a.t == V_LIST || a.t == V_TUPLE) && a.t == b.t) {
    size_t m = a.l->n < b.l->n ? a.l->n : b.l->n;
    for (size_t i = 0; i < m; i++) {
      if (jv_eq(a.l->v[i], b.l->v[i])) continue;
      return jj_compare(c, a.l->v[i], b.l->v[i]);
    }
    return a.l->n < b.l->n ? -1 : a.l->n > b.l->n;
  }
  if (a.t == V_UNDEF) jj_undef_fail(c, a);
  if (b.t == V_UNDEF) jj_undef_fail(c, b);
  jj_fail(c, "'<' not supported between instances of '%s' and '%s'", jv_typename(a), jv_typename(b));
}
