/* OpenAI replies: whole responses (jansson) and SSE chunks (written by hand:
 * this is the per-token hot path), plus the small routes. */
#include "server/openai.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/log.h"
#include "server/sse.h"
#include "text/tokenizer.h"

#define POLL_MS 100

typedef struct oai_run {
  mimo_server *s;
  mimo_oai_req r;
  json_t *root;
  mimo_gen *g;
  char id[96]; /* (a prefix and a client X-Request-Id of up to 64) */
  long created;
  mimo_sbuf head; /* `data: {"id":...,"choices":[` */
  int index_base;  /* a batched completions request: this prompt's choices start at this index */
  int started, finished, ended; /* finished: the generation is done; ended: the stream's last chunk went out */
  bool echo_pending; /* a stream's completions chunk with the echoed prompt / prompt_logprobs is still to go */
} oai_run;

static void run_free(oai_run *o) {
  if (o->g) {
    mimo_gen_cancel(o->g);
    mimo_gen_free(o->g);
  }
  mimo_oai_req_free(&o->r);
  json_decref(o->root);
  mimo_sbuf_free(&o->head);
  free(o);
}

/* ---- logprobs ---- */

static void lp_token_json(mimo_sbuf *b, const char *key, const char *t) {
  mimo_sbuf_printf(b, "\"%s\":\"", key);
  mimo_sbuf_json_str(b, t, strlen(t));
  mimo_sbuf_puts(b, "\"");
}

static void lp_bytes_json(mimo_sbuf *b, const char *t) {
  mimo_sbuf_puts(b, ",\"bytes\":[");
  for (const unsigned char *p = (const unsigned char *)t; *p; p++)
    mimo_sbuf_printf(b, "%s%u", p == (const unsigned char *)t ? "" : ",", *p);
  mimo_sbuf_puts(b, "]");
}

/* chat: {"content":[{token, logprob, bytes, top_logprobs:[...]}...]}. Logprobs print with 9 significant digits
 * (%.9g): the float32 reads back exactly, as in whole replies (http.c). */
static void chat_logprobs(mimo_server *s, int ntop, const mimo_gen_delta *d, mimo_sbuf *b) {
  mimo_sbuf_puts(b, "{\"content\":[");
  for (int i = 0; i < d->n_lp; i++) {
    char *t = mimo_api_token_text(s, d->lp[i].token);
    mimo_sbuf_puts(b, i ? ",{" : "{");
    lp_token_json(b, "token", t ? t : "");
    mimo_sbuf_printf(b, ",\"logprob\":%.9g", d->lp[i].info.logprob < -9999.0f ? -9999.0 : d->lp[i].info.logprob);
    lp_bytes_json(b, t ? t : "");
    free(t);
    mimo_sbuf_puts(b, ",\"top_logprobs\":[");
    int nt = d->lp[i].info.n_top < ntop ? d->lp[i].info.n_top : ntop;
    for (int k = 0; k < nt; k++) {
      const mimo_token_logprob *tl = &d->lp[i].info.top[k];
      char *tt = mimo_api_token_text(s, tl->token);
      mimo_sbuf_puts(b, k ? ",{" : "{");
      lp_token_json(b, "token", tt ? tt : "");
      mimo_sbuf_printf(b, ",\"logprob\":%.9g", tl->logprob < -9999.0f ? -9999.0 : tl->logprob);
      lp_bytes_json(b, tt ? tt : "");
      mimo_sbuf_puts(b, "}");
      free(tt);
    }
    mimo_sbuf_puts(b, "]}");
  }
  mimo_sbuf_puts(b, "]}");
}

/* vLLM's prompt_logprobs: [null, {"<id>": {logprob, rank, decoded_token}, ...}, ...]: at each prompt position the
 * prompt token's entry, then the best alternatives not already there (null when the prompt never ran). */
static json_t *prompt_logprobs_json(mimo_server *s, const mimo_oai_req *r, const mimo_gen *g) {
  const mimo_sample_info *plp = mimo_gen_prompt_logprobs(g);
  const int *rank = mimo_gen_prompt_ranks(g);
  if (!plp || !rank)
    return json_null();
  json_t *a = json_array();
  json_array_append_new(a, json_null());
  for (int i = 1; i < r->n_prompt; i++) {
    json_t *d = json_object();
    for (int k = -1; k < plp[i].n_top && k < r->prompt_logprobs; k++) {
      const int id = k < 0 ? r->prompt[i] : plp[i].top[k].token;
      if (k >= 0 && id == r->prompt[i])
        continue;
      char key[16], *t = mimo_api_token_text(s, id);
      snprintf(key, sizeof key, "%d", id);
      const float lp = k < 0 ? plp[i].logprob : plp[i].top[k].logprob;
      json_object_set_new(d, key, json_pack("{s:f,s:i,s:s}", "logprob", lp < -9999.0f ? -9999.0 : (double)lp, "rank",
                                            k < 0 ? rank[i] : k + 1, "decoded_token", t ? t : ""));
      free(t);
    }
    json_array_append_new(a, d);
  }
  return a;
}

