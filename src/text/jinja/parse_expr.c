/* Parser, expressions: jinja2's operator precedence from conditional expressions down to primaries, filters, tests
 * and calls (parse_internal.h). */
#include "text/jinja/parse_internal.h"

static jj_node *parse_unary(P *p, bool with_filter);
static jj_node *parse_primary(P *p);
static jj_node *parse_postfix(P *p, jj_node *n);
static jj_node *parse_filter_expr(P *p, jj_node *n);

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

jj_node *jjp_tuple(P *p, bool simplified, bool condexpr, const char *extra, bool explicit_parens) {
  int line = cur(p)->line;
  vec items = {0};
  bool is_tuple = false;
  for (;;) {
    if (items.n) expect_op(p, ",");
    if (tuple_end(p, extra)) break;
    vpush(p, &items, simplified ? parse_primary(p) : jjp_expr(p, condexpr));
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
    vpush(p, &items, jjp_expr(p, true));
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
    vpush(p, &ks, jjp_expr(p, true));
    expect_op(p, ":");
    vpush(p, &vs, jjp_expr(p, true));
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
    x = jjp_tuple(p, false, true, NULL, true);
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
      x->c = jjp_expr(p, true);
    } else if (is_op(cur(p), "**")) {
      adv(p);
      x->d = jjp_expr(p, true);
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
      vpush(p, &kwv, jjp_expr(p, true));
    } else {
      if (nkw || x->c || x->d) perr(p, "invalid argument syntax");
      vpush(p, &args, jjp_expr(p, true));
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

jj_node *jjp_filter(P *p, jj_node *operand, bool start_inline) {
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
    jj_node *e = jjp_expr(p, true);
    if (!is_op(cur(p), ":")) return e;
    adv(p);
    args[0] = e;
  }
  if (!is_op(cur(p), "]") && !is_op(cur(p), ",") && !is_op(cur(p), ":")) args[1] = jjp_expr(p, true);
  if (is_op(cur(p), ":")) {
    adv(p);
    if (!is_op(cur(p), "]") && !is_op(cur(p), ",")) args[2] = jjp_expr(p, true);
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
    if (is_op(cur(p), "|")) n = jjp_filter(p, n, false);
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

jj_node *jjp_expr(P *p, bool condexpr) {
  enter(p);
  jj_node *e = parse_or(p);
  while (condexpr && is_name(cur(p), "if")) {
    jj_node *c = mk(p, N_COND);
    adv(p);
    c->a = e;
    c->b = parse_or(p);
    if (is_name(cur(p), "else")) {
      adv(p);
      c->c = jjp_expr(p, true);
    }
    e = c;
  }
  p->depth--;
  return e;
}

/* ---------------- statements ---------------- */
