/* The serving engine against the plain forward pass: requests run together
 * under continuous batching (with prompts chunked to a small token budget), after
 * the engine's warm-up forward, must produce exactly the greedy tokens each
 * produces alone; plus cancellation, queue limits, the context limit, stop ids,
 * forced prefixes and the mock seam; and under a KV memory budget that cannot hold every
 * running request, the youngest is preempted and recomputed later, still producing exactly
 * its greedy tokens, while a request that cannot fit even alone fails by itself. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <math.h>
#include <string.h>
#include <unistd.h>

#include "engine/engine.h"
#include "engine/kv_cache.h"
#include "engine/sampler.h"
#include "model/mimo_v2.h"
#include "model/synth.h"

static char root[64], dir[256];
static mimo_backend *be;
static mimo_model *model;

/* Greedy continuation of one prompt with the forward pass alone; lp (optional): each chosen token's log-softmax. */
static void greedy_alone_lp(const int *prompt, int n, int steps, int *out, float *lp) {
  mimo_kv_seq *seq;
  assert_int_equal(mimo_kv_seq_init(&seq, &model->cfg), MIMO_OK);
  int V = model->cfg.vocab_size;
  float *logits = malloc((size_t)V * sizeof *logits);
  int cur = n;
  const int *toks = prompt;
  int t;
  for (int s = 0; s < steps; s++) {
    mimo_batch b = {.n_seqs = 1, .seqs = &seq, .n_tokens = &cur, .tokens = toks};
    assert_int_equal(mimo_model_forward(model, &b, logits), MIMO_OK);
    t = 0;
    for (int v = 1; v < V; v++)
      if (logits[v] > logits[t])
        t = v;
    out[s] = t;
    if (lp) {
      double z = 0;
      for (int v = 0; v < V; v++)
        z += exp((double)logits[v] - logits[t]);
      lp[s] = (float)-log(z);
    }
    toks = &out[s];
    cur = 1;
  }
  free(logits);
  mimo_kv_seq_free(seq);
}

static void greedy_alone(const int *prompt, int n, int steps, int *out) { greedy_alone_lp(prompt, n, steps, out, NULL); }

static int collect(mimo_request *r, int *out, int max, mimo_finish *fin) {
  int n = 0;
  mimo_token_event ev[8];
  for (;;) {
    int k = mimo_request_poll(r, ev, 8, 10000);
    assert_true(k > 0);
    for (int i = 0; i < k; i++) {
      if (ev[i].token >= 0 && n < max)
        out[n++] = ev[i].token;
      if (ev[i].finish) {
        *fin = ev[i].finish;
        return n;
      }
    }
  }
}

/* The request's tokens and their logprobs until it ends by length (exactly max of them); not released. */
static void collect_lp(mimo_request *r, int *out, float *lp, int max) {
  int n = 0;
  mimo_token_event ev[8];
  for (int done = 0; !done;) {
    const int k = mimo_request_poll(r, ev, 8, 10000);
    assert_true(k > 0);
    for (int i = 0; i < k; i++) {
      if (ev[i].token >= 0 && n < max) {
        lp[n] = ev[i].info.logprob;
        out[n++] = ev[i].token;
      }
      if (ev[i].finish)
        assert_int_equal(ev[i].finish, MIMO_FINISH_LENGTH);
      done |= ev[i].finish != MIMO_FINISH_NONE;
    }
  }
  assert_int_equal(n, max);
}

/* The request ends by length with exactly these tokens; released. */
static void expect_tokens(mimo_request *r, const int *want, int n) {
  int got[128];
  mimo_finish fin;
  assert_true(n <= 128);
  assert_int_equal(collect(r, got, n, &fin), n);
  assert_int_equal(fin, MIMO_FINISH_LENGTH);
  assert_memory_equal(got, want, (size_t)n * sizeof *got);
  mimo_request_release(r);
}

static mimo_request_params greedy_params(const int *prompt, int n, int max_tokens) {
  mimo_request_params p = {.prompt = prompt, .n_prompt = n, .max_tokens = max_tokens, .ignore_eos = true};
  mimo_sampling_defaults(&p.sampling);
  p.sampling.temperature = 0;
  return p;
}

