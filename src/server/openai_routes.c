/* Route handlers: OpenAI endpoints plus /health, /metrics, /tokenize, /detokenize. */
#include <stdlib.h>
#include <string.h>

#include "core/version.h"
#include "model/vision.h"
#include "server/openai.h"

static int parse_or_reply(mimo_http_req *rq, json_t **root) {
  size_t len;
  const char *body = mimo_http_body(rq, &len);
  mimo_api_err e = {0};
  *root = mimo_api_parse_body(body, len, &e);
  if (!*root) {
    mimo_api_reply_err(rq, &e);
    return -1;
  }
  return 0;
}

static void gen_root(mimo_http_req *rq, mimo_server *s, bool chat, json_t *root) {
  mimo_oai_req r;
  mimo_api_err e = {0};
  if (mimo_openai_parse(s, root, chat, &r, &e)) {
    mimo_oai_req_free(&r);
    json_decref(root);
    mimo_api_reply_err(rq, &e);
    return;
  }
  mimo_openai_run(s, rq, &r, root);
}

/* OpenAI's batched completions prompt: a list of several strings, or of token-id lists. 0: not one. */
static size_t batched_prompts(const json_t *root) {
  const json_t *p = json_object_get(root, "prompt");
  if (!json_is_array(p) || json_array_size(p) < 1)
    return 0;
  const json_t *first = json_array_get(p, 0);
  if (json_is_array(first) || (json_is_string(first) && json_array_size(p) > 1))
    return json_array_size(p);
  return 0;
}

enum { MAX_BATCHED_PROMPTS = 1024 };

/* Each prompt of a batch parsed as a request of its own (the body with that prompt), then one reply. */
static void batch_route(mimo_http_req *rq, mimo_server *s, json_t *root, size_t n) {
  mimo_api_err e = {0};
  if (n > MAX_BATCHED_PROMPTS) {
    mimo_api_fail(&e, 400, "prompt", "prompt: %zu prompts in one request; at most %d", n, MAX_BATCHED_PROMPTS);
    json_decref(root);
    mimo_api_reply_err(rq, &e);
    return;
  }
  mimo_oai_req *rs = calloc(n, sizeof *rs);
  json_t **roots = calloc(n, sizeof *roots);
  size_t done = 0;
  int rc = rs && roots ? 0 : mimo_api_fail(&e, 500, NULL, "out of memory");
  for (; !rc && done < n; done++) {
    const json_t *p = json_array_get(json_object_get(root, "prompt"), done);
    if (!json_is_string(p) && !json_is_array(p)) {
      rc = mimo_api_fail(&e, 400, "prompt", "prompt[%zu]: a batch of prompts is a list of strings or of token-id lists",
                         done);
      break;
    }
    if (!(roots[done] = json_copy(root)) || json_object_set(roots[done], "prompt", (json_t *)p)) {
      rc = mimo_api_fail(&e, 500, NULL, "out of memory");
      break;
    }
    if (mimo_openai_parse(s, roots[done], false, &rs[done], &e)) {
      char msg[sizeof e.msg];
      snprintf(msg, sizeof msg, "prompt[%zu]: %s", done, e.msg);
      snprintf(e.msg, sizeof e.msg, "%s", msg);
      mimo_oai_req_free(&rs[done]);
      json_decref(roots[done]);
      rc = -1;
      break;
    }
  }
  json_decref(root);
  if (rc) {
    for (size_t i = 0; i < done && rs && roots; i++) {
      mimo_oai_req_free(&rs[i]);
      json_decref(roots[i]);
    }
    free(rs);
    free(roots);
    mimo_api_reply_err(rq, &e);
    return;
  }
  mimo_openai_run_batch(s, rq, rs, roots, (int)n);
  free(rs);
  free(roots);
}

static void on_chat(mimo_http_req *rq, void *ctx) {
  json_t *root;
  if (!parse_or_reply(rq, &root))
    gen_root(rq, ctx, true, root);
}
static void on_completions(mimo_http_req *rq, void *ctx) {
  json_t *root;
  if (parse_or_reply(rq, &root))
    return;
  const size_t n = batched_prompts(root);
  if (n) {
    batch_route(rq, ctx, root, n);
    return;
  }
  gen_root(rq, ctx, false, root);
}

