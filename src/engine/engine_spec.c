/* Speculative decoding in the serving engine (engine.h, num_speculative_tokens; docs/speculative.md).
 *
 * A decoding sequence whose model cache stands at L feeds [t, d0 .. d(n-1)]: its next token t and the MTP layer's
 * drafts. Each of the n + 1 rows is sampled with the job plain decoding would use there had the drafts before it
 * been output (their penalties counted, the uniform it would draw): row i's token is the output at that place.
 * The outputs are row 0's token, then row i + 1's for as long as row i's token equals d(i). With drafts that are
 * one token each (the MTP's argmax), this is rejection sampling against a point mass: a draft is kept with the
 * probability the model gives it, and a rejected one is replaced by a draw from the model's distribution without
 * it. So the outputs are those of plain decoding, and with a seed they are the same tokens.
 *
 * The MTP layer's cache follows the model's: its position p is made from the model's final-normed hidden state at
 * p and the token at p + 1. After each step it takes the positions the step added (its own drafting rows of the
 * step before are stepped back first), and its last row drafts d0; k - 1 more follow, one token at a time, each from
 * the one before and the MTP's own hidden state. A sequence that starts from a prefix-cache hit (or after a prompt
 * whose logprobs were wanted, or an MTP step that failed) has no hidden states for what came before: its MTP cache
 * starts window - 1 positions back: those positions are made from the hidden states the request keeps of its last
 * positions (spec_hist: a prefix-cache entry carries a copy), or from their tokens alone (hidden state zero) where
 * it has none; the slots before them hold zeros. Only the drafts suffer; the outputs do not depend on them. */
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "engine/engine_internal.h"

struct spec_bufs {
  int cap_rows;              /* MTP rows the buffers hold */
  int *tokens;               /* [cap_rows] */
  float *h, *hout;           /* [cap_rows][hidden]: the hidden states in, the MTP's out */
  mimo_request **reqs;       /* [S] the step's sequences with MTP rows */
  mimo_kv_seq **seqs;        /* [S] */
  int *counts, *last;        /* [S] rows, and the last row's index */
  mimo_sample_job *jobs;     /* [S] */
  int *sampled;              /* [S] */
  float *chain_h;            /* [S][hidden] */
  mimo_embed_run *emb;       /* image rows among the MTP rows (their tokens' embeddings) */
  int n_emb, cap_emb;
  bool warned;               /* an MTP step failed (said once) */
};

mimo_status mimo_spec_init(mimo_engine *e) {
  mimo_model *m = e->model;
  if (!m->w.n_mtp)
    return mimo_errf(MIMO_E_INVALID, "speculative decoding with MTP drafts: the checkpoint has no MTP layers "
                     "(model.mtp.layers.*)");
  MIMO_TRY(mimo_model_mtp_open(m, 0));
  if (m->cfg.kv_ring_slack < e->spec_k)
    MIMO_TRY(mimo_model_set_kv_slack(m, e->spec_k));
  const size_t S = (size_t)e->o.max_num_seqs, H = (size_t)m->cfg.hidden_size;
  struct spec_bufs *sb = calloc(1, sizeof *sb);
  e->sb = sb;
  e->hidden = malloc((size_t)e->o.max_num_batched_tokens * H * sizeof *e->hidden);
  if (!sb || !e->hidden)
    return mimo_errf(MIMO_E_NOMEM, "speculative decoding buffers");
  sb->reqs = calloc(S, sizeof *sb->reqs);
  sb->seqs = calloc(S, sizeof *sb->seqs);
  sb->counts = calloc(S, sizeof *sb->counts);
  sb->last = calloc(S, sizeof *sb->last);
  sb->jobs = calloc(S, sizeof *sb->jobs);
  sb->sampled = calloc(S, sizeof *sb->sampled);
  sb->chain_h = malloc(S * H * sizeof *sb->chain_h);
  if (!sb->reqs || !sb->seqs || !sb->counts || !sb->last || !sb->jobs || !sb->sampled || !sb->chain_h)
    return mimo_errf(MIMO_E_NOMEM, "speculative decoding buffers");
  mimo_info("engine: speculative decoding, %d draft token%s per step from MTP layer 0", e->spec_k,
            e->spec_k == 1 ? "" : "s");
  return MIMO_OK;
}

