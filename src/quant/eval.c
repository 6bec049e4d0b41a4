/* Perplexity and KL statistics (eval.h). */
#include "quant/eval.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

mimo_status mimo_log_softmax(const float *x, int V, double *lp, double *lse) {
  double m = -INFINITY;
  for (int v = 0; v < V; v++) {
    if (!isfinite(x[v]))
      return mimo_errf(MIMO_E_INVALID, "logit %d is %s: no log-probabilities", v, isnan(x[v]) ? "NaN" : "infinite");
    m = x[v] > m ? x[v] : m;
  }
  double z = 0;
  for (int v = 0; v < V; v++)
    z += exp((double)x[v] - m);
  const double l = m + log(z);
  for (int v = 0; v < V; v++)
    lp[v] = (double)x[v] - l;
  if (lse)
    *lse = l;
  return MIMO_OK;
}

double mimo_kl_div(const double *lp, const double *lq, int V) {
  double kl = 0;
  for (int v = 0; v < V; v++) {
    const double p = exp(lp[v]);
    if (p > 0)
      kl += p * (lp[v] - lq[v]);
  }
  return kl > 0 ? kl : 0; /* rounding may leave -1e-17 for equal rows */
}

void mimo_eval_init(mimo_eval *e) { memset(e, 0, sizeof *e); }
void mimo_eval_free(mimo_eval *e) {
  free(e->kls);
  memset(e, 0, sizeof *e);
}

static int argmax(const double *lp, int V) {
  int b = 0;
  for (int v = 1; v < V; v++)
    if (lp[v] > lp[b])
      b = v;
  return b;
}

/* One position against its base: the statistics of eval.h. */
static mimo_status add_base(mimo_eval *e, double nll, double bnll, double kl, bool same) {
  if (e->n_kl == e->kls_cap) {
    const long cap = e->kls_cap ? 2 * e->kls_cap : 1024;
    float *k = realloc(e->kls, (size_t)cap * sizeof *k);
    if (!k)
      return mimo_errf(MIMO_E_NOMEM, "KL values of %ld tokens", cap);
    e->kls = k;
    e->kls_cap = cap;
  }
  e->kls[e->n_kl++] = (float)kl;
  e->kl += kl;
  e->kl2 += kl * kl;
  e->kl_max = kl > e->kl_max ? kl : e->kl_max;
  e->base_nll += bnll;
  e->base_nll2 += bnll * bnll;
  e->dnll += nll - bnll;
  e->dnll2 += (nll - bnll) * (nll - bnll);
  e->same_top += same;
  return MIMO_OK;
}

mimo_status mimo_eval_score(const double *lp, int V, int next, const double *base, const mimo_base_top *bt,
                            mimo_eval_row *row) {
  memset(row, 0, sizeof *row);
  if (next < 0 || next >= V)
    return mimo_errf(MIMO_E_INVALID, "token %d is outside the vocabulary (%d)", next, V);
  row->nll = -lp[next];
  if (bt) {
    for (int i = 0; i < bt->k; i++)
      if (bt->id[i] < 0 || bt->id[i] >= V)
        return mimo_errf(MIMO_E_FORMAT, "base entry %d: token %d is outside the vocabulary (%d)", i, bt->id[i], V);
    row->has_base = true;
    row->base_nll = -bt->lp_next;
    row->kl = mimo_kl_div_top(bt, lp);
    row->same_top = bt->k > 0 && argmax(lp, V) == bt->id[0];
  } else if (base) {
    row->has_base = true;
    row->base_nll = -base[next];
    row->kl = mimo_kl_div(base, lp, V);
    row->same_top = argmax(lp, V) == argmax(base, V);
  }
  return MIMO_OK;
}

mimo_status mimo_eval_push(mimo_eval *e, const mimo_eval_row *row) {
  e->n++;
  e->nll += row->nll;
  e->nll2 += row->nll * row->nll;
  return row->has_base ? add_base(e, row->nll, row->base_nll, row->kl, row->same_top) : MIMO_OK;
}

