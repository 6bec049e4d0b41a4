/* Anthropic request parsing: a Messages body -> the chat template's messages
 * (tool_use -> tool_calls with dict arguments, tool_result -> tool messages,
 * thinking -> reasoning_content), OpenAI-style tools, prompt ids, sampling,
 * stop sequences and the tool-call prefix that tool_choice any/tool forces.
 * Anything wrong is a 400 whose message names the field the way Anthropic
 * does (`messages.1.content.0.type: ...`). */
#include "server/anthropic.h"

#include <stdlib.h>
#include <string.h>

#include <sys/random.h>

#include "core/base64.h"
#include "core/log.h"
#include "server/api_structured.h"
#include "text/toolcall.h"

#define MAX_STOP 32

const char *mimo_anthropic_error_type(int status) {
  switch (status) {
  case 401: return "authentication_error";
  case 403: return "permission_error";
  case 404: return "not_found_error";
  case 413: return "request_too_large";
  case 429: return "rate_limit_error";
  case 503:
  case 529: return "overloaded_error";
  default: return status >= 500 ? "api_error" : "invalid_request_error";
  }
}

json_t *mimo_anthropic_error_body(int status, const char *type, const char *param, const char *code,
                                  const char *msg) {
  (void)type; /* the framework passes OpenAI's names; Anthropic's follow the status */
  (void)param;
  (void)code;
  /* a message cut by a fixed buffer may end inside a UTF-8 sequence, which jansson refuses */
  size_t n = strlen(msg);
  json_t *m = json_stringn(msg, n);
  for (int k = 0; !m && k < 3 && n; k++)
    m = json_stringn(msg, --n);
  if (!m)
    m = json_string("error");
  return json_pack("{s:s,s:{s:s,s:o}}", "type", "error", "error", "type", mimo_anthropic_error_type(status),
                   "message", m);
}

void mimo_anth_req_free(mimo_anth_req *r) {
  json_decref(r->messages);
  json_decref(r->tools);
  json_decref(r->kwargs);
  free(r->prompt);
  free(r->forced);
  mimo_jg_free(r->grammar);
  free(r->stop);
  mimo_api_images_free(&r->images);
  memset(r, 0, sizeof *r);
}

/* ---- content blocks ---- */

static int oom(mimo_api_err *e) { return mimo_api_fail(e, 500, NULL, "out of memory"); }

/* b must be an object with a string "type". */
static const char *block_type(const json_t *b, const char *where, size_t i, mimo_api_err *e) {
  const char *t = json_string_value(json_object_get(b, "type"));
  if (!json_is_object(b) || !t)
    mimo_api_fail(e, 400, where, "%s.%zu: each content block must be an object with a string 'type'", where, i);
  return t;
}

/* Where a user turn's images go (NULL in places that take none). */
typedef struct {
  mimo_server *s;
  mimo_api_images *im;
  bool encode; /* false: count_tokens (sizes only) */
} img_ctx;

/* An image block, checked for Anthropic's shape; with ic, decoded and encoded into ic->im, else refused (images
 * inside tool results and system prompts are not rendered). */
static int image_block(const img_ctx *ic, const json_t *b, const char *where, size_t i, mimo_api_err *e) {
  json_t *src = json_object_get(b, "source");
  const char *st = json_string_value(json_object_get(src, "type"));
  int ok = json_is_object(src) && st &&
           ((strcmp(st, "base64") == 0 && json_is_string(json_object_get(src, "data")) &&
             json_is_string(json_object_get(src, "media_type"))) ||
            (strcmp(st, "url") == 0 && json_is_string(json_object_get(src, "url"))));
  if (!ok)
    return mimo_api_fail(e, 400, where,
                         "%s.%zu.source: expected {type: base64, media_type, data} or {type: url, url}", where, i);
  if (!ic)
    return mimo_api_fail(e, 400, where, "%s.%zu: images are supported in user turns only", where, i);
  char w[96];
  snprintf(w, sizeof w, "%s.%zu.source", where, i);
  if (strcmp(st, "url") == 0)
    return mimo_api_image_add(ic->s, ic->im, json_string_value(json_object_get(src, "url")), ic->encode, w, e);
  const char *mt = json_string_value(json_object_get(src, "media_type"));
  if (strncmp(mt, "image/", 6) != 0)
    return mimo_api_fail(e, 400, where, "%s.media_type: '%s' is not an image type", w, mt);
  json_t *data = json_object_get(src, "data");
  uint8_t *bytes = NULL;
  size_t n = 0;
  if (mimo_base64_decode(json_string_value(data), json_string_length(data), &bytes, &n) != MIMO_OK)
    return mimo_api_fail(e, 400, where, "%s.data: %s", w, mimo_errmsg());
  const int rc = mimo_api_image_add_bytes(ic->s, ic->im, bytes, n, ic->encode, w, e);
  free(bytes);
  return rc;
}

