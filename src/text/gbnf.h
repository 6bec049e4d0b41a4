/* Grammars in GBNF (the EBNF of llama.cpp and of vLLM's xgrammar backend: vLLM's `guided_grammar` and
 * `structured_outputs.grammar`) for structured outputs, as far as they describe regular languages.
 *
 * Syntax: rules `name ::= alternatives`, a rule running until the next `name ::=`; `root` is the whole output.
 * Alternatives are separated by `|`; an item is a "string" (escapes \" \\ \n \r \t \xHH \uHHHH \UHHHHHHHH), a
 * character class [a-z0-9_] or [^...] (the same escapes), `.` (any character), a rule's name, or a ( group ),
 * each optionally followed by *, +, ?, {m}, {m,} or {m,n}. `#` starts a comment to the end of the line.
 *
 * The grammar becomes one regular expression (text/regex_dfa.h) with every rule inlined, so the output's token
 * masks come from a DFA. A rule that reaches itself (recursion: nested brackets, expressions) has no such form: it is
 * written out again inside itself up to 4 times, and the fifth time matches nothing, so the output nests at most 4
 * deep (a left-recursive list at most 5 items: write item ("," item)* instead). The DFA's size bounds what fits
 * (text/regex_dfa.h): an arithmetic grammar of three rules takes ~6,500 states. */
#ifndef MIMO_TEXT_GBNF_H
#define MIMO_TEXT_GBNF_H
#include <stddef.h>

#include "core/status.h"

/* The grammar src[0..len) as a regular expression (*regex, malloc'd, NUL-terminated) that matches exactly the
 * strings root derives (up to the nesting bound above); an error naming the line or the rule when it is malformed. */
mimo_status mimo_gbnf_to_regex(const char *src, size_t len, char **regex);
#endif
