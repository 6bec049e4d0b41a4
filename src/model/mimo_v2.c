/* The MiMo-V2 forward pass, written once over backend ops (spec §2):
 *
 *   h = E[token]
 *   per layer: a = RMSNorm(h); q,k,v = a·Wqkvᵀ (fused checkpoint chunks de-interleaved);
 *              v *= value_scale; partial NeoX RoPE on q,k (theta per layer type);
 *              o = Attention(q,k,v) (causal or sliding window, sink in the denominator);
 *              h += o·Woᵀ; h += FFN(RMSNorm(h))   (dense SwiGLU or routed MoE)
 *   logits = RMSNorm(h)·lm_headᵀ
 */
#include "model/mimo_v2.h"

#include "core/threads.h"
#include "engine/sampler.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Gives every weight to the backend once (a GPU backend copies or repacks it into
 * its memory; the CPU backend reads the mapped checkpoint and does nothing). */
mimo_status mimo_model_upload_globals(mimo_backend *be, mimo_weights *w) {
  MIMO_TRY(mimo_backend_upload_linear(be, &w->embed));
  MIMO_TRY(mimo_backend_upload_vec(be, &w->final_norm));
  return mimo_backend_upload_linear(be, &w->lm_head);
}

mimo_status mimo_model_upload_layer(mimo_backend *be, mimo_layer_weights *lw, int n_experts) {
  mimo_linear *lins[] = {&lw->qkv, &lw->q, &lw->k, &lw->v, &lw->o, &lw->gate, &lw->up, &lw->down, &lw->router};
  mimo_vec *vecs[] = {&lw->input_norm, &lw->post_norm, &lw->sink, &lw->router_bias};
  for (size_t i = 0; i < sizeof lins / sizeof *lins; i++)
    MIMO_TRY(mimo_backend_upload_linear(be, lins[i]));
  for (size_t i = 0; i < sizeof vecs / sizeof *vecs; i++)
    MIMO_TRY(mimo_backend_upload_vec(be, vecs[i]));
  for (int e = 0; lw->moe && lw->experts && e < 3 * n_experts; e++)
    MIMO_TRY(mimo_backend_upload_linear_cold(be, &lw->experts[e]));
  return MIMO_OK;
}

mimo_status mimo_model_upload(mimo_backend *be, mimo_weights *w) {
  MIMO_TRY(mimo_model_upload_globals(be, w));
  for (int L = 0; L < w->n_layers; L++)
    MIMO_TRY(mimo_model_upload_layer(be, &w->layers[L], w->layers[L].router.out));
  for (int M = 0; M < w->n_mtp; M++) {
    mimo_mtp_weights *t = &w->mtp[M];
    MIMO_TRY(mimo_model_upload_layer(be, &t->layer, 0));
    MIMO_TRY(mimo_backend_upload_linear(be, &t->eh_proj));
    MIMO_TRY(mimo_backend_upload_vec(be, &t->enorm));
    MIMO_TRY(mimo_backend_upload_vec(be, &t->hnorm));
    MIMO_TRY(mimo_backend_upload_vec(be, &t->final_norm));
  }
  return MIMO_OK;
}

mimo_status mimo_model_bind(const char *dir, mimo_model *m) {
  mimo_status st = mimo_config_load(dir, &m->cfg);
  if (st == MIMO_OK && (st = mimo_gen_defaults_load(dir, &m->gen)) == MIMO_OK)
    mimo_config_merge_eos(&m->cfg, &m->gen);
  if (st == MIMO_OK)
    st = mimo_ckpt_open(dir, &m->ck);
  if (st == MIMO_OK)
    st = mimo_weights_bind(&m->cfg, &m->ck, &m->w);
  if (st == MIMO_OK)
    st = mimo_vision_bind(&m->cfg, &m->ck, &m->vw);
  m->vocab_n = m->cfg.vocab_size;
  return st;
}