/* A text part of a content list (text and images in order, for the template), when there is text. */
static void text_part(json_t *parts, const mimo_sbuf *t) {
  if (t->len)
    json_array_append_new(parts, json_pack("{s:s,s:s%}", "type", "text", "text", t->p, t->len));
}

static void join(mimo_sbuf *b, const char *t, size_t n) {
  if (b->len)
    mimo_sbuf_puts(b, "\n");
  mimo_sbuf_put(b, t, n);
}

/* A string, or text blocks joined by "\n" (system prompt, tool_result content). With parts (tool results: a
 * screenshot a tool returns), image blocks go through the tower: the text so far becomes a text part of parts, then
 * an image part; the caller adds what text is left. Without, images are refused. */
static int plain_text(const img_ctx *ic, const json_t *c, const char *where, mimo_sbuf *out, json_t *parts,
                      mimo_api_err *e) {
  if (json_is_string(c)) {
    mimo_sbuf_put(out, json_string_value(c), json_string_length(c));
    return 0;
  }
  if (!json_is_array(c))
    return mimo_api_fail(e, 400, where, "%s: expected a string or a list of content blocks", where);
  size_t i;
  json_t *b;
  json_array_foreach(c, i, b) {
    const char *t = block_type(b, where, i, e);
    if (!t)
      return -1;
    if (strcmp(t, "image") == 0) {
      if (!parts)
        return image_block(NULL, b, where, i, e);
      if (image_block(ic, b, where, i, e))
        return -1;
      text_part(parts, out);
      json_array_append_new(parts, json_pack("{s:s}", "type", "image"));
      out->len = 0;
      continue;
    }
    if (strcmp(t, "text") != 0)
      return mimo_api_fail(e, 400, where, "%s.%zu.type: '%s' is not supported here (text only)", where, i, t);
    json_t *tx = json_object_get(b, "text");
    if (!json_is_string(tx))
      return mimo_api_fail(e, 400, where, "%s.%zu.text: expected a string", where, i);
    join(out, json_string_value(tx), json_string_length(tx));
  }
  return 0;
}

static int push_msg(json_t *msgs, const char *role, const char *text, size_t n, mimo_api_err *e) {
  json_t *m = json_pack("{s:s,s:s%}", "role", role, "content", text ? text : "", text ? n : 0);
  if (!m || json_array_append_new(msgs, m))
    return oom(e);
  return 0;
}

/* A user message: its text, or, when images came with it, a list of parts (text, then the images and text after
 * them, in order) for the template to place the images' placeholders. */
static int push_user(json_t *msgs, json_t **parts, const mimo_sbuf *text, mimo_api_err *e) {
  if (!json_array_size(*parts))
    return push_msg(msgs, "user", text->p, text->len, e);
  text_part(*parts, text);
  json_t *m = json_pack("{s:s,s:o}", "role", "user", "content", *parts); /* the message takes the list */
  *parts = json_array();
  if (!m || !*parts || json_array_append_new(msgs, m))
    return oom(e);
  return 0;
}

