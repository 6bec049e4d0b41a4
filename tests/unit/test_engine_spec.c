/* Speculative decoding in the serving engine (engine.h num_speculative_tokens, engine_spec.c): the outputs must be
 * those of the same engine without drafts, token for token, under continuous batching of several requests:
 *   - greedy, with the MTP layer's own drafts (a random layer: almost all rejected);
 *   - greedy and seeded sampling (temperature, top-k, top-p, min-p and all three penalties), with drafts taken from
 *     the known answer and corrupted at every fifth position (the test seam), so that steps keep none, some and all
 *     of their drafts; the logprobs of each output agree too;
 *   - a stop id that comes in the middle of a step's drafts, and max_tokens that ends inside one;
 *   - logit_bias and min_tokens (a stop id banned for the first 20 tokens);
 *   - a repeated prompt that starts from a prefix-cache hit (the MTP cache then starts late);
 *   - a tensor-parallel group of two CPU ranks in one process (the MTP on rank 0, the caches stepped back on both);
 *   - a JSON schema (structured outputs): every row masked as the grammar stands after the drafts before it;
 *   - a KV memory budget that forces preemptions (recomputed requests, MTP caches started again);
 *   - after a prefix-cache hit the MTP drafts exactly what it drafts from a cold start (the entry keeps the hidden
 *     states its MTP cache is made from);
 * and the counters say drafts were kept (stated property: 0 < kept < verified with corrupted drafts). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/engine.h"
#include "model/mimo_v2.h"
#include "model/synth.h"
#include "text/grammar_vocab.h"
#include "text/json_grammar.h"
#include "text/tokenizer.h"

static char root[64], dir[256];

enum { NREQ = 3, PROMPT = 23, MAXPROMPT = 128, MAXOUT = 80 };

typedef struct {
  int n[NREQ];
  int tok[NREQ][MAXOUT];
  float lp[NREQ][MAXOUT];
  mimo_finish fin[NREQ];
  mimo_engine_stats stats;
  long cached; /* prompt tokens the second round found in the prefix cache */
} outputs;

typedef struct {
  int k;                 /* drafts per step */
  bool tp2;              /* a group of two CPU ranks */
  int prefix_cache;      /* entries */
  const int *oracle;     /* drafts from here (test seam) */
  int n_oracle;
  bool same_prompt;      /* every request has request 0's prompt */
  mimo_sampling_params sp;
  int max_tokens;
  int stop_id;           /* -1: none */
  bool twice;            /* the requests once more after the first round finished (prefix-cache hits) */
  int prompt_len;        /* 0: PROMPT */
} setup_t;

/* KV storage under a byte budget (as a GPU's under --gpu-memory-utilization): the model's caches and the MTP's both
 * take from it, so a step that does not fit preempts, and an MTP cache that does not fit is dropped. */
static size_t kv_budget, kv_used, kv_peak;
static float *budget_realloc(mimo_backend *b, float *p, size_t old_n, size_t new_n) {
  (void)b;
  (void)old_n;
  size_t *h = p ? (size_t *)p - 2 : NULL, *n = NULL;
  const size_t have = h ? h[0] : 0;
  if (kv_used - have * 4 + new_n * 4 > kv_budget) {
    mimo_errf(MIMO_E_NOMEM, "test budget of %zu bytes", kv_budget);
  } else if ((n = realloc(h, new_n * 4 + 2 * sizeof(size_t)))) {
    kv_used = kv_used - have * 4 + new_n * 4;
    kv_peak = kv_used > kv_peak ? kv_used : kv_peak;
    n[0] = new_n;
  }
  return n ? (float *)(n + 2) : NULL;
}
static void budget_free(mimo_backend *b, float *p) {
  (void)b;
  if (p) {
    kv_used -= ((size_t *)p - 2)[0] * 4;
    free((size_t *)p - 2);
  }
}
static void budget_table_write(mimo_backend *b, void **dst, void *const *src, int n) {
  (void)b;
  memcpy(dst, src, (size_t)n * sizeof *dst);
}
static bool budgeted; /* load() hooks the budget in */

