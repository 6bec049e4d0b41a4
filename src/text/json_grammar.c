/* JSON schema -> byte-level pushdown matcher (json_grammar.h). A frame per open value: its schema node and where
 * in the value the bytes have got to; numbers and literals end when a byte cannot continue them, which then goes
 * to the enclosing value. */
#include "text/json_grammar.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "text/regex_dfa.h"

typedef enum { K_ANY, K_OBJECT, K_ARRAY, K_STRING, K_NUMBER, K_INTEGER, K_LITERALS, K_UNION } kind;

typedef struct mimo_jg_node {
  kind k;
  /* object: n_props > 0 keys by name (escaped, unquoted) in any order, no others; else free keys with values of
   * `addl` (NULL: none at all) */
  int n_props;
  char **keys;
  size_t *key_len;
  struct mimo_jg_node **props, *addl;
  uint64_t required;
  /* array */
  struct mimo_jg_node *items;
  int min_items, max_items; /* max < 0: none */
  /* string */
  int min_len, max_len;     /* code points; max < 0: none */
  mimo_re *pattern;         /* the decoded value must match (pattern / format); the frame's off is the DFA state */
  /* literals: serialized JSON values, or the raw choices */
  int n_lits;
  char **lits;
  size_t *lit_len;
  /* union: alternatives that start with different bytes */
  int n_alts;
  struct mimo_jg_node **alts;
  uint8_t first[32];        /* bytes a value may start with */
} node;

struct mimo_jg {
  bool raw; /* choices: the literal is the whole output (no whitespace around it) */
  long re_budget; /* the work left for the schema's patterns and formats, all together (text/regex_dfa.h) */
  mimo_re *re; /* a regex: the whole output matches it (raw text); the frame's off is the DFA state */
  node *root, *any, *any_obj, *any_arr, *free_str, *any_num, *json_lits;
  node **all;
  int n_all, cap_all;
};

enum {
  P_VALUE,
  P_OBJ_OPEN, P_OBJ_KEY, P_OBJ_KEYSTR, P_OBJ_COLON, P_OBJ_VALUE, P_OBJ_AFTER, P_OBJ_NEXT,
  P_ARR_OPEN, P_ARR_VALUE, P_ARR_AFTER, P_ARR_NEXT,
  P_STR_IN, P_STR_ESC, P_STR_HEX, P_STR_SURR1, P_STR_SURR2,
  P_NUM_MINUS, P_NUM_ZERO, P_NUM_INT, P_NUM_DOT, P_NUM_FRAC, P_NUM_E, P_NUM_ESIGN, P_NUM_EXP,
  P_LIT,
  P_REGEX,
};

/* ---- compiling ---- */

static mimo_status string_pattern(mimo_jg *g, const json_t *s, const char *path, struct mimo_jg_node *n);

static node *new_node(mimo_jg *g, kind k) {
  if (g->n_all == g->cap_all) {
    const int cap = g->cap_all ? 2 * g->cap_all : 16;
    node **a = realloc(g->all, (size_t)cap * sizeof *a);
    if (!a)
      return NULL;
    g->all = a;
    g->cap_all = cap;
  }
  node *n = calloc(1, sizeof *n);
  if (!n)
    return NULL;
  n->k = k;
  n->max_items = n->max_len = -1;
  g->all[g->n_all++] = n;
  return n;
}

static void set_first(node *n, int c) { n->first[c >> 3] |= (uint8_t)(1u << (c & 7)); }
static bool has_first(const node *n, int c) { return n->first[c >> 3] >> (c & 7) & 1; }

static void first_of(node *n) {
  memset(n->first, 0, sizeof n->first);
  switch (n->k) {
  case K_ANY:
    memset(n->first, 0xff, sizeof n->first);
    break;
  case K_OBJECT: set_first(n, '{'); break;
  case K_ARRAY: set_first(n, '['); break;
  case K_STRING: set_first(n, '"'); break;
  case K_NUMBER:
  case K_INTEGER:
    set_first(n, '-');
    for (int c = '0'; c <= '9'; c++)
      set_first(n, c);
    break;
  case K_LITERALS:
    for (int i = 0; i < n->n_lits; i++)
      if (n->lit_len[i])
        set_first(n, (unsigned char)n->lits[i][0]);
    break;
  case K_UNION:
    for (int i = 0; i < n->n_alts; i++)
      for (int b = 0; b < 32; b++)
        n->first[b] |= n->alts[i]->first[b];
    break;
  }
}

static mimo_status add_literal(node *n, const char *s, size_t len) {
  char **l = realloc(n->lits, (size_t)(n->n_lits + 1) * sizeof *l);
  if (l)
    n->lits = l;
  size_t *ll = realloc(n->lit_len, (size_t)(n->n_lits + 1) * sizeof *ll);
  if (ll)
    n->lit_len = ll;
  char *c = malloc(len + 1);
  if (!l || !ll || !c) {
    free(c);
    return mimo_errf(MIMO_E_NOMEM, "structured output literal");
  }
  memcpy(c, s, len);
  c[len] = 0;
  n->lits[n->n_lits] = c;
  n->lit_len[n->n_lits++] = len;
  return MIMO_OK;
}

static node *literals(mimo_jg *g, const char *const *v, int n) {
  node *x = new_node(g, K_LITERALS);
  for (int i = 0; x && i < n; i++)
    if (add_literal(x, v[i], strlen(v[i])) != MIMO_OK)
      return NULL;
  if (x)
    first_of(x);
  return x;
}

static mimo_status compile(mimo_jg *g, const json_t *s, const char *path, int depth, node **out);

