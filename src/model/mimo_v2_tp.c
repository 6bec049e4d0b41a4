/* Tensor parallel in one process: one thread per rank (docs/multi-gpu.md says
 * why threads), each driving its own backend and its own slice of the weights.
 * The caller's step is handed to every rank; partial sums meet in the backends'
 * all_reduce (NCCL between GPUs; between CPU backends the host sum below, which
 * lets the CI check the sharding on a machine without GPUs). */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/log.h"
#include "model/mimo_v2_tp.h"
#include "model/mimo_v2_tp_internal.h"
#include "model/mimo_v2_tp_msg.h"
#include "model/mimo_v2_tp_net.h"

/* Grows *p to hold n floats (kept on failure; false then). */
static bool grow_floats(float **p, long *cap, long n) {
  if (*cap >= n)
    return true;
  float *q = realloc(*p, (size_t)n * sizeof *q);
  if (!q)
    return false;
  *p = q;
  *cap = n;
  return true;
}

/* Sum over the ranks, identical everywhere. One process: rank r adds up its 1/tp of the elements over all
 * ranks (in rank order, so the result does not depend on timing) and writes the sum back to every rank's
 * buffer. Several: the first rank adds this node's buffers and the nodes' sums meet through node 0. Ranks
 * whose backend has its own memory (GPUs sharing one card, where NCCL cannot run) go through a host copy. */
static void host_all_reduce(mimo_backend *be, float *x, long n) {
  rank_slot *s = be->comm;
  struct mimo_tp_group *g = s->g;
  float *hx = x;
  if (be->download) /* a failed copy still takes part in the barriers; its error surfaces at download */
    hx = grow_floats(&s->stage, &s->stage_n, n) && be->download(be, s->stage, x, (size_t)n) == MIMO_OK ? s->stage
                                                                                                      : NULL;
  g->xs[s->rank] = hx;
  pthread_barrier_wait(&g->bar);
  bool ok = true;
  for (int r = 0; r < g->tp; r++)
    ok &= g->xs[r] != NULL;
  if (ok && !g->net) {
    for (long i = n * s->rank / g->tp, i1 = n * (s->rank + 1) / g->tp; i < i1; i++) {
      float sum = 0.0f;
      for (int r = 0; r < g->tp; r++)
        sum += g->xs[r][i];
      for (int r = 0; r < g->tp; r++)
        g->xs[r][i] = sum;
    }
  } else if (ok && s->rank == 0) {
    if (grow_floats(&g->red, &g->red_n, n)) {
      for (long i = 0; i < n; i++) {
        float sum = 0.0f;
        for (int r = 0; r < g->tp; r++)
          sum += g->xs[r][i];
        g->red[i] = sum;
      }
      if (mimo_tp_net_allreduce(g->net, g->red, n) != MIMO_OK)
        mimo_warn("all-reduce between nodes failed: %s", mimo_errmsg());
      for (int r = 0; r < g->tp; r++)
        memcpy(g->xs[r], g->red, (size_t)n * sizeof(float));
    }
  }
  pthread_barrier_wait(&g->bar);
  if (ok && hx != x && be->upload(be, x, hx, (size_t)n) != MIMO_OK)
    mimo_warn("rank %d: all-reduce upload failed: %s", s->rank, mimo_errmsg());
}

static mimo_status rank_load(struct mimo_tp_group *g, int r) {
  mimo_model *m = g->ranks[r], *top = g->top;
  mimo_backend *be = m->be;
  double t0 = mimo_now();
  MIMO_TRY(mimo_tp_rank_globals(m, &top->cfg, &top->w, g->net == NULL));
  MIMO_TRY(mimo_model_upload_globals(be, &m->w));
  for (int L = 0; L < top->w.n_layers; L++) {
    MIMO_TRY(mimo_tp_rank_layer(m, &top->cfg, &top->w, L));
    int n_experts = m->n_local ? m->n_local : top->cfg.n_routed_experts;
    MIMO_TRY(mimo_model_upload_layer(be, &m->w.layers[L], n_experts));
    if (be->upload_linear) /* the device has its copy: drop the host one */
      mimo_tp_release_copies(m);
    atomic_fetch_add(&g->slots[r].layers_done, 1);
  }
  g->slots[r].load_s = mimo_now() - t0;
  if (!isatty(2)) /* no progress bar: one line per rank instead */
    fprintf(stderr, "mimo: rank %d of %d (%s) loaded %d layers in %.2f s\n", m->rank, m->tp, be->name,
            top->w.n_layers, g->slots[r].load_s);
  return MIMO_OK;
}

