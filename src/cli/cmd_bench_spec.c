/* mimo bench-spec: decode speed of the serving engine with MTP drafts against the same engine without them, on
 * the same model, prompts and greedy outputs (which must come out identical).
 *
 * The outputs are compared: on the CPU they are identical (the engine's test asserts it); on a GPU a verifying step
 * computes its rows with other kernels than a one-token step, so a near-tie may round the other way there, and
 * from that token on the outputs part (reported, not an error).
 *
 * The drafts are the MTP layer's own, or (--acceptance P) the known answer with each position right with
 * probability P (a fixed hash): a synthetic checkpoint's MTP layer is random, so its drafts are almost never kept,
 * and the gain on real weights depends on how often they are (third parties measure ~65-70 % for the first draft,
 * ../shared/spec/anchors.md). The seam shows what the engine does at a given acceptance: the verifying steps'
 * cost and the steps they save. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/args.h"
#include "cli/commands.h"
#include "cli/model_open.h"
#include "core/log.h"
#include "core/num.h"
#include "core/threads.h"
#include "engine/engine.h"
#include "model/mimo_v2.h"

typedef struct {
  double prefill_s, decode_s; /* to the first token of request 0; from there to the end of the last request */
  double draft_s;             /* the engine's time in MTP steps */
  double forward_s;           /* the engine's time in the model's steps (forward and sampling), after the first token */
  double decode_draft_s;      /* MTP time after the first token */
  long decode_steps;          /* steps after the first token */
  long steps, drafts, kept, verifying;
  int *out;                   /* [B][D] */
  int n_diff;                 /* requests whose output differs from request 0's */
} run_result;

/* B requests of prompt[0..P), D greedy tokens each, through an engine with k drafts (oracle: the test seam). */
static mimo_status run(mimo_model *m, const int *prompt, int P, int D, int B, int k, const int *oracle,
                       run_result *res) {
  mimo_engine_opts eo = {.max_num_seqs = B, .max_num_batched_tokens = B * (P + 1 + k), .warmup = 0,
                         .num_speculative_tokens = k, .spec_oracle = oracle, .n_spec_oracle = oracle ? D : 0};
  mimo_engine *e;
  MIMO_TRY(mimo_engine_init(&e, m, &eo));
  mimo_request **r = calloc((size_t)B, sizeof *r);
  mimo_status st = r ? MIMO_OK : mimo_errf(MIMO_E_NOMEM, "requests");
  while (st == MIMO_OK && mimo_engine_warming(e)) /* (the warm-up forward is not timed) */
    nanosleep(&(struct timespec){.tv_nsec = 1000000}, NULL);
  mimo_sampling_params sp;
  mimo_sampling_defaults(&sp);
  sp.temperature = 0;
  const double t0 = mimo_now();
  double t_first = 0;
  mimo_engine_stats s0 = {0}; /* at the first token: what the prefill took (a step that is running is not in it) */
  for (int i = 0; st == MIMO_OK && i < B; i++) {
    mimo_request_params p = {.prompt = prompt, .n_prompt = P, .max_tokens = D, .sampling = sp, .ignore_eos = true};
    st = mimo_engine_submit(e, &p, &r[i]);
  }
  for (int i = 0; st == MIMO_OK && i < B; i++) {
    int n = 0;
    for (bool done = false; !done && st == MIMO_OK;) {
      mimo_token_event ev[16];
      const int got = mimo_request_poll(r[i], ev, 16, 600000);
      if (got <= 0)
        st = mimo_errf(MIMO_E_INTERNAL, "request %d: no tokens for 10 minutes", i);
      for (int j = 0; j < got; j++) {
        if (ev[j].token >= 0 && n < D) {
          if (!t_first) {
            t_first = mimo_now();
            mimo_engine_stats_get(e, &s0);
          }
          res->out[(size_t)i * D + n++] = ev[j].token;
        }
        if (ev[j].finish && ev[j].finish != MIMO_FINISH_LENGTH)
          st = mimo_errf(MIMO_E_INTERNAL, "request %d ended early (finish %d)", i, (int)ev[j].finish);
        done |= ev[j].finish != MIMO_FINISH_NONE;
      }
    }
    if (st == MIMO_OK && n != D)
      st = mimo_errf(MIMO_E_INTERNAL, "request %d: %d of %d tokens", i, n, D);
  }
  const double t_end = mimo_now();
  res->prefill_s = t_first - t0;
  res->decode_s = t_end - t_first;
  res->n_diff = 0;
  for (int i = 1; st == MIMO_OK && i < B; i++)
    res->n_diff += memcmp(res->out + (size_t)i * D, res->out, (size_t)D * sizeof(int)) != 0;
  mimo_engine_stats s;
  mimo_engine_stats_get(e, &s);
  res->steps = s.steps;
  res->drafts = s.spec_draft_tokens;
  res->kept = s.spec_accepted_tokens;
  res->verifying = s.spec_drafts;
  res->draft_s = s.spec_draft_seconds;
  res->forward_s = s.forward_seconds - s0.forward_seconds;
  res->decode_draft_s = s.spec_draft_seconds - s0.spec_draft_seconds;
  res->decode_steps = s.steps - s0.steps;
  for (int i = 0; r && i < B; i++)
    if (r[i])
      mimo_request_release(r[i]);
  free(r);
  mimo_engine_free(e);
  return st;
}

