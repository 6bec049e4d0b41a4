/* mimo logits / generate: run the model on token ids. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/args.h"
#include "cli/commands.h"
#include "cli/gen_grammar.h"
#include "cli/model_open.h"
#include "cli/vision_args.h"
#include "core/log.h"
#include "engine/sampler.h"
#include "engine/engine.h"
#include "model/mimo_v2.h"
#include "text/chat_template.h"
#include "text/tokenizer.h"

static int fail(const char *cmd) {
  fprintf(stderr, "mimo %s: %s\n", cmd, mimo_errmsg());
  return 1;
}

/* Feeds ids in chunks of `chunk` and samples the token after them with smp, where the logits are when the
 * model can (mimo_batch.jobs). */
static mimo_status feed_sample(mimo_runner *r, const int *ids, int n, int chunk, mimo_sampler *smp,
                               const unsigned *allow, int *tok) {
  for (int i = 0; i < n; i += chunk) {
    int k = n - i < chunk ? n - i : chunk;
    mimo_sample_job job = {.skip = true};
    if (i + k >= n) {
      mimo_sampler_job(smp, &job);
      job.allow = allow; /* a grammar's mask (--json-schema ...): sampled on the host */
    }
    mimo_batch b = {.n_seqs = 1, .seqs = &r->seq, .n_tokens = &k, .tokens = ids + i, .jobs = &job, .sampled = tok};
    MIMO_TRY(mimo_model_forward(r->m, &b, NULL));
  }
  return *tok >= 0 ? MIMO_OK : MIMO_E_INVALID; /* the sampler said why */
}

static mimo_status write_floats(const char *path, const float *p, size_t n) {
  FILE *f = fopen(path, "wb");
  if (!f)
    return mimo_errf(MIMO_E_IO, "%s: cannot create", path);
  bool ok = fwrite(p, sizeof *p, n, f) == n;
  ok = fclose(f) == 0 && ok;
  return ok ? MIMO_OK : mimo_errf(MIMO_E_IO, "%s: cannot write", path);
}

/* --mtp-out: the model's logits and final-normed hidden states in one pass, then MTP layer 0 over positions
 * 0..T-2 (token t + 1, hidden state at t) into path. */
static mimo_status mtp_logits(mimo_runner *r, const int *ids, int T, float **logits, const char *path) {
  const int V = r->m->cfg.vocab_size, H = r->m->cfg.hidden_size;
  float *hidden = malloc((size_t)T * H * sizeof *hidden), *dl = malloc((size_t)(T - 1) * V * sizeof *dl);
  *logits = malloc((size_t)T * V * sizeof **logits);
  mimo_kv_seq *ds = NULL;
  mimo_status st = hidden && dl && *logits ? MIMO_OK : mimo_errf(MIMO_E_NOMEM, "MTP logits");
  mimo_batch b = {.n_seqs = 1, .seqs = &r->seq, .n_tokens = &T, .tokens = ids, .all_logits = 1, .hidden_out = hidden};
  if (st == MIMO_OK)
    st = mimo_model_forward(r->m, &b, *logits);
  if (st == MIMO_OK)
    st = mimo_model_mtp_open(r->m, 0);
  if (st == MIMO_OK)
    st = mimo_kv_seq_init(&ds, &r->m->mtp->cfg);
  if (st == MIMO_OK)
    st = mimo_model_mtp_forward(r->m, ds, ids + 1, hidden, T - 1, 1, dl, NULL);
  if (st == MIMO_OK)
    st = write_floats(path, dl, (size_t)(T - 1) * V);
  mimo_kv_seq_free(ds);
  free(hidden);
  free(dl);
  return st;
}