static void cmpl_logprobs(mimo_server *s, int ntop, const mimo_gen_delta *d, size_t offset0, int n_null,
                          mimo_sbuf *b);

/* completions' echo: the prompt's text, and with logprobs its tokens' records (lp; the first n_null have none: the
 * first, or all when the prompt never ran). */
static void echo_build(oai_run *o, char **text, size_t *len, mimo_gen_delta *lp, int *n_null) {
  *text = NULL;
  *len = 0;
  if (o->r.prompt_text) {
    *text = strdup(o->r.prompt_text);
    *len = *text ? strlen(*text) : 0;
  } else if (mimo_tok_decode(o->s->tok, o->r.prompt, (size_t)o->r.n_prompt, 0, text, len) != MIMO_OK) {
    *text = NULL;
    *len = 0;
  }
  if (o->r.logprobs >= 0)
    lp->lp = calloc((size_t)o->r.n_prompt, sizeof *lp->lp);
  if (lp->lp) {
    const mimo_sample_info *plp = mimo_gen_prompt_logprobs(o->g);
    lp->n_lp = o->r.n_prompt;
    for (int k = 0; k < o->r.n_prompt; k++) {
      lp->lp[k].token = o->r.prompt[k];
      if (plp && k > 0)
        lp->lp[k].info = plp[k];
    }
    *n_null = plp ? 1 : o->r.n_prompt;
  }
}

/* completions: {"text_offset":[],"token_logprobs":[],"tokens":[],"top_logprobs":[{tok: lp}]}; the first n_null
 * entries have no logprob (null), as an echoed prompt's first token; entry `split` (>= 0) starts again at text
 * offset split_off (an echo's completion starts where the prompt's text ends) */
static void cmpl_logprobs_at(mimo_server *s, int ntop, const mimo_gen_delta *d, size_t offset0, int n_null, int split,
                             size_t split_off, mimo_sbuf *b) {
  char **tx = calloc((size_t)d->n_lp + 1, sizeof *tx);
  if (!tx) {
    mimo_sbuf_puts(b, "null");
    return;
  }
  for (int i = 0; i < d->n_lp; i++)
    tx[i] = mimo_api_token_text(s, d->lp[i].token);
  mimo_sbuf_puts(b, "{\"text_offset\":[");
  size_t off = offset0;
  for (int i = 0; i < d->n_lp; i++) {
    if (i == split)
      off = split_off;
    mimo_sbuf_printf(b, "%s%zu", i ? "," : "", off);
    off += tx[i] ? strlen(tx[i]) : 0;
  }
  mimo_sbuf_puts(b, "],\"token_logprobs\":[");
  for (int i = 0; i < d->n_lp; i++)
    if (i < n_null)
      mimo_sbuf_puts(b, i ? ",null" : "null");
    else
      mimo_sbuf_printf(b, "%s%.9g", i ? "," : "", d->lp[i].info.logprob < -9999.0f ? -9999.0 : d->lp[i].info.logprob);
  mimo_sbuf_puts(b, "],\"tokens\":[");
  for (int i = 0; i < d->n_lp; i++) {
    mimo_sbuf_puts(b, i ? ",\"" : "\"");
    mimo_sbuf_json_str(b, tx[i] ? tx[i] : "", tx[i] ? strlen(tx[i]) : 0);
    mimo_sbuf_puts(b, "\"");
  }
  mimo_sbuf_puts(b, "],\"top_logprobs\":[");
  for (int i = 0; i < d->n_lp; i++) {
    if (i < n_null) {
      mimo_sbuf_puts(b, i ? ",null" : "null");
      continue;
    }
    mimo_sbuf_puts(b, i ? ",{" : "{");
    int nt = d->lp[i].info.n_top < ntop ? d->lp[i].info.n_top : ntop;
    for (int k = 0; k < nt; k++) {
      char *tt = mimo_api_token_text(s, d->lp[i].info.top[k].token);
      mimo_sbuf_puts(b, k ? ",\"" : "\"");
      mimo_sbuf_json_str(b, tt ? tt : "", tt ? strlen(tt) : 0);
      mimo_sbuf_printf(b, "\":%.9g", d->lp[i].info.top[k].logprob < -9999.0f ? -9999.0 : d->lp[i].info.top[k].logprob);
      free(tt);
    }
    mimo_sbuf_puts(b, "}");
  }
  mimo_sbuf_puts(b, "]}");
  for (int i = 0; i < d->n_lp; i++)
    free(tx[i]);
  free(tx);
}

