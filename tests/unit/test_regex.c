/* Regex DFAs (text/regex_dfa.h) against Python's re (an independent implementation; re.ASCII for \d \w \s):
 *   - every string a random walk through the DFA ends with (only live bytes, stopping where it accepts) is one
 *     re.fullmatch accepts;
 *   - random strings over an alphabet of ASCII, multi-byte UTF-8 and whitespace get the same verdict from the DFA
 *     as from re.fullmatch;
 *   - a live state can always still reach a match (stated property of the dead-end cut), checked on every walk;
 *   - what a DFA cannot do (backreferences, lookaround, ...) and malformed patterns are refused with the position;
 *   - through the grammar (guided_regex): mimo_jg_regex accepts exactly the DFA's strings. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/num.h"
#include "text/json_grammar.h"
#include "text/regex_dfa.h"

static const char *patterns[] = {
    "[a-z]+@[a-z]+\\.(com|org)", "\\d{3}-\\d{4}", "(ab|cd)*e?", "[^abc]{2,5}", ".{0,3}x", "\\w+\\s\\w+",
    "(?:yes|no|maybe)", "(?P<n>[0-9]{1,3})(\\.[0-9]{1,3}){3}", "\xc3\xa9+[\xce\xb1-\xcf\x89]*",
    "[\\u4e00-\\u9fff]{1,4}", "a{2,}b{,2}", "\\$\\d+(\\.\\d\\d)?", "[\\d\\s]+", "[^\\W_]+", "x|", "(a|b|)+c",
    "\\x41\\u00e9", "^abc$", "\\[\\]\\{\\}", "[-a]+", "[a-]+", "[]a]+", "a{,3}", "a{2}", "[\\S]", "\\D\\W",
    "(\\.)?", "\xf0\x9f\x99\x82+", "[^\\n]*", "a{3}?b+?", "[\\x00-\\x7f]{2}", "(?:[a-c]|[x-z])*[^ -~]", "a{1,3}{",
    "\\d+(,\\d{3})*", "[\xc3\xa0-\xc3\xbf\xe2\x82\xac]", "((a|b)(c|d))+", "[^a-z\\u00e9]+",
};

/* The alphabet of random strings (UTF-8 pieces). */
static const char *alphabet[] = {"a", "b", "c", "d", "e", "x", "y", "z", "0", "1", "9", "@", ".", "-", "_", " ", "\n",
                                 "\t", "$", ",", "[", "]", "{", "}", "A", "\xc3\xa9", "\xce\xb1", "\xcf\x89",
                                 "\xe4\xb8\xad", "\xf0\x9f\x99\x82", "\xe2\x82\xac", "\x7f", "m", "o", "g"};

static bool dfa_match(const mimo_re *re, const char *s, size_t n) {
  int st = mimo_re_start(re);
  for (size_t i = 0; i < n && st >= 0; i++)
    st = mimo_re_next(re, st, (unsigned char)s[i]);
  return st >= 0 && mimo_re_accepts(re, st);
}

/* A JSON string literal of s (valid UTF-8) into f. */
static void json_str(FILE *f, const char *s, size_t n) {
  fputc('"', f);
  for (size_t i = 0; i < n; i++) {
    const unsigned char c = (unsigned char)s[i];
    if (c == '"' || c == '\\')
      fprintf(f, "\\%c", c);
    else if (c < 0x20 || c == 0x7f)
      fprintf(f, "\\u%04x", c);
    else
      fputc(c, f);
  }
  fputc('"', f);
}

