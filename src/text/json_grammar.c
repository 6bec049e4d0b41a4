/* JSON schema -> byte-level pushdown matcher (json_grammar.h): compiling a schema (or choices, or a regex) into
 * nodes. The matcher that runs them is json_grammar_match.c. */
#include "text/json_grammar.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "text/int_range.h"
#include "text/json_grammar_internal.h"

static mimo_status string_pattern(mimo_jg *g, const json_t *s, const char *path, struct mimo_jg_node *n);

node *jg_new_node(mimo_jg *g, kind k) {
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

void jg_first_of(node *n) {
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
  case K_XCALLS: /* tool-call and structural-tag nodes are entered by their parents' phases, never as a value */
  case K_XFUNC:
  case K_XTEXT:
  case K_STAG: break;
  }
}

mimo_status jg_add_literal(node *n, const char *s, size_t len) {
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
  node *x = jg_new_node(g, K_LITERALS);
  for (int i = 0; x && i < n; i++)
    if (jg_add_literal(x, v[i], strlen(v[i])) != MIMO_OK)
      return NULL;
  if (x)
    jg_first_of(x);
  return x;
}


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
      MIMO_TRY(jg_compile(g, v, sub, depth + 1, &n->props[i]));
      i++;
    }
  } else if (!addl || json_is_true(addl)) {
    n->addl = g->any;
  } else if (json_is_object(addl)) {
    snprintf(sub, sizeof sub, "%s.additionalProperties", path);
    MIMO_TRY(jg_compile(g, addl, sub, depth + 1, &n->addl));
  } else if (!json_is_false(addl)) {
    return mimo_errf(MIMO_E_INVALID, "%s.additionalProperties must be a boolean or a schema", path);
  }
  n->closed = json_is_false(addl);
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
  node *n = jg_new_node(g, k);
  if (!n)
    return mimo_errf(MIMO_E_NOMEM, "schema");
  if (k == K_OBJECT)
    MIMO_TRY(compile_object(g, s, path, depth, n));
  if (k == K_ARRAY) {
    const json_t *items = json_object_get(s, "items"), *prefix = json_object_get(s, "prefixItems");
    n->items = g->any;
    if (prefix) { /* a tuple (pydantic's tuple[int, str]): item i of the prefix follows prefixItems[i] */
      if (!json_is_array(prefix) || !json_array_size(prefix) || json_array_size(prefix) > 64)
        return mimo_errf(MIMO_E_INVALID, "%s.prefixItems must be a list of 1 to 64 schemas", path);
      if (!(n->alts = calloc(json_array_size(prefix), sizeof *n->alts)))
        return mimo_errf(MIMO_E_NOMEM, "schema");
      size_t i;
      json_t *a;
      json_array_foreach(prefix, i, a) {
        snprintf(sub, sizeof sub, "%s.prefixItems[%zu]", path, i);
        MIMO_TRY(jg_compile(g, a, sub, depth + 1, &n->alts[i]));
        n->n_alts++;
      }
    }
    if (items && json_is_false(items) && prefix) {
      n->items = NULL; /* nothing past the prefix */
    } else if (items) {
      snprintf(sub, sizeof sub, "%s.items", path);
      MIMO_TRY(jg_compile(g, items, sub, depth + 1, &n->items));
    }
    MIMO_TRY(get_count(s, "minItems", path, &n->min_items));
    MIMO_TRY(get_count(s, "maxItems", path, &n->max_items));
    if (!n->items && (n->max_items < 0 || n->max_items > n->n_alts))
      n->max_items = n->n_alts;
    if (n->max_items >= 0 && n->max_items < n->min_items)
      return mimo_errf(MIMO_E_INVALID, "%s: maxItems is below minItems", path);
  }
  if (k == K_NUMBER)
    MIMO_TRY(jg_number_bounds(g, s, path, n));
  if (k == K_INTEGER)
    MIMO_TRY(jg_integer_bounds(g, s, path, n));
  if (k == K_STRING) {
    MIMO_TRY(get_count(s, "minLength", path, &n->min_len));
    MIMO_TRY(get_count(s, "maxLength", path, &n->max_len));
    if (n->max_len >= 0 && n->max_len < n->min_len)
      return mimo_errf(MIMO_E_INVALID, "%s: maxLength is below minLength", path);
    MIMO_TRY(string_pattern(g, s, path, n));
  }
  jg_first_of(n);
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