int mimo_cmd_logits(int argc, char **argv) {
  mimo_arg a[] = {{"model", 1, "checkpoint directory", 0}, {"tokens", 1, "comma-separated token ids", 0},
                  {"chunk", 1, "tokens fed per step through the KV cache (default: all)", 0},
                  MIMO_OPEN_ARGS,
                  {"out", 1, "output file: float32 LE [T][vocab]", 0},
                  {"route-margin", 1,
                   "also write float32 LE [T]: each token's smallest router margin over the MoE layers (k-th chosen "
                   "biased score minus the best left out; near 0 = a near-tie that any rounding may flip); "
                   "--backend cpu, one rank",
                   0},
                  {"image", 1,
                   "image file(s), comma-separated: each replaces one image placeholder id of --tokens (in order), "
                   "expanded to its tokens",
                   0},
                  MIMO_VISION_ARGS,
                  {"mtp-out", 1,
                   "also write float32 LE [T-1][vocab]: the checkpoint's MTP layer 0 over positions 0..T-2 (token t+1 "
                   "and the model's final-normed hidden state at t; spec §2.7); one rank, no --image, no --chunk", 0},
                  {"verbose", 0, "log progress", 0}};
  int n = sizeof a / sizeof *a, rc = mimo_args_parse(argc, argv, a, n, "--model DIR --tokens 1,2,3 --out FILE");
  if (rc)
    return rc == 3 ? 0 : rc;
  const char *dir = mimo_arg_str(a, n, "model", NULL), *toks = mimo_arg_str(a, n, "tokens", NULL),
             *out = mimo_arg_str(a, n, "out", NULL), *margin_path = mimo_arg_str(a, n, "route-margin", NULL);
  bool bad = false;
  long chunk = mimo_arg_long(a, n, "chunk", 0, &bad);
  if (!dir || !toks || !out || bad || chunk < 0) {
    fprintf(stderr, "mimo logits: need --model, --tokens and --out (see --help)\n");
    return 2;
  }
  if (mimo_arg_str(a, n, "verbose", NULL))
    mimo_log_set_level(MIMO_LOG_INFO);
  int *ids, T = mimo_parse_ids(toks, &ids);
  if (T <= 0) {
    if (T == 0)
      free(ids);
    fprintf(stderr, "mimo logits: --tokens needs at least one id\n");
    return 2;
  }
  mimo_runner r;
  mimo_status st = mimo_runner_init(&r, dir, a, n);
  float *logits = NULL, *margin = NULL;
  if (st == MIMO_OK && r.worker) {
    free(ids);
    mimo_runner_free(&r);
    return 0;
  }
  mimo_cli_images imgs = {0};
  mimo_embed_run *runs = NULL;
  const char *images = mimo_arg_str(a, n, "image", NULL);
  if (st == MIMO_OK && images) {
    mimo_vision *v = NULL;
    mimo_model *top = r.m;
    st = mimo_vision_args_open(a, n, &top->cfg, &top->vw, mimo_first_device(mimo_arg_str(a, n, "devices", NULL)),
                               (int)mimo_arg_long(a, n, "threads", 0, &bad), &v);
    if (st == MIMO_OK)
      st = mimo_cli_images_encode(v, images, &imgs);
    mimo_vision_close(v);
    int *expanded = NULL, n_exp = 0;
    if (st == MIMO_OK && !(runs = calloc((size_t)imgs.n, sizeof *runs)))
      st = mimo_errf(MIMO_E_NOMEM, "images");
    if (st == MIMO_OK)
      st = mimo_vision_expand(&top->cfg.vision, ids, T, imgs.tokens, imgs.n, &expanded, &n_exp, runs);
    if (st == MIMO_OK) {
      for (int i = 0; i < imgs.n; i++)
        runs[i].rows = imgs.rows[i];
      free(ids);
      ids = expanded;
      T = n_exp;
    }
  }
  if (st == MIMO_OK && margin_path) {
    if (r.m->group || !r.m->be || strcmp(r.m->be->name, "cpu") != 0)
      st = mimo_errf(MIMO_E_INVALID, "--route-margin needs --backend cpu on one rank");
    else if (!(margin = malloc((size_t)T * sizeof *margin)))
      st = mimo_errf(MIMO_E_NOMEM, "route margins");
    for (int i = 0; margin && i < T; i++)
      margin[i] = INFINITY;
  }
  const char *mtp_path = mimo_arg_str(a, n, "mtp-out", NULL);
  if (st == MIMO_OK && mtp_path && (images || chunk || margin || T < 2))
    st = mimo_errf(MIMO_E_INVALID, "--mtp-out: one pass over two or more tokens (no --image, --chunk, --route-margin)");
  if (st == MIMO_OK && mtp_path) {
    st = mtp_logits(&r, ids, T, &logits, mtp_path);
  } else if (st == MIMO_OK) {
    logits = malloc((size_t)T * r.m->cfg.vocab_size * sizeof(float));
    st = logits ? mimo_runner_feed_embeds(&r, ids, T, chunk ? (int)chunk : T, logits, margin, runs, imgs.n)
                : mimo_errf(MIMO_E_NOMEM, "logits");
  }
  if (st == MIMO_OK)
    st = write_floats(out, logits, (size_t)T * r.m->cfg.vocab_size);
  if (st == MIMO_OK && margin)
    st = write_floats(margin_path, margin, (size_t)T);
  free(logits);
  free(margin);
  free(ids);
  free(runs);
  mimo_cli_images_free(&imgs);
  mimo_runner_free(&r);
  return st == MIMO_OK ? 0 : fail("logits");
}

