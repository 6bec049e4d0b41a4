/* Reasoning split and qwen3_xml tool-call parsing: expected results for the
 * cases of spec §5.3, and the streaming property — feeding the text cut at
 * every byte (two pieces) or in random pieces gives exactly the one-shot result.
 * The server's JSON string writer: ill-formed UTF-8 never leaves it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/num.h"
#include "server/sbuf.h"
#include "text/reasoning.h"
#include "text/toolcall.h"

typedef struct {
  char r[4096], c[4096];
  size_t nr, nc;
} split;

static void on_text(void *ctx, mimo_text_kind k, const char *s, size_t n) {
  split *o = ctx;
  char *dst = k == MIMO_TEXT_REASONING ? o->r : o->c;
  size_t *len = k == MIMO_TEXT_REASONING ? &o->nr : &o->nc;
  assert_true(*len + n < sizeof o->r);
  memcpy(dst + *len, s, n);
  *len += n;
  dst[*len] = 0;
}

static void reason_pieces(const char *text, bool thinking, const size_t *cuts, int ncuts, split *o) {
  memset(o, 0, sizeof *o);
  mimo_reasoning r;
  mimo_reasoning_init(&r, thinking, on_text, o);
  size_t prev = 0, n = strlen(text);
  for (int i = 0; i <= ncuts; i++) {
    size_t end = i < ncuts ? cuts[i] : n;
    mimo_reasoning_feed(&r, text + prev, end - prev);
    prev = end;
  }
  mimo_reasoning_finish(&r);
}

static void check_reasoning(const char *text, bool thinking, const char *want_r, const char *want_c) {
  split one, two;
  reason_pieces(text, thinking, NULL, 0, &one);
  if (strcmp(one.r, want_r) || strcmp(one.c, want_c))
    fail_msg("reasoning of '%s': got ['%s' | '%s'], want ['%s' | '%s']", text, one.r, one.c, want_r, want_c);
  size_t n = strlen(text);
  for (size_t cut = 0; cut <= n; cut++) {
    reason_pieces(text, thinking, &cut, 1, &two);
    if (strcmp(one.r, two.r) || strcmp(one.c, two.c))
      fail_msg("'%s' cut at %zu differs", text, cut);
  }
  mimo_rng rng;
  mimo_rng_seed(&rng, n);
  for (int trial = 0; trial < 50; trial++) {
    size_t cuts[16];
    int k = (int)(mimo_rng_next(&rng) % 16);
    for (int i = 0; i < k; i++)
      cuts[i] = (size_t)(mimo_rng_next(&rng) % (n + 1));
    for (int i = 1; i < k; i++) /* sort */
      for (int j = i; j > 0 && cuts[j] < cuts[j - 1]; j--) {
        size_t t = cuts[j];
        cuts[j] = cuts[j - 1];
        cuts[j - 1] = t;
      }
    reason_pieces(text, thinking, cuts, k, &two);
    assert_string_equal(one.r, two.r);
    assert_string_equal(one.c, two.c);
  }
}

static void test_reasoning(void **state) {
  (void)state;
  check_reasoning("<think>\nplan it</think>\n\nThe answer.", true, "\nplan it", "\n\nThe answer.");
  check_reasoning("plan</think>answer", true, "plan", "answer");
  check_reasoning("still thinking, cut off", true, "still thinking, cut off", "");
  check_reasoning("<think>a < b and </thin but not closed", true, "a < b and </thin but not closed", "");
  check_reasoning("answer only", false, "", "answer only");
  check_reasoning("<think>x</think>y", false, "", "<think>x</think>y");
  check_reasoning("<think>mid <think> text</think>ok", true, "mid <think> text", "ok");
  check_reasoning("I will call.<tool_call>\n<function=f>\n</function>\n</tool_call>", true, "I will call.",
                  "<tool_call>\n<function=f>\n</function>\n</tool_call>");
  check_reasoning("<tool_call> is a tag I mention", true, "<tool_call> is a tag I mention", "");
  check_reasoning("<thinking>not the tag</think>c", true, "<thinking>not the tag", "c");
  check_reasoning("", true, "", "");
  check_reasoning("<", true, "<", "");
}

/* ---- tool calls ---- */

typedef struct {
  char content[4096], args[8][1024], names[8][64], ids[8][32];
  size_t nc, na[8];
  int n_calls, ended[8];
} calls;

static void t_content(void *ctx, const char *s, size_t n) {
  calls *c = ctx;
  memcpy(c->content + c->nc, s, n);
  c->nc += n;
  c->content[c->nc] = 0;
}
static void t_start(void *ctx, int i, const char *id, const char *name) {
  calls *c = ctx;
  assert_int_equal(i, c->n_calls);
  snprintf(c->names[i], sizeof c->names[i], "%s", name);
  snprintf(c->ids[i], sizeof c->ids[i], "%s", id);
  c->n_calls++;
}
static void t_args(void *ctx, int i, const char *s, size_t n) {
  calls *c = ctx;
  assert_false(c->ended[i]);
  memcpy(c->args[i] + c->na[i], s, n);
  c->na[i] += n;
  c->args[i][c->na[i]] = 0;
}
static void t_end(void *ctx, int i) { ((calls *)ctx)->ended[i] = 1; }

