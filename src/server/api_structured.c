#include "server/api_structured.h"

#include <stdlib.h>
#include <string.h>

#include "text/gbnf.h"
#include "text/tokenizer.h"
#include "text/toolcall.h"

/* A schema given as an object or as a JSON string (vLLM takes both for guided_json). */
static int schema_of(const json_t *v, const char *field, json_t **out, mimo_api_err *e) {
  if (json_is_object(v) || json_is_true(v)) {
    *out = json_incref((json_t *)v);
    return 0;
  }
  if (json_is_string(v)) {
    json_error_t err;
    *out = json_loads(json_string_value(v), 0, &err);
    if (*out)
      return 0;
    return mimo_api_fail(e, 400, field, "%s: not a JSON schema: %s", field, err.text);
  }
  return mimo_api_fail(e, 400, field, "%s must be a JSON schema (an object)", field);
}

static int choices_of(const json_t *v, const char *field, mimo_jg **out, mimo_api_err *e) {
  if (!json_is_array(v) || !json_array_size(v) || json_array_size(v) > 64)
    return mimo_api_fail(e, 400, field, "%s must be a list of 1 to 64 strings", field);
  const char *c[64];
  size_t i;
  json_t *x;
  json_array_foreach(v, i, x) {
    if (!json_is_string(x))
      return mimo_api_fail(e, 400, field, "%s[%zu] must be a string", field, i);
    c[i] = json_string_value(x);
  }
  if (mimo_jg_choice(c, (int)json_array_size(v), out) != MIMO_OK)
    return mimo_api_fail(e, 400, field, "%s: %s", field, mimo_errmsg());
  return 0;
}

/* The grammar of a schema given as an object or a JSON string. */
static int schema_grammar(const json_t *v, const char *field, mimo_jg **out, mimo_api_err *e) {
  json_t *schema = NULL;
  if (schema_of(v, field, &schema, e))
    return -1;
  const mimo_status st = mimo_jg_compile(schema, out);
  json_decref(schema);
  return st == MIMO_OK ? 0 : mimo_api_fail(e, 400, field, "%s: %s", field, mimo_errmsg());
}

/* A structural tag ({structures, triggers} or {format}, as an object or as JSON text): vLLM's response_format type
 * "structural_tag" and structured_outputs.structural_tag. */
static int structural_grammar(const json_t *v, const char *field, mimo_jg **out, mimo_api_err *e) {
  json_t *obj = NULL;
  if (json_is_string(v)) {
    json_error_t err;
    if (!(obj = json_loads(json_string_value(v), 0, &err)))
      return mimo_api_fail(e, 400, field, "%s: not JSON: %s", field, err.text);
  } else {
    obj = json_incref((json_t *)v);
  }
  int rc = 0;
  if (!json_is_object(obj))
    rc = mimo_api_fail(e, 400, field, "%s must be an object {\"structures\": [...], \"triggers\": [...]} or "
                       "{\"format\": {...}}", field);
  else if (json_object_get(obj, "format") && !json_object_get(obj, "structures")) {
    if (mimo_jg_structural_format(json_object_get(obj, "format"), out) != MIMO_OK)
      rc = mimo_api_fail(e, 400, field, "%s.%s", field, mimo_errmsg());
  } else if (mimo_jg_structural_tag(json_object_get(obj, "structures"), json_object_get(obj, "triggers"), out) != MIMO_OK)
    rc = mimo_api_fail(e, 400, field, "%s.%s", field, mimo_errmsg());
  json_decref(obj);
  return rc;
}

/* One format per request: the second one asked is refused. */
static int second(mimo_jg **out, const char *field, const char *first, mimo_api_err *e) {
  mimo_jg_free(*out);
  *out = NULL;
  return mimo_api_fail(e, 400, field, "%s and %s are both given; send one", field, first);
}

/* A regex given as a string. */
static int regex_grammar(const json_t *v, const char *field, mimo_jg **out, mimo_api_err *e) {
  if (!json_is_string(v))
    return mimo_api_fail(e, 400, field, "%s must be a string (a regular expression)", field);
  if (mimo_jg_regex(json_string_value(v), json_string_length(v), out) != MIMO_OK)
    return mimo_api_fail(e, 400, field, "%s: %s", field, mimo_errmsg());
  return 0;
}

/* A GBNF grammar given as a string: its regular form (text/gbnf.h), then as a regex. */
static int gbnf_grammar(const json_t *v, const char *field, mimo_jg **out, mimo_api_err *e) {
  if (!json_is_string(v))
    return mimo_api_fail(e, 400, field, "%s must be a string (a GBNF grammar)", field);
  char *rx;
  if (mimo_gbnf_to_regex(json_string_value(v), json_string_length(v), &rx) != MIMO_OK)
    return mimo_api_fail(e, 400, field, "%s: %s", field, mimo_errmsg());
  const mimo_status st = mimo_jg_regex(rx, strlen(rx), out);
  free(rx);
  return st == MIMO_OK ? 0 : mimo_api_fail(e, 400, field, "%s: %s", field, mimo_errmsg());
}