static mimo_status rank_run(struct mimo_tp_group *g, int r, int job);

/* Reserve on this rank, then wait for all: every rank sees every rank's outcome, and all skip the forward
 * pass if one failed (the failed rank reports why; the others say they stopped for it). */
static mimo_status rank_step(struct mimo_tp_group *g, int r) {
  rank_slot *s = &g->slots[r];
  mimo_status st = rank_run(g, r, JOB_RESERVE);
  s->st = st;
  if (st != MIMO_OK)
    snprintf(s->msg, sizeof s->msg, "%s", mimo_errmsg());
  pthread_barrier_wait(&g->bar);
  int failed = -1;
  for (int q = 0; q < g->tp && failed < 0; q++)
    if (g->slots[q].st != MIMO_OK)
      failed = q;
  if (r == 0)
    g->reserved = failed < 0;
  pthread_barrier_wait(&g->bar); /* every rank has read the outcomes before any slot is written again */
  if (failed >= 0)
    return st != MIMO_OK ? mimo_errf(st, "%s", s->msg)
                         : mimo_errf(MIMO_E_CANCELLED, "stopped: rank %d could not prepare the step", failed);
  return rank_run(g, r, JOB_FORWARD);
}

static mimo_status rank_run(struct mimo_tp_group *g, int r, int job) {
  rank_slot *s = &g->slots[r];
  mimo_model *m = g->ranks[r];
  if (job == JOB_LOAD)
    return rank_load(g, r);
  if (job == JOB_STEP)
    return rank_step(g, r);
  if (job == JOB_RESERVE) {
    int T = 0;
    for (int i = 0; i < s->batch.n_seqs; i++) {
      MIMO_TRY(mimo_model_kv_reserve(m, s->seqs[i], s->seqs[i]->len + s->batch.n_tokens[i]));
      T += s->batch.n_tokens[i];
    }
    /* device ranks: the step's activations too (the block cache keeps them for the forward pass) */
    return m->be->download && T > 0 ? mimo_model_warm_scratch(m, T) : MIMO_OK;
  }
  /* One process: each rank writes its vocabulary slice. Several: every rank has the
   * whole lm_head and the first rank of node 0 alone delivers the logits. */
  float *logits = !g->net || (g->node == 0 && r == 0) ? g->logits : NULL;
  return mimo_model_forward_local(m, &s->batch, logits);
}

static void *rank_thread(void *arg) {
  rank_slot *s = arg;
  struct mimo_tp_group *g = s->g;
  mimo_backend *be = g->ranks[s->rank]->be;
  mimo_status bound = be->bind_thread ? be->bind_thread(be) : MIMO_OK;
  char bound_msg[1024];
  snprintf(bound_msg, sizeof bound_msg, "%s", bound != MIMO_OK ? mimo_errmsg() : "");
  unsigned seen = 0;
  for (;;) {
    pthread_mutex_lock(&g->mu);
    while (g->job_id == seen)
      pthread_cond_wait(&g->cv, &g->mu);
    seen = g->job_id;
    int job = g->job;
    pthread_mutex_unlock(&g->mu);
    if (job == JOB_QUIT)
      break;
    mimo_status st = bound != MIMO_OK ? bound : rank_run(g, s->rank, job);
    s->st = st;
    snprintf(s->msg, sizeof s->msg, "%s", bound != MIMO_OK ? bound_msg : st != MIMO_OK ? mimo_errmsg() : "");
    pthread_mutex_lock(&g->mu);
    g->pending--;
    pthread_cond_broadcast(&g->cv);
    pthread_mutex_unlock(&g->mu);
  }
  return NULL;
}

static void show_progress(struct mimo_tp_group *g, int final) {
  if (!isatty(2))
    return;
  int total = g->top->w.n_layers * g->tp, done = 0;
  for (int r = 0; r < g->tp; r++)
    done += atomic_load(&g->slots[r].layers_done);
  int width = 30, fill = total ? done * width / total : width;
  fprintf(stderr, "\rloading %d ranks [%.*s%*s] %d/%d layers%s", g->tp, fill, "##############################",
          width - fill, "", done, total, final ? "\n" : "");
}

