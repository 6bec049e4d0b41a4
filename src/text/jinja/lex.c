/* Lexer: splits template source into data and tag tokens, applying jinja2's
 * whitespace control (-, +, trim_blocks, lstrip_blocks) to the data tokens. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "text/jinja/internal.h"

typedef struct lexer {
  jj_arena *a;
  const char *s;
  size_t n, pos;
  int line;
  jj_tok *toks;
  size_t ntoks, cap;
  char err[256];
} lexer;

static jj_tok *push(lexer *L, int type) {
  if (L->ntoks == L->cap) {
    size_t cap = L->cap ? L->cap * 2 : 256;
    jj_tok *nt = jj_alloc(L->a, cap * sizeof *nt);
    if (!nt) return NULL;
    if (L->ntoks) jj_memcpy(nt, L->toks, L->ntoks * sizeof *nt);
    L->toks = nt;
    L->cap = cap;
  }
  jj_tok *t = &L->toks[L->ntoks++];
  memset(t, 0, sizeof *t);
  t->type = (uint8_t)type;
  t->line = L->line;
  return t;
}

static int count_nl(const char *s, size_t n) {
  int k = 0;
  for (size_t i = 0; i < n; i++) k += s[i] == '\n';
  return k;
}

/* Python's \s on a str: length of the whitespace char at s[i] (0 if none). */
static size_t ws_at(const char *s, size_t n, size_t i) {
  if (i >= n) return 0;
  size_t j = i;
  uint32_t cp = (uint32_t)jj_utf8_dec(s, n, &j);
  return jj_py_space(cp) ? j - i : 0;
}

static size_t skip_ws(const char *s, size_t n, size_t i) {
  size_t k;
  while ((k = ws_at(s, n, i)) > 0) i += k;
  return i;
}

/* Length of text after Python's str.rstrip(). */
static size_t rstrip_len(const char *s, size_t n) {
  size_t end = 0, i = 0;
  while (i < n) {
    size_t st = i;
    uint32_t cp = (uint32_t)jj_utf8_dec(s, n, &i);
    if (!jj_py_space(cp)) end = i;
    (void)st;
  }
  return end;
}

static bool all_ws(const char *s, size_t n) {
  if (n == 0) return false;
  size_t i = 0;
  while (i < n) {
    uint32_t cp = (uint32_t)jj_utf8_dec(s, n, &i);
    if (!jj_py_space(cp)) return false;
  }
  return true;
}

/* Emits the data before a tag, stripped per the tag's sign and lstrip_blocks. */
static void emit_data(lexer *L, const char *d, size_t dn, char sign, bool is_var, bool line_starting) {
  if (sign == '-') {
    dn = rstrip_len(d, dn);
  } else if (sign != '+' && !is_var) {
    size_t lpos = 0;
    for (size_t i = dn; i > 0; i--)
      if (d[i - 1] == '\n') { lpos = i; break; }
    if ((lpos > 0 || line_starting) && all_ws(d + lpos, dn - lpos)) dn = lpos;
  }
  if (dn) {
    jj_tok *t = push(L, T_DATA);
    if (!t) return;
    t->s = d;
    t->n = dn;
  }
}

