/* Internals shared by the JSON-schema grammar's compiler (json_grammar.c) and its byte matcher
 * (json_grammar_match.c): the schema nodes, the compiled grammar, the phases of a frame. */
#ifndef MIMO_TEXT_JSON_GRAMMAR_INTERNAL_H
#define MIMO_TEXT_JSON_GRAMMAR_INTERNAL_H
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "text/json_grammar.h"
#include "text/regex_dfa.h"

/* K_XCALLS, K_XFUNC, K_XTEXT: MiMo's XML tool calls (tool_grammar.c): the calls, one function's parameters, a
 * parameter's raw text value. */
/* K_STAG: a structural tag (structural_tag.c): free text and structures; begins are lits, ends keys (n_props),
 * the values' schemas alts; min_items 1: the output starts with a structure; max_items >= 0: at most that many. */
typedef enum { K_ANY, K_OBJECT, K_ARRAY, K_STRING, K_NUMBER, K_INTEGER, K_LITERALS, K_UNION, K_XCALLS, K_XFUNC,
               K_XTEXT, K_STAG } kind;

typedef struct mimo_jg_node {
  kind k;
  /* K_XCALLS: the functions are alts (their "NAME>\n" texts are lits), at most max_items calls (< 0: any number).
   * K_XFUNC: keys (raw names) with values props (K_XTEXT or JSON nodes); n_props == 0 and addl: free names.
   * K_XTEXT: text up to "</parameter>" within min_len/max_len, matching pattern (the value after the parser drops
   * one leading and one trailing newline). */
  /* object: n_props > 0 keys by name (escaped, unquoted) in any order, no others; else free keys with values of
   * `addl` (NULL: none at all) */
  int n_props;
  char **keys;
  size_t *key_len;
  struct mimo_jg_node **props, *addl;
  uint64_t required;
  bool closed;              /* additionalProperties: false (the schema allows no other keys, not only the output) */
  /* array: items past the prefix (NULL: none); the prefix (prefixItems) is alts[0..n_alts) */
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

typedef struct jg_stag jg_stag; /* a structural tag's trigger automaton (structural_tag.c) */

struct mimo_jg {
  atomic_int refs; /* mimo_jg_ref / mimo_jg_free: a request and its engine constraints share it */
  bool raw; /* choices: the literal is the whole output (no whitespace around it) */
  bool tools; /* tool calls: added tokens (<tool_call>) may stand for their text between calls */
  bool no_ws; /* no whitespace between JSON tokens (vLLM's disable_any_whitespace) */
  char *start_text; /* the output's start is taken as given (tool calls after the forced prefix) */
  jg_stag *stag; /* a structural tag's triggers */
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

/* The XML tool-call texts (tool_grammar.c) */
#define XML_CALL_OPEN "<tool_call>\n<function="
#define XML_CALL_END "</tool_call>"
#define XML_FUNC_END "</function>\n"
#define XML_PARAM_OPEN "<parameter="
#define XML_PARAM_END "</parameter>"

enum {
  P_VALUE,
  P_OBJ_OPEN, P_OBJ_KEY, P_OBJ_KEYSTR, P_OBJ_COLON, P_OBJ_VALUE, P_OBJ_AFTER, P_OBJ_NEXT,
  P_ARR_OPEN, P_ARR_VALUE, P_ARR_AFTER, P_ARR_NEXT,
  P_STR_IN, P_STR_ESC, P_STR_HEX, P_STR_SURR1, P_STR_SURR2,
  P_NUM_MINUS, P_NUM_ZERO, P_NUM_INT, P_NUM_DOT, P_NUM_FRAC, P_NUM_E, P_NUM_ESIGN, P_NUM_EXP,
  P_LIT,
  P_REGEX,
  /* K_XCALLS: "<tool_call>\n<function=" (off: bytes matched), a name (cand, off), "</tool_call>", between calls */
  P_XC_OPEN, P_XC_NAME, P_XC_FUNC, P_XC_END, P_XC_AFTER,
  /* K_XFUNC: before a parameter or the end; "<parameter=" / "</function>\n" (off); a name (cand, off); the value;
   * before a JSON value: one newline at most; after it: the same, then "</parameter>" (off) */
  P_XF_NEXT, P_XF_PARAM, P_XF_CLOSE, P_XF_KEY, P_XF_VSTART, P_XF_VALUE, P_XF_VEND, P_XF_VCLOSE,
  /* K_XTEXT: hex = bytes of "</parameter>" matched, ws bit 0: the first byte came, bit 1: a held "\n" */
  P_XT,
  /* K_STAG: free text (off: the trigger automaton's state; need, lo, hi: UTF-8), a begin (cand, off), the value
   * (prop: the structure), its end (off) */
  P_ST_FREE, P_ST_BEGIN, P_ST_VALUE, P_ST_END,
};

/* json_grammar_match.c and tool_grammar_match.c: one byte on a frame */
enum { TOOK, REJECT, AGAIN }; /* AGAIN: the byte goes to the (new) top frame */
static inline bool jg_is_ws(int c) { return c == ' ' || c == '\n' || c == '\t' || c == '\r'; }
static inline uint64_t jg_all_bits(int n) { return n >= 64 ? ~0ull : (1ull << n) - 1; }
/* Of the candidate texts in f->cand, those that go on with byte c at f->off: f->cand narrows to them and f->off
 * moves on (literals, object keys, tool names). False, f as it was: none does. */
static inline bool jg_narrow(mimo_jg_frame *f, char *const *texts, const size_t *lens, int n, int c) {
  uint64_t next = 0;
  for (int i = 0; i < n; i++)
    if (f->cand >> i & 1 && f->off < lens[i] && (unsigned char)texts[i][f->off] == c)
      next |= 1ull << i;
  if (!next)
    return false;
  f->cand = next;
  f->off++;
  return true;
}
bool jg_pattern_byte(const node *n, mimo_jg_frame *f, int c);
/* Well-formed UTF-8 (Unicode table 3-7: no overlong forms, surrogates or code points past U+10FFFF) in a string or
 * text value. jg_utf8_lead: byte c (>= 0x80) opens a sequence (f->need bytes to come within [lo, hi]); false: no
 * well-formed sequence starts with it. jg_utf8_cont: c continues the open one, and n's pattern with it. */
static inline bool jg_utf8_lead(mimo_jg_frame *f, int c) {
  const int need = c >= 0xc2 && c <= 0xdf ? 1 : c >= 0xe0 && c <= 0xef ? 2 : c >= 0xf0 && c <= 0xf4 ? 3 : 0;
  if (!need)
    return false;
  f->need = (uint8_t)need;
  f->lo = c == 0xe0 ? 0xa0 : c == 0xf0 ? 0x90 : 0x80;
  f->hi = c == 0xed ? 0x9f : c == 0xf4 ? 0x8f : 0xbf;
  return true;
}
static inline bool jg_utf8_cont(const node *n, mimo_jg_frame *f, int c) {
  if (c < f->lo || c > f->hi || (n->pattern && !jg_pattern_byte(n, f, c)))
    return false;
  f->need--;
  f->lo = 0x80;
  f->hi = 0xbf;
  return true;
}
bool jg_push(mimo_jg_stack *s, const node *n, int phase);
void jg_pop(mimo_jg_stack *s); /* the top value is complete: its parent moves on */
int jg_ws_byte(mimo_jg_frame *f);
int jg_xcalls_byte(mimo_jg_stack *s, mimo_jg_frame *f, int c);
int jg_xfunc_byte(mimo_jg_stack *s, mimo_jg_frame *f, int c);
int jg_xtext_byte(mimo_jg_stack *s, mimo_jg_frame *f, int c);
int jg_stag_byte(const mimo_jg *g, mimo_jg_stack *s, mimo_jg_frame *f, int c);
bool jg_stag_done(const mimo_jg_frame *f);
bool jg_stag_free_text(const mimo_jg *g, const mimo_jg_frame *f);
void jg_stag_free(jg_stag *t);
void jg_stag_after(mimo_jg_stack *s, mimo_jg_frame *f);

/* json_grammar_bounds.c, for json_grammar.c: whether a schema bounds numbers; a number or integer node's bounds */
bool jg_has_bounds(const json_t *s);
mimo_status jg_number_bounds(mimo_jg *g, const json_t *s, const char *path, node *n);
mimo_status jg_integer_bounds(mimo_jg *g, const json_t *s, const char *path, node *n);

/* json_grammar.c, for tool_grammar.c */
node *jg_new_node(mimo_jg *g, kind k);
void jg_first_of(node *n);
mimo_status jg_add_literal(node *n, const char *s, size_t len);
mimo_status jg_compile(mimo_jg *g, const json_t *s, const char *path, int depth, node **out);
mimo_status jg_base(mimo_jg **out);

/* whether a value of node n may start with byte c */
static inline bool has_first(const node *n, int c) { return n->first[c >> 3] >> (c & 7) & 1; }
#endif
