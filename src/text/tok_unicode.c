/* Tokenizer plumbing: growable buffers, a string hash map, UTF-8 decoding with
 * U+FFFD substitution, the GPT-2 byte-level alphabet and character classes. */
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "text/tok_internal.h"

mimo_status tok_buf_reserve(tok_buf *b, size_t extra) {
  if (b->n + extra <= b->cap)
    return MIMO_OK;
  size_t cap = b->cap ? b->cap : 256;
  while (cap < b->n + extra)
    cap *= 2;
  char *p = realloc(b->p, cap);
  if (!p)
    return mimo_errf(MIMO_E_NOMEM, "tokenizer: out of memory (%zu bytes)", cap);
  b->p = p;
  b->cap = cap;
  return MIMO_OK;
}

mimo_status tok_buf_put(tok_buf *b, const void *data, size_t n) {
  MIMO_TRY(tok_buf_reserve(b, n));
  if (n)
    memcpy(b->p + b->n, data, n);
  b->n += n;
  return MIMO_OK;
}

mimo_status tok_ids_push(tok_ids *v, int id) {
  if (v->n == v->cap) {
    size_t cap = v->cap ? v->cap * 2 : 64;
    int *p = realloc(v->p, cap * sizeof *p);
    if (!p)
      return mimo_errf(MIMO_E_NOMEM, "tokenizer: out of memory");
    v->p = p;
    v->cap = cap;
  }
  v->p[v->n++] = id;
  return MIMO_OK;
}

/* 64-bit multiply-xorshift hash over 8-byte words; short keys dominate. */
uint64_t tok_hash(const void *p, size_t n) {
  const unsigned char *s = p;
  uint64_t h = 0x9E3779B97F4A7C15ull ^ (n * 0xFF51AFD7ED558CCDull);
  while (n >= 8) {
    uint64_t w;
    memcpy(&w, s, 8);
    h = (h ^ w) * 0xC4CEB9FE1A85EC53ull;
    h ^= h >> 29;
    s += 8;
    n -= 8;
  }
  uint64_t w = 0;
  memcpy(&w, s, n);
  h = (h ^ w) * 0xC4CEB9FE1A85EC53ull;
  h ^= h >> 32;
  h *= 0xFF51AFD7ED558CCDull;
  h ^= h >> 29;
  return h;
}

mimo_status tok_strmap_init(tok_strmap *m, uint32_t expect) {
  memset(m, 0, sizeof *m);
  uint32_t sz = 16;
  while (sz < expect * 2u)
    sz *= 2;
  m->mask = sz - 1;
  m->cap = expect > 8 ? expect : 8;
  m->slot = calloc(sz, sizeof *m->slot);
  m->koff = malloc(m->cap * sizeof *m->koff);
  m->klen = malloc(m->cap * sizeof *m->klen);
  m->val = malloc(m->cap * sizeof *m->val);
  if (!m->slot || !m->koff || !m->klen || !m->val)
    return mimo_errf(MIMO_E_NOMEM, "tokenizer: out of memory");
  return MIMO_OK;
}

void tok_strmap_free(tok_strmap *m) {
  free(m->slot);
  free(m->koff);
  free(m->klen);
  free(m->val);
  free(m->keys.p);
  memset(m, 0, sizeof *m);
}

static uint32_t *find_slot(const tok_strmap *m, const char *k, size_t len) {
  uint32_t i = (uint32_t)tok_hash(k, len) & m->mask;
  for (;;) {
    uint32_t e = m->slot[i];
    if (!e)
      return &m->slot[i];
    e--;
    if (m->klen[e] == len && memcmp(m->keys.p + m->koff[e], k, len) == 0)
      return &m->slot[i];
    i = (i + 1) & m->mask;
  }
}

static mimo_status grow(tok_strmap *m) {
  uint32_t sz = (m->mask + 1) * 2;
  uint32_t *slot = calloc(sz, sizeof *slot);
  if (!slot)
    return mimo_errf(MIMO_E_NOMEM, "tokenizer: out of memory");
  free(m->slot);
  m->slot = slot;
  m->mask = sz - 1;
  for (uint32_t e = 0; e < m->n; e++)
    *find_slot(m, m->keys.p + m->koff[e], m->klen[e]) = e + 1;
  return MIMO_OK;
}

