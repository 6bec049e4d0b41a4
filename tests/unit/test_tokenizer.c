/* Tokenizer pieces: byte-level alphabet, UTF-8 repair, NFC, merges parsing in
 * both serialisations, added-token flags, streaming decode, error messages and
 * the synthetic tokenizer (cross-checked against the Rust library when node is
 * available). Expected values are hand-derived from the HF semantics. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "../text/tiny_tokenizer.h"
#include "core/fileio.h"
#include "text/synth_tokenizer.h"
#include "text/tok_internal.h"
#include "text/tokenizer.h"

static mimo_tok *tiny(int pairs) {
  char *j = tiny_tokenizer_json(pairs);
  mimo_tok *t = NULL;
  mimo_status st = mimo_tok_load_json(j, strlen(j), NULL, 0, &t);
  if (st != MIMO_OK)
    fprintf(stderr, "%s\n", mimo_errmsg());
  assert_int_equal(st, MIMO_OK);
  free(j);
  return t;
}

static void enc_eq(const mimo_tok *t, const char *s, const int *want, size_t nwant) {
  int *ids;
  size_t n;
  assert_int_equal(mimo_tok_encode(t, s, strlen(s), &ids, &n), MIMO_OK);
  if (n != nwant || memcmp(ids, want, n * sizeof *ids)) {
    fprintf(stderr, "encode(\"%s\"): got", s);
    for (size_t i = 0; i < n; i++)
      fprintf(stderr, " %d", ids[i]);
    fprintf(stderr, "\n");
  }
  assert_int_equal(n, nwant);
  assert_memory_equal(ids, want, n * sizeof *ids);
  free(ids);
}
#define ENC(t, s, ...)                                                                                                \
  do {                                                                                                                \
    const int w_[] = {__VA_ARGS__};                                                                                   \
    enc_eq(t, s, w_, sizeof w_ / sizeof w_[0]);                                                                       \
  } while (0)

static void test_byte_level_map(void **st) {
  (void)st;
  int seen[324] = {0};
  for (int b = 0; b < 256; b++) {
    uint32_t cp = tok_byte_to_cp((unsigned char)b);
    assert_int_equal(cp, tiny_b2u((unsigned)b)); /* independent definition */
    assert_true(cp < 324);
    assert_int_equal(seen[cp]++, 0);
    assert_int_equal(tok_cp_to_byte(cp), b);
  }
  assert_int_equal(tok_byte_to_cp(' '), 0x120);  /* Ġ */
  assert_int_equal(tok_byte_to_cp('\n'), 0x10A); /* Ċ */
  assert_int_equal(tok_byte_to_cp(0xAD), 0x143);
  assert_int_equal(tok_cp_to_byte(0x144), -1);
  assert_int_equal(tok_cp_to_byte(0xAD), -1);
}

static void sanitize_eq(const char *in, size_t n, const char *want) {
  tok_buf b = {0};
  assert_int_equal(tok_utf8_sanitize(in, n, &b), MIMO_OK);
  assert_int_equal(b.n, strlen(want));
  assert_memory_equal(b.p, want, b.n);
  free(b.p);
}

static void test_utf8_repair(void **st) {
  (void)st;
#define R "\xEF\xBF\xBD"
  sanitize_eq("ab", 2, "ab");
  sanitize_eq("\xFF", 1, R);
  sanitize_eq("\xC0\x80", 2, R R);              /* overlong lead is never valid */
  sanitize_eq("\xED\xA0\x80", 3, R R R);        /* surrogate: E D then lone continuations */
  sanitize_eq("\xE2\x82", 2, R);                /* truncated 3-byte: one maximal subpart */
  sanitize_eq("\xE2\x82x", 3, R "x");
  sanitize_eq("\xF0\x9F\x98", 3, R);
  sanitize_eq("\xF4\x90\x80\x80", 4, R R R R);  /* above U+10FFFF */
  sanitize_eq("\xE0\x80\xAF", 3, R R R);
  sanitize_eq("a\xC3\xA9\x80z", 5, "a\xC3\xA9" R "z");
  assert_true(tok_utf8_valid("\xF0\x9F\x98\x80", 4));
  assert_false(tok_utf8_valid("\xF0\x9F\x98", 3));
#undef R
}

