/* GBNF grammars (text/gbnf.h) against hand-written strings they must accept or refuse, through the regular expression
 * they become and its DFA (text/regex_dfa.h); recursion bounded at 4 levels; malformed grammars refused with the
 * line or rule named. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "text/gbnf.h"
#include "text/regex_dfa.h"

static bool matches(const mimo_re *re, const char *s) {
  int st = mimo_re_start(re);
  for (const unsigned char *p = (const unsigned char *)s; *p && st >= 0; p++)
    st = mimo_re_next(re, st, *p);
  return st >= 0 && mimo_re_accepts(re, st);
}

/* grammar g accepts every string of yes (NULL-terminated) and none of no */
static void check(const char *g, const char *const *yes, const char *const *no) {
  char *rx;
  if (mimo_gbnf_to_regex(g, strlen(g), &rx) != MIMO_OK)
    fail_msg("grammar refused: %s\n%s", mimo_errmsg(), g);
  mimo_re *re;
  if (mimo_re_compile(rx, strlen(rx), 20000, &re) != MIMO_OK)
    fail_msg("regex refused: %s\n%s", mimo_errmsg(), rx);
  for (int i = 0; yes[i]; i++)
    if (!matches(re, yes[i]))
      fail_msg("should accept \"%s\" (grammar:\n%s)", yes[i], g);
  for (int i = 0; no[i]; i++)
    if (matches(re, no[i]))
      fail_msg("should refuse \"%s\" (grammar:\n%s)", no[i], g);
  mimo_re_free(re);
  free(rx);
}

static void refused(const char *g, const char *needle) {
  char *rx = NULL;
  const mimo_status st = mimo_gbnf_to_regex(g, strlen(g), &rx);
  if (st == MIMO_OK)
    fail_msg("grammar accepted: %s", g);
  assert_null(rx);
  if (!strstr(mimo_errmsg(), needle))
    fail_msg("message \"%s\" lacks \"%s\"", mimo_errmsg(), needle);
}

static void test_sql(void **state) {
  (void)state;
  /* vLLM's documentation example of guided_grammar */
  const char *g = "root ::= select_statement\n"
                  "select_statement ::= \"SELECT \" column \" from \" table \" where \" condition\n"
                  "column ::= \"col_1 \" | \"col_2 \"\n"
                  "table ::= \"table_1 \" | \"table_2 \"\n"
                  "condition ::= column \"= \" number\n"
                  "number ::= \"1 \" | \"2 \"\n";
  const char *yes[] = {"SELECT col_1  from table_2  where col_2 = 1 ", "SELECT col_2  from table_1  where col_1 = 2 ", NULL};
  const char *no[] = {"SELECT col_3  from table_2  where col_2 = 1 ", "SELECT col_1  from table_2  where col_2 = 1",
                      "select col_1  from table_2  where col_2 = 1 ", "", NULL};
  check(g, yes, no);
}

static void test_items(void **state) {
  (void)state;
  /* classes, negation, ranges, escapes, any character, groups, repetitions, comments, rules over several lines */
  const char *g = "# a key = value list\n"
                  "root ::= pair (\"\\n\" pair)* end?\n"
                  "pair ::= key ws? \"=\" ws? value   # spaces around =\n"
                  "key  ::= [a-zA-Z_] [a-zA-Z0-9_-]{0,15}\n"
                  "value ::= num | str\n"
                  "num ::= \"-\"? [0-9]+ (\".\" [0-9]{1,3})?\n"
                  "str ::= \"\\\"\" ( [^\"\\\\\\n] | \"\\\\\" . )* \"\\\"\"\n"
                  "ws ::= [ \\t]+\n"
                  "end ::=\n  \"\\n\"\n"
                  "     | \"\\u00e9\"\n";
  const char *yes[] = {"a=1", "a_b = -12.5\nc=\"x y\"", "k=\"q\\\"t\"\n", "z=0é", "k-1=\"\\n\"", NULL};
  const char *no2[] = {"1a=1", "a=", "a=1.2345", "a=\"x", "a=\"x\ny\"", "a=1\nb", "abcdefghijklmnopq=1", NULL};
  check(g, yes, no2);
  /* {m}, {m,}, non-ASCII literals and classes */
  const char *g2 = "root ::= \"日本\"{2} [α-ω]{1,} \"!\"?";
  const char *yes2[] = {"日本日本α", "日本日本ωω!", NULL}, *no2b[] = {"日本α", "日本日本", "日本日本a", NULL};
  check(g2, yes2, no2b);
}

