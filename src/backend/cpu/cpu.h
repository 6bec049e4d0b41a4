/* CPU backend internals shared by its files. */
#ifndef MIMO_BACKEND_CPU_CPU_H
#define MIMO_BACKEND_CPU_CPU_H
#include "backend/backend.h"
#include "core/threads.h"

typedef struct cpu_ctx {
  mimo_pool *pool;
} cpu_ctx;

static inline mimo_pool *cpu_pool(mimo_backend *be) { return ((cpu_ctx *)be->ctx)->pool; }

void cpu_linear(mimo_backend *be, float *y, const float *x, int T, const mimo_linear *W);
void cpu_attention(mimo_backend *be, mimo_attn_args *a);
void cpu_moe(mimo_backend *be, mimo_moe_args *a);
/* Sets the vision tower ops (cpu_vision.c). */
void cpu_vision_ops(mimo_backend *be);
/* Row r of W (columns [k0, k0+n)) as float32, whatever W's storage format. */
void cpu_linear_row(const mimo_linear *W, int r, int k0, int n, float *dst);
#endif
