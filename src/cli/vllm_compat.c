/* vLLM flag compatibility for `mimo serve` (vllm_compat.h). */
#include "cli/vllm_compat.h"

#include <jansson.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/sampler.h"
#include "server/server.h"

static bool one_of(const char *v, const char *const *ok) {
  for (; *ok; ok++)
    if (!strcmp(v, *ok))
      return true;
  return false;
}

/* A flag whose value must be one of ok (compared lower-case as vLLM does for these). */
static bool value_in(const mimo_arg *args, int n, const char *name, const char *const *ok, const char *why) {
  const char *v = mimo_arg_str(args, n, name, NULL);
  if (!v)
    return true;
  char low[64];
  size_t i = 0;
  for (; v[i] && i < sizeof low - 1; i++)
    low[i] = (char)(v[i] >= 'A' && v[i] <= 'Z' ? v[i] + 32 : v[i]);
  low[i] = 0;
  if (one_of(low, ok))
    return true;
  fprintf(stderr, "mimo serve: --%s %s: %s\n", name, v, why);
  return false;
}

bool mimo_vllm_args_apply(const mimo_arg *args, int n, const char *model_dir, struct mimo_server *s) {
  static const char *const dtypes[] = {"auto", "bfloat16", NULL};
  static const char *const quants[] = {"compressed-tensors", "awq", "awq_marlin", "none", NULL};
  static const char *const formats[] = {"auto", "safetensors", NULL};
  static const char *const one[] = {"1", NULL};
  static const char *const role[] = {"assistant", NULL};
  if (!value_in(args, n, "dtype", dtypes,
                "mimo computes in the checkpoint's own types (bf16 weights, int4 experts): only auto or bfloat16") ||
      !value_in(args, n, "quantization", quants,
                "the checkpoint's own quantization (compressed-tensors pack-quantized int4) is what runs") ||
      !value_in(args, n, "load-format", formats, "only safetensors checkpoints are read") ||
      !value_in(args, n, "pipeline-parallel-size", one,
                "pipeline parallelism is not supported: split with --tensor-parallel-size (across hosts: --nnodes)") ||
      !value_in(args, n, "data-parallel-size", one, "data parallelism is not supported: run one server per replica") ||
      !value_in(args, n, "response-role", role, "replies are always from the assistant role"))
    return false;
  static const char *const refused[] = {"ssl-keyfile", "ssl-certfile", "kv-transfer-config", "hf-overrides", NULL};
  for (const char *const *r = refused; *r; r++)
    if (mimo_arg_str(args, n, *r, NULL)) {
      fprintf(stderr, "mimo serve: --%s is not supported: %s\n", *r,
              !strncmp(*r, "ssl", 3)        ? "no HTTPS here; put a TLS-terminating proxy in front"
              : !strcmp(*r, "hf-overrides") ? "the checkpoint's config.json is what runs"
                                            : "no disaggregated prefill");
      return false;
    }
  const char *tok = mimo_arg_str(args, n, "tokenizer", NULL);
  if (tok && strcmp(tok, model_dir)) {
    char a[PATH_MAX], b[PATH_MAX];
    if (!realpath(tok, a) || !realpath(model_dir, b) || strcmp(a, b)) {
      fprintf(stderr, "mimo serve: --tokenizer %s: the tokenizer is read from the model directory (%s)\n", tok,
              model_dir);
      return false;
    }
  }
  const char *mpk = mimo_arg_str(args, n, "mm-processor-kwargs", NULL);
  if (mpk) {
    json_t *j = json_loads(mpk, 0, NULL);
    const bool empty = json_is_object(j) && !json_object_size(j);
    json_decref(j);
    if (!empty) {
      fprintf(stderr, "mimo serve: --mm-processor-kwargs %s: not supported (image sizes follow the checkpoint's "
                      "preprocessor config)\n", mpk);
      return false;
    }
  }
  s->force_include_usage = mimo_arg_str(args, n, "enable-force-include-usage", NULL) != NULL;
  bool bad = false;
  const long lp = mimo_arg_long(args, n, "max-logprobs", MIMO_MAX_LOGPROBS, &bad);
  if (bad || lp < 0 || lp > MIMO_MAX_LOGPROBS) {
    fprintf(stderr, "mimo serve: --max-logprobs: 0 to %d\n", MIMO_MAX_LOGPROBS);
    return false;
  }
  s->max_logprobs = (int)lp;
  s->max_logprobs_set = mimo_arg_str(args, n, "max-logprobs", NULL) != NULL;
  const char *seed = mimo_arg_str(args, n, "seed", NULL);
  if (seed) {
    char *end;
    const unsigned long long v = strtoull(seed, &end, 10);
    if (!*seed || *seed == '-' || *seed == ' ' || *end) {
      fprintf(stderr, "mimo serve: --seed expects a non-negative integer, got '%s'\n", seed);
      return false;
    }
    s->seeded = true;
    atomic_store(&s->seed_next, (uint64_t)v);
  }
  const char *kw = mimo_arg_str(args, n, "default-chat-template-kwargs", NULL);
  if (kw) {
    json_error_t err;
    json_t *j = json_loads(kw, 0, &err);
    if (!json_is_object(j)) {
      fprintf(stderr, "mimo serve: --default-chat-template-kwargs: a JSON object is needed (%s)\n",
              j ? "not an object" : err.text);
      json_decref(j);
      return false;
    }
    s->default_kwargs = j; /* last: nothing fails after it */
  }
  return true;
}
