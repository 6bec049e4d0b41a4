/* Responses API request JSON -> the chat request and engine parameters (src/server/responses.c), with a store that
 * holds one earlier response ("resp_fuzz") so that previous_response_id is exercised too.
 * Property: never crashes or leaks; a rejected body always has a 4xx/5xx status and a message; an accepted one has
 * a non-empty prompt of valid ids, sane sampling parameters, and a conversation history that is a list. */
#include <stdint.h>
#include <stdlib.h>

#include "server/responses.h"
#include "fuzz_server_fixture.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size > 1 << 16)
    return 0;
  mimo_server *s = server();
  if (!s->responses) {
    s->responses = mimo_resp_store_new(4);
    json_t *h = json_pack("[{s:s,s:s},{s:s,s:s}]", "role", "user", "content", "hi", "role", "assistant", "content",
                          "hello");
    json_t *resp = json_pack("{s:s}", "id", "resp_fuzz");
    if (!s->responses || !h || !resp)
      abort();
    mimo_resp_store_put(s->responses, "resp_fuzz", resp, h, NULL);
    json_decref(h);
    json_decref(resp);
  }
  mimo_api_err e = {0};
  json_t *root = mimo_api_parse_body((const char *)data, size, &e);
  if (!root) {
    if (e.status != 400 || !e.msg[0])
      abort();
    return 0;
  }
  mimo_resp_req r;
  if (mimo_responses_parse(s, root, &r, &e)) {
    if (e.status < 400 || !e.msg[0])
      abort();
  } else {
    if (r.oai.n_prompt < 1 || r.oai.spec.max_tokens < 1 || r.oai.spec.sp.temperature < 0 || !json_is_array(r.history))
      abort();
    for (int i = 0; i < r.oai.n_prompt; i++)
      if (r.oai.prompt[i] < 0 || r.oai.prompt[i] >= s->vocab_limit)
        abort();
  }
  mimo_resp_req_free(&r);
  json_decref(root);
  return 0;
}
