/* MiMo-V2 text model: load a checkpoint directory and run the forward pass of
 * spec §2 over backend ops. */
#ifndef MIMO_MODEL_MIMO_V2_H
#define MIMO_MODEL_MIMO_V2_H
#include "backend/backend.h"
#include "engine/kv_cache.h"
#include "io/checkpoint.h"
#include "io/config.h"
#include "model/mimo_v2_weights.h"
#include "model/vision.h"

typedef struct mimo_tp_group mimo_tp_group;

typedef struct mimo_model {
  mimo_config cfg;        /* stop ids include generation_config.json's; a rank's: its own heads and widths */
  mimo_gen_defaults gen;  /* generation_config.json sampling defaults */
  mimo_ckpt ck;
  mimo_weights w;         /* a TP group's top-level model: the checkpoint's views, run by no backend */
  mimo_vision_weights vw; /* the vision tower's views (vw.present with a vision_config) */
  mimo_backend *be;       /* owned only when own_be */
  bool own_be;
  mimo_kv_pool *kv_pool;      /* blocks of the full layers' KV caches, on be (made on the first step) */
  bool kv_bf16;               /* KV caches in bf16 (set before the first step; mimo_model_set_kv_bf16) */
  /* Tensor parallel (model/mimo_v2_tp.c): a group's top-level model has `group`
   * and runs each step on its ranks' threads; a rank is a model of its own with
   * sliced weights whose partial sums meet in be->all_reduce. */
  int tp, rank;           /* 1, 0 alone */
  bool ep;                /* experts whole per rank instead of split along their width */
  int vocab0, vocab_n;    /* lm_head rows computed here: logits columns [vocab0, vocab0 + vocab_n) */
  float *logit_part;      /* a rank's [rows][vocab_n] before it scatters them (kept between steps) */
  size_t logit_part_n;
  int expert0, n_local;   /* expert parallel: the experts held (n_local = 0: all) */
  mimo_tp_group *group;
  void **owned;           /* host copies of gathered slices (freed with the model) */
  int n_owned, cap_owned;
  /* Trace (mimo logits --route-margin): when set, a step lowers route_margin[t] (the caller fills it with
   * +inf) to token t's smallest router margin over the MoE layers. One rank, CPU backend. */
  float *route_margin;
  /* Sampling by mimo_model_forward (mimo_batch.jobs): on the host even where the backend could sample where the
   * logits are (--host-sampling); the host's logits rows and scratch when it does. */
  bool host_sampling;
  /* --enforce-eager: every op launched as issued, never a backend's recorded decode step (CUDA graph). */
  bool eager;
  /* Speculative verifying steps (every sequence the same few tokens) recorded like decode steps
   * (MIMO_GRAPHS_VERIFY=1; off until measured on a GPU: docs/speculative.md). */
  bool graph_verify;
  /* The last mimo_model_forward failed before any rank computed anything (a KV reservation or step buffers that
   * did not fit): no cache changed, so the step can be retried, say with fewer sequences. */
  bool step_skipped;
  float *sample_logits;
  size_t sample_logits_n;
  struct mimo_pool *sample_pool;     /* rows are sampled in parallel, one scratch per thread */
  struct mimo_sample_ws **sample_ws;
  int n_sample_ws;
  /* MTP drafting (mimo_model_mtp_open): a one-layer model of the checkpoint's MTP layer on the same backend, sharing
   * the embedding and lm_head; its sequences are its own (a cache of the MTP layer's keys). NULL: none. */
  struct mimo_model *mtp;
  const mimo_mtp_weights *mtp_w;
} mimo_model;

mimo_status mimo_model_load(const char *dir, mimo_backend *be, mimo_model **out);
void mimo_model_free(mimo_model *m);
/* Room in s for positions up to new_len - 1 on this model's backend (its KV pool made on first use). */
mimo_status mimo_model_kv_reserve(mimo_model *m, mimo_kv_seq *s, int new_len);
/* dst (new) continues from src's first len cached positions (engine/kv_cache.h, mimo_kv_fork: len is src->len or
 * one less), on every rank of a group: a prefix cache's entries and the requests that start from them. */
mimo_status mimo_model_kv_fork(mimo_model *m, mimo_kv_seq *dst, mimo_kv_seq *src, int len);
/* Bytes the KV pools of this model (its ranks' in a group of this process) have taken for blocks and rings. */
size_t mimo_model_kv_pool_bytes(mimo_model *m);
/* KV caches in bf16 (true) or float32, for this model and its tensor-parallel ranks; before the first step. */
mimo_status mimo_model_set_kv_bf16(mimo_model *m, bool bf16);

/* Tensor-parallel load over tp backends (one per rank of this process, owned by the model from here on,
 * also on failure): each rank's thread slices the checkpoint for its rank and uploads it. ep: whole experts
 * per rank (expert parallel). net: NULL in one process; else the link to the group's other processes
 * (model/mimo_v2_tp_net.h), owned from here on too. */
struct mimo_tp_net;
mimo_status mimo_model_load_tp(const char *dir, mimo_backend **bes, int tp, bool ep, struct mimo_tp_net *net,
                               mimo_model **out);
/* A worker node: runs the steps node 0 sends until node 0 ends the group. */
mimo_status mimo_model_run_worker(mimo_model *m);

/* One step over a batch of sequences: sequence i contributes n_tokens[i] tokens
 * (concatenated in `tokens`) at its next positions, and its cache grows by as
 * many. logits gets [rows][vocab]: every token's row if all_logits, else one
 * row per sequence (its last token). */
