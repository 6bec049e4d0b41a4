#include "engine/sampler.h"

#include <float.h>
#include <limits.h>
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
  int *pen;       /* the job's (id, count) pairs [2 * vocab] */
  int *pen_ahead; /* a speculative step's rows' pairs (mimo_sampler_jobs_ahead), grown as needed */
  int *bias_ids, *ban; /* copies of p's logit_bias and min_tokens ids */
  float *bias_vals;
  long n_out;     /* tokens accepted (min_tokens) */
  size_t cap_pen_ahead;
  mimo_sample_ws *ws;
};

/* Draw order (sampler.h step 9): ids fall into 2^shift-wide buckets, so finding the crossing in id order
 * costs one pass over the kept candidates and a sort of one bucket. */
#define DRAW_BUCKETS 1024

struct mimo_sample_ws {
  int vocab, shift;
  cand *c;        /* [vocab] */
  float *raw;     /* [vocab] copy for raw logprobs, allocated on first use */
  cand *bucket;   /* [1 << shift] the crossing bucket's candidates */
  cand *tmp;      /* [vocab] top-p's crossing bin, allocated on first use */
  double mass[DRAW_BUCKETS];
};

mimo_status mimo_sample_ws_init(mimo_sample_ws **out, int vocab) {
  *out = NULL;
  mimo_sample_ws *w = calloc(1, sizeof *w);
  if (!w)
    return mimo_errf(MIMO_E_NOMEM, "sampler scratch");
  w->vocab = vocab;
  while (((vocab - 1) >> w->shift) >= DRAW_BUCKETS)
    w->shift++;
  w->c = malloc((size_t)vocab * sizeof *w->c);
  w->bucket = malloc(((size_t)1 << w->shift) * sizeof *w->bucket);
  if (!w->c || !w->bucket) {
    mimo_sample_ws_free(w);
    return mimo_errf(MIMO_E_NOMEM, "sampler scratch for %d tokens", vocab);
  }
  *out = w;
  return MIMO_OK;
}

void mimo_sample_ws_free(mimo_sample_ws *w) {
  if (!w)
    return;
  free(w->c);
  free(w->raw);
  free(w->bucket);
  free(w->tmp);
  free(w);
}

void mimo_sampling_defaults(mimo_sampling_params *p) {
  memset(p, 0, sizeof *p);
  p->temperature = 1.0f;
  p->top_p = 1.0f;
  p->min_p = 0.0f;
  p->repetition_penalty = 1.0f;
  p->top_k = -1;
}

