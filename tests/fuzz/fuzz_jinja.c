/* Fuzz target: arbitrary template source rendered with a fixed chat-like context.
 * Any input must end in text or an error, within the renderer's limits. */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "text/jinja/jinja.h"

static json_t *ctx;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (!ctx)
    ctx = json_loads("{\"messages\": [{\"role\": \"system\", \"content\": \"sys\"}, {\"role\": \"user\", \"content\": "
                     "\"hi \\u4e2d\"}, {\"role\": \"assistant\", \"content\": null, \"tool_calls\": [{\"function\": "
                     "{\"name\": \"f\", \"arguments\": {\"a\": 1, \"b\": [1.5, true, null]}}}]}], \"tools\": "
                     "[{\"type\": \"function\", \"function\": {\"name\": \"f\", \"parameters\": {}}}], "
                     "\"add_generation_prompt\": true, \"bos_token\": \"<s>\", \"n\": 3}",
                     0, NULL);
  if (size > 4096) return 0; /* keep each run short; the limits are tested in test_jinja.c */
  mimo_jinja *t;
  if (mimo_jinja_parse((const char *)data, size, &t) != MIMO_OK) return 0;
  char *out = NULL;
  if (mimo_jinja_render(t, ctx, &out, NULL) == MIMO_OK) free(out);
  mimo_jinja_free(t);
  return 0;
}
