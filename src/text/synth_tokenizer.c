/* Synthetic Qwen2-family tokenizer: byte tokens, merges trained on a built-in
 * English/code sample (most frequent pair first), seeded filler merges up to the
 * requested size, MiMo's added tokens at the end. */
#include "text/synth_tokenizer.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "text/tok_internal.h"

static const char QWEN2_RE[] = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+"
                               "[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

static const struct {
  const char *s;
  int special;
} ADDED[MIMO_SYNTH_TOK_N_ADDED] = {
    {"<|endoftext|>", 1},      {"<|im_start|>", 1},       {"<|im_end|>", 1},         {"<|object_ref_start|>", 1},
    {"<|object_ref_end|>", 1}, {"<|box_start|>", 1},      {"<|box_end|>", 1},        {"<|quad_start|>", 1},
    {"<|quad_end|>", 1},       {"<|vision_start|>", 1},   {"<|vision_end|>", 1},     {"<|vision_pad|>", 1},
    {"<|image_pad|>", 1},      {"<|video_pad|>", 1},      {"<tool_call>", 0},        {"</tool_call>", 0},
    {"<|fim_prefix|>", 1},     {"<|fim_middle|>", 1},     {"<|fim_suffix|>", 1},     {"<|fim_pad|>", 1},
    {"<|repo_name|>", 1},      {"<|file_sep|>", 1},       {"<tool_response>", 0},    {"</tool_response>", 0},
    {"<think>", 0},            {"</think>", 0},           {"<|audio_pad|>", 1},      {"<|mimo_video_start|>", 1},
    {"<|mimo_video_end|>", 1}, {"<|mimo_audio_eod|>", 1}, {"<|mimo_audio_start|>", 1}, {"<|mimo_audio_end|>", 1},
};

static const char CORPUS[] =
    "The quick brown fox jumps over the lazy dog. This is a test of the tokenizer, and it should learn the most "
    "common pairs of letters in English text: the, and, that, with, this, from, there, which, their, would, "
    "about, these, other, into, more, some, time, only, could, when, then, them, what, were, have, been, will. "
    "You are MiMo, a helpful AI assistant engineered by Xiaomi. Hello! How can I help you today? I think that "
    "the answer is yes, but let me check the details first. We're going to compute the result step by step.\n"
    "def main(args):\n    for i in range(len(args)):\n        if args[i] is None:\n            return False\n"
    "    return True\n\nimport os\nimport sys\nclass Tokenizer(object):\n    def __init__(self, path):\n"
    "        self.path = path\n        self.vocab = {}\n\n    def encode(self, text):\n        return [self.vocab[t] "
    "for t in text]\n\nint main(int argc, char **argv) {\n  for (int i = 0; i < argc; i++) {\n    printf(\"%s\\n\", "
    "argv[i]);\n  }\n  return 0;\n}\n\nconst result = await fetch(url, { method: 'POST', body: JSON.stringify(data) "
    "});\nfunction add(a, b) { return a + b; }\nstatic const char *name = \"value\";\n"
    "The function returns the value of the string. The number of tokens in the input is the length of the list. "
    "In the beginning there was the word, and the word was with the model. Reasoning models think before they "
    "answer: <think> first consider the question, then the constraints, then the answer </think>.\n";

typedef struct {
  char *s;
  size_t n;
} tstr;

typedef struct {
  tstr *tok;
  int n, cap;
  tok_strmap index; /* raw bytes -> id */
  tok_buf merges;   /* "a b\0" strings in byte-level form, concatenated */
  int n_merges;
} vocab;

static mimo_status add_tok(vocab *v, const char *s, size_t n, int *id) {
  if (v->n == v->cap) {
    int cap = v->cap ? v->cap * 2 : 1024;
    tstr *p = realloc(v->tok, (size_t)cap * sizeof *p);
    if (!p)
      return mimo_errf(MIMO_E_NOMEM, "synth tokenizer: out of memory");
    v->tok = p;
    v->cap = cap;
  }
  char *c = malloc(n ? n : 1);
  if (!c)
    return mimo_errf(MIMO_E_NOMEM, "synth tokenizer: out of memory");
  memcpy(c, s, n);
  v->tok[v->n] = (tstr){c, n};
  *id = v->n++;
  return tok_strmap_put(&v->index, s, n, *id);
}

