/* Structured tool calls (json_grammar.h, mimo_jg_tools):
 *  - hand-written calls after the forced prefix: valid ones go through and end complete, invalid ones are refused
 *    at the byte where they go wrong (a missing required parameter, a value outside its enum, pattern or bounds,
 *    a name that is not a tool's, a second call past the limit);
 *  - random walks over the bytes each state allows always end complete; with the prefix in front, toolcall.c's
 *    parser (the one the server uses) reads every one as calls only, and python3-jsonschema (an independent
 *    validator) accepts every call's arguments under its tool's parameters schema;
 *  - the token mask equals feeding every token on its own (added tokens <tool_call> / </tool_call> included,
 *    between calls only);
 *  - a strict function with a schema that cannot be compiled is refused naming the parameter; a non-strict one
 *    leaves that parameter free. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "grammar_fixture.h"
#include "text/toolcall.h"

static const char TOOLS[] =
    "[{\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"parameters\":{\"type\":\"object\",\"properties\":{"
    "\"city\":{\"type\":\"string\",\"maxLength\":12},\"unit\":{\"type\":\"string\",\"enum\":[\"celsius\",\"fahrenheit\"]},"
    "\"days\":{\"type\":\"integer\",\"minimum\":1,\"maximum\":14},\"detailed\":{\"type\":\"boolean\"},"
    "\"when\":{\"type\":\"string\",\"format\":\"date\"},\"note\":{\"type\":[\"string\",\"null\"]}},"
    "\"required\":[\"city\",\"days\"]}}},"
    "{\"type\":\"function\",\"function\":{\"name\":\"search\",\"strict\":true,\"parameters\":{\"type\":\"object\","
    "\"properties\":{\"query\":{\"type\":\"string\"},\"filters\":{\"type\":\"object\",\"properties\":{\"site\":"
    "{\"type\":\"string\"},\"max\":{\"type\":\"number\",\"minimum\":0}},\"required\":[\"site\"]},\"tags\":{\"type\":"
    "\"array\",\"items\":{\"type\":\"string\"},\"maxItems\":3},\"code\":{\"type\":\"string\",\"pattern\":\"^[A-Z]{3}$\"},"
    "\"n\":{\"type\":\"integer\"},\"kind\":{\"$ref\":\"#/$defs/Kind\"}},\"required\":[\"query\"],\"$defs\":{\"Kind\":"
    "{\"enum\":[\"web\",\"news\"]}}}}},"
    "{\"type\":\"function\",\"function\":{\"name\":\"noargs\",\"parameters\":{\"type\":\"object\",\"properties\":{}}}},"
    "{\"type\":\"function\",\"function\":{\"name\":\"free\",\"parameters\":{\"type\":\"object\"}}},"
    "{\"type\":\"function\",\"function\":{\"name\":\"loose\",\"parameters\":{\"type\":\"object\",\"properties\":{"
    "\"x\":{\"type\":\"integer\",\"multipleOf\":3}}}}}]";

static json_t *tools_json(void) {
  json_error_t err;
  json_t *t = json_loads(TOOLS, 0, &err);
  if (!t)
    fail_msg("TOOLS: %s", err.text);
  return t;
}

static mimo_jg *tools_grammar(const json_t *tools, const char *named, int max_calls) {
  mimo_jg *g = NULL;
  if (mimo_jg_tools(tools, named, max_calls, NULL, &g) != MIMO_OK)
    fail_msg("mimo_jg_tools: %s", mimo_errmsg());
  return g;
}


static void test_calls(void **state) {
  (void)state;
  json_t *tools = tools_json();
  mimo_jg *g = tools_grammar(tools, NULL, 0);
  /* after "<tool_call>\n<function=" */
  assert_int_equal(grammar_run(g, "get_weather>\n<parameter=city>Paris</parameter>\n<parameter=days>3</parameter>\n"
                          "</function>\n</tool_call>"), -1);
  assert_int_equal(grammar_run(g, "get_weather>\n<parameter=days>\n14\n</parameter>\n<parameter=city>\nSão Paulo\n"
                          "</parameter>\n<parameter=unit>celsius</parameter>\n<parameter=detailed>false</parameter>\n"
                          "<parameter=when>2024-02-29</parameter>\n<parameter=note>a <b> </paramete</parameter>\n"
                          "</function>\n</tool_call>\n<tool_call>\n<function=noargs>\n</function>\n</tool_call>"), -1);
  assert_int_equal(grammar_run(g, "search>\n<parameter=query>x</parameter>\n<parameter=filters>{\"site\": \"a.b\", "
                          "\"max\": 2.5}</parameter>\n<parameter=tags>[\"a\",\"b\"]</parameter>\n<parameter=code>ABC"
                          "</parameter>\n<parameter=kind>\"news\"</parameter>\n</function>\n</tool_call>"), -1);
  assert_int_equal(grammar_run(g, "free>\n<parameter=anything>1</parameter>\n<parameter=y>[1</parameter>\n</function>\n"
                          "</tool_call>"), -1);
  assert_int_equal(grammar_run(g, "loose>\n<parameter=x>seven</parameter>\n</function>\n</tool_call>"), -1); /* left free */
  assert_int_equal(grammar_run(g, "get_weather>\n<parameter=city>Paris</parameter>\n</function>"), 48); /* days missing */
  assert_int_equal(grammar_run(g, "get_weather>\n<parameter=city>Paris and its suburbs</parameter>"), 41); /* maxLength 12 */
  assert_int_equal(grammar_run(g, "get_weather>\n<parameter=unit>kelvin"), 29);
  assert_int_equal(grammar_run(g, "get_weather>\n<parameter=days>15"), 30);      /* maximum 14: the 5 */
  assert_int_equal(grammar_run(g, "get_weather>\n<parameter=days> 3"), 29);      /* no space before a JSON value */
  assert_int_equal(grammar_run(g, "get_weather>\n<parameter=days>3 "), 30);      /* ... nor after it */
  assert_int_equal(grammar_run(g, "get_weather>\n<parameter=city>a</parameter>\n<parameter=city>"), 54); /* given twice */
  assert_int_equal(grammar_run(g, "get_weather>\n<parameter=when>2023-02-29<"), 38);
  assert_int_equal(grammar_run(g, "get_weather>\n<parameter=town>"), 24);
  assert_int_equal(grammar_run(g, "weather>"), 0);
  assert_int_equal(grammar_run(g, "search>\n<parameter=code>ABCD"), 27);
  assert_int_equal(grammar_run(g, "search>\n<parameter=kind>news"), 24);        /* JSON: a quoted string */
  assert_int_equal(grammar_run(g, "search>\n<parameter=n>12345678901234567890"), 39); /* past what the parser reads */
  assert_int_equal(grammar_run(g, "search>\n<parameter=query>\x01"), 25);       /* control characters */
  assert_int_equal(grammar_run(g, "search>\n<parameter=tags>[\"a</parameter>"), 38); /* the parser would end it there */
  mimo_jg_free(g);
  g = tools_grammar(tools, "noargs", 1);
  assert_int_equal(grammar_run(g, "</function>\n</tool_call>"), -1);
  assert_int_equal(grammar_run(g, "</function>\n</tool_call>\n"), 24);           /* one call: nothing after it */
  assert_int_equal(grammar_run(g, "<parameter="), 1);
  mimo_jg_free(g);
  g = tools_grammar(tools, NULL, 1);
  assert_int_equal(grammar_run(g, "noargs>\n</function>\n</tool_call><tool_call>"), 32);
  mimo_jg_free(g);
  /* tool_choice auto with strict functions: the grammar takes over after the model's <tool_call> */
  assert_int_equal(mimo_jg_tools(tools, NULL, 0, "<tool_call>", &g), MIMO_OK);
  assert_int_equal(grammar_run(g, "\n<function=noargs>\n</function>\n</tool_call>\n<tool_call>\n<function=free>\n"
                          "</function>\n</tool_call>"), -1);
  assert_int_equal(grammar_run(g, "<function="), 0);
  mimo_jg_free(g);
  /* a forced call after the reasoning: the whole call, after whitespace */
  assert_int_equal(mimo_jg_tools(tools, "noargs", 1, "", &g), MIMO_OK);
  assert_int_equal(grammar_run(g, "\n\n<tool_call>\n<function=noargs>\n</function>\n</tool_call>"), -1);
  assert_int_equal(grammar_run(g, "\n\n"), 2);                        /* not complete without a call */
  assert_int_equal(grammar_run(g, "Sure<tool_call>"), 0);                /* no text before it */
  assert_int_equal(grammar_run(g, "<tool_call>\n<function=free>"), 22); /* named: that function only */
  mimo_jg_free(g);
  json_decref(tools);
}

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static unsigned rnd(unsigned n) { return grammar_rnd(&rng, n); }

