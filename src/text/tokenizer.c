/* Tokenizer front end: loads tokenizer.json (+ tokenizer_config.json flags) and
 * runs the pipeline added tokens -> normaliser -> pre-tokeniser -> BPE. */
#include "text/tokenizer.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/fileio.h"
#include "text/tok_internal.h"

#define TOK_MAX_FILE ((size_t)1 << 30)

void mimo_tok_free(mimo_tok *t) {
  if (!t)
    return;
  tok_bpe_free(&t->bpe);
  tok_pretok_free(&t->pretok);
  for (size_t i = 0; i < t->n_added; i++)
    free(t->added[i].content);
  free(t->added);
  tok_trie_free(t->trie_raw);
  tok_trie_free(t->trie_norm);
  tok_strmap_free(&t->added_map);
  free(t->dec_off);
  free(t->dec_len);
  free(t->dec_bytes);
  free(t->is_special);
  free(t);
}

static int flag(json_t *o, const char *k, int dflt) {
  json_t *v = json_object_get(o, k);
  return json_is_boolean(v) ? json_is_true(v) : dflt;
}

static mimo_status parse_added_one(tok_added *a, json_t *e, const char *where) {
  json_t *c = json_object_get(e, "content");
  if (!json_is_string(c))
    return mimo_errf(MIMO_E_FORMAT, "%s: added token without a \"content\" string", where);
  a->len = json_string_length(c);
  a->content = malloc(a->len + 1);
  if (!a->content)
    return mimo_errf(MIMO_E_NOMEM, "tokenizer: out of memory");
  memcpy(a->content, json_string_value(c), a->len + 1);
  a->special = (unsigned)flag(e, "special", 0);
  a->lstrip = (unsigned)flag(e, "lstrip", 0);
  a->rstrip = (unsigned)flag(e, "rstrip", 0);
  a->single_word = (unsigned)flag(e, "single_word", 0);
  a->normalized = (unsigned)flag(e, "normalized", !a->special);
  return MIMO_OK;
}

static mimo_status push_added(mimo_tok *t, size_t *cap, tok_added a) {
  if (t->n_added == *cap) {
    size_t nc = *cap ? *cap * 2 : 64;
    tok_added *p = realloc(t->added, nc * sizeof *p);
    if (!p) {
      free(a.content);
      return mimo_errf(MIMO_E_NOMEM, "tokenizer: out of memory");
    }
    t->added = p;
    *cap = nc;
  }
  t->added[t->n_added++] = a;
  return MIMO_OK;
}

static mimo_status parse_added(mimo_tok *t, json_t *arr, json_t *cfg_dec) {
  size_t cap = 0, i;
  json_t *e;
  if (arr && !json_is_array(arr))
    return mimo_errf(MIMO_E_FORMAT, "tokenizer.json: \"added_tokens\" is not an array");
  json_array_foreach(arr, i, e) {
    tok_added a = {0};
    json_t *id = json_object_get(e, "id");
    if (!json_is_integer(id) || json_integer_value(id) < 0 || json_integer_value(id) > 0x7FFFFFFF)
      return mimo_errf(MIMO_E_FORMAT, "tokenizer.json: added_tokens[%zu] has no valid \"id\"", i);
    a.id = (int)json_integer_value(id);
    MIMO_TRY(parse_added_one(&a, e, "tokenizer.json"));
    MIMO_TRY(push_added(t, &cap, a));
  }
  /* tokenizer_config.json's added_tokens_decoder overrides flags by id (what
   * transformers does when it loads the pair) and may add tokens. */
  if (json_is_object(cfg_dec)) {
    const char *key;
    json_t *v;
    json_object_foreach(cfg_dec, key, v) {
      char *end;
      long id = strtol(key, &end, 10);
      if (*end || id < 0 || id > 0x7FFFFFFF || !json_is_object(v))
        return mimo_errf(MIMO_E_FORMAT, "tokenizer_config.json: added_tokens_decoder[\"%s\"] is malformed", key);
      tok_added a = {0};
      a.id = (int)id;
      MIMO_TRY(parse_added_one(&a, v, "tokenizer_config.json"));
      size_t k = 0;
      while (k < t->n_added && t->added[k].id != a.id)
        k++;
      if (k < t->n_added) {
        free(t->added[k].content);
        t->added[k] = a;
      } else {
        MIMO_TRY(push_added(t, &cap, a));
      }
    }
  }
  return MIMO_OK;
}

