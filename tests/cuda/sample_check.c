/* mimo_cuda_check sample check|bench: the device sampler (cuda_sample.cu) against the host sampler
 * (engine/sampler.c), which is an independent implementation of the same steps (heap / quickselect / binned
 * top-p on the host; radix select on the device).
 *   check  for each logit distribution x parameter set: a host sampler and a job sampler with the same seed and
 *          history draw R tokens from copies of one row (the host with mimo_sampler_sample, the device with the
 *          jobs of mimo_sampler_job): greedy tokens must agree exactly; sampled tokens may differ only where
 *          expf's last bit moves a boundary (<= 0.2 % of the draws over all cases, none in a greedy case);
 *          logprobs: the same top ids and |Δ logprob| <= 2e-4. Rows with no usable logit must give -1.
 *   bench  time per step of the device sampler (jobs up, kernel, tokens down) against what it replaces: the
 *          logits download plus the host sampler, at 1..256 rows of 152576 logits. */
#include <cuda_runtime.h>

#include "core/log.h"
#include "cuda_common.h"
#include "engine/sampler.h"

static int n_pass, n_fail;

/* Distributions: 0 normal(1), 1 normal(4) (peaked), 2 values on a 0.5 grid (many ties), 3 normal(2) with NaN,
 * +inf, -inf sprinkled, 4 one usable logit, 5 nothing usable (all NaN / -inf). */
static void make_row(float *x, int V, int dist, uint64_t seed) {
  mimo_rng r;
  mimo_rng_seed(&r, seed);
  for (int i = 0; i < V; i++) {
    double g = mimo_rng_normal(&r);
    x[i] = (float)(dist == 1 ? 4 * g : dist == 2 ? floor(2 * g) / 2 : dist == 3 ? 2 * g : g);
  }
  if (dist == 3)
    for (int i = 0; i < V; i += 97)
      x[i] = (i / 97) % 3 == 0 ? NAN : (i / 97) % 3 == 1 ? -INFINITY : (i % 5 == 0 ? INFINITY : x[i]);
  if (dist == 4 || dist == 5)
    for (int i = 0; i < V; i++)
      x[i] = i % 2 ? NAN : -INFINITY;
  if (dist == 4)
    x[V / 3] = 0.25f;
}

typedef struct {
  const char *name;
  mimo_sampling_params p;
  int prompt, accepts; /* history for the penalties */
} pcase;

