/* Internals shared by the jinja renderer's files: arena, values, AST, evaluator state. */
#ifndef MIMO_TEXT_JINJA_INTERNAL_H
#define MIMO_TEXT_JINJA_INTERNAL_H
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

/* Limits that keep hostile templates bounded (see docs/jinja.md). */
#define JJ_MAX_DEPTH 200             /* parser nesting and call depth */
#define JJ_MAX_STEPS 10000000ull     /* evaluated nodes per render */
#define JJ_MAX_OUTPUT (64u << 20)    /* rendered bytes */
#define JJ_MAX_STRING (64u << 20)    /* any one string value */
#define JJ_MAX_ARENA (512ull << 20)  /* all values of one render */
#define JJ_MAX_RANGE 100000          /* as jinja2's sandbox */

#include <string.h>
/* memcpy that accepts NULL when n == 0 (empty lists have no storage) */
static inline void jj_memcpy(void *d, const void *s, size_t n) {
  if (n) memcpy(d, s, n);
}

/* ---- arena: everything of one parse or one render lives here, freed at once ---- */
typedef struct jj_arena {
  struct jj_chunk *head;
  size_t used_total, limit;
  jmp_buf *oom; /* longjmp target when limit is hit (render only) */
} jj_arena;
void *jj_alloc(jj_arena *a, size_t n); /* zeroed */
void jj_arena_free(jj_arena *a);
char *jj_strndup(jj_arena *a, const char *s, size_t n);

/* ---- values ---- */
typedef enum {
  V_UNDEF, V_NONE, V_BOOL, V_INT, V_FLOAT, V_STR, V_LIST, V_TUPLE, V_DICT, V_NS,
  V_LOOP, V_MACRO, V_FUNC, V_METHOD, V_CYCLER, V_JOINER
} jj_type;

#define VF_SAFE 1 /* Markup string */

typedef struct jj_list { size_t n, cap; struct jv *v; } jj_list;
typedef struct jj_dict { size_t n, cap; struct jv *k, *v; } jj_dict;

typedef struct jv {
  uint8_t t, flags;
  uint32_t n; /* string byte length */
  union {
    int64_t i;
    double f;
    const char *s; /* V_STR bytes; V_UNDEF: hint name (may be NULL) */
    jj_list *l;
    jj_dict *d;
    void *p;
  };
} jv;

extern const jv JV_UNDEF, JV_NONE;
jv jv_bool(bool b);
jv jv_int(int64_t i);
jv jv_float(double f);
jv jv_str(const char *s, size_t n); /* no copy */
jv jv_undef_named(const char *name);
jv jv_list(jj_arena *a, size_t cap);
void jv_list_push(jj_arena *a, jv list, jv item);
jv jv_dict(jj_arena *a);
void jj_dict_set(jj_arena *a, jj_dict *d, jv k, jv v);
jv *jj_dict_get(const jj_dict *d, jv k);
jv *jj_dict_gets(const jj_dict *d, const char *k);

bool jv_truthy(jv v);
bool jv_eq(jv a, jv b);
const char *jv_typename(jv v); /* Python type name: 'str', 'int', 'dict', ... */
bool jv_is_str(jv v);
bool jv_is_seq(jv v); /* list or tuple */
bool jv_is_num(jv v); /* int, float or bool */