static bool decode_string(lexer *L, const char *s, size_t n, jj_tok *t) {
  jj_buf b;
  jb_init(&b, L->a);
  for (size_t i = 0; i < n; i++) {
    if (s[i] != '\\' || i + 1 >= n) { jb_putc(&b, s[i]); continue; }
    char e = s[++i];
    uint32_t cp;
    int need = 0;
    switch (e) {
    case '\n': continue;
    case '\\': jb_putc(&b, '\\'); continue;
    case '\'': jb_putc(&b, '\''); continue;
    case '"': jb_putc(&b, '"'); continue;
    case 'a': jb_putc(&b, 7); continue;
    case 'b': jb_putc(&b, 8); continue;
    case 'f': jb_putc(&b, 12); continue;
    case 'n': jb_putc(&b, '\n'); continue;
    case 'r': jb_putc(&b, '\r'); continue;
    case 't': jb_putc(&b, '\t'); continue;
    case 'v': jb_putc(&b, 11); continue;
    case 'x': need = 2; break;
    case 'u': need = 4; break;
    case 'U': need = 8; break;
    default:
      if (e >= '0' && e <= '7') {
        cp = 0;
        int k = 0;
        while (k < 3 && i < n && s[i] >= '0' && s[i] <= '7') cp = cp * 8 + (uint32_t)(s[i++] - '0'), k++;
        i--;
        jj_utf8_enc(&b, cp);
        continue;
      }
      if (e == 'N') {
        snprintf(L->err, sizeof L->err, "line %d: \\N{...} escapes are not supported", t->line);
        return false;
      }
      jb_putc(&b, '\\');
      jb_putc(&b, e);
      continue;
    }
    cp = 0;
    for (int k = 0; k < need; k++) {
      char h = i + 1 + (size_t)k < n ? s[i + 1 + k] : 0;
      int v = h >= '0' && h <= '9' ? h - '0' : h >= 'a' && h <= 'f' ? h - 'a' + 10 : h >= 'A' && h <= 'F' ? h - 'A' + 10 : -1;
      if (v < 0) {
        snprintf(L->err, sizeof L->err, "line %d: truncated \\%c escape in string literal", t->line, e);
        return false;
      }
      cp = cp * 16 + (uint32_t)v;
    }
    i += (size_t)need;
    if (cp > 0x10FFFF) {
      snprintf(L->err, sizeof L->err, "line %d: illegal Unicode character in string literal", t->line);
      return false;
    }
    jj_utf8_enc(&b, cp);
  }
  t->s = b.p ? b.p : "";
  t->n = b.n;
  return true;
}

static bool is_digit(char c) { return c >= '0' && c <= '9'; }
static bool is_name0(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }

/* digits with optional single underscores between them */
static size_t scan_digits(const char *s, size_t n, size_t i) {
  if (i >= n || !is_digit(s[i])) return i;
  while (i < n && is_digit(s[i])) {
    i++;
    if (i + 1 < n && s[i] == '_' && is_digit(s[i + 1])) i++;
  }
  return i;
}

static bool lex_number(lexer *L, size_t *pi) {
  const char *s = L->s;
  size_t i = *pi, n = L->n, st = i;
  jj_tok *t;
  if (s[i] == '0' && i + 1 < n && strchr("xXoObB", s[i + 1]) && s[i + 1]) {
    int base = (s[i + 1] | 32) == 'x' ? 16 : (s[i + 1] | 32) == 'o' ? 8 : 2;
    size_t j = i + 2;
    uint64_t v = 0;
    int nd = 0;
    for (; j < n; j++) {
      char h = s[j];
      if (h == '_') continue;
      int d = is_digit(h) ? h - '0' : (h | 32) >= 'a' && (h | 32) <= 'f' ? (h | 32) - 'a' + 10 : 99;
      if (d >= base) break;
      if (v > (UINT64_MAX >> 4)) { snprintf(L->err, sizeof L->err, "line %d: integer literal too large", L->line); return false; }
      v = v * (uint64_t)base + (uint64_t)d;
      nd++;
    }
    if (nd && v <= INT64_MAX) {
      t = push(L, T_INT);
      t->i = (int64_t)v;
      *pi = j;
      return true;
    }
  }
  size_t j = scan_digits(s, n, i);
  bool isf = false;
  if (j + 1 < n && s[j] == '.' && is_digit(s[j + 1])) {
    j = scan_digits(s, n, j + 1);
    isf = true;
  }
  if (j < n && (s[j] == 'e' || s[j] == 'E')) {
    size_t k = j + 1;
    if (k < n && (s[k] == '+' || s[k] == '-')) k++;
    if (k < n && is_digit(s[k])) {
      j = scan_digits(s, n, k);
      isf = true;
    }
  }
  char tmp[128];
  size_t m = 0;
  for (size_t k = st; k < j && m < sizeof tmp - 1; k++)
    if (s[k] != '_') tmp[m++] = s[k];
  tmp[m] = 0;
  if (isf) {
    t = push(L, T_FLOAT);
    t->f = strtod(tmp, NULL);
  } else {
    char *end;
    unsigned long long v = strtoull(tmp, &end, 10);
    if (m > 19 || v > INT64_MAX) {
      snprintf(L->err, sizeof L->err, "line %d: integer literal too large", L->line);
      return false;
    }
    t = push(L, T_INT);
    t->i = (int64_t)v;
  }
  *pi = j;
  return true;
}

static const char *const ops2[] = {"//", "**", "==", "!=", "<=", ">=", NULL};

