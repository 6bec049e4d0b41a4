/* Server-sent events framing (text/event-stream). */
#ifndef MIMO_SERVER_SSE_H
#define MIMO_SERVER_SSE_H
#include <jansson.h>

#include "server/sbuf.h"

/* `event: NAME\n` (when name is non-NULL) + `data: DATA\n\n`; data must not contain newlines (compact JSON). */
void mimo_sse_event(mimo_sbuf *b, const char *name, const char *data, size_t n);
/* Same with j dumped compactly (j is not consumed). */
void mimo_sse_json(mimo_sbuf *b, const char *name, const json_t *j);
/* OpenAI's end-of-stream marker `data: [DONE]`. */
void mimo_sse_done(mimo_sbuf *b);
#endif
