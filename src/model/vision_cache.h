/* The vision encoder's cache of tower outputs by image (what vLLM's multimodal caches save): a conversation resends
 * its images every turn, and the tower costs seconds per image on a CPU. Keyed by the decoded pixels themselves
 * (a hash to find, the pixels compared on a hit, so two images never share an entry); least recently used first
 * out when the byte budget is reached. Thread-safe. */
#ifndef MIMO_MODEL_VISION_CACHE_H
#define MIMO_MODEL_VISION_CACHE_H
#include <stdbool.h>
#include <stddef.h>

#include "io/image.h"

typedef struct mimo_vcache mimo_vcache;

/* budget: bytes of rows and pixels kept at most (0: no cache, NULL returned). */
mimo_vcache *mimo_vcache_new(size_t budget);
void mimo_vcache_free(mimo_vcache *c);
/* A copy of the rows [*n][width] kept for this image; false (nothing set) when there are none. */
bool mimo_vcache_get(mimo_vcache *c, const mimo_image *im, int width, float **rows, int *n);
/* Keeps a copy of rows [n][width] for im (skipped when it would not fit the budget, or memory is short). */
void mimo_vcache_put(mimo_vcache *c, const mimo_image *im, int width, const float *rows, int n);
void mimo_vcache_stats(mimo_vcache *c, long *hits, long *misses, size_t *bytes);
#endif