static void tool_pieces(const char *text, const json_t *tools, const size_t *cuts, int ncuts, calls *c) {
  memset(c, 0, sizeof *c);
  mimo_toolcall_sink sink = {t_content, t_start, t_args, t_end, c};
  mimo_toolcall *p = mimo_toolcall_new(tools, 7, &sink);
  size_t prev = 0, n = strlen(text);
  for (int i = 0; i <= ncuts; i++) {
    size_t end = i < ncuts ? cuts[i] : n;
    mimo_toolcall_feed(p, text + prev, end - prev);
    prev = end;
  }
  mimo_toolcall_finish(p);
  mimo_toolcall_free(p);
}

static void same_calls(const calls *a, const calls *b) {
  assert_string_equal(a->content, b->content);
  assert_int_equal(a->n_calls, b->n_calls);
  for (int i = 0; i < a->n_calls; i++) {
    assert_string_equal(a->names[i], b->names[i]);
    assert_string_equal(a->args[i], b->args[i]);
    assert_true(b->ended[i]);
  }
}

/* Expected: content, then name/arguments pairs (arguments compared as JSON values). */
static void check_tools(const char *text, const json_t *tools, const char *want_content, int n_calls, ...) {
  calls one, two;
  tool_pieces(text, tools, NULL, 0, &one);
  if (strcmp(one.content, want_content))
    fail_msg("content of '%s': got '%s' want '%s'", text, one.content, want_content);
  assert_int_equal(one.n_calls, n_calls);
  va_list ap;
  va_start(ap, n_calls);
  for (int i = 0; i < n_calls; i++) {
    const char *name = va_arg(ap, const char *), *args = va_arg(ap, const char *);
    assert_string_equal(one.names[i], name);
    assert_int_equal(strlen(one.ids[i]), 29);
    assert_true(one.ended[i]);
    json_error_t e;
    json_t *got = json_loads(one.args[i], 0, &e), *want = json_loads(args, 0, &e);
    if (!got || !json_equal(got, want))
      fail_msg("call %d of '%s': arguments '%s', want %s", i, text, one.args[i], args);
    json_decref(got);
    json_decref(want);
  }
  va_end(ap);
  size_t n = strlen(text);
  for (size_t cut = 0; cut <= n; cut++) {
    tool_pieces(text, tools, &cut, 1, &two);
    same_calls(&one, &two);
  }
  mimo_rng rng;
  mimo_rng_seed(&rng, n + 1);
  for (int trial = 0; trial < 40; trial++) {
    size_t cuts[24];
    int k = (int)(mimo_rng_next(&rng) % 24);
    for (int i = 0; i < k; i++)
      cuts[i] = (size_t)(mimo_rng_next(&rng) % (n + 1));
    for (int i = 1; i < k; i++)
      for (int j = i; j > 0 && cuts[j] < cuts[j - 1]; j--) {
        size_t t = cuts[j];
        cuts[j] = cuts[j - 1];
        cuts[j - 1] = t;
      }
    tool_pieces(text, tools, cuts, k, &two);
    same_calls(&one, &two);
  }
  /* non-streaming API agrees */
  char *content;
  json_t *arr;
  mimo_toolcall_parse_all(text, n, tools, 7, &content, &arr);
  assert_int_equal(json_array_size(arr), (size_t)n_calls);
  for (int i = 0; i < n_calls; i++)
    assert_string_equal(json_string_value(json_object_get(json_object_get(json_array_get(arr, (size_t)i), "function"), "arguments")),
                        one.args[i]);
  free(content);
  json_decref(arr);
}