static mimo_status get_count(const json_t *s, const char *key, const char *path, int *out) {
  const json_t *v = json_object_get(s, key);
  if (!v)
    return MIMO_OK;
  if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > 1 << 30)
    return mimo_errf(MIMO_E_INVALID, "%s.%s must be a non-negative integer", path, key);
  *out = (int)json_integer_value(v);
  return MIMO_OK;
}

/* The JSON text of key k as it stands between the quotes. */
static char *escaped_key(const char *k) {
  json_t *j = json_string(k);
  char *d = j ? json_dumps(j, JSON_ENCODE_ANY | JSON_COMPACT) : NULL;
  json_decref(j);
  if (!d)
    return NULL;
  const size_t n = strlen(d);
  memmove(d, d + 1, n - 2);
  d[n - 2] = 0;
  return d;
}

static mimo_status compile_object(mimo_jg *g, const json_t *s, const char *path, int depth, node *n) {
  const json_t *props = json_object_get(s, "properties"), *req = json_object_get(s, "required"),
               *addl = json_object_get(s, "additionalProperties");
  char sub[512];
  if (props && !json_is_object(props))
    return mimo_errf(MIMO_E_INVALID, "%s.properties must be an object", path);
  const size_t np = props ? json_object_size(props) : 0;
  if (np > 64)
    return mimo_errf(MIMO_E_INVALID, "%s.properties: %zu properties, at most 64 are supported", path, np);
  n->n_props = (int)np;
  if (np) {
    n->keys = calloc(np, sizeof *n->keys);
    n->key_len = calloc(np, sizeof *n->key_len);
    n->props = calloc(np, sizeof *n->props);
    if (!n->keys || !n->key_len || !n->props)
      return mimo_errf(MIMO_E_NOMEM, "structured output schema");
    const char *k;
    json_t *v;
    int i = 0;
    json_object_foreach((json_t *)props, k, v) {
      if (!(n->keys[i] = escaped_key(k)))
        return mimo_errf(MIMO_E_NOMEM, "structured output schema");
      n->key_len[i] = strlen(n->keys[i]);
      snprintf(sub, sizeof sub, "%s.properties.%s", path, k);
      MIMO_TRY(compile(g, v, sub, depth + 1, &n->props[i]));
      i++;
    }
  } else if (!addl || json_is_true(addl)) {
    n->addl = g->any;
  } else if (json_is_object(addl)) {
    snprintf(sub, sizeof sub, "%s.additionalProperties", path);
    MIMO_TRY(compile(g, addl, sub, depth + 1, &n->addl));
  } else if (!json_is_false(addl)) {
    return mimo_errf(MIMO_E_INVALID, "%s.additionalProperties must be a boolean or a schema", path);
  }
  /* with named properties, no others are produced: a subset of what the schema allows, whatever it says */
  if (req) {
    if (!json_is_array(req))
      return mimo_errf(MIMO_E_INVALID, "%s.required must be a list", path);
    size_t i;
    json_t *r;
    json_array_foreach(req, i, r) {
      int at = -1;
      for (int p = 0; json_is_string(r) && p < n->n_props; p++) {
        char *e = escaped_key(json_string_value(r));
        if (e && strcmp(e, n->keys[p]) == 0)
          at = p;
        free(e);
      }
      if (at < 0)
        return mimo_errf(MIMO_E_INVALID, "%s.required[%zu] is not one of the properties", path, i);
      n->required |= 1ull << at;
    }
  }
  return MIMO_OK;
}

static mimo_status compile_type(mimo_jg *g, const json_t *s, const char *type, const char *path, int depth,
                                node **out) {
  char sub[512];
  if (strcmp(type, "boolean") == 0) {
    static const char *const tf[] = {"true", "false"};
    return (*out = literals(g, tf, 2)) ? MIMO_OK : mimo_errf(MIMO_E_NOMEM, "schema");
  }
  if (strcmp(type, "null") == 0) {
    static const char *const nul[] = {"null"};
    return (*out = literals(g, nul, 1)) ? MIMO_OK : mimo_errf(MIMO_E_NOMEM, "schema");
  }
  const kind k = strcmp(type, "object") == 0    ? K_OBJECT
                 : strcmp(type, "array") == 0   ? K_ARRAY
                 : strcmp(type, "string") == 0  ? K_STRING
                 : strcmp(type, "number") == 0  ? K_NUMBER
                 : strcmp(type, "integer") == 0 ? K_INTEGER
                                                : K_ANY;
  if (k == K_ANY)
    return mimo_errf(MIMO_E_INVALID, "%s.type: '%s' is not a JSON schema type", path, type);
  node *n = new_node(g, k);
  if (!n)
    return mimo_errf(MIMO_E_NOMEM, "schema");
  if (k == K_OBJECT)
    MIMO_TRY(compile_object(g, s, path, depth, n));
  if (k == K_ARRAY) {
    const json_t *items = json_object_get(s, "items");
    n->items = g->any;
    if (items) {
      snprintf(sub, sizeof sub, "%s.items", path);
      MIMO_TRY(compile(g, items, sub, depth + 1, &n->items));
    }
    MIMO_TRY(get_count(s, "minItems", path, &n->min_items));
    MIMO_TRY(get_count(s, "maxItems", path, &n->max_items));
    if (n->max_items >= 0 && n->max_items < n->min_items)
      return mimo_errf(MIMO_E_INVALID, "%s: maxItems is below minItems", path);
  }
  if (k == K_STRING) {
    MIMO_TRY(get_count(s, "minLength", path, &n->min_len));
    MIMO_TRY(get_count(s, "maxLength", path, &n->max_len));
    if (n->max_len >= 0 && n->max_len < n->min_len)
      return mimo_errf(MIMO_E_INVALID, "%s: maxLength is below minLength", path);
    MIMO_TRY(string_pattern(g, s, path, n));
  }
  first_of(n);
  *out = n;
  return MIMO_OK;
}

