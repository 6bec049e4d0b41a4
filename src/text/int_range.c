/* Integer ranges as regular expressions (int_range.h). [a, b] with 0 <= a <= b is cut by digit count; within one
 * count L, equal-length strings x <= y are matched digit by digit: a shared first digit, then x's tail up to 9s, the
 * first digits strictly between, and y's first digit with 0s up to y's tail. Negative numbers are "-" and the range of
 * their magnitudes. */
#include "text/int_range.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "text/tok_internal.h"

#define RANGE_MAX 1000000000000000000LL

/* the regex text (NUL-terminated), and whether memory ran out on the way */
typedef struct {
  tok_buf t;
  bool bad;
} sb;

static void put(sb *b, const char *s, size_t n) {
  if (b->bad || tok_buf_put(&b->t, s, n) != MIMO_OK || tok_buf_reserve(&b->t, 1) != MIMO_OK)
    b->bad = true;
  else
    b->t.p[b->t.n] = 0;
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
    free(b.t.p);
    return mimo_errf(MIMO_E_NOMEM, "integer range");
  }
  *out = b.t.p;
  return MIMO_OK;
}

/* ---- decimals (no exponent): [lo, hi] as "-?I(.F)?" strings ---- */

/* Fraction digit strings F (after the '.') with 0.F >= 0.s, s without trailing zeros (empty: any F). */
static void frac_ge(sb *b, const char *s) {
  if (!*s) {
    puts_(b, "[0-9]*");
    return;
  }
  char t[16];
  puts_(b, "(?:");
  put(b, s, 1);
  puts_(b, "(?:");
  frac_ge(b, s + 1);
  puts_(b, ")");
  if (s[0] < '9') {
    snprintf(t, sizeof t, "|[%c-9][0-9]*", s[0] + 1);
    puts_(b, t);
  }
  puts_(b, ")");
}
/* ... with 0.F <= 0.s, F possibly empty (what follows digits already matched: nothing more is zeros) */
static void frac_le(sb *b, const char *s) {
  if (!*s) {
    puts_(b, "0*");
    return;
  }
  char t[16];
  puts_(b, "(?:");
  if (s[0] > '0') {
    snprintf(t, sizeof t, "[0-%c][0-9]*|", s[0] - 1);
    puts_(b, t);
  }
  put(b, s, 1);
  puts_(b, "(?:");
  frac_le(b, s + 1);
  puts_(b, ")|)"); /* (the empty alternative: the digits so far, then zeros) */
}
/* ... with 0.x <= 0.F <= 0.y, x < y as fractions */
static void frac_between(sb *b, const char *x, const char *y) {
  if (!*x) {
    frac_le(b, y);
    return;
  }
  if (x[0] == y[0]) {
    put(b, x, 1);
    puts_(b, "(?:");
    frac_between(b, x + 1, y + 1);
    puts_(b, ")");
    return;
  }
  char t[32];
  puts_(b, "(?:");
  put(b, x, 1);
  puts_(b, "(?:");
  frac_ge(b, x + 1);
  puts_(b, ")");
  if (x[0] + 1 <= y[0] - 1) {
    snprintf(t, sizeof t, "|[%c-%c][0-9]*", x[0] + 1, y[0] - 1);
    puts_(b, t);
  }
  puts_(b, "|");
  put(b, y, 1);
  puts_(b, "(?:");
  frac_le(b, y + 1);
  puts_(b, "))");
}

typedef struct {
  long long i; /* integer part */
  char f[24];  /* fraction digits, no trailing zeros ("" for none) */
} dec;

/* "I" or "I.F", I without a sign; false if malformed or over 10^18 */
static bool dec_of(const char *s, dec *d) {
  char *end;
  if (*s < '0' || *s > '9')
    return false;
  d->i = strtoll(s, &end, 10);
  if (d->i > RANGE_MAX)
    return false;
  d->f[0] = 0;
  if (*end == '.') {
    const size_t n = strlen(end + 1);
    if (!n || n >= sizeof d->f || strspn(end + 1, "0123456789") != n)
      return false;
    memcpy(d->f, end + 1, n + 1);
    for (size_t k = n; k > 0 && d->f[k - 1] == '0'; k--)
      d->f[k - 1] = 0;
  } else if (*end) {
    return false;
  }
  return true;
}