/* A random walk to a complete output. Text values (most bytes allowed) run a few bytes, then their end tag. */
static size_t walk(const mimo_jg *g, char *out, size_t cap, mimo_jg_state *states, size_t max_states, size_t *n_states) {
  mimo_jg_state s;
  mimo_jg_start(g, &s);
  size_t n = 0;
  const char *pending = NULL;
  unsigned run_left = 0;
  for (;;) {
    if (states && *n_states < max_states && rnd(3) == 0)
      states[(*n_states)++] = s;
    int ok[256];
    const int k = grammar_allowed(g, &s, ok);
    const bool done = mimo_jg_done(g, &s);
    if (done && (!k || rnd(3) == 0 || n > 600))
      break;
    if (!k) { /* never a dead end */
      out[n] = 0;
      for (size_t i = 0; i < n; i++)
        fprintf(stderr, (unsigned char)out[i] < 0x20 || (unsigned char)out[i] > 0x7e ? "\\x%02x" : "%c",
                (unsigned char)out[i]);
      fail_msg("dead end after the bytes above");
    }
    int c = ok[rnd((unsigned)k)];
    if (pending && *pending && grammar_in(ok, k, (unsigned char)*pending)) {
      c = (unsigned char)*pending++;
    } else if (k > 100) { /* free text: a few bytes, then close it */
      pending = NULL;
      if (!run_left)
        run_left = 1 + rnd(12);
      if (--run_left == 0 || n > 300) {
        for (int i = 0; i < k; i++)
          if (ok[i] == '"' && rnd(2)) { /* a JSON string */
            c = '"';
            pending = "";
          }
        for (int i = 0; i < k && !pending; i++)
          if (ok[i] == '<') {
            c = '<';
            pending = "/parameter>";
          }
      }
    } else if (n > 200 && rnd(4)) { /* wind down: closers first */
      for (const char *p = "\"}]<"; *p; p++)
        for (int i = 0; i < k; i++)
          if (ok[i] == (unsigned char)*p) {
            c = *p;
            goto chosen;
          }
    }
  chosen:
    assert_true(mimo_jg_feed(g, &s, (unsigned char)c));
    assert_true(n + 1 < cap);
    out[n++] = (char)c;
  }
  out[n] = 0;
  return n;
}