static bool penalties_on(const mimo_sampling_params *p) {
  return p->repetition_penalty != 1 || p->presence_penalty != 0 || p->frequency_penalty != 0;
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
  if (p->n_bias < 0 || p->n_bias > vocab_size || (p->n_bias && (!p->bias_ids || !p->bias_vals)))
    return mimo_errf(MIMO_E_INVALID, "sampler: %d logit_bias entries", p->n_bias);
  for (int i = 0; i < p->n_bias; i++) {
    if (p->bias_ids[i] < 0 || p->bias_ids[i] >= vocab_size)
      return mimo_errf(MIMO_E_INVALID, "logit_bias: token id %d is outside the vocabulary [0, %d)", p->bias_ids[i],
                       vocab_size);
    if (!(p->bias_vals[i] >= -100 && p->bias_vals[i] <= 100))
      return mimo_errf(MIMO_E_INVALID, "logit_bias: the bias of token %d, %g, must be in [-100, 100]", p->bias_ids[i],
                       p->bias_vals[i]);
  }
  if (p->min_tokens < 0 || p->n_min_tokens_ids < 0 || (p->n_min_tokens_ids && !p->min_tokens_ids))
    return mimo_errf(MIMO_E_INVALID, "sampler: min_tokens %d with %d ids", p->min_tokens, p->n_min_tokens_ids);
  mimo_sampler *s = calloc(1, sizeof *s);
  if (!s)
    return mimo_errf(MIMO_E_NOMEM, "sampler");
  s->p = *p;
  /* own copies of the id lists (the caller's may go) */
  s->bias_ids = malloc(((size_t)p->n_bias + 1) * sizeof *s->bias_ids);
  s->bias_vals = malloc(((size_t)p->n_bias + 1) * sizeof *s->bias_vals);
  s->ban = malloc(((size_t)p->n_min_tokens_ids + 1) * sizeof *s->ban);
  if (!s->bias_ids || !s->bias_vals || !s->ban) {
    mimo_sampler_free(s);
    return mimo_errf(MIMO_E_NOMEM, "sampler");
  }
  if (p->n_bias) {
    memcpy(s->bias_ids, p->bias_ids, (size_t)p->n_bias * sizeof *s->bias_ids);
    memcpy(s->bias_vals, p->bias_vals, (size_t)p->n_bias * sizeof *s->bias_vals);
  }
  if (p->n_min_tokens_ids)
    memcpy(s->ban, p->min_tokens_ids, (size_t)p->n_min_tokens_ids * sizeof *s->ban);
  s->p.bias_ids = s->bias_ids;
  s->p.bias_vals = s->bias_vals;
  s->p.min_tokens_ids = s->ban;
  s->vocab = vocab_size;
  s->limit = p->vocab_limit > 0 && p->vocab_limit < vocab_size ? p->vocab_limit : vocab_size;
  mimo_rng_seed(&s->rng, p->seed);
  s->count = calloc((size_t)vocab_size, sizeof *s->count);
  s->seen = calloc((size_t)vocab_size, 1);
  s->seen_list = malloc((size_t)vocab_size * sizeof *s->seen_list);
  if (penalties_on(p))
    s->pen = malloc((size_t)2 * vocab_size * sizeof *s->pen);
  if (!s->count || !s->seen || !s->seen_list || (penalties_on(p) && !s->pen)) {
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
  free(s->pen);
  free(s->pen_ahead);
  free(s->bias_ids);
  free(s->bias_vals);
  free(s->ban);
  mimo_sample_ws_free(s->ws);
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
  s->n_out++;
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

/* Top-p over many candidates, c left as it is: the last one kept in the order value desc, id asc (every
 * candidate up to it is kept). A histogram of v (bins monotone in v) finds the bin where the mass crosses the
 * target; only that bin's candidates (gathered into tmp) are ordered. */
#define NBINS 2048
static inline int bin_of(float v, float lo, float scale) {
  if (v <= lo)
    return 0;
  int b = (int)((v - lo) * scale);
  return b < NBINS ? b : NBINS - 1;
}

static cand top_p_last(const cand *c, int n, double target, cand *tmp) {
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
  int m = 0;
  for (int i = 0; i < n; i++)
    if (bin_of(c[i].v, lo, scale) == bb)
      tmp[m++] = c[i];
  if (m == 0) /* the target is never reached (rounding) and bin 0 is empty: keep everything */
    return (cand){-INFINITY, 0, INT_MAX};
  return tmp[prefix_reaching(tmp, m, cum, target) - 1];
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

static void apply_penalties(const mimo_sample_job *j, float *logits) {
  for (int e = 0; e < j->n_pen; e++) {
    int t = j->pen[2 * e], count = j->pen[2 * e + 1];
    float x = logits[t];
    if (j->repetition_penalty != 1)
      x = x > 0 ? x / j->repetition_penalty : x * j->repetition_penalty;
    if (count > 0)
      x -= j->frequency_penalty * (float)count + j->presence_penalty;
    logits[t] = sanitize(x);
  }
}

/* Walks c[0..n) (in id order) on from mass cum until the running mass exceeds uz: the id there; at the end
 * (rounding), the last one with weight, or tok when none has. */
static int walk(const cand *c, int n, double cum, double uz, int tok) {
  for (int i = 0; i < n; i++) {
    cum += c[i].w;
    if (c[i].w > 0)
      tok = c[i].id;
    if (uz < cum)
      break;
  }
  return tok;
}

static double mass_sum(const cand *c, int n) {
  double z = 0;
  for (int i = 0; i < n; i++)
    z += c[i].w;
  return z;
}

/* Step 9: the first of c[0..n) in id order whose running mass exceeds uz; rounding past the end falls back to
 * the highest id with weight. */
static int draw_by_id(const cand *c, int n, bool in_id_order, double uz, mimo_sample_ws *ws) {
  if (in_id_order)
    return walk(c, n, 0, uz, -1);
  const int sh = ws->shift;
  memset(ws->mass, 0, sizeof ws->mass);
  int last = -1;
  for (int i = 0; i < n; i++) {
    ws->mass[c[i].id >> sh] += c[i].w;
    if (c[i].w > 0 && c[i].id > last)
      last = c[i].id;
  }
  double cum = 0;
  int b = 0;
  for (; b < DRAW_BUCKETS && !(uz < cum + ws->mass[b]); b++)
    cum += ws->mass[b];
  if (b == DRAW_BUCKETS)
    return last;
  int m = 0;
  for (int i = 0; i < n; i++)
    if (c[i].id >> sh == b)
      ws->bucket[m++] = c[i];
  /* ids are unique: order by id alone */
  for (int i = 1; i < m; i++) {
    cand x = ws->bucket[i];
    int k = i;
    for (; k > 0 && ws->bucket[k - 1].id > x.id; k--)
      ws->bucket[k] = ws->bucket[k - 1];
    ws->bucket[k] = x;
  }
  return walk(ws->bucket, m, cum, uz, last);
}

void mimo_sampler_job(mimo_sampler *s, mimo_sample_job *j) {
  const mimo_sampling_params *p = &s->p;
  memset(j, 0, sizeof *j);
  j->temperature = p->temperature;
  j->top_p = p->top_p;
  j->min_p = p->min_p;
  j->repetition_penalty = p->repetition_penalty;
  j->presence_penalty = p->presence_penalty;
  j->frequency_penalty = p->frequency_penalty;
  j->top_k = p->top_k;
  j->limit = s->limit;
  j->logprobs = p->logprobs;
  j->processed_logprobs = p->processed_logprobs;
  if (p->temperature >= GREEDY_EPS)
    j->u = mimo_rng_uniform(&s->rng);
  j->n_bias = p->n_bias;
  j->bias_ids = p->bias_ids;
  j->bias_vals = p->bias_vals;
  j->n_ban = s->n_out < p->min_tokens ? p->n_min_tokens_ids : 0;
  j->ban = p->min_tokens_ids;
  if (!penalties_on(p))
    return;
  for (int e = 0; e < s->n_seen; e++) {
    int t = s->seen_list[e];
    if (t >= s->limit)
      continue;
    s->pen[2 * j->n_pen] = t;
    s->pen[2 * j->n_pen + 1] = s->count[t];
    j->n_pen++;
  }
  j->pen = s->pen;
}

void mimo_sampler_job_peek(mimo_sampler *s, mimo_sample_job *j) {
  const mimo_rng keep = s->rng;
  mimo_sampler_job(s, j);
  s->rng = keep;
}

mimo_status mimo_sampler_ahead_room(mimo_sampler *s, int n) {
  /* every row's pairs: the ids seen so far and the distinct ids ahead of it */
  const size_t need = 2 * ((size_t)s->n_seen + (size_t)n) * (size_t)(n + 1);
  if (!penalties_on(&s->p) || need <= s->cap_pen_ahead)
    return MIMO_OK;
  int *p = realloc(s->pen_ahead, need * sizeof *p);
  if (!p)
    return mimo_errf(MIMO_E_NOMEM, "sampler: penalties of %d speculative rows", n + 1);
  s->pen_ahead = p;
  s->cap_pen_ahead = need;
  return MIMO_OK;
}

mimo_status mimo_sampler_jobs_ahead(mimo_sampler *s, const int *ahead, int n, mimo_sample_job *jobs) {
  const bool pen = penalties_on(&s->p);
  const size_t per_row = 2 * ((size_t)s->n_seen + (size_t)n);
  MIMO_TRY(mimo_sampler_ahead_room(s, n));
  mimo_rng rng = s->rng; /* the draws the rows would take; mimo_sampler_advance takes them for real */
  for (int i = 0; i <= n; i++) {
    mimo_sample_job *j = &jobs[i];
    const mimo_rng keep = s->rng;
    s->rng = rng;
    mimo_sampler_job(s, j); /* the parameters, the uniform and the pairs as of now */
    rng = s->rng;
    s->rng = keep;
    j->n_ban = s->n_out + i < s->p.min_tokens ? s->p.n_min_tokens_ids : 0; /* (the drafts before it count) */
    if (!pen)
      continue;
    int *pairs = s->pen_ahead + per_row * (size_t)i;
    memcpy(pairs, j->pen, (size_t)j->n_pen * 2 * sizeof *pairs);
    for (int a = 0; a < i; a++) { /* ahead[a] counts as an output token for row i */
      const int t = ahead[a];
      if (t < 0 || t >= s->limit)
        continue;
      int e = 0;
      while (e < j->n_pen && pairs[2 * e] != t)
        e++;
      if (e == j->n_pen) {
        pairs[2 * e] = t;
        pairs[2 * e + 1] = 0;
        j->n_pen++;
      }
      if (pairs[2 * e + 1] < INT32_MAX)
        pairs[2 * e + 1]++;
    }
    j->pen = pairs;
  }
  return MIMO_OK;
}

void mimo_sampler_advance(mimo_sampler *s, int n) {
  for (int i = 0; i < n && s->p.temperature >= GREEDY_EPS; i++)
    (void)mimo_rng_uniform(&s->rng);
}

void mimo_logprobs_of(float *logits, int vocab, int token, int n_top, mimo_sample_info *info) {
  for (int i = 0; i < vocab; i++)
    logits[i] = sanitize(logits[i]);
  fill_info(logits, vocab, token, n_top < MIMO_MAX_LOGPROBS ? n_top : MIMO_MAX_LOGPROBS, info);
}

int mimo_sampler_sample(mimo_sampler *s, float *logits, mimo_sample_info *info) {
  return mimo_sampler_sample_masked(s, logits, NULL, info);
}

int mimo_sampler_sample_masked(mimo_sampler *s, float *logits, const unsigned *allow, mimo_sample_info *info) {
  /* scratch on first use: a sequence whose rows are sampled elsewhere (mimo_sampler_job) never needs it */
  if (!s->ws && mimo_sample_ws_init(&s->ws, s->vocab) != MIMO_OK)
    return -1;
  mimo_sample_job j;
  mimo_sampler_job(s, &j);
  j.allow = allow;
  return mimo_sample_logits(&j, logits, s->vocab, info, s->ws);
}

int mimo_sample_logits(const mimo_sample_job *j, float *logits, int V, mimo_sample_info *info,
                       mimo_sample_ws *ws) {
  int L = j->limit > 0 && j->limit < V ? j->limit : V;
  for (int i = 0; i < L; i++) /* a loop of its own: it vectorises */
    logits[i] = sanitize(logits[i]);
  for (int i = L; i < V; i++)
    logits[i] = -INFINITY;
  if (info && !j->processed_logprobs) {
    if (!ws->raw && !(ws->raw = malloc((size_t)ws->vocab * sizeof *ws->raw))) {
      mimo_errf(MIMO_E_NOMEM, "sampler: logprob copy of %d tokens", ws->vocab);
      return -1;
    }
    memcpy(ws->raw, logits, (size_t)V * sizeof *logits);
  }
  for (int i = 0; i < j->n_bias; i++)
    if (j->bias_ids[i] >= 0 && j->bias_ids[i] < L)
      logits[j->bias_ids[i]] += j->bias_vals[i];
  for (int i = 0; i < j->n_ban; i++)
    if (j->ban[i] >= 0 && j->ban[i] < L)
      logits[j->ban[i]] = -INFINITY;
  if (j->allow)
    for (int i = 0; i < L; i++)
      if (!(j->allow[i / 32] >> (i % 32) & 1))
        logits[i] = -INFINITY;
  apply_penalties(j, logits);

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
  if (j->temperature >= GREEDY_EPS) {
    float inv_t = 1.0f / j->temperature;
    float min_log = j->min_p > 0 ? logf(j->min_p) : -INFINITY;
    cand *c = ws->c;
    bool in_id_order = true; /* c stays in id order until a selection rearranges it */
    int n = 0, k = j->top_k > 0 && j->top_k < L ? j->top_k : 0;
    double z = 0;
    /* Shift by the max before scaling so tiny temperatures cannot overflow; in
     * this space min-p is a plain threshold: prob/max_prob >= min_p <=> v >= log(min_p). */
    if (k > 0 && k <= HEAP_K) {
      in_id_order = false;
      /* small top-k: one pass keeping the k best in a heap, most ids rejected by one compare */
      for (int i = 0; i < L; i++) {
        float v = (logits[i] - m) * inv_t;
        if (!(v > -INFINITY && v >= min_log))
          continue;
        cand e = {v, 0, i};
        if (n < k) {
          c[n++] = e;
          if (n == k)
            for (int q = k / 2 - 1; q >= 0; q--)
              sift_down(c, k, q);
        } else if (before(e, c[0])) {
          c[0] = e;
          sift_down(c, k, 0);
        }
      }
      for (int i = 0; i < n; i++)
        c[i].w = expf(c[i].v);
      z = mass_sum(c, n);
    } else {
      /* weights and their sum in the same pass (the sum in id order, as the draw walks) */
      for (int i = 0; i < L; i++) {
        float v = (logits[i] - m) * inv_t;
        if (v > -INFINITY && v >= min_log) {
          const float w = expf(v);
          c[n].v = v, c[n].w = w, c[n].id = i, n++;
          z += w;
        }
      }
      if (k > 0 && k < n) {
        select_top(c, n, k);
        n = k;
        in_id_order = false;
        z = mass_sum(c, n);
      }
    }
    if (j->top_p < 1) {
      const double target = j->top_p * z * (1 - 1e-9); /* tolerance absorbs summation rounding only */
      if (in_id_order && n > 4 * NBINS) {
        /* many candidates in id order: find the last kept one, then filter in place (id order stays) */
        if (!ws->tmp && !(ws->tmp = malloc((size_t)ws->vocab * sizeof *ws->tmp))) {
          mimo_errf(MIMO_E_NOMEM, "sampler: top-p scratch of %d tokens", ws->vocab);
          return -1;
        }
        const cand last = top_p_last(c, n, target, ws->tmp);
        int kept = 0;
        for (int i = 0; i < n; i++)
          if (!before(last, c[i]))
            c[kept++] = c[i];
        n = kept;
      } else {
        n = prefix_reaching(c, n, 0, target);
        in_id_order = false;
      }
      z = mass_sum(c, n);
    }
    tok = draw_by_id(c, n, in_id_order, j->u * z, ws);
    if (tok < 0)
      tok = arg;
    if (info && j->processed_logprobs) {
      for (int i = 0; i < V; i++)
        logits[i] = -INFINITY;
      for (int i = 0; i < n; i++)
        logits[c[i].id] = c[i].v;
    }
  }
  if (info)
    fill_info(j->processed_logprobs ? logits : ws->raw, V, tok, j->logprobs, info);
  return tok;
}
