/* mimo quantize: dense routed experts -> the published W4A16 int4 layout (quant/quantize.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/args.h"
#include "cli/commands.h"
#include "cli/model_open.h"
#include "core/log.h"
#include "quant/quantize.h"

int mimo_cmd_quantize(int argc, char **argv) {
  mimo_arg a[] = {{"model", 1, "source checkpoint directory (routed experts dense: bf16 or f32)", 0},
                  {"out", 1, "new directory for the quantised checkpoint (must not exist or be empty)", 0},
                  {"method", 1, "awq | rtn (round to nearest; no calibration) (default awq)", 0},
                  {"scheme", 1, "w4a16 (symmetric) | w4a16-asym (zero points) (default w4a16)", 0},
                  {"group-size", 1, "inputs per scale (default 128)", 0},
                  {"calib-file", 1, "AWQ calibration text (tokenized with the checkpoint's tokenizer)", 0},
                  {"calib-tokens", 1, "AWQ calibration token ids instead of --calib-file, comma-separated", 0},
                  {"calib-ctx", 1, "tokens per calibration sequence, each from an empty cache (default 512)", 0},
                  {"calib-max-tokens", 1, "calibration tokens used at most (default 4096)", 0},
                  {"ignore-layers", 1, "layers whose experts stay dense, e.g. 41 (comma-separated)", 0},
                  {"awq-grid", 1, "AWQ ratios tried: 0, 1/N, .., (N-1)/N (default 20)", 0},
                  {"smooth-only", 0, "fold AWQ's scales but keep the experts dense (computes the same function)", 0},
                  {"threads", 1, "CPU threads (default: all cores)", 0}};
  const int n = (int)(sizeof a / sizeof *a);
  int rc = mimo_args_parse(argc, argv, a, n, "--model DIR --out DIR [--method awq|rtn] [--calib-file TEXT]");
  if (rc)
    return rc == 3 ? 0 : rc;
  bool bad = false;
  const char *dir = mimo_arg_str(a, n, "model", NULL), *out = mimo_arg_str(a, n, "out", NULL),
             *method = mimo_arg_str(a, n, "method", "awq"), *scheme = mimo_arg_str(a, n, "scheme", "w4a16"),
             *cfile = mimo_arg_str(a, n, "calib-file", NULL), *ctoks = mimo_arg_str(a, n, "calib-tokens", NULL),
             *ign = mimo_arg_str(a, n, "ignore-layers", NULL);
  mimo_quant_opts o = {.src = dir, .dst = out, .awq = !strcmp(method, "awq"), .asym = !strcmp(scheme, "w4a16-asym"),
                       .smooth_only = mimo_arg_str(a, n, "smooth-only", NULL) != NULL};
  o.group = (int)mimo_arg_long(a, n, "group-size", 128, &bad);
  o.calib_ctx = (int)mimo_arg_long(a, n, "calib-ctx", 512, &bad);
  const long max_tok = mimo_arg_long(a, n, "calib-max-tokens", 4096, &bad);
  o.grid = (int)mimo_arg_long(a, n, "awq-grid", 20, &bad);
  o.threads = (int)mimo_arg_long(a, n, "threads", 0, &bad);
  if (!dir || !out || bad) {
    fprintf(stderr, "mimo quantize: need --model and --out (see --help)\n");
    return 2;
  }
  if ((strcmp(method, "awq") && strcmp(method, "rtn")) || (strcmp(scheme, "w4a16") && strcmp(scheme, "w4a16-asym")) ||
      o.calib_ctx < 1 || max_tok < 1 || o.grid < 1 || o.grid > 1000 || (o.smooth_only && !o.awq) ||
      (o.awq && !cfile == !ctoks) || (!o.awq && (cfile || ctoks))) {
    fprintf(stderr, "mimo quantize: --method awq|rtn, --scheme w4a16|w4a16-asym, --calib-ctx/--calib-max-tokens >= 1, "
                    "--awq-grid 1..1000; awq needs one of --calib-file or --calib-tokens, rtn neither; --smooth-only "
                    "is awq's\n");
    return 2;
  }
  int *ignore = NULL, *ids = NULL;
  if (ign && (o.n_ignore = mimo_parse_ids(ign, &ignore)) < 0) {
    fprintf(stderr, "mimo quantize: --ignore-layers: not a list of layer indices\n");
    return 2;
  }
  o.ignore = ignore;
  mimo_log_set_level(MIMO_LOG_INFO); /* a long offline job: its progress and each layer's AWQ choice on stderr */
  mimo_status st = MIMO_OK;
  if (o.awq) {
    long T = 0;
    st = mimo_input_ids(dir, cfile, ctoks, &ids, &T);
    o.calib = ids;
    o.n_calib = (int)(T < max_tok ? T : max_tok);
  }
  if (st == MIMO_OK)
    st = mimo_quantize(&o);
  free(ids);
  free(ignore);
  if (st != MIMO_OK) {
    fprintf(stderr, "mimo quantize: %s\n", mimo_errmsg());
    return 1;
  }
  mimo_info("quantize: %s written (%s, %s, group %d)", out, method, scheme, o.group);
  return 0;
}
