/* Operators, comparisons, attribute and item lookup, slicing. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "text/jinja/internal.h"

static jv method(jj_ctx *c, jv self, const char *name) {
  jj_method *m = jj_alloc(c->a, sizeof *m);
  m->self = self;
  m->name = name;
  return (jv){.t = V_METHOD, .p = m};
}

static jv loop_attr(jj_ctx *c, jj_loop *L, const char *name) {
  size_t n = L->items->n, i = L->idx;
  if (!strcmp(name, "index")) return jv_int((int64_t)i + 1);
  if (!strcmp(name, "index0")) return jv_int((int64_t)i);
  if (!strcmp(name, "revindex")) return jv_int((int64_t)(n - i));
  if (!strcmp(name, "revindex0")) return jv_int((int64_t)(n - i - 1));
  if (!strcmp(name, "first")) return jv_bool(i == 0);
  if (!strcmp(name, "last")) return jv_bool(i + 1 == n);
  if (!strcmp(name, "length")) return jv_int((int64_t)n);
  if (!strcmp(name, "depth")) return jv_int(L->depth0 + 1);
  if (!strcmp(name, "depth0")) return jv_int(L->depth0);
  if (!strcmp(name, "previtem"))
    return i > 0 ? L->items->v[i - 1] : jv_undef_named("there is no previous item");
  if (!strcmp(name, "nextitem"))
    return i + 1 < n ? L->items->v[i + 1] : jv_undef_named("there is no next item");
  if (!strcmp(name, "cycle") || !strcmp(name, "changed")) return method(c, (jv){.t = V_LOOP, .p = L}, name);
  return jj_undef_fmt(c, "'LoopContext object' has no attribute '%.*s'", name, strlen(name));
}

static jv unsafe(jj_ctx *c, jv obj, const char *name) {
  jj_buf b;
  jb_init(&b, c->a);
  jb_printf(&b, "access to attribute '%s' of '%s' object is unsafe.", name, jv_typename(obj));
  jb_putc(&b, 0);
  return jv_undef_named(b.p);
}

jv jj_getattr(jj_ctx *c, jv obj, const char *name, size_t n) {
  switch (obj.t) {
  case V_UNDEF: jj_undef_fail(c, obj);
  case V_DICT:
    if (jj_method_exists(obj, name) == 2) return unsafe(c, obj, name);
    if (jj_method_exists(obj, name)) return method(c, obj, name);
    {
      jv *v = jj_dict_get(obj.d, jv_str(name, n));
      if (v) return *v;
    }
    return jj_undef_fmt(c, "'dict object' has no attribute '%.*s'", name, n);
  case V_NS: {
    jv *v = jj_dict_get(obj.d, jv_str(name, n));
    if (v) return *v;
    return jj_undef_fmt(c, "'Namespace object' has no attribute '%.*s'", name, n);
  }
  case V_LOOP: return loop_attr(c, obj.p, name);
  case V_CYCLER:
    if (!strcmp(name, "current")) {
      jj_cycler *cy = obj.p;
      return cy->items->n ? cy->items->v[cy->pos] : JV_NONE;
    }
    if (!strcmp(name, "next") || !strcmp(name, "reset")) return method(c, obj, name);
    break;
  default:
    if (jj_method_exists(obj, name) == 2) return unsafe(c, obj, name);
    if (jj_method_exists(obj, name)) return method(c, obj, name);
    break;
  }
  jj_buf b;
  jb_init(&b, c->a);
  jb_printf(&b, "'%s object' has no attribute '%.*s'", jv_typename(obj), (int)(n > 100 ? 100 : n), name);
  jb_putc(&b, 0);
  return jv_undef_named(b.p);
}

static int64_t as_index(jv k, bool *ok) {
  *ok = k.t == V_INT || k.t == V_BOOL;
  return k.i;
}

/* Python slice over n elements -> indices */
static size_t slice_idx(jj_ctx *c, jv sl, size_t n, size_t *out, size_t maxout) {
  jj_list *p = sl.l; /* [start, stop, step] as values, None when omitted */
  int64_t step = 1;
  if (p->v[2].t != V_NONE) {
    bool ok;
    step = as_index(p->v[2], &ok);
    if (!ok) jj_fail(c, "slice indices must be integers or None");
    if (step == 0) jj_fail(c, "slice step cannot be zero");
  }
  int64_t N = (int64_t)n, start, stop;
  for (int k = 0; k < 2; k++) {
    jv v = p->v[k];
    int64_t *dst = k == 0 ? &start : &stop;
    if (v.t == V_NONE) {
      *dst = k == 0 ? (step > 0 ? 0 : N - 1) : (step > 0 ? N : -1 - N);
      if (k == 1 && step < 0) *dst = -1;
      if (k == 0 && step < 0) *dst = N - 1;
      continue;
    }
    bool ok;
    int64_t x = as_index(v, &ok);
    if (!ok) jj_fail(c, "slice indices must be integers or None");
    if (x < 0) {
      x += N;
      if (x < 0) x = step > 0 ? 0 : -1;
    } else if (x >= N) {
      x = step > 0 ? N : N - 1;
    }
    *dst = x;
  }
  size_t cnt = 0;
  if (step > 0)
    for (int64_t i = start; i < stop && cnt < maxout; i += step) out[cnt++] = (size_t)i;
  else
    for (int64_t i = start; i > stop && cnt < maxout; i += step) out[cnt++] = (size_t)i;
  return cnt;
}