static void test_batched_equals_alone(void **state) {
  (void)state;
  enum { R = 4, STEPS = 10 };
  int lens[R] = {3, 40, 1, 17}, prompts[R][40], want[R][STEPS];
  for (int r = 0; r < R; r++) {
    for (int i = 0; i < lens[r]; i++)
      prompts[r][i] = (r * 131 + i * 17 + 5) % 600;
    greedy_alone(prompts[r], lens[r], STEPS, want[r]);
  }
  /* a small token budget forces chunked prefill + queueing; the warm-up forward (forced on the CPU here) must
   * leave no trace in what the requests produce */
  mimo_engine_opts o = {.max_num_seqs = 3, .max_num_batched_tokens = 8, .warmup = 5};
  mimo_engine *e;
  assert_int_equal(mimo_engine_init(&e, model, &o), MIMO_OK);
  mimo_request *req[R];
  for (int r = 0; r < R; r++) {
    mimo_request_params p = greedy_params(prompts[r], lens[r], STEPS);
    assert_int_equal(mimo_engine_submit(e, &p, &req[r]), MIMO_OK);
  }
  for (int r = 0; r < R; r++)
    expect_tokens(req[r], want[r], STEPS);
  assert_false(mimo_engine_warming(e)); /* the requests ran, so the warm-up before them has ended */
  mimo_engine_stats st;
  mimo_engine_stats_get(e, &st);
  assert_int_equal(st.generation_tokens_total, R * STEPS);
  mimo_engine_free(e);
}

static void test_limits_and_cancel(void **state) {
  (void)state;
  mimo_engine_opts o = {.max_num_seqs = 1, .max_queue = 1, .max_model_len = 4096};
  mimo_engine *e;
  assert_int_equal(mimo_engine_init(&e, model, &o), MIMO_OK);
  assert_false(mimo_engine_warming(e)); /* CPU backend, warmup 0: no warm-up, ready at once */
  static int prompt[4096] = {1, 2, 3};
  mimo_request *r;
  mimo_request_params p = greedy_params(prompt, 4090, 10);
  assert_int_equal(mimo_engine_submit(e, &p, &r), MIMO_E_TOO_LONG);
  assert_non_null(strstr(mimo_errmsg(), "you requested 4100 tokens (4090 in the messages, 10 in the completion)"));
  /* a long request (thousands of steps: it cannot finish before the cancel below)
   * occupies the one slot; the next waits; the third is refused */
  mimo_request *a, *b, *c;
  p = greedy_params(prompt, 3, 4000);
  assert_int_equal(mimo_engine_submit(e, &p, &a), MIMO_OK);
  mimo_engine_stats es;
  for (int i = 0; i < 2000; i++) { /* wait until the engine has taken it off the queue */
    mimo_engine_stats_get(e, &es);
    if (es.requests_waiting == 0)
      break;
    usleep(1000);
  }
  assert_int_equal(es.requests_waiting, 0);
  assert_int_equal(mimo_engine_submit(e, &p, &b), MIMO_OK);
  mimo_status st = mimo_engine_submit(e, &p, &c);
  assert_int_equal(st, MIMO_E_BUSY);
  mimo_request_cancel(a);
  static int got[4096];
  mimo_finish fin;
  collect(a, got, 4096, &fin);
  assert_int_equal(fin, MIMO_FINISH_CANCELLED);
  mimo_request_release(a);
  mimo_request_cancel(b); /* b was admitted after a; cancelling ends it without running 4000 steps */
  collect(b, got, 4096, &fin);
  assert_int_equal(fin, MIMO_FINISH_CANCELLED);
  mimo_request_release(b);
  /* shutdown ends whatever is in flight */
  assert_int_equal(mimo_engine_submit(e, &p, &a), MIMO_OK);
  mimo_engine_shutdown(e);
  collect(a, got, 4096, &fin);
  assert_int_equal(fin, MIMO_FINISH_CANCELLED);
  mimo_request_release(a);
  assert_int_equal(mimo_engine_submit(e, &p, &a), MIMO_E_BUSY);
  mimo_engine_free(e);
}

static void test_stop_and_forced(void **state) {
  (void)state;
  int prompt[5] = {10, 20, 30, 40, 50}, want[12];
  greedy_alone(prompt, 5, 12, want);
  mimo_engine_opts o = {0};
  mimo_engine *e;
  assert_int_equal(mimo_engine_init(&e, model, &o), MIMO_OK);
  /* stop at the 4th greedy token: 3 tokens out, finish STOP */
  mimo_request_params p = greedy_params(prompt, 5, 12);
  p.stop_ids = &want[3];
  p.n_stop_ids = 1;
  int first = 0;
  while (first < 3 && want[first] != want[3])
    first++;
  mimo_request *r;
  assert_int_equal(mimo_engine_submit(e, &p, &r), MIMO_OK);
  int got[12];
  mimo_finish fin;
  int n = collect(r, got, 12, &fin);
  assert_int_equal(fin, MIMO_FINISH_STOP);
  assert_int_equal(n, first);
  mimo_request_release(r);
  /* forced prefix comes out first, whatever the model prefers */
  int forced[3] = {7, 8, 9};
  p = greedy_params(prompt, 5, 6);
  p.forced = forced;
  p.n_forced = 3;
  assert_int_equal(mimo_engine_submit(e, &p, &r), MIMO_OK);
  n = collect(r, got, 12, &fin);
  assert_int_equal(n, 6);
  assert_memory_equal(got, forced, sizeof forced);
  mimo_request_release(r);
  mimo_engine_free(e);
}

