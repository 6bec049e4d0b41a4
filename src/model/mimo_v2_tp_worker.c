/* Tensor parallel over several processes (docs/multi-gpu.md), the cache side: node 0's copies and step-backs of a
 * sequence's shards, each told to the worker nodes by a message; and the worker nodes' loop, which runs node 0's
 * steps and applies its cache messages. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "model/mimo_v2_tp.h"
#include "model/mimo_v2_tp_internal.h"
#include "model/mimo_v2_tp_msg.h"
#include "model/mimo_v2_tp_net.h"

/* The forked copy on this process's ranks: dst's shards continue from src's. */
static mimo_status fork_local(struct mimo_tp_group *g, mimo_kv_seq *dst, mimo_kv_seq *src, int len) {
  if (dst->n_shards || dst->len)
    return mimo_errf(MIMO_E_INVALID, "KV fork: the new sequence has already run");
  if (!len)
    return MIMO_OK;
  if (src->n_shards != g->tp)
    return mimo_errf(MIMO_E_INVALID, "KV fork: the sequence was started on another model");
  dst->shards = calloc((size_t)g->tp, sizeof *dst->shards);
  if (!dst->shards)
    return mimo_errf(MIMO_E_NOMEM, "KV cache shards");
  dst->n_shards = g->tp;
  for (int r = 0; r < g->tp; r++) {
    MIMO_TRY(mimo_kv_seq_init(&dst->shards[r], &g->ranks[r]->cfg));
    mimo_status st = mimo_kv_fork(dst->shards[r], src->shards[r], len);
    if (st != MIMO_OK)
      return mimo_err_prefix(st, "rank %d", r);
  }
  dst->len = len;
  return MIMO_OK;
}

mimo_status mimo_tp_kv_fork(mimo_model *m, mimo_kv_seq *dst, mimo_kv_seq *src, int len) {
  struct mimo_tp_group *g = m->group;
  if (!g->net)
    return fork_local(g, dst, src, len);
  if (g->node != 0)
    return mimo_errf(MIMO_E_INVALID, "node %d forks caches only as node 0 tells it", g->node);
  if (!len)
    return MIMO_OK;
  if (!src->uid)
    return mimo_errf(MIMO_E_INVALID, "KV fork: the sequence has not run on this group");
  /* the workers copy theirs too: the message now, then every node's outcome */
  dst->uid = ++g->next_uid;
  dst->on_free = mimo_tp_seq_freed;
  dst->on_free_ctx = g;
  const unsigned long long fork[3] = {src->uid, dst->uid, (unsigned long long)len};
  char msg[64];
  mimo_tp_fork_write(msg, fork, 1);
  MIMO_TRY(mimo_tp_net_send_msg(g->net, msg, mimo_tp_fork_bytes(1)));
  return mimo_tp_agree(g, fork_local(g, dst, src, len), "forking a KV cache");
}

/* The shards of this process step back to len. */
static mimo_status truncate_local(struct mimo_tp_group *g, mimo_kv_seq *s, int len) {
  if (len > s->len)
    return mimo_errf(MIMO_E_INVALID, "cannot step a sequence of %d positions back to %d", s->len, len);
  for (int r = 0; r < s->n_shards; r++) {
    mimo_status st = mimo_kv_seq_truncate(s->shards[r], len);
    if (st != MIMO_OK)
      return mimo_err_prefix(st, "rank %d", r);
  }
  (void)g;
  s->len = len;
  return MIMO_OK;
}

mimo_status mimo_tp_kv_truncate(mimo_model *m, mimo_kv_seq *s, int len) {
  struct mimo_tp_group *g = m->group;
  if (g->net && g->node != 0)
    return mimo_errf(MIMO_E_INVALID, "node %d steps caches back only as node 0 tells it", g->node);
  if (len == s->len)
    return MIMO_OK;
  MIMO_TRY(truncate_local(g, s, len)); /* checked here first: a step back node 0 refuses is never sent */
  if (!g->net || !s->uid)
    return MIMO_OK;
  const unsigned long long t[2] = {s->uid, (unsigned long long)len};
  char msg[32];
  mimo_tp_truncate_write(msg, t, 1);
  return mimo_tp_net_send_msg(g->net, msg, mimo_tp_truncate_bytes(1));
}

/* Where the worker keeps sequence uid (-1: it holds none). */
static int wseq_index(const struct mimo_tp_group *g, unsigned long long uid) {
  for (int i = 0; i < g->n_wseqs; i++)
    if (g->wseqs[i]->uid == uid)
      return i;
  return -1;
}

/* Sequence uid, made on first use. */
static mimo_kv_seq *worker_seq(mimo_model *m, unsigned long long uid) {
  struct mimo_tp_group *g = m->group;
  const int at = wseq_index(g, uid);
  if (at >= 0)
    return g->wseqs[at];
  if (g->n_wseqs == g->cap_wseqs) {
    int cap = g->cap_wseqs ? 2 * g->cap_wseqs : 64;
    mimo_kv_seq **n = realloc(g->wseqs, (size_t)cap * sizeof *n);
    if (!n)
      return NULL;
    g->wseqs = n;
    g->cap_wseqs = cap;
  }
  mimo_kv_seq *s;
  if (mimo_kv_seq_init(&s, &m->cfg) != MIMO_OK)
    return NULL;
  s->uid = uid;
  g->wseqs[g->n_wseqs++] = s;
  return s;
}

