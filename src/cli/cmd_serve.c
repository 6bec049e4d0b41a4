/* `mimo serve MODEL_DIR [flags]`: the OpenAI-compatible HTTP server (vLLM's flag
 * names). Wires model/tokenizer/template/engine into src/server and waits for
 * SIGINT/SIGTERM, then drains (docs/server.md). */
#include <jansson.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backend/backend.h"
#include "cli/model_open.h"
#include "cli/vision_args.h"
#include "cli/vllm_compat.h"
#include "cli/args.h"
#include "cli/commands.h"
#include "core/fileio.h"
#include "core/log.h"
#include "model/mimo_v2.h"
#include "server/responses.h"
#include "server/server.h"
#include "text/grammar_vocab.h"

#define MAX_MOCK 4096

static mimo_arg serve_args[] = {
    {"model", 1, "model directory (or give it as the first argument)", NULL},
    {"host", 1, "address to listen on (default 0.0.0.0)", NULL},
    {"port", 1, "port (default 8000; 0 picks a free one and logs it)", NULL},
    {"served-model-name", 1, "name(s) clients use, comma-separated (default: the model path)", NULL},
    {"api-key", 1, "require 'Authorization: Bearer KEY' (or x-api-key) on /v1 routes", NULL},
    {"max-model-len", 1, "prompt + output token limit (default: max_position_embeddings)", NULL},
    {"max-num-seqs", 1, "sequences decoded together (default 16)", NULL},
    {"max-num-batched-tokens", 1,
     "tokens per engine step; long prompts are chunked (default 8192 on the CUDA backend, as vLLM's server on "
     "H100/H200-class GPUs; 512 on the CPU)",
     NULL},
    {"max-queue", 1, "waiting requests before 503 + Retry-After (default 256)", NULL},
    {"no-warmup", 0, "skip the warm-up forward on GPU backends (the first request then pays lazy set-up)", NULL},
    MIMO_OPEN_ARGS,
    {"enable-prefix-caching", 0, "keep prompts' KV states for requests that start with them (the default)", NULL},
    {"no-enable-prefix-caching", 0, "no prefix cache: every prompt is computed in full", NULL},
    {"prefix-cache-entries", 1,
     "cached prefix states kept at most (default 64; each holds its sliding layers' windows, and shares its blocks)",
     NULL},
    {"num-speculative-tokens", 1,
     "draft tokens per step from the checkpoint's MTP layer, verified by the model in the same step (default 0: off; "
     "1 to 16); the outputs stay those of decoding without drafts",
     NULL},
    {"speculative-config", 1, "vLLM's form of the same: '{\"method\": \"mtp\", \"num_speculative_tokens\": K}'",
     NULL},
    {"max-stored-responses", 1,
     "finished /v1/responses kept in memory for previous_response_id and GET /v1/responses/{id} (default 256, "
     "the oldest dropped first; 0: none)",
     NULL},
    {"reasoning-parser", 1, "accepted; no effect: MiMo's <think> split (qwen3) is always on for chat", NULL},
    {"tool-call-parser", 1, "accepted; no effect: MiMo's qwen3_xml tool-call parser is always used", NULL},
    {"enable-auto-tool-choice", 0, "accepted; no effect: tool_choice auto is always available", NULL},
    {"trust-remote-code", 0, "accepted; no effect (no remote code is ever run)", NULL},
    {"generation-config", 1, "'auto' (the model dir's generation_config.json), 'vllm' (neutral), or a DIR", NULL},
    {"chat-template", 1, "Jinja chat template FILE replacing the model's", NULL},
    {"max-body-bytes", 1, "largest request body (default 33554432; 413 beyond)", NULL},
    {"timeout-keep-alive", 1, "seconds an idle connection is kept (default 60)", NULL},
    {"shutdown-timeout", 1, "seconds in-flight requests may finish after SIGTERM (default 10)", NULL},
    {"limit-mm-per-prompt", 1, "images per request at most: '{\"image\": N}' or image=N (default 16; 0: no limit)",
     NULL},
    {"mm-processor-cache-gb", 1, "GiB of vision tower outputs kept by image for repeated images (default 1; 0: none)",
     NULL},
    {"allowed-local-media-path", 1, "directory whose images requests may name as file:// URLs (default: none)", NULL},
    {"allowed-media-domains", 1,
     "hosts (comma-separated, exact) whose http(s) image URLs are fetched (default: any host, as vLLM; redirects "
     "are then not followed)",
     NULL},
    {"media-fetch-timeout", 1, "seconds an image URL may take (default 5, or VLLM_IMAGE_FETCH_TIMEOUT)", NULL},
    {"no-media-fetch", 0, "fetch no http(s) image URLs (requests that name one get a 400)", NULL},
    {"enable-request-id-headers", 0,
     "send X-Request-Id on every reply: the client's (1-64 of A-Za-z0-9._:-) or a new one (as vLLM's flag)", NULL},
    MIMO_VISION_ARGS,
    MIMO_VLLM_ARGS,
    {"mock-output", 1, "TEST ONLY: FILE of JSON-string lines; request i outputs line i mod N instead of running "
                       "the model",
     NULL},
};
#define N_ARGS (int)(sizeof serve_args / sizeof serve_args[0])

