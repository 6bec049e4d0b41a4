/* mimo render: a chat (messages JSON) -> the prompt text the model's chat template makes. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/args.h"
#include "cli/commands.h"
#include "text/chat_template.h"

static json_t *load_json_file(const char *path, const char *what) {
  json_error_t e;
  json_t *j = json_load_file(path, JSON_DECODE_ANY, &e);
  if (!j) fprintf(stderr, "mimo render: %s %s: line %d: %s\n", what, path, e.line, e.text);
  return j;
}

static void print_line(const char *key, const char *text) {
  json_t *o = json_object();
  json_t *s = json_stringn(text, strlen(text));
  if (!s) s = json_string("output is not valid UTF-8");
  json_object_set_new(o, s && strcmp(key, "text") == 0 ? key : "error", s);
  char *d = json_dumps(o, JSON_COMPACT);
  if (d) printf("%s\n", d);
  free(d);
  json_decref(o);
  fflush(stdout);
}

static int run_jsonl(const mimo_tmpl *t) {
  char *line = NULL;
  size_t cap = 0;
  ssize_t n;
  int rc = 0;
  while ((n = getline(&line, &cap, stdin)) > 0) {
    if (n == 1 && line[0] == '\n') continue;
    json_error_t e;
    json_t *req = json_loadb(line, (size_t)n, 0, &e);
    char msg[400];
    if (!req || !json_is_object(req)) {
      snprintf(msg, sizeof msg, "bad request line: %s", req ? "not a JSON object" : e.text);
      print_line("error", msg);
      json_decref(req);
      rc = 1;
      continue;
    }
    json_t *agp = json_object_get(req, "add_generation_prompt");
    char *out = NULL;
    mimo_status st = mimo_tmpl_render(t, json_object_get(req, "messages"), json_object_get(req, "tools"),
                                      agp ? json_is_true(agp) : 1, json_object_get(req, "kwargs"), &out);
    if (st == MIMO_OK) print_line("text", out);
    else print_line("error", mimo_errmsg());
    free(out);
    json_decref(req);
  }
  free(line);
  return rc;
}

int mimo_cmd_render(int argc, char **argv) {
  mimo_arg a[] = {{"model", 1, "model dir with tokenizer_config.json and/or chat_template.jinja", 0},
                  {"messages", 1, "JSON file: array of messages", 0},
                  {"tools", 1, "JSON file: array of tool schemas", 0},
                  {"no-generation-prompt", 0, "do not add the assistant generation prompt", 0},
                  {"kwargs", 1, "JSON object of extra template variables (e.g. {\"enable_thinking\":false})", 0},
                  {"chat-template", 1, "template file to use instead of the model's", 0},
                  {"jsonl", 0, "stdin lines {messages,tools,add_generation_prompt,kwargs} -> {text}|{error} lines", 0}};
  int n = sizeof a / sizeof *a;
  int rc = mimo_args_parse(argc, argv, a, n,
                           "--model DIR --messages FILE.json [--tools FILE.json] [--no-generation-prompt] "
                           "[--kwargs JSON] [--chat-template FILE] | --model DIR --jsonl");
  if (rc) return rc == 3 ? 0 : rc;
  const char *model = mimo_arg_str(a, n, "model", NULL), *msgs = mimo_arg_str(a, n, "messages", NULL);
  bool jsonl = mimo_arg_str(a, n, "jsonl", NULL) != NULL;
  if (!model || (!msgs && !jsonl)) {
    fprintf(stderr, "mimo render: need --model DIR and --messages FILE or --jsonl (see --help)\n");
    return 2;
  }
  mimo_tmpl t;
  if (mimo_tmpl_load(model, mimo_arg_str(a, n, "chat-template", NULL), &t) != MIMO_OK) {
    fprintf(stderr, "mimo render: %s\n", mimo_errmsg());
    return 1;
  }
  if (jsonl) {
    rc = run_jsonl(&t);
    mimo_tmpl_free(&t);
    return rc;
  }
  json_t *messages = load_json_file(msgs, "messages"), *tools = NULL, *kwargs = NULL;
  const char *tp = mimo_arg_str(a, n, "tools", NULL), *kw = mimo_arg_str(a, n, "kwargs", NULL);
  rc = 0;
  if (!messages) rc = 1;
  if (!rc && tp && !(tools = load_json_file(tp, "tools"))) rc = 1;
  if (!rc && kw) {
    json_error_t e;
    kwargs = json_loads(kw, 0, &e);
    if (!json_is_object(kwargs)) {
      fprintf(stderr, "mimo render: --kwargs must be a JSON object%s%s\n", kwargs ? "" : ": ", kwargs ? "" : e.text);
      rc = 2;
    }
  }
  if (!rc) {
    char *out = NULL;
    if (mimo_tmpl_render(&t, messages, tools, mimo_arg_str(a, n, "no-generation-prompt", NULL) == NULL, kwargs, &out) !=
        MIMO_OK) {
      fprintf(stderr, "mimo render: %s\n", mimo_errmsg());
      rc = 1;
    } else {
      fwrite(out, 1, strlen(out), stdout);
    }
    free(out);
  }
  json_decref(messages);
  json_decref(tools);
  json_decref(kwargs);
  mimo_tmpl_free(&t);
  return rc;
}
