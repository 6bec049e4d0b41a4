/* Parser: tokens -> AST, following jinja2's grammar; this part reads statements (tags, blocks, macros) and the
 * template, parse_expr.c the expressions. */
#include "text/jinja/parse_internal.h"

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
    t = jjp_tuple(p, true, true, extra, false);
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
      vpush(p, &defs, jjp_expr(p, true));
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
    n->b = jjp_tuple(p, false, false, "recursive", false);
    if (is_name(cur(p), "if")) {
      adv(p);
      n->c = jjp_expr(p, true);
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
    node->a = jjp_tuple(p, false, false, NULL, false);
    expect_type(p, T_BLOCK_END, "end of statement block");
    for (;;) {
      subparse(p, "elif,else,endif", &node->nitems, &node->items);
      if (is_name(cur(p), "elif")) {
        adv(p);
        jj_node *e = mk(p, S_IF);
        e->a = jjp_tuple(p, false, false, NULL, false);
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
      n->b = jjp_tuple(p, false, true, NULL, false);
      expect_type(p, T_BLOCK_END, "end of statement block");
    } else {
      n = mk(p, S_SETBLOCK);
      n->a = target;
      if (is_op(cur(p), "|")) n->c = jjp_filter(p, NULL, false);
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
    n->a = jjp_expr(p, true);
    if (n->a->kind != N_CALL) perr(p, "expected call");
    expect_type(p, T_BLOCK_END, "end of statement block");
    subparse(p, "endcall", &n->nitems, &n->items);
    end_tag(p, "endcall");
    macro_flags(n);
  } else if (!strcmp(tag, "filter")) {
    n = mk(p, S_FILTERBLOCK);
    n->c = jjp_filter(p, NULL, true);
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
      vpush(p, &vals, jjp_expr(p, true));
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
      o->a = jjp_tuple(p, false, true, NULL, false);
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
