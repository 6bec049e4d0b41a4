/* Byte-level BPE tokenizer loaded from a Hugging Face tokenizer.json; produces the
 * same ids as the Rust `tokenizers` library (see docs/tokenizer.md). A loaded
 * mimo_tok is immutable: encode/decode may run concurrently from many threads. */
#ifndef MIMO_TEXT_TOKENIZER_H
#define MIMO_TEXT_TOKENIZER_H
#include <stddef.h>

#include "core/status.h"

typedef struct mimo_tok mimo_tok;

/* Reads DIR/tokenizer.json and, when present, DIR/tokenizer_config.json
 * (added_tokens_decoder flags). */
mimo_status mimo_tok_load(const char *model_dir, mimo_tok **out);
/* Same, from a tokenizer.json body in memory (config_json may be NULL). */
mimo_status mimo_tok_load_json(const char *json, size_t len, const char *config_json, size_t config_len,
                               mimo_tok **out);
void mimo_tok_free(mimo_tok *t);

/* text -> ids (*ids malloc'd, caller frees). Added/special tokens in the text are
 * matched; no BOS/EOS is added. Invalid UTF-8 bytes become U+FFFD first. */
mimo_status mimo_tok_encode(const mimo_tok *t, const char *text, size_t len, int **ids, size_t *n);
/* ids -> text (*text malloc'd and NUL-terminated). Unknown ids are skipped;
 * byte sequences that are not UTF-8 become U+FFFD. */
mimo_status mimo_tok_decode(const mimo_tok *t, const int *ids, size_t n, int skip_special, char **text,
                            size_t *len);
/* For text that leaves the program (the server's JSON strings): the length (1-4) of the well-formed UTF-8 sequence
 * at s, n bytes left; or 0 when the bytes there are ill-formed (overlong forms, surrogates, past U+10FFFF, stray
 * or truncated bytes), with *bad set to the bytes one U+FFFD replaces (Unicode's maximal subparts, as the decoder
 * does). */
size_t mimo_utf8_next(const char *s, size_t n, size_t *bad);
/* s[0..n) with every ill-formed subsequence replaced so (malloc'd, NUL-terminated; NULL on OOM). */
char *mimo_utf8_sanitize(const char *s, size_t n);
/* 1 + the largest id of the vocabulary and the added tokens. */
int mimo_tok_vocab_size(const mimo_tok *t);
/* Id of an exact token string (added tokens first, then the vocabulary); -1 if absent. */
int mimo_tok_token_id(const mimo_tok *t, const char *token_string);
/* Raw bytes of a token (byte-level decoded); NULL for an unknown id. */
const char *mimo_tok_token_bytes(const mimo_tok *t, int id, size_t *len);
/* 1 if id is an added token marked special. */
int mimo_tok_is_special(const mimo_tok *t, int id);
/* 1 if id is an added token (special or not: <think>, <tool_call>, ...). */
int mimo_tok_is_added(const mimo_tok *t, int id);

/* Streaming detokenizer: push ids one at a time; text comes out only as whole
 * UTF-8 characters (an incomplete tail is held until the next push or flush). */
typedef struct mimo_detok {
  const mimo_tok *tok;
  int skip_special;
  int started;           /* for decoders that join tokens with spaces */
  unsigned char pend[8]; /* held-back bytes of an unfinished character */
  size_t npend;
  char *out; /* text produced by the last push/flush (owned, reused) */
  size_t out_len, out_cap;
} mimo_detok;

void mimo_detok_init(mimo_detok *d, const mimo_tok *t, int skip_special);
/* Appends id; text and len give the newly completed text (valid until the next call). */
mimo_status mimo_detok_push(mimo_detok *d, int id, const char **text, size_t *len);
/* Emits what is held back (an unfinished character becomes U+FFFD). */
mimo_status mimo_detok_flush(mimo_detok *d, const char **text, size_t *len);
void mimo_detok_free(mimo_detok *d);

#endif
