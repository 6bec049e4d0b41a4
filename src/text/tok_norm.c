/* Normaliser: Unicode normal forms (utf8proc) and Sequences of them. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "text/tok_internal.h"

static mimo_status add_one(tok_norm *nm, json_t *n) {
  const char *type = json_string_value(json_object_get(n, "type"));
  if (!type)
    return mimo_errf(MIMO_E_FORMAT, "tokenizer.json: normalizer without a \"type\"");
  if (strcmp(type, "Sequence") == 0) {
    json_t *arr = json_object_get(n, "normalizers");
    if (!json_is_array(arr))
      return mimo_errf(MIMO_E_FORMAT, "tokenizer.json: normalizer Sequence without \"normalizers\"");
    size_t i;
    json_t *c;
    json_array_foreach(arr, i, c) MIMO_TRY(add_one(nm, c));
    return MIMO_OK;
  }
  int k;
  if (strcmp(type, "NFC") == 0)
    k = TOK_NORM_NFC;
  else if (strcmp(type, "NFD") == 0)
    k = TOK_NORM_NFD;
  else if (strcmp(type, "NFKC") == 0)
    k = TOK_NORM_NFKC;
  else if (strcmp(type, "NFKD") == 0)
    k = TOK_NORM_NFKD;
  else
    return mimo_errf(MIMO_E_CONFIG, "tokenizer.json: unsupported normalizer \"%s\" (supported: NFC, NFD, NFKC, "
                                    "NFKD, Sequence)", type);
  if (nm->n == (int)(sizeof nm->steps / sizeof nm->steps[0]))
    return mimo_errf(MIMO_E_CONFIG, "tokenizer.json: more than 8 normalizers");
  nm->steps[nm->n++] = k;
  return MIMO_OK;
}

mimo_status tok_norm_parse(tok_norm *nm, const void *node) {
  memset(nm, 0, sizeof *nm);
  json_t *n = (json_t *)node;
  if (!n || json_is_null(n))
    return MIMO_OK;
  if (!json_is_object(n))
    return mimo_errf(MIMO_E_FORMAT, "tokenizer.json: \"normalizer\" is not an object");
  return add_one(nm, n);
}

/* Code points that are unchanged by every normal form and can neither combine
 * with a neighbour nor decompose: text made only of these is already normal. */
static int inert(uint32_t c, int compat) {
  if (c < 0xA0)
    return 1;
  if (!compat) {
    if (c < 0x300)
      return 1;
    if ((c >= 0x400 && c <= 0x482) || (c >= 0x48A && c <= 0x4FF))
      return 1;
    if ((c >= 0x3000 && c <= 0x3029) || (c >= 0x3030 && c <= 0x303F) || (c >= 0x3041 && c <= 0x3096) ||
        (c >= 0x309B && c <= 0x30FF) || (c >= 0xFF00 && c <= 0xFFEF))
      return 1;
  }
  return (c >= 0x3400 && c <= 0x4DBF) || (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0xAC00 && c <= 0xD7A3);
}

static int already_normal(const char *s, size_t n, int compat, int decomposed) {
  const unsigned char *u = (const unsigned char *)s;
  for (size_t i = 0; i < n;) {
    if (u[i] < 0x80) {
      i++;
      continue;
    }
    uint32_t cp;
    int l = tok_utf8_next(u + i, n - i, &cp);
    if (!l)
      return 0;
    /* precomposed Latin letters and Hangul syllables change under NFD */
    int cjk = (cp >= 0x3400 && cp <= 0x4DBF) || (cp >= 0x4E00 && cp <= 0x9FFF);
    if (decomposed ? !cjk : !inert(cp, compat))
      return 0;
    i += (size_t)l;
  }
  return 1;
}

mimo_status tok_norm_apply(const tok_norm *nm, const char *s, size_t n, tok_buf *out) {
  if (nm->n == 0)
    return tok_buf_put(out, s, n);
  char *cur = NULL;
  size_t curn = n;
  const char *src = s;
  for (int i = 0; i < nm->n; i++) {
    int k = nm->steps[i];
    int compat = k == TOK_NORM_NFKC || k == TOK_NORM_NFKD;
    int decomposed = k == TOK_NORM_NFD || k == TOK_NORM_NFKD;
    if (already_normal(src, curn, compat, decomposed))
      continue;
    utf8proc_option_t opt = UTF8PROC_STABLE | (decomposed ? UTF8PROC_DECOMPOSE : UTF8PROC_COMPOSE) |
                            (compat ? UTF8PROC_COMPAT : 0);
    utf8proc_uint8_t *res = NULL;
    utf8proc_ssize_t r = utf8proc_map((const utf8proc_uint8_t *)src, (utf8proc_ssize_t)curn, &res, opt);
    if (r < 0) {
      free(cur);
      return mimo_errf(MIMO_E_INVALID, "tokenizer: normalisation failed: %s", utf8proc_errmsg(r));
    }
    free(cur);
    cur = (char *)res;
    curn = (size_t)r;
    src = cur;
  }
  mimo_status st = tok_buf_put(out, src, curn);
  free(cur);
  return st;
}