static mimo_model *load(bool tp2) {
  mimo_model *m;
  if (!tp2) {
    mimo_backend *be;
    assert_int_equal(mimo_backend_cpu_init(&be, 2), MIMO_OK);
    if (budgeted) {
      be->kv_realloc = budget_realloc;
      be->kv_free = budget_free;
      be->kv_table_write = budget_table_write;
    }
    assert_int_equal(mimo_model_load(dir, be, &m), MIMO_OK);
    m->own_be = true;
    return m;
  }
  mimo_backend *bes[2];
  for (int r = 0; r < 2; r++)
    assert_int_equal(mimo_backend_cpu_init(&bes[r], 1), MIMO_OK);
  assert_int_equal(mimo_model_load_tp(dir, bes, 2, false, NULL, &m), MIMO_OK);
  return m;
}

static void prompt_of(int i, int *p, int n) {
  for (int t = 0; t < n; t++)
    p[t] = (t * 37 + i * 101 + 5) % 600;
}

static void run(const setup_t *s, outputs *o) {
  memset(o, 0, sizeof *o);
  mimo_model *m = load(s->tp2);
  mimo_engine_opts eo = {.max_num_seqs = 4, .max_num_batched_tokens = 16, .warmup = -1,
                         .prefix_cache_entries = s->prefix_cache, .num_speculative_tokens = s->k,
                         .spec_oracle = s->oracle, .n_spec_oracle = s->n_oracle};
  mimo_engine *e;
  assert_int_equal(mimo_engine_init(&e, m, &eo), MIMO_OK);
  for (int round = 0; round < (s->twice ? 2 : 1); round++) {
    mimo_request *r[NREQ];
    const int np = s->prompt_len ? s->prompt_len : PROMPT;
    int prompts[NREQ][MAXPROMPT];
    for (int i = 0; i < NREQ; i++) {
      prompt_of(s->same_prompt ? 0 : i, prompts[i], np);
      mimo_request_params p = {.prompt = prompts[i], .n_prompt = np, .max_tokens = s->max_tokens,
                               .sampling = s->sp, .ignore_eos = true, .stop_ids = &s->stop_id,
                               .n_stop_ids = s->stop_id >= 0};
      p.sampling.seed = s->sp.seed + (uint64_t)i;
      assert_int_equal(mimo_engine_submit(e, &p, &r[i]), MIMO_OK);
    }
    for (int i = 0; i < NREQ; i++) {
      mimo_token_event ev[8];
      int n = 0;
      for (bool done = false; !done;) {
        const int got = mimo_request_poll(r[i], ev, 8, 20000);
        assert_true(got > 0);
        for (int j = 0; j < got; j++) {
          if (ev[j].token >= 0) {
            assert_true(n < MAXOUT);
            o->lp[i][n] = ev[j].info.logprob;
            o->tok[i][n++] = ev[j].token;
          }
          if (ev[j].finish) {
            done = true;
            if (round)
              assert_int_equal(o->fin[i], ev[j].finish);
            o->fin[i] = ev[j].finish;
          }
        }
      }
      if (round) /* the second round (from the prefix cache) gives the same tokens */
        assert_int_equal(n, o->n[i]);
      o->n[i] = n;
      if (round)
        o->cached += mimo_request_cached_tokens(r[i]);
      mimo_request_release(r[i]);
    }
  }
  mimo_engine_stats_get(e, &o->stats);
  mimo_engine_free(e);
  mimo_model_free(m);
}

static void expect_same(const outputs *want, const outputs *got, bool lp) {
  for (int i = 0; i < NREQ; i++) {
    assert_int_equal(got->n[i], want->n[i]);
    assert_int_equal(got->fin[i], want->fin[i]);
    assert_memory_equal(got->tok[i], want->tok[i], (size_t)want->n[i] * sizeof(int));
    for (int t = 0; lp && t < want->n[i]; t++)
      assert_true(fabsf(got->lp[i][t] - want->lp[i][t]) < 1e-4f);
  }
}

/* Request 0's output, wrong at every fifth position. */
static void corrupted(const outputs *o, int *bad) {
  for (int t = 0; t < o->n[0]; t++)
    bad[t] = t % 5 == 3 ? (o->tok[0][t] + 1) % 600 : o->tok[0][t];
}

static void report(const char *what, const outputs *o) {
  print_message("%s: %ld steps, %ld of %ld drafts kept in %ld verifying steps\n", what, o->stats.steps,
                o->stats.spec_accepted_tokens, o->stats.spec_draft_tokens, o->stats.spec_drafts);
}

