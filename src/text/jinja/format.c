/* Python's printf-style `%` formatting and str.format (the common subset). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "text/jinja/internal.h"

typedef struct spec {
  uint32_t fill;
  char align, sign, type;
  bool alt, zero, comma;
  int64_t width, prec;
} spec;

/* v·10 + the digit d, saturating at INT32_MAX (past every limit the callers check) instead of overflowing */
static int64_t spec_digit(int64_t v, char d) { return v >= INT32_MAX / 10 ? INT32_MAX : v * 10 + (d - '0'); }

static void put_padded(jj_ctx *c, jj_buf *b, const char *s, size_t n, spec *sp, char default_align) {
  int64_t len = (int64_t)jj_utf8_len(s, n);
  char al = sp->align ? sp->align : default_align;
  int64_t tot = sp->width > len ? sp->width - len : 0;
  if (sp->width > JJ_MAX_STRING) jj_check_str(c, (size_t)sp->width);
  if (al == '=' && tot && n && (s[0] == '-' || s[0] == '+' || s[0] == ' ')) {
    jb_putc(b, s[0]);
    for (int64_t i = 0; i < tot; i++) jj_utf8_enc(b, sp->fill);
    jb_put(b, s + 1, n - 1);
    return;
  }
  int64_t left = al == '<' ? 0 : al == '^' ? tot / 2 : tot;
  if (al == '=') left = tot;
  for (int64_t i = 0; i < left; i++) jj_utf8_enc(b, sp->fill);
  jb_put(b, s, n);
  for (int64_t i = left; i < tot; i++) jj_utf8_enc(b, sp->fill);
}

/* number formatting shared by both styles; returns false when the type code is unknown */
static bool fmt_number(jj_ctx *c, jj_buf *b, jv v, spec *sp) {
  char tmp[512], cfmt[32];
  char t = sp->type;
  int prec = sp->prec < 0 ? 6 : (int)(sp->prec > 100 ? 100 : sp->prec);
  const char *signs = sp->sign == '+' ? "+" : sp->sign == ' ' ? " " : "";
  if (t == 'd' || t == 'i' || t == 'u' || t == 'x' || t == 'X' || t == 'o' || t == 'b' || t == 'c') {
    int64_t i;
    if (v.t == V_INT || v.t == V_BOOL) i = v.i;
    else if (v.t == V_FLOAT && (t == 'd' || t == 'i' || t == 'u') && isfinite(v.f) && fabs(v.f) < 9.2e18) i = (int64_t)v.f;
    else jj_fail(c, "%%%c format: a number is required, not %s", t, jv_typename(v));
    if (t == 'c') {
      jj_buf cb;
      jb_init(&cb, c->a);
      if (i < 0 || i > 0x10ffff) jj_fail(c, "%%c arg not in range(0x110000)");
      jj_utf8_enc(&cb, (uint32_t)i);
      put_padded(c, b, cb.p, cb.n, sp, '>');
      return true;
    }
    uint64_t u = i < 0 ? (uint64_t)0 - (uint64_t)i : (uint64_t)i;
    char digits[80];
    int nd = 0;
    int base = (t == 'x' || t == 'X') ? 16 : t == 'o' ? 8 : t == 'b' ? 2 : 10;
    do {
      int d = (int)(u % (uint64_t)base);
      digits[nd++] = (char)(d < 10 ? '0' + d : (t == 'X' ? 'A' : 'a') + d - 10);
      u /= (uint64_t)base;
    } while (u);
    int k = 0;
    if (i < 0) tmp[k++] = '-';
    else if (*signs) tmp[k++] = *signs;
    if (sp->alt && base != 10) {
      tmp[k++] = '0';
      tmp[k++] = t == 'X' ? 'X' : t == 'x' ? 'x' : t == 'o' ? 'o' : 'b';
    }
    int body = k;
    for (int j = nd - 1; j >= 0; j--) {
      tmp[k++] = digits[j];
      if (sp->comma && base == 10 && j > 0 && j % 3 == 0) tmp[k++] = ',';
    }
    tmp[k] = 0;
    if (sp->zero && !sp->align && sp->width > k) {
      jb_put(b, tmp, (size_t)body);
      for (int64_t z = k; z < sp->width; z++) jb_putc(b, '0');
      jb_puts(b, tmp + body);
      return true;
    }
    put_padded(c, b, tmp, (size_t)k, sp, '>');
    return true;
  }
  if (strchr("eEfFgG%", t) && t) {
    double f;
    if (v.t == V_FLOAT) f = v.f;
    else if (v.t == V_INT || v.t == V_BOOL) f = (double)v.i;
    else jj_fail(c, "must be real number, not %s", jv_typename(v));
    if (t == '%') {
      f *= 100;
      snprintf(cfmt, sizeof cfmt, "%%%s%s.%df%%%%", signs, sp->alt ? "#" : "", prec);
    } else {
      snprintf(cfmt, sizeof cfmt, "%%%s%s.%d%c", signs, sp->alt ? "#" : "", prec, t);
    }
    int n = snprintf(tmp, sizeof tmp, cfmt, f);
    if (n < 0 || n >= (int)sizeof tmp) jj_fail(c, "formatted number too long");
    if (sp->zero && !sp->align && sp->width > n) {
      int body = (tmp[0] == '-' || tmp[0] == '+' || tmp[0] == ' ') ? 1 : 0;
      jb_put(b, tmp, (size_t)body);
      for (int64_t z = n; z < sp->width; z++) jb_putc(b, '0');
      jb_puts(b, tmp + body);
      return true;
    }
    put_padded(c, b, tmp, (size_t)n, sp, '>');
    return true;
  }
  return false;
}