typedef struct {
  char *s;
  size_t len, cap;
} text_buf;

/* Streams text to stdout (plain prompts) or collects it (chat: split afterwards). */
static void emit(text_buf *b, const char *p, size_t n, int stream) {
  if (stream) {
    fwrite(p, 1, n, stdout);
    fflush(stdout);
    return;
  }
  if (b->len + n + 1 > b->cap) {
    size_t cap = (b->len + n + 1) * 2;
    char *s = realloc(b->s, cap);
    if (!s)
      return;
    b->s = s;
    b->cap = cap;
  }
  memcpy(b->s + b->len, p, n);
  b->len += n;
  b->s[b->len] = 0;
}

/* MiMo answers "<think>REASONING</think>ANSWER"; without a closing tag all is reasoning. */
static void print_chat(const char *text) {
  const char *open = strstr(text, "<think>"), *start = open ? open + 7 : text, *close = strstr(start, "</think>");
  if (!close && !open) {
    printf("answer: %s", text);
    return;
  }
  if (!close) {
    printf("reasoning (truncated): %s", start);
    return;
  }
  printf("reasoning: %.*s\nanswer: %s", (int)(close - start), start, close + 8);
}

/* --prompt text or a one-message --chat rendered with the checkpoint's template -> ids. */
static mimo_status prompt_ids(const char *dir, const char *prompt, const char *chat, const char *kwargs_json,
                              mimo_tok **tok, int **ids, int *T) {
  MIMO_TRY(mimo_tok_load(dir, tok));
  char *text = NULL;
  mimo_status st = MIMO_OK;
  if (chat) {
    mimo_tmpl tm;
    json_t *kwargs = NULL;
    if (kwargs_json) {
      json_error_t err;
      kwargs = json_loads(kwargs_json, 0, &err);
      if (!json_is_object(kwargs)) {
        json_decref(kwargs);
        return mimo_errf(MIMO_E_INVALID, "--kwargs is not a JSON object: %s", err.text);
      }
    }
    st = mimo_tmpl_load(dir, NULL, &tm);
    if (st == MIMO_OK) {
      json_t *msgs = json_pack("[{s:s,s:s}]", "role", "user", "content", chat);
      st = mimo_tmpl_render(&tm, msgs, NULL, 1, kwargs, &text);
      json_decref(msgs);
      mimo_tmpl_free(&tm);
    }
    json_decref(kwargs);
    prompt = text;
  }
  size_t n = 0;
  if (st == MIMO_OK)
    st = mimo_tok_encode(*tok, prompt, strlen(prompt), ids, &n);
  *T = (int)n;
  free(text);
  return st;
}

