/* Request JSON -> engine parameters (src/server/openai.c): first byte picks chat
 * or completions, the rest is the body. Property: never crashes or leaks; a
 * rejected body always has a 4xx/5xx status and a message; an accepted one has
 * a non-empty prompt and sane sampling parameters. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/fileio.h"
#include "server/openai.h"
#include "fuzz_server_fixture.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1 || size > 1 << 16)
    return 0;
  mimo_server *s = server();
  mimo_api_err e = {0};
  json_t *root = mimo_api_parse_body((const char *)data + 1, size - 1, &e);
  if (!root) {
    if (e.status != 400 || !e.msg[0])
      abort();
    return 0;
  }
  mimo_oai_req r;
  int rc = mimo_openai_parse(s, root, (data[0] & 1) == 0, &r, &e);
  if (rc) {
    if (e.status < 400 || !e.msg[0])
      abort();
    json_t *body = mimo_openai_error_body(e.status, e.type, e.param[0] ? e.param : NULL, e.code, e.msg);
    if (!body)
      abort();
    json_decref(body);
  } else {
    if (r.n_prompt < 1 || r.spec.max_tokens < 1 || r.n < 1 || r.spec.sp.temperature < 0 || r.spec.sp.top_p <= 0)
      abort();
    for (int i = 0; i < r.n_prompt; i++)
      if (r.prompt[i] < 0 || r.prompt[i] >= s->vocab_limit)
        abort();
  }
  mimo_oai_req_free(&r);
  json_decref(root);
  return 0;
}