int mimo_api_structured(const mimo_server *s, const json_t *root, bool thinking, mimo_jg **out, int *after,
                        mimo_api_err *e) {
  *out = NULL;
  *after = -1;
  const json_t *rf = json_object_get(root, "response_format"), *so = json_object_get(root, "structured_outputs");
  const char *field = NULL;
  if (rf && !json_is_null(rf)) {
    if (!json_is_object(rf) || !json_is_string(json_object_get(rf, "type")))
      return mimo_api_fail(e, 400, "response_format", "response_format must be an object with a string 'type'");
    const char *t = json_string_value(json_object_get(rf, "type"));
    if (strcmp(t, "json_object") == 0) {
      if (mimo_jg_compile(NULL, out) != MIMO_OK)
        return mimo_api_fail(e, 500, NULL, "%s", mimo_errmsg());
      field = "response_format";
    } else if (strcmp(t, "json_schema") == 0) {
      const json_t *js = json_object_get(rf, "json_schema");
      const json_t *sc = json_is_object(js) ? json_object_get(js, "schema") : NULL;
      if (!sc)
        return mimo_api_fail(e, 400, "response_format",
                             "response_format.json_schema.schema is required with type json_schema");
      if (schema_grammar(sc, "response_format.json_schema", out, e))
        return -1;
      field = "response_format";
    } else if (strcmp(t, "structural_tag") == 0) {
      if (structural_grammar(rf, "response_format", out, e))
        return -1;
      field = "response_format";
    } else if (strcmp(t, "text") != 0) {
      return mimo_api_fail(e, 400, "response_format",
                           "response_format.type '%s' is not text, json_object, json_schema or structural_tag", t);
    }
  }
  /* vLLM's guided_* fields, one handler each */
  static const struct {
    const char *name;
    int (*make)(const json_t *, const char *, mimo_jg **, mimo_api_err *);
  } guided[] = {{"guided_json", schema_grammar}, {"guided_choice", choices_of}, {"guided_regex", regex_grammar},
                {"guided_grammar", gbnf_grammar}};
  for (size_t k = 0; k < sizeof guided / sizeof *guided; k++) {
    const json_t *v = json_object_get(root, guided[k].name);
    if (!v || json_is_null(v))
      continue;
    if (field)
      return second(out, guided[k].name, field, e);
    if (guided[k].make(v, guided[k].name, out, e))
      return -1;
    field = guided[k].name;
  }
  bool compact = false; /* vLLM's disable_any_whitespace */
  if (so && !json_is_null(so)) {
    const json_t *sj = json_object_get(so, "json"), *sch = json_object_get(so, "choice"),
                 *sr = json_object_get(so, "regex"), *sg = json_object_get(so, "grammar"),
                 *jo = json_object_get(so, "json_object"), *st = json_object_get(so, "structural_tag");
    if (jo && !json_is_boolean(jo))
      return mimo_api_fail(e, 400, "structured_outputs", "structured_outputs.json_object must be a boolean");
    jo = json_is_true(jo) ? jo : NULL;
    st = json_is_null(st) ? NULL : st;
    if (!json_is_object(so) || (!!sj + !!sch + !!sr + !!sg + !!jo + !!st) != 1)
      return mimo_api_fail(e, 400, "structured_outputs", "structured_outputs must be {\"json\": SCHEMA}, "
                           "{\"json_object\": true}, {\"choice\": [...]}, {\"regex\": PATTERN}, {\"grammar\": GBNF} "
                           "or {\"structural_tag\": TAG}");
    const json_t *ws = json_object_get(so, "whitespace_pattern");
    if (ws && !json_is_null(ws))
      return mimo_api_fail(e, 400, "structured_outputs", "structured_outputs.whitespace_pattern is not supported "
                           "(disable_any_whitespace is)");
    if (mimo_api_get_bool(so, "disable_any_whitespace", &compact, e))
      return -1;
    if (field)
      return second(out, "structured_outputs", field, e);
    if (sch   ? choices_of(sch, "structured_outputs.choice", out, e)
        : st ? structural_grammar(st, "structured_outputs.structural_tag", out, e)
        : sr ? regex_grammar(sr, "structured_outputs.regex", out, e)
        : sg ? gbnf_grammar(sg, "structured_outputs.grammar", out, e)
        : jo ? (mimo_jg_compile(NULL, out) != MIMO_OK ? mimo_api_fail(e, 500, NULL, "%s", mimo_errmsg()) : 0)
             : schema_grammar(sj, "structured_outputs.json", out, e))
      return -1;
    if (compact && (sj || jo))
      mimo_jg_no_whitespace(*out);
  }
  if (*out && thinking) /* the reasoning is free; the answer after it follows the format */
    *after = mimo_tok_token_id(s->tok, "</think>");
  return 0;
}

int mimo_api_forced_call_ids(const mimo_server *s, const char *named, int **ids, int *n, mimo_api_err *e) {
  char *pre = mimo_toolcall_forced_prefix(named);
  const int rc = pre ? mimo_api_tokenize(s, pre, strlen(pre), ids, n, e) : mimo_api_fail(e, 500, NULL, "out of memory");
  if (named)
    free(pre);
  return rc;
}

bool mimo_api_tools_strict(const json_t *tools, bool dflt) {
  size_t i;
  const json_t *t;
  json_array_foreach(tools, i, t) {
    const json_t *strict = json_object_get(json_object_get(t, "function"), "strict");
    if (json_is_true(strict) || (dflt && (!strict || json_is_null(strict))))
      return true;
  }
  return false;
}

int mimo_api_tool_grammar(const json_t *tools, const char *named, int max_calls, const char *start, mimo_jg **out,
                          mimo_api_err *e) {
  *out = NULL;
  const mimo_status st = mimo_jg_tools(tools, named, max_calls, start, out);
  if (st == MIMO_OK)
    return 0;
  if (st == MIMO_E_NOMEM)
    return mimo_api_fail(e, 500, NULL, "tool grammar: %s", mimo_errmsg());
  return mimo_api_tools_strict(tools, false) ? mimo_api_fail(e, 400, "tools", "strict tool calls: %s", mimo_errmsg())
                                             : 0;
}
