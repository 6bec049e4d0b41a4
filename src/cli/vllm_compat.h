/* vLLM's `serve` flags that mimo takes so that a vLLM command line runs as it is: those with an effect here
 * (--default-chat-template-kwargs, --enable-force-include-usage, --max-logprobs, --seed), those that mean nothing
 * for mimo (accepted, and so said in --help), and those whose value mimo cannot honour (refused naming why). */
#ifndef MIMO_CLI_VLLM_COMPAT_H
#define MIMO_CLI_VLLM_COMPAT_H
#include <stdbool.h>

#include "cli/args.h"

struct mimo_server;

#define MIMO_VLLM_ARGS                                                                                                 \
  {"default-chat-template-kwargs", 1, "JSON object of chat-template kwargs requests get unless they set them, e.g. "  \
                                      "'{\"enable_thinking\": false}'", NULL},                                      \
      {"enable-force-include-usage", 0, "every stream ends with a usage chunk, asked for or not", NULL},                \
      {"max-logprobs", 1, "most logprobs / top_logprobs / prompt_logprobs a request may ask for (default 20, at most 20)", \
       NULL},                                                                                                           \
      {"seed", 1, "seeds the sampling of requests that give no seed: a restarted server repeats them", NULL},           \
      {"dtype", 1, "auto | bfloat16: mimo computes in the checkpoint's own types (others are refused)", NULL},          \
      {"quantization", 1, "the checkpoint's own (compressed-tensors; awq and awq_marlin name it too): others refused",   \
       NULL},                                                                                                           \
      {"tokenizer", 1, "accepted when it is the model directory (the tokenizer comes from there)", NULL},               \
      {"load-format", 1, "auto | safetensors (the only format)", NULL},                                                 \
      {"pipeline-parallel-size", 1, "1 only (use --tensor-parallel-size, across hosts with --nnodes)", NULL},         \
      {"data-parallel-size", 1, "1 only (run one server per replica)", NULL},                                          \
      {"response-role", 1, "assistant only", NULL},                                                                     \
      {"enable-chunked-prefill", 0, "accepted; no effect: long prompts are always chunked (--max-num-batched-tokens)", \
       NULL},                                                                                                           \
      {"disable-log-requests", 0, "accepted; no effect (requests are not logged)", NULL},                              \
      {"enable-log-requests", 0, "accepted; no effect (requests are not logged; /metrics counts them)", NULL},         \
      {"enable-log-outputs", 0, "accepted; no effect", NULL},                                                           \
      {"disable-log-stats", 0, "accepted; no effect (stats are on /metrics only)", NULL},                              \
      {"uvicorn-log-level", 1, "accepted; no effect", NULL}, {"disable-fastapi-docs", 0, "accepted; no effect", NULL},   \
      {"block-size", 1, "accepted; no effect: KV blocks are mimo's own size", NULL},                                   \
      {"swap-space", 1, "accepted; no effect: preempted requests are recomputed, not swapped", NULL},                  \
      {"download-dir", 1, "accepted; no effect: nothing is downloaded", NULL},                                          \
      {"revision", 1, "accepted; no effect: the model directory is used as it is", NULL},                              \
      {"tokenizer-mode", 1, "accepted; no effect", NULL},                                                               \
      {"chat-template-content-format", 1, "accepted; no effect: string and part-list contents both work", NULL},       \
      {"guided-decoding-backend", 1, "accepted; no effect: mimo's own grammar engine (docs/server.md)", NULL},         \
      {"structured-outputs-config", 1, "accepted; no effect: mimo's own grammar engine", NULL},                        \
      {"distributed-executor-backend", 1, "accepted; no effect: ranks are threads, other hosts join with --nnodes",    \
       NULL},                                                                                                           \
      {"disable-custom-all-reduce", 0, "accepted; no effect (NCCL)", NULL},                                            \
      {"compilation-config", 1, "accepted; no effect: no compilation step (decode steps are CUDA graphs)", NULL},       \
      {"max-seq-len-to-capture", 1, "accepted; no effect", NULL}, {"cuda-graph-sizes", 1, "accepted; no effect", NULL}, \
      {"async-scheduling", 0, "accepted; no effect", NULL}, {"max-num-partial-prefills", 1, "accepted; no effect", NULL}, \
      {"mm-encoder-tp-mode", 1, "accepted; no effect: the vision tower runs on one device", NULL},                     \
      {"mm-processor-kwargs", 1, "'{}' only (image sizes follow the checkpoint's preprocessor config)", NULL},        \
      {"ssl-keyfile", 1, "refused: no HTTPS here (put a TLS proxy in front)", NULL},                                   \
      {"ssl-certfile", 1, "refused: no HTTPS here (put a TLS proxy in front)", NULL},                                  \
      {"kv-transfer-config", 1, "refused: no disaggregated prefill", NULL},                                             \
      {"hf-overrides", 1, "refused: the checkpoint's config.json is what runs", NULL}

/* Checks the vLLM flags among args (a message on stderr and false for a value mimo cannot honour) and applies those
 * with an effect to s. model_dir: the model directory (for --tokenizer). */
bool mimo_vllm_args_apply(const mimo_arg *args, int n, const char *model_dir, struct mimo_server *s);
#endif