void mimo_spec_free(mimo_engine *e) {
  struct spec_bufs *sb = e->sb;
  free(e->hidden);
  e->hidden = NULL;
  if (!sb)
    return;
  free(sb->tokens);
  free(sb->h);
  free(sb->hout);
  free(sb->reqs);
  free(sb->seqs);
  free(sb->counts);
  free(sb->last);
  free(sb->jobs);
  free(sb->sampled);
  free(sb->chain_h);
  free(sb->emb);
  free(sb);
  e->sb = NULL;
}

void mimo_spec_drop(mimo_request *r) {
  mimo_kv_seq_free(r->dkv);
  r->dkv = NULL;
  r->n_draft = 0;
}

/* The hidden states of positions [lo, hi) (at most W of them: position p in row p % W). */
struct spec_hist {
  int W, H, lo, hi;
  float *rows; /* [W][H] */
};

void mimo_spec_hist_free(void *p) {
  struct spec_hist *h = p;
  if (h)
    free(h->rows);
  free(h);
}

static struct spec_hist *hist_new(int W, int H) {
  struct spec_hist *h = calloc(1, sizeof *h);
  if (h && !(h->rows = malloc((size_t)W * H * sizeof *h->rows))) {
    free(h);
    return NULL;
  }
  if (h) {
    h->W = W;
    h->H = H;
  }
  return h;
}

/* Position p's row, or NULL when it is not kept. */
static const float *hist_row(const struct spec_hist *h, int p) {
  if (!h || p < h->lo || p >= h->hi || p < h->hi - h->W)
    return NULL;
  return h->rows + (size_t)(p % h->W) * h->H;
}

static void hist_put(struct spec_hist *h, int p, const float *row) {
  if (p > h->hi || p < h->lo) /* a gap, or a step back past what it holds: start again from p */
    h->lo = p;
  if (p != h->hi) /* (positions from p on are made again) */
    h->hi = p;
  memcpy(h->rows + (size_t)(p % h->W) * h->H, row, (size_t)h->H * sizeof *row);
  h->hi = p + 1;
}

void mimo_spec_keep_rows(mimo_engine *e, mimo_request *r, int start, int n, int hrow) {
  mimo_model *m = e->model;
  const int H = m->cfg.hidden_size, W = m->mtp->cfg.swa.window > 1 ? m->mtp->cfg.swa.window : 1;
  if (!r->hist && !(r->hist = hist_new(W, H)))
    return; /* (no memory: its MTP cache starts from zeros later) */
  for (int j = n > W ? n - W : 0; j < n; j++) /* (only the last window is kept) */
    hist_put(r->hist, start + j, e->hidden + (size_t)(hrow + j) * H);
}

void mimo_spec_keep_hidden(mimo_engine *e, int nb, const int *starts) {
  for (int k = 0, hrow = 0, row = 0; k < nb; hrow += e->counts[k], row += e->n_logits[k], k++) {
    mimo_request *r = e->batch[k];
    int valid = e->counts[k];
    if (e->n_logits[k] > 1) { /* t and the drafts the model sampled too */
      valid = 1;
      while (valid < e->n_logits[k] && e->sampled[row + valid - 1] == r->draft[valid - 1])
        valid++;
    }
    mimo_spec_keep_rows(e, r, starts[k], valid, hrow);
  }
}

static struct spec_hist *hist_clone(const struct spec_hist *h) {
  struct spec_hist *c = h ? hist_new(h->W, h->H) : NULL;
  if (!c)
    return NULL;
  c->lo = h->lo;
  c->hi = h->hi;
  memcpy(c->rows, h->rows, (size_t)h->W * h->H * sizeof *c->rows);
  return c;
}

void *mimo_spec_hist_copy(const mimo_request *r) { return hist_clone(r->hist); }

void mimo_spec_hist_from(mimo_engine *e, mimo_request *r, const void *p, int len) {
  const struct spec_hist *h = p;
  (void)e;
  mimo_spec_hist_free(r->hist);
  r->hist = NULL;
  if (!h || len <= h->lo)
    return;
  if ((r->hist = hist_clone(h)))
    r->hist->hi = len < h->hi ? len : h->hi;
}

