/* The engine thread (engine.h): admission, prefix-cache lookups and entries, the steps of continuous batching
 * (decode tokens first, then prompt chunks), sampling and delivery, preemption when KV memory runs short. */
#include "engine/engine.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/log.h"
#include "core/threads.h"
#include "engine/engine_internal.h"
#include "engine/prefix_cache.h"

/* Appends an event; tells the waiting caller. */
static void publish(mimo_request *r, int token, const mimo_sample_info *info, mimo_finish fin) {
  pthread_mutex_lock(&r->mu);
  if (r->n_ev == r->cap_ev) {
    int cap = r->cap_ev ? r->cap_ev * 2 : 16;
    mimo_token_event *ev = realloc(r->ev, (size_t)cap * sizeof *ev);
    if (!ev) { /* out of memory: end the request rather than lose its events silently */
      fin = MIMO_FINISH_ERROR;
      if (r->n_ev > 0)
        r->ev[r->n_ev - 1].finish = fin;
      pthread_mutex_unlock(&r->mu);
      return;
    }
    r->ev = ev;
    r->cap_ev = cap;
  }
  mimo_token_event *e = &r->ev[r->n_ev++];
  memset(e, 0, sizeof *e);
  e->token = token;
  if (info)
    e->info = *info;
  e->finish = fin;
  pthread_cond_broadcast(&r->cv);
  pthread_mutex_unlock(&r->mu);
  if (r->notify)
    r->notify(r->notify_ctx);
}


/* Memory ran short: the least recently used half of the prefix cache goes (repeated, it empties the cache in a few
 * steps, before anything running is preempted). Returns how many entries went. */
static int shed_prefix_cache(mimo_engine *e) {
  const int n = (mimo_prefix_cache_entries(e->pc) + 1) / 2;
  for (int i = 0; i < n; i++)
    mimo_prefix_cache_evict(e->pc);
  return n;
}

/* r's cache as it stands (r->kv->len positions of r->prompt) into the prefix cache, as a copy. Memory that does not
 * suffice for the copy is not worth a preemption: the oldest entry goes instead. */
static void snapshot(mimo_engine *e, mimo_request *r) {
  mimo_kv_seq *copy = NULL;
  mimo_status st = mimo_kv_seq_init(&copy, &e->model->cfg);
  if (st == MIMO_OK)
    st = mimo_model_kv_fork(e->model, copy, r->kv, r->kv->len);
  if (st == MIMO_OK && e->spec_k && (copy->attach = mimo_spec_hist_copy(r))) /* the MTP's context, for a hit */
    copy->attach_free = mimo_spec_hist_free;
  if (st == MIMO_OK) {
    st = mimo_prefix_cache_put(e->pc, r->salt, mimo_request_pc_tokens(r), copy); /* frees the copy when it fails */
  } else {
    mimo_kv_seq_free(copy);
  }
  if (st != MIMO_OK) {
    mimo_info("engine: prefix cache entry of %d tokens not kept: %s", r->kv->len, mimo_errmsg());
    mimo_prefix_cache_evict(e->pc);
    return;
  }
  r->snap_at = r->kv->len;
}

/* Ends a running request: frees its KV (or keeps it as a prefix-cache entry) and sampler at once, drops the engine's
 * reference. */
static void finish(mimo_engine *e, int slot, int token, const mimo_sample_info *info, mimo_finish fin) {
  mimo_request *r = e->running[slot];
  e->hold_admission = false; /* its memory comes back */
  mimo_spec_drop(r);
  /* positions past the recorded tokens (drafts after the one that ended it) are not the entry's */
  const int recorded = r->n_prompt + r->generated;
  bool kv_ok = !r->kv || r->kv->len <= recorded || mimo_model_kv_truncate(e->model, r->kv, recorded) == MIMO_OK;
  /* what it computed is valid however it ended, but after an error of the step it may not have been */
  if (e->pc && r->kv && kv_ok && fin != MIMO_FINISH_ERROR && !r->out_lost && r->kv->len >= PREFIX_MIN &&
      r->kv->len > r->snap_at) {
    if (r->hist && !r->kv->attach) { /* the MTP's context goes with the entry */
      r->kv->attach = r->hist;
      r->kv->attach_free = mimo_spec_hist_free;
      r->hist = NULL;
    }
    if (mimo_prefix_cache_put(e->pc, r->salt, mimo_request_pc_tokens(r), r->kv) != MIMO_OK)
      mimo_warn("engine: prefix cache entry of a finished request not kept: %s", mimo_errmsg());
  } else {
    mimo_kv_seq_free(r->kv);
  }
  r->kv = NULL;
  mimo_sampler_free(r->smp);
  r->smp = NULL;
  publish(r, token, info, fin);
  e->running[slot] = e->running[--e->n_running];
  mimo_request_unref(r);
}

