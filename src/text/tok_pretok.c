/* Pre-tokeniser: Split (regex or literal, all delimiter behaviours, invert),
 * ByteLevel (prefix space, GPT-2 regex) and Digits, chained by Sequence. */
#include <jansson.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "text/tok_internal.h"

/* GPT-2's own split, used by ByteLevel when use_regex is true. */
static const char GPT2_RE[] = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

static pthread_once_t onig_once = PTHREAD_ONCE_INIT;
static void onig_setup(void) {
  OnigEncoding enc[1] = {ONIG_ENCODING_UTF8};
  onig_initialize(enc, 1);
}

mimo_status tok_compile_regex(const char *pat, size_t len, regex_t **out, const char *what) {
  pthread_once(&onig_once, onig_setup);
  OnigErrorInfo einfo;
  const UChar *p = (const UChar *)pat;
  int r = onig_new(out, p, p + len, ONIG_OPTION_NONE, ONIG_ENCODING_UTF8, ONIG_SYNTAX_RUBY, &einfo);
  if (r != ONIG_NORMAL) {
    UChar msg[ONIG_MAX_ERROR_MESSAGE_LEN];
    onig_error_code_to_str(msg, r, &einfo);
    *out = NULL;
    return mimo_errf(MIMO_E_CONFIG, "tokenizer.json: %s: bad regex /%.*s/: %s", what, (int)(len > 200 ? 200 : len),
                     pat, (const char *)msg);
  }
  return MIMO_OK;
}

static mimo_status parse_split(tok_pt_step *st, json_t *n) {
  json_t *pat = json_object_get(n, "pattern");
  json_t *re = json_object_get(pat, "Regex"), *lit = json_object_get(pat, "String");
  if (json_is_string(re)) {
    MIMO_TRY(tok_compile_regex(json_string_value(re), json_string_length(re), &st->re, "pre_tokenizer Split"));
  } else if (json_is_string(lit)) {
    /* A literal: escape every byte that is special to Oniguruma. */
    tok_buf b = {0};
    const char *s = json_string_value(lit);
    for (size_t i = 0; i < json_string_length(lit); i++) {
      if (strchr("\\^$.|?*+()[]{}-#&~", s[i]) && s[i])
        MIMO_TRY(tok_buf_put(&b, "\\", 1));
      MIMO_TRY(tok_buf_put(&b, s + i, 1));
    }
    mimo_status rc = tok_compile_regex(b.p ? b.p : "", b.n, &st->re, "pre_tokenizer Split");
    free(b.p);
    MIMO_TRY(rc);
  } else {
    return mimo_errf(MIMO_E_FORMAT, "tokenizer.json: pre_tokenizer Split needs pattern.Regex or pattern.String");
  }
  const char *beh = json_string_value(json_object_get(n, "behavior"));
  static const char *names[] = {"Removed", "Isolated", "MergedWithPrevious", "MergedWithNext", "Contiguous"};
  st->behavior = -1;
  for (int i = 0; i < 5; i++)
    if (beh && strcmp(beh, names[i]) == 0)
      st->behavior = i;
  if (st->behavior < 0)
    return mimo_errf(MIMO_E_CONFIG, "tokenizer.json: pre_tokenizer Split: unsupported behavior \"%s\"",
                     beh ? beh : "(missing)");
  st->invert = json_is_true(json_object_get(n, "invert"));
  return MIMO_OK;
}

static mimo_status add_step(tok_pretok *pt, json_t *n) {
  const char *type = json_string_value(json_object_get(n, "type"));
  if (!type)
    return mimo_errf(MIMO_E_FORMAT, "tokenizer.json: pre_tokenizer without a \"type\"");
  if (strcmp(type, "Sequence") == 0) {
    json_t *arr = json_object_get(n, "pretokenizers");
    if (!json_is_array(arr))
      return mimo_errf(MIMO_E_FORMAT, "tokenizer.json: pre_tokenizer Sequence without \"pretokenizers\"");
    size_t i;
    json_t *c;
    json_array_foreach(arr, i, c) MIMO_TRY(add_step(pt, c));
    return MIMO_OK;
  }
  if (pt->n == (int)(sizeof pt->steps / sizeof pt->steps[0]))
    return mimo_errf(MIMO_E_CONFIG, "tokenizer.json: more than 8 pre-tokenizers");
  if (pt->byte_level)
    return mimo_errf(MIMO_E_CONFIG, "tokenizer.json: pre_tokenizer \"%s\" after ByteLevel is not supported", type);
  tok_pt_step *st = &pt->steps[pt->n];
  memset(st, 0, sizeof *st);
  if (strcmp(type, "Split") == 0) {
    st->kind = TOK_PT_SPLIT;
    pt->n++; /* counted before parsing so tok_pretok_free releases a compiled regex */
    return parse_split(st, n);
  }
  if (strcmp(type, "ByteLevel") == 0) {
    st->kind = TOK_PT_BYTELEVEL;
    st->add_prefix_space = json_is_true(json_object_get(n, "add_prefix_space"));
    json_t *ur = json_object_get(n, "use_regex");
    pt->n++;
    pt->byte_level = 1;
    if (!ur || json_is_true(ur)) /* use_regex defaults to true */
      return tok_compile_regex(GPT2_RE, sizeof GPT2_RE - 1, &st->re, "ByteLevel");
    return MIMO_OK;
  }
  if (strcmp(type, "Digits") == 0) {
    st->kind = TOK_PT_DIGITS;
    st->individual = json_is_true(json_object_get(n, "individual_digits"));
    pt->n++;
    return MIMO_OK;
  }
  return mimo_errf(MIMO_E_CONFIG,
                   "tokenizer.json: unsupported pre_tokenizer \"%s\" (supported: Sequence, Split, ByteLevel, Digits)",
                   type);
}