/* user turn: text and image blocks -> a user message; each tool_result -> a tool message, in order. */
static int user_blocks(const img_ctx *ic, const json_t *c, const char *where, json_t *msgs, mimo_api_err *e) {
  mimo_sbuf text = {0}, res = {0};
  int have_text = 0, rc = 0;
  json_t *parts = json_array();
  if (!parts)
    return oom(e);
  char w[64];
  size_t i;
  json_t *b;
  json_array_foreach(c, i, b) {
    const char *t = block_type(b, where, i, e);
    if (!t) {
      rc = -1;
      break;
    }
    if (strcmp(t, "text") == 0) {
      json_t *tx = json_object_get(b, "text");
      if (!json_is_string(tx)) {
        rc = mimo_api_fail(e, 400, where, "%s.%zu.text: expected a string", where, i);
        break;
      }
      join(&text, json_string_value(tx), json_string_length(tx));
      have_text = 1;
    } else if (strcmp(t, "image") == 0) {
      if ((rc = image_block(ic, b, where, i, e)))
        break;
      text_part(parts, &text);
      json_array_append_new(parts, json_pack("{s:s}", "type", "image"));
      text.len = 0;
      have_text = 1;
    } else if (strcmp(t, "tool_result") == 0) {
      const char *id = json_string_value(json_object_get(b, "tool_use_id"));
      json_t *err = json_object_get(b, "is_error"), *rc_c = json_object_get(b, "content");
      if (!id) {
        rc = mimo_api_fail(e, 400, where, "%s.%zu.tool_use_id: Field required (a string)", where, i);
        break;
      }
      if (err && !json_is_null(err) && !json_is_boolean(err)) {
        rc = mimo_api_fail(e, 400, where, "%s.%zu.is_error: expected a boolean", where, i);
        break;
      }
      if (have_text) { /* text written before the result stays before it */
        if ((rc = push_user(msgs, &parts, &text, e)))
          break;
        text.len = 0;
        have_text = 0;
      }
      res.len = 0;
      if (json_is_true(err))
        mimo_sbuf_puts(&res, "Error: ");
      snprintf(w, sizeof w, "%s.%zu.content", where, i);
      json_t *tparts = json_array();
      if (!tparts) {
        rc = oom(e);
        break;
      }
      if (rc_c && !json_is_null(rc_c) && (rc = plain_text(ic, rc_c, w, &res, tparts, e))) {
        json_decref(tparts);
        break;
      }
      if (json_array_size(tparts)) /* the text after the last image */
        text_part(tparts, &res);
      json_t *m = json_array_size(tparts)
                      ? json_pack("{s:s,s:O,s:s}", "role", "tool", "content", tparts, "tool_call_id", id)
                      : json_pack("{s:s,s:s%,s:s}", "role", "tool", "content", res.p ? res.p : "", res.len,
                                  "tool_call_id", id);
      json_decref(tparts);
      if (!m || json_array_append_new(msgs, m)) {
        rc = oom(e);
        break;
      }
    } else {
      rc = mimo_api_fail(e, 400, where, "%s.%zu.type: '%s' is not supported in a user turn", where, i, t);
      break;
    }
  }
  if (!rc && have_text)
    rc = push_user(msgs, &parts, &text, e);
  if (!rc && (text.oom || res.oom))
    rc = oom(e);
  json_decref(parts);
  mimo_sbuf_free(&text);
  mimo_sbuf_free(&res);
  return rc;
}

