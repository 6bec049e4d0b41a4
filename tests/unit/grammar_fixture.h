/* Shared by the structured-output tests (test_grammar.c, test_tool_grammar.c): feeding a document, a seeded
 * xorshift, and the token-mask check against feeding every token on its own over the synthetic tokenizer. Include
 * after cmocka.h. */
#ifndef MIMO_TESTS_GRAMMAR_FIXTURE_H
#define MIMO_TESTS_GRAMMAR_FIXTURE_H
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "text/grammar_vocab.h"
#include "text/json_grammar.h"
#include "text/synth_tokenizer.h"

/* Bytes of doc accepted up to where it fails: -1 when all are accepted and the output is complete. */
static inline long grammar_run(const mimo_jg *g, const char *doc) {
  mimo_jg_state s;
  mimo_jg_start(g, &s);
  for (size_t i = 0; doc[i]; i++)
    if (!mimo_jg_feed(g, &s, (unsigned char)doc[i]))
      return (long)i;
  return mimo_jg_done(g, &s) ? -1 : (long)strlen(doc);
}

/* The bytes state s may continue with, into ok (their count returned). */
static inline int grammar_allowed(const mimo_jg *g, const mimo_jg_state *s, int ok[256]) {
  int k = 0;
  for (int c = 0; c < 256; c++) {
    mimo_jg_state t = *s;
    if (mimo_jg_feed(g, &t, (unsigned char)c))
      ok[k++] = c;
  }
  return k;
}

/* Whether byte c is among the k allowed ones. */
static inline bool grammar_in(const int *ok, int k, int c) {
  for (int i = 0; i < k; i++)
    if (ok[i] == c)
      return true;
  return false;
}

/* Removes a test's scratch directory. */
static inline void grammar_rmdir(const char *dir) {
  char cmd[512];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  assert_int_equal(system(cmd), 0);
}

static inline unsigned grammar_rnd(uint64_t *rng, unsigned n) {
  *rng ^= *rng << 13;
  *rng ^= *rng >> 7;
  *rng ^= *rng << 17;
  return (unsigned)(*rng % n);
}

/* The synthetic tokenizer's token index, a mask and the walk's scratch. */
typedef struct {
  char dir[40];
  mimo_tok *t;
  mimo_gvocab *v;
  int V;
  uint32_t *mask;
  mimo_jg_state *scratch;
  long checked, allowed;
} grammar_vocab_fixture;

static inline void grammar_vocab_open(grammar_vocab_fixture *x) {
  memset(x, 0, sizeof *x);
  snprintf(x->dir, sizeof x->dir, "/tmp/mimo-test-gvocab-XXXXXX");
  assert_non_null(mkdtemp(x->dir));
  mimo_synth_tok_ids ids;
  assert_int_equal(mimo_synth_tokenizer(x->dir, 600, 5, &ids), MIMO_OK);
  assert_int_equal(mimo_tok_load(x->dir, &x->t), MIMO_OK);
  assert_int_equal(mimo_gvocab_new(x->t, &x->v), MIMO_OK);
  x->V = mimo_tok_vocab_size(x->t);
  x->mask = calloc(((size_t)x->V + 31) / 32, 4);
  x->scratch = malloc((size_t)mimo_gvocab_scratch_states(x->v) * sizeof *x->scratch);
  assert_non_null(x->mask);
  assert_non_null(x->scratch);
}

/* The mask at each state equals feeding each token on its own (special tokens never, added ones only where the
 * grammar takes them); counts what was checked and allowed. */
static inline void grammar_vocab_check(grammar_vocab_fixture *x, const mimo_jg *g, const mimo_jg_state *states,
                                       size_t n, const char *what) {
  for (size_t i = 0; i < n; i++) {
    memset(x->mask, 0, ((size_t)x->V + 31) / 32 * 4);
    mimo_gvocab_mask(x->v, g, &states[i], x->mask, x->scratch);
    for (int id = 0; id < x->V; id++) {
      mimo_jg_state c = states[i];
      const bool want = mimo_gvocab_feed(x->v, g, &c, id);
      const bool got = x->mask[id / 32] >> (id % 32) & 1;
      if (want != got)
        fail_msg("%s, state %zu, token %d: mask %d, feeding %d", what, i, id, got, want);
      x->allowed += got;
      x->checked++;
    }
  }
}

static inline void grammar_vocab_close(grammar_vocab_fixture *x) {
  free(x->scratch);
  free(x->mask);
  mimo_gvocab_free(x->v);
  mimo_tok_free(x->t);
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", x->dir);
  assert_int_equal(system(cmd), 0);
}
#endif
