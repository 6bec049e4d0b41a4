/* Internal layout of mimo_tok, shared by the tok_*.c files. Not a public API. */
#ifndef MIMO_TEXT_TOK_INTERNAL_H
#define MIMO_TEXT_TOK_INTERNAL_H
#include <oniguruma.h>
#include <stddef.h>
#include <stdint.h>

#include "core/status.h"
#include "text/tokenizer.h"

/* ---- growable buffers ---- */
typedef struct {
  char *p;
  size_t n, cap;
} tok_buf;
mimo_status tok_buf_put(tok_buf *b, const void *data, size_t n);
mimo_status tok_buf_reserve(tok_buf *b, size_t extra);

typedef struct {
  int *p;
  size_t n, cap;
} tok_ids;
mimo_status tok_ids_push(tok_ids *v, int id);

/* ---- string -> int hash map (keys are copied into an arena) ---- */
typedef struct {
  uint32_t *slot; /* entry index + 1; 0 = empty */
  uint32_t mask;
  uint32_t n, cap;
  uint32_t *koff, *klen;
  int *val;
  tok_buf keys;
} tok_strmap;
mimo_status tok_strmap_init(tok_strmap *m, uint32_t expect);
void tok_strmap_free(tok_strmap *m);
/* Inserts or overwrites. */
mimo_status tok_strmap_put(tok_strmap *m, const char *k, size_t len, int val);
/* Returns the value or -1. */
int tok_strmap_get(const tok_strmap *m, const char *k, size_t len);
uint64_t tok_hash(const void *p, size_t n);

/* ---- UTF-8 / byte-level helpers (tok_unicode.c) ---- */
/* Decodes one code point at s (n bytes left); returns its byte length, or 0 if
 * the bytes there are not valid UTF-8 (then *cp is undefined). */
int tok_utf8_next(const unsigned char *s, size_t n, uint32_t *cp);
/* Length of the maximal prefix of an ill-formed sequence at s (>= 1), as the
 * WHATWG/Unicode "U+FFFD substitution of maximal subparts" defines it. */
size_t tok_utf8_bad_len(const unsigned char *s, size_t n);
/* Appends s with every ill-formed subsequence replaced by U+FFFD. */
mimo_status tok_utf8_sanitize(const char *s, size_t n, tok_buf *out);
/* 1 if s is entirely valid UTF-8. */
int tok_utf8_valid(const char *s, size_t n);
int tok_utf8_encode(uint32_t cp, char *out);
/* GPT-2 byte <-> printable code point map. */
uint32_t tok_byte_to_cp(unsigned char b);
int tok_cp_to_byte(uint32_t cp); /* -1 if cp is not in the map */
int tok_is_whitespace(uint32_t cp);
int tok_is_alnum(uint32_t cp);
int tok_is_numeric(uint32_t cp);

/* ---- normaliser (tok_norm.c) ---- */
enum { TOK_NORM_NFC, TOK_NORM_NFD, TOK_NORM_NFKC, TOK_NORM_NFKD };
typedef struct {
  int steps[8];
  int n;
} tok_norm;
mimo_status tok_norm_parse(tok_norm *nm, const void *json_node);
/* Appends the normal form of s to out. */
mimo_status tok_norm_apply(const tok_norm *nm, const char *s, size_t n, tok_buf *out);

/* ---- pre-tokeniser (tok_pretok.c) ---- */
enum { TOK_PT_SPLIT, TOK_PT_BYTELEVEL, TOK_PT_DIGITS };
enum { TOK_SPLIT_REMOVED, TOK_SPLIT_ISOLATED, TOK_SPLIT_PREV, TOK_SPLIT_NEXT, TOK_SPLIT_CONTIGUOUS };
typedef struct {
  int kind;
  regex_t *re; /* Split (pattern) or ByteLevel with use_regex */
  int behavior, invert;
  int add_prefix_space; /* ByteLevel */
  int individual;       /* Digits */
} tok_pt_step;
typedef struct {
  tok_pt_step steps[8];
  int n;
  int byte_level; /* a ByteLevel step is present: BPE sees bytes */
} tok_pretok;
typedef struct {
  uint32_t off, len;
} tok_span;
typedef struct {
  tok_span *p;
  size_t n, cap;
} tok_spans;
mimo_status tok_pretok_parse(tok_pretok *pt, const void *json_node);
void tok_pretok_free(tok_pretok *pt);
/* Splits text[off, off+len) of *buf into pieces (spans into *buf, which may grow
 * when a step inserts text such as a prefix space). */
mimo_status tok_pretok_run(const tok_pretok *pt, tok_buf *buf, tok_span in, tok_spans *out, tok_spans *tmp);
mimo_status tok_compile_regex(const char *pat, size_t len, regex_t **out, const char *what);

/* ---- added tokens (tok_added.c) ---- */
typedef struct {
  char *content;
  size_t len;
  int id;
  unsigned special : 1, lstrip : 1, rstrip : 1, single_word : 1, normalized : 1;
} tok_added;
typedef struct tok_trie tok_trie;
typedef struct {
  size_t start, end; /* span in the searched text, after lstrip/rstrip */
  int id;
} tok_match;
tok_trie *tok_trie_build(const tok_added *toks, const int *which, size_t n);
void tok_trie_free(tok_trie *t);
/* All non-overlapping added-token matches in s, leftmost-longest, with the
 * token flags applied. */
mimo_status tok_trie_find(const tok_trie *t, const tok_added *toks, const char *s, size_t n, tok_match **out,
                          size_t *nout);

/* ---- BPE model (tok_bpe.c) ---- */
typedef struct {
  uint64_t *key; /* (left << 32 | right) + 1; 0 = empty */
  int32_t *rank, *merged;
  uint32_t mask, n;
} tok_pairmap;
typedef struct {
  tok_strmap vocab;
  tok_pairmap pairs;
  int byte_id[256]; /* id of each single byte (byte-level), -1 if absent */
  int unk_id, fuse_unk, ignore_merges;
} tok_bpe;
mimo_status tok_bpe_parse(tok_bpe *m, const void *model_node, int byte_level);
void tok_bpe_free(tok_bpe *m);
typedef struct tok_cache tok_cache;
tok_cache *tok_cache_new(void);
void tok_cache_free(tok_cache *c);
/* Encodes one pre-token (raw bytes if byte_level, else UTF-8 text) into out. */
mimo_status tok_bpe_word(const tok_bpe *m, int byte_level, const char *w, size_t n, tok_cache *cache,
                         tok_ids *out);

/* ---- the tokenizer ---- */
enum { TOK_DEC_NONE, TOK_DEC_BYTELEVEL };
struct mimo_tok {
  tok_bpe bpe;
  tok_norm norm;
  tok_pretok pretok;
  int decoder;
  tok_added *added;
  size_t n_added;
  tok_trie *trie_raw, *trie_norm; /* normalized=false / normalized=true tokens */
  tok_strmap added_map;           /* content -> id */
  int vocab_size;
  /* per id: decoded bytes and flags */
  uint32_t *dec_off, *dec_len;
  char *dec_bytes;
  unsigned char *is_special;
};

#endif