/* assistant turn: text -> content, thinking -> reasoning_content, tool_use -> tool_calls. */
static int assistant_blocks(const json_t *c, const char *where, json_t *msgs, mimo_api_err *e) {
  mimo_sbuf text = {0}, think = {0};
  json_t *calls = json_array();
  int rc = calls ? 0 : oom(e);
  size_t i;
  json_t *b;
  json_array_foreach(c, i, b) {
    if (rc)
      break;
    const char *t = block_type(b, where, i, e);
    if (!t) {
      rc = -1;
    } else if (strcmp(t, "text") == 0) {
      json_t *tx = json_object_get(b, "text");
      if (!json_is_string(tx))
        rc = mimo_api_fail(e, 400, where, "%s.%zu.text: expected a string", where, i);
      else
        mimo_sbuf_put(&text, json_string_value(tx), json_string_length(tx));
    } else if (strcmp(t, "thinking") == 0) {
      json_t *tx = json_object_get(b, "thinking");
      if (!json_is_string(tx))
        rc = mimo_api_fail(e, 400, where, "%s.%zu.thinking: expected a string", where, i);
      else
        mimo_sbuf_put(&think, json_string_value(tx), json_string_length(tx));
    } else if (strcmp(t, "redacted_thinking") == 0) {
      /* opaque data from another model: nothing the template can show */
    } else if (strcmp(t, "tool_use") == 0) {
      const char *id = json_string_value(json_object_get(b, "id"));
      const char *name = json_string_value(json_object_get(b, "name"));
      json_t *in = json_object_get(b, "input");
      if (!id || !name || !*name)
        rc = mimo_api_fail(e, 400, where, "%s.%zu: tool_use needs a string 'id' and 'name'", where, i);
      else if (in && !json_is_null(in) && !json_is_object(in))
        rc = mimo_api_fail(e, 400, where, "%s.%zu.input: expected an object", where, i);
      else {
        json_t *args = json_is_object(in) ? json_deep_copy(in) : json_object();
        json_t *call = json_pack("{s:s,s:s,s:{s:s,s:o}}", "id", id, "type", "function", "function", "name", name,
                                 "arguments", args);
        if (!call || json_array_append_new(calls, call))
          rc = oom(e);
      }
    } else {
      rc = mimo_api_fail(e, 400, where, "%s.%zu.type: '%s' is not supported in an assistant turn", where, i, t);
    }
  }
  if (!rc && (text.oom || think.oom))
    rc = oom(e);
  if (!rc) {
    json_t *m = json_pack("{s:s,s:s%}", "role", "assistant", "content", text.p ? text.p : "", text.len);
    if (m && think.len)
      json_object_set_new(m, "reasoning_content", json_stringn(think.p, think.len));
    if (m && json_array_size(calls))
      json_object_set(m, "tool_calls", calls);
    if (!m || json_array_append_new(msgs, m))
      rc = oom(e);
  }
  json_decref(calls);
  mimo_sbuf_free(&text);
  mimo_sbuf_free(&think);
  return rc;
}

static int conv_messages(const img_ctx *ic, const json_t *root, json_t **out, mimo_api_err *e) {
  json_t *msgs = json_object_get(root, "messages"), *sys = json_object_get(root, "system");
  if (!msgs || json_is_null(msgs))
    return mimo_api_fail(e, 400, "messages", "messages: Field required");
  if (!json_is_array(msgs))
    return mimo_api_fail(e, 400, "messages", "messages: expected a list");
  if (!json_array_size(msgs))
    return mimo_api_fail(e, 400, "messages", "messages: at least one message is required");
  json_t *arr = *out = json_array();
  if (!arr)
    return oom(e);
  if (sys && !json_is_null(sys)) {
    mimo_sbuf t = {0};
    int rc = plain_text(NULL, sys, "system", &t, NULL, e);
    if (!rc && t.len)
      rc = push_msg(arr, "system", t.p, t.len, e);
    mimo_sbuf_free(&t);
    if (rc)
      return -1;
  }
  size_t i;
  json_t *m;
  json_array_foreach(msgs, i, m) {
    char where[48];
    snprintf(where, sizeof where, "messages.%zu.content", i);
    const char *role = json_string_value(json_object_get(m, "role"));
    if (!json_is_object(m) || !role)
      return mimo_api_fail(e, 400, "messages", "messages.%zu: expected an object with a string 'role'", i);
    int user = strcmp(role, "user") == 0;
    if (!user && strcmp(role, "assistant") != 0)
      return mimo_api_fail(e, 400, "messages",
                           "messages.%zu.role: Input should be 'user' or 'assistant' (got '%s'; a system prompt "
                           "goes in the top-level 'system' field)",
                           i, role);
    json_t *c = json_object_get(m, "content");
    if (json_is_string(c)) {
      if (push_msg(arr, role, json_string_value(c), json_string_length(c), e))
        return -1;
    } else if (json_is_array(c)) {
      if (user && !json_array_size(c))
        return mimo_api_fail(e, 400, "messages", "%s: a user turn needs at least one content block", where);
      if (user ? user_blocks(ic, c, where, arr, e) : assistant_blocks(c, where, arr, e))
        return -1;
    } else {
      return mimo_api_fail(e, 400, "messages", "%s: %s", where,
                           c ? "expected a string or a list of content blocks" : "Field required");
    }
  }
  return 0;
}

/* ---- tools ---- */

static int name_ok(const char *n) {
  size_t k = 0;
  for (; n[k]; k++)
    if (!((n[k] >= 'a' && n[k] <= 'z') || (n[k] >= 'A' && n[k] <= 'Z') || (n[k] >= '0' && n[k] <= '9') ||
          n[k] == '_' || n[k] == '-'))
      return 0;
  return k >= 1 && k <= 128;
}

