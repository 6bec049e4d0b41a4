/* Evaluator: expressions, statements, scopes and calls (operators and lookups: ops.c). */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "text/jinja/internal.h"

static void vfail(jj_ctx *c, mimo_status code, const char *fmt, va_list ap) {
  char m[400];
  vsnprintf(m, sizeof m, fmt, ap);
  snprintf(c->errmsg, sizeof c->errmsg, "template line %d: %s", c->line, m);
  c->errcode = code;
  longjmp(*c->err, 1);
}

_Noreturn void jj_fail(jj_ctx *c, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vfail(c, MIMO_E_INVALID, fmt, ap);
  va_end(ap);
  longjmp(*c->err, 1);
}

_Noreturn void jj_fail_code(jj_ctx *c, mimo_status code, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vfail(c, code, fmt, ap);
  va_end(ap);
  longjmp(*c->err, 1);
}

_Noreturn void jj_undef_fail(jj_ctx *c, jv u) {
  jj_fail(c, "%s", u.s ? u.s : "value is undefined");
}

void jj_check_str(jj_ctx *c, size_t n) {
  if (n > JJ_MAX_STRING) jj_fail_code(c, MIMO_E_TOO_LONG, "string longer than %u bytes", JJ_MAX_STRING);
}

jv jj_undef_fmt(jj_ctx *c, const char *fmt, const char *a, size_t an) {
  jj_buf b;
  jb_init(&b, c->a);
  jb_printf(&b, fmt, (int)(an > 100 ? 100 : an), a);
  jb_putc(&b, 0);
  return jv_undef_named(b.p);
}

/* ---------------- scopes ---------------- */
static jj_scope *scope_new(jj_ctx *c, jj_scope *parent) {
  jj_scope *s = jj_alloc(c->a, sizeof *s);
  s->parent = parent;
  return s;
}

static jv lookup(jj_ctx *c, jj_scope *s, const char *name) {
  jv k = jv_str(name, strlen(name));
  for (; s; s = s->parent) {
    jv *v = jj_dict_get(&s->vars, k);
    if (v) return *v;
  }
  return jj_undef_fmt(c, "'%.*s' is undefined", name, strlen(name));
}

static void setvar(jj_ctx *c, jj_scope *s, const char *name, jv v) {
  jj_dict_set(c->a, &s->vars, jv_str(name, strlen(name)), v);
}

static void assign(jj_ctx *c, jj_node *target, jv v, jj_scope *s) {
  if (target->kind == N_NAME) {
    setvar(c, s, target->name, v);
  } else if (target->kind == N_NSREF) {
    jv ns = lookup(c, s, target->a->name);
    if (ns.t != V_NS) jj_fail(c, "can only assign to namespace objects");
    jj_dict_set(c->a, ns.d, jv_str(target->name, strlen(target->name)), v);
  } else { /* tuple unpacking */
    if (v.t == V_UNDEF) jj_undef_fail(c, v);
    jj_list *l = jj_iter(c, v);
    if ((int)l->n != target->nitems)
      jj_fail(c, "%s values to unpack (expected %d, got %zu)", (int)l->n > target->nitems ? "too many" : "not enough",
              target->nitems, l->n);
    for (int i = 0; i < target->nitems; i++) assign(c, target->items[i], l->v[i], s);
  }
}

/* ---------------- output ---------------- */
static void emit(jj_ctx *c, const char *s, size_t n) {
  if (c->out.n + n > JJ_MAX_OUTPUT) jj_fail_code(c, MIMO_E_TOO_LONG, "output longer than %u bytes", JJ_MAX_OUTPUT);
  jb_put(&c->out, s, n);
}

/* runs body with output captured into a new string */
static jv capture(jj_ctx *c, jj_node **body, int n, jj_scope *s) {
  jj_buf saved = c->out;
  jb_init(&c->out, c->a);
  jj_exec_block(c, body, n, s);
  jv r = jb_val(&c->out);
  c->out = saved;
  return r;
}

/* ---------------- attribute / item lookup ---------------- */
/* ---------------- calls ---------------- */

