/* Prefix cache: KV states of token prefixes, kept after the sequence that computed them moved on or ended, so that a
 * request whose prompt starts with one continues from there instead of computing it again (what vLLM calls automatic
 * prefix caching; agent harnesses resend their whole history every turn).
 *
 * An entry is a forked copy of a sequence's cache at some position M (engine/kv_cache.h, mimo_kv_fork): the full
 * layers' whole blocks shared with the sequence, its partial last block and the sliding layers' rings copied. The
 * rings are why entries are whole states rather than blocks: a sliding layer at M needs the keys of positions
 * M - window .. M - 1, which a sequence's ring holds only while it stands at M, so the engine takes entries where a
 * sequence is (at the end of a prompt chunk, when a request finishes), and a hit starts at an entry's end or one
 * position before it.
 * The least recently used entry goes first when the count limit is reached or memory runs short. Engine thread only. */
#ifndef MIMO_ENGINE_PREFIX_CACHE_H
#define MIMO_ENGINE_PREFIX_CACHE_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine/kv_cache.h"

typedef struct mimo_prefix_cache mimo_prefix_cache;

/* max_entries >= 1. */
mimo_status mimo_prefix_cache_new(mimo_prefix_cache **out, int max_entries);
/* Frees every entry's cache. */
void mimo_prefix_cache_free(mimo_prefix_cache *c);
/* Entries belong to a partition, salt (vLLM's cache_salt, hashed; 0: the shared one): a request finds only those of
 * its own, so one tenant's prompts cannot be probed through another's hits.
 * The entry of partition salt that serves the longest prefix of tokens[0..n), at most max_len long, marked as used, and that length in
 * *len: its whole length, or one less (mimo_kv_fork can step back one position: a prompt equal to a cached one, or
 * one that differs only in the entry's last token); NULL (and *len 0) when none serves. The entry stays the cache's:
 * fork *len positions from it (mimo_model_kv_fork), do not keep it. */
mimo_kv_seq *mimo_prefix_cache_find(mimo_prefix_cache *c, uint64_t salt, const int *tokens, int n, int max_len,
                                    int *len);
/* Takes kv, whose kv->len positions hold tokens[0..kv->len), as an entry of partition salt (freeing the least
 * recently used one when full); frees kv instead when an entry of that partition already holds exactly those tokens
 * (that one is marked as used). */
mimo_status mimo_prefix_cache_put(mimo_prefix_cache *c, uint64_t salt, const int *tokens, mimo_kv_seq *kv);
/* Frees the least recently used entry; false when there is none. */
bool mimo_prefix_cache_evict(mimo_prefix_cache *c);
int mimo_prefix_cache_entries(const mimo_prefix_cache *c);
/* Bytes the entries hold, counting a block shared by several entries (or with running sequences) in each. */
size_t mimo_prefix_cache_bytes(const mimo_prefix_cache *c);
#endif
