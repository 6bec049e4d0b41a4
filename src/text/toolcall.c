#include "text/toolcall.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "text/toolcall_internal.h"

static const char T_CALL[] = "<tool_call>", T_CALL_END[] = "</tool_call>", T_FUNC[] = "<function=",
                  T_FUNC_END[] = "</function>", T_PARAM[] = "<parameter=", T_PARAM_END[] = "</parameter>";

enum { OUT, OPENED, NAME, IN_FUNC, PNAME, PVALUE, AFTER_FUNC };

typedef struct {
  char *p;
  size_t n, cap;
} buf;

static void put(buf *b, const char *s, size_t n) {
  if (b->n + n + 1 > b->cap) {
    size_t cap = (b->n + n + 1) * 2;
    char *p = realloc(b->p, cap);
    if (!p)
      return; /* out of memory: drop, never crash */
    b->p = p;
    b->cap = cap;
  }
  memcpy(b->p + b->n, s, n);
  b->n += n;
  b->p[b->n] = 0;
}

static void consume(buf *b, size_t k) {
  memmove(b->p, b->p + k, b->n - k);
  b->n -= k;
  if (b->p)
    b->p[b->n] = 0;
}

struct mimo_toolcall {
  const json_t *tools;
  mimo_toolcall_sink sink;
  mimo_rng rng;
  int state, index, n_params, type;
  buf in;    /* unprocessed input */
  buf raw;   /* text since `<tool_call>` (malformed calls go out as content) */
  buf name;  /* function or parameter name being read */
  buf value; /* non-string value being collected */
  buf ws;    /* whitespace after a call, released only if more text follows */
  buf pend;  /* string-value bytes not yet escaped (an unfinished UTF-8 sequence) */
  char fname[256];
  int value_started; /* leading newline handled */
  int held_newline;  /* a string value's last "\n", held until we know it is not the trailing one */
};

mimo_toolcall *mimo_toolcall_new(const json_t *tools, uint64_t seed, const mimo_toolcall_sink *sink) {
  mimo_toolcall *p = calloc(1, sizeof *p);
  if (!p)
    return NULL;
  p->tools = tools;
  p->sink = *sink;
  mimo_rng_seed(&p->rng, seed);
  p->index = -1;
  return p;
}

void mimo_toolcall_free(mimo_toolcall *p) {
  if (!p)
    return;
  free(p->in.p);
  free(p->raw.p);
  free(p->name.p);
  free(p->value.p);
  free(p->ws.p);
  free(p->pend.p);
  free(p);
}

int mimo_toolcall_count(const mimo_toolcall *p) { return p->index + 1; }

static int is_ws(char c) { return c == ' ' || c == '\n' || c == '\r' || c == '\t'; }

/* After a call, trailing whitespace is held back: it reaches the client only
 * when more text follows it, so a turn of calls has no stray "\n" content. */
static void emit_content(mimo_toolcall *p, const char *s, size_t n) {
  if (!n || !p->sink.content)
    return;
  if (p->index >= 0) { /* emit up to the last non-space byte; hold the trailing run */
    size_t e = n;
    while (e > 0 && is_ws(s[e - 1]))
      e--;
    if (e == 0) {
      put(&p->ws, s, n);
      return;
    }
    if (p->ws.n)
      p->sink.content(p->sink.ctx, p->ws.p, p->ws.n);
    p->ws.n = 0;
    p->sink.content(p->sink.ctx, s, e);
    put(&p->ws, s + e, n - e);
    return;
  }
  p->sink.content(p->sink.ctx, s, n);
}

static void emit_args(mimo_toolcall *p, const char *s, size_t n) {
  if (n && p->sink.call_args)
    p->sink.call_args(p->sink.ctx, p->index, s, n);
}

/* Streams string-value bytes JSON-escaped; an incomplete UTF-8 sequence at the end
 * waits for the next piece (final: flushed, invalid bytes become \ufffd). */
