#include "engine/sampler.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/num.h"

/* vLLM treats temperatures below this as greedy; dividing by them would overflow. */
#define GREEDY_EPS 1e-5f

typedef struct {
  float v; /* processed logit, max 0 */
  float w; /* exp(v) */
  int id;
} cand;

struct mimo_sampler {
  mimo_sampling_params p;
  int vocab, limit;
  mimo_rng rng;
  int *count;     /* output occurrences per id */
  uint8_t *seen;  /* bit 0: in prompt, bit 1: in output */
  int *seen_list; /* ids with seen != 0, so penalties cost O(distinct tokens) */
  int n_seen;
  cand *c;        /* scratch [vocab] */
  float *raw;     /* [vocab] copy for raw logprobs; NULL unless asked for */
};

void mimo_sampling_defaults(mimo_sampling_params *p) {
  memset(p, 0, sizeof *p);
  p->temperature = 1.0f;
  p->top_p = 1.0f;
  p->min_p = 0.0f;
  p->repetition_penalty = 1.0f;
  p->top_k = -1;
}

mimo_status mimo_sampler_init(mimo_sampler **out, const mimo_sampling_params *p, int vocab_size) {
  *out = NULL;
  if (vocab_size <= 0)
    return mimo_errf(MIMO_E_INVALID, "sampler: vocab_size %d", vocab_size);
  /* Written as negations so NaN fails every check. */
  if (!(p->temperature >= 0 && isfinite(p->temperature)))
    return mimo_errf(MIMO_E_INVALID, "sampler: temperature %g must be finite and >= 0", p->temperature);
  if (!(p->top_p > 0 && p->top_p <= 1))
    return mimo_errf(MIMO_E_INVALID, "sampler: top_p %g must be in (0, 1]", p->top_p);
  if (!(p->min_p >= 0 && p->min_p <= 1))
    return mimo_errf(MIMO_E_INVALID, "sampler: min_p %g must be in [0, 1]", p->min_p);
  if (!(p->repetition_penalty > 0 && isfinite(p->repetition_penalty)))
    return mimo_errf(MIMO_E_INVALID, "sampler: repetition_penalty %g must be finite and > 0",
                     p->repetition_penalty);
  if (!isfinite(p->presence_penalty) || !isfinite(p->frequency_penalty))
    return mimo_errf(MIMO_E_INVALID, "sampler: presence_penalty/frequency_penalty must be finite");
  if (p->logprobs < 0 || p->logprobs > MIMO_MAX_LOGPROBS)
    return mimo_errf(MIMO_E_INVALID, "sampler: logprobs %d must be in [0, %d]", p->logprobs, MIMO_MAX_LOGPROBS);
  mimo_sampler *s = calloc(1, sizeof *s);
  if (!s)
    return mimo_errf(MIMO_E_NOMEM, "sampler");
  s->p = *p;
  s->vocab = vocab_size;
  s->limit = p->vocab_limit > 0 && p->vocab_limit < vocab_size ? p->vocab_limit : vocab_size;
  mimo_rng_seed(&s->rng, p->seed);
  s->count = calloc((size_t)vocab_size, sizeof *s->count);
  s->seen = calloc((size_t)vocab_size, 1);
  s->seen_list = malloc((size_t)vocab_size * sizeof *s->seen_list);
  s->c = malloc((size_t)vocab_size * sizeof *s->c);
  if (!s->p.processed_logprobs)
    s->raw = malloc((size_t)vocab_size * sizeof *s->raw);
  if (!s->count || !s->seen || !s->seen_list || !s->c || (!s->p.processed_logprobs && !s->raw)) {
    mimo_sampler_free(s);
    return mimo_errf(MIMO_E_NOMEM, "sampler: state for %d tokens", vocab_size);
  }
  *out = s;
  return MIMO_OK;
}

void mimo_sampler_free(mimo_sampler *s) {
  if (!s)
    return;
  free(s->count);
  free(s->seen);
  free(s->seen_list);
  free(s->c);
  free(s->raw);
  free(s);
}

static void mark(mimo_sampler *s, int t, uint8_t bit) {
  if (t < 0 || t >= s->vocab)
    return;
  if (!s->seen[t])
    s->seen_list[s->n_seen++] = t;
  s->seen[t] |= bit;
}

void mimo_sampler_add_prompt(mimo_sampler *s, const int *ids, int n) {
  for (int i = 0; i < n; i++)
    mark(s, ids[i], 1);
}

void mimo_sampler_accept(mimo_sampler *s, int token) {
  if (token < 0 || token >= s->vocab)
    return;
  mark(s, token, 2);
  if (s->count[token] < INT32_MAX)
    s->count[token]++;
}

/* ---- selection over candidates, total order: value desc, then id asc ---- */

static inline int before(cand a, cand b) { return a.v > b.v || (a.v == b.v && a.id < b.id); }

static int cmp_cand(const void *x, const void *y) {
  cand a = *(const cand *)x, b = *(const cand *)y;
  return before(a, b) ? -1 : before(b, a);
}