static void test_mock(void **state) {
  (void)state;
  int s0[4] = {100, 101, 102, 103}, s1[2] = {7, 8}, *ids[2] = {s0, s1}, lens[2] = {4, 2};
  mimo_engine_opts o = {.n_mock = 2, .mock_ids = ids, .mock_len = lens};
  mimo_engine *e;
  assert_int_equal(mimo_engine_init(&e, NULL, &o), MIMO_OK);
  int prompt[1] = {1}, got[16];
  mimo_request_params p = greedy_params(prompt, 1, 16);
  mimo_request *a, *b, *c;
  assert_int_equal(mimo_engine_submit(e, &p, &a), MIMO_OK);
  int forced[2] = {5, 6};
  p.forced = forced;
  p.n_forced = 2;
  assert_int_equal(mimo_engine_submit(e, &p, &b), MIMO_OK);
  p.n_forced = 0;
  p.max_tokens = 3;
  assert_int_equal(mimo_engine_submit(e, &p, &c), MIMO_OK); /* script 0 again, cut by max_tokens */
  mimo_finish fin;
  assert_int_equal(collect(a, got, 16, &fin), 4);
  assert_int_equal(fin, MIMO_FINISH_STOP);
  assert_memory_equal(got, s0, sizeof s0);
  assert_int_equal(collect(b, got, 16, &fin), 4);
  int want_b[4] = {5, 6, 7, 8};
  assert_memory_equal(got, want_b, sizeof want_b);
  assert_int_equal(collect(c, got, 16, &fin), 3);
  assert_int_equal(fin, MIMO_FINISH_LENGTH);
  mimo_request_release(a);
  mimo_request_release(b);
  mimo_request_release(c);
  mimo_engine_free(e);
}

/* KV storage from a byte budget shared by every backend that takes these hooks (the CPU backend then keeps its
 * caches there, as a GPU keeps them in device memory under --gpu-memory-utilization); tensor-parallel ranks call
 * them from their own threads. */
static pthread_mutex_t kv_mu = PTHREAD_MUTEX_INITIALIZER;
static size_t kv_budget, kv_used;
static float *budget_realloc(mimo_backend *b, float *p, size_t old_n, size_t new_n) {
  (void)b;
  (void)old_n;
  size_t *h = p ? (size_t *)p - 2 : NULL, *n = NULL;
  pthread_mutex_lock(&kv_mu);
  const size_t have = h ? h[0] : 0;
  if (kv_used - have * 4 + new_n * 4 > kv_budget) {
    mimo_errf(MIMO_E_NOMEM, "test budget of %zu bytes", kv_budget);
  } else if ((n = realloc(h, new_n * 4 + 2 * sizeof(size_t)))) {
    kv_used = kv_used - have * 4 + new_n * 4;
    n[0] = new_n;
  }
  pthread_mutex_unlock(&kv_mu);
  return n ? (float *)(n + 2) : NULL;
}
static void budget_free(mimo_backend *b, float *p) {
  (void)b;
  if (p) {
    pthread_mutex_lock(&kv_mu);
    kv_used -= ((size_t *)p - 2)[0] * 4;
    pthread_mutex_unlock(&kv_mu);
    free((size_t *)p - 2);
  }
}
static void budget_table_write(mimo_backend *b, void **dst, void *const *src, int n) {
  (void)b;
  memcpy(dst, src, (size_t)n * sizeof *dst);
}

/* A backend's sample op as a device has it (rows sampled where the logits are), on host memory: lets the CPU ranks of
 * a group take the path that gathers the vocabulary slices for rank 0 to sample. */
