/* Parser: tokens -> AST, following jinja2's grammar and operator precedence. */
#include <stdio.h>
#include <string.h>

#include "text/jinja/internal.h"

typedef struct P {
  jj_arena *a;
  jj_tok *t;
  size_t i, n;
  int depth;
  char err[300];
  jmp_buf jb;
} P;

typedef struct vec { jj_node **v; int n, cap; } vec;

static _Noreturn __attribute__((format(printf, 2, 3))) void perr(P *p, const char *fmt, ...) {
  char m[240];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(m, sizeof m, fmt, ap);
  va_end(ap);
  snprintf(p->err, sizeof p->err, "template line %d: %s", p->t[p->i].line, m);
  longjmp(p->jb, 1);
}

static void *palloc(P *p, size_t n) {
  void *r = jj_alloc(p->a, n);
  if (!r) perr(p, "out of memory");
  return r;
}

static void vpush(P *p, vec *v, jj_node *x) {
  if (v->n == v->cap) {
    int cap = v->cap ? v->cap * 2 : 4;
    jj_node **nv = palloc(p, (size_t)cap * sizeof *nv);
    if (v->n) jj_memcpy(nv, v->v, (size_t)v->n * sizeof *nv);
    v->v = nv;
    v->cap = cap;
  }
  v->v[v->n++] = x;
}

static jj_node *mk(P *p, int kind) {
  jj_node *x = palloc(p, sizeof *x);
  x->kind = (uint8_t)kind;
  x->line = p->t[p->i].line;
  return x;
}

static jj_tok *cur(P *p) { return &p->t[p->i]; }
static jj_tok *peek(P *p, int k) { return p->i + (size_t)k < p->n ? &p->t[p->i + (size_t)k] : &p->t[p->n - 1]; }
static bool is_op(jj_tok *t, const char *op) { return t->type == T_OP && t->n == strlen(op) && memcmp(t->s, op, t->n) == 0; }
static bool is_name(jj_tok *t, const char *nm) { return t->type == T_NAME && strcmp(t->s, nm) == 0; }
static void adv(P *p) { if (p->i < p->n - 1) p->i++; }

static const char *tokdesc(jj_tok *t) {
  switch (t->type) {
  case T_EOF: return "end of template";
  case T_BLOCK_END: return "end of statement block";
  case T_VAR_END: return "end of print statement";
  case T_NAME: return t->s;
  case T_STRING: return "string";
  case T_INT: return "integer";
  case T_FLOAT: return "float";
  default: return t->type == T_OP ? t->s : "token";
  }
}

static void expect_op(P *p, const char *op) {
  if (!is_op(cur(p), op)) perr(p, "expected token '%s', got '%.20s'", op, tokdesc(cur(p)));
  adv(p);
}
static void expect_type(P *p, int type, const char *what) {
  if (cur(p)->type != type) perr(p, "expected %s, got '%.20s'", what, tokdesc(cur(p)));
  adv(p);
}
static const char *expect_name(P *p) {
  if (cur(p)->type != T_NAME) perr(p, "expected name, got '%.20s'", tokdesc(cur(p)));
  const char *s = cur(p)->s;
  adv(p);
  return s;
}

static jj_node *parse_expr(P *p, bool condexpr);
static jj_node *parse_unary(P *p, bool with_filter);
static jj_node *parse_primary(P *p);
static jj_node *parse_postfix(P *p, jj_node *n);
static jj_node *parse_filter_expr(P *p, jj_node *n);

static void enter(P *p) {
  if (++p->depth > JJ_MAX_DEPTH) perr(p, "template nested too deeply");
}

/* tuple end: end of tag, ')' or one of the extra end names */
static bool tuple_end(P *p, const char *extra) {
  jj_tok *t = cur(p);
  if (t->type == T_VAR_END || t->type == T_BLOCK_END || t->type == T_EOF || is_op(t, ")")) return true;
  if (extra && t->type == T_NAME) {
    char buf[64];
    snprintf(buf, sizeof buf, "%s", extra);
    for (char *w = strtok(buf, ","); w; w = strtok(NULL, ","))
      if (strcmp(w, t->s) == 0) return true;
  }
  return false;
}

