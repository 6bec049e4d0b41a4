/* A regular expression (text/regex_dfa.h syntax) for the decimal integers in a range, as JSON writes them: no
 * leading zeros, no plus sign, no "-0". Structured outputs use it for an integer schema's minimum and maximum. */
#ifndef MIMO_TEXT_INT_RANGE_H
#define MIMO_TEXT_INT_RANGE_H
#include <stdbool.h>

#include "core/status.h"

/* Bounds of at most 10^18 in magnitude; a missing bound is open. *out malloc'd, NUL-terminated. An empty range
 * (lo > hi) is an error. */
mimo_status mimo_int_range_regex(bool has_lo, long long lo, bool has_hi, long long hi, char **out);
#endif
