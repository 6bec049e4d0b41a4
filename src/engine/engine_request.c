/* The callers' side of the engine (engine.h): submitting requests, polling their events, releasing them, and the
 * engine's counters and health as other threads read them. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/num.h"
#include "engine/engine_internal.h"

void mimo_request_unref(mimo_request *r) {
  if (atomic_fetch_sub(&r->refs, 1) != 1)
    return;
  pthread_mutex_destroy(&r->mu);
  pthread_cond_destroy(&r->cv);
  free(r->prompt);
  free(r->stop);
  mimo_spec_hist_free(r->hist);
  free(r->bias_ids);
  free(r->bias_vals);
  free(r->forced);
  free(r->plp);
  free(r->plp_rank);
  if (r->con)
    r->con->free(r->con);
  free(r->allow);
  free(r->allow_rows);
  free(r->mm);
  free(r->mm_rows);
  free(r->key);
  free(r->ev);
  free(r);
}

/* n ids in an array with room for cap (>= n). */
static int *dup_ids(const int *p, int n, int cap) {
  int *d = malloc((size_t)(cap > 0 ? cap : 1) * sizeof *d);
  if (d && n > 0)
    memcpy(d, p, (size_t)n * sizeof *d);
  return d;
}

/* p's image rows into r, checked against the prompt. */
static mimo_status copy_embeds(mimo_request *r, const mimo_request_params *p, int hidden) {
  size_t rows = 0;
  for (int i = 0, end = 0; i < p->n_embeds; i++) {
    const mimo_embed_run *x = &p->embeds[i];
    if (x->n < 1 || x->at < end || x->at > p->n_prompt - x->n || !x->rows)
      return mimo_errf(MIMO_E_INVALID, "image %d: placeholder positions %d..%d are empty, out of order or past the "
                       "prompt's %d tokens", i, x->at, x->at + x->n - 1, p->n_prompt);
    end = x->at + x->n;
    rows += (size_t)x->n;
  }
  r->mm = malloc((size_t)p->n_embeds * sizeof *r->mm);
  r->mm_rows = malloc(rows * hidden * sizeof *r->mm_rows);
  if (!r->mm || !r->mm_rows)
    return mimo_errf(MIMO_E_NOMEM, "image embeddings (%zu rows)", rows);
  size_t off = 0;
  for (int i = 0; i < p->n_embeds; i++) {
    const mimo_embed_run *x = &p->embeds[i];
    memcpy(r->mm_rows + off * hidden, x->rows, (size_t)x->n * hidden * sizeof(float));
    r->mm[i] = (mimo_embed_run){.at = x->at, .n = x->n, .rows = r->mm_rows + off * hidden};
    off += (size_t)x->n;
  }
  r->n_mm = p->n_embeds;
  /* the prefix cache's ids: an image's positions by a hash of its rows (FNV-1a) and the position in it */
  if (!(r->key = malloc((size_t)r->cap_tokens * sizeof *r->key)))
    return mimo_errf(MIMO_E_NOMEM, "request");
  memcpy(r->key, r->prompt, (size_t)r->n_prompt * sizeof *r->key);
  for (int i = 0; i < r->n_mm; i++) {
    const uint64_t h = mimo_fnv1a(MIMO_FNV_BASIS, r->mm[i].rows, (size_t)r->mm[i].n * hidden * sizeof(float));
    for (int j = 0; j < r->mm[i].n; j++)
      r->key[r->mm[i].at + j] = -1 - (int)((h + (uint64_t)j * 0x9e3779b97f4a7c15ull) >> 34);
  }
  return MIMO_OK;
}

static mimo_status submit(mimo_engine *e, const mimo_request_params *p, mimo_request **out, bool *taken);

