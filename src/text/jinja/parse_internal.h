/* The Jinja parser's state and token helpers, shared by its statement part (parse.c) and its expression part
 * (parse_expr.c). */
#ifndef MIMO_TEXT_JINJA_PARSE_INTERNAL_H
#define MIMO_TEXT_JINJA_PARSE_INTERNAL_H
#include <setjmp.h>
#include <stdarg.h>
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

static inline _Noreturn __attribute__((format(printf, 2, 3))) void perr(P *p, const char *fmt, ...) {
  char m[240];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(m, sizeof m, fmt, ap);
  va_end(ap);
  snprintf(p->err, sizeof p->err, "template line %d: %s", p->t[p->i].line, m);
  longjmp(p->jb, 1);
}

static inline void *palloc(P *p, size_t n) {
  void *r = jj_alloc(p->a, n);
  if (!r) perr(p, "out of memory");
  return r;
}

static inline void vpush(P *p, vec *v, jj_node *x) {
  if (v->n == v->cap) {
    int cap = v->cap ? v->cap * 2 : 4;
    jj_node **nv = palloc(p, (size_t)cap * sizeof *nv);
    if (v->n) jj_memcpy(nv, v->v, (size_t)v->n * sizeof *nv);
    v->v = nv;
    v->cap = cap;
  }
  v->v[v->n++] = x;
}

static inline jj_node *mk(P *p, int kind) {
  jj_node *x = palloc(p, sizeof *x);
  x->kind = (uint8_t)kind;
  x->line = p->t[p->i].line;
  return x;
}

static inline jj_tok *cur(P *p) { return &p->t[p->i]; }
static inline jj_tok *peek(P *p, int k) { return p->i + (size_t)k < p->n ? &p->t[p->i + (size_t)k] : &p->t[p->n - 1]; }
static inline bool is_op(jj_tok *t, const char *op) { return t->type == T_OP && t->n == strlen(op) && memcmp(t->s, op, t->n) == 0; }
static inline bool is_name(jj_tok *t, const char *nm) { return t->type == T_NAME && strcmp(t->s, nm) == 0; }
static inline void adv(P *p) { if (p->i < p->n - 1) p->i++; }

static inline const char *tokdesc(jj_tok *t) {
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

static inline void expect_op(P *p, const char *op) {
  if (!is_op(cur(p), op)) perr(p, "expected token '%s', got '%.20s'", op, tokdesc(cur(p)));
  adv(p);
}
static inline void expect_type(P *p, int type, const char *what) {
  if (cur(p)->type != type) perr(p, "expected %s, got '%.20s'", what, tokdesc(cur(p)));
  adv(p);
}
static inline const char *expect_name(P *p) {
  if (cur(p)->type != T_NAME) perr(p, "expected name, got '%.20s'", tokdesc(cur(p)));
  const char *s = cur(p)->s;
  adv(p);
  return s;
}

static inline void enter(P *p) {
  if (++p->depth > JJ_MAX_DEPTH) perr(p, "template nested too deeply");
}

/* parse_expr.c */
jj_node *jjp_expr(P *p, bool condexpr);
jj_node *jjp_tuple(P *p, bool simplified, bool condexpr, const char *extra, bool explicit_parens);
jj_node *jjp_filter(P *p, jj_node *operand, bool start_inline);
#endif