/* [{name, description, input_schema}] -> [{type: function, function: {name, description, parameters}}]. */
static int conv_tools(const json_t *tools, json_t **out, mimo_api_err *e) {
  *out = NULL;
  if (!tools || json_is_null(tools))
    return 0;
  if (!json_is_array(tools))
    return mimo_api_fail(e, 400, "tools", "tools: expected a list");
  json_t *arr = json_array();
  if (!arr)
    return oom(e);
  *out = arr;
  size_t i;
  json_t *t;
  json_array_foreach(tools, i, t) {
    const char *type = json_string_value(json_object_get(t, "type"));
    const char *name = json_string_value(json_object_get(t, "name"));
    json_t *desc = json_object_get(t, "description"), *schema = json_object_get(t, "input_schema");
    if (!json_is_object(t))
      return mimo_api_fail(e, 400, "tools", "tools.%zu: expected an object", i);
    if (type && strcmp(type, "custom") != 0)
      return mimo_api_fail(e, 400, "tools", "tools.%zu.type: '%s' is not supported (client tools only)", i, type);
    if (!name || !name_ok(name))
      return mimo_api_fail(e, 400, "tools", "tools.%zu.name: expected a string matching ^[a-zA-Z0-9_-]{1,128}$", i);
    if (desc && !json_is_null(desc) && !json_is_string(desc))
      return mimo_api_fail(e, 400, "tools", "tools.%zu.description: expected a string", i);
    if (!json_is_object(schema))
      return mimo_api_fail(e, 400, "tools", "tools.%zu.input_schema: Field required (a JSON schema object)", i);
    json_t *f = json_pack("{s:s,s:O}", "name", name, "parameters", schema);
    if (f && json_is_string(desc))
      json_object_set(f, "description", desc);
    if (!f || json_array_append_new(arr, json_pack("{s:s,s:o}", "type", "function", "function", f)))
      return oom(e);
  }
  return mimo_api_check_tools(arr, e);
}

/* tool_choice {type: auto|any|tool|none, name, disable_parallel_tool_use}: sets *parse (parse calls from the
 * output), *forced_name / *forced (the output must start with a call) and *one_call (it ends after one). */
static int conv_tool_choice(const json_t *root, const json_t *tools, bool *parse, bool *forced,
                            const char **forced_name, bool *one_call, mimo_api_err *e) {
  json_t *tc = json_object_get(root, "tool_choice");
  *parse = tools && json_array_size(tools);
  *forced = false;
  *one_call = false;
  *forced_name = NULL;
  if (!tc || json_is_null(tc))
    return 0;
  const char *type = json_string_value(json_object_get(tc, "type"));
  if (!json_is_object(tc) || !type)
    return mimo_api_fail(e, 400, "tool_choice", "tool_choice: expected an object with a string 'type'");
  json_t *dp = json_object_get(tc, "disable_parallel_tool_use");
  if (dp && !json_is_null(dp) && !json_is_boolean(dp))
    return mimo_api_fail(e, 400, "tool_choice", "tool_choice.disable_parallel_tool_use: expected a boolean");
  *one_call = json_is_true(dp);
  if (strcmp(type, "none") == 0) {
    *parse = false;
    return 0;
  }
  if (strcmp(type, "auto") == 0)
    return 0;
  if (strcmp(type, "any") != 0 && strcmp(type, "tool") != 0)
    return mimo_api_fail(e, 400, "tool_choice", "tool_choice.type: expected 'auto', 'any', 'tool' or 'none'");
  if (!*parse)
    return mimo_api_fail(e, 400, "tool_choice", "tool_choice.type '%s' needs a non-empty 'tools' list", type);
  *forced = true;
  if (strcmp(type, "any") == 0)
    return 0;
  const char *name = json_string_value(json_object_get(tc, "name"));
  if (!name)
    return mimo_api_fail(e, 400, "tool_choice", "tool_choice.name: Field required for type 'tool'");
  size_t i;
  json_t *t;
  json_array_foreach(tools, i, t) {
    const char *n = json_string_value(json_object_get(json_object_get(t, "function"), "name"));
    if (n && strcmp(n, name) == 0) {
      *forced_name = n;
      return 0;
    }
  }
  return mimo_api_fail(e, 400, "tool_choice", "tool_choice.name: tool '%s' is not in 'tools'", name);
}

