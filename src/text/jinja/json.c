/* JSON in (jansson -> values) and out (tojson = Python json.dumps, ensure_ascii=False). */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "text/jinja/internal.h"

static jv from_json(jj_ctx *c, const json_t *j, int depth) {
  if (depth > JJ_MAX_DEPTH) jj_fail(c, "context JSON nested too deeply");
  switch (json_typeof(j)) {
  case JSON_OBJECT: {
    jv d = jv_dict(c->a);
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)j, k, v) {
      jj_dict_set(c->a, d.d, jv_str(k, strlen(k)), from_json(c, v, depth + 1));
    }
    return d;
  }
  case JSON_ARRAY: {
    size_t n = json_array_size(j);
    jv l = jv_list(c->a, n);
    for (size_t i = 0; i < n; i++) l.l->v[i] = from_json(c, json_array_get(j, i), depth + 1);
    l.l->n = n;
    return l;
  }
  case JSON_STRING: return jv_str(json_string_value(j), json_string_length(j));
  case JSON_INTEGER: return jv_int((int64_t)json_integer_value(j));
  case JSON_REAL: return jv_float(json_real_value(j));
  case JSON_TRUE: return jv_bool(true);
  case JSON_FALSE: return jv_bool(false);
  default: return JV_NONE;
  }
}

jv jj_from_json(jj_ctx *c, const void *json) { return from_json(c, json, 0); }

static void json_str(jj_buf *b, const char *s, size_t n) {
  jb_putc(b, '"');
  size_t run = 0;
  for (size_t i = 0; i < n; i++) {
    unsigned char ch = (unsigned char)s[i];
    const char *esc = NULL;
    char u[8];
    switch (ch) {
    case '"': esc = "\\\""; break;
    case '\\': esc = "\\\\"; break;
    case '\n': esc = "\\n"; break;
    case '\r': esc = "\\r"; break;
    case '\t': esc = "\\t"; break;
    case '\b': esc = "\\b"; break;
    case '\f': esc = "\\f"; break;
    default:
      if (ch < 0x20) {
        snprintf(u, sizeof u, "\\u%04x", ch);
        esc = u;
      }
    }
    if (esc) {
      jb_put(b, s + i - run, run);
      run = 0;
      jb_puts(b, esc);
    } else {
      run++;
    }
  }
  jb_put(b, s + n - run, run);
  jb_putc(b, '"');
}

static void json_float(jj_buf *b, double f) {
  if (isnan(f)) jb_puts(b, "NaN");
  else if (isinf(f)) jb_puts(b, f < 0 ? "-Infinity" : "Infinity");
  else jj_float_repr(b, f);
}

static void newline_indent(jj_buf *b, int indent, int level) {
  jb_putc(b, '\n');
  for (int i = 0; i < indent * level; i++) jb_putc(b, ' ');
}

/* dict key as json.dumps converts it */
static jv json_key(jj_ctx *c, jv k) {
  jj_buf t;
  jb_init(&t, c->a);
  switch (k.t) {
  case V_STR: return k;
  case V_BOOL: return jv_str(k.i ? "true" : "false", k.i ? 4 : 5);
  case V_NONE: return jv_str("null", 4);
  case V_INT: jb_printf(&t, "%lld", (long long)k.i); return jb_val(&t);
  case V_FLOAT: json_float(&t, k.f); return jb_val(&t);
  default: jj_fail(c, "keys must be str, int, float, bool or None, not %s", jv_typename(k));
  }
}

void jj_tojson(jj_ctx *c, jj_buf *b, jv v, int indent, const char *item_sep, const char *key_sep, bool sort_keys,
               int level) {
  if (level > JJ_MAX_DEPTH) jj_fail(c, "Circular reference detected");
  jj_check_str(c, b->n);
  switch (v.t) {
  case V_NONE: jb_puts(b, "null"); return;
  case V_BOOL: jb_puts(b, v.i ? "true" : "false"); return;
  case V_INT: jb_printf(b, "%lld", (long long)v.i); return;
  case V_FLOAT: json_float(b, v.f); return;
  case V_STR: json_str(b, v.s, v.n); return;
  case V_LIST: case V_TUPLE: {
    if (!v.l->n) {
      jb_puts(b, "[]");
      return;
    }
    jb_putc(b, '[');
    for (size_t i = 0; i < v.l->n; i++) {
      if (i) jb_puts(b, item_sep);
      if (indent >= 0) newline_indent(b, indent, level + 1);
      jj_tojson(c, b, v.l->v[i], indent, item_sep, key_sep, sort_keys, level + 1);
    }
    if (indent >= 0) newline_indent(b, indent, level);
    jb_putc(b, ']');
    return;
  }
  case V_DICT: {
    if (!v.d->n) {
      jb_puts(b, "{}");
      return;
    }
    size_t n = v.d->n;
    size_t *ord = jj_alloc(c->a, n * sizeof *ord);
    for (size_t i = 0; i < n; i++) ord[i] = i;
    if (sort_keys) /* insertion sort keeps it simple and stable; dicts here are small */
      for (size_t i = 1; i < n; i++)
        for (size_t j = i; j > 0 && jj_compare(c, v.d->k[ord[j]], v.d->k[ord[j - 1]]) < 0; j--) {
          size_t t = ord[j];
          ord[j] = ord[j - 1];
          ord[j - 1] = t;
        }
    jb_putc(b, '{');
    for (size_t i = 0; i < n; i++) {
      if (i) jb_puts(b, item_sep);
      if (indent >= 0) newline_indent(b, indent, level + 1);
      jv k = json_key(c, v.d->k[ord[i]]);
      json_str(b, k.s, k.n);
      jb_puts(b, key_sep);
      jj_tojson(c, b, v.d->v[ord[i]], indent, item_sep, key_sep, sort_keys, level + 1);
    }
    if (indent >= 0) newline_indent(b, indent, level);
    jb_putc(b, '}');
    return;
  }
  default: jj_fail(c, "Object of type %s is not JSON serializable", jv_typename(v));
  }
}
