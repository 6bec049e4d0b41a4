/* Routed-expert MoE (spec §2.6): fp32 router, sigmoid scores, correction bias
 * used only to choose experts, top-k renormalised and scaled; then each expert's
 * SwiGLU over the tokens routed to it, summed with the routing weights.
 * Expert parallel: only this rank's experts run; the rest come in the all-reduce. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/cpu.h"

/* Picks the k largest of c[0..n) (ties: lower index first). */
static void top_k(const float *c, int n, int k, int *idx) {
  for (int i = 0; i < k; i++)
    idx[i] = -1;
  for (int e = 0; e < n; e++) {
    int pos = k;
    while (pos > 0 && (idx[pos - 1] < 0 || c[e] > c[idx[pos - 1]]))
      pos--;
    if (pos >= k)
      continue;
    memmove(idx + pos + 1, idx + pos, (size_t)(k - pos - 1) * sizeof *idx);
    idx[pos] = e;
  }
}

void cpu_moe(mimo_backend *be, mimo_moe_args *a) {
  int T = a->T, E = a->n_experts, K = a->top_k, H = a->hidden, I = a->inter;
  float *logits = malloc((size_t)T * E * sizeof *logits);
  float *choice = malloc((size_t)E * sizeof *choice);
  int *sel = malloc((size_t)T * K * sizeof *sel);
  float *wsel = malloc((size_t)T * K * sizeof *wsel);
  int *count = calloc((size_t)E, sizeof *count);
  MIMO_ASSERT(logits && choice && sel && wsel && count);
  cpu_linear(be, logits, a->x, T, a->router);
  for (int t = 0; t < T; t++) {
    float *s = logits + (size_t)t * E;
    for (int e = 0; e < E; e++) {
      s[e] = 1.0f / (1.0f + expf(-s[e]));
      choice[e] = s[e] + (a->bias && a->bias->n ? mimo_vec_get(a->bias, e) : 0.0f);
    }
    int *idx = sel + (size_t)t * K;
    top_k(choice, E, K, idx);
    float sum = 0;
    for (int k = 0; k < K; k++)
      sum += s[idx[k]];
    for (int k = 0; k < K; k++) {
      float w = s[idx[k]];
      if (a->norm_topk)
        w /= sum + 1e-20f;
      wsel[(size_t)t * K + k] = w * a->scaling;
      count[idx[k]]++;
    }
    if (a->ids_out)
      memcpy(a->ids_out + (size_t)t * K, idx, (size_t)K * sizeof *idx);
    if (a->margin_out) {
      float kth = INFINITY, best_out = -INFINITY;
      for (int k = 0; k < K; k++)
        kth = fminf(kth, choice[idx[k]]);
      for (int e = 0; e < E; e++) {
        bool in = false;
        for (int k = 0; k < K; k++)
          in |= idx[k] == e;
        if (!in)
          best_out = fmaxf(best_out, choice[e]);
      }
      a->margin_out[t] = fminf(a->margin_out[t], kth - best_out); /* +inf when every expert is chosen */
    }
  }
  int maxn = 0;
  for (int e = 0; e < E; e++)
    maxn = count[e] > maxn ? count[e] : maxn;
  float *xg = malloc((size_t)maxn * H * sizeof *xg), *g = malloc((size_t)maxn * I * sizeof *g),
        *u = malloc((size_t)maxn * I * sizeof *u), *d = malloc((size_t)maxn * H * sizeof *d);
  int *tok = malloc((size_t)(maxn ? maxn : 1) * sizeof *tok);
  float *tw = malloc((size_t)(maxn ? maxn : 1) * sizeof *tw);
  MIMO_ASSERT(xg && g && u && d && tok && tw);
  memset(a->out, 0, (size_t)T * H * sizeof(float));
  const int e0 = a->n_local ? a->expert0 : 0, e1 = a->n_local ? a->expert0 + a->n_local : E;
  for (int e = e0; e < e1; e++) {
    if (!count[e])
      continue;
    int n = 0;
    for (int t = 0; t < T; t++)
      for (int k = 0; k < K; k++)
        if (sel[(size_t)t * K + k] == e) {
          tok[n] = t;
          tw[n] = wsel[(size_t)t * K + k];
          memcpy(xg + (size_t)n * H, a->x + (size_t)t * H, (size_t)H * sizeof(float));
          n++;
        }
    const mimo_linear *ex = a->experts + (size_t)(e - e0) * 3;
    cpu_linear(be, g, xg, n, &ex[0]);
    cpu_linear(be, u, xg, n, &ex[1]);
    be->swiglu(be, g, g, u, (long)n * I);
    cpu_linear(be, d, g, n, &ex[2]);
    for (int i = 0; i < n; i++) {
      float *o = a->out + (size_t)tok[i] * H;
      const float *di = d + (size_t)i * H;
      for (int c = 0; c < H; c++)
        o[c] += tw[i] * di[c];
    }
  }
  free(xg);
  free(g);
  free(u);
  free(d);
  free(tok);
  free(tw);
  free(logits);
  free(choice);
  free(sel);
  free(wsel);
  free(count);
}