/* thinking {type: enabled, budget_tokens} | {type: disabled} -> enable_thinking;
 * absent: the template's default. *explicit_on is set for enabled. */
static int conv_thinking(const json_t *root, json_t *kwargs, bool *explicit_on, long *budget_out, mimo_api_err *e) {
  json_t *th = json_object_get(root, "thinking");
  *explicit_on = false;
  *budget_out = -1;
  if (!th || json_is_null(th))
    return 0;
  const char *type = json_string_value(json_object_get(th, "type"));
  if (!json_is_object(th) || !type)
    return mimo_api_fail(e, 400, "thinking", "thinking: expected an object with a string 'type'");
  if (strcmp(type, "disabled") == 0)
    return json_object_set_new(kwargs, "enable_thinking", json_false()) ? oom(e) : 0;
  if (strcmp(type, "enabled") != 0 && strcmp(type, "adaptive") != 0)
    return mimo_api_fail(e, 400, "thinking", "thinking.type: expected 'enabled' or 'disabled'");
  long budget = 0;
  if (strcmp(type, "enabled") == 0) {
    if (!json_object_get(th, "budget_tokens"))
      return mimo_api_fail(e, 400, "thinking", "thinking.budget_tokens: Field required");
    if (mimo_api_get_int(th, "budget_tokens", 1, 1L << 30, &budget, e))
      return -1;
    *budget_out = budget;
  }
  *explicit_on = true;
  return json_object_set_new(kwargs, "enable_thinking", json_true()) ? oom(e) : 0;
}

static int conv_sampling(mimo_server *s, const json_t *root, mimo_sampling_params *sp, mimo_api_err *e) {
  mimo_sampling_defaults(sp);
  double temp = s->gen.temperature, top_p = s->gen.top_p;
  long top_k = s->gen.top_k;
  if (mimo_api_get_num(root, "temperature", 0, 1, &temp, e) || mimo_api_get_num(root, "top_p", 1e-9, 1, &top_p, e) ||
      mimo_api_get_int(root, "top_k", 0, 1L << 30, &top_k, e))
    return -1;
  sp->temperature = (float)temp;
  sp->top_p = (float)top_p;
  sp->top_k = top_k <= 0 ? 0 : (int)top_k;
  sp->min_p = (float)s->gen.min_p;
  sp->repetition_penalty = (float)s->gen.repetition_penalty;
  sp->vocab_limit = s->vocab_limit;
  sp->seed = mimo_server_new_seed(s);
  return 0;
}

static int conv_stop(const json_t *root, mimo_anth_req *r, mimo_api_err *e) {
  json_t *st = json_object_get(root, "stop_sequences");
  if (!st || json_is_null(st))
    return 0;
  if (!json_is_array(st))
    return mimo_api_fail(e, 400, "stop_sequences", "stop_sequences: expected a list of strings");
  return mimo_api_get_strs(root, "stop_sequences", MAX_STOP, &r->stop, &r->n_stop, e);
}

