/* Responses API replies and routes (responses.h). One item builder turns the generation's deltas into output items
 * (reasoning, message, function_call) for both forms, so the whole Response and the event stream always agree:
 * the stream writes output_item.added, the part and delta events and output_item.done as items open, grow and
 * close, then response.completed (or .incomplete / .failed) with the same object the whole form returns. Events
 * are built with jansson: simpler than by hand, and the per-token cost is the JSON of one small object. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "server/responses.h"
#include "server/server.h"
#include "server/sse.h"

#define POLL_MS 100

typedef enum { IT_NONE, IT_REASONING, IT_MESSAGE, IT_CALL } ikind;

typedef struct resp_run {
  mimo_server *s;
  mimo_resp_req r;
  json_t *root;
  mimo_gen *g;
  char id[64];
  long created;
  bool streaming;
  long seq;        /* the next event's sequence_number */
  mimo_sbuf *out;  /* where events go (streaming) */
  json_t *output;  /* finished items */
  /* the open item */
  ikind open;
  char item_id[64], call_id[64];
  char *call_name;
  int tool_index;
  mimo_sbuf cur;   /* its text or arguments */
  mimo_sbuf ws;    /* whitespace-only text held until it is known to lead a message */
  /* the turn, for the store's conversation */
  mimo_sbuf reasoning, text;
  json_t *calls;
  const char *finish;
  int started, ended;
} resp_run;

static void run_free(resp_run *o) {
  if (o->g) {
    mimo_gen_cancel(o->g);
    mimo_gen_free(o->g);
  }
  mimo_resp_req_free(&o->r);
  json_decref(o->root);
  json_decref(o->output);
  json_decref(o->calls);
  free(o->call_name);
  mimo_sbuf_free(&o->cur);
  mimo_sbuf_free(&o->ws);
  mimo_sbuf_free(&o->reasoning);
  mimo_sbuf_free(&o->text);
  free(o);
}

/* One event: its type and sequence number added, written as SSE. Takes ev. */
static void emit(resp_run *o, const char *type, json_t *ev) {
  if (!o->streaming || !ev) {
    json_decref(ev);
    return;
  }
  json_object_set_new(ev, "type", json_string(type));
  json_object_set_new(ev, "sequence_number", json_integer(o->seq++));
  char *s = json_dumps(ev, JSON_COMPACT);
  json_decref(ev);
  if (!s)
    return;
  mimo_sbuf_printf(o->out, "event: %s\ndata: ", type);
  mimo_sbuf_puts(o->out, s);
  mimo_sbuf_puts(o->out, "\n\n");
  free(s);
}

/* ---- items ---- */

static const char *item_status(const resp_run *o) {
  return o->finish && !strcmp(o->finish, "length") ? "incomplete" : "completed";
}

/* The open item as JSON: in progress (arguments/text empty) or whole. */
static json_t *item_json(resp_run *o, bool whole) {
  const char *t = whole && o->cur.p ? o->cur.p : "";
  const size_t n = whole ? o->cur.len : 0;
  const char *status = whole ? item_status(o) : "in_progress";
  if (o->open == IT_REASONING)
    return json_pack("{s:s,s:s,s:[],s:o,s:s}", "id", o->item_id, "type", "reasoning", "summary", "content",
                     whole ? json_pack("[{s:s,s:s%}]", "type", "reasoning_text", "text", t, n) : json_array(),
                     "status", status);
  if (o->open == IT_MESSAGE)
    return json_pack("{s:s,s:s,s:s,s:s,s:o}", "id", o->item_id, "type", "message", "status", status, "role",
                     "assistant", "content",
                     whole ? json_pack("[{s:s,s:s%,s:[],s:[]}]", "type", "output_text", "text", t, n, "annotations",
                                       "logprobs")
                           : json_array());
  return json_pack("{s:s,s:s,s:s,s:s,s:s,s:s%}", "id", o->item_id, "type", "function_call", "status", status,
                   "call_id", o->call_id, "name", o->call_name ? o->call_name : "", "arguments", t, n);
}

static json_t *at_item(const resp_run *o) { /* item_id and output_index of the open item */
  return json_pack("{s:s,s:I}", "item_id", o->item_id, "output_index", (json_int_t)json_array_size(o->output));
}

