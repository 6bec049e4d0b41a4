#include "server/gen.h"

#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "engine/think_budget.h"
#include "server/parse_out.h"
#include "text/grammar_vocab.h"

#define EV_BATCH 64

typedef struct choice {
  mimo_request *req;
  mimo_detok dt;
  mimo_sbuf hold; /* released only once it cannot be the start of a stop string */
  int done, n_tokens;
  double t_last;
  mimo_parse_out po;
  mimo_gen_delta d;
} choice;

struct mimo_gen {
  mimo_server *s;
  int n, n_prompt;
  choice *c;
  char **stop;
  int *stop_of; /* index in the spec's list of each kept (non-empty) stop string */
  int n_stop;
  int min_tokens; /* stop strings are looked for from this many tokens on (vLLM's min_tokens) */
  int want_lp;
  double t0;
  int first_seen;
};

/* Where the prompt's first message block ends (after its <|im_end|>: the system prompt and the tools, in MiMo's
 * template): many conversations share it, so the engine keeps a prefix-cache entry there; 0 when there is none. */
static int first_block_end(const mimo_server *s, const int *ids, int n) {
  const int end = mimo_tok_token_id(s->tok, "<|im_end|>");
  for (int i = 0; end >= 0 && i < n; i++)
    if (ids[i] == end)
      return i + 1;
  return 0;
}

int mimo_gen_n(const mimo_gen *g) { return g->n; }
mimo_gen_delta *mimo_gen_delta_of(mimo_gen *g, int i) { return &g->c[i].d; }
int mimo_gen_prompt_tokens(const mimo_gen *g) { return g->n_prompt; }

/* The first choice's: the others share its prompt and, admitted after it, usually find at least as much cached. */
int mimo_gen_cached_tokens(const mimo_gen *g) { return g->n && g->c[0].req ? mimo_request_cached_tokens(g->c[0].req) : 0; }

const mimo_sample_info *mimo_gen_prompt_logprobs(const mimo_gen *g) {
  return g->n && g->c[0].req ? mimo_request_prompt_logprobs(g->c[0].req) : NULL;
}

const int *mimo_gen_prompt_ranks(const mimo_gen *g) {
  return g->n && g->c[0].req ? mimo_request_prompt_ranks(g->c[0].req) : NULL;
}

int mimo_gen_completion_tokens(const mimo_gen *g) {
  int t = 0;
  for (int i = 0; i < g->n; i++)
    t += g->c[i].n_tokens;
  return t;
}

int mimo_gen_done(const mimo_gen *g) {
  for (int i = 0; i < g->n; i++)
    if (!g->c[i].done)
      return 0;
  return 1;
}

void mimo_gen_delta_clear(mimo_gen_delta *d) {
  d->reasoning.len = d->content.len = 0;
  for (int i = 0; i < d->n_tools; i++) {
    free(d->tools[i].id);
    free(d->tools[i].name);
    mimo_sbuf_free(&d->tools[i].args);
  }
  d->n_tools = 0;
  d->n_lp = 0;
  d->finish = NULL;
  d->stop_index = -1;
}

static void delta_free(mimo_gen_delta *d) {
  mimo_gen_delta_clear(d);
  mimo_sbuf_free(&d->reasoning);
  mimo_sbuf_free(&d->content);
  free(d->tools);
  free(d->lp);
}