int mimo_anthropic_parse(mimo_server *s, const json_t *root, bool count_only, mimo_anth_req *r, mimo_api_err *e) {
  memset(r, 0, sizeof *r);
  const char *model = NULL;
  if (mimo_api_get_str(root, "model", &model, e))
    return -1;
  if (!model)
    return mimo_api_fail(e, 400, "model", "model: Field required");
  if (!mimo_server_has_model(s, model))
    return mimo_api_fail(e, 404, "model", "model: %s", model);
  r->model = model;
  long max_tokens = 0;
  bool stream = false;
  if (!count_only) {
    if (!json_object_get(root, "max_tokens") || json_is_null(json_object_get(root, "max_tokens")))
      return mimo_api_fail(e, 400, "max_tokens", "max_tokens: Field required");
    if (mimo_api_get_int(root, "max_tokens", 1, 1L << 30, &max_tokens, e) ||
        mimo_api_get_bool(root, "stream", &stream, e) || conv_stop(root, r, e) ||
        conv_sampling(s, root, &r->spec.sp, e))
      return -1;
    json_t *md = json_object_get(root, "metadata");
    if (md && !json_is_null(md) && !json_is_object(md))
      return mimo_api_fail(e, 400, "metadata", "metadata: expected an object");
  }
  r->stream = stream;
  const img_ctx ic = {s, &r->images, !count_only};
  if (conv_messages(&ic, root, &r->messages, e) || conv_tools(json_object_get(root, "tools"), &r->tools, e))
    return -1;
  if (r->tools && !json_array_size(r->tools)) {
    json_decref(r->tools);
    r->tools = NULL;
  }
  bool parse_calls, think_on;
  const char *named;
  if (!(r->kwargs = json_object()))
    return oom(e);
  bool one_call;
  long think_budget;
  if (conv_tool_choice(root, r->tools, &parse_calls, &r->forced_call, &named, &one_call, e) ||
      conv_thinking(root, r->kwargs, &think_on, &think_budget, e))
    return -1;
  if (s->default_kwargs && json_object_update_missing(r->kwargs, s->default_kwargs)) /* --default-chat-template-kwargs */
    return oom(e);
  if (r->forced_call) {
    /* the forced call opens the turn, so the template's empty think block goes first (Anthropic refuses the mix) */
    if (think_on)
      return mimo_api_fail(e, 400, "thinking", "thinking may not be enabled when tool_choice forces tool use");
    json_object_set_new(r->kwargs, "enable_thinking", json_false());
  }
  json_t *et = json_object_get(r->kwargs, "enable_thinking");
  bool thinking = !(et && json_is_false(et));
  /* A final assistant message is a prefill: the answer continues it (and so is not in thinking mode). */
  const size_t nm = json_array_size(r->messages);
  const char *last_role = nm ? json_string_value(json_object_get(json_array_get(r->messages, nm - 1), "role")) : NULL;
  const bool prefill = last_role && !strcmp(last_role, "assistant") &&
                       !json_object_get(json_array_get(r->messages, nm - 1), "tool_calls");
  if (prefill) {
    if (r->forced_call)
      return mimo_api_fail(e, 400, "messages", "a final assistant message (prefill) cannot be combined with a forced "
                           "tool_choice");
    thinking = false;
  }
  if (mimo_api_render(s, r->messages, r->tools, r->kwargs, prefill ? MIMO_RENDER_CONTINUE : MIMO_RENDER_GEN_PROMPT,
                      &r->prompt, &r->n_prompt, NULL, e) ||
      mimo_api_images_expand(s, &r->images, &r->prompt, &r->n_prompt, e))
    return -1;
  if (count_only)
    return 0;
  if (r->n_prompt >= s->max_model_len)
    return mimo_api_fail(e, 400, "messages", "prompt is too long: %d tokens > %d maximum", r->n_prompt,
                         s->max_model_len - 1);
  /* Anthropic clients ask for large budgets; the context bounds them */
  if (max_tokens > (long)s->max_model_len - r->n_prompt)
    max_tokens = (long)s->max_model_len - r->n_prompt;
  if (r->forced_call) {
    if (mimo_api_forced_call_ids(s, named, &r->forced, &r->n_forced, e) ||
        mimo_api_tool_grammar(r->tools, named, named || one_call ? 1 : 0, NULL, &r->grammar, e))
      return -1;
  }
  mimo_gen_spec *g = &r->spec;
  g->prompt = r->prompt;
  g->n_prompt = r->n_prompt;
  g->n = 1;
  g->max_tokens = (int)max_tokens;
  g->stop = r->stop;
  g->n_stop = r->n_stop;
  g->skip_special = true;
  g->parse_reasoning = true;
  g->thinking = thinking;
  g->tools = parse_calls ? r->tools : NULL;
  g->max_tool_calls = one_call ? 1 : 0;
  g->forced = r->forced;
  g->n_forced = r->n_forced;
  g->grammar = r->grammar;
  g->grammar_after = -1;
  /* thinking.budget_tokens: the reasoning ends after that many tokens at most (its </think> is then forced) */
  g->think_end = mimo_tok_token_id(s->tok, "</think>");
  g->think_budget = thinking && g->think_end >= 0 ? (int)think_budget : -1;
  g->embeds = r->images.runs;
  g->n_embeds = r->images.n;
  return 0;
}