static int make_cases(pcase *c, int V) {
  int n = 0;
  mimo_sampling_params d;
  mimo_sampling_defaults(&d);
#define ADD(nm, ...)                                   \
  do {                                                 \
    c[n] = (pcase){.name = nm, .p = d};                \
    mimo_sampling_params *p = &c[n].p;                 \
    __VA_ARGS__;                                       \
    (void)p;                                           \
    n++;                                               \
  } while (0)
  ADD("greedy", p->temperature = 0);
  ADD("t=1", p->temperature = 1);
  ADD("t=0.7 p=0.9", p->temperature = 0.7f; p->top_p = 0.9f);
  ADD("t=0.7 k=20", p->temperature = 0.7f; p->top_k = 20);
  ADD("t=1.3 k=5000 p=0.95 min_p=0.02", p->temperature = 1.3f; p->top_k = 5000; p->top_p = 0.95f; p->min_p = 0.02f);
  ADD("t=0.8 k>V p=0.5", p->temperature = 0.8f; p->top_k = V + 7; p->top_p = 0.5f);
  ADD("t=1 min_p=0.1", p->temperature = 1; p->min_p = 0.1f);
  ADD("t=1 k=1", p->temperature = 1; p->top_k = 1);
  ADD("t=1e-6 (greedy)", p->temperature = 1e-6f);
  ADD("greedy penalties", p->temperature = 0; p->repetition_penalty = 1.3f; p->presence_penalty = 0.5f;
      p->frequency_penalty = 0.2f; c[n].prompt = 300; c[n].accepts = 40);
  ADD("t=0.9 p=0.8 penalties", p->temperature = 0.9f; p->top_p = 0.8f; p->repetition_penalty = 0.8f;
      p->frequency_penalty = -0.3f; c[n].prompt = 50; c[n].accepts = 500);
  ADD("t=0.7 k=50 raw logprobs 20", p->temperature = 0.7f; p->top_k = 50; p->logprobs = 20);
  ADD("t=0.7 p=0.9 processed logprobs 5", p->temperature = 0.7f; p->top_p = 0.9f; p->logprobs = 5;
      p->processed_logprobs = true);
  ADD("greedy processed logprobs 3 penalties", p->temperature = 0; p->logprobs = 3; p->processed_logprobs = true;
      p->repetition_penalty = 1.5f; c[n].prompt = 100);
  ADD("t=1 raw logprobs 1 limit", p->temperature = 1; p->logprobs = 1; p->vocab_limit = V - V / 10);
  ADD("greedy limit", p->temperature = 0; p->vocab_limit = V / 2);
  /* at most 1024 candidates go through the compact path (shared memory), more through the full-row one */
  ADD("t=0.8 k=200 p=0.8 processed logprobs 8", p->temperature = 0.8f; p->top_k = 200; p->top_p = 0.8f;
      p->logprobs = 8; p->processed_logprobs = true);
  ADD("t=1 k=1024 p=0.99", p->temperature = 1; p->top_k = 1024; p->top_p = 0.99f);
  ADD("t=1 k=1025 p=0.99", p->temperature = 1; p->top_k = 1025; p->top_p = 0.99f);
  ADD("t=0.6 min_p=0.3 p=0.7", p->temperature = 0.6f; p->min_p = 0.3f; p->top_p = 0.7f);
  /* top-p a float step below 1: the mass target can fall past the fixed-point sums (the bin walks' "never met") */
  ADD("t=1 p=1-2^-23", p->temperature = 1; p->top_p = 1.0f - 0x1p-23f);
  ADD("t=2 p=1-2^-24 min_p=0.001", p->temperature = 2; p->top_p = 1.0f - 0x1p-24f; p->min_p = 0.001f);
#undef ADD
  return n;
}

static void history(mimo_sampler *s, const pcase *c, int V) {
  for (int i = 0; i < c->prompt; i++) {
    int t = (int)((i * 7919L + 3) % V);
    mimo_sampler_add_prompt(s, &t, 1);
  }
  for (int i = 0; i < c->accepts; i++)
    mimo_sampler_accept(s, (int)((i * 104729L + 11) % (V / 50 + 1)));
}