/* Rearranges a[0..n) so that a[0..k) are its k best (in no order). Quickselect;
 * falls back to a sort if partitioning degenerates. */
static void select_top(cand *a, int n, int k) {
  int lo = 0, hi = n - 1, budget = 64;
  while (lo < hi) {
    if (--budget == 0) {
      qsort(a + lo, (size_t)(hi - lo + 1), sizeof *a, cmp_cand);
      return;
    }
    int mid = lo + (hi - lo) / 2;
    cand t;
    if (before(a[mid], a[lo])) t = a[mid], a[mid] = a[lo], a[lo] = t;
    if (before(a[hi], a[lo])) t = a[hi], a[hi] = a[lo], a[lo] = t;
    if (before(a[hi], a[mid])) t = a[hi], a[hi] = a[mid], a[mid] = t;
    cand piv = a[mid];
    int i = lo, j = hi;
    while (i <= j) {
      while (before(a[i], piv))
        i++;
      while (before(piv, a[j]))
        j--;
      if (i <= j) {
        t = a[i], a[i] = a[j], a[j] = t;
        i++;
        j--;
      }
    }
    if (k - 1 <= j)
      hi = j;
    else if (k - 1 >= i)
      lo = i;
    else
      return;
  }
}

/* Heap with the worst candidate at the root. */
#define HEAP_K 1024
static void sift_down(cand *h, int n, int i) {
  for (;;) {
    int l = 2 * i + 1, r = l + 1, w = i;
    if (l < n && before(h[w], h[l]))
      w = l;
    if (r < n && before(h[w], h[r]))
      w = r;
    if (w == i)
      return;
    cand t = h[i];
    h[i] = h[w];
    h[w] = t;
    i = w;
  }
}

/* Sorts c[0..n) only as far as needed to find how many of its best reach mass
 * `target` (starting from `cum`): chunks of growing size are selected from the
 * rest, then sorted. */
static int prefix_reaching(cand *c, int n, double cum, double target) {
  int done = 0, chunk = 32; /* peaked distributions reach p within a few tokens */
  while (done < n) {
    int take = chunk < n - done ? chunk : n - done;
    if (take < n - done)
      select_top(c + done, n - done, take);
    qsort(c + done, (size_t)take, sizeof *c, cmp_cand);
    for (int i = done; i < done + take; i++) {
      cum += c[i].w;
      if (cum >= target)
        return i + 1;
    }
    done += take;
    chunk = chunk < (1 << 26) ? chunk * 4 : chunk;
  }
  return n;
}

/* Top-p: how many candidates to keep; rearranges c so they come first. A
 * histogram of v (bins monotone in v) finds the bin where the mass crosses p;
 * every higher bin is kept whole and only the crossing bin is ordered. */
#define NBINS 2048
static inline int bin_of(float v, float lo, float scale) {
  if (v <= lo)
    return 0;
  int b = (int)((v - lo) * scale);
  return b < NBINS ? b : NBINS - 1;
}

static int top_p_keep(cand *c, int n, double z, double p) {
  double target = p * z * (1 - 1e-9); /* tolerance absorbs summation rounding only */
  if (n <= 4 * NBINS)
    return prefix_reaching(c, n, 0, target);
  float lo = 0;
  for (int i = 0; i < n; i++)
    lo = c[i].v < lo ? c[i].v : lo;
  lo = lo < -90.0f ? -90.0f : lo; /* weights below e^-90 share bin 0 */
  lo = lo > -1e-3f ? -1e-3f : lo;
  float scale = (NBINS - 1) / -lo;
  double mass[NBINS] = {0};
  for (int i = 0; i < n; i++)
    mass[bin_of(c[i].v, lo, scale)] += c[i].w;
  double cum = 0;
  int bb = NBINS - 1;
  for (; bb > 0 && cum + mass[bb] < target; bb--)
    cum += mass[bb];
  int a = 0, e;
  for (int i = 0; i < n; i++)
    if (bin_of(c[i].v, lo, scale) > bb) {
      cand t = c[a];
      c[a++] = c[i];
      c[i] = t;
    }
  e = a;
  for (int i = a; i < n; i++)
    if (bin_of(c[i].v, lo, scale) == bb) {
      cand t = c[e];
      c[e++] = c[i];
      c[i] = t;
    }
  return a + prefix_reaching(c + a, e - a, cum, target);
}