static void cmpl_logprobs(mimo_server *s, int ntop, const mimo_gen_delta *d, size_t offset0, int n_null,
                          mimo_sbuf *b) {
  cmpl_logprobs_at(s, ntop, d, offset0, n_null, -1, 0, b);
}

static json_t *raw_json(const mimo_sbuf *b) { return json_loadb(b->p ? b->p : "null", b->len ? b->len : 4, 0, NULL); }

/* ---- whole responses ---- */

typedef struct acc {
  mimo_sbuf reasoning, content;
  json_t *calls;  /* [{id, type, function: {name, arguments}}] */
  mimo_sbuf *args; /* per call */
  int n_args;
  mimo_gen_delta lp; /* accumulated logprob records */
  const char *finish;
} acc;

static void acc_take(acc *a, mimo_gen_delta *d) {
  mimo_sbuf_put(&a->reasoning, d->reasoning.p, d->reasoning.len);
  mimo_sbuf_put(&a->content, d->content.p, d->content.len);
  for (int i = 0; i < d->n_tools; i++) {
    mimo_gen_tool *t = &d->tools[i];
    if (t->name) {
      json_array_append_new(a->calls, json_pack("{s:s,s:s,s:{s:s,s:s}}", "id", t->id ? t->id : "", "type",
                                                "function", "function", "name", t->name, "arguments", ""));
      mimo_sbuf *na = realloc(a->args, (size_t)(a->n_args + 1) * sizeof *na);
      if (na) {
        a->args = na;
        memset(&a->args[a->n_args++], 0, sizeof *na);
      }
    }
    if (t->index < a->n_args)
      mimo_sbuf_put(&a->args[t->index], t->args.p, t->args.len);
  }
  for (int i = 0; i < d->n_lp; i++) {
    if (a->lp.n_lp == a->lp.cap_lp) {
      int cap = a->lp.cap_lp ? a->lp.cap_lp * 2 : 32;
      mimo_gen_lp *p = realloc(a->lp.lp, (size_t)cap * sizeof *p);
      if (!p)
        break;
      a->lp.lp = p;
      a->lp.cap_lp = cap;
    }
    a->lp.lp[a->lp.n_lp++] = d->lp[i];
  }
  if (d->finish)
    a->finish = d->finish;
  mimo_gen_delta_clear(d);
}

static json_t *usage_json(const mimo_gen *g) {
  int p = mimo_gen_prompt_tokens(g), c = mimo_gen_completion_tokens(g);
  return json_pack("{s:i,s:i,s:i,s:{s:i}}", "prompt_tokens", p, "completion_tokens", c, "total_tokens", p + c,
                   "prompt_tokens_details", "cached_tokens", mimo_gen_cached_tokens(g));
}

