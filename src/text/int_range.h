/* Regular expressions (text/regex_dfa.h syntax) for the integers, or the plain decimals, in a range, as JSON writes
 * them: no leading zeros, no plus sign, no "-0". Structured outputs use them for a schema's minimum and maximum. */
#ifndef MIMO_TEXT_INT_RANGE_H
#define MIMO_TEXT_INT_RANGE_H
#include <stdbool.h>

#include "core/status.h"

/* Bounds of at most 10^18 in magnitude; a missing bound is open. *out malloc'd, NUL-terminated. An empty range
 * (lo > hi) is an error. */
mimo_status mimo_int_range_regex(bool has_lo, long long lo, bool has_hi, long long hi, char **out);
/* The same for decimals written without an exponent ("-?I(.F)?", I without leading zeros), between the plain
 * decimals lo and hi ("-12.5", "0.001"; NULL: open), both ends included. */
mimo_status mimo_dec_range_regex(const char *lo, const char *hi, char **out);
#endif
