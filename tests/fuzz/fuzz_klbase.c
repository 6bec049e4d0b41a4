/* A base-run file of `mimo perplexity --kl-base` (quant/eval.h) of any bytes: the header reader either accepts
 * exactly the header it was asked for or refuses with a message, and reads no further than its MIMO_KL_HEADER_BYTES. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "core/status.h"
#include "quant/eval.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  FILE *f = fmemopen((void *)data, size, "rb");
  if (!f)
    return 0;
  static const int ids[4] = {1, 2, 3, 4};
  const mimo_kl_header want = {.vocab = 640, .ctx = 4, .score_from = 2, .chunks = 1, .n_tokens = 4,
                               .tokens_hash = mimo_tokens_hash(ids, 4)};
  uint32_t top = 0;
  const mimo_status st = mimo_kl_read_header(f, "fuzz/base", &want, &top);
  const long at = ftell(f);
  fclose(f);
  if (st != MIMO_OK && mimo_errmsg()[0] == 0)
    abort();
  if (at > MIMO_KL_HEADER_BYTES || (st == MIMO_OK && (size < MIMO_KL_HEADER_BYTES || at != MIMO_KL_HEADER_BYTES ||
                                                       top > want.vocab)))
    abort();
  return 0;
}
