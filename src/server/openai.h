/* OpenAI-compatible API: a request parsed into engine terms (kept separate
 * from HTTP so the fuzzer can drive it), and the reply writers. */
#ifndef MIMO_SERVER_OPENAI_H
#define MIMO_SERVER_OPENAI_H
#include <jansson.h>
#include <stdbool.h>

#include "server/api_common.h"
#include "server/api_images.h"
#include "server/gen.h"

typedef enum { MIMO_TOOLS_NONE, MIMO_TOOLS_AUTO, MIMO_TOOLS_REQUIRED, MIMO_TOOLS_NAMED } mimo_tool_choice;

typedef struct mimo_oai_req {
  bool chat, stream, include_usage, echo;
  bool continuous_usage; /* vLLM's stream_options.continuous_usage_stats: usage so far in every chunk */
  const char *model; /* as asked (or the served name) */
  int n;
  int logprobs; /* chat: top_logprobs when logprobs is true (-1: off); completions: the count (-1: off) */
  int prompt_logprobs; /* vLLM's extension: the prompt's logprobs with this many alternatives (-1: off) */
  json_t *messages, *tools, *kwargs; /* owned: normalised copies for the template */
  mimo_tool_choice tool_choice;
  char *prompt_text; /* rendered chat prompt or the completion prompt */
  int *prompt;
  int n_prompt;
  int *forced;
  int n_forced;
  int *stop_ids;
  int n_stop_ids;
  int *bias_ids;    /* logit_bias, as spec.sp points at them */
  float *bias_vals;
  const char **stop;
  int n_stop;
  mimo_api_images images; /* the messages' images, in order */
  struct mimo_jg *grammar; /* structured outputs (response_format, guided_*), or NULL */
  int grammar_after;
  mimo_gen_spec spec; /* points into the fields above */
} mimo_oai_req;

/* root: the parsed body (borrowed; must outlive r). */
int mimo_openai_parse(mimo_server *s, json_t *root, bool chat, mimo_oai_req *r, mimo_api_err *e);
/* MIMO_OAI_COUNT_ONLY: the prompt is wanted for its length (/tokenize): images are sized, not run through the
 * tower. MIMO_OAI_STRICT_DEFAULT: functions without `strict` are strict (the Responses API's default), so a call
 * with tool_choice auto follows their schemas (a schema that does not compile leaves its parameter free, as
 * without). */
enum { MIMO_OAI_COUNT_ONLY = 1, MIMO_OAI_STRICT_DEFAULT = 2 };
int mimo_openai_parse_ex(mimo_server *s, json_t *root, bool chat, unsigned flags, mimo_oai_req *r, mimo_api_err *e);
void mimo_oai_req_free(mimo_oai_req *r);

/* The OpenAI error body. */
json_t *mimo_openai_error_body(int status, const char *type, const char *param, const char *code, const char *msg);

/* Runs r and replies (streamed or whole). Takes r and root (freed when the reply is over). */
void mimo_openai_run(mimo_server *s, mimo_http_req *rq, mimo_oai_req *r, json_t *root);
/* A completions request with n prompts (OpenAI's batched prompt), parsed as n requests rs[i] from roots[i] (all
 * taken): one reply whose choices are prompt 0's, then prompt 1's, ... (index = prompt * n_choices + choice), usage
 * summed; streamed, their chunks interleave as they come. */
void mimo_openai_run_batch(mimo_server *s, mimo_http_req *rq, mimo_oai_req *rs, json_t **roots, int n);
#endif