static void norm_eq(const char *type, const char *in, const char *want) {
  tok_norm nm;
  char js[64];
  snprintf(js, sizeof js, "{\"type\":\"%s\"}", type);
  (void)js;
  memset(&nm, 0, sizeof nm);
  nm.n = 1;
  nm.steps[0] = !strcmp(type, "NFC") ? TOK_NORM_NFC : !strcmp(type, "NFD") ? TOK_NORM_NFD : TOK_NORM_NFKC;
  tok_buf b = {0};
  assert_int_equal(tok_norm_apply(&nm, in, strlen(in), &b), MIMO_OK);
  assert_int_equal(b.n, strlen(want));
  assert_memory_equal(b.p, want, b.n);
  free(b.p);
}

static void test_nfc(void **st) {
  (void)st;
  norm_eq("NFC", "plain ascii", "plain ascii");
  norm_eq("NFC", "e\xCC\x81", "\xC3\xA9");                       /* e + U+0301 -> é */
  norm_eq("NFC", "\xE1\x84\x80\xE1\x85\xA1", "\xEA\xB0\x80");    /* jamo G + A -> 가 */
  norm_eq("NFC", "\xEA\xB0\x80\xE1\x86\xA8", "\xEA\xB0\x81");    /* 가 + final K -> 각 */
  norm_eq("NFC", "\xE2\x84\xAB", "\xC3\x85");                     /* Angstrom sign -> Å */
  norm_eq("NFC", "\xE4\xBD\xA0\xE5\xA5\xBD", "\xE4\xBD\xA0\xE5\xA5\xBD"); /* CJK fast path */
  norm_eq("NFC", "\xE3\x81\x8B\xE3\x82\x99", "\xE3\x81\x8C");    /* か + dakuten -> が */
  norm_eq("NFD", "\xC3\xA9", "e\xCC\x81");
  norm_eq("NFKC", "\xEF\xBC\xA1\xE2\x91\xA0", "A1");            /* fullwidth A, circled 1 */
}

static void test_merges_both_forms(void **st) {
  (void)st;
  for (int pairs = 0; pairs < 2; pairs++) {
    mimo_tok *t = tiny(pairs);
    assert_int_equal(mimo_tok_vocab_size(t), 271);
    /* " the" -> Ġthe (merges Ġ t, h e, Ġt he); "hello" -> hell + o */
    ENC(t, " the", 258);
    ENC(t, "hello", 265, 'o');
    ENC(t, "in on", 259, ' ', 262); /* no Ġ o merge: Ġ stays alone */
    mimo_tok_free(t);
  }
}

static void test_added_flags(void **st) {
  (void)st;
  mimo_tok *t = tiny(1);
  ENC(t, "a<|end|>b", 'a', 266, 'b');
  ENC(t, "x  <L>y", 'x', 267, 'y');          /* lstrip eats the spaces before */
  ENC(t, "<R>   z", 268, 'z');               /* rstrip eats the spaces after */
  ENC(t, "a word b", 'a', ' ', 269, ' ', 'b'); /* single_word at word boundaries */
  ENC(t, "swordfish", 's', 'w', 'o', 'r', 'd', 'f', 'i', 's', 'h');
  ENC(t, "cafe\xCC\x81", 270);               /* normalized token matched after NFC */
  ENC(t, "xcaf\xC3\xA9", 'x', 270);
  ENC(t, "<|end|><|end|>", 266, 266);
  ENC(t, "\xFF", 0xEF, 0xBF, 0xBD);          /* invalid byte -> U+FFFD's bytes */
  assert_int_equal(mimo_tok_token_id(t, "<R>"), 268);
  assert_int_equal(mimo_tok_token_id(t, "\xC4\xA0the"), 258);
  assert_int_equal(mimo_tok_token_id(t, "nope"), -1);
  assert_true(mimo_tok_is_special(t, 266));
  assert_false(mimo_tok_is_special(t, 268));
  mimo_tok_free(t);
}

