/* Responses API requests (responses.h): input items, tools, tool_choice, text.format and reasoning turned into the
 * chat completions body that means the same; previous_response_id's conversation from the store; the store. */
#include "server/responses.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "server/server.h"

void mimo_resp_req_free(mimo_resp_req *r) {
  mimo_oai_req_free(&r->oai);
  json_decref(r->chat);
  json_decref(r->history);
  json_decref(r->echo);
  json_decref(r->items);
  memset(r, 0, sizeof *r);
}

static int oom(mimo_api_err *e) { return mimo_api_fail(e, 500, NULL, "out of memory"); }

/* A string member, required or not (NULL when absent); a 400 naming where when it is there but not a string. */
static int str_of(const json_t *o, const char *k, bool required, const char *where, const char **out,
                  mimo_api_err *e) {
  const json_t *v = json_object_get(o, k);
  *out = json_string_value(v);
  if ((v && !json_is_null(v) && !*out) || (required && !*out))
    return mimo_api_fail(e, 400, where, "%s.%s: %s", where, k, required && !v ? "required" : "expected a string");
  return 0;
}

/* A message item's content as chat content: a string, or parts (text, image_url). An assistant's is its text. */
static int conv_content(const json_t *c, const char *where, bool assistant, json_t **out, mimo_api_err *e) {
  *out = NULL;
  if (json_is_string(c)) {
    *out = json_copy((json_t *)c);
    return *out ? 0 : oom(e);
  }
  if (!json_is_array(c))
    return mimo_api_fail(e, 400, where, "%s.content: expected a string or a list of content parts", where);
  json_t *parts = json_array();
  mimo_sbuf text = {0};
  size_t i;
  json_t *p;
  int rc = parts ? 0 : oom(e);
  json_array_foreach(c, i, p) {
    if (rc)
      break;
    char w[96];
    snprintf(w, sizeof w, "%s.content[%zu]", where, i);
    const char *type = json_string_value(json_object_get(p, "type")), *t = NULL;
    if (!type) {
      rc = mimo_api_fail(e, 400, w, "%s.type: required", w);
    } else if (!strcmp(type, "input_text") || !strcmp(type, "output_text") || !strcmp(type, "text") ||
               !strcmp(type, "refusal")) {
      rc = str_of(p, strcmp(type, "refusal") ? "text" : "refusal", true, w, &t, e);
      if (!rc && assistant)
        mimo_sbuf_puts(&text, t);
      else if (!rc)
        json_array_append_new(parts, json_pack("{s:s,s:s}", "type", "text", "text", t));
    } else if (!strcmp(type, "input_image") && !assistant) {
      const char *url = NULL;
      if (json_object_get(p, "file_id") && !json_is_null(json_object_get(p, "file_id")))
        rc = mimo_api_fail(e, 400, w, "%s.file_id: files are not supported; give image_url (a data: or http(s) URL)",
                           w);
      else if (!(rc = str_of(p, "image_url", true, w, &url, e)))
        json_array_append_new(parts, json_pack("{s:s,s:{s:s}}", "type", "image_url", "image_url", "url", url));
    } else {
      rc = mimo_api_fail(e, 400, w, "%s: content of type '%s' is not supported%s", w, type,
                         assistant ? " in an assistant message" : " (input_text and input_image are)");
    }
  }
  if (!rc && assistant)
    *out = json_stringn(text.p ? text.p : "", text.len);
  else if (!rc)
    *out = json_incref(parts);
  json_decref(parts);
  mimo_sbuf_free(&text);
  return rc ? rc : *out ? 0 : oom(e);
}

/* function_call_output's output: a string, or text parts joined. */
static int conv_output(const json_t *o, const char *where, json_t **out, mimo_api_err *e) {
  if (json_is_string(o)) {
    *out = json_copy((json_t *)o);
    return *out ? 0 : oom(e);
  }
  return conv_content(o, where, true, out, e); /* (joined like an assistant's text) */
}