static void test_greedy(void **state) {
  (void)state;
  setup_t s = {.max_tokens = 30, .stop_id = -1};
  mimo_sampling_defaults(&s.sp);
  s.sp.temperature = 0;
  outputs ref, got;
  run(&s, &ref);
  for (int k = 1; k <= 3; k += 2) { /* the MTP's own drafts */
    s.k = k;
    run(&s, &got);
    report(k == 1 ? "greedy k=1, MTP drafts" : "greedy k=3, MTP drafts", &got);
    expect_same(&ref, &got, false);
    assert_true(got.stats.spec_draft_tokens > 0);
  }
  /* every request with request 0's prompt and drafts from its answer */
  s.same_prompt = true;
  s.k = 0;
  run(&s, &ref);
  int bad[MAXOUT];
  corrupted(&ref, bad);
  s.oracle = bad;
  s.n_oracle = ref.n[0];
  s.k = 4;
  run(&s, &got);
  report("greedy k=4, corrupted answer as drafts", &got);
  expect_same(&ref, &got, false);
  assert_true(got.stats.spec_accepted_tokens > 0);
  assert_true(got.stats.spec_accepted_tokens < got.stats.spec_draft_tokens);
  assert_true(got.stats.steps < ref.stats.steps);
}

static void test_sampling(void **state) {
  (void)state;
  setup_t s = {.max_tokens = 33, .stop_id = -1, .same_prompt = true};
  mimo_sampling_defaults(&s.sp);
  s.sp.temperature = 0.9f;
  s.sp.top_k = 50;
  s.sp.top_p = 0.95f;
  s.sp.min_p = 0.01f;
  s.sp.repetition_penalty = 1.1f;
  s.sp.presence_penalty = 0.3f;
  s.sp.frequency_penalty = 0.2f;
  s.sp.seed = 7;
  s.sp.logprobs = 2;
  outputs ref, got;
  run(&s, &ref);
  int bad[MAXOUT];
  corrupted(&ref, bad); /* request 0's answer: the others (other seeds) mostly refuse it */
  s.oracle = bad;
  s.n_oracle = ref.n[0];
  for (int k = 2; k <= 3; k++) {
    s.k = k;
    run(&s, &got);
    report(k == 2 ? "sampling k=2" : "sampling k=3", &got);
    expect_same(&ref, &got, true);
    assert_true(got.stats.spec_accepted_tokens > 0);
    assert_true(got.stats.spec_accepted_tokens < got.stats.spec_draft_tokens);
  }
  /* a stop id inside a step's drafts: request 0's output at position 17 */
  s.k = 0;
  s.oracle = NULL;
  s.stop_id = ref.tok[0][17];
  run(&s, &ref);
  assert_int_equal(ref.fin[0], MIMO_FINISH_STOP);
  s.oracle = bad;
  s.k = 4;
  run(&s, &got);
  expect_same(&ref, &got, true);
  /* logit_bias and min_tokens (sampled on the host; row i of a step counts the drafts before it for min_tokens) */
  const int bias_ids[2] = {ref.tok[0][3], 17};
  const float bias_vals[2] = {-3.0f, 2.5f};
  s.sp.n_bias = 2;
  s.sp.bias_ids = bias_ids;
  s.sp.bias_vals = bias_vals;
  s.sp.min_tokens = 20;
  s.k = 0;
  s.oracle = NULL;
  run(&s, &ref);
  assert_true(ref.n[0] >= 20);
  corrupted(&ref, bad);
  s.oracle = bad;
  s.n_oracle = ref.n[0];
  s.k = 3;
  run(&s, &got);
  report("logit_bias and min_tokens, k=3", &got);
  expect_same(&ref, &got, true);
  assert_true(got.stats.spec_accepted_tokens > 0);
}

