/* The engine's state, shared by engine.c (the engine thread: scheduling, steps) and engine_request.c (the
 * callers' side: submit, poll, release, stats). Not for other users: engine.h is the interface. */
#ifndef MIMO_ENGINE_ENGINE_INTERNAL_H
#define MIMO_ENGINE_ENGINE_INTERNAL_H
#include <pthread.h>
#include <stdatomic.h>

#include "engine/engine.h"
#include "engine/prefix_cache.h"

struct mimo_request {
  /* immutable after submit */
  int *prompt, n_prompt, max_tokens;
  int *stop, n_stop;
  int *forced, n_forced;
  int cache_at; /* mimo_request_params.cache_at, 0 when outside (PREFIX_MIN, n_prompt) */
  int plp_top;                /* mimo_request_params.prompt_top_logprobs; -1: no prompt logprobs */
  mimo_sample_info *plp;      /* [n_prompt]: the prompt's logprobs, written while it is fed, before the first event */
  int *plp_rank;              /* [n_prompt]: each prompt token's rank under those (1: the most likely) */
  bool plp_done;              /* all of them (a recompute after a preemption goes the usual way) */
  atomic_int plp_ready;       /* plp_done for other threads (set after the last entry is written) */
  mimo_sampling_params sp;   /* its id lists point at the request's own: stop (min_tokens), bias_* */
  int *bias_ids;
  float *bias_vals;
  mimo_constraint *con;       /* structured outputs, or NULL */
  bool con_active;            /* con->after_token has been generated (or there is none) */
  uint32_t *allow;            /* con's mask for the next token, a bit per id */
  mimo_embed_run *mm;         /* image rows (mimo_request_params.embeds), at = prompt positions; rows in mm_rows */
  int n_mm;
  float *mm_rows;
  /* With images: prompt[] with each image position's id replaced by a negative value drawn from the image's rows
   * and the position in it (outputs appended as to prompt[]), so that the prefix cache tells images apart; NULL
   * without. mimo_request_pc_tokens. */
  int *key;
  uint64_t salt; /* the prefix-cache partition (mimo_request_params.cache_salt) */
  void (*notify)(void *);
  void *notify_ctx;
  int mock; /* index of the mock script, -1 when the model runs */
  /* engine-thread state */
  mimo_kv_seq *kv;
  mimo_sampler *smp;
  int cap_tokens; /* prompt's room: the outputs follow the prompt there (what a preempted request recomputes) */
  bool out_lost;  /* an output could not be kept: this request cannot be recomputed */
  int n_feed;     /* tokens of prompt[] to prefill: the prompt; after a preemption the outputs so far too */
  long admitted;  /* admission order (the youngest running request is preempted first) */
  int fed;        /* of those, fed so far */
  int generated;  /* output tokens produced */
  int next_token; /* last output token, fed in the next step */
  int snap_at;    /* positions of the last prefix-cache entry this request made or started from */
  atomic_int n_cached; /* prompt tokens its last admission found in the prefix cache */
  /* speculative decoding (engine_spec.c) */
  mimo_kv_seq *dkv; /* the MTP layer's cache: its positions as kv's, each from the model's hidden state there and the
                     * token after it (NULL: not started, or dropped after an MTP step failed) */
  int draft[MIMO_SPEC_MAX]; /* the MTP's guesses at the outputs after next_token */
  int n_draft;
  uint32_t *allow_rows;     /* structured outputs while drafting: row i's mask (after drafts 0..i-1), [k + 1][V/32] */
  struct spec_hist *hist;   /* the model's hidden states of its last positions (an MTP cache made later starts from
                             * them; prefix-cache entries keep a copy) */
  mimo_request *next_waiting;
  /* shared */
  atomic_int cancelled;
  atomic_int refs;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  mimo_token_event *ev; /* pending events (ring would do; a growable array is simpler) */
  int n_ev, cap_ev;
};

struct mimo_engine {
  mimo_model *model;
  mimo_engine_opts o;
  int vocab, n_eos, eos[MIMO_MAX_EOS];
  pthread_t thread;
  int started;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int stop;
  mimo_request *wait_head, *wait_tail;
  int n_waiting;
  mimo_request **running;
  int n_running;
  long mock_counter;
  long admissions;
  /* A step did not fit in the KV memory and a request was preempted: admit no other until one finishes. */
  bool hold_admission;
  mimo_engine_stats stats;
  mimo_prefix_cache *pc; /* NULL: no prefix caching */
  /* Set when a step fails in a way no later step can recover from (a GPU's sticky error, a lost
   * tensor-parallel link): new requests are refused and /health says why. */
  atomic_int broken;
  char broken_why[512];
  /* Tokens of the warm-up forward still to run (0: none, or done): /health answers 503 until then. */
  int warm_n;
  atomic_int warming;
  /* speculative decoding (engine_spec.c): drafts per decoding sequence (0: off), and the MTP step's buffers */
  int spec_k;
  float *hidden;              /* the step's final-normed hidden states [max_num_batched_tokens][hidden] */
  int *n_logits;              /* rows of logits per sequence of the step */
  int *row_at;                /* the step's first row (job) of each sequence */
  struct spec_bufs *sb;
  /* step buffers */
  int *tokens, *counts;
  mimo_kv_seq **seqs;
  mimo_request **batch;
  mimo_sample_job *jobs;
  int *sampled;
  mimo_sample_info *infos;
  mimo_embed_run *embeds;    /* the step's image rows */
  int cap_embeds;
  float *plp_logits; /* every row of a prompt-logprobs chunk (plp_rows of them) */
  int plp_rows;
  struct mimo_pool *plp_pool; /* threads for those rows' log-softmax and the constrained rows' masks (on first use) */
};

