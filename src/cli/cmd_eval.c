/* mimo perplexity: perplexity of a checkpoint over a text (or token ids), and the KL divergence of its next-token
 * distributions from a base run's (another checkpoint, backend, KV cache type or quantisation), in the protocol of
 * quant/eval.h. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/args.h"
#include "cli/commands.h"
#include "cli/model_open.h"
#include "core/log.h"
#include "core/threads.h"
#include "quant/eval.h"

static int fail(const char *what) {
  fprintf(stderr, "mimo perplexity: %s\n", what);
  return 1;
}

static void print_estimate(const char *label, mimo_estimate e, double scale, const char *unit) {
  printf("%-30s: %.6g ± %.3g%s\n", label, e.mean * scale, e.err * scale, unit);
}

/* A chunk's scored positions, scored on a pool of threads and added in order. A base row in memory is `bw` 32-bit
 * words: the whole row of float32 log-probabilities, or (top > 0) the next token's and `top` (id, log-probability)
 * pairs, as in the file. */
typedef struct {
  const float *logits;   /* the chunk's rows [ctx][V] */
  const int *chunk;      /* its tokens */
  int V, top, first, bw; /* first: the first scored position */
  const uint32_t *base_in; /* [scored][bw] or NULL */
  uint32_t *base_out;      /* [scored][bw] or NULL */
  mimo_eval_row *rows;     /* [scored] */
  mimo_status *st;         /* [scored]: a row's outcome; its message is made again on the main thread */
} chunk_job;

/* Row i: log-softmax, the base row it is compared with (normalised again when whole: the file's float32 rounding
 * would otherwise add a first-order term to the KL, ~1e-8 for a run against itself instead of ~1e-13) and the
 * row written for a later comparison. lp, base: V doubles; tid, tlp: top entries. */
static mimo_status score_row(const chunk_job *j, int i, double *lp, double *base, int *tid, double *tlp) {
  const int V = j->V, top = j->top, pos = j->first + i, next = j->chunk[pos + 1];
  MIMO_TRY(mimo_log_softmax(j->logits + (size_t)pos * V, V, lp, NULL));
  mimo_base_top bt = {0};
  const uint32_t *in = j->base_in ? j->base_in + (size_t)i * j->bw : NULL;
  if (in && !top)
    MIMO_TRY(mimo_log_softmax((const float *)in, V, base, NULL));
  if (in && top) {
    for (int k = 0; k < top; k++) {
      const uint32_t id = in[1 + 2 * k];
      float l;
      memcpy(&l, &in[2 + 2 * k], sizeof l);
      if (!(l <= 0)) /* a log-probability; NaN fails too */
        return mimo_errf(MIMO_E_FORMAT, "entry %d is not a log-probability", k);
      tid[k] = id >= (uint32_t)V ? -1 : (int)id; /* refused by mimo_eval_score */
      tlp[k] = l;
    }
    float ln;
    memcpy(&ln, &in[0], sizeof ln);
    bt = (mimo_base_top){.k = top, .id = tid, .lp = tlp, .lp_next = ln};
  }
  if (j->base_out) {
    uint32_t *out = j->base_out + (size_t)i * j->bw;
    if (!top) {
      for (int v = 0; v < V; v++) {
        const float f = (float)lp[v];
        memcpy(&out[v], &f, sizeof f);
      }
    } else {
      mimo_top_entries(lp, V, top, tid, tlp);
      const float ln = (float)lp[next];
      memcpy(&out[0], &ln, sizeof ln);
      for (int k = 0; k < top; k++) {
        const float l = (float)tlp[k];
        out[1 + 2 * k] = (uint32_t)tid[k];
        memcpy(&out[2 + 2 * k], &l, sizeof l);
      }
    }
  }
  return mimo_eval_score(lp, V, next, in && !top ? base : NULL, in && top ? &bt : NULL, &j->rows[i]);
}