static jv do_slice(jj_ctx *c, jv obj, jv sl) {
  if (obj.t == V_STR) {
    size_t ncp = jj_utf8_len(obj.s, obj.n);
    size_t *off = jj_alloc(c->a, (ncp + 1) * sizeof *off), *idx = jj_alloc(c->a, (ncp + 1) * sizeof *idx);
    size_t i = 0, k = 0;
    while (i < obj.n) {
      off[k++] = i;
      jj_utf8_dec(obj.s, obj.n, &i);
    }
    off[k] = obj.n;
    size_t cnt = slice_idx(c, sl, ncp, idx, ncp);
    jj_buf b;
    jb_init(&b, c->a);
    for (size_t j = 0; j < cnt; j++) jb_put(&b, obj.s + off[idx[j]], off[idx[j] + 1] - off[idx[j]]);
    return jb_val(&b);
  }
  if (obj.t == V_LIST || obj.t == V_TUPLE) {
    size_t n = obj.l->n;
    size_t *idx = jj_alloc(c->a, (n + 1) * sizeof *idx);
    size_t cnt = slice_idx(c, sl, n, idx, n);
    jv r = jv_list(c->a, cnt);
    for (size_t j = 0; j < cnt; j++) r.l->v[j] = obj.l->v[idx[j]];
    r.l->n = cnt;
    r.t = obj.t;
    return r;
  }
  return jv_undef_named("object is not sliceable");
}

jv jj_getitem(jj_ctx *c, jv obj, jv key) {
  if (obj.t == V_UNDEF) jj_undef_fail(c, obj);
  if (key.t == V_TUPLE && key.l->n == 3 && key.flags == 2) return do_slice(c, obj, key);
  switch (obj.t) {
  case V_DICT: {
    jv *v = jj_dict_get(obj.d, key);
    if (v) return *v;
    break;
  }
  case V_LIST: case V_TUPLE: {
    bool ok;
    int64_t i = as_index(key, &ok);
    if (ok) {
      if (i < 0) i += (int64_t)obj.l->n;
      if (i >= 0 && i < (int64_t)obj.l->n) return obj.l->v[i];
    }
    break;
  }
  case V_STR: {
    bool ok;
    int64_t i = as_index(key, &ok);
    if (ok) {
      int64_t n = (int64_t)jj_utf8_len(obj.s, obj.n);
      if (i < 0) i += n;
      if (i >= 0 && i < n) {
        size_t p = 0;
        for (int64_t k = 0; k < i; k++) jj_utf8_dec(obj.s, obj.n, &p);
        size_t st = p;
        jj_utf8_dec(obj.s, obj.n, &p);
        return jv_str(obj.s + st, p - st);
      }
    }
    break;
  }
  default: break;
  }
  if (key.t == V_STR) {
    jv r = jj_getattr(c, obj, key.s, key.n);
    if (r.t != V_UNDEF || obj.t != V_DICT) return r;
  }
  if (obj.t == V_DICT && key.t == V_STR) return jj_undef_fmt(c, "'dict object' has no attribute '%.*s'", key.s, key.n);
  jj_buf b;
  jb_init(&b, c->a);
  jb_printf(&b, "'%s object' has no attribute '", jv_typename(obj));
  jj_repr(c, &b, key);
  jb_puts(&b, "'");
  jb_putc(&b, 0);
  return jv_undef_named(b.p);
}