/* Lexes the inside of a {% %} or {{ }} tag starting at L->pos; returns false on error. */
/* What follows a closing tag: `-` strips the whitespace after it; otherwise, for
 * block and comment tags (trim_blocks), one newline is dropped unless `+`.
 * Leaves L->pos after what was consumed. */
static void after_close(lexer *L, const char *s, size_t n, size_t i, char sign, bool trim_newline,
                        bool *line_starting) {
  if (sign == '-') {
    size_t e = skip_ws(s, n, i);
    L->line += count_nl(s + i, e - i);
    *line_starting = e > i && s[e - 1] == '\n';
    i = e;
  } else if (sign != '+' && trim_newline && i < n && s[i] == '\n') {
    i++;
    L->line++;
    *line_starting = true;
  } else {
    *line_starting = false;
  }
  L->pos = i;
}

static bool lex_tag(lexer *L, bool is_block, bool *line_starting) {
  const char *s = L->s;
  size_t n = L->n, i = L->pos;
  int bal = 0;
  for (;;) {
    size_t k = skip_ws(s, n, i);
    L->line += count_nl(s + i, k - i);
    i = k;
    if (i >= n) {
      snprintf(L->err, sizeof L->err, "line %d: unexpected end of template, expected end of %s", L->line,
               is_block ? "block statement ('%}')" : "print statement ('}}')");
      return false;
    }
    const char *endtag = is_block ? "%}" : "}}";
    if (bal == 0) {
      bool minus = s[i] == '-' && i + 2 < n && memcmp(s + i + 1, endtag, 2) == 0;
      bool plus = is_block && s[i] == '+' && i + 2 < n && memcmp(s + i + 1, endtag, 2) == 0;
      if (minus || plus || (i + 1 < n && memcmp(s + i, endtag, 2) == 0)) {
        push(L, is_block ? T_BLOCK_END : T_VAR_END);
        i += (minus || plus) ? 3 : 2;
        after_close(L, s, n, i, minus ? '-' : plus ? '+' : 0, is_block, line_starting);
        return true;
      }
    }
    char ch = s[i];
    if (is_digit(ch)) {
      if (!lex_number(L, &i)) return false;
      continue;
    }
    if (is_name0(ch)) {
      size_t j = i;
      while (j < n && (is_name0(s[j]) || is_digit(s[j]))) j++;
      jj_tok *t = push(L, T_NAME);
      t->s = jj_strndup(L->a, s + i, j - i);
      t->n = j - i;
      i = j;
      continue;
    }
    if (ch == '\'' || ch == '"') {
      size_t j = i + 1;
      while (j < n && s[j] != ch) j += (s[j] == '\\' && j + 1 < n) ? 2 : 1;
      if (j >= n) {
        snprintf(L->err, sizeof L->err, "line %d: unterminated string", L->line);
        return false;
      }
      jj_tok *t = push(L, T_STRING);
      if (!decode_string(L, s + i + 1, j - i - 1, t)) return false;
      L->line += count_nl(s + i, j - i);
      i = j + 1;
      continue;
    }
    jj_tok *t = NULL;
    for (int o = 0; ops2[o]; o++)
      if (i + 1 < n && memcmp(s + i, ops2[o], 2) == 0) {
        t = push(L, T_OP);
        t->s = ops2[o];
        t->n = 2;
        i += 2;
        break;
      }
    if (t) continue;
    static const char single[] = "+-*/%~()[]{},.:|=<>;";
    const char *p = strchr(single, ch);
    if (!p || !ch) {
      snprintf(L->err, sizeof L->err, "line %d: unexpected char '%c'", L->line, ch);
      return false;
    }
    if (ch == '(' || ch == '[' || ch == '{') bal++;
    if (ch == ')' || ch == ']' || ch == '}') {
      if (bal == 0) {
        snprintf(L->err, sizeof L->err, "line %d: unexpected '%c'", L->line, ch);
        return false;
      }
      bal--;
    }
    t = push(L, T_OP);
    t->s = p;
    t->n = 1;
    i++;
  }
}

/* Matches `{%[-+]? raw [-]?%}` at i; returns end position or 0. */
static size_t match_raw(const char *s, size_t n, size_t i, const char *word, char *sign, char *endsign) {
  size_t j = i + 2;
  *sign = 0;
  if (j < n && (s[j] == '-' || s[j] == '+')) *sign = s[j++];
  j = skip_ws(s, n, j);
  size_t wl = strlen(word);
  if (j + wl > n || memcmp(s + j, word, wl) != 0) return 0;
  j = skip_ws(s, n, j + wl);
  *endsign = 0;
  if (j < n && (s[j] == '-' || s[j] == '+')) *endsign = s[j++];
  if (j + 2 > n || s[j] != '%' || s[j + 1] != '}') return 0;
  return j + 2;
}