static jj_node *parse_tuple(P *p, bool simplified, bool condexpr, const char *extra, bool explicit_parens) {
  int line = cur(p)->line;
  vec items = {0};
  bool is_tuple = false;
  for (;;) {
    if (items.n) expect_op(p, ",");
    if (tuple_end(p, extra)) break;
    vpush(p, &items, simplified ? parse_primary(p) : parse_expr(p, condexpr));
    if (is_op(cur(p), ",")) is_tuple = true;
    else break;
  }
  if (!is_tuple) {
    if (items.n) return items.v[0];
    if (!explicit_parens) perr(p, "expected an expression, got '%.20s'", tokdesc(cur(p)));
  }
  jj_node *t = mk(p, N_TUPLE);
  t->line = line;
  t->items = items.v;
  t->nitems = items.n;
  return t;
}

static jj_node *parse_list(P *p) {
  jj_node *x = mk(p, N_LIST);
  expect_op(p, "[");
  vec items = {0};
  while (!is_op(cur(p), "]")) {
    if (items.n) expect_op(p, ",");
    if (is_op(cur(p), "]")) break;
    vpush(p, &items, parse_expr(p, true));
  }
  expect_op(p, "]");
  x->items = items.v;
  x->nitems = items.n;
  return x;
}

static jj_node *parse_dict(P *p) {
  jj_node *x = mk(p, N_DICT);
  expect_op(p, "{");
  vec ks = {0}, vs = {0};
  while (!is_op(cur(p), "}")) {
    if (ks.n) expect_op(p, ",");
    if (is_op(cur(p), "}")) break;
    vpush(p, &ks, parse_expr(p, true));
    expect_op(p, ":");
    vpush(p, &vs, parse_expr(p, true));
  }
  expect_op(p, "}");
  x->items = ks.v;
  x->nitems = ks.n;
  x->items2 = vs.v;
  x->nitems2 = vs.n;
  return x;
}

static jj_node *parse_primary(P *p) {
  jj_tok *t = cur(p);
  jj_node *x;
  enter(p);
  if (t->type == T_NAME) {
    x = mk(p, N_CONST);
    if (!strcmp(t->s, "true") || !strcmp(t->s, "True")) x->v = jv_bool(true);
    else if (!strcmp(t->s, "false") || !strcmp(t->s, "False")) x->v = jv_bool(false);
    else if (!strcmp(t->s, "none") || !strcmp(t->s, "None")) x->v = JV_NONE;
    else {
      x->kind = N_NAME;
      x->name = t->s;
    }
    adv(p);
  } else if (t->type == T_STRING) {
    x = mk(p, N_CONST);
    jj_buf b;
    jb_init(&b, p->a);
    while (cur(p)->type == T_STRING) {
      jb_put(&b, cur(p)->s, cur(p)->n);
      adv(p);
    }
    x->v = jv_str(b.p ? b.p : "", b.n);
  } else if (t->type == T_INT || t->type == T_FLOAT) {
    x = mk(p, N_CONST);
    x->v = t->type == T_INT ? jv_int(t->i) : jv_float(t->f);
    adv(p);
  } else if (is_op(t, "(")) {
    adv(p);
    x = parse_tuple(p, false, true, NULL, true);
    expect_op(p, ")");
  } else if (is_op(t, "[")) {
    x = parse_list(p);
  } else if (is_op(t, "{")) {
    x = parse_dict(p);
  } else {
    perr(p, "unexpected '%.20s'", tokdesc(t));
  }
  p->depth--;
  return x;
}

/* call arguments after '(' : positional, name=value, *args, **kwargs */
static void parse_call_args(P *p, jj_node *x) {
  expect_op(p, "(");
  vec args = {0}, kwv = {0};
  const char **kwn = NULL;
  int nkw = 0, capkw = 0;
  bool first = true;
  while (!is_op(cur(p), ")")) {
    if (!first) {
      expect_op(p, ",");
      if (is_op(cur(p), ")")) break;
    }
    first = false;
    if (is_op(cur(p), "*")) {
      adv(p);
      x->c = parse_expr(p, true);
    } else if (is_op(cur(p), "**")) {
      adv(p);
      x->d = parse_expr(p, true);
    } else if (cur(p)->type == T_NAME && is_op(peek(p, 1), "=")) {
      if (x->d) perr(p, "invalid argument syntax");
      if (nkw == capkw) {
        capkw = capkw ? capkw * 2 : 4;
        const char **nn = palloc(p, (size_t)capkw * sizeof *nn);
        if (nkw) jj_memcpy(nn, kwn, (size_t)nkw * sizeof *nn);
        kwn = nn;
      }
      kwn[nkw++] = cur(p)->s;
      adv(p);
      adv(p);
      vpush(p, &kwv, parse_expr(p, true));
    } else {
      if (nkw || x->c || x->d) perr(p, "invalid argument syntax");
      vpush(p, &args, parse_expr(p, true));
    }
  }
  expect_op(p, ")");
  x->items = args.v;
  x->nitems = args.n;
  x->items2 = kwv.v;
  x->nitems2 = kwv.n;
  x->names = kwn;
  x->nnames = nkw;
}

