/* Integer ranges as regular expressions (int_range.h). [a, b] with 0 <= a <= b is cut by digit count; within one
 * count L, equal-length strings x <= y are matched digit by digit: a shared first digit, then x's tail up to 9s, the
 * first digits strictly between, and y's first digit with 0s up to y's tail. Negative numbers are "-" and the range of
 * their magnitudes. */
#include "text/int_range.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RANGE_MAX 1000000000000000000LL

typedef struct {
  char *p;
  size_t n, cap;
  bool bad;
} sb;

static void put(sb *b, const char *s, size_t n) {
  if (b->bad)
    return;
  if (b->n + n + 1 > b->cap) {
    const size_t cap = (b->n + n + 1) * 2 + 64;
    char *p = realloc(b->p, cap);
    if (!p) {
      b->bad = true;
      return;
    }
    b->p = p;
    b->cap = cap;
  }
  memcpy(b->p + b->n, s, n);
  b->n += n;
  b->p[b->n] = 0;
}
static void puts_(sb *b, const char *s) { put(b, s, strlen(s)); }

static bool all(const char *s, int n, char c) {
  for (int i = 0; i < n; i++)
    if (s[i] != c)
      return false;
  return true;
}

/* x <= y, both n digits (leading zeros allowed here: inner positions) */
static void same_len(sb *b, const char *x, const char *y, int n) {
  char t[64];
  if (n == 0)
    return;
  if (all(x, n, '0') && all(y, n, '9')) {
    snprintf(t, sizeof t, "[0-9]{%d}", n);
    puts_(b, t);
    return;
  }
  if (x[0] == y[0]) {
    put(b, x, 1);
    same_len(b, x + 1, y + 1, n - 1);
    return;
  }
  if (n == 1) {
    snprintf(t, sizeof t, "[%c-%c]", x[0], y[0]);
    puts_(b, t);
    return;
  }
  /* first digits [lo, hi] that take any tail; x's and y's own first digits where their tails are partial */
  const bool x_full = all(x + 1, n - 1, '0'), y_full = all(y + 1, n - 1, '9');
  const char lo = (char)(x_full ? x[0] : x[0] + 1), hi = (char)(y_full ? y[0] : y[0] - 1);
  char nines[64], zeros[64];
  memset(nines, '9', (size_t)n - 1);
  memset(zeros, '0', (size_t)n - 1);
  bool first = true;
  puts_(b, "(?:");
  if (!x_full) {
    put(b, x, 1);
    puts_(b, "(?:");
    same_len(b, x + 1, nines, n - 1);
    puts_(b, ")");
    first = false;
  }
  if (lo <= hi) {
    snprintf(t, sizeof t, "%s[%c-%c][0-9]{%d}", first ? "" : "|", lo, hi, n - 1);
    puts_(b, t);
    first = false;
  }
  if (!y_full) {
    if (!first)
      puts_(b, "|");
    put(b, y, 1);
    puts_(b, "(?:");
    same_len(b, zeros, y + 1, n - 1);
    puts_(b, ")");
  }
  puts_(b, ")");
}

/* 0 <= a <= b: alternatives by digit count */
static void nonneg(sb *b, long long a, long long bb) {
  char xs[24], ys[24];
  bool first = true;
  long long lo_l = 0, hi_l = 9; /* the L-digit numbers: [10^(L-1), 10^L - 1], and 0 with them at L = 1 */
  for (int L = 1; L <= 19 && lo_l <= bb; L++) {
    const long long x = a > lo_l ? a : lo_l, y = bb < hi_l ? bb : hi_l;
    if (x <= y) {
      snprintf(xs, sizeof xs, "%lld", x);
      snprintf(ys, sizeof ys, "%lld", y);
      if (!first)
        puts_(b, "|");
      same_len(b, xs, ys, (int)strlen(xs));
      first = false;
    }
    if (L == 19) /* (10^18 is the largest bound: 19 digits) */
      break;
    lo_l = hi_l + 1;
    hi_l = hi_l > (9223372036854775807LL - 9) / 10 ? 9223372036854775807LL : hi_l * 10 + 9;
  }
}

/* a <= n (<= b when has_b), a >= 0 */
static void from(sb *b, long long a, bool has_b, long long bb) {
  if (has_b) {
    nonneg(b, a, bb);
    return;
  }
  char digits[24], nines[24], t[48];
  const int L = snprintf(digits, sizeof digits, "%lld", a);
  memset(nines, '9', (size_t)L);
  same_len(b, digits, nines, L); /* a's digit count (as strings: 19 nines pass a long long), then longer numbers */
  snprintf(t, sizeof t, "|[1-9][0-9]{%d,}", L);
  puts_(b, t);
}

mimo_status mimo_int_range_regex(bool has_lo, long long lo, bool has_hi, long long hi, char **out) {
  *out = NULL;
  if ((has_lo && (lo < -RANGE_MAX || lo > RANGE_MAX)) || (has_hi && (hi < -RANGE_MAX || hi > RANGE_MAX)))
    return mimo_errf(MIMO_E_INVALID, "integer bounds beyond 10^18 are not supported");
  if (has_lo && has_hi && lo > hi)
    return mimo_errf(MIMO_E_INVALID, "the range of integers is empty (minimum above maximum)");
  sb b = {0};
  puts_(&b, "(?:");
  const bool neg = !has_lo || lo <= -1, pos = !has_hi || hi >= 0;
  if (neg) { /* "-" and the magnitudes [-min(hi, -1), -lo] */
    puts_(&b, "-(?:");
    from(&b, has_hi && hi <= -1 ? -hi : 1, has_lo, has_lo ? -lo : 0);
    puts_(&b, ")");
  }
  if (pos) {
    if (neg)
      puts_(&b, "|");
    from(&b, has_lo && lo > 0 ? lo : 0, has_hi, hi);
  }
  puts_(&b, ")");
  if (b.bad) {
    free(b.p);
    return mimo_errf(MIMO_E_NOMEM, "integer range");
  }
  *out = b.p;
  return MIMO_OK;
}
