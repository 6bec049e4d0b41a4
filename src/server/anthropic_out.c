/* Anthropic replies and routes. One block builder turns the generation's
 * deltas into content blocks (thinking, text, tool_use) for both forms, so the
 * whole message and the event stream always agree: the whole form collects the
 * blocks as JSON, the streamed form writes content_block_start / _delta / _stop
 * events (by hand: this is the per-token hot path). */
#include <stdlib.h>
#include <string.h>

#include "server/anthropic.h"
#include "server/sse.h"

#define POLL_MS 100

typedef enum { BK_NONE, BK_THINKING, BK_TEXT, BK_TOOL } bkind;

typedef struct anth_run {
  mimo_server *s;
  mimo_anth_req r;
  json_t *root;
  mimo_gen *g;
  char id[64];
  int streaming;
  /* block builder */
  int n_blocks;   /* blocks opened so far (the open one is n_blocks - 1) */
  bkind open;
  int tool_index; /* the parser's index of the open tool_use block */
  mimo_sbuf ws;   /* whitespace-only text held until it is known to lead a text block */
  mimo_sbuf cur;  /* whole form: the open block's text / argument JSON */
  char tool_id[64];
  char *tool_name;
  json_t *content; /* whole form: the finished blocks */
  const char *finish;
  int stop_index; /* which stop sequence ended the output, -1 if none */
  int started, ended;
} anth_run;

static void run_free(anth_run *o) {
  if (o->g) {
    mimo_gen_cancel(o->g);
    mimo_gen_free(o->g);
  }
  mimo_anth_req_free(&o->r);
  json_decref(o->root);
  json_decref(o->content);
  mimo_sbuf_free(&o->ws);
  mimo_sbuf_free(&o->cur);
  free(o->tool_name);
  free(o);
}

/* ---- block builder ---- */

static void ev_open(mimo_sbuf *b, const char *name) {
  mimo_sbuf_printf(b, "event: %s\ndata: {\"type\":\"%s\"", name, name);
}

static void str_field(mimo_sbuf *b, const char *key, const char *s, size_t n) {
  mimo_sbuf_printf(b, "\"%s\":\"", key);
  mimo_sbuf_json_str(b, s ? s : "", n);
  mimo_sbuf_puts(b, "\"");
}

static void block_close(anth_run *o, mimo_sbuf *out) {
  if (o->open == BK_NONE)
    return;
  if (o->streaming) {
    ev_open(out, "content_block_stop");
    mimo_sbuf_printf(out, ",\"index\":%d}\n\n", o->n_blocks - 1);
  } else {
    const char *t = o->cur.p ? o->cur.p : "";
    json_t *b = NULL;
    if (o->open == BK_THINKING) {
      b = json_pack("{s:s,s:s%,s:s}", "type", "thinking", "thinking", t, o->cur.len, "signature", "");
    } else if (o->open == BK_TEXT) {
      b = json_pack("{s:s,s:s%}", "type", "text", "text", t, o->cur.len);
    } else {
      /* arguments cut short (max_tokens) leave no parsable object: the input is then empty */
      json_t *in = json_loadb(t, o->cur.len, 0, NULL);
      if (!json_is_object(in)) {
        json_decref(in);
        in = json_object();
      }
      b = json_pack("{s:s,s:s,s:s,s:o}", "type", "tool_use", "id", o->tool_id, "name",
                    o->tool_name ? o->tool_name : "", "input", in);
    }
    if (b)
      json_array_append_new(o->content, b);
  }
  o->cur.len = 0;
  o->open = BK_NONE;
}