static void item_close(resp_run *o) {
  if (o->open == IT_NONE)
    return;
  const char *t = o->cur.p ? o->cur.p : "";
  if (o->open == IT_REASONING || o->open == IT_MESSAGE) {
    const bool r = o->open == IT_REASONING;
    json_t *ev = at_item(o);
    json_object_set_new(ev, "content_index", json_integer(0));
    json_object_set_new(ev, "text", json_stringn(t, o->cur.len));
    if (!r)
      json_object_set_new(ev, "logprobs", json_array());
    emit(o, r ? "response.reasoning_text.done" : "response.output_text.done", ev);
    ev = at_item(o);
    json_object_set_new(ev, "content_index", json_integer(0));
    json_object_set_new(ev, "part", r ? json_pack("{s:s,s:s%}", "type", "reasoning_text", "text", t, o->cur.len)
                                      : json_pack("{s:s,s:s%,s:[],s:[]}", "type", "output_text", "text", t,
                                                  o->cur.len, "annotations", "logprobs"));
    emit(o, "response.content_part.done", ev);
  } else {
    json_t *ev = at_item(o);
    json_object_set_new(ev, "name", json_string(o->call_name ? o->call_name : ""));
    json_object_set_new(ev, "arguments", json_stringn(t, o->cur.len));
    emit(o, "response.function_call_arguments.done", ev);
    json_array_append_new(o->calls, json_pack("{s:s,s:s,s:{s:s,s:s%}}", "id", o->call_id, "type", "function",
                                              "function", "name", o->call_name ? o->call_name : "", "arguments", t,
                                              o->cur.len));
  }
  json_t *item = item_json(o, true);
  emit(o, "response.output_item.done",
       json_pack("{s:I,s:O}", "output_index", (json_int_t)json_array_size(o->output), "item", item));
  json_array_append_new(o->output, item);
  o->cur.len = 0;
  o->open = IT_NONE;
}

static void item_open(resp_run *o, ikind k, const char *call_id, const char *name) {
  item_close(o);
  o->open = k;
  static const char *prefix[] = {"", "rs_", "msg_", "fc_"};
  mimo_api_new_id(prefix[k], o->item_id, sizeof o->item_id);
  if (k == IT_CALL) {
    if (call_id)
      snprintf(o->call_id, sizeof o->call_id, "%s", call_id);
    else
      mimo_api_new_id("call_", o->call_id, sizeof o->call_id);
    free(o->call_name);
    o->call_name = strdup(name);
  }
  emit(o, "response.output_item.added",
       json_pack("{s:I,s:o}", "output_index", (json_int_t)json_array_size(o->output), "item", item_json(o, false)));
  if (k == IT_CALL)
    return;
  json_t *ev = at_item(o);
  json_object_set_new(ev, "content_index", json_integer(0));
  json_object_set_new(ev, "part", k == IT_REASONING
                                      ? json_pack("{s:s,s:s}", "type", "reasoning_text", "text", "")
                                      : json_pack("{s:s,s:s,s:[],s:[]}", "type", "output_text", "text", "",
                                                  "annotations", "logprobs"));
  emit(o, "response.content_part.added", ev);
}

static void item_put(resp_run *o, const char *s, size_t n) {
  if (!n)
    return;
  mimo_sbuf_put(&o->cur, s, n);
  if (o->open == IT_REASONING)
    mimo_sbuf_put(&o->reasoning, s, n);
  else if (o->open == IT_MESSAGE)
    mimo_sbuf_put(&o->text, s, n);
  json_t *ev = at_item(o);
  if (o->open != IT_CALL)
    json_object_set_new(ev, "content_index", json_integer(0));
  json_object_set_new(ev, "delta", json_stringn(s, n));
  if (o->open == IT_MESSAGE)
    json_object_set_new(ev, "logprobs", json_array());
  emit(o,
       o->open == IT_REASONING ? "response.reasoning_text.delta"
       : o->open == IT_MESSAGE ? "response.output_text.delta"
                               : "response.function_call_arguments.delta",
       ev);
}