/* Under an active structured-output mask: the drafts the grammar takes (up to n, none past a stop id), and row i's
 * mask after drafts 0..i-1 into r->allow_rows; 0 when there is no room for them. */
static int constrained_rows(const mimo_engine *e, mimo_request *r, int n) {
  const size_t words = ((size_t)e->vocab + 31) / 32;
  if (!r->con->clone || (!r->allow_rows && !(r->allow_rows = malloc((size_t)(e->spec_k + 1) * words * 4))))
    return 0;
  mimo_constraint *c = r->con->clone(r->con);
  if (!c)
    return 0;
  int i = 0;
  for (;; i++) {
    uint32_t *allow = r->allow_rows + (size_t)i * words;
    memset(allow, 0, words * sizeof *allow);
    c->mask(c, allow, e->vocab, r->stop, r->n_stop);
    if (i == n)
      break;
    bool stop = false;
    for (int s = 0; s < r->n_stop; s++)
      stop |= r->stop[s] == r->draft[i];
    /* a draft the mask refuses, or a stop id (the output ends there), ends the run */
    if (stop || !(allow[r->draft[i] / 32] >> (r->draft[i] % 32) & 1) || !c->accept(c, r->draft[i]))
      break;
  }
  c->free(c);
  return i;
}

int mimo_spec_drafts(const mimo_engine *e, mimo_request *r, int budget) {
  if (!r->n_draft || !r->dkv || r->generated < r->n_forced)
    return 0;
  int n = r->n_draft;
  const int limits[3] = {
      budget - 1,                                              /* the step's tokens */
      r->max_tokens - r->generated - 1,                        /* outputs it may still give */
      e->o.max_model_len - (r->n_prompt + r->generated) - 1,   /* positions */
  };
  for (int i = 0; i < 3; i++)
    n = limits[i] < n ? limits[i] : n;
  if (n > 0 && r->con && r->con_active)
    n = constrained_rows(e, r, n);
  if (n <= 0 || mimo_sampler_ahead_room(r->smp, n) != MIMO_OK)
    return 0;
  return n;
}

void mimo_spec_emit(mimo_engine *e, mimo_request *r, int start, int n, int row) {
  long kept = 0, per_pos[MIMO_SPEC_MAX] = {0};
  int emitted = 0, draft[MIMO_SPEC_MAX];
  memcpy(draft, r->draft, (size_t)n * sizeof *draft);
  bool alive = true;
  const bool masked = r->con && r->con_active; /* the rows were masked as the grammar stood after each draft */
  for (int i = 0; i <= n && alive; i++) {
    const int tok = e->sampled[row + i];
    const bool match = i < n && tok == draft[i];
    kept += match;
    per_pos[i] += match;
    emitted++;
    mimo_sampler_advance(r->smp, 1); /* the draw row i's job took */
    mimo_engine_take_token(e, mimo_engine_slot_of(e, r), r, tok, &e->infos[row + i]);
    alive = mimo_engine_slot_of(e, r) >= 0; /* r is not touched once it finished (it may be gone) */
    /* a mismatch ends the run; so does a structured-output mask that starts here (the rows after were not masked) */
    if (alive && (!match || (r->con && r->con_active && !masked)))
      break;
  }
  __atomic_fetch_add(&e->stats.spec_drafts, 1, __ATOMIC_RELAXED);
  __atomic_fetch_add(&e->stats.spec_draft_tokens, n, __ATOMIC_RELAXED);
  __atomic_fetch_add(&e->stats.spec_accepted_tokens, kept, __ATOMIC_RELAXED);
  for (int i = 0; i < n; i++)
    __atomic_fetch_add(&e->stats.spec_accepted_per_pos[i], per_pos[i], __ATOMIC_RELAXED);
  if (!alive)
    return;
  /* valid: t and the drafts that were output (a finished request's cache was cut by finish) */
  mimo_status st = mimo_model_kv_truncate(e->model, r->kv, start + emitted);
  if (st != MIMO_OK)
    mimo_engine_step_failed(e, mimo_engine_slot_of(e, r), st);
}