static void score_rows(void *ctx, long begin, long end) {
  const chunk_job *j = ctx;
  const int k = j->top ? j->top : 1;
  double *lp = malloc((size_t)j->V * sizeof *lp), *base = malloc((size_t)j->V * sizeof *base);
  double *tlp = malloc((size_t)k * sizeof *tlp);
  int *tid = malloc((size_t)k * sizeof *tid);
  for (long i = begin; i < end; i++)
    j->st[i] = lp && base && tid && tlp ? score_row(j, (int)i, lp, base, tid, tlp)
                                        : mimo_errf(MIMO_E_NOMEM, "scratch of %d log-probabilities", j->V);
  free(lp), free(base), free(tlp), free(tid);
}

/* Evaluates every chunk: logits, then its scored positions on the pool (the base rows read before, written after,
 * in order), and their statistics added in order. */
static mimo_status run(mimo_runner *r, const int *ids, const mimo_kl_header *h, int feed, FILE *base_in,
                       const char *base_in_path, FILE *base_out, const char *base_out_path, mimo_eval *e) {
  const int V = (int)h->vocab, ctx = (int)h->ctx, top = (int)h->top, first = (int)h->score_from;
  const int n = ctx - 1 - first, bw = top ? 1 + 2 * top : V;
  mimo_pool *pool = NULL;
  if (mimo_pool_init(&pool, 0) != MIMO_OK)
    pool = NULL; /* one thread then */
  float *logits = malloc((size_t)ctx * V * sizeof *logits);
  uint32_t *rows_in = base_in ? malloc((size_t)n * bw * sizeof *rows_in) : NULL;
  uint32_t *rows_out = base_out ? malloc((size_t)n * bw * sizeof *rows_out) : NULL;
  mimo_eval_row *rows = malloc((size_t)n * sizeof *rows);
  mimo_status *sts = malloc((size_t)n * sizeof *sts);
  mimo_status st = logits && rows && sts && (!base_in || rows_in) && (!base_out || rows_out)
                       ? MIMO_OK
                       : mimo_errf(MIMO_E_NOMEM, "logits of a %d-token chunk", ctx);
  for (uint32_t c = 0; st == MIMO_OK && c < h->chunks; c++) {
    const int *chunk = ids + (size_t)c * ctx;
    const double t0 = mimo_now();
    if (c > 0)
      st = mimo_runner_restart(r); /* every chunk from an empty cache */
    if (st == MIMO_OK)
      st = mimo_runner_feed(r, chunk, ctx, feed, logits, NULL);
    for (int i = 0; st == MIMO_OK && base_in && i < n; i++)
      if (fread(rows_in + (size_t)i * bw, 4, (size_t)bw, base_in) != (size_t)bw)
        st = mimo_errf(MIMO_E_FORMAT, "%s: cut short at chunk %u, position %d", base_in_path, c + 1, first + i);
    if (st != MIMO_OK)
      break;
    chunk_job job = {logits, chunk, V, top, first, bw, rows_in, rows_out, rows, sts};
    if (pool)
      mimo_parallel_for(pool, n, 1, score_rows, &job);
    else
      score_rows(&job, 0, n);
    for (int i = 0; st == MIMO_OK && i < n; i++) {
      if (sts[i] != MIMO_OK) { /* the message stayed on the worker's thread: score the row again on this one */
        score_rows(&job, i, i + 1);
        char why[512];
        snprintf(why, sizeof why, "%s", mimo_errmsg()); /* mimo_errf writes where mimo_errmsg points */
        st = mimo_errf(sts[i], "%s%schunk %u, position %d: %s", base_in ? base_in_path : "", base_in ? ": " : "",
                       c + 1, first + i, why);
        break;
      }
      st = mimo_eval_push(e, &rows[i]);
    }
    if (st == MIMO_OK && base_out && fwrite(rows_out, 4, (size_t)n * bw, base_out) != (size_t)n * bw)
      st = mimo_errf(MIMO_E_IO, "%s: cannot write", base_out_path);
    if (st == MIMO_OK) {
      printf("[%u]%.4f%s", c + 1, mimo_eval_ppl(e).mean, c + 1 == h->chunks ? "\n" : ",");
      fflush(stdout);
      mimo_info("perplexity: chunk %u of %u in %.2f s", c + 1, h->chunks, mimo_now() - t0);
    }
  }
  if (st == MIMO_OK && base_in && fgetc(base_in) != EOF)
    st = mimo_errf(MIMO_E_FORMAT, "%s: longer than this run's %ld scored positions", base_in_path, e->n);
  free(logits), free(rows_in), free(rows_out), free(rows), free(sts);
  mimo_pool_free(pool);
  return st;
}