static void worker_free(struct mimo_tp_group *g, unsigned long long uid) {
  const int at = wseq_index(g, uid);
  if (at < 0)
    return;
  mimo_kv_seq_free(g->wseqs[at]);
  g->wseqs[at] = g->wseqs[--g->n_wseqs];
}

/* Node 0 forked caches: the same here, then every node's outcome (a failed copy is freed by node 0, which then
 * tells the workers to free theirs). */
static mimo_status worker_forks(mimo_model *m, const void *buf, size_t bytes) {
  struct mimo_tp_group *g = m->group;
  int n;
  const unsigned char *forks;
  if (mimo_tp_fork_parse(buf, bytes, &n, &forks) != MIMO_OK)
    return mimo_err_prefix(MIMO_E_FORMAT, "node %d: from node 0", g->node);
  mimo_status st = MIMO_OK;
  for (int i = 0; i < n && st == MIMO_OK; i++) {
    const unsigned long long from = mimo_tp_msg_u64(forks, 3 * i), to = mimo_tp_msg_u64(forks, 3 * i + 1);
    const unsigned long long len = mimo_tp_msg_u64(forks, 3 * i + 2);
    const int at = wseq_index(g, from);
    mimo_kv_seq *src = at >= 0 ? g->wseqs[at] : NULL;
    mimo_kv_seq *dst = src ? worker_seq(m, to) : NULL;
    st = !src          ? mimo_errf(MIMO_E_INVALID, "node %d: fork of sequence %llu, which it does not hold", g->node, from)
         : !dst        ? mimo_errf(MIMO_E_NOMEM, "sequence")
         : len > 1u << 30 ? mimo_errf(MIMO_E_FORMAT, "node %d: fork of %llu positions", g->node, len)
                       : fork_local(g, dst, src, (int)len);
  }
  st = mimo_tp_agree(g, st, "forking a KV cache");
  if (st != MIMO_OK)
    mimo_warn("node %d: %s", g->node, mimo_errmsg());
  return st;
}

mimo_status mimo_tp_set_kv_slack(mimo_model *m, int slack) {
  struct mimo_tp_group *g = m->group;
  for (int r = 0; r < g->tp; r++)
    if (g->ranks[r]->kv_pool)
      return mimo_errf(MIMO_E_INVALID, "the KV ring slack is set before the model's first step");
  for (int r = 0; r < g->tp; r++)
    g->ranks[r]->cfg.kv_ring_slack = slack;
  m->cfg.kv_ring_slack = slack;
  if (!g->net || g->node != 0)
    return MIMO_OK;
  char msg[16];
  mimo_tp_slack_write(msg, slack);
  return mimo_tp_net_send_msg(g->net, msg, sizeof msg);
}

/* Node 0 stepped sequences back (rejected speculative tokens): the same here. Node 0 checked each step back
 * against its own shards, which are made like these, so a failure here means the nodes no longer agree. */
static mimo_status worker_truncates(mimo_model *m, const void *buf, size_t bytes) {
  struct mimo_tp_group *g = m->group;
  int n;
  const unsigned char *t;
  if (mimo_tp_truncate_parse(buf, bytes, &n, &t) != MIMO_OK)
    return mimo_err_prefix(MIMO_E_FORMAT, "node %d: from node 0", g->node);
  for (int i = 0; i < n; i++) {
    const unsigned long long uid = mimo_tp_msg_u64(t, 2 * i), len = mimo_tp_msg_u64(t, 2 * i + 1);
    const int at = wseq_index(g, uid);
    if (at < 0)
      return mimo_errf(MIMO_E_FORMAT, "node %d: step back of sequence %llu, which it does not hold", g->node, uid);
    if (len > (unsigned long long)g->wseqs[at]->len)
      return mimo_errf(MIMO_E_FORMAT, "node %d: step back of sequence %llu to %llu of its %d positions", g->node,
                       uid, len, g->wseqs[at]->len);
    MIMO_TRY(truncate_local(g, g->wseqs[at], (int)len));
  }
  return MIMO_OK;
}