static int hook_calls;
static mimo_status sample_hook(mimo_backend *b, float *logits, int rows, int V, const mimo_sample_job *jobs, int *tokens,
                               mimo_sample_info *infos) {
  (void)b;
  mimo_sample_ws *ws;
  MIMO_TRY(mimo_sample_ws_init(&ws, V));
  for (int r = 0; r < rows; r++)
    tokens[r] = jobs[r].skip ? -1
                             : mimo_sample_logits(&jobs[r], logits + (size_t)r * V, V,
                                                  infos && jobs[r].logprobs > 0 ? &infos[r] : NULL, ws);
  mimo_sample_ws_free(ws);
  __atomic_fetch_add(&hook_calls, 1, __ATOMIC_RELAXED);
  return MIMO_OK;
}

/* The model on tp CPU backends that keep their KV under the budget. */
static mimo_model *budget_model_hooked(int tp, bool sample_op) {
  mimo_backend *bes[2];
  for (int r = 0; r < tp; r++) {
    assert_int_equal(mimo_backend_cpu_init(&bes[r], 2), MIMO_OK);
    bes[r]->kv_realloc = budget_realloc;
    bes[r]->kv_free = budget_free;
    bes[r]->kv_table_write = budget_table_write;
    if (sample_op)
      bes[r]->sample = sample_hook;
  }
  mimo_model *m;
  if (tp == 1) {
    assert_int_equal(mimo_model_load(dir, bes[0], &m), MIMO_OK);
    m->own_be = true;
  } else {
    assert_int_equal(mimo_model_load_tp(dir, bes, tp, false, NULL, &m), MIMO_OK);
  }
  return m;
}

static mimo_model *budget_model(int tp) { return budget_model_hooked(tp, false); }

/* Under a budget that holds two sequences' rings and three blocks (of every rank), three requests of two blocks
 * each: the youngest is preempted when another's second block does not fit, recomputed later, and each request
 * still produces exactly its greedy tokens; one that needs more blocks than the budget holds fails by itself. */
static void kv_full_preempts(int tp, int prefix_cache_entries) {
  enum { R = 3, P = 30, STEPS = 70 }; /* 100 positions each: two blocks of 64 */
  int prompts[R][P], want[R][STEPS];
  for (int r = 0; r < R; r++) {
    for (int i = 0; i < P; i++)
      prompts[r][i] = (r * 97 + i * 13 + 11) % 600;
    greedy_alone(prompts[r], P, STEPS, want[r]);
  }
  /* sizes, measured on a model of its own: a first block takes a first chunk of 16 blocks on every rank, and
   * each sequence its rings and block tables */
  kv_budget = (size_t)1 << 40;
  kv_used = 0;
  mimo_model *probe = budget_model(tp);
  mimo_kv_seq *s[2];
  int one = 1, tok = 1;
  size_t used[2];
  for (int i = 0; i < 2; i++) {
    assert_int_equal(mimo_kv_seq_init(&s[i], &probe->cfg), MIMO_OK);
    mimo_batch b = {.n_seqs = 1, .seqs = &s[i], .n_tokens = &one, .tokens = &tok, .all_logits = 1};
    float *lg = malloc((size_t)probe->cfg.vocab_size * sizeof *lg);
    assert_int_equal(mimo_model_forward(probe, &b, lg), MIMO_OK);
    free(lg);
    used[i] = kv_used;
  }
  const size_t per_seq = used[1] - used[0], blocks16 = used[0] - per_seq;
  mimo_kv_seq_free(s[0]);
  mimo_kv_seq_free(s[1]);
  mimo_model_free(probe);
  assert_int_equal(kv_used, 0);
  kv_budget = 2 * per_seq + 3 * (blocks16 / 16) + 4096;
  mimo_model *m = budget_model(tp);
  mimo_engine_opts o = {.max_num_seqs = 3, .max_num_batched_tokens = 16,
                        .prefix_cache_entries = prefix_cache_entries, .prefix_cache_every = 16};
  mimo_engine *e;
  assert_int_equal(mimo_engine_init(&e, m, &o), MIMO_OK);
  mimo_request *req[R + 1];
  for (int r = 0; r < R; r++) {
    mimo_request_params p = greedy_params(prompts[r], P, STEPS);
    assert_int_equal(mimo_engine_submit(e, &p, &req[r]), MIMO_OK);
  }
  static int big[5 * 64];
  for (int i = 0; i < 5 * 64; i++)
    big[i] = (i * 7 + 1) % 600;
  mimo_request_params pb = greedy_params(big, 5 * 64, 4);
  assert_int_equal(mimo_engine_submit(e, &pb, &req[R]), MIMO_OK);
  for (int r = 0; r < R; r++)
    expect_tokens(req[r], want[r], STEPS);
  int got[4];
  mimo_finish fin;
  collect(req[R], got, 4, &fin);
  assert_int_equal(fin, MIMO_FINISH_ERROR);
  mimo_request_release(req[R]);
  mimo_engine_stats st;
  mimo_engine_stats_get(e, &st);
  assert_true(st.preemptions_total >= 1);
  assert_true(kv_used <= kv_budget);
  mimo_engine_free(e);
  mimo_model_free(m);
  assert_int_equal(kv_used, 0);
}