/* ---------------- operators ---------------- */
static double fnum(jv v) { return v.t == V_FLOAT ? v.f : (double)v.i; }

static _Noreturn void bad_operands(jj_ctx *c, const char *op, jv a, jv b) {
  if (a.t == V_UNDEF) jj_undef_fail(c, a);
  if (b.t == V_UNDEF) jj_undef_fail(c, b);
  if (a.t == V_STR && !strcmp(op, "+")) jj_fail(c, "can only concatenate str (not \"%s\") to str", jv_typename(b));
  jj_fail(c, "unsupported operand type(s) for %s: '%s' and '%s'", op, jv_typename(a), jv_typename(b));
}

static jv repeat(jj_ctx *c, jv seq, int64_t k) {
  if (k < 0) k = 0;
  if (seq.t == V_STR) {
    if (seq.n && (uint64_t)k > JJ_MAX_STRING / seq.n) jj_check_str(c, (size_t)JJ_MAX_STRING + 1);
    jj_buf b;
    jb_init(&b, c->a);
    for (int64_t i = 0; i < k; i++) jb_put(&b, seq.s, seq.n);
    return jb_val(&b);
  }
  if (seq.l->n && (uint64_t)k > (JJ_MAX_STRING / 16) / seq.l->n) jj_fail_code(c, MIMO_E_TOO_LONG, "list too long");
  jv r = jv_list(c->a, seq.l->n * (size_t)k);
  for (int64_t i = 0; i < k; i++)
    for (size_t j = 0; j < seq.l->n; j++) r.l->v[r.l->n++] = seq.l->v[j];
  r.t = seq.t;
  return r;
}