/* The whole reply's JSON once the generation is done (NULL: out of memory, or *gone when the client left). */
static json_t *whole_json(oai_run *o, mimo_http_req *rq, int *gone_out) {
  int n = mimo_gen_n(o->g);
  *gone_out = 0;
  acc *a = calloc((size_t)n, sizeof *a);
  if (!a)
    return NULL;
  for (int i = 0; i < n; i++)
    a[i].calls = json_array();
  int gone = 0;
  while (!mimo_gen_done(o->g)) {
    mimo_gen_pump(o->g, POLL_MS);
    for (int i = 0; i < n; i++)
      acc_take(&a[i], mimo_gen_delta_of(o->g, i));
    if (!mimo_gen_done(o->g) && mimo_http_client_gone(rq)) {
      gone = 1;
      mimo_gen_cancel(o->g);
      break;
    }
  }
  char *echo_text = NULL;
  size_t echo_len = 0;
  mimo_gen_delta echo_lp = {0};
  int echo_null = 0;
  if (o->r.echo && !o->r.chat)
    echo_build(o, &echo_text, &echo_len, &echo_lp, &echo_null);
  json_t *plp = o->r.prompt_logprobs >= 0 ? prompt_logprobs_json(o->s, &o->r, o->g) : NULL; /* the choices share it */
  json_t *choices = json_array();
  for (int i = 0; i < n; i++) {
    acc *c = &a[i];
    for (int k = 0; k < c->n_args && k < (int)json_array_size(c->calls); k++)
      json_object_set_new(json_object_get(json_array_get(c->calls, k), "function"), "arguments",
                          json_stringn(c->args[k].p ? c->args[k].p : "", c->args[k].len));
    json_t *lp = json_null();
    if (o->r.logprobs >= 0) {
      mimo_sbuf b = {0};
      if (o->r.chat)
        chat_logprobs(o->s, o->r.logprobs, &c->lp, &b);
      else if (echo_lp.lp) { /* the prompt's entries, then the choice's */
        mimo_gen_delta both = echo_lp;
        mimo_gen_lp *all = malloc(((size_t)echo_lp.n_lp + (size_t)c->lp.n_lp) * sizeof *all);
        if (all) {
          memcpy(all, echo_lp.lp, (size_t)echo_lp.n_lp * sizeof *all);
          if (c->lp.n_lp)
            memcpy(all + echo_lp.n_lp, c->lp.lp, (size_t)c->lp.n_lp * sizeof *all);
          both.lp = all;
          both.n_lp = echo_lp.n_lp + c->lp.n_lp;
        }
        cmpl_logprobs_at(o->s, o->r.logprobs, all ? &both : &c->lp, 0, all ? echo_null : 0, all ? echo_lp.n_lp : -1,
                         echo_len, &b);
        free(all);
      } else
        cmpl_logprobs(o->s, o->r.logprobs, &c->lp, 0, 0, &b);
      json_decref(lp);
      lp = raw_json(&b);
      mimo_sbuf_free(&b);
    }
    const char *fin = c->finish ? c->finish : "abort";
    json_t *ch;
    if (o->r.chat) {
      int has_calls = json_array_size(c->calls) > 0;
      /* beside tool calls, content that is only whitespace (a newline before the call) is none, as OpenAI gives */
      const bool none = has_calls && mimo_api_all_space(c->content.p ? c->content.p : "", c->content.len);
      json_t *content = none ? json_null() : json_stringn(c->content.p ? c->content.p : "", c->content.len);
      json_t *reasoning = c->reasoning.len ? json_stringn(c->reasoning.p, c->reasoning.len) : json_null();
      json_t *msg = json_pack("{s:s,s:o,s:o,s:O}", "role", "assistant", "content", content, "reasoning_content",
                              reasoning, "tool_calls", c->calls);
      ch = json_pack("{s:i,s:o,s:o,s:s,s:n}", "index", o->index_base + i, "message", msg, "logprobs", lp ? lp : json_null(),
                     "finish_reason", fin, "stop_reason");
    } else if (echo_text) {
      mimo_sbuf t = {0};
      mimo_sbuf_put(&t, echo_text, echo_len);
      mimo_sbuf_put(&t, c->content.p ? c->content.p : "", c->content.len);
      ch = json_pack("{s:i,s:s%,s:o,s:s,s:n}", "index", o->index_base + i, "text", t.p ? t.p : "", t.len, "logprobs",
                     lp ? lp : json_null(), "finish_reason", fin, "stop_reason");
      mimo_sbuf_free(&t);
      if (plp)
        json_object_set(ch, "prompt_logprobs", plp);
    } else {
      ch = json_pack("{s:i,s:s%,s:o,s:s,s:n}", "index", o->index_base + i, "text", c->content.p ? c->content.p : "",
                     c->content.len, "logprobs", lp ? lp : json_null(), "finish_reason", fin, "stop_reason");
      if (plp)
        json_object_set(ch, "prompt_logprobs", plp);
    }
    json_array_append_new(choices, ch);
  }
  free(echo_text);
  free(echo_lp.lp);
  json_t *resp = json_pack("{s:s,s:s,s:I,s:s,s:o,s:o}", "id", o->id, "object",
                           o->r.chat ? "chat.completion" : "text_completion", "created", (json_int_t)o->created,
                           "model", o->r.model, "choices", choices, "usage", usage_json(o->g));
  if (o->r.chat && plp) /* vLLM: chat responses carry it once, beside the choices */
    json_object_set(resp, "prompt_logprobs", plp);
  json_decref(plp);
  for (int i = 0; i < n; i++) {
    mimo_sbuf_free(&a[i].reasoning);
    mimo_sbuf_free(&a[i].content);
    json_decref(a[i].calls);
    for (int k = 0; k < a[i].n_args; k++)
      mimo_sbuf_free(&a[i].args[k]);
    free(a[i].args);
    free(a[i].lp.lp);
  }
  free(a);
  if (gone) {
    json_decref(resp);
    *gone_out = 1;
    return NULL;
  }
  return resp;
}

