/* Fuzzes the tokenizer. First input byte even: encode the rest with the tiny
 * tokenizer of tests/text/tiny_tokenizer.h and check decode/streaming agree and
 * that decode(encode(x)) is valid UTF-8. Odd: load the rest as a tokenizer.json
 * body and, if it loads, encode a fixed string with it. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../text/tiny_tokenizer.h"
#include "text/tok_internal.h"
#include "text/tokenizer.h"

static mimo_tok *tiny_tok;

static void check_encode(const mimo_tok *t, const char *s, size_t n) {
  int *ids;
  size_t nid;
  if (mimo_tok_encode(t, s, n, &ids, &nid) != MIMO_OK)
    return;
  char *txt;
  size_t tl;
  if (mimo_tok_decode(t, ids, nid, 0, &txt, &tl) == MIMO_OK) {
    if (!tok_utf8_valid(txt, tl))
      abort();
    mimo_detok d;
    mimo_detok_init(&d, t, 0);
    tok_buf acc = {0};
    const char *o;
    size_t ol;
    for (size_t i = 0; i < nid; i++)
      if (mimo_detok_push(&d, ids[i], &o, &ol) == MIMO_OK)
        tok_buf_put(&acc, o, ol);
    if (mimo_detok_flush(&d, &o, &ol) == MIMO_OK)
      tok_buf_put(&acc, o, ol);
    if (acc.n != tl || (tl && memcmp(acc.p, txt, tl)))
      abort(); /* streaming must equal batch decoding */
    free(acc.p);
    mimo_detok_free(&d);
    free(txt);
  }
  free(ids);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (!tiny_tok) {
    char *j = tiny_tokenizer_json(1);
    if (!j || mimo_tok_load_json(j, strlen(j), NULL, 0, &tiny_tok) != MIMO_OK)
      abort();
    free(j);
  }
  if (size == 0)
    return 0;
  if ((data[0] & 1) == 0) {
    check_encode(tiny_tok, (const char *)data + 1, size - 1);
    return 0;
  }
  mimo_tok *t;
  if (mimo_tok_load_json((const char *)data + 1, size - 1, NULL, 0, &t) == MIMO_OK) {
    static const char s[] = "Hello  world's <|end|> caf\xC3\xA9 123\r\n\xFF\xF0\x9F\x98\x80";
    check_encode(t, s, sizeof s - 1);
    mimo_tok_free(t);
  }
  return 0;
}