static int check(void) {
  mimo_backend *g;
  must(mimo_backend_cuda_init(&g, 0), "cuda backend");
  printf("device: %s\n", mimo_cuda_device_name(g));
  const int vocabs[2] = {1000, 152576};
  long draws = 0, sampled_draws = 0, mismatches = 0;
  /* blocks per row: chosen by the row count, one, and groups of 2 and 16 blocks (clusters on SM90; below SM90 and
   * in the compute_80 build every setting runs one block per row) */
  const int groups[4] = {0, 1, 2, 16};
  for (int gsel = 0; gsel < 4; gsel++)
  for (int vi = 0; vi < 2; vi++) {
    mimo_cuda_sample_group(groups[gsel]);
    const int V = vocabs[vi], R = V > 10000 ? 48 : 256;
    pcase cases[32];
    const int nc = make_cases(cases, V);
    float *row = xmalloc((size_t)V * sizeof *row), *rows = xmalloc((size_t)R * V * sizeof *rows);
    float *tmp = xmalloc((size_t)V * sizeof *tmp);
    float *d = g->alloc(g, (size_t)R * V);
    if (!d)
      must(MIMO_E_NOMEM, "device logits");
    mimo_sample_job *jobs = xmalloc((size_t)R * sizeof *jobs);
    mimo_sample_info *gi = xmalloc((size_t)R * sizeof *gi), *hi = xmalloc((size_t)R * sizeof *hi);
    int *gt = xmalloc((size_t)R * sizeof *gt), *ht = xmalloc((size_t)R * sizeof *ht);
    for (int dist = 0; dist < 6; dist++) {
      make_row(row, V, dist, 1000 + (uint64_t)dist + (uint64_t)V);
      for (int r = 0; r < R; r++)
        memcpy(rows + (size_t)r * V, row, (size_t)V * sizeof *row);
      for (int ci = 0; ci < nc; ci++) {
        const pcase *pc = &cases[ci];
        mimo_sampling_params p = pc->p;
        p.seed = 77 + (uint64_t)ci;
        mimo_sampler *hs, *js;
        must(mimo_sampler_init(&hs, &p, V), "sampler");
        must(mimo_sampler_init(&js, &p, V), "sampler");
        history(hs, pc, V);
        history(js, pc, V);
        for (int r = 0; r < R; r++) {
          memcpy(tmp, row, (size_t)V * sizeof *row);
          ht[r] = mimo_sampler_sample(hs, tmp, p.logprobs ? &hi[r] : NULL);
          mimo_sampler_job(js, &jobs[r]);
          jobs[r].skip = r % 17 == 5; /* skipped rows must come back as -1 and leave the others alone */
        }
        must(mimo_cuda_upload(g, d, rows, (size_t)R * V), "upload");
        mimo_status st = g->sample(g, d, R, V, jobs, gt, gi);
        if (st != MIMO_OK && dist < 5) {
          printf("FAIL %s V=%d dist %d group %d: %s\n", pc->name, V, dist, groups[gsel], mimo_errmsg());
          n_fail++;
          continue;
        }
        const bool greedy = p.temperature < 1e-5f;
        int bad = 0, mism = 0;
        double lp_err = 0;
        for (int r = 0; r < R; r++) {
          if (jobs[r].skip) {
            bad += gt[r] != -1;
            continue;
          }
          draws++;
          sampled_draws += !greedy;
          if (gt[r] != ht[r]) {
            if (greedy || ht[r] < 0 || gt[r] < 0)
              bad++;
            else
              mism++;
            continue;
          }
          if (p.logprobs && ht[r] >= 0) {
            if (gi[r].n_top != hi[r].n_top) {
              bad++;
              continue;
            }
            lp_err = fmax(lp_err, fabs(gi[r].logprob - hi[r].logprob));
            for (int t = 0; t < hi[r].n_top; t++) {
              bad += gi[r].top[t].token != hi[r].top[t].token;
              lp_err = fmax(lp_err, fabs(gi[r].top[t].logprob - hi[r].top[t].logprob));
            }
          }
        }
        mismatches += mism;
        const bool ok = bad == 0 && lp_err <= 2e-4 && mism * 20 <= R;
        if (!ok || getenv("MIMO_SAMPLE_CHECK_VERBOSE"))
          printf("%s %-40s V=%6d dist %d group %2d: %d wrong, %d boundary mismatches of %d, logprob err %.2e\n",
                 ok ? "ok  " : "FAIL", pc->name, V, dist, groups[gsel], bad, mism, R, lp_err);
        ok ? n_pass++ : n_fail++;
        mimo_sampler_free(hs);
        mimo_sampler_free(js);
      }
    }
    g->release(g, d);
    free(row), free(rows), free(tmp), free(jobs), free(gi), free(hi), free(gt), free(ht);
  }
  mimo_cuda_sample_group(0);
  const bool ok = mismatches * 500 <= sampled_draws;
  printf("%s sampled tokens differing from the host: %ld of %ld sampled draws (%ld draws in all)\n",
         ok ? "ok  " : "FAIL", mismatches, sampled_draws, draws);
  ok ? n_pass++ : n_fail++;
  printf("sample: %d passed, %d failed\n", n_pass, n_fail);
  g->free(g);
  return n_fail ? 1 : 0;
}

