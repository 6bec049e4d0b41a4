#include "server/api_common.h"

#include <math.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "core/log.h"
#include "core/utf8.h"

static const char *type_for(int status) {
  switch (status) {
  case 401: return "AuthenticationError";
  case 404: return "NotFoundError";
  case 413: return "BadRequestError";
  case 503: return "ServiceUnavailableError";
  default: return status >= 500 ? "InternalServerError" : "BadRequestError";
  }
}

int mimo_api_fail(mimo_api_err *e, int status, const char *param, const char *fmt, ...) {
  if (e->status)
    return -1;
  e->status = status;
  e->type = type_for(status);
  e->code = NULL;
  snprintf(e->param, sizeof e->param, "%s", param ? param : "");
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(e->msg, sizeof e->msg, fmt, ap);
  va_end(ap);
  mimo_utf8_trim_tail(e->msg); /* a quoted value cut mid-character would make the error body invalid JSON text */
  return -1;
}

int mimo_api_fail_status(mimo_api_err *e, mimo_status st, const char *param) {
  switch (st) {
  case MIMO_E_TOO_LONG: return mimo_api_fail(e, 400, param, "%s", mimo_errmsg());
  case MIMO_E_BUSY: return mimo_api_fail(e, 503, param, "%s", mimo_errmsg());
  case MIMO_E_INVALID:
  case MIMO_E_FORMAT: return mimo_api_fail(e, 400, param, "%s", mimo_errmsg());
  case MIMO_E_NOMEM: return mimo_api_fail(e, 500, param, "out of memory");
  default: return mimo_api_fail(e, 500, param, "%s", mimo_errmsg());
  }
}

void mimo_api_reply_err(mimo_http_req *rq, const mimo_api_err *e) {
  if (e->status == 503)
    mimo_http_add_header(rq, "Retry-After", "1");
  mimo_http_reply_error(rq, e->status, e->type ? e->type : type_for(e->status), e->param[0] ? e->param : NULL,
                        e->code, "%s", e->msg);
}

json_t *mimo_api_parse_body(const char *body, size_t len, mimo_api_err *e) {
  json_error_t je;
  json_t *j = json_loadb(body, len, JSON_REJECT_DUPLICATES, &je);
  if (!j) {
    mimo_api_fail(e, 400, NULL, "malformed JSON body: %s (line %d, column %d)", je.text, je.line, je.column);
    return NULL;
  }
  if (!json_is_object(j)) {
    json_decref(j);
    mimo_api_fail(e, 400, NULL, "the request body must be a JSON object");
    return NULL;
  }
  return j;
}

int mimo_api_get_bool(const json_t *o, const char *k, bool *out, mimo_api_err *e) {
  json_t *v = json_object_get(o, k);
  if (!v || json_is_null(v))
    return 0;
  if (!json_is_boolean(v))
    return mimo_api_fail(e, 400, k, "'%s' must be a boolean", k);
  *out = json_is_true(v);
  return 0;
}

int mimo_api_get_num(const json_t *o, const char *k, double lo, double hi, double *out, mimo_api_err *e) {
  json_t *v = json_object_get(o, k);
  if (!v || json_is_null(v))
    return 0;
  if (!json_is_number(v))
    return mimo_api_fail(e, 400, k, "'%s' must be a number", k);
  double d = json_number_value(v);
  if (!(d >= lo && d <= hi))
    return mimo_api_fail(e, 400, k, "'%s' must be in [%g, %g], got %g", k, lo, hi, d);
  *out = d;
  return 0;
}

int mimo_api_get_int(const json_t *o, const char *k, long lo, long hi, long *out, mimo_api_err *e) {
  json_t *v = json_object_get(o, k);
  if (!v || json_is_null(v))
    return 0;
  double d;
  if (json_is_integer(v))
    d = (double)json_integer_value(v);
  else if (json_is_real(v) && floor(json_real_value(v)) == json_real_value(v))
    d = json_real_value(v);
  else
    return mimo_api_fail(e, 400, k, "'%s' must be an integer", k);
  if (!(d >= (double)lo && d <= (double)hi))
    return mimo_api_fail(e, 400, k, "'%s' must be in [%ld, %ld], got %.0f", k, lo, hi, d);
  *out = (long)d;
  return 0;
}