static void test_kv_full_preempts(void **state) {
  (void)state;
  kv_full_preempts(1, 0);
}

/* The same with a prefix cache whose entries compete for the budget: they give their memory back first. */
static void test_kv_full_prefix_cache(void **state) {
  (void)state;
  kv_full_preempts(1, 8);
}

/* The same on a tensor-parallel group of two CPU ranks: a rank's failed reservation skips the step on all. */
static void test_kv_full_preempts_tp(void **state) {
  (void)state;
  kv_full_preempts(2, 0);
}

/* A prompt that continues a cached prefix computes only the rest and still produces exactly its greedy tokens alone
 * (and their logprobs): entries are taken at prompt chunks (every 64 positions here), at the end of a prompt and when
 * a request finishes; a hit is the longest entry the prompt starts with, or one position short of it (a prompt equal
 * to a cached one, or differing in the entry's last token). */
static void prefix_cache_hits(mimo_model *m) {
  enum { PA = 150, STEPS = 9, EXTRA = 20 };
  static int a[PA], b[PA + STEPS + EXTRA], c[150], d[150], want[5][STEPS];
  static float want_lp[5][STEPS];
  for (int i = 0; i < PA; i++)
    a[i] = (i * 37 + 3) % 600;
  greedy_alone_lp(a, PA, STEPS, want[0], want_lp[0]);
  /* b: a, a's output (the finished request's entry holds a and its first STEPS - 1 outputs), then new text */
  memcpy(b, a, sizeof a);
  memcpy(b + PA, want[0], (STEPS - 1) * sizeof(int));
  const int nb = PA + STEPS - 1 + EXTRA;
  for (int i = PA + STEPS - 1; i < nb; i++)
    b[i] = (i * 11 + 5) % 600;
  /* c: a's first 100 tokens, then others (the entry at 64 serves, not the one at 128) */
  memcpy(c, a, 100 * sizeof(int));
  for (int i = 100; i < 150; i++)
    c[i] = (i * 13 + 1) % 600;
  greedy_alone_lp(b, nb, STEPS, want[1], want_lp[1]);
  greedy_alone_lp(c, 150, STEPS, want[2], want_lp[2]);
  /* a again: the entry at a's prompt, less its last token (which must be computed for the logits) */
  greedy_alone_lp(a, PA, STEPS, want[3], want_lp[3]);
  /* d: a's first 127 tokens, then others: the entry at 128, less its last token */
  memcpy(d, a, 127 * sizeof(int));
  for (int i = 127; i < 150; i++)
    d[i] = (i * 19 + 7) % 600;
  assert_int_not_equal(d[127], a[127]);
  greedy_alone_lp(d, 150, STEPS, want[4], want_lp[4]);
  mimo_engine_opts o = {.max_num_seqs = 2, .max_num_batched_tokens = 64, .prefix_cache_entries = 16,
                        .prefix_cache_every = 64};
  mimo_engine *e;
  assert_int_equal(mimo_engine_init(&e, m, &o), MIMO_OK);
  const int *prompts[5] = {a, b, c, a, d}, lens[5] = {PA, nb, 150, PA, 150};
  const int cached[5] = {0, PA + STEPS - 1, 64, PA - 1, 127};
  for (int r = 0; r < 5; r++) { /* one after another: each finds what the ones before left */
    mimo_request_params p = greedy_params(prompts[r], lens[r], STEPS);
    p.sampling.logprobs = 1;
    mimo_request *req;
    assert_int_equal(mimo_engine_submit(e, &p, &req), MIMO_OK);
    int got[STEPS];
    float lp[STEPS];
    collect_lp(req, got, lp, STEPS);
    assert_int_equal(mimo_request_cached_tokens(req), cached[r]);
    assert_memory_equal(got, want[r], sizeof got);
    /* the logits themselves, not only their argmax (which zeroed sliding keys or a zeroed partial block leave as
     * they were on this model): chunking moves a logprob by <= 2e-6 here, those faults by 0.02-0.3 */
    for (int i = 0; i < STEPS; i++)
      assert_true(fabs(lp[i] - want_lp[r][i]) <= 1e-4);
    mimo_request_release(req);
  }
  mimo_engine_stats st;
  for (int i = 0; i < 1000; i++) { /* the stats follow the step that ended the last request */
    mimo_engine_stats_get(e, &st);
    if (st.prefix_cache_entries == 11)
      break;
    usleep(1000);
  }
  assert_int_equal(st.prefix_cache_queries_total, PA + nb + 150 + PA + 150);
  assert_int_equal(st.prefix_cache_hits_total, PA + STEPS - 1 + 64 + PA - 1 + 127);
  /* a: 64, 128, 150 (its prompt) and 158 (its end); b: 178 (its prompt, in one chunk from 158) and its end; c: 128
   * (64 past its hit), its prompt and its end; a again: its prompt and its end are there already; d: its prompt and
   * its end */
  assert_int_equal(st.prefix_cache_entries, 11);
  assert_true(st.prefix_cache_bytes > 0);
  mimo_engine_free(e);
}