mimo_status tok_strmap_put(tok_strmap *m, const char *k, size_t len, int val) {
  uint32_t *s = find_slot(m, k, len);
  if (*s) {
    m->val[*s - 1] = val;
    return MIMO_OK;
  }
  if (m->n == m->cap) {
    uint32_t cap = m->cap * 2;
    uint32_t *ko = realloc(m->koff, cap * sizeof *ko);
    if (ko)
      m->koff = ko;
    uint32_t *kl = realloc(m->klen, cap * sizeof *kl);
    if (kl)
      m->klen = kl;
    int *v = realloc(m->val, cap * sizeof *v);
    if (v)
      m->val = v;
    if (!ko || !kl || !v)
      return mimo_errf(MIMO_E_NOMEM, "tokenizer: out of memory");
    m->cap = cap;
  }
  if (m->keys.n + len > UINT32_MAX)
    return mimo_errf(MIMO_E_TOO_LONG, "tokenizer: vocabulary strings over 4 GiB");
  uint32_t e = m->n++;
  m->koff[e] = (uint32_t)m->keys.n;
  m->klen[e] = (uint32_t)len;
  m->val[e] = val;
  MIMO_TRY(tok_buf_put(&m->keys, k, len));
  *s = e + 1;
  if ((uint64_t)m->n * 2 > m->mask)
    return grow(m);
  return MIMO_OK;
}

int tok_strmap_get(const tok_strmap *m, const char *k, size_t len) {
  if (!m->slot)
    return -1;
  uint32_t e = *find_slot(m, k, len);
  return e ? m->val[e - 1] : -1;
}

/* ---- UTF-8 ---- */

int tok_utf8_next(const unsigned char *s, size_t n, uint32_t *cp) {
  unsigned c = s[0];
  if (c < 0x80) {
    *cp = c;
    return 1;
  }
  int len;
  uint32_t v;
  unsigned lo = 0x80, hi = 0xBF;
  if (c >= 0xC2 && c <= 0xDF) {
    len = 2;
    v = c & 0x1F;
  } else if (c >= 0xE0 && c <= 0xEF) {
    len = 3;
    v = c & 0x0F;
    if (c == 0xE0)
      lo = 0xA0;
    else if (c == 0xED)
      hi = 0x9F; /* no surrogates */
  } else if (c >= 0xF0 && c <= 0xF4) {
    len = 4;
    v = c & 0x07;
    if (c == 0xF0)
      lo = 0x90;
    else if (c == 0xF4)
      hi = 0x8F;
  } else {
    return 0;
  }
  if (n < (size_t)len)
    return 0;
  for (int i = 1; i < len; i++) {
    unsigned b = s[i];
    if (b < lo || b > hi)
      return 0;
    lo = 0x80;
    hi = 0xBF;
    v = (v << 6) | (b & 0x3F);
  }
  *cp = v;
  return len;
}

size_t tok_utf8_bad_len(const unsigned char *s, size_t n) {
  /* The maximal subpart: the longest prefix that is the start of some valid
   * sequence; at least one byte. */
  unsigned c = s[0];
  int len;
  unsigned lo = 0x80, hi = 0xBF;
  if (c >= 0xC2 && c <= 0xDF)
    len = 2;
  else if (c >= 0xE0 && c <= 0xEF) {
    len = 3;
    if (c == 0xE0)
      lo = 0xA0;
    else if (c == 0xED)
      hi = 0x9F;
  } else if (c >= 0xF0 && c <= 0xF4) {
    len = 4;
    if (c == 0xF0)
      lo = 0x90;
    else if (c == 0xF4)
      hi = 0x8F;
  } else
    return 1;
  size_t i = 1;
  while (i < (size_t)len && i < n) {
    unsigned b = s[i];
    if (b < lo || b > hi)
      break;
    lo = 0x80;
    hi = 0xBF;
    i++;
  }
  return i;
}

