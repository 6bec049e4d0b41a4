/* Structured outputs (text/json_grammar.h, text/grammar_vocab.h):
 *  - hand-written documents: valid ones go through byte by byte and end complete, invalid ones are refused at the
 *    byte where they go wrong;
 *  - random walks over the bytes each state allows (a few hundred per schema) always reach a complete value, and
 *    every one of them is valid JSON that python3-jsonschema (an independent validator) accepts under the schema;
 *  - the token mask (trie walk, with the plain-string fast path) equals feeding every token on its own, at states
 *    met along walks, over the synthetic tokenizer's vocabulary;
 *  - unsupported schemas are refused naming the keyword. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "grammar_fixture.h"

static const char *schemas[] = {
    "{\"type\":\"object\",\"properties\":{\"name\":{\"type\":\"string\",\"maxLength\":8},\"age\":{\"type\":\"integer\"},"
    "\"ok\":{\"type\":\"boolean\"},\"tags\":{\"type\":\"array\",\"items\":{\"enum\":[\"a\",\"bc\",1,null]},"
    "\"maxItems\":3}},\"required\":[\"name\",\"age\"]}",
    "{\"type\":\"array\",\"items\":{\"type\":[\"number\",\"null\",\"string\"]},\"minItems\":2,\"maxItems\":4}",
    "{\"anyOf\":[{\"type\":\"object\",\"properties\":{\"x\":{\"const\":\"k\\\"q\"}},\"required\":[\"x\"]},"
    "{\"type\":\"array\",\"items\":{\"type\":\"object\",\"additionalProperties\":{\"type\":\"integer\"}},"
    "\"maxItems\":2},{\"type\":\"string\",\"minLength\":2,\"maxLength\":5}]}",
    "{\"type\":\"object\",\"properties\":{\"deep\":{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"array\","
    "\"items\":{\"type\":\"array\",\"items\":{\"type\":\"number\"},\"maxItems\":2},\"maxItems\":2}},"
    "\"required\":[\"a\"]},\"n\":{\"type\":\"null\"}},\"required\":[\"deep\",\"n\"]}",
    "{\"type\":\"object\",\"properties\":{\"code\":{\"type\":\"string\",\"pattern\":\"^[A-Z]{2}-\\\\d{3}$\"},"
    "\"note\":{\"type\":\"string\",\"pattern\":\"^o\\\\.k\"},\"id\":{\"type\":\"string\",\"format\":\"uuid\"},"
    "\"ip\":{\"type\":\"string\",\"format\":\"ipv4\"},\"day\":{\"type\":\"string\",\"format\":\"date\"},"
    "\"at\":{\"type\":\"string\",\"format\":\"date-time\"},\"mail\":{\"type\":\"string\",\"format\":\"email\"},"
    "\"esc\":{\"type\":\"string\",\"pattern\":\"^[\\\\n\\\\t\\\"a/]{1,6}$\"},"
    "\"alt\":{\"type\":\"string\",\"pattern\":\"^ab|\\\\d$\"}},"
    "\"required\":[\"code\",\"note\",\"id\",\"ip\",\"day\",\"at\",\"mail\",\"esc\",\"alt\"]}",
    /* pydantic's shape for nested models: $defs and local $ref (an Optional one through anyOf with null) */
    "{\"$defs\":{\"Pet\":{\"title\":\"Pet\",\"type\":\"object\",\"properties\":{\"name\":{\"type\":\"string\","
    "\"maxLength\":6},\"kind\":{\"$ref\":\"#/$defs/Kind\"}},\"required\":[\"name\",\"kind\"],"
    "\"additionalProperties\":false},\"Kind\":{\"enum\":[\"cat\",\"dog\"],\"title\":\"Kind\"}},"
    "\"title\":\"Owner\",\"type\":\"object\",\"properties\":{\"pets\":{\"type\":\"array\",\"items\":"
    "{\"$ref\":\"#/$defs/Pet\"},\"maxItems\":3},\"best\":{\"anyOf\":[{\"$ref\":\"#/$defs/Pet\"},{\"type\":\"null\"}],"
    "\"default\":null},\"old\":{\"$ref\":\"#/definitions/a~1b\",\"description\":\"JSON pointer escapes\"},"
    "\"fav\":{\"allOf\":[{\"$ref\":\"#/$defs/Kind\"}],\"description\":\"pydantic v1's way\"}},"
    "\"required\":[\"pets\",\"best\",\"old\"],\"additionalProperties\":false,\"definitions\":{\"a/b\":{\"type\":\"boolean\"}}}",
    /* integer bounds (pydantic's ge, gt, le, lt) */
    "{\"type\":\"object\",\"properties\":{\"age\":{\"type\":\"integer\",\"minimum\":0,\"maximum\":150},"
    "\"score\":{\"type\":\"integer\",\"exclusiveMinimum\":-10,\"exclusiveMaximum\":10},\"n\":{\"type\":"
    "[\"integer\",\"null\"],\"minimum\":1000},\"neg\":{\"type\":\"integer\",\"maximum\":-5.5},\"h\":{\"type\":"
    "\"integer\",\"minimum\":99,\"maximum\":1000},\"p\":{\"type\":\"number\",\"minimum\":0,\"maximum\":1},"
    "\"pos\":{\"type\":\"number\",\"exclusiveMinimum\":0},\"t\":{\"type\":\"number\",\"minimum\":-2.5,"
    "\"exclusiveMaximum\":3.75}},\"required\":[\"age\",\"score\",\"n\",\"neg\",\"h\",\"p\",\"pos\",\"t\"]}",
    /* a tagged union as pydantic writes it (oneOf + discriminator), and a type list whose kinds start alike */
    "{\"$defs\":{\"Cat\":{\"type\":\"object\",\"properties\":{\"pet_type\":{\"const\":\"cat\"},\"meows\":"
    "{\"type\":\"integer\"}},\"required\":[\"pet_type\",\"meows\"],\"additionalProperties\":false},\"Dog\":"
    "{\"type\":\"object\",\"properties\":{\"pet_type\":{\"const\":\"dog\"},\"barks\":{\"type\":\"number\"}},"
    "\"required\":[\"pet_type\",\"barks\"],\"additionalProperties\":false}},\"type\":\"object\",\"properties\":"
    "{\"pet\":{\"oneOf\":[{\"$ref\":\"#/$defs/Cat\"},{\"$ref\":\"#/$defs/Dog\"}],\"discriminator\":"
    "{\"propertyName\":\"pet_type\",\"mapping\":{\"cat\":\"#/$defs/Cat\",\"dog\":\"#/$defs/Dog\"}}},"
    "\"n\":{\"type\":[\"integer\",\"number\"]}},\"required\":[\"pet\",\"n\"]}",
    /* anyOf whose alternatives start alike: two objects sharing a key, bounded numbers on both sides, string
     * formats, a nested anyOf, all as array items (readings fork and merge item after item) */
    "{\"type\":\"array\",\"maxItems\":4,\"items\":{\"anyOf\":[{\"type\":\"object\",\"properties\":{\"a\":"
    "{\"type\":\"integer\"},\"b\":{\"type\":\"string\",\"maxLength\":3}},\"required\":[\"a\"]},{\"type\":"
    "\"object\",\"properties\":{\"a\":{\"type\":\"string\",\"maxLength\":4},\"c\":{\"type\":\"boolean\"}},"
    "\"required\":[\"a\",\"c\"]},{\"type\":\"integer\",\"minimum\":10},{\"type\":\"number\",\"maximum\":0},"
    "{\"type\":\"string\",\"format\":\"date\"},{\"type\":\"string\",\"format\":\"date-time\"},"
    "{\"anyOf\":[{\"type\":\"string\",\"maxLength\":2},{\"const\":\"hello\"}]}]}}",
    /* tuples as pydantic writes them: tuple[int, str] (prefixItems, items false) and tuple[bool, *tuple[int, ...]] */
    "{\"type\":\"object\",\"properties\":{\"pair\":{\"type\":\"array\",\"prefixItems\":[{\"type\":\"integer\"},"
    "{\"type\":\"string\",\"maxLength\":3}],\"items\":false,\"minItems\":2,\"maxItems\":2},\"rest\":{\"type\":"
    "\"array\",\"prefixItems\":[{\"type\":\"boolean\"}],\"items\":{\"type\":\"integer\",\"minimum\":0},"
    "\"maxItems\":4}},\"required\":[\"pair\",\"rest\"]}",
    NULL /* any JSON object (response_format json_object) */
};
enum { N_SCHEMAS = 11 };

