/* The serving engine: one thread owns the model, the KV caches and the
 * scheduler; callers submit requests from any thread and pull their tokens.
 *
 * Each step (continuous batching): admit waiting requests up to max_num_seqs,
 * give every running sequence that is decoding one token, fill the rest of the
 * max_num_batched_tokens budget with chunks of pending prompts (so a long prompt
 * never stalls decoding), run one forward over the batch, sample, publish.
 * A finished or cancelled sequence frees its KV at once. */
#ifndef MIMO_ENGINE_ENGINE_H
#define MIMO_ENGINE_ENGINE_H
#include <stdbool.h>

#include "engine/constraint.h"
#include "engine/sampler.h"
#include "model/mimo_v2.h"

typedef struct mimo_engine mimo_engine;

enum { MIMO_SPEC_MAX = 16 }; /* drafts per step at most (num_speculative_tokens) */
typedef struct mimo_request mimo_request;

typedef struct mimo_engine_opts {
  int max_num_seqs;           /* running sequences at once (default 16) */
  int max_num_batched_tokens; /* tokens per step (default 512) */
  int max_model_len;          /* prompt + output limit (default: the model's max_position_embeddings) */
  int max_queue;              /* waiting requests before submit says E_BUSY (default 256) */
  /* Throw-away forward passes (a prompt of this many tokens, one decode step, a prompt of up to 16 tokens, a decode
   * step of two sequences) on the engine thread before the first request, so that request does not pay one-time
   * costs: lazy kernel loading and library set-up, ~180 ms on the CUDA backend (docs/cuda.md). /health answers 503
   * until they are done; requests submitted meanwhile wait. 0: on device backends only, with min(max_num_batched_tokens, 512) tokens; < 0:
   * never; > 0: always, with that many tokens. Leaves no trace (its KV is freed, nothing is counted). */
  int warmup;
  /* Prefix caching (engine/prefix_cache.h): at most this many cached prefix states; 0: none. A request whose prompt
   * starts with a cached prefix computes only the rest. Entries are taken at the end of each prompt (and of prompt
   * chunks at least prefix_cache_every positions apart) and when a request finishes; they give their memory back
   * before any running request is preempted. A request that shares the prefix a running one is computing toward an
   * entry waits for that entry instead of computing it too. */
  int prefix_cache_entries;
  int prefix_cache_every; /* positions between entries inside one long prompt (default 2048) */
  /* Speculative decoding (vLLM's --speculative-config with method "mtp"): the checkpoint's MTP layer 0 drafts this
   * many tokens after each decoding sequence's next one, the model checks them in the same step as its other rows,
   * and the outputs keep the drafts it samples itself, then its own token (docs/speculative.md). The outputs are
   * what decoding without drafts gives, with the same seeds. 0: off; at most MIMO_SPEC_MAX. */
  int num_speculative_tokens;
  /* Test seam: drafts for output position p of every request become spec_oracle[p] (p < n_spec_oracle) instead of
   * the MTP's (which still runs): reaches the rounds where drafts are kept on a random model. */
  const int *spec_oracle;
  int n_spec_oracle;
  /* Test seam: called on the engine thread with each request's drafts as the MTP makes them (before spec_oracle). */
  void (*spec_trace)(void *ctx, const mimo_request *r, const int *drafts, int n);
  void *spec_trace_ctx;
  /* Test seam: instead of running the model, request i emits mock_ids[i % n_mock]
   * one token per step (the real tokenizer and API code run around it). */
  int n_mock;
  int **mock_ids;
  int *mock_len;
} mimo_engine_opts;

typedef enum {
  MIMO_FINISH_NONE = 0,
  MIMO_FINISH_STOP,      /* a stop id (eos) was generated (it is not emitted as output) */
  MIMO_FINISH_LENGTH,    /* max_tokens or max_model_len reached */
  MIMO_FINISH_CANCELLED, /* mimo_request_cancel or engine shutdown */
  MIMO_FINISH_ERROR,
} mimo_finish;