typedef struct mimo_batch {
  int n_seqs;
  mimo_kv_seq **seqs;
  const int *n_tokens;
  const int *tokens;
  int all_logits;
  /* Optional, with all_logits 0: sequence i's row is sampled with jobs[i] (backend/sampling.h) into sampled[i]
   * (-1: skipped, or no usable logit) and infos[i] (when infos and jobs[i].logprobs > 0), where the logits are
   * when the backend can (then `logits` may be NULL and is not written), else on the host. */
  const mimo_sample_job *jobs;
  int *sampled;
  mimo_sample_info *infos;
  /* Optional: embedding rows that replace the looked-up ones, in order of `at`, not overlapping. */
  const mimo_embed_run *embeds;
  int n_embeds;
  /* Optional, with all_logits 0: sequence i's last n_logits[i] tokens (1..n_tokens[i]) give rows of logits instead
   * of its last one (the tokens a speculative step verifies); rows = their sum, in batch order, and jobs, sampled
   * and infos are per row. NULL: one each. */
  const int *n_logits;
  /* Optional: the final-normed hidden state of every token, [T][hidden] host floats (what an MTP layer takes as h,
   * spec §2.7); a tensor-parallel group's rank 0 on node 0 writes it. */
  float *hidden_out;
} mimo_batch;

/* Rows of logits a batch of T tokens gives (mimo_batch.all_logits, n_logits). */
int mimo_batch_rows(const mimo_batch *b, int T);

mimo_status mimo_model_forward(mimo_model *m, const mimo_batch *b, float *logits);

/* Forgets s's positions from len on (mimo_kv_seq_truncate) on every rank and node of a group too: rejected
 * speculative tokens. */
mimo_status mimo_model_kv_truncate(mimo_model *m, mimo_kv_seq *s, int len);

/* MTP (spec §2.7): a draft model of MTP layer `layer` (vLLM reuses layer 0 for every draft step). On a
 * tensor-parallel group it is whole on rank 0's backend (node 0), with its own copy of the lm_head when the ranks
 * split it; the workers of other nodes never see it. */
mimo_status mimo_model_mtp_open(mimo_model *m, int layer);
/* One step of the MTP model over a batch of its sequences: row t takes token b->tokens[t] (the token after the
 * target position it stands for) and h[t] (the target's final-normed hidden state there, [T][hidden] host floats;
 * a row of zeros where it is not known). Logits, jobs, hidden_out as mimo_model_forward; b->embeds replace the
 * token embeddings of their rows (an image's positions). */
mimo_status mimo_model_mtp_step(mimo_model *m, const mimo_batch *b, const float *h);
/* A new MTP sequence begins at position pos instead of 0: its cache slots before it hold zeros (a sequence that
 * starts from a prefix-cache hit has no hidden states for the cached positions). */
mimo_status mimo_model_mtp_start_at(mimo_model *m, mimo_kv_seq *seq, int pos);
/* T tokens of the MTP layer at its next positions on seq (a sequence of m->mtp): ids[t] is the token after target
 * position p + t and h[t] the target's final-normed hidden state there ([T][hidden] host). logits: [T][vocab] when
 * all_logits, else the last row's; hidden_out (optional): the MTP's final-normed rows likewise (the next draft's h). */
mimo_status mimo_model_mtp_forward(mimo_model *m, mimo_kv_seq *seq, const int *ids, const float *h, int T,
                                   int all_logits, float *logits, float *hidden_out);
/* Sliding-window caches keep this many slots beyond the window, so that a sequence can step back that far
 * (mimo_kv_seq_truncate: speculative tokens that were rejected). Before the model's first step. */
mimo_status mimo_model_set_kv_slack(mimo_model *m, int slack);
/* Whether mimo_batch.jobs are sampled on the device that computes the logits. */
bool mimo_model_samples_on_device(const mimo_model *m);
/* The backend of rank r (a lone model: its only backend). */
mimo_backend *mimo_model_backend(const mimo_model *m, int r);

/* Internal to the model files: one rank's (or a lone model's) step, and the
 * upload of its weights. */
mimo_status mimo_model_forward_local(mimo_model *m, const mimo_batch *b, float *logits);
/* Takes and gives back the step activations for T tokens, so that a backend with a block cache (GPUs) has
 * them before the step: a rank out of memory then fails before any collective, not inside one. */
mimo_status mimo_model_warm_scratch(mimo_model *m, int T);
/* config, generation defaults, checkpoint and weight views of dir into m (nothing uploaded) */
mimo_status mimo_model_bind(const char *dir, mimo_model *m);
mimo_status mimo_model_upload(mimo_backend *be, mimo_weights *w);
mimo_status mimo_model_upload_globals(mimo_backend *be, mimo_weights *w);
mimo_status mimo_model_upload_layer(mimo_backend *be, mimo_layer_weights *lw, int n_experts);
mimo_status mimo_tp_forward(mimo_model *m, const mimo_batch *b, float *logits);
mimo_status mimo_tp_kv_fork(mimo_model *m, mimo_kv_seq *dst, mimo_kv_seq *src, int len);
mimo_status mimo_tp_kv_truncate(mimo_model *m, mimo_kv_seq *s, int len);
mimo_status mimo_tp_set_kv_slack(mimo_model *m, int slack);
mimo_model *mimo_tp_rank_model(const mimo_model *m, int r); /* this process's rank r of a group */
int mimo_tp_node(const mimo_model *m);                       /* this process's node in the group */
bool mimo_tp_samples_on_device(const mimo_model *m);
void mimo_tp_free(mimo_model *m);
#endif