static void test_prefix_cache_and_tp(void **state) {
  (void)state;
  setup_t s = {.max_tokens = 30, .stop_id = -1, .same_prompt = true, .prefix_cache = 8, .twice = true,
               .prompt_len = 90}; /* (entries need 64 positions) */
  mimo_sampling_defaults(&s.sp);
  s.sp.temperature = 0;
  outputs ref, got;
  run(&s, &ref);
  int bad[MAXOUT];
  corrupted(&ref, bad);
  s.oracle = bad;
  s.n_oracle = ref.n[0];
  s.k = 3;
  run(&s, &got); /* (run checks the second round against the first) */
  report("prefix cache, k=3", &got);
  expect_same(&ref, &got, false);
  assert_true(got.cached >= 64 * NREQ); /* the second round started from entries */
  s.tp2 = true;
  run(&s, &got);
  report("TP-2, k=3", &got);
  expect_same(&ref, &got, false);
  assert_true(got.cached >= 64 * NREQ);
  assert_true(got.stats.spec_accepted_tokens > 0);
}

/* Under a KV budget below what the requests need at once: preemptions (a preempted request recomputes its prompt and
 * outputs, its MTP cache starting again), and the outputs still those without drafts and without the budget. */
static void test_preemption(void **state) {
  (void)state;
  setup_t s = {.max_tokens = 70, .stop_id = -1, .same_prompt = true}; /* (a second block while decoding) */
  mimo_sampling_defaults(&s.sp);
  s.sp.temperature = 0.8f;
  s.sp.seed = 3;
  outputs ref, got;
  run(&s, &ref); /* no budget, no drafts */
  int bad[MAXOUT];
  corrupted(&ref, bad);
  s.oracle = bad;
  s.n_oracle = ref.n[0];
  s.k = 3;
  budgeted = true;
  kv_budget = (size_t)1 << 40;
  kv_used = kv_peak = 0;
  run(&s, &got); /* the room it takes */
  expect_same(&ref, &got, false);
  const size_t peak = kv_peak;
  long preempted = 0;
  /* smaller and smaller budgets, until one request no longer fits alone (it then fails by itself) */
  for (int pct = 90; pct >= 10; pct -= 10) {
    kv_budget = peak * (size_t)pct / 100;
    kv_used = kv_peak = 0;
    run(&s, &got);
    assert_int_equal(kv_used, 0);
    bool failed = false;
    for (int i = 0; i < NREQ; i++)
      failed |= got.fin[i] == MIMO_FINISH_ERROR;
    if (failed)
      break;
    print_message("KV budget %d %% of the peak (%zu bytes): %ld preemptions, %ld of %ld drafts kept\n", pct, peak,
                  got.stats.preemptions_total, got.stats.spec_accepted_tokens, got.stats.spec_draft_tokens);
    expect_same(&ref, &got, false);
    preempted += got.stats.preemptions_total;
  }
  budgeted = false;
  assert_true(preempted >= 1);
}

/* The drafts the MTP makes for a request (test seam), one round after another. */
static int trace_round, trace_n[2], trace[2][4096];
static void on_drafts(void *ctx, const mimo_request *r, const int *d, int n) {
  (void)ctx;
  (void)r;
  for (int i = 0; i < n && trace_n[trace_round] < 4096; i++)
    trace[trace_round][trace_n[trace_round]++] = d[i];
}

/* Submits one greedy request of prompt[0..P) for OUT tokens (prompt logprobs when asked) and collects its tokens. */
static mimo_request *greedy_one(mimo_engine *e, const int *prompt, int P, int OUT, bool prompt_lp, int *out) {
  mimo_sampling_params sp;
  mimo_sampling_defaults(&sp);
  sp.temperature = 0;
  mimo_request_params p = {.prompt = prompt, .n_prompt = P, .max_tokens = OUT, .sampling = sp, .ignore_eos = true,
                           .prompt_logprobs = prompt_lp, .prompt_top_logprobs = prompt_lp ? 1 : 0};
  mimo_request *r;
  assert_int_equal(mimo_engine_submit(e, &p, &r), MIMO_OK);
  int n = 0;
  for (bool done = false; !done;) {
    mimo_token_event ev[8];
    const int got = mimo_request_poll(r, ev, 8, 20000);
    assert_true(got > 0);
    for (int j = 0; j < got; j++) {
      if (ev[j].token >= 0 && n < OUT)
        out[n++] = ev[j].token;
      done |= ev[j].finish != MIMO_FINISH_NONE;
    }
  }
  assert_int_equal(n, OUT);
  return r;
}

