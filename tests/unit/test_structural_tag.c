/* Structural tags (json_grammar.h, mimo_jg_structural_tag):
 *  - documents accepted or refused at the byte the rule says (false starts of a trigger, a trigger split anywhere,
 *    UTF-8, whitespace around the value, a begin that is its trigger);
 *  - random walks over the bytes each state allows, checked by an independent reader (Python: str.find for the
 *    triggers, json.JSONDecoder.raw_decode for the values, python3-jsonschema for their schemas);
 *  - the token mask equals feeding each token on its own, with the free-text fast path (triggers starting with '<')
 *    and without it;
 *  - specifications refused with messages that name the field;
 *  - xgrammar's later "format" form (triggered_tags with at_least_one / stop_after_first, tag, json_schema). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "grammar_fixture.h"

#define SPEC_LT                                                                                                       \
  "{\"structures\": ["                                                                                                \
  "{\"begin\": \"<function=get_weather>\", \"schema\": {\"type\": \"object\", \"properties\": {\"city\": {\"type\": " \
  "\"string\", \"maxLength\": 12}, \"unit\": {\"enum\": [\"c\", \"f\"]}}, \"required\": [\"city\"]}, \"end\": "      \
  "\"</function>\"},"                                                                                                 \
  "{\"begin\": \"<function=add>\", \"schema\": {\"type\": \"object\", \"properties\": {\"a\": {\"type\": "            \
  "\"integer\"}, \"b\": {\"type\": \"integer\", \"minimum\": 0}}, \"required\": [\"a\", \"b\"], "                    \
  "\"additionalProperties\": false}, \"end\": \"</function>\"},"                                                      \
  "{\"begin\": \"<n>\", \"schema\": {\"type\": \"integer\"}, \"end\": \"</n>\"}], "                                   \
  "\"triggers\": [\"<function=\", \"<n>\"]}"
#define SPEC_WORD                                                                                                     \
  "{\"structures\": [{\"begin\": \"CALL:\", \"schema\": {\"type\": \"array\", \"items\": {\"type\": \"boolean\"}, "   \
  "\"maxItems\": 3}, \"end\": \";\"}, {\"begin\": \"ok{\", \"schema\": {\"type\": \"string\"}, \"end\": \"}\"}], "    \
  "\"triggers\": [\"CALL:\", \"ok{\"]}"

static mimo_jg *compile(const char *spec) {
  json_error_t err;
  json_t *j = json_loads(spec, 0, &err);
  assert_non_null(j);
  mimo_jg *g = NULL;
  if (mimo_jg_structural_tag(json_object_get(j, "structures"), json_object_get(j, "triggers"), &g) != MIMO_OK)
    fail_msg("%s", mimo_errmsg());
  json_decref(j);
  return g;
}

/* A specification (the first form's {structures, triggers}, or with format a format object) refused with a message
 * that says msg. */
static void expect_refused(const char *spec, bool format, const char *msg) {
  json_error_t err;
  json_t *j = json_loads(spec, 0, &err);
  assert_non_null(j);
  mimo_jg *g = NULL;
  const mimo_status st = format ? mimo_jg_structural_format(j, &g)
                                : mimo_jg_structural_tag(json_object_get(j, "structures"), json_object_get(j, "triggers"), &g);
  assert_int_equal(st, MIMO_E_INVALID);
  if (!strstr(mimo_errmsg(), msg))
    fail_msg("'%s' does not say '%s'", mimo_errmsg(), msg);
  assert_null(g);
  json_decref(j);
}

