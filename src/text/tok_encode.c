/* Encode (added tokens -> normalise -> pre-tokenise -> BPE), decode, and the
 * streaming detokenizer. */
#include <stdlib.h>
#include <string.h>

#include "text/tok_internal.h"

typedef struct {
  const mimo_tok *t;
  tok_buf norm;
  tok_spans pieces, tmp;
  tok_cache *cache;
  tok_ids out;
} enc_ctx;

/* Text between raw added tokens: normalise, split off normalized added tokens,
 * pre-tokenise and BPE the rest. */
static mimo_status encode_plain(enc_ctx *c, const char *s, size_t n) {
  const mimo_tok *t = c->t;
  c->norm.n = 0;
  MIMO_TRY(tok_norm_apply(&t->norm, s, n, &c->norm));
  size_t nn = c->norm.n;
  tok_match *m = NULL;
  size_t nm = 0;
  if (t->trie_norm)
    MIMO_TRY(tok_trie_find(t->trie_norm, t->added, c->norm.p, nn, &m, &nm));
  mimo_status st = MIMO_OK;
  size_t pos = 0;
  for (size_t k = 0; k <= nm && st == MIMO_OK; k++) {
    size_t end = k < nm ? m[k].start : nn;
    if (end > pos) {
      tok_span in = {(uint32_t)pos, (uint32_t)(end - pos)};
      st = tok_pretok_run(&t->pretok, &c->norm, in, &c->pieces, &c->tmp);
      for (size_t i = 0; i < c->pieces.n && st == MIMO_OK; i++)
        st = tok_bpe_word(&t->bpe, t->pretok.byte_level, c->norm.p + c->pieces.p[i].off, c->pieces.p[i].len,
                          c->cache, &c->out);
    }
    if (k < nm && st == MIMO_OK) {
      st = tok_ids_push(&c->out, m[k].id);
      pos = m[k].end;
    }
  }
  free(m);
  return st;
}

mimo_status mimo_tok_encode(const mimo_tok *t, const char *text, size_t len, int **ids, size_t *n) {
  *ids = NULL;
  *n = 0;
  if (len >= UINT32_MAX / 2)
    return mimo_errf(MIMO_E_TOO_LONG, "tokenizer: input of %zu bytes is over the 2 GiB limit", len);
  enc_ctx c = {.t = t};
  tok_buf clean = {0};
  mimo_status st = MIMO_OK;
  if (!tok_utf8_valid(text, len)) {
    if ((st = tok_utf8_sanitize(text, len, &clean)) != MIMO_OK)
      goto done;
    text = clean.p;
    len = clean.n;
  }
  if (len > 4096)
    c.cache = tok_cache_new(); /* worthwhile only when words repeat */
  tok_match *m = NULL;
  size_t nm = 0;
  if ((st = tok_trie_find(t->trie_raw, t->added, text, len, &m, &nm)) != MIMO_OK)
    goto done;
  size_t pos = 0;
  for (size_t k = 0; k <= nm && st == MIMO_OK; k++) {
    size_t end = k < nm ? m[k].start : len;
    if (end > pos)
      st = encode_plain(&c, text + pos, end - pos);
    if (k < nm && st == MIMO_OK) {
      st = tok_ids_push(&c.out, m[k].id);
      pos = m[k].end;
    }
  }
  free(m);
done:
  free(clean.p);
  free(c.norm.p);
  free(c.pieces.p);
  free(c.tmp.p);
  tok_cache_free(c.cache);
  if (st != MIMO_OK) {
    free(c.out.p);
    return st;
  }
  if (!c.out.p && !(c.out.p = malloc(sizeof(int))))
    return mimo_errf(MIMO_E_NOMEM, "tokenizer: out of memory");
  *ids = c.out.p;
  *n = c.out.n;
  return MIMO_OK;
}

/* Raw bytes of id for decoding, or NULL when it is skipped. */
static const char *dec_piece(const mimo_tok *t, int id, int skip_special, size_t *len) {
  if (id < 0 || id >= t->vocab_size || t->dec_len[id] == UINT32_MAX)
    return NULL; /* unknown ids are dropped, as the reference library does */
  if (skip_special && t->is_special[id])
    return NULL;
  *len = t->dec_len[id];
  return t->dec_bytes + t->dec_off[id];
}

