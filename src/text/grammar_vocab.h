/* The vocabulary side of structured outputs: which token ids a JSON grammar state allows (text/json_grammar.h),
 * found by walking a trie of every token's bytes with the matcher and cutting each branch at the first byte it
 * refuses; and the engine constraint (engine/constraint.h) that runs one grammar for one request. */
#ifndef MIMO_TEXT_GRAMMAR_VOCAB_H
#define MIMO_TEXT_GRAMMAR_VOCAB_H
#include <stdint.h>

#include "engine/constraint.h"
#include "text/json_grammar.h"
#include "text/tokenizer.h"

typedef struct mimo_gvocab mimo_gvocab;

/* Tries over the tokenizer's ordinary tokens (special tokens never match grammar text). */
mimo_status mimo_gvocab_new(const mimo_tok *t, mimo_gvocab **out);
void mimo_gvocab_free(mimo_gvocab *v);
/* The states mimo_gvocab_mask needs as scratch: one per byte of the longest token. */
int mimo_gvocab_scratch_states(const mimo_gvocab *v);
/* Sets the bits of the ids that may follow s (allow: V bits, V >= the tokenizer's ids; not cleared here).
 * scratch: mimo_gvocab_scratch_states(v) states. */
void mimo_gvocab_mask(const mimo_gvocab *v, const mimo_jg *g, const mimo_jg_state *s, uint32_t *allow,
                      mimo_jg_state *scratch);
/* Feeds token id's bytes; false (s unchanged) when the grammar refuses them. */
bool mimo_gvocab_feed(const mimo_gvocab *v, const mimo_jg *g, mimo_jg_state *s, int id);

/* A constraint running g (it holds a reference: mimo_jg_ref) over v (which must outlive it) from g's start state.
 * after_token: see constraint.h. */
mimo_status mimo_grammar_constraint(const mimo_gvocab *v, const mimo_jg *g, int after_token, mimo_constraint **out);
#endif