static void block_open(anth_run *o, mimo_sbuf *out, bkind k, const char *name) {
  block_close(o, out);
  o->open = k;
  o->n_blocks++;
  if (k == BK_TOOL) {
    mimo_api_new_id("toolu_", o->tool_id, sizeof o->tool_id);
    free(o->tool_name);
    o->tool_name = strdup(name);
  }
  if (!o->streaming)
    return;
  ev_open(out, "content_block_start");
  mimo_sbuf_printf(out, ",\"index\":%d,\"content_block\":{", o->n_blocks - 1);
  if (k == BK_THINKING) {
    mimo_sbuf_puts(out, "\"type\":\"thinking\",\"thinking\":\"\",\"signature\":\"\"}}\n\n");
  } else if (k == BK_TEXT) {
    mimo_sbuf_puts(out, "\"type\":\"text\",\"text\":\"\"}}\n\n");
  } else {
    mimo_sbuf_printf(out, "\"type\":\"tool_use\",\"id\":\"%s\",", o->tool_id);
    str_field(out, "name", name, strlen(name));
    mimo_sbuf_puts(out, ",\"input\":{}}}\n\n");
  }
}

static void block_put(anth_run *o, mimo_sbuf *out, const char *s, size_t n) {
  if (!n)
    return;
  if (!o->streaming) {
    mimo_sbuf_put(&o->cur, s, n);
    return;
  }
  static const char *dtype[] = {"", "thinking_delta", "text_delta", "input_json_delta"};
  static const char *key[] = {"", "thinking", "text", "partial_json"};
  ev_open(out, "content_block_delta");
  mimo_sbuf_printf(out, ",\"index\":%d,\"delta\":{\"type\":\"%s\",", o->n_blocks - 1, dtype[o->open]);
  str_field(out, key[o->open], s, n);
  mimo_sbuf_puts(out, "}}\n\n");
}

/* Text: whitespace that would open a text block on its own (between or after
 * tool calls) is held; it leads the next text block unless a tool_use block
 * comes first, and is dropped at the end. */
static void put_text(anth_run *o, mimo_sbuf *out, const char *s, size_t n) {
  if (o->open != BK_TEXT && mimo_api_all_space(s, n)) {
    mimo_sbuf_put(&o->ws, s, n);
    return;
  }
  if (o->open != BK_TEXT) {
    block_open(o, out, BK_TEXT, NULL);
    block_put(o, out, o->ws.p, o->ws.len);
    o->ws.len = 0;
  }
  block_put(o, out, s, n);
}

static void take(anth_run *o, mimo_gen_delta *d, mimo_sbuf *out) {
  if (d->reasoning.len) {
    if (o->open != BK_THINKING)
      block_open(o, out, BK_THINKING, NULL);
    block_put(o, out, d->reasoning.p, d->reasoning.len);
  }
  if (d->content.len)
    put_text(o, out, d->content.p, d->content.len);
  for (int i = 0; i < d->n_tools; i++) {
    mimo_gen_tool *t = &d->tools[i];
    if (t->name) {
      o->ws.len = 0;
      block_open(o, out, BK_TOOL, t->name);
      o->tool_index = t->index;
    }
    if (o->open == BK_TOOL && o->tool_index == t->index)
      block_put(o, out, t->args.p, t->args.len);
  }
  if (d->finish) {
    o->finish = d->finish;
    o->stop_index = d->stop_index;
    block_close(o, out);
  }
  mimo_gen_delta_clear(d);
}

/* finish -> Anthropic's stop_reason (NULL: the run failed or was cut off). */
static const char *stop_reason(anth_run *o, const char **seq) {
  *seq = NULL;
  const char *f = o->finish ? o->finish : "abort";
  if (strcmp(f, "tool_calls") == 0)
    return "tool_use";
  if (strcmp(f, "length") == 0)
    return "max_tokens";
  if (strcmp(f, "stop") == 0) {
    *seq = o->stop_index >= 0 && o->stop_index < o->r.n_stop ? o->r.stop[o->stop_index] : NULL;
    return *seq ? "stop_sequence" : "end_turn";
  }
  return NULL;
}

static void reply_err(mimo_http_req *rq, const mimo_api_err *e) {
  mimo_api_err x = *e;
  if (x.status == 503) { /* Anthropic's "overloaded" status */
    x.status = 529;
    mimo_http_add_header(rq, "Retry-After", "1");
  }
  mimo_http_reply_error(rq, x.status, mimo_anthropic_error_type(x.status), NULL, NULL, "%s", x.msg);
}