static void reply_json_or_fail(mimo_http_req *rq, json_t *resp, int gone) {
  if (gone)
    mimo_http_reply_error(rq, 499, "ClientClosedRequest", NULL, NULL, "the client closed the connection");
  else if (!resp)
    mimo_http_reply_error(rq, 500, "InternalServerError", NULL, NULL, "out of memory");
  else
    mimo_http_reply_json(rq, 200, resp);
}

static void reply_whole(oai_run *o, mimo_http_req *rq) {
  int gone;
  json_t *resp = whole_json(o, rq, &gone);
  reply_json_or_fail(rq, resp, gone);
}

/* ---- streaming ---- */

static void chunk_open(oai_run *o, mimo_sbuf *b, int index) {
  mimo_sbuf_put(b, o->head.p, o->head.len);
  mimo_sbuf_printf(b, "{\"index\":%d,", o->index_base + index);
}

static void chunk_close(oai_run *o, mimo_sbuf *b, const mimo_gen_delta *d, const char *finish, int with_lp,
                        size_t *text_off) {
  mimo_sbuf_puts(b, ",\"logprobs\":");
  if (with_lp && o->r.logprobs >= 0 && d->n_lp) {
    if (o->r.chat)
      chat_logprobs(o->s, o->r.logprobs, d, b);
    else
      cmpl_logprobs(o->s, o->r.logprobs, d, *text_off, 0, b);
  } else {
    mimo_sbuf_puts(b, "null");
  }
  if (finish)
    mimo_sbuf_printf(b, ",\"finish_reason\":\"%s\",\"stop_reason\":null}]", finish);
  else
    mimo_sbuf_puts(b, ",\"finish_reason\":null}]");
  if (o->r.continuous_usage && o->g) { /* the counts so far */
    const int p = mimo_gen_prompt_tokens(o->g), c = mimo_gen_completion_tokens(o->g);
    mimo_sbuf_printf(b, ",\"usage\":{\"prompt_tokens\":%d,\"completion_tokens\":%d,\"total_tokens\":%d}", p, c,
                     p + c);
  }
  mimo_sbuf_puts(b, "}\n\n");
}

static void chat_text_chunk(oai_run *o, mimo_sbuf *b, int i, const char *key, const mimo_sbuf *t,
                            const mimo_gen_delta *d, const char *finish, int with_lp) {
  chunk_open(o, b, i);
  mimo_sbuf_printf(b, "\"delta\":{\"%s\":\"", key);
  mimo_sbuf_json_str(b, t->p ? t->p : "", t->len);
  mimo_sbuf_puts(b, "\"}");
  chunk_close(o, b, d, finish, with_lp, NULL);
}

/* Writes the chunks for choice i's delta; returns 1 if its logprobs went out. */
static void emit_chat(oai_run *o, mimo_sbuf *b, int i, mimo_gen_delta *d) {
  int lp_out = 0;
  const char *fin = d->finish;
  int last_text = d->n_tools ? 0 : d->content.len ? 2 : d->reasoning.len ? 1 : 0;
  if (d->reasoning.len) {
    chat_text_chunk(o, b, i, "reasoning_content", &d->reasoning, d, last_text == 1 ? fin : NULL, !lp_out);
    lp_out = 1;
  }
  if (d->content.len) {
    chat_text_chunk(o, b, i, "content", &d->content, d, last_text == 2 ? fin : NULL, !lp_out);
    lp_out = 1;
  }
  for (int k = 0; k < d->n_tools; k++) {
    mimo_gen_tool *t = &d->tools[k];
    chunk_open(o, b, i);
    mimo_sbuf_printf(b, "\"delta\":{\"tool_calls\":[{\"index\":%d,", t->index);
    if (t->name) {
      mimo_sbuf_puts(b, "\"id\":\"");
      mimo_sbuf_json_str(b, t->id ? t->id : "", t->id ? strlen(t->id) : 0);
      mimo_sbuf_puts(b, "\",\"type\":\"function\",\"function\":{\"name\":\"");
      mimo_sbuf_json_str(b, t->name, strlen(t->name));
      mimo_sbuf_puts(b, "\",\"arguments\":\"");
    } else {
      mimo_sbuf_puts(b, "\"function\":{\"arguments\":\"");
    }
    mimo_sbuf_json_str(b, t->args.p ? t->args.p : "", t->args.len);
    mimo_sbuf_puts(b, "\"}}]}");
    chunk_close(o, b, d, k == d->n_tools - 1 ? fin : NULL, !lp_out, NULL);
    lp_out = 1;
  }
  if (fin && !last_text && !d->n_tools) {
    chunk_open(o, b, i);
    mimo_sbuf_puts(b, "\"delta\":{}");
    chunk_close(o, b, d, fin, !lp_out, NULL);
    lp_out = 1;
  }
  if (lp_out || !d->n_lp) {
    mimo_gen_delta_clear(d);
  } else { /* logprobs of held-back text go out with the next chunk */
    int n_lp = d->n_lp;
    d->n_lp = 0;
    mimo_gen_delta_clear(d);
    d->n_lp = n_lp;
  }
}