static const char *usage_text =
    "MODEL_DIR [options]\n\n"
    "OpenAI- and Anthropic-compatible server: POST /v1/chat/completions, POST /v1/completions,\n"
    "GET /v1/models, POST /v1/messages, POST /v1/messages/count_tokens, POST /tokenize, POST /detokenize,\n"
    "GET /health, GET /metrics. See docs/server.md.";

/* --speculative-config (vLLM's JSON) or --num-speculative-tokens into *k; false with a message on stderr. */
static bool speculative_args(int *k) {
  bool bad = false;
  const long n = mimo_arg_long(serve_args, N_ARGS, "num-speculative-tokens", 0, &bad);
  const char *cfg = mimo_arg_str(serve_args, N_ARGS, "speculative-config", NULL);
  if (bad || n < 0 || n > MIMO_SPEC_MAX) {
    fprintf(stderr, "mimo serve: --num-speculative-tokens: 0 to %d\n", MIMO_SPEC_MAX);
    return false;
  }
  *k = (int)n;
  if (!cfg)
    return true;
  json_error_t err;
  json_t *j = json_loads(cfg, 0, &err);
  const char *why = !j || !json_is_object(j) ? "not a JSON object" : NULL;
  const char *key;
  json_t *v;
  json_object_foreach(j, key, v) {
    if (why)
      break;
    if (strcmp(key, "method") == 0) {
      const char *m = json_string_value(v);
      if (!m || (strcmp(m, "mtp") && strcmp(m, "mimo_mtp") && strcmp(m, "deepseek_mtp")))
        why = "method: only \"mtp\" (the checkpoint's MTP layers draft)";
    } else if (strcmp(key, "num_speculative_tokens") == 0) {
      if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > MIMO_SPEC_MAX)
        why = "num_speculative_tokens: an integer from 1 to 16";
      else
        *k = (int)json_integer_value(v);
    } else if (strcmp(key, "model") != 0 || !json_is_null(v)) {
      why = "unknown key (mimo takes method and num_speculative_tokens; its drafts come from the MTP layers)";
      break;
    }
  }
  if (!why && !json_object_get(j, "num_speculative_tokens"))
    why = "num_speculative_tokens is missing";
  if (why)
    fprintf(stderr, "mimo serve: --speculative-config '%s': %s%s%s\n", cfg, why, j ? "" : ": ", j ? "" : err.text);
  json_decref(j);
  return why == NULL;
}

typedef struct mock_set {
  int n;
  int *ids[MAX_MOCK];
  int len[MAX_MOCK];
} mock_set;

static mimo_status load_mock(const char *path, const mimo_tok *tok, mock_set *m) {
  char *text;
  size_t len;
  MIMO_TRY(mimo_read_file(path, &text, &len, 64u << 20));
  int line = 0;
  mimo_status st = MIMO_OK;
  for (char *p = text, *nl; p < text + len && st == MIMO_OK; p = nl + 1) {
    nl = memchr(p, '\n', (size_t)(text + len - p));
    if (!nl)
      nl = text + len;
    line++;
    while (p < nl && (*p == ' ' || *p == '\t' || *p == '\r'))
      p++;
    if (p == nl)
      continue;
    json_error_t je;
    json_t *j = json_loadb(p, (size_t)(nl - p), JSON_DECODE_ANY, &je);
    if (!json_is_string(j) || m->n == MAX_MOCK) {
      st = mimo_errf(MIMO_E_FORMAT, "%s:%d: each line must be a JSON string (at most %d lines)", path, line,
                     MAX_MOCK);
    } else {
      size_t n = 0;
      st = mimo_tok_encode(tok, json_string_value(j), json_string_length(j), &m->ids[m->n], &n);
      if (st == MIMO_OK)
        m->len[m->n++] = (int)n;
    }
    json_decref(j);
  }
  free(text);
  if (st == MIMO_OK && !m->n)
    st = mimo_errf(MIMO_E_FORMAT, "%s: no scripted outputs", path);
  return st;
}

