/* Structured tool calls (json_grammar.h, mimo_jg_tools): a grammar for MiMo's XML calls whose parameters follow the
 * tools' JSON schemas. The calls are read by toolcall.c's qwen3_xml parser, so this file types each parameter the
 * way it does (tc_param_type): a string parameter is raw text up to "</parameter>", anything else is JSON text.
 * The matcher side is tool_grammar_match.c. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "text/json_grammar_internal.h"
#include "text/toolcall.h"
#include "text/toolcall_internal.h"

/* A name the parser reads back as it is: no tag characters or control characters. */
static bool plain_name(const char *s) {
  for (; *s; s++)
    if ((unsigned char)*s < 0x20 || *s == '<' || *s == '>')
      return false;
  return true;
}

/* The regex of exactly the strings among n's literals (JSON texts), or NULL (a literal that is not a string). */
static char *strings_regex(const node *n) {
  size_t cap = 16;
  for (int i = 0; i < n->n_lits; i++)
    cap += 2 * n->lit_len[i] + 1;
  char *re = malloc(cap);
  if (!re)
    return NULL;
  size_t at = 0;
  re[at++] = '^';
  re[at++] = '(';
  for (int i = 0; i < n->n_lits; i++) {
    json_t *v = json_loadb(n->lits[i], n->lit_len[i], JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
    if (!json_is_string(v) || memchr(json_string_value(v), 0, json_string_length(v))) {
      json_decref(v);
      free(re);
      return NULL;
    }
    if (i)
      re[at++] = '|';
    const char *s = json_string_value(v);
    for (size_t k = 0; k < json_string_length(v); k++) {
      if (strchr(".^$|?*+()[]{}\\/-", s[k]))
        re[at++] = '\\';
      re[at++] = s[k];
    }
    json_decref(v);
  }
  re[at++] = ')';
  re[at++] = '$';
  re[at] = 0;
  return re;
}

/* A string parameter's value: raw text, with what the schema says of the string (enum, const, pattern, format,
 * lengths). */
static mimo_status text_value(mimo_jg *g, const node *json, const char *path, node **out) {
  node *t = *out = jg_new_node(g, K_XTEXT);
  if (!t)
    return mimo_errf(MIMO_E_NOMEM, "tool grammar");
  if (json->k == K_UNION) /* e.g. ["string", "null"]: the parser makes any text a string */
    for (int i = 0; i < json->n_alts; i++)
      if (json->alts[i]->k == K_STRING || json->alts[i]->k == K_LITERALS) {
        json = json->alts[i];
        break;
      }
  if (json->k == K_STRING) {
    t->min_len = json->min_len;
    t->max_len = json->max_len;
    if (json->pattern) { /* a string node of this parameter's own: its DFA moves over */
      t->pattern = json->pattern;
      ((node *)json)->pattern = NULL;
    }
    return MIMO_OK;
  }
  if (json->k == K_LITERALS) {
    char *re = strings_regex(json);
    if (!re)
      return mimo_errf(MIMO_E_INVALID, "%s: a string parameter's enum or const must hold strings only", path);
    const mimo_status st = mimo_re_compile_budget(re, strlen(re), MIMO_JG_MAX_REGEX_STATES, &g->re_budget, &t->pattern);
    free(re);
    return st == MIMO_OK ? MIMO_OK : mimo_err_prefix(st, "%s.enum", path);
  }
  if (json->k == K_ANY)
    return MIMO_OK;
  return mimo_errf(MIMO_E_INVALID, "%s: a string parameter (by its type) whose schema is not a string", path);
}

/* One parameter's value node. Integers without bounds get those the parser reads (a long long: 18 digits). */
static mimo_status param_value(mimo_jg *g, const json_t *schema, int vt, const char *path, node **out) {
  json_t *copy = NULL;
  const json_t *type = json_object_get(schema, "type");
  if (vt == VT_INT && json_is_string(type) && !strcmp(json_string_value(type), "integer") &&
      !json_object_get(schema, "minimum") && !json_object_get(schema, "maximum") &&
      !json_object_get(schema, "exclusiveMinimum") && !json_object_get(schema, "exclusiveMaximum") &&
      (copy = json_deep_copy(schema))) {
    json_object_set_new(copy, "minimum", json_integer(-999999999999999999LL));
    json_object_set_new(copy, "maximum", json_integer(999999999999999999LL));
    schema = copy;
  }
  node *json = NULL;
  mimo_status st = jg_compile(g, schema, path, 2, &json);
  json_decref(copy);
  if (st != MIMO_OK)
    return st;
  if (vt != VT_STRING) {
    *out = json;
    return MIMO_OK;
  }
  return text_value(g, json, path, out);
}

/* One function's parameters. Not strict: a parameter whose schema does not compile takes any text, as it would
 * without a grammar; strict: that is an error. */
static mimo_status function_node(mimo_jg *g, const json_t *f, const char *fpath, node **out) {
  const json_t *params = json_object_get(f, "parameters");
  const json_t *props = json_object_get(params, "properties");
  const bool strict = json_is_true(json_object_get(f, "strict"));
  node *fn = jg_new_node(g, K_XFUNC);
  node *free_text = jg_new_node(g, K_XTEXT);
  if (!fn || !free_text)
    return mimo_errf(MIMO_E_NOMEM, "tool grammar");
  *out = fn;
  if (!json_is_object(props)) { /* no properties named: any names, any text (the parser types them as JSON) */
    fn->addl = json_is_false(json_object_get(params, "additionalProperties")) ? NULL : free_text;
    return MIMO_OK;
  }
  if (!json_object_size(props)) /* "properties": {}, as tools without arguments are declared: none */
    return MIMO_OK;
  const size_t np = json_object_size(props);
  if (np > 64)
    return mimo_errf(MIMO_E_INVALID, "%s.parameters: %zu properties, at most 64 are supported", fpath, np);
  fn->keys = calloc(np, sizeof *fn->keys);
  fn->key_len = calloc(np, sizeof *fn->key_len);
  fn->props = calloc(np, sizeof *fn->props);
  if (!fn->keys || !fn->key_len || !fn->props)
    return mimo_errf(MIMO_E_NOMEM, "tool grammar");
  const json_t *saved_root = g->schema_root;
  g->schema_root = params; /* $ref inside a tool's parameters points into them */
  const char *k;
  json_t *v;
  mimo_status st = MIMO_OK;
  json_object_foreach((json_t *)props, k, v) {
    char path[512];
    snprintf(path, sizeof path, "%s.parameters.properties.%s", fpath, k);
    if (!plain_name(k)) {
      st = mimo_errf(MIMO_E_INVALID, "%s: a parameter name with '<', '>' or a control character cannot be written "
                     "as a tool-call tag", path);
      break;
    }
    const int i = fn->n_props;
    if (!(fn->keys[i] = strdup(k))) {
      st = mimo_errf(MIMO_E_NOMEM, "tool grammar");
      break;
    }
    fn->key_len[i] = strlen(k);
    fn->n_props++;
    st = param_value(g, v, tc_param_type(props, k, strlen(k)), path, &fn->props[i]);
    if (st != MIMO_OK && st != MIMO_E_NOMEM && !strict) { /* the value goes unconstrained, as without a grammar */
      fn->props[i] = free_text;
      st = MIMO_OK;
    }
    if (st != MIMO_OK)
      break;
  }
  g->schema_root = saved_root;
  MIMO_TRY(st);
  const json_t *req = json_object_get(params, "required");
  size_t i;
  json_t *r;
  json_array_foreach(req, i, r)
    for (int p = 0; json_is_string(r) && p < fn->n_props; p++)
      if (!strcmp(json_string_value(r), fn->keys[p]))
        fn->required |= 1ull << p;
  return MIMO_OK;
}

mimo_status mimo_jg_tools(const json_t *tools, const char *named, int max_calls, const char *start_text,
                          mimo_jg **out) {
  *out = NULL;
  if (!json_is_array(tools) || !json_array_size(tools))
    return mimo_errf(MIMO_E_INVALID, "tools: a non-empty list is needed");
  mimo_jg *g;
  MIMO_TRY(jg_base(&g));
  g->tools = true;
  mimo_status st = MIMO_OK;
  node *calls = jg_new_node(g, K_XCALLS);
  if (!calls || !(calls->alts = calloc(json_array_size(tools), sizeof *calls->alts)))
    st = mimo_errf(MIMO_E_NOMEM, "tool grammar");
  size_t i;
  json_t *t;
  json_array_foreach(tools, i, t) {
    if (st != MIMO_OK)
      break;
    const json_t *f = json_object_get(t, "function");
    if (!json_is_object(f))
      f = t;
    const char *name = json_string_value(json_object_get(f, "name"));
    char path[64];
    snprintf(path, sizeof path, "tools[%zu].function", i);
    if (!name || !*name || !plain_name(name)) {
      st = mimo_errf(MIMO_E_INVALID, "%s.name: a name with '<', '>' or a control character cannot be written as a "
                     "tool-call tag", path);
      break;
    }
    if (named && strcmp(name, named))
      continue;
    bool seen = false; /* the parser types a name's parameters by its first tool */
    for (int k = 0; k < calls->n_lits; k++)
      seen |= calls->lit_len[k] == strlen(name) + 2 && !memcmp(calls->lits[k], name, strlen(name));
    if (seen)
      continue;
    if (calls->n_lits == 64) {
      st = mimo_errf(MIMO_E_INVALID, "tools: more than 64 functions cannot be constrained");
      break;
    }
    char *text = malloc(strlen(name) + 3);
    if (!text) {
      st = mimo_errf(MIMO_E_NOMEM, "tool grammar");
      break;
    }
    snprintf(text, strlen(name) + 3, "%s>\n", name);
    st = jg_add_literal(calls, text, strlen(text));
    free(text);
    if (st == MIMO_OK)
      st = function_node(g, f, path, &calls->alts[calls->n_alts++]);
  }
  if (st == MIMO_OK && !calls->n_lits)
    st = mimo_errf(MIMO_E_INVALID, "tool_choice: function '%s' is not in 'tools'", named ? named : "");
  char *start = st == MIMO_OK && !start_text ? mimo_toolcall_forced_prefix(named) : NULL;
  const char *text = start_text ? start_text : start;
  if (st == MIMO_OK && !(g->start_text = text ? strdup(text) : NULL))
    st = mimo_errf(MIMO_E_NOMEM, "tool grammar");
  if (named)
    free(start);
  if (st != MIMO_OK) {
    mimo_jg_free(g);
    return st;
  }
  calls->max_items = max_calls > 0 ? max_calls : -1;
  g->root = calls;
  *out = g;
  return MIMO_OK;
}