mimo_status mimo_model_load(const char *dir, mimo_backend *be, mimo_model **out) {
  mimo_model *m = calloc(1, sizeof *m);
  if (!m)
    return mimo_errf(MIMO_E_NOMEM, "model");
  mimo_status st = mimo_model_bind(dir, m);
  if (st == MIMO_OK)
    st = mimo_model_upload(be, &m->w);
  if (st != MIMO_OK) {
    mimo_weights_free(&m->w);
    mimo_vision_weights_free(&m->vw);
    mimo_ckpt_close(&m->ck);
    free(m);
    return st;
  }
  m->be = be;
  m->tp = 1;
  m->vocab_n = m->cfg.vocab_size;
  *out = m;
  return MIMO_OK;
}

void mimo_model_free(mimo_model *m) {
  if (!m)
    return;
  if (m->mtp) { /* its weights are views into ours; its backend is ours (a group's rank 0's: before the group) */
    if (m->group && m->mtp->be->bind_thread)
      (void)m->mtp->be->bind_thread(m->mtp->be);
    mimo_kv_pool_release(m->mtp->kv_pool);
    free(m->mtp->w.layers);
    free(m->mtp->w.mtp); /* a group's copy of the MTP views (NULL alone) */
    mimo_pool_free(m->mtp->sample_pool);
    for (int i = 0; i < m->mtp->n_sample_ws; i++)
      mimo_sample_ws_free(m->mtp->sample_ws[i]);
    free(m->mtp->sample_ws);
    free(m->mtp->sample_logits);
    free(m->mtp);
  }
  mimo_tp_free(m);
  mimo_weights_free(&m->w);
  mimo_vision_weights_free(&m->vw);
  mimo_ckpt_close(&m->ck);
  for (int i = 0; i < m->n_owned; i++)
    free(m->owned[i]);
  free(m->owned);
  free(m->logit_part);
  free(m->sample_logits);
  for (int i = 0; i < m->n_sample_ws; i++)
    mimo_sample_ws_free(m->sample_ws[i]);
  free(m->sample_ws);
  mimo_pool_free(m->sample_pool);
  mimo_kv_pool_release(m->kv_pool); /* before the backend: its chunks are the backend's memory */
  if (m->own_be && m->be)
    m->be->free(m->be);
  free(m);
}

mimo_status mimo_model_kv_reserve(mimo_model *m, mimo_kv_seq *s, int new_len) {
  if (!m->kv_pool)
    MIMO_TRY(mimo_kv_pool_new(&m->kv_pool, &m->cfg, m->be, m->kv_bf16));
  return mimo_kv_reserve(s, m->kv_pool, new_len);
}

mimo_status mimo_model_kv_fork(mimo_model *m, mimo_kv_seq *dst, mimo_kv_seq *src, int len) {
  if (m->group)
    return mimo_tp_kv_fork(m, dst, src, len);
  return mimo_kv_fork(dst, src, len);
}

/* Step scratch, sized for this batch. */
typedef struct {
  float *h, *a, *qkv, *q, *k, *v, *o, *t1, *t2, *t3;
  int *pos;
} scratch;

static void scratch_free(mimo_backend *be, scratch *s) {
  float **bufs[] = {&s->h, &s->a, &s->qkv, &s->q, &s->k, &s->v, &s->o, &s->t1, &s->t2, &s->t3};
  for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++)
    if (*bufs[i])
      be->release(be, *bufs[i]);
  free(s->pos);
}

