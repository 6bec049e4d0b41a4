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
#include "core/fileio.h"
#include "core/log.h"
#include "quant/eval.h"
#include "text/tokenizer.h"

enum { TEXT_MAX = 1 << 30 }; /* bytes of --file read at most */

static int fail(const char *what) {
  fprintf(stderr, "mimo perplexity: %s\n", what);
  return 1;
}

/* --tokens ids, or --file text through the checkpoint's tokenizer. */
static mimo_status input_ids(const char *dir, const char *file, const char *toks, int **ids, long *T) {
  if (toks) {
    const int n = mimo_parse_ids(toks, ids);
    if (n <= 0) {
      if (n == 0)
        free(*ids);
      *ids = NULL;
      return mimo_errf(MIMO_E_INVALID, "--tokens: not a list of token ids");
    }
    *T = n;
    return MIMO_OK;
  }
  char *text = NULL;
  size_t len = 0;
  MIMO_TRY(mimo_read_file(file, &text, &len, TEXT_MAX));
  mimo_tok *tok = NULL;
  size_t n = 0;
  mimo_status st = mimo_tok_load(dir, &tok);
  if (st == MIMO_OK)
    st = mimo_tok_encode(tok, text, len, ids, &n);
  *T = (long)n;
  mimo_tok_free(tok);
  free(text);
  return st;
}

static void print_estimate(const char *label, mimo_estimate e, double scale, const char *unit) {
  printf("%-30s: %.6g ± %.3g%s\n", label, e.mean * scale, e.err * scale, unit);
}

/* A row of the base file as this run writes it: the whole row, or (top > 0) the log-probability of the next token
 * and the top entries. */
static mimo_status write_row(FILE *f, const char *path, const double *lp, int V, int next, int top, float *row,
                             int *tid, double *tlp) {
  bool ok = true;
  if (!top) {
    for (int v = 0; v < V; v++)
      row[v] = (float)lp[v];
    ok = fwrite(row, sizeof *row, (size_t)V, f) == (size_t)V;
  } else {
    mimo_top_entries(lp, V, top, tid, tlp);
    const float ln = (float)lp[next];
    ok = fwrite(&ln, sizeof ln, 1, f) == 1;
    for (int i = 0; ok && i < top; i++) {
      const uint32_t id = (uint32_t)tid[i];
      const float l = (float)tlp[i];
      ok = fwrite(&id, 4, 1, f) == 1 && fwrite(&l, 4, 1, f) == 1;
    }
  }
  return ok ? MIMO_OK : mimo_errf(MIMO_E_IO, "%s: cannot write", path);
}

/* A row of a base file into base (top = 0, normalised again: the file's float32 rounding would otherwise add a
 * first-order term to the KL, ~1e-8 for a run against itself instead of ~1e-13) or bt. where: "chunk C, position
 * P" for the messages. */
static mimo_status read_row(FILE *f, const char *path, const char *where, int V, int top, float *row, double *base,
                            int *tid, double *tlp, mimo_base_top *bt) {
  if (!top) {
    if (fread(row, sizeof *row, (size_t)V, f) != (size_t)V)
      return mimo_errf(MIMO_E_FORMAT, "%s: cut short at %s", path, where);
    if (mimo_log_softmax(row, V, base, NULL) != MIMO_OK)
      return mimo_errf(MIMO_E_FORMAT, "%s: %s: %s", path, where, mimo_errmsg());
    return MIMO_OK;
  }
  float ln;
  bool ok = fread(&ln, sizeof ln, 1, f) == 1;
  for (int i = 0; ok && i < top; i++) {
    uint32_t id;
    float l;
    ok = fread(&id, 4, 1, f) == 1 && fread(&l, 4, 1, f) == 1;
    tid[i] = id >= (uint32_t)V ? -1 : (int)id; /* refused by mimo_eval_add_top */
    tlp[i] = l;
  }
  if (!ok)
    return mimo_errf(MIMO_E_FORMAT, "%s: cut short at %s", path, where);
  for (int i = 0; i < top; i++)
    if (!(tlp[i] <= 0)) /* a log-probability; NaN fails too */
      return mimo_errf(MIMO_E_FORMAT, "%s: %s: entry %d is not a log-probability", path, where, i);
  *bt = (mimo_base_top){.k = top, .id = tid, .lp = tlp, .lp_next = ln};
  return MIMO_OK;
}

/* Evaluates every chunk: logits, log-probabilities, statistics, and the base file read or written. */
static mimo_status run(mimo_runner *r, const int *ids, const mimo_kl_header *h, int feed, FILE *base_in,
                       const char *base_in_path, FILE *base_out, const char *base_out_path, mimo_eval *e) {
  const int V = (int)h->vocab, ctx = (int)h->ctx, top = (int)h->top;
  float *logits = malloc((size_t)ctx * V * sizeof *logits), *row = malloc((size_t)V * sizeof *row);
  double *lp = malloc((size_t)V * sizeof *lp), *base = malloc((size_t)V * sizeof *base);
  int *tid = malloc((size_t)(top ? top : 1) * sizeof *tid);
  double *tlp = malloc((size_t)(top ? top : 1) * sizeof *tlp);
  mimo_status st = logits && row && lp && base && tid && tlp ? MIMO_OK
                                                             : mimo_errf(MIMO_E_NOMEM, "logits of a %d-token chunk", ctx);
  for (uint32_t c = 0; st == MIMO_OK && c < h->chunks; c++) {
    const int *chunk = ids + (size_t)c * ctx;
    const double t0 = mimo_now();
    if (c > 0)
      st = mimo_runner_restart(r); /* every chunk from an empty cache */
    if (st == MIMO_OK)
      st = mimo_runner_feed(r, chunk, ctx, feed, logits, NULL);
    for (int j = (int)h->score_from; st == MIMO_OK && j < ctx - 1; j++) {
      st = mimo_log_softmax(logits + (size_t)j * V, V, lp, NULL);
      if (st != MIMO_OK) {
        st = mimo_errf(st, "chunk %u, position %d: %s", c + 1, j, mimo_errmsg());
        break;
      }
      mimo_base_top bt;
      char where[64];
      snprintf(where, sizeof where, "chunk %u, position %d", c + 1, j);
      if (base_in && (st = read_row(base_in, base_in_path, where, V, top, row, base, tid, tlp, &bt)) != MIMO_OK)
        break;
      if (base_out && (st = write_row(base_out, base_out_path, lp, V, chunk[j + 1], top, row, tid, tlp)) != MIMO_OK)
        break;
      if (base_in && top)
        st = mimo_eval_add_top(e, lp, V, chunk[j + 1], &bt);
      else
        st = mimo_eval_add(e, lp, V, chunk[j + 1], base_in ? base : NULL);
    }
    if (st == MIMO_OK) {
      printf("[%u]%.4f%s", c + 1, mimo_eval_ppl(e).mean, c + 1 == h->chunks ? "\n" : ",");
      fflush(stdout);
      mimo_info("perplexity: chunk %u of %u in %.2f s", c + 1, h->chunks, mimo_now() - t0);
    }
  }
  if (st == MIMO_OK && base_in && fgetc(base_in) != EOF)
    st = mimo_errf(MIMO_E_FORMAT, "%s: longer than this run's %ld scored positions", base_in_path, e->n);
  free(logits), free(row), free(lp), free(base), free(tid), free(tlp);
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
  mimo_status st = input_ids(dir, file, toks, &ids, &T);
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