/* Room for `rows` MTP rows. */
static bool grow_rows(struct spec_bufs *sb, int rows, int H) {
  if (rows <= sb->cap_rows)
    return true;
  const int cap = rows > 2 * sb->cap_rows ? rows : 2 * sb->cap_rows;
  int *t = realloc(sb->tokens, (size_t)cap * sizeof *t);
  if (t)
    sb->tokens = t;
  float *h = realloc(sb->h, (size_t)cap * H * sizeof *h);
  if (h)
    sb->h = h;
  float *o = realloc(sb->hout, (size_t)cap * H * sizeof *o);
  if (o)
    sb->hout = o;
  if (!t || !h || !o)
    return false;
  sb->cap_rows = cap;
  return true;
}

/* MTP steps failed: every sequence of this step loses its MTP cache (it starts again, as after a prefix hit). */
static void drop_all(mimo_engine *e, int ns, const char *what) {
  struct spec_bufs *sb = e->sb;
  if (!sb->warned)
    mimo_warn("engine: %s failed (%s); those sequences decode without drafts until their MTP cache is made again "
              "(said once)", what, mimo_errmsg());
  sb->warned = true;
  for (int i = 0; i < ns; i++)
    mimo_spec_drop(sb->reqs[i]);
}

/* Sequence r's MTP rows for the positions its model cache gained in this step (its rows of e->hidden start at
 * hrow; it stood at p0 before): appended at sb row *T. False when it has none (it lost its MTP cache instead). */
static bool catch_up_rows(mimo_engine *e, mimo_request *r, int p0, int hrow, int *T) {
  struct spec_bufs *sb = e->sb;
  mimo_model *m = e->model;
  const int H = m->cfg.hidden_size, W = m->mtp->cfg.swa.window > 1 ? m->mtp->cfg.swa.window : 1;
  if (r->out_lost || !r->kv) {
    mimo_spec_drop(r);
    return false;
  }
  if (r->dkv && r->dkv->len > p0 && mimo_model_kv_truncate(m->mtp, r->dkv, p0) != MIMO_OK)
    mimo_spec_drop(r); /* (its drafting rows of the last step) */
  if (r->dkv && r->dkv->len < p0) /* a gap: positions it never got */
    mimo_spec_drop(r);
  if (!r->dkv) {
    const int from = p0 > W - 1 ? p0 - (W - 1) : 0;
    if (mimo_kv_seq_init(&r->dkv, &m->mtp->cfg) != MIMO_OK || mimo_model_mtp_start_at(m, r->dkv, from) != MIMO_OK) {
      mimo_spec_drop(r);
      return false;
    }
  }
  const int from = r->dkv->len, to = r->kv->len, recorded = r->n_prompt + r->generated;
  if (to <= from || to >= recorded || !grow_rows(sb, *T + (to - from), H)) {
    if (to > from) /* (no memory for the rows) */
      mimo_spec_drop(r);
    return false;
  }
  if (r->n_mm) { /* the image rows of the tokens after these positions: from + 1 .. to */
    if (sb->n_emb + r->n_mm > sb->cap_emb) {
      const int cap = 2 * (sb->n_emb + r->n_mm);
      mimo_embed_run *e2 = realloc(sb->emb, (size_t)cap * sizeof *e2);
      if (!e2) {
        mimo_spec_drop(r);
        return false;
      }
      sb->emb = e2;
      sb->cap_emb = cap;
    }
    sb->n_emb += mimo_embed_runs_slice(r->mm, r->n_mm, from + 1, to - from, *T, H, sb->emb + sb->n_emb);
  }
  for (int p = from; p < to; p++, (*T)++) {
    sb->tokens[*T] = r->prompt[p + 1];
    float *h = sb->h + (size_t)*T * H;
    const float *kept = p < p0 ? hist_row(r->hist, p) : NULL;
    if (p >= p0)
      memcpy(h, e->hidden + (size_t)(hrow + p - p0) * H, (size_t)H * sizeof *h);
    else if (kept) /* a position computed before (a prefix-cache entry's, an earlier step's) */
      memcpy(h, kept, (size_t)H * sizeof *h);
    else
      memset(h, 0, (size_t)H * sizeof *h);
  }
  return true;
}