static mimo_status scratch_init(mimo_model *m, int T, scratch *s) {
  const mimo_config *c = &m->cfg;
  mimo_backend *be = m->be;
  memset(s, 0, sizeof *s);
  size_t H = (size_t)c->hidden_size, q = 0, kv = 0, vv = 0, o = 0;
  const mimo_attn_geom *gs[2] = {&c->full, &c->swa};
  for (int i = 0; i < 2; i++) {
    size_t qq = (size_t)gs[i]->n_heads * gs[i]->head_dim, kk = (size_t)gs[i]->n_kv_heads * gs[i]->head_dim,
           vvv = (size_t)gs[i]->n_kv_heads * gs[i]->v_head_dim, oo = (size_t)gs[i]->n_heads * gs[i]->v_head_dim;
    q = qq > q ? qq : q;
    kv = kk > kv ? kk : kv;
    vv = vvv > vv ? vvv : vv;
    o = oo > o ? oo : o;
  }
  size_t ffn = (size_t)c->intermediate_size;
  size_t wide = ffn > H ? ffn : H;
  wide = wide > (size_t)c->vocab_size ? wide : (size_t)c->vocab_size;
  s->h = be->alloc(be, T * H);
  s->a = be->alloc(be, T * H);
  s->qkv = be->alloc(be, T * (q + kv + vv));
  s->q = be->alloc(be, T * q);
  s->k = be->alloc(be, T * kv);
  s->v = be->alloc(be, T * vv);
  s->o = be->alloc(be, T * o);
  s->t1 = be->alloc(be, T * wide);
  s->t2 = be->alloc(be, T * wide);
  s->t3 = be->alloc(be, T * H);
  s->pos = malloc((size_t)T * sizeof *s->pos);
  if (!s->h || !s->a || !s->qkv || !s->q || !s->k || !s->v || !s->o || !s->t1 || !s->t2 || !s->t3 || !s->pos) {
    scratch_free(be, s);
    return mimo_errf(MIMO_E_NOMEM, "activations for %d tokens", T);
  }
  return MIMO_OK;
}

mimo_status mimo_model_warm_scratch(mimo_model *m, int T) {
  scratch s;
  MIMO_TRY(scratch_init(m, T, &s));
  scratch_free(m->be, &s);
  return MIMO_OK;
}

/* q, k, v (v scaled, RoPE applied to q and k) from the attention input a [T][hidden].
 * The fused checkpoint tensor is `chunks` blocks of [Q_c | K_c | V_c] (spec §3.3):
 * project once, then move each block's columns to its place in natural head order
 * (the backend's qkv_split, which applies RoPE in the same pass). */
static void project_qkv(mimo_model *m, const mimo_layer_weights *lw, const mimo_attn_geom *g, int T, scratch *s) {
  mimo_backend *be = m->be;
  int nq = g->n_heads * g->head_dim, nk = g->n_kv_heads * g->head_dim, nv = g->n_kv_heads * g->v_head_dim;
  if (!lw->fused_qkv) {
    be->linear(be, s->q, s->a, T, &lw->q);
    be->linear(be, s->k, s->a, T, &lw->k);
    be->linear(be, s->v, s->a, T, &lw->v);
    if (m->cfg.attention_value_scale != 1.0)
      be->scale(be, s->v, (long)T * nv, (float)m->cfg.attention_value_scale);
    be->rope(be, s->q, T, g->n_heads, g->head_dim, nq, g->rotary_dim, s->pos, g->rope_theta);
    be->rope(be, s->k, T, g->n_kv_heads, g->head_dim, nk, g->rotary_dim, s->pos, g->rope_theta);
    return;
  }
  be->linear(be, s->qkv, s->a, T, &lw->qkv);
  int n = m->cfg.qkv_chunks;
  const mimo_rope_args rope = {g->n_heads, g->n_kv_heads, g->head_dim, g->rotary_dim, s->pos, g->rope_theta};
  be->qkv_split(be, s->q, s->k, s->v, s->qkv, T, n, nq / n, nk / n, nv / n, (float)m->cfg.attention_value_scale,
                &rope);
}

