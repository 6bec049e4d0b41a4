/* Internals shared by the JSON-schema grammar's compiler (json_grammar.c) and its byte matcher
 * (json_grammar_match.c): the schema nodes, the compiled grammar, the phases of a frame. */
#ifndef MIMO_TEXT_JSON_GRAMMAR_INTERNAL_H
#define MIMO_TEXT_JSON_GRAMMAR_INTERNAL_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "text/json_grammar.h"
#include "text/regex_dfa.h"

typedef enum { K_ANY, K_OBJECT, K_ARRAY, K_STRING, K_NUMBER, K_INTEGER, K_LITERALS, K_UNION } kind;

typedef struct mimo_jg_node {
  kind k;
  /* object: n_props > 0 keys by name (escaped, unquoted) in any order, no others; else free keys with values of
   * `addl` (NULL: none at all) */
  int n_props;
  char **keys;
  size_t *key_len;
  struct mimo_jg_node **props, *addl;
  uint64_t required;
  bool closed;              /* additionalProperties: false (the schema allows no other keys, not only the output) */
  /* array */
  struct mimo_jg_node *items;
  int min_items, max_items; /* max < 0: none */
  /* string */
  int min_len, max_len;     /* code points; max < 0: none */
  mimo_re *pattern;         /* the decoded value must match (pattern / format); the frame's off is the DFA state */
  /* literals: serialized JSON values, or the raw choices */
  int n_lits;
  char **lits;
  size_t *lit_len;
  /* union: a value of any alternative (those that may start alike are read side by side) */
  int n_alts;
  struct mimo_jg_node **alts;
  uint8_t first[32];        /* bytes a value may start with */
} node;

struct mimo_jg {
  bool raw; /* choices: the literal is the whole output (no whitespace around it) */
  long re_budget; /* the work left for the schema's patterns and formats, all together (text/regex_dfa.h) */
  mimo_re *re; /* a regex: the whole output matches it (raw text); the frame's off is the DFA state */
  node *root, *any, *any_obj, *any_arr, *free_str, *any_num, *json_lits;
  node **all;
  int n_all, cap_all;
  /* while compiling: the whole schema ($ref's root) and the $ref targets being compiled (a cycle is refused) */
  const json_t *schema_root;
  const json_t *ref_stack[MIMO_JG_MAX_DEPTH];
  int n_refs;
};

enum {
  P_VALUE,
  P_OBJ_OPEN, P_OBJ_KEY, P_OBJ_KEYSTR, P_OBJ_COLON, P_OBJ_VALUE, P_OBJ_AFTER, P_OBJ_NEXT,
  P_ARR_OPEN, P_ARR_VALUE, P_ARR_AFTER, P_ARR_NEXT,
  P_STR_IN, P_STR_ESC, P_STR_HEX, P_STR_SURR1, P_STR_SURR2,
  P_NUM_MINUS, P_NUM_ZERO, P_NUM_INT, P_NUM_DOT, P_NUM_FRAC, P_NUM_E, P_NUM_ESIGN, P_NUM_EXP,
  P_LIT,
  P_REGEX,
};

/* whether a value of node n may start with byte c */
static inline bool has_first(const node *n, int c) { return n->first[c >> 3] >> (c & 7) & 1; }
#endif