static void eval_args(jj_ctx *c, jj_node *n, jj_scope *s, jj_args *a) {
  int np = n->nitems, nk = n->nnames;
  jj_list *extra = NULL;
  jj_dict *extrak = NULL;
  if (n->c) {
    jv v = jj_eval(c, n->c, s);
    extra = jj_iter(c, v);
  }
  if (n->d) {
    jv v = jj_eval(c, n->d, s);
    if (v.t != V_DICT) jj_fail(c, "argument after ** must be a mapping");
    extrak = v.d;
  }
  int tp = np + (extra ? (int)extra->n : 0), tk = nk + (extrak ? (int)extrak->n : 0);
  a->pos = jj_alloc(c->a, (size_t)(tp + 1) * sizeof(jv));
  a->kwv = jj_alloc(c->a, (size_t)(tk + 1) * sizeof(jv));
  a->kwn = jj_alloc(c->a, (size_t)(tk + 1) * sizeof(char *));
  a->npos = 0;
  a->nkw = 0;
  for (int i = 0; i < np; i++) a->pos[a->npos++] = jj_eval(c, n->items[i], s);
  if (extra)
    for (size_t i = 0; i < extra->n; i++) a->pos[a->npos++] = extra->v[i];
  for (int i = 0; i < nk; i++) {
    a->kwn[a->nkw] = n->names[i];
    a->kwv[a->nkw++] = jj_eval(c, n->items2[i], s);
  }
  if (extrak)
    for (size_t i = 0; i < extrak->n; i++) {
      jv k = extrak->k[i];
      if (k.t != V_STR) jj_fail(c, "keywords must be strings");
      a->kwn[a->nkw] = jj_strndup(c->a, k.s, k.n);
      a->kwv[a->nkw++] = extrak->v[i];
    }
}

static jv call_macro(jj_ctx *c, jj_macro *m, jj_args *a, jv caller) {
  jj_node *n = m->node;
  jj_scope *s = scope_new(c, m->closure);
  int np = n->nnames, ndef = n->nitems2;
  if (a->npos > np && !(n->op & 1))
    jj_fail(c, "macro '%s' takes not more than %d argument(s)", n->name, np);
  bool *set = jj_alloc(c->a, (size_t)np + 1);
  for (int i = 0; i < np && i < a->npos; i++) {
    setvar(c, s, n->names[i], a->pos[i]);
    set[i] = true;
  }
  jv kw = jv_dict(c->a);
  for (int k = 0; k < a->nkw; k++) {
    int i;
    for (i = 0; i < np; i++)
      if (!strcmp(n->names[i], a->kwn[k])) break;
    if (i < np) {
      if (set[i]) jj_fail(c, "macro '%s' got multiple values for argument '%s'", n->name, a->kwn[k]);
      setvar(c, s, n->names[i], a->kwv[k]);
      set[i] = true;
    } else if (!strcmp(a->kwn[k], "caller") && (n->op & 4)) {
      caller = a->kwv[k];
    } else {
      if (!(n->op & 2)) jj_fail(c, "macro '%s' takes no keyword argument '%s'", n->name, a->kwn[k]);
      jj_dict_set(c->a, kw.d, jv_str(a->kwn[k], strlen(a->kwn[k])), a->kwv[k]);
    }
  }
  for (int i = 0; i < np; i++) {
    if (set[i]) continue;
    int di = i - (np - ndef);
    if (di >= 0) setvar(c, s, n->names[i], jj_eval(c, n->items2[di], s));
    else setvar(c, s, n->names[i], jj_undef_fmt(c, "parameter '%.*s' was not provided", n->names[i], strlen(n->names[i])));
  }
  jv va = jv_list(c->a, 0);
  for (int i = np; i < a->npos; i++) jv_list_push(c->a, va, a->pos[i]);
  va.t = V_TUPLE;
  if (n->op & 1) setvar(c, s, "varargs", va);
  if (n->op & 2) setvar(c, s, "kwargs", kw);
  if (n->op & 4) {
    if (caller.t == V_NONE) caller = jv_undef_named("No caller defined");
    setvar(c, s, "caller", caller);
  }
  if (++c->depth > JJ_MAX_DEPTH) jj_fail(c, "maximum recursion depth exceeded");
  jv r = capture(c, n->items, n->nitems, s);
  c->depth--;
  return r;
}

static void run_for(jj_ctx *c, jj_node *n, jv iterable, jj_scope *s, int depth0);