mimo_status mimo_engine_submit(mimo_engine *e, const mimo_request_params *p, mimo_request **out) {
  bool taken = false; /* the request holds the constraint (and frees it with itself) */
  *out = NULL;
  mimo_status st = submit(e, p, out, &taken);
  if (st != MIMO_OK && p->constraint && !taken)
    p->constraint->free(p->constraint);
  return st;
}

static mimo_status submit(mimo_engine *e, const mimo_request_params *p, mimo_request **out, bool *taken) {
  *out = NULL;
  char why[512];
  if (!mimo_engine_healthy(e, why, sizeof why))
    return mimo_errf(MIMO_E_INTERNAL, "the model stopped working and needs a restart: %s", why);
  if (p->n_prompt < 1)
    return mimo_errf(MIMO_E_INVALID, "the prompt is empty");
  if (p->max_tokens < 1)
    return mimo_errf(MIMO_E_INVALID, "max_tokens must be at least 1, got %d", p->max_tokens);
  long want = (long)p->n_prompt + p->max_tokens;
  if (want > e->o.max_model_len)
    return mimo_errf(MIMO_E_TOO_LONG,
                     "This model's maximum context length is %d tokens. However, you requested %ld tokens (%d in the "
                     "messages, %d in the completion). Please reduce the length of the messages or completion.",
                     e->o.max_model_len, want, p->n_prompt, p->max_tokens);
  if (e->model)
    for (int i = 0; i < p->n_prompt; i++)
      if (p->prompt[i] < 0 || p->prompt[i] >= e->vocab)
        return mimo_errf(MIMO_E_INVALID, "prompt token %d is outside the vocabulary [0, %d)", p->prompt[i], e->vocab);
  if (p->prompt_logprobs && (p->prompt_top_logprobs < 0 || p->prompt_top_logprobs > MIMO_MAX_LOGPROBS))
    return mimo_errf(MIMO_E_INVALID, "prompt logprobs: %d alternatives asked, 0..%d allowed", p->prompt_top_logprobs,
                     MIMO_MAX_LOGPROBS);
  mimo_sampler *check;
  MIMO_TRY(mimo_sampler_init(&check, &p->sampling, e->model ? e->vocab : 1024));
  mimo_sampler_free(check);
  mimo_request *r = calloc(1, sizeof *r);
  if (!r)
    return mimo_errf(MIMO_E_NOMEM, "request");
  r->cap_tokens = p->n_prompt + (p->max_tokens < 64 ? p->max_tokens : 64);
  r->prompt = dup_ids(p->prompt, p->n_prompt, r->cap_tokens);
  r->n_prompt = p->n_prompt;
  r->n_feed = p->n_prompt;
  r->max_tokens = p->max_tokens;
  r->sp = p->sampling;
  int n_eos = p->ignore_eos ? 0 : e->n_eos;
  r->stop = malloc((size_t)(n_eos + p->n_stop_ids + 1) * sizeof(int));
  if (r->stop) {
    memcpy(r->stop, e->eos, (size_t)n_eos * sizeof(int));
    if (p->n_stop_ids)
      memcpy(r->stop + n_eos, p->stop_ids, (size_t)p->n_stop_ids * sizeof(int));
    r->n_stop = n_eos + p->n_stop_ids;
  }
  /* the sampling's id lists, the request's own (the sampler is made later, on the engine thread) */
  r->sp.min_tokens_ids = r->stop;
  r->sp.n_min_tokens_ids = r->stop ? r->n_stop : 0;
  if (p->sampling.n_bias > 0) {
    r->bias_ids = dup_ids(p->sampling.bias_ids, p->sampling.n_bias, p->sampling.n_bias);
    r->bias_vals = malloc((size_t)p->sampling.n_bias * sizeof *r->bias_vals);
    if (r->bias_vals)
      memcpy(r->bias_vals, p->sampling.bias_vals, (size_t)p->sampling.n_bias * sizeof *r->bias_vals);
    r->sp.bias_ids = r->bias_ids;
    r->sp.bias_vals = r->bias_vals;
  }
  r->forced = dup_ids(p->forced, p->n_forced, p->n_forced);
  r->n_forced = p->n_forced;
  r->cache_at = p->cache_at >= PREFIX_MIN && p->cache_at < p->n_prompt ? p->cache_at : 0;
  r->salt = p->cache_salt;
  r->plp_top = -1;
  if (p->prompt_logprobs) {
    r->plp_top = p->prompt_top_logprobs;
    r->plp = calloc((size_t)p->n_prompt, sizeof *r->plp);
    r->plp_rank = calloc((size_t)p->n_prompt, sizeof *r->plp_rank);
  }
  r->notify = p->notify;
  r->notify_ctx = p->notify_ctx;
  r->mock = -1;
  atomic_init(&r->refs, 2); /* caller + engine */
  atomic_init(&r->cancelled, 0);
  atomic_init(&r->n_cached, 0);
  atomic_init(&r->plp_ready, 0);
  pthread_mutex_init(&r->mu, NULL);
  pthread_cond_init(&r->cv, NULL);
  if (!r->prompt || !r->stop || !r->forced || (p->prompt_logprobs && (!r->plp || !r->plp_rank)) ||
      (p->sampling.n_bias > 0 && (!r->bias_ids || !r->bias_vals))) {
    atomic_store(&r->refs, 1);
    mimo_request_unref(r);
    return mimo_errf(MIMO_E_NOMEM, "request");
  }
  if (p->constraint) { /* the request owns it from here (freed with it) */
    r->allow = malloc(((size_t)e->vocab + 31) / 32 * sizeof *r->allow);
    if (!r->allow) {
      atomic_store(&r->refs, 1);
      mimo_request_unref(r);
      return mimo_errf(MIMO_E_NOMEM, "request");
    }
    r->con = p->constraint;
    r->con_active = p->constraint->after_token < 0;
    *taken = true;
  }
  if (p->n_embeds > 0 && e->model) { /* (the mock engine runs no model: it has no use for them) */
    const mimo_status st = copy_embeds(r, p, e->model->cfg.hidden_size);
    if (st != MIMO_OK) {
      atomic_store(&r->refs, 1);
      mimo_request_unref(r);
      return st;
    }
  }
  pthread_mutex_lock(&e->mu);
  if (e->stop || e->n_waiting >= e->o.max_queue) {
    int stopping = e->stop;
    pthread_mutex_unlock(&e->mu);
    atomic_store(&r->refs, 1);
    mimo_request_unref(r);
    return stopping ? mimo_errf(MIMO_E_BUSY, "the server is shutting down")
                    : mimo_errf(MIMO_E_BUSY, "the request queue is full (%d waiting)", e->o.max_queue);
  }
  if (!e->model)
    r->mock = (int)(e->mock_counter++ % e->o.n_mock);
  if (e->wait_tail)
    e->wait_tail->next_waiting = r;
  else
    e->wait_head = r;
  e->wait_tail = r;
  e->n_waiting++;
  e->stats.requests_total++;
  pthread_cond_signal(&e->cv);
  pthread_mutex_unlock(&e->mu);
  *out = r;
  return MIMO_OK;
}