mimo_status mimo_eval_add(mimo_eval *e, const double *lp, int V, int next, const double *base) {
  mimo_eval_row row;
  MIMO_TRY(mimo_eval_score(lp, V, next, base, NULL, &row));
  return mimo_eval_push(e, &row);
}

mimo_status mimo_eval_add_top(mimo_eval *e, const double *lp, int V, int next, const mimo_base_top *base) {
  mimo_eval_row row;
  MIMO_TRY(mimo_eval_score(lp, V, next, NULL, base, &row));
  return mimo_eval_push(e, &row);
}

double mimo_kl_div_top(const mimo_base_top *b, const double *lq) {
  double kl = 0, pk = 0, qk = 0;
  for (int i = 0; i < b->k; i++) {
    const double p = exp(b->lp[i]), q = exp(lq[b->id[i]]);
    pk += p;
    qk += q;
    if (p > 0)
      kl += p * (b->lp[i] - lq[b->id[i]]);
  }
  const double pr = 1 - pk, qr = 1 - qk; /* the rest's mass */
  if (pr > 0)
    kl += pr * (log(pr) - log(qr > 0 ? qr : 1e-300));
  return kl > 0 ? kl : 0;
}

/* Entry order: value desc, then id asc. */
static bool better(double va, int ia, double vb, int ib) { return va > vb || (va == vb && ia < ib); }

void mimo_top_entries(const double *lp, int V, int k, int *id, double *out_lp) {
  /* a min-heap of the k best so far (the worst at the root), then sorted best first */
  int n = 0;
  for (int v = 0; v < V; v++) {
    if (n == k && !better(lp[v], v, out_lp[0], id[0]))
      continue;
    int at;
    if (n < k) { /* sift up from the end */
      at = n++;
      while (at > 0 && better(out_lp[(at - 1) / 2], id[(at - 1) / 2], lp[v], v)) {
        out_lp[at] = out_lp[(at - 1) / 2], id[at] = id[(at - 1) / 2];
        at = (at - 1) / 2;
      }
    } else { /* replace the root, sift down */
      at = 0;
      for (;;) {
        int c = 2 * at + 1;
        if (c >= n)
          break;
        if (c + 1 < n && better(out_lp[c], id[c], out_lp[c + 1], id[c + 1]))
          c++;
        if (!better(lp[v], v, out_lp[c], id[c]))
          break;
        out_lp[at] = out_lp[c], id[at] = id[c];
        at = c;
      }
    }
    out_lp[at] = lp[v], id[at] = v;
  }
  /* heap sort: repeatedly move the worst to the end */
  for (int end = n - 1; end > 0; end--) {
    const double tv = out_lp[end];
    const int ti = id[end];
    out_lp[end] = out_lp[0], id[end] = id[0];
    int at = 0;
    for (;;) {
      int c = 2 * at + 1;
      if (c >= end)
        break;
      if (c + 1 < end && better(out_lp[c], id[c], out_lp[c + 1], id[c + 1]))
        c++;
      if (!better(tv, ti, out_lp[c], id[c]))
        break;
      out_lp[at] = out_lp[c], id[at] = id[c];
      at = c;
    }
    out_lp[at] = tv, id[at] = ti;
  }
}

/* Mean of n samples with sum s and sum of squares s2, and the standard error of that mean. */
static mimo_estimate mean_err(double s, double s2, long n) {
  mimo_estimate r = {0, 0};
  if (n <= 0)
    return r;
  r.mean = s / (double)n;
  if (n > 1) {
    const double var = (s2 - s * r.mean) / (double)(n - 1);
    r.err = var > 0 ? sqrt(var / (double)n) : 0;
  }
  return r;
}

mimo_estimate mimo_eval_ppl(const mimo_eval *e) {
  const mimo_estimate m = mean_err(e->nll, e->nll2, e->n);
  const double p = exp(m.mean);
  return (mimo_estimate){p, p * m.err};
}
mimo_estimate mimo_eval_base_ppl(const mimo_eval *e) {
  const mimo_estimate m = mean_err(e->base_nll, e->base_nll2, e->n_kl);
  const double p = exp(m.mean);
  return (mimo_estimate){p, p * m.err};
}
mimo_estimate mimo_eval_kl(const mimo_eval *e) { return mean_err(e->kl, e->kl2, e->n_kl); }
mimo_estimate mimo_eval_ln_ppl_ratio(const mimo_eval *e) { return mean_err(e->dnll, e->dnll2, e->n_kl); }
mimo_estimate mimo_eval_same_top(const mimo_eval *e) {
  if (e->n_kl <= 0)
    return (mimo_estimate){0, 0};
  const double p = (double)e->same_top / (double)e->n_kl;
  return (mimo_estimate){p, sqrt(p * (1 - p) / (double)e->n_kl)};
}

