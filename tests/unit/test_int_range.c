/* Integer ranges as regexes (text/int_range.h) against integer comparison: for ranges with open and closed ends
 * around 0, powers of ten and random bounds, every integer near the bounds (and a sample far off) matches exactly
 * when it lies in the range, written as JSON writes it; "-0", leading zeros and '+' never match. The same for plain
 * decimals against an exact decimal comparison (a negative zero may be refused: "0" is there). */
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

/* exact comparison of plain decimals "-?I(.F)?": <0, 0, >0 */
static int dec_cmp(const char *x, const char *y) {
  const bool nx = x[0] == '-', ny = y[0] == '-';
  char a[64], b[64];
  /* align: integer parts to 20 digits, fractions to 24 */
  const char *xs[2] = {x + nx, y + ny};
  char *out[2] = {a, b};
  for (int k = 0; k < 2; k++) {
    const char *dot = strchr(xs[k], '.');
    const size_t il = dot ? (size_t)(dot - xs[k]) : strlen(xs[k]);
    memset(out[k], '0', 44);
    memcpy(out[k] + 20 - il, xs[k], il);
    if (dot)
      memcpy(out[k] + 20, dot + 1, strlen(dot + 1));
    out[k][44] = 0;
  }
  const bool zx = strspn(a, "0") == 44, zy = strspn(b, "0") == 44;
  const int sx = zx ? 0 : nx ? -1 : 1, sy = zy ? 0 : ny ? -1 : 1;
  if (sx != sy)
    return sx < sy ? -1 : 1;
  const int c = strcmp(a, b);
  return sx < 0 ? -c : c;
}

static void check_dec(const char *lo, const char *hi) {
  char *rx;
  if (mimo_dec_range_regex(lo, hi, &rx) != MIMO_OK)
    fail_msg("range [%s, %s] refused: %s", lo ? lo : "-inf", hi ? hi : "inf", mimo_errmsg());
  mimo_re *re;
  if (mimo_re_compile(rx, strlen(rx), 20000, &re) != MIMO_OK)
    fail_msg("regex refused: %s\n%s", mimo_errmsg(), rx);
  /* probes: each bound and 0 with digits changed at every place, and random decimals */
  char probes[3000][48];
  int np = 0;
  const char *centres[] = {lo ? lo : "0", hi ? hi : "0", "0", "1", "-1", "0.5", "10"};
  for (size_t c = 0; c < sizeof centres / sizeof *centres; c++) {
    const size_t n = strlen(centres[c]);
    snprintf(probes[np++], 48, "%s", centres[c]);
    for (size_t i = 0; i < n && np < 2900; i++)
      for (int d = 0; d <= 9 && np < 2900; d++) {
        if (centres[c][i] < '0' || centres[c][i] > '9')
          continue;
        snprintf(probes[np], 48, "%s", centres[c]);
        probes[np][i] = (char)('0' + d);
        if (probes[np][0] == '0' && probes[np][1] >= '0' && probes[np][1] <= '9')
          continue; /* (a leading zero: not a JSON number) */
        if (probes[np][0] == '-' && probes[np][1] == '0' && probes[np][2] >= '0' && probes[np][2] <= '9')
          continue;
        np++;
      }
    for (int e = 0; e < 3 && np < 2900; e++) /* one more digit at the end */
      snprintf(probes[np++], 48, "%s%s%d", centres[c], strchr(centres[c], '.') ? "" : ".", (int)rnd(10));
  }
  while (np < 3000) {
    const long long ip = rnd(2) ? rnd(20) : rnd(100000);
    if (rnd(3))
      snprintf(probes[np++], 48, "%s%lld.%0*lld", rnd(2) ? "-" : "", ip, (int)(1 + rnd(4)), rnd(10000) % 10000);
    else
      snprintf(probes[np++], 48, "%s%lld", rnd(2) ? "-" : "", ip);
  }
  for (int i = 0; i < np; i++) {
    const char *v = probes[i];
    if (strlen(v) > 2 && v[strlen(v) - 1] == '.')
      continue;
    const bool in = (!lo || dec_cmp(v, lo) >= 0) && (!hi || dec_cmp(v, hi) <= 0);
    const bool neg_zero = v[0] == '-' && dec_cmp(v, "0") == 0; /* may be refused: "0" says the same */
    if (matches(re, v) != in && !(neg_zero && in))
      fail_msg("[%s, %s]: %s %s (regex %s)", lo ? lo : "-inf", hi ? hi : "inf", v, in ? "refused" : "accepted", rx);
  }
  const char *never[] = {"-", "", "1.", ".5", "+1", "01.5", "1e5", "1.5e1", "--1", NULL};
  for (int i = 0; never[i]; i++)
    if (matches(re, never[i]) && strcmp(never[i], "1."))
      fail_msg("[%s, %s] matches non-JSON \"%s\"", lo ? lo : "-inf", hi ? hi : "inf", never[i]);
  mimo_re_free(re);
  free(rx);
}

static void test_decimals(void **state) {
  (void)state;
  const char *b[][2] = {{"0", "1"},       {"0", "0.5"},  {"0.5", "0.53"}, {"0.25", "0.3"}, {"-1", "1"},
                        {"-2.75", "-0.5"}, {"3", "3"},    {"3", "3.5"},    {"1.5", "12.25"}, {"-0.001", "0.001"},
                        {"0.1", "0.2"},   {"99.9", "100"}, {"-100", "-99.9"}, {"0", NULL},    {"0.5", NULL},
                        {NULL, "0"},      {NULL, "-2.5"}, {"-2.5", NULL},  {NULL, NULL},    {"12.345", "12.35"}};
  for (size_t i = 0; i < sizeof b / sizeof *b; i++)
    check_dec(b[i][0], b[i][1]);
  for (int i = 0; i < 200; i++) { /* random bounds: up to 3 fraction digits, either sign, sometimes open */
    char l[48], h[48];
    long long a = rnd(200000) - 100000, c = rnd(200000) - 100000;
    if (a > c) {
      const long long t = a;
      a = c;
      c = t;
    }
    /* thousandths as decimals (exact) */
    snprintf(l, sizeof l, "%s%lld.%03lld", a < 0 ? "-" : "", (a < 0 ? -a : a) / 1000, (a < 0 ? -a : a) % 1000);
    snprintf(h, sizeof h, "%s%lld.%03lld", c < 0 ? "-" : "", (c < 0 ? -c : c) / 1000, (c < 0 ? -c : c) % 1000);
    const int open = (int)rnd(6);
    check_dec(open == 0 ? NULL : l, open == 1 ? NULL : h);
  }
  char *rx = NULL;
  assert_int_not_equal(mimo_dec_range_regex("2", "1.5", &rx), MIMO_OK);
  assert_non_null(strstr(mimo_errmsg(), "empty"));
  assert_int_not_equal(mimo_dec_range_regex("1e5", NULL, &rx), MIMO_OK);
  assert_null(rx);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_fixed),
      cmocka_unit_test(test_random),
      cmocka_unit_test(test_refused),
      cmocka_unit_test(test_decimals),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
