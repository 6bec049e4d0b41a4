#include "model/vision_cache.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/num.h"

typedef struct {
  uint64_t hash;
  int w, h, n, width;
  uint8_t *rgb;
  float *rows;
  size_t bytes;
  long used; /* clock of the last hit or put */
} entry;

struct mimo_vcache {
  pthread_mutex_t mu;
  entry *e;
  int n, cap;
  size_t budget, bytes;
  long clock, hits, misses;
};

static uint64_t pixels_hash(const mimo_image *im) {
  return mimo_fnv1a(MIMO_FNV_BASIS ^ ((uint64_t)im->w << 32 | (uint64_t)im->h), im->rgb, (size_t)im->w * im->h * 3);
}

mimo_vcache *mimo_vcache_new(size_t budget) {
  if (!budget)
    return NULL;
  mimo_vcache *c = calloc(1, sizeof *c);
  if (!c)
    return NULL;
  pthread_mutex_init(&c->mu, NULL);
  c->budget = budget;
  return c;
}

static void drop(mimo_vcache *c, int i) {
  c->bytes -= c->e[i].bytes;
  free(c->e[i].rgb);
  free(c->e[i].rows);
  c->e[i] = c->e[--c->n];
}

void mimo_vcache_free(mimo_vcache *c) {
  if (!c)
    return;
  while (c->n)
    drop(c, 0);
  free(c->e);
  pthread_mutex_destroy(&c->mu);
  free(c);
}

static int find(const mimo_vcache *c, const mimo_image *im, uint64_t h, int width) {
  for (int i = 0; i < c->n; i++) {
    const entry *x = &c->e[i];
    if (x->hash == h && x->w == im->w && x->h == im->h && x->width == width &&
        !memcmp(x->rgb, im->rgb, (size_t)im->w * im->h * 3))
      return i;
  }
  return -1;
}

bool mimo_vcache_get(mimo_vcache *c, const mimo_image *im, int width, float **rows, int *n) {
  if (!c)
    return false;
  const uint64_t h = pixels_hash(im);
  pthread_mutex_lock(&c->mu);
  const int i = find(c, im, h, width);
  float *copy = NULL;
  if (i >= 0 && (copy = malloc((size_t)c->e[i].n * width * sizeof(float)))) {
    memcpy(copy, c->e[i].rows, (size_t)c->e[i].n * width * sizeof(float));
    *rows = copy;
    *n = c->e[i].n;
    c->e[i].used = ++c->clock;
    c->hits++;
  } else {
    c->misses++;
  }
  pthread_mutex_unlock(&c->mu);
  return copy != NULL;
}

void mimo_vcache_put(mimo_vcache *c, const mimo_image *im, int width, const float *rows, int n) {
  if (!c)
    return;
  const size_t px = (size_t)im->w * im->h * 3, rb = (size_t)n * width * sizeof(float), bytes = px + rb;
  if (bytes > c->budget)
    return;
  const uint64_t h = pixels_hash(im);
  pthread_mutex_lock(&c->mu);
  if (find(c, im, h, width) >= 0) { /* another request put it meanwhile */
    pthread_mutex_unlock(&c->mu);
    return;
  }
  while (c->n && c->bytes + bytes > c->budget) { /* the least recently used go first */
    int old = 0;
    for (int i = 1; i < c->n; i++)
      if (c->e[i].used < c->e[old].used)
        old = i;
    drop(c, old);
  }
  entry x = {.hash = h, .w = im->w, .h = im->h, .n = n, .width = width, .bytes = bytes, .used = ++c->clock};
  x.rgb = malloc(px);
  x.rows = malloc(rb);
  if (c->n == c->cap) {
    const int cap = c->cap ? 2 * c->cap : 16;
    entry *e = realloc(c->e, (size_t)cap * sizeof *e);
    if (e) {
      c->e = e;
      c->cap = cap;
    }
  }
  if (x.rgb && x.rows && c->n < c->cap) {
    memcpy(x.rgb, im->rgb, px);
    memcpy(x.rows, rows, rb);
    c->e[c->n++] = x;
    c->bytes += bytes;
  } else {
    free(x.rgb);
    free(x.rows);
  }
  pthread_mutex_unlock(&c->mu);
}

void mimo_vcache_stats(mimo_vcache *c, long *hits, long *misses, size_t *bytes) {
  *hits = *misses = 0;
  *bytes = 0;
  if (!c)
    return;
  pthread_mutex_lock(&c->mu);
  *hits = c->hits;
  *misses = c->misses;
  *bytes = c->bytes;
  pthread_mutex_unlock(&c->mu);
}
