/* Regular expressions (regex_dfa.h), between the pattern parser (regex_parse.c) and the automata (regex_dfa.c):
 * the syntax tree over code point sets. */
#ifndef MIMO_TEXT_REGEX_INTERNAL_H
#define MIMO_TEXT_REGEX_INTERNAL_H
#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

#define MAX_CP 0x10FFFF

/* code point sets: sorted, disjoint, non-adjacent ranges */
typedef struct {
  uint32_t (*r)[2];
  int n, cap;
} cpset;

typedef enum { N_SET, N_CAT, N_ALT, N_REP } nkind;

typedef struct rnode {
  nkind k;
  cpset set;              /* N_SET */
  struct rnode **kids;    /* N_CAT, N_ALT (any count; an empty CAT matches the empty string), N_REP: one */
  int n_kids, cap_kids;
  int min, max;           /* N_REP; max < 0: no bound */
} rnode;

/* The pattern's syntax tree (a leading '^' dropped: matches are anchored anyway), or NULL with *st the error. */
rnode *mimo_re_parse(const char *pattern, size_t len, mimo_status *st);
void mimo_re_node_free(rnode *n);
#endif
