/* What a step's sampling gets and gives back, row by row: the job (engine/sampler.c fills it from a sequence's
 * parameters and state) and the chosen token's log-probabilities. The host implementation of a job is
 * mimo_sample_logits (engine/sampler.h); a backend's optional sample op computes the same where the logits are. */
#ifndef MIMO_BACKEND_SAMPLING_H
#define MIMO_BACKEND_SAMPLING_H
#include <stdbool.h>

#define MIMO_MAX_LOGPROBS 20 /* OpenAI's cap for top_logprobs */

typedef struct mimo_token_logprob {
  int token;
  float logprob;
} mimo_token_logprob;

typedef struct mimo_sample_info {
  float logprob; /* of the chosen token */
  int n_top;     /* entries in top, <= the job's logprobs */
  mimo_token_logprob top[MIMO_MAX_LOGPROBS]; /* best first, ties -> lowest id */
} mimo_sample_info;

/* One row: the steps of engine/sampler.h with everything random already drawn. */
typedef struct mimo_sample_job {
  bool skip;                /* no token wanted from this row (a prompt not fed to its end, a forced token) */
  float temperature;        /* < 1e-5: greedy */
  float top_p, min_p;
  float repetition_penalty, presence_penalty, frequency_penalty;
  int top_k;                /* <= 0: off */
  int limit;                /* ids >= limit are never sampled (1..vocab) */
  double u;                 /* uniform in [0, 1) for the draw (unused when greedy) */
  /* Penalised ids: pen[2j] an id below limit seen in the prompt or the output, pen[2j+1] its count in the
   * output (0: prompt only). Unique ids; n_pen = 0 when every penalty is neutral. */
  int n_pen;
  const int *pen;
  int logprobs;             /* alternatives to report, 0..MIMO_MAX_LOGPROBS; 0 and no info wanted: none */
  const unsigned *allow;    /* NULL, or a bit per id: only these may be sampled (structured outputs); the raw
                             * logprobs are taken before it, as before the penalties */
  bool processed_logprobs;  /* see mimo_sampling_params */
  /* Added to the logits after the raw logprobs are taken, before the penalties (OpenAI's logit_bias, vLLM's order);
   * then the ban ids are -inf (vLLM's min_tokens: the stop ids until enough tokens came). A job with either is
   * sampled on the host. */
  int n_bias;
  const int *bias_ids;
  const float *bias_vals;
  int n_ban;
  const int *ban;
} mimo_sample_job;
#endif