/* Runs one job on every rank and waits; the first rank's error is returned. */
static mimo_status post(struct mimo_tp_group *g, int job) {
  pthread_mutex_lock(&g->mu);
  g->job = job;
  g->pending = g->tp;
  g->job_id++;
  pthread_cond_broadcast(&g->cv);
  while (g->pending > 0) {
    if (job == JOB_LOAD) {
      struct timespec ts;
      clock_gettime(CLOCK_REALTIME, &ts);
      ts.tv_nsec += 250 * 1000000L;
      if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
      }
      pthread_cond_timedwait(&g->cv, &g->mu, &ts);
      show_progress(g, 0);
    } else {
      pthread_cond_wait(&g->cv, &g->mu);
    }
  }
  pthread_mutex_unlock(&g->mu);
  if (job == JOB_LOAD)
    show_progress(g, 1);
  int bad = -1; /* the rank that failed, before the ones that stopped for it */
  for (int r = 0; r < g->tp; r++)
    if (g->slots[r].st != MIMO_OK && (bad < 0 || (g->slots[bad].st == MIMO_E_CANCELLED && g->slots[r].st != MIMO_E_CANCELLED)))
      bad = r;
  if (bad >= 0)
    return mimo_errf(g->slots[bad].st, "rank %d of %d: %s", bad, g->tp, g->slots[bad].msg);
  return MIMO_OK;
}

void mimo_tp_seq_freed(void *ctx, unsigned long long uid) {
  struct mimo_tp_group *g = ctx;
  pthread_mutex_lock(&g->free_mu);
  if (g->n_freed == g->cap_freed) {
    int cap = g->cap_freed ? 2 * g->cap_freed : 64;
    unsigned long long *n = realloc(g->freed, (size_t)cap * sizeof *n);
    if (n) {
      g->freed = n;
      g->cap_freed = cap;
    }
  }
  if (g->n_freed < g->cap_freed) /* else the workers keep that cache until they exit */
    g->freed[g->n_freed++] = uid;
  pthread_mutex_unlock(&g->free_mu);
}

size_t mimo_model_kv_pool_bytes(mimo_model *m) {
  size_t b = 0;
  if (m->kv_pool)
    b += mimo_kv_pool_bytes(m->kv_pool);
  for (int r = 0; m->group && r < m->group->tp; r++)
    b += mimo_model_kv_pool_bytes(m->group->ranks[r]);
  return b;
}

mimo_status mimo_model_set_kv_bf16(mimo_model *m, bool bf16) {
  struct mimo_tp_group *g = m->group;
  if (m->kv_pool)
    return mimo_errf(MIMO_E_INVALID, "the KV cache type is set before the first step");
  for (int r = 0; g && r < g->tp; r++)
    MIMO_TRY(mimo_model_set_kv_bf16(g->ranks[r], bf16));
  m->kv_bf16 = bf16;
  return MIMO_OK;
}

void mimo_tp_free(mimo_model *m) {
  struct mimo_tp_group *g = m->group;
  if (!g)
    return;
  if (g->net && g->node == 0) {
    uint32_t quit[4] = {MIMO_TP_MSG_QUIT, 0, 0, 0};
    if (mimo_tp_net_send_msg(g->net, quit, sizeof quit) != MIMO_OK)
      mimo_warn("telling the worker nodes to stop: %s", mimo_errmsg());
  }
  if (g->n_threads) {
    pthread_mutex_lock(&g->mu);
    g->job = JOB_QUIT;
    g->job_id++;
    pthread_cond_broadcast(&g->cv);
    pthread_mutex_unlock(&g->mu);
    for (int r = 0; r < g->n_threads; r++)
      pthread_join(g->threads[r], NULL);
  }
  for (int i = 0; i < g->n_wseqs; i++)
    mimo_kv_seq_free(g->wseqs[i]);
  free(g->wseqs);
  for (int r = 0; r < g->tp; r++) {
    mimo_model_free(g->ranks[r]);
    if (g->slots) {
      free(g->slots[r].seqs);
      free(g->slots[r].stage);
    }
  }
  mimo_tp_net_close(g->net);
  pthread_barrier_destroy(&g->bar);
  pthread_cond_destroy(&g->cv);
  pthread_mutex_destroy(&g->mu);
  pthread_mutex_destroy(&g->free_mu);
  free(g->freed);
  free(g->red);
  free(g->ranks);
  free(g->slots);
  free(g->threads);
  free(g->xs);
  free(g);
  m->group = NULL;
}