static int fail(const char *what) {
  fprintf(stderr, "mimo serve: %s: %s\n", what, mimo_errmsg());
  return 1;
}

int mimo_cmd_serve(int argc, char **argv) {
  const char *pos_model = NULL;
  if (argc > 1 && strncmp(argv[1], "-", 1) != 0) { /* vLLM: `serve MODEL [flags]` */
    pos_model = argv[1];
    argv[1] = argv[0];
    argv++;
    argc--;
  }
  int rc = mimo_args_parse(argc, argv, serve_args, N_ARGS, usage_text);
  if (rc)
    return rc == 3 ? 0 : rc;
  bool bad = false;
  const char *dir = mimo_arg_str(serve_args, N_ARGS, "model", pos_model);
  long port = mimo_arg_long(serve_args, N_ARGS, "port", 8000, &bad);
  long mml = mimo_arg_long(serve_args, N_ARGS, "max-model-len", 0, &bad);
  long seqs = mimo_arg_long(serve_args, N_ARGS, "max-num-seqs", 16, &bad);
  /* 0: by backend, once the options are parsed. On an H200 an 8K prompt of `synth --preset full --layers 4` took
   * 155 ms in chunks of 512, 78 ms in 2048, 63 ms in 8192 (the MoE's grouped GEMMs are weight-bound on small
   * chunks); a decode step that shares a step with a chunk waits for it. */
  long mbt = mimo_arg_long(serve_args, N_ARGS, "max-num-batched-tokens", 0, &bad);
  const bool mbt_auto = !mimo_arg_str(serve_args, N_ARGS, "max-num-batched-tokens", NULL);
  long mq = mimo_arg_long(serve_args, N_ARGS, "max-queue", 256, &bad);
  long pce = mimo_arg_long(serve_args, N_ARGS, "prefix-cache-entries", 64, &bad);
  long stored_max = mimo_arg_long(serve_args, N_ARGS, "max-stored-responses", 256, &bad);
  if (!bad && (stored_max < 0 || stored_max > 1000000)) {
    fprintf(stderr, "mimo serve: --max-stored-responses: 0 to 1000000\n");
    return 2;
  }
  const bool no_pc = mimo_arg_str(serve_args, N_ARGS, "no-enable-prefix-caching", NULL) != NULL;
  long max_body = mimo_arg_long(serve_args, N_ARGS, "max-body-bytes", 32L << 20, &bad);
  long keep = mimo_arg_long(serve_args, N_ARGS, "timeout-keep-alive", 60, &bad);
  double grace = mimo_arg_double(serve_args, N_ARGS, "shutdown-timeout", 10, &bad);
  const double mm_cache_gb = mimo_arg_double(serve_args, N_ARGS, "mm-processor-cache-gb", 1, &bad);
  const char *env_timeout = getenv("VLLM_IMAGE_FETCH_TIMEOUT");
  const double fetch_timeout =
      mimo_arg_double(serve_args, N_ARGS, "media-fetch-timeout", env_timeout ? atof(env_timeout) : 5, &bad);
  if (!bad && !(fetch_timeout > 0 && fetch_timeout <= 3600)) {
    fprintf(stderr, "mimo serve: --media-fetch-timeout (or VLLM_IMAGE_FETCH_TIMEOUT): seconds in (0, 3600]\n");
    return 2;
  }
  mimo_open_opts oo;
  int spec_k = 0;
  if (bad || !mimo_open_parse(serve_args, N_ARGS, dir, &oo) || !speculative_args(&spec_k))
    return 2;
  mimo_vision_config vis_opts = {0}; /* checked before the model loads; mimo_vision_args_open applies them */
  if (!mimo_vision_args_parse(serve_args, N_ARGS, &vis_opts))
    return 2;
  long image_limit = 16;
  const char *lim = mimo_arg_str(serve_args, N_ARGS, "limit-mm-per-prompt", NULL);
  if (lim) { /* vLLM's JSON form, or the older image=N */
    const char *at = strstr(lim, "image");
    char *end = NULL;
    if (at) {
      at += 5;
      while (*at == '"' || *at == ' ' || *at == ':' || *at == '=')
        at++;
      image_limit = strtol(at, &end, 10);
    }
    if (!at || end == at || image_limit < 0 || image_limit > 1 << 20) {
      fprintf(stderr, "mimo serve: --limit-mm-per-prompt '%s': expected '{\"image\": N}' or image=N\n", lim);
      return 2;
    }
  }
  char media[PATH_MAX];
  const char *media_arg = mimo_arg_str(serve_args, N_ARGS, "allowed-local-media-path", NULL);
  if (media_arg && !realpath(media_arg, media)) {
    fprintf(stderr, "mimo serve: --allowed-local-media-path %s: no such directory\n", media_arg);
    return 2;
  }
  if (pos_model && mimo_arg_str(serve_args, N_ARGS, "model", NULL)) {
    fprintf(stderr, "mimo serve: the model is given twice (positional and --model)\n");
    return 2;
  }
  if (!dir) {
    fprintf(stderr, "mimo serve: no model directory (mimo serve MODEL_DIR or --model DIR)\n");
    return 2;
  }
  if (mbt_auto)
    mbt = strcmp(mimo_open_backend_name(oo.backend), "cuda") == 0 ? 8192 : 512;
  if (no_pc && mimo_arg_str(serve_args, N_ARGS, "enable-prefix-caching", NULL)) {
    fprintf(stderr, "mimo serve: --enable-prefix-caching and --no-enable-prefix-caching contradict each other\n");
    return 2;
  }
  if (port < 0 || port > 65535 || mml < 0 || seqs < 1 || mbt < 1 || mq < 1 || max_body < 1024 || keep < 1 ||
      grace < 0 || pce < 1 || pce > 1 << 20 || !(mm_cache_gb >= 0 && mm_cache_gb <= 1 << 20)) {
    fprintf(stderr, "mimo serve: a numeric option is out of range (see --help)\n");
    return 2;
  }

  /* Signals go to sigwait below; every thread started from here inherits the mask. */
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGINT);
  sigaddset(&sigs, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &sigs, NULL);
  signal(SIGPIPE, SIG_IGN);

  mimo_server s = {0};
  mimo_model *model = NULL;
  mock_set *mock = NULL;
  int ret = 1;
  if (!mimo_vllm_args_apply(serve_args, N_ARGS, dir, &s))
    return 2;
  char *names = strdup(mimo_arg_str(serve_args, N_ARGS, "served-model-name", dir));
  if (!names)
    goto out;
  for (char *save = NULL, *t = strtok_r(names, ",", &save); t && s.n_names < MIMO_SERVER_MAX_NAMES;
       t = strtok_r(NULL, ",", &save))
    if (*t)
      s.names[s.n_names++] = t;
  if (!s.n_names) {
    fprintf(stderr, "mimo serve: --served-model-name is empty\n");
    ret = 2;
    goto out;
  }
  if (mimo_tok_load(dir, &s.tok) != MIMO_OK) {
    ret = fail("tokenizer");
    goto out;
  }
  if (mimo_gvocab_new(s.tok, &s.gvocab) != MIMO_OK) { /* structured outputs' token index */
    ret = fail("tokenizer");
    goto out;
  }
  if (mimo_tmpl_load(dir, mimo_arg_str(serve_args, N_ARGS, "chat-template", NULL), &s.tmpl) != MIMO_OK) {
    ret = fail("chat template");
    goto out;
  }
  const char *gc = mimo_arg_str(serve_args, N_ARGS, "generation-config", "auto");
  if (mimo_gen_defaults_load(strcmp(gc, "auto") == 0 ? dir : strcmp(gc, "vllm") == 0 ? "/nonexistent" : gc,
                             &s.gen) != MIMO_OK) {
    ret = fail("generation config");
    goto out;
  }
  mimo_engine_opts eo = {.max_num_seqs = (int)seqs,
                         .max_num_batched_tokens = (int)mbt,
                         .max_model_len = (int)mml,
                         .max_queue = (int)mq,
                         .prefix_cache_entries = no_pc ? 0 : (int)pce,
                         .num_speculative_tokens = spec_k,
                         .warmup = mimo_arg_str(serve_args, N_ARGS, "no-warmup", NULL) ? -1 : 0};
  const char *mock_path = mimo_arg_str(serve_args, N_ARGS, "mock-output", NULL);
  if (mock_path) {
    mock = calloc(1, sizeof *mock);
    if (!mock || load_mock(mock_path, s.tok, mock) != MIMO_OK) {
      ret = fail("--mock-output");
      goto out;
    }
    eo.n_mock = mock->n;
    eo.mock_ids = mock->ids;
    eo.mock_len = mock->len;
    mimo_warn("serve: --mock-output is a test seam: scripted outputs, the model is not run");
  } else {
    if (mimo_open_model(&oo, &model) != MIMO_OK) {
      ret = fail("loading the model");
      goto out;
    }
    if (mimo_open_is_worker(&oo)) { /* node 0 serves; this node runs its ranks on node 0's orders */
      fprintf(stderr, "mimo serve: node %d of %d: following node 0 at %s:%d\n", oo.node_rank, oo.nnodes,
              oo.master_addr, oo.master_port);
      ret = mimo_model_run_worker(model) == MIMO_OK ? 0 : fail("worker node");
      goto out;
    }
  }
  if (model && model->vw.present) { /* images run through the tower on the request's thread, on a backend of its own */
    if (mimo_vision_args_open(serve_args, N_ARGS, &model->cfg, &model->vw, mimo_first_device(oo.devices), oo.threads,
                              &s.vision) != MIMO_OK ||
        mimo_vision_set_cache(s.vision, (size_t)(mm_cache_gb * (1 << 30))) != MIMO_OK) {
      ret = fail("vision tower");
      goto out;
    }
  }
  s.media_path = media_arg ? media : NULL;
  s.fetch = (mimo_media_fetch){.off = mimo_arg_str(serve_args, N_ARGS, "no-media-fetch", NULL) != NULL,
                               .timeout_s = fetch_timeout,
                               .domains = mimo_arg_str(serve_args, N_ARGS, "allowed-media-domains", NULL)};
  if (!s.fetch.off && mimo_media_fetch_global_init() != MIMO_OK) {
    ret = fail("image URL fetching");
    goto out;
  }
  s.image_limit = (int)image_limit;
  if (mimo_engine_init(&s.engine, model, &eo) != MIMO_OK) {
    ret = fail("engine");
    goto out;
  }
  s.max_model_len = mimo_engine_max_model_len(s.engine);
  s.vocab_limit = mimo_tok_vocab_size(s.tok);
  s.created = (long)time(NULL);
  s.shutdown_grace = grace;
  s.metrics = mimo_metrics_new(s.names[0]);
  mimo_http_opts ho = {.host = mimo_arg_str(serve_args, N_ARGS, "host", "0.0.0.0"),
                       .port = (int)port,
                       .api_key = mimo_arg_str(serve_args, N_ARGS, "api-key", NULL),
                       .max_body = (size_t)max_body,
                       .idle_timeout = (unsigned)keep,
                       .request_id_headers = mimo_arg_str(serve_args, N_ARGS, "enable-request-id-headers", NULL) != NULL};
  if (!(s.responses = mimo_resp_store_new((int)stored_max))) {
    ret = fail("responses store");
    goto out;
  }
  if (!s.metrics || mimo_http_init(&s.http, &ho) != MIMO_OK || mimo_openai_register(&s) != MIMO_OK ||
      mimo_anthropic_register(&s) != MIMO_OK || mimo_responses_register(&s) != MIMO_OK) {
    ret = fail("server");
    goto out;
  }
  mimo_http_set_observer(s.http, mimo_metrics_http, s.metrics);
  if (mimo_http_start(s.http) != MIMO_OK) {
    ret = fail("listen");
    goto out;
  }
  fprintf(stderr, "mimo serve: %s listening on http://%s:%d (max_model_len %d)\n", s.names[0], ho.host, mimo_http_port(s.http),
            s.max_model_len);
  int sig = 0;
  sigwait(&sigs, &sig);
  fprintf(stderr, "mimo serve: signal %d: draining (up to %.0f s)\n", sig, grace);
  mimo_http_quiesce(s.http);
  struct timespec tick = {0, 20 * 1000000L};
  for (double t0 = mimo_now(); mimo_http_active(s.http) > 0 && mimo_now() - t0 < grace;)
    if (sigtimedwait(&sigs, NULL, &tick) > 0)
      break; /* a second signal: stop waiting */
  mimo_engine_shutdown(s.engine); /* ends what is left: streams close with finish_reason "abort" */
  /* let those streams write their last chunk before the connections are closed */
  for (double t0 = mimo_now(); mimo_http_active(s.http) > 0 && mimo_now() - t0 < 5;)
    nanosleep(&tick, NULL);
  mimo_http_free(s.http);
  s.http = NULL;
  fprintf(stderr, "mimo serve: stopped\n");
  ret = 0;
out:
  mimo_http_free(s.http);
  mimo_engine_free(s.engine);
  mimo_metrics_free(s.metrics);
  mimo_resp_store_free(s.responses);
  mimo_vision_close(s.vision);
  mimo_model_free(model);
  if (mock)
    for (int i = 0; i < mock->n; i++)
      free(mock->ids[i]);
  free(mock);
  mimo_tmpl_free(&s.tmpl);
  mimo_gvocab_free(s.gvocab);
  mimo_tok_free(s.tok);
  json_decref(s.default_kwargs);
  free(names);
  return ret;
}