static mimo_status attention_block(mimo_model *m, int L, const mimo_batch *b, int T, scratch *s) {
  const mimo_config *c = &m->cfg;
  const mimo_layer_weights *lw = &m->w.layers[L];
  const mimo_attn_geom *g = mimo_config_geom(c, L);
  mimo_backend *be = m->be;
  int nq = g->n_heads * g->head_dim, nk = g->n_kv_heads * g->head_dim, nv = g->n_kv_heads * g->v_head_dim;
  project_qkv(m, lw, g, T, s);
  enum { SEQS = 64 }; /* sequences handed to attention_seqs at once */
  mimo_attn_args a[SEQS];
  int off = 0;
  for (int i0 = 0; i0 < b->n_seqs; i0 += SEQS) {
    const int ns = b->n_seqs - i0 < SEQS ? b->n_seqs - i0 : SEQS;
    for (int j = 0; j < ns; j++) {
      const int n = b->n_tokens[i0 + j];
      a[j] = (mimo_attn_args){
          .q = s->q + (size_t)off * nq, .k = s->k + (size_t)off * nk, .v = s->v + (size_t)off * nv,
          .out = s->o + (size_t)off * g->n_heads * g->v_head_dim, .T = n, .n_heads = g->n_heads,
          .n_kv = g->n_kv_heads, .head_dim = g->head_dim, .v_head_dim = g->v_head_dim, .window = g->window,
          .scale = (float)(1.0 / sqrt((double)g->head_dim)), .sink = lw->sink.n ? &lw->sink : NULL,
          .kv = &b->seqs[i0 + j]->layers[L]};
      off += n;
    }
    if (be->attention_seqs && ns > 1)
      be->attention_seqs(be, a, ns);
    else
      for (int j = 0; j < ns; j++)
        be->attention(be, &a[j]);
  }
  be->linear(be, s->t3, s->o, T, &lw->o);
  if (m->tp > 1) /* o_proj is row-parallel: each rank holds its heads' partial sum */
    be->all_reduce(be, s->t3, (long)T * c->hidden_size);
  return MIMO_OK; /* the caller adds t3 to the residual with the next norm */
}

static void ffn_block(mimo_model *m, int L, int T, scratch *s) {
  const mimo_config *c = &m->cfg;
  const mimo_layer_weights *lw = &m->w.layers[L];
  mimo_backend *be = m->be;
  int H = c->hidden_size;
  if (lw->moe) {
    mimo_moe_args a = {.x = s->a, .out = s->t3, .T = T, .hidden = H, .inter = c->moe_intermediate_size,
                       .n_experts = c->n_routed_experts, .top_k = c->num_experts_per_tok, .router = &lw->router,
                       .bias = &lw->router_bias, .experts = lw->experts, .norm_topk = c->norm_topk_prob,
                       .scaling = (float)c->routed_scaling_factor, .expert0 = m->expert0, .n_local = m->n_local};
    a.margin_out = m->route_margin; /* trace: the backend keeps each token's minimum over layers */
    be->moe(be, &a);
  } else {
    be->linear(be, s->t1, s->a, T, &lw->gate);
    be->linear(be, s->t2, s->a, T, &lw->up);
    be->swiglu(be, s->t1, s->t1, s->t2, (long)T * c->intermediate_size);
    be->linear(be, s->t3, s->t1, T, &lw->down);
  }
  if (m->tp > 1) /* down projections (dense, experts' width or experts themselves) are split: sum the parts */
    be->all_reduce(be, s->t3, (long)T * H);
}

/* A buffer of the model's kept between steps (no allocation per step), grown to n floats as needed. */
static float *grow_floats(float **buf, size_t *cap, size_t n) {
  if (*cap < n) {
    float *p = realloc(*buf, n * sizeof *p);
    if (!p)
      return NULL;
    *buf = p;
    *cap = n;
  }
  return *buf;
}

bool mimo_model_samples_on_device(const mimo_model *m) {
  if (m->host_sampling)
    return false;
  if (m->group)
    return mimo_tp_samples_on_device(m);
  return m->be && m->be->sample && m->vocab_n == m->cfg.vocab_size;
}