mimo_status mimo_tok_decode(const mimo_tok *t, const int *ids, size_t n, int skip_special, char **text,
                            size_t *len) {
  *text = NULL;
  *len = 0;
  tok_buf raw = {0}, out = {0};
  mimo_status st = MIMO_OK;
  int first = 1;
  for (size_t i = 0; i < n && st == MIMO_OK; i++) {
    size_t l;
    const char *p = dec_piece(t, ids[i], skip_special, &l);
    if (!p)
      continue;
    if (t->decoder == TOK_DEC_NONE && !first)
      st = tok_buf_put(&raw, " ", 1); /* no decoder: tokens joined by spaces */
    if (st == MIMO_OK)
      st = tok_buf_put(&raw, p, l);
    first = 0;
  }
  if (st == MIMO_OK)
    st = tok_utf8_sanitize(raw.p ? raw.p : "", raw.n, &out);
  if (st == MIMO_OK)
    st = tok_buf_put(&out, "", 1);
  free(raw.p);
  if (st != MIMO_OK) {
    free(out.p);
    return st;
  }
  *text = out.p;
  *len = out.n - 1;
  return MIMO_OK;
}

/* ---- streaming ---- */

void mimo_detok_init(mimo_detok *d, const mimo_tok *t, int skip_special) {
  memset(d, 0, sizeof *d);
  d->tok = t;
  d->skip_special = skip_special;
}

void mimo_detok_free(mimo_detok *d) {
  if (!d)
    return;
  free(d->out);
  d->out = NULL;
  d->out_cap = d->out_len = 0;
}

static mimo_status out_put(mimo_detok *d, const void *p, size_t n) {
  if (d->out_len + n + 1 > d->out_cap) {
    size_t cap = d->out_cap ? d->out_cap : 64;
    while (cap < d->out_len + n + 1)
      cap *= 2;
    char *q = realloc(d->out, cap);
    if (!q)
      return mimo_errf(MIMO_E_NOMEM, "tokenizer: out of memory");
    d->out = q;
    d->out_cap = cap;
  }
  memcpy(d->out + d->out_len, p, n);
  d->out_len += n;
  d->out[d->out_len] = 0;
  return MIMO_OK;
}

/* Emits complete characters of s; an unfinished tail goes to d->pend unless
 * final, where it becomes U+FFFD like the batch decoder. */
static mimo_status drain(mimo_detok *d, const unsigned char *s, size_t n, int final) {
  size_t i = 0, run = 0;
  while (i < n) {
    uint32_t cp;
    int l = s[i] < 0x80 ? 1 : tok_utf8_next(s + i, n - i, &cp);
    if (l) {
      i += (size_t)l;
      continue;
    }
    size_t bad = tok_utf8_bad_len(s + i, n - i);
    MIMO_TRY(out_put(d, s + run, i - run));
    if (!final && i + bad == n && s[i] >= 0xC2 && s[i] <= 0xF4) {
      memcpy(d->pend, s + i, bad); /* may still be completed by the next token */
      d->npend = bad;
      return MIMO_OK;
    }
    MIMO_TRY(out_put(d, "\xEF\xBF\xBD", 3));
    i += bad;
    run = i;
  }
  return out_put(d, s + run, n - run);
}

mimo_status mimo_detok_push(mimo_detok *d, int id, const char **text, size_t *len) {
  d->out_len = 0;
  MIMO_TRY(out_put(d, "", 0));
  size_t l;
  const char *p = dec_piece(d->tok, id, d->skip_special, &l);
  if (p) {
    unsigned char sb[256];
    size_t need = d->npend + l + 1;
    unsigned char *w = need <= sizeof sb ? sb : malloc(need);
    if (!w)
      return mimo_errf(MIMO_E_NOMEM, "tokenizer: out of memory");
    size_t k = 0;
    if (d->tok->decoder == TOK_DEC_NONE && d->started)
      w[k++] = ' ';
    memcpy(w + k, d->pend, d->npend);
    k += d->npend;
    memcpy(w + k, p, l);
    k += l;
    d->npend = 0;
    d->started = 1;
    mimo_status st = drain(d, w, k, 0);
    if (w != sb)
      free(w);
    MIMO_TRY(st);
  }
  *text = d->out;
  *len = d->out_len;
  return MIMO_OK;
}

mimo_status mimo_detok_flush(mimo_detok *d, const char **text, size_t *len) {
  d->out_len = 0;
  MIMO_TRY(out_put(d, "", 0));
  unsigned char w[8];
  size_t k = d->npend;
  memcpy(w, d->pend, k);
  d->npend = 0;
  MIMO_TRY(drain(d, w, k, 1));
  *text = d->out;
  *len = d->out_len;
  return MIMO_OK;
}