static void emit_escaped(mimo_toolcall *p, const char *s, size_t n, int final) {
  put(&p->pend, s, n);
  tbuf o = {0};
  size_t used = tc_esc(&o, p->pend.p ? p->pend.p : "", p->pend.n, final);
  if (o.n)
    emit_args(p, o.p, o.n);
  free(o.p);
  consume(&p->pend, used);
}

static void start_call(mimo_toolcall *p) {
  p->ws.n = 0;
  static const char alnum[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
  char id[32] = "call_";
  for (int i = 0; i < 24; i++)
    id[5 + i] = alnum[mimo_rng_next(&p->rng) % 62];
  id[29] = 0;
  p->index++;
  p->n_params = 0;
  if (p->sink.call_start)
    p->sink.call_start(p->sink.ctx, p->index, id, p->fname);
}

static void end_call(mimo_toolcall *p) {
  emit_args(p, p->n_params ? "}" : "{}", p->n_params ? 1 : 2);
  if (p->sink.call_end)
    p->sink.call_end(p->sink.ctx, p->index);
}

/* Closes the open parameter: the value (without one trailing newline). */
static void close_param(mimo_toolcall *p) {
  if (p->type == VT_STRING) {
    p->held_newline = 0; /* the trailing newline is dropped */
    emit_escaped(p, "", 0, 1);
    emit_args(p, "\"", 1);
  } else {
    size_t n = p->value.n;
    if (n && p->value.p[n - 1] == '\n')
      n--;
    tbuf o = {0};
    tc_convert(&o, p->type, p->value.p ? p->value.p : "", n);
    emit_args(p, o.p ? o.p : "null", o.p ? o.n : 4);
    free(o.p);
    p->value.n = 0;
  }
}

/* Bytes of a string value: stream them, holding back a last "\n" (maybe the trailing one). */
static void string_bytes(mimo_toolcall *p, const char *s, size_t n) {
  if (!n)
    return;
  if (p->held_newline) {
    emit_escaped(p, "\n", 1, 0);
    p->held_newline = 0;
  }
  if (s[n - 1] == '\n') {
    p->held_newline = 1;
    n--;
  }
  emit_escaped(p, s, n, 0);
}

/* Index of tag in s[0..n), or -1; *partial = length of a suffix that may start it. */
static long find_tag(const char *s, size_t n, const char *tag, size_t *partial) {
  size_t t = strlen(tag);
  *partial = 0;
  for (size_t i = 0; i < n; i++) {
    if (s[i] != tag[0])
      continue;
    size_t m = n - i < t ? n - i : t;
    if (memcmp(s + i, tag, m) == 0) {
      if (m == t)
        return (long)i;
      *partial = n - i;
      return -1;
    }
  }
  return -1;
}

/* Malformed call syntax: everything since `<tool_call>` becomes content again. */
static void abandon(mimo_toolcall *p) {
  emit_content(p, p->raw.p, p->raw.n);
  p->raw.n = 0;
  p->state = OUT;
}

/* Consumes k bytes of input that belong to the call syntax. */
static void eat(mimo_toolcall *p, size_t k) {
  if (p->state == OPENED || p->state == NAME)
    put(&p->raw, p->in.p, k);
  consume(&p->in, k);
}

/* Runs the state machine over p->in; returns when more input is needed. */
static void run(mimo_toolcall *p, int final) {
  for (;;) {
    char *s = p->in.p;
    size_t n = p->in.n, part;
    if (!n)
      return;
    long at;
    switch (p->state) {
    case OUT:
      at = find_tag(s, n, T_CALL, &part);
      if (at < 0) {
        size_t keep = final ? 0 : part;
        emit_content(p, s, n - keep);
        consume(&p->in, n - keep);
        return;
      }
      emit_content(p, s, (size_t)at);
      consume(&p->in, (size_t)at);
      p->raw.n = 0;
      p->state = OPENED;
      eat(p, sizeof T_CALL - 1);
      break;
    case OPENED: {
      size_t i = 0;
      while (i < n && is_ws(s[i]))
        i++;
      eat(p, i);
      s = p->in.p;
      n = p->in.n;
      if (!n)
        return;
      size_t lf = sizeof T_FUNC - 1, m = n < lf ? n : lf;
      if (memcmp(s, T_FUNC, m) != 0) {
        abandon(p);
        break;
      }
      if (m < lf)
        return;
      eat(p, lf);
      p->name.n = 0;
      p->state = NAME;
      break;
    }
    case NAME: {
      char *gt = memchr(s, '>', n);
      size_t upto = gt ? (size_t)(gt - s) : n, ok = 0;
      /* a name ends at a control character or '<' (where a tag may begin), as a parameter's does: what was read of
       * the call becomes content and the scan goes on from there, so a tag after it is found whatever pieces the
       * bytes came in (fuzz_toolcall found a long name swallowing a second call when fed in small pieces) */
      while (ok < upto && (unsigned char)s[ok] >= 0x20 && s[ok] != '<')
        ok++;
      if (ok < upto || p->name.n + upto >= sizeof p->fname) {
        abandon(p);
        break;
      }
      put(&p->name, s, upto);
      eat(p, upto);
      if (!gt)
        return;
      eat(p, 1);
      memcpy(p->fname, p->name.p ? p->name.p : "", p->name.n);
      p->fname[p->name.n] = 0;
      p->raw.n = 0;
      start_call(p);
      p->state = IN_FUNC;
      break;
    }
    case IN_FUNC: {
      size_t pp, pf, pc;
      long a = find_tag(s, n, T_PARAM, &pp), b = find_tag(s, n, T_FUNC_END, &pf), c = find_tag(s, n, T_CALL_END, &pc);
      if (c >= 0 && (a < 0 || c < a) && (b < 0 || c < b)) { /* `</function>` missing: the call ends here */
        consume(&p->in, (size_t)c + sizeof T_CALL_END - 1);
        end_call(p);
        p->state = OUT;
        break;
      }
      if (b >= 0 && (a < 0 || b < a)) {
        consume(&p->in, (size_t)b + sizeof T_FUNC_END - 1);
        end_call(p);
        p->state = AFTER_FUNC;
        break;
      }
      if (a < 0) { /* stray text inside the function is skipped */
        size_t keep = pp > pf ? pp : pf;
        keep = keep > pc ? keep : pc;
        consume(&p->in, n - keep);
        if (final)
          p->in.n = 0;
        return;
      }
      consume(&p->in, (size_t)a + sizeof T_PARAM - 1);
      p->name.n = 0;
      p->state = PNAME;
      break;
    }
    case PNAME: {
      char *gt = memchr(s, '>', n);
      size_t upto = gt ? (size_t)(gt - s) : n;
      size_t bad = 0;
      while (bad < upto && (unsigned char)s[bad] >= 0x20 && s[bad] != '<')
        bad++;
      if (bad < upto || p->name.n + upto > 256) { /* control characters, '<' or too long */
        p->state = IN_FUNC; /* not a parameter tag: skipped like other stray text */
        break;
      }
      put(&p->name, s, upto);
      consume(&p->in, upto);
      if (!gt)
        return;
      consume(&p->in, 1);
      const char *key = p->name.p ? p->name.p : "";
      p->type = tc_param_type(tc_find_props(p->tools, p->fname), key, p->name.n);
      tbuf o = {0};
      tc_put(&o, p->n_params ? ", \"" : "{\"", p->n_params ? 3 : 2);
      tc_esc(&o, key, p->name.n, 1);
      tc_put(&o, p->type == VT_STRING ? "\": \"" : "\": ", p->type == VT_STRING ? 4 : 3);
      emit_args(p, o.p ? o.p : "", o.n);
      free(o.p);
      p->pend.n = 0;
      p->n_params++;
      p->value.n = 0;
      p->value_started = 0;
      p->held_newline = 0;
      p->state = PVALUE;
      break;
    }
    case PVALUE: {
      if (!p->value_started) {
        if (s[0] == '\n')
          consume(&p->in, 1);
        p->value_started = 1;
        break;
      }
      at = find_tag(s, n, T_PARAM_END, &part);
      size_t take = at >= 0 ? (size_t)at : n - (final ? 0 : part);
      if (p->type == VT_STRING)
        string_bytes(p, s, take);
      else
        put(&p->value, s, take);
      consume(&p->in, take);
      if (at < 0)
        return;
      consume(&p->in, sizeof T_PARAM_END - 1);
      close_param(p);
      p->state = IN_FUNC;
      break;
    }
    case AFTER_FUNC: {
      size_t i = 0;
      while (i < n && is_ws(s[i]))
        i++;
      consume(&p->in, i);
      s = p->in.p;
      n = p->in.n;
      if (!n)
        return;
      size_t le = sizeof T_CALL_END - 1, m = n < le ? n : le;
      if (memcmp(s, T_CALL_END, m) == 0) {
        if (m < le)
          return;
        consume(&p->in, le);
      }
      p->state = OUT; /* a missing </tool_call> is forgiven */
      break;
    }
    }
  }
}

void mimo_toolcall_feed(mimo_toolcall *p, const char *s, size_t n) {
  if (!n)
    return;
  put(&p->in, s, n);
  run(p, 0);
}

void mimo_toolcall_finish(mimo_toolcall *p) {
  run(p, 1);
  switch (p->state) {
  case OPENED:
  case NAME:
    put(&p->raw, p->in.p ? p->in.p : "", p->in.n);
    p->in.n = 0;
    abandon(p);
    break;
  case PNAME: /* a parameter without a complete name is dropped */
  case IN_FUNC:
    end_call(p);
    break;
  case PVALUE:
    if (p->type == VT_STRING && p->held_newline)
      p->held_newline = 0;
    close_param(p);
    end_call(p);
    break;
  default:
    break;
  }
  p->state = OUT;
}

/* ---- non-streaming ---- */

typedef struct {
  buf content;
  json_t *calls;
  buf args;
} collect;

static void c_content(void *ctx, const char *s, size_t n) { put(&((collect *)ctx)->content, s, n); }
static void c_start(void *ctx, int index, const char *id, const char *name) {
  collect *c = ctx;
  (void)index;
  json_array_append_new(c->calls, json_pack("{s:s,s:s,s:{s:s,s:s}}", "id", id, "type", "function", "function", "name",
                                            name, "arguments", ""));
  c->args.n = 0;
}
static void c_args(void *ctx, int index, const char *s, size_t n) {
  (void)index;
  put(&((collect *)ctx)->args, s, n);
}
static void c_end(void *ctx, int index) {
  collect *c = ctx;
  json_t *f = json_object_get(json_array_get(c->calls, (size_t)index), "function");
  json_object_set_new(f, "arguments", json_stringn(c->args.p ? c->args.p : "", c->args.n));
}

void mimo_toolcall_parse_all(const char *text, size_t n, const json_t *tools, uint64_t seed, char **content,
                             json_t **calls) {
  collect c = {.calls = json_array()};
  mimo_toolcall_sink sink = {c_content, c_start, c_args, c_end, &c};
  mimo_toolcall *p = mimo_toolcall_new(tools, seed, &sink);
  if (p) {
    mimo_toolcall_feed(p, text, n);
    mimo_toolcall_finish(p);
    mimo_toolcall_free(p);
  }
  /* With calls, content is the text around them with trailing whitespace dropped; only-whitespace is none. */
  size_t len = c.content.n;
  if (json_array_size(c.calls))
    while (len && is_ws(c.content.p[len - 1]))
      len--;
  if (len) {
    *content = malloc(len + 1);
    if (*content) {
      memcpy(*content, c.content.p, len);
      (*content)[len] = 0;
    }
  } else {
    *content = NULL;
  }
  free(c.content.p);
  free(c.args.p);
  *calls = c.calls;
}

char *mimo_toolcall_forced_prefix(const char *function_name) {
  static char required[] = "<tool_call>\n<function=";
  if (!function_name)
    return required;
  size_t n = strlen(function_name);
  char *s = malloc(n + 32);
  if (s)
    snprintf(s, n + 32, "<tool_call>\n<function=%s>\n", function_name);
  return s;
}