static void test_decode_and_stream(void **st) {
  (void)st;
  mimo_tok *t = tiny(0);
  const int ids[] = {258, 266, 0xC3, 0xA9, 268, 0xE4};
  char *txt;
  size_t n;
  assert_int_equal(mimo_tok_decode(t, ids, 6, 0, &txt, &n), MIMO_OK);
  assert_string_equal(txt, " the<|end|>\xC3\xA9<R>\xEF\xBF\xBD");
  free(txt);
  assert_int_equal(mimo_tok_decode(t, ids, 6, 1, &txt, &n), MIMO_OK);
  assert_string_equal(txt, " the\xC3\xA9<R>\xEF\xBF\xBD");
  free(txt);
  const int unknown[] = {99999, -3, 'a'};
  assert_int_equal(mimo_tok_decode(t, unknown, 3, 0, &txt, &n), MIMO_OK);
  assert_string_equal(txt, "a");
  free(txt);

  mimo_detok d;
  mimo_detok_init(&d, t, 1);
  const char *o;
  size_t ol;
  char all[64] = "";
  for (int i = 0; i < 6; i++) {
    assert_int_equal(mimo_detok_push(&d, ids[i], &o, &ol), MIMO_OK);
    assert_int_equal(strlen(o), ol);
    if (i == 2)
      assert_int_equal(ol, 0); /* half of é is held back */
    if (i == 3)
      assert_string_equal(o, "\xC3\xA9");
    strcat(all, o);
  }
  assert_int_equal(mimo_detok_flush(&d, &o, &ol), MIMO_OK);
  strcat(all, o);
  assert_string_equal(all, " the\xC3\xA9<R>\xEF\xBF\xBD");
  /* an invalid byte after a held lead byte: both become U+FFFD like batch decode */
  const int bad[] = {0xE4, 0xFF, 'x'};
  all[0] = 0;
  for (int i = 0; i < 3; i++) {
    assert_int_equal(mimo_detok_push(&d, bad[i], &o, &ol), MIMO_OK);
    strcat(all, o);
  }
  assert_int_equal(mimo_detok_flush(&d, &o, &ol), MIMO_OK);
  strcat(all, o);
  assert_string_equal(all, "\xEF\xBF\xBD\xEF\xBF\xBDx");
  mimo_detok_free(&d);
  mimo_tok_free(t);
}

static void expect_error(const char *from, const char *to, const char *needle) {
  char *j = tiny_tokenizer_json(0);
  char *p = strstr(j, from);
  assert_non_null(p);
  size_t fl = strlen(from), tl = strlen(to), jl = strlen(j);
  char *k = malloc(jl + tl + 1);
  memcpy(k, j, (size_t)(p - j));
  memcpy(k + (p - j), to, tl);
  strcpy(k + (p - j) + tl, p + fl);
  mimo_tok *t = NULL;
  assert_int_not_equal(mimo_tok_load_json(k, strlen(k), NULL, 0, &t), MIMO_OK);
  assert_null(t);
  if (!strstr(mimo_errmsg(), needle))
    fprintf(stderr, "message '%s' lacks '%s'\n", mimo_errmsg(), needle);
  assert_non_null(strstr(mimo_errmsg(), needle));
  free(j);
  free(k);
}

static void test_errors(void **st) {
  (void)st;
  expect_error("\"type\":\"NFC\"", "\"type\":\"Lowercase\"", "normalizer \"Lowercase\"");
  expect_error("{\"type\":\"ByteLevel\",\"add_prefix_space\"", "{\"type\":\"Metaspace\",\"add_prefix_space\"",
               "pre_tokenizer \"Metaspace\"");
  expect_error("\"type\":\"BPE\"", "\"type\":\"WordPiece\"", "model type \"WordPiece\"");
  expect_error("\"decoder\":{\"type\":\"ByteLevel\"}", "\"decoder\":{\"type\":\"WordPiece\"}", "decoder \"WordPiece\"");
  expect_error("\"he ll\"", "\"he zz\"", "merges[9]");
  expect_error("\"behavior\":\"Isolated\"", "\"behavior\":\"Sideways\"", "behavior \"Sideways\"");
  expect_error("(?i:", "(?i:[", "bad regex");
  expect_error("\"byte_fallback\":false", "\"byte_fallback\":true", "byte_fallback");
  mimo_tok *t = NULL;
  assert_int_not_equal(mimo_tok_load_json("{", 1, NULL, 0, &t), MIMO_OK);
  assert_int_not_equal(mimo_tok_load("/nonexistent-dir", &t), MIMO_OK);
  assert_non_null(strstr(mimo_errmsg(), "/nonexistent-dir/tokenizer.json"));
}