static const char *dotted_name(P *p) {
  const char *nm = expect_name(p);
  while (is_op(cur(p), ".") && peek(p, 1)->type == T_NAME) {
    adv(p);
    jj_buf b;
    jb_init(&b, p->a);
    jb_puts(&b, nm);
    jb_putc(&b, '.');
    jb_puts(&b, expect_name(p));
    jb_putc(&b, 0);
    nm = b.p;
  }
  return nm;
}

static jj_node *parse_filter(P *p, jj_node *operand, bool start_inline) {
  while (is_op(cur(p), "|") || start_inline) {
    if (!start_inline) adv(p);
    start_inline = false;
    jj_node *f = mk(p, N_FILTER);
    f->name = dotted_name(p);
    if (!jj_filter_exists(f->name)) perr(p, "no filter named '%s'", f->name);
    if (is_op(cur(p), "(")) parse_call_args(p, f);
    f->a = operand;
    operand = f;
  }
  return operand;
}

static jj_node *parse_test(P *p, jj_node *operand) {
  adv(p); /* 'is' */
  jj_node *t = mk(p, N_TEST);
  if (is_name(cur(p), "not")) {
    adv(p);
    t->neg = 1;
  }
  t->name = dotted_name(p);
  if (!jj_test_exists(t->name)) perr(p, "no test named '%s'", t->name);
  jj_tok *c = cur(p);
  if (is_op(c, "(")) {
    parse_call_args(p, t);
  } else if ((c->type == T_NAME || c->type == T_STRING || c->type == T_INT || c->type == T_FLOAT ||
              is_op(c, "[") || is_op(c, "{")) &&
             !is_name(c, "else") && !is_name(c, "or") && !is_name(c, "and")) {
    if (is_name(c, "is")) perr(p, "you cannot chain multiple tests with is");
    jj_node *arg = parse_postfix(p, parse_primary(p));
    t->items = palloc(p, sizeof(jj_node *));
    t->items[0] = arg;
    t->nitems = 1;
  }
  t->a = operand;
  return t;
}

static jj_node *parse_subscribed(P *p) {
  jj_node *args[3] = {0};
  if (is_op(cur(p), ":")) {
    adv(p);
  } else {
    jj_node *e = parse_expr(p, true);
    if (!is_op(cur(p), ":")) return e;
    adv(p);
    args[0] = e;
  }
  if (!is_op(cur(p), "]") && !is_op(cur(p), ",") && !is_op(cur(p), ":")) args[1] = parse_expr(p, true);
  if (is_op(cur(p), ":")) {
    adv(p);
    if (!is_op(cur(p), "]") && !is_op(cur(p), ",")) args[2] = parse_expr(p, true);
  }
  jj_node *s = mk(p, N_SLICE);
  s->a = args[0];
  s->b = args[1];
  s->c = args[2];
  return s;
}

static jj_node *parse_postfix(P *p, jj_node *n) {
  for (;;) {
    jj_tok *t = cur(p);
    if (is_op(t, ".")) {
      adv(p);
      jj_tok *a = cur(p);
      jj_node *g;
      if (a->type == T_NAME) {
        g = mk(p, N_GETATTR);
        g->name = a->s;
      } else if (a->type == T_INT) {
        g = mk(p, N_GETITEM);
        g->b = mk(p, N_CONST);
        g->b->v = jv_int(a->i);
      } else {
        perr(p, "expected name or number after '.'");
      }
      adv(p);
      g->a = n;
      n = g;
    } else if (is_op(t, "[")) {
      adv(p);
      vec args = {0};
      while (!is_op(cur(p), "]")) {
        if (args.n) {
          expect_op(p, ",");
          if (is_op(cur(p), "]")) break;
        }
        vpush(p, &args, parse_subscribed(p));
      }
      expect_op(p, "]");
      if (args.n == 0) perr(p, "expected subscript expression");
      jj_node *g = mk(p, N_GETITEM);
      g->a = n;
      if (args.n == 1) {
        g->b = args.v[0];
      } else {
        g->b = mk(p, N_TUPLE);
        g->b->items = args.v;
        g->b->nitems = args.n;
      }
      n = g;
    } else if (is_op(t, "(")) {
      jj_node *c = mk(p, N_CALL);
      parse_call_args(p, c);
      c->a = n;
      n = c;
    } else {
      return n;
    }
  }
}

