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

enum { JOB_LOAD = 1, JOB_RESERVE, JOB_FORWARD, JOB_QUIT };

typedef struct rank_slot {
  struct mimo_tp_group *g;
  int rank;
  mimo_status st;
  char msg[1024];
  mimo_kv_seq **seqs; /* this step's sequences: the rank's shards */
  int cap_seqs;
  mimo_batch batch;
  atomic_int layers_done;
  double load_s;
  float *stage; /* host copy for the all-reduce of device ranks without NCCL */
  long stage_n;
} rank_slot;

struct mimo_tp_group {
  int tp;
  const char *dir;
  mimo_model *top;
  mimo_model **ranks;
  rank_slot *slots;
  pthread_t *threads;
  int n_threads;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  unsigned job_id;
  int job, pending;
  float *logits;
  /* host all-reduce between CPU ranks */
  pthread_barrier_t bar;
  float **xs;
};

/* Sum over the ranks, identical everywhere: rank r adds up its 1/tp of the
 * elements over all ranks (in rank order, so the result does not depend on
 * timing) and writes the sum back to every rank's buffer. Ranks whose backend
 * has its own memory (GPUs sharing one card, where NCCL cannot run) go through
 * a host copy. */
static void host_all_reduce(mimo_backend *be, float *x, long n) {
  rank_slot *s = be->comm;
  struct mimo_tp_group *g = s->g;
  float *hx = x;
  if (be->download) {
    if (s->stage_n < n) {
      float *p = realloc(s->stage, (size_t)n * sizeof *p);
      if (p) {
        s->stage = p;
        s->stage_n = n;
      }
    }
    /* A failed copy still takes part in the barriers (the others wait for it); its error surfaces at download. */
    if (s->stage_n >= n && be->download(be, s->stage, x, (size_t)n) == MIMO_OK)
      hx = s->stage;
    else
      hx = NULL;
  }
  g->xs[s->rank] = hx;
  pthread_barrier_wait(&g->bar);
  int ok = 1;
  for (int r = 0; r < g->tp; r++)
    ok &= g->xs[r] != NULL;
  if (!ok) {
    pthread_barrier_wait(&g->bar);
    return;
  }
  long i0 = n * s->rank / g->tp, i1 = n * (s->rank + 1) / g->tp;
  for (long i = i0; i < i1; i++) {
    float sum = 0.0f;
    for (int r = 0; r < g->tp; r++)
      sum += g->xs[r][i];
    for (int r = 0; r < g->tp; r++)
      g->xs[r][i] = sum;
  }
  pthread_barrier_wait(&g->bar);
  if (hx != x && be->upload(be, x, hx, (size_t)n) != MIMO_OK)
    mimo_warn("rank %d: all-reduce upload failed: %s", s->rank, mimo_errmsg());
}

static mimo_status rank_load(struct mimo_tp_group *g, int r) {
  mimo_model *m = g->ranks[r], *top = g->top;
  mimo_backend *be = m->be;
  double t0 = mimo_now();
  MIMO_TRY(mimo_tp_rank_globals(m, &top->cfg, &top->w));
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
  return MIMO_OK;
}

static mimo_status rank_run(struct mimo_tp_group *g, int r, int job) {
  rank_slot *s = &g->slots[r];
  mimo_model *m = g->ranks[r];
  if (job == JOB_LOAD)
    return rank_load(g, r);
  if (job == JOB_RESERVE) {
    for (int i = 0; i < s->batch.n_seqs; i++)
      MIMO_TRY(mimo_kv_reserve(s->seqs[i], &m->cfg, m->be, s->seqs[i]->len + s->batch.n_tokens[i]));
    return MIMO_OK;
  }
  return mimo_model_forward_local(m, &s->batch, g->logits);
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
  for (int r = 0; r < g->tp; r++)
    if (g->slots[r].st != MIMO_OK)
      return mimo_errf(g->slots[r].st, "rank %d of %d: %s", r, g->tp, g->slots[r].msg);
  return MIMO_OK;
}