jv jj_percent_format(jj_ctx *c, jv fmt, jv args) {
  jj_buf b;
  jb_init(&b, c->a);
  jj_list *pos = NULL;
  size_t ai = 0;
  bool mapping = args.t == V_DICT;
  if (args.t == V_TUPLE) pos = args.l;
  else {
    jv one = jv_list(c->a, 1);
    one.l->v[0] = args;
    one.l->n = 1;
    pos = one.l;
  }
  const char *s = fmt.s, *e = fmt.s + fmt.n;
  bool used_map = false;
  while (s < e) {
    if (*s != '%') {
      jb_putc(&b, *s++);
      continue;
    }
    s++;
    if (s >= e) jj_fail(c, "incomplete format");
    jv val = JV_UNDEF;
    bool have = false;
    if (*s == '(') {
      const char *k = memchr(s, ')', (size_t)(e - s));
      if (!k) jj_fail(c, "incomplete format key");
      if (!mapping) jj_fail(c, "format requires a mapping");
      jv *v = jj_dict_get(args.d, jv_str(s + 1, (size_t)(k - s - 1)));
      if (!v) jj_fail(c, "format key not found");
      val = *v;
      have = true;
      used_map = true;
      s = k + 1;
    }
    spec sp = {.fill = ' ', .prec = -1};
    for (; s < e && strchr("-+ #0", *s); s++) {
      if (*s == '-') sp.align = '<';
      else if (*s == '+') sp.sign = '+';
      else if (*s == ' ' && sp.sign != '+') sp.sign = ' ';
      else if (*s == '#') sp.alt = true;
      else if (*s == '0') sp.zero = true;
    }
    if (s < e && *s == '*') {
      if (ai >= pos->n || pos->v[ai].t != V_INT) jj_fail(c, "* wants int");
      sp.width = pos->v[ai++].i;
      s++;
    } else
      while (s < e && *s >= '0' && *s <= '9') sp.width = spec_digit(sp.width, *s++);
    if (sp.width > JJ_MAX_STRING) jj_check_str(c, (size_t)sp.width);
    if (s < e && *s == '.') {
      s++;
      sp.prec = 0;
      while (s < e && *s >= '0' && *s <= '9') sp.prec = spec_digit(sp.prec, *s++);
      if (sp.prec > 1000) sp.prec = 1000;
    }
    while (s < e && (*s == 'l' || *s == 'h' || *s == 'L')) s++;
    if (s >= e) jj_fail(c, "incomplete format");
    char t = *s++;
    if (t == '%') {
      jb_putc(&b, '%');
      continue;
    }
    if (!have) {
      if (mapping && !pos) jj_fail(c, "format requires a mapping");
      if (mapping) val = args;
      else {
        if (ai >= pos->n) jj_fail(c, "not enough arguments for format string");
        val = pos->v[ai++];
      }
    }
    if (sp.align == '<') sp.zero = false;
    sp.type = t;
    if (t == 's' || t == 'r' || t == 'a') {
      jj_buf vb;
      jb_init(&vb, c->a);
      if (t == 's') jj_str(c, &vb, val);
      else jj_repr(c, &vb, val);
      size_t n = vb.n;
      if (sp.prec >= 0) { /* precision truncates to that many codepoints */
        size_t i = 0;
        for (int64_t k = 0; k < sp.prec && i < n; k++) jj_utf8_dec(vb.p, n, &i);
        n = i;
      }
      put_padded(c, &b, vb.p ? vb.p : "", n, &sp, '>');
    } else if (!fmt_number(c, &b, val, &sp)) {
      jj_fail(c, "unsupported format character '%c'", t);
    }
    jj_check_str(c, b.n);
  }
  if (!mapping && !used_map && ai < pos->n && args.t == V_TUPLE)
    jj_fail(c, "not all arguments converted during string formatting");
  if (!mapping && args.t != V_TUPLE && ai == 0 && !used_map && pos->n == 1 && !(args.t == V_DICT))
    jj_fail(c, "not all arguments converted during string formatting");
  return jb_val(&b);
}