/* A load that fails before the group owns them frees the backends and the link it was handed. */
static void give_back(mimo_backend **bes, int tp, mimo_tp_net *net) {
  for (int r = 0; r < tp; r++)
    bes[r]->free(bes[r]);
  mimo_tp_net_close(net);
}

static mimo_status group_init(mimo_model *top, mimo_backend **bes, int tp, bool ep, mimo_tp_net *net) {
  struct mimo_tp_group *g = calloc(1, sizeof *g);
  if (!g) {
    give_back(bes, tp, net);
    return mimo_errf(MIMO_E_NOMEM, "tensor-parallel group");
  }
  top->group = g;
  g->tp = tp;
  g->net = net;
  g->node = net ? mimo_tp_net_rank(net) : 0;
  g->global_tp = tp * (net ? mimo_tp_net_nodes(net) : 1);
  g->top = top;
  top->tp = g->global_tp;
  pthread_mutex_init(&g->mu, NULL);
  pthread_mutex_init(&g->free_mu, NULL);
  pthread_cond_init(&g->cv, NULL);
  pthread_barrier_init(&g->bar, NULL, (unsigned)tp);
  g->ranks = calloc((size_t)tp, sizeof *g->ranks);
  g->slots = calloc((size_t)tp, sizeof *g->slots);
  g->threads = calloc((size_t)tp, sizeof *g->threads);
  g->xs = calloc((size_t)tp, sizeof *g->xs);
  mimo_status st = g->ranks && g->slots && g->threads && g->xs ? MIMO_OK : mimo_errf(MIMO_E_NOMEM, "tensor-parallel group");
  for (int r = 0; r < tp; r++) { /* from here the ranks own the backends */
    mimo_model *m = st == MIMO_OK ? calloc(1, sizeof *m) : NULL;
    if (!m) {
      bes[r]->free(bes[r]);
      st = st == MIMO_OK ? mimo_errf(MIMO_E_NOMEM, "rank %d", r) : st;
      continue;
    }
    g->ranks[r] = m;
    m->be = bes[r];
    m->own_be = true;
    m->tp = g->global_tp;
    m->rank = g->node * tp + r;
    m->ep = ep;
    m->gen = top->gen;
    g->slots[r].g = g;
    g->slots[r].rank = r;
    if (!bes[r]->all_reduce) {
      bes[r]->all_reduce = host_all_reduce;
      bes[r]->comm = &g->slots[r];
    }
    if (st == MIMO_OK)
      st = mimo_tp_rank_config(&top->cfg, m->tp, m->rank, ep, &m->cfg);
  }
  for (int r = 0; st == MIMO_OK && r < tp; r++) {
    if (pthread_create(&g->threads[r], NULL, rank_thread, &g->slots[r]) != 0)
      st = mimo_errf(MIMO_E_INTERNAL, "cannot start the thread of rank %d", r);
    else
      g->n_threads++;
  }
  if (st == MIMO_OK && g->n_threads < tp)
    st = MIMO_E_INTERNAL;
  return st;
}

mimo_status mimo_model_load_tp(const char *dir, mimo_backend **bes, int tp, bool ep, mimo_tp_net *net,
                               mimo_model **out) {
  mimo_model *m = tp >= 1 ? calloc(1, sizeof *m) : NULL;
  if (!m) {
    give_back(bes, tp, net);
    return tp >= 1 ? mimo_errf(MIMO_E_NOMEM, "model") : mimo_errf(MIMO_E_INVALID, "no ranks");
  }
  mimo_status st = mimo_model_bind(dir, m);
  if (st == MIMO_OK)
    st = group_init(m, bes, tp, ep, net);
  else
    give_back(bes, tp, net);
  double t0 = mimo_now();
  if (st == MIMO_OK)
    st = post(m->group, JOB_LOAD);
  if (st != MIMO_OK) {
    mimo_status keep = st;
    char msg[1024];
    snprintf(msg, sizeof msg, "%s", mimo_errmsg());
    mimo_model_free(m);
    return mimo_errf(keep, "%s", msg);
  }
  mimo_info("tensor parallel %d%s%s: loaded %s in %.2f s", m->group->global_tp, ep ? ", expert parallel" : "",
            net ? ", several processes" : "", dir, mimo_now() - t0);
  *out = m;
  return MIMO_OK;
}