static void test_documents(void **state) {
  (void)state;
  mimo_jg *g = compile(SPEC_LT);
  assert_int_equal(grammar_run(g, ""), -1);
  assert_int_equal(grammar_run(g, "Hello, world."), -1);
  assert_int_equal(grammar_run(g, "Let me check. <function=get_weather>{\"city\": \"Paris\"}</function> and "
                                  "<function=add>{\"a\": -1, \"b\": 2}</function> done"), -1);
  assert_int_equal(grammar_run(g, "<function=get_time>"), 14); /* no such begin */
  assert_int_equal(grammar_run(g, "<function=add>{\"a\": 1}"), 21);                 /* b is required */
  assert_int_equal(grammar_run(g, "<function=add>{\"a\": 1, \"b\": -2}</function>"), 28); /* minimum 0 */
  assert_int_equal(grammar_run(g, "<<function=add>{\"a\":1,\"b\":2}</function>"), -1); /* a false start */
  assert_int_equal(grammar_run(g, "<functio<function=add>{\"a\":1,\"b\":2}</function>"), -1);
  assert_int_equal(grammar_run(g, "x <function=add>{\"a\":1,\"b\":2}"), 29);       /* not complete */
  assert_int_equal(grammar_run(g, "I will call <functio"), -1);                     /* no trigger yet */
  assert_int_equal(grammar_run(g, "<function=add>\n {\"a\":1,\"b\":2} \n</function>"), -1);
  assert_int_equal(grammar_run(g, "caf\xc3\xa9 \xe2\x82\xac"), -1);
  assert_int_equal(grammar_run(g, "bad \xff"), 4);
  assert_int_equal(grammar_run(g, "bad \xc3("), 5);
  assert_int_equal(grammar_run(g, "x<n>42</n>y<n>-7</n>"), -1); /* a begin that is its trigger */
  assert_int_equal(grammar_run(g, "<n>4a"), 4);
  assert_int_equal(grammar_run(g, "<n>"), 3);
  mimo_jg_free(g);
  g = compile(SPEC_WORD);
  assert_int_equal(grammar_run(g, "Sure. CALL:[true, false]; and ok{\"yes\"} then CALL:[];"), -1);
  assert_int_equal(grammar_run(g, "CALL:[true,true,true,true]"), 20); /* maxItems 3 */
  assert_int_equal(grammar_run(g, "CALLok{\"x\"}"), -1);
  assert_int_equal(grammar_run(g, "ok{\"x\"};"), -1);
  assert_int_equal(grammar_run(g, "ok{1}"), 3);
  mimo_jg_free(g);
}