static mimo_status admit(mimo_engine *e, mimo_request *r) {
  r->admitted = ++e->admissions;
  if (r->mock >= 0)
    return MIMO_OK;
  MIMO_TRY(mimo_kv_seq_init(&r->kv, &e->model->cfg));
  r->snap_at = 0;
  if (e->pc && !(r->plp && !r->plp_done)) { /* (prompt logprobs need every position's logits) */
    /* at least the last token is computed: its logits are what the request samples from */
    int m = 0;
    mimo_kv_seq *hit = mimo_prefix_cache_find(e->pc, r->salt, mimo_request_pc_tokens(r), r->n_feed, r->n_feed - 1, &m);
    mimo_status st = hit ? mimo_model_kv_fork(e->model, r->kv, hit, m) : MIMO_OK;
    if (st == MIMO_OK && hit && e->spec_k) /* the hidden states the entry kept, for the MTP cache made next */
      mimo_spec_hist_from(e, r, hit->attach, m);
    if (st != MIMO_OK) { /* no room for the copy: compute the prompt, and make room */
      mimo_info("engine: prefix cache hit of %d tokens not used: %s", m, mimo_errmsg());
      shed_prefix_cache(e);
      mimo_kv_seq_free(r->kv);
      r->kv = NULL;
      MIMO_TRY(mimo_kv_seq_init(&r->kv, &e->model->cfg));
      m = 0;
    }
    r->fed = r->snap_at = m;
    atomic_store(&r->n_cached, m < r->n_prompt ? m : r->n_prompt);
    __atomic_fetch_add(&e->stats.prefix_cache_queries_total, r->n_feed, __ATOMIC_RELAXED);
    __atomic_fetch_add(&e->stats.prefix_cache_hits_total, m, __ATOMIC_RELAXED);
  }
  if (r->smp) /* re-admitted after a preemption: the sampler kept its state */
    return MIMO_OK;
  MIMO_TRY(mimo_sampler_init(&r->smp, &r->sp, e->vocab));
  mimo_sampler_add_prompt(r->smp, r->prompt, r->n_prompt);
  return MIMO_OK;
}

static int is_stop(const mimo_request *r, int tok) {
  for (int i = 0; i < r->n_stop; i++)
    if (r->stop[i] == tok)
      return 1;
  return 0;
}

/* Emits output token `tok` for running slot i, or finishes the request. Returns 1 if it finished. */
static int deliver(mimo_engine *e, int i, int tok, const mimo_sample_info *info) {
  mimo_request *r = e->running[i];
  int forced = r->generated < r->n_forced || r->mock >= 0; /* scripts end by themselves */
  if (!forced && is_stop(r, tok)) {
    finish(e, i, -1, NULL, MIMO_FINISH_STOP);
    return 1;
  }
  r->generated++;
  r->next_token = tok;
  if (r->mock < 0 && !r->out_lost) { /* after the prompt, for a recompute after a preemption */
    const int at = r->n_prompt + r->generated - 1;
    if (at == r->cap_tokens) {
      int *t = realloc(r->prompt, (size_t)2 * r->cap_tokens * sizeof *t);
      if (t)
        r->prompt = t;
      int *k = t && r->key ? realloc(r->key, (size_t)2 * r->cap_tokens * sizeof *k) : NULL;
      if (k)
        r->key = k;
      if (t && (k || !r->key))
        r->cap_tokens *= 2;
    }
    if (at < r->cap_tokens) {
      r->prompt[at] = tok;
      if (r->key)
        r->key[at] = tok;
    } else {
      r->out_lost = true;
    }
  }
  __atomic_fetch_add(&e->stats.generation_tokens_total, 1, __ATOMIC_RELAXED); /* read by other threads */
  int len_hit = r->generated >= r->max_tokens || r->n_prompt + r->generated >= e->o.max_model_len;
  if (len_hit) {
    finish(e, i, tok, info, MIMO_FINISH_LENGTH);
    return 1;
  }
  publish(r, tok, info, MIMO_FINISH_NONE);
  return 0;
}

