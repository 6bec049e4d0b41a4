/* Token sampling with vLLM semantics, one mimo_sampler per sequence (own RNG and
 * token counts, no global state: same seed + same logits => same tokens).
 *
 * Order of operations in mimo_sampler_sample (as vLLM's V1 sampler):
 *   1. mask: ids >= vocab_limit -> -inf; NaN -> -inf; +inf -> FLT_MAX (an +inf
 *      token is certain; several share the mass equally)
 *   2. raw logprobs are taken here (if asked for); then logit_bias is added and, before min_tokens outputs, the
 *      stop ids are -inf
 *   3. repetition penalty over tokens seen in the prompt or the output
 *      (logit > 0 divided, <= 0 multiplied), then frequency and presence over the
 *      output only: logit -= frequency * count + presence * [count > 0]
 *   4. temperature < 1e-5 => greedy: argmax, ties -> lowest id; stop here
 *   5. temperature: logit /= T
 *   6. min-p: drop tokens with prob < min_p * max prob
 *   7. top-k: keep the k best (ties at the k-th value -> lowest ids)
 *   8. top-p: keep the smallest prefix (by prob desc, id asc) of the remaining
 *      tokens whose mass is >= top_p (renormalised after 6 and 7)
 *   9. draw one token with one uniform u from the sequence's RNG: the first kept id, in ascending order, at
 *      which the kept mass summed so far exceeds u times the whole kept mass (an order any backend can follow,
 *      so the same logits and seed give the same token wherever they are sampled)
 * Cost at vocab 152k is one pass plus the kept tokens: small top-k keeps a heap
 * during the pass; top-p bins the weights to find the crossing bin and orders
 * only that bin, in growing chunks (a full sort only for a flat distribution). */
#ifndef MIMO_ENGINE_SAMPLER_H
#define MIMO_ENGINE_SAMPLER_H
#include <stdbool.h>
#include <stdint.h>

#include "backend/sampling.h"
#include "core/status.h"

typedef struct mimo_sampling_params {
  float temperature;        /* 0 (or < 1e-5) = greedy */
  float top_p;              /* (0, 1]; 1 = off */
  float min_p;              /* [0, 1]; 0 = off */
  float repetition_penalty; /* > 0; 1 = off */
  float presence_penalty;   /* 0 = off */
  float frequency_penalty;  /* 0 = off */
  int top_k;                /* <= 0 = off */
  uint64_t seed;
  int vocab_limit;          /* ids >= limit never sampled (embedding padding); <= 0 = off */
  int logprobs;             /* top-N alternatives reported, 0..MIMO_MAX_LOGPROBS */
  /* false (vLLM's default "raw_logprobs"): log-softmax of the model's logits
   * after step 1 only. true: log-softmax of the distribution actually sampled
   * from (after step 8; filtered tokens -inf; greedy: after step 3). */
  bool processed_logprobs;
  /* OpenAI logit_bias: bias_vals[i] (finite, [-100, 100]) added to id bias_ids[i]'s logit after the raw logprobs are
   * taken and before the penalties (vLLM's order). Copied by mimo_sampler_init. */
  int n_bias;
  const int *bias_ids;
  const float *bias_vals;
  /* vLLM's min_tokens: until this many tokens were accepted, the ids min_tokens_ids (the stop ids) are never
   * sampled. Copied by mimo_sampler_init. */
  int min_tokens;
  int n_min_tokens_ids;
  const int *min_tokens_ids;
} mimo_sampling_params;

/* temperature 1, top_p 1, top_k off, min_p 0, penalties neutral, seed 0, no logprobs */
void mimo_sampling_defaults(mimo_sampling_params *p);

typedef struct mimo_sampler mimo_sampler;

/* Checks p (MIMO_E_INVALID naming the field) and copies it. */
mimo_status mimo_sampler_init(mimo_sampler **s, const mimo_sampling_params *p, int vocab_size);
void mimo_sampler_free(mimo_sampler *s);
/* Prompt tokens count for the repetition penalty only. Ids outside the vocab are ignored. */
void mimo_sampler_add_prompt(mimo_sampler *s, const int *ids, int n);
/* Records a generated token (all penalties). */
void mimo_sampler_accept(mimo_sampler *s, int token);
/* logits[vocab_size] is overwritten (with the processed logits when
 * processed_logprobs is set). Returns the token, or -1 with a message when no
 * id below vocab_limit has a logit other than NaN/-inf. info may be NULL. */
int mimo_sampler_sample(mimo_sampler *s, float *logits, mimo_sample_info *info);
/* The same with only the ids whose bit is set in allow (NULL: all). */
int mimo_sampler_sample_masked(mimo_sampler *s, float *logits, const unsigned *allow, mimo_sample_info *info);
/* The raw distribution's (log-softmax of the logits, no sampling parameters) log-probability of token and its
 * n_top best alternatives (ties: lowest id), as the prompt's logprobs report them. Overwrites NaN logits. */
void mimo_logprobs_of(float *logits, int vocab, int token, int n_top, mimo_sample_info *info);
/* The next token's job (backend/sampling.h) for sampling elsewhere, e.g. on the device that holds the logits:
 * the parameters, the penalised ids (job->pen points into s until the next call) and, unless greedy, the one
 * uniform mimo_sampler_sample would draw, so the sequence's RNG advances alike either way. */
void mimo_sampler_job(mimo_sampler *s, mimo_sample_job *job);

/* Jobs for the n + 1 rows of a speculative step (the row after the last output, then one after each draft
 * ahead[0..n)): row i as mimo_sampler_job would make it once ahead[0..i) were accepted (they count for the
 * penalties), with the uniform it would draw i draws from now. Nothing advances: accept the tokens kept, then
 * mimo_sampler_advance over the rows they came from. jobs[i].pen point into s until the next call. */
mimo_status mimo_sampler_jobs_ahead(mimo_sampler *s, const int *ahead, int n, mimo_sample_job *jobs);
/* The memory mimo_sampler_jobs_ahead needs for n drafts, taken now (it then cannot fail until more is seen). */
mimo_status mimo_sampler_ahead_room(mimo_sampler *s, int n);
/* The draws of n rows' jobs (mimo_sampler_jobs_ahead), as n calls of mimo_sampler_job would take them. */
void mimo_sampler_advance(mimo_sampler *s, int n);

/* mimo_sampler_job without drawing: the uniform it would take stays to be drawn by mimo_sampler_advance once the
 * row's token is used (a step that did not run leaves the sequence's draws as they were). */
void mimo_sampler_job_peek(mimo_sampler *s, mimo_sample_job *job);

/* Scratch for mimo_sample_logits over a vocabulary of up to `vocab` ids; one per thread that samples. */
typedef struct mimo_sample_ws mimo_sample_ws;
mimo_status mimo_sample_ws_init(mimo_sample_ws **ws, int vocab);
void mimo_sample_ws_free(mimo_sample_ws *ws);
/* Steps 1-9 of a job on host logits[vocab] (overwritten; the processed logits when job->processed_logprobs).
 * info may be NULL; given, it gets the chosen token's logprob and job->logprobs alternatives. Returns the token,
 * or -1 with a message when no id below the job's limit has a logit other than NaN/-inf. */
int mimo_sample_logits(const mimo_sample_job *job, float *logits, int vocab, mimo_sample_info *info,
                       mimo_sample_ws *ws);
#endif