/* Every node agrees on the step's outcome, so that none waits in a collective
 * for one that gave up. */
mimo_status mimo_tp_agree(struct mimo_tp_group *g, mimo_status st, const char *what) {
  if (!g->net)
    return st;
  char msg[1024];
  snprintf(msg, sizeof msg, "%s", st != MIMO_OK ? mimo_errmsg() : "");
  int code = (int)st, node = -1;
  MIMO_TRY(mimo_tp_net_agree(g->net, &code, &node));
  if (code == MIMO_OK)
    return MIMO_OK;
  if (node == g->node)
    return mimo_errf((mimo_status)code, "%s", msg);
  return mimo_errf((mimo_status)code, "%s failed on node %d (its log says why)", what, node);
}

/* Sampling where the logits are: several processes deliver them on node 0's first rank, which holds the whole
 * lm_head; one process gathers the ranks' vocabulary slices on every rank (final_rows) for rank 0 to sample. */
bool mimo_tp_samples_on_device(const mimo_model *m) {
  const struct mimo_tp_group *g = m->group;
  const mimo_model *r0 = g->ranks[0];
  if (g->net)
    return g->node == 0 && r0->be->sample && r0->vocab_n == r0->cfg.vocab_size;
  for (int r = 0; r < g->tp; r++) {
    const mimo_backend *be = g->ranks[r]->be;
    if (!be->zero || !be->all_reduce || !be->copy2d)
      return false;
  }
  return r0->be->sample != NULL;
}

/* The step on this process's ranks (every node runs it with the same batch). */
static mimo_status tp_prepare(struct mimo_tp_group *g, const mimo_batch *b) {
  for (int i = 0; i < b->n_seqs; i++) {
    mimo_kv_seq *s = b->seqs[i];
    if (s->n_shards)
      continue;
    if (s->len)
      return mimo_errf(MIMO_E_INVALID, "sequence %d was started on another model", i);
    s->shards = calloc((size_t)g->tp, sizeof *s->shards);
    if (!s->shards)
      return mimo_errf(MIMO_E_NOMEM, "KV cache shards");
    s->n_shards = g->tp;
    for (int r = 0; r < g->tp; r++)
      MIMO_TRY(mimo_kv_seq_init(&s->shards[r], &g->ranks[r]->cfg));
  }
  for (int r = 0; r < g->tp; r++) {
    rank_slot *sl = &g->slots[r];
    if (sl->cap_seqs < b->n_seqs) {
      mimo_kv_seq **n = realloc(sl->seqs, (size_t)b->n_seqs * sizeof *n);
      if (!n)
        return mimo_errf(MIMO_E_NOMEM, "batch");
      sl->seqs = n;
      sl->cap_seqs = b->n_seqs;
    }
    for (int i = 0; i < b->n_seqs; i++)
      sl->seqs[i] = b->seqs[i]->shards[r];
    sl->batch = *b;
    sl->batch.seqs = sl->seqs;
    if (g->net && (g->node != 0 || r != 0)) /* only the rank that delivers the logits samples them */
      sl->batch.jobs = NULL;
    if (g->node != 0 || r != 0) /* every rank has the same hidden states; rank 0 of node 0 hands them out */
      sl->batch.hidden_out = NULL;
  }
  return MIMO_OK;
}