/* Mock step: every running request emits its next scripted token. */
static void mock_step(mimo_engine *e) {
  for (int i = e->n_running - 1; i >= 0; i--) {
    mimo_request *r = e->running[i];
    int m = r->mock, pos = r->generated;
    /* Output = forced prefix (unless the script already starts with it) + script. */
    int pre = r->n_forced;
    if (pre && pre <= e->o.mock_len[m] && memcmp(e->o.mock_ids[m], r->forced, (size_t)pre * sizeof(int)) == 0)
      pre = 0;
    if (pos >= pre + e->o.mock_len[m]) {
      finish(e, i, -1, NULL, MIMO_FINISH_STOP);
      continue;
    }
    int tok = pos < pre ? r->forced[pos] : e->o.mock_ids[m][pos - pre];
    deliver(e, i, tok, NULL);
  }
}

/* Gives request slot's KV memory back and queues it first among the waiting, to be recomputed (prompt and outputs
 * so far fed again) once a running request finishes; vLLM's preemption by recompute. */
static void preempt(mimo_engine *e, int slot) {
  mimo_request *r = e->running[slot];
  r->n_feed = r->n_prompt + r->generated;
  r->fed = 0;
  mimo_spec_drop(r);
  mimo_kv_seq_free(r->kv);
  r->kv = NULL;
  e->running[slot] = e->running[--e->n_running];
  pthread_mutex_lock(&e->mu);
  r->next_waiting = e->wait_head;
  e->wait_head = r;
  if (!e->wait_tail)
    e->wait_tail = r;
  e->n_waiting++;
  pthread_mutex_unlock(&e->mu);
  e->hold_admission = true;
  __atomic_fetch_add(&e->stats.preemptions_total, 1, __ATOMIC_RELAXED);
}

/* A step that did not fit in memory (the KV reservation or its buffers, before anything ran): preempt the youngest
 * running request; one running alone that does not fit fails, with the reason. */
static void kv_full(mimo_engine *e) {
  char why[512];
  snprintf(why, sizeof why, "%s", mimo_errmsg());
  if (e->pc && mimo_prefix_cache_entries(e->pc)) { /* cached prefixes give their memory back first */
    const int had = mimo_prefix_cache_entries(e->pc);
    mimo_info("engine: out of KV memory (%s): %d of %d prefix cache entries freed", why, shed_prefix_cache(e), had);
    return;
  }
  int victim = -1;
  for (int i = 0; i < e->n_running; i++) {
    const mimo_request *r = e->running[i];
    if (r->kv && !r->out_lost && (victim < 0 || r->admitted > e->running[victim]->admitted))
      victim = i;
  }
  if (e->n_running > 1 && victim >= 0) {
    mimo_warn("engine: out of KV memory (%s): the youngest request gives its memory back and waits to be "
              "recomputed (%d tokens)", why, e->running[victim]->n_prompt + e->running[victim]->generated);
    preempt(e, victim);
    return;
  }
  /* nothing to preempt: the youngest request fails */
  int slot = victim >= 0 ? victim : e->n_running - 1;
  mimo_errf(MIMO_E_NOMEM, "out of KV memory: %s", why);
  mimo_warn("engine: %s; the request fails", mimo_errmsg());
  finish(e, slot, -1, NULL, MIMO_FINISH_ERROR);
}

/* A step's forward failed for r (in running slot `slot`): the request ends with an error, and an error no later step
 * recovers from (a GPU's sticky error, a lost tensor-parallel link) marks the engine broken. */
static void step_failed(mimo_engine *e, int slot, mimo_status st) {
  if ((st == MIMO_E_CUDA || st == MIMO_E_NCCL || st == MIMO_E_IO) && !atomic_load(&e->broken)) {
    pthread_mutex_lock(&e->mu);
    snprintf(e->broken_why, sizeof e->broken_why, "%s", mimo_errmsg());
    pthread_mutex_unlock(&e->mu);
    atomic_store(&e->broken, 1);
    mimo_warn("engine: the model can no longer run (%s); new requests are refused", e->broken_why);
  }
  mimo_warn("engine step failed: %s", mimo_errmsg());
  finish(e, slot, -1, NULL, MIMO_FINISH_ERROR);
}

static int slot_of(const mimo_engine *e, const mimo_request *r) {
  for (int i = 0; i < e->n_running; i++)
    if (e->running[i] == r)
      return i;
  return -1;
}
int mimo_engine_slot_of(const mimo_engine *e, const mimo_request *r) { return slot_of(e, r); }
void mimo_engine_step_failed(mimo_engine *e, int slot, mimo_status st) { step_failed(e, slot, st); }
void mimo_engine_kv_full(mimo_engine *e) { kv_full(e); }

