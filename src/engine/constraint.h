/* A constraint on a request's output (structured outputs: text/grammar_vocab.h makes them): before each sampled
 * token it says which ids may come, after it takes the one chosen. The engine owns it from submit and frees it
 * with the request. */
#ifndef MIMO_ENGINE_CONSTRAINT_H
#define MIMO_ENGINE_CONSTRAINT_H
#include <stdbool.h>
#include <stdint.h>

typedef struct mimo_constraint mimo_constraint;
struct mimo_constraint {
  /* allow (V bits, zeroed by the caller): the ids that may come next; stop ids (stops[0..n_stops)) only where the
   * output may end. */
  void (*mask)(mimo_constraint *c, uint32_t *allow, int V, const int *stops, int n_stops);
  /* token was chosen: false when it breaks the constraint */
  bool (*accept)(mimo_constraint *c, int token);
  /* the output is complete: nothing more may come but a stop id */
  bool (*done)(mimo_constraint *c);
  void (*free)(mimo_constraint *c);
  /* a copy in the same state (NULL when out of memory), to try tokens ahead (speculative decoding's drafts) */
  mimo_constraint *(*clone)(const mimo_constraint *c);
  int after_token; /* the constraint applies after this id has been generated (the end of reasoning); -1: at once */
  /* Optional (NULL: always): whether the next token is restricted at all. An unrestricted row samples wherever it
   * would without a constraint (on the GPU), and accept still sees its token. */
  bool (*masks)(const mimo_constraint *c);
};
#endif
