/* Anthropic Messages API (POST /v1/messages, /v1/messages/count_tokens): the
 * request converted to the chat template's OpenAI-style messages and tools
 * (kept apart from HTTP so it can be driven without a server), Anthropic-style
 * error bodies, and the replies (whole message or the SSE event sequence). */
#ifndef MIMO_SERVER_ANTHROPIC_H
#define MIMO_SERVER_ANTHROPIC_H
#include <jansson.h>
#include <stdbool.h>

#include "server/api_common.h"
#include "server/api_images.h"
#include "server/gen.h"

typedef struct mimo_anth_req {
  bool stream;
  bool forced_call;  /* tool_choice any/tool: the output starts with a tool call */
  const char *model; /* as asked */
  json_t *messages, *tools, *kwargs; /* owned: what the template renders */
  int *prompt;
  int n_prompt;
  int *forced;
  int n_forced;
  struct mimo_jg *grammar; /* the forced call's parameters (server/api_structured.h), or NULL */
  const char **stop; /* borrowed from the body */
  int n_stop;
  mimo_api_images images; /* the user turns' images, in order */
  mimo_gen_spec spec; /* points into the fields above */
} mimo_anth_req;

/* root: the parsed body (borrowed; must outlive r). count_only: the
 * count_tokens form (no max_tokens, no sampling fields). */
int mimo_anthropic_parse(mimo_server *s, const json_t *root, bool count_only, mimo_anth_req *r, mimo_api_err *e);
void mimo_anth_req_free(mimo_anth_req *r);

/* {"type":"error","error":{"type":...,"message":...}}; the type follows the status. */
json_t *mimo_anthropic_error_body(int status, const char *type, const char *param, const char *code,
                                  const char *msg);
/* The Anthropic error type for an HTTP status. */
const char *mimo_anthropic_error_type(int status);

/* Runs r and replies (streamed or whole). Takes r and root. */
void mimo_anthropic_run(mimo_server *s, mimo_http_req *rq, mimo_anth_req *r, json_t *root);
#endif