static jj_node *parse_filter_expr(P *p, jj_node *n) {
  for (;;) {
    if (is_op(cur(p), "|")) n = parse_filter(p, n, false);
    else if (is_name(cur(p), "is")) n = parse_test(p, n);
    else if (is_op(cur(p), "(")) {
      jj_node *c = mk(p, N_CALL);
      parse_call_args(p, c);
      c->a = n;
      n = c;
    } else return n;
  }
}

static jj_node *parse_unary(P *p, bool with_filter) {
  jj_node *n;
  enter(p);
  if (is_op(cur(p), "-") || is_op(cur(p), "+")) {
    n = mk(p, is_op(cur(p), "-") ? N_NEG : N_POS);
    adv(p);
    n->a = parse_unary(p, false);
  } else {
    n = parse_primary(p);
  }
  n = parse_postfix(p, n);
  if (with_filter) n = parse_filter_expr(p, n);
  p->depth--;
  return n;
}

static jj_node *binop(P *p, int op, jj_node *l, jj_node *r) {
  jj_node *b = mk(p, N_BINOP);
  b->op = (uint8_t)op;
  b->a = l;
  b->b = r;
  return b;
}

static jj_node *parse_pow(P *p) {
  jj_node *l = parse_unary(p, true);
  while (is_op(cur(p), "**")) {
    adv(p);
    l = binop(p, OP_POW, l, parse_unary(p, true));
  }
  return l;
}

static jj_node *parse_math2(P *p) {
  jj_node *l = parse_pow(p);
  for (;;) {
    int op = is_op(cur(p), "*") ? OP_MUL : is_op(cur(p), "/") ? OP_DIV : is_op(cur(p), "//") ? OP_FLOORDIV
           : is_op(cur(p), "%") ? OP_MOD : -1;
    if (op < 0) return l;
    adv(p);
    l = binop(p, op, l, parse_pow(p));
  }
}

static jj_node *parse_concat(P *p) {
  jj_node *l = parse_math2(p);
  if (!is_op(cur(p), "~")) return l;
  vec args = {0};
  vpush(p, &args, l);
  while (is_op(cur(p), "~")) {
    adv(p);
    vpush(p, &args, parse_math2(p));
  }
  jj_node *c = mk(p, N_CONCAT);
  c->items = args.v;
  c->nitems = args.n;
  return c;
}

static jj_node *parse_math1(P *p) {
  jj_node *l = parse_concat(p);
  for (;;) {
    int op = is_op(cur(p), "+") ? OP_ADD : is_op(cur(p), "-") ? OP_SUB : -1;
    if (op < 0) return l;
    adv(p);
    l = binop(p, op, l, parse_concat(p));
  }
}

static jj_node *parse_compare(P *p) {
  jj_node *l = parse_math1(p);
  vec ops = {0};
  uint8_t opv[64];
  for (;;) {
    jj_tok *t = cur(p);
    int op = is_op(t, "==") ? OP_EQ : is_op(t, "!=") ? OP_NE : is_op(t, "<") ? OP_LT : is_op(t, "<=") ? OP_LE
           : is_op(t, ">") ? OP_GT : is_op(t, ">=") ? OP_GE : is_name(t, "in") ? OP_IN : -1;
    if (op < 0 && is_name(t, "not") && is_name(peek(p, 1), "in")) {
      adv(p);
      op = OP_NOTIN;
    }
    if (op < 0) break;
    if (ops.n >= 64) perr(p, "comparison chain too long");
    adv(p);
    opv[ops.n] = (uint8_t)op;
    vpush(p, &ops, parse_math1(p));
  }
  if (!ops.n) return l;
  jj_node *c = mk(p, N_COMPARE);
  c->a = l;
  c->items = ops.v;
  c->nitems = ops.n;
  c->ops = palloc(p, (size_t)ops.n);
  jj_memcpy(c->ops, opv, (size_t)ops.n);
  return c;
}

