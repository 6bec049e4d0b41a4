/* AWQ's calibration and scale search (quant/quantize.h has the method). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/cpu.h"
#include "core/log.h"
#include "core/num.h"
#include "engine/kv_cache.h"
#include "quant/int4.h"
#include "quant/quant_internal.h"

float *mimo_q_dense_f32(const mimo_linear *l) {
  float *w = malloc((size_t)l->out * l->in * sizeof *w);
  for (int r = 0; w && r < l->out; r++)
    cpu_linear_row(l, r, 0, l->in, w + (size_t)r * l->in);
  return w;
}

/* ---- calibration: the MoE input of every layer and the experts each token chose ---- */
typedef struct cal {
  int n, cap;
  float *x; /* [n][H] */
  int *ids; /* [n][K] */
} cal;
static struct {
  mimo_model *m;
  cal *c;
  void (*moe)(mimo_backend *, mimo_moe_args *);
  mimo_status st;
} cap;

static void cap_moe(mimo_backend *be, mimo_moe_args *a) {
  mimo_model *m = cap.m;
  const int H = a->hidden, K = a->top_k;
  int L = 0;
  while (L < m->cfg.num_hidden_layers && m->w.layers[L].experts != a->experts)
    L++;
  cal *c = L < m->cfg.num_hidden_layers ? &cap.c[L] : NULL;
  if (c && c->n + a->T > c->cap) {
    const int nc = (c->n + a->T) * 2;
    float *x = realloc(c->x, (size_t)nc * H * sizeof *x);
    if (x)
      c->x = x;
    int *ids = realloc(c->ids, (size_t)nc * K * sizeof *ids);
    if (ids)
      c->ids = ids;
    if (!x || !ids)
      cap.st = mimo_errf(MIMO_E_NOMEM, "calibration activations of layer %d", L);
    else
      c->cap = nc;
  }
  if (c && cap.st == MIMO_OK) {
    memcpy(c->x + (size_t)c->n * H, a->x, (size_t)a->T * H * sizeof(float));
    a->ids_out = c->ids + (size_t)c->n * K;
    c->n += a->T;
  }
  cap.moe(be, a);
  a->ids_out = NULL;
}

/* ---- the search ---- */
/* acc[c] += Σ over rows of |w[r][c]| / max |w| of (r, c's group) */
static void wbar_add(double *acc, const float *w, int rows, int in, int group) {
  for (int r = 0; r < rows; r++)
    for (int g = 0; g < in / group; g++) {
      const float *x = w + (size_t)r * in + (size_t)g * group;
      float mx = 0.f;
      for (int i = 0; i < group; i++)
        mx = fmaxf(mx, fabsf(x[i]));
      for (int i = 0; i < group; i++)
        acc[g * group + i] += fabsf(x[i]) / (mx + 1e-6f);
    }
}

static void scales_for(const double *xbar, const double *wbar, int n, double alpha, float *s) {
  double mx = 0, mn = INFINITY;
  for (int c = 0; c < n; c++) {
    double v = pow(xbar[c], alpha) / (pow(wbar[c], 1 - alpha) + 1e-4);
    v = v < 1e-4 ? 1e-4 : v;
    s[c] = (float)v;
    mx = fmax(mx, v);
    mn = fmin(mn, v);
  }
  const double k = sqrt(mx * mn);
  for (int c = 0; c < n; c++)
    s[c] = (float)(s[c] / k);
}

static float silu(float x) { return x / (1.f + expf(-x)); }

/* y[rows] = W[rows][in] · x[in], in float with 8 partial sums (vectorised; the search compares errors, and float
 * sums of a few thousand terms are far finer than the int4 steps it weighs). */
static void matvec(const float *W, int rows, int in, const float *x, float *y) {
  for (int r = 0; r < rows; r++) {
    const float *w = W + (size_t)r * in;
    float a[8] = {0};
    int c = 0;
    for (; c + 8 <= in; c += 8)
      for (int k = 0; k < 8; k++)
        a[k] += w[c + k] * x[c + k];
    float t = ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]));
    for (; c < in; c++)
      t += w[c] * x[c];
    y[r] = t;
  }
}