mimo_status tok_pretok_parse(tok_pretok *pt, const void *node) {
  memset(pt, 0, sizeof *pt);
  json_t *n = (json_t *)node;
  if (!n || json_is_null(n))
    return MIMO_OK;
  if (!json_is_object(n))
    return mimo_errf(MIMO_E_FORMAT, "tokenizer.json: \"pre_tokenizer\" is not an object");
  return add_step(pt, n);
}

void tok_pretok_free(tok_pretok *pt) {
  for (int i = 0; i < pt->n; i++)
    if (pt->steps[i].re)
      onig_free(pt->steps[i].re);
  pt->n = 0;
}

static mimo_status spans_push(tok_spans *v, uint32_t off, uint32_t len) {
  if (v->n == v->cap) {
    size_t cap = v->cap ? v->cap * 2 : 256;
    tok_span *p = realloc(v->p, cap * sizeof *p);
    if (!p)
      return mimo_errf(MIMO_E_NOMEM, "tokenizer: out of memory");
    v->p = p;
    v->cap = cap;
  }
  v->p[v->n].off = off;
  v->p[v->n].len = len;
  v->n++;
  return MIMO_OK;
}

/* Marks: a piece's cover as alternating (start, end, is_delimiter) ranges. */
typedef struct {
  uint32_t s, e;
  int m;
} mark;
typedef struct {
  mark *p;
  size_t n, cap;
} marks;

static mimo_status marks_push(marks *v, uint32_t s, uint32_t e, int m) {
  if (v->n == v->cap) {
    size_t cap = v->cap ? v->cap * 2 : 64;
    mark *p = realloc(v->p, cap * sizeof *p);
    if (!p)
      return mimo_errf(MIMO_E_NOMEM, "tokenizer: out of memory");
    v->p = p;
    v->cap = cap;
  }
  v->p[v->n++] = (mark){s, e, m};
  return MIMO_OK;
}

static size_t utf8_len_at(const unsigned char *s, size_t left) {
  uint32_t cp;
  int l = tok_utf8_next(s, left, &cp);
  return l ? (size_t)l : 1;
}

/* Regex matches over one piece, with the empty-match rule of Oniguruma's
 * find-iterator: an empty match right where the last match ended is skipped. */
static mimo_status regex_marks(regex_t *re, OnigRegion *rg, const char *s, size_t n, marks *mk) {
  const UChar *b = (const UChar *)s, *e = b + n;
  size_t pos = 0, prev = 0;
  long last_end = -1;
  while (pos <= n) {
    int r = onig_search(re, b, e, b + pos, e, rg, ONIG_OPTION_NONE);
    if (r == ONIG_MISMATCH)
      break;
    if (r < 0)
      return mimo_errf(MIMO_E_INTERNAL, "tokenizer: regex search failed (%d)", r);
    size_t ms = (size_t)rg->beg[0], me = (size_t)rg->end[0];
    if (ms == me) {
      if ((long)me != last_end) {
        if (prev < ms)
          MIMO_TRY(marks_push(mk, (uint32_t)prev, (uint32_t)ms, 0));
        MIMO_TRY(marks_push(mk, (uint32_t)ms, (uint32_t)me, 1));
        prev = me;
        last_end = (long)me;
      }
      if (me >= n)
        break;
      pos = me + utf8_len_at(b + me, n - me);
      continue;
    }
    if (prev < ms)
      MIMO_TRY(marks_push(mk, (uint32_t)prev, (uint32_t)ms, 0));
    MIMO_TRY(marks_push(mk, (uint32_t)ms, (uint32_t)me, 1));
    prev = pos = me;
    last_end = (long)me;
  }
  if (prev < n)
    MIMO_TRY(marks_push(mk, (uint32_t)prev, (uint32_t)n, 0));
  return MIMO_OK;
}