int mimo_gen_start(mimo_server *s, const mimo_gen_spec *sp, mimo_gen **out, mimo_api_err *e) {
  *out = NULL;
  mimo_gen *g = calloc(1, sizeof *g);
  if (!g || !(g->c = calloc((size_t)sp->n, sizeof *g->c)) ||
      (sp->n_stop && !(g->stop = calloc((size_t)sp->n_stop, sizeof *g->stop)))) {
    if (g)
      free(g->c);
    free(g);
    return mimo_api_fail(e, 500, NULL, "out of memory");
  }
  g->s = s;
  g->n = sp->n;
  g->n_prompt = sp->n_prompt;
  g->want_lp = sp->sp.logprobs > 0;
  g->min_tokens = sp->sp.min_tokens;
  g->t0 = mimo_now();
  g->stop_of = calloc((size_t)(sp->n_stop ? sp->n_stop : 1), sizeof *g->stop_of);
  for (int i = 0; g->stop_of && i < sp->n_stop; i++)
    if (sp->stop[i][0] && (g->stop[g->n_stop] = strdup(sp->stop[i])))
      g->stop_of[g->n_stop++] = i;
  for (int i = 0; i < sp->n; i++) {
    choice *c = &g->c[i];
    mimo_detok_init(&c->dt, s->tok, sp->skip_special);
    mimo_parse_out_init(&c->po, sp->parse_reasoning, sp->thinking, sp->tools, sp->max_tool_calls);
    c->d.stop_index = -1;
    c->t_last = g->t0;
  }
  const int cache_at = first_block_end(s, sp->prompt, sp->n_prompt);
  for (int i = 0; i < sp->n; i++) {
    mimo_request_params rp = {.prompt = sp->prompt,
                              .n_prompt = sp->n_prompt,
                              .max_tokens = sp->max_tokens,
                              .sampling = sp->sp,
                              .stop_ids = sp->stop_ids,
                              .n_stop_ids = sp->n_stop_ids,
                              .ignore_eos = sp->ignore_eos,
                              .forced = sp->forced,
                              .n_forced = sp->n_forced,
                              .cache_at = cache_at,
                              .cache_salt = sp->cache_salt,
                              /* the choices share the prompt: the first computes its logprobs */
                              .prompt_logprobs = sp->prompt_logprobs && i == 0,
                              .prompt_top_logprobs = sp->prompt_top,
                              .embeds = sp->embeds,
                              .n_embeds = sp->n_embeds};
    if (sp->grammar && (!s->gvocab || mimo_grammar_constraint(s->gvocab, sp->grammar, sp->grammar_after,
                                                             &rp.constraint) != MIMO_OK)) {
      mimo_api_fail(e, 500, NULL, "structured outputs: %s", s->gvocab ? mimo_errmsg() : "no token index");
      mimo_gen_free(g);
      return -1;
    }
    if (sp->think_budget >= 0 && sp->thinking &&
        mimo_think_budget_constraint(sp->think_end, sp->think_budget, rp.constraint, &rp.constraint) != MIMO_OK) {
      mimo_api_fail(e, 500, NULL, "thinking budget: %s", mimo_errmsg());
      mimo_gen_free(g);
      return -1;
    }
    rp.sampling.seed = sp->sp.seed + (uint64_t)i;
    mimo_status st = mimo_engine_submit(s->engine, &rp, &g->c[i].req);
    if (st != MIMO_OK) {
      mimo_api_fail_status(e, st, i == 0 ? NULL : "n");
      mimo_gen_free(g);
      return -1;
    }
  }
  *out = g;
  return 0;
}

static void push_parsed(choice *c, const char *t, size_t n) {
  if (n)
    mimo_parse_out_feed(&c->po, t, n, &c->d);
}

/* Longest suffix of the held text that is a proper prefix of a stop string. */
static size_t partial_stop(const mimo_gen *g, const mimo_sbuf *h) {
  size_t best = 0;
  for (int k = 0; k < g->n_stop; k++) {
    size_t L = strlen(g->stop[k]);
    for (size_t m = L - 1 < h->len ? L - 1 : h->len; m > best; m--)
      if (memcmp(h->p + h->len - m, g->stop[k], m) == 0) {
        best = m;
        break;
      }
  }
  return best;
}

static void end_choice(mimo_gen *g, choice *c, const char *reason) {
  mimo_parse_out_finish(&c->po, &c->d);
  if (strcmp(reason, "stop") == 0 && c->po.n_calls > 0)
    reason = "tool_calls";
  c->d.finish = reason;
  c->done = 1;
  if (g->s->metrics) {
    mimo_metrics_finish(g->s->metrics, reason);
    mimo_metrics_observe(g->s->metrics, MIMO_HIST_E2E, mimo_now() - g->t0);
  }
}

