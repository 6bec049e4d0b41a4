/* `qwen3_xml` tool calls (spec §5.3) parsed from the CONTENT stream (after the
 * reasoning parser):
 *   <tool_call>\n<function=NAME>\n<parameter=K>V</parameter>\n</function>\n</tool_call>
 * Values are typed from the request's `tools` JSON schema; arguments are emitted as
 * JSON text `{"k": v, "k2": v2}` (", " and ": " separators, keys in generation
 * order, UTF-8 unescaped, compact nested values). Rules and edge cases:
 * docs/parsers.md. Create a parser only when the request has tools and
 * tool_choice is not "none". */
#ifndef MIMO_TEXT_TOOLCALL_H
#define MIMO_TEXT_TOOLCALL_H
#include <jansson.h>
#include <stddef.h>

#include "core/num.h"
#include "core/status.h"

typedef struct mimo_toolcall mimo_toolcall;

typedef enum mimo_toolcall_kind {
  MIMO_TOOLCALL_CONTENT, /* text: plain content outside calls */
  MIMO_TOOLCALL_START,   /* index, id, name: a call began (send id + name, arguments "") */
  MIMO_TOOLCALL_ARGS,    /* index, text: next fragment of the call's arguments JSON */
  MIMO_TOOLCALL_END,     /* index: the call's arguments are complete */
} mimo_toolcall_kind;

typedef struct mimo_toolcall_event {
  mimo_toolcall_kind kind;
  int index;        /* 0-based call index within the turn (START/ARGS/END) */
  const char *id;   /* START: "call_" + 24 alphanumerics */
  const char *name; /* START: function name as generated (may be absent from tools) */
  const char *text; /* CONTENT/ARGS: NUL-terminated */
  size_t len;
} mimo_toolcall_event;

/* tools: the request's OpenAI-style array (borrowed, must outlive the parser; NULL =
 * no schemas). rng: caller-seeded, used for call ids (24 draws per call; borrowed). */
mimo_status mimo_toolcall_init(mimo_toolcall **out, const json_t *tools, mimo_rng *rng);
void mimo_toolcall_free(mimo_toolcall *p);

/* Feeds a piece of content text. *events/*n: events in order, owned by the parser,
 * valid until its next call. Adjacent CONTENT events, and ARGS events of one call,
 * are merged. */
mimo_status mimo_toolcall_feed(mimo_toolcall *p, const char *text, size_t len, const mimo_toolcall_event **events,
                               size_t *n);
/* End of stream: an unfinished call whose name is complete is closed (its arguments
 * stay valid JSON); an unfinished `<tool_call>` before that is returned as content. */
mimo_status mimo_toolcall_finish(mimo_toolcall *p, const mimo_toolcall_event **events, size_t *n);
/* Number of calls started so far (finish_reason "tool_calls" when > 0). */
int mimo_toolcall_count(const mimo_toolcall *p);

/* Non-streaming result. */
typedef struct mimo_toolcall_call {
  char id[32];
  char *name;
  char *arguments; /* JSON object text */
} mimo_toolcall_call;
typedef struct mimo_toolcall_result {
  char *content; /* text outside calls (same as the streamed content); NULL when empty */
  size_t content_len;
  mimo_toolcall_call *calls;
  size_t n_calls;
} mimo_toolcall_result;

/* Parses a whole content text (= feed all + finish, so results equal streaming). */
mimo_status mimo_toolcall_parse(const char *text, size_t len, const json_t *tools, mimo_rng *rng,
                                mimo_toolcall_result *out);
void mimo_toolcall_result_free(mimo_toolcall_result *r);

/* Text the model must be made to start its answer with (malloc'd, caller frees; NULL
 * on OOM) to force a call: name given (tool_choice names a function) →
 * "<tool_call>\n<function=NAME>\n"; NULL (tool_choice "required") →
 * "<tool_call>\n<function=". Append it to the prompt after the generation prompt and
 * feed it to the parsers as generated text before the first generated piece. */
char *mimo_toolcall_forced_prefix(const char *function_name);
#endif
