/* What every API module shares: the engine, the tokenizer, the chat template,
 * sampling defaults, served names and metrics. cmd_serve.c fills it; openai.c
 * and anthropic.c register their routes on `http` with it as context. */
#ifndef MIMO_SERVER_SERVER_H
#define MIMO_SERVER_SERVER_H
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "engine/engine.h"
#include "server/media_fetch.h"
#include "io/config.h"
#include "server/http.h"
#include "server/metrics.h"
#include "text/chat_template.h"
#include "text/tokenizer.h"

#define MIMO_SERVER_MAX_NAMES 8

typedef struct mimo_server {
  mimo_http *http;
  mimo_engine *engine;
  mimo_tok *tok;
  mimo_tmpl tmpl;
  mimo_gen_defaults gen; /* sampling defaults (generation_config.json) */
  mimo_metrics *metrics;
  const char *names[MIMO_SERVER_MAX_NAMES]; /* served model names; names[0] is reported */
  int n_names;
  int max_model_len;
  int vocab_limit; /* ids the sampler may pick (<= 0: all) */
  long created;    /* unix time the server started (model "created") */
  double shutdown_grace; /* seconds in-flight requests get on SIGTERM */
  struct mimo_vision *vision; /* the image encoder (NULL: text only) */
  struct mimo_gvocab *gvocab; /* the tokens' bytes for structured outputs (text/grammar_vocab.h) */
  const char *media_path;     /* --allowed-local-media-path, resolved (NULL: no file:// images) */
  mimo_media_fetch fetch;     /* http(s) image URLs (server/media_fetch.h) */
  struct mimo_resp_store *responses; /* finished /v1/responses (server/responses.h) */
  int image_limit;            /* images per request at most (--limit-mm-per-prompt; 0: none) */
  /* vLLM's flags with an effect (cli/vllm_compat.h) */
  json_t *default_kwargs;     /* chat-template kwargs a request gets unless it sets them (NULL: none) */
  bool force_include_usage;   /* every stream ends with a usage chunk */
  bool max_logprobs_set;      /* --max-logprobs given: max_logprobs bounds requests (else MIMO_MAX_LOGPROBS) */
  int max_logprobs;
  bool seeded;                /* --seed: requests without a seed draw theirs from seed_next */
  _Atomic uint64_t seed_next;
} mimo_server;

/* 1 if name is one of the served names. */
int mimo_server_has_model(const mimo_server *s, const char *name);
/* The seed of a request that gave none: random, or the next of --seed's sequence. */
uint64_t mimo_server_new_seed(mimo_server *s);
/* The most logprobs a request may ask for (--max-logprobs, default MIMO_MAX_LOGPROBS). */
int mimo_server_max_logprobs(const mimo_server *s);
/* Registers the OpenAI routes (/v1/chat/completions, /v1/completions,
 * /v1/models, /tokenize, /detokenize, /health, /metrics). */
mimo_status mimo_openai_register(mimo_server *s);
mimo_status mimo_anthropic_register(mimo_server *s); /* /v1/messages, /v1/messages/count_tokens */
#endif
