/* Jinja renderer: replays tests/text/jinja_data/cases.jsonl (template snippets rendered by
 * Python jinja2 with HF's settings; test_jinja.sh keeps them in sync with live jinja2) and
 * checks limits and error reporting on hostile templates. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "text/jinja/jinja.h"

static void test_cases(void **state) {
  (void)state;
  const char *src = getenv("MIMO_SRC");
  char path[4096];
  snprintf(path, sizeof path, "%s/tests/text/jinja_data/cases.jsonl", src ? src : ".");
  FILE *f = fopen(path, "r");
  assert_non_null(f);
  char *line = NULL;
  size_t cap = 0;
  int n = 0, bad = 0;
  while (getline(&line, &cap, f) > 0) {
    json_error_t e;
    json_t *rec = json_loads(line, 0, &e);
    assert_non_null(rec);
    const char *tmpl = json_string_value(json_object_get(rec, "t"));
    json_t *want = json_object_get(rec, "out");
    char *out = NULL;
    mimo_status st = mimo_jinja_render_string(tmpl, json_object_get(rec, "ctx"), &out);
    n++;
    if (want) {
      if (st != MIMO_OK || strcmp(out, json_string_value(want)) != 0) {
        bad++;
        printf("MISMATCH %s\n  want: %s\n  got:  %s\n", tmpl, json_string_value(want),
               st == MIMO_OK ? out : mimo_errmsg());
      }
    } else if (st == MIMO_OK) {
      bad++;
      printf("EXPECTED ERROR %s (jinja2: %s)\n  got: %s\n", tmpl, json_string_value(json_object_get(rec, "err")), out);
    }
    free(out);
    json_decref(rec);
  }
  free(line);
  fclose(f);
  printf("%d cases, %d mismatches\n", n, bad);
  assert_true(n > 100);
  assert_int_equal(bad, 0);
}

static void expect_error(const char *tmpl, const char *needle) {
  char *out = NULL;
  mimo_status st = mimo_jinja_render_string(tmpl, NULL, &out);
  if (st == MIMO_OK) printf("unexpected success: %s\n", tmpl);
  assert_int_not_equal(st, MIMO_OK);
  assert_null(out);
  if (needle && !strstr(mimo_errmsg(), needle)) printf("message for %s: %s\n", tmpl, mimo_errmsg());
  if (needle) assert_non_null(strstr(mimo_errmsg(), needle));
}

static void test_limits(void **state) {
  (void)state;
  expect_error("{% set r = range(100000) %}{% for i in r %}{% for j in r %}{% endfor %}{% endfor %}", "steps");
  expect_error("{{ 10 ** 20 }}", "overflow"); /* Python would print a big int; mimo's are 64-bit */
  expect_error("{% macro m() %}{{ m() }}{% endmacro %}{{ m() }}", "deep");
  expect_error("{{ 'x' * 1000000000 }}", "longer");
  /* widths and precisions of more digits than an int64 holds: refused by size, no overflow (fuzz_jinja found it) */
  expect_error("{{ '%99999999999999999999999d' % 1 }}", "longer");
  expect_error("{{ '%.99999999999999999999999f%99999999999999999999999d' % (1.5, 2) }}", "longer");
  expect_error("{% set s = 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx' * 100000 %}"
               "{% for i in range(100000) %}{{ s }}{% endfor %}", "output longer");
  char deep[5000];
  size_t k = 0;
  for (int i = 0; i < 1000; i++) deep[k++] = '(';
  deep[k] = 0;
  char src[8000];
  char close[1100];
  memset(close, ')', 1000);
  close[1000] = 0;
  snprintf(src, sizeof src, "{{ %s1%s }}", deep, close);
  expect_error(src, "nested");
  expect_error("line one\n{{ nope() }}", "line 2");
  expect_error("a\n\n{% if %}", "line 3");
}

static void test_api(void **state) {
  (void)state;
  mimo_jinja *t;
  assert_int_equal(mimo_jinja_parse("{{ a }}-{{ b|length }}", 22, &t), MIMO_OK);
  json_t *ctx = json_pack("{s:s, s:[i,i]}", "a", "x", "b", 1, 2);
  char *out;
  size_t n;
  for (int i = 0; i < 3; i++) { /* a parsed template renders repeatedly */
    assert_int_equal(mimo_jinja_render(t, ctx, &out, &n), MIMO_OK);
    assert_string_equal(out, "x-2");
    assert_int_equal(n, 3);
    free(out);
  }
  json_t *arr = json_array();
  assert_int_not_equal(mimo_jinja_render(t, arr, &out, &n), MIMO_OK);
  json_decref(arr);
  json_decref(ctx);
  mimo_jinja_free(t);
  mimo_jinja_free(NULL);
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_cases), cmocka_unit_test(test_limits),
                                     cmocka_unit_test(test_api)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}
