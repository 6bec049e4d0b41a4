/* Number formats shared by every subsystem: bf16/f16 conversion and a seeded RNG. */
#ifndef MIMO_CORE_NUM_H
#define MIMO_CORE_NUM_H
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

static inline float mimo_bf16_to_f32(uint16_t h) {
  uint32_t u = (uint32_t)h << 16;
  float f;
  memcpy(&f, &u, 4);
  return f;
}

/* Round to nearest even, as torch does; NaN stays NaN. */
static inline uint16_t mimo_f32_to_bf16(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u)
    return (uint16_t)((u >> 16) | 0x40);
  u += 0x7fffu + ((u >> 16) & 1u);
  return (uint16_t)(u >> 16);
}

float mimo_f16_to_f32(uint16_t h);
uint16_t mimo_f32_to_f16(float f);

/* xoshiro256** seeded through splitmix64: same seed, same stream, on every platform. */
/* FNV-1a over n bytes, continuing from h (start with MIMO_FNV_BASIS): table keys and content hashes. */
#define MIMO_FNV_BASIS 1469598103934665603ull
static inline uint64_t mimo_fnv1a(uint64_t h, const void *p, size_t n) {
  const uint8_t *b = (const uint8_t *)p;
  for (size_t i = 0; i < n; i++)
    h = (h ^ b[i]) * 1099511628211ull;
  return h;
}

typedef struct mimo_rng {
  uint64_t s[4];
} mimo_rng;
void mimo_rng_seed(mimo_rng *r, uint64_t seed);
uint64_t mimo_rng_next(mimo_rng *r);
double mimo_rng_uniform(mimo_rng *r); /* [0, 1) with 53 bits */
double mimo_rng_normal(mimo_rng *r);  /* standard normal (Box-Muller) */
#endif
