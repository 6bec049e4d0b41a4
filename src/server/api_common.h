/* Request-parsing helpers shared by the API modules: an error value that
 * carries the HTTP status and the fields of an API error body, typed getters
 * over jansson objects, and text helpers (UTF-8, tokenising, chat rendering). */
#ifndef MIMO_SERVER_API_COMMON_H
#define MIMO_SERVER_API_COMMON_H
#include <jansson.h>
#include <stdbool.h>

#include "server/http.h"
#include "server/server.h"

typedef struct mimo_api_err {
  int status; /* 0: no error */
  const char *type;
  char param[64];
  const char *code;
  char msg[512];
} mimo_api_err;

/* Records an error (the first one wins); returns -1 so callers can `return api_fail(...)`. */
int mimo_api_fail(mimo_api_err *e, int status, const char *param, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Replies with e through the route's error style (Retry-After on 503). */
void mimo_api_reply_err(mimo_http_req *rq, const mimo_api_err *e);
/* Maps an engine/template status to an API error (E_TOO_LONG -> 400, E_BUSY -> 503, ...). */
int mimo_api_fail_status(mimo_api_err *e, mimo_status st, const char *param);

/* Parses the request body; the root must be an object. */
json_t *mimo_api_parse_body(const char *body, size_t len, mimo_api_err *e);

/* Typed optional fields: absent or null leaves *out unchanged and returns 0;
 * a wrong type or a value outside [lo, hi] is a 400 naming the field (-1). */
int mimo_api_get_bool(const json_t *o, const char *k, bool *out, mimo_api_err *e);
int mimo_api_get_int(const json_t *o, const char *k, long lo, long hi, long *out, mimo_api_err *e);
int mimo_api_get_num(const json_t *o, const char *k, double lo, double hi, double *out, mimo_api_err *e);
int mimo_api_get_str(const json_t *o, const char *k, const char **out, mimo_api_err *e);
/* Strings or a list of strings (max n entries) -> a NULL-terminated malloc'ed
 * array of borrowed pointers (freed with free()). */
int mimo_api_get_strs(const json_t *o, const char *k, int max, const char ***out, int *n, mimo_api_err *e);

/* Text -> ids (malloc'ed). */
int mimo_api_tokenize(const mimo_server *s, const char *text, size_t len, int **ids, int *n, mimo_api_err *e);
/* Token text for logprobs: the token's bytes with invalid UTF-8 as U+FFFD (malloc'ed). */
char *mimo_api_token_text(const mimo_server *s, int id);
/* How a chat ends (mimo_api_render): as it is, with the template's generation prompt (a new assistant turn), or with
 * its final message left open for the model to continue (vLLM's continue_final_message; Anthropic's prefill): the
 * prompt is cut just after that message's text, as transformers' apply_chat_template does. */
enum { MIMO_RENDER_AS_IS = 0, MIMO_RENDER_GEN_PROMPT = 1, MIMO_RENDER_CONTINUE = 2 };
/* Renders messages/tools with the template and tokenizes the prompt. */
int mimo_api_render(const mimo_server *s, const json_t *messages, const json_t *tools, const json_t *kwargs,
                    int mode, int **ids, int *n, char **text, mimo_api_err *e);
/* The text a continued final message ends with (its string content, or its last text part); NULL: none. */
const char *mimo_api_final_text(const json_t *messages);
/* A random id like "chatcmpl-<32 hex>" into out (>= 48 bytes). */
void mimo_api_new_id(const char *prefix, char *out, size_t cap);
/* Whether text is only spaces, tabs and line ends (the output builders hold such text between tool calls). */
bool mimo_api_all_space(const char *s, size_t n);
/* Checks a tool list (OpenAI shape: [{type: function, function: {name, parameters}}]). */
int mimo_api_check_tools(const json_t *tools, mimo_api_err *e);
#endif
