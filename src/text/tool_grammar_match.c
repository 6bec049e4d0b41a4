/* Structured tool calls, matching (json_grammar_internal.h): MiMo's XML call syntax around the parameters' values,
 * byte by byte, as the qwen3_xml parser (toolcall.c) reads it. tool_grammar.c builds the nodes; the JSON values
 * inside run on json_grammar_match.c's frames. */
#include "text/json_grammar_internal.h"

/* The next byte of fixed text t at f->off. */
static bool text_byte(mimo_jg_frame *f, const char *t, int c) {
  if (!t[f->off] || (unsigned char)t[f->off] != c)
    return false;
  f->off++;
  return true;
}

int jg_xcalls_byte(mimo_jg_stack *s, mimo_jg_frame *f, int c) {
  const node *n = f->node;
  const bool more = n->max_items < 0 || f->count < n->max_items;
  switch (f->phase) {
  case P_XC_AFTER: /* between calls: a newline or two, then the next call (its <tool_call> may be one token) */
    if (jg_is_ws(c) && more)
      return jg_ws_byte(f);
    if (c != '<' || !more)
      return REJECT;
    f->phase = P_XC_OPEN;
    f->off = 0;
    f->ws = 0;
    /* fall through */
  case P_XC_OPEN:
    if (!text_byte(f, XML_CALL_OPEN, c))
      return REJECT;
    if (!XML_CALL_OPEN[f->off]) {
      f->phase = P_XC_NAME;
      f->off = 0;
      f->cand = jg_all_bits(n->n_lits);
    }
    return TOOK;
  case P_XC_NAME: /* "NAME>\n" of one of the functions */
    if (!jg_narrow(f, n->lits, n->lit_len, n->n_lits, c))
      return REJECT;
    for (int i = 0; i < n->n_lits; i++)
      if (f->cand >> i & 1 && n->lit_len[i] == f->off) { /* no name text is a prefix of another: they end in '\n' */
        f->phase = P_XC_FUNC;
        return jg_push(s, n->alts[i], P_XF_NEXT) ? TOOK : REJECT;
      }
    return TOOK;
  case P_XC_END:
    if (!text_byte(f, XML_CALL_END, c))
      return REJECT;
    if (!XML_CALL_END[f->off]) {
      f->phase = P_XC_AFTER;
      f->count++;
      f->ws = 0;
    }
    return TOOK;
  }
  return REJECT;
}

int jg_xfunc_byte(mimo_jg_stack *s, mimo_jg_frame *f, int c) {
  const node *n = f->node;
  const bool named = n->n_props > 0;
  const uint64_t left = jg_all_bits(n->n_props) & ~f->seen;
  switch (f->phase) {
  case P_XF_NEXT:
    if (jg_is_ws(c))
      return jg_ws_byte(f);
    if (c != '<')
      return REJECT;
    f->phase = P_XF_PARAM;
    f->off = 1;
    f->ws = 0;
    return TOOK;
  case P_XF_PARAM: /* "<parameter=", or at its second byte the '/' of "</function>" */
    if (f->off == 1 && c == '/') {
      if ((f->seen & n->required) != n->required)
        return REJECT;
      f->phase = P_XF_CLOSE;
      f->off = 2;
      return TOOK;
    }
    if ((f->off == 1 && !(named ? left : n->addl != NULL)) || !text_byte(f, XML_PARAM_OPEN, c))
      return REJECT;
    if (!XML_PARAM_OPEN[f->off]) {
      f->phase = P_XF_KEY;
      f->off = 0;
      f->cand = left;
    }
    return TOOK;
  case P_XF_CLOSE:
    if (!text_byte(f, XML_FUNC_END, c))
      return REJECT;
    if (!XML_FUNC_END[f->off])
      jg_pop(s);
    return TOOK;
  case P_XF_KEY: {
    if (c == '>') { /* the name is complete: its value follows (a JSON one may start after one newline) */
      int prop = -1;
      for (int i = 0; named && i < n->n_props; i++)
        if (f->cand >> i & 1 && n->key_len[i] == f->off)
          prop = i;
      if (named ? prop < 0 : f->off == 0)
        return REJECT;
      f->prop = (int16_t)prop;
      const node *v = named ? n->props[prop] : n->addl;
      if (v->k != K_XTEXT) {
        f->phase = P_XF_VSTART;
        return TOOK;
      }
      f->phase = P_XF_VALUE;
      return jg_push(s, v, P_XT) ? TOOK : REJECT;
    }
    if (!named) { /* a free name: printable, no tag characters */
      if (c < 0x20 || c == '<' || c == '/' || f->off >= 128)
        return REJECT;
      f->off++;
      return TOOK;
    }
    return jg_narrow(f, n->keys, n->key_len, n->n_props, c) ? TOOK : REJECT;
  }
  case P_XF_VSTART: { /* a JSON value: after one newline at most (which the parser drops), no other space */
    f->phase = P_XF_VALUE;
    if (!jg_push(s, n->n_props ? n->props[f->prop] : n->addl, P_VALUE))
      return REJECT;
    s->f[s->depth - 1].ws = MIMO_JG_MAX_WS;
    return c == '\n' ? TOOK : AGAIN;
  }
  case P_XF_VEND: /* after a JSON value: one newline at most, then the end tag */
    if (c == '\n' && !f->ws) {
      f->ws = 1;
      return TOOK;
    }
    f->phase = P_XF_VCLOSE;
    f->off = 0;
    /* fall through */
  case P_XF_VCLOSE:
    if (!text_byte(f, XML_PARAM_END, c))
      return REJECT;
    if (!XML_PARAM_END[f->off]) {
      f->phase = P_XF_NEXT;
      f->ws = 0;
    }
    return TOOK;
  }
  return REJECT;
}