static void test_refusals(void **state) {
  (void)state;
  static const struct {
    const char *spec, *msg;
  } bad[] = {
      {"{\"structures\": [], \"triggers\": [\"<f\"]}", "structures must be a list"},
      {"{\"structures\": [{\"begin\": \"<f>\", \"schema\": {}, \"end\": \"</f>\"}], \"triggers\": []}", "triggers must"},
      {"{\"structures\": [{\"begin\": \"<f>\", \"schema\": {}, \"end\": \"</f>\"}], \"triggers\": [\"<f\", \"f\"]}",
       "triggers[1] is contained in triggers[0]"},
      {"{\"structures\": [{\"begin\": \"[f]\", \"schema\": {}, \"end\": \"\"}], \"triggers\": [\"<f\"]}",
       "structures[0].begin does not start with any of the triggers"},
      {"{\"structures\": [{\"begin\": \"<f\", \"schema\": {}, \"end\": \"\"}, {\"begin\": \"<fg\", \"schema\": {}, "
       "\"end\": \"\"}], \"triggers\": [\"<f\"]}",
       "structures[0].begin is a prefix of structures[1].begin"},
      {"{\"structures\": [{\"begin\": \"<f>\", \"schema\": {\"type\": \"integer\", \"multipleOf\": 3}, \"end\": "
       "\"</f>\"}], \"triggers\": [\"<f\"]}",
       "structures[0].schema.multipleOf"},
      {"{\"structures\": [{\"begin\": \"<f>\", \"end\": \"</f>\"}], \"triggers\": [\"<f\"]}",
       "structures[0].schema must be a JSON schema"},
      {"{\"structures\": [{\"begin\": \"<f>\", \"schema\": {}, \"end\": \"\"}], \"triggers\": [\"<f\", \"[g\"]}",
       "triggers[1] starts none of the structures' begins"},
      {"{\"structures\": [{\"begin\": \"\", \"schema\": {}, \"end\": \"\"}], \"triggers\": [\"<f\"]}",
       "structures[0] must be an object with a non-empty string 'begin'"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
    expect_refused(bad[i].spec, false, bad[i].msg);
}

static mimo_jg *compile_format(const char *format) {
  json_error_t err;
  json_t *j = json_loads(format, 0, &err);
  assert_non_null(j);
  mimo_jg *g = NULL;
  if (mimo_jg_structural_format(j, &g) != MIMO_OK)
    fail_msg("%s", mimo_errmsg());
  json_decref(j);
  return g;
}

/* xgrammar's later form: triggered_tags with at_least_one / stop_after_first, one tag, a bare schema; the format
 * types not taken are refused by name. */
static void test_format_form(void **state) {
  (void)state;
  static const char tags[] =
      "\"triggers\": [\"<function=\"], \"tags\": [{\"begin\": \"<function=get_weather>\", \"content\": {\"type\": "
      "\"json_schema\", \"json_schema\": {\"type\": \"object\", \"properties\": {\"city\": {\"type\": \"string\"}}, "
      "\"required\": [\"city\"]}}, \"end\": \"</function>\"}]";
  static const char call[] = "<function=get_weather>{\"city\": \"Rome\"}</function>";
  char f[1024], doc[256];
  snprintf(f, sizeof f, "{\"type\": \"triggered_tags\", %s, \"at_least_one\": true, \"stop_after_first\": true}", tags);
  mimo_jg *g = compile_format(f);
  assert_int_equal(grammar_run(g, call), -1);
  assert_int_equal(grammar_run(g, "Hello"), 0); /* the call comes first */
  snprintf(doc, sizeof doc, "%s more", call);
  assert_int_equal(grammar_run(g, doc), (long)strlen(call)); /* and nothing after it */
  mimo_jg_state st;
  mimo_jg_start(g, &st);
  for (const char *c = call; *c; c++)
    assert_true(mimo_jg_feed(g, &st, (unsigned char)*c));
  assert_true(mimo_jg_closed(&st));
  mimo_jg_free(g);
  snprintf(f, sizeof f, "{\"type\": \"triggered_tags\", %s, \"stop_after_first\": true}", tags);
  g = compile_format(f);
  snprintf(doc, sizeof doc, "Sure. %s", call);
  assert_int_equal(grammar_run(g, doc), -1);
  assert_int_equal(grammar_run(g, "Sure."), -1); /* no call at all is fine without at_least_one */
  snprintf(doc, sizeof doc, "Sure. %s!", call);
  assert_int_equal(grammar_run(g, doc), (long)strlen(doc) - 1);
  mimo_jg_free(g);
  snprintf(f, sizeof f, "{\"type\": \"triggered_tags\", %s}", tags);
  g = compile_format(f);
  snprintf(doc, sizeof doc, "a %s b %s c", call, call);
  assert_int_equal(grammar_run(g, doc), -1);
  mimo_jg_free(g);
  g = compile_format("{\"type\": \"tag\", \"begin\": \"<r>\", \"content\": {\"type\": \"json_schema\", \"json_schema\": "
                     "{\"type\": \"integer\"}}, \"end\": \"</r>\"}");
  assert_int_equal(grammar_run(g, "<r>5</r>"), -1);
  assert_int_equal(grammar_run(g, "<r> 12 </r>"), -1);
  assert_int_equal(grammar_run(g, "x"), 0);
  assert_int_equal(grammar_run(g, "<r>5</r>x"), 8);
  mimo_jg_free(g);
  g = compile_format("{\"type\": \"json_schema\", \"json_schema\": {\"type\": \"boolean\"}}");
  assert_int_equal(grammar_run(g, "true"), -1);
  mimo_jg_free(g);
  static const struct {
    const char *format, *msg;
  } bad[] = {
      {"{\"type\": \"sequence\", \"elements\": []}", "format.type 'sequence' is not supported"},
      {"{\"type\": \"triggered_tags\", \"triggers\": [\"<\"], \"tags\": [{\"begin\": \"<t>\", \"content\": {\"type\": "
       "\"any_text\"}, \"end\": \"</t>\"}]}",
       "format.tags[0].content must be {\"type\": \"json_schema\""},
      {"{\"type\": \"tag\", \"begin\": \"<t>\", \"content\": {\"type\": \"json_schema\", \"json_schema\": {\"type\": "
       "\"string\", \"format\": \"hostname-x\"}}, \"end\": \"</t>\"}",
       "format.content.json_schema"},
      {"{\"type\": \"triggered_tags\", \"triggers\": [\"<\"], \"tags\": [], \"at_least_one\": 1}",
       "format.at_least_one and format.stop_after_first must be booleans"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
    expect_refused(bad[i].format, true, bad[i].msg);
}

static uint64_t rng = 0x2545f4914f6cdd1dull;
static unsigned rnd(unsigned n) { return grammar_rnd(&rng, n); }

/* A random walk: free text of printable ASCII, now and then a structure's begin (or a false start of one), the
 * value's bytes at random among those allowed (strings run a few bytes, then wind down), the end when it comes. */
static size_t walk(const mimo_jg *g, char *const *begins, int nb, char *out, size_t cap, mimo_jg_state *states,
                   size_t max_states, size_t *n_states) {
  mimo_jg_state s;
  mimo_jg_start(g, &s);
  size_t n = 0;
  const char *pending = NULL;
  unsigned run = 0;
  for (;;) {
    if (states && *n_states < max_states && rnd(3) == 0)
      states[(*n_states)++] = s;
    int ok[256];
    const int k = grammar_allowed(g, &s, ok);
    const bool done = mimo_jg_done(g, &s);
    if (done && (!k || n > 500 || (!pending && rnd(40) == 0)))
      break;
    if (!k)
      fail_msg("dead end after '%.*s'", (int)n, out);
    int c = ok[rnd((unsigned)k)];
    if (pending && *pending && grammar_in(ok, k, (unsigned char)*pending)) {
      c = (unsigned char)*pending++;
    } else if (k > 100) { /* free text or a JSON string */
      pending = NULL;
      const int free_kind = mimo_jg_free_text(g, &s);
      if (done && rnd(6) == 0) {
        const char *b = begins[rnd((unsigned)nb)];
        pending = rnd(5) == 0 ? "<<" : b; /* now and then a false start */
        c = (unsigned char)*pending++;
      } else if (free_kind != MIMO_JG_FREE_JSON || (run = run ? run - 1 : 1 + rnd(8)) > 0) {
        do
          c = 0x20 + (int)rnd(0x5f);
        while (c == '\\' || (free_kind == MIMO_JG_FREE_JSON && c == '"'));
      } else {
        c = '"';
      }
    } else if (n > 250 && rnd(4)) { /* wind down: closers first */
      for (const char *p = "\"}]"; *p; p++)
        for (int i = 0; i < k; i++)
          if (ok[i] == (unsigned char)*p) {
            c = *p;
            goto chosen;
          }
    }
  chosen:
    if (!mimo_jg_feed(g, &s, (unsigned char)c))
      fail_msg("byte %d refused after '%.*s'", c, (int)n, out);
    assert_true(n + 1 < cap);
    out[n++] = (char)c;
  }
  out[n] = 0;
  return n;
}

static void begins_of(const char *spec, char **b, int *nb) {
  json_error_t err;
  json_t *j = json_loads(spec, 0, &err);
  const json_t *st = json_object_get(j, "structures");
  *nb = (int)json_array_size(st);
  for (int i = 0; i < *nb; i++)
    b[i] = strdup(json_string_value(json_object_get(json_array_get(st, (size_t)i), "begin")));
  json_decref(j);
}

static void test_random_walks_validate(void **state) {
  (void)state;
  char dir[] = "/tmp/mimo-test-stag-XXXXXX";
  assert_non_null(mkdtemp(dir));
  const char *const specs[] = {SPEC_LT, SPEC_WORD};
  for (int k = 0; k < 2; k++) {
    char path[256], cmd[4096];
    snprintf(path, sizeof path, "%s/spec%d.json", dir, k);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(specs[k], f);
    fclose(f);
    snprintf(path, sizeof path, "%s/docs%d.jsonl", dir, k);
    f = fopen(path, "w");
    assert_non_null(f);
    mimo_jg *g = compile(specs[k]);
    char *begins[8];
    int nb;
    begins_of(specs[k], begins, &nb);
    static char doc[1 << 14];
    for (int i = 0; i < 300; i++) {
      walk(g, begins, nb, doc, sizeof doc, NULL, 0, NULL);
      json_t *line = json_string(doc);
      assert_non_null(line);
      char *text = json_dumps(line, JSON_ENCODE_ANY);
      fprintf(f, "%s\n", text);
      free(text);
      json_decref(line);
    }
    fclose(f);
    for (int i = 0; i < nb; i++)
      free(begins[i]);
    mimo_jg_free(g);
    snprintf(cmd, sizeof cmd,
             "/usr/bin/python3 -c \"import json,jsonschema\n"
             "spec=json.load(open('%s/spec%d.json')); dec=json.JSONDecoder(); ws=' \\t\\n\\r'\n"
             "docs=structures=0\n"
             "for line in open('%s/docs%d.jsonl'):\n"
             "  d=json.loads(line); i=0; docs+=1\n"
             "  while True:\n"
             "    hits=[p for p in (d.find(t, i) for t in spec['triggers']) if p >= 0]\n"
             "    if not hits: break\n"
             "    p=min(hits); c=[s for s in spec['structures'] if d.startswith(s['begin'], p)]\n"
             "    assert len(c) == 1, (d, p)\n"
             "    s=c[0]; j=p+len(s['begin'])\n"
             "    while d[j] in ws: j+=1\n"
             "    v,j=dec.raw_decode(d, j); jsonschema.validate(v, s['schema'])\n"
             "    while not d.startswith(s['end'], j): assert d[j] in ws, (d, j); j+=1\n"
             "    i=j+len(s['end']); structures+=1\n"
             "print('spec %d: %%d documents, %%d structures, each value valid under its schema' %% (docs, structures))\n"
             "assert structures >= 100\"",
             dir, k, dir, k, k);
    assert_int_equal(system(cmd), 0);
  }
  grammar_rmdir(dir);
}

static void test_mask_equals_feeding(void **state) {
  (void)state;
  grammar_vocab_fixture x;
  grammar_vocab_open(&x);
  static mimo_jg_state st[1200];
  static char doc[1 << 14];
  const char *const specs[] = {SPEC_LT, SPEC_WORD};
  for (int k = 0; k < 2; k++) {
    mimo_jg *g = compile(specs[k]);
    char *begins[8];
    int nb;
    begins_of(specs[k], begins, &nb);
    size_t n_st = 0, n_free = 0;
    for (int i = 0; i < 40; i++)
      walk(g, begins, nb, doc, sizeof doc, st, sizeof st / sizeof *st, &n_st);
    for (size_t i = 0; i < n_st; i++)
      n_free += mimo_jg_free_text(g, &st[i]) == MIMO_JG_FREE_RAW;
    grammar_vocab_check(&x, g, st, n_st, k ? "structural tag, word triggers" : "structural tag, '<' triggers");
    print_message("%s: mask = feeding over %zu states (%zu on the free-text fast path), %ld pairs so far\n",
                  k ? "word triggers" : "'<' triggers", n_st, n_free, x.checked);
    assert_true(k ? n_free == 0 : n_free > 0);
    for (int i = 0; i < nb; i++)
      free(begins[i]);
    mimo_jg_free(g);
  }
  grammar_vocab_close(&x);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_documents),
      cmocka_unit_test(test_refusals),
      cmocka_unit_test(test_format_form),
      cmocka_unit_test(test_random_walks_validate),
      cmocka_unit_test(test_mask_equals_feeding),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