static bool parse_spec(const char *s, size_t n, spec *sp) {
  memset(sp, 0, sizeof *sp);
  sp->fill = ' ';
  sp->prec = -1;
  size_t i = 0;
  if (n >= 2 && strchr("<>^=", s[1]) && s[1]) {
    size_t j = 0;
    sp->fill = (uint32_t)jj_utf8_dec(s, n, &j);
    sp->align = s[j];
    i = j + 1;
  } else if (n >= 1 && strchr("<>^=", s[0]) && s[0]) {
    sp->align = s[0];
    i = 1;
  }
  if (i < n && strchr("+- ", s[i]) && s[i]) sp->sign = s[i] == '-' ? 0 : s[i], i++;
  if (i < n && s[i] == '#') sp->alt = true, i++;
  if (i < n && s[i] == '0') {
    sp->zero = true;
    if (!sp->align) { sp->align = '='; sp->fill = '0'; }
    i++;
  }
  while (i < n && s[i] >= '0' && s[i] <= '9') sp->width = spec_digit(sp->width, s[i++]);
  if (sp->width > JJ_MAX_STRING) return false;
  if (i < n && s[i] == ',') sp->comma = true, i++;
  if (i < n && s[i] == '.') {
    i++;
    sp->prec = 0;
    while (i < n && s[i] >= '0' && s[i] <= '9') sp->prec = spec_digit(sp->prec, s[i++]);
    if (sp->prec > 1000) sp->prec = 1000;
  }
  if (i < n) sp->type = s[i++];
  return i == n;
}

static void format_value(jj_ctx *c, jj_buf *b, jv v, const char *specs, size_t sn) {
  spec sp;
  if (!parse_spec(specs, sn, &sp)) jj_fail(c, "Invalid format specifier");
  bool zero_pad = sp.zero;
  sp.zero = false;
  if (v.t == V_STR || sp.type == 's') {
    if (v.t != V_STR) jj_fail(c, "Unknown format code 's' for object of type '%s'", jv_typename(v));
    size_t n = v.n;
    if (sp.prec >= 0) {
      size_t i = 0;
      for (int64_t k = 0; k < sp.prec && i < n; k++) jj_utf8_dec(v.s, n, &i);
      n = i;
    }
    put_padded(c, b, v.s, n, &sp, '<');
    return;
  }
  if (jv_is_num(v)) {
    if (!sp.type) {
      if (v.t == V_FLOAT && sp.prec < 0) {
        jj_buf t;
        jb_init(&t, c->a);
        if (sp.sign == '+' && !signbit(v.f)) jb_putc(&t, '+');
        else if (sp.sign == ' ' && !signbit(v.f)) jb_putc(&t, ' ');
        jj_float_repr(&t, v.f);
        put_padded(c, b, t.p, t.n, &sp, '>');
        return;
      }
      sp.type = v.t == V_FLOAT ? 'g' : 'd';
    }
    if (v.t == V_BOOL && !sp.type) sp.type = 'd';
    (void)zero_pad;
    if (!fmt_number(c, b, v, &sp)) jj_fail(c, "Unknown format code '%c'", sp.type);
    return;
  }
  if (sn) jj_fail(c, "unsupported format string passed to %s.__format__", jv_typename(v));
  jj_str(c, b, v);
}