static int cmp_float(const void *a, const void *b) {
  const float x = *(const float *)a, y = *(const float *)b;
  return (x > y) - (x < y);
}

double mimo_eval_kl_quantile(mimo_eval *e, double q) {
  if (e->n_kl <= 0)
    return 0;
  qsort(e->kls, (size_t)e->n_kl, sizeof *e->kls, cmp_float);
  long r = (long)ceil(q * (double)e->n_kl) - 1; /* nearest rank */
  r = r < 0 ? 0 : r >= e->n_kl ? e->n_kl - 1 : r;
  return e->kls[r];
}

uint64_t mimo_tokens_hash(const int *ids, long n) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (long i = 0; i < n; i++)
    for (int b = 0; b < 4; b++) {
      h ^= (uint64_t)(((uint32_t)ids[i] >> (8 * b)) & 0xffu);
      h *= 0x100000001b3ull;
    }
  return h;
}

static const char KL_MAGIC[8] = {'M', 'I', 'M', 'O', 'K', 'L', 'B', '1'};

/* The header on disk (MIMO_KL_HEADER_BYTES): magic, then u32 vocab, ctx, score_from, chunks, top, 0, then u64
 * n_tokens, tokens_hash, all little endian (the hosts mimo runs on are). */
mimo_status mimo_kl_write_header(FILE *f, const char *path, const mimo_kl_header *h) {
  const uint32_t w[6] = {h->vocab, h->ctx, h->score_from, h->chunks, h->top, 0};
  const uint64_t d[2] = {h->n_tokens, h->tokens_hash};
  if (fwrite(KL_MAGIC, 1, 8, f) != 8 || fwrite(w, 4, 6, f) != 6 || fwrite(d, 8, 2, f) != 2)
    return mimo_errf(MIMO_E_IO, "%s: cannot write", path);
  return MIMO_OK;
}

mimo_status mimo_kl_read_header(FILE *f, const char *path, const mimo_kl_header *want, uint32_t *top) {
  char magic[8];
  uint32_t w[6];
  uint64_t d[2];
  if (fread(magic, 1, 8, f) != 8 || memcmp(magic, KL_MAGIC, 8) != 0)
    return mimo_errf(MIMO_E_FORMAT, "%s: not a base-run file of mimo perplexity (no MIMOKLB1 header)", path);
  if (fread(w, 4, 6, f) != 6 || fread(d, 8, 2, f) != 2)
    return mimo_errf(MIMO_E_FORMAT, "%s: header cut short", path);
  if (w[4] > w[0] || w[5] != 0)
    return mimo_errf(MIMO_E_FORMAT, "%s: header has top %u of a %u-token vocabulary (reserved word %u)", path, w[4],
                     w[0], w[5]);
  *top = w[4];
  const struct {
    const char *name;
    uint64_t have, want;
  } fields[] = {{"vocab", w[0], want->vocab},         {"ctx", w[1], want->ctx},
                {"score_from", w[2], want->score_from}, {"chunks", w[3], want->chunks},
                {"token count", d[0], want->n_tokens}};
  for (size_t i = 0; i < sizeof fields / sizeof *fields; i++)
    if (fields[i].have != fields[i].want)
      return mimo_errf(MIMO_E_INVALID, "%s: the base run has %s %llu, this run %llu", path, fields[i].name,
                       (unsigned long long)fields[i].have, (unsigned long long)fields[i].want);
  if (d[1] != want->tokens_hash)
    return mimo_errf(MIMO_E_INVALID, "%s: the base run evaluated other tokens (same count, ids differ)", path);
  return MIMO_OK;
}