/* JSON Schema formats as regexes over the decoded value: RFC 3339 full-date (with the calendar's month lengths and
 * leap years, year 0001 on), full-time (seconds 00-59, at most 6 fraction digits, an offset) and date-time; RFC 4122
 * UUID; dotted IPv4; a plain e-mail shape. */
static const struct {
  const char *name, *re;
} formats[] = {
    {"date", "((\\d{3}[1-9]|\\d{2}[1-9]\\d|\\d[1-9]\\d{2}|[1-9]\\d{3})-((0[13578]|1[02])-(0[1-9]|[12]"
     "\\d|3[01])|(0[469]|11)-(0[1-9]|[12]\\d|30)|02-(0[1-9]|1\\d|2[0-8]))|(\\d\\d(0[48]|[2468"
     "][048]|[13579][26])|(0[48]|[2468][048]|[13579][26])00)-02-29)"},
    {"time", "([01]\\d|2[0-3]):[0-5]\\d:[0-5]\\d(\\.\\d{1,6})?(Z|[+-]([01]\\d|2[0-3]):[0-5]\\d)"},
    {"date-time", "((\\d{3}[1-9]|\\d{2}[1-9]\\d|\\d[1-9]\\d{2}|[1-9]\\d{3})-((0[13578]|1[02])-(0[1-9]|[12]"
     "\\d|3[01])|(0[469]|11)-(0[1-9]|[12]\\d|30)|02-(0[1-9]|1\\d|2[0-8]))|(\\d\\d(0[48]|[2468"
     "][048]|[13579][26])|(0[48]|[2468][048]|[13579][26])00)-02-29)T([01]\\d|2[0-3]):[0-5]\\d"
     ":[0-5]\\d(\\.\\d{1,6})?(Z|[+-]([01]\\d|2[0-3]):[0-5]\\d)"},
    {"uuid", "[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"},
    {"ipv4", "((25[0-5]|2[0-4]\\d|1\\d\\d|[1-9]?\\d)\\.){3}(25[0-5]|2[0-4]\\d|1\\d\\d|[1-9]?\\d)"},
    {"email", "[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9-]{1,63}(\\.[A-Za-z0-9-]{1,63}){0,8}\\.[A-Za-z]{2,24}"},
};

/* A branch of a pattern's top-level alternation under search semantics: its own '^' and '$' anchor it, else
 * anything may stand before or after it. Written at out as a group (at most len + 32 bytes); returns its length. */
static size_t search_branch(char *out, const char *p, size_t len) {
  const bool head = len && p[0] == '^';
  size_t bs = 0; /* backslashes before a final '$' (odd: it is escaped) */
  while (len >= 2 + bs && p[len - 2 - bs] == '\\')
    bs++;
  const bool tail = len > (size_t)head && p[len - 1] == '$' && bs % 2 == 0;
  return (size_t)sprintf(out, "%s(?:%.*s)%s", head ? "" : "[\\s\\S]*", (int)(len - head - tail), p + head,
                         tail ? "" : "[\\s\\S]*");
}

/* JSON Schema's pattern (an ECMA regex searched for anywhere in the string) as a regex for the whole string: each
 * top-level alternative is anchored by its own '^'/'$' ("^ab|cd$": starts with ab, or ends with cd). The split
 * skips escapes, classes and groups; a malformed pattern goes through as it is, for the compiler to name. NULL: no
 * memory. */
static char *search_regex(const char *p, size_t len) {
  char *out = malloc(33 * (len + 1) + 1); /* (len + 1 branches at most, each its bytes + 32 and a '|') */
  if (!out)
    return NULL;
  size_t n = 0, from = 0;
  int depth = 0;
  bool in_class = false;
  for (size_t i = 0; i <= len; i++) {
    if (i < len && p[i] == '\\') {
      i++;
    } else if (i < len && in_class) {
      in_class = p[i] != ']' || p[i - 1] == '[' || (p[i - 1] == '^' && i >= 2 && p[i - 2] == '[');
    } else if (i < len && p[i] == '[') {
      in_class = true;
    } else if (i < len && (p[i] == '(' || p[i] == ')')) {
      depth += p[i] == '(' ? 1 : -1;
    } else if (i == len || (p[i] == '|' && depth == 0)) {
      if (from)
        out[n++] = '|';
      n += search_branch(out + n, p + from, i - from);
      from = i + 1;
    }
  }
  out[n] = 0;
  return out;
}