/* The image rows of r's tokens [from, from + n), which sit at batch position `at` on, appended to the step's list
 * (*count of them so far). False when the list cannot grow. */
static bool chunk_embeds(mimo_engine *e, const mimo_request *r, int from, int n, int at, int *count) {
  if (!r->n_mm)
    return true;
  if (*count + r->n_mm > e->cap_embeds) {
    const int cap = 2 * (*count + r->n_mm);
    mimo_embed_run *p = realloc(e->embeds, (size_t)cap * sizeof *p);
    if (!p)
      return false;
    e->embeds = p;
    e->cap_embeds = cap;
  }
  *count += mimo_embed_runs_slice(r->mm, r->n_mm, from, n, at, e->model->cfg.hidden_size, e->embeds + *count);
  return true;
}

/* r was fed n more of its tokens: counts and prefix-cache entries. True when all it had to feed is in. */
static bool fed_chunk(mimo_engine *e, mimo_request *r, int n) {
  /* a recompute's outputs are not prompt tokens */
  const int left = r->n_prompt - r->fed, new_prompt = left <= 0 ? 0 : left < n ? left : n;
  r->fed += n;
  __atomic_fetch_add(&e->stats.prompt_tokens_total, new_prompt, __ATOMIC_RELAXED);
  if (e->pc && r->fed >= PREFIX_MIN &&
      (r->fed == r->n_feed ? r->fed > r->snap_at
                           : r->fed - r->snap_at >= e->o.prefix_cache_every || r->fed == r->cache_at))
    snapshot(e, r);
  return r->fed >= r->n_feed;
}

/* r's next output: a forced one when due, else tok, sampled from its last row (tok < 0: the sampler failed). */
static void take_token(mimo_engine *e, int slot, mimo_request *r, int tok, const mimo_sample_info *info) {
  if (r->generated < r->n_forced) {
    deliver(e, slot, r->forced[r->generated], NULL);
    return;
  }
  if (tok < 0) {
    mimo_warn("engine: %s", mimo_errmsg());
    finish(e, slot, -1, NULL, MIMO_FINISH_ERROR);
    return;
  }
  if (r->con && !r->con_active) {
    r->con_active = tok == r->con->after_token;
  } else if (r->con && !is_stop(r, tok) && !r->con->accept(r->con, tok)) { /* the mask allowed it: a bug */
    mimo_errf(MIMO_E_INTERNAL, "structured output: token %d does not continue the output's grammar", tok);
    mimo_warn("engine: %s", mimo_errmsg());
    finish(e, slot, -1, NULL, MIMO_FINISH_ERROR);
    return;
  }
  mimo_sampler_accept(r->smp, tok);
  if (deliver(e, slot, tok, r->sp.logprobs ? info : NULL))
    return;
  if (r->con && r->con_active && !r->n_stop && r->con->done(r->con)) /* complete, and nothing may end it */
    finish(e, slot, -1, NULL, MIMO_FINISH_STOP);
}

void mimo_engine_take_token(mimo_engine *e, int slot, mimo_request *r, int tok, const mimo_sample_info *info) {
  take_token(e, slot, r, tok, info);
}
bool mimo_engine_chunk_embeds(mimo_engine *e, const mimo_request *r, int from, int n, int at, int *count) {
  return chunk_embeds(e, r, from, n, at, count);
}
bool mimo_engine_fed_chunk(mimo_engine *e, mimo_request *r, int n) { return fed_chunk(e, r, n); }

/* r's constraint mask for its next token, or NULL when it has none now. */
const unsigned *mimo_engine_constraint_mask(const mimo_engine *e, mimo_request *r) {
  if (!r->con || !r->con_active)
    return NULL;
  memset(r->allow, 0, ((size_t)e->vocab + 31) / 32 * sizeof *r->allow);
  r->con->mask(r->con, r->allow, e->vocab, r->stop, r->n_stop);
  return r->allow;
}