typedef struct mimo_request_params {
  const int *prompt;
  int n_prompt;
  int max_tokens;             /* > 0 */
  mimo_sampling_params sampling;
  const int *stop_ids;        /* in addition to the model's eos ids unless ignore_eos */
  int n_stop_ids;
  bool ignore_eos;
  const int *forced;          /* output must start with these ids (tool_choice forcing) */
  int n_forced;
  /* With prefix caching: a prompt position many requests share (a chat's system block and tools, say) where the
   * engine ends a prompt chunk and keeps an entry, so that prompts which differ only after it find it (entries are
   * otherwise taken where chunks happen to end). 0: none. */
  int cache_at;
  /* With prefix caching: the partition of entries this request finds and leaves (vLLM's cache_salt, hashed by the
   * caller; 0: the shared one). */
  uint64_t cache_salt;
  /* The prompt's own log-probabilities (OpenAI completions' `echo` with `logprobs`): each prompt token's under the
   * raw distribution after the tokens before it, with prompt_top_logprobs (0..MIMO_MAX_LOGPROBS) alternatives;
   * mimo_request_prompt_logprobs. Such a prompt is computed whole (no prefix-cache hit), in chunks whose every
   * row of logits comes to the host. */
  bool prompt_logprobs;
  int prompt_top_logprobs;
  /* Image placeholders: prompt positions [at, at + n) of each run take rows [n][hidden_size] (the vision tower's
   * output) instead of their tokens' embeddings; in order, not overlapping. Copied at submit. The prefix cache knows
   * those positions by a hash of the rows, so a prompt with the same images finds the entries, one with others not. */
  const mimo_embed_run *embeds;
  int n_embeds;
  /* Structured outputs: the ids each sampled token may take (engine/constraint.h); taken by submit, also when it
   * fails. With forced ids it sees only the tokens after them (its grammar starts where they end: a tool call's
   * prefix). The output ends (FINISH_STOP) once the constraint is done and no stop id may come. */
  mimo_constraint *constraint;
  void (*notify)(void *ctx);  /* called on the engine thread when events are ready (may be NULL) */
  void *notify_ctx;
} mimo_request_params;

typedef struct mimo_token_event {
  int token;                  /* -1 on the final event when no token came with it */
  mimo_sample_info info;      /* logprobs when sampling.logprobs > 0 */
  mimo_finish finish;         /* non-zero on the last event of the request */
} mimo_token_event;

mimo_status mimo_engine_init(mimo_engine **out, mimo_model *model /* NULL with mock */, const mimo_engine_opts *o);
/* Stops accepting, cancels what is queued or running, joins the thread. */
void mimo_engine_shutdown(mimo_engine *e);
void mimo_engine_free(mimo_engine *e);

/* Copies what it needs from p. Errors: E_TOO_LONG (prompt + max_tokens over
 * max_model_len: the message says how many were asked and allowed), E_BUSY
 * (queue full), E_INVALID (bad sampling params, ids outside the vocabulary). */
mimo_status mimo_engine_submit(mimo_engine *e, const mimo_request_params *p, mimo_request **out);
/* Moves up to max pending events into ev; waits up to timeout_ms (-1: forever)
 * when none are pending. Returns the count (0 on timeout). */
int mimo_request_poll(mimo_request *r, mimo_token_event *ev, int max, int timeout_ms);
void mimo_request_cancel(mimo_request *r);
/* The caller's reference: after release the request must not be touched. */
void mimo_request_release(mimo_request *r);
int mimo_request_prompt_tokens(const mimo_request *r);
/* Prompt tokens that came from the prefix cache instead of being computed (as of its last admission). */
int mimo_request_cached_tokens(const mimo_request *r);
/* With mimo_request_params.prompt_logprobs, once the request's first event has been polled (the prompt is in):
 * entry i (1 <= i < n_prompt) of the prompt's log-probabilities (entry 0 has none); NULL before, or without. */
const mimo_sample_info *mimo_request_prompt_logprobs(const mimo_request *r);
/* The same entries' ranks: 1 + how many tokens the model gave a higher logit (vLLM's prompt_logprobs "rank"). */
const int *mimo_request_prompt_ranks(const mimo_request *r);

typedef struct mimo_engine_stats {
  long requests_running, requests_waiting, requests_total;
  long prompt_tokens_total, generation_tokens_total;
  long steps;
  long kv_bytes;      /* KV cache held by the running sequences, after the last step */
  long kv_pool_bytes; /* storage the model's KV pools have taken for blocks and rings (kept until the model ends) */
  long preemptions_total; /* requests that gave their KV memory back to be recomputed (a step did not fit) */
  long prefix_cache_queries_total; /* prompt tokens looked up in the prefix cache (vLLM's counter of the same name) */
  long prefix_cache_hits_total;    /* of those, tokens found there */
  long prefix_cache_entries;
  long prefix_cache_bytes;         /* what the entries hold (blocks they share counted in each) */
  /* speculative decoding (vLLM's counters of the same names) */
  long spec_k;                     /* num_speculative_tokens (0: off) */
  long spec_drafts;                /* sequence steps that verified drafts */
  long spec_draft_tokens;          /* drafts verified */
  long spec_accepted_tokens;       /* of those, the ones the model sampled too (kept) */
  long spec_accepted_per_pos[MIMO_SPEC_MAX]; /* kept drafts by their place in the step's run of drafts */
  double spec_draft_seconds;       /* engine-thread time in the MTP's steps (catch-up and drafting) */
  double forward_seconds;          /* engine-thread time in the model's batched steps (forward and sampling) */
} mimo_engine_stats;
void mimo_engine_stats_get(mimo_engine *e, mimo_engine_stats *s);
int mimo_engine_max_model_len(const mimo_engine *e);
/* False (why filled) once a step failed beyond recovery: a GPU's sticky error or a lost link between the
 * tensor-parallel nodes. */
bool mimo_engine_healthy(mimo_engine *e, char *why, size_t n);
/* True while the warm-up forward (mimo_engine_opts.warmup) runs. */
bool mimo_engine_warming(mimo_engine *e);
#endif