static void take(resp_run *o, mimo_gen_delta *d) {
  if (d->reasoning.len) {
    if (o->open != IT_REASONING)
      item_open(o, IT_REASONING, NULL, NULL);
    item_put(o, d->reasoning.p, d->reasoning.len);
  }
  if (d->content.len) { /* whitespace alone (around tool calls) waits to see whether text follows */
    if (o->open != IT_MESSAGE && mimo_api_all_space(d->content.p, d->content.len)) {
      mimo_sbuf_put(&o->ws, d->content.p, d->content.len);
    } else {
      if (o->open != IT_MESSAGE) {
        item_open(o, IT_MESSAGE, NULL, NULL);
        item_put(o, o->ws.p, o->ws.len);
        o->ws.len = 0;
      }
      item_put(o, d->content.p, d->content.len);
    }
  }
  for (int i = 0; i < d->n_tools; i++) {
    mimo_gen_tool *t = &d->tools[i];
    if (t->name) {
      o->ws.len = 0;
      item_open(o, IT_CALL, t->id, t->name);
      o->tool_index = t->index;
    }
    if (o->open == IT_CALL && o->tool_index == t->index)
      item_put(o, t->args.p, t->args.len);
  }
  if (d->finish) {
    o->finish = d->finish;
    item_close(o);
  }
  mimo_gen_delta_clear(d);
}

/* ---- the Response object ---- */

static const char *status_of(const resp_run *o) {
  if (!o->ended)
    return "in_progress";
  if (!o->finish || !strcmp(o->finish, "abort") || !strcmp(o->finish, "error"))
    return "failed";
  return strcmp(o->finish, "length") ? "completed" : "incomplete";
}

static json_t *response_json(resp_run *o) {
  json_t *r = json_deep_copy(o->r.echo);
  if (!r)
    return NULL;
  const char *status = status_of(o);
  json_object_set_new(r, "id", json_string(o->id));
  json_object_set_new(r, "object", json_string("response"));
  json_object_set_new(r, "created_at", json_integer(o->created));
  json_object_set_new(r, "status", json_string(status));
  json_object_set_new(r, "model", json_string(o->r.model));
  json_object_set_new(r, "output", o->ended ? json_deep_copy(o->output) : json_array());
  json_object_set_new(r, "store", json_boolean(o->r.store));
  json_object_set_new(r, "background", json_false());
  json_object_set_new(r, "incomplete_details", !strcmp(status, "incomplete")
                                                   ? json_pack("{s:s}", "reason", "max_output_tokens")
                                                   : json_null());
  json_object_set_new(r, "error", !strcmp(status, "failed")
                                      ? json_pack("{s:s,s:s}", "code", "server_error", "message",
                                                  o->finish && !strcmp(o->finish, "error")
                                                      ? "the generation failed"
                                                      : "the request was cancelled (the server is shutting down)")
                                      : json_null());
  if (!o->ended) {
    json_object_set_new(r, "usage", json_null());
    return r;
  }
  /* reasoning tokens: the reasoning text's, tokenized again (the parser splits text, not tokens) */
  int *ids = NULL, n_reason = 0;
  mimo_api_err e = {0};
  if (o->reasoning.len && mimo_api_tokenize(o->s, o->reasoning.p, o->reasoning.len, &ids, &n_reason, &e))
    n_reason = 0;
  free(ids);
  const int in = mimo_gen_prompt_tokens(o->g), out = mimo_gen_completion_tokens(o->g);
  json_object_set_new(r, "usage",
                      json_pack("{s:i,s:{s:i},s:i,s:{s:i},s:i}", "input_tokens", in, "input_tokens_details",
                                "cached_tokens", mimo_gen_cached_tokens(o->g), "output_tokens", out,
                                "output_tokens_details", "reasoning_tokens", n_reason < out ? n_reason : out,
                                "total_tokens", in + out));
  return r;
}

/* A finished response (and its conversation, with this turn's output) into the store. */
static void store(resp_run *o, json_t *response) {
  if (!o->r.store || !o->s->responses || strcmp(status_of(o), "failed") == 0)
    return;
  json_t *turn = json_pack("{s:s,s:s%}", "role", "assistant", "content", o->text.p ? o->text.p : "", o->text.len);
  if (turn && o->reasoning.len)
    json_object_set_new(turn, "reasoning_content", json_stringn(o->reasoning.p, o->reasoning.len));
  if (turn && json_array_size(o->calls))
    json_object_set(turn, "tool_calls", o->calls);
  if (!turn || json_array_append_new(o->r.history, turn))
    return;
  mimo_resp_store_put(o->s->responses, o->id, response, o->r.history, o->r.items);
}

