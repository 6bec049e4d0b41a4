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
  m->cfg.kv_ring_slack = slack;
  if (m->mtp)
    m->mtp->cfg.kv_ring_slack = slack;
  return MIMO_OK;
}

mimo_status mimo_model_mtp_open(mimo_model *m, int layer) {
  if (m->group || !m->be)
    return mimo_errf(MIMO_E_INVALID, "MTP drafting on a tensor-parallel group is not implemented");
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
  d->cfg = m->cfg;
  d->cfg.num_hidden_layers = 1;
  d->cfg.layer_type[0] = MIMO_ATTN_SWA;
  d->cfg.layer_moe[0] = false;
  *lw = t->layer;
  d->w.embed = m->w.embed;
  d->w.lm_head = m->w.lm_head;
  d->w.final_norm = t->final_norm;
  d->w.layers = lw;
  d->w.n_layers = 1;
  d->be = m->be;
  d->tp = 1;
  d->vocab_n = m->vocab_n;
  d->kv_bf16 = m->kv_bf16;
  m->mtp = d;
  m->mtp_w = t;
  return MIMO_OK;
}

/* x = eh_proj · [enorm(E[ids]) ; hnorm(h)] for T tokens, into host rows. */
static mimo_status mtp_input(mimo_model *m, const int *ids, const float *h, int T, float *x) {
  mimo_backend *be = m->be;
  const mimo_mtp_weights *t = m->mtp_w;
  const int H = m->cfg.hidden_size;
  const float eps = (float)m->cfg.layernorm_epsilon;
  float *in = be->alloc(be, (size_t)T * H), *normed = be->alloc(be, (size_t)T * H),
        *cat = be->alloc(be, (size_t)T * 2 * H);
  mimo_status st = in && normed && cat ? MIMO_OK : mimo_errf(MIMO_E_NOMEM, "MTP input of %d tokens", T);
  if (st == MIMO_OK) { /* [embedding ; hidden], the order of spec §2.7 */
    be->embed(be, in, &m->w.embed, ids, T);
    be->rmsnorm(be, normed, in, &t->enorm, T, H, eps);
    be->copy2d(be, cat, 2 * H, normed, H, T, H);
    st = mimo_backend_to(be, in, h, (size_t)T * H);
  }
  if (st == MIMO_OK) {
    be->rmsnorm(be, normed, in, &t->hnorm, T, H, eps);
    be->copy2d(be, cat + H, 2 * H, normed, H, T, H);
    be->linear(be, in, cat, T, &t->eh_proj);
    st = mimo_backend_from(be, x, in, (size_t)T * H);
  }
  float *bufs[] = {in, normed, cat};
  for (int i = 0; i < 3; i++)
    if (bufs[i])
      be->release(be, bufs[i]);
  return st;
}

mimo_status mimo_model_mtp_forward(mimo_model *m, mimo_kv_seq *seq, const int *ids, const float *h, int T,
                                   int all_logits, float *logits, float *hidden_out) {
  if (!m->mtp)
    return mimo_errf(MIMO_E_INVALID, "no MTP draft model (mimo_model_mtp_open)");
  if (T < 1)
    return MIMO_OK;
  float *x = malloc((size_t)T * m->cfg.hidden_size * sizeof *x);
  if (!x)
    return mimo_errf(MIMO_E_NOMEM, "MTP input of %d tokens", T);
  mimo_status st = mtp_input(m, ids, h, T, x);
  const mimo_embed_run run = {.at = 0, .n = T, .rows = x};
  mimo_batch b = {.n_seqs = 1, .seqs = &seq, .n_tokens = &T, .tokens = ids, .all_logits = all_logits,
                  .embeds = &run, .n_embeds = 1, .hidden_out = hidden_out};
  if (st == MIMO_OK)
    st = mimo_model_forward(m->mtp, &b, logits);
  free(x);
  return st;
}
