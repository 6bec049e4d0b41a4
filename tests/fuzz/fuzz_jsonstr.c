/* The server's JSON string writer (server/sbuf.h) over any bytes (a token's text is any bytes: byte-level BPE):
 * its output, quoted, is one JSON string that jansson accepts (so well-formed UTF-8 and escaped), and when the input
 * was well-formed UTF-8 (NUL bytes included) that string is the input itself. */
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "server/sbuf.h"
#include "text/tokenizer.h"

static int well_formed(const char *s, size_t n) {
  for (size_t i = 0; i < n;) {
    size_t bad = 0, l = (unsigned char)s[i] < 0x80 ? 1 : mimo_utf8_next(s + i, n - i, &bad);
    if (!l)
      return 0;
    i += l;
  }
  return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  mimo_sbuf b = {0};
  mimo_sbuf_puts(&b, "\"");
  mimo_sbuf_json_str(&b, (const char *)data, size);
  mimo_sbuf_puts(&b, "\"");
  if (!b.p)
    return 0; /* out of memory */
  json_error_t err;
  json_t *j = json_loadb(b.p, b.len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &err);
  if (!j || !json_is_string(j))
    abort();
  if (well_formed((const char *)data, size) &&
      (json_string_length(j) != size || memcmp(json_string_value(j), data, size)))
    abort();
  json_decref(j);
  mimo_sbuf_free(&b);
  return 0;
}
