/* Jinja2-compatible template renderer (the subset chat templates use), matching
 * Python jinja2 configured as Hugging Face does: ImmutableSandboxedEnvironment,
 * trim_blocks, lstrip_blocks, loopcontrols, json.dumps-based tojson. */
#ifndef MIMO_TEXT_JINJA_H
#define MIMO_TEXT_JINJA_H
#include <jansson.h>
#include <stddef.h>

#include "core/status.h"

typedef struct mimo_jinja mimo_jinja; /* a parsed template; immutable, shareable across threads */

/* Parses src (len bytes, UTF-8). Syntax errors -> MIMO_E_FORMAT with "template line N: ...". */
mimo_status mimo_jinja_parse(const char *src, size_t len, mimo_jinja **out);
void mimo_jinja_free(mimo_jinja *t);

/* Renders with the variables of the JSON object ctx (may be NULL). On success *out is a
 * malloc'ed NUL-terminated UTF-8 string (length in *out_len if non-NULL). Template errors
 * (raise_exception, undefined calls, type errors, limits) -> MIMO_E_INVALID / MIMO_E_TOO_LONG. */
mimo_status mimo_jinja_render(const mimo_jinja *t, const json_t *ctx, char **out, size_t *out_len);

/* parse + render in one call. */
mimo_status mimo_jinja_render_string(const char *src, const json_t *ctx, char **out);

#endif