int mimo_api_get_str(const json_t *o, const char *k, const char **out, mimo_api_err *e) {
  json_t *v = json_object_get(o, k);
  if (!v || json_is_null(v))
    return 0;
  if (!json_is_string(v))
    return mimo_api_fail(e, 400, k, "'%s' must be a string", k);
  *out = json_string_value(v);
  return 0;
}

int mimo_api_get_strs(const json_t *o, const char *k, int max, const char ***out, int *n, mimo_api_err *e) {
  json_t *v = json_object_get(o, k);
  *out = NULL;
  *n = 0;
  if (!v || json_is_null(v))
    return 0;
  size_t cnt = json_is_string(v) ? 1 : json_is_array(v) ? json_array_size(v) : 0;
  if (!json_is_string(v) && !json_is_array(v))
    return mimo_api_fail(e, 400, k, "'%s' must be a string or a list of strings", k);
  if (cnt > (size_t)max)
    return mimo_api_fail(e, 400, k, "'%s' has %zu entries; at most %d are allowed", k, cnt, max);
  const char **a = calloc(cnt + 1, sizeof *a);
  if (!a)
    return mimo_api_fail(e, 500, k, "out of memory");
  for (size_t i = 0; i < cnt; i++) {
    json_t *s = json_is_string(v) ? v : json_array_get(v, i);
    if (!json_is_string(s)) {
      free(a);
      return mimo_api_fail(e, 400, k, "'%s' must be a string or a list of strings", k);
    }
    a[i] = json_string_value(s);
  }
  *out = a;
  *n = (int)cnt;
  return 0;
}

int mimo_api_tokenize(const mimo_server *s, const char *text, size_t len, int **ids, int *n, mimo_api_err *e) {
  size_t cnt = 0;
  mimo_status st = mimo_tok_encode(s->tok, text, len, ids, &cnt);
  if (st != MIMO_OK)
    return mimo_api_fail_status(e, st, NULL);
  *n = (int)cnt;
  return 0;
}

/* Copies a token's bytes with every ill-formed UTF-8 subsequence (a lone byte of a split character, an overlong
 * form, a surrogate) replaced by U+FFFD, as the detokenizer replaces them. */
char *mimo_api_token_text(const mimo_server *s, int id) {
  size_t len = 0;
  const char *b = mimo_tok_token_bytes(s->tok, id, &len);
  return mimo_utf8_sanitize(b ? b : "", b ? len : 0);
}

const char *mimo_api_final_text(const json_t *messages) {
  const size_t n = json_array_size(messages);
  const json_t *c = n ? json_object_get(json_array_get(messages, n - 1), "content") : NULL;
  if (json_is_string(c))
    return json_string_value(c);
  for (size_t i = json_array_size(c); i > 0; i--) {
    const json_t *p = json_array_get(c, i - 1);
    const char *t = json_string_value(json_object_get(p, "text"));
    if (t)
      return t;
  }
  return NULL;
}

/* Whitespace-trimmed view of t (the fallback when a template trims the message). */
static void trimmed(const char *t, const char **p, size_t *n) {
  size_t a = 0, b = strlen(t);
  while (a < b && strchr(" \t\r\n", t[a]))
    a++;
  while (b > a && strchr(" \t\r\n", t[b - 1]))
    b--;
  *p = t + a;
  *n = b - a;
}

/* The last occurrence of needle[0..m) in hay[0..n), or NULL. */
static const char *last_of(const char *hay, size_t n, const char *needle, size_t m) {
  if (!m || m > n)
    return NULL;
  for (size_t i = n - m + 1; i > 0; i--)
    if (!memcmp(hay + i - 1, needle, m))
      return hay + i - 1;
  return NULL;
}

