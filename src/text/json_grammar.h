/* Structured outputs: a JSON schema (or "any JSON object", or a list of choices, or a regex, or tool calls)
 * compiled into a byte-level pushdown matcher, so that a decoder can ask of any byte whether the output may
 * continue with it (vLLM's guided decoding, OpenAI's response_format). The matcher state is a fixed-size value
 * (mimo_jg_copy copies the part in use) of one or a few readings.
 *
 * Schema subset: type (one or a list), properties + required (any order; no other keys unless
 * additionalProperties is true), items, prefixItems (tuples), minItems/maxItems, enum, const, anyOf/oneOf (up to
 * 8 schemas; alternatives that start alike are read side by side; oneOf only where its alternatives are disjoint
 * by shape), minLength/maxLength (code points), pattern and some formats, local $ref (#/$defs/..., not
 * recursive), minimum/maximum (exclusive too) on integers and numbers. Anything else (multipleOf, ...) is refused
 * with a message naming the keyword's path: a constraint silently dropped would be a promise broken. Whitespace
 * between tokens: at most MIMO_JG_MAX_WS in a row (room for a newline and indentation), so a weak model cannot pad
 * forever; numbers at most MIMO_JG_MAX_NUM characters. */
#ifndef MIMO_TEXT_JSON_GRAMMAR_H
#define MIMO_TEXT_JSON_GRAMMAR_H
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/status.h"

#define MIMO_JG_MAX_DEPTH 24
#define MIMO_JG_MAX_WS 20
#define MIMO_JG_MAX_NUM 24

typedef struct mimo_jg mimo_jg;

/* schema NULL: any JSON object (response_format json_object). */
mimo_status mimo_jg_compile(const json_t *schema, mimo_jg **out);
/* The output is exactly one of the n strings (vLLM's guided_choice; raw text, not JSON). */
mimo_status mimo_jg_choice(const char *const *choices, int n, mimo_jg **out);
/* The whole output matches a regular expression (vLLM's guided_regex; raw text; syntax in text/regex_dfa.h). */
mimo_status mimo_jg_regex(const char *pattern, size_t len, mimo_jg **out);
#define MIMO_JG_MAX_REGEX_STATES 20000
/* MiMo's XML tool calls (text/toolcall.h) whose parameters follow the tools' JSON schemas (OpenAI-style function
 * list), as the qwen3_xml parser types them: a string parameter is raw text, others JSON text. start: the text the
 * output already has when the grammar takes over, a beginning of the first call (NULL:
 * mimo_toolcall_forced_prefix(named), which forced ids carry; "": none, the first call may follow whitespace, as
 * after the reasoning); named: that function only; max_calls > 0: at most
 * that many calls. A parameter whose schema does not compile is free text, unless its function has `strict: true`
 * (then an error naming it). */
mimo_status mimo_jg_tools(const json_t *tools, const char *named, int max_calls, const char *start, mimo_jg **out);
/* vLLM's structural tags (response_format type "structural_tag"; xgrammar's first form): free text in which any
 * of the triggers (strings) opens one of the structures ({begin, schema, end}: begin starts with a trigger) whose
 * begin text, a JSON value under its schema and its end text follow; then free text again. The output may end in
 * free text. Errors name the field (structures[i].schema..., triggers[i]). */
mimo_status mimo_jg_structural_tag(const json_t *structures, const json_t *triggers, mimo_jg **out);
/* xgrammar's later form, {"type": "structural_tag", "format": F}, for F of type triggered_tags ({triggers, tags:
 * [{begin, content: {type: json_schema, json_schema}, end}], at_least_one, stop_after_first}), tag (one such
 * structure, the whole output) or json_schema; other format types are refused by name. */
mimo_status mimo_jg_structural_format(const json_t *format, mimo_jg **out);
/* A grammar is shared by the request that asked for it and the engine's constraints running it, which may outlive
 * the request's own reference (a cancelled request is stepped once more): each holder takes a reference, and
 * mimo_jg_free drops one (the last frees it). Thread-safe. */