static const char *failure_text(const char *finish) {
  return finish && strcmp(finish, "error") == 0 ? "the generation failed"
                                                : "the request was cancelled (the server is shutting down)";
}

/* ---- whole message ---- */

static void reply_whole(anth_run *o, mimo_http_req *rq) {
  if (!(o->content = json_array())) {
    mimo_http_reply_error(rq, 500, "api_error", NULL, NULL, "out of memory");
    return;
  }
  while (!mimo_gen_done(o->g)) {
    mimo_gen_pump(o->g, POLL_MS);
    take(o, mimo_gen_delta_of(o->g, 0), NULL);
    if (!mimo_gen_done(o->g) && mimo_http_client_gone(rq)) {
      mimo_gen_cancel(o->g);
      mimo_http_reply_error(rq, 499, "api_error", NULL, NULL, "the client closed the connection");
      return;
    }
  }
  const char *seq, *reason = stop_reason(o, &seq);
  if (!reason) {
    int err = o->finish && strcmp(o->finish, "error") == 0;
    mimo_http_reply_error(rq, err ? 500 : 529, "", NULL, NULL, "%s", failure_text(o->finish));
    return;
  }
  json_t *msg = json_pack("{s:s,s:s,s:s,s:s,s:O,s:s,s:o,s:{s:i,s:i,s:i,s:i}}", "id", o->id, "type", "message", "role",
                          "assistant", "model", o->r.model, "content", o->content, "stop_reason", reason,
                          "stop_sequence", seq ? json_string(seq) : json_null(), "usage", "input_tokens",
                          mimo_gen_prompt_tokens(o->g) - mimo_gen_cached_tokens(o->g), "output_tokens",
                          mimo_gen_completion_tokens(o->g), "cache_creation_input_tokens", 0,
                          "cache_read_input_tokens", mimo_gen_cached_tokens(o->g));
  if (!msg)
    mimo_http_reply_error(rq, 500, "api_error", NULL, NULL, "out of memory");
  else
    mimo_http_reply_json(rq, 200, msg);
}

/* ---- event stream ---- */

static void message_start(anth_run *o, mimo_sbuf *out) {
  ev_open(out, "message_start");
  mimo_sbuf_printf(out, ",\"message\":{\"id\":\"%s\",\"type\":\"message\",\"role\":\"assistant\",", o->id);
  str_field(out, "model", o->r.model, strlen(o->r.model));
  mimo_sbuf_printf(out,
                   ",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":%d,"
                   "\"output_tokens\":0,\"cache_creation_input_tokens\":0,\"cache_read_input_tokens\":0}}}\n\n",
                   o->r.n_prompt);
  ev_open(out, "ping");
  mimo_sbuf_puts(out, "}\n\n");
}

static void message_end(anth_run *o, mimo_sbuf *out) {
  const char *seq, *reason = stop_reason(o, &seq);
  if (!reason) { /* Anthropic's mid-stream error event; no message_stop follows */
    int err = o->finish && strcmp(o->finish, "error") == 0;
    ev_open(out, "error");
    mimo_sbuf_printf(out, ",\"error\":{\"type\":\"%s\",", err ? "api_error" : "overloaded_error");
    const char *m = failure_text(o->finish);
    str_field(out, "message", m, strlen(m));
    mimo_sbuf_puts(out, "}}\n\n");
    return;
  }
  ev_open(out, "message_delta");
  mimo_sbuf_printf(out, ",\"delta\":{\"stop_reason\":\"%s\",\"stop_sequence\":", reason);
  if (seq) {
    mimo_sbuf_puts(out, "\"");
    mimo_sbuf_json_str(out, seq, strlen(seq));
    mimo_sbuf_puts(out, "\"");
  } else {
    mimo_sbuf_puts(out, "null");
  }
  /* cumulative, as Anthropic's are: what the prefix cache supplied is known by now (message_start said 0) */
  const int cached = mimo_gen_cached_tokens(o->g);
  mimo_sbuf_printf(out,
                   "},\"usage\":{\"input_tokens\":%d,\"output_tokens\":%d,\"cache_creation_input_tokens\":0,"
                   "\"cache_read_input_tokens\":%d}}\n\n",
                   mimo_gen_prompt_tokens(o->g) - cached, mimo_gen_completion_tokens(o->g), cached);
  ev_open(out, "message_stop");
  mimo_sbuf_puts(out, "}\n\n");
}

