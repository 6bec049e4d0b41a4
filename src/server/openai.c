/* OpenAI request parsing: JSON body -> mimo_oai_req (prompt ids, sampling,
 * stop strings, tool choice), with a 400 naming the field for anything wrong. */
#include "server/openai.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "core/log.h"
#include "core/num.h"
#include "server/api_images.h"
#include "server/api_structured.h"

#define MAX_N 128
#define MAX_STOP 16

json_t *mimo_openai_error_body(int status, const char *type, const char *param, const char *code, const char *msg) {
  json_t *err = json_pack("{s:s,s:s,s:o,s:o}", "message", msg, "type", type, "param",
                          param ? json_string(param) : json_null(), "code",
                          code ? json_string(code) : json_integer(status));
  return err ? json_pack("{s:o}", "error", err) : NULL;
}

void mimo_oai_req_free(mimo_oai_req *r) {
  json_decref(r->messages);
  json_decref(r->tools);
  json_decref(r->kwargs);
  free(r->prompt_text);
  free(r->prompt);
  free(r->forced);
  free(r->stop_ids);
  free(r->stop);
  free(r->bias_ids);
  free(r->bias_vals);
  mimo_api_images_free(&r->images);
  mimo_jg_free(r->grammar);
  memset(r, 0, sizeof *r);
}

/* An image_url part's URL ({"url": ...} or the string itself, as vLLM takes both). */
static const char *image_url_of(const json_t *p) {
  const json_t *u = json_object_get(p, "image_url");
  return json_is_string(u) ? json_string_value(u) : json_string_value(json_object_get(u, "url"));
}

/* A content list with images: their parts become {"type": "image"} for the template (which renders the placeholders
 * where they stand and joins the text parts as they are, as vLLM passes such lists) and the images go to im. */
static int content_parts(mimo_server *s, const json_t *c, const char *param, json_t **out, mimo_api_images *im,
                         mimo_api_err *e) {
  json_t *arr = json_array();
  size_t i;
  json_t *p;
  json_array_foreach(c, i, p) {
    const char *type = json_string_value(json_object_get(p, "type"));
    char where[96];
    if (strcmp(type, "text") == 0) {
      json_array_append_new(arr, json_pack("{s:s,s:O}", "type", "text", "text", json_object_get(p, "text")));
      continue;
    }
    snprintf(where, sizeof where, "%s[%zu].image_url", param, i);
    const char *url = image_url_of(p);
    if (!url) {
      json_decref(arr);
      return mimo_api_fail(e, 400, param, "%s.url must be a string", where);
    }
    if (mimo_api_image_add(s, im, url, !im->count_only, where, e)) {
      json_decref(arr);
      return -1;
    }
    json_array_append_new(arr, json_pack("{s:s}", "type", "image"));
  }
  *out = arr;
  return 0;
}

/* Text of a content field: a string, or a list of text parts joined by "\n"; a list with image_url parts stays a
 * list (content_parts). */
static int content_text(mimo_server *s, const json_t *c, const char *param, json_t **out, mimo_api_images *im,
                        mimo_api_err *e) {
  if (json_is_string(c)) {
    *out = json_incref((json_t *)c);
    return 0;
  }
  if (!json_is_array(c))
    return mimo_api_fail(e, 400, param, "%s must be a string or a list of content parts", param);
  size_t i;
  json_t *p;
  char *acc = NULL;
  size_t len = 0;
  bool images = false;
  json_array_foreach(c, i, p) {
    const char *type = json_string_value(json_object_get(p, "type"));
    if (!json_is_object(p) || !type)
      return mimo_api_fail(e, 400, param, "%s[%zu] must be an object with a 'type'", param, i);
    if (strcmp(type, "image_url") == 0) {
      images = true;
      continue;
    }
    if (strcmp(type, "text") != 0) {
      if (strstr(type, "audio") || strstr(type, "video") || strstr(type, "file") || strstr(type, "image"))
        return mimo_api_fail(e, 400, param, "%s[%zu]: '%s' content is not supported (text and image_url parts are)",
                             param, i, type);
      return mimo_api_fail(e, 400, param, "%s[%zu]: unknown content part type '%s'", param, i, type);
    }
    if (!json_is_string(json_object_get(p, "text")))
      return mimo_api_fail(e, 400, param, "%s[%zu].text must be a string", param, i);
  }
  if (images)
    return content_parts(s, c, param, out, im, e);
  json_array_foreach(c, i, p) {
    const char *t = json_string_value(json_object_get(p, "text"));
    if (!t) {
      free(acc);
      return mimo_api_fail(e, 400, param, "%s[%zu].text must be a string", param, i);
    }
    size_t tl = strlen(t);
    char *n = realloc(acc, len + tl + 2);
    if (!n) {
      free(acc);
      return mimo_api_fail(e, 500, NULL, "out of memory");
    }
    acc = n;
    if (len)
      acc[len++] = '\n';
    memcpy(acc + len, t, tl + 1);
    len += tl;
  }
  *out = json_stringn(acc ? acc : "", len);
  free(acc);
  return *out ? 0 : mimo_api_fail(e, 500, NULL, "out of memory");
}