/* Appends the byte-level (GPT-2 alphabet) spelling of raw bytes. */
static mimo_status put_bl(tok_buf *b, const char *s, size_t n) {
  for (size_t i = 0; i < n; i++) {
    char u[4];
    int l = tok_utf8_encode(tok_byte_to_cp((unsigned char)s[i]), u);
    MIMO_TRY(tok_buf_put(b, u, (size_t)l));
  }
  return MIMO_OK;
}

static mimo_status add_merge(vocab *v, int a, int b) {
  MIMO_TRY(put_bl(&v->merges, v->tok[a].s, v->tok[a].n));
  MIMO_TRY(tok_buf_put(&v->merges, " ", 1));
  MIMO_TRY(put_bl(&v->merges, v->tok[b].s, v->tok[b].n));
  MIMO_TRY(tok_buf_put(&v->merges, "", 1));
  v->n_merges++;
  return MIMO_OK;
}

/* Training words: runs of letters (with one leading space), single digits,
 * punctuation runs and whitespace runs, roughly as the Qwen2 regex splits. */
typedef struct {
  int *sym;
  int n, count;
} word;

static int cls(unsigned char c) {
  if ((c | 32) >= 'a' && (c | 32) <= 'z')
    return 1;
  if (c >= '0' && c <= '9')
    return 2;
  if (c == ' ' || c == '\n' || c == '\t')
    return 3;
  return 4;
}

static mimo_status split_corpus(vocab *v, word **out, int *nw) {
  tok_strmap seen;
  MIMO_TRY(tok_strmap_init(&seen, 1024));
  word *w = NULL;
  int n = 0, cap = 0;
  mimo_status st = MIMO_OK;
  const unsigned char *s = (const unsigned char *)CORPUS;
  size_t len = sizeof CORPUS - 1, i = 0;
  while (i < len && st == MIMO_OK) {
    size_t j = i;
    if (s[j] == ' ' && j + 1 < len && cls(s[j + 1]) == 1)
      j++;
    int c = cls(s[j]);
    j++;
    if (c != 2)
      while (j < len && cls(s[j]) == c && !(c == 3 && s[j - 1] == '\n'))
        j++;
    int k = tok_strmap_get(&seen, (const char *)s + i, j - i);
    if (k >= 0) {
      w[k].count++;
    } else {
      if (n == cap) {
        cap = cap ? cap * 2 : 256;
        word *p = realloc(w, (size_t)cap * sizeof *p);
        if (!p) {
          st = mimo_errf(MIMO_E_NOMEM, "synth tokenizer: out of memory");
          break;
        }
        w = p;
      }
      w[n].sym = malloc((j - i) * sizeof(int));
      if (!w[n].sym) {
        st = mimo_errf(MIMO_E_NOMEM, "synth tokenizer: out of memory");
        break;
      }
      w[n].n = (int)(j - i);
      w[n].count = 1;
      for (size_t q = i; q < j; q++)
        w[n].sym[q - i] = tok_strmap_get(&v->index, (const char *)s + q, 1);
      st = tok_strmap_put(&seen, (const char *)s + i, j - i, n);
      n++;
    }
    i = j;
  }
  tok_strmap_free(&seen);
  *out = w;
  *nw = n;
  return st;
}

/* One training step: merge the most frequent adjacent pair (ties: lowest ids).
 * Returns 0 when no pair occurs twice. */
static mimo_status train_step(vocab *v, word *w, int nw, int *done) {
  enum { SZ = 1 << 14 }; /* the sample has far fewer distinct pairs */
  static _Thread_local uint64_t key[SZ];
  static _Thread_local int cnt[SZ];
  memset(key, 0, sizeof key);
  int ba = -1, bb = -1, bc = 1;
  for (int i = 0; i < nw; i++)
    for (int k = 0; k + 1 < w[i].n; k++) {
      uint64_t kk = (((uint64_t)(uint32_t)w[i].sym[k] << 32) | (uint32_t)w[i].sym[k + 1]) + 1;
      uint32_t h = (uint32_t)((kk * 0x9E3779B97F4A7C15ull) >> 50);
      while (key[h] && key[h] != kk)
        h = (h + 1) & (SZ - 1);
      if (!key[h]) {
        key[h] = kk;
        cnt[h] = 0;
      }
      cnt[h] += w[i].count;
    }
  for (uint32_t h = 0; h < SZ; h++) {
    if (!key[h])
      continue;
    int a = (int)((key[h] - 1) >> 32), b = (int)((key[h] - 1) & 0xFFFFFFFFu), c = cnt[h];
    if (c > bc || (c == bc && ba >= 0 && (a < ba || (a == ba && b < bb)))) {
      ba = a;
      bb = b;
      bc = c;
    }
  }
  if (ba < 0) {
    *done = 1;
    return MIMO_OK;
  }
  size_t n = v->tok[ba].n + v->tok[bb].n;
  char buf[256];
  if (n > sizeof buf) {
    *done = 1;
    return MIMO_OK;
  }
  memcpy(buf, v->tok[ba].s, v->tok[ba].n);
  memcpy(buf + v->tok[ba].n, v->tok[bb].s, v->tok[bb].n);
  int id = tok_strmap_get(&v->index, buf, n);
  if (id < 0)
    MIMO_TRY(add_tok(v, buf, n, &id));
  MIMO_TRY(add_merge(v, ba, bb));
  for (int i = 0; i < nw; i++) {
    int o = 0;
    for (int k = 0; k < w[i].n; k++) {
      if (k + 1 < w[i].n && w[i].sym[k] == ba && w[i].sym[k + 1] == bb) {
        w[i].sym[o++] = id;
        k++;
      } else {
        w[i].sym[o++] = w[i].sym[k];
      }
    }
    w[i].n = o;
  }
  return MIMO_OK;
}