static int stream_produce(void *ctx, mimo_sbuf *out, int gone) {
  anth_run *o = ctx;
  if (gone) {
    mimo_gen_cancel(o->g);
    return -1;
  }
  if (!o->started) {
    o->started = 1;
    message_start(o, out);
    return 1;
  }
  if (o->ended)
    return 0;
  mimo_gen_pump(o->g, POLL_MS);
  take(o, mimo_gen_delta_of(o->g, 0), out);
  if (mimo_gen_done(o->g)) {
    block_close(o, out);
    message_end(o, out);
    o->ended = 1;
  }
  return 1;
}

static void stream_done(void *ctx) { run_free(ctx); }

void mimo_anthropic_run(mimo_server *s, mimo_http_req *rq, mimo_anth_req *r, json_t *root) {
  anth_run *o = calloc(1, sizeof *o);
  if (!o) {
    mimo_anth_req_free(r);
    json_decref(root);
    mimo_http_reply_error(rq, 500, "api_error", NULL, NULL, "out of memory");
    return;
  }
  o->s = s;
  o->stop_index = -1;
  o->r = *r;
  o->root = root;
  o->streaming = r->stream;
  mimo_api_new_id("msg_", o->id, sizeof o->id);
  char req_id[64];
  mimo_api_new_id("req_", req_id, sizeof req_id);
  mimo_http_add_header(rq, "request-id", req_id);
  mimo_api_err e = {0};
  if (mimo_gen_start(s, &o->r.spec, &o->g, &e)) {
    run_free(o);
    reply_err(rq, &e);
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

static json_t *parse_or_reply(mimo_http_req *rq) {
  size_t len;
  const char *body = mimo_http_body(rq, &len);
  mimo_api_err e = {0};
  json_t *root = mimo_api_parse_body(body, len, &e);
  if (!root)
    reply_err(rq, &e);
  return root;
}

static void on_messages(mimo_http_req *rq, void *ctx) {
  mimo_server *s = ctx;
  json_t *root = parse_or_reply(rq);
  if (!root)
    return;
  mimo_anth_req r;
  mimo_api_err e = {0};
  if (mimo_anthropic_parse(s, root, false, &r, &e)) {
    mimo_anth_req_free(&r);
    json_decref(root);
    reply_err(rq, &e);
    return;
  }
  mimo_anthropic_run(s, rq, &r, root);
}

static void on_count_tokens(mimo_http_req *rq, void *ctx) {
  mimo_server *s = ctx;
  json_t *root = parse_or_reply(rq);
  if (!root)
    return;
  mimo_anth_req r;
  mimo_api_err e = {0};
  int rc = mimo_anthropic_parse(s, root, true, &r, &e);
  int n = r.n_prompt;
  mimo_anth_req_free(&r);
  json_decref(root);
  if (rc)
    reply_err(rq, &e);
  else
    mimo_http_reply_json(rq, 200, json_pack("{s:i}", "input_tokens", n));
}

mimo_status mimo_anthropic_register(mimo_server *s) {
  mimo_http_err_fn err = mimo_anthropic_error_body;
  MIMO_TRY(mimo_http_route(s->http, "POST", "/v1/messages", MIMO_HTTP_AUTH, on_messages, s, err));
  MIMO_TRY(mimo_http_route(s->http, "POST", "/v1/messages/count_tokens", MIMO_HTTP_AUTH, on_count_tokens, s, err));
  return MIMO_OK;
}