/* The constrained rows' masks (structured outputs: ~0.01-3 ms each at a 152K vocabulary) on the pool. */
typedef struct {
  mimo_engine *e;
  int nb;
} mask_job;
static void mask_rows(void *ctx, long begin, long end) {
  const mask_job *j = ctx;
  for (long k = begin; k < end; k++) /* (a drafting sequence's masks were made with its drafts) */
    if (j->e->jobs[j->e->row_at[k]].allow && j->e->n_logits[k] == 1)
      mimo_engine_constraint_mask(j->e, j->e->batch[k]);
}
static void step_masks(mimo_engine *e, int nb) {
  int n = 0;
  for (int k = 0; k < nb; k++)
    n += e->jobs[e->row_at[k]].allow != NULL && e->n_logits[k] == 1;
  if (!n)
    return;
  mask_job j = {e, nb};
  if (n > 1 && !e->plp_pool && mimo_pool_init(&e->plp_pool, mimo_cpu_count() < 16 ? mimo_cpu_count() : 16) != MIMO_OK)
    e->plp_pool = NULL;
  if (n > 1 && e->plp_pool)
    mimo_parallel_for(e->plp_pool, nb, 1, mask_rows, &j);
  else
    mask_rows(&j, 0, nb);
}

static void model_step(mimo_engine *e) {
  int budget = e->o.max_num_batched_tokens, nb = 0, T = 0;
  /* decoding sequences first: one token each, and the drafts they verify */
  for (int i = 0; i < e->n_running && budget > 0; i++) {
    mimo_request *r = e->running[i];
    if (r->fed < r->n_feed)
      continue;
    const int nd = e->spec_k ? mimo_spec_drafts(e, r, budget) : 0;
    e->batch[nb] = r;
    e->seqs[nb] = r->kv;
    e->n_logits[nb] = 1 + nd;
    e->counts[nb++] = 1 + nd;
    e->tokens[T++] = r->next_token;
    memcpy(e->tokens + T, r->draft, (size_t)nd * sizeof(int));
    T += nd;
    budget -= 1 + nd;
  }
  /* then prompt chunks in the remaining budget; one prompt whose logprobs are wanted runs on its own */
  mimo_request *plp = NULL;
  int plp_n = 0, n_emb = 0;
  for (int i = 0; i < e->n_running && budget > 0; i++) {
    mimo_request *r = e->running[i];
    if (r->fed >= r->n_feed)
      continue;
    const bool wants_plp = r->plp && !r->plp_done;
    if (wants_plp && plp)
      continue;
    int n = r->n_feed - r->fed < budget ? r->n_feed - r->fed : budget;
    if (e->pc && r->cache_at > r->fed && r->cache_at < r->fed + n) /* the chunk ends where an entry is wanted */
      n = r->cache_at - r->fed;
    if (wants_plp) {
      const int most = PLP_FLOATS / e->vocab > 0 ? PLP_FLOATS / e->vocab : 1;
      plp = r;
      plp_n = n < most ? n : most;
      budget -= plp_n;
      continue;
    }
    if (!chunk_embeds(e, r, r->fed, n, T, &n_emb)) {
      mimo_errf(MIMO_E_NOMEM, "image rows of a step");
      step_failed(e, i, MIMO_E_NOMEM);
      break;
    }
    e->batch[nb] = r;
    e->seqs[nb] = r->kv;
    e->n_logits[nb] = 1;
    e->counts[nb++] = n;
    memcpy(e->tokens + T, r->prompt + r->fed, (size_t)n * sizeof(int));
    T += n;
    budget -= n;
  }
  if (!nb) {
    if (plp)
      mimo_engine_prompt_logprobs_step(e, plp, plp_n);
    return;
  }
  /* A row is sampled when its prompt ends in this step or it decodes, and no forced token is due; a sequence that
   * verifies drafts has a row for each (engine_spec.c). Rows of sequence k start at row[k]; its cache at start[k]. */
  int rows = 0, *row = e->row_at, start[nb > 0 ? nb : 1];
  for (int k = 0; k < nb; k++) {
    mimo_request *r = e->batch[k];
    row[k] = rows;
    start[k] = r->kv->len;
    mimo_sample_job *j = &e->jobs[rows];
    rows += e->n_logits[k];
    if (r->fed + e->counts[k] < r->n_feed || r->generated < r->n_forced) {
      memset(j, 0, sizeof *j);
      j->skip = true;
    } else if (e->n_logits[k] > 1) { /* (mimo_spec_drafts made room for the rows' penalties, and their masks) */
      mimo_sampler_jobs_ahead(r->smp, r->draft, e->n_logits[k] - 1, j);
      for (int i = 0; r->con && r->con_active && i < e->n_logits[k]; i++)
        j[i].allow = r->allow_rows + (size_t)i * (((size_t)e->vocab + 31) / 32);
    } else { /* drawn below once the step ran: a step skipped for memory leaves the seeded draws as they were */
      mimo_sampler_job_peek(r->smp, j);
      j->allow = r->con && r->con_active && (!r->con->masks || r->con->masks(r->con)) ? r->allow : NULL;
    }
  }
  step_masks(e, nb);
  mimo_batch b = {.n_seqs = nb, .seqs = e->seqs, .n_tokens = e->counts, .tokens = e->tokens, .all_logits = 0,
                  .jobs = e->jobs, .sampled = e->sampled, .infos = e->infos, .embeds = e->embeds,
                  .n_embeds = n_emb, .n_logits = e->spec_k ? e->n_logits : NULL,
                  .hidden_out = e->spec_k ? e->hidden : NULL};
  const double t_fwd = mimo_now();
  mimo_status st = mimo_model_forward(e->model, &b, NULL);
  const double fwd_s = mimo_now() - t_fwd;
  pthread_mutex_lock(&e->mu); /* (a double: read under the lock by mimo_engine_stats_get) */
  e->stats.forward_seconds += fwd_s;
  pthread_mutex_unlock(&e->mu);
  if (st == MIMO_E_NOMEM && e->model->step_skipped) { /* nothing ran: make room, the next step tries again */
    kv_full(e);
    return;
  }
  __atomic_fetch_add(&e->stats.steps, 1, __ATOMIC_RELAXED);
  if (st == MIMO_OK && e->spec_k) /* before any entry is taken from these caches */
    mimo_spec_keep_hidden(e, nb, start);
  for (int k = 0; k < nb; k++) {
    mimo_request *r = e->batch[k];
    const int slot = slot_of(e, r);
    if (st != MIMO_OK) {
      step_failed(e, slot, st);
      continue;
    }
    if (r->fed < r->n_feed && !fed_chunk(e, r, e->counts[k]))
      continue; /* more to feed; these logits are not needed */
    if (e->n_logits[k] > 1) {
      mimo_spec_emit(e, r, start[k], e->n_logits[k] - 1, row[k]);
    } else {
      if (!e->jobs[row[k]].skip)
        mimo_sampler_advance(r->smp, 1); /* the draw its job took (mimo_sampler_job_peek) */
      take_token(e, slot, r, e->sampled[row[k]], &e->infos[row[k]]);
    }
  }
  if (st == MIMO_OK && e->spec_k) {
    const double t0 = mimo_now();
    mimo_spec_draft(e, nb, start);
    pthread_mutex_lock(&e->mu); /* (a double: read under the lock by mimo_engine_stats_get) */
    e->stats.spec_draft_seconds += mimo_now() - t0;
    pthread_mutex_unlock(&e->mu);
  }
  if (plp && slot_of(e, plp) >= 0)
    mimo_engine_prompt_logprobs_step(e, plp, plp_n);
}

