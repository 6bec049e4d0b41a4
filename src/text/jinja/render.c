/* Public entry points: parse a template, render it with a JSON context. */
#include <stdlib.h>
#include <string.h>

#include "text/jinja/internal.h"
#include "text/jinja/jinja.h"

struct mimo_jinja { jj_template t; };

mimo_status mimo_jinja_parse(const char *src, size_t len, mimo_jinja **out) {
  *out = NULL;
  if (!src) return mimo_errf(MIMO_E_INVALID, "template: no source");
  mimo_jinja *j = calloc(1, sizeof *j);
  if (!j) return mimo_errf(MIMO_E_NOMEM, "template: out of memory");
  mimo_status st = jj_parse(src, len, &j->t);
  if (st != MIMO_OK) {
    jj_arena_free(&j->t.arena);
    free(j);
    return st;
  }
  *out = j;
  return MIMO_OK;
}

void mimo_jinja_free(mimo_jinja *t) {
  if (!t) return;
  jj_arena_free(&t->t.arena);
  free(t);
}

static void def_func(jj_ctx *c, jj_scope *g, const char *name, int id) {
  jj_dict_set(c->a, &g->vars, jv_str(name, strlen(name)), (jv){.t = V_FUNC, .i = id});
}

mimo_status mimo_jinja_render(const mimo_jinja *t, const json_t *ctxj, char **out, size_t *out_len) {
  *out = NULL;
  if (out_len) *out_len = 0;
  if (ctxj && !json_is_object(ctxj)) return mimo_errf(MIMO_E_INVALID, "template context must be a JSON object");
  jj_arena arena = {.limit = JJ_MAX_ARENA};
  jmp_buf oom, err;
  arena.oom = &oom;
  jj_ctx *volatile cv = NULL;
  if (setjmp(oom)) {
    jj_arena_free(&arena);
    return mimo_errf(MIMO_E_TOO_LONG, "template rendering used more than %llu MiB", JJ_MAX_ARENA >> 20);
  }
  jj_ctx *c = jj_alloc(&arena, sizeof *c);
  cv = c;
  c->a = &arena;
  c->err = &err;
  c->tmpl = &t->t;
  if (setjmp(err)) {
    mimo_status code = cv->errcode ? cv->errcode : MIMO_E_INVALID;
    mimo_errf(code, "%s", cv->errmsg);
    jj_arena_free(&arena);
    return code;
  }
  jj_scope *g = jj_alloc(&arena, sizeof *g);
  def_func(c, g, "range", F_RANGE);
  def_func(c, g, "namespace", F_NAMESPACE);
  def_func(c, g, "dict", F_DICT);
  def_func(c, g, "raise_exception", F_RAISE);
  def_func(c, g, "strftime_now", F_STRFTIME);
  def_func(c, g, "cycler", F_CYCLER);
  def_func(c, g, "joiner", F_JOINER);
  jj_scope *top = jj_alloc(&arena, sizeof *top);
  top->parent = g;
  if (ctxj) {
    jv ctx = jj_from_json(c, ctxj);
    for (size_t i = 0; i < ctx.d->n; i++) jj_dict_set(&arena, &top->vars, ctx.d->k[i], ctx.d->v[i]);
  }
  c->globals = g;
  jb_init(&c->out, &arena);
  jj_exec_block(c, t->t.root->items, t->t.root->nitems, top);
  char *r = malloc(c->out.n + 1);
  if (!r) {
    jj_arena_free(&arena);
    return mimo_errf(MIMO_E_NOMEM, "template: out of memory");
  }
  if (c->out.n) memcpy(r, c->out.p, c->out.n);
  r[c->out.n] = 0;
  if (out_len) *out_len = c->out.n;
  *out = r;
  jj_arena_free(&arena);
  return MIMO_OK;
}

mimo_status mimo_jinja_render_string(const char *src, const json_t *ctx, char **out) {
  mimo_jinja *t;
  *out = NULL;
  MIMO_TRY(mimo_jinja_parse(src, strlen(src), &t));
  mimo_status st = mimo_jinja_render(t, ctx, out, NULL);
  mimo_jinja_free(t);
  return st;
}