static void test_against_python(void **state) {
  (void)state;
  char path[] = "/tmp/mimo-regex-XXXXXX";
  const int fd = mkstemp(path);
  assert_true(fd >= 0);
  FILE *f = fdopen(fd, "w");
  assert_non_null(f);
  mimo_rng rng;
  mimo_rng_seed(&rng, 7);
  long walks = 0, randoms = 0, matched = 0;
  for (size_t p = 0; p < sizeof patterns / sizeof *patterns; p++) {
    mimo_re *re;
    if (mimo_re_compile(patterns[p], strlen(patterns[p]), 20000, &re) != MIMO_OK)
      fail_msg("%s: %s", patterns[p], mimo_errmsg());
    char buf[512];
    for (int w = 0; w < 150; w++) { /* random walks: live bytes only, stopping at an accepting state now and then */
      int st = mimo_re_start(re);
      size_t n = 0;
      while (n < sizeof buf - 1) {
        if (mimo_re_accepts(re, st) && (mimo_rng_uniform(&rng) < 0.25 || n > 200))
          break;
        int live[256], k = 0;
        for (int b = 0; b < 256; b++)
          if (mimo_re_next(re, st, (unsigned char)b) >= 0)
            live[k++] = b;
        if (!k && mimo_re_accepts(re, st))
          break;
        assert_true(k > 0); /* a live, non-accepting state has a way on */
        const int b = live[(int)(mimo_rng_uniform(&rng) * k) % k];
        buf[n++] = (char)b;
        st = mimo_re_next(re, st, (unsigned char)b);
      }
      if (!mimo_re_accepts(re, st))
        continue;
      fprintf(f, "[");
      json_str(f, patterns[p], strlen(patterns[p]));
      fprintf(f, ",");
      json_str(f, buf, n);
      fprintf(f, ",true]\n");
      walks++;
    }
    for (int r = 0; r < 400; r++) { /* random strings: the same verdict */
      const int len = (int)(mimo_rng_uniform(&rng) * 7);
      size_t n = 0;
      for (int i = 0; i < len; i++) {
        const char *piece = alphabet[(int)(mimo_rng_uniform(&rng) * (sizeof alphabet / sizeof *alphabet))];
        memcpy(buf + n, piece, strlen(piece));
        n += strlen(piece);
      }
      const bool m = dfa_match(re, buf, n);
      matched += m;
      fprintf(f, "[");
      json_str(f, patterns[p], strlen(patterns[p]));
      fprintf(f, ",");
      json_str(f, buf, n);
      fprintf(f, ",%s]\n", m ? "true" : "false");
      randoms++;
    }
    mimo_re_free(re);
  }
  fclose(f);
  print_message("%ld walks, %ld random strings (%ld match) over %zu patterns\n", walks, randoms, matched,
                sizeof patterns / sizeof *patterns);
  char cmd[512];
  snprintf(cmd, sizeof cmd,
           "/usr/bin/python3 -c \"import json,re,sys\n"
           "bad=0\n"
           "for l in open('%s', encoding='utf-8'):\n"
           "  p,s,v=json.loads(l)\n"
           "  if (re.fullmatch(p,s,re.ASCII) is not None)!=v:\n"
           "    bad+=1; print('differs:',repr(p),repr(s),v) if bad<10 else None\n"
           "sys.exit(1 if bad else 0)\"",
           path);
  const int rc = system(cmd);
  unlink(path);
  assert_int_equal(rc, 0);
}

static void test_refusals(void **state) {
  (void)state;
  const struct {
    const char *p, *why;
  } bad[] = {
      {"(a)\\1", "backreferences"}, {"(?=a)b", "lookaround"}, {"\\bword", "not supported"}, {"(?i)a", "inline flags"},
      {"a**", "multiple repeat"}, {"*a", "nothing to repeat"}, {"[a-", "not closed"}, {"(a", "not closed"},
      {"a)", "unbalanced"}, {"a{3,1}", "below its minimum"}, {"a{1001}", "over 1000"}, {"\\x4", "escape"},
      {"[z-a]", "backwards"}, {"a^b", "'^' and '$'"}, {"a$b", "'^' and '$'"}, {"a++", "possessive"},
      {"[^\\x00-\\U0010FFFF]", "matches no string"}, {"\xff", "UTF-8"}, {"\\", "backslash"},
      {"(a|b|c|d|e|f|g|h){1000}x[a-z]{200}", "states"},
      {"(\\w+\\s?){1,1000}", "too complex"}, /* bounded compile time: a request cannot hold a thread for long */
  };
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    mimo_re *re = NULL;
    const int states = strcmp(bad[i].why, "too complex") ? 2000 : 20000; /* (the work bound, not the state cap) */
    assert_int_equal(mimo_re_compile(bad[i].p, strlen(bad[i].p), states, &re), MIMO_E_INVALID);
    assert_null(re);
    if (!strstr(mimo_errmsg(), bad[i].why))
      fail_msg("%s: '%s' does not say '%s'", bad[i].p, mimo_errmsg(), bad[i].why);
  }
}

static void test_grammar(void **state) {
  (void)state;
  const char *p = "\\{\"n\": \\d{1,3}\\}";
  mimo_jg *g;
  assert_int_equal(mimo_jg_regex(p, strlen(p), &g), MIMO_OK);
  mimo_re *re;
  assert_int_equal(mimo_re_compile(p, strlen(p), 2000, &re), MIMO_OK);
  const char *tries[] = {"{\"n\": 7}", "{\"n\": 123}", "{\"n\": 1234}", "{\"n\":7}", "{\"n\": }", ""};
  for (size_t i = 0; i < sizeof tries / sizeof *tries; i++) {
    mimo_jg_state s;
    mimo_jg_start(g, &s);
    bool ok = true;
    for (const char *c = tries[i]; *c && ok; c++)
      ok = mimo_jg_feed(g, &s, (unsigned char)*c);
    assert_int_equal(ok && mimo_jg_done(g, &s), dfa_match(re, tries[i], strlen(tries[i])));
    assert_false(mimo_jg_free_text(g, &s));
  }
  mimo_re_free(re);
  mimo_jg_free(g);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_against_python),
      cmocka_unit_test(test_refusals),
      cmocka_unit_test(test_grammar),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