/* KV bytes of the running sequences, published for /metrics. */
static void update_kv_bytes(mimo_engine *e) {
  long b = 0;
  for (int i = 0; i < e->n_running; i++)
    if (e->running[i]->kv)
      b += (long)mimo_kv_bytes(e->running[i]->kv);
  __atomic_store_n(&e->stats.kv_bytes, b, __ATOMIC_RELAXED);
  __atomic_store_n(&e->stats.kv_pool_bytes, (long)mimo_model_kv_pool_bytes(e->model), __ATOMIC_RELAXED);
  if (e->pc) {
    __atomic_store_n(&e->stats.prefix_cache_entries, (long)mimo_prefix_cache_entries(e->pc), __ATOMIC_RELAXED);
    __atomic_store_n(&e->stats.prefix_cache_bytes, (long)mimo_prefix_cache_bytes(e->pc), __ATOMIC_RELAXED);
  }
}

/* Whether r should wait for a running request that is still computing a prefix r shares and will leave in the prefix
 * cache (its whole prompt, or its first message block): r then starts from there instead of computing the same
 * tokens alongside it (the n choices of one request, a burst of requests with one system prompt). */
static bool wait_for_shared_prefix(const mimo_engine *e, mimo_request *r) {
  if (!e->pc || r->mock >= 0 || atomic_load(&r->cancelled))
    return false;
  for (int i = 0; i < e->n_running; i++) {
    const mimo_request *q = e->running[i];
    if (q->mock >= 0 || !q->kv || q->fed >= q->n_feed || q->salt != r->salt)
      continue;
    /* the entry q will make that r could start from, and the tokens r must share for it (mimo_prefix_cache_find) */
    int at = 0, need = 0;
    if (q->n_feed <= r->n_feed)
      at = q->n_feed, need = q->n_feed - 1;
    else if (q->cache_at > q->fed && q->cache_at < r->n_feed)
      at = need = q->cache_at;
    if (at >= PREFIX_MIN &&
        memcmp(mimo_request_pc_tokens(q), mimo_request_pc_tokens(r), (size_t)need * sizeof *r->prompt) == 0)
      return true;
  }
  return false;
}