int mimo_request_poll(mimo_request *r, mimo_token_event *ev, int max, int timeout_ms) {
  pthread_mutex_lock(&r->mu);
  if (!r->n_ev && timeout_ms != 0) {
    if (timeout_ms < 0) {
      while (!r->n_ev)
        pthread_cond_wait(&r->cv, &r->mu);
    } else {
      struct timespec ts;
      clock_gettime(CLOCK_REALTIME, &ts);
      ts.tv_sec += timeout_ms / 1000;
      ts.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
      if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
      }
      while (!r->n_ev)
        if (pthread_cond_timedwait(&r->cv, &r->mu, &ts) != 0)
          break;
    }
  }
  int n = r->n_ev < max ? r->n_ev : max;
  if (n) { /* r->ev is NULL until the first event */
    memcpy(ev, r->ev, (size_t)n * sizeof *ev);
    memmove(r->ev, r->ev + n, (size_t)(r->n_ev - n) * sizeof *ev);
    r->n_ev -= n;
  }
  pthread_mutex_unlock(&r->mu);
  return n;
}

void mimo_request_cancel(mimo_request *r) { atomic_store(&r->cancelled, 1); }

void mimo_request_release(mimo_request *r) {
  if (!r)
    return;
  atomic_store(&r->cancelled, 1); /* a released request is no longer wanted */
  mimo_request_unref(r);
}

