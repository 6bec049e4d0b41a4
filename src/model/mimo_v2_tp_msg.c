#include "model/mimo_v2_tp_msg.h"

#include <string.h>

enum { MAX_SEQS = 1 << 20, MAX_FREED = 1 << 24, MAX_TOKENS = 1 << 28 };

size_t mimo_tp_step_bytes(int n_seqs, int n_tokens_total, int n_freed) {
  return 16 + (size_t)n_seqs * 12 + (size_t)n_tokens_total * 4 + (size_t)n_freed * 8;
}

void mimo_tp_step_write(void *buf, int n_seqs, int all_logits, const unsigned long long *uids, const int *n_tokens,
                        const int *tokens, int n_tokens_total, const unsigned long long *freed, int n_freed) {
  uint32_t h[4] = {MIMO_TP_MSG_STEP, (uint32_t)n_seqs, (uint32_t)all_logits, (uint32_t)n_freed};
  char *p = buf;
  memcpy(p, h, 16);
  p += 16;
  if (n_seqs) {
    memcpy(p, uids, (size_t)n_seqs * 8);
    p += (size_t)n_seqs * 8;
    memcpy(p, n_tokens, (size_t)n_seqs * 4);
    p += (size_t)n_seqs * 4;
  }
  if (n_tokens_total) {
    memcpy(p, tokens, (size_t)n_tokens_total * 4);
    p += (size_t)n_tokens_total * 4;
  }
  if (n_freed)
    memcpy(p, freed, (size_t)n_freed * 8);
}

uint32_t mimo_tp_msg_op(const void *buf, size_t bytes) {
  uint32_t op = 0;
  if (bytes >= 16)
    memcpy(&op, buf, 4);
  return op;
}

unsigned long long mimo_tp_msg_u64(const unsigned char *p, int i) {
  unsigned long long v;
  memcpy(&v, p + (size_t)i * 8, 8);
  return v;
}

/* The 16-byte header of a `kind` message (op `op`) into h. */
static mimo_status read_header(const void *buf, size_t bytes, uint32_t op, const char *kind, uint32_t h[4]) {
  if (bytes < 16)
    return mimo_errf(MIMO_E_FORMAT, "%s message: %zu bytes, shorter than its header", kind, bytes);
  memcpy(h, buf, 16);
  if (h[0] != op)
    return mimo_errf(MIMO_E_FORMAT, "%s message: op %u is not a %s", kind, h[0], kind);
  return MIMO_OK;
}

mimo_status mimo_tp_step_parse(const void *buf, size_t bytes, mimo_tp_step_view *v) {
  uint32_t h[4];
  MIMO_TRY(read_header(buf, bytes, MIMO_TP_MSG_STEP, "step", h));
  if (h[1] < 1 || h[1] > MAX_SEQS || h[2] > 1 || h[3] > MAX_FREED)
    return mimo_errf(MIMO_E_FORMAT, "step message: %u sequences, all_logits %u, %u freed: out of range", h[1], h[2],
                     h[3]);
  const int n = (int)h[1], nf = (int)h[3];
  if (mimo_tp_step_bytes(n, 0, nf) > bytes)
    return mimo_errf(MIMO_E_FORMAT, "step message: %zu bytes cannot hold %d sequences", bytes, n);
  const unsigned char *p = (const unsigned char *)buf + 16;
  const int32_t *nt = (const int32_t *)(p + (size_t)n * 8);
  long long T = 0;
  for (int i = 0; i < n; i++) {
    if (nt[i] < 1 || nt[i] > MAX_TOKENS)
      return mimo_errf(MIMO_E_FORMAT, "step message: sequence %d has %d tokens", i, nt[i]);
    T += nt[i];
  }
  if (T > MAX_TOKENS || mimo_tp_step_bytes(n, (int)T, nf) != bytes)
    return mimo_errf(MIMO_E_FORMAT, "step message: %zu bytes, but its counts need %zu", bytes,
                     T > MAX_TOKENS ? (size_t)0 : mimo_tp_step_bytes(n, (int)T, nf));
  v->n_seqs = n;
  v->all_logits = (int)h[2];
  v->n_freed = nf;
  v->n_tokens_total = (int)T;
  v->uids = p;
  v->n_tokens = nt;
  v->tokens = (const int32_t *)(p + (size_t)n * 12);
  v->freed = p + (size_t)n * 12 + (size_t)T * 4;
  return MIMO_OK;
}

size_t mimo_tp_fork_bytes(int n_forks) { return 16 + (size_t)n_forks * 24; }

void mimo_tp_fork_write(void *buf, const unsigned long long *forks, int n_forks) {
  const uint32_t h[4] = {MIMO_TP_MSG_FORK, (uint32_t)n_forks, 0, 0};
  memcpy(buf, h, 16);
  if (n_forks)
    memcpy((char *)buf + 16, forks, (size_t)n_forks * 24);
}

mimo_status mimo_tp_fork_parse(const void *buf, size_t bytes, int *n_forks, const unsigned char **forks) {
  uint32_t h[4];
  MIMO_TRY(read_header(buf, bytes, MIMO_TP_MSG_FORK, "fork", h));
  if (h[1] < 1 || h[1] > MAX_SEQS || h[2] || h[3])
    return mimo_errf(MIMO_E_FORMAT, "fork message: %u forks, header words %u %u: out of range", h[1], h[2], h[3]);
  if (mimo_tp_fork_bytes((int)h[1]) != bytes)
    return mimo_errf(MIMO_E_FORMAT, "fork message: %zu bytes, but %u forks need %zu", bytes, h[1],
                     mimo_tp_fork_bytes((int)h[1]));
  *n_forks = (int)h[1];
  *forks = (const unsigned char *)buf + 16;
  return MIMO_OK;
}