/* --num-speculative-tokens: the serving engine with MTP drafts (engine/engine_spec.c, any sampling) on the one
 * request; prints the ids (or the text) as the plain path does, and the drafts' acceptance on stderr. */
static mimo_status speculative(mimo_runner *r, const int *ids, int T, int max_tokens, int k,
                               const mimo_sampling_params *sp, bool ignore_eos, const mimo_tok *tok) {
  mimo_engine_opts eo = {.max_num_seqs = 1, .max_num_batched_tokens = T + k + 1, .warmup = -1,
                         .num_speculative_tokens = k}; /* (the prompt in one step, as the plain path feeds it) */
  mimo_engine *e;
  MIMO_TRY(mimo_engine_init(&e, r->m, &eo));
  int *out = malloc((size_t)(max_tokens > 0 ? max_tokens : 1) * sizeof *out), n_out = 0;
  mimo_request_params p = {.prompt = ids, .n_prompt = T, .max_tokens = max_tokens, .sampling = *sp,
                           .ignore_eos = ignore_eos};
  mimo_request *q = NULL;
  const double t0 = mimo_now();
  mimo_status st = !out ? mimo_errf(MIMO_E_NOMEM, "output") : mimo_engine_submit(e, &p, &q);
  for (bool done = st != MIMO_OK; !done;) {
    mimo_token_event ev[16];
    const int got = mimo_request_poll(q, ev, 16, -1);
    for (int i = 0; i < got; i++) {
      if (ev[i].token >= 0 && n_out < max_tokens)
        out[n_out++] = ev[i].token;
      if (ev[i].finish == MIMO_FINISH_ERROR)
        st = mimo_errf(MIMO_E_INTERNAL, "the generation failed (the log says why)");
      done |= ev[i].finish != MIMO_FINISH_NONE;
    }
  }
  const double dt = mimo_now() - t0;
  mimo_engine_stats ss;
  mimo_engine_stats_get(e, &ss);
  if (q)
    mimo_request_release(q);
  mimo_engine_free(e);
  if (st == MIMO_OK) {
    char *text = NULL;
    size_t len = 0;
    if (tok && mimo_tok_decode(tok, out, (size_t)n_out, 1, &text, &len) == MIMO_OK)
      printf("%s\n", text);
    else
      for (int i = 0; i < n_out; i++)
        printf(i + 1 < n_out ? "%d," : "%d\n", out[i]);
    free(text);
    fprintf(stderr, "speculative: %d tokens in %.2f s; %ld verifying steps, %ld of %ld drafts kept (%.1f %%), %.2f "
                    "tokens per verifying step\n", n_out, dt, ss.spec_drafts, ss.spec_accepted_tokens,
            ss.spec_draft_tokens, ss.spec_draft_tokens ? 100.0 * ss.spec_accepted_tokens / ss.spec_draft_tokens : 0.0,
            ss.spec_drafts ? (double)(ss.spec_accepted_tokens + ss.spec_drafts) / ss.spec_drafts : 0.0);
  }
  free(out);
  return st;
}