/* Y[j][r] = W[r] · X[j] for n vectors X [n][in]: each weight row is read once for all of them (an expert's
 * calibration tokens), not once per token, which at MiMo's sizes is the difference between reading a layer's
 * experts once per candidate and once per token. */
static void matmat(const float *W, int rows, int in, const float *X, int n, float *Y) {
  for (int r = 0; r < rows; r++)
    for (int j = 0; j < n; j++)
      matvec(W + (size_t)r * in, 1, in, X + (size_t)j * in, Y + (size_t)j * rows + r);
}

/* One layer's gate/up search: the block output per (token, slot), original and with the candidate scales. */
typedef struct gu_job {
  qctx *q;
  int L, H, I, K, n;
  const cal *c;
  const float *s;     /* candidate scales (NULL: none, the original weights unquantised) */
  float *y;           /* [n][K][H] */
  const int *order;   /* (t, k) pairs sorted by expert, with starts per expert */
  const int *start;
  mimo_status st;
} gu_job;

static void gu_expert(void *ctx, long e0, long e1) {
  gu_job *j = ctx;
  const int H = j->H, I = j->I;
  const mimo_linear *ex = j->q->m->w.layers[j->L].experts;
  for (long e = e0; e < e1; e++) {
    const int n = j->start[e + 1] - j->start[e];
    if (!n)
      continue;
    float *G = mimo_q_dense_f32(&ex[e * 3]), *U = mimo_q_dense_f32(&ex[e * 3 + 1]), *D = mimo_q_dense_f32(&ex[e * 3 + 2]);
    float *X = malloc((size_t)n * (2 * H + 2 * I) * sizeof *X), *g = X + (size_t)n * H, *u = g + (size_t)n * I,
          *y = u + (size_t)n * I;
    if (!G || !U || !D || !X) {
      j->st = MIMO_E_NOMEM;
    } else {
      if (j->s) {
        for (int r = 0; r < I; r++)
          for (int c = 0; c < H; c++) {
            G[(size_t)r * H + c] *= j->s[c];
            U[(size_t)r * H + c] *= j->s[c];
          }
        mimo_int4_fake_quantize(G, I, H, j->q->o->group, j->q->o->asym);
        mimo_int4_fake_quantize(U, I, H, j->q->o->group, j->q->o->asym);
      }
      for (int p = 0; p < n; p++) {
        const int t = j->order[j->start[e] + p] / j->K;
        for (int c = 0; c < H; c++)
          X[(size_t)p * H + c] = j->c->x[(size_t)t * H + c] / (j->s ? j->s[c] : 1.f);
      }
      matmat(G, I, H, X, n, g);
      matmat(U, I, H, X, n, u);
      for (size_t i = 0; i < (size_t)n * I; i++)
        g[i] = silu(g[i]) * u[i];
      matmat(D, H, I, g, n, y);
      for (int p = 0; p < n; p++)
        memcpy(j->y + (size_t)j->order[j->start[e] + p] * H, y + (size_t)p * H, (size_t)H * sizeof *y);
    }
    free(G), free(U), free(D), free(X);
  }
}

/* Σ over tokens of |Σ_k w_tk (y_a - y_b)|² */
static double block_err(const float *ya, const float *yb, const float *wt, int n, int K, int H) {
  double e = 0;
  for (int t = 0; t < n; t++)
    for (int c = 0; c < H; c++) {
      double d = 0;
      for (int k = 0; k < K; k++)
        d += (double)wt[t * K + k] * ((double)ya[((size_t)t * K + k) * H + c] - yb[((size_t)t * K + k) * H + c]);
      e += d * d;
    }
  return e;
}

/* The routing weights of the chosen experts (unbiased sigmoid scores, renormalised, scaled), as the model's MoE. */
static void route_weights(const mimo_model *m, const cal *c, const float *R, float *wt) {
  const mimo_config *cfg = &m->cfg;
  const int H = cfg->hidden_size, K = cfg->num_experts_per_tok;
  for (int t = 0; t < c->n; t++) {
    double sum = 0;
    for (int k = 0; k < K; k++) {
      const float *w = R + (size_t)c->ids[t * K + k] * H;
      double z = 0;
      for (int i = 0; i < H; i++)
        z += (double)w[i] * c->x[(size_t)t * H + i];
      wt[t * K + k] = (float)(1.0 / (1.0 + exp(-z)));
      sum += wt[t * K + k];
    }
    for (int k = 0; k < K; k++)
      wt[t * K + k] = (float)((cfg->norm_topk_prob ? wt[t * K + k] / (sum + 1e-20) : wt[t * K + k]) *
                              cfg->routed_scaling_factor);
  }
}