/* assistant tool_calls: arguments (a JSON string in OpenAI's shape) become objects for the template. */
static int norm_tool_calls(const json_t *tc, int mi, json_t *m, mimo_api_err *e) {
  if (!json_is_array(tc))
    return mimo_api_fail(e, 400, "messages", "messages[%d].tool_calls must be a list", mi);
  json_t *out = json_array();
  size_t i;
  json_t *c;
  json_array_foreach(tc, i, c) {
    json_t *f = json_object_get(c, "function");
    const char *name = json_string_value(json_object_get(f, "name"));
    json_t *args = json_object_get(f, "arguments");
    if (!name) {
      json_decref(out);
      return mimo_api_fail(e, 400, "messages", "messages[%d].tool_calls[%zu].function.name must be a string", mi, i);
    }
    json_t *a = NULL;
    if (json_is_string(args)) {
      a = json_loads(json_string_value(args), JSON_DECODE_ANY, NULL);
      if (!json_is_object(a)) {
        json_decref(a);
        json_decref(out);
        return mimo_api_fail(e, 400, "messages",
                             "messages[%d].tool_calls[%zu].function.arguments must be a JSON object string", mi, i);
      }
    } else if (json_is_object(args)) {
      a = json_incref(args);
    } else {
      a = json_object();
    }
    json_t *nc = json_deep_copy(c);
    json_object_set_new(json_object_get(nc, "function"), "arguments", a);
    json_array_append_new(out, nc);
  }
  json_object_set_new(m, "tool_calls", out);
  return 0;
}

static int norm_messages(mimo_server *s, const json_t *msgs, json_t **out, mimo_api_images *im, mimo_api_err *e) {
  if (!msgs)
    return mimo_api_fail(e, 400, "messages", "'messages' is required");
  if (!json_is_array(msgs))
    return mimo_api_fail(e, 400, "messages", "'messages' must be a list");
  if (!json_array_size(msgs))
    return mimo_api_fail(e, 400, "messages", "'messages' must not be empty");
  json_t *arr = json_array();
  size_t i;
  json_t *m;
  json_array_foreach(msgs, i, m) {
    char param[48];
    snprintf(param, sizeof param, "messages[%zu].content", i);
    const char *role = json_string_value(json_object_get(m, "role"));
    if (!json_is_object(m) || !role) {
      json_decref(arr);
      return mimo_api_fail(e, 400, "messages", "messages[%zu] must be an object with a string 'role'", i);
    }
    static const char *roles[] = {"system", "developer", "user", "assistant", "tool"};
    int known = 0;
    for (int k = 0; k < 5; k++)
      known |= strcmp(role, roles[k]) == 0;
    if (!known) {
      json_decref(arr);
      return mimo_api_fail(e, 400, "messages", "messages[%zu]: unknown role '%s'", i, role);
    }
    json_t *nm = json_deep_copy(m);
    if (strcmp(role, "developer") == 0)
      json_object_set_new(nm, "role", json_string("system"));
    json_t *c = json_object_get(m, "content"), *txt = NULL;
    int is_asst = strcmp(role, "assistant") == 0;
    if ((!c || json_is_null(c)) && is_asst) {
      json_object_set_new(nm, "content", json_string(""));
    } else if (!c || json_is_null(c)) {
      json_decref(nm);
      json_decref(arr);
      return mimo_api_fail(e, 400, "messages", "messages[%zu] (%s) needs 'content'", i, role);
    } else if (content_text(s, c, param, &txt, im, e) != 0) {
      json_decref(nm);
      json_decref(arr);
      return -1;
    } else {
      json_object_set_new(nm, "content", txt);
    }
    json_t *tc = json_object_get(m, "tool_calls");
    if (is_asst && tc && !json_is_null(tc) && norm_tool_calls(tc, (int)i, nm, e) != 0) {
      json_decref(nm);
      json_decref(arr);
      return -1;
    }
    /* vLLM's name for history reasoning; the template reads reasoning_content */
    json_t *rs = json_object_get(m, "reasoning");
    if (rs && json_is_string(rs) && !json_object_get(m, "reasoning_content"))
      json_object_set(nm, "reasoning_content", rs);
    json_array_append_new(arr, nm);
  }
  *out = arr;
  return 0;
}