static jj_node *parse_not(P *p) {
  if (is_name(cur(p), "not")) {
    jj_node *n = mk(p, N_NOT);
    adv(p);
    enter(p);
    n->a = parse_not(p);
    p->depth--;
    return n;
  }
  return parse_compare(p);
}

static jj_node *parse_and(P *p) {
  jj_node *l = parse_not(p);
  while (is_name(cur(p), "and")) {
    jj_node *n = mk(p, N_AND);
    adv(p);
    n->a = l;
    n->b = parse_not(p);
    l = n;
  }
  return l;
}

static jj_node *parse_or(P *p) {
  jj_node *l = parse_and(p);
  while (is_name(cur(p), "or")) {
    jj_node *n = mk(p, N_OR);
    adv(p);
    n->a = l;
    n->b = parse_and(p);
    l = n;
  }
  return l;
}

static jj_node *parse_expr(P *p, bool condexpr) {
  enter(p);
  jj_node *e = parse_or(p);
  while (condexpr && is_name(cur(p), "if")) {
    jj_node *c = mk(p, N_COND);
    adv(p);
    c->a = e;
    c->b = parse_or(p);
    if (is_name(cur(p), "else")) {
      adv(p);
      c->c = parse_expr(p, true);
    }
    e = c;
  }
  p->depth--;
  return e;
}

/* ---------------- statements ---------------- */
static jj_node *subparse(P *p, const char *ends, int *nbody, jj_node ***body);

static bool assignable(jj_node *n) {
  if (n->kind == N_NAME || n->kind == N_NSREF) return true;
  if (n->kind != N_TUPLE) return false;
  for (int i = 0; i < n->nitems; i++)
    if (n->items[i]->kind != N_NAME) return false;
  return true;
}

static jj_node *parse_target(P *p, bool with_ns, const char *extra) {
  jj_node *t;
  if (with_ns && cur(p)->type == T_NAME && is_op(peek(p, 1), ".") && peek(p, 2)->type == T_NAME) {
    t = mk(p, N_NSREF);
    t->a = mk(p, N_NAME);
    t->a->name = expect_name(p);
    adv(p);
    t->name = expect_name(p);
  } else {
    t = parse_tuple(p, true, true, extra, false);
  }
  if (!assignable(t)) perr(p, "can't assign to this expression");
  if (t->kind == N_NAME && (!strcmp(t->name, "loop") && 0)) perr(p, "can't assign to 'loop'");
  return t;
}

static void end_tag(P *p, const char *name) {
  if (!is_name(cur(p), name)) perr(p, "expected '%s'", name);
  adv(p);
  expect_type(p, T_BLOCK_END, "end of statement block");
}

static void parse_signature(P *p, jj_node *m) {
  vec defs = {0};
  const char **names = NULL;
  int nn = 0;
  expect_op(p, "(");
  while (!is_op(cur(p), ")")) {
    if (nn) expect_op(p, ",");
    if (is_op(cur(p), ")")) break;
    const char *nm = expect_name(p);
    const char **n2 = palloc(p, (size_t)(nn + 1) * sizeof *n2);
    if (nn) jj_memcpy(n2, names, (size_t)nn * sizeof *n2);
    n2[nn++] = nm;
    names = n2;
    if (is_op(cur(p), "=")) {
      adv(p);
      vpush(p, &defs, parse_expr(p, true));
    } else {
      if (defs.n) perr(p, "non-default argument follows default argument");
    }
  }
  expect_op(p, ")");
  m->names = names;
  m->nnames = nn;
  m->items2 = defs.v; /* defaults for the last nitems2 params */
  m->nitems2 = defs.n;
}