/* Whether n's literals hold one equal to lit as JSON Schema compares values (1 equals 1.0). */
static bool literal_in(const node *n, const char *lit, size_t len) {
  const bool number = lit[0] == '-' || (lit[0] >= '0' && lit[0] <= '9');
  for (int i = 0; i < n->n_lits; i++) {
    const char *o = n->lits[i];
    if (n->lit_len[i] == len && !memcmp(o, lit, len))
      return true;
    if (number && (o[0] == '-' || (o[0] >= '0' && o[0] <= '9')) && strtod(o, NULL) == strtod(lit, NULL))
      return true;
    if ((lit[0] == '{' || lit[0] == '[') && o[0] == lit[0]) /* key order aside: not worth comparing */
      return true;
  }
  return false;
}

static int prop_index(const node *n, const char *key, size_t len) {
  for (int i = 0; i < n->n_props; i++)
    if (n->key_len[i] == len && !memcmp(n->keys[i], key, len))
      return i;
  return -1;
}

/* Whether no JSON value can match both a and b, by their shapes: different first characters, literal sets with
 * nothing in common, or objects that differ in a property both require (a discriminator: pydantic's tagged
 * unions) or in one that one requires and the other cannot have. False where it cannot tell. */
static bool disjoint(const node *a, const node *b, int depth) {
  bool shared_first = false;
  for (int i = 0; i < 32; i++)
    shared_first |= (a->first[i] & b->first[i]) != 0;
  if (!shared_first)
    return true;
  if (depth > 8)
    return false;
  if (a->k == K_LITERALS && b->k == K_LITERALS) {
    for (int i = 0; i < a->n_lits; i++)
      if (literal_in(b, a->lits[i], a->lit_len[i]))
        return false;
    return true;
  }
  if (a->k != K_OBJECT || b->k != K_OBJECT || !a->n_props || !b->n_props)
    return false;
  for (int pass = 0; pass < 2; pass++) {
    const node *x = pass ? b : a, *y = pass ? a : b;
    for (int i = 0; i < x->n_props; i++) {
      if (!(x->required >> i & 1))
        continue;
      const int j = prop_index(y, x->keys[i], x->key_len[i]);
      if (j < 0 ? y->closed : (y->required >> j & 1) && disjoint(x->props[i], y->props[j], depth + 1))
        return true;
    }
  }
  return false;
}

/* A value matches the union when it matches an alternative; alternatives that can start alike are read side by
 * side (json_grammar.h). oneOf also needs no value to match two alternatives: refused unless that is plain from
 * their shapes, rather than a promise the matcher could not keep. */
static mimo_status union_of(mimo_jg *g, node **alts, int n, const char *path, bool one_of, node **out) {
  for (int i = 0; one_of && i < n; i++)
    for (int j = 0; j < i; j++)
      if (!disjoint(alts[j], alts[i], 0))
        return mimo_errf(MIMO_E_INVALID, "%s.oneOf: alternatives %d and %d might both match one value, which oneOf "
                         "forbids and structured outputs cannot rule out (give them a property that tells them "
                         "apart, e.g. a const, or use anyOf)", path, j, i);
  node *u = jg_new_node(g, K_UNION);
  if (!u || !(u->alts = malloc((size_t)n * sizeof *u->alts)))
    return mimo_errf(MIMO_E_NOMEM, "schema");
  memcpy(u->alts, alts, (size_t)n * sizeof *alts);
  u->n_alts = n;
  jg_first_of(u);
  *out = u;
  return MIMO_OK;
}