static int parse_tool_choice(const json_t *root, mimo_oai_req *r, const char **named, mimo_api_err *e) {
  json_t *tc = json_object_get(root, "tool_choice");
  r->tool_choice = r->tools ? MIMO_TOOLS_AUTO : MIMO_TOOLS_NONE;
  if (!tc || json_is_null(tc))
    return 0;
  if (json_is_string(tc)) {
    const char *v = json_string_value(tc);
    if (strcmp(v, "none") == 0)
      r->tool_choice = MIMO_TOOLS_NONE;
    else if (strcmp(v, "auto") == 0)
      r->tool_choice = r->tools ? MIMO_TOOLS_AUTO : MIMO_TOOLS_NONE;
    else if (strcmp(v, "required") == 0)
      r->tool_choice = MIMO_TOOLS_REQUIRED;
    else
      return mimo_api_fail(e, 400, "tool_choice", "tool_choice must be none, auto, required or a named function");
  } else if (json_is_object(tc)) {
    *named = json_string_value(json_object_get(json_object_get(tc, "function"), "name"));
    if (!*named)
      return mimo_api_fail(e, 400, "tool_choice", "tool_choice.function.name must be a string");
    r->tool_choice = MIMO_TOOLS_NAMED;
  } else {
    return mimo_api_fail(e, 400, "tool_choice", "tool_choice must be a string or an object");
  }
  if (r->tool_choice >= MIMO_TOOLS_REQUIRED && !r->tools)
    return mimo_api_fail(e, 400, "tool_choice", "tool_choice '%s' needs a non-empty 'tools' list",
                         *named ? *named : "required");
  if (r->tool_choice == MIMO_TOOLS_NAMED) {
    size_t i;
    json_t *t;
    json_array_foreach(r->tools, i, t) {
      const char *n = json_string_value(json_object_get(json_object_get(t, "function"), "name"));
      if (n && strcmp(n, *named) == 0)
        return 0;
    }
    return mimo_api_fail(e, 400, "tool_choice", "tool_choice names function '%s', which is not in 'tools'", *named);
  }
  return 0;
}

static int parse_prompt(mimo_server *s, const json_t *p, mimo_oai_req *r, mimo_api_err *e) {
  if (!p || json_is_null(p))
    return mimo_api_fail(e, 400, "prompt", "'prompt' is required");
  if (json_is_array(p) && json_array_size(p) == 1 && json_is_string(json_array_get(p, 0)))
    p = json_array_get(p, 0);
  if (json_is_string(p)) {
    const char *t = json_string_value(p);
    if (!*t)
      return mimo_api_fail(e, 400, "prompt", "'prompt' must not be empty");
    if (!(r->prompt_text = strdup(t)))
      return mimo_api_fail(e, 500, NULL, "out of memory");
    return mimo_api_tokenize(s, t, json_string_length(p), &r->prompt, &r->n_prompt, e);
  }
  if (!json_is_array(p) || !json_array_size(p))
    return mimo_api_fail(e, 400, "prompt", "'prompt' must be a string or a non-empty list of token ids");
  size_t n = json_array_size(p);
  if (json_is_array(json_array_get(p, 0)) || json_is_string(json_array_get(p, 0)))
    return mimo_api_fail(e, 400, "prompt", "batched prompts are not supported; send one prompt per request");
  if (!(r->prompt = malloc(n * sizeof(int))))
    return mimo_api_fail(e, 500, NULL, "out of memory");
  int vocab = mimo_tok_vocab_size(s->tok);
  for (size_t i = 0; i < n; i++) {
    json_t *v = json_array_get(p, i);
    if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) >= vocab)
      return mimo_api_fail(e, 400, "prompt", "prompt[%zu] must be a token id in [0, %d)", i, vocab);
    r->prompt[i] = (int)json_integer_value(v);
  }
  r->n_prompt = (int)n;
  return 0;
}

