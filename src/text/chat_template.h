/* A checkpoint's chat template: finds it in the model dir and renders a chat with it
 * the way Hugging Face's apply_chat_template does. */
#ifndef MIMO_TEXT_CHAT_TEMPLATE_H
#define MIMO_TEXT_CHAT_TEMPLATE_H
#include <jansson.h>

#include "core/status.h"
#include "text/jinja/jinja.h"

typedef struct mimo_tmpl {
  char *source;      /* template text */
  char *origin;      /* file it came from */
  json_t *specials;  /* {"bos_token": "...", "eos_token": ..., "pad_token", "unk_token"} (those set) */
  mimo_jinja *parsed;
} mimo_tmpl;

/* Loads model_dir/chat_template.jinja, else tokenizer_config.json's chat_template (a string,
 * or a list of {name, template}: "default" is used). override_path (may be NULL) replaces the
 * template file. Special tokens come from tokenizer_config.json (string or {content: ...}). */
mimo_status mimo_tmpl_load(const char *model_dir, const char *override_path, mimo_tmpl *out);
void mimo_tmpl_free(mimo_tmpl *t);

/* Renders messages (array) with tools (array or NULL -> None), add_generation_prompt, and
 * kwargs (object or NULL) merged over the special tokens. *out is malloc'ed. */
mimo_status mimo_tmpl_render(const mimo_tmpl *t, const json_t *messages, const json_t *tools,
                             int add_generation_prompt, const json_t *kwargs, char **out);
#endif
