/* The step message node 0 sends to the worker nodes of a tensor-parallel group
 * (docs/multi-gpu.md): [u32 op=1, n_seqs, all_logits, n_freed]
 * [u64 uid x n_seqs][i32 n_tokens x n_seqs][i32 tokens x sum n_tokens][u64 freed uid x n_freed],
 * little-endian. A fork message, sent when node 0 copies a sequence's cache (prefix caching; every node does the
 * same before the next step and the nodes agree on the outcome): [u32 op=3, n_forks, 0, 0][u64 src uid, u64 dst uid,
 * u64 positions x n_forks]. An embeddings message goes just before a step whose batch has image rows
 * (mimo_batch.embeds): [u32 op=4, n_runs, hidden, 0][i32 at, i32 n x n_runs][f32 rows x hidden x sum n].
 * A step-back message, sent when node 0 drops a sequence's last positions (rejected speculative tokens):
 * [u32 op=5, n, 0, 0][u64 uid, u64 new length x n]. A slack message, before the first step of a group that steps
 * sequences back (mimo_model_set_kv_slack): [u32 op=6, slots, 0, 0].
 * The worker checks every size before it trusts one. */
#ifndef MIMO_MODEL_MIMO_V2_TP_MSG_H
#define MIMO_MODEL_MIMO_V2_TP_MSG_H
#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

enum { MIMO_TP_MSG_STEP = 1, MIMO_TP_MSG_QUIT = 2, MIMO_TP_MSG_FORK = 3, MIMO_TP_MSG_EMBEDS = 4, MIMO_TP_MSG_TRUNCATE = 5,
       MIMO_TP_MSG_SLACK = 6 };

typedef struct mimo_tp_step_view {
  int n_seqs, all_logits, n_freed, n_tokens_total;
  const unsigned char *uids;  /* n_seqs x 8 bytes (read with mimo_tp_msg_u64) */
  const int32_t *n_tokens;    /* n_seqs, each >= 1 */
  const int32_t *tokens;      /* n_tokens_total */
  const unsigned char *freed; /* n_freed x 8 bytes */
} mimo_tp_step_view;

/* Bytes of a step message for these counts. */
size_t mimo_tp_step_bytes(int n_seqs, int n_tokens_total, int n_freed);
/* Writes a step message into buf (mimo_tp_step_bytes long). */
void mimo_tp_step_write(void *buf, int n_seqs, int all_logits, const unsigned long long *uids, const int *n_tokens,
                        const int *tokens, int n_tokens_total, const unsigned long long *freed, int n_freed);
/* Op of a message (0 if shorter than a header). */
uint32_t mimo_tp_msg_op(const void *buf, size_t bytes);
/* Views a step message (buf 4-byte aligned); MIMO_E_FORMAT naming what is wrong. */
mimo_status mimo_tp_step_parse(const void *buf, size_t bytes, mimo_tp_step_view *v);
unsigned long long mimo_tp_msg_u64(const unsigned char *p, int i);
/* A fork message: 16 + 24 n bytes; forks[3i] = source uid, forks[3i + 1] = the new sequence's, forks[3i + 2] = the
 * positions it takes (mimo_kv_fork). */
size_t mimo_tp_fork_bytes(int n_forks);
void mimo_tp_fork_write(void *buf, const unsigned long long *forks, int n_forks);
/* Views a fork message: its count and triples (read with mimo_tp_msg_u64); MIMO_E_FORMAT naming what is wrong. */
mimo_status mimo_tp_fork_parse(const void *buf, size_t bytes, int *n_forks, const unsigned char **forks);
/* A step-back message: 16 + 16 n bytes; pairs[2i] = uid, pairs[2i + 1] = the length it keeps. */
size_t mimo_tp_truncate_bytes(int n);
void mimo_tp_truncate_write(void *buf, const unsigned long long *pairs, int n);
/* Views one: its count and pairs (read with mimo_tp_msg_u64); MIMO_E_FORMAT naming what is wrong. */
mimo_status mimo_tp_truncate_parse(const void *buf, size_t bytes, int *n, const unsigned char **pairs);
/* A slack message (16 bytes); its parse checks the size and the range 0..64. */
void mimo_tp_slack_write(void *buf, int slots);
mimo_status mimo_tp_slack_parse(const void *buf, size_t bytes, int *slots);
/* An embeddings message: runs[2i] = at, runs[2i + 1] = n of run i; rows[r][hidden] one run after another. */
size_t mimo_tp_embeds_bytes(const int32_t *runs, int n_runs, int hidden);
void mimo_tp_embeds_write(void *buf, const int32_t *runs, int n_runs, int hidden, const float *const *rows);
/* Views one (buf 4-byte aligned): its run count, (at, n) pairs, hidden size and rows; MIMO_E_FORMAT naming what is
 * wrong (every count checked against the size). */
mimo_status mimo_tp_embeds_parse(const void *buf, size_t bytes, int *n_runs, const int32_t **runs, int *hidden,
                                 const float **rows);
#endif