mimo_status jj_lex(jj_arena *a, const char *src, size_t len, jj_tok **toks, size_t *ntoks) {
  lexer L = {.a = a, .line = 1};
  /* newline normalisation and dropping one trailing newline, as jinja2 does */
  char *s = jj_alloc(a, len + 1);
  if (!s) return mimo_errf(MIMO_E_NOMEM, "template: out of memory");
  size_t n = 0;
  for (size_t i = 0; i < len; i++) {
    if (src[i] == '\r') {
      s[n++] = '\n';
      if (i + 1 < len && src[i + 1] == '\n') i++;
    } else {
      s[n++] = src[i];
    }
  }
  if (n && s[n - 1] == '\n') n--;
  s[n] = 0;
  L.s = s;
  L.n = n;
  bool line_starting = true;
  while (L.pos < n) {
    size_t i = L.pos;
    const char *p = s + i;
    size_t tag = n;
    for (size_t k = i; k + 1 < n; k++)
      if (s[k] == '{' && (s[k + 1] == '{' || s[k + 1] == '%' || s[k + 1] == '#')) { tag = k; break; }
    if (tag == n) {
      jj_tok *t = push(&L, T_DATA);
      t->s = p;
      t->n = n - i;
      break;
    }
    char kind = s[tag + 1];
    char sign = tag + 2 < n && (s[tag + 2] == '-' || s[tag + 2] == '+') ? s[tag + 2] : 0;
    int data_line = L.line;
    L.line += count_nl(p, tag - i);
    size_t before = L.ntoks;
    emit_data(&L, p, tag - i, sign, kind == '{', line_starting);
    if (L.ntoks > before) L.toks[before].line = data_line;
    if (kind == '#') {
      size_t j = tag + 2;
      while (j + 1 < n && !(s[j] == '#' && s[j + 1] == '}')) j++;
      if (j + 1 >= n) {
        return mimo_errf(MIMO_E_FORMAT, "template line %d: missing end of comment tag", L.line);
      }
      L.line += count_nl(s + tag, j - tag);
      char es = j > tag + 2 && (s[j - 1] == '-' || s[j - 1] == '+') ? s[j - 1] : 0;
      j += 2;
      after_close(&L, s, n, j, es, true, &line_starting);
      continue;
    }
    char rs, res;
    size_t rend = kind == '%' ? match_raw(s, n, tag, "raw", &rs, &res) : 0;
    if (rend && res != '+') {
      size_t j = rend;
      if (res == '-') j = skip_ws(s, n, j);
      L.line += count_nl(s + tag, j - tag);
      /* find {% endraw %} */
      size_t k = j, eend = 0;
      char es = 0, ees = 0;
      for (; k + 1 < n; k++)
        if (s[k] == '{' && s[k + 1] == '%' && (eend = match_raw(s, n, k, "endraw", &es, &ees)) != 0) break;
      if (!eend) return mimo_errf(MIMO_E_FORMAT, "template line %d: missing {%% endraw %%}", L.line);
      size_t nb = L.ntoks;
      emit_data(&L, s + j, k - j, es, false, res == '-' ? (j > rend && s[j - 1] == '\n') : false);
      if (L.ntoks > nb) L.toks[nb].type = T_RAW;
      L.line += count_nl(s + j, eend - j);
      after_close(&L, s, n, eend, ees, true, &line_starting);
      continue;
    }
    push(&L, kind == '%' ? T_BLOCK_BEGIN : T_VAR_BEGIN);
    L.pos = tag + 2 + (sign ? 1 : 0);
    if (!lex_tag(&L, kind == '%', &line_starting)) return mimo_errf(MIMO_E_FORMAT, "template %s", L.err);
    if (!L.toks) return mimo_errf(MIMO_E_NOMEM, "template: out of memory");
  }
  if (!push(&L, T_EOF)) return mimo_errf(MIMO_E_NOMEM, "template: out of memory");
  *toks = L.toks;
  *ntoks = L.ntoks;
  return MIMO_OK;
}