static mimo_status build_added(mimo_tok *t) {
  MIMO_TRY(tok_strmap_init(&t->added_map, (uint32_t)t->n_added + 8));
  int *raw = malloc((t->n_added + 1) * sizeof *raw), *nrm = malloc((t->n_added + 1) * sizeof *nrm);
  size_t nr = 0, nn = 0;
  mimo_status st = raw && nrm ? MIMO_OK : mimo_errf(MIMO_E_NOMEM, "tokenizer: out of memory");
  for (size_t i = 0; i < t->n_added && st == MIMO_OK; i++) {
    tok_added *a = &t->added[i];
    if (tok_strmap_get(&t->added_map, a->content, a->len) < 0)
      st = tok_strmap_put(&t->added_map, a->content, a->len, a->id);
    if (a->normalized && t->norm.n) {
      /* normalized tokens are matched in normalised text: normalise them too */
      tok_buf b = {0};
      st = tok_norm_apply(&t->norm, a->content, a->len, &b);
      if (st == MIMO_OK && (st = tok_buf_put(&b, "", 1)) == MIMO_OK) {
        free(a->content);
        a->content = b.p;
        a->len = b.n - 1;
      } else {
        free(b.p);
      }
    }
    if (a->normalized)
      nrm[nn++] = (int)i;
    else
      raw[nr++] = (int)i;
  }
  if (st == MIMO_OK) {
    t->trie_raw = nr ? tok_trie_build(t->added, raw, nr) : NULL;
    t->trie_norm = nn ? tok_trie_build(t->added, nrm, nn) : NULL;
    if ((nr && !t->trie_raw) || (nn && !t->trie_norm))
      st = mimo_errf(MIMO_E_NOMEM, "tokenizer: out of memory");
  }
  free(raw);
  free(nrm);
  return st;
}

static mimo_status parse_decoder(mimo_tok *t, json_t *d) {
  t->decoder = TOK_DEC_NONE;
  if (!d || json_is_null(d))
    return MIMO_OK;
  const char *type = json_string_value(json_object_get(d, "type"));
  if (type && strcmp(type, "ByteLevel") == 0) {
    t->decoder = TOK_DEC_BYTELEVEL;
    return MIMO_OK;
  }
  return mimo_errf(MIMO_E_CONFIG, "tokenizer.json: unsupported decoder \"%s\" (supported: ByteLevel, null)",
                   type ? type : "(no type)");
}

/* Per-id decode bytes: a token whose every character is in the byte-level
 * alphabet stands for those bytes; any other token for its own UTF-8. */
static mimo_status build_decode(mimo_tok *t) {
  size_t n = (size_t)t->vocab_size;
  const char **str = calloc(n, sizeof *str);
  uint32_t *slen = calloc(n, sizeof *slen);
  t->dec_off = calloc(n, sizeof *t->dec_off);
  t->dec_len = calloc(n, sizeof *t->dec_len);
  t->is_special = calloc(n, 1);
  tok_buf b = {0};
  mimo_status st = MIMO_OK;
  if (!str || !slen || !t->dec_off || !t->dec_len || !t->is_special)
    st = mimo_errf(MIMO_E_NOMEM, "tokenizer: out of memory");
  const tok_strmap *v = &t->bpe.vocab;
  for (uint32_t e = 0; st == MIMO_OK && e < v->n; e++) {
    int id = v->val[e];
    if (!str[id]) {
      str[id] = v->keys.p + v->koff[e];
      slen[id] = v->klen[e];
    }
  }
  for (size_t i = t->n_added; st == MIMO_OK && i-- > 0;) { /* added tokens take precedence */
    str[t->added[i].id] = t->added[i].content;
    slen[t->added[i].id] = (uint32_t)t->added[i].len;
    t->is_special[t->added[i].id] = t->added[i].special;
  }
  for (size_t id = 0; st == MIMO_OK && id < n; id++) {
    if (!str[id]) {
      t->dec_len[id] = UINT32_MAX; /* no token */
      continue;
    }
    const unsigned char *s = (const unsigned char *)str[id];
    size_t len = slen[id], start = b.n;
    int ok = t->decoder == TOK_DEC_BYTELEVEL;
    for (size_t i = 0; ok && i < len;) {
      uint32_t cp;
      int l = tok_utf8_next(s + i, len - i, &cp), by;
      if (!l || (by = tok_cp_to_byte(cp)) < 0) {
        ok = 0;
        break;
      }
      unsigned char c = (unsigned char)by;
      if ((st = tok_buf_put(&b, &c, 1)) != MIMO_OK)
        break;
      i += (size_t)l;
    }
    if (!ok && st == MIMO_OK) {
      b.n = start;
      st = tok_buf_put(&b, s, len);
    }
    t->dec_off[id] = (uint32_t)start;
    t->dec_len[id] = (uint32_t)(b.n - start);
  }
  t->dec_bytes = b.p;
  free(str);
  free(slen);
  return st;
}