void mimo_tp_free(mimo_model *m) {
  struct mimo_tp_group *g = m->group;
  if (!g)
    return;
  if (g->n_threads) {
    pthread_mutex_lock(&g->mu);
    g->job = JOB_QUIT;
    g->job_id++;
    pthread_cond_broadcast(&g->cv);
    pthread_mutex_unlock(&g->mu);
    for (int r = 0; r < g->n_threads; r++)
      pthread_join(g->threads[r], NULL);
  }
  for (int r = 0; r < g->tp; r++) {
    mimo_model_free(g->ranks[r]);
    if (g->slots) {
      free(g->slots[r].seqs);
      free(g->slots[r].stage);
    }
  }
  pthread_barrier_destroy(&g->bar);
  pthread_cond_destroy(&g->cv);
  pthread_mutex_destroy(&g->mu);
  free(g->ranks);
  free(g->slots);
  free(g->threads);
  free(g->xs);
  free(g);
  m->group = NULL;
}

static mimo_status group_init(mimo_model *top, mimo_backend **bes, int tp, bool ep) {
  struct mimo_tp_group *g = calloc(1, sizeof *g);
  if (!g) {
    for (int r = 0; r < tp; r++)
      bes[r]->free(bes[r]);
    return mimo_errf(MIMO_E_NOMEM, "tensor-parallel group");
  }
  top->group = g;
  g->tp = tp;
  g->top = top;
  pthread_mutex_init(&g->mu, NULL);
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
    m->tp = tp;
    m->rank = r;
    m->ep = ep;
    m->gen = top->gen;
    g->slots[r].g = g;
    g->slots[r].rank = r;
    if (!bes[r]->all_reduce) {
      bes[r]->all_reduce = host_all_reduce;
      bes[r]->comm = &g->slots[r];
    }
    if (st == MIMO_OK)
      st = mimo_tp_rank_config(&top->cfg, tp, r, ep, &m->cfg);
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

mimo_status mimo_model_load_tp(const char *dir, mimo_backend **bes, int tp, bool ep, mimo_model **out) {
  if (tp < 1) {
    return mimo_errf(MIMO_E_INVALID, "tensor-parallel size %d must be >= 1", tp);
  }
  mimo_model *m = calloc(1, sizeof *m);
  if (!m) {
    for (int r = 0; r < tp; r++)
      bes[r]->free(bes[r]);
    return mimo_errf(MIMO_E_NOMEM, "model");
  }
  m->tp = tp;
  mimo_status st = mimo_config_load(dir, &m->cfg);
  if (st == MIMO_OK && (st = mimo_gen_defaults_load(dir, &m->gen)) == MIMO_OK)
    mimo_config_merge_eos(&m->cfg, &m->gen);
  if (st == MIMO_OK)
    st = mimo_ckpt_open(dir, &m->ck);
  if (st == MIMO_OK)
    st = mimo_weights_bind(&m->cfg, &m->ck, &m->w);
  m->vocab_n = m->cfg.vocab_size;
  if (st == MIMO_OK) {
    st = group_init(m, bes, tp, ep);
  } else {
    for (int r = 0; r < tp; r++)
      bes[r]->free(bes[r]);
  }
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
  for (int r = 0; r < tp; r++)
    mimo_info("rank %d/%d (%s): %d layers loaded in %.2f s%s", r, tp, m->group->ranks[r]->be->name,
              atomic_load(&m->group->slots[r].layers_done), m->group->slots[r].load_s, ep ? ", expert parallel" : "");
  mimo_info("tensor parallel %d: loaded %s in %.2f s", tp, dir, mimo_now() - t0);
  *out = m;
  return MIMO_OK;
}

mimo_status mimo_tp_forward(mimo_model *m, const mimo_batch *b, float *logits) {
  struct mimo_tp_group *g = m->group;
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
  }
  g->logits = logits;
  /* Reserve first on every rank, so that a rank out of memory fails the step
   * before any rank waits in a collective for it. */
  MIMO_TRY(post(g, JOB_RESERVE));
  MIMO_TRY(post(g, JOB_FORWARD));
  for (int i = 0; i < b->n_seqs; i++)
    b->seqs[i]->len += b->n_tokens[i];
  return MIMO_OK;
}

mimo_backend *mimo_model_backend(const mimo_model *m, int r) {
  return m->group ? m->group->ranks[r]->be : m->be;
}
