/* MTP layers (spec §2.7) as a draft model:
 *
 *   x = eh_proj · [ RMSNorm(E[next token]; enorm) ; RMSNorm(h; hnorm) ]   (h: the target's final-normed hidden state)
 *   x = x + Attention(RMSNorm(x; input_layernorm))   (the sliding geometry, its sink, its own cache)
 *   x = x + DenseMLP(RMSNorm(x; pre_mlp_layernorm))
 *   logits = RMSNorm(x; final_layernorm) · lm_headᵀ
 *
 * The decoder layer is the text model's own code: m->mtp is a one-layer model of the same backend whose first
 * rows come in as mimo_batch.embeds (x), with the shared embedding and lm_head and the MTP's final norm. Which hidden
 * state vLLM's h is (after model.norm) and that layer 0 serves every draft step follow vLLM (spec: UNCONFIRMED). */
#include <stdlib.h>
#include <string.h>

#include "model/mimo_v2.h"

mimo_status mimo_model_set_kv_slack(mimo_model *m, int slack) {
  if (slack < 0 || slack > 64)
    return mimo_errf(MIMO_E_INVALID, "KV ring slack %d: 0 to 64", slack);
  if (m->kv_pool || (m->mtp && m->mtp->kv_pool))
    return mimo_errf(MIMO_E_INVALID, "the KV ring slack is set before the model's first step");
  if (m->group)
    MIMO_TRY(mimo_tp_set_kv_slack(m, slack));
  m->cfg.kv_ring_slack = slack;
  if (m->mtp)
    m->mtp->cfg.kv_ring_slack = slack;
  return MIMO_OK;
}

mimo_status mimo_model_kv_truncate(mimo_model *m, mimo_kv_seq *s, int len) {
  return m->group ? mimo_tp_kv_truncate(m, s, len) : mimo_kv_seq_truncate(s, len);
}

/* A group's draft model lives on rank 0's backend: the MTP layer's tensors uploaded there (a copy of the views, so
 * the group's own stay host views), rank 0's embedding, and the whole lm_head (rank 0's when it has all of it). */
static mimo_status mtp_weights_on_rank0(mimo_model *m, mimo_model *d, const mimo_mtp_weights *t) {
  const mimo_model *r0 = mimo_tp_rank_model(m, 0);
  mimo_backend *be = d->be;
  mimo_mtp_weights *own = malloc(sizeof *own);
  if (!own)
    return mimo_errf(MIMO_E_NOMEM, "MTP weights");
  *own = *t;
  d->w.mtp = own; /* owned by the draft model (mimo_model_free) */
  d->w.n_mtp = 1;
  if (be->bind_thread)
    MIMO_TRY(be->bind_thread(be));
  MIMO_TRY(mimo_model_upload_layer(be, &own->layer, 0));
  MIMO_TRY(mimo_backend_upload_linear(be, &own->eh_proj));
  MIMO_TRY(mimo_backend_upload_vec(be, &own->enorm));
  MIMO_TRY(mimo_backend_upload_vec(be, &own->hnorm));
  MIMO_TRY(mimo_backend_upload_vec(be, &own->final_norm));
  d->w.embed = r0->w.embed;
  if (r0->vocab_n == m->cfg.vocab_size) {
    d->w.lm_head = r0->w.lm_head;
  } else {
    d->w.lm_head = m->w.lm_head;
    MIMO_TRY(mimo_backend_upload_linear(be, &d->w.lm_head));
  }
  return MIMO_OK;
}

mimo_status mimo_model_mtp_open(mimo_model *m, int layer) {
  if (m->group && mimo_tp_node(m) != 0)
    return mimo_errf(MIMO_E_INVALID, "MTP drafting runs on node 0");
  if (layer < 0 || layer >= m->w.n_mtp)
    return mimo_errf(MIMO_E_INVALID, "the checkpoint has %d MTP layer%s (model.mtp.layers.*); layer %d asked",
                     m->w.n_mtp, m->w.n_mtp == 1 ? "" : "s", layer);
  if (m->mtp)
    return MIMO_OK;
  mimo_model *d = calloc(1, sizeof *d);
  mimo_layer_weights *lw = calloc(1, sizeof *lw);
  if (!d || !lw) {
    free(d);
    free(lw);
    return mimo_errf(MIMO_E_NOMEM, "MTP model");
  }
  const mimo_mtp_weights *t = &m->w.mtp[layer];
  d->cfg = m->cfg; /* (a group's top-level config: the whole model's heads and widths) */
  d->cfg.num_hidden_layers = 1;
  d->cfg.layer_type[0] = MIMO_ATTN_SWA;
  d->cfg.layer_moe[0] = false;
  d->w.layers = lw;
  d->w.n_layers = 1;
  d->be = mimo_model_backend(m, 0);
  d->tp = 1;
  d->vocab_n = m->cfg.vocab_size;
  d->kv_bf16 = m->kv_bf16;
  d->host_sampling = m->host_sampling;
  d->eager = m->eager;
  m->mtp = d;
  if (m->group) {
    mimo_status st = mtp_weights_on_rank0(m, d, t);
    if (st != MIMO_OK) {
      free(d->w.mtp);
      free(lw);
      free(d);
      m->mtp = NULL;
      return st;
    }
    t = d->w.mtp;
  } else {
    d->w.embed = m->w.embed;
    d->w.lm_head = m->w.lm_head;
  }
  *lw = t->layer;
  d->w.final_norm = t->final_norm;
  m->mtp_w = t;
  return MIMO_OK;
}

