/* The warm-up forward passes (engine.h, mimo_engine_opts.warmup), on the engine thread before the first request. */
#include <stdlib.h>

#include "core/log.h"
#include "core/threads.h"
#include "engine/engine_internal.h"

/* engine.h, mimo_engine_opts.warmup: a prompt of n tokens, one decode step, a prompt of min(n, 16) tokens on a
 * second sequence (a request's usual sizes take other kernels and library paths than n tokens or one), then one
 * decode step of both sequences together (the batched attention). */
mimo_status mimo_engine_warm_up(mimo_engine *e, int n) {
  mimo_model *m = e->model;
  if (n > e->o.max_model_len - 1)
    n = e->o.max_model_len - 1;
  if (n < 1)
    return MIMO_OK;
  mimo_kv_seq *seq[2] = {NULL, NULL};
  int *toks = malloc((size_t)n * sizeof *toks);
  mimo_status st = !toks ? mimo_errf(MIMO_E_NOMEM, "warm-up buffers") : mimo_kv_seq_init(&seq[0], &m->cfg);
  if (st == MIMO_OK)
    st = mimo_kv_seq_init(&seq[1], &m->cfg);
  for (int i = 0; st == MIMO_OK && i < n; i++)
    toks[i] = (int)((i * 7919L + 11) % e->vocab);
  const double t0 = mimo_now();
  const int n2 = n < 16 ? n : 16, ones[2] = {1, 1};
  /* the sampling a request meets: one greedy row, one with every filter and logprobs */
  int sampled[2];
  mimo_sample_info infos[2];
  const mimo_sample_job jobs[2] = {
      {.temperature = 0, .top_p = 1, .repetition_penalty = 1, .limit = e->vocab},
      {.temperature = 0.8f, .top_p = 0.9f, .min_p = 0.01f, .repetition_penalty = 1, .top_k = 50, .limit = e->vocab,
       .u = 0.5, .logprobs = 2}};
  const struct { int n_seqs, first; const int *n_tokens; } passes[4] = {
      {1, 0, &n}, {1, 0, ones}, {1, 1, &n2}, {2, 0, ones}}; /* sequences from seq[first] */
  for (int p = 0; p < 4 && st == MIMO_OK; p++) {
    mimo_batch b = {.n_seqs = passes[p].n_seqs, .seqs = &seq[passes[p].first], .n_tokens = passes[p].n_tokens,
                    .tokens = toks, .jobs = jobs, .sampled = sampled, .infos = infos};
    st = mimo_model_forward(m, &b, NULL);
  }
  if (st == MIMO_OK)
    mimo_info("engine: warm-up forward (%d tokens, 1, %d, then 2 sequences of 1) took %.0f ms", n, n2,
              (mimo_now() - t0) * 1e3);
  mimo_kv_seq_free(seq[0]);
  mimo_kv_seq_free(seq[1]);
  free(toks);
  return st;
}

