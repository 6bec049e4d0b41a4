/* Writes a small Qwen2-family byte-level BPE tokenizer with MiMo's 32 added
 * tokens (same order and special flags) for tests and synthetic checkpoints. */
#ifndef MIMO_TEXT_SYNTH_TOKENIZER_H
#define MIMO_TEXT_SYNTH_TOKENIZER_H
#include <stdint.h>

#include "core/status.h"

typedef struct mimo_synth_tok_ids {
  int endoftext, im_start, im_end;
  int think, think_end;
  int tool_call, tool_call_end;
  int image_pad, video_pad, vision_start, vision_end;
  int audio_pad, mimo_audio_eod;
  int vocab_size; /* total ids: regular tokens + the 32 added tokens */
} mimo_synth_tok_ids;

#define MIMO_SYNTH_TOK_N_ADDED 32

/* Writes DIR/tokenizer.json, DIR/tokenizer_config.json and
 * DIR/generation_config.json (DIR must exist). The tokenizer has exactly
 * vocab_size ids (>= 256 + 32): 256 byte tokens, merges learned from a built-in
 * English/code sample and then seeded filler merges, and the added tokens last. */
mimo_status mimo_synth_tokenizer(const char *dir, int vocab_size, uint64_t seed, mimo_synth_tok_ids *ids);

#endif