static void *engine_main(void *arg) {
  mimo_engine *e = arg;
  if (e->warm_n > 0) {
    if (mimo_engine_warm_up(e, e->warm_n) != MIMO_OK) /* the first request will meet the same error and report it */
      mimo_warn("engine: warm-up forward failed: %s", mimo_errmsg());
    atomic_store(&e->warming, 0);
  }
  pthread_mutex_lock(&e->mu);
  for (;;) {
    /* in order, past the ones that wait for a running request's prefix (those keep their place) */
    for (mimo_request *prev = NULL, *r = e->wait_head, *next; !e->stop && r && e->n_running < e->o.max_num_seqs &&
                                                              (!e->hold_admission || !e->n_running);
         r = next) {
      next = r->next_waiting;
      if (wait_for_shared_prefix(e, r)) {
        prev = r;
        continue;
      }
      if (prev)
        prev->next_waiting = next;
      else
        e->wait_head = next;
      if (e->wait_tail == r)
        e->wait_tail = prev;
      e->n_waiting--;
      e->running[e->n_running++] = r;
      if (admit(e, r) != MIMO_OK) {
        mimo_warn("cannot admit request: %s", mimo_errmsg());
        finish(e, e->n_running - 1, -1, NULL, MIMO_FINISH_ERROR);
      }
    }
    if (e->stop)
      break;
    if (!e->n_running) {
      e->stats.requests_running = 0;
      __atomic_store_n(&e->stats.kv_bytes, 0, __ATOMIC_RELAXED);
      pthread_cond_wait(&e->cv, &e->mu);
      continue;
    }
    e->stats.requests_running = e->n_running;
    e->stats.requests_waiting = e->n_waiting;
    pthread_mutex_unlock(&e->mu);
    for (int i = e->n_running - 1; i >= 0; i--)
      if (atomic_load(&e->running[i]->cancelled))
        finish(e, i, -1, NULL, MIMO_FINISH_CANCELLED);
    if (e->model) {
      model_step(e);
      update_kv_bytes(e);
    } else {
      mock_step(e);
    }
    pthread_mutex_lock(&e->mu);
  }
  /* shutdown: end everything still queued or running */
  while (e->n_running)
    finish(e, e->n_running - 1, -1, NULL, MIMO_FINISH_CANCELLED);
  while (e->wait_head) {
    mimo_request *r = e->wait_head;
    e->wait_head = r->next_waiting;
    publish(r, -1, NULL, MIMO_FINISH_CANCELLED);
    mimo_request_unref(r);
  }
  e->wait_tail = NULL;
  e->n_waiting = 0;
  pthread_mutex_unlock(&e->mu);
  mimo_prefix_cache_free(e->pc); /* before the model, whose pools hold the entries' blocks */
  e->pc = NULL;
  return NULL;
}