/* The step's logits come to the host (into `logits`, or the model's own rows) and each job is run there, the
 * rows spread over a pool (sampling a row costs 0.1-2 ms: serially, a batch of 64 would cost more than the step). */
typedef struct {
  mimo_model *m;
  const mimo_batch *b;
  const float *logits;
  int rows;
} host_rows;

static void sample_rows(void *ctx, long begin, long end) {
  host_rows *h = ctx;
  const int V = h->m->cfg.vocab_size, n = h->m->n_sample_ws;
  for (long w = begin; w < end; w++) /* worker w takes rows w, w + n, ... with its own scratch */
    for (int i = (int)w; i < h->rows; i += n) {
      const mimo_sample_job *j = &h->b->jobs[i];
      mimo_sample_info *info = h->b->infos && j->logprobs > 0 ? &h->b->infos[i] : NULL;
      h->b->sampled[i] =
          j->skip ? -1 : mimo_sample_logits(j, (float *)h->logits + (size_t)i * V, V, info, h->m->sample_ws[w]);
    }
}

/* The pool and one scratch per worker, all or nothing (a later step tries again). */
static mimo_status sample_pool_init(mimo_model *m) {
  const int threads = mimo_cpu_count() < 16 ? mimo_cpu_count() : 16;
  mimo_pool *pool = NULL;
  MIMO_TRY(mimo_pool_init(&pool, threads));
  const int nw = mimo_pool_size(pool);
  mimo_sample_ws **ws = calloc((size_t)nw, sizeof *ws);
  mimo_status st = ws ? MIMO_OK : mimo_errf(MIMO_E_NOMEM, "sampler scratch");
  for (int i = 0; st == MIMO_OK && i < nw; i++)
    st = mimo_sample_ws_init(&ws[i], m->cfg.vocab_size);
  if (st != MIMO_OK) {
    for (int i = 0; ws && i < nw; i++)
      mimo_sample_ws_free(ws[i]);
    free(ws);
    mimo_pool_free(pool);
    return st;
  }
  m->sample_pool = pool;
  m->sample_ws = ws;
  m->n_sample_ws = nw;
  return MIMO_OK;
}

static mimo_status forward_host_sampling(mimo_model *m, const mimo_batch *b, float *logits, int rows) {
  const int V = m->cfg.vocab_size;
  const size_t n = (size_t)rows * V;
  if (!logits && !(logits = grow_floats(&m->sample_logits, &m->sample_logits_n, n)))
    return mimo_errf(MIMO_E_NOMEM, "logits of %d rows", rows);
  if (!m->sample_pool)
    MIMO_TRY(sample_pool_init(m));
  mimo_batch lb = *b;
  lb.jobs = NULL;
  MIMO_TRY(m->group ? mimo_tp_forward(m, &lb, logits) : mimo_model_forward_local(m, &lb, logits));
  host_rows h = {m, b, logits, rows};
  const int nw = rows < m->n_sample_ws ? rows : m->n_sample_ws;
  if (nw <= 1)
    sample_rows(&h, 0, 1);
  else
    mimo_parallel_for(m->sample_pool, nw, 1, sample_rows, &h);
  /* A row that failed comes back as -1 (the step itself succeeded); a worker's message stays on its thread, so
   * say it again here. */
  for (int i = 0; i < rows; i++)
    if (!b->jobs[i].skip && b->sampled[i] < 0)
      mimo_errf(MIMO_E_INVALID, "sampler: row %d has no usable logit below its vocabulary limit", i);
  return MIMO_OK;
}

int mimo_batch_rows(const mimo_batch *b, int T) {
  if (b->all_logits)
    return T;
  if (!b->n_logits)
    return b->n_seqs;
  int rows = 0;
  for (int i = 0; i < b->n_seqs; i++)
    rows += b->n_logits[i];
  return rows;
}

