/* A tiny byte-level BPE tokenizer.json (Qwen2 regex, NFC, 256 byte tokens, a
 * few merges in both serialisations, added tokens with every flag) shared by the
 * tokenizer unit tests and the fuzzer. tiny_tokenizer_json() returns malloc'd text. */
#ifndef MIMO_TESTS_TINY_TOKENIZER_H
#define MIMO_TESTS_TINY_TOKENIZER_H
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* byte -> GPT-2 alphabet code point, written independently of the library */
static unsigned tiny_b2u(unsigned b) {
  if ((b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE)
    return b;
  unsigned k = 0;
  for (unsigned i = 0; i < b; i++)
    k += !((i >= 0x21 && i <= 0x7E) || (i >= 0xA1 && i <= 0xAC) || i >= 0xAE);
  return 256 + k;
}

static int tiny_put_u(char *o, unsigned cp) {
  if (cp < 0x80) {
    if (cp == '"' || cp == '\\')
      return sprintf(o, "\\%c", (char)cp);
    return sprintf(o, "%c", (char)cp);
  }
  return sprintf(o, "\\u%04x", cp);
}

/* pair_merges: 1 = ["a","b"] form, 0 = legacy "a b" strings */
static char *tiny_tokenizer_json(int pair_merges) {
  static const char *merges[][2] = {{"\\u0120", "t"}, {"h", "e"}, {"\\u0120t", "he"}, {"i", "n"}, {"\\u0120", "a"},
                                    {"e", "r"},       {"o", "n"}, {"\\u0120", "\\u0120"}, {"l", "l"}, {"he", "ll"}};
  static const char *extra[] = {"\\u0120t", "he", "\\u0120the", "in", "\\u0120a", "er", "on", "\\u0120\\u0120", "ll",
                                "hell"};
  size_t cap = 64 * 1024;
  char *o = malloc(cap), *p = o;
  if (!o)
    return NULL;
  p += sprintf(p, "{\"version\":\"1.0\",\"added_tokens\":["
                  "{\"id\":266,\"content\":\"<|end|>\",\"special\":true,\"normalized\":false},"
                  "{\"id\":267,\"content\":\"<L>\",\"special\":true,\"lstrip\":true,\"normalized\":false},"
                  "{\"id\":268,\"content\":\"<R>\",\"special\":false,\"rstrip\":true,\"normalized\":false},"
                  "{\"id\":269,\"content\":\"word\",\"special\":false,\"single_word\":true,\"normalized\":false},"
                  "{\"id\":270,\"content\":\"caf\\u00e9\",\"special\":false,\"normalized\":true}],"
                  "\"normalizer\":{\"type\":\"NFC\"},\"pre_tokenizer\":{\"type\":\"Sequence\",\"pretokenizers\":["
                  "{\"type\":\"Split\",\"pattern\":{\"Regex\":\"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\\\r\\\\n\\\\p{L}"
                  "\\\\p{N}]?\\\\p{L}+|\\\\p{N}| ?[^\\\\s\\\\p{L}\\\\p{N}]+[\\\\r\\\\n]*|\\\\s*[\\\\r\\\\n]+|"
                  "\\\\s+(?!\\\\S)|\\\\s+\"},\"behavior\":\"Isolated\",\"invert\":false},"
                  "{\"type\":\"ByteLevel\",\"add_prefix_space\":false,\"trim_offsets\":false,\"use_regex\":false}]},"
                  "\"decoder\":{\"type\":\"ByteLevel\"},\"model\":{\"type\":\"BPE\",\"unk_token\":null,"
                  "\"byte_fallback\":false,\"vocab\":{");
  for (unsigned b = 0; b < 256; b++) {
    p += sprintf(p, "%s\"", b ? "," : "");
    p += tiny_put_u(p, tiny_b2u(b));
    p += sprintf(p, "\":%u", b);
  }
  for (unsigned i = 0; i < 10; i++)
    p += sprintf(p, ",\"%s\":%u", extra[i], 256 + i);
  p += sprintf(p, "},\"merges\":[");
  for (unsigned i = 0; i < 10; i++) {
    if (pair_merges)
      p += sprintf(p, "%s[\"%s\",\"%s\"]", i ? "," : "", merges[i][0], merges[i][1]);
    else
      p += sprintf(p, "%s\"%s %s\"", i ? "," : "", merges[i][0], merges[i][1]);
  }
  sprintf(p, "]}}");
  return o;
}
#endif