jv jj_str_format(jj_ctx *c, jv fmt, jj_args *a) {
  jj_buf b;
  jb_init(&b, c->a);
  const char *s = fmt.s, *e = fmt.s + fmt.n;
  int autoidx = 0;
  while (s < e) {
    if (*s == '}') {
      if (s + 1 < e && s[1] == '}') { jb_putc(&b, '}'); s += 2; continue; }
      jj_fail(c, "Single '}' encountered in format string");
    }
    if (*s != '{') { jb_putc(&b, *s++); continue; }
    if (s + 1 < e && s[1] == '{') { jb_putc(&b, '{'); s += 2; continue; }
    const char *f = s + 1, *end = f;
    int depth = 1;
    while (end < e && depth) {
      if (*end == '{') depth++;
      else if (*end == '}') depth--;
      if (depth) end++;
    }
    if (end >= e) jj_fail(c, "expected '}' before end of string");
    /* field [!conv] [:spec] */
    const char *colon = NULL, *bang = NULL;
    for (const char *p = f; p < end; p++) {
      if (*p == '[') { while (p < end && *p != ']') p++; continue; }
      if (*p == '!' && !bang && !colon) bang = p;
      if (*p == ':' && !colon) { colon = p; break; }
    }
    const char *fe = bang ? bang : colon ? colon : end;
    /* first part of the field name */
    const char *p = f;
    while (p < fe && *p != '.' && *p != '[') p++;
    jv v;
    if (p == f) {
      if (autoidx >= a->npos) jj_fail(c, "Replacement index %d out of range for positional args tuple", autoidx);
      v = a->pos[autoidx++];
    } else if (*f >= '0' && *f <= '9') {
      int idx = atoi(f);
      if (idx >= a->npos) jj_fail(c, "Replacement index %d out of range for positional args tuple", idx);
      v = a->pos[idx];
    } else {
      bool found = false;
      for (int k = 0; k < a->nkw; k++)
        if (strlen(a->kwn[k]) == (size_t)(p - f) && !memcmp(a->kwn[k], f, (size_t)(p - f))) {
          v = a->kwv[k];
          found = true;
        }
      if (!found) jj_fail(c, "KeyError: '%.*s'", (int)(p - f), f);
    }
    while (p < fe) {
      if (*p == '.') {
        const char *q = ++p;
        while (p < fe && *p != '.' && *p != '[') p++;
        v = jj_getattr(c, v, jj_strndup(c->a, q, (size_t)(p - q)), (size_t)(p - q));
      } else if (*p == '[') {
        const char *q = ++p;
        while (p < fe && *p != ']') p++;
        bool dig = p > q;
        for (const char *r = q; r < p; r++) dig = dig && *r >= '0' && *r <= '9';
        v = jj_getitem(c, v, dig ? jv_int(atoll(q)) : jv_str(q, (size_t)(p - q)));
        if (p < fe) p++;
      } else break;
    }
    if (v.t == V_UNDEF) jj_undef_fail(c, v);
    if (bang) {
      char conv = bang + 1 < end ? bang[1] : 0;
      jj_buf t;
      jb_init(&t, c->a);
      if (conv == 'r' || conv == 'a') jj_repr(c, &t, v);
      else if (conv == 's') jj_str(c, &t, v);
      else jj_fail(c, "Unknown conversion specifier");
      v = jb_val(&t);
    }
    jv specv = colon ? jv_str(colon + 1, (size_t)(end - colon - 1)) : jv_str("", 0);
    if (memchr(specv.s, '{', specv.n)) specv = jj_str_format(c, specv, a);
    format_value(c, &b, v, specv.s, specv.n);
    jj_check_str(c, b.n);
    s = end + 1;
  }
  return jb_val(&b);
}