int mimo_cmd_perplexity(int argc, char **argv) {
  mimo_arg a[] = {{"model", 1, "checkpoint directory", 0},
                  {"file", 1, "text to evaluate (tokenized with the checkpoint's tokenizer, no special tokens added)", 0},
                  {"tokens", 1, "token ids to evaluate instead of --file, comma-separated", 0},
                  {"ctx", 1, "tokens per chunk; each chunk starts from an empty cache (default 512)", 0},
                  {"score-from", 1, "first scored position of a chunk: each scored token has at least this much context "
                                    "(default ctx/2)", 0},
                  {"chunks", 1, "evaluate at most this many chunks (default: every whole chunk)", 0},
                  {"chunk", 1, "tokens fed per forward step through the KV cache (default: the whole chunk)", 0},
                  {"kl-base-out", 1, "write this run's log-probabilities of the scored positions to FILE (a base run: "
                                     "vocab x 4 bytes per scored token)", 0},
                  {"kl-top", 1, "with --kl-base-out: keep only each position's K most likely tokens (8 K + 4 bytes "
                               "instead of vocab x 4; the KL then lumps the rest into one bucket: a lower bound)", 0},
                  {"kl-base", 1, "compare with a base run's FILE: KL divergence, top-token agreement, PPL ratio", 0},
                  MIMO_OPEN_ARGS,
                  {"verbose", 0, "log progress", 0}};
  const int n = sizeof a / sizeof *a;
  int rc = mimo_args_parse(argc, argv, a, n, "--model DIR (--file TEXT | --tokens 1,2,3) [--ctx 512]");
  if (rc)
    return rc == 3 ? 0 : rc;
  const char *dir = mimo_arg_str(a, n, "model", NULL), *file = mimo_arg_str(a, n, "file", NULL),
             *toks = mimo_arg_str(a, n, "tokens", NULL), *kl_out = mimo_arg_str(a, n, "kl-base-out", NULL),
             *kl_in = mimo_arg_str(a, n, "kl-base", NULL);
  bool bad = false;
  const long ctx = mimo_arg_long(a, n, "ctx", 512, &bad), score_from = mimo_arg_long(a, n, "score-from", ctx / 2, &bad),
             max_chunks = mimo_arg_long(a, n, "chunks", 0, &bad), feed = mimo_arg_long(a, n, "chunk", ctx, &bad),
             kl_top = mimo_arg_long(a, n, "kl-top", 0, &bad);
  if (!dir || !file == !toks || bad) {
    fprintf(stderr, "mimo perplexity: need --model and one of --file or --tokens (see --help)\n");
    return 2;
  }
  if (ctx < 2 || ctx > 1 << 24 || score_from < 0 || score_from > ctx - 2 || max_chunks < 0 || feed < 1) {
    fprintf(stderr, "mimo perplexity: need --ctx >= 2, 0 <= --score-from <= ctx - 2, --chunks >= 0, --chunk >= 1\n");
    return 2;
  }
  if (kl_in && kl_out) {
    fprintf(stderr, "mimo perplexity: --kl-base and --kl-base-out are two runs\n");
    return 2;
  }
  if (kl_top < 0 || kl_top > 1 << 20 || (kl_top && !kl_out)) {
    fprintf(stderr, "mimo perplexity: --kl-top K (0 <= K <= 2^20) goes with --kl-base-out\n");
    return 2;
  }
  if (mimo_arg_str(a, n, "verbose", NULL))
    mimo_log_set_level(MIMO_LOG_INFO);
  int *ids = NULL;
  long T = 0;
  mimo_status st = mimo_input_ids(dir, file, toks, &ids, &T);
  if (st != MIMO_OK) {
    free(ids);
    return fail(mimo_errmsg());
  }
  long chunks = T / ctx;
  if (max_chunks > 0 && chunks > max_chunks)
    chunks = max_chunks;
  if (chunks < 1) {
    free(ids);
    fprintf(stderr, "mimo perplexity: %ld tokens are less than one chunk of --ctx %ld\n", T, ctx);
    return 1;
  }
  mimo_runner r;
  st = mimo_runner_init(&r, dir, a, n);
  if (st == MIMO_OK && r.worker) {
    free(ids);
    mimo_runner_free(&r);
    return 0;
  }
  mimo_kl_header h = {.ctx = (uint32_t)ctx, .score_from = (uint32_t)score_from, .chunks = (uint32_t)chunks,
                      .n_tokens = (uint64_t)(chunks * ctx)};
  h.tokens_hash = mimo_tokens_hash(ids, chunks * ctx);
  FILE *fin = NULL, *fout = NULL;
  bool created = false; /* kl_out is this run's (removed again if the run fails) */
  if (st == MIMO_OK) {
    h.vocab = (uint32_t)r.m->cfg.vocab_size;
    h.top = (uint32_t)(kl_top < (long)h.vocab ? kl_top : 0); /* K >= vocab: the whole rows */
    for (long i = 0; i < chunks * ctx && st == MIMO_OK; i++)
      if (ids[i] < 0 || ids[i] >= (int)h.vocab)
        st = mimo_errf(MIMO_E_INVALID, "token %d (at %ld) is outside the vocabulary (%u)", ids[i], i, h.vocab);
  }
  if (st == MIMO_OK && kl_in) {
    if (!(fin = fopen(kl_in, "rb")))
      st = mimo_errf(MIMO_E_IO, "%s: cannot open", kl_in);
    else
      st = mimo_kl_read_header(fin, kl_in, &h, &h.top);
  }
  if (st == MIMO_OK && kl_out) {
    if (!(fout = fopen(kl_out, "wb")))
      st = mimo_errf(MIMO_E_IO, "%s: cannot create", kl_out);
    else
      created = true, st = mimo_kl_write_header(fout, kl_out, &h);
  }
  mimo_eval e;
  mimo_eval_init(&e);
  if (st == MIMO_OK) {
    printf("perplexity: %ld chunks of %ld tokens, scoring positions %ld..%ld of each (%ld tokens)\n", chunks, ctx,
           score_from, ctx - 2, chunks * (ctx - 1 - score_from));
    st = run(&r, ids, &h, (int)(feed < ctx ? feed : ctx), fin, kl_in, fout, kl_out, &e);
  }
  if (fout && fclose(fout) != 0 && st == MIMO_OK)
    st = mimo_errf(MIMO_E_IO, "%s: cannot write", kl_out);
  if (fin)
    fclose(fin);
  if (st == MIMO_OK) {
    const mimo_estimate p = mimo_eval_ppl(&e);
    printf("Final estimate: PPL = %.6f +/- %.6f (%ld tokens)\n", p.mean, p.err, e.n);
    if (kl_in) {
      print_estimate("Mean PPL(Q)", p, 1, "");
      print_estimate("Mean PPL(base)", mimo_eval_base_ppl(&e), 1, "");
      print_estimate("Mean ln(PPL(Q)/PPL(base))", mimo_eval_ln_ppl_ratio(&e), 1, "");
      if (h.top)
        printf("(the base kept each position's %u most likely tokens: KL over them and one bucket for the rest)\n",
               h.top);
      print_estimate("Mean KLD", mimo_eval_kl(&e), 1, "");
      printf("%-30s: %.6g\n", "Maximum KLD", e.kl_max);
      printf("%-30s: %.6g\n", "99.9%   KLD", mimo_eval_kl_quantile(&e, 0.999));
      printf("%-30s: %.6g\n", "99.0%   KLD", mimo_eval_kl_quantile(&e, 0.99));
      printf("%-30s: %.6g\n", "Median  KLD", mimo_eval_kl_quantile(&e, 0.5));
      print_estimate("Same top token", mimo_eval_same_top(&e), 100, " %");
    }
  }
  mimo_eval_free(&e);
  free(ids);
  mimo_runner_free(&r);
  if (st != MIMO_OK) {
    if (created)
      remove(kl_out); /* no half-written base file left to compare against */
    return fail(mimo_errmsg());
  }
  return 0;
}