/* OpenAI's logit_bias: {"token id": bias}; biases clamped to [-100, 100] as vLLM does. */
static int parse_logit_bias(mimo_server *s, const json_t *lb, mimo_oai_req *r, mimo_api_err *e) {
  if (!lb || json_is_null(lb))
    return 0;
  const int vocab = mimo_tok_vocab_size(s->tok);
  if (!json_is_object(lb) || json_object_size(lb) > (size_t)vocab)
    return mimo_api_fail(e, 400, "logit_bias", "'logit_bias' must be an object of token ids (as strings) to numbers");
  const size_t n = json_object_size(lb);
  r->bias_ids = malloc((n + 1) * sizeof *r->bias_ids);
  r->bias_vals = malloc((n + 1) * sizeof *r->bias_vals);
  if (!r->bias_ids || !r->bias_vals)
    return mimo_api_fail(e, 500, NULL, "out of memory");
  const char *key;
  json_t *v;
  int k = 0;
  json_object_foreach((json_t *)lb, key, v) {
    char *end;
    const long id = strtol(key, &end, 10);
    if (!*key || *end || id < 0 || id >= vocab)
      return mimo_api_fail(e, 400, "logit_bias", "logit_bias: '%.40s' is not a token id in [0, %d)", key, vocab);
    if (!json_is_number(v) || !isfinite(json_number_value(v)))
      return mimo_api_fail(e, 400, "logit_bias", "logit_bias['%s']: a bias must be a number", key);
    const double b = json_number_value(v);
    r->bias_ids[k] = (int)id;
    r->bias_vals[k++] = (float)(b < -100 ? -100 : b > 100 ? 100 : b);
  }
  r->spec.sp.n_bias = k;
  r->spec.sp.bias_ids = r->bias_ids;
  r->spec.sp.bias_vals = r->bias_vals;
  return 0;
}

static int parse_sampling(mimo_server *s, const json_t *root, mimo_oai_req *r, mimo_api_err *e) {
  mimo_sampling_params *sp = &r->spec.sp;
  mimo_sampling_defaults(sp);
  double temp = s->gen.temperature, top_p = s->gen.top_p, min_p = s->gen.min_p, rep = s->gen.repetition_penalty;
  double pres = 0, freq = 0;
  long top_k = s->gen.top_k, seed = -1;
  if (mimo_api_get_num(root, "temperature", 0, 2, &temp, e) || mimo_api_get_num(root, "top_p", 1e-9, 1, &top_p, e) ||
      mimo_api_get_num(root, "min_p", 0, 1, &min_p, e) ||
      mimo_api_get_num(root, "repetition_penalty", 1e-6, 100, &rep, e) ||
      mimo_api_get_num(root, "presence_penalty", -2, 2, &pres, e) ||
      mimo_api_get_num(root, "frequency_penalty", -2, 2, &freq, e) ||
      mimo_api_get_int(root, "top_k", -1, 1L << 30, &top_k, e) ||
      mimo_api_get_int(root, "seed", -(1L << 62), 1L << 62, &seed, e))
    return -1;
  sp->temperature = (float)temp;
  sp->top_p = (float)top_p;
  sp->min_p = (float)min_p;
  sp->repetition_penalty = (float)rep;
  sp->presence_penalty = (float)pres;
  sp->frequency_penalty = (float)freq;
  sp->top_k = top_k <= 0 ? 0 : (int)top_k;
  sp->seed = json_object_get(root, "seed") && !json_is_null(json_object_get(root, "seed")) ? (uint64_t)seed
                                                                                          : mimo_server_new_seed(s);
  sp->vocab_limit = s->vocab_limit;
  return parse_logit_bias(s, json_object_get(root, "logit_bias"), r, e);
}

