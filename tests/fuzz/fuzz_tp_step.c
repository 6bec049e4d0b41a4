/* A step message from node 0 as a worker node receives it (bytes of any shape):
 * mimo_tp_step_parse either refuses it with a message or yields a view whose
 * every count and pointer lies inside the buffer (all of it is read here, so
 * ASan catches a view past the end), and writing the view back gives the bytes. Fork, embeddings, step-back and
 * slack messages likewise. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "model/mimo_v2_tp_msg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  void *buf = malloc(size ? size : 1); /* aligned like the receive buffer */
  if (!buf)
    return 0;
  memcpy(buf, data, size);
  if (mimo_tp_msg_op(buf, size) == MIMO_TP_MSG_FORK) { /* a fork message: the same promises */
    int n;
    const unsigned char *forks;
    if (mimo_tp_fork_parse(buf, size, &n, &forks) != MIMO_OK) {
      if (mimo_errmsg()[0] == 0)
        abort();
    } else {
      unsigned long long *f = malloc((size_t)n * 24);
      void *out = malloc(size);
      if (!f || !out || mimo_tp_fork_bytes(n) != size)
        abort();
      for (int i = 0; i < 3 * n; i++)
        f[i] = mimo_tp_msg_u64(forks, i);
      mimo_tp_fork_write(out, f, n);
      if (memcmp(out, buf, size) != 0)
        abort();
      free(f);
      free(out);
    }
    free(buf);
    return 0;
  }
  if (mimo_tp_msg_op(buf, size) == MIMO_TP_MSG_SLACK) {
    int slots;
    if (mimo_tp_slack_parse(buf, size, &slots) != MIMO_OK) {
      if (mimo_errmsg()[0] == 0)
        abort();
    } else {
      char out[16];
      if (size != 16 || slots < 0 || slots > 64)
        abort();
      mimo_tp_slack_write(out, slots);
      if (memcmp(out, buf, size) != 0)
        abort();
    }
    free(buf);
    return 0;
  }
  if (mimo_tp_msg_op(buf, size) == MIMO_TP_MSG_TRUNCATE) { /* a step-back message: the same promises */
    int n;
    const unsigned char *pairs;
    if (mimo_tp_truncate_parse(buf, size, &n, &pairs) != MIMO_OK) {
      if (mimo_errmsg()[0] == 0)
        abort();
    } else {
      unsigned long long *t = malloc((size_t)n * 16);
      void *out = malloc(size);
      if (!t || !out || mimo_tp_truncate_bytes(n) != size)
        abort();
      for (int i = 0; i < 2 * n; i++)
        t[i] = mimo_tp_msg_u64(pairs, i);
      mimo_tp_truncate_write(out, t, n);
      if (memcmp(out, buf, size) != 0)
        abort();
      free(t);
      free(out);
    }
    free(buf);
    return 0;
  }
  if (mimo_tp_msg_op(buf, size) == MIMO_TP_MSG_EMBEDS) { /* an embeddings message: the same promises */
    int n, hidden;
    const int32_t *runs;
    const float *rows;
    if (mimo_tp_embeds_parse(buf, size, &n, &runs, &hidden, &rows) != MIMO_OK) {
      if (mimo_errmsg()[0] == 0)
        abort();
    } else {
      const float **starts = malloc((size_t)n * sizeof *starts);
      void *out = malloc(size);
      if (!starts || !out || mimo_tp_embeds_bytes(runs, n, hidden) != size)
        abort();
      const float *r = rows;
      for (int i = 0; i < n; i++) {
        starts[i] = r;
        r += (size_t)runs[2 * i + 1] * hidden;
      }
      if ((const char *)r != (const char *)buf + size)
        abort();
      mimo_tp_embeds_write(out, runs, n, hidden, starts);
      if (memcmp(out, buf, size) != 0)
        abort();
      free((void *)starts);
      free(out);
    }
    free(buf);
    return 0;
  }
  mimo_tp_step_view v;
  if (mimo_tp_step_parse(buf, size, &v) != MIMO_OK) {
    if (mimo_errmsg()[0] == 0)
      abort();
    free(buf);
    return 0;
  }
  long long sum = 0;
  for (int i = 0; i < v.n_seqs; i++) {
    if (v.n_tokens[i] < 1)
      abort();
    sum += v.n_tokens[i] + (long long)(mimo_tp_msg_u64(v.uids, i) & 1);
  }
  for (int i = 0; i < v.n_tokens_total; i++)
    sum += v.tokens[i] & 1;
  for (int i = 0; i < v.n_freed; i++)
    sum += (long long)(mimo_tp_msg_u64(v.freed, i) & 1);
  unsigned long long *uids = malloc((size_t)v.n_seqs * 8), *freed = malloc((size_t)(v.n_freed ? v.n_freed : 1) * 8);
  void *out = malloc(size);
  if (!uids || !freed || !out)
    abort();
  for (int i = 0; i < v.n_seqs; i++)
    uids[i] = mimo_tp_msg_u64(v.uids, i);
  for (int i = 0; i < v.n_freed; i++)
    freed[i] = mimo_tp_msg_u64(v.freed, i);
  if (mimo_tp_step_bytes(v.n_seqs, v.n_tokens_total, v.n_freed) != size)
    abort();
  mimo_tp_step_write(out, v.n_seqs, v.all_logits, uids, (const int *)v.n_tokens, (const int *)v.tokens,
                     v.n_tokens_total, freed, v.n_freed);
  if (memcmp(out, buf, size) != 0 || sum < 0)
    abort();
  free(uids);
  free(freed);
  free(out);
  free(buf);
  return 0;
}