mimo_status mimo_engine_init(mimo_engine **out, mimo_model *model, const mimo_engine_opts *o) {
  if (!model && o->n_mock <= 0)
    return mimo_errf(MIMO_E_INVALID, "engine needs a model or mock output");
  mimo_engine *e = calloc(1, sizeof *e);
  if (!e)
    return mimo_errf(MIMO_E_NOMEM, "engine");
  e->model = model;
  e->o = *o;
  if (e->o.max_num_seqs <= 0)
    e->o.max_num_seqs = 16;
  if (e->o.max_num_batched_tokens <= 0)
    e->o.max_num_batched_tokens = 512;
  if (e->o.max_num_batched_tokens < e->o.max_num_seqs)
    e->o.max_num_batched_tokens = e->o.max_num_seqs;
  long model_max = model ? model->cfg.max_position_embeddings : 1L << 20;
  if (e->o.max_model_len <= 0 || e->o.max_model_len > model_max)
    e->o.max_model_len = (int)(model_max < (1L << 30) ? model_max : 1L << 30);
  if (e->o.max_queue <= 0)
    e->o.max_queue = 256;
  e->vocab = model ? model->cfg.vocab_size : 1 << 30;
  if (model) {
    e->n_eos = model->cfg.n_eos;
    memcpy(e->eos, model->cfg.eos_token_id, sizeof e->eos);
  }
  if (e->o.num_speculative_tokens < 0 || e->o.num_speculative_tokens > MIMO_SPEC_MAX) {
    const int k = e->o.num_speculative_tokens;
    free(e);
    return mimo_errf(MIMO_E_INVALID, "%d speculative tokens: 0 to %d", k, MIMO_SPEC_MAX);
  }
  e->spec_k = model ? e->o.num_speculative_tokens : 0;
  e->stats.spec_k = e->spec_k;
  /* rows of logits: one per sequence, and one per draft */
  int S = e->o.max_num_seqs, B = e->o.max_num_batched_tokens, R = S * (1 + e->spec_k);
  e->running = calloc((size_t)S, sizeof *e->running);
  e->batch = calloc((size_t)S, sizeof *e->batch);
  e->seqs = calloc((size_t)S, sizeof *e->seqs);
  e->counts = calloc((size_t)S, sizeof *e->counts);
  e->n_logits = calloc((size_t)S, sizeof *e->n_logits);
  e->row_at = calloc((size_t)S, sizeof *e->row_at);
  e->tokens = calloc((size_t)B, sizeof *e->tokens);
  e->jobs = calloc((size_t)R, sizeof *e->jobs);
  e->sampled = calloc((size_t)R, sizeof *e->sampled);
  e->infos = calloc((size_t)R, sizeof *e->infos);
  pthread_mutex_init(&e->mu, NULL);
  pthread_cond_init(&e->cv, NULL);
  if (!e->running || !e->batch || !e->seqs || !e->counts || !e->n_logits || !e->row_at || !e->tokens || !e->jobs ||
      !e->sampled || !e->infos) {
    mimo_engine_free(e);
    return mimo_errf(MIMO_E_NOMEM, "engine buffers for %d sequences", S);
  }
  if (e->spec_k) {
    mimo_status st = mimo_spec_init(e);
    if (st != MIMO_OK) {
      mimo_engine_free(e);
      return st;
    }
  }
  if (model) {
    const mimo_backend *be = mimo_model_backend(model, 0);
    const int nb = e->o.max_num_batched_tokens < 512 ? e->o.max_num_batched_tokens : 512;
    e->warm_n = e->o.warmup > 0 ? e->o.warmup : e->o.warmup == 0 && be && be->download ? nb : 0;
  }
  if (model && e->o.prefix_cache_entries > 0) {
    if (e->o.prefix_cache_every <= 0)
      e->o.prefix_cache_every = 2048;
    mimo_status st = mimo_prefix_cache_new(&e->pc, e->o.prefix_cache_entries);
    if (st != MIMO_OK) {
      mimo_engine_free(e);
      return st;
    }
  }
  atomic_init(&e->warming, e->warm_n > 0);
  if (pthread_create(&e->thread, NULL, engine_main, e) != 0) {
    mimo_engine_free(e);
    return mimo_errf(MIMO_E_INTERNAL, "cannot start the engine thread");
  }
  e->started = 1;
  *out = e;
  return MIMO_OK;
}

void mimo_engine_shutdown(mimo_engine *e) {
  if (!e || !e->started)
    return;
  pthread_mutex_lock(&e->mu);
  e->stop = 1;
  pthread_cond_broadcast(&e->cv);
  pthread_mutex_unlock(&e->mu);
  pthread_join(e->thread, NULL);
  e->started = 0;
}

void mimo_engine_free(mimo_engine *e) {
  if (!e)
    return;
  mimo_engine_shutdown(e);
  mimo_prefix_cache_free(e->pc); /* set only when the engine thread never ran */
  pthread_mutex_destroy(&e->mu);
  pthread_cond_destroy(&e->cv);
  free(e->running);
  free(e->batch);
  free(e->seqs);
  free(e->counts);
  free(e->n_logits);
  free(e->row_at);
  mimo_spec_free(e);
  free(e->tokens);
  free(e->jobs);
  free(e->sampled);
  free(e->infos);
  free(e->embeds);
  free(e->plp_logits);
  mimo_pool_free(e->plp_pool);
  free(e);
}
