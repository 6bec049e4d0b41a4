/* `mimo generate --json-schema / --grammar-file / --regex` (llama.cpp's flags): the output follows a JSON schema, a
 * GBNF grammar or a regular expression, through the same grammar engine and token masks as the server's
 * structured outputs (text/json_grammar.h, text/grammar_vocab.h). */
#ifndef MIMO_CLI_GEN_GRAMMAR_H
#define MIMO_CLI_GEN_GRAMMAR_H
#include <stdbool.h>
#include <stdint.h>

#include "cli/args.h"
#include "engine/constraint.h"
#include "io/config.h"
#include "text/tokenizer.h"

#define MIMO_GRAMMAR_ARGS                                                                                              \
  {"json-schema", 1, "the output is JSON under this schema (JSON text, or @FILE)", 0},                                \
      {"grammar-file", 1, "the output is a sentence of this GBNF grammar (FILE)", 0},                                  \
      {"regex", 1, "the whole output matches this regular expression", 0}

typedef struct {
  struct mimo_gvocab *v;
  mimo_constraint *c; /* NULL: no grammar asked */
  bool active;        /* the constraint's after_token came (or it has none) */
  int vocab;
  uint32_t *allow;
} mimo_cli_grammar;

/* The grammar the flags ask for (none: x->c stays NULL), applied after token after (-1: from the first token;
 * the end of the reasoning in a chat with thinking). */
mimo_status mimo_cli_grammar_open(const mimo_arg *args, int n, const mimo_tok *tok, int vocab, int after,
                                  mimo_cli_grammar *x);
/* The mask for the next token (NULL: unrestricted); the stop ids may come only where the output may end. */
const unsigned *mimo_cli_grammar_mask(mimo_cli_grammar *x, const mimo_config *cfg);
/* The token chosen (not an end-of-sequence id): an error if the grammar refuses it. */
mimo_status mimo_cli_grammar_take(mimo_cli_grammar *x, int id);
/* The output is complete and nothing may extend it: generation ends. */
bool mimo_cli_grammar_done(mimo_cli_grammar *x);
void mimo_cli_grammar_close(mimo_cli_grammar *x);
#endif