static uint64_t next_rand(uint64_t *s) {
  uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

static mimo_status build_vocab(vocab *v, int n_regular, uint64_t seed) {
  MIMO_TRY(tok_strmap_init(&v->index, (uint32_t)n_regular + 16));
  for (int b = 0; b < 256; b++) {
    char c = (char)b;
    int id;
    MIMO_TRY(add_tok(v, &c, 1, &id));
  }
  word *w = NULL;
  int nw = 0, done = 0;
  mimo_status st = split_corpus(v, &w, &nw);
  while (st == MIMO_OK && !done && v->n < n_regular)
    st = train_step(v, w, nw, &done);
  for (int i = 0; i < nw; i++)
    free(w[i].sym);
  free(w);
  MIMO_TRY(st);
  /* filler: merges of two existing tokens (printable-looking ones preferred) */
  uint64_t rs = seed;
  long tries = 0;
  while (v->n < n_regular) {
    if (++tries > 100L * n_regular)
      return mimo_errf(MIMO_E_INTERNAL, "synth tokenizer: could not find %d distinct merges", n_regular);
    int a = (int)(next_rand(&rs) % (uint64_t)v->n), b = (int)(next_rand(&rs) % (uint64_t)v->n);
    if (v->tok[a].n + v->tok[b].n > 12 || (unsigned char)v->tok[b].s[0] == ' ' ||
        ((unsigned char)v->tok[a].s[0] < 0x20 && next_rand(&rs) % 8))
      continue;
    char buf[16];
    size_t n = v->tok[a].n + v->tok[b].n;
    memcpy(buf, v->tok[a].s, v->tok[a].n);
    memcpy(buf + v->tok[a].n, v->tok[b].s, v->tok[b].n);
    if (tok_strmap_get(&v->index, buf, n) >= 0)
      continue;
    int id;
    MIMO_TRY(add_tok(v, buf, n, &id));
    MIMO_TRY(add_merge(v, a, b));
  }
  return MIMO_OK;
}

static void vocab_free(vocab *v) {
  for (int i = 0; i < v->n; i++)
    free(v->tok[i].s);
  free(v->tok);
  tok_strmap_free(&v->index);
  free(v->merges.p);
}

static json_t *added_json(int id, const char *s, int special) {
  return json_pack("{s:i, s:s, s:b, s:b, s:b, s:b, s:b}", "id", id, "content", s, "single_word", 0, "lstrip", 0,
                   "rstrip", 0, "normalized", 0, "special", special);
}

static mimo_status dump(const char *dir, const char *name, json_t *j) {
  char path[4096];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  int rc = j ? json_dump_file(j, path, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(9)) : -1;
  json_decref(j);
  if (rc)
    return mimo_errf(MIMO_E_IO, "%s: cannot write", path);
  return MIMO_OK;
}

static json_t *byte_level_obj(void) {
  return json_pack("{s:s, s:b, s:b, s:b}", "type", "ByteLevel", "add_prefix_space", 0, "trim_offsets", 0,
                   "use_regex", 0);
}

static mimo_status write_tokenizer(const char *dir, vocab *v, int base) {
  json_t *vj = json_object(), *mj = json_array(), *aj = json_array();
  tok_buf key = {0};
  mimo_status st = MIMO_OK;
  for (int i = 0; i < v->n && st == MIMO_OK; i++) {
    key.n = 0;
    st = put_bl(&key, v->tok[i].s, v->tok[i].n);
    if (st == MIMO_OK)
      json_object_setn_new_nocheck(vj, key.p, key.n, json_integer(i));
  }
  free(key.p);
  for (size_t off = 0; off < v->merges.n; off += strlen(v->merges.p + off) + 1)
    json_array_append_new(mj, json_string(v->merges.p + off));
  for (int i = 0; i < MIMO_SYNTH_TOK_N_ADDED; i++)
    json_array_append_new(aj, added_json(base + i, ADDED[i].s, ADDED[i].special));
  json_t *model = json_pack("{s:s, s:n, s:n, s:s, s:s, s:b, s:b, s:b, s:o, s:o}", "type", "BPE", "dropout",
                            "unk_token", "continuing_subword_prefix", "", "end_of_word_suffix", "", "fuse_unk", 0,
                            "byte_fallback", 0, "ignore_merges", 0, "vocab", vj, "merges", mj);
  json_t *pre = json_pack("{s:s, s:[{s:s, s:{s:s}, s:s, s:b}, o]}", "type", "Sequence", "pretokenizers", "type",
                          "Split", "pattern", "Regex", QWEN2_RE, "behavior", "Isolated", "invert", 0, byte_level_obj());
  json_t *root = json_pack("{s:s, s:n, s:n, s:o, s:{s:s}, s:o, s:o, s:o, s:o}", "version", "1.0", "truncation",
                           "padding", "added_tokens", aj, "normalizer", "type", "NFC", "pre_tokenizer", pre,
                           "post_processor", byte_level_obj(), "decoder", byte_level_obj(), "model", model);
  if (st != MIMO_OK) {
    json_decref(root);
    return st;
  }
  return dump(dir, "tokenizer.json", root);
}

static mimo_status write_configs(const char *dir, int base) {
  json_t *dec = json_object();
  for (int i = 0; i < MIMO_SYNTH_TOK_N_ADDED; i++) {
    char k[16];
    snprintf(k, sizeof k, "%d", base + i);
    json_t *e = added_json(base + i, ADDED[i].s, ADDED[i].special);
    json_object_del(e, "id");
    json_object_set_new(dec, k, e);
  }
  json_t *cfg = json_pack("{s:b, s:b, s:o, s:n, s:b, s:s, s:s, s:i, s:s, s:b, s:s, s:n}", "add_bos_token", 0,
                          "add_prefix_space", 0, "added_tokens_decoder", dec, "bos_token", "clean_up_tokenization_spaces",
                          0, "eos_token", "<|im_end|>", "errors", "replace", "model_max_length", 1048576, "pad_token",
                          "<|endoftext|>", "split_special_tokens", 0, "tokenizer_class", "Qwen2Tokenizer", "unk_token");
  MIMO_TRY(dump(dir, "tokenizer_config.json", cfg));
  json_t *gen = json_pack("{s:[i,i,i], s:f, s:f}", "eos_token_id", base + 0, base + 2, base + 29, "temperature", 1.0,
                          "top_p", 0.95);
  return dump(dir, "generation_config.json", gen);
}

mimo_status mimo_synth_tokenizer(const char *dir, int vocab_size, uint64_t seed, mimo_synth_tok_ids *ids) {
  if (vocab_size < 256 + MIMO_SYNTH_TOK_N_ADDED || vocab_size > (1 << 22))
    return mimo_errf(MIMO_E_INVALID, "synth tokenizer: vocab_size %d outside [%d, %d]", vocab_size,
                     256 + MIMO_SYNTH_TOK_N_ADDED, 1 << 22);
  int base = vocab_size - MIMO_SYNTH_TOK_N_ADDED;
  vocab v = {0};
  mimo_status st = build_vocab(&v, base, seed);
  if (st == MIMO_OK)
    st = write_tokenizer(dir, &v, base);
  vocab_free(&v);
  MIMO_TRY(st);
  MIMO_TRY(write_configs(dir, base));
  if (ids) {
    *ids = (mimo_synth_tok_ids){.endoftext = base + 0,
                                .im_start = base + 1,
                                .im_end = base + 2,
                                .vision_start = base + 9,
                                .vision_end = base + 10,
                                .image_pad = base + 12,
                                .video_pad = base + 13,
                                .tool_call = base + 14,
                                .tool_call_end = base + 15,
                                .think = base + 24,
                                .think_end = base + 25,
                                .audio_pad = base + 26,
                                .mimo_audio_eod = base + 29,
                                .vocab_size = vocab_size};
  }
  return MIMO_OK;
}
