/* Splits generated text into reasoning and content (MiMo `<think>…</think>`, spec §5.3).
 * State comes from the GENERATED text only, never from the prompt (the prompt of a
 * MiMo chat holds `</think>` in history and tool instructions). Full rules:
 * docs/parsers.md. Non-streaming use: one feed with the whole text, then finish. */
#ifndef MIMO_TEXT_REASONING_H
#define MIMO_TEXT_REASONING_H
#include <stddef.h>

#include "core/status.h"

typedef struct mimo_reasoning mimo_reasoning;

/* What one feed/finish produced. Within one call reasoning always precedes content.
 * Both strings are NUL-terminated, owned by the parser and valid until its next
 * call; an empty delta has len 0 (pointer non-NULL). */
typedef struct mimo_reasoning_delta {
  const char *reasoning;
  size_t reasoning_len;
  const char *content;
  size_t content_len;
} mimo_reasoning_delta;

/* thinking != 0: the generation prompt ended in `assistant\n` (enable_thinking true,
 * the default) — text up to the first `</think>` is reasoning. thinking == 0: the
 * prompt ended in `<think></think>` — everything is content. */
mimo_status mimo_reasoning_init(mimo_reasoning **out, int thinking);
void mimo_reasoning_free(mimo_reasoning *p);

/* Feeds one piece of generated text (any byte split). Holds back only a suffix that
 * could still become `<think>`, `</think>` or `<tool_call>…<function=`. */
mimo_status mimo_reasoning_feed(mimo_reasoning *p, const char *text, size_t len, mimo_reasoning_delta *out);
/* End of generation: releases what was held back (reasoning stays reasoning). */
mimo_status mimo_reasoning_finish(mimo_reasoning *p, mimo_reasoning_delta *out);
/* Whether the end of reasoning has been seen (always 1 with thinking off). */
int mimo_reasoning_ended(const mimo_reasoning *p);
#endif
