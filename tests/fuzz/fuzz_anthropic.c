/* Anthropic request JSON -> engine parameters (src/server/anthropic.c): first
 * byte picks /v1/messages or /v1/messages/count_tokens, the rest is the body.
 * Property: never crashes or leaks; a rejected body always has a 4xx/5xx status,
 * a message and an Anthropic-shaped error body; an accepted one has a non-empty
 * prompt of valid ids and sane sampling parameters. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/fileio.h"
#include "server/anthropic.h"
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
  mimo_anth_req r;
  bool count_only = data[0] & 1;
  int rc = mimo_anthropic_parse(s, root, count_only, &r, &e);
  if (rc) {
    if (e.status < 400 || !e.msg[0])
      abort();
    json_t *body = mimo_anthropic_error_body(e.status, e.type, e.param[0] ? e.param : NULL, e.code, e.msg);
    if (!body || !json_is_object(json_object_get(body, "error")))
      abort();
    json_decref(body);
  } else {
    if (r.n_prompt < 1 || (!count_only && (r.spec.max_tokens < 1 || r.spec.sp.temperature < 0)))
      abort();
    for (int i = 0; i < r.n_prompt; i++)
      if (r.prompt[i] < 0 || r.prompt[i] >= s->vocab_limit)
        abort();
  }
  mimo_anth_req_free(&r);
  json_decref(root);
  return 0;
}
