/* mimo: run and serve MiMo-V2.5. This file is only the subcommand table. */
#include <stdio.h>
#include <string.h>

#include "cli/commands.h"
#include "core/version.h"

typedef struct {
  const char *name;
  int (*run)(int argc, char **argv);
  const char *usage;
} command;

static const command commands[] = {
    /* COMMAND TABLE: one line per subcommand */
    {"logits", mimo_cmd_logits, "token ids -> float32 logits file"},
    {"generate", mimo_cmd_generate, "token ids -> generated token ids"},
    {"bench", mimo_cmd_bench, "prefill/decode speed and effective bandwidth"},
    {"perplexity", mimo_cmd_perplexity, "perplexity over a text; KL divergence from a base run"},
    {"quantize", mimo_cmd_quantize, "dense routed experts to the published int4 layout (AWQ or round to nearest)"},
    {"vision", mimo_cmd_vision, "images -> the vision tower's embeddings (and their patch rows)"},
    {"inspect", mimo_cmd_inspect, "validate a checkpoint directory and summarise it"},
    {"synth", mimo_cmd_synth, "write a random checkpoint in the published layout"},
    {"tokenize", mimo_cmd_tokenize, "stdin text -> token ids"},
    {"detokenize", mimo_cmd_detokenize, "token ids -> text"},
    {"bench-spec", mimo_cmd_bench_spec, "decode speed with MTP drafts against without, outputs compared"},
    {"bench-tokenizer", mimo_cmd_bench_tokenizer, "tokenizer encode speed vs the Rust library"},
    {"render", mimo_cmd_render, "render a chat with the model's template"},
    {"serve", mimo_cmd_serve, "OpenAI-compatible HTTP server (vLLM's flags)"},
};

static void usage(FILE *f) {
  fprintf(f, "usage: mimo <command> [options]\n\ncommands:\n");
  for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
    fprintf(f, "  %-16s %s\n", commands[i].name, commands[i].usage);
  fprintf(f, "\n`mimo <command> --help` shows a command's options; `mimo --version` the version.\n");
}

int main(int argc, char **argv) {
  if (argc == 2 && strcmp(argv[1], "--version") == 0) {
    printf("mimo %s\n", mimo_version());
    return 0;
  }
  if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
    usage(argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
    if (strcmp(argv[1], commands[i].name) == 0)
      return commands[i].run(argc - 1, argv + 1);
  fprintf(stderr, "mimo: unknown command '%s'\n", argv[1]);
  usage(stderr);
  return 2;
}