static void test_refused(void **state) {
  (void)state;
  refused("start ::= \"a\"", "no rule named root");
  refused("root ::= a\n", "no rule named a");
  refused("root ::= \"a\"\nroot ::= \"b\"", "a second definition of rule root");
  refused("root ::= \"abc", "line 1: a string is not closed");
  refused("root ::= [abc", "a character class is not closed");
  refused("root ::= \"a\"\n x ::= [z-a]", "line 2: a class range runs backwards");
  refused("root ::= ( \"a\"", "a group ( is not closed");
  refused("root ::= \"a\" )", "an unmatched ')'");
  refused("root ::= \"a\" ; \"b\"", "unexpected ';'");
  refused("root ::= []", "an empty character class");
  refused("root ::= \"\\q\"", "an unknown escape");
  refused("root ::= \"\\uD800\"", "names no Unicode character");
  refused("root ::= \"a\"{1,x}", "a repetition is {m}, {m,} or {m,n}");
  refused("oops\nroot ::= \"a\"", "text before the first rule");
  refused("", "no rules");
  refused("root ::= | ::= \"a\"", "'::=' without a rule name");
  /* inlining that would not end: each level doubles */
  char big[4096];
  int at = snprintf(big, sizeof big, "root ::= r0\n");
  for (int i = 0; i < 30; i++)
    at += snprintf(big + at, sizeof big - (size_t)at, "r%d ::= r%d r%d\n", i, i + 1, i + 1);
  snprintf(big + at, sizeof big - (size_t)at, "r30 ::= \"abcdefgh\"\n");
  refused(big, "more than 4 MiB");
}

/* Recursion: written out again inside itself up to 4 levels deep, never deeper, never wrong. */
static void test_recursion(void **state) {
  (void)state;
  const char *paren = "root ::= \"(\" root \")\" | \"x\"";
  const char *py[] = {"x", "(x)", "((((x))))", NULL}, *pn[] = {"(((((x)))))", "((x)", "(x))", "", NULL};
  check(paren, py, pn);
  const char *arith = "root ::= expr\n"
                      "expr ::= term ((\"+\" | \"-\") term)*\n"
                      "term ::= factor ((\"*\" | \"/\") factor)*\n"
                      "factor ::= [0-9]+ | \"(\" expr \")\"\n";
  const char *ay[] = {"1+2*(3-4)", "(((1+2)))/7", "((((1))))", "12*(3+(4-(5/6)))", NULL};
  const char *an[] = {"(((((1)))))", "1+", "(1+2", "1+2)", "a", NULL};
  check(arith, ay, an);
  const char *list = "root ::= list\nlist ::= list \",\" item | item\nitem ::= [a-z]"; /* left recursion: 5 items */
  const char *ly[] = {"a", "a,b", "a,b,c,d,e", NULL}, *ln[] = {"a,b,c,d,e,f", "a,", ",a", NULL};
  check(list, ly, ln);
  const char *json = "root ::= value\n"
                     "value ::= \"[\" ws (value (ws \",\" ws value)*)? ws \"]\" | [0-9]+\n"
                     "ws ::= [ ]?";
  const char *jy[] = {"[1,[2,[3,[4]]]]", "[[[[1]]]]", "[ ]", "7", NULL}, *jn[] = {"[[[[[1]]]]]", "[1,]", NULL};
  check(json, jy, jn);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_sql),
      cmocka_unit_test(test_items),
      cmocka_unit_test(test_refused),
      cmocka_unit_test(test_recursion),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