static void test_synth(void **st) {
  (void)st;
  char dir[] = "/tmp/mimo-synth-tok-XXXXXX";
  assert_non_null(mkdtemp(dir));
  mimo_synth_tok_ids ids;
  assert_int_equal(mimo_synth_tokenizer(dir, 1000, 7, &ids), MIMO_OK);
  mimo_tok *t;
  assert_int_equal(mimo_tok_load(dir, &t), MIMO_OK);
  assert_int_equal(mimo_tok_vocab_size(t), 1000);
  assert_int_equal(ids.vocab_size, 1000);
  assert_int_equal(ids.endoftext, 968);
  assert_int_equal(mimo_tok_token_id(t, "<|endoftext|>"), ids.endoftext);
  assert_int_equal(mimo_tok_token_id(t, "<|im_start|>"), ids.im_start);
  assert_int_equal(mimo_tok_token_id(t, "<|im_end|>"), ids.im_end);
  assert_int_equal(mimo_tok_token_id(t, "<think>"), ids.think);
  assert_int_equal(mimo_tok_token_id(t, "</think>"), ids.think_end);
  assert_int_equal(mimo_tok_token_id(t, "<tool_call>"), ids.tool_call);
  assert_int_equal(mimo_tok_token_id(t, "</tool_call>"), ids.tool_call_end);
  assert_int_equal(mimo_tok_token_id(t, "<|image_pad|>"), ids.image_pad);
  assert_int_equal(mimo_tok_token_id(t, "<|video_pad|>"), ids.video_pad);
  assert_int_equal(mimo_tok_token_id(t, "<|vision_start|>"), ids.vision_start);
  assert_int_equal(mimo_tok_token_id(t, "<|vision_end|>"), ids.vision_end);
  assert_int_equal(mimo_tok_token_id(t, "<|audio_pad|>"), ids.audio_pad);
  assert_int_equal(mimo_tok_token_id(t, "<|mimo_audio_eod|>"), ids.mimo_audio_eod);
  assert_int_equal(mimo_tok_token_id(t, "<|mimo_audio_end|>"), 999);
  assert_true(mimo_tok_is_special(t, ids.im_end));
  assert_false(mimo_tok_is_special(t, ids.think));
  assert_false(mimo_tok_is_special(t, ids.tool_call_end));
  /* every regular id is a distinct token; the learned merges exist */
  assert_int_not_equal(mimo_tok_token_id(t, "\xC4\xA0the"), -1);
  const char *s = "<|im_start|>user\nHello the world<|im_end|>";
  int *v;
  size_t n;
  assert_int_equal(mimo_tok_encode(t, s, strlen(s), &v, &n), MIMO_OK);
  assert_true(n >= 4);
  assert_int_equal(v[0], ids.im_start);
  assert_int_equal(v[n - 1], ids.im_end);
  char *back;
  size_t bl;
  assert_int_equal(mimo_tok_decode(t, v, n, 0, &back, &bl), MIMO_OK);
  assert_string_equal(back, s);
  free(back);
  free(v);
  mimo_tok_free(t);
  char path[256];
  snprintf(path, sizeof path, "%s/generation_config.json", dir);
  char *g;
  size_t gl;
  assert_int_equal(mimo_read_file(path, &g, &gl, 1 << 20), MIMO_OK);
  assert_non_null(strstr(g, "0.95"));
  assert_non_null(strstr(g, "968"));
  assert_non_null(strstr(g, "997"));
  free(g);
  /* same seed, same bytes */
  char dir2[] = "/tmp/mimo-synth-tok-XXXXXX";
  assert_non_null(mkdtemp(dir2));
  assert_int_equal(mimo_synth_tokenizer(dir2, 1000, 7, NULL), MIMO_OK);
  char p1[256], p2[256], *a, *b;
  size_t al, blen;
  snprintf(p1, sizeof p1, "%s/tokenizer.json", dir);
  snprintf(p2, sizeof p2, "%s/tokenizer.json", dir2);
  assert_int_equal(mimo_read_file(p1, &a, &al, 1 << 26), MIMO_OK);
  assert_int_equal(mimo_read_file(p2, &b, &blen, 1 << 26), MIMO_OK);
  assert_int_equal(al, blen);
  assert_memory_equal(a, b, al);
  free(a);
  free(b);
  assert_int_not_equal(mimo_synth_tokenizer(dir2, 100, 7, NULL), MIMO_OK);
  /* the Rust library must give the same ids on the synthetic tokenizer */
  const char *src = getenv("MIMO_SRC"), *bin = getenv("MIMO_BIN");
  if (src && bin && system("node --version >/dev/null 2>&1") == 0) {
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "bash '%s/tests/text/synth_check.sh' '%s'", src, dir);
    assert_int_equal(system(cmd), 0);
  } else {
    fprintf(stderr, "test_synth: node or MIMO_SRC/MIMO_BIN missing; Rust cross-check skipped\n");
  }
  snprintf(p1, sizeof p1, "rm -rf '%s' '%s'", dir, dir2);
  assert_int_equal(system(p1), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_byte_level_map),
      cmocka_unit_test(test_utf8_repair),
      cmocka_unit_test(test_nfc),
      cmocka_unit_test(test_merges_both_forms), cmocka_unit_test(test_added_flags),
      cmocka_unit_test(test_decode_and_stream), cmocka_unit_test(test_errors),
      cmocka_unit_test(test_synth),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
