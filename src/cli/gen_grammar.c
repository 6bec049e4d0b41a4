/* Grammars for `mimo generate` (gen_grammar.h). */
#include "cli/gen_grammar.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "core/fileio.h"
#include "text/gbnf.h"
#include "text/grammar_vocab.h"
#include "text/json_grammar.h"

/* Text given inline or as @FILE (grammars as FILE always). */
static mimo_status text_of(const char *arg, bool file, char **out, size_t *len) {
  if (!file && arg[0] != '@') {
    *len = strlen(arg);
    return (*out = strdup(arg)) ? MIMO_OK : mimo_errf(MIMO_E_NOMEM, "grammar");
  }
  return mimo_read_file(file ? arg : arg + 1, out, len, 64u << 20);
}

static mimo_status grammar_of(const mimo_arg *args, int n, mimo_jg **g) {
  const char *js = mimo_arg_str(args, n, "json-schema", NULL), *gf = mimo_arg_str(args, n, "grammar-file", NULL),
             *re = mimo_arg_str(args, n, "regex", NULL);
  *g = NULL;
  if (!!js + !!gf + !!re > 1)
    return mimo_errf(MIMO_E_INVALID, "--json-schema, --grammar-file and --regex: one at most");
  if (re) {
    const mimo_status st = mimo_jg_regex(re, strlen(re), g);
    return st == MIMO_OK ? st : mimo_err_prefix(st, "--regex");
  }
  char *text = NULL;
  size_t len = 0;
  if (!js && !gf)
    return MIMO_OK;
  MIMO_TRY(text_of(js ? js : gf, gf != NULL, &text, &len));
  mimo_status st;
  if (js) {
    json_error_t err;
    json_t *schema = json_loadb(text, len, 0, &err);
    st = schema ? mimo_jg_compile(schema, g)
                : mimo_errf(MIMO_E_INVALID, "line %d: %s", err.line, err.text);
    json_decref(schema);
    if (st != MIMO_OK)
      st = mimo_err_prefix(st, "--json-schema");
  } else {
    char *regex = NULL;
    st = mimo_gbnf_to_regex(text, len, &regex);
    if (st == MIMO_OK)
      st = mimo_jg_regex(regex, strlen(regex), g);
    free(regex);
    if (st != MIMO_OK)
      st = mimo_err_prefix(st, "--grammar-file %s", gf);
  }
  free(text);
  return st;
}

mimo_status mimo_cli_grammar_open(const mimo_arg *args, int n, const mimo_tok *tok, int vocab, int after,
                                  mimo_cli_grammar *x) {
  memset(x, 0, sizeof *x);
  mimo_jg *g = NULL;
  MIMO_TRY(grammar_of(args, n, &g));
  if (!g)
    return MIMO_OK;
  x->vocab = vocab;
  mimo_status st = mimo_gvocab_new(tok, &x->v);
  if (st == MIMO_OK)
    st = mimo_grammar_constraint(x->v, g, after, &x->c);
  mimo_jg_free(g); /* the constraint holds its own reference */
  if (st == MIMO_OK && !(x->allow = malloc(((size_t)vocab + 31) / 32 * sizeof *x->allow)))
    st = mimo_errf(MIMO_E_NOMEM, "grammar mask");
  x->active = x->c && x->c->after_token < 0;
  if (st != MIMO_OK)
    mimo_cli_grammar_close(x);
  return st;
}

const unsigned *mimo_cli_grammar_mask(mimo_cli_grammar *x, const mimo_config *cfg) {
  if (!x->c || !x->active)
    return NULL;
  memset(x->allow, 0, ((size_t)x->vocab + 31) / 32 * sizeof *x->allow);
  x->c->mask(x->c, x->allow, x->vocab, cfg->eos_token_id, cfg->n_eos);
  return x->allow;
}

mimo_status mimo_cli_grammar_take(mimo_cli_grammar *x, int id) {
  if (!x->c)
    return MIMO_OK;
  if (!x->active) {
    x->active = id == x->c->after_token;
    return MIMO_OK;
  }
  return x->c->accept(x->c, id) ? MIMO_OK
                                : mimo_errf(MIMO_E_INTERNAL, "token %d does not continue the grammar", id);
}

bool mimo_cli_grammar_done(mimo_cli_grammar *x) { return x->c && x->active && x->c->done(x->c); }

void mimo_cli_grammar_close(mimo_cli_grammar *x) {
  if (x->c)
    x->c->free(x->c);
  mimo_gvocab_free(x->v);
  free(x->allow);
  memset(x, 0, sizeof *x);
}