mimo_status mimo_model_forward(mimo_model *m, const mimo_batch *b, float *logits) {
  m->step_skipped = true; /* until compute begins (forward_local, or the group past its reservation) */
  if (b->jobs && (b->all_logits || !b->sampled))
    return mimo_errf(MIMO_E_INVALID, "a sampled step needs chosen rows of logits and somewhere to put the tokens");
  for (int i = 0; b->n_logits && i < b->n_seqs; i++)
    if (b->all_logits || b->n_logits[i] < 1 || b->n_logits[i] > b->n_tokens[i])
      return mimo_errf(MIMO_E_INVALID, "sequence %d of the batch asks for %d rows of logits of its %d tokens", i,
                       b->n_logits[i], b->n_tokens[i]);
  const int rows = mimo_batch_rows(b, 0);
  bool masked = false; /* token masks (structured outputs), logit_bias and min_tokens are the host sampler's */
  for (int i = 0; b->jobs && i < rows; i++)
    masked |= b->jobs[i].allow != NULL || b->jobs[i].n_bias > 0 || b->jobs[i].n_ban > 0;
  if (b->jobs && (masked || !mimo_model_samples_on_device(m)))
    return forward_host_sampling(m, b, logits, rows);
  for (int i = 0; m->group && i < b->n_embeds; i++)
    if (b->embeds[i].on_backend)
      return mimo_errf(MIMO_E_INVALID, "embedding run %d is in backend memory: tensor-parallel ranks take host rows", i);
  return m->group ? mimo_tp_forward(m, b, logits) : mimo_model_forward_local(m, b, logits);
}

/* Columns [v0, v0 + vn) of logits [rows][V] from a dense [rows][vn] block. */
static void scatter_cols(float *logits, const float *part, int rows, int V, int v0, int vn) {
  for (int r = 0; r < rows; r++)
    memcpy(logits + (size_t)r * V + v0, part + (size_t)r * vn, (size_t)vn * sizeof(float));
}


/* After the last layer: the residual's last add, then the final norm and lm_head on the rows asked for (none for
 * a rank whose logits another rank delivers). A backend with its own memory writes the logits there (t1 holds
 * rows*vocab) and copies them out after the step; a rank computes its vocabulary slice into part, or, when the
 * group samples where the logits are, into its columns of zeroed rows that the ranks then sum (an all-gather
 * through the all-reduce: every other rank adds zeros, so the rows arrive exact). */
static void final_rows(mimo_model *m, const mimo_batch *b, float *logits, float *part, int T, int rows, scratch *s) {
  const mimo_config *c = &m->cfg;
  mimo_backend *be = m->be;
  const int H = c->hidden_size;
  const float eps = (float)c->layernorm_epsilon;
  be->add(be, s->h, s->t3, (long)T * H);
  if (b->hidden_out) /* every token's normed row in a (the logits' rows are taken from there) */
    be->rmsnorm(be, s->a, s->h, &m->w.final_norm, T, H, eps);
  if (!logits && !b->jobs)
    return;
  /* the rows asked for, gathered into t3 (before the norm, unless every row was normed above) */
  const float *from = b->hidden_out ? s->a : s->h;
  if (!b->all_logits)
    for (int i = 0, end = 0, row = 0; i < b->n_seqs; i++) {
      end += b->n_tokens[i];
      const int n = b->n_logits ? b->n_logits[i] : 1;
      be->copy2d(be, s->t3 + (size_t)row * H, H, from + (size_t)(end - n) * H, H, n, H);
      row += n;
    }
  const float *x = s->a;
  if (b->hidden_out && !b->all_logits)
    x = s->t3;
  else if (!b->hidden_out)
    be->rmsnorm(be, s->a, b->all_logits ? s->h : s->t3, &m->w.final_norm, rows, H, eps);
  if (b->jobs && m->vocab_n < c->vocab_size) {
    const int V = c->vocab_size, vn = m->vocab_n;
    be->linear(be, s->t2, x, rows, &m->w.lm_head);
    be->zero(be, s->t1, (long)rows * V);
    be->copy2d(be, s->t1 + m->vocab0, V, s->t2, vn, rows, vn);
    be->all_reduce(be, s->t1, (long)rows * V);
    return;
  }
  be->linear(be, b->jobs || be->download ? s->t1 : part ? part : logits, x, rows, &m->w.lm_head);
}