/* The two rounds' outputs (n tokens each) and the MTP's drafts in them (on_drafts) are the same. */
static void same_drafts(const char *first, const char *second, const int *out0, const int *out1, int n) {
  trace_round = 0;
  print_message("drafts: %d %s, %d %s\n", trace_n[0], first, trace_n[1], second);
  assert_memory_equal(out0, out1, (size_t)n * sizeof(int));
  assert_true(trace_n[0] > 0);
  assert_int_equal(trace_n[1], trace_n[0]);
  assert_memory_equal(trace[1], trace[0], (size_t)trace_n[0] * sizeof(int));
}

/* A prompt that starts from a prefix-cache entry: the entry keeps the model's hidden states of its last positions,
 * so the MTP cache made after the hit is the one a cold start makes, and the MTP drafts exactly the same tokens
 * (its own drafts, greedy: the same outputs both times, so any difference would be the MTP's context). */
static void prefix_hit_drafts(bool tp2) {
  enum { P = 150, OUT = 24 };
  mimo_model *m = load(tp2);
  mimo_engine_opts eo = {.max_num_seqs = 2, .max_num_batched_tokens = 48, .warmup = -1, .prefix_cache_entries = 4,
                         .num_speculative_tokens = 3, .spec_trace = on_drafts};
  mimo_engine *e;
  assert_int_equal(mimo_engine_init(&e, m, &eo), MIMO_OK);
  int prompt[P], out[2][OUT];
  for (int i = 0; i < P; i++)
    prompt[i] = (i * 53 + 7) % 600;
  memset(trace_n, 0, sizeof trace_n);
  for (trace_round = 0; trace_round < 2; trace_round++) {
    mimo_request *r = greedy_one(e, prompt, P, OUT, false, out[trace_round]);
    if (trace_round)
      assert_true(mimo_request_cached_tokens(r) >= 64); /* it did start from an entry */
    mimo_request_release(r);
  }
  same_drafts("cold", "after a prefix-cache hit", out[0], out[1], OUT);
  mimo_engine_free(e);
  mimo_model_free(m);
}

/* A prompt whose logprobs are wanted is computed on its own, without the MTP; the hidden states it keeps make the
 * MTP cache when it decodes: the drafts are those of the same prompt without logprobs. */
static void test_prompt_logprobs_drafts(void **state) {
  (void)state;
  enum { P = 100, OUT = 20 };
  mimo_model *m = load(false);
  mimo_engine_opts eo = {.max_num_seqs = 2, .max_num_batched_tokens = 32, .warmup = -1,
                         .num_speculative_tokens = 2, .spec_trace = on_drafts};
  mimo_engine *e;
  assert_int_equal(mimo_engine_init(&e, m, &eo), MIMO_OK);
  int prompt[P], out[2][OUT];
  for (int i = 0; i < P; i++)
    prompt[i] = (i * 31 + 3) % 600;
  memset(trace_n, 0, sizeof trace_n);
  for (trace_round = 0; trace_round < 2; trace_round++) {
    mimo_request *r = greedy_one(e, prompt, P, OUT, trace_round == 0, out[trace_round]);
    if (trace_round == 0)
      assert_non_null(mimo_request_prompt_logprobs(r));
    mimo_request_release(r);
  }
  same_drafts("after a prompt with logprobs", "without", out[0], out[1], OUT);
  mimo_engine_free(e);
  mimo_model_free(m);
}

static void test_prefix_hit_drafts(void **state) {
  (void)state;
  prefix_hit_drafts(false);
  prefix_hit_drafts(true); /* a group: the entries are forks of every rank's shards, the MTP on rank 0 */
}

/* Structured outputs with drafts: each row of a drafting step is masked as the grammar stands after the drafts
 * before it, the drafts the grammar refuses are not verified, and the outputs are those without drafts (sampled, a
 * JSON schema; the drafts from the answer, corrupted). */