static const char *const annotations[] = {"title", "description", "default", "examples", "$schema", "$id", "$comment",
                                          "deprecated", "readOnly", "writeOnly", "strict", "$defs", "definitions",
                                          "discriminator",
                                          NULL};
static const char *const understood[] = {"type", "properties", "required", "additionalProperties", "items",
                                         "prefixItems", "minItems", "maxItems", "enum", "const", "anyOf", "oneOf",
                                         "minLength",
                                         "maxLength", "pattern", "format", "minimum", "maximum", "exclusiveMinimum",
                                         "exclusiveMaximum", NULL};


static bool in_list(const char *k, const char *const *l) {
  for (int i = 0; l[i]; i++)
    if (strcmp(k, l[i]) == 0)
      return true;
  return false;
}

enum { JG_MAX_REF_NODES = 50000 };

/* The schema a local reference ("#", "#/$defs/Pet", "#/definitions/a~1b", "#/items/0") points at in root, or NULL. */
static const json_t *resolve_ref(const json_t *root, const char *ref) {
  if (ref[0] != '#' || (ref[1] && ref[1] != '/'))
    return NULL;
  const json_t *at = root;
  for (const char *p = ref + 1; at && *p == '/';) {
    char key[256];
    size_t n = 0;
    for (p++; *p && *p != '/'; p++) { /* one token, ~1 -> '/', ~0 -> '~' */
      char c = *p;
      if (c == '~') {
        if (p[1] != '0' && p[1] != '1')
          return NULL;
        c = *++p == '1' ? '/' : '~';
      }
      if (n + 1 >= sizeof key)
        return NULL;
      key[n++] = c;
    }
    key[n] = 0;
    if (json_is_object(at)) {
      at = json_object_get(at, key);
    } else if (json_is_array(at)) {
      char *end;
      const long i = strtol(key, &end, 10);
      at = n && !*end && i >= 0 ? json_array_get(at, (size_t)i) : NULL;
    } else {
      at = NULL;
    }
  }
  return at;
}


/* s = {"$ref": "#/...", annotations...}: the schema it points at, compiled in its place (pydantic's nested models:
 * $defs). A reference back into one being compiled (a recursive schema) is refused: the nodes form a tree. */
static mimo_status compile_ref(mimo_jg *g, const json_t *s, const char *path, int depth, node **out) {
  const json_t *ref = json_object_get(s, "$ref");
  const char *k;
  json_t *v;
  json_object_foreach((json_t *)s, k, v)
    if (strcmp(k, "$ref") && !in_list(k, annotations))
      return mimo_errf(MIMO_E_INVALID, "%s.%s: keywords beside $ref are not supported in structured outputs", path, k);
  if (!json_is_string(ref))
    return mimo_errf(MIMO_E_INVALID, "%s.$ref must be a string", path);
  const char *r = json_string_value(ref);
  const json_t *target = g->schema_root ? resolve_ref(g->schema_root, r) : NULL;
  if (!target)
    return mimo_errf(MIMO_E_INVALID, "%s.$ref: '%.200s' points nowhere in this schema (local references #/... only)", path,
                     r);
  for (int i = 0; i < g->n_refs; i++)
    if (g->ref_stack[i] == target)
      return mimo_errf(MIMO_E_INVALID, "%s.$ref: '%.200s' refers back into itself; recursive schemas are not supported",
                       path, r);
  if (g->n_refs == MIMO_JG_MAX_DEPTH)
    return mimo_errf(MIMO_E_INVALID, "%s.$ref: references nested deeper than %d", path, MIMO_JG_MAX_DEPTH);
  if (g->n_all > JG_MAX_REF_NODES) /* each use compiles the target again: a chain of doubled references explodes */
    return mimo_errf(MIMO_E_INVALID, "%s.$ref: the schema grows past %d nodes through its references", path,
                     JG_MAX_REF_NODES);
  char sub[512];
  snprintf(sub, sizeof sub, "%s.$ref(%.200s)", path, r);
  g->ref_stack[g->n_refs++] = target;
  const mimo_status st = jg_compile(g, target, sub, depth, out);
  g->n_refs--;
  return st;
}