/* The items of `input` appended to msgs as chat messages. */
static int conv_input(const json_t *input, json_t *msgs, mimo_api_err *e) {
  if (json_is_string(input)) {
    json_t *m = json_pack("{s:s,s:O}", "role", "user", "content", input);
    return m && !json_array_append_new(msgs, m) ? 0 : oom(e);
  }
  if (!json_is_array(input))
    return mimo_api_fail(e, 400, "input", "input: expected a string or a list of items");
  mimo_sbuf reasoning = {0}; /* a reasoning item's text, for the assistant message that follows it */
  size_t i;
  json_t *it;
  int rc = 0;
  json_array_foreach(input, i, it) {
    char w[48];
    snprintf(w, sizeof w, "input[%zu]", i);
    if (!json_is_object(it)) {
      rc = mimo_api_fail(e, 400, w, "%s: expected an object", w);
      break;
    }
    const char *type = NULL, *role = NULL;
    if ((rc = str_of(it, "type", false, w, &type, e)))
      break;
    json_t *last = json_array_size(msgs) ? json_array_get(msgs, json_array_size(msgs) - 1) : NULL;
    const bool last_assistant = last && !strcmp(json_string_value(json_object_get(last, "role")), "assistant");
    if (!type || !strcmp(type, "message")) {
      if ((rc = str_of(it, "role", true, w, &role, e)))
        break;
      const bool assistant = !strcmp(role, "assistant");
      if (!assistant && strcmp(role, "user") && strcmp(role, "system") && strcmp(role, "developer")) {
        rc = mimo_api_fail(e, 400, w, "%s.role: '%s' is not one of user, system, developer, assistant", w, role);
        break;
      }
      json_t *content = NULL;
      if ((rc = conv_content(json_object_get(it, "content"), w, assistant, &content, e)))
        break;
      json_t *m = json_pack("{s:s,s:o}", "role", role, "content", content);
      if (m && assistant && reasoning.len) {
        json_object_set_new(m, "reasoning_content", json_stringn(reasoning.p, reasoning.len));
        reasoning.len = 0;
      }
      if (!m || json_array_append_new(msgs, m)) {
        rc = oom(e);
        break;
      }
    } else if (!strcmp(type, "function_call")) {
      const char *call_id, *name, *args;
      if ((rc = str_of(it, "call_id", true, w, &call_id, e)) || (rc = str_of(it, "name", true, w, &name, e)) ||
          (rc = str_of(it, "arguments", true, w, &args, e)))
        break;
      json_t *call = json_pack("{s:s,s:s,s:{s:s,s:s}}", "id", call_id, "type", "function", "function", "name", name,
                               "arguments", args);
      json_t *m = last;
      if (!last_assistant || reasoning.len) { /* a new assistant turn (its reasoning first) */
        m = json_pack("{s:s,s:s}", "role", "assistant", "content", "");
        if (m && reasoning.len)
          json_object_set_new(m, "reasoning_content", json_stringn(reasoning.p, reasoning.len));
        reasoning.len = 0;
        if (m)
          json_array_append_new(msgs, m);
      }
      json_t *calls = m ? json_object_get(m, "tool_calls") : NULL;
      if (m && !calls)
        json_object_set_new(m, "tool_calls", calls = json_array());
      if (!call || !calls || json_array_append_new(calls, call)) {
        rc = oom(e);
        break;
      }
    } else if (!strcmp(type, "function_call_output")) {
      const char *call_id;
      json_t *out = NULL;
      if ((rc = str_of(it, "call_id", true, w, &call_id, e)))
        break;
      if (!json_object_get(it, "output")) {
        rc = mimo_api_fail(e, 400, w, "%s.output: required", w);
        break;
      }
      if ((rc = conv_output(json_object_get(it, "output"), w, &out, e)))
        break;
      json_t *m = json_pack("{s:s,s:s,s:o}", "role", "tool", "tool_call_id", call_id, "content", out);
      if (!m || json_array_append_new(msgs, m)) {
        rc = oom(e);
        break;
      }
    } else if (!strcmp(type, "reasoning")) {
      /* its text (reasoning_text parts; else the summary), for the assistant turn it belongs to */
      const json_t *parts = json_object_get(it, "content");
      if (!json_array_size(parts))
        parts = json_object_get(it, "summary");
      size_t k;
      json_t *p;
      json_array_foreach(parts, k, p) {
        const char *t = json_string_value(json_object_get(p, "text"));
        if (t) {
          if (reasoning.len)
            mimo_sbuf_puts(&reasoning, "\n");
          mimo_sbuf_puts(&reasoning, t);
        }
      }
    } else {
      rc = mimo_api_fail(e, 400, w, "%s.type: '%s' is not supported (message, function_call, function_call_output "
                         "and reasoning items are)", w, type);
      break;
    }
  }
  mimo_sbuf_free(&reasoning);
  return rc;
}