jv jj_call(jj_ctx *c, jv fn, jv *pos, int npos, const char **kwn, jv *kwv, int nkw) {
  jj_args a = {pos, npos, kwn, kwv, nkw};
  switch (fn.t) {
  case V_MACRO: return call_macro(c, fn.p, &a, JV_NONE);
  case V_METHOD: {
    jj_method *m = fn.p;
    if (m->self.t == V_LOOP) {
      jj_loop *L = m->self.p;
      if (!strcmp(m->name, "cycle")) {
        if (npos == 0) jj_fail(c, "no items for cycling given");
        return pos[L->idx % (size_t)npos];
      }
      /* changed(*values) */
      jv cur = jv_list(c->a, 0);
      for (int i = 0; i < npos; i++) jv_list_push(c->a, cur, pos[i]);
      bool ch = !L->changed_set || !jv_eq(L->changed_last, cur);
      L->changed_last = cur;
      L->changed_set = true;
      return jv_bool(ch);
    }
    if (m->self.t == V_CYCLER) {
      jj_cycler *cy = m->self.p;
      if (!strcmp(m->name, "reset")) {
        cy->pos = 0;
        return JV_NONE;
      }
      if (!cy->items->n) jj_fail(c, "cycler has no items");
      jv r = cy->items->v[cy->pos];
      cy->pos = (cy->pos + 1) % cy->items->n;
      return r;
    }
    return jj_call_method(c, m->self, m->name, &a);
  }
  case V_JOINER: {
    jj_joiner *j = fn.p;
    if (!j->used) {
      j->used = true;
      return jv_str("", 0);
    }
    return j->sep;
  }
  case V_LOOP: {
    jj_loop *L = fn.p;
    if (!L->forn || !L->forn->recursive) jj_fail(c, "the loop is not recursive");
    if (npos != 1) jj_fail(c, "loop() takes exactly one argument");
    jj_buf saved = c->out;
    jb_init(&c->out, c->a);
    if (++c->depth > JJ_MAX_DEPTH) jj_fail(c, "maximum recursion depth exceeded");
    run_for(c, L->forn, pos[0], L->scope, L->depth0 + 1);
    c->depth--;
    jv r = jb_val(&c->out);
    c->out = saved;
    return r;
  }
  case V_FUNC: break;
  case V_UNDEF: jj_undef_fail(c, fn);
  default: jj_fail(c, "'%s' object is not callable", jv_typename(fn));
  }
  /* builtin functions */
  switch (fn.i) {
  case F_RANGE: {
    int64_t st = 0, en, step = 1;
    for (int i = 0; i < npos; i++)
      if (pos[i].t != V_INT && pos[i].t != V_BOOL)
        jj_fail(c, "'%s' object cannot be interpreted as an integer", jv_typename(pos[i]));
    if (npos == 1) en = pos[0].i;
    else if (npos == 2 || npos == 3) {
      st = pos[0].i;
      en = pos[1].i;
      if (npos == 3) step = pos[2].i;
    } else jj_fail(c, "range expected 1 to 3 arguments, got %d", npos);
    if (step == 0) jj_fail(c, "range() arg 3 must not be zero");
    int64_t cnt = step > 0 ? (en > st ? (en - st + step - 1) / step : 0) : (st > en ? (st - en - step - 1) / -step : 0);
    if (cnt > JJ_MAX_RANGE) jj_fail(c, "Range too big. The sandbox blocks ranges larger than MAX_RANGE (%d).", JJ_MAX_RANGE);
    jv l = jv_list(c->a, (size_t)cnt);
    for (int64_t i = 0; i < cnt; i++) l.l->v[i] = jv_int(st + i * step);
    l.l->n = (size_t)cnt;
    return l;
  }
  case F_NAMESPACE: case F_DICT: {
    jv d = jv_dict(c->a);
    for (int i = 0; i < npos; i++) {
      jv p = pos[i];
      if (p.t == V_DICT || p.t == V_NS) {
        for (size_t k = 0; k < p.d->n; k++) jj_dict_set(c->a, d.d, p.d->k[k], p.d->v[k]);
      } else if (i == 0 && fn.i == F_DICT) {
        jj_list *l = jj_iter(c, p);
        for (size_t k = 0; k < l->n; k++) {
          jj_list *pr = jj_iter(c, l->v[k]);
          if (pr->n != 2) jj_fail(c, "dictionary update sequence element has wrong length");
          jj_dict_set(c->a, d.d, pr->v[0], pr->v[1]);
        }
      } else {
        jj_fail(c, "%s expected at most 1 argument", fn.i == F_DICT ? "dict" : "namespace");
      }
    }
    for (int k = 0; k < nkw; k++) jj_dict_set(c->a, d.d, jv_str(kwn[k], strlen(kwn[k])), kwv[k]);
    if (fn.i == F_NAMESPACE) d.t = V_NS;
    return d;
  }
  case F_RAISE: {
    jv m = npos ? jj_to_str(c, pos[0]) : jv_str("", 0);
    jj_fail(c, "%.*s", (int)(m.n > 300 ? 300 : m.n), m.s);
  }
  case F_STRFTIME: return jj_call_method(c, fn, "strftime_now", &a);
  case F_CYCLER: {
    jj_cycler *cy = jj_alloc(c->a, sizeof *cy);
    jv l = jv_list(c->a, (size_t)npos);
    for (int i = 0; i < npos; i++) l.l->v[l.l->n++] = pos[i];
    cy->items = l.l;
    return (jv){.t = V_CYCLER, .p = cy};
  }
  case F_JOINER: {
    jj_joiner *j = jj_alloc(c->a, sizeof *j);
    j->sep = npos ? pos[0] : jv_str(", ", 2);
    for (int k = 0; k < nkw; k++)
      if (!strcmp(kwn[k], "sep")) j->sep = kwv[k];
    return (jv){.t = V_JOINER, .p = j};
  }
  default: jj_fail(c, "function is not supported");
  }
}