static void test_prefix_cache(void **state) {
  (void)state;
  prefix_cache_hits(model);
}

/* Salted prefix caches (vLLM's cache_salt): a prompt finds only the entries of requests with its own salt, and the
 * tokens are those of the unsalted run whatever was found. */
static void test_prefix_cache_salt(void **state) {
  (void)state;
  enum { N = 150, STEPS = 5 };
  int p[N], want[STEPS];
  for (int i = 0; i < N; i++)
    p[i] = (i * 29 + 11) % 600;
  greedy_alone(p, N, STEPS, want);
  mimo_engine_opts o = {.max_num_seqs = 2, .max_num_batched_tokens = 64, .prefix_cache_entries = 16};
  mimo_engine *e;
  assert_int_equal(mimo_engine_init(&e, model, &o), MIMO_OK);
  /* salt of each request in turn, and the cached tokens it should see */
  const uint64_t salts[5] = {7, 9, 0, 7, 9};
  const int cached[5] = {0, 0, 0, N - 1, N - 1};
  for (int k = 0; k < 5; k++) {
    mimo_request_params rp = greedy_params(p, N, STEPS);
    rp.cache_salt = salts[k];
    mimo_request *r;
    assert_int_equal(mimo_engine_submit(e, &rp, &r), MIMO_OK);
    int got[STEPS];
    mimo_finish fin;
    assert_int_equal(collect(r, got, STEPS, &fin), STEPS);
    assert_memory_equal(got, want, sizeof got);
    assert_int_equal(mimo_request_cached_tokens(r), cached[k]);
    mimo_request_release(r);
  }
  mimo_engine_free(e);
}

/* A shared head (cache_at: a chat's system block) inside one large chunk: the chunk ends there and keeps an entry, so
 * a prompt that differs right after it starts from it, with exactly its greedy tokens alone. */
static void test_prefix_cache_at(void **state) {
  (void)state;
  enum { HEAD = 100, N = 180, STEPS = 6 };
  int p[2][N], want[2][STEPS];
  for (int k = 0; k < 2; k++) {
    for (int i = 0; i < N; i++)
      p[k][i] = i < HEAD ? (i * 31 + 2) % 600 : (i * (7 + k) + 3 * k + 1) % 600;
    greedy_alone(p[k], N, STEPS, want[k]);
  }
  assert_int_not_equal(p[0][HEAD], p[1][HEAD]);
  mimo_engine_opts o = {.max_num_seqs = 2, .max_num_batched_tokens = 512, .prefix_cache_entries = 4};
  mimo_engine *e;
  assert_int_equal(mimo_engine_init(&e, model, &o), MIMO_OK);
  for (int k = 0; k < 2; k++) {
    mimo_request_params rp = greedy_params(p[k], N, STEPS);
    rp.cache_at = HEAD;
    mimo_request *r;
    assert_int_equal(mimo_engine_submit(e, &rp, &r), MIMO_OK);
    int got[STEPS];
    mimo_finish fin;
    assert_int_equal(collect(r, got, STEPS, &fin), STEPS);
    assert_memory_equal(got, want[k], sizeof got);
    assert_int_equal(mimo_request_cached_tokens(r), k ? HEAD : 0);
    mimo_request_release(r);
  }
  mimo_engine_free(e);
}

