/* qwen3_xml tool calls (text/toolcall.h): expected content, names and argument
 * objects (the concatenated fragments parsed with jansson and compared with
 * json_equal), event order, and the property that any split of the text into
 * pieces gives exactly the one-piece result, which mimo_toolcall_parse_all
 * (non-streaming) also matches. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "core/num.h"
#include "text/reasoning.h"
#include "text/toolcall.h"

#define MAXC 8
typedef struct sb {
  char *p;
  size_t n;
} sb;
typedef struct calls {
  sb content, args[MAXC];
  char ids[MAXC][32], names[MAXC][64];
  int n, ended[MAXC];
} calls;

static void sb_put(sb *b, const char *s, size_t n) {
  b->p = realloc(b->p, b->n + n + 1);
  assert_non_null(b->p);
  memcpy(b->p + b->n, s, n);
  b->n += n;
  b->p[b->n] = 0;
}

static void t_content(void *ctx, const char *s, size_t n) { sb_put(&((calls *)ctx)->content, s, n); }
static void t_start(void *ctx, int i, const char *id, const char *name) {
  calls *c = ctx;
  assert_int_equal(i, c->n); /* indices 0, 1, 2 ... in order */
  assert_true(i < MAXC);
  assert_true(i == 0 || c->ended[i - 1]);
  snprintf(c->ids[i], 32, "%s", id);
  snprintf(c->names[i], 64, "%s", name);
  sb_put(&c->args[i], "", 0);
  c->n++;
}
static void t_args(void *ctx, int i, const char *s, size_t n) {
  calls *c = ctx;
  assert_true(i == c->n - 1 && !c->ended[i]);
  sb_put(&c->args[i], s, n);
}
static void t_end(void *ctx, int i) {
  calls *c = ctx;
  assert_true(i == c->n - 1 && !c->ended[i]);
  c->ended[i] = 1;
}

static calls run(const char *text, size_t n, const json_t *tools, const size_t *cuts, int nc) {
  calls c = {0};
  sb_put(&c.content, "", 0);
  mimo_toolcall_sink sink = {t_content, t_start, t_args, t_end, &c};
  mimo_toolcall *p = mimo_toolcall_new(tools, 42, &sink);
  assert_non_null(p);
  size_t at = 0;
  for (int i = 0; i <= nc; i++) {
    size_t e = i < nc ? cuts[i] : n;
    mimo_toolcall_feed(p, text + at, e - at);
    at = e;
  }
  mimo_toolcall_finish(p);
  assert_int_equal(mimo_toolcall_count(p), c.n);
  mimo_toolcall_free(p);
  for (int i = 0; i < c.n; i++)
    assert_true(c.ended[i]);
  return c;
}

static void same(const calls *a, const calls *b) {
  assert_int_equal(a->content.n, b->content.n);
  assert_memory_equal(a->content.p, b->content.p, a->content.n);
  assert_int_equal(a->n, b->n);
  for (int i = 0; i < a->n; i++) {
    assert_string_equal(a->ids[i], b->ids[i]);
    assert_string_equal(a->names[i], b->names[i]);
    assert_string_equal(a->args[i].p, b->args[i].p);
  }
}
static void drop(calls *c) {
  free(c->content.p);
  for (int i = 0; i < MAXC; i++)
    free(c->args[i].p);
}

static json_t *tools;

/* Checks text: content (streamed), then for each call a name and the expected
 * arguments as JSON text (compared as parsed values) — or NULL to skip. */