/* The step on this process's ranks (every node runs it with the same batch). */
mimo_status mimo_tp_step(mimo_model *m, const mimo_batch *b, float *logits) {
  struct mimo_tp_group *g = m->group;
  g->logits = logits;
  /* Reserve first on every rank, so that a rank out of memory fails the step before any rank waits in a
   * collective for it. */
  if (!g->net) {
    MIMO_TRY(tp_prepare(g, b));
    g->reserved = false;
    const mimo_status st = post(g, JOB_STEP);
    m->step_skipped = !g->reserved; /* a rank's reservation failed: no rank computed */
    MIMO_TRY(st);
  } else {
    mimo_status st = tp_prepare(g, b);
    MIMO_TRY(mimo_tp_agree(g, st == MIMO_OK ? post(g, JOB_RESERVE) : st, "preparing the step"));
    m->step_skipped = false;
    MIMO_TRY(mimo_tp_agree(g, post(g, JOB_FORWARD), "the forward pass"));
  }
  for (int i = 0; i < b->n_seqs; i++)
    b->seqs[i]->len += b->n_tokens[i];
  return MIMO_OK;
}

/* Node 0 tells the workers the step (model/mimo_v2_tp_msg.h). */
static mimo_status send_step(struct mimo_tp_group *g, const mimo_batch *b) {
  int T = 0;
  unsigned long long *uids = malloc((size_t)b->n_seqs * sizeof *uids);
  if (!uids)
    return mimo_errf(MIMO_E_NOMEM, "step message");
  for (int i = 0; i < b->n_seqs; i++) {
    mimo_kv_seq *s = b->seqs[i];
    if (!s->uid) {
      s->uid = ++g->next_uid;
      s->on_free = mimo_tp_seq_freed;
      s->on_free_ctx = g;
    }
    uids[i] = s->uid;
    T += b->n_tokens[i];
  }
  pthread_mutex_lock(&g->free_mu);
  int nf = g->n_freed;
  size_t bytes = mimo_tp_step_bytes(b->n_seqs, T, nf);
  char *msg = malloc(bytes);
  if (msg) {
    mimo_tp_step_write(msg, b->n_seqs, b->all_logits, uids, b->n_tokens, b->tokens, T, g->freed, nf);
    g->n_freed = 0;
  }
  pthread_mutex_unlock(&g->free_mu);
  free(uids);
  if (!msg)
    return mimo_errf(MIMO_E_NOMEM, "step message");
  mimo_status st = mimo_tp_net_send_msg(g->net, msg, bytes);
  free(msg);
  return st;
}

/* The step's image rows, for the workers to attach to the step message that follows (mimo_v2_tp_msg.h). */
static mimo_status send_embeds(struct mimo_tp_group *g, const mimo_batch *b, int hidden) {
  int32_t *runs = malloc((size_t)b->n_embeds * 2 * sizeof *runs);
  const float **rows = malloc((size_t)b->n_embeds * sizeof *rows);
  char *msg = NULL;
  size_t bytes = 0;
  if (runs && rows) {
    for (int i = 0; i < b->n_embeds; i++) {
      runs[2 * i] = b->embeds[i].at;
      runs[2 * i + 1] = b->embeds[i].n;
      rows[i] = b->embeds[i].rows;
    }
    bytes = mimo_tp_embeds_bytes(runs, b->n_embeds, hidden);
    if ((msg = malloc(bytes)))
      mimo_tp_embeds_write(msg, runs, b->n_embeds, hidden, rows);
  }
  mimo_status st = msg ? mimo_tp_net_send_msg(g->net, msg, bytes) : mimo_errf(MIMO_E_NOMEM, "embeddings message");
  free(msg);
  free(runs);
  free((void *)rows);
  return st;
}

mimo_status mimo_tp_forward(mimo_model *m, const mimo_batch *b, float *logits) {
  struct mimo_tp_group *g = m->group;
  if (g->net && g->node != 0)
    return mimo_errf(MIMO_E_INVALID, "node %d runs steps from node 0 only", g->node);
  for (int i = 0; i < b->n_seqs; i++)
    if (b->n_tokens[i] < 1)
      return mimo_errf(MIMO_E_INVALID, "sequence %d of the batch has no tokens", i);
  if (g->net && b->n_embeds)
    MIMO_TRY(send_embeds(g, b, m->cfg.hidden_size));
  if (g->net)
    MIMO_TRY(send_step(g, b));
  return mimo_tp_step(m, b, logits);
}

mimo_model *mimo_tp_rank_model(const mimo_model *m, int r) { return m->group->ranks[r]; }
int mimo_tp_node(const mimo_model *m) { return m->group->node; }

mimo_backend *mimo_model_backend(const mimo_model *m, int r) {
  return m->group ? m->group->ranks[r]->be : m->be;
}