static void emit_cmpl(oai_run *o, mimo_sbuf *b, int i, mimo_gen_delta *d, size_t *off) {
  if (!d->content.len && !d->finish)
    return;
  chunk_open(o, b, i);
  mimo_sbuf_puts(b, "\"text\":\"");
  mimo_sbuf_json_str(b, d->content.p ? d->content.p : "", d->content.len);
  mimo_sbuf_puts(b, "\"");
  chunk_close(o, b, d, d->finish, 1, off);
  *off += d->content.len;
  mimo_gen_delta_clear(d);
}

typedef struct oai_stream {
  oai_run *o;
  size_t *text_off; /* completions logprobs offsets per choice */
} oai_stream;

/* A stream's first completions chunks (one per choice), once the prompt's logprobs are in when they are wanted: the
 * echoed prompt text with its logprobs, and vLLM's prompt_logprobs. */
static void emit_echo(oai_stream *st, mimo_sbuf *out) {
  oai_run *o = st->o;
  const bool want_lp = (o->r.echo && o->r.logprobs >= 0) || o->r.prompt_logprobs >= 0;
  if (want_lp && !mimo_gen_prompt_logprobs(o->g) && !mimo_gen_done(o->g))
    return;
  o->echo_pending = false;
  char *text = NULL;
  size_t len = 0;
  mimo_gen_delta lp = {0};
  int n_null = 0;
  if (o->r.echo)
    echo_build(o, &text, &len, &lp, &n_null);
  char *plp = NULL;
  if (o->r.prompt_logprobs >= 0) {
    json_t *j = prompt_logprobs_json(o->s, &o->r, o->g);
    plp = json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(9)); /* as whole replies (http.c) */
    json_decref(j);
  }
  for (int i = 0; i < mimo_gen_n(o->g); i++) {
    chunk_open(o, out, i);
    mimo_sbuf_puts(out, "\"text\":\"");
    mimo_sbuf_json_str(out, text ? text : "", len);
    mimo_sbuf_puts(out, "\"");
    if (plp)
      mimo_sbuf_printf(out, ",\"prompt_logprobs\":%s", plp);
    mimo_sbuf_puts(out, ",\"logprobs\":");
    if (lp.lp)
      cmpl_logprobs(o->s, o->r.logprobs, &lp, 0, n_null, out);
    else
      mimo_sbuf_puts(out, "null");
    mimo_sbuf_puts(out, ",\"finish_reason\":null}]}\n\n");
    st->text_off[i] = len; /* the completion's tokens follow the prompt's text */
  }
  free(text);
  free(lp.lp);
  free(plp);
}

/* The chunks of what arrived within timeout_ms; o->finished once the generation is done (no usage, no [DONE]). */
static void stream_step(oai_stream *st, mimo_sbuf *out, int timeout_ms) {
  oai_run *o = st->o;
  const int n = mimo_gen_n(o->g);
  mimo_gen_pump(o->g, timeout_ms);
  if (o->echo_pending)
    emit_echo(st, out);
  if (o->echo_pending)
    return; /* the completion's chunks wait for the prompt's */
  for (int i = 0; i < n; i++) {
    mimo_gen_delta *d = mimo_gen_delta_of(o->g, i);
    if (o->r.chat)
      emit_chat(o, out, i, d);
    else
      emit_cmpl(o, out, i, d, &st->text_off[i]);
  }
  o->finished = mimo_gen_done(o->g);
}

/* The usage chunk (stream_options.include_usage), then [DONE]. */
static void stream_end(oai_run *o, mimo_sbuf *out, int p, int c, int cached) {
  if (o->r.include_usage) {
    mimo_sbuf_put(out, o->head.p, o->head.len - 1); /* drop the '[' of choices */
    mimo_sbuf_printf(out,
                     "[],\"usage\":{\"prompt_tokens\":%d,\"completion_tokens\":%d,\"total_tokens\":%d,"
                     "\"prompt_tokens_details\":{\"cached_tokens\":%d}}}\n\n",
                     p, c, p + c, cached);
  }
  mimo_sse_done(out);
}

