/* Value side of the qwen3_xml tool-call parser: JSON escaping, schema types, value
 * conversion (JSON, then Python literals) and the JSON writer. See docs/parsers.md. */
#include "text/toolcall_internal.h"

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void tc_put(tbuf *b, const char *s, size_t n) {
  if (b->oom)
    return;
  if (b->n + n + 1 > b->cap) {
    size_t c = b->cap ? b->cap : 64;
    while (c < b->n + n + 1)
      c *= 2;
    char *q = realloc(b->p, c);
    if (!q) {
      b->oom = 1;
      return;
    }
    b->p = q;
    b->cap = c;
  }
  if (n)
    memcpy(b->p + b->n, s, n);
  b->n += n;
  b->p[b->n] = 0;
}
#define put tc_put
static void puts_(tbuf *b, const char *s) { put(b, s, strlen(s)); }

int tc_is_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }
static int lower(int c) { return c >= 'A' && c <= 'Z' ? c + 32 : c; }
static int ieq(const char *s, size_t n, const char *lit) {
  if (n != strlen(lit))
    return 0;
  for (size_t i = 0; i < n; i++)
    if (lower((unsigned char)s[i]) != lit[i])
      return 0;
  return 1;
}

/* ---- UTF-8 and JSON text -------------------------------------------------- */

/* Length of the valid UTF-8 sequence at s (1..4); 0 invalid (one byte is bad);
 * -1 a valid prefix cut by the end of the buffer. */
static int utf8_seq(const unsigned char *s, size_t n) {
  unsigned c = s[0];
  int len;
  unsigned lo = 0x80, hi = 0xbf;
  if (c < 0x80)
    return 1;
  if (c >= 0xc2 && c <= 0xdf)
    len = 2;
  else if (c >= 0xe0 && c <= 0xef) {
    len = 3;
    if (c == 0xe0)
      lo = 0xa0;
    if (c == 0xed)
      hi = 0x9f; /* no surrogates */
  } else if (c >= 0xf0 && c <= 0xf4) {
    len = 4;
    if (c == 0xf0)
      lo = 0x90;
    if (c == 0xf4)
      hi = 0x8f;
  } else
    return 0;
  for (int i = 1; i < len; i++) {
    if ((size_t)i >= n)
      return -1;
    unsigned b = s[i];
    if (b < (i == 1 ? lo : 0x80) || b > (i == 1 ? hi : 0xbf))
      return 0;
  }
  return len;
}

int tc_utf8_valid(const char *s, size_t n) {
  for (size_t i = 0; i < n;) {
    int l = utf8_seq((const unsigned char *)s + i, n - i);
    if (l <= 0)
      return 0;
    i += (size_t)l;
  }
  return 1;
}

/* Appends s JSON-escaped (no quotes). Invalid UTF-8 becomes \ufffd. If !final, a
 * trailing incomplete sequence is not written; returns the bytes consumed. */
size_t tc_esc(tbuf *o, const char *s, size_t n, int final) {
  size_t i = 0;
  while (i < n) {
    unsigned char c = (unsigned char)s[i];
    int l = utf8_seq((const unsigned char *)s + i, n - i);
    if (l < 0 && !final)
      break;
    if (l <= 0) {
      puts_(o, "\\ufffd");
      i++;
      continue;
    }
    if (l > 1) {
      put(o, s + i, (size_t)l);
    } else if (c == '"' || c == '\\') {
      char e[2] = {'\\', (char)c};
      put(o, e, 2);
    } else if (c < 0x20) {
      const char *e = c == '\n' ? "\\n" : c == '\r' ? "\\r" : c == '\t' ? "\\t" : c == '\b' ? "\\b" : c == '\f' ? "\\f" : NULL;
      char u[8];
      if (!e) {
        snprintf(u, sizeof u, "\\u%04x", c);
        e = u;
      }
      puts_(o, e);
    } else {
      put(o, s + i, 1);
    }
    i += (size_t)l;
  }
  return i;
}

static void put_real(tbuf *o, double v, int mark_real) {
  char t[40];
  if (v == floor(v) && fabs(v) < 9007199254740992.0) {
    snprintf(t, sizeof t, mark_real ? "%.1f" : "%.0f", v == 0 ? 0.0 : v);
  } else {
    for (int prec = 15; prec <= 17; prec++) { /* shortest text that reads back exactly */
      snprintf(t, sizeof t, "%.*g", prec, v);
      if (strtod(t, NULL) == v)
        break;
    }
  }
  puts_(o, t);
}