void mimo_spec_draft(mimo_engine *e, int nb, const int *starts) {
  struct spec_bufs *sb = e->sb;
  mimo_model *m = e->model;
  const int H = m->cfg.hidden_size, k = e->spec_k;
  const mimo_sample_job greedy = {.temperature = 0, .top_p = 1, .repetition_penalty = 1, .limit = e->vocab};
  int ns = 0, T = 0;
  sb->n_emb = 0;
  for (int b = 0, hrow = 0; b < nb; hrow += e->counts[b++]) {
    mimo_request *r = e->batch[b];
    if (mimo_engine_slot_of(e, r) < 0) /* finished in this step (not touched: it may be gone) */
      continue;
    r->n_draft = 0;
    const int at = T;
    if (!catch_up_rows(e, r, starts[b], hrow, &T))
      continue;
    sb->reqs[ns] = r;
    sb->seqs[ns] = r->dkv;
    sb->counts[ns] = T - at;
    sb->last[ns] = T - 1;
    /* drafts only for the sequences that decode next and may use them */
    const bool drafts = r->fed >= r->n_feed &&
                        r->n_prompt + r->generated + k < e->o.max_model_len; /* (the drafting rows' positions) */
    sb->jobs[ns] = greedy;
    sb->jobs[ns].skip = !drafts;
    ns++;
  }
  if (!ns)
    return;
  mimo_batch b = {.n_seqs = ns, .seqs = sb->seqs, .n_tokens = sb->counts, .tokens = sb->tokens, .jobs = sb->jobs,
                  .sampled = sb->sampled, .hidden_out = sb->hout, .embeds = sb->emb, .n_embeds = sb->n_emb};
  if (mimo_model_mtp_step(m, &b, sb->h) != MIMO_OK) {
    drop_all(e, ns, "an MTP step");
    return;
  }
  /* the drafting sequences, compacted: d0 and their last hidden rows */
  int nd = 0;
  for (int i = 0; i < ns; i++) {
    mimo_request *r = sb->reqs[i];
    if (sb->jobs[i].skip || sb->sampled[i] < 0)
      continue;
    r->draft[0] = sb->sampled[i];
    r->n_draft = 1;
    sb->reqs[nd] = r;
    sb->seqs[nd] = r->dkv;
    sb->counts[nd] = 1;
    memcpy(sb->chain_h + (size_t)nd * H, sb->hout + (size_t)sb->last[i] * H, (size_t)H * sizeof(float));
    nd++;
  }
  for (int j = 1; j < k && nd; j++) {
    for (int i = 0; i < nd; i++) {
      sb->tokens[i] = sb->reqs[i]->n_draft >= j ? sb->reqs[i]->draft[j - 1] : 0; /* (one whose chain broke) */
      sb->jobs[i] = greedy;
    }
    mimo_batch c = {.n_seqs = nd, .seqs = sb->seqs, .n_tokens = sb->counts, .tokens = sb->tokens, .jobs = sb->jobs,
                    .sampled = sb->sampled, .hidden_out = sb->hout};
    if (mimo_model_mtp_step(m, &c, sb->chain_h) != MIMO_OK) {
      drop_all(e, nd, "an MTP drafting step");
      return;
    }
    memcpy(sb->chain_h, sb->hout, (size_t)nd * H * sizeof(float));
    for (int i = 0; i < nd; i++) {
      mimo_request *r = sb->reqs[i];
      if (sb->sampled[i] >= 0 && r->n_draft == j) {
        r->draft[j] = sb->sampled[i];
        r->n_draft = j + 1;
      }
    }
  }
  for (int i = 0; e->o.spec_trace && i < nd; i++) /* test seams (engine.h) */
    e->o.spec_trace(e->o.spec_trace_ctx, sb->reqs[i], sb->reqs[i]->draft, sb->reqs[i]->n_draft);
  for (int i = 0; e->o.spec_oracle && i < nd; i++) {
    mimo_request *r = sb->reqs[i];
    for (int j = 0; j < r->n_draft && r->generated + j < e->o.n_spec_oracle; j++)
      r->draft[j] = e->o.spec_oracle[r->generated + j];
  }
}