/* Rows of logits a prompt-logprobs chunk brings to the host at most: 64 Mi floats (256 MiB; 440 rows of MiMo's
 * 152,576). */
enum { PLP_FLOATS = 64 << 20 };

/* Shortest prefix worth an entry: below a block, the copy of the rings costs about what the prefix would. */
enum { PREFIX_MIN = MIMO_KV_BLOCK };

/* The ids the prefix cache knows r's positions by. */
static inline const int *mimo_request_pc_tokens(const mimo_request *r) { return r->key ? r->key : r->prompt; }

/* engine.c, for engine_spec.c: r's next output (take_token: a forced one when due, else tok), and where r runs. */
void mimo_engine_take_token(mimo_engine *e, int slot, mimo_request *r, int tok, const mimo_sample_info *info);
int mimo_engine_slot_of(const mimo_engine *e, const mimo_request *r);
/* A step went wrong for the request in slot: it ends with an error (and the engine is marked broken when no later
 * step can recover). */
void mimo_engine_step_failed(mimo_engine *e, int slot, mimo_status st);
/* engine.c, for engine_plp.c: a step found no KV memory (preempt, or fail what cannot fit); the image rows of r's
 * prompt positions [from, from + n) into the step's embedding runs at row `at` (false: out of memory); r took n
 * prompt tokens (false: it ended); r's structured-output mask for its next token (NULL: none). */
void mimo_engine_kv_full(mimo_engine *e);
bool mimo_engine_chunk_embeds(mimo_engine *e, const mimo_request *r, int from, int n, int at, int *count);
bool mimo_engine_fed_chunk(mimo_engine *e, mimo_request *r, int n);
const unsigned *mimo_engine_constraint_mask(const mimo_engine *e, mimo_request *r);

/* engine_plp.c: a chunk of n prompt tokens of r, which wants its prompt's logprobs, run on its own. */
void mimo_engine_prompt_logprobs_step(mimo_engine *e, mimo_request *r, int n);

/* engine_warmup.c: n tokens of throw-away forward passes (mimo_engine_opts.warmup); leaves no trace. */
mimo_status mimo_engine_warm_up(mimo_engine *e, int n);

/* engine_spec.c: speculative decoding with MTP drafts (engine.h, num_speculative_tokens). */
mimo_status mimo_spec_init(mimo_engine *e);
void mimo_spec_free(mimo_engine *e);
/* Drafts r verifies in the next step: as many as it has, the budget allows and its output can still use (and, under
 * a structured-output mask, its grammar takes: each row's mask is then in r->allow_rows); 0 while a forced token is
 * due. */
int mimo_spec_drafts(const mimo_engine *e, mimo_request *r, int budget);
/* r's rows after a step that verified n drafts at `row` (jobs made by mimo_sampler_jobs_ahead; its cache stood at
 * start): the outputs up to the first draft the model did not sample (or until it finishes), and the cache back to
 * what they left valid. */
void mimo_spec_emit(mimo_engine *e, mimo_request *r, int start, int n, int row);
/* After a step of nb sequences (hidden states in e->hidden; starts[k]: sequence k's position before it): the MTP
 * layer over the positions each running sequence added, then k drafts for each that decodes next. */
void mimo_spec_draft(mimo_engine *e, int nb, const int *starts);
/* r ends or gives its memory back: its MTP cache and drafts go. */
void mimo_spec_drop(mimo_request *r);
/* Right after a step that ran (before its outputs are delivered): each sequence's hidden states of the positions
 * the step leaves valid (a prompt chunk's, a verifying step's up to its first rejected draft) into its history. */
void mimo_spec_keep_hidden(mimo_engine *e, int nb, const int *starts);
/* The same for one request: rows hrow .. hrow + n of e->hidden, its positions start .. start + n. */
void mimo_spec_keep_rows(mimo_engine *e, mimo_request *r, int start, int n, int hrow);
/* A copy of r's history for a prefix-cache entry of r's cache (kv_seq.attach; NULL: none), and its free. */
void *mimo_spec_hist_copy(const mimo_request *r);
void mimo_spec_hist_free(void *h);
/* r starts from a prefix-cache entry's first len positions: its history from the entry's (h: its attach). */
void mimo_spec_hist_from(mimo_engine *e, mimo_request *r, const void *h, int len);

/* Drops one reference (the caller's or the engine's); the last frees the request. */
void mimo_request_unref(mimo_request *r);
#endif
