/* Finds and renders a checkpoint's chat template. */
#include "text/chat_template.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/fileio.h"

#define MAX_TEMPLATE_BYTES (16u << 20)

static char *path_join(const char *dir, const char *name) {
  size_t n = strlen(dir) + strlen(name) + 2;
  char *p = malloc(n);
  if (p) snprintf(p, n, "%s/%s", dir, name);
  return p;
}

static mimo_status load_config(const char *dir, json_t **cfg) {
  *cfg = NULL;
  char *p = path_join(dir, "tokenizer_config.json");
  if (!p) return mimo_errf(MIMO_E_NOMEM, "out of memory");
  if (!mimo_file_exists(p)) {
    free(p);
    return MIMO_OK;
  }
  json_error_t e;
  *cfg = json_load_file(p, JSON_DECODE_INT_AS_REAL, &e); /* model_max_length may exceed int64 */
  if (!*cfg || !json_is_object(*cfg)) {
    mimo_status st = mimo_errf(MIMO_E_FORMAT, "%s: line %d: %s", p, e.line, *cfg ? "not a JSON object" : e.text);
    json_decref(*cfg);
    *cfg = NULL;
    free(p);
    return st;
  }
  free(p);
  return MIMO_OK;
}

static mimo_status read_text(const char *path, mimo_tmpl *out) {
  size_t len;
  MIMO_TRY(mimo_read_file(path, &out->source, &len, MAX_TEMPLATE_BYTES));
  out->origin = strdup(path);
  return MIMO_OK;
}

mimo_status mimo_tmpl_load(const char *model_dir, const char *override_path, mimo_tmpl *out) {
  memset(out, 0, sizeof *out);
  json_t *cfg = NULL;
  mimo_status st = load_config(model_dir, &cfg);
  if (st != MIMO_OK) return st;
  out->specials = json_object();
  static const char *const names[] = {"bos_token", "eos_token", "pad_token", "unk_token"};
  for (int i = 0; cfg && i < 4; i++) {
    json_t *v = json_object_get(cfg, names[i]);
    if (json_is_object(v)) v = json_object_get(v, "content");
    if (json_is_string(v)) json_object_set(out->specials, names[i], v);
  }
  char *jp = path_join(model_dir, "chat_template.jinja");
  if (override_path) {
    st = read_text(override_path, out);
  } else if (jp && mimo_file_exists(jp)) {
    st = read_text(jp, out);
  } else {
    json_t *ct = cfg ? json_object_get(cfg, "chat_template") : NULL;
    if (json_is_array(ct)) {
      size_t i;
      json_t *e, *pick = NULL;
      json_array_foreach(ct, i, e) {
        const char *nm = json_string_value(json_object_get(e, "name"));
        if (nm && !strcmp(nm, "default")) pick = json_object_get(e, "template");
      }
      ct = pick;
    }
    if (json_is_string(ct)) {
      out->source = strdup(json_string_value(ct));
      out->origin = path_join(model_dir, "tokenizer_config.json");
    } else {
      st = mimo_errf(MIMO_E_CONFIG, "%s: no chat_template.jinja and no chat_template in tokenizer_config.json",
                     model_dir);
    }
  }
  free(jp);
  json_decref(cfg);
  if (st == MIMO_OK && (!out->source || !out->origin)) st = mimo_errf(MIMO_E_NOMEM, "out of memory");
  if (st == MIMO_OK) {
    st = mimo_jinja_parse(out->source, strlen(out->source), &out->parsed);
    if (st != MIMO_OK) mimo_err_prefix(st, "%s: ", out->origin);
  }
  if (st != MIMO_OK) mimo_tmpl_free(out);
  return st;
}

void mimo_tmpl_free(mimo_tmpl *t) {
  if (!t) return;
  free(t->source);
  free(t->origin);
  json_decref(t->specials);
  mimo_jinja_free(t->parsed);
  memset(t, 0, sizeof *t);
}

mimo_status mimo_tmpl_render(const mimo_tmpl *t, const json_t *messages, const json_t *tools,
                             int add_generation_prompt, const json_t *kwargs, char **out) {
  *out = NULL;
  if (!json_is_array(messages)) return mimo_errf(MIMO_E_INVALID, "messages must be a JSON array");
  if (kwargs && !json_is_object(kwargs)) return mimo_errf(MIMO_E_INVALID, "kwargs must be a JSON object");
  json_t *ctx = json_object();
  if (!ctx) return mimo_errf(MIMO_E_NOMEM, "out of memory");
  /* same variables and precedence as transformers: specials, then kwargs, then the fixed ones */
  json_object_update(ctx, t->specials);
  if (kwargs) json_object_update(ctx, (json_t *)kwargs);
  json_object_set(ctx, "messages", (json_t *)messages);
  json_object_set_new(ctx, "tools", tools && !json_is_null(tools) ? json_incref((json_t *)tools) : json_null());
  json_object_set_new(ctx, "documents", json_null());
  json_object_set_new(ctx, "add_generation_prompt", json_boolean(add_generation_prompt));
  mimo_status st = mimo_jinja_render(t->parsed, ctx, out, NULL);
  json_decref(ctx);
  return st;
}