mimo_status jg_compile(mimo_jg *g, const json_t *s, const char *path, int depth, node **out) {
  if (depth >= MIMO_JG_MAX_DEPTH - 1)
    return mimo_errf(MIMO_E_INVALID, "%s: nested deeper than %d levels", path, MIMO_JG_MAX_DEPTH - 2);
  if (json_is_true(s)) {
    *out = g->any;
    return MIMO_OK;
  }
  if (!json_is_object(s))
    return mimo_errf(MIMO_E_INVALID, "%s must be a schema object", path);
  if (json_object_get(s, "$ref"))
    return compile_ref(g, s, path, depth, out);
  const char *k;
  json_t *v;
  const json_t *all = json_object_get(s, "allOf");
  if (all) { /* one schema (how pydantic v1 gave a $ref a description); an intersection of several is not supported */
    json_object_foreach((json_t *)s, k, v)
      if (strcmp(k, "allOf") && !in_list(k, annotations))
        return mimo_errf(MIMO_E_INVALID, "%s.%s: keywords beside allOf are not supported in structured outputs", path, k);
    if (!json_is_array(all) || json_array_size(all) != 1)
      return mimo_errf(MIMO_E_INVALID, "%s.allOf: only a list of one schema is supported in structured outputs", path);
    char sub[512];
    snprintf(sub, sizeof sub, "%s.allOf[0]", path);
    return jg_compile(g, json_array_get(all, 0), sub, depth, out);
  }
  json_object_foreach((json_t *)s, k, v)
    if (!in_list(k, annotations) && !in_list(k, understood))
      return mimo_errf(MIMO_E_INVALID, "%s.%s: this schema keyword is not supported in structured outputs", path, k);
  char sub[512];
  const json_t *en = json_object_get(s, "enum"), *cn = json_object_get(s, "const");
  if (en || cn) { /* the values themselves, serialized as a model would write them */
    if (en && (!json_is_array(en) || !json_array_size(en) || json_array_size(en) > 64))
      return mimo_errf(MIMO_E_INVALID, "%s.enum must be a list of 1 to 64 values", path);
    node *n = jg_new_node(g, K_LITERALS);
    if (!n)
      return mimo_errf(MIMO_E_NOMEM, "schema");
    const size_t m = en ? json_array_size(en) : 1;
    for (size_t i = 0; i < m; i++) {
      char *d = json_dumps(en ? json_array_get(en, i) : cn, JSON_ENCODE_ANY | JSON_COMPACT);
      if (!d)
        return mimo_errf(MIMO_E_NOMEM, "schema");
      const mimo_status st = jg_add_literal(n, d, strlen(d));
      free(d);
      MIMO_TRY(st);
    }
    jg_first_of(n);
    *out = n;
    return MIMO_OK;
  }
  const json_t *any = json_object_get(s, "anyOf");
  const bool one_of = !any;
  if (!any)
    any = json_object_get(s, "oneOf");
  if (any) {
    const char *word = one_of ? "oneOf" : "anyOf";
    if (json_object_get(s, "anyOf") && json_object_get(s, "oneOf"))
      return mimo_errf(MIMO_E_INVALID, "%s: anyOf beside oneOf is not supported in structured outputs", path);
    if (!json_is_array(any) || !json_array_size(any) || json_array_size(any) > 8)
      return mimo_errf(MIMO_E_INVALID, "%s.%s must be a list of 1 to 8 schemas", path, word);
    node *alts[8];
    size_t i;
    json_t *a;
    json_array_foreach(any, i, a) {
      snprintf(sub, sizeof sub, "%s.%s[%zu]", path, word, i);
      MIMO_TRY(jg_compile(g, a, sub, depth + 1, &alts[i]));
    }
    return json_array_size(any) == 1 ? (*out = alts[0], MIMO_OK)
                                     : union_of(g, alts, (int)json_array_size(any), path, one_of, out);
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
    return json_array_size(t) == 1 ? (*out = alts[0], MIMO_OK)
                                   : union_of(g, alts, (int)json_array_size(t), path, false, out);
  }
  if (t)
    return mimo_errf(MIMO_E_INVALID, "%s.type must be a string or a list", path);
  if (json_object_get(s, "properties"))
    return compile_type(g, s, "object", path, depth, out);
  if (json_object_get(s, "items") || json_object_get(s, "prefixItems"))
    return compile_type(g, s, "array", path, depth, out);
  if (jg_has_bounds(s)) /* any value, numbers among them bounded: not a form the matcher has */
    return mimo_errf(MIMO_E_INVALID, "%s: minimum/maximum need type integer or number", path);
  *out = g->any;
  return MIMO_OK;
}