int mimo_api_render(const mimo_server *s, const json_t *messages, const json_t *tools, const json_t *kwargs,
                    int mode, int **ids, int *n, char **text, mimo_api_err *e) {
  char *t = NULL;
  mimo_status st = mimo_tmpl_render(&s->tmpl, messages, tools, mode == MIMO_RENDER_GEN_PROMPT, kwargs, &t);
  if (st != MIMO_OK)
    return mimo_api_fail(e, 400, "messages", "cannot apply the chat template: %s", mimo_errmsg());
  if (mode == MIMO_RENDER_CONTINUE) { /* cut after the final message's text: what the template closes it with goes */
    const char *fin = mimo_api_final_text(messages), *p = NULL;
    size_t m = fin ? strlen(fin) : 0;
    const char *at = fin ? last_of(t, strlen(t), fin, m) : NULL;
    if (!at && fin) {
      trimmed(fin, &p, &m);
      at = last_of(t, strlen(t), p, m);
    }
    if (!at) {
      free(t);
      return mimo_api_fail(e, 400, "messages", "the final message has no text to continue (or the chat template "
                           "does not render it as given)");
    }
    t[at - t + m] = 0;
  }
  int r = mimo_api_tokenize(s, t, strlen(t), ids, n, e);
  if (text && r == 0)
    *text = t;
  else
    free(t);
  return r;
}

void mimo_api_new_id(const char *prefix, char *out, size_t cap) {
  unsigned char r[16] = {0};
  if (getrandom(r, sizeof r, GRND_NONBLOCK) != (ssize_t)sizeof r) {
    static unsigned long ctr;
    unsigned long v = __atomic_add_fetch(&ctr, 1, __ATOMIC_RELAXED);
    memcpy(r, &v, sizeof v);
  }
  int k = snprintf(out, cap, "%s", prefix);
  for (int i = 0; i < 16 && (size_t)k + 3 < cap; i++)
    k += snprintf(out + k, cap - (size_t)k, "%02x", r[i]);
}

int mimo_api_check_tools(const json_t *tools, mimo_api_err *e) {
  if (!json_is_array(tools))
    return mimo_api_fail(e, 400, "tools", "'tools' must be a list");
  size_t i;
  json_t *t;
  json_array_foreach(tools, i, t) {
    json_t *f = json_object_get(t, "function");
    const char *type = json_string_value(json_object_get(t, "type"));
    if (!json_is_object(t) || (type && strcmp(type, "function") != 0) || !json_is_object(f))
      return mimo_api_fail(e, 400, "tools", "tools[%zu] must be {\"type\": \"function\", \"function\": {...}}", i);
    const char *name = json_string_value(json_object_get(f, "name"));
    if (!name || !*name)
      return mimo_api_fail(e, 400, "tools", "tools[%zu].function.name must be a non-empty string", i);
    json_t *p = json_object_get(f, "parameters");
    if (p && !json_is_null(p) && !json_is_object(p))
      return mimo_api_fail(e, 400, "tools", "tools[%zu].function.parameters must be a JSON schema object", i);
    json_t *props = p ? json_object_get(p, "properties") : NULL;
    if (props && !json_is_object(props))
      return mimo_api_fail(e, 400, "tools", "tools[%zu].function.parameters.properties must be an object", i);
  }
  return 0;
}

uint64_t mimo_server_new_seed(mimo_server *s) {
  uint64_t seed = 0;
  if (s->seeded) { /* splitmix64 of the sequence: distinct requests get unrelated seeds */
    uint64_t z = atomic_fetch_add(&s->seed_next, 1) + 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  if (getrandom(&seed, sizeof seed, GRND_NONBLOCK) != (ssize_t)sizeof seed)
    seed = (uint64_t)(mimo_now() * 1e9) ^ (uint64_t)(uintptr_t)&seed;
  return seed;
}

int mimo_server_max_logprobs(const mimo_server *s) { return s->max_logprobs_set ? s->max_logprobs : MIMO_MAX_LOGPROBS; }

int mimo_server_has_model(const mimo_server *s, const char *name) {
  for (int i = 0; i < s->n_names; i++)
    if (strcmp(s->names[i], name) == 0)
      return 1;
  return 0;
}

bool mimo_api_all_space(const char *s, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (s[i] != ' ' && s[i] != '\n' && s[i] != '\t' && s[i] != '\r')
      return false;
  return true;
}
