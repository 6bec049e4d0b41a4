/* Structured tool calls (src/text/tool_grammar.c) on untrusted input: the bytes up to the first NUL are a tools list
 * (JSON; its first byte, if a digit, is the call limit and not part of it), the rest is output fed byte by byte after
 * the forced prefix. Properties: compiling either succeeds or says why; feeding never crashes and a refused byte
 * leaves the state as it was; whenever the output is complete, toolcall.c's parser reads prefix + output as calls
 * only (no content beside them), within the limit, each with arguments that are a JSON object. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "text/json_grammar.h"
#include "text/toolcall.h"

static void check_complete(const json_t *tools, const char *text, size_t n, int max_calls) {
  char *content = NULL;
  json_t *calls = NULL;
  mimo_toolcall_parse_all(text, n, tools, 1, &content, &calls);
  const size_t m = json_array_size(calls);
  if (content || m < 1 || (max_calls > 0 && m > (size_t)max_calls))
    abort();
  for (size_t i = 0; i < m; i++) {
    const char *args = json_string_value(json_object_get(json_object_get(json_array_get(calls, i), "function"),
                                                          "arguments"));
    json_error_t err;
    json_t *a = args ? json_loads(args, 0, &err) : NULL;
    if (!json_is_object(a))
      abort();
    json_decref(a);
  }
  json_decref(calls);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const uint8_t *nul = memchr(data, 0, size);
  size_t head = nul ? (size_t)(nul - data) : size, skip = 0;
  const int max_calls = head && data[0] >= '0' && data[0] <= '9' ? (skip = 1, data[0] - '0') : 0;
  json_error_t err;
  json_t *tools = json_loadb((const char *)data + skip, head - skip, 0, &err);
  mimo_jg *g = NULL;
  if (!tools || mimo_jg_tools(tools, NULL, max_calls, NULL, &g) != MIMO_OK) {
    if (tools && !mimo_errmsg()[0])
      abort();
    json_decref(tools);
    return 0;
  }
  const char *prefix = mimo_toolcall_forced_prefix(NULL);
  const size_t pl = strlen(prefix), n = nul ? size - head - 1 : 0;
  char *text = malloc(pl + n + 1);
  size_t k = pl;
  if (text)
    memcpy(text, prefix, pl);
  mimo_jg_state s;
  mimo_jg_start(g, &s);
  for (size_t i = 0; text && i < n; i++) {
    mimo_jg_state before = s;
    if (!mimo_jg_feed(g, &s, nul[1 + i])) {
      if (memcmp(&before, &s, sizeof s))
        abort();
      continue;
    }
    text[k++] = (char)nul[1 + i];
    if (mimo_jg_done(g, &s))
      check_complete(tools, text, k, max_calls);
  }
  free(text);
  mimo_jg_free(g);
  json_decref(tools);
  return 0;
}