/* pattern (search semantics, as JSON Schema: unanchored ends match anything) or format: the node's DFA. */
static mimo_status string_pattern(mimo_jg *g, const json_t *s, const char *path, node *n) {
  const json_t *pj = json_object_get(s, "pattern"), *fj = json_object_get(s, "format");
  if (!pj && !fj)
    return MIMO_OK;
  if (pj && fj)
    return mimo_errf(MIMO_E_INVALID, "%s: pattern and format together are not supported", path);
  if ((pj && !json_is_string(pj)) || (fj && !json_is_string(fj)))
    return mimo_errf(MIMO_E_INVALID, "%s.%s: expected a string", path, pj ? "pattern" : "format");
  if (n->min_len || n->max_len >= 0) /* a length bound could end a string the DFA has not finished: no lookahead */
    return mimo_errf(MIMO_E_INVALID, "%s: %s with minLength/maxLength is not supported", path,
                     pj ? "pattern" : "format");
  char *re = NULL;
  if (fj) {
    const char *f = json_string_value(fj);
    for (size_t i = 0; i < sizeof formats / sizeof *formats && !re; i++)
      if (!strcmp(f, formats[i].name))
        re = strdup(formats[i].re);
    if (!re)
      return mimo_errf(MIMO_E_INVALID, "%s.format: '%s' is not supported (date, time, date-time, uuid, ipv4, email "
                       "are)", path, f);
  } else {
    re = search_regex(json_string_value(pj), json_string_length(pj));
  }
  if (!re)
    return mimo_errf(MIMO_E_NOMEM, "schema");
  mimo_status st = mimo_re_compile_budget(re, strlen(re), MIMO_JG_MAX_REGEX_STATES, &g->re_budget, &n->pattern);
  free(re);
  mimo_re *alone = NULL; /* a syntax error again, in the user's own pattern: its positions are the ones to name */
  if (st != MIMO_OK && pj &&
      mimo_re_compile(json_string_value(pj), json_string_length(pj), MIMO_JG_MAX_REGEX_STATES, &alone) == MIMO_OK) {
    mimo_re_free(alone);
    st = mimo_errf(st, "regex: the pattern, found anywhere in the string, needs more than %d DFA states",
                   MIMO_JG_MAX_REGEX_STATES);
  }
  return st == MIMO_OK ? MIMO_OK : mimo_err_prefix(st, "%s.%s", path, pj ? "pattern" : "format");
}

/* Alternatives must start with different bytes, so the first byte of a value picks one. */
static mimo_status union_of(mimo_jg *g, node **alts, int n, const char *path, node **out) {
  for (int i = 0; i < n; i++)
    for (int j = 0; j < i; j++)
      for (int b = 0; b < 32; b++)
        if (alts[i]->first[b] & alts[j]->first[b])
          return mimo_errf(MIMO_E_INVALID, "%s: alternatives %d and %d can start with the same character (only "
                           "alternatives of different kinds are supported)", path, j, i);
  node *u = new_node(g, K_UNION);
  if (!u || !(u->alts = malloc((size_t)n * sizeof *u->alts)))
    return mimo_errf(MIMO_E_NOMEM, "schema");
  memcpy(u->alts, alts, (size_t)n * sizeof *alts);
  u->n_alts = n;
  first_of(u);
  *out = u;
  return MIMO_OK;
}

static const char *const annotations[] = {"title", "description", "default", "examples", "$schema", "$id", "$comment",
                                          "deprecated", "readOnly", "writeOnly", "strict", NULL};
static const char *const understood[] = {"type", "properties", "required", "additionalProperties", "items",
                                         "minItems", "maxItems", "enum", "const", "anyOf", "oneOf", "minLength",
                                         "maxLength", "pattern", "format", NULL};

static bool in_list(const char *k, const char *const *l) {
  for (int i = 0; l[i]; i++)
    if (strcmp(k, l[i]) == 0)
      return true;
  return false;
}

static mimo_status compile(mimo_jg *g, const json_t *s, const char *path, int depth, node **out) {
  if (depth >= MIMO_JG_MAX_DEPTH - 1)
    return mimo_errf(MIMO_E_INVALID, "%s: nested deeper than %d levels", path, MIMO_JG_MAX_DEPTH - 2);
  if (json_is_true(s)) {
    *out = g->any;
    return MIMO_OK;
  }
  if (!json_is_object(s))
    return mimo_errf(MIMO_E_INVALID, "%s must be a schema object", path);
  const char *k;
  json_t *v;
  json_object_foreach((json_t *)s, k, v)
    if (!in_list(k, annotations) && !in_list(k, understood))
      return mimo_errf(MIMO_E_INVALID, "%s.%s: this schema keyword is not supported in structured outputs", path, k);
  char sub[512];
  const json_t *en = json_object_get(s, "enum"), *cn = json_object_get(s, "const");
  if (en || cn) { /* the values themselves, serialized as a model would write them */
    if (en && (!json_is_array(en) || !json_array_size(en) || json_array_size(en) > 64))
      return mimo_errf(MIMO_E_INVALID, "%s.enum must be a list of 1 to 64 values", path);
    node *n = new_node(g, K_LITERALS);
    if (!n)
      return mimo_errf(MIMO_E_NOMEM, "schema");
    const size_t m = en ? json_array_size(en) : 1;
    for (size_t i = 0; i < m; i++) {
      char *d = json_dumps(en ? json_array_get(en, i) : cn, JSON_ENCODE_ANY | JSON_COMPACT);
      if (!d)
        return mimo_errf(MIMO_E_NOMEM, "schema");
      const mimo_status st = add_literal(n, d, strlen(d));
      free(d);
      MIMO_TRY(st);
    }
    first_of(n);
    *out = n;
    return MIMO_OK;
  }
  const json_t *any = json_object_get(s, "anyOf");
  if (!any)
    any = json_object_get(s, "oneOf");
  if (any) {
    if (!json_is_array(any) || !json_array_size(any) || json_array_size(any) > 8)
      return mimo_errf(MIMO_E_INVALID, "%s.anyOf must be a list of 1 to 8 schemas", path);
    node *alts[8];
    size_t i;
    json_t *a;
    json_array_foreach(any, i, a) {
      snprintf(sub, sizeof sub, "%s.anyOf[%zu]", path, i);
      MIMO_TRY(compile(g, a, sub, depth + 1, &alts[i]));
    }
    return json_array_size(any) == 1 ? (*out = alts[0], MIMO_OK) : union_of(g, alts, (int)json_array_size(any), path, out);
  }
  const json_t *t = json_object_get(s, "type");
  if (json_is_string(t))
    return compile_type(g, s, json_string_value(t), path, depth, out);
  if (json_is_array(t)) {
    if (!json_array_size(t) || json_array_size(t) > 7)
      return mimo_errf(MIMO_E_INVALID, "%s.type must list 1 to 7 types", path);
    node *alts[7];
    size_t i;
    json_t *a;
    json_array_foreach(t, i, a) {
      if (!json_is_string(a))
        return mimo_errf(MIMO_E_INVALID, "%s.type[%zu] must be a string", path, i);
      MIMO_TRY(compile_type(g, s, json_string_value(a), path, depth, &alts[i]));
    }
    return json_array_size(t) == 1 ? (*out = alts[0], MIMO_OK) : union_of(g, alts, (int)json_array_size(t), path, out);
  }
  if (t)
    return mimo_errf(MIMO_E_INVALID, "%s.type must be a string or a list", path);
  if (json_object_get(s, "properties"))
    return compile_type(g, s, "object", path, depth, out);
  if (json_object_get(s, "items"))
    return compile_type(g, s, "array", path, depth, out);
  *out = g->any;
  return MIMO_OK;
}