static int parse_common(mimo_server *s, json_t *root, mimo_oai_req *r, mimo_api_err *e) {
  r->model = s->names[0];
  const char *model = NULL;
  if (mimo_api_get_str(root, "model", &model, e))
    return -1;
  if (model && !mimo_server_has_model(s, model)) {
    e->code = "model_not_found";
    mimo_api_fail(e, 404, "model", "The model `%s` does not exist.", model);
    e->code = "model_not_found";
    return -1;
  }
  if (model)
    r->model = model;
  bool stream = false, usage = false, skip = true, ignore_eos = false;
  long n = 1;
  if (mimo_api_get_bool(root, "stream", &stream, e) || mimo_api_get_int(root, "n", 1, MAX_N, &n, e) ||
      mimo_api_get_bool(root, "skip_special_tokens", &skip, e) ||
      mimo_api_get_bool(root, "ignore_eos", &ignore_eos, e))
    return -1;
  json_t *so = json_object_get(root, "stream_options");
  if (so && !json_is_null(so)) {
    if (!json_is_object(so))
      return mimo_api_fail(e, 400, "stream_options", "'stream_options' must be an object");
    if (!stream)
      return mimo_api_fail(e, 400, "stream_options", "'stream_options' is only allowed when 'stream' is true");
    bool cont = false;
    if (mimo_api_get_bool(so, "include_usage", &usage, e) || mimo_api_get_bool(so, "continuous_usage_stats", &cont, e))
      return -1;
    r->continuous_usage = usage && cont; /* (as vLLM: only with include_usage) */
  }
  r->stream = stream;
  r->include_usage = usage || (stream && s->force_include_usage);
  r->n = (int)n;
  r->spec.skip_special = skip;
  r->spec.ignore_eos = ignore_eos;
  /* vLLM's cache_salt: this request's prompt finds and leaves prefix-cache entries only among requests with the
   * same salt (the string's 64-bit FNV-1a; a secret, random salt per tenant keeps its prompts from being probed) */
  json_t *salt = json_object_get(root, "cache_salt");
  if (salt && !json_is_null(salt)) {
    if (!json_is_string(salt) || !json_string_length(salt))
      return mimo_api_fail(e, 400, "cache_salt", "Parameter 'cache_salt' must be a non-empty string if provided.");
    const uint64_t h = mimo_fnv1a(MIMO_FNV_BASIS, json_string_value(salt), json_string_length(salt));
    r->spec.cache_salt = h ? h : 1;
  }
  if (mimo_api_get_strs(root, "stop", MAX_STOP, &r->stop, &r->n_stop, e))
    return -1;
  json_t *sti = json_object_get(root, "stop_token_ids");
  if (sti && !json_is_null(sti)) {
    size_t k = json_is_array(sti) ? json_array_size(sti) : 0;
    if (!json_is_array(sti) || k > 64)
      return mimo_api_fail(e, 400, "stop_token_ids", "'stop_token_ids' must be a list of at most 64 token ids");
    if (!(r->stop_ids = malloc((k + 1) * sizeof(int))))
      return mimo_api_fail(e, 500, NULL, "out of memory");
    for (size_t i = 0; i < k; i++) {
      json_t *v = json_array_get(sti, i);
      if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > 1 << 30)
        return mimo_api_fail(e, 400, "stop_token_ids", "'stop_token_ids' must be a list of token ids");
      r->stop_ids[i] = (int)json_integer_value(v);
    }
    r->n_stop_ids = (int)k;
  }
  return parse_sampling(s, root, r, e);
}

static int parse_max_tokens(mimo_server *s, const json_t *root, mimo_oai_req *r, mimo_api_err *e) {
  long mt = -1;
  const char *key = json_object_get(root, "max_completion_tokens") &&
                            !json_is_null(json_object_get(root, "max_completion_tokens"))
                        ? "max_completion_tokens"
                        : "max_tokens";
  if (mimo_api_get_int(root, key, 1, 1L << 30, &mt, e))
    return -1;
  if (mt < 0) { /* vLLM: whatever the context has left */
    mt = (long)s->max_model_len - r->n_prompt;
    if (mt < 1)
      mt = 1; /* the engine then reports the prompt as too long */
  }
  r->spec.max_tokens = (int)mt;
  long min_tokens = 0;
  if (mimo_api_get_int(root, "min_tokens", 0, 1L << 30, &min_tokens, e))
    return -1;
  if (min_tokens > mt)
    return mimo_api_fail(e, 400, "min_tokens", "min_tokens (%ld) must be at most max_tokens (%ld)", min_tokens, mt);
  r->spec.sp.min_tokens = (int)min_tokens;
  return 0;
}

/* tool_choice required / named: the output starts with the call's opening (forced ids). */
static int forced_prefix(mimo_server *s, mimo_oai_req *r, const char *named, mimo_api_err *e) {
  if (r->tool_choice != MIMO_TOOLS_REQUIRED && r->tool_choice != MIMO_TOOLS_NAMED)
    return 0;
  return mimo_api_forced_call_ids(s, r->tool_choice == MIMO_TOOLS_NAMED ? named : NULL, &r->forced, &r->n_forced, e);
}