static void constrained_run(const mimo_gvocab *v, const mimo_jg *g, int k, const int *oracle, int n_oracle, int *out,
                            int *n_out, mimo_engine_stats *st) {
  mimo_model *m = load(false);
  mimo_engine_opts eo = {.max_num_seqs = 2, .max_num_batched_tokens = 32, .warmup = -1, .num_speculative_tokens = k,
                         .spec_oracle = oracle, .n_spec_oracle = n_oracle};
  mimo_engine *e;
  assert_int_equal(mimo_engine_init(&e, m, &eo), MIMO_OK);
  int prompt[PROMPT];
  prompt_of(1, prompt, PROMPT);
  mimo_sampling_params sp;
  mimo_sampling_defaults(&sp);
  sp.temperature = 0.9f;
  sp.seed = 11;
  mimo_constraint *con;
  assert_int_equal(mimo_grammar_constraint(v, g, -1, &con), MIMO_OK);
  mimo_request_params p = {.prompt = prompt, .n_prompt = PROMPT, .max_tokens = MAXOUT, .sampling = sp,
                           .constraint = con};
  mimo_request *r;
  assert_int_equal(mimo_engine_submit(e, &p, &r), MIMO_OK);
  *n_out = 0;
  for (bool done = false; !done;) {
    mimo_token_event ev[8];
    const int got = mimo_request_poll(r, ev, 8, 20000);
    assert_true(got > 0);
    for (int j = 0; j < got; j++) {
      if (ev[j].token >= 0 && *n_out < MAXOUT)
        out[(*n_out)++] = ev[j].token;
      assert_true(ev[j].finish != MIMO_FINISH_ERROR);
      done |= ev[j].finish != MIMO_FINISH_NONE;
    }
  }
  mimo_request_release(r);
  mimo_engine_stats_get(e, st);
  mimo_engine_free(e);
  mimo_model_free(m);
}

static void test_structured(void **state) {
  (void)state;
  mimo_tok *t;
  assert_int_equal(mimo_tok_load(dir, &t), MIMO_OK);
  mimo_gvocab *v;
  assert_int_equal(mimo_gvocab_new(t, &v), MIMO_OK);
  const char *schema = "{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"integer\"},\"b\":{\"type\":"
                       "\"string\",\"maxLength\":12}},\"required\":[\"a\",\"b\"]}";
  json_error_t err;
  json_t *js = json_loads(schema, 0, &err);
  mimo_jg *g;
  assert_int_equal(mimo_jg_compile(js, &g), MIMO_OK);
  json_decref(js);
  int want[MAXOUT], got[MAXOUT], n_want, n_got, bad[MAXOUT];
  mimo_engine_stats st;
  constrained_run(v, g, 0, NULL, 0, want, &n_want, &st);
  for (int i = 0; i < n_want; i++)
    bad[i] = i % 5 == 3 ? (want[i] + 1) % 600 : want[i];
  constrained_run(v, g, 3, bad, n_want, got, &n_got, &st);
  print_message("structured output, k=3: %d tokens, %ld of %ld drafts kept in %ld verifying steps\n", n_got,
                st.spec_accepted_tokens, st.spec_draft_tokens, st.spec_drafts);
  assert_int_equal(n_got, n_want);
  assert_memory_equal(got, want, (size_t)n_want * sizeof *want);
  assert_true(st.spec_accepted_tokens > 0);
  mimo_jg_free(g);
  mimo_gvocab_free(v);
  mimo_tok_free(t);
}

static void test_refusals(void **state) {
  (void)state;
  mimo_model *m = load(false);
  mimo_engine *e = NULL;
  mimo_engine_opts eo = {.warmup = -1, .num_speculative_tokens = MIMO_SPEC_MAX + 1};
  assert_int_equal(mimo_engine_init(&e, m, &eo), MIMO_E_INVALID);
  mimo_model_free(m);
}

static int setup(void **state) {
  (void)state;
  snprintf(root, sizeof root, "/tmp/mimo-test-espec-XXXXXX");
  if (!mkdtemp(root))
    return -1;
  snprintf(dir, sizeof dir, "%s/m", root);
  mimo_synth_opts o = {.out = dir, .preset = "tiny", .quant = "int4", .seed = 5, .mtp_layers = 1, .no_vision = 1};
  return mimo_synth(&o) == MIMO_OK ? 0 : -1;
}

static int teardown(void **state) {
  (void)state;
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
  return system(cmd) == 0 ? 0 : -1;
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_greedy),
      cmocka_unit_test(test_sampling),
      cmocka_unit_test(test_prefix_cache_and_tp),
      cmocka_unit_test(test_preemption),
      cmocka_unit_test(test_prefix_hit_drafts),
      cmocka_unit_test(test_prompt_logprobs_drafts),
      cmocka_unit_test(test_structured),
      cmocka_unit_test(test_refusals),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