/* ---- string builder ---- */
typedef struct jj_buf { char *p; size_t n, cap; jj_arena *a; } jj_buf;
void jb_init(jj_buf *b, jj_arena *a);
void jb_put(jj_buf *b, const char *s, size_t n);
void jb_puts(jj_buf *b, const char *s);
void jb_putc(jj_buf *b, char c);
void jb_printf(jj_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
jv jb_val(jj_buf *b);

/* ---- UTF-8 ---- */
int jj_utf8_dec(const char *s, size_t n, size_t *i); /* next codepoint, advances *i; bad byte -> U+FFFD */
void jj_utf8_enc(jj_buf *b, uint32_t cp);
size_t jj_utf8_len(const char *s, size_t n);
bool jj_py_space(uint32_t cp);

/* ---- AST ---- */
typedef enum {
  N_CONST, N_NAME, N_LIST, N_TUPLE, N_DICT, N_GETATTR, N_GETITEM, N_SLICE, N_CALL, N_FILTER,
  N_TEST, N_BINOP, N_NEG, N_POS, N_NOT, N_AND, N_OR, N_COMPARE, N_COND, N_CONCAT, N_NSREF,
  S_DATA, S_OUTPUT, S_IF, S_FOR, S_SET, S_SETBLOCK, S_MACRO, S_CALLBLOCK, S_FILTERBLOCK,
  S_WITH, S_BREAK, S_CONTINUE, S_BLOCK
} jj_kind;

typedef enum { OP_ADD, OP_SUB, OP_MUL, OP_DIV, OP_FLOORDIV, OP_MOD, OP_POW,
               OP_EQ, OP_NE, OP_LT, OP_LE, OP_GT, OP_GE, OP_IN, OP_NOTIN } jj_op;

typedef struct jj_node jj_node;
struct jj_node {
  uint8_t kind, op, neg, recursive;
  int line;
  jj_node *a, *b, *c, *d;   /* operands / target / iter / filter / dyn args */
  jj_node **items; int nitems;   /* args, elements, body, comparison operands */
  jj_node **items2; int nitems2; /* kwarg values, dict values, else-body, defaults */
  const char **names; int nnames; /* kwarg names, macro params */
  const char *name;         /* name / attr / filter / test */
  jv v;                     /* N_CONST */
  uint8_t *ops;             /* N_COMPARE operators */
};

typedef struct jj_template {
  jj_arena arena;
  jj_node *root; /* S_BLOCK */
} jj_template;

mimo_status jj_parse(const char *src, size_t len, jj_template *t);

/* ---- lexer ---- */
typedef enum { T_EOF, T_DATA, T_BLOCK_BEGIN, T_BLOCK_END, T_VAR_BEGIN, T_VAR_END, T_NAME, T_STRING,
               T_INT, T_FLOAT, T_OP, T_RAW } jj_tok_type;
typedef struct jj_tok {
  uint8_t type;
  int line;
  const char *s; size_t n; /* text (decoded for strings/data) */
  int64_t i; double f;
} jj_tok;
mimo_status jj_lex(jj_arena *a, const char *src, size_t len, jj_tok **toks, size_t *ntoks);

/* ---- evaluator ---- */
typedef struct jj_scope { struct jj_scope *parent; jj_dict vars; } jj_scope;

typedef struct jj_ctx {
  jj_arena *a;
  jmp_buf *err;        /* longjmp on any runtime error */
  char errmsg[512];
  mimo_status errcode;
  jj_buf out;          /* current output sink (swapped for captures) */
  size_t out_total;
  uint64_t steps;
  int depth;
  jj_scope *globals;
  const jj_template *tmpl;
  int line;            /* line of the node being evaluated */
  int ctrl;            /* pending break/continue */
} jj_ctx;

_Noreturn void jj_fail(jj_ctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
_Noreturn void jj_fail_code(jj_ctx *c, mimo_status code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
_Noreturn void jj_undef_fail(jj_ctx *c, jv u);
jv jj_eval(jj_ctx *c, jj_node *n, jj_scope *s);
void jj_exec_block(jj_ctx *c, jj_node **body, int n, jj_scope *s);
jv jj_call(jj_ctx *c, jv fn, jv *args, int nargs, const char **kwn, jv *kwv, int nkw);
jv jj_getattr(jj_ctx *c, jv obj, const char *name, size_t n);
jv jj_getitem(jj_ctx *c, jv obj, jv key);
void jj_check_str(jj_ctx *c, size_t n);

/* printing: str() and repr() as Python does */
void jj_str(jj_ctx *c, jj_buf *b, jv v);
void jj_repr(jj_ctx *c, jj_buf *b, jv v);
jv jj_to_str(jj_ctx *c, jv v);
void jj_float_repr(jj_buf *b, double f);
/* iteration: materialises any iterable as a list (dict -> keys, str -> chars) */
jj_list *jj_iter(jj_ctx *c, jv v);
int jj_compare(jj_ctx *c, jv a, jv b); /* <0, 0, >0; raises on unorderable */
jv jj_binop(jj_ctx *c, int op, jv a, jv b);
bool jj_contains(jj_ctx *c, jv hay, jv x);
jv jj_case(jj_ctx *c, jv s, int mode); /* 0 lower 1 upper 2 capitalize 3 jinja title 4 swapcase 5 str.title */
jv jj_strip(jj_ctx *c, jv s, jv chars, int which);
bool jj_cp_isupper(uint32_t cp);
bool jj_cp_islower(uint32_t cp);

/* filters / tests / methods */
typedef struct jj_args { jv *pos; int npos; const char **kwn; jv *kwv; int nkw; } jj_args;
bool jj_filter_exists(const char *name);
bool jj_test_exists(const char *name);
jv jj_apply_filter(jj_ctx *c, const char *name, jv v, jj_args *args);
bool jj_apply_test(jj_ctx *c, const char *name, jv v, jj_args *args);
jv jj_call_method(jj_ctx *c, jv self, const char *name, jj_args *args);
int jj_method_exists(jv self, const char *name); /* 0 no, 1 yes, 2 unsafe in the sandbox */
jv jj_arg(jj_ctx *c, jj_args *a, int pos, const char *kw, jv dflt, bool *given);
void jj_args_done(jj_ctx *c, jj_args *a, int maxpos, const char *what);
jv jj_percent_format(jj_ctx *c, jv fmt, jv args);
jv jj_str_format(jj_ctx *c, jv fmt, jj_args *args);

/* JSON */
jv jj_from_json(jj_ctx *c, const void *json);
void jj_tojson(jj_ctx *c, jj_buf *b, jv v, int indent, const char *item_sep, const char *key_sep,
               bool sort_keys, int level);

/* builtin function ids (V_FUNC.i) */
enum { F_RANGE, F_NAMESPACE, F_DICT, F_RAISE, F_STRFTIME, F_CYCLER, F_JOINER, F_LIPSUM, F_CALLER_NONE };

typedef struct jj_macro {
  jj_node *node;    /* S_MACRO (or S_CALLBLOCK for caller) */
  jj_scope *closure;
  jv caller;        /* for call-block caller: unused */
} jj_macro;

typedef struct jj_loop {
  jj_list *items;
  size_t idx;
  int depth0;
  jv changed_last; bool changed_set;
  jj_node *forn; jj_scope *scope; /* for recursive loops */
} jj_loop;

typedef struct jj_method { jv self; const char *name; } jj_method;
typedef struct jj_cycler { jj_list *items; size_t pos; } jj_cycler;
typedef struct jj_joiner { jv sep; bool used; } jj_joiner;

/* ops.c / eval.c helpers shared across files */
jv jj_undef_fmt(jj_ctx *c, const char *fmt, const char *a, size_t an);
bool jj_compare_op(jj_ctx *c, int op, jv a, jv b);

#endif