int mimo_openai_parse(mimo_server *s, json_t *root, bool chat, mimo_oai_req *r, mimo_api_err *e) {
  return mimo_openai_parse_ex(s, root, chat, 0, r, e);
}

int mimo_openai_parse_ex(mimo_server *s, json_t *root, bool chat, unsigned flags, mimo_oai_req *r, mimo_api_err *e) {
  memset(r, 0, sizeof *r);
  r->images.count_only = flags & MIMO_OAI_COUNT_ONLY;
  r->chat = chat;
  r->logprobs = -1;
  long plp = -1;
  if (parse_common(s, root, r, e) || mimo_api_get_int(root, "prompt_logprobs", 0, mimo_server_max_logprobs(s), &plp, e))
    return -1;
  if (plp >= 0 && r->stream && chat)
    return mimo_api_fail(e, 400, "prompt_logprobs", "'prompt_logprobs' is not supported with 'stream' in chat");
  r->prompt_logprobs = (int)plp;
  const char *named = NULL;
  bool thinking = true;
  const int think_end = mimo_tok_token_id(s->tok, "</think>"); /* the reasoning's end (-1: the tokenizer has none) */
  if (chat) {
    bool lp = false;
    long top = 0;
    if (mimo_api_get_bool(root, "logprobs", &lp, e) ||
        mimo_api_get_int(root, "top_logprobs", 0, mimo_server_max_logprobs(s), &top, e))
      return -1;
    if (top > 0 && !lp)
      return mimo_api_fail(e, 400, "top_logprobs", "'top_logprobs' needs 'logprobs': true");
    r->logprobs = lp ? (int)top : -1;
    if (norm_messages(s, json_object_get(root, "messages"), &r->messages, &r->images, e))
      return -1;
    json_t *tools = json_object_get(root, "tools");
    if (tools && !json_is_null(tools)) {
      if (mimo_api_check_tools(tools, e))
        return -1;
      if (json_array_size(tools))
        r->tools = json_incref(tools);
    }
    if (parse_tool_choice(root, r, &named, e))
      return -1;
    json_t *kw = json_object_get(root, "chat_template_kwargs");
    if (kw && !json_is_null(kw) && !json_is_object(kw))
      return mimo_api_fail(e, 400, "chat_template_kwargs", "'chat_template_kwargs' must be an object");
    r->kwargs = kw && json_is_object(kw) ? json_deep_copy(kw) : json_object();
    const char *effort = NULL;
    if (mimo_api_get_str(root, "reasoning_effort", &effort, e))
      return -1;
    if (effort && strcmp(effort, "none") == 0 && !json_object_get(r->kwargs, "enable_thinking"))
      json_object_set_new(r->kwargs, "enable_thinking", json_false());
    if (s->default_kwargs && json_object_update_missing(r->kwargs, s->default_kwargs)) /* --default-chat-template-kwargs */
      return mimo_api_fail(e, 500, NULL, "out of memory");
    json_t *et = json_object_get(r->kwargs, "enable_thinking");
    thinking = !(et && (json_is_false(et) || json_is_null(et)));
    bool gen_prompt = true, cont = false; /* vLLM's extensions: how the chat ends */
    if (mimo_api_get_bool(root, "add_generation_prompt", &gen_prompt, e) ||
        mimo_api_get_bool(root, "continue_final_message", &cont, e))
      return -1;
    if (gen_prompt && cont && json_object_get(root, "add_generation_prompt"))
      return mimo_api_fail(e, 400, "continue_final_message",
                           "continue_final_message and add_generation_prompt cannot both be true");
    if (cont) { /* the output continues the final message: reasoning only when it stopped inside <think> */
      const char *fin = mimo_api_final_text(r->messages);
      thinking = fin && strstr(fin, "<think>") && !strstr(fin, "</think>");
    }
    const int mode = cont ? MIMO_RENDER_CONTINUE : gen_prompt ? MIMO_RENDER_GEN_PROMPT : MIMO_RENDER_AS_IS;
    if (mimo_api_render(s, r->messages, r->tools, r->kwargs, mode, &r->prompt, &r->n_prompt, &r->prompt_text, e) ||
        mimo_api_images_expand(s, &r->images, &r->prompt, &r->n_prompt, e))
      return -1;
    /* a forced call without thinking starts the output; with thinking, its grammar applies after </think> */
    if ((!thinking || think_end < 0) && forced_prefix(s, r, named, e))
      return -1;
  } else {
    long lp = -1;
    bool echo = false;
    if (mimo_api_get_int(root, "logprobs", 0, mimo_server_max_logprobs(s), &lp, e) || mimo_api_get_bool(root, "echo", &echo, e))
      return -1;
    r->echo = echo;
    r->logprobs = (int)lp;
    if (parse_prompt(s, json_object_get(root, "prompt"), r, e))
      return -1;
  }
  if (!r->n_prompt)
    return mimo_api_fail(e, 400, chat ? "messages" : "prompt", "the prompt is empty after tokenization");
  if (mimo_api_structured(s, root, chat && thinking, &r->grammar, &r->grammar_after, e))
    return -1;
  const bool call_forced = chat && (r->tool_choice == MIMO_TOOLS_REQUIRED || r->tool_choice == MIMO_TOOLS_NAMED);
  if (r->grammar && call_forced)
    return mimo_api_fail(e, 400, "tool_choice", "a forced tool call cannot be combined with a response format");
  if (parse_max_tokens(s, root, r, e))
    return -1;
  mimo_gen_spec *g = &r->spec;
  g->prompt = r->prompt;
  g->n_prompt = r->n_prompt;
  g->n = r->n;
  g->sp.logprobs = r->logprobs < 0 ? 0 : r->logprobs;
  if (r->logprobs == 0) /* the chosen token's logprob alone still needs the sampler's pass */
    g->sp.logprobs = 1;
  g->stop = r->stop;
  g->n_stop = r->n_stop;
  g->stop_ids = r->stop_ids;
  g->n_stop_ids = r->n_stop_ids;
  g->parse_reasoning = chat;
  g->thinking = chat && thinking;
  g->tools = chat && r->tool_choice != MIMO_TOOLS_NONE ? r->tools : NULL;
  bool parallel = true;
  if (mimo_api_get_bool(root, "parallel_tool_calls", &parallel, e))
    return -1;
  g->max_tool_calls = parallel ? 0 : 1;
  if (call_forced) { /* the call's parameters follow the tools' schemas: after the forced prefix, or after the
                     * reasoning, the whole call (the model thinks first, as vLLM lets it) */
    if (mimo_api_tool_grammar(r->tools, named, named || !parallel ? 1 : 0, r->n_forced ? NULL : "", &r->grammar, e))
      return -1;
    r->grammar_after = r->n_forced ? -1 : think_end;
    if (!r->grammar && !r->n_forced && forced_prefix(s, r, named, e)) /* no grammar: the prefix forced at least */
      return -1;
  } else if (chat && r->tool_choice == MIMO_TOOLS_AUTO && !r->grammar &&
             mimo_api_tools_strict(r->tools, flags & MIMO_OAI_STRICT_DEFAULT)) {
    /* strict functions (OpenAI's strict: true): a call the model opens with its <tool_call> token follows the
     * schemas from there */
    const int open_id = mimo_tok_token_id(s->tok, "<tool_call>");
    if (open_id >= 0 && mimo_api_tool_grammar(r->tools, NULL, parallel ? 0 : 1, "<tool_call>", &r->grammar, e))
      return -1;
    r->grammar_after = open_id;
  }
  g->forced = r->forced;
  g->n_forced = r->n_forced;
  g->prompt_logprobs = (r->echo && r->logprobs >= 0) || r->prompt_logprobs >= 0;
  g->prompt_top = r->logprobs > r->prompt_logprobs ? r->logprobs : r->prompt_logprobs;
  g->prompt_top = g->prompt_top < 0 ? 0 : g->prompt_top;
  g->embeds = r->images.runs;
  g->n_embeds = r->images.n;
  g->grammar = r->grammar;
  g->grammar_after = r->grammar_after;
  long budget = -1; /* vLLM's thinking_token_budget: the reasoning ends after that many tokens at most */
  if (mimo_api_get_int(root, "thinking_token_budget", 0, 1L << 30, &budget, e))
    return -1;
  g->think_budget = chat && thinking ? (int)budget : -1;
  g->think_end = think_end;
  if (g->think_budget >= 0 && g->think_end < 0)
    return mimo_api_fail(e, 400, "thinking_token_budget", "this model's tokenizer has no </think> token to end "
                         "its reasoning with");
  return 0;
}