static void reply_whole(resp_run *o, mimo_http_req *rq) {
  while (!mimo_gen_done(o->g)) {
    mimo_gen_pump(o->g, POLL_MS);
    take(o, mimo_gen_delta_of(o->g, 0));
    if (!mimo_gen_done(o->g) && mimo_http_client_gone(rq)) {
      mimo_gen_cancel(o->g);
      mimo_http_reply_error(rq, 499, "BadRequestError", NULL, NULL, "the client closed the connection");
      return;
    }
  }
  item_close(o);
  o->ended = 1;
  json_t *resp = response_json(o);
  if (!resp) {
    mimo_http_reply_error(rq, 500, "InternalServerError", NULL, NULL, "out of memory");
    return;
  }
  store(o, resp);
  mimo_http_reply_json(rq, 200, resp);
}

static int stream_produce(void *ctx, mimo_sbuf *out, int gone) {
  resp_run *o = ctx;
  o->out = out;
  if (gone) {
    mimo_gen_cancel(o->g);
    return -1;
  }
  if (!o->started) {
    o->started = 1;
    json_t *r = response_json(o);
    emit(o, "response.created", json_pack("{s:O}", "response", r));
    emit(o, "response.in_progress", json_pack("{s:o}", "response", r));
    return 1;
  }
  if (o->ended)
    return 0;
  mimo_gen_pump(o->g, POLL_MS);
  take(o, mimo_gen_delta_of(o->g, 0));
  if (mimo_gen_done(o->g)) {
    item_close(o);
    o->ended = 1;
    json_t *r = response_json(o);
    const char *st = status_of(o);
    store(o, r);
    emit(o, !strcmp(st, "completed") ? "response.completed" : !strcmp(st, "incomplete") ? "response.incomplete"
                                                                                         : "response.failed",
         json_pack("{s:o}", "response", r));
  }
  return 1;
}

static void stream_done(void *ctx) { run_free(ctx); }

static void run(mimo_server *s, mimo_http_req *rq, mimo_resp_req *r, json_t *root) {
  resp_run *o = calloc(1, sizeof *o);
  if (!o || !(o->output = json_array()) || !(o->calls = json_array())) {
    if (o)
      json_decref(o->output);
    free(o);
    mimo_resp_req_free(r);
    json_decref(root);
    mimo_http_reply_error(rq, 500, "InternalServerError", NULL, NULL, "out of memory");
    return;
  }
  o->s = s;
  o->r = *r;
  o->root = root;
  o->streaming = r->stream;
  o->created = (long)time(NULL);
  mimo_api_new_id("resp_", o->id, sizeof o->id);
  mimo_api_err e = {0};
  if (mimo_gen_start(s, &o->r.oai.spec, &o->g, &e)) {
    run_free(o);
    mimo_api_reply_err(rq, &e);
    return;
  }
  if (!o->streaming) {
    reply_whole(o, rq);
    run_free(o);
    return;
  }
  mimo_http_reply_stream(rq, 200, "text/event-stream; charset=utf-8", stream_produce, stream_done, o);
}

/* ---- routes ---- */

static void on_create(mimo_http_req *rq, void *ctx) {
  mimo_server *s = ctx;
  size_t len;
  const char *body = mimo_http_body(rq, &len);
  mimo_api_err e = {0};
  json_t *root = mimo_api_parse_body(body, len, &e);
  if (!root) {
    mimo_api_reply_err(rq, &e);
    return;
  }
  mimo_resp_req r;
  if (mimo_responses_parse(s, root, &r, &e)) {
    mimo_resp_req_free(&r);
    json_decref(root);
    mimo_api_reply_err(rq, &e);
    return;
  }
  run(s, rq, &r, root);
}

/* /v1/responses/{id} or /v1/responses/{id}/input_items: the id (the whole rest when the path has another shape,
 * which then matches no response) and whether the items are asked for. */
static void path_id(mimo_http_req *rq, char *id, size_t cap, bool *items) {
  const char *base = "/v1/responses/", *p = mimo_http_path(rq);
  if (!strncmp(p, base, strlen(base)))
    p += strlen(base);
  const char *slash = strchr(p, '/');
  *items = slash && !strcmp(slash, "/input_items");
  const size_t n = *items ? (size_t)(slash - p) : strlen(p);
  snprintf(id, cap, "%.*s", (int)(n < cap ? n : cap - 1), p);
}