static const char *frac_any = "(?:\\.[0-9]+)?";

/* non-negative decimals in [a, b] (b open when !has_b) */
static void dec_nonneg(sb *b, const dec *a, bool has_b, const dec *bb) {
  char t[32];
  if (has_b && a->i == bb->i) { /* one integer part: the fraction between */
    snprintf(t, sizeof t, "%lld", a->i);
    puts_(b, t);
    if (!a->f[0]) {
      puts_(b, "(?:\\.");
      frac_le(b, bb->f);
      puts_(b, ")?");
    } else {
      puts_(b, "\\.(?:");
      frac_between(b, a->f, bb->f);
      puts_(b, ")");
    }
    return;
  }
  puts_(b, "(?:");
  snprintf(t, sizeof t, "%lld", a->i); /* a's integer part, a fraction at least a's */
  puts_(b, t);
  if (a->f[0]) {
    puts_(b, "\\.(?:");
    frac_ge(b, a->f);
    puts_(b, ")");
  } else {
    puts_(b, frac_any);
  }
  if (!has_b || a->i + 1 <= bb->i - 1) { /* integer parts strictly between: any fraction */
    puts_(b, "|(?:");
    from(b, a->i + 1, has_b, has_b ? bb->i - 1 : 0);
    puts_(b, ")");
    puts_(b, frac_any);
  }
  if (has_b) { /* b's integer part, a fraction at most b's */
    snprintf(t, sizeof t, "|%lld(?:\\.", bb->i);
    puts_(b, t);
    frac_le(b, bb->f);
    puts_(b, ")?");
  }
  puts_(b, ")");
}

static bool dec_lt(const dec *x, const dec *y) { return x->i != y->i ? x->i < y->i : strcmp(x->f, y->f) < 0; }

mimo_status mimo_dec_range_regex(const char *lo, const char *hi, char **out) {
  *out = NULL;
  const bool has_lo = lo != NULL, has_hi = hi != NULL;
  const bool lo_neg = has_lo && lo[0] == '-', hi_neg = has_hi && hi[0] == '-';
  dec l = {0}, h = {0};
  if ((has_lo && !dec_of(lo + lo_neg, &l)) || (has_hi && !dec_of(hi + hi_neg, &h)))
    return mimo_errf(MIMO_E_INVALID, "number bounds: plain decimals up to 10^18 with at most 20 fraction digits");
  const bool l_zero = !l.i && !l.f[0], h_zero = !h.i && !h.f[0];
  /* signs as numbers: a negative zero is zero */
  const bool lneg = lo_neg && !l_zero, hneg = hi_neg && !h_zero;
  if (has_lo && has_hi && ((!lneg && hneg) || (!lneg && !hneg && dec_lt(&h, &l)) || (lneg && hneg && dec_lt(&l, &h))))
    return mimo_errf(MIMO_E_INVALID, "the range of numbers is empty (minimum above maximum)");
  sb b = {0};
  puts_(&b, "(?:");
  const bool neg = !has_lo || lneg, pos = !has_hi || !hneg;
  const dec zero = {0, ""};
  if (neg) { /* "-" and magnitudes [hi < 0 ? |hi| : 0, |lo|] */
    puts_(&b, "-");
    dec_nonneg(&b, hneg ? &h : &zero, has_lo, &l);
  }
  if (pos) {
    if (neg)
      puts_(&b, "|");
    dec_nonneg(&b, has_lo && !lneg ? &l : &zero, has_hi, &h);
  }
  puts_(&b, ")");
  if (b.bad) {
    free(b.t.p);
    return mimo_errf(MIMO_E_NOMEM, "number range");
  }
  *out = b.t.p;
  return MIMO_OK;
}

