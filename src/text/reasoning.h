/* Splits generated text into reasoning and content (MiMo / Qwen3 style
 * `<think>REASONING</think>CONTENT`), incrementally: pieces go in as the
 * streaming detokenizer releases them, classified deltas come out. State comes
 * from the generated text only, never from the prompt (spec §5.3's pitfall).
 *
 * Thinking enabled (the prompt ended in `assistant\n`): a leading `<think>` is
 * dropped; everything up to the first `</think>` is reasoning; `<tool_call>`
 * followed (after optional whitespace) by `<function=` also ends reasoning and
 * goes to content; no end tag at all = everything is (truncated) reasoning.
 * Thinking disabled (the prompt already holds `<think></think>`): all content.
 * A tag split across pieces is held back only as long as it could still match. */
#ifndef MIMO_TEXT_REASONING_H
#define MIMO_TEXT_REASONING_H
#include <stdbool.h>
#include <stddef.h>

typedef enum { MIMO_TEXT_REASONING = 0, MIMO_TEXT_CONTENT = 1 } mimo_text_kind;
typedef void (*mimo_text_emit)(void *ctx, mimo_text_kind kind, const char *s, size_t n);

typedef struct mimo_reasoning {
  int state;            /* 0 start, 1 reasoning, 2 content */
  char hold[64];        /* text held back while it may still become a tag */
  size_t n_hold;
  mimo_text_emit emit;
  void *ctx;
} mimo_reasoning;

void mimo_reasoning_init(mimo_reasoning *r, bool thinking, mimo_text_emit emit, void *ctx);
void mimo_reasoning_feed(mimo_reasoning *r, const char *s, size_t n);
/* End of generation: releases whatever is held back. */
void mimo_reasoning_finish(mimo_reasoning *r);
#endif
