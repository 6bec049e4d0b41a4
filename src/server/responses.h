/* OpenAI Responses API (POST /v1/responses, GET and DELETE /v1/responses/{id}; docs/server.md).
 *
 * A request is turned into the chat completions request that means the same, which the chat parser then takes as
 * it takes any other: messages and images, tools and tool_choice, structured outputs, sampling. So both APIs
 * render the same prompt and sample the same tokens. The reply writer (responses_out.c) turns the generation's
 * reasoning, text and tool calls into output items: reasoning, message, function_call. The store keeps finished
 * responses in memory, with the conversation that led to them, so that previous_response_id continues it. */
#ifndef MIMO_SERVER_RESPONSES_H
#define MIMO_SERVER_RESPONSES_H
#include <jansson.h>
#include <stdbool.h>

#include "server/openai.h"

typedef struct mimo_resp_req {
  json_t *chat;       /* the equivalent chat completions body (owned; oai borrows from it) */
  mimo_oai_req oai;   /* parsed from chat */
  json_t *history;    /* the conversation so far without the instructions: the previous response's, then this
                       * input, as chat messages (owned), for the store */
  json_t *echo;       /* the request's fields a Response object repeats (owned) */
  json_t *items;      /* this request's input as items with ids, as input_items lists them (owned) */
  bool stream, store;
  const char *model;  /* as asked */
} mimo_resp_req;

/* root: the parsed body (borrowed; must outlive r). */
int mimo_responses_parse(mimo_server *s, const json_t *root, mimo_resp_req *r, mimo_api_err *e);
void mimo_resp_req_free(mimo_resp_req *r);

/* The store: finished responses by id, the oldest dropped beyond max entries (0: nothing kept). Thread-safe. */
typedef struct mimo_resp_store mimo_resp_store;
mimo_resp_store *mimo_resp_store_new(int max);
void mimo_resp_store_free(mimo_resp_store *st);
/* Takes references to response, history (the whole conversation, with the response's output) and items (the
 * request's input items). */
void mimo_resp_store_put(mimo_resp_store *st, const char *id, json_t *response, json_t *history, json_t *items);
/* New references (NULL when not kept); any out may be NULL. */
bool mimo_resp_store_get(mimo_resp_store *st, const char *id, json_t **response, json_t **history,
                         json_t **items);
bool mimo_resp_store_delete(mimo_resp_store *st, const char *id);

/* Registers the routes (server.h's mimo_server.responses is the store). */
mimo_status mimo_responses_register(mimo_server *s);
#endif