/* Function tools in the chat form; other kinds are refused. */
static int conv_tools(const json_t *tools, json_t **out, mimo_api_err *e) {
  *out = NULL;
  if (!tools || json_is_null(tools))
    return 0;
  if (!json_is_array(tools))
    return mimo_api_fail(e, 400, "tools", "tools: expected a list");
  if (!(*out = json_array()))
    return oom(e);
  size_t i;
  json_t *t;
  json_array_foreach(tools, i, t) {
    char w[48];
    snprintf(w, sizeof w, "tools[%zu]", i);
    const char *type = json_string_value(json_object_get(t, "type")), *name;
    if (!type || strcmp(type, "function"))
      return mimo_api_fail(e, 400, w, "%s.type: '%s' is not supported (function tools are; the server runs no "
                           "built-in tools)", w, type ? type : "(none)");
    if (str_of(t, "name", true, w, &name, e))
      return -1;
    json_t *f = json_pack("{s:s}", "name", name);
    const char *keys[] = {"description", "parameters", "strict"};
    for (int k = 0; f && k < 3; k++) {
      json_t *v = json_object_get(t, keys[k]);
      if (v && !json_is_null(v))
        json_object_set(f, keys[k], v);
    }
    if (!f || json_array_append_new(*out, json_pack("{s:s,s:o}", "type", "function", "function", f)))
      return oom(e);
  }
  return 0;
}

static int conv_tool_choice(const json_t *tc, json_t *chat, mimo_api_err *e) {
  if (!tc || json_is_null(tc))
    return 0;
  if (json_is_string(tc)) {
    json_object_set(chat, "tool_choice", (json_t *)tc);
    return 0;
  }
  const char *type = json_string_value(json_object_get(tc, "type")), *name = NULL;
  if (!json_is_object(tc) || !type || strcmp(type, "function") || str_of(tc, "name", true, "tool_choice", &name, e))
    return e->status ? -1
                     : mimo_api_fail(e, 400, "tool_choice", "tool_choice: 'auto', 'none', 'required' or "
                                     "{\"type\": \"function\", \"name\": ...}");
  json_object_set_new(chat, "tool_choice", json_pack("{s:s,s:{s:s}}", "type", "function", "function", "name", name));
  return 0;
}

/* text.format -> response_format. */
static int conv_text(const json_t *text, json_t *chat, mimo_api_err *e) {
  const json_t *f = json_object_get(text, "format");
  if (!f || json_is_null(f))
    return 0;
  const char *type = json_string_value(json_object_get(f, "type"));
  if (!type)
    return mimo_api_fail(e, 400, "text.format", "text.format.type: required");
  if (!strcmp(type, "text"))
    return 0;
  if (!strcmp(type, "json_object")) {
    json_object_set_new(chat, "response_format", json_pack("{s:s}", "type", "json_object"));
    return 0;
  }
  if (strcmp(type, "json_schema"))
    return mimo_api_fail(e, 400, "text.format", "text.format.type: '%s' is not one of text, json_object, json_schema",
                         type);
  json_t *js = json_object();
  const char *keys[] = {"name", "schema", "strict", "description"};
  for (int k = 0; js && k < 4; k++) {
    json_t *v = json_object_get(f, keys[k]);
    if (v && !json_is_null(v))
      json_object_set(js, keys[k], v);
  }
  json_object_set_new(chat, "response_format", json_pack("{s:s,s:o}", "type", "json_schema", "json_schema", js));
  return 0;
}

/* Fields a Response object repeats, with the API's defaults. */
static json_t *echo_fields(const json_t *root) {
  json_t *o = json_object();
  static const char *keys[] = {"instructions", "max_output_tokens", "previous_response_id", "reasoning", "temperature",
                               "top_p", "metadata", "user", "text", "tool_choice", "tools", "parallel_tool_calls",
                               "truncation"};
  for (size_t k = 0; o && k < sizeof keys / sizeof *keys; k++) {
    json_t *v = json_object_get(root, keys[k]);
    json_object_set(o, keys[k], v ? v : json_null());
  }
  if (!o)
    return NULL;
  if (json_is_null(json_object_get(o, "text")))
    json_object_set_new(o, "text", json_pack("{s:{s:s}}", "format", "type", "text"));
  if (json_is_null(json_object_get(o, "tool_choice")))
    json_object_set_new(o, "tool_choice", json_string("auto"));
  if (json_is_null(json_object_get(o, "tools")))
    json_object_set_new(o, "tools", json_array());
  if (json_is_null(json_object_get(o, "parallel_tool_calls")))
    json_object_set_new(o, "parallel_tool_calls", json_true());
  if (json_is_null(json_object_get(o, "truncation")))
    json_object_set_new(o, "truncation", json_string("disabled"));
  if (json_is_null(json_object_get(o, "metadata")))
    json_object_set_new(o, "metadata", json_object());
  return o;
}

/* The request's input as items with ids, as GET /v1/responses/{id}/input_items lists them: a string is one user
 * message, a message's string content one input_text part (output_text for the assistant's). Called after
 * conv_input accepted the input. */