static mimo_jg *compile_str(const char *s) {
  json_error_t err;
  json_t *j = s ? json_loads(s, 0, &err) : NULL;
  assert_true(!s || j);
  mimo_jg *g = NULL;
  assert_int_equal(mimo_jg_compile(j, &g), MIMO_OK);
  json_decref(j);
  return g;
}


static void test_documents(void **state) {
  (void)state;
  mimo_jg *g = compile_str(schemas[0]);
  assert_int_equal(grammar_run(g, "{\"name\":\"bob\",\"age\":-12}"), -1);
  assert_int_equal(grammar_run(g, " {\n  \"age\": 0, \"tags\": [\"bc\", 1, null],\n  \"name\": \"\\u00e9\\n\", \"ok\": true\n}"), -1);
  assert_int_equal(grammar_run(g, "{\"age\":1}"), 8);                   /* '}' before the required name */
  assert_int_equal(grammar_run(g, "{\"name\":\"toolongname\",\"age\":1}"), 17); /* the 9th code point */
  assert_int_equal(grammar_run(g, "{\"name\":\"a\",\"age\":1.5}"), 19);   /* an integer has no fraction */
  assert_int_equal(grammar_run(g, "{\"name\":\"a\",\"name\":\"b\"}"), 13); /* a key given twice */
  assert_int_equal(grammar_run(g, "{\"name\":\"\xed\xa0\x80\"}"), 10);     /* a surrogate */
  assert_int_equal(grammar_run(g, "{\"name\":\"\xf4\x90\x80\x80\"}"), 10); /* past U+10FFFF */
  assert_int_equal(grammar_run(g, "{\"name\":\"\xe0\x80\x80\"}"), 10);     /* overlong */
  assert_int_equal(grammar_run(g, "{\"name\":\"\\ud83d\\ude00\",\"age\":1}"), -1); /* a surrogate pair */
  assert_int_equal(grammar_run(g, "{\"name\":\"\\udc00\"}"), 12);         /* a lone low surrogate */
  assert_int_equal(grammar_run(g, "{\"name\":\"\\ud83dx\"}"), 15);        /* a high one not followed by its pair */
  assert_int_equal(grammar_run(g, "{\"name\":\"\\ud83d\\u0041\"}"), 17); /* ... or by another escape */
  assert_int_equal(grammar_run(g, "{\"name\":\"a\",\"age\":1,\"x\":2}"), 21); /* no other keys */
  assert_int_equal(grammar_run(g, "{\"name\":\"a\",\"age\":01}"), 19);
  assert_int_equal(grammar_run(g, "{\"name\":\"a\",\"age\":1,\"tags\":[\"b\"]}"), 30); /* "b" is not "bc" */
  assert_int_equal(grammar_run(g, "{\"name\":\"a\",\"age\":1,\"tags\":[1,1,1,1]}"), 33); /* maxItems 3 */
  assert_int_equal(grammar_run(g, "{\"name\":\"\xc3\",\"age\":1}"), 10); /* a broken UTF-8 sequence */
  assert_int_equal(grammar_run(g, "{\"name\":\"a\",\"age\":1}x"), 20); /* nothing after the value */
  mimo_jg_free(g);
  g = compile_str(schemas[2]);
  assert_int_equal(grammar_run(g, "{\"x\":\"k\\\"q\"}"), -1);
  assert_int_equal(grammar_run(g, "[{\"any\":3,\"b\":-4},{}]"), -1);
  assert_int_equal(grammar_run(g, "\"abcde\""), -1);
  assert_int_equal(grammar_run(g, "\"a\""), 2);
  assert_int_equal(grammar_run(g, "[{\"k\":\"s\"}]"), 6);
  mimo_jg_free(g);
  g = compile_str(NULL);
  assert_int_equal(grammar_run(g, "{\"a\":[1,{\"b\":null}],\"c\":\"d\",\"e\":1e-3,\"f\":false}"), -1);
  assert_int_equal(grammar_run(g, "[1]"), 0);
  mimo_jg_free(g);
  g = compile_str(schemas[5]); /* $defs and $ref */
  assert_int_equal(grammar_run(g, "{\"pets\":[{\"name\":\"Rex\",\"kind\":\"dog\"}],\"best\":null,\"old\":true}"), -1);
  assert_int_equal(grammar_run(g, "{\"pets\":[],\"best\":{\"name\":\"Tom\",\"kind\":\"cat\"},\"old\":false}"), -1);
  assert_int_equal(grammar_run(g, "{\"fav\":\"dog\",\"pets\":[],\"best\":null,\"old\":false}"), -1); /* allOf of one */
  assert_int_equal(grammar_run(g, "{\"pets\":[{\"name\":\"Rex\",\"kind\":\"cow\"}]"), 32); /* the enum through $ref */
  assert_int_equal(grammar_run(g, "{\"pets\":[],\"best\":{\"kind\":\"cat\"}"), 31); /* Pet's required name */
  mimo_jg_free(g);
  g = compile_str(schemas[6]); /* integer bounds */
  assert_int_equal(grammar_run(g, "{\"age\":150,\"score\":-9,\"n\":1000,\"neg\":-6,\"h\":99,\"p\":1,\"pos\":0.5,\"t\":-2.5}"),
                   -1);
  assert_int_equal(grammar_run(g, "{\"age\":0,\"score\":9,\"n\":null,\"neg\":-123456,\"h\":1000,\"p\":0.999,\"pos\":7,"
                          "\"t\":3.7499}"),
                   -1);
  assert_int_equal(grammar_run(g, "{\"p\":1.5"), 7);    /* the 5 that takes 1.5 past 1 (1.0 would do) */
  assert_int_equal(grammar_run(g, "{\"pos\":0,"), 8);   /* exclusive: 0 may not end */
  assert_int_equal(grammar_run(g, "{\"t\":3.75"), 8);   /* exclusive 3.75: its 5 */
  assert_int_equal(grammar_run(g, "{\"p\":1e0"), 6);    /* plain decimals only where bounded */
  assert_int_equal(grammar_run(g, "{\"age\":151,"), 9);    /* the 1 that makes 151 */
  assert_int_equal(grammar_run(g, "{\"age\":-1,"), 7);     /* no minus at all */
  assert_int_equal(grammar_run(g, "{\"score\":10,"), 10);  /* exclusive: 10 is out at its 0 */
  assert_int_equal(grammar_run(g, "{\"neg\":-5,"), 9);     /* maximum -5.5: -5 ends too high (at the ',') */
  assert_int_equal(grammar_run(g, "{\"h\":98,"), 7);       /* minimum 99: 98 may still grow (980), not end */
  assert_int_equal(grammar_run(g, "{\"h\":9,"), 6);        /* ... and 9 at the ',' */
  mimo_jg_free(g);
  g = compile_str(schemas[7]); /* tagged union */
  assert_int_equal(grammar_run(g, "{\"pet\":{\"pet_type\":\"dog\",\"barks\":1.5},\"n\":2.5}"), -1);
  assert_int_equal(grammar_run(g, "{\"n\":7,\"pet\":{\"meows\":3,\"pet_type\":\"cat\"}}"), -1);
  assert_int_equal(grammar_run(g, "{\"pet\":{\"pet_type\":\"cat\",\"barks\":"), 26); /* a cat does not bark */
  assert_int_equal(grammar_run(g, "{\"pet\":{\"meows\":1.5"), 17);  /* a Cat (no Dog has meows): an integer */
  assert_int_equal(grammar_run(g, "{\"pet\":{\"pet_type\":\"cow"), 21);
  mimo_jg_free(g);
  g = compile_str(schemas[8]); /* overlapping anyOf */
  assert_int_equal(grammar_run(g, "[{\"a\":1,\"b\":\"xyz\"},{\"c\":false,\"a\":\"abcd\"},12,-0.5]"), -1);
  assert_int_equal(grammar_run(g, "[\"2024-02-29\",\"2024-02-29T10:00:00Z\",\"hi\",\"hello\"]"), -1);
  assert_int_equal(grammar_run(g, "[{\"a\":\"s\",\"b\""), 11);     /* a string a: the second object, which has no b */
  assert_int_equal(grammar_run(g, "[{\"a\":\"s\"}"), 9);              /* ... and needs c */
  assert_int_equal(grammar_run(g, "[5]"), 2);                        /* neither >= 10 nor <= 0 */
  assert_int_equal(grammar_run(g, "[\"2023-02-29\"]"), 11);          /* not a leap year, nor 2 characters */
  assert_int_equal(grammar_run(g, "[\"hellp\"]"), 6);
  { /* four readings inside the first string; one again once it has closed (they merge) */
    mimo_jg_state st;
    mimo_jg_start(g, &st);
    for (const char *c = "[\"2024-01-01"; *c; c++)
      assert_true(mimo_jg_feed(g, &st, (unsigned char)*c));
    assert_int_equal(st.n, 2); /* date, date-time (the 2-character string and "hello" have died) */
    for (const char *c = "\","; *c; c++)
      assert_true(mimo_jg_feed(g, &st, (unsigned char)*c));
    assert_int_equal(st.n, 1);
  }
  mimo_jg_free(g);
  g = compile_str(schemas[0]); /* vLLM's disable_any_whitespace: compact JSON, strings as they are */
  mimo_jg_no_whitespace(g);
  assert_int_equal(grammar_run(g, "{\"name\":\"a b\",\"age\":-12,\"tags\":[\"bc\",1]}"), -1);
  assert_int_equal(grammar_run(g, " {"), 0);
  assert_int_equal(grammar_run(g, "{\"name\": \"a\""), 8);
  assert_int_equal(grammar_run(g, "{\"name\":\"a\",\"age\":1 }"), 19); /* a number ends at the space, which is refused */
  assert_int_equal(grammar_run(g, "{\"name\":\"a\",\"tags\":[1, "), 22);
  mimo_jg_free(g);
  g = compile_str(schemas[9]); /* tuples */
  assert_int_equal(grammar_run(g, "{\"pair\":[7,\"abc\"],\"rest\":[true,1,2,3]}"), -1);
  assert_int_equal(grammar_run(g, "{\"rest\":[false],\"pair\":[-1,\"\"]}"), -1);
  assert_int_equal(grammar_run(g, "{\"pair\":[\"a\""), 9);   /* item 0 is an integer */
  assert_int_equal(grammar_run(g, "{\"pair\":[1,\"a\","), 14); /* items false: two at most */
  assert_int_equal(grammar_run(g, "{\"pair\":[1]"), 10);       /* minItems 2 */
  assert_int_equal(grammar_run(g, "{\"rest\":[1"), 9);         /* item 0 is a boolean */
  assert_int_equal(grammar_run(g, "{\"rest\":[true,-"), 14);   /* the rest: integers >= 0 */
  mimo_jg_free(g);
  const char *ch[] = {"yes", "no", "nope"};
  assert_int_equal(mimo_jg_choice(ch, 3, &g), MIMO_OK);
  assert_int_equal(grammar_run(g, "no"), -1);
  assert_int_equal(grammar_run(g, "nope"), -1);
  assert_int_equal(grammar_run(g, "yes!"), 3);
  assert_int_equal(grammar_run(g, " no"), 0);
  mimo_jg_free(g);
}

