/* Greedy speculative decoding with MTP drafts (speculate.h). Positions: the model's cache holds 0..L-1 and t is the
 * token at L, not yet fed; the MTP cache holds 0..L-1 too, its position i made from the token at i + 1 and the model's
 * hidden state at i, so its last row drafted d0 for L + 1. Each round:
 *   verify  the model takes [t, d0 .. d(k-1)] at L .. L+k; its rows give g0 .. gk (its own choice after each);
 *   accept  the drafts while d(i) = g(i): acc of them; the output gains g0 .. g(acc);
 *   rewind  the model's cache to L + acc + 1 (t and the kept drafts), the MTP's to L;
 *   redraft the MTP takes g0 .. g(acc) with the model's hidden states at L .. L+acc (its drafts' cache entries were
 *           made from its own hidden states, not the model's), then chains k - 1 more from its own. */
#include "engine/speculate.h"

#include <stdlib.h>
#include <string.h>

static int argmax(const float *x, int V) {
  int a = 0;
  for (int i = 1; i < V; i++)
    if (x[i] > x[a]) /* strict: ties keep the lowest id, as the sampler */
      a = i;
  return a;
}

static const int *test_oracle;
static int test_oracle_n;
void mimo_speculate_test_oracle(const int *oracle, int n) {
  test_oracle = oracle;
  test_oracle_n = n;
}

typedef struct {
  mimo_model *m;
  int produced; /* output tokens so far: draft j is for output position produced + j */
  mimo_kv_seq *seq, *dseq; /* the model's cache, the MTP's */
  int V, H, k;
  float *logits, *hidden, *dlogits, *dhidden; /* [k + 1][V], [k + 1][H] (n rows for the prompt), [V], as hidden */
  int *draft;                                /* [k] */
} spec;

/* The model over ids[0..n) at its next positions: every row's logits and hidden state. */
static mimo_status target(spec *s, const int *ids, int n) {
  mimo_batch b = {.n_seqs = 1, .seqs = &s->seq, .n_tokens = &n, .tokens = ids, .all_logits = 1,
                  .hidden_out = s->hidden};
  return mimo_model_forward(s->m, &b, s->logits);
}

/* The MTP over ids[0..n) with hidden states h, then k - 1 more drafts from its own: s->draft[0..k). */
static mimo_status draft(spec *s, const int *ids, const float *h, int n) {
  MIMO_TRY(mimo_model_mtp_forward(s->m, s->dseq, ids, h, n, 0, s->dlogits, s->dhidden));
  s->draft[0] = argmax(s->dlogits, s->V);
  if (n > 1) /* every row's hidden state came out; the chain goes on from the last */
    memmove(s->dhidden, s->dhidden + (size_t)(n - 1) * s->H, (size_t)s->H * sizeof(float));
  for (int j = 1; j < s->k; j++) {
    MIMO_TRY(mimo_model_mtp_forward(s->m, s->dseq, &s->draft[j - 1], s->dhidden, 1, 0, s->dlogits, s->dhidden));
    s->draft[j] = argmax(s->dlogits, s->V);
  }
  for (int j = 0; test_oracle && j < s->k; j++)
    if (s->produced + j < test_oracle_n)
      s->draft[j] = test_oracle[s->produced + j];
  return MIMO_OK;
}

mimo_status mimo_speculate_greedy(mimo_model *m, const int *prompt, int n, int max_tokens, int k, bool ignore_eos,
                                  int *out, int *n_out, mimo_spec_stats *stats) {
  *n_out = 0;
  memset(stats, 0, sizeof *stats);
  if (k < 1 || k > 16 || n < 1)
    return mimo_errf(MIMO_E_INVALID, "speculative decoding: %d draft tokens (1 to 16) after %d prompt tokens", k, n);
  MIMO_TRY(mimo_model_mtp_open(m, 0));
  MIMO_TRY(mimo_model_set_kv_slack(m, k));
  spec s = {.m = m, .V = m->cfg.vocab_size, .H = m->cfg.hidden_size, .k = k};
  const int rows = n > k + 1 ? n : k + 1;
  s.logits = malloc((size_t)rows * s.V * sizeof(float));
  s.hidden = malloc((size_t)rows * s.H * sizeof(float));
  s.dlogits = malloc((size_t)s.V * sizeof(float));
  s.dhidden = malloc((size_t)rows * s.H * sizeof(float));
  s.draft = malloc((size_t)k * sizeof(int));
  int *ids = malloc((size_t)rows * sizeof(int));
  mimo_status st = s.logits && s.hidden && s.dlogits && s.dhidden && s.draft && ids
                       ? MIMO_OK
                       : mimo_errf(MIMO_E_NOMEM, "speculative decoding buffers");
  if (st == MIMO_OK)
    st = mimo_kv_seq_init(&s.seq, &m->cfg);
  if (st == MIMO_OK)
    st = mimo_kv_seq_init(&s.dseq, &m->mtp->cfg);
  /* the prompt, then the MTP over it shifted by one (its last position takes the first output) */
  int t = -1;
  if (st == MIMO_OK)
    st = target(&s, prompt, n);
  if (st == MIMO_OK && max_tokens > 0) {
    t = argmax(s.logits + (size_t)(n - 1) * s.V, s.V);
    if (!ignore_eos && mimo_config_is_eos(&m->cfg, t)) {
      max_tokens = 0;
    } else {
      out[(*n_out)++] = t;
      s.produced = *n_out;
      memcpy(ids, prompt + 1, (size_t)(n - 1) * sizeof(int));
      ids[n - 1] = t;
      st = draft(&s, ids, s.hidden, n);
    }
  }
  while (st == MIMO_OK && *n_out < max_tokens) {
    const int L = s.seq->len;
    ids[0] = t;
    memcpy(ids + 1, s.draft, (size_t)k * sizeof(int));
    st = target(&s, ids, k + 1);
    if (st != MIMO_OK)
      break;
    stats->steps++;
    stats->drafted += k;
    int g[17], acc = 0;
    for (int i = 0; i <= k; i++)
      g[i] = argmax(s.logits + (size_t)i * s.V, s.V);
    while (acc < k && s.draft[acc] == g[acc])
      acc++;
    stats->accepted += acc;
    bool end = false;
    for (int i = 0; i <= acc && !end; i++) {
      if (!ignore_eos && mimo_config_is_eos(&m->cfg, g[i]))
        end = true;
      else
        out[(*n_out)++] = g[i];
      end |= *n_out >= max_tokens;
    }
    if (end)
      break;
    t = g[acc];
    st = mimo_kv_seq_truncate(s.seq, L + acc + 1);
    if (st == MIMO_OK)
      st = mimo_kv_seq_truncate(s.dseq, L);
    s.produced = *n_out;
    if (st == MIMO_OK)
      st = draft(&s, g, s.hidden, acc + 1);
  }
  mimo_kv_seq_free(s.seq);
  mimo_kv_seq_free(s.dseq);
  free(s.logits);
  free(s.hidden);
  free(s.dlogits);
  free(s.dhidden);
  free(s.draft);
  free(ids);
  return st;
}