/* A down mapping's search for one expert (parallel over experts). */
typedef struct dn_job {
  qctx *q;
  int L, H, I, K;
  const cal *c;
  const int *order, *start;
  float *s_dn;       /* [E][I] out */
  double *alpha;     /* [E] out (-1: no tokens) */
  mimo_status st;
} dn_job;

static void dn_expert(void *ctx, long e0, long e1) {
  dn_job *j = ctx;
  const int H = j->H, I = j->I, grid = j->q->o->grid;
  const mimo_linear *ex = j->q->m->w.layers[j->L].experts;
  for (long e = e0; e < e1; e++) {
    float *s = j->s_dn + (size_t)e * I;
    for (int i = 0; i < I; i++)
      s[i] = 1.f;
    j->alpha[e] = -1;
    const int n = j->start[e + 1] - j->start[e];
    if (!n)
      continue;
    float *G = mimo_q_dense_f32(&ex[e * 3]), *U = mimo_q_dense_f32(&ex[e * 3 + 1]), *D = mimo_q_dense_f32(&ex[e * 3 + 2]);
    float *h = malloc((size_t)n * I * sizeof *h), *u = malloc((size_t)n * I * sizeof *u), *Dq = malloc((size_t)H * I * 4);
    float *cand = malloc((size_t)I * sizeof *cand), *hs = malloc((size_t)n * I * sizeof *hs), *X = malloc((size_t)n * H * 4);
    float *y0 = malloc((size_t)n * H * sizeof *y0), *y1 = malloc((size_t)n * H * sizeof *y1); /* y0: D·h per token */
    double *xbar = calloc((size_t)I, sizeof *xbar), *wbar = calloc((size_t)I, sizeof *wbar);
    if (!G || !U || !D || !h || !u || !Dq || !cand || !hs || !X || !y0 || !y1 || !xbar || !wbar) {
      j->st = MIMO_E_NOMEM;
    } else {
      for (int p = 0; p < n; p++)
        memcpy(X + (size_t)p * H, j->c->x + (size_t)(j->order[j->start[e] + p] / j->K) * H, (size_t)H * sizeof *X);
      matmat(G, I, H, X, n, h);
      matmat(U, I, H, X, n, u);
      for (int p = 0; p < n; p++)
        for (int i = 0; i < I; i++) {
          float *hp = h + (size_t)p * I;
          hp[i] = silu(hp[i]) * u[(size_t)p * I + i];
          xbar[i] += fabs(hp[i]) / n;
        }
      matmat(D, H, I, h, n, y0);
      wbar_add(wbar, D, H, I, j->q->o->group);
      for (int i = 0; i < I; i++)
        wbar[i] /= H;
      double best = INFINITY;
      for (int a = -1; a < grid; a++) { /* -1: no scales (round to nearest), then AWQ's ratios */
        if (a < 0)
          for (int i = 0; i < I; i++)
            cand[i] = 1.f;
        else
          scales_for(xbar, wbar, I, (double)a / grid, cand);
        for (int r = 0; r < H; r++)
          for (int i = 0; i < I; i++)
            Dq[(size_t)r * I + i] = D[(size_t)r * I + i] * cand[i];
        mimo_int4_fake_quantize(Dq, H, I, j->q->o->group, j->q->o->asym);
        for (int p = 0; p < n; p++)
          for (int i = 0; i < I; i++)
            hs[(size_t)p * I + i] = h[(size_t)p * I + i] / cand[i];
        matmat(Dq, H, I, hs, n, y1);
        double err = 0;
        for (size_t i = 0; i < (size_t)n * H; i++)
          err += ((double)y0[i] - y1[i]) * ((double)y0[i] - y1[i]);
        if (err < best) {
          best = err;
          memcpy(s, cand, (size_t)I * sizeof *s);
          j->alpha[e] = a < 0 ? -2 : (double)a / grid;
        }
      }
    }
    free(G), free(U), free(D), free(h), free(u), free(Dq), free(cand), free(hs), free(X), free(y0), free(y1), free(xbar);
    free(wbar);
  }
}

