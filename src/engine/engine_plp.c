/* Prompt logprobs in the engine (engine.h, prompt_logprobs; vLLM's prompt_logprobs and echo with logprobs): a chunk
 * of such a request runs on its own with every row's logits on the host. */
#include <stdlib.h>

#include "core/threads.h"
#include "engine/engine_internal.h"

/* Rows [begin, end) of a prompt-logprobs chunk: the logprob of the prompt token after each. */
typedef struct {
  mimo_request *r;
  const float *logits;
  int V;
} plp_rows;
static void plp_rows_run(void *ctx, long begin, long end) {
  const plp_rows *p = ctx;
  mimo_request *r = p->r;
  for (long i = begin; i < end; i++) {
    const int next = r->fed + (int)i + 1;
    if (next >= r->n_prompt)
      continue;
    float *x = (float *)p->logits + (size_t)i * p->V;
    mimo_logprobs_of(x, p->V, r->prompt[next], r->plp_top, &r->plp[next]); /* (sanitizes x) */
    int above = 0;
    for (int v = 0; v < p->V; v++)
      above += x[v] > x[r->prompt[next]];
    r->plp_rank[next] = 1 + above;
  }
}

/* A chunk of n prompt tokens of a request that wants its prompt's logprobs, on its own: every row of logits comes
 * to the host, each gives the logprob of the prompt token after it, and the last one of the prompt is sampled
 * there. */
void mimo_engine_prompt_logprobs_step(mimo_engine *e, mimo_request *r, int n) {
  const int V = e->vocab;
  if (e->plp_rows < n) {
    float *p = realloc(e->plp_logits, (size_t)n * V * sizeof *p);
    if (!p) {
      mimo_errf(MIMO_E_NOMEM, "host memory for %d rows of prompt logprobs", n);
      mimo_engine_step_failed(e, mimo_engine_slot_of(e, r), MIMO_E_NOMEM);
      return;
    }
    e->plp_logits = p;
    e->plp_rows = n;
  }
  int n_emb = 0;
  if (!mimo_engine_chunk_embeds(e, r, r->fed, n, 0, &n_emb)) {
    mimo_errf(MIMO_E_NOMEM, "image rows of a step");
    mimo_engine_step_failed(e, mimo_engine_slot_of(e, r), MIMO_E_NOMEM);
    return;
  }
  const int start = r->kv->len;
  mimo_batch b = {.n_seqs = 1, .seqs = &r->kv, .n_tokens = &n, .tokens = r->prompt + r->fed, .all_logits = 1,
                  .embeds = e->embeds, .n_embeds = n_emb, .hidden_out = e->spec_k ? e->hidden : NULL};
  const mimo_status st = mimo_model_forward(e->model, &b, e->plp_logits);
  if (st == MIMO_E_NOMEM && e->model->step_skipped) {
    mimo_engine_kv_full(e);
    return;
  }
  __atomic_fetch_add(&e->stats.steps, 1, __ATOMIC_RELAXED);
  const int slot = mimo_engine_slot_of(e, r);
  if (st != MIMO_OK) {
    mimo_engine_step_failed(e, slot, st);
    return;
  }
  if (e->spec_k) /* the hidden states the MTP cache is made from once the request decodes */
    mimo_spec_keep_rows(e, r, start, n, 0);
  /* a row's log-softmax over 152k logits is ~1 ms of one core: a chunk's rows on a pool */
  if (!e->plp_pool && mimo_pool_init(&e->plp_pool, mimo_cpu_count() < 16 ? mimo_cpu_count() : 16) != MIMO_OK)
    e->plp_pool = NULL;
  plp_rows rows = {r, e->plp_logits, V};
  if (e->plp_pool)
    mimo_parallel_for(e->plp_pool, n, 1, plp_rows_run, &rows);
  else
    plp_rows_run(&rows, 0, n);
  if (!mimo_engine_fed_chunk(e, r, n))
    return;
  r->plp_done = true;
  atomic_store(&r->plp_ready, 1);
  mimo_sample_info info;
  const int tok = r->generated < r->n_forced
                      ? 0
                      : mimo_sampler_sample_masked(r->smp, e->plp_logits + (size_t)(n - 1) * V, mimo_engine_constraint_mask(e, r),
                                                   r->sp.logprobs ? &info : NULL);
  mimo_engine_take_token(e, slot, r, tok, &info);
  if (e->spec_k && mimo_engine_slot_of(e, r) >= 0) { /* its MTP cache now, so that it drafts from its first decoding step on */
    e->batch[0] = r;
    e->counts[0] = n;
    e->n_logits[0] = 1;
    mimo_spec_draft(e, 1, &start);
  }
}