/* Writes v as JSON: ", " and ": " separators, insertion order, UTF-8 unescaped. */
static void write_json(tbuf *o, const json_t *v) {
  char t[32];
  switch (json_typeof(v)) {
  case JSON_OBJECT: {
    puts_(o, "{");
    const char *k;
    json_t *x;
    int first = 1;
    json_object_foreach((json_t *)v, k, x) {
      puts_(o, first ? "\"" : ", \"");
      tc_esc(o, k, strlen(k), 1);
      puts_(o, "\": ");
      write_json(o, x);
      first = 0;
    }
    puts_(o, "}");
    break;
  }
  case JSON_ARRAY:
    puts_(o, "[");
    for (size_t i = 0; i < json_array_size(v); i++) {
      if (i)
        puts_(o, ", ");
      write_json(o, json_array_get(v, i));
    }
    puts_(o, "]");
    break;
  case JSON_STRING:
    puts_(o, "\"");
    tc_esc(o, json_string_value(v), json_string_length(v), 1);
    puts_(o, "\"");
    break;
  case JSON_INTEGER:
    snprintf(t, sizeof t, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
    puts_(o, t);
    break;
  case JSON_REAL:
    put_real(o, json_real_value(v), 1);
    break;
  case JSON_TRUE:
    puts_(o, "true");
    break;
  case JSON_FALSE:
    puts_(o, "false");
    break;
  default:
    puts_(o, "null");
  }
}

/* ---- Python literals (ast.literal_eval subset) ----------------------------- */

typedef struct pyp {
  const char *s;
  size_t n, i;
  int depth;
} pyp;

static void py_ws(pyp *p) {
  while (p->i < p->n && tc_is_ws(p->s[p->i]))
    p->i++;
}

static void put_cp(tbuf *o, uint32_t cp) {
  char u[4];
  size_t l;
  if (cp < 0x80) {
    u[0] = (char)cp;
    l = 1;
  } else if (cp < 0x800) {
    u[0] = (char)(0xc0 | cp >> 6);
    u[1] = (char)(0x80 | (cp & 0x3f));
    l = 2;
  } else if (cp < 0x10000) {
    u[0] = (char)(0xe0 | cp >> 12);
    u[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
    u[2] = (char)(0x80 | (cp & 0x3f));
    l = 3;
  } else {
    u[0] = (char)(0xf0 | cp >> 18);
    u[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
    u[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
    u[3] = (char)(0x80 | (cp & 0x3f));
    l = 4;
  }
  put(o, u, l);
}

static int hexv(char c) {
  return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

static json_t *py_string(pyp *p) {
  char q = p->s[p->i++];
  tbuf b = {0};
  put(&b, "", 0);
  while (p->i < p->n && p->s[p->i] != q) {
    char c = p->s[p->i++];
    if (c == '\n' || (c == '\\' && p->i >= p->n))
      goto bad;
    if (c != '\\') {
      put(&b, &c, 1);
      continue;
    }
    char e = p->s[p->i++];
    const char *simple = strchr("\\'\"abfnrtv\n", e);
    if (simple && e) {
      static const char map[] = "\\'\"\a\b\f\n\r\t\v";
      if (e != '\n') /* backslash-newline: line continuation */
        put(&b, &map[simple - "\\'\"abfnrtv\n"], 1);
    } else if (e == 'x' || e == 'u' || e == 'U') {
      int nd = e == 'x' ? 2 : e == 'u' ? 4 : 8;
      uint32_t cp = 0;
      for (int k = 0; k < nd; k++) {
        int h = p->i < p->n ? hexv(p->s[p->i]) : -1;
        if (h < 0)
          goto bad;
        cp = cp * 16 + (uint32_t)h;
        p->i++;
      }
      if (cp > 0x10ffff)
        goto bad;
      put_cp(&b, cp);
    } else if (e >= '0' && e <= '7') {
      uint32_t cp = (uint32_t)(e - '0');
      for (int k = 0; k < 2 && p->i < p->n && p->s[p->i] >= '0' && p->s[p->i] <= '7'; k++)
        cp = cp * 8 + (uint32_t)(p->s[p->i++] - '0');
      put_cp(&b, cp);
    } else { /* unknown escape: kept verbatim, as Python does */
      put(&b, "\\", 1);
      put(&b, &e, 1);
    }
  }
  if (p->i >= p->n || b.oom)
    goto bad;
  p->i++;
  json_t *r = json_stringn_nocheck(b.p, b.n);
  free(b.p);
  return r;
bad:
  free(b.p);
  return NULL;
}

static json_t *py_value(pyp *p);

static json_t *py_number(pyp *p) {
  size_t st = p->i;
  int real = 0;
  while (p->i < p->n && strchr("0123456789.eE+-_", p->s[p->i]) && p->s[p->i]) {
    if (strchr(".eE", p->s[p->i]))
      real = 1;
    p->i++;
  }
  char t[64];
  size_t k = 0;
  for (size_t j = st; j < p->i; j++)
    if (p->s[j] != '_' && k < sizeof t - 1)
      t[k++] = p->s[j];
  t[k] = 0;
  if (k == 0 || p->i - st >= sizeof t)
    return NULL;
  char *end;
  errno = 0;
  if (real) {
    double v = strtod(t, &end);
    return *end || !isfinite(v) ? NULL : json_real(v);
  }
  long long v = strtoll(t, &end, 10);
  return *end || errno ? NULL : json_integer(v);
}

static json_t *py_container(pyp *p, char close, int is_obj) {
  json_t *r = is_obj ? json_object() : json_array();
  p->i++;
  for (;;) {
    py_ws(p);
    if (p->i < p->n && p->s[p->i] == close) {
      p->i++;
      return r;
    }
    json_t *k = NULL, *v = py_value(p);
    if (!v)
      goto bad;
    if (is_obj) {
      k = v;
      py_ws(p);
      if (p->i >= p->n || p->s[p->i] != ':' || json_is_object(k) || json_is_array(k))
        goto badkv;
      p->i++;
      if (!(v = py_value(p)))
        goto badkv;
      /* Python json.dumps turns scalar keys into their JSON text. */
      tbuf kt = {0};
      if (json_is_string(k))
        put(&kt, json_string_value(k), json_string_length(k));
      else
        write_json(&kt, k);
      int bad = kt.oom || !kt.p || memchr(kt.p, 0, kt.n);
      if (bad)
        json_decref(v); /* json_object_setn_new_nocheck takes v, even when it fails */
      bad = bad || json_object_setn_new_nocheck(r, kt.p, kt.n, v);
      free(kt.p);
      json_decref(k);
      if (bad)
        goto bad;
    } else if (json_array_append_new(r, v)) {
      goto bad;
    }
    py_ws(p);
    if (p->i < p->n && p->s[p->i] == ',') {
      p->i++;
      continue;
    }
    if (p->i < p->n && p->s[p->i] == close) {
      p->i++;
      return r;
    }
    goto bad;
  badkv:
    json_decref(k);
    if (v != k)
      json_decref(v);
    goto bad;
  }
bad:
  json_decref(r);
  return NULL;
}

static json_t *py_value(pyp *p) {
  py_ws(p);
  if (p->i >= p->n || ++p->depth > 64)
    return NULL;
  json_t *r = NULL;
  char c = p->s[p->i];
  const char *w = p->s + p->i;
  size_t left = p->n - p->i;
  if (c == '{')
    r = py_container(p, '}', 1);
  else if (c == '[')
    r = py_container(p, ']', 0);
  else if (c == '(')
    r = py_container(p, ')', 0);
  else if (c == '\'' || c == '"')
    r = py_string(p);
  else if ((c >= '0' && c <= '9') || c == '-' || c == '+' || c == '.')
    r = py_number(p);
  else if (left >= 4 && !memcmp(w, "True", 4))
    r = json_true(), p->i += 4;
  else if (left >= 5 && !memcmp(w, "False", 5))
    r = json_false(), p->i += 5;
  else if (left >= 4 && !memcmp(w, "None", 4))
    r = json_null(), p->i += 4;
  p->depth--;
  return r;
}

static json_t *py_literal(const char *s, size_t n) {
  pyp p = {s, n, 0, 0};
  json_t *v = py_value(&p);
  py_ws(&p);
  if (v && p.i != n) {
    json_decref(v);
    v = NULL;
  }
  return v;
}

/* ---- value typing ---------------------------------------------------------- */

static int type_of_name(const char *t) {
  char l[24];
  size_t k = 0;
  for (; t[k] && k < sizeof l - 1; k++)
    l[k] = (char)lower((unsigned char)t[k]);
  l[k] = 0;
  static const char *str[] = {"string", "str", "text", "varchar", "char", "enum"};
  for (size_t i = 0; i < sizeof str / sizeof *str; i++)
    if (!strcmp(l, str[i]))
      return VT_STRING;
  if (!strncmp(l, "int", 3) || !strncmp(l, "uint", 4) || !strncmp(l, "long", 4) || !strncmp(l, "short", 5) ||
      !strncmp(l, "unsigned", 8))
    return VT_INT;
  if (!strncmp(l, "num", 3) || !strncmp(l, "float", 5) || !strcmp(l, "double"))
    return VT_NUM;
  if (!strcmp(l, "boolean") || !strcmp(l, "bool") || !strcmp(l, "binary"))
    return VT_BOOL;
  if (!strcmp(l, "null"))
    return VT_ANY;
  return VT_JSON; /* object, array, dict, list and unknown type names */
}

const json_t *tc_find_props(const json_t *tools, const char *name) {
  size_t i;
  const json_t *t;
  if (!json_is_array(tools))
    return NULL;
  json_array_foreach(tools, i, t) {
    const json_t *f = json_object_get(t, "function");
    if (!json_is_object(f))
      f = t;
    const json_t *nm = json_object_get(f, "name");
    if (json_is_string(nm) && !strcmp(json_string_value(nm), name)) {
      const json_t *pr = json_object_get(json_object_get(f, "parameters"), "properties");
      return json_is_object(pr) ? pr : NULL;
    }
  }
  return NULL;
}

int tc_param_type(const json_t *props, const char *key, size_t klen) {
  const json_t *s = props ? json_object_getn(props, key, klen) : NULL;
  const json_t *ty = json_object_get(s, "type");
  if (json_is_string(ty))
    return type_of_name(json_string_value(ty));
  if (json_is_array(ty)) { /* e.g. ["string", "null"]: the first non-null type */
    size_t i;
    const json_t *x;
    json_array_foreach(ty, i, x) {
      if (json_is_string(x) && strcmp(json_string_value(x), "null"))
        return type_of_name(json_string_value(x));
    }
  }
  return VT_ANY;
}

static void trim(const char **s, size_t *n) {
  while (*n && tc_is_ws(**s))
    (*s)++, (*n)--;
  while (*n && tc_is_ws((*s)[*n - 1]))
    (*n)--;
}

/* Non-string value → JSON text (strings fall back to a JSON string). */
void tc_convert(tbuf *o, int vt, const char *v, size_t n) {
  const char *t = v;
  size_t tn = n;
  trim(&t, &tn);
  if (ieq(v, n, "null")) {
    puts_(o, "null");
    return;
  }
  if (vt == VT_INT && tn && tn < 24) {
    char b[24], *end;
    memcpy(b, t, tn);
    b[tn] = 0;
    errno = 0;
    long long x = strtoll(b, &end, 10);
    if (!*end && !errno && !tc_is_ws(b[0])) {
      snprintf(b, sizeof b, "%lld", x);
      puts_(o, b);
      return;
    }
  } else if (vt == VT_NUM && tn && tn < 64) {
    char b[64], *end;
    memcpy(b, t, tn);
    b[tn] = 0;
    double x = strtod(b, &end);
    if (strspn(b, "0123456789+-.eE") == tn && !*end && isfinite(x)) {
      put_real(o, x, 0);
      return;
    }
  } else if (vt == VT_BOOL && (ieq(t, tn, "true") || ieq(t, tn, "false"))) {
    puts_(o, lower((unsigned char)t[0]) == 't' ? "true" : "false");
    return;
  } else if (vt == VT_JSON || vt == VT_ANY) {
    json_t *j = json_loadb(v, n, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
    if (!j && vt == VT_JSON)
      j = py_literal(v, n);
    if (j) {
      write_json(o, j);
      json_decref(j);
      return;
    }
  }
  puts_(o, "\"");
  tc_esc(o, v, n, 1);
  puts_(o, "\"");
}