static mimo_status digit_marks(const char *s, size_t n, marks *mk) {
  const unsigned char *u = (const unsigned char *)s;
  size_t i = 0;
  while (i < n) {
    uint32_t cp = u[i];
    size_t l = 1;
    if (cp >= 0x80) {
      int k = tok_utf8_next(u + i, n - i, &cp);
      l = k ? (size_t)k : 1;
    }
    int d = tok_is_numeric(cp);
    if (!d && mk->n && !mk->p[mk->n - 1].m)
      mk->p[mk->n - 1].e = (uint32_t)(i + l); /* a run of non-digits is one gap */
    else
      MIMO_TRY(marks_push(mk, (uint32_t)i, (uint32_t)(i + l), d));
    i += l;
  }
  return MIMO_OK;
}

/* Applies a delimiter behaviour to marks and appends the resulting spans. */
static mimo_status emit(marks *mk, int behavior, int invert, uint32_t base, tok_spans *out) {
  mark *m = mk->p;
  size_t n = mk->n, k = 0;
  if (invert)
    for (size_t i = 0; i < n; i++)
      m[i].m = !m[i].m;
  switch (behavior) {
  case TOK_SPLIT_ISOLATED:
    k = n;
    break;
  case TOK_SPLIT_REMOVED:
    for (size_t i = 0; i < n; i++)
      if (!m[i].m)
        m[k++] = m[i];
    break;
  case TOK_SPLIT_PREV: {
    int pm = 0;
    for (size_t i = 0; i < n; i++) {
      int is = m[i].m;
      if (is && !pm && k > 0)
        m[k - 1].e = m[i].e;
      else
        m[k++] = m[i];
      pm = is;
    }
    break;
  }
  case TOK_SPLIT_NEXT: {
    /* walk backwards, merging a delimiter into the piece after it */
    int pm = 0;
    size_t w = n; /* output fills m[w..n) from the back */
    for (size_t i = n; i-- > 0;) {
      int is = m[i].m;
      if (is && !pm && w < n)
        m[w].s = m[i].s;
      else
        m[--w] = m[i];
      pm = is;
    }
    memmove(m, m + w, (n - w) * sizeof *m);
    k = n - w;
    break;
  }
  case TOK_SPLIT_CONTIGUOUS: {
    int pm = 0;
    for (size_t i = 0; i < n; i++) {
      int is = m[i].m;
      if (is == pm && k > 0)
        m[k - 1].e = m[i].e;
      else
        m[k++] = m[i];
      pm = is;
    }
    break;
  }
  }
  for (size_t i = 0; i < k; i++)
    if (m[i].e > m[i].s)
      MIMO_TRY(spans_push(out, base + m[i].s, m[i].e - m[i].s));
  return MIMO_OK;
}

mimo_status tok_pretok_run(const tok_pretok *pt, tok_buf *buf, tok_span in, tok_spans *out, tok_spans *tmp) {
  out->n = 0;
  if (in.len == 0)
    return MIMO_OK;
  MIMO_TRY(spans_push(out, in.off, in.len));
  OnigRegion *rg = NULL;
  marks mk = {0};
  mimo_status st = MIMO_OK;
  for (int si = 0; si < pt->n && st == MIMO_OK; si++) {
    const tok_pt_step *step = &pt->steps[si];
    tmp->n = 0;
    for (size_t pi = 0; pi < out->n && st == MIMO_OK; pi++) {
      tok_span p = out->p[pi];
      if (step->kind == TOK_PT_BYTELEVEL && step->add_prefix_space && buf->p[p.off] != ' ') {
        /* the piece gets a leading space: copy it to the end of the buffer */
        if ((st = tok_buf_reserve(buf, p.len + 1)) != MIMO_OK)
          break;
        uint32_t off = (uint32_t)buf->n;
        buf->p[buf->n++] = ' ';
        memcpy(buf->p + buf->n, buf->p + p.off, p.len);
        buf->n += p.len;
        p.off = off;
        p.len++;
      }
      if (step->kind == TOK_PT_BYTELEVEL && !step->re) {
        st = spans_push(tmp, p.off, p.len);
        continue;
      }
      mk.n = 0;
      if (step->kind == TOK_PT_DIGITS) {
        st = digit_marks(buf->p + p.off, p.len, &mk);
      } else {
        if (!rg && !(rg = onig_region_new())) {
          st = mimo_errf(MIMO_E_NOMEM, "tokenizer: out of memory");
          break;
        }
        st = regex_marks(step->re, rg, buf->p + p.off, p.len, &mk);
      }
      if (st != MIMO_OK)
        break;
      int beh = step->kind == TOK_PT_SPLIT ? step->behavior
                : step->kind == TOK_PT_DIGITS && !step->individual ? TOK_SPLIT_CONTIGUOUS
                                                                   : TOK_SPLIT_ISOLATED;
      st = emit(&mk, beh, step->kind == TOK_PT_SPLIT && step->invert, p.off, tmp);
    }
    tok_spans sw = *out;
    *out = *tmp;
    *tmp = sw;
  }
  if (rg)
    onig_region_free(rg, 1);
  free(mk.p);
  return st;
}