/* The same on a tensor-parallel group of two CPU ranks: each rank forks its own shard of an entry. */
static void test_prefix_cache_tp(void **state) {
  (void)state;
  kv_budget = (size_t)1 << 40;
  kv_used = 0;
  mimo_model *m = budget_model(2);
  prefix_cache_hits(m);
  mimo_model_free(m);
  assert_int_equal(kv_used, 0);
}

/* Requests submitted together with one prompt (a request's n choices): the first computes it, the others wait for its
 * prefix-cache entry and compute only its last token, and all produce exactly the greedy tokens alone; a request with
 * another prompt, queued behind them, is not held up by their wait. */
static void test_shared_prompt_waits(void **state) {
  (void)state;
  enum { N = 150, STEPS = 5, R = 3 };
  int p[N], other[N], want[STEPS], want_other[STEPS];
  for (int i = 0; i < N; i++) {
    p[i] = (i * 41 + 9) % 600;
    other[i] = (i * 23 + 4) % 600;
  }
  greedy_alone(p, N, STEPS, want);
  greedy_alone(other, N, STEPS, want_other);
  mimo_engine_opts o = {.max_num_seqs = 4, .max_num_batched_tokens = 32, .prefix_cache_entries = 8};
  mimo_engine *e;
  assert_int_equal(mimo_engine_init(&e, model, &o), MIMO_OK);
  mimo_request *req[R + 1];
  for (int r = 0; r <= R; r++) {
    mimo_request_params rp = greedy_params(r < R ? p : other, N, STEPS);
    assert_int_equal(mimo_engine_submit(e, &rp, &req[r]), MIMO_OK);
  }
  int cached = 0;
  for (int r = 0; r <= R; r++) {
    int got[STEPS];
    mimo_finish fin;
    assert_int_equal(collect(req[r], got, STEPS, &fin), STEPS);
    assert_memory_equal(got, r < R ? want : want_other, sizeof got);
    cached += mimo_request_cached_tokens(req[r]);
    if (r < R)
      assert_int_equal(mimo_request_cached_tokens(req[r]), r ? N - 1 : 0);
    mimo_request_release(req[r]);
  }
  assert_int_equal(cached, (R - 1) * (N - 1));
  mimo_engine_free(e);
}

/* A tensor-parallel group whose backends sample where the logits are: the ranks gather their vocabulary slices (a sum
 * with zeros elsewhere) and rank 0 samples; seeded sampling with every filter and logprobs gives exactly what the same
 * group gives sampling on the host from the logits it scatters there. */
static void test_tp_sampling_gathered(void **state) {
  (void)state;
  enum { R = 3, STEPS = 12 };
  kv_budget = (size_t)1 << 40;
  kv_used = 0;
  mimo_model *m = budget_model_hooked(2, true);
  int prompts[R][20], got[2][R][STEPS];
  float lps[2][R][STEPS];
  for (int r = 0; r < R; r++)
    for (int i = 0; i < 20; i++)
      prompts[r][i] = (r * 53 + i * 29 + 7) % 600;
  for (int pass = 0; pass < 2; pass++) {
    m->host_sampling = pass == 1;
    assert_int_equal(mimo_model_samples_on_device(m), pass == 0);
    hook_calls = 0;
    mimo_engine_opts o = {.max_num_seqs = R, .max_num_batched_tokens = 64};
    mimo_engine *e;
    assert_int_equal(mimo_engine_init(&e, m, &o), MIMO_OK);
    mimo_request *req[R];
    for (int r = 0; r < R; r++) {
      mimo_request_params p = {.prompt = prompts[r], .n_prompt = 8 + 6 * r, .max_tokens = STEPS, .ignore_eos = true};
      mimo_sampling_defaults(&p.sampling);
      p.sampling.temperature = 0.9f;
      p.sampling.top_p = 0.95f;
      p.sampling.top_k = 40;
      p.sampling.seed = 1000 + r;
      p.sampling.logprobs = 2;
      assert_int_equal(mimo_engine_submit(e, &p, &req[r]), MIMO_OK);
    }
    for (int r = 0; r < R; r++) {
      collect_lp(req[r], got[pass][r], lps[pass][r], STEPS);
      mimo_request_release(req[r]);
    }
    mimo_engine_free(e);
    if (pass == 0)
      assert_true(hook_calls > 0); /* rank 0's sample op ran */
    else
      assert_int_equal(hook_calls, 0);
  }
  assert_memory_equal(got[0], got[1], sizeof got[0]);
  /* the logprobs to rounding: which requests share a step depends on when the engine thread picks them up, and a
   * step of other shapes rounds differently (CI under load saw the last bits move once) */
  for (int r = 0; r < R; r++)
    for (int t = 0; t < STEPS; t++)
      if (fabsf(lps[0][r][t] - lps[1][r][t]) > 1e-4f)
        fail_msg("request %d, token %d: logprob %.9g on the device path, %.9g on the host", r, t, lps[0][r][t],
                 lps[1][r][t]);
  mimo_model_free(m);
  assert_int_equal(kv_used, 0);
}