/* Does the subtree reference name? (decides whether a macro takes varargs/kwargs/caller) */
static bool uses_name(jj_node *n, const char *name, int d) {
  if (!n || d > JJ_MAX_DEPTH) return false;
  if (n->kind == N_NAME && !strcmp(n->name, name)) return true;
  if (uses_name(n->a, name, d + 1) || uses_name(n->b, name, d + 1) || uses_name(n->c, name, d + 1) ||
      uses_name(n->d, name, d + 1))
    return true;
  for (int i = 0; i < n->nitems; i++)
    if (uses_name(n->items[i], name, d + 1)) return true;
  for (int i = 0; i < n->nitems2; i++)
    if (uses_name(n->items2[i], name, d + 1)) return true;
  if (n->kind == S_WITH)
    for (int i = 0; i < n->nnames; i++)
      if (uses_name((jj_node *)n->names[i], name, d + 1)) return true;
  return false;
}

static void macro_flags(jj_node *m) {
  for (int i = 0; i < m->nitems; i++) {
    if (uses_name(m->items[i], "varargs", 0)) m->op |= 1;
    if (uses_name(m->items[i], "kwargs", 0)) m->op |= 2;
    if (uses_name(m->items[i], "caller", 0)) m->op |= 4;
  }
}

static jj_node *parse_statement(P *p) {
  jj_tok *t = cur(p);
  if (t->type != T_NAME) perr(p, "tag name expected");
  const char *tag = t->s;
  jj_node *n;
  enter(p);
  adv(p);
  if (!strcmp(tag, "for")) {
    n = mk(p, S_FOR);
    n->a = parse_target(p, false, "in");
    if (!is_name(cur(p), "in")) perr(p, "expected 'in'");
    adv(p);
    n->b = parse_tuple(p, false, false, "recursive", false);
    if (is_name(cur(p), "if")) {
      adv(p);
      n->c = parse_expr(p, true);
    }
    if (is_name(cur(p), "recursive")) {
      adv(p);
      n->recursive = 1;
    }
    expect_type(p, T_BLOCK_END, "end of statement block");
    subparse(p, "endfor,else", &n->nitems, &n->items);
    if (is_name(cur(p), "else")) {
      adv(p);
      expect_type(p, T_BLOCK_END, "end of statement block");
      subparse(p, "endfor", &n->nitems2, &n->items2);
    }
    end_tag(p, "endfor");
  } else if (!strcmp(tag, "if")) {
    n = mk(p, S_IF);
    jj_node *node = n;
    node->a = parse_tuple(p, false, false, NULL, false);
    expect_type(p, T_BLOCK_END, "end of statement block");
    for (;;) {
      subparse(p, "elif,else,endif", &node->nitems, &node->items);
      if (is_name(cur(p), "elif")) {
        adv(p);
        jj_node *e = mk(p, S_IF);
        e->a = parse_tuple(p, false, false, NULL, false);
        expect_type(p, T_BLOCK_END, "end of statement block");
        node->items2 = palloc(p, sizeof(jj_node *));
        node->items2[0] = e;
        node->nitems2 = 1;
        node = e;
        continue;
      }
      if (is_name(cur(p), "else")) {
        adv(p);
        expect_type(p, T_BLOCK_END, "end of statement block");
        subparse(p, "endif", &node->nitems2, &node->items2);
      }
      break;
    }
    end_tag(p, "endif");
  } else if (!strcmp(tag, "set")) {
    jj_node *target = parse_target(p, true, NULL);
    if (is_op(cur(p), "=")) {
      adv(p);
      n = mk(p, S_SET);
      n->a = target;
      n->b = parse_tuple(p, false, true, NULL, false);
      expect_type(p, T_BLOCK_END, "end of statement block");
    } else {
      n = mk(p, S_SETBLOCK);
      n->a = target;
      if (is_op(cur(p), "|")) n->c = parse_filter(p, NULL, false);
      expect_type(p, T_BLOCK_END, "end of statement block");
      subparse(p, "endset", &n->nitems, &n->items);
      end_tag(p, "endset");
    }
  } else if (!strcmp(tag, "macro")) {
    n = mk(p, S_MACRO);
    n->name = expect_name(p);
    parse_signature(p, n);
    expect_type(p, T_BLOCK_END, "end of statement block");
    subparse(p, "endmacro", &n->nitems, &n->items);
    end_tag(p, "endmacro");
    macro_flags(n);
  } else if (!strcmp(tag, "call")) {
    n = mk(p, S_CALLBLOCK);
    n->name = "caller";
    if (is_op(cur(p), "(")) parse_signature(p, n);
    n->a = parse_expr(p, true);
    if (n->a->kind != N_CALL) perr(p, "expected call");
    expect_type(p, T_BLOCK_END, "end of statement block");
    subparse(p, "endcall", &n->nitems, &n->items);
    end_tag(p, "endcall");
    macro_flags(n);
  } else if (!strcmp(tag, "filter")) {
    n = mk(p, S_FILTERBLOCK);
    n->c = parse_filter(p, NULL, true);
    expect_type(p, T_BLOCK_END, "end of statement block");
    subparse(p, "endfilter", &n->nitems, &n->items);
    end_tag(p, "endfilter");
  } else if (!strcmp(tag, "with")) {
    n = mk(p, S_WITH);
    vec tg = {0}, vals = {0};
    while (cur(p)->type != T_BLOCK_END) {
      if (tg.n) expect_op(p, ",");
      jj_node *tt = parse_target(p, false, NULL);
      expect_op(p, "=");
      vpush(p, &tg, tt);
      vpush(p, &vals, parse_expr(p, true));
    }
    adv(p);
    n->items2 = tg.v;
    n->nitems2 = tg.n;
    n->names = (const char **)vals.v; /* values, parallel to items2 */
    n->nnames = vals.n;
    subparse(p, "endwith", &n->nitems, &n->items);
    end_tag(p, "endwith");
  } else if (!strcmp(tag, "generation")) { /* HF's assistant-mask extension: renders its body */
    n = mk(p, S_BLOCK);
    expect_type(p, T_BLOCK_END, "end of statement block");
    subparse(p, "endgeneration", &n->nitems, &n->items);
    end_tag(p, "endgeneration");
  } else if (!strcmp(tag, "break") || !strcmp(tag, "continue")) {
    n = mk(p, tag[0] == 'b' ? S_BREAK : S_CONTINUE);
    expect_type(p, T_BLOCK_END, "end of statement block");
  } else {
    p->i--;
    perr(p, "encountered unknown tag '%s'", tag);
  }
  p->depth--;
  return n;
}

