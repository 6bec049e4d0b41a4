/* Decode steps as CUDA graphs against the same steps launched as issued (mimo_cuda_check graphs check DIR).
 *
 * One scripted schedule of a serving engine's steps on a synthetic checkpoint: prompts arriving while others
 * decode (mixed steps, which run as issued), sequences finishing (the batch shrinks, so the step shape changes),
 * and one sequence decoding past several KV blocks (new block-table entries between captured steps, and the
 * split-KV decode's split count and temporaries growing while graphs replay). The schedule runs twice on one
 * loaded model, graphs off then on, with a float32 and with a bf16 KV cache; every step's logits must be bitwise
 * the same (the graph holds the same kernels with the same arguments), and the graphed run must have replayed
 * steps without a failed capture. Greedy tokens (argmax on the host) are fed back, so the two runs' inputs agree
 * only as long as their logits do. */
#include "cuda_common.h"
#include "engine/kv_cache.h"
#include "model/mimo_v2.h"

enum { GS = 6, STEPS = 170 };

typedef struct {
  mimo_kv_seq *seq[GS];
  int next[GS];       /* next input token of a decoding sequence */
  int start[GS];      /* step it arrives at */
  int stop[GS];       /* step after which it finishes */
  int prompt[GS];     /* prompt length */
} sched;

static int argmax(const float *x, int n) {
  int b = 0;
  for (int i = 1; i < n; i++)
    if (x[i] > x[b])
      b = i;
  return b;
}

/* Runs the schedule; every step's logits (rows of the sequences in it, in order) appended to out. Returns the
 * number of floats written, or -1 on a failed step. */
static long run(mimo_model *m, float *out, long cap) {
  const int V = m->cfg.vocab_size;
  sched s;
  memset(&s, 0, sizeof s);
  for (int i = 0; i < GS; i++) {
    s.start[i] = i < 2 ? 0 : 3 + 17 * i; /* two at once, then one every 17 steps */
    s.stop[i] = i == 0 ? STEPS : s.start[i] + 20 + 9 * i;
    s.prompt[i] = 5 + 3 * i;
  }
  long n = 0;
  int toks[GS * 32], ntok[GS], rows[GS];
  mimo_kv_seq *seqs[GS];
  for (int step = 0; step < STEPS; step++) {
    int ns = 0, T = 0;
    for (int i = 0; i < GS; i++) {
      if (step < s.start[i] || step > s.stop[i])
        continue;
      if (step == s.start[i]) {
        if (mimo_kv_seq_init(&s.seq[i], &m->cfg) != MIMO_OK)
          return -1;
        for (int t = 0; t < s.prompt[i]; t++)
          toks[T++] = (i * 37 + t * 11 + 3) % V;
        ntok[ns] = s.prompt[i];
      } else {
        toks[T++] = s.next[i];
        ntok[ns] = 1;
      }
      rows[ns] = i;
      seqs[ns++] = s.seq[i];
    }
    if (!ns)
      continue;
    if (n + (long)ns * V > cap)
      return -1;
    mimo_batch b = {.n_seqs = ns, .seqs = seqs, .n_tokens = ntok, .tokens = toks};
    if (mimo_model_forward(m, &b, out + n) != MIMO_OK) {
      fprintf(stderr, "step %d: %s\n", step, mimo_errmsg());
      return -1;
    }
    for (int j = 0; j < ns; j++) {
      const int i = rows[j];
      s.next[i] = argmax(out + n + (size_t)j * V, V);
      if (step == s.stop[i]) {
        mimo_kv_seq_free(s.seq[i]);
        s.seq[i] = NULL;
      }
    }
    n += (long)ns * V;
  }
  for (int i = 0; i < GS; i++)
    mimo_kv_seq_free(s.seq[i]);
  return n;
}

int cuda_graph_main(int argc, char **argv) {
  if (argc < 3 || strcmp(argv[1], "check") != 0) {
    fprintf(stderr, "usage: mimo_cuda_check graphs check MODEL_DIR\n");
    return 2;
  }
  mimo_backend *be;
  must(mimo_backend_cuda_init(&be, 0), "cuda backend");
  int pass = 0, fail = 0;
  for (int bf = 0; bf < 2; bf++) {
    mimo_model *m; /* the cache type is set before a model's first step */
    must(mimo_model_load(argv[2], be, &m), argv[2]);
    must(mimo_model_set_kv_bf16(m, bf), "kv dtype");
    const long cap = (long)STEPS * GS * m->cfg.vocab_size;
    float *eager = xmalloc((size_t)cap * sizeof *eager), *graph = xmalloc((size_t)cap * sizeof *graph);
    const int mode = mimo_cuda_graphs_mode(0);
    const long ne = run(m, eager, cap);
    mimo_cuda_graphs_mode(1);
    const mimo_cuda_graph_stats g0 = mimo_cuda_graph_stats_of(be);
    const long ng = run(m, graph, cap);
    const mimo_cuda_graph_stats g1 = mimo_cuda_graph_stats_of(be);
    mimo_cuda_graphs_mode(mode);
    long diff = 0;
    for (long i = 0; ne > 0 && ne == ng && i < ne; i++)
      diff += memcmp(&eager[i], &graph[i], sizeof *eager) != 0;
    const long launched = g1.launches - g0.launches, made = g1.instantiated - g0.instantiated,
               failed = g1.failures - g0.failures;
    const bool ok = ne > 0 && ne == ng && diff == 0 && launched > 0 && failed == 0;
    printf("%s graphs %s KV: %ld logits, %ld differ from launches as issued; %ld layer graphs launched, %ld updated "
           "(%ld refused), %ld made (%.0f us each), %ld nodes in the last, %ld failed captures\n",
           ok ? "ok  " : "FAIL", bf ? "bf16" : "float32", ne, diff, launched, g1.updates - g0.updates,
           g1.update_misses - g0.update_misses, made,
           made ? 1e3 * (g1.instantiate_ms - g0.instantiate_ms) / made : 0.0, g1.last_nodes, failed);
    ok ? pass++ : fail++;
    free(eager);
    free(graph);
    mimo_model_free(m);
  }
  be->free(be);
  printf("graphs: %d passed, %d failed\n", pass, fail);
  return fail ? 1 : 0;
}
