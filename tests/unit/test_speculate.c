/* Greedy decoding with MTP drafts (engine/speculate.h) gives greedy decoding's tokens, on a tiny synthetic model
 * with an MTP layer: with the MTP's own drafts (a random layer: almost all refused), and with drafts from a known
 * answer corrupted at every fifth position (the test seam), so that rounds keep 0, some and all k drafts, the caches
 * step back by every amount, and the bonus token follows a fully kept round. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "engine/speculate.h"
#include "model/synth.h"

static char root[64], dir[256];

/* Plain greedy decoding, one token per step. */
static void greedy(mimo_backend *be, const int *prompt, int n, int steps, int *out) {
  mimo_model *m;
  assert_int_equal(mimo_model_load(dir, be, &m), MIMO_OK);
  mimo_kv_seq *s;
  assert_int_equal(mimo_kv_seq_init(&s, &m->cfg), MIMO_OK);
  const int V = m->cfg.vocab_size;
  float *logits = malloc((size_t)n * V * sizeof *logits);
  assert_non_null(logits);
  int tok[64], k = n;
  memcpy(tok, prompt, (size_t)n * sizeof *tok);
  for (int i = 0; i < steps; i++) {
    mimo_batch b = {.n_seqs = 1, .seqs = &s, .n_tokens = &k, .tokens = tok, .all_logits = 0};
    assert_int_equal(mimo_model_forward(m, &b, logits), MIMO_OK);
    int a = 0;
    for (int v = 1; v < V; v++)
      if (logits[v] > logits[a])
        a = v;
    out[i] = tok[0] = a;
    k = 1;
  }
  free(logits);
  mimo_kv_seq_free(s);
  mimo_model_free(m);
}

static void run(mimo_backend *be, const int *prompt, int n, int steps, int k, const int *want, bool oracle) {
  mimo_model *m;
  assert_int_equal(mimo_model_load(dir, be, &m), MIMO_OK);
  int out[64], n_out = 0, bad[64];
  mimo_spec_stats st;
  if (oracle) { /* the answer, but wrong at every fifth position */
    for (int i = 0; i < steps; i++)
      bad[i] = i % 5 == 3 ? (want[i] + 1) % 600 : want[i];
    mimo_speculate_test_oracle(bad, steps);
  }
  assert_int_equal(mimo_speculate_greedy(m, prompt, n, steps, k, true, out, &n_out, &st), MIMO_OK);
  mimo_speculate_test_oracle(NULL, 0);
  assert_int_equal(n_out, steps);
  assert_memory_equal(out, want, (size_t)steps * sizeof *out);
  print_message("k=%d%s: %ld steps, %ld of %ld drafts kept\n", k, oracle ? " (oracle drafts)" : "", st.steps,
                st.accepted, st.drafted);
  if (oracle) {
    assert_true(st.accepted > 0 && st.accepted < st.drafted);
    assert_true(st.steps < steps - 1);
  }
  mimo_model_free(m);
}

static void test_speculative_equals_greedy(void **state) {
  (void)state;
  mimo_backend *be;
  assert_int_equal(mimo_backend_cpu_init(&be, 2), MIMO_OK);
  enum { N = 21, STEPS = 40 };
  int prompt[N], want[STEPS];
  for (int i = 0; i < N; i++)
    prompt[i] = (i * 29 + 7) % 600;
  greedy(be, prompt, N, STEPS, want);
  for (int k = 1; k <= 4; k++) {
    run(be, prompt, N, STEPS, k, want, false);
    run(be, prompt, N, STEPS, k, want, true);
  }
  be->free(be);
}

static void test_refusals(void **state) {
  (void)state;
  mimo_backend *be;
  assert_int_equal(mimo_backend_cpu_init(&be, 1), MIMO_OK);
  mimo_model *m;
  assert_int_equal(mimo_model_load(dir, be, &m), MIMO_OK);
  int p[2] = {1, 2}, out[4], n_out;
  mimo_spec_stats st;
  assert_int_equal(mimo_speculate_greedy(m, p, 2, 4, 0, true, out, &n_out, &st), MIMO_E_INVALID);
  assert_int_equal(mimo_model_mtp_open(m, 5), MIMO_E_INVALID); /* one MTP layer */
  mimo_model_free(m);
  be->free(be);
}

static int setup(void **state) {
  (void)state;
  snprintf(root, sizeof root, "/tmp/mimo-test-spec-XXXXXX");
  if (!mkdtemp(root))
    return -1;
  snprintf(dir, sizeof dir, "%s/m", root);
  mimo_synth_opts o = {.out = dir, .preset = "tiny", .quant = "int4", .seed = 12, .mtp_layers = 1, .no_vision = 1};
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
      cmocka_unit_test(test_speculative_equals_greedy),
      cmocka_unit_test(test_refusals),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