static int bench(void) {
  mimo_backend *g;
  must(mimo_backend_cuda_init(&g, 0), "cuda backend");
  printf("device: %s\n", mimo_cuda_device_name(g));
  const int V = 152576, batches[5] = {1, 8, 32, 64, 256};
  /* greedy; no filter (full-row passes, no selection); top-k above the compact path's 1024 (count radix);
   * top-k then top-p in shared memory; top-p on the whole row (mass radix) */
  const struct { const char *name; float t, p; int k; } ps[5] = {{"greedy", 0, 1, -1},
                                                                 {"t=1", 1, 1, -1},
                                                                 {"t=1 k=2000", 1, 1, 2000},
                                                                 {"t=0.7 k=50 p=0.9", 0.7f, 0.9f, 50},
                                                                 {"t=1 p=0.95", 1, 0.95f, -1}};
  float *rows = xmalloc((size_t)256 * V * sizeof *rows), *host = xmalloc((size_t)256 * V * sizeof *host);
  for (int r = 0; r < 256; r++)
    make_row(rows + (size_t)r * V, V, r % 2, 5000 + (uint64_t)r); /* flat and peaked rows alternate */
  float *d = g->alloc(g, (size_t)256 * V);
  if (!d)
    must(MIMO_E_NOMEM, "device logits");
  mimo_sample_job *jobs = xmalloc(256 * sizeof *jobs);
  int *tok = xmalloc(256 * sizeof *tok);
  for (int pi = 0; pi < 5; pi++) {
    mimo_sampling_params p;
    mimo_sampling_defaults(&p);
    p.temperature = ps[pi].t;
    p.top_p = ps[pi].p;
    p.top_k = ps[pi].k;
    mimo_sampler *s;
    must(mimo_sampler_init(&s, &p, V), "sampler");
    for (int bi = 0; bi < 5; bi++) {
      const int B = batches[bi], reps = 5;
      float dev_t[5], dl_t[5], host_t[5];
      for (int rep = 0; rep < reps; rep++) {
        must(mimo_cuda_upload(g, d, rows, (size_t)B * V), "upload");
        must(mimo_cuda_sync(g), "sync");
        for (int r = 0; r < B; r++)
          mimo_sampler_job(s, &jobs[r]);
        double t0 = mimo_now();
        must(g->sample(g, d, B, V, jobs, tok, NULL), "sample");
        dev_t[rep] = (float)((mimo_now() - t0) * 1e6);
        must(mimo_cuda_upload(g, d, rows, (size_t)B * V), "upload");
        must(mimo_cuda_sync(g), "sync");
        t0 = mimo_now();
        from_dev(g, host, d, (size_t)B * V);
        dl_t[rep] = (float)((mimo_now() - t0) * 1e6);
        t0 = mimo_now();
        for (int r = 0; r < B; r++)
          if (mimo_sampler_sample(s, host + (size_t)r * V, NULL) < 0)
            must(MIMO_E_INVALID, "host sample");
        host_t[rep] = (float)((mimo_now() - t0) * 1e6);
      }
      const float dv = median(dev_t, reps), dl = median(dl_t, reps), hs = median(host_t, reps);
      printf("BENCH sample %s, %d rows of %d: device %.1f us; logits download %.1f us + host sampler %.1f us "
             "(%.1fx)\n", ps[pi].name, B, V, dv, dl, hs, (dl + hs) / dv);
    }
    mimo_sampler_free(s);
  }
  g->release(g, d);
  free(rows), free(host), free(jobs), free(tok);
  g->free(g);
  return 0;
}

int cuda_sample_main(int argc, char **argv) {
  if (argc < 2 || (strcmp(argv[1], "check") && strcmp(argv[1], "bench"))) {
    fprintf(stderr, "usage: mimo_cuda_check sample check|bench\n");
    return 2;
  }
  if (mimo_cuda_device_count() == 0) {
    printf("no CUDA device: skipped\n");
    return 0;
  }
  return strcmp(argv[1], "check") == 0 ? check() : bench();
}