/* No whitespace between the JSON tokens of a schema or json_object grammar (vLLM's disable_any_whitespace): the
 * output is compact JSON. Inside strings and literals whitespace stays as it is. */
void mimo_jg_no_whitespace(mimo_jg *g);
void mimo_jg_ref(const mimo_jg *g);
void mimo_jg_free(mimo_jg *g);

typedef struct mimo_jg_frame {
  const struct mimo_jg_node *node;
  uint8_t phase, ws, need;   /* need: UTF-8 continuation bytes still due (strings) */
  uint8_t hex;               /* \u digits still due */
  uint8_t lo, hi;            /* the range of the next UTF-8 continuation byte (well-formed UTF-8 only) */
  uint16_t count;            /* array items, number characters, string code points */
  int16_t prop;              /* object: the property whose value is being read */
  uint32_t off;              /* literal / key: bytes matched */
  uint64_t cand;             /* literal / key: candidates still possible */
  uint64_t seen;             /* object: properties given */
} mimo_jg_frame;

/* One reading of the output so far: a frame per open value. */
typedef struct mimo_jg_stack {
  int depth;
  mimo_jg_frame f[MIMO_JG_MAX_DEPTH];
} mimo_jg_stack;

/* The readings still possible. An anyOf whose alternatives can start alike (two object schemas, integer or number)
 * follows each alternative in a reading of its own until the bytes rule it out; identical readings merge. At most
 * MIMO_JG_MAX_READINGS at once: beyond that, later alternatives are not followed (the output stays valid; only
 * fewer continuations are offered). Copy a state with mimo_jg_copy (it touches only the frames in use). */
#define MIMO_JG_MAX_READINGS 8
typedef struct mimo_jg_state {
  int n;
  mimo_jg_stack s[MIMO_JG_MAX_READINGS];
} mimo_jg_state;

void mimo_jg_copy(mimo_jg_state *dst, const mimo_jg_state *src);
/* Whether every reading has closed its value: no byte may follow. */
bool mimo_jg_closed(const mimo_jg_state *s);
void mimo_jg_start(const mimo_jg *g, mimo_jg_state *s);
/* Whether the output may continue with byte c; on true s has taken it, on false s is unchanged. */
bool mimo_jg_feed(const mimo_jg *g, mimo_jg_state *s, unsigned char c);
/* Whether the output may end here (a complete value). */
bool mimo_jg_done(const mimo_jg *g, const mimo_jg_state *s);
/* Free text: every reading is inside a string with no length limit or pattern and no escape or UTF-8 sequence
 * pending, so every token of plain text may follow (the vocabulary's fast path). MIMO_JG_FREE_JSON: a JSON string
 * (printable UTF-8 without '"' or '\\'); MIMO_JG_FREE_RAW: a tool call's text value (UTF-8 of bytes >= 0x20, tabs
 * and line ends, without '<'); MIMO_JG_FREE_JSON_IN_TOOL: a JSON string inside a tool call's value (both: it may
 * not hold "</parameter>"); 0: not free text. */
enum { MIMO_JG_FREE_JSON = 1, MIMO_JG_FREE_RAW = 2, MIMO_JG_FREE_JSON_IN_TOOL = 3 };
int mimo_jg_free_text(const mimo_jg *g, const mimo_jg_state *s);
/* Tool-call grammars: some reading stands between calls (or in their tags), where the tokenizer's added tokens
 * <tool_call> and </tool_call> may stand for their text. */
bool mimo_jg_between_calls(const mimo_jg *g, const mimo_jg_state *s);
/* mimo_jg_feed without the copy: on false s is left in an unspecified state (callers that try bytes on a copy). */
bool mimo_jg_step_inplace(const mimo_jg *g, mimo_jg_state *s, unsigned char c);
#endif
