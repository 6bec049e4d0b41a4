/* Shared by the API fuzzers: a mimo_server with the synthetic tokenizer and the
 * default chat template (no model, no HTTP), built once per process. */
#ifndef MIMO_FUZZ_SERVER_FIXTURE_H
#define MIMO_FUZZ_SERVER_FIXTURE_H
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/fileio.h"
#include "server/server.h"
#include "text/synth_tokenizer.h"

extern const char mimo_default_chat_template[];

static mimo_server *server(void) {
  static mimo_server s;
  static int ready;
  if (ready)
    return &s;
  char dir[] = "/tmp/mimo_fuzz_server.XXXXXX", path[256];
  mimo_synth_tok_ids ids;
  if (!mkdtemp(dir) || mimo_synth_tokenizer(dir, 640, 1, &ids) != MIMO_OK)
    abort();
  snprintf(path, sizeof path, "%s/chat_template.jinja", dir);
  if (mimo_write_file(path, mimo_default_chat_template, strlen(mimo_default_chat_template)) != MIMO_OK ||
      mimo_tok_load(dir, &s.tok) != MIMO_OK || mimo_tmpl_load(dir, NULL, &s.tmpl) != MIMO_OK)
    abort();
  s.names[0] = "tiny";
  s.n_names = 1;
  s.max_model_len = 4096;
  s.gen.temperature = 1;
  s.gen.top_p = 0.95;
  s.gen.repetition_penalty = 1;
  s.gen.top_k = -1;
  s.vocab_limit = mimo_tok_vocab_size(s.tok);
  ready = 1;
  return &s;
}

#endif
