/* mimo synth: write a random checkpoint in the published layout. */
#include <stdio.h>
#include <string.h>

#include "cli/args.h"
#include "cli/commands.h"
#include "core/log.h"
#include "model/synth.h"

int mimo_cmd_synth(int argc, char **argv) {
  mimo_arg a[] = {{"out", 1, "output directory", 0}, {"preset", 1, "tiny | small | full (default tiny)", 0},
                  {"quant", 1, "int4 | int4-asym | bf16 experts (default int4)", 0},
                  {"group-size", 1, "int4 group size (default: preset's)", 0},
                  {"kv-heads", 1, "full-layer KV heads = qkv chunk count (sliding layers get twice)", 0},
                  {"layers", 1, "number of layers (default: preset's)", 0},
                  {"shards", 1, "safetensors shards (default: preset's)", 0},
                  {"seed", 1, "RNG seed (default 0)", 0},
                  {"moe-inter", 1, "expert width (moe_intermediate_size; default: preset's)", 0},
                  {"split-qkv", 0, "separate q/k/v projections (V2-Flash layout), same weights as fused", 0},
                  {"mtp-layers", 1, "MTP layers model.mtp.layers.* (spec §2.7; default 0, the release has 3)", 0},
                  {"no-vision", 0, "text only: no vision tower (visual.* tensors, vision_config)", 0}};
  int n = sizeof a / sizeof *a, rc = mimo_args_parse(argc, argv, a, n, "--out DIR [--preset tiny|small|full] [--quant int4|int4-asym|bf16] [--seed S]");
  if (rc)
    return rc == 3 ? 0 : rc;
  bool bad = false;
  mimo_synth_opts o = {
      .out = mimo_arg_str(a, n, "out", NULL), .preset = mimo_arg_str(a, n, "preset", "tiny"),
      .quant = mimo_arg_str(a, n, "quant", "int4"), .group_size = (int)mimo_arg_long(a, n, "group-size", 0, &bad),
      .kv_heads = (int)mimo_arg_long(a, n, "kv-heads", 0, &bad), .layers = (int)mimo_arg_long(a, n, "layers", 0, &bad),
      .shards = (int)mimo_arg_long(a, n, "shards", 0, &bad), .seed = (uint64_t)mimo_arg_long(a, n, "seed", 0, &bad),
      .moe_inter = (int)mimo_arg_long(a, n, "moe-inter", 0, &bad),
      .split_qkv = mimo_arg_str(a, n, "split-qkv", NULL) != NULL,
      .no_vision = mimo_arg_str(a, n, "no-vision", NULL) != NULL,
      .mtp_layers = (int)mimo_arg_long(a, n, "mtp-layers", 0, &bad)};
  if (!o.out || bad) {
    fprintf(stderr, "mimo synth: need --out DIR (see --help)\n");
    return 2;
  }
  mimo_log_set_level(MIMO_LOG_INFO);
  if (mimo_synth(&o) != MIMO_OK) {
    fprintf(stderr, "mimo synth: %s\n", mimo_errmsg());
    return 1;
  }
  return 0;
}