/* ---------------- expressions ---------------- */
static void step(jj_ctx *c) {
  if (++c->steps > JJ_MAX_STEPS) jj_fail_code(c, MIMO_E_TOO_LONG, "template evaluation exceeded %llu steps", JJ_MAX_STEPS);
}

static jv eval_filter(jj_ctx *c, jj_node *n, jv v, jj_scope *s) {
  jj_args a;
  eval_args(c, n, s, &a);
  return jj_apply_filter(c, n->name, v, &a);
}

jv jj_eval(jj_ctx *c, jj_node *n, jj_scope *s) {
  step(c);
  int saved_line = c->line;
  c->line = n->line;
  jv r;
  switch (n->kind) {
  case N_CONST: r = n->v; break;
  case N_NAME: r = lookup(c, s, n->name); break;
  case N_LIST: case N_TUPLE: {
    r = jv_list(c->a, (size_t)n->nitems);
    for (int i = 0; i < n->nitems; i++) r.l->v[i] = jj_eval(c, n->items[i], s);
    r.l->n = (size_t)n->nitems;
    r.t = n->kind == N_LIST ? V_LIST : V_TUPLE;
    break;
  }
  case N_DICT: {
    r = jv_dict(c->a);
    for (int i = 0; i < n->nitems; i++) {
      jv k = jj_eval(c, n->items[i], s);
      if (k.t == V_LIST || k.t == V_DICT || k.t == V_NS) jj_fail(c, "unhashable type: '%s'", jv_typename(k));
      jj_dict_set(c->a, r.d, k, jj_eval(c, n->items2[i], s));
    }
    break;
  }
  case N_GETATTR: r = jj_getattr(c, jj_eval(c, n->a, s), n->name, strlen(n->name)); break;
  case N_GETITEM: {
    jv o = jj_eval(c, n->a, s);
    jv k;
    if (n->b->kind == N_SLICE) {
      k = jv_list(c->a, 3);
      k.l->n = 3;
      jj_node *parts[3] = {n->b->a, n->b->b, n->b->c};
      for (int i = 0; i < 3; i++) k.l->v[i] = parts[i] ? jj_eval(c, parts[i], s) : JV_NONE;
      k.t = V_TUPLE;
      k.flags = 2; /* marks a slice */
    } else {
      k = jj_eval(c, n->b, s);
    }
    r = jj_getitem(c, o, k);
    break;
  }
  case N_CALL: {
    jv fn = jj_eval(c, n->a, s);
    jj_args a;
    eval_args(c, n, s, &a);
    c->line = n->line;
    r = jj_call(c, fn, a.pos, a.npos, a.kwn, a.kwv, a.nkw);
    break;
  }
  case N_FILTER: r = eval_filter(c, n, jj_eval(c, n->a, s), s); break;
  case N_TEST: {
    jv v = jj_eval(c, n->a, s);
    jj_args a;
    eval_args(c, n, s, &a);
    c->line = n->line;
    bool b = jj_apply_test(c, n->name, v, &a);
    r = jv_bool(n->neg ? !b : b);
    break;
  }
  case N_BINOP: {
    jv x = jj_eval(c, n->a, s), y = jj_eval(c, n->b, s);
    c->line = n->line;
    r = jj_binop(c, n->op, x, y);
    break;
  }
  case N_NEG: case N_POS: {
    jv x = jj_eval(c, n->a, s);
    if (x.t == V_UNDEF) jj_undef_fail(c, x);
    if (x.t == V_INT || x.t == V_BOOL) {
      if (n->kind == N_NEG && x.i == INT64_MIN) jj_fail(c, "integer overflow");
      r = jv_int(n->kind == N_NEG ? -x.i : x.i);
    } else if (x.t == V_FLOAT) r = jv_float(n->kind == N_NEG ? -x.f : x.f);
    else jj_fail(c, "bad operand type for unary %c: '%s'", n->kind == N_NEG ? '-' : '+', jv_typename(x));
    break;
  }
  case N_NOT: r = jv_bool(!jv_truthy(jj_eval(c, n->a, s))); break;
  case N_AND: {
    jv x = jj_eval(c, n->a, s);
    r = jv_truthy(x) ? jj_eval(c, n->b, s) : x;
    break;
  }
  case N_OR: {
    jv x = jj_eval(c, n->a, s);
    r = jv_truthy(x) ? x : jj_eval(c, n->b, s);
    break;
  }
  case N_COMPARE: {
    jv x = jj_eval(c, n->a, s);
    r = jv_bool(true);
    for (int i = 0; i < n->nitems; i++) {
      jv y = jj_eval(c, n->items[i], s);
      c->line = n->line;
      if (!jj_compare_op(c, n->ops[i], x, y)) {
        r = jv_bool(false);
        break;
      }
      x = y;
    }
    break;
  }
  case N_COND:
    if (jv_truthy(jj_eval(c, n->b, s))) r = jj_eval(c, n->a, s);
    else r = n->c ? jj_eval(c, n->c, s) : jv_undef_named("the inline if-expression evaluated to false and no else section was defined.");
    break;
  case N_CONCAT: {
    jj_buf b;
    jb_init(&b, c->a);
    for (int i = 0; i < n->nitems; i++) {
      jj_str(c, &b, jj_eval(c, n->items[i], s));
      jj_check_str(c, b.n);
    }
    r = jb_val(&b);
    break;
  }
  default: jj_fail(c, "internal: bad expression node %d", n->kind);
  }
  c->line = saved_line;
  return r;
}