static bool in_list(const char *list, const char *w) {
  size_t wl = strlen(w);
  for (const char *s = list; *s;) {
    const char *e = strchr(s, ',');
    size_t l = e ? (size_t)(e - s) : strlen(s);
    if (l == wl && memcmp(s, w, l) == 0) return true;
    if (!e) break;
    s = e + 1;
  }
  return false;
}

/* Parses nodes until a block tag whose name is in ends (comma list; NULL = until EOF).
 * Leaves the cursor on that name. */
static jj_node *subparse(P *p, const char *ends, int *nbody, jj_node ***body) {
  vec v = {0};
  for (;;) {
    jj_tok *t = cur(p);
    if (t->type == T_EOF) {
      if (ends) perr(p, "unexpected end of template, expected '%s'", ends);
      break;
    }
    if (t->type == T_DATA || t->type == T_RAW) {
      jj_node *d = mk(p, S_DATA);
      d->v = jv_str(t->s, t->n);
      vpush(p, &v, d);
      adv(p);
    } else if (t->type == T_VAR_BEGIN) {
      adv(p);
      jj_node *o = mk(p, S_OUTPUT);
      o->a = parse_tuple(p, false, true, NULL, false);
      expect_type(p, T_VAR_END, "end of print statement");
      vpush(p, &v, o);
    } else if (t->type == T_BLOCK_BEGIN) {
      adv(p);
      if (ends && cur(p)->type == T_NAME && in_list(ends, cur(p)->s)) break;
      vpush(p, &v, parse_statement(p));
    } else {
      perr(p, "unexpected '%.20s'", tokdesc(t));
    }
  }
  *nbody = v.n;
  *body = v.v;
  return NULL;
}

mimo_status jj_parse(const char *src, size_t len, jj_template *t) {
  memset(t, 0, sizeof *t);
  t->arena.limit = 0;
  P *p = jj_alloc(&t->arena, sizeof *p);
  if (!p) return mimo_errf(MIMO_E_NOMEM, "template: out of memory");
  p->a = &t->arena;
  size_t nt;
  MIMO_TRY(jj_lex(&t->arena, src, len, &p->t, &nt));
  p->n = nt;
  if (setjmp(p->jb)) return mimo_errf(MIMO_E_FORMAT, "%s", p->err);
  t->root = mk(p, S_BLOCK);
  subparse(p, NULL, &t->root->nitems, &t->root->items);
  return MIMO_OK;
}