static mimo_status load_parsed(mimo_tok *t, json_t *root, json_t *cfg) {
  if (!json_is_object(root))
    return mimo_errf(MIMO_E_FORMAT, "tokenizer.json: top level is not an object");
  json_t *model = json_object_get(root, "model");
  if (!json_is_object(model))
    return mimo_errf(MIMO_E_FORMAT, "tokenizer.json: \"model\" is missing");
  MIMO_TRY(tok_norm_parse(&t->norm, json_object_get(root, "normalizer")));
  MIMO_TRY(tok_pretok_parse(&t->pretok, json_object_get(root, "pre_tokenizer")));
  MIMO_TRY(parse_decoder(t, json_object_get(root, "decoder")));
  MIMO_TRY(tok_bpe_parse(&t->bpe, model, t->pretok.byte_level));
  MIMO_TRY(parse_added(t, json_object_get(root, "added_tokens"), json_object_get(cfg, "added_tokens_decoder")));
  MIMO_TRY(build_added(t));
  int maxid = -1;
  for (uint32_t e = 0; e < t->bpe.vocab.n; e++)
    if (t->bpe.vocab.val[e] > maxid)
      maxid = t->bpe.vocab.val[e];
  for (size_t i = 0; i < t->n_added; i++)
    if (t->added[i].id > maxid)
      maxid = t->added[i].id;
  if (maxid >= (1 << 26))
    return mimo_errf(MIMO_E_FORMAT, "tokenizer.json: token id %d is implausibly large", maxid);
  t->vocab_size = maxid + 1;
  return build_decode(t);
}

mimo_status mimo_tok_load_json(const char *json, size_t len, const char *config_json, size_t config_len,
                               mimo_tok **out) {
  *out = NULL;
  json_error_t err;
  json_t *root = json_loadb(json, len, JSON_ALLOW_NUL, &err);
  if (!root)
    return mimo_errf(MIMO_E_FORMAT, "tokenizer.json: line %d: %s", err.line, err.text);
  json_t *cfg = NULL;
  if (config_json) {
    /* reals: transformers writes model_max_length values beyond 64 bits */
    cfg = json_loadb(config_json, config_len, JSON_ALLOW_NUL | JSON_DECODE_INT_AS_REAL, &err);
    if (!cfg) {
      json_decref(root);
      return mimo_errf(MIMO_E_FORMAT, "tokenizer_config.json: line %d: %s", err.line, err.text);
    }
  }
  mimo_tok *t = calloc(1, sizeof *t);
  mimo_status st = t ? load_parsed(t, root, cfg) : mimo_errf(MIMO_E_NOMEM, "tokenizer: out of memory");
  json_decref(root);
  json_decref(cfg);
  if (st != MIMO_OK) {
    mimo_tok_free(t);
    return st;
  }
  *out = t;
  return MIMO_OK;
}

mimo_status mimo_tok_load(const char *dir, mimo_tok **out) {
  *out = NULL;
  char path[4096];
  char *body = NULL, *cfg = NULL;
  size_t blen = 0, clen = 0;
  snprintf(path, sizeof path, "%s/tokenizer.json", dir);
  MIMO_TRY(mimo_read_file(path, &body, &blen, TOK_MAX_FILE));
  snprintf(path, sizeof path, "%s/tokenizer_config.json", dir);
  if (mimo_file_exists(path)) {
    mimo_status st = mimo_read_file(path, &cfg, &clen, TOK_MAX_FILE);
    if (st != MIMO_OK) {
      free(body);
      return st;
    }
  }
  mimo_status st = mimo_tok_load_json(body, blen, cfg, clen, out);
  free(body);
  free(cfg);
  if (st != MIMO_OK)
    return mimo_err_prefix(st, "%s", dir);
  return MIMO_OK;
}

int mimo_tok_vocab_size(const mimo_tok *t) { return t->vocab_size; }

int mimo_tok_token_id(const mimo_tok *t, const char *s) {
  size_t n = strlen(s);
  int id = tok_strmap_get(&t->added_map, s, n);
  return id >= 0 ? id : tok_strmap_get(&t->bpe.vocab, s, n);
}

const char *mimo_tok_token_bytes(const mimo_tok *t, int id, size_t *len) {
  if (id < 0 || id >= t->vocab_size || t->dec_len[id] == UINT32_MAX)
    return NULL;
  *len = t->dec_len[id];
  return t->dec_bytes + t->dec_off[id];
}

int mimo_tok_is_special(const mimo_tok *t, int id) {
  return id >= 0 && id < t->vocab_size && t->is_special[id];
}

int mimo_tok_is_added(const mimo_tok *t, int id) {
  for (size_t i = 0; i < t->n_added; i++)
    if (t->added[i].id == id)
      return 1;
  return 0;
}
