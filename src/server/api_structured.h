/* Structured outputs in OpenAI requests: response_format (json_object, json_schema), and vLLM's guided_json,
 * guided_choice and structured_outputs {json, choice}. The grammar (text/json_grammar.h) then masks every sampled
 * token of every choice (engine/constraint.h); in chat with thinking on, only after the reasoning ends. */
#ifndef MIMO_SERVER_API_STRUCTURED_H
#define MIMO_SERVER_API_STRUCTURED_H
#include <stdbool.h>

#include "server/api_common.h"
#include "text/json_grammar.h"

/* *out: the request's grammar (NULL: none asked); *after: the token id it applies after (-1: from the first). A 400
 * naming the field for a malformed or unsupported format, or two of them at once. */
int mimo_api_structured(const mimo_server *s, const json_t *root, bool thinking, mimo_jg **out, int *after,
                        mimo_api_err *e);

/* A forced tool call (tool_choice required / named, Anthropic's any / tool): the grammar its parameters follow
 * (text/json_grammar.h, mimo_jg_tools), applied after the forced prefix (start NULL), or after the <tool_call>
 * token (start "<tool_call>": tool_choice auto with strict functions). named: that function (one call);
 * max_calls: 1 when parallel calls are off, else 0. Where the tools cannot be constrained (a name the XML tags
 * cannot hold, more than 64 functions or properties), *out is NULL and the call runs as before (the prefix forced,
 * the rest free), unless a function says strict: true, which is then a 400 naming what. */
int mimo_api_tool_grammar(const json_t *tools, const char *named, int max_calls, const char *start, mimo_jg **out,
                          mimo_api_err *e);
/* The ids a forced tool call starts with: mimo_toolcall_forced_prefix(named) tokenized, the text the grammar of
 * mimo_api_tool_grammar (start NULL) takes as given. */
int mimo_api_forced_call_ids(const mimo_server *s, const char *named, int **ids, int *n, mimo_api_err *e);
/* Whether some function in tools says strict: true (or, with dflt, does not say strict: false). */
bool mimo_api_tools_strict(const json_t *tools, bool dflt);
#endif