static void test_toolcalls(void **state) {
  (void)state;
  json_error_t e;
  json_t *tools = json_loads(
      "[{\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"parameters\":{\"type\":\"object\",\"properties\":{"
      "\"city\":{\"type\":\"string\"},\"days\":{\"type\":\"integer\"},\"temp\":{\"type\":\"number\"},"
      "\"metric\":{\"type\":\"boolean\"},\"opts\":{\"type\":\"object\"},\"tags\":{\"type\":\"array\"},"
      "\"maybe\":{\"type\":[\"integer\",\"null\"]}}}}}]",
      0, &e);
  assert_non_null(tools);
  check_tools("plain text, no call", tools, "plain text, no call", 0);
  check_tools("<tool_call>\n<function=get_weather>\n<parameter=city>\nParis\n</parameter>\n</function>\n</tool_call>",
              tools, "", 1, "get_weather", "{\"city\": \"Paris\"}");
  check_tools("Let me check.\n<tool_call>\n<function=get_weather>\n<parameter=city>\nNew \"York\"\nline2\n\n</parameter>\n"
              "<parameter=days>\n3\n</parameter>\n<parameter=temp>\n21.5\n</parameter>\n<parameter=metric>\nTrue\n"
              "</parameter>\n<parameter=opts>\n{'unit': 'C', 'x': None}\n</parameter>\n<parameter=tags>\n[1, \"a\"]\n"
              "</parameter>\n<parameter=maybe>\nnull\n</parameter>\n</function>\n</tool_call>",
              tools, "Let me check.\n", 1, "get_weather",
              "{\"city\": \"New \\\"York\\\"\\nline2\\n\", \"days\": 3, \"temp\": 21.5, \"metric\": true, "
              "\"opts\": {\"unit\": \"C\", \"x\": null}, \"tags\": [1, \"a\"], \"maybe\": null}");
  check_tools("<tool_call>\n<function=get_weather>\n<parameter=city>\n北京 ☀\n</parameter>\n</function>\n</tool_call>\n"
              "<tool_call>\n<function=other>\n<parameter=q>\n{\"k\": [1]}\n</parameter>\n<parameter=s>\nplain\n"
              "</parameter>\n</function>\n</tool_call>",
              tools, "", 2, "get_weather", "{\"city\": \"北京 ☀\"}", "other", "{\"q\": {\"k\": [1]}, \"s\": \"plain\"}");
  check_tools("<tool_call>\n<function=get_weather>\n</function>\n</tool_call>after", tools, "after", 1, "get_weather",
              "{}");
  /* unterminated: closed with what it has */
  check_tools("<tool_call>\n<function=get_weather>\n<parameter=city>\nRo", tools, "", 1, "get_weather",
              "{\"city\": \"Ro\"}");
  /* not call syntax: stays content */
  check_tools("a <tool_call> b", tools, "a <tool_call> b", 0);
  check_tools("x <tool_call>\n<function=bro\nken", tools, "x <tool_call>\n<function=bro\nken", 0);
  check_tools("<tool_call>\n<function=get_weather>\n<parameter=days>\nmany\n</parameter>\n</function>\n</tool_call>",
              tools, "", 1, "get_weather", "{\"days\": \"many\"}");
  json_decref(tools);
  /* no tools at all: parameters without schema -> JSON if valid, else string */
  check_tools("<tool_call>\n<function=f>\n<parameter=a>\n12\n</parameter>\n<parameter=b>\nhi there\n</parameter>\n"
              "</function>\n</tool_call>",
              NULL, "", 1, "f", "{\"a\": 12, \"b\": \"hi there\"}");
  char *pre = mimo_toolcall_forced_prefix("get_weather");
  assert_string_equal(pre, "<tool_call>\n<function=get_weather>\n");
  free(pre);
  assert_string_equal(mimo_toolcall_forced_prefix(NULL), "<tool_call>\n<function=");
}

/* A token's bytes are any bytes (byte-level BPE), and a server reply's strings must still be UTF-8 (a strict
 * client's decoder fails otherwise). Expected: the Unicode standard's "U+FFFD substitution of maximal subparts"
 * (§3.9, the examples of its Table 3-8 and around it), which is also what Python's bytes.decode('utf-8',
 * 'replace') and the WHATWG decoder produce. */
static void test_json_utf8(void **state) {
  (void)state;
  static const struct {
    const char *in, *want;
  } cases[] = {
      {"a\xF0\x9F\x98\x80" "b", "a\xF0\x9F\x98\x80" "b"},         /* well-formed 4-byte: as is */
      {"\xC0\xAF", "\xEF\xBF\xBD\xEF\xBF\xBD"},                 /* overlong '/': C0 never starts a sequence */
      {"\xE0\x80\xAF", "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD"}, /* overlong 3-byte */
      {"\xED\xA0\x80", "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD"}, /* a surrogate */
      {"\xF4\x90\x80\x80", "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD"}, /* past U+10FFFF */
      {"\xF5\x80", "\xEF\xBF\xBD\xEF\xBF\xBD"},                 /* F5 never starts a sequence */
      {"x\xE2\x82\"", "x\xEF\xBF\xBD\\\""},                    /* truncated: one U+FFFD, then the quote escaped */
      {"\xE2\x82", "\xEF\xBF\xBD"},                               /* truncated at the end */
      {"\xE2\x82\xAC\x80\n", "\xE2\x82\xAC\xEF\xBF\xBD\\n"},   /* a stray continuation byte */
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    mimo_sbuf b = {0};
    mimo_sbuf_json_str(&b, cases[i].in, strlen(cases[i].in));
    assert_non_null(b.p);
    assert_string_equal(b.p, cases[i].want);
    mimo_sbuf_free(&b);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_reasoning), cmocka_unit_test(test_toolcalls),
                                     cmocka_unit_test(test_json_utf8)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}
