/* JSON-schema grammar, numeric bounds (json_grammar_internal.h): minimum / maximum / exclusive* on integers and numbers
 * as a DFA over the number's characters (text/int_range.h), which the matcher runs beside the JSON number syntax. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "text/int_range.h"
#include "text/json_grammar_internal.h"

static const char *const bounds[] = {"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", NULL};

/* Whether s bounds numbers (minimum, ...): enforced on integers only. */
bool jg_has_bounds(const json_t *s) {
  for (int i = 0; bounds[i]; i++)
    if (json_object_get(s, bounds[i]))
      return true;
  return false;
}

/* Bound i (bounds[]) of s in *v (NULL: none); an error if it is not a number. */
static mimo_status bound_of(const json_t *s, int i, const char *path, const json_t **v) {
  *v = json_object_get(s, bounds[i]);
  return !*v || json_is_number(*v) ? MIMO_OK : mimo_errf(MIMO_E_INVALID, "%s.%s must be a number", path, bounds[i]);
}

/* n->pattern: the DFA of a range's regex re (taken), or the error st of making it, named by path. */
static mimo_status range_dfa(mimo_jg *g, mimo_status st, char *re, const char *path, node *n) {
  if (st == MIMO_OK) {
    st = mimo_re_compile_budget(re, strlen(re), MIMO_JG_MAX_REGEX_STATES, &g->re_budget, &n->pattern);
    free(re);
  }
  return st == MIMO_OK ? MIMO_OK : mimo_err_prefix(st, "%s", path);
}

/* x as the shortest plain decimal (no exponent, at most 20 fraction digits) that reads back as x; false if none. */
static bool plain_decimal(double x, char *out, size_t cap) {
  if (!(x >= -1e18 && x <= 1e18))
    return false;
  for (int f = 0; f <= 20; f++) {
    snprintf(out, cap, "%.*f", f, x);
    if (strtod(out, NULL) == x)
      return true;
  }
  return false;
}

/* A number schema's bounds as a DFA over its characters (plain decimals only: int_range.h). An exclusive bound
 * becomes the inclusive one of the next double past it (so that no accepted text reads back as the bound itself);
 * past 0, 10^-20 (a 24-character number cannot come within a double's rounding of 0). */
mimo_status jg_number_bounds(mimo_jg *g, const json_t *s, const char *path, node *n) {
  char lo[64], hi[64];
  bool has_lo = false, has_hi = false;
  for (int i = 0; bounds[i]; i++) {
    const json_t *v;
    MIMO_TRY(bound_of(s, i, path, &v));
    if (!v)
      continue;
    double x = json_number_value(v);
    char d[64];
    bool ok;
    if (i >= 2 && x == 0) {
      snprintf(d, sizeof d, "%s0.00000000000000000001", i == 3 ? "-" : "");
      ok = true;
    } else {
      if (i >= 2)
        x = nextafter(x, i == 2 ? INFINITY : -INFINITY);
      ok = plain_decimal(x, d, sizeof d);
    }
    if (!ok)
      return mimo_errf(MIMO_E_INVALID, "%s.%s: a bound beyond 10^18 or needing more than 20 decimal places is not "
                       "supported", path, bounds[i]);
    const bool low = i % 2 == 0; /* the tighter of two bounds on one side */
    char *cur = low ? lo : hi;
    bool *has = low ? &has_lo : &has_hi;
    if (!*has || (low ? strtod(d, NULL) > strtod(cur, NULL) : strtod(d, NULL) < strtod(cur, NULL)))
      snprintf(cur, 64, "%s", d);
    *has = true;
  }
  if (!has_lo && !has_hi)
    return MIMO_OK;
  char *re = NULL;
  const mimo_status st = mimo_dec_range_regex(has_lo ? lo : NULL, has_hi ? hi : NULL, &re);
  return range_dfa(g, st, re, path, n);
}

/* An integer schema's bounds (pydantic's ge/gt/le/lt) as a DFA over its digits, n->pattern; none: nothing. */
mimo_status jg_integer_bounds(mimo_jg *g, const json_t *s, const char *path, node *n) {
  bool has_lo = false, has_hi = false;
  long long lo = 0, hi = 0;
  for (int i = 0; bounds[i]; i++) {
    const json_t *v;
    MIMO_TRY(bound_of(s, i, path, &v));
    if (!v)
      continue;
    const double x = json_number_value(v);
    if (!(x >= -1e18 && x <= 1e18))
      return mimo_errf(MIMO_E_INVALID, "%s.%s: integer bounds beyond 10^18 are not supported", path, bounds[i]);
    /* the integer bound: a JSON integer exactly; a real rounded inward */
    const long long f = json_is_integer(v) ? json_integer_value(v) : (long long)floor(x),
                    c = json_is_integer(v) ? f : (long long)ceil(x);
    const long long b = i == 0 ? c : i == 1 ? f : i == 2 ? f + 1 : c - 1;
    if (i % 2 == 0) {
      lo = has_lo && lo > b ? lo : b;
      has_lo = true;
    } else {
      hi = has_hi && hi < b ? hi : b;
      has_hi = true;
    }
  }
  if (!has_lo && !has_hi)
    return MIMO_OK;
  char *re = NULL;
  const mimo_status st = mimo_int_range_regex(has_lo, lo, has_hi, hi, &re);
  return range_dfa(g, st, re, path, n);
}