static json_t *input_items_of(const json_t *input) {
  json_t *out = json_array(),
         *list = json_is_string(input) ? json_pack("[{s:s,s:O}]", "role", "user", "content", input)
                                       : json_incref((json_t *)input);
  size_t i;
  json_t *it;
  json_array_foreach(list, i, it) {
    json_t *x = json_is_object(it) ? json_deep_copy(it) : NULL;
    if (!x || !out)
      continue;
    const char *type = json_string_value(json_object_get(x, "type"));
    if (!type) {
      json_object_set_new(x, "type", json_string("message"));
      type = "message";
    }
    const bool msg = !strcmp(type, "message");
    const char *role = json_string_value(json_object_get(x, "role"));
    json_t *c = json_object_get(x, "content");
    if (msg && json_is_string(c))
      json_object_set_new(x, "content", json_pack("[{s:s,s:O}]", "type",
                                                   role && !strcmp(role, "assistant") ? "output_text" : "input_text",
                                                   "text", c));
    if (msg && !json_object_get(x, "status"))
      json_object_set_new(x, "status", json_string("completed"));
    if (!json_is_string(json_object_get(x, "id"))) {
      char id[64];
      mimo_api_new_id(msg ? "msg_" : "item_", id, sizeof id);
      json_object_set_new(x, "id", json_string(id));
    }
    json_array_append_new(out, x);
  }
  json_decref(list);
  return out;
}

int mimo_responses_parse(mimo_server *s, const json_t *root, mimo_resp_req *r, mimo_api_err *e) {
  memset(r, 0, sizeof *r);
  r->store = true;
  const char *instructions = NULL, *prev = NULL;
  bool background = false;
  if (mimo_api_get_str(root, "model", &r->model, e) || mimo_api_get_bool(root, "stream", &r->stream, e) ||
      mimo_api_get_bool(root, "store", &r->store, e) || mimo_api_get_bool(root, "background", &background, e) ||
      str_of(root, "instructions", false, "instructions", &instructions, e) ||
      str_of(root, "previous_response_id", false, "previous_response_id", &prev, e))
    return -1;
  if (!r->model)
    return mimo_api_fail(e, 400, "model", "model: required");
  if (background)
    return mimo_api_fail(e, 400, "background", "background responses are not supported");
  static const char *refused[] = {"conversation", "prompt"};
  for (int k = 0; k < 2; k++)
    if (json_object_get(root, refused[k]) && !json_is_null(json_object_get(root, refused[k])))
      return mimo_api_fail(e, 400, refused[k], "'%s' is not supported (send the input items, or previous_response_id)",
                           refused[k]);
  long top_lp = 0;
  if (mimo_api_get_int(root, "top_logprobs", 0, 20, &top_lp, e))
    return -1;
  if (top_lp > 0)
    return mimo_api_fail(e, 400, "top_logprobs", "top_logprobs is not supported here (chat completions has logprobs)");
  if (!json_object_get(root, "input") || json_is_null(json_object_get(root, "input")))
    return mimo_api_fail(e, 400, "input", "input: required");
  /* the conversation: the previous response's, then this input */
  if (prev) {
    json_t *h = NULL;
    if (!s->responses || !mimo_resp_store_get(s->responses, prev, NULL, &h, NULL))
      return mimo_api_fail(e, 404, "previous_response_id", "Previous response with id '%s' not found.", prev);
    r->history = json_deep_copy(h);
    json_decref(h);
  } else {
    r->history = json_array();
  }
  if (!r->history)
    return oom(e);
  if (conv_input(json_object_get(root, "input"), r->history, e))
    return -1;
  if (!(r->items = input_items_of(json_object_get(root, "input"))))
    return oom(e);
  json_t *msgs = json_array();
  if (!msgs || (instructions && json_array_append_new(msgs, json_pack("{s:s,s:s}", "role", "system", "content",
                                                                       instructions))) ||
      json_array_extend(msgs, r->history)) {
    json_decref(msgs);
    return oom(e);
  }
  r->chat = json_pack("{s:s,s:o,s:b}", "model", r->model, "messages", msgs, "stream", 0);
  if (!r->chat || !(r->echo = echo_fields(root)))
    return oom(e);
  json_t *tools = NULL;
  if (conv_tools(json_object_get(root, "tools"), &tools, e)) {
    json_decref(tools);
    return -1;
  }
  if (tools && json_array_size(tools))
    json_object_set(r->chat, "tools", tools);
  json_decref(tools);
  if (conv_tool_choice(json_object_get(root, "tool_choice"), r->chat, e) ||
      conv_text(json_object_get(root, "text"), r->chat, e))
    return -1;
  const json_t *mot = json_object_get(root, "max_output_tokens");
  if (mot && !json_is_null(mot))
    json_object_set(r->chat, "max_tokens", (json_t *)mot);
  /* sampling, and vLLM's extra fields, as chat completions takes them */
  static const char *same[] = {"parallel_tool_calls", "temperature", "top_p", "top_k", "min_p", "repetition_penalty",
                               "presence_penalty",
                               "frequency_penalty", "seed", "stop", "stop_token_ids", "logit_bias", "min_tokens",
                               "ignore_eos", "skip_special_tokens", "chat_template_kwargs", "cache_salt"};
  for (size_t k = 0; k < sizeof same / sizeof *same; k++) {
    json_t *v = json_object_get(root, same[k]);
    if (v && !json_is_null(v))
      json_object_set(r->chat, same[k], v);
  }
  const json_t *effort = json_object_get(json_object_get(root, "reasoning"), "effort");
  if (json_is_string(effort) && !strcmp(json_string_value(effort), "none")) /* MiMo thinks or does not */
    json_object_set_new(r->chat, "reasoning_effort", json_string("none"));
  return mimo_openai_parse_ex(s, r->chat, true, MIMO_OAI_STRICT_DEFAULT, &r->oai, e); /* functions: strict by default */
}