static mimo_status layer_search(qctx *q, int L, const cal *c) {
  mimo_model *m = q->m;
  const mimo_config *cfg = &m->cfg;
  const int H = cfg->hidden_size, I = cfg->moe_intermediate_size, E = cfg->n_routed_experts,
            K = cfg->num_experts_per_tok, n = c->n, grid = q->o->grid;
  qlayer *ql = &q->L[L];
  ql->tokens = n;
  ql->s_gu = malloc((size_t)H * sizeof(float));
  ql->s_dn = malloc((size_t)E * I * sizeof(float));
  int *start = calloc((size_t)E + 1, sizeof *start), *order = malloc((size_t)n * K * sizeof *order);
  float *y0 = malloc((size_t)n * K * H * sizeof *y0), *y1 = malloc((size_t)n * K * H * sizeof *y1),
        *wt = malloc((size_t)n * K * sizeof *wt), *cand = malloc((size_t)H * sizeof *cand);
  double *xbar = calloc((size_t)H, sizeof *xbar), *wbar = calloc((size_t)H, sizeof *wbar),
         *alpha = malloc((size_t)E * sizeof *alpha);
  mimo_status st = MIMO_OK;
  if (!ql->s_gu || !ql->s_dn || !start || !order || !y0 || !y1 || !wt || !cand || !xbar || !wbar || !alpha) {
    st = mimo_errf(MIMO_E_NOMEM, "AWQ search of layer %d", L);
    goto out;
  }
  /* (token, slot) pairs by expert */
  for (int i = 0; i < n * K; i++)
    start[c->ids[i] + 1]++;
  for (int e = 0; e < E; e++)
    start[e + 1] += start[e];
  {
    int *fill = malloc((size_t)E * sizeof *fill);
    if (!fill) {
      st = mimo_errf(MIMO_E_NOMEM, "AWQ search of layer %d", L);
      goto out;
    }
    memcpy(fill, start, (size_t)E * sizeof *fill);
    for (int i = 0; i < n * K; i++)
      order[fill[c->ids[i]]++] = i;
    free(fill);
  }
  /* x̄ over the tokens; w̄ over the router's and every expert's gate and up rows */
  for (int t = 0; t < n; t++)
    for (int i = 0; i < H; i++)
      xbar[i] += fabs(c->x[(size_t)t * H + i]) / n;
  long rows = 0;
  {
    float *R = mimo_q_dense_f32(&m->w.layers[L].router);
    if (!R) {
      st = mimo_errf(MIMO_E_NOMEM, "AWQ search of layer %d", L);
      goto out;
    }
    route_weights(m, c, R, wt);
    wbar_add(wbar, R, E, H, q->o->group);
    free(R);
    rows += E;
    for (int e = 0; e < E * 3 && st == MIMO_OK; e++) {
      if (e % 3 == 2)
        continue;
      float *W = mimo_q_dense_f32(&m->w.layers[L].experts[e]);
      if (!W)
        st = mimo_errf(MIMO_E_NOMEM, "AWQ search of layer %d", L);
      else
        wbar_add(wbar, W, I, H, q->o->group);
      free(W);
      rows += I;
    }
    if (st != MIMO_OK)
      goto out;
    for (int i = 0; i < H; i++)
      wbar[i] /= (double)rows;
  }
  gu_job j = {q, L, H, I, K, n, c, NULL, y0, order, start, MIMO_OK};
  mimo_parallel_for(q->pool, E, 1, gu_expert, &j); /* the original block output */
  /* round to nearest (no scales) for the report */
  float *ones = cand;
  for (int i = 0; i < H; i++)
    ones[i] = 1.f;
  j.s = ones;
  j.y = y1;
  mimo_parallel_for(q->pool, E, 1, gu_expert, &j);
  const double rtn_err = block_err(y0, y1, wt, n, K, H);
  double best = rtn_err; /* no scales unless a ratio beats round to nearest */
  for (int i = 0; i < H; i++)
    ql->s_gu[i] = 1.f;
  ql->alpha_gu = -1;
  for (int a = 0; a < grid && j.st == MIMO_OK; a++) {
    scales_for(xbar, wbar, H, (double)a / grid, cand);
    j.s = cand;
    mimo_parallel_for(q->pool, E, 1, gu_expert, &j);
    const double err = block_err(y0, y1, wt, n, K, H);
    if (err < best) {
      best = err;
      memcpy(ql->s_gu, cand, (size_t)H * sizeof *cand);
      ql->alpha_gu = (double)a / grid;
    }
  }
  if (j.st != MIMO_OK) {
    st = mimo_errf(MIMO_E_NOMEM, "AWQ search of layer %d", L);
    goto out;
  }
  ql->gain_gu = rtn_err > 0 ? best / rtn_err : 1.0;
  dn_job d = {q, L, H, I, K, c, order, start, ql->s_dn, alpha, MIMO_OK};
  mimo_parallel_for(q->pool, E, 1, dn_expert, &d);
  if (d.st != MIMO_OK) {
    st = mimo_errf(MIMO_E_NOMEM, "AWQ search of layer %d", L);
    goto out;
  }
  int na = 0, nr = 0;
  ql->alpha_dn_mean = 0;
  for (int e = 0; e < E; e++)
    if (alpha[e] >= 0) {
      ql->alpha_dn_mean += alpha[e];
      na++;
    } else {
      nr += alpha[e] == -2;
    }
  ql->alpha_dn_mean = na ? ql->alpha_dn_mean / na : -1;
  char gu[32];
  snprintf(gu, sizeof gu, ql->alpha_gu < 0 ? "none" : "alpha %.2f", ql->alpha_gu);
  mimo_info("quantize: layer %d AWQ on %d tokens: gate/up %s (block output error %.3g of round to nearest's); down: "
            "mean alpha %.2f over %d experts, %d better without scales, %d without tokens",
            L, n, gu, ql->gain_gu, ql->alpha_dn_mean, na, nr, E - na - nr);
out:
  free(start), free(order), free(y0), free(y1), free(wt), free(cand), free(xbar), free(wbar), free(alpha);
  return st;
}

