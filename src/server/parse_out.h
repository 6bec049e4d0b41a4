/* The chat output stage of a generation: splits the released text into
 * reasoning, content and tool calls (src/text/reasoning.h, src/text/toolcall.h)
 * and appends the pieces to a choice's delta. */
#ifndef MIMO_SERVER_PARSE_OUT_H
#define MIMO_SERVER_PARSE_OUT_H
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

typedef struct mimo_gen_delta mimo_gen_delta;

typedef struct mimo_parse_out {
  bool reasoning, tools;
  int n_calls;    /* tool calls started so far */
  int max_calls;  /* at most this many (parallel_tool_calls false: 1); 0: any */
  bool calls_done; /* the last call allowed has ended: nothing after it is output */
  void *rs, *tc; /* parser states */
} mimo_parse_out;

void mimo_parse_out_init(mimo_parse_out *p, bool parse_reasoning, bool thinking, const json_t *tools, int max_calls);
void mimo_parse_out_feed(mimo_parse_out *p, const char *text, size_t n, mimo_gen_delta *d);
void mimo_parse_out_finish(mimo_parse_out *p, mimo_gen_delta *d);
void mimo_parse_out_free(mimo_parse_out *p);
#endif