size_t mimo_utf8_next(const char *s, size_t n, size_t *bad) {
  const unsigned char *u = (const unsigned char *)s;
  uint32_t cp;
  const int l = n ? tok_utf8_next(u, n, &cp) : 0;
  if (!l)
    *bad = n ? tok_utf8_bad_len(u, n) : 0;
  return (size_t)l;
}

char *mimo_utf8_sanitize(const char *s, size_t n) {
  tok_buf b = {0};
  if (tok_utf8_sanitize(s, n, &b) != MIMO_OK || tok_buf_put(&b, "", 1) != MIMO_OK) {
    free(b.p);
    return NULL;
  }
  return b.p;
}

int tok_utf8_valid(const char *s, size_t n) {
  const unsigned char *u = (const unsigned char *)s;
  size_t i = 0;
  while (i < n) {
    if (u[i] < 0x80) {
      i++;
      continue;
    }
    uint32_t cp;
    int l = tok_utf8_next(u + i, n - i, &cp);
    if (!l)
      return 0;
    i += (size_t)l;
  }
  return 1;
}

mimo_status tok_utf8_sanitize(const char *s, size_t n, tok_buf *out) {
  const unsigned char *u = (const unsigned char *)s;
  size_t i = 0, run = 0;
  MIMO_TRY(tok_buf_reserve(out, n + 16));
  while (i < n) {
    uint32_t cp;
    int l = u[i] < 0x80 ? 1 : tok_utf8_next(u + i, n - i, &cp);
    if (l) {
      i += (size_t)l;
      continue;
    }
    MIMO_TRY(tok_buf_put(out, s + run, i - run));
    MIMO_TRY(tok_buf_put(out, "\xEF\xBF\xBD", 3));
    i += tok_utf8_bad_len(u + i, n - i);
    run = i;
  }
  return tok_buf_put(out, s + run, n - run);
}

int tok_utf8_encode(uint32_t cp, char *o) {
  if (cp < 0x80) {
    o[0] = (char)cp;
    return 1;
  }
  if (cp < 0x800) {
    o[0] = (char)(0xC0 | (cp >> 6));
    o[1] = (char)(0x80 | (cp & 0x3F));
    return 2;
  }
  if (cp < 0x10000) {
    o[0] = (char)(0xE0 | (cp >> 12));
    o[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
    o[2] = (char)(0x80 | (cp & 0x3F));
    return 3;
  }
  o[0] = (char)(0xF0 | (cp >> 18));
  o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
  o[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
  o[3] = (char)(0x80 | (cp & 0x3F));
  return 4;
}

/* GPT-2's alphabet: printable Latin-1 bytes stand for themselves, the other 68
 * bytes take code points 256.. in byte order. */
static int printable_byte(unsigned b) {
  return (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
}

uint32_t tok_byte_to_cp(unsigned char b) {
  if (printable_byte(b))
    return b;
  if (b <= 0x20)
    return 256u + b;
  if (b >= 0x7F && b <= 0xA0)
    return 256u + 33 + (b - 0x7Fu);
  return 256u + 67; /* 0xAD */
}

int tok_cp_to_byte(uint32_t cp) {
  if (cp < 256)
    return printable_byte(cp) ? (int)cp : -1;
  uint32_t k = cp - 256;
  if (k < 33)
    return (int)k;
  if (k < 67)
    return (int)(0x7F + k - 33);
  return k == 67 ? 0xAD : -1;
}

/* Unicode White_Space (what Rust's char::is_whitespace tests). */
int tok_is_whitespace(uint32_t c) {
  return (c >= 9 && c <= 13) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200A) ||
         c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

int tok_is_numeric(uint32_t c) {
  utf8proc_category_t k = utf8proc_category((utf8proc_int32_t)c);
  return k == UTF8PROC_CATEGORY_ND || k == UTF8PROC_CATEGORY_NL || k == UTF8PROC_CATEGORY_NO;
}

int tok_is_alnum(uint32_t c) {
  utf8proc_category_t k = utf8proc_category((utf8proc_int32_t)c);
  return (k >= UTF8PROC_CATEGORY_LU && k <= UTF8PROC_CATEGORY_LO) || tok_is_numeric(c);
}