mimo_status mimo_awq_scales(qctx *q) {
  mimo_model *m = q->m;
  const mimo_config *cfg = &m->cfg;
  const int NL = cfg->num_hidden_layers, ctx = q->o->calib_ctx;
  cal *c = calloc((size_t)NL, sizeof *c);
  if (!c)
    return mimo_errf(MIMO_E_NOMEM, "calibration");
  cap.m = m;
  cap.c = c;
  cap.st = MIMO_OK;
  cap.moe = m->be->moe;
  m->be->moe = cap_moe;
  mimo_status st = MIMO_OK;
  float *logits = malloc((size_t)ctx * cfg->vocab_size * sizeof *logits);
  if (!logits)
    st = mimo_errf(MIMO_E_NOMEM, "calibration logits");
  for (int i = 0; st == MIMO_OK && i < q->o->n_calib; i += ctx) { /* each sequence from an empty cache */
    mimo_kv_seq *seq = NULL;
    st = mimo_kv_seq_init(&seq, cfg);
    int k = q->o->n_calib - i < ctx ? q->o->n_calib - i : ctx;
    mimo_batch b = {.n_seqs = 1, .seqs = &seq, .n_tokens = &k, .tokens = q->o->calib + i, .all_logits = 0};
    if (st == MIMO_OK)
      st = mimo_model_forward(m, &b, logits);
    if (st == MIMO_OK)
      st = cap.st;
    mimo_kv_seq_free(seq);
  }
  m->be->moe = cap.moe;
  free(logits);
  for (int L = 0; L < NL && st == MIMO_OK; L++)
    if (q->L[L].quant)
      st = layer_search(q, L, &c[L]);
  for (int L = 0; L < NL; L++) {
    free(c[L].x);
    free(c[L].ids);
  }
  free(c);
  return st;
}