/* SageMaker's (and vLLM's) POST /invocations: a chat body (messages) or a completions body (prompt). */
static void on_invocations(mimo_http_req *rq, void *ctx) {
  json_t *root;
  if (parse_or_reply(rq, &root))
    return;
  const bool chat = json_object_get(root, "messages") != NULL;
  if (!chat && !json_object_get(root, "prompt")) {
    json_decref(root);
    mimo_http_reply_error(rq, 400, "BadRequestError", NULL, NULL,
                          "/invocations takes a chat completions body (messages) or a completions body (prompt)");
    return;
  }
  if (!chat && batched_prompts(root)) {
    batch_route(rq, ctx, root, batched_prompts(root));
    return;
  }
  gen_root(rq, ctx, chat, root);
}

static void on_version(mimo_http_req *rq, void *ctx) {
  (void)ctx;
  json_t *v = json_pack("{s:s}", "version", mimo_version());
  char *text = v ? json_dumps(v, JSON_COMPACT) : NULL;
  if (text)
    mimo_http_reply(rq, 200, "application/json", text, strlen(text));
  else
    mimo_http_reply_error(rq, 500, "InternalServerError", NULL, NULL, "out of memory");
  free(text);
  json_decref(v);
}

static void on_models(mimo_http_req *rq, void *ctx) {
  mimo_server *s = ctx;
  json_t *data = json_array();
  for (int i = 0; i < s->n_names; i++)
    json_array_append_new(data, json_pack("{s:s,s:s,s:I,s:s,s:s,s:i}", "id", s->names[i], "object", "model",
                                          "created", (json_int_t)s->created, "owned_by", "mimo", "root",
                                          s->names[0], "max_model_len", s->max_model_len));
  mimo_http_reply_json(rq, 200, json_pack("{s:s,s:o}", "object", "list", "data", data));
}

static void on_health(mimo_http_req *rq, void *ctx) {
  mimo_server *s = ctx;
  char why[512];
  if (s->engine && !mimo_engine_healthy(s->engine, why, sizeof why)) {
    mimo_http_reply_error(rq, 503, "ServiceUnavailableError", NULL, NULL, "the model stopped working: %s", why);
    return;
  }
  if (s->engine && mimo_engine_warming(s->engine)) { /* readiness: the first request would wait for it */
    mimo_http_reply_error(rq, 503, "ServiceUnavailableError", NULL, NULL,
                          "warming up: the first forward passes are running (mimo serve --no-warmup skips them)");
    return;
  }
  mimo_http_reply(rq, 200, "text/plain", "", 0);
}

static void on_metrics(mimo_http_req *rq, void *ctx) {
  mimo_server *s = ctx;
  mimo_engine_stats es;
  mimo_engine_stats_get(s->engine, &es);
  mimo_sbuf b = {0};
  mimo_metrics_render(s->metrics, &es, mimo_http_cpu_seconds(s->http), &b);
  if (s->vision) {
    long hits, misses;
    size_t bytes;
    mimo_vision_cache_stats(s->vision, &hits, &misses, &bytes);
    const char *M = s->names[0];
    mimo_sbuf_printf(&b, "# HELP mimo:vision_cache_queries_total Images looked up in the vision encoder's cache.\n"
                         "# TYPE mimo:vision_cache_queries_total counter\nmimo:vision_cache_queries_total{model_name=\"%s\"} "
                         "%ld\n", M, hits + misses);
    mimo_sbuf_printf(&b, "# HELP mimo:vision_cache_hits_total Images whose tower output came from the cache.\n"
                         "# TYPE mimo:vision_cache_hits_total counter\nmimo:vision_cache_hits_total{model_name=\"%s\"} "
                         "%ld\n", M, hits);
    mimo_sbuf_printf(&b, "# HELP mimo:vision_cache_bytes Tower outputs and pixels the cache holds.\n"
                         "# TYPE mimo:vision_cache_bytes gauge\nmimo:vision_cache_bytes{model_name=\"%s\"} %zu\n", M,
                     bytes);
  }
  if (b.oom)
    mimo_http_reply_error(rq, 500, "InternalServerError", NULL, NULL, "out of memory");
  else
    mimo_http_reply(rq, 200, "text/plain; version=0.0.4", b.p ? b.p : "", b.len);
  mimo_sbuf_free(&b);
}

