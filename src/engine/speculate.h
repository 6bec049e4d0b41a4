/* Greedy decoding with MTP drafts (spec §2.7; vLLM's "mimo_mtp" speculative method): the MTP layer proposes k
 * tokens one after another, the model checks them in one forward pass of k + 1 tokens, and the output keeps the
 * drafts it agrees with plus its own next token. The output is greedy decoding's, token for token; what changes is
 * how many forward passes it takes. One sequence, one process (the serving engine does not draft yet). */
#ifndef MIMO_ENGINE_SPECULATE_H
#define MIMO_ENGINE_SPECULATE_H
#include "model/mimo_v2.h"

typedef struct mimo_spec_stats {
  long steps;     /* verifying forward passes of the model */
  long drafted;   /* draft tokens proposed */
  long accepted;  /* of those, kept */
} mimo_spec_stats;

/* Generates up to max_tokens after prompt[0..n) into out (*n_out of them; an eos id ends it unless ignore_eos and is
 * not written). m must be a lone model with MTP layers, before its first step (the caches get k slots of slack);
 * k >= 1 drafts per step from MTP layer 0. */
mimo_status mimo_speculate_greedy(mimo_model *m, const int *prompt, int n, int max_tokens, int k, bool ignore_eos,
                                  int *out, int *n_out, mimo_spec_stats *stats);

/* Test seam: the drafts for output position i become oracle[i] (where i < n) instead of the MTP's choice (the MTP
 * still runs, so its cache is exercised): with a known greedy output, the rounds where drafts are kept are reached
 * on a random model. NULL: off. */
void mimo_speculate_test_oracle(const int *oracle, int n);
#endif