void mimo_jg_no_whitespace(mimo_jg *g) { g->no_ws = true; }

void mimo_jg_ref(const mimo_jg *g) { atomic_fetch_add(&((mimo_jg *)g)->refs, 1); }

void mimo_jg_free(mimo_jg *g) {
  if (!g || atomic_fetch_sub(&g->refs, 1) > 1)
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
  free(g->start_text);
  mimo_re_free(g->re);
  jg_stag_free(g->stag);
  free(g);
}

/* The nodes every grammar has: any value, and the shapes an "any" value takes once its first byte is known. */
mimo_status jg_base(mimo_jg **out) {
  mimo_jg *g = calloc(1, sizeof *g);
  if (!g)
    return mimo_errf(MIMO_E_NOMEM, "structured output grammar");
  atomic_init(&g->refs, 1);
  g->re_budget = MIMO_RE_WORK;
  static const char *const lits[] = {"true", "false", "null"};
  g->any = jg_new_node(g, K_ANY);
  g->any_obj = jg_new_node(g, K_OBJECT);
  g->any_arr = jg_new_node(g, K_ARRAY);
  g->free_str = jg_new_node(g, K_STRING);
  g->any_num = jg_new_node(g, K_NUMBER);
  g->json_lits = literals(g, lits, 3);
  if (!g->any || !g->any_obj || !g->any_arr || !g->free_str || !g->any_num || !g->json_lits) {
    mimo_jg_free(g);
    return mimo_errf(MIMO_E_NOMEM, "structured output grammar");
  }
  g->any_obj->addl = g->any;
  g->any_arr->items = g->any;
  node *b[] = {g->any, g->any_obj, g->any_arr, g->free_str, g->any_num};
  for (size_t i = 0; i < sizeof b / sizeof *b; i++)
    jg_first_of(b[i]);
  *out = g;
  return MIMO_OK;
}

mimo_status mimo_jg_compile(const json_t *schema, mimo_jg **out) {
  *out = NULL;
  mimo_jg *g;
  MIMO_TRY(jg_base(&g));
  mimo_status st = MIMO_OK;
  if (!schema)
    g->root = g->any_obj;
  else {
    g->schema_root = schema;
    st = jg_compile(g, schema, "schema", 0, &g->root);
    g->schema_root = NULL;
  }
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
  MIMO_TRY(jg_base(&g));
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
  MIMO_TRY(jg_base(&g));
  g->raw = true;
  mimo_status st = mimo_re_compile(pattern, len, MIMO_JG_MAX_REGEX_STATES, &g->re);
  if (st != MIMO_OK) {
    mimo_jg_free(g);
    return st;
  }
  *out = g;
  return MIMO_OK;
}