static void check(const char *text, const char *want_content, int n_calls, ...) {
  size_t n = strlen(text);
  calls one = run(text, n, tools, NULL, 0);
  assert_string_equal(one.content.p, want_content);
  assert_int_equal(one.n, n_calls);
  va_list ap;
  va_start(ap, n_calls);
  for (int i = 0; i < n_calls; i++) {
    const char *name = va_arg(ap, const char *), *want = va_arg(ap, const char *);
    assert_string_equal(one.names[i], name);
    assert_int_equal(strlen(one.ids[i]), 29);
    assert_memory_equal(one.ids[i], "call_", 5);
    for (int k = 5; k < 29; k++)
      assert_true(strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", one.ids[i][k]));
    json_error_t e;
    json_t *got = json_loads(one.args[i].p, 0, &e);
    if (!got)
      fail_msg("arguments %s do not parse: %s", one.args[i].p, e.text);
    assert_true(json_is_object(got));
    json_t *exp = json_loads(want, 0, &e);
    assert_non_null(exp);
    if (!json_equal(got, exp))
      fail_msg("arguments %s, want %s", one.args[i].p, want);
    json_decref(got);
    json_decref(exp);
  }
  va_end(ap);
  for (size_t k = 0; k <= n; k++) { /* every 2-piece split */
    calls two = run(text, n, tools, &k, 1);
    same(&one, &two);
    drop(&two);
  }
  size_t *cuts = malloc((n + 1) * sizeof *cuts);
  mimo_rng rng;
  mimo_rng_seed(&rng, 99 + n);
  for (int t = 0; t < 40; t++) { /* random multi-piece splits (1-byte pieces first) */
    int nc = 0;
    size_t at = 0;
    while (at < n) {
      at += t == 0 ? 1 : mimo_rng_next(&rng) % 7;
      cuts[nc++] = at > n ? n : at;
    }
    calls m = run(text, n, tools, cuts, nc);
    same(&one, &m);
    drop(&m);
  }
  free(cuts);
  /* non-streaming: same calls; content = streamed content minus trailing whitespace when calls exist */
  char *content;
  json_t *arr;
  mimo_toolcall_parse_all(text, n, tools, 42, &content, &arr);
  size_t cl = one.content.n;
  while (one.n && cl && strchr(" \t\r\n", one.content.p[cl - 1]))
    cl--;
  if (cl) {
    assert_non_null(content);
    assert_int_equal(strlen(content), cl);
    assert_memory_equal(content, one.content.p, cl);
  } else {
    assert_null(content);
  }
  assert_int_equal(json_array_size(arr), (size_t)one.n);
  for (int i = 0; i < one.n; i++) {
    json_t *c = json_array_get(arr, (size_t)i), *f = json_object_get(c, "function");
    assert_string_equal(json_string_value(json_object_get(c, "id")), one.ids[i]);
    assert_string_equal(json_string_value(json_object_get(c, "type")), "function");
    assert_string_equal(json_string_value(json_object_get(f, "name")), one.names[i]);
    assert_string_equal(json_string_value(json_object_get(f, "arguments")), one.args[i].p);
  }
  free(content);
  json_decref(arr);
  drop(&one);
}

static int setup(void **state) {
  (void)state;
  json_error_t e;
  tools = json_loads(
      "[{\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"parameters\":{\"type\":\"object\","
      "\"properties\":{\"city\":{\"type\":\"string\"},\"days\":{\"type\":\"integer\"},\"temp\":{\"type\":"
      "\"number\"},\"metric\":{\"type\":\"boolean\"},\"opts\":{\"type\":\"object\"},\"tags\":{\"type\":"
      "\"array\"},\"maybe\":{\"type\":[\"integer\",\"null\"]},\"note\":{\"type\":\"string\"}}}}},"
      "{\"type\":\"function\",\"function\":{\"name\":\"search\",\"parameters\":{\"type\":\"object\","
      "\"properties\":{\"q\":{\"type\":\"string\"},\"n\":{\"type\":\"integer\"}}}}}]",
      0, &e);
  return tools ? 0 : -1;
}
static int teardown(void **state) {
  (void)state;
  json_decref(tools);
  return 0;
}

#define C1(city) "<tool_call>\n<function=get_weather>\n<parameter=city>\n" city "\n</parameter>\n</function>\n</tool_call>"

static void test_plain(void **state) {
  (void)state;
  check("Just an answer.\n", "Just an answer.\n", 0);
  check("", "", 0);
  check("a < b and <tool_ and <tool_call> mention", "a < b and <tool_ and <tool_call> mention", 0);
  check("<tool_call>\nnot a function</tool_call>", "<tool_call>\nnot a function</tool_call>", 0);
  check("<tool_call>\n<function=bad\nname>", "<tool_call>\n<function=bad\nname>", 0);
}

static void test_one_and_two(void **state) {
  (void)state;
  check(C1("Paris"), "", 1, "get_weather", "{\"city\": \"Paris\"}");
  check("Let me check.\n\n" C1("Paris") "\n", "Let me check.\n\n", 1, "get_weather", "{\"city\": \"Paris\"}");
  check(C1("Paris") "\n" C1("Rome"), "", 2, "get_weather", "{\"city\": \"Paris\"}", "get_weather",
        "{\"city\": \"Rome\"}");
  check("a" C1("X") "b" C1("Y") "c", "abc", 2, "get_weather", "{\"city\": \"X\"}", "get_weather", "{\"city\": \"Y\"}");
  check(C1("X") "\n\nDone.", "\n\nDone.", 1, "get_weather", "{\"city\": \"X\"}");
  check("<tool_call>\n<function=search>\n</function>\n</tool_call>", "", 1, "search", "{}");
  check("<tool_call>\n<function=search>\n<parameter=q>\nx\n</parameter>\n<parameter=n>\n5\n</parameter>\n"
        "</function>\n</tool_call>",
        "", 1, "search", "{\"q\": \"x\", \"n\": 5}");
}

static void test_typed(void **state) {
  (void)state;
  check("<tool_call>\n<function=get_weather>\n<parameter=days>\n3\n</parameter>\n<parameter=temp>\n21.5\n"
        "</parameter>\n<parameter=metric>\nTrue\n</parameter>\n<parameter=opts>\n{\"unit\": \"C\", \"n\": [1, 2]}\n"
        "</parameter>\n<parameter=tags>\n[1, \"a\", null]\n</parameter>\n<parameter=maybe>\nnull\n</parameter>\n"
        "</function>\n</tool_call>",
        "", 1, "get_weather",
        "{\"days\": 3, \"temp\": 21.5, \"metric\": true, \"opts\": {\"unit\": \"C\", \"n\": [1, 2]}, "
        "\"tags\": [1, \"a\", null], \"maybe\": null}");
  /* Python literals for object/array */
  check("<tool_call>\n<function=get_weather>\n<parameter=opts>\n{'unit': 'C', 'x': None, 'ok': True, 't': (1, 2),"
        " 'q': 'it\\'s \"x\"'}\n</parameter>\n<parameter=tags>\n['a', False]\n</parameter>\n</function>\n</tool_call>",
        "", 1, "get_weather",
        "{\"opts\": {\"unit\": \"C\", \"x\": null, \"ok\": true, \"t\": [1, 2], \"q\": \"it's \\\"x\\\"\"}, "
        "\"tags\": [\"a\", false]}");
  /* unparsable typed values stay strings; a number that is integral becomes an integer */
  check("<tool_call>\n<function=get_weather>\n<parameter=days>\nmany\n</parameter>\n<parameter=temp>\n-3.0\n"
        "</parameter>\n<parameter=metric>\nyes\n</parameter>\n<parameter=opts>\n{broken\n</parameter>\n"
        "<parameter=maybe>\n7\n</parameter>\n</function>\n</tool_call>",
        "", 1, "get_weather",
        "{\"days\": \"many\", \"temp\": -3, \"metric\": \"yes\", \"opts\": \"{broken\", \"maybe\": 7}");
  /* strings: newlines, quotes, backslashes, unicode, control characters, JSON-looking text */
  check("<tool_call>\n<function=get_weather>\n<parameter=city>\nline 1\n\"quoted\" \\ back\n北京 ☀ é\t\x01\n"
        "</parameter>\n<parameter=note>\n{\"a\": 1}\n</parameter>\n</function>\n</tool_call>",
        "", 1, "get_weather", "{\"city\": \"line 1\\n\\\"quoted\\\" \\\\ back\\n北京 ☀ é\\t\\u0001\", \"note\": \"{\\\"a\\\": 1}\"}");
}

static void test_newline_trim(void **state) {
  (void)state;
  /* exactly one leading and one trailing newline are dropped */
  check("<tool_call>\n<function=search>\n<parameter=q>\n\nx\n\n</parameter>\n</function>\n</tool_call>", "", 1,
        "search", "{\"q\": \"\\nx\\n\"}");
  check("<tool_call>\n<function=search>\n<parameter=q>x</parameter>\n</function>\n</tool_call>", "", 1, "search",
        "{\"q\": \"x\"}");
  check("<tool_call>\n<function=search>\n<parameter=q>\n</parameter>\n<parameter=n>\n\n12\n\n</parameter>\n"
        "</function>\n</tool_call>",
        "", 1, "search", "{\"q\": \"\", \"n\": 12}");
  check("<tool_call>\n<function=search>\n<parameter=q> spaced </parameter>\n</function>\n</tool_call>", "", 1,
        "search", "{\"q\": \" spaced \"}");
}

static void test_malformed(void **state) {
  (void)state;
  /* unterminated before the name is complete: plain content */
  check("Text <tool_call>\n<function=get_wea", "Text <tool_call>\n<function=get_wea", 0);
  check("<tool_call>", "<tool_call>", 0);
  /* name complete: the call is closed with what arrived (the open value included) */
  check("<tool_call>\n<function=get_weather>\n<parameter=city>\nRo", "", 1, "get_weather", "{\"city\": \"Ro\"}");
  check("<tool_call>\n<function=get_weather>\n<parameter=days>\n4", "", 1, "get_weather", "{\"days\": 4}");
  check("<tool_call>\n<function=get_weather>\n<parameter=ci", "", 1, "get_weather", "{}");
  check("<tool_call>\n<function=get_weather>\n", "", 1, "get_weather", "{}");
  /* </tool_call> without </function> ends the call; text after it is content */
  check("<tool_call>\n<function=search>\n<parameter=q>\nx\n</parameter>\n</tool_call>\nafter", "\nafter", 1, "search",
        "{\"q\": \"x\"}");
  /* missing </tool_call>: forgiven */
  check("<tool_call>\n<function=search>\n</function>\nafter", "after", 1, "search", "{}");
  /* stray text inside a function is skipped */
  check("<tool_call>\n<function=search>\nhmm\n<parameter=q>\nx\n</parameter>\n</function>\n</tool_call>", "", 1,
        "search", "{\"q\": \"x\"}");
  /* a name that runs into another tag ends there: content, then that call, in any pieces (fuzz_toolcall) */
  check("<tool_call>\n<function=get_wea<tool_call>\n<function=search>\n</function>\n</tool_call>",
        "<tool_call>\n<function=get_wea", 1, "search", "{}");
  check("<tool_call>\n<function=get\x01x>\n</function>", "<tool_call>\n<function=get\x01x>\n</function>", 0);
  /* invalid UTF-8 in a string value: U+FFFD, arguments stay valid JSON */
  check("<tool_call>\n<function=search>\n<parameter=q>\na\xff\xc3(b\n</parameter>\n</function>\n</tool_call>", "", 1,
        "search", "{\"q\": \"a\\ufffd\\ufffd(b\"}");
}

static void test_unknown_and_schemaless(void **state) {
  (void)state;
  /* unknown function: still a call; values without a schema are JSON if they parse, else strings */
  check("<tool_call>\n<function=not_a_tool>\n<parameter=a>\n42\n</parameter>\n<parameter=b>\nhello\n</parameter>\n"
        "<parameter=c>\n[1, {\"k\": true}]\n</parameter>\n<parameter=d>\n\"quoted\"\n</parameter>\n</function>\n"
        "</tool_call>",
        "", 1, "not_a_tool", "{\"a\": 42, \"b\": \"hello\", \"c\": [1, {\"k\": true}], \"d\": \"quoted\"}");
  /* a parameter the known tool does not declare */
  check("<tool_call>\n<function=search>\n<parameter=extra>\n3.5\n</parameter>\n</function>\n</tool_call>", "", 1,
        "search", "{\"extra\": 3.5}");
  /* NULL tools */
  calls c = run(C1("5"), strlen(C1("5")), NULL, NULL, 0);
  assert_string_equal(c.args[0].p, "{\"city\": 5}");
  drop(&c);
}

/* Exact argument text: json.dumps style separators, shortest reals. */
static void test_format(void **state) {
  (void)state;
  const char *t = "<tool_call>\n<function=get_weather>\n<parameter=city>\nParis\n</parameter>\n<parameter=days>\n3\n"
                  "</parameter>\n<parameter=temp>\n0.1\n</parameter>\n<parameter=tags>\n[1,2,{\"a\":0.5}]\n"
                  "</parameter>\n</function>\n</tool_call>";
  calls c = run(t, strlen(t), tools, NULL, 0);
  assert_string_equal(c.args[0].p, "{\"city\": \"Paris\", \"days\": 3, \"temp\": 0.1, \"tags\": [1, 2, {\"a\": 0.5}]}");
  drop(&c);
  char *pre = mimo_toolcall_forced_prefix("get_weather");
  assert_string_equal(pre, "<tool_call>\n<function=get_weather>\n");
  free(pre);
  assert_string_equal(mimo_toolcall_forced_prefix(NULL), "<tool_call>\n<function=");
}

/* Reasoning first, then the tool parser over the content stream. */
static void on_text(void *ctx, mimo_text_kind k, const char *s, size_t n) {
  void **c = ctx;
  if (k == MIMO_TEXT_REASONING)
    sb_put(c[0], s, n);
  else
    mimo_toolcall_feed(c[1], s, n);
}
static void test_in_reasoning(void **state) {
  (void)state;
  struct {
    const char *text, *reasoning, *content;
    int n;
  } cases[] = {
      /* a call-looking mention inside reasoning stays reasoning */
      {"<think>maybe <tool_call> later</think>ok", "maybe <tool_call> later", "ok", 0},
      /* <tool_call> + <function= while reasoning: implicit end, the call is parsed */
      {"<think>plan<tool_call>\n<function=search>\n<parameter=q>\nx\n</parameter>\n</function>\n</tool_call>",
       "plan", "", 1},
      {"<think>r</think>\n\n" C1("Oslo"), "r", "\n\n", 1},
  };
  for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
    for (size_t cut = 0; cut <= strlen(cases[k].text); cut++) {
      calls c = {0};
      sb r = {0};
      sb_put(&c.content, "", 0);
      sb_put(&r, "", 0);
      mimo_toolcall_sink sink = {t_content, t_start, t_args, t_end, &c};
      mimo_toolcall *tc = mimo_toolcall_new(tools, 1, &sink);
      void *ctx[2] = {&r, tc};
      mimo_reasoning rs;
      mimo_reasoning_init(&rs, 1, on_text, ctx);
      mimo_reasoning_feed(&rs, cases[k].text, cut);
      mimo_reasoning_feed(&rs, cases[k].text + cut, strlen(cases[k].text) - cut);
      mimo_reasoning_finish(&rs);
      mimo_toolcall_finish(tc);
      mimo_toolcall_free(tc);
      assert_string_equal(r.p, cases[k].reasoning);
      assert_string_equal(c.content.p, cases[k].content);
      assert_int_equal(c.n, cases[k].n);
      free(r.p);
      drop(&c);
    }
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_plain),         cmocka_unit_test(test_one_and_two),
      cmocka_unit_test(test_typed),         cmocka_unit_test(test_newline_trim),
      cmocka_unit_test(test_malformed),     cmocka_unit_test(test_unknown_and_schemaless),
      cmocka_unit_test(test_format),        cmocka_unit_test(test_in_reasoning),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