int mimo_cmd_generate(int argc, char **argv) {
  mimo_arg a[] = {{"model", 1, "checkpoint directory", 0}, {"tokens", 1, "prompt token ids, comma-separated", 0},
                  {"prompt", 1, "prompt text (tokenized with the model's tokenizer; output printed as text)", 0},
                  {"chat", 1, "a user message, rendered with the model's chat template; prints reasoning and answer", 0},
                  {"kwargs", 1, "chat template kwargs as JSON, e.g. '{\"enable_thinking\": false}'", 0},
                  {"max-tokens", 1, "tokens to generate (default 16)", 0},
                  {"temperature", 1, "0 = greedy (default 0)", 0}, {"top-p", 1, "nucleus mass (default 1)", 0},
                  {"top-k", 1, "keep the k best (default off)", 0}, {"min-p", 1, "default 0", 0},
                  {"repetition-penalty", 1, "default 1", 0}, {"presence-penalty", 1, "default 0", 0},
                  {"frequency-penalty", 1, "default 0", 0}, {"seed", 1, "RNG seed (default 0)", 0},
                  {"chunk", 1, "prompt tokens per prefill step (default all)", 0},
                  {"ignore-eos", 0, "do not stop at end-of-sequence ids", 0},
                  {"num-speculative-tokens", 1,
                   "draft this many tokens per step with the checkpoint's MTP layer and verify them in one pass "
                   "(1 to 16; the output is the same as without, the step count drops with the drafts kept)", 0},
                  MIMO_GRAMMAR_ARGS, MIMO_OPEN_ARGS, {"verbose", 0, "log progress", 0}};
  int n = sizeof a / sizeof *a,
      rc = mimo_args_parse(argc, argv, a, n, "--model DIR (--tokens 1,2,3 | --prompt TEXT | --chat TEXT) [--max-tokens N]");
  if (rc)
    return rc == 3 ? 0 : rc;
  const char *dir = mimo_arg_str(a, n, "model", NULL), *toks = mimo_arg_str(a, n, "tokens", NULL);
  bool bad = false;
  mimo_sampling_params sp;
  mimo_sampling_defaults(&sp);
  sp.temperature = (float)mimo_arg_double(a, n, "temperature", 0, &bad);
  sp.top_p = (float)mimo_arg_double(a, n, "top-p", 1, &bad);
  sp.top_k = (int)mimo_arg_long(a, n, "top-k", -1, &bad);
  sp.min_p = (float)mimo_arg_double(a, n, "min-p", 0, &bad);
  sp.repetition_penalty = (float)mimo_arg_double(a, n, "repetition-penalty", 1, &bad);
  sp.presence_penalty = (float)mimo_arg_double(a, n, "presence-penalty", 0, &bad);
  sp.frequency_penalty = (float)mimo_arg_double(a, n, "frequency-penalty", 0, &bad);
  sp.seed = (uint64_t)mimo_arg_long(a, n, "seed", 0, &bad);
  long max_tokens = mimo_arg_long(a, n, "max-tokens", 16, &bad), chunk = mimo_arg_long(a, n, "chunk", 0, &bad);
  const char *prompt = mimo_arg_str(a, n, "prompt", NULL), *chat = mimo_arg_str(a, n, "chat", NULL);
  if (!dir || (!!toks + !!prompt + !!chat) != 1 || bad || max_tokens < 0 || chunk < 0) {
    fprintf(stderr, "mimo generate: need --model and one of --tokens, --prompt, --chat (see --help)\n");
    return 2;
  }
  if (mimo_arg_str(a, n, "verbose", NULL))
    mimo_log_set_level(MIMO_LOG_INFO);
  int *ids = NULL, T = 0;
  mimo_tok *tok = NULL;
  if (toks) {
    T = mimo_parse_ids(toks, &ids);
  } else if (prompt_ids(dir, prompt, chat, mimo_arg_str(a, n, "kwargs", NULL), &tok, &ids, &T) != MIMO_OK) {
    return fail("generate");
  }
  if (T <= 0) {
    if (T == 0)
      free(ids);
    mimo_tok_free(tok);
    fprintf(stderr, "mimo generate: the prompt has no tokens\n");
    return 2;
  }
  mimo_runner r;
  mimo_sampler *smp = NULL;
  int id = -1;
  mimo_cli_grammar gr = {0};
  const bool grammar = mimo_arg_str(a, n, "json-schema", NULL) || mimo_arg_str(a, n, "grammar-file", NULL) ||
                       mimo_arg_str(a, n, "regex", NULL);
  const char *kw = mimo_arg_str(a, n, "kwargs", NULL);
  /* in a chat with thinking on (MiMo's default) the reasoning is free and the answer follows the grammar */
  const bool thinking = chat && !(kw && strstr(kw, "\"enable_thinking\"") && strstr(kw, "false"));
  mimo_status st = grammar && !tok ? mimo_tok_load(dir, &tok) : MIMO_OK;
  if (st == MIMO_OK && grammar && mimo_arg_str(a, n, "num-speculative-tokens", NULL))
    st = mimo_errf(MIMO_E_INVALID, "a grammar does not combine with --num-speculative-tokens here (the server does)");
  if (st == MIMO_OK)
    st = mimo_runner_init(&r, dir, a, n);
  else
    memset(&r, 0, sizeof r);
  if (st == MIMO_OK && grammar)
    st = mimo_cli_grammar_open(a, n, tok, r.m->cfg.vocab_size,
                               thinking ? mimo_tok_token_id(tok, "</think>") : -1, &gr);
  if (st == MIMO_OK && r.worker) {
    free(ids);
    mimo_tok_free(tok);
    mimo_runner_free(&r);
    return 0;
  }
  const long spec_k = mimo_arg_long(a, n, "num-speculative-tokens", 0, &bad);
  if (st == MIMO_OK && spec_k) {
    if (bad || spec_k < 0 || spec_k > MIMO_SPEC_MAX || max_tokens < 1)
      st = mimo_errf(MIMO_E_INVALID, "--num-speculative-tokens: 1 to %d, with --max-tokens at least 1", MIMO_SPEC_MAX);
    else
      st = speculative(&r, ids, T, (int)max_tokens, (int)spec_k, &sp, mimo_arg_str(a, n, "ignore-eos", NULL) != NULL,
                       tok);
    free(ids);
    mimo_tok_free(tok);
    mimo_runner_free(&r);
    return st == MIMO_OK ? 0 : fail("generate");
  }
  if (st == MIMO_OK)
    st = mimo_sampler_init(&smp, &sp, r.m->cfg.vocab_size);
  if (st == MIMO_OK) {
    mimo_sampler_add_prompt(smp, ids, T);
    st = max_tokens > 0 ? feed_sample(&r, ids, T, chunk ? (int)chunk : T, smp, mimo_cli_grammar_mask(&gr, &r.m->cfg),
                                      &id)
                        : MIMO_OK;
  }
  double t0 = mimo_now();
  int produced = 0;
  bool stop_eos = !mimo_arg_str(a, n, "ignore-eos", NULL);
  mimo_detok dt;
  text_buf out = {0};
  if (tok)
    mimo_detok_init(&dt, tok, 1);
  for (; st == MIMO_OK && produced < max_tokens; produced++) {
    mimo_sampler_accept(smp, id);
    const bool eos = stop_eos && mimo_config_is_eos(&r.m->cfg, id);
    if (!tok) {
      printf("%s%d", produced ? "," : "", id);
      fflush(stdout);
    } else if (!eos) {
      const char *piece;
      size_t len;
      if (mimo_detok_push(&dt, id, &piece, &len) == MIMO_OK)
        emit(&out, piece, len, !chat);
    }
    if (!eos && (st = mimo_cli_grammar_take(&gr, id)) != MIMO_OK)
      break;
    if (eos || produced + 1 == max_tokens || mimo_cli_grammar_done(&gr)) {
      produced++;
      break;
    }
    int fed = id;
    st = feed_sample(&r, &fed, 1, 1, smp, mimo_cli_grammar_mask(&gr, &r.m->cfg), &id);
  }
  if (tok) {
    const char *piece;
    size_t len;
    if (mimo_detok_flush(&dt, &piece, &len) == MIMO_OK)
      emit(&out, piece, len, !chat);
    mimo_detok_free(&dt);
    if (chat)
      print_chat(out.s ? out.s : "");
    free(out.s);
  }
  printf("\n");
  mimo_info("generated %d tokens in %.2f s", produced, mimo_now() - t0);
  free(ids);
  mimo_cli_grammar_close(&gr);
  mimo_tok_free(tok);
  mimo_sampler_free(smp);
  mimo_runner_free(&r);
  return st == MIMO_OK ? 0 : fail("generate");
}