static void test_random_walks_parse_and_validate(void **state) {
  (void)state;
  json_t *tools = tools_json();
  char dir[] = "/tmp/mimo-test-toolgrammar-XXXXXX";
  assert_non_null(mkdtemp(dir));
  char path[256], cmd[2048];
  snprintf(path, sizeof path, "%s/tools.json", dir);
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  fputs(TOOLS, f);
  fclose(f);
  snprintf(path, sizeof path, "%s/calls.jsonl", dir);
  f = fopen(path, "w");
  assert_non_null(f);
  const char *const named[] = {NULL, "search", "get_weather"};
  const int max_calls[] = {0, 1, 1};
  int n_calls = 0;
  for (int k = 0; k < 3; k++) {
    mimo_jg *g = tools_grammar(tools, named[k], max_calls[k]);
    char *prefix = mimo_toolcall_forced_prefix(named[k]);
    const size_t pl = strlen(prefix);
    static char doc[1 << 16];
    for (int i = 0; i < 200; i++) {
      memcpy(doc, prefix, pl);
      const size_t n = pl + walk(g, doc + pl, sizeof doc - pl, NULL, 0, NULL);
      char *content = NULL;
      json_t *calls = NULL;
      mimo_toolcall_parse_all(doc, n, tools, 1, &content, &calls);
      if (content)
        fail_msg("content beside the calls: '%s' in '%s'", content, doc);
      const size_t m = json_array_size(calls);
      if (m < 1 || (max_calls[k] && m > (size_t)max_calls[k]))
        fail_msg("%zu calls in '%s'", m, doc);
      for (size_t c = 0; c < m; c++) {
        const json_t *fn = json_object_get(json_array_get(calls, c), "function");
        const char *name = json_string_value(json_object_get(fn, "name"));
        const char *args = json_string_value(json_object_get(fn, "arguments"));
        assert_non_null(name);
        assert_non_null(args);
        if (named[k])
          assert_string_equal(name, named[k]);
        json_error_t err;
        json_t *a = json_loads(args, 0, &err);
        if (!json_is_object(a))
          fail_msg("arguments are not a JSON object: '%s' from '%s'", args, doc);
        json_t *line = json_pack("{s:s,s:o}", "name", name, "arguments", a);
        char *text = json_dumps(line, JSON_COMPACT);
        fprintf(f, "%s\n", text);
        free(text);
        json_decref(line);
        n_calls++;
      }
      json_decref(calls);
    }
    if (named[k])
      free(prefix);
    mimo_jg_free(g);
  }
  fclose(f);
  snprintf(cmd, sizeof cmd,
           "/usr/bin/python3 -c \"import json,jsonschema\n"
           "tools={t['function']['name']: t['function']['parameters'] for t in json.load(open('%s/tools.json'))}\n"
           "n=0\n"
           "for line in open('%s/calls.jsonl'):\n"
           "  c=json.loads(line); n+=1\n"
           "  if c['name'] == 'loose': continue\n"
           "  jsonschema.validate(c['arguments'], tools[c['name']], format_checker=jsonschema.FormatChecker())\n"
           "print('%%d calls parsed by toolcall.c, arguments valid under their tools\\' schemas' %% n)\"",
           dir, dir);
  assert_int_equal(system(cmd), 0);
  assert_true(n_calls >= 600);
  grammar_rmdir(dir);
  json_decref(tools);
}

