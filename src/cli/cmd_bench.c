/* mimo bench: prefill and decode speed of the model, with decode's effective
 * bandwidth (weight + KV bytes touched per token / time) next to a memory-copy
 * bandwidth measured in the same run. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/args.h"
#include "cli/commands.h"
#include "cli/model_open.h"
#include "core/log.h"
#include "core/threads.h"
#include "engine/sampler.h"
#include "model/mimo_v2.h"
#ifdef MIMO_HAVE_CUDA
#include "backend/cuda/cuda_backend.h"
#endif

typedef struct {
  char *dst;
  const char *src;
  size_t bytes;
} copy_job;

static void copy_part(void *ctx, long b, long e) {
  copy_job *j = ctx;
  size_t chunk = j->bytes / 64;
  memcpy(j->dst + (size_t)b * chunk, j->src + (size_t)b * chunk, (size_t)(e - b) * chunk);
}

/* Multi-threaded memcpy of a buffer far larger than the caches; bytes read + written per second. */
static double copy_bandwidth(mimo_pool *pool) {
  size_t bytes = (size_t)1 << 30;
  char *a = malloc(bytes), *b = malloc(bytes);
  if (!a || !b) {
    free(a);
    free(b);
    return 0;
  }
  memset(a, 1, bytes);
  memset(b, 2, bytes);
  copy_job j = {b, a, bytes};
  double best = 1e30;
  for (int r = 0; r < 5; r++) {
    double t0 = mimo_now();
    mimo_parallel_for(pool, 64, 1, copy_part, &j);
    double dt = mimo_now() - t0;
    best = dt < best ? dt : best;
  }
  free(a);
  free(b);
  return 2.0 * bytes / best;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* the median of n values (sorts them) */
static double median_sorted(double *v, int n) {
  qsort(v, (size_t)n, sizeof *v, cmp_double);
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* Resident set size in bytes (Linux). */
static double rss_bytes(void) {
  FILE *f = fopen("/proc/self/statm", "r");
  long pages = 0, res = 0;
  if (f) {
    if (fscanf(f, "%ld %ld", &pages, &res) != 2)
      res = 0;
    fclose(f);
  }
  return (double)res * 4096;
}


/* Weight bytes one decode token reads: everything but the embedding table (one
 * row) and the experts not chosen (top_k of n_experts per MoE layer). */
static double decode_weight_bytes(const mimo_model *m) {
  const mimo_config *c = &m->cfg;
  double b = (double)c->hidden_size * mimo_dtype_size(m->w.embed.dt) + mimo_linear_bytes(&m->w.lm_head);
  for (int L = 0; L < c->num_hidden_layers; L++) {
    const mimo_layer_weights *lw = &m->w.layers[L];
    b += lw->fused_qkv ? mimo_linear_bytes(&lw->qkv) : mimo_linear_bytes(&lw->q) + mimo_linear_bytes(&lw->k) + mimo_linear_bytes(&lw->v);
    b += mimo_linear_bytes(&lw->o);
    if (!lw->moe) {
      b += mimo_linear_bytes(&lw->gate) + mimo_linear_bytes(&lw->up) + mimo_linear_bytes(&lw->down);
    } else {
      b += mimo_linear_bytes(&lw->router);
      b += (double)c->num_experts_per_tok *
           (mimo_linear_bytes(&lw->experts[0]) + mimo_linear_bytes(&lw->experts[1]) + mimo_linear_bytes(&lw->experts[2]));
    }
  }
  return b;
}

/* Seconds per lm_head GEMV at one token, n back to back (< 0: not measured). The lm_head streams at ~100 % of
 * the copy bandwidth while a layer's many small kernels do not, so the step's ratio alone flatters the layers:
 * the per-layer figure takes it out (issue 5's goal is per layer). */
static double lm_head_seconds(const mimo_model *m, mimo_backend *be, int n) {
  const int H = m->cfg.hidden_size, V = m->w.lm_head.out;
  float *x = be->alloc(be, (size_t)H), *y = be->alloc(be, (size_t)V), *zeros = calloc((size_t)H, sizeof(float)),
        host = 0;
  double t = -1;
  if (x && y && zeros) {
    mimo_status st = MIMO_OK;
    if (be->upload)
      st = be->upload(be, x, zeros, (size_t)H);
    else
      memcpy(x, zeros, (size_t)H * sizeof(float)); /* a host backend's scratch is host memory */
    if (st == MIMO_OK) {
      be->linear(be, y, x, 1, &m->w.lm_head); /* once untimed */
      st = be->download ? be->download(be, &host, y, 1) : MIMO_OK;
    }
    const double t0 = mimo_now();
    for (int i = 0; st == MIMO_OK && i < n; i++)
      be->linear(be, y, x, 1, &m->w.lm_head);
    if (st == MIMO_OK && be->download)
      st = be->download(be, &host, y, 1);
    if (st == MIMO_OK)
      t = (mimo_now() - t0) / n;
  }
  free(zeros);
  if (x)
    be->release(be, x);
  if (y)
    be->release(be, y);
  return t;
}

static double kv_read_bytes(const mimo_model *m, int len) {
  const mimo_config *c = &m->cfg;
  double b = 0;
  for (int L = 0; L < c->num_hidden_layers; L++) {
    const mimo_attn_geom *g = mimo_config_geom(c, L);
    int keys = g->window > 0 && g->window < len ? g->window : len;
    b += (double)keys * g->n_kv_heads * (g->head_dim + g->v_head_dim) * sizeof(float);
  }
  return b;
}

/* Sequence i's prompt: n token ids spread over the vocabulary, different for each sequence. */
static void prompt_ids(int *ids, int n, int i, int vocab) {
  for (int t = 0; t < n; t++)
    ids[t] = (int)(((long long)t * 7919 + 13 + (long long)i * 104729) % vocab);
}

int mimo_cmd_bench(int argc, char **argv) {
  mimo_arg a[] = {{"model", 1, "checkpoint directory", 0},
                  {"prompt", 1, "prefill tokens (default 128)", 0}, {"decode", 1, "decode tokens (default 32)", 0},
                  {"batch", 1, "sequences decoded together (default 1; each gets its own prompt first)", 0},
                  {"chunk", 1, "prompt tokens per prefill step (default: the whole prompt in one step)", 0},
                  {"temperature", 1, "decode steps sample each sequence's next token (default 0: greedy)", 0},
                  {"top-p", 1, "and keep this much mass (default 1)", 0},
                  {"top-k", 1, "and keep this many tokens (default off)", 0},
                  {"tokens-out", 1, "write each decode step's sampled tokens to FILE (one line per step)", 0},
                  {"no-prefill-warmup", 0,
                   "time the first prompt cold (default: one untimed forward of its first chunk on a scratch "
                   "sequence first, as a server's warm-up does)",
                   0},
                  MIMO_OPEN_ARGS};
  int n = sizeof a / sizeof *a, rc = mimo_args_parse(argc, argv, a, n, "--model DIR [--threads N]");
  if (rc)
    return rc == 3 ? 0 : rc;
  bool bad = false;
  const char *dir = mimo_arg_str(a, n, "model", NULL);
  int P = (int)mimo_arg_long(a, n, "prompt", 128, &bad), D = (int)mimo_arg_long(a, n, "decode", 32, &bad),
      B = (int)mimo_arg_long(a, n, "batch", 1, &bad), chunk = (int)mimo_arg_long(a, n, "chunk", 0, &bad);
  mimo_sampling_params sp;
  mimo_sampling_defaults(&sp);
  sp.temperature = (float)mimo_arg_double(a, n, "temperature", 0, &bad);
  sp.top_p = (float)mimo_arg_double(a, n, "top-p", 1, &bad);
  sp.top_k = (int)mimo_arg_long(a, n, "top-k", -1, &bad);
  const char *tokens_out = mimo_arg_str(a, n, "tokens-out", NULL);
  const bool prefill_warmup = !mimo_arg_str(a, n, "no-prefill-warmup", NULL);
  mimo_open_opts o;
  /* the value at fault, named (the number parsers and mimo_open_parse name theirs) */
  const char *why = !dir                   ? "need --model DIR"
                    : P < 1                ? "--prompt must be at least 1"
                    : D < 1                ? "--decode must be at least 1"
                    : B < 1 || B > 4096    ? "--batch must be 1 to 4096"
                    : chunk < 0            ? "--chunk must not be negative"
                                           : NULL;
  if (why && !bad)
    fprintf(stderr, "mimo bench: %s (see --help)\n", why);
  if (bad || why || !mimo_open_parse(a, n, dir, &o))
    return 2;
  const int threads = o.threads, tp = o.tp;
  mimo_model *m = NULL;
  mimo_kv_seq **seqs = NULL;
  float *logits = NULL;
  int *ids = NULL, *ntok = NULL;
  mimo_sampler **smp = NULL;
  mimo_sample_job *jobs = NULL;
  double *step_s = NULL, *gpu_s = NULL; /* gpu_s: MIMO_BENCH_GPU_SPAN, below */
  const char *bname = mimo_open_backend_name(o.backend);
  int gpu = strcmp(bname, "cuda") == 0;
  double tl = mimo_now();
  mimo_status st = mimo_open_model(&o, &m);
  if (st == MIMO_OK && mimo_open_is_worker(&o)) { /* node 0 runs the benchmark; this node follows it */
    st = mimo_model_run_worker(m);
    if (st != MIMO_OK)
      fprintf(stderr, "mimo bench: %s\n", mimo_errmsg());
    mimo_model_free(m);
    return st == MIMO_OK ? 0 : 1;
  }
  tl = mimo_now() - tl;
  if (st == MIMO_OK && (!(logits = malloc((size_t)B * m->cfg.vocab_size * sizeof(float))) ||
                        !(ids = malloc((size_t)(P > B ? P : B) * sizeof *ids)) || !(ntok = malloc((size_t)B * sizeof *ntok)) ||
                        !(step_s = malloc((size_t)D * sizeof *step_s)) ||
                        !(seqs = calloc((size_t)B, sizeof *seqs)) || !(smp = calloc((size_t)B, sizeof *smp)) ||
                        !(jobs = calloc((size_t)B, sizeof *jobs))))
    st = mimo_errf(MIMO_E_NOMEM, "bench buffers");
  for (int i = 0; st == MIMO_OK && i < B; i++)
    st = mimo_kv_seq_init(&seqs[i], &m->cfg);
  for (int i = 0; st == MIMO_OK && i < B; i++) {
    sp.seed = (uint64_t)i;
    st = mimo_sampler_init(&smp[i], &sp, m->cfg.vocab_size);
  }
  if (st != MIMO_OK) {
    fprintf(stderr, "mimo bench: %s\n", mimo_errmsg());
    goto out;
  }
  mimo_pool *pool = NULL;
  if ((st = mimo_pool_init(&pool, threads)) != MIMO_OK) {
    fprintf(stderr, "mimo bench: %s\n", mimo_errmsg());
    goto out;
  }
  mimo_backend *be0 = mimo_model_backend(m, 0);
  double rss_load = rss_bytes();
  double copy_bw = 0;
#ifdef MIMO_HAVE_CUDA
  if (gpu) /* every rank's card is alike: the roofline is the sum over ranks */
    copy_bw = mimo_cuda_copy_bandwidth(be0, (size_t)1 << 31) * (tp > 1 ? tp : 1);
#endif
  if (!gpu) {
    copy_bw = copy_bandwidth(pool);
    /* Fault every weight page in first: steady-state decode, not first-touch page faults. */
    double tw = mimo_now();
    volatile unsigned char sink = 0;
    for (int f = 0; f < m->ck.n_files; f++)
      for (size_t off = 0; off < m->ck.files[f].size; off += 4096)
        sink ^= ((const unsigned char *)m->ck.files[f].map)[off];
    (void)sink;
    mimo_info("bench: touched %.2f GB of weights in %.2f s", m->ck.total_bytes / 1e9, mimo_now() - tw);
  }
  /* The first forward of a size loads kernels and grows scratch (tens of ms on a GPU): run the first chunk once,
   * untimed, on a scratch sequence whose KV goes back before the timed prompts. */
  double warm = -1;
  const int first_chunk = chunk && chunk < P ? chunk : P;
  if (st == MIMO_OK && prefill_warmup) {
    mimo_kv_seq *ws = NULL;
    prompt_ids(ids, first_chunk, 0, m->cfg.vocab_size);
    double t0 = mimo_now();
    st = mimo_kv_seq_init(&ws, &m->cfg);
    if (st == MIMO_OK) {
      int k = first_chunk;
      mimo_batch b = {.n_seqs = 1, .seqs = &ws, .n_tokens = &k, .tokens = ids};
      st = mimo_model_forward(m, &b, logits);
    }
    warm = mimo_now() - t0;
    mimo_kv_seq_free(ws);
  }
  double prefill = 0;
  for (int i = 0; st == MIMO_OK && i < B; i++) {
    prompt_ids(ids, P, i, m->cfg.vocab_size);
    double t0 = mimo_now();
    for (int at = 0; st == MIMO_OK && at < P;) { /* long prompts in chunks, as the server's scheduler feeds them */
      int k = chunk && P - at > chunk ? chunk : P - at;
      mimo_batch b = {.n_seqs = 1, .seqs = &seqs[i], .n_tokens = &k, .tokens = ids + at};
      st = mimo_model_forward(m, &b, logits);
      at += k;
    }
    prefill += mimo_now() - t0;
  }
  double dec = 0, bytes = 0;
  for (int i = 0; i < B; i++) {
    ids[i] = (i * 31 + 7) % m->cfg.vocab_size;
    ntok[i] = 1;
  }
  /* Each step samples every sequence's next token as the server does (on the device when it can) and feeds it.
   * Step -1 is untimed but reported: the first step at a batch size loads kernels and library set-ups that a
   * server's warm-up pays before its first request. */
  double first = 0;
  FILE *tok_f = NULL;
  /* MIMO_BENCH_GPU_SPAN=1 (one GPU): each step's span on the GPU's clock, from the host queueing its first op to the
   * end of its last, beside the host's step time; the difference is host time the GPU sat idle outside the span
   * (waking from the step's final wait, sampling bookkeeping). Off by default: the event pair costs the step ~1 µs. */
  const char *span_env = getenv("MIMO_BENCH_GPU_SPAN");
  const int gpu_span = gpu && tp == 1 && span_env && !strcmp(span_env, "1");
  if (gpu_span && !(gpu_s = calloc((size_t)D, sizeof *gpu_s)))
    st = mimo_errf(MIMO_E_NOMEM, "bench: out of memory");
  if (st == MIMO_OK && tokens_out && !(tok_f = fopen(tokens_out, "w")))
    st = mimo_errf(MIMO_E_IO, "--tokens-out %s: cannot write", tokens_out);
  for (int s = -1; st == MIMO_OK && s < D; s++) {
    mimo_batch d = {.n_seqs = B, .seqs = seqs, .n_tokens = ntok, .tokens = ids, .jobs = jobs, .sampled = ids};
    if (B == 1 && s >= 0)
      bytes += decode_weight_bytes(m) + kv_read_bytes(m, seqs[0]->len + 1);
    double t1 = mimo_now();
    for (int i = 0; i < B; i++)
      mimo_sampler_job(smp[i], &jobs[i]);
#ifdef MIMO_HAVE_CUDA
    if (gpu_s)
      mimo_cuda_timer_start(be0);
#endif
    st = mimo_model_forward(m, &d, NULL);
#ifdef MIMO_HAVE_CUDA
    if (gpu_s && s >= 0)
      gpu_s[s] = 1e-3 * mimo_cuda_timer_stop(be0);
#endif
    for (int i = 0; st == MIMO_OK && i < B; i++)
      if (ids[i] < 0)
        st = MIMO_E_INVALID; /* the sampler said why */
      else
        mimo_sampler_accept(smp[i], ids[i]);
    if (s < 0) {
      first = mimo_now() - t1;
    } else {
      step_s[s] = mimo_now() - t1;
      dec += step_s[s];
    }
    for (int i = 0; st == MIMO_OK && tok_f && i < B; i++)
      fprintf(tok_f, "%d%c", ids[i], i + 1 < B ? ' ' : '\n');
  }
  if (tok_f && fclose(tok_f) != 0 && st == MIMO_OK)
    st = mimo_errf(MIMO_E_IO, "--tokens-out %s: write failed", tokens_out);
  if (st != MIMO_OK) {
    fprintf(stderr, "mimo bench: %s\n", mimo_errmsg());
    goto out;
  }
  printf("model %s, %d threads, backend %s x %d%s, load %.2f s\n", dir, mimo_pool_size(pool), be0->name, tp,
         o.ep ? " (expert parallel)" : "", tl);
#ifdef MIMO_HAVE_CUDA
  if (gpu)
    printf("device %s\n", mimo_cuda_device_name(be0));
#endif
  size_t kvb = 0;
  for (int i = 0; i < B; i++)
    kvb += mimo_kv_bytes(seqs[i]);
  printf("RSS after load %.1f MB; after the run %.1f MB (weights mapped %.1f MB, KV %.1f MB)\n", rss_load / 1e6,
         rss_bytes() / 1e6, m->ck.total_bytes / 1e6, kvb / 1e6);
  printf("%s bandwidth (read+write%s): %.2f GB/s\n", gpu ? "device copy" : "memcpy", tp > 1 ? ", summed over ranks" : "",
         copy_bw / 1e9);
  printf("decode sampling: %s, %s\n", mimo_model_samples_on_device(m) ? "on the device" : "on the host",
         sp.temperature > 0 ? "temperature/top-p/top-k as given" : "greedy");
#ifdef MIMO_HAVE_CUDA
  if (gpu && tp == 1) {
    const mimo_cuda_graph_stats g = mimo_cuda_graph_stats_of(be0);
    printf("decode CUDA graphs: %s; %ld layer graphs launched, %ld updated in place (%.1f us each on the host), %ld "
           "made (%.0f us each), %ld updates refused, %ld nodes in the last; %ld layers of a new shape's first step as "
           "issued, %ld failed captures\n",
           m->eager                      ? "off (--enforce-eager)"
           : mimo_cuda_graphs_used(be0)  ? "on"
                                         : "off (MIMO_CUDA_GRAPHS=0)",
           g.launches, g.updates, g.updates ? 1e3 * g.update_ms / (g.updates + g.update_misses) : 0.0,
           g.instantiated, g.instantiated ? 1e3 * g.instantiate_ms / g.instantiated : 0.0, g.update_misses,
           g.last_nodes, g.uncaptured, g.failures);
  }
#endif
  if (warm >= 0)
    printf("warm-up forward: %d tokens in %.3f s (untimed, on a scratch sequence)\n", first_chunk, warm);
  printf("prefill: %d x %d tokens%s in %.3f s = %.1f tokens/s\n", B, P, chunk && chunk < P ? " (chunked)" : "", prefill,
         (double)B * P / prefill);
  /* The median step beside the mean: a step that grows the KV cache shows as their gap. */
  const double med = median_sorted(step_s, D);
  printf("decode first step %.3f ms (untimed warm-up)\n", 1e3 * first);
  if (B > 1) {
    printf("decode batch %d: %d steps in %.3f s = %.1f tokens/s (%.3f ms per step, median %.3f ms)\n", B, D, dec,
           (double)B * D / dec, 1e3 * dec / D, 1e3 * med);
  } else {
    printf("decode: %d tokens in %.3f s = %.2f tokens/s, %.1f MB touched per token\n", D, dec, D / dec,
           bytes / D / 1e6);
    printf("decode effective bandwidth: %.2f GB/s = %.0f%% of %s\n", bytes / dec / 1e9, 100.0 * bytes / dec / copy_bw,
           gpu ? "device copy" : "memcpy");
    int nl = m->cfg.num_hidden_layers;
    printf("decode step %.3f ms = %.3f ms per layer; bytes/copy bandwidth %.3f ms per layer; ratio %.2fx\n",
           1e3 * dec / D, 1e3 * dec / D / nl, 1e3 * bytes / D / copy_bw / nl, dec / (bytes / copy_bw));
    printf("decode step median %.3f ms, ratio %.2fx\n", 1e3 * med, med * D / (bytes / copy_bw));
    if (gpu_s) {
      const double gm = median_sorted(gpu_s, D);
      printf("decode step on the GPU's clock (MIMO_BENCH_GPU_SPAN): median %.3f ms, %.1f us of the step outside it\n",
             1e3 * gm, 1e6 * (med - gm));
    }
    const double tl = tp > 1 ? -1 : lm_head_seconds(m, be0, 20);
    if (tl > 0) {
      const double lb = mimo_linear_bytes(&m->w.lm_head), layer_b = bytes / D - lb;
      printf("decode layers without the lm_head (%.3f ms, %.0f%% of copy): %.3f ms per layer, bytes/copy bandwidth "
             "%.3f ms per layer, ratio %.2fx\n",
             1e3 * tl, 100.0 * lb / tl / copy_bw, 1e3 * (med - tl) / nl, 1e3 * layer_b / copy_bw / nl,
             (med - tl) / (layer_b / copy_bw));
    }
  }
  mimo_pool_free(pool);
out:
  free(gpu_s);
  free(ids);
  free(ntok);
  free(step_s);
  free(logits);
  for (int i = 0; smp && i < B; i++)
    mimo_sampler_free(smp[i]);
  free(smp);
  free(jobs);
  for (int i = 0; seqs && i < B; i++)
    mimo_kv_seq_free(seqs[i]);
  free(seqs);
  mimo_model_free(m);
  return st == MIMO_OK ? 0 : 1;
}