/* ---------------- statements ---------------- */
enum { CTRL_NONE, CTRL_BREAK, CTRL_CONTINUE };

static void exec(jj_ctx *c, jj_node *n, jj_scope *s);

static void run_for(jj_ctx *c, jj_node *n, jv iterable, jj_scope *s, int depth0) {
  if (iterable.t == V_NONE || iterable.t == V_INT || iterable.t == V_FLOAT || iterable.t == V_BOOL)
    jj_fail(c, "'%s' object is not iterable", jv_typename(iterable));
  jj_list *items = jj_iter(c, iterable);
  if (n->c) { /* inline filter: loop sees only the selected items */
    jv f = jv_list(c->a, items->n);
    for (size_t i = 0; i < items->n; i++) {
      jj_scope *fs = scope_new(c, s);
      assign(c, n->a, items->v[i], fs);
      if (jv_truthy(jj_eval(c, n->c, fs))) f.l->v[f.l->n++] = items->v[i];
    }
    items = f.l;
  }
  jj_loop *L = jj_alloc(c->a, sizeof *L);
  L->items = items;
  L->depth0 = depth0;
  L->forn = n;
  L->scope = s;
  jv lv = {.t = V_LOOP, .p = L};
  jj_scope *is = scope_new(c, s);
  for (size_t i = 0; i < items->n; i++) {
    step(c);
    L->idx = i;
    is->vars.n = 0; /* fresh variables each iteration; the storage is reused to bound memory */
    setvar(c, is, "loop", lv);
    assign(c, n->a, items->v[i], is);
    for (int k = 0; k < n->nitems; k++) {
      exec(c, n->items[k], is);
      if (c->ctrl) break;
    }
    if (c->ctrl) {
      int f = c->ctrl;
      c->ctrl = 0;
      if (f == CTRL_BREAK) break;
    }
  }
  if (items->n == 0) jj_exec_block(c, n->items2, n->nitems2, s);
}

