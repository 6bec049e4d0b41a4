/* Structured outputs (src/text/json_grammar.c) on untrusted input: the bytes up to the first NUL are a JSON schema
 * (or a structural tag: an object with "structures" and "triggers", or with "format"; or, if they do not parse, the
 * lines of a choice list), the rest is output fed byte by byte. Properties: compiling either succeeds or says why;
 * feeding never crashes and a refused byte leaves the state as it was; whenever the output is complete, what was fed
 * parses as JSON (schemas) or is one of the choices. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "text/json_grammar.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const uint8_t *nul = memchr(data, 0, size);
  const size_t head = nul ? (size_t)(nul - data) : size;
  char *spec = malloc(head + 1);
  if (!spec)
    return 0;
  memcpy(spec, data, head);
  spec[head] = 0;
  json_error_t err;
  json_t *schema = json_loadb(spec, head, 0, &err);
  mimo_jg *g = NULL;
  const char *choices[8];
  int n_choices = 0;
  mimo_status st;
  const bool tag = (json_object_get(schema, "structures") && json_object_get(schema, "triggers")) ||
                   json_object_get(schema, "format");
  if (tag && json_object_get(schema, "format")) {
    st = mimo_jg_structural_format(json_object_get(schema, "format"), &g);
  } else if (tag) {
    st = mimo_jg_structural_tag(json_object_get(schema, "structures"), json_object_get(schema, "triggers"), &g);
  } else if (schema) {
    st = mimo_jg_compile(schema, &g);
  } else {
    for (char *save = NULL, *t = strtok_r(spec, "\n", &save); t && n_choices < 8; t = strtok_r(NULL, "\n", &save))
      choices[n_choices++] = t;
    st = mimo_jg_choice(choices, n_choices, &g);
  }
  if (st != MIMO_OK) {
    if (!mimo_errmsg()[0])
      abort();
    json_decref(schema);
    free(spec);
    return 0;
  }
  const uint8_t *out = nul ? nul + 1 : data + size;
  const size_t n = nul ? size - head - 1 : 0;
  char *fed = malloc(n + 1);
  size_t k = 0;
  mimo_jg_state s;
  mimo_jg_start(g, &s);
  for (size_t i = 0; fed && i < n; i++) {
    mimo_jg_state before = s;
    if (!mimo_jg_feed(g, &s, out[i])) {
      if (memcmp(&before, &s, sizeof s))
        abort();
      continue;
    }
    fed[k++] = (char)out[i];
    if (mimo_jg_done(g, &s) && !tag) {
      if (schema) {
        /* (jansson refuses numbers past a double's range and \u0000 in object keys, both valid JSON; \u0000 in
         * values needs its flag) */
        json_t *v = json_loadb(fed, k, JSON_DECODE_ANY | JSON_DECODE_INT_AS_REAL | JSON_ALLOW_NUL, &err);
        if (!v && !strstr(err.text, "overflow") && !strstr(err.text, "NUL byte in object key"))
          abort();
        json_decref(v);
      } else {
        bool hit = false;
        for (int c = 0; c < n_choices; c++)
          hit |= strlen(choices[c]) == k && !memcmp(choices[c], fed, k);
        if (!hit)
          abort();
      }
    }
  }
  free(fed);
  mimo_jg_free(g);
  json_decref(schema);
  free(spec);
  return 0;
}