static uint64_t rng = 0x2545f4914f6cdd1dull;
static unsigned rnd(unsigned n) { return grammar_rnd(&rng, n); }

static int most_readings; /* the most readings a walk's state has held (unions that start alike fork them) */

static size_t walk(const mimo_jg *g, char *out, size_t cap, mimo_jg_state *states, size_t max_states, size_t *n_states) {
  mimo_jg_state s;
  mimo_jg_start(g, &s);
  size_t n = 0;
  for (;;) {
    if (s.n > most_readings)
      most_readings = s.n;
    if (states && *n_states < max_states && rnd(4) == 0)
      states[(*n_states)++] = s;
    const bool done = mimo_jg_done(g, &s);
    if (done && (mimo_jg_closed(&s) || rnd(3) == 0 || n > 200))
      break;
    int ok[256];
    const int k = grammar_allowed(g, &s, ok);
    assert_true(k > 0 || done); /* never a dead end */
    if (!k)
      break;
    int c = ok[rnd((unsigned)k)];
    if (n > 40 && rnd(4)) /* wind down: close what is open (not always: a pattern may need a suffix first) */
      for (int i = 0; i < k; i++)
        if (strchr("}]\"", ok[i]) && ok[i]) {
          c = ok[i];
          break;
        }
    assert_true(mimo_jg_feed(g, &s, (unsigned char)c));
    assert_true(n + 1 < cap);
    out[n++] = (char)c;
  }
  out[n] = 0;
  return n;
}