static jv apply_filter_chain(jj_ctx *c, jj_node *f, jv v, jj_scope *s) {
  if (!f) return v;
  v = apply_filter_chain(c, f->a, v, s);
  return eval_filter(c, f, v, s);
}

static void exec(jj_ctx *c, jj_node *n, jj_scope *s) {
  step(c);
  c->line = n->line;
  switch (n->kind) {
  case S_DATA: emit(c, n->v.s, n->v.n); break;
  case S_OUTPUT: {
    jv v = jj_eval(c, n->a, s);
    if (v.t == V_STR) emit(c, v.s, v.n);
    else {
      jv t = jj_to_str(c, v);
      emit(c, t.s, t.n);
    }
    break;
  }
  case S_IF:
    if (jv_truthy(jj_eval(c, n->a, s))) jj_exec_block(c, n->items, n->nitems, s);
    else jj_exec_block(c, n->items2, n->nitems2, s);
    break;
  case S_FOR: run_for(c, n, jj_eval(c, n->b, s), s, 0); break;
  case S_SET: assign(c, n->a, jj_eval(c, n->b, s), s); break;
  case S_SETBLOCK: {
    jv v = capture(c, n->items, n->nitems, s);
    assign(c, n->a, apply_filter_chain(c, n->c, v, s), s);
    break;
  }
  case S_MACRO: {
    jj_macro *m = jj_alloc(c->a, sizeof *m);
    m->node = n;
    m->closure = s;
    setvar(c, s, n->name, (jv){.t = V_MACRO, .p = m});
    break;
  }
  case S_CALLBLOCK: {
    jj_macro *m = jj_alloc(c->a, sizeof *m);
    m->node = n;
    m->closure = s;
    jv caller = {.t = V_MACRO, .p = m};
    jj_node *call = n->a;
    jv fn = jj_eval(c, call->a, s);
    jj_args a;
    eval_args(c, call, s, &a);
    c->line = n->line;
    jv r;
    if (fn.t == V_MACRO) r = call_macro(c, fn.p, &a, caller);
    else r = jj_call(c, fn, a.pos, a.npos, a.kwn, a.kwv, a.nkw);
    jv t = jj_to_str(c, r);
    emit(c, t.s, t.n);
    break;
  }
  case S_FILTERBLOCK: {
    jv v = capture(c, n->items, n->nitems, s);
    jv t = jj_to_str(c, apply_filter_chain(c, n->c, v, s));
    emit(c, t.s, t.n);
    break;
  }
  case S_WITH: {
    jj_scope *ws = scope_new(c, s);
    for (int i = 0; i < n->nitems2; i++) assign(c, n->items2[i], jj_eval(c, (jj_node *)n->names[i], s), ws);
    jj_exec_block(c, n->items, n->nitems, ws);
    break;
  }
  case S_BLOCK: jj_exec_block(c, n->items, n->nitems, s); break;
  case S_BREAK: c->ctrl = CTRL_BREAK; break;
  case S_CONTINUE: c->ctrl = CTRL_CONTINUE; break;
  default: jj_fail(c, "internal: bad statement node %d", n->kind);
  }
}

void jj_exec_block(jj_ctx *c, jj_node **body, int n, jj_scope *s) {
  if (++c->depth > JJ_MAX_DEPTH) jj_fail(c, "template nested too deeply");
  for (int i = 0; i < n && !c->ctrl; i++) exec(c, body[i], s);
  c->depth--;
}
