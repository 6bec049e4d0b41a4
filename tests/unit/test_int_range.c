/* Integer ranges as regexes (text/int_range.h) against integer comparison: for ranges with open and closed ends
 * around 0, powers of ten and random bounds, every integer near the bounds (and a sample far off) matches exactly
 * when it lies in the range, written as JSON writes it; "-0", leading zeros and '+' never match. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "text/int_range.h"
#include "text/regex_dfa.h"

static bool matches(const mimo_re *re, const char *s) {
  int st = mimo_re_start(re);
  for (const unsigned char *p = (const unsigned char *)s; *p && st >= 0; p++)
    st = mimo_re_next(re, st, *p);
  return st >= 0 && mimo_re_accepts(re, st);
}

static uint64_t rng = 0x853c49e6748fea9bull;
static long long rnd(long long n) { /* 0..n-1 */
  rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
  return (long long)(rng % (uint64_t)n);
}

static void check_range(bool has_lo, long long lo, bool has_hi, long long hi) {
  char *rx;
  if (mimo_int_range_regex(has_lo, lo, has_hi, hi, &rx) != MIMO_OK)
    fail_msg("range refused: %s", mimo_errmsg());
  mimo_re *re;
  if (mimo_re_compile(rx, strlen(rx), 20000, &re) != MIMO_OK)
    fail_msg("regex refused: %s\n%s", mimo_errmsg(), rx);
  long long probes[4096];
  int np = 0;
  const long long centres[] = {lo, hi, 0, 9, 10, 99, 100, 1000, -1, -10, -100, 999999, 1000000};
  for (size_t c = 0; c < sizeof centres / sizeof *centres; c++)
    for (long long d = -40; d <= 40; d++)
      probes[np++] = centres[c] + d;
  for (int i = 0; i < 1000; i++) /* far off, both signs, any magnitude */
    probes[np++] = (rnd(2) ? 1 : -1) * rnd(1 + (1LL << (rnd(60) + 1)));
  for (int i = 0; i < np; i++) {
    const long long v = probes[i];
    if (v < -1000000000000000000LL || v > 1000000000000000000LL)
      continue;
    char s[32];
    snprintf(s, sizeof s, "%lld", v);
    const bool in = (!has_lo || v >= lo) && (!has_hi || v <= hi);
    if (matches(re, s) != in)
      fail_msg("[%s%lld, %lld%s]: %s %s (regex %s)", has_lo ? "" : "-inf ", lo, hi, has_hi ? "" : " +inf", s,
               in ? "refused" : "accepted", rx);
  }
  const char *never[] = {"-0", "00", "007", "+5", "-", "", "1-", "--1", NULL};
  for (int i = 0; never[i]; i++)
    if (matches(re, never[i]))
      fail_msg("range matches non-JSON \"%s\"", never[i]);
  mimo_re_free(re);
  free(rx);
}

static void test_fixed(void **state) {
  (void)state;
  const long long b[][2] = {{0, 0},     {0, 9},    {0, 10},    {1, 100},     {5, 5},      {-5, 5},      {-100, -1},
                            {-99, -10}, {10, 99},  {13, 4567}, {-4567, -13}, {-1, 0},     {999, 1000},  {100, 199},
                            {120, 129}, {0, 1000000}, {-1000000000000000000LL, 1000000000000000000LL}};
  for (size_t i = 0; i < sizeof b / sizeof *b; i++)
    check_range(true, b[i][0], true, b[i][1]);
  const long long one[] = {0, 1, 9, 10, 11, 99, 100, 123, -1, -9, -10, -123, 1000000000000000000LL};
  for (size_t i = 0; i < sizeof one / sizeof *one; i++) {
    check_range(true, one[i], false, 0); /* minimum only */
    check_range(false, 0, true, one[i]); /* maximum only */
  }
  check_range(false, 0, false, 0); /* no bound: every integer */
}

static void test_random(void **state) {
  (void)state;
  for (int i = 0; i < 300; i++) {
    const long long scale = 1LL << (rnd(40) + 1);
    long long lo = rnd(2 * scale) - scale, hi = rnd(2 * scale) - scale;
    if (lo > hi) {
      const long long t = lo;
      lo = hi;
      hi = t;
    }
    check_range(true, lo, true, hi);
  }
}

static void test_refused(void **state) {
  (void)state;
  char *rx = NULL;
  assert_int_not_equal(mimo_int_range_regex(true, 5, true, 4, &rx), MIMO_OK);
  assert_non_null(strstr(mimo_errmsg(), "empty"));
  assert_int_not_equal(mimo_int_range_regex(true, 0, true, 2000000000000000000LL, &rx), MIMO_OK);
  assert_null(rx);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_fixed),
      cmocka_unit_test(test_random),
      cmocka_unit_test(test_refused),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
