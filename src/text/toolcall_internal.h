/* Shared between toolcall.c (stream state machine) and toolcall_value.c (values). */
#ifndef MIMO_TEXT_TOOLCALL_INTERNAL_H
#define MIMO_TEXT_TOOLCALL_INTERNAL_H
#include <jansson.h>
#include <stddef.h>

typedef struct tbuf {
  char *p;
  size_t n, cap;
  int oom; /* a failed append; checked once per public call */
} tbuf;
void tc_put(tbuf *b, const char *s, size_t n);

enum { VT_STRING, VT_INT, VT_NUM, VT_BOOL, VT_JSON, VT_ANY };

int tc_is_ws(char c);
int tc_utf8_valid(const char *s, size_t n);
/* Appends s JSON-escaped without quotes; invalid UTF-8 → \ufffd. !final: an
 * incomplete trailing sequence is left unconsumed. Returns bytes consumed. */
size_t tc_esc(tbuf *o, const char *s, size_t n, int final);
/* properties object of the named tool's parameters; NULL if unknown. */
const json_t *tc_find_props(const json_t *tools, const char *name);
int tc_param_type(const json_t *props, const char *key, size_t klen);
/* A complete non-streamed value (vt) → JSON text appended to o. */
void tc_convert(tbuf *o, int vt, const char *v, size_t n);
#endif
