/* Base64 and data: URLs (core/base64.h) over any bytes. A decode that succeeds yields exactly 6 bits per alphabet
 * character (whole bytes), and re-encoding the output with the encoder here decodes back to it; a failure is
 * MIMO_E_INVALID with nothing allocated. A data URL that parses has a lower-case media type that fits its buffer. */
#include <ctype.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/base64.h"

static size_t encode(const uint8_t *p, size_t n, char *o) {
  static const char A[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  size_t k = 0;
  for (size_t i = 0; i < n; i += 3) {
    uint32_t v = (uint32_t)p[i] << 16 | (i + 1 < n ? (uint32_t)p[i + 1] << 8 : 0) | (i + 2 < n ? p[i + 2] : 0);
    for (size_t c = 0; c < 4; c++)
      o[k++] = c <= n - i ? A[(v >> (18 - 6 * c)) & 63] : '=';
  }
  return k;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  uint8_t *out;
  size_t n;
  mimo_status st = mimo_base64_decode((const char *)data, size, &out, &n);
  if (st == MIMO_OK) {
    size_t k = 0;
    for (size_t i = 0; i < size; i++)
      k += isalnum(data[i]) || data[i] == '+' || data[i] == '/';
    if (!out || n != k * 6 / 8)
      abort();
    char *enc = malloc(n / 3 * 4 + 5);
    size_t en = encode(out, n, enc);
    uint8_t *again;
    size_t an;
    if (mimo_base64_decode(enc, en, &again, &an) != MIMO_OK || an != n || memcmp(again, out, n))
      abort();
    free(again);
    free(enc);
    free(out);
  } else if (st != MIMO_E_INVALID || out || n) {
    abort();
  }

  char *url = malloc(size + 1), mt[24];
  memcpy(url, data, size);
  url[size] = 0;
  uint8_t *bytes;
  st = mimo_data_url_parse(url, &bytes, &n, mt, sizeof mt);
  if (st == MIMO_OK) {
    if (!bytes || strlen(mt) >= sizeof mt)
      abort();
    for (const char *c = mt; *c; c++)
      if (isupper((unsigned char)*c))
        abort();
    free(bytes);
  } else if (st != MIMO_E_INVALID || bytes) {
    abort();
  }
  free(url);
  return 0;
}