/* x = eh_proj · [enorm(E[ids]) ; hnorm(h)] for T tokens, into *x (backend memory of the draft model's backend,
 * released by the caller after the pass that reads it: the ops are in stream order, so the pass needs no wait);
 * emb (n_emb runs) replaces E[ids] on its rows (an image's positions take the tower's rows, as the model's own input
 * does). */
static mimo_status mtp_input(mimo_model *m, const int *ids, const float *h, int T, const mimo_embed_run *emb,
                             int n_emb, float **x) {
  mimo_model *d = m->mtp;
  mimo_backend *be = d->be;
  const mimo_mtp_weights *t = m->mtp_w;
  const int H = m->cfg.hidden_size;
  const float eps = (float)m->cfg.layernorm_epsilon;
  float *in = be->alloc(be, (size_t)T * H), *normed = be->alloc(be, (size_t)T * H),
        *cat = be->alloc(be, (size_t)T * 2 * H);
  mimo_status st = in && normed && cat ? MIMO_OK : mimo_errf(MIMO_E_NOMEM, "MTP input of %d tokens", T);
  if (st == MIMO_OK) /* [embedding ; hidden], the order of spec §2.7 */
    be->embed(be, in, &d->w.embed, ids, T);
  for (int i = 0; i < n_emb && st == MIMO_OK; i++)
    st = mimo_backend_to(be, in + (size_t)emb[i].at * H, emb[i].rows, (size_t)emb[i].n * H);
  if (st == MIMO_OK) {
    be->rmsnorm(be, normed, in, &t->enorm, T, H, eps);
    be->copy2d(be, cat, 2 * H, normed, H, T, H);
    st = mimo_backend_to(be, in, h, (size_t)T * H);
  }
  if (st == MIMO_OK) {
    be->rmsnorm(be, normed, in, &t->hnorm, T, H, eps);
    be->copy2d(be, cat + H, 2 * H, normed, H, T, H);
    be->linear(be, in, cat, T, &t->eh_proj); /* (in is read no more: the output goes there) */
  }
  float *bufs[] = {st == MIMO_OK ? NULL : in, normed, cat};
  for (int i = 0; i < 3; i++)
    if (bufs[i])
      be->release(be, bufs[i]);
  *x = st == MIMO_OK ? in : NULL;
  return st;
}

/* The draft model's pass over batch b with x (backend rows) as every token's input; x released after. */
static mimo_status mtp_pass(mimo_model *m, mimo_batch *b, int T, float *x, float *logits) {
  const mimo_embed_run run = {.at = 0, .n = T, .rows = x, .on_backend = true};
  b->embeds = &run;
  b->n_embeds = 1;
  mimo_status st = mimo_model_forward(m->mtp, b, logits);
  m->mtp->be->release(m->mtp->be, x);
  return st;
}

mimo_status mimo_model_mtp_step(mimo_model *m, const mimo_batch *b, const float *h) {
  if (!m->mtp)
    return mimo_errf(MIMO_E_INVALID, "no MTP draft model (mimo_model_mtp_open)");
  int T = 0;
  for (int i = 0; i < b->n_seqs; i++)
    T += b->n_tokens[i];
  if (T < 1)
    return MIMO_OK;
  for (int t = 0; t < T; t++)
    if (b->tokens[t] < 0 || b->tokens[t] >= m->cfg.vocab_size)
      return mimo_errf(MIMO_E_INVALID, "token id %d is outside the vocabulary [0, %d)", b->tokens[t],
                       m->cfg.vocab_size);
  mimo_backend *be = m->mtp->be;
  if (m->group && be->bind_thread) /* rank 0's device, from the caller's thread */
    MIMO_TRY(be->bind_thread(be));
  for (int i = 0, end = 0; i < b->n_embeds; i++) { /* (as mimo_model_forward checks them) */
    const mimo_embed_run *r = &b->embeds[i];
    if (r->n < 1 || r->at < end || r->at > T - r->n || !r->rows)
      return mimo_errf(MIMO_E_INVALID, "MTP embedding run %d is empty, out of order or past the step's %d tokens", i, T);
    end = r->at + r->n;
  }
  float *x;
  MIMO_TRY(mtp_input(m, b->tokens, h, T, b->embeds, b->n_embeds, &x));
  mimo_batch db = *b;
  return mtp_pass(m, &db, T, x, NULL);
}

mimo_status mimo_model_mtp_forward(mimo_model *m, mimo_kv_seq *seq, const int *ids, const float *h, int T,
                                   int all_logits, float *logits, float *hidden_out) {
  if (!m->mtp)
    return mimo_errf(MIMO_E_INVALID, "no MTP draft model (mimo_model_mtp_open)");
  if (T < 1)
    return MIMO_OK;
  float *x;
  MIMO_TRY(mtp_input(m, ids, h, T, NULL, 0, &x));
  mimo_batch b = {.n_seqs = 1, .seqs = &seq, .n_tokens = &T, .tokens = ids, .all_logits = all_logits,
                  .hidden_out = hidden_out};
  return mtp_pass(m, &b, T, x, logits);
}

mimo_status mimo_model_mtp_start_at(mimo_model *m, mimo_kv_seq *seq, int pos) {
  if (!m->mtp)
    return mimo_errf(MIMO_E_INVALID, "no MTP draft model (mimo_model_mtp_open)");
  if (pos <= 0)
    return MIMO_OK;
  mimo_backend *be = m->mtp->be;
  if (m->group && be->bind_thread)
    MIMO_TRY(be->bind_thread(be));
  MIMO_TRY(mimo_model_kv_reserve(m->mtp, seq, 1)); /* its rings */
  return mimo_kv_seq_start_at(seq, pos);
}