static int stream_produce(void *ctx, mimo_sbuf *out, int gone) {
  oai_stream *st = ctx;
  oai_run *o = st->o;
  if (gone) {
    mimo_gen_cancel(o->g);
    return -1;
  }
  int n = mimo_gen_n(o->g);
  if (!o->started) {
    o->started = 1;
    if (o->r.chat)
      for (int i = 0; i < n; i++) {
        chunk_open(o, out, i);
        mimo_sbuf_puts(out, "\"delta\":{\"role\":\"assistant\",\"content\":\"\"}");
        chunk_close(o, out, NULL, NULL, 0, NULL);
      }
    return 1;
  }
  if (o->ended)
    return 0;
  stream_step(st, out, POLL_MS);
  if (o->finished) {
    stream_end(o, out, mimo_gen_prompt_tokens(o->g), mimo_gen_completion_tokens(o->g), mimo_gen_cached_tokens(o->g));
    o->ended = 1;
  }
  return 1;
}

static void stream_done(void *ctx) {
  oai_stream *st = ctx;
  run_free(st->o);
  free(st->text_off);
  free(st);
}

/* A run of r and root (taken) with its generation submitted; NULL with *e filled (r and root freed). Its id is
 * the client's X-Request-Id after the prefix when it sent a usable one (as vLLM names it), else random. */
static oai_run *run_start(mimo_server *s, mimo_http_req *rq, mimo_oai_req *r, json_t *root, mimo_api_err *e) {
  oai_run *o = calloc(1, sizeof *o);
  if (!o) {
    mimo_oai_req_free(r);
    json_decref(root);
    mimo_api_fail(e, 500, NULL, "out of memory");
    return NULL;
  }
  o->s = s;
  o->r = *r;
  o->root = root;
  o->created = (long)time(NULL);
  const char *given = mimo_http_request_id(rq);
  if (given)
    snprintf(o->id, sizeof o->id, "%s%s", r->chat ? "chatcmpl-" : "cmpl-", given);
  else
    mimo_api_new_id(r->chat ? "chatcmpl-" : "cmpl-", o->id, sizeof o->id);
  if (mimo_gen_start(s, &o->r.spec, &o->g, e)) {
    run_free(o);
    return NULL;
  }
  return o;
}

/* The stream's state for o (its chunks' common head); NULL when out of memory (o then still the caller's). */
static oai_stream *stream_new(oai_run *o) {
  mimo_sbuf_printf(&o->head, "data: {\"id\":\"%s\",\"object\":\"%s\",\"created\":%ld,\"model\":\"", o->id,
                   o->r.chat ? "chat.completion.chunk" : "text_completion", o->created);
  mimo_sbuf_json_str(&o->head, o->r.model, strlen(o->r.model));
  mimo_sbuf_puts(&o->head, "\",\"choices\":[");
  o->echo_pending = !o->r.chat && (o->r.echo || o->r.prompt_logprobs >= 0);
  oai_stream *st = calloc(1, sizeof *st);
  if (st)
    st->text_off = calloc((size_t)o->r.n, sizeof *st->text_off);
  if (!st || !st->text_off || o->head.oom) {
    if (st)
      free(st->text_off);
    free(st);
    return NULL;
  }
  st->o = o;
  return st;
}

void mimo_openai_run(mimo_server *s, mimo_http_req *rq, mimo_oai_req *r, json_t *root) {
  mimo_api_err e = {0};
  oai_run *o = run_start(s, rq, r, root, &e);
  if (!o) {
    mimo_api_reply_err(rq, &e);
    return;
  }
  if (!o->r.stream) {
    reply_whole(o, rq);
    run_free(o);
    return;
  }
  oai_stream *st = stream_new(o);
  if (!st) {
    run_free(o);
    mimo_http_reply_error(rq, 500, "InternalServerError", NULL, NULL, "out of memory");
    return;
  }
  mimo_http_reply_stream(rq, 200, "text/event-stream; charset=utf-8", stream_produce, stream_done, st);
}

/* ---- batched completions prompts: one run per prompt, one reply ---- */

typedef struct batch {
  int n;
  oai_run **o;
  oai_stream **st;
  int ended;
} batch;

static void batch_free(batch *b) {
  for (int i = 0; i < b->n; i++) {
    if (b->st && b->st[i])
      stream_done(b->st[i]); /* (frees its run) */
    else if (b->o[i])
      run_free(b->o[i]);
  }
  free(b->st);
  free(b->o);
  free(b);
}