size_t mimo_tp_truncate_bytes(int n) { return 16 + (size_t)n * 16; }

void mimo_tp_truncate_write(void *buf, const unsigned long long *pairs, int n) {
  const uint32_t h[4] = {MIMO_TP_MSG_TRUNCATE, (uint32_t)n, 0, 0};
  memcpy(buf, h, 16);
  if (n)
    memcpy((char *)buf + 16, pairs, (size_t)n * 16);
}

mimo_status mimo_tp_truncate_parse(const void *buf, size_t bytes, int *n, const unsigned char **pairs) {
  uint32_t h[4];
  MIMO_TRY(read_header(buf, bytes, MIMO_TP_MSG_TRUNCATE, "step-back", h));
  if (h[1] < 1 || h[1] > MAX_SEQS || h[2] || h[3])
    return mimo_errf(MIMO_E_FORMAT, "step-back message: %u sequences, header words %u %u: out of range", h[1], h[2],
                     h[3]);
  if (mimo_tp_truncate_bytes((int)h[1]) != bytes)
    return mimo_errf(MIMO_E_FORMAT, "step-back message: %zu bytes, but %u sequences need %zu", bytes, h[1],
                     mimo_tp_truncate_bytes((int)h[1]));
  *n = (int)h[1];
  *pairs = (const unsigned char *)buf + 16;
  return MIMO_OK;
}

void mimo_tp_slack_write(void *buf, int slots) {
  const uint32_t h[4] = {MIMO_TP_MSG_SLACK, (uint32_t)slots, 0, 0};
  memcpy(buf, h, 16);
}

mimo_status mimo_tp_slack_parse(const void *buf, size_t bytes, int *slots) {
  uint32_t h[4] = {0};
  MIMO_TRY(read_header(buf, bytes, MIMO_TP_MSG_SLACK, "slack", h));
  if (bytes != 16 || h[1] > 64 || h[2] || h[3])
    return mimo_errf(MIMO_E_FORMAT, "slack message: %zu bytes, %u slots, header words %u %u: out of range", bytes,
                     h[1], h[2], h[3]);
  *slots = (int)h[1];
  return MIMO_OK;
}

size_t mimo_tp_embeds_bytes(const int32_t *runs, int n_runs, int hidden) {
  size_t rows = 0;
  for (int i = 0; i < n_runs; i++)
    rows += (size_t)runs[2 * i + 1];
  return 16 + (size_t)n_runs * 8 + rows * (size_t)hidden * 4;
}

void mimo_tp_embeds_write(void *buf, const int32_t *runs, int n_runs, int hidden, const float *const *rows) {
  const uint32_t h[4] = {MIMO_TP_MSG_EMBEDS, (uint32_t)n_runs, (uint32_t)hidden, 0};
  char *p = buf;
  memcpy(p, h, 16);
  memcpy(p + 16, runs, (size_t)n_runs * 8);
  p += 16 + (size_t)n_runs * 8;
  for (int i = 0; i < n_runs; i++) {
    const size_t b = (size_t)runs[2 * i + 1] * hidden * 4;
    memcpy(p, rows[i], b);
    p += b;
  }
}

mimo_status mimo_tp_embeds_parse(const void *buf, size_t bytes, int *n_runs, const int32_t **runs, int *hidden,
                                 const float **rows) {
  uint32_t h[4];
  MIMO_TRY(read_header(buf, bytes, MIMO_TP_MSG_EMBEDS, "embeddings", h));
  if (h[1] < 1 || h[1] > MAX_SEQS || h[2] < 1 || h[2] > 1 << 20 || h[3])
    return mimo_errf(MIMO_E_FORMAT, "embeddings message: %u runs of width %u, header word %u: out of range", h[1], h[2],
                     h[3]);
  const int n = (int)h[1];
  if (16 + (size_t)n * 8 > bytes)
    return mimo_errf(MIMO_E_FORMAT, "embeddings message: %zu bytes cannot hold %d runs", bytes, n);
  const int32_t *r = (const int32_t *)((const char *)buf + 16);
  size_t total = 0;
  for (int i = 0; i < n; i++) {
    if (r[2 * i] < 0 || r[2 * i] > MAX_TOKENS || r[2 * i + 1] < 1 || r[2 * i + 1] > MAX_TOKENS)
      return mimo_errf(MIMO_E_FORMAT, "embeddings message: run %d at %d of %d rows", i, r[2 * i], r[2 * i + 1]);
    total += (size_t)r[2 * i + 1];
  }
  if (total > MAX_TOKENS || 16 + (size_t)n * 8 + total * h[2] * 4 != bytes)
    return mimo_errf(MIMO_E_FORMAT, "embeddings message: %zu bytes, but its counts need %zu", bytes,
                     16 + (size_t)n * 8 + total * h[2] * 4);
  *n_runs = n;
  *runs = r;
  *hidden = (int)h[2];
  *rows = (const float *)(r + 2 * n);
  return MIMO_OK;
}