void mimo_jg_free(mimo_jg *g) {
  if (!g)
    return;
  for (int i = 0; i < g->n_all; i++) {
    node *n = g->all[i];
    for (int k = 0; k < n->n_props; k++)
      free(n->keys ? n->keys[k] : NULL);
    for (int k = 0; k < n->n_lits; k++)
      free(n->lits[k]);
    free(n->keys);
    free(n->key_len);
    free(n->props);
    free(n->lits);
    free(n->lit_len);
    free(n->alts);
    mimo_re_free(n->pattern);
    free(n);
  }
  free(g->all);
  mimo_re_free(g->re);
  free(g);
}

/* The nodes every grammar has: any value, and the shapes an "any" value takes once its first byte is known. */
static mimo_status base(mimo_jg **out) {
  mimo_jg *g = calloc(1, sizeof *g);
  if (!g)
    return mimo_errf(MIMO_E_NOMEM, "structured output grammar");
  g->re_budget = MIMO_RE_WORK;
  static const char *const lits[] = {"true", "false", "null"};
  g->any = new_node(g, K_ANY);
  g->any_obj = new_node(g, K_OBJECT);
  g->any_arr = new_node(g, K_ARRAY);
  g->free_str = new_node(g, K_STRING);
  g->any_num = new_node(g, K_NUMBER);
  g->json_lits = literals(g, lits, 3);
  if (!g->any || !g->any_obj || !g->any_arr || !g->free_str || !g->any_num || !g->json_lits) {
    mimo_jg_free(g);
    return mimo_errf(MIMO_E_NOMEM, "structured output grammar");
  }
  g->any_obj->addl = g->any;
  g->any_arr->items = g->any;
  node *b[] = {g->any, g->any_obj, g->any_arr, g->free_str, g->any_num};
  for (size_t i = 0; i < sizeof b / sizeof *b; i++)
    first_of(b[i]);
  *out = g;
  return MIMO_OK;
}

mimo_status mimo_jg_compile(const json_t *schema, mimo_jg **out) {
  *out = NULL;
  mimo_jg *g;
  MIMO_TRY(base(&g));
  mimo_status st = MIMO_OK;
  if (!schema)
    g->root = g->any_obj;
  else
    st = compile(g, schema, "schema", 0, &g->root);
  if (st != MIMO_OK) {
    mimo_jg_free(g);
    return st;
  }
  *out = g;
  return MIMO_OK;
}

mimo_status mimo_jg_choice(const char *const *choices, int n, mimo_jg **out) {
  *out = NULL;
  if (n < 1 || n > 64)
    return mimo_errf(MIMO_E_INVALID, "choices: 1 to 64 strings, got %d", n);
  for (int i = 0; i < n; i++)
    if (!choices[i][0])
      return mimo_errf(MIMO_E_INVALID, "choices[%d] is empty", i);
  mimo_jg *g;
  MIMO_TRY(base(&g));
  g->raw = true;
  if (!(g->root = literals(g, choices, n))) {
    mimo_jg_free(g);
    return mimo_errf(MIMO_E_NOMEM, "structured output grammar");
  }
  *out = g;
  return MIMO_OK;
}

mimo_status mimo_jg_regex(const char *pattern, size_t len, mimo_jg **out) {
  *out = NULL;
  mimo_jg *g;
  MIMO_TRY(base(&g));
  g->raw = true;
  mimo_status st = mimo_re_compile(pattern, len, MIMO_JG_MAX_REGEX_STATES, &g->re);
  if (st != MIMO_OK) {
    mimo_jg_free(g);
    return st;
  }
  *out = g;
  return MIMO_OK;
}

/* ---- matching ---- */

static bool is_ws(int c) { return c == ' ' || c == '\n' || c == '\t' || c == '\r'; }
static bool is_digit(int c) { return c >= '0' && c <= '9'; }
static bool is_hex(int c) { return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }

static bool push(mimo_jg_state *s, const node *n, int phase) {
  if (s->depth >= MIMO_JG_MAX_DEPTH)
    return false;
  mimo_jg_frame *f = &s->f[s->depth++];
  memset(f, 0, sizeof *f);
  f->node = n;
  f->phase = (uint8_t)phase;
  return true;
}