/* The key under which this step may run as a backend's recorded unit (graph_begin), or -1: a decode step (one
 * token per sequence) of one process's lone backend without traces. With m->graph_verify also the steps of
 * speculative decoding: those that return hidden states, and those in which every sequence feeds the same few
 * tokens (its next token and its drafts), few enough that every attention call stays on the decode kernels (tokens
 * × query heads per KV head ≤ 256, the GPU's one-token path; its prompt kernels are not run under capture).
 * Tensor-parallel ranks issue collectives between the ops and run them as issued; the MTP layer's passes take
 * their input as embedding rows and are one layer (nothing to record). The key tells apart steps of one token count
 * split into sequences differently, and those that return hidden states (other kernels). */
static int graph_shape(const mimo_model *m, const mimo_batch *b, int T, bool head) {
  if (m->eager || m->tp > 1 || m->route_margin || b->n_seqs < 1 || b->n_embeds || (b->hidden_out && !m->graph_verify))
    return -1;
  const int n = b->n_tokens[0];
  for (int i = 1; i < b->n_seqs; i++)
    if (b->n_tokens[i] != n)
      return -1;
  if (n > 1) {
    const mimo_config *c = &m->cfg;
    const int gf = c->full.n_heads / c->full.n_kv_heads, gs = c->swa.n_heads / c->swa.n_kv_heads;
    if (!m->graph_verify || n > 16 || n * (gf > gs ? gf : gs) > 256 || T >= 1 << 20)
      return -1;
  }
  return (((n - 1) * (1 << 20) + T) * 2 + (b->hidden_out != NULL)) * 2 + head;
}