static void test_random_walks_validate(void **state) {
  (void)state;
  const char *src = getenv("MIMO_SRC");
  assert_non_null(src);
  char dir[] = "/tmp/mimo-test-grammar-XXXXXX";
  assert_non_null(mkdtemp(dir));
  for (int k = 0; k < N_SCHEMAS; k++) {
    mimo_jg *g = compile_str(schemas[k]);
    char path[256], cmd[1024];
    snprintf(path, sizeof path, "%s/schema.json", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(schemas[k] ? schemas[k] : "{\"type\":\"object\"}", f);
    fclose(f);
    snprintf(path, sizeof path, "%s/docs.bin", dir);
    f = fopen(path, "wb");
    assert_non_null(f);
    static char doc[1 << 16];
    most_readings = 0;
    for (int i = 0; i < 300; i++) {
      const size_t n = walk(g, doc, sizeof doc, NULL, 0, NULL);
      fwrite(doc, 1, n, f);
      fputc(0, f); /* NUL never occurs inside JSON text */
    }
    print_message("schema %d: up to %d readings at once\n", k, most_readings);
    if (k == 7 || k == 8) /* the unions whose alternatives start alike */
      assert_true(most_readings >= (k == 7 ? 2 : 4));
    fclose(f);
    snprintf(cmd, sizeof cmd,
             "/usr/bin/python3 -c \"import json,jsonschema,sys\n"
             "s=json.load(open('%s/schema.json'))\n"
             "docs=open('%s/docs.bin','rb').read().split(b'\\\\0')[:-1]\n"
             "for d in docs: jsonschema.validate(json.loads(d.decode('utf-8')), s, "
             "format_checker=jsonschema.FormatChecker())\n"
             "print('schema %d: %%d random documents valid' %% len(docs))\"",
             dir, dir, k);
    assert_int_equal(system(cmd), 0);
    mimo_jg_free(g);
  }
  grammar_rmdir(dir);
}

static void test_mask_equals_feeding(void **state) {
  (void)state;
  grammar_vocab_fixture x;
  grammar_vocab_open(&x);
  static mimo_jg_state st[2000];
  static char doc[1 << 16];
  for (int k = 0; k < N_SCHEMAS; k++) {
    mimo_jg *g = compile_str(schemas[k]);
    size_t n_st = 0;
    for (int i = 0; i < 40; i++)
      walk(g, doc, sizeof doc, st, sizeof st / sizeof *st, &n_st);
    char what[32];
    snprintf(what, sizeof what, "schema %d", k);
    grammar_vocab_check(&x, g, st, n_st, what);
    mimo_jg_free(g);
  }
  print_message("mask = feeding over %ld (state, token) pairs, %ld allowed\n", x.checked, x.allowed);
  assert_true(x.allowed > 1000);
  grammar_vocab_close(&x);
}

static void refused(const char *schema, const char *want) {
  json_error_t err;
  json_t *j = json_loads(schema, 0, &err);
  assert_non_null(j);
  mimo_jg *g = NULL;
  assert_int_equal(mimo_jg_compile(j, &g), MIMO_E_INVALID);
  if (!strstr(mimo_errmsg(), want))
    fail_msg("'%s': wanted '%s', got '%s'", schema, want, mimo_errmsg());
  json_decref(j);
}

/* Formats and patterns on hand-written values: accepted whole, or refused where they go wrong (the calendar's month
 * lengths and leap years included). */
static void test_formats(void **state) {
  (void)state;
  const struct {
    const char *schema, *doc;
    long want; /* -1: accepted whole; else the byte refused (the string's length: complete but not a match) */
  } cases[] = {
      {"{\"type\":\"string\",\"format\":\"date\"}", "\"2024-02-29\"", -1},
      {"{\"type\":\"string\",\"format\":\"date\"}", "\"2023-02-29\"", 10},
      {"{\"type\":\"string\",\"format\":\"date\"}", "\"1900-02-29\"", 10},
      {"{\"type\":\"string\",\"format\":\"date\"}", "\"2000-02-29\"", -1},
      {"{\"type\":\"string\",\"format\":\"date\"}", "\"2024-04-31\"", 10},
      {"{\"type\":\"string\",\"format\":\"date\"}", "\"2024-13-01\"", 7},
      {"{\"type\":\"string\",\"format\":\"date-time\"}", "\"2024-05-06T07:08:09.5+02:00\"", -1},
      {"{\"type\":\"string\",\"format\":\"date-time\"}", "\"2024-05-06T24:00:00Z\"", 13},
      {"{\"type\":\"string\",\"format\":\"uuid\"}", "\"123e4567-e89b-12d3-a456-426614174000\"", -1},
      {"{\"type\":\"string\",\"format\":\"ipv4\"}", "\"192.168.0.1\"", -1},
      {"{\"type\":\"string\",\"format\":\"ipv4\"}", "\"256.1.1.1\"", 3},
      {"{\"type\":\"string\",\"format\":\"email\"}", "\"ada@lovelace.org\"", -1},
      {"{\"type\":\"string\",\"pattern\":\"^a\\\\d$\"}", "\"a7\"", -1},
      {"{\"type\":\"string\",\"pattern\":\"^a\\\\d$\"}", "\"a7x\"", 3},
      {"{\"type\":\"string\",\"pattern\":\"b\"}", "\"xxbyy\"", -1},   /* search semantics */
      {"{\"type\":\"string\",\"pattern\":\"b\"}", "\"xxyy\"", 5},
      /* each top-level alternative anchored by its own '^' / '$' (JSON Schema's search semantics) */
      {"{\"type\":\"string\",\"pattern\":\"^ab|cd$\"}", "\"abzz\"", -1},
      {"{\"type\":\"string\",\"pattern\":\"^ab|cd$\"}", "\"zzcd\"", -1},
      {"{\"type\":\"string\",\"pattern\":\"^ab|cd$\"}", "\"zzab\"", 5},
      {"{\"type\":\"string\",\"pattern\":\"^ab|cd$\"}", "\"cdx\"", 4},
      {"{\"type\":\"string\",\"pattern\":\"^(a|b)$|[|]\"}", "\"x|y\"", -1}, /* '|' in a class, a group */
      {"{\"type\":\"string\",\"pattern\":\"^(a|b)$|[|]\"}", "\"b\"", -1},
      {"{\"type\":\"string\",\"pattern\":\"^(a|b)$|[|]\"}", "\"ab\"", 3},
      {"{\"type\":\"string\",\"pattern\":\"^\\\"+$\"}", "\"\\\"\\\"\"", -1}, /* escapes decoded */
      {"{\"type\":\"string\",\"pattern\":\"^x+$\"}", "\"\\u0078\"", 1},          /* no \\u in patterns */
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    mimo_jg *g = compile_str(cases[i].schema);
    const long got = grammar_run(g, cases[i].doc);
    if (got != cases[i].want)
      fail_msg("%s on %s: refused at %ld, wanted %ld", cases[i].schema, cases[i].doc, got, cases[i].want);
    mimo_jg_free(g);
  }
}

static void test_refusals(void **state) {
  (void)state;
  refused("{\"type\":\"string\",\"pattern\":\"(a)\\\\1\"}", "schema.pattern: regex: backreferences");
  refused("{\"type\":\"string\",\"pattern\":\"a\",\"maxLength\":3}", "pattern with minLength/maxLength");
  refused("{\"type\":\"string\",\"format\":\"hostname\"}", "schema.format: 'hostname' is not supported");
  refused("{\"properties\":{\"a\":{\"$ref\":\"#/x\"}}}", "schema.properties.a.$ref: '#/x' points nowhere");
  refused("{\"properties\":{\"a\":{\"$ref\":\"https://example.com/s.json\"}}}", "local references #/... only");
  refused("{\"$defs\":{\"N\":{\"type\":\"object\",\"properties\":{\"kids\":{\"type\":\"array\",\"items\":"
          "{\"$ref\":\"#/$defs/N\"}}}}},\"$ref\":\"#/$defs/N\"}",
          "schema.$ref(#/$defs/N).properties.kids.items.$ref: '#/$defs/N' refers back into itself");
  refused("{\"$defs\":{\"A\":{\"type\":\"string\"}},\"properties\":{\"a\":{\"$ref\":\"#/$defs/A\",\"maxLength\":3}}}",
          "schema.properties.a.maxLength: keywords beside $ref are not supported");
  refused("{\"properties\":{\"a\":{\"$ref\":5}}}", "schema.properties.a.$ref must be a string");
  refused("{\"allOf\":[{\"type\":\"string\"},{\"maxLength\":2}]}", "schema.allOf: only a list of one schema");
  refused("{\"type\":\"number\",\"minimum\":1e-30}", "needing more than 20 decimal places");
  refused("{\"minimum\":0}", "schema: minimum/maximum need type integer or number");
  refused("{\"type\":\"integer\",\"minimum\":5,\"maximum\":4}", "schema: the range of integers is empty");
  refused("{\"type\":\"integer\",\"exclusiveMinimum\":true}", "schema.exclusiveMinimum must be a number");
  refused("{\"type\":\"integer\",\"maximum\":1e30}", "integer bounds beyond 10^18");
  { /* twenty levels of definitions, each using the next twice: 2^20 copies if nothing stopped it */
    char big[8192];
    int at = snprintf(big, sizeof big, "{\"$defs\":{");
    for (int i = 0; i < 20; i++)
      at += snprintf(big + at, sizeof big - (size_t)at, "\"d%d\":{\"type\":\"object\",\"properties\":{\"a\":{\"$ref\":"
                     "\"#/$defs/d%d\"},\"b\":{\"$ref\":\"#/$defs/d%d\"}}},", i, i + 1, i + 1);
    snprintf(big + at, sizeof big - (size_t)at, "\"d20\":{\"type\":\"integer\"}},\"$ref\":\"#/$defs/d0\"}");
    refused(big, "grows past 50000 nodes through its references");
  }
  refused("{\"oneOf\":[{\"type\":\"integer\"},{\"type\":\"number\"}]}",
          "schema.oneOf: alternatives 0 and 1 might both match one value");
  /* objects without a property that tells them apart (b allows other keys, so {"x":1,"y":2} is both) */
  refused("{\"oneOf\":[{\"properties\":{\"x\":{\"type\":\"integer\"}},\"required\":[\"x\"]},{\"properties\":"
          "{\"y\":{\"type\":\"integer\"}},\"required\":[\"y\"]}]}", "alternatives 0 and 1 might both match");
  refused("{\"oneOf\":[{\"enum\":[1,2]},{\"enum\":[3,2.0]}]}", "alternatives 0 and 1 might both match");
  refused("{\"anyOf\":[{\"type\":\"string\"}],\"oneOf\":[{\"type\":\"string\"}]}", "anyOf beside oneOf");
  refused("{\"type\":\"color\"}", "'color' is not a JSON schema type");
  refused("{\"type\":\"object\",\"properties\":{\"a\":{}},\"required\":[\"b\"]}", "required[0] is not one of");
  refused("{\"type\":\"array\",\"minItems\":3,\"maxItems\":2}", "maxItems is below minItems");
  mimo_jg *g = NULL;
  const char *none[] = {""};
  assert_int_equal(mimo_jg_choice(none, 1, &g), MIMO_E_INVALID);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_documents),
      cmocka_unit_test(test_random_walks_validate),
      cmocka_unit_test(test_mask_equals_feeding),
      cmocka_unit_test(test_formats),
      cmocka_unit_test(test_refusals),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