/* The top value is complete: its parent moves on. */
static void pop(mimo_jg_state *s) {
  if (--s->depth == 0)
    return;
  mimo_jg_frame *p = &s->f[s->depth - 1];
  p->ws = 0;
  if (p->phase == P_OBJ_VALUE) {
    if (p->prop >= 0)
      p->seen |= 1ull << p->prop;
    p->phase = P_OBJ_AFTER;
  } else if (p->phase == P_OBJ_KEYSTR) {
    p->phase = P_OBJ_COLON;
  } else if (p->phase == P_ARR_VALUE) {
    p->count++;
    p->phase = P_ARR_AFTER;
  }
}

static uint64_t all_bits(int n) { return n >= 64 ? ~0ull : (1ull << n) - 1; }

static bool num_complete(int phase) {
  return phase == P_NUM_ZERO || phase == P_NUM_INT || phase == P_NUM_FRAC || phase == P_NUM_EXP;
}

static bool lit_complete(const mimo_jg_frame *f) {
  for (int i = 0; i < f->node->n_lits; i++)
    if (f->cand >> i & 1 && f->node->lit_len[i] == f->off)
      return true;
  return false;
}

enum { TOOK, REJECT, AGAIN }; /* AGAIN: the byte goes to the (new) top frame */

/* A value of f's node begins with c (f in P_VALUE). */
static int value_start(const mimo_jg *g, mimo_jg_state *s, mimo_jg_frame *f, int c) {
  const node *n = f->node;
  if (!has_first(n, c))
    return REJECT;
  switch (n->k) {
  case K_ANY:
    f->node = c == '{' ? g->any_obj : c == '[' ? g->any_arr : c == '"' ? g->free_str
              : (c == '-' || is_digit(c)) ? g->any_num : g->json_lits;
    return AGAIN;
  case K_UNION:
    for (int i = 0; i < n->n_alts; i++)
      if (has_first(n->alts[i], c)) {
        f->node = n->alts[i];
        return AGAIN;
      }
    return REJECT;
  case K_OBJECT:
    f->phase = P_OBJ_OPEN;
    f->prop = -1;
    return TOOK;
  case K_ARRAY:
    f->phase = P_ARR_OPEN;
    return TOOK;
  case K_STRING:
    f->phase = P_STR_IN;
    f->off = n->pattern ? (uint32_t)mimo_re_start(n->pattern) : 0;
    return TOOK;
  case K_NUMBER:
  case K_INTEGER:
    f->phase = c == '-' ? P_NUM_MINUS : c == '0' ? P_NUM_ZERO : P_NUM_INT;
    f->count = 1;
    return TOOK;
  case K_LITERALS:
    f->phase = P_LIT;
    f->cand = all_bits(n->n_lits);
    f->off = 0;
    return AGAIN;
  }
  (void)s;
  return REJECT;
}

/* A pattern string's DFA after decoded byte c (false: it cannot continue). */
static bool pattern_byte(const node *n, mimo_jg_frame *f, int c) {
  const int next = mimo_re_next(n->pattern, (int)f->off, (unsigned char)c);
  if (next < 0)
    return false;
  f->off = (uint32_t)next;
  return true;
}

/* A short escape's decoded byte ('\\' followed by c), or -1. */
static int short_escape(int c) {
  switch (c) {
  case '"': case '\\': case '/': return c;
  case 'b': return 8;
  case 'f': return 12;
  case 'n': return 10;
  case 'r': return 13;
  case 't': return 9;
  default: return -1;
  }
}

static int string_byte(mimo_jg_state *s, mimo_jg_frame *f, int c) {
  const node *n = f->node;
  if (f->phase == P_STR_ESC && n->pattern) { /* the short escapes only: their byte is known at once */
    const int d = short_escape(c);
    if (d < 0 || !pattern_byte(n, f, d))
      return REJECT;
    f->phase = P_STR_IN;
    return TOOK;
  }
  if (f->phase == P_STR_ESC) {
    if (c == 'u') {
      f->phase = P_STR_HEX;
      f->hex = 4;
      f->off = 0;
      return TOOK;
    }
    if (!strchr("\"\\/bfnrt", c) || !c)
      return REJECT;
    f->phase = P_STR_IN;
    return TOOK;
  }
  if (f->phase == P_STR_HEX) { /* \uXXXX: surrogates only as a high-low pair, so the text is Unicode */
    if (!is_hex(c))
      return REJECT;
    const unsigned v = (unsigned)(is_digit(c) ? c - '0' : (c | 0x20) - 'a' + 10), pos = 4u - f->hex;
    const bool low = f->off >> 16 & 1;
    const unsigned prev = f->off & 0xffff;
    if (low ? (pos == 0 && v != 0xd) || (pos == 1 && v < 0xc) : pos == 1 && prev == 0xd && v >= 0xc)
      return REJECT;
    f->off = (low ? 1u << 16 : 0) | ((prev << 4 | v) & 0xffff);
    if (--f->hex == 0) {
      const unsigned cp = f->off & 0xffff;
      f->phase = !low && cp >= 0xd800 && cp <= 0xdbff ? P_STR_SURR1 : P_STR_IN;
      f->off = 0;
    }
    return TOOK;
  }
  if (f->phase == P_STR_SURR1 || f->phase == P_STR_SURR2) { /* the low half of a pair: \uDC00..\uDFFF */
    if (c != (f->phase == P_STR_SURR1 ? '\\' : 'u'))
      return REJECT;
    if (f->phase == P_STR_SURR2) {
      f->hex = 4;
      f->off = 1u << 16;
    }
    f->phase = f->phase == P_STR_SURR1 ? P_STR_SURR2 : P_STR_HEX;
    return TOOK;
  }
  if (f->need) { /* inside a UTF-8 sequence */
    if (c < f->lo || c > f->hi || (n->pattern && !pattern_byte(n, f, c)))
      return REJECT;
    f->need--;
    f->lo = 0x80;
    f->hi = 0xbf;
    return TOOK;
  }
  if (c == '"') {
    if (f->count < n->min_len || (n->pattern && !mimo_re_accepts(n->pattern, (int)f->off)))
      return REJECT;
    pop(s);
    return TOOK;
  }
  if (c < 0x20)
    return REJECT;
  if (n->max_len >= 0 && f->count >= n->max_len)
    return REJECT;
  if (n->pattern && c == '\\') { /* only when some short escape's byte can come next */
    static const char esc[] = "\"\\/bfnrt";
    bool any = false;
    for (int i = 0; esc[i] && !any; i++)
      any = mimo_re_next(n->pattern, (int)f->off, (unsigned char)short_escape(esc[i])) >= 0;
    if (!any)
      return REJECT;
  } else if (n->pattern) {
    mimo_jg_frame t = *f;
    if (!pattern_byte(n, &t, c))
      return REJECT;
    f->off = t.off;
  }
  if (c == '\\') {
    f->phase = P_STR_ESC;
  } else if (c >= 0x80) { /* well-formed UTF-8 (Unicode table 3-7): no overlong forms, surrogates or > U+10FFFF */
    f->need = c >= 0xc2 && c <= 0xdf ? 1 : c >= 0xe0 && c <= 0xef ? 2 : c >= 0xf0 && c <= 0xf4 ? 3 : 9;
    if (f->need == 9)
      return REJECT;
    f->lo = c == 0xe0 ? 0xa0 : c == 0xf0 ? 0x90 : 0x80;
    f->hi = c == 0xed ? 0x9f : c == 0xf4 ? 0x8f : 0xbf;
  }
  f->count++;
  return TOOK;
}