/* vLLM's /tokenize: {prompt} or {messages} -> {count, max_model_len, tokens}. */
static void on_tokenize(mimo_http_req *rq, void *ctx) {
  mimo_server *s = ctx;
  json_t *root;
  if (parse_or_reply(rq, &root))
    return;
  mimo_api_err e = {0};
  int *ids = NULL, n = 0;
  json_t *msgs = json_object_get(root, "messages");
  if (msgs) {
    mimo_oai_req r;
    if (mimo_openai_parse_ex(s, root, true, MIMO_OAI_COUNT_ONLY, &r, &e) == 0) {
      ids = r.prompt;
      n = r.n_prompt;
      r.prompt = NULL;
    }
    mimo_oai_req_free(&r);
  } else {
    const char *p = NULL;
    if (mimo_api_get_str(root, "prompt", &p, &e) == 0) {
      if (!p)
        mimo_api_fail(&e, 400, "prompt", "'prompt' (a string) or 'messages' is required");
      else
        mimo_api_tokenize(s, p, strlen(p), &ids, &n, &e);
    }
  }
  json_decref(root);
  if (e.status) {
    free(ids);
    mimo_api_reply_err(rq, &e);
    return;
  }
  json_t *toks = json_array();
  for (int i = 0; i < n; i++)
    json_array_append_new(toks, json_integer(ids[i]));
  free(ids);
  mimo_http_reply_json(rq, 200,
                       json_pack("{s:i,s:i,s:o}", "count", n, "max_model_len", s->max_model_len, "tokens", toks));
}

static void on_detokenize(mimo_http_req *rq, void *ctx) {
  mimo_server *s = ctx;
  json_t *root;
  if (parse_or_reply(rq, &root))
    return;
  json_t *t = json_object_get(root, "tokens");
  int vocab = mimo_tok_vocab_size(s->tok);
  size_t n = json_is_array(t) ? json_array_size(t) : 0;
  int *ids = malloc((n + 1) * sizeof *ids);
  int bad = !json_is_array(t) || !ids;
  for (size_t i = 0; !bad && i < n; i++) {
    json_t *v = json_array_get(t, i);
    bad = !json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) >= vocab;
    if (!bad)
      ids[i] = (int)json_integer_value(v);
  }
  json_decref(root);
  char *text = NULL;
  size_t len = 0;
  if (bad || mimo_tok_decode(s->tok, ids, n, 0, &text, &len) != MIMO_OK) {
    free(ids);
    mimo_http_reply_error(rq, 400, "BadRequestError", "tokens", NULL, "'tokens' must be a list of token ids in [0, %d)",
                          vocab);
    return;
  }
  free(ids);
  mimo_http_reply_json(rq, 200, json_pack("{s:s%}", "prompt", text, len));
  free(text);
}

mimo_status mimo_openai_register(mimo_server *s) {
  mimo_http *h = s->http;
  mimo_http_err_fn err = mimo_openai_error_body;
  MIMO_TRY(mimo_http_route(h, "POST", "/v1/chat/completions", MIMO_HTTP_AUTH, on_chat, s, err));
  MIMO_TRY(mimo_http_route(h, "POST", "/v1/completions", MIMO_HTTP_AUTH, on_completions, s, err));
  MIMO_TRY(mimo_http_route(h, "GET", "/v1/models", MIMO_HTTP_AUTH, on_models, s, err));
  MIMO_TRY(mimo_http_route(h, "POST", "/tokenize", MIMO_HTTP_AUTH, on_tokenize, s, err));
  MIMO_TRY(mimo_http_route(h, "POST", "/detokenize", MIMO_HTTP_AUTH, on_detokenize, s, err));
  MIMO_TRY(mimo_http_route(h, "GET", "/health", 0, on_health, s, err));
  MIMO_TRY(mimo_http_route(h, "GET", "/ping", 0, on_health, s, err)); /* SageMaker's liveness, as vLLM serves it */
  MIMO_TRY(mimo_http_route(h, "POST", "/ping", 0, on_health, s, err));
  MIMO_TRY(mimo_http_route(h, "GET", "/version", 0, on_version, s, err));
  MIMO_TRY(mimo_http_route(h, "POST", "/invocations", MIMO_HTTP_AUTH, on_invocations, s, err));
  MIMO_TRY(mimo_http_route(h, "GET", "/metrics", 0, on_metrics, s, err));
  return MIMO_OK;
}