int mimo_request_prompt_tokens(const mimo_request *r) { return r->n_prompt; }

int mimo_request_cached_tokens(const mimo_request *r) { return atomic_load(&((mimo_request *)r)->n_cached); }

const mimo_sample_info *mimo_request_prompt_logprobs(const mimo_request *r) {
  return atomic_load(&((mimo_request *)r)->plp_ready) ? r->plp : NULL;
}

const int *mimo_request_prompt_ranks(const mimo_request *r) {
  return atomic_load(&((mimo_request *)r)->plp_ready) ? r->plp_rank : NULL;
}

void mimo_engine_stats_get(mimo_engine *e, mimo_engine_stats *s) {
  pthread_mutex_lock(&e->mu);
  *s = e->stats;
  s->requests_waiting = e->n_waiting;
  s->generation_tokens_total = __atomic_load_n(&e->stats.generation_tokens_total, __ATOMIC_RELAXED);
  s->prompt_tokens_total = __atomic_load_n(&e->stats.prompt_tokens_total, __ATOMIC_RELAXED);
  s->steps = __atomic_load_n(&e->stats.steps, __ATOMIC_RELAXED);
  s->kv_bytes = __atomic_load_n(&e->stats.kv_bytes, __ATOMIC_RELAXED);
  s->kv_pool_bytes = __atomic_load_n(&e->stats.kv_pool_bytes, __ATOMIC_RELAXED);
  s->preemptions_total = __atomic_load_n(&e->stats.preemptions_total, __ATOMIC_RELAXED);
  s->prefix_cache_queries_total = __atomic_load_n(&e->stats.prefix_cache_queries_total, __ATOMIC_RELAXED);
  s->prefix_cache_hits_total = __atomic_load_n(&e->stats.prefix_cache_hits_total, __ATOMIC_RELAXED);
  s->prefix_cache_entries = __atomic_load_n(&e->stats.prefix_cache_entries, __ATOMIC_RELAXED);
  s->prefix_cache_bytes = __atomic_load_n(&e->stats.prefix_cache_bytes, __ATOMIC_RELAXED);
  s->spec_drafts = __atomic_load_n(&e->stats.spec_drafts, __ATOMIC_RELAXED);
  s->spec_draft_tokens = __atomic_load_n(&e->stats.spec_draft_tokens, __ATOMIC_RELAXED);
  s->spec_accepted_tokens = __atomic_load_n(&e->stats.spec_accepted_tokens, __ATOMIC_RELAXED);
  for (int i = 0; i < MIMO_SPEC_MAX; i++)
    s->spec_accepted_per_pos[i] = __atomic_load_n(&e->stats.spec_accepted_per_pos[i], __ATOMIC_RELAXED);
  pthread_mutex_unlock(&e->mu);
}

int mimo_engine_max_model_len(const mimo_engine *e) { return e->o.max_model_len; }

bool mimo_engine_warming(mimo_engine *e) { return atomic_load(&e->warming) != 0; }

bool mimo_engine_healthy(mimo_engine *e, char *why, size_t n) {
  if (!atomic_load(&e->broken))
    return true;
  pthread_mutex_lock(&e->mu);
  snprintf(why, n, "%s", e->broken_why);
  pthread_mutex_unlock(&e->mu);
  return false;
}