/* An embeddings message from node 0: kept (with its buffer) for the step message that follows. */
static mimo_status worker_embeds(mimo_model *m, void *buf, size_t bytes, void **held, mimo_embed_run **runs, int *n) {
  int k = 0, hidden = 0;
  const int32_t *r;
  const float *rows;
  if (mimo_tp_embeds_parse(buf, bytes, &k, &r, &hidden, &rows) != MIMO_OK)
    return mimo_err_prefix(MIMO_E_FORMAT, "node %d: from node 0", m->group->node);
  if (hidden != m->cfg.hidden_size)
    return mimo_errf(MIMO_E_FORMAT, "node %d: embeddings of width %d from node 0; the model's is %d", m->group->node,
                     hidden, m->cfg.hidden_size);
  mimo_embed_run *e = malloc((size_t)k * sizeof *e);
  if (!e)
    return mimo_errf(MIMO_E_NOMEM, "embeddings");
  for (int i = 0; i < k; i++) {
    e[i] = (mimo_embed_run){.at = r[2 * i], .n = r[2 * i + 1], .rows = rows};
    rows += (size_t)r[2 * i + 1] * hidden;
  }
  free(*held);
  free(*runs);
  *held = buf;
  *runs = e;
  *n = k;
  return MIMO_OK;
}

mimo_status mimo_model_run_worker(mimo_model *m) {
  struct mimo_tp_group *g = m->group;
  if (!g || !g->net || g->node == 0)
    return mimo_errf(MIMO_E_INVALID, "not a worker node of a tensor-parallel group");
  void *emb_buf = NULL; /* the last embeddings message, for the next step */
  mimo_embed_run *emb = NULL;
  int n_emb = 0;
  for (long steps = 0;; steps++) {
    void *buf = NULL;
    size_t bytes = 0;
    mimo_status rst = mimo_tp_net_recv_msg(g->net, &buf, &bytes);
    if (rst == MIMO_OK && mimo_tp_msg_op(buf, bytes) == MIMO_TP_MSG_EMBEDS) {
      rst = worker_embeds(m, buf, bytes, &emb_buf, &emb, &n_emb);
      if (rst == MIMO_OK) {
        steps--;
        continue;
      }
      free(buf);
    }
    if (rst != MIMO_OK) {
      free(emb_buf);
      free(emb);
      return rst;
    }
    if (mimo_tp_msg_op(buf, bytes) == MIMO_TP_MSG_QUIT) {
      free(buf);
      free(emb_buf);
      free(emb);
      mimo_info("node %d: node 0 ended the group after %ld steps", g->node, steps);
      return MIMO_OK;
    }
    if (mimo_tp_msg_op(buf, bytes) == MIMO_TP_MSG_SLACK) {
      int slots = 0;
      mimo_status st = mimo_tp_slack_parse(buf, bytes, &slots);
      free(buf);
      if (st == MIMO_OK)
        st = mimo_tp_set_kv_slack(m, slots);
      if (st != MIMO_OK) {
        free(emb_buf);
        free(emb);
        return mimo_err_prefix(st, "node %d", g->node);
      }
      continue;
    }
    if (mimo_tp_msg_op(buf, bytes) == MIMO_TP_MSG_TRUNCATE) {
      mimo_status st = worker_truncates(m, buf, bytes);
      free(buf);
      if (st != MIMO_OK) { /* its caches no longer match node 0's: no later step would be right */
        free(emb_buf);
        free(emb);
        return mimo_err_prefix(st, "node %d", g->node);
      }
      continue;
    }
    if (mimo_tp_msg_op(buf, bytes) == MIMO_TP_MSG_FORK) {
      mimo_status st = worker_forks(m, buf, bytes);
      free(buf);
      if (st == MIMO_E_IO || st == MIMO_E_FORMAT) {
        free(emb_buf);
        free(emb);
        return st;
      }
      continue;
    }
    mimo_tp_step_view v;
    if (mimo_tp_step_parse(buf, bytes, &v) != MIMO_OK) {
      free(buf);
      free(emb_buf);
      free(emb);
      return mimo_err_prefix(MIMO_E_FORMAT, "node %d: from node 0", g->node);
    }
    for (int i = 0; i < v.n_freed; i++)
      worker_free(g, mimo_tp_msg_u64(v.freed, i));
    mimo_kv_seq **seqs = malloc((size_t)v.n_seqs * sizeof *seqs);
    mimo_status st = seqs ? MIMO_OK : mimo_errf(MIMO_E_NOMEM, "batch");
    for (int i = 0; st == MIMO_OK && i < v.n_seqs; i++)
      if (!(seqs[i] = worker_seq(m, mimo_tp_msg_u64(v.uids, i))))
        st = mimo_errf(MIMO_E_NOMEM, "sequence");
    mimo_batch b = {.n_seqs = v.n_seqs, .seqs = seqs, .n_tokens = v.n_tokens, .tokens = v.tokens,
                    .all_logits = v.all_logits, .embeds = emb, .n_embeds = n_emb};
    if (st == MIMO_OK)
      st = mimo_tp_step(m, &b, NULL);
    else /* still take part in the step's first agreement, saying no */
      st = mimo_tp_agree(g, st, "preparing the step");
    free(seqs);
    free(buf);
    free(emb_buf); /* the rows were this step's */
    free(emb);
    emb_buf = NULL;
    emb = NULL;
    n_emb = 0;
    if (st != MIMO_OK)
      mimo_warn("node %d: step %ld: %s", g->node, steps, mimo_errmsg());
    if (st == MIMO_E_IO)
      return st; /* the link is gone */
  }
}