static void test_mask_equals_feeding(void **state) {
  (void)state;
  grammar_vocab_fixture x;
  grammar_vocab_open(&x);
  static mimo_jg_state st[1500];
  static char doc[1 << 16];
  json_t *tools = tools_json();
  mimo_jg *g = tools_grammar(tools, NULL, 0);
  size_t n_st = 0;
  for (int i = 0; i < 30; i++)
    walk(g, doc, sizeof doc, st, sizeof st / sizeof *st, &n_st);
  int call_open = -1, call_end = -1;
  for (int id = 0; id < x.V; id++) {
    size_t n = 0;
    const char *b = mimo_tok_token_bytes(x.t, id, &n);
    call_open = b && n == 11 && !memcmp(b, "<tool_call>", 11) ? id : call_open;
    call_end = b && n == 12 && !memcmp(b, "</tool_call>", 12) ? id : call_end;
  }
  assert_true(call_open >= 0 && call_end >= 0);
  grammar_vocab_check(&x, g, st, n_st, "tool calls");
  long added = 0; /* states where <tool_call> or </tool_call> is allowed */
  for (size_t i = 0; i < n_st; i++) {
    mimo_jg_state c = st[i], d = st[i];
    added += mimo_gvocab_feed(x.v, g, &c, call_open) + mimo_gvocab_feed(x.v, g, &d, call_end);
  }
  print_message("tool calls: mask = feeding over %ld (state, token) pairs, %ld allowed, %ld of them <tool_call> or "
                "</tool_call>\n", x.checked, x.allowed, added);
  assert_true(added > 0);
  /* a text value: the added tokens are text bytes there, and not allowed */
  mimo_jg_state s;
  mimo_jg_start(g, &s);
  for (const char *c = "search>\n<parameter=query>"; *c; c++)
    assert_true(mimo_jg_feed(g, &s, (unsigned char)*c));
  assert_false(mimo_gvocab_feed(x.v, g, &s, call_open));
  mimo_jg_free(g);
  json_decref(tools);
  grammar_vocab_close(&x);
}

static void test_strict_refusals(void **state) {
  (void)state;
  json_error_t err;
  json_t *t = json_loads("[{\"type\":\"function\",\"function\":{\"name\":\"f\",\"strict\":true,\"parameters\":{"
                         "\"type\":\"object\",\"properties\":{\"x\":{\"type\":\"integer\",\"multipleOf\":3}}}}}]",
                         0, &err);
  assert_non_null(t);
  mimo_jg *g = NULL;
  assert_int_equal(mimo_jg_tools(t, NULL, 0, NULL, &g), MIMO_E_INVALID);
  assert_non_null(strstr(mimo_errmsg(), "tools[0].function.parameters.properties.x.multipleOf"));
  assert_int_equal(mimo_jg_tools(t, "g", 0, NULL, &g), MIMO_E_INVALID);
  assert_non_null(strstr(mimo_errmsg(), "function 'g' is not in 'tools'"));
  json_decref(t);
  t = json_loads("[{\"type\":\"function\",\"function\":{\"name\":\"a>b\"}}]", 0, &err);
  assert_int_equal(mimo_jg_tools(t, NULL, 0, NULL, &g), MIMO_E_INVALID);
  assert_non_null(strstr(mimo_errmsg(), "tools[0].function.name"));
  json_decref(t);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_calls),
      cmocka_unit_test(test_random_walks_parse_and_validate),
      cmocka_unit_test(test_mask_equals_feeding),
      cmocka_unit_test(test_strict_refusals),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