mimo_status mimo_model_forward_local(mimo_model *m, const mimo_batch *b, float *logits) {
  const mimo_config *c = &m->cfg;
  mimo_backend *be = m->be;
  int T = 0;
  for (int i = 0; i < b->n_seqs; i++) {
    if (b->n_tokens[i] < 1)
      return mimo_errf(MIMO_E_INVALID, "sequence %d of the batch has no tokens", i);
    if ((long)b->seqs[i]->len + b->n_tokens[i] > c->max_position_embeddings)
      return mimo_errf(MIMO_E_TOO_LONG, "sequence %d would reach %ld positions; the model allows %ld", i,
                       (long)b->seqs[i]->len + b->n_tokens[i], c->max_position_embeddings);
    T += b->n_tokens[i];
  }
  for (int t = 0; t < T; t++)
    if (b->tokens[t] < 0 || b->tokens[t] >= c->vocab_size)
      return mimo_errf(MIMO_E_INVALID, "token id %d is outside the vocabulary [0, %d)", b->tokens[t], c->vocab_size);
  for (int i = 0, end = 0; i < b->n_embeds; i++) {
    const mimo_embed_run *r = &b->embeds[i];
    if (r->n < 1 || r->at < end || r->at > T - r->n || !r->rows)
      return mimo_errf(MIMO_E_INVALID, "embedding run %d (tokens %d..%d) is empty, out of order or past the step's %d "
                       "tokens", i, r->at, r->at + r->n - 1, T);
    end = r->at + r->n;
  }
  for (int i = 0; i < b->n_seqs; i++)
    MIMO_TRY(mimo_model_kv_reserve(m, b->seqs[i], b->seqs[i]->len + b->n_tokens[i]));
  scratch s;
  MIMO_TRY(scratch_init(m, T, &s));
  for (int i = 0, t = 0; i < b->n_seqs; i++)
    for (int j = 0; j < b->n_tokens[i]; j++)
      s.pos[t++] = b->seqs[i]->len + j;

  const int V = c->vocab_size, vn = m->vocab_n, H = c->hidden_size;
  const int rows = mimo_batch_rows(b, T);
  const bool head = logits || b->jobs; /* else a rank whose logits another rank delivers */
  /* a rank's columns before it scatters them */
  float *part = head && vn < V && !b->jobs ? grow_floats(&m->logit_part, &m->logit_part_n, (size_t)rows * vn) : NULL;
  if (head && vn < V && !b->jobs && !part) {
    scratch_free(be, &s);
    return mimo_errf(MIMO_E_NOMEM, "logits slice");
  }
  m->step_skipped = false;
  mimo_status st = MIMO_OK;
  /* Each block leaves its output in t3; it joins the residual h together with the next norm. */
  const float eps = (float)c->layernorm_epsilon;
  if (be->positions)
    be->positions(be, s.pos, T);
  be->embed(be, s.h, &m->w.embed, b->tokens, T);
  for (int i = 0; i < b->n_embeds && st == MIMO_OK; i++) { /* rows that are not looked up (image placeholders) */
    const mimo_embed_run *r = &b->embeds[i];
    if (r->on_backend)
      be->copy2d(be, s.h + (size_t)r->at * H, H, r->rows, H, r->n, H);
    else
      st = mimo_backend_to(be, s.h + (size_t)r->at * H, r->rows, (size_t)r->n * H);
  }
  /* A decode step (one token per sequence) runs from here to its logits as recorded units where the backend keeps
   * them (CUDA graphs), one per layer, so that the device runs a layer while the host records the next: its ops
   * differ from the last such step's only in their arguments. */
  const int shape = be->graph_begin ? graph_shape(m, b, T, head) : -1;
  for (int L = 0; L < c->num_hidden_layers && st == MIMO_OK; L++) {
    const bool graph = shape >= 0 && be->graph_begin(be, shape, L);
    const mimo_layer_weights *lw = &m->w.layers[L];
    if (L == 0)
      be->rmsnorm(be, s.a, s.h, &lw->input_norm, T, H, eps);
    else
      be->add_rmsnorm(be, s.a, s.h, s.t3, &lw->input_norm, T, H, eps);
    attention_block(m, L, b, T, &s);
    be->add_rmsnorm(be, s.a, s.h, s.t3, &lw->post_norm, T, H, eps);
    ffn_block(m, L, T, &s);
    if (L == c->num_hidden_layers - 1)
      final_rows(m, b, logits, part, T, rows, &s);
    if (graph)
      st = be->graph_end(be);
  }
  if (c->num_hidden_layers == 0)
    final_rows(m, b, logits, part, T, rows, &s);
  if (st != MIMO_OK || !head)
    goto done;
  if (b->jobs && vn < V && m->rank != 0) /* the group's rank 0 samples the gathered rows */
    st = be->download ? be->download(be, NULL, NULL, 0) : MIMO_OK;
  else if (b->jobs) /* mimo_model_samples_on_device */
    st = be->sample(be, s.t1, rows, V, b->jobs, b->sampled, b->infos);
  else if (be->download)
    st = be->download(be, part ? part : logits, s.t1, (size_t)rows * vn);
  if (st == MIMO_OK && part)
    scatter_cols(logits, part, rows, V, m->vocab0, vn);
done:
  if (st == MIMO_OK && b->hidden_out) /* final_rows left every normed row in s.a */
    st = mimo_backend_from(be, b->hidden_out, s.a, (size_t)T * H);
  else if (st == MIMO_OK && !head && be->download) /* wait for the step like the ranks that download do */
    st = be->download(be, NULL, NULL, 0);
  for (int i = 0; i < b->n_seqs; i++)
    b->seqs[i]->len += b->n_tokens[i];
  scratch_free(be, &s);
  return st;
}
