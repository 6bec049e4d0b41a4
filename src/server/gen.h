/* One API generation: n choices submitted to the engine, each turned from
 * tokens into text (streaming detokenizer), cut at stop strings (a partial
 * match at the end is held back until it is decided), and, for chat, split
 * into reasoning / content / tool calls. API modules pump it and format the
 * per-choice deltas in their own wire format, streamed or accumulated. */
#ifndef MIMO_SERVER_GEN_H
#define MIMO_SERVER_GEN_H
#include <jansson.h>

#include "server/api_common.h"
#include "server/sbuf.h"

typedef struct mimo_gen_spec {
  const int *prompt;
  int n_prompt;
  int n; /* choices (>= 1) */
  int max_tokens;
  mimo_sampling_params sp; /* choice i samples with seed + i */
  const char *const *stop; /* stop strings (not included in the output) */
  int n_stop;
  const int *stop_ids;
  int n_stop_ids;
  bool ignore_eos;
  bool skip_special;
  bool parse_reasoning; /* split <think>...</think> (chat) */
  bool thinking;        /* the prompt leaves the model in thinking mode */
  const json_t *tools;  /* non-NULL: parse tool calls, typing arguments by these schemas */
  int max_tool_calls;   /* > 0: the output ends after this many calls (parallel_tool_calls false: 1) */
  const int *forced;    /* output must start with these ids */
  int n_forced;
  bool prompt_logprobs; /* the prompt's own logprobs (completions' echo), with prompt_top alternatives */
  int prompt_top;
  const struct mimo_embed_run *embeds; /* image rows of the prompt (engine.h) */
  int n_embeds;
  const struct mimo_jg *grammar; /* structured outputs: every choice's tokens follow it (NULL: none) */
  int grammar_after;             /* ... after this id (the end of reasoning; -1: from the first token) */
  uint64_t cache_salt;           /* the prefix-cache partition (`cache_salt`, hashed; 0: shared) */
  int think_budget;              /* tokens the reasoning may take before think_end is forced (< 0: no budget) */
  int think_end;                 /* the reasoning's end id (</think>) */
} mimo_gen_spec;

typedef struct mimo_gen_tool {
  int index;  /* tool call index within the choice */
  char *id;   /* set on the first delta of a call, else NULL */
  char *name; /* set on the first delta of a call, else NULL */
  mimo_sbuf args; /* argument JSON fragment */
} mimo_gen_tool;

typedef struct mimo_gen_lp { /* one output token's logprob record */
  int token;
  mimo_sample_info info;
} mimo_gen_lp;

/* What a choice produced since the caller last cleared it. */
typedef struct mimo_gen_delta {
  mimo_sbuf reasoning, content;
  mimo_gen_tool *tools;
  int n_tools, cap_tools;
  mimo_gen_lp *lp;
  int n_lp, cap_lp;
  const char *finish; /* non-NULL once, when the choice ends: stop, length, tool_calls, abort, error */
  int stop_index;     /* with finish "stop": index in spec.stop of the string that ended it, else -1 */
} mimo_gen_delta;

typedef struct mimo_gen mimo_gen;

/* Submits every choice; on failure (too long, busy, bad params) fills e. */
int mimo_gen_start(mimo_server *s, const mimo_gen_spec *spec, mimo_gen **out, mimo_api_err *e);
/* Waits up to timeout_ms for tokens, then processes whatever arrived into the
 * choices' deltas. Returns 1 when something changed. */
int mimo_gen_pump(mimo_gen *g, int timeout_ms);
int mimo_gen_done(const mimo_gen *g); /* every choice finished */
int mimo_gen_n(const mimo_gen *g);
mimo_gen_delta *mimo_gen_delta_of(mimo_gen *g, int choice);
void mimo_gen_delta_clear(mimo_gen_delta *d);
int mimo_gen_prompt_tokens(const mimo_gen *g);
/* Of those, tokens the prefix cache supplied (known once the request is admitted). */
int mimo_gen_cached_tokens(const mimo_gen *g);
int mimo_gen_completion_tokens(const mimo_gen *g); /* over all choices */
/* With spec.prompt_logprobs, once the prompt is in: entries 1..n_prompt-1 (engine.h), else NULL. */
const mimo_sample_info *mimo_gen_prompt_logprobs(const mimo_gen *g);
const int *mimo_gen_prompt_ranks(const mimo_gen *g); /* their ranks (engine.h) */
/* Cancels every choice still running (client went away). */
void mimo_gen_cancel(mimo_gen *g);
void mimo_gen_free(mimo_gen *g);
#endif