/* One byte of a text value's decoded value: well-formed UTF-8 without control characters other than tab and line
 * ends, within its length, along its pattern. */
static bool xt_take(const node *n, mimo_jg_frame *f, int c) {
  if (f->need)
    return jg_utf8_cont(n, f, c);
  if (c < 0x20 && c != '\n' && c != '\t' && c != '\r')
    return false;
  if (n->max_len >= 0 && f->count >= n->max_len)
    return false;
  /* (a refused byte leaves the frame to be dropped: the order of the checks does not matter) */
  if ((c >= 0x80 && !jg_utf8_lead(f, c)) || (n->pattern && !jg_pattern_byte(n, f, c)))
    return false;
  if (f->count < UINT16_MAX)
    f->count++;
  return true;
}

/* The text so far is a value the schema takes (the held newline is the trailing one, dropped). */
static bool xt_value_ok(const node *n, const mimo_jg_frame *f) {
  return !f->need && f->count >= n->min_len && (!n->pattern || mimo_re_accepts(n->pattern, (int)f->off));
}

/* The held newline and the first k bytes of the end tag, taken as text. */
static bool xt_flush(const node *n, mimo_jg_frame *f, int k) {
  if (f->ws & 2) {
    f->ws &= (uint8_t)~2;
    if (!xt_take(n, f, '\n'))
      return false;
  }
  for (int i = 0; i < k; i++)
    if (!xt_take(n, f, (unsigned char)XML_PARAM_END[i]))
      return false;
  return true;
}

/* With k bytes of the end tag (or a held newline, k = 0) pending, the value can still end: the tag completes it
 * as it is, or breaks off into text that can go on. So no byte leads where nothing can follow. */
static bool xt_viable(const node *n, const mimo_jg_frame *f, int k) {
  if (xt_value_ok(n, f))
    return true;
  mimo_jg_frame t = *f;
  if (!xt_flush(n, &t, k))
    return false;
  /* the pattern's DFA keeps only states that can still match; a length can go on below its maximum */
  return xt_value_ok(n, &t) || n->pattern || n->max_len < 0 || t.count < n->max_len;
}

/* A parameter's raw text up to "</parameter>". The parser (toolcall.c) drops one leading and one trailing newline,
 * so the first byte's newline is not part of the value, and a newline is held until a byte other than the end tag
 * shows it is not the trailing one. Bytes that begin the end tag are held too, and are text once it breaks off. */
int jg_xtext_byte(mimo_jg_stack *s, mimo_jg_frame *f, int c) {
  const node *n = f->node;
  const bool first = !(f->ws & 1);
  f->ws |= 1;
  if (!f->need && (f->hex || c == '<')) {
    if (c == (unsigned char)XML_PARAM_END[f->hex]) {
      if (XML_PARAM_END[f->hex + 1]) {
        if (!xt_viable(n, f, f->hex + 1))
          return REJECT;
        f->hex++;
        return TOOK;
      }
      if (!xt_value_ok(n, f))
        return REJECT;
      jg_pop(s);
      mimo_jg_frame *p = &s->f[s->depth - 1];
      p->phase = P_XF_NEXT;
      p->ws = 0;
      return TOOK;
    }
    if (!xt_flush(n, f, f->hex)) /* the tag broke off: what was held is text */
      return REJECT;
    f->hex = 0;
    if (c == '<') {
      if (!xt_viable(n, f, 1))
        return REJECT;
      f->hex = 1;
      return TOOK;
    }
  }
  if (first && c == '\n')
    return TOOK;
  if (!xt_flush(n, f, 0))
    return REJECT;
  if (c == '\n' && !f->need) {
    f->ws |= 2;
    return xt_viable(n, f, 0) ? TOOK : REJECT;
  }
  return xt_take(n, f, c) ? TOOK : REJECT;
}