jv jj_binop(jj_ctx *c, int op, jv a, jv b) {
  static const char *names[] = {"+", "-", "*", "/", "//", "%", "**"};
  bool num = jv_is_num(a) && jv_is_num(b);
  bool ints = num && a.t != V_FLOAT && b.t != V_FLOAT;
  int64_t r;
  switch (op) {
  case OP_ADD:
    if (ints) {
      if (__builtin_add_overflow(a.i, b.i, &r)) jj_fail(c, "integer overflow");
      return jv_int(r);
    }
    if (num) return jv_float(fnum(a) + fnum(b));
    if (a.t == V_STR && b.t == V_STR) {
      jj_check_str(c, (size_t)a.n + b.n);
      jj_buf s;
      jb_init(&s, c->a);
      jb_put(&s, a.s, a.n);
      jb_put(&s, b.s, b.n);
      jv v = jb_val(&s);
      v.flags = (a.flags | b.flags) & VF_SAFE;
      return v;
    }
    if ((a.t == V_LIST || a.t == V_TUPLE) && a.t == b.t) {
      jv l = jv_list(c->a, a.l->n + b.l->n);
      jj_memcpy(l.l->v, a.l->v, a.l->n * sizeof(jv));
      if (b.l->n) jj_memcpy(l.l->v + a.l->n, b.l->v, b.l->n * sizeof(jv));
      l.l->n = a.l->n + b.l->n;
      l.t = a.t;
      return l;
    }
    break;
  case OP_SUB:
    if (ints) {
      if (__builtin_sub_overflow(a.i, b.i, &r)) jj_fail(c, "integer overflow");
      return jv_int(r);
    }
    if (num) return jv_float(fnum(a) - fnum(b));
    break;
  case OP_MUL:
    if (ints) {
      if (__builtin_mul_overflow(a.i, b.i, &r)) jj_fail(c, "integer overflow");
      return jv_int(r);
    }
    if (num) return jv_float(fnum(a) * fnum(b));
    if ((a.t == V_STR || jv_is_seq(a)) && (b.t == V_INT || b.t == V_BOOL)) return repeat(c, a, b.i);
    if ((b.t == V_STR || jv_is_seq(b)) && (a.t == V_INT || a.t == V_BOOL)) return repeat(c, b, a.i);
    break;
  case OP_DIV:
    if (num) {
      if (fnum(b) == 0) jj_fail(c, "division by zero");
      return jv_float(fnum(a) / fnum(b));
    }
    break;
  case OP_FLOORDIV:
    if (ints) {
      if (b.i == 0) jj_fail(c, "integer division or modulo by zero");
      if (a.i == INT64_MIN && b.i == -1) jj_fail(c, "integer overflow");
      int64_t q = a.i / b.i;
      if ((a.i % b.i != 0) && ((a.i < 0) != (b.i < 0))) q--;
      return jv_int(q);
    }
    if (num) {
      if (fnum(b) == 0) jj_fail(c, "float floor division by zero");
      return jv_float(floor(fnum(a) / fnum(b)));
    }
    break;
  case OP_MOD:
    if (ints) {
      if (b.i == 0) jj_fail(c, "integer division or modulo by zero");
      if (b.i == -1) return jv_int(0);
      int64_t m = a.i % b.i;
      if (m != 0 && ((m < 0) != (b.i < 0))) m += b.i;
      return jv_int(m);
    }
    if (num) {
      double x = fnum(a), y = fnum(b);
      if (y == 0) jj_fail(c, "float modulo");
      double m = fmod(x, y);
      if (m != 0 && ((m < 0) != (y < 0))) m += y;
      else if (m == 0) m = copysign(0.0, y);
      return jv_float(m);
    }
    if (a.t == V_STR) return jj_percent_format(c, a, b);
    break;
  case OP_POW:
    if (ints && b.i >= 0) {
      int64_t res = 1, base = a.i, e = b.i;
      while (e > 0) {
        if (e & 1)
          if (__builtin_mul_overflow(res, base, &res)) jj_fail(c, "integer overflow");
        e >>= 1;
        if (e && __builtin_mul_overflow(base, base, &base)) jj_fail(c, "integer overflow");
      }
      return jv_int(res);
    }
    if (num) {
      if (fnum(a) == 0 && fnum(b) < 0) jj_fail(c, "0.0 cannot be raised to a negative power");
      return jv_float(pow(fnum(a), fnum(b)));
    }
    break;
  }
  bad_operands(c, names[op], a, b);
}

bool jj_contains(jj_ctx *c, jv hay, jv x) {
  switch (hay.t) {
  case V_STR:
    if (x.t != V_STR) {
      if (x.t == V_UNDEF) jj_undef_fail(c, x);
      jj_fail(c, "'in <string>' requires string as left operand, not %s", jv_typename(x));
    }
    if (x.n == 0) return true;
    return memmem(hay.s, hay.n, x.s, x.n) != NULL;
  case V_LIST: case V_TUPLE:
    for (size_t i = 0; i < hay.l->n; i++)
      if (jv_eq(hay.l->v[i], x)) return true;
    return false;
  case V_DICT: return jj_dict_get(hay.d, x) != NULL;
  case V_UNDEF: return false;
  default: jj_fail(c, "argument of type '%s' is not iterable", jv_typename(hay));
  }
}

bool jj_compare_op(jj_ctx *c, int op, jv a, jv b) {
  switch (op) {
  case OP_EQ: return jv_eq(a, b);
  case OP_NE: return !jv_eq(a, b);
  case OP_LT: return jj_compare(c, a, b) < 0;
  case OP_LE: return jj_compare(c, a, b) <= 0;
  case OP_GT: return jj_compare(c, a, b) > 0;
  case OP_GE: return jj_compare(c, a, b) >= 0;
  case OP_IN: return jj_contains(c, b, a);
  default: return !jj_contains(c, b, a);
  }
}