int mimo_cmd_bench_spec(int argc, char **argv) {
  mimo_arg a[] = {{"model", 1, "checkpoint directory (with MTP layers)", 0},
                  {"num-speculative-tokens", 1, "drafts per step (default 3)", 0},
                  {"acceptance", 1,
                   "drafts from the known answer, each position right with this probability (default: the MTP's own "
                   "drafts)",
                   0},
                  {"prompt", 1, "prompt tokens (default 128)", 0},
                  {"decode", 1, "output tokens per request (default 128)", 0},
                  {"batch", 1, "requests at once, all with the same prompt (default 1)", 0},
                  MIMO_OPEN_ARGS};
  int n = sizeof a / sizeof *a, rc = mimo_args_parse(argc, argv, a, n, "--model DIR [--acceptance P]");
  if (rc)
    return rc == 3 ? 0 : rc;
  bool bad = false;
  const char *dir = mimo_arg_str(a, n, "model", NULL);
  const int k = (int)mimo_arg_long(a, n, "num-speculative-tokens", 3, &bad);
  const double acc = mimo_arg_double(a, n, "acceptance", -1, &bad);
  const int P = (int)mimo_arg_long(a, n, "prompt", 128, &bad), D = (int)mimo_arg_long(a, n, "decode", 128, &bad),
            B = (int)mimo_arg_long(a, n, "batch", 1, &bad);
  const char *why = !dir                                  ? "need --model DIR"
                    : k < 1 || k > MIMO_SPEC_MAX          ? "--num-speculative-tokens must be 1 to 16"
                    : mimo_arg_str(a, n, "acceptance", NULL) && (acc < 0 || acc > 1) ? "--acceptance must be 0 to 1"
                    : P < 1 || D < 2 || B < 1 || B > 1024 ? "need --prompt >= 1, --decode >= 2, 1 <= --batch <= 1024"
                                                          : NULL;
  if (why && !bad)
    fprintf(stderr, "mimo bench-spec: %s (see --help)\n", why);
  mimo_open_opts o;
  if (bad || why || !mimo_open_parse(a, n, dir, &o))
    return 2;
  mimo_model *m = NULL;
  mimo_status st = mimo_open_model(&o, &m);
  if (st == MIMO_OK && mimo_open_is_worker(&o)) { /* node 0 runs the benchmark; this node follows it */
    st = mimo_model_run_worker(m);
    mimo_model_free(m);
    if (st != MIMO_OK)
      fprintf(stderr, "mimo bench-spec: %s\n", mimo_errmsg());
    return st == MIMO_OK ? 0 : 1;
  }
  /* the drafting model and the rings' slack first: both engines run on caches made alike */
  if (st == MIMO_OK)
    st = mimo_model_mtp_open(m, 0);
  if (st == MIMO_OK)
    st = mimo_model_set_kv_slack(m, k);
  int *prompt = malloc((size_t)P * sizeof *prompt), *oracle = malloc((size_t)D * sizeof *oracle);
  run_result plain = {.out = malloc((size_t)B * D * sizeof(int))}, spec = {.out = malloc((size_t)B * D * sizeof(int))};
  if (st == MIMO_OK && (!prompt || !oracle || !plain.out || !spec.out))
    st = mimo_errf(MIMO_E_NOMEM, "benchmark buffers");
  for (int i = 0; st == MIMO_OK && i < P; i++)
    prompt[i] = (int)(mimo_fnv1a(0x5eed, &i, sizeof i) % (uint64_t)m->cfg.vocab_size);
  if (st == MIMO_OK)
    st = run(m, prompt, P, D, B, 0, NULL, &plain);
  for (int i = 0; st == MIMO_OK && i < D; i++) { /* position i right with probability acc */
    const uint64_t h = mimo_fnv1a(0xacce, &i, sizeof i);
    oracle[i] = (double)(h % 1000000) / 1e6 < acc ? plain.out[i] : (plain.out[i] + 1) % m->cfg.vocab_size;
  }
  if (st == MIMO_OK)
    st = run(m, prompt, P, D, B, k, acc >= 0 ? oracle : NULL, &spec);
  int ret = 0;
  if (st != MIMO_OK) {
    fprintf(stderr, "mimo bench-spec: %s\n", mimo_errmsg());
    ret = 1;
  } else {
    const bool same = memcmp(plain.out, spec.out, (size_t)B * D * sizeof(int)) == 0;
    const double tok = (double)B * (D - 1), tp = tok / plain.decode_s, ts = tok / spec.decode_s;
    printf("model %s, %s, batch %d, prompt %d, %d tokens each (greedy)\n", dir, mimo_open_backend_name(o.backend),
           B, P, D);
    printf("plain:       %.1f tok/s decode (%ld steps, prefill %.3f s)\n", tp, plain.steps, plain.prefill_s);
    printf("speculative: %.1f tok/s decode (%ld steps, prefill %.3f s), k=%d, drafts %s: %ld of %ld kept (%.1f %%), "
           "%.2f tokens per verifying step\n",
           ts, spec.steps, spec.prefill_s, k, acc >= 0 ? "from the answer" : "from the MTP layer", spec.kept,
           spec.drafts, spec.drafts ? 100.0 * spec.kept / spec.drafts : 0.0,
           spec.verifying ? (double)(spec.kept + spec.verifying) / spec.verifying : 0.0);
    int first = D, who = 0; /* where the outputs part (a near-tie that the two step shapes round apart, on a GPU) */
    for (int i = 0; !same && i < B; i++)
      for (int t = 0; t < first; t++)
        if (plain.out[(size_t)i * D + t] != spec.out[(size_t)i * D + t]) {
          first = t;
          who = i;
          break;
        }
    printf("MTP steps: %.3f s (%.1f %% of the speculative run's decode and prefill)\n", spec.draft_s,
           100.0 * spec.draft_s / (spec.decode_s + spec.prefill_s));
    /* per decode step (after the first token): the model's forward, the MTP's passes, and the rest (the engine's
     * bookkeeping and the requests' wake-ups) */
    const run_result *rr[2] = {&plain, &spec};
    for (int i = 0; i < 2; i++) {
      const double n = rr[i]->decode_steps > 0 ? (double)rr[i]->decode_steps : 1;
      printf("per decode step (%s): %.3f ms: forward %.3f ms, MTP %.3f ms, rest %.3f ms\n",
             i ? "speculative" : "plain", 1e3 * rr[i]->decode_s / n, 1e3 * rr[i]->forward_s / n,
             1e3 * rr[i]->decode_draft_s / n, 1e3 * (rr[i]->decode_s - rr[i]->forward_s - rr[i]->decode_draft_s) / n);
    }
    if (same)
      printf("speedup %.2fx; outputs identical\n", ts / tp);
    else
      printf("speedup %.2fx; outputs differ from token %d of request %d on\n", ts / tp, first, who);
  }
  free(prompt);
  free(oracle);
  free(plain.out);
  free(spec.out);
  mimo_model_free(m);
  return ret;
}
