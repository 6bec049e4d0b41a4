/* Regular expressions as byte-level DFAs, for regex-constrained outputs (vLLM's guided_regex, structured_outputs
 * regex): the whole output must match (Python's re.fullmatch), UTF-8 throughout.
 *
 * Syntax (Python's, the part a DFA can do): literals (any UTF-8), `.` (any code point but a line feed), classes
 * `[a-z]` `[^...]` with ranges and escapes, `\d \D \w \W \s \S` (ASCII meaning, as re.ASCII), `\n \t \r \f \v
 * \xHH \uHHHH` and escaped metacharacters, groups `(...)` `(?:...)` `(?P<name>...)`, alternation, quantifiers
 * `* + ? {m} {m,} {m,n} {,n}` (lazy forms match the same strings), `^` at the start and `$` at the end. Refused
 * with the position and the reason: backreferences, lookaround, word boundaries, inline flags, anchors elsewhere.
 *
 * Compiling is bounded: at most max_states DFA states and a fixed amount of work (about half a second), so that a
 * request's pattern cannot hold a server thread for long. Bytes that every NFA edge of a state treats alike form
 * one class, whose transition is computed once.
 *
 * Matching: states whose every path is a dead end are removed, so a state that accepts a byte can always still
 * reach a match: a decoder masked by it cannot be led into a corner. */
#ifndef MIMO_TEXT_REGEX_DFA_H
#define MIMO_TEXT_REGEX_DFA_H
#include <stdbool.h>
#include <stddef.h>

#include "core/status.h"

typedef struct mimo_re mimo_re;

/* MIMO_E_INVALID naming the position and what is wrong (or that the DFA would pass max_states). */
mimo_status mimo_re_compile(const char *pattern, size_t len, int max_states, mimo_re **out);
/* The same drawing on *budget (work units; the plain call has MIMO_RE_WORK), which it lowers by what it used: several
 * patterns of one request (a JSON schema's) share one bound. */
mimo_status mimo_re_compile_budget(const char *pattern, size_t len, int max_states, long *budget, mimo_re **out);
#define MIMO_RE_WORK 30000000L
void mimo_re_free(mimo_re *re);
int mimo_re_start(const mimo_re *re);
/* The state after byte c, or -1 when no match can continue with it. */
int mimo_re_next(const mimo_re *re, int state, unsigned char c);
bool mimo_re_accepts(const mimo_re *re, int state);
int mimo_re_states(const mimo_re *re);
#endif
