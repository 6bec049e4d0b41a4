/* Model evaluation: perplexity over a token stream and the KL divergence of one model's (or backend's, or
 * quantisation's) next-token distributions from a base run's, as `mimo perplexity` reports them. The math is here
 * (testable without a model); the command feeds it rows of logits.
 *
 * The protocol is llama.cpp's perplexity tool's: the tokens are cut into whole chunks of ctx tokens, each chunk
 * is evaluated from an empty cache, and in each chunk the logits at positions score_from .. ctx - 2 are scored
 * against the token that follows, so every scored token sees at least score_from tokens of context. */
#ifndef MIMO_QUANT_EVAL_H
#define MIMO_QUANT_EVAL_H
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "core/status.h"

/* lp[v] = log softmax(x)[v] in double; returns log Σ exp(x). Non-finite logits (NaN, ±inf) are an error: a model
 * that produces them has no perplexity. */
mimo_status mimo_log_softmax(const float *x, int V, double *lp, double *lse);

/* KL(P || Q) = Σ_v P(v) (log P(v) - log Q(v)) from log-probabilities (P the base). Terms with P(v) = 0 add 0. */
double mimo_kl_div(const double *lp, const double *lq, int V);

/* A base row kept as its k best entries (log-probabilities, best first: value desc, then id asc) and the base's
 * log-probability of the token that follows (which may be outside them). */
typedef struct mimo_base_top {
  int k;
  const int *id;
  const double *lp;
  double lp_next;
} mimo_base_top;
/* KL over the base's k entries plus one bucket for the rest of the vocabulary (mass 1 - Σ of the k, on either
 * side): a lower bound of the full KL (the log-sum inequality), equal to it when the k entries hold all the mass. */
double mimo_kl_div_top(const mimo_base_top *b, const double *lq);
/* The k best of lp[0..V) into id/out_lp (best first, ties by id). */
void mimo_top_entries(const double *lp, int V, int k, int *id, double *out_lp);

/* Running statistics of one evaluation. */
typedef struct mimo_eval {
  long n;                  /* scored tokens */
  double nll, nll2;        /* Σ -log p(next), Σ of its square */
  /* against a base run (n_kl > 0) */
  long n_kl, same_top;     /* scored tokens compared; those whose argmax equals the base's */
  double base_nll, base_nll2, dnll, dnll2; /* the base's Σ NLL and square; Σ (NLL - base NLL) and square */
  double kl, kl2, kl_max;  /* Σ KL, Σ KL², max */
  float *kls;              /* every token's KL (for the median and upper percentiles) */
  long kls_cap;
} mimo_eval;

void mimo_eval_init(mimo_eval *e);
void mimo_eval_free(mimo_eval *e);
/* One scored position: lp the run's log-probabilities, next the token that follows; base (NULL: none) the base
 * run's log-probabilities at the same position. */
mimo_status mimo_eval_add(mimo_eval *e, const double *lp, int V, int next, const double *base);
/* The same against a base row kept as its top entries (mimo_kl_div_top). */
mimo_status mimo_eval_add_top(mimo_eval *e, const double *lp, int V, int next, const mimo_base_top *base);
/* Those in two parts, so that positions can be scored on several threads and added in order: one position's
 * figures (base or base_top or neither), then their addition to e. */
typedef struct mimo_eval_row {
  double nll, base_nll, kl;
  bool same_top, has_base;
} mimo_eval_row;
mimo_status mimo_eval_score(const double *lp, int V, int next, const double *base, const mimo_base_top *base_top,
                            mimo_eval_row *row);
mimo_status mimo_eval_push(mimo_eval *e, const mimo_eval_row *row);

/* Mean and its standard error (0 with fewer than two samples). */
typedef struct {
  double mean, err;
} mimo_estimate;
mimo_estimate mimo_eval_ppl(const mimo_eval *e);      /* exp(mean NLL), error by the delta method */
mimo_estimate mimo_eval_base_ppl(const mimo_eval *e); /* the base's, over the same tokens */
mimo_estimate mimo_eval_kl(const mimo_eval *e);
mimo_estimate mimo_eval_ln_ppl_ratio(const mimo_eval *e); /* mean of NLL - base NLL = ln(PPL / PPL(base)) */
mimo_estimate mimo_eval_same_top(const mimo_eval *e);     /* fraction, binomial error */
/* The q-quantile (0..1) of the per-token KL values (nearest rank); sorts them. */
double mimo_eval_kl_quantile(mimo_eval *e, double q);

/* A base run's file (`mimo perplexity --kl-base-out`): a header, then one row per scored position in the order
 * they are scored: with top = 0 the float32 log-probabilities [vocab]; else the float32 log-probability of the
 * token that follows, then `top` pairs (uint32 id, float32 log-probability), best first. The header pins what
 * makes two runs comparable. */
typedef struct mimo_kl_header {
  uint32_t vocab, ctx, score_from, chunks, top;
  uint64_t n_tokens, tokens_hash; /* the whole token stream: count and FNV-1a of the ids */
} mimo_kl_header;
enum { MIMO_KL_HEADER_BYTES = 48 };
uint64_t mimo_tokens_hash(const int *ids, long n);
mimo_status mimo_kl_write_header(FILE *f, const char *path, const mimo_kl_header *h);
/* Reads and checks the header against want (what this run evaluates; want->top is not compared: the file's is
 * returned in *top); the error names the file and the field. */
mimo_status mimo_kl_read_header(FILE *f, const char *path, const mimo_kl_header *want, uint32_t *top);
#endif