/* GET /v1/responses/{id}/input_items: the request's input items, a page at a time (order, limit, after). */
static void list_items(mimo_http_req *rq, mimo_server *s, const char *id) {
  const char *order = mimo_http_query(rq, "order"), *lim = mimo_http_query(rq, "limit"),
             *after = mimo_http_query(rq, "after");
  if (order && strcmp(order, "asc") && strcmp(order, "desc")) {
    mimo_http_reply_error(rq, 400, "BadRequestError", "order", NULL, "order: 'asc' or 'desc', not '%s'", order);
    return;
  }
  long limit = 20;
  if (lim) {
    char *end;
    limit = strtol(lim, &end, 10);
    if (end == lim || *end || limit < 1 || limit > 100) {
      mimo_http_reply_error(rq, 400, "BadRequestError", "limit", NULL, "limit: an integer from 1 to 100, not '%s'", lim);
      return;
    }
  }
  json_t *items = NULL;
  if (!mimo_resp_store_get(s->responses, id, NULL, NULL, &items) || !items) {
    json_decref(items);
    mimo_http_reply_error(rq, 404, "NotFoundError", NULL, NULL, "Response with id '%s' not found.", id);
    return;
  }
  const bool asc = order && !strcmp(order, "asc"); /* (newest first by default, as OpenAI lists them) */
  const size_t n = json_array_size(items);
  size_t start = 0;
  for (size_t k = 0; after && k < n; k++)
    if (!strcmp(json_string_value(json_object_get(json_array_get(items, asc ? k : n - 1 - k), "id")), after))
      start = k + 1;
  json_t *data = json_array();
  for (size_t k = start; data && k < n && k < start + (size_t)limit; k++)
    json_array_append(data, json_array_get(items, asc ? k : n - 1 - k));
  const size_t got = json_array_size(data);
  json_t *first = got ? json_object_get(json_array_get(data, 0), "id") : NULL,
         *last = got ? json_object_get(json_array_get(data, got - 1), "id") : NULL;
  mimo_http_reply_json(rq, 200, json_pack("{s:s,s:o*,s:O?,s:O?,s:b}", "object", "list", "data", data, "first_id", first,
                                          "last_id", last, "has_more", start + got < n));
  json_decref(items);
}

static void on_get(mimo_http_req *rq, void *ctx) {
  mimo_server *s = ctx;
  char id[128];
  bool items;
  path_id(rq, id, sizeof id, &items);
  if (items) {
    list_items(rq, s, id);
    return;
  }
  json_t *resp = NULL;
  if (!mimo_resp_store_get(s->responses, id, &resp, NULL, NULL)) {
    mimo_http_reply_error(rq, 404, "NotFoundError", NULL, NULL, "Response with id '%s' not found.", id);
    return;
  }
  mimo_http_reply_json(rq, 200, resp);
}

static void on_delete(mimo_http_req *rq, void *ctx) {
  mimo_server *s = ctx;
  char id[128];
  bool items;
  path_id(rq, id, sizeof id, &items);
  if (items || !mimo_resp_store_delete(s->responses, id)) {
    mimo_http_reply_error(rq, 404, "NotFoundError", NULL, NULL, "Response with id '%s' not found.", id);
    return;
  }
  mimo_http_reply_json(rq, 200, json_pack("{s:s,s:s,s:b}", "id", id, "object", "response.deleted", "deleted", 1));
}

mimo_status mimo_responses_register(mimo_server *s) {
  mimo_http_err_fn err = mimo_openai_error_body;
  MIMO_TRY(mimo_http_route(s->http, "POST", "/v1/responses", MIMO_HTTP_AUTH, on_create, s, err));
  MIMO_TRY(mimo_http_route(s->http, "GET", "/v1/responses/*", MIMO_HTTP_AUTH, on_get, s, err));
  MIMO_TRY(mimo_http_route(s->http, "GET", "/v1/responses/*/input_items", MIMO_HTTP_AUTH, on_get, s, err));
  MIMO_TRY(mimo_http_route(s->http, "DELETE", "/v1/responses/*", MIMO_HTTP_AUTH, on_delete, s, err));
  return MIMO_OK;
}
