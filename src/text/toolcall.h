/* The `qwen3_xml` tool-call format MiMo emits (spec §5.3), parsed incrementally
 * from the content stream:
 *
 *   <tool_call>\n<function=NAME>\n<parameter=K>\nVALUE\n</parameter>\n</function>\n</tool_call>
 *
 * Text outside calls passes through as content. Each call produces: start (a
 * fresh `call_` id and the name, once `<function=NAME>` is complete), argument
 * fragments whose concatenation is the call's JSON object, end. Arguments are
 * formatted `{"K1": V1, "K2": V2}` (json.dumps style: ", " and ": "). Values are
 * typed from the request's tool schema (properties[K].type): string-like types
 * stay strings and stream as they arrive; integer/number/boolean/null convert;
 * object/array parse as JSON, then as a Python literal; anything unparsable, and
 * a parameter without a schema that is not valid JSON, stays a string. One
 * leading and one trailing newline of a value are dropped.
 * At finish, a call whose name is complete is closed with what it has; an
 * unfinished `<tool_call>` without a complete name goes out as content. */
#ifndef MIMO_TEXT_TOOLCALL_H
#define MIMO_TEXT_TOOLCALL_H
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "core/num.h"

typedef struct mimo_toolcall_sink {
  void (*content)(void *ctx, const char *s, size_t n);
  void (*call_start)(void *ctx, int index, const char *id, const char *name);
  void (*call_args)(void *ctx, int index, const char *s, size_t n);
  void (*call_end)(void *ctx, int index);
  void *ctx;
} mimo_toolcall_sink;

typedef struct mimo_toolcall mimo_toolcall;

/* tools: the request's OpenAI-style tool list (may be NULL); borrowed. */
mimo_toolcall *mimo_toolcall_new(const json_t *tools, uint64_t seed, const mimo_toolcall_sink *sink);
void mimo_toolcall_feed(mimo_toolcall *p, const char *s, size_t n);
void mimo_toolcall_finish(mimo_toolcall *p);
int mimo_toolcall_count(const mimo_toolcall *p); /* calls started so far */
void mimo_toolcall_free(mimo_toolcall *p);

/* Non-streaming: content outside calls (malloc'ed, NULL when empty or only
 * whitespace while calls exist) and the calls as a JSON array of
 * {"id", "type": "function", "function": {"name", "arguments"}} (new reference). */
void mimo_toolcall_parse_all(const char *text, size_t n, const json_t *tools, uint64_t seed, char **content,
                             json_t **calls);

/* The text the output must start with for tool_choice: "required" (name NULL)
 * or a named function: `<tool_call>\n<function=` or `<tool_call>\n<function=NAME>\n`.
 * Returns a static buffer for NULL, else malloc'ed. */
char *mimo_toolcall_forced_prefix(const char *function_name);
#endif