/* Image rows through the engine: rows equal to the embeddings of other tokens make a prompt compute exactly what
 * the prompt with those tokens does, however the chunks cut the runs (a budget of 8 tokens per step); runs that do not
 * fit the prompt are refused. */
static void test_embeds(void **state) {
  (void)state;
  enum { N = 30, STEPS = 6 };
  const int H = model->cfg.hidden_size;
  int prompt[N], swapped[N], want[STEPS];
  for (int i = 0; i < N; i++)
    prompt[i] = swapped[i] = (i * 37 + 11) % 600;
  const mimo_embed_run at[2] = {{.at = 5, .n = 7}, {.at = 20, .n = 3}};
  float *rows[2];
  for (int r = 0; r < 2; r++) {
    for (int j = 0; j < at[r].n; j++)
      swapped[at[r].at + j] = (at[r].at + j) * 7 % 600;
    rows[r] = malloc((size_t)at[r].n * H * sizeof(float));
    assert_non_null(rows[r]);
    be->embed(be, rows[r], &model->w.embed, swapped + at[r].at, at[r].n);
  }
  greedy_alone(swapped, N, STEPS, want);
  int plain[STEPS]; /* the test means something only if the rows change the output */
  greedy_alone(prompt, N, STEPS, plain);
  assert_memory_not_equal(plain, want, sizeof want);
  const mimo_embed_run runs[2] = {{5, 7, rows[0], false}, {20, 3, rows[1], false}};
  mimo_engine_opts o = {.max_num_seqs = 2, .max_num_batched_tokens = 8};
  mimo_engine *e;
  assert_int_equal(mimo_engine_init(&e, model, &o), MIMO_OK);
  mimo_request_params p = greedy_params(prompt, N, STEPS);
  p.embeds = runs;
  p.n_embeds = 2;
  mimo_request *req;
  assert_int_equal(mimo_engine_submit(e, &p, &req), MIMO_OK);
  expect_tokens(req, want, STEPS);
  const mimo_embed_run bad[3][2] = {{{5, 7, rows[0], false}, {8, 3, rows[1], false}},   /* overlapping */
                                    {{5, 7, rows[0], false}, {28, 3, rows[1], false}},  /* past the prompt */
                                    {{20, 3, rows[1], false}, {5, 7, rows[0], false}}}; /* out of order */
  for (int k = 0; k < 3; k++) {
    p.embeds = bad[k];
    assert_int_equal(mimo_engine_submit(e, &p, &req), MIMO_E_INVALID);
  }
  mimo_engine_free(e);
  free(rows[0]);
  free(rows[1]);
}

static int setup(void **state) {
  (void)state;
  snprintf(root, sizeof root, "/tmp/mimo-test-engine-XXXXXX");
  if (!mkdtemp(root))
    return -1;
  snprintf(dir, sizeof dir, "%s/m", root);
  mimo_synth_opts o = {.out = dir, .preset = "tiny", .quant = "int4", .seed = 9};
  if (mimo_synth(&o) != MIMO_OK || mimo_backend_cpu_init(&be, 2) != MIMO_OK)
    return -1;
  return mimo_model_load(dir, be, &model) == MIMO_OK ? 0 : -1;
}

static int teardown(void **state) {
  (void)state;
  mimo_model_free(model);
  be->free(be);
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
  return system(cmd) == 0 ? 0 : -1;
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_batched_equals_alone), cmocka_unit_test(test_limits_and_cancel),
      cmocka_unit_test(test_stop_and_forced), cmocka_unit_test(test_mock), cmocka_unit_test(test_kv_full_preempts),
      cmocka_unit_test(test_kv_full_preempts_tp), cmocka_unit_test(test_kv_full_prefix_cache),
      cmocka_unit_test(test_prefix_cache), cmocka_unit_test(test_prefix_cache_tp), cmocka_unit_test(test_prefix_cache_at),
      cmocka_unit_test(test_prefix_cache_salt),
      cmocka_unit_test(test_tp_sampling_gathered), cmocka_unit_test(test_shared_prompt_waits),
      cmocka_unit_test(test_embeds),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