static int batch_produce(void *ctx, mimo_sbuf *out, int gone) {
  batch *b = ctx;
  if (gone) {
    for (int i = 0; i < b->n; i++)
      mimo_gen_cancel(b->o[i]->g);
    return -1;
  }
  if (b->ended)
    return 0;
  int left = 0;
  for (int i = 0; i < b->n; i++)
    left += !b->o[i]->finished;
  for (int i = 0; i < b->n; i++) /* a share of the wait each, so that every prompt's tokens flow */
    if (!b->o[i]->finished)
      stream_step(b->st[i], out, POLL_MS / left > 1 ? POLL_MS / left : 1);
  for (int i = 0; i < b->n; i++)
    if (!b->o[i]->finished)
      return 1;
  int p = 0, c = 0, cached = 0;
  for (int i = 0; i < b->n; i++) {
    p += mimo_gen_prompt_tokens(b->o[i]->g);
    c += mimo_gen_completion_tokens(b->o[i]->g);
    cached += mimo_gen_cached_tokens(b->o[i]->g);
  }
  stream_end(b->o[0], out, p, c, cached);
  b->ended = 1;
  return 1;
}

static void batch_done(void *ctx) { batch_free(ctx); }

void mimo_openai_run_batch(mimo_server *s, mimo_http_req *rq, mimo_oai_req *rs, json_t **roots, int n) {
  batch *b = calloc(1, sizeof *b);
  if (b)
    b->o = calloc((size_t)n, sizeof *b->o);
  mimo_api_err e = {0};
  int started = 0;
  if (!b || !b->o) {
    mimo_api_fail(&e, 500, NULL, "out of memory");
  } else {
    for (; started < n; started++) /* every prompt's choices go to the engine at once */
      if (!(b->o[started] = run_start(s, rq, &rs[started], roots[started], &e)))
        break;
  }
  for (int i = b && b->o ? started + (started < n) : 0; i < n; i++) { /* (the one that failed freed its own) */
    mimo_oai_req_free(&rs[i]);
    json_decref(roots[i]);
  }
  if (!b || !b->o || started < n) {
    if (b && b->o) {
      b->n = started;
      batch_free(b);
    } else {
      free(b);
    }
    mimo_api_reply_err(rq, &e);
    return;
  }
  b->n = n;
  for (int i = 0; i < n; i++) { /* one id and time for the reply; choice indices continue from prompt to prompt */
    memcpy(b->o[i]->id, b->o[0]->id, sizeof b->o[i]->id);
    b->o[i]->created = b->o[0]->created;
    b->o[i]->index_base = i * b->o[0]->r.n;
  }
  if (!b->o[0]->r.stream) {
    json_t *resp = NULL;
    int gone = 0;
    for (int i = 0; i < n && !gone; i++) {
      json_t *one = whole_json(b->o[i], rq, &gone);
      if (!one) {
        json_decref(resp);
        resp = NULL;
        break;
      }
      if (!resp) {
        resp = one;
        continue;
      }
      json_array_extend(json_object_get(resp, "choices"), json_object_get(one, "choices"));
      json_t *u = json_object_get(resp, "usage"), *v = json_object_get(one, "usage");
      const char *keys[] = {"prompt_tokens", "completion_tokens", "total_tokens"};
      for (int k = 0; k < 3; k++)
        json_object_set_new(u, keys[k], json_integer(json_integer_value(json_object_get(u, keys[k])) +
                                                     json_integer_value(json_object_get(v, keys[k]))));
      json_t *cu = json_object_get(u, "prompt_tokens_details"), *cv = json_object_get(v, "prompt_tokens_details");
      json_object_set_new(cu, "cached_tokens", json_integer(json_integer_value(json_object_get(cu, "cached_tokens")) +
                                                            json_integer_value(json_object_get(cv, "cached_tokens"))));
      json_decref(one);
    }
    if (gone)
      for (int i = 0; i < n; i++)
        mimo_gen_cancel(b->o[i]->g);
    reply_json_or_fail(rq, resp, gone);
    batch_free(b);
    return;
  }
  b->st = calloc((size_t)n, sizeof *b->st);
  for (int i = 0; b->st && i < n; i++)
    if (!(b->st[i] = stream_new(b->o[i]))) {
      batch_free(b);
      mimo_http_reply_error(rq, 500, "InternalServerError", NULL, NULL, "out of memory");
      return;
    }
  if (!b->st) {
    batch_free(b);
    mimo_http_reply_error(rq, 500, "InternalServerError", NULL, NULL, "out of memory");
    return;
  }
  mimo_http_reply_stream(rq, 200, "text/event-stream; charset=utf-8", batch_produce, batch_done, b);
}