static int number_byte(mimo_jg_state *s, mimo_jg_frame *f, int c) {
  const bool integer = f->node->k == K_INTEGER;
  int next = -1;
  switch (f->phase) {
  case P_NUM_MINUS: next = c == '0' ? P_NUM_ZERO : is_digit(c) ? P_NUM_INT : -1; break;
  case P_NUM_ZERO:
  case P_NUM_INT:
    next = f->phase == P_NUM_INT && is_digit(c) ? P_NUM_INT
           : !integer && c == '.'             ? P_NUM_DOT
           : !integer && (c == 'e' || c == 'E') ? P_NUM_E
                                                : -1;
    break;
  case P_NUM_DOT: next = is_digit(c) ? P_NUM_FRAC : -1; break;
  case P_NUM_FRAC: next = is_digit(c) ? P_NUM_FRAC : (c == 'e' || c == 'E') ? P_NUM_E : -1; break;
  case P_NUM_E: next = is_digit(c) ? P_NUM_EXP : (c == '+' || c == '-') ? P_NUM_ESIGN : -1; break;
  case P_NUM_ESIGN:
  case P_NUM_EXP: next = is_digit(c) ? P_NUM_EXP : -1; break;
  }
  if (next >= 0 && f->count < MIMO_JG_MAX_NUM) {
    f->phase = (uint8_t)next;
    f->count++;
    return TOOK;
  }
  if (!num_complete(f->phase) || s->depth == 1) /* a top-level number ends the output */
    return REJECT;
  pop(s);
  return AGAIN;
}

static int literal_byte(mimo_jg_state *s, mimo_jg_frame *f, int c) {
  const node *n = f->node;
  uint64_t next = 0;
  for (int i = 0; i < n->n_lits; i++)
    if (f->cand >> i & 1 && f->off < n->lit_len[i] && (unsigned char)n->lits[i][f->off] == c)
      next |= 1ull << i;
  if (next) {
    f->cand = next;
    f->off++;
    return TOOK;
  }
  if (!lit_complete(f) || s->depth == 1)
    return REJECT;
  pop(s);
  return AGAIN;
}

/* Object key of a named-properties object: the bytes between the quotes must spell one not given yet. */
static int key_byte(mimo_jg_frame *f, int c) {
  const node *n = f->node;
  if (c == '"') {
    for (int i = 0; i < n->n_props; i++)
      if (f->cand >> i & 1 && n->key_len[i] == f->off) {
        f->prop = (int16_t)i;
        f->phase = P_OBJ_COLON;
        f->ws = 0;
        return TOOK;
      }
    return REJECT;
  }
  uint64_t next = 0;
  for (int i = 0; i < n->n_props; i++)
    if (f->cand >> i & 1 && f->off < n->key_len[i] && (unsigned char)n->keys[i][f->off] == c)
      next |= 1ull << i;
  if (!next)
    return REJECT;
  f->cand = next;
  f->off++;
  return TOOK;
}

static int ws_byte(mimo_jg_frame *f) {
  if (f->ws >= MIMO_JG_MAX_WS)
    return REJECT;
  f->ws++;
  return TOOK;
}