/* log-softmax of x[0..n) at tok plus its n_top best entries. */
static void fill_info(const float *x, int n, int tok, int n_top, mimo_sample_info *info) {
  float m = -INFINITY;
  for (int i = 0; i < n; i++)
    if (x[i] > m)
      m = x[i];
  double z = 0;
  for (int i = 0; i < n; i++)
    if (x[i] > -INFINITY)
      z += exp((double)x[i] - m);
  double lse = m + log(z);
  info->logprob = (float)((double)x[tok] - lse);
  cand best[MIMO_MAX_LOGPROBS];
  int nb = 0;
  for (int i = 0; i < n && n_top > 0; i++) {
    cand e = {x[i], 0, i};
    if (!(x[i] > -INFINITY) || (nb == n_top && !before(e, best[nb - 1])))
      continue;
    int j = nb < n_top ? nb++ : nb - 1;
    while (j > 0 && before(e, best[j - 1])) {
      best[j] = best[j - 1];
      j--;
    }
    best[j] = e;
  }
  info->n_top = nb;
  for (int i = 0; i < nb; i++) {
    info->top[i].token = best[i].id;
    info->top[i].logprob = (float)((double)best[i].v - lse);
  }
}

static inline float sanitize(float x) {
  if (isnan(x))
    return -INFINITY;
  return x == INFINITY ? FLT_MAX : x;
}

static void apply_penalties(mimo_sampler *s, float *logits) {
  const mimo_sampling_params *p = &s->p;
  if (p->repetition_penalty == 1 && p->presence_penalty == 0 && p->frequency_penalty == 0)
    return;
  for (int j = 0; j < s->n_seen; j++) {
    int t = s->seen_list[j];
    if (t >= s->limit)
      continue;
    float x = logits[t];
    if (p->repetition_penalty != 1)
      x = x > 0 ? x / p->repetition_penalty : x * p->repetition_penalty;
    if (s->count[t] > 0)
      x -= p->frequency_penalty * (float)s->count[t] + p->presence_penalty;
    logits[t] = sanitize(x);
  }
}

int mimo_sampler_sample(mimo_sampler *s, float *logits, mimo_sample_info *info) {
  const mimo_sampling_params *p = &s->p;
  int L = s->limit, V = s->vocab;
  for (int i = 0; i < L; i++)
    logits[i] = sanitize(logits[i]);
  for (int i = L; i < V; i++)
    logits[i] = -INFINITY;
  if (info && !p->processed_logprobs)
    memcpy(s->raw, logits, (size_t)V * sizeof *logits);
  apply_penalties(s, logits);

  int arg = -1;
  float m = -INFINITY;
  for (int i = 0; i < L; i++)
    if (logits[i] > m) /* strict: ties keep the lowest id */
      m = logits[i], arg = i;
  if (arg < 0) {
    mimo_errf(MIMO_E_INVALID, "sampler: no token below %d has a usable logit (all NaN or -inf)", L);
    return -1;
  }

  int tok = arg;
  if (p->temperature >= GREEDY_EPS) {
    float inv_t = 1.0f / p->temperature;
    float min_log = p->min_p > 0 ? logf(p->min_p) : -INFINITY;
    cand *c = s->c;
    int n = 0, k = p->top_k > 0 && p->top_k < L ? p->top_k : 0;
    /* Shift by the max before scaling so tiny temperatures cannot overflow; in
     * this space min-p is a plain threshold: prob/max_prob >= min_p <=> v >= log(min_p). */
    if (k > 0 && k <= HEAP_K) {
      /* small top-k: one pass keeping the k best in a heap, most ids rejected by one compare */
      for (int i = 0; i < L; i++) {
        float v = (logits[i] - m) * inv_t;
        if (!(v > -INFINITY && v >= min_log))
          continue;
        cand e = {v, 0, i};
        if (n < k) {
          c[n++] = e;
          if (n == k)
            for (int j = k / 2 - 1; j >= 0; j--)
              sift_down(c, k, j);
        } else if (before(e, c[0])) {
          c[0] = e;
          sift_down(c, k, 0);
        }
      }
    } else {
      for (int i = 0; i < L; i++) {
        float v = (logits[i] - m) * inv_t;
        if (v > -INFINITY && v >= min_log)
          c[n].v = v, c[n].id = i, n++;
      }
      if (k > 0 && k < n) {
        select_top(c, n, k);
        n = k;
      }
    }
    double z = 0;
    for (int i = 0; i < n; i++) {
      c[i].w = expf(c[i].v);
      z += c[i].w;
    }
    if (p->top_p < 1) {
      n = top_p_keep(c, n, z, p->top_p);
      z = 0;
      for (int i = 0; i < n; i++)
        z += c[i].w;
    }
    double u = mimo_rng_uniform(&s->rng) * z, cum = 0;
    tok = -1;
    for (int i = 0; i < n; i++) {
      cum += c[i].w;
      if (c[i].w > 0)
        tok = c[i].id; /* rounding in the last sum falls back to the last real candidate */
      if (u < cum)
        break;
    }
    if (tok < 0)
      tok = arg;
    if (info && p->processed_logprobs) {
      for (int i = 0; i < V; i++)
        logits[i] = -INFINITY;
      for (int i = 0; i < n; i++)
        logits[c[i].id] = c[i].v;
    }
  }
  if (info)
    fill_info(p->processed_logprobs ? logits : s->raw, V, tok, p->logprobs, info);
  return tok;
}
