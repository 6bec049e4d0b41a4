/* Base64 and data: URLs (core/base64.h): RFC 4648 §4 decoding and the RFC 2397 URL form requests use to carry
 * images inline. Both are pure functions of their input; every rejection names an offset or the part at fault.
 * Verified by tests/unit/test_image.c (RFC vectors, a round trip against an encoder written in the test, error
 * cases) and tests/fuzz/fuzz_base64.c. */
#include "core/base64.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

enum { B64_BAD = -1, B64_SPACE = -2, B64_PAD = -3 };

static int b64_class(unsigned char c) {
  if (c >= 'A' && c <= 'Z')
    return c - 'A';
  if (c >= 'a' && c <= 'z')
    return c - 'a' + 26;
  if (c >= '0' && c <= '9')
    return c - '0' + 52;
  if (c == '+')
    return 62;
  if (c == '/')
    return 63;
  if (c == '=')
    return B64_PAD;
  if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v')
    return B64_SPACE;
  return B64_BAD;
}

/* Characters as escapes when they are not printable, so a message never carries raw control bytes. */
static mimo_status bad_char(unsigned char c, size_t off) {
  if (c >= 0x21 && c < 0x7f)
    return mimo_errf(MIMO_E_INVALID, "base64: invalid character '%c' at offset %zu", c, off);
  return mimo_errf(MIMO_E_INVALID, "base64: invalid byte 0x%02x at offset %zu", c, off);
}

mimo_status mimo_base64_decode(const char *s, size_t n, uint8_t **out, size_t *out_n) {
  *out = NULL;
  *out_n = 0;
  /* 4 characters carry 3 bytes; whitespace only makes the bound looser. */
  uint8_t *buf = malloc(n / 4 * 3 + 3);
  if (!buf)
    return mimo_errf(MIMO_E_NOMEM, "base64: out of memory for %zu characters", n);
  size_t k = 0, len = 0, pads = 0, pad_at = 0, last = 0;
  uint32_t acc = 0;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    int v = b64_class(c);
    if (v == B64_SPACE)
      continue;
    if (v == B64_BAD) {
      free(buf);
      return bad_char(c, i);
    }
    if (v == B64_PAD) {
      if (!pads)
        pad_at = i;
      pads++;
      continue;
    }
    if (pads) {
      free(buf);
      return mimo_errf(MIMO_E_INVALID, "base64: data after the '=' padding at offset %zu (offset %zu)", pad_at, i);
    }
    acc = acc << 6 | (uint32_t)v;
    last = i;
    if (++k % 4 == 0) {
      buf[len++] = (uint8_t)(acc >> 16);
      buf[len++] = (uint8_t)(acc >> 8);
      buf[len++] = (uint8_t)acc;
      acc = 0;
    }
  }
  size_t rem = k % 4;
  if (rem == 1) {
    free(buf);
    return mimo_errf(MIMO_E_INVALID, "base64: the data ends with a lone character at offset %zu (truncated?)", last);
  }
  /* A padded group must be exactly complete: "QQ==" and "QUI=", never "QQ=", "QUI==" or "QUJD=". */
  if (pads && (rem == 0 || rem + pads != 4)) {
    free(buf);
    return mimo_errf(MIMO_E_INVALID, "base64: %zu '=' at offset %zu after %zu data characters: padding must fill "
                     "the last group of 4", pads, pad_at, k);
  }
  if (rem == 2) {
    buf[len++] = (uint8_t)(acc >> 4);
  } else if (rem == 3) {
    buf[len++] = (uint8_t)(acc >> 10);
    buf[len++] = (uint8_t)(acc >> 2);
  }
  *out = buf;
  *out_n = len;
  return MIMO_OK;
}

/* RFC 2045 token characters, for media type names. */
static int is_token(unsigned char c) {
  return c > 0x20 && c < 0x7f && !strchr("()<>@,;:\\\"/[]?=", c);
}

static mimo_status media_type_check(const char *p, size_t len) {
  size_t slash = 0, n_slash = 0;
  for (size_t i = 0; i < len; i++) {
    unsigned char c = (unsigned char)p[i];
    if (c == '/') {
      slash = i;
      n_slash++;
    } else if (!is_token(c)) {
      return mimo_errf(MIMO_E_INVALID, "data URL: media type '%.*s' has an invalid character at offset %zu",
                       (int)len, p, 5 + i);
    }
  }
  if (n_slash != 1 || slash == 0 || slash == len - 1)
    return mimo_errf(MIMO_E_INVALID, "data URL: media type '%.*s' is not type/subtype", (int)len, p);
  return MIMO_OK;
}

mimo_status mimo_data_url_parse(const char *url, uint8_t **bytes, size_t *n, char *media_type, size_t media_cap) {
  *bytes = NULL;
  *n = 0;
  if (!url || strncasecmp(url, "data:", 5) != 0)
    return mimo_errf(MIMO_E_INVALID, "data URL: does not start with 'data:'");
  const char *head = url + 5, *comma = strchr(head, ',');
  if (!comma)
    return mimo_errf(MIMO_E_INVALID, "data URL: no ',' separates the header from the data");
  const char *semi = memchr(head, ';', (size_t)(comma - head));
  const char *mt_end = semi ? semi : comma;
  size_t mt_len = (size_t)(mt_end - head);
  if (mt_len)
    MIMO_TRY(media_type_check(head, mt_len));
  /* Parameters are attribute=value; RFC 2397 puts ";base64" last, right before the ','. */
  int base64 = 0;
  for (const char *p = semi; p && p < comma;) {
    const char *q = p + 1, *e = memchr(q, ';', (size_t)(comma - q));
    if (!e)
      e = comma;
    size_t len = (size_t)(e - q);
    if (len == 6 && strncasecmp(q, "base64", 6) == 0) {
      if (e != comma)
        return mimo_errf(MIMO_E_INVALID, "data URL: ';base64' at offset %zu must come last, right before the ','",
                         (size_t)(q - 1 - url));
      base64 = 1;
    } else if (!len || !memchr(q, '=', len))
      return mimo_errf(MIMO_E_INVALID, "data URL: parameter '%.*s' at offset %zu is not attribute=value",
                       (int)len, q, (size_t)(q - url));
    p = e < comma ? e : NULL;
  }
  if (!base64)
    return mimo_errf(MIMO_E_INVALID, "data URL: the data is not base64 (only ';base64,' data URLs are accepted, "
                     "not percent-encoded data)");
  if (media_cap) {
    const char *mt = mt_len ? head : "text/plain";
    size_t len = mt_len ? mt_len : strlen(mt);
    if (len + 1 > media_cap)
      return mimo_errf(MIMO_E_INVALID, "data URL: media type '%.*s' is longer than %zu bytes", (int)len, mt,
                       media_cap - 1);
    for (size_t i = 0; i < len; i++)
      media_type[i] = (char)tolower((unsigned char)mt[i]);
    media_type[len] = 0;
  }
  size_t off = (size_t)(comma + 1 - url);
  mimo_status st = mimo_base64_decode(comma + 1, strlen(comma + 1), bytes, n);
  if (st != MIMO_OK)
    return mimo_err_prefix(st, "data URL (data starts at offset %zu)", off);
  return MIMO_OK;
}