/* ---- the store ---- */

typedef struct {
  char id[64];
  json_t *response, *history, *items;
} stored;

struct mimo_resp_store {
  pthread_mutex_t mu;
  stored *e; /* a ring: the oldest at head */
  int max, n, head;
};

mimo_resp_store *mimo_resp_store_new(int max) {
  mimo_resp_store *st = calloc(1, sizeof *st);
  if (!st)
    return NULL;
  st->max = max > 0 ? max : 0;
  st->e = calloc((size_t)(st->max ? st->max : 1), sizeof *st->e);
  if (!st->e) {
    free(st);
    return NULL;
  }
  pthread_mutex_init(&st->mu, NULL);
  return st;
}

void mimo_resp_store_free(mimo_resp_store *st) {
  if (!st)
    return;
  for (int i = 0; i < st->n; i++) {
    stored *x = &st->e[(st->head + i) % st->max];
    json_decref(x->response);
    json_decref(x->history);
    json_decref(x->items);
  }
  pthread_mutex_destroy(&st->mu);
  free(st->e);
  free(st);
}

void mimo_resp_store_put(mimo_resp_store *st, const char *id, json_t *response, json_t *history, json_t *items) {
  if (!st || !st->max)
    return;
  pthread_mutex_lock(&st->mu);
  if (st->n == st->max) { /* the oldest goes */
    stored *old = &st->e[st->head];
    json_decref(old->response);
    json_decref(old->history);
    json_decref(old->items);
    st->head = (st->head + 1) % st->max;
    st->n--;
  }
  stored *x = &st->e[(st->head + st->n++) % st->max];
  snprintf(x->id, sizeof x->id, "%s", id);
  x->response = json_incref(response);
  x->history = json_incref(history);
  x->items = json_incref(items);
  pthread_mutex_unlock(&st->mu);
}

static int find(const mimo_resp_store *st, const char *id) {
  for (int i = 0; i < st->n; i++)
    if (!strcmp(st->e[(st->head + i) % st->max].id, id))
      return (st->head + i) % st->max;
  return -1;
}

bool mimo_resp_store_get(mimo_resp_store *st, const char *id, json_t **response, json_t **history,
                         json_t **items) {
  if (!st || !st->max)
    return false;
  pthread_mutex_lock(&st->mu);
  const int at = find(st, id);
  if (at >= 0) {
    if (response)
      *response = json_incref(st->e[at].response);
    if (history)
      *history = json_incref(st->e[at].history);
    if (items)
      *items = json_incref(st->e[at].items);
  }
  pthread_mutex_unlock(&st->mu);
  return at >= 0;
}

bool mimo_resp_store_delete(mimo_resp_store *st, const char *id) {
  if (!st || !st->max)
    return false;
  pthread_mutex_lock(&st->mu);
  int at = find(st, id);
  if (at >= 0) { /* the later ones move up one place */
    json_decref(st->e[at].response);
    json_decref(st->e[at].history);
    json_decref(st->e[at].items);
    for (int k = (at - st->head + st->max) % st->max; k + 1 < st->n; k++)
      st->e[(st->head + k) % st->max] = st->e[(st->head + k + 1) % st->max];
    st->n--;
  }
  pthread_mutex_unlock(&st->mu);
  return at >= 0;
}