/* Feeds detokenized text through the stop-string filter. Returns 1 when a stop string ended the choice. */
static int feed_text(mimo_gen *g, choice *c, const char *t, size_t n, int final) {
  if (!g->n_stop || c->n_tokens < g->min_tokens) {
    if (c->hold.len) { /* (held before: released as it is) */
      push_parsed(c, c->hold.p, c->hold.len);
      c->hold.len = 0;
    }
    push_parsed(c, t, n);
    return 0;
  }
  mimo_sbuf_put(&c->hold, t, n);
  const char *first = NULL;
  int which = -1;
  for (int k = 0; k < g->n_stop; k++) {
    const char *p = memmem(c->hold.p ? c->hold.p : "", c->hold.len, g->stop[k], strlen(g->stop[k]));
    if (p && (!first || p < first)) {
      first = p;
      which = g->stop_of[k];
    }
  }
  if (first) {
    push_parsed(c, c->hold.p, (size_t)(first - c->hold.p));
    c->hold.len = 0;
    mimo_request_cancel(c->req);
    end_choice(g, c, "stop");
    c->d.stop_index = which;
    return 1;
  }
  size_t keep = final ? 0 : partial_stop(g, &c->hold);
  push_parsed(c, c->hold.p, c->hold.len - keep);
  mimo_sbuf_consume(&c->hold, c->hold.len - keep);
  return 0;
}

static void process(mimo_gen *g, int i, const mimo_token_event *ev, int n) {
  choice *c = &g->c[i];
  for (int k = 0; k < n && !c->done; k++) {
    const mimo_token_event *e = &ev[k];
    if (e->token >= 0) {
      c->n_tokens++;
      double now = mimo_now();
      if (g->s->metrics) {
        if (!g->first_seen)
          mimo_metrics_observe(g->s->metrics, MIMO_HIST_TTFT, now - g->t0);
        else if (i == 0)
          mimo_metrics_observe(g->s->metrics, MIMO_HIST_ITL, now - c->t_last);
      }
      g->first_seen = 1;
      c->t_last = now;
      if (g->want_lp) {
        mimo_gen_delta *d = &c->d;
        if (d->n_lp == d->cap_lp) {
          int cap = d->cap_lp ? d->cap_lp * 2 : 16;
          mimo_gen_lp *p = realloc(d->lp, (size_t)cap * sizeof *p);
          if (p) {
            d->lp = p;
            d->cap_lp = cap;
          }
        }
        if (d->n_lp < d->cap_lp)
          d->lp[d->n_lp++] = (mimo_gen_lp){e->token, e->info};
      }
      const char *t;
      size_t len;
      if (mimo_detok_push(&c->dt, e->token, &t, &len) == MIMO_OK && feed_text(g, c, t, len, 0))
        break;
      if (c->po.calls_done) { /* the last tool call allowed ended: the output ends with it */
        mimo_request_cancel(c->req);
        end_choice(g, c, "tool_calls");
        break;
      }
    }
    if (e->finish) {
      const char *t;
      size_t len;
      if (mimo_detok_flush(&c->dt, &t, &len) == MIMO_OK && feed_text(g, c, t, len, 1))
        break;
      static const char *reasons[] = {"stop", "stop", "length", "abort", "error"};
      end_choice(g, c, reasons[e->finish]);
    }
  }
}

int mimo_gen_pump(mimo_gen *g, int timeout_ms) {
  mimo_token_event ev[EV_BATCH];
  int changed = 0, waited = 0;
  for (int i = 0; i < g->n; i++) {
    choice *c = &g->c[i];
    for (;;) {
      if (c->done)
        break;
      /* block on the first unfinished choice only; the others share its steps */
      int n = mimo_request_poll(c->req, ev, EV_BATCH, waited ? 0 : timeout_ms);
      waited = 1;
      if (!n)
        break;
      changed = 1;
      process(g, i, ev, n);
      if (n < EV_BATCH)
        break;
    }
  }
  return changed;
}

void mimo_gen_cancel(mimo_gen *g) {
  for (int i = 0; i < g->n; i++)
    if (g->c[i].req)
      mimo_request_cancel(g->c[i].req);
}

void mimo_gen_free(mimo_gen *g) {
  if (!g)
    return;
  for (int i = 0; i < g->n; i++) {
    choice *c = &g->c[i];
    mimo_request_release(c->req);
    mimo_detok_free(&c->dt);
    mimo_sbuf_free(&c->hold);
    mimo_parse_out_free(&c->po);
    delta_free(&c->d);
  }
  for (int i = 0; i < g->n_stop; i++)
    free(g->stop[i]);
  free(g->stop_of);
  free(g->stop);
  free(g->c);
  free(g);
}