static int object_byte(const mimo_jg *g, mimo_jg_state *s, mimo_jg_frame *f, int c) {
  const node *n = f->node;
  const bool named = n->n_props > 0;
  const uint64_t left = all_bits(n->n_props) & ~f->seen;
  switch (f->phase) {
  case P_OBJ_OPEN:
  case P_OBJ_NEXT:
    if (is_ws(c))
      return ws_byte(f);
    if (c == '}' && f->phase == P_OBJ_OPEN && (!named || !n->required)) {
      pop(s);
      return TOOK;
    }
    if (c != '"' || (named ? !left : !n->addl))
      return REJECT;
    f->ws = 0;
    if (named) {
      f->phase = P_OBJ_KEY;
      f->cand = left;
      f->off = 0;
      return TOOK;
    }
    f->phase = P_OBJ_KEYSTR;
    f->prop = -1;
    if (!push(s, g->free_str, P_STR_IN))
      return REJECT;
    return TOOK;
  case P_OBJ_KEY:
    return key_byte(f, c);
  case P_OBJ_COLON:
    if (is_ws(c))
      return ws_byte(f);
    if (c != ':')
      return REJECT;
    f->phase = P_OBJ_VALUE;
    return push(s, named ? n->props[f->prop] : n->addl, P_VALUE) ? TOOK : REJECT;
  case P_OBJ_AFTER:
    if (is_ws(c))
      return ws_byte(f);
    if (c == ',' && (!named || left)) {
      f->phase = P_OBJ_NEXT;
      f->ws = 0;
      return TOOK;
    }
    if (c == '}' && (!named || (f->seen & n->required) == n->required)) {
      pop(s);
      return TOOK;
    }
    return REJECT;
  }
  return REJECT;
}

static int array_byte(mimo_jg_state *s, mimo_jg_frame *f, int c) {
  const node *n = f->node;
  switch (f->phase) {
  case P_ARR_OPEN:
  case P_ARR_NEXT:
    if (is_ws(c))
      return ws_byte(f);
    if (c == ']' && f->phase == P_ARR_OPEN) {
      if (n->min_items > 0)
        return REJECT;
      pop(s);
      return TOOK;
    }
    if (n->max_items >= 0 && f->count >= n->max_items)
      return REJECT;
    f->phase = P_ARR_VALUE;
    f->ws = 0;
    return push(s, n->items, P_VALUE) ? AGAIN : REJECT;
  case P_ARR_AFTER:
    if (is_ws(c))
      return ws_byte(f);
    if (c == ',' && (n->max_items < 0 || f->count < n->max_items)) {
      f->phase = P_ARR_NEXT;
      f->ws = 0;
      return TOOK;
    }
    if (c == ']' && f->count >= n->min_items) {
      pop(s);
      return TOOK;
    }
    return REJECT;
  }
  return REJECT;
}

/* One byte on s in place; false leaves s in an unspecified state. */
static bool step(const mimo_jg *g, mimo_jg_state *s, int c) {
  for (int guard = 0; guard < 4 * MIMO_JG_MAX_DEPTH; guard++) {
    if (s->depth == 0)
      return false; /* nothing may follow the value */
    mimo_jg_frame *f = &s->f[s->depth - 1];
    int r;
    switch (f->phase) {
    case P_VALUE:
      if (is_ws(c) && !g->raw)
        return ws_byte(f) == TOOK;
      r = value_start(g, s, f, c);
      break;
    case P_STR_IN:
    case P_STR_ESC:
    case P_STR_HEX:
    case P_STR_SURR1:
    case P_STR_SURR2: r = string_byte(s, f, c); break;
    case P_LIT: r = literal_byte(s, f, c); break;
    case P_REGEX: {
      const int next = mimo_re_next(g->re, (int)f->off, (unsigned char)c);
      if (next < 0)
        return false;
      f->off = (uint32_t)next;
      return true;
    }
    case P_ARR_OPEN:
    case P_ARR_AFTER:
    case P_ARR_NEXT: r = array_byte(s, f, c); break;
    case P_ARR_VALUE:
    case P_OBJ_VALUE:
    case P_OBJ_KEYSTR: return false; /* a child frame is on top while these wait */
    default:
      r = f->phase >= P_NUM_MINUS && f->phase <= P_NUM_EXP ? number_byte(s, f, c) : object_byte(g, s, f, c);
      break;
    }
    if (r != AGAIN)
      return r == TOOK;
  }
  return false;
}

void mimo_jg_start(const mimo_jg *g, mimo_jg_state *s) {
  memset(s, 0, sizeof *s);
  if (g->re) {
    push(s, NULL, P_REGEX);
    s->f[0].off = (uint32_t)mimo_re_start(g->re);
    return;
  }
  push(s, g->root, P_VALUE);
}

bool mimo_jg_feed(const mimo_jg *g, mimo_jg_state *s, unsigned char c) {
  mimo_jg_state t = *s;
  if (!step(g, &t, c))
    return false;
  *s = t;
  return true;
}

bool mimo_jg_done(const mimo_jg *g, const mimo_jg_state *s) {
  if (s->depth == 0)
    return true;
  if (s->depth > 1)
    return false;
  const mimo_jg_frame *f = &s->f[0];
  if (f->phase == P_REGEX)
    return mimo_re_accepts(g->re, (int)f->off);
  if (f->phase >= P_NUM_MINUS && f->phase <= P_NUM_EXP)
    return num_complete(f->phase);
  return f->phase == P_LIT && lit_complete(f);
}

bool mimo_jg_free_text(const mimo_jg_state *s) {
  if (!s->depth)
    return false;
  const mimo_jg_frame *f = &s->f[s->depth - 1];
  return f->phase == P_STR_IN && !f->need && f->node->max_len < 0 && !f->node->pattern;
}

/* For the vocabulary's mask (grammar_vocab.c): the same step, in place. */
bool mimo_jg_step_inplace(const mimo_jg *g, mimo_jg_state *s, unsigned char c) { return step(g, s, c); }
